//! The persistence engine: durable queues, persistent publications, consumers and
//! store-and-forward, as one deterministic state machine.
//!
//! # Call protocol
//!
//! The engine does no I/O of its own and reads no clock. Its owner (the `persist` task, or a
//! test) passes `now` in and a [`Journal`] to append records to and read messages from:
//!
//! - requests: [`Engine::publish`], [`Engine::queue_add`], [`Engine::consume`],
//!   [`Engine::ack`]… and peer input ([`Engine::handle_store`], [`Engine::handle_store_ack`],
//!   [`Engine::handle_decl`], [`Engine::peer_up`], [`Engine::peer_down`]);
//! - [`Engine::handle_durable`] when the journal reports the log durable up to a position, and
//!   [`Engine::handle_failure`] when it reports that it never will be (the store is poisoned);
//! - [`Engine::handle_timeout`] at [`Engine::poll_timeout`];
//! - [`Engine::set_next_hops`] when the router's spanning tree changes;
//! - then [`Engine::poll_output`] until it returns `None`: [`Output`]s for clients and peers,
//!   in domain terms (the shell frames them for the wire).
//!
//! # Durability rule
//!
//! Every state change is a [`Record`] appended to the journal and applied by
//! [`Engine::apply`], the same function recovery uses. Nothing that promises durability
//! leaves before the record it depends on is durable: publish acks, ack confirmations and
//! store acks to peers wait in `waiting` until [`Engine::handle_durable`] passes their
//! position, and a stored message is delivered or forwarded only once durable.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use palio_filter::{Event, Filter};
use palio_protocol::{
    Attributes, ConsumeMode, DEAD_LETTER_SUFFIX, ErrorCode, QueueInfo, QueueOptions,
    valid_queue_name,
};
use palio_topology::BrokerId;

use super::matching::FilterIndex;
use super::output::{Answer, Output};
use super::queue::{Lane, Queue};
use super::record::{LaneId, QueueSnapshot, Record, Snapshot, decode, encode};
use crate::store::{Position, StoreError};
use crate::wire::{MessageId, QueueDecl};

/// Identifies a client connection.
pub(crate) type ClientId = u64;

/// A refusal: the code and message for the client.
pub(crate) type Refusal = (ErrorCode, String);

/// What the engine needs of the log.
pub(crate) trait Journal {
    /// Appends a record (not yet durable) and returns where it starts.
    fn append(&mut self, record: &[u8]) -> Result<Position, StoreError>;
    /// Reads the record at `pos`.
    fn read(&self, pos: Position) -> Result<Vec<u8>, StoreError>;
    /// Where the next record will go: a record is durable once the durable position passes
    /// its end.
    fn end(&self) -> Position;
}

/// The engine's settings.
#[derive(Debug, Clone)]
pub(crate) struct EngineConfig {
    /// This broker.
    pub(crate) me: BrokerId,
    /// Ack wait of queues added without one.
    pub(crate) ack_wait: Duration,
    /// Maximum deliveries of queues added without one.
    pub(crate) max_deliveries: u32,
    /// Store frames in flight to one peer before it acks.
    pub(crate) peer_window: usize,
    /// How many ids of messages received from peers and delivered to local queues are
    /// remembered, to ignore copies sent again.
    pub(crate) dedup_window: usize,
}

/// Counters for metrics (monotonic).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Stats {
    pub(crate) stored: u64,
    pub(crate) duplicates: u64,
    pub(crate) delivered: u64,
    pub(crate) redelivered: u64,
    pub(crate) acked: u64,
    pub(crate) dead_lettered: u64,
    pub(crate) forwarded: u64,
    pub(crate) publish_failures: u64,
}

/// A timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Timer {
    /// A delivery's ack wait ends (`count` tells this delivery from later ones).
    AckWait { lane: LaneId, tag: u64, count: u32 },
    /// A nak delay ends.
    Delay { lane: LaneId, tag: u64 },
    /// A fetch's max wait ends.
    Fetch { consumer: u64, request: u64 },
}

