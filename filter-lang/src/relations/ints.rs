//! Sets of integers: what the `Int` predicates of one attribute allow.
//!
//! A set is a sorted list of disjoint, non-adjacent closed intervals within the `i32` range,
//! held as `i64` so that `c - 1` and `c + 1` never overflow. The representation is canonical:
//! two sets are equal exactly when they hold the same integers, so containment and
//! disjointness are exact. Most sets are one interval, which is held inline: building and
//! intersecting them allocates nothing.

use crate::routable::{IntOp, Predicate};

/// The smallest CESQL integer.
const MIN: i64 = i32::MIN as i64;
/// The largest CESQL integer.
const MAX: i64 = i32::MAX as i64;

/// A closed interval `(lo, hi)`.
type Interval = (i64, i64);

/// Sorted, disjoint, non-adjacent, non-empty closed intervals within `[MIN, MAX]`.
/// Canonical: `Many` holds two or more, so the derived equality is equality of sets.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Ranges {
    /// No interval or one, inline.
    Few(Option<Interval>),
    /// Two or more.
    Many(Vec<Interval>),
}

impl Ranges {
    /// The intervals.
    fn as_slice(&self) -> &[Interval] {
        match self {
            Ranges::Few(one) => one.as_slice(),
            Ranges::Many(all) => all,
        }
    }

    /// Appends an interval after the others, merging it into the last one if they overlap
    /// or touch.
    fn push(&mut self, (lo, hi): Interval) {
        match self {
            Ranges::Few(None) => *self = Ranges::Few(Some((lo, hi))),
            Ranges::Few(Some(last)) if lo <= last.1 + 1 => last.1 = last.1.max(hi),
            Ranges::Few(Some(first)) => *self = Ranges::Many(vec![*first, (lo, hi)]),
            Ranges::Many(all) => match all.last_mut() {
                Some(last) if lo <= last.1 + 1 => last.1 = last.1.max(hi),
                _ => all.push((lo, hi)),
            },
        }
    }
}

/// A set of 32-bit integers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct IntSet {
    /// The intervals.
    ranges: Ranges,
}

impl IntSet {
    /// Every integer: the attribute casts to Integer.
    #[cfg(test)]
    pub(crate) fn full() -> Self {
        Self::interval(MIN, MAX)
    }

    /// No integer.
    pub(crate) fn empty() -> Self {
        Self {
            ranges: Ranges::Few(None),
        }
    }

    /// A single interval, empty if `lo > hi`; bounds are clamped to the `i32` range.
    fn interval(lo: i64, hi: i64) -> Self {
        let (lo, hi) = (lo.max(MIN), hi.min(MAX));
        Self {
            ranges: Ranges::Few((lo <= hi).then_some((lo, hi))),
        }
    }

    /// The intervals.
    fn ranges(&self) -> &[Interval] {
        self.ranges.as_slice()
    }

    /// The integers `i` with `i op c`.
    pub(crate) fn from_op(op: IntOp, c: i32) -> Self {
        let c = i64::from(c);
        match op {
            IntOp::Eq => Self::interval(c, c),
            IntOp::Ne => Self::interval(MIN, c - 1).union(&Self::interval(c + 1, MAX)),
            IntOp::Lt => Self::interval(MIN, c - 1),
            IntOp::Le => Self::interval(MIN, c),
            IntOp::Gt => Self::interval(c + 1, MAX),
            IntOp::Ge => Self::interval(c, MAX),
        }
    }

    /// Whether the set holds no integer.
    pub(crate) fn is_empty(&self) -> bool {
        self.ranges().is_empty()
    }

    /// Whether `i` is in the set.
    pub(crate) fn contains(&self, i: i32) -> bool {
        let i = i64::from(i);
        self.ranges().iter().any(|&(lo, hi)| lo <= i && i <= hi)
    }

