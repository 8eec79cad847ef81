//! docs/upstream/: the KFD patch series must apply to the 6.12 sources, pass checkpatch
//! --strict without errors or warnings, the objects it touches must compile (no warning) in a
//! configuration with amdgpu and KFD, and the uAPI libflush calls (libflush/src/kfd_uapi.rs)
//! must be what the patched header says.
//!
//! The patched tree is a hard-linked copy of the cached source (patch writes new files, so
//! the original stays untouched), configured from x86_64_defconfig plus amdgpu and KFD and
//! prepared once; the result is cached in `$HDPFLUSH_CACHE` keyed by source, patches and
//! configuration. The touched objects are compiled on every run.

#[path = "../../libflush/src/kfd_uapi.rs"]
#[allow(dead_code)] // libflush's file: xtask needs only its values
mod kfd_uapi;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::kernel::source_tree;
use crate::pins;
use crate::run::{fail, output, step, step_logged, workspace_root, StepResult};
use crate::setup::cache_dir;

/// What the configuration adds to x86_64_defconfig.
const CONFIG: &str = "CONFIG_DRM_AMDGPU=m\nCONFIG_HSA_AMD=y\n";

fn upstream_dir() -> PathBuf {
    workspace_root().join("docs/upstream")
}

/// The patches, in `series` order, with their text.
fn series() -> StepResult<Vec<(PathBuf, String)>> {
    let dir = upstream_dir();
    let list = std::fs::read_to_string(dir.join("series"))
        .map_err(|e| fail("upstream", format!("{}/series: {e}", dir.display())))?;
    list.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|name| {
            let path = dir.join(name);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| fail("upstream", format!("{}: {e}", path.display())))?;
            Ok((path, text))
        })
        .collect()
}

/// The files a patch changes (its `+++ b/...` lines).
fn touched(patch: &str) -> Vec<String> {
    patch
        .lines()
        .filter_map(|l| l.strip_prefix("+++ b/"))
        .map(|p| p.split_whitespace().next().unwrap_or(p).to_owned())
        .collect()
}

/// The kbuild target that compiles `file`: amdkfd's sources are objects of amdgpu.
fn object_target(file: &str) -> Option<String> {
    let obj = file.strip_suffix(".c")?;
    Some(match obj.strip_prefix("drivers/gpu/drm/amd/amdkfd/") {
        Some(name) => format!("drivers/gpu/drm/amd/amdgpu/../amdkfd/{name}.o"),
        None => format!("{obj}.o"),
    })
}

fn make(tree: &Path, build: &Path) -> Command {
    let mut cmd = Command::new("make");
    cmd.current_dir(tree)
        .arg(format!("O={}", build.display()))
        .arg("ARCH=x86")
        .arg(format!("LLVM=-{}", pins::LLVM));
    cmd
}

