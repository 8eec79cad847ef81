//! The [`Flush`] trait and one file per strategy.

use std::fmt;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::device::HdpFlushDevice;
use crate::uapi;
use crate::{Error, Result};

mod dummy_page;
mod ioctl;
mod kernel;
mod kfd_ioctl;
mod legacy;
mod mmio_remap;
mod sim;
mod uring;

pub(crate) use dummy_page::caller_dummy_page;
pub use dummy_page::{DummyPage, DummyPageVariant, ReadBack, DUMMY_PAGE_MIN};
pub use ioctl::{Ioctl, IoctlTransport};
pub use kernel::{KernelFlush, Transport};
pub use kfd_ioctl::{KfdIoctl, KfdStatus, KfdTransport, KFD_DEVICE_PATH};
pub use legacy::Legacy;
pub(crate) use mmio_remap::caller_remap_page;
pub use mmio_remap::{MmioRemap, REMAP_HDP_MEM_FLUSH_CNTL, REMAP_HDP_REG_FLUSH_CNTL};
pub use sim::{Sim, SimTransport};
pub use uring::{Uring, UringConfig, UringTransport};

/// When a flush may return.
///
/// Both are ordered: once `flush` returns, no later store by the caller (the AQL packet
/// header, the doorbell) can reach the GPU before the flush does. A completed flush has also
/// landed: the HDP has drained, which a read from the device after the flush proves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Completion {
    /// Return once the flush request is ordered before later stores (one posted store for
    /// the remap page; no posting read in the kernel).
    Posted,
    /// Return once the flush has landed (ROCclr's store-and-read-back; `HDP_FLUSH_F_SYNC`).
    #[default]
    Completed,
}

impl Completion {
    /// "posted" or "completed".
    pub const fn name(self) -> &'static str {
        match self {
            Self::Posted => "posted",
            Self::Completed => "completed",
        }
    }
}

/// A way to make CPU stores through a VRAM BAR visible to one GPU.
///
/// Call [`flush`](Flush::flush) after the payload stores and before the store that tells the
/// GPU to look (AQL packet header, doorbell, signal); call [`invalidate`](Flush::invalidate)
/// before reading through the BAR what the GPU wrote. Every strategy issues the barriers this
/// needs on x86_64, aarch64 and powerpc64 itself: the caller adds none.
pub trait Flush: Send + Sync {
    /// Which strategy this is.
    fn kind(&self) -> StrategyKind;

    /// What the flush really acts on: hardware, an emulated device, a kernel model, a stand-in
    /// mapping, the simulator.
    fn backing(&self) -> Backing;

    /// Flush the HDP write FIFO: every BAR store issued before this call reaches VRAM before
    /// any store issued after it, and, with [`Completion::Completed`], before this returns.
    /// Strategies that can only complete (a readback) do so for either.
    fn flush_with(&self, completion: Completion) -> Result<()>;

    /// The completion [`flush`](Flush::flush) gives: what the flusher was opened with.
    fn completion(&self) -> Completion {
        Completion::Completed
    }

    /// [`flush_with`](Flush::flush_with) the flusher's own [`completion`](Flush::completion).
    fn flush(&self) -> Result<()> {
        self.flush_with(self.completion())
    }

    /// Invalidate the HDP read cache, so BAR loads after this call see what the GPU wrote.
    fn invalidate(&self) -> Result<()> {
        Err(Error::Unsupported {
            strategy: self.kind(),
            op: "invalidate",
        })
    }

    /// `count` flushes of this one GPU, in one submission where the transport allows it
    /// (io_uring). For measuring what a submission costs: a runtime has no use for it, since
    /// one [`flush`](Flush::flush) already covers every store before it. To flush several
    /// GPUs in one kernel entry, use [`crate::flush_gpus`].
    fn flush_batch(&self, count: usize) -> Result<()> {
        (0..count).try_for_each(|_| self.flush())
    }

    /// Where this flusher's requests go if the hdp_flush module performs them (the `ioctl` and
    /// `uring` strategies): [`crate::flush_gpus`] then sends them, with other GPUs', in one
    /// kernel entry. `None` for every other strategy, and for wrappers that do not forward it.
    fn module_target(&self) -> Option<ModuleTarget<'_>> {
        None
    }
}

/// An hdp_flush module device as a FLUSH request names it: the open device node it goes
/// through and the module's index of the GPU.
#[derive(Clone, Copy, Debug)]
pub struct ModuleTarget<'a> {
    /// The open device node (`/dev/hdp_flush`, or a GPU's own node).
    pub fd: BorrowedFd<'a>,
    /// The module's index of the device behind it.
    pub index: u32,
    /// The node's path, for messages.
    pub path: &'a Path,
    /// Whether the module serves io_uring `URING_CMD` (`HDP_FLUSH_FEAT_URING_CMD`); without it,
    /// the request goes as an ioctl.
    pub uring_cmd: bool,
}

