//! `hdpflush probe`: what this host offers, every GPU found and the strategy libflush would
//! use for it, and the process-wide choice.

use libflush::select::{Availability, KmodStatus, Probe, GPU_ENV, STRATEGY_ENV};
use libflush::strategy::KfdStatus;

use crate::error::CliError;

/// Print the probe; exit non-zero only for a setting that can never work (an unknown
/// `HDPFLUSH_STRATEGY`, a malformed `HDPFLUSH_GPU`, a named strategy that cannot flush). A
/// host with no GPU is reported, not an error.
pub fn run(json: bool) -> Result<(), CliError> {
    let probe = libflush::probe();
    if json {
        let text = serde_json::to_string_pretty(&probe).map_err(|source| CliError::Json {
            path: "<stdout>".into(),
            source,
        })?;
        crate::stdout::emit(&(text + "\n"))?;
    } else {
        crate::stdout::emit(&render(&probe))?;
    }
    match probe.config_error {
        None => Ok(()),
        Some(reason) => Err(CliError::Selection(reason)),
    }
}

fn render(p: &Probe) -> String {
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
    line(match &p.kfd_flush {
        KfdStatus::Offers { minor } => {
            format!("KFD HDP flush    offered (KFD 1.{minor} has AMDKFD_IOC_HDP_FLUSH)")
        }
        KfdStatus::Lacks(why) => format!("KFD HDP flush    not offered: {why}"),
    });
    match &p.kmod {
        KmodStatus::Loaded {
            api_major,
            api_minor,
            page_size,
            uring_cmd,
            devices,
        } => {
            line(format!(
                "hdp_flush module loaded, uAPI {api_major}.{api_minor}, {} device(s), kernel PAGE_SIZE {page_size}, io_uring {}",
                devices.len(),
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
        if let Some(id) = g.kfd_gpu_id {
            what.push(format!("KFD gpu_id {id}"));
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
    for (kind, availability) in &p.strategies {
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
