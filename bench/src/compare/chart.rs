//! Small SVG charts for the comparison report: lines over a (log or linear) x axis, and
//! grouped bars. Plain SVG text, no dependencies; each chart is self-contained.

use std::fmt::Write;

/// One line or one bar group's member.
#[derive(Debug, Clone)]
pub struct Series {
    /// The legend's text.
    pub label: String,
    /// (x, y) points, x ascending.
    pub points: Vec<(f64, f64)>,
    /// Dashed line (for a second percentile of the same system, say).
    pub dashed: bool,
    /// Index into the palette: series of one system share it.
    pub colour: usize,
}

const COLOURS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
];
const W: f64 = 640.0;
const H: f64 = 360.0;
const LEFT: f64 = 72.0;
const RIGHT: f64 = 170.0;
const TOP: f64 = 36.0;
const BOTTOM: f64 = 48.0;

/// A line chart. `log_x` spaces x by its logarithm (message sizes); y starts at 0.
pub fn lines(title: &str, x_label: &str, y_label: &str, log_x: bool, series: &[Series]) -> String {
    let xs: Vec<f64> = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .collect();
    let ys: Vec<f64> = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .collect();
    let fx = |x: f64| if log_x { x.max(1e-9).log2() } else { x };
    let (x0, x1) = span(xs.iter().map(|&x| fx(x)));
    let y1 = nice_max(ys.iter().copied().fold(0.0, f64::max));
    let px = |x: f64| LEFT + (fx(x) - x0) / (x1 - x0).max(1e-9) * (W - LEFT - RIGHT);
    let py = |y: f64| H - BOTTOM - y / y1 * (H - TOP - BOTTOM);
    let mut s = frame(title, x_label, y_label);
    grid(&mut s, y1, py);
    let mut ticks: Vec<f64> = xs.clone();
    ticks.sort_by(f64::total_cmp);
    ticks.dedup();
    for x in ticks {
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
            px(x),
            H - BOTTOM + 16.0,
            if log_x { bytes(x) } else { short(x) }
        );
    }
    for (i, se) in series.iter().enumerate() {
        let colour = COLOURS[se.colour % COLOURS.len()];
        let path: Vec<String> = se
            .points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
            .collect();
        let dash = if se.dashed {
            r#" stroke-dasharray="5,4""#
        } else {
            ""
        };
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2"{dash} points="{}"/>"#,
            path.join(" ")
        );
        for &(x, y) in &se.points {
            let _ = writeln!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{colour}"/>"#,
                px(x),
                py(y)
            );
        }
        legend(&mut s, i, &se.label, colour, se.dashed);
    }
    s.push_str("</svg>\n");
    s
}

/// Grouped bars: one group per category, one bar per series (each series has one value per
/// category, in `points` as (category index, value)).
pub fn bars(title: &str, categories: &[String], y_label: &str, series: &[Series]) -> String {
    let y1 = nice_max(
        series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .fold(0.0, f64::max),
    );
    let py = |y: f64| H - BOTTOM - y / y1 * (H - TOP - BOTTOM);
    let group = (W - LEFT - RIGHT) / categories.len().max(1) as f64;
    let bar = group * 0.8 / series.len().max(1) as f64;
    let mut s = frame(title, "", y_label);
    grid(&mut s, y1, py);
    for (c, name) in categories.iter().enumerate() {
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
            LEFT + group * (c as f64 + 0.5),
            H - BOTTOM + 16.0,
            escape(name)
        );
    }
    for (i, se) in series.iter().enumerate() {
        let colour = COLOURS[se.colour % COLOURS.len()];
        for &(c, y) in &se.points {
            let x = LEFT + group * c + group * 0.1 + bar * i as f64;
            let _ = writeln!(
                s,
                r#"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{colour}"><title>{}</title></rect>"#,
                py(y),
                bar * 0.95,
                (H - BOTTOM - py(y)).max(0.0),
                short(y)
            );
        }
        legend(&mut s, i, &se.label, colour, false);
    }
    s.push_str("</svg>\n");
    s
}

