//! Opening the flusher the decision chose.

use std::fmt;
use std::sync::Once;

use super::decide::{decide, Named, Offer, Selection};
use super::host::Host;
use super::options::FlusherOptions;
use super::resolve::{resolve, ResolvedGpu};
use crate::device::HdpFlushDevice;
use crate::gpu::GpuSelector;
use crate::region::page_size;
use crate::strategy::{Backing, Completion};
use crate::{
    DummyPage, Error, Flush, Ioctl, KfdIoctl, Legacy, MappedRegion, MmioRemap, Result, Sim,
    StrategyKind, Uring, UringConfig,
};

/// A flusher for one GPU: the chosen strategy, the GPU, and why.
pub struct GpuFlusher {
    inner: Box<dyn Flush>,
    gpu: ResolvedGpu,
    selection: Selection,
}

impl GpuFlusher {
    /// The GPU it flushes.
    pub fn gpu(&self) -> &ResolvedGpu {
        &self.gpu
    }

    /// The strategy and why it was chosen.
    pub fn selection(&self) -> &Selection {
        &self.selection
    }

    /// The flusher itself, for [`crate::flush_gpus`]-style callers that need the strategy.
    pub fn flusher(&self) -> &dyn Flush {
        self.inner.as_ref()
    }
}

impl fmt::Debug for GpuFlusher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GpuFlusher")
            .field("gpu", &self.gpu)
            .field("selection", &self.selection)
            .finish_non_exhaustive()
    }
}

impl Flush for GpuFlusher {
    fn kind(&self) -> StrategyKind {
        self.inner.kind()
    }
    fn backing(&self) -> Backing {
        self.inner.backing()
    }
    fn flush_with(&self, completion: Completion) -> Result<()> {
        self.inner.flush_with(completion)
    }
    fn completion(&self) -> Completion {
        self.inner.completion()
    }
    fn flush(&self) -> Result<()> {
        self.inner.flush()
    }
    fn invalidate(&self) -> Result<()> {
        self.inner.invalidate()
    }
    fn flush_batch(&self, count: usize) -> Result<()> {
        self.inner.flush_batch(count)
    }
    fn module_target(&self) -> Option<crate::ModuleTarget<'_>> {
        self.inner.module_target()
    }
}

/// Open a flusher for the GPU `named`, with what `options` offers (see [`super`] for the
/// order). `ENODEV`-class errors say what is missing.
pub fn open_gpu(named: GpuSelector, options: FlusherOptions) -> Result<GpuFlusher> {
    open_gpu_on(Host::look(), named, options)
}

/// The strategy named for a flusher: the caller's, else the environment's (`HDPFLUSH_STRATEGY`,
/// read by `environment`) if the caller passed no mapping, announced once per process on
/// stderr.
pub(crate) fn named_for(
    options: &FlusherOptions,
    environment: impl FnOnce() -> Result<Option<Named>>,
) -> Result<Option<Named>> {
    if let Some(kind) = options.strategy {
        return Ok(Some(Named::by_caller(kind)));
    }
    if options.has_mapping() {
        return Ok(None);
    }
    let named = environment()?;
    if let Some(n) = &named {
        static ANNOUNCED: Once = Once::new();
        ANNOUNCED.call_once(|| {
            eprintln!(
                "libhdpflush: {} from the environment names the strategy of flushers whose caller named none and passed no mapping",
                n.origin
            );
        });
    }
    Ok(named)
}

/// [`open_gpu`] with the host already looked at.
pub(crate) fn open_gpu_on(
    host: Host,
    named: GpuSelector,
    options: FlusherOptions,
) -> Result<GpuFlusher> {
    let Host { kmod, sysfs } = host;
    let by_name = named_for(&options, Named::by_environment)?;
    let offer = Offer {
        remap: options.remap.is_some(),
        dummy_page: options.dummy_page.is_some(),
        allow_dummy_page: options.allow_dummy_page,
        batched: options.batched,
        require_hardware: options.require_hardware,
    };
    let gpu = match (&by_name, resolve(named, &sysfs, &kmod)) {
        // The simulator flushes no GPU: naming one it cannot find is no reason to refuse.
        (Some(n), Err(_)) if n.kind == StrategyKind::Sim => ResolvedGpu::unresolved(named),
        (_, resolved) => resolved?,
    };
    let mut selection = decide(&gpu, &kmod, page_size(), offer, by_name.as_ref())?;
    let completion = options.completion;
    let region = |r: Option<MappedRegion>| {
        r.ok_or_else(|| Error::InvalidArgument {
            what: "internal: a mapping was chosen that was not given".into(),
        })
    };
    // The module's flushers go through the device's own node, where it is index 0: the node
    // a container is given for its GPU, checked to be that GPU's.
    let own_node = || {
        let serving = gpu.serving().ok_or_else(|| Error::Unavailable {
            strategy: selection.kind,
            reason: format!("the hdp_flush module does not serve {gpu}"),
        })?;
        HdpFlushDevice::open_own(serving).map_err(|e| e.unavailable_for(selection.kind))
    };
    let inner: Box<dyn Flush> = match selection.kind {
        StrategyKind::Sim => Box::new(Sim::with_model(
            crate::sim::Hdp::new(crate::sim::HdpConfig::default()),
            completion,
        )),
        StrategyKind::MmioRemap => Box::new(MmioRemap::new(region(options.remap)?, completion)?),
        StrategyKind::KfdIoctl => {
            let gpu_id = gpu.kfd_gpu_id.ok_or_else(|| Error::Unavailable {
                strategy: StrategyKind::KfdIoctl,
                reason: format!("KFD lists no node for GPU {gpu}"),
            })?;
            Box::new(KfdIoctl::open(gpu_id, completion)?)
        }
        StrategyKind::DummyPage => Box::new(DummyPage::new(region(options.dummy_page)?)?),
        StrategyKind::Legacy => Box::new(Legacy::new(region(options.dummy_page)?)?),
        StrategyKind::Ioctl => Box::new(Ioctl::on_device(own_node()?, 0, completion)?),
        StrategyKind::Uring => {
            let dev = own_node()?;
            let config = UringConfig {
                device: 0,
                completion,
                sqpoll_idle_ms: options.sqpoll_idle_ms,
                ..UringConfig::default()
            };
            match Uring::on_device(dev.try_clone()?, config) {
                Ok(u) => Box::new(u),
                // Refused by the kernel or a sandbox: a batching caller still gets its flushes.
                Err(e) if by_name.is_none() && e.is_uring_refused() => {
                    selection = Selection {
                        kind: StrategyKind::Ioctl,
                        reason: format!("{}; {e}; so one ioctl per flush", selection.reason),
                        backing: selection.backing,
                    };
                    Box::new(Ioctl::on_device(dev, 0, completion)?)
                }
                Err(e) => return Err(e),
            }
        }
    };
    Ok(GpuFlusher {
        inner,
        gpu,
        selection,
    })
}
