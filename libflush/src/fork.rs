//! Which process this is, for as little as one atomic load: a generation that a
//! `pthread_atfork` child handler bumps.
//!
//! io_uring rings are `MAP_SHARED` and their file descriptors are inherited, so after `fork()`
//! parent and child see the same rings: each would push into the other's submission queue and
//! reap the other's completions (same tags), and both would hang. Everything that owns rings
//! records the generation it was made in and compares it before use; in a child the numbers
//! differ and the inherited rings are left alone.
//!
//! Why a generation and not the pid: glibc stopped caching `getpid()` (2.25), so comparing pids
//! is a system call per flush, which would end SQPOLL's "no system call in steady state"; a
//! cached pid needs this same fork hook to be refreshed; and pids repeat across pid namespaces.
//! A counter only the child handler changes never repeats along a line of descent: every ring
//! a process can see was made by itself or an ancestor, at a smaller generation.
//!
//! What it does not see: a child made by a raw `clone(2)` or glibc's `_Fork()`, which run no
//! fork handlers. `fork()`, and everything built on it, does.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};

use nix::errno::Errno;

use crate::{Error, Result};

/// Bumped in every child, in the child, before `fork()` returns there.
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// Whether the child handler is installed (a child inherits both the handler and this flag).
///
/// Not a `OnceLock`: a fork while another thread runs its initializer would leave the child a
/// lock that never opens. Two threads may both install the handler at first use; then a fork
/// bumps the generation twice, which is as good as once.
static HOOKED: AtomicBool = AtomicBool::new(false);

extern "C" fn in_child() {
    // Async-signal-safe: one atomic add. The child has one thread now; threads it starts later
    // see the new value through their creation.
    GENERATION.fetch_add(1, Ordering::Relaxed);
}

/// This process's generation. Installs the fork hook on first use, so a generation returned
/// here is one a later `fork()` is guaranteed to change in the child.
pub(crate) fn generation() -> Result<u64> {
    if !HOOKED.load(Ordering::Acquire) {
        // SAFETY: `in_child` is a plain function that lives as long as the program and is
        // async-signal-safe, as a fork child handler must be; no prepare or parent handler.
        match unsafe { nix::libc::pthread_atfork(None, None, Some(in_child)) } {
            0 => HOOKED.store(true, Ordering::Release),
            rc => return Err(Error::os("io_uring", "pthread_atfork", Errno::from_raw(rc))),
        }
    }
    Ok(GENERATION.load(Ordering::Relaxed))
}

/// What a child does with a value it inherited: release what it can without waiting for
/// anyone (a parent's thread may have held a lock at the fork), and never use it again.
pub(crate) trait Abandon {
    /// Called once, in the child, on the inherited value.
    fn abandon(&self);
}

/// A value each process has its own of: made on first use, and made anew in a child, where
/// the inherited one is abandoned.
///
/// Built on a pointer swap rather than a lock, because a lock a parent's thread held at the
/// fork stays held forever in the child. An abandoned value is never freed (another of the
/// child's threads may still be reading its generation); that is one small leak per value
/// per fork, in the child only.
pub(crate) struct PerProcess<T: Abandon> {
    current: AtomicPtr<Stamped<T>>,
    /// Owns `T`s (Send and Sync are stated below, as `OnceLock`'s are).
    _owns: PhantomData<*const T>,
}

// SAFETY: owning the values, it moves them with itself: as `T`'s owner, it is Send when `T` is.
unsafe impl<T: Abandon + Send> Send for PerProcess<T> {}
// SAFETY: shared, it hands out `&T` to every thread (needs `T: Sync`) and a value made by one
// thread may be dropped by another (needs `T: Send`), as `OnceLock` states.
unsafe impl<T: Abandon + Send + Sync> Sync for PerProcess<T> {}

struct Stamped<T> {
    generation: u64,
    value: T,
}

impl<T: Abandon> PerProcess<T> {
    /// None made yet.
    pub const fn new() -> Self {
        Self {
            current: AtomicPtr::new(std::ptr::null_mut()),
            _owns: PhantomData,
        }
    }

    /// This process's value, made by `make` if it has none yet (if two threads race, one
    /// value is kept and the other dropped).
    pub fn get_or_make(&self, make: impl Fn() -> Result<T>) -> Result<&T> {
        let now = generation()?;
        loop {
            let seen = self.current.load(Ordering::Acquire);
            // SAFETY: a non-null `current` came from `Box::into_raw` below and is freed only by
            // `drop`, which has `&mut self`; a replaced one is never freed.
            if let Some(stamped) = unsafe { seen.as_ref() } {
                if stamped.generation == now {
                    return Ok(&stamped.value);
                }
            }
            let fresh = Box::into_raw(Box::new(Stamped {
                generation: now,
                value: make()?,
            }));
            match self
                .current
                .compare_exchange(seen, fresh, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    // SAFETY: as above: `seen` is still allocated, and ours to abandon (the
                    // swap succeeded once, here).
                    if let Some(inherited) = unsafe { seen.as_ref() } {
                        inherited.value.abandon();
                    }
                    // SAFETY: `fresh` is installed; freed only by `drop`, as above.
                    return Ok(unsafe { &(*fresh).value });
                }
                Err(_) => {
                    // Another thread installed this process's value first: drop ours, use it.
                    // SAFETY: `fresh` came from `Box::into_raw` and was never shared.
                    drop(unsafe { Box::from_raw(fresh) });
                }
            }
        }
    }

    /// This process's value if it has made one.
    pub fn get(&self) -> Option<&T> {
        let now = generation().ok()?;
        // SAFETY: as in `get_or_make`.
        let stamped = unsafe { self.current.load(Ordering::Acquire).as_ref() }?;
        (stamped.generation == now).then_some(&stamped.value)
    }
}

impl<T: Abandon> Drop for PerProcess<T> {
    fn drop(&mut self) {
        let current = *self.current.get_mut();
        if !current.is_null() {
            // SAFETY: from `Box::into_raw`, installed, and no `&T` outlives `&self`.
            drop(unsafe { Box::from_raw(current) });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::{fork, ForkResult};

    #[test]
    fn a_child_has_a_different_generation_and_the_parent_keeps_its_own() {
        let before = generation().unwrap();
        // SAFETY: the child only loads an atomic and calls `_exit`: async-signal-safe, whatever
        // the test harness's other threads held at the fork.
        match unsafe { fork() }.unwrap() {
            ForkResult::Child => {
                let moved = GENERATION.load(Ordering::Relaxed) != before;
                // SAFETY: `_exit` ends the child without running the parent's destructors.
                unsafe { nix::libc::_exit(if moved { 0 } else { 1 }) }
            }
            ForkResult::Parent { child } => {
                assert_eq!(
                    waitpid(child, None).unwrap(),
                    WaitStatus::Exited(child, 0),
                    "the child saw its parent's generation"
                );
                assert_eq!(generation().unwrap(), before);
            }
        }
    }
}
