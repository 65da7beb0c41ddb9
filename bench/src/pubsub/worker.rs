//! The publisher and the subscriber of the multi-process benchmark: `palio-bench
//! pubsub-worker pub|sub`, started by [`super::processes`], each a process of its own with its
//! own tokio runtime, as an application would be.
//!
//! They talk to the orchestrator with lines: commands on stdin, a few status words on stdout,
//! and finally one JSON object (a line starting with `{`) with the result. When stdin closes
//! (the orchestrator is gone) a worker stops.
//!
//! - Subscriber: connects, subscribes, prints `subscribed`; prints `probe` when the first route
//!   probe arrives. It ends when it has received every notification, or when the orchestrator
//!   has said `done N` (the publisher published N) and nothing has arrived for the drain time.
//! - Publisher: connects, prints `connected`, publishes a probe every 20 ms until it reads
//!   `go`, then publishes the run (paced or not), flushes and reports.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use palio::{Client, ConnectOptions};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::clock::process_cpu_secs;

use super::{FILTER, Latency, PROBE_SEQ, decode, latency_histogram, notification, probe};

/// Where and what a worker runs.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The broker's QUIC address.
    pub server: String,
    /// The development PKI directory shared with the brokers.
    pub tls_dir: std::path::PathBuf,
    /// Notifications in the run.
    pub count: u64,
    /// Payload bytes (publisher).
    pub payload_bytes: usize,
    /// Publications per second (publisher); `None` for as fast as flow control allows.
    pub rate: Option<u64>,
    /// How long the subscriber waits for stragglers once the publisher is done.
    pub drain: Duration,
    /// Publish to / join this ordered group instead of best-effort publish/subscribe.
    pub group: Option<String>,
}

/// Where a worker publishes: best effort, or to an ordered group (pipelined, acked).
enum Sink {
    Plain(Client),
    Group(Client, palio::GroupPublisher, u64),
}

impl Sink {
    async fn send(&mut self, n: palio::Notification) -> anyhow::Result<()> {
        match self {
            Sink::Plain(c) => c.publish(n).await?,
            Sink::Group(_, p, sent) => {
                p.send(n).await?;
                *sent += 1;
            }
        }
        Ok(())
    }

    /// Best effort: every publication handed to routing; group: every publication acked.
    async fn settle(&mut self) -> anyhow::Result<()> {
        match self {
            Sink::Plain(c) => {
                c.flush().await?;
            }
            Sink::Group(_, p, sent) => p.wait_acked(*sent, Duration::from_secs(120)).await?,
        }
        Ok(())
    }

    async fn close(self) {
        match self {
            Sink::Plain(c) | Sink::Group(c, _, _) => c.close().await,
        }
    }
}

/// What a worker receives from: a subscription, or a group membership.
enum Source {
    Plain(palio::Subscription),
    Group(palio::GroupSubscription),
}

impl Source {
    /// The next notification (group gaps are skipped: what they stand for is counted as lost).
    async fn next(&mut self) -> Option<palio::Notification> {
        match self {
            Source::Plain(s) => s.next().await,
            Source::Group(g) => loop {
                match g.next().await? {
                    palio::GroupEvent::Message(m) => return Some(m.notification),
                    palio::GroupEvent::Gap { .. } => continue,
                }
            },
        }
    }
}

/// The publisher's result line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PublisherResult {
    /// Notifications published (after the probes).
    pub published: u64,
    /// Probes published before `go`.
    pub probes: u64,
    /// Seconds from the first publication until `flush` returned.
    pub secs: f64,
    /// How far, at most, a paced publisher fell behind its schedule (µs).
    pub max_behind_schedule_us: u64,
    /// CPU seconds the process used from `go` until `flush` returned.
    #[serde(default)]
    pub cpu_secs: Option<f64>,
}

/// The subscriber's result line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubscriberResult {
    /// Distinct notifications received (probes not counted).
    pub received: u64,
    /// Probes received.
    pub probes: u64,
    /// Arrivals after a higher `seq` had arrived.
    pub out_of_order: u64,
    /// Arrivals of a `seq` already received.
    pub duplicates: u64,
    /// `seq` values outside the run.
    pub unexpected: u64,
    /// Seconds from the first receipt to the last.
    pub span_secs: f64,
    /// Receipts per second over that span.
    pub msgs_per_sec: f64,
    /// Latency percentiles (send time in the payload → receipt), µs.
    pub latency_us: Latency,
    /// Why it stopped: `complete` (everything arrived) or `drained` (the publisher was done
    /// and nothing more arrived within the drain time).
    pub ended: String,
    /// CPU seconds the process used from subscribing until it stopped (it idles until the
    /// run starts).
    #[serde(default)]
    pub cpu_secs: Option<f64>,
}

