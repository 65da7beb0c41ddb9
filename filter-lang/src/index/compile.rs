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

/// What one conjunction requires of one attribute: its presence, and when the conjunction has
/// an `Int` predicate on it, an integer cast in `lo..=hi`.
///
/// Twelve bytes, as the tests are what a candidate's check reads: an empty interval (`lo >
/// hi`, which compilation never keeps as a requirement, since it makes the conjunction
/// unsatisfiable) stands for "no integer requirement". The rarer requirements on the
/// attribute live in an [`Extra`] of the conjunction, found by attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AttrTest {
    /// The attribute's interned id.
    pub(crate) attr: u32,
    /// Smallest integer allowed (meaningful with [`AttrTest::needs_int`]).
    pub(crate) lo: i32,
    /// Largest integer allowed (meaningful with [`AttrTest::needs_int`]).
    pub(crate) hi: i32,
}

impl AttrTest {
    /// A test requiring only presence (as far as integers go).
    pub(crate) fn present(attr: u32) -> Self {
        Self { attr, lo: 1, hi: 0 }
    }

    /// A test requiring an integer cast in `lo..=hi` (`lo <= hi`).
    pub(crate) fn range(attr: u32, lo: i32, hi: i32) -> Self {
        debug_assert!(lo <= hi, "an empty interval means no integer requirement");
        Self { attr, lo, hi }
    }

    /// Whether the value must cast to an integer in `lo..=hi`.
    #[inline]
    pub(crate) fn needs_int(&self) -> bool {
        self.lo <= self.hi
    }

    /// The integer value this test pins the attribute to, if it is an `=` on integers.
    pub(crate) fn int_eq(&self) -> Option<i32> {
        (self.lo == self.hi).then_some(self.lo)
    }
}

#[cfg(test)]
impl AttrTest {
    /// A plain interval test, for unit tests of the engines.
    pub(crate) fn range_for_tests(attr: u32, lo: i32, hi: i32) -> Self {
        Self::range(attr, lo, hi)
    }
}

/// The less common requirements on one attribute.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Extra {
    /// The attribute (which the conjunction's tests also require to be present).
    pub(crate) attr: u32,
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

/// The interners a compiled conjunction refers to.
pub(crate) struct Symbols<'a> {
    /// Attribute names.
    pub(crate) attrs: &'a mut Interner<Box<str>>,
    /// String constants of `=` and `!=`.
    pub(crate) strings: &'a mut Interner<Box<str>>,
}

