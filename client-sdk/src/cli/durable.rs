//! `palio pub --persistent` and `palio sub --durable`: persistent delivery from scripts.
//!
//! Output contract:
//! - `pub --persistent` publishes pipelined (at most [`DEFAULT_MAX_IN_FLIGHT`](crate::DEFAULT_MAX_IN_FLIGHT) unacked) and
//!   prints `{"published": N, "acked": M, "stored": K}` on exit, also when the connection is lost midway or
//!   the broker refuses a publication (exit status 1 then, the error on stderr). `published`
//!   counts the publications handed to the connection, `acked` those the broker has on disk;
//!   acks come in publish order, and counting stops at the first failure, so the acked
//!   notifications are `seq` 0…M−1. With `--count N` the producer sequence numbers are the
//!   `seq` values, so a run repeated under the same `--producer` stores nothing twice.
//!   The line also has `"stored": K`, the acked publications that matched at least one durable
//!   queue (a retry counts as it did the first time). If some acked ones matched none (the
//!   broker has them on disk, but no queue keeps them), it warns once on stderr,
//!   `palio: N publications matched no queue; nothing stored them (palio queue ls)`, and the
//!   exit status does not change (0 if every publication was acked).
//! - `sub --durable NAME` prints each message as `palio sub` does, plus `"delivery_count"`,
//!   `"queue"` and `"tag"`, then acks it. It exits after `--count` messages once their acks
//!   are confirmed (on the broker's disk), or after `--timeout` seconds (exit status 3 if the
//!   timeout came first while `--count` was given). It reconnects as `palio sub` does
//!   (`reconnect.rs`): the consumer is attached again, and messages whose ack was lost with
//!   the connection come again (printed again, with a larger `delivery_count`).

use std::collections::VecDeque;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::bail;
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use serde_json::json;
use tokio::time::Instant;

use super::connection::Connection;
use super::pubsub::{Sub, Template, runtime};
use super::reconnect;
use super::refusal::said_once;
use crate::{Client, ConsumeMode, DurableMessage, Error, ErrorCode, PublishAck};

/// Acks of printed messages awaited at a time by `sub --durable` in push mode: enough to keep
/// the broker's group commit busy, few enough to stay small.
const MAX_PENDING_ACKS: usize = 256;

/// What `pub --persistent` publishes.
pub(super) struct Publication {
    pub(super) template: Template,
    pub(super) count: Option<u32>,
    pub(super) producer: String,
}

/// A producer id unique to this invocation: `palio-pub-<host>-<pid>-<random>`.
pub(super) fn default_producer_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.')
        .take(64)
        .collect();
    let host = if host.is_empty() { "host".into() } else { host };
    // A randomly keyed hash of the time: random enough to tell two runs apart without a
    // random-number dependency.
    let mut h = RandomState::new().build_hasher();
    if let Ok(t) = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH) {
        h.write_u128(t.as_nanos());
    }
    format!(
        "palio-pub-{host}-{}-{:08x}",
        std::process::id(),
        h.finish() as u32
    )
}

/// Counts what a persistent publish run did; printed whatever the outcome.
#[derive(Debug, Default, PartialEq, Eq)]
struct Tally {
    published: u64,
    acked: u64,
    /// Acked publications that matched at least one durable queue.
    stored: u64,
}

pub(super) fn run_persistent_pub(
    conn: &Connection,
    publication: Publication,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    rt.block_on(async {
        let mut tally = Tally::default();
        let result = publish_persistent(conn, &publication, &mut tally).await;
        writeln!(
            out,
            "{}",
            json!({ "published": tally.published, "acked": tally.acked, "stored": tally.stored })
        )?;
        out.flush()?;
        let unmatched = tally.acked - tally.stored;
        if unmatched > 0 {
            writeln!(
                err,
                "palio: {unmatched} publications matched no queue; nothing stored them \
                 (palio queue ls)"
            )?;
        }
        match result {
            Ok(()) => Ok(ExitCode::SUCCESS),
            Err(e) => {
                writeln!(err, "palio: {e:#}")?;
                Ok(ExitCode::from(1))
            }
        }
    })
}

