//! Interleaved `pubsub --json` runs summarised per scenario: min/median/max of throughput,
//! loss and latency per system, and each system's ratio to the first (the baseline), taken
//! within a round before its min/median/max so that a slow spell of the shared machine
//! affects both sides of a ratio.
//!
//! Lines are grouped by their `scenario` tag (or, untagged, by brokers and rate) and `system`
//! tag (untagged: `palio`), in order of first appearance. Runs pair up by their `round` tag,
//! or by position when untagged.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::{Context, bail};

use super::PubsubReport;
use crate::persistence::summary::min_median_max;

/// One scenario: its runs by system.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// The scenario's name.
    pub name: String,
    /// `(system, runs in order)`, systems in order of first appearance.
    pub systems: Vec<(String, Vec<PubsubReport>)>,
}

/// The scenario of a report: its tag, or brokers and rate.
fn scenario_of(r: &PubsubReport) -> String {
    r.scenario.clone().unwrap_or_else(|| {
        let rate = r.rate.map_or("unlimited".to_owned(), |x| format!("{x}/s"));
        format!("{} broker(s), {rate}", r.brokers)
    })
}

/// Parses `pubsub --json` lines into scenarios, in order of first appearance.
pub fn read(text: &str) -> anyhow::Result<Vec<Scenario>> {
    let mut out: Vec<Scenario> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let r: PubsubReport =
            serde_json::from_str(line).with_context(|| format!("line {}", i + 1))?;
        let name = scenario_of(&r);
        let system = r.system.clone().unwrap_or_else(|| "palio".into());
        let idx = match out.iter().position(|s| s.name == name) {
            Some(i) => i,
            None => {
                out.push(Scenario {
                    name,
                    systems: Vec::new(),
                });
                out.len() - 1
            }
        };
        let systems = &mut out[idx].systems;
        match systems.iter_mut().find(|(s, _)| *s == system) {
            Some((_, runs)) => runs.push(r),
            None => systems.push((system, vec![r])),
        }
    }
    if out.is_empty() {
        bail!("no runs to summarise");
    }
    Ok(out)
}

/// Whether every run has a `round` tag and no tag repeats.
fn distinct_rounds(runs: &[PubsubReport]) -> bool {
    let mut seen = std::collections::BTreeSet::new();
    runs.iter().all(|r| r.round.is_some_and(|k| seen.insert(k)))
}

/// `f(a) / f(b)` for runs of the same round: by `round` tag, or by position when the tags are
/// missing or repeat (two comparisons appended to one file).
pub fn paired_ratios(
    a: &[PubsubReport],
    b: &[PubsubReport],
    f: impl Fn(&PubsubReport) -> f64,
) -> Vec<f64> {
    let tagged = distinct_rounds(a) && distinct_rounds(b);
    let pairs: Vec<(&PubsubReport, &PubsubReport)> = if tagged {
        let by_round: BTreeMap<u32, &PubsubReport> =
            b.iter().filter_map(|r| Some((r.round?, r))).collect();
        a.iter()
            .filter_map(|x| Some((x, *by_round.get(&x.round?)?)))
            .collect()
    } else {
        a.iter().zip(b).collect()
    };
    pairs
        .into_iter()
        .filter(|(_, y)| f(y) > 0.0)
        .map(|(x, y)| f(x) / f(y))
        .collect()
}

fn values(runs: &[PubsubReport], f: impl Fn(&PubsubReport) -> f64) -> Vec<f64> {
    runs.iter().map(f).collect()
}

fn median(v: &[f64]) -> Option<f64> {
    min_median_max(v).map(|t| t.1)
}

fn fmt_mmm(v: &[f64], decimals: usize) -> String {
    match min_median_max(v) {
        Some((lo, mid, hi)) => format!("{lo:.decimals$} / **{mid:.decimals$}** / {hi:.decimals$}"),
        None => "–".into(),
    }
}

fn fmt_opt(v: Option<f64>, decimals: usize) -> String {
    v.map_or("–".into(), |x| format!("{x:.decimals$}"))
}

/// Loss as a percentage with enough digits to tell 0 from a handful.
fn pct(x: f64) -> String {
    if x == 0.0 {
        "0".into()
    } else {
        format!("{:.3}", x * 100.0)
    }
}

