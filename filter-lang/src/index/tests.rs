//! The index against naive evaluation on large, churning clusters.
//!
//! The property tests in `tests/index_agrees.rs` cover the semantics on small random mixes and
//! on large sets of varied conjunctions. These tests add what only large clusters exercise, on
//! a seeded random workload: cell engines whose members all have the same number of tests
//! (the cluster then finds a member's tests by position, see `cluster`), members waiting for
//! their batch, tombstones, compactions and rebuilds caused by removals, engines growing past
//! their reserved rows, entries with several conjunctions and with out-of-line requirements
//! in engine clusters, and attributes entering an engine's universe between rebuilds.

use std::collections::{BTreeMap, BTreeSet};

use crate::routable::{Conjunction, Constraint, IntOp, Predicate, Routable, StrOp};
use crate::value::{AttrName, Value};
use crate::{EntryId, Event, Index};

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn int(&mut self, lo: i32, hi: i32) -> i32 {
        let span = u64::try_from(i64::from(hi) - i64::from(lo)).unwrap();
        lo + i32::try_from(self.below(span)).unwrap()
    }
}

fn name(a: u64) -> AttrName {
    AttrName::new(format!("q{a}")).unwrap()
}

/// A conjunction of intervals on `k` distinct attributes among `attrs`, with a string or
/// boolean requirement now and then (`extras` of 100).
fn conjunction(rng: &mut Rng, attrs: u64, k: usize, extras: u64) -> Conjunction {
    let mut chosen = BTreeSet::new();
    while chosen.len() < k {
        chosen.insert(rng.below(attrs));
    }
    let mut cs = Vec::new();
    for a in chosen {
        let lo = rng.int(0, 1000);
        let hi = lo + rng.int(0, 700);
        cs.push(Constraint::new(name(a), Predicate::Int(IntOp::Ge, lo)));
        cs.push(Constraint::new(name(a), Predicate::Int(IntOp::Le, hi)));
        if rng.below(100) < extras {
            let pred = match rng.below(3) {
                0 => Predicate::Int(IntOp::Ne, lo + 1),
                1 => Predicate::Str(StrOp::Ne, (lo + 2).to_string()),
                _ => Predicate::Str(StrOp::Prefix, "1".into()),
            };
            cs.push(Constraint::new(name(a), pred));
        }
    }
    Conjunction::new(cs)
}

fn event(rng: &mut Rng, attrs: u64) -> Event {
    let mut ev = Event::new();
    for a in 0..attrs {
        // Now and then an attribute is missing or is a string.
        match rng.below(20) {
            0 => {}
            1 => {
                ev.set(name(a), Value::from(format!("{}", rng.int(0, 1700))));
            }
            _ => {
                ev.set(name(a), Value::Int(rng.int(0, 1700)));
            }
        }
    }
    ev
}

/// Live entries, evaluated naively.
#[derive(Default)]
struct Model {
    live: BTreeMap<EntryId, (Routable, u32)>,
}

impl Model {
    fn check(&self, index: &Index<u32>, ev: &Event) {
        let want_entries: BTreeSet<EntryId> = self
            .live
            .iter()
            .filter(|(_, (r, _))| r.matches(ev))
            .map(|(id, _)| *id)
            .collect();
        let want_dests: BTreeSet<u32> = self
            .live
            .values()
            .filter(|(r, _)| r.matches(ev))
            .map(|(_, d)| *d)
            .collect();
        let mut scratch = index.scratch();
        let mut entries = Vec::new();
        index.matching_entries(ev, &mut scratch, &mut entries);
        let got: BTreeSet<EntryId> = entries.iter().copied().collect();
        assert_eq!(got.len(), entries.len(), "an entry was returned twice");
        assert_eq!(got, want_entries, "entries for {ev:?}");
        let mut dests = Vec::new();
        index.matches(ev, &mut scratch, &mut dests);
        let got: BTreeSet<u32> = dests.iter().copied().collect();
        assert_eq!(got.len(), dests.len(), "a destination was returned twice");
        assert_eq!(got, want_dests, "destinations for {ev:?}");
    }
}

