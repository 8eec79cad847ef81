//! Which strategy this host can use, and the process-wide choice.
//!
//! Order of preference for real use: the 4K MMIO remap page (one posted store), then the
//! kernel module's ioctl (any page size), then the simulator when there is no GPU path at all.
//! `HDPFLUSH_STRATEGY=<name>` overrides the choice; a name that is unknown or not usable here
//! is an error, never a silent fallback.

use std::path::Path;
use std::sync::OnceLock;

use nix::unistd::{sysconf, SysconfVar};
use serde::Serialize;

use crate::device::HdpFlushDevice;
use crate::strategy::{Backing, BackingKind};
use crate::uapi;
use crate::{
    DummyPage, Error, Flush, Ioctl, Legacy, MappedRegion, MmioRemap, Result, Sim, StrategyKind,
    Uring, UringConfig,
};

/// The environment variable that overrides automatic selection.
pub const STRATEGY_ENV: &str = "HDPFLUSH_STRATEGY";
/// KFD's device node: present when amdgpu drives an AMD GPU for compute.
pub const KFD_PATH: &str = "/dev/kfd";

/// Whether a strategy can run here.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum Availability {
    /// Usable for real flushes.
    Ready {
        /// What it acts on.
        backing: Backing,
    },
    /// Only over a stand-in mapping: benchmarks its CPU side, flushes nothing real.
    StandIn {
        /// Why no real mapping is available.
        reason: String,
    },
    /// Not usable here.
    Unavailable {
        /// Why, and what to do.
        reason: String,
    },
}

impl Availability {
    /// True if the strategy does real flushes here.
    pub fn is_ready(&self) -> bool {
        matches!(self, Self::Ready { .. })
    }
}

/// The kernel module as seen from user space.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum KmodStatus {
    /// Opened and version-checked.
    Loaded {
        /// uAPI major.
        api_major: u32,
        /// uAPI minor.
        api_minor: u32,
        /// Devices served.
        num_devices: u32,
        /// The module's PAGE_SIZE.
        page_size: u32,
        /// Serves io_uring URING_CMD.
        uring_cmd: bool,
    },
    /// Not usable, with the reason.
    Absent {
        /// The open error.
        reason: String,
    },
}

/// Everything selection looked at, and what it chose.
#[derive(Clone, Debug, Serialize)]
pub struct Probe {
    /// The CPU page size.
    pub page_size: usize,
    /// `/dev/kfd` exists.
    pub kfd: bool,
    /// `/dev/hdp_flush`.
    pub kmod: KmodStatus,
    /// The value of `HDPFLUSH_STRATEGY`, if set.
    pub override_env: Option<String>,
    /// Every strategy, in [`StrategyKind::ALL`] order (so `strategies[kind.index()]` is kind's).
    pub strategies: Vec<(StrategyKind, Availability)>,
    /// The choice, or why there is none.
    pub selected: std::result::Result<Selection, String>,
}

/// A choice and its reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Selection {
    /// The strategy.
    pub kind: StrategyKind,
    /// Why it was chosen.
    pub reason: String,
}

impl Probe {
    /// Availability of `kind`.
    pub fn availability(&self, kind: StrategyKind) -> &Availability {
        &self.strategies[kind.index()].1
    }
}

/// The CPU page size (4096 when sysconf cannot tell, which it always can on Linux).
pub fn page_size() -> usize {
    match sysconf(SysconfVar::PAGE_SIZE) {
        Ok(Some(n)) if n > 0 => n as usize,
        _ => 4096,
    }
}

/// Look at this host: page size, KFD, the module, and what each strategy can do.
pub fn probe() -> Probe {
    let override_env = std::env::var(STRATEGY_ENV).ok().filter(|s| !s.is_empty());
    let facts = HostFacts {
        page_size: page_size(),
        kfd: Path::new(KFD_PATH).exists(),
        kmod: kmod_status(Path::new(uapi::HDP_FLUSH_DEVICE_PATH)),
        uring: uring_status(),
    };
    decide(facts, override_env)
}

