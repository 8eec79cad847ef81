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
    Path::new(libflush::uapi::HDP_FLUSH_DEVICE_PATH).exists()
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

use fake_kfd::{served_flushes, FakeKfd, FLUSH_ENV, PATCH_VERSION, UPSTREAM_VERSION};

/// The fixture host, if this process can make one (root), its controls passed.
fn fixture() -> Option<FakeKfd> {
    FakeKfd::checked(Path::new(env!("CARGO_TARGET_TMPDIR")))
}

/// `gpu_id:N` of the fixture's GPU, as the C program takes it.
fn fixture_gpu() -> String {
    format!("gpu_id:{}", fake_kfd::GPU_ID)
}

/// The C program on the fixture host with `kfd-ioctl` named, KFD reporting `version`, the
/// flush answering as `answer` ([`FLUSH_ENV`]) says: its stdout and the KFD log.
fn named(
    fixture: &FakeKfd,
    version: &str,
    flags: &[&str],
    answer: Option<&str>,
) -> (Output, String, String) {
    let gpu = fixture_gpu();
    let mut args: Vec<&str> = flags.to_vec();
    args.push(&gpu);
    let mut env = vec![("HDPFLUSH_STRATEGY", "kfd-ioctl")];
    env.extend(answer.map(|a| (FLUSH_ENV, a)));
    let (out, log) = fixture.run(version, c_program(), &args, &env);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (out, stdout, log)
}

/// The flush calls the C program makes on one GPU: three flushes and one flush-all.
const FLUSH_CALLS: usize = 4;

#[test]
fn kfds_flush_ioctl_is_never_issued_unless_named_whatever_kfd_reports() {
    let Some(fixture) = fixture() else {
        return;
    };
    let gpu = fixture_gpu();
    let enodev = errno(nix::errno::Errno::ENODEV);
    // On the patch's version too: the fake would serve nr 0x29 there, and must not be asked.
    for version in ["1.18", "1.19", UPSTREAM_VERSION, PATCH_VERSION, "1.25"] {
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
        assert!(!fake_kfd::issued_0x29(&log), "KFD {version}: {log}");
        assert!(!log.contains("KFD ioctl"), "KFD {version}: {log}");
    }
}

#[test]
fn a_named_kfd_ioctl_is_refused_with_the_reason_on_any_other_version() {
    let Some(fixture) = fixture() else {
        return;
    };
    let gpu = fixture_gpu();
    let enodev = errno(nix::errno::Errno::ENODEV);
    // 1.23: the tree the patch is based on; 1.25: whatever upstream adds next may own 0x29.
    for version in ["1.18", UPSTREAM_VERSION, "1.25"] {
        let (out, stdout, log) = named(&fixture, version, &[], None);
        assert_eq!(out.status.code(), Some(1), "KFD {version}: {stdout}");
        assert!(
            stdout.contains(&format!(
                "open {gpu}: {enodev} ENODEV strategy `kfd-ioctl` is not usable here: this kernel's KFD is {version}; the proposed AMDKFD_IOC_HDP_FLUSH (nr 0x29) is called only on a KFD reporting {PATCH_VERSION}"
            )),
            "KFD {version}: {stdout}"
        );
        assert!(log.contains("GET_VERSION"), "KFD {version}: {log}");
        assert!(!fake_kfd::issued_0x29(&log), "KFD {version}: {log}");
    }
}

#[test]
fn on_the_patchs_version_every_flush_is_one_call_and_invalidate_is_eopnotsupp() {
    let Some(fixture) = fixture() else {
        return;
    };
    let gpu = fixture_gpu();
    let eopnotsupp = errno(nix::errno::Errno::EOPNOTSUPP);
    // Posted or completed, KFD completes the flush: the same call either way.
    for flags in [&[][..], &["--posted"][..]] {
        let (out, stdout, log) = named(&fixture, PATCH_VERSION, flags, None);
        assert!(
            stdout.contains(&format!("open {gpu}: 0 ok kfd-ioctl")),
            "{flags:?}: {stdout}"
        );
        assert_eq!(
            stdout.matches(&format!("flush {gpu}: 0 ok")).count(),
            3,
            "{flags:?}: {stdout}"
        );
        assert!(stdout.contains("flush-all -: 0 ok"), "{flags:?}: {stdout}");
        assert!(
            stdout.contains(&format!(
                "invalidate {gpu}: {eopnotsupp} EOPNOTSUPP strategy `kfd-ioctl` does not support invalidate"
            )),
            "{flags:?}: {stdout}"
        );
        // The invalidate is the program's only failure.
        assert_eq!(out.status.code(), Some(1), "{flags:?}: {stdout}");
        assert_eq!(stdout.matches(": 0 ok").count(), 1 + 3 + 1, "{stdout}");
        let want = format!(
            "HDP_FLUSH nr=0x29 size=12 dir=rw gpu_id={} flags=0 -> status=0",
            fake_kfd::GPU_ID
        );
        assert_eq!(
            served_flushes(&log),
            vec![want.as_str(); FLUSH_CALLS],
            "{flags:?}: one call per flush, none for the invalidate: {log}"
        );
        assert!(!log.contains("KFD ioctl"), "{log}");
    }
}

