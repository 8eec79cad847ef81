//! The [`Flush`] trait and one file per strategy.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

mod dummy_page;
mod ioctl;
mod legacy;
mod mmio_remap;
mod sim;
mod uring;

pub use dummy_page::DummyPage;
pub(crate) use ioctl::device_backing as ioctl_device_backing;
pub use ioctl::Ioctl;
pub use legacy::Legacy;
pub use mmio_remap::{MmioRemap, REMAP_HDP_MEM_FLUSH_CNTL, REMAP_HDP_REG_FLUSH_CNTL};
pub use sim::Sim;
pub use uring::{Uring, UringConfig};

/// A way to make CPU stores through a VRAM BAR visible to the GPU.
///
/// Call [`flush`](Flush::flush) after the payload stores and before the store that tells the
/// GPU to look (doorbell, signal); call [`invalidate`](Flush::invalidate) before reading
/// through the BAR what the GPU wrote.
pub trait Flush: Send + Sync {
    /// Which strategy this is.
    fn kind(&self) -> StrategyKind;

    /// What the flush really acts on: hardware, a kernel model, a stand-in mapping, the simulator.
    fn backing(&self) -> Backing;

    /// Flush the HDP write FIFO: every BAR store issued before this call reaches VRAM before
    /// any store issued after it.
    fn flush(&self) -> Result<()>;

    /// Invalidate the HDP read cache, so BAR loads after this call see what the GPU wrote.
    fn invalidate(&self) -> Result<()> {
        Err(Error::Unsupported {
            strategy: self.kind(),
            op: "invalidate",
        })
    }

    /// Issue `count` flushes as one submission where the transport allows it (io_uring);
    /// the effect is that of `count` calls to [`flush`](Flush::flush).
    fn flush_batch(&self, count: usize) -> Result<()> {
        (0..count).try_for_each(|_| self.flush())
    }
}

/// The strategies, by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StrategyKind {
    /// One store to the 4K MMIO remap page.
    MmioRemap,
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
    pub const ALL: [StrategyKind; 6] = [
        Self::MmioRemap,
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
