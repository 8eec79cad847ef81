//! The bench report: what is saved as JSON, printed as a table, and plotted.

use std::fmt::Write as _;
use std::path::Path;

use libflush::strategy::{Backing, BackingKind};
use serde::{Deserialize, Serialize};

use crate::error::CliError;

/// Where the numbers were measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HostInfo {
    /// CPU architecture.
    pub arch: String,
    /// CPU page size.
    pub page_size: usize,
    /// Kernel release.
    pub kernel: String,
    /// Online CPUs.
    pub cpus: usize,
}

/// One measured case.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CaseResult {
    /// Strategy name (or "reference" for floors that flush nothing).
    pub strategy: String,
    /// Variant, e.g. "batch 32" or "sync".
    pub variant: String,
    /// What the flush acted on.
    pub backing: Backing,
    /// Flushes per operation (the io_uring batch size; 1 elsewhere).
    pub batch: usize,
    /// Threads flushing at once (each with its own handle).
    #[serde(default = "one")]
    pub threads: usize,
    /// Hardware flushes the module issued per request during the case (< 1: coalescing).
    #[serde(default)]
    pub hw_flushes_per_request: Option<f64>,
    /// `io_uring_enter` calls per flush during the case (io_uring cases; 0: SQPOLL reaped
    /// everything without entering the kernel).
    #[serde(default)]
    pub enters_per_flush: Option<f64>,
    /// Flushes measured.
    pub flushes: u64,
    /// Mean ns per flush over the whole measured run.
    pub mean_ns: f64,
    /// Median of the per-sample ns per flush.
    pub p50_ns: f64,
    /// 99th percentile of the per-sample ns per flush.
    pub p99_ns: f64,
    /// Flushes per second at the mean.
    pub flushes_per_sec: f64,
    /// Samples taken (each a run of `ops_per_sample` operations).
    pub samples: usize,
    /// Operations per sample, chosen so a sample lasts about 2 us.
    pub ops_per_sample: u64,
    /// mean_ns / the baseline's mean_ns.
    pub relative: f64,
}

fn one() -> usize {
    1
}

impl CaseResult {
    /// "strategy (variant)".
    pub fn label(&self) -> String {
        label(&self.strategy, &self.variant)
    }
}

/// How a case is named everywhere: "strategy" or "strategy (variant)".
pub fn label(strategy: &str, variant: &str) -> String {
    if variant.is_empty() {
        strategy.to_owned()
    } else {
        format!("{strategy} ({variant})")
    }
}

/// A strategy that was not run, and why.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Skipped {
    /// Strategy name.
    pub strategy: String,
    /// Why.
    pub reason: String,
}

/// A whole `hdpflush bench` run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BenchReport {
    /// "hdpflush".
    pub tool: String,
    /// hdpflush version.
    pub version: String,
    /// Seconds since the Unix epoch at the start.
    pub started_unix: u64,
    /// The host.
    pub host: HostInfo,
    /// Measured flushes per case.
    pub iterations: u64,
    /// Warm-up flushes per case.
    pub warmup: u64,
    /// The label `relative` is computed against.
    pub baseline: String,
    /// Measured cases, in run order.
    pub results: Vec<CaseResult>,
    /// Requested or default strategies that could not run.
    pub skipped: Vec<Skipped>,
}

/// The report as a text table, with a legend of what was not hardware.
pub fn table(r: &BenchReport) -> String {
    let mut out = String::new();
    let h = &r.host;
    let _ = writeln!(
        out,
        "hdpflush bench: {} {}, PAGE_SIZE {}, {} CPUs, {} flushes per case",
        h.arch, h.kernel, h.page_size, h.cpus, r.iterations
    );
    let label_w = r
        .results
        .iter()
        .map(|c| c.label().len())
        .max()
        .unwrap_or(8)
        .max(8);
    let _ = writeln!(
        out,
        "{:<label_w$}  {:<12}  {:>10}  {:>10}  {:>10}  {:>12}  {:>6}  {:>9}",
        "strategy",
        "backing",
        "p50 ns",
        "p99 ns",
        "mean ns",
        "flushes/s",
        "hw/req",
        format!("vs {}", short(&r.baseline)),
    );
    for c in &r.results {
        let _ = writeln!(
            out,
            "{:<label_w$}  {:<12}  {:>10.1}  {:>10.1}  {:>10.1}  {:>12}  {:>6}  {:>8.2}x",
            c.label(),
            c.backing.kind.tag(),
            c.p50_ns,
            c.p99_ns,
            c.mean_ns,
            si(c.flushes_per_sec),
            c.hw_flushes_per_request
                .map_or_else(|| "-".to_owned(), |v| format!("{v:.2}")),
            c.relative
        );
    }
    for s in &r.skipped {
        let _ = writeln!(out, "skipped {}: {}", s.strategy, s.reason);
    }
    let mut legend: Vec<String> = Vec::new();
    for c in &r.results {
        if c.backing.kind != BackingKind::Hardware {
            let l = format!("  {}: {}", c.backing.kind.tag(), c.backing.detail);
            if !legend.contains(&l) {
                legend.push(l);
            }
        }
    }
    if r.results.iter().any(|c| c.threads > 1) {
        let _ = writeln!(
            out,
            "with N threads: mean = wall time / all flushes; p50/p99 = per-caller samples"
        );
    }
    if r.results.iter().any(|c| c.hw_flushes_per_request.is_some()) {
        let _ = writeln!(
            out,
            "hw/req: hardware flushes the module issued per request (below 1: coalesced)"
        );
    }
    if !legend.is_empty() {
        let _ = writeln!(
            out,
            "not GPU hardware (CPU-side, model or kernel-entry cost only):"
        );
        for l in legend {
            let _ = writeln!(out, "{l}");
        }
    }
    out
}

