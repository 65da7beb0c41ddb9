//! N brokers, each running one ordered-group core, over in-memory links in virtual time.
//!
//! The group counterpart of [`network`](super::network): the [`GroupNet`] owns one core per
//! broker (anything implementing [`GroupCore`]), carries the bodies of `Send` and `Broadcast`
//! effects, keeps each broker's durable log (`Persist`), logs what the core delivers, and
//! fires its timers, all in virtual time driven by a seeded generator. The test drives the
//! clients (through [`GroupNet::with_core`]) and the faults:
//!
//! - delays uniform in [`GroupNetConfig::min_delay`]`..=`[`GroupNetConfig::max_delay`]; with
//!   [`GroupNetConfig::fifo_links`] each direction of a link is a FIFO stream (the transport
//!   Palio uses), without it every body is delayed on its own (arbitrary reordering);
//! - loss: each body is dropped with probability [`GroupNetConfig::loss`], silently;
//! - partitions ([`GroupNet::cut`], [`GroupNet::heal`]): a cut link loses what is in flight;
//!   when a link becomes usable again both ends get `handle_broker_up`;
//! - crashes ([`GroupNet::crash`], [`GroupNet::restart`]): a crashed broker loses its core and
//!   what is in flight to and from it; it restarts with a new core built from its durable log
//!   only. With [`GroupNetConfig::crash_after_persist`] a broker may also crash right after a
//!   `Persist` became durable, before the effects after it were carried out.
//!
//! Everything observed is folded into a trace hash: the same seed gives the same hash.

use std::cmp::Reverse;
use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::BrokerId;
use crate::group::{BodyError, CausalGroup, Delivery, Effect};
use crate::sim::rng::SimRng;

/// What the harness needs of a group core (the inputs without a client in them, and the
/// outputs).
pub trait GroupCore<M> {
    /// A body from the core at `from`.
    fn handle_body(&mut self, now: Instant, from: BrokerId, body: &[u8]) -> Result<(), BodyError>;
    /// Broker `b` is reachable again.
    fn handle_broker_up(&mut self, now: Instant, b: BrokerId);
    /// Timers due at `now`.
    fn handle_timeout(&mut self, now: Instant);
    /// When `handle_timeout` wants to be called.
    fn poll_timeout(&self) -> Option<Instant>;
    /// The next effect.
    fn poll_effect(&mut self) -> Option<Effect<M>>;
}

impl<M: Clone + Serialize + DeserializeOwned> GroupCore<M> for CausalGroup<M> {
    fn handle_body(&mut self, now: Instant, from: BrokerId, body: &[u8]) -> Result<(), BodyError> {
        CausalGroup::handle_body(self, now, from, body)
    }
    fn handle_broker_up(&mut self, now: Instant, b: BrokerId) {
        CausalGroup::handle_broker_up(self, now, b);
    }
    fn handle_timeout(&mut self, now: Instant) {
        CausalGroup::handle_timeout(self, now);
    }
    fn poll_timeout(&self) -> Option<Instant> {
        CausalGroup::poll_timeout(self)
    }
    fn poll_effect(&mut self) -> Option<Effect<M>> {
        CausalGroup::poll_effect(self)
    }
}

/// How the simulated links and brokers behave.
#[derive(Debug, Clone)]
pub struct GroupNetConfig {
    /// Shortest one-way delay of a body.
    pub min_delay: Duration,
    /// Longest one-way delay of a body.
    pub max_delay: Duration,
    /// Each direction of a link is a FIFO stream; otherwise bodies overtake each other freely.
    pub fifo_links: bool,
    /// Probability that a body is silently dropped.
    pub loss: f64,
    /// Probability that a broker crashes right after carrying out a `Persist`.
    pub crash_after_persist: f64,
}

impl Default for GroupNetConfig {
    fn default() -> Self {
        GroupNetConfig {
            min_delay: Duration::from_micros(100),
            max_delay: Duration::from_millis(5),
            fifo_links: true,
            loss: 0.0,
            crash_after_persist: 0.0,
        }
    }
}

