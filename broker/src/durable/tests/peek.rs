//! Peeking at a queue: the next pending messages, shown without delivery.

use super::*;

fn peeked(n: &mut Node, client: u64, name: &str, max: u32) -> ServerFrame {
    n.engine.queue_peek(&n.journal, client, 40, name, max);
    let mut frames = n.frames();
    assert_eq!(frames.len(), 1, "{frames:?}");
    frames.remove(0)
}

fn peeked_seqs(frame: &ServerFrame) -> Vec<(i32, u32)> {
    let ServerFrame::Peeked { messages, .. } = frame else {
        panic!("{frame:?}");
    };
    messages
        .iter()
        .map(|m| match m.attributes.get("seq") {
            Some(Value::Int(i)) => (*i, m.delivery_count),
            other => panic!("{other:?}"),
        })
        .collect()
}

#[test]
fn a_peek_shows_the_next_pending_messages_and_changes_nothing() {
    let mut n = Node::new(1);
    n.add_queue("q", "TRUE");
    n.producer();
    for seq in 0..3 {
        n.publish("a", seq);
    }
    n.sync();
    n.frames();
    let records = n.journal.records.len();
    assert_eq!(
        peeked_seqs(&peeked(&mut n, CLIENT, "q", 2)),
        [(0, 0), (1, 0)]
    );
    assert_eq!(
        peeked_seqs(&peeked(&mut n, CLIENT, "q", 10)),
        [(0, 0), (1, 0), (2, 0)]
    );
    assert_eq!(n.journal.records.len(), records, "nothing written");
    let info = n.info("q");
    assert_eq!((info.pending, info.unacked), (3, 0));
    // A consumer gets everything, as first deliveries.
    let c = n.consume("q", ConsumeMode::Push { window: 1 });
    let got = n.messages();
    assert_eq!((seqs(&got), got[0].delivery_count), (vec![0], 1));
    // What is in flight is not shown; a nakked message is, with its count.
    assert_eq!(
        peeked_seqs(&peeked(&mut n, CLIENT, "q", 10)),
        [(1, 0), (2, 0)]
    );
    n.engine.nak(
        &mut n.journal,
        n.now,
        CLIENT,
        41,
        c,
        &[got[0].tag],
        Duration::from_secs(60),
    );
    // The nak made room in the window: 1 went out, 0 waits for its delay.
    assert_eq!(seqs(&n.messages()), vec![1]);
    assert_eq!(
        peeked_seqs(&peeked(&mut n, CLIENT, "q", 10)),
        [(0, 1), (2, 0)]
    );
    // Nothing stored but not yet durable is shown.
    n.publish("a", 3);
    assert_eq!(peeked_seqs(&peeked(&mut n, CLIENT, "q", 10)).len(), 2);
}

#[test]
fn a_peek_is_bounded_checked_and_fits_a_frame() {
    let mut n = Node::new(1);
    n.add_queue("q", "TRUE");
    n.producer();
    for seq in 0..5 {
        n.engine.publish(
            &mut n.journal,
            n.now,
            CLIENT,
            seq,
            attrs("a", seq as i32),
            vec![7; 100],
        );
    }
    n.sync();
    n.frames();
    let refused = |frame: ServerFrame| match frame {
        ServerFrame::Error { code, .. } => code,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        refused(peeked(&mut n, CLIENT, "q", 0)),
        ErrorCode::ProtocolViolation
    );
    assert_eq!(
        refused(peeked(
            &mut n,
            CLIENT,
            "q",
            palio_protocol::MAX_FETCH_BATCH + 1
        )),
        ErrorCode::LimitExceeded
    );
    assert_eq!(
        refused(peeked(&mut n, CLIENT, "nope", 1)),
        ErrorCode::QueueNotFound
    );
    n.engine.client_up(8, principal("bob", false));
    assert_eq!(
        refused(peeked(&mut n, 8, "q", 1)),
        ErrorCode::PermissionDenied
    );
    // A frame just long enough for two of them: the answer is cut to two.
    let ServerFrame::Peeked { mut messages, .. } = peeked(&mut n, CLIENT, "q", 5) else {
        panic!("not peeked");
    };
    assert_eq!(messages.len(), 5);
    messages.truncate(2);
    let two = ServerFrame::Peeked {
        request: 40,
        messages,
    };
    n.max_frame = palio_protocol::encoded_len(&two).unwrap() + 4;
    assert_eq!(peeked(&mut n, CLIENT, "q", 5), two);
    // One message is always shown, as a delivery of it would be.
    n.max_frame = 50;
    assert_eq!(peeked_seqs(&peeked(&mut n, CLIENT, "q", 5)), [(0, 0)]);
}
