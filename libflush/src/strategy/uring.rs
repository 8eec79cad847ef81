//! The flush IOCTL's requests carried by io_uring `URING_CMD`: many flushes per system call,
//! or none at all with SQPOLL, answering the "tons of extra IOCTL overhead" worry.
//!
//! A handle keeps a pool of rings: a call takes one, runs on it without holding any lock, and
//! puts it back, so threads sharing a handle never wait for each other's completions; the pool
//! grows to the number of threads flushing at once. Each ring tags its calls' SQEs
//! (`crate::ring`), so a completion is never credited to the wrong call.

use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};

use super::ioctl::{device_backing, request_flags};
use super::{Backing, Completion, KernelFlush, StrategyKind, Transport};
use crate::barrier::Fences;
use crate::device::HdpFlushDevice;
use crate::ring::{RingCounters, TaggedRing};
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
    /// Use a kernel SQ polling thread per ring that idles after this many milliseconds.
    pub sqpoll_idle_ms: Option<u32>,
}

impl Default for UringConfig {
    fn default() -> Self {
        Self {
            device: 0,
            completion: Completion::Completed,
            entries: 128,
            sqpoll_idle_ms: None,
        }
    }
}

/// `URING_CMD` with `cmd_op` = the FLUSH / INVALIDATE ioctl number, request in the SQE.
pub type Uring = KernelFlush<UringTransport>;

/// One module device, reached through a pool of io_urings.
pub struct UringTransport {
    dev: HdpFlushDevice,
    config: UringConfig,
    idle: Mutex<Vec<TaggedRing>>,
    counters: Arc<RingCounters>,
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
    /// io_uring the kernel or a sandbox refuses is an error here, not at the first flush.
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
        let counters = Arc::new(RingCounters::default());
        let first = TaggedRing::new(config.entries, config.sqpoll_idle_ms, Arc::clone(&counters))?;
        let transport = UringTransport {
            dev,
            config,
            idle: Mutex::new(vec![first]),
            counters,
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
        self.transport().counters.enters.load(Ordering::Relaxed)
    }

    /// `count` NOP commands in one submission: checked by the module like a FLUSH of this
    /// handle's device, then answered at once. What a `URING_CMD` costs before any flush (a
    /// benchmark floor; uAPI 1.1).
    pub fn nop_batch(&self, count: usize) -> Result<()> {
        self.transport()
            .submit(uapi::HDP_FLUSH_IOC_NOP, "URING_CMD NOP", 0, count)
    }

    /// Rings this handle has set up (one per thread that flushed at the same time as others).
    pub fn rings(&self) -> usize {
        self.transport().rings_made()
    }
}

impl UringTransport {
    fn rings_made(&self) -> usize {
        Arc::strong_count(&self.counters) - 1
    }

    /// Run `count` copies of one command on a ring of the pool, taken for the call only.
    fn submit(&self, cmd_op: u32, op: &'static str, flags: u32, count: usize) -> Result<()> {
        let cmd = HdpFlushRequest::new(self.config.device, flags).to_cmd_bytes();
        let entry: squeue::Entry =
            opcode::UringCmd16::new(types::Fd(self.dev.as_fd().as_raw_fd()), cmd_op)
                .cmd(cmd)
                .build();
        let taken = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let mut ring = match taken {
            Some(ring) => ring,
            None => TaggedRing::new(
                self.config.entries,
                self.config.sqpoll_idle_ms,
                Arc::clone(&self.counters),
            )?,
        };
        // SAFETY: the request travels inside the SQE's command area: the entries reference no
        // memory.
        let outcome = unsafe { ring.run(std::iter::repeat_n(entry, count)) };
        if !ring.is_poisoned() {
            self.idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(ring);
        }
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
}
