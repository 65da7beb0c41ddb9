//! One durable queue: its options and two lanes of messages (main and dead-letter).
//!
//! A message in a lane is *unsynced* (stored but not yet durable: not deliverable), *ready*,
//! *delayed* (nakked, ready again at a time) or *in flight* (delivered to a consumer, waiting
//! for its ack until a deadline). Ready messages go out in tag order, so a redelivered message
//! goes before newer ones.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use palio_filter::Filter;

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

/// A message in a lane.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// Where its record is in the log.
    pub(crate) pos: Position,
    /// How many times it was delivered.
    pub(crate) count: u32,
    pub(crate) state: State,
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
}

impl Lane {
    /// Adds an entry (state `Unsynced` or `Ready`).
    pub(crate) fn insert(&mut self, tag: u64, pos: Position, count: u32, ready: bool) {
        let state = if ready {
            self.ready.insert(tag);
            State::Ready
        } else {
            self.unsynced.push_back(tag);
            State::Unsynced
        };
        if let Some(old) = self.entries.insert(tag, Entry { pos, count, state }) {
            self.forget_state(tag, old.state);
        }
    }

    /// Removes an entry; returns it.
    pub(crate) fn remove(&mut self, tag: u64) -> Option<Entry> {
        let e = self.entries.remove(&tag)?;
        self.forget_state(tag, e.state);
        Some(e)
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

/// A durable queue at this broker.
#[derive(Debug)]
pub(crate) struct Queue {
    pub(crate) key: u64,
    pub(crate) name: String,
    pub(crate) filter: Filter,
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

    fn pos(offset: u64) -> Position {
        Position { segment: 0, offset }
    }

    #[test]
    fn entries_become_ready_in_order_once_durable() {
        let mut l = Lane::default();
        l.insert(0, pos(10), 0, false);
        l.insert(1, pos(20), 0, false);
        assert_eq!(l.pending(), 2);
        assert!(l.ready.is_empty());
        assert!(l.synced(pos(15)));
        assert_eq!(l.ready.iter().copied().collect::<Vec<_>>(), vec![0]);
        assert!(!l.synced(pos(15)));
        assert!(l.synced(pos(21)));
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
