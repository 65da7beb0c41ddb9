//! Soundness of the routable form and of the relations, checked against direct evaluation.
//!
//! Expressions and events are generated from a small vocabulary (attributes `a`, `b`, `c`;
//! integers around the constants used; numeric strings such as `"05"` and `"+5"`; words and
//! their prefixes; `"true"` in two letter cases) so that casts, missing attributes and
//! short-circuits all come up often. The reference is `Expr::matches`, the evaluator itself.
//!
//! Properties:
//! 1. `expr matches ⇒ routable matches`, with equality when the form says it is exact.
//! 2. `covers(a, b) ⇒ every event matching b matches a`, for filters and for routable forms
//!    (generated so that covering holds in a good share of the cases, which is asserted).
//! 3. `!intersects(a, b) ⇒ no event matches both`, likewise.
//!
//! Completeness: on integer constraints of one attribute (disjunctions included), `covers` and
//! `intersects` must agree with brute force; the unit tests at the end check more
//! single-attribute examples of every type, where relations that hold must be found.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRunner};

use palio_filter::{
    AttrName, Conjunction, Constraint, Event, Filter, IntOp, Predicate, Routable, StrOp, Value,
};

/// Cases per property.
const CASES: u32 = 3000;
/// Events each case is checked on.
const EVENTS: usize = 40;

const ATTRS: [&str; 3] = ["a", "b", "c"];
const WORDS: [&str; 18] = [
    "5", "05", "+5", "-2", "0", "1", "12", "ab", "abc", "a", "b", "ba", "", "true", "TRUE",
    "false", "xyz", "bab",
];
const PATTERNS: [&str; 12] = [
    "a%", "%b", "%a%", "ab", "%", "a_", "_b%", "a%b", "", "b%", "%ab%", "1%",
];
const CMP: [&str; 7] = ["=", "!=", "<>", "<", "<=", ">", ">="];

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        (-3i32..12).prop_map(Value::Int),
        prop::sample::select(&WORDS[..]).prop_map(Value::from),
        any::<bool>().prop_map(Value::Bool),
    ]
}

fn event() -> impl Strategy<Value = Event> {
    prop::collection::vec(prop::option::weighted(0.85, value()), ATTRS.len()).prop_map(|values| {
        let mut ev = Event::new();
        for (name, v) in ATTRS.iter().zip(values) {
            if let Some(v) = v {
                ev.set(AttrName::new(*name).expect("valid name"), v);
            }
        }
        ev
    })
}

fn events() -> impl Strategy<Value = Vec<Event>> {
    prop::collection::vec(event(), EVENTS)
}

fn attr() -> impl Strategy<Value = &'static str> {
    prop::sample::select(&ATTRS[..])
}

/// A literal as CESQL source.
fn literal() -> impl Strategy<Value = String> {
    prop_oneof![
        (-3i32..12).prop_map(|i| i.to_string()),
        prop::sample::select(&WORDS[..]).prop_map(|w| format!("'{w}'")),
        prop::sample::select(&["TRUE", "FALSE"][..]).prop_map(str::to_owned),
    ]
}

fn not(negated: bool) -> &'static str {
    if negated { "NOT " } else { "" }
}