/// A pending fetch of a pull consumer.
#[derive(Debug, Clone, Copy)]
pub(super) struct Fetch {
    pub(super) request: u64,
    pub(super) remaining: u32,
    pub(super) delivered: u32,
}

/// An attached consumer.
#[derive(Debug)]
pub(super) struct Consumer {
    pub(super) client: ClientId,
    pub(super) lane: LaneId,
    pub(super) mode: ConsumeMode,
    pub(super) in_flight: BTreeSet<u64>,
    pub(super) fetch: Option<Fetch>,
}

/// A message with destinations beyond this broker.
#[derive(Debug)]
pub(super) struct Forward {
    pub(super) pos: Position,
    /// Destinations not handed to any peer yet.
    pub(super) unsent: BTreeSet<BrokerId>,
    /// Destinations sent to a peer, awaiting its store ack.
    pub(super) sent: BTreeMap<BrokerId, BTreeSet<BrokerId>>,
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Engine {
    pub(super) cfg: EngineConfig,
    pub(super) next_msg: u64,
    pub(super) next_queue: u64,
    pub(super) next_generation: u64,
    pub(super) queues: BTreeMap<u64, Queue>,
    pub(super) names: BTreeMap<String, u64>,
    /// The filters of `queues`, by key.
    pub(super) local: FilterIndex<u64, u64>,
    /// The highest stored sequence number of each producer.
    pub(super) producers: HashMap<String, u64>,
    /// Ids of messages from peers recently put into local queues (oldest first in
    /// `seen_order`): a copy sent again is not enqueued twice.
    pub(super) seen: HashSet<MessageId>,
    pub(super) seen_order: VecDeque<MessageId>,
    pub(super) forwards: BTreeMap<MessageId, Forward>,
    /// Forwards that have unsent destinations (candidates for the next pump).
    pub(super) to_send: BTreeSet<MessageId>,
    /// Every durable queue of the overlay (this broker's too), removed ones as tombstones.
    pub(super) directory: BTreeMap<(BrokerId, String), QueueDecl>,
    /// The filters of the live entries of `directory` homed at other brokers, leading to their
    /// home.
    pub(super) remote: FilterIndex<(BrokerId, String), BrokerId>,
    pub(super) consumers: HashMap<u64, Consumer>,
    pub(super) next_consumer: u64,
    pub(super) client_producers: HashMap<ClientId, String>,
    /// Connected peers and their store frames in flight.
    pub(super) peers: BTreeMap<BrokerId, usize>,
    /// Destination broker → the peer to send through.
    pub(super) next_hops: HashMap<BrokerId, BrokerId>,
    /// Everything before it is on disk.
    pub(super) durable: Position,
    /// Outputs waiting for the log to be durable up to a position.
    pub(super) waiting: VecDeque<(Position, Output)>,
    pub(super) out: VecDeque<Output>,
    pub(super) timers: BinaryHeap<Reverse<(Instant, Timer)>>,
    /// Live messages (queue entries and forwards) per segment, for segment GC.
    pub(super) seg_refs: BTreeMap<u64, usize>,
    /// Why the store cannot take writes, once it cannot.
    pub(super) failed: Option<String>,
    pub(super) stats: Stats,
}

impl Engine {
    /// An engine with no state (a new store).
    pub(crate) fn new(cfg: EngineConfig) -> Self {
        Self {
            cfg,
            next_msg: 0,
            next_queue: 1,
            next_generation: 1,
            queues: BTreeMap::new(),
            names: BTreeMap::new(),
            local: FilterIndex::default(),
            producers: HashMap::new(),
            seen: HashSet::new(),
            seen_order: VecDeque::new(),
            forwards: BTreeMap::new(),
            to_send: BTreeSet::new(),
            directory: BTreeMap::new(),
            remote: FilterIndex::default(),
            consumers: HashMap::new(),
            next_consumer: 1,
            client_producers: HashMap::new(),
            peers: BTreeMap::new(),
            next_hops: HashMap::new(),
            durable: Position {
                segment: 0,
                offset: 0,
            },
            waiting: VecDeque::new(),
            out: VecDeque::new(),
            timers: BinaryHeap::new(),
            seg_refs: BTreeMap::new(),
            failed: None,
            stats: Stats::default(),
        }
    }

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

