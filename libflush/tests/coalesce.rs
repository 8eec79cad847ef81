//! kmod/coalesce.rs (the module's group commit) under contention, on the host.
//!
//! Oracle, independent of the coalescer's own counters: a flush makes visible every store
//! issued before it started. Each request issues a store, then flushes; when the flush returns,
//! its store must be visible. A coalescer that let a request ride on a flush already in flight
//! when it arrived would fail this as soon as the timing lines up, which the yields inside the
//! "hardware" make likely.

#[path = "../../kmod/coalesce.rs"]
#[allow(dead_code)]
mod coalesce;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use coalesce::{Coalescer, FlushLock, Outcome};

struct StdLock(Mutex<u64>);

impl FlushLock for StdLock {
    fn with<R>(&self, f: impl FnOnce(&mut u64) -> R) -> R {
        f(&mut self.0.lock().unwrap())
    }
}

/// Stores issued and stores the last flush made visible.
#[derive(Default)]
struct Hdp {
    issued: AtomicU64,
    visible: AtomicU64,
}

impl Hdp {
    fn store(&self) -> u64 {
        self.issued.fetch_add(1, Ordering::SeqCst) + 1
    }
    fn hw_flush(&self) -> Result<(), ()> {
        let snapshot = self.issued.load(Ordering::SeqCst);
        std::thread::yield_now(); // a flush takes time; let others arrive meanwhile
        self.visible.fetch_max(snapshot, Ordering::SeqCst);
        Ok(())
    }
}

fn storm(threads: usize, per_thread: usize, coalesce: bool) -> (Coalescer<StdLock>, u64) {
    let hdp = Hdp::default();
    let c = Coalescer::new(StdLock(Mutex::new(0)));
    let violations = AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                for _ in 0..per_thread {
                    let mine = hdp.store();
                    c.flush(coalesce, || hdp.hw_flush()).unwrap();
                    if hdp.visible.load(Ordering::SeqCst) < mine {
                        violations.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    (c, violations.into_inner())
}

#[test]
fn every_request_completes_on_a_flush_that_started_after_it_arrived() {
    let (c, violations) = storm(8, 2000, true);
    assert_eq!(violations, 0);
    let v = c.counters.read(false);
    assert_eq!(v.flush_requests, 16_000);
    assert_eq!(v.hw_flushes + v.coalesced, v.flush_requests, "{v:?}");
    assert!(v.hw_flushes <= v.flush_requests);
    assert_eq!(v.errors, 0);
}

#[test]
fn concurrent_requests_share_hardware_flushes() {
    // With eight threads and a flush that yields, requests queue behind the lock and most of
    // them find a newer flush done. Without coalescing every request flushes.
    let (c, _) = storm(8, 2000, true);
    let shared = c.counters.read(false);
    assert!(shared.coalesced > 0, "{shared:?}");
    let (c, violations) = storm(8, 500, false);
    assert_eq!(violations, 0);
    let own = c.counters.read(false);
    assert_eq!((own.hw_flushes, own.coalesced), (4000, 0), "{own:?}");
}

#[test]
fn a_lone_request_always_flushes_itself() {
    let c = Coalescer::new(StdLock(Mutex::new(0)));
    for _ in 0..3 {
        assert_eq!(c.flush::<()>(true, || Ok(())), Ok(Outcome::Flushed));
    }
    assert_eq!(c.counters.read(false).hw_flushes, 3);
}

#[test]
fn a_failed_flush_satisfies_nobody() {
    let c = Coalescer::new(StdLock(Mutex::new(0)));
    assert_eq!(c.flush(true, || Err("bus error")), Err("bus error"));
    // The next request must not coalesce onto the failed flush.
    let ran = AtomicBool::new(false);
    let out = c.flush::<()>(true, || {
        ran.store(true, Ordering::Relaxed);
        Ok(())
    });
    assert_eq!(out, Ok(Outcome::Flushed));
    assert!(ran.into_inner());
    let v = c.counters.read(true);
    assert_eq!((v.flush_requests, v.hw_flushes, v.errors), (2, 1, 1));
    assert_eq!(
        c.counters.read(false).flush_requests,
        0,
        "reset zeroed the counters"
    );
}

#[test]
fn invalidates_are_counted_and_never_coalesced() {
    let c = Coalescer::new(StdLock(Mutex::new(0)));
    let runs = AtomicU64::new(0);
    for _ in 0..5 {
        c.invalidate::<()>(|| {
            runs.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
        .unwrap();
    }
    assert_eq!(runs.into_inner(), 5);
    assert_eq!(c.counters.read(false).invalidates, 5);
}
