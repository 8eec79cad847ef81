//! Floors: what entering this host's kernel costs, with no flush behind it.
//!
//! The ioctl and io_uring strategies cost a kernel entry plus a register write. Measured on the
//! host's real kernel (not in a TCG guest), these floors are the inputs of the cost model, and
//! they are measurable on any Linux machine, with or without the hdp_flush module.

use std::fs::File;
use std::num::NonZeroUsize;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;

use io_uring::opcode;
use nix::errno::Errno;

use crate::error::errno_of;
use crate::ring::RingSetup;
use crate::ring_pool::RingPool;
use crate::strategy::{Backing, BackingKind};
use crate::{Error, Result};

nix::ioctl_none_bad!(unknown_ioctl, crate::uapi::HDP_FLUSH_IOC_NOP);

const NULL: &str = "/dev/null";

/// One ioctl that the kernel rejects with `ENOTTY` (our NOP number on `/dev/null`): a full
/// syscall entry, fd lookup and dispatch, and nothing else.
pub struct IoctlFloor {
    file: File,
}

impl IoctlFloor {
    /// Open `/dev/null`.
    pub fn open() -> Result<Self> {
        let file = File::open(NULL).map_err(|e| Error::os(NULL, "open", errno_of(&e)))?;
        Ok(Self { file })
    }

    /// What it runs on.
    pub fn backing(&self) -> Backing {
        Backing::new(
            BackingKind::HostKernel,
            "ioctl rejected by /dev/null: this host's syscall floor",
        )
    }

    /// Enter the kernel once.
    pub fn enter(&self) -> Result<()> {
        // SAFETY: a no-argument ioctl on a file we own; /dev/null rejects it without reading.
        match unsafe { unknown_ioctl(self.file.as_raw_fd()) } {
            Ok(_) | Err(Errno::ENOTTY) => Ok(()),
            Err(e) => Err(Error::os(NULL, "ioctl", e)),
        }
    }
}

/// io_uring NOPs, `batch` per `io_uring_enter`: the submission path without a driver, through
/// the same pool of rings the `uring` strategy uses (threads sharing it each get a ring; a
/// `fork()`ed child gets rings of its own).
pub struct UringNopFloor {
    pool: RingPool,
}

impl UringNopFloor {
    /// Rings with room for `entries` NOPs per enter, at most one per CPU; one is set up now,
    /// so a refused io_uring ([`Error::UringRefused`]) is an error here.
    pub fn new(entries: u32) -> Result<Self> {
        Self::with(entries, None, None)
    }

    /// As [`UringNopFloor::new`], polled by the process's SQPOLL thread that idles after
    /// `sqpoll_idle_ms` when given, with at most `max_rings` rings (default: one per CPU).
    pub fn with(
        entries: u32,
        sqpoll_idle_ms: Option<u32>,
        max_rings: Option<NonZeroUsize>,
    ) -> Result<Self> {
        let pool = RingPool::new(
            RingSetup {
                entries,
                sqpoll_idle_ms,
            },
            max_rings,
        );
        drop(pool.take()?);
        Ok(Self { pool })
    }

    /// `io_uring_enter` calls made so far by its rings.
    pub fn io_uring_enters(&self) -> u64 {
        self.pool.counters().enters.load(Ordering::Relaxed)
    }

    /// Rings set up by this process so far.
    pub fn rings(&self) -> usize {
        self.pool.made()
    }

    /// What it runs on.
    pub fn backing(&self) -> Backing {
        Backing::new(
            BackingKind::HostKernel,
            "io_uring NOP: this host's submission floor",
        )
    }

    /// Submit and reap `count` NOPs.
    pub fn submit(&self, count: usize) -> Result<()> {
        let mut ring = self.pool.take()?;
        let nops = std::iter::repeat_n(opcode::Nop::new().build(), count);
        // SAFETY: NOPs reference no memory.
        match unsafe { ring.run(self.pool.counters(), nops) }?.failed {
            None => Ok(()),
            Some(errno) => Err(Error::os("io_uring", "NOP", errno)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ioctl_floor_enters_the_kernel_and_accepts_enotty() {
        let f = IoctlFloor::open().unwrap();
        f.enter().unwrap();
        assert_eq!(f.backing().kind, BackingKind::HostKernel);
    }

    #[test]
    fn the_uring_floor_reaps_every_nop_across_several_enters() {
        let Some(f) = crate::skip::io_uring_or_skip(UringNopFloor::new(8), Error::is_uring_refused)
        else {
            return;
        };
        let before = f.io_uring_enters();
        f.submit(20).unwrap();
        assert!(
            f.io_uring_enters() - before >= 3,
            "20 NOPs through 8 entries"
        );
    }
}
