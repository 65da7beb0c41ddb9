//! Limits: queues per broker, consumers per connection, fetch waits and left-over timers, the
//! producer table, and queue sizes with their discard policies and `max_age`.

use super::*;
use crate::durable::Limit;

fn hits(n: &Node, limit: Limit) -> u64 {
    n.engine.stats().limits[limit as usize]
}

/// The code and message of the one refusal in `frames`.
fn refused(frames: &[ServerFrame]) -> (ErrorCode, String) {
    match frames {
        [ServerFrame::Error { code, message, .. }]
        | [ServerFrame::PublishFailed { code, message, .. }] => (*code, message.clone()),
        other => panic!("expected one refusal: {other:?}"),
    }
}

fn add_with(n: &mut Node, name: &str, filter: &str, options: QueueOptions) -> Vec<ServerFrame> {
    n.engine
        .queue_add(&mut n.journal, CLIENT, 1, name, filter, options);
    n.sync();
    n.frames()
}

fn limited(max_messages: u64, max_bytes: u64, discard: palio_protocol::Discard) -> QueueOptions {
    QueueOptions {
        max_messages: (max_messages > 0).then_some(max_messages),
        max_bytes: (max_bytes > 0).then_some(max_bytes),
        discard: Some(discard),
        ..QueueOptions::default()
    }
}

use palio_protocol::Discard;

#[test]
fn queues_per_broker_are_limited() {
    let mut cfg = config(1);
    cfg.limits.max_queues = 2;
    let mut n = Node::with_config(cfg);
    n.add_queue("a", "TRUE");
    n.add_queue("b", "TRUE");
    let (code, message) = refused(&add_with(&mut n, "c", "TRUE", QueueOptions::default()));
    assert_eq!(code, ErrorCode::LimitExceeded);
    assert!(message.contains("limits.max_queues"), "{message}");
    assert_eq!(hits(&n, Limit::Queues), 1);
    // Adding one that exists is still fine, and removing one makes room.
    n.add_queue("a", "TRUE");
    n.engine.queue_remove(&mut n.journal, CLIENT, 2, "b");
    n.sync();
    n.frames();
    n.add_queue("c", "TRUE");
}

#[test]
fn consumers_per_connection_are_limited() {
    let mut cfg = config(1);
    cfg.limits.max_consumers_per_client = 2;
    let mut n = Node::with_config(cfg);
    n.add_queue("q", "TRUE");
    let first = n.consume("q", ConsumeMode::Pull);
    n.consume("q.dlq", ConsumeMode::Pull);
    n.engine
        .consume(&mut n.journal, n.now, CLIENT, 3, "q", ConsumeMode::Pull);
    let (code, message) = refused(&n.frames());
    assert_eq!(code, ErrorCode::LimitExceeded);
    assert!(message.contains("max_consumers_per_client"), "{message}");
    assert_eq!(hits(&n, Limit::ConsumersPerClient), 1);
    // Another connection has its own count; a stopped consumer frees its place.
    n.engine.client_up(8, principal(ALICE, false));
    n.engine
        .consume(&mut n.journal, n.now, 8, 4, "q", ConsumeMode::Pull);
    assert!(matches!(
        n.frames().as_slice(),
        [ServerFrame::Consuming { .. }]
    ));
    n.engine
        .stop_consume(&mut n.journal, n.now, CLIENT, 5, first);
    n.frames();
    n.consume("q", ConsumeMode::Pull);
}

#[test]
fn a_fetch_waits_at_most_max_fetch_wait() {
    let mut n = Node::new(1);
    n.add_queue("q", "TRUE");
    let c = n.consume("q", ConsumeMode::Pull);
    n.engine.fetch(
        &mut n.journal,
        n.now,
        CLIENT,
        6,
        c,
        1,
        Duration::from_secs(24 * 3600),
    );
    assert_eq!(hits(&n, Limit::FetchWait), 1);
    n.advance(Duration::from_secs(299));
    assert!(n.frames().is_empty());
    n.advance(Duration::from_secs(1));
    assert_eq!(
        n.frames(),
        vec![ServerFrame::Fetched {
            request: 6,
            count: 0
        }]
    );
}

