//! `hdpflush-guest-tests evidence`: the guest's half of `cargo xtask vm-bench`.
//!
//! Each phase loads the module with its parameters, runs `hdpflush bench` on what the module
//! then serves (or, for what the bench has no case for, measures libflush's API itself, in the
//! bench's JSON form: [`gpus`]), and prints the bench JSON, wrapped with the phase's name,
//! parameters and command, to the console between markers ([`BEGIN`], [`LINE`], [`END`]) for
//! xtask to collect. The closing line has the test runner's form, one "test" per phase, so
//! xtask judges the run as it judges the tests.

use std::path::Path;
use std::sync::Barrier;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use libflush::device::HdpFlushDevice;
use libflush::strategy::Backing;
use libflush::{Completion, Flush, Ioctl, Uring, UringConfig};
use serde_json::{json, Value};

use crate::{edu_devices, insmod, rmmod, sh};

/// Starts a phase's JSON: `BEGIN name bytes`.
pub const BEGIN: &str = "hdpflush-evidence-begin";
/// Prefixes each line of it.
pub const LINE: &str = "hdpflush-evidence| ";
/// Ends it: `END name`.
pub const END: &str = "hdpflush-evidence-end";

/// One module configuration and what is measured on it.
struct Phase {
    name: &'static str,
    /// What it is for, carried into the JSON.
    purpose: &'static str,
    params: &'static [&'static str],
    run: Run,
}

/// How a phase measures.
enum Run {
    /// `hdpflush bench` with these arguments; `{bar}` is replaced by the first emulated
    /// device's resource0.
    Bench(&'static [&'static str]),
    /// This program, through libflush's API; returns the bench JSON and the command it stands
    /// for.
    Here(fn() -> Result<Value, String>),
}

const PHASES: &[Phase] = &[
    Phase {
        name: "sim",
        purpose: "the module's own cost: sim backend with no modelled delay, beside the \
                  kernel-entry floors of this guest (P1, P2)",
        params: &["sim_devices=1", "sim_delay_ns=0", "pcitest=0"],
        run: Run::Bench(&[
            "-s",
            "ioctl,uring",
            "--batch",
            "1,8,32,128",
            "--sqpoll",
            "--reference",
            "-n",
            "100000",
            "--warmup",
            "5000",
        ]),
    },
    Phase {
        name: "sim-1us",
        purpose: "coalescing: sim backend with a modelled 1 us round trip, 1-8 callers and \
                  io_uring batches (P3)",
        params: &["sim_devices=1", "sim_delay_ns=1000", "pcitest=0"],
        run: Run::Bench(&[
            "-s",
            "ioctl,uring",
            "--threads",
            "1,2,4,8",
            "--batch",
            "1,32",
            "-n",
            "40000",
            "--warmup",
            "2000",
        ]),
    },
    Phase {
        name: "emulated",
        purpose: "QEMU's edu device, an emulated PCI device and no GPU: the register flush \
                  through the module, and the remap-page and dummy-page sequences over its \
                  BAR, beside one uncached load and store of that BAR (legacy is left out: \
                  its 1-byte store is an access edu refuses, a SIGBUS on arm64)",
        params: &[],
        run: Run::Bench(&[
            "-s",
            "ioctl,uring,mmio-remap,dummy-page",
            "--batch",
            "1,32",
            "--reference",
            "--map",
            "mmio-remap={bar}@0x1000",
            "--map",
            "dummy-page={bar}@0x10000",
            "-n",
            "20000",
            "--warmup",
            "1000",
        ]),
    },
    Phase {
        name: "gpus",
        purpose: "libflush's API on 8 module devices (sim backend, no modelled delay): all 8 \
                  flushed with one flush_gpus (one io_uring submission) against one flush per \
                  device; and the uring strategy as HDPFLUSH_OPEN_BATCHED opens it, with and \
                  without SQPOLL, 1 and 2 threads sharing one handle, against one ioctl per \
                  flush",
        params: &["sim_devices=8", "sim_delay_ns=0", "pcitest=0"],
        run: Run::Here(gpus),
    },
];

