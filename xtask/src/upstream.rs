//! docs/upstream/: the KFD patch against Debian's `linux-source-7.3` (trixie-backports). It must
//! apply; pass `checkpatch.pl --strict` without errors or warnings; add no warning to the
//! objects it touches when they compile with `W=1` and sparse (`C=1`) in a configuration with
//! amdgpu and KFD (the unpatched tree compiled the same way is the baseline); its uAPI header
//! must compile on its own with the same layout for 32- and 64-bit user space; and libflush's
//! view of that uAPI (libflush/src/kfd_uapi.rs) must be what the header says.
//!
//! The source is downloaded with a private apt configuration (nothing is installed) and
//! unpacked once per Debian version. The patched tree is a hard-linked copy (patch writes new
//! files, so the original stays untouched). Both trees are configured from x86_64_defconfig
//! plus amdgpu and KFD and prepared once, cached in `$HDPFLUSH_CACHE` keyed by source, patches
//! and configuration; the touched objects are compiled on every run.

#[path = "../../libflush/src/kfd_uapi.rs"]
#[allow(dead_code)] // libflush's file: xtask needs only its values
mod kfd_uapi;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::pins;
use crate::run::{fail, output, step, step_logged, workspace_root, StepResult};
use crate::setup::{cache_dir, PrivateApt};

/// What the configuration adds to x86_64_defconfig.
const CONFIG: &str = "CONFIG_DRM_AMDGPU=m\nCONFIG_HSA_AMD=y\n";

/// The cover letter beside the series (not in `series`: it is not applied).
const COVER_LETTER: &str = "0000-cover-letter.patch";

/// The authorship lines the patches carry until the person who sends them fills them in.
pub const AUTHOR_PLACEHOLDER: &str = "FIRSTNAME LASTNAME <EMAIL>";
/// What checkpatch sees in their place: a well-formed identity that is clearly not a person.
const CHECKPATCH_STAND_IN: &str = "Placeholder Author <placeholder.author@example.invalid>";

pub(crate) fn upstream_dir() -> PathBuf {
    workspace_root().join("docs/upstream")
}

/// A patch of the series: its file and text.
pub(crate) struct Patch {
    pub path: PathBuf,
    pub text: String,
}

impl Patch {
    pub fn name(&self) -> String {
        self.path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned()
    }
}

/// The patches in `dir`, in the order of its `series` file.
pub(crate) fn series_in(dir: &Path) -> StepResult<Vec<Patch>> {
    let list = std::fs::read_to_string(dir.join("series"))
        .map_err(|e| fail("upstream", format!("{}/series: {e}", dir.display())))?;
    list.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|name| {
            let path = dir.join(name);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| fail("upstream", format!("{}: {e}", path.display())))?;
            Ok(Patch { path, text })
        })
        .collect()
}

