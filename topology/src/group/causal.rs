//! Fifo and causal groups at one broker: stamping, broadcast, CBCAST delivery, repair.
//!
//! (See the module docs of `group` for the call protocol.)
//!
//! # Model
//!
//! Every broker of the group runs one [`CausalGroup`]. The vector clock is over *brokers*, not
//! clients: each broker is one entry. A broker stamps the publications of its local clients
//! with its own sequence (1, 2, 3, …), persists the stamped message, broadcasts it to every
//! other broker and delivers it locally. Only the origin ever sends its own messages (first by
//! broadcast, again on repair); nothing is relayed. Each core keeps `V`, the clock of what it
//! delivered ([`CausalGroup::delivered`]).
//!
//! - **Stamping.** `publish(producer, pseq, deps, msg)` waits (causal only) until
//!   `deps ≤ V`: the client may have delivered, at another broker, messages that have not
//!   reached this one. A producer's publications are stamped strictly in publish order, so a
//!   held publication also holds back the later ones of the same producer (not those of other
//!   producers). Stamping sets `V[me] += 1`; the message's clock is `V` (causal) or just
//!   `{me: seq}` (fifo). The effects are, in this order: `Persist` (the stamped message: the
//!   sequence and the retransmit buffer survive a restart), `Broadcast`, the local `Deliver`,
//!   and `Acked{producer, through: pseq}`. A dependency on the broker's own entry is always
//!   met (its own sequence is authoritative).
//! - **Delivery rule.** A message `m` from origin `j` is delivered when `m.seq == V[j] + 1` and
//!   (causal only) `m.clock[k] ≤ V[k]` for every `k ≠ j` — the ISIS CBCAST rule; then
//!   `V[j] = m.seq`. Otherwise it is held back. A message with `seq ≤ V[j]` is a duplicate and
//!   is dropped. The delivered clock is `Some` in both modes (fifo: only the origin's entry,
//!   i.e. the message's sequence).
//!
//! # Join rule
//!
//! A core starts knowing nothing of the other brokers. For each origin `j` it has a **join
//! point** `J[j]` ([`CausalGroup::joined`]): it delivers exactly `j`'s messages `J[j]+1, J[j]+2,
//! …`; those up to `J[j]` happened before its members joined and are dropped, and dependencies
//! on them count as met. The join point is fixed once, the first time one of these arrives:
//!
//! - `Hello{top}` from `j`: every core broadcasts one when it is created (and sends one on
//!   [`CausalGroup::handle_broker_up`]) carrying its last stamped sequence; or
//! - `Welcome{top}` from `j`: `j`'s answer to our `Hello`.
//!
//! Either way `J[j]` is `j`'s sequence when it sent it, so every later message of `j` was sent
//! after it and is still retained at `j` (or reported lost): a core joins `j` *at the point
//! where it and `j` first spoke*. Until then `j`'s messages, and every message depending on
//! `j`, are held back; the core asks `j` with `Hello` every `repair_after`, and after
//! `repair_attempts` unanswered tries joins `j` at 0 (so whatever it then cannot get from `j`
//! is reported as a gap). The own entry's join point is the sequence recovered at creation,
//! and no join point is below the clock of the last recovered own message (its *floor*): the
//! messages a restarted origin stamps carry clocks at least that one's, and what happened before
//! its earlier messages is before the join of its new members too.
//! Cores that are created together (a new group) join each other at 0: each one's `Hello` is
//! its first body on each link. A restarted broker lost its delivered clock (only its own
//! messages are persisted) and its members are new subscribers, so it simply joins again.
//!
//! # Repair and gaps
//!
//! For each origin `j` the core knows `top[j]`, the highest sequence of `j` it knows to exist
//! (from `j`'s messages, `Hello`/`Welcome`/`Repair` bodies, and dependencies in held messages
//! and held publications). When some sequence in `V[j]+1 ..= top[j]` is neither delivered nor
//! held, `j` is *missing* something; after `repair_after` the core sends `j` a
//! `RepairRequest` naming the holes, and again every `repair_after`. The origin answers with
//! the messages it retains (at most `repair_batch`) and says which asked-for ones are gone
//! (older than its last `retain` messages). Then, at the place where they would have been
//! delivered:
//!
//! - the messages `j` says are gone are reported as `Effect::Gap{origin: Some(j), count}`;
//! - after `repair_attempts` requests without an answer that helped, every hole up to `top[j]`
//!   is reported as a gap.
//!
//! `V[j]` then moves past the gap and delivery goes on. A message is never delivered while a
//! dependency is neither delivered, reported as a gap, nor before the join point.
//!
//! `handle_broker_up(b)` sends `b` a `Hello` with this broker's last sequence: `b` learns what
//! it may have lost at the tail (a link break can lose the last messages, which no later
//! message would reveal) and repairs it; if `b` was still waiting for this broker's join
//! point, that is it. It also makes a pending repair towards `b` ask again at once with fresh
//! attempts. Nothing is resent unasked.
//!
//! # Bounds
//!
//! - Held messages plus held publications: at most [`CausalConfig::max_held`]. Past it the
//!   core gives up on everything it is waiting for *at once*: it joins every origin it has not
//!   joined at 0 and reports every hole up to `top` as a gap, which releases everything held.
//! - Retained own messages: the last [`CausalConfig::retain`].
//! - A repair answer: at most [`CausalConfig::repair_batch`] messages (the rest is asked again
//!   at once); a request names at most 64 holes.
//! - Origins tracked (one small record each, holding the repair timer): at most
//!   [`CausalConfig::max_origins`]; a body that would add more is refused with [`BodyError`].
//! - The durable log grows by one record per own message; compacting it (keeping a suffix) is
//!   the shell's business: the core needs only the last `retain` records to rebuild.
//!
//! # Trust
//!
//! Bodies that do not decode or break the protocol are refused, and nothing a peer sends can
//! make the core panic. But clocks are taken at their word: a `deps` (from a local client) or a
//! peer's clock naming a message its origin never stamped is chased like a missing message and
//! ends as a gap, after which that origin's real messages up to that number count as already
//! delivered. Deps are meant to be clocks of deliveries, unchanged.