fn frame(title: &str, x_label: &str, y_label: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="20" text-anchor="middle" font-size="14">{}</text>"#,
        (W - RIGHT + LEFT) / 2.0,
        escape(title)
    );
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
        (W - RIGHT + LEFT) / 2.0,
        H - 10.0,
        escape(x_label)
    );
    let _ = writeln!(
        s,
        r#"<text x="16" y="{0}" text-anchor="middle" transform="rotate(-90 16 {0})">{1}</text>"#,
        (H - BOTTOM + TOP) / 2.0,
        escape(y_label)
    );
    let _ = writeln!(
        s,
        r#"<line x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{0}" stroke="black"/><line x1="{LEFT}" x2="{1}" y1="{0}" y2="{0}" stroke="black"/>"#,
        H - BOTTOM,
        W - RIGHT
    );
    s
}

/// Horizontal grid lines and y labels at quarters of `y1`.
fn grid(s: &mut String, y1: f64, py: impl Fn(f64) -> f64) {
    for i in 0..=4 {
        let y = y1 * f64::from(i) / 4.0;
        let (x2, at, label_x) = (W - RIGHT, py(y), LEFT - 6.0);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" x2="{x2}" y1="{at:.1}" y2="{at:.1}" stroke="#ddd"/><text x="{label_x}" y="{:.1}" text-anchor="end">{}</text>"##,
            at + 4.0,
            short(y)
        );
    }
}

fn legend(s: &mut String, i: usize, label: &str, colour: &str, dashed: bool) {
    let y = TOP + 8.0 + 18.0 * i as f64;
    let x = W - RIGHT + 12.0;
    let dash = if dashed {
        r#" stroke-dasharray="5,4""#
    } else {
        ""
    };
    let _ = writeln!(
        s,
        r#"<line x1="{x}" x2="{}" y1="{y}" y2="{y}" stroke="{colour}" stroke-width="3"{dash}/><text x="{}" y="{}">{}</text>"#,
        x + 20.0,
        x + 26.0,
        y + 4.0,
        escape(label)
    );
}

fn span(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo > hi {
        (0.0, 1.0)
    } else if lo == hi {
        (lo - 1.0, hi + 1.0)
    } else {
        (lo, hi)
    }
}

/// A round number at or above `v` (1, 2 or 5 times a power of ten).
fn nice_max(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|&c| c >= v)
        .unwrap_or(10.0 * p)
}

/// `1.5M`, `250k`, `900`.
pub fn short(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.0}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

/// `16 B`, `4 KiB`.
fn bytes(v: f64) -> String {
    if v >= 1024.0 {
        format!("{:.0} KiB", v / 1024.0)
    } else {
        format!("{v:.0} B")
    }
}

fn escape(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(label: &str, points: &[(f64, f64)]) -> Series {
        Series {
            label: label.into(),
            points: points.to_vec(),
            dashed: false,
            colour: 0,
        }
    }

    #[test]
    fn a_line_chart_has_every_series_and_point() {
        let svg = lines(
            "throughput",
            "size",
            "msgs/s",
            true,
            &[
                series("palio", &[(16.0, 300e3), (65536.0, 20e3)]),
                Series {
                    colour: 1,
                    ..series("nats <core>", &[(16.0, 350e3), (65536.0, 15e3)])
                },
            ],
        );
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert_eq!(svg.matches("<circle").count(), 4);
        assert!(svg.contains("nats &lt;core&gt;"));
        assert!(svg.contains("64 KiB") && svg.contains("16 B"));
        assert!(svg.contains(COLOURS[0]) && svg.contains(COLOURS[1]));
    }

    #[test]
    fn bars_for_each_category_and_series() {
        let svg = bars(
            "fan-out",
            &["1to1".into(), "1to16".into()],
            "msgs/s",
            &[
                series("palio", &[(0.0, 1e5), (1.0, 2e6)]),
                Series {
                    colour: 1,
                    ..series("nats", &[(0.0, 2e5), (1.0, 1e6)])
                },
            ],
        );
        assert_eq!(svg.matches("<rect x=").count(), 4);
        assert!(svg.contains("2.0M"));
    }

    #[test]
    fn axis_maxima_are_round() {
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(340_000.0), 500_000.0);
        assert_eq!(nice_max(1_000.0), 1_000.0);
        assert_eq!(nice_max(1_001.0), 2_000.0);
    }
}
