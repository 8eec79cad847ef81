//! `hdpflush bench`: every requested strategy, side by side, in one run.
//!
//! Each case runs its warm-up, then its measured flushes in samples of `ops_per_sample`
//! operations (calibrated so a sample lasts about 2 us, long enough for the clock and short
//! enough to see the tail). p50/p99 are over the samples' ns per flush; mean is the whole
//! run's time over its flushes.

use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use std::sync::Arc;

use libflush::device::HdpFlushDevice;
use libflush::measure::floors::{IoctlFloor, UringNopFloor};
use libflush::select::STRATEGY_ENV;
use libflush::strategy::{Backing, BackingKind};
use libflush::{Completion, Error, Flush, Ioctl, StrategyKind, Uring, UringConfig};

use crate::data::bench_report::{self, BenchReport, CaseResult, HostInfo, Skipped};
use crate::error::CliError;
use crate::stdout::emit;
use crate::{plot, print};

/// How long one sample should last.
const SAMPLE_NS: f64 = 2_000.0;
/// Upper bound on operations per sample, so slow clocks still give many samples.
const MAX_OPS_PER_SAMPLE: u64 = 4096;
/// SQPOLL thread idle time before it sleeps.
const SQPOLL_IDLE_MS: u32 = 50;

/// Options of `hdpflush bench`.
#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Strategies to run (repeat or comma-separate). Default: $HDPFLUSH_STRATEGY if set, else
    /// every strategy usable on this host.
    #[arg(long = "strategy", short = 's', value_delimiter = ',')]
    pub strategies: Vec<StrategyKind>,
    /// Measured flushes per case.
    #[arg(long, short = 'n', default_value_t = 200_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub iterations: u64,
    /// Unmeasured flushes before each case.
    #[arg(long, default_value_t = 10_000)]
    pub warmup: u64,
    /// io_uring batch sizes (flushes per submission).
    #[arg(long = "batch", value_delimiter = ',', default_values_t = [1, 8, 32, 128], value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub batches: Vec<u32>,
    /// Threads flushing at once, for the ioctl and uring strategies (each thread has its own
    /// handle; the module coalesces their flushes).
    #[arg(long = "threads", value_delimiter = ',', default_values_t = [1], value_parser = clap::value_parser!(u32).range(1..=64))]
    pub threads: Vec<u32>,
    /// Also measure this host's kernel-entry floors (an ioctl /dev/null rejects, io_uring NOP
    /// per batch size) when strategies are named; they run by default otherwise.
    #[arg(long)]
    pub reference: bool,
    /// Run a mapping strategy over a file instead of a stand-in: STRATEGY=PATH[@OFFSET], e.g.
    /// dummy-page=/sys/bus/pci/devices/0000:00:04.0/resource0@0x1000 (repeatable).
    #[arg(long = "map", value_name = "STRATEGY=PATH[@OFFSET]")]
    pub maps: Vec<MapSpec>,
    /// Also run io_uring with a kernel SQ polling thread.
    #[arg(long)]
    pub sqpoll: bool,
    /// Directory for bench.json and bench.svg.
    #[arg(long, default_value = "hdpflush-bench")]
    pub out_dir: PathBuf,
    /// Write JSON here instead of <out-dir>/bench.json.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the plot here instead of <out-dir>/bench.svg.
    #[arg(long)]
    pub svg: Option<PathBuf>,
    /// No progress bar on stderr.
    #[arg(long)]
    pub quiet: bool,
    /// Run the cases in an order shuffled with this seed (printed on stderr), so that no case
    /// always runs first or after the same neighbour; the report lists them in their usual order.
    #[arg(long, value_name = "SEED")]
    pub shuffle: Option<u64>,
}

/// The order `n` cases run in: as listed, or shuffled with `seed` (the same seed gives the same
/// order).
pub fn case_order(n: usize, seed: Option<u64>) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    if let Some(seed) = seed {
        fastrand::Rng::with_seed(seed).shuffle(&mut order);
    }
    order
}

