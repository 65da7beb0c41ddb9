//! Marking members in a cell engine's bitmaps: a word of members at a time.
//!
//! Insertion is where the cell engine's costs are: an unconstrained member belongs in every
//! cell of its attribute, an interval in every cell it overlaps. Rather than setting those
//! bits one by one, each test marks only where its range of cells starts and ends, in scratch
//! words shared by the members of one bitmap word; then one sweep per attribute over the cells
//! turns the marks into each row's word, written once. A member costs a few operations per
//! test, whatever the number of cells.

use std::mem::size_of;

use super::{ABSENT, ANY, CELL0, CellAttr, CellEngine, MAX_CELLS};
use crate::index::compile::AttrTest;

/// Working words of [`CellEngine::extend`], shared by all the engines of an index: per
/// attribute, "constrained", "not an integer test", then where ranges start and where they
/// end, per cell. All zero between calls.
#[derive(Debug, Clone, Default)]
pub(crate) struct MarkScratch(Vec<u64>);

impl MarkScratch {
    /// Heap bytes held.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.0.capacity() * size_of::<u64>()
    }
}

impl CellEngine {
    /// Adds `count` members numbered from `len()` on, the `k`-th with tests `member(k)` (a
    /// removed member may be given as no tests and killed afterwards).
    ///
    /// Works a bitmap word at a time. For each attribute, the members sharing a word are
    /// gathered into per-row words on the stack, then OR-ed into the rows once. A member's
    /// cells form a range, so rather than setting its bit in every cell of the range, the
    /// member's bit is set where its range starts and where it ends, and one sweep over the
    /// cells turns these into the rows' words: the cost per member is a few register
    /// operations (and two cell lookups) per attribute, whatever the number of cells.
    pub(crate) fn extend<'a>(
        &mut self,
        count: usize,
        member: impl Fn(usize) -> &'a [AttrTest],
        scratch: &mut MarkScratch,
    ) {
        let end = self.n + count;
        let words = end.div_ceil(64);
        if words > self.cap {
            // Half as much again: at most a third of the rows' memory is slack, and moving
            // the rows costs about two copies of them per member over the cluster's growth.
            let new_cap = words.max(self.cap + self.cap / 2 + 1);
            for a in &mut self.attrs {
                a.relayout(self.cap, new_cap);
            }
            self.cap = new_cap;
        }
        self.live.resize(words, 0);
        let mut done = 0;
        while done < count {
            let i = self.n;
            let run = (64 - i % 64).min(count - done);
            if !self.mark_run(run, |j| member(done + j), scratch) {
                // Some member tests an attribute new to the universe: add it (every member
                // numbered so far is unconstrained on it) and mark the run again; setting
                // again the bits already set is harmless.
                for j in 0..run {
                    self.add_missing_attrs(member(done + j));
                }
                let complete = self.mark_run(run, |j| member(done + j), scratch);
                debug_assert!(
                    complete,
                    "the universe now holds every attribute of the run"
                );
            }
            for j in 0..run {
                self.live[(i + j) / 64] |= 1 << ((i + j) % 64);
            }
            self.n += run;
            done += run;
        }
    }

    /// Marks the bits of `run` members numbered from `len()` on, all in one bitmap word, the
    /// `j`-th with tests `member(j)`; returns `false`, writing nothing, when some member tests
    /// an attribute outside the universe.
    ///
    /// Member by member, each test sets the member's bit in a scratch word per attribute for
    /// "constrained" and "not an integer test", and in the words of the cells where its range
    /// starts and ends; then, attribute by attribute, a sweep over the cells turns those into
    /// the rows' words (and clears the scratch). A member costs work per test, not per
    /// attribute of the universe.
    fn mark_run<'a>(
        &mut self,
        run: usize,
        member: impl Fn(usize) -> &'a [AttrTest],
        scratch: &mut MarkScratch,
    ) -> bool {
        let word = self.n / 64;
        let first_bit = self.n % 64;
        let run = run.min(64 - first_bit);
        if run == 0 {
            return true;
        }
        let stride = 2 + 2 * MAX_CELLS;
        let universe = self.attrs.len();
        let scratch = &mut scratch.0;
        if scratch.len() < universe * stride {
            scratch.resize(universe * stride, 0);
        }
        for j in 0..run {
            let bit = 1u64 << (first_bit + j);
            let mut k = 0;
            for t in member(j) {
                // Both are sorted by attribute: walk the universe along the tests.
                while self.attrs.get(k).is_some_and(|a| a.attr < t.attr) {
                    k += 1;
                }
                let Some(a) = self.attrs.get(k).filter(|a| a.attr == t.attr) else {
                    scratch.fill(0);
                    return false;
                };
                let base = k * stride;
                let cells = (a.bounds.len() + 1).min(MAX_CELLS);
                scratch[base] |= bit;
                if t.needs_int() {
                    scratch[base + 2 + a.cell(t.lo).min(cells - 1)] |= bit;
                    scratch[base + 2 + MAX_CELLS + a.cell(t.hi).min(cells - 1)] |= bit;
                } else {
                    scratch[base + 1] |= bit;
                }
            }
        }
        let run_mask = (u64::MAX >> (64 - run)) << first_bit;
        let cap = self.cap;
        for (k, a) in self.attrs.iter_mut().enumerate() {
            let base = k * stride;
            let cells = (a.bounds.len() + 1).min(MAX_CELLS);
            let absent = run_mask & !scratch[base];
            let any = absent | scratch[base + 1];
            scratch[base] = 0;
            scratch[base + 1] = 0;
            let rows = &mut a.rows;
            let mut put = |r: usize, m: u64| {
                if m != 0
                    && let Some(w) = rows.get_mut(r * cap + word)
                {
                    *w |= m;
                }
            };
            put(ABSENT, absent);
            put(ANY, any);
            // `active`: the members whose range of cells covers cell `c`; members accepting
            // any value are in every cell.
            let mut active = any;
            for c in 0..cells {
                let (s, e) = (base + 2 + c, base + 2 + MAX_CELLS + c);
                active |= scratch[s];
                put(CELL0 + c, active);
                active &= !scratch[e];
                scratch[s] = 0;
                scratch[e] = 0;
            }
        }
        true
    }

    /// Adds to the universe the attributes of `tests` it lacks (both are sorted by attribute).
    fn add_missing_attrs(&mut self, tests: &[AttrTest]) {
        let mut k = 0;
        for t in tests {
            while self.attrs.get(k).is_some_and(|a| a.attr < t.attr) {
                k += 1;
            }
            if self.attrs.get(k).is_none_or(|a| a.attr != t.attr) {
                let a = self.new_attr(t.attr);
                self.attrs.insert(k, a);
            }
        }
    }

    /// A new attribute in the universe: one cell, every member numbered so far unconstrained
    /// on it (in the `ABSENT` and `ANY` rows and the only cell).
    fn new_attr(&self, attr: u32) -> CellAttr {
        let mut a = CellAttr::new(attr, Box::new([]), self.cap);
        let (full, rest) = (self.n / 64, self.n % 64);
        for row in a.rows.chunks_mut(self.cap) {
            row[..full].fill(u64::MAX);
            if rest != 0 {
                row[full] = (1u64 << rest) - 1;
            }
        }
        a
    }
}
