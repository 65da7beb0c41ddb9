//! The approximations of `x LIKE pattern`.
//!
//! The cast to String never fails, so on an attribute a pattern is exact whenever it is one
//! string predicate (equality, prefix, suffix, substring) and otherwise keeps what every match
//! must contain. On a constant or a boolean sub-expression the pattern is decided per case.

use crate::ast::{LikePattern, LikePiece, Node};
use crate::relations::ConjSet;
use crate::relations::attrset::AttrSet;
use crate::routable::{Predicate, StrOp};
use crate::value::AttrName;

use super::approx::{Approx, Budget};
use super::atoms::{Side, decided, fallback, fold_cases, needed, pred, side};
use super::{Need, Tf};

/// `arg LIKE pattern` (the caller swaps for `NOT LIKE`).
pub(super) fn like(
    node: &Node,
    arg: &Node,
    pattern: &LikePattern,
    need: Need,
    budget: &Budget,
) -> Tf {
    match side(arg, budget) {
        Side::Attr(x) => like_attr(x, &pattern.pieces, need),
        Side::Other => fallback(node),
        known => match known.into_cases() {
            Some(cases) => fold_cases(cases, need, budget, |v, _| {
                decided(Some(crate::eval::like::matches(
                    pattern,
                    &v.to_string_value(),
                )))
            }),
            None => fallback(node),
        },
    }
}

/// `x LIKE pattern` for an attribute (whose cast to String never fails).
///
/// The four shapes `'abc'`, `'abc%'`, `'%abc'` and `'%abc%'` are exactly `Str(=)`, prefix,
/// suffix and substring; `'%'` is presence. Other patterns keep what every match must have:
/// the literal prefix and suffix and each literal chunk as a substring (inexact). `F` is exact
/// only for `'abc'` (as `Str(!=)`) and `'%'` (never false); otherwise it is presence.
fn like_attr(x: &AttrName, pieces: &[LikePiece], need: Need) -> Tf {
    use LikePiece::{AnyString as Any, Literal as Lit};
    let (t, f) = (need.t, need.f);
    let one = |wanted: bool, op: StrOp, s: &str| {
        needed(wanted, || pred(x, &Predicate::Str(op, s.to_owned())))
    };
    let present = |wanted: bool| needed(wanted, || pred(x, &Predicate::Exists));
    let (t, f) = match pieces {
        [] => (one(t, StrOp::Eq, ""), one(f, StrOp::Ne, "")),
        [Lit(s)] => (one(t, StrOp::Eq, s), one(f, StrOp::Ne, s)),
        [Any] => (present(t), Approx::none()),
        [Lit(s), Any] => (one(t, StrOp::Prefix, s), present(f).inexact()),
        [Any, Lit(s)] => (one(t, StrOp::Suffix, s), present(f).inexact()),
        [Any, Lit(s), Any] => (one(t, StrOp::Contains, s), present(f).inexact()),
        _ if !t => (Approx::all(false), present(f).inexact()),
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
            (t.inexact(), present(f).inexact())
        }
    };
    // The cast to String never fails: no error exactly when the attribute is present.
    Tf {
        t,
        f,
        e: present(need.e),
    }
}
