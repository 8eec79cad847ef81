//! A host as a 64K-page server with one AMD GPU and KFD but no hdp_flush module looks to user
//! space, for running a real binary against: a sysfs tree bind-mounted over `/sys` in a private
//! mount namespace, and `fake_kfd.c` preloaded to play `/dev/kfd`. It answers
//! `AMDKFD_IOC_GET_VERSION` with the version asked for, serves the proposed
//! `AMDKFD_IOC_HDP_FLUSH` (nr 0x29, `_IOWR`, 12 bytes) only when that version is
//! [`PATCH_VERSION`], logs every KFD ioctl, and aborts on nr 0x27 (`AMDKFD_IOC_CREATE_PROCESS`)
//! and on nr 0x29 in any other case. Shared by the CLI's and the C ABI's tests, each of which
//! uses part of it.
//!
//! It needs root (a mount namespace); elsewhere [`FakeKfd::new`] says why it is skipped.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The GPU the fixture host has.
pub const GPU: &str = "0000:03:00.0";
/// Its KFD gpu_id.
pub const GPU_ID: u32 = 53422;
/// The KFD version a kernel carrying docs/upstream/'s patch (v2) reports: the only one on
/// which the fake serves nr 0x29.
pub const PATCH_VERSION: &str = "1.24";
/// The KFD version of the tree the patch is based on, and the fake's default: Debian's
/// linux-source-7.3 7.3.4-1~bpo13+1 (read 2026-12-02). Its nr 0x28 is `AMDKFD_IOC_PROFILER`.
pub const UPSTREAM_VERSION: &str = "1.23";
/// How the served flush answers: "ok" (the default), "not-needed" (status
/// `KFD_IOC_HDP_FLUSH_STATUS_NOT_NEEDED`), or an errno name or number.
pub const FLUSH_ENV: &str = "FAKE_KFD_FLUSH";

/// The log's lines for flushes the fake served (`HDP_FLUSH nr=0x29 size=12 dir=rw gpu_id=N
/// flags=F -> status=S` or `-> errno=E`).
pub fn served_flushes(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.starts_with("HDP_FLUSH "))
        .collect()
}

/// Whether the log shows any call with nr 0x29, served or not.
pub fn issued_0x29(log: &str) -> bool {
    log.lines().any(|l| l.contains(" nr=0x29 "))
}

