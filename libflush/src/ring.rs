//! io_uring submission where no completion is ever credited to the wrong call: shared by the
//! `uring` strategy and the io_uring NOP floor, so both measure the same submission path.
//!
//! - Every SQE of a call carries that call's tag in `user_data`; a call counts only CQEs with
//!   its tag. A call that fails before all of its completions arrived leaves the rest *stale*:
//!   later calls discard them as they come, and never wait for them.
//! - `io_uring_enter` interrupted by a signal (`EINTR`) is retried; the kernel keeps what it
//!   consumed, the ring's head says so.
//! - If the kernel ever drops a CQE (the CQ overflow counter moves), nothing can be accounted
//!   for any more: the ring is poisoned and refuses further use.
//! - With SQPOLL the kernel thread consumes the SQ; we reap by polling the CQ and enter the
//!   kernel only to wake a sleeping poller or to flush overflowed completions.
//! - Every `io_uring_enter` goes through [`TaggedRing::enter`], which counts it.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use io_uring::{squeue, EnterFlags, IoUring};
use nix::errno::Errno;

use crate::error::errno_of;
use crate::{Error, Result};

/// Spins on the completion queue before each `sched_yield` when polling (SQPOLL).
const SPINS_BEFORE_YIELD: u32 = 1 << 10;

/// What happened to a call's SQEs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Outcome {
    /// The first failed completion's errno, if any failed.
    pub failed: Option<Errno>,
}

/// An io_uring whose calls never see each other's completions.
pub(crate) struct TaggedRing {
    ring: IoUring,
    next_tag: u64,
    /// SQEs of earlier, failed calls whose completions have not been reaped yet.
    stale: usize,
    poisoned: bool,
    counters: Arc<RingCounters>,
    #[cfg(test)]
    fail_next_enter: Option<Errno>,
}

/// Counters shared by every ring of a handle.
#[derive(Debug, Default)]
pub(crate) struct RingCounters {
    /// `io_uring_enter` system calls made.
    pub enters: AtomicU64,
    /// Of those, the ones a signal interrupted (and that were retried).
    pub interrupted: AtomicU64,
    /// Completions of earlier calls discarded.
    pub stale_discarded: AtomicU64,
}

impl TaggedRing {
    /// A ring of `entries` SQEs, with a kernel SQ polling thread that idles after
    /// `sqpoll_idle_ms` when given.
    pub fn new(
        entries: u32,
        sqpoll_idle_ms: Option<u32>,
        counters: Arc<RingCounters>,
    ) -> Result<Self> {
        let mut builder = IoUring::builder();
        if let Some(idle) = sqpoll_idle_ms {
            builder.setup_sqpoll(idle);
        }
        let ring = builder
            .build(entries)
            .map_err(|e| Error::os("io_uring", "setup", errno_of(&e)))?;
        Ok(Self {
            ring,
            next_tag: 1,
            stale: 0,
            poisoned: false,
            counters,
            #[cfg(test)]
            fail_next_enter: None,
        })
    }