    /// The integers in both sets.
    pub(crate) fn intersect(&self, other: &Self) -> Self {
        let mut ranges = Ranges::Few(None);
        let (mine, theirs) = (self.ranges(), other.ranges());
        let (mut i, mut j) = (0, 0);
        while let (Some(&(alo, ahi)), Some(&(blo, bhi))) = (mine.get(i), theirs.get(j)) {
            let (lo, hi) = (alo.max(blo), ahi.min(bhi));
            if lo <= hi {
                // Pieces of disjoint, non-adjacent intervals: never merged by `push`.
                ranges.push((lo, hi));
            }
            if ahi < bhi {
                i += 1;
            } else {
                j += 1;
            }
        }
        Self { ranges }
    }

    /// Narrows `self` to the integers also in `other` (in place when both are one interval).
    pub(crate) fn intersect_with(&mut self, other: &Self) {
        match (&self.ranges, other.ranges()) {
            (Ranges::Few(Some((lo, hi))), [(olo, ohi)]) => {
                *self = Self::interval((*lo).max(*olo), (*hi).min(*ohi));
            }
            _ => *self = self.intersect(other),
        }
    }

    /// The integers in either set.
    pub(crate) fn union(&self, other: &Self) -> Self {
        let mut mine = self.ranges().iter().peekable();
        let mut theirs = other.ranges().iter().peekable();
        let mut ranges = Ranges::Few(None);
        // Both lists in order of their lower bounds; `push` merges what overlaps or touches.
        loop {
            let next = match (mine.peek(), theirs.peek()) {
                (Some(a), Some(b)) if a <= b => mine.next(),
                (_, Some(_)) => theirs.next(),
                (Some(_), None) => mine.next(),
                (None, None) => break,
            };
            if let Some(&r) = next {
                ranges.push(r);
            }
        }
        Self { ranges }
    }

    /// Whether every integer of `self` is in `other`.
    pub(crate) fn is_subset(&self, other: &Self) -> bool {
        // `other`'s intervals are maximal, so each interval of `self` must sit inside one.
        self.ranges().iter().all(|&(lo, hi)| {
            other
                .ranges()
                .iter()
                .any(|&(olo, ohi)| olo <= lo && hi <= ohi)
        })
    }

    /// The smallest interval holding the set (the set itself if it is empty).
    pub(crate) fn hull(&self) -> Self {
        match (self.ranges().first(), self.ranges().last()) {
            (Some(&(lo, _)), Some(&(_, hi))) => Self::interval(lo, hi),
            _ => Self::empty(),
        }
    }

    /// The set as a conjunction of `Int` predicates, if it is one: an interval less some single
    /// points, which is every set a conjunction of predicates can produce. `None` otherwise
    /// (including for the empty set, which no conjunction of predicates states on its own).
    pub(crate) fn to_predicates(&self) -> Option<Vec<Predicate>> {
        let mut preds = Vec::new();
        self.push_predicates(&mut preds).then_some(preds)
    }