async fn publish_persistent(
    conn: &Connection,
    p: &Publication,
    tally: &mut Tally,
) -> anyhow::Result<()> {
    let client = conn.connect("palio-pub").await?;
    let result = publish_with(&client, p, tally).await;
    // Closed whatever the outcome, so that the broker hears of it at once.
    client.close().await;
    result
}

async fn publish_with(client: &Client, p: &Publication, tally: &mut Tally) -> anyhow::Result<()> {
    let producer = client.producer(&p.producer).await.map_err(|e| {
        said_once(e, |code| {
            (code == ErrorCode::PermissionDenied)
                .then(|| format!("producer {:?} belongs to another principal", p.producer))
        })
    })?;
    // Acks not yet counted, oldest first; they settle in this order.
    let mut acks: VecDeque<PublishAck> = VecDeque::new();
    let seqs: Box<dyn Iterator<Item = Option<u32>>> = match p.count {
        Some(n) => Box::new((0..n).map(Some)),
        None => Box::new(std::iter::once(None)),
    };
    for seq in seqs {
        let n = p.template.build(seq)?;
        // `send` waits only while the producer's in-flight bound is reached.
        let ack = match seq {
            Some(s) => producer.send_with_seq(u64::from(s), n).await?,
            None => producer.send(n).await?,
        };
        acks.push_back(ack);
        tally.published += 1;
        count_settled(&mut acks, tally, false).await?;
    }
    count_settled(&mut acks, tally, true).await?;
    Ok(())
}

/// Counts the acks at the front of `acks` that have settled (`wait`: waits for all of them);
/// the first failure ends the count.
async fn count_settled(
    acks: &mut VecDeque<PublishAck>,
    tally: &mut Tally,
    wait: bool,
) -> Result<(), Error> {
    while let Some(front) = acks.front_mut() {
        let settled = if wait {
            Some(front.await)
        } else {
            front.now_or_never()
        };
        match settled {
            None => break,
            Some(r) => {
                acks.pop_front();
                let published = r?;
                tally.acked += 1;
                if published.stored() {
                    tally.stored += 1;
                }
            }
        }
    }
    Ok(())
}

pub(super) fn run_durable_sub(
    cmd: Sub,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let Some(queue) = cmd.durable.clone() else {
        bail!("--durable NAME is required");
    };
    if !cmd.max_wait.is_finite() || cmd.max_wait < 0.0 {
        writeln!(err, "palio: --max-wait must be a number of seconds ≥ 0")?;
        return Ok(ExitCode::from(2));
    }
    let server = cmd.conn.server();
    let rt = runtime()?;
    rt.block_on(async {
        let client = cmd
            .conn
            .connect_with("palio-sub", |o| cmd.reconnect.apply(o))
            .await?;
        let server = server.as_str();
        let deadline = cmd
            .timeout
            .map(|t| Instant::now() + Duration::from_secs_f64(t.max(0.0)));
        let received = if cmd.pull {
            consume_pull(&client, server, &queue, &cmd, deadline, out, err).await
        } else {
            consume_push(&client, server, &queue, &cmd, deadline, out, err).await
        };
        // Closed whatever the outcome, so that the broker detaches the consumer at once.
        client.close().await;
        let received = received.map_err(|e| queue_error(e, &queue))?;
        Ok(match cmd.count {
            Some(c) if received < c => {
                writeln!(err, "palio: timed out after {received} messages")?;
                ExitCode::from(3)
            }
            _ => ExitCode::SUCCESS,
        })
    })
}

/// The broker's refusal of the consumer, said once, with a plain sentence for the common
/// cases.
fn queue_error(e: anyhow::Error, queue: &str) -> anyhow::Error {
    let e = match e.downcast::<Error>() {
        Ok(e) => e,
        Err(other) => return other,
    };
    said_once(e, |code| match code {
        ErrorCode::QueueNotFound => Some(format!("no queue named {queue:?}")),
        ErrorCode::PermissionDenied => {
            Some(format!("queue {queue:?} belongs to another principal"))
        }
        _ => None,
    })
}

