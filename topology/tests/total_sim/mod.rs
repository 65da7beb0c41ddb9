//! A many-broker simulator for total-order groups: `TotalGroup`s over in-memory links in
//! virtual time, with seeded delays, reordering, loss, duplication, partitions, pauses
//! (zombies), crashes with a simulated disk, and a checker over everything delivered and acked.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code, unreachable_pub)]

use std::cmp::Reverse;
use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use palio_topology::BrokerId;
use palio_topology::group::{Effect, Position, TotalConfig, TotalGroup};
use palio_topology::sim::rng::SimRng;

/// The message type: (producer, pseq), so the checker can name every message.
pub type Value = (String, u64);

/// What a reader delivered, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    Msg(Position, Value),
    Gap(u64),
}

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub brokers: u32,
    pub voters: Vec<BrokerId>,
    pub min_delay: Duration,
    pub max_delay: Duration,
    pub loss: f64,
    pub dup: f64,
    /// Delay before an fsync completes on its own (a later effect forces it at once).
    pub sync_delay: Duration,
    pub group: TotalConfig,
}

impl SimConfig {
    pub fn new(brokers: u32, voters: u32, seed: u64) -> Self {
        SimConfig {
            brokers,
            voters: (0..voters).map(BrokerId).collect(),
            min_delay: Duration::from_micros(200),
            max_delay: Duration::from_millis(4),
            loss: 0.0,
            dup: 0.0,
            sync_delay: Duration::from_millis(1),
            group: TotalConfig {
                tick: Duration::from_millis(10),
                election_ticks: 10,
                heartbeat_ticks: 2,
                retry_after: Duration::from_millis(150),
                retain: 1 << 16,
                batch_max: 16,
                reader_chunk: 16,
                reader_stall: Duration::from_millis(300),
                seed,
            },
        }
    }
}

enum Ev {
    Msg {
        from: u32,
        to: u32,
        /// The sender's incarnation: a message from a crashed incarnation still arrives
        /// (it was on the wire), but one to a crashed broker is lost.
        body: Vec<u8>,
    },
    Sync {
        node: u32,
        inc: u32,
    },
}

struct Queued {
    at: Duration,
    seq: u64,
    ev: Ev,
}
impl PartialEq for Queued {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Queued {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

pub struct Node {
    pub group: Option<TotalGroup<Value>>,
    /// Records durable on disk.
    pub disk: Vec<Vec<u8>>,
    /// Records written but not yet synced: lost at a crash.
    pub unsynced: Vec<Vec<u8>>,
    pub inc: u32,
    pub paused: bool,
    /// Bodies that arrived while paused (delivered on resume).
    pub held: Vec<(u32, Vec<u8>)>,
    pub reading: bool,
    /// Delivery logs, one per reader incarnation.
    pub logs: Vec<Vec<Seen>>,
    /// The producer publishing here (renamed at every restart: a new client session).
    pub producer: Option<String>,
    pub next_pseq: u64,
}

pub struct Sim {
    pub cfg: SimConfig,
    pub base: Instant,
    pub now: Duration,
    pub rng: SimRng,
    queue: BinaryHeap<Reverse<Queued>>,
    seq: u64,
    pub nodes: Vec<Node>,
    /// Cut links (unordered pairs).
    pub cut: BTreeSet<(u32, u32)>,
    hasher: DefaultHasher,
    /// Everything published: (producer, pseq).
    pub published: BTreeSet<Value>,
    /// Per producer, the highest `through` acked.
    pub acked: BTreeMap<String, u64>,
    pub body_errors: Vec<String>,
    pub events: u64,
}

impl Sim {
    pub fn new(cfg: SimConfig, seed: u64) -> Sim {
        let base = Instant::now();
        let mut sim = Sim {
            base,
            now: Duration::ZERO,
            rng: SimRng::new(seed),
            queue: BinaryHeap::new(),
            seq: 0,
            nodes: Vec::new(),
            cut: BTreeSet::new(),
            hasher: DefaultHasher::new(),
            published: BTreeSet::new(),
            acked: BTreeMap::new(),
            body_errors: Vec::new(),
            events: 0,
            cfg,
        };
        for b in 0..sim.cfg.brokers {
            let g = TotalGroup::new(
                BrokerId(b),
                &sim.cfg.voters,
                sim.cfg.group.clone(),
                Vec::new(),
                base,
            )
            .unwrap();
            sim.nodes.push(Node {
                group: Some(g),
                disk: Vec::new(),
                unsynced: Vec::new(),
                inc: 0,
                paused: false,
                held: Vec::new(),
                reading: false,
                logs: Vec::new(),
                producer: None,
                next_pseq: 1,
            });
        }
        sim
    }

