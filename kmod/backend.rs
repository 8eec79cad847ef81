// SPDX-License-Identifier: GPL-2.0
//! What a flush acts on, behind one trait: a model, a QEMU test device, or an AMD GPU.
//!
//! A backend only knows how to make its hardware flush or invalidate once; serialisation,
//! coalescing and counting are the caller's ([`crate::coalesce`]). Register offsets come from
//! the backend's own constants or module parameters, never from user space.
//!
//! A backend is the hardware a device's requests touch (mappings, a reference to the PCI
//! device). It lives in the device's locked state, so the module can take it away (revoke it)
//! when the device is removed or unbound; what user space sees of a device ([`Ident`]) is kept
//! apart and outlives it.

use core::sync::atomic::{AtomicU32, Ordering};

use kernel::c_str;
use kernel::error::Error;
use kernel::prelude::*;

use crate::coalesce::Performed;
use crate::params::{AmdgpuDevice, Invalidate};
use crate::sys::{ndelay, IoPage, PciDev, PciIdent, PmState};
use crate::uapi;

/// How user space sees a device (DEVICE_INFO).
#[derive(Clone, Copy)]
pub struct Ident {
    /// `HDP_FLUSH_BACKEND_*`.
    pub backend: u32,
    /// PCI location and ids (zero for the simulator).
    pub pci: Option<PciIdent>,
    /// NUL-padded name.
    pub name: [u8; uapi::HDP_FLUSH_NAME_LEN],
}

impl Ident {
    /// A PCI device served by `backend`, named by its location.
    fn pci(backend: u32, pci: PciIdent) -> Self {
        Self {
            backend,
            pci: Some(pci),
            name: pci.name,
        }
    }
}

/// One device's flush and invalidate.
pub trait Backend: Send + Sync {
    /// Identification.
    fn ident(&self) -> Ident;
    /// Flush the HDP write FIFO. `sync`: return only once the flush has landed (post the
    /// register write with a read); otherwise the posted store suffices, as with the 4K
    /// remap page. `Skipped` when there is nothing to flush (a runtime-suspended GPU).
    fn flush(&self, sync: bool) -> Result<Performed>;
    /// Invalidate the HDP read cache (always synchronous).
    fn invalidate(&self) -> Result;
    /// Whether the device is runtime-suspended (for DEVICE_INFO).
    fn suspended(&self) -> bool {
        false
    }
    /// The PCI device it uses (a new reference) and the driver that must stay bound to it, to
    /// check at load that neither went before the bus notifier was listening. `None` for the
    /// model.
    fn attachment(&self) -> Option<(PciDev, Option<&'static CStr>)> {
        None
    }
}

/// A posting read that returns all ones came from no device: it is gone, or in reset.
fn check_alive(value: u32) -> Result<u32> {
    if value == u32::MAX {
        return Err(EIO);
    }
    Ok(value)
}

// ---------------------------------------------------------------------------------------------
// sim
// ---------------------------------------------------------------------------------------------

/// A model: a synchronous flush or invalidate busy-waits `delay_ns`, the modelled PCIe round
/// trip of the posting read; a posted flush costs nothing. With `fail_every = n > 0`, every
/// n-th hardware operation fails with EIO, so error paths can be tested without broken hardware.
pub struct Sim {
    index: u32,
    delay_ns: u32,
    fail_every: u32,
    operations: AtomicU32,
}

impl Sim {
    /// Simulated device `index` with a round trip of `delay_ns`, failing every `fail_every`-th
    /// operation (0: never).
    pub fn new(index: u32, delay_ns: u32, fail_every: u32) -> Self {
        Self {
            index,
            delay_ns,
            fail_every,
            operations: AtomicU32::new(0),
        }
    }

    fn injected_fault(&self) -> Result {
        let n = self.operations.fetch_add(1, Ordering::Relaxed) + 1;
        if self.fail_every != 0 && n % self.fail_every == 0 {
            return Err(EIO);
        }
        Ok(())
    }
}

