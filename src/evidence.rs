//! The evidence a reviewer reads: every run of `cargo xtask vm-bench` (both guests' phases and
//! the host's), libflush's dispatch cost, and the oracle's verdicts, in one JSON; the targets
//! judged from it; and the Markdown tables the docs carry, regenerated from that JSON and
//! checked against it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use libflush::sim::verdicts::{verdict_table, VerdictConfig, VerdictRow};
use libflush::sim::ReadPolicy;
use serde::{Deserialize, Serialize};

use crate::error::CliError;
use crate::report::{BenchReport, CaseResult};

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
}

/// Where phases ran: a guest or the host.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Place {
    /// "x86_64", "arm64" or "host".
    pub name: String,
    /// Its phases, in run order.
    pub runs: Vec<PhaseRun>,
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
}

/// The command the evidence comes from, as the docs name it.
pub const COMMAND: &str = "cargo xtask vm-bench";

fn read<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, CliError> {
    let text = std::fs::read_to_string(path).map_err(|e| CliError::io(path, e))?;
    serde_json::from_str(&text).map_err(|source| CliError::Json {
        path: path.to_owned(),
        source,
    })
}

/// criterion's `estimates.json`: its mean's point estimate, in ns.
fn criterion_mean(path: &Path) -> Result<f64, CliError> {
    let v: serde_json::Value = read(path)?;
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
            let mut files: Vec<PathBuf> = std::fs::read_dir(&sub)
                .map_err(|e| CliError::io(&sub, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.extension().is_some_and(|x| x == "json")
                        && !p
                            .file_name()
                            .is_some_and(|f| f.to_string_lossy().starts_with("dispatch-"))
                })
                .collect();
            files.sort();
            let mut runs: Vec<PhaseRun> =
                files.iter().map(|f| read(f)).collect::<Result<_, _>>()?;
            runs.sort_by_key(|r| phase_order(&r.phase));
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
        })
    }

    /// Read an assembled `evidence.json`.
    pub fn load(path: &Path) -> Result<Self, CliError> {
        read(path)
    }

    /// Write it as pretty JSON.
    pub fn save(&self, path: &Path) -> Result<(), CliError> {
        let text = serde_json::to_string_pretty(self).map_err(|source| CliError::Json {
            path: path.to_owned(),
            source,
        })?;
        std::fs::write(path, text + "\n").map_err(|e| CliError::io(path, e))
    }

    /// The run of `phase` at `place`.
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
}

fn phase_order(phase: &str) -> usize {
    ["sim", "sim-1us", "emulated", "gpus", "host"]
        .iter()
        .position(|p| *p == phase)
        .unwrap_or(usize::MAX)
}

/// A case of a run, by strategy and variant.
pub fn case<'a>(run: &'a PhaseRun, strategy: &str, variant: &str) -> Option<&'a CaseResult> {
    run.report
        .results
        .iter()
        .find(|c| c.strategy == strategy && c.variant == variant)
}

/// "x86_64 guest, 4K pages".
pub fn place_title(place: &Place) -> String {
    let page = place
        .runs
        .first()
        .map(|r| r.report.host.page_size / 1024)
        .unwrap_or(0);
    match place.name.as_str() {
        "host" => format!("host ({}K pages)", page),
        arch => format!("{arch} guest, {page}K pages"),
    }
}

/// One target line.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    /// "P1" ...
    pub id: &'static str,
    /// Where it was measured.
    pub place: String,
    /// What is compared.
    pub what: String,
    /// The measured value (a ratio, a count or ns), or why it was not measured.
    pub measured: Result<f64, String>,
    /// The limit it must not exceed.
    pub limit: f64,
    /// How the value reads, e.g. "x" or " hw flushes/request".
    pub unit: &'static str,
}

impl Target {
    /// Measured and within the limit.
    pub fn passed(&self) -> bool {
        self.measured.as_ref().is_ok_and(|&m| m <= self.limit)
    }
}

/// `strategy (variant)` in `run`, or why it is not there.
fn find<'a>(
    run: Option<&'a PhaseRun>,
    strategy: &str,
    variant: &str,
) -> Result<&'a CaseResult, String> {
    let run = run.ok_or_else(|| "phase not run".to_owned())?;
    case(run, strategy, variant).ok_or_else(|| format!("no case {strategy} ({variant})"))
}

