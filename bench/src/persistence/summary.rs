//! Interleaved runs summarised: min/median/max per system and of each ratio, as a markdown
//! table and an SVG bar chart.
//!
//! The input is `persistence --json` lines in the order they ran (`bench/persistence-compare.sh`
//! runs the systems in turn, K rounds). A system's k-th line belongs to round k, and a ratio
//! is taken within each round (Palio's rate over the peer's rate in the same round) before its
//! min/median/max, so that a slow spell of the shared machine affects both sides of a ratio.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::bail;

use super::{PersistenceReport, System};

/// One system's runs: its name in tables and its rates by round.
#[derive(Debug, Clone)]
pub struct Series {
    /// The label and, for JetStream, the server version: `jetstream v2.9.10`.
    pub name: String,
    /// Acked publications per second, by round.
    pub publish: Vec<f64>,
    /// Consumed messages per second, by round.
    pub consume: Vec<f64>,
}

/// Parses `persistence --json` lines and groups them by system, in order of first
/// appearance; Palio first if present.
pub fn read_series(text: &str) -> anyhow::Result<Vec<Series>> {
    let mut order: Vec<String> = Vec::new();
    let mut by: BTreeMap<String, Series> = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let r: PersistenceReport =
            serde_json::from_str(line).map_err(|e| anyhow::anyhow!("line {}: {e}", i + 1))?;
        let name = match r.system {
            System::Palio => r.label.clone(),
            System::Jetstream => format!("{} {}", r.label, r.server_version),
        };
        let s = by.entry(name.clone()).or_insert_with(|| {
            order.push(name.clone());
            Series {
                name,
                publish: Vec::new(),
                consume: Vec::new(),
            }
        });
        s.publish.push(r.publish_msgs_per_s);
        s.consume.push(r.consume_msgs_per_s);
    }
    if order.is_empty() {
        bail!("no runs to summarise");
    }
    order.sort_by_key(|n| n != "palio");
    Ok(order.into_iter().filter_map(|n| by.remove(&n)).collect())
}

/// Min, median and max (the median of an even count is the mean of the middle two).
pub fn min_median_max(values: &[f64]) -> Option<(f64, f64, f64)> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some((v[0], median, v[n - 1]))
}

/// `a[k] / b[k]` for every round both have.
pub fn ratios(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter()
        .zip(b)
        .filter(|(_, d)| **d > 0.0)
        .map(|(n, d)| n / d)
        .collect()
}

/// The markdown tables: rates per system, then Palio's ratio to each other system.
pub fn markdown(series: &[Series]) -> String {
    let mut s = String::new();
    let rate = |v: &[f64]| match min_median_max(v) {
        Some((lo, mid, hi)) => format!("{lo:.0} / **{mid:.0}** / {hi:.0}"),
        None => "–".into(),
    };
    let _ = writeln!(
        s,
        "| system | runs | publish msgs/s (min / **median** / max) | consume msgs/s (min / **median** / max) |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|");
    for x in series {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} |",
            x.name,
            x.publish.len(),
            rate(&x.publish),
            rate(&x.consume)
        );
    }
    let Some(palio) = series.iter().find(|x| x.name == "palio") else {
        return s;
    };
    let ratio = |v: &[f64]| match min_median_max(v) {
        Some((lo, mid, hi)) => format!("{lo:.2} / **{mid:.2}** / {hi:.2}"),
        None => "–".into(),
    };
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "| Palio ÷ | rounds | publish (min / **median** / max) | consume (min / **median** / max) |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|");
    for x in series.iter().filter(|x| x.name != "palio") {
        let p = ratios(&palio.publish, &x.publish);
        let c = ratios(&palio.consume, &x.consume);
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} |",
            x.name,
            p.len(),
            ratio(&p),
            ratio(&c)
        );
    }
    s
}

