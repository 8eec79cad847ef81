//! The cost model as `hdpflush report --model` prints it and docs/cost-model.md carries it (the
//! same Markdown, so the doc is the command's output): the per-launch completed flushes over a
//! grid of `R` and `W` against ROCclr's read-back with their break-even `R`, the posted ones
//! against the remap page's posted store, the batched ones, the chosen point in ns, the inputs
//! with their bands, and where the PCIe defaults come from.

use std::fmt::Write as _;

use crate::data::evidence::Evidence;
use crate::model::{
    axis, batched, guest_ratios, host_entry, host_uring, ioctl_entry, kfd_ioctl, per_launch,
    posted, r_ioctl, r_uring, ratio_guest, read_back, remap_posted, uring_entry, uring_floor,
    uring_variant, Band, BreakEven, Comparison, Pcie, BATCHES, IOCTL_FLOOR, R_GRID, SOURCES,
    W_GRID,
};

/// The band's point with `decimals` and `unit`, and its ends in brackets when they print
/// differently: `1.24x (1.22-1.28)`, `269 ns (269-306)`.
fn band_cell(b: Band, decimals: usize, unit: &str) -> String {
    let (lo, hi) = (
        format!("{:.*}", decimals, b.lo),
        format!("{:.*}", decimals, b.hi),
    );
    if lo == hi {
        format!("{:.*}{unit}", decimals, b.mid)
    } else {
        format!("{:.*}{unit} ({lo}-{hi})", decimals, b.mid)
    }
}

/// `1.24`, or `1.24 (1.22-1.28)`; `unit` follows the point estimate.
fn factor_cell(b: Band, unit: &str) -> String {
    band_cell(b, 2, unit)
}

/// `1.24x`, or `1.24x (1.22-1.28)`.
fn ratio_cell(b: Band) -> String {
    factor_cell(b, "x")
}

/// `269 ns`, or `269 ns (269-306)`.
fn ns_cell(b: Band) -> String {
    band_cell(b, 0, " ns")
}

fn break_even_word(b: BreakEven) -> String {
    match b {
        BreakEven::CheaperAbove(r) => format!("cheaper above {r:.0} ns"),
        BreakEven::CheaperBelow(r) => format!("cheaper below {r:.0} ns"),
        BreakEven::Always => "always cheaper".into(),
        BreakEven::Never => "never".into(),
    }
}

/// The break-even over the entry band: `never`, `cheaper above 216 ns (197-245)`.
fn break_even_cell(b: Option<[BreakEven; 3]>) -> String {
    let Some([lo, mid, hi]) = b else {
        return "not measured".into();
    };
    let words = [lo, mid, hi].map(break_even_word);
    if words[0] == words[1] && words[1] == words[2] {
        return words[1].clone();
    }
    match (lo, mid, hi) {
        (BreakEven::CheaperAbove(l), BreakEven::CheaperAbove(m), BreakEven::CheaperAbove(h)) => {
            format!("cheaper above {m:.0} ns ({:.0}-{:.0})", l.min(h), l.max(h))
        }
        _ => format!("{} (band: {} to {})", words[1], words[0], words[2]),
    }
}

fn bold_if(s: String, on: bool) -> String {
    if on {
        format!("**{s}**")
    } else {
        s
    }
}

fn or_dash(b: Option<Band>) -> String {
    b.map_or_else(|| "not measured".into(), ratio_cell)
}

