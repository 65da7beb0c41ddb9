//! Conjunctions compiled for matching: one test per constrained attribute.
//!
//! A routable conjunction may hold several constraints on one attribute (`x >= 5 AND x <= 9`).
//! They are merged into one [`AttrTest`]: an integer interval (for every `Int` predicate except
//! `!=`), plus, only when present, the rarer requirements (`!=` integers, string operators,
//! booleans) in an [`Extra`] kept out of line. The common case, an interval, is 16 bytes and is
//! checked with two comparisons against the event's integer view of the attribute.
//!
//! Each predicate keeps its meaning from [`Predicate::matches_value`]: an `Int` predicate holds
//! when the value casts to an integer satisfying it, a `Str` predicate holds on the value's
//! string form, `Bool` on its implicit boolean cast, `Exists` whenever the attribute is present.
//! Merging preserves that, because an interval is the intersection of its `Int` predicates and
//! every one of them requires the cast to succeed.

use std::mem::size_of;

use crate::event::Event;
use crate::routable::{Conjunction, IntOp, Predicate, StrOp};

use super::intern::{Interner, NONE};
use super::view::{View, Views};

/// `flags` bit: the test has at least one `Int` predicate, so the value must cast to an integer
/// in `lo..=hi`.
const NEEDS_INT: u32 = 1;
/// `flags` bit: the test has an [`Extra`], at index `flags >> EXTRA_SHIFT` of the conjunction's
/// extras.
const HAS_EXTRA: u32 = 2;
/// Where the extra's index starts in `flags`.
const EXTRA_SHIFT: u32 = 8;

/// What one conjunction requires of one attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AttrTest {
    /// The attribute's interned id.
    pub(crate) attr: u32,
    /// Smallest integer allowed (meaningful with [`AttrTest::needs_int`]).
    pub(crate) lo: i32,
    /// Largest integer allowed (meaningful with [`AttrTest::needs_int`]).
    pub(crate) hi: i32,
    /// `NEEDS_INT`, `HAS_EXTRA` and the extra's index.
    flags: u32,
}

impl AttrTest {
    /// Whether the value must cast to an integer in `lo..=hi`.
    pub(crate) fn needs_int(&self) -> bool {
        self.flags & NEEDS_INT != 0
    }

    /// The integer value this test pins the attribute to, if it is an `=` on integers.
    pub(crate) fn int_eq(&self) -> Option<i32> {
        (self.needs_int() && self.lo == self.hi).then_some(self.lo)
    }

    /// The index of the test's extra requirements in its conjunction, if any.
    pub(crate) fn extra(&self) -> Option<usize> {
        (self.flags & HAS_EXTRA != 0).then_some((self.flags >> EXTRA_SHIFT) as usize)
    }
}

#[cfg(test)]
impl AttrTest {
    /// A plain interval test, for unit tests of the engines.
    pub(crate) fn range_for_tests(attr: u32, lo: i32, hi: i32) -> Self {
        Self {
            attr,
            lo,
            hi,
            flags: NEEDS_INT,
        }
    }
}

/// The less common requirements on one attribute.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Extra {
    /// Integers the value must not cast to (`x != 3`).
    pub(crate) int_ne: Vec<i32>,
    /// The interned string the string form must equal, or `NONE`.
    pub(crate) str_eq: u32,
    /// Interned strings the string form must differ from.
    pub(crate) str_ne: Vec<u32>,
    /// Prefix, suffix and substring requirements on the string form.
    pub(crate) str_ops: Vec<(StrOp, Box<str>)>,
    /// The boolean the value must cast to (implicit cast).
    pub(crate) boolean: Option<bool>,
}

/// A conjunction ready for matching: tests sorted by attribute id, at most one per attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Compiled {
    /// The tests, sorted by attribute id.
    pub(crate) tests: Box<[AttrTest]>,
    /// Out-of-line requirements, indexed from [`AttrTest::extra`].
    pub(crate) extras: Box<[Extra]>,
}

/// The interners a compiled conjunction refers to.
pub(crate) struct Symbols<'a> {
    /// Attribute names.
    pub(crate) attrs: &'a mut Interner<Box<str>>,
    /// String constants of `=` and `!=`.
    pub(crate) strings: &'a mut Interner<Box<str>>,
}

