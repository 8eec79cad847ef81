//! The evidence's plots: cost per flush by strategy and kernel, the io_uring batch-size curve,
//! and the callers curve.

use std::path::Path;

use plotters::prelude::*;

use crate::data::bench_report::{BenchReport, HostInfo};
use crate::data::evidence::Evidence;
use crate::error::CliError;
use crate::plot::{bench_report, draw_legend, draw_svg};

/// Colours of the series, one per guest and line kind.
const COLOURS: [RGBColor; 6] = [
    RGBColor(196, 58, 40),
    RGBColor(56, 108, 196),
    RGBColor(230, 140, 30),
    RGBColor(46, 139, 87),
    RGBColor(150, 90, 170),
    RGBColor(90, 90, 90),
];

/// Write `cost.svg`, `batch.svg` and `callers.svg` into `dir`.
pub fn write_all(e: &Evidence, dir: &Path) -> Result<(), CliError> {
    bench_report::write_svg(&cost_report(e), &dir.join("cost.svg"))?;
    draw_svg(&dir.join("batch.svg"), |p| batch(e, p))?;
    draw_svg(&dir.join("callers.svg"), |p| callers(e, p))?;
    Ok(())
}

/// Every guest's cases from the phases that compare strategies, relabelled by guest, as one
/// report for the bar plot.
fn cost_report(e: &Evidence) -> BenchReport {
    let mut results = Vec::new();
    let mut first = None;
    for g in e.guests() {
        for phase in ["sim", "emulated"] {
            let Some(run) = e.run(&g.name, phase) else {
                continue;
            };
            first.get_or_insert_with(|| run.report.clone());
            for c in &run.report.results {
                if c.threads > 1 {
                    continue;
                }
                let mut c = c.clone();
                c.variant = if c.variant.is_empty() {
                    g.title()
                } else {
                    format!("{}, {}", c.variant, g.title())
                };
                results.push(c);
            }
        }
    }
    let mut report = first.unwrap_or_else(|| BenchReport {
        tool: "hdpflush".into(),
        version: e.version.clone(),
        started_unix: e.assembled_unix,
        host: HostInfo {
            arch: String::new(),
            page_size: 0,
            kernel: String::new(),
            cpus: 0,
        },
        iterations: 0,
        warmup: 0,
        baseline: String::new(),
        results: Vec::new(),
        skipped: Vec::new(),
    });
    report.host.arch = e
        .guests()
        .map(|g| g.title())
        .collect::<Vec<_>>()
        .join(" and ");
    report.host.kernel = "guests under QEMU TCG".into();
    report.results = results;
    report
}

/// Lines of (x, y) points, drawn on a log-x chart.
struct Series {
    name: String,
    points: Vec<(f64, f64)>,
}

fn line_chart(
    path: &Path,
    caption: &str,
    x_desc: &str,
    y_desc: &str,
    log_y: bool,
    series: &[Series],
) -> Result<(), String> {
    let all = series.iter().flat_map(|s| s.points.iter());
    let (mut x_lo, mut x_hi, mut y_lo, mut y_hi) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in all {
        x_lo = x_lo.min(x);
        x_hi = x_hi.max(x);
        y_lo = y_lo.min(y);
        y_hi = y_hi.max(y);
    }
    if x_lo > x_hi {
        return Err("nothing to plot: the evidence has no such cases".into());
    }
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let x_range = (x_lo * 0.8)..(x_hi * 1.25);
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(caption, ("sans-serif", 16))
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(70);
    let draw_err = |e: &dyn std::fmt::Display| e.to_string();
    macro_rules! finish {
        ($chart:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .x_desc(x_desc)
                .y_desc(y_desc)
                .x_label_formatter(&|v| format!("{v:.0}"))
                .draw()
                .map_err(|e| draw_err(&e))?;
            for (i, s) in series.iter().enumerate() {
                let colour = COLOURS[i % COLOURS.len()];
                chart
                    .draw_series(LineSeries::new(s.points.clone(), colour.stroke_width(2)))
                    .map_err(|e| draw_err(&e))?
                    .label(s.name.clone())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 16, y)], colour.stroke_width(2))
                    });
                chart
                    .draw_series(s.points.iter().map(|&p| Circle::new(p, 3, colour.filled())))
                    .map_err(|e| draw_err(&e))?;
            }
            draw_legend(&mut chart)?;
        }};
    }
    if log_y {
        let y = (y_lo.max(1e-3) / 1.5)..(y_hi * 1.5);
        finish!(builder
            .build_cartesian_2d(x_range.log_scale(), y.log_scale())
            .map_err(|e| draw_err(&e))?);
    } else {
        let y = 0.0..(y_hi * 1.15).max(1.0);
        finish!(builder
            .build_cartesian_2d(x_range.log_scale(), y)
            .map_err(|e| draw_err(&e))?);
    }
    root.present().map_err(|e| e.to_string())?;
    Ok(())
}

/// ns per flush against the io_uring batch size, beside the io_uring NOP of the same batch.
fn batch(e: &Evidence, path: &Path) -> Result<(), String> {
    let mut series = Vec::new();
    for g in e.guests() {
        let Some(run) = e.run(&g.name, "sim") else {
            continue;
        };
        for (label, strategy, variant) in [
            ("uring flush", "uring", "completed, batch {b}"),
            (
                "uring flush, SQPOLL",
                "uring",
                "completed, batch {b}, sqpoll",
            ),
            ("io_uring NOP floor", "reference", "io_uring NOP batch {b}"),
        ] {
            let points: Vec<(f64, f64)> = [1u32, 8, 32, 128]
                .into_iter()
                .filter_map(|b| {
                    run.case(strategy, &variant.replace("{b}", &b.to_string()))
                        .map(|c| (f64::from(b), c.mean_ns))
                })
                .collect();
            if !points.is_empty() {
                series.push(Series {
                    name: format!("{label}, {}", g.title()),
                    points,
                });
            }
        }
    }
    line_chart(
        path,
        "ns per flush by io_uring batch size (sim backend, no delay; QEMU TCG guests)",
        "flushes per submission (log scale)",
        "ns per flush (log scale)",
        true,
        &series,
    )
}

/// Hardware flushes per request against the number of concurrent callers (1 us round trip).
fn callers(e: &Evidence, path: &Path) -> Result<(), String> {
    let mut series = Vec::new();
    for g in e.guests() {
        let Some(run) = e.run(&g.name, "sim-1us") else {
            continue;
        };
        for completion in ["completed", "posted"] {
            let points: Vec<(f64, f64)> = [1u32, 2, 4, 8]
                .into_iter()
                .filter_map(|n| {
                    let variant = if n == 1 {
                        completion.to_owned()
                    } else {
                        format!("{completion}, {n} threads")
                    };
                    run.case("ioctl", &variant)
                        .and_then(|c| c.hw_flushes_per_request)
                        .map(|h| (f64::from(n), h))
                })
                .collect();
            if !points.is_empty() {
                series.push(Series {
                    name: format!("ioctl {completion}, {}", g.title()),
                    points,
                });
            }
        }
    }
    line_chart(
        path,
        "hardware flushes per request by concurrent callers (1 us modelled round trip)",
        "callers on one device (log scale)",
        "hardware flushes per request",
        false,
        &series,
    )
}
