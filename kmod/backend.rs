// SPDX-License-Identifier: GPL-2.0
//! What a flush acts on, behind one trait: a model, a QEMU test device, or an AMD GPU.
//!
//! A backend only knows how to make its hardware flush or invalidate once; serialisation,
//! coalescing and counting are the caller's ([`crate::coalesce`]). Register offsets come from
//! the backend's own constants or module parameters, never from user space.

use core::sync::atomic::{AtomicU32, Ordering};

use kernel::c_str;
use kernel::error::Error;
use kernel::prelude::*;

use crate::sys::{ndelay, IoPage, PciDev, PciIdent};
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
    /// remap page.
    fn flush(&self, sync: bool) -> Result;
    /// Invalidate the HDP read cache (always synchronous).
    fn invalidate(&self) -> Result;
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

    fn flush(&self, sync: bool) -> Result {
        if sync {
            ndelay(self.delay_ns);
        }
        self.injected_fault()
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
    _dev: PciDev,
    regs: IoPage,
    ident: PciIdent,
    token: AtomicU32,
}

impl PciTest {
    /// Claim `dev` (an edu device), map its first register page and check its identity.
    pub fn probe(mut dev: PciDev) -> Result<Self> {
        dev.claim(EDU_BAR, c_str!("hdp_flush"))?;
        let regs = dev.map(EDU_BAR, 0, 4096)?;
        let id = regs.readl(EDU_IDENT)?;
        if id & 0xff != 0xed {
            pr_err!("device 1234:11e8 is not an edu device (ident {:#x})\n", id);
            return Err(ENODEV);
        }
        let ident = dev.ident();
        Ok(Self {
            _dev: dev,
            regs,
            ident,
            token: AtomicU32::new(1),
        })
    }

    fn store_and_check(&self, check: bool) -> Result {
        let token = self.token.fetch_add(1, Ordering::Relaxed);
        self.regs.writel(EDU_LIVENESS, token)?;
        if check && self.regs.readl(EDU_LIVENESS)? != !token {
            return Err(EIO);
        }
        Ok(())
    }
}

impl Backend for PciTest {
    fn ident(&self) -> Ident {
        Ident::pci(uapi::HDP_FLUSH_BACKEND_PCITEST, self.ident)
    }

    fn flush(&self, sync: bool) -> Result {
        self.store_and_check(sync)
    }

    fn invalidate(&self) -> Result {
        self.store_and_check(true)
    }
}

// ---------------------------------------------------------------------------------------------
// amdgpu
// ---------------------------------------------------------------------------------------------

/// AMD's PCI vendor id.
pub const AMD_VENDOR: u32 = 0x1002;
/// PCI base class of display controllers.
const CLASS_DISPLAY: u32 = 0x03;
/// Register BAR on gfx7 (Bonaire) and newer (`adev->rmmio_base`), and before.
const AMDGPU_RMMIO_BAR: u32 = 5;
const AMDGPU_RMMIO_BAR_PRE_GFX7: u32 = 2;
/// `MMIO_REG_HOLE_OFFSET` on 4K pages: amdgpu remaps HDP_MEM_FLUSH_CNTL to this page (nbio
/// v2.3, v4.3, v6.1, v7.0, v7.2, v7.4, v7.7, nbif v6.3.1; MI300's v7.9 uses 0x1A000 and
/// v7.11 0x44000, and SR-IOV VFs have no remap at all: those need `amdgpu_flush_offset`).
const MMIO_REG_HOLE_OFFSET_4K: u64 = 0x80000 - 4096;

/// Register offsets for one GPU, in bytes from the start of the register BAR.
#[derive(Clone, Copy)]
pub struct AmdgpuOffsets {
    /// HDP_MEM_COHERENCY_FLUSH_CNTL (or its remap): store 0 to flush.
    pub flush: u64,
    /// A register that is harmless to read, to post the flush (amdgpu reads the NBIO memsize
    /// register; reading the flush register back breaks some platforms).
    pub post: u64,
    /// HDP_READ_CACHE_INVALIDATE, if known: store 1, read back.
    pub invalidate: Option<u64>,
}