/// What [`decide`] needs, gathered separately so the policy is testable without a GPU.
#[derive(Clone, Debug)]
struct HostFacts {
    page_size: usize,
    kfd: bool,
    kmod: std::result::Result<(KmodStatus, Backing), String>,
    uring: std::result::Result<(), String>,
}

fn kmod_status(path: &Path) -> std::result::Result<(KmodStatus, Backing), String> {
    let dev = HdpFlushDevice::open(path).map_err(|e| e.to_string())?;
    let v = dev.version();
    let backing = crate::strategy::ioctl_device_backing(&dev, 0).map_err(|e| e.to_string())?;
    let status = KmodStatus::Loaded {
        api_major: v.api_major,
        api_minor: v.api_minor,
        num_devices: v.num_devices,
        page_size: v.page_size,
        uring_cmd: v.features & uapi::HDP_FLUSH_FEAT_URING_CMD != 0,
    };
    Ok((status, backing))
}

fn uring_status() -> std::result::Result<(), String> {
    io_uring::IoUring::new(2)
        .map(drop)
        .map_err(|e| format!("io_uring is not available in this kernel or sandbox: {e}"))
}

/// A mapping strategy's availability. No KFD mapping is wired into libflush yet, so it depends
/// only on the page size and whether KFD exists: never [`Availability::Ready`].
fn mapping_availability(kind: StrategyKind, page_size: usize, kfd: bool) -> Availability {
    let what = match kind {
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
        other => {
            return Availability::Unavailable {
                reason: format!("`{other}` maps nothing"),
            }
        }
    };
    let reason = if kfd {
        format!("/dev/kfd is present, but the KFD {what} mapping is not wired into libflush yet; a stand-in mapping is used for benchmarks")
    } else {
        format!("no /dev/kfd (no AMD GPU driven by amdgpu/KFD here); anonymous memory stands in for the {what} in benchmarks")
    };
    Availability::StandIn { reason }
}

/// [`mapping_availability`] on this host, without probing the module or io_uring.
fn mapping_availability_here(kind: StrategyKind) -> Availability {
    mapping_availability(kind, page_size(), Path::new(KFD_PATH).exists())
}

fn decide(facts: HostFacts, override_env: Option<String>) -> Probe {
    let mut strategies = Vec::new();
    for kind in StrategyKind::ALL {
        let availability = match kind {
            StrategyKind::MmioRemap | StrategyKind::DummyPage | StrategyKind::Legacy => {
                mapping_availability(kind, facts.page_size, facts.kfd)
            }
            StrategyKind::Ioctl => match &facts.kmod {
                Ok((_, backing)) => Availability::Ready {
                    backing: backing.clone(),
                },
                Err(reason) => Availability::Unavailable {
                    reason: reason.clone(),
                },
            },
            StrategyKind::Uring => match (&facts.kmod, &facts.uring) {
                (Err(reason), _) | (_, Err(reason)) => Availability::Unavailable {
                    reason: reason.clone(),
                },
                (
                    Ok((
                        KmodStatus::Loaded {
                            uring_cmd: false, ..
                        },
                        _,
                    )),
                    _,
                ) => Availability::Unavailable {
                    reason: "the loaded hdp_flush module does not serve URING_CMD".into(),
                },
                (Ok((_, backing)), Ok(())) => Availability::Ready {
                    backing: backing.clone(),
                },
            },
            StrategyKind::Sim => Availability::Ready {
                backing: Backing::new(BackingKind::Simulator, "in-process HDP simulator"),
            },
        };
        strategies.push((kind, availability));
    }
    let kmod = match &facts.kmod {
        Ok((status, _)) => status.clone(),
        Err(reason) => KmodStatus::Absent {
            reason: reason.clone(),
        },
    };
    let mut probe = Probe {
        page_size: facts.page_size,
        kfd: facts.kfd,
        kmod,
        override_env: override_env.clone(),
        strategies,
        selected: Err(String::new()),
    };
    probe.selected = choose(&probe, override_env.as_deref()).map_err(|e| e.to_string());
    probe
}