/// `hdpflush_seed=K` from a kernel command line: `cargo xtask vm-bench` gives each boot its own.
pub fn seed_of(cmdline: &str) -> Option<u64> {
    cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("hdpflush_seed="))
        .and_then(|v| v.parse().ok())
}

/// This boot's seed, if it was given one.
fn seed() -> Option<u64> {
    seed_of(&std::fs::read_to_string("/proc/cmdline").ok()?)
}

/// `items` shuffled with `seed` (deterministic: the same seed, the same order), or as they are
/// without one.
pub fn shuffled<T>(mut items: Vec<T>, seed: Option<u64>) -> Vec<T> {
    if let Some(seed) = seed {
        fastrand::Rng::with_seed(seed).shuffle(&mut items);
    }
    items
}

/// Run every phase, in an order shuffled with the boot's seed (and each phase's cases too);
/// returns the closing verdict's (passed, failed).
pub fn run() -> (usize, usize) {
    let _ = rmmod();
    let (mut passed, mut failed) = (0, 0);
    let seed = seed();
    let phases = shuffled(PHASES.iter().collect(), seed);
    let names: Vec<&str> = phases.iter().map(|p| p.name).collect();
    match seed {
        Some(k) => println!("  | seed {k}: phase order {}", names.join(", ")),
        None => println!("  | no hdpflush_seed: phase order {}", names.join(", ")),
    }
    for phase in phases {
        match run_phase(phase) {
            Ok(()) => {
                println!("ok     evidence phase {}", phase.name);
                passed += 1;
            }
            Err(why) => {
                println!("FAILED evidence phase {}: {why}", phase.name);
                failed += 1;
            }
        }
        let _ = rmmod();
    }
    (passed, failed)
}

fn run_phase(phase: &Phase) -> Result<(), String> {
    insmod(phase.params)?;
    let (report, command, extra) = match phase.run {
        Run::Bench(args) => {
            let (report, command) = bench(phase, args)?;
            (report, command, None)
        }
        Run::Here(measure) => {
            let report = measure()?;
            let ratios = ratios(&report);
            for r in ratios.as_array().into_iter().flatten() {
                let what = r["what"].as_str().unwrap_or_default();
                println!(
                    "  | ratio: {what}: {:.2}x",
                    r["ratio"].as_f64().unwrap_or(0.0)
                );
            }
            let command = format!(
                "hdpflush-guest-tests evidence (phase {}: libflush's API, measured in-process)",
                phase.name
            );
            (report, command, Some(ratios))
        }
    };
    let mut wrapped = json!({
        "phase": phase.name,
        "purpose": phase.purpose.split_whitespace().collect::<Vec<_>>().join(" "),
        "module_params": phase.params,
        "command": command,
        "report": report,
    });
    if let Some(ratios) = extra {
        wrapped["ratios"] = ratios;
    }
    let text = serde_json::to_string_pretty(&wrapped).map_err(|e| e.to_string())?;
    println!("{BEGIN} {} {}", phase.name, text.len());
    for line in text.lines() {
        println!("{LINE}{line}");
    }
    println!("{END} {}", phase.name);
    Ok(())
}