/// One thing a core asked its shell for that the harness logs (sends and persists are carried
/// out, not logged).
#[derive(Debug, Clone, PartialEq)]
pub enum Logged<M> {
    /// A delivery to the local members.
    Deliver(Delivery<M>),
    /// A gap reported to the local members.
    Gap {
        /// The origin whose messages are lost.
        origin: Option<BrokerId>,
        /// How many.
        count: u64,
    },
    /// A publication ack.
    Acked {
        /// The producer.
        producer: String,
        /// Through this producer sequence.
        through: u64,
    },
    /// The broker crashed here (the last entry of an incarnation).
    Crashed,
}

/// One run of a broker's core, from its creation to its crash (or the end).
#[derive(Debug)]
pub struct Incarnation<M, C> {
    /// The core: the running one, or the one that crashed (kept for inspection only; the next
    /// incarnation is built from the durable log alone).
    pub core: C,
    /// Whether it crashed.
    pub crashed: bool,
    /// What it logged, each with a run-wide index (a global order of all logged entries).
    pub log: Vec<(u64, Logged<M>)>,
    /// When it started (virtual time).
    pub started: Duration,
}

/// A body on its way.
#[derive(Debug)]
struct InFlight {
    from: BrokerId,
    to: BrokerId,
    /// The link's epoch when sent; a body from an earlier epoch was lost with its link.
    epoch: u64,
    body: Vec<u8>,
}

/// A simulated broker.
#[derive(Debug)]
struct Node<M, C> {
    incarnations: Vec<Incarnation<M, C>>,
    durable: Vec<Vec<u8>>,
    up: bool,
    /// The timer scheduled in the heap for the running core.
    timer: Option<Duration>,
}

/// Counts of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupCounters {
    /// Bodies sent (one per destination).
    pub sent: u64,
    /// Bodies dropped by loss.
    pub dropped: u64,
    /// Bodies lost because their link went down or an end crashed.
    pub lost_in_flight: u64,
    /// Events processed (bodies received and timers fired).
    pub events: u64,
    /// Crashes, including those after a persist.
    pub crashes: u64,
}

/// The constructor of a core: broker, its durable records, the time.
pub type Factory<C> = Box<dyn FnMut(BrokerId, Vec<Vec<u8>>, Instant) -> C>;

/// N brokers running group cores over simulated links in virtual time.
pub struct GroupNet<M, C> {
    config: GroupNetConfig,
    base: Instant,
    now: Duration,
    rng: SimRng,
    factory: Factory<C>,
    nodes: BTreeMap<BrokerId, Node<M, C>>,
    /// Cut links `(smaller, larger)`.
    cuts: BTreeSet<(BrokerId, BrokerId)>,
    /// Per link: its epoch and the last arrival per direction (index 0: from the smaller id).
    links: BTreeMap<(BrokerId, BrokerId), (u64, [Duration; 2])>,
    queue: BTreeMap<(Duration, u64), InFlight>,
    timers: BinaryHeap<Reverse<(Duration, BrokerId)>>,
    seq: u64,
    logged: u64,
    trace: DefaultHasher,
    errors: Vec<String>,
    counters: GroupCounters,
}

impl<M, C> std::fmt::Debug for GroupNet<M, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupNet")
            .field("now", &self.now)
            .field("brokers", &self.nodes.len())
            .field("in_flight", &self.queue.len())
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

fn key(a: BrokerId, b: BrokerId) -> (BrokerId, BrokerId) {
    if a < b { (a, b) } else { (b, a) }
}

impl<M: Clone + Hash, C: GroupCore<M>> GroupNet<M, C> {
    /// A network of `brokers`, all running and linked, whose randomness comes from `seed`.
    pub fn new(
        config: GroupNetConfig,
        seed: u64,
        brokers: &[BrokerId],
        factory: Factory<C>,
    ) -> Self {
        let mut net = GroupNet {
            config,
            base: Instant::now(),
            now: Duration::ZERO,
            rng: SimRng::new(seed),
            factory,
            nodes: BTreeMap::new(),
            cuts: BTreeSet::new(),
            links: BTreeMap::new(),
            queue: BTreeMap::new(),
            timers: BinaryHeap::new(),
            seq: 0,
            logged: 0,
            trace: DefaultHasher::new(),
            errors: Vec::new(),
            counters: GroupCounters::default(),
        };
        let now = net.instant();
        for &b in brokers {
            let core = (net.factory)(b, Vec::new(), now);
            net.nodes.insert(
                b,
                Node {
                    incarnations: vec![Incarnation {
                        core,
                        crashed: false,
                        log: Vec::new(),
                        started: Duration::ZERO,
                    }],
                    durable: Vec::new(),
                    up: true,
                    timer: None,
                },
            );
        }
        for &b in brokers {
            net.drain(b);
        }
        net
    }