fn short(label: &str) -> &str {
    label.split(" (").next().unwrap_or(label)
}

/// 1234567.0 -> "1.23 M".
pub fn si(v: f64) -> String {
    let (scaled, unit) = if v >= 1e9 {
        (v / 1e9, " G")
    } else if v >= 1e6 {
        (v / 1e6, " M")
    } else if v >= 1e3 {
        (v / 1e3, " k")
    } else {
        (v, "")
    };
    format!("{scaled:.2}{unit}")
}

/// Write `report` as pretty JSON.
pub fn write_json(report: &BenchReport, path: &Path) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(report).map_err(|source| CliError::Json {
        path: path.to_owned(),
        source,
    })?;
    std::fs::write(path, text + "\n").map_err(|e| CliError::io(path, e))
}

/// Read a report written by [`write_json`].
pub fn read_json(path: &Path) -> Result<BenchReport, CliError> {
    let text = std::fs::read_to_string(path).map_err(|e| CliError::io(path, e))?;
    serde_json::from_str(&text).map_err(|source| CliError::Json {
        path: path.to_owned(),
        source,
    })
}

/// `hdpflush report`.
pub fn run(args: &crate::ReportArgs) -> Result<(), CliError> {
    if let Some(path) = &args.evidence {
        return evidence(args, path);
    }
    let Some(json) = &args.json else {
        return Err(CliError::Selection(
            "report needs a bench JSON or --evidence".into(),
        ));
    };
    let report = read_json(json)?;
    crate::emit(&table(&report))?;
    if let Some(svg) = &args.svg {
        crate::plot::write_svg(&report, svg)?;
        crate::emit(&format!("wrote {}\n", svg.display()))?;
    }
    Ok(())
}

/// `hdpflush report --evidence DIR|FILE`.
fn evidence(args: &crate::ReportArgs, path: &Path) -> Result<(), CliError> {
    use crate::evidence::{update_docs, Evidence};
    let e = if path.is_dir() {
        let e = Evidence::assemble(path)?;
        let json = path.join("evidence.json");
        e.save(&json)?;
        let tables = path.join("tables.md");
        let md: String = crate::evidence::sections(&e)
            .into_iter()
            .map(|(name, body)| format!("## {name}\n\n{body}\n"))
            .collect();
        std::fs::write(&tables, md).map_err(|err| CliError::io(&tables, err))?;
        crate::evidence_plot::write_all(&e, path)?;
        crate::emit(&format!(
            "wrote {}, {} and cost.svg, batch.svg, callers.svg in {}\n",
            json.display(),
            tables.display(),
            path.display()
        ))?;
        e
    } else {
        Evidence::load(path)?
    };
    if let Some(docs) = &args.check_docs {
        return update_docs(&e, docs, true);
    }
    crate::emit(&crate::evidence::text(&e))?;
    if args.model {
        let pcie = crate::model::Pcie {
            write_ns: args.pcie_write_ns,
            read_ns: args.pcie_read_ns,
        };
        crate::emit(&crate::model::text(&e, &pcie))?;
    }
    if let Some(docs) = &args.update_docs {
        update_docs(&e, docs, false)?;
        let plots = docs.join("evidence");
        std::fs::create_dir_all(&plots).map_err(|err| CliError::io(&plots, err))?;
        crate::evidence_plot::write_all(&e, &plots)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn si_prefixes() {
        assert_eq!(si(950.0), "950.00");
        assert_eq!(si(1_234_567.0), "1.23 M");
        assert_eq!(si(2.5e9), "2.50 G");
    }
}
