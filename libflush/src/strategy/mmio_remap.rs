//! ROCm's fast path: a store to the 4K MMIO remap page KFD maps into the process.
//!
//! amdgpu points the hardware's remapped HDP flush registers at an otherwise empty 4K page of
//! the register BAR; KFD lets a process map that page (`KFD_IOC_ALLOC_MEM_FLAGS_MMIO_REMAP`),
//! and ROCr hands its address out as `HSA_AMD_AGENT_INFO_HDP_FLUSH`. A store there flushes
//! without a system call. KFD refuses the mapping when PAGE_SIZE is not 4K, which is why the
//! other strategies exist.

use super::{Backing, BackingKind, Completion, Flush, StrategyKind};
use crate::region::{require_len, Bar, MappedRegion};
use crate::Result;

/// `KFD_MMIO_REMAP_HDP_MEM_FLUSH_CNTL` (include/uapi/linux/kfd_ioctl.h).
pub const REMAP_HDP_MEM_FLUSH_CNTL: usize = 0;
/// `KFD_MMIO_REMAP_HDP_REG_FLUSH_CNTL`.
pub const REMAP_HDP_REG_FLUSH_CNTL: usize = 4;

/// Store 1 to `HDP_MEM_FLUSH_CNTL` in the remap page.
///
/// [`Completion::Completed`] (the default) is ROCclr's sequence: the store, then a read of the
/// same register, which returns only once the store has reached the GPU. [`Completion::Posted`]
/// is the store alone: PCIe keeps it ahead of later stores to the same GPU.
pub struct MmioRemap<B: Bar = MappedRegion> {
    page: B,
    completion: Completion,
}

impl<B: Bar> MmioRemap<B> {
    /// Flush through `page`, a mapping that starts at `HDP_MEM_FLUSH_CNTL`, completing as
    /// `completion` says.
    pub fn new(page: B, completion: Completion) -> Result<Self> {
        require_len(&page, "MMIO remap page", REMAP_HDP_MEM_FLUSH_CNTL + 4)?;
        Ok(Self { page, completion })
    }
}

impl MmioRemap<MappedRegion> {
    /// A 4K anonymous page standing in for the remap page: measures the CPU side of the store.
    pub fn stand_in(completion: Completion) -> Result<Self> {
        Self::new(MappedRegion::anonymous(4096)?, completion)
    }

    /// Flush through the runtime's own mapping of the remap page: `hdp_mem_flush_cntl` is the
    /// `HDP_MEM_FLUSH_CNTL` pointer ROCr returns for `HSA_AMD_AGENT_INFO_HDP_FLUSH` (HIP's
    /// `hipDeviceAttributeHdpMemFlushCntl`).
    ///
    /// # Safety
    ///
    /// `hdp_mem_flush_cntl` must point at that GPU's mapped `HDP_MEM_FLUSH_CNTL` register and
    /// stay mapped for as long as the flusher lives.
    pub unsafe fn from_caller(
        hdp_mem_flush_cntl: *mut u32,
        completion: Completion,
    ) -> Result<Self> {
        // SAFETY: the caller guarantees the register is mapped for the flusher's lifetime.
        let page = unsafe { caller_remap_page(hdp_mem_flush_cntl) }?;
        Self::new(page, completion)
    }
}

/// The caller's `HDP_MEM_FLUSH_CNTL` pointer as a 4-byte window.
///
/// # Safety
///
/// As [`MmioRemap::from_caller`].
pub(crate) unsafe fn caller_remap_page(hdp_mem_flush_cntl: *mut u32) -> Result<MappedRegion> {
    let backing = Backing::new(
        BackingKind::Hardware,
        format!("the caller's mapping of the MMIO remap page at {hdp_mem_flush_cntl:p}"),
    );
    // SAFETY: the caller's contract.
    unsafe {
        MappedRegion::from_caller(
            hdp_mem_flush_cntl.cast(),
            REMAP_HDP_MEM_FLUSH_CNTL + 4,
            REMAP_HDP_MEM_FLUSH_CNTL + 4,
            backing,
        )
    }
}

impl<B: Bar> Flush for MmioRemap<B> {
    fn kind(&self) -> StrategyKind {
        StrategyKind::MmioRemap
    }

    fn backing(&self) -> Backing {
        self.page.backing()
    }

    fn completion(&self) -> Completion {
        self.completion
    }

    fn flush_with(&self, completion: Completion) -> Result<()> {
        // The payload (write-combined VRAM stores) must reach the HDP before the flush request.
        self.page.store_fence();
        self.page.write_u32(REMAP_HDP_MEM_FLUSH_CNTL, 1);
        match completion {
            Completion::Posted => {
                // The uncached store must not be passed by the caller's next store to ordinary
                // memory (the AQL packet header the GPU may already be polling).
                self.page.store_fence();
            }
            Completion::Completed => {
                // ROCclr reads the register back; the value is meaningless, the round trip is
                // the point. Later stores must wait for it to return.
                let _ = self.page.read_u32(REMAP_HDP_MEM_FLUSH_CNTL);
                self.page.full_fence();
            }
        }
        Ok(())
    }
}