/// Compiles `conj`, interning its attribute names and string constants.
///
/// Returns `None`, interning nothing, when the conjunction can match no event (an empty
/// interval, two different booleans): such a conjunction needs no place in the index.
pub(crate) fn compile(conj: &Conjunction, syms: &mut Symbols<'_>) -> Option<Compiled> {
    let constraints = conj.constraints();
    // Constraints are sorted by attribute: walk them in runs of one attribute.
    let mut runs: Vec<(&str, Draft<'_>)> = Vec::with_capacity(constraints.len());
    for c in constraints {
        let name = c.attr.as_str();
        if runs.last().is_none_or(|(n, _)| *n != name) {
            runs.push((name, Draft::default()));
        }
        let (_, draft) = runs.last_mut().expect("a run was just pushed");
        draft.add(&c.pred)?;
    }
    let mut tests = Vec::with_capacity(runs.len());
    let mut extras = Vec::new();
    for (name, draft) in runs {
        let attr = syms.attrs.acquire(name);
        let mut flags = if draft.needs_int { NEEDS_INT } else { 0 };
        if draft.has_extra() {
            let index = u32::try_from(extras.len()).expect("one extra per attribute of a filter");
            flags |= HAS_EXTRA | (index << EXTRA_SHIFT);
            extras.push(Extra {
                int_ne: draft.int_ne,
                str_eq: draft.str_eq.map_or(NONE, |s| syms.strings.acquire(s)),
                str_ne: draft
                    .str_ne
                    .iter()
                    .map(|s| syms.strings.acquire(*s))
                    .collect(),
                str_ops: draft.str_ops,
                boolean: draft.boolean,
            });
        }
        tests.push(AttrTest {
            attr,
            lo: draft.lo,
            hi: draft.hi,
            flags,
        });
    }
    // Ids are not in name order; matching walks tests by id.
    tests.sort_by_key(|t| t.attr);
    Some(Compiled {
        tests: tests.into_boxed_slice(),
        extras: extras.into_boxed_slice(),
    })
}

/// Releases the interned ids `compiled` holds.
pub(crate) fn release(compiled: &Compiled, syms: &mut Symbols<'_>) {
    for t in &compiled.tests {
        syms.attrs.release(t.attr);
    }
    for e in &compiled.extras {
        if e.str_eq != NONE {
            syms.strings.release(e.str_eq);
        }
        for &s in &e.str_ne {
            syms.strings.release(s);
        }
    }
}

impl Compiled {
    /// Whether the event whose views are `views` satisfies every test.
    pub(crate) fn holds(&self, views: &Views, ev: &EventCtx<'_>) -> bool {
        self.tests.iter().all(|t| match views.get(t.attr) {
            Some(v) => self.test_holds(t, v, ev),
            None => false,
        })
    }

    /// Whether the present attribute with view `v` satisfies `t`.
    fn test_holds(&self, t: &AttrTest, v: &View, ev: &EventCtx<'_>) -> bool {
        if t.needs_int() {
            match v.int() {
                Some(i) if t.lo <= i && i <= t.hi => {}
                _ => return false,
            }
        }
        let Some(x) = t.extra() else {
            return true;
        };
        let Some(extra) = self.extras.get(x) else {
            return false;
        };
        let int_ok = extra.int_ne.iter().all(|&n| v.int() != Some(n));
        let bool_ok = extra.boolean.is_none_or(|b| v.boolean() == Some(b));
        let eq_ok = extra.str_eq == NONE || v.sid == extra.str_eq;
        let ne_ok = extra.str_ne.iter().all(|&s| v.sid != s);
        int_ok && bool_ok && eq_ok && ne_ok && self.str_ops_hold(extra, t.attr, ev)
    }

    /// Prefix, suffix and substring checks, on the event's own value (the rare slow path).
    fn str_ops_hold(&self, extra: &Extra, attr: u32, ev: &EventCtx<'_>) -> bool {
        if extra.str_ops.is_empty() {
            return true;
        }
        let Some(value) = ev.attrs.key(attr).and_then(|n| ev.event.get(n)) else {
            return false;
        };
        let s = value.to_string_value();
        extra.str_ops.iter().all(|(op, c)| op.apply(&s, c))
    }

    /// Heap bytes held.
    pub(crate) fn heap_bytes(&self) -> usize {
        let extras: usize = self
            .extras
            .iter()
            .map(|e| {
                e.int_ne.capacity() * size_of::<i32>()
                    + e.str_ne.capacity() * size_of::<u32>()
                    + e.str_ops.capacity() * size_of::<(StrOp, Box<str>)>()
                    + e.str_ops.iter().map(|(_, s)| s.len()).sum::<usize>()
            })
            .sum();
        self.tests.len() * size_of::<AttrTest>() + self.extras.len() * size_of::<Extra>() + extras
    }
}

/// The event being matched, for the rare checks that need its values rather than its views.
pub(crate) struct EventCtx<'a> {
    /// The event.
    pub(crate) event: &'a Event,
    /// Attribute names, to find an attribute's value by id.
    pub(crate) attrs: &'a Interner<Box<str>>,
}

/// The requirements on one attribute while a conjunction is being compiled.
struct Draft<'a> {
    needs_int: bool,
    lo: i32,
    hi: i32,
    int_ne: Vec<i32>,
    str_eq: Option<&'a str>,
    str_ne: Vec<&'a str>,
    str_ops: Vec<(StrOp, Box<str>)>,
    boolean: Option<bool>,
}

impl Default for Draft<'_> {
    fn default() -> Self {
        Self {
            needs_int: false,
            lo: i32::MIN,
            hi: i32::MAX,
            int_ne: Vec::new(),
            str_eq: None,
            str_ne: Vec::new(),
            str_ops: Vec::new(),
            boolean: None,
        }
    }
}

