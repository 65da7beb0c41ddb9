//! Emptying lanes: removing a dead-letter queue, purging a queue.

use super::*;

/// Publishes `n` messages to queue `q` (added with the defaults: 3 deliveries) and lets each
/// be delivered 3 times without an ack, so that all of them are dead-lettered.
fn dead_letters(n: &mut Node, count: u64, first_seq: u64) {
    for seq in first_seq..first_seq + count {
        n.publish("a", seq);
    }
    n.sync();
    n.frames();
    let consumer = n.consume("q", ConsumeMode::Push { window: 100 });
    for _ in 0..3 {
        n.advance(Duration::from_secs(31));
    }
    n.engine
        .stop_consume(&mut n.journal, n.now, CLIENT, 9, consumer);
    n.sync();
    n.frames();
}

fn answer(n: &mut Node) -> ServerFrame {
    n.sync();
    let mut frames = n.frames();
    assert_eq!(frames.len(), 1, "{frames:?}");
    frames.remove(0)
}

#[test]
fn removing_a_dead_letter_queue_empties_it_for_good_and_later_dead_letters_come_back_to_it() {
    let mut n = Node::new(1);
    n.add_queue("q", "TRUE");
    n.producer();
    dead_letters(&mut n, 2, 0);
    assert_eq!(n.info("q").dead_lettered, 2);
    assert_eq!(n.info("q.dlq").pending, 2);

    n.engine.queue_remove(&mut n.journal, CLIENT, 20, "q.dlq");
    assert_eq!(answer(&mut n), ServerFrame::Done { request: 20 });
    let (q, dlq) = (n.info("q"), n.info("q.dlq"));
    assert_eq!((q.pending, q.dead_lettered), (0, 0));
    assert_eq!((dlq.pending, dlq.unacked, dlq.bytes), (0, 0, 0));
    // The removal is in the log: a restart does not bring the dead letters back.
    let mut r = n.recovered();
    assert_eq!(r.info("q.dlq").pending, 0);
    assert_eq!(r.info("q").dead_lettered, 0);
    // The queue and its dead-letter queue are still there: the next dead letter goes to it.
    dead_letters(&mut n, 1, 2);
    assert_eq!(n.info("q.dlq").pending, 1);
}

#[test]
fn removing_a_dead_letter_queue_needs_its_queue_and_its_owner() {
    let mut n = Node::new(1);
    n.engine
        .queue_remove(&mut n.journal, CLIENT, 21, "nope.dlq");
    match answer(&mut n) {
        ServerFrame::Error { code, message, .. } => {
            assert_eq!(code, ErrorCode::QueueNotFound);
            assert!(message.contains("nope.dlq"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    n.add_queue("q", "TRUE");
    n.producer();
    dead_letters(&mut n, 1, 0);
    n.engine.client_up(8, principal("bob", false));
    n.engine.queue_remove(&mut n.journal, 8, 22, "q.dlq");
    match answer(&mut n) {
        ServerFrame::Error { code, .. } => assert_eq!(code, ErrorCode::PermissionDenied),
        other => panic!("{other:?}"),
    }
    assert_eq!(n.info("q.dlq").pending, 1);
}

#[test]
fn a_purge_removes_pending_and_unacked_messages_for_good_and_keeps_the_consumers() {
    let mut n = Node::new(1);
    n.add_queue("q", "TRUE");
    n.producer();
    for seq in 0..3 {
        n.publish("a", seq);
    }
    n.sync();
    n.frames();
    let c = n.consume("q", ConsumeMode::Push { window: 1 });
    let first = n.messages();
    assert_eq!(seqs(&first), vec![0]);
    n.engine.queue_purge(&mut n.journal, CLIENT, 30, "q");
    assert_eq!(
        answer(&mut n),
        ServerFrame::Purged {
            request: 30,
            messages: 3
        }
    );
    let info = n.info("q");
    assert_eq!(
        (info.pending, info.unacked, info.bytes, info.consumers),
        (0, 0, 0, 1)
    );
    // The purged message in flight can no longer be acked.
    n.engine
        .ack(&mut n.journal, n.now, CLIENT, 31, c, &[first[0].tag]);
    match answer(&mut n) {
        ServerFrame::Error { code, .. } => assert_eq!(code, ErrorCode::UnknownId),
        other => panic!("{other:?}"),
    }
    // For good: recovery agrees, and no ack wait brings anything back.
    let mut r = n.recovered();
    assert_eq!(r.info("q").pending, 0);
    n.advance(Duration::from_secs(60));
    assert!(n.messages().is_empty());
    // The consumer is still there for what comes next.
    n.publish("a", 3);
    n.sync();
    assert_eq!(seqs(&n.messages()), vec![3]);
    // Purging an empty queue is no error.
    n.engine.queue_purge(&mut n.journal, CLIENT, 32, "q.dlq");
    assert_eq!(
        answer(&mut n),
        ServerFrame::Purged {
            request: 32,
            messages: 0
        }
    );
}

#[test]
fn a_purge_needs_the_queue_and_its_owner() {
    let mut n = Node::new(1);
    n.engine.queue_purge(&mut n.journal, CLIENT, 33, "nope");
    match answer(&mut n) {
        ServerFrame::Error { code, .. } => assert_eq!(code, ErrorCode::QueueNotFound),
        other => panic!("{other:?}"),
    }
    n.add_queue("q", "TRUE");
    n.producer();
    n.publish("a", 0);
    n.sync();
    n.frames();
    n.engine.client_up(8, principal("bob", false));
    n.engine.queue_purge(&mut n.journal, 8, 34, "q");
    match answer(&mut n) {
        ServerFrame::Error { code, .. } => assert_eq!(code, ErrorCode::PermissionDenied),
        other => panic!("{other:?}"),
    }
    assert_eq!(n.info("q").pending, 1);
    n.engine.client_up(9, principal("root", true));
    n.engine.queue_purge(&mut n.journal, 9, 35, "q");
    assert_eq!(
        answer(&mut n),
        ServerFrame::Purged {
            request: 35,
            messages: 1
        }
    );
}
