//! Guest tests: static guest binaries, an initramfs, a time-bounded QEMU boot, a verdict.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::kernel::{build_kmod, ensure_kernel, Arch, Variant};
use crate::reports::KERNEL_REPORTS;
use crate::run::{cargo, fail, step, workspace_root, StepResult};
use crate::setup;

/// A guest that has not powered off by then has hung. The debug kernel is far slower (KASAN
/// and lockdep make each module load take seconds; the whole run took 254 s on a 2-core host).
fn default_timeout_s(arch: Arch) -> u64 {
    if arch.is_debug() {
        1200
    } else {
        300
    }
}
/// QEMU `edu` devices per guest: two, so per-GPU routing is tested (the guest tests expect
/// this many).
const EDU_DEVICES: usize = 2;

/// The test guests' vCPUs (the host has 2 cores).
const TEST_CPUS: u32 = 2;

/// Both modules a guest gets: the tests load the test variant, and check the production one
/// has no test code and serves what it should.
pub(crate) struct Modules {
    pub(crate) test: PathBuf,
    pub(crate) production: PathBuf,
}

/// What goes into a guest besides the module.
struct GuestBinaries {
    tests: PathBuf,
    cli: PathBuf,
    c_program: PathBuf,
    /// x86_64 guests: a 32-bit program for the compat ioctl path.
    compat32: Option<PathBuf>,
}

/// `cargo` for `arch`'s static guest binaries.
pub(crate) fn guest_cargo(arch: Arch, target_dir: &Path) -> StepResult<Command> {
    let mut cmd = cargo();
    cmd.env("CARGO_TARGET_DIR", target_dir)
        .env("RUSTFLAGS", "-C target-feature=+crt-static");
    if arch.is_arm64() {
        // rustup has no arm64 std here; Debian's rustc and arm64 std (same pin as the
        // kernel's) build it, linked by the cross gcc.
        setup::arm64_cross()?;
        cmd.env("RUSTC", "/usr/bin/rustc").env(
            "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER",
            "aarch64-linux-gnu-gcc",
        );
    }
    Ok(cmd)
}

/// Static guest binaries for `arch`: the tests, the CLI, and the C program linked with
/// libhdpflush.a built for the guest.
fn guest_binaries(arch: Arch) -> StepResult<GuestBinaries> {
    // One build per Rust target: the debug guest runs the x86_64 binaries.
    let target_dir = workspace_root().join(format!("target/guest-{}", arch.rust_target()));
    let triple = arch.rust_target();
    let mut cmd = guest_cargo(arch, &target_dir)?;
    cmd.args(["build", "--release", "--locked", "--target", triple])
        .args(["-p", "hdpflush-guest", "-p", "hdpflush"]);
    step(&format!("guest binaries {}", arch.name()), cmd)?;
    // A static build has no shared library: ask for the archive alone.
    let mut cmd = guest_cargo(arch, &target_dir)?;
    cmd.args(["rustc", "--release", "--locked", "--target", triple])
        .args(["-p", "libflush-capi", "--lib", "--crate-type", "staticlib"]);
    step(&format!("libhdpflush.a {}", arch.name()), cmd)?;
    let out = target_dir.join(triple).join("release");
    let c_program = out.join("flush_gpus");
    let cc = if arch.is_arm64() {
        "aarch64-linux-gnu-gcc"
    } else {
        "cc"
    };
    let mut cmd = crate::install::c_program(cc, &c_program);
    cmd.arg("-static")
        .arg("-I")
        .arg(workspace_root().join("libflush-capi/include"))
        .arg(out.join("libhdpflush.a"))
        .args(["-lpthread", "-ldl", "-lm"]);
    crate::run::output(&format!("C program {}", arch.name()), cmd)?;
    let compat32 = if arch.is_arm64() {
        None
    } else {
        Some(compat32(&out)?)
    };
    Ok(GuestBinaries {
        tests: out.join("hdpflush-guest-tests"),
        cli: out.join("hdpflush"),
        c_program,
        compat32,
    })
}