impl<'a> Draft<'a> {
    /// Adds one predicate; `None` when the requirements so far can no longer be met together.
    fn add(&mut self, pred: &'a Predicate) -> Option<()> {
        match pred {
            Predicate::Exists => {}
            Predicate::Int(op, c) => {
                self.needs_int = true;
                let c = *c;
                match op {
                    IntOp::Eq => {
                        self.lo = self.lo.max(c);
                        self.hi = self.hi.min(c);
                    }
                    IntOp::Ne => self.int_ne.push(c),
                    IntOp::Lt => self.hi = self.hi.min(c.checked_sub(1)?),
                    IntOp::Le => self.hi = self.hi.min(c),
                    IntOp::Gt => self.lo = self.lo.max(c.checked_add(1)?),
                    IntOp::Ge => self.lo = self.lo.max(c),
                }
                if self.lo > self.hi {
                    return None;
                }
                // `!=` constants outside the interval are implied by it.
                self.int_ne.retain(|n| (self.lo..=self.hi).contains(n));
            }
            Predicate::Str(StrOp::Eq, c) => match self.str_eq {
                Some(prev) if prev != c.as_str() => return None,
                _ => self.str_eq = Some(c),
            },
            Predicate::Str(StrOp::Ne, c) => self.str_ne.push(c),
            Predicate::Str(op, c) => self.str_ops.push((*op, c.as_str().into())),
            Predicate::Bool(b) => match self.boolean {
                Some(prev) if prev != *b => return None,
                _ => self.boolean = Some(*b),
            },
        }
        Some(())
    }

    /// Whether anything beyond the interval is required.
    fn has_extra(&self) -> bool {
        !self.int_ne.is_empty()
            || self.str_eq.is_some()
            || !self.str_ne.is_empty()
            || !self.str_ops.is_empty()
            || self.boolean.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routable::Constraint;
    use crate::value::AttrName;

    fn c(attr: &str, pred: Predicate) -> Constraint {
        Constraint::new(AttrName::new(attr).unwrap(), pred)
    }

    fn compile_one(cs: Vec<Constraint>) -> Option<Compiled> {
        let mut attrs = Interner::default();
        let mut strings = Interner::default();
        let mut syms = Symbols {
            attrs: &mut attrs,
            strings: &mut strings,
        };
        compile(&Conjunction::new(cs), &mut syms)
    }

    #[test]
    fn merges_integer_predicates_into_an_interval() {
        let comp = compile_one(vec![
            c("x", Predicate::Int(IntOp::Gt, 4)),
            c("x", Predicate::Int(IntOp::Le, 9)),
            c("x", Predicate::Int(IntOp::Ne, 100)),
        ])
        .unwrap();
        assert_eq!(comp.tests.len(), 1);
        let t = comp.tests[0];
        assert!(t.needs_int());
        assert_eq!((t.lo, t.hi), (5, 9));
        assert_eq!(t.extra(), None, "x != 100 is implied by 5 <= x <= 9");
    }

    #[test]
    fn detects_unsatisfiable_conjunctions() {
        assert!(compile_one(vec![c("x", Predicate::Int(IntOp::Lt, i32::MIN))]).is_none());
        assert!(compile_one(vec![c("x", Predicate::Int(IntOp::Gt, i32::MAX))]).is_none());
        assert!(
            compile_one(vec![
                c("x", Predicate::Int(IntOp::Gt, 5)),
                c("x", Predicate::Int(IntOp::Lt, 6)),
            ])
            .is_none()
        );
        assert!(
            compile_one(vec![
                c("b", Predicate::Bool(true)),
                c("b", Predicate::Bool(false))
            ])
            .is_none()
        );
        assert!(
            compile_one(vec![
                c("s", Predicate::Str(StrOp::Eq, "a".into())),
                c("s", Predicate::Str(StrOp::Eq, "b".into())),
            ])
            .is_none()
        );
    }

    #[test]
    fn exists_alone_requires_nothing_but_presence() {
        let comp = compile_one(vec![c("x", Predicate::Exists)]).unwrap();
        let t = comp.tests[0];
        assert!(!t.needs_int());
        assert_eq!(t.extra(), None);
    }

    #[test]
    fn keeps_rare_requirements_out_of_line() {
        let comp = compile_one(vec![
            c("a", Predicate::Str(StrOp::Prefix, "ab".into())),
            c("b", Predicate::Int(IntOp::Eq, 3)),
        ])
        .unwrap();
        assert_eq!(comp.tests.len(), 2);
        let with_extra: Vec<_> = comp.tests.iter().filter_map(|t| t.extra()).collect();
        assert_eq!(with_extra, [0]);
        assert_eq!(comp.extras[0].str_ops, [(StrOp::Prefix, "ab".into())]);
        let eq: Vec<_> = comp.tests.iter().filter_map(|t| t.int_eq()).collect();
        assert_eq!(eq, [3]);
    }
}