fn msgs(r: &PubsubReport) -> f64 {
    r.msgs_per_sec
}

fn p99(r: &PubsubReport) -> f64 {
    r.latency_us.p99 as f64
}

/// The markdown: one overview table (medians and median ratios), then a table per scenario.
pub fn markdown(scenarios: &[Scenario]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| scenario | system | runs | msgs/s median | ÷ {} (median of rounds) | loss % median / max | p99 µs median | p99 ÷ {} |",
        baseline_name(scenarios),
        baseline_name(scenarios)
    );
    let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|---:|");
    for sc in scenarios {
        let Some((_, base)) = sc.systems.first() else {
            continue;
        };
        for (system, runs) in &sc.systems {
            let loss = values(runs, |r| r.loss);
            let (ratio, p99_ratio) = if std::ptr::eq(runs, base) {
                ("1".to_owned(), "1".to_owned())
            } else {
                (
                    fmt_opt(median(&paired_ratios(runs, base, msgs)), 2),
                    fmt_opt(median(&paired_ratios(runs, base, p99)), 2),
                )
            };
            let _ = writeln!(
                s,
                "| {} | {system} | {} | {} | {ratio} | {} / {} | {} | {p99_ratio} |",
                sc.name,
                runs.len(),
                fmt_opt(median(&values(runs, msgs)), 0),
                median(&loss).map_or("–".into(), pct),
                min_median_max(&loss).map_or("–".into(), |t| pct(t.2)),
                fmt_opt(median(&values(runs, p99)), 0),
            );
        }
    }
    for sc in scenarios {
        let _ = writeln!(s);
        let _ = writeln!(s, "### {}", sc.name);
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "| system | runs | msgs/s min / **median** / max | loss % min / median / max | p50 µs | p99 µs min / **median** / max | p99.9 µs | max µs | dropped (all runs) | ingress waits (median) | CPU µs/msg: brokers / pub / sub (medians) |"
        );
        let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|");
        for (system, runs) in &sc.systems {
            let loss = values(runs, |r| r.loss);
            let loss_txt = min_median_max(&loss).map_or("–".into(), |(a, b, c)| {
                format!("{} / {} / {}", pct(a), pct(b), pct(c))
            });
            let mut dropped: BTreeMap<String, u64> = BTreeMap::new();
            for r in runs {
                for b in &r.per_broker {
                    for (reason, n) in &b.dropped {
                        *dropped.entry(format!("{}:{reason}", b.broker)).or_default() += n;
                    }
                }
            }
            let dropped_txt = if dropped.values().all(|n| *n == 0) {
                "0".to_owned()
            } else {
                dropped
                    .iter()
                    .filter(|(_, n)| **n > 0)
                    .map(|(k, n)| format!("{k} {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let cpu = |f: fn(&PubsubReport) -> Option<f64>| {
                let v: Vec<f64> = runs.iter().filter_map(f).collect();
                fmt_opt(median(&v), 2)
            };
            let cpu_txt = format!(
                "{} / {} / {}",
                cpu(|r| r.broker_cpu_us_per_msg),
                cpu(|r| r.publisher_cpu_us_per_msg),
                cpu(|r| r.subscriber_cpu_us_per_msg)
            );
            let _ = writeln!(
                s,
                "| {system} | {} | {} | {loss_txt} | {} | {} | {} | {} | {dropped_txt} | {} | {cpu_txt} |",
                runs.len(),
                fmt_mmm(&values(runs, msgs), 0),
                fmt_opt(median(&values(runs, |r| r.latency_us.p50 as f64)), 0),
                fmt_mmm(&values(runs, p99), 0),
                fmt_opt(median(&values(runs, |r| r.latency_us.p999 as f64)), 0),
                fmt_opt(median(&values(runs, |r| r.latency_us.max as f64)), 0),
                fmt_opt(median(&values(runs, |r| r.ingress_waits_total as f64)), 0),
            );
        }
        if let Some((base_name, base)) = sc.systems.first() {
            for (system, runs) in sc.systems.iter().skip(1) {
                let broker_cpu = |r: &PubsubReport| r.broker_cpu_us_per_msg.unwrap_or(0.0);
                let _ = writeln!(
                    s,
                    "| {system} ÷ {base_name} | {} | {} | | | {} | | | | | brokers {} |",
                    paired_ratios(runs, base, msgs).len(),
                    fmt_mmm(&paired_ratios(runs, base, msgs), 2),
                    fmt_mmm(&paired_ratios(runs, base, p99), 2),
                    fmt_mmm(&paired_ratios(runs, base, broker_cpu), 2),
                );
            }
        }
    }
    s
}

