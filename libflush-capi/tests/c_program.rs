//! tests/c/flush_gpus.c, a runtime's use of the C ABI written against libhdpflush.h alone,
//! compiled and linked with the static library, run on this host: no simulator unless named,
//! ENODEV with a reason without the module, every bad argument refused with its errno.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The static library cargo built alongside this test: next to the test executable in
/// target/<profile>/deps (test builds do not uplift it).
fn staticlib() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let lib = exe.parent().unwrap().join("libhdpflush.a");
    assert!(lib.exists(), "{} not built", lib.display());
    lib
}

/// The C program, compiled once for all tests of this file.
fn c_program() -> &'static Path {
    static EXE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    EXE.get_or_init(compile)
}

fn compile() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("capi");
    std::fs::create_dir_all(&dir).unwrap();
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let exe = dir.join(format!("flush_gpus-{}", std::process::id()));
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(&cc)
        .args([
            "-std=c11",
            "-D_DEFAULT_SOURCE",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-I",
        ])
        .arg(manifest.join("include"))
        .arg(manifest.join("tests/c/flush_gpus.c"))
        .arg(staticlib())
        .args(["-lpthread", "-ldl", "-lm", "-o"])
        .arg(&exe)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "compiling and linking the C program failed"
    );
    exe
}

fn run(args: &[&str], strategy: Option<&str>) -> (Output, String) {
    let mut cmd = Command::new(c_program());
    cmd.args(args)
        .env_remove("HDPFLUSH_STRATEGY")
        .env_remove("HDPFLUSH_GPU");
    if let Some(s) = strategy {
        cmd.env("HDPFLUSH_STRATEGY", s);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (out, stdout)
}

fn module_loaded() -> bool {
    Path::new("/dev/hdp_flush").exists()
}

fn errno(e: nix::errno::Errno) -> i32 {
    -(e as i32)
}

#[test]
fn the_options_struct_has_the_same_layout_in_c_and_rust() {
    use hdpflush::OpenOptions;
    use std::mem::{offset_of, size_of};
    let (out, stdout) = run(&["--layout"], None);
    assert!(out.status.success());
    let want = format!(
        "size {} remap {} dummy_page {} dummy_page_len {} sqpoll_idle_ms {} reserved {} strategy {} ver1 {}",
        size_of::<OpenOptions>(),
        offset_of!(OpenOptions, remap),
        offset_of!(OpenOptions, dummy_page),
        offset_of!(OpenOptions, dummy_page_len),
        offset_of!(OpenOptions, sqpoll_idle_ms),
        offset_of!(OpenOptions, reserved),
        offset_of!(OpenOptions, strategy),
        hdpflush::HDPFLUSH_OPEN_OPTIONS_SIZE_VER1
    );
    assert_eq!(stdout.trim(), want);
}

#[test]
fn without_the_module_a_gpu_gets_enodev_and_the_reason_never_the_simulator() {
    if module_loaded() {
        eprintln!(
            "skipped: the hdp_flush module is loaded on this host; the guests test that case"
        );
        return;
    }
    let (out, stdout) = run(&["0000:03:00.0", "gpu_id:53422"], None);
    assert!(!out.status.success(), "{stdout}");
    let enodev = errno(nix::errno::Errno::ENODEV);
    assert!(
        stdout.contains(&format!(
            "open 0000:03:00.0: {enodev} ENODEV no HDP flush for GPU 0000:03:00.0"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("the hdp_flush module cannot be used"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("HDPFLUSH_STRATEGY"),
        "no production message advises the simulator: {stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "open gpu_id:53422: {enodev} ENODEV GPU gpu_id:53422 not found"
        )),
        "{stdout}"
    );
    assert!(
        !stdout.contains(" ok "),
        "nothing opened, nothing simulated: {stdout}"
    );

    let (out, stdout) = run(&["--process"], None);
    assert!(!out.status.success());
    assert!(
        stdout.contains(&format!(
            "flush process: {enodev} ENODEV the process-wide flusher has no GPU"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("strategy=(null) error=the process-wide flusher has no GPU"),
        "{stdout}"
    );
}

#[test]
fn the_simulator_runs_when_named_for_every_call() {
    let (out, stdout) = run(&["index:0", "0000:03:00.0"], Some("sim"));
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("open index:0: 0 ok sim"), "{stdout}");
    assert!(stdout.contains("reason 0000:03:00.0: HDPFLUSH_STRATEGY=sim: the in-process simulator; no GPU is flushed"), "{stdout}");
    for call in ["flush", "invalidate"] {
        assert_eq!(
            stdout.matches(&format!("{call} index:0: 0 ok")).count(),
            if call == "flush" { 3 } else { 1 },
            "{stdout}"
        );
    }
    assert!(stdout.contains("flush-all -: 0 ok"), "{stdout}");

    let (out, stdout) = run(&["--process"], Some("sim"));
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("strategy=sim error=(null)"), "{stdout}");
}

#[test]
fn every_bad_argument_gets_its_errno_and_a_message() {
    let (out, stdout) = run(&["--bad-input"], Some("sim"));
    assert!(out.status.success(), "{stdout}");
    assert!(!stdout.contains("FAIL"), "{stdout}");
    assert_eq!(stdout.matches("ok   ").count(), 16, "{stdout}");

    let (out, stdout) = run(&["0000:03:00.0"], Some("warp"));
    assert!(!out.status.success());
    let einval = errno(nix::errno::Errno::EINVAL);
    assert!(
        stdout.contains(&format!(
            "open 0000:03:00.0: {einval} EINVAL unknown strategy `warp` (from HDPFLUSH_STRATEGY)"
        )),
        "{stdout}"
    );
}

#[test]
fn the_abi_grows_the_caller_wins_hardware_can_be_required_and_closed_handles_are_caught() {
    let (out, stdout) = run(&["--abi"], Some("sim"));
    assert!(out.status.success(), "{stdout}");
    assert!(!stdout.contains("FAIL"), "{stdout}");
    assert_eq!(stdout.matches("ok   ").count(), 13, "{stdout}");
    for needle in [
        "a newer caller's unknown field set: -7 E2BIG",
        "flush after close: -9 EBADF",
        "the caller's simulator when hardware is required: -19 ENODEV",
    ] {
        assert!(stdout.contains(needle), "`{needle}` missing: {stdout}");
    }
}

#[path = "../../tests/support/fake_kfd.rs"]
mod fake_kfd;

#[test]
fn kfds_flush_ioctl_is_called_only_when_named_and_only_on_the_patched_version() {
    let Some(fixture) = fake_kfd::FakeKfd::checked(Path::new(env!("CARGO_TARGET_TMPDIR"))) else {
        return;
    };
    let gpu = format!("gpu_id:{}", fake_kfd::GPU_ID);
    let enodev = errno(nix::errno::Errno::ENODEV);
    for version in ["1.17", "1.18", "1.19", "1.20", "1.21"] {
        // Not named: ENODEV with the reason, whatever KFD reports; KFD is not even asked.
        let (out, log) = fixture.run(version, c_program(), &[&gpu], &[]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "KFD {version}: {stdout}");
        assert!(
            stdout.contains(&format!(
                "open {gpu}: {enodev} ENODEV no HDP flush for GPU {gpu} ({})",
                fake_kfd::GPU
            )),
            "KFD {version}: {stdout}"
        );
        assert!(!log.contains("KFD ioctl"), "KFD {version}: {log}");
    }
    // Named on a KFD that is not the patch's version: refused, nr 0x27 never issued.
    let (out, log) = fixture.run(
        "1.19",
        c_program(),
        &[&gpu],
        &[("HDPFLUSH_STRATEGY", "kfd-ioctl")],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("open {gpu}: {enodev} ENODEV strategy `kfd-ioctl` is not usable here: this kernel's KFD is 1.19")),
        "{stdout}"
    );
    assert!(
        log.contains("GET_VERSION") && !log.contains("KFD ioctl"),
        "{log}"
    );
    // Named on a KFD that reports the patch's version: every flush goes through it.
    let (out, log) = fixture.run(
        "1.18",
        c_program(),
        &[&gpu],
        &[("HDPFLUSH_STRATEGY", "kfd-ioctl")],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("open {gpu}: 0 ok kfd-ioctl")),
        "{stdout}"
    );
    assert!(!log.contains("KFD ioctl"), "{log}");
    assert!(log.matches("HDP_FLUSH nr=0x27").count() >= 4, "{log}");
}

#[test]
fn the_callers_remap_page_and_opted_in_vram_page_are_used_as_given() {
    let (out, stdout) = run(&["--caller-mappings"], None);
    assert!(out.status.success(), "{stdout}");
    assert!(!stdout.contains("FAIL"), "{stdout}");
    assert_eq!(stdout.matches("ok  ").count(), 6, "{stdout}");
}