/// A bar chart: the median publish and consume rate of each system, whiskers from min to
/// max, log scale (the rates span two orders of magnitude).
pub fn render_svg(series: &[Series]) -> anyhow::Result<String> {
    let stats: Vec<[(f64, f64, f64); 2]> = series
        .iter()
        .map(|x| {
            let z = (0.0, 0.0, 0.0);
            [
                min_median_max(&x.publish).unwrap_or(z),
                min_median_max(&x.consume).unwrap_or(z),
            ]
        })
        .collect();
    let vmax = stats.iter().flatten().map(|t| t.2).fold(1.0, f64::max);
    let (lo, hi) = (2.0_f64, vmax.log10().ceil().max(3.0));
    let (left, top, ph, group_w, bar_w) = (70.0, 40.0, 280.0, 150.0, 44.0);
    let width = left + series.len() as f64 * group_w + 170.0;
    let height = top + ph + 70.0;
    let y = |v: f64| top + ph * (1.0 - ((v.max(10f64.powf(lo)).log10() - lo) / (hi - lo)));
    let colours = ["#4878a8", "#e0a030"];
    let mut s = String::new();
    writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">"#
    )?;
    writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#)?;
    writeln!(
        s,
        r#"<text x="{}" y="20" text-anchor="middle" font-size="13">persistent publish and durable consume, msgs/s (median; whiskers min–max)</text>"#,
        width / 2.0
    )?;
    let mut e = lo as i32;
    while f64::from(e) <= hi {
        let yy = y(10f64.powi(e));
        writeln!(
            s,
            r##"<line x1="{left}" y1="{yy}" x2="{}" y2="{yy}" stroke="#ddd"/><text x="{}" y="{}" text-anchor="end">1e{e}</text>"##,
            left + series.len() as f64 * group_w,
            left - 6.0,
            yy + 4.0
        )?;
        e += 1;
    }
    for (i, (x, st)) in series.iter().zip(&stats).enumerate() {
        let gx = left + i as f64 * group_w + 20.0;
        for (j, (min, med, max)) in st.iter().enumerate() {
            let bx = gx + j as f64 * (bar_w + 8.0);
            let (ym, base) = (y(*med), top + ph);
            writeln!(
                s,
                r#"<rect x="{bx}" y="{ym}" width="{bar_w}" height="{}" fill="{}"/>"#,
                (base - ym).max(0.0),
                colours[j]
            )?;
            let cx = bx + bar_w / 2.0;
            writeln!(
                s,
                r#"<line x1="{cx}" y1="{}" x2="{cx}" y2="{}" stroke="black"/>"#,
                y(*min),
                y(*max)
            )?;
            writeln!(
                s,
                r#"<text x="{cx}" y="{}" text-anchor="middle" font-size="10">{}</text>"#,
                y(*max) - 4.0,
                short(*med)
            )?;
        }
        // The label above, the server version (if any) on a second line: names are long.
        let cx = gx + bar_w + 4.0;
        let (label, version) = x.name.split_once(' ').unwrap_or((&x.name, ""));
        writeln!(
            s,
            r#"<text x="{cx}" y="{}" text-anchor="middle">{label}<tspan x="{cx}" dy="13">{version}</tspan></text>"#,
            top + ph + 18.0,
        )?;
    }
    let lx = left + series.len() as f64 * group_w + 20.0;
    for (j, label) in ["publish (acked)", "consume (acked)"].iter().enumerate() {
        let ly = top + 20.0 + j as f64 * 18.0;
        writeln!(
            s,
            r#"<rect x="{lx}" y="{}" width="12" height="12" fill="{}"/><text x="{}" y="{}">{label}</text>"#,
            ly - 10.0,
            colours[j],
            lx + 18.0,
            ly
        )?;
    }
    writeln!(s, "</svg>")?;
    Ok(s)
}

/// `191k`, `4.5k`, `870`.
fn short(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if v >= 1000.0 {
        format!("{:.1}k", v / 1000.0)
    } else {
        format!("{v:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(label: &str, version: &str, publish: f64, consume: f64) -> String {
        let system = if label == "palio" {
            "palio"
        } else {
            "jetstream"
        };
        format!(
            r#"{{"system":"{system}","label":"{label}","server_version":"{version}","ack_after":"x","count":10,"producers":1,"payload_bytes":128,"attributes":4,"batch":256,"publish_window":4096,"publish_secs":1.0,"publish_msgs_per_s":{publish},"consume_secs":1.0,"consume_msgs_per_s":{consume},"consumed":10,"fetches":1,"data_dir_bytes":0}}"#
        )
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(min_median_max(&[3.0, 1.0, 2.0]), Some((1.0, 2.0, 3.0)));
        assert_eq!(min_median_max(&[4.0, 1.0, 2.0, 3.0]), Some((1.0, 2.5, 4.0)));
        assert_eq!(min_median_max(&[]), None);
    }

    #[test]
    fn ratios_are_taken_within_rounds() {
        let text = [
            line("jetstream", "v2.9.10", 100.0, 10.0),
            line("palio", "0.1.0", 300.0, 20.0),
            line("jetstream", "v2.9.10", 200.0, 10.0),
            line("palio", "0.1.0", 300.0, 40.0),
        ]
        .join("\n");
        let series = read_series(&text).unwrap();
        assert_eq!(series[0].name, "palio", "palio comes first");
        assert_eq!(series[1].name, "jetstream v2.9.10");
        assert_eq!(ratios(&series[0].publish, &series[1].publish), [3.0, 1.5]);
        let table = markdown(&series);
        assert!(
            table.contains("| jetstream v2.9.10 | 2 | 1.50 / **2.25** / 3.00 |"),
            "{table}"
        );
    }

    #[test]
    fn the_chart_names_every_system() {
        let text = [
            line("palio", "0.1.0", 300.0, 20.0),
            line("jetstream-sync-always", "v2.15.1", 4000.0, 50000.0),
        ]
        .join("\n");
        let svg = render_svg(&read_series(&text).unwrap()).unwrap();
        assert!(svg.contains(">palio<") && svg.contains(">jetstream-sync-always<"));
        assert!(svg.contains(">v2.15.1</tspan>"));
        assert!(svg.ends_with("</svg>\n"));
    }

    #[test]
    fn a_bad_line_is_reported_with_its_number() {
        let text = format!("{}\nnot json", line("palio", "0.1.0", 1.0, 1.0));
        let e = read_series(&text).unwrap_err().to_string();
        assert!(e.starts_with("line 2"), "{e}");
    }
}
