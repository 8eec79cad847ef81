// SPDX-License-Identifier: GPL-2.0 OR MIT
//! Group commit for HDP flushes: concurrent requests share one hardware flush.
//!
//! A flush makes visible every BAR store issued before it *started*. So a request may complete
//! on any flush that started after the request arrived, and on no other: joining a flush that
//! was already in flight when the request arrived could miss the requester's stores.
//!
//! Flushes are numbered; `started` counts flushes begun. A request snapshots `started` when it
//! arrives (`arrived`), then takes the device lock. Under the lock, [`State`] holds the number
//! of the last flush that succeeded, and of the last *synchronous* one; flushes are serialised
//! by the lock, so if that number is greater than `arrived`, the flush it names started after
//! the request arrived and has finished: the request is done without touching the hardware.
//! Otherwise it runs its own flush. A synchronous request (the caller asked for the flush to
//! have landed) only counts synchronous flushes: a posted one never waited for that.
//!
//! **The barrier contract.** A request may ride on a flush another CPU issues, whose barriers
//! do not order the requester's stores. So:
//! - the requester orders its BAR stores before its request (user space: a store fence after
//!   the payload, before the ioctl or the io_uring submission: `sfence` / `dsb st` / `sync`);
//! - [`FlushLock::full_barrier`] (`mb()`) runs before the arrival snapshot, so on this CPU
//!   everything before the request, the requester's stores included, is complete before the
//!   snapshot is taken; a flush numbered after the snapshot starts after them;
//! - a posted request that rides a posted flush learns of it under the lock, which the
//!   flushing CPU released after its register store: on x86_64 and arm64 that handover orders
//!   the register store before the rider's later stores to the device (docs/kernel-module.md).
//!
//! **A failed flush is shared too.** A request that could have ridden a flush had it succeeded
//! gets its error instead of repeating it: behind a dead or stuck GPU, each waiter would
//! otherwise run its own timed-out access in turn.
//!
//! **Waiting is killable.** Requests wait for the lock with [`FlushLock::with_killable`]: a
//! caller queued behind a flush stuck on a dying device can be killed ([`Killed`]). Only
//! revoking and re-attaching the hardware (bus events, which must happen) wait regardless.
//!
//! The counters STATS reports live in [`State`] too, under the same lock as the outcomes they
//! count: a reader always sees `hw_flushes + coalesced + flush_errors + flush_skipped ==
//! flush_requests`, and a reset under load zeroes all of them at one instant.
//!
//! So does the hardware itself (`State::hw`, the device's mappings): nothing reaches it without
//! the lock, and [`Coalescer::revoke`] takes it away under the lock, after which every request
//! finds `None` (the device was unbound or removed) and never a stale mapping.
//!
//! No dependency but `core`: the kernel module wraps it in a kernel mutex, and libflush's host
//! tests wrap it in a std mutex and hammer it from many threads.

use core::sync::atomic::{AtomicU64, Ordering};

/// What STATS reports for one device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// FLUSH requests that reached the lock.
    pub flush_requests: u64,
    /// Hardware flushes issued that succeeded.
    pub hw_flushes: u64,
    /// Requests satisfied by another request's flush.
    pub coalesced: u64,
    /// FLUSH requests whose hardware flush failed (or whose device is gone).
    pub flush_errors: u64,
    /// FLUSH requests with nothing to flush: the device is runtime-suspended.
    pub flush_skipped: u64,
    /// INVALIDATE requests that reached the lock.
    pub invalidates: u64,
    /// Of those, the ones whose hardware invalidate failed.
    pub invalidate_errors: u64,
    /// Requests (flush or invalidate) that came through io_uring.
    pub uring_requests: u64,
}

/// The last flush that failed: its number, whether it was synchronous, and its error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Failure<E> {
    number: u64,
    sync: bool,
    error: E,
}

