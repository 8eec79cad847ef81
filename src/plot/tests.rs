//! The plots read at a glance, checked without a renderer: the committed evidence and its host
//! bench are drawn into a temporary directory and the SVG text is measured. A label's width is
//! estimated at 0.6 em per character (DejaVu Sans, what librsvg falls back to for
//! `sans-serif`, averages about 0.55 em on these labels), its height at 1 em.

use std::path::{Path, PathBuf};

use crate::data::evidence::Evidence;

/// A box: left, top, right, bottom.
#[derive(Clone, Copy, Debug)]
struct Bbox(f64, f64, f64, f64);

impl Bbox {
    fn contains(&self, x: f64, y: f64) -> bool {
        self.0 <= x && x <= self.2 && self.1 <= y && y <= self.3
    }
    fn overlaps(&self, o: &Bbox) -> bool {
        self.0 < o.2 && o.0 < self.2 && self.1 < o.3 && o.1 < self.3
    }
}

#[derive(Debug)]
enum Item {
    Text {
        text: String,
        bbox: Bbox,
    },
    /// A data point's marker (its centre).
    Point {
        x: f64,
        y: f64,
    },
    /// A filled box: a bar, a legend's background, a swatch.
    Rect {
        bbox: Bbox,
    },
}

#[derive(Debug)]
struct Svg {
    name: String,
    width: f64,
    height: f64,
    items: Vec<Item>,
}

fn attr(tag: &str, name: &str) -> Option<String> {
    let key = format!(" {name}=\"");
    let i = tag.find(&key)? + key.len();
    let j = tag[i..].find('"')?;
    Some(tag[i..i + j].to_owned())
}

fn num(tag: &str, name: &str) -> f64 {
    attr(tag, name)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no numeric {name} in {tag}"))
}

/// The estimated box of a text element.
fn text_box(tag: &str, text: &str) -> Bbox {
    let (x, y, size) = (num(tag, "x"), num(tag, "y"), num(tag, "font-size"));
    let w = text.chars().count() as f64 * size * 0.6;
    let (left, right) = match attr(tag, "text-anchor").as_deref() {
        Some("end") => (x - w, x),
        Some("middle") => (x - w / 2.0, x + w / 2.0),
        _ => (x, x + w),
    };
    let (top, bottom) = match attr(tag, "dy").as_deref() {
        Some("0.76em") => (y, y + size),
        Some("0.5ex") => (y - size / 2.0, y + size / 2.0),
        Some("-0.5ex") => (y - size, y),
        _ => (y - 0.8 * size, y + 0.2 * size),
    };
    if attr(tag, "transform")
        .is_some_and(|t| t.starts_with("rotate(270") || t.starts_with("rotate(90"))
    {
        // Turned a quarter about (x, y): the box's width and height swap about that point.
        let (hw, hh) = ((right - left) / 2.0, (bottom - top) / 2.0);
        let (cx, cy) = ((left + right) / 2.0, (top + bottom) / 2.0);
        let (dx, dy) = (cx - x, cy - y);
        let (cx, cy) = (x + dy, y - dx);
        return Bbox(cx - hh, cy - hw, cx + hh, cy + hw);
    }
    Bbox(left, top, right, bottom)
}

fn parse(path: &Path) -> Svg {
    let s = std::fs::read_to_string(path).unwrap();
    let head = &s[..s.find('>').unwrap()];
    let view: Vec<f64> = attr(head, "viewBox")
        .unwrap()
        .split(' ')
        .map(|v| v.parse().unwrap())
        .collect();
    assert_eq!(view[..2], [0.0, 0.0]);
    let mut items = Vec::new();
    let mut rest = &s[head.len()..];
    while let Some(i) = rest.find('<') {
        rest = &rest[i..];
        let end = rest.find('>').unwrap();
        let tag = &rest[..=end];
        if tag.starts_with("<text") {
            let close = rest.find("</text>").unwrap();
            let text = rest[end + 1..close]
                .trim()
                .replace("&apos;", "'")
                .replace("&quot;", "\"")
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&amp;", "&");
            items.push(Item::Text {
                bbox: text_box(tag, &text),
                text,
            });
        } else if tag.starts_with("<circle") {
            items.push(Item::Point {
                x: num(tag, "cx"),
                y: num(tag, "cy"),
            });
        } else if tag.starts_with("<rect") && attr(tag, "fill").is_some_and(|f| f != "none") {
            let (x, y) = (num(tag, "x"), num(tag, "y"));
            let (w, h) = (num(tag, "width"), num(tag, "height"));
            items.push(Item::Rect {
                bbox: Bbox(x, y, x + w, y + h),
            });
        }
        rest = &rest[end + 1..];
    }
    Svg {
        name: path.display().to_string(),
        width: view[2],
        height: view[3],
        items,
    }
}

