//! `T` of a chain `a AND b AND ...` in one linear pass.
//!
//! The parser builds `a AND b AND c` as `(a AND b) AND c`. Applied node by node, the rule
//! `T(a AND b) = T(a)·T(b)` copies the growing product at every node, and each operand goes
//! through the full atom machinery (all three approximations, per-case folds): quadratic in
//! the chain's length, with a dozen allocations per constraint. This pass walks the left spine
//! once, takes the operands in evaluation order, and keeps the product in place while it is one
//! conjunction (the usual case: every operand one constraint), narrowing one attribute's set
//! per operand in `O(log n)`. An operand `attribute op constant` becomes its predicate
//! directly; any other operand gets its `T` from [`tf`], and a product that is or meets a
//! disjunction falls back to [`Approx::and`].
//!
//! The intersections are the same, on the same sets, in the same order as the node-by-node
//! rule, so the result is the same (the property tests in `shortcuts.rs` check it on random
//! chains); only the copies are saved. The budget is checked after every operand, as
//! the general rule does at every node, and a product proven empty ends the pass early.

use crate::ast::{BinaryOp, Node};
use crate::relations::ConjSet;
use crate::relations::attrset::AttrSet;
use crate::routable::Predicate;
use crate::value::AttrName;

use super::approx::{Approx, Budget, cost};
use super::{Need, Tf, atoms, tf};

/// The approximations of the chain rooted at `root` (an `AND` node), of which only `T` is
/// computed.
pub(super) fn and_t(root: &Node, budget: &Budget) -> Tf {
    let mut rights = Vec::new();
    let mut leftmost = root;
    while let Node::Binary {
        op: BinaryOp::And,
        lhs,
        rhs,
    } = leftmost
    {
        rights.push(rhs.as_ref());
        leftmost = lhs;
    }
    let operands = std::iter::once(leftmost).chain(rights.into_iter().rev());
    let mut product: Option<Product> = None;
    for operand in operands {
        let factor = Factor::of(operand, budget);
        if budget.spent() {
            return Tf::same(atoms::necessary(root));
        }
        let next = match product {
            None => Product::from(factor.into_approx()),
            Some(p) => p.and(factor, budget),
        };
        if next.is_empty() {
            // Empty stays empty: the rest of the chain cannot change `T`.
            return Tf::with_t(Approx::none());
        }
        product = Some(next);
    }
    let t = product.map_or_else(Approx::none, Product::into_approx);
    Tf::with_t(t)
}

/// One operand's `T`.
enum Factor<'a> {
    /// `attr pred` exactly, or nothing (`None`) exactly.
    Pred(&'a AttrName, Option<Predicate>),
    /// Any other approximation.
    Approx(Approx),
}

impl<'a> Factor<'a> {
    /// `T` of `node`.
    fn of(node: &'a Node, budget: &Budget) -> Self {
        if let Node::Binary { op, lhs, rhs } = node {
            let iop = atoms::int_op(*op);
            match (lhs.as_ref(), rhs.as_ref(), iop) {
                (Node::Attr(x), Node::Literal(v), Some(iop)) => {
                    return Factor::Pred(x, atoms::attr_op_value_t(iop, v));
                }
                // `v = x` casts `v` to `x`'s type: left to the general rule.
                (Node::Literal(v), Node::Attr(x), Some(iop)) => {
                    if let Some(flipped) = atoms::flip_ordering(iop) {
                        return Factor::Pred(x, atoms::attr_op_value_t(flipped, v));
                    }
                }
                _ => {}
            }
        }
        Factor::Approx(tf(node, Need::T, budget).t)
    }

    /// The factor as an approximation.
    fn into_approx(self) -> Approx {
        match self {
            Factor::Pred(x, Some(p)) => Approx::conj(
                ConjSet::single(x.clone(), AttrSet::from_predicate(&p)),
                true,
            ),
            Factor::Pred(_, None) => Approx::none(),
            Factor::Approx(a) => a,
        }
    }
}

/// The product of the factors so far.
enum Product {
    /// One conjunction, and whether it is exact.
    One(ConjSet, bool),
    /// Any other approximation (including none).
    Many(Approx),
}

impl From<Approx> for Product {
    fn from(mut approx: Approx) -> Self {
        if approx.dnf.len() == 1
            && let Some(conj) = approx.dnf.pop()
        {
            return Product::One(conj, approx.exact);
        }
        Product::Many(approx)
    }
}

impl Product {
    /// Whether the product is proven empty.
    fn is_empty(&self) -> bool {
        matches!(self, Product::Many(a) if a.dnf.is_empty())
    }

    /// The product as an approximation.
    fn into_approx(self) -> Approx {
        match self {
            Product::One(conj, exact) => Approx::conj(Some(conj), exact),
            Product::Many(a) => a,
        }
    }

    /// The product with one more factor: [`Approx::and`], in place when both are one
    /// conjunction (with the same budget spent).
    fn and(self, factor: Factor<'_>, budget: &Budget) -> Self {
        let Product::One(mut conj, exact) = self else {
            return Product::from(self.into_approx().and(&factor.into_approx(), budget));
        };
        let width = conj.len();
        let (met, factor_width, factor_exact) = match &factor {
            Factor::Pred(x, Some(p)) => (conj.restrict(x, AttrSet::from_predicate(p)), 1, true),
            Factor::Approx(a) if a.dnf.len() == 1 => {
                (conj.intersect_in_place(&a.dnf[0]), a.dnf[0].len(), a.exact)
            }
            _ => {
                let approx = Approx::conj(Some(conj), exact);
                return Product::from(approx.and(&factor.into_approx(), budget));
            }
        };
        if !met {
            return Product::Many(Approx::none());
        }
        // What `Approx::and` spends on the pair and `insert` on its one result.
        budget.spend(cost(1, width + factor_width) + cost(1, conj.len()));
        Product::One(conj, exact && factor_exact)
    }
}