    /// The lowest segment holding a live message, if any: segments below it (and below the
    /// checkpoint) can be deleted.
    pub(crate) fn live_floor(&self) -> Option<u64> {
        self.seg_refs.keys().next().copied()
    }

    /// Durable queues at other brokers that this one forwards to.
    pub(crate) fn remote_queues(&self) -> usize {
        self.directory
            .values()
            .filter(|d| d.home != self.cfg.me && !d.removed)
            .count()
    }

    /// Messages waiting to be handed to a peer.
    pub(crate) fn forwards_pending(&self) -> usize {
        self.forwards.len()
    }

    /// The counters.
    pub(crate) fn stats(&self) -> Stats {
        self.stats
    }

    /// Why the store refuses writes, if it does.
    pub(crate) fn failure(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    /// The next output.
    pub(crate) fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When [`Engine::handle_timeout`] should be called next.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((t, _))| *t)
    }

    // ---- records -------------------------------------------------------------------------

    /// Appends `rec` and applies it. Fails (and fails the engine) if the journal refuses.
    pub(super) fn write(&mut self, j: &mut impl Journal, rec: Record) -> Result<Position, Refusal> {
        if let Some(why) = &self.failed {
            return Err((ErrorCode::StoreUnavailable, why.clone()));
        }
        match j.append(&encode(&rec)) {
            Ok(pos) => {
                self.apply(pos, &rec, true);
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
                self.apply(pos, &rec, false);
                true
            }
            Err(_) => false,
        }
    }

