//! What benchmarks need and runtimes do not: strategies opened on stand-ins and mapped files,
//! what `hdpflush bench` can measure here, and the kernel-entry floors ([`floors`]).

pub mod floors;

use std::path::Path;

use serde::Serialize;

use crate::device::HdpFlushDevice;
use crate::select::KmodStatus;
use crate::strategy::{Backing, BackingKind, Completion};
use crate::{
    DummyPage, Error, Flush, Ioctl, Legacy, MappedRegion, MmioRemap, Result, Sim, StrategyKind,
    Uring, UringConfig,
};

/// Whether `hdpflush bench` can measure a strategy here.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum Availability {
    /// It runs on what it would run on for real (or, for `sim`, the model it is).
    Ready {
        /// What it acts on.
        backing: Backing,
    },
    /// Only over a stand-in mapping: benchmarks its CPU side, flushes nothing real.
    StandIn {
        /// Why no real mapping is available.
        reason: String,
    },
    /// Not here.
    Unavailable {
        /// Why, and what to do.
        reason: String,
    },
}

impl Availability {
    /// True if the strategy runs on what it would run on for real.
    pub fn is_ready(&self) -> bool {
        matches!(self, Self::Ready { .. })
    }
}

/// What `hdpflush bench` can measure of every strategy in [`StrategyKind::ALL`] order.
pub fn availability_all(
    kmod: &KmodStatus,
    page_size: usize,
    kfd: bool,
) -> Vec<(StrategyKind, Availability)> {
    StrategyKind::ALL
        .into_iter()
        .map(|kind| (kind, availability(kind, kmod, page_size, kfd)))
        .collect()
}

/// What `hdpflush bench` can measure of `kind` here: the module's device 0 for the kernel
/// strategies, stand-in mappings for the mapping strategies (libflush maps nothing through
/// KFD itself: a runtime passes its mappings).
pub fn availability(
    kind: StrategyKind,
    kmod: &KmodStatus,
    page_size: usize,
    kfd: bool,
) -> Availability {
    let what = match kind {
        StrategyKind::Sim => {
            return Availability::Ready {
                backing: Backing::new(BackingKind::Simulator, "in-process HDP simulator"),
            }
        }
        StrategyKind::Ioctl | StrategyKind::Uring => {
            return match kmod {
                KmodStatus::Absent { reason } => Availability::Unavailable {
                    reason: reason.clone(),
                },
                KmodStatus::Loaded { uring_cmd: false, .. } if kind == StrategyKind::Uring => {
                    Availability::Unavailable {
                        reason: "the loaded hdp_flush module does not serve URING_CMD".into(),
                    }
                }
                KmodStatus::Loaded { .. } => match kmod.first_served() {
                    Some(d) => Availability::Ready {
                        backing: Backing::new(
                            d.backing_kind(),
                            format!("{} ({})", d.node.display(), d.describe()),
                        ),
                    },
                    None => Availability::Unavailable {
                        reason: "the hdp_flush module serves no device".into(),
                    },
                },
            }
        }
        StrategyKind::KfdIoctl => {
            return Availability::Unavailable {
                reason: "a proposed KFD ioctl (docs/upstream) no upstream kernel has; bench times no GPU through KFD".into(),
            }
        }
        StrategyKind::MmioRemap if page_size != 4096 => {
            return Availability::Unavailable {
                reason: format!(
                    "PAGE_SIZE is {page_size}: KFD refuses to map the 4K MMIO remap page on this kernel"
                ),
            }
        }
        StrategyKind::MmioRemap => "MMIO remap page",
        StrategyKind::DummyPage => "VRAM dummy page",
        StrategyKind::Legacy => "kernel-argument buffer",
    };
    let reason = if kfd {
        format!("a runtime passes its {what} mapping to libflush; bench has none, so anonymous memory stands in")
    } else {
        format!("no /dev/kfd (no AMD GPU driven by amdgpu/KFD here); anonymous memory stands in for the {what}")
    };
    Availability::StandIn { reason }
}

/// Open `kind` for benchmarking: the kernel strategies on the first device the module serves
/// (through its own node, as a runtime's flusher goes), the mapping strategies on anonymous
/// memory standing in for the mapping (labelled as such), `sim` on its model.
pub fn open_for_bench(kind: StrategyKind) -> Result<Box<dyn Flush>> {
    let unavailable = |e: Error| e.unavailable_for(kind);
    let page_size = crate::page_size();
    match kind {
        StrategyKind::MmioRemap => {
            if page_size != 4096 {
                return Err(Error::Unavailable {
                    strategy: kind,
                    reason: format!(
                        "PAGE_SIZE is {page_size}: KFD cannot map the 4K MMIO remap page"
                    ),
                });
            }
            Ok(Box::new(MmioRemap::stand_in(Completion::Completed)?))
        }
        StrategyKind::DummyPage => Ok(Box::new(DummyPage::stand_in()?)),
        StrategyKind::Legacy => Ok(Box::new(Legacy::stand_in()?)),
        StrategyKind::Sim => Ok(Box::new(Sim::new())),
        StrategyKind::KfdIoctl => Err(Error::Unavailable {
            strategy: kind,
            reason: "bench times no GPU through KFD; open one with open_gpu".into(),
        }),
        StrategyKind::Ioctl => Ok(Box::new(
            Ioctl::on_device(first_module_device(kind)?, 0, Completion::Completed)
                .map_err(unavailable)?,
        )),
        StrategyKind::Uring => Ok(Box::new(
            Uring::on_device(first_module_device(kind)?, UringConfig::default())
                .map_err(unavailable)?,
        )),
    }
}

/// The own node of the first device the module serves and this process may reach: where
/// `kind` (ioctl or uring) is benchmarked, as index 0.
pub fn first_module_device(kind: StrategyKind) -> Result<HdpFlushDevice> {
    let unavailable = |reason: String| Error::Unavailable {
        strategy: kind,
        reason,
    };
    let kmod = KmodStatus::look();
    if let KmodStatus::Absent { reason } = kmod {
        return Err(unavailable(reason));
    }
    let first = kmod
        .first_served()
        .ok_or_else(|| unavailable("the hdp_flush module serves no device".into()))?;
    HdpFlushDevice::open_own(first).map_err(|e| e.unavailable_for(kind))
}

/// Open a mapping strategy (`mmio-remap`, `dummy-page`, `legacy`) over 4K of `path` at
/// `offset`: a PCI BAR through sysfs (`/sys/bus/pci/devices/*/resourceN`), or any file for
/// testing. Other strategies map nothing and are refused.
pub fn open_mapped(kind: StrategyKind, path: &Path, offset: u64) -> Result<Box<dyn Flush>> {
    const LEN: usize = 4096;
    let region = || MappedRegion::map_file(path, offset, LEN);
    match kind {
        StrategyKind::MmioRemap => Ok(Box::new(MmioRemap::new(region()?, Completion::Completed)?)),
        StrategyKind::DummyPage => Ok(Box::new(DummyPage::new(region()?)?)),
        StrategyKind::Legacy => Ok(Box::new(Legacy::new(region()?)?)),
        _ => Err(Error::Unsupported {
            strategy: kind,
            op: "running over a mapped file",
        }),
    }
}
