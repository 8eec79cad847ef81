//! The HDP model as oracle: every strategy passes with its barriers; without any one of them,
//! or without the flush, the GPU reads stale data; the readback strategies pass exactly under
//! the read semantics they rely on.
//!
//! `ioctl` and `uring` are `KernelFlush` over their transports, exactly as `sim` is over the
//! in-process model: the barrier code tested here as `sim` is theirs.

use std::sync::Arc;

use libflush::sim::oracle::{producer_consumer, read_after_gpu_write, OracleConfig, OracleReport};
use libflush::sim::verdicts::NoFlush;
use libflush::sim::{Hdp, HdpConfig, ReadPolicy};
use libflush::strategy::{Backing, BackingKind};
use libflush::{Completion, DummyPage, Error, Flush, Legacy, MmioRemap, Sim, StrategyKind};

const PAYLOAD: usize = 0;
const LEGACY_REGION: usize = 64 * 1024;
const DUMMY_PAGE: usize = 128 * 1024;
const SEEDS: [u64; 3] = [1, 2, 3];

/// A strategy in one mode, and the barriers it issues per flush, in order.
struct Case {
    name: &'static str,
    fences: &'static [&'static str],
    build: fn(&Arc<Hdp>) -> Box<dyn Flush>,
}

const KERNEL_POSTED: Case = Case {
    name: "ioctl/uring/sim, posted",
    fences: &[
        "store fence before the request",
        "store fence after the posted request",
    ],
    build: |hdp| Box::new(Sim::with_model(Arc::clone(hdp), Completion::Posted)),
};
const KERNEL_COMPLETED: Case = Case {
    name: "ioctl/uring/sim, completed",
    fences: &["store fence before the request"],
    build: |hdp| Box::new(Sim::with_model(Arc::clone(hdp), Completion::Completed)),
};
const REMAP_POSTED: Case = Case {
    name: "mmio-remap, posted",
    fences: &[
        "store fence before the register store",
        "store fence after the register store",
    ],
    build: |hdp| Box::new(MmioRemap::new(hdp.remap_page(), Completion::Posted).unwrap()),
};
const REMAP_COMPLETED: Case = Case {
    name: "mmio-remap, completed (ROCclr)",
    fences: &[
        "store fence before the register store",
        "full fence after the read-back",
    ],
    build: |hdp| Box::new(MmioRemap::new(hdp.remap_page(), Completion::Completed).unwrap()),
};
const LEGACY: Case = Case {
    name: "legacy",
    fences: &[
        "store fence before the sentinel store",
        "full fence before the read-back",
        "full fence after the read-back",
    ],
    build: |hdp| Box::new(Legacy::new(hdp.vram_window(LEGACY_REGION, 4096)).unwrap()),
};
const DUMMY: Case = Case {
    name: "dummy-page",
    fences: &[
        "store fence before the two stores",
        "full fence before the read-back",
        "full fence after the read-back",
    ],
    build: |hdp| Box::new(DummyPage::new(hdp.vram_window(DUMMY_PAGE, 4096)).unwrap()),
};

const REGISTER_CASES: [Case; 4] = [
    KERNEL_POSTED,
    KERNEL_COMPLETED,
    REMAP_POSTED,
    REMAP_COMPLETED,
];
const READBACK_CASES: [Case; 2] = [LEGACY, DUMMY];

fn model(read_policy: ReadPolicy, seed: u64, remove_fence: Option<usize>) -> Arc<Hdp> {
    Hdp::new(HdpConfig {
        read_policy,
        seed,
        remove_fence,
        ..HdpConfig::default()
    })
}

fn run_with(
    build: impl Fn(&Arc<Hdp>) -> Box<dyn Flush>,
    policy: ReadPolicy,
    seed: u64,
    remove_fence: Option<usize>,
) -> OracleReport {
    let hdp = model(policy, seed, remove_fence);
    let flusher = build(&hdp);
    let payload = hdp.vram_window(PAYLOAD, 4096);
    let report = producer_consumer(&hdp, &payload, flusher.as_ref(), OracleConfig::default());
    let report = report.unwrap();
    // A removed barrier is removed in every round (and only one): the strategy ran without
    // it throughout, not by chance. Past the last barrier, nothing is removed.
    let removed = hdp.stats().removed_fences;
    assert!(
        removed == 0 || removed == u64::from(OracleConfig::default().rounds),
        "{removed} barriers removed in {} rounds",
        OracleConfig::default().rounds
    );
    report
}

