//! Total-order groups across many brokers, in the simulator: delays, reordering, loss,
//! duplication, crashes with a disk that loses what was not synced, partitions, a zombie
//! sequencer and failover storms; checked for one order everywhere, no duplicates, FIFO per
//! producer, acked means delivered, and liveness after healing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod total_sim;

use std::time::Duration;

use palio_topology::BrokerId;
use palio_topology::group::TotalGroup;
use total_sim::{Seen, Sim, SimConfig, Value, check};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Which faults a run injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    Crashes,
    Partition,
    Zombie,
    Storm,
    /// Replica 2 also sends the others raft messages that would abort or overflow raft-rs.
    Hostile,
}

const FAULTS: [Fault; 5] = [
    Fault::None,
    Fault::Crashes,
    Fault::Partition,
    Fault::Zombie,
    Fault::Storm,
];

struct Outcome {
    hash: u64,
    max_epoch: u64,
    positions: usize,
    events: u64,
    /// The longest Raft log a replica holds at the end.
    max_log: u64,
    gaps: u64,
}

/// Runs until `until`, publishing at the publishers now and then.
fn run_publishing(sim: &mut Sim, publishers: &[u32], dur: Duration, every: Duration) {
    let until = sim.now + dur;
    while sim.now < until {
        let step = Duration::from_micros(sim.rng.range(1, 2 * every.as_micros() as u64));
        let t = (sim.now + step).min(until);
        sim.run_until(t);
        if let Some(&b) = sim.rng.pick(publishers) {
            sim.publish(b);
        }
    }
}

/// Steps until a (new) leader is elected or `limit` passes.
fn until_leader(sim: &mut Sim, not: Option<u32>, limit: Duration) -> Option<u32> {
    let end = sim.now + limit;
    while sim.now < end {
        let t = sim.now + ms(5);
        sim.run_until(t);
        if let Some(l) = sim.leader()
            && Some(l) != not
        {
            return Some(l);
        }
    }
    None
}

