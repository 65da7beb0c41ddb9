//! Heap-size estimates of the filters an index keeps for their residual.

use std::mem::size_of;

use crate::Filter;
use crate::ast::{LikePiece, Node};
use crate::routable::Constraint;
use crate::value::Value;

/// The bytes of an `Arc<Filter>` allocation and everything it owns.
pub(crate) fn filter_bytes(filter: &Filter) -> usize {
    let routable: usize = filter
        .routable
        .conjunctions()
        .iter()
        .map(|c| {
            std::mem::size_of_val(c.constraints())
                + c.constraints().iter().map(constraint_bytes).sum::<usize>()
        })
        .sum();
    // Two reference counts precede the value in an `Arc`.
    2 * size_of::<usize>()
        + size_of::<Filter>()
        + filter.expr.source.capacity()
        + node_bytes(&filter.expr.root)
        + std::mem::size_of_val(filter.routable.conjunctions())
        + routable
}

/// Heap bytes owned by one constraint.
fn constraint_bytes(c: &Constraint) -> usize {
    let pred = match &c.pred {
        crate::routable::Predicate::Str(_, s) => s.capacity(),
        _ => 0,
    };
    c.attr.as_str().len() + pred
}

/// Heap bytes owned by a node (not counting the node itself).
fn node_bytes(node: &Node) -> usize {
    let boxed = |n: &Node| size_of::<Node>() + node_bytes(n);
    match node {
        Node::Literal(v) => value_bytes(v),
        Node::Attr(a) | Node::Exists(a) => a.as_str().len(),
        Node::Unary { arg, .. } => boxed(arg),
        Node::Binary { lhs, rhs, .. } => boxed(lhs) + boxed(rhs),
        Node::Like { arg, pattern, .. } => {
            let pieces: usize = pattern
                .pieces
                .iter()
                .map(|p| match p {
                    LikePiece::Literal(s) => s.capacity(),
                    LikePiece::AnyChar | LikePiece::AnyString => 0,
                })
                .sum();
            boxed(arg)
                + pattern.source.capacity()
                + pattern.pieces.capacity() * size_of::<LikePiece>()
                + pieces
                + pattern.plan.heap_bytes()
        }
        Node::In { arg, set, .. } => {
            boxed(arg)
                + set.capacity() * size_of::<Node>()
                + set.iter().map(node_bytes).sum::<usize>()
        }
        Node::Call { name, args } => {
            name.capacity()
                + args.capacity() * size_of::<Node>()
                + args.iter().map(node_bytes).sum::<usize>()
        }
    }
}

/// Heap bytes owned by a value.
fn value_bytes(v: &Value) -> usize {
    match v {
        Value::String(s) => s.capacity(),
        Value::Bool(_) | Value::Int(_) => 0,
    }
}
