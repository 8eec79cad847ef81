//! The HDP model as oracle: every strategy passes with its barriers; without any one of them,
//! with any full barrier weakened to a store barrier, or without the flush, the GPU reads stale
//! data; the readback strategies pass exactly under the read semantics they rely on, and the
//! posted register flushes fail exactly where a flush drains some time after the HDP accepted
//! it (`ReadPolicy::DelayedFlushCompletion`).
//!
//! `ioctl` and `uring` are `KernelFlush` over their transports, exactly as `sim` is over the
//! in-process model: the barrier code tested here as `sim` is theirs.

use std::sync::Arc;

use libflush::sim::oracle::{
    completed_lands, producer_consumer, read_after_gpu_write, OracleConfig, OracleReport,
};
use libflush::sim::verdicts::NoFlush;
use libflush::sim::{Hdp, HdpConfig, ReadPolicy};
use libflush::strategy::{Backing, BackingKind};
use libflush::{Completion, DummyPage, Error, Flush, Legacy, MmioRemap, Sim, StrategyKind};

const PAYLOAD: usize = 0;
const LEGACY_REGION: usize = 64 * 1024;
const DUMMY_PAGE: usize = 128 * 1024;
const SEEDS: [u64; 3] = [1, 2, 3];

/// A barrier a strategy issues, and why.
#[derive(Clone, Copy)]
enum Fence {
    /// `wmb`.
    Store(&'static str),
    /// `mb`.
    Full(&'static str),
}

impl Fence {
    fn what(self) -> &'static str {
        match self {
            Fence::Store(w) | Fence::Full(w) => w,
        }
    }
}

/// A strategy in one mode, the barriers it issues per flush, in order, and whether its flush
/// completes (has landed when it returns).
struct Case {
    name: &'static str,
    fences: &'static [Fence],
    completes: bool,
    build: fn(&Arc<Hdp>) -> Box<dyn Flush>,
}

const KERNEL_POSTED: Case = Case {
    name: "ioctl/uring/sim, posted",
    fences: &[
        Fence::Store("store fence before the request"),
        Fence::Store("store fence after the posted request"),
    ],
    completes: false,
    build: |hdp| Box::new(Sim::with_model(Arc::clone(hdp), Completion::Posted)),
};
const KERNEL_COMPLETED: Case = Case {
    name: "ioctl/uring/sim, completed",
    fences: &[Fence::Store("store fence before the request")],
    completes: true,
    build: |hdp| Box::new(Sim::with_model(Arc::clone(hdp), Completion::Completed)),
};
const REMAP_POSTED: Case = Case {
    name: "mmio-remap, posted",
    fences: &[
        Fence::Store("store fence before the register store"),
        Fence::Store("store fence after the register store"),
    ],
    completes: false,
    build: |hdp| Box::new(MmioRemap::new(hdp.remap_page(), Completion::Posted).unwrap()),
};
const REMAP_COMPLETED: Case = Case {
    name: "mmio-remap, completed (ROCclr)",
    fences: &[
        Fence::Store("store fence before the register store"),
        Fence::Full("full fence after the read-back"),
    ],
    completes: true,
    build: |hdp| Box::new(MmioRemap::new(hdp.remap_page(), Completion::Completed).unwrap()),
};
const LEGACY: Case = Case {
    name: "legacy",
    fences: &[
        Fence::Store("store fence before the sentinel store"),
        Fence::Full("full fence before the read-back"),
        Fence::Full("full fence after the read-back"),
    ],
    completes: true,
    build: |hdp| Box::new(Legacy::new(hdp.vram_window(LEGACY_REGION, 4096)).unwrap()),
};
const DUMMY: Case = Case {
    name: "dummy-page",
    fences: &[
        Fence::Store("store fence before the two stores"),
        Fence::Full("full fence before the read-back"),
        Fence::Full("full fence after the read-back"),
    ],
    completes: true,
    build: |hdp| Box::new(DummyPage::new(hdp.vram_window(DUMMY_PAGE, 4096)).unwrap()),
};

const REGISTER_CASES: [Case; 4] = [
    KERNEL_POSTED,
    KERNEL_COMPLETED,
    REMAP_POSTED,
    REMAP_COMPLETED,
];
const READBACK_CASES: [Case; 2] = [LEGACY, DUMMY];

/// What the model does to one barrier of every flush.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Change {
    Nothing,
    /// Remove the n-th barrier.
    Remove(usize),
    /// Take the n-th barrier, if full, as a store barrier.
    Weaken(usize),
}

