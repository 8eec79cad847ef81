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

use coalesce::{Coalescer, Counters, FlushLock, Issue, Killed, Outcome, Performed, Request, State};

/// The "hardware": nothing to hold but its presence.
type Hw = ();

/// What a request fails with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// The hardware access failed.
    Failed,
    /// The hardware was revoked.
    Gone,
    /// The caller was killed waiting for the lock.
    Killed,
}

impl From<Killed> for Fault {
    fn from(_: Killed) -> Self {
        Fault::Killed
    }
}

/// A std mutex; `killed` plays a fatal signal arriving while a caller waits for it.
struct StdLock {
    state: Mutex<State<Hw, Fault>>,
    killed: AtomicBool,
}

impl FlushLock<Hw, Fault> for StdLock {
    fn with<R>(&self, f: impl FnOnce(&mut State<Hw, Fault>) -> R) -> R {
        f(&mut self.state.lock().unwrap())
    }
    fn with_killable<R>(&self, f: impl FnOnce(&mut State<Hw, Fault>) -> R) -> Result<R, Killed> {
        if self.killed.load(Ordering::SeqCst) {
            return Err(Killed);
        }
        Ok(self.with(f))
    }
    fn full_barrier() {
        std::sync::atomic::fence(Ordering::SeqCst);
    }
}

type TestCoalescer = Coalescer<StdLock, Hw, Fault>;

fn coalescer() -> TestCoalescer {
    Coalescer::new(StdLock {
        state: Mutex::new(State::new(())),
        killed: AtomicBool::new(false),
    })
}

/// A hardware flush that succeeds through `f`, and fails if the hardware was revoked.
fn on_hw(
    f: impl FnOnce() -> Result<(), Fault>,
) -> impl FnOnce(Option<&Hw>) -> Result<Performed, Fault> {
    |hw| {
        hw.ok_or(Fault::Gone)?;
        f().map(|()| Performed::Flushed)
    }
}

fn request(coalesce: bool, sync: bool) -> Request {
    Request {
        coalesce,
        sync,
        issue: Issue::Ioctl,
    }
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
    fn hw_flush(&self, sync: bool) -> Result<Performed, Fault> {
        let snapshot = self.issued.load(Ordering::SeqCst);
        std::thread::yield_now(); // a flush takes time; let others arrive meanwhile
        self.ordered.fetch_max(snapshot, Ordering::SeqCst);
        if sync {
            self.landed.fetch_max(snapshot, Ordering::SeqCst);
        }
        Ok(Performed::Flushed)
    }
    /// Whether store `mine` is covered as a request of this kind needs.
    fn covers(&self, mine: u64, sync: bool) -> bool {
        let level = if sync { &self.landed } else { &self.ordered };
        level.load(Ordering::SeqCst) >= mine
    }
}

fn sums_agree(v: &Counters) -> bool {
    v.hw_flushes + v.coalesced + v.flush_errors + v.flush_skipped == v.flush_requests
}

