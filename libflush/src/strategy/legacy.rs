//! ROCm's fallback where there is no remap page: a readback heuristic, not an architected flush.
//!
//! ROCclr writes the kernel arguments, fences, writes the last byte again, fences fully, and
//! reads the last byte back (`DeviceKernelArgsReadback` in rocvirtual.cpp). The readback forces
//! a PCIe round trip behind the earlier stores; whether the HDP drains its FIFO for it is a
//! property of the hardware that AMD has not documented (see [`crate::sim::ReadPolicy`] for the
//! hypotheses and which ones this survives).

use std::sync::atomic::{AtomicU8, Ordering};

use super::{Backing, Completion, Flush, StrategyKind};
use crate::region::{require_len, Bar, MappedRegion};
use crate::Result;

/// Fence, store the region's last byte, full fence, load it back, full fence.
///
/// The last byte is a sentinel this strategy owns (callers keep their data in front of it);
/// each flush stores a new value so the store is never elided by a write-combining buffer.
/// A readback always completes: [`Completion::Posted`] gets the same sequence.
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

    fn flush_with(&self, _: Completion) -> Result<()> {
        let value = self.seq.fetch_add(1, Ordering::Relaxed);
        // The payload goes ahead of the sentinel, so a read that waits for the sentinel's
        // write waits for the payload too.
        self.region.store_fence();
        self.region.write_u8(self.sentinel, value);
        // The readback must not pass the buffered stores.
        self.region.full_fence();
        let _ = self.region.read_u8(self.sentinel);
        // Later stores (the doorbell) must wait for the readback to return.
        self.region.full_fence();
        Ok(())
    }
}
