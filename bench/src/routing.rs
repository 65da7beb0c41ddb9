//! The routing benchmark: N broker state machines in the topology crate's simulator (no
//! network), measured and checked against its oracle.
//!
//! [`run`] is `palio-bench routing`; it delegates to
//! [`palio_topology::sim::scenario::run_routing`], which the topology crate's own tests share,
//! so the measured code and the tested code are one. [`render_svg`] draws the report's plot from
//! the JSON lines of several runs (`palio-bench routing-plot`).

use std::fmt::Write as _;

use anyhow::{Context, bail};
use palio_topology::sim::scenario::run_routing;
pub use palio_topology::sim::scenario::{RoutingParams, RoutingReport};

/// Runs one routing measurement.
pub fn run(params: &RoutingParams) -> anyhow::Result<RoutingReport> {
    let report = run_routing(params).map_err(anyhow::Error::msg)?;
    Ok(report)
}

/// Reads one report per non-empty line of JSON.
pub fn read_reports(text: &str) -> anyhow::Result<Vec<RoutingReport>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).with_context(|| format!("line {}: not a routing report", i + 1))
        })
        .collect()
}

/// One panel of the chart: title, the value plotted, and whether its axis is logarithmic.
type Panel = (&'static str, fn(&RoutingReport) -> f64, bool);

const STRATEGIES: [&str; 4] = ["flooding", "simple", "covering", "advertisements"];
const COLOURS: [&str; 4] = ["#9e9e9e", "#d62728", "#1f77b4", "#2ca02c"];

/// An SVG chart of the reports: for each (brokers, subscriptions) configuration, grouped bars
/// per strategy of routing table entries and control messages (log scale), and notification
/// messages relative to the ideal.
pub fn render_svg(reports: &[RoutingReport]) -> anyhow::Result<String> {
    if reports.is_empty() {
        bail!("no reports to plot");
    }
    let mut configs: Vec<(usize, usize)> = reports
        .iter()
        .map(|r| (r.brokers, r.subscriptions))
        .collect();
    configs.sort_unstable();
    configs.dedup();
    let panels: [Panel; 3] = [
        (
            "routing table entries (all brokers)",
            |r| r.table_entries_total as f64,
            true,
        ),
        ("control messages", |r| r.control_messages as f64, true),
        (
            "notification messages / ideal",
            |r| r.notification_messages as f64 / (r.ideal_notification_messages.max(1)) as f64,
            false,
        ),
    ];
    let (pw, ph, left, top, gap) = (360.0, 260.0, 70.0, 40.0, 40.0);
    let width = left + panels.len() as f64 * (pw + gap) + 20.0;
    let height = top + ph + 110.0;
    let mut s = String::new();
    writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">"#
    )?;
    writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#)?;
    for (pi, (title, value, log)) in panels.iter().enumerate() {
        let x0 = left + pi as f64 * (pw + gap);
        let y0 = top;
        writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle" font-size="13">{title}</text>"#,
            x0 + pw / 2.0,
            y0 - 14.0
        )?;
        let values: Vec<f64> = reports.iter().map(value).filter(|v| *v > 0.0).collect();
        let vmax = values.iter().copied().fold(1.0, f64::max);
        let (lo, hi) = if *log {
            let lo = values
                .iter()
                .copied()
                .fold(f64::INFINITY, f64::min)
                .max(1.0);
            (
                lo.log10().floor(),
                vmax.log10().ceil().max(lo.log10().floor() + 1.0),
            )
        } else {
            (0.0, (vmax * 1.1).ceil().max(1.0))
        };
        let ypos = |v: f64| -> f64 {
            let t = if *log {
                (v.max(1.0).log10() - lo) / (hi - lo)
            } else {
                v / hi
            };
            y0 + ph - t.clamp(0.0, 1.0) * ph
        };
        // Axis and grid.
        writeln!(
            s,
            r##"<rect x="{x0}" y="{y0}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>"##
        )?;
        let ticks: Vec<f64> = if *log {
            (lo as i32..=hi as i32).map(|e| 10f64.powi(e)).collect()
        } else {
            (0..=4).map(|i| hi * f64::from(i) / 4.0).collect()
        };
        for t in ticks {
            let y = ypos(t);
            let label = if *log {
                format!("1e{}", t.log10().round())
            } else {
                format!("{t:.1}")
            };
            writeln!(
                s,
                r##"<line x1="{x0}" y1="{y}" x2="{}" y2="{y}" stroke="#ddd"/><text x="{}" y="{}" text-anchor="end">{label}</text>"##,
                x0 + pw,
                x0 - 4.0,
                y + 4.0
            )?;
        }
        let group = pw / configs.len() as f64;
        let bar = group * 0.8 / STRATEGIES.len() as f64;
        for (ci, &(b, subs)) in configs.iter().enumerate() {
            let gx = x0 + ci as f64 * group + group * 0.1;
            for (si, strat) in STRATEGIES.iter().enumerate() {
                let Some(r) = reports
                    .iter()
                    .find(|r| r.brokers == b && r.subscriptions == subs && r.strategy == *strat)
                else {
                    continue;
                };
                let v = value(r);
                let y = ypos(v);
                writeln!(
                    s,
                    r#"<rect x="{:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{strat}: {v:.0}</title></rect>"#,
                    gx + si as f64 * bar,
                    bar * 0.9,
                    (y0 + ph - y).max(0.0),
                    COLOURS[si]
                )?;
            }
            writeln!(
                s,
                r#"<text x="{:.1}" y="{}" text-anchor="middle">{b} br</text><text x="{:.1}" y="{}" text-anchor="middle">{}k subs</text>"#,
                gx + group * 0.4,
                y0 + ph + 14.0,
                gx + group * 0.4,
                y0 + ph + 27.0,
                subs / 1000
            )?;
        }
    }
    for (si, strat) in STRATEGIES.iter().enumerate() {
        let x = left + si as f64 * 150.0;
        let y = top + ph + 60.0;
        writeln!(
            s,
            r#"<rect x="{x}" y="{}" width="12" height="12" fill="{}"/><text x="{}" y="{y}">{strat}</text>"#,
            y - 10.0,
            COLOURS[si],
            x + 16.0
        )?;
    }
    writeln!(s, "</svg>")?;
    Ok(s)
}
