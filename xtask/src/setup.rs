//! Installing what the kernel and VM steps need: Debian packages (pinned where it matters),
//! bindgen-cli from crates.io, and the arm64 pieces for the 64K guest.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::pins;
use crate::run::{command, fail, output, step, StepResult};

/// Where builds are cached: `$HDPFLUSH_CACHE`, else `~/.cache/hdpflush`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("HDPFLUSH_CACHE") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
    home.join(".cache/hdpflush")
}

fn is_root() -> bool {
    output("id", command("id", &["-u"])).is_ok_and(|s| s.trim() == "0")
}

/// The installed version of `pkg`, if installed.
fn installed_version(pkg: &str) -> Option<String> {
    let mut cmd = Command::new("dpkg-query");
    cmd.args(["-W", "-f=${db:Status-Abbrev}|${Version}", pkg]);
    let out = output("dpkg-query", cmd).ok()?;
    let (status, version) = out.split_once('|')?;
    status.starts_with("ii").then(|| version.trim().to_owned())
}

static APT_UPDATED: AtomicBool = AtomicBool::new(false);

/// Refresh package lists. A failure is only a warning: a mirror in the middle of a sync
/// fails some index while the packages we need still install from the lists we have; if they
/// do not, the install step fails and says which.
fn apt_update(force: bool) -> StepResult {
    let done_before = APT_UPDATED.swap(true, Ordering::SeqCst);
    if force || !done_before {
        let mut cmd = Command::new("apt-get");
        cmd.args(["update", "-qq"]);
        if let Err(f) = step("apt-get update", cmd) {
            eprintln!(
                "==> warning: {}; continuing with the package lists at hand",
                f.why
            );
        }
    }
    Ok(())
}

/// Install `specs` (`name` or `name=version`) unless already there.
fn apt_install(what: &str, specs: &[String]) -> StepResult {
    if specs.is_empty() {
        return Ok(());
    }
    if !is_root() {
        return Err(fail(
            what,
            format!(
                "missing packages; install them with: sudo apt-get install {}",
                specs.join(" ")
            ),
        ));
    }
    apt_update(false)?;
    let mut cmd = Command::new("apt-get");
    cmd.env("DEBIAN_FRONTEND", "noninteractive")
        .args([
            "install",
            "-y",
            "-q",
            "--no-install-recommends",
            "--allow-downgrades",
        ])
        .args(specs);
    step(what, cmd)
}

/// The Debian revision of rustc-web for the pinned upstream version.
fn rustc_web_version() -> StepResult<String> {
    let find = || -> StepResult<Option<String>> {
        let mut cmd = Command::new("apt-cache");
        cmd.args(["madison", "rustc-web"]);
        let out = output("apt-cache madison rustc-web", cmd)?;
        Ok(out
            .lines()
            .filter_map(|l| l.split('|').nth(1).map(str::trim))
            .find(|v| v.starts_with(pins::RUSTC_WEB_UPSTREAM))
            .map(str::to_owned))
    };
    if let Some(v) = find()? {
        return Ok(v);
    }
    if is_root() {
        apt_update(false)?;
        if let Some(v) = find()? {
            return Ok(v);
        }
    }
    Err(fail(
        "rustc-web",
        format!(
            "no rustc-web {} revision is offered by apt (see `apt-cache madison rustc-web`); update RUSTC_WEB_UPSTREAM in xtask/src/pins.rs to one that is",
            pins::RUSTC_WEB_UPSTREAM
        ),
    ))
}

/// Host packages for kernel builds and QEMU, and the pinned Rust toolchain for the kernel.
pub fn host_tools() -> StepResult {
    let mut specs: Vec<String> = pins::HOST_PACKAGES
        .iter()
        .filter(|p| installed_version(p).is_none())
        .map(|p| (*p).to_owned())
        .collect();
    let have_pinned_rustc = pins::RUSTC_WEB_PACKAGES
        .iter()
        .all(|p| installed_version(p).is_some_and(|v| v.starts_with(pins::RUSTC_WEB_UPSTREAM)));
    if !have_pinned_rustc {
        let v = rustc_web_version()?;
        specs.extend(pins::RUSTC_WEB_PACKAGES.iter().map(|p| format!("{p}={v}")));
    }
    apt_install("install host packages", &specs)
}

