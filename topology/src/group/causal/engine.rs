//! Holding back, joining, delivering and stamping.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::super::{Delivery, Effect, Order, VClock};
use super::wire::{self, Body, Stamped};
use super::{CausalGroup, Pending};
use crate::BrokerId;

impl<M: Clone + Serialize + DeserializeOwned> CausalGroup<M> {
    /// Refuses a body that breaks the protocol, before anything changes.
    pub(super) fn check(&self, from: BrokerId, body: &Body<M>) -> Result<(), String> {
        let stamped: &[Stamped<M>] = match body {
            Body::Data(m) => std::slice::from_ref(m),
            Body::Repair {
                msgs,
                lost_through,
                top,
                ..
            } => {
                if lost_through > top {
                    return Err(format!("lost through {lost_through} beyond top {top}"));
                }
                msgs
            }
            Body::Hello { .. } | Body::Welcome { .. } | Body::RepairRequest { .. } => &[],
        };
        let mut new = std::collections::BTreeSet::new();
        if !self.origins.contains_key(&from) {
            new.insert(from);
        }
        for m in stamped {
            if m.seq == 0 {
                return Err("message with sequence 0".into());
            }
            if self.order == Order::Causal {
                for &k in m.deps.0.keys() {
                    if k != self.me && !self.origins.contains_key(&k) {
                        new.insert(k);
                        if new.len() > self.config.max_origins {
                            break;
                        }
                    }
                }
            }
        }
        if self.origins.len() + new.len() > self.config.max_origins {
            return Err(format!(
                "more than {} origins in the group",
                self.config.max_origins
            ));
        }
        Ok(())
    }

    /// A message of `origin` arrived (new or repaired): hold it back unless it is a duplicate.
    /// Returns whether it was new.
    pub(super) fn insert(&mut self, origin: BrokerId, mut m: Stamped<M>) -> bool {
        m.deps.set(origin, 0);
        if self.order == Order::Causal {
            // The entry of this broker stays in the clock (deliveries carry it) but is always
            // met: this broker's own sequence is authoritative.
            for (&k, &x) in m.deps.0.iter().filter(|&(&k, _)| k != self.me) {
                let o = self.origins.entry(k).or_default();
                o.top = o.top.max(x);
            }
        } else {
            m.deps = VClock::default();
        }
        let v = self.delivered.get(origin);
        let o = self.origins.entry(origin).or_default();
        o.top = o.top.max(m.seq);
        let stale = o.joined.is_some() && m.seq <= v;
        if stale || self.held.contains_key(&(origin, m.seq)) {
            self.stats.duplicates += 1;
            return false;
        }
        o.held += 1;
        self.held.insert((origin, m.seq), m);
        true
    }

    /// `origin` told its last sequence (`Hello`, `Welcome`): fix the join point there if it is
    /// not fixed yet, else learn what exists.
    pub(super) fn heard(&mut self, origin: BrokerId, top: u64) {
        let o = self.origins.entry(origin).or_default();
        if o.joined.is_none() {
            self.join(origin, top);
        } else {
            o.top = o.top.max(top);
        }
    }

    /// Fixes the join point of `origin` at `at`: drops its held messages up to there.
    pub(super) fn join(&mut self, origin: BrokerId, at: u64) {
        let o = self.origins.entry(origin).or_default();
        if o.joined.is_some() {
            return;
        }
        let at = at.max(self.floor.get(origin));
        o.joined = Some(at);
        o.top = o.top.max(at);
        o.chase = None;
        self.delivered.set(origin, at);
        let before: Vec<u64> = self
            .held
            .range((origin, 0)..=(origin, at))
            .map(|(&(_, s), _)| s)
            .collect();
        for s in &before {
            self.held.remove(&(origin, *s));
        }
        o.held = o.held.saturating_sub(before.len());
        self.stats.duplicates += before.len() as u64;
    }

    /// Whether the dependencies `deps` (of a message from `origin`, or of a publication when
    /// `origin` is this broker) are delivered, gapped, or before the join point.
    fn deps_met(&self, origin: BrokerId, deps: &VClock) -> bool {
        deps.0.iter().all(|(&k, &x)| {
            k == origin
                || k == self.me
                || (self.origins.get(&k).is_some_and(|o| o.joined.is_some())
                    && self.delivered.get(k) >= x)
        })
    }

    /// Delivers, reports gaps and stamps publications until nothing more can be done.
    pub(super) fn pump(&mut self) {
        loop {
            let mut progress = false;
            let keys: Vec<BrokerId> = self.origins.keys().copied().collect();
            for k in keys {
                progress |= self.advance(k);
            }
            if !progress {
                break;
            }
        }
        self.stamp_ready();
    }

