//! One durable queue: its owner, options and limits, and two lanes of messages (main and
//! dead-letter), each counting its messages' bytes for the queue's `max_bytes`.
//!
//! A message in a lane is *unsynced* (stored but not yet durable: not deliverable), *ready*,
//! *delayed* (nakked, ready again at a time) or *in flight* (delivered to a consumer, waiting
//! for its ack until a deadline). Ready messages go out in tag order, so a redelivered message
//! goes before newer ones.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use palio_filter::Filter;

use super::record::QueueLimits;
use crate::store::Position;

/// Where a message of a lane is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// Stored, not yet durable.
    Unsynced,
    /// Deliverable.
    Ready,
    /// Nakked: deliverable again at this time.
    Delayed(Instant),
    /// Delivered to a consumer, which must ack it before the deadline.
    InFlight { consumer: u64, deadline: Instant },
}

/// Where a message's record is and what it takes: what a lane entry keeps of its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stored {
    /// Where its record is in the log.
    pub(crate) pos: Position,
    /// Its record's size in bytes (what `max_bytes` counts).
    pub(crate) size: u64,
    /// When this broker stored it (Unix milliseconds; what `max_age` counts from).
    pub(crate) at_ms: u64,
}

/// A message in a lane.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// Where its record is in the log.
    pub(crate) pos: Position,
    /// Its record's size in bytes.
    pub(crate) size: u64,
    /// When it was stored (Unix milliseconds).
    pub(crate) at_ms: u64,
    /// How many times it was delivered.
    pub(crate) count: u32,
    pub(crate) state: State,
}

impl Entry {
    /// Its message's place and size.
    pub(crate) fn stored(&self) -> Stored {
        Stored {
            pos: self.pos,
            size: self.size,
            at_ms: self.at_ms,
        }
    }
}

/// The messages of a queue's main or dead-letter lane.
#[derive(Debug, Default)]
pub(crate) struct Lane {
    pub(crate) entries: BTreeMap<u64, Entry>,
    /// Tags of ready entries, in order.
    pub(crate) ready: BTreeSet<u64>,
    /// Tags of unsynced entries, in log order.
    pub(crate) unsynced: VecDeque<u64>,
    /// Consumers attached to this lane, served round-robin from `turn`.
    pub(crate) consumers: Vec<u64>,
    pub(crate) turn: usize,
    pub(crate) in_flight: usize,
    pub(crate) delayed: usize,
    /// The sum of its entries' sizes.
    pub(crate) bytes: u64,
}

impl Lane {
    /// Adds an entry (state `Unsynced` or `Ready`).
    pub(crate) fn insert(&mut self, tag: u64, stored: Stored, count: u32, ready: bool) {
        let state = if ready {
            self.ready.insert(tag);
            State::Ready
        } else {
            self.unsynced.push_back(tag);
            State::Unsynced
        };
        let entry = Entry {
            pos: stored.pos,
            size: stored.size,
            at_ms: stored.at_ms,
            count,
            state,
        };
        self.bytes = self.bytes.saturating_add(stored.size);
        if let Some(old) = self.entries.insert(tag, entry) {
            self.bytes = self.bytes.saturating_sub(old.size);
            self.forget_state(tag, old.state);
        }
    }

    /// Removes an entry; returns it.
    pub(crate) fn remove(&mut self, tag: u64) -> Option<Entry> {
        let e = self.entries.remove(&tag)?;
        self.bytes = self.bytes.saturating_sub(e.size);
        self.forget_state(tag, e.state);
        Some(e)
    }

    /// Whether a message of `size` bytes finds no room: the lane is at `max_messages`, or
    /// would go over `max_bytes` with it.
    pub(crate) fn full_for(&self, limits: &QueueLimits, size: u64) -> Option<Over> {
        if limits.max_messages > 0 && self.entries.len() as u64 >= limits.max_messages {
            return Some(Over::Messages);
        }
        if limits.max_bytes > 0 && self.bytes.saturating_add(size) > limits.max_bytes {
            return Some(Over::Bytes);
        }
        None
    }

    fn forget_state(&mut self, tag: u64, state: State) {
        match state {
            State::Unsynced => self.unsynced.retain(|t| *t != tag),
            State::Ready => {
                self.ready.remove(&tag);
            }
            State::Delayed(_) => self.delayed -= 1,
            State::InFlight { .. } => self.in_flight -= 1,
        }
    }

    /// Moves entry `tag` to `state`.
    pub(crate) fn set_state(&mut self, tag: u64, state: State) {
        let Some(e) = self.entries.get_mut(&tag) else {
            return;
        };
        let old = std::mem::replace(&mut e.state, state);
        self.forget_state(tag, old);
        match state {
            State::Unsynced => self.unsynced.push_back(tag),
            State::Ready => {
                self.ready.insert(tag);
            }
            State::Delayed(_) => self.delayed += 1,
            State::InFlight { .. } => self.in_flight += 1,
        }
    }