/// An atom on attribute `a`, `b` or `c`.
fn atom() -> impl Strategy<Value = String> {
    let cmp = prop::sample::select(&CMP[..]);
    prop_oneof![
        4 => (attr(), cmp.clone(), literal()).prop_map(|(a, op, l)| format!("{a} {op} {l}")),
        2 => (literal(), cmp.clone(), attr()).prop_map(|(l, op, a)| format!("{l} {op} {a}")),
        2 => (attr(), prop::sample::select(&PATTERNS[..]), any::<bool>())
            .prop_map(|(a, p, n)| format!("{a} {}LIKE '{p}'", not(n))),
        1 => (attr(), prop::collection::vec(literal(), 1..4), any::<bool>())
            .prop_map(|(a, ls, n)| format!("{a} {}IN ({})", not(n), ls.join(", "))),
        1 => attr().prop_map(|a| format!("EXISTS {a}")),
        1 => attr().prop_map(str::to_owned),
        1 => (attr(), prop::sample::select(&["+", "-", "*", "%"][..]), 1i32..3, cmp.clone(), -3i32..12)
            .prop_map(|(a, op, k, c, v)| format!("({a} {op} {k}) {c} {v}")),
        1 => (attr(), cmp, attr()).prop_map(|(a, op, b)| format!("{a} {op} {b}")),
        1 => prop::sample::select(&["TRUE", "FALSE", "1 = 1", "LENGTH('ab') = 2"][..])
            .prop_map(str::to_owned),
    ]
}

/// An expression of atoms joined by NOT, AND, OR, XOR and comparisons with booleans.
fn expr() -> impl Strategy<Value = String> {
    atom().prop_recursive(3, 10, 2, |inner| {
        prop_oneof![
            inner.clone().prop_map(|e| format!("NOT ({e})")),
            (
                inner.clone(),
                prop::sample::select(&["AND", "OR", "XOR"][..]),
                inner.clone()
            )
                .prop_map(|(l, op, r)| format!("({l}) {op} ({r})")),
            (
                inner,
                prop::sample::select(&["= TRUE", "= FALSE", "!= TRUE"][..])
            )
                .prop_map(|(e, tail)| format!("({e}) {tail}")),
        ]
    })
}

/// An expression on attribute `a` alone, from a small space so that relations come up.
fn single_attr_expr() -> impl Strategy<Value = String> {
    let atom = prop_oneof![
        (prop::sample::select(&CMP[..]), 0i32..8).prop_map(|(op, v)| format!("a {op} {v}")),
        (
            prop::sample::select(&["=", "!="][..]),
            prop::sample::select(&WORDS[7..13])
        )
            .prop_map(|(op, w)| format!("a {op} '{w}'")),
        prop::sample::select(&PATTERNS[..]).prop_map(|p| format!("a LIKE '{p}'")),
    ];
    atom.prop_recursive(2, 4, 2, |inner| {
        (
            inner.clone(),
            prop::sample::select(&["AND", "OR"][..]),
            inner,
        )
            .prop_map(|(l, op, r)| format!("({l}) {op} ({r})"))
    })
}

/// Pairs `(a, b)` where `a` covers `b` often: `b` narrows `a`, `a` widens `b`, or both come
/// from the small single-attribute space.
fn related_pair() -> impl Strategy<Value = (String, String)> {
    prop_oneof![
        (expr(), expr()).prop_map(|(a, extra)| (a.clone(), format!("({a}) AND ({extra})"))),
        (expr(), expr()).prop_map(|(b, extra)| (format!("({b}) OR ({extra})"), b)),
        (single_attr_expr(), single_attr_expr()),
        (single_attr_expr(), single_attr_expr())
            .prop_map(|(a, extra)| (a.clone(), format!("({a}) AND ({extra})"))),
        (expr(), expr()),
    ]
}

fn filter(src: &str) -> Result<Filter, TestCaseError> {
    Filter::new(src).map_err(|e| TestCaseError::fail(format!("{src}: {e}")))
}

fn runner() -> TestRunner {
    TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        // ChaCha dominates the run time of an unoptimised build; XorShift is plenty here.
        rng_algorithm: RngAlgorithm::XorShift,
        ..Config::default()
    })
}

