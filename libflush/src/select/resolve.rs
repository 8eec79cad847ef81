//! The GPU a caller named, found on the host: its physical PCI function (every partition of a
//! GPU resolves to the GPU: the HDP belongs to the device), its KFD nodes and the module
//! device listed for it.

use std::fmt;

use serde::Serialize;

use super::host::KmodStatus;
use crate::device::ModuleDevice;
use crate::gpu::{GpuSelector, PciAddress, Sysfs};
use crate::{Error, Result};

/// A GPU, resolved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ResolvedGpu {
    /// How the caller named it.
    pub named: GpuSelector,
    /// Its PCI function (`None` for a simulated module device named by index).
    pub pci: Option<PciAddress>,
    /// The module device listed for it (possibly revoked).
    pub module: Option<ModuleDevice>,
    /// The KFD `gpu_id` a named `kfd-ioctl` flushes: the one the caller named, else the GPU's
    /// first KFD node.
    pub kfd_gpu_id: Option<u32>,
    /// Every KFD `gpu_id` of this physical GPU (several for a partitioned one).
    pub kfd_gpu_ids: Vec<u32>,
}

impl fmt::Display for ResolvedGpu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.named, self.pci, &self.module) {
            (GpuSelector::Pci(_), Some(pci), _) => write!(f, "{pci}"),
            (named, Some(pci), _) => write!(f, "{named} ({pci})"),
            (named, None, Some(d)) => write!(f, "{named} ({})", d.name),
            (named, None, None) => write!(f, "{named}"),
        }
    }
}

impl ResolvedGpu {
    /// The module device, if it is usable (listed and not revoked).
    pub(crate) fn serving(&self) -> Option<&ModuleDevice> {
        self.module.as_ref().filter(|d| !d.revoked)
    }

    /// A GPU nobody could find: what the simulator "flushes" when named for it.
    pub(crate) fn unresolved(named: GpuSelector) -> Self {
        Self {
            named,
            pci: None,
            module: None,
            kfd_gpu_id: None,
            kfd_gpu_ids: Vec::new(),
        }
    }
}

/// Find `named` on the host (`sysfs`) and among the module's devices.
pub(crate) fn resolve(named: GpuSelector, sysfs: &Sysfs, kmod: &KmodStatus) -> Result<ResolvedGpu> {
    // One read of KFD's topology per resolution.
    let nodes = sysfs.kfd_gpus();
    let at = |pci: PciAddress, module: Option<ModuleDevice>, gpu_id: Option<u32>| {
        let ids: Vec<u32> = nodes
            .iter()
            .filter(|g| g.pci == pci)
            .map(|g| g.gpu_id)
            .collect();
        ResolvedGpu {
            named,
            pci: Some(pci),
            module: module.or_else(|| kmod.listed_at(pci).cloned()),
            kfd_gpu_id: gpu_id.or_else(|| ids.first().copied()),
            kfd_gpu_ids: ids,
        }
    };
    match named {
        GpuSelector::Pci(pci) => Ok(at(pci, None, None)),
        GpuSelector::KfdGpuId(id) => {
            let pci = match nodes.iter().find(|g| g.gpu_id == id) {
                Some(g) => g.pci,
                // Not among the tied nodes: the lookup says why.
                None => sysfs.kfd_gpu(id)?.pci,
            };
            Ok(at(pci, None, Some(id)))
        }
        GpuSelector::ModuleIndex(index) => {
            let not_found = |reason: String| Error::GpuNotFound {
                gpu: named.to_string(),
                reason,
            };
            let devices = match kmod {
                KmodStatus::Loaded {
                    devices,
                    whole: true,
                    ..
                } => devices,
                KmodStatus::Loaded { whole: false, .. } => {
                    return Err(not_found(format!(
                        "module indices are read on {}, which this process may not open; name the GPU by its PCI address (its own node, {}/<address>, is enough)",
                        crate::uapi::HDP_FLUSH_DEVICE_PATH,
                        crate::uapi::HDP_FLUSH_NODE_DIR
                    )))
                }
                KmodStatus::Absent { reason } => return Err(not_found(reason.clone())),
            };
            let d = devices.get(index as usize).ok_or_else(|| {
                not_found(format!(
                    "the hdp_flush module serves {} device(s)",
                    devices.len()
                ))
            })?;
            Ok(match d.pci {
                Some(pci) => at(pci, Some(d.clone()), None),
                None => ResolvedGpu {
                    module: Some(d.clone()),
                    ..ResolvedGpu::unresolved(named)
                },
            })
        }
    }
}