/// The files a patch changes (its `+++ b/...` lines).
pub(crate) fn touched(patch: &str) -> Vec<String> {
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

/// The unpacked kernel source and the Debian version it came from.
pub(crate) struct Source {
    pub tree: PathBuf,
    pub version: String,
}

/// Debian's `linux-source-7.3`, downloaded from trixie-backports and unpacked once per
/// version. Without the network, the newest tree unpacked before is used.
pub(crate) fn source() -> StepResult<Source> {
    let pkg = pins::UPSTREAM_SOURCE_PKG;
    let apt = PrivateApt::new("apt-trixie", pins::UPSTREAM_SUITES, "amd64")?;
    let version = match apt.update().and_then(|()| apt.candidate(pkg)) {
        Ok(v) => v,
        Err(f) => {
            let cached = newest_unpacked()?;
            let Some((tree, version)) = cached else {
                return Err(f);
            };
            eprintln!(
                "==> warning: {}; using the {pkg} {version} unpacked before",
                f.why
            );
            return Ok(Source { tree, version });
        }
    };
    let dir = cache_dir().join(format!(
        "src-{pkg}-{}",
        version.replace(['~', ':', '+'], "_")
    ));
    let tree = dir.join(pins::UPSTREAM_TARBALL_DIR);
    if dir.join(".complete").exists() {
        eprintln!("==> {pkg} {version}: cached at {}", tree.display());
        return Ok(Source { tree, version });
    }
    let deb = apt.download(pkg, &format!("{pkg}={version}"), &version)?;
    let _ = std::fs::remove_dir_all(&dir);
    let scratch = dir.join("deb");
    std::fs::create_dir_all(&scratch).map_err(|e| fail("upstream source", e.to_string()))?;
    let mut x = Command::new("dpkg-deb");
    x.arg("-x").arg(&deb).arg(&scratch);
    step(&format!("unpack {pkg} {version}"), x)?;
    let tarball = scratch.join(format!("usr/src/{}.tar.xz", pins::UPSTREAM_TARBALL_DIR));
    let mut untar = Command::new("tar");
    untar.arg("-xf").arg(&tarball).arg("-C").arg(&dir);
    step(&format!("untar {}", tarball.display()), untar)?;
    let _ = std::fs::remove_dir_all(&scratch);
    let _ = std::fs::remove_file(&deb);
    let makefile = std::fs::read_to_string(tree.join("Makefile"))
        .map_err(|e| fail("upstream source", format!("{}: {e}", tree.display())))?;
    let release = kernel_release(&makefile);
    if !release.starts_with(pins::UPSTREAM_SERIES) {
        return Err(fail(
            "upstream source",
            format!(
                "{pkg} {version} unpacks Linux {release}, not {}",
                pins::UPSTREAM_SERIES
            ),
        ));
    }
    std::fs::write(dir.join("version"), &version)
        .and_then(|()| std::fs::write(dir.join(".complete"), ""))
        .map_err(|e| fail("upstream source", e.to_string()))?;
    Ok(Source { tree, version })
}

/// The newest source tree a previous run unpacked, for runs without the network.
fn newest_unpacked() -> StepResult<Option<(PathBuf, String)>> {
    let prefix = format!("src-{}-", pins::UPSTREAM_SOURCE_PKG);
    let Ok(entries) = std::fs::read_dir(cache_dir()) else {
        return Ok(None);
    };
    Ok(entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
                && p.join(".complete").exists()
        })
        .filter_map(|p| {
            let version = std::fs::read_to_string(p.join("version")).ok()?;
            let modified = std::fs::metadata(&p).and_then(|m| m.modified()).ok()?;
            Some((modified, p.join(pins::UPSTREAM_TARBALL_DIR), version))
        })
        .max_by_key(|(modified, _, _)| *modified)
        .map(|(_, tree, version)| (tree, version)))
}

/// "7.3.4" from a kernel Makefile.
fn kernel_release(makefile: &str) -> String {
    let field = |name: &str| {
        makefile
            .lines()
            .find_map(|l| {
                l.strip_prefix(name)?
                    .trim()
                    .strip_prefix('=')
                    .map(str::trim)
            })
            .unwrap_or("?")
            .to_owned()
    };
    format!(
        "{}.{}.{}",
        field("VERSION"),
        field("PATCHLEVEL"),
        field("SUBLEVEL")
    )
}

pub(crate) fn make(tree: &Path, build: &Path) -> Command {
    let mut cmd = Command::new("make");
    cmd.current_dir(tree)
        .arg(format!("O={}", build.display()))
        .arg("ARCH=x86")
        .arg(format!("LLVM=-{}", pins::LLVM));
    cmd
}

/// A hard-linked copy of `src` at `tree` with `patches` applied in order.
pub(crate) fn patched_copy(src: &Path, tree: &Path, patches: &[Patch]) -> StepResult {
    let _ = std::fs::remove_dir_all(tree);
    let mut copy = Command::new("cp");
    copy.arg("-al").arg(src).arg(tree);
    step("upstream: hard-linked source copy", copy)?;
    for patch in patches {
        let mut apply = Command::new("patch");
        apply
            .args(["-p1", "--forward", "--no-backup-if-mismatch", "--quiet"])
            .arg("-d")
            .arg(tree)
            .arg("-i")
            .arg(&patch.path);
        step(&format!("upstream: apply {}", patch.name()), apply)?;
    }
    Ok(())
}

