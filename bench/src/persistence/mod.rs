//! The persistence benchmark: persistent publish and durable pull consumption, Palio beside
//! NATS JetStream with file storage, on loopback, in two timed phases.
//!
//! 1. **Publish.** `producers` connections each publish their share of `count` notifications
//!    persistently, pipelined: a bounded window of [`PUBLISH_WINDOW`] publications awaits
//!    its acks (in publish order) while the next ones are sent. The phase ends with the last
//!    ack. Palio acks a publication once its group commit is on disk (after fdatasync);
//!    JetStream by default acks once the message is in its file store's write buffer and
//!    syncs every two minutes, or on every write with `sync_interval: always` (servers
//!    2.10 and later), which is the fair counterpart of Palio's ack.
//! 2. **Consume.** One durable pull consumer, created before phase 1 so that it has every
//!    message, drains the queue or stream: fetch up to `batch` (never more than remain, so
//!    the last fetch does not wait out its maximum wait), then ack the batch with one
//!    confirmed request (Palio `ack_many`; JetStream plain acks for all but the last and a
//!    double ack — answered by the server — for the last), then fetch again. The phase ends
//!    when the last batch's ack is confirmed.
//!
//! Every notification carries four attributes (JetStream: four headers) — `type`,
//! `producer`, `seq`, `source` — and `payload_bytes` of payload. The consumer reads
//! `(producer, seq)` back and [`Tally`] fails the run unless every published message was
//! consumed exactly once.
//!
//! [`summary`] turns interleaved runs into min/median/max tables, ratios and a chart.
//!
//! Brokers are started by the benchmark in a temporary directory, on ephemeral loopback ports:
//! Palio in this process (on a runtime of its own, so that it does not share the client's
//! worker threads), JetStream as a `nats-server` child process.

mod jetstream;
mod palio;
mod pipeline;
pub mod summary;
mod tally;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::bail;
use serde::{Deserialize, Serialize};

pub use tally::Tally;

/// Publications awaiting acks per producer: Palio's default `max_in_flight`, and JetStream's
/// `max_ack_inflight` is set to the same.
pub const PUBLISH_WINDOW: usize = 4096;

/// The attribute (header) names every benchmark message carries.
pub const ATTRIBUTES: [&str; 4] = ["type", "producer", "seq", "source"];

/// The system under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum System {
    /// Palio: persistent publish acked after fdatasync, a durable queue, a pull consumer.
    Palio,
    /// NATS JetStream: a file-storage stream, a durable pull consumer.
    Jetstream,
}

/// When JetStream syncs its file store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JetStreamSync {
    /// The server's default: ack before fsync, sync on a timer (two minutes).
    Default,
    /// `sync_interval: always`: fsync every write before acking (nats-server 2.10+).
    Always,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct PersistenceConfig {
    /// The system under test.
    pub system: System,
    /// Messages to publish, spread over the producers.
    pub count: u64,
    /// Payload bytes per message.
    pub payload_bytes: usize,
    /// Publishing connections.
    pub producers: usize,
    /// Messages per fetch (and per ack request) of the pull consumer.
    pub batch: usize,
    /// JetStream only: the store's sync mode.
    pub jetstream_sync: JetStreamSync,
    /// JetStream only: the `nats-server` executable.
    pub nats_server: PathBuf,
    /// Where the temporary data directory goes (default: the system's temp dir); the disk it
    /// is on is the disk measured.
    pub data_parent: Option<PathBuf>,
    /// Palio only: run the broker as this `palio-broker` process (as users run it) instead of
    /// in this process.
    pub palio_broker_bin: Option<PathBuf>,
}

/// The outcome of one run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PersistenceReport {
    /// The system under test.
    pub system: System,
    /// A label for tables: `palio`, `jetstream` or `jetstream-sync-always`.
    pub label: String,
    /// The server's version (JetStream: `nats-server --version`).
    pub server_version: String,
    /// What a publish ack means for this run.
    pub ack_after: String,
    /// Messages published (and acked).
    pub count: u64,
    /// Publishing connections.
    pub producers: usize,
    /// Payload bytes per message.
    pub payload_bytes: usize,
    /// Attributes (headers) per message.
    pub attributes: usize,
    /// Messages per fetch / ack request.
    pub batch: usize,
    /// Publications in flight per producer.
    pub publish_window: usize,
    /// Seconds from the first publish to the last ack.
    pub publish_secs: f64,
    /// Acked publications per second.
    pub publish_msgs_per_s: f64,
    /// Seconds from the first fetch to the last confirmed ack.
    pub consume_secs: f64,
    /// Consumed and acked messages per second.
    pub consume_msgs_per_s: f64,
    /// Messages consumed (each exactly once, or the run fails).
    pub consumed: u64,
    /// Fetch requests the consumer made.
    pub fetches: u64,
    /// Of `consume_secs`, the seconds spent waiting for fetches (the rest is acks and the
    /// bookkeeping of the check).
    #[serde(default)]
    pub fetch_secs: f64,
    /// Of `consume_secs`, the seconds spent waiting for confirmed acks.
    #[serde(default)]
    pub ack_secs: f64,
    /// Bytes in the data directory after both phases.
    pub data_dir_bytes: u64,
}

