//! The evidence as the reviewer reads it: the text report of `hdpflush report --evidence`, and
//! the Markdown tables (provenance, targets, runs, oracle) the docs carry.

use std::fmt::Write as _;

use libflush::sim::ReadPolicy;

use crate::data::bench_report::CaseResult;
use crate::data::evidence::{medians, Evidence, PhaseRun, Place};
use crate::data::targets::{targets, Spread, Target};

/// "PASS P1 x86_64: ...: 1.07x (limit 1.15x)"; with several boots, "median 1.07x over 5
/// boots, range 1.02-1.10x". The verdict is PASS, FAIL or INCONCLUSIVE.
pub fn target_line(t: &Target) -> String {
    let verdict = t.verdict().word();
    match &t.measured {
        Ok(m) if m.boots > 1 => format!(
            "{verdict} {} {}: {}: median {}{} over {} boots, range {}-{}{} (limit {}{})",
            t.id,
            t.place,
            t.what,
            num(m.median),
            t.unit,
            m.boots,
            num(m.lo),
            num(m.hi),
            t.unit,
            num(t.limit),
            t.unit
        ),
        Ok(m) => format!(
            "{verdict} {} {}: {}: {}{} (limit {}{})",
            t.id,
            t.place,
            t.what,
            num(m.median),
            t.unit,
            num(t.limit),
            t.unit
        ),
        Err(why) => format!(
            "FAIL {} {}: {}: not measured ({why})",
            t.id, t.place, t.what
        ),
    }
}

fn num(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn policy_name(p: ReadPolicy) -> &'static str {
    match p {
        ReadPolicy::Ordered => "ordered",
        ReadPolicy::SameAddress => "same-address",
        ReadPolicy::Forwarding => "forwarding",
        ReadPolicy::Unordered => "unordered",
        ReadPolicy::DelayedFlushCompletion => "delayed-flush-completion",
    }
}

/// What a cell says when the evidence was assembled before the model knew its policy.
const NOT_IN_EVIDENCE: &str = "not in this evidence";

/// Who measured the evidence, when and where: a line per place (Markdown, also in the text).
pub fn provenance(e: &Evidence) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Measured by `{}` (hdpflush {}), assembled {}.",
        e.command,
        e.version,
        utc(e.assembled_unix)
    );
    for p in &e.places {
        if let Some(r) = p.runs.first() {
            let h = &r.report.host;
            let _ = writeln!(
                s,
                "- {}: {} kernel {}, {} CPUs{}",
                p.title(),
                h.arch,
                h.kernel,
                h.cpus,
                if p.name == "host" {
                    ""
                } else {
                    " (QEMU TCG, no KVM: absolute times are inflated; compare ratios)"
                }
            );
        }
    }
    s.push_str(&measured_with(e));
    s
}

/// The boots, their seeds and the tools the evidence was measured with, or that they were not
/// recorded (evidence from before `vm-bench --boots`).
fn measured_with(e: &Evidence) -> String {
    let Some(p) = &e.provenance else {
        let boots = e
            .guests()
            .map(|g| g.runs.iter().filter(|r| r.phase == "sim").count())
            .max()
            .unwrap_or(0);
        return format!(
            "- boots: {boots} per guest (spread across boots: n/a (1 boot)); git commit, QEMU \
             version, host CPU and rustc: not recorded\n"
        );
    };
    let mut s = String::new();
    let mut guests: Vec<&str> = Vec::new();
    for b in &p.guest_boots {
        if !guests.contains(&b.guest.as_str()) {
            guests.push(&b.guest);
        }
    }
    let per_guest: Vec<String> = guests
        .iter()
        .map(|g| {
            let boots: Vec<_> = p.guest_boots.iter().filter(|b| b.guest == *g).collect();
            let seeds: Vec<String> = boots.iter().map(|b| b.seed.to_string()).collect();
            let mut kernels: Vec<&str> = Vec::new();
            for b in &boots {
                let k = b.kernel.as_deref().unwrap_or("not printed");
                if !kernels.contains(&k) {
                    kernels.push(k);
                }
            }
            format!(
                "{g} seeds {} (kernel {})",
                seeds.join(", "),
                kernels.join(", ")
            )
        })
        .collect();
    let _ = writeln!(
        s,
        "- boots: {} per guest, the case order shuffled per boot: {}; tables give the median \
         across boots and its range (min-max)",
        p.boots,
        per_guest.join("; ")
    );
    let _ = writeln!(
        s,
        "- git {}{}; host CPU {}, kernel {}; {}; {}",
        p.git_commit,
        if p.git_dirty {
            " (with uncommitted changes)"
        } else {
            ""
        },
        p.host_cpu,
        p.host_kernel,
        p.qemu.join(", "),
        p.rustc.join(", ")
    );
    s
}

