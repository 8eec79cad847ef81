//! The cost model (`hdpflush report --model`, docs/cost-model.md): what each strategy would
//! cost per flush on a real host with 64K pages, as a formula of measured kernel-entry costs and
//! stated PCIe parameters. A model, labelled as one: no AMD GPU was measured.
//!
//! Inputs:
//! - `E`: this host's ioctl entry (`ioctl` on /dev/null, rejected), and `U(B)`: its io_uring
//!   NOP per request in batches of B, both from the host run;
//! - `r`: what the module adds on top of kernel entry, as a ratio measured in a guest (the sim
//!   backend with no delay over the NOP ioctl, or the io_uring NOP of the same batch), the
//!   64K-page guest's when it ran. A ratio, because TCG inflates a guest's absolute times;
//! - `W`: the issuing CPU's cost of one uncached (posted) store to a BAR; `R`: one non-posted
//!   read round trip to the GPU, which waits for the writes ahead of it.

use crate::data::evidence::Evidence;

/// The PCIe parameters, overridable on the command line.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pcie {
    /// `W`, ns.
    pub write_ns: f64,
    /// `R`, ns.
    pub read_ns: f64,
}

impl Default for Pcie {
    fn default() -> Self {
        Self {
            write_ns: DEFAULT_WRITE_NS,
            read_ns: DEFAULT_READ_NS,
        }
    }
}

/// Default `W`.
pub const DEFAULT_WRITE_NS: f64 = 100.0;
/// Default `R`.
pub const DEFAULT_READ_NS: f64 = 1000.0;

/// Where the defaults come from.
pub const SOURCES: &str = "\
- `R` = 1000 ns: PCIe reads are non-posted and wait for a completion; Neugebauer et al., \
\"Understanding PCIe performance for end host networking\" (SIGCOMM 2018, pcie-bench) measured \
small-read round trips of several hundred ns to about a microsecond on the servers they \
studied, more behind switches and with an IOMMU. A GPU behind a PCIe switch (MI-class \
boards) sits at the upper end; 1 us is a round figure, not a measurement of any GPU.
- `W` = 100 ns: an uncached store is posted, but the issuing core does not retire it as fast \
as a cached one. No public measurement for a GPU BAR was found; 100 ns is an assumption, \
stated so it can be replaced (`--pcie-write-ns`).";

/// One modelled strategy.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// Strategy and variant.
    pub name: String,
    /// The formula, in the inputs' names.
    pub formula: String,
    /// Its value, ns per flush; `None` when an input was not measured.
    pub ns: Option<f64>,
}

/// The guest whose ratios the model uses: the 64K-page one when it ran.
pub fn ratio_guest(e: &Evidence) -> Option<&str> {
    ["arm64", "x86_64"]
        .into_iter()
        .find(|g| e.run(g, "sim").is_some())
}

/// Mean ns of `strategy (variant)` in `place`'s `phase`.
fn mean(e: &Evidence, place: &str, phase: &str, strategy: &str, variant: &str) -> Option<f64> {
    e.run(place, phase)?
        .case(strategy, variant)
        .map(|c| c.mean_ns)
}

/// The module's ratio over the kernel-entry floor in the ratio guest.
fn module_ratio(e: &Evidence, strategy: &str, variant: &str, floor: &str) -> Option<f64> {
    let g = ratio_guest(e)?;
    Some(mean(e, g, "sim", strategy, variant)? / mean(e, g, "sim", "reference", floor)?)
}

/// The batch sizes the model covers.
pub const BATCHES: [u32; 4] = [1, 8, 32, 128];

/// `E`.
pub fn host_entry(e: &Evidence) -> Option<f64> {
    mean(e, "host", "host", "reference", "ioctl ENOTTY on /dev/null")
}

/// `U(batch)`.
pub fn host_uring(e: &Evidence, batch: u32) -> Option<f64> {
    mean(
        e,
        "host",
        "host",
        "reference",
        &format!("io_uring NOP batch {batch}"),
    )
}

/// `r_ioctl(variant)`.
pub fn r_ioctl(e: &Evidence, variant: &str) -> Option<f64> {
    module_ratio(e, "ioctl", variant, "ioctl NOP, kernel-entry floor")
}

/// `r_uring(batch)`.
pub fn r_uring(e: &Evidence, batch: u32) -> Option<f64> {
    module_ratio(
        e,
        "uring",
        &format!("completed, batch {batch}"),
        &format!("io_uring NOP batch {batch}"),
    )
}

/// Every modelled strategy, the 4K remap page first.
pub fn rows(e: &Evidence, p: &Pcie) -> Vec<Row> {
    let (w, r) = (p.write_ns, p.read_ns);
    let entry = host_entry(e);
    let mut rows = vec![
        Row {
            name: "mmio-remap, ROCclr's store + read-back (4K pages only)".into(),
            formula: "W + R".into(),
            ns: Some(w + r),
        },
        Row {
            name: "mmio-remap, posted (4K pages only)".into(),
            formula: "W".into(),
            ns: Some(w),
        },
    ];
    for (variant, extra, extra_ns) in [("completed", "W + R", w + r), ("posted", "W", w)] {
        rows.push(Row {
            name: format!("ioctl, {variant}"),
            formula: format!("E x r_ioctl({variant}) + {extra}"),
            ns: entry
                .zip(r_ioctl(e, variant))
                .map(|(e, k)| e * k + extra_ns),
        });
    }
    for batch in BATCHES {
        let (host, k) = (host_uring(e, batch), r_uring(e, batch));
        rows.push(Row {
            name: format!("uring, completed, batch {batch} (one hardware flush per batch)"),
            formula: format!("U({batch}) x r_uring({batch}) + (W + R) / {batch}"),
            ns: host.zip(k).map(|(u, k)| u * k + (w + r) / f64::from(batch)),
        });
    }
    rows.push(Row {
        name: "dummy-page (two stores, one read-back)".into(),
        formula: "2W + R".into(),
        ns: Some(2.0 * w + r),
    });
    rows.push(Row {
        name: "legacy, ROCclr's fallback (store, read-back)".into(),
        formula: "W + R".into(),
        ns: Some(w + r),
    });
    rows
}

/// Every row with its ratio to the first (the 4K remap page), when both were measured.
pub fn rows_vs_remap(e: &Evidence, p: &Pcie) -> Vec<(Row, Option<f64>)> {
    let rows = rows(e, p);
    let base = rows.first().and_then(|r| r.ns);
    rows.into_iter()
        .map(|r| {
            let rel = r.ns.zip(base).map(|(v, b)| v / b);
            (r, rel)
        })
        .collect()
}