/// `--map STRATEGY=PATH[@OFFSET]`: run a mapping strategy over `len` bytes of a file.
#[derive(Clone, Debug)]
pub struct MapSpec {
    kind: StrategyKind,
    path: PathBuf,
    offset: u64,
}

impl MapSpec {
    /// "PATH@OFFSET", for labels.
    fn place(&self) -> String {
        format!("{}@{:#x}", self.path.display(), self.offset)
    }
}

impl std::str::FromStr for MapSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let usage = "expected STRATEGY=PATH[@OFFSET], e.g. dummy-page=/sys/bus/pci/devices/0000:00:04.0/resource0@0x1000";
        let (name, rest) = s.split_once('=').ok_or_else(|| usage.to_owned())?;
        let kind = StrategyKind::parse(name, "--map").map_err(|e| e.to_string())?;
        if !matches!(
            kind,
            StrategyKind::MmioRemap | StrategyKind::DummyPage | StrategyKind::Legacy
        ) {
            return Err(format!(
                "`{kind}` maps nothing; --map takes mmio-remap, dummy-page or legacy"
            ));
        }
        let (path, offset) = match rest.rsplit_once('@') {
            Some((p, o)) => {
                let parsed = match o.strip_prefix("0x") {
                    Some(hex) => u64::from_str_radix(hex, 16),
                    None => o.parse(),
                };
                (p, parsed.map_err(|_| format!("bad offset `{o}`: {usage}"))?)
            }
            None => (rest, 0),
        };
        if path.is_empty() {
            return Err(usage.to_owned());
        }
        Ok(Self {
            kind,
            path: PathBuf::from(path),
            offset,
        })
    }
}

/// One operation: `batch` flushes (or floor entries).
type Op = Box<dyn FnMut() -> libflush::Result<()> + Send>;

/// Reads a device's (flush requests, hardware flushes) from STATS.
type Counters = Box<dyn Fn() -> libflush::Result<(u64, u64)>>;

/// Reads the `io_uring_enter` calls a case's rings have made.
type Enters = Box<dyn Fn() -> u64>;

/// One thing to time: one operation per thread, each doing `batch` flushes.
struct Case {
    strategy: String,
    variant: String,
    backing: Backing,
    batch: usize,
    ops: Vec<Op>,
    counters: Option<Counters>,
    enters: Option<Enters>,
}

impl Case {
    fn flush(f: Box<dyn Flush>, variant: &str) -> Self {
        Self {
            strategy: f.kind().name().to_owned(),
            variant: variant.to_owned(),
            backing: f.backing(),
            batch: 1,
            ops: vec![Box::new(move || f.flush())],
            counters: None,
            enters: None,
        }
    }

    /// The remap page both ways: ROCclr's store and read-back, and the posted store alone.
    fn remap_page(f: Box<dyn Flush>, place: &str) -> Vec<Self> {
        let f: Arc<dyn Flush> = f.into();
        [
            (Completion::Completed, "completed, ROCclr's read-back"),
            (Completion::Posted, "posted"),
        ]
        .into_iter()
        .map(|(completion, how)| {
            let f = Arc::clone(&f);
            let variant = if place.is_empty() {
                how.to_owned()
            } else {
                format!("{how}, {place}")
            };
            Self {
                strategy: f.kind().name().to_owned(),
                variant,
                backing: f.backing(),
                batch: 1,
                ops: vec![Box::new(move || f.flush_with(completion))],
                counters: None,
                enters: None,
            }
        })
        .collect()
    }

    fn single(strategy: &str, variant: String, backing: Backing, batch: usize, op: Op) -> Self {
        Self {
            strategy: strategy.to_owned(),
            variant,
            backing,
            batch,
            ops: vec![op],
            counters: None,
            enters: None,
        }
    }

