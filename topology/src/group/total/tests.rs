//! Focused tests of one group core: bad bodies, dedup of retries, recovery from records.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use super::raft::{MAX_TERM_LEAD, WireMessage, WireSnapshot, raft_id};
use super::records::LogEntry;
use super::wire::{Body, Pending};
use super::*;

type G = TotalGroup<String>;

/// Drives a lone core through its timers until `until`, returning its effects.
fn run(g: &mut G, now: &mut Instant, dur: Duration) -> Vec<Effect<String>> {
    let until = *now + dur;
    let mut out = Vec::new();
    while let Some(e) = g.poll_effect() {
        out.push(e);
    }
    while let Some(t) = g.poll_timeout() {
        if t > until {
            break;
        }
        *now = (*now).max(t);
        g.handle_timeout(*now);
        while let Some(e) = g.poll_effect() {
            out.push(e);
        }
    }
    *now = until;
    out
}

fn delivered(es: &[Effect<String>]) -> Vec<(u64, String)> {
    es.iter()
        .filter_map(|e| match e {
            Effect::Deliver(d) => Some((d.position.unwrap().seq, d.msg.clone())),
            _ => None,
        })
        .collect()
}

fn records(es: &[Effect<String>]) -> Vec<Vec<u8>> {
    es.iter()
        .filter_map(|e| match e {
            Effect::Persist { record } => Some(record.clone()),
            _ => None,
        })
        .collect()
}

fn lone(now: Instant, recovered: Vec<Vec<u8>>) -> G {
    let cfg = TotalConfig {
        tick: Duration::from_millis(10),
        retry_after: Duration::from_millis(50),
        ..TotalConfig::default()
    };
    G::new(BrokerId(0), &[BrokerId(0)], cfg, recovered, now).unwrap()
}

#[test]
fn a_lone_replica_orders_dedups_retries_and_recovers_from_its_records() {
    let mut now = Instant::now();
    let mut g = lone(now, Vec::new());
    g.set_reading(now, true);
    let mut es = run(&mut g, &mut now, Duration::from_millis(500));
    assert_eq!(g.sequencer(), Some(BrokerId(0)));
    let epoch = g.epoch();
    assert!(epoch >= 1);
    for (pseq, m) in [(1, "a"), (2, "b"), (2, "b again"), (1, "a again"), (3, "c")] {
        g.publish(now, "p", pseq, m.to_owned());
        es.extend(run(&mut g, &mut now, Duration::from_millis(20)));
    }
    es.extend(run(&mut g, &mut now, Duration::from_millis(200)));
    assert_eq!(
        delivered(&es),
        vec![(1, "a".into()), (2, "b".into()), (3, "c".into())]
    );
    let acks: Vec<u64> = es
        .iter()
        .filter_map(|e| match e {
            Effect::Acked { through, .. } => Some(*through),
            _ => None,
        })
        .collect();
    assert_eq!(acks.last(), Some(&3));
    assert_eq!(g.pending(), 0);
    assert_eq!(
        g.last_position().map(|p| (p.epoch, p.seq)),
        Some((epoch, 3))
    );

    // Rebuilt from its records: same state, the dedup table included.
    let mut h = lone(now, records(&es));
    assert_eq!(h.applied_position(), g.applied_position());
    assert!(h.epoch() >= epoch);
    h.set_reading(now, true);
    let mut es2 = run(&mut h, &mut now, Duration::from_millis(500));
    h.publish(now, "p", 3, "c retried".into());
    h.publish(now, "p", 4, "d".into());
    es2.extend(run(&mut h, &mut now, Duration::from_millis(300)));
    let d = delivered(&es2);
    assert_eq!(d, vec![(4, "d".into())]);
    assert!(h.epoch() > epoch, "a restarted replica starts a new epoch");

    // A record that does not decode is refused.
    let mut bad = records(&es);
    bad.push(vec![0xc1]);
    assert!(
        G::new(
            BrokerId(0),
            &[BrokerId(0)],
            TotalConfig::default(),
            bad,
            now
        )
        .is_err()
    );
    // So are records at a broker that is not a replica.
    assert!(
        G::new(
            BrokerId(1),
            &[BrokerId(0)],
            TotalConfig::default(),
            records(&es),
            now
        )
        .is_err()
    );
}

