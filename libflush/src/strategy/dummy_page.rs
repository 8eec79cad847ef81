//! The "global VRAM dummy page" proposal: two separated 32-bit stores, then one 32-bit load.
//!
//! An amdgpu maintainer expected this to flush the HDP: less efficient than the remap page
//! (a full PCIe round trip per flush) but with no system call. The two stores land half a page
//! apart, in different HDP lines and cache lines; the load of the first one must wait behind
//! both. Like [`super::Legacy`] it relies on how the HDP treats a read behind pending writes,
//! which [`crate::sim::ReadPolicy`] makes explicit: that is why per-GPU selection uses it only
//! when the caller opts in.

use std::sync::atomic::{AtomicU32, Ordering};

use super::{Backing, BackingKind, Completion, Flush, StrategyKind};
use crate::region::{require_len, Bar, MappedRegion};
use crate::Result;

/// The smallest page the strategy accepts: the GPU's 4K page.
pub const DUMMY_PAGE_MIN: usize = 4096;

/// Two stores `DUMMY_PAGE_MIN / 2` apart and a load of the first, on a page nobody else uses.
/// A readback always completes: [`Completion::Posted`] gets the same sequence.
pub struct DummyPage<B: Bar = MappedRegion> {
    page: B,
    second: usize,
    seq: AtomicU32,
}

impl<B: Bar> DummyPage<B> {
    /// Flush through `page`, a host-visible VRAM page of at least 4K.
    pub fn new(page: B) -> Result<Self> {
        require_len(&page, "dummy page", DUMMY_PAGE_MIN)?;
        // Half of the GPU page, whatever the CPU page size: well apart, still 4-aligned.
        let second = DUMMY_PAGE_MIN / 2;
        Ok(Self {
            page,
            second,
            seq: AtomicU32::new(0),
        })
    }
}

impl DummyPage<MappedRegion> {
    /// A 4K anonymous page standing in for the VRAM dummy page.
    pub fn stand_in() -> Result<Self> {
        Self::new(MappedRegion::anonymous(DUMMY_PAGE_MIN)?)
    }

    /// Flush through a host-visible VRAM page the runtime allocated and mapped (KFD
    /// `VRAM | PUBLIC`, then mmap), `len` bytes at `page`. Nothing else may use the page.
    ///
    /// # Safety
    ///
    /// `page..page + len` must be that GPU's VRAM, mapped readable and writable, and stay
    /// mapped for as long as the flusher lives.
    pub unsafe fn from_caller(page: *mut u8, len: usize) -> Result<Self> {
        // SAFETY: the caller guarantees the page is mapped for the flusher's lifetime.
        Self::new(unsafe { caller_dummy_page(page, len) }?)
    }
}

/// The caller's VRAM page as a window.
///
/// # Safety
///
/// As [`DummyPage::from_caller`].
pub(crate) unsafe fn caller_dummy_page(page: *mut u8, len: usize) -> Result<MappedRegion> {
    let backing = Backing::new(
        BackingKind::Hardware,
        format!("the caller's VRAM page at {page:p} ({len} bytes)"),
    );
    // SAFETY: the caller's contract.
    unsafe { MappedRegion::from_caller(page, len, DUMMY_PAGE_MIN, backing) }
}

impl<B: Bar> Flush for DummyPage<B> {
    fn kind(&self) -> StrategyKind {
        StrategyKind::DummyPage
    }

    fn backing(&self) -> Backing {
        self.page.backing()
    }

    fn flush_with(&self, _: Completion) -> Result<()> {
        let value = self.seq.fetch_add(1, Ordering::Relaxed);
        // The payload goes ahead of the two stores, so a read that waits for them waits for
        // the payload too.
        self.page.store_fence();
        self.page.write_u32(0, value);
        self.page.write_u32(self.second, value);
        // The readback must not pass the buffered stores.
        self.page.full_fence();
        let _ = self.page.read_u32(0);
        // Later stores (the doorbell) must wait for the readback to return.
        self.page.full_fence();
        Ok(())
    }
}
