//! One run of one system: start its servers, start the subscriber and publisher processes,
//! wait until a route probe reaches every subscriber, let the publishers go, collect the
//! results, stop everything.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, anyhow};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::CompareConfig;
use super::clients::Endpoint;
use super::systems::{PeerKind, Servers};
use super::worker::{PublishResult, ReceiveResult};
use crate::pubsub::Latency;
use crate::pubsub::processes::{SETUP, Worker};

/// The shape and load of a run.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// Servers (more than one: a line of Palio brokers, a NATS cluster).
    pub servers: usize,
    /// Publisher processes; the messages are split between them.
    pub publishers: usize,
    /// Subscriber processes; each receives every message.
    pub subscribers: usize,
    /// Payload bytes.
    pub size: usize,
    /// Messages published in all.
    pub messages: u64,
    /// Messages per second in all, or as fast as possible.
    pub rate: Option<u64>,
    /// The longest the measured part may take.
    pub timeout: Duration,
    /// How long subscribers wait for stragglers.
    pub drain: Duration,
}

/// What one run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    /// Messages published.
    pub published: u64,
    /// Deliveries expected: published × subscribers.
    pub expected: u64,
    /// Distinct deliveries.
    pub received: u64,
    /// `expected − received`.
    pub lost: u64,
    /// Deliveries per second, all subscribers together, from the first receipt anywhere to
    /// the last.
    pub msgs_per_s: f64,
    /// Latency percentiles, the worst subscriber's for each.
    pub latency_us: Latency,
    /// The servers' CPU time per published message, µs.
    pub server_cpu_us_per_msg: Option<f64>,
}

/// Runs `fut`, or fails when this process gets SIGINT or SIGTERM (dropping the run kills its
/// children).
pub async fn interruptible<T>(fut: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::select! {
        r = fut => r,
        s = crate::pubsub::processes::interrupted() => {
            Err(anyhow!("{s}: the run was stopped and its processes killed"))
        }
    }
}

/// One run of Palio (`palio`) or of the peer.
pub async fn run(
    palio: bool,
    kind: PeerKind,
    spec: &RunSpec,
    config: &CompareConfig,
    root: &Path,
) -> anyhow::Result<RunRecord> {
    let dir = tempfile::tempdir_in(root).context("a run directory")?;
    let servers = if palio {
        Servers::palio(&config.broker_bin, dir.path(), spec.servers).await?
    } else {
        Servers::peer(kind, &config.peer_bins, dir.path(), spec.servers).await?
    };
    let result = measure(spec, config, &servers).await;
    let result = result.map_err(|e| servers.diagnose(e));
    servers.stop().await;
    result
}

async fn measure(
    spec: &RunSpec,
    config: &CompareConfig,
    servers: &Servers,
) -> anyhow::Result<RunRecord> {
    let bin = &config.worker_bin;
    let sub_at = servers.subscribe_endpoint()?;
    let pub_at = servers.publish_endpoint()?;
    let mut subs = Vec::new();
    for k in 0..spec.subscribers {
        let mut args = endpoint_args(&sub_at);
        args.extend([
            "--index".into(),
            k.to_string(),
            "--count".into(),
            spec.messages.to_string(),
            "--drain-ms".into(),
            spec.drain.as_millis().to_string(),
        ]);
        let mut w = Worker::spawn(bin, "subscriber", &["compare-worker", "sub"], &args)?;
        w.expect(SETUP, "subscribed", "subscribe").await?;
        subs.push(w);
    }
    let mut pubs = Vec::new();
    let n = spec.publishers as u64;
    for p in 0..n {
        // Publisher p publishes seq first..first+share: the shares add up to the run.
        let first = spec.messages * p / n;
        let share = spec.messages * (p + 1) / n - first;
        let mut args = endpoint_args(&pub_at);
        args.extend([
            "--index".into(),
            p.to_string(),
            "--first-seq".into(),
            first.to_string(),
            "--count".into(),
            share.to_string(),
            "--size".into(),
            spec.size.to_string(),
        ]);
        if let Some(r) = spec.rate {
            args.extend(["--rate".into(), (r / n).max(1).to_string()]);
        }
        let mut w = Worker::spawn(bin, "publisher", &["compare-worker", "pub"], &args)?;
        w.expect(SETUP, "connected", "connect").await?;
        pubs.push(w);
    }
    for s in &mut subs {
        s.expect(SETUP, "probe", "receive a route probe")
            .await
            .context("the route from the publishers to the subscribers never appeared")?;
    }
    let cpu_before = servers.cpu_secs();
    for p in &mut pubs {
        p.send("go").await?;
    }
    let deadline = Instant::now() + spec.timeout;
    let mut published = 0;
    for p in &mut pubs {
        let r: PublishResult = p.result(deadline, "finish publishing").await?;
        published += r.published;
    }
    let cpu = cpu_before.zip(servers.cpu_secs()).map(|(a, b)| b - a);
    let mut results: Vec<ReceiveResult> = Vec::new();
    for s in &mut subs {
        // A subscriber that has everything has already ended and closed its stdin.
        let _ = s.send(&format!("done {published}")).await;
    }
    for s in &mut subs {
        results.push(
            s.result(
                deadline.max(Instant::now()) + spec.drain * 2,
                "finish receiving",
            )
            .await?,
        );
    }
    for w in pubs.into_iter().chain(subs) {
        w.finish().await;
    }
    Ok(record(published, spec.subscribers as u64, &results, cpu))
}

