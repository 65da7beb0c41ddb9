//! The persistence engine: durable queues, persistent publications, consumers and
//! store-and-forward, as one deterministic state machine. This file holds its state and the
//! types the other files share; its methods live in a file per concern:
//!
//! | file | concern |
//! |---|---|
//! | `publish` | persistent publications, where a message goes |
//! | `producers` | the producer table: owners, sequence numbers, room for new producers |
//! | `admin` | adding, removing and listing durable queues |
//! | `access` | who each client is, and what its principal may use |
//! | `limits` | broker-wide limits, queue size limits and `max_age`, the wall clock |
//! | `consume` | consumers: push, pull, acks, naks, redelivery, dead-lettering |
//! | `purge` | emptying a lane: purges, removing a dead-letter queue |
//! | `peek` | the next pending messages of a queue, shown without delivery |
//! | `directory` | the durable queues of other brokers |
//! | `forward` | store-and-forward between brokers |
//! | `output` | domain outputs, held back until durable |
//! | `apply` | records applied to state, live and in recovery |
//! | `snapshot` | checkpoints |
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
//! - [`Engine::client_up`] before a client's first request, [`Engine::set_principal`] when a
//!   reload changes its principal, [`Engine::client_gone`] when it leaves;
//! - then [`Engine::poll_output`] until it returns `None`: [`Output`]s for clients and peers,
//!   in domain terms (the shell frames them for the wire).
//!
//! # Durability rule
//!
//! Every state change is a [`Record`](super::record::Record) appended to the journal and applied by
//! [`Engine::apply`], the same function recovery uses. Nothing that promises durability
//! leaves before the record it depends on is durable: publish acks, ack confirmations and
//! store acks to peers wait in `waiting` until [`Engine::handle_durable`] passes their
//! position, and a stored message is delivered or forwarded only once durable.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use palio_protocol::{ConsumeMode, ErrorCode};
use palio_topology::BrokerId;

use super::access::ClientState;
use super::limits::{EngineLimits, Limit, WallClock};
use super::matching::FilterIndex;
use super::output::Output;
use super::producers::ProducerEntry;
use super::queue::{Lane, Queue};
use super::record::LaneId;
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
    /// The wall-clock time at one instant: turns `now` into the times records carry.
    pub(crate) clock: WallClock,
    /// Bounds on queues, consumers, fetches, producers and queue sizes.
    pub(crate) limits: EngineLimits,
}

