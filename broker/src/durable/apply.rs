//! Records turned into state: [`Engine::write`] appends a record and applies it, recovery
//! applies the records it reads back ([`Engine::apply_bytes`]); both go through
//! [`Engine::apply`], so live state and recovered state cannot differ.

use std::collections::{BTreeMap, BTreeSet};

use palio_protocol::ErrorCode;
use palio_topology::BrokerId;

use super::engine::{Engine, Forward, Journal, Refusal};
use super::queue::Stored;
use super::record::{LaneId, Record, decode, encode};
use crate::store::{Position, StoreError};
use crate::wire::MessageId;

impl Engine {
    /// Appends `rec` and applies it. Fails (and fails the engine) if the journal refuses.
    pub(super) fn write(&mut self, j: &mut impl Journal, rec: Record) -> Result<Position, Refusal> {
        let bytes = encode(&rec);
        self.write_encoded(j, &rec, &bytes)
    }

    /// [`Engine::write`] of a record already encoded as `bytes`.
    pub(super) fn write_encoded(
        &mut self,
        j: &mut impl Journal,
        rec: &Record,
        bytes: &[u8],
    ) -> Result<Position, Refusal> {
        if let Some(why) = &self.failed {
            return Err((ErrorCode::StoreUnavailable, why.clone()));
        }
        match j.append(bytes) {
            Ok(pos) => {
                if rec.awaits_sync() {
                    self.wanted = self.wanted.max(j.end());
                }
                self.apply(pos, rec, bytes.len() as u64, true);
                Ok(pos)
            }
            Err(e @ StoreError::TooLarge { .. }) => {
                // This record only: the store is fine.
                Err((ErrorCode::LimitExceeded, e.to_string()))
            }
            Err(e) => {
                let why = e.to_string();
                self.handle_failure(&why);
                Err((ErrorCode::StoreUnavailable, why))
            }
        }
    }

    /// Applies a record read back during recovery. Returns `false` for bytes that are not a
    /// record of this version (they are skipped).
    pub(crate) fn apply_bytes(&mut self, pos: Position, bytes: &[u8]) -> bool {
        match decode::<Record>(bytes) {
            Ok(rec) => {
                self.apply(pos, &rec, bytes.len() as u64, false);
                true
            }
            Err(_) => false,
        }
    }

    /// Turns a record into state. `size`: the record's length in the log. `live`: written just
    /// now (so its messages are not durable yet) rather than read back in recovery.
    pub(crate) fn apply(&mut self, pos: Position, rec: &Record, size: u64, live: bool) {
        match rec {
            Record::Message {
                id,
                producer,
                local,
                queues,
                dests,
                at_ms,
                matched,
                ..
            } => {
                if id.origin == self.cfg.me {
                    self.next_msg = self.next_msg.max(id.n.saturating_add(1));
                }
                if let Some((p, seq)) = producer {
                    self.producer_stored(p, *seq, *at_ms, *matched);
                }
                if *local && producer.is_none() {
                    self.remember(*id);
                }
                let stored = Stored {
                    pos,
                    size,
                    at_ms: *at_ms,
                };
                for &(key, tag) in queues {
                    if let Some(q) = self.queues.get_mut(&key) {
                        q.next_tag = q.next_tag.max(tag.saturating_add(1));
                        let lane = LaneId {
                            queue: key,
                            dead: false,
                        };
                        self.enqueue(lane, tag, stored, 0, !live, live);
                    }
                }
                if !dests.is_empty() {
                    self.add_forward(*id, pos, dests.iter().copied().collect());
                }
                self.stats.stored += 1;
            }
            Record::QueueAdded {
                key,
                name,
                filter,
                ack_wait_ms,
                max_deliveries,
                owner,
                limits,
            } => {
                self.next_queue = self.next_queue.max(key.saturating_add(1));
                let options = super::admin::QueueSettings {
                    ack_wait_ms: *ack_wait_ms,
                    max_deliveries: *max_deliveries,
                    owner: owner.clone(),
                    limits: *limits,
                };
                if let Some(q) = self.make_queue(*key, name, filter, options) {
                    self.names.insert(name.clone(), *key);
                    self.local.insert(*key, &q.filter, *key);
                    self.queues.insert(*key, q);
                }
            }
            Record::QueueRemoved { key } => self.drop_queue(*key),
            Record::Acked { lane, tags } => {
                for tag in tags {
                    if self.drop_entry(*lane, *tag) {
                        self.stats.acked += 1;
                    }
                }
            }
            Record::Dropped { lane, tags } => {
                for tag in tags {
                    self.drop_entry(*lane, *tag);
                }
            }
            Record::Purged { lane } => {
                self.purged(*lane);
            }
            Record::Delivered { lane, tag, count } => self.delivered(*lane, *tag, *count),
            Record::DeliveredMany { lane, deliveries } => {
                for &(tag, count) in deliveries {
                    self.delivered(*lane, tag, count);
                }
            }
            Record::DeadLettered { queue, tags } => {
                for &tag in tags {
                    let main = LaneId {
                        queue: *queue,
                        dead: false,
                    };
                    let Some(stored) = self
                        .lane(main)
                        .and_then(|l| l.entries.get(&tag))
                        .map(|e| e.stored())
                    else {
                        continue;
                    };
                    // Out of the main lane, into the dead-letter lane if its limits let it.
                    self.drop_entry(main, tag);
                    let dead = LaneId { dead: true, ..main };
                    self.enqueue(dead, tag, stored, 0, true, live);
                }
            }
            Record::HandedOff { id, dests } => {
                let mut done = false;
                if let Some(f) = self.forwards.get_mut(id) {
                    for d in dests {
                        f.unsent.remove(d);
                        f.sent.retain(|_, s| {
                            s.remove(d);
                            !s.is_empty()
                        });
                    }
                    done = f.unsent.is_empty() && f.sent.is_empty();
                }
                if done && let Some(f) = self.forwards.remove(id) {
                    self.to_send.remove(id);
                    self.unref(f.pos);
                }
            }
            Record::Directory(decl) => {
                self.learn(decl.clone());
            }
            Record::ProducerClaimed { name, owner, at_ms } => {
                self.producer_claimed(name, owner, *at_ms);
            }
            Record::ProducersForgotten { names } => {
                for name in names {
                    self.producers.remove(name);
                }
            }
        }
    }

