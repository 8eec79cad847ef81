//! Which strategy flushes which GPU, and the process-wide flusher.
//!
//! Per GPU ([`open_gpu`]): the GPU is named by PCI address, KFD `gpu_id` or module device
//! index; then, in order:
//! 1. the caller gave its mapping of that GPU's MMIO remap page -> `mmio-remap`;
//! 2. the running KFD offers `AMDKFD_IOC_HDP_FLUSH` (uAPI 1.18, docs/upstream/) and knows the
//!    GPU's `gpu_id` -> `kfd-ioctl` (detected with `AMDKFD_IOC_GET_VERSION`, never assumed);
//! 3. the `hdp_flush` module serves that GPU -> `ioctl` (`uring` when the caller batches);
//! 4. the caller gave a VRAM page of that GPU *and* opted into the dummy page (its correctness
//!    rests on undocumented HDP read semantics, see docs/design.md) -> `dummy-page`;
//! 5. otherwise `ENODEV`, with what is missing and what would provide it.
//!
//! Never the simulator, a stand-in or another GPU: `sim` runs only when named, through
//! [`FlusherOptions::strategy`] or `HDPFLUSH_STRATEGY=sim`. The environment variable names a
//! strategy for every flusher of the process (for tests and benchmarks); one it cannot use is
//! an error, not a fallback.
//!
//! Process-wide ([`global`], the C ABI's `hdpflush_flush()`): the GPU is `HDPFLUSH_GPU` if
//! set, else the host's only AMD GPU; several GPUs without `HDPFLUSH_GPU` is an error that
//! says to open one flusher per GPU.

use std::fmt;
use std::path::Path;
use std::sync::OnceLock;

use serde::Serialize;

use crate::device::{HdpFlushDevice, ModuleDevice};
use crate::gpu::{GpuSelector, PciAddress, Sysfs};
use crate::region::page_size;
use crate::strategy::{
    caller_dummy_page, caller_remap_page, Backing, BackingKind, Completion, KfdIoctl, KfdStatus,
};
use crate::uapi;
use crate::{
    DummyPage, Error, Flush, Ioctl, Legacy, MappedRegion, MmioRemap, Result, Sim, StrategyKind,
    Uring, UringConfig,
};

/// The environment variable that names a strategy for every flusher (tests, benchmarks).
pub const STRATEGY_ENV: &str = "HDPFLUSH_STRATEGY";
/// The environment variable that names the process-wide flusher's GPU.
pub const GPU_ENV: &str = "HDPFLUSH_GPU";
/// KFD's device node: present when amdgpu drives an AMD GPU for compute.
pub const KFD_PATH: &str = "/dev/kfd";

// ---------------------------------------------------------------------------------------------
// What the caller offers
// ---------------------------------------------------------------------------------------------

/// What a caller offers a per-GPU flusher besides naming the GPU.
#[derive(Debug, Default)]
pub struct FlusherOptions {
    remap: Option<MappedRegion>,
    dummy_page: Option<MappedRegion>,
    allow_dummy_page: bool,
    batched: bool,
    sqpoll_idle_ms: Option<u32>,
    completion: Completion,
    strategy: Option<StrategyKind>,
}

impl FlusherOptions {
    /// Nothing offered: the module, if it serves the GPU; flushes complete.
    pub fn new() -> Self {
        Self::default()
    }

    /// The runtime's mapping of this GPU's remap page: `hdp_mem_flush_cntl` is the
    /// `HDP_MEM_FLUSH_CNTL` pointer ROCr returns for `HSA_AMD_AGENT_INFO_HDP_FLUSH`. Preferred
    /// over everything else.
    ///
    /// # Safety
    ///
    /// It must point at that GPU's mapped `HDP_MEM_FLUSH_CNTL` register and stay mapped for as
    /// long as the flusher lives.
    pub unsafe fn remap_page(mut self, hdp_mem_flush_cntl: *mut u32) -> Result<Self> {
        // SAFETY: the caller's contract.
        self.remap = Some(unsafe { caller_remap_page(hdp_mem_flush_cntl) }?);
        Ok(self)
    }

    /// A host-visible VRAM page of this GPU (at least 4K) that nothing else uses. Used as the
    /// dummy page only with [`allow_dummy_page`](Self::allow_dummy_page).
    ///
    /// # Safety
    ///
    /// `page..page + len` must be that GPU's VRAM, mapped readable and writable, for as long
    /// as the flusher lives.
    pub unsafe fn dummy_page(mut self, page: *mut u8, len: usize) -> Result<Self> {
        // SAFETY: the caller's contract.
        self.dummy_page = Some(unsafe { caller_dummy_page(page, len) }?);
        Ok(self)
    }

    /// A VRAM page mapped by other means (a PCI BAR through sysfs, in tests).
    pub fn dummy_page_region(mut self, region: MappedRegion) -> Self {
        self.dummy_page = Some(region);
        self
    }

    /// Accept the dummy page when nothing better serves the GPU.
    pub fn allow_dummy_page(mut self, allow: bool) -> Self {
        self.allow_dummy_page = allow;
        self
    }

    /// The caller batches flushes: use io_uring (`uring`) rather than one ioctl per flush when
    /// the module serves the GPU, with a kernel SQ polling thread when `sqpoll_idle_ms` is set.
    pub fn batched(mut self, sqpoll_idle_ms: Option<u32>) -> Self {
        self.batched = true;
        self.sqpoll_idle_ms = sqpoll_idle_ms;
        self
    }

