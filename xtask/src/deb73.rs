//! Debian 13's backports kernel as shipped (`linux-binary-<abi>-amd64`), and what an out-of-tree
//! Rust module needs to build against it.
//!
//! The package's headers (`linux-headers-<abi>-amd64`) carry `.config` and `Module.symvers` but
//! no Rust metadata, and that metadata can only come from the compiler the kernel was built
//! with (its `CONFIG_RUSTC_VERSION_TEXT`), which Debian 12 does not have. So: a Debian 13 root
//! (mmdebstrap, with trixie's rustc, bindgen, clang and gcc), Debian's `linux-source` copied
//! into it, the package's `.config`, `make modules_prepare` with the package's release (so
//! vermagic matches), and the package's `Module.symvers` (so modpost resolves every symbol
//! against the kernel that will load the module). The kernel tree is not modified. Everything
//! is cached under `$HDPFLUSH_CACHE`: the root keyed by its package list, the prepared tree by
//! the kernel package's version and the source's.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::kernel::{built_clean, kmod_copy, Variant};
use crate::pins;
use crate::run::{fail, output, step, step_logged, Failure, StepResult};
use crate::setup::{cache_dir, commands, mirror_uri, PrivateApt};

/// How often a long step says where it is.
const EVERY: Duration = Duration::from_secs(20);

/// The Debian kernel a module can be built for and booted on.
pub struct DebKernel {
    /// The Debian 13 root whose toolchain builds modules for it.
    pub root: PathBuf,
    /// The prepared kernel tree, as a path inside `root`.
    pub tree: String,
    /// The package's `uname -r`.
    pub release: String,
    /// The package's kernel image.
    pub vmlinuz: PathBuf,
    /// The package's version, e.g. `7.3.4-1~bpo13+1`.
    pub version: String,
    /// Modules of the package the guest tests need loaded (built in on our test kernels),
    /// decompressed.
    pub test_modules: Vec<PathBuf>,
}

/// What the guest tests need that Debian builds as modules: pci-stub (the stand-in owner of an
/// emulated device when a test unbinds it).
const TEST_MODULES: &[&str] = &["kernel/drivers/pci/pci-stub.ko"];