/// tests/guest/c/compat32.c, built as a static 32-bit x86 program into `out`.
fn compat32(out: &Path) -> StepResult<PathBuf> {
    let exe = out.join("compat32");
    let root = workspace_root();
    let mut cmd = Command::new("gcc");
    // The kernel's uapi `asm/` headers live in the 64-bit multiarch directory (they serve both
    // sizes); gcc-multilib's /usr/include/asm link would point there, but that package and the
    // arm64 cross compiler exclude each other.
    cmd.args(["-m32", "-static", "-std=c11", "-D_DEFAULT_SOURCE"])
        .args(["-idirafter", "/usr/include/x86_64-linux-gnu"])
        .args(["-Wall", "-Wextra", "-Werror", "-I"])
        .arg(root.join("kmod/include"))
        .arg(root.join("tests/guest/c/compat32.c"))
        .arg("-o")
        .arg(&exe);
    crate::run::output("32-bit C program (compat ioctl)", cmd)?;
    Ok(exe)
}

fn copy(from: &Path, to: &Path) -> StepResult {
    std::fs::copy(from, to).map(drop).map_err(|e| {
        fail(
            "initramfs",
            format!("{} -> {}: {e}", from.display(), to.display()),
        )
    })
}

/// Pack busybox, /init, the module and the binaries into a gzipped newc cpio.
fn initramfs(arch: Arch, kos: &Modules, bins: &GuestBinaries) -> StepResult<PathBuf> {
    let dir = workspace_root().join("target/vm").join(arch.name());
    pack_initramfs(arch, &dir, &guest_files(kos, bins))
}

/// What every test guest carries, with its name in the initramfs: both modules, the tests,
/// the CLI, the C program, and on x86_64 the 32-bit program.
fn guest_files<'a>(kos: &'a Modules, bins: &'a GuestBinaries) -> Vec<(&'a Path, &'static str)> {
    let mut files: Vec<(&Path, &str)> = vec![
        (&kos.test, Variant::Test.guest_name()),
        (&kos.production, Variant::Production.guest_name()),
        (&bins.tests, "hdpflush-guest-tests"),
        (&bins.cli, "hdpflush"),
        (&bins.c_program, "flush_gpus"),
    ];
    if let Some(compat32) = &bins.compat32 {
        files.push((compat32, "compat32"));
    }
    files
}

/// Pack busybox, tests/guest/init.sh as /init and `files` (source, name in /) into
/// `dir`/initramfs.cpio.gz.
pub(crate) fn pack_initramfs(
    arch: Arch,
    dir: &Path,
    files: &[(&Path, &str)],
) -> StepResult<PathBuf> {
    let root = dir.join("root");
    let _ = std::fs::remove_dir_all(&root);
    for sub in ["bin", "proc", "sys", "dev", "tmp"] {
        std::fs::create_dir_all(root.join(sub)).map_err(|e| fail("initramfs", e.to_string()))?;
    }
    let busybox = if arch.is_arm64() {
        setup::busybox_arm64()?
    } else {
        setup::busybox_host()?
    };
    copy(&busybox, &root.join("bin/busybox"))?;
    copy(
        &workspace_root().join("tests/guest/init.sh"),
        &root.join("init"),
    )?;
    for (from, name) in files {
        let to = root.join(name);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(|e| fail("initramfs", e.to_string()))?;
        }
        copy(from, &to)?;
    }
    let image = dir.join("initramfs.cpio.gz");
    let mut cmd = Command::new("sh");
    cmd.current_dir(&root).arg("-c").arg(format!(
        "chmod +x init && find . | cpio -o -H newc --quiet | gzip -1 > '{}'",
        image.display()
    ));
    step(&format!("initramfs {}", dir.display()), cmd)?;
    Ok(image)
}

