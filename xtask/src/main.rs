//! `cargo xtask <command>`: the project's build and test automation.
//!
//! `test` is the one command README and CI run: format check, clippy with warnings denied,
//! and every host test. Each step prints what it runs and how long it took; the first failing
//! step ends the run with a non-zero exit and a line naming the step.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

const USAGE: &str = "usage: cargo xtask <command>

commands:
  test     format check, clippy -D warnings, all host tests (what CI runs)
  lint     format check and clippy only
  help     this text";

/// A failed step: what it was, and why.
struct Failure {
    step: String,
    why: String,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(),
        Some("lint") => lint(),
        Some("help" | "-h" | "--help") | None => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => {
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

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(workspace_root());
    cmd
}

/// Run `cmd` as step `name`, streaming its output, timing it.
fn step(name: &str, mut cmd: Command) -> Result<(), Failure> {
    let shown = format!(
        "{} {}",
        cmd.get_program().to_string_lossy(),
        cmd.get_args()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    );
    eprintln!("==> {name}: {shown}");
    let started = Instant::now();
    let status = cmd.status().map_err(|e| Failure {
        step: name.into(),
        why: format!("cannot run `{shown}`: {e}"),
    })?;
    let secs = started.elapsed().as_secs_f64();
    if !status.success() {
        return Err(Failure {
            step: name.into(),
            why: format!("`{shown}` exited with {status} after {secs:.1} s"),
        });
    }
    eprintln!("==> {name}: ok ({secs:.1} s)");
    Ok(())
}

fn lint() -> Result<(), Failure> {
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--", "--check"]);
    step("fmt", fmt).map_err(|f| Failure {
        why: format!("{}; run `cargo fmt --all` to fix", f.why),
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

fn test() -> Result<(), Failure> {
    let started = Instant::now();
    lint()?;
    let mut tests = cargo();
    tests.args(["test", "--workspace", "--locked"]);
    step("host tests", tests)?;
    eprintln!(
        "==> all steps passed in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
