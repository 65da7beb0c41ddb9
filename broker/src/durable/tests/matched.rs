//! What a publish ack says of the queues a publication matched: local and remote queues
//! counted, none said as 0, and a retry told what it was told the first time, also after a
//! recovery from the journal or a checkpoint.

use crate::wire::QueueDecl;

use super::*;

/// Broker 3's queue `name`, keeping everything, as a peer declares it.
fn remote_queue(n: &mut Node, name: &str) {
    let decl = QueueDecl {
        home: BrokerId(3),
        name: name.into(),
        filter: "TRUE".into(),
        generation: 1,
        removed: false,
    };
    assert_eq!(
        n.engine.handle_decl(&mut n.journal, BrokerId(3), decl),
        None
    );
    n.sync();
    n.outputs();
}

fn publish_acked(n: &mut Node, kind: &str, seq: u64) -> ServerFrame {
    n.publish(kind, seq);
    n.sync();
    let mut frames = n.frames();
    assert_eq!(frames.len(), 1, "{frames:?}");
    frames.remove(0)
}

#[test]
fn an_ack_counts_the_local_and_remote_queues_a_publication_matched() {
    let mut n = Node::new(1);
    n.producer();
    // No queue anywhere: acked, kept by none, and counted.
    assert_eq!(publish_acked(&mut n, "a", 0), acked(0, 0, 0));
    assert_eq!(n.engine.stats().unmatched, 1);
    n.add_queue("q", "type = 'a'");
    n.add_queue("r", "type = 'a' OR type = 'b'");
    remote_queue(&mut n, "x");
    remote_queue(&mut n, "y");
    // Two here, two at broker 3 (one destination, two queues).
    assert_eq!(publish_acked(&mut n, "a", 1), acked(1, 1, 4));
    assert_eq!(publish_acked(&mut n, "b", 2), acked(2, 2, 3));
    assert_eq!(n.engine.stats().unmatched, 1);
}

#[test]
fn acks_released_together_keep_each_publications_count_in_runs() {
    let mut n = Node::new(1);
    n.add_queue("q", "type = 'a'");
    n.producer();
    for (seq, kind) in ["a", "a", "b", "a", "a"].iter().enumerate() {
        n.publish(kind, seq as u64);
    }
    n.sync();
    let runs = |f: &[(u64, u64, u32)]| {
        f.iter()
            .map(|&(from, through, queues)| palio_protocol::QueueMatches {
                from,
                through,
                queues,
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        n.frames(),
        vec![ServerFrame::PublishAcked {
            through: 4,
            matched: runs(&[(0, 1, 1), (2, 2, 0), (3, 4, 1)]),
        }]
    );
}

#[test]
fn a_retry_is_told_what_the_first_ack_said_also_after_recovery() {
    let mut n = Node::new(1);
    n.add_queue("q", "TRUE");
    n.producer();
    assert_eq!(publish_acked(&mut n, "a", 0), acked(0, 0, 1));
    n.engine.queue_remove(&mut n.journal, CLIENT, 5, "q");
    n.sync();
    n.frames();
    // The queue is gone, but the publication was stored in it: the retry says 1.
    assert_eq!(publish_acked(&mut n, "a", 0), acked(0, 0, 1));
    assert_eq!(publish_acked(&mut n, "a", 1), acked(1, 1, 0));
    // Recovered from the journal: the same answers.
    let mut r = n.recovered();
    r.producer();
    assert_eq!(publish_acked(&mut r, "a", 0), acked(0, 0, 1));
    assert_eq!(publish_acked(&mut r, "a", 1), acked(1, 1, 0));
    // And from a checkpoint.
    let snap = n.engine.snapshot();
    let mut s = Node::new(1);
    s.engine = Engine::from_snapshot(n.engine.cfg.clone(), snap);
    s.engine.client_up(CLIENT, principal(ALICE, false));
    s.journal = VecJournal {
        records: n.journal.records.clone(),
        fail: false,
    };
    s.producer();
    assert_eq!(publish_acked(&mut s, "a", 0), acked(0, 0, 1));
}

#[test]
fn a_retry_older_than_what_the_producer_keeps_is_told_what_it_matches_now() {
    let mut n = Node::new(1);
    n.add_queue("q", "type = 'a'");
    n.producer();
    // Alternating counts: one run per publication, more than a producer keeps.
    for seq in 0..40 {
        let kind = if seq % 2 == 0 { "a" } else { "b" };
        let want = u32::from(seq % 2 == 0);
        assert_eq!(publish_acked(&mut n, kind, seq), acked(seq, seq, want));
    }
    // The latest are remembered; seq 0 no longer is, and matches q now as it did then.
    assert_eq!(publish_acked(&mut n, "b", 39), acked(39, 39, 0));
    assert_eq!(publish_acked(&mut n, "a", 0), acked(0, 0, 1));
    n.add_queue("all", "TRUE");
    assert_eq!(publish_acked(&mut n, "a", 38), acked(38, 38, 1));
    assert_eq!(publish_acked(&mut n, "a", 0), acked(0, 0, 2));
}