pub(crate) fn qemu(
    arch: Arch,
    kernel: &Path,
    initrd: &Path,
    extra_args: &str,
    cpus: u32,
) -> Command {
    let (bin, machine, console): (&str, &[&str], &str) = if arch.is_arm64() {
        (
            "qemu-system-aarch64",
            &["-M", "virt", "-cpu", "max"],
            "ttyAMA0",
        )
    } else {
        ("qemu-system-x86_64", &[], "ttyS0")
    };
    let mut cmd = Command::new(bin);
    cmd.args(machine)
        .arg("-kernel")
        .arg(kernel)
        .arg("-initrd")
        .arg(initrd)
        .args(["-nographic", "-no-reboot", "-m", "512", "-smp"])
        .arg(cpus.to_string())
        .arg("-append")
        .arg(format!(
            "console={console} panic=-1 {} {extra_args}",
            extra_kernel_args(arch)
        ));
    // QEMU's educational PCI device: the pcitest backend's real MMIO target.
    for _ in 0..EDU_DEVICES {
        cmd.args(["-device", "edu"]);
    }
    cmd
}

/// The guest's console is quiet, except for the debug kernel: it shows everything down to
/// warnings, so that a lockdep, KASAN or sleep-in-atomic report reaches the console and fails
/// the run. Its soft-lockup threshold is 120 s instead of 20 s: under TCG, KASAN and a busy host
/// a long ACPI method in `pci_enable_device` was measured taking over 20 s, with no lockup.
/// A genuine one still gets reported, and the guest timeout catches the rest.
fn extra_kernel_args(arch: Arch) -> &'static str {
    match arch {
        // PCI interrupt routing from the BIOS's table, not ACPI's `_PRT`: evaluating that under
        // KASAN made each `pci_enable_device` (every module load, every re-attach) take ~20 s.
        Arch::X86_64Debug => "loglevel=5 watchdog_thresh=60 acpi=noirq",
        Arch::Arm64Debug => "loglevel=5 watchdog_thresh=60",
        Arch::X86_64 | Arch::Arm64 => "quiet",
    }
}

/// `(passed, failed)` from the guest's closing line.
fn verdict(lines: &[String]) -> Option<(u32, u32)> {
    lines.iter().rev().find_map(|l| {
        let rest = l.trim().strip_prefix("guest: ")?;
        let (p, f) = rest.split_once(" passed, ")?;
        Some((p.parse().ok()?, f.strip_suffix(" failed")?.parse().ok()?))
    })
}

/// A guest run that powered off cleanly with no kernel report.
pub(crate) struct Booted {
    /// What it printed.
    pub run: GuestRun,
    /// Its closing line's passed count.
    pub passed: u32,
    /// Where its console is saved.
    pub log: PathBuf,
}

/// Build what `arch`'s guest needs, boot it with `kernel_args` and `cpus` vCPUs, save its
/// console as target/vm/<arch>/`console`, and judge the run; `name` names the step.
pub(crate) fn boot_and_judge(
    arch: Arch,
    name: &str,
    kernel_args: &str,
    cpus: u32,
    timeout: u64,
    console: &str,
) -> StepResult<Booted> {
    let kernel = ensure_kernel(arch)?;
    let kos = Modules {
        test: build_kmod(&kernel, Variant::Test)?,
        production: build_kmod(&kernel, Variant::Production)?,
    };
    let bins = guest_binaries(arch)?;
    let initrd = initramfs(arch, &kos, &bins)?;
    let cmd = qemu(arch, &kernel.image, &initrd, kernel_args, cpus);
    eprintln!(
        "==> {name}: {} (timeout {timeout} s)",
        crate::run::shown(&cmd)
    );
    let run = run_guest(cmd, Duration::from_secs(timeout)).map_err(|e| fail(name, e))?;
    let log = save_console(arch, &run, console);
    let passed = judge(&run, timeout).map_err(|e| {
        fail(
            name,
            format!("{e} (the guest console is saved in {})", log.display()),
        )
    })?;
    Ok(Booted { run, passed, log })
}