fn run(case: &Case, policy: ReadPolicy, seed: u64) -> OracleReport {
    run_with(case.build, policy, seed, None)
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
        let report = run_with(|_| Box::new(NoFlush), policy, 1, None);
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
fn register_flushes_pass_under_every_read_policy() {
    for case in &REGISTER_CASES {
        assert_eq!(passing_policies(case), ReadPolicy::ALL, "{}", case.name);
    }
}

#[test]
fn readback_flushes_pass_exactly_when_a_read_waits_for_the_writes_before_it() {
    for case in &READBACK_CASES {
        // They read back an address they just wrote: a forwarding HDP answers from the FIFO,
        // an unordered one never drains for a read.
        assert_eq!(
            passing_policies(case),
            [ReadPolicy::Ordered, ReadPolicy::SameAddress],
            "{}",
            case.name
        );
    }
}

#[test]
fn each_strategy_issues_exactly_its_documented_barriers() {
    for case in REGISTER_CASES.iter().chain(&READBACK_CASES) {
        let hdp = model(ReadPolicy::Ordered, 1, None);
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
            let caught = policies.iter().find_map(|&policy| {
                SEEDS.iter().find_map(|&seed| {
                    let r = run_with(case.build, policy, seed, Some(n));
                    (!r.passed()).then_some((policy, seed, r))
                })
            });
            let (policy, seed, report) = caught.unwrap_or_else(|| {
                panic!(
                    "{}: removing the {fence} (barrier {n}) goes unnoticed under {policies:?}",
                    case.name
                )
            });
            table.push(format!(
                "| {} | {fence} | {policy:?}, seed {seed}: {} of {} rounds stale |",
                case.name, report.stale_rounds, report.rounds
            ));
        }
        // The control: "removing" a barrier past the last one removes nothing.
        for &policy in &policies {
            assert!(
                run_with(case.build, policy, 1, Some(case.fences.len())).passed(),
                "{} {policy:?}",
                case.name
            );
        }
    }
    println!("{}", table.join("\n"));
}

#[test]
fn the_readback_strategies_really_read_back_through_the_bar() {
    for case in &READBACK_CASES {
        let hdp = model(ReadPolicy::Ordered, 1, None);
        (case.build)(&hdp).flush().unwrap();
        let stats = hdp.stats();
        assert_eq!(stats.bar_reads, 1, "{}: one readback per flush", case.name);
        assert_eq!(
            stats.flush_register_writes, 0,
            "{} must not touch the flush register",
            case.name
        );
    }
    let hdp = model(ReadPolicy::Ordered, 1, None);
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
        let hdp = model(ReadPolicy::Ordered, 1, None);
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
    let hdp = model(ReadPolicy::Ordered, 1, None);
    let result = hdp.vram_window(4096, 64);
    let sim = (KERNEL_COMPLETED.build)(&hdp);
    let ok = read_after_gpu_write(&hdp, &result, sim.as_ref(), 50).unwrap();
    assert!(ok.passed(), "{ok:?}");

    let hdp = model(ReadPolicy::Ordered, 1, None);
    let result = hdp.vram_window(4096, 64);
    let caught = read_after_gpu_write(&hdp, &result, &NoFlush, 50).unwrap();
    assert_eq!(caught.stale_rounds, 50, "{caught:?}");
}

#[test]
fn strategies_without_an_invalidate_register_say_so() {
    for case in [&REMAP_COMPLETED, &LEGACY, &DUMMY] {
        let hdp = model(ReadPolicy::Ordered, 1, None);
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
    let hdp = model(ReadPolicy::Ordered, 1, None);
    let payload = hdp.vram_window(PAYLOAD, 4096);
    let err = producer_consumer(&hdp, &payload, &Broken, OracleConfig::default()).unwrap_err();
    assert!(err.to_string().contains("EIO"), "{err}");
}
