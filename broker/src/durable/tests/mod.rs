//! The engine driven through its call protocol over an in-memory journal, in virtual time:
//! the harness ([`Node`], one engine with its journal and clock) here, one broker's queues in
//! `queues`, engines linked to each other in `network`, queue and producer owners in `owners`,
//! limits in `limits`.

mod directory;
mod limits;
mod matched;
mod network;
mod owners;
mod peek;
mod purge;
mod queues;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use palio_filter::{AttrName, Value};
use palio_protocol::{
    Attributes, ConsumeMode, DurableMessage, ErrorCode, QueueInfo, QueueOptions, ServerFrame,
};
use palio_topology::BrokerId;

use super::{Answer, Engine, EngineConfig, EngineLimits, Journal, Output, QueueLimits, WallClock};
use crate::auth::Principal;
use crate::persist::frames::{Framed, frame};
use crate::store::{Position, StoreError};

/// Records in a vector; `fail` makes appends fail from then on.
#[derive(Default)]
struct VecJournal {
    records: Vec<Vec<u8>>,
    fail: bool,
}

impl Journal for VecJournal {
    fn append(&mut self, record: &[u8]) -> Result<Position, StoreError> {
        if self.fail {
            return Err(StoreError::InvalidOptions("injected failure"));
        }
        self.records.push(record.to_vec());
        Ok(Position::new(0, self.records.len() as u64 - 1))
    }

    fn read(&self, pos: Position) -> Result<Vec<u8>, StoreError> {
        self.records
            .get(pos.offset as usize)
            .cloned()
            .ok_or(StoreError::NotFound(pos))
    }

    fn end(&self) -> Position {
        Position::new(0, self.records.len() as u64)
    }
}

const CLIENT: u64 = 7;

/// The principal of [`CLIENT`].
const ALICE: &str = "alice";

/// When the tests' virtual clocks start, in Unix milliseconds.
const START_MS: u64 = 1_700_000_000_000;

struct Node {
    engine: Engine,
    journal: VecJournal,
    now: Instant,
    /// Outputs taken from the engine and not yet looked at.
    inbox: Vec<Output>,
    /// The largest frame a client is sent, for [`Node::frames`].
    max_frame: usize,
}

pub(super) fn config(me: u32) -> EngineConfig {
    EngineConfig {
        me: BrokerId(me),
        ack_wait: Duration::from_secs(30),
        max_deliveries: 3,
        peer_window: 64,
        dedup_window: 1000,
        clock: WallClock {
            at: Instant::now(),
            unix_ms: START_MS,
        },
        limits: EngineLimits {
            max_queues: 1000,
            max_consumers_per_client: 100,
            max_fetch_wait: Duration::from_secs(300),
            max_producers: 1000,
            producer_idle: Duration::from_secs(3600),
            queue: QueueLimits::default(),
        },
    }
}

/// A principal with every permission, an admin or not.
fn principal(name: &str, admin: bool) -> Arc<Principal> {
    Arc::new(Principal {
        name: name.into(),
        admin,
        publish: None,
        subscribe: None,
    })
}

fn attrs(kind: &str, seq: i32) -> Attributes {
    [
        (AttrName::new("type").unwrap(), Value::String(kind.into())),
        (AttrName::new("seq").unwrap(), Value::Int(seq)),
    ]
    .into_iter()
    .collect()
}

impl Node {
    /// An engine with [`CLIENT`] connected as [`ALICE`].
    fn new(me: u32) -> Self {
        Self::with_config(config(me))
    }

    fn with_config(cfg: EngineConfig) -> Self {
        let now = cfg.clock.at;
        let mut engine = Engine::new(cfg);
        engine.client_up(CLIENT, principal(ALICE, false));
        Self {
            engine,
            journal: VecJournal::default(),
            now,
            inbox: Vec::new(),
            max_frame: palio_protocol::DEFAULT_MAX_FRAME,
        }
    }

    fn sync(&mut self) {
        let end = self.journal.end();
        self.engine.handle_durable(&mut self.journal, self.now, end);
    }