fn baseline_name(scenarios: &[Scenario]) -> String {
    scenarios
        .first()
        .and_then(|s| s.systems.first())
        .map_or_else(|| "baseline".into(), |(n, _)| n.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pubsub::Latency;

    fn run(system: &str, scenario: &str, round: u32, rate: f64, p99: u64, loss: f64) -> String {
        let r = PubsubReport {
            mode: "processes".into(),
            system: Some(system.into()),
            scenario: Some(scenario.into()),
            round: Some(round),
            broker_bin: None,
            brokers: 1,
            payload_bytes: 128,
            attributes: 4,
            rate: None,
            published: 100,
            received: 100,
            loss,
            msgs_per_sec: rate,
            publish_msgs_per_sec: rate,
            max_behind_schedule_us: 0,
            out_of_order: 0,
            duplicates: 0,
            dropped_total: 0,
            ingress_waits_total: 0,
            broker_cpu_us_per_msg: None,
            publisher_cpu_us_per_msg: None,
            subscriber_cpu_us_per_msg: None,
            per_broker: Vec::new(),
            latency_us: Latency {
                p99,
                ..Latency::default()
            },
        };
        serde_json::to_string(&r).unwrap()
    }

    #[test]
    fn runs_group_by_scenario_and_system_and_ratios_pair_by_round() {
        // Round 2 of `after` failed: its ratio pairs round 1 and 3 only.
        let text = [
            run("before", "one", 1, 100.0, 1000, 0.02),
            run("after", "one", 1, 150.0, 500, 0.0),
            run("before", "two", 1, 10.0, 9, 0.0),
            run("before", "one", 2, 50.0, 1000, 0.01),
            run("before", "one", 3, 200.0, 1000, 0.03),
            run("after", "one", 3, 200.0, 2000, 0.0),
        ]
        .join("\n");
        let sc = read(&text).unwrap();
        assert_eq!(
            sc.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            ["one", "two"]
        );
        let one = &sc[0];
        assert_eq!(one.systems[0].0, "before");
        assert_eq!(one.systems[0].1.len(), 3);
        assert_eq!(one.systems[1].1.len(), 2);
        let r = paired_ratios(&one.systems[1].1, &one.systems[0].1, msgs);
        assert_eq!(r, vec![1.5, 1.0]);
        let md = markdown(&sc);
        // Overview: after's median rate 175, ratio median 1.25, p99 ratio median (0.5+2)/2.
        assert!(
            md.contains("| one | after | 2 | 175 | 1.25 | 0 / 0 | 1250 | 1.25 |"),
            "{md}"
        );
        assert!(
            md.contains("| one | before | 3 | 100 | 1 | 2.000 / 3.000 | 1000 | 1 |"),
            "{md}"
        );
        assert!(md.contains("### two"), "{md}");
    }

    #[test]
    fn repeated_round_tags_pair_by_position() {
        // Two 1-round comparisons appended: both are round 1.
        let text = [
            run("before", "one", 1, 100.0, 10, 0.0),
            run("after", "one", 1, 200.0, 10, 0.0),
            run("before", "one", 1, 50.0, 10, 0.0),
            run("after", "one", 1, 300.0, 10, 0.0),
        ]
        .join("\n");
        let sc = read(&text).unwrap();
        let one = &sc[0];
        let r = paired_ratios(&one.systems[1].1, &one.systems[0].1, msgs);
        assert_eq!(r, vec![2.0, 6.0]);
    }

    #[test]
    fn nothing_to_summarise_is_an_error() {
        assert!(read("\n\n").is_err());
        assert!(read("{\"not\": \"a report\"}").is_err());
    }
}
