//! The values one attribute may take under a conjunction of predicates.
//!
//! Each predicate reads the value through one CESQL cast: `Int` through the cast to Integer,
//! `Str` through the cast to String, `Bool` through the implicit cast to Boolean. A conjunction
//! of predicates on one attribute is therefore a set per *interpretation* (an [`IntSet`], a
//! [`StrSet`], a subset of the booleans), and the attribute's value must be present and satisfy
//! all of those it has. Within one interpretation containment and disjointness are exact.
//!
//! Across interpretations the casts get in the way: `"05"` casts to 5 but its string form is
//! not `"5"`. Two facts keep the mixed cases exact where it is cheap:
//!
//! - A finite string set can be enumerated: the values whose string form is `s` are the string
//!   `s`, the integer `i` if `s` is `i`'s canonical decimal form, and the boolean `b` if `s` is
//!   `"true"` or `"false"`. Likewise a boolean set: a value that casts to `true` is the boolean
//!   or one of the 16 letter-case spellings of `"true"`. Such sets are checked value by value.
//! - A string cast to Integer is `[+-]?[0-9]+`, so a pattern that requires any other character
//!   admits no integer-castable value except possibly a boolean (checked directly).
//!
//! Everything else across interpretations is answered conservatively: "maybe non-empty",
//! "not proven contained".

use std::collections::BTreeSet;

use crate::routable::Predicate;
use crate::value::Value;

use super::ints::IntSet;
use super::strings::StrSet;

/// A set of booleans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct BoolSet {
    /// Whether `true` is in the set.
    t: bool,
    /// Whether `false` is in the set.
    f: bool,
}

impl BoolSet {
    /// The set holding only `b`.
    fn only(b: bool) -> Self {
        Self { t: b, f: !b }
    }

    /// Whether `b` is in the set.
    fn contains(self, b: bool) -> bool {
        if b { self.t } else { self.f }
    }

    /// The booleans in the set.
    fn iter(self) -> impl Iterator<Item = bool> {
        [true, false].into_iter().filter(move |&b| self.contains(b))
    }
}

/// The values one attribute may take: present, and in every interpretation's set that is given.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub(crate) struct AttrSet {
    /// The allowed results of the cast to Integer (`None`: no `Int` predicate).
    int: Option<IntSet>,
    /// The allowed string forms (`None`: no `Str` predicate).
    str: Option<StrSet>,
    /// The allowed results of the implicit cast to Boolean (`None`: no `Bool` predicate).
    bools: Option<BoolSet>,
}

impl AttrSet {
    /// Every present value (`EXISTS x`).
    pub(crate) fn any() -> Self {
        Self::default()
    }

    /// The canonical empty set.
    fn empty() -> Self {
        Self {
            int: Some(IntSet::empty()),
            ..Self::default()
        }
    }

    /// The values a predicate accepts.
    pub(crate) fn from_predicate(pred: &Predicate) -> Self {
        let set = match pred {
            Predicate::Exists => Self::any(),
            Predicate::Int(op, c) => Self {
                int: Some(IntSet::from_op(*op, *c)),
                ..Self::default()
            },
            Predicate::Str(op, c) => Self {
                str: Some(StrSet::from_op(*op, c)),
                ..Self::default()
            },
            Predicate::Bool(b) => Self {
                bools: Some(BoolSet::only(*b)),
                ..Self::default()
            },
        };
        set.simplified()
    }

    /// The values whose string form is none of `excluded`.
    pub(crate) fn string_not_in(excluded: BTreeSet<String>) -> Self {
        Self {
            str: Some(StrSet::not_in(excluded)),
            ..Self::default()
        }
        .simplified()
    }

    /// Whether the value `v` is in the set.
    pub(crate) fn contains(&self, v: &Value) -> bool {
        self.int
            .as_ref()
            .is_none_or(|s| v.to_int().is_some_and(|i| s.contains(i)))
            && self
                .str
                .as_ref()
                .is_none_or(|s| s.contains(&v.to_string_value()))
            && self
                .bools
                .is_none_or(|s| v.to_bool().is_some_and(|b| s.contains(b)))
    }

