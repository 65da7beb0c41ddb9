//! The one JSON object `palio-bench compare` prints: medians over the runs of each system, the
//! ratio Palio / peer, losses, latency percentiles, and every run's figures (for min/max).

use serde::{Deserialize, Serialize};

use super::run::{RunRecord, RunSpec};
use super::{CompareConfig, Scenario};
use crate::persistence::PersistenceReport;

/// One system's figures, one entry per run in the order they ran.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Runs {
    /// Delivered messages per second (persistent: acked publications per second).
    pub msgs_per_s: Vec<f64>,
    /// Messages lost.
    pub lost: Vec<u64>,
    /// Latency percentiles, µs (empty for the persistent scenario).
    pub p50_us: Vec<u64>,
    /// See `p50_us`.
    pub p99_us: Vec<u64>,
    /// See `p50_us`.
    pub p999_us: Vec<u64>,
    /// The servers' CPU time per published message, µs.
    pub server_cpu_us_per_msg: Vec<f64>,
    /// Persistent only: consumed and acked messages per second.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub consume_msgs_per_s: Vec<f64>,
}

impl Runs {
    fn of(records: &[RunRecord]) -> Self {
        Runs {
            msgs_per_s: records.iter().map(|r| r.msgs_per_s).collect(),
            lost: records.iter().map(|r| r.lost).collect(),
            p50_us: records.iter().map(|r| r.latency_us.p50).collect(),
            p99_us: records.iter().map(|r| r.latency_us.p99).collect(),
            p999_us: records.iter().map(|r| r.latency_us.p999).collect(),
            server_cpu_us_per_msg: records
                .iter()
                .filter_map(|r| r.server_cpu_us_per_msg)
                .collect(),
            consume_msgs_per_s: Vec::new(),
        }
    }

    fn of_persistence(reports: &[PersistenceReport]) -> Self {
        Runs {
            msgs_per_s: reports.iter().map(|r| r.publish_msgs_per_s).collect(),
            lost: reports.iter().map(|_| 0).collect(),
            consume_msgs_per_s: reports.iter().map(|r| r.consume_msgs_per_s).collect(),
            ..Runs::default()
        }
    }
}

/// A point of the latency sweep.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SweepPoint {
    /// Percent of the maximum rate.
    pub load_pct: u32,
    /// The offered rate, messages per second.
    pub rate: u64,
    /// Medians over the runs, µs.
    pub palio_p50_us: u64,
    /// See `palio_p50_us`.
    pub palio_p99_us: u64,
    /// See `palio_p50_us`.
    pub palio_p999_us: u64,
    /// See `palio_p50_us`.
    pub peer_p50_us: u64,
    /// See `palio_p50_us`.
    pub peer_p99_us: u64,
    /// See `palio_p50_us`.
    pub peer_p999_us: u64,
    /// Messages lost, all runs.
    pub palio_lost: u64,
    /// See `palio_lost`.
    pub peer_lost: u64,
}

impl SweepPoint {
    /// The point at `load_pct` % (`rate`/s) from that load's summary.
    pub fn of(load_pct: u32, rate: u64, s: &Summary) -> Self {
        SweepPoint {
            load_pct,
            rate,
            palio_p50_us: s.palio_p50_us.unwrap_or(0),
            palio_p99_us: s.palio_p99_us.unwrap_or(0),
            palio_p999_us: s.palio_p999_us.unwrap_or(0),
            peer_p50_us: s.peer_p50_us.unwrap_or(0),
            peer_p99_us: s.peer_p99_us.unwrap_or(0),
            peer_p999_us: s.peer_p999_us.unwrap_or(0),
            palio_lost: s.palio_lost,
            peer_lost: s.peer_lost,
        }
    }
}

/// What a comparison prints.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    /// The scenario's name.
    pub scenario: String,
    /// The peer's name.
    pub peer: String,
    /// Payload bytes.
    pub size: usize,
    /// Messages published per run.
    pub messages: u64,
    /// The offered rate (latency: the 100 % rate), if paced.
    pub rate: Option<u64>,
    /// Runs of each system.
    pub runs: usize,
    /// Servers, publishers and subscribers per run.
    pub servers: usize,
    /// See `servers`.
    pub publishers: usize,
    /// See `servers`.
    pub subscribers: usize,
    /// Median of Palio's runs (latency: at 50 % load).
    pub palio_msgs_per_s: f64,
    /// Median of the peer's runs.
    pub peer_msgs_per_s: f64,
    /// `palio_msgs_per_s / peer_msgs_per_s`.
    pub ratio: f64,
    /// Messages Palio lost, all runs together.
    pub palio_lost: u64,
    /// Messages the peer lost, all runs together.
    pub peer_lost: u64,
    /// Medians over the runs, µs (`null` for the persistent scenario).
    pub palio_p50_us: Option<u64>,
    /// See `palio_p50_us`.
    pub palio_p99_us: Option<u64>,
    /// See `palio_p50_us`.
    pub palio_p999_us: Option<u64>,
    /// See `palio_p50_us`.
    pub peer_p50_us: Option<u64>,
    /// See `palio_p50_us`.
    pub peer_p99_us: Option<u64>,
    /// See `palio_p50_us`.
    pub peer_p999_us: Option<u64>,
    /// Persistent only: medians of the consume rates, and their ratio.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub palio_consume_msgs_per_s: Option<f64>,
    /// See `palio_consume_msgs_per_s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_consume_msgs_per_s: Option<f64>,
    /// See `palio_consume_msgs_per_s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consume_ratio: Option<f64>,
    /// Per-round ratios (Palio's run / the peer's run that followed it).
    pub ratios: Vec<f64>,
    /// Palio's runs.
    pub palio: Runs,
    /// The peer's runs.
    pub peer_runs: Runs,
    /// Latency only: every load's medians.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sweep: Option<Vec<SweepPoint>>,
}

