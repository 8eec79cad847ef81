//! The evidence as the reviewer reads it: the text report of `hdpflush report --evidence`, and
//! the Markdown tables (provenance, targets, runs, oracle) the docs carry.

use std::fmt::Write as _;

use libflush::sim::ReadPolicy;

use crate::data::evidence::Evidence;
use crate::data::targets::{targets, Target};
use crate::print::bench_report;

/// "PASS P1 x86_64: ... 1.07x <= 1.15x".
pub fn target_line(t: &Target) -> String {
    let verdict = if t.passed() { "PASS" } else { "FAIL" };
    match &t.measured {
        Ok(m) => format!(
            "{verdict} {} {}: {}: {}{} (limit {}{})",
            t.id,
            t.place,
            t.what,
            num(*m),
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
        "| target | where | what | measured | limit | verdict |\n|---|---|---|---|---|---|\n",
    );
    for t in targets(e) {
        let measured = match &t.measured {
            Ok(m) => format!("{}{}", num(*m), t.unit),
            Err(why) => format!("not measured: {why}"),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {}{} | {} |",
            t.id,
            t.place,
            t.what,
            measured,
            num(t.limit),
            t.unit,
            if t.passed() { "PASS" } else { "**FAIL**" }
        );
    }
    s
}

/// Every run as a Markdown table, each case against the fastest of its backing.
pub fn runs_md(e: &Evidence) -> String {
    let mut s = String::new();
    for p in &e.places {
        for r in &p.runs {
            let _ = writeln!(s, "#### {}: {}\n", p.title(), r.phase);
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
            let _ = writeln!(
                s,
                "| case | backing | mean ns | p50 ns | p99 ns | hw/req | enters/flush | vs fastest of its backing |\n|---|---|---|---|---|---|---|---|"
            );
            for c in &r.report.results {
                let fastest = r
                    .report
                    .results
                    .iter()
                    .filter(|o| o.backing.kind == c.backing.kind)
                    .map(|o| o.mean_ns)
                    .fold(f64::INFINITY, f64::min);
                let opt = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), num);
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} | {} | {} | {}x |",
                    c.label(),
                    c.backing.kind.tag(),
                    num(c.mean_ns),
                    num(c.p50_ns),
                    num(c.p99_ns),
                    opt(c.hw_flushes_per_request),
                    opt(c.enters_per_flush),
                    num(c.mean_ns / fastest)
                );
            }
            for sk in &r.report.skipped {
                let _ = writeln!(s, "\nskipped {}: {}", sk.strategy, sk.reason);
            }
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
        for r in &p.runs {
            heading(&mut s, &format!("{}: {}", p.title(), r.phase));
            s.push_str(&bench_report::table(&r.report));
        }
    }
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
