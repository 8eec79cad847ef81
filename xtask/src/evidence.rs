//! `cargo xtask vm-bench`: the evidence run. Boots both guests (x86_64 with 4K pages, arm64
//! with 64K pages) in evidence mode, collects each phase's bench JSON from the console,
//! measures this host's floors and stand-ins and libflush's dispatch cost (criterion), then
//! has `hdpflush report --evidence` assemble everything under target/evidence/: evidence.json,
//! tables.md, the plots, and the targets' PASS/FAIL lines. Nothing is committed: copying a run
//! into docs/evidence/ is a deliberate step (`hdpflush report --evidence ... --update-docs`).

use crate::kernel::Arch;
use crate::run::{cargo, fail, step, workspace_root, StepResult};
use crate::vm::boot_and_judge;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The guest's markers (tests/guest/src/evidence.rs).
const BEGIN: &str = "hdpflush-evidence-begin";
const LINE: &str = "hdpflush-evidence| ";
const END: &str = "hdpflush-evidence-end";

/// An evidence guest that has not powered off by then has hung (a run takes 1-3 minutes).
const GUEST_TIMEOUT_S: u64 = 1200;

/// The evidence guests' vCPUs: as many as the host has cores here (2). More vCPUs than host
/// cores only time-share them (8 were tried: no more coalescing, far noisier tails), so the
/// callers curve shows what 2 CPUs allow; docs/patch-evidence.md says what it needs.
const EVIDENCE_CPUS: u32 = 2;

/// The guests measured: 4K and 64K pages.
const GUESTS: [Arch; 2] = [Arch::X86_64, Arch::Arm64];

/// What the host contributes: the mapping strategies on stand-in memory, the in-process
/// simulator, and this kernel's entry floors.
const HOST_BENCH: &[&str] = &[
    "bench",
    "-s",
    "sim,mmio-remap,legacy,dummy-page",
    "--reference",
    "--batch",
    "1,8,32,128",
    "-n",
    "200000",
    "--quiet",
];

pub fn vm_bench(args: &[String]) -> StepResult {
    if !args.is_empty() {
        return Err(fail(
            "arguments",
            format!("unexpected {args:?}: vm-bench takes no arguments"),
        ));
    }
    let out = workspace_root().join("target/evidence");
    let _ = std::fs::remove_dir_all(&out);
    crate::setup::host_tools()?;
    for arch in GUESTS {
        guest_phases(arch, &out.join(arch.name()))?;
    }
    host_phase(&out.join("host"))?;
    dispatch(&out.join("host"))?;
    let mut report = Command::new(workspace_root().join("target/release/hdpflush"));
    report.arg("report").arg("--evidence").arg(&out);
    step("evidence report", report)?;
    eprintln!("==> vm-bench: results in {}", out.display());
    Ok(())
}

fn create_dir(dir: &Path) -> StepResult {
    std::fs::create_dir_all(dir).map_err(|e| fail("vm-bench", format!("{}: {e}", dir.display())))
}

fn write(path: &Path, text: &str) -> StepResult {
    std::fs::write(path, text).map_err(|e| fail("vm-bench", format!("{}: {e}", path.display())))
}

/// Boot `arch`'s guest in evidence mode and save each phase's JSON in `dir`.
fn guest_phases(arch: Arch, dir: &Path) -> StepResult {
    let name = format!("vm-bench {}", arch.name());
    let booted = boot_and_judge(
        arch,
        &name,
        "hdpflush_evidence",
        EVIDENCE_CPUS,
        GUEST_TIMEOUT_S,
        "evidence-console.log",
    )?;
    let phases = blocks(&booted.run.lines).map_err(|e| {
        fail(
            &name,
            format!(
                "{e} (the guest console is saved in {})",
                booted.log.display()
            ),
        )
    })?;
    create_dir(dir)?;
    for (phase, text) in &phases {
        write(&dir.join(format!("{phase}.json")), text)?;
    }
    eprintln!(
        "==> {name}: ok, {} phases in {:.1} s",
        phases.len(),
        booted.run.secs
    );
    for line in phases.iter().flat_map(|(_, text)| ratio_lines(text)) {
        eprintln!("    {line}");
    }
    Ok(())
}

/// The ratios a phase the guest measured itself states (tests/guest/src/evidence.rs, phase
/// `gpus`), one line each; none for other phases.
fn ratio_lines(phase: &str) -> Vec<String> {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(phase) else {
        return Vec::new();
    };
    v["ratios"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| {
            Some(format!(
                "{}: {:.2}x",
                r["what"].as_str()?,
                r["ratio"].as_f64()?
            ))
        })
        .collect()
}