/// Lines from stdin, read on a thread of their own; the channel closes at end of input.
pub(crate) fn stdin_lines() -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        loop {
            line.clear();
            match std::io::stdin().read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if tx.send(line.trim().to_owned()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    rx
}

/// A worker's runtime: multi-threaded, as an application's would be.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("runtime")
}

async fn connect(c: &WorkerConfig) -> anyhow::Result<Client> {
    let opts = ConnectOptions::new(&c.server)
        .tls_dir(&c.tls_dir)
        .name("palio-bench")
        .timeout(Duration::from_secs(30));
    Client::connect(opts)
        .await
        .with_context(|| format!("connecting to {}", c.server))
}

/// Runs the publisher; prints its result line.
pub fn publisher(c: &WorkerConfig) -> anyhow::Result<()> {
    let result = runtime()?.block_on(publish(c))?;
    println!("{}", serde_json::to_string(&result)?);
    Ok(())
}

async fn publish(c: &WorkerConfig) -> anyhow::Result<PublisherResult> {
    let client = connect(c).await?;
    let mut sink = match &c.group {
        None => Sink::Plain(client),
        Some(g) => {
            let p = client.group_publisher(g);
            Sink::Group(client, p, 0)
        }
    };
    let mut commands = stdin_lines();
    println!("connected");
    let mut probes = 0u64;
    loop {
        sink.send(probe()?).await?;
        sink.settle().await?;
        probes += 1;
        match tokio::time::timeout(Duration::from_millis(20), commands.recv()).await {
            Err(_) => {}
            Ok(Some(l)) if l == "go" => break,
            Ok(Some(other)) => bail!("publisher: unexpected command {other:?}"),
            Ok(None) => bail!("publisher: the orchestrator went away (stdin closed)"),
        }
    }
    let interval = c
        .rate
        .map(|r| Duration::from_secs_f64(1.0 / r.max(1) as f64));
    let mut payload = vec![0u8; c.payload_bytes.max(8)];
    let mut behind = Duration::ZERO;
    let cpu_start = process_cpu_secs();
    let start = Instant::now();
    for seq in 0..c.count {
        if let Some(iv) = interval {
            // The timer's resolution is a millisecond: sleep only when ahead of schedule, and
            // catch up in a burst after waking, so the mean rate is the target.
            let due = start + iv.mul_f64(seq as f64);
            let now = Instant::now();
            if due > now {
                tokio::time::sleep_until(due.into()).await;
            } else {
                behind = behind.max(now - due);
            }
        }
        payload[..8].copy_from_slice(&super::unix_micros().to_le_bytes());
        let seq = i32::try_from(seq).context("seq")?;
        sink.send(notification(seq, payload.clone())?).await?;
    }
    sink.settle().await?;
    let secs = start.elapsed().as_secs_f64();
    let cpu_secs = cpu_start.zip(process_cpu_secs()).map(|(a, b)| b - a);
    sink.close().await;
    Ok(PublisherResult {
        published: c.count,
        probes,
        secs,
        max_behind_schedule_us: u64::try_from(behind.as_micros()).unwrap_or(u64::MAX),
        cpu_secs,
    })
}

/// Runs the subscriber; prints its result line.
pub fn subscriber(c: &WorkerConfig) -> anyhow::Result<()> {
    let result = runtime()?.block_on(subscribe(c))?;
    println!("{}", serde_json::to_string(&result)?);
    Ok(())
}

/// What the orchestrator has said to a subscriber: `done N` once the publishers are done.
#[derive(Debug, Default)]
pub(crate) struct Done {
    published: Option<u64>,
    at: Option<Instant>,
}

impl Done {
    /// Takes a command line (`None`: stdin closed, the orchestrator is gone).
    pub(crate) fn command(&mut self, line: Option<String>) -> anyhow::Result<()> {
        match line.as_deref().map(|l| l.split_once(' ')) {
            Some(Some(("done", n))) => {
                self.published = Some(n.parse().context("done: a count")?);
                self.at = Some(Instant::now());
                Ok(())
            }
            Some(_) => bail!("subscriber: unexpected command {line:?}"),
            None => bail!("subscriber: the orchestrator went away (stdin closed)"),
        }
    }

    /// Everything has arrived: all that was published, or `count` before `done` is known.
    pub(crate) fn complete(&self, received: u64, count: u64) -> bool {
        received >= self.published.unwrap_or(count)
    }

    /// Told `done`, and nothing arrived for `drain` since the later of that and `last`.
    pub(crate) fn drained(&self, last: Instant, drain: Duration) -> bool {
        self.at.is_some_and(|d| d.max(last).elapsed() >= drain)
    }
}