/// `threads` callers flushing at once; caller t is synchronous when `sync(t)`. A reader reads
/// (and, with `reset_under_load`, resets) the counters throughout, checking they always agree.
fn storm(
    threads: usize,
    per_thread: usize,
    coalesce: bool,
    sync: impl Fn(usize) -> bool + Sync,
    reset_under_load: bool,
) -> (TestCoalescer, u64) {
    let hdp = Hdp::default();
    let c = coalescer();
    let violations = AtomicU64::new(0);
    let running = AtomicBool::new(true);
    std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let mut reads = 0u64;
            while running.load(Ordering::Relaxed) {
                let v = c.counters(reset_under_load).unwrap();
                assert!(sums_agree(&v), "counters disagree mid-storm: {v:?}");
                reads += 1;
                std::thread::yield_now();
            }
            reads
        });
        let callers: Vec<_> = (0..threads)
            .map(|t| {
                let (hdp, c, violations, sync) = (&hdp, &c, &violations, sync(t));
                s.spawn(move || {
                    for _ in 0..per_thread {
                        let mine = hdp.store();
                        c.flush(request(coalesce, sync), |_| hdp.hw_flush(sync))
                            .unwrap();
                        if !hdp.covers(mine, sync) {
                            violations.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for h in callers {
            h.join().unwrap();
        }
        running.store(false, Ordering::Relaxed);
        assert!(reader.join().unwrap() > 0, "the reader read");
    });
    (c, violations.into_inner())
}

#[test]
fn every_request_completes_on_a_flush_that_started_after_it_arrived() {
    let (c, violations) = storm(8, 2000, true, |_| true, false);
    assert_eq!(violations, 0);
    let v = c.counters(false).unwrap();
    assert_eq!(v.flush_requests, 16_000);
    assert!(sums_agree(&v), "{v:?}");
    assert_eq!(v.flush_errors, 0);
}

#[test]
fn concurrent_requests_share_hardware_flushes() {
    // With eight threads and a flush that yields, requests queue behind the lock and most of
    // them find a newer flush done. Without coalescing every request flushes.
    let (c, _) = storm(8, 2000, true, |_| false, false);
    let shared = c.counters(false).unwrap();
    assert!(shared.coalesced > 0, "{shared:?}");
    let (c, violations) = storm(8, 500, false, |_| false, false);
    assert_eq!(violations, 0);
    let own = c.counters(false).unwrap();
    assert_eq!((own.hw_flushes, own.coalesced), (4000, 0), "{own:?}");
}

#[test]
fn a_synchronous_request_only_rides_on_a_synchronous_flush() {
    // Half the callers post, half wait for landing: the posted flushes must never satisfy a
    // synchronous request, while posted requests may ride on either kind.
    for _ in 0..3 {
        let (c, violations) = storm(8, 2000, true, |t| t % 2 == 0, false);
        assert_eq!(violations, 0);
        assert!(sums_agree(&c.counters(false).unwrap()));
    }
}

#[test]
fn counters_reset_under_load_still_always_agree() {
    // The reader resets at every read while eight threads flush: each read is one instant.
    let (c, violations) = storm(8, 2000, true, |t| t % 3 == 0, true);
    assert_eq!(violations, 0);
    let v = c.counters(false).unwrap();
    assert!(sums_agree(&v), "{v:?}");
    assert!(v.flush_requests < 16_000, "resets happened: {v:?}");
}

#[test]
fn a_lone_request_always_flushes_itself() {
    let c = coalescer();
    for sync in [false, true, false] {
        let out = c.flush(request(true, sync), on_hw(|| Ok(())));
        assert_eq!(out, Ok(Outcome::Flushed));
    }
    assert_eq!(c.counters(false).unwrap().hw_flushes, 3);
}

#[test]
fn a_failed_flush_satisfies_nobody() {
    let c = coalescer();
    let failed = c.flush(request(true, true), on_hw(|| Err(Fault::Failed)));
    assert_eq!(failed, Err(Fault::Failed));
    // The next request must not coalesce onto the failed flush.
    let ran = AtomicBool::new(false);
    let out = c.flush(
        request(true, true),
        on_hw(|| {
            ran.store(true, Ordering::Relaxed);
            Ok(())
        }),
    );
    assert_eq!(out, Ok(Outcome::Flushed));
    assert!(ran.into_inner());
    let v = c.counters(true).unwrap();
    assert_eq!((v.flush_requests, v.hw_flushes, v.flush_errors), (2, 1, 1));
    assert!(sums_agree(&v));
    assert_eq!(
        c.counters(false).unwrap(),
        Counters::default(),
        "reset zeroed them"
    );
}

#[test]
fn invalidates_are_counted_apart_and_never_coalesced() {
    let c = coalescer();
    let runs = AtomicU64::new(0);
    for i in 0..5 {
        let out = c.invalidate(Issue::Ioctl, |_| {
            runs.fetch_add(1, Ordering::Relaxed);
            if i == 3 {
                Err(Fault::Failed)
            } else {
                Ok(())
            }
        });
        assert_eq!(out, if i == 3 { Err(Fault::Failed) } else { Ok(()) });
    }
    assert_eq!(runs.into_inner(), 5);
    let v = c.counters(false).unwrap();
    assert_eq!((v.invalidates, v.invalidate_errors), (5, 1));
    assert_eq!(
        (v.flush_requests, v.flush_errors),
        (0, 0),
        "not mixed into flushes"
    );
}

#[test]
fn requests_issued_together_and_served_later_share_one_hardware_flush() {
    // io_uring: a submission of 32 commands is issued (each arrives), then served from task
    // work one after the other. The first flushes; it began after every arrival, so it
    // covers the other 31.
    let c = coalescer();
    for sync in [false, true] {
        let before = c.counters(false).unwrap();
        let arrivals: Vec<_> = (0..32).map(|_| c.arrive()).collect();
        let outcomes: Vec<_> = arrivals
            .into_iter()
            .map(|a| {
                let req = Request {
                    issue: Issue::Uring,
                    ..request(true, sync)
                };
                c.flush_arrived(a, req, on_hw(|| Ok(()))).unwrap()
            })
            .collect();
        assert_eq!(outcomes[0], Outcome::Flushed);
        assert!(outcomes[1..].iter().all(|&o| o == Outcome::Coalesced));
        let v = c.counters(false).unwrap();
        assert_eq!(v.hw_flushes - before.hw_flushes, 1, "sync {sync}");
        assert_eq!(v.uring_requests - before.uring_requests, 32);
    }
}

#[test]
fn two_callers_share_when_one_flush_falls_between_the_others_arrival_and_service() {
    // Why io_uring callers share flushes where ioctl callers do not (P3): an io_uring command
    // arrives when it is issued and is served later from task work, and a flush another caller
    // starts and finishes inside that gap serves it. An ioctl takes the lock right after it
    // arrives: the flush it may wait behind began before it arrived, so it flushes again.
    let c = coalescer();
    let uring = Request {
        issue: Issue::Uring,
        ..request(true, true)
    };
    let a = c.arrive();
    assert_eq!(
        c.flush(request(true, true), on_hw(|| Ok(()))),
        Ok(Outcome::Flushed),
        "the other caller's whole flush, between A's issue and its task work"
    );
    assert_eq!(
        c.flush_arrived(a, uring, on_hw(|| Ok(()))),
        Ok(Outcome::Coalesced)
    );
    // The same two callers through the ioctl: B arrives while A's flush runs, and waits for it.
    let mut b = None;
    c.flush(
        request(true, true),
        on_hw(|| {
            b = Some(c.arrive());
            Ok(())
        }),
    )
    .unwrap();
    assert_eq!(
        c.flush_arrived(b.unwrap(), request(true, true), on_hw(|| Ok(()))),
        Ok(Outcome::Flushed)
    );
    let v = c.counters(false).unwrap();
    assert_eq!((v.hw_flushes, v.coalesced), (3, 1));
}

#[test]
fn a_request_served_later_never_rides_a_flush_already_running_when_it_arrived() {
    let c = coalescer();
    let mut late = None;
    c.flush(
        request(true, true),
        on_hw(|| {
            // Arrives while this flush is in progress: its stores may have missed it.
            late = Some(c.arrive());
            Ok(())
        }),
    )
    .unwrap();
    let late = late.unwrap();
    assert_eq!(
        c.flush_arrived(late, request(true, true), on_hw(|| Ok(()))),
        Ok(Outcome::Flushed)
    );
    // One arriving after both flushes finished rides on neither.
    let now = c.arrive();
    assert_eq!(
        c.flush_arrived(now, request(true, true), on_hw(|| Ok(()))),
        Ok(Outcome::Flushed)
    );
    assert_eq!(
        c.counters(false).unwrap().uring_requests,
        0,
        "ioctls are not io_uring"
    );
}

#[test]
fn after_revoke_no_request_reaches_the_hardware_and_each_one_fails_counted() {
    let c = coalescer();
    let touched = AtomicU64::new(0);
    let flush = || {
        c.flush(
            request(true, true),
            on_hw(|| {
                touched.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }),
        )
    };
    assert_eq!(flush(), Ok(Outcome::Flushed));
    assert_eq!(
        c.revoke(),
        Some(()),
        "the hardware handed back to be released"
    );
    assert_eq!(c.revoke(), None, "once");
    for _ in 0..3 {
        assert_eq!(flush(), Err(Fault::Gone));
    }
    assert_eq!(
        c.invalidate(Issue::Ioctl, |hw| hw.map(drop).ok_or(Fault::Gone)),
        Err(Fault::Gone)
    );
    assert_eq!(touched.load(Ordering::SeqCst), 1);
    let v = c.counters(false).unwrap();
    assert_eq!(
        (v.flush_requests, v.flush_errors, v.invalidate_errors),
        (4, 3, 1)
    );
    assert!(sums_agree(&v), "{v:?}");
    assert!(c.inspect(|hw| hw.is_none()).unwrap());
}

#[test]
fn a_skipped_flush_is_counted_apart_and_covers_nobody() {
    let c = coalescer();
    let skip = |sync| c.flush(request(true, sync), |_| Ok(Performed::Skipped));
    assert_eq!(skip(true), Ok(Outcome::Skipped));
    // A skipped flush is no flush: the next request does not ride on it.
    assert_eq!(
        c.flush(request(true, true), on_hw(|| Ok(()))),
        Ok(Outcome::Flushed)
    );
    let v = c.counters(false).unwrap();
    assert_eq!((v.flush_requests, v.flush_skipped, v.hw_flushes), (2, 1, 1));
    assert!(sums_agree(&v), "{v:?}");
}

#[test]
fn revoking_under_load_leaves_every_request_answered_and_the_sums_agreeing() {
    let c = coalescer();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let _ = c.flush(request(true, true), on_hw(|| Ok(())));
                }
            });
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(c.revoke(), Some(()));
        std::thread::sleep(std::time::Duration::from_millis(20));
        stop.store(true, Ordering::Relaxed);
    });
    let v = c.counters(false).unwrap();
    assert!(v.flush_errors > 0 && v.hw_flushes > 0, "{v:?}");
    assert!(sums_agree(&v), "{v:?}");
}