/// The run's figures from the subscribers' results.
pub fn record(
    published: u64,
    subscribers: u64,
    results: &[ReceiveResult],
    server_cpu_secs: Option<f64>,
) -> RunRecord {
    let received: u64 = results.iter().map(|r| r.received).sum();
    let expected = published * subscribers;
    let first = results
        .iter()
        .filter(|r| r.received > 0)
        .map(|r| r.first_us)
        .min();
    let last = results.iter().map(|r| r.last_us).max();
    let span = first.zip(last).map_or(0, |(f, l)| l.saturating_sub(f));
    let worst =
        |f: fn(&Latency) -> u64| results.iter().map(|r| f(&r.latency_us)).max().unwrap_or(0);
    RunRecord {
        published,
        expected,
        received,
        lost: expected.saturating_sub(received),
        msgs_per_s: if span > 0 {
            received as f64 / (span as f64 * 1e-6)
        } else {
            0.0
        },
        latency_us: Latency {
            p50: worst(|l| l.p50),
            p90: worst(|l| l.p90),
            p99: worst(|l| l.p99),
            p999: worst(|l| l.p999),
            max: worst(|l| l.max),
        },
        server_cpu_us_per_msg: server_cpu_secs
            .filter(|_| published > 0)
            .map(|s| s * 1e6 / published as f64),
    }
}

/// The worker flags that say where and with which client to connect.
fn endpoint_args(e: &Endpoint) -> Vec<String> {
    match e {
        Endpoint::Palio { server, tls_dir } => vec![
            "--system".into(),
            "palio".into(),
            "--server".into(),
            server.clone(),
            "--tls-dir".into(),
            tls_dir.display().to_string(),
        ],
        Endpoint::Nats { server, ca } => {
            let mut a = vec![
                "--system".into(),
                "nats".into(),
                "--server".into(),
                server.clone(),
            ];
            if let Some(ca) = ca {
                a.extend(["--ca".into(), ca.display().to_string()]);
            }
            a
        }
        Endpoint::Mqtt { server } => vec![
            "--system".into(),
            "mqtt".into(),
            "--server".into(),
            server.clone(),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(received: u64, first_us: u64, last_us: u64, p99: u64) -> ReceiveResult {
        ReceiveResult {
            received,
            duplicates: 0,
            first_us,
            last_us,
            latency_us: Latency {
                p50: p99 / 2,
                p90: p99,
                p99,
                p999: p99 * 2,
                max: p99 * 3,
            },
            ended: "complete".into(),
            cpu_secs: None,
        }
    }

    #[test]
    fn a_fan_out_counts_every_delivery_over_the_whole_span() {
        // Two subscribers, 1000 published: 2000 expected, 1990 arrived over 0.5 s.
        let r = record(
            1000,
            2,
            &[
                result(1000, 1_000_000, 1_400_000, 300),
                result(990, 1_100_000, 1_500_000, 700),
            ],
            Some(0.002),
        );
        assert_eq!((r.expected, r.received, r.lost), (2000, 1990, 10));
        assert!((r.msgs_per_s - 3980.0).abs() < 1e-6, "{}", r.msgs_per_s);
        assert_eq!(r.latency_us.p99, 700, "the worst subscriber's");
        assert_eq!(r.server_cpu_us_per_msg, Some(2.0));
    }

    #[test]
    fn nothing_received_is_all_lost_and_no_rate() {
        let r = record(500, 1, &[result(0, 0, 0, 0)], None);
        assert_eq!((r.lost, r.msgs_per_s), (500, 0.0));
    }
}
