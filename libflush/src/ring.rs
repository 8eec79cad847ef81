//! Submitting many copies of one SQE and reaping them: shared by the `Uring` strategy and the
//! io_uring NOP floor, so both measure the same submission path.

use io_uring::{squeue, IoUring};
use nix::errno::Errno;

use crate::error::errno_of;
use crate::{Error, Result};

/// Submit `count` copies of `entry`, at most `ring`'s SQ size per `io_uring_enter`, wait for
/// all completions. Returns the first failed completion's errno, after reaping everything.
///
/// `entry` must not point at any buffer (its payload travels inside the SQE), so nothing has
/// to outlive the submission.
pub(crate) fn submit_copies(
    ring: &mut IoUring,
    entry: &squeue::Entry,
    count: usize,
) -> Result<Option<Errno>> {
    let per_enter = ring.params().sq_entries() as usize;
    let mut failed = None;
    let mut left = count;
    while left > 0 {
        let n = left.min(per_enter);
        let mut pushed = 0;
        while pushed < n {
            {
                let mut sq = ring.submission();
                while pushed < n {
                    // SAFETY: per this function's contract the SQE references no memory.
                    if unsafe { sq.push(entry) }.is_err() {
                        break;
                    }
                    pushed += 1;
                }
            }
            if pushed < n {
                wait_for_sq_space(ring)?;
            }
        }
        let mut reaped = 0;
        while reaped < n {
            ring.submit_and_wait(n - reaped)
                .map_err(|e| Error::os("io_uring", "submit", errno_of(&e)))?;
            for cqe in ring.completion() {
                reaped += 1;
                if cqe.result() < 0 {
                    failed.get_or_insert(Errno::from_raw(-cqe.result()));
                }
            }
        }
        left -= n;
    }
    Ok(failed)
}

/// The SQ ring is full although we reaped every completion: with SQPOLL the kernel thread
/// posts completions of inline commands (ours) before it publishes the SQ head it reached, so
/// wait for it (`IORING_ENTER_SQ_WAIT`); without SQPOLL, submitting makes room.
fn wait_for_sq_space(ring: &mut IoUring) -> Result<()> {
    let waited = if ring.params().is_setup_sqpoll() {
        ring.submitter().squeue_wait()
    } else {
        ring.submit()
    };
    waited
        .map(drop)
        .map_err(|e| Error::os("io_uring", "wait for SQ space", errno_of(&e)))
}