fn model(read_policy: ReadPolicy, seed: u64, change: Change) -> Arc<Hdp> {
    Hdp::new(HdpConfig {
        read_policy,
        seed,
        remove_fence: match change {
            Change::Remove(n) => Some(n),
            _ => None,
        },
        weaken_fence: match change {
            Change::Weaken(n) => Some(n),
            _ => None,
        },
        ..HdpConfig::default()
    })
}

/// Which oracle to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Check {
    /// Payload, flush, doorbell: the GPU checks after the doorbell.
    Doorbell,
    /// Payload, flush: the GPU checks as the flush returns.
    Landed,
}

fn run_with(
    build: impl Fn(&Arc<Hdp>) -> Box<dyn Flush>,
    policy: ReadPolicy,
    seed: u64,
    change: Change,
    check: Check,
) -> OracleReport {
    let hdp = model(policy, seed, change);
    let flusher = build(&hdp);
    let payload = hdp.vram_window(PAYLOAD, 4096);
    let cfg = OracleConfig::default();
    let report = match check {
        Check::Doorbell => producer_consumer(&hdp, &payload, flusher.as_ref(), cfg),
        Check::Landed => completed_lands(&hdp, &payload, flusher.as_ref(), cfg),
    };
    let report = report.unwrap();
    // A changed barrier is changed in every round (and only one): the strategy ran without
    // it throughout, not by chance. Past the last barrier, nothing is changed.
    let stats = hdp.stats();
    let changed = stats.removed_fences + stats.weakened_fences;
    assert!(
        changed == 0 || changed == u64::from(cfg.rounds),
        "{changed} barriers changed in {} rounds",
        cfg.rounds
    );
    report
}

fn run(case: &Case, policy: ReadPolicy, seed: u64) -> OracleReport {
    run_with(case.build, policy, seed, Change::Nothing, Check::Doorbell)
}

/// The first run that goes stale with `change`, over `policies` and [`SEEDS`], with the checks
/// `case` promises: (policy, seed, check, report).
fn caught(
    case: &Case,
    policies: &[ReadPolicy],
    change: Change,
) -> Option<(ReadPolicy, u64, Check, OracleReport)> {
    let checks: &[Check] = if case.completes {
        &[Check::Doorbell, Check::Landed]
    } else {
        &[Check::Doorbell]
    };
    checks.iter().find_map(|&check| {
        policies.iter().find_map(|&policy| {
            SEEDS.iter().find_map(|&seed| {
                let r = run_with(case.build, policy, seed, change, check);
                (!r.passed()).then_some((policy, seed, check, r))
            })
        })
    })
}

/// The policies under which `case` is correct (every seed passes).
fn passing_policies(case: &Case) -> Vec<ReadPolicy> {
    ReadPolicy::ALL
        .into_iter()
        .filter(|&p| SEEDS.iter().all(|&s| run(case, p, s).passed()))
        .collect()
}

#[test]
fn the_oracle_catches_a_missing_flush_under_every_read_policy() {
    for policy in ReadPolicy::ALL {
        let report = run_with(
            |_| Box::new(NoFlush),
            policy,
            1,
            Change::Nothing,
            Check::Doorbell,
        );
        assert!(!report.passed(), "{policy:?}: no-op not caught: {report:?}");
        // Not a fluke: most rounds are stale, and the first stale word is reported.
        assert!(
            report.stale_rounds > report.rounds / 2,
            "{policy:?}: {report:?}"
        );
        let first = report.first_stale.expect("a stale read is reported");
        assert_ne!(first.expected, first.seen);
    }
}

