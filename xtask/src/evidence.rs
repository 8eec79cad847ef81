//! `cargo xtask vm-bench [--boots N] [--seed S] [--no-docs]`: the evidence run. Boots both guests (x86_64
//! with 4K pages, arm64 with 64K pages) in evidence mode N times each (default 5, the guests
//! taking turns), each boot with `hdpflush_seed=K` on its kernel command line so that the guest
//! shuffles its phase and case order differently, collects each phase's bench JSON from the
//! console into target/evidence/<arch>/boot-<k>/, records the provenance (git commit, QEMU,
//! host CPU and kernel, guest kernels, rustc, seeds) in target/evidence/provenance.json,
//! measures this host's floors and stand-ins and libflush's dispatch cost (criterion), then
//! has `hdpflush report --evidence` assemble everything under target/evidence/: evidence.json,
//! tables.md, the plots, and the targets' PASS/FAIL lines. A run of at least the default boots
//! then becomes the docs' evidence: evidence.json and the plots in docs/evidence/, and the
//! generated tables of the docs (`hdpflush report --evidence ... --update-docs docs`), for
//! `git diff` to show and a commit to keep; `--no-docs`, or fewer boots, leaves docs/ alone.

use crate::kernel::Arch;
use crate::run::{cargo, fail, step, workspace_root, StepResult};
use crate::vm::boot_and_judge;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

/// The guest's markers (tests/guest/src/evidence.rs).
const BEGIN: &str = "hdpflush-evidence-begin";
const LINE: &str = "hdpflush-evidence| ";
const END: &str = "hdpflush-evidence-end";

/// An evidence guest that has not powered off by then has hung (a run takes 1-3 minutes).
const GUEST_TIMEOUT_S: u64 = 1200;

/// The evidence guests' vCPUs: as many as the host has cores here (2). More vCPUs than host
/// cores only time-share them (8 were tried: no more coalescing, far noisier tails), so the
/// callers curve shows what 2 CPUs allow; docs/evidence.md says what it needs.
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

/// Boots per guest unless `--boots` says otherwise; fewer give a spread that means little.
const DEFAULT_BOOTS: u32 = 5;

/// What `vm-bench`'s arguments ask for.
#[derive(Debug, PartialEq)]
struct Options {
    boots: u32,
    /// Boot k's seed is `seed + k`.
    seed: Option<u64>,
    /// Leave docs/ alone.
    no_docs: bool,
}

fn options(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        boots: DEFAULT_BOOTS,
        seed: None,
        no_docs: false,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .ok_or_else(|| format!("{name} needs a value"))
                .cloned()
        };
        match a.as_str() {
            "--boots" => {
                let v = value("--boots")?;
                o.boots = v
                    .parse()
                    .ok()
                    .filter(|&n| n >= 1)
                    .ok_or_else(|| format!("--boots {v}: a count of at least 1"))?;
            }
            "--seed" => {
                let v = value("--seed")?;
                o.seed = Some(v.parse().map_err(|_| format!("--seed {v}: a number"))?);
            }
            "--no-docs" => o.no_docs = true,
            other => {
                return Err(format!(
                    "unexpected `{other}`: vm-bench takes --boots N, --seed S and --no-docs"
                ))
            }
        }
    }
    Ok(o)
}

/// One guest boot's record for provenance.json.
struct BootRecord {
    guest: &'static str,
    boot: u32,
    seed: u64,
    kernel: Option<String>,
}

pub fn vm_bench(args: &[String]) -> StepResult {
    let o = options(args).map_err(|e| fail("arguments", e))?;
    if o.boots < DEFAULT_BOOTS {
        eprintln!(
            "xtask: warning: --boots {} is fewer than {DEFAULT_BOOTS}: the spread across boots \
             will say little, and a verdict near its limit may be judged on noise",
            o.boots
        );
    }
    let base = o.seed.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    });
    let out = workspace_root().join("target/evidence");
    let _ = std::fs::remove_dir_all(&out);
    crate::setup::host_tools()?;
    let mut records = Vec::new();
    // The guests take turns, so that a drift of the host over the run reaches both alike.
    for k in 1..=o.boots {
        for arch in GUESTS {
            let seed = base.wrapping_add(u64::from(k));
            let dir = out.join(arch.name()).join(format!("boot-{k}"));
            let kernel = guest_phases(arch, &dir, k, o.boots, seed)?;
            records.push(BootRecord {
                guest: arch.name(),
                boot: k,
                seed,
                kernel,
            });
        }
    }
    create_dir(&out)?;
    write(
        &out.join("provenance.json"),
        &provenance(o.boots, &records).to_string(),
    )?;
    host_phase(&out.join("host"), base)?;
    dispatch(&out.join("host"))?;
    let mut report = Command::new(workspace_root().join("target/release/hdpflush"));
    report.arg("report").arg("--evidence").arg(&out);
    step("evidence report", report)?;
    eprintln!("==> vm-bench: results in {}", out.display());
    if o.no_docs {
        return Ok(());
    }
    if o.boots < DEFAULT_BOOTS {
        eprintln!(
            "==> vm-bench: docs/ left as they are ({} boots, fewer than {DEFAULT_BOOTS}); to make \
             this run the docs' evidence anyway: cp {}/evidence.json docs/evidence/ && \
             target/release/hdpflush report --evidence docs/evidence/evidence.json --update-docs docs",
            o.boots,
            out.display()
        );
        return Ok(());
    }
    update_docs(&out)
}

