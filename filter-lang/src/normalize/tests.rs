//! Unit tests of normalisation on hand-built syntax trees.

use crate::ast::{BinaryOp, LikePattern, LikePiece, Node, UnaryOp};
use crate::event::Event;
use crate::routable::{Conjunction, Constraint, IntOp, Predicate, Routable, StrOp};
use crate::value::{AttrName, Value};

use super::{MAX_DISJUNCTS, routable};

fn attr(name: &str) -> Node {
    Node::Attr(AttrName::new(name).expect("valid test name"))
}

fn lit(v: impl Into<Value>) -> Node {
    Node::Literal(v.into())
}

fn bin(op: BinaryOp, lhs: Node, rhs: Node) -> Node {
    Node::Binary {
        op,
        lhs: Box::new(lhs),
        rhs: Box::new(rhs),
    }
}

fn and(lhs: Node, rhs: Node) -> Node {
    bin(BinaryOp::And, lhs, rhs)
}

fn or(lhs: Node, rhs: Node) -> Node {
    bin(BinaryOp::Or, lhs, rhs)
}

fn not(arg: Node) -> Node {
    Node::Unary {
        op: UnaryOp::Not,
        arg: Box::new(arg),
    }
}

fn cmp(name: &str, op: BinaryOp, v: impl Into<Value>) -> Node {
    bin(op, attr(name), lit(v))
}

/// A LIKE pattern from its text, with `%` and `_` as wildcards (no escapes).
fn like(name: &str, pattern: &str, negated: bool) -> Node {
    let mut pieces: Vec<LikePiece> = Vec::new();
    for c in pattern.chars() {
        match (c, pieces.last_mut()) {
            ('%', Some(LikePiece::AnyString)) => {}
            ('%', _) => pieces.push(LikePiece::AnyString),
            ('_', _) => pieces.push(LikePiece::AnyChar),
            (c, Some(LikePiece::Literal(s))) => s.push(c),
            (c, _) => pieces.push(LikePiece::Literal(c.to_string())),
        }
    }
    Node::Like {
        arg: Box::new(attr(name)),
        pattern: Box::new(LikePattern::new(pattern.to_owned(), pieces)),
        negated,
    }
}

fn in_list(name: &str, values: Vec<Value>, negated: bool) -> Node {
    Node::In {
        arg: Box::new(attr(name)),
        set: values.into_iter().map(Node::Literal).collect(),
        negated,
    }
}

fn c(name: &str, pred: Predicate) -> Constraint {
    Constraint::new(AttrName::new(name).expect("valid test name"), pred)
}

fn int(name: &str, op: IntOp, v: i32) -> Constraint {
    c(name, Predicate::Int(op, v))
}

fn str(name: &str, op: StrOp, v: &str) -> Constraint {
    c(name, Predicate::Str(op, v.to_owned()))
}

fn form(conjs: Vec<Vec<Constraint>>, exact: bool) -> Routable {
    Routable::new(conjs.into_iter().map(Conjunction::new).collect(), exact)
}

#[test]
fn comparisons_with_the_attribute_on_the_left_are_exact() {
    use BinaryOp::*;
    assert_eq!(
        routable(&cmp("x", Eq, 5)),
        form(vec![vec![int("x", IntOp::Eq, 5)]], true)
    );
    assert_eq!(
        routable(&cmp("x", Ne, "a")),
        form(vec![vec![str("x", StrOp::Ne, "a")]], true)
    );
    assert_eq!(
        routable(&cmp("x", Eq, true)),
        form(vec![vec![c("x", Predicate::Bool(true))]], true)
    );
    // Ordering casts the string literal to Integer at compile time.
    assert_eq!(
        routable(&cmp("x", Lt, "+7")),
        form(vec![vec![int("x", IntOp::Le, 6)]], true)
    );
    assert_eq!(routable(&cmp("x", Gt, "abc")), Routable::match_none());
    assert_eq!(
        routable(&cmp("x", Ge, true)),
        form(vec![vec![int("x", IntOp::Ge, 1)]], true)
    );
}

