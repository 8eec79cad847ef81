//! `hdpflush`: probe this host's HDP flush options, benchmark them side by side, report.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
mod data;
mod docs;
mod error;
mod model;
mod plot;
mod print;
mod probe;
mod report;
mod stdout;
mod validate;

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
    Bench(bench::BenchArgs),
    /// Print a saved bench JSON's table (and redraw its SVG), or the evidence of
    /// `cargo xtask vm-bench`: every run, the targets' PASS/FAIL, the oracle, the cost model.
    Report(report::ReportArgs),
    /// On a host with an AMD GPU (through the HSA runtime): measure W, R and every strategy
    /// on the GPU and run the stale-data test; write JSON for `report --hardware`. Without a
    /// GPU it exits with status 3 and says what it needs.
    Validate(validate::ValidateArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Probe { json } => probe::run(json),
        Command::Bench(args) => bench::run(&args),
        Command::Report(args) => report::run(&args),
        Command::Validate(args) => return validate::main(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hdpflush: {e}");
            ExitCode::FAILURE
        }
    }
}
