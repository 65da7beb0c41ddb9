//! Covering and intersection on routable forms.
//!
//! A routable form is a set of events: those satisfying some conjunction. Both relations are
//! decided on a normal form in which each conjunction becomes, per attribute, the set of values
//! the attribute may take ([`AttrSet`], exact within one cast interpretation; see
//! [`attrset`]). On that form:
//!
//! - conjunction `A` covers conjunction `B` when `B` is unsatisfiable, or when every attribute
//!   `A` constrains is constrained by `B` to a subset of `A`'s set. (An attribute `A` constrains
//!   but `B` does not may be absent from events `B` matches.)
//! - conjunctions are disjoint when one is unsatisfiable or some attribute's two sets are;
//! - a disjunction covers a conjunction `B` when one of its conjunctions does, or by the *union
//!   rule*: for some attribute `x` of `B`, the disjuncts that cover `B` on every attribute but
//!   `x` together allow every value `B` allows for `x` (e.g. `x < 5 OR x >= 5` covers
//!   `x > 0`, and `(y = 1 AND x < 5) OR (y = 1 AND x >= 5)` covers `y = 1 AND x > 0`);
//! - a disjunction covers another when it covers each of its conjunctions, and two disjunctions
//!   intersect unless every pair of conjunctions is disjoint.
//!
//! Both answers are sound (`covers` is `true` only when proven, `intersects` is `false` only
//! when proven) and, for constraints on a single attribute read through a single cast,
//! complete. Covering between arbitrary disjunctions is co-NP-hard in general; the union rule
//! is the cheap case that matters for routing tables.

pub(crate) mod attrset;
mod ints;
mod strings;

use std::collections::BTreeMap;

use crate::routable::{Conjunction, Constraint, Routable};
use crate::value::AttrName;

use attrset::AttrSet;

/// A conjunction in normal form: per attribute, the set of values it may take. Every attribute
/// listed must be present. Never holds a set proven empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub(crate) struct ConjSet {
    /// The constrained attributes.
    attrs: BTreeMap<AttrName, AttrSet>,
}

impl ConjSet {
    /// The conjunction of no constraints: every event.
    pub(crate) fn all() -> Self {
        Self::default()
    }

    /// `attr` takes a value in `set`; `None` if the set is proven empty.
    pub(crate) fn single(attr: AttrName, set: AttrSet) -> Option<Self> {
        (!set.is_empty()).then(|| Self {
            attrs: BTreeMap::from([(attr, set)]),
        })
    }

    /// The normal form of a conjunction; `None` if it is proven unsatisfiable.
    pub(crate) fn from_conjunction(conj: &Conjunction) -> Option<Self> {
        conj.constraints().iter().try_fold(Self::all(), |acc, c| {
            let one = Self::single(c.attr.clone(), AttrSet::from_predicate(&c.pred))?;
            acc.intersect(&one)
        })
    }

    /// The number of attributes constrained.
    pub(crate) fn len(&self) -> usize {
        self.attrs.len()
    }

    /// The events in both; `None` if proven to be none.
    pub(crate) fn intersect(&self, other: &Self) -> Option<Self> {
        let mut attrs = self.attrs.clone();
        for (name, set) in &other.attrs {
            let merged = match attrs.get(name) {
                Some(mine) => mine.intersect(set),
                None => set.clone(),
            };
            if merged.is_empty() {
                return None;
            }
            attrs.insert(name.clone(), merged);
        }
        Some(Self { attrs })
    }

    /// Whether every event of `other` is proven to be in `self`.
    pub(crate) fn covers(&self, other: &Self) -> bool {
        self.covers_except(other, None)
    }

    /// Like [`ConjSet::covers`], ignoring attribute `skip` of `self`.
    fn covers_except(&self, other: &Self, skip: Option<&AttrName>) -> bool {
        self.attrs.iter().all(|(name, mine)| {
            Some(name) == skip
                || other
                    .attrs
                    .get(name)
                    .is_some_and(|theirs| theirs.is_subset(mine))
        })
    }

