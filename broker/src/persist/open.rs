//! Opening the store: the log, the engine recovered from its checkpoint and records.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use palio_topology::BrokerId;
use serde_json::{Value as Json, json};
use tokio::sync::mpsc;

use crate::config::{Limits, StoreSettings};
use crate::durable::{Engine, EngineConfig, EngineLimits, QueueLimits, WallClock};
use crate::store::{Log, LogOptions, Position, RecoveryReport, StdFs, SyncEvent};

/// The store opened and recovered, ready to run.
pub(crate) struct Store {
    pub(super) log: Log,
    pub(super) engine: Engine,
    pub(super) events: mpsc::UnboundedReceiver<SyncEvent>,
    pub(super) report: RecoveryReport,
    pub(super) recovered_records: u64,
    pub(super) undecodable: u64,
    /// The largest frame a client is sent: queue listings are split into frames of at most
    /// this size.
    pub(super) max_frame: usize,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the log in `dir`, recovers the engine from its checkpoint and records, and
    /// makes everything recovered durable before returning. The error says what failed.
    /// `limits.max_frame_bytes` is the largest frame clients and peers may send: a record
    /// holds one message, so the log takes records of twice that (and at least its 4 MiB
    /// default). The task splits queue listings into frames of at most that size.
    pub(crate) fn open(
        dir: &Path,
        me: BrokerId,
        s: &StoreSettings,
        limits: &Limits,
    ) -> Result<Self, String> {
        let max_frame = limits.max_frame_bytes;
        let (tx, events) = mpsc::unbounded_channel();
        let notify = move |e: SyncEvent| {
            let _ = tx.send(e);
        };
        let default = LogOptions::default();
        let options = LogOptions {
            segment_bytes: s.segment_bytes,
            max_record_bytes: u32::try_from(max_frame.saturating_mul(2))
                .unwrap_or(u32::MAX)
                .max(default.max_record_bytes),
        };
        #[cfg(not(test))]
        let fs = Arc::new(StdFs);
        // Tests may put the store on the fault-injecting file layer (see `persist/tests.rs`).
        #[cfg(test)]
        let fs = super::tests::take_file_layer().unwrap_or_else(|| Arc::new(StdFs));
        let (log, report) =
            Log::open(fs, dir, options, Box::new(notify)).map_err(|e| e.to_string())?;
        let cfg = EngineConfig {
            me,
            ack_wait: Duration::from_millis(s.ack_wait_ms),
            max_deliveries: s.max_deliveries,
            peer_window: s.peer_window,
            dedup_window: s.dedup_window,
            clock: wall_clock(),
            limits: engine_limits(limits),
        };
        let (mut engine, from) = match log.checkpoint().map_err(|e| e.to_string())? {
            Some((upto, bytes)) => match crate::durable::decode_snapshot(&bytes) {
                Ok(snap) => (Engine::from_snapshot(cfg, snap), upto),
                Err(e) => return Err(format!("the checkpoint does not decode: {e}")),
            },
            None => (Engine::new(cfg), Position::START),
        };
        let (mut records, mut undecodable) = (0u64, 0u64);
        log.replay(from, |pos, bytes| {
            records += 1;
            if !engine.apply_bytes(pos, bytes) {
                undecodable += 1;
            }
            Ok(())
        })
        .map_err(|e| e.to_string())?;
        Ok(Self {
            log,
            engine,
            events,
            report,
            recovered_records: records,
            undecodable,
            max_frame,
        })
    }

    /// What recovery found, as JSON (for the ready line and logs).
    pub(crate) fn summary(&self) -> Json {
        json!({
            "clean": self.report.is_clean() && self.undecodable == 0,
            "records": self.recovered_records,
            "undecodable": self.undecodable,
            "problems": self.report.problems.iter().map(ToString::to_string).collect::<Vec<_>>(),
        })
    }
}

/// The wall-clock time now, for the engine's clock.
fn wall_clock() -> WallClock {
    let unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    WallClock {
        at: Instant::now(),
        unix_ms,
    }
}

/// The engine's share of `[limits]`.
fn engine_limits(l: &Limits) -> EngineLimits {
    EngineLimits {
        max_queues: l.max_queues,
        max_consumers_per_client: l.max_consumers_per_client,
        max_fetch_wait: Duration::from_millis(l.max_fetch_wait_ms),
        max_producers: l.max_producers,
        producer_idle: Duration::from_millis(l.producer_idle_ms),
        queue: QueueLimits {
            max_messages: l.queue_max_messages,
            max_bytes: l.queue_max_bytes,
            max_age_ms: l.queue_max_age_ms,
            discard: l.queue_discard,
        },
    }
}
