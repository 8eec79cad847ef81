//! `cargo xtask <command>`: the project's build and test automation.
//!
//! `test` is the one command README and CI run. Every step prints what it runs and how long it
//! took; the first failing step ends the run with a non-zero exit and a line naming the step.

mod codegen;
mod deb73;
mod evidence;
mod install;
mod kernel;
mod pins;
mod ppc64le;
#[path = "../../tests/guest/src/reports.rs"]
mod reports;
mod run;
mod setup;
mod uapi_cross;
mod upstream;
mod upstream_boot;
mod upstream_rocm;
mod validate;
mod vm;

use std::process::ExitCode;
use std::time::Instant;

use kernel::Arch;
use run::{cargo, fail, step, StepResult};

const USAGE: &str = "usage: cargo xtask <command> [options]

commands:
  test [--host-only]     fmt check, clippy -D warnings, host tests, the install check (a C
                         program built with pkg-config against an installed libhdpflush), the
                         barrier instructions of every strategy (x86_64 only with
                         --host-only), the powerpc64 uAPI check, the upstream KFD patch
                         (`upstream`: 7.3, checkpatch, W=1/sparse, uAPI; not --boot or
                         --rocm), libflush's tests on powerpc64le under
                         qemu-user, then the QEMU guest tests on x86_64 (4K pages), arm64
                         (64K pages) and x86_64-debug. What CI runs.
  install --prefix DIR   libhdpflush.{a,so} (soname libhdpflush.so.0), include/libhdpflush.h
                         and lib/pkgconfig/hdpflush.pc under DIR
  lint                   fmt check and clippy only
  kernel [ARCH...]       build (or reuse) the test kernels; installs what is missing
  kernel --debug         the debug kernel alone (x86_64-debug: lockdep, KASAN, ...)
  kmod [ARCH...]         build hdp_flush.ko against the test kernels (no warnings allowed)
  vm-test [ARCH...]      build kernel, module and static guest binaries, boot QEMU, run the
                         guest tests
  vm-bench [--boots N] [--seed S] [--no-docs]
                         the evidence run: both guests (x86_64 4K, arm64 64K pages) boot N
                         times (default 5), each boot with its own seed (S+1..S+N, S from
                         the clock by default) shuffling its case order, and measure every
                         strategy and floor; the host adds its floors, stand-ins and
                         criterion's dispatch cost; tables (medians across boots), JSON with
                         provenance, plots and the targets' PASS/FAIL/INCONCLUSIVE in
                         target/evidence/ (see docs/evidence.md); with 5 boots or more it
                         then becomes docs/evidence/ and the docs' tables (not with
                         --no-docs)
  deb73                  Debian 13's backports kernel as shipped: a Debian 13 root with the
                         kernel's own rustc and bindgen (mmdebstrap), Rust metadata rebuilt
                         from linux-source-7.3 with the package's config, and the module
                         built against it; with --boot, that kernel booted as shipped
                         in QEMU with the module and the guest tests; with --install, a
                         user's `make -C kmod install-running` tried in the Debian 13 root
                         against the kernel's headers and source packages
  uapi-cross             compile the C header for powerpc64 (le and be) against the kernel's
                         uapi headers and check every ioctl number against kmod/uapi.rs
  upstream               the KFD patch in docs/upstream/ applied to Debian's linux-source-7.3
                         (trixie-backports, downloaded and cached), checkpatch --strict, the
                         touched objects compiled with W=1 and sparse against the unpatched
                         tree (no new diagnostic), linux/kfd_ioctl.h alone for 32- and 64-bit
                         user space, libflush's KFD uAPI checked against it
  upstream --boot        also build a small x86_64 kernel from the patched tree with amdgpu
                         and KFD built in (about 25 minutes on 2 cores the first time, then
                         incremental) and run the KFD tests in a QEMU guest without a GPU
  upstream --rocm DIR    also apply docs/upstream/rocm/ to the ROCm sources in DIR (a
                         ROCm/rocm-systems checkout) and compile what they touch
  upstream --format-for-sending DIR
                         check, then write the patches to DIR for git send-email; refused
                         while From:/Signed-off-by: are the placeholders
  codegen [ARCH...]      libhdpflush.so built in release mode for x86_64, aarch64 and
                         powerpc64le (default: all three) and each strategy's flush
                         disassembled: its barrier instructions (sfence/mfence, dsb st/dsb sy,
                         sync), their number and order on every path, against docs/design.md
  ppc64le                libflush's tests built for powerpc64le and run under qemu-user, and
                         the oracle's verdicts there compared with the host's
  help                   this text

