//! What this host offers and what [`crate::open_gpu`] would do for each GPU on it: the report
//! behind `hdpflush probe`, for people diagnosing a host.

use std::path::Path;

use serde::Serialize;

use crate::device::ModuleDevice;
use crate::gpu::{GpuSelector, NodeLink, PciAddress, Sysfs};
use crate::region::page_size;
use crate::select::decide::{decide, Named, Offer, Selection};
use crate::select::host::{compute_gpus, Host, KmodStatus};
use crate::select::process::process_wide;
use crate::select::resolve::resolve;
use crate::select::{GPU_ENV, KFD_PATH, STRATEGY_ENV};
use crate::strategy::KfdStatus;
use crate::Error;

/// One KFD node of a GPU: the whole GPU, or one of its partitions.
#[derive(Clone, Debug, Serialize)]
pub struct KfdNodeProbe {
    /// Topology node number.
    pub node: u32,
    /// Its `gpu_id`.
    pub gpu_id: u32,
    /// Its render minor.
    pub render_minor: Option<u32>,
    /// How it was tied to the GPU's PCI function.
    pub found_by: NodeLink,
}

/// A physical GPU (or a device the module serves for testing) and what [`crate::open_gpu`]
/// would do for it with no mapping given.
#[derive(Clone, Debug, Serialize)]
pub struct GpuProbe {
    /// Where.
    pub pci: PciAddress,
    /// A compute GPU (else a device the module serves for testing, flushed only when named).
    pub amd_gpu: bool,
    /// Its KFD nodes: one, or one per partition.
    pub kfd_nodes: Vec<KfdNodeProbe>,
    /// The module device listed for it.
    pub module: Option<ModuleDevice>,
    /// The strategy [`crate::open_gpu`] picks with no remap page or dummy page given, or why
    /// none.
    pub decision: std::result::Result<Selection, String>,
}

/// Everything selection looks at.
#[derive(Clone, Debug, Serialize)]
pub struct Probe {
    /// The CPU page size.
    pub page_size: usize,
    /// `/dev/kfd` exists.
    pub kfd: bool,
    /// What `/dev/kfd` reports (shown, never used to choose a strategy).
    pub kfd_version: KfdStatus,
    /// `/dev/hdp_flush`.
    pub kmod: KmodStatus,
    /// `HDPFLUSH_STRATEGY`, if set.
    pub strategy_env: Option<String>,
    /// `HDPFLUSH_GPU`, if set.
    pub gpu_env: Option<String>,
    /// Every physical GPU found (and every device the module serves for testing).
    pub gpus: Vec<GpuProbe>,
    /// What the process-wide flusher ([`crate::global`], `hdpflush_flush()`) would be, or why
    /// none.
    pub process_wide: std::result::Result<Selection, String>,
    /// A setting that can never work (an unknown strategy, a malformed `HDPFLUSH_GPU`, a
    /// named strategy that cannot flush): what the CLI exits non-zero for.
    pub config_error: Option<String>,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|s| !s.trim().is_empty())
}

/// Look at this host: page size, KFD, the module, every GPU and the decision for it.
pub fn probe() -> Probe {
    let host = Host::look();
    probe_with(
        &host.sysfs,
        host.kmod,
        page_size(),
        Path::new(KFD_PATH).exists(),
        KfdStatus::probe(),
    )
}

/// [`probe`] on what was looked at (fixtures, in tests).
pub(crate) fn probe_with(
    sysfs: &Sysfs,
    kmod: KmodStatus,
    page_size: usize,
    kfd: bool,
    kfd_version: KfdStatus,
) -> Probe {
    let named = Named::by_environment();
    let mut config_error = named.as_ref().err().map(ToString::to_string);
    let named = named.ok().flatten();

    let compute = compute_gpus(sysfs, &kmod);
    let mut addresses = compute.clone();
    addresses.extend(kmod.devices().iter().filter_map(|d| d.pci));
    addresses.sort();
    addresses.dedup();
    let nodes = sysfs.kfd_gpus();
    let gpus = addresses
        .into_iter()
        .map(|pci| {
            let gpu = resolve(GpuSelector::Pci(pci), sysfs, &kmod);
            let decision = gpu
                .as_ref()
                .map_err(Clone::clone)
                .and_then(|g| decide(g, &kmod, page_size, Offer::default(), named.as_ref()))
                .map_err(|e| e.to_string());
            GpuProbe {
                pci,
                amd_gpu: compute.contains(&pci),
                kfd_nodes: nodes
                    .iter()
                    .filter(|n| n.pci == pci)
                    .map(|n| KfdNodeProbe {
                        node: n.node,
                        gpu_id: n.gpu_id,
                        render_minor: n.render_minor,
                        found_by: n.found_by,
                    })
                    .collect(),
                module: gpu.ok().and_then(|g| g.module),
                decision,
            }
        })
        .collect();

    let process_wide = process_wide(sysfs, &kmod, page_size, named.as_ref()).map(|(_, s)| s);
    if let Err(e @ (Error::InvalidArgument { .. } | Error::Unavailable { .. })) = &process_wide {
        config_error.get_or_insert(e.to_string());
    }
    Probe {
        page_size,
        kfd,
        kfd_version,
        strategy_env: env(STRATEGY_ENV),
        gpu_env: env(GPU_ENV),
        gpus,
        process_wide: process_wide.map_err(|e| e.to_string()),
        config_error,
        kmod,
    }
}
