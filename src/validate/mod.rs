//! `hdpflush validate`: the flush strategies on a real AMD GPU, through the HSA runtime.
//!
//! For every GPU HSA reports: W (a posted BAR store) and R (a BAR read round trip) on
//! host-visible VRAM, every strategy usable there, and the stale-data test (CPU writes a fresh
//! pattern through the BAR, flushes or not, a GPU kernel counts the words it sees stale). Exit
//! statuses are [`EXIT_NO_GPU`] and [`EXIT_STALE`] besides 0 and 1 (docs/validate.md).

mod code_objects;
mod gpu;
pub mod hsa;

use std::path::PathBuf;
use std::process::ExitCode;
use std::ptr::NonNull;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use clap::Args;
use libflush::barrier::Fences;
use libflush::strategy::{
    Backing, BackingKind, Completion, DummyPage, DummyPageVariant, Legacy, MmioRemap, StrategyKind,
    DUMMY_PAGE_MIN,
};
use libflush::{Bar, Flush, FlusherOptions, GpuSelector, MappedRegion, PciAddress};

use crate::data::hardware::{
    GpuValidation, HardwareReport, NotRun, Provenance, StaleCount, StrategyCost, SCHEMA,
};
use gpu::{Device, GpuAgent};
use hsa::Hsa;

/// Exit status when this host has no AMD GPU usable through HSA (or no HSA runtime).
pub const EXIT_NO_GPU: u8 = 3;
/// Exit status when a flush strategy let the GPU read stale data: a wrong result.
pub const EXIT_STALE: u8 = 4;

/// What `validate` needs, printed with [`EXIT_NO_GPU`].
pub const NEEDS: &str = "hdpflush validate needs: an AMD GPU driven by amdgpu with KFD \
(/dev/kfd present, readable and writable by this user: the `render` group on Debian), the HSA \
runtime libhsa-runtime64.so.1 (Debian: libhsa-runtime64-1), and VRAM the CPU can map (a large \
BAR)";

/// Options of `hdpflush validate`.
#[derive(Args, Debug, Clone)]
#[command(
    after_help = "Exit status: 0 every flush strategy passed; 1 an error; 2 bad usage; \
3 no AMD GPU usable here (no /dev/kfd, no HSA runtime or no GPU agent: the message says which \
and what is needed); 4 a flush strategy let the GPU read stale data (a wrong result)."
)]
pub struct ValidateArgs {
    /// Where to write the JSON that `hdpflush report --evidence E --hardware FILE` reads.
    #[arg(long, default_value = "hdpflush-validate.json")]
    pub json: PathBuf,
    /// Stale-data rounds per strategy and variant (and for the no-flush control).
    #[arg(long, default_value_t = 2000)]
    pub rounds: u64,
    /// Flushes timed per strategy, and stores/loads timed for W and R.
    #[arg(short = 'n', long, default_value_t = 20_000)]
    pub flushes: u64,
    /// Write the embedded GPU code objects to DIR (one `check_pattern-gfxNNN.co` per target)
    /// and exit: for checking how they were built.
    #[arg(long, value_name = "DIR")]
    pub write_code_objects: Option<PathBuf>,
}

