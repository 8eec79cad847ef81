//! `hdpflush probe`: what this host offers and why the selected strategy was chosen.

use libflush::select::{Availability, KmodStatus, Probe};

use crate::error::CliError;

pub fn run(json: bool) -> Result<(), CliError> {
    let probe = libflush::probe();
    if json {
        let text = serde_json::to_string_pretty(&probe).map_err(|source| CliError::Json {
            path: "<stdout>".into(),
            source,
        })?;
        crate::emit(&(text + "\n"))?;
    } else {
        crate::emit(&render(&probe))?;
    }
    match probe.selected {
        Ok(_) => Ok(()),
        Err(reason) => Err(CliError::Selection(reason)),
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
    match &p.kmod {
        KmodStatus::Loaded {
            api_major,
            api_minor,
            num_devices,
            page_size,
            uring_cmd,
        } => line(format!(
            "hdp_flush module loaded, uAPI {api_major}.{api_minor}, {num_devices} device(s), kernel PAGE_SIZE {page_size}, io_uring {}",
            if *uring_cmd { "yes" } else { "no" }
        )),
        KmodStatus::Absent { reason } => line(format!("hdp_flush module not usable: {reason}")),
    }
    if let Some(v) = &p.override_env {
        line(format!("{}  {v}", libflush::select::STRATEGY_ENV));
    }
    line(String::new());
    line("strategies:".into());
    for (kind, availability) in &p.strategies {
        let (status, detail) = match availability {
            Availability::Ready { backing } => ("ready", backing.to_string()),
            Availability::StandIn { reason } => ("stand-in only", reason.clone()),
            Availability::Unavailable { reason } => ("unavailable", reason.clone()),
        };
        line(format!("  {:<11} {:<14} {}", kind.name(), status, detail));
    }
    line(String::new());
    match &p.selected {
        Ok(sel) => line(format!("selected: {} ({})", sel.kind, sel.reason)),
        Err(reason) => line(format!("selected: none ({reason})")),
    }
    out
}