/// Install the Debian package of each `(command, package)` whose command is not on PATH.
pub fn commands(needed: &[(&str, &str)]) -> StepResult {
    let missing: Vec<String> = needed
        .iter()
        .filter(|(command, _)| output("which", crate::run::command("which", &[command])).is_err())
        .map(|(_, package)| (*package).to_owned())
        .collect();
    apt_install("install tools", &missing)
}

/// bindgen-cli, installed from crates.io into the cache once.
pub fn bindgen() -> StepResult<PathBuf> {
    let root = cache_dir().join(format!("bindgen-{}", pins::BINDGEN_CLI));
    let bin = root.join("bin/bindgen");
    if bin.exists() {
        return Ok(bin);
    }
    let mut cmd = crate::run::cargo();
    cmd.args(["install", "--locked", "--quiet"])
        .arg(format!("bindgen-cli@{}", pins::BINDGEN_CLI))
        .arg("--root")
        .arg(&root);
    step("install bindgen-cli", cmd)?;
    Ok(bin)
}

/// Debian's arm64 Rust std (same pinned version) and the cross linker, for static arm64
/// guest binaries.
pub fn arm64_cross() -> StepResult {
    let foreign = output("dpkg", {
        let mut c = Command::new("dpkg");
        c.arg("--print-foreign-architectures");
        c
    })?;
    if !foreign.lines().any(|a| a.trim() == "arm64") {
        if !is_root() {
            return Err(fail(
                "arm64",
                "run `sudo dpkg --add-architecture arm64` first",
            ));
        }
        let mut cmd = Command::new("dpkg");
        cmd.args(["--add-architecture", "arm64"]);
        step("dpkg --add-architecture arm64", cmd)?;
        apt_update(true)?;
    }
    let mut specs: Vec<String> = pins::ARM64_CROSS_PACKAGES
        .iter()
        .filter(|p| installed_version(p).is_none())
        .map(|p| (*p).to_owned())
        .collect();
    let std_arm64 = "libstd-rust-web-dev:arm64";
    if !installed_version(std_arm64).is_some_and(|v| v.starts_with(pins::RUSTC_WEB_UPSTREAM)) {
        specs.push(format!("{std_arm64}={}", rustc_web_version()?));
    }
    apt_install("install arm64 cross packages", &specs)
}

/// Where Debian's rustc looks for powerpc64le's std.
pub const PPC64LE_STD: &str = "/usr/lib/rustlib/powerpc64le-unknown-linux-gnu/lib";

/// The powerpc64le cross linker, C library and qemu-user, and Debian's powerpc64le Rust std
/// (the pinned version). The std is downloaded with a private apt configuration and unpacked,
/// never installed: adding ppc64el to dpkg would make `apt-get update` fetch every ppc64el
/// index, and one of them (the security suite's) fails to download on these machines.
pub fn ppc64le_cross() -> StepResult {
    let specs: Vec<String> = pins::PPC64LE_CROSS_PACKAGES
        .iter()
        .filter(|p| installed_version(p).is_none())
        .map(|p| (*p).to_owned())
        .collect();
    apt_install("install powerpc64le cross packages", &specs)?;
    let have_std = std::fs::read_dir(PPC64LE_STD).is_ok_and(|mut d| {
        d.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().starts_with("libstd-")))
    });
    if have_std {
        return Ok(());
    }
    if !is_root() {
        return Err(fail(
            "powerpc64le std",
            format!("{PPC64LE_STD} is missing; run `cargo xtask test` as root once to unpack Debian's libstd-rust-web-dev:ppc64el there"),
        ));
    }
    let deb = download_foreign("libstd-rust-web-dev", "ppc64el", &rustc_web_version()?)?;
    let mut cmd = Command::new("dpkg-deb");
    cmd.arg("-x").arg(&deb).arg("/");
    step("unpack powerpc64le std", cmd)
}