#[test]
fn timers_left_by_replaced_fetches_do_not_pile_up() {
    let mut n = Node::new(1);
    n.add_queue("q", "TRUE");
    let c = n.consume("q", ConsumeMode::Pull);
    // Each fetch ends the one before and leaves its timer (5 minutes) behind.
    for request in 0..20_000 {
        n.engine.fetch(
            &mut n.journal,
            n.now,
            CLIENT,
            request,
            c,
            1,
            Duration::from_secs(300),
        );
    }
    let timers = n.engine.timers.len();
    assert!(timers <= 2 * 4096, "{timers} timers for one pending fetch");
    assert_eq!(
        n.frames().len(),
        19_999,
        "every replaced fetch was answered"
    );
    n.advance(Duration::from_secs(300));
    assert_eq!(
        n.frames(),
        vec![ServerFrame::Fetched {
            request: 19_999,
            count: 0
        }]
    );
}

#[test]
fn a_full_producer_table_forgets_the_longest_idle_producers_never_an_active_one() {
    let mut cfg = config(1);
    cfg.limits.max_producers = 2;
    let mut n = Node::with_config(cfg);
    n.add_queue("q", "TRUE");
    let name = |n: &mut Node, client, request, producer: &str| {
        n.engine
            .producer(&mut n.journal, n.now, client, request, producer.into());
        n.sync();
        n.frames()
    };
    // p1 stays named by CLIENT; p2 is named and published by client 8, which leaves.
    assert_eq!(n.producer(), 0);
    n.publish("a", 0);
    n.engine.client_up(8, principal(ALICE, false));
    name(&mut n, 8, 3, "p2");
    n.engine
        .publish(&mut n.journal, n.now, 8, 4, attrs("a", 1), vec![]);
    n.engine.client_gone(&mut n.journal, n.now, 8);
    n.sync();
    n.frames();
    // Full, and p2 has not been idle for producer_idle (an hour) yet.
    n.engine.client_up(9, principal(ALICE, false));
    let (code, message) = refused(&name(&mut n, 9, 5, "p3"));
    assert_eq!(code, ErrorCode::LimitExceeded);
    assert!(message.contains("limits.max_producers"), "{message}");
    assert_eq!(hits(&n, Limit::Producers), 1);
    n.advance(Duration::from_secs(3599));
    refused(&name(&mut n, 9, 6, "p3"));
    n.advance(Duration::from_secs(1));
    assert_eq!(
        name(&mut n, 9, 7, "p3"),
        vec![ServerFrame::ProducerReady {
            request: 7,
            next_seq: 0
        }],
        "p2 was forgotten for it"
    );
    // p1, named all along (idle for an hour too), kept its sequence number.
    n.engine.client_gone(&mut n.journal, n.now, 9);
    assert_eq!(n.producer(), 1);
    // p2 starts over, in the log as well.
    let mut r = n.recovered();
    r.engine.client_up(8, principal("bob", false));
    assert_eq!(
        name(&mut r, 8, 8, "p2"),
        vec![ServerFrame::ProducerReady {
            request: 8,
            next_seq: 0
        }]
    );
}