#[test]
fn bad_bodies_are_refused_and_change_nothing() {
    let now = Instant::now();
    let voters = [BrokerId(0), BrokerId(1), BrokerId(2)];
    let mut g = G::new(
        BrokerId(0),
        &voters,
        TotalConfig::default(),
        Vec::new(),
        now,
    )
    .unwrap();
    let mut reader = G::new(
        BrokerId(7),
        &voters,
        TotalConfig::default(),
        Vec::new(),
        now,
    )
    .unwrap();
    reader.set_reading(now, true);
    while reader.poll_effect().is_some() {}
    let before = (format!("{g:?}"), format!("{reader:?}"));

    let enc = |b: Body<String>| b.encode();
    // An unknown raft message type (MsgHup: local only).
    let mut w: WireMessage = rmp_serde::from_slice(
        &rmp_serde::to_vec(&(
            0u8,
            1u64,
            2u64,
            1u64,
            0u64,
            0u64,
            Vec::<()>::new(),
            0u64,
            0u64,
            None::<()>,
            0u64,
            false,
            0u64,
            serde_bytes::ByteBuf::new(),
        ))
        .unwrap(),
    )
    .unwrap();
    assert!(
        g.handle_body(now, BrokerId(1), &enc(Body::Raft(w.clone())))
            .is_err()
    );
    // A heartbeat (type 8) claiming to be from another replica than its sender.
    w = rmp_serde::from_slice(
        &rmp_serde::to_vec(&(
            8u8,
            1u64,
            3u64,
            1u64,
            0u64,
            0u64,
            Vec::<()>::new(),
            0u64,
            0u64,
            None::<()>,
            0u64,
            false,
            0u64,
            serde_bytes::ByteBuf::new(),
        ))
        .unwrap(),
    )
    .unwrap();
    assert!(
        g.handle_body(now, BrokerId(1), &enc(Body::Raft(w)))
            .is_err()
    );
    // Raft from a non-voter; a proposal too big; a follow or proposal to a non-replica.
    let hb = rmp_serde::from_slice::<WireMessage>(
        &rmp_serde::to_vec(&(
            8u8,
            1u64,
            8u64,
            1u64,
            0u64,
            0u64,
            Vec::<()>::new(),
            0u64,
            0u64,
            None::<()>,
            0u64,
            false,
            0u64,
            serde_bytes::ByteBuf::new(),
        ))
        .unwrap(),
    )
    .unwrap();
    assert!(
        g.handle_body(now, BrokerId(7), &enc(Body::Raft(hb)))
            .is_err()
    );
    let big: Vec<Pending<String>> = (0..=TotalConfig::default().batch_max as u64)
        .map(|i| Pending {
            producer: "p".into(),
            pseq: i,
            msg: String::new(),
        })
        .collect();
    assert!(
        g.handle_body(now, BrokerId(5), &enc(Body::Propose { pubs: big }))
            .is_err()
    );
    assert!(
        reader
            .handle_body(now, BrokerId(5), &enc(Body::Follow { from: None }))
            .is_err()
    );
    // A stream whose items are not contiguous, or from a non-replica.
    let p = |seq| Position { epoch: 1, seq };
    let gappy = Body::Stream {
        term: 1,
        leader: None,
        floor: 1,
        through: 3,
        start: 1,
        items: vec![(p(1), "x".to_owned()), (p(3), "y".to_owned())],
    };
    assert!(
        reader
            .handle_body(now, BrokerId(0), &enc(gappy.clone()))
            .is_err()
    );
    assert!(reader.handle_body(now, BrokerId(5), &enc(gappy)).is_err());
    // Bytes that are not a body at all.
    for junk in [&b""[..], &[0xc1], &[0x93, 1, 2, 3]] {
        assert!(g.handle_body(now, BrokerId(1), junk).is_err());
    }
    assert_eq!((format!("{g:?}"), format!("{reader:?}")), before);
    assert!(g.poll_effect().is_none() && reader.poll_effect().is_none());
}