#[test]
fn conjunctions_merge_per_attribute() {
    use BinaryOp::*;
    let r = routable(&and(cmp("x", Gt, 0), cmp("x", Gt, 5)));
    assert_eq!(r, form(vec![vec![int("x", IntOp::Ge, 6)]], true));
    let r = routable(&and(cmp("x", Ge, 3), cmp("x", Le, 3)));
    assert_eq!(r, form(vec![vec![int("x", IntOp::Eq, 3)]], true));
    assert_eq!(
        routable(&and(cmp("x", Eq, 1), cmp("x", Ne, 1))),
        Routable::match_none()
    );
    let r = routable(&and(like("x", "a%", false), like("x", "b%", false)));
    assert_eq!(r, Routable::match_none());
}

#[test]
fn negation_and_disjunction() {
    use BinaryOp::*;
    assert_eq!(
        routable(&not(cmp("x", Lt, 5))),
        form(vec![vec![int("x", IntOp::Ge, 5)]], true)
    );
    let r = routable(&or(cmp("x", Lt, 5), cmp("x", Gt, 5)));
    assert_eq!(r, form(vec![vec![int("x", IntOp::Ne, 5)]], true));
    // `x = 1 OR y = 2` fails with an error when `x` is absent: `y = 2` alone is not enough.
    let r = routable(&or(cmp("x", Eq, 1), cmp("y", Eq, 2)));
    let expected = form(
        vec![
            vec![int("x", IntOp::Eq, 1)],
            vec![int("x", IntOp::Ne, 1), int("y", IntOp::Eq, 2)],
        ],
        true,
    );
    assert_eq!(r, expected);
    // Short-circuit: `y` is not needed when `x` decides.
    let r = routable(&not(and(cmp("x", Eq, 1), cmp("y", Eq, 2))));
    let expected = form(
        vec![
            vec![int("x", IntOp::Ne, 1)],
            vec![int("x", IntOp::Eq, 1), int("y", IntOp::Ne, 2)],
        ],
        true,
    );
    assert_eq!(r, expected);
    let r = routable(&bin(Xor, cmp("x", Eq, 1), cmp("y", Eq, 2)));
    let expected = form(
        vec![
            vec![int("x", IntOp::Eq, 1), int("y", IntOp::Ne, 2)],
            vec![int("x", IntOp::Ne, 1), int("y", IntOp::Eq, 2)],
        ],
        true,
    );
    assert_eq!(r, expected);
}

#[test]
fn bare_attributes_cast_to_boolean() {
    let r = routable(&and(attr("x"), not(attr("y"))));
    let expected = form(
        vec![vec![
            c("x", Predicate::Bool(true)),
            c("y", Predicate::Bool(false)),
        ]],
        true,
    );
    assert_eq!(r, expected);
    // At the top the value must be a Boolean: the string "true" does not match.
    assert_eq!(
        routable(&attr("x")),
        form(vec![vec![c("x", Predicate::Bool(true))]], false)
    );
}

#[test]
fn literal_on_the_left_casts_to_the_attribute_type() {
    use BinaryOp::*;
    let r = routable(&bin(Eq, lit(5), attr("x")));
    assert_eq!(r, form(vec![vec![str("x", StrOp::Eq, "5")]], true));
    // The integer 5 and the string "05" match; `Int(=, 5)` holds both (and "5", hence inexact).
    let r = routable(&bin(Eq, lit("05"), attr("x")));
    assert_eq!(r, form(vec![vec![int("x", IntOp::Eq, 5)]], false));
    let r = routable(&bin(Lt, lit(5), attr("x")));
    assert_eq!(r, form(vec![vec![int("x", IntOp::Ge, 6)]], true));
}