/// Everything kept under the device lock. `E` is the hardware's error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct State<H, E> {
    /// Number of the last flush that succeeded, posted or synchronous.
    pub any: u64,
    /// Number of the last synchronous flush that succeeded.
    pub sync: u64,
    /// The last flush that failed, if any did.
    pub failed: Option<Failure<E>>,
    /// The counters.
    pub counters: Counters,
    /// The hardware (`None` once revoked).
    pub hw: Option<H>,
}

impl<H, E> State<H, E> {
    /// The state of a device whose hardware is `hw`.
    pub const fn new(hw: H) -> Self {
        Self {
            any: 0,
            sync: 0,
            failed: None,
            counters: Counters {
                flush_requests: 0,
                hw_flushes: 0,
                coalesced: 0,
                flush_errors: 0,
                flush_skipped: 0,
                invalidates: 0,
                invalidate_errors: 0,
                uring_requests: 0,
            },
            hw: Some(hw),
        }
    }
}

/// A request gave up waiting for the device lock: its task got a fatal signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Killed;

/// The device lock, around [`State`].
pub trait FlushLock<H, E> {
    /// Run `f` with the lock held, waiting for it however long it takes.
    fn with<R>(&self, f: impl FnOnce(&mut State<H, E>) -> R) -> R;
    /// Run `f` with the lock held, unless the caller is killed while waiting for it.
    fn with_killable<R>(&self, f: impl FnOnce(&mut State<H, E>) -> R) -> Result<R, Killed>;
    /// A full barrier (`mb()`): every earlier memory access of this CPU, to device memory too,
    /// completes before any later one.
    fn full_barrier();
}

/// What the hardware did with one flush.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Performed {
    /// It flushed.
    Flushed,
    /// There was nothing to flush (the device is runtime-suspended) and it was not touched.
    Skipped,
}

/// How a request was satisfied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// This request ran the hardware flush.
    Flushed,
    /// A flush that started after this request arrived satisfied it.
    Coalesced,
    /// The device had nothing to flush.
    Skipped,
}

/// Where a request came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Issue {
    /// An ioctl.
    Ioctl,
    /// An io_uring `URING_CMD`, served from the submitting task's task work (counted apart).
    Uring,
}

/// What a caller wants of one FLUSH.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    /// May ride on another request's flush.
    pub coalesce: bool,
    /// Needs the flush to have landed.
    pub sync: bool,
    /// Where it came from.
    pub issue: Issue,
}

/// When a request arrived: the number of flushes begun before it, taken after a full barrier.
/// Only flushes numbered above it may satisfy the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arrival(u64);

/// The coalescing state of one device whose hardware is `H`, failing with `E`.
pub struct Coalescer<L: FlushLock<H, E>, H, E> {
    lock: L,
    started: AtomicU64,
    _hw: core::marker::PhantomData<(H, E)>,
}

impl<L: FlushLock<H, E>, H, E: Copy + From<Killed>> Coalescer<L, H, E> {
    /// A coalescer around `lock`, which must start at `State::new(hw)`.
    pub const fn new(lock: L) -> Self {
        Self {
            lock,
            started: AtomicU64::new(0),
            _hw: core::marker::PhantomData,
        }
    }

    /// The lock itself.
    pub fn lock(&self) -> &L {
        &self.lock
    }

    /// `f` under the lock for a request from `issue`, unless the caller is killed waiting.
    fn locked<R>(
        &self,
        issue: Issue,
        f: impl FnOnce(&mut State<H, E>) -> Result<R, E>,
    ) -> Result<R, E> {
        self.lock.with_killable(|st| {
            if issue == Issue::Uring {
                st.counters.uring_requests += 1;
            }
            f(st)
        })?
    }

    /// A request arrives: everything this CPU did before it, the requester's stores to the
    /// device included, completes; then the snapshot of flushes begun. A request served
    /// later (io_uring's task work) keeps the arrival it had when it was issued, so requests
    /// issued together can all ride on the first flush that starts after the last of them.
    pub fn arrive(&self) -> Arrival {
        L::full_barrier();
        // SeqCst: the snapshot and the increment in `flush_arrived` are one total order, so a
        // flush numbered above the snapshot began after it.
        Arrival(self.started.load(Ordering::SeqCst))
    }