/// The patched, configured and prepared tree: (source, build directory).
fn prepared(patches: &[(PathBuf, String)]) -> StepResult<(PathBuf, PathBuf)> {
    let src = source_tree()?;
    let mut h = Sha256::new();
    h.update(src.to_string_lossy().as_bytes());
    for (_, text) in patches {
        h.update(text);
        h.update([0]);
    }
    h.update(CONFIG);
    h.update(pins::LLVM);
    let key: String = h.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let dir = cache_dir().join(format!("upstream-{key}"));
    let (tree, build) = (dir.join("linux"), dir.join("build"));
    if dir.join(".complete").exists() {
        eprintln!("==> upstream tree: cached at {}", dir.display());
        return Ok((tree, build));
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&build).map_err(|e| fail("upstream", e.to_string()))?;
    let mut copy = Command::new("cp");
    copy.arg("-al").arg(&src).arg(&tree);
    step("upstream: hard-linked source copy", copy)?;
    for (path, _) in patches {
        let mut apply = Command::new("patch");
        apply
            .arg("-p1")
            .arg("--forward")
            .arg("--no-backup-if-mismatch")
            .arg("-d")
            .arg(&tree)
            .arg("-i")
            .arg(path);
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        step(&format!("upstream: apply {name}"), apply)?;
    }
    let quiet = Duration::from_secs(60);
    let mut defconfig = make(&tree, &build);
    defconfig.arg("x86_64_defconfig");
    step_logged(
        "upstream: x86_64_defconfig",
        defconfig,
        &dir.join("config.log"),
        quiet,
    )?;
    let fragment = dir.join("amdgpu.config");
    std::fs::write(&fragment, CONFIG).map_err(|e| fail("upstream", e.to_string()))?;
    let mut merge = Command::new(tree.join("scripts/kconfig/merge_config.sh"));
    merge
        .current_dir(&tree)
        .env("ARCH", "x86")
        .args(["-m", "-O"])
        .arg(&build)
        .arg(build.join(".config"))
        .arg(&fragment);
    step_logged(
        "upstream: merge config",
        merge,
        &dir.join("merge.log"),
        quiet,
    )?;
    let mut olddefconfig = make(&tree, &build);
    olddefconfig.arg("olddefconfig");
    step_logged(
        "upstream: olddefconfig",
        olddefconfig,
        &dir.join("olddefconfig.log"),
        quiet,
    )?;
    let config = std::fs::read_to_string(build.join(".config"))
        .map_err(|e| fail("upstream", e.to_string()))?;
    for wanted in CONFIG.lines() {
        if !config.lines().any(|l| l.trim() == wanted) {
            return Err(fail(
                "upstream config",
                format!("olddefconfig dropped {wanted}"),
            ));
        }
    }
    let jobs = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut prepare = make(&tree, &build);
    prepare.arg(format!("-j{jobs}")).arg("prepare");
    step_logged(
        "upstream: prepare",
        prepare,
        &dir.join("prepare.log"),
        Duration::from_secs(30),
    )?;
    // The sanitized uapi headers, in build/usr/include (`headers`: no rsync needed).
    let mut headers = make(&tree, &build);
    headers.arg("headers");
    step_logged(
        "upstream: uapi headers",
        headers,
        &dir.join("headers.log"),
        quiet,
    )?;
    std::fs::write(dir.join(".complete"), "").map_err(|e| fail("upstream", e.to_string()))?;
    Ok((tree, build))
}

/// The C file that checks libflush's KFD values against the patched header.
fn abi_assertions() -> String {
    use kfd_uapi::*;
    let size = size_of::<KfdHdpFlushArgs>();
    let version_size = size_of::<KfdGetVersionArgs>();
    let base = AMDKFD_IOCTL_BASE;
    let mut c = String::from("#include <stddef.h>\n#include <linux/kfd_ioctl.h>\n");
    let mut check = |cond: String, why: &str| {
        c.push_str(&format!(
            "_Static_assert({cond}, \"libflush/src/kfd_uapi.rs: {why}\");\n"
        ));
    };
    check(
        format!(
            "AMDKFD_IOC_HDP_FLUSH == _IOC(_IOC_WRITE, {base}, {:#x}, {size})",
            AMDKFD_IOC_HDP_FLUSH_NR
        ),
        "AMDKFD_IOC_HDP_FLUSH",
    );
    check(
        format!(
            "AMDKFD_IOC_GET_VERSION == _IOC(_IOC_READ, {base}, {:#x}, {version_size})",
            AMDKFD_IOC_GET_VERSION_NR
        ),
        "AMDKFD_IOC_GET_VERSION",
    );
    check(
        format!("sizeof(struct kfd_ioctl_hdp_flush_args) == {size}"),
        "struct size",
    );
    check(
        "offsetof(struct kfd_ioctl_hdp_flush_args, gpu_id) == 0".into(),
        "gpu_id offset",
    );
    check(
        "offsetof(struct kfd_ioctl_hdp_flush_args, flags) == 4".into(),
        "flags offset",
    );
    check(
        format!("KFD_IOC_HDP_FLUSH_F_POSTED == {KFD_IOC_HDP_FLUSH_F_POSTED}"),
        "POSTED",
    );
    check(
        format!("KFD_IOC_HDP_FLUSH_F_INVALIDATE == {KFD_IOC_HDP_FLUSH_F_INVALIDATE}"),
        "INVALIDATE",
    );
    check(
        format!("KFD_IOCTL_MAJOR_VERSION == {KFD_IOCTL_MAJOR_VERSION}"),
        "major version",
    );
    check(
        format!("KFD_IOCTL_MINOR_VERSION == {KFD_HDP_FLUSH_PATCH_MINOR}"),
        "the minor version that adds the flush",
    );
    check(
        format!("AMDKFD_COMMAND_END > {:#x}", AMDKFD_IOC_HDP_FLUSH_NR),
        "the command range covers the flush",
    );
    c
}

