//! The SVG plots, one file per kind of data (a bench report's bars, the evidence's curves).
//! What every plot does alike lives here: a drawing error names the file, text is sized from
//! its length so no label is clipped, and every legend sits in a column of its own to the
//! right of the plot, where it cannot hide data.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::error::CliError;

pub mod bench_report;
pub mod evidence;

/// Font sizes as plotters takes them (the SVG says size / 1.24 px).
pub const TITLE_FONT: f64 = 19.0;
/// A subtitle's or a panel title's font.
pub const SUBTITLE_FONT: f64 = 15.5;
/// Tick labels, legend entries and axis descriptions.
pub const LABEL_FONT: f64 = 14.0;

/// The estimated width in px of `text` drawn at plotters font size `font`: 0.62 em a
/// character, a little wider than DejaVu Sans (what `sans-serif` renders as) averages, so a
/// margin sized from it holds the label.
pub fn text_width(text: &str, font: f64) -> u32 {
    (text.chars().count() as f64 * font / 1.24 * 0.62).ceil() as u32
}

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

/// What a legend entry shows beside its name.
#[derive(Clone, Copy)]
pub enum Swatch {
    /// A filled box, as the bars are drawn.
    Bar(RGBColor),
    /// A line with a circle on it.
    LineCircle(RGBColor),
    /// A line with a triangle on it.
    LineTriangle(RGBColor),
}

/// The width of the legend column that holds `names`.
pub fn legend_width<'a>(names: impl IntoIterator<Item = &'a str>) -> u32 {
    names
        .into_iter()
        .map(|n| text_width(n, LABEL_FONT))
        .max()
        .unwrap_or(0)
        + 56
}

/// Draw a boxed legend of `entries` at the top of `area` (a column beside the plot).
pub fn draw_legend(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    entries: &[(String, Swatch)],
) -> Result<(), String> {
    let err = |e: DrawingAreaErrorKind<_>| e.to_string();
    let (w, _) = area.dim_in_pixel();
    let row = 22;
    let height = 10 + row * entries.len() as i32;
    let right = w as i32 - 8;
    area.draw(&Rectangle::new([(8, 0), (right, height)], BLACK))
        .map_err(err)?;
    let font = ("sans-serif", LABEL_FONT).into_font();
    for (i, (name, swatch)) in entries.iter().enumerate() {
        let y = 5 + row * i as i32 + row / 2;
        match *swatch {
            Swatch::Bar(c) => area
                .draw(&Rectangle::new([(16, y - 6), (32, y + 6)], c.filled()))
                .map_err(err)?,
            Swatch::LineCircle(c) | Swatch::LineTriangle(c) => {
                area.draw(&PathElement::new(vec![(14, y), (34, y)], c.stroke_width(2)))
                    .map_err(err)?;
                if matches!(swatch, Swatch::LineCircle(_)) {
                    area.draw(&Circle::new((24, y), 4, c.filled()))
                        .map_err(err)?;
                } else {
                    area.draw(&TriangleMarker::new((24, y), 5, c.filled()))
                        .map_err(err)?;
                }
            }
        }
        area.draw_text(
            name,
            &font
                .clone()
                .color(&BLACK)
                .pos(plotters::style::text_anchor::Pos::new(
                    plotters::style::text_anchor::HPos::Left,
                    plotters::style::text_anchor::VPos::Center,
                )),
            (42, y),
        )
        .map_err(err)?;
    }
    Ok(())
}

/// Draw `title` and, under it, `subtitle` centred at the top of `root`; the area below them.
pub fn draw_titles<'a>(
    root: &DrawingArea<SVGBackend<'a>, Shift>,
    title: &str,
    subtitle: &str,
) -> Result<DrawingArea<SVGBackend<'a>, Shift>, String> {
    use plotters::style::text_anchor::{HPos, Pos, VPos};
    let (w, _) = root.dim_in_pixel();
    let centre = Pos::new(HPos::Center, VPos::Top);
    let mut y = 10;
    for (text, font) in [(title, TITLE_FONT), (subtitle, SUBTITLE_FONT)] {
        if text.is_empty() {
            continue;
        }
        root.draw_text(
            text,
            &("sans-serif", font).into_font().color(&BLACK).pos(centre),
            (w as i32 / 2, y),
        )
        .map_err(|e| e.to_string())?;
        y += (font * 1.35) as i32;
    }
    Ok(root.margin(y + 6, 0, 0, 0))
}

#[cfg(test)]
mod tests;