/// Boot `arch`'s guest and run the guest tests.
pub fn vm_test(arch: Arch) -> StepResult {
    let name = format!("vm-test {}", arch.name());
    let timeout = std::env::var("HDPFLUSH_VM_TIMEOUT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default_timeout_s(arch));
    let booted = boot_and_judge(arch, &name, "", TEST_CPUS, timeout, "console.log")?;
    eprintln!(
        "==> {name}: ok, {} guest tests passed ({:.1} s)",
        booted.passed, booted.run.secs
    );
    Ok(())
}

/// Boot Debian's own kernel package (`cargo xtask deb73` prepares it: not rebuilt, as shipped)
/// with the module built for it and the x86_64 guest binaries, and run the guest tests.
pub fn vm_test_deb73(k: &crate::deb73::DebKernel) -> StepResult {
    let name = format!("vm-test {} (Debian's kernel package)", k.release);
    let kos = Modules {
        test: crate::deb73::build_module(k, Variant::Test)?,
        production: crate::deb73::build_module(k, Variant::Production)?,
    };
    let bins = guest_binaries(Arch::X86_64)?;
    let dir = workspace_root().join("target/vm/deb73");
    let mut files: Vec<(&Path, String)> = guest_files(&kos, &bins)
        .into_iter()
        .map(|(p, n)| (p, n.to_owned()))
        .collect();
    for m in &k.test_modules {
        let name = m.file_name().unwrap_or_default().to_string_lossy();
        files.push((m, format!("lib/modules/{name}")));
    }
    let files: Vec<(&Path, &str)> = files.iter().map(|(p, n)| (*p, n.as_str())).collect();
    let initrd = pack_initramfs(Arch::X86_64, &dir, &files)?;
    let cmd = qemu(Arch::X86_64, &k.vmlinuz, &initrd, "", TEST_CPUS);
    let timeout = default_timeout_s(Arch::X86_64);
    eprintln!(
        "==> {name}: {} (timeout {timeout} s)",
        crate::run::shown(&cmd)
    );
    let run = run_guest(cmd, Duration::from_secs(timeout)).map_err(|e| fail(&name, e))?;
    let log = dir.join("console.log");
    if let Err(e) = std::fs::write(&log, run.lines.join("\n") + "\n") {
        eprintln!(
            "xtask: cannot save the guest console to {}: {e}",
            log.display()
        );
    }
    let passed = judge(&run, timeout).map_err(|e| {
        fail(
            &name,
            format!("{e} (the guest console is saved in {})", log.display()),
        )
    })?;
    eprintln!(
        "==> {name}: ok, {passed} guest tests passed ({:.1} s)",
        run.secs
    );
    Ok(())
}

/// Save the guest's console as target/vm/<arch>/<name>; returns the path.
fn save_console(arch: Arch, run: &GuestRun, name: &str) -> PathBuf {
    let log = workspace_root()
        .join("target/vm")
        .join(arch.name())
        .join(name);
    if let Err(e) = std::fs::write(&log, run.lines.join("\n") + "\n") {
        eprintln!(
            "xtask: cannot save the guest console to {}: {e}",
            log.display()
        );
    }
    log
}

/// What a guest run printed and how it ended.
pub(crate) struct GuestRun {
    pub(crate) lines: Vec<String>,
    success: bool,
    status: String,
    timed_out: bool,
    pub(crate) secs: f64,
}

/// Run `cmd` (QEMU), echoing and collecting its output lines; kill it at `timeout`.
pub(crate) fn run_guest(mut cmd: Command, timeout: Duration) -> Result<GuestRun, String> {
    let started = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", cmd.get_program().to_string_lossy()))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line.replace('\r', "")).is_err() {
                break;
            }
        }
    });
    let deadline = started + timeout;
    let mut lines = Vec::new();
    let mut timed_out = false;
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                println!("{line}");
                lines.push(line);
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() >= deadline => {
                timed_out = true;
                let _ = child.kill();
                break;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    Ok(GuestRun {
        lines,
        success: status.success(),
        status: status.to_string(),
        timed_out,
        secs: started.elapsed().as_secs_f64(),
    })
}