const HEARTBEAT: u8 = 8;
const APPEND: u8 = 3;
const APPEND_RESPONSE: u8 = 4;
const VOTE: u8 = 5;
const VOTE_RESPONSE: u8 = 6;
const SNAPSHOT: u8 = 7;
const PRE_VOTE: u8 = 17;
const PRE_VOTE_RESPONSE: u8 = 18;

/// A raft message of `kind` and `term` from replica 1 to replica 0, all else empty.
fn wm(kind: u8, term: u64) -> WireMessage {
    WireMessage {
        kind,
        to: raft_id(BrokerId(0)),
        from: raft_id(BrokerId(1)),
        term,
        log_term: 0,
        index: 0,
        entries: Vec::new(),
        commit: 0,
        commit_term: 0,
        snapshot: None,
        request_snapshot: 0,
        reject: false,
        reject_hint: 0,
        context: Vec::new(),
    }
}

fn entry(term: u64, index: u64) -> LogEntry {
    LogEntry {
        term,
        index,
        data: Vec::new(),
    }
}

/// The raft messages among `es` sent by the group.
fn raft_sent(es: &[Effect<String>]) -> Vec<(BrokerId, WireMessage)> {
    es.iter()
        .filter_map(|e| match e {
            Effect::Send { to, body } => match Body::<String>::decode(body).ok()? {
                Body::Raft(w) => Some((*to, w)),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// Replica 0 of a three-replica group, made leader by votes from replica 1.
fn leader_of_three(now: &mut Instant) -> G {
    let voters = [BrokerId(0), BrokerId(1), BrokerId(2)];
    let cfg = TotalConfig {
        tick: Duration::from_millis(10),
        ..TotalConfig::default()
    };
    let mut g = G::new(BrokerId(0), &voters, cfg, Vec::new(), *now).unwrap();
    let es = run(&mut g, now, Duration::from_secs(1));
    let term = raft_sent(&es)
        .iter()
        .find(|(_, w)| w.kind == PRE_VOTE)
        .expect("a pre-vote")
        .1
        .term;
    for kind in [PRE_VOTE_RESPONSE, VOTE_RESPONSE] {
        g.handle_body(
            *now,
            BrokerId(1),
            &Body::<String>::Raft(wm(kind, term)).encode(),
        )
        .unwrap();
    }
    assert_eq!(g.sequencer(), Some(BrokerId(0)));
    while g.poll_effect().is_some() {}
    g
}

/// Asserts that `w` from replica 1 is refused and changes nothing.
fn refused(g: &mut G, now: Instant, w: WireMessage) {
    let before = format!("{g:?}");
    let r = g.handle_body(now, BrokerId(1), &Body::<String>::Raft(w.clone()).encode());
    assert!(r.is_err(), "{w:?} was taken");
    assert_eq!(format!("{g:?}"), before, "{w:?} changed the group");
    assert!(g.poll_effect().is_none());
}

#[test]
fn vote_requests_of_term_0_are_refused() {
    // raft-rs takes term 0 for a local message and aborts answering it.
    let now = Instant::now();
    let voters = [BrokerId(0), BrokerId(1), BrokerId(2)];
    let mut g = G::new(
        BrokerId(0),
        &voters,
        TotalConfig::default(),
        Vec::new(),
        now,
    )
    .unwrap();
    refused(&mut g, now, wm(VOTE, 0));
    refused(&mut g, now, wm(PRE_VOTE, 0));
}

#[test]
fn appends_that_would_commit_beyond_the_log_are_refused() {
    // raft-rs reads the term of an index beyond its log as 0: an append after such an index
    // with log term 0 "matches" and commits past the end of the log, which aborts.
    let now = Instant::now();
    let voters = [BrokerId(0), BrokerId(1), BrokerId(2)];
    let mut g = G::new(
        BrokerId(0),
        &voters,
        TotalConfig::default(),
        Vec::new(),
        now,
    )
    .unwrap();
    refused(
        &mut g,
        now,
        WireMessage {
            index: 5,
            commit: 5,
            ..wm(APPEND, 1)
        },
    );
    refused(
        &mut g,
        now,
        WireMessage {
            entries: vec![entry(0, 1)],
            commit: 1,
            ..wm(APPEND, 1)
        },
    );
}

#[test]
fn terms_and_indexes_raft_rs_would_overflow_are_refused() {
    let now = Instant::now();
    let voters = [BrokerId(0), BrokerId(1), BrokerId(2)];
    let mut g = G::new(
        BrokerId(0),
        &voters,
        TotalConfig::default(),
        Vec::new(),
        now,
    )
    .unwrap();
    // A term raft-rs adds one to on its next campaign, or jumps to in one message.
    refused(&mut g, now, wm(HEARTBEAT, u64::MAX));
    refused(&mut g, now, wm(HEARTBEAT, MAX_TERM_LEAD + 1));
    // A snapshot's index becomes the restored log's offset minus one.
    let snap = |index| WireSnapshot {
        index,
        term: 1,
        voters: vec![1, 2, 3],
        data: Vec::new(),
    };
    refused(
        &mut g,
        now,
        WireMessage {
            snapshot: Some(snap(u64::MAX)),
            ..wm(SNAPSHOT, 1)
        },
    );
    refused(
        &mut g,
        now,
        WireMessage {
            log_term: 1,
            index: u64::MAX - 1,
            entries: vec![entry(1, u64::MAX)],
            ..wm(APPEND, 1)
        },
    );
    // The same message within bounds is stepped.
    let hb = wm(HEARTBEAT, 1);
    g.handle_body(now, BrokerId(1), &Body::<String>::Raft(hb).encode())
        .unwrap();
    assert_eq!(g.sequencer(), Some(BrokerId(1)));
}

#[test]
fn snapshot_requests_and_contexts_are_refused() {
    // Neither is used here; a vote request whose context says "leader transfer" would force
    // an election past the leader's lease.
    let now = Instant::now();
    let voters = [BrokerId(0), BrokerId(1), BrokerId(2)];
    let mut g = G::new(
        BrokerId(0),
        &voters,
        TotalConfig::default(),
        Vec::new(),
        now,
    )
    .unwrap();
    refused(
        &mut g,
        now,
        WireMessage {
            request_snapshot: 1,
            ..wm(HEARTBEAT, 1)
        },
    );
    refused(
        &mut g,
        now,
        WireMessage {
            context: b"CampaignTransfer".to_vec(),
            ..wm(VOTE, 1)
        },
    );
}

#[test]
fn append_responses_beyond_the_leaders_log_are_refused_and_it_goes_on() {
    let mut now = Instant::now();
    let mut l = leader_of_three(&mut now);
    let term = l.epoch();
    // u64::MAX overflows raft-rs's next index for the follower; the others claim entries the
    // leader does not have.
    for (index, reject, reject_hint) in [
        (u64::MAX, false, 0),
        (50, false, 0),
        (1, true, u64::MAX),
        (1, true, 50),
    ] {
        refused(
            &mut l,
            now,
            WireMessage {
                index,
                reject,
                reject_hint,
                ..wm(APPEND_RESPONSE, term)
            },
        );
    }
    // The leader goes on with replica 1's real answers: a publication is committed and acked.
    let ack = |index| {
        Body::<String>::Raft(WireMessage {
            index,
            ..wm(APPEND_RESPONSE, term)
        })
    };
    l.handle_body(now, BrokerId(1), &ack(1).encode()).unwrap();
    l.publish(now, "p", 1, "m".into());
    let es = run(&mut l, &mut now, Duration::from_millis(20));
    let last = raft_sent(&es)
        .iter()
        .filter(|(to, w)| *to == BrokerId(1) && w.kind == APPEND)
        .filter_map(|(_, w)| w.entries.last().map(|e| e.index))
        .max()
        .expect("the leader still replicates to replica 1");
    l.handle_body(now, BrokerId(1), &ack(last).encode())
        .unwrap();
    let es = run(&mut l, &mut now, Duration::from_millis(20));
    assert!(es.contains(&Effect::Acked {
        producer: "p".into(),
        through: 1
    }));
}

/// A replica restored with a term near the largest a record may hold elects itself and runs:
/// the bound leaves raft-rs room for its `term + 1`. Beyond the bound the records are refused
/// (`records::tests` has the fuzz target's record that got past it before).
#[test]
fn restored_term_at_the_bound_elects_and_beyond_is_refused() {
    use super::records::{MAX_TERM_OR_INDEX, Record};
    let mut now = Instant::now();
    let state = |term: u64| {
        Record::HardState {
            term,
            vote: 0,
            commit: 0,
        }
        .encode()
    };
    let me = BrokerId(0);
    let mut g = G::new(
        me,
        &[me],
        TotalConfig::default(),
        vec![state(MAX_TERM_OR_INDEX)],
        now,
    )
    .unwrap();
    run(&mut g, &mut now, Duration::from_secs(5));
    assert_eq!(g.sequencer(), Some(me));
    assert!(g.epoch() > MAX_TERM_OR_INDEX);
    let refused = G::new(
        me,
        &[me],
        TotalConfig::default(),
        vec![state(MAX_TERM_OR_INDEX + 1)],
        now,
    );
    assert!(refused.is_err());
}

/// A replica told of a term beyond the bound by a peer refuses the message: adopting it, its
/// next election computed `term + 1` inside raft-rs (a panic in debug builds, a wrapped term in
/// release ones). Every term and index a peer sends is bounded as the records are.
#[test]
fn a_peer_term_beyond_the_bound_is_refused() {
    use super::records::MAX_TERM_OR_INDEX;
    let mut now = Instant::now();
    let voters = [BrokerId(0), BrokerId(1), BrokerId(2)];
    let mut g = G::new(
        BrokerId(0),
        &voters,
        TotalConfig::default(),
        Vec::new(),
        now,
    )
    .unwrap();
    // A heartbeat (type 8) from broker 1 (raft id 2) to broker 0 (raft id 1) in `term`.
    let heartbeat = |term: u64| {
        let w: WireMessage = rmp_serde::from_slice(
            &rmp_serde::to_vec(&(
                8u8,
                1u64,
                2u64,
                term,
                0u64,
                0u64,
                Vec::<()>::new(),
                0u64,
                0u64,
                None::<()>,
                0u64,
                false,
                0u64,
                serde_bytes::ByteBuf::new(),
            ))
            .unwrap(),
        )
        .unwrap();
        Body::<String>::Raft(w).encode()
    };
    assert!(
        g.handle_body(now, BrokerId(1), &heartbeat(u64::MAX))
            .is_err()
    );
    assert!(
        g.handle_body(now, BrokerId(1), &heartbeat(MAX_TERM_OR_INDEX + 1))
            .is_err()
    );
    // Elections go on (no leader answers): the term stays small.
    run(&mut g, &mut now, Duration::from_secs(10));
    assert!(g.epoch() < 100, "epoch {}", g.epoch());
    // Nor is a term at the bound taken from a peer: it leads ours implausibly (MAX_TERM_LEAD);
    // a restored term at the bound is covered by `restored_term_at_the_bound_elects...`.
    assert!(
        g.handle_body(now, BrokerId(1), &heartbeat(MAX_TERM_OR_INDEX))
            .is_err()
    );
}

/// The proposals a core sent, as `(to, publications' pseqs)`.
fn proposals(es: &[Effect<String>]) -> Vec<(BrokerId, Vec<u64>)> {
    es.iter()
        .filter_map(|e| match e {
            Effect::Send { to, body } => match Body::<String>::decode(body).unwrap() {
                Body::Propose { pubs } => Some((*to, pubs.iter().map(|p| p.pseq).collect())),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

fn redirect(term: u64, leader: Option<BrokerId>) -> Vec<u8> {
    Body::<String>::Redirect { term, leader }.encode()
}

/// An access broker (not a replica) of voters 0, 1, 2, with one publication outstanding at
/// voter 0, the first one tried.
fn access_with_one_outstanding(now: Instant) -> G {
    let cfg = TotalConfig {
        retry_after: Duration::from_secs(2),
        ..TotalConfig::default()
    };
    let voters = [BrokerId(0), BrokerId(1), BrokerId(2)];
    let mut g = G::new(BrokerId(3), &voters, cfg, Vec::new(), now).unwrap();
    g.publish(now, "p", 1, "m".to_owned());
    let es: Vec<_> = std::iter::from_fn(|| g.poll_effect()).collect();
    assert_eq!(proposals(&es), vec![(BrokerId(0), vec![1])]);
    g
}

#[test]
fn a_batch_refused_by_a_replica_goes_again_as_soon_as_that_replica_is_learned_to_lead() {
    let now = Instant::now();
    let mut g = access_with_one_outstanding(now);
    // Voter 0 is a candidate when the batch arrives: it refuses, knowing no leader yet.
    g.handle_body(now, BrokerId(0), &redirect(2, None)).unwrap();
    let es: Vec<_> = std::iter::from_fn(|| g.poll_effect()).collect();
    assert_eq!(
        proposals(&es),
        vec![],
        "no leader known: nothing to send to"
    );
    // It wins the election; another replica says so. The batch goes to it now, not when the
    // retry timer fires (which would try the next voter instead of the leader).
    g.handle_body(now, BrokerId(1), &redirect(3, Some(BrokerId(0))))
        .unwrap();
    let es: Vec<_> = std::iter::from_fn(|| g.poll_effect()).collect();
    assert_eq!(proposals(&es), vec![(BrokerId(0), vec![1])]);
    // Hearing of the same leader again sends nothing more.
    g.handle_body(now, BrokerId(2), &redirect(3, Some(BrokerId(0))))
        .unwrap();
    let es: Vec<_> = std::iter::from_fn(|| g.poll_effect()).collect();
    assert_eq!(proposals(&es), vec![]);
}

#[test]
fn a_batch_not_refused_is_not_sent_again_when_its_target_is_learned_to_lead() {
    let now = Instant::now();
    let mut g = access_with_one_outstanding(now);
    // The batch is on its way to voter 0, which leads: learning so sends no duplicate.
    g.handle_body(now, BrokerId(1), &redirect(1, Some(BrokerId(0))))
        .unwrap();
    let es: Vec<_> = std::iter::from_fn(|| g.poll_effect()).collect();
    assert_eq!(proposals(&es), vec![]);
    // A refusal from a replica it was not sent to changes nothing either.
    g.handle_body(now, BrokerId(2), &redirect(1, Some(BrokerId(0))))
        .unwrap();
    let es: Vec<_> = std::iter::from_fn(|| g.poll_effect()).collect();
    assert_eq!(proposals(&es), vec![]);
}

#[test]
fn a_batch_started_after_a_leader_was_learned_goes_to_that_leader() {
    let now = Instant::now();
    let mut g = access_with_one_outstanding(now);
    // Voter 0 redirects to voter 1, which commits the batch.
    g.handle_body(now, BrokerId(0), &redirect(1, Some(BrokerId(1))))
        .unwrap();
    let acked = Body::<String>::Acked {
        term: 1,
        leader: Some(BrokerId(1)),
        acks: vec![("p".to_owned(), 1)],
    };
    g.handle_body(now, BrokerId(1), &acked.encode()).unwrap();
    let es: Vec<_> = std::iter::from_fn(|| g.poll_effect()).collect();
    assert_eq!(proposals(&es), vec![(BrokerId(1), vec![1])]);
    assert_eq!(g.pending(), 0);
    // While nothing is outstanding, voter 2 is elected (a replica's answer says so; at a
    // replica, its own Raft node would). The next publication goes to it, not to voter 1,
    // which would only redirect it (and the redirect, naming a leader already known, would
    // leave it to the retry timer).
    g.handle_body(now, BrokerId(1), &redirect(2, Some(BrokerId(2))))
        .unwrap();
    g.publish(now, "p", 2, "n".to_owned());
    let es: Vec<_> = std::iter::from_fn(|| g.poll_effect()).collect();
    assert_eq!(proposals(&es), vec![(BrokerId(2), vec![2])]);
}
