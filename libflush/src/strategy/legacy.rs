//! ROCm's fallback where there is no remap page: a readback heuristic, not an architected flush.
//!
//! ROCclr writes the kernel arguments, fences, writes the last byte again, fences fully, and
//! reads the last byte back. The readback forces a PCIe round trip behind the earlier stores;
//! whether the HDP drains its FIFO for it is a property of the hardware that AMD has not
//! documented (see [`crate::sim::ReadPolicy`] for the hypotheses and which ones this survives).

use std::sync::atomic::{AtomicU8, Ordering};

use super::{Backing, Flush, StrategyKind};
use crate::barrier::{full_fence, store_fence};
use crate::region::{require_len, Bar, MappedRegion};
use crate::Result;

/// Fence, store the region's last byte, full fence, load it back.
///
/// The last byte is a sentinel this strategy owns (callers keep their data in front of it);
/// each flush stores a new value so the store is never elided by a write-combining buffer.
pub struct Legacy<B: Bar = MappedRegion> {
    region: B,
    sentinel: usize,
    seq: AtomicU8,
}

impl<B: Bar> Legacy<B> {
    /// Flush through `region`, whose last byte becomes the sentinel.
    pub fn new(region: B) -> Result<Self> {
        require_len(&region, "legacy flush region", 1)?;
        let sentinel = region.len() - 1;
        Ok(Self {
            region,
            sentinel,
            seq: AtomicU8::new(0),
        })
    }
}

impl Legacy<MappedRegion> {
    /// A 4K anonymous region standing in for a kernel-argument buffer in VRAM.
    pub fn stand_in() -> Result<Self> {
        Self::new(MappedRegion::anonymous(4096)?)
    }
}

impl<B: Bar> Flush for Legacy<B> {
    fn kind(&self) -> StrategyKind {
        StrategyKind::Legacy
    }

    fn backing(&self) -> Backing {
        self.region.backing()
    }

    fn flush(&self) -> Result<()> {
        let value = self.seq.fetch_add(1, Ordering::Relaxed);
        store_fence();
        self.region.write_u8(self.sentinel, value);
        full_fence();
        let _ = self.region.read_u8(self.sentinel);
        Ok(())
    }
}
