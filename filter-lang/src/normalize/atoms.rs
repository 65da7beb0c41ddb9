//! The approximations of atoms: comparisons, `LIKE`, `IN`, bare attributes, and the fallback
//! for everything else.
//!
//! An operand is classified as an attribute, as a set of *cases* (a constant is one case; a
//! boolean sub-expression is two, `true` on `T` and `false` on `F`), or as something else. An
//! attribute against cases becomes exact predicates per case; cases against cases are decided
//! by the same casts as the evaluator; anything else falls back to [`necessary`].
//!
//! The casts make operand order matter. `x = 5` casts `x` to Integer: the predicate `Int(=, 5)`,
//! which also holds for the string `"05"`. `5 = x` casts `5` to `x`'s runtime type, exactly as
//! `x IN (5)` does, so `"05"` does not match it while the integer 5 and the string `"5"` do.
//! See [`in_literals`] for when that reading is exact.

use std::collections::BTreeSet;

use crate::ast::{BinaryOp, LikePattern, LikePiece, Node, UnaryOp};
use crate::event::Event;
use crate::relations::ConjSet;
use crate::relations::attrset::AttrSet;
use crate::routable::{IntOp, Predicate, StrOp};
use crate::value::{AttrName, Type, Value};

use super::approx::{Approx, Budget};
use super::{Need, Tf, tf};

/// The value of a sub-tree that mentions no attribute: `None` if it mentions one, `Some(None)`
/// if evaluating it raises an error (on every event, since it reads none of them).
pub(super) fn constant(node: &Node) -> Option<Option<Value>> {
    match node {
        Node::Literal(v) => Some(Some(v.clone())),
        _ if mentions_attributes(node) => None,
        _ => {
            let evaluation = crate::eval::evaluate(node, &Event::new());
            Some(evaluation.errors.is_empty().then_some(evaluation.value))
        }
    }
}

/// Whether the sub-tree reads any attribute (including through `EXISTS`).
fn mentions_attributes(node: &Node) -> bool {
    match node {
        Node::Literal(_) => false,
        Node::Attr(_) | Node::Exists(_) => true,
        Node::Unary { arg, .. } | Node::Like { arg, .. } => mentions_attributes(arg),
        Node::Binary { lhs, rhs, .. } => mentions_attributes(lhs) || mentions_attributes(rhs),
        Node::In { arg, set, .. } => {
            mentions_attributes(arg) || set.iter().any(mentions_attributes)
        }
        Node::Call { args, .. } => args.iter().any(mentions_attributes),
    }
}

/// The one-conjunction approximation `attr pred`, exact.
fn pred(attr: &AttrName, p: &Predicate) -> Approx {
    Approx::conj(
        ConjSet::single(attr.clone(), AttrSet::from_predicate(p)),
        true,
    )
}

/// A bare attribute in a boolean context: its implicit cast to Boolean.
pub(super) fn bare_attr(name: &AttrName, budget: &Budget) -> Tf {
    Tf::new(
        pred(name, &Predicate::Bool(true)),
        pred(name, &Predicate::Bool(false)),
        budget,
    )
}

/// What every error-free evaluation of `node` needs, as an inexact approximation: every
/// attribute it necessarily evaluates is present, and those used as operands of arithmetic or
/// ordering cast to Integer.
pub(super) fn necessary(node: &Node) -> Approx {
    let mut needs = Vec::new();
    collect_necessary(node, &mut needs);
    let conj = needs
        .into_iter()
        .try_fold(ConjSet::all(), |acc, (name, set)| {
            acc.intersect(&ConjSet::single(name, set)?)
        });
    Approx::conj(conj, false).inexact()
}

