//! A host as a 64K-page server with one AMD GPU and KFD but no hdp_flush module looks to user
//! space, for running a real binary against: a sysfs tree bind-mounted over `/sys` in a private
//! mount namespace, and `fake_kfd.c` preloaded to play `/dev/kfd` (answering
//! `AMDKFD_IOC_GET_VERSION` with the version asked for, logging every other KFD ioctl and
//! aborting on nr 0x27). Shared by the CLI's and the C ABI's tests.
//!
//! It needs root (a mount namespace); elsewhere [`FakeKfd::new`] says why it is skipped.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The GPU the fixture host has.
pub const GPU: &str = "0000:03:00.0";
/// Its KFD gpu_id.
pub const GPU_ID: u32 = 53422;

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
        let dir = scratch.join(format!("fake-kfd-{}", std::process::id()));
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

    /// Run `program args` on the fixture host with KFD reporting `version` ("1.19"): the
    /// output, and the log of KFD ioctls it made.
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
        .env_remove("HDPFLUSH_STRATEGY")
        .env_remove("HDPFLUSH_GPU");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        (out, std::fs::read_to_string(&log).unwrap_or_default())
    }

    /// [`FakeKfd::new`], after the control: a program that issues nr 0x27 on /dev/kfd itself
    /// is caught (aborted, and logged).
    pub fn checked(scratch: &Path) -> Option<Self> {
        use std::os::unix::process::ExitStatusExt;
        let fixture = Self::new(scratch)?;
        let (out, log) = fixture.run("1.19", &fixture.control_program(), &[], &[]);
        assert_eq!(out.status.signal(), Some(6), "{out:?}");
        assert!(log.contains("KFD ioctl nr=0x27"), "{log}");
        Some(fixture)
    }

    /// A C program that issues nr 0x27 on /dev/kfd itself.
    fn control_program(&self) -> PathBuf {
        let src = self.dir.join("create_process.c");
        std::fs::write(
            &src,
            "#include <fcntl.h>\n#include <sys/ioctl.h>\nint main(void){int fd=open(\"/dev/kfd\",O_RDWR);return ioctl(fd,_IO('K',0x27));}\n",
        )
        .unwrap();
        let exe = self.dir.join("create_process");
        let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
        let ok = Command::new(cc)
            .arg("-o")
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
