//! Normalisation of an expression to its routable form.
//!
//! # Two approximations per sub-expression
//!
//! CESQL's logic is not two-valued: a sub-expression can be true, false, or raise an error
//! (a missing attribute, a failed cast), and a filter matches only when the whole expression is
//! `true` with no error. So each boolean sub-expression `e` gets two approximations, each a
//! disjunction of conjunctions with a flag saying whether it is exact:
//!
//! - `T(e)` ⊇ the events on which `e`, cast to Boolean, is `true` with no error inside `e`;
//! - `F(e)` ⊇ the events on which it is `false` with no error inside `e`.
//!
//! `NOT` swaps them. The logical operators follow CESQL's short-circuit evaluation, which makes
//! these identities exact on the true sets:
//!
//! | | `T` | `F` |
//! |---|---|---|
//! | `a AND b` | `T(a)·T(b)` | `F(a) ∪ T(a)·F(b)` |
//! | `a OR b` | `T(a) ∪ F(a)·T(b)` | `F(a)·F(b)` |
//! | `a XOR b` | `T(a)·F(b) ∪ F(a)·T(b)` | `T(a)·T(b) ∪ F(a)·F(b)` |
//!
//! (`b` is not evaluated when `a` decides, so its attributes need not exist then.) The routable
//! form is `T` of the whole expression, where the value must be a real Boolean rather than
//! something that casts to one.
//!
//! # Atoms
//!
//! Comparisons, `LIKE`, `IN` and `EXISTS` with an attribute on one side and constants on the
//! other become predicates that mean exactly the same, casts included (see [`atoms`]). A
//! sub-expression that is itself boolean (`(x > 1) = FALSE`) is split on its two outcomes, and
//! constant sub-trees are evaluated once. Anything else (arithmetic, function calls, two
//! attributes compared) is approximated by what any error-free evaluation needs: the presence
//! of every attribute it necessarily evaluates, and that attributes used in arithmetic or
//! ordering cast to Integer. Those approximations are marked inexact, and so is everything
//! built from them.
//!
//! # Simplification and bounds
//!
//! Conjunctions are kept in normal form ([`ConjSet`]): per attribute the set of values allowed,
//! so merging happens as they are built (`x > 0 AND x > 5` is `x >= 6`, `x >= 3 AND x <= 3` is
//! `x = 3`), conjunctions proven unsatisfiable disappear, disjuncts covered by another are
//! dropped, and neighbours that differ in a single integer attribute are merged when the union
//! is still one conjunction (`x < 5 OR x > 5` is `x != 5`). All of this preserves exactness.
//!
//! A disjunction never holds more than [`MAX_DISJUNCTS`] conjunctions: a product that would
//! exceed it first widens its larger side by merging neighbouring conjunctions into their hull
//! (a conjunction that holds both), and so does a union. Widening is sound and clears the exact
//! flag. The filter is then still routed, only less precisely, and the access broker evaluates
//! the full expression anyway.

mod atoms;
#[cfg(test)]
mod tests;

use crate::ast::{BinaryOp, Node, UnaryOp};
use crate::relations::ConjSet;
use crate::routable::Routable;
use crate::value::Value;

/// The most conjunctions one approximation holds. Products beyond it widen first, so the work
/// per operator stays within `MAX_DISJUNCTS²` conjunction operations.
pub(crate) const MAX_DISJUNCTS: usize = 256;

/// The routable form of an expression: sound, and exact when the analysis could show it.
pub(crate) fn routable(root: &Node) -> Routable {
    let approx = top_level(root);
    let mut exact = approx.exact;
    let conjunctions = approx
        .dnf
        .iter()
        .map(|c| {
            let (conj, e) = c.to_conjunction();
            exact &= e;
            conj
        })
        .collect();
    Routable::new(conjunctions, exact)
}

