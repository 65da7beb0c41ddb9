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
//! attribute the member does not constrain, and an interval sets one in every cell it overlaps.
//! Bit by bit, those scattered writes (one cache line each) dominated insertion; the engine
//! therefore takes new members a bitmap word at a time ([`CellEngine::extend`]): each test only
//! marks where its range of cells starts and ends, and one sweep per attribute over the cells
//! turns those marks into the word of every row, written once. The cost per member is a few
//! operations per test, and matching keeps a single row per attribute.
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
//!
//! # Layout
//!
//! Each row (one attribute's `ABSENT`, `ANY` or cell bitmap) is contiguous over all the
//! members, rows `cap` words apart in the attribute's vector. The AND walks the members a chunk
//! of `CHUNK` words (4096 members) at a time, ANDing into the chunk the matching piece of one
//! row per attribute, and abandons a chunk as soon as it is all zero. The chunk's candidate
//! words stay in L1; each attribute's row is read front to back, one sequential stream per
//! attribute that the hardware prefetchers follow. (An earlier layout stored each chunk's rows
//! together, so that consecutive chunks of one row were a whole chunk of rows apart: at a
//! million members, when the rows come from memory, the AND ran at half the speed.)

mod mark;

use std::mem::size_of;

use super::compile::AttrTest;
use super::view::Views;

pub(crate) use self::mark::MarkScratch;

/// Row of the bitmap of members that do not constrain the attribute.
const ABSENT: usize = 0;
/// Row of the bitmap of members that accept any value of the attribute as far as integers go.
const ANY: usize = 1;
/// Row of the first cell's bitmap.
const CELL0: usize = 2;

/// Cells per attribute at most (the stack arrays of [`CellEngine::extend`] have this size).
pub(crate) const MAX_CELLS: usize = 64;

/// Members sampled at most to cut an engine's cells.
const SAMPLE: usize = 4096;

/// Words per chunk of the AND: 4096 members, 512 bytes of candidates, which stay in L1 while
/// every attribute is ANDed in.
const CHUNK: usize = 64;

/// Bitmaps over the members of one cluster, for each attribute of its universe.
#[derive(Debug, Clone)]
pub(crate) struct CellEngine {
    /// The number of members.
    n: usize,
    /// Words reserved per row: row `r` of an attribute is `rows[r * cap..][..words]`.
    /// Grown by half (and the rows moved) when the members outgrow it.
    cap: usize,
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
    /// `ABSENT`, `ANY` and one row per cell, `cap` words each.
    rows: Vec<u64>,
}

impl CellAttr {
    /// An attribute with cells starting at `bounds`, no member yet, rows of `cap` words.
    fn new(attr: u32, bounds: Box<[i32]>, cap: usize) -> Self {
        let rows = vec![0; (CELL0 + bounds.len() + 1) * cap];
        Self { attr, bounds, rows }
    }

    /// The cell holding `v`.
    #[inline]
    fn cell(&self, v: i32) -> usize {
        self.bounds.partition_point(|&b| b <= v)
    }

    /// The number of rows.
    fn row_count(&self) -> usize {
        CELL0 + self.bounds.len() + 1
    }

    /// Words `words` of row `r`, with rows `cap` words apart.
    #[inline]
    fn row(&self, r: usize, cap: usize, words: std::ops::Range<usize>) -> &[u64] {
        let start = r * cap;
        self.rows
            .get(start + words.start..start + words.end)
            .unwrap_or(&[])
    }

    /// Moves the rows `cap` words apart to `new_cap` words apart.
    fn relayout(&mut self, cap: usize, new_cap: usize) {
        let mut rows = vec![0; self.row_count() * new_cap];
        for (to, from) in rows.chunks_mut(new_cap).zip(self.rows.chunks(cap)) {
            let k = from.len().min(to.len());
            to[..k].copy_from_slice(&from[..k]);
        }
        self.rows = rows;
    }
}