    /// Satisfy one flush request arriving now; see [`Coalescer::flush_arrived`].
    pub fn flush(
        &self,
        req: Request,
        hw: impl FnOnce(Option<&H>) -> Result<Performed, E>,
    ) -> Result<Outcome, E> {
        self.flush_arrived(self.arrive(), req, hw)
    }

    /// Satisfy one flush request that arrived at `arrived`, running `hw` on the hardware
    /// (`None` once revoked) only if no suitable flush began after it and completed meanwhile,
    /// nor failed. `hw` makes the flush land when `req.sync`.
    pub fn flush_arrived(
        &self,
        arrived: Arrival,
        req: Request,
        hw: impl FnOnce(Option<&H>) -> Result<Performed, E>,
    ) -> Result<Outcome, E> {
        let Arrival(arrived) = arrived;
        self.locked(req.issue, |st| {
            st.counters.flush_requests += 1;
            let covering = if req.sync { st.sync } else { st.any };
            if req.coalesce && covering > arrived {
                st.counters.coalesced += 1;
                return Ok(Outcome::Coalesced);
            }
            // A flush this request could have ridden failed: so does the request, untried.
            if let Some(f) = st.failed {
                if req.coalesce && f.number > arrived && (f.sync || !req.sync) {
                    st.counters.flush_errors += 1;
                    return Err(f.error);
                }
            }
            let number = self.started.fetch_add(1, Ordering::SeqCst) + 1;
            match hw(st.hw.as_ref()) {
                Err(error) => {
                    st.counters.flush_errors += 1;
                    st.failed = Some(Failure {
                        number,
                        sync: req.sync,
                        error,
                    });
                    return Err(error);
                }
                Ok(Performed::Skipped) => {
                    st.counters.flush_skipped += 1;
                    return Ok(Outcome::Skipped);
                }
                Ok(Performed::Flushed) => {}
            }
            st.counters.hw_flushes += 1;
            st.any = number;
            if req.sync {
                st.sync = number;
            }
            Ok(Outcome::Flushed)
        })
    }

    /// Run one invalidate (never coalesced: it must follow the GPU's writes, which the
    /// request, not the module, knows about), counting it.
    pub fn invalidate(
        &self,
        issue: Issue,
        hw: impl FnOnce(Option<&H>) -> Result<(), E>,
    ) -> Result<(), E> {
        self.locked(issue, |st| {
            st.counters.invalidates += 1;
            let result = hw(st.hw.as_ref());
            if result.is_err() {
                st.counters.invalidate_errors += 1;
            }
            result
        })
    }

    /// The counters, all at one instant; with `reset`, zeroed at that instant.
    pub fn counters(&self, reset: bool) -> Result<Counters, Killed> {
        self.lock.with_killable(|st| {
            let now = st.counters;
            if reset {
                st.counters = Counters::default();
            }
            now
        })
    }

    /// `f` of the hardware (`None` once revoked), under the lock.
    pub fn inspect<R>(&self, f: impl FnOnce(Option<&H>) -> R) -> Result<R, Killed> {
        self.lock.with_killable(|st| f(st.hw.as_ref()))
    }

    /// Take the hardware away: waits for the request using it, and every later one finds
    /// `None`. The caller drops what is returned (unmapping, releasing the device) after the
    /// lock is released.
    pub fn revoke(&self) -> Option<H> {
        self.lock.with(|st| st.hw.take())
    }

    /// Give a revoked device its hardware again (it came back): later requests use `hw`.
    /// Returns `hw` if the device still had hardware, so it was not needed. A failure from
    /// before is forgotten: it was the old hardware's.
    pub fn reattach(&self, hw: H) -> Option<H> {
        self.lock.with(|st| {
            if st.hw.is_some() {
                return Some(hw);
            }
            st.failed = None;
            st.hw = Some(hw);
            None
        })
    }
}
