//! The performance targets, judged from the evidence: what each compares, the value
//! measured (or why it was not) and the limit. The text report and the docs print them.

use crate::data::bench_report::CaseResult;
use crate::data::evidence::{Evidence, PhaseRun};

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
    run.case(strategy, variant)
        .ok_or_else(|| format!("no case {strategy} ({variant})"))
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
