// SPDX-License-Identifier: GPL-2.0 OR MIT
//! Group commit for HDP flushes: concurrent requests share one hardware flush.
//!
//! A flush makes visible every BAR store issued before it *started*. So a request may complete
//! on any flush that started after the request arrived, and on no other: joining a flush that
//! was already in flight when the request arrived could miss the requester's stores.
//!
//! Flushes are numbered; `started` counts flushes begun. A request snapshots `started` when it
//! arrives (`arrived`), then takes the flush lock. Under the lock, [`Completed`] holds the
//! number of the last flush that succeeded, and of the last *synchronous* one; flushes are
//! serialised by the lock, so if that number is greater than `arrived`, the flush it names
//! started after the request arrived and has finished: the request is done without touching
//! the hardware. Otherwise it runs its own flush. A synchronous request (the caller asked for the
//! flush to have landed) only counts synchronous flushes: a posted one never waited for that.
//!
//! No dependency but `core`: the kernel module wraps it in a kernel spinlock, and libflush's
//! host tests wrap it in a std mutex and hammer it from many threads.

use core::sync::atomic::{AtomicU64, Ordering};

/// The last completed flushes, kept under the flush lock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Completed {
    /// Number of the last flush that succeeded, posted or synchronous.
    pub any: u64,
    /// Number of the last synchronous flush that succeeded.
    pub sync: u64,
}

/// A lock around [`Completed`].
pub trait FlushLock {
    /// Run `f` with the lock held.
    fn with<R>(&self, f: impl FnOnce(&mut Completed) -> R) -> R;
}

/// How a request was satisfied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// This request ran the hardware flush.
    Flushed,
    /// A flush that started after this request arrived satisfied it.
    Coalesced,
}

/// Counters a device reports through STATS.
#[derive(Default)]
pub struct Counters {
    /// FLUSH requests received.
    pub flush_requests: AtomicU64,
    /// Hardware flushes issued.
    pub hw_flushes: AtomicU64,
    /// Requests satisfied by another request's flush.
    pub coalesced: AtomicU64,
    /// INVALIDATE requests.
    pub invalidates: AtomicU64,
    /// Requests that failed in the backend.
    pub errors: AtomicU64,
}

/// A snapshot of [`Counters`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CounterValues {
    /// See [`Counters::flush_requests`].
    pub flush_requests: u64,
    /// See [`Counters::hw_flushes`].
    pub hw_flushes: u64,
    /// See [`Counters::coalesced`].
    pub coalesced: u64,
    /// See [`Counters::invalidates`].
    pub invalidates: u64,
    /// See [`Counters::errors`].
    pub errors: u64,
}

impl Counters {
    /// Read all counters; with `reset`, zero each one as it is read.
    pub fn read(&self, reset: bool) -> CounterValues {
        let get = |c: &AtomicU64| {
            if reset {
                c.swap(0, Ordering::Relaxed)
            } else {
                c.load(Ordering::Relaxed)
            }
        };
        CounterValues {
            flush_requests: get(&self.flush_requests),
            hw_flushes: get(&self.hw_flushes),
            coalesced: get(&self.coalesced),
            invalidates: get(&self.invalidates),
            errors: get(&self.errors),
        }
    }
}

/// The coalescing state of one device.
pub struct Coalescer<L: FlushLock> {
    lock: L,
    started: AtomicU64,
    /// What STATS reports.
    pub counters: Counters,
}

impl<L: FlushLock> Coalescer<L> {
    /// A coalescer around `lock`, which must start at `Completed::default()`.
    pub const fn new(lock: L) -> Self {
        Self {
            lock,
            started: AtomicU64::new(0),
            counters: Counters {
                flush_requests: AtomicU64::new(0),
                hw_flushes: AtomicU64::new(0),
                coalesced: AtomicU64::new(0),
                invalidates: AtomicU64::new(0),
                errors: AtomicU64::new(0),
            },
        }
    }

    /// Satisfy one flush request, running `hw` only if no suitable flush completed meanwhile.
    /// `sync`: the caller needs the flush to have landed, and `hw` makes it so. With
    /// `coalesce == false` the request always runs its own hardware flush.
    pub fn flush<E>(
        &self,
        coalesce: bool,
        sync: bool,
        hw: impl FnOnce() -> Result<(), E>,
    ) -> Result<Outcome, E> {
        self.counters.flush_requests.fetch_add(1, Ordering::Relaxed);
        // SeqCst: the snapshot must not be satisfied by a flush the caller's earlier stores
        // could have missed; it pairs with the increment below.
        let arrived = self.started.load(Ordering::SeqCst);
        let result = self.lock.with(|done| {
            let covering = if sync { done.sync } else { done.any };
            if coalesce && covering > arrived {
                return Ok(Outcome::Coalesced);
            }
            let number = self.started.fetch_add(1, Ordering::SeqCst) + 1;
            hw()?;
            done.any = number;
            if sync {
                done.sync = number;
            }
            Ok(Outcome::Flushed)
        });
        match &result {
            Ok(Outcome::Flushed) => self.counters.hw_flushes.fetch_add(1, Ordering::Relaxed),
            Ok(Outcome::Coalesced) => self.counters.coalesced.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.counters.errors.fetch_add(1, Ordering::Relaxed),
        };
        result
    }

    /// Run one invalidate (never coalesced: it must follow the GPU's writes, which the
    /// request, not the module, knows about), counting it.
    pub fn invalidate<E>(&self, hw: impl FnOnce() -> Result<(), E>) -> Result<(), E> {
        self.counters.invalidates.fetch_add(1, Ordering::Relaxed);
        let result = self.lock.with(|_| hw());
        if result.is_err() {
            self.counters.errors.fetch_add(1, Ordering::Relaxed);
        }
        result
    }
}