/// Which runs the bands come from, and what their spread therefore is.
fn band_origin(e: &Evidence) -> String {
    let mut per_guest = Vec::new();
    for g in e.guests() {
        let n = g.runs.iter().filter(|r| r.phase == "sim").count();
        if n > 0 {
            per_guest.push((g.name.clone(), n));
        }
    }
    let hosts: usize = e
        .places
        .iter()
        .filter(|p| p.name == "host")
        .map(|p| p.runs.len())
        .sum();
    let list: Vec<String> = per_guest.iter().map(|(g, n)| format!("{g} {n}")).collect();
    let what = if per_guest.iter().all(|(_, n)| *n == 1) {
        "one boot per guest, so the band is the difference between the guests (two \
         architectures under TCG), not a boot-to-boot spread"
    } else {
        "the spread over every boot"
    };
    format!(
        "The point estimate takes the module's ratio from the {} guest (the median of its \
         boots); the range in brackets \
         takes it from every guest run the evidence holds (sim runs: {}; host runs: {hosts}): {what}.",
        ratio_guest(e).unwrap_or("no"),
        list.join(", ")
    )
}

/// The headline: completed flushes, one per launch, over the grid.
fn per_launch_md(s: &mut String, e: &Evidence, p: &Pcie) {
    let (rs, ws) = (axis(&R_GRID, p.read_ns), axis(&W_GRID, p.write_ns));
    let _ = writeln!(
        s,
        "### Per launch, completed: against ROCclr's read-back, `{}`\n",
        read_back(1).formula
    );
    let _ = writeln!(
        s,
        "One completed flush per dispatch. Each cell is the strategy's cost over the read-back's \
         at that `R` and `W`. {} Bold: the `R` and `W` chosen (`--pcie-read-ns`, \
         `--pcie-write-ns`).\n",
        band_origin(e)
    );
    s.push_str("| strategy | formula | W ns |");
    for r in &rs {
        let _ = write!(s, " {} |", bold_if(format!("R = {r}"), *r == p.read_ns));
    }
    s.push_str(" break-even R |\n|---|---|---|");
    s.push_str(&"---|".repeat(rs.len()));
    s.push_str("---|\n");
    for c in per_launch(e) {
        for w in &ws {
            let _ = write!(
                s,
                "| {} | `{}` | {} |",
                c.strategy.name,
                c.strategy.formula,
                bold_if(w.to_string(), *w == p.write_ns)
            );
            for r in &rs {
                let at = Pcie {
                    write_ns: *w,
                    read_ns: *r,
                };
                let _ = write!(s, " {} |", or_dash(c.ratio(&at)));
            }
            let _ = writeln!(s, " {} |", break_even_cell(c.break_even(*w)));
        }
    }
    s.push('\n');
}

/// Posted flushes: `R` enters neither side.
fn posted_md(s: &mut String, e: &Evidence, p: &Pcie) {
    let ws = axis(&W_GRID, p.write_ns);
    let _ = writeln!(
        s,
        "### Posted: against the remap page's posted store, `{}`\n",
        remap_posted().formula
    );
    s.push_str(
        "A posted flush returns before the GPU has it; the doorbell store that follows is ordered \
         behind it. Only a 4K-page host has the remap page, so on a 64K-page host this row has \
         nothing to replace. `R` enters neither formula.\n\n",
    );
    s.push_str("| strategy | formula |");
    for w in &ws {
        let _ = write!(s, " {} |", bold_if(format!("W = {w}"), *w == p.write_ns));
    }
    s.push_str(" break-even R |\n|---|---|");
    s.push_str(&"---|".repeat(ws.len()));
    s.push_str("---|\n");
    for c in posted(e) {
        let _ = write!(s, "| {} | `{}` |", c.strategy.name, c.strategy.formula);
        for w in &ws {
            let at = Pcie {
                write_ns: *w,
                read_ns: p.read_ns,
            };
            let _ = write!(s, " {} |", or_dash(c.ratio(&at)));
        }
        let _ = writeln!(s, " {} |", break_even_cell(c.break_even(p.write_ns)));
    }
    s.push('\n');
}

