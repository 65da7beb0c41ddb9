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

use std::cmp::Ordering;

use crate::routable::{Conjunction, Constraint, Routable};
use crate::value::AttrName;

use attrset::AttrSet;

/// A conjunction in normal form: per attribute, the set of values it may take. Every attribute
/// listed must be present. Never holds a set proven empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub(crate) struct ConjSet {
    /// The constrained attributes, sorted by name, each once. A sorted vector rather than a
    /// map: conjunctions constrain a handful of attributes and are cloned and merged far more
    /// often than searched, and a map node is a large allocation.
    attrs: Vec<(AttrName, AttrSet)>,
}

/// One attribute's entry in a [`ConjSet`].
type Entry = (AttrName, AttrSet);

impl ConjSet {
    /// The conjunction of no constraints: every event.
    pub(crate) fn all() -> Self {
        Self::default()
    }

    /// `attr` takes a value in `set`; `None` if the set is proven empty.
    pub(crate) fn single(attr: AttrName, set: AttrSet) -> Option<Self> {
        (!set.is_empty()).then(|| Self {
            attrs: vec![(attr, set)],
        })
    }

    /// The normal form of a conjunction; `None` if it is proven unsatisfiable.
    pub(crate) fn from_conjunction(conj: &Conjunction) -> Option<Self> {
        let mut acc = Self::all();
        for c in conj.constraints() {
            if !acc.restrict(&c.attr, AttrSet::from_predicate(&c.pred)) {
                return None;
            }
        }
        Some(acc)
    }

    /// The number of attributes constrained.
    pub(crate) fn len(&self) -> usize {
        self.attrs.len()
    }

    /// The set of `attr`, if it is constrained.
    fn get(&self, attr: &AttrName) -> Option<&AttrSet> {
        let i = self.attrs.binary_search_by(|(n, _)| n.cmp(attr)).ok()?;
        Some(&self.attrs[i].1)
    }

    /// The events in both; `None` if proven to be none.
    pub(crate) fn intersect(&self, other: &Self) -> Option<Self> {
        let attrs = merge(self.attrs.iter().cloned(), other)?;
        Some(Self { attrs })
    }

    /// Narrows `self` to the events also in `other` (the same as [`ConjSet::intersect`],
    /// without copying `self`). `false` if that is proven to be none (`self` is then left
    /// unspecified).
    pub(crate) fn intersect_in_place(&mut self, other: &Self) -> bool {
        match merge(std::mem::take(&mut self.attrs).into_iter(), other) {
            Some(attrs) => {
                self.attrs = attrs;
                true
            }
            None => false,
        }
    }

    /// Narrows `self` to the events on which `attr` takes a value in `set` as well: the same
    /// as intersecting with [`ConjSet::single`]`(attr, set)`, in place. `false` if that is
    /// proven to be none (`self` is then left unspecified).
    pub(crate) fn restrict(&mut self, attr: &AttrName, set: AttrSet) -> bool {
        if set.is_empty() {
            return false;
        }
        match self.attrs.binary_search_by(|(n, _)| n.cmp(attr)) {
            Ok(i) => {
                let mine = &mut self.attrs[i].1;
                mine.intersect_with(&set);
                !mine.is_empty()
            }
            Err(i) => {
                self.attrs.insert(i, (attr.clone(), set));
                true
            }
        }
    }

    /// Whether every event of `other` is proven to be in `self`.
    pub(crate) fn covers(&self, other: &Self) -> bool {
        self.covers_except(other, None)
    }

    /// Like [`ConjSet::covers`], ignoring attribute `skip` of `self`.
    fn covers_except(&self, other: &Self, skip: Option<&AttrName>) -> bool {
        self.attrs.iter().all(|(name, mine)| {
            Some(name) == skip || other.get(name).is_some_and(|theirs| theirs.is_subset(mine))
        })
    }

    /// The union of two conjunctions, if it is one: they constrain the same attributes, with
    /// the same sets but for one attribute whose two sets unite into one expressible set.
    pub(crate) fn union_if_conjunction(&self, other: &Self) -> Option<Self> {
        if self.attrs.len() != other.attrs.len() {
            return None;
        }
        let mut differing = None;
        for (i, ((name, mine), (other_name, theirs))) in
            self.attrs.iter().zip(&other.attrs).enumerate()
        {
            if name != other_name {
                return None;
            }
            if mine != theirs {
                if differing.is_some() {
                    return None;
                }
                differing = Some((i, mine, theirs));
            }
        }
        let (i, mine, theirs) = differing?;
        let set = mine.union_if_expressible(theirs)?;
        let mut attrs = self.attrs.clone();
        attrs[i].1 = set;
        Some(Self { attrs })
    }

    /// A conjunction holding the events of both, with exactly expressible sets: the attributes
    /// both constrain, each with the hull of its two sets.
    pub(crate) fn hull(&self, other: &Self) -> Self {
        let attrs = self
            .attrs
            .iter()
            .filter_map(|(name, mine)| Some((name.clone(), mine.hull(other.get(name)?))))
            .filter(|(_, set)| !set.is_empty())
            .collect();
        Self { attrs }
    }

    /// The conjunction of constraints, sorted canonically, and whether it says exactly the set.
    pub(crate) fn to_conjunction(&self) -> (Conjunction, bool) {
        let mut exact = true;
        let mut constraints = Vec::with_capacity(2 * self.attrs.len());
        let mut preds = Vec::new();
        for (name, set) in &self.attrs {
            exact &= set.push_predicates(&mut preds);
            constraints.extend(preds.drain(..).map(|p| Constraint::new(name.clone(), p)));
        }
        (Conjunction::new(constraints), exact)
    }
}

/// The entries of `mine` and `other` merged by name, the sets of a name in both intersected;
/// `None` if one such intersection is proven empty. `mine` is sorted by name; an attribute only
/// one side constrains needs no check, since neither holds an empty set.
fn merge(mine: impl Iterator<Item = Entry>, other: &ConjSet) -> Option<Vec<Entry>> {
    let mut mine = mine.peekable();
    let mut theirs = other.attrs.iter().peekable();
    let mut out = Vec::with_capacity(mine.size_hint().0 + other.attrs.len());
    loop {
        let order = match (mine.peek(), theirs.peek()) {
            (Some((a, _)), Some((b, _))) => a.cmp(b),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => return Some(out),
        };
        match order {
            Ordering::Less => out.extend(mine.next()),
            Ordering::Greater => out.extend(theirs.next().cloned()),
            Ordering::Equal => {
                let ((name, mut both), (_, b)) = (mine.next()?, theirs.next()?);
                both.intersect_with(b);
                if both.is_empty() {
                    return None;
                }
                out.push((name, both));
            }
        }
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
            .filter_map(|d| d.get(name))
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
