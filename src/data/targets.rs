//! The performance targets, judged from the evidence: what each compares, the value
//! measured (or why it was not) and the limit. The text report and the docs print them.
//!
//! A guest booted several times (`cargo xtask vm-bench --boots N`) gives one value per boot:
//! the target is judged on their median, and when the boots' spread (min to max) lies on both
//! sides of the limit, the verdict is [`Verdict::Inconclusive`] whatever the median says.

use crate::data::bench_report::CaseResult;
use crate::data::evidence::{Evidence, PhaseRun};

/// A value measured once per boot: the median of the boots and their range.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    /// The median across boots (the mean of the middle two for an even count).
    pub median: f64,
    /// The least boot's value.
    pub lo: f64,
    /// The greatest boot's value.
    pub hi: f64,
    /// How many boots gave a value.
    pub boots: usize,
}

impl Spread {
    /// The median and range of `values` (one per boot); none for no value or a non-finite one.
    pub fn of(values: &[f64]) -> Option<Self> {
        if values.is_empty() || values.iter().any(|v| !v.is_finite()) {
            return None;
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Self {
            median,
            lo: v[0],
            hi: v[n - 1],
            boots: n,
        })
    }

    /// One value, one boot.
    pub fn one(v: f64) -> Self {
        Self {
            median: v,
            lo: v,
            hi: v,
            boots: 1,
        }
    }
}

/// A target's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The median is within the limit and so is every boot.
    Pass,
    /// The median exceeds the limit and so does every boot, or nothing was measured.
    Fail,
    /// The boots lie on both sides of the limit: more boots, or a quieter host, are needed.
    Inconclusive,
}

impl Verdict {
    /// "PASS", "FAIL" or "INCONCLUSIVE".
    pub fn word(self) -> &'static str {
        match self {
            Self::Pass => "PASS",
            Self::Fail => "FAIL",
            Self::Inconclusive => "INCONCLUSIVE",
        }
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
    /// The measured value across boots (a ratio, a count or ns), or why it was not measured.
    pub measured: Result<Spread, String>,
    /// The limit it must not exceed.
    pub limit: f64,
    /// How the value reads, e.g. "x" or " hw flushes/request".
    pub unit: &'static str,
}

impl Target {
    /// Judged on the median; inconclusive when the boots' range crosses the limit.
    pub fn verdict(&self) -> Verdict {
        match &self.measured {
            Err(_) => Verdict::Fail,
            Ok(s) if s.lo <= self.limit && s.hi > self.limit => Verdict::Inconclusive,
            Ok(s) if s.median <= self.limit => Verdict::Pass,
            Ok(_) => Verdict::Fail,
        }
    }

    /// Measured and within the limit at every boot.
    pub fn passed(&self) -> bool {
        self.verdict() == Verdict::Pass
    }
}

