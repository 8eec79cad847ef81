//! Bar plots of ns per flush: one bar per case, first case on top (mean, log scale), a tick at
//! p99, bars coloured by what they ran on so a stand-in is never mistaken for hardware. A bench
//! report is one panel; the evidence draws one panel per guest on a shared axis.

use std::path::Path;

use libflush::strategy::BackingKind;
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;

use crate::data::bench_report::BenchReport;
use crate::error::CliError;
use crate::plot::{
    draw_legend, draw_svg, draw_titles, legend_width, text_width, Swatch, LABEL_FONT, SUBTITLE_FONT,
};

const KINDS: [(BackingKind, &str, RGBColor); 6] = [
    (BackingKind::Hardware, "hardware", RGBColor(196, 58, 40)),
    (
        BackingKind::EmulatedDevice,
        "emulated device",
        RGBColor(150, 90, 170),
    ),
    (
        BackingKind::KernelModel,
        "kernel model",
        RGBColor(230, 140, 30),
    ),
    (
        BackingKind::StandIn,
        "stand-in mapping",
        RGBColor(128, 128, 128),
    ),
    (BackingKind::Simulator, "simulator", RGBColor(56, 108, 196)),
    (BackingKind::HostKernel, "", RGBColor(46, 139, 87)),
];

/// One bar.
pub struct Row {
    /// Its label, left of the axis.
    pub label: String,
    /// What it ran on (the bar's colour).
    pub kind: BackingKind,
    /// Mean ns per flush: the bar.
    pub mean_ns: f64,
    /// Median ns per flush (only widens the axis).
    pub p50_ns: f64,
    /// 99th percentile of one flush, where a sample timed one flush: the tick (none elsewhere:
    /// a percentile of averages is not a flush's).
    pub p99_ns: Option<f64>,
}

/// Bars under one title.
pub struct Panel {
    /// What the bars were measured on; empty for a lone panel the plot's titles describe.
    pub title: String,
    /// The bars, top first.
    pub rows: Vec<Row>,
}

/// A whole bar plot.
pub struct Bars {
    /// The plot's title.
    pub title: String,
    /// A line under it.
    pub subtitle: String,
    /// The panels, top first, sharing the ns axis.
    pub panels: Vec<Panel>,
    /// The legend's name for [`BackingKind::HostKernel`] bars: whose kernel the floor is.
    pub floor_name: String,
}

/// Draw `report` into an SVG file at `path`.
pub fn write_svg(report: &BenchReport, path: &Path) -> Result<(), CliError> {
    let h = &report.host;
    let bars = Bars {
        title:
            "hdpflush bench: ns per flush, mean (bar) and p99 (tick, where a sample is one flush)"
                .into(),
        subtitle: format!(
            "{}, kernel {}, PAGE_SIZE {}, {} CPUs",
            h.arch, h.kernel, h.page_size, h.cpus
        ),
        panels: vec![Panel {
            title: String::new(),
            rows: report
                .results
                .iter()
                .map(|c| Row {
                    label: c.label(),
                    kind: c.backing.kind,
                    mean_ns: c.mean_ns,
                    p50_ns: c.p50_ns,
                    p99_ns: c.p99_per_flush(),
                })
                .collect(),
        }],
        floor_name: "host kernel floor (flushes nothing)".into(),
    };
    write_bars(&bars, path)
}

/// Draw `bars` into an SVG file at `path`.
pub fn write_bars(bars: &Bars, path: &Path) -> Result<(), CliError> {
    draw_svg(path, |path| draw(bars, path))
}

/// Height of one bar's row, of a panel's title and of its x axis, in px.
const ROW: u32 = 26;
const PANEL_TITLE: u32 = 40;
const X_AXIS: u32 = 46;
/// Width of the bars' area.
const PLOT_W: u32 = 560;