/// `hdpflush bench` with `bench_args`: its JSON report and the command line.
fn bench(phase: &Phase, bench_args: &[&str]) -> Result<(Value, String), String> {
    let bar = match crate::dev().and_then(|d| edu_devices(&d)) {
        Ok(edu) => edu
            .first()
            .map(|(_, pci)| format!("/sys/bus/pci/devices/{pci}/resource0")),
        Err(_) => None,
    };
    let mut args = vec!["bench".to_owned()];
    for a in bench_args {
        if a.contains("{bar}") {
            let bar = bar.as_deref().ok_or("no emulated device is served")?;
            args.push(a.replace("{bar}", bar));
        } else {
            args.push((*a).to_owned());
        }
    }
    let dir = format!("/tmp/evidence/{}", phase.name);
    args.extend(["--quiet", "--out-dir", &dir].map(String::from));
    if let Some(k) = seed() {
        args.extend(["--shuffle".to_owned(), k.to_string()]);
    }
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = sh("/hdpflush", &argv)?;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        println!("  | {line}");
    }
    // The case order a shuffled bench ran in (its stderr says nothing else with --quiet).
    for line in String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.starts_with("bench: case order"))
    {
        println!("  | {line}");
    }
    if !out.status.success() {
        return Err(format!(
            "hdpflush bench: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let report = std::fs::read_to_string(Path::new(&dir).join("bench.json"))
        .map_err(|e| format!("{dir}/bench.json: {e}"))?;
    let report = serde_json::from_str(&report).map_err(|e| e.to_string())?;
    Ok((report, format!("hdpflush {}", args.join(" "))))
}

// ---------------------------------------------------------------------------------------------
// The `gpus` phase: flush_gpus and the batched handle, measured through libflush's API.
// ---------------------------------------------------------------------------------------------

/// Module devices the `gpus` phase flushes at once (the module's most simulated devices).
const GPUS: u32 = 8;
/// Flushes measured per case, and warm-up flushes.
const FLUSHES: u64 = 16_000;
const WARMUP: u64 = 800;
/// How long one sample should last, as `hdpflush bench` does.
const SAMPLE_NS: f64 = 2_000.0;
/// SQPOLL poller idle time, as `hdpflush bench --sqpoll`.
const SQPOLL_IDLE_MS: u32 = 50;

/// The ratios the phase is for: (what, numerator label, denominator label).
const RATIOS: &[(&str, &str, &str)] = &[
    (
        "8 devices: one flush_gpus / one ioctl flush per device",
        "flush_gpus (completed, 8 devices, one io_uring submission)",
        "ioctl (completed, 8 devices, one ioctl each)",
    ),
    (
        "8 devices: one uring flush per device / one ioctl flush per device",
        "uring (completed, 8 devices, one submission each)",
        "ioctl (completed, 8 devices, one ioctl each)",
    ),
    (
        "one flush: BATCHED (uring) / ioctl",
        "uring (completed, BATCHED)",
        "ioctl (completed)",
    ),
    (
        "one flush: BATCHED + SQPOLL / ioctl",
        "uring (completed, BATCHED, sqpoll)",
        "ioctl (completed)",
    ),
    (
        "2 threads, one handle: BATCHED / ioctl",
        "uring (completed, BATCHED, 2 threads)",
        "ioctl (completed, 2 threads)",
    ),
    (
        "2 threads, one handle: BATCHED + SQPOLL / ioctl",
        "uring (completed, BATCHED, sqpoll, 2 threads)",
        "ioctl (completed, 2 threads)",
    ),
];

/// One operation of a case: `batch` flushes.
type Op<'a> = Box<dyn FnMut() -> libflush::Result<()> + Send + 'a>;

/// What `hdpflush bench` calls a case: one operation per thread, each `batch` flushes.
struct Case<'a> {
    strategy: &'static str,
    variant: String,
    backing: Backing,
    batch: u64,
    ops: Vec<Op<'a>>,
    /// `io_uring_enter` calls made so far by what the case uses.
    enters: Option<Box<dyn Fn() -> u64 + 'a>>,
}

impl Case<'_> {
    fn label(&self) -> String {
        format!("{} ({})", self.strategy, self.variant)
    }
}