/// checkpatch.pl --strict over each patch: errors and warnings fail, CHECKs are shown.
fn checkpatch(tree: &Path, patches: &[(PathBuf, String)]) -> StepResult {
    for (path, _) in patches {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let mut cmd = Command::new("perl");
        cmd.current_dir(tree)
            .arg("scripts/checkpatch.pl")
            .args(["--no-signoff", "--strict", "--terse", "--no-summary"])
            .arg(path);
        // checkpatch exits non-zero for CHECKs too: judge by what it printed.
        let out = cmd
            .output()
            .map_err(|e| fail("upstream: checkpatch", format!("cannot run perl: {e}")))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let serious: Vec<&str> = text
            .lines()
            .filter(|l| l.contains(": ERROR:") || l.contains(": WARNING:"))
            .collect();
        for l in text.lines().filter(|l| l.contains(": CHECK:")) {
            eprintln!("    checkpatch {name}: {l}");
        }
        if !serious.is_empty() {
            return Err(fail(
                &format!("upstream: checkpatch {name}"),
                serious.join("; "),
            ));
        }
    }
    eprintln!("==> upstream: checkpatch --strict: no error or warning");
    Ok(())
}

pub fn check() -> StepResult {
    let patches = series()?;
    let (tree, build) = prepared(&patches)?;
    checkpatch(&tree, &patches)?;
    let mut objects: Vec<String> = patches
        .iter()
        .flat_map(|(_, text)| touched(text))
        .filter_map(|f| object_target(&f))
        .collect();
    objects.sort();
    objects.dedup();
    let logs = workspace_root().join("target/upstream");
    std::fs::create_dir_all(&logs).map_err(|e| fail("upstream", e.to_string()))?;
    for obj in &objects {
        // Compiled every run: remove what a previous run left.
        let _ = std::fs::remove_file(build.join(obj.replace("amdgpu/../", "")));
        let mut cc = make(&tree, &build);
        cc.arg(obj);
        let log = logs.join(format!(
            "{}.log",
            Path::new(obj)
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy()
        ));
        step_logged(
            &format!("upstream: compile {obj}"),
            cc,
            &log,
            Duration::from_secs(30),
        )?;
        let text = std::fs::read_to_string(&log).map_err(|e| fail("upstream", e.to_string()))?;
        if let Some(w) = text.lines().find(|l| l.contains("warning:")) {
            return Err(fail(
                &format!("upstream: compile {obj}"),
                format!("a warning: {w} (full log: {})", log.display()),
            ));
        }
    }
    let file = logs.join("kfd_abi.c");
    std::fs::write(&file, abi_assertions()).map_err(|e| fail("upstream", e.to_string()))?;
    let mut cc = Command::new(format!("clang-{}", pins::LLVM));
    cc.args(["-fsyntax-only", "-std=c11", "-Werror", "-I"])
        .arg(build.join("usr/include"))
        .arg(&file);
    output(
        "upstream: libflush's KFD uAPI against the patched header",
        cc,
    )?;
    eprintln!(
        "==> upstream: ok, {} patches apply to 6.12, {} compiled clean with amdgpu and KFD, libflush's KFD uAPI matches the header",
        patches.len(),
        objects.join(", ")
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn touched_c_files_map_to_their_kbuild_objects() {
        let patch = "--- a/include/uapi/linux/kfd_ioctl.h\n+++ b/include/uapi/linux/kfd_ioctl.h\n--- a/drivers/gpu/drm/amd/amdkfd/kfd_chardev.c\n+++ b/drivers/gpu/drm/amd/amdkfd/kfd_chardev.c\n";
        let files = touched(patch);
        assert_eq!(files.len(), 2);
        let objs: Vec<String> = files.iter().filter_map(|f| object_target(f)).collect();
        assert_eq!(objs, ["drivers/gpu/drm/amd/amdgpu/../amdkfd/kfd_chardev.o"]);
        assert_eq!(object_target("mm/slab.c").as_deref(), Some("mm/slab.o"));
    }

    #[test]
    fn the_series_lists_patches_that_exist() {
        let patches = series().unwrap();
        assert!(patches.len() >= 2);
        for (path, text) in &patches {
            assert!(
                !touched(text).is_empty(),
                "{} changes nothing",
                path.display()
            );
        }
    }

    #[test]
    fn the_abi_check_names_every_value() {
        let c = abi_assertions();
        for needle in [
            "AMDKFD_IOC_HDP_FLUSH ==",
            "KFD_IOCTL_MINOR_VERSION == 18",
            "_IOC_WRITE, 75, 0x27, 8",
        ] {
            assert!(c.contains(needle), "{needle}:\n{c}");
        }
    }
}
