//! What `hdpflush validate` measured on a real AMD GPU: provenance, the BAR's W and R, each
//! strategy's cost there, and the stale-data test's counts. `hdpflush report --evidence E
//! --hardware FILE` prints these as hardware rows and feeds W and R to the cost model in place of
//! its assumed ones. The schema is documented in docs/validate.md.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::data::json;
use crate::error::CliError;
use crate::model::Pcie;

/// The `schema` field of every file this module writes; a reader refuses others.
pub const SCHEMA: &str = "hdpflush-hardware/1";

/// One `hdpflush validate` run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HardwareReport {
    /// [`SCHEMA`].
    pub schema: String,
    /// Where and with what it ran.
    pub provenance: Provenance,
    /// One entry per GPU validated.
    pub gpus: Vec<GpuValidation>,
}

/// Where the run happened.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// The host name.
    pub host: String,
    /// `uname -r`.
    pub kernel: String,
    /// The CPU architecture (`std::env::consts::ARCH`).
    pub arch: String,
    /// The CPU page size in bytes.
    pub page_size: usize,
    /// The HSA library loaded.
    pub hsa_library: String,
    /// `HSA_SYSTEM_INFO_VERSION_MAJOR.MINOR`.
    pub hsa_version: String,
    /// The git commit hdpflush was built from, when known.
    pub git_commit: Option<String>,
    /// The hdpflush version.
    pub hdpflush_version: String,
    /// The command line.
    pub command: String,
    /// Seconds since the Unix epoch when the run ended.
    pub unix_time: u64,
}

/// One GPU: what it is and what was measured on it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GpuValidation {
    /// The HSA agent name, the gfx target (e.g. "gfx90a").
    pub gfx_target: String,
    /// `HSA_AMD_AGENT_INFO_PRODUCT_NAME`.
    pub product: String,
    /// The PCI address, domain:bus:device.function.
    pub pci: String,
    /// Whether HSA returned a remap page (`HSA_AMD_AGENT_INFO_HDP_FLUSH` non-null): false on
    /// a 64K-page kernel.
    pub remap_page: bool,
    /// Bytes of host-visible VRAM used.
    pub vram_bytes: usize,
    /// W: mean ns of one posted 32-bit store to the VRAM BAR, as the CPU sees it.
    pub write_ns: f64,
    /// R: mean ns of one 32-bit read round trip through the VRAM BAR.
    pub read_ns: f64,
    /// Each strategy measured there.
    pub strategies: Vec<StrategyCost>,
    /// The stale-data test: one row per strategy and variant, and the control.
    pub stale: Vec<StaleCount>,
    /// Strategies (or the stale-data test, as `stale-data test`) not run there, and why.
    pub not_run: Vec<NotRun>,
}

/// Something `validate` could not run on a GPU, and why: never left out silently.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NotRun {
    /// The strategy, or `stale-data test`.
    pub what: String,
    /// Why.
    pub why: String,
}

/// One strategy's cost on the GPU.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StrategyCost {
    /// The strategy's name (`mmio-remap`, `dummy-page`, ...).
    pub strategy: String,
    /// The variant (completion, dummy-page read-back and fence).
    pub variant: String,
    /// What it really acted on, as libflush reports it.
    pub backing: String,
    /// Flushes timed.
    pub flushes: u64,
    /// Mean ns per flush.
    pub mean_ns: f64,
}

/// One strategy's stale-data count.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StaleCount {
    /// The strategy, or "none" for the control.
    pub strategy: String,
    /// The variant.
    pub variant: String,
    /// Rounds run: fresh pattern, flush, dispatch, count.
    pub rounds: u64,
    /// 32-bit words written and checked per round.
    pub words: u64,
    /// Rounds in which the kernel saw at least one stale word.
    pub stale_rounds: u64,
    /// Stale words over all rounds.
    pub stale_words: u64,
}

impl StaleCount {
    /// Whether this row is the no-flush control (whose mismatches are expected, not a fault).
    pub fn is_control(&self) -> bool {
        self.strategy == "none"
    }
}

impl HardwareReport {
    /// Read a file `hdpflush validate` wrote, refusing other schemas.
    pub fn load(path: &Path) -> Result<Self, CliError> {
        let report: Self = json::read(path)?;
        if report.schema != SCHEMA {
            return Err(CliError::Selection(format!(
                "{}: schema `{}`, expected `{SCHEMA}`",
                path.display(),
                report.schema
            )));
        }
        Ok(report)
    }

    /// Write it.
    pub fn save(&self, path: &Path) -> Result<(), CliError> {
        json::write(self, path)
    }

    /// The cost model's W and R measured on the first GPU (the model covers one GPU), or none
    /// if no GPU was measured. The model takes these instead of its assumed ones.
    pub fn measured_pcie(&self) -> Option<(Pcie, &GpuValidation)> {
        let gpu = self.gpus.first()?;
        Some((
            Pcie {
                write_ns: gpu.write_ns,
                read_ns: gpu.read_ns,
            },
            gpu,
        ))
    }

    /// Rows where a flush strategy left stale words: a wrong result.
    pub fn failures(&self) -> impl Iterator<Item = (&GpuValidation, &StaleCount)> {
        self.gpus.iter().flat_map(|g| {
            g.stale
                .iter()
                .filter(|s| !s.is_control() && s.stale_words > 0)
                .map(move |s| (g, s))
        })
    }