/// io_uring's shared flush, where a runtime really submits launches together.
fn batched_md(s: &mut String, e: &Evidence, p: &Pcie) {
    let rs = axis(&R_GRID, p.read_ns);
    let _ = writeln!(
        s,
        "### Batched: B launches per submission, at W = {} ns\n",
        p.write_ns
    );
    s.push_str(
        "Only where a runtime submits B launches together (a graph, a burst of dispatches on one \
         queue); ROCclr today flushes per launch. One io_uring submission shares one hardware \
         flush among its B requests. Against the read-back once per launch (what ROCclr does), \
         and against a read-back once per B launches (the same batching on both sides).\n\n",
    );
    s.push_str("| strategy | formula |");
    for r in &rs {
        let _ = write!(s, " {} |", bold_if(format!("R = {r}"), *r == p.read_ns));
    }
    s.push_str(" break-even R | vs one read-back per batch |\n|---|---|");
    s.push_str(&"---|".repeat(rs.len()));
    s.push_str("---|---|\n");
    for (per_launch, per_batch) in batched(e) {
        let _ = write!(
            s,
            "| {} | `{}` |",
            per_launch.strategy.name, per_launch.strategy.formula
        );
        for r in &rs {
            let at = Pcie {
                write_ns: p.write_ns,
                read_ns: *r,
            };
            let _ = write!(s, " {} |", or_dash(per_launch.ratio(&at)));
        }
        let _ = writeln!(
            s,
            " {} | {}, break-even: {} |",
            break_even_cell(per_launch.break_even(p.write_ns)),
            or_dash(per_batch.ratio(p)),
            break_even_cell(per_batch.break_even(p.write_ns))
        );
    }
    s.push('\n');
}

/// Every row in ns at the chosen point.
fn point_md(s: &mut String, e: &Evidence, p: &Pcie) {
    let _ = writeln!(
        s,
        "### At W = {} ns, R = {} ns: ns per launch\n",
        p.write_ns, p.read_ns
    );
    s.push_str("| strategy | formula | ns per launch | against | ratio |\n|---|---|---|---|---|\n");
    for b in [read_back(1), remap_posted()] {
        if let Some(ns) = b.ns_band(p) {
            let _ = writeln!(
                s,
                "| {} | `{}` | {} | itself | 1.00x |",
                b.name,
                b.formula,
                ns_cell(ns)
            );
        }
    }
    let rows: Vec<Comparison> = per_launch(e)
        .into_iter()
        .chain(posted(e))
        .chain(batched(e).into_iter().map(|(c, _)| c))
        .collect();
    for c in rows {
        let ns = c
            .strategy
            .ns_band(p)
            .map_or_else(|| "not measured".into(), ns_cell);
        let _ = writeln!(
            s,
            "| {} | `{}` | {ns} | `{}` | {} |",
            c.strategy.name,
            c.strategy.formula,
            c.baseline.formula,
            or_dash(c.ratio(p))
        );
    }
    s.push('\n');
}