#[test]
fn after_kfd_says_not_needed_later_flushes_make_no_call() {
    let Some(fixture) = fixture() else {
        return;
    };
    let gpu = fixture_gpu();
    let (_, stdout, log) = named(&fixture, PATCH_VERSION, &[], Some("not-needed"));
    assert_eq!(
        stdout.matches(&format!("flush {gpu}: 0 ok")).count(),
        3,
        "{stdout}"
    );
    assert!(stdout.contains("flush-all -: 0 ok"), "{stdout}");
    assert_eq!(
        served_flushes(&log),
        [format!(
            "HDP_FLUSH nr=0x29 size=12 dir=rw gpu_id={} flags=0 -> status=1",
            fake_kfd::GPU_ID
        )],
        "the first flush asks, the {} after it do not: {log}",
        FLUSH_CALLS - 1
    );
}

#[test]
fn kfds_errors_are_returned_once_per_flush_never_retried() {
    let Some(fixture) = fixture() else {
        return;
    };
    let gpu = fixture_gpu();
    use nix::errno::Errno;
    // What the message says after the gpu_id: the header's meaning of the errno, or nothing
    // for one the header does not document (EIO: a kernel other than the patch's).
    let id = fake_kfd::GPU_ID;
    for (name, e, says) in [
        (
            "EIO",
            Errno::EIO,
            format!("(gpu_id {id}): AMDKFD_IOC_HDP_FLUSH failed"),
        ),
        (
            "ENXIO",
            Errno::ENXIO,
            format!("(gpu_id {id}: this process does not use the GPU"),
        ),
        (
            "ENODEV",
            Errno::ENODEV,
            format!("(gpu_id {id}: no GPU of this process"),
        ),
        (
            "EOPNOTSUPP",
            Errno::EOPNOTSUPP,
            format!("(gpu_id {id}: no HDP flush is offered"),
        ),
    ] {
        let (out, stdout, log) = named(&fixture, PATCH_VERSION, &[], Some(name));
        assert_eq!(out.status.code(), Some(1), "{name}: {stdout}");
        assert!(
            stdout.contains(&format!("open {gpu}: 0 ok kfd-ioctl")),
            "{name}: {stdout}"
        );
        let failed = format!("{} {name} ", errno(e));
        assert_eq!(
            stdout
                .lines()
                .filter(|l| l.starts_with("flush") && l.contains(&failed))
                .count(),
            FLUSH_CALLS,
            "{name}: {stdout}"
        );
        assert!(
            stdout.contains(&format!("/dev/kfd {says}"))
                && stdout.contains("AMDKFD_IOC_HDP_FLUSH failed"),
            "{name}: {stdout}"
        );
        // One call per flush: a retry would show as more.
        assert_eq!(served_flushes(&log).len(), FLUSH_CALLS, "{name}: {log}");
        assert!(
            served_flushes(&log)
                .iter()
                .all(|l| l.ends_with(&format!("flags=0 -> errno={}", e as i32))),
            "{name}: {log}"
        );
    }
}

#[test]
fn the_callers_remap_page_and_opted_in_vram_page_are_used_as_given() {
    let (out, stdout) = run(&["--caller-mappings"], None);
    assert!(out.status.success(), "{stdout}");
    assert!(!stdout.contains("FAIL"), "{stdout}");
    assert_eq!(stdout.matches("ok  ").count(), 6, "{stdout}");
}
