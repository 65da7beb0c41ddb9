//! The member side: follow the committed log from a replica and deliver it in order.
//!
//! A reader follows one replica (itself if it is one), asking `Follow { from: next }`, and
//! delivers what it is streamed strictly in sequence order: the message at `next`, then
//! `next + 1`, … — never a gap, never a duplicate, whoever sent it (positions are the same at
//! every replica, so items from any replica can be taken). It asks again every third of
//! `stall` (a lost push is noticed when a later one starts beyond `next`, and is asked for at
//! once). When nothing has been delivered for `stall`, it follows the next replica from `next`.
//! When every replica has been tried since the last delivery and those that answered no longer
//! hold `next` (it is behind their `floor`), it reports a gap up to the lowest floor and goes on.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use super::wire::Body;
use crate::BrokerId;
use crate::group::{Delivery, Effect, Position};

/// The reader of one broker.
#[derive(Debug)]
pub(crate) struct Reader {
    me: BrokerId,
    voters: Vec<BrokerId>,
    reading: bool,
    /// The next sequence to deliver (`None`: waiting to learn where the log is).
    next: Option<u64>,
    source: BrokerId,
    last_progress: Instant,
    keepalive_at: Instant,
    /// Replicas tried since the last progress, and those that no longer hold `next`.
    tried: BTreeSet<BrokerId>,
    gone: BTreeMap<BrokerId, u64>,
    last: Option<Position>,
    stall: Duration,
}

impl Reader {
    pub(crate) fn new(me: BrokerId, voters: &[BrokerId], stall: Duration, now: Instant) -> Self {
        let source = if voters.contains(&me) {
            me
        } else {
            voters
                .get(me.0 as usize % voters.len().max(1))
                .copied()
                .unwrap_or(me)
        };
        Reader {
            me,
            voters: voters.to_vec(),
            reading: false,
            next: None,
            source,
            last_progress: now,
            keepalive_at: now,
            tried: BTreeSet::new(),
            gone: BTreeMap::new(),
            last: None,
            stall,
        }
    }

    pub(crate) fn reading(&self) -> bool {
        self.reading
    }

    pub(crate) fn last(&self) -> Option<Position> {
        self.last
    }

    pub(crate) fn next(&self) -> Option<u64> {
        self.next
    }

    fn follow<M>(&mut self, now: Instant, out: &mut Vec<(BrokerId, Body<M>)>) {
        out.push((self.source, Body::Follow { from: self.next }));
        self.keepalive_at = now + self.stall / 3;
    }

    pub(crate) fn set_reading<M>(
        &mut self,
        now: Instant,
        reading: bool,
        out: &mut Vec<(BrokerId, Body<M>)>,
    ) {
        if reading == self.reading {
            return;
        }
        self.reading = reading;
        self.next = None;
        self.tried.clear();
        self.gone.clear();
        if reading {
            if self.voters.contains(&self.me) {
                self.source = self.me;
            }
            self.last_progress = now;
            self.follow(now, out);
        }
    }

    fn progress(&mut self, now: Instant) {
        self.last_progress = now;
        self.tried.clear();
        self.gone.clear();
    }

    /// Follows the next replica (one not tried since the last progress, if any). When every
    /// replica has been tried and those that answered no longer hold `next`: a gap.
    fn switch<M>(
        &mut self,
        now: Instant,
        effects: &mut VecDeque<Effect<M>>,
        out: &mut Vec<(BrokerId, Body<M>)>,
    ) {
        self.tried.insert(self.source);
        if self.voters.iter().all(|v| self.tried.contains(v)) {
            let lowest = self
                .gone
                .iter()
                .min_by_key(|(_, f)| **f)
                .map(|(b, f)| (*b, *f));
            if let (Some(next), Some((at, floor))) = (self.next, lowest)
                && floor > next
            {
                effects.push_back(Effect::Gap {
                    origin: None,
                    count: floor - next,
                });
                self.next = Some(floor);
                self.source = at;
                self.progress(now);
                self.follow(now, out);
                return;
            }
            self.tried.clear();
            self.gone.clear();
        }
        let n = self.voters.len();
        let i = self
            .voters
            .iter()
            .position(|v| *v == self.source)
            .unwrap_or(0);
        for k in 1..=n {
            let c = self.voters[(i + k) % n];
            if !self.tried.contains(&c) {
                self.source = c;
                break;
            }
        }
        self.last_progress = now;
        self.follow(now, out);
    }

    /// A stream from replica `from`. Items must be contiguous from `start` (else an error and
    /// nothing changes).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_stream<M: Clone>(
        &mut self,
        now: Instant,
        from: BrokerId,
        floor: u64,
        through: u64,
        start: u64,
        items: Vec<(Position, M)>,
        effects: &mut VecDeque<Effect<M>>,
        out: &mut Vec<(BrokerId, Body<M>)>,
    ) -> Result<(), String> {
        let mut prev_epoch = 0;
        for (i, (p, _)) in items.iter().enumerate() {
            if start.checked_add(i as u64) != Some(p.seq) || p.epoch < prev_epoch {
                return Err("stream items are not contiguous".into());
            }
            prev_epoch = p.epoch;
        }
        if start == 0 || floor == 0 {
            return Err("stream from sequence 0".into());
        }
        if !self.reading {
            return Ok(());
        }
        let next = match self.next {
            Some(n) => n,
            None if from == self.source => {
                self.next = Some(start);
                self.progress(now);
                start
            }
            None => return Ok(()),
        };
        let end = start.saturating_add(items.len() as u64);
        if start <= next && next < end {
            let skip = (next - start) as usize;
            for (position, msg) in items.into_iter().skip(skip) {
                self.last = Some(position);
                effects.push_back(Effect::Deliver(Delivery {
                    position: Some(position),
                    origin: None,
                    clock: None,
                    msg,
                }));
            }
            self.next = Some(end);
            self.progress(now);
            if from == self.source && through >= end {
                // More is held there: ask for the next chunk.
                self.follow(now, out);
            }
        } else if next < floor {
            // `from` no longer holds `next`.
            self.gone.insert(from, floor);
            if from == self.source {
                self.switch(now, effects, out);
            }
        } else if next < start && from == self.source {
            // A push was lost on the way: ask again from `next`.
            self.follow(now, out);
        }
        Ok(())
    }

    /// Stall and keep-alive timers.
    pub(crate) fn on_timeout<M>(
        &mut self,
        now: Instant,
        effects: &mut VecDeque<Effect<M>>,
        out: &mut Vec<(BrokerId, Body<M>)>,
    ) {
        if !self.reading {
            return;
        }
        if now >= self.last_progress + self.stall {
            self.switch(now, effects, out);
        } else if now >= self.keepalive_at {
            self.follow(now, out);
        }
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.reading
            .then(|| self.keepalive_at.min(self.last_progress + self.stall))
    }
}