mod engine;
mod repair;
mod wire;

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{BodyError, Effect, Order, VClock};
use crate::BrokerId;
use wire::{Body, Stamped};

/// The largest sequence a record may hold: 2^62, beyond any real group (a message a
/// nanosecond for 146 years), and far enough below `u64::MAX` that the sequence arithmetic
/// after a restore (the next stamp, the oldest retained message) cannot overflow.
const MAX_SEQ: u64 = 1 << 62;

/// Tuning of a [`CausalGroup`].
#[derive(Debug, Clone)]
pub struct CausalConfig {
    /// How long a message waits for a missing predecessor before the core asks its origin again.
    pub repair_after: Duration,
    /// How many times it asks before it reports the missing messages as a gap.
    pub repair_attempts: u32,
    /// How many of its own messages a broker keeps to answer repair requests.
    pub retain: usize,
    /// The most messages and publications held back at once; past it, everything missing is
    /// given up on and reported as a gap (see the module docs).
    pub max_held: usize,
    /// The most messages in one answer to a repair request.
    pub repair_batch: usize,
    /// The most origins (brokers) the group tracks; a body that would add more is refused.
    pub max_origins: usize,
}

impl Default for CausalConfig {
    fn default() -> Self {
        CausalConfig {
            repair_after: Duration::from_millis(500),
            repair_attempts: 5,
            retain: 65_536,
            max_held: 65_536,
            repair_batch: 512,
            max_origins: 1024,
        }
    }
}

/// Counters of one [`CausalGroup`], for metrics and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CausalStats {
    /// Messages received that were already delivered, held, or before the join point.
    pub duplicates: u64,
    /// Repair requests sent.
    pub repair_requests: u64,
    /// Repair requests answered.
    pub repairs_served: u64,
    /// Messages reported lost in gaps.
    pub gap_messages: u64,
    /// Times the hold-back bound was exceeded and everything missing was given up on.
    pub overflows: u64,
    /// Publications dropped because the message did not encode (nothing was emitted for them).
    pub unencodable: u64,
}

/// What the core knows of one other broker as an origin.
#[derive(Debug, Clone, Default)]
struct Origin {
    /// The join point, once fixed.
    joined: Option<u64>,
    /// The highest sequence of this origin known to exist.
    top: u64,
    /// How many of its messages are held back (all in `V+1 ..= top`).
    held: usize,
    /// Holes up to here are reported as gaps when delivery reaches them.
    gap_through: u64,
    /// The pending join or repair, if the core is waiting for something of this origin.
    chase: Option<Chase>,
}