/// Inserts `n` entries of `k` intervals each over `attrs` attributes (one conjunction, or two
/// for one entry in `multi` of 100), to `dests` destinations.
fn fill(
    index: &mut Index<u32>,
    model: &mut Model,
    rng: &mut Rng,
    n: usize,
    (attrs, k, extras, multi, dests): (u64, usize, u64, u64, u64),
) {
    for _ in 0..n {
        let mut conjs = vec![conjunction(rng, attrs, k, extras)];
        if rng.below(100) < multi {
            conjs.push(conjunction(rng, attrs, k, extras));
        }
        let r = Routable::new(conjs, true);
        let d = u32::try_from(rng.below(dests)).unwrap();
        let id = index.insert_routable(&r, d);
        assert!(
            model.live.insert(id, (r, d)).is_none(),
            "id reused while live"
        );
    }
}

/// Removes about `fraction` of 100 of the live entries, at random.
fn thin(index: &mut Index<u32>, model: &mut Model, rng: &mut Rng, fraction: u64) {
    let ids: Vec<EntryId> = model.live.keys().copied().collect();
    for id in ids {
        if rng.below(100) < fraction {
            model.live.remove(&id);
            assert!(index.remove(id));
        }
    }
}

#[test]
fn uniform_clusters_agree_through_churn() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut index = Index::new();
    let mut model = Model::default();
    // Every conjunction has 3 tests (no extras): engine clusters index tests by position.
    let shape = (6, 3, 0, 0, 5000);
    fill(&mut index, &mut model, &mut rng, 4000, shape);
    assert!(index.stats().engine_clusters > 0, "{:?}", index.stats());
    for _ in 0..30 {
        model.check(&index, &event(&mut rng, 6));
    }
    // Removals (tombstones, then compactions), re-insertions (pending batches, growth past
    // the reserved rows), repeatedly.
    for round in 0..4 {
        thin(&mut index, &mut model, &mut rng, 45);
        for _ in 0..10 {
            model.check(&index, &event(&mut rng, 6));
        }
        fill(&mut index, &mut model, &mut rng, 2500 + 37 * round, shape);
        for _ in 0..10 {
            model.check(&index, &event(&mut rng, 6));
        }
    }
}

#[test]
fn mixed_clusters_agree_through_churn() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut index = Index::new();
    let mut model = Model::default();
    // Varying numbers of tests, extras, entries with two conjunctions, few destinations (so
    // `matches` stops early).
    for (k, round) in [(2, 0), (3, 1), (1, 2), (4, 3)] {
        fill(&mut index, &mut model, &mut rng, 3000, (7, k, 15, 20, 40));
        assert!(index.stats().engine_clusters > 0, "{:?}", index.stats());
        for _ in 0..15 {
            model.check(&index, &event(&mut rng, 7));
        }
        thin(&mut index, &mut model, &mut rng, 30 + 10 * round);
        for _ in 0..15 {
            model.check(&index, &event(&mut rng, 7));
        }
    }
}

#[test]
fn attributes_joining_an_engine_agree() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let mut index = Index::new();
    let mut model = Model::default();
    // Conjunctions with `q0 = 5` all go to that equality's cluster, whose engine's universe is
    // q0..q5 at first; then conjunctions on q6..q8 join it, each adding an attribute to the
    // universe between rebuilds (some in the middle of a batch).
    let insert = |index: &mut Index<u32>, model: &mut Model, rng: &mut Rng, attrs: (u64, u64)| {
        let mut conj = conjunction(rng, attrs.1 - attrs.0, 2, 10)
            .constraints()
            .to_vec();
        for c in &mut conj {
            let a: u64 = c.attr.as_str()[1..].parse().unwrap();
            c.attr = name(a + attrs.0);
        }
        conj.push(Constraint::new(name(0), Predicate::Int(IntOp::Eq, 5)));
        let r = Routable::new(vec![Conjunction::new(conj)], true);
        let d = u32::try_from(rng.below(3000)).unwrap();
        let id = index.insert_routable(&r, d);
        model.live.insert(id, (r, d));
    };
    for _ in 0..3000 {
        insert(&mut index, &mut model, &mut rng, (1, 6));
    }
    assert_eq!(index.stats().engine_clusters, 1, "{:?}", index.stats());
    for k in 0..200 {
        let attrs = if k % 3 == 0 { (1, 6) } else { (6, 9) };
        insert(&mut index, &mut model, &mut rng, attrs);
    }
    for _ in 0..40 {
        let mut ev = event(&mut rng, 9);
        ev.set(name(0), Value::Int(5));
        model.check(&index, &ev);
    }
}