    /// The configuration (loss and crash probabilities may be changed during a run).
    pub fn config_mut(&mut self) -> &mut GroupNetConfig {
        &mut self.config
    }

    /// Virtual time elapsed.
    pub fn elapsed(&self) -> Duration {
        self.now
    }

    /// The virtual time as an `Instant`.
    pub fn instant(&self) -> Instant {
        self.base + self.now
    }

    /// The brokers, ascending.
    pub fn brokers(&self) -> Vec<BrokerId> {
        self.nodes.keys().copied().collect()
    }

    /// Whether `b` is running.
    pub fn is_up(&self, b: BrokerId) -> bool {
        self.nodes.get(&b).is_some_and(|n| n.up)
    }

    /// The running core of `b`.
    pub fn core(&self, b: BrokerId) -> Option<&C> {
        let n = self.nodes.get(&b).filter(|n| n.up)?;
        n.incarnations.last().map(|i| &i.core)
    }

    /// Every incarnation of `b`, oldest first.
    pub fn incarnations(&self, b: BrokerId) -> &[Incarnation<M, C>] {
        self.nodes.get(&b).map_or(&[], |n| &n.incarnations)
    }

    /// The durable log of `b`.
    pub fn durable(&self, b: BrokerId) -> &[Vec<u8>] {
        self.nodes.get(&b).map_or(&[], |n| &n.durable)
    }

    /// Gives the running core of `b` an input (a client's, typically) and carries out its
    /// effects. `None` if `b` is down.
    pub fn with_core<T>(&mut self, b: BrokerId, f: impl FnOnce(&mut C, Instant) -> T) -> Option<T> {
        let now = self.instant();
        let core = self
            .nodes
            .get_mut(&b)
            .filter(|n| n.up)
            .and_then(|n| n.incarnations.last_mut())
            .map(|i| &mut i.core)?;
        let out = f(core, now);
        self.drain(b);
        Some(out)
    }

    /// Protocol errors cores reported (always a bug in a simulation).
    pub fn errors(&self) -> &[String] {
        &self.errors
    }

    /// The counters.
    pub fn counters(&self) -> &GroupCounters {
        &self.counters
    }

    /// The hash of everything observed so far.
    pub fn trace_hash(&self) -> u64 {
        self.trace.finish()
    }

    /// Whether bodies can travel between `a` and `b` now.
    pub fn usable(&self, a: BrokerId, b: BrokerId) -> bool {
        a != b && self.is_up(a) && self.is_up(b) && !self.cuts.contains(&key(a, b))
    }

    /// Cuts the link `a – b`: what is in flight on it is lost.
    pub fn cut(&mut self, a: BrokerId, b: BrokerId) {
        let was = self.usable(a, b);
        self.cuts.insert(key(a, b));
        if was {
            self.bump(a, b);
        }
    }

    /// Heals the link `a – b`; if it becomes usable, both ends get `handle_broker_up`.
    pub fn heal(&mut self, a: BrokerId, b: BrokerId) {
        if self.cuts.remove(&key(a, b)) && self.usable(a, b) {
            self.link_came_up(a, b);
        }
    }

    /// Heals every cut link.
    pub fn heal_all(&mut self) {
        for (a, b) in std::mem::take(&mut self.cuts) {
            if self.usable(a, b) {
                self.link_came_up(a, b);
            }
        }
    }

    /// Tells both ends of every usable link that it came up (as after a reconnect of every
    /// link): each side learns the other's last sequence.
    pub fn reconnect_all(&mut self) {
        let brokers = self.brokers();
        for (i, &a) in brokers.iter().enumerate() {
            for &b in &brokers[i + 1..] {
                if self.usable(a, b) {
                    self.link_came_up(a, b);
                }
            }
        }
    }