    /// The union of two conjunctions, if it is one: they constrain the same attributes, with
    /// the same sets but for one attribute whose two sets unite into one expressible set.
    pub(crate) fn union_if_conjunction(&self, other: &Self) -> Option<Self> {
        if self.attrs.len() != other.attrs.len() {
            return None;
        }
        let mut differing = None;
        for ((name, mine), (other_name, theirs)) in self.attrs.iter().zip(&other.attrs) {
            if name != other_name {
                return None;
            }
            if mine != theirs {
                if differing.is_some() {
                    return None;
                }
                differing = Some((name, mine, theirs));
            }
        }
        let (name, mine, theirs) = differing?;
        let set = mine.union_if_expressible(theirs)?;
        let mut attrs = self.attrs.clone();
        attrs.insert(name.clone(), set);
        Some(Self { attrs })
    }

    /// A conjunction holding the events of both, with exactly expressible sets: the attributes
    /// both constrain, each with the hull of its two sets.
    pub(crate) fn hull(&self, other: &Self) -> Self {
        let attrs = self
            .attrs
            .iter()
            .filter_map(|(name, mine)| Some((name.clone(), mine.hull(other.attrs.get(name)?))))
            .filter(|(_, set)| !set.is_empty())
            .collect();
        Self { attrs }
    }

    /// The conjunction of constraints, sorted canonically, and whether it says exactly the set.
    pub(crate) fn to_conjunction(&self) -> (Conjunction, bool) {
        let mut exact = true;
        let mut constraints = Vec::new();
        for (name, set) in &self.attrs {
            let (preds, e) = set.to_predicates();
            exact &= e;
            constraints.extend(preds.into_iter().map(|p| Constraint::new(name.clone(), p)));
        }
        (Conjunction::new(constraints), exact)
    }
}

/// Whether the disjunction `dnf` is proven to hold every event of `conj` (see the module docs).
pub(crate) fn dnf_covers(dnf: &[ConjSet], conj: &ConjSet) -> bool {
    if dnf.iter().any(|d| d.covers(conj)) {
        return true;
    }
    conj.attrs.iter().any(|(name, set)| {
        let parts: Vec<&AttrSet> = dnf
            .iter()
            .filter(|d| d.covers_except(conj, Some(name)))
            .filter_map(|d| d.attrs.get(name))
            .collect();
        !parts.is_empty() && set.is_covered_by_union(&parts)
    })
}

/// The satisfiable conjunctions of a routable form, in normal form.
fn normal_form(routable: &Routable) -> Vec<ConjSet> {
    routable
        .conjunctions()
        .iter()
        .filter_map(ConjSet::from_conjunction)
        .collect()
}

impl Routable {
    /// Whether every event matching `other` matches `self`. Sound: `true` only when proven.
    ///
    /// Complete for constraints on one attribute read through one cast: e.g. `x > 0` covers
    /// `x > 5 AND x < 10`, `x != 'a'` covers `x LIKE 'b%'`, and `x < 5 OR x >= 5` covers
    /// `x > 0`. Exactness flags are ignored: both forms are taken as the sets they describe.
    pub fn covers(&self, other: &Routable) -> bool {
        let mine = normal_form(self);
        normal_form(other).iter().all(|c| dnf_covers(&mine, c))
    }

