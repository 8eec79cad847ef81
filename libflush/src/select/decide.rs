//! The strategy for a resolved GPU: one chain of steps, each of which either can flush the GPU
//! (and says how) or says why not. A named strategy is the chain cut down to its own step.
//! Pure: tested on fixtures.

use serde::Serialize;

use super::host::KmodStatus;
use super::resolve::ResolvedGpu;
use super::STRATEGY_ENV;
use crate::device::ModuleDevice;
use crate::strategy::{BackingKind, StrategyKind};
use crate::{uapi, Error, Result};

/// A strategy chosen for a GPU, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Selection {
    /// The strategy.
    pub kind: StrategyKind,
    /// Why it was chosen.
    pub reason: String,
    /// What it flushes: the GPU's hardware, or a model or emulated device (named only).
    pub backing: BackingKind,
}

/// What the caller offered, as the decision needs it.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Offer {
    pub remap: bool,
    pub dummy_page: bool,
    pub allow_dummy_page: bool,
    pub batched: bool,
    pub require_hardware: bool,
}

/// A strategy named by the caller or by the environment, and which of them it was.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Named {
    pub kind: StrategyKind,
    pub origin: String,
}

impl Named {
    /// Named by the caller (an option or an open flag).
    pub fn by_caller(kind: StrategyKind) -> Self {
        Self {
            kind,
            origin: "the caller".into(),
        }
    }

    /// `HDPFLUSH_STRATEGY`, parsed, if set.
    pub fn by_environment() -> Result<Option<Self>> {
        match std::env::var(STRATEGY_ENV) {
            Ok(v) if !v.trim().is_empty() => Ok(Some(Self {
                kind: StrategyKind::parse(&v, STRATEGY_ENV)?,
                origin: format!("{STRATEGY_ENV}={}", v.trim()),
            })),
            _ => Ok(None),
        }
    }
}

/// A step of the chain that can flush: how, and on what.
struct Step {
    reason: String,
    backing: BackingKind,
}

/// What a module device is, for reasons.
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

/// Everything one decision looks at.
struct Chain<'a> {
    gpu: &'a ResolvedGpu,
    kmod: &'a KmodStatus,
    page_size: usize,
    offer: Offer,
    shown: String,
}

impl Chain<'_> {
    /// Whether `kind` can flush this GPU (`named`: the caller asked for it by name, which opts
    /// into the dummy page), and if not, why.
    fn step(&self, kind: StrategyKind, named: bool) -> std::result::Result<Step, String> {
        let hardware = |reason: String| Step {
            reason,
            backing: BackingKind::Hardware,
        };
        let offer = self.offer;
        match kind {
            StrategyKind::MmioRemap if offer.remap => Ok(hardware(
                "the caller's MMIO remap page: one store (and ROCclr's read-back when completed)"
                    .into(),
            )),
            StrategyKind::MmioRemap if self.page_size == 4096 => Err("no MMIO remap page given (pass the HDP_MEM_FLUSH_CNTL pointer ROCr returns for HSA_AMD_AGENT_INFO_HDP_FLUSH)".into()),
            StrategyKind::MmioRemap => Err(format!(
                "no MMIO remap page (PAGE_SIZE is {}: KFD cannot map it)",
                self.page_size
            )),
            StrategyKind::Ioctl | StrategyKind::Uring => {
                let Some(d) = self.gpu.serving() else {
                    return Err(self
                        .kmod
                        .why_not_serving(&self.shown, self.gpu.module.as_ref()));
                };
                let step = |reason: String| Step {
                    reason,
                    backing: d.backing_kind(),
                };
                match (kind, self.kmod.uring_cmd()) {
                    (StrategyKind::Ioctl, _) => Ok(step(served_by(d))),
                    (_, true) => Ok(step(format!("{}, through io_uring", served_by(d)))),
                    (_, false) => {
                        Err("the loaded hdp_flush module does not serve URING_CMD".into())
                    }
                }
            }
            StrategyKind::DummyPage if offer.dummy_page && (offer.allow_dummy_page || named) => {
                Ok(hardware(if named {
                    "the caller's VRAM page (naming the strategy opts into it)".into()
                } else {
                    "the caller's VRAM page as dummy page (opted in: relies on a BAR read draining the HDP write FIFO)".into()
                }))
            }
            StrategyKind::DummyPage if offer.dummy_page => Err("a VRAM page was given but the dummy page was not opted into (allow_dummy_page / HDPFLUSH_OPEN_ALLOW_DUMMY_PAGE)".into()),
            StrategyKind::Legacy if offer.dummy_page => Ok(hardware(
                "the caller's VRAM page (naming the strategy opts into it)".into(),
            )),
            StrategyKind::DummyPage | StrategyKind::Legacy => Err(format!(
                "no VRAM page of GPU {} was given",
                self.shown
            )),
            StrategyKind::KfdIoctl => match self.gpu.kfd_gpu_id {
                Some(id) => Ok(hardware(format!(
                    "KFD's proposed AMDKFD_IOC_HDP_FLUSH for gpu_id {id} (named: needs a kernel carrying hdpflush's KFD patch, whose KFD reports {}.{}; checked when the flusher is opened)",
                    crate::kfd_uapi::KFD_IOCTL_MAJOR_VERSION,
                    crate::kfd_uapi::KFD_HDP_FLUSH_PATCH_MINOR
                ))),
                None => Err(format!("KFD lists no node for GPU {}", self.shown)),
            },
            StrategyKind::Sim => Ok(Step {
                reason: "the in-process simulator; no GPU is flushed".into(),
                backing: BackingKind::Simulator,
            }),
        }
    }

    /// Refuse a step that does not flush the GPU itself when the caller requires hardware.
    fn hardware_only(&self, step: Step) -> std::result::Result<Step, String> {
        if self.offer.require_hardware && step.backing != BackingKind::Hardware {
            return Err(format!(
                "{}: {}, and the caller requires hardware",
                step.reason,
                step.backing.tag()
            ));
        }
        Ok(step)
    }
}

