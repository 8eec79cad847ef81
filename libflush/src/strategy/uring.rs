//! The flush IOCTL's requests carried by io_uring `URING_CMD`.
//!
//! What it helps: with SQPOLL, flushing makes no system call at all, whatever the number of
//! threads flushing, which all share the process's one polling thread. It does not make a
//! flush faster: in the QEMU guests (`cargo xtask vm-bench`, phase `gpus`) one flush costs
//! 2.4-4.1x the ioctl, with SQPOLL 1.5-3.3x. One flush covers every store before it, so
//! there is nothing to batch for one GPU; several GPUs in one kernel entry is
//! [`crate::flush_gpus`].
//!
//! A handle keeps a capped pool of rings (`crate::ring_pool`): a call takes one, runs on it
//! without holding any lock, and puts it back, so threads sharing a handle never wait for each
//! other's completions; past the cap (one per CPU by default) a caller waits for a ring. Each
//! ring tags its calls' SQEs (`crate::ring`), so a completion is never credited to the wrong
//! call, and each process has its own rings: after `fork()` parent and child both keep
//! flushing through the same handle.

use std::num::NonZeroUsize;
use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;
use std::sync::atomic::Ordering;

use super::ioctl::{device_backing, request_flags};
use super::{Backing, Completion, KernelFlush, ModuleTarget, StrategyKind, Transport};
use crate::barrier::Fences;
use crate::device::HdpFlushDevice;
use crate::ring::RingSetup;
use crate::ring_pool::RingPool;
use crate::uapi::{self, HdpFlushRequest};
use crate::{Error, Result};
use io_uring::{opcode, squeue, types};

/// How to set the rings up.
#[derive(Clone, Copy, Debug)]
pub struct UringConfig {
    /// Module device index.
    pub device: u32,
    /// What [`crate::Flush::flush`] and batches give.
    pub completion: Completion,
    /// Submission queue entries: the largest batch sent in one `io_uring_enter`.
    pub entries: u32,
    /// Poll the rings from a kernel thread (the process's one SQ polling thread, which every
    /// SQPOLL ring of the process shares) that idles after this many milliseconds.
    pub sqpoll_idle_ms: Option<u32>,
    /// The most rings the handle sets up, one per thread flushing at the same time; further
    /// threads wait for a ring. `None`: the CPUs this process may run on.
    pub max_rings: Option<NonZeroUsize>,
}

impl Default for UringConfig {
    fn default() -> Self {
        Self {
            device: 0,
            completion: Completion::Completed,
            entries: 128,
            sqpoll_idle_ms: None,
            max_rings: None,
        }
    }
}

/// `URING_CMD` with `cmd_op` = the FLUSH / INVALIDATE ioctl number, request in the SQE.
pub type Uring = KernelFlush<UringTransport>;

/// One module device, reached through a pool of io_urings.
pub struct UringTransport {
    // Dropped before the device: an SQPOLL ring must be gone before the fd its commands name
    // is closed.
    pool: RingPool,
    dev: HdpFlushDevice,
    config: UringConfig,
    backing: Backing,
}

impl Uring {
    /// A ring on the default device path.
    pub fn open(config: UringConfig) -> Result<Self> {
        Self::open_path(Path::new(uapi::HDP_FLUSH_DEVICE_PATH), config)
    }

    /// A ring on the device node at `path`.
    pub fn open_path(path: &Path, config: UringConfig) -> Result<Self> {
        Self::on_device(HdpFlushDevice::open(path)?, config)
    }

    /// Rings for `config.device` through an open handle. One ring is set up now, so an
    /// io_uring the kernel or a sandbox refuses is an error here ([`Error::UringRefused`]: fall
    /// back to [`super::Ioctl`] on it), not at the first flush.
    pub fn on_device(dev: HdpFlushDevice, config: UringConfig) -> Result<Self> {
        let backing = device_backing(&dev, config.device)?;
        if dev.version().features & uapi::HDP_FLUSH_FEAT_URING_CMD == 0 {
            return Err(Error::Unavailable {
                strategy: StrategyKind::Uring,
                reason: format!(
                    "{}: the module does not serve URING_CMD",
                    dev.path().display()
                ),
            });
        }
        let pool = RingPool::new(
            RingSetup {
                entries: config.entries,
                sqpoll_idle_ms: config.sqpoll_idle_ms,
            },
            config.max_rings,
        );
        drop(pool.take()?);
        let transport = UringTransport {
            dev,
            config,
            pool,
            backing,
        };
        Ok(Self::with_transport(transport, config.completion))
    }

    /// The rings' configuration.
    pub fn config(&self) -> UringConfig {
        self.transport().config
    }

    /// `io_uring_enter` system calls made so far by all of this handle's rings.
    pub fn io_uring_enters(&self) -> u64 {
        self.transport()
            .pool
            .counters()
            .enters
            .load(Ordering::Relaxed)
    }

    /// `count` NOP commands in one submission: checked by the module like a FLUSH of this
    /// handle's device, then answered at once. What a `URING_CMD` costs before any flush (a
    /// benchmark floor; uAPI 1.1).
    pub fn nop_batch(&self, count: usize) -> Result<()> {
        self.transport()
            .submit(uapi::HDP_FLUSH_IOC_NOP, "URING_CMD NOP", 0, count)
    }

    /// Rings this process has set up on this handle (one per thread that flushed at the same
    /// time as others, up to [`UringConfig::max_rings`]).
    pub fn rings(&self) -> usize {
        self.transport().pool.made()
    }

    /// The most rings this handle sets up in one process.
    pub fn max_rings(&self) -> usize {
        self.transport().pool.max_rings()
    }
}

impl UringTransport {
    /// Run `count` copies of one command on a ring of the pool, taken for the call only.
    fn submit(&self, cmd_op: u32, op: &'static str, flags: u32, count: usize) -> Result<()> {
        let cmd = HdpFlushRequest::new(self.config.device, flags).to_cmd_bytes();
        let entry: squeue::Entry =
            opcode::UringCmd16::new(types::Fd(self.dev.as_fd().as_raw_fd()), cmd_op)
                .cmd(cmd)
                .build();
        let mut ring = self.pool.take()?;
        // SAFETY: the request travels inside the SQE's command area: the entries reference no
        // memory.
        let outcome = unsafe { ring.run(self.pool.counters(), std::iter::repeat_n(entry, count)) };
        drop(ring);
        match outcome?.failed {
            None => Ok(()),
            Some(errno) => Err(Error::os(self.dev.path().display().to_string(), op, errno)),
        }
    }
}

impl Fences for UringTransport {}

impl Transport for UringTransport {
    const KIND: StrategyKind = StrategyKind::Uring;

    fn backing(&self) -> Backing {
        self.backing.clone()
    }

    fn request_flush(&self, count: usize, completion: Completion) -> Result<()> {
        self.submit(
            uapi::HDP_FLUSH_IOC_FLUSH,
            "URING_CMD FLUSH",
            request_flags(completion),
            count,
        )
    }

    fn request_invalidate(&self) -> Result<()> {
        self.submit(uapi::HDP_FLUSH_IOC_INVALIDATE, "URING_CMD INVALIDATE", 0, 1)
    }

    fn module_target(&self) -> Option<ModuleTarget<'_>> {
        Some(ModuleTarget::of(&self.dev, self.config.device))
    }
}