    fn outputs(&mut self) -> Vec<Output> {
        self.inbox
            .extend(std::iter::from_fn(|| self.engine.poll_output()));
        std::mem::take(&mut self.inbox)
    }

    /// The client outputs as the shell frames them; peer outputs stay in the inbox.
    fn frames(&mut self) -> Vec<ServerFrame> {
        let mut frames = Vec::new();
        for o in self.outputs() {
            if o.client().is_none() {
                self.inbox.push(o);
            } else if let Framed::Client { frames: f, .. } = frame(o, self.max_frame) {
                frames.extend(f);
            }
        }
        frames
    }

    fn messages(&mut self) -> Vec<DurableMessage> {
        self.frames()
            .into_iter()
            .filter_map(|f| match f {
                ServerFrame::Message(m) => Some(m),
                _ => None,
            })
            .collect()
    }

    fn add_queue(&mut self, name: &str, filter: &str) {
        self.engine.queue_add(
            &mut self.journal,
            CLIENT,
            1,
            name,
            filter,
            QueueOptions::default(),
        );
        self.sync();
        assert_eq!(self.frames(), vec![ServerFrame::Done { request: 1 }]);
    }

    fn publish(&mut self, kind: &str, seq: u64) {
        let a = attrs(kind, seq as i32);
        self.engine
            .publish(&mut self.journal, self.now, CLIENT, seq, a, vec![1, 2]);
    }

    fn producer(&mut self) -> u64 {
        self.engine
            .producer(&mut self.journal, self.now, CLIENT, 2, "p1".into());
        self.sync();
        match self.frames().as_slice() {
            [ServerFrame::ProducerReady { next_seq, .. }] => *next_seq,
            other => panic!("{other:?}"),
        }
    }

    fn consume(&mut self, queue: &str, mode: ConsumeMode) -> u64 {
        self.engine
            .consume(&mut self.journal, self.now, CLIENT, 3, queue, mode);
        let mut outputs = self.outputs().into_iter();
        let consumer = match outputs.next() {
            Some(Output::Answer {
                answer: Answer::Consuming { consumer },
                ..
            }) => consumer,
            other => panic!("{other:?}"),
        };
        self.inbox.extend(outputs);
        consumer
    }

    fn info(&mut self, name: &str) -> QueueInfo {
        self.engine.queue_info(CLIENT, 4, Some(name));
        match self.frames().pop() {
            Some(ServerFrame::Queues { mut queues, .. }) => queues.remove(0),
            other => panic!("{other:?}"),
        }
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        self.engine.handle_timeout(&mut self.journal, self.now);
    }

    /// A new engine recovered from this one's journal (as after a crash with everything
    /// synced), with [`CLIENT`] connected again as [`ALICE`].
    fn recovered(&self) -> Node {
        let mut engine = Engine::new(self.engine.cfg.clone());
        for (i, r) in self.journal.records.iter().enumerate() {
            assert!(engine.apply_bytes(Position::new(0, i as u64), r));
        }
        engine.client_up(CLIENT, principal(ALICE, false));
        let journal = VecJournal {
            records: self.journal.records.clone(),
            fail: false,
        };
        let mut n = Node {
            engine,
            journal,
            now: self.now,
            inbox: Vec::new(),
            max_frame: self.max_frame,
        };
        n.sync();
        n
    }
}

/// The ack of publications `from` to `through`, each of which matched `queues` queues.
fn acked(from: u64, through: u64, queues: u32) -> ServerFrame {
    ServerFrame::PublishAcked {
        through,
        matched: vec![palio_protocol::QueueMatches {
            from,
            through,
            queues,
        }],
    }
}

fn seqs(ms: &[DurableMessage]) -> Vec<i32> {
    ms.iter()
        .map(
            |m| match m.attributes.iter().find(|(k, _)| k.as_str() == "seq") {
                Some((_, Value::Int(i))) => *i,
                other => panic!("{other:?}"),
            },
        )
        .collect()
}