impl Backend for Sim {
    fn ident(&self) -> Ident {
        let mut name = [0u8; uapi::HDP_FLUSH_NAME_LEN];
        name[..3].copy_from_slice(b"sim");
        name[3] = b'0' + (self.index % 10) as u8;
        Ident {
            backend: uapi::HDP_FLUSH_BACKEND_SIM,
            pci: None,
            name,
        }
    }

    fn flush(&self, sync: bool) -> Result<Performed> {
        if sync {
            ndelay(self.delay_ns);
        }
        self.injected_fault().map(|()| Performed::Flushed)
    }

    fn invalidate(&self) -> Result {
        ndelay(self.delay_ns);
        self.injected_fault()
    }
}

// ---------------------------------------------------------------------------------------------
// pcitest: QEMU's `edu` device
// ---------------------------------------------------------------------------------------------

/// QEMU's educational PCI device (`-device edu`).
pub const EDU_VENDOR: u32 = 0x1234;
/// Its device id.
pub const EDU_DEVICE: u32 = 0x11e8;
/// BAR 0: 1 MiB of registers.
const EDU_BAR: u32 = 0;
/// Identification register: 0xRRrr00ed.
const EDU_IDENT: usize = 0x00;
/// Liveness register: reads back the bitwise inverse of the last value written.
const EDU_LIVENESS: usize = 0x04;

/// A real MMIO store and readback on the `edu` device, the same code path an HDP register
/// flush takes: a posted flush is one store; a synchronous one also reads back and checks the
/// device answered (the inverse of the token), so a lost store is an error, not a silent pass.
pub struct PciTest {
    // Fields drop in order: the mapping goes before the device is disabled.
    regs: IoPage,
    dev: PciDev,
    ident: PciIdent,
    token: AtomicU32,
}

impl PciTest {
    /// Enable `dev` (an edu device), map its first register page and check its identity.
    pub fn probe(mut dev: PciDev) -> Result<Self> {
        dev.enable()?;
        let regs = dev.map(EDU_BAR, 0, 4096)?;
        let id = regs.readl(EDU_IDENT)?;
        if id & 0xff != 0xed {
            pr_err!("device 1234:11e8 is not an edu device (ident {:#x})\n", id);
            return Err(ENODEV);
        }
        let ident = dev.ident();
        Ok(Self {
            regs,
            dev,
            ident,
            token: AtomicU32::new(1),
        })
    }

    fn store_and_check(&self, check: bool) -> Result {
        // Never 0: its inverse is all ones, what a device that is gone answers.
        let token = self.token.fetch_add(1, Ordering::Relaxed).max(1);
        self.regs.writel(EDU_LIVENESS, token)?;
        if check && check_alive(self.regs.readl(EDU_LIVENESS)?)? != !token {
            return Err(EIO);
        }
        Ok(())
    }

    /// Identity for matching PCI bus events.
    pub fn key(&self) -> usize {
        self.dev.key()
    }
}

impl Backend for PciTest {
    fn ident(&self) -> Ident {
        Ident::pci(uapi::HDP_FLUSH_BACKEND_PCITEST, self.ident)
    }

    fn attachment(&self) -> Option<(PciDev, Option<&'static CStr>)> {
        Some((self.dev.new_ref(), None))
    }

    fn flush(&self, sync: bool) -> Result<Performed> {
        self.store_and_check(sync).map(|()| Performed::Flushed)
    }

    fn invalidate(&self) -> Result {
        self.store_and_check(true)
    }
}

// ---------------------------------------------------------------------------------------------
// amdgpu
// ---------------------------------------------------------------------------------------------

/// AMD's PCI vendor id.
pub const AMD_VENDOR: u16 = 0x1002;
/// PCI base classes amdgpu drives: display controllers, and processing accelerators
/// (MI300-class Instinct parts).
const GPU_CLASSES: [u32; 2] = [0x03, 0x12];
/// The register BAR of every GPU amdgpu drives with SOC15 IP blocks (`adev->rmmio_base =
/// pci_resource_start(pdev, 5)` for Bonaire and newer). There is no fallback: on SOC15 parts
/// BAR 2 is the doorbell BAR, and a flush stored there would ring a doorbell.
const AMDGPU_RMMIO_BAR: u32 = 5;