/// `make args` in `tree`/`build` as step `name`, output in `log`.
pub(crate) fn make_logged(
    tree: &Path,
    build: &Path,
    args: &[&str],
    name: &str,
    log: &Path,
) -> StepResult {
    let mut cmd = make(tree, build);
    cmd.args(args);
    step_logged(name, cmd, log, Duration::from_secs(60))
}

/// Configure `build` for `tree`: the `base` target (a defconfig), `fragment` merged over it,
/// then olddefconfig, which must keep every `=y` and `=m` line of the fragment.
pub(crate) fn configure_with(
    tree: &Path,
    build: &Path,
    base: &str,
    fragment: &Path,
    logs: &Path,
) -> StepResult {
    std::fs::create_dir_all(build).map_err(|e| fail("upstream", e.to_string()))?;
    make_logged(
        tree,
        build,
        &[base],
        &format!("upstream: {base}"),
        &logs.join("config.log"),
    )?;
    let mut merge = Command::new(tree.join("scripts/kconfig/merge_config.sh"));
    merge
        .current_dir(tree)
        .env("ARCH", "x86")
        .args(["-m", "-O"])
        .arg(build)
        .arg(build.join(".config"))
        .arg(fragment);
    step_logged(
        &format!("upstream: merge {}", fragment.display()),
        merge,
        &logs.join("merge.log"),
        Duration::from_secs(60),
    )?;
    make_logged(
        tree,
        build,
        &["olddefconfig"],
        "upstream: olddefconfig",
        &logs.join("olddefconfig.log"),
    )?;
    let wanted = std::fs::read_to_string(fragment)
        .map_err(|e| fail("upstream config", format!("{}: {e}", fragment.display())))?;
    let config = std::fs::read_to_string(build.join(".config"))
        .map_err(|e| fail("upstream config", e.to_string()))?;
    for line in wanted
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("CONFIG_") && (l.ends_with("=y") || l.ends_with("=m")))
    {
        if !config.lines().any(|l| l.trim() == line) {
            let _ = std::fs::remove_file(build.join(".config"));
            return Err(fail(
                "upstream config",
                format!("olddefconfig dropped {line}"),
            ));
        }
    }
    Ok(())
}

/// Configure and prepare `tree` in `build` (x86_64_defconfig plus [`CONFIG`]); with
/// `headers`, also install its sanitized uAPI headers in build/usr/include.
fn configure(tree: &Path, build: &Path, logs: &Path, headers: bool) -> StepResult {
    std::fs::create_dir_all(logs).map_err(|e| fail("upstream", e.to_string()))?;
    let fragment = logs.join("amdgpu.config");
    std::fs::write(&fragment, CONFIG).map_err(|e| fail("upstream", e.to_string()))?;
    configure_with(tree, build, "x86_64_defconfig", &fragment, logs)?;
    let jobs = std::thread::available_parallelism().map_or(2, |n| n.get());
    make_logged(
        tree,
        build,
        &[&format!("-j{jobs}"), "prepare"],
        "upstream: prepare",
        &logs.join("prepare.log"),
    )?;
    if headers {
        // The sanitized uapi headers, in build/usr/include (`headers`: no rsync needed).
        make_logged(
            tree,
            build,
            &["headers"],
            "upstream: uapi headers",
            &logs.join("headers.log"),
        )?;
    }
    Ok(())
}

/// The prepared trees: the unpatched source with its build directory (the baseline), and the
/// patched copy with its own.
struct Prepared {
    base: (PathBuf, PathBuf),
    patched: (PathBuf, PathBuf),
}

