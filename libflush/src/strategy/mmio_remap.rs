//! ROCm's fast path: one store to the 4K MMIO remap page KFD maps into the process.
//!
//! amdgpu points the hardware's remapped HDP flush registers at an otherwise empty 4K page of
//! the register BAR; KFD lets a process map that page (`KFD_IOC_ALLOC_MEM_FLAGS_MMIO_REMAP`),
//! and a store there flushes without a system call. KFD refuses the mapping when PAGE_SIZE is
//! not 4K, which is why the other strategies exist.

use super::{Backing, Flush, StrategyKind};
use crate::region::{require_len, Bar, MappedRegion};
use crate::Result;

/// `KFD_MMIO_REMAP_HDP_MEM_FLUSH_CNTL` (include/uapi/linux/kfd_ioctl.h).
pub const REMAP_HDP_MEM_FLUSH_CNTL: usize = 0;
/// `KFD_MMIO_REMAP_HDP_REG_FLUSH_CNTL`.
pub const REMAP_HDP_REG_FLUSH_CNTL: usize = 4;

/// Store 1 to `HDP_MEM_FLUSH_CNTL` in the remap page, as ROCclr does. The store is posted:
/// PCIe keeps it ordered before a later doorbell store, so no readback is needed.
pub struct MmioRemap<B: Bar = MappedRegion> {
    page: B,
}

impl<B: Bar> MmioRemap<B> {
    /// Use `page`, a mapping of the remap page.
    pub fn new(page: B) -> Result<Self> {
        require_len(&page, "MMIO remap page", REMAP_HDP_REG_FLUSH_CNTL + 4)?;
        Ok(Self { page })
    }
}

impl MmioRemap<MappedRegion> {
    /// A 4K anonymous page standing in for the remap page: measures the CPU side of the store.
    pub fn stand_in() -> Result<Self> {
        Self::new(MappedRegion::anonymous(4096)?)
    }
}

impl<B: Bar> Flush for MmioRemap<B> {
    fn kind(&self) -> StrategyKind {
        StrategyKind::MmioRemap
    }

    fn backing(&self) -> Backing {
        self.page.backing()
    }

    fn flush(&self) -> Result<()> {
        // The payload stores must reach the BAR before the flush request does.
        crate::barrier::store_fence();
        self.page.write_u32(REMAP_HDP_MEM_FLUSH_CNTL, 1);
        Ok(())
    }
}