impl Summary {
    /// The summary of a publish/subscribe comparison.
    pub fn new(
        config: &CompareConfig,
        spec: &RunSpec,
        palio: &[RunRecord],
        peer: &[RunRecord],
    ) -> Self {
        let (a, b) = (Runs::of(palio), Runs::of(peer));
        let latency = |v: &[u64]| median_u64(v);
        Summary {
            scenario: config.scenario.name().into(),
            peer: config.peer.name().into(),
            size: config.size,
            messages: spec.messages,
            rate: spec.rate,
            runs: palio.len(),
            servers: spec.servers,
            publishers: spec.publishers,
            subscribers: spec.subscribers,
            palio_msgs_per_s: median(&a.msgs_per_s),
            peer_msgs_per_s: median(&b.msgs_per_s),
            ratio: ratio(median(&a.msgs_per_s), median(&b.msgs_per_s)),
            palio_lost: a.lost.iter().sum(),
            peer_lost: b.lost.iter().sum(),
            palio_p50_us: latency(&a.p50_us),
            palio_p99_us: latency(&a.p99_us),
            palio_p999_us: latency(&a.p999_us),
            peer_p50_us: latency(&b.p50_us),
            peer_p99_us: latency(&b.p99_us),
            peer_p999_us: latency(&b.p999_us),
            palio_consume_msgs_per_s: None,
            peer_consume_msgs_per_s: None,
            consume_ratio: None,
            ratios: a
                .msgs_per_s
                .iter()
                .zip(&b.msgs_per_s)
                .map(|(x, y)| ratio(*x, *y))
                .collect(),
            palio: a,
            peer_runs: b,
            sweep: None,
        }
    }

    /// The summary of the persistent comparison.
    pub fn persistent(
        config: &CompareConfig,
        palio: &[PersistenceReport],
        peer: &[PersistenceReport],
    ) -> Self {
        let (a, b) = (Runs::of_persistence(palio), Runs::of_persistence(peer));
        let (ca, cb) = (median(&a.consume_msgs_per_s), median(&b.consume_msgs_per_s));
        Summary {
            scenario: Scenario::Persistent.name().into(),
            peer: config.peer.name().into(),
            size: config.size,
            messages: config.messages(),
            rate: None,
            runs: palio.len(),
            servers: 1,
            publishers: 1,
            subscribers: 1,
            palio_msgs_per_s: median(&a.msgs_per_s),
            peer_msgs_per_s: median(&b.msgs_per_s),
            ratio: ratio(median(&a.msgs_per_s), median(&b.msgs_per_s)),
            palio_lost: 0,
            peer_lost: 0,
            palio_p50_us: None,
            palio_p99_us: None,
            palio_p999_us: None,
            peer_p50_us: None,
            peer_p99_us: None,
            peer_p999_us: None,
            palio_consume_msgs_per_s: Some(ca),
            peer_consume_msgs_per_s: Some(cb),
            consume_ratio: Some(ratio(ca, cb)),
            ratios: a
                .msgs_per_s
                .iter()
                .zip(&b.msgs_per_s)
                .map(|(x, y)| ratio(*x, *y))
                .collect(),
            palio: a,
            peer_runs: b,
            sweep: None,
        }
    }
}

/// The median (mean of the middle two for an even count); 0 for none.
pub fn median(v: &[f64]) -> f64 {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => 0.0,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

fn median_u64(v: &[u64]) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    let f: Vec<f64> = v.iter().map(|&x| x as f64).collect();
    Some(median(&f).round() as u64)
}

/// `a / b`, 0 when `b` is 0.
pub fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
        assert_eq!(median_u64(&[10, 30, 20]), Some(20));
        assert_eq!(median_u64(&[]), None);
        assert_eq!(ratio(3.0, 0.0), 0.0);
        assert_eq!(ratio(3.0, 1.5), 2.0);
    }
}