#[test]
fn discard_old_drops_the_oldest_messages_in_flight_or_not() {
    let mut n = Node::new(1);
    add_with(&mut n, "q", "TRUE", limited(3, 0, Discard::Old));
    add_with(&mut n, "all", "TRUE", QueueOptions::default());
    n.producer();
    n.publish("a", 0);
    n.sync();
    n.frames();
    let c = n.consume("q", ConsumeMode::Push { window: 1 });
    let first = n.messages();
    assert_eq!(seqs(&first), vec![0]);
    for s in 1..6 {
        n.publish("a", s);
    }
    n.sync();
    let frames = n.frames();
    assert!(frames.contains(&acked(1, 5, 2)), "{frames:?}");
    assert_eq!(hits(&n, Limit::Messages), 3);
    let info = n.info("q");
    assert_eq!(info.pending + info.unacked, 3);
    assert_eq!(n.info("all").pending, 6, "other queues keep everything");
    // The dropped message that was in flight can no longer be acked.
    n.engine
        .ack(&mut n.journal, n.now, CLIENT, 9, c, &[first[0].tag]);
    let later = n.frames();
    assert!(later.iter().any(|f| matches!(
        f,
        ServerFrame::Error {
            code: ErrorCode::UnknownId,
            ..
        }
    )));
    let mut rest = seqs(&frames_messages(frames));
    rest.extend(seqs(&frames_messages(later)));
    n.engine.stop_consume(&mut n.journal, n.now, CLIENT, 10, c);
    n.frames();
    n.consume("q", ConsumeMode::Push { window: 10 });
    rest.extend(seqs(&n.messages()));
    rest.sort_unstable();
    rest.dedup();
    assert_eq!(rest, vec![3, 4, 5], "the three newest are left");
    // Recovery repeats the drops.
    assert_eq!(n.recovered().info("q").pending, 3);
}

#[test]
fn discard_old_by_bytes_keeps_the_queue_within_max_bytes() {
    let mut n = Node::new(1);
    n.add_queue("probe", "TRUE");
    n.producer();
    n.publish("a", 0);
    n.sync();
    n.frames();
    let one = n.info("probe").bytes;
    assert!(one > 0);
    add_with(
        &mut n,
        "q",
        "TRUE",
        limited(0, 2 * one + one / 2, Discard::Old),
    );
    for s in 1..=4 {
        n.publish("a", s);
    }
    n.sync();
    let info = n.info("q");
    assert_eq!(info.pending, 2);
    assert!(info.bytes <= 2 * one + one / 2, "{} bytes", info.bytes);
    assert_eq!(hits(&n, Limit::Bytes), 2);
}

#[test]
fn discard_new_refuses_a_publication_before_anything_is_stored() {
    let mut n = Node::new(1);
    let frames = add_with(&mut n, "q", "type = 'a'", limited(2, 0, Discard::New));
    assert_eq!(frames, vec![ServerFrame::Done { request: 1 }]);
    n.add_queue("all", "TRUE");
    n.producer();
    n.publish("a", 0);
    n.publish("a", 1);
    n.sync();
    n.frames();
    let records = n.journal.records.len();
    n.publish("a", 2);
    let (code, message) = refused(&n.frames());
    assert_eq!(code, ErrorCode::LimitExceeded);
    assert!(message.contains("\"q\" is full"), "{message}");
    assert_eq!(n.journal.records.len(), records, "nothing stored");
    assert_eq!(n.info("all").pending, 2, "not in any queue");
    assert_eq!(hits(&n, Limit::Messages), 1);
    // Another principal learns that a queue is full, not which.
    n.engine.client_up(8, principal("bob", false));
    n.engine
        .producer(&mut n.journal, n.now, 8, 2, "bobs".into());
    n.sync();
    n.frames();
    n.engine
        .publish(&mut n.journal, n.now, 8, 0, attrs("a", 0), vec![]);
    let (code, message) = refused(&n.frames());
    assert_eq!(code, ErrorCode::LimitExceeded);
    assert!(
        message.contains("a durable queue it matches is full") && !message.contains("\"q\""),
        "{message}"
    );
    // Publications it does not match go on; once a message is acked there is room.
    n.publish("b", 3);
    n.sync();
    assert_eq!(n.frames(), vec![acked(3, 3, 1)]);
    let c = n.consume("q", ConsumeMode::Push { window: 1 });
    let m = n.messages();
    n.engine
        .ack(&mut n.journal, n.now, CLIENT, 9, c, &[m[0].tag]);
    n.sync();
    n.frames();
    n.publish("a", 4);
    n.sync();
    assert!(n.frames().contains(&acked(4, 4, 2)));
    assert_eq!(n.info("q").pending + n.info("q").unacked, 2);
}

