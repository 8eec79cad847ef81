//! HDP flush strategies for AMD GPUs, behind one [`Flush`] trait.
//!
//! CPU (or peer) stores into a GPU's VRAM BAR wait in the HDP write FIFO until something
//! flushes it; a GPU that reads the data before that may see stale memory. On 4K-page hosts
//! ROCm flushes with one store to a KFD-mapped "MMIO remap" page; on 64K-page hosts KFD
//! refuses that mapping. This crate implements every known way to flush, so they can be
//! compared and the right one chosen per host:
//!
//! | strategy | how it flushes |
//! |---|---|
//! | [`MmioRemap`] | one store to the 4K remap page (ROCm's fast path, 4K hosts only) |
//! | [`Legacy`] | ROCm's fallback: fence, store the last byte, full fence, read it back |
//! | [`DummyPage`] | two separated 32-bit stores and one 32-bit load on a VRAM page |
//! | [`Ioctl`] | `/dev/hdp_flush` FLUSH ioctl: the kernel writes the HDP flush register |
//! | [`Uring`] | the same request as io_uring `URING_CMD`, batched, optionally SQPOLL |
//! | [`Sim`] | the in-process HDP model ([`sim`]); the default where no GPU is present |
//!
//! [`select`] picks one per host (override with `HDPFLUSH_STRATEGY`); [`global`] keeps the
//! process-wide choice. The [`sim`] module doubles as a correctness oracle that catches a
//! missing flush.

#[path = "../../kmod/uapi.rs"]
pub mod uapi;

pub mod barrier;
pub mod device;
mod error;
pub mod reference;
pub mod region;
mod ring;
pub mod select;
pub mod sim;
pub mod strategy;

pub use error::{Error, Result};
pub use region::{Bar, MappedRegion};
pub use select::{global, open, open_for_bench, open_mapped, probe, select, Availability, Probe};
pub use strategy::{
    Backing, BackingKind, DummyPage, Flush, Ioctl, Legacy, MmioRemap, Sim, StrategyKind, Uring,
    UringConfig,
};