/// Seconds since the epoch as "YYYY-MM-DD HH:MM UTC" (days to a civil date, H. Hinnant's
/// algorithm).
fn utc(unix: u64) -> String {
    let (days, secs) = ((unix / 86_400) as i64, unix % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        secs / 3600,
        secs % 3600 / 60
    )
}

/// The targets as a Markdown table, each with its verdict.
pub fn targets_md(e: &Evidence) -> String {
    let mut s = String::from(
        "| target | where | what | measured (median of boots) | range across boots | limit | verdict |\n|---|---|---|---|---|---|---|\n",
    );
    for t in targets(e) {
        let (measured, range) = match &t.measured {
            Ok(m) => (format!("{}{}", num(m.median), t.unit), range(m, t.unit)),
            Err(why) => (format!("not measured: {why}"), "-".to_owned()),
        };
        let verdict = t.verdict().word();
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {}{} | {} |",
            t.id,
            t.place,
            t.what,
            measured,
            range,
            num(t.limit),
            t.unit,
            if t.passed() {
                verdict.to_owned()
            } else {
                format!("**{verdict}**")
            }
        );
    }
    s
}

/// The module's targets as the cover letter carries them (those measured in the guests; the
/// host's concern libflush alone): a row per target, a column per guest, each cell the verdict
/// with the median and its range across boots.
pub fn targets_brief_md(e: &Evidence) -> String {
    let all: Vec<Target> = targets(e)
        .into_iter()
        .filter(|t| t.place != "host")
        .collect();
    let mut places: Vec<&str> = Vec::new();
    let mut rows: Vec<(&str, &str, String)> = Vec::new();
    for t in &all {
        if !places.contains(&t.place.as_str()) {
            places.push(&t.place);
        }
        let limit = format!("{}{}", num(t.limit), t.unit);
        if !rows
            .iter()
            .any(|(id, what, _)| *id == t.id && *what == t.what)
        {
            rows.push((t.id, &t.what, limit));
        }
    }
    let mut s = String::from("| target | what |");
    for p in &places {
        let _ = write!(s, " {p} |");
    }
    s.push_str(" limit |\n|---|---|");
    s.push_str(&"---|".repeat(places.len() + 1));
    s.push('\n');
    for (id, what, limit) in rows {
        let _ = write!(s, "| {id} | {what} |");
        for p in &places {
            let cell = all
                .iter()
                .find(|t| t.id == id && t.what == what && t.place == *p)
                .map_or_else(
                    || "-".to_owned(),
                    |t| {
                        let verdict = t.verdict().word();
                        let verdict = if t.passed() {
                            verdict.to_owned()
                        } else {
                            format!("**{verdict}**")
                        };
                        match &t.measured {
                            Ok(m) if m.boots > 1 => {
                                format!("{verdict} {}{} ({})", num(m.median), t.unit, range(m, ""))
                            }
                            Ok(m) => format!("{verdict} {}{}", num(m.median), t.unit),
                            Err(why) => format!("{verdict}: not measured: {why}"),
                        }
                    },
                );
            let _ = write!(s, " {cell} |");
        }
        let _ = writeln!(s, " {limit} |");
    }
    s
}

/// "1.02-1.10x", or "n/a (1 boot)".
fn range(m: &Spread, unit: &str) -> String {
    if m.boots > 1 {
        format!("{}-{}{unit}", num(m.lo), num(m.hi))
    } else {
        "n/a (1 boot)".to_owned()
    }
}

