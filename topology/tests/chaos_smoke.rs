use palio_topology::Strategy;
use palio_topology::sim::overlay::OverlayKind;
use palio_topology::sim::scenario::{ChaosParams, run_chaos};

#[test]
fn smoke() {
    for strategy in Strategy::ALL {
        for faults in [false, true] {
            for seed in 0..20 {
                let p = ChaosParams {
                    brokers: 2 + (seed as usize % 7),
                    topology: [OverlayKind::Tree, OverlayKind::Ring, OverlayKind::Mesh]
                        [seed as usize % 3],
                    strategy,
                    ops: 40,
                    rounds: 3,
                    publications: 10,
                    faults,
                };
                let out = run_chaos(seed, &p)
                    .unwrap_or_else(|e| panic!("{strategy} faults={faults} seed {seed}: {e}"));
                eprintln!(
                    "{strategy} {faults} {seed}: exp {} act {} faults {} events {}",
                    out.verdict.expected, out.verdict.actual, out.faults, out.events
                );
                assert!(
                    out.verdict.is_perfect(),
                    "{strategy} faults={faults} seed {seed}: {:?}",
                    out.verdict
                );
            }
        }
    }
}