/// Make the run in `out` the docs' evidence: its evidence.json in docs/evidence/, and the docs'
/// generated tables and plots from it.
fn update_docs(out: &Path) -> StepResult {
    let docs = workspace_root().join("docs");
    let json = docs.join("evidence/evidence.json");
    std::fs::copy(out.join("evidence.json"), &json)
        .map_err(|e| fail("vm-bench", format!("{}: {e}", json.display())))?;
    let mut update = Command::new(workspace_root().join("target/release/hdpflush"));
    update
        .arg("report")
        .arg("--evidence")
        .arg(&json)
        .arg("--update-docs")
        .arg(&docs);
    step("docs update", update)?;
    eprintln!(
        "==> vm-bench: docs/evidence/ and the docs' tables now hold this run (`git diff docs` \
         shows it; --no-docs leaves docs/ alone)"
    );
    Ok(())
}

fn create_dir(dir: &Path) -> StepResult {
    std::fs::create_dir_all(dir).map_err(|e| fail("vm-bench", format!("{}: {e}", dir.display())))
}

fn write(path: &Path, text: &str) -> StepResult {
    std::fs::write(path, text).map_err(|e| fail("vm-bench", format!("{}: {e}", path.display())))
}

/// Boot `arch`'s guest in evidence mode (boot `k` of `boots`, shuffled with `seed`) and save
/// each phase's JSON in `dir`; returns the kernel release the guest printed.
fn guest_phases(
    arch: Arch,
    dir: &Path,
    k: u32,
    boots: u32,
    seed: u64,
) -> StepResult<Option<String>> {
    let name = format!("vm-bench {} boot {k}/{boots} (seed {seed})", arch.name());
    let booted = boot_and_judge(
        arch,
        &name,
        &format!("hdpflush_evidence hdpflush_seed={seed}"),
        EVIDENCE_CPUS,
        GUEST_TIMEOUT_S,
        &format!("evidence-console-boot-{k}.log"),
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
    Ok(guest_kernel(&booted.run.lines))
}

/// The release from the guest init's `guest: booted <release> <arch>` line (on x86_64 it
/// shares its line with the firmware's terminal escapes, "Booting from ROM..\x1bc...").
fn guest_kernel(lines: &[String]) -> Option<String> {
    lines.iter().find_map(|l| {
        let (_, rest) = l.split_once("guest: booted ")?;
        rest.split_whitespace().next().map(str::to_owned)
    })
}

/// The CPU model in /proc/cpuinfo's text: x86's `model name`, else arm64's `CPU part` and
/// `CPU implementer` (it has no name there).
fn cpu_model(cpuinfo: &str) -> Option<String> {
    let field = |key: &str| {
        cpuinfo.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == key).then(|| v.trim().to_owned())
        })
    };
    field("model name").or_else(|| {
        Some(format!(
            "implementer {} part {}",
            field("CPU implementer")?,
            field("CPU part")?
        ))
    })
}

/// The first line `program args` prints, or why it printed none.
fn first_line(program: &str, args: &[&str]) -> String {
    match Command::new(program).args(args).output() {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned(),
        Ok(o) => format!("`{program}` failed: {}", o.status),
        Err(e) => format!("`{program}` not run: {e}"),
    }
}