/// Compiles `conj` into `tests` (cleared first; sorted by attribute id on return), interning
/// its attribute names and string constants; returns the rarer requirements, one [`Extra`] per
/// attribute that has any (none, and unallocated, for a conjunction of plain intervals).
///
/// Returns `None`, holding no interned id, when the conjunction can match no event (an empty
/// interval, two different booleans): such a conjunction needs no place in the index.
///
/// The caller provides `tests` so that compiling allocates nothing in the common case: the
/// index copies the tests into the conjunction's cluster and reuses the buffer.
pub(crate) fn compile(
    conj: &Conjunction,
    syms: &mut Symbols<'_>,
    tests: &mut Vec<AttrTest>,
) -> Option<Box<[Extra]>> {
    tests.clear();
    let mut extras = Vec::new();
    touch_names(conj);
    // Constraints are sorted by attribute: compile them in runs of one attribute.
    let mut rest = conj.constraints();
    while let Some(first) = rest.first() {
        let name = first.attr.as_str();
        let mut run = Run::default();
        let mut len = 0;
        let mut ok = true;
        for c in rest {
            if !same_name(c.attr.as_str(), name) {
                break;
            }
            len += 1;
            ok = ok && run.add(&c.pred).is_some();
        }
        rest = &rest[len..];
        if !ok {
            release(tests, &extras, syms);
            tests.clear();
            return None;
        }
        let attr = syms.attrs.acquire(name);
        if let Some(mut draft) = run.rare {
            // `!=` constants outside the interval are implied by it.
            draft.int_ne.retain(|n| (run.lo..=run.hi).contains(n));
            if draft.has_extra() {
                extras.push(Extra {
                    attr,
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
        }
        tests.push(if run.needs_int {
            AttrTest::range(attr, run.lo, run.hi)
        } else {
            AttrTest::present(attr)
        });
    }
    // Ids are not in name order; matching walks tests by id.
    if !tests.is_sorted_by_key(|t| t.attr) {
        tests.sort_unstable_by_key(|t| t.attr);
    }
    Some(extras.into_boxed_slice())
}

/// Reads the first byte of every constraint's attribute name, so that the cache misses on
/// names scattered over the heap (as the normaliser leaves them) overlap instead of coming one
/// after the other in the compiling loop, whose branches depend on the names' contents.
#[inline]
fn touch_names(conj: &Conjunction) {
    let mut x = 0u8;
    for c in conj.constraints() {
        x ^= c.attr.as_str().as_bytes().first().copied().unwrap_or(0);
    }
    std::hint::black_box(x);
}

/// Whether two attribute names are equal: compared inline, byte by byte, because names are
/// short and a call to the C library's `memcmp` per constraint cost more than the comparison.
#[inline]
fn same_name(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| x == y)
}

/// Releases the interned ids that `tests` and `extras` hold.
pub(crate) fn release(tests: &[AttrTest], extras: &[Extra], syms: &mut Symbols<'_>) {
    for t in tests {
        syms.attrs.release(t.attr);
    }
    for e in extras {
        if e.str_eq != NONE {
            syms.strings.release(e.str_eq);
        }
        for &s in &e.str_ne {
            syms.strings.release(s);
        }
    }
}

/// Whether `extras` compare the string form with interned strings (so that the attribute's
/// string view must be computed).
pub(crate) fn uses_strings(extra: &Extra) -> bool {
    extra.str_eq != NONE || !extra.str_ne.is_empty()
}

/// Whether the event whose views are `views` satisfies every test and every extra
/// requirement (`extras`, usually empty).
#[inline]
pub(crate) fn holds(
    tests: &[AttrTest],
    extras: &[Extra],
    views: &Views,
    ev: &EventCtx<'_>,
) -> bool {
    let tests_hold = tests.iter().all(|t| match views.get(t.attr) {
        Some(v) => !t.needs_int() || v.int().is_some_and(|i| t.lo <= i && i <= t.hi),
        None => false,
    });
    tests_hold
        && extras.iter().all(|e| {
            views
                .get(e.attr)
                .is_some_and(|v| extra_holds(e, e.attr, v, ev))
        })
}

/// Whether the present attribute `attr`, with view `v`, satisfies `extra` (the rare path).
#[cold]
fn extra_holds(extra: &Extra, attr: u32, v: &View, ev: &EventCtx<'_>) -> bool {
    let int_ok = extra.int_ne.iter().all(|&n| v.int() != Some(n));
    let bool_ok = extra.boolean.is_none_or(|b| v.boolean() == Some(b));
    let eq_ok = extra.str_eq == NONE || v.sid == extra.str_eq;
    let ne_ok = extra.str_ne.iter().all(|&s| v.sid != s);
    int_ok && bool_ok && eq_ok && ne_ok && str_ops_hold(extra, attr, ev)
}

/// Prefix, suffix and substring checks, on the event's own value (the rare slow path).
fn str_ops_hold(extra: &Extra, attr: u32, ev: &EventCtx<'_>) -> bool {
    if extra.str_ops.is_empty() {
        return true;
    }
    let Some(value) = ev.attrs.key(attr).and_then(|n| ev.event.get(n)) else {
        return false;
    };
    let s = value.to_string_value();
    extra.str_ops.iter().all(|(op, c)| op.apply(&s, c))
}

/// Heap bytes held by a conjunction's extras.
pub(crate) fn extras_heap_bytes(extras: &[Extra]) -> usize {
    let owned: usize = extras
        .iter()
        .map(|e| {
            e.int_ne.capacity() * size_of::<i32>()
                + e.str_ne.capacity() * size_of::<u32>()
                + e.str_ops.capacity() * size_of::<(StrOp, Box<str>)>()
                + e.str_ops.iter().map(|(_, s)| s.len()).sum::<usize>()
        })
        .sum();
    std::mem::size_of_val(extras) + owned
}

/// The event being matched, for the rare checks that need its values rather than its views.
pub(crate) struct EventCtx<'a> {
    /// The event.
    pub(crate) event: &'a Event,
    /// Attribute names, to find an attribute's value by id.
    pub(crate) attrs: &'a Interner<Box<str>>,
}

/// The requirements on one attribute while a conjunction is being compiled: the integer
/// interval inline (the common case, kept cheap), the rarer requirements in a [`Draft`] created
/// only when needed.
struct Run<'a> {
    needs_int: bool,
    lo: i32,
    hi: i32,
    rare: Option<Draft<'a>>,
}

