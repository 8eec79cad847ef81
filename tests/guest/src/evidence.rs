//! `hdpflush-guest-tests evidence`: the guest's half of `cargo xtask vm-bench`.
//!
//! Each phase loads the module with its parameters, runs `hdpflush bench` on what the module
//! then serves, and prints the bench JSON, wrapped with the phase's name, parameters and
//! command, to the console between markers ([`BEGIN`], [`LINE`], [`END`]) for xtask to collect.
//! The closing line has the test runner's form, one "test" per phase, so xtask judges the run
//! as it judges the tests.

use std::path::Path;

use serde_json::json;

use crate::{edu_devices, insmod, rmmod, sh};

/// Starts a phase's JSON: `BEGIN name bytes`.
pub const BEGIN: &str = "hdpflush-evidence-begin";
/// Prefixes each line of it.
pub const LINE: &str = "hdpflush-evidence| ";
/// Ends it: `END name`.
pub const END: &str = "hdpflush-evidence-end";

/// One module configuration and the bench run on it.
struct Phase {
    name: &'static str,
    /// What it is for, carried into the JSON.
    purpose: &'static str,
    params: &'static [&'static str],
    /// Bench arguments; `{bar}` is replaced by the first emulated device's resource0.
    args: &'static [&'static str],
}

const PHASES: &[Phase] = &[
    Phase {
        name: "sim",
        purpose: "the module's own cost: sim backend with no modelled delay, beside the \
                  kernel-entry floors of this guest (P1, P2)",
        params: &["sim_devices=1", "sim_delay_ns=0", "pcitest=0"],
        args: &[
            "-s",
            "ioctl,uring",
            "--batch",
            "1,8,32,128",
            "--sqpoll",
            "--reference",
            "-n",
            "100000",
            "--warmup",
            "5000",
        ],
    },
    Phase {
        name: "sim-1us",
        purpose: "coalescing: sim backend with a modelled 1 us round trip, 1-8 callers and \
                  io_uring batches (P3)",
        params: &["sim_devices=1", "sim_delay_ns=1000", "pcitest=0"],
        args: &[
            "-s",
            "ioctl,uring",
            "--threads",
            "1,2,4,8",
            "--batch",
            "1,32",
            "-n",
            "40000",
            "--warmup",
            "2000",
        ],
    },
    Phase {
        name: "emulated",
        purpose: "QEMU's edu device, an emulated PCI device and no GPU: the register flush \
                  through the module, and the remap-page and dummy-page sequences over its \
                  BAR, beside one uncached load and store of that BAR (legacy is left out: \
                  its 1-byte store is an access edu refuses, a SIGBUS on arm64)",
        params: &[],
        args: &[
            "-s",
            "ioctl,uring,mmio-remap,dummy-page",
            "--batch",
            "1,32",
            "--reference",
            "--map",
            "mmio-remap={bar}@0x1000",
            "--map",
            "dummy-page={bar}@0x10000",
            "-n",
            "20000",
            "--warmup",
            "1000",
        ],
    },
];

/// Run every phase; returns the closing verdict's (passed, failed).
pub fn run() -> (usize, usize) {
    let _ = rmmod();
    let (mut passed, mut failed) = (0, 0);
    for phase in PHASES {
        match run_phase(phase) {
            Ok(()) => {
                println!("ok     evidence phase {}", phase.name);
                passed += 1;
            }
            Err(why) => {
                println!("FAILED evidence phase {}: {why}", phase.name);
                failed += 1;
            }
        }
        let _ = rmmod();
    }
    (passed, failed)
}

fn run_phase(phase: &Phase) -> Result<(), String> {
    insmod(phase.params)?;
    let bar = match crate::dev().and_then(|d| edu_devices(&d)) {
        Ok(edu) => edu
            .first()
            .map(|(_, pci)| format!("/sys/bus/pci/devices/{pci}/resource0")),
        Err(_) => None,
    };
    let mut args = vec!["bench".to_owned()];
    for a in phase.args {
        if a.contains("{bar}") {
            let bar = bar.as_deref().ok_or("no emulated device is served")?;
            args.push(a.replace("{bar}", bar));
        } else {
            args.push((*a).to_owned());
        }
    }
    let dir = format!("/tmp/evidence/{}", phase.name);
    args.extend(["--quiet", "--out-dir", &dir].map(String::from));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = sh("/hdpflush", &argv)?;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        println!("  | {line}");
    }
    if !out.status.success() {
        return Err(format!(
            "hdpflush bench: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let report = std::fs::read_to_string(Path::new(&dir).join("bench.json"))
        .map_err(|e| format!("{dir}/bench.json: {e}"))?;
    let report: serde_json::Value = serde_json::from_str(&report).map_err(|e| e.to_string())?;
    let wrapped = json!({
        "phase": phase.name,
        "purpose": phase.purpose.split_whitespace().collect::<Vec<_>>().join(" "),
        "module_params": phase.params,
        "command": format!("hdpflush {}", args.join(" ")),
        "report": report,
    });
    let text = serde_json::to_string_pretty(&wrapped).map_err(|e| e.to_string())?;
    println!("{BEGIN} {} {}", phase.name, text.len());
    for line in text.lines() {
        println!("{LINE}{line}");
    }
    println!("{END} {}", phase.name);
    Ok(())
}
