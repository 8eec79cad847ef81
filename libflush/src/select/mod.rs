//! Which strategy flushes which GPU, and the process-wide flusher: one pipeline, one stage per
//! file.
//!
//! 1. [`options`]: what the caller offers ([`FlusherOptions`]) and names;
//! 2. [`host`]: what this host offers (the `hdp_flush` module, sysfs);
//! 3. [`resolve`]: the GPU named, as a physical device (every partition of a GPU is that GPU),
//!    and the module device serving it;
//! 4. [`decide`]: the strategy, in this order, the first that can flush the GPU:
//!    - the caller gave its mapping of that GPU's MMIO remap page -> `mmio-remap`;
//!    - the `hdp_flush` module serves that GPU -> `ioctl` (`uring` when the caller batches);
//!    - the caller gave a VRAM page of that GPU *and* opted into the dummy page (its
//!      correctness rests on undocumented HDP read semantics, see docs/design.md) ->
//!      `dummy-page`;
//!    - otherwise `ENODEV`, with what is missing and what would provide it.
//!
//!    `kfd-ioctl` (a proposed KFD ioctl no upstream kernel has: [`crate::kfd_uapi`]), `legacy`
//!    and `sim` are used only when named. A named strategy is the same chain cut down to that
//!    one step: used exactly, or refused with the reason. With
//!    [`FlusherOptions::require_hardware`] anything that is not the GPU itself (the simulator,
//!    the module's model, an emulated device) is refused;
//! 5. [`open`]: the flusher.
//!
//! What the caller passes wins: `HDPFLUSH_STRATEGY` applies only to flushers whose caller named
//! no strategy and passed no mapping, and says so once on stderr. It is for tests and
//! benchmarks; one it cannot use is an error, not a fallback.
//!
//! Process-wide ([`process`]: [`global`], the C ABI's `hdpflush_flush()`): the GPU is
//! `HDPFLUSH_GPU` if set, else the host's only compute GPU; several without `HDPFLUSH_GPU` is
//! an error that says to open one flusher per GPU.

pub mod decide;
pub mod host;
pub mod open;
pub mod options;
pub mod process;
pub mod resolve;

pub use decide::Selection;
pub use host::KmodStatus;
pub use open::{open_gpu, GpuFlusher};
pub use options::FlusherOptions;
pub use process::{global, global_selection, select};
pub use resolve::ResolvedGpu;

/// The environment variable that names a strategy for flushers whose caller named none and
/// passed no mapping (tests, benchmarks).
pub const STRATEGY_ENV: &str = "HDPFLUSH_STRATEGY";
/// The environment variable that names the process-wide flusher's GPU.
pub const GPU_ENV: &str = "HDPFLUSH_GPU";
/// KFD's device node: present when amdgpu drives an AMD GPU for compute.
pub const KFD_PATH: &str = "/dev/kfd";

#[cfg(test)]
mod tests;
