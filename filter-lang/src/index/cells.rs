//! The cell-bitmap engine: a word-parallel pre-filter for a large cluster of conjunctions.
//!
//! The members of a cluster are numbered `0..n`. For each attribute any member
//! constrains (the cluster's *universe*), the integer line is cut into cells, and each attribute
//! keeps bitmaps over the members:
//!
//! - `ABSENT`: members that do not constrain the attribute (the only ones an event without the
//!   attribute can match);
//! - `ANY`: members that may match whatever the attribute's value: those that do not constrain
//!   it, and those whose test on it is not about integers (string, boolean, `EXISTS`);
//! - one bitmap per cell: members whose integer interval on the attribute overlaps the cell,
//!   and the members of `ANY`.
//!
//! For an event, each attribute of the universe picks `ABSENT` (attribute missing), `ANY`
//! (present without an integer cast) or its cell's bitmap (present, integer in that cell), and
//! the candidates are the AND of the picks with the `live` bitmap: one pass over `n / 64` words
//! per attribute. The result is a superset of the members that match, and every candidate is
//! then checked exactly. With `C` cells and intervals covering a fraction `w` of the line on each
//! of `k` attributes, a candidate is a false positive with probability about
//! `1 - (w / (w + 1/C))^k`, so a few tens of cells keep the exact checks close to the number of
//! real matches.
//!
//! Putting `ANY` members in every cell makes an insertion set a bit in every cell of each
//! attribute the member does not constrain. Bit by bit, those scattered writes (one cache line
//! each) dominated insertion; the engine therefore takes new members in batches
//! ([`CellEngine::extend`]) and builds each bitmap word in a local array first, so the cost per
//! member is register work and matching keeps a single stream per attribute.
//!
//! Cells are cut at quantiles of the members' interval endpoints, so they follow the
//! distribution of the constants rather than assuming a domain. The cluster rebuilds the engine
//! (recomputing the cells) when its size has grown fourfold or fallen to a quarter since the last
//! build,
//! which keeps the cost amortised O(1) per insertion. Between builds, a member whose endpoints
//! fall outside the old quantiles is still indexed correctly, only with more false candidates;
//! an attribute new to the universe has a single cell until the next build.
//!
//! Members are numbered in insertion order and never move between builds: removing one only
//! clears its bit in a `live` bitmap (the candidates start from it), and the cluster rebuilds
//! the engine, compacting the numbers, once a quarter of them are dead. Insertions append; the
//! cluster feeds them in batches (see `cluster`) so that consecutive members share the bitmap
//! words they write.

use std::mem::size_of;

use super::compile::AttrTest;
use super::view::Views;

/// Row of the bitmap of members that do not constrain the attribute.
const ABSENT: usize = 0;
/// Row of the bitmap of members that accept any value of the attribute as far as integers go.
const ANY: usize = 1;
/// Row of the first cell's bitmap.
const CELL0: usize = 2;

/// The largest block, in words: 4096 members, 512 bytes per bitmap row, so that a block's
/// candidate words stay in L1 while every attribute is ANDed in.
const MAX_BLOCK_WORDS: usize = 64;

/// Bitmaps over the members of one cluster, for each attribute of its universe.
///
/// Members are grouped in blocks of `64 * block_words`; each attribute stores, block after
/// block, all its rows for that block. Growing by a block appends to every attribute's vector
/// (no re-layout), and the AND for one block reads one contiguous run per attribute.
#[derive(Debug, Clone)]
pub(crate) struct CellEngine {
    /// The number of members.
    n: usize,
    /// Words per row in a block: a power of two up to `MAX_BLOCK_WORDS`, sized at build time
    /// to the cluster, so small clusters do not pay for big blocks.
    block_words: usize,
    /// The number of blocks allocated.
    blocks: usize,
    /// Bit `i` is set while member `i` is live.
    live: Vec<u64>,
    /// Per attribute of the universe, sorted by attribute id.
    attrs: Vec<CellAttr>,
}

/// The cells and bitmaps of one attribute.
#[derive(Debug, Clone)]
struct CellAttr {
    /// The attribute's id.
    attr: u32,
    /// Where cells start, ascending: cell `j` holds the integers `v` with
    /// `bounds[j - 1] <= v < bounds[j]` (open-ended at both ends).
    bounds: Box<[i32]>,
    /// For each block: `ABSENT`, `ANY` and one row per cell, `block_words` words each.
    rows: Vec<u64>,
}

/// Where member `i` lives: its block, its word within a block row, and its bit.
#[derive(Debug, Clone, Copy)]
struct Pos {
    block: usize,
    word: usize,
    bit: u64,
}