    pub fn instant(&self) -> Instant {
        self.base + self.now
    }

    fn push(&mut self, at: Duration, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse(Queued {
            at,
            seq: self.seq,
            ev,
        }));
    }

    fn trace(&mut self, x: impl Hash) {
        x.hash(&mut self.hasher);
    }

    pub fn trace_hash(&self) -> u64 {
        self.hasher.finish()
    }

    pub fn up(&self, b: u32) -> bool {
        self.nodes[b as usize].group.is_some()
    }

    pub fn group(&self, b: u32) -> Option<&TotalGroup<Value>> {
        self.nodes[b as usize].group.as_ref()
    }

    fn cut_between(&self, a: u32, b: u32) -> bool {
        self.cut.contains(&(a.min(b), a.max(b)))
    }

    fn send(&mut self, from: u32, to: u32, body: Vec<u8>) {
        if self.cut_between(from, to) || self.rng.chance(self.cfg.loss) {
            return;
        }
        let copies = if self.rng.chance(self.cfg.dup) { 2 } else { 1 };
        for _ in 0..copies {
            let lo = self.cfg.min_delay.as_micros() as u64;
            let hi = self.cfg.max_delay.as_micros() as u64;
            let d = Duration::from_micros(self.rng.range(lo, hi));
            self.push(
                self.now + d,
                Ev::Msg {
                    from,
                    to,
                    body: body.clone(),
                },
            );
        }
    }

    fn sync(&mut self, b: u32) {
        let n = &mut self.nodes[b as usize];
        let recs = std::mem::take(&mut n.unsynced);
        n.disk.extend(recs);
    }

    /// Carries out a node's effects in order (Persist: write; any later effect: sync first).
    fn drain(&mut self, b: u32) {
        while let Some(e) = self.nodes[b as usize]
            .group
            .as_mut()
            .and_then(|g| g.poll_effect())
        {
            if !matches!(e, Effect::Persist { .. }) && !self.nodes[b as usize].unsynced.is_empty() {
                self.sync(b);
            }
            match e {
                Effect::Persist { record } => self.nodes[b as usize].unsynced.push(record),
                Effect::Send { to, body } => self.send(b, to.0, body),
                Effect::Broadcast { .. } => panic!("total groups do not broadcast"),
                Effect::Deliver(d) => {
                    let pos = d.position.expect("total deliveries carry a position");
                    assert!(d.origin.is_none() && d.clock.is_none());
                    self.trace((b, pos, &d.msg));
                    self.nodes[b as usize]
                        .logs
                        .last_mut()
                        .expect("delivery at a broker that is not reading")
                        .push(Seen::Msg(pos, d.msg));
                }
                Effect::Acked { producer, through } => {
                    self.trace((b, &producer, through));
                    let a = self.acked.entry(producer.clone()).or_insert(0);
                    assert!(
                        through > *a,
                        "acks of {producer} out of order: {through} after {a}"
                    );
                    *a = through;
                }
                Effect::Gap { origin, count } => {
                    assert!(origin.is_none() && count > 0);
                    self.trace((b, "gap", count));
                    self.nodes[b as usize]
                        .logs
                        .last_mut()
                        .expect("gap at a broker that is not reading")
                        .push(Seen::Gap(count));
                }
            }
        }
        let n = &self.nodes[b as usize];
        if !n.unsynced.is_empty() {
            let inc = n.inc;
            let at = self.now + self.cfg.sync_delay;
            self.push(at, Ev::Sync { node: b, inc });
        }
    }

    fn deliver(&mut self, from: u32, to: u32, body: Vec<u8>) {
        let now = self.instant();
        let n = &mut self.nodes[to as usize];
        if n.paused {
            n.held.push((from, body));
            return;
        }
        let Some(g) = n.group.as_mut() else {
            return;
        };
        self.events += 1;
        if let Err(e) = g.handle_body(now, BrokerId(from), &body) {
            self.body_errors.push(e.to_string());
        }
        self.trace((from, to, body.len()));
        self.drain(to);
    }

    /// Hands `body` to broker `to` now, as if `from` had sent it (a forged or hostile body);
    /// a refusal is recorded in `body_errors`.
    pub fn inject(&mut self, from: u32, to: u32, body: Vec<u8>) {
        self.deliver(from, to, body);
    }