/// Adds to `needs` what evaluating `node` without error requires.
fn collect_necessary(node: &Node, needs: &mut Vec<(AttrName, AttrSet)>) {
    let int_operand = |n: &Node, needs: &mut Vec<(AttrName, AttrSet)>| match n {
        Node::Attr(name) => needs.push((
            name.clone(),
            AttrSet::from_predicate(&Predicate::Int(IntOp::Ge, i32::MIN)),
        )),
        other => collect_necessary(other, needs),
    };
    match node {
        Node::Literal(_) | Node::Exists(_) => {}
        Node::Attr(name) => needs.push((name.clone(), AttrSet::any())),
        Node::Unary {
            op: UnaryOp::Neg,
            arg,
        } => int_operand(arg, needs),
        Node::Unary { arg, .. } | Node::Like { arg, .. } => collect_necessary(arg, needs),
        // The right operand is not evaluated when the left one decides.
        Node::Binary {
            op: BinaryOp::And | BinaryOp::Or,
            lhs,
            ..
        } => collect_necessary(lhs, needs),
        Node::Binary {
            op: BinaryOp::Xor | BinaryOp::Eq | BinaryOp::Ne,
            lhs,
            rhs,
        } => {
            collect_necessary(lhs, needs);
            collect_necessary(rhs, needs);
        }
        Node::Binary { lhs, rhs, .. } => {
            int_operand(lhs, needs);
            int_operand(rhs, needs);
        }
        // The search may stop at the first element that matches.
        Node::In { arg, set, .. } => {
            collect_necessary(arg, needs);
            if let Some(first) = set.first() {
                collect_necessary(first, needs);
            }
        }
        Node::Call { args, .. } => args.iter().for_each(|a| collect_necessary(a, needs)),
    }
}

/// The fallback for every outcome.
fn fallback(node: &Node) -> Tf {
    Tf::same(necessary(node))
}

/// How an operand is known.
enum Side<'a> {
    /// A bare attribute.
    Attr(&'a AttrName),
    /// The values the operand may take, each with the events on which it takes it. A constant
    /// is one case; a boolean sub-expression two; a constant that raises an error none.
    Cases(Vec<(Value, Approx)>),
    /// Anything else.
    Other,
}

/// Classifies an operand.
fn side<'a>(node: &'a Node, budget: &Budget) -> Side<'a> {
    if let Some(value) = constant(node) {
        return Side::Cases(value.map(|v| (v, Approx::all(true))).into_iter().collect());
    }
    match node {
        Node::Attr(name) => Side::Attr(name),
        node if is_boolean(node) => {
            let Tf { t, f, .. } = tf(node, Need::TF, budget);
            Side::Cases(vec![(Value::Bool(true), t), (Value::Bool(false), f)])
        }
        _ => Side::Other,
    }
}

/// Whether the node's value is always a Boolean.
fn is_boolean(node: &Node) -> bool {
    match node {
        Node::Exists(_) | Node::Like { .. } | Node::In { .. } => true,
        Node::Unary { op, .. } => *op == UnaryOp::Not,
        Node::Binary { op, .. } => !super::is_arithmetic(*op),
        Node::Literal(v) => v.ty() == Type::Bool,
        Node::Attr(_) | Node::Call { .. } => false,
    }
}

/// Folds per-case outcomes: each case contributes `outcome ∩ (events of the case)`.
fn fold_cases(
    cases: Vec<(Value, Approx)>,
    budget: &Budget,
    mut outcome: impl FnMut(&Value) -> Tf,
) -> Tf {
    let (t, f) = cases
        .into_iter()
        .fold((Approx::none(), Approx::none()), |(t, f), (v, events)| {
            let r = outcome(&v);
            (
                t.or(r.t.and(&events, budget), budget),
                f.or(r.f.and(&events, budget), budget),
            )
        });
    Tf::new(t, f, budget)
}

/// A known outcome on every event: `true` if `result` is `Some(true)`, `false` if
/// `Some(false)`, an error if `None`.
fn decided(result: Option<bool>) -> Tf {
    let when = |b: bool| {
        if result == Some(b) {
            Approx::all(true)
        } else {
            Approx::none()
        }
    };
    Tf {
        t: when(true),
        f: when(false),
        e: if result.is_some() {
            Approx::all(true)
        } else {
            Approx::none()
        },
    }
}