impl CellAttr {
    /// An attribute with cells starting at `bounds`, no member yet.
    fn new(attr: u32, bounds: Box<[i32]>, blocks: usize, block_words: usize) -> Self {
        let rows = vec![0; (CELL0 + bounds.len() + 1) * block_words * blocks];
        Self { attr, bounds, rows }
    }

    /// The cell holding `v`.
    #[inline]
    fn cell(&self, v: i32) -> usize {
        self.bounds.partition_point(|&b| b <= v)
    }

    /// The number of rows per block.
    fn row_count(&self) -> usize {
        CELL0 + self.bounds.len() + 1
    }

    /// Row `r` of block `b`.
    #[inline]
    fn row(&self, b: usize, r: usize, bw: usize) -> &[u64] {
        let start = (b * self.row_count() + r) * bw;
        &self.rows[start..start + bw]
    }

    /// Sets (`on`) or clears the bits of the member at `at` for its test `t` on this
    /// attribute (`None`: unconstrained).
    #[inline]
    fn mark(&mut self, bw: usize, at: Pos, t: Option<&AttrTest>, on: bool) {
        let cells = match t {
            Some(t) if t.needs_int() => Some((self.cell(t.lo), self.cell(t.hi))),
            _ => None,
        };
        let base = at.block * self.row_count() * bw + at.word;
        let rows = &mut self.rows;
        let mut apply = |row: usize| {
            let w = &mut rows[base + row * bw];
            if on {
                *w |= at.bit;
            } else {
                *w &= !at.bit;
            }
        };
        if t.is_none() {
            apply(ABSENT);
        }
        if cells.is_none() {
            apply(ANY);
        }
        let (first, last) = cells.unwrap_or((0, self.bounds.len()));
        (first..=last).for_each(|c| apply(CELL0 + c));
    }
}

impl CellEngine {
    /// Builds the engine over members whose tests are `members[i]`, with about `cells` cells
    /// per attribute.
    pub(crate) fn build(members: &[&[AttrTest]], cells: usize) -> Self {
        let mut universe: Vec<u32> = members
            .iter()
            .flat_map(|m| m.iter().map(|t| t.attr))
            .collect();
        universe.sort_unstable();
        universe.dedup();
        let mut points: Vec<Vec<i32>> = vec![Vec::new(); universe.len()];
        for t in members.iter().flat_map(|m| m.iter()) {
            if t.needs_int()
                && let Ok(k) = universe.binary_search(&t.attr)
            {
                if t.lo != i32::MIN {
                    points[k].push(t.lo);
                }
                if let Some(end) = t.hi.checked_add(1) {
                    points[k].push(end);
                }
            }
        }
        let block_words = members
            .len()
            .div_ceil(64)
            .next_power_of_two()
            .min(MAX_BLOCK_WORDS);
        let blocks = members.len().div_ceil(64 * block_words).max(1);
        let attrs: Vec<CellAttr> = universe
            .iter()
            .zip(points)
            .map(|(&attr, points)| {
                CellAttr::new(attr, quantile_cuts(points, cells), blocks, block_words)
            })
            .collect();
        let mut engine = Self {
            n: 0,
            block_words,
            blocks,
            live: Vec::new(),
            attrs,
        };
        engine.extend(members);
        engine
    }

    /// The number of members numbered so far, live or dead.
    pub(crate) fn len(&self) -> usize {
        self.n
    }

    /// The number of attributes in the universe.
    #[cfg(test)]
    pub(crate) fn universe_len(&self) -> usize {
        self.attrs.len()
    }

    /// Where member `i` lives.
    #[inline]
    fn pos(&self, i: usize) -> Pos {
        let per_block = 64 * self.block_words;
        Pos {
            block: i / per_block,
            word: (i % per_block) / 64,
            bit: 1u64 << (i % 64),
        }
    }

