//! The publish/subscribe benchmark: one publisher at the first broker of a line, one subscriber
//! at the last, over loopback QUIC.
//!
//! Two ways to run it:
//!
//! - [`processes`] (the default of `palio-bench pubsub`): every broker is a `palio-broker`
//!   process, and the publisher and the subscriber are `palio-bench pubsub-worker` processes
//!   ([`worker`]), as users run them. Nothing is shared but the machine.
//! - [`run`] (`--in-process`): brokers, publisher and subscriber in this process, on one tokio
//!   runtime. Cheaper to start, but the processes share an allocator, a scheduler and caches,
//!   which hides costs a deployment pays.
//!
//! Each notification carries [`ATTRIBUTES`] attributes (`type = 'bench'`, an integer `seq`,
//! `source = 'palio-bench'` and an integer `shard`) and a payload whose first 8 bytes are the
//! send time: microseconds since the UNIX epoch from the system clock ([`unix_micros`]), which
//! every process on one machine reads alike, so the subscriber measures end-to-end latency
//! (publish call → SDK → QUIC → broker(s) → QUIC → SDK stream) without sharing memory with the
//! publisher. (A clock step during a run would skew it; NTP slewing changes it by parts per
//! million.) The subscriber counts what it receives, checks the order of `seq`, and reports
//! throughput as notifications received per second between its first receipt and its last.
//! Each broker's counters (drops by reason, ingress waits) are read from its `/metrics`
//! afterwards ([`metrics`]).

pub mod metrics;
pub mod processes;
pub mod summary;
pub mod worker;

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use palio::{Client, ConnectOptions, Notification};
use palio_broker::{Server, Settings};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use metrics::BrokerMetrics;

/// Attributes per notification: `type`, `seq`, `source`, `shard`.
pub const ATTRIBUTES: usize = 4;

/// The subscription: matches every benchmark notification (exact routable form).
pub const FILTER: &str = "type = 'bench'";

/// The `seq` of route probes, which the subscriber does not count.
pub const PROBE_SEQ: i32 = -1;

/// What to run.
#[derive(Debug, Clone)]
pub struct PubsubConfig {
    /// Brokers in the line (1 = publisher and subscriber on the same broker).
    pub brokers: usize,
    /// Notifications to publish.
    pub count: u64,
    /// Payload size in bytes (at least 8).
    pub payload_bytes: usize,
    /// Publications per second; `None` publishes as fast as flow control allows.
    pub rate: Option<u64>,
    /// Publish to and receive from an ordered group of this order (created before the run)
    /// instead of best-effort publish/subscribe.
    pub group: Option<palio::GroupOrder>,
}

/// The name of the group a grouped run uses.
pub const GROUP: &str = "bench";

impl PubsubConfig {
    /// Refuses what cannot run.
    pub fn check(&self) -> anyhow::Result<()> {
        if self.brokers == 0 || self.payload_bytes < 8 {
            bail!("need at least one broker and 8 payload bytes");
        }
        if i32::try_from(self.count).is_err() {
            bail!("at most {} notifications per run", i32::MAX);
        }
        if self.rate == Some(0) {
            bail!("a rate must be positive");
        }
        Ok(())
    }
}

/// The outcome of one run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PubsubReport {
    /// `processes` or `in-process`.
    #[serde(default)]
    pub mode: String,
    /// A label for the build under test (`before`, `after`), if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// A label for the scenario, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scenario: Option<String>,
    /// The round of an interleaved comparison, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub round: Option<u32>,
    /// The broker executable (processes mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker_bin: Option<String>,
    /// Brokers in the line.
    pub brokers: usize,
    /// Payload size.
    pub payload_bytes: usize,
    /// Attributes per notification.
    #[serde(default)]
    pub attributes: usize,
    /// Target rate, if paced.
    pub rate: Option<u64>,
    /// Notifications published.
    pub published: u64,
    /// Distinct notifications received.
    pub received: u64,
    /// Fraction lost: (published − received) / published.
    pub loss: f64,
    /// Received per second, between the first receipt and the last.
    pub msgs_per_sec: f64,
    /// Published per second, from the first publication until the broker confirmed the last
    /// (the publisher's `flush`).
    #[serde(default)]
    pub publish_msgs_per_sec: f64,
    /// Paced runs: how far, at most, the publisher fell behind its schedule, in microseconds
    /// (flow control holding it back, or the machine being busy). Latency is measured from
    /// the actual send, so this lateness is not in it.
    #[serde(default)]
    pub max_behind_schedule_us: u64,
    /// Notifications that arrived after one with a higher `seq`.
    #[serde(default)]
    pub out_of_order: u64,
    /// Notifications that arrived more than once.
    #[serde(default)]
    pub duplicates: u64,
    /// Notifications dropped, summed over the brokers and reasons.
    #[serde(default)]
    pub dropped_total: u64,
    /// Times an ingress paused for a full outbox, summed over the brokers.
    #[serde(default)]
    pub ingress_waits_total: u64,
    /// CPU time per published notification, summed over the broker processes, in µs
    /// (processes mode).
    #[serde(default)]
    pub broker_cpu_us_per_msg: Option<f64>,
    /// The publisher process's CPU time per published notification, µs (processes mode).
    #[serde(default)]
    pub publisher_cpu_us_per_msg: Option<f64>,
    /// The subscriber process's CPU time per received notification, µs (processes mode).
    #[serde(default)]
    pub subscriber_cpu_us_per_msg: Option<f64>,
    /// Each broker's counters after the run, first to last.
    #[serde(default)]
    pub per_broker: Vec<BrokerMetrics>,
    /// Latency percentiles in microseconds.
    pub latency_us: Latency,
}