/// `lhs op rhs` for a comparison operator.
pub(super) fn comparison(node: &Node, op: BinaryOp, lhs: &Node, rhs: &Node, budget: &Budget) -> Tf {
    let Some(iop) = int_op(op) else {
        return fallback(node);
    };
    match (side(lhs, budget), side(rhs, budget)) {
        // Both operands are evaluated: one that always fails fails the comparison.
        (Side::Cases(c), _) | (_, Side::Cases(c)) if c.is_empty() => Tf::never(),
        (Side::Attr(x), Side::Cases(cases)) => {
            fold_cases(cases, budget, |v| attr_op_value(x, iop, v, budget))
        }
        (Side::Cases(cases), Side::Attr(x)) => {
            fold_cases(cases, budget, |v| value_op_attr(v, iop, x, budget))
        }
        (Side::Cases(left), Side::Cases(right)) => fold_cases(left, budget, |l| {
            fold_cases(right.clone(), budget, |r| {
                decided(compare_values(iop, l, r))
            })
        }),
        _ => fallback(node),
    }
}

/// The comparison operator as an [`IntOp`] (`None` for non-comparisons).
fn int_op(op: BinaryOp) -> Option<IntOp> {
    Some(match op {
        BinaryOp::Eq => IntOp::Eq,
        BinaryOp::Ne => IntOp::Ne,
        BinaryOp::Lt => IntOp::Lt,
        BinaryOp::Le => IntOp::Le,
        BinaryOp::Gt => IntOp::Gt,
        BinaryOp::Ge => IntOp::Ge,
        _ => return None,
    })
}

/// `not (a op b)` as `a op' b`.
fn negate(op: IntOp) -> IntOp {
    match op {
        IntOp::Eq => IntOp::Ne,
        IntOp::Ne => IntOp::Eq,
        IntOp::Lt => IntOp::Ge,
        IntOp::Le => IntOp::Gt,
        IntOp::Gt => IntOp::Le,
        IntOp::Ge => IntOp::Lt,
    }
}

/// `a op b` as `b op' a`.
fn flip(op: IntOp) -> IntOp {
    match op {
        IntOp::Lt => IntOp::Gt,
        IntOp::Le => IntOp::Ge,
        IntOp::Gt => IntOp::Lt,
        IntOp::Ge => IntOp::Le,
        same => same,
    }
}

/// The evaluator's comparison of two values: `=` and `!=` cast the left operand to the right
/// one's type, ordering casts both to Integer. `None` is a cast error.
pub(super) fn compare_values(op: IntOp, l: &Value, r: &Value) -> Option<bool> {
    match op {
        IntOp::Eq | IntOp::Ne => {
            let equal = l.cast(r.ty())? == *r;
            Some(equal == (op == IntOp::Eq))
        }
        _ => Some(op.apply(l.to_int()?, r.to_int()?)),
    }
}

/// `x op v`: the attribute is cast to the constant's type (both to Integer for ordering).
fn attr_op_value(x: &AttrName, op: IntOp, v: &Value, budget: &Budget) -> Tf {
    let (holds, fails) = match (op, v) {
        (IntOp::Eq | IntOp::Ne, Value::Int(n)) => {
            (Predicate::Int(IntOp::Eq, *n), Predicate::Int(IntOp::Ne, *n))
        }
        (IntOp::Eq | IntOp::Ne, Value::String(s)) => (
            Predicate::Str(StrOp::Eq, s.clone()),
            Predicate::Str(StrOp::Ne, s.clone()),
        ),
        (IntOp::Eq | IntOp::Ne, Value::Bool(b)) => (Predicate::Bool(*b), Predicate::Bool(!*b)),
        (ordering, v) => match v.to_int() {
            Some(n) => (
                Predicate::Int(ordering, n),
                Predicate::Int(negate(ordering), n),
            ),
            None => return Tf::never(),
        },
    };
    let r = Tf::new(pred(x, &holds), pred(x, &fails), budget);
    if op == IntOp::Ne { r.swap() } else { r }
}

