//! The evidence's plots: cost per flush by strategy and kernel, the io_uring batch-size curve,
//! and the callers curve.

use std::path::Path;

use plotters::prelude::*;

use crate::data::evidence::Evidence;
use crate::error::CliError;
use crate::plot::bench_report::{self, Bars, Panel, Row};
use crate::plot::{
    draw_legend, draw_svg, draw_titles, legend_width, text_width, Swatch, LABEL_FONT,
    SUBTITLE_FONT, TITLE_FONT,
};

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
    bench_report::write_bars(&cost_bars(e), &dir.join("cost.svg"))?;
    draw_svg(&dir.join("batch.svg"), |p| batch(e, p))?;
    draw_svg(&dir.join("callers.svg"), |p| callers(e, p))?;
    Ok(())
}

/// A sysfs BAR path in a label, `/sys/bus/pci/devices/BDF/resourceN@OFF`, as `BARN @OFF`; the
/// panel's title names the device.
fn shorten(label: &str) -> String {
    const SYSFS: &str = "/sys/bus/pci/devices/";
    let mut out = String::new();
    let mut rest = label;
    while let Some(i) = rest.find(SYSFS) {
        out.push_str(&rest[..i]);
        let path = &rest[i..];
        let end = path.find([',', ')', ' ']).unwrap_or(path.len());
        let (bar, tail) = path[..end].split_once('@').unwrap_or((&path[..end], ""));
        match bar.rsplit_once("/resource") {
            Some((_, n)) if tail.is_empty() => out.push_str(&format!("BAR{n}")),
            Some((_, n)) => out.push_str(&format!("BAR{n} @{tail}")),
            None => out.push_str(&path[..end]),
        }
        rest = &path[end..];
    }
    out.push_str(rest);
    out
}

/// The PCI address in a sysfs device path within `text`.
fn pci_address(text: &str) -> Option<&str> {
    const SYSFS: &str = "/sys/bus/pci/devices/";
    let i = text.find(SYSFS)? + SYSFS.len();
    text[i..].split('/').next()
}

/// Every guest's single-caller cases from the phases that compare strategies: one panel per
/// guest, titled with its page size, each row prefixed by its phase.
fn cost_bars(e: &Evidence) -> Bars {
    let mut panels = Vec::new();
    for g in e.guests() {
        let mut rows = Vec::new();
        let mut host = None;
        let mut device = None;
        for phase in ["sim", "emulated"] {
            let Some(run) = e.run(&g.name, phase) else {
                continue;
            };
            host.get_or_insert(&run.report.host);
            for c in e.medians(&g.name, phase) {
                if c.case.threads != 1 {
                    continue;
                }
                let label = c.case.label();
                if device.is_none() {
                    device = pci_address(&label).map(str::to_owned);
                }
                rows.push(Row {
                    label: format!("{phase}: {}", shorten(&label)),
                    kind: c.case.backing.kind,
                    mean_ns: c.mean_ns.median,
                    p50_ns: c.p50_ns.unwrap_or(c.mean_ns.median),
                    p99_ns: c.p99_per_flush,
                });
            }
        }
        let Some(h) = host else {
            continue;
        };
        let device = device
            .map(|d| format!("; BARn = emulated PCI device {d}'s BAR n"))
            .unwrap_or_default();
        panels.push(Panel {
            title: format!(
                "{} guest: PAGE_SIZE {}, kernel {}{device}",
                g.name, h.page_size, h.kernel
            ),
            rows,
        });
    }
    Bars {
        title:
            "hdpflush under QEMU TCG: ns per flush, mean (bar) and p99 (tick, one-flush samples)"
                .into(),
        subtitle: format!(
            "median across boots ({}); one panel per guest; rows by phase: sim = the module's \
             sim backend, emulated = QEMU's emulated PCI device",
            boots_note(e)
        ),
        panels,
        floor_name: "guest kernel floor (flushes nothing)".into(),
    }
}

/// Lines of (x, y) points, drawn on a log-x chart; `triangle` (the second guest) tells guests apart where their
/// lines lie on top of each other.
struct Series {
    name: String,
    colour: RGBColor,
    triangle: bool,
    points: Vec<(f64, f64)>,
}

/// The plot area's size.
const LINE_PLOT: (u32, u32) = (700, 520);