    /// Crashes `b`: its core is gone (kept for inspection), what is in flight to and from it
    /// is lost.
    pub fn crash(&mut self, b: BrokerId) {
        if !self.is_up(b) {
            return;
        }
        let peers: Vec<BrokerId> = self
            .brokers()
            .into_iter()
            .filter(|&p| self.usable(b, p))
            .collect();
        for p in peers {
            self.bump(b, p);
        }
        self.counters.crashes += 1;
        self.log(b, Logged::Crashed);
        if let Some(n) = self.nodes.get_mut(&b) {
            n.up = false;
            n.timer = None;
            if let Some(i) = n.incarnations.last_mut() {
                i.crashed = true;
            }
        }
    }

    /// Restarts a crashed `b` with a core built from its durable log; its usable links come
    /// up.
    pub fn restart(&mut self, b: BrokerId) {
        let now = self.instant();
        let Some(n) = self.nodes.get_mut(&b) else {
            return;
        };
        if n.up {
            return;
        }
        let core = (self.factory)(b, n.durable.clone(), now);
        n.incarnations.push(Incarnation {
            core,
            crashed: false,
            log: Vec::new(),
            started: self.now,
        });
        n.up = true;
        self.drain(b);
        let peers: Vec<BrokerId> = self
            .brokers()
            .into_iter()
            .filter(|&p| self.usable(b, p))
            .collect();
        for p in peers {
            self.link_came_up(b, p);
        }
    }

    /// Runs every event due up to virtual time `until` (inclusive), then sets the clock there.
    pub fn run_until(&mut self, until: Duration) {
        while let Some(t) = self.next_event_time() {
            if t > until {
                break;
            }
            self.step();
        }
        self.now = self.now.max(until);
    }

    /// Runs until nothing is in flight and no timer is armed. `Err` with the virtual time
    /// reached if that takes more than `max_events` events.
    pub fn settle(&mut self, max_events: u64) -> Result<(), Duration> {
        let start = self.counters.events;
        while self.next_event_time().is_some() {
            if self.counters.events - start > max_events {
                return Err(self.now);
            }
            self.step();
        }
        Ok(())
    }