#[test]
fn routable_form_is_sound_and_exact_when_it_says_so() {
    let exact = AtomicUsize::new(0);
    let checked = AtomicUsize::new(0);
    runner()
        .run(&(expr(), events()), |(src, events)| {
            let f = filter(&src)?;
            let r = f.routable();
            exact.fetch_add(usize::from(r.is_exact()), Relaxed);
            for ev in &events {
                let reference = f.expr().matches(ev);
                let routed = r.matches(ev);
                checked.fetch_add(1, Relaxed);
                prop_assert!(!reference || routed, "{src}\nform {r}\nmissed {ev:?}");
                if r.is_exact() {
                    prop_assert_eq!(reference, routed, "{}\nexact form {}\n{:?}", src, r, ev);
                    prop_assert_eq!(f.matches(ev), reference);
                }
            }
            Ok(())
        })
        .expect("the routable form is sound");
    let exact = exact.into_inner();
    println!(
        "{CASES} expressions, {} evaluations, {exact} exact forms",
        checked.into_inner()
    );
    // Not vacuous: exactness is claimed often, and so checked often.
    assert!(exact * 4 > CASES as usize, "only {exact} exact forms");
}

#[test]
fn covers_is_sound() {
    let covered = AtomicUsize::new(0);
    let covered_routable = AtomicUsize::new(0);
    runner()
        .run(&(related_pair(), events()), |((sa, sb), events)| {
            let (a, b) = (filter(&sa)?, filter(&sb)?);
            if a.covers(&b) {
                covered.fetch_add(1, Relaxed);
                for ev in &events {
                    prop_assert!(
                        !b.expr().matches(ev) || a.expr().matches(ev),
                        "{sa}\ncovers {sb}\nbut not {ev:?}"
                    );
                }
            }
            let (ra, rb) = (a.routable(), b.routable());
            if ra.covers(rb) {
                covered_routable.fetch_add(1, Relaxed);
                for ev in &events {
                    prop_assert!(
                        !rb.matches(ev) || ra.matches(ev),
                        "{ra}\ncovers {rb}\nbut not {ev:?}"
                    );
                }
            }
            Ok(())
        })
        .expect("covers is sound");
    let (covered, covered_routable) = (covered.into_inner(), covered_routable.into_inner());
    println!("{CASES} pairs: filter covers in {covered}, routable covers in {covered_routable}");
    assert!(
        covered * 3 > CASES as usize,
        "covers held in only {covered} cases"
    );
    assert!(covered_routable * 3 > CASES as usize);
}

#[test]
fn intersects_is_sound() {
    let disjoint = AtomicUsize::new(0);
    runner()
        .run(&(related_pair(), events()), |((sa, sb), events)| {
            let (a, b) = (filter(&sa)?, filter(&sb)?);
            // A conjunction added to `b` may contradict `a`; try both shapes.
            for (x, y) in [(&a, &b), (&b, &a)] {
                if !x.intersects(y) {
                    disjoint.fetch_add(1, Relaxed);
                    for ev in &events {
                        prop_assert!(
                            !(x.expr().matches(ev) && y.expr().matches(ev)),
                            "{x} and {y} both match {ev:?}"
                        );
                        prop_assert!(!(x.routable().matches(ev) && y.routable().matches(ev)));
                    }
                }
            }
            Ok(())
        })
        .expect("intersects is sound");
    let disjoint = disjoint.into_inner();
    println!("{CASES} pairs, both orders: disjoint in {disjoint}");
    assert!(
        disjoint * 20 > CASES as usize,
        "disjointness shown in only {disjoint} cases"
    );
}

/// Random routable forms over mixed predicates, related by construction.
fn constraint() -> impl Strategy<Value = Constraint> {
    let int_op = prop::sample::select(vec![
        IntOp::Eq,
        IntOp::Ne,
        IntOp::Lt,
        IntOp::Le,
        IntOp::Gt,
        IntOp::Ge,
    ]);
    let str_op = prop::sample::select(vec![
        StrOp::Eq,
        StrOp::Ne,
        StrOp::Prefix,
        StrOp::Suffix,
        StrOp::Contains,
    ]);
    let pred = prop_oneof![
        1 => Just(Predicate::Exists),
        4 => (int_op, -2i32..10).prop_map(|(op, c)| Predicate::Int(op, c)),
        4 => (str_op, prop::sample::select(&WORDS[..])).prop_map(|(op, w)| Predicate::Str(op, w.to_owned())),
        1 => any::<bool>().prop_map(Predicate::Bool),
    ];
    (prop::sample::select(&ATTRS[..2]), pred)
        .prop_map(|(a, p)| Constraint::new(AttrName::new(a).expect("valid name"), p))
}