impl Default for Run<'_> {
    fn default() -> Self {
        Self {
            needs_int: false,
            lo: i32::MIN,
            hi: i32::MAX,
            rare: None,
        }
    }
}

impl<'a> Run<'a> {
    /// Adds one predicate; `None` when the requirements so far can no longer be met together.
    #[inline]
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
                    IntOp::Ne => self.rare.get_or_insert_with(Draft::default).int_ne.push(c),
                    IntOp::Lt => self.hi = self.hi.min(c.checked_sub(1)?),
                    IntOp::Le => self.hi = self.hi.min(c),
                    IntOp::Gt => self.lo = self.lo.max(c.checked_add(1)?),
                    IntOp::Ge => self.lo = self.lo.max(c),
                }
                if self.lo > self.hi {
                    return None;
                }
            }
            _ => self.rare.get_or_insert_with(Draft::default).add(pred)?,
        }
        Some(())
    }
}

/// The rarer requirements on one attribute while a conjunction is being compiled.
#[derive(Default)]
struct Draft<'a> {
    int_ne: Vec<i32>,
    str_eq: Option<&'a str>,
    str_ne: Vec<&'a str>,
    str_ops: Vec<(StrOp, Box<str>)>,
    boolean: Option<bool>,
}

impl<'a> Draft<'a> {
    /// Adds one string or boolean predicate; `None` when the requirements so far can no longer
    /// be met together.
    fn add(&mut self, pred: &'a Predicate) -> Option<()> {
        match pred {
            // Handled by `Run`.
            Predicate::Exists | Predicate::Int(..) => {}
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

    /// A compiled conjunction, for inspection.
    struct Compiled {
        tests: Vec<AttrTest>,
        extras: Box<[Extra]>,
    }

    fn compile_one(cs: Vec<Constraint>) -> Option<Compiled> {
        let mut attrs = Interner::default();
        let mut strings = Interner::default();
        let mut syms = Symbols {
            attrs: &mut attrs,
            strings: &mut strings,
        };
        let mut tests = Vec::new();
        let extras = compile(&Conjunction::new(cs), &mut syms, &mut tests);
        let unsatisfiable = extras.is_none();
        let out = extras.map(|extras| Compiled {
            tests: tests.clone(),
            extras,
        });
        if unsatisfiable {
            assert_eq!(attrs.live(), 0, "nothing stays interned");
            assert_eq!(strings.live(), 0, "nothing stays interned");
        }
        out
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
        assert!(comp.extras.is_empty(), "x != 100 is implied by 5 <= x <= 9");
    }

    #[test]
    fn detects_unsatisfiable_conjunctions() {
        assert!(compile_one(vec![c("x", Predicate::Int(IntOp::Lt, i32::MIN))]).is_none());
        // A later attribute fails after earlier ones were interned: they are released.
        assert!(
            compile_one(vec![
                c("a", Predicate::Str(StrOp::Eq, "s".into())),
                c("b", Predicate::Int(IntOp::Gt, 1)),
                c("z", Predicate::Int(IntOp::Gt, i32::MAX)),
            ])
            .is_none()
        );
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
        assert_eq!(t.int_eq(), None);
        assert!(comp.extras.is_empty());
    }

    #[test]
    fn keeps_rare_requirements_out_of_line() {
        let comp = compile_one(vec![
            c("a", Predicate::Str(StrOp::Prefix, "ab".into())),
            c("b", Predicate::Int(IntOp::Eq, 3)),
        ])
        .unwrap();
        assert_eq!(comp.tests.len(), 2);
        assert_eq!(comp.extras.len(), 1);
        let a = comp.tests.iter().find(|t| !t.needs_int()).unwrap().attr;
        assert_eq!(comp.extras[0].attr, a, "the extra is on `a`");
        assert_eq!(comp.extras[0].str_ops, [(StrOp::Prefix, "ab".into())]);
        let eq: Vec<_> = comp.tests.iter().filter_map(|t| t.int_eq()).collect();
        assert_eq!(eq, [3]);
    }
}
