//! Bounded disjunctions of conjunctions, and the work budget that bounds normalisation.
//!
//! An [`Approx`] is a disjunction kept simplified as it is built: no conjunction proven
//! unsatisfiable, none covered by another, no two whose union is one conjunction. It never
//! holds more than [`MAX_DISJUNCTS`] conjunctions: a product that would exceed it first widens
//! its larger side, and a union beyond it is widened, by merging neighbouring conjunctions into
//! their hull (a conjunction that holds both). Widening is sound and clears the exact flag.
//!
//! Simplification is quadratic in the number of conjunctions and linear in their width, and a
//! 16 KiB expression can have a thousand operators, so one normalisation also has a [`Budget`]
//! of work units (about one per pair of conjunctions compared or combined). Once it is spent,
//! unions are concatenated without simplification, products keep only their smaller side, and
//! the normaliser approximates what is left of the tree by its cheapest sound form. Ordinary
//! filters use a small fraction of it; a pathological one still normalises in milliseconds.

use std::borrow::Cow;
use std::cell::Cell;

use crate::relations::ConjSet;

/// The most conjunctions one approximation holds.
pub(crate) const MAX_DISJUNCTS: usize = 256;

/// Work units for one normalisation: about a hundred milliseconds in a release build at
/// worst, and far more than any hand-written filter needs.
pub(crate) const WORK_BUDGET: u64 = 1_000_000;

/// The work left for one normalisation.
#[derive(Debug)]
pub(crate) struct Budget {
    /// Units left; 0 means spent.
    left: Cell<u64>,
    /// Whether the shortcuts are taken: the linear path for `AND` chains ([`super::chain`]),
    /// and skipping an `E` that only stands in for an exact `T` or `F`. Always, except in the
    /// tests that check them against the general rules.
    fast_paths: bool,
}

impl Budget {
    /// A budget of `units`.
    pub(crate) fn new(units: u64) -> Self {
        Self {
            left: Cell::new(units),
            fast_paths: true,
        }
    }

    /// A budget of `units` for the general rules only (no fast paths), to test against.
    #[cfg(test)]
    pub(crate) fn general(units: u64) -> Self {
        Self {
            fast_paths: false,
            ..Self::new(units)
        }
    }

    /// Spends `units` (as many as are left).
    pub(super) fn spend(&self, units: u64) {
        self.left.set(self.left.get().saturating_sub(units));
    }

    /// Whether the budget is spent.
    pub(crate) fn spent(&self) -> bool {
        self.left.get() == 0
    }

    /// Whether fast paths may be taken.
    pub(super) fn fast_paths(&self) -> bool {
        self.fast_paths
    }
}

/// The work units of comparing or combining conjunctions of these widths, `pairs` times.
pub(super) fn cost(pairs: usize, width: usize) -> u64 {
    let units = pairs.saturating_mul(1 + width / 4);
    u64::try_from(units).unwrap_or(u64::MAX)
}

/// The widest conjunction of a disjunction.
fn width(dnf: &[ConjSet]) -> usize {
    dnf.iter().map(ConjSet::len).max().unwrap_or(0)
}

/// A disjunction of conjunctions that holds at least a set of events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Approx {
    /// The disjuncts, simplified (see the module docs).
    pub(super) dnf: Vec<ConjSet>,
    /// Whether the disjunction holds exactly the set.
    pub(super) exact: bool,
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

    /// A disjunction of any conjunctions, simplified and bounded.
    pub(crate) fn from_disjuncts(dnf: Vec<ConjSet>, exact: bool, budget: &Budget) -> Self {
        Self::bounded(Vec::new(), dnf, exact, budget)
    }

    /// The union.
    pub(crate) fn or(self, other: Self, budget: &Budget) -> Self {
        let exact = self.exact && other.exact;
        // Both sides are simplified already: only the smaller one's disjuncts need inserting.
        let (big, small) = if self.dnf.len() >= other.dnf.len() {
            (self.dnf, other.dnf)
        } else {
            (other.dnf, self.dnf)
        };
        Self::bounded(big, small, exact, budget)
    }

    /// The intersection.
    pub(crate) fn and(&self, other: &Self, budget: &Budget) -> Self {
        let (small, big) = if self.dnf.len() <= other.dnf.len() {
            (self, other)
        } else {
            (other, self)
        };
        if small.dnf.is_empty() {
            return Self::none();
        }
        if budget.spent() {
            // Each side holds the intersection; keep the one with fewer disjuncts.
            return small.clone().inexact();
        }
        let mut exact = self.exact && other.exact;
        let mut big_dnf = Cow::Borrowed(&big.dnf);
        if small.dnf.len().saturating_mul(big_dnf.len()) > MAX_DISJUNCTS {
            widen(big_dnf.to_mut(), MAX_DISJUNCTS / small.dnf.len());
            exact = false;
        }
        let pairs = small.dnf.len() * big_dnf.len();
        budget.spend(cost(pairs, width(&small.dnf) + width(&big_dnf)));
        let dnf: Vec<ConjSet> = small
            .dnf
            .iter()
            .flat_map(|x| big_dnf.iter().filter_map(move |y| x.intersect(y)))
            .collect();
        // An empty product of over-approximations proves the intersection empty.
        let exact = exact || dnf.is_empty();
        Self::bounded(Vec::new(), dnf, exact, budget)
    }

    /// Inserts `new` into the simplified `kept`, then bounds the size.
    fn bounded(kept: Vec<ConjSet>, new: Vec<ConjSet>, exact: bool, budget: &Budget) -> Self {
        let mut exact = exact;
        let mut new = new;
        // A long list (a long IN list) is widened before the quadratic simplification.
        if new.len() > 2 * MAX_DISJUNCTS {
            widen(&mut new, MAX_DISJUNCTS);
            exact = false;
        }
        let mut dnf = insert(kept, new, budget);
        while dnf.len() > MAX_DISJUNCTS {
            widen(&mut dnf, MAX_DISJUNCTS);
            exact = false;
            dnf = insert(Vec::new(), dnf, budget);
        }
        let exact = exact || dnf.is_empty();
        Self { dnf, exact }
    }
}

/// Adds the disjuncts `new` to the simplified disjunction `kept`, keeping it simplified (once
/// the budget is spent, they are only appended).
///
/// A worklist keeps this within `O((|kept| + |new|) · |new|)` conjunction comparisons: a merged
/// conjunction goes back on the list, since it may now cover or merge with others.
fn insert(mut kept: Vec<ConjSet>, new: Vec<ConjSet>, budget: &Budget) -> Vec<ConjSet> {
    let mut work = new;
    work.reverse();
    while let Some(conj) = work.pop() {
        if budget.spent() {
            kept.push(conj);
            continue;
        }
        budget.spend(cost(2 * kept.len() + 1, conj.len() + width(&kept)));
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

/// Merges neighbouring conjunctions into their hull until at most `target` remain (at least 1),
/// merging no more pairs than needed.
fn widen(dnf: &mut Vec<ConjSet>, target: usize) {
    let target = target.max(1);
    while dnf.len() > target {
        let merges = (dnf.len() - target).min(dnf.len() / 2);
        let rest = dnf.split_off(2 * merges);
        let merged = dnf.chunks(2).filter_map(|pair| {
            let (first, others) = pair.split_first()?;
            Some(others.iter().fold(first.clone(), |acc, c| acc.hull(c)))
        });
        *dnf = merged.chain(rest).collect();
    }
}
