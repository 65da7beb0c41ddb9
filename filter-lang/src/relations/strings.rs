//! Sets of strings: what the `Str` predicates of one attribute allow.
//!
//! A conjunction of `Str` predicates on one attribute describes either a finite set (as soon as
//! one `Eq` is present) or a *pattern*: the strings that start with one prefix, end with one
//! suffix, contain some substrings, and are not among finitely many excluded strings. Two
//! prefixes combine only when one extends the other (the longer wins; otherwise nothing is
//! left), and likewise for suffixes.
//!
//! Patterns are kept canonical (no empty or redundant substrings, exclusions only of strings
//! the rest of the pattern admits), and containment between patterns is decided exactly by the
//! *generic string* argument: a pattern with prefix `p`, substrings `c1..cn` and suffix `s`
//! admits `p F c1 F ... F cn F s` for any filler `F` made of a character that appears nowhere
//! else. Such strings are infinitely many (so no finite exclusion removes them all), and a
//! substring without the filler character must lie inside one of the pieces. Hence pattern `B`
//! is inside pattern `A` iff `A`'s prefix is a prefix of `B`'s, `A`'s suffix a suffix of `B`'s,
//! each of `A`'s substrings lies inside one of `B`'s pieces, and `B` admits none of `A`'s
//! exclusions. The same argument shows that a pattern is covered by a union of sets only if
//! some pattern of the union contains it up to exclusions, which makes unions exact too.

use std::collections::BTreeSet;

use crate::routable::{Predicate, StrOp};

/// A set of strings.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum StrSet {
    /// Exactly these strings.
    Finite(BTreeSet<String>),
    /// The (infinitely many) strings a pattern admits.
    Pattern(Pattern),
}

/// Strings with a prefix, a suffix and substrings, less some exclusions. Always infinite.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Pattern {
    /// Every string starts with this.
    prefix: String,
    /// Every string ends with this.
    suffix: String,
    /// Every string contains each of these: sorted, non-empty, none inside another piece.
    contains: Vec<String>,
    /// Strings the rest of the pattern admits but the set does not.
    excluded: BTreeSet<String>,
}

impl Pattern {
    /// Builds a canonical pattern.
    fn new(
        prefix: String,
        suffix: String,
        mut contains: Vec<String>,
        excluded: BTreeSet<String>,
    ) -> Self {
        contains.sort();
        contains.dedup();
        let redundant = |c: &String| {
            c.is_empty()
                || prefix.contains(c.as_str())
                || suffix.contains(c.as_str())
                || contains.iter().any(|o| o != c && o.contains(c.as_str()))
        };
        let contains: Vec<String> = contains.iter().filter(|c| !redundant(c)).cloned().collect();
        let mut pattern = Self {
            prefix,
            suffix,
            contains,
            excluded: BTreeSet::new(),
        };
        pattern.excluded = excluded
            .into_iter()
            .filter(|x| pattern.base_matches(x))
            .collect();
        pattern
    }

    /// Whether `s` has the prefix, the suffix and the substrings (exclusions aside).
    fn base_matches(&self, s: &str) -> bool {
        s.starts_with(&self.prefix)
            && s.ends_with(&self.suffix)
            && self.contains.iter().all(|c| s.contains(c.as_str()))
    }

    /// Whether `s` is in the set.
    fn matches(&self, s: &str) -> bool {
        self.base_matches(s) && !self.excluded.contains(s)
    }

    /// Whether every string with `other`'s prefix, suffix and substrings has this pattern's
    /// (exclusions ignored on both sides): the generic-string argument of the module docs.
    fn base_contains(&self, other: &Pattern) -> bool {
        let pieces = || {
            [&other.prefix, &other.suffix]
                .into_iter()
                .chain(&other.contains)
        };
        other.prefix.starts_with(&self.prefix)
            && other.suffix.ends_with(&self.suffix)
            && self
                .contains
                .iter()
                .all(|c| pieces().any(|p| p.contains(c.as_str())))
    }

    /// Whether every string in the pattern contains a character that no string castable to an
    /// Integer (`[+-]?[0-9]+`) contains.
    fn requires_non_numeric(&self) -> bool {
        [&self.prefix, &self.suffix]
            .into_iter()
            .chain(&self.contains)
            .any(|p| {
                p.chars()
                    .any(|c| !(c.is_ascii_digit() || c == '+' || c == '-'))
            })
    }
}