    /// Makes the unsynced entries stored before `durable` ready; returns whether any became
    /// ready.
    pub(crate) fn synced(&mut self, durable: Position) -> bool {
        let mut any = false;
        while let Some(&tag) = self.unsynced.front() {
            let Some(e) = self.entries.get_mut(&tag) else {
                self.unsynced.pop_front();
                continue;
            };
            if e.pos >= durable {
                break;
            }
            self.unsynced.pop_front();
            e.state = State::Ready;
            self.ready.insert(tag);
            any = true;
        }
        any
    }

    /// Messages stored and not delivered (ready, delayed or not yet durable).
    pub(crate) fn pending(&self) -> u64 {
        (self.ready.len() + self.delayed + self.unsynced.len()) as u64
    }

    /// The next consumer in round-robin order that `can_take`, if any.
    pub(crate) fn next_consumer(&mut self, mut can_take: impl FnMut(u64) -> bool) -> Option<u64> {
        let n = self.consumers.len();
        for i in 0..n {
            let idx = (self.turn + i) % n;
            let c = self.consumers[idx];
            if can_take(c) {
                self.turn = (idx + 1) % n;
                return Some(c);
            }
        }
        None
    }
}

/// Which limit a full lane is at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Over {
    Messages,
    Bytes,
}

/// A durable queue at this broker.
#[derive(Debug)]
pub(crate) struct Queue {
    pub(crate) key: u64,
    pub(crate) name: String,
    /// The principal that added it (empty: added before queues had owners, everyone's).
    pub(crate) owner: String,
    pub(crate) filter: Filter,
    pub(crate) limits: QueueLimits,
    /// When the `max_age` timer of this queue fires, if one is set (for its oldest message).
    pub(crate) expiry: Option<Instant>,
    pub(crate) ack_wait: Duration,
    /// 0 = no limit.
    pub(crate) max_deliveries: u32,
    /// The tag the next message gets.
    pub(crate) next_tag: u64,
    pub(crate) main: Lane,
    pub(crate) dead: Lane,
}

impl Queue {
    /// The lane.
    pub(crate) fn lane(&self, dead: bool) -> &Lane {
        if dead { &self.dead } else { &self.main }
    }

    /// The lane, mutably.
    pub(crate) fn lane_mut(&mut self, dead: bool) -> &mut Lane {
        if dead { &mut self.dead } else { &mut self.main }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(offset: u64) -> Stored {
        Stored {
            pos: Position { segment: 0, offset },
            size: 10,
            at_ms: 0,
        }
    }

    #[test]
    fn entries_become_ready_in_order_once_durable() {
        let mut l = Lane::default();
        l.insert(0, pos(10), 0, false);
        l.insert(1, pos(20), 0, false);
        assert_eq!(l.pending(), 2);
        assert!(l.ready.is_empty());
        assert!(l.synced(pos(15).pos));
        assert_eq!(l.ready.iter().copied().collect::<Vec<_>>(), vec![0]);
        assert!(!l.synced(pos(15).pos));
        assert!(l.synced(pos(21).pos));
        assert_eq!(l.ready.len(), 2);
    }

    #[test]
    fn state_counters_follow_moves_and_removal() {
        let mut l = Lane::default();
        l.insert(0, pos(1), 0, true);
        l.insert(1, pos(2), 0, true);
        let t = Instant::now();
        l.set_state(
            0,
            State::InFlight {
                consumer: 1,
                deadline: t,
            },
        );
        l.set_state(1, State::Delayed(t));
        assert_eq!((l.in_flight, l.delayed, l.ready.len()), (1, 1, 0));
        assert_eq!(l.pending(), 1);
        l.remove(0);
        l.set_state(1, State::Ready);
        assert_eq!((l.in_flight, l.delayed, l.ready.len()), (0, 0, 1));
    }

    #[test]
    fn bytes_follow_insertion_and_removal_and_tell_when_full() {
        let mut l = Lane::default();
        let limits = QueueLimits {
            max_messages: 3,
            max_bytes: 25,
            ..QueueLimits::default()
        };
        assert_eq!(l.full_for(&limits, 10), None);
        l.insert(0, pos(1), 0, true);
        l.insert(1, pos(2), 0, true);
        assert_eq!(l.bytes, 20);
        assert_eq!(l.full_for(&limits, 5), None);
        assert_eq!(l.full_for(&limits, 6), Some(Over::Bytes));
        l.insert(2, Stored { size: 1, ..pos(3) }, 0, true);
        assert_eq!(l.full_for(&limits, 1), Some(Over::Messages));
        l.remove(0);
        assert_eq!(l.bytes, 11);
        assert_eq!(l.full_for(&limits, 14), None);
        assert_eq!(l.full_for(&QueueLimits::default(), u64::MAX), None);
    }

    #[test]
    fn round_robin_skips_full_consumers() {
        let mut l = Lane {
            consumers: vec![1, 2, 3],
            ..Lane::default()
        };
        assert_eq!(l.next_consumer(|c| c != 1), Some(2));
        assert_eq!(l.next_consumer(|_| true), Some(3));
        assert_eq!(l.next_consumer(|_| true), Some(1));
        assert_eq!(l.next_consumer(|_| false), None);
    }
}