    /// The hardware rows as a Markdown table, for `report --hardware`.
    pub fn table(&self) -> String {
        let p = &self.provenance;
        let mut out = format!(
            "#### hardware: {} ({}, {} pages, kernel {}, HSA {}{})\n\n",
            p.host,
            p.arch,
            page_name(p.page_size),
            p.kernel,
            p.hsa_version,
            p.git_commit
                .as_deref()
                .map(|c| format!(", hdpflush {c}"))
                .unwrap_or_default()
        );
        for g in &self.gpus {
            out.push_str(&format!(
                "{} {} at {}; remap page: {}; W = {:.0} ns (posted BAR store), R = {:.0} ns (BAR read)\n\n",
                g.product,
                g.gfx_target,
                g.pci,
                if g.remap_page { "yes" } else { "no" },
                g.write_ns,
                g.read_ns
            ));
            out.push_str("| case | backing | mean ns | flushes |\n|---|---|---|---|\n");
            for s in &g.strategies {
                out.push_str(&format!(
                    "| {} ({}) | hardware: {} | {:.0} | {} |\n",
                    s.strategy, s.variant, s.backing, s.mean_ns, s.flushes
                ));
            }
            out.push_str(
                "\n| stale-data test | rounds | words/round | stale rounds | stale words |\n|---|---|---|---|---|\n",
            );
            for s in &g.stale {
                out.push_str(&format!(
                    "| {} ({}){} | {} | {} | {} | {} |\n",
                    s.strategy,
                    s.variant,
                    if s.is_control() { " (control)" } else { "" },
                    s.rounds,
                    s.words,
                    s.stale_rounds,
                    s.stale_words
                ));
            }
            for n in &g.not_run {
                out.push_str(&format!("\nnot run: {}: {}", n.what, n.why));
            }
            out.push_str("\n\n");
        }
        out
    }
}

fn page_name(bytes: usize) -> String {
    format!("{}K", bytes / 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> HardwareReport {
        HardwareReport {
            schema: SCHEMA.into(),
            provenance: Provenance {
                host: "p10".into(),
                kernel: "6.12.0".into(),
                arch: "powerpc64".into(),
                page_size: 65536,
                hsa_library: "libhsa-runtime64.so.1".into(),
                hsa_version: "1.1".into(),
                git_commit: Some("abc1234".into()),
                hdpflush_version: "0.1.0".into(),
                command: "hdpflush validate".into(),
                unix_time: 1,
            },
            gpus: vec![GpuValidation {
                gfx_target: "gfx90a".into(),
                product: "AMD Instinct MI210".into(),
                pci: "0000:03:00.0".into(),
                remap_page: false,
                vram_bytes: 1 << 20,
                write_ns: 150.0,
                read_ns: 900.0,
                strategies: vec![StrategyCost {
                    strategy: "dummy-page".into(),
                    variant: "read first store, no fence between".into(),
                    backing: "VRAM page".into(),
                    flushes: 1000,
                    mean_ns: 1200.0,
                }],
                stale: vec![
                    StaleCount {
                        strategy: "none".into(),
                        variant: "no flush".into(),
                        rounds: 10,
                        words: 256,
                        stale_rounds: 2,
                        stale_words: 7,
                    },
                    StaleCount {
                        strategy: "legacy".into(),
                        variant: "".into(),
                        rounds: 10,
                        words: 256,
                        stale_rounds: 1,
                        stale_words: 3,
                    },
                ],
                not_run: vec![NotRun {
                    what: "ioctl".into(),
                    why: "no hdp_flush module".into(),
                }],
            }],
        }
    }

    #[test]
    fn a_report_round_trips_through_its_file() {
        let dir = std::env::temp_dir().join(format!("hdpflush-hw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("hardware.json");
        sample().save(&path).expect("save");
        assert_eq!(HardwareReport::load(&path).expect("load"), sample());
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.contains("\"schema\": \"hdpflush-hardware/1\""));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn another_schema_is_refused() {
        let dir = std::env::temp_dir().join(format!("hdpflush-hw2-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("hardware.json");
        let mut r = sample();
        r.schema = "hdpflush-hardware/0".into();
        r.save(&path).expect("save");
        let err = HardwareReport::load(&path).expect_err("old schema accepted");
        assert!(err.to_string().contains("expected `hdpflush-hardware/1`"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_model_gets_the_measured_w_and_r_and_failures_skip_the_control() {
        let r = sample();
        let (pcie, gpu) = r.measured_pcie().expect("one GPU");
        assert_eq!((pcie.write_ns, pcie.read_ns), (150.0, 900.0));
        assert_eq!(gpu.pci, "0000:03:00.0");
        let failed: Vec<_> = r.failures().map(|(_, s)| s.strategy.as_str()).collect();
        assert_eq!(failed, ["legacy"]);
        let table = r.table();
        assert!(table.contains("| legacy () | 10 | 256 | 1 | 3 |"));
        assert!(table.contains("| none (no flush) (control) |"));
        assert!(table.contains("W = 150 ns"));
    }
}
