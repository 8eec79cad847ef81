//! What a caller offers a per-GPU flusher besides naming the GPU.

use crate::strategy::{caller_dummy_page, caller_remap_page, Completion, StrategyKind};
use crate::{MappedRegion, Result};

/// The mappings, preferences and requirements a caller hands [`super::open_gpu`].
#[derive(Debug, Default)]
pub struct FlusherOptions {
    pub(crate) remap: Option<MappedRegion>,
    pub(crate) dummy_page: Option<MappedRegion>,
    pub(crate) allow_dummy_page: bool,
    pub(crate) batched: bool,
    pub(crate) sqpoll_idle_ms: Option<u32>,
    pub(crate) completion: Completion,
    pub(crate) strategy: Option<StrategyKind>,
    pub(crate) require_hardware: bool,
}

impl FlusherOptions {
    /// Nothing offered: the module, if it serves the GPU; flushes complete.
    pub fn new() -> Self {
        Self::default()
    }

    /// The runtime's mapping of this GPU's remap page: `hdp_mem_flush_cntl` is the
    /// `HDP_MEM_FLUSH_CNTL` pointer ROCr returns for `HSA_AMD_AGENT_INFO_HDP_FLUSH`. Preferred
    /// over everything else.
    ///
    /// # Safety
    ///
    /// It must point at that GPU's mapped `HDP_MEM_FLUSH_CNTL` register and stay mapped for as
    /// long as the flusher lives.
    pub unsafe fn remap_page(mut self, hdp_mem_flush_cntl: *mut u32) -> Result<Self> {
        // SAFETY: the caller's contract.
        self.remap = Some(unsafe { caller_remap_page(hdp_mem_flush_cntl) }?);
        Ok(self)
    }

    /// A host-visible VRAM page of this GPU (at least 4K) that nothing else uses. Used as the
    /// dummy page only with [`allow_dummy_page`](Self::allow_dummy_page).
    ///
    /// # Safety
    ///
    /// `page..page + len` must be that GPU's VRAM, mapped readable and writable, for as long
    /// as the flusher lives.
    pub unsafe fn dummy_page(mut self, page: *mut u8, len: usize) -> Result<Self> {
        // SAFETY: the caller's contract.
        self.dummy_page = Some(unsafe { caller_dummy_page(page, len) }?);
        Ok(self)
    }

    /// A VRAM page mapped by other means (a PCI BAR through sysfs, in tests).
    pub fn dummy_page_region(mut self, region: MappedRegion) -> Self {
        self.dummy_page = Some(region);
        self
    }

    /// Accept the dummy page when nothing better serves the GPU.
    pub fn allow_dummy_page(mut self, allow: bool) -> Self {
        self.allow_dummy_page = allow;
        self
    }

    /// Many threads of this process flush this GPU at once: use io_uring (`uring`) rather than
    /// one ioctl per flush when the module serves the GPU, with a kernel SQ polling thread when
    /// `sqpoll_idle_ms` is set, so steady flushing makes no system call. One thread flushing
    /// now and then gains nothing from it (each flush is one submission and one wait); where
    /// io_uring is refused (a container's seccomp profile, `kernel.io_uring_disabled`) the
    /// flusher uses the ioctl and its reason says so.
    pub fn batched(mut self, sqpoll_idle_ms: Option<u32>) -> Self {
        self.batched = true;
        self.sqpoll_idle_ms = sqpoll_idle_ms;
        self
    }

    /// What [`crate::Flush::flush`] gives: [`Completion::Completed`] (the default) or posted.
    pub fn completion(mut self, completion: Completion) -> Self {
        self.completion = completion;
        self
    }

    /// Use exactly this strategy (`HDPFLUSH_STRATEGY` is then ignored); it is an error if it
    /// cannot flush this GPU.
    pub fn strategy(mut self, kind: StrategyKind) -> Self {
        self.strategy = Some(kind);
        self
    }

    /// Refuse, with `ENODEV`, anything that does not flush the GPU itself: the simulator, the
    /// module's model, an emulated test device.
    pub fn require_hardware(mut self, require: bool) -> Self {
        self.require_hardware = require;
        self
    }

    /// Whether the caller passed a mapping: then the environment names no strategy for it.
    pub(crate) fn has_mapping(&self) -> bool {
        self.remap.is_some() || self.dummy_page.is_some()
    }
}
