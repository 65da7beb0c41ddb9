//! The routing oracle over thousands of seeds: random overlays (trees, rings, meshes; 2 to 100
//! brokers), random subscribe / unsubscribe / advertise / unadvertise / publish mixes while
//! routes are unsettled, link and broker loss and return. After each settle every broker is
//! audited and every notification published must reach every matching subscription exactly
//! once and no other.

use palio_topology::Strategy;
use palio_topology::sim::overlay::OverlayKind;
use palio_topology::sim::scenario::{ChaosOutcome, ChaosParams, run_chaos};

const KINDS: [OverlayKind; 3] = [OverlayKind::Tree, OverlayKind::Ring, OverlayKind::Mesh];

fn run(seed: u64, p: &ChaosParams) -> ChaosOutcome {
    let out = run_chaos(seed, p).unwrap_or_else(|e| panic!("seed {seed} {p:?}: {e}"));
    assert!(
        out.verdict.is_perfect(),
        "seed {seed} {p:?}: {:?}",
        out.verdict
    );
    out
}

/// Many small overlays per strategy, without faults.
fn small_seeds(strategy: Strategy, faults: bool, seeds: u64) {
    let mut expected = 0;
    let mut injected = 0;
    for seed in 0..seeds {
        let p = ChaosParams {
            brokers: 2 + (seed % 7) as usize,
            topology: KINDS[(seed / 7 % 3) as usize],
            strategy,
            ops: 16,
            rounds: 2,
            publications: 5,
            faults,
        };
        let out = run(seed, &p);
        expected += out.verdict.expected;
        injected += out.faults;
    }
    // The runs must exercise something: deliveries to check, and faults when asked for.
    assert!(expected > seeds, "only {expected} deliveries checked");
    if faults {
        assert!(injected > seeds / 4, "only {injected} faults injected");
    }
}

#[test]
fn flooding_small_overlays() {
    small_seeds(Strategy::Flooding, false, 200);
    small_seeds(Strategy::Flooding, true, 200);
}

#[test]
fn simple_small_overlays() {
    small_seeds(Strategy::Simple, false, 200);
    small_seeds(Strategy::Simple, true, 200);
}

#[test]
fn covering_small_overlays() {
    small_seeds(Strategy::Covering, false, 400);
    small_seeds(Strategy::Covering, true, 400);
}

#[test]
fn advertisements_small_overlays() {
    small_seeds(Strategy::Advertisements, false, 400);
    small_seeds(Strategy::Advertisements, true, 400);
}

/// Fewer, larger overlays with longer operation mixes and faults.
#[test]
fn medium_overlays_with_faults() {
    for seed in 0..24u64 {
        let p = ChaosParams {
            brokers: 10 + (seed % 4) as usize * 5,
            topology: KINDS[(seed % 3) as usize],
            strategy: Strategy::ALL[(seed / 3 % 4) as usize],
            ops: 120,
            rounds: 3,
            publications: 15,
            faults: true,
        };
        run(1000 + seed, &p);
    }
}

/// A few large overlays (up to 100 brokers).
#[test]
fn large_overlays() {
    for (i, (brokers, kind, strategy)) in [
        (100, OverlayKind::Mesh, Strategy::Covering),
        (100, OverlayKind::Tree, Strategy::Advertisements),
        (60, OverlayKind::Ring, Strategy::Simple),
    ]
    .into_iter()
    .enumerate()
    {
        let p = ChaosParams {
            brokers,
            topology: kind,
            strategy,
            ops: 200,
            rounds: 2,
            publications: 20,
            faults: true,
        };
        run(5000 + i as u64, &p);
    }
}
