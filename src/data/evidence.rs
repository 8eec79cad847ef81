//! The evidence a reviewer reads: every run of `cargo xtask vm-bench` (both guests' phases and
//! the host's), libflush's dispatch cost, and the oracle's verdicts, in one JSON, assembled from
//! the directory `vm-bench` fills.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use libflush::sim::verdicts::{verdict_table, VerdictConfig, VerdictRow};
use serde::{Deserialize, Serialize};

use crate::data::bench_report::{BenchReport, CaseResult};
use crate::data::json;
use crate::data::targets::Spread;
use crate::error::CliError;

/// One phase: a module configuration (or none, on the host) and the bench run on it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PhaseRun {
    /// "sim", "sim-1us", "emulated", "gpus" or "host".
    pub phase: String,
    /// What the phase measures.
    pub purpose: String,
    /// The module's parameters (none: its defaults, or no module).
    pub module_params: Vec<String>,
    /// The bench command line.
    pub command: String,
    /// What it measured.
    pub report: BenchReport,
    /// Which boot of its guest ran it (`vm-bench --boots N`: 1..=N); none in evidence measured
    /// with one boot per guest, before boots were counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot: Option<u32>,
}

impl PhaseRun {
    /// A case of the run, by strategy and variant.
    pub fn case(&self, strategy: &str, variant: &str) -> Option<&CaseResult> {
        self.report
            .results
            .iter()
            .find(|c| c.strategy == strategy && c.variant == variant)
    }
}

/// Where phases ran: a guest or the host.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Place {
    /// "x86_64", "arm64" or "host".
    pub name: String,
    /// Its phases, in run order.
    pub runs: Vec<PhaseRun>,
}

impl Place {
    /// "x86_64 guest, 4K pages".
    pub fn title(&self) -> String {
        let page = self
            .runs
            .first()
            .map(|r| r.report.host.page_size / 1024)
            .unwrap_or(0);
        match self.name.as_str() {
            "host" => format!("host ({}K pages)", page),
            arch => format!("{arch} guest, {page}K pages"),
        }
    }
}

/// libflush's dispatch cost, from criterion's estimates.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Dispatch {
    /// Mean ns of the flush called on the concrete type.
    pub direct_ns: f64,
    /// Mean ns of the same flush through `dyn Flush`.
    pub dyn_ns: f64,
    /// Where the numbers come from.
    pub source: String,
}

/// One guest boot: which, the seed its case order was shuffled with, and the kernel it booted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GuestBoot {
    /// "x86_64" or "arm64".
    pub guest: String,
    /// 1..=boots.
    pub boot: u32,
    /// `hdpflush_seed=` on its kernel command line.
    pub seed: u64,
    /// The release its init printed (`guest: booted <release> <arch>`), if it did.
    pub kernel: Option<String>,
}

/// What the evidence was measured with, gathered by `cargo xtask vm-bench`
/// (target/evidence/provenance.json).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// `git rev-parse HEAD` of the workspace.
    pub git_commit: String,
    /// Whether the work tree had uncommitted changes.
    pub git_dirty: bool,
    /// `qemu-system-* --version`, first line each.
    pub qemu: Vec<String>,
    /// /proc/cpuinfo's first `model name` (or `Hardware`/`CPU part` where there is none).
    pub host_cpu: String,
    /// `uname -r` of the host.
    pub host_kernel: String,
    /// `rustc --version` of the host toolchain and of /usr/bin/rustc (the arm64 guest's).
    pub rustc: Vec<String>,
    /// Boots per guest.
    pub boots: u32,
    /// Every guest boot.
    pub guest_boots: Vec<GuestBoot>,
}

/// Everything one evidence run produced.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Evidence {
    /// hdpflush version.
    pub version: String,
    /// When it was assembled (seconds since the Unix epoch).
    pub assembled_unix: u64,
    /// The command that produced it.
    pub command: String,
    /// Guests first, then the host.
    pub places: Vec<Place>,
    /// Target P5's input.
    pub dispatch: Option<Dispatch>,
    /// The oracle's verdicts.
    pub oracle: Vec<VerdictRow>,
    /// What it was measured with; none in evidence assembled before vm-bench recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Provenance>,
}

