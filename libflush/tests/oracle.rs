//! The HDP model as oracle: every strategy that flushes passes, a strategy that does not is
//! caught, and the readback strategies pass exactly under the hypotheses they rely on.

use std::sync::Arc;

use libflush::sim::oracle::{producer_consumer, read_after_gpu_write, OracleConfig};
use libflush::sim::{Hdp, HdpConfig, ReadPolicy};
use libflush::strategy::{Backing, BackingKind};
use libflush::{DummyPage, Error, Flush, Legacy, MmioRemap, Sim, StrategyKind};

/// The control: claims to flush and does nothing.
struct NoFlush;

impl Flush for NoFlush {
    fn kind(&self) -> StrategyKind {
        StrategyKind::Sim
    }
    fn backing(&self) -> Backing {
        Backing::new(BackingKind::Simulator, "no-op control")
    }
    fn flush(&self) -> libflush::Result<()> {
        Ok(())
    }
    fn invalidate(&self) -> libflush::Result<()> {
        Ok(())
    }
}

const PAYLOAD: usize = 0;
const LEGACY_REGION: usize = 64 * 1024;
const DUMMY_PAGE: usize = 128 * 1024;

fn model(read_policy: ReadPolicy, seed: u64) -> Arc<Hdp> {
    Hdp::new(HdpConfig {
        read_policy,
        seed,
        ..HdpConfig::default()
    })
}

/// Build the named strategy on `hdp`.
fn strategy(name: &str, hdp: &Arc<Hdp>) -> Box<dyn Flush> {
    match name {
        "sim" => Box::new(Sim::with_model(Arc::clone(hdp))),
        "mmio-remap" => Box::new(MmioRemap::new(hdp.remap_page()).unwrap()),
        "legacy" => Box::new(Legacy::new(hdp.vram_window(LEGACY_REGION, 4096)).unwrap()),
        "dummy-page" => Box::new(DummyPage::new(hdp.vram_window(DUMMY_PAGE, 4096)).unwrap()),
        "no-flush" => Box::new(NoFlush),
        other => panic!("unknown strategy {other}"),
    }
}

fn run(name: &str, policy: ReadPolicy, seed: u64) -> libflush::sim::oracle::OracleReport {
    let hdp = model(policy, seed);
    let flusher = strategy(name, &hdp);
    let payload = hdp.vram_window(PAYLOAD, 4096);
    producer_consumer(&hdp, &payload, flusher.as_ref(), OracleConfig::default()).unwrap()
}

#[test]
fn the_oracle_catches_a_missing_flush_under_every_read_policy() {
    for policy in [
        ReadPolicy::Ordered,
        ReadPolicy::Forwarding,
        ReadPolicy::Unordered,
    ] {
        let report = run("no-flush", policy, 1);
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
    for name in ["sim", "mmio-remap"] {
        for policy in [
            ReadPolicy::Ordered,
            ReadPolicy::Forwarding,
            ReadPolicy::Unordered,
        ] {
            for seed in 1..=3 {
                let report = run(name, policy, seed);
                assert!(report.passed(), "{name} {policy:?} seed {seed}: {report:?}");
                assert_eq!(report.rounds, OracleConfig::default().rounds);
            }
        }
    }
}

#[test]
fn readback_flushes_pass_exactly_when_a_read_drains_the_fifo() {
    for name in ["legacy", "dummy-page"] {
        for seed in 1..=3 {
            let ordered = run(name, ReadPolicy::Ordered, seed);
            assert!(
                ordered.passed(),
                "{name} must flush when reads drain: {ordered:?}"
            );
        }
        // They read back an address they just wrote: a forwarding HDP answers from the FIFO.
        let forwarding = run(name, ReadPolicy::Forwarding, 1);
        assert!(
            !forwarding.passed(),
            "{name} cannot flush a forwarding HDP: {forwarding:?}"
        );
        let unordered = run(name, ReadPolicy::Unordered, 1);
        assert!(
            !unordered.passed(),
            "{name} cannot flush an unordered HDP: {unordered:?}"
        );
    }
}

#[test]
fn the_readback_strategies_really_read_back_through_the_bar() {
    for name in ["legacy", "dummy-page"] {
        let hdp = model(ReadPolicy::Ordered, 1);
        strategy(name, &hdp).flush().unwrap();
        let stats = hdp.stats();
        assert_eq!(stats.bar_reads, 1, "{name}: one readback per flush");
        assert_eq!(
            stats.flush_register_writes, 0,
            "{name} must not touch the flush register"
        );
    }
    let hdp = model(ReadPolicy::Ordered, 1);
    let dummy = strategy("dummy-page", &hdp);
    dummy.flush().unwrap();
    assert_eq!(
        hdp.stats().bar_writes,
        2,
        "dummy page: two stores per flush"
    );
}

#[test]
fn invalidate_makes_gpu_writes_visible_and_the_oracle_catches_a_missing_one() {
    let hdp = model(ReadPolicy::Ordered, 1);
    let result = hdp.vram_window(4096, 64);
    let sim = strategy("sim", &hdp);
    let ok = read_after_gpu_write(&hdp, &result, sim.as_ref(), 50).unwrap();
    assert!(ok.passed(), "{ok:?}");

    let hdp = model(ReadPolicy::Ordered, 1);
    let result = hdp.vram_window(4096, 64);
    let caught = read_after_gpu_write(&hdp, &result, &NoFlush, 50).unwrap();
    assert_eq!(caught.stale_rounds, 50, "{caught:?}");
}

#[test]
fn strategies_without_an_invalidate_register_say_so() {
    let hdp = model(ReadPolicy::Ordered, 1);
    let result = hdp.vram_window(4096, 64);
    for name in ["mmio-remap", "legacy", "dummy-page"] {
        let s = strategy(name, &hdp);
        let err = read_after_gpu_write(&hdp, &result, s.as_ref(), 1).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Unsupported {
                    op: "invalidate",
                    ..
                }
            ),
            "{name}: {err}"
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
        fn flush(&self) -> libflush::Result<()> {
            Err(Error::os("test", "flush", nix::errno::Errno::EIO))
        }
    }
    let hdp = model(ReadPolicy::Ordered, 1);
    let payload = hdp.vram_window(PAYLOAD, 4096);
    let err = producer_consumer(&hdp, &payload, &Broken, OracleConfig::default()).unwrap_err();
    assert!(err.to_string().contains("EIO"), "{err}");
}