    /// Every value of the set, if the set can be enumerated (see the module docs).
    fn candidates(&self) -> Option<Vec<Value>> {
        let all: Vec<Value> = if let Some(strings) = self.str.as_ref().and_then(StrSet::finite) {
            strings
                .iter()
                .flat_map(|s| values_with_string_form(s))
                .collect()
        } else {
            self.bools?
                .iter()
                .flat_map(|b| {
                    let word = if b { "true" } else { "false" };
                    letter_cases(word)
                        .into_iter()
                        .map(Value::String)
                        .chain([Value::Bool(b)])
                })
                .collect()
        };
        Some(all.into_iter().filter(|v| self.contains(v)).collect())
    }

    /// The canonical form: empty sets made [`AttrSet::empty`], and the other interpretations
    /// dropped when a finite string set already implies them.
    fn simplified(mut self) -> Self {
        if self.has_empty_component() {
            return Self::empty();
        }
        if self.int.is_none() && self.bools.is_none() {
            // Strings alone (or nothing): no other interpretation to imply or prune.
            return self;
        }
        if self.str.as_ref().and_then(StrSet::finite).is_some() {
            let others = Self {
                str: None,
                ..self.clone()
            };
            let mut implied = true;
            if let Some(strings) = self.str.as_mut() {
                strings.retain_finite(|s| {
                    let values = values_with_string_form(s);
                    implied &= values.iter().all(|v| others.contains(v));
                    values.iter().any(|v| others.contains(v))
                });
            }
            if self.has_empty_component() {
                return Self::empty();
            }
            if implied {
                self.int = None;
                self.bools = None;
            }
        }
        self
    }

    /// Whether some interpretation's set is empty on its own.
    fn has_empty_component(&self) -> bool {
        self.int.as_ref().is_some_and(IntSet::is_empty)
            || self.str.as_ref().is_some_and(StrSet::is_empty)
            || self.bools.is_some_and(|b| b.iter().next().is_none())
    }

    /// Whether the set is proven to hold no value. `false` means "maybe not empty".
    pub(crate) fn is_empty(&self) -> bool {
        if self.has_empty_component() {
            return true;
        }
        if self.only_int().is_some() || self.only_str().is_some() {
            // One interpretation: its set is exact, and not empty.
            return false;
        }
        if let Some(values) = self.candidates() {
            return values.is_empty();
        }
        match (&self.int, &self.str) {
            (Some(_), Some(strings)) => {
                // No candidates means no finite string set and no boolean set: the only
                // integer-castable values whose string form has a non-numeric character are
                // the booleans.
                strings.excludes_numeric()
                    && !self.contains(&Value::Bool(true))
                    && !self.contains(&Value::Bool(false))
            }
            _ => false,
        }
    }

    /// The values in both sets.
    pub(crate) fn intersect(&self, other: &Self) -> Self {
        fn both<T: Clone>(a: &Option<T>, b: &Option<T>, f: impl Fn(&T, &T) -> T) -> Option<T> {
            match (a, b) {
                (Some(x), Some(y)) => Some(f(x, y)),
                (x, None) => x.clone(),
                (None, y) => y.clone(),
            }
        }
        Self {
            int: both(&self.int, &other.int, IntSet::intersect),
            str: both(&self.str, &other.str, StrSet::intersect),
            bools: both(&self.bools, &other.bools, |a, b| BoolSet {
                t: a.t && b.t,
                f: a.f && b.f,
            }),
        }
        .simplified()
    }

    /// Narrows the set to the values also in `other`: [`AttrSet::intersect`] in place, with no
    /// allocation when both read the value through the cast to Integer alone (the common case).
    pub(crate) fn intersect_with(&mut self, other: &Self) {
        if let (Some(theirs), Some(mine)) = (other.only_int(), self.only_int_mut()) {
            // Already canonical: an empty integer set is `AttrSet::empty()`.
            mine.intersect_with(theirs);
        } else {
            *self = self.intersect(other);
        }
    }

