//! The approximations of atoms: comparisons, `IN`, bare attributes, and the fallback for
//! everything else (`LIKE` is in [`super::like`]).
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

use crate::ast::{BinaryOp, Node, UnaryOp};
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
pub(super) fn pred(attr: &AttrName, p: &Predicate) -> Approx {
    Approx::conj(
        ConjSet::single(attr.clone(), AttrSet::from_predicate(p)),
        true,
    )
}

/// `make()` if `needed`, else the placeholder "every event, inexact" of an approximation
/// nobody reads (see [`Need`]).
pub(super) fn needed(needed: bool, make: impl FnOnce() -> Approx) -> Approx {
    if needed { make() } else { Approx::all(false) }
}

/// A bare attribute in a boolean context: its implicit cast to Boolean.
pub(super) fn bare_attr(name: &AttrName, need: Need, budget: &Budget) -> Tf {
    let n = need.cases();
    Tf::new(
        needed(n.t, || pred(name, &Predicate::Bool(true))),
        needed(n.f, || pred(name, &Predicate::Bool(false))),
        need,
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
pub(super) fn fallback(node: &Node) -> Tf {
    Tf::same(necessary(node))
}

/// How an operand is known.
pub(super) enum Side<'a> {
    /// A bare attribute.
    Attr(&'a AttrName),
    /// A constant that evaluates without error: one case, on every event.
    Const(Value),
    /// The values the operand may take, each with the events on which it takes it. A constant
    /// is one case; a boolean sub-expression two; a constant that raises an error none.
    Cases(Vec<(Value, Approx)>),
    /// Anything else.
    Other,
}

/// Classifies an operand.
pub(super) fn side<'a>(node: &'a Node, budget: &Budget) -> Side<'a> {
    match constant(node) {
        Some(Some(value)) => return Side::Const(value),
        Some(None) => return Side::Cases(Vec::new()),
        None => {}
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

impl Side<'_> {
    /// The operand's cases, if it is known by its values.
    pub(super) fn into_cases(self) -> Option<Vec<(Value, Approx)>> {
        match self {
            Side::Const(v) => Some(vec![(v, Approx::all(true))]),
            Side::Cases(cases) => Some(cases),
            Side::Attr(_) | Side::Other => None,
        }
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

/// Folds per-case outcomes: each case contributes `outcome ∩ (events of the case)`. The
/// outcome is asked for what the fold needs of it (`need.cases()`).
pub(super) fn fold_cases(
    cases: Vec<(Value, Approx)>,
    need: Need,
    budget: &Budget,
    mut outcome: impl FnMut(&Value, Need) -> Tf,
) -> Tf {
    let n = need.cases();
    let (t, f) = cases
        .into_iter()
        .fold((Approx::none(), Approx::none()), |(t, f), (v, events)| {
            let r = outcome(&v, n);
            let add = |acc: Approx, yes: bool, outcome: Approx| {
                if yes {
                    acc.or(outcome.and(&events, budget), budget)
                } else {
                    acc
                }
            };
            (add(t, n.t, r.t), add(f, n.f, r.f))
        });
    Tf::new(needed(n.t, || t), needed(n.f, || f), need, budget)
}

/// The outcome of a constant operand (one case, on every event): what [`fold_cases`] gives
/// for it, without intersecting and uniting with "every event".
fn one_case(r: Tf, need: Need, budget: &Budget) -> Tf {
    Tf::new(r.t, r.f, need, budget)
}

/// A known outcome on every event: `true` if `result` is `Some(true)`, `false` if
/// `Some(false)`, an error if `None`.
pub(super) fn decided(result: Option<bool>) -> Tf {
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
pub(super) fn comparison(
    node: &Node,
    op: BinaryOp,
    lhs: &Node,
    rhs: &Node,
    need: Need,
    budget: &Budget,
) -> Tf {
    let Some(iop) = int_op(op) else {
        return fallback(node);
    };
    match (side(lhs, budget), side(rhs, budget)) {
        // Both operands are evaluated: one that always fails fails the comparison.
        (Side::Cases(c), _) | (_, Side::Cases(c)) if c.is_empty() => Tf::never(),
        (Side::Attr(x), Side::Const(v)) => one_case(
            attr_op_value(x, iop, &v, need.cases(), budget),
            need,
            budget,
        ),
        (Side::Const(v), Side::Attr(x)) => one_case(
            value_op_attr(&v, iop, x, need.cases(), budget),
            need,
            budget,
        ),
        (Side::Attr(x), Side::Cases(cases)) => fold_cases(cases, need, budget, |v, n| {
            attr_op_value(x, iop, v, n, budget)
        }),
        (Side::Cases(cases), Side::Attr(x)) => fold_cases(cases, need, budget, |v, n| {
            value_op_attr(v, iop, x, n, budget)
        }),
        (left, right) => match (left.into_cases(), right.into_cases()) {
            (Some(left), Some(right)) => fold_cases(left, need, budget, |l, n| {
                fold_cases(right.clone(), n, budget, |r, _| {
                    decided(compare_values(iop, l, r))
                })
            }),
            _ => fallback(node),
        },
    }
}

/// The comparison operator as an [`IntOp`] (`None` for non-comparisons).
pub(super) fn int_op(op: BinaryOp) -> Option<IntOp> {
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
fn attr_op_value(x: &AttrName, op: IntOp, v: &Value, need: Need, budget: &Budget) -> Tf {
    // `!=` is the swap of `=`, whose `E` unites its own two outcomes.
    let need = if op == IntOp::Ne { need.swap() } else { need };
    let n = need.cases();
    let outcome = |holds: bool, wanted: bool| {
        if wanted {
            Some(pred(x, &comparison_pred(op, v, holds)?))
        } else {
            Some(Approx::all(false))
        }
    };
    let (Some(t), Some(f)) = (outcome(true, n.t), outcome(false, n.f)) else {
        return Tf::never();
    };
    let r = Tf::new(t, f, need, budget);
    if op == IntOp::Ne { r.swap() } else { r }
}

/// `T` of `x op v` (the attribute on the left), which is exactly one predicate; `None` if it
/// is empty (an ordering against a value that does not cast to Integer). The same as
/// [`attr_op_value`]'s `T`, without building the approximation.
pub(super) fn attr_op_value_t(op: IntOp, v: &Value) -> Option<Predicate> {
    comparison_pred(op, v, op != IntOp::Ne)
}

/// What `x = v` (for both `=` and `!=`) or the ordering `x op v` requires of `x` to be true
/// (`holds`) or false; `None` if the comparison always raises an error.
fn comparison_pred(op: IntOp, v: &Value, holds: bool) -> Option<Predicate> {
    let eq_op = if holds { IntOp::Eq } else { IntOp::Ne };
    Some(match (op, v) {
        (IntOp::Eq | IntOp::Ne, Value::Int(n)) => Predicate::Int(eq_op, *n),
        (IntOp::Eq | IntOp::Ne, Value::String(s)) => {
            Predicate::Str(if holds { StrOp::Eq } else { StrOp::Ne }, s.clone())
        }
        (IntOp::Eq | IntOp::Ne, Value::Bool(b)) => Predicate::Bool(*b == holds),
        (ordering, v) => {
            let op = if holds { ordering } else { negate(ordering) };
            Predicate::Int(op, v.to_int()?)
        }
    })
}

/// `v op x` with an ordering `op` as `x op' v`.
pub(super) fn flip_ordering(op: IntOp) -> Option<IntOp> {
    (!matches!(op, IntOp::Eq | IntOp::Ne)).then(|| flip(op))
}

/// `v op x`: for `=` and `!=` the constant is cast to the attribute's runtime type.
fn value_op_attr(v: &Value, op: IntOp, x: &AttrName, need: Need, budget: &Budget) -> Tf {
    match op {
        IntOp::Eq => in_literals(x, std::slice::from_ref(v), need, budget),
        IntOp::Ne => in_literals(x, std::slice::from_ref(v), need.swap(), budget).swap(),
        ordering => attr_op_value(x, flip(ordering), v, need, budget),
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
fn in_literals(x: &AttrName, values: &[Value], need: Need, budget: &Budget) -> Tf {
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
    let t = || {
        let disjuncts = preds
            .iter()
            .filter_map(|p| ConjSet::single(x.clone(), AttrSet::from_predicate(p)))
            .collect();
        Approx::from_disjuncts(disjuncts, exact, budget)
    };
    let f = || {
        let none_equal = ConjSet::single(x.clone(), AttrSet::string_not_in(strings));
        Approx::conj(none_equal, false).inexact()
    };
    // A string attribute never raises an error; an integer or boolean one does when a value
    // fails to cast, unless every value casts to both (boolean literals).
    let error_free = values.iter().all(|v| v.ty() == Type::Bool);
    Tf {
        t: needed(need.t, t),
        f: needed(need.f, f),
        e: needed(need.e, || pred(x, &Predicate::Exists)),
    }
    .with_e_exact(error_free)
}

/// `arg IN (set)` (the caller swaps for `NOT IN`).
pub(super) fn in_set(node: &Node, arg: &Node, set: &[Node], need: Need, budget: &Budget) -> Tf {
    let values: Option<Vec<Value>> = set.iter().map(|e| constant(e).flatten()).collect();
    let Some(values) = values else {
        return fallback(node);
    };
    match side(arg, budget) {
        Side::Attr(x) => in_literals(x, &values, need, budget),
        Side::Other => fallback(node),
        known => match known.into_cases() {
            Some(cases) => fold_cases(cases, need, budget, |v, _| {
                let cast: Option<Vec<Value>> = values.iter().map(|e| e.cast(v.ty())).collect();
                match cast {
                    Some(cast) => decided(Some(cast.contains(v))),
                    // Some element fails to cast: whether the search meets it first is the
                    // evaluator's business, so both outcomes stay possible.
                    None => Tf::same(Approx::all(false)),
                }
            }),
            None => fallback(node),
        },
    }
}