/// The inputs as measured, with their bands.
fn inputs(e: &Evidence, p: &Pcie) -> String {
    let mut s = String::new();
    let ns = |v: Option<Band>| v.map_or_else(|| "not measured".to_owned(), ns_cell);
    let ratio =
        |v: Option<Band>| v.map_or_else(|| "not measured".to_owned(), |b| factor_cell(b, ""));
    let runs = |strategy: &str, variant: &str, floor: &str| {
        let v: Vec<String> = guest_ratios(e, strategy, variant, floor)
            .into_iter()
            .map(|r| format!("{} {:.2}", r.guest, r.ratio))
            .collect();
        v.join(", ")
    };
    let _ = writeln!(
        s,
        "- `E` = {} (host: an `ioctl` /dev/null rejects)",
        ns(host_entry(e))
    );
    for b in BATCHES {
        let _ = writeln!(
            s,
            "- `U({b})` = {} (host: io_uring NOP per request, batch {b})",
            ns(host_uring(e, b))
        );
    }
    for variant in ["completed", "posted"] {
        let _ = writeln!(
            s,
            "- `r_ioctl({variant})` = {} (sim ioctl {variant} / NOP ioctl; per guest run: {})",
            ratio(r_ioctl(e, variant)),
            runs("ioctl", variant, IOCTL_FLOOR)
        );
    }
    for b in BATCHES {
        let _ = writeln!(
            s,
            "- `r_uring({b})` = {} (sim uring batch {b} / io_uring NOP batch {b}; per guest run: {})",
            ratio(r_uring(e, b)),
            runs("uring", &uring_variant(b), &uring_floor(b))
        );
    }
    s.push_str("- kernel work per launch, the entry band the tables use:\n");
    for variant in ["completed", "posted"] {
        let _ = writeln!(
            s,
            "  - `E x r_ioctl({variant})` = {}",
            ns(ioctl_entry(e, variant))
        );
    }
    for b in BATCHES {
        let _ = writeln!(s, "  - `U({b}) x r_uring({b})` = {}", ns(uring_entry(e, b)));
    }
    let _ = writeln!(
        s,
        "- `W` = {} ns, `R` = {} ns (the chosen point; the grids cover R = {} ns and W = {} ns)",
        p.write_ns,
        p.read_ns,
        join(&R_GRID),
        join(&W_GRID)
    );
    s
}

fn join(v: &[f64]) -> String {
    let v: Vec<String> = v.iter().map(f64::to_string).collect();
    v.join(", ")
}

/// The cover letter's one row: the proposed patch per launch against ROCclr's read-back at the
/// chosen `W`, over the `R` grid, with the kernel work it adds and where that comes from.
pub fn patch_md(e: &Evidence, p: &Pcie) -> String {
    let mut s = String::new();
    let c = Comparison::new(kfd_ioctl(e), read_back(1));
    let rs = axis(&R_GRID, p.read_ns);
    let _ = writeln!(
        s,
        "The proposed KFD ioctl, one completed flush per launch, over ROCclr's read-back \
         (`{}`), at W = {} ns; in brackets, the band over every guest boot:\n",
        read_back(1).formula,
        p.write_ns
    );
    s.push('|');
    for r in &rs {
        let _ = write!(s, " {} |", bold_if(format!("R = {r}"), *r == p.read_ns));
    }
    s.push_str(" break-even R |\n|");
    s.push_str(&"---|".repeat(rs.len() + 1));
    s.push_str("\n|");
    for r in &rs {
        let at = Pcie {
            write_ns: p.write_ns,
            read_ns: *r,
        };
        let _ = write!(s, " {} |", or_dash(c.as_ref().and_then(|c| c.ratio(&at))));
    }
    let _ = writeln!(
        s,
        " {} |\n",
        break_even_cell(c.as_ref().and_then(|c| c.break_even(p.write_ns)))
    );
    match (
        ioctl_entry(e, "completed"),
        host_entry(e),
        r_ioctl(e, "completed"),
    ) {
        (Some(k), Some(h), Some(r)) => {
            let _ = writeln!(
                s,
                "What it adds to the read-back's store and round trip is a system call: \
                 `E x r_ioctl(completed)` = {}: the ioctl entry `E` = {} of the x86_64 \
                 build host (4K pages; no 64K host's system call was timed), times `r` = {}, \
                 the test module's completed FLUSH over its NOP ioctl in QEMU TCG guests \
                 ({} guest's median of boots; the band: every boot of both guests).",
                ns_cell(k),
                ns_cell(h),
                factor_cell(r, ""),
                ratio_guest(e).unwrap_or("no")
            );
        }
        _ => s.push_str("The kernel entry was not measured in this evidence.\n"),
    }
    s
}

/// The model as Markdown: the docs' generated section, and the body of `report --model`.
pub fn table_md(e: &Evidence, p: &Pcie) -> String {
    let mut s = String::new();
    per_launch_md(&mut s, e, p);
    posted_md(&mut s, e, p);
    batched_md(&mut s, e, p);
    point_md(&mut s, e, p);
    s.push_str("Inputs:\n\n");
    s.push_str(&inputs(e, p));
    s.push_str("\nSources of the PCIe defaults and of the kernel entry:\n\n");
    s.push_str(SOURCES);
    s.push('\n');
    s
}