/// `T` of the whole expression, whose value must be a Boolean (no cast at the top).
fn top_level(root: &Node) -> Approx {
    if let Some(value) = atoms::constant(root) {
        return match value {
            Some(Value::Bool(true)) => Approx::all(true),
            _ => Approx::none(),
        };
    }
    match root {
        // A string "true" casts to true inside `AND`, but is no Boolean at the top.
        Node::Attr(_) => Approx::inexact(tf(root).t),
        // Integers: never a Boolean.
        Node::Unary {
            op: UnaryOp::Neg, ..
        } => Approx::none(),
        Node::Binary { op, .. } if is_arithmetic(*op) => Approx::none(),
        // The value of a function call may be of any type.
        Node::Call { .. } => atoms::necessary(root),
        _ => tf(root).t,
    }
}

/// Whether `op` is an arithmetic operator (its value is an Integer).
fn is_arithmetic(op: BinaryOp) -> bool {
    matches!(
        op,
        BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div | BinaryOp::Mod
    )
}

/// A disjunction of conjunctions that holds at least a set of events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Approx {
    /// The disjuncts, none proven unsatisfiable, none covered by another.
    dnf: Vec<ConjSet>,
    /// Whether the disjunction holds exactly the set.
    exact: bool,
}

/// The two approximations of a boolean sub-expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tf {
    /// Holds the events on which the sub-expression is true with no error.
    t: Approx,
    /// Holds the events on which it is false with no error.
    f: Approx,
}

impl Tf {
    /// Both outcomes impossible: the sub-expression always raises an error.
    fn never() -> Self {
        Self {
            t: Approx::none(),
            f: Approx::none(),
        }
    }

    /// `NOT`.
    fn swap(self) -> Self {
        Self {
            t: self.f,
            f: self.t,
        }
    }
}

impl Approx {
    /// No event (exact: an over-approximation that is empty proves the set empty).
    pub(crate) fn none() -> Self {
        Self {
            dnf: Vec::new(),
            exact: true,
        }
    }

    /// Every event.
    pub(crate) fn all(exact: bool) -> Self {
        Self {
            dnf: vec![ConjSet::all()],
            exact,
        }
    }

    /// One conjunction (`None`: proven unsatisfiable).
    pub(crate) fn conj(conj: Option<ConjSet>, exact: bool) -> Self {
        match conj {
            Some(c) => Self {
                dnf: vec![c],
                exact,
            },
            None => Self::none(),
        }
    }

    /// The same disjunction, no longer claimed exact (unless it is empty).
    pub(crate) fn inexact(self) -> Self {
        let exact = self.dnf.is_empty();
        Self { exact, ..self }
    }

    /// A disjunction, simplified and bounded.
    pub(crate) fn from_disjuncts(dnf: Vec<ConjSet>, exact: bool) -> Self {
        Self::bounded(dnf, exact)
    }

    /// The union.
    pub(crate) fn or(self, other: Self) -> Self {
        let exact = self.exact && other.exact;
        let mut dnf = self.dnf;
        dnf.extend(other.dnf);
        Self::bounded(dnf, exact)
    }

    /// The intersection.
    pub(crate) fn and(&self, other: &Self) -> Self {
        let (mut a, mut b) = (self.dnf.clone(), other.dnf.clone());
        let mut exact = self.exact && other.exact;
        if a.len().saturating_mul(b.len()) > MAX_DISJUNCTS {
            let (big, small) = if a.len() >= b.len() {
                (&mut a, &b)
            } else {
                (&mut b, &a)
            };
            widen(big, MAX_DISJUNCTS / small.len().max(1));
            exact = false;
        }
        let dnf: Vec<ConjSet> = a
            .iter()
            .flat_map(|x| b.iter().filter_map(move |y| x.intersect(y)))
            .collect();
        // An empty product of over-approximations proves the intersection empty.
        let exact = exact || dnf.is_empty();
        Self::bounded(dnf, exact)
    }

    /// Simplifies `dnf` and bounds its size.
    fn bounded(dnf: Vec<ConjSet>, exact: bool) -> Self {
        let mut dnf = simplify(dnf);
        let mut exact = exact || dnf.is_empty();
        if dnf.len() > MAX_DISJUNCTS {
            widen(&mut dnf, MAX_DISJUNCTS);
            exact = false;
        }
        Self { dnf, exact }
    }
}