/// A pending `Hello` (not joined) or `RepairRequest` (joined) towards one origin.
#[derive(Debug, Clone)]
struct Chase {
    /// Requests sent so far.
    attempts: u32,
    /// When to send the next one (or give up).
    next: Instant,
}

/// A publication waiting for its dependencies.
#[derive(Debug, Clone)]
struct Pending<M> {
    pseq: u64,
    deps: VClock,
    msg: M,
}

/// One fifo or causal group at one broker.
#[derive(Debug)]
pub struct CausalGroup<M> {
    me: BrokerId,
    order: Order,
    config: CausalConfig,
    /// The last own sequence stamped.
    seq: u64,
    /// The own sequence recovered at creation (the own join point).
    recovered: u64,
    /// The clock of the last recovered own message (without the own entry): no join point is
    /// below it, so the own messages' clocks never go back and the join cut holds their past.
    floor: VClock,
    /// `V`: what this broker delivered.
    delivered: VClock,
    origins: BTreeMap<BrokerId, Origin>,
    /// Held-back messages by `(origin, seq)`.
    held: BTreeMap<(BrokerId, u64), Stamped<M>>,
    /// The last `retain` own messages, contiguous, ending at `seq`.
    retained: VecDeque<Stamped<M>>,
    /// Publications waiting for their dependencies, per producer, in publish order.
    pubs: BTreeMap<String, VecDeque<Pending<M>>>,
    held_pubs: usize,
    effects: VecDeque<Effect<M>>,
    stats: CausalStats,
}

impl<M: Clone + Serialize + DeserializeOwned> CausalGroup<M> {
    /// A group at broker `me`, rebuilt from the records it persisted before (empty when new).
    /// `order` is [`Order::Fifo`] or [`Order::Causal`].
    ///
    /// The own sequence continues after the last record, and the last `retain` records are
    /// kept to answer repair requests. The records must have consecutive sequences (a log
    /// whose prefix was compacted away is fine). A record that does not decode, records out of
    /// order, or [`Order::Total`] give a [`BodyError`] naming `me`. The first effect is a
    /// `Broadcast` of the `Hello` that lets the other brokers fix their join point (see the
    /// module docs): drain `poll_effect` after creating the core.
    pub fn new(
        me: BrokerId,
        order: Order,
        config: CausalConfig,
        recovered: impl IntoIterator<Item = Vec<u8>>,
    ) -> Result<Self, BodyError> {
        let err = |reason: String| BodyError { from: me, reason };
        if order == Order::Total {
            return Err(err("a total-order group is not a causal group".into()));
        }
        let mut seq = 0u64;
        let mut floor = VClock::default();
        let mut retained = VecDeque::new();
        for (i, record) in recovered.into_iter().enumerate() {
            let s: Stamped<M> =
                wire::decode(&record).map_err(|e| err(format!("record {i}: {e}")))?;
            if s.seq == 0 || (seq != 0 && Some(s.seq) != seq.checked_add(1)) {
                return Err(err(format!("record {i}: sequence {} after {seq}", s.seq)));
            }
            if s.seq > MAX_SEQ {
                return Err(err(format!(
                    "record {i}: sequence {} beyond the largest a group reaches ({MAX_SEQ})",
                    s.seq
                )));
            }
            seq = s.seq;
            floor = s.deps.clone();
            floor.set(me, 0);
            retained.push_back(s);
            if retained.len() > config.retain {
                retained.pop_front();
            }
        }
        let mut delivered = VClock::default();
        delivered.set(me, seq);
        let mut group = CausalGroup {
            me,
            order,
            config,
            seq,
            recovered: seq,
            floor,
            delivered,
            origins: BTreeMap::new(),
            held: BTreeMap::new(),
            retained,
            pubs: BTreeMap::new(),
            held_pubs: 0,
            effects: VecDeque::new(),
            stats: CausalStats::default(),
        };
        group.broadcast(&Body::Hello { top: seq });
        Ok(group)
    }

    /// A publication accepted from a local client, after everything in `deps` (the clock of
    /// what that client delivered; empty for fifo) is delivered here.
    ///
    /// In fifo groups `deps` is ignored. See the module docs for the effects and the order of
    /// acks.
    pub fn publish(&mut self, now: Instant, producer: &str, pseq: u64, deps: &VClock, msg: M) {
        let mut deps = match self.order {
            Order::Causal => deps.clone(),
            _ => VClock::default(),
        };
        deps.set(self.me, 0);
        for (&k, &x) in &deps.0 {
            let o = self.origins.entry(k).or_default();
            o.top = o.top.max(x);
        }
        self.pubs
            .entry(producer.to_owned())
            .or_default()
            .push_back(Pending { pseq, deps, msg });
        self.held_pubs += 1;
        self.settle(now);
    }