fn routable_pair() -> impl Strategy<Value = (Routable, Routable)> {
    let conj = || prop::collection::vec(constraint(), 1..3);
    let dnf = || prop::collection::vec(conj(), 1..3);
    (dnf(), conj(), prop::bool::ANY).prop_map(|(a, extra, narrow)| {
        let a_conjs: Vec<Conjunction> = a.iter().cloned().map(Conjunction::new).collect();
        // b: one of a's conjunctions narrowed by `extra`, or `extra` alone.
        let first = a.first().cloned().unwrap_or_default();
        let b = if narrow {
            Conjunction::new(first.into_iter().chain(extra).collect())
        } else {
            Conjunction::new(extra)
        };
        (Routable::new(a_conjs, true), Routable::new(vec![b], true))
    })
}

#[test]
fn relations_on_random_routable_forms_are_sound() {
    let covered = AtomicUsize::new(0);
    let disjoint = AtomicUsize::new(0);
    runner()
        .run(&(routable_pair(), events()), |((ra, rb), events)| {
            for (x, y) in [(&ra, &rb), (&rb, &ra)] {
                if x.covers(y) {
                    covered.fetch_add(1, Relaxed);
                    for ev in &events {
                        prop_assert!(!y.matches(ev) || x.matches(ev), "{x} covers {y}: {ev:?}");
                    }
                }
                if !x.intersects(y) {
                    disjoint.fetch_add(1, Relaxed);
                    for ev in &events {
                        prop_assert!(!(x.matches(ev) && y.matches(ev)), "{x} / {y}: {ev:?}");
                    }
                }
            }
            Ok(())
        })
        .expect("relations on routable forms are sound");
    let (covered, disjoint) = (covered.into_inner(), disjoint.into_inner());
    println!("{CASES} routable pairs, both orders: covers in {covered}, disjoint in {disjoint}");
    assert!(covered * 4 > CASES as usize && disjoint * 10 > CASES as usize);
}

/// A disjunction of conjunctions of integer constraints on `a` alone.
fn int_dnf(max_conjs: usize) -> impl Strategy<Value = Routable> {
    let op = prop::sample::select(vec![
        IntOp::Eq,
        IntOp::Ne,
        IntOp::Lt,
        IntOp::Le,
        IntOp::Gt,
        IntOp::Ge,
    ]);
    let constraint = (op, -3i32..10).prop_map(|(op, c)| {
        Constraint::new(
            AttrName::new("a").expect("valid name"),
            Predicate::Int(op, c),
        )
    });
    let conj = prop::collection::vec(constraint, 1..4).prop_map(Conjunction::new);
    prop::collection::vec(conj, 1..=max_conjs).prop_map(|c| Routable::new(c, true))
}

/// On integer constraints of one attribute, `covers` and `intersects` are exact: they agree
/// with brute force over every integer that matters (the constants are within -3..10, so
/// anything beyond -20..30 behaves like the ends, and strings or booleans cast like integers).
#[test]
fn relations_are_complete_on_integer_constraints() {
    let covered = AtomicUsize::new(0);
    runner()
        .run(&(int_dnf(3), int_dnf(2)), |(ra, rb)| {
            let events: Vec<Event> = (-20..30)
                .map(|i| Event::new().with("a", i).expect("valid name"))
                .collect();
            let brute_covers = events.iter().all(|e| !rb.matches(e) || ra.matches(e));
            let brute_meets = events.iter().any(|e| ra.matches(e) && rb.matches(e));
            covered.fetch_add(usize::from(brute_covers), Relaxed);
            prop_assert_eq!(ra.covers(&rb), brute_covers, "{} covers {}", ra, rb);
            prop_assert_eq!(ra.intersects(&rb), brute_meets, "{} meets {}", ra, rb);
            Ok(())
        })
        .expect("relations on integer constraints are exact");
    let covered = covered.into_inner();
    println!("{CASES} integer pairs: covering in {covered}");
    assert!(covered * 5 > CASES as usize);
}