fn prepared(source: &Source, patches: &[Patch]) -> StepResult<Prepared> {
    let mut h = Sha256::new();
    h.update(source.tree.to_string_lossy().as_bytes());
    h.update(&source.version);
    for p in patches {
        h.update(&p.text);
        h.update([0]);
    }
    h.update(CONFIG);
    h.update(pins::LLVM);
    let key: String = h.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let dir = cache_dir().join(format!("upstream73-{key}"));
    let trees = Prepared {
        base: (source.tree.clone(), dir.join("base-build")),
        patched: (dir.join("linux"), dir.join("build")),
    };
    if dir.join(".complete").exists() {
        eprintln!("==> upstream trees: cached at {}", dir.display());
        return Ok(trees);
    }
    let _ = std::fs::remove_dir_all(&dir);
    let (base_logs, patched_logs) = (dir.join("base-logs"), dir.join("logs"));
    for d in [&base_logs, &patched_logs] {
        std::fs::create_dir_all(d).map_err(|e| fail("upstream", e.to_string()))?;
    }
    patched_copy(&source.tree, &trees.patched.0, patches)?;
    configure(&trees.base.0, &trees.base.1, &base_logs, false)?;
    configure(&trees.patched.0, &trees.patched.1, &patched_logs, true)?;
    std::fs::write(dir.join(".complete"), "").map_err(|e| fail("upstream", e.to_string()))?;
    Ok(trees)
}

/// The patch as checkpatch should see it: the authorship placeholders replaced by a
/// well-formed stand-in (checkpatch rejects the placeholder as an address).
fn for_checkpatch(text: &str) -> String {
    text.replace(AUTHOR_PLACEHOLDER, CHECKPATCH_STAND_IN)
}