#[test]
fn completed_register_flushes_pass_under_every_read_policy_posted_ones_not_under_a_late_drain() {
    for case in &REGISTER_CASES {
        let expected: Vec<ReadPolicy> = ReadPolicy::ALL
            .into_iter()
            .filter(|&p| case.completes || p != ReadPolicy::DelayedFlushCompletion)
            .collect();
        assert_eq!(passing_policies(case), expected, "{}", case.name);
    }
}

/// Under a late drain, the posted flushes leave the GPU stale data in most rounds, and the
/// completed ones in none: what tells them apart is the read each completed flush makes after
/// its register store (ROCclr's read-back, the kernel's posting read), which the HDP answers
/// only once the flush has drained. With no latency, the posted ones pass again.
#[test]
fn under_a_delayed_flush_completion_posted_flushes_fail_and_completed_ones_pass() {
    let policy = ReadPolicy::DelayedFlushCompletion;
    for case in &REGISTER_CASES {
        for seed in SEEDS {
            let hdp = model(policy, seed, Change::Nothing);
            let flusher = (case.build)(&hdp);
            let payload = hdp.vram_window(PAYLOAD, 4096);
            let r = producer_consumer(&hdp, &payload, flusher.as_ref(), OracleConfig::default())
                .unwrap();
            let s = hdp.stats();
            if case.completes {
                assert!(r.passed(), "{} seed {seed}: {r:?}", case.name);
                assert_eq!(
                    s.reads_that_waited_for_a_flush,
                    u64::from(r.rounds),
                    "{}: every flush's read waited for its drain",
                    case.name
                );
            } else {
                assert!(
                    r.stale_rounds > r.rounds / 2,
                    "{} seed {seed}: a posted flush passed a late drain: {r:?}",
                    case.name
                );
                assert_eq!(s.reads_that_waited_for_a_flush, 0, "{}", case.name);
                assert!(s.late_flush_drains > 0, "{}", case.name);
            }
        }
        let immediate = Hdp::new(HdpConfig {
            read_policy: policy,
            flush_latency: 0,
            ..HdpConfig::default()
        });
        let flusher = (case.build)(&immediate);
        let payload = immediate.vram_window(PAYLOAD, 4096);
        let r = producer_consumer(
            &immediate,
            &payload,
            flusher.as_ref(),
            OracleConfig::default(),
        )
        .unwrap();
        assert!(r.passed(), "{} with no latency: {r:?}", case.name);
    }
}

#[test]
fn readback_flushes_pass_exactly_when_a_read_waits_for_the_writes_before_it() {
    for case in &READBACK_CASES {
        // They read back an address they just wrote: a forwarding HDP answers from the FIFO,
        // an unordered one never drains for a read. A late flush drain does not concern them
        // (they never write the flush register; its BAR reads are ordered).
        assert_eq!(
            passing_policies(case),
            [
                ReadPolicy::Ordered,
                ReadPolicy::SameAddress,
                ReadPolicy::DelayedFlushCompletion
            ],
            "{}",
            case.name
        );
    }
}

#[test]
fn each_strategy_issues_exactly_its_documented_barriers() {
    for case in REGISTER_CASES.iter().chain(&READBACK_CASES) {
        let hdp = model(ReadPolicy::Ordered, 1, Change::Nothing);
        let flusher = (case.build)(&hdp);
        flusher.flush().unwrap();
        assert_eq!(
            hdp.stats().fences,
            case.fences.len() as u64,
            "{}: barriers per flush changed; update this test's list and docs/design.md",
            case.name
        );
    }
}