/// Download `pkg:arch=version` into the cache with apt's lists for that architecture kept
/// apart from the system's: the suites the system's Debian source lists, minus security.
fn download_foreign(pkg: &str, arch: &str, version: &str) -> StepResult<PathBuf> {
    let apt = PrivateApt::new(
        &format!("apt-{arch}"),
        &["bookworm", "bookworm-updates"],
        arch,
    )?;
    apt.update()?;
    apt.download(pkg, &format!("{pkg}:{arch}={version}"), version)
}

/// The system's Debian mirror, from its apt sources.
pub fn mirror_uri() -> StepResult<String> {
    const SOURCES: &str = "/etc/apt/sources.list.d/debian.sources";
    let sources = std::fs::read_to_string(SOURCES)
        .map_err(|e| fail("Debian mirror", format!("{SOURCES}: {e}")))?;
    sources
        .lines()
        .find_map(|l| l.strip_prefix("URIs:"))
        .and_then(|u| u.split_whitespace().next())
        .map(str::to_owned)
        .ok_or_else(|| fail("Debian mirror", format!("no URIs: line in {SOURCES}")))
}

/// apt with a configuration of its own under `$HDPFLUSH_CACHE/<name>`: `suites` of the
/// system's Debian mirror, for amd64 and one more architecture. Nothing is installed and the
/// system's package lists are not touched.
pub struct PrivateApt {
    dir: PathBuf,
    list: PathBuf,
    arch: String,
}

impl PrivateApt {
    pub fn new(name: &str, suites: &[&str], arch: &str) -> StepResult<Self> {
        Self::with_lines(name, arch, |uri| {
            suites
                .iter()
                .map(|suite| format!("deb [arch={arch}] {uri} {suite} main\n"))
                .collect()
        })
    }

    /// Source packages only, from `suites`.
    pub fn sources(name: &str, suites: &[&str]) -> StepResult<Self> {
        Self::with_lines(name, "amd64", |uri| {
            suites
                .iter()
                .map(|suite| format!("deb-src {uri} {suite} main\n"))
                .collect()
        })
    }

    fn with_lines(name: &str, arch: &str, lines: impl Fn(&str) -> String) -> StepResult<Self> {
        let what = format!("apt configuration {name}");
        let dir = cache_dir().join(name);
        for sub in ["lists/partial", "cache/archives/partial", "debs"] {
            std::fs::create_dir_all(dir.join(sub)).map_err(|e| fail(&what, e.to_string()))?;
        }
        let uri = mirror_uri().map_err(|f| fail(&what, f.why))?;
        let list = dir.join("sources.list");
        std::fs::write(&list, lines(&uri)).map_err(|e| fail(&what, e.to_string()))?;
        Ok(Self {
            dir,
            list,
            arch: arch.to_owned(),
        })
    }

    fn command(&self, program: &str, sub: &[&str]) -> Command {
        let mut cmd = Command::new(program);
        cmd.arg("-q")
            .arg(format!("-oDir::Etc::SourceList={}", self.list.display()))
            .arg("-oDir::Etc::SourceParts=/nonexistent")
            .arg(format!(
                "-oDir::State::Lists={}",
                self.dir.join("lists").display()
            ))
            .arg(format!("-oDir::Cache={}", self.dir.join("cache").display()))
            .arg("-oAPT::Architectures::=amd64")
            .arg(format!("-oAPT::Architectures::={}", self.arch))
            .arg("-oAPT::Sandbox::User=root")
            .args(sub);
        cmd
    }

