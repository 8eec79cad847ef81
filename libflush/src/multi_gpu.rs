//! Flushing several GPUs at once: one kernel entry for every GPU the hdp_flush module serves.
//!
//! A runtime that wrote into several GPUs' VRAM (peer buffers, a kernel's arguments spread
//! over devices) must flush each of them before it tells any GPU to look. One flush per GPU is
//! one kernel entry per GPU; [`flush_gpus`] sends the FLUSH of every module-served GPU as one
//! io_uring submission (one `URING_CMD` per GPU, each on that flusher's own device node and
//! module index) and reaps each one's completion, so each GPU gets its own result. GPUs
//! flushed any other way (the remap page, KFD's ioctl, the dummy page) are flushed one by one,
//! as [`Flush::flush_with`] does.
//!
//! Barriers: one store fence before the submission orders every earlier store before every
//! request (whichever CPU performs it); after it, one more store fence if any request was
//! posted, as [`crate::strategy::KernelFlush`] issues for one GPU (docs/integration.md).
//!
//! When the kernel refuses io_uring, or the submission itself fails, every module-served GPU is
//! flushed with its own FLUSH ioctl instead: a flush repeated is harmless, a flush missed is
//! not.
//!
//! It saves kernel entries, not necessarily time: where one `URING_CMD` costs more than a whole
//! ioctl (the QEMU guests: 8 GPUs by one call cost 1.1-1.8x 8 ioctls) it is slower
//! (docs/design.md, "Several GPUs in one kernel entry").

use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;

use io_uring::{opcode, squeue, types};
use nix::errno::Errno;

use crate::barrier::Fences;
use crate::device::flush_fd;
use crate::ring::RingSetup;
use crate::ring_pool::RingPool;
use crate::strategy::{Completion, Flush, ModuleTarget};
use crate::uapi::{self, HdpFlushRequest};
use crate::{Error, Result};

/// The process's rings for multi-GPU flushes: each call takes one (one per CPU at most). 64
/// entries: up to 64 GPUs in one `io_uring_enter`.
static RINGS: RingPool = RingPool::new(
    RingSetup {
        entries: 64,
        sqpoll_idle_ms: None,
    },
    None,
);

/// This CPU's barriers.
struct Cpu;

impl Fences for Cpu {}

/// Flush every GPU in `gpus`, each with `completion` (`None`: each flusher's own, what its
/// [`Flush::flush`] gives), and return each GPU's result, in the order of `gpus`.
///
/// Every GPU the hdp_flush module serves (the `ioctl` and `uring` strategies) is flushed in one
/// kernel entry: one io_uring submission with one `URING_CMD` FLUSH per GPU; if io_uring is
/// refused here ([`Error::UringRefused`]) or the submission fails, one FLUSH ioctl per GPU. The
/// others are flushed one by one. When this returns, each GPU whose result is `Ok` is flushed
/// as [`Flush::flush_with`] would have flushed it: ordered before the caller's next store, and
/// landed if completed.
pub fn flush_gpus(gpus: &[&dyn Flush], completion: Option<Completion>) -> Vec<Result<()>> {
    flush_gpus_with(&Cpu, &RINGS, gpus, completion)
}

/// `io_uring_enter` calls [`flush_gpus`] made in this process: one per call that had two or
/// more module-served GPUs (up to 64).
pub fn io_uring_enters() -> u64 {
    RINGS.counters().enters.load(Ordering::Relaxed)
}

/// One module-served GPU: its position in the caller's slice, where its request goes, and how
/// it completes.
struct Request<'a> {
    at: usize,
    target: ModuleTarget<'a>,
    completion: Completion,
}

impl Request<'_> {
    fn flags(&self) -> u32 {
        match self.completion {
            Completion::Posted => 0,
            Completion::Completed => uapi::HDP_FLUSH_F_SYNC,
        }
    }

    fn what(&self) -> String {
        format!(
            "{} device {}",
            self.target.path.display(),
            self.target.index
        )
    }

    fn sqe(&self) -> squeue::Entry {
        let cmd = HdpFlushRequest::new(self.target.index, self.flags()).to_cmd_bytes();
        opcode::UringCmd16::new(
            types::Fd(self.target.fd.as_raw_fd()),
            uapi::HDP_FLUSH_IOC_FLUSH,
        )
        .cmd(cmd)
        .build()
    }

    /// The FLUSH ioctl, for a module without `URING_CMD` or a process without io_uring.
    fn ioctl(&self) -> Result<()> {
        flush_fd(self.target.fd, self.target.index, self.flags())
            .map_err(|errno| Error::os(self.what(), "FLUSH ioctl", errno))
    }

    fn completed(&self, res: i32) -> Result<()> {
        if res < 0 {
            Err(Error::os(
                self.what(),
                "URING_CMD FLUSH",
                Errno::from_raw(-res),
            ))
        } else {
            Ok(())
        }
    }
}

