//! The SVG plots, one file per kind of data (a bench report's bars, the evidence's curves).
//! What every plot does alike lives here: a drawing error names the file, and every legend
//! sits boxed in the upper right.

use std::path::Path;

use plotters::coord::CoordTranslate;
use plotters::prelude::*;

use crate::error::CliError;

pub mod bench_report;
pub mod evidence;

/// Draw an SVG at `path` with `draw`; its error becomes a [`CliError::Plot`] naming the file.
pub fn draw_svg(
    path: &Path,
    draw: impl FnOnce(&Path) -> Result<(), String>,
) -> Result<(), CliError> {
    draw(path).map_err(|message| CliError::Plot {
        path: path.to_owned(),
        message,
    })
}

/// Draw the legend of `chart`'s labelled series, upper right, over a translucent background.
pub fn draw_legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
) -> Result<(), String> {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(|e| e.to_string())
}
