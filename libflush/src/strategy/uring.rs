//! The flush IOCTL's requests carried by io_uring `URING_CMD`: many flushes per system call,
//! or none at all with SQPOLL, answering the "tons of extra IOCTL overhead" worry.

use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;
use std::sync::{Mutex, PoisonError};

use super::ioctl::device_backing;
use super::{Backing, Flush, StrategyKind};
use crate::device::HdpFlushDevice;
use crate::error::errno_of;
use crate::ring::submit_copies;
use crate::uapi::{self, HdpFlushRequest};
use crate::{Error, Result};
use io_uring::{opcode, types, IoUring};

/// How to set the ring up.
#[derive(Clone, Copy, Debug)]
pub struct UringConfig {
    /// Device index.
    pub device: u32,
    /// `HDP_FLUSH_F_*` for every flush.
    pub flags: u32,
    /// Submission queue entries: the largest batch sent in one `io_uring_enter`.
    pub entries: u32,
    /// Use a kernel SQ polling thread that idles after this many milliseconds.
    pub sqpoll_idle_ms: Option<u32>,
}

impl Default for UringConfig {
    fn default() -> Self {
        Self {
            device: 0,
            flags: 0,
            entries: 128,
            sqpoll_idle_ms: None,
        }
    }
}

/// `URING_CMD` with `cmd_op` = the FLUSH / INVALIDATE ioctl number, request in the SQE.
pub struct Uring {
    dev: HdpFlushDevice,
    ring: Mutex<IoUring>,
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
        let dev = HdpFlushDevice::open(path)?;
        let backing = device_backing(&dev, config.device)?;
        if dev.version().features & uapi::HDP_FLUSH_FEAT_URING_CMD == 0 {
            return Err(Error::Unavailable {
                strategy: StrategyKind::Uring,
                reason: format!("{}: the module does not serve URING_CMD", path.display()),
            });
        }
        let mut builder = IoUring::builder();
        if let Some(idle) = config.sqpoll_idle_ms {
            builder.setup_sqpoll(idle);
        }
        let ring = builder
            .build(config.entries)
            .map_err(|e| Error::os("io_uring", "setup", errno_of(&e)))?;
        Ok(Self {
            dev,
            ring: Mutex::new(ring),
            config,
            backing,
        })
    }

    /// The ring's configuration.
    pub fn config(&self) -> UringConfig {
        self.config
    }

    /// Submit `count` copies of one command and reap them all.
    fn submit(&self, cmd_op: u32, op: &'static str, flags: u32, count: usize) -> Result<()> {
        let cmd = HdpFlushRequest::new(self.config.device, flags).to_cmd_bytes();
        // The request travels inside the SQE's command area: the entry points at no buffer.
        let entry = opcode::UringCmd16::new(types::Fd(self.dev.as_fd().as_raw_fd()), cmd_op)
            .cmd(cmd)
            .build();
        let mut ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        // As for the ioctl: the payload stores must be ordered before the kernel (or its
        // SQ polling thread, on another CPU) writes the flush register.
        crate::barrier::store_fence();
        match submit_copies(&mut ring, &entry, count)? {
            None => Ok(()),
            Some(errno) => Err(Error::os(self.dev.path().display().to_string(), op, errno)),
        }
    }
}

impl Flush for Uring {
    fn kind(&self) -> StrategyKind {
        StrategyKind::Uring
    }

    fn backing(&self) -> Backing {
        self.backing.clone()
    }

    fn flush(&self) -> Result<()> {
        self.flush_batch(1)
    }

    fn invalidate(&self) -> Result<()> {
        self.submit(uapi::HDP_FLUSH_IOC_INVALIDATE, "URING_CMD INVALIDATE", 0, 1)
    }

    fn flush_batch(&self, count: usize) -> Result<()> {
        self.submit(
            uapi::HDP_FLUSH_IOC_FLUSH,
            "URING_CMD FLUSH",
            self.config.flags,
            count,
        )
    }
}