    /// Delivers (or reports as gaps) what comes next from `origin`. Returns whether anything
    /// did.
    fn advance(&mut self, origin: BrokerId) -> bool {
        let mut any = false;
        while let Some(o) = self.origins.get(&origin) {
            if o.joined.is_none() {
                break;
            }
            let v = self.delivered.get(origin);
            let Some(next) = v.checked_add(1) else {
                break;
            };
            if let Some(m) = self.held.get(&(origin, next)) {
                if !self.deps_met(origin, &m.deps) {
                    break;
                }
                let Some(m) = self.held.remove(&(origin, next)) else {
                    break;
                };
                if let Some(o) = self.origins.get_mut(&origin) {
                    o.held = o.held.saturating_sub(1);
                }
                self.delivered.set(origin, next);
                let clock = self.clock_of(origin, &m);
                self.effects.push_back(Effect::Deliver(Delivery {
                    position: None,
                    origin: Some(origin),
                    clock: Some(clock),
                    msg: m.msg,
                }));
            } else if o.gap_through >= next {
                let end = match self
                    .held
                    .range((origin, next)..=(origin, o.gap_through))
                    .next()
                {
                    Some((&(_, s), _)) => s - 1,
                    None => o.gap_through,
                };
                self.delivered.set(origin, end);
                // A peer can claim sequences up to u64::MAX: the count saturates.
                self.stats.gap_messages = self.stats.gap_messages.saturating_add(end - v);
                self.effects.push_back(Effect::Gap {
                    origin: Some(origin),
                    count: end - v,
                });
            } else {
                break;
            }
            any = true;
        }
        any
    }

    /// The clock a delivery of `m` from `origin` carries.
    fn clock_of(&self, origin: BrokerId, m: &Stamped<M>) -> VClock {
        let mut clock = m.deps.clone();
        clock.set(origin, m.seq);
        clock
    }

    /// Stamps the publications whose dependencies are met, each producer's in publish order.
    fn stamp_ready(&mut self) {
        let mut ready = Vec::new();
        for (producer, queue) in &self.pubs {
            let n = queue
                .iter()
                .take_while(|p| self.deps_met(self.me, &p.deps))
                .count();
            if n > 0 {
                ready.push((producer.clone(), n));
            }
        }
        for (producer, n) in ready {
            let Some(queue) = self.pubs.get_mut(&producer) else {
                continue;
            };
            let batch: Vec<Pending<M>> = queue.drain(..n).collect();
            if queue.is_empty() {
                self.pubs.remove(&producer);
            }
            self.held_pubs = self.held_pubs.saturating_sub(batch.len());
            for p in batch {
                self.stamp(&producer, p);
            }
        }
    }

    /// Stamps one publication: persist, broadcast, deliver locally, ack.
    fn stamp(&mut self, producer: &str, p: Pending<M>) {
        let seq = self.seq.saturating_add(1);
        let deps = match self.order {
            Order::Causal => {
                let mut d = self.delivered.clone();
                d.merge(&self.floor);
                d.set(self.me, 0);
                d
            }
            _ => VClock::default(),
        };
        let m = Stamped {
            seq,
            deps,
            msg: p.msg,
        };
        let (Ok(record), Ok(body)) = (wire::encode(&m), wire::encode(&Body::Data(m.clone())))
        else {
            self.stats.unencodable += 1;
            return;
        };
        self.seq = seq;
        self.delivered.set(self.me, seq);
        let clock = self.clock_of(self.me, &m);
        let msg = m.msg.clone();
        if self.config.retain > 0 {
            self.retained.push_back(m);
            while self.retained.len() > self.config.retain {
                self.retained.pop_front();
            }
        }
        self.effects.push_back(Effect::Persist { record });
        self.effects.push_back(Effect::Broadcast { body });
        self.effects.push_back(Effect::Deliver(Delivery {
            position: None,
            origin: Some(self.me),
            clock: Some(clock),
            msg,
        }));
        self.effects.push_back(Effect::Acked {
            producer: producer.to_owned(),
            through: p.pseq,
        });
    }

    /// The hold-back bound is exceeded: join every origin waited for but not joined yet at 0
    /// (or the floor) and report every hole up to what is known to exist as a gap, releasing
    /// everything held.
    pub(super) fn give_up_all(&mut self) {
        self.stats.overflows += 1;
        let keys: Vec<BrokerId> = self.origins.keys().copied().collect();
        for k in keys {
            if self.origins.get(&k).is_some_and(|o| o.top > 0) {
                self.join(k, 0);
            }
            if let Some(o) = self.origins.get_mut(&k) {
                o.gap_through = o.gap_through.max(o.top);
                o.chase = None;
            }
        }
    }
}