/// `v op x`: for `=` and `!=` the constant is cast to the attribute's runtime type.
fn value_op_attr(v: &Value, op: IntOp, x: &AttrName, budget: &Budget) -> Tf {
    match op {
        IntOp::Eq => in_literals(x, std::slice::from_ref(v), budget),
        IntOp::Ne => in_literals(x, std::slice::from_ref(v), budget).swap(),
        ordering => attr_op_value(x, flip(ordering), v, budget),
    }
}

/// `x IN (values)`: each value is cast to `x`'s runtime type and compared.
///
/// `T` is the union, over the values, of `Str(=, s)` for the value's string form `s` (exact for
/// string attributes, and right for integer and boolean ones whenever `s` is the canonical form
/// of the value's Integer or Boolean cast), plus `Int(=, n)` / `Bool(b)` for casts whose
/// canonical form is missing from the string forms (e.g. `'05'` or `'TRUE'`): those catch
/// integer and boolean attributes soundly but also admit strings that do not match, so they
/// make `T` inexact. `T` is also inexact when only some values cast to Integer (or Boolean):
/// on an integer attribute the evaluator then meets a cast error, possibly before or after a
/// match. `F` is the conjunction of `Str(!=, s)`: sound, and inexact, since it admits integers
/// and booleans on which some value fails to cast.
fn in_literals(x: &AttrName, values: &[Value], budget: &Budget) -> Tf {
    let strings: BTreeSet<String> = values
        .iter()
        .map(|v| v.to_string_value().into_owned())
        .collect();
    let mut preds: Vec<Predicate> = strings
        .iter()
        .map(|s| Predicate::Str(StrOp::Eq, s.clone()))
        .collect();
    let mut exact = true;
    let ints: Vec<i32> = values.iter().filter_map(Value::to_int).collect();
    let bools: Vec<bool> = values.iter().filter_map(Value::to_bool).collect();
    for &n in &ints {
        if !strings.contains(&n.to_string()) {
            preds.push(Predicate::Int(IntOp::Eq, n));
            exact = false;
        }
    }
    for &b in &bools {
        if !strings.contains(Value::Bool(b).to_string_value().as_ref()) {
            preds.push(Predicate::Bool(b));
            exact = false;
        }
    }
    let partly = |n: usize| n != 0 && n != values.len();
    exact &= !partly(ints.len()) && !partly(bools.len());
    let t = preds
        .iter()
        .filter_map(|p| ConjSet::single(x.clone(), AttrSet::from_predicate(p)))
        .collect();
    let none_equal = ConjSet::single(x.clone(), AttrSet::string_not_in(strings));
    // A string attribute never raises an error; an integer or boolean one does when a value
    // fails to cast, unless every value casts to both (boolean literals).
    let error_free = values.iter().all(|v| v.ty() == Type::Bool);
    Tf {
        t: Approx::from_disjuncts(t, exact, budget),
        f: Approx::conj(none_equal, false).inexact(),
        e: pred(x, &Predicate::Exists),
    }
    .with_e_exact(error_free)
}

/// `arg IN (set)` (the caller swaps for `NOT IN`).
pub(super) fn in_set(node: &Node, arg: &Node, set: &[Node], budget: &Budget) -> Tf {
    let values: Option<Vec<Value>> = set.iter().map(|e| constant(e).flatten()).collect();
    let Some(values) = values else {
        return fallback(node);
    };
    match side(arg, budget) {
        Side::Attr(x) => in_literals(x, &values, budget),
        Side::Cases(cases) => fold_cases(cases, budget, |v| {
            let cast: Option<Vec<Value>> = values.iter().map(|e| e.cast(v.ty())).collect();
            match cast {
                Some(cast) => decided(Some(cast.contains(v))),
                // Some element fails to cast: whether the search meets it first is the
                // evaluator's business, so both outcomes stay possible.
                None => Tf::same(Approx::all(false)),
            }
        }),
        Side::Other => fallback(node),
    }
}