/// Every target of the issue, judged from `e`.
pub fn targets(e: &Evidence) -> Vec<Target> {
    let mut out = Vec::new();
    for g in e.guests() {
        let place = g.name.clone();
        let sim = e.run(&g.name, "sim");
        let slow = e.run(&g.name, "sim-1us");
        let ratio = |run: Option<&PhaseRun>, a: (&str, &str), b: (&str, &str)| {
            Ok(find(run, a.0, a.1)?.mean_ns / find(run, b.0, b.1)?.mean_ns)
        };
        let push = |out: &mut Vec<Target>, id, what: &str, measured, limit, unit| {
            out.push(Target {
                id,
                place: place.clone(),
                what: what.to_owned(),
                measured,
                limit,
                unit,
            });
        };
        for completion in ["completed", "posted"] {
            push(
                &mut out,
                "P1",
                &format!("ioctl FLUSH ({completion}), sim backend, 0 delay / NOP ioctl"),
                ratio(
                    sim,
                    ("ioctl", completion),
                    ("reference", "ioctl NOP, kernel-entry floor"),
                ),
                1.15,
                "x",
            );
        }
        push(
            &mut out,
            "P2",
            "uring batch 32 per flush / io_uring NOP batch 32",
            ratio(
                sim,
                ("uring", "completed, batch 32"),
                ("reference", "io_uring NOP batch 32"),
            ),
            1.2,
            "x",
        );
        for variant in ["completed, batch 1, sqpoll", "completed, batch 32, sqpoll"] {
            let v = find(sim, "uring", variant).and_then(|c| {
                c.enters_per_flush
                    .ok_or_else(|| "io_uring_enter calls were not counted".to_owned())
            });
            push(
                &mut out,
                "P2",
                &format!("SQPOLL steady state ({variant}): io_uring_enter per flush"),
                v,
                0.0,
                " enters/flush",
            );
        }
        let hw = |strategy: &str, variant: &str, scale: f64| {
            find(slow, strategy, variant).and_then(|c| {
                c.hw_flushes_per_request
                    .map(|h| h * scale)
                    .ok_or_else(|| "STATS were not read".to_owned())
            })
        };
        push(
            &mut out,
            "P3",
            "8 callers, 1 us round trip: hardware flushes per request",
            hw("ioctl", "completed, 8 threads", 1.0),
            0.5,
            " hw/req",
        );
        push(
            &mut out,
            "P3",
            "io_uring batch of 32, 1 us round trip: hardware flushes per batch",
            hw("uring", "completed, batch 32", 32.0),
            2.0,
            " hw/batch",
        );
    }
    out.push(Target {
        id: "P5",
        place: "host".into(),
        what: "libflush dispatch: dyn Flush minus a direct call (criterion)".into(),
        measured: e
            .dispatch
            .as_ref()
            .map(|d| d.dyn_ns - d.direct_ns)
            .ok_or_else(|| "criterion's dispatch estimates missing".to_owned()),
        limit: 5.0,
        unit: " ns",
    });
    out
}

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
    }
}

/// The Markdown sections the docs carry, by name.
pub fn sections(e: &Evidence) -> BTreeMap<&'static str, String> {
    let mut m = BTreeMap::new();
    m.insert("provenance", provenance(e));
    m.insert("targets", targets_md(e));
    m.insert("runs", runs_md(e));
    m.insert("oracle", oracle_md(e));
    m.insert(
        "model",
        crate::model::table_md(e, &crate::model::Pcie::default()),
    );
    m
}