    /// The earliest timer of a live, running broker.
    fn next_timer(&self) -> Option<(Duration, u32)> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| !n.paused)
            .filter_map(|(i, n)| {
                let t = n.group.as_ref()?.poll_timeout()?;
                Some((t.saturating_duration_since(self.base), i as u32))
            })
            .min()
    }

    /// Runs events until virtual time `until`.
    pub fn run_until(&mut self, until: Duration) {
        loop {
            let msg_at = self.queue.peek().map(|Reverse(q)| q.at);
            let timer = self.next_timer();
            let next = match (msg_at, timer) {
                (Some(m), Some((t, _))) => m.min(t),
                (Some(m), None) => m,
                (None, Some((t, _))) => t,
                (None, None) => break,
            };
            if next > until {
                break;
            }
            self.now = self.now.max(next);
            if let Some((t, b)) = timer
                && t <= msg_at.unwrap_or(Duration::MAX)
            {
                let now = self.instant();
                self.events += 1;
                self.nodes[b as usize]
                    .group
                    .as_mut()
                    .unwrap()
                    .handle_timeout(now);
                self.trace((b, "timer", self.now));
                self.drain(b);
                continue;
            }
            let Reverse(q) = self.queue.pop().unwrap();
            match q.ev {
                Ev::Msg { from, to, body } => self.deliver(from, to, body),
                Ev::Sync { node, inc } => {
                    if self.nodes[node as usize].inc == inc && self.up(node) {
                        self.sync(node);
                    }
                }
            }
        }
        self.now = self.now.max(until);
    }

    pub fn set_reading(&mut self, b: u32, reading: bool) {
        let now = self.instant();
        let n = &mut self.nodes[b as usize];
        n.reading = reading;
        if let Some(g) = n.group.as_mut() {
            if reading {
                n.logs.push(Vec::new());
            }
            g.set_reading(now, reading);
            self.drain(b);
        }
    }

    /// A producer at broker `b` publishes its next message.
    pub fn publish(&mut self, b: u32) -> Option<Value> {
        let now = self.instant();
        let n = &mut self.nodes[b as usize];
        if n.paused {
            return None;
        }
        let g = n.group.as_mut()?;
        let producer = n
            .producer
            .get_or_insert_with(|| format!("p{b}.{}", n.inc))
            .clone();
        let pseq = n.next_pseq;
        n.next_pseq += 1;
        let v = (producer.clone(), pseq);
        g.publish(now, &producer, pseq, v.clone());
        self.published.insert(v.clone());
        self.drain(b);
        Some(v)
    }

    /// Crashes broker `b`: its state goes; of its unsynced records a random prefix survives
    /// (a torn write never reaches the records handed back: the shell checks them).
    pub fn crash(&mut self, b: u32) {
        let keep = {
            let len = self.nodes[b as usize].unsynced.len();
            self.rng.index(len + 1)
        };
        let n = &mut self.nodes[b as usize];
        n.group = None;
        n.paused = false;
        n.held.clear();
        n.unsynced.truncate(keep);
        let recs = std::mem::take(&mut n.unsynced);
        n.disk.extend(recs);
        n.inc += 1;
        n.producer = None;
        self.trace((b, "crash"));
    }

    pub fn restart(&mut self, b: u32) {
        if self.up(b) {
            return;
        }
        let now = self.instant();
        let n = &mut self.nodes[b as usize];
        let g = TotalGroup::new(
            BrokerId(b),
            &self.cfg.voters,
            self.cfg.group.clone(),
            n.disk.clone(),
            now,
        )
        .expect("recovery from the records it persisted");
        n.group = Some(g);
        let reading = n.reading;
        n.reading = false;
        self.trace((b, "restart"));
        if reading {
            self.set_reading(b, true);
        }
    }

    /// Pauses broker `b` (no inputs, no timers). What it sent and is still on the wire is held
    /// back until after it resumes, so its old messages arrive late (a zombie).
    pub fn pause(&mut self, b: u32) {
        self.nodes[b as usize].paused = true;
        self.trace((b, "pause"));
    }

    pub fn resume(&mut self, b: u32) {
        let n = &mut self.nodes[b as usize];
        if !n.paused {
            return;
        }
        n.paused = false;
        let held = std::mem::take(&mut n.held);
        self.trace((b, "resume"));
        // The zombie first acts on its stale view: timers it missed fire, and what arrived
        // while it was paused is handled after.
        let now = self.instant();
        if let Some(g) = self.nodes[b as usize].group.as_mut() {
            g.handle_timeout(now);
        }
        self.drain(b);
        for (from, body) in held {
            self.deliver(from, b, body);
        }
    }

    /// Holds back every message `b` has on the wire until `at` (its old messages still in
    /// flight when it comes back).
    pub fn delay_in_flight_from(&mut self, b: u32, at: Duration) {
        let old = std::mem::take(&mut self.queue);
        for Reverse(mut q) in old.into_vec() {
            if let Ev::Msg { from, .. } = &q.ev
                && *from == b
            {
                q.at = q.at.max(at);
            }
            self.queue.push(Reverse(q));
        }
    }

    pub fn partition(&mut self, side: &[u32]) {
        for a in 0..self.cfg.brokers {
            for c in 0..self.cfg.brokers {
                if a < c && side.contains(&a) != side.contains(&c) {
                    self.cut.insert((a, c));
                }
            }
        }
    }

    pub fn heal(&mut self) {
        self.cut.clear();
        self.cfg.loss = 0.0;
        self.cfg.dup = 0.0;
        for b in 0..self.cfg.brokers {
            self.resume(b);
            self.restart(b);
        }
    }

    /// The current leader, if exactly one live unpaused replica leads in the highest term.
    pub fn leader(&self) -> Option<u32> {
        let mut best: Option<(u64, u32)> = None;
        for (i, n) in self.nodes.iter().enumerate() {
            if n.paused {
                continue;
            }
            let Some(g) = &n.group else { continue };
            if g.is_replica() && g.sequencer() == Some(BrokerId(i as u32)) {
                let t = g.epoch();
                if best.is_none_or(|(bt, _)| t > bt) {
                    best = Some((t, i as u32));
                }
            }
        }
        best.map(|(_, b)| b)
    }
}

