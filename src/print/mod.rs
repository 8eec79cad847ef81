//! Text and Markdown views of the data, one file per kind (a bench report, the evidence, the
//! cost model). They read `data` and the model; only the commands and the docs read them.

pub mod bench_report;
pub mod evidence;
pub mod model;
