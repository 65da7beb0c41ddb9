//! The publish/subscribe benchmark: real brokers (in this process, on loopback QUIC), one
//! publisher at the first broker, one subscriber at the last, brokers in a line.
//!
//! Each notification carries `type = 'bench'`, an integer `seq`, and a payload of
//! `payload_bytes` whose first 8 bytes are the send time (microseconds since the run began), so
//! the subscriber measures end-to-end latency: publish call → SDK → QUIC → broker(s) → QUIC →
//! SDK stream. Throughput is notifications received per second between the first publish and
//! the last receipt; loss is published minus received after a drain period (best-effort
//! delivery drops under the slow-consumer policy rather than block the publisher).

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use palio::{Client, ConnectOptions, Notification};
use palio_broker::{Server, Settings};
use serde::Serialize;
use tokio::sync::oneshot;

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
}

/// The outcome.
#[derive(Debug, Clone, Serialize)]
pub struct PubsubReport {
    /// Brokers in the line.
    pub brokers: usize,
    /// Payload size.
    pub payload_bytes: usize,
    /// Target rate, if paced.
    pub rate: Option<u64>,
    /// Notifications published.
    pub published: u64,
    /// Notifications received.
    pub received: u64,
    /// Fraction lost.
    pub loss: f64,
    /// Received per second.
    pub msgs_per_sec: f64,
    /// Notifications dropped at each broker (first to last), by reason, from its `/metrics`.
    pub dropped: Vec<std::collections::BTreeMap<String, u64>>,
    /// Latency percentiles in microseconds.
    pub latency_us: Latency,
}

/// Latency percentiles, microseconds.
#[derive(Debug, Clone, Serialize)]
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

/// Runs the benchmark on a fresh multi-threaded runtime.
pub fn run(config: &PubsubConfig) -> anyhow::Result<PubsubReport> {
    if config.brokers == 0 || config.payload_bytes < 8 {
        bail!("need at least one broker and 8 payload bytes");
    }
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
    let mut sub = subscriber.subscribe("type = 'bench'").await?;

    // Wait until the route exists: probes until one arrives, then drain stragglers.
    let probe = || {
        Notification::builder()
            .attr("type", "bench")
            .attr("seq", -1)
            .payload(vec![0u8; 8])
            .build()
    };
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

    let start = Instant::now();
    let count = config.count;
    let receiver = tokio::spawn(async move {
        let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
        let mut received = 0u64;
        let mut last = start;
        while received < count {
            match tokio::time::timeout(Duration::from_secs(3), sub.next()).await {
                Ok(Some(n)) => {
                    let p = n.payload();
                    if p.len() >= 8 && n.get("seq") != Some(&palio::filter::Value::Int(-1)) {
                        let mut b = [0u8; 8];
                        b.copy_from_slice(&p[..8]);
                        let sent = u64::from_le_bytes(b);
                        let now = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
                        let _ = hist.record(now.saturating_sub(sent).max(1));
                        received += 1;
                        last = Instant::now();
                    }
                }
                // Closed, or nothing for 3 s: whatever is missing is lost.
                _ => break,
            }
        }
        (received, last, hist, sub)
    });
    let mut payload = vec![0u8; config.payload_bytes];
    let interval = config
        .rate
        .map(|r| Duration::from_secs_f64(1.0 / r.max(1) as f64));
    for seq in 0..count {
        if let Some(iv) = interval {
            let due = start + iv.mul_f64(seq as f64);
            tokio::time::sleep_until(due.into()).await;
        }
        let now = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
        payload[..8].copy_from_slice(&now.to_le_bytes());
        let n = Notification::builder()
            .attr("type", "bench")
            .attr("seq", i32::try_from(seq).unwrap_or(i32::MAX))
            .payload(payload.clone())
            .build()?;
        publisher.publish(n).await?;
    }
    publisher.flush().await?;
    let (received, last, hist, _sub) = receiver.await.context("receiver")?;
    let elapsed = last.duration_since(start).as_secs_f64().max(1e-9);
    let dropped = admins
        .iter()
        .map(|a| dropped_by_reason(a))
        .collect::<anyhow::Result<Vec<_>>>()?;
    publisher.close().await;
    subscriber.close().await;
    for s in stops {
        let _ = s.send(());
    }
    Ok(PubsubReport {
        brokers: config.brokers,
        payload_bytes: config.payload_bytes,
        rate: config.rate,
        published: count,
        received,
        loss: if count == 0 {
            0.0
        } else {
            (count - received) as f64 / count as f64
        },
        msgs_per_sec: received as f64 / elapsed,
        dropped,
        latency_us: Latency {
            p50: hist.value_at_quantile(0.5),
            p90: hist.value_at_quantile(0.9),
            p99: hist.value_at_quantile(0.99),
            p999: hist.value_at_quantile(0.999),
            max: hist.max(),
        },
    })
}

/// `palio_notifications_dropped_total` by reason, read from a broker's admin listener.
fn dropped_by_reason(admin: &str) -> anyhow::Result<std::collections::BTreeMap<String, u64>> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(admin).context("admin connect")?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let prefix = "palio_notifications_dropped_total{reason=\"";
    Ok(text
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(prefix)?;
            let (reason, value) = rest.split_once("\"} ")?;
            Some((reason.to_owned(), value.trim().parse::<f64>().ok()? as u64))
        })
        .collect())
}
