//! kmod/coalesce.rs (the module's group commit) under contention, on the host.
//!
//! Oracle, independent of the coalescer's own counters: a flush covers every store issued
//! before it started; a posted flush only orders them, a synchronous one also makes them land.
//! Each request issues a store, then flushes; when the flush returns its store must be covered,
//! and landed if the request was synchronous. A coalescer that let a request ride on a flush
//! already in flight when it arrived, or a synchronous request ride on a posted flush, fails
//! this as soon as the timing lines up, which the yields inside the "hardware" make likely.

#[path = "../../kmod/coalesce.rs"]
#[allow(dead_code)]
mod coalesce;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use coalesce::{Coalescer, Completed, FlushLock, Outcome};

struct StdLock(Mutex<Completed>);

impl FlushLock for StdLock {
    fn with<R>(&self, f: impl FnOnce(&mut Completed) -> R) -> R {
        f(&mut self.0.lock().unwrap())
    }
}

fn coalescer() -> Coalescer<StdLock> {
    Coalescer::new(StdLock(Mutex::new(Completed::default())))
}

/// Stores issued, stores ordered by the flushes so far, stores landed by synchronous ones.
#[derive(Default)]
struct Hdp {
    issued: AtomicU64,
    ordered: AtomicU64,
    landed: AtomicU64,
}

impl Hdp {
    fn store(&self) -> u64 {
        self.issued.fetch_add(1, Ordering::SeqCst) + 1
    }
    fn hw_flush(&self, sync: bool) -> Result<(), ()> {
        let snapshot = self.issued.load(Ordering::SeqCst);
        std::thread::yield_now(); // a flush takes time; let others arrive meanwhile
        self.ordered.fetch_max(snapshot, Ordering::SeqCst);
        if sync {
            self.landed.fetch_max(snapshot, Ordering::SeqCst);
        }
        Ok(())
    }
    /// Whether store `mine` is covered as a request of this kind needs.
    fn covers(&self, mine: u64, sync: bool) -> bool {
        let level = if sync { &self.landed } else { &self.ordered };
        level.load(Ordering::SeqCst) >= mine
    }
}

/// `threads` callers flushing at once; caller t is synchronous when `sync(t)`.
fn storm(
    threads: usize,
    per_thread: usize,
    coalesce: bool,
    sync: impl Fn(usize) -> bool + Sync,
) -> (Coalescer<StdLock>, u64) {
    let hdp = Hdp::default();
    let c = coalescer();
    let violations = AtomicU64::new(0);
    std::thread::scope(|s| {
        for t in 0..threads {
            let (hdp, c, violations, sync) = (&hdp, &c, &violations, sync(t));
            s.spawn(move || {
                for _ in 0..per_thread {
                    let mine = hdp.store();
                    c.flush(coalesce, sync, || hdp.hw_flush(sync)).unwrap();
                    if !hdp.covers(mine, sync) {
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
    let (c, violations) = storm(8, 2000, true, |_| true);
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
    let (c, _) = storm(8, 2000, true, |_| false);
    let shared = c.counters.read(false);
    assert!(shared.coalesced > 0, "{shared:?}");
    let (c, violations) = storm(8, 500, false, |_| false);
    assert_eq!(violations, 0);
    let own = c.counters.read(false);
    assert_eq!((own.hw_flushes, own.coalesced), (4000, 0), "{own:?}");
}

#[test]
fn a_synchronous_request_only_rides_on_a_synchronous_flush() {
    // Half the callers post, half wait for landing: the posted flushes must never satisfy a
    // synchronous request, while posted requests may ride on either kind.
    for _ in 0..3 {
        let (c, violations) = storm(8, 2000, true, |t| t % 2 == 0);
        assert_eq!(violations, 0);
        let v = c.counters.read(false);
        assert_eq!(v.hw_flushes + v.coalesced, v.flush_requests, "{v:?}");
    }
}

#[test]
fn a_lone_request_always_flushes_itself() {
    let c = coalescer();
    for sync in [false, true, false] {
        assert_eq!(c.flush::<()>(true, sync, || Ok(())), Ok(Outcome::Flushed));
    }
    assert_eq!(c.counters.read(false).hw_flushes, 3);
}

#[test]
fn a_failed_flush_satisfies_nobody() {
    let c = coalescer();
    assert_eq!(c.flush(true, true, || Err("bus error")), Err("bus error"));
    // The next request must not coalesce onto the failed flush.
    let ran = AtomicBool::new(false);
    let out = c.flush::<()>(true, true, || {
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
    let c = coalescer();
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
