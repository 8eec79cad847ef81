//! io_uring submission where no completion is ever credited to the wrong call: shared by the
//! `uring` strategy, [`crate::flush_gpus`] and the io_uring NOP floor, so all of them measure
//! the same submission path.
//!
//! - Every call reserves a range of tags, one per SQE, in `user_data`; a call counts only CQEs
//!   in its range, and knows from the tag which of its SQEs each one answers. A call that fails
//!   before all of its completions arrived leaves the rest *stale*: later calls discard them as
//!   they come, and never wait for them.
//! - `io_uring_enter` interrupted by a signal (`EINTR`) is retried; the kernel keeps what it
//!   consumed, the ring's head says so.
//! - If the kernel ever drops a CQE (the CQ overflow counter moves), nothing can be accounted
//!   for any more: the ring is poisoned and refuses further use.
//! - With SQPOLL the kernel thread consumes the SQ; we reap by polling the CQ and enter the
//!   kernel only to wake a sleeping poller or to flush overflowed completions. Every SQPOLL ring
//!   of a process attaches to one poller (`IORING_SETUP_ATTACH_WQ`), the process's *anchor*:
//!   one kernel thread polls them all, instead of one per ring.
//! - A ring belongs to the process that set it up ([`crate::fork`]): in a child it refuses to
//!   run, and the child's anchor is its own (the kernel refuses to attach a ring to another
//!   process's poller).
//! - Every `io_uring_enter` goes through [`TaggedRing::enter`], which counts it.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use io_uring::{squeue, EnterFlags, IoUring};
use nix::errno::Errno;

use crate::error::errno_of;
use crate::fork::{self, Abandon, PerProcess};
use crate::{Error, Result};

/// Spins on the completion queue before each `sched_yield` when polling (SQPOLL).
const SPINS_BEFORE_YIELD: u32 = 1 << 10;

/// The anchor's own idle time. A shared poller idles for the longest idle time among its
/// rings, so the anchor's is the shortest the kernel honours (1 ms; 0 would mean 1 s).
const ANCHOR_IDLE_MS: u32 = 1;

/// What happened to a call's SQEs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Outcome {
    /// The first failed completion's errno, if any failed.
    pub failed: Option<Errno>,
}

/// How to set a ring up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RingSetup {
    /// Submission queue entries: the most SQEs one `io_uring_enter` submits.
    pub entries: u32,
    /// Poll the SQ from a kernel thread (the process's shared poller) that idles after this
    /// many milliseconds.
    pub sqpoll_idle_ms: Option<u32>,
}

/// An io_uring whose calls never see each other's completions.
pub(crate) struct TaggedRing {
    ring: IoUring,
    /// The [`fork::generation`] of the process that set it up.
    generation: u64,
    next_tag: u64,
    /// SQEs of earlier, failed calls whose completions have not been reaped yet.
    stale: usize,
    poisoned: bool,
    #[cfg(test)]
    fail_next_enter: Option<Errno>,
    #[cfg(test)]
    refuse_next_enter: Option<Errno>,
}

/// Counters of a set of rings (a handle's pool).
#[derive(Debug, Default)]
pub(crate) struct RingCounters {
    /// `io_uring_enter` system calls made.
    pub enters: AtomicU64,
    /// Of those, the ones a signal interrupted (and that were retried).
    pub interrupted: AtomicU64,
    /// Completions of earlier calls discarded.
    pub stale_discarded: AtomicU64,
}

impl RingCounters {
    /// All zero.
    pub const fn new() -> Self {
        Self {
            enters: AtomicU64::new(0),
            interrupted: AtomicU64::new(0),
            stale_discarded: AtomicU64::new(0),
        }
    }
}

/// The kernel's answer to `io_uring_setup`, as the error that says io_uring is refused here.
fn refused(e: &io::Error) -> Error {
    Error::UringRefused { errno: errno_of(e) }
}

/// A process's SQPOLL anchor: a ring that exists only so that its poller can be shared.
struct Anchor {
    fd: RawFd,
    /// Kept open for as long as the process runs; taken (closed) only in a child, which must
    /// not use it.
    ring: Mutex<Option<IoUring>>,
}