/// The strategy for `gpu`.
pub(crate) fn decide(
    gpu: &ResolvedGpu,
    kmod: &KmodStatus,
    page_size: usize,
    offer: Offer,
    named: Option<&Named>,
) -> Result<Selection> {
    let chain = Chain {
        gpu,
        kmod,
        page_size,
        offer,
        shown: gpu.to_string(),
    };
    if let Some(Named { kind, origin }) = named {
        return chain
            .step(*kind, true)
            .and_then(|s| chain.hardware_only(s))
            .map(|s| Selection {
                kind: *kind,
                reason: format!("{origin}: {}", s.reason),
                backing: s.backing,
            })
            .map_err(|why| Error::Unavailable {
                strategy: *kind,
                reason: format!("{why} (named by {origin})"),
            });
    }

    let module = if offer.batched {
        StrategyKind::Uring
    } else {
        StrategyKind::Ioctl
    };
    let mut why_not = Vec::new();
    for kind in [StrategyKind::MmioRemap, module, StrategyKind::DummyPage] {
        let step = chain.step(kind, false).and_then(|s| chain.hardware_only(s));
        // A module without URING_CMD still serves the batched caller, one ioctl per flush.
        let (kind, step) = match step {
            Err(why) if kind == StrategyKind::Uring && gpu.serving().is_some() => (
                StrategyKind::Ioctl,
                chain
                    .step(StrategyKind::Ioctl, false)
                    .and_then(|s| chain.hardware_only(s))
                    .map(|s| Step {
                        reason: format!("{}; {why}, so one ioctl per flush", s.reason),
                        ..s
                    }),
            ),
            other => (kind, other),
        };
        match step {
            Ok(s) => {
                return Ok(Selection {
                    kind,
                    reason: s.reason,
                    backing: s.backing,
                })
            }
            Err(why) => why_not.push(why),
        }
    }
    Err(Error::NoFlushPath {
        gpu: chain.shown,
        reason: format!(
            "{}. Load hdp_flush for this GPU (docs/kernel-module.md), or pass a mapping. (kfd-ioctl is a proposed KFD ioctl no upstream kernel has: it is used only when named, on a kernel carrying hdpflush's KFD patch)",
            why_not.join("; ")
        ),
    })
}
