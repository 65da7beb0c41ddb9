//! Owners: of queues (who may consume, ack, inspect, remove) and of producer names; acks of
//! tags delivered to the acking consumer only; recovery of owners.

use super::*;
use crate::durable::record::{Record, encode};

/// Another principal's connection.
const BOB: u64 = 8;
/// An admin's connection.
const ROOT: u64 = 9;

fn with_bob_and_root(n: &mut Node) {
    n.engine.client_up(BOB, principal("bob", false));
    n.engine.client_up(ROOT, principal("root", true));
}

/// Refused requests' codes, in order.
fn refusals(frames: &[ServerFrame]) -> Vec<ErrorCode> {
    frames
        .iter()
        .filter_map(|f| match f {
            ServerFrame::Error { code, .. } => Some(*code),
            ServerFrame::PublishFailed { code, .. } => Some(*code),
            _ => None,
        })
        .collect()
}

/// The names a listing for `client` shows.
fn listed(n: &mut Node, client: ClientId) -> Vec<String> {
    n.engine.queue_info(client, 50, None);
    n.frames()
        .into_iter()
        .flat_map(|f| match f {
            ServerFrame::Queues { queues, .. } => queues.into_iter().map(|q| q.name).collect(),
            _ => Vec::new(),
        })
        .collect()
}

use crate::durable::ClientId;