/// What the checker found.
#[derive(Debug, Default)]
pub struct Report {
    pub positions: usize,
    pub delivered: usize,
    pub gaps: u64,
    pub max_epoch: u64,
}

/// Checks every safety property over all delivery logs and acks.
pub fn check(sim: &Sim) -> Result<Report, String> {
    let mut at: BTreeMap<u64, (u64, &Value)> = BTreeMap::new();
    let mut seq_of: BTreeMap<&Value, u64> = BTreeMap::new();
    let mut report = Report::default();
    for (b, n) in sim.nodes.iter().enumerate() {
        for (li, log) in n.logs.iter().enumerate() {
            let mut next: Option<u64> = None;
            let mut epoch = 0;
            let mut last_pseq: BTreeMap<&str, u64> = BTreeMap::new();
            for s in log {
                match s {
                    Seen::Gap(c) => {
                        // A reader that starts behind the replicas' floor reports a gap first.
                        next = next.map(|nx| nx + c);
                        report.gaps += c;
                    }
                    Seen::Msg(p, v) => {
                        report.delivered += 1;
                        if let Some(nx) = next
                            && p.seq != nx
                        {
                            return Err(format!(
                                "b{b} log {li}: seq {} where {nx} was next",
                                p.seq
                            ));
                        }
                        next = Some(p.seq + 1);
                        if p.epoch < epoch {
                            return Err(format!(
                                "b{b} log {li}: epoch {} after {epoch} (committed under an old epoch)",
                                p.epoch
                            ));
                        }
                        epoch = p.epoch;
                        report.max_epoch = report.max_epoch.max(p.epoch);
                        if !sim.published.contains(v) {
                            return Err(format!("b{b}: delivered {v:?}, never published"));
                        }
                        match at.get(&p.seq) {
                            Some((e, w)) if (*e, *w) != (p.epoch, v) => {
                                return Err(format!(
                                    "seq {} is ({e}, {w:?}) somewhere and ({}, {v:?}) at b{b}",
                                    p.seq, p.epoch
                                ));
                            }
                            _ => {
                                at.insert(p.seq, (p.epoch, v));
                            }
                        }
                        match seq_of.get(v) {
                            Some(s) if *s != p.seq => {
                                return Err(format!("{v:?} delivered at seq {s} and {}", p.seq));
                            }
                            _ => {
                                seq_of.insert(v, p.seq);
                            }
                        }
                        let lp = last_pseq.entry(v.0.as_str()).or_insert(0);
                        if v.1 <= *lp {
                            return Err(format!("b{b}: {v:?} after pseq {lp} (FIFO)"));
                        }
                        *lp = v.1;
                    }
                }
            }
        }
    }
    // Epochs along the global sequence never decrease.
    let mut e = 0;
    for (s, (ep, _)) in &at {
        if *ep < e {
            return Err(format!("seq {s} has epoch {ep} after epoch {e}"));
        }
        e = *ep;
    }
    // Nothing acked is missing from what was delivered (the union of the logs).
    for (producer, through) in &sim.acked {
        for pseq in 1..=*through {
            let v = (producer.clone(), pseq);
            if sim.published.contains(&v) && !seq_of.contains_key(&v) && report.gaps == 0 {
                return Err(format!(
                    "{v:?} acked (through {through}) but never delivered"
                ));
            }
        }
    }
    report.positions = at.len();
    Ok(report)
}