    /// [`IntSet::to_predicates`], appending to `preds`; `false` (and nothing appended) if the
    /// set is not a conjunction of predicates.
    pub(crate) fn push_predicates(&self, preds: &mut Vec<Predicate>) -> bool {
        let (Some(&(lo, _)), Some(&(_, hi))) = (self.ranges().first(), self.ranges().last()) else {
            return false;
        };
        let narrow = |v: i64| i32::try_from(v).expect("interval bounds lie within the i32 range");
        if lo == hi {
            preds.push(Predicate::Int(IntOp::Eq, narrow(lo)));
            return true;
        }
        let start = preds.len();
        if lo > MIN {
            preds.push(Predicate::Int(IntOp::Ge, narrow(lo)));
        }
        if hi < MAX {
            preds.push(Predicate::Int(IntOp::Le, narrow(hi)));
        }
        for pair in self.ranges().windows(2) {
            let (gap_lo, gap_hi) = (pair[0].1 + 1, pair[1].0 - 1);
            if gap_lo != gap_hi {
                preds.truncate(start);
                return false;
            }
            preds.push(Predicate::Int(IntOp::Ne, narrow(gap_lo)));
        }
        if preds.len() == start {
            // The full range: `x >= MIN` states "casts to Integer".
            preds.push(Predicate::Int(IntOp::Ge, i32::MIN));
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(preds: &[(IntOp, i32)]) -> IntSet {
        preds.iter().fold(IntSet::full(), |s, &(op, c)| {
            s.intersect(&IntSet::from_op(op, c))
        })
    }

    #[test]
    fn intersection_merges_bounds() {
        assert_eq!(
            set(&[(IntOp::Gt, 0), (IntOp::Gt, 5)]),
            set(&[(IntOp::Ge, 6)])
        );
        assert_eq!(
            set(&[(IntOp::Ge, 3), (IntOp::Le, 3)]),
            set(&[(IntOp::Eq, 3)])
        );
        assert!(set(&[(IntOp::Eq, 1), (IntOp::Ne, 1)]).is_empty());
        assert!(set(&[(IntOp::Lt, i32::MIN)]).is_empty());
        assert!(set(&[(IntOp::Gt, i32::MAX)]).is_empty());
    }

    #[test]
    fn subset_and_union() {
        let wide = set(&[(IntOp::Gt, 0)]);
        let narrow = set(&[(IntOp::Gt, 5), (IntOp::Lt, 10)]);
        assert!(narrow.is_subset(&wide));
        assert!(!wide.is_subset(&narrow));
        let split = IntSet::from_op(IntOp::Lt, 5).union(&IntSet::from_op(IntOp::Ge, 5));
        assert_eq!(split, IntSet::full());
        assert!(!IntSet::from_op(IntOp::Ne, 7).is_subset(&IntSet::from_op(IntOp::Ne, 8)));
    }

    #[test]
    fn representation_is_canonical() {
        // Two intervals narrowed to one, and one widened to two and back, compare equal to
        // the same set built directly.
        let two = IntSet::from_op(IntOp::Ne, 5);
        assert_eq!(
            two.intersect(&IntSet::from_op(IntOp::Lt, 5)),
            set(&[(IntOp::Le, 4)])
        );
        let mut narrowed = two.clone();
        narrowed.intersect_with(&IntSet::from_op(IntOp::Gt, 5));
        assert_eq!(narrowed, set(&[(IntOp::Ge, 6)]));
        let joined = IntSet::from_op(IntOp::Le, 3).union(&IntSet::from_op(IntOp::Eq, 4));
        assert_eq!(joined, set(&[(IntOp::Lt, 5)]));
        let apart = IntSet::from_op(IntOp::Eq, 9).union(&IntSet::from_op(IntOp::Eq, 1));
        assert_eq!(apart.ranges(), &[(1, 1), (9, 9)]);
        assert_eq!(
            apart.union(&IntSet::from_op(IntOp::Ge, 1)),
            set(&[(IntOp::Ge, 1)])
        );
        let mut gone = IntSet::from_op(IntOp::Eq, 1);
        gone.intersect_with(&IntSet::from_op(IntOp::Eq, 2));
        assert_eq!(gone, IntSet::empty());
    }

    #[test]
    fn predicates_round_trip() {
        for preds in [
            vec![
                (IntOp::Ge, 2),
                (IntOp::Le, 9),
                (IntOp::Ne, 4),
                (IntOp::Ne, 6),
            ],
            vec![(IntOp::Ne, 3)],
            vec![(IntOp::Ge, i32::MIN)],
            vec![(IntOp::Lt, 0)],
            vec![(IntOp::Eq, 7)],
        ] {
            let s = set(&preds);
            let back = s
                .to_predicates()
                .expect("a conjunction's set is expressible");
            let again = back.iter().fold(IntSet::full(), |acc, p| match p {
                Predicate::Int(op, c) => acc.intersect(&IntSet::from_op(*op, *c)),
                other => panic!("unexpected predicate {other:?}"),
            });
            assert_eq!(again, s, "{preds:?}");
        }
        let two_gaps = IntSet::from_op(IntOp::Lt, 0).union(&IntSet::from_op(IntOp::Gt, 5));
        assert_eq!(two_gaps.to_predicates(), None);
        assert_eq!(IntSet::empty().to_predicates(), None);
    }
}
