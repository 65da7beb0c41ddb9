//! A network of brokers over in-memory links, in virtual time.
//!
//! Like quinn's test `Pair`, but for N brokers: the [`Network`] owns every [`Broker`] state
//! machine, carries their frames over simulated links and fires their timers, all in virtual
//! time driven by a seeded generator.
//!
//! Links behave like the transport Palio uses between brokers, a QUIC stream per link: each
//! direction is a reliable FIFO stream, so frames on one link are delayed (uniformly in
//! [`NetConfig::min_delay`]`..=`[`NetConfig::max_delay`]) but never reordered, lost or
//! duplicated while the link is up; frames on different links interleave freely. Taking a link
//! down loses what is in flight on it and tells both ends; bringing it up again is a new stream.
//! A crashed broker loses all its state; it restarts with a larger incarnation.
//!
//! [`Network::drive_bounded`] runs until the network has *settled* (nothing in flight and every
//! broker quiescent) and fails a run that does not settle within a bound on events, so a
//! routing loop or an oscillation is a test failure rather than a hang. Every processed frame
//! and delivery is folded into a trace hash: the same seed must give the same hash.

use std::cmp::Reverse;
use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::broker::Broker;
use crate::config::Config;
use crate::frame::{FrameKind, Notification, PeerFrame};
use crate::ids::{AdvertisementId, BrokerId, NotificationId, SubscriptionId};
use crate::sim::rng::SimRng;
use crate::{ClientError, SharedFilter};

/// How the simulated links behave.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// Shortest one-way delay of a frame.
    pub min_delay: Duration,
    /// Longest one-way delay of a frame.
    pub max_delay: Duration,
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            min_delay: Duration::from_micros(100),
            max_delay: Duration::from_millis(5),
        }
    }
}

/// One delivery observed at a local subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Observed {
    /// The subscriber's broker.
    pub broker: BrokerId,
    /// The subscription.
    pub subscription: SubscriptionId,
    /// The notification delivered.
    pub notification: NotificationId,
}

/// Counts of what crossed the links.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Frames sent, by kind.
    pub frames: BTreeMap<FrameKind, u64>,
    /// Frames lost because their link went down while they were in flight.
    pub lost_in_flight: u64,
    /// Events processed (frames received and timers fired).
    pub events: u64,
    /// Time spent inside brokers handling subscription and advertisement frames and client
    /// subscription requests.
    pub control_handling: Duration,
    /// How many such inputs were handled.
    pub control_inputs: u64,
}

impl Counters {
    /// Frames of one kind sent.
    pub fn sent(&self, kind: FrameKind) -> u64 {
        self.frames.get(&kind).copied().unwrap_or(0)
    }

    /// Subscription and advertisement frames sent.
    pub fn control(&self) -> u64 {
        self.frames
            .iter()
            .filter(|(k, _)| k.is_routing_control())
            .map(|(_, n)| n)
            .sum()
    }
}

/// A run that did not settle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "network did not settle within {events} events (virtual time {now:?}, {in_flight} frames in flight)"
)]
pub struct NotSettled {
    /// The bound on events.
    pub events: u64,
    /// Virtual time reached.
    pub now: Duration,
    /// Frames still in flight.
    pub in_flight: usize,
}

/// A frame on its way.
#[derive(Debug)]
struct InFlight {
    /// Arrival time.
    at: Duration,
    /// Tie-breaker: order of sending (keeps each link FIFO at equal times).
    seq: u64,
    from: BrokerId,
    to: BrokerId,
    /// The link's epoch when sent; a frame from an earlier epoch was lost with its link.
    epoch: u64,
    frame: PeerFrame,
}