/// `arg LIKE pattern` (the caller swaps for `NOT LIKE`).
pub(super) fn like(node: &Node, arg: &Node, pattern: &LikePattern, budget: &Budget) -> Tf {
    match side(arg, budget) {
        Side::Attr(x) => like_attr(x, &pattern.pieces),
        Side::Cases(cases) => fold_cases(cases, budget, |v| {
            decided(Some(like_matches(&pattern.pieces, &v.to_string_value())))
        }),
        Side::Other => fallback(node),
    }
}

/// `x LIKE pattern` for an attribute (whose cast to String never fails).
///
/// The four shapes `'abc'`, `'abc%'`, `'%abc'` and `'%abc%'` are exactly `Str(=)`, prefix,
/// suffix and substring; `'%'` is presence. Other patterns keep what every match must have:
/// the literal prefix and suffix and each literal chunk as a substring (inexact). `F` is exact
/// only for `'abc'` (as `Str(!=)`) and `'%'` (never false); otherwise it is presence.
fn like_attr(x: &AttrName, pieces: &[LikePiece]) -> Tf {
    use LikePiece::{AnyString as Any, Literal as Lit};
    let one = |op: StrOp, s: &str| pred(x, &Predicate::Str(op, s.to_owned()));
    let present = || pred(x, &Predicate::Exists);
    let (t, f) = match pieces {
        [] => (one(StrOp::Eq, ""), one(StrOp::Ne, "")),
        [Lit(s)] => (one(StrOp::Eq, s), one(StrOp::Ne, s)),
        [Any] => (present(), Approx::none()),
        [Lit(s), Any] => (one(StrOp::Prefix, s), present().inexact()),
        [Any, Lit(s)] => (one(StrOp::Suffix, s), present().inexact()),
        [Any, Lit(s), Any] => (one(StrOp::Contains, s), present().inexact()),
        _ => {
            let mut preds = Vec::new();
            if let Some(Lit(s)) = pieces.first() {
                preds.push(Predicate::Str(StrOp::Prefix, s.clone()));
            }
            if let Some(Lit(s)) = pieces.last() {
                preds.push(Predicate::Str(StrOp::Suffix, s.clone()));
            }
            for piece in pieces {
                if let Lit(s) = piece {
                    preds.push(Predicate::Str(StrOp::Contains, s.clone()));
                }
            }
            let set = preds.iter().try_fold(AttrSet::any(), |acc, p| {
                let set = acc.intersect(&AttrSet::from_predicate(p));
                (!set.is_empty()).then_some(set)
            });
            let t = Approx::conj(set.and_then(|s| ConjSet::single(x.clone(), s)), false);
            (t.inexact(), present().inexact())
        }
    };
    // The cast to String never fails: no error exactly when the attribute is present.
    Tf { t, f, e: present() }
}

/// Whether `s` matches the LIKE pattern (`%` any run of characters, `_` one character).
pub(super) fn like_matches(pieces: &[LikePiece], s: &str) -> bool {
    /// One pattern token.
    #[derive(Clone, Copy, PartialEq)]
    enum Tok {
        Char(char),
        One,
        Many,
    }
    let pattern: Vec<Tok> = pieces
        .iter()
        .flat_map(|p| match p {
            LikePiece::Literal(lit) => lit.chars().map(Tok::Char).collect(),
            LikePiece::AnyChar => vec![Tok::One],
            LikePiece::AnyString => vec![Tok::Many],
        })
        .collect();
    let text: Vec<char> = s.chars().collect();
    // Greedy matching that backtracks only to the last `%`: linear in practice, and correct
    // because a later `%` can absorb whatever an earlier one would have.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(Tok::Char(c)) if *c == text[t] => (p, t) = (p + 1, t + 1),
            Some(Tok::One) => (p, t) = (p + 1, t + 1),
            Some(Tok::Many) => {
                star = Some((p, t));
                p += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    star = Some((sp, st + 1));
                    (p, t) = (sp + 1, st + 1);
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|tok| *tok == Tok::Many)
}
