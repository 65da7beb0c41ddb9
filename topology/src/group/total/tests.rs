//! Focused tests of one group core: bad bodies, dedup of retries, recovery from records.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use super::raft::WireMessage;
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
    // At the bound, the term is taken, and elections after it do not overflow.
    g.handle_body(now, BrokerId(1), &heartbeat(MAX_TERM_OR_INDEX))
        .unwrap();
    run(&mut g, &mut now, Duration::from_secs(10));
    assert!(g.epoch() >= MAX_TERM_OR_INDEX);
}