#[test]
fn in_lists() {
    let r = routable(&in_list("x", vec!["a".into(), "b".into()], false));
    let expected = form(
        vec![
            vec![str("x", StrOp::Eq, "a")],
            vec![str("x", StrOp::Eq, "b")],
        ],
        true,
    );
    assert_eq!(r, expected);
    let r = routable(&in_list("x", vec![1.into(), 2.into()], false));
    assert!(r.is_exact());
    assert_eq!(r.conjunctions().len(), 2);
    assert!(!routable(&in_list("x", vec![1.into(), "a".into()], false)).is_exact());
    assert!(!routable(&in_list("x", vec!["TRUE".into()], false)).is_exact());
    let r = routable(&in_list("x", vec!["a".into()], true));
    assert_eq!(r, form(vec![vec![str("x", StrOp::Ne, "a")]], false));
}

#[test]
fn like_shapes() {
    let one = |p: &str, negated: bool| routable(&like("x", p, negated));
    assert_eq!(
        one("abc", false),
        form(vec![vec![str("x", StrOp::Eq, "abc")]], true)
    );
    assert_eq!(
        one("abc%", false),
        form(vec![vec![str("x", StrOp::Prefix, "abc")]], true)
    );
    assert_eq!(
        one("%abc", false),
        form(vec![vec![str("x", StrOp::Suffix, "abc")]], true)
    );
    assert_eq!(
        one("%abc%", false),
        form(vec![vec![str("x", StrOp::Contains, "abc")]], true)
    );
    assert_eq!(
        one("%", false),
        form(vec![vec![c("x", Predicate::Exists)]], true)
    );
    assert_eq!(one("%", true), Routable::match_none());
    assert_eq!(
        one("abc", true),
        form(vec![vec![str("x", StrOp::Ne, "abc")]], true)
    );
    assert_eq!(
        one("abc%", true),
        form(vec![vec![c("x", Predicate::Exists)]], false)
    );
    let expected = form(
        vec![vec![
            str("x", StrOp::Prefix, "a"),
            str("x", StrOp::Suffix, "c"),
            str("x", StrOp::Contains, "b"),
        ]],
        false,
    );
    assert_eq!(one("a%b_c", false), expected);
}

#[test]
fn exists_and_fallbacks() {
    let exists = Node::Exists(AttrName::new("x").expect("valid name"));
    assert_eq!(
        routable(&exists),
        form(vec![vec![c("x", Predicate::Exists)]], true)
    );
    assert_eq!(routable(&not(exists)), Routable::match_all(false));
    let sum = bin(BinaryOp::Add, attr("x"), lit(1));
    let r = routable(&bin(BinaryOp::Gt, sum.clone(), lit(5)));
    assert_eq!(r, form(vec![vec![int("x", IntOp::Ge, i32::MIN)]], false));
    // An Integer is never a Boolean, at the top or inside `AND`.
    assert_eq!(routable(&sum), Routable::match_none());
    assert_eq!(
        routable(&and(cmp("y", BinaryOp::Eq, 1), sum)),
        Routable::match_none()
    );
    let r = routable(&bin(BinaryOp::Eq, attr("x"), attr("y")));
    assert_eq!(
        r,
        form(
            vec![vec![c("x", Predicate::Exists), c("y", Predicate::Exists)]],
            false
        )
    );
}

#[test]
fn boolean_operands_split_on_their_outcomes() {
    use BinaryOp::*;
    let r = routable(&bin(Eq, cmp("x", Gt, 1), lit(false)));
    assert_eq!(r, form(vec![vec![int("x", IntOp::Le, 1)]], true));
    let r = routable(&bin(Eq, cmp("x", Gt, 1), cmp("y", Gt, 1)));
    let expected = form(
        vec![
            vec![int("x", IntOp::Ge, 2), int("y", IntOp::Ge, 2)],
            vec![int("x", IntOp::Le, 1), int("y", IntOp::Le, 1)],
        ],
        true,
    );
    assert_eq!(r, expected);
    let r = routable(&bin(Eq, attr("z"), cmp("x", Gt, 1)));
    let expected = form(
        vec![
            vec![c("z", Predicate::Bool(true)), int("x", IntOp::Ge, 2)],
            vec![c("z", Predicate::Bool(false)), int("x", IntOp::Le, 1)],
        ],
        true,
    );
    assert_eq!(r, expected);
}