fn print(out: &mut dyn Write, raw: bool, m: &DurableMessage) -> std::io::Result<()> {
    super::payload::print(out, raw, m.payload(), || m.to_json())
}

/// Push mode: prints and acks until the count or the deadline; returns how many messages
/// were printed (all acked).
async fn consume_push(
    client: &Client,
    server: &str,
    queue: &str,
    cmd: &Sub,
    deadline: Option<Instant>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<u64> {
    // No more in flight than will be printed: the rest would be delivered again, counted.
    let window = match cmd.count {
        Some(c) => cmd.window.min(u32::try_from(c).unwrap_or(u32::MAX)).max(1),
        None => cmd.window,
    };
    let mut events = client.events();
    let mut sub = client.consume(queue, ConsumeMode::Push { window }).await?;
    writeln!(
        err,
        "palio: consuming {queue} (consumer {}) at {}",
        sub.id(),
        client.broker().broker
    )?;
    err.flush()?;
    let mut acks = FuturesUnordered::new();
    let mut received = 0u64;
    while cmd.count.is_none_or(|c| received < c) {
        tokio::select! {
            biased;
            Some(r) = acks.next(), if !acks.is_empty() => acked(r)?,
            Some(e) = events.next() => reconnect::print(&e, server, err)?,
            m = sub.next() => {
                let Some(m) = m else {
                    return Err(reconnect::ended(client, server));
                };
                print(out, cmd.raw, &m)?;
                received += 1;
                if acks.len() >= MAX_PENDING_ACKS
                    && let Some(r) = acks.next().await
                {
                    acked(r)?;
                }
                acks.push(async move { m.ack().await });
            }
            () = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)),
                if deadline.is_some() => break,
        }
    }
    while let Some(r) = acks.next().await {
        acked(r)?;
    }
    Ok(received)
}

/// An ack's outcome: one lost with the connection is no failure (the message comes again
/// after the reconnection).
fn acked(r: Result<(), Error>) -> Result<(), Error> {
    match r {
        Err(Error::Disconnected { .. }) => Ok(()),
        other => other,
    }
}

/// Pull mode: fetches, prints and acks batch by batch until the count or the deadline;
/// returns how many messages were printed (all acked).
async fn consume_pull(
    client: &Client,
    server: &str,
    queue: &str,
    cmd: &Sub,
    deadline: Option<Instant>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<u64> {
    let mut events = client.events();
    let mut consumer = client.pull(queue).await?;
    writeln!(
        err,
        "palio: pulling from {queue} (consumer {}) at {}",
        consumer.id(),
        client.broker().broker
    )?;
    err.flush()?;
    let max_wait = Duration::from_secs_f64(cmd.max_wait);
    let mut received = 0u64;
    while cmd.count.is_none_or(|c| received < c) {
        let wait = match deadline {
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                left.min(max_wait)
            }
            None => max_wait,
        };
        // Fetch no more than will be printed: the rest would be delivered again, counted.
        let want = match cmd.count {
            Some(c) => u64::from(cmd.batch).min(c - received),
            None => u64::from(cmd.batch),
        };
        reconnect::print_ready(&mut events, server, err)?;
        let batch = match consumer
            .fetch(u32::try_from(want).unwrap_or(u32::MAX), wait)
            .await
        {
            Err(Error::Disconnected { .. }) => {
                reconnect::until_back(client, &mut events, server, err).await?;
                continue;
            }
            other => other?,
        };
        for m in &batch {
            print(out, cmd.raw, m)?;
        }
        if !batch.is_empty() {
            received += batch.len() as u64;
            let tags: Vec<u64> = batch.iter().map(DurableMessage::tag).collect();
            acked(consumer.ack_many(&tags).await)?;
        }
    }
    Ok(received)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_producer_ids_are_unique_and_short() {
        let a = default_producer_id();
        let b = default_producer_id();
        assert_ne!(a, b);
        assert!(a.starts_with("palio-pub-"), "{a}");
        assert!(a.contains(&format!("-{}-", std::process::id())), "{a}");
        assert!((1..=128).contains(&a.len()), "{a}");
    }
}