/// The number of guest tests passed, or why the run failed.
pub(crate) fn judge(run: &GuestRun, timeout: u64) -> Result<u32, String> {
    if run.timed_out {
        return Err(format!("the guest did not power off within {timeout} s (hung?); set HDPFLUSH_VM_TIMEOUT to allow more"));
    }
    if let Some(line) = run
        .lines
        .iter()
        .find(|l| KERNEL_REPORTS.iter().any(|r| l.contains(r)))
    {
        return Err(format!("the guest kernel reported a bug: {}", line.trim()));
    }
    match verdict(&run.lines) {
        Some((passed, 0)) if passed > 0 && run.success => Ok(passed),
        Some((passed, failed)) => Err(format!(
            "{passed} passed, {failed} failed; QEMU {}",
            run.status
        )),
        None => Err(format!(
            "no `guest: N passed, M failed` line; QEMU {}",
            run.status
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut c = Command::new("sh");
        c.args(["-c", script]);
        c
    }

    #[test]
    fn a_guest_that_never_powers_off_is_killed_and_fails() {
        let t = Instant::now();
        let run = run_guest(
            sh("echo 'guest: 3 passed, 0 failed'; sleep 30"),
            Duration::from_secs(1),
        )
        .unwrap();
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "not killed: {:?}",
            t.elapsed()
        );
        assert!(run.timed_out);
        let why = judge(&run, 1).unwrap_err();
        assert!(why.contains("did not power off within 1 s"), "{why}");
    }

    #[test]
    fn a_clean_run_passes_and_anything_else_names_the_problem() {
        let ok = run_guest(
            sh("echo 'guest: 3 passed, 0 failed'"),
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(judge(&ok, 10), Ok(3));
        let oops = run_guest(
            sh("echo 'Oops: 0000 [#1] SMP'; echo 'guest: 3 passed, 0 failed'"),
            Duration::from_secs(10),
        )
        .unwrap();
        assert!(judge(&oops, 10).unwrap_err().contains("reported a bug"));
        for report in [
            "BUG: sleeping function called from invalid context at kernel/locking/mutex.c:585",
            "WARNING: possible circular locking dependency detected",
            "BUG: KASAN: slab-use-after-free in hdp_flush_ioctl+0x1f/0x80",
        ] {
            let run = run_guest(
                sh(&format!(
                    "echo '{report}'; echo 'guest: 3 passed, 0 failed'"
                )),
                Duration::from_secs(10),
            )
            .unwrap();
            assert!(judge(&run, 10).is_err(), "{report} not caught");
        }
        let failing = run_guest(
            sh("echo 'guest: 2 passed, 1 failed'"),
            Duration::from_secs(10),
        )
        .unwrap();
        assert!(judge(&failing, 10)
            .unwrap_err()
            .contains("2 passed, 1 failed"));
        let silent = run_guest(sh("true"), Duration::from_secs(10)).unwrap();
        assert!(judge(&silent, 10)
            .unwrap_err()
            .contains("no `guest: N passed"));
        let none_ran = run_guest(
            sh("echo 'guest: 0 passed, 0 failed'"),
            Duration::from_secs(10),
        )
        .unwrap();
        assert!(judge(&none_ran, 10).is_err(), "zero tests must not pass");
        let crashed = run_guest(
            sh("echo 'guest: 3 passed, 0 failed'; exit 1"),
            Duration::from_secs(10),
        )
        .unwrap();
        assert!(judge(&crashed, 10).unwrap_err().contains("exit status: 1"));
    }

    #[test]
    fn the_verdict_is_the_last_closing_line() {
        let lines: Vec<String> = [
            "guest: booted 6.12 x86_64",
            "ok a",
            "guest: 13 passed, 1 failed",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(verdict(&lines), Some((13, 1)));
        assert_eq!(verdict(&lines[..2]), None);
        assert_eq!(verdict(&["guest: x passed, 0 failed".to_owned()]), None);
    }
}
