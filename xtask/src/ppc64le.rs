//! powerpc64le, the Power10 host's architecture: libflush (barriers, strategies, oracle) is
//! cross-built and its tests run under qemu-user; the oracle's verdicts there must be the
//! host's. The kernel side has no powerpc64 build: 6.12 has no Rust on powerpc.

use std::process::Command;

use crate::run::{cargo, fail, output, step, workspace_root, StepResult};

const TARGET: &str = "powerpc64le-unknown-linux-gnu";

/// Tests that need something qemu-user or a cross build cannot give, and where they run
/// instead.
const SKIPPED: &[(&str, &str)] = &[
    (
        "a_file_that_is_not_the_device_fails_the_version_ioctl_with_its_errno",
        "qemu-user answers an ioctl it does not know with ENOSYS, not the kernel's errno; runs on the host and in the guests",
    ),
    (
        "the_ioctl_floor_enters_the_kernel_and_accepts_enotty",
        "the same ENOSYS; runs on the host and in the guests",
    ),
    (
        "a_flush_reaches_the_kernel_and_its_error_is_returned_naming_the_gpu",
        "the same ENOSYS (the kfd-ioctl flush on /dev/null); runs on the host",
    ),
    (
        "the_c_header_states_the_same_abi_as_uapi_rs",
        "compiles the header with the host's C compiler; `cargo xtask uapi-cross` checks it for powerpc64 with the cross compiler",
    ),
];

/// The oracle's run for the comparison: rounds, then seeds.
const ORACLE_ARGS: &[&str] = &["100", "1", "2"];

/// `cargo` for powerpc64le: Debian's rustc (whose powerpc64le std is installed), the cross
/// linker, qemu-user as the runner.
fn ppc_cargo() -> Command {
    let mut cmd = cargo();
    cmd.env("RUSTC", "/usr/bin/rustc")
        .env("CARGO_TARGET_DIR", workspace_root().join("target/ppc64le"))
        .env(
            "CARGO_TARGET_POWERPC64LE_UNKNOWN_LINUX_GNU_LINKER",
            "powerpc64le-linux-gnu-gcc",
        )
        .env(
            "CARGO_TARGET_POWERPC64LE_UNKNOWN_LINUX_GNU_RUNNER",
            "qemu-ppc64le-static -L /usr/powerpc64le-linux-gnu",
        );
    cmd
}

pub fn test() -> StepResult {
    crate::setup::ppc64le_cross()?;
    let mut tests = ppc_cargo();
    tests
        .args(["test", "--locked", "--no-fail-fast", "-p", "libflush"])
        .args(["--target", TARGET, "--lib", "--tests", "--"]);
    for (name, why) in SKIPPED {
        eprintln!("==> libflush powerpc64le: skipping {name}: {why}");
        tests.args(["--skip", name]);
    }
    step("libflush tests powerpc64le (qemu-user)", tests)?;

    let mut ppc = ppc_cargo();
    ppc.args(["run", "--locked", "--quiet", "-p", "libflush"])
        .args(["--target", TARGET, "--example", "oracle_table", "--"])
        .args(ORACLE_ARGS);
    let ppc = output("oracle powerpc64le (qemu-user)", ppc)?;
    let mut host = cargo();
    host.args(["run", "--locked", "--quiet", "-p", "libflush"])
        .args(["--example", "oracle_table", "--"])
        .args(ORACLE_ARGS);
    let host = output("oracle host", host)?;
    let (ppc, host) = (verdicts(&ppc)?, verdicts(&host)?);
    eprintln!("==> oracle on powerpc64le (qemu-user), stale rounds per read policy:");
    for (name, cells) in &ppc {
        eprintln!("    {name:<52} {}", cells.join("  "));
    }
    if ppc.len() != host.len()
        || ppc
            .iter()
            .zip(&host)
            .any(|(p, h)| p.0 != h.0 || passes(p) != passes(h))
    {
        return Err(fail(
            "oracle powerpc64le",
            "the verdicts on powerpc64le differ from the host's (see the table above)",
        ));
    }
    eprintln!(
        "==> oracle powerpc64le: ok, the same verdicts as on the host for all {} rows",
        ppc.len()
    );
    Ok(())
}

/// A row: "strategy (variant)" and its cells, "policy=stale/rounds".
type Row = (String, Vec<String>);

fn passes(row: &Row) -> Vec<bool> {
    row.1.iter().map(|c| c.contains("=0/")).collect()
}

fn verdicts(json_lines: &str) -> StepResult<Vec<Row>> {
    json_lines
        .lines()
        .map(|line| {
            let v: serde_json::Value =
                serde_json::from_str(line).map_err(|e| fail("oracle", format!("`{line}`: {e}")))?;
            let name = format!(
                "{} ({})",
                v["strategy"].as_str().unwrap_or("?"),
                v["variant"].as_str().unwrap_or("?")
            );
            let cells = v["verdicts"]
                .as_array()
                .ok_or_else(|| fail("oracle", format!("no verdicts in `{line}`")))?
                .iter()
                .map(|c| {
                    format!(
                        "{}={}/{}",
                        c["policy"].as_str().unwrap_or("?"),
                        c["stale_rounds"],
                        c["rounds"]
                    )
                })
                .collect();
            Ok((name, cells))
        })
        .collect()
}