    /// True once the ring has lost track of a completion; it must be dropped.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// Submit `entries`, each tagged with this call's tag, and return once every one of them
    /// has completed. Completions of earlier calls are discarded on the way.
    ///
    /// # Safety
    ///
    /// Whatever memory the entries reference must stay valid until their completions are
    /// reaped, which, if this call fails, is after it returns: for as long as the ring lives.
    /// Entries whose payload travels inside the SQE (NOP, `URING_CMD` with an inline command)
    /// reference none.
    pub unsafe fn run(
        &mut self,
        entries: impl ExactSizeIterator<Item = squeue::Entry>,
    ) -> Result<Outcome> {
        if self.poisoned {
            return Err(Error::RingPoisoned);
        }
        let tag = self.next_tag;
        self.next_tag = self.next_tag.wrapping_add(1);
        let total = entries.len();
        let mut entries = entries.map(|e| e.user_data(tag));
        let (mut pushed, mut done) = (0usize, 0usize);
        let mut outcome = Outcome::default();
        let mut spins = 0u32;
        let sqpoll = self.ring.params().is_setup_sqpoll();
        let result = loop {
            {
                let mut sq = self.ring.submission();
                while pushed < total && !sq.is_full() {
                    let Some(entry) = entries.next() else { break };
                    // SAFETY: the caller guarantees the entry's memory outlives its completion.
                    if unsafe { sq.push(&entry) }.is_err() {
                        break;
                    }
                    pushed += 1;
                }
            }
            if let Err(e) = self.reap(tag, &mut done, &mut outcome) {
                break Err(e);
            }
            if done == total {
                break Ok(outcome);
            }
            let progress = if sqpoll {
                self.poll_step(&mut spins)
            } else {
                let to_submit = self.ring.submission().len() as u32;
                self.enter(to_submit, (pushed - done) as u32, EnterFlags::GETEVENTS)
            };
            match progress {
                Ok(_) => {}
                Err(e) if retryable(&e) => {
                    if e.raw_os_error() == Some(Errno::EINTR as i32) {
                        self.counters.interrupted.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(e) => break Err(Error::os("io_uring", "io_uring_enter", errno_of(&e))),
            }
        };
        if result.is_err() {
            // Ours that the kernel took complete later; ours still in the SQ go in with the
            // next call's enter. Either way they carry this call's tag and are discarded.
            self.stale += pushed - done;
        }
        result
    }

    /// Reap every available completion: ours count, others are stale and discarded.
    fn reap(&mut self, tag: u64, done: &mut usize, outcome: &mut Outcome) -> Result<()> {
        let mut discarded = 0u64;
        for cqe in self.ring.completion() {
            if cqe.user_data() == tag {
                *done += 1;
                if cqe.result() < 0 {
                    outcome.failed.get_or_insert(Errno::from_raw(-cqe.result()));
                }
            } else {
                self.stale = self.stale.saturating_sub(1);
                discarded += 1;
            }
        }
        if discarded > 0 {
            self.counters
                .stale_discarded
                .fetch_add(discarded, Ordering::Relaxed);
        }
        if self.ring.completion().overflow() > 0 {
            self.poisoned = true;
            return Err(Error::RingPoisoned);
        }
        Ok(())
    }

    /// One step of waiting with SQPOLL: enter only to wake the poller or flush overflowed
    /// completions; otherwise spin on the CQ, yielding the CPU now and then.
    fn poll_step(&mut self, spins: &mut u32) -> io::Result<usize> {
        let (wake, overflowed) = {
            let sq = self.ring.submission();
            (sq.need_wakeup(), sq.cq_overflow())
        };
        if wake {
            return self.enter(0, 0, EnterFlags::SQ_WAKEUP);
        }
        if overflowed {
            return self.enter(0, 0, EnterFlags::GETEVENTS);
        }
        *spins += 1;
        if *spins % SPINS_BEFORE_YIELD == 0 {
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
        Ok(0)
    }

    /// `io_uring_enter`, counted.
    fn enter(&mut self, to_submit: u32, min_complete: u32, flags: EnterFlags) -> io::Result<usize> {
        self.counters.enters.fetch_add(1, Ordering::Relaxed);
        // A failure injected by a test models an enter that submitted, then returned early.
        #[cfg(test)]
        let (min_complete, injected) = match self.fail_next_enter.take() {
            Some(errno) => (0, Some(errno)),
            None => (min_complete, None),
        };
        // SAFETY: no extended argument is passed (`None`), and `to_submit` counts SQEs that
        // are in the ring; what they reference is the caller of `run`'s contract.
        let result = unsafe {
            self.ring.submitter().enter::<nix::libc::sigset_t>(
                to_submit,
                min_complete,
                flags.bits(),
                None,
            )
        };
        #[cfg(test)]
        if let Some(errno) = injected {
            result?;
            return Err(io::Error::from_raw_os_error(errno as i32));
        }
        result
    }
}

/// Errors after which entering again makes progress: a signal, or overflowed completions
/// that reaping makes room for.
fn retryable(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error().map(Errno::from_raw),
        Some(Errno::EINTR | Errno::EBUSY)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsRawFd, OwnedFd};
    use std::sync::atomic::AtomicBool;
    use std::time::Duration;

    use io_uring::{opcode, types};

    /// io_uring may be forbidden in a sandbox; then there is nothing to test here, and
    /// setup says why.
    fn ring(entries: u32, sqpoll: Option<u32>) -> Option<TaggedRing> {
        match TaggedRing::new(entries, sqpoll, Arc::default()) {
            Ok(r) => Some(r),
            Err(e) => {
                let msg = e.to_string();
                assert!(msg.contains("io_uring: setup failed"), "{msg}");
                eprintln!("skipping: {msg}");
                None
            }
        }
    }

    fn nops(n: usize) -> impl ExactSizeIterator<Item = squeue::Entry> {
        std::iter::repeat_n(opcode::Nop::new().build(), n)
    }

    /// A pipe and a one-byte read of it that completes when the test writes the pipe.
    struct BlockingRead {
        rx: OwnedFd,
        tx: OwnedFd,
        buf: Box<[u8; 1]>,
    }

    impl BlockingRead {
        fn new() -> Self {
            let (rx, tx) = nix::unistd::pipe().unwrap();
            Self {
                rx,
                tx,
                buf: Box::new([0]),
            }
        }
        fn entry(&mut self) -> squeue::Entry {
            opcode::Read::new(types::Fd(self.rx.as_raw_fd()), self.buf.as_mut_ptr(), 1).build()
        }
        fn release(&self) {
            nix::unistd::write(&self.tx, b"x").unwrap();
        }
    }

    #[test]
    fn batches_larger_than_the_ring_complete_with_one_tag_each() {
        let Some(mut r) = ring(8, None) else { return };
        for count in [1, 8, 20, 100] {
            // SAFETY: NOPs reference no memory.
            let out = unsafe { r.run(nops(count)) }.unwrap();
            assert_eq!(out, Outcome::default());
        }
        assert_eq!(r.counters.stale_discarded.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_failed_call_leaves_stale_completions_that_the_next_call_never_counts_as_its_own() {
        let Some(mut r) = ring(8, None) else { return };
        // Call A: a read that blocks and three NOPs; the enter that submits them "fails"
        // after the kernel took them (as a signal or an error would make it return early).
        let mut stale_read = BlockingRead::new();
        let a = [stale_read.entry()]
            .into_iter()
            .chain(nops(3))
            .collect::<Vec<_>>();
        r.fail_next_enter = Some(Errno::EIO);
        // SAFETY: `stale_read` (pipe and buffer) lives until the end of the test, after the
        // ring is dropped below.
        let err = unsafe { r.run(a.into_iter()) }.unwrap_err();
        assert!(err.to_string().contains("EIO"), "{err}");
        assert_eq!(r.stale, 4, "four SQEs of call A in flight");

        // Call B: its own read blocks. A's three NOP completions are already in the CQ and A's
        // read completes while B waits; B must not take any of them for its own.
        let mut own_read = BlockingRead::new();
        let own = own_read.entry();
        let returned = &AtomicBool::new(false);
        std::thread::scope(|s| {
            let b = s.spawn(move || {
                // SAFETY: `own_read` outlives the call: it is released below and dropped after
                // the scope.
                let out = unsafe { r.run(std::iter::once(own)) };
                returned.store(true, Ordering::SeqCst);
                (out, r)
            });
            std::thread::sleep(Duration::from_millis(100));
            assert!(
                !returned.load(Ordering::SeqCst),
                "call B returned on call A's NOP completions"
            );
            stale_read.release();
            std::thread::sleep(Duration::from_millis(100));
            assert!(
                !returned.load(Ordering::SeqCst),
                "call B returned on call A's read completion"
            );
            own_read.release();
            let (out, r) = b.join().unwrap();
            assert_eq!(out.unwrap(), Outcome::default());
            assert_eq!(r.stale, 0);
            assert_eq!(r.counters.stale_discarded.load(Ordering::Relaxed), 4);
        });
    }

    #[test]
    fn an_interrupted_wait_is_retried_until_the_calls_own_completion_arrives() {
        use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
        extern "C" fn ignore(_: i32) {}
        // No SA_RESTART: io_uring_enter returns EINTR, as it would to a runtime with handlers.
        let action = SigAction::new(
            SigHandler::Handler(ignore),
            SaFlags::empty(),
            SigSet::empty(),
        );
        // SAFETY: the handler does nothing, so it is async-signal-safe.
        unsafe { sigaction(Signal::SIGUSR1, &action) }.unwrap();

        let Some(mut r) = ring(8, None) else { return };
        let counters = Arc::clone(&r.counters);
        let mut read = BlockingRead::new();
        let entry = read.entry();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::scope(|s| {
            let waiter = s.spawn(move || {
                let _ = tx.send(nix::sys::pthread::pthread_self());
                // SAFETY: `read` outlives the call: it is released below and dropped after
                // the scope.
                unsafe { r.run(std::iter::once(entry)) }
            });
            // Signal the waiting thread until one signal has interrupted its io_uring_enter.
            let tid = rx.recv().unwrap();
            let mut tries = 0;
            while counters.interrupted.load(Ordering::Relaxed) == 0 {
                std::thread::sleep(Duration::from_millis(20));
                nix::sys::pthread::pthread_kill(tid, Signal::SIGUSR1).unwrap();
                tries += 1;
                assert!(tries < 500, "no io_uring_enter was ever interrupted");
            }
            read.release();
            assert_eq!(waiter.join().unwrap().unwrap(), Outcome::default());
        });
        assert!(counters.enters.load(Ordering::Relaxed) >= 2, "retried");
    }

    #[test]
    fn a_poisoned_ring_refuses_to_run() {
        let Some(mut r) = ring(8, None) else { return };
        r.poisoned = true;
        // SAFETY: NOPs reference no memory.
        let err = unsafe { r.run(nops(1)) }.unwrap_err();
        assert_eq!(err, Error::RingPoisoned);
    }

    #[test]
    fn sqpoll_reaps_without_entering_the_kernel_in_steady_state() {
        // A poller that stays awake for a second between our batches never needs a wakeup.
        let Some(mut r) = ring(32, Some(1000)) else {
            return;
        };
        // SAFETY: NOPs reference no memory.
        unsafe { r.run(nops(32)) }.unwrap();
        let before = r.counters.enters.load(Ordering::Relaxed);
        for _ in 0..1000 {
            // SAFETY: as above.
            unsafe { r.run(nops(1)) }.unwrap();
        }
        let enters = r.counters.enters.load(Ordering::Relaxed) - before;
        assert_eq!(
            enters, 0,
            "io_uring_enter calls for 1000 flushes under SQPOLL"
        );
    }
}
