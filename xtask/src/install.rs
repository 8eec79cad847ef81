//! `cargo xtask install --prefix DIR`: libhdpflush (static and shared, with its soname), its
//! header and a pkg-config file, laid out as a distribution would; and the check `test` runs:
//! a C program built with `pkg-config --cflags --libs hdpflush` against that tree.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::run::{cargo, fail, output, step, workspace_root, StepResult};

/// The shared library's soname (set by libflush-capi/build.rs).
const SONAME: &str = "libhdpflush.so.0";

/// `cc` compiling libflush-capi/tests/c/flush_gpus.c (written against the header alone) into
/// `exe`; the caller adds what it links with.
pub fn c_program(cc: &str, exe: &Path) -> Command {
    let capi = workspace_root().join("libflush-capi");
    let mut cmd = Command::new(cc);
    cmd.args([
        "-std=c11",
        "-D_DEFAULT_SOURCE",
        "-Wall",
        "-Wextra",
        "-Werror",
    ])
    .arg(capi.join("tests/c/flush_gpus.c"))
    .arg("-o")
    .arg(exe);
    cmd
}

/// libflush-capi's version, from its manifest.
fn version() -> StepResult<String> {
    let manifest = workspace_root().join("libflush-capi/Cargo.toml");
    let text = std::fs::read_to_string(&manifest)
        .map_err(|e| fail("install", format!("{}: {e}", manifest.display())))?;
    text.lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .map(str::to_owned)
        .ok_or_else(|| fail("install", format!("no version in {}", manifest.display())))
}

fn io(what: &str, path: &Path, e: std::io::Error) -> crate::run::Failure {
    fail("install", format!("{what} {}: {e}", path.display()))
}

fn copy(from: &Path, to: &Path) -> StepResult {
    std::fs::copy(from, to)
        .map(drop)
        .map_err(|e| io(&format!("copy {} to", from.display()), to, e))
}

fn symlink(target: &str, link: &Path) -> StepResult {
    let _ = std::fs::remove_file(link);
    std::os::unix::fs::symlink(target, link).map_err(|e| io("symlink", link, e))
}

/// Build the library in release mode and install it under `prefix`.
pub fn install(prefix: &Path) -> StepResult {
    let prefix = std::path::absolute(prefix).map_err(|e| io("resolve", prefix, e))?;
    let mut build = cargo();
    build.args(["build", "--release", "--locked", "-p", "libflush-capi"]);
    step("build libhdpflush", build)?;
    let version = version()?;
    let built = workspace_root().join("target/release");
    let (lib, include, pkgconfig) = (
        prefix.join("lib"),
        prefix.join("include"),
        prefix.join("lib/pkgconfig"),
    );
    for dir in [&lib, &include, &pkgconfig] {
        std::fs::create_dir_all(dir).map_err(|e| io("create", dir, e))?;
    }
    copy(&built.join("libhdpflush.a"), &lib.join("libhdpflush.a"))?;
    let real = format!("libhdpflush.so.{version}");
    copy(&built.join("libhdpflush.so"), &lib.join(&real))?;
    symlink(&real, &lib.join(SONAME))?;
    symlink(SONAME, &lib.join("libhdpflush.so"))?;
    copy(
        &workspace_root().join("libflush-capi/include/libhdpflush.h"),
        &include.join("libhdpflush.h"),
    )?;
    let pc = format!(
        "prefix={}\nlibdir=${{prefix}}/lib\nincludedir=${{prefix}}/include\n\n\
         Name: hdpflush\n\
         Description: Flush AMD GPU HDP write FIFOs on any page size (C ABI of libflush)\n\
         Version: {version}\n\
         Libs: -L${{libdir}} -lhdpflush\n\
         Libs.private: -lpthread -ldl -lm -lrt -lutil\n\
         Cflags: -I${{includedir}}\n",
        prefix.display()
    );
    let pc_path = pkgconfig.join("hdpflush.pc");
    std::fs::write(&pc_path, pc).map_err(|e| io("write", &pc_path, e))?;
    eprintln!(
        "==> installed libhdpflush {version} in {}: lib/libhdpflush.{{a,so}}, include/libhdpflush.h, lib/pkgconfig/hdpflush.pc",
        prefix.display()
    );
    Ok(())
}

/// Install into a scratch prefix, build the C program with pkg-config against it, and run it
/// against the shared library: bad input refused, no simulator unless named.
pub fn check() -> StepResult {
    let name = "install check";
    crate::setup::commands(&[
        ("pkg-config", "pkgconf"),
        ("readelf", "binutils"),
        ("cc", "gcc"),
    ])?;
    let prefix = workspace_root().join("target/xtask-install");
    let _ = std::fs::remove_dir_all(&prefix);
    install(&prefix)?;
    let mut pkg = Command::new("pkg-config");
    pkg.args(["--cflags", "--libs", "hdpflush"])
        .env("PKG_CONFIG_PATH", prefix.join("lib/pkgconfig"));
    let flags = output(name, pkg)?;
    let exe: PathBuf = prefix.join("flush_gpus");
    let mut cc = Command::new("cc");
    cc.args([
        "-std=c11",
        "-D_DEFAULT_SOURCE",
        "-Wall",
        "-Wextra",
        "-Werror",
    ])
    .arg(workspace_root().join("libflush-capi/tests/c/flush_gpus.c"))
    .args(flags.split_whitespace())
    .arg("-o")
    .arg(&exe);
    output(name, cc)?;
    let needed = output(name, {
        let mut c = Command::new("readelf");
        c.arg("-d").arg(&exe);
        c
    })?;
    if !needed.contains(&format!("[{SONAME}]")) {
        return Err(fail(
            name,
            format!("{} does not need {SONAME}:\n{needed}", exe.display()),
        ));
    }
    let run = |args: &[&str], strategy: Option<&str>| {
        let mut c = Command::new(&exe);
        c.args(args)
            .env("LD_LIBRARY_PATH", prefix.join("lib"))
            .env_remove("HDPFLUSH_STRATEGY")
            .env_remove("HDPFLUSH_GPU");
        if let Some(s) = strategy {
            c.env("HDPFLUSH_STRATEGY", s);
        }
        c.output()
            .map_err(|e| fail(name, format!("{}: {e}", exe.display())))
    };
    let out = run(&["--bad-input"], Some("sim"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || text.contains("FAIL") {
        return Err(fail(
            name,
            format!("--bad-input through the shared library:\n{text}"),
        ));
    }
    let out = run(&["0000:03:00.0"], None)?;
    let text = String::from_utf8_lossy(&out.stdout);
    let module = Path::new("/dev/hdp_flush").exists();
    if !module
        && (out.status.success() || !text.contains("ENODEV no HDP flush for GPU 0000:03:00.0"))
    {
        return Err(fail(
            name,
            format!("a GPU with no flush path must get ENODEV:\n{text}"),
        ));
    }
    eprintln!("==> {name}: ok (pkg-config, {SONAME}, bad input refused, ENODEV without a path)");
    Ok(())
}