    /// What [`Flush::flush`] gives: [`Completion::Completed`] (the default) or posted.
    pub fn completion(mut self, completion: Completion) -> Self {
        self.completion = completion;
        self
    }

    /// Use exactly this strategy (overrides `HDPFLUSH_STRATEGY`); it is an error if it cannot
    /// flush this GPU.
    pub fn strategy(mut self, kind: StrategyKind) -> Self {
        self.strategy = Some(kind);
        self
    }
}

// ---------------------------------------------------------------------------------------------
// Resolution and decision (pure: tested on fixtures)
// ---------------------------------------------------------------------------------------------

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
        /// What it serves.
        devices: Vec<ModuleDevice>,
    },
    /// Not usable, with the reason.
    Absent {
        /// The open error.
        reason: String,
    },
}

impl KmodStatus {
    fn of(dev: Result<&HdpFlushDevice>) -> Self {
        let loaded = dev.and_then(|d| {
            let v = d.version();
            Ok(Self::Loaded {
                api_major: v.api_major,
                api_minor: v.api_minor,
                page_size: v.page_size,
                uring_cmd: v.features & uapi::HDP_FLUSH_FEAT_URING_CMD != 0,
                devices: d.devices()?,
            })
        });
        loaded.unwrap_or_else(|e| Self::Absent {
            reason: e.to_string(),
        })
    }

    fn devices(&self) -> &[ModuleDevice] {
        match self {
            Self::Loaded { devices, .. } => devices,
            Self::Absent { .. } => &[],
        }
    }

    /// The device serving the GPU at `pci` (never a simulated one: those have no address).
    fn serving(&self, pci: PciAddress) -> Option<&ModuleDevice> {
        self.devices().iter().find(|d| d.pci == Some(pci))
    }