/// Every device's (flush requests, hardware flushes), summed.
fn counted(d: &HdpFlushDevice) -> Result<(u64, u64), String> {
    (0..d.version().num_devices).try_fold((0, 0), |(r, h), i| {
        let s = d.stats(i, 0).map_err(|e| e.to_string())?;
        Ok((r + s.flush_requests, h + s.hw_flushes))
    })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// `ops` operations of `op` in samples of `per_sample`: each sample's ns per flush.
fn samples(op: &mut Op<'_>, ops: u64, per_sample: u64, batch: u64) -> libflush::Result<Vec<f64>> {
    let mut out = Vec::new();
    let mut done = 0;
    while done < ops {
        let k = per_sample.min(ops - done);
        let t = Instant::now();
        for _ in 0..k {
            op()?;
        }
        out.push(t.elapsed().as_nanos() as f64 / (k * batch) as f64);
        done += k;
    }
    Ok(out)
}

/// Time `case` as `hdpflush bench` does (one thread: total time over flushes; several: each
/// runs an equal share at once, mean is wall time over all flushes), as one bench JSON result.
fn measure(d: &HdpFlushDevice, mut case: Case<'_>) -> Result<Value, String> {
    let threads = case.ops.len() as u64;
    let (batch, label) = (case.batch, case.label());
    let failed = |e: libflush::Error| format!("{label}: {e}");
    for op in &mut case.ops {
        for _ in 0..WARMUP.div_ceil(batch * threads) {
            op().map_err(failed)?;
        }
    }
    let t = Instant::now();
    for _ in 0..16 {
        (case.ops[0])().map_err(failed)?;
    }
    let per_op = t.elapsed().as_nanos() as f64 / 16.0;
    let per_sample = ((SAMPLE_NS / per_op.max(1.0)).ceil() as u64).clamp(1, 4096);
    let share = FLUSHES.div_ceil(batch * threads);
    let (requests, hw) = counted(d)?;
    let enters = case.enters.as_ref().map(|e| e());
    let start = Barrier::new(case.ops.len());
    let begun = Instant::now();
    let per_thread: Vec<libflush::Result<Vec<f64>>> = std::thread::scope(|s| {
        let handles: Vec<_> = case
            .ops
            .iter_mut()
            .map(|op| {
                let start = &start;
                s.spawn(move || {
                    start.wait();
                    samples(op, share, per_sample, batch)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let wall_ns = begun.elapsed().as_nanos() as f64;
    let mut all = Vec::new();
    for r in per_thread {
        all.extend(r.map_err(failed)?);
    }
    all.sort_by(f64::total_cmp);
    let flushes = share * threads * batch;
    let (requests_after, hw_after) = counted(d)?;
    let hw_per_request = (requests_after > requests)
        .then(|| (hw_after - hw) as f64 / (requests_after - requests) as f64);
    let enters_per_flush = match (enters, case.enters.as_ref().map(|e| e())) {
        (Some(e0), Some(e1)) => Some((e1 - e0) as f64 / flushes as f64),
        _ => None,
    };
    Ok(result(
        &case,
        &Timing {
            flushes,
            mean_ns: wall_ns / flushes as f64,
            p50_ns: percentile(&all, 50.0),
            p99_ns: percentile(&all, 99.0),
            samples: all.len(),
            ops_per_sample: per_sample,
            hw_per_request,
            enters_per_flush,
        },
    ))
}

/// What [`measure`] found.
struct Timing {
    flushes: u64,
    mean_ns: f64,
    p50_ns: f64,
    p99_ns: f64,
    samples: usize,
    ops_per_sample: u64,
    hw_per_request: Option<f64>,
    enters_per_flush: Option<f64>,
}

/// One result of `hdpflush bench`'s JSON report (its `CaseResult`); `relative` is filled in
/// once the baseline is known.
fn result(case: &Case<'_>, t: &Timing) -> Value {
    json!({
        "strategy": case.strategy,
        "variant": case.variant,
        "backing": case.backing,
        "batch": case.batch,
        "threads": case.ops.len(),
        "hw_flushes_per_request": t.hw_per_request,
        "enters_per_flush": t.enters_per_flush,
        "flushes": t.flushes,
        "mean_ns": t.mean_ns,
        "p50_ns": t.p50_ns,
        "p99_ns": t.p99_ns,
        "flushes_per_sec": 1e9 / t.mean_ns.max(f64::MIN_POSITIVE),
        "samples": t.samples,
        "ops_per_sample": t.ops_per_sample,
        "relative": 0.0,
    })
}

/// `hdpflush bench`'s JSON report (its `BenchReport`) around `results`, each one's `relative`
/// set against `baseline`'s mean.
fn report(started_unix: u64, mut results: Vec<Value>, baseline: &str) -> Result<Value, String> {
    let base_ns = results
        .iter()
        .find(|r| label_of(r) == baseline)
        .and_then(|r| r["mean_ns"].as_f64())
        .ok_or_else(|| format!("no case {baseline}"))?;
    for r in &mut results {
        let mean = r["mean_ns"].as_f64().unwrap_or(0.0);
        r["relative"] = json!(mean / base_ns);
    }
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    Ok(json!({
        "tool": "hdpflush-guest-tests",
        "version": env!("CARGO_PKG_VERSION"),
        "started_unix": started_unix,
        "host": {
            "arch": std::env::consts::ARCH,
            "page_size": libflush::page_size(),
            "kernel": kernel.trim(),
            "cpus": std::thread::available_parallelism().map_or(1, |n| n.get()),
        },
        "iterations": FLUSHES,
        "warmup": WARMUP,
        "baseline": baseline,
        "results": results,
        "skipped": [],
    }))
}

/// The first failure of a `flush_gpus`, as one result.
fn all_ok(results: Vec<libflush::Result<()>>) -> libflush::Result<()> {
    results.into_iter().collect()
}

/// The `gpus` phase: [`RATIOS`]' cases, as `hdpflush bench`'s JSON report.
fn gpus() -> Result<Value, String> {
    let started_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let d = crate::dev()?;
    let n = d.version().num_devices;
    if n != GPUS {
        return Err(format!("the module serves {n} devices, not {GPUS}"));
    }
    let e = |e: libflush::Error| e.to_string();
    let ioctls = (0..GPUS)
        .map(|i| Ioctl::open(i, Completion::Completed))
        .collect::<libflush::Result<Vec<_>>>()
        .map_err(e)?;
    let uring = |device, sqpoll_idle_ms| {
        Uring::open(UringConfig {
            device,
            sqpoll_idle_ms,
            ..UringConfig::default()
        })
    };
    let rings = (0..GPUS)
        .map(|i| uring(i, None))
        .collect::<libflush::Result<Vec<_>>>()
        .map_err(e)?;
    let (batched, polled) = (
        uring(0, None).map_err(e)?,
        uring(0, Some(SQPOLL_IDLE_MS)).map_err(e)?,
    );
    let gpus: Vec<&dyn Flush> = ioctls.iter().map(|f| f as &dyn Flush).collect();
    let backing = ioctls[0].backing();
    let all = format!("{GPUS} module devices, sim backend");
    let many = Backing::new(backing.kind, all);
    let mut cases = vec![
        Case {
            strategy: "ioctl",
            variant: format!("completed, {GPUS} devices, one ioctl each"),
            backing: many.clone(),
            batch: GPUS.into(),
            ops: vec![Box::new(|| ioctls.iter().try_for_each(|f| f.flush()))],
            enters: None,
        },
        Case {
            strategy: "flush_gpus",
            variant: format!("completed, {GPUS} devices, one io_uring submission"),
            backing: many.clone(),
            batch: GPUS.into(),
            ops: vec![Box::new(|| all_ok(libflush::flush_gpus(&gpus, None)))],
            enters: Some(Box::new(libflush::multi_gpu::io_uring_enters)),
        },
        Case {
            strategy: "uring",
            variant: format!("completed, {GPUS} devices, one submission each"),
            backing: many,
            batch: GPUS.into(),
            ops: vec![Box::new(|| rings.iter().try_for_each(|f| f.flush()))],
            enters: Some(Box::new(|| rings.iter().map(Uring::io_uring_enters).sum())),
        },
    ];
    for threads in [1usize, 2] {
        let suffix = if threads > 1 {
            format!(", {threads} threads")
        } else {
            String::new()
        };
        let ioctl = &ioctls[0];
        cases.push(Case {
            strategy: "ioctl",
            variant: format!("completed{suffix}"),
            backing: backing.clone(),
            batch: 1,
            ops: (0..threads)
                .map(|_| Box::new(|| ioctl.flush()) as Op<'_>)
                .collect(),
            enters: None,
        });
        for (handle, how) in [(&batched, "BATCHED"), (&polled, "BATCHED, sqpoll")] {
            cases.push(Case {
                strategy: "uring",
                variant: format!("completed, {how}{suffix}"),
                backing: backing.clone(),
                batch: 1,
                ops: (0..threads)
                    .map(|_| Box::new(|| handle.flush()) as Op<'_>)
                    .collect(),
                enters: Some(Box::new(|| handle.io_uring_enters())),
            });
        }
    }
    // Run in the boot's shuffled order; reported in the usual one.
    let mut results: Vec<Option<Value>> = vec![None; cases.len()];
    let order = shuffled(cases.into_iter().enumerate().collect(), seed());
    let labels: Vec<String> = order.iter().map(|(_, c)| c.label()).collect();
    println!("  | case order: {}", labels.join(", "));
    for (at, case) in order {
        println!("  | {}", case.label());
        results[at] = Some(measure(&d, case)?);
    }
    report(
        started_unix,
        results.into_iter().flatten().collect(),
        "ioctl (completed)",
    )
}

/// "strategy (variant)" of a result.
fn label_of(result: &Value) -> String {
    format!(
        "{} ({})",
        result["strategy"].as_str().unwrap_or_default(),
        result["variant"].as_str().unwrap_or_default()
    )
}

/// [`RATIOS`] found in `report`, as `[{what, ratio, of, to}]`.
fn ratios(report: &Value) -> Value {
    let mean = |label: &str| {
        report["results"]
            .as_array()?
            .iter()
            .find(|r| label_of(r) == label)?["mean_ns"]
            .as_f64()
    };
    RATIOS
        .iter()
        .filter_map(|&(what, of, to)| {
            Some(json!({"what": what, "ratio": mean(of)? / mean(to)?, "of": of, "to": to}))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use libflush::strategy::BackingKind;
    use std::collections::BTreeSet;

    #[test]
    fn the_seed_comes_from_the_command_line_and_fixes_the_order() {
        assert_eq!(
            seed_of("console=ttyS0 quiet hdpflush_evidence hdpflush_seed=42"),
            Some(42)
        );
        assert_eq!(seed_of("console=ttyS0 hdpflush_evidence"), None);
        assert_eq!(seed_of("hdpflush_seed=x"), None);
        let names = |seed| shuffled(PHASES.iter().map(|p| p.name).collect::<Vec<_>>(), seed);
        assert_eq!(names(None), ["sim", "sim-1us", "emulated", "gpus"]);
        assert_eq!(names(Some(7)), names(Some(7)), "deterministic per seed");
        let orders: BTreeSet<Vec<&str>> = (1..=8).map(|k| names(Some(k))).collect();
        assert!(orders.len() > 1, "different seeds, different orders");
        let mut sorted = names(Some(7));
        sorted.sort_unstable();
        assert_eq!(sorted, ["emulated", "gpus", "sim", "sim-1us"]);
    }

    fn keys(v: &Value) -> BTreeSet<String> {
        v.as_object().unwrap().keys().cloned().collect()
    }

    /// The `gpus` phase writes `hdpflush bench`'s JSON itself: it must have the fields of the
    /// runs in docs/evidence/evidence.json, which `hdpflush report --evidence` reads.
    #[test]
    fn a_phase_measured_here_writes_the_bench_reports_fields() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/evidence/evidence.json");
        let evidence: Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let bench = &evidence["places"][0]["runs"][0]["report"];
        let case = Case {
            strategy: "ioctl",
            variant: "completed".into(),
            backing: Backing::new(BackingKind::KernelModel, "x"),
            batch: 1,
            ops: vec![Box::new(|| Ok(()))],
            enters: None,
        };
        let timing = Timing {
            flushes: 10,
            mean_ns: 4.0,
            p50_ns: 3.0,
            p99_ns: 9.0,
            samples: 10,
            ops_per_sample: 1,
            hw_per_request: Some(1.0),
            enters_per_flush: None,
        };
        let one = result(&case, &timing);
        assert_eq!(keys(&one), keys(&bench["results"][0]));
        assert_eq!(
            one["backing"],
            json!({"kind": "kernel-model", "detail": "x"})
        );
        let report = report(0, vec![one], "ioctl (completed)").unwrap();
        assert_eq!(keys(&report), keys(bench));
        assert_eq!(keys(&report["host"]), keys(&bench["host"]));
        assert_eq!(report["results"][0]["relative"], json!(1.0));
        assert_eq!(
            ratios(&report),
            json!([]),
            "no ratio without both of its cases"
        );
    }
}
