//! `hdpflush`: probe this host's HDP flush options, benchmark them side by side, report.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use libflush::StrategyKind;

mod bench;
mod data;
mod docs;
mod error;
mod model;
mod plot;
mod print;
mod probe;
mod report;

/// Probe, benchmark and compare HDP flush strategies for AMD GPUs.
#[derive(Parser, Debug)]
#[command(name = "hdpflush", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Explain this host: page size, KFD, the hdp_flush module, what each strategy can do,
    /// which one is selected and why.
    Probe {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Run strategies side by side and report ns per flush (table, JSON, SVG).
    Bench(BenchArgs),
    /// Print a saved bench JSON's table (and redraw its SVG), or the evidence of
    /// `cargo xtask vm-bench`: every run, the targets' PASS/FAIL, the oracle, the cost model.
    Report(ReportArgs),
}

/// Options of `hdpflush report`.
#[derive(Args, Debug, Clone)]
pub struct ReportArgs {
    /// A JSON file written by `hdpflush bench`.
    #[arg(required_unless_present = "evidence", conflicts_with = "evidence")]
    pub json: Option<PathBuf>,
    /// Write the bench JSON's plot here.
    #[arg(long, requires = "json")]
    pub svg: Option<PathBuf>,
    /// The evidence: a directory `cargo xtask vm-bench` filled (assembled into
    /// DIR/evidence.json, DIR/tables.md and plots, running the oracle), or an assembled
    /// evidence.json.
    #[arg(long, value_name = "DIR|FILE")]
    pub evidence: Option<PathBuf>,
    /// Also print the cost model for a 64K-page host.
    #[arg(long, requires = "evidence")]
    pub model: bool,
    /// The model's W: ns the CPU spends on one posted store to a BAR.
    #[arg(long, default_value_t = model::DEFAULT_WRITE_NS, requires = "model")]
    pub pcie_write_ns: f64,
    /// The model's R: ns of one non-posted read round trip to the GPU.
    #[arg(long, default_value_t = model::DEFAULT_READ_NS, requires = "model")]
    pub pcie_read_ns: f64,
    /// Rewrite the generated tables (and plots, into DOCS/evidence/) of DOCS/patch-evidence.md
    /// and DOCS/cost-model.md from an assembled evidence.json.
    #[arg(
        long,
        value_name = "DOCS",
        requires = "evidence",
        conflicts_with = "check_docs"
    )]
    pub update_docs: Option<PathBuf>,
    /// Fail if those tables differ from what the evidence.json gives.
    #[arg(long, value_name = "DOCS", requires = "evidence")]
    pub check_docs: Option<PathBuf>,
}

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
    pub maps: Vec<bench::MapSpec>,
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
}

/// Write `text` to stdout. A closed pipe (`hdpflush bench | head`) means the reader is done,
/// not that the command failed.
pub fn emit(text: &str) -> Result<(), error::CliError> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(error::CliError::io("<stdout>", e))
        }
        _ => Ok(()),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Probe { json } => probe::run(json),
        Command::Bench(args) => bench::run(&args),
        Command::Report(args) => report::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hdpflush: {e}");
            ExitCode::FAILURE
        }
    }
}