/// The command the evidence comes from, as the docs name it.
pub const COMMAND: &str = "cargo xtask vm-bench";

/// criterion's `estimates.json`: its mean's point estimate, in ns.
fn criterion_mean(path: &Path) -> Result<f64, CliError> {
    let v: serde_json::Value = json::read(path)?;
    v["mean"]["point_estimate"]
        .as_f64()
        .ok_or_else(|| CliError::Selection(format!("{}: no mean.point_estimate", path.display())))
}

impl Evidence {
    /// Assemble a `vm-bench` output directory: `<place>/<phase>.json` and, on the host,
    /// criterion's dispatch estimates; runs the oracle.
    pub fn assemble(dir: &Path) -> Result<Self, CliError> {
        let mut places = Vec::new();
        for name in ["x86_64", "arm64", "host"] {
            let sub = dir.join(name);
            if !sub.is_dir() {
                continue;
            }
            let boots = boot_dirs(&sub)?;
            let mut runs = Vec::new();
            if boots.is_empty() {
                runs = phase_files(&sub, None)?;
            }
            for (boot, path) in boots {
                runs.extend(phase_files(&path, Some(boot))?);
            }
            runs.sort_by_key(|r| (phase_order(&r.phase), r.boot));
            places.push(Place {
                name: name.to_owned(),
                runs,
            });
        }
        if places.is_empty() {
            return Err(CliError::Selection(format!(
                "{}: no x86_64/, arm64/ or host/ results; run `{COMMAND}` first",
                dir.display()
            )));
        }
        let host = dir.join("host");
        let dispatch = match (
            criterion_mean(&host.join("dispatch-direct.json")),
            criterion_mean(&host.join("dispatch-dyn.json")),
        ) {
            (Ok(direct_ns), Ok(dyn_ns)) => Some(Dispatch {
                direct_ns,
                dyn_ns,
                source: "criterion, benches/flush.rs group `dispatch`, on the host".into(),
            }),
            _ => None,
        };
        let provenance_file = dir.join("provenance.json");
        let provenance = if provenance_file.is_file() {
            Some(json::read(&provenance_file)?)
        } else {
            None
        };
        eprintln!("running the oracle over every strategy and read policy ...");
        let oracle = verdict_table(&VerdictConfig::default())?;
        Ok(Self {
            version: env!("CARGO_PKG_VERSION").into(),
            assembled_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            command: COMMAND.into(),
            places,
            dispatch,
            oracle,
            provenance,
        })
    }

    /// Read an assembled `evidence.json`.
    pub fn load(path: &Path) -> Result<Self, CliError> {
        json::read(path)
    }

    /// Write it as pretty JSON.
    pub fn save(&self, path: &Path) -> Result<(), CliError> {
        json::write(self, path)
    }

    /// Every run of `phase` at `place`, one per boot, in boot order.
    pub fn runs(&self, place: &str, phase: &str) -> Vec<&PhaseRun> {
        self.places
            .iter()
            .filter(|p| p.name == place)
            .flat_map(|p| p.runs.iter())
            .filter(|r| r.phase == phase)
            .collect()
    }

    /// The run of `phase` at `place` (its first boot's).
    pub fn run(&self, place: &str, phase: &str) -> Option<&PhaseRun> {
        self.places
            .iter()
            .find(|p| p.name == place)?
            .runs
            .iter()
            .find(|r| r.phase == phase)
    }

    /// The guests measured.
    pub fn guests(&self) -> impl Iterator<Item = &Place> {
        self.places.iter().filter(|p| p.name != "host")
    }

    /// Every case of `phase` at `place`, its values the medians across boots.
    pub fn medians(&self, place: &str, phase: &str) -> Vec<CaseMedians<'_>> {
        medians(&self.runs(place, phase))
    }
}