/// An AMD GPU bound to amdgpu: stores to its HDP flush register through our own mapping of
/// just the register pages involved.
///
/// NOT EXERCISED: no AMD GPU is reachable from the machines this was written on. The sequence
/// follows `hdp_v4_0_flush_hdp` / `hdp_v4_0_invalidate_hdp` (drivers/gpu/drm/amd/amdgpu) and
/// the same code path (claim-free mapping, writel/readl) runs against QEMU's edu device.
pub struct Amdgpu {
    _dev: PciDev,
    ident: PciIdent,
    flush_page: IoPage,
    flush_in_page: usize,
    post_page: IoPage,
    post_in_page: usize,
    invalidate: Option<(IoPage, usize)>,
}

/// Map the 4K page of `bar` holding `offset`, and `offset`'s position in it.
fn map_page_of(dev: &PciDev, bar: u32, offset: u64) -> Result<(IoPage, usize)> {
    let page = offset & !0xfff;
    Ok((dev.map(bar, page, 4096)?, (offset - page) as usize))
}

impl Amdgpu {
    /// Every AMD display-class device bound to amdgpu.
    pub fn find() -> Result<KVec<PciDev>> {
        let mut gpus = KVec::new();
        for dev in PciDev::find_all(AMD_VENDOR, kernel::bindings::PCI_ANY_ID as u32)? {
            if dev.ident().class >> 16 == CLASS_DISPLAY {
                gpus.push(dev, GFP_KERNEL)?;
            }
        }
        Ok(gpus)
    }

    /// The default flush offset on this kernel, if there is one.
    pub fn default_flush_offset(page_size: usize) -> Option<u64> {
        // On 64K pages amdgpu sets up no remap hole: the real register's offset comes from IP
        // discovery, known only to amdgpu and to an admin who reads it (docs/kernel-module.md).
        (page_size == 4096).then_some(MMIO_REG_HOLE_OFFSET_4K)
    }

    /// Set up `dev` with `offsets`, which are checked against the register BAR.
    pub fn probe(dev: PciDev, offsets: AmdgpuOffsets) -> Result<Self> {
        let ident = dev.ident();
        if !dev.is_bound_to(c_str!("amdgpu")) {
            pr_warn!(
                "{}: not bound to amdgpu; its HDP registers are not set up, skipped\n",
                crate::name_str(&ident.name)
            );
            return Err(ENODEV);
        }
        let bar = if dev.mem_bar(AMDGPU_RMMIO_BAR).is_some() {
            AMDGPU_RMMIO_BAR
        } else {
            AMDGPU_RMMIO_BAR_PRE_GFX7
        };
        let (flush_page, flush_in_page) = map_page_of(&dev, bar, offsets.flush)?;
        let (post_page, post_in_page) = map_page_of(&dev, bar, offsets.post)?;
        let invalidate = match offsets.invalidate {
            Some(off) => Some(map_page_of(&dev, bar, off)?),
            None => None,
        };
        Ok(Self {
            _dev: dev,
            ident,
            flush_page,
            flush_in_page,
            post_page,
            post_in_page,
            invalidate,
        })
    }
}

impl Backend for Amdgpu {
    fn ident(&self) -> Ident {
        Ident::pci(uapi::HDP_FLUSH_BACKEND_AMDGPU, self.ident)
    }

    fn flush(&self, sync: bool) -> Result {
        // hdp_v4_0_flush_hdp: WREG32(HDP_MEM_FLUSH_CNTL, 0), then read another register.
        self.flush_page.writel(self.flush_in_page, 0)?;
        if sync {
            self.post_page.readl(self.post_in_page)?;
        }
        Ok(())
    }

    fn invalidate(&self) -> Result {
        // hdp_v4_0_invalidate_hdp: WREG32(HDP_READ_CACHE_INVALIDATE, 1), read it back.
        // 6.12's kernel crate has no EOPNOTSUPP constant; from_errno knows the number.
        let unsupported = Error::from_errno(-(kernel::bindings::EOPNOTSUPP as i32));
        let (page, off) = self.invalidate.as_ref().ok_or(unsupported)?;
        page.writel(*off, 1)?;
        page.readl(*off)?;
        Ok(())
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
}

impl Backend for AnyBackend {
    fn ident(&self) -> Ident {
        self.get().ident()
    }
    fn flush(&self, sync: bool) -> Result {
        self.get().flush(sync)
    }
    fn invalidate(&self) -> Result {
        self.get().invalidate()
    }
}
