//! A handle's rings across `fork()`: parent and child both keep submitting through the same
//! handle and both finish. Before rings were per process, both pushed into one shared
//! submission queue and reaped each other's completions (same tags) and hung.
//!
//! The handle is the io_uring NOP floor, which runs on the same ring pool as the `uring`
//! strategy (the module is not loaded on the host; the guests run this with the real `Uring`
//! handle).

#[path = "../src/skip.rs"]
mod skip;

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use libflush::measure::floors::UringNopFloor;
use libflush::Error;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

/// Submissions each side makes after the fork.
const ROUNDS: usize = 2000;
/// A child still running after this has hung: it is killed and the test fails.
const HUNG_AFTER: Duration = Duration::from_secs(120);

fn floor(sqpoll_idle_ms: Option<u32>) -> Option<UringNopFloor> {
    skip::io_uring_or_skip(
        UringNopFloor::with(8, sqpoll_idle_ms, NonZeroUsize::new(2)),
        Error::is_uring_refused,
    )
}

/// How the child ended; a child that never ends is killed, and the test fails saying so.
fn wait(child: Pid) -> WaitStatus {
    let start = Instant::now();
    loop {
        match waitpid(child, Some(WaitPidFlag::WNOHANG)).unwrap() {
            WaitStatus::StillAlive if start.elapsed() < HUNG_AFTER => {
                std::thread::sleep(Duration::from_millis(10));
            }
            WaitStatus::StillAlive => {
                let _ = kill(child, Signal::SIGKILL);
                let _ = waitpid(child, None);
                panic!("the child hung: still running after {HUNG_AFTER:?}");
            }
            ended => return ended,
        }
    }
}

/// Set up rings on one handle, fork while another of the parent's threads is submitting
/// through it, then submit `ROUNDS` times in parent and child.
fn parent_and_child_both_finish(sqpoll_idle_ms: Option<u32>) {
    let Some(floor) = floor(sqpoll_idle_ms) else {
        return;
    };
    floor.submit(4).unwrap();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        // Holds a ring of the pool (and now and then its lock) while the fork happens.
        let (started, running) = std::sync::mpsc::channel();
        let (floor, stop) = (&floor, &stop);
        let busy = s.spawn(move || {
            let mut submitted = 0u64;
            loop {
                floor.submit(3).unwrap();
                submitted += 1;
                if submitted == 1 {
                    let _ = started.send(());
                }
                if stop.load(Ordering::Relaxed) {
                    return submitted;
                }
            }
        });
        running.recv().unwrap();
        // SAFETY: the child runs libflush's ring code (io_uring system calls, atomics, the
        // allocator, which glibc keeps usable across fork; no lock it may find held by a
        // vanished thread: it abandons what it inherited) and `_exit`.
        let child = match unsafe { fork() }.unwrap() {
            ForkResult::Child => {
                let ok = (0..ROUNDS).all(|_| floor.submit(3).is_ok());
                let own = floor.rings() >= 1 && floor.rings() <= 2;
                // SAFETY: `_exit` ends the child without the parent's destructors.
                unsafe { nix::libc::_exit(if ok && own { 0 } else { 1 }) }
            }
            ForkResult::Parent { child } => child,
        };
        for _ in 0..ROUNDS {
            floor.submit(3).unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        assert!(busy.join().unwrap() > 0);
        assert_eq!(
            wait(child),
            WaitStatus::Exited(child, 0),
            "the child's submissions failed"
        );
    });
    floor.submit(1).unwrap();
}

#[test]
fn parent_and_child_both_keep_submitting_through_one_handle() {
    parent_and_child_both_finish(None);
}

#[test]
fn parent_and_child_both_keep_submitting_through_one_sqpoll_handle() {
    // The child's SQPOLL rings attach to a poller of its own: the kernel refuses to attach
    // them to the parent's (EPERM).
    parent_and_child_both_finish(Some(50));
}
