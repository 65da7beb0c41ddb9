//! Checkpoints: the engine's state as a [`Snapshot`], and an engine rebuilt from one.
//!
//! Recovery loads the last checkpoint with [`Engine::from_snapshot`] and then replays the
//! records written after it with [`Engine::apply_bytes`]; the indexes of filters (local queues,
//! remote queues) are rebuilt on the way, as queues and directory entries come back.

use palio_protocol::QueueMatches;

use super::admin::QueueSettings;
use super::engine::{Engine, EngineConfig, duration_ms};
use super::producers::ProducerEntry;
use super::queue::{Lane, Stored};
use super::record::{LaneId, ProducerSnapshot, QueueSnapshot, Snapshot, SnapshotEntry};

impl Engine {
    /// An engine holding the state of a checkpoint.
    pub(crate) fn from_snapshot(cfg: EngineConfig, snap: Snapshot) -> Self {
        let mut e = Self::new(cfg);
        e.next_msg = snap.next_msg;
        e.next_queue = snap.next_queue.max(1);
        e.next_generation = snap.next_generation.max(1);
        for q in snap.queues {
            let settings = QueueSettings {
                ack_wait_ms: q.ack_wait_ms,
                max_deliveries: q.max_deliveries,
                owner: q.owner,
                limits: q.limits,
            };
            let Some(mut queue) = e.make_queue(q.key, &q.name, &q.filter, settings) else {
                continue;
            };
            queue.next_tag = q.next_tag;
            e.names.insert(q.name, q.key);
            e.local.insert(q.key, &queue.filter, q.key);
            e.queues.insert(q.key, queue);
            // Checkpoints from before queue limits hold entries without sizes (such queues have
            // no limits, so the sizes count for nothing but `bytes` in their info).
            let legacy = |(tag, pos, count): (u64, _, u32)| SnapshotEntry {
                tag,
                pos,
                count,
                size: 0,
                at_ms: 0,
            };
            let lanes = [
                (false, q.main.into_iter().map(legacy).chain(q.main_sized)),
                (true, q.dead.into_iter().map(legacy).chain(q.dead_sized)),
            ];
            for (dead, entries) in lanes {
                let lane = LaneId { queue: q.key, dead };
                for s in entries {
                    let stored = Stored {
                        pos: s.pos,
                        size: s.size,
                        at_ms: s.at_ms,
                    };
                    e.enqueue(lane, s.tag, stored, s.count, true, false);
                }
            }
        }
        for (id, pos, dests) in snap.forwards {
            e.add_forward(id, pos, dests.into_iter().collect());
        }
        // Checkpoints from before producer owners have sequence numbers only; later ones have
        // the table.
        for (name, seq) in snap.producers {
            e.producer_stored(&name, seq, 0, None);
        }
        for p in snap.producer_table {
            let entry = ProducerEntry {
                owner: p.owner,
                last_seq: p.last_seq,
                last_used_ms: p.last_used_ms,
                attached: 0,
                matches: p
                    .matches
                    .into_iter()
                    .map(|(from, through, queues)| QueueMatches {
                        from,
                        through,
                        queues,
                    })
                    .collect(),
            };
            e.producers.insert(p.name, entry);
        }
        for id in snap.seen {
            e.remember(id);
        }
        for decl in snap.directory {
            e.learn(decl);
        }
        e
    }

    /// The state to checkpoint. Deliveries in flight count as not delivered.
    pub(crate) fn snapshot(&self) -> Snapshot {
        let lane = |l: &Lane| -> Vec<SnapshotEntry> {
            l.entries
                .iter()
                .map(|(tag, e)| SnapshotEntry {
                    tag: *tag,
                    pos: e.pos,
                    count: e.count,
                    size: e.size,
                    at_ms: e.at_ms,
                })
                .collect()
        };
        Snapshot {
            next_msg: self.next_msg,
            next_queue: self.next_queue,
            next_generation: self.next_generation,
            queues: self
                .queues
                .values()
                .map(|q| QueueSnapshot {
                    key: q.key,
                    name: q.name.clone(),
                    filter: q.filter.source().to_owned(),
                    ack_wait_ms: duration_ms(q.ack_wait),
                    max_deliveries: q.max_deliveries,
                    next_tag: q.next_tag,
                    main: Vec::new(),
                    dead: Vec::new(),
                    owner: q.owner.clone(),
                    limits: q.limits,
                    main_sized: lane(&q.main),
                    dead_sized: lane(&q.dead),
                })
                .collect(),
            forwards: self
                .forwards
                .iter()
                .map(|(id, f)| {
                    let mut dests = f.unsent.clone();
                    for d in f.sent.values() {
                        dests.extend(d.iter().copied());
                    }
                    (*id, f.pos, dests.into_iter().collect())
                })
                .collect(),
            producers: Vec::new(),
            seen: self.seen_order.iter().copied().collect(),
            directory: self.directory.values().cloned().collect(),
            producer_table: self
                .producers
                .iter()
                .map(|(name, p)| ProducerSnapshot {
                    name: name.clone(),
                    owner: p.owner.clone(),
                    last_seq: p.last_seq,
                    last_used_ms: p.last_used_ms,
                    matches: p
                        .matches
                        .iter()
                        .map(|m| (m.from, m.through, m.queues))
                        .collect(),
                })
                .collect(),
        }
    }
}