    fn label(&self) -> String {
        bench_report::label(&self.strategy, &self.variant)
    }
}

/// The strategies to run, and whether the user named them (then failure to open is an error).
fn requested(args: &BenchArgs) -> Result<(Vec<StrategyKind>, bool), CliError> {
    if !args.strategies.is_empty() {
        return Ok((args.strategies.clone(), true));
    }
    match std::env::var(STRATEGY_ENV) {
        Ok(name) if !name.trim().is_empty() => {
            Ok((vec![StrategyKind::parse(&name, STRATEGY_ENV)?], true))
        }
        _ => Ok((StrategyKind::ALL.to_vec(), false)),
    }
}

/// The cases one strategy contributes.
fn cases_for(kind: StrategyKind, args: &BenchArgs) -> libflush::Result<Vec<Case>> {
    let unavailable = |e: Error| e.unavailable_for(kind);
    match kind {
        StrategyKind::Ioctl => {
            // The first device's own node, as a runtime's flusher for it goes (index 0 there).
            let dev = libflush::first_module_device(kind)?;
            let open = |completion| Ioctl::on_device(dev.try_clone()?, 0, completion);
            let probe = open(Completion::Completed).map_err(unavailable)?;
            let backing = probe.backing();
            let floor = open(Completion::Completed)?;
            let mut cases = vec![Case::single(
                "reference",
                "ioctl NOP, kernel-entry floor".into(),
                Backing::new(
                    BackingKind::HostKernel,
                    "ioctl NOP on the device's node: this kernel's entry into the module, no flush",
                ),
                1,
                Box::new(move || floor.device().nop()),
            )];
            for &threads in &args.threads {
                for completion in [Completion::Posted, Completion::Completed] {
                    let name = completion.name();
                    let ops = (0..threads)
                        .map(|_| {
                            let f = open(completion)?;
                            Ok(Box::new(move || f.flush()) as Op)
                        })
                        .collect::<libflush::Result<Vec<Op>>>()?;
                    cases.push(Case {
                        strategy: kind.name().into(),
                        variant: with_threads(name.to_owned(), threads),
                        backing: backing.clone(),
                        batch: 1,
                        ops,
                        counters: Some(device0_counters(&dev)?),
                        enters: None,
                    });
                }
            }
            Ok(cases)
        }
        StrategyKind::Uring => {
            let dev = libflush::first_module_device(kind)?;
            let backing = Ioctl::on_device(dev.try_clone()?, 0, Completion::Completed)
                .map_err(unavailable)?
                .backing();
            let mut cases = Vec::new();
            // What io_uring's URING_CMD path costs before the module flushes anything.
            for &batch in &args.batches {
                let ring = Uring::on_device(
                    dev.try_clone()?,
                    UringConfig {
                        entries: batch.next_power_of_two(),
                        ..UringConfig::default()
                    },
                )
                .map_err(unavailable)?;
                let n = batch as usize;
                cases.push(Case::single(
                    "reference",
                    format!("URING_CMD NOP batch {batch}"),
                    Backing::new(
                        BackingKind::HostKernel,
                        "URING_CMD NOP on the device's node: io_uring's command path into the module, no flush",
                    ),
                    n,
                    Box::new(move || ring.nop_batch(n)),
                ));
            }
            let sqpoll: &[Option<u32>] = if args.sqpoll {
                &[None, Some(SQPOLL_IDLE_MS)]
            } else {
                &[None]
            };
            for &threads in &args.threads {
                for &sq in sqpoll {
                    for &batch in &args.batches {
                        let n = batch as usize;
                        let mut ops: Vec<Op> = Vec::new();
                        let mut rings = Vec::new();
                        for _ in 0..threads {
                            let ring = Arc::new(
                                Uring::on_device(
                                    dev.try_clone()?,
                                    UringConfig {
                                        entries: batch.next_power_of_two(),
                                        sqpoll_idle_ms: sq,
                                        ..UringConfig::default()
                                    },
                                )
                                .map_err(unavailable)?,
                            );
                            rings.push(Arc::clone(&ring));
                            ops.push(Box::new(move || ring.flush_batch(n)));
                        }
                        // io_uring flushes complete (SYNC), as the default flusher does: say
                        // so, beside the ioctl's posted and completed rows.
                        let variant = match sq {
                            Some(_) => format!("completed, batch {batch}, sqpoll"),
                            None => format!("completed, batch {batch}"),
                        };
                        cases.push(Case {
                            strategy: kind.name().into(),
                            variant: with_threads(variant, threads),
                            backing: backing.clone(),
                            batch: n,
                            ops,
                            counters: Some(device0_counters(&dev)?),
                            enters: Some(Box::new(move || {
                                rings.iter().map(|r| r.io_uring_enters()).sum()
                            })),
                        });
                    }
                }
            }
            Ok(cases)
        }
        _ => {
            let (f, place) = match args.maps.iter().find(|m| m.kind == kind) {
                Some(m) => (libflush::open_mapped(kind, &m.path, m.offset)?, m.place()),
                None => (libflush::open_for_bench(kind)?, String::new()),
            };
            if kind == StrategyKind::MmioRemap {
                Ok(Case::remap_page(f, &place))
            } else {
                Ok(vec![Case::flush(f, &place)])
            }
        }
    }
}