    /// A body from this group's core at broker `from`.
    ///
    /// A body that does not decode or breaks the protocol (a zero sequence, too many origins,
    /// a body claiming to come from this broker) is refused with [`BodyError`] and changes
    /// nothing.
    pub fn handle_body(
        &mut self,
        now: Instant,
        from: BrokerId,
        body: &[u8],
    ) -> Result<(), BodyError> {
        let bad = |reason: String| BodyError { from, reason };
        if from == self.me {
            return Err(bad("a body from this broker itself".into()));
        }
        let body: Body<M> = wire::decode(body).map_err(|e| bad(e.to_string()))?;
        self.check(from, &body).map_err(bad)?;
        match body {
            Body::Hello { top } => {
                self.heard(from, top);
                self.send(from, &Body::Welcome { top: self.seq });
            }
            Body::Welcome { top } => self.heard(from, top),
            Body::Data(m) => {
                self.insert(from, m);
            }
            Body::RepairRequest { ranges } => self.answer_repair(from, &ranges),
            Body::Repair {
                msgs,
                lost_through,
                top,
            } => self.repaired(now, from, msgs, lost_through, top),
        }
        self.settle(now);
        Ok(())
    }

    /// Broker `b` is reachable again, or newly known (the core may resend what `b` may lack).
    ///
    /// Sends `b` a `Hello` with this broker's last sequence (so `b` repairs a lost tail or
    /// fixes its join point) and makes a pending repair towards `b` ask again now, with fresh
    /// attempts. Nothing is resent unasked.
    pub fn handle_broker_up(&mut self, now: Instant, b: BrokerId) {
        if b == self.me {
            return;
        }
        self.send(b, &Body::Hello { top: self.seq });
        if let Some(chase) = self.origins.get_mut(&b).and_then(|o| o.chase.as_mut()) {
            chase.attempts = 0;
            chase.next = now;
        }
    }

    /// Timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.fire_chases(now);
        self.settle(now);
    }

    /// When `handle_timeout` wants to be called next.
    ///
    /// `None` when the core waits for nothing (no join and no repair pending).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.origins
            .values()
            .filter_map(|o| o.chase.as_ref().map(|c| c.next))
            .min()
    }

    /// The next effect to carry out.
    pub fn poll_effect(&mut self) -> Option<Effect<M>> {
        self.effects.pop_front()
    }

    /// The clock of what this broker delivered.
    pub fn delivered(&self) -> &VClock {
        &self.delivered
    }

    /// This broker.
    pub fn me(&self) -> BrokerId {
        self.me
    }

    /// The group's order ([`Order::Fifo`] or [`Order::Causal`]).
    pub fn order(&self) -> Order {
        self.order
    }

    /// The last sequence this broker stamped (0 before its first message).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The join point for `origin`: this core delivers exactly `origin`'s messages after it.
    /// `None` while not fixed yet. For this broker itself, the sequence recovered at creation.
    pub fn joined(&self, origin: BrokerId) -> Option<u64> {
        if origin == self.me {
            return Some(self.recovered);
        }
        self.origins.get(&origin).and_then(|o| o.joined)
    }

    /// Messages held back plus publications waiting for their dependencies.
    pub fn held(&self) -> usize {
        self.held.len() + self.held_pubs
    }

    /// The counters.
    pub fn stats(&self) -> &CausalStats {
        &self.stats
    }

    /// After every input: deliver and stamp what can be, enforce the bound, arm the timers.
    fn settle(&mut self, now: Instant) {
        self.pump();
        if self.held() > self.config.max_held {
            self.give_up_all();
            self.pump();
        }
        self.refresh_chases(now);
    }

    fn send(&mut self, to: BrokerId, body: &Body<M>) {
        if let Ok(body) = wire::encode(body) {
            self.effects.push_back(Effect::Send { to, body });
        }
    }

    fn broadcast(&mut self, body: &Body<M>) {
        if let Ok(body) = wire::encode(body) {
            self.effects.push_back(Effect::Broadcast { body });
        }
    }
}
