//! The matching index agrees with naive evaluation.
//!
//! Random sequences of inserts, removes and events (duplicate destinations, casts between
//! integers, numeric strings and booleans, absent attributes, every predicate kind) are applied
//! to an [`Index`] and to a plain list of live entries; on every event, the entries and the
//! destinations the index returns must be exactly those the list's naive evaluation finds.
//!
//! Filters come both as routable forms built directly (exercising the index's core whatever the
//! normaliser produces) and as CESQL text compiled with `Filter::new` (the real path: exact
//! routable forms, and inexact ones whose residual expression must be evaluated).
//!
//! Two regimes: small random mixes (every code path of the exact checks and access keys), and
//! larger sets of interval conjunctions that push clusters past the size where the cell-bitmap
//! engine takes over, with removals that shrink them back.

// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};

use palio_filter::{
    AttrName, Conjunction, Constraint, EntryId, Event, Filter, Index, IntOp, Predicate, Routable,
    StrOp, Value,
};
use proptest::prelude::*;

const ATTRS: [&str; 5] = ["a", "b", "c", "d", "e"];
const STRINGS: [&str; 10] = ["x", "y", "5", "05", "+5", "-1", "true", "FALSE", "ab", ""];

fn attr() -> impl Strategy<Value = AttrName> {
    prop::sample::select(&ATTRS[..]).prop_map(|a| AttrName::new(a).unwrap())
}

fn int_const() -> impl Strategy<Value = i32> {
    prop_oneof![8 => -3..10i32, 1 => Just(i32::MIN), 1 => Just(i32::MAX)]
}

fn int_op() -> impl Strategy<Value = IntOp> {
    prop::sample::select(vec![
        IntOp::Eq,
        IntOp::Ne,
        IntOp::Lt,
        IntOp::Le,
        IntOp::Gt,
        IntOp::Ge,
    ])
}

fn str_op() -> impl Strategy<Value = StrOp> {
    prop::sample::select(vec![
        StrOp::Eq,
        StrOp::Ne,
        StrOp::Prefix,
        StrOp::Suffix,
        StrOp::Contains,
    ])
}

fn predicate() -> impl Strategy<Value = Predicate> {
    prop_oneof![
        1 => Just(Predicate::Exists),
        5 => (int_op(), int_const()).prop_map(|(op, c)| Predicate::Int(op, c)),
        3 => (str_op(), prop::sample::select(&STRINGS[..]))
            .prop_map(|(op, s)| Predicate::Str(op, s.to_owned())),
        1 => any::<bool>().prop_map(Predicate::Bool),
    ]
}

fn routable() -> impl Strategy<Value = Routable> {
    let conj = prop::collection::vec((attr(), predicate()), 0..4).prop_map(|cs| {
        Conjunction::new(cs.into_iter().map(|(a, p)| Constraint::new(a, p)).collect())
    });
    (prop::collection::vec(conj, 0..3), any::<bool>())
        .prop_map(|(cs, exact)| Routable::new(cs, exact))
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => (-3..10i32).prop_map(Value::Int),
        3 => prop::sample::select(&STRINGS[..]).prop_map(Value::from),
        1 => any::<bool>().prop_map(Value::Bool),
    ]
}

fn event() -> impl Strategy<Value = Event> {
    prop::collection::vec((attr(), value()), 0..5).prop_map(|kv| kv.into_iter().collect())
}

#[derive(Debug, Clone)]
enum Op {
    Insert(Routable, u8),
    Remove(usize),
    Match(Event),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (routable(), 0..4u8).prop_map(|(r, d)| Op::Insert(r, d)),
        1 => any::<usize>().prop_map(Op::Remove),
        3 => event().prop_map(Op::Match),
    ]
}

/// The naive model: live entries in insertion order.
#[derive(Default)]
struct Model {
    live: BTreeMap<EntryId, (Routable, u8)>,
}

impl Model {
    fn entries(&self, ev: &Event) -> BTreeSet<EntryId> {
        self.live
            .iter()
            .filter(|(_, (r, _))| r.matches(ev))
            .map(|(id, _)| *id)
            .collect()
    }

    fn dests(&self, ev: &Event) -> BTreeSet<u8> {
        self.live
            .values()
            .filter(|(r, _)| r.matches(ev))
            .map(|(_, d)| *d)
            .collect()
    }
}