    /// Turns a record into state. `live`: written just now (so its messages are not durable
    /// yet) rather than read back in recovery.
    pub(crate) fn apply(&mut self, pos: Position, rec: &Record, live: bool) {
        match rec {
            Record::Message {
                id,
                producer,
                local,
                queues,
                dests,
                ..
            } => {
                if id.origin == self.cfg.me {
                    self.next_msg = self.next_msg.max(id.n.saturating_add(1));
                }
                if let Some((p, seq)) = producer {
                    let e = self.producers.entry(p.clone()).or_insert(*seq);
                    *e = (*e).max(*seq);
                }
                if *local && producer.is_none() {
                    self.remember(*id);
                }
                for &(key, tag) in queues {
                    if let Some(q) = self.queues.get_mut(&key) {
                        q.next_tag = q.next_tag.max(tag + 1);
                        q.main.insert(tag, pos, 0, !live);
                        *self.seg_refs.entry(pos.segment).or_default() += 1;
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
            } => {
                self.next_queue = self.next_queue.max(key + 1);
                if let Some(q) = self.make_queue(*key, name, filter, *ack_wait_ms, *max_deliveries)
                {
                    self.names.insert(name.clone(), *key);
                    self.local.insert(*key, &q.filter, *key);
                    self.queues.insert(*key, q);
                }
            }
            Record::QueueRemoved { key } => self.drop_queue(*key),
            Record::Acked { lane, tags } => {
                for tag in tags {
                    self.remove_entry(*lane, *tag);
                }
            }
            Record::Delivered { lane, tag, count } => {
                if let Some(e) = self.lane_mut(*lane).and_then(|l| l.entries.get_mut(tag)) {
                    e.count = e.count.max(*count);
                }
            }
            Record::DeadLettered { queue, tags } => {
                for &tag in tags {
                    let main = LaneId {
                        queue: *queue,
                        dead: false,
                    };
                    self.detach_in_flight(main, tag);
                    let Some(q) = self.queues.get_mut(queue) else {
                        continue;
                    };
                    if let Some(e) = q.main.remove(tag) {
                        q.dead.insert(tag, e.pos, 0, true);
                    }
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
        }
    }

    fn make_queue(
        &self,
        key: u64,
        name: &str,
        filter: &str,
        ack_wait_ms: u64,
        max_deliveries: u32,
    ) -> Option<Queue> {
        let filter = match Filter::new(filter) {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(queue = name, error = %e, "a stored queue filter no longer compiles; queue skipped");
                return None;
            }
        };
        Some(Queue {
            key,
            name: name.to_owned(),
            filter,
            ack_wait: Duration::from_millis(ack_wait_ms),
            max_deliveries,
            next_tag: 0,
            main: Lane::default(),
            dead: Lane::default(),
        })
    }

    fn drop_queue(&mut self, key: u64) {
        let Some(q) = self.queues.remove(&key) else {
            return;
        };
        self.names.remove(&q.name);
        self.local.remove(&key);
        for e in q.main.entries.values().chain(q.dead.entries.values()) {
            self.unref(e.pos);
        }
        let gone: Vec<u64> = self
            .consumers
            .iter()
            .filter(|(_, c)| c.lane.queue == key)
            .map(|(id, _)| *id)
            .collect();
        for consumer in gone {
            // A pending fetch still gets its answer (with what it got so far).
            self.finish_fetch(consumer);
            self.consumers.remove(&consumer);
        }
    }

    /// Removes a lane entry (acked), releasing its consumer slot and segment reference.
    fn remove_entry(&mut self, lane: LaneId, tag: u64) {
        self.detach_in_flight(lane, tag);
        let Some(e) = self.lane_mut(lane).and_then(|l| l.remove(tag)) else {
            return;
        };
        self.unref(e.pos);
        self.stats.acked += 1;
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

    pub(super) fn lane(&self, lane: LaneId) -> Option<&Lane> {
        self.queues.get(&lane.queue).map(|q| q.lane(lane.dead))
    }

    pub(super) fn lane_mut(&mut self, lane: LaneId) -> Option<&mut Lane> {
        self.queues
            .get_mut(&lane.queue)
            .map(|q| q.lane_mut(lane.dead))
    }

    fn add_forward(&mut self, id: MessageId, pos: Position, dests: BTreeSet<BrokerId>) {
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

    fn unref(&mut self, pos: Position) {
        if let Some(n) = self.seg_refs.get_mut(&pos.segment) {
            *n -= 1;
            if *n == 0 {
                self.seg_refs.remove(&pos.segment);
            }
        }
    }

    /// Remembers that `id` went into the local queues, forgetting the oldest id past the
    /// de-duplication window.
    fn remember(&mut self, id: MessageId) {
        if self.seen.insert(id) {
            self.seen_order.push_back(id);
            while self.seen_order.len() > self.cfg.dedup_window {
                if let Some(old) = self.seen_order.pop_front() {
                    self.seen.remove(&old);
                }
            }
        }
    }

    // ---- publishing ----------------------------------------------------------------------

    /// Names the producer of `client`'s persistent publications.
    pub(crate) fn producer(
        &mut self,
        j: &impl Journal,
        client: ClientId,
        request: u64,
        producer: String,
    ) {
        if producer.is_empty() || producer.len() > 128 {
            self.refuse(
                client,
                request,
                (
                    ErrorCode::ProtocolViolation,
                    "a producer id has 1 to 128 bytes".into(),
                ),
            );
            return;
        }
        let next_seq = self.producers.get(&producer).map_or(0, |s| s + 1);
        self.client_producers.insert(client, producer);
        // `next_seq` may count publications not on disk yet: answer once they are, so that a
        // producer resuming from it never skips one a crash could still lose.
        self.answer_when_durable(j, client, request, Answer::ProducerReady { next_seq });
    }

    /// Stores a persistent publication of `client` and acks it once durable.
    pub(crate) fn publish(
        &mut self,
        j: &mut impl Journal,
        client: ClientId,
        seq: u64,
        attributes: Attributes,
        payload: Vec<u8>,
    ) {
        let event = &attributes;
        let fail = |e: &mut Self, (code, message): Refusal| {
            e.stats.publish_failures += 1;
            e.out.push_back(Output::PublishFailed {
                client,
                seq,
                code,
                message,
            });
        };
        let Some(producer) = self.client_producers.get(&client).cloned() else {
            fail(
                self,
                (
                    ErrorCode::ProtocolViolation,
                    "name a producer before publishing persistently".into(),
                ),
            );
            return;
        };
        if let Some(why) = &self.failed {
            let why = why.clone();
            fail(self, (ErrorCode::StoreUnavailable, why));
            return;
        }
        if self
            .producers
            .get(&producer)
            .is_some_and(|last| seq <= *last)
        {
            self.stats.duplicates += 1;
            self.when_durable(
                j,
                Output::Acked {
                    client,
                    through: seq,
                },
            );
            return;
        }
        let queues = self.local_matches(event);
        let me = self.cfg.me;
        let dests = self.remote.matches(event);
        let id = MessageId {
            origin: me,
            n: self.next_msg,
        };
        let rec = Record::Message {
            id,
            producer: Some((producer, seq)),
            attributes,
            payload,
            local: true,
            queues,
            dests,
        };
        match self.write(j, rec) {
            Ok(_) => self.when_durable(
                j,
                Output::Acked {
                    client,
                    through: seq,
                },
            ),
            Err(r) => fail(self, r),
        }
    }

    /// The local queues whose filter matches, in key order, each with the tag the message gets
    /// there.
    pub(super) fn local_matches(&mut self, event: &Event) -> Vec<(u64, u64)> {
        self.local
            .matches(event)
            .into_iter()
            .filter_map(|key| self.queues.get(&key).map(|q| (key, q.next_tag)))
            .collect()
    }

    // ---- queue administration ------------------------------------------------------------

    /// Adds a durable queue; answered with `Done` once durable.
    pub(crate) fn queue_add(
        &mut self,
        j: &mut impl Journal,
        client: ClientId,
        request: u64,
        name: &str,
        filter: &str,
        options: QueueOptions,
    ) {
        if let Err(r) = self.try_queue_add(j, name, filter, options) {
            self.refuse(client, request, r);
            return;
        }
        self.answer_when_durable(j, client, request, Answer::Done);
    }

    fn try_queue_add(
        &mut self,
        j: &mut impl Journal,
        name: &str,
        filter: &str,
        options: QueueOptions,
    ) -> Result<(), Refusal> {
        if !valid_queue_name(name) {
            return Err((
                ErrorCode::ProtocolViolation,
                format!("invalid queue name {name:?}: use 1 to 64 letters, digits, '_' or '-'"),
            ));
        }
        let compiled =
            Filter::new(filter).map_err(|e| (ErrorCode::InvalidFilter, e.to_string()))?;
        let ack_wait_ms = options
            .ack_wait_ms
            .unwrap_or_else(|| duration_ms(self.cfg.ack_wait))
            .max(1);
        if ack_wait_ms > duration_ms(super::consume::MAX_WAIT) {
            return Err((
                ErrorCode::ProtocolViolation,
                "the ack wait is at most 7 days".into(),
            ));
        }
        let max_deliveries = options
            .max_deliveries
            .unwrap_or(self.cfg.max_deliveries)
            .max(1);
        if let Some(q) = self.names.get(name).and_then(|k| self.queues.get(k)) {
            if q.filter.source() == compiled.source()
                && duration_ms(q.ack_wait) == ack_wait_ms
                && q.max_deliveries == max_deliveries
            {
                return Ok(());
            }
            return Err((
                ErrorCode::QueueExists,
                format!("queue {name:?} exists with another filter or options"),
            ));
        }
        let key = self.next_queue;
        self.write(
            j,
            Record::QueueAdded {
                key,
                name: name.to_owned(),
                filter: compiled.source().to_owned(),
                ack_wait_ms,
                max_deliveries,
            },
        )?;
        let decl = QueueDecl {
            home: self.cfg.me,
            name: name.to_owned(),
            filter: compiled.source().to_owned(),
            generation: self.next_generation,
            removed: false,
        };
        self.write(j, Record::Directory(decl.clone()))?;
        self.announce(&decl, None);
        Ok(())
    }

    /// Removes a durable queue with its messages; answered with `Done` once durable.
    pub(crate) fn queue_remove(
        &mut self,
        j: &mut impl Journal,
        client: ClientId,
        request: u64,
        name: &str,
    ) {
        let Some(&key) = self.names.get(name) else {
            self.refuse(client, request, not_found(name));
            return;
        };
        let filter = self
            .queues
            .get(&key)
            .map(|q| q.filter.source().to_owned())
            .unwrap_or_default();
        let decl = QueueDecl {
            home: self.cfg.me,
            name: name.to_owned(),
            filter,
            generation: self.next_generation,
            removed: true,
        };
        let r = self
            .write(j, Record::QueueRemoved { key })
            .and_then(|_| self.write(j, Record::Directory(decl.clone())));
        if let Err(r) = r {
            self.refuse(client, request, r);
            return;
        }
        self.announce(&decl, None);
        self.answer_when_durable(j, client, request, Answer::Done);
    }

    /// Answers a list (`name` = `None`) or info request.
    pub(crate) fn queue_info(&mut self, client: ClientId, request: u64, name: Option<&str>) {
        let mut infos = Vec::new();
        for q in self.queues.values() {
            for dead in [false, true] {
                let lane = q.lane(dead);
                let full = if dead {
                    format!("{}{DEAD_LETTER_SUFFIX}", q.name)
                } else {
                    q.name.clone()
                };
                if name.is_some_and(|n| n != full) {
                    continue;
                }
                infos.push(QueueInfo {
                    name: full,
                    filter: q.filter.source().to_owned(),
                    pending: lane.pending(),
                    unacked: lane.in_flight as u64,
                    dead_lettered: if dead { 0 } else { q.dead.entries.len() as u64 },
                    consumers: u32::try_from(lane.consumers.len()).unwrap_or(u32::MAX),
                    ack_wait_ms: duration_ms(q.ack_wait),
                    max_deliveries: if dead { 0 } else { q.max_deliveries },
                });
            }
        }
        if let Some(n) = name
            && infos.is_empty()
        {
            self.refuse(client, request, not_found(n));
            return;
        }
        self.answer(client, request, Answer::Queues(infos));
    }

    /// Resolves a queue name (`NAME` or `NAME.dlq`) to its lane.
    pub(super) fn resolve(&self, name: &str) -> Result<LaneId, Refusal> {
        let (base, dead) = match name.strip_suffix(DEAD_LETTER_SUFFIX) {
            Some(base) => (base, true),
            None => (name, false),
        };
        self.names
            .get(base)
            .map(|&queue| LaneId { queue, dead })
            .ok_or_else(|| not_found(name))
    }

    /// The body of the message stored at `pos`.
    pub(super) fn read_message(
        j: &impl Journal,
        pos: Position,
    ) -> Result<(MessageId, Attributes, Vec<u8>), String> {
        let bytes = j.read(pos).map_err(|e| e.to_string())?;
        match decode::<Record>(&bytes) {
            Ok(Record::Message {
                id,
                attributes,
                payload,
                ..
            }) => Ok((id, attributes, payload)),
            Ok(_) => Err(format!("the record at {pos:?} is not a message")),
            Err(e) => Err(e.to_string()),
        }
    }
}

pub(super) fn not_found(name: &str) -> Refusal {
    (
        ErrorCode::QueueNotFound,
        format!("no durable queue named {name:?}"),
    )
}

pub(super) fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
