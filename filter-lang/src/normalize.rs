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
//! A third approximation, `E(e)` ⊇ the events on which `e` raises no error, lets
//! short-circuits stay exact where `F` or `T` cannot be (see [`logic`]). Only the
//! approximations a parent needs are computed ([`Need`]), down to the atoms: the routable form
//! needs `T` of the root, an `AND` chain needs nothing but `T` of its operands.
//!
//! # Cost
//!
//! The usual filter is a chain `a AND b AND ...` of comparisons, and it is normalised in one
//! linear pass ([`chain`]) that narrows one conjunction in place, in `O(n log n)` for `n`
//! constraints; it gives the same result as the node-by-node rules, which a property test
//! checks. Everything else pays for the approximations it needs, within the budget below.
//!
//! # Simplification and bounds
//!
//! Conjunctions are kept in normal form ([`ConjSet`]): per attribute the set of values allowed,
//! so merging happens as they are built (`x > 0 AND x > 5` is `x >= 6`, `x >= 3 AND x <= 3` is
//! `x = 3`), conjunctions proven unsatisfiable disappear, disjuncts covered by another are
//! dropped, and disjuncts that differ on a single attribute are merged when the union is still
//! one conjunction (`x < 5 OR x > 5` is `x != 5`). All of this preserves exactness.
//!
//! Size and work are bounded (see [`approx`]): at most [`approx::MAX_DISJUNCTS`] conjunctions per
//! approximation, and a work budget per expression, past which the rest of the tree gets its
//! cheapest sound approximation. Both only cost precision: the filter is still routed soundly,
//! and the access broker evaluates the full expression anyway.

mod approx;
mod atoms;
mod chain;
mod like;
#[cfg(test)]
mod shortcuts;
#[cfg(test)]
mod tests;

use crate::ast::{BinaryOp, Node, UnaryOp};
use crate::relations::ConjSet;
use crate::routable::Routable;
use crate::value::{Type, Value};

use approx::{Approx, Budget, WORK_BUDGET};

#[cfg(test)]
use approx::MAX_DISJUNCTS;

/// The routable form of an expression: sound, and exact when the analysis could show it.
pub(crate) fn routable(root: &Node) -> Routable {
    routable_within(root, &Budget::new(WORK_BUDGET))
}

/// [`routable`] within `budget`.
fn routable_within(root: &Node, budget: &Budget) -> Routable {
    let approx = top_level(root, budget);
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
fn top_level(root: &Node, budget: &Budget) -> Approx {
    if let Some(value) = atoms::constant(root) {
        return match value {
            Some(Value::Bool(true)) => Approx::all(true),
            _ => Approx::none(),
        };
    }
    match root {
        // A string "true" casts to true inside `AND`, but is no Boolean at the top.
        Node::Attr(_) => tf(root, Need::T, budget).t.inexact(),
        // Integers: never a Boolean.
        Node::Unary {
            op: UnaryOp::Neg, ..
        } => Approx::none(),
        Node::Binary { op, .. } if is_arithmetic(*op) => Approx::none(),
        // Only a function returning Boolean can match; a missing one always fails.
        Node::Call { name, args } => match crate::functions::lookup(name, args.len()) {
            Some(f) if f.ret == Type::Bool => atoms::necessary(root),
            _ => Approx::none(),
        },
        _ => tf(root, Need::T, budget).t,
    }
}

/// Whether `op` is an arithmetic operator (its value is an Integer).
fn is_arithmetic(op: BinaryOp) -> bool {
    matches!(
        op,
        BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div | BinaryOp::Mod
    )
}

/// Which approximations a parent needs (the others are left as "every event", inexact).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Need {
    /// `T` is needed.
    t: bool,
    /// `F` is needed.
    f: bool,
    /// `E` is needed.
    e: bool,
    /// `E` is only read in place of an inexact `T` or `F` ([`Tf::t_or_e`], [`Tf::f_or_e`]),
    /// so it need not be computed when both came out exact.
    e_stands_in: bool,
}

impl Need {
    /// Only `T`.
    const T: Need = Need {
        t: true,
        f: false,
        e: false,
        e_stands_in: false,
    };
    /// `T` and `F`.
    pub(crate) const TF: Need = Need {
        t: true,
        f: true,
        e: false,
        e_stands_in: false,
    };

    /// Whether `self` asks for nothing but `T`.
    fn only_t(self) -> bool {
        self.t && !self.f && !self.e
    }