    /// Whether every value of `self` is proven to be in `other`.
    pub(crate) fn is_subset(&self, other: &Self) -> bool {
        // One interpretation on both sides (the common case): compare the sets directly.
        if let (Some(b), Some(a)) = (self.only_int(), other.only_int()) {
            return b.is_subset(a);
        }
        if let (Some(b), Some(a)) = (self.only_str(), other.only_str()) {
            return b.is_subset(a);
        }
        if self.has_empty_component() {
            return true;
        }
        if let Some(values) = self.candidates() {
            return values.iter().all(|v| other.contains(v));
        }
        if self.is_empty() {
            return true;
        }
        let int_ok = other
            .int
            .as_ref()
            .is_none_or(|a| self.int.as_ref().is_some_and(|b| b.is_subset(a)));
        let str_ok = other.str.as_ref().is_none_or(|a| {
            self.str.as_ref().is_some_and(|b| b.is_subset(a))
                // `a` excludes finitely many strings: none may be the string form of our values.
                || a.cofinite_exclusions().is_some_and(|excluded| {
                    excluded
                        .iter()
                        .all(|x| values_with_string_form(x).iter().all(|v| !self.contains(v)))
                })
        });
        let bool_ok = other
            .bools
            .is_none_or(|a| self.bools.is_some_and(|b| b.iter().all(|x| a.contains(x))));
        int_ok && str_ok && bool_ok
    }

    /// Whether every value of `self` is proven to be in one of `parts`.
    pub(crate) fn is_covered_by_union(&self, parts: &[&AttrSet]) -> bool {
        if self.is_empty() || parts.iter().any(|a| self.is_subset(a)) {
            return true;
        }
        if let Some(values) = self.candidates() {
            return values.iter().all(|v| parts.iter().any(|a| a.contains(v)));
        }
        // Parts that read the value through one interpretation only unite within it.
        let ints = parts
            .iter()
            .filter_map(|a| a.only_int())
            .fold(IntSet::empty(), |acc, s| acc.union(s));
        if self.int.as_ref().is_some_and(|b| b.is_subset(&ints)) {
            return true;
        }
        let only_str: Vec<&StrSet> = parts.iter().filter_map(|a| a.only_str()).collect();
        self.str
            .as_ref()
            .is_some_and(|b| b.is_covered_by_union(&only_str))
    }

    /// The union, if it is a set whose predicates say exactly what it holds (`x < 5` and
    /// `x > 5` unite into `x != 5`; `x != 'a'` and `x = 'a'` into every value).
    pub(crate) fn union_if_expressible(&self, other: &Self) -> Option<Self> {
        if let (Some(a), Some(b)) = (self.only_int(), other.only_int()) {
            let union = a.union(b);
            union.to_predicates()?;
            return Some(Self {
                int: Some(union),
                ..Self::default()
            });
        }
        let (a, b) = (self.only_str()?, other.only_str()?);
        Some(Self {
            str: Some(a.union_if_pattern(b)?),
            ..Self::default()
        })
    }

    /// The integer set, if the set reads values through the cast to Integer alone.
    fn only_int(&self) -> Option<&IntSet> {
        match self {
            Self {
                int: Some(ints),
                str: None,
                bools: None,
            } => Some(ints),
            _ => None,
        }
    }

    /// [`AttrSet::only_int`], mutable.
    fn only_int_mut(&mut self) -> Option<&mut IntSet> {
        match self {
            Self {
                int: Some(ints),
                str: None,
                bools: None,
            } => Some(ints),
            _ => None,
        }
    }

    /// The string set, if the set reads values through the cast to String alone.
    fn only_str(&self) -> Option<&StrSet> {
        match self {
            Self {
                int: None,
                str: Some(strings),
                bools: None,
            } => Some(strings),
            _ => None,
        }
    }

