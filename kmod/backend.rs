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

#[cfg(hdp_test)]
use core::sync::atomic::AtomicU32;
use core::sync::atomic::{AtomicI64, Ordering};

use kernel::c_str;
use kernel::error::Error;
use kernel::prelude::*;

use crate::coalesce::Performed;
use crate::params::{AmdgpuDevice, Invalidate};
#[cfg(hdp_test)]
use crate::sys::ndelay;
use crate::sys::{now_ns, IoPage, PciDev, PciIdent, PmState};
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
    /// Whether the device is refused without being touched: its channel is offline or it is
    /// latched dead ([`Link`]; for DEVICE_INFO).
    fn offline(&self) -> bool {
        false
    }
    /// The PCI device it uses (a new reference) and the driver that must stay bound to it, to
    /// check at load that neither went before the bus notifier was listening. `None` for the
    /// model.
    fn attachment(&self) -> Option<(PciDev, Option<&'static CStr>)> {
        None
    }
}

// ---------------------------------------------------------------------------------------------
// A PCI device's worst day
// ---------------------------------------------------------------------------------------------

/// How long a device that answered all ones is left alone before a request asks, with a config
/// read, whether it is back. A mode-1 reset keeps a GPU away ~500 ms.
const DEAD_RETRY_NS: i64 = 1_000_000_000;

/// What the module has seen of a PCI device's health, consulted before every access to it.
///
/// - Its channel is offline (`pci_channel_offline()`: AER/DPC recovery froze it, or it was
///   surprise-removed): refused with EIO, untouched. The PCI core marks this before the bus
///   notifier hears of a removal.
/// - It answered a read with all ones, what a device that is gone, in reset or behind a dead
///   link answers: latched dead. Requests fail with EIO without touching the bus; at most once
///   per [`DEAD_RETRY_NS`] one asks with config reads whether it is back (present, and
///   decoding memory again: after a reset, config space answers before the BARs are restored),
///   and only then is MMIO tried again. Revocation (unbind, removal) ends it too. The kernel
///   log says so, at most once per [`LOG_EVERY_NS`].
///
/// What cannot be seen from outside amdgpu: `adev->no_hw_access`, which amdgpu sets during a
/// mode-1 reset and GPU recovery. A flush in that window touches a GPU in reset; on most hosts
/// the read returns all ones and latches it, on some arm64 servers such a read is a fatal
/// SError (docs/kernel-module.md, "A GPU's worst day").
///
/// Kept under the device lock, like the rest of the hardware: plain loads and stores suffice.
pub struct Link {
    dead_since: AtomicI64,
    /// When latching, and recovering, were last logged.
    logged: [AtomicI64; 2],
}

/// How often a device's latching, and its recovery, are each logged at most (one that flaps
/// would otherwise log twice a second).
const LOG_EVERY_NS: i64 = 10_000_000_000;
/// [`Link::logged`]'s entries.
const LATCHED: usize = 0;
const RECOVERED: usize = 1;

impl Link {
    const ALIVE: i64 = i64::MIN;

    fn new() -> Self {
        Self {
            dead_since: AtomicI64::new(Self::ALIVE),
            logged: [AtomicI64::new(i64::MIN), AtomicI64::new(i64::MIN)],
        }
    }

    /// Whether to log change `what` ([`LATCHED`], [`RECOVERED`]) now.
    fn log_now(&self, what: usize, now: i64) -> bool {
        let last = self.logged[what].load(Ordering::Relaxed);
        if last != i64::MIN && now.saturating_sub(last) < LOG_EVERY_NS {
            return false;
        }
        self.logged[what].store(now, Ordering::Relaxed);
        true
    }

    /// Run `access` on `dev`, unless its channel is offline or it is latched dead.
    fn access<R>(&self, dev: &PciDev, access: impl FnOnce() -> Result<R>) -> Result<R> {
        if dev.channel_offline() {
            return Err(EIO);
        }
        let since = self.dead_since.load(Ordering::Relaxed);
        if since != Self::ALIVE {
            let now = now_ns();
            if now.saturating_sub(since) < DEAD_RETRY_NS {
                return Err(EIO);
            }
            if !dev.is_present() || !dev.decodes_memory() {
                self.dead_since.store(now, Ordering::Relaxed);
                return Err(EIO);
            }
            self.dead_since.store(Self::ALIVE, Ordering::Relaxed);
            if self.log_now(RECOVERED, now) {
                pr_info!(
                    "{}: answers config reads again and decodes memory; accessing it again\n",
                    crate::name_str(&dev.ident().name)
                );
            }
        }
        access()
    }