/// What the runs tables show, said once above them.
pub const RUNS_NOTE: &str = "Each value is the median across the guest's boots, and the mean's \
range (min-max) across them is shown beside it (n/a with one boot). p99 is shown only where \
each sample timed one flush (one operation of batch 1): elsewhere a sample is the average of \
several flushes and its 99th percentile is not a flush's, so it is left out (-). `ioctl` and \
`uring` rows are the module's (`/dev/hdp_flush`), not the KFD patch. The last column divides a \
module case, in each boot, by the NOP of its own path in that boot (an ioctl by the NOP ioctl, \
an io_uring submission of B flushes by the `URING_CMD` NOP of the same B; SQPOLL cases by that \
NOP submitted without SQPOLL, the only one measured) and gives the median across boots; \
nothing else is divided, so no completed flush is compared with a posted one, nor a batch \
with a single flush.";

/// `place`'s runs grouped by phase (in run order), each group one run per boot.
pub fn phase_groups(place: &Place) -> Vec<(&str, Vec<&PhaseRun>)> {
    let mut groups: Vec<(&str, Vec<&PhaseRun>)> = Vec::new();
    for r in &place.runs {
        match groups.iter_mut().find(|(p, _)| *p == r.phase) {
            Some((_, runs)) => runs.push(r),
            None => groups.push((&r.phase, vec![r])),
        }
    }
    groups
}

/// The kernel-entry floor a module case is divided by: the NOP of its own path and batch
/// (SQPOLL cases by the NOP submitted without it, the only one measured). None for a case of
/// several callers (its mean is per flush across them, not one caller's) or not the module's.
fn floor_of(c: &CaseResult) -> Option<String> {
    if c.threads != 1 {
        return None;
    }
    match c.strategy.as_str() {
        "ioctl" => Some("ioctl NOP, kernel-entry floor".to_owned()),
        "uring" => Some(format!("URING_CMD NOP batch {}", c.batch)),
        _ => None,
    }
}

/// The median across `runs` of each boot's `case` over `floor` in that boot.
fn over_floor(runs: &[&PhaseRun], case: &CaseResult, floor: &str) -> Option<f64> {
    let v: Vec<f64> = runs
        .iter()
        .filter_map(|r| {
            let c = r.case(&case.strategy, &case.variant)?;
            Some(c.mean_ns / r.case("reference", floor)?.mean_ns)
        })
        .collect();
    Spread::of(&v).map(|s| s.median)
}

/// One phase's table: a row per case, each value the median across `runs` (one per boot).
pub fn phase_table(runs: &[&PhaseRun]) -> String {
    let mut s = String::from(
        "| case | backing | mean ns | range of mean | p50 ns | p99 ns | hw/req | enters/flush | over its path's NOP |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for c in medians(runs) {
        let m = c.mean_ns;
        let cell = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), num);
        let floor = floor_of(c.case)
            .and_then(|f| over_floor(runs, c.case, &f))
            .map_or_else(|| "-".to_owned(), |r| format!("{}x", num(r)));
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            c.case.label(),
            c.case.backing.kind.tag(),
            num(m.median),
            range(&m, ""),
            cell(c.p50_ns),
            cell(c.p99_per_flush),
            cell(c.hw_flushes_per_request),
            cell(c.enters_per_flush),
            floor
        );
    }
    if let Some(first) = runs.first() {
        for sk in &first.report.skipped {
            let _ = writeln!(s, "\nskipped {}: {}", sk.strategy, sk.reason);
        }
    }
    s
}

/// Every phase as a Markdown table, each case's median across boots, a module case beside the
/// NOP of its own path.
pub fn runs_md(e: &Evidence) -> String {
    let mut s = format!("{RUNS_NOTE}\n\n");
    for p in &e.places {
        for (phase, runs) in phase_groups(p) {
            let Some(r) = runs.first() else { continue };
            let boots = if runs.len() > 1 {
                format!(" ({} boots)", runs.len())
            } else {
                String::new()
            };
            let _ = writeln!(s, "#### {}: {phase}{boots}\n", p.title());
            let _ = writeln!(s, "{}.\n", r.purpose.trim_end_matches('.'));
            let params = if r.module_params.is_empty() {
                if p.name == "host" {
                    "no module".to_owned()
                } else {
                    "module defaults".to_owned()
                }
            } else {
                format!("`insmod hdp_flush.ko {}`", r.module_params.join(" "))
            };
            let _ = writeln!(s, "{params}; `{}`.\n", r.command);
            s.push_str(&phase_table(&runs));
            s.push('\n');
        }
    }
    s
}

