//! A bench report's plot: one bar per case, first case on top (mean ns per flush, log scale), a
//! tick at p99, bars coloured by what they ran on so a stand-in is never mistaken for hardware.

use std::path::Path;

use libflush::strategy::BackingKind;
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;

use crate::data::bench_report::BenchReport;
use crate::error::CliError;
use crate::plot::{draw_legend, draw_svg};

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
    (
        BackingKind::HostKernel,
        "host kernel floor",
        RGBColor(46, 139, 87),
    ),
];

/// Draw `report` into an SVG file at `path`.
pub fn write_svg(report: &BenchReport, path: &Path) -> Result<(), CliError> {
    draw_svg(path, |path| draw(report, path))
}

fn draw(report: &BenchReport, path: &Path) -> Result<(), String> {
    let results = &report.results;
    let n = results.len();
    if n == 0 {
        return Err("the report has no results".into());
    }
    let labels: Vec<String> = results.iter().map(|c| c.label()).collect();
    let lo = results
        .iter()
        .map(|c| c.mean_ns.min(c.p50_ns))
        .fold(f64::INFINITY, f64::min)
        .max(0.01)
        / 2.0;
    let hi = results
        .iter()
        .map(|c| c.p99_ns.max(c.mean_ns))
        .fold(0.0, f64::max)
        * 8.0;
    let hi = hi.max(lo * 10.0);

    // A segmented range 0..k has k + 1 rows; plotters needs k > 0, so one case leaves a row free.
    let height = 140 + 34 * n as u32;
    let root = SVGBackend::new(path, (960, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let h = &report.host;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "hdpflush: ns per flush, mean (bar) and p99 (tick) - {} {}, PAGE_SIZE {}",
                h.arch, h.kernel, h.page_size
            ),
            ("sans-serif", 16),
        )
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(300)
        .build_cartesian_2d((lo..hi).log_scale(), (0..(n - 1).max(1)).into_segmented())
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .max_light_lines(1)
        .x_labels(10)
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
                .and_then(|i| labels.get(i).cloned())
                .unwrap_or_default(),
            _ => String::new(),
        })
        .x_desc("ns per flush (log scale)")
        .draw()
        .map_err(|e| e.to_string())?;

    for (kind, name, color) in KINDS {
        let rows: Vec<(usize, f64)> = results
            .iter()
            .enumerate()
            .filter(|(_, c)| c.backing.kind == kind)
            .map(|(i, c)| (n - 1 - i, c.mean_ns))
            .collect();
        if rows.is_empty() {
            continue;
        }
        chart
            .draw_series(rows.into_iter().map(|(row, mean)| {
                let mut bar = Rectangle::new(
                    [
                        (lo, SegmentValue::Exact(row)),
                        (mean, SegmentValue::Exact(row + 1)),
                    ],
                    color.filled(),
                );
                bar.set_margin(5, 5, 0, 0);
                bar
            }))
            .map_err(|e| e.to_string())?
            .label(name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
    }
    chart
        .draw_series(results.iter().enumerate().map(|(i, c)| {
            let i = n - 1 - i;
            PathElement::new(
                vec![
                    (c.p99_ns, SegmentValue::Exact(i)),
                    (c.p99_ns, SegmentValue::Exact(i + 1)),
                ],
                BLACK.stroke_width(2),
            )
        }))
        .map_err(|e| e.to_string())?;
    draw_legend(&mut chart)?;
    root.present().map_err(|e| e.to_string())?;
    Ok(())
}
