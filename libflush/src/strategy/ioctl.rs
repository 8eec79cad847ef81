//! The flush IOCTL proposal: the kernel writes the HDP flush register on our behalf.
//!
//! Safe on any page size (nothing is mapped into the process); costs one system call per
//! flush, which [`super::Uring`] batching and the module's coalescing amortise.

use std::path::Path;

use super::{Backing, BackingKind, Flush, StrategyKind};
use crate::device::{backend_name, device_name, HdpFlushDevice};
use crate::uapi;
use crate::Result;

/// `FLUSH` / `INVALIDATE` ioctls on `/dev/hdp_flush` for one device.
pub struct Ioctl {
    dev: HdpFlushDevice,
    index: u32,
    flags: u32,
    backing: Backing,
}

impl Ioctl {
    /// Device `index` behind the default path; `flags` are `HDP_FLUSH_F_*` for every flush.
    pub fn open(index: u32, flags: u32) -> Result<Self> {
        Self::open_path(Path::new(uapi::HDP_FLUSH_DEVICE_PATH), index, flags)
    }

    /// As [`Ioctl::open`], on the device node at `path`.
    pub fn open_path(path: &Path, index: u32, flags: u32) -> Result<Self> {
        let dev = HdpFlushDevice::open(path)?;
        let backing = device_backing(&dev, index)?;
        Ok(Self {
            dev,
            index,
            flags,
            backing,
        })
    }

    /// The device handle (for NOP and STATS).
    pub fn device(&self) -> &HdpFlushDevice {
        &self.dev
    }
}

/// Check `index` and describe it: the module's model, or hardware.
pub(crate) fn device_backing(dev: &HdpFlushDevice, index: u32) -> Result<Backing> {
    dev.check_index(index)?;
    let info = dev.device_info(index)?;
    let kind = if info.backend == uapi::HDP_FLUSH_BACKEND_SIM {
        BackingKind::KernelModel
    } else {
        BackingKind::Hardware
    };
    let detail = format!(
        "{} device {index}: {} ({} backend)",
        dev.path().display(),
        device_name(&info),
        backend_name(info.backend)
    );
    Ok(Backing::new(kind, detail))
}

impl Flush for Ioctl {
    fn kind(&self) -> StrategyKind {
        StrategyKind::Ioctl
    }

    fn backing(&self) -> Backing {
        self.backing.clone()
    }

    fn flush(&self) -> Result<()> {
        // Entering the kernel does not drain write-combining buffers or order device stores on
        // every architecture: the payload must be on its way before the kernel writes the
        // flush register, possibly from another CPU that coalesced our request.
        crate::barrier::store_fence();
        self.dev.flush(self.index, self.flags)
    }

    fn invalidate(&self) -> Result<()> {
        self.dev.invalidate(self.index)
    }
}