/// Drops disjuncts covered by another and merges pairs whose union is one conjunction.
///
/// A worklist keeps this within `O(n²)` conjunction comparisons: a merged conjunction goes
/// back on the list, since it may now cover or merge with others.
fn simplify(dnf: Vec<ConjSet>) -> Vec<ConjSet> {
    let mut kept: Vec<ConjSet> = Vec::with_capacity(dnf.len());
    let mut work = dnf;
    work.reverse();
    while let Some(conj) = work.pop() {
        if kept.iter().any(|k| k.covers(&conj)) {
            continue;
        }
        kept.retain(|k| !conj.covers(k));
        let merge = kept
            .iter()
            .enumerate()
            .find_map(|(i, k)| Some((i, k.union_if_conjunction(&conj)?)));
        match merge {
            Some((i, merged)) => {
                kept.swap_remove(i);
                work.push(merged);
            }
            None => kept.push(conj),
        }
    }
    kept
}

/// Merges neighbouring conjunctions into their hull until at most `target` remain (at least 1).
fn widen(dnf: &mut Vec<ConjSet>, target: usize) {
    let target = target.max(1);
    while dnf.len() > target {
        *dnf = dnf
            .chunks(2)
            .filter_map(|pair| {
                let (first, rest) = pair.split_first()?;
                Some(rest.iter().fold(first.clone(), |acc, c| acc.hull(c)))
            })
            .collect();
    }
}

/// `T` and `F` of `node` in a boolean context (its value cast to Boolean).
pub(crate) fn tf(node: &Node) -> Tf {
    if let Some(value) = atoms::constant(node) {
        let as_bool = value.as_ref().and_then(Value::to_bool);
        return Tf {
            t: if as_bool == Some(true) {
                Approx::all(true)
            } else {
                Approx::none()
            },
            f: if as_bool == Some(false) {
                Approx::all(true)
            } else {
                Approx::none()
            },
        };
    }
    match node {
        Node::Attr(name) => atoms::bare_attr(name),
        Node::Exists(name) => Tf {
            t: Approx::conj(ConjSet::single(name.clone(), Default::default()), true),
            // No predicate says "absent".
            f: Approx::all(false),
        },
        Node::Unary {
            op: UnaryOp::Not,
            arg,
        } => tf(arg).swap(),
        // An Integer does not cast to Boolean.
        Node::Unary {
            op: UnaryOp::Neg, ..
        } => Tf::never(),
        Node::Binary { op, lhs, rhs } => match op {
            BinaryOp::And | BinaryOp::Or | BinaryOp::Xor => logic(*op, tf(lhs), tf(rhs)),
            op if is_arithmetic(*op) => Tf::never(),
            op => atoms::comparison(node, *op, lhs, rhs),
        },
        Node::Like {
            arg,
            pattern,
            negated,
        } => {
            let r = atoms::like(node, arg, pattern);
            if *negated { r.swap() } else { r }
        }
        Node::In { arg, set, negated } => {
            let r = atoms::in_set(node, arg, set);
            if *negated { r.swap() } else { r }
        }
        Node::Literal(_) | Node::Call { .. } => {
            let n = atoms::necessary(node);
            Tf { t: n.clone(), f: n }
        }
    }
}

/// `T` and `F` of a logical operator from those of its operands (table in the module docs).
fn logic(op: BinaryOp, a: Tf, b: Tf) -> Tf {
    match op {
        BinaryOp::And => Tf {
            t: a.t.and(&b.t),
            f: a.f.or(a.t.and(&b.f)),
        },
        BinaryOp::Or => Tf {
            t: a.t.or(a.f.and(&b.t)),
            f: a.f.and(&b.f),
        },
        _ => Tf {
            t: a.t.and(&b.f).or(a.f.and(&b.t)),
            f: a.t.and(&b.t).or(a.f.and(&b.f)),
        },
    }
}