/// Latency percentiles, microseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Latency {
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Maximum.
    pub max: u64,
}

impl Latency {
    /// The percentiles of a histogram (all zero if it is empty).
    pub fn of(hist: &Histogram<u64>) -> Self {
        if hist.is_empty() {
            return Self::default();
        }
        Self {
            p50: hist.value_at_quantile(0.5),
            p90: hist.value_at_quantile(0.9),
            p99: hist.value_at_quantile(0.99),
            p999: hist.value_at_quantile(0.999),
            max: hist.max(),
        }
    }
}

/// An empty latency histogram: 1 µs to 10 minutes, 3 significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("valid bounds")
}

/// Microseconds since the UNIX epoch on the system clock: the send time the publisher writes
/// into the payload and the subscriber subtracts from its own reading. All processes on one
/// machine read the same clock.
pub fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Benchmark notification number `seq` with `payload` (whose first 8 bytes the caller has set
/// to the send time).
pub fn notification(seq: i32, payload: Vec<u8>) -> anyhow::Result<Notification> {
    Ok(Notification::builder()
        .attr("type", "bench")
        .attr("seq", seq)
        .attr("source", "palio-bench")
        .attr("shard", seq.rem_euclid(16))
        .payload(payload)
        .build()?)
}

/// A route probe: a benchmark notification the subscriber recognises and does not count.
pub fn probe() -> anyhow::Result<Notification> {
    notification(PROBE_SEQ, unix_micros().to_le_bytes().to_vec())
}

/// The send time and `seq` of a received benchmark notification (`None` if it is not one).
pub fn decode(n: &Notification) -> Option<(u64, i32)> {
    let seq = match n.get("seq")? {
        palio::filter::Value::Int(s) => *s,
        _ => return None,
    };
    let stamp: [u8; 8] = n.payload().get(..8)?.try_into().ok()?;
    Some((u64::from_le_bytes(stamp), seq))
}

/// Sums a report's broker counters into its totals.
pub fn fill_totals(report: &mut PubsubReport) {
    report.dropped_total = report
        .per_broker
        .iter()
        .flat_map(|b| b.dropped.values())
        .sum();
    report.ingress_waits_total = report
        .per_broker
        .iter()
        .flat_map(|b| b.ingress_waits.values())
        .sum();
}

/// Runs the benchmark in this process on a fresh multi-threaded runtime.
pub fn run(config: &PubsubConfig) -> anyhow::Result<PubsubReport> {
    config.check()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("runtime")?;
    rt.block_on(run_async(config))
}

async fn run_async(config: &PubsubConfig) -> anyhow::Result<PubsubReport> {
    let dir = tempfile::tempdir().context("temp dir")?;
    let tls = dir.path().join("tls");
    let mut stops = Vec::new();
    let mut addrs: Vec<String> = Vec::new();
    let mut admins: Vec<String> = Vec::new();
    for i in 0..config.brokers {
        let mut s = Settings {
            id: Some(format!("bench{i}")),
            listen: "127.0.0.1:0".parse().context("address")?,
            admin: Some("127.0.0.1:0".parse().context("address")?),
            data_dir: dir.path().join(format!("b{i}")),
            ..Settings::default()
        };
        s.tls.dir = Some(tls.clone());
        s.peers = addrs.last().cloned().into_iter().collect();
        let server = Server::bind(s).await?;
        addrs.push(server.local_addr().context("bound")?.to_string());
        admins.push(server.admin_addr().context("admin bound")?.to_string());
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        stops.push(stop);
    }
    let opts = |addr: &str| ConnectOptions::new(addr).tls_dir(&tls);
    let first = addrs.first().context("a broker")?;
    let last = addrs.last().context("a broker")?;
    let publisher = Client::connect(opts(first)).await?;
    let subscriber = Client::connect(opts(last)).await?;
    let mut sub = subscriber.subscribe(FILTER).await?;

    // Wait until the route exists: probes until one arrives, then drain stragglers.
    let mut ready = false;
    for _ in 0..200 {
        publisher.publish(probe()?).await?;
        publisher.flush().await?;
        if tokio::time::timeout(Duration::from_millis(50), sub.next())
            .await
            .is_ok()
        {
            ready = true;
            break;
        }
    }
    if !ready {
        bail!("the route from publisher to subscriber never appeared");
    }
    while tokio::time::timeout(Duration::from_millis(200), sub.next())
        .await
        .is_ok()
    {}

    let count = config.count;
    let receiver = tokio::spawn(async move {
        let mut hist = latency_histogram();
        let mut received = 0u64;
        let mut first = None;
        let mut last = Instant::now();
        while received < count {
            match tokio::time::timeout(Duration::from_secs(3), sub.next()).await {
                Ok(Some(n)) => {
                    if let Some((sent, seq)) = decode(&n)
                        && seq != PROBE_SEQ
                    {
                        hist.saturating_record(unix_micros().saturating_sub(sent).max(1));
                        received += 1;
                        last = Instant::now();
                        first.get_or_insert(last);
                    }
                }
                // Closed, or nothing for 3 s: whatever is missing is lost.
                _ => break,
            }
        }
        (received, first, last, hist, sub)
    });
    let start = Instant::now();
    let mut payload = vec![0u8; config.payload_bytes];
    let interval = config
        .rate
        .map(|r| Duration::from_secs_f64(1.0 / r.max(1) as f64));
    for seq in 0..count {
        if let Some(iv) = interval {
            let due = start + iv.mul_f64(seq as f64);
            tokio::time::sleep_until(due.into()).await;
        }
        payload[..8].copy_from_slice(&unix_micros().to_le_bytes());
        let seq = i32::try_from(seq).context("seq")?;
        publisher
            .publish(notification(seq, payload.clone())?)
            .await?;
    }
    publisher.flush().await?;
    let publish_secs = start.elapsed().as_secs_f64().max(1e-9);
    let (received, first, last, hist, _sub) = receiver.await.context("receiver")?;
    let span = first.map_or(0.0, |f| last.duration_since(f).as_secs_f64());
    let per_broker = admins
        .iter()
        .enumerate()
        .map(|(i, a)| metrics::scrape(&format!("bench{i}"), a))
        .collect::<anyhow::Result<Vec<_>>>()?;
    publisher.close().await;
    subscriber.close().await;
    for s in stops {
        let _ = s.send(());
    }
    let mut report = PubsubReport {
        mode: "in-process".into(),
        system: None,
        scenario: None,
        round: None,
        broker_bin: None,
        brokers: config.brokers,
        payload_bytes: config.payload_bytes,
        attributes: ATTRIBUTES,
        rate: config.rate,
        published: count,
        received,
        loss: loss(count, received),
        msgs_per_sec: rate_over(received, span),
        publish_msgs_per_sec: count as f64 / publish_secs,
        max_behind_schedule_us: 0,
        out_of_order: 0,
        duplicates: 0,
        dropped_total: 0,
        ingress_waits_total: 0,
        broker_cpu_us_per_msg: None,
        publisher_cpu_us_per_msg: None,
        subscriber_cpu_us_per_msg: None,
        per_broker,
        latency_us: Latency::of(&hist),
    };
    fill_totals(&mut report);
    Ok(report)
}

/// (published − received) / published, 0 for nothing published.
pub fn loss(published: u64, received: u64) -> f64 {
    if published == 0 {
        0.0
    } else {
        published.saturating_sub(received) as f64 / published as f64
    }
}

/// Receipts per second over the `span` seconds from the first receipt to the last: the
/// `received − 1` intervals between them (0 when there are fewer than two).
pub fn rate_over(received: u64, span_secs: f64) -> f64 {
    if received < 2 || span_secs <= 0.0 {
        0.0
    } else {
        (received - 1) as f64 / span_secs
    }
}

/// Microseconds of CPU per notification: `secs` over `n` (`None` without either).
pub fn cpu_us_per(secs: Option<f64>, n: u64) -> Option<f64> {
    secs.filter(|_| n > 0).map(|s| s * 1e6 / n as f64)
}

/// Counts by label value, for reports.
pub type Counts = BTreeMap<String, u64>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_benchmark_notification_decodes_to_its_stamp_and_seq() {
        let mut payload = vec![0u8; 128];
        payload[..8].copy_from_slice(&1_234_567u64.to_le_bytes());
        let n = notification(42, payload).unwrap();
        assert_eq!(n.attributes().len(), ATTRIBUTES);
        assert_eq!(decode(&n), Some((1_234_567, 42)));
        let p = probe().unwrap();
        assert_eq!(decode(&p).map(|(_, s)| s), Some(PROBE_SEQ));
    }

    #[test]
    fn rates_count_the_intervals_between_first_and_last_receipt() {
        assert_eq!(rate_over(0, 1.0), 0.0);
        assert_eq!(rate_over(1, 1.0), 0.0);
        assert_eq!(rate_over(101, 0.5), 200.0);
        assert_eq!(loss(200, 150), 0.25);
        assert_eq!(loss(0, 0), 0.0);
    }
}
