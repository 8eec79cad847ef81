//! Running commands as named steps: what runs, how long it took, and a clear failure.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A failed step: which, and why.
#[derive(Debug)]
pub struct Failure {
    /// The step's name.
    pub step: String,
    /// What went wrong and, where known, what to do.
    pub why: String,
}

/// Result of a step.
pub type StepResult<T = ()> = Result<T, Failure>;

/// A failure of `step` because of `why`.
pub fn fail(step: &str, why: impl Into<String>) -> Failure {
    Failure {
        step: step.into(),
        why: why.into(),
    }
}

/// The workspace root (xtask's parent).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// `cargo` (the one running us), in the workspace root.
pub fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(workspace_root());
    cmd
}

/// The command line, for messages.
pub fn shown(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Run `cmd` as step `name`, output streamed, timed.
pub fn step(name: &str, mut cmd: Command) -> StepResult {
    let line = shown(&cmd);
    eprintln!("==> {name}: {line}");
    let started = Instant::now();
    let status = cmd
        .status()
        .map_err(|e| fail(name, format!("cannot run `{line}`: {e}")))?;
    let secs = started.elapsed().as_secs_f64();
    if !status.success() {
        return Err(fail(
            name,
            format!("`{line}` exited with {status} after {secs:.1} s"),
        ));
    }
    eprintln!("==> {name}: ok ({secs:.1} s)");
    Ok(())
}

/// `program` with `args`.
pub fn command(program: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args);
    cmd
}

/// Run `cmd` quietly and return its stdout; on failure, the error names it and shows stderr.
pub fn output(name: &str, mut cmd: Command) -> StepResult<String> {
    let line = shown(&cmd);
    let out = cmd
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| fail(name, format!("cannot run `{line}`: {e}")))?;
    if !out.status.success() {
        return Err(fail(
            name,
            format!(
                "`{line}` exited with {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Run a long `cmd` with its output in `log`, printing a progress line every `every`, and the
/// log's tail if it fails.
pub fn step_logged(name: &str, mut cmd: Command, log: &Path, every: Duration) -> StepResult {
    let line = shown(&cmd);
    eprintln!("==> {name}: {line}");
    eprintln!("    (output in {})", log.display());
    let file = std::fs::File::create(log)
        .map_err(|e| fail(name, format!("cannot create {}: {e}", log.display())))?;
    let err = file
        .try_clone()
        .map_err(|e| fail(name, format!("{}: {e}", log.display())))?;
    let started = Instant::now();
    let mut child = cmd
        .stdout(file)
        .stderr(err)
        .spawn()
        .map_err(|e| fail(name, format!("cannot run `{line}`: {e}")))?;
    let mut last_report = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => std::thread::sleep(Duration::from_millis(500)),
            Err(e) => return Err(fail(name, format!("waiting for `{line}`: {e}"))),
        }
        if last_report.elapsed() >= every {
            last_report = Instant::now();
            eprintln!(
                "    {name}: {:.0} s, at: {}",
                started.elapsed().as_secs_f64(),
                last_line(log)
            );
        }
    };
    let secs = started.elapsed().as_secs_f64();
    if !status.success() {
        eprintln!("---- last lines of {} ----", log.display());
        eprintln!("{}", tail(log, 40));
        return Err(fail(
            name,
            format!(
                "`{line}` exited with {status} after {secs:.1} s; full log: {}",
                log.display()
            ),
        ));
    }
    eprintln!("==> {name}: ok ({secs:.1} s)");
    Ok(())
}

fn last_line(log: &Path) -> String {
    tail(log, 1).trim().chars().take(100).collect()
}

/// The last `n` lines of a text file.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