    /// `value`, read from `dev`, unless it is all ones: then `dev` is latched dead.
    fn check(&self, dev: &PciDev, value: u32) -> Result<u32> {
        if value != u32::MAX {
            return Ok(value);
        }
        let now = now_ns();
        self.dead_since.store(now, Ordering::Relaxed);
        if self.log_now(LATCHED, now) {
            pr_warn!(
                "{}: a register read returned all ones (gone, in reset, or its link is down); EIO without touching it until config reads find it again\n",
                crate::name_str(&dev.ident().name)
            );
        }
        Err(EIO)
    }

    /// Whether `dev` is refused untouched: its channel is offline or it is latched dead (for
    /// DEVICE_INFO).
    fn offline(&self, dev: &PciDev) -> bool {
        dev.channel_offline() || self.dead_since.load(Ordering::Relaxed) != Self::ALIVE
    }
}

// ---------------------------------------------------------------------------------------------
// sim
// ---------------------------------------------------------------------------------------------

/// A model: a synchronous flush or invalidate busy-waits `delay_ns`, the modelled PCIe round
/// trip of the posting read; a posted flush costs nothing. With `fail_every = n > 0`, every
/// n-th hardware operation fails with EIO, so error paths can be tested without broken hardware;
/// with `stall_ms` (read at each flush) a flush sleeps that long first, holding the device as a
/// flush stuck on a dying GPU does. Test variant only.
#[cfg(hdp_test)]
pub struct Sim {
    index: u32,
    delay_ns: u32,
    fail_every: u32,
    stall_ms: &'static crate::sys::RuntimeParam,
    operations: AtomicU32,
}

/// Longest stall a sim flush takes (`test_stall_ms`).
#[cfg(hdp_test)]
const MAX_STALL_MS: u32 = 10_000;

#[cfg(hdp_test)]
impl Sim {
    /// Simulated device `index` with a round trip of `delay_ns`, failing every `fail_every`-th
    /// operation (0: never), each flush first sleeping `stall_ms` as it is then.
    pub fn new(
        index: u32,
        delay_ns: u32,
        fail_every: u32,
        stall_ms: &'static crate::sys::RuntimeParam,
    ) -> Self {
        Self {
            index,
            delay_ns,
            fail_every,
            stall_ms,
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

#[cfg(hdp_test)]
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
        let stall = self.stall_ms.get().min(MAX_STALL_MS);
        if stall > 0 {
            crate::sys::msleep(stall);
        }
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
#[cfg(hdp_test)]
pub const EDU_VENDOR: u32 = 0x1234;
/// Its device id.
#[cfg(hdp_test)]
pub const EDU_DEVICE: u32 = 0x11e8;
/// BAR 0: 1 MiB of registers.
#[cfg(hdp_test)]
const EDU_BAR: u32 = 0;
/// Identification register: 0xRRrr00ed.
#[cfg(hdp_test)]
const EDU_IDENT: usize = 0x00;
/// Liveness register: reads back the bitwise inverse of the last value written.
#[cfg(hdp_test)]
const EDU_LIVENESS: usize = 0x04;

/// A real MMIO store and readback on the `edu` device, the same code path an HDP register
/// flush takes (its [`Link`] checks included): a posted flush is one store; a synchronous one
/// also reads back and checks the device answered (the inverse of the token), so a lost store
/// is an error, not a silent pass. Test variant only.
#[cfg(hdp_test)]
pub struct PciTest {
    // Fields drop in order: the mapping goes before the device is disabled.
    regs: IoPage,
    dev: PciDev,
    ident: PciIdent,
    token: AtomicU32,
    link: Link,
    all_ones: &'static crate::sys::RuntimeParam,
}

#[cfg(hdp_test)]
impl PciTest {
    /// Enable `dev` (an edu device), map its first register page and check its identity. While
    /// `all_ones` is nonzero, stores write 0, whose inverse the device answers: all ones, what
    /// a GPU that is gone or in reset answers.
    pub fn probe(mut dev: PciDev, all_ones: &'static crate::sys::RuntimeParam) -> Result<Self> {
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
            link: Link::new(),
            all_ones,
        })
    }

    fn store_and_check(&self, check: bool) -> Result {
        self.link.access(&self.dev, || {
            // Never 0, whose inverse is all ones, what a device that is gone answers; unless a
            // test asks for exactly that.
            let token = match self.all_ones.get() {
                0 => self.token.fetch_add(1, Ordering::Relaxed).max(1),
                _ => 0,
            };
            self.regs.writel(EDU_LIVENESS, token)?;
            if check && self.link.check(&self.dev, self.regs.readl(EDU_LIVENESS)?)? != !token {
                return Err(EIO);
            }
            Ok(())
        })
    }

    /// Identity for matching PCI bus events.
    pub fn key(&self) -> usize {
        self.dev.key()
    }
}

#[cfg(hdp_test)]
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