/// checkpatch.pl --strict over each patch: errors and warnings fail, CHECKs are shown.
fn checkpatch(tree: &Path, patches: &[Patch], scratch: &Path) -> StepResult {
    for patch in patches {
        let name = patch.name();
        let file = scratch.join(&name);
        std::fs::write(&file, for_checkpatch(&patch.text))
            .map_err(|e| fail("upstream: checkpatch", e.to_string()))?;
        let mut cmd = Command::new("perl");
        cmd.current_dir(tree)
            .arg("scripts/checkpatch.pl")
            .args(["--strict", "--terse", "--no-summary"])
            .arg(&file);
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

/// The compiler and sparse diagnostics in a build log of `tree`, without the tree's path and
/// their line and column numbers (the patch moves lines), counted: `file: warning: text` ->
/// how many times.
fn diagnostics(log: &str, tree: &Path) -> BTreeMap<String, usize> {
    let root = format!("{}/", tree.display());
    let mut found = BTreeMap::new();
    for line in log.lines() {
        let line = line.replace(&root, "");
        let Some(at) = [": warning: ", ": error: "]
            .iter()
            .filter_map(|m| line.find(m))
            .min()
        else {
            continue;
        };
        let (place, message) = line.split_at(at);
        let file = place.split(':').next().unwrap_or(place);
        *found.entry(format!("{file}{message}")).or_insert(0) += 1;
    }
    found
}

/// What `after` has more of than `before`.
fn new_diagnostics(
    before: &BTreeMap<String, usize>,
    after: &BTreeMap<String, usize>,
) -> Vec<String> {
    after
        .iter()
        .filter(|(d, n)| **n > before.get(*d).copied().unwrap_or(0))
        .map(|(d, _)| d.clone())
        .collect()
}

/// A sparse that can check this kernel. 7.3's headers use `__typeof_unqual__`, which
/// Debian 12's sparse (0.6.4) does not know (kbuild then skips the check with a warning), so
/// sparse is built from the newest Debian source package (sid; 0.6.5~rc1 on 2026-12-02), once.
fn sparse(tree: &Path) -> StepResult<PathBuf> {
    let dir = cache_dir().join("sparse");
    let bin = dir.join("bin/sparse");
    if !bin.exists() {
        let apt = PrivateApt::sources("apt-sid-src", pins::SPARSE_SOURCE_SUITES)?;
        apt.update()?;
        let src = apt.source("sparse", &dir.join("src"))?;
        let jobs = std::thread::available_parallelism().map_or(2, |n| n.get());
        let mut build = Command::new("make");
        build
            .current_dir(&src)
            .arg(format!("-j{jobs}"))
            // Debian's packaging names its own compiler (gcc-16 in sid); the host's will do.
            .arg("CC=cc")
            .arg("sparse");
        step_logged(
            "upstream: build sparse",
            build,
            &dir.join("build.log"),
            Duration::from_secs(30),
        )?;
        std::fs::create_dir_all(dir.join("bin"))
            .and_then(|()| std::fs::copy(src.join("sparse"), &bin).map(drop))
            .map_err(|e| fail("upstream: build sparse", e.to_string()))?;
        let _ = std::fs::remove_dir_all(dir.join("src"));
    }
    // The kernel's own test of its checker: "1" if it can check this tree.
    let mut valid = Command::new("sh");
    valid
        .arg(tree.join("scripts/checker-valid.sh"))
        .arg(&bin)
        .arg("-m64");
    if output("upstream: sparse can check this kernel", valid)?.trim() != "1" {
        return Err(fail(
            "upstream: sparse",
            format!(
                "{} fails the kernel's scripts/checker-valid.sh; remove {} to rebuild it from a newer Debian source",
                bin.display(),
                dir.display()
            ),
        ));
    }
    Ok(bin)
}

/// Compile `obj` in `tree`/`build` with W=1 and `sparse`; the log's text.
fn compile_checked(
    tree: &Path,
    build: &Path,
    obj: &str,
    sparse: &Path,
    log: &Path,
) -> StepResult<String> {
    // Compiled every run: remove what a previous run left.
    let _ = std::fs::remove_file(build.join(obj.replace("amdgpu/../", "")));
    let mut cc = make(tree, build);
    cc.args(["W=1", "C=1"])
        .arg(format!("CHECK={}", sparse.display()))
        .arg(obj);
    let name = format!(
        "upstream: compile {obj} (W=1, sparse) in {}",
        tree.display()
    );
    step_logged(&name, cc, log, Duration::from_secs(30))?;
    let text = std::fs::read_to_string(log).map_err(|e| fail("upstream", e.to_string()))?;
    // kbuild skips the checker with only a warning when it cannot run it.
    let source = Path::new(obj)
        .with_extension("c")
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    if !text
        .lines()
        .any(|l| l.trim_start().starts_with("CHECK") && l.contains(&source))
    {
        return Err(fail(
            &name,
            format!("sparse did not check {source} (see {})", log.display()),
        ));
    }
    Ok(text)
}

/// The C file that checks libflush's KFD values against the patched header, for one target.
fn abi_assertions() -> String {
    use kfd_uapi::*;
    let size = size_of::<KfdHdpFlushArgs>();
    let version_size = size_of::<KfdGetVersionArgs>();
    let base = AMDKFD_IOCTL_BASE;
    let mut c = String::from(
        "/* Only the uAPI header: it must compile on its own. */\n#include <linux/kfd_ioctl.h>\n#include <stddef.h>\n",
    );
    let mut check = |cond: String, why: &str| {
        c.push_str(&format!(
            "_Static_assert({cond}, \"libflush/src/kfd_uapi.rs: {why}\");\n"
        ));
    };
    check(
        format!(
            "AMDKFD_IOC_HDP_FLUSH == _IOC(_IOC_READ | _IOC_WRITE, {base}, {:#x}, {size})",
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
        "_Alignof(struct kfd_ioctl_hdp_flush_args) == 4".into(),
        "struct alignment",
    );
    for (field, offset) in [
        ("gpu_id", std::mem::offset_of!(KfdHdpFlushArgs, gpu_id)),
        ("flags", std::mem::offset_of!(KfdHdpFlushArgs, flags)),
        ("status", std::mem::offset_of!(KfdHdpFlushArgs, status)),
    ] {
        check(
            format!("offsetof(struct kfd_ioctl_hdp_flush_args, {field}) == {offset}"),
            &format!("{field} offset"),
        );
    }
    check(
        format!("KFD_IOC_HDP_FLUSH_STATUS_NOT_NEEDED == {KFD_IOC_HDP_FLUSH_STATUS_NOT_NEEDED}"),
        "NOT_NEEDED",
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
        format!("AMDKFD_COMMAND_END == {:#x}", AMDKFD_IOC_HDP_FLUSH_NR + 1),
        "the flush is the last command",
    );
    c
}

/// The uAPI header alone, for 64- and 32-bit x86 user space, with libflush's values asserted:
/// the same layout for both (the struct has only `__u32`s).
fn uapi_header(build: &Path, scratch: &Path) -> StepResult {
    let file = scratch.join("kfd_abi.c");
    std::fs::write(&file, abi_assertions()).map_err(|e| fail("upstream", e.to_string()))?;
    let clang = format!("clang-{}", pins::LLVM);
    let mut resource = Command::new(&clang);
    resource.arg("-print-resource-dir");
    let resource = output("clang resource directory", resource)?;
    for target in ["x86_64-linux-gnu", "i386-linux-gnu"] {
        let mut cc = Command::new(&clang);
        cc.arg(format!("--target={target}"))
            .args(["-fsyntax-only", "-std=c11", "-Wall", "-Wextra", "-Werror"])
            // Nothing but the kernel's sanitized headers and the compiler's own.
            .arg("-nostdinc")
            .arg("-isystem")
            .arg(Path::new(resource.trim()).join("include"))
            .arg("-I")
            .arg(build.join("usr/include"))
            .arg(&file);
        output(
            &format!("upstream: linux/kfd_ioctl.h alone for {target}, against libflush's values"),
            cc,
        )?;
    }
    Ok(())
}

/// The mails whose authorship is still a placeholder (in From:, Signed-off-by: or the cover
/// letter's shortlog).
fn placeholder_authorship(patches: &[Patch]) -> Vec<String> {
    patches
        .iter()
        .filter(|p| {
            ["FIRSTNAME", "LASTNAME", "<EMAIL>"]
                .iter()
                .any(|t| p.text.contains(t))
        })
        .map(Patch::name)
        .collect()
}

/// The cover letter, if there is one.
fn cover_letter() -> StepResult<Option<Patch>> {
    let path = upstream_dir().join(COVER_LETTER);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(Patch { path, text })),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(fail("upstream", format!("{}: {e}", path.display()))),
    }
}

/// A mail's diffstat: the lines from the first ` path | N +-` line to the summary line.
fn diffstat(text: &str) -> Vec<&str> {
    let mut lines = text
        .lines()
        .skip_while(|l| !(l.starts_with(' ') && l.contains(" | ")));
    let mut stat: Vec<&str> = lines
        .by_ref()
        .take_while(|l| l.starts_with(' ') && l.contains(" | "))
        .collect();
    stat.extend(lines.next().filter(|l| l.contains("changed")));
    stat
}

/// The cover letter's diffstat must be the series' (one patch: the same lines).
fn cover_letter_matches(patches: &[Patch]) -> StepResult {
    let Some(cover) = cover_letter()? else {
        return Ok(());
    };
    let series: Vec<&str> = patches.iter().flat_map(|p| diffstat(&p.text)).collect();
    if patches.len() == 1 && diffstat(&cover.text) != series {
        return Err(fail(
            "upstream: cover letter",
            format!(
                "{COVER_LETTER}'s diffstat is not the patch's; regenerate it:\n{}",
                series.join("\n")
            ),
        ));
    }
    Ok(())
}

pub fn check() -> StepResult {
    let patches = series_in(&upstream_dir())?;
    cover_letter_matches(&patches)?;
    let source = source()?;
    let trees = prepared(&source, &patches)?;
    let logs = workspace_root().join("target/upstream");
    std::fs::create_dir_all(&logs).map_err(|e| fail("upstream", e.to_string()))?;
    checkpatch(&trees.patched.0, &patches, &logs)?;
    let sparse = sparse(&trees.patched.0)?;
    let mut objects: Vec<String> = patches
        .iter()
        .flat_map(|p| touched(&p.text))
        .filter_map(|f| object_target(&f))
        .collect();
    objects.sort();
    objects.dedup();
    for obj in &objects {
        let stem = Path::new(obj)
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let before = compile_checked(
            &trees.base.0,
            &trees.base.1,
            obj,
            &sparse,
            &logs.join(format!("{stem}.base.log")),
        )?;
        let after_log = logs.join(format!("{stem}.log"));
        let after = compile_checked(&trees.patched.0, &trees.patched.1, obj, &sparse, &after_log)?;
        let (before, after) = (
            diagnostics(&before, &trees.base.0),
            diagnostics(&after, &trees.patched.0),
        );
        let new = new_diagnostics(&before, &after);
        if !new.is_empty() {
            return Err(fail(
                &format!("upstream: compile {obj}"),
                format!(
                    "the patch adds {} diagnostic(s) under W=1 and sparse: {} (full log: {})",
                    new.len(),
                    new.join("; "),
                    after_log.display()
                ),
            ));
        }
        eprintln!(
            "==> upstream: {obj}: W=1 and sparse: {} diagnostic(s) before the patch, {} after, none new",
            before.values().sum::<usize>(),
            after.values().sum::<usize>()
        );
    }
    uapi_header(&trees.patched.1, &logs)?;
    let unsigned = placeholder_authorship(&patches);
    if !unsigned.is_empty() {
        eprintln!(
            "==> upstream: {} still carry the authorship placeholder `{AUTHOR_PLACEHOLDER}` (From: and Signed-off-by:): the sender fills it in; `cargo xtask upstream --format-for-sending DIR` refuses until then",
            unsigned.join(", ")
        );
    }
    eprintln!(
        "==> upstream: ok, {} patch(es) apply to {} {} (Linux {}), checkpatch --strict clean, {} with no new W=1/sparse diagnostic, linux/kfd_ioctl.h compiles alone for 32- and 64-bit x86 with libflush's values",
        patches.len(),
        pins::UPSTREAM_SOURCE_PKG,
        source.version,
        std::fs::read_to_string(source.tree.join("Makefile"))
            .map(|m| kernel_release(&m))
            .unwrap_or_default(),
        objects.join(", ")
    );
    Ok(())
}

/// Check, then copy the patches to `out` for `git send-email`, refusing while the authorship
/// is a placeholder or a patch lacks its author's Signed-off-by.
pub fn format_for_sending(out: &Path) -> StepResult {
    let patches = series_in(&upstream_dir())?;
    let cover = cover_letter()?;
    let mails: Vec<&Patch> = cover.iter().chain(&patches).collect();
    let unsigned: Vec<String> = mails
        .iter()
        .filter(|m| !placeholder_authorship(std::slice::from_ref(**m)).is_empty())
        .map(|m| m.name())
        .collect();
    if !unsigned.is_empty() {
        return Err(fail(
            "upstream: format for sending",
            format!(
                "{} still carry `{AUTHOR_PLACEHOLDER}`: put your name and address in their From: and Signed-off-by: lines (the Signed-off-by certifies the Developer's Certificate of Origin, which only you can do), then run this again",
                unsigned.join(", ")
            ),
        ));
    }
    for p in &patches {
        let from = p
            .text
            .lines()
            .find_map(|l| l.strip_prefix("From: "))
            .unwrap_or_default();
        if from.is_empty() || !p.text.contains(&format!("Signed-off-by: {from}")) {
            return Err(fail(
                "upstream: format for sending",
                format!(
                    "{}: no `Signed-off-by: {from}` matching its From: line",
                    p.name()
                ),
            ));
        }
    }
    check()?;
    std::fs::create_dir_all(out)
        .map_err(|e| fail("upstream: format for sending", e.to_string()))?;
    for p in mails {
        let to = out.join(p.name());
        std::fs::write(&to, &p.text).map_err(|e| {
            fail(
                "upstream: format for sending",
                format!("{}: {e}", to.display()),
            )
        })?;
        eprintln!("==> {}", to.display());
    }
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
        let patches = series_in(&upstream_dir()).unwrap();
        assert!(!patches.is_empty());
        for p in &patches {
            assert!(!touched(&p.text).is_empty(), "{} changes nothing", p.name());
        }
    }

    #[test]
    fn the_abi_check_names_every_value() {
        let c = abi_assertions();
        for needle in [
            "AMDKFD_IOC_HDP_FLUSH ==",
            "KFD_IOCTL_MINOR_VERSION == 24",
            "_IOC_READ | _IOC_WRITE, 75, 0x29, 12",
            "offsetof(struct kfd_ioctl_hdp_flush_args, status) == 8",
            "AMDKFD_COMMAND_END == 0x2a",
        ] {
            assert!(c.contains(needle), "{needle}:\n{c}");
        }
    }

    #[test]
    fn only_diagnostics_the_patch_adds_count_wherever_their_lines_moved() {
        let (base, patched) = (Path::new("/src/linux"), Path::new("/cache/linux"));
        let before = diagnostics(
            "/src/linux/drivers/gpu/drm/amd/amdkfd/kfd_chardev.c:10:5: warning: old one\n  CC x.o\n",
            base,
        );
        let same_moved = diagnostics(
            "/cache/linux/drivers/gpu/drm/amd/amdkfd/kfd_chardev.c:90:5: warning: old one\n",
            patched,
        );
        assert!(new_diagnostics(&before, &same_moved).is_empty());
        let more = diagnostics(
            "/cache/linux/drivers/gpu/drm/amd/amdkfd/kfd_chardev.c:90:5: warning: old one\n/cache/linux/drivers/gpu/drm/amd/amdkfd/kfd_chardev.c:95:1: error: new one\n/cache/linux/drivers/gpu/drm/amd/amdkfd/kfd_chardev.c:99:1: warning: old one\n",
            patched,
        );
        let new = new_diagnostics(&before, &more);
        assert_eq!(new.len(), 2, "{new:?}");
        assert!(new.iter().any(|d| d.ends_with("error: new one")));
    }

    #[test]
    fn checkpatch_sees_a_stand_in_and_sending_sees_the_placeholder() {
        let text = format!("From: {AUTHOR_PLACEHOLDER}\n\nSigned-off-by: {AUTHOR_PLACEHOLDER}\n");
        let seen = for_checkpatch(&text);
        assert!(!seen.contains(AUTHOR_PLACEHOLDER) && seen.contains("example.invalid"));
        let patch = Patch {
            path: PathBuf::from("0001-x.patch"),
            text,
        };
        assert_eq!(placeholder_authorship(&[patch]), ["0001-x.patch"]);
    }

    #[test]
    fn the_cover_letter_matches_the_series() {
        let cover = cover_letter()
            .unwrap()
            .expect("docs/upstream has a cover letter");
        let patches = series_in(&upstream_dir()).unwrap();
        let [patch] = patches.as_slice() else {
            panic!("the cover letter describes one patch; update it with the series")
        };
        assert_eq!(diffstat(&cover.text), diffstat(&patch.text));
        assert!(!diffstat(&patch.text).is_empty());
        let subject = patch
            .text
            .lines()
            .find_map(|l| l.strip_prefix("Subject: [RFC PATCH v2] "))
            .expect("an RFC v2 subject");
        assert!(cover.text.contains(&format!("  {subject}\n")), "{subject}");
        assert!(cover.text.contains("Subject: [RFC PATCH v2 0/1] "));
        assert_eq!(placeholder_authorship(&[cover]), [COVER_LETTER]);
    }

    #[test]
    fn the_release_is_read_from_the_makefile() {
        let mk = "# SPDX\nVERSION = 7\nPATCHLEVEL = 3\nSUBLEVEL = 4\nEXTRAVERSION =\n";
        assert_eq!(kernel_release(mk), "7.3.4");
    }
}