fn choose(probe: &Probe, override_env: Option<&str>) -> Result<Selection> {
    if let Some(name) = override_env {
        let kind = StrategyKind::parse(name, STRATEGY_ENV)?;
        return match probe.availability(kind) {
            Availability::Ready { .. } => Ok(Selection {
                kind,
                reason: format!("{STRATEGY_ENV}={name}"),
            }),
            Availability::StandIn { reason } | Availability::Unavailable { reason } => {
                Err(Error::Unavailable {
                    strategy: kind,
                    reason: format!("{reason} (requested by {STRATEGY_ENV}={name}; unset it or pick a usable strategy, see `hdpflush probe`)"),
                })
            }
        };
    }
    let ready = |k| probe.availability(k).is_ready();
    let (kind, reason) = if ready(StrategyKind::MmioRemap) {
        (
            StrategyKind::MmioRemap,
            "4K pages and KFD: one posted store to the MMIO remap page".to_owned(),
        )
    } else if ready(StrategyKind::Ioctl) {
        (StrategyKind::Ioctl, "the hdp_flush module is loaded: the kernel writes the HDP flush register; safe on any page size".to_owned())
    } else {
        (StrategyKind::Sim, "no hardware flush path here (no usable MMIO remap page, no hdp_flush module): using the in-process simulator".to_owned())
    };
    Ok(Selection { kind, reason })
}

/// Open `kind` for real flushes; fails unless it is [`Availability::Ready`] here.
pub fn open(kind: StrategyKind) -> Result<Box<dyn Flush>> {
    match kind {
        StrategyKind::Sim => Ok(Box::new(Sim::new())),
        StrategyKind::Ioctl => Ok(Box::new(Ioctl::open(0, 0)?)),
        StrategyKind::Uring => Ok(Box::new(Uring::open(UringConfig::default())?)),
        StrategyKind::MmioRemap | StrategyKind::DummyPage | StrategyKind::Legacy => {
            let reason = match mapping_availability_here(kind) {
                Availability::StandIn { reason } | Availability::Unavailable { reason } => reason,
                Availability::Ready { .. } => {
                    "the KFD mapping it needs is not wired into libflush yet".to_owned()
                }
            };
            Err(Error::Unavailable {
                strategy: kind,
                reason,
            })
        }
    }
}

/// Open `kind` for benchmarking: as [`open`], but mapping strategies may run on a stand-in.
pub fn open_for_bench(kind: StrategyKind) -> Result<Box<dyn Flush>> {
    match kind {
        StrategyKind::MmioRemap => {
            if let Availability::Unavailable { reason } = mapping_availability_here(kind) {
                return Err(Error::Unavailable {
                    strategy: kind,
                    reason,
                });
            }
            Ok(Box::new(MmioRemap::stand_in()?))
        }
        StrategyKind::DummyPage => Ok(Box::new(DummyPage::stand_in()?)),
        StrategyKind::Legacy => Ok(Box::new(Legacy::stand_in()?)),
        _ => open(kind).map_err(|e| e.unavailable_for(kind)),
    }
}

/// Open a mapping strategy (`mmio-remap`, `dummy-page`, `legacy`) over `len` bytes of `path`
/// at `offset`: a PCI BAR through sysfs (`/sys/bus/pci/devices/*/resourceN`), a KFD mapping,
/// or any file for testing. Other strategies map nothing and are refused.
pub fn open_mapped(kind: StrategyKind, path: &Path, offset: u64) -> Result<Box<dyn Flush>> {
    const LEN: usize = 4096;
    let region = || MappedRegion::map_file(path, offset, LEN);
    match kind {
        StrategyKind::MmioRemap => Ok(Box::new(MmioRemap::new(region()?)?)),
        StrategyKind::DummyPage => Ok(Box::new(DummyPage::new(region()?)?)),
        StrategyKind::Legacy => Ok(Box::new(Legacy::new(region()?)?)),
        _ => Err(Error::Unsupported {
            strategy: kind,
            op: "running over a mapped file",
        }),
    }
}

