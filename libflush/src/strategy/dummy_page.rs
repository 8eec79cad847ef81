//! The "global VRAM dummy page" proposal: two separated 32-bit stores, then one 32-bit load.
//!
//! An amdgpu maintainer expected this to flush the HDP: less efficient than the remap page
//! (a full PCIe round trip per flush) but with no system call. The two stores land half a page
//! apart, in different HDP lines and cache lines; the load of the first one must wait behind
//! both. Like [`super::Legacy`] it relies on how the HDP treats a read behind pending writes,
//! which [`crate::sim::ReadPolicy`] makes explicit.

use std::sync::atomic::{AtomicU32, Ordering};

use super::{Backing, Flush, StrategyKind};
use crate::barrier::{full_fence, store_fence};
use crate::region::{require_len, Bar, MappedRegion};
use crate::Result;

/// The smallest page the strategy accepts: the GPU's 4K page.
pub const DUMMY_PAGE_MIN: usize = 4096;

/// Two stores `len / 2` apart and a load of the first, on a page nobody else uses.
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
}

impl<B: Bar> Flush for DummyPage<B> {
    fn kind(&self) -> StrategyKind {
        StrategyKind::DummyPage
    }

    fn backing(&self) -> Backing {
        self.page.backing()
    }

    fn flush(&self) -> Result<()> {
        let value = self.seq.fetch_add(1, Ordering::Relaxed);
        store_fence();
        self.page.write_u32(0, value);
        self.page.write_u32(self.second, value);
        full_fence();
        let _ = self.page.read_u32(0);
        Ok(())
    }
}