/// The oracle's verdicts as a Markdown table, a column per read policy.
pub fn oracle_md(e: &Evidence) -> String {
    let mut s = String::from("| strategy | variant |");
    for p in ReadPolicy::ALL {
        let _ = write!(s, " {} |", policy_name(p));
    }
    s.push_str("\n|---|---|");
    for _ in ReadPolicy::ALL {
        s.push_str("---|");
    }
    s.push('\n');
    for r in &e.oracle {
        let _ = write!(s, "| {} | {} |", r.strategy, r.variant);
        for p in ReadPolicy::ALL {
            match r.verdicts.iter().find(|v| v.policy == p) {
                Some(v) if v.passed() => s.push_str(" pass |"),
                Some(v) => {
                    let _ = write!(s, " **stale** {}/{} |", v.stale_rounds, v.rounds);
                }
                None => {
                    let _ = write!(s, " {NOT_IN_EVIDENCE} |");
                }
            }
        }
        s.push('\n');
    }
    s
}

/// Print a section's name, for the text report.
fn heading(s: &mut String, title: &str) {
    let _ = writeln!(s, "\n== {title} ==");
}

/// The whole text report: provenance, each run's table, the targets, the oracle.
pub fn text(e: &Evidence) -> String {
    let mut s = String::new();
    heading(&mut s, "evidence");
    s.push_str(&provenance(e));
    for p in &e.places {
        for (phase, runs) in phase_groups(p) {
            heading(&mut s, &format!("{}: {phase}", p.title()));
            s.push_str(&phase_table(&runs));
        }
    }
    let _ = writeln!(s, "\n{RUNS_NOTE}");
    heading(&mut s, "targets");
    for t in targets(e) {
        let _ = writeln!(s, "{}", target_line(&t));
    }
    heading(&mut s, "oracle: stale rounds per read policy (0 = pass)");
    for r in &e.oracle {
        let cells: Vec<String> = ReadPolicy::ALL
            .into_iter()
            .map(|p| match r.verdicts.iter().find(|v| v.policy == p) {
                Some(v) => format!("{}={}/{}", policy_name(p), v.stale_rounds, v.rounds),
                None => format!("{}={NOT_IN_EVIDENCE}", policy_name(p)),
            })
            .collect();
        let _ = writeln!(
            s,
            "{:<12} {:<40} {}",
            r.strategy,
            r.variant,
            cells.join("  ")
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_oracle_column_the_evidence_lacks_says_so_and_one_it_has_is_printed() {
        use libflush::sim::verdicts::{PolicyVerdict, VerdictRow};
        let verdict = |policy, stale_rounds| PolicyVerdict {
            policy,
            rounds: 600,
            stale_rounds,
        };
        let mut e = Evidence {
            version: "test".into(),
            assembled_unix: 0,
            command: "test".into(),
            places: Vec::new(),
            dispatch: None,
            provenance: None,
            oracle: vec![VerdictRow {
                strategy: "mmio-remap".into(),
                variant: "posted".into(),
                verdicts: vec![
                    verdict(ReadPolicy::Ordered, 0),
                    verdict(ReadPolicy::SameAddress, 0),
                    verdict(ReadPolicy::Forwarding, 0),
                    verdict(ReadPolicy::Unordered, 0),
                ],
            }],
        };
        let old = oracle_md(&e);
        assert!(
            old.contains("| delayed-flush-completion |")
                && old.contains("| pass | not in this evidence |"),
            "{old}"
        );
        assert!(
            text(&e).contains("delayed-flush-completion=not in this evidence"),
            "{}",
            text(&e)
        );
        e.oracle[0]
            .verdicts
            .push(verdict(ReadPolicy::DelayedFlushCompletion, 600));
        let new = oracle_md(&e);
        assert!(
            new.contains("| pass | **stale** 600/600 |") && !new.contains("not in this"),
            "{new}"
        );
        assert!(text(&e).contains("delayed-flush-completion=600/600"));
    }

    #[test]
    fn dates_are_utc_calendar_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(utc(1_795_829_212), "2026-11-28 01:26 UTC");
    }
}
