//! Building the test kernels and the module against them, with a cache keyed by everything
//! that affects the result: source package, config fragments, toolchain pins.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::pins;
use crate::run::{fail, output, step, step_logged, workspace_root, StepResult};
use crate::setup::{bindgen, cache_dir, host_tools};

/// A guest: an architecture, and for x86_64 a debug flavour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// x86_64 with 4K pages.
    X86_64,
    /// arm64 with 64K pages: the page size this project is about.
    Arm64,
    /// x86_64 with lockdep, atomic-sleep checking, KASAN and object debugging
    /// (`kmod/testing/debug.config`).
    X86_64Debug,
    /// arm64 with 64K pages and the same debugging.
    Arm64Debug,
}

impl Arch {
    /// Every guest there is.
    pub const ALL: [Arch; 4] = [
        Arch::X86_64,
        Arch::Arm64,
        Arch::X86_64Debug,
        Arch::Arm64Debug,
    ];

    /// Our name for it.
    pub fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Arm64 => "arm64",
            Arch::X86_64Debug => "x86_64-debug",
            Arch::Arm64Debug => "arm64-debug",
        }
    }

    /// The config fragments merged over common.config, in order.
    fn fragments(self) -> &'static [&'static str] {
        match self {
            Arch::X86_64 => &["x86_64.config"],
            Arch::Arm64 => &["arm64.config"],
            Arch::X86_64Debug => &["x86_64.config", "debug.config"],
            Arch::Arm64Debug => &["arm64.config", "debug.config"],
        }
    }

    /// Whether it is an arm64 kernel (else x86_64).
    pub fn is_arm64(self) -> bool {
        matches!(self, Arch::Arm64 | Arch::Arm64Debug)
    }

    /// The kernel's ARCH=.
    pub fn kernel_arch(self) -> &'static str {
        if self.is_arm64() {
            "arm64"
        } else {
            "x86"
        }
    }

    /// The boot image target and its path in the build directory.
    fn image(self) -> (&'static str, &'static str) {
        if self.is_arm64() {
            ("Image", "arch/arm64/boot/Image")
        } else {
            ("bzImage", "arch/x86/boot/bzImage")
        }
    }

    /// The Rust target of guest user space.
    pub fn rust_target(self) -> &'static str {
        if self.is_arm64() {
            "aarch64-unknown-linux-gnu"
        } else {
            "x86_64-unknown-linux-gnu"
        }
    }

    /// Whether this is a debug kernel (slower; reports locking and memory bugs).
    pub fn is_debug(self) -> bool {
        matches!(self, Arch::X86_64Debug | Arch::Arm64Debug)
    }

    /// Parse `x86_64` / `arm64`.
    pub fn parse(s: &str) -> Option<Arch> {
        Arch::ALL.into_iter().find(|a| a.name() == s)
    }
}

/// A built kernel.
pub struct Kernel {
    /// The arch.
    pub arch: Arch,
    /// The source tree.
    pub src: PathBuf,
    /// The O= build directory (holds .config, Module.symvers).
    pub build: PathBuf,
    /// The boot image.
    pub image: PathBuf,
    /// The bindgen binary used.
    pub bindgen: PathBuf,
}

impl Kernel {
    /// `make` in the source tree with our toolchain variables.
    pub fn make(&self) -> Command {
        make(&self.src, &self.build, self.arch, &self.bindgen)
    }
}

fn make(src: &Path, build: &Path, arch: Arch, bindgen: &Path) -> Command {
    let mut cmd = Command::new("make");
    cmd.current_dir(src)
        .env("LIBCLANG_PATH", format!("/usr/lib/llvm-{}/lib", pins::LLVM))
        .arg(format!("ARCH={}", arch.kernel_arch()))
        .arg(format!("LLVM=-{}", pins::LLVM))
        .arg("RUSTC=/usr/bin/rustc")
        .arg("RUSTDOC=/usr/bin/rustdoc")
        .arg(format!("BINDGEN={}", bindgen.display()))
        .arg("RUST_LIB_SRC=/usr/lib/rustlib/src/rust/library")
        .arg(format!("O={}", build.display()));
    cmd
}

fn testing_dir() -> PathBuf {
    workspace_root().join("kmod/testing")
}