ARCH is x86_64, arm64 or x86_64-debug (default: all three; the debug kernel runs the same
guest tests with lockdep, atomic-sleep checks, KASAN and object debugging, and any report
fails the run). Builds are cached in $HDPFLUSH_CACHE
(default ~/.cache/hdpflush), keyed by kernel source, config fragments and toolchain pins
(the Debian 7.3 root and tree by package versions); a second run reuses them.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (command, rest) = match args.split_first() {
        Some((c, r)) => (c.as_str(), r),
        None => ("help", &[][..]),
    };
    let result =
        match command {
            "test" => test(rest),
            "lint" => lint(),
            "kernel" if rest == ["--debug"] => [Arch::X86_64Debug, Arch::Arm64Debug]
                .into_iter()
                .try_for_each(|a| kernel::ensure_kernel(a).map(drop)),
            "kernel" => arches(rest).and_then(|a| {
                a.into_iter()
                    .try_for_each(|a| kernel::ensure_kernel(a).map(drop))
            }),
            "kmod" => arches(rest).and_then(|a| {
                a.into_iter().try_for_each(|a| {
                    let k = kernel::ensure_kernel(a)?;
                    for variant in [kernel::Variant::Production, kernel::Variant::Test] {
                        let ko = kernel::build_kmod(&k, variant)?;
                        eprintln!("==> {}", ko.display());
                    }
                    Ok(())
                })
            }),
            "deb73" if rest == ["--boot"] => setup::host_tools()
                .and_then(|()| deb73::ensure())
                .and_then(|k| vm::vm_test_deb73(&k)),
            "deb73" if rest == ["--install"] => setup::host_tools()
                .and_then(|()| deb73::ensure())
                .and_then(|k| deb73::install_test(&k)),
            "deb73" if rest.is_empty() => setup::host_tools()
                .and_then(|()| deb73::ensure())
                .and_then(|k| {
                    let ko = deb73::build_module(&k, kernel::Variant::Production)?;
                    eprintln!(
                        "==> {} for {} (package {}), boot image {}",
                        ko.display(),
                        k.release,
                        k.version,
                        k.vmlinuz.display()
                    );
                    Ok(())
                }),
            "vm-bench" => evidence::vm_bench(rest),
            "vm-test" => arches(rest).and_then(|a| a.into_iter().try_for_each(vm::vm_test)),
            "uapi-cross" => setup::host_tools().and_then(|()| uapi_cross::check()),
            "ppc64le" => ppc64le::test(),
            "codegen" => codegen_targets(rest).and_then(|t| codegen::check(&t)),
            "upstream" => setup::host_tools().and_then(|()| upstream_command(rest)),
            "install" => match rest {
                [flag, dir] if flag == "--prefix" => install::install(std::path::Path::new(dir)),
                _ => Err(fail("arguments", "usage: cargo xtask install --prefix DIR")),
            },
            "help" | "-h" | "--help" => {
                println!("{USAGE}");
                Ok(())
            }
            other => {
                eprintln!("xtask: unknown command `{other}`\n\n{USAGE}");
                return ExitCode::from(2);
            }
        };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("xtask: step `{}` failed: {}", f.step, f.why);
            ExitCode::FAILURE
        }
    }
}