impl PartialEq for InFlight {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for InFlight {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// One direction-pair link.
#[derive(Debug, Clone, Default)]
struct Link {
    up: bool,
    /// Bumped whenever the link goes down or up.
    epoch: u64,
    /// Last scheduled arrival per direction (index 0: from the smaller id), for FIFO.
    last: [Duration; 2],
}

/// A simulated broker.
#[derive(Debug)]
struct Node {
    /// `None` while crashed.
    broker: Option<Broker>,
    /// Its configuration (incarnation bumped on restart).
    config: Config,
    /// The timer currently scheduled in the heap for it.
    timer: Option<Duration>,
}

/// N brokers over simulated links in virtual time.
#[derive(Debug)]
pub struct Network {
    net: NetConfig,
    /// Virtual time zero.
    base: Instant,
    /// Virtual time now.
    now: Duration,
    rng: SimRng,
    nodes: BTreeMap<BrokerId, Node>,
    links: BTreeMap<(BrokerId, BrokerId), Link>,
    queue: BinaryHeap<Reverse<InFlight>>,
    timers: BinaryHeap<Reverse<(Duration, BrokerId)>>,
    seq: u64,
    trace: DefaultHasher,
    /// Deliveries observed, in order.
    observed: Vec<Observed>,
    /// Protocol errors brokers reported (always a bug in a simulation).
    errors: Vec<String>,
    counters: Counters,
    /// Whether to time control inputs (for the updates-per-second figure).
    timing: bool,
}

fn key(a: BrokerId, b: BrokerId) -> (BrokerId, BrokerId) {
    if a < b { (a, b) } else { (b, a) }
}

impl Network {
    /// An empty network whose randomness (delays) comes from `seed`.
    pub fn new(net: NetConfig, seed: u64) -> Self {
        Self {
            net,
            base: Instant::now(),
            now: Duration::ZERO,
            rng: SimRng::new(seed),
            nodes: BTreeMap::new(),
            links: BTreeMap::new(),
            queue: BinaryHeap::new(),
            timers: BinaryHeap::new(),
            seq: 0,
            trace: DefaultHasher::new(),
            observed: Vec::new(),
            errors: Vec::new(),
            counters: Counters::default(),
            timing: false,
        }
    }

    /// Measures the time brokers spend on subscription and advertisement inputs.
    pub fn set_timing(&mut self, on: bool) {
        self.timing = on;
    }

    /// Virtual time elapsed.
    pub fn now(&self) -> Duration {
        self.now
    }

    fn instant(&self) -> Instant {
        self.base + self.now
    }

    /// Adds a running broker.
    pub fn add_broker(&mut self, config: Config) {
        let broker = Broker::new(config.clone(), self.instant());
        let id = config.id;
        self.nodes.insert(
            id,
            Node {
                broker: Some(broker),
                config,
                timer: None,
            },
        );
        self.after_input(id);
    }

    /// The broker `b`, if it exists and is running.
    pub fn broker(&self, b: BrokerId) -> Option<&Broker> {
        self.nodes.get(&b).and_then(|n| n.broker.as_ref())
    }

    /// The running brokers, ascending.
    pub fn brokers(&self) -> impl Iterator<Item = &Broker> {
        self.nodes.values().filter_map(|n| n.broker.as_ref())
    }

    /// Whether `b` is running.
    pub fn is_running(&self, b: BrokerId) -> bool {
        self.broker(b).is_some()
    }

    /// Brings up the link `a – b` (both must be running; no effect if it is up).
    pub fn link_up(&mut self, a: BrokerId, b: BrokerId) {
        if a == b || !self.is_running(a) || !self.is_running(b) {
            return;
        }
        let link = self.links.entry(key(a, b)).or_default();
        if link.up {
            return;
        }
        link.up = true;
        link.epoch += 1;
        let now = self.instant();
        for (x, y) in [(a, b), (b, a)] {
            if let Some(br) = self.broker_mut(x) {
                br.handle_peer_up(y, now);
            }
        }
        self.after_input(a);
        self.after_input(b);
    }

    /// Takes down the link `a – b`, losing what is in flight on it.
    pub fn link_down(&mut self, a: BrokerId, b: BrokerId) {
        let Some(link) = self.links.get_mut(&key(a, b)) else {
            return;
        };
        if !link.up {
            return;
        }
        link.up = false;
        link.epoch += 1;
        let now = self.instant();
        for (x, y) in [(a, b), (b, a)] {
            if let Some(br) = self.broker_mut(x) {
                br.handle_peer_down(y, now);
            }
            self.after_input(x);
        }
    }