/// "`variant`, N threads" when more than one thread runs it.
fn with_threads(variant: String, threads: u32) -> String {
    if threads > 1 {
        format!("{variant}, {threads} threads")
    } else {
        variant
    }
}

/// The benchmarked device's STATS counters, through a handle of its own on its node.
fn device0_counters(dev: &HdpFlushDevice) -> libflush::Result<Counters> {
    let handle = dev.try_clone()?;
    Ok(Box::new(move || {
        let s = handle.stats(0, 0)?;
        Ok((s.flush_requests, s.hw_flushes))
    }))
}

/// This host's kernel-entry floors: what the ioctl and io_uring strategies cost at least.
fn reference_cases(args: &BenchArgs) -> (Vec<Case>, Vec<Skipped>) {
    let mut cases = Vec::new();
    let mut skipped = Vec::new();
    match IoctlFloor::open() {
        Ok(floor) => cases.push(Case::single(
            "reference",
            "ioctl ENOTTY on /dev/null".into(),
            floor.backing(),
            1,
            Box::new(move || floor.enter()),
        )),
        Err(e) => skipped.push(Skipped {
            strategy: "reference ioctl".into(),
            reason: e.to_string(),
        }),
    }
    for &batch in &args.batches {
        match UringNopFloor::new(batch.next_power_of_two()) {
            Ok(floor) => {
                let n = batch as usize;
                cases.push(Case::single(
                    "reference",
                    format!("io_uring NOP batch {batch}"),
                    floor.backing(),
                    n,
                    Box::new(move || floor.submit(n)),
                ));
            }
            Err(e) => {
                skipped.push(Skipped {
                    strategy: "reference io_uring".into(),
                    reason: e.to_string(),
                });
                break;
            }
        }
    }
    for m in &args.maps {
        match mmio_floors(m) {
            Ok(c) => cases.extend(c),
            Err(e) => skipped.push(Skipped {
                strategy: format!("reference MMIO at {}", m.place()),
                reason: e.to_string(),
            }),
        }
    }
    (cases, skipped)
}

/// One uncached 32-bit load, and one store, through `m`'s mapping: what the mapping strategies'
/// stores and read-backs cost at least on that backing.
fn mmio_floors(m: &MapSpec) -> libflush::Result<Vec<Case>> {
    use libflush::region::Bar;
    let load = Arc::new(libflush::MappedRegion::map_file(&m.path, m.offset, 4)?);
    let store = Arc::clone(&load);
    let backing = load.backing();
    Ok(vec![
        Case::single(
            "reference",
            format!("uncached 32-bit load, {}", m.place()),
            backing.clone(),
            1,
            Box::new(move || {
                std::hint::black_box(load.read_u32(0));
                Ok(())
            }),
        ),
        Case::single(
            "reference",
            format!("uncached 32-bit store, {}", m.place()),
            backing,
            1,
            Box::new(move || {
                store.write_u32(0, 0);
                Ok(())
            }),
        ),
    ])
}