/// What the subscriber has seen so far.
#[derive(Debug)]
pub struct Tally {
    seen: Vec<bool>,
    max_seq: Option<i32>,
    /// Distinct notifications received.
    pub received: u64,
    /// Probes received.
    pub probes: u64,
    /// Arrivals after a higher `seq`.
    pub out_of_order: u64,
    /// Repeated `seq`s.
    pub duplicates: u64,
    /// `seq`s outside `0..count` (other than probes).
    pub unexpected: u64,
}

/// What one arrival was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// A route probe.
    Probe,
    /// A notification of the run, received for the first time.
    New,
    /// A repeat or a stranger.
    Other,
}

impl Tally {
    /// Nothing seen, for a run of `count`.
    pub fn new(count: u64) -> Self {
        Self {
            seen: vec![false; usize::try_from(count).unwrap_or(0)],
            max_seq: None,
            received: 0,
            probes: 0,
            out_of_order: 0,
            duplicates: 0,
            unexpected: 0,
        }
    }

    /// Counts the arrival of `seq`.
    pub fn arrive(&mut self, seq: i32) -> Arrival {
        if seq == PROBE_SEQ {
            self.probes += 1;
            return Arrival::Probe;
        }
        let Some(slot) = usize::try_from(seq).ok().and_then(|i| self.seen.get_mut(i)) else {
            self.unexpected += 1;
            return Arrival::Other;
        };
        if std::mem::replace(slot, true) {
            self.duplicates += 1;
            return Arrival::Other;
        }
        if self.max_seq.is_some_and(|m| seq < m) {
            self.out_of_order += 1;
        }
        self.max_seq = self.max_seq.max(Some(seq));
        self.received += 1;
        Arrival::New
    }
}

async fn subscribe(c: &WorkerConfig) -> anyhow::Result<SubscriberResult> {
    let client = connect(c).await?;
    let mut sub = match &c.group {
        None => Source::Plain(client.subscribe(FILTER).await?),
        Some(g) => Source::Group(client.group_join(g, Some(FILTER)).await?),
    };
    let mut commands = stdin_lines();
    println!("subscribed");
    let cpu_start = process_cpu_secs();
    let mut tally = Tally::new(c.count);
    let mut hist = latency_histogram();
    let mut first: Option<Instant> = None;
    let mut last = Instant::now();
    let mut done = Done::default();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let ended = loop {
        if done.complete(tally.received, c.count) {
            break "complete";
        }
        tokio::select! {
            biased;
            n = sub.next() => {
                let Some(n) = n else {
                    bail!("subscriber: the subscription ended (connection closed) after {} notifications", tally.received);
                };
                let now = super::unix_micros();
                let Some((sent, seq)) = decode(&n) else {
                    tally.unexpected += 1;
                    continue;
                };
                match tally.arrive(seq) {
                    Arrival::Probe if tally.probes == 1 => println!("probe"),
                    Arrival::New => {
                        hist.saturating_record(now.saturating_sub(sent).max(1));
                        last = Instant::now();
                        first.get_or_insert(last);
                    }
                    _ => {}
                }
            }
            cmd = commands.recv() => done.command(cmd)?,
            _ = tick.tick() => {
                if done.drained(last, c.drain) {
                    break "drained";
                }
            }
        }
    };
    let span_secs = first.map_or(0.0, |f| last.duration_since(f).as_secs_f64());
    let cpu_secs = cpu_start.zip(process_cpu_secs()).map(|(a, b)| b - a);
    client.close().await;
    Ok(SubscriberResult {
        received: tally.received,
        probes: tally.probes,
        out_of_order: tally.out_of_order,
        duplicates: tally.duplicates,
        unexpected: tally.unexpected,
        span_secs,
        msgs_per_sec: super::rate_over(tally.received, span_secs),
        latency_us: Latency::of(&hist),
        ended: ended.to_owned(),
        cpu_secs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tally_counts_new_repeated_late_and_stray_arrivals() {
        let mut t = Tally::new(5);
        assert_eq!(t.arrive(PROBE_SEQ), Arrival::Probe);
        assert_eq!(t.arrive(0), Arrival::New);
        assert_eq!(t.arrive(2), Arrival::New);
        assert_eq!(t.arrive(1), Arrival::New); // late: 2 came first
        assert_eq!(t.arrive(2), Arrival::Other); // again
        assert_eq!(t.arrive(5), Arrival::Other); // outside 0..5
        assert_eq!(t.arrive(-7), Arrival::Other);
        assert_eq!(
            (
                t.received,
                t.probes,
                t.out_of_order,
                t.duplicates,
                t.unexpected
            ),
            (3, 1, 1, 1, 2)
        );
    }
}
