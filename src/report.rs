//! `hdpflush report`: a saved bench report's table and plot, or the evidence of `cargo xtask
//! vm-bench` with its targets, the oracle and the cost model, and the docs' tables from it.

use std::path::{Path, PathBuf};

use clap::Args;

use crate::data::bench_report::BenchReport;
use crate::data::evidence::Evidence;
use crate::data::hardware::HardwareReport;
use crate::error::CliError;
use crate::model::{self, Pcie};
use crate::stdout::emit;
use crate::{docs, plot, print};

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
    /// Also print the cost model: each strategy per launch over a grid of PCIe read (R) and
    /// write (W) costs, with its break-even R (the Markdown docs/cost-model.md carries).
    #[arg(long, requires = "evidence")]
    pub model: bool,
    /// The model's W: ns the CPU spends on one posted store to a BAR; added to the grid and
    /// highlighted.
    #[arg(long, default_value_t = model::DEFAULT_WRITE_NS, requires = "model")]
    pub pcie_write_ns: f64,
    /// The model's R: ns of one non-posted read round trip to the GPU; added to the grid and
    /// highlighted.
    #[arg(long, default_value_t = model::DEFAULT_READ_NS, requires = "model")]
    pub pcie_read_ns: f64,
    /// A JSON written by `hdpflush validate` on a real GPU: its rows are printed as hardware
    /// rows, and the cost model (--model) uses its measured W and R instead of the assumed ones.
    #[arg(long, value_name = "FILE", requires = "evidence")]
    pub hardware: Option<PathBuf>,
    /// Rewrite the generated tables (and plots, into DOCS/evidence/) of DOCS/patch-evidence.md,
    /// DOCS/evidence.md and DOCS/cost-model.md from an assembled evidence.json.
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

/// `hdpflush report`.
pub fn run(args: &ReportArgs) -> Result<(), CliError> {
    if let Some(path) = &args.evidence {
        return evidence(args, path);
    }
    let Some(json) = &args.json else {
        return Err(CliError::Selection(
            "report needs a bench JSON or --evidence".into(),
        ));
    };
    let report = BenchReport::load(json)?;
    emit(&print::bench_report::table(&report))?;
    if let Some(svg) = &args.svg {
        plot::bench_report::write_svg(&report, svg)?;
        emit(&format!("wrote {}\n", svg.display()))?;
    }
    Ok(())
}

/// The cost model's W and R: measured on the GPU when `--hardware` gave a validate JSON (and
/// said so), else the command line's (or the assumed defaults).
fn model_pcie(args: &ReportArgs, hardware: Option<&HardwareReport>) -> Result<Pcie, CliError> {
    let Some(hw) = hardware else {
        return Ok(Pcie {
            write_ns: args.pcie_write_ns,
            read_ns: args.pcie_read_ns,
        });
    };
    let (pcie, gpu) = hw.measured_pcie().ok_or_else(|| {
        CliError::Selection("the --hardware file measured no GPU: no W and R to use".into())
    })?;
    emit(&format!(
        "cost model: W = {:.0} ns and R = {:.0} ns measured on {} {} at {} ({}), not assumed\n",
        pcie.write_ns, pcie.read_ns, gpu.product, gpu.gfx_target, gpu.pci, hw.provenance.host
    ))?;
    Ok(pcie)
}

/// `hdpflush report --evidence DIR|FILE`.
fn evidence(args: &ReportArgs, path: &Path) -> Result<(), CliError> {
    for (flag, v) in [
        ("--pcie-write-ns", args.pcie_write_ns),
        ("--pcie-read-ns", args.pcie_read_ns),
    ] {
        if !(v.is_finite() && v > 0.0) {
            return Err(CliError::Selection(format!(
                "{flag} {v}: a cost in ns must be a positive number"
            )));
        }
    }
    let e = if path.is_dir() {
        let e = Evidence::assemble(path)?;
        let json = path.join("evidence.json");
        e.save(&json)?;
        let tables = path.join("tables.md");
        let md: String = docs::sections(&e)
            .into_iter()
            .map(|(name, body)| format!("## {name}\n\n{body}\n"))
            .collect();
        std::fs::write(&tables, md).map_err(|err| CliError::io(&tables, err))?;
        plot::evidence::write_all(&e, path)?;
        emit(&format!(
            "wrote {}, {} and cost.svg, batch.svg, callers.svg in {}\n",
            json.display(),
            tables.display(),
            path.display()
        ))?;
        e
    } else {
        Evidence::load(path)?
    };
    if let Some(docs) = &args.check_docs {
        return docs::update_docs(&e, docs, true);
    }
    emit(&print::evidence::text(&e))?;
    let hardware = args
        .hardware
        .as_deref()
        .map(HardwareReport::load)
        .transpose()?;
    if let Some(hw) = &hardware {
        emit(&hw.table())?;
    }
    if args.model {
        emit(&print::model::text(
            &e,
            &model_pcie(args, hardware.as_ref())?,
        ))?;
    }
    if let Some(docs) = &args.update_docs {
        docs::update_docs(&e, docs, false)?;
        let plots = docs.join("evidence");
        std::fs::create_dir_all(&plots).map_err(|err| CliError::io(&plots, err))?;
        plot::evidence::write_all(&e, &plots)?;
    }
    Ok(())
}