    /// A set holding both `self` and `other` whose predicates say exactly what it holds.
    pub(crate) fn hull(&self, other: &Self) -> Self {
        if self.is_empty() {
            return other.clone();
        }
        if other.is_empty() {
            return self.clone();
        }
        let int = match (&self.int, &other.int) {
            (Some(a), Some(b)) => Some(a.union(b).hull()),
            _ => None,
        };
        let str = match (&self.str, &other.str) {
            (Some(a), Some(b)) => Some(a.hull(b)),
            _ => None,
        };
        let bools = match (self.bools, other.bools) {
            (Some(a), Some(b)) if a == b => Some(a),
            _ => None,
        };
        Self { int, str, bools }.simplified()
    }

    /// [`AttrSet::push_predicates`] into a new vector.
    #[cfg(test)]
    pub(crate) fn to_predicates(&self) -> (Vec<Predicate>, bool) {
        let mut preds = Vec::new();
        let exact = self.push_predicates(&mut preds);
        (preds, exact)
    }

    /// Appends the set as predicates (at least one) to `preds`, and says whether they say
    /// exactly the set (a component that no conjunction of predicates expresses is left out,
    /// which only widens the set).
    pub(crate) fn push_predicates(&self, preds: &mut Vec<Predicate>) -> bool {
        let start = preds.len();
        let mut exact = true;
        if let Some(ints) = &self.int {
            exact &= ints.push_predicates(preds);
        }
        if let Some(strings) = &self.str {
            match strings.to_predicates() {
                Some(p) => preds.extend(p),
                None => exact = false,
            }
        }
        if let Some(b) = self.bools {
            match (b.t, b.f) {
                (true, false) => preds.push(Predicate::Bool(true)),
                (false, true) => preds.push(Predicate::Bool(false)),
                _ => exact = false,
            }
        }
        if preds.len() == start {
            preds.push(Predicate::Exists);
        }
        exact
    }
}

/// The values whose string form is `s`: the string itself, the integer whose canonical decimal
/// form it is, the boolean whose name it is.
pub(crate) fn values_with_string_form(s: &str) -> Vec<Value> {
    let mut values = vec![Value::String(s.to_owned())];
    if let Some(i) = crate::value::parse_int(s).filter(|i| i.to_string() == s) {
        values.push(Value::Int(i));
    }
    match s {
        "true" => values.push(Value::Bool(true)),
        "false" => values.push(Value::Bool(false)),
        _ => {}
    }
    values
}