#[test]
fn a_message_larger_than_a_queues_max_bytes_is_refused() {
    let mut n = Node::new(1);
    add_with(&mut n, "q", "TRUE", limited(0, 100, Discard::Old));
    n.producer();
    n.engine.publish(
        &mut n.journal,
        n.now,
        CLIENT,
        0,
        attrs("a", 0),
        vec![0; 200],
    );
    let (code, message) = refused(&n.frames());
    assert_eq!(code, ErrorCode::LimitExceeded);
    assert!(message.contains("max_bytes 100"), "{message}");
    assert_eq!(hits(&n, Limit::Bytes), 1);
    n.publish("a", 1);
    n.sync();
    assert_eq!(n.frames(), vec![acked(1, 1, 1)]);
}

#[test]
fn a_full_discard_new_queue_skips_messages_from_peers_and_counts_them() {
    let mut n = Node::new(2);
    add_with(&mut n, "q", "TRUE", limited(1, 0, Discard::New));
    n.add_queue("all", "TRUE");
    for i in 0..3u64 {
        n.engine.handle_store(
            &mut n.journal,
            n.now,
            BrokerId(1),
            crate::wire::MessageId {
                origin: BrokerId(1),
                n: i,
            },
            vec![BrokerId(2)],
            attrs("a", i as i32),
            vec![],
        );
    }
    n.sync();
    let acked: usize = n
        .outputs()
        .iter()
        .map(|o| match o {
            Output::StoreAck { ids, .. } => ids.len(),
            _ => 0,
        })
        .sum();
    assert_eq!(acked, 3, "every message is stored, and acked to the peer");
    assert_eq!(n.info("q").pending, 1);
    assert_eq!(n.info("all").pending, 3);
    assert_eq!(hits(&n, Limit::Messages), 2);
}

#[test]
fn max_age_drops_old_messages_in_flight_or_not_and_recovery_agrees() {
    let mut n = Node::new(1);
    let options = QueueOptions {
        max_age_ms: Some(60_000),
        // No redelivery in this test.
        ack_wait_ms: Some(600_000),
        ..QueueOptions::default()
    };
    add_with(&mut n, "q", "TRUE", options);
    n.producer();
    n.publish("a", 0);
    n.publish("a", 1);
    n.sync();
    n.advance(Duration::from_secs(30));
    n.publish("a", 2);
    n.sync();
    n.frames();
    let c = n.consume("q", ConsumeMode::Push { window: 1 });
    let m = n.messages();
    assert_eq!(seqs(&m), vec![0]);
    n.advance(Duration::from_secs(29));
    assert_eq!(n.info("q").pending + n.info("q").unacked, 3);
    n.advance(Duration::from_secs(1));
    assert_eq!(hits(&n, Limit::Age), 2);
    // The window freed by the dropped message in flight takes the one left.
    assert_eq!(seqs(&n.messages()), vec![2]);
    n.engine
        .ack(&mut n.journal, n.now, CLIENT, 9, c, &[m[0].tag]);
    assert_eq!(refused(&n.frames()).0, ErrorCode::UnknownId);
    let r = n.recovered();
    assert_eq!(
        r.engine.snapshot(),
        n.engine.snapshot(),
        "the drops are in the log"
    );
    n.advance(Duration::from_secs(30));
    let info = n.info("q");
    assert_eq!((info.pending, info.unacked), (0, 0));
    assert_eq!(hits(&n, Limit::Age), 3);
}