    /// Whether the link `a – b` is up.
    pub fn is_link_up(&self, a: BrokerId, b: BrokerId) -> bool {
        self.links.get(&key(a, b)).is_some_and(|l| l.up)
    }

    /// The links that are up, as `(smaller, larger)`.
    pub fn up_links(&self) -> Vec<(BrokerId, BrokerId)> {
        self.links
            .iter()
            .filter(|(_, l)| l.up)
            .map(|(&k, _)| k)
            .collect()
    }

    /// Crashes `b`: its links go down and its state is lost.
    pub fn crash(&mut self, b: BrokerId) {
        let peers: Vec<BrokerId> = self
            .links
            .iter()
            .filter(|&(&(x, y), l)| l.up && (x == b || y == b))
            .map(|(&(x, y), _)| if x == b { y } else { x })
            .collect();
        for p in peers {
            self.link_down(b, p);
        }
        if let Some(node) = self.nodes.get_mut(&b) {
            node.broker = None;
            node.timer = None;
        }
    }

    /// Restarts a crashed broker with a larger incarnation and no links (bring them up with
    /// [`Network::link_up`]).
    pub fn restart(&mut self, b: BrokerId) {
        let now = self.instant();
        let Some(node) = self.nodes.get_mut(&b) else {
            return;
        };
        if node.broker.is_some() {
            return;
        }
        node.config.incarnation += 1;
        node.broker = Some(Broker::new(node.config.clone(), now));
        self.after_input(b);
    }

    fn broker_mut(&mut self, b: BrokerId) -> Option<&mut Broker> {
        self.nodes.get_mut(&b).and_then(|n| n.broker.as_mut())
    }

    fn timed<T>(&mut self, b: BrokerId, f: impl FnOnce(&mut Broker) -> T) -> Option<T> {
        let timing = self.timing;
        let broker = self.broker_mut(b)?;
        let start = timing.then(Instant::now);
        let out = f(broker);
        if let Some(start) = start {
            self.counters.control_handling += start.elapsed();
        }
        self.counters.control_inputs += 1;
        Some(out)
    }

    /// A client of `b` subscribes. `Ok(false)` if `b` is not running.
    pub fn subscribe(
        &mut self,
        b: BrokerId,
        id: SubscriptionId,
        filter: SharedFilter,
    ) -> Result<bool, ClientError> {
        let r = self.timed(b, |br| br.subscribe(id, filter));
        self.after_input(b);
        r.transpose().map(|o| o.is_some())
    }

    /// A client of `b` unsubscribes. `Ok(false)` if `b` is not running.
    pub fn unsubscribe(&mut self, b: BrokerId, id: SubscriptionId) -> Result<bool, ClientError> {
        let r = self.timed(b, |br| br.unsubscribe(id));
        self.after_input(b);
        r.transpose().map(|o| o.is_some())
    }

    /// A publisher at `b` advertises. `Ok(false)` if `b` is not running.
    pub fn advertise(
        &mut self,
        b: BrokerId,
        id: AdvertisementId,
        filter: SharedFilter,
    ) -> Result<bool, ClientError> {
        let r = self.timed(b, |br| br.advertise(id, filter));
        self.after_input(b);
        r.transpose().map(|o| o.is_some())
    }

    /// A publisher at `b` withdraws an advertisement. `Ok(false)` if `b` is not running.
    pub fn unadvertise(&mut self, b: BrokerId, id: AdvertisementId) -> Result<bool, ClientError> {
        let r = self.timed(b, |br| br.unadvertise(id));
        self.after_input(b);
        r.transpose().map(|o| o.is_some())
    }