/// Fixtures made by this process so far: each gets its own directory, so tests in one binary
/// can run side by side.
static FIXTURES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A fixture host, and the preload that plays its KFD.
pub struct FakeKfd {
    dir: PathBuf,
    preload: PathBuf,
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

impl FakeKfd {
    /// Build the fixture under `scratch`; `None` (and a line saying why) where this process
    /// cannot make a mount namespace.
    pub fn new(scratch: &Path) -> Option<Self> {
        let probe = Command::new("unshare").args(["-m", "true"]).output();
        if !matches!(&probe, Ok(o) if o.status.success()) {
            eprintln!(
                "skipped: no private mount namespace here (unshare -m needs root): {probe:?}"
            );
            return None;
        }
        let n = FIXTURES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = scratch.join(format!("fake-kfd-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let sys = dir.join("sys");
        let nodes = sys.join("class/kfd/kfd/topology/nodes");
        write(&nodes.join("0/gpu_id"), "0\n");
        write(
            &nodes.join("0/properties"),
            "cpu_cores_count 64\nsimd_count 0\n",
        );
        write(&nodes.join("1/gpu_id"), &format!("{GPU_ID}\n"));
        write(
            &nodes.join("1/properties"),
            "cpu_cores_count 0\nsimd_count 416\nvendor_id 4098\ndevice_id 29711\nlocation_id 768\ndomain 0\ndrm_render_minor 128\nunique_id 1234567\n",
        );
        let device = sys.join("devices/pci0000:00").join(GPU);
        write(&device.join("vendor"), "0x1002\n");
        write(&device.join("device"), "0x740f\n");
        write(&device.join("class"), "0x038000\n");
        std::fs::create_dir_all(sys.join("bus/pci/devices")).unwrap();
        std::os::unix::fs::symlink(&device, sys.join("bus/pci/devices").join(GPU)).unwrap();
        std::fs::create_dir_all(sys.join("class/drm/renderD128")).unwrap();
        std::os::unix::fs::symlink(&device, sys.join("class/drm/renderD128/device")).unwrap();

        let preload = dir.join("fake_kfd.so");
        let source = Path::new(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .find(|d| d.join("tests/support/fake_kfd.c").exists())
            .unwrap()
            .join("tests/support/fake_kfd.c");
        let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
        let status = Command::new(cc)
            .args(["-shared", "-fPIC", "-Wall", "-Werror", "-o"])
            .arg(&preload)
            .arg(&source)
            .arg("-ldl")
            .status()
            .unwrap();
        assert!(status.success(), "compiling {} failed", source.display());
        Some(Self { dir, preload })
    }

    /// Run `program args` on the fixture host with KFD reporting `version` ("1.23"), and `env`
    /// (e.g. [`FLUSH_ENV`]): the output, and the log of KFD ioctls it made.
    pub fn run(
        &self,
        version: &str,
        program: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> (Output, String) {
        let log = self.dir.join(format!(
            "kfd-{version}-{}.log",
            program.file_name().unwrap().to_string_lossy()
        ));
        let _ = std::fs::remove_file(&log);
        let mut cmd = Command::new("unshare");
        cmd.args([
            "-m",
            "--",
            "sh",
            "-c",
            r#"mount --bind "$0" /sys && exec "$@""#,
        ])
        .arg(self.dir.join("sys"))
        .arg(program)
        .args(args)
        .env("LD_PRELOAD", &self.preload)
        .env("FAKE_KFD_VERSION", version)
        .env("FAKE_KFD_LOG", &log)
        .env_remove(FLUSH_ENV)
        .env_remove("HDPFLUSH_STRATEGY")
        .env_remove("HDPFLUSH_GPU");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        (out, std::fs::read_to_string(&log).unwrap_or_default())
    }

    /// [`FakeKfd::new`], after the controls: a program that issues the calls itself sees
    /// nr 0x27 abort on every version, nr 0x29 abort on any version but [`PATCH_VERSION`] and
    /// in any encoding but `_IOWR` of 12 bytes, and the flush answer as [`FLUSH_ENV`] says.
    pub fn checked(scratch: &Path) -> Option<Self> {
        use std::os::unix::process::ExitStatusExt;
        let fixture = Self::new(scratch)?;
        let control = fixture.control_program();
        let call = |version: &str, args: [&str; 4], env: &[(&str, &str)]| {
            let (out, log) = fixture.run(version, &control, &args, env);
            (
                out.status.signal(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                log,
            )
        };
        for version in [UPSTREAM_VERSION, PATCH_VERSION] {
            let (signal, _, log) = call(version, ["0x27", "none", "0", "0"], &[]);
            assert_eq!(signal, Some(6), "nr 0x27 on {version}: {log}");
            assert!(log.contains("KFD ioctl nr=0x27 size=0 dir=none"), "{log}");
        }
        for version in ["1.18", UPSTREAM_VERSION, "1.25"] {
            let (signal, _, log) = call(version, ["0x29", "rw", "12", "0"], &[]);
            assert_eq!(signal, Some(6), "nr 0x29 on {version}: {log}");
            assert!(log.contains("KFD ioctl nr=0x29 size=12 dir=rw"), "{log}");
        }
        // v1's encoding (_IOW, 8 bytes) and a short read-write one are not the flush.
        for (dir, size) in [("w", "8"), ("rw", "8")] {
            let (signal, _, log) = call(PATCH_VERSION, ["0x29", dir, size, "0"], &[]);
            assert_eq!(signal, Some(6), "{dir} {size}: {log}");
            assert!(served_flushes(&log).is_empty(), "{log}");
        }
        for (env, flags, stdout, logged) in [
            (None, "0", "rc=0 errno=0 status=0", "flags=0 -> status=0"),
            (
                Some("not-needed"),
                "0",
                "rc=0 errno=0 status=1",
                "flags=0 -> status=1",
            ),
            (Some("EIO"), "0", "rc=-1 errno=5 ", "flags=0 -> errno=5"),
            (None, "1", "rc=-1 errno=22 ", "flags=1 -> errno=22"),
        ] {
            let env: Vec<(&str, &str)> = env.map(|e| (FLUSH_ENV, e)).into_iter().collect();
            let (signal, out, log) = call(PATCH_VERSION, ["0x29", "rw", "12", flags], &env);
            assert_eq!(signal, None, "{env:?}: {out}{log}");
            assert!(out.starts_with(stdout), "{env:?}: {out}");
            assert_eq!(
                served_flushes(&log),
                [format!(
                    "HDP_FLUSH nr=0x29 size=12 dir=rw gpu_id=7 {logged}"
                )],
                "{env:?}"
            );
        }
        Some(fixture)
    }

    /// A C program that issues `ioctl(kfd, _IOC(DIR, 'K', NR, SIZE), {gpu_id 7, FLAGS, status
    /// ~0})` on /dev/kfd itself and prints what it got: `control NR none|r|w|rw SIZE FLAGS`.
    fn control_program(&self) -> PathBuf {
        let src = self.dir.join("control.c");
        std::fs::write(
            &src,
            r#"#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
int main(int argc, char **argv)
{
    if (argc != 5)
        return 2;
    unsigned long nr = strtoul(argv[1], NULL, 0), size = strtoul(argv[3], NULL, 0);
    unsigned dir = strcmp(argv[2], "none") == 0 ? _IOC_NONE
                 : strcmp(argv[2], "r") == 0    ? _IOC_READ
                 : strcmp(argv[2], "w") == 0    ? _IOC_WRITE
                                                : _IOC_READ | _IOC_WRITE;
    unsigned args[4] = {7, (unsigned)strtoul(argv[4], NULL, 0), ~0u, 0};
    int fd = open("/dev/kfd", O_RDWR);
    int rc = ioctl(fd, _IOC(dir, 'K', nr, size), args);
    printf("rc=%d errno=%d status=%u\n", rc, rc ? errno : 0, args[2]);
    return 0;
}
"#,
        )
        .unwrap();
        let exe = self.dir.join("control");
        let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
        let ok = Command::new(cc)
            .args(["-Wall", "-Werror", "-o"])
            .arg(&exe)
            .arg(&src)
            .status()
            .unwrap();
        assert!(ok.success());
        exe
    }
}

impl Drop for FakeKfd {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
