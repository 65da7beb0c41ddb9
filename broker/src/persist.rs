//! The persist task: the one owner of the log and of the persistence
//! [`Engine`](crate::durable::Engine).
//!
//! Client sessions and peer links send [`PersistCommand`]s through one bounded channel (a full
//! channel holds publishers back). The task applies each to the engine, which appends records
//! to the log's buffer; after each batch of commands (at most about [`COMMIT_BYTES`]) it calls
//! [`Log::commit_upto`], which writes the batch with one `write` and wakes the log's sync
//! thread. That thread runs one `fdatasync` for everything written so far and reports
//! [`SyncEvent::Synced`]; commands keep arriving and appending meanwhile, so the next batch
//! grows while an fsync runs (group commit). Only then does the engine release publish acks,
//! ack confirmations and store acks. A batch holding only records nothing waits for (the
//! delivery counts a fetch writes) is written without asking for a sync: the next sync covers
//! it.
//!
//! Outputs go to the clients' control outboxes and the peer links' outboxes (the `outbox`
//! module), which never make the task wait. A client whose control outbox is over its limit
//! is disconnected (its unacked messages are delivered again); toward peers the task is
//! bounded by the store-and-forward window, so it pushes whatever the link's outbox holds.
//!
//! Checkpoints: once the log has moved to a new segment since the last checkpoint, the task
//! snapshots the engine and writes the snapshot as soon as the log is durable up to the
//! snapshot's position; then it deletes the segments that hold no live message.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use palio_filter::Event;
use palio_protocol::{ClientFrame, ErrorCode, ServerFrame};
use palio_topology::BrokerId;
use serde_json::{Value as Json, json};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::sleep_until;
use tokio_util::sync::CancellationToken;

use crate::auth::Principal;
use crate::config::{Limits, StoreSettings};
use crate::durable::{
    ClientId, Engine, EngineConfig, EngineLimits, Journal, Limit, QueueLimits, Snapshot, WallClock,
};
use crate::metrics::Metrics;
use crate::outbox::{Outbox, Pushed};
use crate::store::{Log, LogOptions, Position, RecoveryReport, StdFs, StoreError, SyncEvent};
use crate::wire::PeerMessage;
use crate::wire::PeerOut;
use frames::Framed;

pub(crate) mod frames;
mod listing;
mod status;

pub(crate) use status::StoreStatus;

/// What client sessions and peer links ask of the persist task.
#[derive(Debug)]
pub(crate) enum PersistCommand {
    /// A client connected: its control-stream queue and principal.
    ClientUp {
        client: ClientId,
        frames: Outbox<ServerFrame>,
        connection: quinn::Connection,
        principal: Arc<Principal>,
    },
    /// A reload changed a connected client's principal.
    Principal {
        client: ClientId,
        principal: Arc<Principal>,
    },
    ClientGone {
        client: ClientId,
    },
    /// A durable request (producer, queue administration, consumers, acks).
    Request {
        client: ClientId,
        frame: ClientFrame,
    },
    /// Persistent publications of one client, validated, in order.
    Publish {
        client: ClientId,
        items: Vec<Publication>,
    },
    PeerUp {
        peer: BrokerId,
        link: u64,
        frames: Outbox<PeerOut>,
    },
    PeerDown {
        peer: BrokerId,
        link: u64,
    },
    Peer {
        peer: BrokerId,
        link: u64,
        message: PeerMessage,
    },
    /// The store's state, for `/healthz` and `/store`.
    Status {
        reply: oneshot::Sender<StoreStatus>,
    },
}

/// How sessions, peer links and the admin listener talk to the persist task.
#[derive(Debug, Clone)]
pub(crate) struct PersistHandle(mpsc::Sender<PersistCommand>);

impl PersistHandle {
    pub(crate) fn new(tx: mpsc::Sender<PersistCommand>) -> Self {
        Self(tx)
    }

    /// Hands the persist task a command (waits while its channel is full).
    pub(crate) async fn send(&self, cmd: PersistCommand) -> Result<(), crate::router::Refusal> {
        self.0
            .send(cmd)
            .await
            .map_err(|_| crate::router::shutting_down())
    }

    /// Whether the persist task has stopped.
    pub(crate) fn is_closed(&self) -> bool {
        self.0.is_closed()
    }
}

/// A persistent publication, validated.
#[derive(Debug)]
pub(crate) struct Publication {
    pub(crate) seq: u64,
    /// The attributes.
    pub(crate) event: Event,
    pub(crate) payload: Vec<u8>,
}

/// The log as the engine's journal.
struct LogJournal<'a>(&'a mut Log);