    /// A delivery count recorded for `tag` (counts only grow).
    fn delivered(&mut self, lane: LaneId, tag: u64, count: u32) {
        if let Some(e) = self.lane_mut(lane).and_then(|l| l.entries.get_mut(&tag)) {
            e.count = e.count.max(count);
        }
    }

    /// Removes a lane entry (acked, or dropped by a limit), releasing its consumer slot and
    /// segment reference; returns whether there was one.
    pub(super) fn drop_entry(&mut self, lane: LaneId, tag: u64) -> bool {
        self.detach_in_flight(lane, tag);
        let Some(e) = self.lane_mut(lane).and_then(|l| l.remove(tag)) else {
            return false;
        };
        self.unref(e.pos);
        true
    }

    /// If `tag` is in flight to a consumer, forgets that.
    pub(super) fn detach_in_flight(&mut self, lane: LaneId, tag: u64) {
        let Some(consumer) = self
            .lane(lane)
            .and_then(|l| match l.entries.get(&tag)?.state {
                super::queue::State::InFlight { consumer, .. } => Some(consumer),
                _ => None,
            })
        else {
            return;
        };
        if let Some(c) = self.consumers.get_mut(&consumer) {
            c.in_flight.remove(&tag);
        }
    }

    pub(super) fn add_forward(&mut self, id: MessageId, pos: Position, dests: BTreeSet<BrokerId>) {
        if dests.is_empty() {
            return;
        }
        self.to_send.insert(id);
        if let Some(f) = self.forwards.get_mut(&id) {
            // Stored again for more destinations: the first copy carries them all.
            f.unsent.extend(dests);
            return;
        }
        *self.seg_refs.entry(pos.segment).or_default() += 1;
        self.forwards.insert(
            id,
            Forward {
                pos,
                unsent: dests,
                sent: BTreeMap::new(),
            },
        );
        self.to_send.insert(id);
    }

    pub(super) fn unref(&mut self, pos: Position) {
        if let Some(n) = self.seg_refs.get_mut(&pos.segment) {
            *n -= 1;
            if *n == 0 {
                self.seg_refs.remove(&pos.segment);
            }
        }
    }

    /// Remembers that `id` went into the local queues, forgetting the oldest id past the
    /// de-duplication window.
    pub(super) fn remember(&mut self, id: MessageId) {
        if self.seen.insert(id) {
            self.seen_order.push_back(id);
            while self.seen_order.len() > self.cfg.dedup_window {
                if let Some(old) = self.seen_order.pop_front() {
                    self.seen.remove(&old);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    fn engine() -> Engine {
        Engine::new(super::super::tests::config(1))
    }

    /// `{"QueueAdded": [u64::MAX, "q", "TRUE", 1000, 2]}`: the `records` fuzz target's crash
    /// (a sample with its key widened to `u64::MAX`; name and filter shortened), which
    /// overflowed the next queue key during recovery.
    const QUEUE_AT_MAX: &[u8] =
        b"\x81\xaaQueueAdded\x95\xcf\xff\xff\xff\xff\xff\xff\xff\xff\xa1q\xa4TRUE\xcd\x03\xe8\x02";

    #[test]
    fn a_stored_queue_key_at_the_maximum_does_not_overflow() {
        let mut e = engine();
        assert!(e.apply_bytes(Position::new(0, 32), QUEUE_AT_MAX));
        assert_eq!(e.next_queue, u64::MAX);
        assert!(e.queues.contains_key(&u64::MAX));
    }

    #[test]
    fn a_stored_tag_at_the_maximum_does_not_overflow() {
        // {"QueueAdded": [1, "q", "TRUE", 1000, 2]}, then a message in queue 1 with tag
        // u64::MAX: {"Message": [[1, 0], nil, [], b"", true, [[1, u64::MAX]], []]}.
        let queue = b"\x81\xaaQueueAdded\x95\x01\xa1q\xa4TRUE\xcd\x03\xe8\x02";
        let message = b"\x81\xa7Message\x97\x92\x01\x00\xc0\x90\xc4\x00\xc3\x91\x92\x01\xcf\xff\xff\xff\xff\xff\xff\xff\xff\x90";
        let mut e = engine();
        assert!(e.apply_bytes(Position::new(0, 32), queue));
        assert!(e.apply_bytes(Position::new(0, 64), message));
        let q = e.queues.get(&1).expect("the queue");
        assert_eq!(q.next_tag, u64::MAX);
        assert!(q.main.entries.contains_key(&u64::MAX));
    }

    #[test]
    fn a_stored_directory_generation_at_the_maximum_does_not_overflow() {
        // {"Directory": [1, "q", "TRUE", u64::MAX, false]}: this broker's own entry.
        let decl =
            b"\x81\xa9Directory\x95\x01\xa1q\xa4TRUE\xcf\xff\xff\xff\xff\xff\xff\xff\xff\xc2";
        let mut e = engine();
        assert!(e.apply_bytes(Position::new(0, 32), decl));
        assert_eq!(e.next_generation, u64::MAX);
    }
}
