//! The cost model as `hdpflush report --model` prints it and docs/cost-model.md carries it: each
//! modelled strategy with its formula and value, the inputs as measured, and where the PCIe
//! defaults come from.

use std::fmt::Write as _;

use crate::data::evidence::Evidence;
use crate::model::{
    host_entry, host_uring, r_ioctl, r_uring, ratio_guest, rows_vs_remap, Pcie, BATCHES, SOURCES,
};

/// The inputs as measured, for the table's legend.
fn inputs(e: &Evidence, p: &Pcie) -> String {
    let mut s = String::new();
    let opt =
        |v: Option<f64>| v.map_or_else(|| "not measured".to_owned(), |v| format!("{v:.1} ns"));
    let _ = writeln!(
        s,
        "- `E` = {} (host: `ioctl` on /dev/null)",
        opt(host_entry(e))
    );
    for b in BATCHES {
        let _ = writeln!(
            s,
            "- `U({b})` = {} (host: io_uring NOP per request, batch {b})",
            opt(host_uring(e, b))
        );
    }
    let g = ratio_guest(e).unwrap_or("no guest");
    let ratio = |v: Option<f64>| v.map_or_else(|| "not measured".to_owned(), |v| format!("{v:.2}"));
    for variant in ["completed", "posted"] {
        let _ = writeln!(
            s,
            "- `r_ioctl({variant})` = {} ({g} guest: sim ioctl {variant} / NOP ioctl)",
            ratio(r_ioctl(e, variant))
        );
    }
    for b in BATCHES {
        let _ = writeln!(
            s,
            "- `r_uring({b})` = {} ({g} guest: sim uring batch {b} / io_uring NOP batch {b})",
            ratio(r_uring(e, b))
        );
    }
    let _ = writeln!(s, "- `W` = {} ns, `R` = {} ns", p.write_ns, p.read_ns);
    s
}

/// The model as a Markdown table with its inputs.
pub fn table_md(e: &Evidence, p: &Pcie) -> String {
    let mut s = String::from(
        "| strategy | formula | modelled ns per flush | vs the 4K remap page |\n|---|---|---|---|\n",
    );
    for (r, rel) in rows_vs_remap(e, p) {
        let (ns, rel) = match (r.ns, rel) {
            (Some(v), Some(rel)) => (format!("{v:.0}"), format!("{rel:.2}x")),
            _ => ("not measured".into(), "-".into()),
        };
        let _ = writeln!(s, "| {} | `{}` | {ns} | {rel} |", r.name, r.formula);
    }
    s.push_str("\nInputs:\n\n");
    s.push_str(&inputs(e, p));
    s.push_str("\nSources of the PCIe defaults:\n\n");
    s.push_str(SOURCES);
    s.push('\n');
    s
}

/// `hdpflush report --model`: the table as text.
pub fn text(e: &Evidence, p: &Pcie) -> String {
    let mut s = String::from(
        "cost model (a model: no AMD GPU measured), ns per flush on a 64K-page host\n",
    );
    for (r, rel) in rows_vs_remap(e, p) {
        let v =
            r.ns.map_or_else(|| "not measured".to_owned(), |v| format!("{v:>8.0}"));
        let rel = rel.map_or_else(|| "-".to_owned(), |rel| format!("{rel:>6.2}x"));
        let _ = writeln!(s, "  {:<66} {v} {rel}  = {}", r.name, r.formula);
    }
    s.push_str("inputs:\n");
    s.push_str(&inputs(e, p));
    s.push_str("sources of the defaults:\n");
    s.push_str(SOURCES);
    s.push('\n');
    s
}