fn covers(a: &str, b: &str) -> bool {
    let (fa, fb) = (Filter::new(a).expect(a), Filter::new(b).expect(b));
    fa.covers(&fb) && fa.routable().covers(fb.routable())
}

fn intersects(a: &str, b: &str) -> bool {
    let (fa, fb) = (Filter::new(a).expect(a), Filter::new(b).expect(b));
    fa.intersects(&fb) || fa.routable().intersects(fb.routable())
}

#[test]
fn covering_is_complete_on_single_attributes() {
    for (a, b) in [
        ("x > 0", "x > 5 AND x < 10"),
        ("x != 'a'", "x LIKE 'b%'"),
        ("x < 5 OR x >= 5", "x > 0"),
        ("x <> 5", "x > 5"),
        ("x >= 3 AND x <= 3", "x = 3"),
        ("x = 3", "x >= 3 AND x <= 3"),
        ("x LIKE '%abc%'", "x LIKE 'zabc%'"),
        ("x LIKE 'ab%'", "x = 'abc'"),
        ("x LIKE '%c'", "x LIKE 'ab%' AND x LIKE '%bc'"),
        ("x IN ('a', 'b')", "x = 'a'"),
        ("x = 'a' OR x = 'b' OR x = 'c'", "x IN ('c', 'a')"),
        ("x != 'a' OR x = 'a'", "x LIKE '%q%'"),
        ("x LIKE 'a%' OR x LIKE 'b%'", "x LIKE 'ab%'"),
        ("x = TRUE", "x = 'true'"),
        ("x > 3", "x = '05'"),
        ("x = 5", "x = '5'"),
        ("x != 'abc'", "x > 7"),
        (
            "type = 'alarm' AND level > 2",
            "type = 'alarm' AND level > 3 AND src LIKE 'x%'",
        ),
        ("(y = 1 AND x < 5) OR (y = 1 AND x >= 5)", "y = 1 AND x > 0"),
        ("EXISTS x", "x LIKE '%'"),
    ] {
        assert!(covers(a, b), "{a} should cover {b}");
    }
    for (a, b) in [
        ("x > 5", "x > 0"),
        ("x LIKE 'b%'", "x != 'a'"),
        ("x < 5", "x > 0"),
        // "05" casts to 5 but is not the string "5".
        ("x = '5'", "x = 5"),
        ("x > 0", "y > 0"),
    ] {
        assert!(!covers(a, b), "{a} should not cover {b}");
    }
}

#[test]
fn disjointness_is_complete_on_single_attributes() {
    for (a, b) in [
        ("x LIKE 'a%'", "x LIKE 'b%'"),
        ("x = 3", "x > 5"),
        ("x < 3 OR x > 8", "x >= 3 AND x <= 8"),
        ("x = 'abc'", "x > 5"),
        ("x LIKE 'a%'", "x > 5"),
        ("x = TRUE", "x = FALSE"),
        ("x LIKE '%ab'", "x LIKE '%cb'"),
        ("x = 'a'", "x != 'a'"),
        ("x LIKE 'a%' AND x LIKE 'b%'", "EXISTS x"),
    ] {
        assert!(!intersects(a, b), "{a} and {b} should be disjoint");
    }
    for (a, b) in [
        ("x LIKE 'a%'", "x LIKE '%b'"),
        ("x > 0", "x LIKE 't%'"),
        ("x = 5", "x = '05'"),
        ("x > 0", "y > 0"),
    ] {
        assert!(intersects(a, b), "{a} and {b} may share an event");
    }
}
