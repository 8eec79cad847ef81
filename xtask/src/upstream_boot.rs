//! `cargo xtask upstream --boot`: the patched 7.3 tree built into a small x86_64 kernel with
//! amdgpu and KFD built in (docs/upstream/boot.config over tinyconfig), booted in QEMU without
//! a GPU, where tests/guest/src/kfd.rs runs against the real /dev/kfd.
//!
//! 7.3's KFD refuses to open /dev/kfd when its topology has no GPU node, so this kernel also
//! carries docs/upstream/test-only/ (applied after the series, never sent): it lets the open go
//! ahead with a CPU-only topology. Without it no KFD ioctl can be reached in a guest without a
//! GPU (tried: "amdgpu: no gpu node! Cannot create KFD process").
//!
//! amdgpu alone is most of the build: about 25 minutes on 2 cores from scratch (23 measured while sharing the cores), too long for
//! every CI run (`cargo xtask test` must stay under an hour on a fresh 2-core machine), so this
//! is a separate flag whose output is recorded in docs/upstream/README.md. The tree and build
//! directory are cached per source version, configuration and compiler; a changed patch is
//! re-applied in place, so only what it touches is rebuilt.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use crate::kernel::Arch;
use crate::pins;
use crate::run::{fail, step, step_logged, workspace_root, StepResult};
use crate::setup::cache_dir;
use crate::upstream::{
    configure_with, make, patched_copy, series_in, source, touched, upstream_dir, Patch, Source,
};
use crate::vm;

/// A guest that has not powered off by then has hung (it takes seconds).
const TIMEOUT: Duration = Duration::from_secs(300);

fn boot_config() -> PathBuf {
    upstream_dir().join("boot.config")
}

fn hex8(h: Sha256) -> String {
    h.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The patched tree and its configured build directory, with the current series applied.
fn tree(source: &Source, patches: &[Patch]) -> StepResult<(PathBuf, PathBuf)> {
    let fragment = std::fs::read_to_string(boot_config())
        .map_err(|e| fail("upstream boot", format!("{}: {e}", boot_config().display())))?;
    let mut h = Sha256::new();
    h.update(source.tree.to_string_lossy().as_bytes());
    h.update(&source.version);
    h.update(&fragment);
    h.update(pins::LLVM);
    let dir = cache_dir().join(format!("upstream73-boot-{}", hex8(h)));
    let (tree, build) = (dir.join("linux"), dir.join("build"));
    let mut series = Sha256::new();
    for p in patches {
        series.update(&p.text);
        series.update([0]);
    }
    let series = hex8(series);
    let stamp = dir.join("applied");
    if std::fs::read_to_string(&stamp).ok().as_deref() != Some(series.as_str()) {
        // A fresh hard-linked copy keeps the source's timestamps, and a file the re-applied
        // series leaves as it was keeps the time it had: make rebuilds only what changed (a
        // new commit message rebuilds nothing; a header amdgpu includes rebuilds amdgpu).
        std::fs::create_dir_all(&dir).map_err(|e| fail("upstream boot", e.to_string()))?;
        let before = touched_files(&tree, patches);
        patched_copy(&source.tree, &tree, patches)?;
        for (path, (text, modified)) in before {
            if std::fs::read(&path).is_ok_and(|now| now == text) {
                std::fs::File::options()
                    .write(true)
                    .open(&path)
                    .and_then(|f| f.set_modified(modified))
                    .map_err(|e| fail("upstream boot", format!("{}: {e}", path.display())))?;
            }
        }
        std::fs::write(&stamp, &series).map_err(|e| fail("upstream boot", e.to_string()))?;
    }
    if !build.join(".config").exists() {
        configure_with(&tree, &build, "tinyconfig", &boot_config(), &dir)?;
    }
    Ok((tree, build))
}

/// The files of `tree` that `patches` change, with their contents and modification times.
fn touched_files(tree: &Path, patches: &[Patch]) -> Vec<(PathBuf, (Vec<u8>, SystemTime))> {
    patches
        .iter()
        .flat_map(|p| touched(&p.text))
        .filter_map(|f| {
            let path = tree.join(f);
            let text = std::fs::read(&path).ok()?;
            let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok()?;
            Some((path, (text, modified)))
        })
        .collect()
}

/// Build (or bring up to date) the kernel image.
fn kernel(tree: &Path, build: &Path) -> StepResult<PathBuf> {
    let jobs = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut cmd = make(tree, build);
    cmd.arg(format!("-j{}", jobs + 1)).arg("bzImage");
    let log = build.parent().unwrap_or(build).join("build.log");
    eprintln!(
        "==> upstream boot: building the kernel (amdgpu and KFD built in: about 25 minutes on 2 cores the first time, incremental after)"
    );
    step_logged(
        "upstream boot: make bzImage",
        cmd,
        &log,
        Duration::from_secs(60),
    )?;
    Ok(build.join("arch/x86/boot/bzImage"))
}

/// The static KFD test binary for the guest.
fn kfd_tests() -> StepResult<PathBuf> {
    let arch = Arch::X86_64;
    let target_dir = workspace_root().join(format!("target/guest-{}", arch.rust_target()));
    let mut cmd = vm::guest_cargo(arch, &target_dir)?;
    cmd.args([
        "build",
        "--release",
        "--locked",
        "--target",
        arch.rust_target(),
    ])
    .args(["-p", "hdpflush-guest", "--bin", "hdpflush-kfd-tests"]);
    step("upstream boot: KFD test binary", cmd)?;
    Ok(target_dir
        .join(arch.rust_target())
        .join("release/hdpflush-kfd-tests"))
}

pub fn run() -> StepResult {
    let mut patches = series_in(&upstream_dir())?;
    patches.extend(series_in(&upstream_dir().join("test-only"))?);
    let source = source()?;
    let (tree, build) = tree(&source, &patches)?;
    let image = kernel(&tree, &build)?;
    let tests = kfd_tests()?;
    let dir = workspace_root().join("target/upstream/boot");
    std::fs::create_dir_all(&dir).map_err(|e| fail("upstream boot", e.to_string()))?;
    let initrd = vm::pack_initramfs(Arch::X86_64, &dir, &[(&tests, "hdpflush-kfd-tests")])?;
    let cmd = vm::qemu(Arch::X86_64, &image, &initrd, "hdpflush_kfd", 2);
    let name = "upstream boot: KFD tests in the patched kernel";
    eprintln!(
        "==> {name}: {} (timeout {} s)",
        crate::run::shown(&cmd),
        TIMEOUT.as_secs()
    );
    let run = vm::run_guest(cmd, TIMEOUT).map_err(|e| fail(name, e))?;
    let log = dir.join("console.log");
    std::fs::write(&log, run.lines.join("\n") + "\n")
        .map_err(|e| fail(name, format!("{}: {e}", log.display())))?;
    let passed = vm::judge(&run, TIMEOUT.as_secs()).map_err(|e| {
        fail(
            name,
            format!("{e} (the guest console is saved in {})", log.display()),
        )
    })?;
    eprintln!(
        "==> {name}: ok, {passed} KFD tests passed in Linux {} from {} {} with docs/upstream/'s patch ({:.1} s; console in {})",
        source_release(&tree),
        pins::UPSTREAM_SOURCE_PKG,
        source.version,
        run.secs,
        log.display()
    );
    Ok(())
}

fn source_release(tree: &Path) -> String {
    let mut cmd = Command::new("make");
    cmd.current_dir(tree).arg("-s").arg("kernelversion");
    crate::run::output("kernelversion", cmd)
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}