/// One case across a phase's boots: each value is the median of the boots that gave one.
#[derive(Clone, Debug)]
pub struct CaseMedians<'a> {
    /// The case as the first boot that ran it measured it (its name, backing, batch, threads).
    pub case: &'a CaseResult,
    /// Mean ns per flush: the median of the boots' means, and their range.
    pub mean_ns: Spread,
    /// The median of the boots' p50s.
    pub p50_ns: Option<f64>,
    /// The median of the boots' p99s, where every boot's p99 is one flush's
    /// ([`CaseResult::p99_per_flush`]); none otherwise.
    pub p99_per_flush: Option<f64>,
    /// The median of the boots' hardware flushes per request.
    pub hw_flushes_per_request: Option<f64>,
    /// The median of the boots' `io_uring_enter` calls per flush.
    pub enters_per_flush: Option<f64>,
}

impl CaseMedians<'_> {
    /// Whether it is `strategy (variant)`.
    pub fn is(&self, strategy: &str, variant: &str) -> bool {
        self.case.strategy == strategy && self.case.variant == variant
    }
}

/// The median across `runs` (one per boot) of `f` of `label`'s case; none when a boot that ran
/// the case gives no value.
fn across<'a>(
    runs: &[&'a PhaseRun],
    label: &str,
    f: impl Fn(&'a CaseResult) -> Option<f64>,
) -> Option<Spread> {
    let v: Vec<f64> = runs
        .iter()
        .filter_map(|r| r.report.results.iter().find(|c| c.label() == label))
        .map(f)
        .collect::<Option<_>>()?;
    Spread::of(&v)
}

/// Every case of `runs` (one run per boot, of one phase), in the order the boots first give
/// them, with its medians across the boots.
pub fn medians<'a>(runs: &[&'a PhaseRun]) -> Vec<CaseMedians<'a>> {
    let mut cases: Vec<&CaseResult> = Vec::new();
    for c in runs.iter().flat_map(|r| r.report.results.iter()) {
        if !cases.iter().any(|k| k.label() == c.label()) {
            cases.push(c);
        }
    }
    cases
        .into_iter()
        .filter_map(|case| {
            let label = case.label();
            let median =
                |f: fn(&CaseResult) -> Option<f64>| across(runs, &label, f).map(|s| s.median);
            Some(CaseMedians {
                case,
                mean_ns: across(runs, &label, |c| Some(c.mean_ns))?,
                p50_ns: median(|c| Some(c.p50_ns)),
                p99_per_flush: median(CaseResult::p99_per_flush),
                hw_flushes_per_request: median(|c| c.hw_flushes_per_request),
                enters_per_flush: median(|c| c.enters_per_flush),
            })
        })
        .collect()
}

/// `dir`'s `boot-<K>/` subdirectories, by K.
fn boot_dirs(dir: &Path) -> Result<Vec<(u32, PathBuf)>, CliError> {
    let mut boots: Vec<(u32, PathBuf)> = std::fs::read_dir(dir)
        .map_err(|e| CliError::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .filter_map(|p| {
            let k = p
                .file_name()?
                .to_str()?
                .strip_prefix("boot-")?
                .parse()
                .ok()?;
            Some((k, p))
        })
        .collect();
    boots.sort();
    Ok(boots)
}

/// The phases saved in `dir` (`<phase>.json`, criterion's `dispatch-*.json` aside), each
/// marked with `boot`.
fn phase_files(dir: &Path, boot: Option<u32>) -> Result<Vec<PhaseRun>, CliError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| CliError::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|x| x == "json")
                && !p
                    .file_name()
                    .is_some_and(|f| f.to_string_lossy().starts_with("dispatch-"))
        })
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| {
            json::read::<PhaseRun>(f).map(|mut r| {
                r.boot = boot.or(r.boot);
                r
            })
        })
        .collect()
}

fn phase_order(phase: &str) -> usize {
    ["sim", "sim-1us", "emulated", "gpus", "host"]
        .iter()
        .position(|p| *p == phase)
        .unwrap_or(usize::MAX)
}