    /// Adds members numbered from `len()` on, with tests `batch[k]` (a removed member may be
    /// given as no tests and killed afterwards).
    ///
    /// Works a bitmap word at a time: for each attribute, the bits of the members sharing a
    /// word are gathered in a small local array and OR-ed into the rows once, so the cost per
    /// member is a few register operations per attribute rather than a cache line per bit.
    pub(crate) fn extend(&mut self, batch: &[&[AttrTest]]) {
        let end = self.n + batch.len();
        let per_block = 64 * self.block_words;
        while end > self.blocks * per_block {
            self.blocks += 1;
            for a in &mut self.attrs {
                let len = a.row_count() * self.block_words * self.blocks;
                a.rows.resize(len, 0);
            }
        }
        for t in batch.iter().flat_map(|m| m.iter()) {
            if let Err(at) = self.attrs.binary_search_by_key(&t.attr, |a| a.attr) {
                self.attrs.insert(at, self.new_attr(t.attr));
            }
        }
        self.live.resize(end.div_ceil(64), 0);
        let bw = self.block_words;
        let mut masks: Vec<u64> = Vec::new();
        let mut cursors: Vec<usize> = Vec::new();
        let mut done = 0;
        while done < batch.len() {
            let i = self.n + done;
            let run = &batch[done..(done + 64 - i % 64).min(batch.len())];
            let at = self.pos(i);
            cursors.clear();
            cursors.resize(run.len(), 0);
            for a in &mut self.attrs {
                let cells = a.bounds.len() + 1;
                masks.clear();
                masks.resize(a.row_count(), 0);
                for (j, tests) in run.iter().enumerate() {
                    let bit = 1u64 << ((i + j) % 64);
                    let cur = &mut cursors[j];
                    while tests.get(*cur).is_some_and(|t| t.attr < a.attr) {
                        *cur += 1;
                    }
                    let (first, last) = match tests.get(*cur).filter(|t| t.attr == a.attr) {
                        None => {
                            masks[ABSENT] |= bit;
                            masks[ANY] |= bit;
                            (0, cells - 1)
                        }
                        Some(t) if t.needs_int() => (a.cell(t.lo), a.cell(t.hi)),
                        Some(_) => {
                            masks[ANY] |= bit;
                            (0, cells - 1)
                        }
                    };
                    for m in &mut masks[CELL0 + first..=CELL0 + last] {
                        *m |= bit;
                    }
                }
                let base = at.block * a.row_count() * bw + at.word;
                for (r, &m) in masks.iter().enumerate() {
                    if m != 0 {
                        a.rows[base + r * bw] |= m;
                    }
                }
            }
            for j in 0..run.len() {
                self.live[(i + j) / 64] |= 1 << ((i + j) % 64);
            }
            done += run.len();
        }
        self.n = end;
    }

    /// Marks member `p` dead: it is no longer a candidate.
    pub(crate) fn kill(&mut self, p: usize) {
        if let Some(w) = self.live.get_mut(p / 64) {
            *w &= !(1u64 << (p % 64));
        }
    }

    /// Writes into `cand` the bitmap of members that may match the event of `views`; returns
    /// whether there is any.
    pub(crate) fn candidates(&self, views: &Views, cand: &mut Vec<u64>) -> bool {
        cand.clear();
        cand.extend_from_slice(&self.live);
        let bw = self.block_words;
        let mut found = false;
        for (b, block) in cand.chunks_mut(bw).enumerate() {
            let mut any = 1;
            for a in &self.attrs {
                any = 0;
                match views.get(a.attr).map(|v| v.int()) {
                    None => and_into(block, a.row(b, ABSENT, bw), &mut any),
                    Some(None) => and_into(block, a.row(b, ANY, bw), &mut any),
                    Some(Some(i)) => and_into(block, a.row(b, CELL0 + a.cell(i), bw), &mut any),
                }
                if any == 0 {
                    block.fill(0);
                    break;
                }
            }
            found |= any != 0;
        }
        found
    }

    /// Heap bytes held.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.attrs.capacity() * size_of::<CellAttr>()
            + self.live.capacity() * size_of::<u64>()
            + self
                .attrs
                .iter()
                .map(|a| a.bounds.len() * size_of::<i32>() + a.rows.capacity() * size_of::<u64>())
                .sum::<usize>()
    }

    /// A new attribute in the universe: one cell, every existing member unconstrained on it.
    fn new_attr(&self, attr: u32) -> CellAttr {
        let mut a = CellAttr::new(attr, Box::new([]), self.blocks, self.block_words);
        for i in 0..self.n {
            a.mark(self.block_words, self.pos(i), None, true);
        }
        a
    }
}

/// `block &= row`, accumulating the result's bits into `any`.
#[inline]
fn and_into(block: &mut [u64], row: &[u64], any: &mut u64) {
    for (c, &w) in block.iter_mut().zip(row) {
        *c &= w;
        *any |= *c;
    }
}

/// About `cells - 1` cut points at quantiles of `points`, ascending and distinct.
///
/// Large inputs are thinned to an evenly strided sample of `64 * cells` points first: the
/// quantiles barely move and the sort stays cheap during rebuilds.
fn quantile_cuts(mut points: Vec<i32>, cells: usize) -> Box<[i32]> {
    if points.is_empty() || cells < 2 {
        return Box::new([]);
    }
    let sample = 64 * cells;
    if points.len() > sample {
        let len = points.len();
        points = (0..sample).map(|k| points[k * len / sample]).collect();
    }
    points.sort_unstable();
    let mut cuts: Vec<i32> = (1..cells)
        .map(|j| points[j * points.len() / cells])
        .collect();
    cuts.dedup();
    cuts.into_boxed_slice()
}