/// Counters for metrics (monotonic).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Stats {
    pub(crate) stored: u64,
    pub(crate) duplicates: u64,
    /// Publications stored here that matched no durable queue of the overlay.
    pub(crate) unmatched: u64,
    pub(crate) delivered: u64,
    pub(crate) redelivered: u64,
    pub(crate) acked: u64,
    pub(crate) dead_lettered: u64,
    pub(crate) forwarded: u64,
    pub(crate) publish_failures: u64,
    /// Requests refused for want of permission on a queue (or a consumer of one).
    pub(crate) denied_queue: u64,
    /// Producer names refused for belonging to another principal.
    pub(crate) denied_producer: u64,
    /// Messages withheld from a consumer whose principal may not receive them (its permission
    /// shrank after the queue was added) and dropped from their queue.
    pub(crate) denied_receive: u64,
    /// Limits hit, by [`Limit`] (indexed by `Limit as usize`).
    pub(crate) limits: [u64; Limit::ALL.len()],
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
    /// The oldest message of a queue with a `max_age` reaches it.
    Expire { queue: u64 },
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
    /// Every producer named or stored here: its owner and highest stored sequence number
    /// (`producers`).
    pub(super) producers: HashMap<String, ProducerEntry>,
    /// A full producer table has nothing to forget before this time (Unix milliseconds): a
    /// producer naming before it is refused without a scan.
    pub(super) producers_full_until: u64,
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
    /// The connected clients: principal and consumer count (`access`).
    pub(super) clients: HashMap<ClientId, ClientState>,
    pub(super) client_producers: HashMap<ClientId, String>,
    /// Connected peers and their store frames in flight.
    pub(super) peers: BTreeMap<BrokerId, usize>,
    /// Destination broker → the peer to send through.
    pub(super) next_hops: HashMap<BrokerId, BrokerId>,
    /// Everything before it is on disk.
    pub(super) durable: Position,
    /// The end of the last record whose effects wait for the disk (every record but delivery
    /// counts, and whatever `waiting` needs): how far the log must be synced. Records after
    /// it are written but need no sync of their own; the next one covers them.
    pub(super) wanted: Position,
    /// Outputs waiting for the log to be durable up to a position.
    pub(super) waiting: VecDeque<(Position, Output)>,
    pub(super) out: VecDeque<Output>,
    pub(super) timers: BinaryHeap<Reverse<(Instant, Timer)>>,
    /// The size of `timers` past which timers no longer current are swept out of it.
    pub(super) timers_sweep_at: usize,
    /// Queues with a `max_age` that got messages and have no expiry timer yet.
    pub(super) expiry_due: BTreeSet<u64>,
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
            producers_full_until: 0,
            seen: HashSet::new(),
            seen_order: VecDeque::new(),
            forwards: BTreeMap::new(),
            to_send: BTreeSet::new(),
            directory: BTreeMap::new(),
            remote: FilterIndex::default(),
            consumers: HashMap::new(),
            next_consumer: 1,
            clients: HashMap::new(),
            client_producers: HashMap::new(),
            peers: BTreeMap::new(),
            next_hops: HashMap::new(),
            durable: Position {
                segment: 0,
                offset: 0,
            },
            wanted: Position::START,
            waiting: VecDeque::new(),
            out: VecDeque::new(),
            timers: BinaryHeap::new(),
            timers_sweep_at: TIMERS_SWEEP_MIN,
            expiry_due: BTreeSet::new(),
            seg_refs: BTreeMap::new(),
            failed: None,
            stats: Stats::default(),
        }
    }

    /// The lowest segment holding a live message, if any: segments below it (and below the
    /// checkpoint) can be deleted.
    pub(crate) fn live_floor(&self) -> Option<u64> {
        self.seg_refs.keys().next().copied()
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
    /// How far the log must be made durable for what waits on it: see [`Engine::wanted`]. The
    /// owner commits everything appended and asks for a sync up to here.
    pub(crate) fn sync_wanted(&self) -> Position {
        self.wanted
    }

    pub(crate) fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When [`Engine::handle_timeout`] should be called next.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((t, _))| *t)
    }

    pub(super) fn lane(&self, lane: LaneId) -> Option<&Lane> {
        self.queues.get(&lane.queue).map(|q| q.lane(lane.dead))
    }

    pub(super) fn lane_mut(&mut self, lane: LaneId) -> Option<&mut Lane> {
        self.queues
            .get_mut(&lane.queue)
            .map(|q| q.lane_mut(lane.dead))
    }
}

/// `timers` is never swept below this size: sweeping a small heap saves nothing.
const TIMERS_SWEEP_MIN: usize = 4096;

impl Engine {
    /// Schedules `timer` at `at`. Timers are not removed when what they time ends (an acked
    /// delivery, a fetch replaced by the next); they are skipped when they fire. So that those
    /// left-over timers (up to 7 days each) cannot pile up, the heap is swept of them whenever
    /// it has doubled since the last sweep: it stays within about twice the live timers.
    pub(super) fn push_timer(&mut self, at: Instant, timer: Timer) {
        self.timers.push(Reverse((at, timer)));
        if self.timers.len() >= self.timers_sweep_at {
            let timers = std::mem::take(&mut self.timers);
            self.timers = timers
                .into_iter()
                .filter(|Reverse((at, t))| self.timer_is_current(*at, *t))
                .collect();
            self.timers_sweep_at = (self.timers.len() * 2).max(TIMERS_SWEEP_MIN);
        }
    }

    /// Whether `timer` at `at` still times something: otherwise firing it does nothing.
    pub(super) fn timer_is_current(&self, at: Instant, timer: Timer) -> bool {
        match timer {
            Timer::AckWait { lane, tag, count } => self
                .lane(lane)
                .and_then(|l| l.entries.get(&tag))
                .is_some_and(|e| {
                    e.count == count && matches!(e.state, super::queue::State::InFlight { .. })
                }),
            Timer::Delay { lane, tag } => self
                .lane(lane)
                .and_then(|l| l.entries.get(&tag))
                .is_some_and(|e| matches!(e.state, super::queue::State::Delayed(d) if d == at)),
            Timer::Fetch { consumer, request } => self
                .consumers
                .get(&consumer)
                .and_then(|c| c.fetch)
                .is_some_and(|f| f.request == request),
            Timer::Expire { queue } => self
                .queues
                .get(&queue)
                .is_some_and(|q| q.expiry == Some(at)),
        }
    }
}

pub(super) fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
