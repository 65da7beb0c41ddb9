//! One broker's durable queues: publishing, consumers, listings, recovery and failures.

use super::*;

#[test]
fn publish_is_acked_only_once_durable_and_retries_are_not_stored_twice() {
    let mut n = Node::new(1);
    n.add_queue("q", "type = 'a'");
    assert_eq!(n.producer(), 0);
    n.publish("a", 0);
    n.publish("a", 1);
    assert!(n.frames().is_empty(), "nothing acked before the sync");
    n.sync();
    assert_eq!(n.frames(), vec![acked(0, 1, 1)]);
    let records = n.journal.records.len();
    n.publish("a", 1);
    n.sync();
    assert_eq!(n.journal.records.len(), records, "a retry is not stored");
    n.sync();
    n.publish("a", 2);
    n.sync();
    assert_eq!(n.frames(), vec![acked(1, 1, 1), acked(2, 2, 1)]);
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
    // The client connects again.
    n.engine.client_up(CLIENT, principal(ALICE, false));
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
            ..QueueOptions::default()
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
    let cfg = config(1);
    let now = cfg.clock.at;
    let mut e = Engine::new(cfg);
    e.client_up(CLIENT, principal(ALICE, false));
    e.producer(&mut j, now, CLIENT, 1, "p".into());
    let a = attrs("a", 0);
    e.publish(&mut j, now, CLIENT, 0, a.clone(), vec![0; 500]);
    e.publish(&mut j, now, CLIENT, 1, a, vec![0; 10]);
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
    assert!(frames.contains(&acked(1, 1, 0)));
    assert!(e.failure().is_none());
}

#[test]
fn the_filter_indexes_follow_queues_and_the_directory_through_removal_and_recovery() {
    let mut n = Node::new(1);
    n.add_queue("a", "type = 'a'");
    n.add_queue("b", "TRUE");
    n.engine.queue_remove(&mut n.journal, CLIENT, 5, "b");
    n.sync();
    assert_eq!(n.frames(), vec![ServerFrame::Done { request: 5 }]);
    n.add_queue("c", "type = 'b' OR seq > 100");
    let decl = |home, name: &str, filter: &str, generation, removed| crate::wire::QueueDecl {
        home: BrokerId(home),
        name: name.into(),
        filter: filter.into(),
        generation,
        removed,
    };
    for d in [
        decl(2, "x", "type = 'a'", 1, false),
        decl(3, "y", "TRUE", 1, false),
        decl(3, "y", "TRUE", 2, true),
        decl(4, "z", "seq >= 0", 1, false),
        decl(4, "z", "type = 'b'", 2, false),
        // This broker's own queues are not remote destinations.
        decl(1, "own", "TRUE", 9, false),
    ] {
        n.engine.handle_decl(&mut n.journal, BrokerId(2), d);
    }
    n.sync();
    let mut snap = Engine::from_snapshot(n.engine.cfg.clone(), n.engine.snapshot());
    let mut recovered = n.recovered().engine;
    for (what, e) in [
        ("live", &mut n.engine),
        ("journal", &mut recovered),
        ("snapshot", &mut snap),
    ] {
        let keys = |m: Vec<(u64, u64)>| m.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
        assert_eq!(keys(e.local_matches(&attrs("a", 1))), vec![1], "{what}");
        assert_eq!(keys(e.local_matches(&attrs("b", 1))), vec![3], "{what}");
        assert_eq!(keys(e.local_matches(&attrs("c", 101))), vec![3], "{what}");
        assert_eq!(
            e.remote_matches(&attrs("a", 1)),
            vec![BrokerId(2)],
            "{what}"
        );
        assert_eq!(
            e.remote_matches(&attrs("b", 1)),
            vec![BrokerId(4)],
            "{what}"
        );
        assert_eq!(e.remote_matches(&attrs("c", 1)), vec![], "{what}");
    }
}

#[test]
fn first_deliveries_ask_for_no_sync_and_redeliveries_do() {
    let mut n = Node::new(1);
    n.add_queue("q", "TRUE");
    n.producer();
    for s in 0..3 {
        n.publish("a", s);
    }
    n.sync();
    n.frames();
    let wanted = n.engine.sync_wanted();
    assert_eq!(wanted, n.journal.end());
    let c = n.consume("q", ConsumeMode::Pull);
    let wait = Duration::from_secs(1);
    n.engine
        .fetch(&mut n.journal, n.now, CLIENT, 5, c, 10, wait);
    assert_eq!(n.messages().len(), 3);
    // One record holds the three counts; written, and nothing asked of the disk for it.
    assert_eq!(n.journal.end().offset, wanted.offset + 1);
    assert_eq!(n.engine.sync_wanted(), wanted);
    // Redelivered after the ack wait: those counts ask for a sync (covering the first ones).
    n.advance(Duration::from_secs(31));
    n.engine
        .fetch(&mut n.journal, n.now, CLIENT, 6, c, 10, wait);
    let again = n.messages();
    assert!(again.len() == 3 && again.iter().all(|m| m.delivery_count == 2));
    assert_eq!(n.engine.sync_wanted(), n.journal.end());
    // So do acks, which wait for the disk.
    let tags: Vec<u64> = again.iter().map(|m| m.tag).collect();
    n.engine.ack(&mut n.journal, n.now, CLIENT, 7, c, &tags);
    assert_eq!(n.engine.sync_wanted(), n.journal.end());
}