    /// A client of `b` publishes. Returns whether `b` is running.
    pub fn publish(&mut self, b: BrokerId, notification: Arc<Notification>) -> bool {
        let Some(br) = self.broker_mut(b) else {
            return false;
        };
        br.publish(notification);
        self.after_input(b);
        true
    }

    /// Collects `b`'s outputs: frames onto links, deliveries into the log, its next timer.
    fn after_input(&mut self, b: BrokerId) {
        let Some(node) = self.nodes.get_mut(&b) else {
            return;
        };
        let Some(broker) = node.broker.as_mut() else {
            return;
        };
        while let Some(t) = broker.poll_transmit() {
            let Some(link) = self.links.get_mut(&key(b, t.peer)) else {
                self.errors
                    .push(format!("{b} sent to {} without a link", t.peer));
                continue;
            };
            if !link.up {
                self.errors
                    .push(format!("{b} sent to {} over a down link", t.peer));
                continue;
            }
            let dir = usize::from(b > t.peer);
            let span = self.net.max_delay.saturating_sub(self.net.min_delay);
            let jitter = Duration::from_nanos(self.rng.below(span.as_nanos() as u64 + 1));
            let at = (self.now + self.net.min_delay + jitter).max(link.last[dir]);
            link.last[dir] = at;
            *self.counters.frames.entry(t.frame.kind()).or_default() += 1;
            self.seq += 1;
            self.queue.push(Reverse(InFlight {
                at,
                seq: self.seq,
                from: b,
                to: t.peer,
                epoch: link.epoch,
                frame: t.frame,
            }));
        }
        while let Some(d) = broker.poll_delivery() {
            let o = Observed {
                broker: b,
                subscription: d.subscription,
                notification: d.notification.id,
            };
            ("deliver", self.now, o).hash(&mut self.trace);
            self.observed.push(o);
        }
        let next = broker
            .poll_timeout()
            .map(|t| t.saturating_duration_since(self.base));
        if next != node.timer {
            node.timer = next;
            if let Some(t) = next {
                self.timers.push(Reverse((t, b)));
            }
        }
    }

    /// Whether nothing is in flight and every running broker is quiescent.
    pub fn is_settled(&self) -> bool {
        self.queue.is_empty() && self.brokers().all(Broker::is_quiescent)
    }

    /// Processes the next event (a frame arrival or a due timer). Returns `false` if there is
    /// none.
    pub fn step(&mut self) -> bool {
        // Drop stale timer entries.
        while let Some(Reverse((t, b))) = self.timers.peek().copied() {
            if self.nodes.get(&b).and_then(|n| n.timer) == Some(t) {
                break;
            }
            self.timers.pop();
        }
        let next_frame = self.queue.peek().map(|Reverse(f)| f.at);
        let next_timer = self.timers.peek().map(|Reverse((t, _))| *t);
        match (next_frame, next_timer) {
            (None, None) => false,
            (Some(f), t) if t.is_none_or(|t| f <= t) => {
                let Some(Reverse(m)) = self.queue.pop() else {
                    return false;
                };
                self.deliver_frame(m);
                true
            }
            _ => {
                let Some(Reverse((t, b))) = self.timers.pop() else {
                    return false;
                };
                self.now = self.now.max(t);
                self.counters.events += 1;
                if let Some(node) = self.nodes.get_mut(&b) {
                    node.timer = None;
                }
                let now = self.instant();
                ("timer", self.now, b).hash(&mut self.trace);
                if let Some(br) = self.broker_mut(b) {
                    br.handle_timeout(now);
                }
                self.after_input(b);
                true
            }
        }
    }

    fn deliver_frame(&mut self, m: InFlight) {
        self.now = self.now.max(m.at);
        self.counters.events += 1;
        let live = self
            .links
            .get(&key(m.from, m.to))
            .is_some_and(|l| l.up && l.epoch == m.epoch);
        if !live {
            self.counters.lost_in_flight += 1;
            return;
        }
        trace_frame(&mut self.trace, self.now, m.from, m.to, &m.frame);
        let control = m.frame.kind().is_routing_control();
        let now = self.instant();
        let result = if control {
            self.timed(m.to, |br| br.handle_frame(m.from, m.frame, now))
        } else {
            self.broker_mut(m.to)
                .map(|br| br.handle_frame(m.from, m.frame, now))
        };
        if let Some(Err(e)) = result {
            self.errors
                .push(format!("{} rejected a frame from {}: {e}", m.to, m.from));
        }
        self.after_input(m.to);
    }

