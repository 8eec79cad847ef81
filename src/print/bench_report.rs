//! A bench report as the text table `hdpflush bench` and `hdpflush report` print.

use std::fmt::Write as _;

use libflush::strategy::BackingKind;

use crate::data::bench_report::BenchReport;

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
            "{:<label_w$}  {:<12}  {:>10.1}  {:>10}  {:>10.1}  {:>12}  {:>6}  {:>8.2}x",
            c.label(),
            c.backing.kind.tag(),
            c.p50_ns,
            c.p99_per_flush()
                .map_or_else(|| "-".to_owned(), |v| format!("{v:.1}")),
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
    if r.results.iter().any(|c| c.p99_per_flush().is_none()) {
        let _ = writeln!(
            out,
            "p99 -: each sample averaged several flushes, so no per-flush p99 (bench.json keeps \
             the samples' p99_ns)"
        );
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