/// Removing any one barrier from any strategy lets the GPU see stale data under a read policy
/// where the intact strategy is correct. Prints which (run with `--nocapture`).
#[test]
fn removing_any_one_barrier_fails_the_oracle() {
    let mut table = vec![format!(
        "| strategy | barrier removed | first stale read (policy, seed) |\n|---|---|---|"
    )];
    for case in REGISTER_CASES.iter().chain(&READBACK_CASES) {
        let policies = passing_policies(case);
        for (n, fence) in case.fences.iter().enumerate() {
            let (policy, seed, check, report) = caught(case, &policies, Change::Remove(n))
                .unwrap_or_else(|| {
                    panic!(
                        "{}: removing the {} (barrier {n}) goes unnoticed under {policies:?}",
                        case.name,
                        fence.what()
                    )
                });
            table.push(format!(
                "| {} | {} | {policy:?}, seed {seed}{}: {} of {} rounds stale |",
                case.name,
                fence.what(),
                landed_note(check),
                report.stale_rounds,
                report.rounds
            ));
        }
        // The control: "removing" a barrier past the last one removes nothing.
        for &policy in &policies {
            for check in [Check::Doorbell, Check::Landed] {
                if check == Check::Landed && !case.completes {
                    continue;
                }
                let change = Change::Remove(case.fences.len());
                assert!(
                    run_with(case.build, policy, 1, change, check).passed(),
                    "{} {policy:?} {check:?}",
                    case.name
                );
            }
        }
    }
    println!("{}", table.join("\n"));
}

fn landed_note(check: Check) -> &'static str {
    match check {
        Check::Doorbell => "",
        Check::Landed => ", as the flush returns",
    }
}

/// Weakening any one full barrier of any strategy to a store barrier lets the GPU see stale
/// data (after the doorbell, or, for a completed flush, as it returns) under a read policy
/// where the intact strategy is correct. Prints which (run with `--nocapture`).
#[test]
fn weakening_any_full_barrier_to_a_store_barrier_fails_the_oracle() {
    let mut table = vec![format!(
        "| strategy | `mb` made a `wmb` | first stale read (policy, seed) |\n|---|---|---|"
    )];
    let mut weakened = 0;
    for case in REGISTER_CASES.iter().chain(&READBACK_CASES) {
        let policies = passing_policies(case);
        for (n, fence) in case.fences.iter().enumerate() {
            let change = Change::Weaken(n);
            let Fence::Full(what) = *fence else {
                // The control: a store barrier "weakened" is the same barrier.
                for &policy in &policies {
                    let r = run_with(case.build, policy, 1, change, Check::Doorbell);
                    assert!(r.passed(), "{} {policy:?}: {r:?}", case.name);
                }
                continue;
            };
            weakened += 1;
            let (policy, seed, check, report) =
                caught(case, &policies, change).unwrap_or_else(|| {
                    panic!(
                        "{}: the {what} (barrier {n}) as a store fence goes unnoticed under {policies:?}",
                        case.name
                    )
                });
            table.push(format!(
                "| {} | {what} | {policy:?}, seed {seed}{}: {} of {} rounds stale |",
                case.name,
                landed_note(check),
                report.stale_rounds,
                report.rounds
            ));
        }
    }
    assert_eq!(
        weakened, 5,
        "every full barrier of every strategy was tried"
    );
    println!("{}", table.join("\n"));
}

/// A completed flush has landed when it returns; a posted one has not (the model tells them
/// apart), and neither has no flush.
#[test]
fn completed_flushes_have_landed_when_they_return_and_posted_ones_have_not() {
    for case in REGISTER_CASES.iter().chain(&READBACK_CASES) {
        for policy in passing_policies(case) {
            let r = run_with(case.build, policy, 1, Change::Nothing, Check::Landed);
            assert_eq!(
                r.passed(),
                case.completes,
                "{} {policy:?}: {r:?}",
                case.name
            );
        }
    }
    let none = run_with(
        |_| Box::new(NoFlush),
        ReadPolicy::Ordered,
        1,
        Change::Nothing,
        Check::Landed,
    );
    assert_eq!(none.stale_rounds, none.rounds, "{none:?}");
}