impl Svg {
    fn texts(&self) -> impl Iterator<Item = (&str, Bbox)> {
        self.items.iter().filter_map(|i| match i {
            Item::Text { text, bbox } => Some((text.as_str(), *bbox)),
            _ => None,
        })
    }

    /// Every label whole inside the picture.
    fn assert_no_clipped_text(&self) {
        for (text, b) in self.texts() {
            assert!(
                b.0 >= 0.0 && b.1 >= 0.0 && b.2 <= self.width && b.3 <= self.height,
                "{}: `{text}` at {b:?} leaves the {}x{} picture",
                self.name,
                self.width,
                self.height
            );
        }
    }

    /// No two labels over each other.
    fn assert_texts_apart(&self) {
        let texts: Vec<_> = self.texts().filter(|(t, _)| !t.is_empty()).collect();
        for (i, (a, ab)) in texts.iter().enumerate() {
            for (b, bb) in &texts[i + 1..] {
                assert!(
                    !ab.overlaps(bb),
                    "{}: `{a}` {ab:?} overlaps `{b}` {bb:?}",
                    self.name
                );
            }
        }
    }

    /// No data point under a label, or under a box drawn after it (a legend's background).
    fn assert_points_visible(&self) {
        for (i, item) in self.items.iter().enumerate() {
            let Item::Point { x, y } = *item else {
                continue;
            };
            for later in &self.items {
                if let Item::Text { text, bbox } = later {
                    assert!(
                        !bbox.contains(x, y),
                        "{}: `{text}` {bbox:?} covers the point ({x}, {y})",
                        self.name
                    );
                }
            }
            for later in &self.items[i + 1..] {
                if let Item::Rect { bbox } = later {
                    assert!(
                        !bbox.contains(x, y),
                        "{}: a box {bbox:?} drawn over the point ({x}, {y})",
                        self.name
                    );
                }
            }
        }
    }

    fn all_text(&self) -> String {
        self.texts().map(|(t, _)| t).collect::<Vec<_>>().join("\n")
    }
}

fn evidence() -> Evidence {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/evidence/evidence.json");
    Evidence::load(&path).unwrap()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hdpflush-plot-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn evidence_plots_are_unclipped_and_legends_hide_no_data() {
    let dir = scratch("evidence");
    super::evidence::write_all(&evidence(), &dir).unwrap();
    for name in ["callers.svg", "batch.svg", "cost.svg"] {
        let svg = parse(&dir.join(name));
        svg.assert_points_visible();
        svg.assert_texts_apart();
        svg.assert_no_clipped_text();
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_cost_plot_names_each_guests_page_size_and_calls_guest_floors_guest_floors() {
    let dir = scratch("cost");
    let e = evidence();
    super::evidence::write_all(&e, &dir).unwrap();
    let text = parse(&dir.join("cost.svg")).all_text();
    for g in e.guests() {
        let run = &g.runs[0].report.host;
        assert!(
            text.contains(&format!("PAGE_SIZE {}", run.page_size)),
            "cost.svg never says {}'s PAGE_SIZE {}:\n{text}",
            g.name,
            run.page_size
        );
    }
    assert!(
        !text.contains("host kernel"),
        "cost.svg shows only guests, yet says `host kernel`:\n{text}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_bench_plot_is_unclipped_and_titled_by_its_host() {
    let dir = scratch("bench");
    let e = evidence();
    let report = &e.run("host", "host").unwrap().report;
    let path = dir.join("bench.svg");
    super::bench_report::write_svg(report, &path).unwrap();
    let svg = parse(&path);
    svg.assert_no_clipped_text();
    svg.assert_texts_apart();
    svg.assert_points_visible();
    assert!(svg
        .all_text()
        .contains(&format!("PAGE_SIZE {}", report.host.page_size)));
    std::fs::remove_dir_all(&dir).unwrap();
}