/// Checks both outputs of the index against the model on `ev`.
fn check(index: &Index<u8>, model: &Model, ev: &Event) -> Result<(), TestCaseError> {
    let mut scratch = index.scratch();
    let mut entries = Vec::new();
    index.matching_entries(ev, &mut scratch, &mut entries);
    let unique: BTreeSet<EntryId> = entries.iter().copied().collect();
    prop_assert_eq!(unique.len(), entries.len(), "an entry was returned twice");
    prop_assert_eq!(unique, model.entries(ev), "entries for {:?}", ev);
    let mut dests = Vec::new();
    index.matches(ev, &mut scratch, &mut dests);
    let unique: BTreeSet<u8> = dests.iter().copied().collect();
    prop_assert_eq!(
        unique.len(),
        dests.len(),
        "a destination was returned twice"
    );
    prop_assert_eq!(unique, model.dests(ev), "destinations for {:?}", ev);
    Ok(())
}

fn apply(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut index = Index::new();
    let mut model = Model::default();
    let mut removed = Vec::new();
    for op in ops {
        match op {
            Op::Insert(r, d) => {
                let id = index.insert_routable(&r, d);
                prop_assert!(
                    model.live.insert(id, (r, d)).is_none(),
                    "id reused while live"
                );
            }
            Op::Remove(k) => {
                if model.live.is_empty() {
                    continue;
                }
                let id = *model.live.keys().nth(k % model.live.len()).unwrap();
                model.live.remove(&id);
                prop_assert!(index.remove(id));
                prop_assert!(!index.remove(id), "removed twice");
                removed.push(id);
            }
            Op::Match(ev) => check(&index, &model, &ev)?,
        }
        prop_assert_eq!(index.len(), model.live.len());
    }
    for id in removed {
        prop_assert!(!index.contains(id), "a stale id names a live entry");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn small_mixes_agree(ops in prop::collection::vec(op(), 1..60)) {
        apply(ops)?;
    }
}

/// A conjunction of intervals on distinct attributes of a 6-attribute universe, sometimes
/// with an extra string or boolean test, sometimes with an equality.
fn interval_routable() -> impl Strategy<Value = Routable> {
    let names = ["p0", "p1", "p2", "p3", "p4", "p5"];
    let interval = (0..6usize, 0..100i32, 0..60i32, 0..24u8);
    prop::collection::vec(interval, 1..4).prop_map(move |ivs| {
        let mut cs = Vec::new();
        for (a, lo, width, kind) in ivs {
            let name = AttrName::new(names[a]).unwrap();
            match kind {
                0 => cs.push(Constraint::new(name, Predicate::Int(IntOp::Eq, lo))),
                1 => cs.push(Constraint::new(name, Predicate::Str(StrOp::Ne, "7".into()))),
                2 => cs.push(Constraint::new(name, Predicate::Exists)),
                3 => cs.push(Constraint::new(name, Predicate::Int(IntOp::Ne, lo))),
                _ => {
                    cs.push(Constraint::new(name.clone(), Predicate::Int(IntOp::Ge, lo)));
                    cs.push(Constraint::new(name, Predicate::Int(IntOp::Le, lo + width)));
                }
            }
        }
        Routable::new(vec![Conjunction::new(cs)], true)
    })
}

fn interval_event() -> impl Strategy<Value = Event> {
    let names = ["p0", "p1", "p2", "p3", "p4", "p5"];
    let v = prop_oneof![
        8 => (-5..165i32).prop_map(Value::Int),
        1 => (0..100i32).prop_map(|i| Value::from(format!("{i:03}"))),
        1 => Just(Value::from("abc")),
    ];
    prop::collection::vec((0..6usize, v), 2..7).prop_map(move |kv| {
        kv.into_iter()
            .map(|(a, v)| (AttrName::new(names[a]).unwrap(), v))
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn large_interval_sets_agree(
        entries in prop::collection::vec((interval_routable(), 0..50u8), 2600..3200),
        removals in prop::collection::vec(any::<usize>(), 0..2500),
        events in prop::collection::vec(interval_event(), 20..40),
    ) {
        let mut index = Index::new();
        let mut model = Model::default();
        for (r, d) in entries {
            let id = index.insert_routable(&r, d);
            model.live.insert(id, (r, d));
        }
        prop_assert!(index.stats().engine_clusters > 0, "{:?}", index.stats());
        let half = events.len() / 2;
        for ev in &events[..half] {
            check(&index, &model, ev)?;
        }
        for k in removals {
            if model.live.is_empty() {
                break;
            }
            let id = *model.live.keys().nth(k % model.live.len()).unwrap();
            model.live.remove(&id);
            prop_assert!(index.remove(id));
        }
        for ev in &events[half..] {
            check(&index, &model, ev)?;
        }
    }
}

#[test]
fn removing_everything_frees_the_structures() {
    let mut index = Index::new();
    let empty = index.memory_bytes();
    let name = AttrName::new("x").unwrap();
    let mut ids = Vec::new();
    for k in 0..2000 {
        let c = Constraint::new(name.clone(), Predicate::Int(IntOp::Ge, k));
        let s = Constraint::new(
            AttrName::new("s").unwrap(),
            Predicate::Str(StrOp::Eq, format!("v{k}")),
        );
        let r = Routable::new(vec![Conjunction::new(vec![c, s])], true);
        ids.push(index.insert_routable(&r, k % 7));
    }
    let full = index.memory_bytes();
    assert!(full > empty + 2000 * 16, "{full} bytes for 2000 entries");
    assert_eq!(index.destinations(), 7);
    for id in ids {
        assert!(index.remove(id));
    }
    assert!(index.is_empty());
    assert_eq!(index.destinations(), 0);
    assert_eq!(index.stats().clusters, 0);
    let ev = Event::new().with("x", 5).unwrap().with("s", "v3").unwrap();
    assert!(index.matches_vec(&ev).is_empty());
}

/// CESQL text over the same attributes and values: comparisons with casts, LIKE, IN, EXISTS,
/// arithmetic, and boolean connectives (so some routable forms are inexact).
fn filter_text() -> impl Strategy<Value = String> {
    let a = prop::sample::select(&ATTRS[..]);
    let s = prop::sample::select(&STRINGS[..]);
    let op = prop::sample::select(vec!["=", "!=", "<>", "<", "<=", ">", ">="]);
    let leaf = prop_oneof![
        4 => (a.clone(), op, -3..10i32).prop_map(|(a, op, c)| format!("{a} {op} {c}")),
        2 => (a.clone(), prop::sample::select(vec!["=", "!="]), s.clone())
            .prop_map(|(a, op, s)| format!("{a} {op} '{s}'")),
        1 => (a.clone(), prop::sample::select(vec!["a%", "%b", "%5%", "_", "tr%"]))
            .prop_map(|(a, p)| format!("{a} LIKE '{p}'")),
        1 => a.clone().prop_map(|a| format!("EXISTS {a}")),
        1 => (a.clone(), any::<bool>()).prop_map(|(a, b)| format!("{a} = {}", if b { "TRUE" } else { "FALSE" })),
        1 => a.clone().prop_map(|a| a.to_owned()),
        1 => (a.clone(), -3..10i32, s).prop_map(|(a, c, s)| format!("{a} IN ({c}, '{s}', 7)")),
        1 => (a, -3..10i32).prop_map(|(a, c)| format!("{a} + 1 > {c}")),
    ];
    leaf.prop_recursive(3, 12, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(x, y)| format!("({x} AND {y})")),
            (inner.clone(), inner.clone()).prop_map(|(x, y)| format!("({x} OR {y})")),
            (inner.clone(), inner.clone()).prop_map(|(x, y)| format!("({x} XOR {y})")),
            inner.prop_map(|x| format!("NOT ({x})")),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn compiled_filters_agree_with_filter_matches(
        filters in prop::collection::vec((filter_text(), 0..4u8), 1..40),
        removals in prop::collection::vec(any::<usize>(), 0..10),
        events in prop::collection::vec(event(), 1..20),
    ) {
        let mut index = Index::new();
        let mut live: BTreeMap<EntryId, (Filter, u8)> = BTreeMap::new();
        for (text, d) in filters {
            let filter = Filter::new(&text).unwrap();
            live.insert(index.insert(&filter, d), (filter, d));
        }
        for k in removals {
            let id = *live.keys().nth(k % live.len()).unwrap();
            live.remove(&id);
            prop_assert!(index.remove(id));
            if live.is_empty() {
                break;
            }
        }
        let mut scratch = index.scratch();
        for ev in &events {
            let want: BTreeSet<EntryId> = live
                .iter()
                .filter(|(_, (f, _))| f.matches(ev))
                .map(|(id, _)| *id)
                .collect();
            let mut got = Vec::new();
            index.matching_entries(ev, &mut scratch, &mut got);
            let got_set: BTreeSet<EntryId> = got.iter().copied().collect();
            prop_assert_eq!(got_set.len(), got.len());
            prop_assert_eq!(&got_set, &want, "event {:?}", ev);
            let want_dests: BTreeSet<u8> = want.iter().map(|id| live[id].1).collect();
            let mut dests = Vec::new();
            index.matches(ev, &mut scratch, &mut dests);
            let dest_set: BTreeSet<u8> = dests.iter().copied().collect();
            prop_assert_eq!(dest_set.len(), dests.len());
            prop_assert_eq!(dest_set, want_dests);
        }
    }
}
