//! The flush IOCTL proposal: the kernel writes the HDP flush register on our behalf.
//!
//! Safe on any page size (nothing is mapped into the process); costs one system call per
//! flush, which [`super::Uring`] batching and the module's coalescing amortise.

use std::path::Path;

use super::{Backing, Completion, KernelFlush, ModuleTarget, StrategyKind, Transport};
use crate::barrier::Fences;
use crate::device::{backend_backing, backend_name, device_name, HdpFlushDevice};
use crate::uapi;
use crate::Result;

/// `FLUSH` / `INVALIDATE` ioctls on `/dev/hdp_flush` for one device.
pub type Ioctl = KernelFlush<IoctlTransport>;

/// One module device, reached by ioctl.
pub struct IoctlTransport {
    dev: HdpFlushDevice,
    index: u32,
    backing: Backing,
}

impl Ioctl {
    /// Module device `index` behind the default path.
    pub fn open(index: u32, completion: Completion) -> Result<Self> {
        Self::open_path(Path::new(uapi::HDP_FLUSH_DEVICE_PATH), index, completion)
    }

    /// As [`Ioctl::open`], on the device node at `path`.
    pub fn open_path(path: &Path, index: u32, completion: Completion) -> Result<Self> {
        Self::on_device(HdpFlushDevice::open(path)?, index, completion)
    }

    /// Module device `index` through an open handle.
    pub fn on_device(dev: HdpFlushDevice, index: u32, completion: Completion) -> Result<Self> {
        let backing = device_backing(&dev, index)?;
        let transport = IoctlTransport {
            dev,
            index,
            backing,
        };
        Ok(Self::with_transport(transport, completion))
    }

    /// The device handle (for NOP and STATS).
    pub fn device(&self) -> &HdpFlushDevice {
        &self.transport().dev
    }

    /// The module device index flushed.
    pub fn index(&self) -> u32 {
        self.transport().index
    }
}

/// `HDP_FLUSH_F_*` for a flush request.
pub(crate) fn request_flags(completion: Completion) -> u32 {
    match completion {
        Completion::Posted => 0,
        Completion::Completed => uapi::HDP_FLUSH_F_SYNC,
    }
}

/// Check `index` and describe it: the module's model, an emulated device, or hardware.
pub(crate) fn device_backing(dev: &HdpFlushDevice, index: u32) -> Result<Backing> {
    dev.check_index(index)?;
    let info = dev.device_info(index)?;
    let kind = backend_backing(info.backend);
    let detail = format!(
        "{} device {index}: {} ({} backend)",
        dev.path().display(),
        device_name(&info),
        backend_name(info.backend)
    );
    Ok(Backing::new(kind, detail))
}

impl Fences for IoctlTransport {}

impl Transport for IoctlTransport {
    const KIND: StrategyKind = StrategyKind::Ioctl;

    fn backing(&self) -> Backing {
        self.backing.clone()
    }

    fn request_flush(&self, count: usize, completion: Completion) -> Result<()> {
        let flags = request_flags(completion);
        (0..count).try_for_each(|_| self.dev.flush(self.index, flags))
    }

    fn request_invalidate(&self) -> Result<()> {
        self.dev.invalidate(self.index)
    }

    fn module_target(&self) -> Option<ModuleTarget<'_>> {
        Some(ModuleTarget::of(&self.dev, self.index))
    }
}