/// provenance.json: what `hdpflush report --evidence` puts into evidence.json as
/// `provenance` (its `Provenance` type).
fn provenance(boots: u32, records: &[BootRecord]) -> serde_json::Value {
    let root = workspace_root();
    let root = root.to_string_lossy();
    let dirty = Command::new("git")
        .args(["-C", &root, "status", "--porcelain"])
        .output()
        .map(|o| !o.stdout.is_empty())
        .unwrap_or(true);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| cpu_model(&c))
        .unwrap_or_else(|| "unknown".to_owned());
    serde_json::json!({
        "git_commit": first_line("git", &["-C", &root, "rev-parse", "HEAD"]),
        "git_dirty": dirty,
        "qemu": [
            format!("qemu-system-x86_64: {}", first_line("qemu-system-x86_64", &["--version"])),
            format!("qemu-system-aarch64: {}", first_line("qemu-system-aarch64", &["--version"])),
        ],
        "host_cpu": cpu,
        "host_kernel": first_line("uname", &["-r"]),
        "rustc": [
            format!("{} (host: hdpflush and the guests' user space)", first_line("rustc", &["--version"])),
            format!("{} (/usr/bin/rustc: both guest kernels and the module)", first_line("/usr/bin/rustc", &["--version"])),
        ],
        "boots": boots,
        "guest_boots": records.iter().map(|r| serde_json::json!({
            "guest": r.guest,
            "boot": r.boot,
            "seed": r.seed,
            "kernel": r.kernel,
        })).collect::<Vec<_>>(),
    })
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

/// This host: stand-ins, the simulator and the kernel-entry floors, their order shuffled with
/// `seed`.
fn host_phase(dir: &Path, seed: u64) -> StepResult {
    let mut build = cargo();
    build.args(["build", "--release", "--locked", "-p", "hdpflush"]);
    step("hdpflush (release)", build)?;
    create_dir(dir)?;
    let raw = dir.join("bench-raw");
    let mut bench = Command::new(workspace_root().join("target/release/hdpflush"));
    let shuffle = ["--shuffle".to_owned(), seed.to_string()];
    bench
        .args(HOST_BENCH)
        .args(&shuffle)
        .arg("--out-dir")
        .arg(&raw);
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
        "command": format!("hdpflush {} {}", HOST_BENCH.join(" "), shuffle.join(" ")),
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

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn boots_default_to_five_and_take_a_count_and_a_seed() {
        assert_eq!(
            options(&[]).unwrap(),
            Options {
                boots: 5,
                seed: None,
                no_docs: false,
            }
        );
        assert_eq!(
            options(&args(&["--boots", "2", "--seed", "40", "--no-docs"])).unwrap(),
            Options {
                boots: 2,
                seed: Some(40),
                no_docs: true,
            }
        );
        for bad in [
            &["--boots", "0"][..],
            &["--boots"],
            &["--seed", "x"],
            &["--fast"],
        ] {
            assert!(options(&args(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn provenance_reads_the_guest_kernel_and_the_cpu_model() {
        let console = lines("[    0.5] random: crng init done\nguest: booted 6.12.117 aarch64\nguest: 4 passed, 0 failed");
        assert_eq!(guest_kernel(&console).as_deref(), Some("6.12.117"));
        let seabios = lines("Booting from ROM..\x1bc\x1b[?7l\x1b[2Jguest: booted 6.12.118 x86_64");
        assert_eq!(guest_kernel(&seabios).as_deref(), Some("6.12.118"));
        assert_eq!(guest_kernel(&lines("guest: 4 passed, 0 failed")), None);
        let x86 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13 64-Core Processor\n";
        assert_eq!(
            cpu_model(x86).as_deref(),
            Some("AMD EPYC 7B13 64-Core Processor")
        );
        let arm = "processor\t: 0\nCPU implementer\t: 0x41\nCPU part\t: 0xd0c\n";
        assert_eq!(
            cpu_model(arm).as_deref(),
            Some("implementer 0x41 part 0xd0c")
        );
        assert_eq!(cpu_model("processor : 0\n"), None);
        let p = provenance(
            1,
            &[BootRecord {
                guest: "x86_64",
                boot: 1,
                seed: 9,
                kernel: Some("6.12.117".into()),
            }],
        );
        assert_eq!(p["boots"], 1);
        assert_eq!(p["guest_boots"][0]["seed"], 9);
        assert_eq!(p["qemu"].as_array().map(Vec::len), Some(2));
        assert!(p["git_commit"].as_str().is_some_and(|c| !c.is_empty()));
    }

    #[test]
    fn ratio_lines_come_from_a_phases_ratios() {
        let phase = r#"{"phase": "gpus", "ratios": [{"what": "a / b", "ratio": 0.25}]}"#;
        assert_eq!(ratio_lines(phase), vec!["a / b: 0.25x".to_owned()]);
        assert!(ratio_lines(r#"{"phase": "sim"}"#).is_empty());
    }
}