impl StrSet {
    /// Every string.
    #[cfg(test)]
    pub(crate) fn all() -> Self {
        StrSet::Pattern(Pattern::new(
            String::new(),
            String::new(),
            Vec::new(),
            BTreeSet::new(),
        ))
    }

    /// The strings `s` with `s op c`.
    pub(crate) fn from_op(op: StrOp, c: &str) -> Self {
        let c = c.to_owned();
        let (none, no) = (String::new, BTreeSet::new);
        match op {
            StrOp::Eq => StrSet::Finite(BTreeSet::from([c])),
            StrOp::Ne => StrSet::not_in([c].into()),
            StrOp::Prefix => StrSet::Pattern(Pattern::new(c, none(), Vec::new(), no())),
            StrOp::Suffix => StrSet::Pattern(Pattern::new(none(), c, Vec::new(), no())),
            StrOp::Contains => StrSet::Pattern(Pattern::new(none(), none(), vec![c], no())),
        }
    }

    /// Every string but those in `excluded`.
    pub(crate) fn not_in(excluded: BTreeSet<String>) -> Self {
        StrSet::Pattern(Pattern::new(
            String::new(),
            String::new(),
            Vec::new(),
            excluded,
        ))
    }

    /// Whether the set holds no string (a pattern always holds infinitely many).
    pub(crate) fn is_empty(&self) -> bool {
        matches!(self, StrSet::Finite(set) if set.is_empty())
    }

    /// The strings, if there are finitely many.
    pub(crate) fn finite(&self) -> Option<&BTreeSet<String>> {
        match self {
            StrSet::Finite(set) => Some(set),
            StrSet::Pattern(_) => None,
        }
    }

    /// Whether `s` is in the set.
    pub(crate) fn contains(&self, s: &str) -> bool {
        match self {
            StrSet::Finite(set) => set.contains(s),
            StrSet::Pattern(p) => p.matches(s),
        }
    }

    /// Keeps only the finite set's strings that satisfy `keep` (patterns are left alone).
    pub(crate) fn retain_finite(&mut self, keep: impl FnMut(&String) -> bool) {
        if let StrSet::Finite(set) = self {
            set.retain(keep);
        }
    }

    /// The strings in both sets.
    pub(crate) fn intersect(&self, other: &Self) -> Self {
        match (self, other) {
            (StrSet::Finite(set), o) | (o, StrSet::Finite(set)) => {
                StrSet::Finite(set.iter().filter(|s| o.contains(s)).cloned().collect())
            }
            (StrSet::Pattern(a), StrSet::Pattern(b)) => {
                let longer = |x: &String, y: &String, extends: fn(&str, &str) -> bool| {
                    if extends(x, y) {
                        Some(x.clone())
                    } else if extends(y, x) {
                        Some(y.clone())
                    } else {
                        None
                    }
                };
                let prefix = longer(&a.prefix, &b.prefix, |x, y| x.starts_with(y));
                let suffix = longer(&a.suffix, &b.suffix, |x, y| x.ends_with(y));
                let (Some(prefix), Some(suffix)) = (prefix, suffix) else {
                    return StrSet::Finite(BTreeSet::new());
                };
                let contains = a.contains.iter().chain(&b.contains).cloned().collect();
                let excluded = a.excluded.union(&b.excluded).cloned().collect();
                StrSet::Pattern(Pattern::new(prefix, suffix, contains, excluded))
            }
        }
    }

    /// Whether every string of `self` is in `other`. Exact.
    pub(crate) fn is_subset(&self, other: &Self) -> bool {
        match (self, other) {
            (StrSet::Finite(set), o) => set.iter().all(|s| o.contains(s)),
            (StrSet::Pattern(_), StrSet::Finite(_)) => false,
            (StrSet::Pattern(b), StrSet::Pattern(a)) => {
                a.base_contains(b) && a.excluded.iter().all(|x| !b.matches(x))
            }
        }
    }

    /// Whether every string of `self` is in one of `parts`. Exact (see the module docs).
    pub(crate) fn is_covered_by_union(&self, parts: &[&StrSet]) -> bool {
        let in_some = |s: &str| parts.iter().any(|p| p.contains(s));
        match self {
            StrSet::Finite(set) => set.iter().all(|s| in_some(s)),
            StrSet::Pattern(b) => {
                let containing: Vec<&Pattern> = parts
                    .iter()
                    .filter_map(|p| match p {
                        StrSet::Pattern(a) if a.base_contains(b) => Some(a),
                        _ => None,
                    })
                    .collect();
                let Some((first, rest)) = containing.split_first() else {
                    return false;
                };
                // What no containing pattern admits: strings excluded by every one of them.
                first
                    .excluded
                    .iter()
                    .filter(|x| rest.iter().all(|a| a.excluded.contains(*x)) && b.matches(x))
                    .all(|x| in_some(x))
            }
        }
    }