/// [`flush_gpus`] with its barriers issued through `fences` and its rings from `rings`.
fn flush_gpus_with(
    fences: &dyn Fences,
    rings: &RingPool,
    gpus: &[&dyn Flush],
    completion: Option<Completion>,
) -> Vec<Result<()>> {
    let completion_of = |gpu: &dyn Flush| completion.unwrap_or_else(|| gpu.completion());
    let mut requests = Vec::with_capacity(gpus.len());
    for (at, gpu) in gpus.iter().enumerate() {
        if let Some(target) = gpu.module_target() {
            requests.push(Request {
                at,
                target,
                completion: completion_of(*gpu),
            });
        }
    }
    // One module-served GPU gains nothing from a ring: its flusher's own request is one kernel
    // entry too.
    if requests.len() < 2 {
        requests.clear();
    }
    let mut module = Vec::new();
    if !requests.is_empty() {
        fences.store_fence();
        module = request_all(rings, &requests);
        if requests.iter().any(|r| r.completion == Completion::Posted) {
            fences.store_fence();
        }
    }
    let mut module = requests.iter().map(|r| r.at).zip(module).peekable();
    gpus.iter()
        .enumerate()
        .map(|(at, gpu)| match module.next_if(|(of, _)| *of == at) {
            Some((_, result)) => result,
            None => gpu.flush_with(completion_of(*gpu)),
        })
        .collect()
}

