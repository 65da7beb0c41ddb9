//! A broker's counters after a run, read from its admin listener's `/metrics` (Prometheus text
//! format) with a plain HTTP/1.1 GET, every step bounded by a timeout.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use super::Counts;

/// The counters the report keeps besides drops and ingress waits (without the `palio_` prefix;
/// labelled ones are summed over their labels).
pub const COUNTERS: &[&str] = &[
    "notifications_published_total",
    "notifications_forwarded_total",
    "notifications_received_total",
    "notifications_delivered_total",
    "slow_consumer_disconnects_total",
    "peer_link_stalls_total",
    "writer_failures_total",
];

/// One broker's counters.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct BrokerMetrics {
    /// The broker's name.
    pub broker: String,
    /// `palio_notifications_dropped_total` by `reason` (absent reasons never dropped).
    pub dropped: Counts,
    /// `palio_ingress_waits_total` by `ingress` (`client`, `peer`): flow control pausing an
    /// ingress. Brokers before the lossless redesign have no such counter.
    pub ingress_waits: Counts,
    /// The [`COUNTERS`] the broker exports.
    pub counters: Counts,
    /// CPU seconds the broker process used during the measured part of the run (from
    /// `/proc/<pid>/stat`, 10 ms resolution: the broker's `process_cpu_seconds_total` counts
    /// whole seconds); `None` in-process, where it would be the whole benchmark's.
    #[serde(default)]
    pub cpu_secs: Option<f64>,
}

/// A sample: the metric name, its labels (name, value) and the value.
pub type Sample<'a> = (&'a str, Vec<(&'a str, &'a str)>, f64);

/// One sample line of the Prometheus text format.
pub fn parse_sample(line: &str) -> Option<Sample<'_>> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (series, value) = line.rsplit_once(' ')?;
    let value: f64 = value.parse().ok()?;
    let (name, labels) = match series.split_once('{') {
        None => (series, Vec::new()),
        Some((name, rest)) => {
            let inner = rest.strip_suffix('}')?;
            let labels = inner
                .split("\",")
                .filter(|kv| !kv.is_empty())
                .map(|kv| {
                    let (k, v) = kv.split_once("=\"")?;
                    Some((k.trim(), v.trim_end_matches('"')))
                })
                .collect::<Option<Vec<_>>>()?;
            (name, labels)
        }
    };
    Some((name, labels, value))
}

/// Picks the report's counters out of a `/metrics` page.
pub fn from_text(broker: &str, text: &str) -> BrokerMetrics {
    let mut m = BrokerMetrics {
        broker: broker.to_owned(),
        ..BrokerMetrics::default()
    };
    let label = |labels: &[(&str, &str)], key: &str| {
        labels
            .iter()
            .find(|(k, _)| *k == key)
            .map_or_else(String::new, |(_, v)| (*v).to_owned())
    };
    for (name, labels, value) in text.lines().filter_map(parse_sample) {
        let Some(name) = name.strip_prefix("palio_") else {
            continue;
        };
        // Counters are integers; the text format writes them as floats.
        let value = value.max(0.0) as u64;
        match name {
            "notifications_dropped_total" => {
                *m.dropped.entry(label(&labels, "reason")).or_default() += value;
            }
            "ingress_waits_total" => {
                *m.ingress_waits
                    .entry(label(&labels, "ingress"))
                    .or_default() += value;
            }
            n if COUNTERS.contains(&n) => {
                *m.counters.entry(n.to_owned()).or_default() += value;
            }
            _ => {}
        }
    }
    m
}

/// Reads `/metrics` from the admin listener at `admin` (5 s per step).
pub fn scrape(broker: &str, admin: &str) -> anyhow::Result<BrokerMetrics> {
    let text = http_get(admin, "/metrics", Duration::from_secs(5))
        .with_context(|| format!("reading {broker}'s metrics at http://{admin}/metrics"))?;
    Ok(from_text(broker, &text))
}

/// A minimal HTTP/1.1 GET: the body of a 200 answer.
pub fn http_get(addr: &str, path: &str, timeout: Duration) -> anyhow::Result<String> {
    let sock = addr
        .to_socket_addrs()?
        .next()
        .with_context(|| format!("no address for {addr}"))?;
    let mut s = TcpStream::connect_timeout(&sock, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("not an HTTP response")?;
    let status = head.split(' ').nth(1).unwrap_or_default();
    if status != "200" {
        bail!("GET {path}: status {status}");
    }
    Ok(body.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = r#"# HELP palio_notifications_dropped_total Notifications dropped, by reason.
# TYPE palio_notifications_dropped_total counter
palio_notifications_dropped_total{reason="peer_queue_full"} 1234
palio_notifications_dropped_total{reason="slow_consumer"} 5
palio_ingress_waits_total{ingress="client"} 77
palio_ingress_waits_total{ingress="peer"} 3
palio_notifications_delivered_total 200001
palio_writer_failures_total{role="subscriber",reason="stalled"} 1
palio_writer_failures_total{role="peer",reason="reset"} 2
palio_routing_table_entries 4
process_cpu_seconds_total 1.5
"#;

    #[test]
    fn the_report_keeps_drops_waits_and_counters_by_label() {
        let m = from_text("b0", PAGE);
        assert_eq!(m.broker, "b0");
        assert_eq!(m.dropped.get("peer_queue_full"), Some(&1234));
        assert_eq!(m.dropped.get("slow_consumer"), Some(&5));
        assert_eq!(m.ingress_waits.get("client"), Some(&77));
        assert_eq!(m.ingress_waits.get("peer"), Some(&3));
        assert_eq!(
            m.counters.get("notifications_delivered_total"),
            Some(&200_001)
        );
        assert_eq!(m.counters.get("writer_failures_total"), Some(&3));
        assert!(!m.counters.contains_key("routing_table_entries"));
        assert_eq!(m.cpu_secs, None);
    }

    #[test]
    fn samples_parse_with_and_without_labels_and_comments_do_not() {
        assert_eq!(
            parse_sample(r#"x_total{a="1",b="two"} 3"#),
            Some(("x_total", vec![("a", "1"), ("b", "two")], 3.0))
        );
        assert_eq!(parse_sample("y 1e3"), Some(("y", vec![], 1000.0)));
        assert_eq!(parse_sample("# TYPE y counter"), None);
        assert_eq!(parse_sample("garbage"), None);
    }
}
