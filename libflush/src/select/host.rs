//! What this host offers for flushing: the `hdp_flush` module and sysfs. KFD is not asked:
//! nothing in the default choice depends on it (see [`crate::kfd_uapi`]).

use serde::Serialize;

use crate::device::{device_nodes, HdpFlushDevice, ModuleDevice};
use crate::gpu::{PciAddress, Sysfs};
use crate::strategy::BackingKind;
use crate::uapi::{self, HdpFlushVersion};
use crate::Error;

/// The `hdp_flush` module as user space sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum KmodStatus {
    /// Opened and version-checked.
    Loaded {
        /// uAPI major.
        api_major: u32,
        /// uAPI minor.
        api_minor: u32,
        /// The module's PAGE_SIZE.
        page_size: u32,
        /// Serves io_uring URING_CMD.
        uring_cmd: bool,
        /// Whether `devices` is the module's whole list, by its indices (read on
        /// `/dev/hdp_flush/all`, the administrators' node), or only the devices whose own
        /// nodes this process may open (a container given one GPU sees that one).
        whole: bool,
        /// What it serves (of it, this process may reach).
        devices: Vec<ModuleDevice>,
    },
    /// Not usable, with the reason.
    Absent {
        /// The open error.
        reason: String,
    },
}

impl KmodStatus {
    /// What the module's nodes say: its administrators' node if this process may open it,
    /// else every device's own node it may open.
    pub(crate) fn look() -> Self {
        match HdpFlushDevice::open_default() {
            Ok(all) => Self::of(&all),
            Err(missing @ Error::DeviceMissing { .. }) => Self::Absent {
                reason: missing.to_string(),
            },
            Err(refused) => match device_nodes() {
                Ok((v, devices)) => Self::loaded(v, false, devices),
                Err(e) => Self::Absent {
                    reason: format!("{refused}; and no device's own node opens either: {e}"),
                },
            },
        }
    }

    /// What the administrators' node, open, says.
    fn of(all: &HdpFlushDevice) -> Self {
        match all.devices() {
            Ok(devices) => Self::loaded(all.version(), true, devices),
            Err(e) => Self::Absent {
                reason: e.to_string(),
            },
        }
    }

    fn loaded(v: HdpFlushVersion, whole: bool, devices: Vec<ModuleDevice>) -> Self {
        Self::Loaded {
            api_major: v.api_major,
            api_minor: v.api_minor,
            page_size: v.page_size,
            uring_cmd: v.features & uapi::HDP_FLUSH_FEAT_URING_CMD != 0,
            whole,
            devices,
        }
    }

    /// The first device listed that is not revoked: where `hdpflush bench` measures the module.
    pub(crate) fn first_served(&self) -> Option<&ModuleDevice> {
        self.devices().iter().find(|d| !d.revoked)
    }

    /// Every device the module lists, revoked ones too.
    pub fn devices(&self) -> &[ModuleDevice] {
        match self {
            Self::Loaded { devices, .. } => devices,
            Self::Absent { .. } => &[],
        }
    }

    /// Whether the module answers `URING_CMD`.
    pub(crate) fn uring_cmd(&self) -> bool {
        matches!(
            self,
            Self::Loaded {
                uring_cmd: true,
                ..
            }
        )
    }

    /// The device listed for the PCI function `pci` (never a simulated one: those have no
    /// address), revoked or not.
    pub(crate) fn listed_at(&self, pci: PciAddress) -> Option<&ModuleDevice> {
        self.devices().iter().find(|d| d.pci == Some(pci))
    }

    /// The GPUs the module serves with its amdgpu backend.
    pub(crate) fn gpus(&self) -> impl Iterator<Item = PciAddress> + '_ {
        self.devices()
            .iter()
            .filter(|d| d.backing_kind() == BackingKind::Hardware && !d.revoked)
            .filter_map(|d| d.pci)
    }

    /// Why the module does not serve `gpu`, and what to do.
    pub(crate) fn why_not_serving(&self, gpu: &str, listed: Option<&ModuleDevice>) -> String {
        match (self, listed) {
            (Self::Absent { reason }, _) => {
                format!("the hdp_flush module cannot be used ({reason})")
            }
            (_, Some(d)) if d.revoked => format!(
                "the hdp_flush module's device {} for {gpu} is revoked (removed, or unbound from its driver); reload the module or rebind the GPU",
                d.index
            ),
            (Self::Loaded { devices, .. }, _) => {
                let served: Vec<String> = devices.iter().map(ModuleDevice::describe).collect();
                let served = if served.is_empty() {
                    "nothing".to_owned()
                } else {
                    served.join(", ")
                };
                format!("the hdp_flush module does not serve {gpu} (it serves {served}; see docs/kernel-module.md for naming GPUs to it)")
            }
        }
    }
}

/// What one look at the host found: the module's devices and sysfs.
pub(crate) struct Host {
    pub kmod: KmodStatus,
    pub sysfs: Sysfs,
}

impl Host {
    /// Look at the module's nodes once per decision.
    pub fn look() -> Self {
        Self {
            kmod: KmodStatus::look(),
            sysfs: Sysfs::host(),
        }
    }
}

/// The host's compute GPUs, one per physical device: KFD's GPU nodes (all partitions of a GPU
/// count once) and GPUs the module serves with its amdgpu backend. AMD display functions KFD
/// does not list (an APU's display, a GPU without compute) are not among them.
pub(crate) fn compute_gpus(sysfs: &Sysfs, kmod: &KmodStatus) -> Vec<PciAddress> {
    let mut all: Vec<PciAddress> = sysfs
        .kfd_gpus()
        .into_iter()
        .map(|g| g.pci)
        .chain(kmod.gpus())
        .collect();
    all.sort();
    all.dedup();
    all
}