#[test]
fn a_failed_flush_fails_the_requests_that_would_have_ridden_it_untried() {
    // Three requests arrive together (an io_uring batch, or waiters queued behind a dying
    // device); the first one's flush fails. The other two would have ridden it: they get its
    // error without touching the hardware again. A request arriving afterwards tries anew.
    let c = coalescer();
    let tries = AtomicU64::new(0);
    let failing = || {
        on_hw(|| {
            tries.fetch_add(1, Ordering::SeqCst);
            Err(Fault::Failed)
        })
    };
    let arrivals: Vec<_> = (0..3).map(|_| c.arrive()).collect();
    for a in arrivals {
        assert_eq!(
            c.flush_arrived(a, request(true, true), failing()),
            Err(Fault::Failed)
        );
    }
    assert_eq!(
        tries.load(Ordering::SeqCst),
        1,
        "one hardware access for three"
    );
    assert_eq!(
        c.flush(request(true, true), on_hw(|| Ok(()))),
        Ok(Outcome::Flushed),
        "a later request is not failed by an old failure"
    );
    let v = c.counters(false).unwrap();
    assert_eq!((v.flush_requests, v.flush_errors, v.hw_flushes), (4, 3, 1));
    assert!(sums_agree(&v), "{v:?}");
}

#[test]
fn a_failed_flush_is_shared_only_with_requests_that_could_have_ridden_it() {
    let c = coalescer();
    let ran = AtomicU64::new(0);
    let ok = || {
        on_hw(|| {
            ran.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
    };
    let (sync_waiter, own_flush) = (c.arrive(), c.arrive());
    // A posted flush fails: a synchronous request would not have ridden it, nor would one
    // that asked for a flush of its own.
    assert_eq!(
        c.flush(request(true, false), on_hw(|| Err(Fault::Failed))),
        Err(Fault::Failed)
    );
    assert_eq!(
        c.flush_arrived(sync_waiter, request(true, true), ok()),
        Ok(Outcome::Flushed)
    );
    assert_eq!(
        c.flush_arrived(own_flush, request(false, false), ok()),
        Ok(Outcome::Flushed)
    );
    assert_eq!(ran.load(Ordering::SeqCst), 2);
}

#[test]
fn a_caller_killed_waiting_for_the_lock_touches_nothing_and_counts_nothing() {
    let c = coalescer();
    c.flush(request(true, true), on_hw(|| Ok(()))).unwrap();
    let before = c.counters(false).unwrap();
    c.lock().killed.store(true, Ordering::SeqCst);
    let touched = AtomicBool::new(false);
    let hw = || {
        on_hw(|| {
            touched.store(true, Ordering::SeqCst);
            Ok(())
        })
    };
    assert_eq!(c.flush(request(true, true), hw()), Err(Fault::Killed));
    assert_eq!(
        c.invalidate(Issue::Uring, |_| {
            touched.store(true, Ordering::SeqCst);
            Ok(())
        }),
        Err(Fault::Killed)
    );
    assert_eq!(c.counters(false), Err(Killed));
    assert!(!touched.load(Ordering::SeqCst));
    c.lock().killed.store(false, Ordering::SeqCst);
    assert_eq!(c.counters(false).unwrap(), before, "nothing counted");
    // Revoking never gives up: the bus event must be honoured.
    c.lock().killed.store(true, Ordering::SeqCst);
    assert_eq!(c.revoke(), Some(()));
}

#[test]
fn a_reattached_device_flushes_again_and_forgets_the_old_failure() {
    let c = coalescer();
    let waiter = c.arrive();
    assert_eq!(
        c.flush(request(true, true), on_hw(|| Err(Fault::Failed))),
        Err(Fault::Failed)
    );
    assert_eq!(c.reattach(()), Some(()), "still attached: handed back");
    assert_eq!(c.revoke(), Some(()));
    assert_eq!(
        c.flush(request(true, true), on_hw(|| Ok(()))),
        Err(Fault::Gone)
    );
    assert_eq!(c.reattach(()), None, "taken");
    // The waiter from before would have ridden the old hardware's failed flush; on the new
    // hardware it runs its own.
    assert_eq!(
        c.flush_arrived(waiter, request(true, true), on_hw(|| Ok(()))),
        Ok(Outcome::Flushed)
    );
}
