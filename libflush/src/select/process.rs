//! The process-wide flusher, for programs that use one GPU: `HDPFLUSH_GPU`, else the host's
//! only compute GPU, opened with nothing offered.

use std::sync::OnceLock;

use super::decide::{decide, Named, Offer, Selection};
use super::host::{compute_gpus, Host, KmodStatus};
use super::open::open_gpu_on;
use super::options::FlusherOptions;
use super::resolve::resolve;
use super::GPU_ENV;
use crate::gpu::{GpuSelector, Sysfs};
use crate::region::page_size;
use crate::strategy::BackingKind;
use crate::{Error, Flush, Result, Sim, StrategyKind};

/// The GPU the process-wide flusher is for: `HDPFLUSH_GPU`, else the only compute GPU.
pub(crate) fn process_gpu(sysfs: &Sysfs, kmod: &KmodStatus) -> Result<GpuSelector> {
    if let Ok(v) = std::env::var(GPU_ENV) {
        if !v.trim().is_empty() {
            return v.parse().map_err(|e| match e {
                Error::InvalidArgument { what } => Error::InvalidArgument {
                    what: format!("{GPU_ENV}: {what}"),
                },
                other => other,
            });
        }
    }
    match compute_gpus(sysfs, kmod)[..] {
        [one] => Ok(GpuSelector::Pci(one)),
        [] => Err(Error::NoProcessGpu {
            reason: format!("no AMD GPU on this host (KFD lists no GPU node and hdp_flush serves no GPU); name one with {GPU_ENV}=<PCI address>"),
        }),
        ref several => {
            let list: Vec<String> = several.iter().map(ToString::to_string).collect();
            Err(Error::NoProcessGpu {
                reason: format!("{} AMD GPUs here ({}): set {GPU_ENV}, or open one flusher per GPU (libflush::open_gpu, hdpflush_open_pci)", several.len(), list.join(", ")),
            })
        }
    }
}

/// The process-wide choice: `None` for the GPU when the simulator was named (it flushes none).
pub(crate) fn process_wide(
    sysfs: &Sysfs,
    kmod: &KmodStatus,
    page_size: usize,
    named: Option<&Named>,
) -> Result<(Option<GpuSelector>, Selection)> {
    match named {
        Some(Named {
            kind: StrategyKind::Sim,
            origin,
        }) => {
            let reason = format!("{origin}: the in-process simulator; no GPU is flushed");
            return Ok((
                None,
                Selection {
                    kind: StrategyKind::Sim,
                    reason,
                    backing: BackingKind::Simulator,
                },
            ));
        }
        Some(Named { kind, origin })
            if matches!(
                kind,
                StrategyKind::MmioRemap | StrategyKind::DummyPage | StrategyKind::Legacy
            ) =>
        {
            return Err(Error::Unavailable {
                strategy: *kind,
                reason: format!("it flushes through a mapping the caller passes, and the process-wide flusher has none (named by {origin}); open a per-GPU flusher with the mapping"),
            });
        }
        _ => {}
    }
    let gpu = resolve(process_gpu(sysfs, kmod)?, sysfs, kmod)?;
    let s = decide(&gpu, kmod, page_size, Offer::default(), named)?;
    let selection = Selection {
        reason: format!("GPU {gpu}: {}", s.reason),
        ..s
    };
    Ok((Some(gpu.named), selection))
}

/// Choose and open the process-wide flusher (see the module doc).
pub fn select() -> Result<(Box<dyn Flush>, Selection)> {
    let named = Named::by_environment()?;
    let host = Host::look();
    let (gpu, selection) = process_wide(&host.sysfs, &host.kmod, page_size(), named.as_ref())?;
    let flusher: Box<dyn Flush> = match gpu {
        None => Box::new(Sim::new()),
        Some(gpu) => Box::new(open_gpu_on(host, gpu, FlusherOptions::new())?),
    };
    Ok((flusher, selection))
}

static GLOBAL: OnceLock<Result<(Box<dyn Flush>, Selection)>> = OnceLock::new();

/// The process-wide flusher, chosen once by [`select`] on first use; the same error every
/// time if there is none.
pub fn global() -> Result<&'static dyn Flush> {
    global_selection().map(|(f, _)| f)
}

/// [`global`] and why it was chosen.
pub fn global_selection() -> Result<(&'static dyn Flush, &'static Selection)> {
    match GLOBAL.get_or_init(select) {
        Ok((flush, selection)) => Ok((flush.as_ref(), selection)),
        Err(e) => Err(e.clone()),
    }
}