fn read(path: &Path) -> StepResult<String> {
    std::fs::read_to_string(path).map_err(|e| fail("kernel", format!("{}: {e}", path.display())))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Identity of the source tarball: package version, size, mtime (hashing 150 MB each run
/// would cost more than it saves).
fn source_identity() -> StepResult<String> {
    let meta = std::fs::metadata(pins::KERNEL_TARBALL)
        .map_err(|e| fail("kernel source", format!("{}: {e}", pins::KERNEL_TARBALL)))?;
    let mut cmd = Command::new("dpkg-query");
    cmd.args(["-W", "-f=${Version}", pins::KERNEL_SOURCE_PKG]);
    let version = output("kernel source", cmd)?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    Ok(format!(
        "{} {} {} {mtime}",
        pins::KERNEL_SOURCE_PKG,
        version,
        meta.len()
    ))
}

/// The unpacked source tree, shared by all arches; not modified (the module generates the
/// bindings it needs beyond the kernel crate's: kmod/Kbuild).
pub fn source_tree() -> StepResult<PathBuf> {
    let mut h = Sha256::new();
    h.update(source_identity()?);
    let key = hex(&h.finalize()[..8]);
    let dir = cache_dir().join(format!("src-{key}"));
    let tree = dir.join(pins::KERNEL_TARBALL_DIR);
    if dir.join(".complete").exists() {
        eprintln!("==> kernel source: cached at {}", tree.display());
        return Ok(tree);
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| fail("kernel source", e.to_string()))?;
    let mut cmd = Command::new("tar");
    cmd.arg("xf").arg(pins::KERNEL_TARBALL).arg("-C").arg(&dir);
    step("unpack kernel source", cmd)?;
    std::fs::write(dir.join(".complete"), "").map_err(|e| fail("kernel source", e.to_string()))?;
    Ok(tree)
}

/// Config lines a fragment asks for, to check that olddefconfig kept them.
fn wanted_options(fragment: &str) -> Vec<&str> {
    fragment
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("CONFIG_"))
        .collect()
}

/// Build (or reuse) the kernel for `arch`.
pub fn ensure_kernel(arch: Arch) -> StepResult<Kernel> {
    host_tools()?;
    let bindgen = bindgen()?;
    let src = source_tree()?;
    let mut parts = vec![read(&testing_dir().join("common.config"))?];
    for name in arch.fragments() {
        parts.push(read(&testing_dir().join(name))?);
    }
    let fragments = parts.join("\n");
    let mut h = Sha256::new();
    h.update(src.to_string_lossy().as_bytes());
    let pins = [pins::RUSTC_WEB_UPSTREAM, pins::LLVM, pins::BINDGEN_CLI];
    for part in parts.iter().map(String::as_str).chain(pins) {
        h.update(part);
        h.update([0]);
    }
    let key = hex(&h.finalize()[..8]);
    let build = cache_dir().join(format!("build-{}-{key}", arch.name()));
    let (target, image_rel) = arch.image();
    let kernel = Kernel {
        arch,
        src: src.clone(),
        image: build.join(image_rel),
        build: build.clone(),
        bindgen: bindgen.clone(),
    };
    if build.join(".complete").exists() && kernel.image.exists() {
        eprintln!("==> kernel {}: cached at {}", arch.name(), build.display());
        return Ok(kernel);
    }
    let _ = std::fs::remove_dir_all(&build);
    std::fs::create_dir_all(&build).map_err(|e| fail("kernel", e.to_string()))?;

    let quiet = Duration::from_secs(60);
    let mut cmd = kernel.make();
    cmd.arg("tinyconfig");
    step_logged(
        &format!("kernel {} tinyconfig", arch.name()),
        cmd,
        &build.join("config.log"),
        quiet,
    )?;
    let fragment = build.join("hdpflush.config");
    std::fs::write(&fragment, &fragments).map_err(|e| fail("kernel", e.to_string()))?;
    let mut cmd = Command::new(src.join("scripts/kconfig/merge_config.sh"));
    cmd.current_dir(&src)
        .env("ARCH", arch.kernel_arch())
        .arg("-m")
        .arg("-O")
        .arg(&build)
        .arg(build.join(".config"))
        .arg(&fragment);
    step_logged(
        &format!("kernel {} merge config", arch.name()),
        cmd,
        &build.join("merge.log"),
        quiet,
    )?;
    let mut cmd = kernel.make();
    cmd.arg("olddefconfig");
    step_logged(
        &format!("kernel {} olddefconfig", arch.name()),
        cmd,
        &build.join("olddefconfig.log"),
        quiet,
    )?;
    let config = read(&build.join(".config"))?;
    let dropped: Vec<&str> = wanted_options(&fragments)
        .into_iter()
        .filter(|o| !config.lines().any(|l| l.trim() == *o))
        .collect();
    if !dropped.is_empty() {
        return Err(fail(
            &format!("kernel {} config", arch.name()),
            format!(
                "olddefconfig dropped {} (a dependency is missing from kmod/testing/*.config)",
                dropped.join(", ")
            ),
        ));
    }

    let jobs = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut cmd = kernel.make();
    cmd.arg(format!("-j{jobs}")).arg(target).arg("modules");
    step_logged(
        &format!("kernel {} build", arch.name()),
        cmd,
        &build.join("build.log"),
        Duration::from_secs(30),
    )?;
    std::fs::write(build.join(".complete"), "").map_err(|e| fail("kernel", e.to_string()))?;
    Ok(kernel)
}

/// Which module: the one users install, or the one the guests test with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// No simulator, no emulated test device, no test parameters.
    Production,
    /// Kbuild's `HDP_TEST=1`: with them.
    Test,
}