/// The driver a served GPU must stay bound to: it set the HDP registers up.
const AMDGPU_DRIVER: &CStr = c_str!("amdgpu");

/// An AMD GPU the administrator named in `amdgpu_devices`, bound to amdgpu: stores to its HDP
/// flush register through our own mapping of just the register pages involved.
///
/// NOT EXERCISED: no AMD GPU is reachable from the machines this was written on. The sequence
/// What an INVALIDATE does on one GPU ([`Invalidate`], with its register mapped).
enum InvalidateHw {
    /// Nobody said: `EOPNOTSUPP`.
    Unsupported,
    /// The HDP has nothing to invalidate: 0, untouched.
    NotNeeded,
    /// Store 1 to the register, read it back.
    Register(IoPage, usize),
}

/// follows `hdp_v4_0_flush_hdp` / `hdp_v4_0_invalidate_hdp` (drivers/gpu/drm/amd/amdgpu) and
/// the same code path (claim-free mapping, writel/readl) runs against QEMU's edu device.
pub struct Amdgpu {
    // Fields drop in order: the mappings go before the device reference.
    flush_page: IoPage,
    flush_in_page: usize,
    post_page: IoPage,
    post_in_page: usize,
    invalidate: InvalidateHw,
    dev: PciDev,
    ident: PciIdent,
}

/// Map the 4K page of `bar` holding `offset`, and `offset`'s position in it.
fn map_page_of(dev: &PciDev, bar: u32, offset: u64) -> Result<(IoPage, usize)> {
    let page = offset & !0xfff;
    Ok((dev.map(bar, page, 4096)?, (offset - page) as usize))
}

/// Why a named GPU is not served: the module keeps loading without it (`Absent`), or the
/// parameter is wrong and the load fails (`Refused`), each with its message.
pub enum NotServed {
    /// Not there (yet): no such device, or not bound to amdgpu.
    Absent(&'static str),
    /// The parameter names something that is not what it says.
    Refused(Error),
}

impl Amdgpu {
    /// Set up `dev`, named with `gpu`'s offsets. The offsets are checked against its register
    /// BAR before anything is mapped.
    pub fn probe(dev: PciDev, gpu: &AmdgpuDevice) -> core::result::Result<Self, NotServed> {
        let ident = dev.ident();
        let name = crate::name_str(&ident.name);
        if ident.vendor != AMD_VENDOR || !GPU_CLASSES.contains(&(ident.class >> 16)) {
            pr_err!(
                "amdgpu_devices: {} is not an AMD GPU (vendor {:04x}, class {:06x})\n",
                name,
                ident.vendor,
                ident.class
            );
            return Err(NotServed::Refused(EINVAL));
        }
        if !dev.is_bound_to(AMDGPU_DRIVER) {
            return Err(NotServed::Absent(
                "not bound to amdgpu, which sets its HDP registers up",
            ));
        }
        let Some((_, bar_len)) = dev.mem_bar(AMDGPU_RMMIO_BAR) else {
            pr_err!(
                "amdgpu_devices: {} has no register BAR {}\n",
                name,
                AMDGPU_RMMIO_BAR
            );
            return Err(NotServed::Refused(EINVAL));
        };
        if let Err(e) = gpu.check_bar(bar_len) {
            pr_err!("amdgpu_devices: {}: {}\n", name, e);
            return Err(NotServed::Refused(EINVAL));
        }
        let map = |offset| map_page_of(&dev, AMDGPU_RMMIO_BAR, offset);
        let mapped = (|| {
            let (flush_page, flush_in_page) = map(gpu.flush)?;
            let (post_page, post_in_page) = map(gpu.post)?;
            let invalidate = match gpu.invalidate {
                Invalidate::Unset => InvalidateHw::Unsupported,
                Invalidate::NotNeeded => InvalidateHw::NotNeeded,
                Invalidate::Register(offset) => {
                    let (page, off) = map(offset)?;
                    InvalidateHw::Register(page, off)
                }
            };
            Ok((
                flush_page,
                flush_in_page,
                post_page,
                post_in_page,
                invalidate,
            ))
        })();
        let (flush_page, flush_in_page, post_page, post_in_page, invalidate) =
            mapped.map_err(NotServed::Refused)?;
        Ok(Self {
            flush_page,
            flush_in_page,
            post_page,
            post_in_page,
            invalidate,
            dev,
            ident,
        })
    }
}

impl Amdgpu {
    /// Identity for matching PCI bus events.
    pub fn key(&self) -> usize {
        self.dev.key()
    }
}

impl Backend for Amdgpu {
    fn ident(&self) -> Ident {
        Ident::pci(uapi::HDP_FLUSH_BACKEND_AMDGPU, self.ident)
    }

