//! The engine driven through its call protocol over an in-memory journal, in virtual time.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use palio_filter::{AttrName, Value};
use palio_protocol::{
    Attributes, ConsumeMode, DurableMessage, ErrorCode, QueueInfo, QueueOptions, ServerFrame,
};
use palio_topology::BrokerId;

use super::{Answer, Engine, EngineConfig, Journal, Output};
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

struct Node {
    engine: Engine,
    journal: VecJournal,
    now: Instant,
    /// Outputs taken from the engine and not yet looked at.
    inbox: Vec<Output>,
    /// The largest frame a client is sent, for [`Node::frames`].
    max_frame: usize,
}

fn config(me: u32) -> EngineConfig {
    EngineConfig {
        me: BrokerId(me),
        ack_wait: Duration::from_secs(30),
        max_deliveries: 3,
        peer_window: 64,
        dedup_window: 1000,
    }
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
    fn new(me: u32) -> Self {
        Self {
            engine: Engine::new(config(me)),
            journal: VecJournal::default(),
            now: Instant::now(),
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
            .publish(&mut self.journal, CLIENT, seq, a, vec![1, 2]);
    }

    fn producer(&mut self) -> u64 {
        self.engine.producer(&self.journal, CLIENT, 2, "p1".into());
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
    /// synced).
    fn recovered(&self) -> Node {
        let mut engine = Engine::new(self.engine.cfg.clone());
        for (i, r) in self.journal.records.iter().enumerate() {
            assert!(engine.apply_bytes(Position::new(0, i as u64), r));
        }
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

#[test]
fn publish_is_acked_only_once_durable_and_retries_are_not_stored_twice() {
    let mut n = Node::new(1);
    n.add_queue("q", "type = 'a'");
    assert_eq!(n.producer(), 0);
    n.publish("a", 0);
    n.publish("a", 1);
    assert!(n.frames().is_empty(), "nothing acked before the sync");
    n.sync();
    assert_eq!(n.frames(), vec![ServerFrame::PublishAcked { through: 1 }]);
    let records = n.journal.records.len();
    n.publish("a", 1);
    n.sync();
    assert_eq!(n.journal.records.len(), records, "a retry is not stored");
    n.sync();
    n.publish("a", 2);
    n.sync();
    assert_eq!(
        n.frames(),
        vec![
            ServerFrame::PublishAcked { through: 1 },
            ServerFrame::PublishAcked { through: 2 }
        ]
    );
    assert_eq!(n.info("q").pending, 3);
    assert_eq!(
        n.producer(),
        3,
        "the producer resumes after its last stored seq"
    );
}

#[test]
fn publishing_needs_a_producer() {
    let mut n = Node::new(1);
    n.publish("a", 0);
    assert!(matches!(
        n.frames().as_slice(),
        [ServerFrame::PublishFailed {
            seq: 0,
            code: ErrorCode::ProtocolViolation,
            ..
        }]
    ));
}

#[test]
fn push_consumer_gets_matching_messages_within_its_window_and_acks_free_room() {
    let mut n = Node::new(1);
    n.add_queue("q", "type = 'a'");
    n.producer();
    for s in 0..5 {
        n.publish(if s == 2 { "b" } else { "a" }, s);
    }
    n.sync();
    n.frames();
    let c = n.consume("q", ConsumeMode::Push { window: 2 });
    let first = n.messages();
    assert_eq!(seqs(&first), vec![0, 1]);
    assert!(
        first
            .iter()
            .all(|m| m.delivery_count == 1 && m.consumer == c)
    );
    let info = n.info("q");
    assert_eq!((info.pending, info.unacked), (2, 2));
    n.engine
        .ack(&mut n.journal, n.now, CLIENT, 9, c, &[first[0].tag]);
    let frames = n.frames();
    assert!(
        !frames.contains(&ServerFrame::Done { request: 9 }),
        "ack confirmed before durable"
    );
    assert_eq!(seqs(&frames_messages(frames)), vec![3]);
    n.sync();
    assert_eq!(n.frames(), vec![ServerFrame::Done { request: 9 }]);
    assert_eq!(n.info("q").unacked, 2);
}

fn frames_messages(frames: Vec<ServerFrame>) -> Vec<DurableMessage> {
    frames
        .into_iter()
        .filter_map(|f| match f {
            ServerFrame::Message(m) => Some(m),
            _ => None,
        })
        .collect()
}

#[test]
fn unacked_messages_come_back_after_the_ack_wait_then_go_to_the_dead_letter_queue() {
    let mut n = Node::new(1);
    n.add_queue("q", "TRUE");
    n.producer();
    n.publish("a", 0);
    n.sync();
    n.frames();
    n.consume("q", ConsumeMode::Push { window: 10 });
    assert_eq!(n.messages()[0].delivery_count, 1);
    n.advance(Duration::from_secs(29));
    assert!(n.messages().is_empty(), "redelivered before the ack wait");
    n.advance(Duration::from_secs(2));
    assert_eq!(n.messages()[0].delivery_count, 2);
    n.advance(Duration::from_secs(31));
    assert_eq!(n.messages()[0].delivery_count, 3);
    n.advance(Duration::from_secs(31));
    assert!(n.messages().is_empty(), "max deliveries is 3");
    let info = n.info("q");
    assert_eq!((info.pending, info.unacked, info.dead_lettered), (0, 0, 1));
    let dlq = n.consume("q.dlq", ConsumeMode::Pull);
    n.engine.fetch(
        &mut n.journal,
        n.now,
        CLIENT,
        11,
        dlq,
        10,
        Duration::from_secs(1),
    );
    let frames = n.frames();
    assert_eq!(seqs(&frames_messages(frames.clone())), vec![0]);
    assert_eq!(
        frames.last(),
        Some(&ServerFrame::Fetched {
            request: 11,
            count: 1
        })
    );
}

#[test]
fn nak_delays_redelivery_and_a_vanished_consumer_releases_its_messages() {
    let mut n = Node::new(1);
    n.add_queue("q", "TRUE");
    n.producer();
    n.publish("a", 0);
    n.publish("a", 1);
    n.sync();
    n.frames();
    let c = n.consume("q", ConsumeMode::Push { window: 1 });
    let m = n.messages();
    assert_eq!(seqs(&m), vec![0]);
    n.engine.nak(
        &mut n.journal,
        n.now,
        CLIENT,
        5,
        c,
        &[m[0].tag],
        Duration::from_secs(5),
    );
    // The window is free again: the next message comes; the nakked one only after 5 s.
    assert_eq!(seqs(&n.messages()), vec![1]);
    n.engine.client_gone(&mut n.journal, n.now, CLIENT);
    let c2 = n.consume("q", ConsumeMode::Push { window: 10 });
    let again = n.messages();
    assert_eq!(seqs(&again), vec![1]);
    assert_eq!(again[0].delivery_count, 2);
    n.advance(Duration::from_secs(5));
    let late = n.messages();
    assert_eq!(seqs(&late), vec![0]);
    assert_eq!((late[0].delivery_count, late[0].consumer), (2, c2));
}

#[test]
fn windows_and_batches_above_the_protocol_limits_are_refused_not_cut() {
    use palio_protocol::{MAX_FETCH_BATCH, MAX_PUSH_WINDOW};

    let mut n = Node::new(1);
    n.add_queue("q", "TRUE");
    n.producer();
    n.publish("a", 0);
    n.sync();
    n.frames();
    let refused = |frames: Vec<ServerFrame>, request: u64| match frames.as_slice() {
        [
            ServerFrame::Error {
                request: Some(r),
                code: ErrorCode::LimitExceeded,
                message,
            },
        ] if *r == request => message.clone(),
        other => panic!("expected a limit_exceeded refusal of {request}: {other:?}"),
    };
    let over = ConsumeMode::Push {
        window: MAX_PUSH_WINDOW + 1,
    };
    n.engine
        .consume(&mut n.journal, n.now, CLIENT, 30, "q", over);
    let message = refused(n.frames(), 30);
    assert!(message.contains(&MAX_PUSH_WINDOW.to_string()), "{message}");
    assert_eq!(n.info("q").consumers, 0, "no consumer attached");
    // At the limit is fine.
    let c = n.consume(
        "q",
        ConsumeMode::Push {
            window: MAX_PUSH_WINDOW,
        },
    );
    assert_eq!(seqs(&n.messages()), vec![0]);
    n.engine.stop_consume(&mut n.journal, n.now, CLIENT, 31, c);
    n.frames();

    let p = n.consume("q", ConsumeMode::Pull);
    n.engine.fetch(
        &mut n.journal,
        n.now,
        CLIENT,
        32,
        p,
        MAX_FETCH_BATCH + 1,
        Duration::from_secs(1),
    );
    let message = refused(n.frames(), 32);
    assert!(message.contains(&MAX_FETCH_BATCH.to_string()), "{message}");
    n.engine.fetch(
        &mut n.journal,
        n.now,
        CLIENT,
        33,
        p,
        MAX_FETCH_BATCH,
        Duration::ZERO,
    );
    let frames = n.frames();
    assert_eq!(seqs(&frames_messages(frames.clone())), vec![0]);
    assert_eq!(
        frames.last(),
        Some(&ServerFrame::Fetched {
            request: 33,
            count: 1
        })
    );
}

#[test]
fn a_long_queue_listing_comes_in_several_frames_within_the_frame_limit() {
    let mut n = Node::new(1);
    n.max_frame = 2048;
    let names: Vec<String> = (0..40).map(|i| format!("q{i:02}")).collect();
    for name in &names {
        n.add_queue(name, &format!("kind = '{}'", "k".repeat(100)));
    }
    n.engine.queue_info(CLIENT, 40, None);
    let frames = n.frames();
    assert!(frames.len() > 1, "{} frame(s)", frames.len());
    let mut listed = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        let ServerFrame::Queues {
            request: 40,
            queues,
            more,
        } = f
        else {
            panic!("{f:?}");
        };
        assert_eq!(*more, i + 1 < frames.len());
        assert!(palio_protocol::encode(f).unwrap().len() <= 2048);
        listed.extend(queues.iter().map(|q| q.name.clone()));
    }
    let expected: Vec<String> = names
        .iter()
        .flat_map(|q| [q.clone(), format!("{q}.dlq")])
        .collect();
    assert_eq!(listed, expected);
}

#[test]
fn pull_fetch_waits_for_messages_up_to_its_max_wait() {
    let mut n = Node::new(1);
    n.add_queue("q", "TRUE");
    n.producer();
    let c = n.consume("q", ConsumeMode::Pull);
    n.engine.fetch(
        &mut n.journal,
        n.now,
        CLIENT,
        20,
        c,
        5,
        Duration::from_secs(2),
    );
    assert!(n.frames().is_empty());
    n.publish("a", 0);
    n.sync();
    let frames = n.frames();
    assert_eq!(seqs(&frames_messages(frames.clone())), vec![0]);
    assert!(frames.contains(&ServerFrame::Fetched {
        request: 20,
        count: 1
    }));
    n.engine.fetch(
        &mut n.journal,
        n.now,
        CLIENT,
        21,
        c,
        5,
        Duration::from_secs(2),
    );
    n.advance(Duration::from_secs(1));
    assert!(n.frames().is_empty());
    n.advance(Duration::from_secs(1));
    assert_eq!(
        n.frames(),
        vec![ServerFrame::Fetched {
            request: 21,
            count: 0
        }]
    );
}

#[test]
fn recovery_from_the_journal_and_from_a_snapshot_agree() {
    let mut n = Node::new(1);
    n.add_queue("q", "TRUE");
    n.add_queue("r", "type = 'b'");
    n.producer();
    for s in 0..6 {
        n.publish(if s % 2 == 0 { "a" } else { "b" }, s);
    }
    n.sync();
    n.frames();
    let c = n.consume("q", ConsumeMode::Push { window: 3 });
    let got = n.messages();
    n.engine.ack(
        &mut n.journal,
        n.now,
        CLIENT,
        9,
        c,
        &[got[0].tag, got[2].tag],
    );
    n.sync();
    let mut full = n.recovered();
    let q = full.info("q");
    // Six published, two acked; the delivered-not-acked one is pending again after recovery.
    assert_eq!((q.pending, q.unacked), (4, 0));
    assert_eq!(full.info("r").pending, 3);
    full.consume("q", ConsumeMode::Push { window: 10 });
    let again = full.messages();
    assert_eq!(seqs(&again), vec![1, 3, 4, 5]);
    assert_eq!(again[0].delivery_count, 2, "delivery counts survive");

    // Snapshot after the first half of the journal, replay the rest.
    let half = n.journal.records.len() / 2;
    let mut partial = Engine::new(n.engine.cfg.clone());
    for (i, r) in n.journal.records[..half].iter().enumerate() {
        partial.apply_bytes(Position::new(0, i as u64), r);
    }
    let snap = partial.snapshot();
    let mut resumed = Engine::from_snapshot(n.engine.cfg.clone(), snap);
    for (i, r) in n.journal.records.iter().enumerate().skip(half) {
        resumed.apply_bytes(Position::new(0, i as u64), r);
    }
    let fresh = n.recovered();
    assert_eq!(resumed.snapshot(), fresh.engine.snapshot());
}

#[test]
fn a_failed_store_turns_waiting_acks_into_failures_and_refuses_later_writes() {
    let mut n = Node::new(1);
    n.add_queue("q", "TRUE");
    n.producer();
    n.publish("a", 0);
    n.engine.handle_failure("fdatasync failed");
    assert!(matches!(
        n.frames().as_slice(),
        [ServerFrame::PublishFailed {
            seq: 0,
            code: ErrorCode::StoreUnavailable,
            ..
        }]
    ));
    n.sync();
    n.publish("a", 1);
    assert!(matches!(
        n.frames().as_slice(),
        [ServerFrame::PublishFailed { seq: 1, .. }]
    ));
    let mut m = Node::new(1);
    m.producer();
    m.journal.fail = true;
    m.publish("a", 0);
    assert!(matches!(
        m.frames().as_slice(),
        [ServerFrame::PublishFailed {
            seq: 0,
            code: ErrorCode::StoreUnavailable,
            ..
        }]
    ));
}

/// Three engines in a line 1 – 2 – 3 with a queue at 3; frames are carried by hand.
struct Line {
    nodes: Vec<Node>,
    /// Links that are up.
    up: Vec<(u32, u32)>,
}

impl Line {
    fn new() -> Self {
        let mut nodes: Vec<Node> = (1..=3).map(Node::new).collect();
        let hops = |pairs: &[(u32, u32)]| -> HashMap<BrokerId, BrokerId> {
            pairs
                .iter()
                .map(|(d, h)| (BrokerId(*d), BrokerId(*h)))
                .collect()
        };
        let all = [
            hops(&[(2, 2), (3, 2)]),
            hops(&[(1, 1), (3, 3)]),
            hops(&[(1, 2), (2, 2)]),
        ];
        for (n, h) in nodes.iter_mut().zip(all) {
            n.engine.set_next_hops(&mut n.journal, h);
        }
        let mut l = Line { nodes, up: vec![] };
        l.link(1, 2);
        l.link(2, 3);
        l
    }

    fn node(&mut self, id: u32) -> &mut Node {
        &mut self.nodes[id as usize - 1]
    }

    fn link(&mut self, a: u32, b: u32) {
        self.up.push((a, b));
        for (x, y) in [(a, b), (b, a)] {
            let n = self.node(x);
            n.engine.peer_up(&mut n.journal, BrokerId(y));
        }
    }

    fn unlink(&mut self, a: u32, b: u32) {
        self.up.retain(|l| *l != (a, b));
        for (x, y) in [(a, b), (b, a)] {
            let n = self.node(x);
            n.engine.peer_down(&mut n.journal, BrokerId(y));
        }
    }

    /// Syncs and carries peer outputs over up links until quiet; returns client frames.
    fn run(&mut self) -> Vec<(u32, ServerFrame)> {
        let mut client = Vec::new();
        for _ in 0..100 {
            let mut moved = false;
            for i in 1..=3u32 {
                self.node(i).sync();
                for o in self.node(i).outputs() {
                    let (to, from) = match &o {
                        Output::Store { peer, .. }
                        | Output::StoreAck { peer, .. }
                        | Output::Decl { peer, .. } => (peer.0, BrokerId(i)),
                        _ => {
                            let max_frame = self.node(i).max_frame;
                            if let Framed::Client { frames, .. } = frame(o, max_frame) {
                                client.extend(frames.map(|f| (i, f)));
                            }
                            continue;
                        }
                    };
                    if !self
                        .up
                        .iter()
                        .any(|&(a, b)| (a, b) == (i, to) || (a, b) == (to, i))
                    {
                        continue;
                    }
                    moved = true;
                    let n = self.node(to);
                    match o {
                        Output::Store {
                            id,
                            dests,
                            attributes,
                            payload,
                            ..
                        } => n.engine.handle_store(
                            &mut n.journal,
                            from,
                            id,
                            dests,
                            attributes,
                            payload,
                        ),
                        Output::StoreAck { ids, .. } => {
                            n.engine.handle_store_ack(&mut n.journal, from, &ids)
                        }
                        Output::Decl { decl, .. } => {
                            n.engine.handle_decl(&mut n.journal, from, decl)
                        }
                        other => panic!("{other:?}"),
                    }
                }
            }
            if !moved {
                return client;
            }
        }
        panic!("did not settle");
    }
}

#[test]
fn messages_reach_a_remote_queue_across_a_broken_link_exactly_once() {
    let mut l = Line::new();
    l.node(3).add_queue("far", "type = 'a'");
    l.run();
    l.node(1).producer();
    l.node(1).publish("a", 0);
    l.node(1).publish("b", 1);
    l.run();
    assert_eq!(l.node(3).info("far").pending, 1);
    // The middle link breaks; publications keep coming and wait at broker 1 or 2.
    l.unlink(2, 3);
    for s in 2..6 {
        l.node(1).publish("a", s);
    }
    l.run();
    assert_eq!(l.node(3).info("far").pending, 1);
    assert!(
        !l.node(2).engine.forwards.is_empty(),
        "held at the middle broker"
    );
    // Broker 2 "crashes": it recovers from its journal, then the link heals.
    let recovered = l.node(2).recovered();
    l.nodes[1] = recovered;
    let n = l.node(2);
    n.engine.set_next_hops(
        &mut n.journal,
        [(1, 1), (3, 3)]
            .into_iter()
            .map(|(d, h)| (BrokerId(d), BrokerId(h)))
            .collect(),
    );
    l.link(1, 2);
    l.link(2, 3);
    l.run();
    l.node(3).consume("far", ConsumeMode::Push { window: 100 });
    let got = l.node(3).messages();
    assert_eq!(seqs(&got), vec![0, 2, 3, 4, 5]);
    assert!(l.nodes.iter().all(|n| n.engine.forwards.is_empty()));
    assert_eq!(
        l.node(2).engine.live_floor(),
        None,
        "nothing left to keep at the relay"
    );
}

#[test]
fn a_resent_message_is_stored_once_while_held_and_delivered_once_in_any_case() {
    let mut l = Line::new();
    l.node(3).add_queue("far", "TRUE");
    l.run();
    for (round, hold_at_2) in [(0u64, true), (1, false)] {
        if hold_at_2 {
            l.unlink(2, 3);
        }
        l.node(1).producer();
        l.node(1).publish("a", round);
        // Carry the Store frame to 2, then lose 2's ack by breaking the link.
        l.node(1).sync();
        let store = l
            .node(1)
            .outputs()
            .into_iter()
            .find_map(|o| match o {
                Output::Store {
                    id,
                    dests,
                    attributes,
                    payload,
                    ..
                } => Some((id, dests, attributes, payload)),
                _ => None,
            })
            .expect("a store frame toward 2");
        let n2 = l.node(2);
        n2.engine.handle_store(
            &mut n2.journal,
            BrokerId(1),
            store.0,
            store.1,
            store.2,
            store.3,
        );
        l.unlink(1, 2);
        l.run();
        l.link(1, 2);
        l.run();
        if hold_at_2 {
            // 2 still holds it for 3: the copy sent again is not stored again.
            assert_eq!(messages_stored(&l.node(2).journal), 1);
            l.link(2, 3);
            l.run();
        } else {
            // 2 had handed it off: it takes the copy again (a route could have changed).
            assert_eq!(messages_stored(&l.node(2).journal), 3);
        }
    }
    // Either way 3 puts each message into its queue once.
    l.node(3).consume("far", ConsumeMode::Push { window: 10 });
    assert_eq!(seqs(&l.node(3).messages()), vec![0, 1]);
    assert!(l.nodes.iter().all(|n| n.engine.forwards.is_empty()));
}

fn messages_stored(j: &VecJournal) -> usize {
    j.records
        .iter()
        .filter(|r| {
            matches!(
                super::record::decode::<super::record::Record>(r),
                Ok(super::record::Record::Message { .. })
            )
        })
        .count()
}

#[test]
fn absurd_waits_from_clients_are_cut_or_refused_not_overflowed() {
    let mut n = Node::new(1);
    n.engine.queue_add(
        &mut n.journal,
        CLIENT,
        1,
        "q",
        "TRUE",
        QueueOptions {
            ack_wait_ms: Some(u64::MAX),
            max_deliveries: None,
        },
    );
    assert!(matches!(
        n.frames().as_slice(),
        [ServerFrame::Error {
            code: ErrorCode::ProtocolViolation,
            ..
        }]
    ));
    n.add_queue("q", "TRUE");
    n.producer();
    n.publish("a", 0);
    n.sync();
    n.frames();
    let c = n.consume("q", ConsumeMode::Pull);
    n.engine
        .fetch(&mut n.journal, n.now, CLIENT, 5, c, 1, Duration::MAX);
    let m = n.messages();
    assert_eq!(m.len(), 1);
    n.engine.nak(
        &mut n.journal,
        n.now,
        CLIENT,
        6,
        c,
        &[m[0].tag],
        Duration::from_millis(u64::MAX),
    );
    n.advance(Duration::from_secs(8 * 24 * 3600));
    n.engine
        .fetch(&mut n.journal, n.now, CLIENT, 7, c, 1, Duration::ZERO);
    assert_eq!(
        n.messages()[0].delivery_count,
        2,
        "back after the cut delay"
    );
}

// ---- store-and-forward edge cases (found in review) -----------------------------------------

fn hops_of(pairs: &[(u32, u32)]) -> HashMap<BrokerId, BrokerId> {
    pairs
        .iter()
        .map(|(d, h)| (BrokerId(*d), BrokerId(*h)))
        .collect()
}

fn decl(home: u32, name: &str) -> crate::wire::QueueDecl {
    crate::wire::QueueDecl {
        home: BrokerId(home),
        name: name.into(),
        filter: "TRUE".into(),
        generation: 1,
        removed: false,
    }
}

fn stores(outs: &[Output]) -> Vec<(u32, crate::wire::MessageId, Vec<BrokerId>)> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Store {
                peer, id, dests, ..
            } => Some((peer.0, *id, dests.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn a_new_route_through_a_hop_waits_for_that_hops_ack_before_a_second_store() {
    let mut n = Node::new(1);
    n.engine.peer_up(&mut n.journal, BrokerId(2));
    n.engine
        .handle_decl(&mut n.journal, BrokerId(2), decl(3, "q3"));
    n.engine
        .handle_decl(&mut n.journal, BrokerId(2), decl(4, "q4"));
    n.engine
        .set_next_hops(&mut n.journal, hops_of(&[(2, 2), (3, 2)]));
    n.sync();
    n.outputs();
    n.producer();
    n.publish("a", 0);
    n.sync();
    let first = stores(&n.outputs());
    assert_eq!(first.len(), 1);
    let id = first[0].1;
    assert_eq!(first[0].2, vec![BrokerId(3)]);
    // A route to 4 appears through the same hop: nothing more goes out before 2's ack.
    n.engine
        .set_next_hops(&mut n.journal, hops_of(&[(2, 2), (3, 2), (4, 2)]));
    assert!(stores(&n.outputs()).is_empty());
    assert_eq!(n.engine.peers[&BrokerId(2)], 1);
    // The ack covers 3 only; 4 goes out next, and its own ack ends the forward.
    n.engine
        .handle_store_ack(&mut n.journal, BrokerId(2), &[id]);
    let second = stores(&n.outputs());
    assert_eq!(second, vec![(2, id, vec![BrokerId(4)])]);
    assert_eq!(n.engine.forwards.len(), 1, "4 is not handed off yet");
    n.engine
        .handle_store_ack(&mut n.journal, BrokerId(2), &[id]);
    assert!(n.engine.forwards.is_empty());
    assert_eq!(n.engine.peers[&BrokerId(2)], 0, "no window slot leaked");
}

#[test]
fn a_message_not_yet_durable_does_not_hold_back_durable_ones() {
    let mut n = Node::new(5);
    n.engine
        .handle_decl(&mut n.journal, BrokerId(2), decl(3, "q3"));
    n.engine
        .set_next_hops(&mut n.journal, hops_of(&[(2, 2), (3, 2), (1, 1)]));
    n.producer();
    n.publish("a", 0);
    n.sync();
    n.outputs();
    // A message from origin 1 (a lower id) arrives and is not durable yet.
    n.engine.handle_store(
        &mut n.journal,
        BrokerId(1),
        crate::wire::MessageId {
            origin: BrokerId(1),
            n: 0,
        },
        vec![BrokerId(3)],
        attrs("a", 1),
        vec![],
    );
    n.engine.peer_up(&mut n.journal, BrokerId(2));
    let s = stores(&n.outputs());
    assert_eq!(
        s.len(),
        1,
        "the durable message of origin 5 goes out: {s:?}"
    );
    assert_eq!(s[0].1.origin, BrokerId(5));
}

#[test]
fn a_link_replaced_before_its_end_was_seen_sends_again() {
    let mut n = Node::new(1);
    n.engine.peer_up(&mut n.journal, BrokerId(2));
    n.engine
        .handle_decl(&mut n.journal, BrokerId(2), decl(3, "q3"));
    n.engine
        .set_next_hops(&mut n.journal, hops_of(&[(2, 2), (3, 2)]));
    n.producer();
    n.publish("a", 0);
    n.sync();
    assert_eq!(stores(&n.outputs()).len(), 1);
    // A new link to 2 comes up before the old one's end is reported.
    n.engine.peer_up(&mut n.journal, BrokerId(2));
    assert_eq!(stores(&n.outputs()).len(), 1, "sent again on the new link");
}

#[test]
fn a_recovered_engine_forwards_what_it_held_once_told_the_log_is_durable() {
    let mut n = Node::new(1);
    n.engine
        .handle_decl(&mut n.journal, BrokerId(2), decl(3, "q3"));
    n.engine
        .set_next_hops(&mut n.journal, hops_of(&[(2, 2), (3, 2)]));
    n.producer();
    n.publish("a", 0);
    n.sync();
    let mut r = n.recovered();
    r.engine
        .set_next_hops(&mut r.journal, hops_of(&[(2, 2), (3, 2)]));
    r.engine.peer_up(&mut r.journal, BrokerId(2));
    assert_eq!(stores(&r.outputs()).len(), 1);
    // A publisher retrying a stored seq is acked although nothing new is written.
    r.producer();
    r.publish("a", 0);
    assert!(
        r.frames()
            .contains(&ServerFrame::PublishAcked { through: 0 })
    );
}

#[test]
fn a_record_over_the_size_limit_is_refused_alone() {
    struct Small(VecJournal);
    impl Journal for Small {
        fn append(&mut self, record: &[u8]) -> Result<Position, StoreError> {
            if record.len() > 200 {
                return Err(StoreError::TooLarge {
                    len: record.len(),
                    max: 200,
                });
            }
            self.0.append(record)
        }
        fn read(&self, pos: Position) -> Result<Vec<u8>, StoreError> {
            self.0.read(pos)
        }
        fn end(&self) -> Position {
            self.0.end()
        }
    }
    let mut j = Small(VecJournal::default());
    let mut e = Engine::new(config(1));
    e.producer(&j, CLIENT, 1, "p".into());
    let a = attrs("a", 0);
    e.publish(&mut j, CLIENT, 0, a.clone(), vec![0; 500]);
    e.publish(&mut j, CLIENT, 1, a, vec![0; 10]);
    let end = j.end();
    e.handle_durable(&mut j, Instant::now(), end);
    let frames: Vec<ServerFrame> = std::iter::from_fn(|| e.poll_output())
        .flat_map(|o| match frame(o, palio_protocol::DEFAULT_MAX_FRAME) {
            Framed::Client { frames, .. } => frames.collect(),
            Framed::Peer { .. } => Vec::new(),
        })
        .collect();
    assert!(frames.iter().any(|f| matches!(
        f,
        ServerFrame::PublishFailed {
            seq: 0,
            code: ErrorCode::LimitExceeded,
            ..
        }
    )));
    assert!(frames.contains(&ServerFrame::PublishAcked { through: 1 }));
    assert!(e.failure().is_none());
}