#[test]
fn large_products_are_widened_soundly() {
    let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"];
    let second = |n: &str| format!("{n}2");
    let clause = |n: &str| or(cmp(n, BinaryOp::Eq, 1), cmp(&second(n), BinaryOp::Eq, 2));
    let expr = names[1..]
        .iter()
        .fold(clause(names[0]), |acc, n| and(acc, clause(n)));
    let r = routable(&expr);
    assert!(!r.is_exact());
    assert!(!r.conjunctions().is_empty() && r.conjunctions().len() <= MAX_DISJUNCTS);
    // Still sound: events matching through either side of every clause are kept.
    for mask in [0u32, 0x3ff, 0x155, 0x2aa, 0x00f] {
        let mut event = Event::new();
        for (i, n) in names.iter().enumerate() {
            let first = mask & (1 << i) != 0;
            event.set(AttrName::new(*n).expect("valid"), if first { 1 } else { 0 });
            event.set(AttrName::new(second(n)).expect("valid"), 2);
        }
        assert!(crate::eval::matches(&expr, &event));
        assert!(r.matches(&event), "{r} misses {event:?}");
    }
}

#[test]
fn ordinary_filters_stay_exact() {
    use BinaryOp::*;
    let clauses = [
        or(cmp("a", Eq, 1), cmp("b", Eq, 2)),
        or(cmp("c", Gt, 3), cmp("d", Lt, 4)),
        or(like("e", "x%", false), cmp("f", Eq, "y")),
        or(
            cmp("g", Eq, true),
            in_list("h", vec!["p".into(), "q".into()], false),
        ),
    ];
    let expr = clauses.into_iter().reduce(and).expect("four clauses");
    let r = routable(&expr);
    assert!(r.is_exact(), "{r}");
    assert_eq!(r.conjunctions().len(), 2 * 2 * 2 * 3);
}

/// A balanced tree of `leaves` joined by `op`.
fn balanced(leaves: &[Node], op: BinaryOp) -> Node {
    match leaves {
        [one] => one.clone(),
        _ => {
            let (l, r) = leaves.split_at(leaves.len() / 2);
            bin(op, balanced(l, op), balanced(r, op))
        }
    }
}

#[test]
fn pathological_expressions_are_bounded_and_sound() {
    let names = ["a", "b", "c", "d"];
    let leaves: Vec<Node> = (0..256)
        .map(|i| {
            cmp(
                names[i % 4],
                BinaryOp::Gt,
                i32::try_from(i % 13).expect("small"),
            )
        })
        .collect();
    for op in [BinaryOp::Xor, BinaryOp::Or, BinaryOp::And] {
        let expr = balanced(&leaves, op);
        let start = std::time::Instant::now();
        let r = routable(&expr);
        // Generous even for a debug build on a loaded machine; a release build takes a few ms.
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
        assert!(r.conjunctions().len() <= MAX_DISJUNCTS);
        for v in 0..(14 * 14 * 14 * 14) {
            let mut event = Event::new();
            for (k, n) in names.iter().enumerate() {
                let x = (v / 14usize.pow(u32::try_from(k).expect("small"))) % 14;
                event.set(
                    AttrName::new(*n).expect("valid"),
                    i32::try_from(x).expect("small"),
                );
            }
            if crate::eval::matches(&expr, &event) {
                assert!(r.matches(&event), "{op:?}: {r} misses {event:?}");
            }
        }
    }
}