/// `hdpflush report --model`: a title, then the docs' Markdown for the chosen `R` and `W`.
pub fn text(e: &Evidence, p: &Pcie) -> String {
    let mut s = String::from(
        "## cost model (a model: no AMD GPU measured; kernel entry from this x86_64 4K-page host \
         and TCG guests)\n\n",
    );
    s.push_str(&table_md(e, p));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn committed() -> Evidence {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/evidence/evidence.json");
        Evidence::load(&path).unwrap()
    }

    #[test]
    fn the_committed_tables_compare_like_with_like() {
        use crate::model::Delivery;
        let e = committed();
        let headline = per_launch(&e);
        assert_eq!(headline.len(), 3);
        for c in &headline {
            assert_eq!(
                c.strategy.delivery,
                Delivery::Completed,
                "{}",
                c.strategy.name
            );
            assert_eq!(c.baseline.delivery, Delivery::Completed);
            assert_eq!(c.strategy.batch, 1, "the headline is per launch");
        }
        assert!(headline[0].strategy.name.contains("proposed patch"));
        for c in posted(&e) {
            assert_eq!(c.strategy.delivery, Delivery::Posted);
            assert_eq!(c.baseline.delivery, Delivery::Posted);
        }
        for (a, b) in batched(&e) {
            assert_eq!(a.baseline.batch, 1);
            assert_eq!(b.baseline.batch, a.strategy.batch);
        }
        // The printed headline rows divide by the read-back, never by a posted store.
        let md = table_md(&e, &Pcie::default());
        let head = md.split("### Posted").next().unwrap_or_default();
        assert!(
            !head.contains("ioctl, posted") && !head.contains("`W` |"),
            "{head}"
        );
    }

    #[test]
    fn the_committed_grid_falls_with_r_and_nothing_per_launch_beats_the_read_back() {
        let e = committed();
        for c in per_launch(&e) {
            for w in W_GRID {
                let v: Vec<Band> = R_GRID
                    .iter()
                    .map(|r| {
                        c.ratio(&Pcie {
                            write_ns: w,
                            read_ns: *r,
                        })
                        .unwrap()
                    })
                    .collect();
                assert!(
                    v.windows(2).all(|p| p[1].mid < p[0].mid),
                    "{}: {v:?}",
                    c.strategy.name
                );
                assert!(v
                    .iter()
                    .all(|b| b.lo > 1.0 && b.lo <= b.mid && b.mid <= b.hi));
            }
            assert_eq!(
                c.break_even(100.0).unwrap(),
                [BreakEven::Never; 3],
                "{}",
                c.strategy.name
            );
        }
        // The batched rows cross the per-launch read-back, later with more kernel work, and
        // never the read-back batched the same way.
        for (a, b) in batched(&e) {
            let Some([BreakEven::CheaperAbove(lo), _, BreakEven::CheaperAbove(hi)]) =
                a.break_even(100.0)
            else {
                panic!("{} does not cross", a.strategy.name);
            };
            assert!(lo <= hi);
            assert_eq!(b.break_even(100.0).unwrap(), [BreakEven::Never; 3]);
        }
    }

    #[test]
    fn the_chosen_point_is_highlighted_and_added_to_the_grid() {
        let e = committed();
        let md = table_md(
            &e,
            &Pcie {
                write_ns: 75.0,
                read_ns: 700.0,
            },
        );
        assert!(md.contains("| R = 500 | **R = 700** | R = 1000 |"), "{md}");
        assert!(md.contains("| **75** |"), "{md}");
        assert!(md.contains("**W = 75**"), "{md}");
    }
}