    /// The excluded strings, if the set is every string but finitely many.
    pub(crate) fn cofinite_exclusions(&self) -> Option<&BTreeSet<String>> {
        match self {
            StrSet::Pattern(p)
                if p.prefix.is_empty() && p.suffix.is_empty() && p.contains.is_empty() =>
            {
                Some(&p.excluded)
            }
            _ => None,
        }
    }

    /// The union, if one side is a pattern whose prefix, suffix and substrings the other side
    /// has: then the union is that pattern less the exclusions the other side does not hold.
    pub(crate) fn union_if_pattern(&self, other: &Self) -> Option<Self> {
        let within = |a: &Pattern, b: &StrSet| match b {
            StrSet::Finite(set) => set.iter().all(|s| a.base_matches(s)),
            StrSet::Pattern(b) => a.base_contains(b),
        };
        let (a, b) = match (self, other) {
            (StrSet::Pattern(a), b) if within(a, b) => (a, b),
            (b, StrSet::Pattern(a)) if within(a, b) => (a, b),
            _ => return None,
        };
        let excluded = a
            .excluded
            .iter()
            .filter(|x| !b.contains(x))
            .cloned()
            .collect();
        Some(StrSet::Pattern(Pattern::new(
            a.prefix.clone(),
            a.suffix.clone(),
            a.contains.clone(),
            excluded,
        )))
    }

    /// Whether no string of the set casts to an Integer.
    pub(crate) fn excludes_numeric(&self) -> bool {
        match self {
            StrSet::Finite(set) => set.iter().all(|s| crate::value::parse_int(s).is_none()),
            StrSet::Pattern(p) => p.requires_non_numeric(),
        }
    }

    /// A set holding both `self` and `other`, expressible as a conjunction of predicates.
    pub(crate) fn hull(&self, other: &Self) -> Self {
        if let (StrSet::Finite(a), StrSet::Finite(b)) = (self, other) {
            let union: BTreeSet<String> = a.union(b).cloned().collect();
            if union.len() <= 1 {
                return StrSet::Finite(union);
            }
        }
        let ends = |s: &StrSet| -> Vec<(String, String)> {
            match s {
                StrSet::Finite(set) => set.iter().map(|x| (x.clone(), x.clone())).collect(),
                StrSet::Pattern(p) => vec![(p.prefix.clone(), p.suffix.clone())],
            }
        };
        let all: Vec<(String, String)> = ends(self).into_iter().chain(ends(other)).collect();
        let Some(((p0, s0), rest)) = all.split_first() else {
            return StrSet::Finite(BTreeSet::new());
        };
        let (mut prefix, mut suffix) = (p0.clone(), s0.clone());
        for (p, s) in rest {
            let n = common_len(prefix.chars(), p.chars());
            prefix = prefix.chars().take(n).collect();
            let n = common_len(suffix.chars().rev(), s.chars().rev());
            suffix = suffix.chars().skip(suffix.chars().count() - n).collect();
        }
        StrSet::Pattern(Pattern::new(prefix, suffix, Vec::new(), BTreeSet::new()))
    }

    /// The set as a conjunction of `Str` predicates, if it is one: `None` for the empty set and
    /// for finite sets of several strings. The set of all strings gives no predicate at all.
    pub(crate) fn to_predicates(&self) -> Option<Vec<Predicate>> {
        match self {
            StrSet::Finite(set) if set.len() == 1 => set
                .first()
                .map(|s| vec![Predicate::Str(StrOp::Eq, s.clone())]),
            StrSet::Finite(_) => None,
            StrSet::Pattern(p) => {
                let mut preds = Vec::new();
                if !p.prefix.is_empty() {
                    preds.push(Predicate::Str(StrOp::Prefix, p.prefix.clone()));
                }
                if !p.suffix.is_empty() {
                    preds.push(Predicate::Str(StrOp::Suffix, p.suffix.clone()));
                }
                let contains = p.contains.iter().map(|c| (StrOp::Contains, c));
                let excluded = p.excluded.iter().map(|x| (StrOp::Ne, x));
                preds.extend(
                    contains
                        .chain(excluded)
                        .map(|(op, s)| Predicate::Str(op, s.clone())),
                );
                Some(preds)
            }
        }
    }
}

