//! `hdpflush probe`: what this host offers, every GPU found and the strategy libflush would
//! use for it, and the process-wide choice.

use libflush::kfd_uapi::{KFD_HDP_FLUSH_PATCH_MINOR, KFD_IOCTL_MAJOR_VERSION};
use libflush::measure::{availability_all, Availability};
use libflush::select::{KmodStatus, GPU_ENV, STRATEGY_ENV};
use libflush::strategy::KfdStatus;
use libflush::{Probe, StrategyKind};
use serde::Serialize;

use crate::error::CliError;

/// The probe and what `hdpflush bench` can measure here, as `--json` prints them.
#[derive(Serialize)]
struct Report {
    #[serde(flatten)]
    probe: Probe,
    /// Every strategy in [`StrategyKind::ALL`] order.
    strategies: Vec<(StrategyKind, Availability)>,
}

/// Print the probe; exit non-zero only for a setting that can never work (an unknown
/// `HDPFLUSH_STRATEGY`, a malformed `HDPFLUSH_GPU`, a named strategy that cannot flush). A
/// host with no GPU is reported, not an error.
pub fn run(json: bool) -> Result<(), CliError> {
    let probe = libflush::probe();
    let strategies = availability_all(&probe.kmod, probe.page_size, probe.kfd);
    let report = Report { probe, strategies };
    if json {
        let text = serde_json::to_string_pretty(&report).map_err(|source| CliError::Json {
            path: "<stdout>".into(),
            source,
        })?;
        crate::stdout::emit(&(text + "\n"))?;
    } else {
        crate::stdout::emit(&render(&report))?;
    }
    match report.probe.config_error {
        None => Ok(()),
        Some(reason) => Err(CliError::Selection(reason)),
    }
}

fn render(report: &Report) -> String {
    let p = &report.probe;
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    line(format!("page size        {} bytes", p.page_size));
    line(format!(
        "/dev/kfd         {}",
        if p.kfd { "present" } else { "absent" }
    ));
    line(match &p.kfd_version {
        status @ KfdStatus::Present { major, minor } => match status.named_flush() {
            Ok(()) => format!(
                "KFD              {major}.{minor} (the version hdpflush's KFD patch sets: kfd-ioctl, its proposed flush ioctl, is called here when named, never chosen)"
            ),
            Err(_) => format!(
                "KFD              {major}.{minor} (kfd-ioctl, the proposed flush ioctl of hdpflush's KFD patch, is called only when named, and only on KFD {KFD_IOCTL_MAJOR_VERSION}.{KFD_HDP_FLUSH_PATCH_MINOR})"
            ),
        },
        KfdStatus::Absent(why) => format!("KFD              not usable: {why}"),
    });
    match &p.kmod {
        KmodStatus::Loaded {
            api_major,
            api_minor,
            page_size,
            uring_cmd,
            whole,
            devices,
        } => {
            line(format!(
                "hdp_flush module loaded, uAPI {api_major}.{api_minor}, {} device(s){}, kernel PAGE_SIZE {page_size}, io_uring {}",
                devices.len(),
                if *whole { "" } else { " whose own nodes this process may open (not the administrators' /dev/hdp_flush/all)" },
                if *uring_cmd { "yes" } else { "no" }
            ));
            for d in devices {
                line(format!("  {}", d.describe()));
            }
        }
        KmodStatus::Absent { reason } => line(format!("hdp_flush module not usable: {reason}")),
    }
    for (name, value) in [(STRATEGY_ENV, &p.strategy_env), (GPU_ENV, &p.gpu_env)] {
        if let Some(v) = value {
            line(format!("{name}  {v}"));
        }
    }
    line(String::new());
    if p.gpus.is_empty() {
        line("GPUs: none found (no KFD GPU node, no AMD display or accelerator PCI function, nothing the module serves)".into());
    } else {
        line(
            "GPUs (what a runtime gets for each, with no remap page or dummy page passed):".into(),
        );
    }
    for g in &p.gpus {
        let mut what = vec![if g.amd_gpu {
            "AMD GPU".to_owned()
        } else {
            "not a GPU: a device the module serves for testing, used only when named".to_owned()
        }];
        match &g.kfd_nodes[..] {
            [] => {}
            [one] => what.push(format!("KFD gpu_id {}", one.gpu_id)),
            several => {
                let ids: Vec<String> = several.iter().map(|n| n.gpu_id.to_string()).collect();
                what.push(format!(
                    "{} partitions, KFD gpu_id {}",
                    several.len(),
                    ids.join(" ")
                ));
            }
        }
        if let Some(d) = &g.module {
            what.push(format!("module {}", d.describe()));
        }
        line(format!("  {}  {}", g.pci, what.join(", ")));
        match &g.decision {
            Ok(sel) => line(format!("    -> {} ({})", sel.kind, sel.reason)),
            Err(reason) => line(format!("    -> none: {reason}")),
        }
    }
    line(String::new());
    line("bench can measure:".into());
    for (kind, availability) in &report.strategies {
        let (status, detail) = match availability {
            Availability::Ready { backing } => ("ready", backing.to_string()),
            Availability::StandIn { reason } => ("stand-in only", reason.clone()),
            Availability::Unavailable { reason } => ("unavailable", reason.clone()),
        };
        line(format!("  {:<11} {:<14} {}", kind.name(), status, detail));
    }
    line(String::new());
    match &p.process_wide {
        Ok(sel) => line(format!("process-wide: {} ({})", sel.kind, sel.reason)),
        Err(reason) => line(format!("process-wide: none ({reason})")),
    }
    out
}