fn draw(bars: &Bars, path: &Path) -> Result<(), String> {
    let rows = || bars.panels.iter().flat_map(|p| p.rows.iter());
    if rows().next().is_none() {
        return Err("the report has no results".into());
    }
    let lo = rows()
        .map(|c| c.mean_ns.min(c.p50_ns))
        .fold(f64::INFINITY, f64::min)
        .max(0.01)
        / 2.0;
    let hi = rows()
        .map(|c| c.p99_ns.unwrap_or(0.0).max(c.mean_ns))
        .fold(0.0, f64::max)
        * 4.0;
    let hi = hi.max(lo * 10.0);

    let kinds: Vec<(BackingKind, String, RGBColor)> = KINDS
        .iter()
        .filter(|(kind, _, _)| rows().any(|r| r.kind == *kind))
        .map(|&(kind, name, colour)| {
            let name = if kind == BackingKind::HostKernel {
                bars.floor_name.clone()
            } else {
                name.to_owned()
            };
            (kind, name, colour)
        })
        .collect();
    let legend: Vec<(String, Swatch)> = kinds
        .iter()
        .map(|(_, name, c)| (name.clone(), Swatch::Bar(*c)))
        .collect();

    let label_w = rows()
        .map(|r| text_width(&r.label, LABEL_FONT))
        .max()
        .unwrap_or(0)
        + 24;
    let legend_w = legend_width(legend.iter().map(|(n, _)| n.as_str()));
    let panel_title_w = bars
        .panels
        .iter()
        .map(|p| text_width(&p.title, SUBTITLE_FONT))
        .max()
        .unwrap_or(0);
    let chart_w = (label_w + PLOT_W + 20).max(panel_title_w + 40);
    let titles_w = text_width(&bars.title, super::TITLE_FONT)
        .max(text_width(&bars.subtitle, SUBTITLE_FONT))
        + 40;
    let width = (chart_w + legend_w).max(titles_w);
    let panel_h = |p: &Panel| {
        let title = if p.title.is_empty() { 10 } else { PANEL_TITLE };
        title + ROW * p.rows.len().max(2) as u32 + X_AXIS
    };
    let head = 80;
    let height = head + bars.panels.iter().map(panel_h).sum::<u32>() + 10;

    let root = SVGBackend::new(path, (width, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let body = draw_titles(&root, &bars.title, &bars.subtitle)?;
    let (charts, legend_area) = body.split_horizontally(chart_w);
    draw_legend(&legend_area.margin(PANEL_TITLE, 0, 0, 0), &legend)?;

    let mut top = 0;
    for panel in &bars.panels {
        let h = panel_h(panel);
        let area = charts.clone().shrink((0, top), (chart_w, h));
        top += h;
        draw_panel(&area, panel, &kinds, lo..hi, label_w)?;
    }
    root.present().map_err(|e| e.to_string())?;
    Ok(())
}

fn draw_panel(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    panel: &Panel,
    kinds: &[(BackingKind, String, RGBColor)],
    range: std::ops::Range<f64>,
    label_w: u32,
) -> Result<(), String> {
    let rows = &panel.rows;
    let n = rows.len();
    let lo = range.start;
    let mut builder = ChartBuilder::on(area);
    builder
        .margin_right(20)
        .x_label_area_size(X_AXIS)
        .y_label_area_size(label_w);
    if !panel.title.is_empty() {
        builder
            .margin_top(8)
            .caption(&panel.title, ("sans-serif", SUBTITLE_FONT));
    }
    // A segmented range 0..k has k + 1 rows; plotters needs k > 0, so one case leaves a row free.
    let mut chart = builder
        .build_cartesian_2d(range.log_scale(), (0..(n - 1).max(1)).into_segmented())
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .max_light_lines(1)
        .x_labels(10)
        .label_style(("sans-serif", LABEL_FONT))
        .axis_desc_style(("sans-serif", LABEL_FONT))
        .x_label_formatter(&|v| {
            if *v >= 10.0 {
                format!("{v:.0}")
            } else {
                format!("{v:.1}")
            }
        })
        .y_labels(n)
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(row) => (n - 1)
                .checked_sub(*row)
                .and_then(|i| rows.get(i))
                .map(|r| r.label.clone())
                .unwrap_or_default(),
            _ => String::new(),
        })
        .x_desc("ns per flush (log scale)")
        .draw()
        .map_err(|e| e.to_string())?;

    for (kind, _, color) in kinds {
        let color = *color;
        chart
            .draw_series(
                rows.iter()
                    .enumerate()
                    .filter(|(_, r)| r.kind == *kind)
                    .map(|(i, r)| {
                        let row = n - 1 - i;
                        let mut bar = Rectangle::new(
                            [
                                (lo, SegmentValue::Exact(row)),
                                (r.mean_ns, SegmentValue::Exact(row + 1)),
                            ],
                            color.filled(),
                        );
                        bar.set_margin(4, 4, 0, 0);
                        bar
                    }),
            )
            .map_err(|e| e.to_string())?;
    }
    chart
        .draw_series(rows.iter().enumerate().filter_map(|(i, r)| {
            let i = n - 1 - i;
            let p99 = r.p99_ns?;
            Some(PathElement::new(
                vec![
                    (p99, SegmentValue::Exact(i)),
                    (p99, SegmentValue::Exact(i + 1)),
                ],
                BLACK.stroke_width(2),
            ))
        }))
        .map_err(|e| e.to_string())?;
    Ok(())
}