/// One value per run in `runs` (one per boot), as a [`Spread`]; the first failure's reason
/// when no run gave one.
fn per_boot(
    runs: &[&PhaseRun],
    value: impl Fn(Option<&PhaseRun>) -> Result<f64, String>,
) -> Result<Spread, String> {
    if runs.is_empty() {
        return value(None).map(Spread::one);
    }
    let mut ok = Vec::new();
    let mut first_err = None;
    for r in runs {
        match value(Some(r)) {
            Ok(v) => ok.push(v),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    Spread::of(&ok).ok_or_else(|| first_err.unwrap_or_else(|| "not a number".to_owned()))
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
        let sim = e.runs(&g.name, "sim");
        let slow = e.runs(&g.name, "sim-1us");
        let ratio = |runs: &[&PhaseRun], a: (&str, &str), b: (&str, &str)| {
            per_boot(runs, |run| {
                Ok(find(run, a.0, a.1)?.mean_ns / find(run, b.0, b.1)?.mean_ns)
            })
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
                    &sim,
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
                &sim,
                ("uring", "completed, batch 32"),
                ("reference", "io_uring NOP batch 32"),
            ),
            1.2,
            "x",
        );
        for variant in ["completed, batch 1, sqpoll", "completed, batch 32, sqpoll"] {
            let v = per_boot(&sim, |run| {
                find(run, "uring", variant).and_then(|c| {
                    c.enters_per_flush
                        .ok_or_else(|| "io_uring_enter calls were not counted".to_owned())
                })
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
            per_boot(&slow, |run| {
                find(run, strategy, variant).and_then(|c| {
                    c.hw_flushes_per_request
                        .map(|h| h * scale)
                        .ok_or_else(|| "STATS were not read".to_owned())
                })
            })
        };
        push(
            &mut out,
            "P3",
            "8 callers through the ioctl (completed), 1 us round trip: hardware flushes per \
             request",
            hw("ioctl", "completed, 8 threads", 1.0),
            0.5,
            " hw/req",
        );
        push(
            &mut out,
            "P3",
            "8 callers through io_uring (completed, one flush per submission), 1 us round trip: \
             hardware flushes per request",
            hw("uring", "completed, batch 1, 8 threads", 1.0),
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
            .map(|d| Spread::one(d.dyn_ns - d.direct_ns))
            .ok_or_else(|| "criterion's dispatch estimates missing".to_owned()),
        limit: 5.0,
        unit: " ns",
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(values: &[f64], limit: f64) -> Target {
        Target {
            id: "P1",
            place: "x86_64".into(),
            what: "test".into(),
            measured: Spread::of(values).ok_or_else(|| "none".to_owned()),
            limit,
            unit: "x",
        }
    }

    #[test]
    fn the_median_and_range_are_over_the_boots() {
        let s = Spread::of(&[1.3, 1.0, 1.2, 5.0, 1.1]).unwrap();
        assert_eq!((s.median, s.lo, s.hi, s.boots), (1.2, 1.0, 5.0, 5));
        let even = Spread::of(&[4.0, 1.0, 2.0, 3.0]).unwrap();
        assert_eq!((even.median, even.lo, even.hi), (2.5, 1.0, 4.0));
        assert_eq!(Spread::of(&[7.0]), Some(Spread::one(7.0)));
        assert_eq!(Spread::of(&[]), None);
        assert_eq!(Spread::of(&[1.0, f64::NAN]), None);
    }

    #[test]
    fn a_spread_across_the_limit_is_inconclusive() {
        assert_eq!(target(&[1.05, 1.07, 1.10], 1.15).verdict(), Verdict::Pass);
        assert_eq!(target(&[1.20, 1.25, 1.30], 1.15).verdict(), Verdict::Fail);
        // The median passes, one boot does not: inconclusive.
        let t = target(&[1.05, 1.07, 1.10, 1.12, 1.30], 1.15);
        assert_eq!(t.verdict(), Verdict::Inconclusive);
        assert!(!t.passed());
        // The median fails, one boot passes: inconclusive too.
        assert_eq!(
            target(&[1.10, 1.20, 1.30], 1.15).verdict(),
            Verdict::Inconclusive
        );
        // Exactly at the limit is within it; one boot is judged as before.
        assert_eq!(target(&[1.15], 1.15).verdict(), Verdict::Pass);
        assert_eq!(target(&[0.0, 0.0], 0.0).verdict(), Verdict::Pass);
        assert_eq!(target(&[0.0, 0.01], 0.0).verdict(), Verdict::Inconclusive);
        assert_eq!(target(&[], 1.0).verdict(), Verdict::Fail);
        assert_eq!(Verdict::Inconclusive.word(), "INCONCLUSIVE");
    }

    #[test]
    fn a_value_missing_in_every_boot_says_why() {
        let none: Vec<&PhaseRun> = Vec::new();
        let r = per_boot(&none, |run| {
            find(run, "ioctl", "completed").map(|c| c.mean_ns)
        });
        assert_eq!(r, Err("phase not run".to_owned()));
    }
}