impl Abandon for Anchor {
    fn abandon(&self) {
        // A parent's thread may have held the lock at the fork; then the ring stays open.
        if let Ok(mut ring) = self.ring.try_lock() {
            ring.take();
        }
    }
}

/// This process's anchor.
static ANCHOR: PerProcess<Anchor> = PerProcess::new();

/// The fd of this process's anchor ring, set up on first use.
fn anchor_fd() -> Result<RawFd> {
    let anchor = ANCHOR.get_or_make(|| {
        let ring: IoUring = IoUring::builder()
            .setup_sqpoll(ANCHOR_IDLE_MS)
            .build(1)
            .map_err(|e| refused(&e))?;
        Ok(Anchor {
            fd: ring.as_raw_fd(),
            ring: Mutex::new(Some(ring)),
        })
    })?;
    Ok(anchor.fd)
}

impl TaggedRing {
    /// A ring as `setup` says; an SQPOLL ring shares the process's poller.
    pub fn new(setup: RingSetup) -> Result<Self> {
        let generation = fork::generation()?;
        let mut builder = IoUring::builder();
        if let Some(idle) = setup.sqpoll_idle_ms {
            builder.setup_sqpoll(idle).setup_attach_wq(anchor_fd()?);
        }
        let ring = builder.build(setup.entries).map_err(|e| refused(&e))?;
        Ok(Self {
            ring,
            generation,
            next_tag: 1,
            stale: 0,
            poisoned: false,
            #[cfg(test)]
            fail_next_enter: None,
            #[cfg(test)]
            refuse_next_enter: None,
        })
    }

    /// True once the ring has lost track of a completion; it must be dropped.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// Whether this process set the ring up (it was not inherited across `fork()`).
    pub fn is_ours(&self) -> Result<bool> {
        Ok(self.generation == fork::generation()?)
    }

    /// Submit `entries` and return once every one of them has completed; `outcome` says
    /// whether any failed. Completions of earlier calls are discarded on the way.
    ///
    /// # Safety
    ///
    /// As [`TaggedRing::run_each`].
    pub unsafe fn run(
        &mut self,
        counters: &RingCounters,
        entries: impl ExactSizeIterator<Item = squeue::Entry>,
    ) -> Result<Outcome> {
        let mut outcome = Outcome::default();
        // SAFETY: the caller's contract is ours.
        unsafe {
            self.run_with(counters, entries, |_, result| {
                if result < 0 {
                    outcome.failed.get_or_insert(Errno::from_raw(-result));
                }
            })
        }?;
        Ok(outcome)
    }

    /// Submit `entries` and return each one's result (`cqe.res`: 0 or more, or a negative
    /// errno), in the order of `entries`.
    ///
    /// # Safety
    ///
    /// Whatever memory the entries reference must stay valid until their completions are
    /// reaped, which, if this call fails, is after it returns: for as long as the ring lives.
    /// Entries whose payload travels inside the SQE (NOP, `URING_CMD` with an inline command)
    /// reference none.
    pub unsafe fn run_each(
        &mut self,
        counters: &RingCounters,
        entries: impl ExactSizeIterator<Item = squeue::Entry>,
    ) -> Result<Vec<i32>> {
        let mut results = vec![0; entries.len()];
        // SAFETY: the caller's contract is ours.
        unsafe { self.run_with(counters, entries, |i, result| results[i] = result) }?;
        Ok(results)
    }