#[test]
fn a_queue_is_for_its_owner_and_admins_only() {
    let mut n = Node::new(1);
    with_bob_and_root(&mut n);
    n.add_queue("q", "TRUE");
    assert_eq!(n.info("q").owner, ALICE);
    n.producer();
    n.publish("a", 0);
    n.sync();
    n.frames();

    // Bob may not consume, inspect, see, remove, or re-add it.
    n.engine
        .consume(&mut n.journal, n.now, BOB, 3, "q", ConsumeMode::Pull);
    n.engine
        .consume(&mut n.journal, n.now, BOB, 4, "q.dlq", ConsumeMode::Pull);
    n.engine.queue_info(BOB, 5, Some("q"));
    n.engine.queue_remove(&mut n.journal, BOB, 6, "q");
    n.engine
        .queue_add(&mut n.journal, BOB, 7, "q", "TRUE", QueueOptions::default());
    n.sync();
    assert_eq!(
        refusals(&n.frames()),
        vec![ErrorCode::PermissionDenied; 5],
        "consume, consume the dlq, info, remove, add over it"
    );
    assert_eq!(n.engine.stats().denied_queue, 5);
    assert!(listed(&mut n, BOB).is_empty(), "bob's listing hides it");
    assert_eq!(n.info("q").pending, 1, "nothing was removed");

    // An admin may do all of it.
    assert_eq!(listed(&mut n, ROOT), vec!["q", "q.dlq"]);
    n.engine.consume(
        &mut n.journal,
        n.now,
        ROOT,
        8,
        "q",
        ConsumeMode::Push { window: 1 },
    );
    let frames = n.frames();
    assert!(refusals(&frames).is_empty(), "{frames:?}");
    assert_eq!(seqs(&frames_messages(frames)), vec![0]);
    n.engine.queue_remove(&mut n.journal, ROOT, 9, "q");
    n.sync();
    assert_eq!(n.frames(), vec![ServerFrame::Done { request: 9 }]);
    assert_eq!(n.engine.stats().denied_queue, 5);
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
fn a_queue_from_before_owners_stays_everyones() {
    let mut n = Node::new(1);
    with_bob_and_root(&mut n);
    // The record an earlier version wrote (no owner, no limits).
    let legacy = Record::QueueAdded {
        key: 1,
        name: "old".into(),
        filter: "TRUE".into(),
        ack_wait_ms: 30_000,
        max_deliveries: 3,
        owner: String::new(),
        limits: QueueLimits::default(),
    };
    n.journal.records.push(encode(&legacy));
    let mut n = n.recovered();
    n.engine.client_up(BOB, principal("bob", false));
    assert_eq!(listed(&mut n, BOB), vec!["old", "old.dlq"]);
    n.engine
        .consume(&mut n.journal, n.now, BOB, 3, "old", ConsumeMode::Pull);
    assert!(matches!(
        n.frames().as_slice(),
        [ServerFrame::Consuming { request: 3, .. }]
    ));
    assert_eq!(n.info("old").owner, "");
}

#[test]
fn acks_and_naks_name_only_tags_in_flight_to_that_consumer() {
    let mut n = Node::new(1);
    n.add_queue("q", "TRUE");
    n.producer();
    for s in 0..3 {
        n.publish("a", s);
    }
    n.sync();
    n.frames();
    let c1 = n.consume("q", ConsumeMode::Push { window: 1 });
    let mut got = n.messages();
    let c2 = n.consume("q", ConsumeMode::Push { window: 1 });
    got.extend(n.messages());
    let tag_of = |c: u64| got.iter().find(|m| m.consumer == c).map(|m| m.tag).unwrap();
    let (t1, t2) = (tag_of(c1), tag_of(c2));
    // The third message is ready, delivered to nobody.
    let ready = t1.max(t2) + 1;
    let before = n.journal.records.len();
    for (request, tags) in [(20, vec![t2]), (21, vec![t1, t2]), (22, vec![ready])] {
        n.engine
            .ack(&mut n.journal, n.now, CLIENT, request, c1, &tags);
    }
    n.engine
        .nak(&mut n.journal, n.now, CLIENT, 23, c1, &[t2], Duration::ZERO);
    n.sync();
    assert_eq!(refusals(&n.frames()), vec![ErrorCode::UnknownId; 4]);
    assert_eq!(n.journal.records.len(), before, "nothing acked");
    let info = n.info("q");
    assert_eq!((info.unacked, info.pending), (2, 1));
    // Its own tag, even named twice, is fine.
    n.engine
        .ack(&mut n.journal, n.now, CLIENT, 24, c1, &[t1, t1]);
    n.sync();
    let frames = n.frames();
    assert!(
        frames.contains(&ServerFrame::Done { request: 24 }),
        "{frames:?}"
    );
    // Acked already: unknown now.
    n.engine.ack(&mut n.journal, n.now, CLIENT, 25, c1, &[t1]);
    assert_eq!(refusals(&n.frames()), vec![ErrorCode::UnknownId]);
}

#[test]
fn owners_survive_recovery_from_the_journal_and_from_a_snapshot() {
    let mut n = Node::new(1);
    n.add_queue("q", "TRUE");
    n.producer();
    n.sync();
    let recovered = n.recovered();
    let mut snap = Node::new(1);
    snap.engine = Engine::from_snapshot(n.engine.cfg.clone(), n.engine.snapshot());
    snap.journal.records = n.journal.records.clone();
    snap.engine.client_up(CLIENT, principal(ALICE, false));
    for (what, mut m) in [("journal", recovered), ("snapshot", snap)] {
        with_bob_and_root(&mut m);
        assert_eq!(m.info("q").owner, ALICE, "{what}");
        m.engine
            .consume(&mut m.journal, m.now, BOB, 3, "q", ConsumeMode::Pull);
        m.engine
            .producer(&mut m.journal, m.now, BOB, 4, "p1".into());
        assert_eq!(
            refusals(&m.frames()),
            vec![ErrorCode::PermissionDenied; 2],
            "{what}"
        );
    }
}

#[test]
fn a_reload_that_takes_a_queue_away_detaches_its_consumers() {
    let mut n = Node::new(1);
    n.engine.client_up(BOB, principal("bob", true));
    n.add_queue("q", "TRUE");
    n.producer();
    n.publish("a", 0);
    n.sync();
    n.frames();
    n.engine.consume(
        &mut n.journal,
        n.now,
        BOB,
        3,
        "q",
        ConsumeMode::Push { window: 5 },
    );
    let m = n.messages();
    assert_eq!(m.len(), 1, "bob, an admin, gets it");
    n.engine
        .set_principal(&mut n.journal, n.now, BOB, principal("bob", false));
    assert_eq!(n.info("q").consumers, 0, "detached");
    n.engine
        .ack(&mut n.journal, n.now, BOB, 4, m[0].consumer, &[m[0].tag]);
    assert_eq!(refusals(&n.frames()), vec![ErrorCode::QueueNotFound]);
    // Its message went back to the queue, for alice.
    n.consume("q", ConsumeMode::Push { window: 5 });
    let again = n.messages();
    assert_eq!((seqs(&again), again[0].delivery_count), (vec![0], 2));
}

#[test]
fn a_producer_name_belongs_to_the_principal_that_first_named_it() {
    let mut n = Node::new(1);
    with_bob_and_root(&mut n);
    n.add_queue("q", "TRUE");
    assert_eq!(n.producer(), 0);
    n.publish("a", 0);
    n.sync();
    n.frames();
    // Bob cannot take it over (the issue: then publish seq u64::MAX to wedge it).
    n.engine
        .producer(&mut n.journal, n.now, BOB, 5, "p1".into());
    n.sync();
    assert_eq!(refusals(&n.frames()), vec![ErrorCode::PermissionDenied]);
    assert_eq!(n.engine.stats().denied_producer, 1);
    n.engine
        .publish(&mut n.journal, n.now, BOB, 9, attrs("a", 9), vec![]);
    assert_eq!(refusals(&n.frames()), vec![ErrorCode::ProtocolViolation]);
    // An admin may name it, and resumes where it is.
    n.engine
        .producer(&mut n.journal, n.now, ROOT, 6, "p1".into());
    n.sync();
    assert_eq!(
        n.frames(),
        vec![ServerFrame::ProducerReady {
            request: 6,
            next_seq: 1
        }]
    );
    // Owned across restarts; alice resumes.
    let mut r = n.recovered();
    r.engine.client_up(BOB, principal("bob", false));
    r.engine
        .producer(&mut r.journal, r.now, BOB, 7, "p1".into());
    assert_eq!(refusals(&r.frames()), vec![ErrorCode::PermissionDenied]);
    assert_eq!(r.producer(), 1);
}

#[test]
fn a_sequence_number_of_u64_max_is_refused_and_wedges_nothing() {
    let mut n = Node::new(1);
    n.add_queue("q", "TRUE");
    n.producer();
    n.publish("a", u64::MAX);
    n.sync();
    let frames = n.frames();
    assert_eq!(
        refusals(&frames),
        vec![ErrorCode::ProtocolViolation],
        "{frames:?}"
    );
    n.publish("a", 0);
    n.sync();
    assert_eq!(n.frames(), vec![acked(0, 0, 1)]);
    assert_eq!(n.info("q").pending, 1);
    // One stored by an earlier version (its record replayed) is not counted.
    let wedge = Record::Message {
        id: crate::wire::MessageId {
            origin: BrokerId(1),
            n: 99,
        },
        producer: Some(("p1".into(), u64::MAX)),
        attributes: attrs("a", 1),
        payload: vec![],
        local: true,
        queues: vec![],
        dests: vec![],
        at_ms: 0,
        matched: None,
    };
    n.journal.records.push(encode(&wedge));
    let mut r = n.recovered();
    assert_eq!(
        r.producer(),
        1,
        "resumes after 0, neither wedged nor overflowed"
    );
    r.publish("a", 1);
    r.sync();
    assert_eq!(r.frames(), vec![acked(1, 1, 1)]);
    assert_eq!(r.info("q").pending, 2, "stored, not taken for a duplicate");
}

#[test]
fn a_producer_from_before_owners_is_claimed_by_the_first_to_name_it() {
    let mut n = Node::new(1);
    let old = Record::Message {
        id: crate::wire::MessageId {
            origin: BrokerId(1),
            n: 0,
        },
        producer: Some(("old".into(), 5)),
        attributes: attrs("a", 1),
        payload: vec![],
        local: true,
        queues: vec![],
        dests: vec![],
        at_ms: 0,
        matched: None,
    };
    n.journal.records.push(encode(&old));
    let mut n = n.recovered();
    with_bob_and_root(&mut n);
    n.engine
        .producer(&mut n.journal, n.now, BOB, 3, "old".into());
    n.sync();
    assert_eq!(
        n.frames(),
        vec![ServerFrame::ProducerReady {
            request: 3,
            next_seq: 6
        }],
        "claimed with its sequence number"
    );
    n.engine
        .producer(&mut n.journal, n.now, CLIENT, 4, "old".into());
    assert_eq!(refusals(&n.frames()), vec![ErrorCode::PermissionDenied]);
    let mut r = n.recovered();
    r.engine
        .producer(&mut r.journal, r.now, CLIENT, 5, "old".into());
    assert_eq!(
        refusals(&r.frames()),
        vec![ErrorCode::PermissionDenied],
        "the claim is durable"
    );
}