impl Variant {
    /// The scratch directory's suffix and the name's.
    pub fn suffix(self) -> &'static str {
        match self {
            Self::Production => "",
            Self::Test => "-test",
        }
    }

    /// The make variable that selects it.
    pub fn make_arg(self) -> &'static str {
        match self {
            Self::Production => "HDP_TEST=",
            Self::Test => "HDP_TEST=1",
        }
    }

    /// The name the guests load it by.
    pub fn guest_name(self) -> &'static str {
        match self {
            Self::Production => "hdp_flush-production.ko",
            Self::Test => "hdp_flush.ko",
        }
    }
}

/// Build `kmod/` (`variant` of it) against `kernel` in a scratch copy (so arches and variants
/// do not share objects); fail on any compiler warning. Returns the `.ko`.
pub fn build_kmod(kernel: &Kernel, variant: Variant) -> StepResult<PathBuf> {
    let scratch = format!("{}{}", kernel.arch.name(), variant.suffix());
    let name = format!("kmod {scratch}");
    let dir = kmod_copy(&scratch)?;
    let mut cmd = kernel.make();
    cmd.arg(format!("M={}", dir.display()))
        .arg(variant.make_arg())
        .arg("modules");
    let log = dir.join("build.log");
    step_logged(&name, cmd, &log, Duration::from_secs(30))?;
    built_clean(&name, &dir)
}

/// kmod/'s sources copied into target/kmod/<name>/, a fresh directory to build in.
pub fn kmod_copy(name: &str) -> StepResult<PathBuf> {
    let what = format!("kmod {name}");
    let dir = workspace_root().join("target/kmod").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| fail(&what, e.to_string()))?;
    let kmod = workspace_root().join("kmod");
    for entry in std::fs::read_dir(&kmod).map_err(|e| fail(&what, e.to_string()))? {
        let path = entry.map_err(|e| fail(&what, e.to_string()))?.path();
        let keep = path
            .extension()
            .is_some_and(|x| x == "rs" || x == "h" || x == "allow")
            || path.file_name().is_some_and(|n| n == "Kbuild");
        if keep {
            let to = dir.join(path.file_name().unwrap_or_default());
            std::fs::copy(&path, &to)
                .map_err(|e| fail(&what, format!("{}: {e}", path.display())))?;
        }
    }
    Ok(dir)
}

/// The module built in `dir`, refused if its build log (`dir`/build.log) has a warning.
pub fn built_clean(name: &str, dir: &Path) -> StepResult<PathBuf> {
    let log = dir.join("build.log");
    let text = read(&log)?;
    let warnings: Vec<&str> = text.lines().filter(|l| l.contains("warning")).collect();
    if !warnings.is_empty() {
        eprintln!("{}", crate::run::tail(&log, 60));
        return Err(fail(
            name,
            format!(
                "{} warning line(s); the module must build clean",
                warnings.len()
            ),
        ));
    }
    let ko = dir.join("hdp_flush.ko");
    ko.exists()
        .then(|| ko.clone())
        .ok_or_else(|| fail(name, format!("{} was not produced", ko.display())))
}