fn run(seed: u64, fault: Fault, small_retain: bool) -> Result<Outcome, String> {
    let mut rng = palio_topology::sim::rng::SimRng::new(seed ^ 0xABCD);
    let brokers = 4 + rng.below(2) as u32;
    let mut cfg = SimConfig::new(brokers, 3, seed);
    cfg.loss = [0.0, 0.01, 0.05][rng.index(3)];
    cfg.dup = [0.0, 0.02][rng.index(2)];
    if small_retain {
        cfg.group.retain = 6;
    }
    let mut sim = Sim::new(cfg, seed);
    for b in 0..brokers {
        sim.set_reading(b, true);
    }
    // Publishers: two or three brokers, among them (usually) a non-replica.
    let publishers: Vec<u32> = match rng.below(3) {
        0 => vec![0, brokers - 1],
        1 => vec![1, 3],
        _ => vec![0, 2, brokers - 1],
    };
    run_publishing(&mut sim, &publishers, ms(250), ms(15));
    match fault {
        Fault::None => run_publishing(&mut sim, &publishers, ms(450), ms(10)),
        Fault::Crashes => {
            for _ in 0..2 {
                let b = rng.below(3) as u32;
                sim.crash(b);
                run_publishing(&mut sim, &publishers, ms(150), ms(10));
                sim.restart(b);
                run_publishing(&mut sim, &publishers, ms(100), ms(10));
            }
        }
        Fault::Partition => {
            // The leader isolated with a minority (possibly a non-replica).
            if let Some(l) = until_leader(&mut sim, None, ms(400)) {
                let mut side = vec![l];
                if rng.chance(0.5) {
                    side.push(brokers - 1);
                }
                sim.partition(&side);
                run_publishing(&mut sim, &publishers, ms(400), ms(10));
                sim.heal();
            }
            run_publishing(&mut sim, &publishers, ms(200), ms(10));
        }
        Fault::Zombie => {
            if let Some(l) = until_leader(&mut sim, None, ms(400)) {
                let old_epoch = sim.group(l).unwrap().epoch();
                sim.pause(l);
                // Its appends still on the wire arrive only after it resumes.
                let back = sim.now + ms(350);
                sim.delay_in_flight_from(l, back + ms(2));
                run_publishing(&mut sim, &publishers, ms(350), ms(10));
                // A new epoch was started without it.
                let others_epoch = (0..3u32)
                    .filter(|b| *b != l)
                    .filter_map(|b| sim.group(b).map(|g| g.epoch()))
                    .max()
                    .unwrap_or(0);
                if others_epoch <= old_epoch {
                    return Err(format!(
                        "no new epoch while the leader was paused ({others_epoch} <= {old_epoch})"
                    ));
                }
                sim.resume(l);
                // The zombie publishes too (through its own access side).
                sim.publish(l);
                run_publishing(&mut sim, &publishers, ms(300), ms(10));
            }
        }
        Fault::Hostile => {
            let mut injected = 0;
            for _ in 0..5 {
                for to in (0..brokers).filter(|&b| b != 2) {
                    let term = sim.group(to).map_or(1, |g| g.epoch().max(1));
                    for body in hostile::bodies(2, to, term) {
                        sim.inject(2, to, body);
                        injected += 1;
                    }
                }
                run_publishing(&mut sim, &publishers, ms(60), ms(10));
            }
            if sim.body_errors.len() != injected {
                return Err(format!(
                    "{} of {injected} hostile bodies refused: {:?}",
                    sim.body_errors.len(),
                    sim.body_errors.first()
                ));
            }
            sim.body_errors.clear();
        }
        Fault::Storm => {
            let mut last = None;
            for _ in 0..3 {
                let Some(l) = until_leader(&mut sim, last, ms(600)) else {
                    break;
                };
                sim.crash(l);
                last = Some(l);
                run_publishing(&mut sim, &publishers, ms(30), ms(10));
                sim.restart(l);
            }
            run_publishing(&mut sim, &publishers, ms(200), ms(10));
        }
    }
    // Heal everything, then the group must accept and deliver within a bound.
    sim.heal();
    let healed = sim.now;
    let mut fresh: Vec<Value> = Vec::new();
    let t = sim.now + ms(300);
    sim.run_until(t);
    for &b in &publishers {
        if let Some(v) = sim.publish(b) {
            fresh.push(v);
        }
    }
    let bound = healed + ms(2500);
    loop {
        let t = sim.now + ms(20);
        sim.run_until(t);
        let acked = (0..brokers).all(|b| sim.group(b).is_none_or(|g| g.pending() == 0));
        let delivered = sim.nodes.iter().all(|n| {
            let log = n.logs.last().unwrap();
            fresh
                .iter()
                .all(|v| log.iter().any(|s| matches!(s, Seen::Msg(_, w) if w == v)))
        });
        if acked && delivered {
            break;
        }
        if sim.now > bound {
            return Err(format!(
                "not live after healing: acked {acked}, delivered {delivered}, leader {:?}, \
                 pending {:?}, next {:?}",
                sim.leader(),
                (0..brokers)
                    .map(|b| sim.group(b).map(|g| g.pending()))
                    .collect::<Vec<_>>(),
                (0..brokers)
                    .map(|b| sim.group(b).map(|g| g.reader_next()))
                    .collect::<Vec<_>>(),
            ));
        }
    }
    if let Some(e) = sim.body_errors.first() {
        return Err(format!("a well-formed body was refused: {e}"));
    }
    let report = check(&sim)?;
    if report.gaps > 0 && !small_retain {
        return Err(format!(
            "{} messages reported lost with a large retain",
            report.gaps
        ));
    }
    // Idle for a while: every replica applies the same sequence, every reader reads it all.
    let t = sim.now + ms(300);
    sim.run_until(t);
    let applied: Vec<_> = (0..3u32)
        .filter_map(|b| sim.group(b).and_then(|g| g.applied_position()))
        .collect();
    if applied.windows(2).any(|w| w[0] != w[1]) {
        return Err(format!("replicas applied different positions: {applied:?}"));
    }
    let end = applied.iter().map(|p| p.seq + 1).max().unwrap_or(1);
    for b in 0..brokers {
        let next = sim.group(b).and_then(|g| g.reader_next());
        if next != Some(end) {
            return Err(format!(
                "reader at b{b} is at {next:?}, the log ends before {end}"
            ));
        }
    }
    Ok(Outcome {
        hash: sim.trace_hash(),
        max_epoch: report.max_epoch,
        positions: report.positions,
        events: sim.events,
        max_log: (0..3u32)
            .filter_map(|b| sim.group(b).map(|g| g.log_len()))
            .max()
            .unwrap_or(0),
        gaps: report.gaps,
    })
}

fn seeds(range: std::ops::Range<u64>) {
    for seed in range {
        let fault = FAULTS[(seed % FAULTS.len() as u64) as usize];
        let small = seed % 7 == 3;
        if let Err(e) = run(seed, fault, small) {
            panic!("seed {seed} ({fault:?}, small retain {small}): {e}");
        }
    }
}

#[test]
fn seeds_0_250() {
    seeds(0..250);
}

#[test]
fn seeds_250_500() {
    seeds(250..500);
}

#[test]
fn seeds_500_750() {
    seeds(500..750);
}

#[test]
fn seeds_750_1000() {
    seeds(750..1000);
}

#[test]
fn same_seed_same_trace() {
    for fault in FAULTS {
        let a = run(77, fault, false).unwrap();
        let b = run(77, fault, false).unwrap();
        let c = run(78, fault, false).unwrap();
        assert_eq!(a.hash, b.hash, "{fault:?}");
        assert_ne!(a.hash, c.hash, "{fault:?}");
        assert!(
            a.positions > 10,
            "{fault:?}: only {} positions",
            a.positions
        );
        eprintln!(
            "{fault:?}: {} positions, epoch {}, {} events",
            a.positions, a.max_epoch, a.events
        );
    }
}