    pub fn update(&self) -> StepResult {
        let name = self.dir.file_name().unwrap_or_default().to_string_lossy();
        step(
            &format!("apt-get update ({name} lists)"),
            self.command("apt-get", &["update"]),
        )
    }

    /// The version of `pkg` apt would pick from these suites.
    pub fn candidate(&self, pkg: &str) -> StepResult<String> {
        let out = output(
            &format!("apt-cache policy {pkg}"),
            self.command("apt-cache", &["policy", pkg]),
        )?;
        out.lines()
            .find_map(|l| l.trim().strip_prefix("Candidate:"))
            .map(str::trim)
            .filter(|v| *v != "(none)")
            .map(str::to_owned)
            .ok_or_else(|| {
                fail(
                    &format!("apt-cache policy {pkg}"),
                    format!("no candidate for {pkg}: {out}"),
                )
            })
    }

    /// Download and unpack the newest source of `pkg` (without building it) into `into`;
    /// returns the unpacked directory.
    pub fn source(&self, pkg: &str, into: &Path) -> StepResult<PathBuf> {
        let what = format!("apt-get source {pkg}");
        let _ = std::fs::remove_dir_all(into);
        std::fs::create_dir_all(into).map_err(|e| fail(&what, e.to_string()))?;
        let mut get = self.command("apt-get", &["source", pkg]);
        get.current_dir(into);
        step(&what, get)?;
        std::fs::read_dir(into)
            .map_err(|e| fail(&what, e.to_string()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.is_dir())
            .ok_or_else(|| fail(&what, format!("nothing unpacked in {}", into.display())))
    }

    /// Download `spec` (of package `pkg`, at `version`) into `debs/`; returns the `.deb`.
    pub fn download(&self, pkg: &str, spec: &str, version: &str) -> StepResult<PathBuf> {
        let what = format!("download {spec}");
        let debs = self.dir.join("debs");
        let mut get = self.command("apt-get", &["download", spec]);
        get.current_dir(&debs);
        step(&what, get)?;
        // apt names the file pkg_version_arch.deb with the epoch's colon escaped.
        let version = version.replace(':', "%3a");
        std::fs::read_dir(&debs)
            .map_err(|e| fail(&what, e.to_string()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| {
                p.file_name().is_some_and(|f| {
                    f.to_string_lossy()
                        .starts_with(&format!("{pkg}_{version}_"))
                })
            })
            .ok_or_else(|| {
                fail(
                    &what,
                    format!("no {pkg} {version} package in {}", debs.display()),
                )
            })
    }
}

/// A static arm64 busybox, unpacked into the cache without installing it.
pub fn busybox_arm64() -> StepResult<PathBuf> {
    let dir = cache_dir().join("busybox-arm64");
    let bin = dir.join("bin/busybox");
    if bin.exists() {
        return Ok(bin);
    }
    std::fs::create_dir_all(&dir).map_err(|e| fail("busybox arm64", e.to_string()))?;
    let mut cmd = Command::new("apt-get");
    cmd.current_dir(&dir)
        .args(["download", "busybox-static:arm64"]);
    step("download busybox-static:arm64", cmd)?;
    let deb = std::fs::read_dir(&dir)
        .map_err(|e| fail("busybox arm64", e.to_string()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or_else(|| fail("busybox arm64", "apt-get download left no .deb"))?;
    let mut cmd = Command::new("dpkg-deb");
    cmd.arg("-x").arg(&deb).arg(&dir);
    step("unpack busybox-static:arm64", cmd)?;
    bin.exists()
        .then_some(bin)
        .ok_or_else(|| fail("busybox arm64", "the package has no bin/busybox"))
}

/// The host's static busybox.
pub fn busybox_host() -> StepResult<PathBuf> {
    let p = Path::new("/bin/busybox");
    p.exists().then(|| p.to_path_buf()).ok_or_else(|| {
        fail(
            "busybox",
            "/bin/busybox missing: apt-get install busybox-static",
        )
    })
}