    /// The loop behind [`TaggedRing::run`] and [`TaggedRing::run_each`]: `done(i, res)` for the
    /// completion of the `i`th entry.
    ///
    /// # Safety
    ///
    /// As [`TaggedRing::run_each`].
    unsafe fn run_with(
        &mut self,
        counters: &RingCounters,
        entries: impl ExactSizeIterator<Item = squeue::Entry>,
        mut done: impl FnMut(usize, i32),
    ) -> Result<()> {
        if self.poisoned {
            return Err(Error::RingPoisoned);
        }
        if !self.is_ours()? {
            return Err(Error::RingInherited);
        }
        let total = entries.len();
        // This call's tags: first, first + 1, ..., one per entry.
        let first = self.next_tag;
        self.next_tag = self.next_tag.wrapping_add(total.max(1) as u64);
        let mut entries = (first..).zip(entries).map(|(tag, e)| e.user_data(tag));
        let (mut pushed, mut reaped) = (0usize, 0usize);
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
            if let Err(e) = self.reap(counters, first, total, &mut reaped, &mut done) {
                break Err(e);
            }
            if reaped == total {
                break Ok(());
            }
            let progress = if sqpoll {
                self.poll_step(counters, &mut spins)
            } else {
                let to_submit = self.ring.submission().len() as u32;
                self.enter(
                    counters,
                    to_submit,
                    (pushed - reaped) as u32,
                    EnterFlags::GETEVENTS,
                )
            };
            match progress {
                Ok(_) => {}
                Err(e) if retryable(&e) => {
                    if e.raw_os_error() == Some(Errno::EINTR as i32) {
                        counters.interrupted.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(e) => break Err(Error::os("io_uring", "io_uring_enter", errno_of(&e))),
            }
        };
        if result.is_err() {
            // Ours that the kernel took complete later, and their tags are below the next
            // call's: they are discarded. Ours still in the SQ must never go in later: a
            // `URING_CMD` names a raw fd, looked up when the kernel consumes the SQE, and by
            // then the caller may have closed it and the number been reused. A ring with
            // unconsumed SQEs is poisoned, so its owner drops it (dropping discards them).
            self.stale += pushed - reaped;
            if !self.ring.submission().is_empty() {
                self.poisoned = true;
            }
        }
        result
    }

    /// Reap every available completion: those tagged `first..first + total` are this call's,
    /// others are stale and discarded.
    fn reap(
        &mut self,
        counters: &RingCounters,
        first: u64,
        total: usize,
        reaped: &mut usize,
        done: &mut impl FnMut(usize, i32),
    ) -> Result<()> {
        let mut discarded = 0u64;
        for cqe in self.ring.completion() {
            let entry = cqe.user_data().wrapping_sub(first);
            if entry < total as u64 {
                *reaped += 1;
                done(entry as usize, cqe.result());
            } else {
                self.stale = self.stale.saturating_sub(1);
                discarded += 1;
            }
        }
        if discarded > 0 {
            counters
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
    fn poll_step(&mut self, counters: &RingCounters, spins: &mut u32) -> io::Result<usize> {
        let (wake, overflowed) = {
            let sq = self.ring.submission();
            (sq.need_wakeup(), sq.cq_overflow())
        };
        if wake {
            return self.enter(counters, 0, 0, EnterFlags::SQ_WAKEUP);
        }
        if overflowed {
            return self.enter(counters, 0, 0, EnterFlags::GETEVENTS);
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
    fn enter(
        &mut self,
        counters: &RingCounters,
        to_submit: u32,
        min_complete: u32,
        flags: EnterFlags,
    ) -> io::Result<usize> {
        counters.enters.fetch_add(1, Ordering::Relaxed);
        // A refusal injected by a test models an enter that consumed nothing.
        #[cfg(test)]
        if let Some(errno) = self.refuse_next_enter.take() {
            return Err(io::Error::from_raw_os_error(errno as i32));
        }
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

/// Errors after which entering again makes progress: a signal, overflowed completions that
/// reaping makes room for, or a request the kernel could not allocate this time.
fn retryable(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error().map(Errno::from_raw),
        Some(Errno::EINTR | Errno::EBUSY | Errno::EAGAIN)
    )
}

#[cfg(test)]
impl TaggedRing {
    /// As if the kernel had dropped a completion.
    pub fn poison_for_test(&mut self) {
        self.poisoned = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::OwnedFd;
    use std::sync::atomic::AtomicBool;
    use std::time::Duration;

    use io_uring::{opcode, types};
    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::{fork, ForkResult};

    /// A ring, or `None` (and the test says it skipped) where the kernel refuses io_uring.
    fn ring(entries: u32, sqpoll_idle_ms: Option<u32>) -> Option<TaggedRing> {
        crate::skip::io_uring_or_skip(
            TaggedRing::new(RingSetup {
                entries,
                sqpoll_idle_ms,
            }),
            Error::is_uring_refused,
        )
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
        let counters = RingCounters::new();
        for count in [1, 8, 20, 100] {
            // SAFETY: NOPs reference no memory.
            let out = unsafe { r.run(&counters, nops(count)) }.unwrap();
            assert_eq!(out, Outcome::default());
        }
        assert_eq!(counters.stale_discarded.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn each_entry_gets_its_own_result_in_submission_order() {
        let Some(mut r) = ring(4, None) else { return };
        let counters = RingCounters::new();
        // A read of fd -1 fails with EBADF; NOPs succeed. Ten entries over a ring of four.
        let bad = || opcode::Read::new(types::Fd(-1), std::ptr::null_mut(), 0).build();
        let entries: Vec<squeue::Entry> = (0..10)
            .map(|i| {
                if i % 3 == 1 {
                    bad()
                } else {
                    opcode::Nop::new().build()
                }
            })
            .collect();
        // SAFETY: NOPs reference no memory; the failing reads have no buffer (length 0).
        let results = unsafe { r.run_each(&counters, entries.into_iter()) }.unwrap();
        let want: Vec<i32> = (0..10)
            .map(|i| {
                if i % 3 == 1 {
                    -(Errno::EBADF as i32)
                } else {
                    0
                }
            })
            .collect();
        assert_eq!(results, want);
    }

    #[test]
    fn a_failed_call_leaves_stale_completions_that_the_next_call_never_counts_as_its_own() {
        let Some(mut r) = ring(8, None) else { return };
        let counters = RingCounters::new();
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
        let err = unsafe { r.run(&counters, a.into_iter()) }.unwrap_err();
        assert!(err.to_string().contains("EIO"), "{err}");
        assert_eq!(r.stale, 4, "four SQEs of call A in flight");

        // Call B: its own read blocks. A's three NOP completions are already in the CQ and A's
        // read completes while B waits; B must not take any of them for its own.
        let mut own_read = BlockingRead::new();
        let own = own_read.entry();
        let returned = &AtomicBool::new(false);
        let counters = &counters;
        std::thread::scope(|s| {
            let b = s.spawn(move || {
                // SAFETY: `own_read` outlives the call: it is released below and dropped after
                // the scope.
                let out = unsafe { r.run(counters, std::iter::once(own)) };
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
            assert_eq!(counters.stale_discarded.load(Ordering::Relaxed), 4);
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
        let counters = &RingCounters::new();
        let mut read = BlockingRead::new();
        let entry = read.entry();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::scope(|s| {
            let waiter = s.spawn(move || {
                let _ = tx.send(nix::sys::pthread::pthread_self());
                // SAFETY: `read` outlives the call: it is released below and dropped after
                // the scope.
                unsafe { r.run(counters, std::iter::once(entry)) }
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
        r.poison_for_test();
        // SAFETY: NOPs reference no memory.
        let err = unsafe { r.run(&RingCounters::new(), nops(1)) }.unwrap_err();
        assert_eq!(err, Error::RingPoisoned);
    }

    #[test]
    fn an_enter_that_consumed_nothing_poisons_the_ring_so_its_sqes_never_go_in_later() {
        let Some(mut r) = ring(8, None) else { return };
        r.refuse_next_enter = Some(Errno::ENOMEM);
        // SAFETY: NOPs reference no memory.
        let err = unsafe { r.run(&RingCounters::new(), nops(3)) }.unwrap_err();
        assert!(err.to_string().contains("ENOMEM"), "{err}");
        assert!(r.is_poisoned(), "three SQEs left in the SQ");
        // EAGAIN is retried instead: the kernel could not allocate this time.
        let Some(mut r) = ring(8, None) else { return };
        r.refuse_next_enter = Some(Errno::EAGAIN);
        // SAFETY: as above.
        unsafe { r.run(&RingCounters::new(), nops(3)) }.unwrap();
        assert!(!r.is_poisoned());
    }

    #[test]
    fn sqpoll_reaps_without_entering_the_kernel_in_steady_state() {
        // A poller that stays awake for a second between our batches never needs a wakeup.
        let Some(mut r) = ring(32, Some(1000)) else {
            return;
        };
        let counters = RingCounters::new();
        // SAFETY: NOPs reference no memory.
        unsafe { r.run(&counters, nops(32)) }.unwrap();
        let before = counters.enters.load(Ordering::Relaxed);
        for _ in 0..1000 {
            // SAFETY: as above.
            unsafe { r.run(&counters, nops(1)) }.unwrap();
        }
        let enters = counters.enters.load(Ordering::Relaxed) - before;
        assert_eq!(
            enters, 0,
            "io_uring_enter calls for 1000 flushes under SQPOLL"
        );
    }

    /// The kernel threads polling this process's SQPOLL rings (named `iou-sqp-<pid>`).
    fn sq_pollers() -> usize {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter(|t| {
                let comm = t.as_ref().unwrap().path().join("comm");
                std::fs::read_to_string(comm).is_ok_and(|c| c.starts_with("iou-sqp"))
            })
            .count()
    }

    #[test]
    fn sqpoll_rings_of_a_process_share_one_poller() {
        let Some(first) = ring(8, Some(50)) else {
            return;
        };
        let mut rings: Vec<TaggedRing> = std::iter::once(first)
            .chain((0..3).map(|_| {
                TaggedRing::new(RingSetup {
                    entries: 8,
                    sqpoll_idle_ms: Some(50),
                })
                .unwrap()
            }))
            .collect();
        let counters = RingCounters::new();
        for r in &mut rings {
            // SAFETY: NOPs reference no memory.
            unsafe { r.run(&counters, nops(4)) }.unwrap();
        }
        // The anchor's poller serves all four (each ring of this test binary attaches to it).
        assert_eq!(sq_pollers(), 1, "one poller for every SQPOLL ring");
    }

    /// Run NOPs on `r` `times` times, then `_exit` with 0 if all succeeded, else 1.
    fn nops_then_exit(r: &mut TaggedRing, times: usize) -> ! {
        let counters = RingCounters::new();
        let ok = (0..times).all(|_| {
            // SAFETY: NOPs reference no memory.
            unsafe { r.run(&counters, nops(3)) }.is_ok_and(|o| o == Outcome::default())
        });
        // SAFETY: `_exit` ends the child without the parent's destructors or atexit handlers.
        unsafe { nix::libc::_exit(i32::from(!ok)) }
    }

    /// A ring set up before `fork()` is never used by the child (it refuses, untouched), keeps
    /// serving the parent, and the child's own ring, plain or SQPOLL (then on the child's own
    /// poller: the kernel refuses to attach to the parent's), serves the child.
    #[test]
    fn after_fork_the_child_never_touches_the_parents_ring_and_both_keep_running() {
        for sqpoll in [None, Some(50)] {
            let Some(mut parents) = ring(8, sqpoll) else {
                return;
            };
            let counters = RingCounters::new();
            // SAFETY: NOPs reference no memory.
            unsafe { parents.run(&counters, nops(4)) }.unwrap();
            // SAFETY: the child calls only what this module does (io_uring system calls,
            // atomics, the allocator, which glibc keeps usable across fork) and `_exit`; no
            // lock another test thread could hold at the fork is taken there.
            match unsafe { fork() }.unwrap() {
                ForkResult::Child => {
                    // SAFETY: NOPs reference no memory.
                    let inherited = unsafe { parents.run(&counters, nops(1)) };
                    if inherited != Err(Error::RingInherited) {
                        // SAFETY: as in `nops_then_exit`.
                        unsafe { nix::libc::_exit(2) }
                    }
                    match TaggedRing::new(RingSetup {
                        entries: 8,
                        sqpoll_idle_ms: sqpoll,
                    }) {
                        Ok(mut own) => nops_then_exit(&mut own, 500),
                        // SAFETY: as in `nops_then_exit`.
                        Err(_) => unsafe { nix::libc::_exit(3) },
                    }
                }
                ForkResult::Parent { child } => {
                    for _ in 0..500 {
                        // SAFETY: NOPs reference no memory.
                        let out = unsafe { parents.run(&counters, nops(3)) }.unwrap();
                        assert_eq!(out, Outcome::default());
                    }
                    assert_eq!(
                        waitpid(child, None).unwrap(),
                        WaitStatus::Exited(child, 0),
                        "child (sqpoll {sqpoll:?}): 2 = used the parent's ring, 3 = no ring \
                         of its own, 1 = its own ring failed"
                    );
                    assert_eq!(counters.stale_discarded.load(Ordering::Relaxed), 0);
                }
            }
        }
    }
}