/// Runs the benchmark. Progress goes to `progress`; the run fails if any message is lost,
/// duplicated or redelivered.
pub fn run(
    config: &PersistenceConfig,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<PersistenceReport> {
    if config.count == 0 || config.producers == 0 || config.batch == 0 {
        bail!("count, producers and batch must be at least 1");
    }
    if config.count > u64::from(i32::MAX.unsigned_abs()) {
        bail!("count must fit a 32-bit attribute");
    }
    if config.payload_bytes < 8 {
        bail!("the payload must have at least 8 bytes");
    }
    let dir = match &config.data_parent {
        Some(parent) => tempfile::tempdir_in(parent)?,
        None => tempfile::tempdir()?,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut report = match config.system {
        System::Palio => palio::run(&rt, config, dir.path(), progress)?,
        System::Jetstream => rt.block_on(jetstream::run(config, dir.path(), progress))?,
    };
    report.data_dir_bytes = dir_bytes(dir.path());
    Ok(report)
}

/// The share of `count` that producer `p` of `producers` publishes.
pub(crate) fn share(count: u64, producers: usize, p: usize) -> u64 {
    let n = producers as u64;
    count / n + u64::from((p as u64) < count % n)
}

/// A payload of `len` bytes whose first 8 name the message (so that no two are equal).
pub(crate) fn payload(len: usize, producer: usize, seq: u64) -> Vec<u8> {
    let mut p = vec![0x5a; len];
    let id = ((producer as u64) << 40) | seq;
    p[..8].copy_from_slice(&id.to_le_bytes());
    p
}

/// Messages still to consume: a fetch asks for no more, or it would wait out its maximum
/// wait for messages that do not exist.
pub(crate) fn remaining(tally: &Tally, count: u64) -> usize {
    usize::try_from(count.saturating_sub(tally.consumed())).unwrap_or(usize::MAX)
}

/// Rates and times of one phase.
pub(crate) struct Phase {
    pub(crate) secs: f64,
    pub(crate) msgs_per_s: f64,
}

impl Phase {
    pub(crate) fn since(start: Instant, count: u64) -> Self {
        let secs = start.elapsed().as_secs_f64().max(1e-9);
        Phase {
            secs,
            msgs_per_s: count as f64 / secs,
        }
    }
}

/// What the consume phase measured.
pub(crate) struct Drain {
    pub(crate) phase: Phase,
    pub(crate) consumed: u64,
    pub(crate) fetches: u64,
    pub(crate) fetch_secs: f64,
    pub(crate) ack_secs: f64,
}

impl PersistenceReport {
    /// The report of one run of `system`: who ran, with which settings, and both phases.
    pub(crate) fn new(
        system: System,
        label: String,
        server_version: String,
        ack_after: String,
        config: &PersistenceConfig,
        publish: &Phase,
        drain: Drain,
    ) -> Self {
        PersistenceReport {
            system,
            label,
            server_version,
            ack_after,
            count: config.count,
            producers: config.producers,
            payload_bytes: config.payload_bytes,
            attributes: ATTRIBUTES.len(),
            batch: config.batch,
            publish_window: PUBLISH_WINDOW,
            publish_secs: publish.secs,
            publish_msgs_per_s: publish.msgs_per_s,
            consume_secs: drain.phase.secs,
            consume_msgs_per_s: drain.phase.msgs_per_s,
            consumed: drain.consumed,
            fetches: drain.fetches,
            fetch_secs: drain.fetch_secs,
            ack_secs: drain.ack_secs,
            data_dir_bytes: 0,
        }
    }
}

/// The bytes of every file under `dir`.
fn dir_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            Ok(_) => e.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up_to_the_count() {
        for (count, producers) in [(10, 3), (7, 7), (5, 8), (100_000, 4)] {
            let total: u64 = (0..producers).map(|p| share(count, producers, p)).sum();
            assert_eq!(total, count, "{count} over {producers}");
        }
    }

    #[test]
    fn payloads_name_their_message() {
        let a = payload(128, 1, 7);
        let b = payload(128, 2, 7);
        assert_eq!(a.len(), 128);
        assert_ne!(a, b);
    }
}