    /// Whether some event may match both. Sound: `false` only when proven disjoint.
    pub fn intersects(&self, other: &Routable) -> bool {
        let theirs = normal_form(other);
        normal_form(self)
            .iter()
            .any(|a| theirs.iter().any(|b| a.intersect(b).is_some()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routable::{IntOp, Predicate, StrOp};

    fn c(attr: &str, pred: Predicate) -> Constraint {
        Constraint::new(AttrName::new(attr).expect("valid test name"), pred)
    }

    fn dnf(conjs: Vec<Vec<Constraint>>) -> Routable {
        Routable::new(conjs.into_iter().map(Conjunction::new).collect(), true)
    }

    fn int(attr: &str, op: IntOp, v: i32) -> Constraint {
        c(attr, Predicate::Int(op, v))
    }

    fn str(attr: &str, op: StrOp, v: &str) -> Constraint {
        c(attr, Predicate::Str(op, v.to_owned()))
    }

    #[test]
    fn single_attribute_covering() {
        let gt0 = dnf(vec![vec![int("x", IntOp::Gt, 0)]]);
        let band = dnf(vec![vec![int("x", IntOp::Gt, 5), int("x", IntOp::Lt, 10)]]);
        assert!(gt0.covers(&band));
        assert!(!band.covers(&gt0));
        let ne_a = dnf(vec![vec![str("x", StrOp::Ne, "a")]]);
        let like_b = dnf(vec![vec![str("x", StrOp::Prefix, "b")]]);
        assert!(ne_a.covers(&like_b));
        let split = dnf(vec![
            vec![int("x", IntOp::Lt, 5)],
            vec![int("x", IntOp::Ge, 5)],
        ]);
        assert!(split.covers(&gt0));
        assert!(!dnf(vec![vec![int("x", IntOp::Lt, 5)]]).covers(&gt0));
    }

    #[test]
    fn union_rule_with_shared_attributes() {
        let y1 = || int("y", IntOp::Eq, 1);
        let a = dnf(vec![
            vec![y1(), int("x", IntOp::Lt, 5)],
            vec![y1(), int("x", IntOp::Ge, 5)],
        ]);
        assert!(a.covers(&dnf(vec![vec![
            y1(),
            int("x", IntOp::Gt, 0),
            str("z", StrOp::Eq, "q")
        ]])));
        assert!(!a.covers(&dnf(vec![vec![int("x", IntOp::Gt, 0)]])));
    }

    #[test]
    fn covering_needs_the_attribute() {
        let a = dnf(vec![vec![c("x", Predicate::Exists)]]);
        assert!(!a.covers(&dnf(vec![vec![int("y", IntOp::Gt, 0)]])));
        assert!(a.covers(&dnf(vec![vec![
            int("x", IntOp::Gt, 0),
            int("y", IntOp::Gt, 0)
        ]])));
        assert!(Routable::match_all(true).covers(&a));
        assert!(!a.covers(&Routable::match_all(true)));
        assert!(a.covers(&Routable::match_none()));
        // An unsatisfiable conjunction is covered by anything.
        let unsat = dnf(vec![vec![
            str("x", StrOp::Prefix, "a"),
            str("x", StrOp::Prefix, "b"),
        ]]);
        assert!(Routable::match_none().covers(&unsat));
    }

    #[test]
    fn intersection() {
        let pa = dnf(vec![vec![str("x", StrOp::Prefix, "a")]]);
        let pb = dnf(vec![vec![str("x", StrOp::Prefix, "b")]]);
        assert!(!pa.intersects(&pb));
        assert!(pa.intersects(&dnf(vec![vec![str("x", StrOp::Suffix, "b")]])));
        let lt = dnf(vec![
            vec![int("x", IntOp::Lt, 3)],
            vec![int("y", IntOp::Eq, 1)],
        ]);
        let gt = dnf(vec![vec![int("x", IntOp::Gt, 3), int("y", IntOp::Eq, 2)]]);
        assert!(!lt.intersects(&gt));
        assert!(lt.intersects(&dnf(vec![vec![int("x", IntOp::Gt, 3)]])));
        assert!(!Routable::match_none().intersects(&Routable::match_all(true)));
        // Different attributes never rule each other out.
        assert!(pa.intersects(&dnf(vec![vec![str("y", StrOp::Prefix, "b")]])));
    }
}