    /// Runs until the network settles, at most `max_events` events.
    pub fn drive_bounded(&mut self, max_events: u64) -> Result<u64, NotSettled> {
        let mut n = 0;
        while !self.is_settled() {
            if n >= max_events || !self.step() {
                return Err(NotSettled {
                    events: max_events,
                    now: self.now,
                    in_flight: self.queue.len(),
                });
            }
            n += 1;
        }
        Ok(n)
    }

    /// Runs every event up to virtual time `now + d` (periodic timers included), then sets
    /// the clock there.
    pub fn advance(&mut self, d: Duration) {
        let until = self.now + d;
        loop {
            while let Some(Reverse((t, b))) = self.timers.peek().copied() {
                if self.nodes.get(&b).and_then(|n| n.timer) == Some(t) {
                    break;
                }
                self.timers.pop();
            }
            let next = [
                self.queue.peek().map(|Reverse(f)| f.at),
                self.timers.peek().map(|Reverse((t, _))| *t),
            ]
            .into_iter()
            .flatten()
            .min();
            match next {
                Some(t) if t <= until => {
                    self.step();
                }
                _ => break,
            }
        }
        self.now = until;
    }

    /// The deliveries observed so far.
    pub fn observed(&self) -> &[Observed] {
        &self.observed
    }

    /// Takes the deliveries observed so far.
    pub fn take_observed(&mut self) -> Vec<Observed> {
        std::mem::take(&mut self.observed)
    }

    /// Protocol errors reported by brokers (a correct implementation reports none).
    pub fn errors(&self) -> &[String] {
        &self.errors
    }

    /// Traffic counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Resets the traffic counters.
    pub fn reset_counters(&mut self) {
        self.counters = Counters::default();
    }

    /// The hash of everything that happened so far.
    pub fn trace_hash(&self) -> u64 {
        self.trace.finish()
    }

    /// The tree every broker should agree on: the spanning tree of the up links, from the
    /// point of view of `member`.
    pub fn expected_tree(&self, member: BrokerId) -> crate::tree::SpanningTree {
        let mut g = crate::tree::Graph::new();
        for b in self.brokers() {
            g.add_broker(b.id());
        }
        for (a, b) in self.up_links() {
            g.add_link(a, b);
        }
        g.spanning_tree(member)
    }

    /// Checks every running broker's invariants and that all brokers of each connected
    /// component agree on the tree.
    pub fn audit(&self) -> Result<(), String> {
        if let Some(e) = self.errors.first() {
            return Err(e.clone());
        }
        let mut seen = BTreeSet::new();
        for b in self.brokers() {
            b.audit().map_err(|e| format!("{}: {e}", b.id()))?;
            let expected = self.expected_tree(b.id());
            if b.tree() != &expected {
                return Err(format!("{} has a stale tree", b.id()));
            }
            seen.insert(b.id());
        }
        Ok(())
    }
}

fn trace_frame(h: &mut DefaultHasher, now: Duration, from: BrokerId, to: BrokerId, f: &PeerFrame) {
    ("frame", now, from, to, f.kind()).hash(h);
    match f {
        PeerFrame::LinkState(lsas) => {
            for l in lsas {
                (l.origin, l.incarnation, l.seq, &l.neighbours).hash(h);
            }
        }
        PeerFrame::Subscribe { key, filter } | PeerFrame::Advertise { key, filter } => {
            (key, filter.source()).hash(h);
        }
        PeerFrame::Unsubscribe { key } | PeerFrame::Unadvertise { key } => key.hash(h),
        PeerFrame::Notification(n) => n.id.hash(h),
    }
}