    fn offline(&self) -> bool {
        self.link.offline(&self.dev)
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
pub const AMDGPU_DRIVER: &CStr = c_str!("amdgpu");

/// What an INVALIDATE does on one GPU ([`Invalidate`], with its register mapped).
enum InvalidateHw {
    /// Nobody said: `EOPNOTSUPP`.
    Unsupported,
    /// The HDP has nothing to invalidate: 0, untouched.
    NotNeeded,
    /// Store 1 to the register, read it back.
    Register(IoPage, usize),
}

/// An AMD GPU the administrator named in `amdgpu_devices`, bound to amdgpu: stores to its HDP
/// flush register through our own mapping of just the register pages involved.
///
/// NOT EXERCISED: no AMD GPU is reachable from the machines this was written on. The sequence
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
    link: Link,
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
    /// Set up `dev`, named with `gpu`'s offsets, if amdgpu is `bound` to it (the caller asks
    /// in the way its context allows). The offsets are checked against its register BAR before
    /// anything is mapped.
    pub fn probe(
        dev: PciDev,
        gpu: &AmdgpuDevice,
        bound: bool,
    ) -> core::result::Result<Self, NotServed> {
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
        if !bound {
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
            link: Link::new(),
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
        // Before the link's checks: a suspended GPU is not probed either (a latched GPU that
        // then suspended would otherwise fail every flush, each a config read of a GPU in D3).
        let _powered = match self.dev.pm_get_if_active() {
            PmState::Suspended => return Ok(Performed::Skipped),
            PmState::Active(reference) => reference,
        };
        self.link.access(&self.dev, || {
            // hdp_v4_0_flush_hdp: WREG32(HDP_MEM_FLUSH_CNTL, 0), then read another register.
            self.flush_page.writel(self.flush_in_page, 0)?;
            if sync {
                self.link
                    .check(&self.dev, self.post_page.readl(self.post_in_page)?)?;
            }
            Ok(Performed::Flushed)
        })
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
        self.link.access(&self.dev, || {
            // hdp_v4_0_invalidate_hdp: WREG32(HDP_READ_CACHE_INVALIDATE, 1), read it back.
            page.writel(*off, 1)?;
            self.link.check(&self.dev, page.readl(*off)?)?;
            Ok(())
        })
    }

    fn suspended(&self) -> bool {
        self.dev.runtime_suspended()
    }

    fn offline(&self) -> bool {
        self.link.offline(&self.dev)
    }
}

// ---------------------------------------------------------------------------------------------
// Any backend
// ---------------------------------------------------------------------------------------------

/// The backend a device uses. An enum rather than `KBox<dyn Backend>`: 6.12's `KBox` cannot
/// unsize, and the set of backends is closed.
pub enum AnyBackend {
    /// See [`Sim`].
    #[cfg(hdp_test)]
    Sim(Sim),
    /// See [`PciTest`].
    #[cfg(hdp_test)]
    PciTest(PciTest),
    /// See [`Amdgpu`].
    Amdgpu(Amdgpu),
}

impl AnyBackend {
    fn get(&self) -> &dyn Backend {
        match self {
            #[cfg(hdp_test)]
            Self::Sim(b) => b,
            #[cfg(hdp_test)]
            Self::PciTest(b) => b,
            Self::Amdgpu(b) => b,
        }
    }

    /// The PCI device it holds, as [`PciDev::key`]; `None` for the model.
    pub fn key(&self) -> Option<usize> {
        match self {
            #[cfg(hdp_test)]
            Self::Sim(_) => None,
            #[cfg(hdp_test)]
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
    fn offline(&self) -> bool {
        self.get().offline()
    }
    fn attachment(&self) -> Option<(PciDev, Option<&'static CStr>)> {
        self.get().attachment()
    }
}