/// The JSON blocks between the guest's markers, each checked against its announced length (a
/// kernel message printed into the middle of one would change it).
fn blocks(lines: &[String]) -> Result<Vec<(String, String)>, String> {
    let mut found = Vec::new();
    let mut open: Option<(String, usize, Vec<&str>)> = None;
    for line in lines {
        if let Some(rest) = line.strip_prefix(BEGIN) {
            let mut words = rest.split_whitespace();
            let (Some(name), Some(len)) = (words.next(), words.next()) else {
                return Err(format!("bad evidence marker `{line}`"));
            };
            let len = len
                .parse()
                .map_err(|_| format!("bad evidence marker `{line}`"))?;
            open = Some((name.to_owned(), len, Vec::new()));
        } else if let Some(rest) = line.strip_prefix(LINE) {
            match open.as_mut() {
                Some((_, _, body)) => body.push(rest),
                None => return Err(format!("evidence line outside a block: `{line}`")),
            }
        } else if let Some(rest) = line.strip_prefix(END) {
            let Some((name, len, body)) = open.take() else {
                return Err(format!("evidence end without a beginning: `{line}`"));
            };
            if rest.trim() != name {
                return Err(format!("evidence block {name} ended as `{}`", rest.trim()));
            }
            let text = body.join("\n");
            if text.len() != len {
                return Err(format!(
                    "evidence block {name} arrived garbled ({} bytes, {len} announced): a \
                     console message in the middle of it?",
                    text.len()
                ));
            }
            found.push((name, text));
        }
    }
    if let Some((name, ..)) = open {
        return Err(format!("evidence block {name} never ended"));
    }
    if found.is_empty() {
        return Err("the guest printed no evidence".into());
    }
    Ok(found)
}

/// This host: stand-ins, the simulator and the kernel-entry floors.
fn host_phase(dir: &Path) -> StepResult {
    let mut build = cargo();
    build.args(["build", "--release", "--locked", "-p", "hdpflush"]);
    step("hdpflush (release)", build)?;
    create_dir(dir)?;
    let raw = dir.join("bench-raw");
    let mut bench = Command::new(workspace_root().join("target/release/hdpflush"));
    bench.args(HOST_BENCH).arg("--out-dir").arg(&raw);
    step("host bench", bench)?;
    let report = std::fs::read_to_string(raw.join("bench.json"))
        .map_err(|e| fail("host bench", format!("{}/bench.json: {e}", raw.display())))?;
    let report: serde_json::Value =
        serde_json::from_str(&report).map_err(|e| fail("host bench", e.to_string()))?;
    let wrapped = serde_json::json!({
        "phase": "host",
        "purpose": "this host with no module: the mapping strategies' CPU side on stand-in \
                    memory, the in-process simulator, and the host kernel's entry floors \
                    (the cost model's inputs)",
        "module_params": [],
        "command": format!("hdpflush {}", HOST_BENCH.join(" ")),
        "report": report,
    });
    let text =
        serde_json::to_string_pretty(&wrapped).map_err(|e| fail("host bench", e.to_string()))?;
    write(&dir.join("host.json"), &text)
}

/// libflush's dispatch cost (target P5), measured by criterion; its estimates are copied.
fn dispatch(dir: &Path) -> StepResult {
    let mut bench = cargo();
    bench.args(["bench", "--locked", "--bench", "flush", "--", "dispatch"]);
    step("criterion dispatch", bench)?;
    let criterion = workspace_root().join("target/criterion/dispatch");
    for (from, to) in [("direct", "direct"), ("dyn Flush", "dyn")] {
        let src: PathBuf = criterion.join(from).join("new/estimates.json");
        let dst = dir.join(format!("dispatch-{to}.json"));
        std::fs::copy(&src, &dst).map_err(|e| {
            fail(
                "criterion dispatch",
                format!("{} -> {}: {e}", src.display(), dst.display()),
            )
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(String::from).collect()
    }

    #[test]
    fn blocks_are_collected_and_checked_against_their_length() {
        let good = lines(&format!(
            "boot\n{BEGIN} sim 7\n{LINE}{{\nkernel: a line of its own\n{LINE}  1\n{LINE}}}\n{END} sim\nguest: 1 passed, 0 failed"
        ));
        assert_eq!(
            blocks(&good).unwrap(),
            vec![("sim".into(), "{\n  1\n}".into())]
        );
        let garbled = lines(&format!(
            "{BEGIN} sim 7\n{LINE}{{\n{LINE}  [  3.1] kernel: cut in\n1\n{LINE}}}\n{END} sim"
        ));
        assert!(blocks(&garbled).unwrap_err().contains("garbled"));
        let unended = lines(&format!("{BEGIN} sim 2\n{LINE}{{}}"));
        assert!(blocks(&unended).unwrap_err().contains("never ended"));
        assert!(blocks(&lines("guest: 0 passed, 0 failed"))
            .unwrap_err()
            .contains("no evidence"));
    }

    #[test]
    fn ratio_lines_come_from_a_phases_ratios() {
        let phase = r#"{"phase": "gpus", "ratios": [{"what": "a / b", "ratio": 0.25}]}"#;
        assert_eq!(ratio_lines(phase), vec!["a / b: 0.25x".to_owned()]);
        assert!(ratio_lines(r#"{"phase": "sim"}"#).is_empty());
    }
}