#[test]
fn the_readback_strategies_really_read_back_through_the_bar() {
    for case in &READBACK_CASES {
        let hdp = model(ReadPolicy::Ordered, 1, Change::Nothing);
        (case.build)(&hdp).flush().unwrap();
        let stats = hdp.stats();
        assert_eq!(stats.bar_reads, 1, "{}: one readback per flush", case.name);
        assert_eq!(
            stats.flush_register_writes, 0,
            "{} must not touch the flush register",
            case.name
        );
    }
    let hdp = model(ReadPolicy::Ordered, 1, Change::Nothing);
    (DUMMY.build)(&hdp).flush().unwrap();
    assert_eq!(
        hdp.stats().bar_writes,
        2,
        "dummy page: two stores per flush"
    );
}

#[test]
fn the_remap_page_reads_back_only_when_completed() {
    for (case, reads) in [(&REMAP_COMPLETED, 1), (&REMAP_POSTED, 0)] {
        let hdp = model(ReadPolicy::Ordered, 1, Change::Nothing);
        let f = (case.build)(&hdp);
        f.flush().unwrap();
        let s = hdp.stats();
        assert_eq!(
            (s.flush_register_writes, s.register_reads),
            (1, reads),
            "{}",
            case.name
        );
        // A per-call completion overrides the flusher's own.
        let other = if reads == 1 {
            Completion::Posted
        } else {
            Completion::Completed
        };
        f.flush_with(other).unwrap();
        assert_eq!(hdp.stats().register_reads, 1, "{}", case.name);
    }
}

#[test]
fn invalidate_makes_gpu_writes_visible_and_the_oracle_catches_a_missing_one() {
    let run = |flusher: &dyn Fn(&Arc<Hdp>) -> Box<dyn Flush>, change| {
        let hdp = model(ReadPolicy::Ordered, 1, change);
        let result = hdp.vram_window(4096, 64);
        let f = flusher(&hdp);
        let report = read_after_gpu_write(&hdp, &result, f.as_ref(), 50).unwrap();
        (report, hdp.stats())
    };
    let (ok, stats) = run(&KERNEL_COMPLETED.build, Change::Nothing);
    assert!(ok.passed(), "{ok:?}");
    assert_eq!(stats.fences, 50, "one full barrier per invalidation");

    let (caught, _) = run(&|_| Box::new(NoFlush), Change::Nothing);
    assert_eq!(caught.stale_rounds, 50, "{caught:?}");

    // Without the full barrier after the request, or with a store barrier in its place, the
    // read may be satisfied from the cache as it was before the invalidation.
    for change in [Change::Remove(0), Change::Weaken(0)] {
        let (stale, stats) = run(&KERNEL_COMPLETED.build, change);
        assert_eq!(stale.stale_rounds, 50, "{change:?}: {stale:?}");
        assert_eq!(stats.removed_fences + stats.weakened_fences, 50);
    }
}

#[test]
fn strategies_without_an_invalidate_register_say_so() {
    for case in [&REMAP_COMPLETED, &LEGACY, &DUMMY] {
        let hdp = model(ReadPolicy::Ordered, 1, Change::Nothing);
        let result = hdp.vram_window(4096, 64);
        let s = (case.build)(&hdp);
        let err = read_after_gpu_write(&hdp, &result, s.as_ref(), 1).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Unsupported {
                    op: "invalidate",
                    ..
                }
            ),
            "{}: {err}",
            case.name
        );
    }
}

#[test]
fn a_failing_flush_stops_the_run_and_returns_its_error() {
    struct Broken;
    impl Flush for Broken {
        fn kind(&self) -> StrategyKind {
            StrategyKind::Ioctl
        }
        fn backing(&self) -> Backing {
            Backing::new(BackingKind::Simulator, "always fails")
        }
        fn flush_with(&self, _: Completion) -> libflush::Result<()> {
            Err(Error::os("test", "flush", nix::errno::Errno::EIO))
        }
    }
    let hdp = model(ReadPolicy::Ordered, 1, Change::Nothing);
    let payload = hdp.vram_window(PAYLOAD, 4096);
    let err = producer_consumer(&hdp, &payload, &Broken, OracleConfig::default()).unwrap_err();
    assert!(err.to_string().contains("EIO"), "{err}");
}