/// Every spelling of an ASCII word in any letter case.
fn letter_cases(word: &str) -> Vec<String> {
    word.chars().fold(vec![String::new()], |acc, c| {
        acc.into_iter()
            .flat_map(|prefix| {
                let lower = format!("{prefix}{}", c.to_ascii_lowercase());
                let upper = format!("{prefix}{}", c.to_ascii_uppercase());
                [lower, upper]
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routable::{IntOp, StrOp};

    fn set(preds: &[Predicate]) -> AttrSet {
        preds.iter().fold(AttrSet::any(), |s, p| {
            s.intersect(&AttrSet::from_predicate(p))
        })
    }

    fn int(op: IntOp, c: i32) -> Predicate {
        Predicate::Int(op, c)
    }

    fn str(op: StrOp, c: &str) -> Predicate {
        Predicate::Str(op, c.to_owned())
    }

    #[test]
    fn same_type_relations_are_exact() {
        let gt0 = set(&[int(IntOp::Gt, 0)]);
        let between = set(&[int(IntOp::Gt, 5), int(IntOp::Lt, 10)]);
        assert!(between.is_subset(&gt0));
        assert!(!gt0.is_subset(&between));
        let ne_a = set(&[str(StrOp::Ne, "a")]);
        assert!(set(&[str(StrOp::Prefix, "b")]).is_subset(&ne_a));
        assert!(set(&[str(StrOp::Prefix, "a"), str(StrOp::Prefix, "b")]).is_empty());
        assert!(set(&[Predicate::Bool(true), Predicate::Bool(false)]).is_empty());
        assert!(set(&[Predicate::Bool(true)]).is_subset(&set(&[Predicate::Exists])));
    }

    #[test]
    fn finite_strings_are_enumerated_across_types() {
        // "05" casts to 5, so `x = '05'` implies `x = 5` and the int predicate is dropped.
        let both = set(&[int(IntOp::Eq, 5), str(StrOp::Eq, "05")]);
        assert_eq!(both, set(&[str(StrOp::Eq, "05")]));
        assert!(set(&[str(StrOp::Eq, "05")]).is_subset(&set(&[int(IntOp::Gt, 3)])));
        assert!(set(&[int(IntOp::Eq, 5), str(StrOp::Eq, "abc")]).is_empty());
        assert!(set(&[str(StrOp::Eq, "TRUE")]).is_subset(&set(&[Predicate::Bool(true)])));
        assert!(!set(&[str(StrOp::Eq, "TRUE")]).is_subset(&set(&[int(IntOp::Eq, 1)])));
        // `x = TRUE AND x = 1` holds only for the boolean true.
        let t1 = set(&[Predicate::Bool(true), int(IntOp::Eq, 1)]);
        assert!(!t1.is_empty());
        assert!(t1.is_subset(&set(&[str(StrOp::Eq, "true")])));
        assert!(set(&[Predicate::Bool(true), int(IntOp::Eq, 2)]).is_empty());
    }

    #[test]
    fn numeric_and_non_numeric_do_not_meet() {
        assert!(set(&[int(IntOp::Gt, 5), str(StrOp::Prefix, "a")]).is_empty());
        // The boolean true casts to 1 and reads "true".
        assert!(!set(&[int(IntOp::Gt, 0), str(StrOp::Prefix, "t")]).is_empty());
        assert!(!set(&[int(IntOp::Gt, 5), str(StrOp::Prefix, "1")]).is_empty());
        // Integers never read as "abc".
        assert!(set(&[int(IntOp::Gt, 5)]).is_subset(&set(&[str(StrOp::Ne, "abc")])));
        assert!(!set(&[int(IntOp::Gt, 5)]).is_subset(&set(&[str(StrOp::Ne, "7")])));
    }

    #[test]
    fn unions_within_one_interpretation() {
        let lt5 = set(&[int(IntOp::Lt, 5)]);
        let ge5 = set(&[int(IntOp::Ge, 5)]);
        assert!(set(&[int(IntOp::Gt, 0)]).is_covered_by_union(&[&lt5, &ge5]));
        assert!(!set(&[int(IntOp::Gt, 0)]).is_covered_by_union(&[&lt5]));
        let ne_a = set(&[str(StrOp::Ne, "a")]);
        let eq_a = set(&[str(StrOp::Eq, "a")]);
        assert!(set(&[str(StrOp::Contains, "q")]).is_covered_by_union(&[&ne_a, &eq_a]));
        assert!(set(&[Predicate::Bool(true)]).is_covered_by_union(&[&ne_a, &eq_a]));
    }

    #[test]
    fn predicates_and_hull() {
        let s = set(&[
            int(IntOp::Ge, 1),
            int(IntOp::Le, 3),
            str(StrOp::Prefix, "1"),
        ]);
        let (preds, exact) = s.to_predicates();
        assert!(exact);
        assert_eq!(set(&preds), s);
        let h = set(&[int(IntOp::Eq, 1)]).hull(&set(&[int(IntOp::Eq, 4)]));
        assert_eq!(h, set(&[int(IntOp::Ge, 1), int(IntOp::Le, 4)]));
        assert_eq!(set(&[]).to_predicates(), (vec![Predicate::Exists], true));
    }

    #[test]
    fn letter_cases_spell_every_variant() {
        let cases = letter_cases("true");
        assert_eq!(cases.len(), 16);
        assert!(
            cases
                .iter()
                .all(|c| crate::value::parse_bool(c) == Some(true))
        );
    }
}