fn line_chart(
    path: &Path,
    title: &str,
    subtitle: &str,
    x_desc: &str,
    y_desc: &str,
    log_y: bool,
    series: &[Series],
) -> Result<(), String> {
    let all = series.iter().flat_map(|s| s.points.iter());
    let (mut x_lo, mut x_hi, mut y_lo, mut y_hi) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    let mut xs: Vec<f64> = Vec::new();
    for &(x, y) in all {
        x_lo = x_lo.min(x);
        x_hi = x_hi.max(x);
        y_lo = y_lo.min(y);
        y_hi = y_hi.max(y);
        if !xs.contains(&x) {
            xs.push(x);
        }
    }
    if x_lo > x_hi {
        return Err("nothing to plot: the evidence has no such cases".into());
    }
    xs.sort_by(f64::total_cmp);
    let legend: Vec<(String, Swatch)> = series
        .iter()
        .map(|s| {
            let swatch = if s.triangle {
                Swatch::LineTriangle(s.colour)
            } else {
                Swatch::LineCircle(s.colour)
            };
            (s.name.clone(), swatch)
        })
        .collect();
    let legend_w = legend_width(legend.iter().map(|(n, _)| n.as_str()));
    let titles_w = text_width(title, TITLE_FONT).max(text_width(subtitle, SUBTITLE_FONT)) + 40;
    let width = (LINE_PLOT.0 + legend_w).max(titles_w);
    let root = SVGBackend::new(path, (width, LINE_PLOT.1 + 60)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let body = draw_titles(&root, title, subtitle)?;
    let (plot, legend_area) = body.split_horizontally(LINE_PLOT.0);
    draw_legend(&legend_area.margin(10, 0, 0, 0), &legend)?;
    let x_range = ((x_lo / 1.4)..(x_hi * 1.4)).log_scale().with_key_points(xs);
    let mut builder = ChartBuilder::on(&plot);
    builder
        .margin(10)
        .margin_right(24)
        .x_label_area_size(50)
        .y_label_area_size(80);
    let draw_err = |e: &dyn std::fmt::Display| e.to_string();
    macro_rules! finish {
        ($chart:expr, $y_fmt:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .x_desc(x_desc)
                .y_desc(y_desc)
                .label_style(("sans-serif", LABEL_FONT))
                .axis_desc_style(("sans-serif", LABEL_FONT))
                .x_label_formatter(&|v| format!("{v:.0}"))
                .y_label_formatter(&$y_fmt)
                .draw()
                .map_err(|e| draw_err(&e))?;
            for s in series {
                let colour = s.colour;
                chart
                    .draw_series(LineSeries::new(s.points.clone(), colour.stroke_width(2)))
                    .map_err(|e| draw_err(&e))?;
            }
            for s in series {
                let colour = s.colour;
                if s.triangle {
                    chart
                        .draw_series(
                            s.points
                                .iter()
                                .map(|&p| TriangleMarker::new(p, 6, colour.filled())),
                        )
                        .map_err(|e| draw_err(&e))?;
                } else {
                    chart
                        .draw_series(s.points.iter().map(|&p| Circle::new(p, 4, colour.filled())))
                        .map_err(|e| draw_err(&e))?;
                }
            }
        }};
    }
    if log_y {
        let (lo, hi) = (y_lo.max(1e-3) / 1.5, y_hi * 1.5);
        // Ticks at 1, 2 and 5 of each decade: plotters labels none below the first power of ten.
        let mut ticks = Vec::new();
        let mut decade = 10f64.powf(lo.log10().floor());
        while decade <= hi {
            ticks.extend(
                [decade, 2.0 * decade, 5.0 * decade]
                    .into_iter()
                    .filter(|t| (lo..=hi).contains(t)),
            );
            decade *= 10.0;
        }
        finish!(
            builder
                .build_cartesian_2d(x_range, (lo..hi).log_scale().with_key_points(ticks))
                .map_err(|e| draw_err(&e))?,
            |v: &f64| format!("{v:.0}")
        );
    } else {
        // Zoomed to the data, as the axis says: differences of a percent stay visible.
        let pad = ((y_hi - y_lo) * 0.15).max(0.002);
        let y = (y_lo - pad)..(y_hi + pad);
        finish!(
            builder
                .build_cartesian_2d(x_range, y)
                .map_err(|e| draw_err(&e))?,
            |v: &f64| format!("{v:.3}")
        );
    }
    root.present().map_err(|e| e.to_string())?;
    Ok(())
}

