//! A capped pool of [`TaggedRing`]s, each process its own: a call takes a ring, runs on it
//! without holding any lock, and puts it back, so threads sharing a handle never wait for each
//! other's completions.
//!
//! - **Cap.** At most `max_rings` rings (default: the CPUs this process may run on). A caller
//!   that finds every ring in use waits for one to come back rather than setting up another:
//!   more callers than CPUs are not all running anyway, under SQPOLL each waiting caller spins
//!   on its completion queue, and every ring costs a file descriptor and locked memory (its
//!   queues; charged to `RLIMIT_MEMLOCK` before Linux 5.12).
//! - **Refusal.** If the kernel refuses a further ring (the locked-memory limit, say), the cap
//!   drops to the rings that exist and the caller waits for one of them; only a pool with no
//!   ring at all fails (with [`crate::Error::UringRefused`]).
//! - **Fork.** The rings live in a [`PerProcess`] set: a child never sees its parent's rings
//!   (it abandons them on first use, closing its copies, which leaves the parent's alone) and
//!   sets up its own.

use std::mem::ManuallyDrop;
use std::num::NonZeroUsize;
use std::ops::{Deref, DerefMut};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use crate::fork::{Abandon, PerProcess};
use crate::ring::{RingCounters, RingSetup, TaggedRing};
use crate::Result;

/// Rings set up alike, shared by the threads of a handle.
pub(crate) struct RingPool {
    setup: RingSetup,
    max_rings: Option<NonZeroUsize>,
    counters: RingCounters,
    rings: PerProcess<Rings>,
    /// A test's stand-in for a kernel that refuses further rings.
    #[cfg(test)]
    refuse: std::sync::atomic::AtomicBool,
}

/// One process's rings.
struct Rings {
    idle: Mutex<Idle>,
    /// Signalled when a ring comes back or a slot frees up, if anyone waits: a notification is
    /// a `futex` system call, which a flush under SQPOLL must not make.
    returned: Condvar,
    /// Notifications sent, for a test.
    #[cfg(test)]
    notified: std::sync::atomic::AtomicUsize,
}

struct Idle {
    rings: Vec<TaggedRing>,
    /// Rings set up and not dropped: idle, in use, or being set up.
    made: usize,
    /// The cap: `max_rings`, lowered to `made` when the kernel refuses one more.
    max: usize,
    /// Callers waiting for a ring.
    waiting: usize,
}

impl Abandon for Rings {
    fn abandon(&self) {
        // Close the child's copies of the parent's rings; if a parent's thread held the lock
        // at the fork, leave them open instead of waiting forever.
        if let Ok(mut idle) = self.idle.try_lock() {
            idle.rings.clear();
        }
    }
}

impl Rings {
    fn lock(&self) -> MutexGuard<'_, Idle> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Unlock, and wake a waiter if there is one (after `idle` changed for it).
    fn release(&self, idle: MutexGuard<'_, Idle>) {
        let wake = idle.waiting > 0;
        drop(idle);
        if wake {
            #[cfg(test)]
            self.notified
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.returned.notify_one();
        }
    }
}

/// A ring taken from the pool; it goes back when dropped (a poisoned one is dropped instead).
pub(crate) struct Lease<'a> {
    rings: &'a Rings,
    /// Taken out only by `drop`.
    ring: ManuallyDrop<TaggedRing>,
}

impl RingPool {
    /// No ring yet: each process sets its own up when it first needs one. `max_rings`: the
    /// cap, or `None` for the CPUs this process may run on.
    pub const fn new(setup: RingSetup, max_rings: Option<NonZeroUsize>) -> Self {
        Self {
            setup,
            max_rings,
            counters: RingCounters::new(),
            rings: PerProcess::new(),
            #[cfg(test)]
            refuse: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn set_up(&self) -> Result<TaggedRing> {
        #[cfg(test)]
        if self.refuse.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(crate::Error::UringRefused {
                errno: nix::errno::Errno::ENOMEM,
            });
        }
        TaggedRing::new(self.setup)
    }

    /// The counters of every ring this pool set up.
    pub fn counters(&self) -> &RingCounters {
        &self.counters
    }

    /// The rings this process's pool holds now, idle or in use.
    pub fn made(&self) -> usize {
        self.rings.get().map_or(0, |r| r.lock().made)
    }

    /// The most rings this pool sets up in one process.
    pub fn max_rings(&self) -> usize {
        self.max_rings
            .or_else(|| std::thread::available_parallelism().ok())
            .map_or(1, NonZeroUsize::get)
    }

    /// An idle ring, a new one if the cap allows, or else the first one to come back.
    pub fn take(&self) -> Result<Lease<'_>> {
        let rings = self.rings.get_or_make(|| {
            Ok(Rings {
                idle: Mutex::new(Idle {
                    rings: Vec::new(),
                    made: 0,
                    max: self.max_rings(),
                    waiting: 0,
                }),
                returned: Condvar::new(),
                #[cfg(test)]
                notified: Default::default(),
            })
        })?;
        let mut idle = rings.lock();
        loop {
            if let Some(ring) = idle.rings.pop() {
                return Ok(Lease {
                    rings,
                    ring: ManuallyDrop::new(ring),
                });
            }
            if idle.made < idle.max {
                idle.made += 1;
                drop(idle);
                // Set up outside the lock: it is a system call, and others may return rings.
                match self.set_up() {
                    Ok(ring) => {
                        return Ok(Lease {
                            rings,
                            ring: ManuallyDrop::new(ring),
                        })
                    }
                    Err(e) => {
                        idle = rings.lock();
                        idle.made -= 1;
                        if idle.made == 0 {
                            rings.release(idle);
                            return Err(e);
                        }
                        // Make do with the rings there are.
                        idle.max = idle.made;
                        continue;
                    }
                }
            }
            idle.waiting += 1;
            idle = rings
                .returned
                .wait(idle)
                .unwrap_or_else(PoisonError::into_inner);
            idle.waiting -= 1;
        }
    }
}