fn provenance(e: &Evidence) -> String {
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
                place_title(p),
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

fn targets_md(e: &Evidence) -> String {
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

fn runs_md(e: &Evidence) -> String {
    let mut s = String::new();
    for p in &e.places {
        for r in &p.runs {
            let _ = writeln!(s, "#### {}: {}\n", place_title(p), r.phase);
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

fn oracle_md(e: &Evidence) -> String {
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
        for v in &r.verdicts {
            if v.passed() {
                let _ = write!(s, " pass |");
            } else {
                let _ = write!(s, " **stale** {}/{} |", v.stale_rounds, v.rounds);
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
            heading(&mut s, &format!("{}: {}", place_title(p), r.phase));
            s.push_str(&crate::report::table(&r.report));
        }
    }
    heading(&mut s, "targets");
    for t in targets(e) {
        let _ = writeln!(s, "{}", target_line(&t));
    }
    heading(&mut s, "oracle: stale rounds per read policy (0 = pass)");
    for r in &e.oracle {
        let cells: Vec<String> = r
            .verdicts
            .iter()
            .map(|v| format!("{}={}/{}", policy_name(v.policy), v.stale_rounds, v.rounds))
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

/// The markers around a generated section in a doc.
fn markers(name: &str) -> (String, String) {
    (
        format!("<!-- generated:{name} by `hdpflush report --evidence docs/evidence/evidence.json --update-docs docs`; do not edit -->"),
        format!("<!-- end generated:{name} -->"),
    )
}

/// `doc` with every generated section replaced by `sections`' text; an error names a section
/// the doc opens and never closes, or one that does not exist.
pub fn regenerate(doc: &str, sections: &BTreeMap<&str, String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = doc;
    const OPEN: &str = "<!-- generated:";
    while let Some(i) = rest.find(OPEN) {
        let start = i + OPEN.len();
        let name_end = rest[start..]
            .find(' ')
            .map(|j| start + j)
            .ok_or("unterminated generated marker")?;
        let name = &rest[start..name_end];
        let (begin, end) = markers(name);
        let body = sections
            .get(name)
            .ok_or_else(|| format!("unknown generated section `{name}`"))?;
        let close = rest[i..]
            .find(&end)
            .map(|j| i + j)
            .ok_or_else(|| format!("generated section `{name}` is never closed"))?;
        out.push_str(&rest[..i]);
        let _ = write!(out, "{begin}\n{body}{end}");
        rest = &rest[close + end.len()..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The docs that carry generated sections.
pub const DOCS: [&str; 2] = ["patch-evidence.md", "cost-model.md"];

/// Rewrite (or, with `check`, compare) the generated sections of `docs_dir`'s docs.
pub fn update_docs(e: &Evidence, docs_dir: &Path, check: bool) -> Result<(), CliError> {
    let sections = sections(e);
    let mut stale = Vec::new();
    for name in DOCS {
        let path = docs_dir.join(name);
        let doc = std::fs::read_to_string(&path).map_err(|err| CliError::io(&path, err))?;
        let new = regenerate(&doc, &sections)
            .map_err(|why| CliError::Selection(format!("{}: {why}", path.display())))?;
        if !doc.contains("<!-- generated:") {
            return Err(CliError::Selection(format!(
                "{}: carries no generated section",
                path.display()
            )));
        }
        if new != doc {
            if check {
                stale.push(path.display().to_string());
            } else {
                std::fs::write(&path, new).map_err(|err| CliError::io(&path, err))?;
                crate::emit(&format!("updated {}\n", path.display()))?;
            }
        }
    }
    if stale.is_empty() {
        Ok(())
    } else {
        Err(CliError::Selection(format!(
            "the tables in {} do not match the evidence JSON; regenerate them with `hdpflush report --evidence docs/evidence/evidence.json --update-docs docs`",
            stale.join(", ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_calendar_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(utc(1_795_829_212), "2026-11-28 01:26 UTC");
    }

    #[test]
    fn generated_sections_are_replaced_and_unknown_or_open_ones_refused() {
        let mut sections = BTreeMap::new();
        sections.insert("targets", "| new |\n".to_owned());
        let (b, e) = markers("targets");
        let doc = format!("intro\n{b}\n| old |\n{e}\noutro\n");
        let new = regenerate(&doc, &sections).unwrap();
        assert_eq!(new, format!("intro\n{b}\n| new |\n{e}\noutro\n"));
        assert_eq!(regenerate(&new, &sections).unwrap(), new, "idempotent");
        let (b2, e2) = markers("nope");
        assert!(regenerate(&format!("{b2}\n{e2}"), &sections)
            .unwrap_err()
            .contains("unknown"));
        assert!(regenerate(&format!("{b}\n| old |\n"), &sections)
            .unwrap_err()
            .contains("never closed"));
    }
}
