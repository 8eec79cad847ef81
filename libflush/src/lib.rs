//! HDP flush strategies for AMD GPUs, behind one [`Flush`] trait, chosen per GPU.
//!
//! CPU (or peer) stores into a GPU's VRAM BAR wait in the HDP write FIFO until something
//! flushes it; a GPU that reads the data before that may see stale memory. On 4K-page hosts
//! ROCm flushes with one store to a KFD-mapped "MMIO remap" page; on 64K-page hosts KFD
//! refuses that mapping. This crate implements every known way to flush:
//!
//! | strategy | how it flushes |
//! |---|---|
//! | [`MmioRemap`] | a store to the 4K remap page, read back (ROCm's fast path, 4K hosts only) |
//! | [`Legacy`] | ROCm's fallback: fence, store the last byte, full fence, read it back |
//! | [`DummyPage`] | two separated 32-bit stores and one 32-bit load on a VRAM page |
//! | [`Ioctl`] | `/dev/hdp_flush` FLUSH ioctl: the kernel writes the HDP flush register |
//! | [`Uring`] | the same request as io_uring `URING_CMD`; with SQPOLL, no system call |
//! | [`Sim`] | the in-process HDP model ([`sim`]), only when asked for by name |
//!
//! A runtime opens one flusher per GPU with [`open_gpu`] (by PCI address, KFD `gpu_id` or
//! module device index), handing over the mappings it has ([`FlusherOptions`]); see
//! [`select`] for the order. With no way to flush that GPU it gets `ENODEV` and the reason,
//! never a simulator. [`global`] is the process-wide flusher for single-GPU programs;
//! [`flush_gpus`] flushes several GPUs in one kernel entry. Every
//! strategy's `flush` returns only once the flush is ordered before the caller's next store.
//! The [`sim`] module doubles as a correctness oracle that catches a missing flush or barrier.

#[path = "../../kmod/uapi.rs"]
pub mod uapi;

pub mod barrier;
pub mod device;
mod error;
mod fork;
pub mod gpu;
pub mod kfd_raw;
pub mod kfd_uapi;
pub mod measure;
pub mod multi_gpu;
pub mod probe;
pub mod region;
mod ring;
mod ring_pool;
pub mod select;
pub mod sim;
#[cfg(test)]
mod skip;
pub mod strategy;

pub use error::{Error, Result};
pub use gpu::{GpuSelector, PciAddress};
pub use measure::{first_module_device, open_for_bench, open_mapped, Availability};
pub use multi_gpu::flush_gpus;
pub use probe::{probe, Probe};
pub use region::{page_size, Bar, MappedRegion};
pub use select::{
    global, global_selection, open_gpu, select, FlusherOptions, GpuFlusher, Selection,
};
pub use strategy::{
    Backing, BackingKind, Completion, DummyPage, Flush, Ioctl, KfdIoctl, Legacy, MmioRemap,
    ModuleTarget, Sim, StrategyKind, Uring, UringConfig,
};