impl<'a> ModuleTarget<'a> {
    /// Device `index` of the module behind `dev`.
    pub fn of(dev: &'a HdpFlushDevice, index: u32) -> Self {
        Self {
            fd: dev.as_fd(),
            index,
            path: dev.path(),
            uring_cmd: dev.version().features & uapi::HDP_FLUSH_FEAT_URING_CMD != 0,
        }
    }
}

/// The strategies, by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StrategyKind {
    /// One store to the 4K MMIO remap page.
    MmioRemap,
    /// KFD's proposed `AMDKFD_IOC_HDP_FLUSH` (docs/upstream/): only when named, and only on a
    /// KFD reporting the version the patch sets ([`crate::kfd_uapi`]).
    KfdIoctl,
    /// FLUSH ioctl on `/dev/hdp_flush`.
    Ioctl,
    /// FLUSH as io_uring `URING_CMD` on `/dev/hdp_flush`.
    Uring,
    /// Two stores and a readback on a VRAM dummy page.
    DummyPage,
    /// ROCm's store-last-byte-and-read-back fallback.
    Legacy,
    /// The in-process HDP simulator.
    Sim,
}

impl StrategyKind {
    /// Every strategy, in the order `hdpflush` reports them.
    pub const ALL: [StrategyKind; 7] = [
        Self::MmioRemap,
        Self::KfdIoctl,
        Self::Ioctl,
        Self::Uring,
        Self::DummyPage,
        Self::Legacy,
        Self::Sim,
    ];

    /// Position in [`StrategyKind::ALL`] (declaration order).
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The name used on the command line, in `HDPFLUSH_STRATEGY` and in reports.
    pub const fn name(self) -> &'static str {
        match self {
            Self::MmioRemap => "mmio-remap",
            Self::KfdIoctl => "kfd-ioctl",
            Self::Ioctl => "ioctl",
            Self::Uring => "uring",
            Self::DummyPage => "dummy-page",
            Self::Legacy => "legacy",
            Self::Sim => "sim",
        }
    }

    /// All names, comma-separated, for error messages.
    pub fn names() -> String {
        Self::ALL.map(Self::name).join(", ")
    }

    /// Parse a name; `origin` says where it came from, for the error message.
    pub fn parse(name: &str, origin: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|k| k.name() == name.trim())
            .ok_or_else(|| Error::UnknownStrategy {
                name: name.to_owned(),
                origin: origin.to_owned(),
            })
    }
}

impl fmt::Display for StrategyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for StrategyKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s, "the command line")
    }
}

/// What a flush acts on, so that reports never pass a stand-in off as hardware.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackingKind {
    /// Real device registers or VRAM.
    Hardware,
    /// A device QEMU emulates (the `edu` test device): real MMIO through a real kernel, but
    /// no GPU behind it.
    EmulatedDevice,
    /// The kernel module's in-kernel model (its `sim` backend).
    KernelModel,
    /// Ordinary memory standing in for a device mapping: measures the CPU side only.
    StandIn,
    /// The in-process HDP simulator.
    Simulator,
    /// Only this host's kernel: a floor that flushes nothing.
    HostKernel,
}

/// [`BackingKind`] plus a human-readable description.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backing {
    /// The class.
    pub kind: BackingKind,
    /// What exactly, e.g. "anonymous memory standing in for VRAM".
    pub detail: String,
}

impl BackingKind {
    /// Short name for tables and plots.
    pub const fn tag(self) -> &'static str {
        match self {
            Self::Hardware => "hardware",
            Self::EmulatedDevice => "emulated",
            Self::KernelModel => "kernel model",
            Self::StandIn => "stand-in",
            Self::Simulator => "simulator",
            Self::HostKernel => "host kernel",
        }
    }
}

impl Backing {
    /// A backing of `kind` described by `detail`.
    pub fn new(kind: BackingKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
        }
    }

    /// True unless this is real hardware.
    pub fn is_stand_in(&self) -> bool {
        self.kind != BackingKind::Hardware
    }

    /// True for real hardware and for an emulated device: memory-mapped I/O through a real
    /// kernel, not a model or ordinary memory.
    pub fn is_device(&self) -> bool {
        matches!(
            self.kind,
            BackingKind::Hardware | BackingKind::EmulatedDevice
        )
    }
}

impl fmt::Display for Backing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_is_the_position_in_all() {
        for (i, kind) in StrategyKind::ALL.into_iter().enumerate() {
            assert_eq!(kind.index(), i);
        }
    }

    #[test]
    fn names_round_trip() {
        for kind in StrategyKind::ALL {
            assert_eq!(kind.name().parse::<StrategyKind>().unwrap(), kind);
        }
    }

    #[test]
    fn unknown_name_lists_the_valid_ones() {
        let err = StrategyKind::parse("fast", "HDPFLUSH_STRATEGY").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("unknown strategy `fast`"), "{msg}");
        assert!(msg.contains("HDPFLUSH_STRATEGY"), "{msg}");
        for kind in StrategyKind::ALL {
            assert!(msg.contains(kind.name()), "{msg} lacks {kind}");
        }
    }
}