/// Timings of one case, before the baseline is known.
struct Timing {
    flushes: u64,
    mean_ns: f64,
    p50_ns: f64,
    p99_ns: f64,
    samples: usize,
    ops_per_sample: u64,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Run `ops` operations of `op` in samples of `ops_per_sample`; per-flush ns of each sample,
/// and the total ns.
fn run_share(
    op: &mut Op,
    ops: u64,
    ops_per_sample: u64,
    batch: u64,
    bar: &ProgressBar,
) -> libflush::Result<(Vec<f64>, u128)> {
    let mut samples = Vec::with_capacity((ops / ops_per_sample + 1) as usize);
    let mut total_ns = 0u128;
    let mut done = 0;
    while done < ops {
        let k = ops_per_sample.min(ops - done);
        let t = Instant::now();
        for _ in 0..k {
            op()?;
        }
        let ns = t.elapsed().as_nanos();
        total_ns += ns;
        samples.push(ns as f64 / (k * batch) as f64);
        done += k;
        bar.inc(k);
    }
    Ok((samples, total_ns))
}

/// Time `case`. With one thread, mean is total time over flushes. With several, each runs an
/// equal share at once, mean is wall time over all flushes (the cost per flush of the whole
/// system, which is what coalescing improves) and p50/p99 are each caller's samples.
fn measure(
    case: &mut Case,
    args: &BenchArgs,
    bar: &ProgressBar,
    before_timed: &mut dyn FnMut() -> libflush::Result<()>,
) -> libflush::Result<Timing> {
    let batch = case.batch as u64;
    let threads = case.ops.len().max(1) as u64;
    for op in &mut case.ops {
        for _ in 0..args.warmup.div_ceil(batch * threads) {
            op()?;
        }
    }
    // Calibrate the sample length on one caller.
    let probe_ops = 16;
    let t = Instant::now();
    for _ in 0..probe_ops {
        (case.ops[0])()?;
    }
    let per_op = t.elapsed().as_nanos() as f64 / probe_ops as f64;
    let ops_per_sample = ((SAMPLE_NS / per_op.max(1.0)).ceil() as u64).clamp(1, MAX_OPS_PER_SAMPLE);
    let share = args.iterations.div_ceil(batch * threads);
    before_timed()?;

    let (mut samples, total_ns) = if threads == 1 {
        run_share(&mut case.ops[0], share, ops_per_sample, batch, bar)?
    } else {
        let start = std::sync::Barrier::new(case.ops.len());
        let results: Vec<libflush::Result<(Vec<f64>, Instant, Instant)>> =
            std::thread::scope(|s| {
                let handles: Vec<_> = case
                    .ops
                    .iter_mut()
                    .map(|op| {
                        let start = &start;
                        s.spawn(move || {
                            start.wait();
                            let t0 = Instant::now();
                            let (samples, _) = run_share(op, share, ops_per_sample, batch, bar)?;
                            Ok((samples, t0, Instant::now()))
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                    .collect()
            });
        let mut all = Vec::new();
        let (mut first, mut last) = (None::<Instant>, None::<Instant>);
        for r in results {
            let (samples, t0, t1) = r?;
            all.extend(samples);
            first = Some(first.map_or(t0, |f| f.min(t0)));
            last = Some(last.map_or(t1, |l| l.max(t1)));
        }
        let wall = match (first, last) {
            (Some(f), Some(l)) => l.duration_since(f).as_nanos(),
            _ => 0,
        };
        (all, wall)
    };
    samples.sort_by(f64::total_cmp);
    let flushes = share * threads * batch;
    Ok(Timing {
        flushes,
        mean_ns: total_ns as f64 / flushes as f64,
        p50_ns: percentile(&samples, 50.0),
        p99_ns: percentile(&samples, 99.0),
        samples: samples.len(),
        ops_per_sample,
    })
}

fn host_info() -> HostInfo {
    HostInfo {
        arch: std::env::consts::ARCH.into(),
        page_size: libflush::page_size(),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "unknown".into()),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
    }
}

/// The label results are compared against: ROCm's fast path if it ran, else the fastest case.
fn baseline(results: &[CaseResult]) -> Option<(String, f64)> {
    results
        .iter()
        .find(|c| c.strategy == StrategyKind::MmioRemap.name())
        .or_else(|| {
            results
                .iter()
                .min_by(|a, b| a.mean_ns.total_cmp(&b.mean_ns))
        })
        .map(|c| (c.label(), c.mean_ns))
}

/// Measure, print the table, write JSON and SVG.
pub fn run(args: &BenchArgs) -> Result<(), CliError> {
    let started_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (kinds, explicit) = requested(args)?;
    let mut cases = Vec::new();
    let mut skipped = Vec::new();
    for kind in kinds {
        let mapped = args.maps.iter().any(|m| m.kind == kind);
        match cases_for(kind, args) {
            Ok(c) => cases.extend(c),
            Err(e) if explicit || mapped => return Err(e.into()),
            Err(e) => skipped.push(Skipped {
                strategy: kind.name().into(),
                reason: match e {
                    Error::Unavailable { reason, .. } => reason,
                    other => other.to_string(),
                },
            }),
        }
    }
    if args.reference || !explicit {
        let (c, s) = reference_cases(args);
        cases.extend(c);
        skipped.extend(s);
    }
    if cases.is_empty() {
        let why = skipped
            .iter()
            .map(|s| format!("{}: {}", s.strategy, s.reason));
        return Err(CliError::NothingToRun(why.collect::<Vec<_>>().join("; ")));
    }

    let total: u64 = cases
        .iter()
        .map(|c| {
            let per = c.batch as u64 * c.ops.len() as u64;
            args.iterations.div_ceil(per) * c.ops.len() as u64
        })
        .sum();
    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(total)
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{bar:30}] {percent:>3}% {wide_msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let lines = !args.quiet && bar.is_hidden();

    let n_cases = cases.len();
    let order = case_order(n_cases, args.shuffle);
    if let Some(seed) = args.shuffle {
        let labels: Vec<String> = order.iter().map(|&i| cases[i].label()).collect();
        eprintln!("bench: case order (seed {seed}): {}", labels.join(", "));
    }
    let mut slots: Vec<Option<CaseResult>> = vec![None; n_cases];
    for (i, &at) in order.iter().enumerate() {
        let case = &mut cases[at];
        let label = case.label();
        bar.set_message(label.clone());
        if lines {
            eprintln!("bench [{}/{n_cases}] {label}", i + 1);
        }
        // Counted over the timed run only: warm-up and calibration are left out.
        let mut before = None;
        let mut enters_before = None;
        let (counters, enters) = (case.counters.take(), case.enters.take());
        let t = measure(case, args, &bar, &mut || {
            before = counters.as_ref().map(|c| c()).transpose()?;
            enters_before = enters.as_ref().map(|e| e());
            Ok(())
        })?;
        let after = counters.as_ref().map(|c| c()).transpose()?;
        let hw_flushes_per_request = match (before, after) {
            (Some((r0, h0)), Some((r1, h1))) if r1 > r0 => {
                Some((h1 - h0) as f64 / (r1 - r0) as f64)
            }
            _ => None,
        };
        let enters_per_flush = match (enters_before, enters.as_ref().map(|e| e())) {
            (Some(e0), Some(e1)) => Some((e1 - e0) as f64 / t.flushes as f64),
            _ => None,
        };
        slots[at] = Some(CaseResult {
            strategy: case.strategy.clone(),
            variant: case.variant.clone(),
            backing: case.backing.clone(),
            batch: case.batch,
            threads: case.ops.len(),
            hw_flushes_per_request,
            enters_per_flush,
            flushes: t.flushes,
            mean_ns: t.mean_ns,
            p50_ns: t.p50_ns,
            p99_ns: t.p99_ns,
            flushes_per_sec: 1e9 / t.mean_ns.max(f64::MIN_POSITIVE),
            samples: t.samples,
            ops_per_sample: t.ops_per_sample,
            relative: 0.0,
        });
    }
    bar.finish_and_clear();
    let mut results: Vec<CaseResult> = slots.into_iter().flatten().collect();

    let (baseline_label, baseline_ns) = baseline(&results).unwrap_or_default();
    for r in &mut results {
        r.relative = r.mean_ns / baseline_ns.max(f64::MIN_POSITIVE);
    }
    let report = BenchReport {
        tool: "hdpflush".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        started_unix,
        host: host_info(),
        iterations: args.iterations,
        warmup: args.warmup,
        baseline: baseline_label,
        results,
        skipped,
    };
    emit(&print::bench_report::table(&report))?;

    let json = args
        .json
        .clone()
        .unwrap_or_else(|| args.out_dir.join("bench.json"));
    let svg = args
        .svg
        .clone()
        .unwrap_or_else(|| args.out_dir.join("bench.svg"));
    for path in [&json, &svg] {
        create_parent(path)?;
    }
    report.save(&json)?;
    plot::bench_report::write_svg(&report, &svg)?;
    emit(&format!("wrote {} and {}\n", json.display(), svg.display()))?;
    Ok(())
}

fn create_parent(path: &Path) -> Result<(), CliError> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => {
            std::fs::create_dir_all(dir).map_err(|e| CliError::io(dir, e))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shuffled_order_is_a_permutation_fixed_by_its_seed() {
        assert_eq!(case_order(5, None), [0, 1, 2, 3, 4]);
        let a = case_order(20, Some(1));
        assert_eq!(a, case_order(20, Some(1)), "the same seed, the same order");
        assert_ne!(a, case_order(20, Some(2)), "another seed, another order");
        assert_ne!(a, case_order(20, None), "shuffled");
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..20).collect::<Vec<_>>());
    }
    use libflush::strategy::BackingKind;

    #[test]
    fn map_specs_parse_paths_and_offsets() {
        let m: MapSpec = "dummy-page=/sys/x/resource0@0x1000".parse().unwrap();
        assert_eq!((m.kind, m.offset), (StrategyKind::DummyPage, 0x1000));
        assert_eq!(m.path, PathBuf::from("/sys/x/resource0"));
        let m: MapSpec = "legacy=/tmp/f".parse().unwrap();
        assert_eq!((m.kind, m.offset), (StrategyKind::Legacy, 0));
        let m: MapSpec = "legacy=/tmp/a@b@64".parse().unwrap();
        assert_eq!((m.path, m.offset), (PathBuf::from("/tmp/a@b"), 64));
        assert!("dummy-page"
            .parse::<MapSpec>()
            .unwrap_err()
            .contains("STRATEGY=PATH"));
        assert!("fast=/x"
            .parse::<MapSpec>()
            .unwrap_err()
            .contains("unknown strategy"));
        assert!("legacy=/x@zz"
            .parse::<MapSpec>()
            .unwrap_err()
            .contains("bad offset"));
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }

    #[test]
    fn a_stand_in_case_keeps_its_label() {
        let f = libflush::open_for_bench(StrategyKind::DummyPage).unwrap();
        let case = Case::flush(f, "");
        assert_eq!(case.label(), "dummy-page");
        assert_eq!(case.backing.kind, BackingKind::StandIn);
    }
}
