//! The shortcuts give exactly what the general rules give.
//!
//! `Budget::general` switches off the linear pass for `AND` chains ([`super::chain`]) and the
//! skipping of an `E` that only stands in for an exact `T` or `F`; both must leave the routable
//! form unchanged, exactness flag included. Expressions are generated as CESQL text from a
//! small vocabulary (so that bounds meet, cross and conflict) and parsed.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRunner};

use super::approx::{Budget, WORK_BUDGET};
use super::routable_within;
use crate::Limits;
use crate::routable::Routable;

const ATTRS: [&str; 6] = ["a", "b", "c", "d", "e", "f"];
const WORDS: [&str; 10] = ["5", "05", "+5", "ab", "abc", "a", "", "true", "TRUE", "xyz"];
const PATTERNS: [&str; 8] = ["a%", "%b", "%a%", "ab", "%", "a_", "a%b", "1%"];
const CMP: [&str; 6] = ["=", "!=", "<", "<=", ">", ">="];

fn attr() -> impl Strategy<Value = &'static str> {
    prop::sample::select(&ATTRS[..])
}

/// A literal as CESQL source; mostly small integers, so that bounds meet and cross.
fn literal() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => (-2i32..8).prop_map(|i| i.to_string()),
        1 => prop::sample::select(&WORDS[..]).prop_map(|w| format!("'{w}'")),
        1 => prop::sample::select(&["TRUE", "FALSE"][..]).prop_map(str::to_owned),
    ]
}

/// An atom: mostly `attribute op constant` (the chain pass's own case), and every other shape
/// the general rules handle.
fn atom() -> impl Strategy<Value = String> {
    let cmp = prop::sample::select(&CMP[..]);
    prop_oneof![
        8 => (attr(), cmp.clone(), literal()).prop_map(|(a, op, l)| format!("{a} {op} {l}")),
        2 => (literal(), cmp, attr()).prop_map(|(l, op, a)| format!("{l} {op} {a}")),
        1 => (attr(), prop::sample::select(&PATTERNS[..]))
            .prop_map(|(a, p)| format!("{a} LIKE '{p}'")),
        1 => (attr(), literal(), literal()).prop_map(|(a, x, y)| format!("{a} IN ({x}, {y})")),
        1 => attr().prop_map(|a| format!("EXISTS {a}")),
        1 => attr().prop_map(str::to_owned),
        1 => prop::sample::select(&["TRUE", "FALSE", "1 = 1", "'abc'", "a + 1 > 2"][..])
            .prop_map(str::to_owned),
    ]
}

/// An operand of a chain: an atom, or a small expression of atoms.
fn operand() -> impl Strategy<Value = String> {
    atom().prop_recursive(2, 6, 3, |inner| {
        prop_oneof![
            inner.clone().prop_map(|e| format!("NOT ({e})")),
            (inner.clone(), inner.clone()).prop_map(|(l, r)| format!("({l} OR {r})")),
            prop::collection::vec(inner, 2..4).prop_map(|v| format!("({})", v.join(" AND "))),
        ]
    })
}

/// Any expression: every logical operator, and boolean sub-expressions compared with
/// constants (which need `T`, `F` and `E` of their operands).
fn expr() -> impl Strategy<Value = String> {
    atom().prop_recursive(4, 16, 3, |inner| {
        prop_oneof![
            inner.clone().prop_map(|e| format!("NOT ({e})")),
            (
                prop::collection::vec(inner.clone(), 2..4),
                prop::sample::select(&["AND", "OR", "XOR"][..]),
            )
                .prop_map(|(v, op)| format!("({})", v.join(&format!(" {op} ")))),
            (
                inner,
                prop::sample::select(&["= TRUE", "= FALSE", "!= TRUE"][..])
            )
                .prop_map(|(e, tail)| format!("({e}) {tail}")),
        ]
    })
}

fn routable(src: &str, budget: &Budget) -> Routable {
    let root = crate::parser::parse(src, &Limits::default()).expect("generated sources parse");
    routable_within(&root, budget)
}

/// Checks `fast == general` on `cases` sources; returns how many forms were satisfiable and
/// how many inexact.
fn check(sources: impl Strategy<Value = String>, cases: u32) -> (usize, usize) {
    let config = Config {
        cases,
        failure_persistence: None,
        rng_algorithm: RngAlgorithm::XorShift,
        ..Config::default()
    };
    let (satisfiable, inexact) = (AtomicUsize::new(0), AtomicUsize::new(0));
    TestRunner::new(config)
        .run(&sources, |src| {
            let fast = routable(&src, &Budget::new(WORK_BUDGET));
            let general = routable(&src, &Budget::general(WORK_BUDGET));
            prop_assert_eq!(&fast, &general, "{}", src);
            if !fast.conjunctions().is_empty() {
                satisfiable.fetch_add(1, Relaxed);
            }
            if !fast.is_exact() {
                inexact.fetch_add(1, Relaxed);
            }
            Ok(())
        })
        .expect("the shortcuts agree with the general rules");
    (satisfiable.into_inner(), inexact.into_inner())
}

#[test]
fn chains_match_the_general_rules() {
    let chains = prop::collection::vec(operand(), 1..14).prop_map(|v| v.join(" AND "));
    let (satisfiable, inexact) = check(chains, 3000);
    // Both outcomes come up (about 800 of 3,000 satisfiable, 440 inexact): chains that narrow
    // to a conjunction and chains proven empty, exact forms and residuals.
    assert!(
        (300..2700).contains(&satisfiable),
        "{satisfiable} satisfiable"
    );
    assert!((100..2900).contains(&inexact), "{inexact} inexact");
}

#[test]
fn expressions_match_the_general_rules() {
    let (satisfiable, inexact) = check(expr(), 3000);
    // Disjunctions make most expressions satisfiable (about 2,670 of 3,000); some are not.
    assert!(
        (150..2950).contains(&satisfiable),
        "{satisfiable} satisfiable"
    );
    assert!((100..2900).contains(&inexact), "{inexact} inexact");
}