/// The guests' titles with their page sizes, for a plot's subtitle.
fn guests_line(e: &Evidence) -> String {
    let guests: Vec<String> = e
        .guests()
        .filter_map(|g| {
            let h = &g.runs.first()?.report.host;
            Some(format!("{} guest PAGE_SIZE {}", g.name, h.page_size))
        })
        .collect();
    format!("QEMU TCG: {}", guests.join(", "))
}

/// "5 boots per guest", or the fewest and most when the guests differ.
fn boots_note(e: &Evidence) -> String {
    let counts: Vec<usize> = e
        .guests()
        .map(|g| e.runs(&g.name, "sim").len().max(1))
        .collect();
    let lo = counts.iter().copied().min().unwrap_or(1);
    let hi = counts.iter().copied().max().unwrap_or(1);
    match (lo, hi) {
        (1, 1) => "1 boot per guest".to_owned(),
        (l, h) if l == h => format!("{l} boots per guest"),
        (l, h) => format!("{l}-{h} boots per guest"),
    }
}

/// ns per flush against the io_uring batch size, beside the io_uring NOP of the same batch.
fn batch(e: &Evidence, path: &Path) -> Result<(), String> {
    let mut series = Vec::new();
    for (gi, g) in e.guests().enumerate() {
        let cases = e.medians(&g.name, "sim");
        for (label, strategy, variant) in [
            ("uring flush", "uring", "completed, batch {b}"),
            (
                "uring flush, SQPOLL",
                "uring",
                "completed, batch {b}, sqpoll",
            ),
            (
                "URING_CMD NOP floor",
                "reference",
                "URING_CMD NOP batch {b}",
            ),
        ] {
            let points: Vec<(f64, f64)> = [1u32, 8, 32, 128]
                .into_iter()
                .filter_map(|b| {
                    let variant = variant.replace("{b}", &b.to_string());
                    let c = cases.iter().find(|c| c.is(strategy, &variant))?;
                    Some((f64::from(b), c.mean_ns.median))
                })
                .collect();
            if !points.is_empty() {
                series.push(Series {
                    name: format!("{label}, {}", g.title()),
                    colour: COLOURS[series.len() % COLOURS.len()],
                    triangle: gi % 2 == 1,
                    points,
                });
            }
        }
    }
    line_chart(
        path,
        "ns per flush by io_uring batch size (the module's sim backend, no delay)",
        &format!(
            "{}; median across boots ({}); the floor: the same submission of NOP commands",
            guests_line(e),
            boots_note(e)
        ),
        "flushes per submission (log scale)",
        "ns per flush (log scale)",
        true,
        &series,
    )
}

/// Hardware flushes per request against the number of concurrent callers (1 us round trip).
fn callers(e: &Evidence, path: &Path) -> Result<(), String> {
    let mut series = Vec::new();
    for (gi, g) in e.guests().enumerate() {
        let cases = e.medians(&g.name, "sim-1us");
        for (name, strategy, single) in [
            ("ioctl completed", "ioctl", "completed"),
            ("ioctl posted", "ioctl", "posted"),
            ("uring completed, batch 1", "uring", "completed, batch 1"),
        ] {
            let points: Vec<(f64, f64)> = [1u32, 2, 4, 8]
                .into_iter()
                .filter_map(|n| {
                    let variant = if n == 1 {
                        single.to_owned()
                    } else {
                        format!("{single}, {n} threads")
                    };
                    let c = cases.iter().find(|c| c.is(strategy, &variant))?;
                    Some((f64::from(n), c.hw_flushes_per_request?))
                })
                .collect();
            if !points.is_empty() {
                series.push(Series {
                    name: format!("{name}, {}", g.title()),
                    colour: COLOURS[series.len() % COLOURS.len()],
                    triangle: gi % 2 == 1,
                    points,
                });
            }
        }
    }
    line_chart(
        path,
        "hardware flushes per request by concurrent callers (sim backend, 1 us round trip)",
        &format!(
            "{}; median across boots ({}); 1.0 = no coalescing, y axis zoomed",
            guests_line(e),
            boots_note(e)
        ),
        "callers on one device (log scale)",
        "hardware flushes per request",
        false,
        &series,
    )
}
