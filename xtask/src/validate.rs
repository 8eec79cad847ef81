//! The `hdpflush validate` step of `cargo xtask test`: its HSA declarations checked against
//! Debian's headers, its GPU code objects built for every target with the right target note,
//! and, on a host without a GPU, its documented exit status and message.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::run::{cargo, command, fail, output, step, workspace_root, StepResult};
use crate::setup;

/// Targets every build must carry (the RFC's MI210, MI300, RDNA3); build.rs adds more.
const REQUIRED_TARGETS: &[&str] = &["gfx90a", "gfx942", "gfx1100"];
/// `hdpflush validate`'s status without a GPU (src/validate/mod.rs, docs/validate.md).
const EXIT_NO_GPU: i32 = 3;
const HEADER: &str = "/usr/include/hsa/hsa_ext_amd.h";

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Every step; see the module doc.
pub fn check() -> StepResult {
    setup::commands(&[
        ("clang-19", "clang-19"),
        ("ld.lld-19", "lld-19"),
        ("llvm-readelf-19", "llvm-19"),
        ("cc", "gcc"),
    ])?;
    if !Path::new(HEADER).exists() {
        step(
            "install HSA headers",
            command(
                "apt-get",
                &["install", "-y", "libhsa-runtime-dev", "libhsa-runtime64-1"],
            ),
        )?;
    }
    let scratch = target_dir().join("xtask-validate");
    std::fs::create_dir_all(&scratch)
        .map_err(|e| fail("validate", format!("{}: {e}", scratch.display())))?;

    let mut c = Command::new("cc");
    c.args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-c"])
        .arg(workspace_root().join("gpu/hsa_check.c"))
        .arg("-o")
        .arg(scratch.join("hsa_check.o"));
    step("HSA declarations against Debian's headers", c)?;

    let mut build = cargo();
    build.args(["build", "--locked", "-p", "hdpflush"]);
    step("build hdpflush", build)?;
    let exe = target_dir().join("debug/hdpflush");
    let cos = scratch.join("code-objects");
    let _ = std::fs::remove_dir_all(&cos);
    let mut write = Command::new(&exe);
    write.args(["validate", "--write-code-objects"]).arg(&cos);
    let listed = output("validate code objects", write)?;
    let mut seen = Vec::new();
    for path in listed.lines().map(Path::new) {
        let target = path
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.strip_prefix("check_pattern-"))
            .ok_or_else(|| {
                fail(
                    "validate code objects",
                    format!("unexpected {}", path.display()),
                )
            })?;
        let mut readelf = command("llvm-readelf-19", &["--notes"]);
        readelf.arg(path);
        let notes = output("validate code objects", readelf)?;
        let want = format!("amdgcn-amd-amdhsa--{target}");
        if !notes.lines().any(|l| l.trim_end().ends_with(&want)) {
            return Err(fail(
                "validate code objects",
                format!("{}: its notes do not say {want}", path.display()),
            ));
        }
        if !notes.contains("check_pattern") {
            return Err(fail(
                "validate code objects",
                format!("{}: no check_pattern kernel in its notes", path.display()),
            ));
        }
        seen.push(target.to_owned());
    }
    for t in REQUIRED_TARGETS {
        if !seen.iter().any(|s| s == t) {
            return Err(fail(
                "validate code objects",
                format!("no code object for {t} (built: {seen:?})"),
            ));
        }
    }
    eprintln!("==> validate code objects: ok ({})", seen.join(", "));

    if Path::new("/dev/kfd").exists() {
        eprintln!("==> validate without a GPU: skipped, this host has /dev/kfd");
        return Ok(());
    }
    let out = Command::new(&exe)
        .args(["validate", "--json"])
        .arg(scratch.join("validate.json"))
        .output()
        .map_err(|e| fail("validate without a GPU", format!("{}: {e}", exe.display())))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() != Some(EXIT_NO_GPU) || !stderr.contains("hdpflush validate needs:") {
        return Err(fail(
            "validate without a GPU",
            format!(
                "expected exit {EXIT_NO_GPU} and what it needs, got {}: {stderr}",
                out.status
            ),
        ));
    }
    eprintln!("==> validate without a GPU: ok (exit {EXIT_NO_GPU}, says what it needs)");
    Ok(())
}