impl Journal for LogJournal<'_> {
    fn append(&mut self, record: &[u8]) -> Result<Position, StoreError> {
        self.0.append(record)
    }

    fn read(&self, pos: Position) -> Result<Vec<u8>, StoreError> {
        self.0.read(pos)
    }

    fn end(&self) -> Position {
        self.0.end()
    }
}

/// The store opened and recovered, ready to run.
pub(crate) struct Store {
    log: Log,
    engine: Engine,
    events: mpsc::UnboundedReceiver<SyncEvent>,
    report: RecoveryReport,
    recovered_records: u64,
    undecodable: u64,
    /// The largest frame a client is sent: queue listings are split into frames of at most
    /// this size.
    max_frame: usize,
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
        let fs = tests::take_file_layer().unwrap_or_else(|| Arc::new(StdFs));
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

    /// Runs the task until `shutdown` or until every sender is gone.
    pub(crate) async fn run(
        self,
        mut rx: mpsc::Receiver<PersistCommand>,
        mut hops: watch::Receiver<HashMap<BrokerId, BrokerId>>,
        metrics: Metrics,
        shutdown: CancellationToken,
    ) {
        let Store {
            mut log,
            mut engine,
            mut events,
            report,
            max_frame,
            ..
        } = self;
        metrics
            .store_recovery_problems
            .inc_by(report.problems.len() as u64);
        let mut task = Task {
            clients: HashMap::new(),
            peers: HashMap::new(),
            metrics,
            last_stats: Default::default(),
            checkpoint_segment: log.end().segment,
            pending_checkpoint: None,
            max_frame,
        };
        // Everything recovered is on disk: deliverable and forwardable from the start.
        let recovered = log.durable();
        engine.handle_durable(&mut LogJournal(&mut log), Instant::now(), recovered);
        let mut committed = log.end();
        loop {
            let deadline = engine.poll_timeout();
            tokio::select! {
                cmd = rx.recv() => {
                    let Some(cmd) = cmd else { break };
                    let now = Instant::now();
                    task.handle(&mut engine, &mut log, now, cmd);
                    // Take whatever else is queued into the same batch, up to COMMIT_BYTES.
                    for _ in 0..1024 {
                        if log.buffered() >= COMMIT_BYTES {
                            break;
                        }
                        let Ok(cmd) = rx.try_recv() else { break };
                        task.handle(&mut engine, &mut log, now, cmd);
                    }
                }
                ev = events.recv() => match ev {
                    Some(SyncEvent::Synced(p)) => {
                        engine.handle_durable(&mut LogJournal(&mut log), Instant::now(), p);
                        task.maybe_checkpoint(&engine, &mut log, p);
                    }
                    Some(SyncEvent::Failed(e)) => {
                        task.metrics.store_poisoned.set(1);
                        engine.handle_failure(&e.to_string());
                    }
                    None => break,
                },
                () = async { if let Some(d) = deadline { sleep_until(d.into()).await } else { std::future::pending().await } } => {
                    engine.handle_timeout(&mut LogJournal(&mut log), Instant::now());
                }
                r = hops.changed() => {
                    if r.is_err() { break }
                    let h = hops.borrow_and_update().clone();
                    engine.set_next_hops(&mut LogJournal(&mut log), h);
                }
                () = shutdown.cancelled() => break,
            }
            if log.end() > committed && engine.failure().is_none() {
                // Records nothing waits for (delivery counts) are written but not synced
                // on their own: the next sync covers them.
                match log.commit_upto(engine.sync_wanted()) {
                    Ok(end) => committed = end,
                    Err(e) => {
                        // Earlier batches are durable (the log synced them before failing):
                        // their acks go out; only what is not on disk fails.
                        let durable = log.durable();
                        engine.handle_durable(&mut LogJournal(&mut log), Instant::now(), durable);
                        task.metrics.store_poisoned.set(1);
                        engine.handle_failure(&e.to_string());
                    }
                }
            }
            task.flush(&mut engine);
            task.update_metrics(&engine, &log);
        }
        // A graceful stop leaves nothing buffered: everything appended reaches the disk.
        if engine.failure().is_none()
            && let Err(e) = log.sync()
        {
            tracing::error!(error = %e, "the last sync before stopping failed");
        }
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

/// A batch stops taking commands once this much is appended: one write stays bounded, and a
/// write that fails (a full disk) fails at most about this much, while earlier batches keep
/// their acks. The sync thread still covers many batches with one `fdatasync`.
const COMMIT_BYTES: usize = 1 << 20;

/// The task's state beside the engine and the log.
struct Task {
    clients: HashMap<ClientId, (Outbox<ServerFrame>, quinn::Connection)>,
    peers: HashMap<BrokerId, (u64, Outbox<PeerOut>)>,
    metrics: Metrics,
    last_stats: crate::durable::Stats,
    /// The segment of the last checkpoint's position.
    checkpoint_segment: u64,
    /// A snapshot taken at a position, waiting for the log to be durable up to it, with the
    /// lowest segment it refers to.
    pending_checkpoint: Option<(Position, Snapshot, Option<u64>)>,
    /// See [`Store::open`].
    max_frame: usize,
}

impl Task {
    fn handle(&mut self, engine: &mut Engine, log: &mut Log, now: Instant, cmd: PersistCommand) {
        let j = &mut LogJournal(log);
        match cmd {
            PersistCommand::ClientUp {
                client,
                frames,
                connection,
                principal,
            } => {
                self.clients.insert(client, (frames, connection));
                engine.client_up(client, principal);
            }
            PersistCommand::Principal { client, principal } => {
                engine.set_principal(j, now, client, principal);
            }
            PersistCommand::ClientGone { client } => {
                self.clients.remove(&client);
                engine.client_gone(j, now, client);
            }
            PersistCommand::Publish { client, items } => {
                for p in items {
                    engine.publish(j, now, client, p.seq, p.event, p.payload);
                }
            }
            PersistCommand::Request { client, frame } => request(engine, j, now, client, frame),
            PersistCommand::PeerUp { peer, link, frames } => {
                self.peers.insert(peer, (link, frames));
                engine.peer_up(j, peer);
            }
            PersistCommand::PeerDown { peer, link } => {
                if self.peers.get(&peer).is_some_and(|(l, _)| *l == link) {
                    self.peers.remove(&peer);
                    engine.peer_down(j, peer);
                }
            }
            PersistCommand::Peer {
                peer,
                link,
                message,
            } => {
                if self.peers.get(&peer).is_none_or(|(l, _)| *l != link) {
                    return;
                }
                match message {
                    PeerMessage::Store {
                        id,
                        dests,
                        attributes,
                        payload,
                    } => engine.handle_store(j, now, peer, id, dests, attributes, payload),
                    PeerMessage::StoreAck { ids } => engine.handle_store_ack(j, peer, &ids),
                    PeerMessage::QueueDecl(decl) => {
                        if let Some(r) = engine.handle_decl(j, peer, decl) {
                            self.metrics
                                .peer_adverts_refused
                                .with_label_values(&["queue_decl", r.as_str()])
                                .inc();
                        }
                    }
                    _ => {}
                }
            }
            PersistCommand::Status { reply } => {
                let _ = reply.send(StoreStatus {
                    failed: engine.failure().map(str::to_owned),
                    disk_full: log.poisoned().is_some_and(|e| e.is_no_space()),
                    remote_queues: engine.remote_queues(),
                    forwards_pending: engine.forwards_pending(),
                    segments: log.segments().len(),
                    bytes: log.bytes_on_disk(),
                    end: log.end().to_string(),
                    durable: log.durable().to_string(),
                });
            }
        }
    }

    /// Hands the engine's outputs, as frames, to the clients' and peers' queues.
    fn flush(&mut self, engine: &mut Engine) {
        while let Some(o) = engine.poll_output() {
            match frames::frame(o, self.max_frame) {
                Framed::Client { client, frames } => {
                    for frame in frames {
                        let Some((tx, conn)) = self.clients.get(&client) else {
                            break;
                        };
                        let size = crate::frame_size::control_frame_size(&frame);
                        if tx.push(frame, size) == Pushed::Full {
                            tracing::warn!(
                                client,
                                "client does not read its control stream; disconnecting"
                            );
                            self.metrics.slow_consumer_disconnects.inc();
                            conn.close(
                                ErrorCode::SlowConsumer.code().into(),
                                b"control stream backlog full",
                            );
                            self.clients.remove(&client);
                        }
                    }
                }
                Framed::Peer { peer, message } => {
                    let Some((_, tx)) = self.peers.get(&peer) else {
                        continue;
                    };
                    // Never refused for room: store-and-forward is windowed (`store.peer_window`).
                    // A closed outbox is a dead link; its messages are sent again when it comes
                    // back.
                    let out = PeerOut::Message(message);
                    let size = out.size();
                    if tx.push(out, size) == Pushed::Closed {
                        tracing::debug!(%peer, "persistent frame for a closing peer link dropped");
                    }
                }
            }
        }
    }

    /// Takes a snapshot once a segment was finished since the last checkpoint, and writes it
    /// (then deletes dead segments) once the log is durable up to it.
    fn maybe_checkpoint(&mut self, engine: &Engine, log: &mut Log, durable: Position) {
        if engine.failure().is_some() {
            return;
        }
        if self.pending_checkpoint.is_none() && log.end().segment > self.checkpoint_segment {
            self.pending_checkpoint = Some((log.end(), engine.snapshot(), engine.live_floor()));
        }
        let Some((upto, _, _)) = &self.pending_checkpoint else {
            return;
        };
        if *upto > durable {
            return;
        }
        let Some((upto, snap, snap_floor)) = self.pending_checkpoint.take() else {
            return;
        };
        let started = Instant::now();
        if let Err(e) = log.write_checkpoint(upto, &crate::durable::encode_snapshot(&snap)) {
            tracing::error!(error = %e, "writing a checkpoint failed");
            return;
        }
        self.checkpoint_segment = upto.segment;
        // Segments the checkpoint's state refers to must stay even if their messages were
        // acked since: those acks may not survive a crash, and recovery starts from the
        // snapshot.
        let floor = snap_floor
            .into_iter()
            .chain(engine.live_floor())
            .fold(upto.segment, u64::min);
        match log.remove_segments_before(floor) {
            Ok(n) => {
                self.metrics.store_segments_deleted.inc_by(n as u64);
                tracing::debug!(
                    deleted = n,
                    at = %upto,
                    took = ?started.elapsed(),
                    "checkpoint written"
                );
            }
            Err(e) => tracing::error!(error = %e, "deleting segments failed"),
        }
        self.metrics.store_checkpoints.inc();
    }

    fn update_metrics(&mut self, engine: &Engine, log: &Log) {
        let s = engine.stats();
        let l = self.last_stats;
        let m = &self.metrics;
        m.persistent_published.inc_by(s.stored - l.stored);
        m.persistent_duplicates.inc_by(s.duplicates - l.duplicates);
        m.persistent_unmatched.inc_by(s.unmatched - l.unmatched);
        m.durable_delivered.inc_by(s.delivered - l.delivered);
        m.durable_redelivered.inc_by(s.redelivered - l.redelivered);
        m.durable_acked.inc_by(s.acked - l.acked);
        m.dead_lettered.inc_by(s.dead_lettered - l.dead_lettered);
        m.store_forwarded.inc_by(s.forwarded - l.forwarded);
        m.persistent_publish_failures
            .inc_by(s.publish_failures - l.publish_failures);
        for (action, now, before) in [
            ("queue", s.denied_queue, l.denied_queue),
            ("producer", s.denied_producer, l.denied_producer),
            ("receive", s.denied_receive, l.denied_receive),
        ] {
            if now > before {
                m.permission_denied
                    .with_label_values(&[action])
                    .inc_by(now - before);
            }
        }
        for limit in Limit::ALL {
            let (now, before) = (s.limits[limit as usize], l.limits[limit as usize]);
            if now > before {
                m.limits_hit
                    .with_label_values(&[limit.name()])
                    .inc_by(now - before);
            }
        }
        self.last_stats = s;
        m.store_bytes
            .set(i64::try_from(log.bytes_on_disk()).unwrap_or(i64::MAX));
    }
}

/// Carries out a durable request of a client.
fn request(
    engine: &mut Engine,
    j: &mut LogJournal<'_>,
    now: Instant,
    client: ClientId,
    frame: ClientFrame,
) {
    match frame {
        ClientFrame::Producer { request, producer } => {
            engine.producer(j, now, client, request, producer);
        }
        ClientFrame::QueueAdd {
            request,
            name,
            filter,
            options,
        } => engine.queue_add(j, client, request, &name, &filter, options),
        ClientFrame::QueueRemove { request, name } => {
            engine.queue_remove(j, client, request, &name)
        }
        ClientFrame::QueuePurge { request, name } => engine.queue_purge(j, client, request, &name),
        ClientFrame::QueuePeek { request, name, max } => {
            engine.queue_peek(j, client, request, &name, max)
        }
        ClientFrame::QueueList { request } => engine.queue_info(client, request, None),
        ClientFrame::QueueInfo { request, name } => engine.queue_info(client, request, Some(&name)),
        ClientFrame::Consume {
            request,
            queue,
            mode,
        } => engine.consume(j, now, client, request, &queue, mode),
        ClientFrame::Fetch {
            request,
            consumer,
            batch,
            max_wait_ms,
        } => engine.fetch(
            j,
            now,
            client,
            request,
            consumer,
            batch,
            Duration::from_millis(max_wait_ms),
        ),
        ClientFrame::Ack {
            request,
            consumer,
            tags,
        } => engine.ack(j, now, client, request, consumer, &tags),
        ClientFrame::Nak {
            request,
            consumer,
            tags,
            delay_ms,
        } => engine.nak(
            j,
            now,
            client,
            request,
            consumer,
            &tags,
            Duration::from_millis(delay_ms),
        ),
        ClientFrame::StopConsume { request, consumer } => {
            engine.stop_consume(j, now, client, request, consumer);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests;