/// Why validate stopped.
#[derive(Debug, thiserror::Error)]
pub enum ValidateError {
    /// No GPU can be reached: the status is [`EXIT_NO_GPU`].
    #[error("no AMD GPU usable here: {0}.\n{NEEDS}")]
    NoGpu(String),
    /// An HSA call failed.
    #[error("{call} failed: {status}")]
    Hsa {
        /// The call.
        call: String,
        /// The runtime's text for its status.
        status: String,
    },
    /// Setting a GPU up failed for another reason.
    #[error("{0}")]
    Setup(String),
    /// The code objects were not built into this binary.
    #[error("GPU code objects not built into this hdpflush: {0}")]
    NotBuilt(&'static str),
    /// From the CLI's shared errors (files, JSON).
    #[error(transparent)]
    Cli(#[from] crate::error::CliError),
    /// From libflush.
    #[error(transparent)]
    Flush(#[from] libflush::Error),
}

/// `hdpflush validate`, with its exit status.
pub fn main(args: &ValidateArgs) -> ExitCode {
    match run(args) {
        Ok(report) => {
            let failures: Vec<_> = report.failures().collect();
            if failures.is_empty() {
                return ExitCode::SUCCESS;
            }
            for (g, s) in failures {
                eprintln!(
                    "hdpflush validate: WRONG RESULT: {} at {}: {} ({}) left {} stale words in {} of {} rounds",
                    g.gfx_target, g.pci, s.strategy, s.variant, s.stale_words, s.stale_rounds, s.rounds
                );
            }
            ExitCode::from(EXIT_STALE)
        }
        Err(e @ ValidateError::NoGpu(_)) => {
            eprintln!("hdpflush validate: {e}");
            ExitCode::from(EXIT_NO_GPU)
        }
        Err(e) => {
            eprintln!("hdpflush validate: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The HSA library to load: `HDPFLUSH_HSA_LIBRARY` (for tests and unusual installs), else
/// Debian's soname.
fn library_name() -> String {
    std::env::var("HDPFLUSH_HSA_LIBRARY").unwrap_or_else(|_| hsa::LIBRARY.into())
}

fn run(args: &ValidateArgs) -> Result<HardwareReport, ValidateError> {
    if let Some(dir) = &args.write_code_objects {
        write_code_objects(dir)?;
        return Ok(empty_report());
    }
    let h = Hsa::load(&library_name()).map_err(|e| ValidateError::NoGpu(e.to_string()))?;
    // SAFETY: hsa_init has no arguments; balanced by hsa_shut_down in `Runtime::drop`.
    let status = unsafe { (h.f.hsa_init)() };
    if status != hsa::STATUS_SUCCESS {
        let kfd = std::path::Path::new("/dev/kfd");
        // 5.2 returns HSA_STATUS_ERROR_OUT_OF_RESOURCES without /dev/kfd (tried 2026-12-02).
        let why = if !kfd.exists() {
            let known = if status == hsa::STATUS_ERROR_OUT_OF_RESOURCES {
                ", what it returns without /dev/kfd"
            } else {
                ""
            };
            format!(
                "there is no /dev/kfd, and hsa_init returned {}{known}",
                h.describe(status)
            )
        } else if std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(kfd)
            .is_err()
        {
            format!(
                "/dev/kfd cannot be opened read-write by this user, and hsa_init returned {}",
                h.describe(status)
            )
        } else {
            return Err(ValidateError::Hsa {
                call: "hsa_init".into(),
                status: h.describe(status),
            });
        };
        return Err(ValidateError::NoGpu(why));
    }
    let runtime = Runtime(&h);
    let (gpus, cpu) = gpu::agents(runtime.0)?;
    if gpus.is_empty() {
        return Err(ValidateError::NoGpu(
            "HSA initialised but reports no GPU agent".into(),
        ));
    }
    if let Some(why) = code_objects::NOT_BUILT {
        return Err(ValidateError::NotBuilt(why));
    }
    let mut results = Vec::new();
    for agent in gpus {
        eprintln!("==> {} {} at {}", agent.product, agent.name, agent.pci);
        results.push(validate_gpu(&h, agent, cpu, args)?);
    }
    let report = HardwareReport {
        schema: SCHEMA.into(),
        provenance: provenance(&h),
        gpus: results,
    };
    report.save(&args.json)?;
    crate::stdout::emit(&report.table())?;
    crate::stdout::emit(&format!("wrote {}\n", args.json.display()))?;
    Ok(report)
}

/// `hsa_shut_down` when validation ends.
struct Runtime<'h>(&'h Hsa);

impl Drop for Runtime<'_> {
    fn drop(&mut self) {
        // SAFETY: balanced with the successful hsa_init.
        unsafe { (self.0.f.hsa_shut_down)() };
    }
}

/// A report of no GPU (what `--write-code-objects` returns: nothing was validated).
fn empty_report() -> HardwareReport {
    HardwareReport {
        schema: SCHEMA.into(),
        provenance: Provenance {
            host: String::new(),
            kernel: String::new(),
            arch: std::env::consts::ARCH.into(),
            page_size: libflush::page_size(),
            hsa_library: String::new(),
            hsa_version: String::new(),
            git_commit: None,
            hdpflush_version: env!("CARGO_PKG_VERSION").into(),
            command: String::new(),
            unix_time: 0,
        },
        gpus: Vec::new(),
    }
}

fn write_code_objects(dir: &std::path::Path) -> Result<(), ValidateError> {
    if let Some(why) = code_objects::NOT_BUILT {
        return Err(ValidateError::NotBuilt(why));
    }
    std::fs::create_dir_all(dir).map_err(|e| crate::error::CliError::io(dir, e))?;
    for (target, bytes) in code_objects::CODE_OBJECTS {
        let path = dir.join(format!("check_pattern-{target}.co"));
        std::fs::write(&path, bytes).map_err(|e| crate::error::CliError::io(&path, e))?;
        crate::stdout::emit(&format!("{}\n", path.display()))?;
    }
    Ok(())
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

fn provenance(h: &Hsa) -> Provenance {
    Provenance {
        host: read_trimmed("/proc/sys/kernel/hostname"),
        kernel: read_trimmed("/proc/sys/kernel/osrelease"),
        arch: std::env::consts::ARCH.into(),
        page_size: libflush::page_size(),
        hsa_library: h.library.clone(),
        hsa_version: gpu::version(h),
        git_commit: option_env!("HDPFLUSH_GIT_COMMIT").map(str::to_owned),
        hdpflush_version: env!("CARGO_PKG_VERSION").into(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        unix_time: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    }
}

/// VRAM layout: the dummy page at 0, the W/R word at 64K, the pattern (and legacy's sentinel
/// after it) from 128K.
const DUMMY_AT: usize = 0;
const WORD_AT: usize = 64 << 10;
const PATTERN_AT: usize = 128 << 10;
/// 32-bit words written and checked per stale-data round.
const PATTERN_WORDS: usize = 16 << 10;
// The areas do not overlap and fit the allocation.
const _: () = assert!(DUMMY_AT + DUMMY_PAGE_MIN <= WORD_AT);
const _: () = assert!(WORD_AT + 4 <= PATTERN_AT);
const _: () = assert!(PATTERN_AT + PATTERN_WORDS * 4 + 4 <= gpu::VRAM_BYTES);

/// A flusher and the variant its rows name.
type Labelled = (String, Box<dyn Flush>);

fn hardware(detail: String) -> Backing {
    Backing::new(BackingKind::Hardware, detail)
}

/// A window on `len` bytes of the device's VRAM at `offset`.
fn vram_region(
    dev: &Device<'_>,
    offset: usize,
    len: usize,
    what: &str,
) -> Result<MappedRegion, ValidateError> {
    if offset + len > dev.vram.len() {
        return Err(ValidateError::Setup(format!(
            "{what} does not fit the VRAM buffer"
        )));
    }
    // SAFETY: inside the VRAM allocation, which outlives every flusher built here (they are
    // dropped at the end of validate_gpu, before `dev`).
    let ptr = unsafe { dev.vram.ptr().add(offset) };
    let ptr = NonNull::new(ptr).ok_or_else(|| ValidateError::Setup("null VRAM".into()))?;
    let detail = format!(
        "{what}: VRAM of {} at {ptr:p} (host-visible, through HSA)",
        dev.gpu.pci
    );
    // SAFETY: as above; mapped read-write for the CPU (allow_access succeeded).
    Ok(unsafe { MappedRegion::from_raw(ptr, len, hardware(detail)) })
}

/// The flushers to run on this GPU, labelled; what cannot run goes to `not_run`.
fn flushers(dev: &Device<'_>, not_run: &mut Vec<NotRun>) -> Result<Vec<Labelled>, ValidateError> {
    let mut list: Vec<Labelled> = Vec::new();
    match dev.gpu.remap {
        Some(p) => {
            for c in [Completion::Completed, Completion::Posted] {
                // SAFETY: ROCr maps the remap page for the process until hsa_shut_down.
                let f = unsafe { MmioRemap::from_caller(p.as_ptr(), c) }?;
                list.push((c.name().into(), Box::new(f)));
            }
        }
        None => not_run.push(NotRun {
            what: "mmio-remap".into(),
            why: "HSA_AMD_AGENT_INFO_HDP_FLUSH returned no remap page (KFD refuses it on non-4K pages)".into(),
        }),
    }
    for variant in DummyPageVariant::ALL {
        let page = vram_region(dev, DUMMY_AT, DUMMY_PAGE_MIN, "dummy page")?;
        list.push((
            variant.name(),
            Box::new(DummyPage::with_variant(page, variant)?),
        ));
    }
    let payload = vram_region(
        dev,
        PATTERN_AT,
        PATTERN_WORDS * 4 + 4,
        "pattern + legacy sentinel",
    )?;
    list.push((
        "sentinel after the pattern".into(),
        Box::new(Legacy::new(payload)?),
    ));
    let pci = dev.gpu.pci.parse::<PciAddress>();
    for kind in [
        StrategyKind::Ioctl,
        StrategyKind::Uring,
        StrategyKind::KfdIoctl,
    ] {
        let opened = pci.clone().and_then(|a| {
            libflush::open_gpu(
                GpuSelector::Pci(a),
                FlusherOptions::new().strategy(kind).require_hardware(true),
            )
        });
        match opened {
            Ok(g) => list.push(("completed".into(), Box::new(g))),
            Err(e) => not_run.push(NotRun {
                what: kind.name().into(),
                why: e.to_string(),
            }),
        }
    }
    Ok(list)
}

/// A different 32-bit seed per round (xorshift over the round number and the clock).
fn seed(round: u64) -> u32 {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let mut x = u64::from(t) ^ round.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x as u32
}

/// What gpu/check_pattern.cl expects in word `i`.
pub fn pattern(seed: u32, i: u32) -> u32 {
    let x = (seed ^ i).wrapping_mul(0x9E37_79B1);
    x ^ (x >> 15)
}

fn validate_gpu(
    h: &Hsa,
    agent: GpuAgent,
    cpu: hsa::Agent,
    args: &ValidateArgs,
) -> Result<GpuValidation, ValidateError> {
    let target = gpu::gfx_target(&agent.name).to_owned();
    let code = code_objects::CODE_OBJECTS
        .iter()
        .find(|(t, _)| *t == target)
        .map(|(_, c)| *c);
    let mut not_run = Vec::new();
    let Some(code) = code else {
        return Err(ValidateError::Setup(format!(
            "{} is {target}: no code object built for it (built: {})",
            agent.pci,
            code_objects::CODE_OBJECTS
                .iter()
                .map(|(t, _)| *t)
                .collect::<Vec<_>>()
                .join(", ")
        )));
    };
    let dev = Device::open(h, agent, cpu, code)?;
    let word = vram_region(&dev, WORD_AT, 4, "W/R word")?;
    let n = args.flushes.max(1);
    let start = Instant::now();
    for i in 0..n {
        word.write_u32(0, i as u32);
    }
    word.full_fence();
    let write_ns = start.elapsed().as_nanos() as f64 / n as f64;
    let start = Instant::now();
    let mut sink = 0u32;
    for _ in 0..n {
        sink = sink.wrapping_add(word.read_u32(0));
    }
    let read_ns = start.elapsed().as_nanos() as f64 / n as f64;
    std::hint::black_box(sink);

    let flushers = flushers(&dev, &mut not_run)?;
    let mut strategies = Vec::new();
    for (variant, f) in &flushers {
        let start = Instant::now();
        for _ in 0..n {
            f.flush()?;
        }
        strategies.push(StrategyCost {
            strategy: f.kind().name().into(),
            variant: variant.clone(),
            backing: f.backing().detail,
            flushes: n,
            mean_ns: start.elapsed().as_nanos() as f64 / n as f64,
        });
    }

    let words = vram_region(&dev, PATTERN_AT, PATTERN_WORDS * 4, "pattern")?;
    let words_ptr = dev.vram.ptr().wrapping_add(PATTERN_AT).cast::<u32>();
    let mut stale = Vec::new();
    let cases = std::iter::once(("none".to_owned(), "no flush (control)".to_owned(), None)).chain(
        flushers
            .iter()
            .map(|(v, f)| (f.kind().name().to_owned(), v.clone(), Some(f))),
    );
    for (strategy, variant, flusher) in cases {
        let mut row = StaleCount {
            strategy,
            variant,
            rounds: args.rounds,
            words: PATTERN_WORDS as u64,
            stale_rounds: 0,
            stale_words: 0,
        };
        for round in 0..args.rounds {
            let s = seed(round);
            for i in 0..PATTERN_WORDS {
                words.write_u32(i * 4, pattern(s, i as u32));
            }
            if let Some(f) = flusher {
                f.flush()?;
            }
            let (bad, seen) = dev.check_pattern(words_ptr, PATTERN_WORDS as u32, s)?;
            if seen != PATTERN_WORDS as u64 {
                return Err(ValidateError::Setup(format!(
                    "the check kernel saw {seen} words, expected {PATTERN_WORDS}"
                )));
            }
            if bad > 0 {
                row.stale_rounds += 1;
                row.stale_words += bad;
            }
        }
        stale.push(row);
    }
    drop(flushers);
    Ok(GpuValidation {
        gfx_target: target,
        product: dev.gpu.product.clone(),
        pci: dev.gpu.pci.clone(),
        remap_page: dev.gpu.remap.is_some(),
        vram_bytes: gpu::VRAM_BYTES,
        write_ns,
        read_ns,
        strategies,
        stale,
        not_run,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pattern_matches_the_kernels_formula() {
        // check_pattern.cl: x = (seed ^ i) * 0x9E3779B1u; x ^ (x >> 15).
        assert_eq!(pattern(0, 1), 0x9E37_79B1 ^ (0x9E37_79B1 >> 15));
        assert_ne!(pattern(1, 5), pattern(2, 5));
        let cl = include_str!("../../gpu/check_pattern.cl");
        assert!(cl.contains("(seed ^ i) * 0x9E3779B1u"));
        assert!(cl.contains("x ^ (x >> 15)"));
    }

    #[test]
    fn the_gfx_target_drops_feature_flags() {
        assert_eq!(gpu::gfx_target("gfx90a:sramecc+:xnack-"), "gfx90a");
        assert_eq!(gpu::gfx_target("gfx1100"), "gfx1100");
    }

    #[test]
    fn every_common_target_has_a_code_object_when_built() {
        if let Some(why) = code_objects::NOT_BUILT {
            assert!(why.contains("clang-19"), "{why}");
        } else {
            for t in ["gfx90a", "gfx942", "gfx1100"] {
                let co = code_objects::CODE_OBJECTS
                    .iter()
                    .find(|(name, _)| *name == t)
                    .map(|(_, c)| *c);
                let co = co.unwrap_or_else(|| panic!("no code object for {t}"));
                assert_eq!(&co[..4], b"\x7fELF", "{t}");
            }
        }
    }
}
