//! What the commands measure and save: a bench report, the evidence of `cargo xtask vm-bench`
//! and the targets judged from it. The model, the printers and the plots all read these types
//! and nothing here reads them back, so a field changes in one place and every view follows.

pub mod bench_report;
pub mod evidence;
pub mod hardware;
mod json;
pub mod targets;