/// The length of the common start of two character sequences.
fn common_len(a: impl Iterator<Item = char>, b: impl Iterator<Item = char>) -> usize {
    a.zip(b).take_while(|(x, y)| x == y).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(preds: &[(StrOp, &str)]) -> StrSet {
        preds.iter().fold(StrSet::all(), |s, &(op, c)| {
            s.intersect(&StrSet::from_op(op, c))
        })
    }

    #[test]
    fn incompatible_prefixes_are_empty() {
        assert!(set(&[(StrOp::Prefix, "a"), (StrOp::Prefix, "b")]).is_empty());
        assert!(set(&[(StrOp::Suffix, "xa"), (StrOp::Suffix, "ya")]).is_empty());
        assert!(set(&[(StrOp::Eq, "a"), (StrOp::Ne, "a")]).is_empty());
        assert!(!set(&[(StrOp::Prefix, "ab"), (StrOp::Suffix, "ba")]).is_empty());
        assert_eq!(
            set(&[(StrOp::Prefix, "a"), (StrOp::Prefix, "abc")]),
            set(&[(StrOp::Prefix, "abc")])
        );
    }

    #[test]
    fn pattern_containment() {
        let sub = |b: &[(StrOp, &str)], a: &[(StrOp, &str)]| set(b).is_subset(&set(a));
        assert!(sub(&[(StrOp::Prefix, "b")], &[(StrOp::Ne, "a")]));
        assert!(!sub(&[(StrOp::Prefix, "a")], &[(StrOp::Ne, "a")]));
        assert!(sub(
            &[(StrOp::Prefix, "a"), (StrOp::Ne, "a")],
            &[(StrOp::Ne, "a")]
        ));
        assert!(sub(&[(StrOp::Prefix, "abc")], &[(StrOp::Contains, "bc")]));
        assert!(sub(
            &[(StrOp::Contains, "xbcx")],
            &[(StrOp::Contains, "bc")]
        ));
        assert!(!sub(
            &[(StrOp::Contains, "b"), (StrOp::Contains, "c")],
            &[(StrOp::Contains, "bc")]
        ));
        assert!(sub(&[(StrOp::Eq, "abc")], &[(StrOp::Suffix, "c")]));
        assert!(!sub(&[(StrOp::Suffix, "c")], &[(StrOp::Eq, "abc")]));
        assert!(sub(
            &[(StrOp::Prefix, "ab"), (StrOp::Suffix, "yz")],
            &[(StrOp::Suffix, "z")]
        ));
    }

    #[test]
    fn union_coverage() {
        let ne_a = set(&[(StrOp::Ne, "a")]);
        let eq_a = set(&[(StrOp::Eq, "a")]);
        let pa = set(&[(StrOp::Prefix, "a")]);
        let pb = set(&[(StrOp::Prefix, "b")]);
        assert!(StrSet::all().is_covered_by_union(&[&ne_a, &eq_a]));
        assert!(!StrSet::all().is_covered_by_union(&[&ne_a]));
        assert!(!StrSet::all().is_covered_by_union(&[&pa, &pb]));
        assert!(set(&[(StrOp::Prefix, "ab")]).is_covered_by_union(&[&pa, &pb]));
        assert!(set(&[(StrOp::Eq, "b"), (StrOp::Eq, "b")]).is_covered_by_union(&[&pa, &pb]));
    }

    #[test]
    fn hull_contains_both_and_is_expressible() {
        let a = set(&[(StrOp::Eq, "abcz")]);
        let b = set(&[(StrOp::Prefix, "abd"), (StrOp::Suffix, "z")]);
        let h = a.hull(&b);
        assert!(a.is_subset(&h) && b.is_subset(&h));
        assert_eq!(
            h.to_predicates(),
            Some(vec![
                Predicate::Str(StrOp::Prefix, "ab".into()),
                Predicate::Str(StrOp::Suffix, "z".into())
            ])
        );
    }

    #[test]
    fn numeric_strings() {
        assert!(set(&[(StrOp::Prefix, "a")]).excludes_numeric());
        assert!(!set(&[(StrOp::Prefix, "1")]).excludes_numeric());
        assert!(!set(&[(StrOp::Eq, "+1")]).excludes_numeric());
    }
}
