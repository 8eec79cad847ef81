//! The bench report: what `hdpflush bench` saves as JSON and the report command, the evidence
//! and the plots read back.

use std::path::Path;

use libflush::strategy::Backing;
use serde::{Deserialize, Serialize};

use crate::data::json;
use crate::error::CliError;

/// Where the numbers were measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HostInfo {
    /// CPU architecture.
    pub arch: String,
    /// CPU page size.
    pub page_size: usize,
    /// Kernel release.
    pub kernel: String,
    /// Online CPUs.
    pub cpus: usize,
}

/// One measured case.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CaseResult {
    /// Strategy name (or "reference" for floors that flush nothing).
    pub strategy: String,
    /// Variant, e.g. "batch 32" or "sync".
    pub variant: String,
    /// What the flush acted on.
    pub backing: Backing,
    /// Flushes per operation (the io_uring batch size; 1 elsewhere).
    pub batch: usize,
    /// Threads flushing at once (each with its own handle).
    #[serde(default = "one")]
    pub threads: usize,
    /// Hardware flushes the module issued per request during the case (< 1: coalescing).
    #[serde(default)]
    pub hw_flushes_per_request: Option<f64>,
    /// `io_uring_enter` calls per flush during the case (io_uring cases; 0: SQPOLL reaped
    /// everything without entering the kernel).
    #[serde(default)]
    pub enters_per_flush: Option<f64>,
    /// Flushes measured.
    pub flushes: u64,
    /// Mean ns per flush over the whole measured run.
    pub mean_ns: f64,
    /// Median of the per-sample ns per flush.
    pub p50_ns: f64,
    /// 99th percentile of the per-sample ns per flush.
    pub p99_ns: f64,
    /// Flushes per second at the mean.
    pub flushes_per_sec: f64,
    /// Samples taken (each a run of `ops_per_sample` operations).
    pub samples: usize,
    /// Operations per sample, chosen so a sample lasts about 2 us.
    pub ops_per_sample: u64,
    /// mean_ns / the baseline's mean_ns.
    pub relative: f64,
}

fn one() -> usize {
    1
}

impl CaseResult {
    /// "strategy (variant)".
    pub fn label(&self) -> String {
        label(&self.strategy, &self.variant)
    }

    /// p99 as a percentile of flushes: only when each sample timed one flush (one operation of
    /// batch 1). Otherwise a sample is the average of several flushes, and the 99th percentile
    /// of those averages is no flush's, so there is none.
    pub fn p99_per_flush(&self) -> Option<f64> {
        (self.ops_per_sample == 1 && self.batch == 1).then_some(self.p99_ns)
    }
}

/// How a case is named everywhere: "strategy" or "strategy (variant)".
pub fn label(strategy: &str, variant: &str) -> String {
    if variant.is_empty() {
        strategy.to_owned()
    } else {
        format!("{strategy} ({variant})")
    }
}

/// A strategy that was not run, and why.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Skipped {
    /// Strategy name.
    pub strategy: String,
    /// Why.
    pub reason: String,
}

/// A whole `hdpflush bench` run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BenchReport {
    /// "hdpflush".
    pub tool: String,
    /// hdpflush version.
    pub version: String,
    /// Seconds since the Unix epoch at the start.
    pub started_unix: u64,
    /// The host.
    pub host: HostInfo,
    /// Measured flushes per case.
    pub iterations: u64,
    /// Warm-up flushes per case.
    pub warmup: u64,
    /// The label `relative` is computed against.
    pub baseline: String,
    /// Measured cases, in run order.
    pub results: Vec<CaseResult>,
    /// Requested or default strategies that could not run.
    pub skipped: Vec<Skipped>,
}

impl BenchReport {
    /// Read a report written by [`BenchReport::save`].
    pub fn load(path: &Path) -> Result<Self, CliError> {
        json::read(path)
    }

    /// Write it as pretty JSON.
    pub fn save(&self, path: &Path) -> Result<(), CliError> {
        json::write(self, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(batch: usize, ops_per_sample: u64) -> CaseResult {
        serde_json::from_value(serde_json::json!({
            "strategy": "ioctl", "variant": "completed",
            "backing": {"kind": "kernel-model", "detail": "x"},
            "batch": batch, "threads": 1, "hw_flushes_per_request": null,
            "enters_per_flush": null, "flushes": 100, "mean_ns": 10.0, "p50_ns": 9.0,
            "p99_ns": 30.0, "flushes_per_sec": 1e8, "samples": 100,
            "ops_per_sample": ops_per_sample, "relative": 1.0
        }))
        .unwrap()
    }

    #[test]
    fn p99_is_a_flushs_only_when_a_sample_is_one_flush() {
        assert_eq!(case(1, 1).p99_per_flush(), Some(30.0));
        assert_eq!(case(1, 188).p99_per_flush(), None, "an average of 188");
        assert_eq!(case(32, 1).p99_per_flush(), None, "an average of 32");
    }
}
