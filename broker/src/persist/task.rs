//! The persist task's loop: commands in, group commit, outputs out, checkpoints.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use palio_protocol::{ClientFrame, ErrorCode, ServerFrame};
use palio_topology::BrokerId;
use tokio::sync::{mpsc, watch};
use tokio::time::sleep_until;
use tokio_util::sync::CancellationToken;

use super::PersistCommand;
use super::frames::Framed;
use super::open::Store;
use super::{StoreStatus, frames};
use crate::durable::{ClientId, Engine, Journal, Limit, Snapshot};
use crate::metrics::Metrics;
use crate::outbox::{Outbox, Pushed};
use crate::store::{Log, Position, StoreError, SyncEvent};
use crate::wire::PeerMessage;
use crate::wire::PeerOut;

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

impl Store {
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