/// Every request's result, in order: those the module takes as `URING_CMD` in one
/// submission, the rest (and all of them if the submission fails) by ioctl.
fn request_all(rings: &RingPool, requests: &[Request<'_>]) -> Vec<Result<()>> {
    let entries: Vec<squeue::Entry> = requests
        .iter()
        .filter(|r| r.target.uring_cmd)
        .map(Request::sqe)
        .collect();
    let mut submitted = match submit(rings, entries) {
        Ok(results) => results.into_iter(),
        Err(_) => Vec::new().into_iter(),
    };
    requests
        .iter()
        .map(
            |r| match r.target.uring_cmd.then(|| submitted.next()).flatten() {
                Some(res) => r.completed(res),
                None => r.ioctl(),
            },
        )
        .collect()
}

/// One submission of `entries`; each one's `cqe.res`, in order.
fn submit(rings: &RingPool, entries: Vec<squeue::Entry>) -> Result<Vec<i32>> {
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    let mut ring = rings.take()?;
    // SAFETY: each request travels inside its SQE's command area: the entries reference no
    // memory. The fds are borrowed from the flushers for the whole call; should the call
    // fail, a completion arriving later touches no memory of ours either, and SQEs the kernel
    // has not consumed poison the ring, which the lease then drops with them (never submitted
    // later, against a reused fd number).
    unsafe { ring.run_each(rings.counters(), entries.into_iter()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::num::NonZeroUsize;
    use std::os::fd::AsFd;
    use std::path::Path;
    use std::sync::atomic::AtomicUsize;

    use crate::strategy::{Backing, BackingKind, StrategyKind};

    /// Counts the barriers issued.
    #[derive(Default)]
    struct CountedFences(AtomicUsize);

    impl Fences for CountedFences {
        fn store_fence(&self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
        fn full_fence(&self) {
            unreachable!("flush_gpus issues no full fence");
        }
    }

    /// A flusher that counts its own flushes and may name a "module device": any open file.
    /// /dev/null answers `URING_CMD` with success (Linux serves it there, for benchmarks),
    /// /dev/zero with EOPNOTSUPP; both answer the FLUSH ioctl with ENOTTY.
    struct Fake {
        node: Option<(File, &'static str, bool)>,
        completion: Completion,
        fails: bool,
        flushed: AtomicUsize,
    }

    impl Fake {
        fn module(path: &'static str, uring_cmd: bool, completion: Completion) -> Self {
            Self {
                node: Some((File::open(path).unwrap(), path, uring_cmd)),
                completion,
                fails: false,
                flushed: AtomicUsize::new(0),
            }
        }
        fn other(fails: bool) -> Self {
            Self {
                node: None,
                completion: Completion::Completed,
                fails,
                flushed: AtomicUsize::new(0),
            }
        }
    }

    impl Flush for Fake {
        fn kind(&self) -> StrategyKind {
            StrategyKind::Ioctl
        }
        fn backing(&self) -> Backing {
            Backing::new(BackingKind::StandIn, "a test's fake")
        }
        fn completion(&self) -> Completion {
            self.completion
        }
        fn flush_with(&self, _: Completion) -> Result<()> {
            self.flushed.fetch_add(1, Ordering::Relaxed);
            if self.fails {
                Err(Error::Unsupported {
                    strategy: StrategyKind::Ioctl,
                    op: "the fake's flush",
                })
            } else {
                Ok(())
            }
        }
        fn module_target(&self) -> Option<ModuleTarget<'_>> {
            let (file, path, uring_cmd) = self.node.as_ref()?;
            Some(ModuleTarget {
                fd: file.as_fd(),
                index: 7,
                path: Path::new(path),
                uring_cmd: *uring_cmd,
            })
        }
    }

    fn pool(entries: u32) -> RingPool {
        RingPool::new(
            RingSetup {
                entries,
                sqpoll_idle_ms: None,
            },
            NonZeroUsize::new(1),
        )
    }

    fn errno_op(r: &Result<()>) -> Option<(Errno, &'static str)> {
        match r {
            Err(Error::Os { errno, op, .. }) => Some((*errno, op)),
            _ => None,
        }
    }

    #[test]
    fn module_served_gpus_share_one_kernel_entry_and_each_gets_its_own_result() {
        let rings = pool(64);
        let Some(lease) = crate::skip::io_uring_or_skip(rings.take(), Error::is_uring_refused)
        else {
            return;
        };
        drop(lease);
        let (a, b, c) = (
            Fake::module("/dev/null", true, Completion::Completed),
            Fake::module("/dev/zero", true, Completion::Completed),
            Fake::module("/dev/null", true, Completion::Completed),
        );
        let (ok, failing) = (Fake::other(false), Fake::other(true));
        let gpus: [&dyn Flush; 5] = [&a, &ok, &b, &failing, &c];
        let fences = CountedFences::default();
        let before = rings.counters().enters.load(Ordering::Relaxed);
        let results = flush_gpus_with(&fences, &rings, &gpus, None);
        assert_eq!(rings.counters().enters.load(Ordering::Relaxed) - before, 1);
        assert_eq!(results[0], Ok(()));
        assert_eq!(
            errno_op(&results[2]),
            Some((Errno::EOPNOTSUPP, "URING_CMD FLUSH")),
            "{:?}",
            results[2]
        );
        let msg = results[2].as_ref().unwrap_err().to_string();
        assert!(msg.contains("/dev/zero device 7"), "{msg}");
        assert_eq!(results[4], Ok(()));
        assert_eq!(results[1], Ok(()));
        assert!(matches!(results[3], Err(Error::Unsupported { .. })));
        assert_eq!(
            [&a, &ok, &b, &failing, &c].map(|f| f.flushed.load(Ordering::Relaxed)),
            [0, 1, 0, 1, 0],
            "only the GPUs the module does not serve are flushed one by one"
        );
        assert_eq!(fences.0.load(Ordering::Relaxed), 1, "completed: one before");
    }

    #[test]
    fn posted_requests_get_a_store_fence_after_them_too() {
        let rings = pool(64);
        let (a, b) = (
            Fake::module("/dev/null", true, Completion::Completed),
            Fake::module("/dev/null", true, Completion::Posted),
        );
        let fences = CountedFences::default();
        flush_gpus_with(&fences, &rings, &[&a, &b], None);
        assert_eq!(
            fences.0.load(Ordering::Relaxed),
            2,
            "one posted: before and after"
        );
        let fences = CountedFences::default();
        flush_gpus_with(&fences, &rings, &[&a, &a], Some(Completion::Completed));
        assert_eq!(fences.0.load(Ordering::Relaxed), 1, "all completed: before");
    }

    #[test]
    fn a_module_without_uring_cmd_is_flushed_by_ioctl() {
        let rings = pool(64);
        let (a, b) = (
            Fake::module("/dev/null", false, Completion::Completed),
            Fake::module("/dev/null", false, Completion::Completed),
        );
        let before = rings.counters().enters.load(Ordering::Relaxed);
        let results = flush_gpus_with(&CountedFences::default(), &rings, &[&a, &b], None);
        for r in &results {
            // /dev/null refuses the ioctl (ENOTTY; qemu-user says ENOSYS).
            assert_eq!(errno_op(r).map(|(_, op)| op), Some("FLUSH ioctl"), "{r:?}");
        }
        assert_eq!(rings.counters().enters.load(Ordering::Relaxed), before);
    }

    #[test]
    fn where_io_uring_is_refused_each_gpu_gets_its_own_ioctl() {
        // io_uring_setup refuses a ring of 0 entries (EINVAL): setup fails as a refused
        // io_uring would, and the requests go by ioctl.
        let rings = pool(0);
        assert!(rings.take().is_err_and(|e| e.is_uring_refused()));
        let (a, b) = (
            Fake::module("/dev/null", true, Completion::Completed),
            Fake::module("/dev/null", true, Completion::Posted),
        );
        let results = flush_gpus_with(&CountedFences::default(), &rings, &[&a, &b], None);
        for r in &results {
            assert_eq!(errno_op(r).map(|(_, op)| op), Some("FLUSH ioctl"), "{r:?}");
        }
    }

    #[test]
    fn one_module_served_gpu_is_flushed_by_its_own_flusher() {
        let rings = pool(64);
        let a = Fake::module("/dev/null", true, Completion::Completed);
        let other = Fake::other(false);
        let fences = CountedFences::default();
        let results = flush_gpus_with(&fences, &rings, &[&a, &other], None);
        assert_eq!(results, vec![Ok(()), Ok(())]);
        assert_eq!(a.flushed.load(Ordering::Relaxed), 1);
        assert_eq!(fences.0.load(Ordering::Relaxed), 0, "its flusher fences");
        assert!(flush_gpus_with(&fences, &rings, &[], None).is_empty());
    }
}