    /// Why the module does not serve `pci`, and what to do.
    fn why_not_serving(&self, gpu: &str) -> String {
        match self {
            Self::Absent { reason } => format!("the hdp_flush module cannot be used ({reason})"),
            Self::Loaded { devices, .. } => {
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

/// A GPU, resolved: where it is and which module device (if any) serves it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ResolvedGpu {
    /// How the caller named it.
    pub named: GpuSelector,
    /// Its PCI function (`None` for a simulated module device named by index).
    pub pci: Option<PciAddress>,
    /// The module device that serves it.
    pub module: Option<ModuleDevice>,
    /// The `gpu_id` KFD's `AMDKFD_IOC_HDP_FLUSH` would flush, or why it cannot be used.
    pub kfd_flush: std::result::Result<u32, String>,
}

/// KFD's route to `pci` (or to `gpu_id`, when the caller named one): its `gpu_id` if the
/// running KFD offers the flush ioctl.
fn kfd_route(
    kfd: &KfdStatus,
    sysfs: &Sysfs,
    pci: Option<PciAddress>,
    gpu_id: Option<u32>,
) -> std::result::Result<u32, String> {
    if let KfdStatus::Lacks(why) = kfd {
        return Err(why.clone());
    }
    gpu_id
        .or_else(|| {
            let pci = pci?;
            sysfs
                .kfd_gpus()
                .into_iter()
                .find(|g| g.pci == pci)
                .map(|g| g.gpu_id)
        })
        .ok_or_else(|| "KFD offers AMDKFD_IOC_HDP_FLUSH but lists no gpu_id for this GPU".into())
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

/// Find `named` on the host (`sysfs`) and among the module's devices.
pub(crate) fn resolve(
    named: GpuSelector,
    sysfs: &Sysfs,
    kmod: &KmodStatus,
    kfd: &KfdStatus,
) -> Result<ResolvedGpu> {
    let served = |pci: PciAddress, gpu_id: Option<u32>| ResolvedGpu {
        named,
        pci: Some(pci),
        module: kmod.serving(pci).cloned(),
        kfd_flush: kfd_route(kfd, sysfs, Some(pci), gpu_id),
    };
    match named {
        GpuSelector::Pci(pci) => Ok(served(pci, None)),
        GpuSelector::KfdGpuId(id) => Ok(served(sysfs.kfd_gpu(id)?, Some(id))),
        GpuSelector::ModuleIndex(index) => {
            let not_found = |reason: String| Error::GpuNotFound {
                gpu: named.to_string(),
                reason,
            };
            match kmod {
                KmodStatus::Absent { reason } => Err(not_found(reason.clone())),
                KmodStatus::Loaded { devices, .. } => {
                    let d = devices.get(index as usize).ok_or_else(|| {
                        not_found(format!(
                            "the hdp_flush module serves {} device(s)",
                            devices.len()
                        ))
                    })?;
                    Ok(ResolvedGpu {
                        named,
                        pci: d.pci,
                        module: Some(d.clone()),
                        kfd_flush: kfd_route(kfd, sysfs, d.pci, None),
                    })
                }
            }
        }
    }
}

/// A strategy chosen for a GPU, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Selection {
    /// The strategy.
    pub kind: StrategyKind,
    /// Why it was chosen.
    pub reason: String,
}

/// What the caller offered, as the decision needs it.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Offer {
    pub remap: bool,
    pub dummy_page: bool,
    pub allow_dummy_page: bool,
    pub batched: bool,
}

/// A strategy the caller or the environment named, and which of them it was.
#[derive(Clone, Debug)]
pub(crate) struct Named {
    kind: StrategyKind,
    origin: String,
}

/// `HDPFLUSH_STRATEGY`, parsed, if set.
fn named_by_env() -> Result<Option<Named>> {
    match std::env::var(STRATEGY_ENV) {
        Ok(v) if !v.trim().is_empty() => Ok(Some(Named {
            kind: StrategyKind::parse(&v, STRATEGY_ENV)?,
            origin: format!("{STRATEGY_ENV}={}", v.trim()),
        })),
        _ => Ok(None),
    }
}

/// What the module device serving a GPU is, for reasons.
fn served_by(d: &ModuleDevice) -> String {
    let what = match d.backend {
        uapi::HDP_FLUSH_BACKEND_SIM => "the module's model, no hardware",
        uapi::HDP_FLUSH_BACKEND_PCITEST => "an emulated test device, not a GPU",
        _ => "the GPU's HDP flush register",
    };
    format!(
        "the hdp_flush module serves it as device {} ({} backend: {what})",
        d.index,
        d.backend_name()
    )
}

/// The strategy for `gpu`.
pub(crate) fn decide(
    gpu: &ResolvedGpu,
    kmod: &KmodStatus,
    page_size: usize,
    offer: Offer,
    named: Option<&Named>,
) -> Result<Selection> {
    let shown = gpu.to_string();
    let module = gpu.module.as_ref();
    let uring_cmd = matches!(
        kmod,
        KmodStatus::Loaded {
            uring_cmd: true,
            ..
        }
    );
    let why_no_module = || kmod.why_not_serving(&shown);
    let ok = |kind, reason: String| Ok(Selection { kind, reason });

    if let Some(Named { kind, origin }) = named {
        let unusable = |reason: String| {
            Err(Error::Unavailable {
                strategy: *kind,
                reason: format!("{reason} (named by {origin})"),
            })
        };
        return match kind {
            StrategyKind::Sim => ok(
                StrategyKind::Sim,
                format!("{origin}: the in-process simulator; no GPU is flushed"),
            ),
            StrategyKind::MmioRemap if offer.remap => {
                ok(*kind, format!("{origin}: the caller's MMIO remap page"))
            }
            StrategyKind::MmioRemap => unusable(format!(
                "no MMIO remap page mapping was given for GPU {shown}"
            )),
            StrategyKind::KfdIoctl => match &gpu.kfd_flush {
                Ok(id) => ok(
                    *kind,
                    format!("{origin}: KFD's AMDKFD_IOC_HDP_FLUSH for gpu_id {id}"),
                ),
                Err(why) => unusable(why.clone()),
            },
            StrategyKind::Ioctl => match module {
                Some(d) => ok(*kind, format!("{origin}: {}", served_by(d))),
                None => unusable(why_no_module()),
            },
            StrategyKind::Uring => match module {
                Some(d) if uring_cmd => ok(
                    *kind,
                    format!("{origin}: {}, through io_uring", served_by(d)),
                ),
                Some(_) => unusable("the loaded hdp_flush module does not serve URING_CMD".into()),
                None => unusable(why_no_module()),
            },
            StrategyKind::DummyPage | StrategyKind::Legacy if offer.dummy_page => ok(
                *kind,
                format!("{origin}: the caller's VRAM page (naming the strategy opts into it)"),
            ),
            StrategyKind::DummyPage | StrategyKind::Legacy => unusable(format!(
                "it needs a VRAM page of GPU {shown} from the caller, and none was given"
            )),
        };
    }

    if offer.remap {
        return ok(
            StrategyKind::MmioRemap,
            "the caller's MMIO remap page: one store (and ROCclr's read-back when completed)"
                .into(),
        );
    }
    if let Ok(id) = gpu.kfd_flush {
        return ok(
            StrategyKind::KfdIoctl,
            format!("KFD offers AMDKFD_IOC_HDP_FLUSH: amdgpu flushes gpu_id {id} under its own reset and runtime-PM rules"),
        );
    }
    if let Some(d) = module {
        return if offer.batched && uring_cmd {
            ok(
                StrategyKind::Uring,
                format!("{}; the caller batches: io_uring", served_by(d)),
            )
        } else if offer.batched {
            ok(
                StrategyKind::Ioctl,
                format!(
                    "{}; the module does not serve URING_CMD, so one ioctl per flush",
                    served_by(d)
                ),
            )
        } else {
            ok(StrategyKind::Ioctl, served_by(d))
        };
    }
    if offer.dummy_page && offer.allow_dummy_page {
        return ok(
            StrategyKind::DummyPage,
            "the caller's VRAM page as dummy page (opted in: relies on a BAR read draining the HDP write FIFO)".into(),
        );
    }
    let remap = if page_size == 4096 {
        "no MMIO remap page given (pass the HDP_MEM_FLUSH_CNTL pointer ROCr returns for HSA_AMD_AGENT_INFO_HDP_FLUSH)".to_owned()
    } else {
        format!("no MMIO remap page (PAGE_SIZE is {page_size}: KFD cannot map it)")
    };
    let dummy = match (offer.dummy_page, offer.allow_dummy_page) {
        (false, _) => "no VRAM dummy page given",
        (true, _) => "a VRAM page was given but the dummy page was not opted into (allow_dummy_page / HDPFLUSH_OPEN_ALLOW_DUMMY_PAGE)",
    };
    let kfd = match &gpu.kfd_flush {
        Ok(_) => String::new(),
        Err(why) => format!("no KFD flush ioctl ({why}); "),
    };
    let reason = format!(
        "{remap}; {kfd}{}; {dummy}. Load hdp_flush for this GPU, or pass a mapping; HDPFLUSH_STRATEGY=sim simulates (no GPU is flushed)",
        why_no_module()
    );
    Err(Error::NoFlushPath { gpu: shown, reason })
}

// ---------------------------------------------------------------------------------------------
// Opening
// ---------------------------------------------------------------------------------------------

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
}

/// Open a flusher for the GPU `named`, with what `options` offers (see the module doc for the
/// order). `ENODEV`-class errors say what is missing.
pub fn open_gpu(named: GpuSelector, options: FlusherOptions) -> Result<GpuFlusher> {
    open_gpu_on(Host::look(), named, options)
}

/// What this host offers for flushing: the module (its device, if it opened) and KFD.
struct Host {
    dev: Result<HdpFlushDevice>,
    kmod: KmodStatus,
    kfd: KfdStatus,
}

impl Host {
    /// Open `/dev/hdp_flush` and ask `/dev/kfd`, once per decision.
    fn look() -> Self {
        let dev = HdpFlushDevice::open_default();
        let kmod = KmodStatus::of(dev.as_ref().map_err(Clone::clone));
        Self {
            dev,
            kmod,
            kfd: KfdStatus::probe(),
        }
    }
}

/// [`open_gpu`] with the host already looked at.
fn open_gpu_on(host: Host, named: GpuSelector, options: FlusherOptions) -> Result<GpuFlusher> {
    let Host { dev, kmod, kfd } = host;
    let by_name = match options.strategy {
        Some(kind) => Some(Named {
            kind,
            origin: "the caller".into(),
        }),
        None => named_by_env()?,
    };
    let offer = Offer {
        remap: options.remap.is_some(),
        dummy_page: options.dummy_page.is_some(),
        allow_dummy_page: options.allow_dummy_page,
        batched: options.batched,
    };
    let gpu = match (&by_name, resolve(named, &Sysfs::host(), &kmod, &kfd)) {
        // The simulator flushes no GPU: naming one it cannot find is no reason to refuse.
        (
            Some(Named {
                kind: StrategyKind::Sim,
                ..
            }),
            Err(_),
        ) => ResolvedGpu {
            named,
            pci: None,
            module: None,
            kfd_flush: Err("the simulator flushes no GPU".into()),
        },
        (_, resolved) => resolved?,
    };
    let selection = decide(&gpu, &kmod, page_size(), offer, by_name.as_ref())?;
    let completion = options.completion;
    let region = |r: Option<MappedRegion>| {
        r.ok_or_else(|| Error::InvalidArgument {
            what: "internal: a mapping was chosen that was not given".into(),
        })
    };
    let index = gpu.module.as_ref().map_or(0, |d| d.index);
    let inner: Box<dyn Flush> = match selection.kind {
        StrategyKind::Sim => Box::new(Sim::with_model(
            crate::sim::Hdp::new(crate::sim::HdpConfig::default()),
            completion,
        )),
        StrategyKind::MmioRemap => Box::new(MmioRemap::new(region(options.remap)?, completion)?),
        StrategyKind::KfdIoctl => {
            let gpu_id = gpu.kfd_flush.clone().map_err(|reason| Error::Unavailable {
                strategy: StrategyKind::KfdIoctl,
                reason,
            })?;
            Box::new(KfdIoctl::open(gpu_id, completion)?)
        }
        StrategyKind::DummyPage => Box::new(DummyPage::new(region(options.dummy_page)?)?),
        StrategyKind::Legacy => Box::new(Legacy::new(region(options.dummy_page)?)?),
        StrategyKind::Ioctl => Box::new(Ioctl::on_device(dev?, index, completion)?),
        StrategyKind::Uring => Box::new(Uring::on_device(
            dev?,
            UringConfig {
                device: index,
                completion,
                sqpoll_idle_ms: options.sqpoll_idle_ms,
                ..UringConfig::default()
            },
        )?),
    };
    Ok(GpuFlusher {
        inner,
        gpu,
        selection,
    })
}

/// Every AMD GPU on this host, by PCI address: KFD's GPU nodes, AMD display and accelerator
/// functions on the PCI bus, and GPUs the module serves with its amdgpu backend.
fn amd_gpus(sysfs: &Sysfs, kmod: &KmodStatus) -> Vec<PciAddress> {
    let mut all: Vec<PciAddress> = sysfs
        .kfd_gpus()
        .into_iter()
        .map(|g| g.pci)
        .chain(sysfs.amd_gpus().into_iter().map(|g| g.pci))
        .chain(
            kmod.devices()
                .iter()
                .filter(|d| d.backend == uapi::HDP_FLUSH_BACKEND_AMDGPU)
                .filter_map(|d| d.pci),
        )
        .collect();
    all.sort();
    all.dedup();
    all
}

/// The GPU the process-wide flusher is for: `HDPFLUSH_GPU`, else the only AMD GPU.
fn process_gpu(sysfs: &Sysfs, kmod: &KmodStatus) -> Result<GpuSelector> {
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
    match amd_gpus(sysfs, kmod)[..] {
        [one] => Ok(GpuSelector::Pci(one)),
        [] => Err(Error::NoProcessGpu {
            reason: format!("no AMD GPU on this host (no KFD GPU node, no AMD display or accelerator PCI function, none served by hdp_flush); name one with {GPU_ENV}=<PCI address>, or set {STRATEGY_ENV}=sim to simulate"),
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
fn process_wide(
    sysfs: &Sysfs,
    kmod: &KmodStatus,
    kfd: &KfdStatus,
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
    let gpu = resolve(process_gpu(sysfs, kmod)?, sysfs, kmod, kfd)?;
    let s = decide(&gpu, kmod, page_size, Offer::default(), named)?;
    let selection = Selection {
        kind: s.kind,
        reason: format!("GPU {gpu}: {}", s.reason),
    };
    Ok((Some(gpu.named), selection))
}

/// Choose and open the process-wide flusher (see the module doc).
pub fn select() -> Result<(Box<dyn Flush>, Selection)> {
    let named = named_by_env()?;
    let host = Host::look();
    let (gpu, selection) = process_wide(
        &Sysfs::host(),
        &host.kmod,
        &host.kfd,
        page_size(),
        named.as_ref(),
    )?;
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

// ---------------------------------------------------------------------------------------------
// Probe
// ---------------------------------------------------------------------------------------------

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

/// A PCI function probe found, and what [`open_gpu`] would do for it with no mapping given.
#[derive(Clone, Debug, Serialize)]
pub struct GpuProbe {
    /// Where.
    pub pci: PciAddress,
    /// An AMD GPU (else a device the module serves for testing, flushed only when named).
    pub amd_gpu: bool,
    /// Its KFD `gpu_id`, if KFD has it.
    pub kfd_gpu_id: Option<u32>,
    /// The module device serving it.
    pub module: Option<ModuleDevice>,
    /// The strategy [`open_gpu`] picks with no remap page or dummy page given, or why none.
    pub decision: std::result::Result<Selection, String>,
}

/// Everything selection looks at.
#[derive(Clone, Debug, Serialize)]
pub struct Probe {
    /// The CPU page size.
    pub page_size: usize,
    /// `/dev/kfd` exists.
    pub kfd: bool,
    /// Whether its KFD offers `AMDKFD_IOC_HDP_FLUSH` (docs/upstream/).
    pub kfd_flush: KfdStatus,
    /// `/dev/hdp_flush`.
    pub kmod: KmodStatus,
    /// `HDPFLUSH_STRATEGY`, if set.
    pub strategy_env: Option<String>,
    /// `HDPFLUSH_GPU`, if set.
    pub gpu_env: Option<String>,
    /// Every GPU found (and every device the module serves for testing), per-GPU decision.
    pub gpus: Vec<GpuProbe>,
    /// What the process-wide flusher ([`global`], `hdpflush_flush()`) would be, or why none.
    pub process_wide: std::result::Result<Selection, String>,
    /// A setting that can never work (an unknown strategy, a malformed `HDPFLUSH_GPU`, a
    /// named strategy that cannot flush): what the CLI exits non-zero for.
    pub config_error: Option<String>,
    /// What `hdpflush bench` can measure, every strategy in [`StrategyKind::ALL`] order.
    pub strategies: Vec<(StrategyKind, Availability)>,
}

impl Probe {
    /// Bench availability of `kind`.
    pub fn availability(&self, kind: StrategyKind) -> &Availability {
        &self.strategies[kind.index()].1
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|s| !s.trim().is_empty())
}

/// Look at this host: page size, KFD, the module, every GPU and the decision for it.
pub fn probe() -> Probe {
    let dev = HdpFlushDevice::open_default();
    let kmod = KmodStatus::of(dev.as_ref().map_err(Clone::clone));
    probe_with(
        &Sysfs::host(),
        kmod,
        page_size(),
        Path::new(KFD_PATH).exists(),
        KfdStatus::probe(),
    )
}

fn probe_with(
    sysfs: &Sysfs,
    kmod: KmodStatus,
    page_size: usize,
    kfd: bool,
    kfd_flush: KfdStatus,
) -> Probe {
    let named = named_by_env();
    let mut config_error = named.as_ref().err().map(ToString::to_string);
    let named = named.ok().flatten();

    let kfd_gpus = sysfs.kfd_gpus();
    let mut addresses = amd_gpus(sysfs, &kmod);
    let amd = addresses.clone();
    addresses.extend(kmod.devices().iter().filter_map(|d| d.pci));
    addresses.sort();
    addresses.dedup();
    let gpus = addresses
        .into_iter()
        .map(|pci| {
            let gpu = ResolvedGpu {
                named: GpuSelector::Pci(pci),
                pci: Some(pci),
                module: kmod.serving(pci).cloned(),
                kfd_flush: kfd_route(&kfd_flush, sysfs, Some(pci), None),
            };
            GpuProbe {
                pci,
                amd_gpu: amd.contains(&pci),
                kfd_gpu_id: kfd_gpus.iter().find(|g| g.pci == pci).map(|g| g.gpu_id),
                decision: decide(&gpu, &kmod, page_size, Offer::default(), named.as_ref())
                    .map_err(|e| e.to_string()),
                module: gpu.module,
            }
        })
        .collect();

    let process_wide =
        process_wide(sysfs, &kmod, &kfd_flush, page_size, named.as_ref()).map(|(_, s)| s);
    if let Err(e @ (Error::InvalidArgument { .. } | Error::Unavailable { .. })) = &process_wide {
        config_error.get_or_insert(e.to_string());
    }

    let strategies = StrategyKind::ALL
        .into_iter()
        .map(|kind| (kind, bench_availability(kind, &kmod, page_size, kfd)))
        .collect();
    Probe {
        page_size,
        kfd,
        kfd_flush,
        strategy_env: env(STRATEGY_ENV),
        gpu_env: env(GPU_ENV),
        gpus,
        process_wide: process_wide.map_err(|e| e.to_string()),
        config_error,
        kmod,
        strategies,
    }
}

/// What `hdpflush bench` can measure of `kind` here: the module's device 0 for the kernel
/// strategies, stand-in mappings for the mapping strategies (libflush maps nothing through
/// KFD itself: a runtime passes its mappings).
fn bench_availability(
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
                KmodStatus::Loaded { devices, .. } => match devices.first() {
                    Some(d) => Availability::Ready {
                        backing: Backing::new(
                            crate::device::backend_backing(d.backend),
                            format!("{} device {}", uapi::HDP_FLUSH_DEVICE_PATH, d.describe()),
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
                reason: "it flushes a GPU through KFD (AMDKFD_IOC_HDP_FLUSH, KFD 1.18), and bench times no GPU; hdpflush probe says whether this kernel offers it".into(),
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

/// Open `kind` for benchmarking: the kernel strategies on the module's device 0, the mapping
/// strategies on anonymous memory standing in for the mapping (labelled as such), `sim` on its
/// model.
pub fn open_for_bench(kind: StrategyKind) -> Result<Box<dyn Flush>> {
    let unavailable = |e: Error| e.unavailable_for(kind);
    match kind {
        StrategyKind::MmioRemap => {
            if page_size() != 4096 {
                return Err(Error::Unavailable {
                    strategy: kind,
                    reason: format!(
                        "PAGE_SIZE is {}: KFD cannot map the 4K MMIO remap page",
                        page_size()
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
            Ioctl::open(0, Completion::Completed).map_err(unavailable)?,
        )),
        StrategyKind::Uring => Ok(Box::new(
            Uring::open(UringConfig::default()).map_err(unavailable)?,
        )),
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::fixture;

    fn pci(s: &str) -> PciAddress {
        s.parse().unwrap()
    }

    fn device(index: u32, backend: u32, at: Option<&str>) -> ModuleDevice {
        ModuleDevice {
            index,
            backend,
            pci: at.map(pci),
            name: at.map_or_else(|| format!("sim{index}"), str::to_owned),
        }
    }

    /// Two sims, two emulated devices, one amdgpu GPU: what the guests plus one real GPU show.
    fn loaded() -> KmodStatus {
        use crate::uapi::*;
        KmodStatus::Loaded {
            api_major: 1,
            api_minor: 0,
            page_size: 65536,
            uring_cmd: true,
            devices: vec![
                device(0, HDP_FLUSH_BACKEND_AMDGPU, Some("0000:03:00.0")),
                device(1, HDP_FLUSH_BACKEND_PCITEST, Some("0000:00:04.0")),
                device(2, HDP_FLUSH_BACKEND_PCITEST, Some("0000:00:05.0")),
                device(3, HDP_FLUSH_BACKEND_SIM, None),
                device(4, HDP_FLUSH_BACKEND_SIM, None),
            ],
        }
    }

    fn no_kfd() -> KfdStatus {
        KfdStatus::Lacks(
            "/dev/kfd: No such file or directory (amdgpu with KFD is not loaded here)".into(),
        )
    }

    fn absent() -> KmodStatus {
        KmodStatus::Absent {
            reason: "/dev/hdp_flush not found: the hdp_flush kernel module is not loaded".into(),
        }
    }

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("libflush-select-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Three AMD GPUs with KFD nodes; the module serves the first.
    fn three_gpus(root: &Path) {
        fixture::kfd_node(root, 0, 0, pci("0000:00:00.0"));
        for (node, id, at) in [
            (1, 53422, "0000:03:00.0"),
            (2, 21042, "0000:83:00.0"),
            (3, 7777, "0000:c3:00.0"),
        ] {
            fixture::kfd_node(root, node, id, pci(at));
            fixture::pci_function(root, pci(at), 0x1002, 0x740f, 0x038000, Some("amdgpu"));
        }
    }

    fn resolve_and_decide(
        sel: &str,
        root: &Path,
        kmod: &KmodStatus,
        offer: Offer,
    ) -> Result<(ResolvedGpu, Selection)> {
        let gpu = resolve(sel.parse()?, &Sysfs::at(root), kmod, &no_kfd())?;
        let s = decide(&gpu, kmod, 65536, offer, None)?;
        Ok((gpu, s))
    }

    #[test]
    fn a_flush_goes_to_the_module_device_of_that_gpu_and_no_other() {
        let root = scratch("route");
        three_gpus(&root);
        let kmod = loaded();
        for sel in ["0000:03:00.0", "03:00.0", "gpu_id:53422", "index:0"] {
            let (gpu, s) = resolve_and_decide(sel, &root, &kmod, Offer::default()).unwrap();
            assert_eq!(gpu.module.as_ref().map(|d| d.index), Some(0), "{sel}");
            assert_eq!(gpu.pci, Some(pci("0000:03:00.0")), "{sel}");
            assert_eq!(s.kind, StrategyKind::Ioctl, "{sel}");
            assert!(
                s.reason.contains("device 0 (amdgpu backend"),
                "{sel}: {}",
                s.reason
            );
        }
        // An emulated device is served when named, and says what it is.
        let (gpu, s) = resolve_and_decide("0000:00:05.0", &root, &kmod, Offer::default()).unwrap();
        assert_eq!(gpu.module.unwrap().index, 2);
        assert!(
            s.reason.contains("emulated test device, not a GPU"),
            "{}",
            s.reason
        );
        // A simulated device only by index, and labelled.
        let (gpu, s) = resolve_and_decide("index:4", &root, &kmod, Offer::default()).unwrap();
        assert_eq!((gpu.pci, gpu.module.unwrap().index), (None, 4));
        assert!(s.reason.contains("model, no hardware"), "{}", s.reason);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn kfds_flush_ioctl_is_used_exactly_when_the_running_kfd_offers_it() {
        let root = scratch("kfd-flush");
        three_gpus(&root);
        let sysfs = Sysfs::at(&root);
        let kmod = loaded();
        let offers = KfdStatus::Offers { minor: 18 };
        let old = KfdStatus::of_version(crate::kfd_uapi::KfdGetVersionArgs {
            major_version: 1,
            minor_version: 17,
        });
        // Offered: it comes before the module, for the GPU's own gpu_id, however it is named.
        for (sel, id) in [
            ("0000:83:00.0", 21042),
            ("gpu_id:7777", 7777),
            ("index:0", 53422),
        ] {
            let gpu = resolve(sel.parse().unwrap(), &sysfs, &kmod, &offers).unwrap();
            assert_eq!(gpu.kfd_flush, Ok(id), "{sel}");
            let s = decide(&gpu, &kmod, 65536, Offer::default(), None).unwrap();
            assert_eq!(s.kind, StrategyKind::KfdIoctl, "{sel}");
            assert!(s.reason.contains(&format!("gpu_id {id}")), "{}", s.reason);
        }
        // Not offered (KFD 1.17): never assumed; the module serves, and naming it says why.
        let gpu = resolve("0000:03:00.0".parse().unwrap(), &sysfs, &kmod, &old).unwrap();
        let s = decide(&gpu, &kmod, 65536, Offer::default(), None).unwrap();
        assert_eq!(s.kind, StrategyKind::Ioctl);
        let named = Named {
            kind: StrategyKind::KfdIoctl,
            origin: "the caller".into(),
        };
        let err = decide(&gpu, &kmod, 65536, Offer::default(), Some(&named)).unwrap_err();
        assert!(err.to_string().contains("1.17"), "{err}");
        // Neither KFD nor the module: the ENODEV message names the KFD part too.
        let gpu = resolve("0000:83:00.0".parse().unwrap(), &sysfs, &kmod, &old).unwrap();
        let err = decide(&gpu, &kmod, 65536, Offer::default(), None).unwrap_err();
        assert!(err.to_string().contains("no KFD flush ioctl"), "{err}");
        // A GPU KFD does not list has no gpu_id to flush.
        let gpu = resolve("0000:00:05.0".parse().unwrap(), &sysfs, &kmod, &offers).unwrap();
        assert!(gpu.kfd_flush.is_err());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_gpu_the_module_does_not_serve_gets_enodev_naming_what_is_missing() {
        let root = scratch("unserved");
        three_gpus(&root);
        let err =
            resolve_and_decide("gpu_id:21042", &root, &loaded(), Offer::default()).unwrap_err();
        assert_eq!(err.errno(), nix::errno::Errno::ENODEV);
        let msg = err.to_string();
        for needle in [
            "0000:83:00.0",
            "PAGE_SIZE is 65536",
            "does not serve",
            "index 0: amdgpu 0000:03:00.0",
            "no VRAM dummy page",
            "HDPFLUSH_STRATEGY=sim",
        ] {
            assert!(msg.contains(needle), "`{needle}` missing: {msg}");
        }
        // With no module at all, it says so.
        let err =
            resolve_and_decide("0000:83:00.0", &root, &absent(), Offer::default()).unwrap_err();
        assert!(err.to_string().contains("module is not loaded"), "{err}");
        // Unknown gpu_id and index: not found, listing what there is.
        let err = resolve_and_decide("gpu_id:9", &root, &loaded(), Offer::default()).unwrap_err();
        assert!(
            matches!(err, Error::GpuNotFound { .. }) && err.to_string().contains("21042"),
            "{err}"
        );
        let err = resolve_and_decide("index:5", &root, &loaded(), Offer::default()).unwrap_err();
        assert!(err.to_string().contains("serves 5 device(s)"), "{err}");
        let err = resolve_and_decide("index:0", &root, &absent(), Offer::default()).unwrap_err();
        assert!(err.to_string().contains("not loaded"), "{err}");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn the_order_is_remap_page_then_module_then_opted_in_dummy_page() {
        let root = scratch("order");
        three_gpus(&root);
        let kmod = loaded();
        let all = Offer {
            remap: true,
            dummy_page: true,
            allow_dummy_page: true,
            batched: false,
        };
        let kind =
            |sel: &str, offer| resolve_and_decide(sel, &root, &kmod, offer).map(|(_, s)| s.kind);
        assert_eq!(kind("0000:03:00.0", all).unwrap(), StrategyKind::MmioRemap);
        let no_remap = Offer {
            remap: false,
            ..all
        };
        assert_eq!(kind("0000:03:00.0", no_remap).unwrap(), StrategyKind::Ioctl);
        let batched = Offer {
            batched: true,
            ..no_remap
        };
        assert_eq!(kind("0000:03:00.0", batched).unwrap(), StrategyKind::Uring);
        // Not served: the dummy page, only when opted into.
        assert_eq!(
            kind("0000:83:00.0", no_remap).unwrap(),
            StrategyKind::DummyPage
        );
        let not_opted = Offer {
            allow_dummy_page: false,
            ..no_remap
        };
        let err = kind("0000:83:00.0", not_opted).unwrap_err();
        assert!(err.to_string().contains("not opted into"), "{err}");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_named_strategy_is_used_exactly_or_refused_and_sim_only_when_named() {
        let gpu = ResolvedGpu {
            named: GpuSelector::Pci(pci("0000:83:00.0")),
            pci: Some(pci("0000:83:00.0")),
            module: None,
            kfd_flush: Err("no /dev/kfd".into()),
        };
        let named = |kind| Named {
            kind,
            origin: "HDPFLUSH_STRATEGY=x".into(),
        };
        let d = |kind, offer| decide(&gpu, &loaded(), 65536, offer, Some(&named(kind)));
        let s = d(StrategyKind::Sim, Offer::default()).unwrap();
        assert_eq!(s.kind, StrategyKind::Sim);
        assert!(s.reason.contains("no GPU is flushed"), "{}", s.reason);
        for kind in [
            StrategyKind::Ioctl,
            StrategyKind::Uring,
            StrategyKind::MmioRemap,
            StrategyKind::DummyPage,
            StrategyKind::Legacy,
        ] {
            let err = d(kind, Offer::default()).unwrap_err();
            assert!(
                matches!(err, Error::Unavailable { strategy, .. } if strategy == kind),
                "{kind}: {err}"
            );
            assert!(err.to_string().contains("HDPFLUSH_STRATEGY=x"), "{err}");
        }
        let with_page = Offer {
            dummy_page: true,
            ..Offer::default()
        };
        assert_eq!(
            d(StrategyKind::Legacy, with_page).unwrap().kind,
            StrategyKind::Legacy
        );
        // Without anything named, nothing ever picks the simulator.
        let err = decide(&gpu, &absent(), 4096, Offer::default(), None).unwrap_err();
        assert!(matches!(err, Error::NoFlushPath { .. }), "{err}");
        assert!(
            err.to_string().contains("HSA_AMD_AGENT_INFO_HDP_FLUSH"),
            "{err}"
        );
    }

    #[test]
    fn a_64k_host_with_kfd_and_no_module_gets_enodev_from_the_process_wide_choice() {
        // The case that motivated the project: a GPU, KFD, 64K pages, no module.
        let root = scratch("64k");
        fixture::kfd_node(&root, 1, 53422, pci("0000:03:00.0"));
        fixture::pci_function(
            &root,
            pci("0000:03:00.0"),
            0x1002,
            0x740f,
            0x038000,
            Some("amdgpu"),
        );
        let p = probe_with(&Sysfs::at(&root), absent(), 65536, true, no_kfd());
        let err = p.process_wide.clone().unwrap_err();
        assert!(err.contains("no HDP flush for GPU 0000:03:00.0"), "{err}");
        assert!(
            err.contains("PAGE_SIZE is 65536") && err.contains("not loaded"),
            "{err}"
        );
        assert_eq!(p.gpus.len(), 1);
        assert_eq!(p.gpus[0].kfd_gpu_id, Some(53422));
        assert!(p.gpus[0].amd_gpu && p.gpus[0].decision.is_err());
        assert_eq!(p.config_error, None, "nothing misconfigured: just no path");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn several_gpus_need_a_name_for_the_process_wide_flusher() {
        let root = scratch("several");
        three_gpus(&root);
        let err = process_gpu(&Sysfs::at(&root), &loaded()).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("3 AMD GPUs here") && msg.contains(GPU_ENV),
            "{msg}"
        );
        let none = scratch("none");
        let err = process_gpu(&Sysfs::at(&none), &absent()).unwrap_err();
        assert!(err.to_string().contains("no AMD GPU on this host"), "{err}");
        // Emulated devices are not GPUs: a guest with two edu devices has none to pick...
        let mut edu_only = loaded();
        if let KmodStatus::Loaded { devices, .. } = &mut edu_only {
            devices.remove(0);
        }
        let err = process_gpu(&Sysfs::at(&none), &edu_only).unwrap_err();
        assert!(err.to_string().contains("no AMD GPU on this host"), "{err}");
        // ...while a GPU the module serves with its amdgpu backend is one.
        assert_eq!(
            process_gpu(&Sysfs::at(&none), &loaded()).unwrap(),
            GpuSelector::Pci(pci("0000:03:00.0"))
        );
        std::fs::remove_dir_all(&root).unwrap();
        std::fs::remove_dir_all(&none).unwrap();
    }

    #[test]
    fn probe_lists_every_gpu_and_test_device_with_its_decision() {
        let root = scratch("probe");
        three_gpus(&root);
        let p = probe_with(&Sysfs::at(&root), loaded(), 65536, true, no_kfd());
        let rows: Vec<(String, bool, Option<StrategyKind>)> = p
            .gpus
            .iter()
            .map(|g| {
                (
                    g.pci.to_string(),
                    g.amd_gpu,
                    g.decision.as_ref().ok().map(|s| s.kind),
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                ("0000:00:04.0".into(), false, Some(StrategyKind::Ioctl)),
                ("0000:00:05.0".into(), false, Some(StrategyKind::Ioctl)),
                ("0000:03:00.0".into(), true, Some(StrategyKind::Ioctl)),
                ("0000:83:00.0".into(), true, None),
                ("0000:c3:00.0".into(), true, None),
            ]
        );
        assert!(p.process_wide.unwrap_err().contains("3 AMD GPUs here"));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