/// Calls `f` with the index of every set bit of `bits`, in increasing order, while it returns
/// `true`; returns whether it always did.
#[inline]
pub(crate) fn for_each_bit(bits: &[u64], mut f: impl FnMut(usize) -> bool) -> bool {
    for (w, &word) in bits.iter().enumerate() {
        let mut b = word;
        while b != 0 {
            let i = w * 64 + b.trailing_zeros() as usize;
            if !f(i) {
                return false;
            }
            b &= b - 1;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::view::View;
    use crate::value::Value;

    fn range(attr: u32, lo: i32, hi: i32) -> AttrTest {
        AttrTest::range_for_tests(attr, lo, hi)
    }

    fn cands(engine: &CellEngine, event: &[(u32, Value)]) -> Vec<usize> {
        let mut views = Views::default();
        views.begin(16);
        for (a, v) in event {
            views.set(*a, View::of(v, None));
        }
        let mut cand = Vec::new();
        let mut out = Vec::new();
        if engine.candidates(&views, &mut cand) {
            for_each_bit(&cand, |i| {
                out.push(i);
                true
            });
        }
        out
    }

    #[test]
    fn candidates_are_a_superset_of_matches() {
        let m0 = [range(0, 0, 9)];
        let m1 = [range(0, 10, 19), range(1, 0, 0)];
        let m2 = [range(1, 5, 100)];
        let members: Vec<&[AttrTest]> = vec![&m0, &m1, &m2];
        let engine = CellEngine::build(&members, 8);
        assert_eq!(engine.universe_len(), 2);
        // x0 = 5, x1 = 50: m0 and m2 match; m1 does not (cells may still admit it).
        let c = cands(&engine, &[(0, Value::Int(5)), (1, Value::Int(50))]);
        assert!(c.contains(&0) && c.contains(&2));
        // x0 absent: only members not constraining x0.
        assert_eq!(cands(&engine, &[(1, Value::Int(50))]), [2]);
        // x1 not an integer: members that constrain it with integers drop out.
        assert_eq!(
            cands(&engine, &[(0, Value::Int(3)), (1, Value::from("a"))]),
            [0]
        );
        // Cut points fall on endpoints, so disjoint intervals are told apart exactly.
        assert_eq!(
            cands(&engine, &[(0, Value::Int(15)), (1, Value::Int(0))]),
            [1]
        );
    }

    #[test]
    fn push_and_kill() {
        let m0 = [range(0, 0, 9)];
        let members: Vec<&[AttrTest]> = vec![&m0];
        let mut engine = CellEngine::build(&members, 4);
        for k in 1..200 {
            engine.extend(&[&[range(0, k, k + 5)]]);
        }
        engine.extend(&[&[range(3, 0, 0)]]);
        assert_eq!(engine.len(), 201);
        assert_eq!(engine.universe_len(), 2);
        // x0 = 150 and x3 = 0: members 145..=150 by their interval on x0 (none constrains x3),
        // and member 200, which constrains only x3.
        let c = cands(&engine, &[(0, Value::Int(150)), (3, Value::Int(0))]);
        for k in (145..=150).chain([200]) {
            assert!(c.contains(&k), "member {k} matches");
        }
        assert!(!c.contains(&0), "member 0's cells end below 150");
        // x3 absent: member 200 drops out. (With x3 = 1 it would stay a candidate: an
        // attribute new to the universe has a single cell until the next build.)
        let c = cands(&engine, &[(0, Value::Int(150))]);
        assert!(!c.contains(&200));
        assert!(c.contains(&150));
        engine.kill(146);
        engine.kill(200);
        assert_eq!(engine.len(), 201);
        let c = cands(&engine, &[(0, Value::Int(150)), (3, Value::Int(0))]);
        assert!(
            !c.contains(&146) && !c.contains(&200),
            "dead members are not candidates"
        );
        assert!(c.contains(&145));
        assert!(cands(&engine, &[(3, Value::Int(0))]).is_empty());
    }

    #[test]
    fn quantile_cuts_are_distinct_and_sorted() {
        let cuts = quantile_cuts(vec![5, 5, 5, 1, 9, 9, 3], 4);
        assert!(cuts.windows(2).all(|w| w[0] < w[1]));
        assert!(quantile_cuts(Vec::new(), 8).is_empty());
    }
}
