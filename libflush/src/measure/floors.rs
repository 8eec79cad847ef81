//! Floors: what entering this host's kernel costs, with no flush behind it.
//!
//! The ioctl and io_uring strategies cost a kernel entry plus a register write. Measured on the
//! host's real kernel (not in a TCG guest), these floors are the inputs of the cost model, and
//! they are measurable on any Linux machine, with or without the hdp_flush module.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex, PoisonError};

use io_uring::opcode;
use nix::errno::Errno;

use crate::error::errno_of;
use crate::ring::TaggedRing;
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

/// io_uring NOPs, `batch` per `io_uring_enter`: the submission path without a driver.
pub struct UringNopFloor {
    ring: Mutex<TaggedRing>,
}

impl UringNopFloor {
    /// A ring with room for `entries` NOPs per enter.
    pub fn new(entries: u32) -> Result<Self> {
        let ring = TaggedRing::new(entries, None, Arc::default())?;
        Ok(Self {
            ring: Mutex::new(ring),
        })
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
        let mut ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        let nops = std::iter::repeat_n(opcode::Nop::new().build(), count);
        // SAFETY: NOPs reference no memory.
        match unsafe { ring.run(nops) }?.failed {
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
        // Sandboxes may forbid io_uring; then there is no floor to measure, and setup says so.
        match UringNopFloor::new(8) {
            Ok(f) => f.submit(20).unwrap(),
            Err(e) => assert!(e.to_string().contains("io_uring: setup failed"), "{e}"),
        }
    }
}
