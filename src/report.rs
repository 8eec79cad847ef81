//! `hdpflush report`: a saved bench report's table and plot, or the evidence of `cargo xtask
//! vm-bench` with its targets, the oracle and the cost model, and the docs' tables from it.

use std::path::Path;

use crate::data::bench_report::BenchReport;
use crate::data::evidence::Evidence;
use crate::error::CliError;
use crate::model::Pcie;
use crate::{docs, emit, plot, print};

/// `hdpflush report`.
pub fn run(args: &crate::ReportArgs) -> Result<(), CliError> {
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

/// `hdpflush report --evidence DIR|FILE`.
fn evidence(args: &crate::ReportArgs, path: &Path) -> Result<(), CliError> {
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
    if args.model {
        let pcie = Pcie {
            write_ns: args.pcie_write_ns,
            read_ns: args.pcie_read_ns,
        };
        emit(&print::model::text(&e, &pcie))?;
    }
    if let Some(docs) = &args.update_docs {
        docs::update_docs(&e, docs, false)?;
        let plots = docs.join("evidence");
        std::fs::create_dir_all(&plots).map_err(|err| CliError::io(&plots, err))?;
        plot::evidence::write_all(&e, &plots)?;
    }
    Ok(())
}