/// Short hex digest of `parts`, for cache keys.
fn key(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    h.finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn io_fail(what: &str, path: &Path, e: std::io::Error) -> Failure {
    fail(what, format!("{}: {e}", path.display()))
}

/// A command run inside `root`, in a private mount namespace with its own /proc (rustc finds
/// its sysroot through /proc/self/exe); nothing stays mounted when it ends.
pub fn in_root(root: &Path, script: &str) -> Command {
    let mut cmd = Command::new("unshare");
    cmd.arg("--mount")
        .arg("--fork")
        .arg("/bin/sh")
        .arg("-ec")
        .arg(r#"mount -t proc proc "$1/proc"; exec chroot "$1" /bin/sh -ec "$2""#)
        .arg("in_root")
        .arg(root)
        .arg(format!(
            "export PATH=/usr/sbin:/usr/bin:/sbin:/bin; {script}"
        ));
    cmd
}

/// The Debian 13 root with the kernel's toolchain, made once per package list.
fn root() -> StepResult<PathBuf> {
    let packages = pins::DEB13_ROOT_PACKAGES.join(",");
    let dir = cache_dir().join(format!(
        "deb13-root-{}",
        key(&[&packages, pins::DEB13_SUITE])
    ));
    if dir.join(".complete").exists() {
        eprintln!("==> Debian 13 root: cached at {}", dir.display());
        return Ok(dir);
    }
    commands(&[("mmdebstrap", "mmdebstrap")])?;
    let uri = mirror_uri()?;
    let _ = std::fs::remove_dir_all(&dir);
    let mut mm = Command::new("mmdebstrap");
    mm.arg("--variant=apt")
        .arg(format!("--include={packages}"))
        .arg(pins::DEB13_SUITE)
        .arg(&dir);
    for suite in [pins::DEB13_SUITE]
        .iter()
        .chain(pins::UPSTREAM_SUITES.iter())
    {
        mm.arg(format!("deb {uri} {suite} main"));
    }
    step_logged(
        "Debian 13 root (mmdebstrap, about a minute and a half)",
        mm,
        &cache_dir().join("deb13-root.log"),
        EVERY,
    )?;
    std::fs::write(dir.join(".complete"), "").map_err(|e| io_fail("deb13 root", &dir, e))?;
    Ok(dir)
}

/// `CONFIG_<name>`'s string value in a kernel `.config`.
fn config_text(config: &str, name: &str) -> Option<String> {
    config
        .lines()
        .find_map(|l| l.strip_prefix(&format!("CONFIG_{name}=")))
        .map(|v| v.trim_matches('"').to_owned())
}

/// The first line `script` prints inside `root`.
fn root_line(root: &Path, script: &str) -> StepResult<String> {
    let out = output(script, in_root(root, script))?;
    Ok(out.lines().next().unwrap_or_default().trim().to_owned())
}

/// Refuse a root whose rustc or bindgen is not the one the kernel was built with: Rust
/// metadata from another compiler does not load.
fn same_toolchain(root: &Path, config: &str) -> StepResult {
    for (name, command) in [
        ("RUSTC_VERSION_TEXT", "rustc --version"),
        ("BINDGEN_VERSION_TEXT", "bindgen --version"),
    ] {
        let want = config_text(config, name).unwrap_or_default();
        let have = root_line(root, command)?;
        if want.is_empty() || !want.starts_with(&have) && !have.starts_with(&want) {
            return Err(fail(
                "Debian 13 root",
                format!(
                    "the kernel was built with `{want}` (CONFIG_{name}), the root has `{have}`: \
                     update DEB13_ROOT_PACKAGES or the kernel pin in xtask/src/pins.rs"
                ),
            ));
        }
    }
    Ok(())
}

/// Unpack `deb` into `into`.
fn unpack(deb: &Path, into: &Path) -> StepResult {
    std::fs::create_dir_all(into).map_err(|e| io_fail("unpack", into, e))?;
    let mut x = Command::new("dpkg-deb");
    x.arg("-x").arg(deb).arg(into);
    step(&format!("unpack {}", deb.display()), x)
}

/// The Debian kernel, its image, and a tree prepared to build modules for it.
pub fn ensure() -> StepResult<DebKernel> {
    let abi = pins::DEB_KERNEL_ABI;
    let flavour = pins::DEB_KERNEL_FLAVOUR;
    let release = format!("{abi}-{flavour}");
    let binary = format!("linux-binary-{release}");
    let headers = format!("linux-headers-{release}");
    let apt = PrivateApt::new("apt-trixie", pins::UPSTREAM_SUITES, "amd64")?;
    apt.update()?;
    let version = apt.candidate(&binary)?;
    let source = crate::upstream::source()?;
    let root = root()?;
    let dir = cache_dir().join(format!(
        "deb73-{}",
        key(&[
            &version,
            &source.version,
            &root.display().to_string(),
            &TEST_MODULES.join(",")
        ])
    ));
    let tree = "/build/linux".to_owned();
    let done = DebKernel {
        root: root.clone(),
        tree: tree.clone(),
        release: release.clone(),
        vmlinuz: dir.join("vmlinuz"),
        version: version.clone(),
        test_modules: TEST_MODULES
            .iter()
            .map(|m| {
                dir.join("modules")
                    .join(Path::new(m).file_name().unwrap_or_default())
            })
            .collect(),
    };
    if dir.join(".complete").exists() && root.join("build/linux/.complete").exists() {
        eprintln!(
            "==> Debian kernel {release} ({version}): prepared, cached at {}",
            dir.display()
        );
        return Ok(done);
    }
    let _ = std::fs::remove_dir_all(&dir);
    let modules_pkg = format!("linux-modules-{release}");
    for pkg in [&binary, &headers, &modules_pkg] {
        let deb = apt.download(pkg, &format!("{pkg}={version}"), &version)?;
        unpack(&deb, &dir.join("pkg"))?;
    }
    let pkg = dir.join("pkg");
    // Debian 13's packages put the image beside the modules; older ones in /boot.
    let image = [
        pkg.join(format!("usr/lib/modules/{release}/vmlinuz")),
        pkg.join(format!("boot/vmlinuz-{release}")),
    ]
    .into_iter()
    .find(|p| p.exists())
    .ok_or_else(|| fail("Debian kernel", format!("no vmlinuz in {binary}")))?;
    std::fs::copy(&image, dir.join("vmlinuz")).map_err(|e| io_fail("vmlinuz", &image, e))?;
    std::fs::create_dir_all(dir.join("modules")).map_err(|e| io_fail("modules", &dir, e))?;
    for (m, out) in TEST_MODULES.iter().zip(&done.test_modules) {
        let xz = pkg.join(format!("usr/lib/modules/{release}/{m}.xz"));
        let mut unxz = Command::new("sh");
        unxz.arg("-ec")
            .arg(r#"xz -dc "$1" > "$2""#)
            .arg("unxz")
            .arg(&xz)
            .arg(out);
        step(&format!("unpack {m}"), unxz)?;
    }
    let hdr = pkg.join(format!("usr/src/linux-headers-{release}"));
    let config_path = hdr.join(".config");
    let config =
        std::fs::read_to_string(&config_path).map_err(|e| io_fail("config", &config_path, e))?;
    same_toolchain(&root, &config)?;
    // The source, copied into the root (the cached tree is shared with `cargo xtask upstream`).
    let in_root_tree = root.join("build/linux");
    let _ = std::fs::remove_dir_all(&in_root_tree);
    std::fs::create_dir_all(root.join("build")).map_err(|e| io_fail("copy", &root, e))?;
    let mut cp = Command::new("cp");
    cp.arg("-a").arg(&source.tree).arg(&in_root_tree);
    step(
        &format!("copy linux-source {} into the root", source.version),
        cp,
    )?;
    for file in [".config", "Module.symvers"] {
        std::fs::copy(hdr.join(file), in_root_tree.join(file))
            .map_err(|e| io_fail("headers", &hdr.join(file), e))?;
    }
    let script = format!(
        "cd {tree}; make olddefconfig >/dev/null; \
         make -j$(nproc) KERNELRELEASE={release} modules_prepare"
    );
    step_logged(
        &format!("Rust metadata for {release} (modules_prepare, about 3 minutes)"),
        in_root(&root, &script),
        &dir.join("modules_prepare.log"),
        EVERY,
    )?;
    // olddefconfig must not have changed the package's configuration.
    let after = std::fs::read_to_string(in_root_tree.join(".config"))
        .map_err(|e| io_fail("config", &in_root_tree, e))?;
    if config_text(&after, "RUST").as_deref() != Some("y") {
        return Err(fail(
            "Debian kernel",
            "CONFIG_RUST is not set after olddefconfig: the package's config did not carry over",
        ));
    }
    std::fs::write(in_root_tree.join(".complete"), "")
        .map_err(|e| io_fail("deb73", &in_root_tree, e))?;
    std::fs::write(dir.join(".complete"), "").map_err(|e| io_fail("deb73", &dir, e))?;
    Ok(done)
}

/// Build kmod/ (`variant` of it) for the Debian kernel, inside the root; returns the `.ko` (in
/// target/kmod/deb73[-test]/), refused if the build warns.
pub fn build_module(k: &DebKernel, variant: Variant) -> StepResult<PathBuf> {
    let name = format!("kmod {}{}", k.release, variant.suffix());
    let dir = kmod_copy(&format!("deb73{}", variant.suffix()))?;
    let inside = k.root.join("build/hdp_flush");
    let _ = std::fs::remove_dir_all(&inside);
    let mut cp = Command::new("cp");
    cp.arg("-a").arg(&dir).arg(&inside);
    step("copy kmod into the root", cp)?;
    let script = format!(
        "make -C {} M=/build/hdp_flush KERNELRELEASE={} {} modules",
        k.tree,
        k.release,
        variant.make_arg()
    );
    let result = step_logged(
        &name,
        in_root(&k.root, &script),
        &dir.join("build.log"),
        EVERY,
    );
    let ko = inside.join("hdp_flush.ko");
    if result.is_ok() {
        std::fs::copy(&ko, dir.join("hdp_flush.ko")).map_err(|e| io_fail("kmod", &ko, e))?;
    }
    result?;
    built_clean(&name, &dir)
}

/// A user's install path, tried in the Debian 13 root as on a host running the Debian kernel:
/// the kernel's headers and source packages installed there with apt, then kmod/'s `make
/// install-running RELEASE=<release>` (the root's `uname -r` is the build host's), which must
/// rebuild the Rust metadata, build the module, install it with the udev rule and run depmod.
/// Checked: the installed module's vermagic names the release, and the rule is in place.
pub fn install_test(k: &DebKernel) -> StepResult {
    let rel = &k.release;
    let script = format!(
        "export DEBIAN_FRONTEND=noninteractive; apt-get -q update >/dev/null; \
         apt-get -q install -y --no-install-recommends -t {backports} \
           linux-headers-{rel} {source} >/dev/null",
        backports = pins::UPSTREAM_SUITES[0],
        source = pins::UPSTREAM_SOURCE_PKG
    );
    step_logged(
        &format!(
            "install linux-headers-{rel} and {} in the root",
            pins::UPSTREAM_SOURCE_PKG
        ),
        in_root(&k.root, &script),
        &cache_dir().join("deb73-install-packages.log"),
        EVERY,
    )?;
    let src = k.root.join("build/hdp_flush-install");
    let _ = std::fs::remove_dir_all(&src);
    let mut cp = Command::new("cp");
    cp.arg("-a")
        .arg(crate::run::workspace_root().join("kmod"))
        .arg(&src);
    step("copy kmod/ into the root", cp)?;
    let _ = std::fs::remove_dir_all(k.root.join("var/cache/hdp_flush"));
    let log = crate::run::workspace_root().join("target/kmod/deb73-install.log");
    step_logged(
        &format!("make install-running RELEASE={rel} (in the Debian 13 root)"),
        in_root(
            &k.root,
            &format!("make -C /build/hdp_flush-install install-running RELEASE={rel}"),
        ),
        &log,
        EVERY,
    )?;
    let vermagic = root_line(
        &k.root,
        &format!("modinfo -F vermagic /lib/modules/{rel}/updates/hdp_flush.ko"),
    )?;
    if !vermagic.starts_with(&format!("{rel} ")) {
        return Err(fail(
            "install-running",
            format!("the installed module's vermagic is `{vermagic}`, not {rel}'s"),
        ));
    }
    // What a user installs is the production module: its one parameter, none of the tests'.
    let parms = root_line(
        &k.root,
        &format!(
            "modinfo -F parm /lib/modules/{rel}/updates/hdp_flush.ko | cut -d: -f1 | tr '\\n' ' '"
        ),
    )?;
    if parms.trim() != "amdgpu_devices" {
        return Err(fail(
            "install-running",
            format!("the installed module's parameters are `{parms}`, not the production module's `amdgpu_devices` alone"),
        ));
    }
    let rule = k.root.join("etc/udev/rules.d/70-hdp-flush.rules");
    if !rule.exists() {
        return Err(fail(
            "install-running",
            format!("{} was not installed", rule.display()),
        ));
    }
    let deps = k.root.join(format!("lib/modules/{rel}/modules.dep"));
    let listed = std::fs::read_to_string(&deps)
        .map_err(|e| io_fail("install-running", &deps, e))?
        .contains("updates/hdp_flush.ko");
    if !listed {
        return Err(fail(
            "install-running",
            format!("depmod did not list the module in {}", deps.display()),
        ));
    }
    eprintln!("==> install-running for {rel}: installed, vermagic `{vermagic}`, parameters `{}` (the production module), udev rule and depmod in place", parms.trim());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_string_is_read_without_its_quotes() {
        let c =
            "CONFIG_RUST=y\nCONFIG_RUSTC_VERSION_TEXT=\"rustc 1.85.1 (4eb161250 2025-03-15)\"\n";
        assert_eq!(
            config_text(c, "RUSTC_VERSION_TEXT").as_deref(),
            Some("rustc 1.85.1 (4eb161250 2025-03-15)")
        );
        assert_eq!(config_text(c, "RUST").as_deref(), Some("y"));
        assert_eq!(config_text(c, "BINDGEN_VERSION_TEXT"), None);
    }
}