/// `upstream [--boot] [--rocm DIR] | --format-for-sending DIR`.
fn upstream_command(args: &[String]) -> StepResult {
    let usage = || {
        fail(
            "arguments",
            "usage: cargo xtask upstream [--boot] [--rocm DIR] | upstream --format-for-sending DIR",
        )
    };
    let (mut boot, mut rocm) = (false, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--boot" => boot = true,
            "--rocm" => rocm = Some(std::path::PathBuf::from(it.next().ok_or_else(usage)?)),
            "--format-for-sending" if args.len() == 2 => {
                return upstream::format_for_sending(std::path::Path::new(
                    it.next().ok_or_else(usage)?,
                ))
            }
            _ => return Err(usage()),
        }
    }
    upstream::check()?;
    if boot {
        upstream_boot::run()?;
    }
    if let Some(dir) = rocm {
        upstream_rocm::check(&dir)?;
    }
    Ok(())
}

fn arches(args: &[String]) -> StepResult<Vec<Arch>> {
    if args.is_empty() {
        return Ok(Arch::ALL.to_vec());
    }
    args.iter()
        .map(|a| {
            Arch::parse(a).ok_or_else(|| {
                fail(
                    "arguments",
                    format!("unknown arch `{a}`: use x86_64, arm64 or x86_64-debug"),
                )
            })
        })
        .collect()
}

fn codegen_targets(args: &[String]) -> StepResult<Vec<codegen::Target>> {
    if args.is_empty() {
        return Ok(codegen::Target::ALL.to_vec());
    }
    args.iter()
        .map(|a| {
            codegen::Target::parse(a).ok_or_else(|| {
                fail(
                    "arguments",
                    format!("unknown arch `{a}`: use x86_64, aarch64 or powerpc64le"),
                )
            })
        })
        .collect()
}

fn lint() -> StepResult {
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--", "--check"]);
    step("fmt", fmt).map_err(|f| run::Failure {
        why: format!("{}; run `cargo fmt --all` to fix", f.why),
        ..f
    })?;
    // kmod/ is not a cargo crate: rustfmt formats it from its crate root, following `mod`s.
    let mut kmod_fmt = std::process::Command::new("rustfmt");
    kmod_fmt
        .args(["--check", "--edition", "2021"])
        .arg(run::workspace_root().join("kmod/hdp_flush.rs"));
    step("fmt kmod", kmod_fmt).map_err(|f| run::Failure {
        why: format!(
            "{}; run `rustfmt --edition 2021 kmod/hdp_flush.rs` to fix",
            f.why
        ),
        ..f
    })?;
    let mut clippy = cargo();
    clippy.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--",
        "-D",
        "warnings",
    ]);
    step("clippy", clippy)
}

fn test(args: &[String]) -> StepResult {
    let host_only = match args {
        [] => false,
        [a] if a == "--host-only" => true,
        _ => {
            return Err(fail(
                "arguments",
                format!("unexpected {args:?}: test takes only --host-only"),
            ))
        }
    };
    let started = Instant::now();
    lint()?;
    let mut tests = cargo();
    tests.args(["test", "--workspace", "--locked"]);
    // io_uring works on the machines CI runs on: a ring test that skipped there would have
    // passed having tested nothing (libflush/src/skip.rs).
    tests.env("HDPFLUSH_REQUIRE_IO_URING", "1");
    step("host tests", tests)?;
    install::check()?;
    validate::check()?;
    if host_only {
        // The cross targets need the cross setup, which only a full run installs.
        codegen::check(&[codegen::Target::X86_64])?;
    } else {
        setup::host_tools()?;
        codegen::check(&codegen::Target::ALL)?;
        uapi_cross::check()?;
        upstream::check()?;
        ppc64le::test()?;
        for arch in Arch::ALL {
            vm::vm_test(arch)?;
        }
        // Prepared once (apt lists, source, root, metadata) for both steps.
        let k = deb73::ensure()?;
        vm::vm_test_deb73(&k)?;
        deb73::install_test(&k)?;
    }
    eprintln!(
        "==> all steps passed in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