    /// Whether `E` is to be computed, given the `T` and `F` computed already.
    fn e_given(self, t: &Approx, f: &Approx, budget: &Budget) -> bool {
        self.e && !(self.e_stands_in && t.exact && f.exact && budget.fast_paths())
    }

    /// What an atom built from per-case outcomes needs of each outcome: `T` and `F`, from
    /// which its own `E` is their union.
    fn cases(self) -> Need {
        Need {
            t: self.t || self.e,
            f: self.f || self.e,
            e: false,
            e_stands_in: false,
        }
    }

    /// What `NOT` needs of its operand.
    fn swap(self) -> Need {
        Need {
            t: self.f,
            f: self.t,
            ..self
        }
    }

    /// What a logical operator needs of its left operand `a` and its right operand `b`
    /// (from the formulas in [`logic`]: `AND` and `OR` read `E(a)` only in place of an inexact
    /// `T(a)` or `F(a)`; `E(b)`, and `XOR`'s `E(a)`, are read directly).
    fn operands(self, op: BinaryOp) -> (Need, Need) {
        let Need { t, f, e, .. } = self;
        let a = match op {
            BinaryOp::And => Need {
                t: t || f || e,
                f: f || e,
                e: f || e,
                e_stands_in: true,
            },
            BinaryOp::Or => Need {
                t: t || e,
                f: t || f || e,
                e: t || e,
                e_stands_in: true,
            },
            _ => Need {
                t: t || f,
                f: t || f,
                e,
                e_stands_in: false,
            },
        };
        // `E(b)` is read directly wherever it is read.
        let b = if op == BinaryOp::Xor {
            a
        } else {
            Need {
                e_stands_in: false,
                ..self
            }
        };
        (a, b)
    }
}

/// The approximations of a boolean sub-expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tf {
    /// Holds the events on which the sub-expression is true with no error.
    t: Approx,
    /// Holds the events on which it is false with no error.
    f: Approx,
    /// Holds the events on which it is either, with no error: `t ∪ f`, but often exact when
    /// they are not (`x LIKE 'a%'` has no exact `f`, yet is error-free exactly when `x` is
    /// present). Short-circuit operators use it in place of `f` or `t` (see [`logic`]).
    e: Approx,
}

impl Tf {
    /// The approximations `t` and `f`, with `e` their union if `need` asks for it (computing
    /// it costs a covering pass; left as "every event" otherwise).
    fn new(t: Approx, f: Approx, need: Need, budget: &Budget) -> Self {
        let e = if need.e_given(&t, &f, budget) {
            t.clone().or(f.clone(), budget)
        } else {
            Approx::all(false)
        };
        Self { t, f, e }
    }

    /// `T` alone, for a parent that needs nothing else.
    fn with_t(t: Approx) -> Self {
        Self {
            t,
            f: Approx::all(false),
            e: Approx::all(false),
        }
    }

    /// All three the same (inexact) approximation.
    fn same(n: Approx) -> Self {
        Self {
            t: n.clone(),
            f: n.clone(),
            e: n,
        }
    }

    /// Both outcomes impossible: the sub-expression always raises an error.
    fn never() -> Self {
        Self::same(Approx::none())
    }

    /// `NOT`.
    fn swap(self) -> Self {
        Self {
            t: self.f,
            f: self.t,
            e: self.e,
        }
    }

    /// The same, with `e` claimed exact or not.
    fn with_e_exact(self, exact: bool) -> Self {
        let e = if exact { self.e } else { self.e.inexact() };
        Self { e, ..self }
    }

    /// A set between `t` and `e`, as exact as either is.
    fn t_or_e(&self) -> &Approx {
        if !self.t.exact && self.e.exact {
            &self.e
        } else {
            &self.t
        }
    }

    /// A set between `f` and `e`, as exact as either is.
    fn f_or_e(&self) -> &Approx {
        if !self.f.exact && self.e.exact {
            &self.e
        } else {
            &self.f
        }
    }
}