/// Choose and open the strategy for this host (see the module doc for the order).
pub fn select() -> Result<(Box<dyn Flush>, Selection)> {
    let probe = probe();
    let selection = choose(&probe, probe.override_env.as_deref())?;
    Ok((open(selection.kind)?, selection))
}

static GLOBAL: OnceLock<Result<(Box<dyn Flush>, Selection)>> = OnceLock::new();

/// The process-wide strategy, chosen once by [`select`] on first use.
pub fn global() -> Result<&'static dyn Flush> {
    match GLOBAL.get_or_init(select) {
        Ok((flush, _)) => Ok(flush.as_ref()),
        Err(e) => Err(e.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(page_size: usize, kfd: bool, kmod: bool) -> HostFacts {
        let backing = Backing::new(BackingKind::Hardware, "/dev/hdp_flush device 0");
        HostFacts {
            page_size,
            kfd,
            kmod: if kmod {
                Ok((
                    KmodStatus::Loaded {
                        api_major: 1,
                        api_minor: 0,
                        num_devices: 1,
                        page_size: page_size as u32,
                        uring_cmd: true,
                    },
                    backing,
                ))
            } else {
                Err("/dev/hdp_flush not found".into())
            },
            uring: Ok(()),
        }
    }

    #[test]
    fn a_host_without_gpu_selects_the_simulator_and_says_why() {
        let p = decide(host(4096, false, false), None);
        let sel = p.selected.clone().unwrap();
        assert_eq!(sel.kind, StrategyKind::Sim);
        assert!(sel.reason.contains("simulator"), "{}", sel.reason);
        assert!(matches!(
            p.availability(StrategyKind::Ioctl),
            Availability::Unavailable { .. }
        ));
        assert!(matches!(
            p.availability(StrategyKind::DummyPage),
            Availability::StandIn { .. }
        ));
    }

    #[test]
    fn the_module_is_preferred_over_the_simulator_on_64k_pages() {
        let p = decide(host(65536, true, true), None);
        assert_eq!(p.selected.clone().unwrap().kind, StrategyKind::Ioctl);
        match p.availability(StrategyKind::MmioRemap) {
            Availability::Unavailable { reason } => assert!(reason.contains("65536"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_unknown_override_is_an_error_naming_the_variable_and_the_choices() {
        let p = decide(host(4096, false, false), Some("turbo".into()));
        let err = p.selected.unwrap_err();
        assert!(err.contains("turbo") && err.contains(STRATEGY_ENV), "{err}");
        assert!(err.contains("dummy-page"), "{err}");
    }

    #[test]
    fn an_override_to_an_unusable_strategy_is_an_error_with_the_reason() {
        let p = decide(host(4096, false, false), Some("ioctl".into()));
        let err = p.selected.unwrap_err();
        assert!(
            err.contains("not usable here") && err.contains("not found"),
            "{err}"
        );
        let p = decide(host(4096, false, false), Some("legacy".into()));
        assert!(p.selected.unwrap_err().contains("no /dev/kfd"));
    }

    #[test]
    fn an_override_to_a_usable_strategy_wins() {
        let p = decide(host(4096, false, true), Some("uring".into()));
        assert_eq!(p.selected.unwrap().kind, StrategyKind::Uring);
    }

    #[test]
    fn the_global_strategy_is_chosen_once() {
        let a = global().map(|f| f as *const dyn Flush as *const u8);
        let b = global().map(|f| f as *const dyn Flush as *const u8);
        assert_eq!(a.map_err(|e| e.to_string()), b.map_err(|e| e.to_string()));
    }
}
