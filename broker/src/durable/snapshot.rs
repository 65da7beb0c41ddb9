//! Checkpoints: the engine's state as a [`Snapshot`], and an engine rebuilt from one.
//!
//! Recovery loads the last checkpoint with [`Engine::from_snapshot`] and then replays the
//! records written after it with [`Engine::apply_bytes`]; the indexes of filters (local queues,
//! remote queues) are rebuilt on the way, as queues and directory entries come back.

use super::engine::{Engine, EngineConfig, duration_ms};
use super::queue::Lane;
use super::record::{QueueSnapshot, Snapshot};
use crate::store::Position;

impl Engine {
    /// An engine holding the state of a checkpoint.
    pub(crate) fn from_snapshot(cfg: EngineConfig, snap: Snapshot) -> Self {
        let mut e = Self::new(cfg);
        e.next_msg = snap.next_msg;
        e.next_queue = snap.next_queue.max(1);
        e.next_generation = snap.next_generation.max(1);
        for q in snap.queues {
            let Some(mut queue) =
                e.make_queue(q.key, &q.name, &q.filter, q.ack_wait_ms, q.max_deliveries)
            else {
                continue;
            };
            queue.next_tag = q.next_tag;
            for (tag, pos, count) in q.main {
                queue.main.insert(tag, pos, count, true);
                *e.seg_refs.entry(pos.segment).or_default() += 1;
            }
            for (tag, pos, count) in q.dead {
                queue.dead.insert(tag, pos, count, true);
                *e.seg_refs.entry(pos.segment).or_default() += 1;
            }
            e.names.insert(q.name, q.key);
            e.local.insert(q.key, &queue.filter, q.key);
            e.queues.insert(q.key, queue);
        }
        for (id, pos, dests) in snap.forwards {
            e.add_forward(id, pos, dests.into_iter().collect());
        }
        e.producers = snap.producers.into_iter().collect();
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
        let lane = |l: &Lane| -> Vec<(u64, Position, u32)> {
            l.entries
                .iter()
                .map(|(tag, e)| (*tag, e.pos, e.count))
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
                    main: lane(&q.main),
                    dead: lane(&q.dead),
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
            producers: self
                .producers
                .iter()
                .map(|(p, s)| (p.clone(), *s))
                .collect(),
            seen: self.seen_order.iter().copied().collect(),
            directory: self.directory.values().cloned().collect(),
        }
    }
}
