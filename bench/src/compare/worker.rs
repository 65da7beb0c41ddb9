//! A comparison's publisher and subscriber processes: `palio-bench compare-worker pub|sub`,
//! started by [`super::run`], one process each, with any of the three clients
//! ([`super::clients`]).
//!
//! They speak the pub/sub benchmark's line protocol (see [`crate::pubsub::worker`]): commands
//! on stdin, status words on stdout, then one JSON result line.
//!
//! - Subscriber: subscribes, prints `subscribed`, prints `probe` at the first route probe, and
//!   ends when every message has arrived, or when it has been told `done N` and nothing more
//!   arrives for the drain time.
//! - Publisher: connects, prints `connected`, publishes a probe every 20 ms until `go`, then
//!   its share of the run (`seq` from `first_seq`), settles and reports.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use super::clients::{Endpoint, Sink, Source};
use crate::clock::process_cpu_secs;
use crate::pubsub::worker::{Arrival, Done, Tally, runtime, stdin_lines};
use crate::pubsub::{Latency, PROBE_SEQ, latency_histogram, unix_micros};

/// What a worker does.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Where it connects.
    pub endpoint: Endpoint,
    /// Publisher: its index; subscriber: which subscription ([`super::wire`]).
    pub index: usize,
    /// Publisher: the first `seq` it publishes.
    pub first_seq: u64,
    /// Publisher: messages it publishes; subscriber: messages in the whole run.
    pub count: u64,
    /// Message size in bytes.
    pub size: usize,
    /// Publisher: messages per second, or as fast as it can.
    pub rate: Option<u64>,
    /// Subscriber: how long to wait for stragglers after `done`.
    pub drain: Duration,
}

/// The publisher's result line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PublishResult {
    /// Messages published.
    pub published: u64,
    /// Seconds from the first publication until settled.
    pub secs: f64,
    /// CPU seconds the process used meanwhile.
    pub cpu_secs: Option<f64>,
}

/// The subscriber's result line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReceiveResult {
    /// Distinct messages of the run received.
    pub received: u64,
    /// Repeats.
    pub duplicates: u64,
    /// The first and the last receipt, µs since the epoch (0 if none).
    pub first_us: u64,
    /// See `first_us`.
    pub last_us: u64,
    /// Latency percentiles (send → receipt), µs.
    pub latency_us: Latency,
    /// `complete` or `drained`.
    pub ended: String,
    /// CPU seconds from subscribing until the end.
    pub cpu_secs: Option<f64>,
}

/// Runs the publisher; prints its result line.
pub fn publisher(c: &WorkerConfig) -> anyhow::Result<()> {
    let result = runtime()?.block_on(publish(c))?;
    println!("{}", serde_json::to_string(&result)?);
    Ok(())
}

async fn publish(c: &WorkerConfig) -> anyhow::Result<PublishResult> {
    let mut sink = Sink::connect(&c.endpoint, &format!("palio-bench-pub-{}", c.index)).await?;
    let mut commands = stdin_lines();
    println!("connected");
    let mut buf = Vec::new();
    loop {
        sink.send(PROBE_SEQ, c.size, &mut buf).await?;
        sink.settle().await?;
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
    let cpu_start = process_cpu_secs();
    let start = Instant::now();
    for i in 0..c.count {
        if let Some(iv) = interval {
            // Sleep only when ahead of schedule (the timer's resolution is a millisecond) and
            // catch up in a burst after waking, so the mean rate is the target.
            let due = start + iv.mul_f64(i as f64);
            if due > Instant::now() {
                tokio::time::sleep_until(due.into()).await;
            }
        }
        let seq = i32::try_from(c.first_seq + i).context("seq beyond i32")?;
        sink.send(seq, c.size, &mut buf).await?;
    }
    sink.settle().await?;
    let secs = start.elapsed().as_secs_f64();
    let cpu_secs = cpu_start.zip(process_cpu_secs()).map(|(a, b)| b - a);
    sink.close().await;
    Ok(PublishResult {
        published: c.count,
        secs,
        cpu_secs,
    })
}

/// Runs the subscriber; prints its result line.
pub fn subscriber(c: &WorkerConfig) -> anyhow::Result<()> {
    let result = runtime()?.block_on(receive(c))?;
    println!("{}", serde_json::to_string(&result)?);
    Ok(())
}

async fn receive(c: &WorkerConfig) -> anyhow::Result<ReceiveResult> {
    let mut source = Source::subscribe(
        &c.endpoint,
        &format!("palio-bench-sub-{}", c.index),
        c.index,
    )
    .await?;
    let mut commands = stdin_lines();
    println!("subscribed");
    let cpu_start = process_cpu_secs();
    let mut tally = Tally::new(c.count);
    let mut hist = latency_histogram();
    let (mut first_us, mut last_us) = (0u64, 0u64);
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
            m = source.next() => {
                let Some((sent, seq)) = m else {
                    bail!("subscriber: the connection ended after {} messages", tally.received);
                };
                let now = unix_micros();
                match tally.arrive(seq) {
                    Arrival::Probe if tally.probes == 1 => println!("probe"),
                    Arrival::New => {
                        hist.saturating_record(now.saturating_sub(sent).max(1));
                        last = Instant::now();
                        last_us = now;
                        if first_us == 0 {
                            first_us = now;
                        }
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
    let cpu_secs = cpu_start.zip(process_cpu_secs()).map(|(a, b)| b - a);
    source.close().await;
    Ok(ReceiveResult {
        received: tally.received,
        duplicates: tally.duplicates,
        first_us,
        last_us,
        latency_us: Latency::of(&hist),
        ended: ended.to_owned(),
        cpu_secs,
    })
}