impl Deref for Lease<'_> {
    type Target = TaggedRing;
    fn deref(&self) -> &TaggedRing {
        &self.ring
    }
}

impl DerefMut for Lease<'_> {
    fn deref_mut(&mut self) -> &mut TaggedRing {
        &mut self.ring
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        // SAFETY: taken once, here; `self.ring` is not used after.
        let ring = unsafe { ManuallyDrop::take(&mut self.ring) };
        let mut idle = self.rings.lock();
        if ring.is_poisoned() {
            // Its slot is free for a new one; the ring itself is dropped on return, unlocked.
            idle.made -= 1;
        } else {
            idle.rings.push(ring);
        }
        self.rings.release(idle);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use io_uring::opcode;
    use std::sync::atomic::Ordering;

    fn nops(n: usize) -> impl ExactSizeIterator<Item = io_uring::squeue::Entry> {
        std::iter::repeat_n(opcode::Nop::new().build(), n)
    }

    #[test]
    fn more_threads_than_rings_wait_for_one_and_never_set_up_more() {
        const THREADS: usize = 6;
        let pool = RingPool::new(
            RingSetup {
                entries: 4,
                sqpoll_idle_ms: None,
            },
            NonZeroUsize::new(2),
        );
        let Some(first) =
            crate::skip::io_uring_or_skip(pool.take(), crate::Error::is_uring_refused)
        else {
            return;
        };
        // Both rings in use: every thread must wait for one of these two.
        let second = pool.take().unwrap();
        assert_eq!(pool.made(), 2);
        std::thread::scope(|s| {
            for _ in 0..THREADS {
                s.spawn(|| {
                    for _ in 0..200 {
                        let mut ring = pool.take().unwrap();
                        // SAFETY: NOPs reference no memory.
                        unsafe { ring.run(pool.counters(), nops(3)) }.unwrap();
                        assert!(pool.made() <= 2, "{} rings", pool.made());
                    }
                });
            }
            drop((first, second));
        });
        assert_eq!(pool.made(), 2, "six threads, cap two");
        assert_eq!(pool.counters().stale_discarded.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn when_the_kernel_refuses_another_ring_callers_share_the_rings_there_are() {
        let pool = RingPool::new(
            RingSetup {
                entries: 4,
                sqpoll_idle_ms: None,
            },
            NonZeroUsize::new(4),
        );
        let Some(first) =
            crate::skip::io_uring_or_skip(pool.take(), crate::Error::is_uring_refused)
        else {
            return;
        };
        pool.refuse.store(true, Ordering::Relaxed);
        std::thread::scope(|s| {
            let waiter = s.spawn(|| {
                let mut ring = pool.take().unwrap();
                // SAFETY: NOPs reference no memory.
                unsafe { ring.run(pool.counters(), nops(2)) }.unwrap();
            });
            // Hand the ring over only once the waiter was refused a ring of its own.
            while pool.rings.get().is_some_and(|r| r.lock().max > 1) {
                std::thread::yield_now();
            }
            drop(first);
            waiter.join().unwrap();
        });
        assert_eq!(pool.made(), 1, "the refused ring was not counted");
        // A pool with no ring at all fails with the refusal.
        let empty = RingPool::new(pool.setup, None);
        empty.refuse.store(true, Ordering::Relaxed);
        assert!(empty.take().is_err_and(|e| e.is_uring_refused()));
    }

    #[test]
    fn a_caller_nobody_waits_for_makes_no_system_call_to_return_its_ring() {
        let pool = RingPool::new(
            RingSetup {
                entries: 4,
                sqpoll_idle_ms: None,
            },
            None,
        );
        for _ in 0..100 {
            let Some(ring) =
                crate::skip::io_uring_or_skip(pool.take(), crate::Error::is_uring_refused)
            else {
                return;
            };
            drop(ring);
        }
        let rings = pool.rings.get().unwrap();
        assert_eq!(rings.notified.load(Ordering::Relaxed), 0, "futex wakes");
    }

    #[test]
    fn a_poisoned_ring_is_dropped_and_its_slot_reused() {
        let pool = RingPool::new(
            RingSetup {
                entries: 4,
                sqpoll_idle_ms: None,
            },
            NonZeroUsize::new(1),
        );
        let Some(mut ring) =
            crate::skip::io_uring_or_skip(pool.take(), crate::Error::is_uring_refused)
        else {
            return;
        };
        ring.poison_for_test();
        drop(ring);
        assert_eq!(pool.made(), 0);
        let mut ring = pool.take().unwrap();
        // SAFETY: NOPs reference no memory.
        unsafe { ring.run(pool.counters(), nops(1)) }.unwrap();
        assert_eq!(pool.made(), 1);
    }
}