    fn attachment(&self) -> Option<(PciDev, Option<&'static CStr>)> {
        Some((self.dev.new_ref(), Some(AMDGPU_DRIVER)))
    }

    fn flush(&self, sync: bool) -> Result<Performed> {
        // amdgpu runtime-suspends idle GPUs; a suspended GPU has nothing in its HDP to flush,
        // and reading its registers would be an Unsupported Request (an SError on many arm64
        // servers). Touch it only if it is active, and keep it so until done.
        let _powered = match self.dev.pm_get_if_active() {
            PmState::Suspended => return Ok(Performed::Skipped),
            PmState::Active(reference) => reference,
        };
        // hdp_v4_0_flush_hdp: WREG32(HDP_MEM_FLUSH_CNTL, 0), then read another register.
        self.flush_page.writel(self.flush_in_page, 0)?;
        if sync {
            check_alive(self.post_page.readl(self.post_in_page)?)?;
        }
        Ok(Performed::Flushed)
    }

    fn invalidate(&self) -> Result {
        let (page, off) = match &self.invalidate {
            // 6.12's kernel crate has no EOPNOTSUPP constant; from_errno knows the number.
            InvalidateHw::Unsupported => {
                return Err(Error::from_errno(-(kernel::bindings::EOPNOTSUPP as i32)))
            }
            // amdgpu's invalidate_hdp does nothing on this HDP: neither do we.
            InvalidateHw::NotNeeded => return Ok(()),
            InvalidateHw::Register(page, off) => (page, off),
        };
        // A suspended GPU's read cache holds nothing to invalidate.
        let _powered = match self.dev.pm_get_if_active() {
            PmState::Suspended => return Ok(()),
            PmState::Active(reference) => reference,
        };
        // hdp_v4_0_invalidate_hdp: WREG32(HDP_READ_CACHE_INVALIDATE, 1), read it back.
        page.writel(*off, 1)?;
        check_alive(page.readl(*off)?)?;
        Ok(())
    }

    fn suspended(&self) -> bool {
        self.dev.runtime_suspended()
    }
}

// ---------------------------------------------------------------------------------------------
// Any backend
// ---------------------------------------------------------------------------------------------

/// The backend a device uses. An enum rather than `KBox<dyn Backend>`: 6.12's `KBox` cannot
/// unsize, and the set of backends is closed.
pub enum AnyBackend {
    /// See [`Sim`].
    Sim(Sim),
    /// See [`PciTest`].
    PciTest(PciTest),
    /// See [`Amdgpu`].
    Amdgpu(Amdgpu),
}

impl AnyBackend {
    fn get(&self) -> &dyn Backend {
        match self {
            Self::Sim(b) => b,
            Self::PciTest(b) => b,
            Self::Amdgpu(b) => b,
        }
    }

    /// The PCI device it holds, as [`PciDev::key`]; `None` for the model.
    pub fn key(&self) -> Option<usize> {
        match self {
            Self::Sim(_) => None,
            Self::PciTest(b) => Some(b.key()),
            Self::Amdgpu(b) => Some(b.key()),
        }
    }
}

impl Backend for AnyBackend {
    fn ident(&self) -> Ident {
        self.get().ident()
    }
    fn flush(&self, sync: bool) -> Result<Performed> {
        self.get().flush(sync)
    }
    fn invalidate(&self) -> Result {
        self.get().invalidate()
    }
    fn suspended(&self) -> bool {
        self.get().suspended()
    }
    fn attachment(&self) -> Option<(PciDev, Option<&'static CStr>)> {
        self.get().attachment()
    }
}