    fn next_event_time(&mut self) -> Option<Duration> {
        // Drop stale timers.
        while let Some(&Reverse((t, b))) = self.timers.peek() {
            if self
                .nodes
                .get(&b)
                .is_some_and(|n| n.up && n.timer == Some(t))
            {
                break;
            }
            self.timers.pop();
        }
        let body = self.queue.keys().next().map(|&(t, _)| t);
        let timer = self.timers.peek().map(|&Reverse((t, _))| t);
        match (body, timer) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Processes the earliest event (bodies before timers at equal times).
    fn step(&mut self) {
        let body_at = self.queue.keys().next().copied();
        let timer_at = self.timers.peek().map(|&Reverse(x)| x);
        let take_body = match (body_at, timer_at) {
            (Some((tb, _)), Some((tt, _))) => tb <= tt,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => return,
        };
        self.counters.events += 1;
        if take_body {
            let Some((&k, _)) = self.queue.iter().next() else {
                return;
            };
            let Some(f) = self.queue.remove(&k) else {
                return;
            };
            self.now = self.now.max(k.0);
            let current = self.links.get(&key(f.from, f.to)).map_or(0, |l| l.0);
            if f.epoch != current || !self.usable(f.from, f.to) {
                self.counters.lost_in_flight += 1;
                return;
            }
            (f.from, f.to, &f.body).hash(&mut self.trace);
            let now = self.instant();
            let Some(core) = self.running(f.to) else {
                return;
            };
            if let Err(e) = core.handle_body(now, f.from, &f.body) {
                self.errors.push(e.to_string());
            }
            self.drain(f.to);
        } else {
            let Some(Reverse((t, b))) = self.timers.pop() else {
                return;
            };
            self.now = self.now.max(t);
            if let Some(n) = self.nodes.get_mut(&b) {
                n.timer = None;
            }
            (t.as_nanos(), b, "timer").hash(&mut self.trace);
            let now = self.instant();
            if let Some(core) = self.running(b) {
                core.handle_timeout(now);
            }
            self.drain(b);
        }
    }

    fn running(&mut self, b: BrokerId) -> Option<&mut C> {
        self.nodes
            .get_mut(&b)
            .filter(|n| n.up)
            .and_then(|n| n.incarnations.last_mut())
            .map(|i| &mut i.core)
    }

    /// A link became usable again: a new stream, both ends are told.
    fn link_came_up(&mut self, a: BrokerId, b: BrokerId) {
        self.bump(a, b);
        let now = self.instant();
        for (x, y) in [(a, b), (b, a)] {
            if let Some(core) = self.running(x) {
                core.handle_broker_up(now, y);
            }
            self.drain(x);
        }
    }

    fn bump(&mut self, a: BrokerId, b: BrokerId) {
        let l = self.links.entry(key(a, b)).or_default();
        l.0 += 1;
        l.1 = [Duration::ZERO; 2];
    }

    fn log(&mut self, b: BrokerId, entry: Logged<M>) {
        self.logged += 1;
        hash_logged(b, &entry, &mut self.trace);
        if let Some(i) = self
            .nodes
            .get_mut(&b)
            .and_then(|n| n.incarnations.last_mut())
        {
            i.log.push((self.logged, entry));
        }
    }

    /// Carries out `b`'s effects and arms its timer.
    fn drain(&mut self, b: BrokerId) {
        while let Some(effect) = self.running(b).and_then(|c| c.poll_effect()) {
            match effect {
                Effect::Send { to, body } => self.transmit(b, to, body),
                Effect::Broadcast { body } => {
                    for to in self.brokers() {
                        if to != b {
                            self.transmit(b, to, body.clone());
                        }
                    }
                }
                Effect::Persist { record } => {
                    if let Some(n) = self.nodes.get_mut(&b) {
                        n.durable.push(record);
                    }
                    if self.config.crash_after_persist > 0.0
                        && self.rng.chance(self.config.crash_after_persist)
                    {
                        self.crash(b);
                        return;
                    }
                }
                Effect::Deliver(d) => self.log(b, Logged::Deliver(d)),
                Effect::Gap { origin, count } => self.log(b, Logged::Gap { origin, count }),
                Effect::Acked { producer, through } => {
                    self.log(b, Logged::Acked { producer, through })
                }
            }
        }
        let now = self.now;
        let base = self.base;
        let Some(n) = self.nodes.get_mut(&b).filter(|n| n.up) else {
            return;
        };
        let next = n
            .incarnations
            .last()
            .and_then(|i| i.core.poll_timeout())
            .map(|t| t.saturating_duration_since(base).max(now));
        if next != n.timer {
            n.timer = next;
            if let Some(t) = next {
                self.timers.push(Reverse((t, b)));
            }
        }
    }

    /// Puts one body on its way from `from` to `to` (or drops it).
    fn transmit(&mut self, from: BrokerId, to: BrokerId, body: Vec<u8>) {
        if !self.usable(from, to) {
            self.counters.lost_in_flight += 1;
            return;
        }
        self.counters.sent += 1;
        if self.config.loss > 0.0 && self.rng.chance(self.config.loss) {
            self.counters.dropped += 1;
            return;
        }
        let span = self.config.max_delay.saturating_sub(self.config.min_delay);
        let delay = self.config.min_delay
            + Duration::from_nanos(self.rng.below(span.as_nanos() as u64 + 1));
        let mut at = self.now + delay;
        let link = self.links.entry(key(from, to)).or_default();
        if self.config.fifo_links {
            let dir = usize::from(from > to);
            at = at.max(link.1[dir]);
            link.1[dir] = at;
        }
        let epoch = link.0;
        self.seq += 1;
        self.queue.insert(
            (at, self.seq),
            InFlight {
                from,
                to,
                epoch,
                body,
            },
        );
    }
}

fn hash_logged<M: Hash>(b: BrokerId, entry: &Logged<M>, h: &mut DefaultHasher) {
    b.hash(h);
    match entry {
        Logged::Deliver(d) => {
            (0u8, d.origin, &d.clock, d.position).hash(h);
            d.msg.hash(h);
        }
        Logged::Gap { origin, count } => (1u8, origin, count).hash(h),
        Logged::Acked { producer, through } => (2u8, producer, through).hash(h),
        Logged::Crashed => 3u8.hash(h),
    }
}
