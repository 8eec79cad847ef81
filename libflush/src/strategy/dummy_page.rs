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

/// The second store's offset: half of the GPU page, whatever the CPU page size (well apart,
/// still 4-aligned).
const SECOND: usize = DUMMY_PAGE_MIN / 2;
/// A word neither store writes, for [`ReadBack::Unwritten`].
const UNWRITTEN: usize = DUMMY_PAGE_MIN / 4;

/// Which word the read-back loads. The proposal says "a 32-bit readback" and no more; which
/// word it is decides what the HDP must do for the read to flush (the oracle's verdicts in
/// docs/evidence.md).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReadBack {
    /// The word the first store wrote (the default).
    #[default]
    FirstStore,
    /// The word the second store wrote.
    SecondStore,
    /// A word of the page neither store wrote.
    Unwritten,
}

/// How the two stores and the read-back are issued.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DummyPageVariant {
    /// The word read back.
    pub read_back: ReadBack,
    /// A store fence between the two stores, so the first is performed before the second.
    pub fence_between: bool,
}

impl DummyPageVariant {
    /// Every variant: each word read back, without and with the fence between the stores.
    pub const ALL: [DummyPageVariant; 6] = [
        Self::new(ReadBack::FirstStore, false),
        Self::new(ReadBack::FirstStore, true),
        Self::new(ReadBack::SecondStore, false),
        Self::new(ReadBack::SecondStore, true),
        Self::new(ReadBack::Unwritten, false),
        Self::new(ReadBack::Unwritten, true),
    ];

    const fn new(read_back: ReadBack, fence_between: bool) -> Self {
        Self {
            read_back,
            fence_between,
        }
    }

    /// How reports name it, e.g. "read first store, fence between".
    pub fn name(&self) -> String {
        let read = match self.read_back {
            ReadBack::FirstStore => "read first store",
            ReadBack::SecondStore => "read second store",
            ReadBack::Unwritten => "read unwritten word",
        };
        let fence = if self.fence_between {
            "fence between"
        } else {
            "no fence between"
        };
        format!("{read}, {fence}")
    }
}

/// Two stores `DUMMY_PAGE_MIN / 2` apart and a load, on a page nobody else uses. A readback
/// always completes: [`Completion::Posted`] gets the same sequence.
pub struct DummyPage<B: Bar = MappedRegion> {
    page: B,
    variant: DummyPageVariant,
    seq: AtomicU32,
}

impl<B: Bar> DummyPage<B> {
    /// Flush through `page`, a host-visible VRAM page of at least 4K: the first store's word
    /// read back, no fence between the stores.
    pub fn new(page: B) -> Result<Self> {
        Self::with_variant(page, DummyPageVariant::default())
    }

    /// As [`DummyPage::new`], issuing `variant`.
    pub fn with_variant(page: B, variant: DummyPageVariant) -> Result<Self> {
        require_len(&page, "dummy page", DUMMY_PAGE_MIN)?;
        Ok(Self {
            page,
            variant,
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
        if self.variant.fence_between {
            self.page.store_fence();
        }
        self.page.write_u32(SECOND, value);
        // The readback must not pass the buffered stores.
        self.page.full_fence();
        let _ = self.page.read_u32(match self.variant.read_back {
            ReadBack::FirstStore => 0,
            ReadBack::SecondStore => SECOND,
            ReadBack::Unwritten => UNWRITTEN,
        });
        // Later stores (the doorbell) must wait for the readback to return.
        self.page.full_fence();
        Ok(())
    }
}