#[test]
fn compaction_bounds_the_log_and_readers_still_deliver() {
    let mut gaps = 0;
    for seed in 0..20 {
        let fault = FAULTS[(seed % FAULTS.len() as u64) as usize];
        let a = run(seed, fault, true).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        assert!(
            a.max_log <= 7,
            "seed {seed}: a log of {} entries",
            a.max_log
        );
        assert!(a.positions > 10);
        gaps += a.gaps;
    }
    eprintln!("gaps over 20 small-retain runs: {gaps}");
}

#[test]
fn a_hostile_replica_cannot_abort_the_others_and_the_group_keeps_ordering() {
    for seed in 0..24 {
        if let Err(e) = run(seed, Fault::Hostile, seed % 3 == 0) {
            panic!("seed {seed}: {e}");
        }
    }
}

/// Raft messages a misbehaving replica could send, in the wire form of the group's bodies
/// (a mirror of the crate's private types: an enum variant by name, structs as arrays).
mod hostile {
    use serde::Serialize;
    use serde_bytes::ByteBuf;

    #[derive(Serialize)]
    enum Body {
        Raft(Raft),
    }

    /// kind, to, from, term, log term, index, entries (term, index, data), commit, commit term,
    /// snapshot (index, term, voters, data), request snapshot, reject, reject hint, context.
    #[derive(Serialize, Clone)]
    struct Raft(
        u8,
        u64,
        u64,
        u64,
        u64,
        u64,
        Vec<(u64, u64, ByteBuf)>,
        u64,
        u64,
        Option<(u64, u64, Vec<u64>, ByteBuf)>,
        u64,
        bool,
        u64,
        ByteBuf,
    );

    const APPEND: u8 = 3;
    const APPEND_RESPONSE: u8 = 4;
    const VOTE: u8 = 5;
    const SNAPSHOT: u8 = 7;
    const HEARTBEAT: u8 = 8;
    const PRE_VOTE: u8 = 17;

    /// From broker `from` to broker `to`, whose term is `term`.
    pub(super) fn bodies(from: u32, to: u32, term: u64) -> Vec<Vec<u8>> {
        let m = |kind, term| {
            Raft(
                kind,
                u64::from(to) + 1,
                u64::from(from) + 1,
                term,
                0,
                0,
                Vec::new(),
                0,
                0,
                None,
                0,
                false,
                0,
                ByteBuf::new(),
            )
        };
        let far = 1 << 40;
        let entry = |term, index| vec![(term, index, ByteBuf::new())];
        let snap = Some((u64::MAX, 1, vec![1, 2, 3], ByteBuf::new()));
        let msgs = vec![
            // Term 0: raft-rs takes it for a local message and aborts answering a vote.
            m(VOTE, 0),
            m(PRE_VOTE, 0),
            // Appends that "match" beyond the log (log term 0) and commit past its end.
            Raft {
                5: far,
                7: far,
                ..m(APPEND, term)
            },
            Raft {
                6: entry(0, 1),
                7: 1,
                ..m(APPEND, term)
            },
            // Terms raft-rs overflows on its next campaign, or that jump far ahead.
            m(HEARTBEAT, u64::MAX),
            m(HEARTBEAT, term + (1 << 21)),
            // Indexes raft-rs adds one to.
            Raft {
                5: u64::MAX,
                ..m(APPEND_RESPONSE, term)
            },
            Raft {
                5: 1,
                11: true,
                12: u64::MAX,
                ..m(APPEND_RESPONSE, term)
            },
            Raft {
                9: snap,
                ..m(SNAPSHOT, term)
            },
            // Fields the group never uses: a forced election, a snapshot request.
            Raft {
                13: ByteBuf::from(&b"CampaignTransfer"[..]),
                ..m(VOTE, term + 1)
            },
            Raft {
                10: 1,
                ..m(HEARTBEAT, term)
            },
        ];
        msgs.into_iter()
            .map(|r| rmp_serde::to_vec(&Body::Raft(r)).unwrap())
            .collect()
    }
}

#[test]
fn epochs_increase_across_failover() {
    let a = run(5, Fault::Storm, false).unwrap();
    assert!(a.max_epoch >= 3, "epoch {} after a storm", a.max_epoch);
}

#[test]
fn unit_bad_bodies_are_refused_and_change_nothing() {
    let now = std::time::Instant::now();
    let voters = [BrokerId(0), BrokerId(1), BrokerId(2)];
    let mut g: TotalGroup<Value> =
        TotalGroup::new(BrokerId(0), &voters, Default::default(), Vec::new(), now).unwrap();
    let before = format!("{g:?}");
    for bad in [&b""[..], &[0xc1], &[0x93, 1, 2, 3], b"garbage bytes"] {
        assert!(g.handle_body(now, BrokerId(1), bad).is_err());
    }
    assert_eq!(format!("{g:?}"), before);
    assert!(g.poll_effect().is_none());
}