/// The approximations of `node` in a boolean context (its value cast to Boolean). Those not in
/// `need` may be left as "every event", inexact.
pub(crate) fn tf(node: &Node, need: Need, budget: &Budget) -> Tf {
    if let Some(value) = atoms::constant(node) {
        let as_bool = value.as_ref().and_then(Value::to_bool);
        let when = |b: bool| {
            if as_bool == Some(b) {
                Approx::all(true)
            } else {
                Approx::none()
            }
        };
        return Tf {
            t: when(true),
            f: when(false),
            e: if as_bool.is_some() {
                Approx::all(true)
            } else {
                Approx::none()
            },
        };
    }
    if budget.spent() {
        return Tf::same(atoms::necessary(node));
    }
    match node {
        Node::Attr(name) => atoms::bare_attr(name, need, budget),
        Node::Exists(name) => Tf {
            t: Approx::conj(ConjSet::single(name.clone(), Default::default()), true),
            // No predicate says "absent".
            f: Approx::all(false),
            e: Approx::all(true),
        },
        Node::Unary {
            op: UnaryOp::Not,
            arg,
        } => tf(arg, need.swap(), budget).swap(),
        // An Integer does not cast to Boolean.
        Node::Unary {
            op: UnaryOp::Neg, ..
        } => Tf::never(),
        Node::Binary { op, lhs, rhs } => match op {
            // A chain `a AND b AND ...` of which only `T` is needed: one linear pass.
            BinaryOp::And if need.only_t() && budget.fast_paths() => chain::and_t(node, budget),
            BinaryOp::And | BinaryOp::Or | BinaryOp::Xor => {
                let (need_a, need_b) = need.operands(*op);
                let a = tf(lhs, need_a, budget);
                let b = tf(rhs, need_b, budget);
                if budget.spent() {
                    // Combining what the operands got would cost as much again.
                    return Tf::same(atoms::necessary(node));
                }
                logic(*op, &a, &b, need, budget)
            }
            op if is_arithmetic(*op) => Tf::never(),
            op => atoms::comparison(node, *op, lhs, rhs, need, budget),
        },
        Node::Like {
            arg,
            pattern,
            negated,
        } => {
            if *negated {
                like::like(node, arg, pattern, need.swap(), budget).swap()
            } else {
                like::like(node, arg, pattern, need, budget)
            }
        }
        Node::In { arg, set, negated } => {
            if *negated {
                atoms::in_set(node, arg, set, need.swap(), budget).swap()
            } else {
                atoms::in_set(node, arg, set, need, budget)
            }
        }
        // An Integer result (or a missing function) never casts to Boolean; a String may.
        Node::Call { name, args } => match crate::functions::lookup(name, args.len()) {
            Some(f) if f.ret != Type::Int => Tf::same(atoms::necessary(node)),
            _ => Tf::never(),
        },
        // Literals are constants, handled above.
        Node::Literal(_) => Tf::never(),
    }
}

/// The approximations of a logical operator from those of its operands.
///
/// Besides the table in the module docs, `E` (no error) lets a short-circuit use whichever of
/// two sets is exact: in `T(a OR b) = T(a) ∪ F(a)·T(b)` any set `X` with `F(a) ⊆ X ⊆ E(a)`
/// gives the same union, since `E(a)·T(b)` only adds events already in `T(a)`. Likewise for
/// `T(a)` in `F(a AND b)`. And `E(a AND b) = F(a) ∪ T(a)·E(b)`, `E(a OR b) = T(a) ∪ F(a)·E(b)`,
/// `E(a XOR b) = E(a)·E(b)`.
fn logic(op: BinaryOp, a: &Tf, b: &Tf, need: Need, budget: &Budget) -> Tf {
    let when = |needed: bool, f: &dyn Fn() -> Approx| {
        if needed { f() } else { Approx::all(false) }
    };
    let or = |x: &Approx, y: Approx| x.clone().or(y, budget);
    let (t, f) = match op {
        BinaryOp::And => (
            when(need.t, &|| a.t.and(&b.t, budget)),
            when(need.f, &|| or(&a.f, a.t_or_e().and(&b.f, budget))),
        ),
        BinaryOp::Or => (
            when(need.t, &|| or(&a.t, a.f_or_e().and(&b.t, budget))),
            when(need.f, &|| a.f.and(&b.f, budget)),
        ),
        _ => (
            when(need.t, &|| {
                or(&a.t.and(&b.f, budget), a.f.and(&b.t, budget))
            }),
            when(need.f, &|| {
                or(&a.t.and(&b.t, budget), a.f.and(&b.f, budget))
            }),
        ),
    };
    let e = when(need.e_given(&t, &f, budget), &|| match op {
        BinaryOp::And => or(&a.f, a.t_or_e().and(&b.e, budget)),
        BinaryOp::Or => or(&a.t, a.f_or_e().and(&b.e, budget)),
        _ => a.e.and(&b.e, budget),
    });
    Tf { t, f, e }
}