impl CellEngine {
    /// Builds the engine over `count` members whose tests are `member(i)`, with about `cells`
    /// cells per attribute of `universe` (sorted, and holding every attribute the members
    /// test).
    ///
    /// Cells are cut at quantiles of the interval endpoints of an evenly strided sample of the
    /// members (at most `SAMPLE` of them): the quantiles barely move, and rebuilding a large
    /// cluster does not sort every endpoint.
    pub(crate) fn build<'a>(
        universe: &[u32],
        count: usize,
        member: impl Fn(usize) -> &'a [AttrTest],
        cells: usize,
        scratch: &mut MarkScratch,
    ) -> Self {
        let mut points: Vec<Vec<i32>> = vec![Vec::new(); universe.len()];
        let step = count.div_ceil(SAMPLE).max(1);
        for i in (0..count).step_by(step) {
            for t in member(i) {
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
        }
        // Room for the growth expected before the cluster's next rebuild would be up to four
        // times the memory; start with a quarter more and grow when needed.
        let cap = (count + count / 4).div_ceil(64).max(1);
        let attrs: Vec<CellAttr> = universe
            .iter()
            .zip(points)
            .map(|(&attr, points)| CellAttr::new(attr, quantile_cuts(points, cells), cap))
            .collect();
        let mut engine = Self {
            n: 0,
            cap,
            live: Vec::new(),
            attrs,
        };
        engine.extend(count, member, scratch);
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
        // Each attribute's row for this event, picked once.
        let mut picks = [0usize; MAX_UNIVERSE_PICKS];
        let picks = &mut picks[..self.attrs.len().min(MAX_UNIVERSE_PICKS)];
        for (p, a) in picks.iter_mut().zip(&self.attrs) {
            *p = match views.get(a.attr).map(|v| v.int()) {
                None => ABSENT,
                Some(None) => ANY,
                Some(Some(i)) => CELL0 + a.cell(i),
            };
        }
        let cap = self.cap;
        let mut found = false;
        for (c, chunk) in cand.chunks_mut(CHUNK).enumerate() {
            let words = c * CHUNK..c * CHUNK + chunk.len();
            let mut any = 1;
            for (a, &r) in self.attrs.iter().zip(picks.iter()) {
                any = 0;
                and_into(chunk, a.row(r, cap, words.clone()), &mut any);
                if any == 0 {
                    chunk.fill(0);
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
}

/// The most attributes an engine's universe may have (the cluster refuses wider ones).
const MAX_UNIVERSE_PICKS: usize = super::cluster::MAX_UNIVERSE;

/// `chunk &= row`, accumulating the result's bits into `any`. A row shorter than the chunk
/// (which does not happen) counts as zeros.
#[inline]
fn and_into(chunk: &mut [u64], row: &[u64], any: &mut u64) {
    if row.len() < chunk.len() {
        chunk.fill(0);
        return;
    }
    for (c, &w) in chunk.iter_mut().zip(row) {
        *c &= w;
        *any |= *c;
    }
}

/// About `cells - 1` cut points at quantiles of `points`, ascending and distinct.
///
/// Large inputs are thinned to an evenly strided sample of `32 * cells` points first: the
/// quantiles barely move (a cut's rank is off by about a third of a cell) and the sort stays
/// cheap during rebuilds.
fn quantile_cuts(mut points: Vec<i32>, cells: usize) -> Box<[i32]> {
    let cells = cells.min(MAX_CELLS);
    if points.is_empty() || cells < 2 {
        return Box::new([]);
    }
    let sample = 32 * cells;
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
        let engine = CellEngine::build(&[0, 1], 3, |i| members[i], 8, &mut MarkScratch::default());
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
        let mut scratch = MarkScratch::default();
        let mut engine = CellEngine::build(&[0], 1, |_| &m0, 4, &mut scratch);
        for k in 1..200 {
            let t = [range(0, k, k + 5)];
            engine.extend(1, |_| &t, &mut scratch);
        }
        let t = [range(3, 0, 0)];
        engine.extend(1, |_| &t, &mut scratch);
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
