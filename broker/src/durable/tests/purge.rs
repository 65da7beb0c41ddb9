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