#[test]
fn limits_and_owners_survive_recovery_from_the_journal_and_from_a_snapshot() {
    let mut n = Node::new(1);
    let options = QueueOptions {
        max_messages: Some(2),
        max_bytes: Some(1 << 20),
        max_age_ms: Some(3_600_000),
        discard: Some(Discard::New),
        ..QueueOptions::default()
    };
    add_with(&mut n, "q", "TRUE", options);
    n.producer();
    n.publish("a", 0);
    n.publish("a", 1);
    n.sync();
    n.frames();
    let want = n.info("q");
    assert_eq!(
        (
            want.max_messages,
            want.max_bytes,
            want.max_age_ms,
            want.discard
        ),
        (2, 1 << 20, 3_600_000, Discard::New)
    );
    let mut from_journal = n.recovered();
    let mut from_snapshot = Node::new(1);
    from_snapshot.engine = Engine::from_snapshot(n.engine.cfg.clone(), n.engine.snapshot());
    from_snapshot.journal.records = n.journal.records.clone();
    from_snapshot
        .engine
        .client_up(CLIENT, principal(ALICE, false));
    from_snapshot.sync();
    for (what, r) in [
        ("journal", &mut from_journal),
        ("snapshot", &mut from_snapshot),
    ] {
        assert_eq!(r.info("q"), want, "{what}");
        r.producer();
        r.publish("a", 2);
        assert_eq!(refused(&r.frames()).0, ErrorCode::LimitExceeded, "{what}");
    }
    assert_eq!(
        from_snapshot.engine.snapshot(),
        from_journal.engine.snapshot()
    );
}

#[test]
fn queue_limits_default_to_the_brokers_and_may_not_exceed_them() {
    let mut cfg = config(1);
    cfg.limits.queue = QueueLimits {
        max_messages: 100,
        max_bytes: 0,
        max_age_ms: 0,
        discard: Discard::New,
    };
    let mut n = Node::with_config(cfg);
    n.add_queue("dflt", "TRUE");
    let info = n.info("dflt");
    assert_eq!(
        (info.max_messages, info.max_bytes, info.discard),
        (100, 0, Discard::New)
    );
    let (code, message) = refused(&add_with(
        &mut n,
        "big",
        "TRUE",
        limited(101, 0, Discard::Old),
    ));
    assert_eq!(code, ErrorCode::LimitExceeded);
    assert!(message.contains("limits.queue_max_messages"), "{message}");
    assert_eq!(hits(&n, Limit::Messages), 1);
    let zero = QueueOptions {
        max_bytes: Some(0),
        ..QueueOptions::default()
    };
    assert_eq!(
        refused(&add_with(&mut n, "z", "TRUE", zero)).0,
        ErrorCode::ProtocolViolation
    );
    // Where the broker has no limit, a queue may choose any.
    add_with(&mut n, "small", "TRUE", limited(100, 1 << 40, Discard::Old));
    assert_eq!(n.info("small").max_bytes, 1 << 40);
}

#[test]
fn the_dead_letter_queue_has_the_queues_limits() {
    let mut n = Node::new(1);
    let options = QueueOptions {
        max_deliveries: Some(1),
        ..limited(1, 0, Discard::Old)
    };
    add_with(&mut n, "q", "TRUE", options);
    n.producer();
    let c = n.consume("q", ConsumeMode::Pull);
    for s in 0..2 {
        n.publish("a", s);
        n.sync();
        n.engine
            .fetch(&mut n.journal, n.now, CLIENT, 20 + s, c, 1, Duration::ZERO);
        let m = n.messages();
        assert_eq!(seqs(&m), vec![s as i32]);
        n.engine.nak(
            &mut n.journal,
            n.now,
            CLIENT,
            30 + s,
            c,
            &[m[0].tag],
            Duration::ZERO,
        );
        n.frames();
    }
    let dlq = n.info("q.dlq");
    assert_eq!(dlq.pending, 1, "the newer dead letter pushed the older out");
    assert_eq!(hits(&n, Limit::Messages), 1);
    let d = n.consume("q.dlq", ConsumeMode::Push { window: 5 });
    let _ = d;
    assert_eq!(seqs(&n.messages()), vec![1]);
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
