//! The cell-bitmap engine: a word-parallel pre-filter for a large cluster of conjunctions.
//!
//! The members of a cluster are numbered densely `0..n`. For each attribute any member
//! constrains (the cluster's *universe*), the integer line is cut into cells, and each cell has a
//! bitmap over the members: bit `i` is set when member `i` *may* be satisfied by some integer in
//! the cell, that is, when its interval on the attribute overlaps the cell, or it does not
//! constrain the attribute, or its test on the attribute is not about integers (a string,
//! boolean or `EXISTS` test). Two more bitmaps per attribute say which members may be satisfied
//! when the attribute is absent (exactly those that do not constrain it) and when it is present
//! but has no integer cast.
//!
//! For an event, each attribute of the universe picks one bitmap (its cell, "no integer" or
//! "absent") and the candidates are the AND of those bitmaps: one pass of 64-bit words per
//! attribute. The result is a superset of the members that match, and every candidate is then
//! checked exactly. With `C` cells and intervals covering a fraction `w` of the line on each of
//! `k` attributes, a candidate is a false positive with probability about
//! `((w + 1/C)^k - w^k) / (w + 1/C)^k`, so a few tens of cells keep the exact checks close to
//! the number of real matches.
//!
//! Cells are cut at quantiles of the members' interval endpoints, so they follow the
//! distribution of the constants rather than assuming a domain. The cluster rebuilds the engine
//! (recomputing the cells) when its size has doubled or fallen to a quarter since the last build,
//! which keeps the cost amortised O(1) per insertion. Between builds, a member whose endpoints
//! fall outside the old quantiles is still indexed correctly, only with more false candidates.
//!
//! Members keep dense numbers: removing member `p` moves the last member into `p`, bit by bit,
//! in every bitmap (the cluster does the same with its member list).

use std::mem::size_of;

use super::compile::AttrTest;
use super::view::Views;

/// Row of the bitmap for "the attribute is absent".
const ABSENT: usize = 0;
/// Row of the bitmap for "present, without an integer cast".
const NON_INT: usize = 1;
/// Row of the first cell's bitmap.
const CELL0: usize = 2;

/// Bitmaps over the members of one cluster, for each attribute of its universe.
#[derive(Debug, Clone)]
pub(crate) struct CellEngine {
    /// The number of members.
    n: usize,
    /// Words allocated per bitmap row (capacity `64 * stride` members).
    stride: usize,
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
    /// `ABSENT`, `NON_INT` and one row per cell, `stride` words each.
    rows: Vec<u64>,
}

impl CellAttr {
    /// The cell holding `v`.
    #[inline]
    fn cell(&self, v: i32) -> usize {
        self.bounds.partition_point(|&b| b <= v)
    }

    /// The number of rows.
    fn row_count(&self) -> usize {
        CELL0 + self.bounds.len() + 1
    }

    /// Sets member `i`'s bits for its test `t` on this attribute (`None`: unconstrained).
    fn add(&mut self, stride: usize, i: usize, t: Option<&AttrTest>) {
        let (word, bit) = (i / 64, 1u64 << (i % 64));
        let cells = self.bounds.len() + 1;
        let (rows, first, last): (&[usize], usize, usize) = match t {
            None => (&[ABSENT, NON_INT], 0, cells - 1),
            Some(t) if t.needs_int() => (&[], self.cell(t.lo), self.cell(t.hi)),
            Some(_) => (&[NON_INT], 0, cells - 1),
        };
        for &r in rows {
            self.rows[r * stride + word] |= bit;
        }
        for c in first..=last {
            self.rows[(CELL0 + c) * stride + word] |= bit;
        }
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
        let stride = members.len().div_ceil(64).max(1);
        let mut attrs: Vec<CellAttr> = universe
            .iter()
            .map(|&attr| {
                let mut points = Vec::new();
                for t in members.iter().flat_map(|m| m.iter()) {
                    if t.attr == attr && t.needs_int() {
                        if t.lo != i32::MIN {
                            points.push(t.lo);
                        }
                        if let Some(end) = t.hi.checked_add(1) {
                            points.push(end);
                        }
                    }
                }
                let bounds = quantile_cuts(points, cells);
                let rows = vec![0; (CELL0 + bounds.len() + 1) * stride];
                CellAttr { attr, bounds, rows }
            })
            .collect();
        for (i, tests) in members.iter().enumerate() {
            set_member(&mut attrs, stride, i, tests);
        }
        Self {
            n: members.len(),
            stride,
            attrs,
        }
    }

    /// The number of members.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.n
    }

    /// The number of attributes in the universe.
    #[cfg(test)]
    pub(crate) fn universe_len(&self) -> usize {
        self.attrs.len()
    }

    /// Adds a member, numbered `len()`, with tests `tests`.
    pub(crate) fn push(&mut self, tests: &[AttrTest]) {
        let i = self.n;
        if i >= self.stride * 64 {
            self.grow();
        }
        for t in tests {
            if let Err(at) = self.attrs.binary_search_by_key(&t.attr, |a| a.attr) {
                self.attrs.insert(at, self.new_attr(t.attr));
            }
        }
        set_member(&mut self.attrs, self.stride, i, tests);
        self.n += 1;
    }

    /// Removes member `p`, moving the last member into its place.
    pub(crate) fn swap_remove(&mut self, p: usize) {
        let Some(last) = self.n.checked_sub(1) else {
            return;
        };
        if p > last {
            return;
        }
        let stride = self.stride;
        let (pw, pb) = (p / 64, 1u64 << (p % 64));
        let (lw, lb) = (last / 64, 1u64 << (last % 64));
        for a in &mut self.attrs {
            for r in 0..a.row_count() {
                let row = &mut a.rows[r * stride..(r + 1) * stride];
                let set = row[lw] & lb != 0;
                row[lw] &= !lb;
                if p != last {
                    if set {
                        row[pw] |= pb;
                    } else {
                        row[pw] &= !pb;
                    }
                }
            }
        }
        self.n = last;
    }

    /// Writes into `cand` the bitmap of members that may match the event of `views`; returns
    /// `false` (with `cand` possibly partial) when there is none.
    pub(crate) fn candidates(&self, views: &Views, cand: &mut Vec<u64>) -> bool {
        let words = self.n.div_ceil(64);
        cand.clear();
        cand.resize(words, !0);
        if !self.n.is_multiple_of(64)
            && let Some(w) = cand.last_mut()
        {
            *w = (1u64 << (self.n % 64)) - 1;
        }
        for a in &self.attrs {
            let r = match views.get(a.attr) {
                None => ABSENT,
                Some(v) => match v.int() {
                    Some(i) => CELL0 + a.cell(i),
                    None => NON_INT,
                },
            };
            let row = &a.rows[r * self.stride..r * self.stride + words];
            let mut any = 0;
            for (c, &w) in cand.iter_mut().zip(row) {
                *c &= w;
                any |= *c;
            }
            if any == 0 {
                return false;
            }
        }
        words > 0
    }

    /// Heap bytes held.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.attrs.capacity() * size_of::<CellAttr>()
            + self
                .attrs
                .iter()
                .map(|a| a.bounds.len() * size_of::<i32>() + a.rows.capacity() * size_of::<u64>())
                .sum::<usize>()
    }

    /// A new attribute in the universe: one cell, every existing member unconstrained on it.
    fn new_attr(&self, attr: u32) -> CellAttr {
        let mut a = CellAttr {
            attr,
            bounds: Box::new([]),
            rows: vec![0; (CELL0 + 1) * self.stride],
        };
        for r in 0..a.row_count() {
            let row = &mut a.rows[r * self.stride..(r + 1) * self.stride];
            for (w, word) in row.iter_mut().enumerate() {
                let start = w * 64;
                *word = match self.n.saturating_sub(start) {
                    0 => 0,
                    k if k >= 64 => !0,
                    k => (1u64 << k) - 1,
                };
            }
        }
        a
    }

    /// Doubles the capacity of every row.
    fn grow(&mut self) {
        let old = self.stride;
        let new = (old * 2).max(1);
        for a in &mut self.attrs {
            let mut rows = vec![0; a.row_count() * new];
            for r in 0..a.row_count() {
                rows[r * new..r * new + old].copy_from_slice(&a.rows[r * old..(r + 1) * old]);
            }
            a.rows = rows;
        }
        self.stride = new;
    }
}

/// Sets member `i`'s bits in every attribute of the universe (`tests` sorted by attribute).
fn set_member(attrs: &mut [CellAttr], stride: usize, i: usize, tests: &[AttrTest]) {
    let mut tests = tests.iter().peekable();
    for a in attrs {
        while tests.next_if(|t| t.attr < a.attr).is_some() {}
        let t = tests.next_if(|t| t.attr == a.attr);
        a.add(stride, i, t);
    }
}

/// About `cells - 1` cut points at quantiles of `points`, ascending and distinct.
fn quantile_cuts(mut points: Vec<i32>, cells: usize) -> Box<[i32]> {
    if points.is_empty() || cells < 2 {
        return Box::new([]);
    }
    points.sort_unstable();
    let mut cuts: Vec<i32> = (1..cells)
        .map(|j| points[j * points.len() / cells])
        .collect();
    cuts.dedup();
    cuts.into_boxed_slice()
}

/// Calls `f` with the index of every set bit of `bits`, in increasing order.
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
    fn push_and_swap_remove_keep_members_dense() {
        let m0 = [range(0, 0, 9)];
        let members: Vec<&[AttrTest]> = vec![&m0];
        let mut engine = CellEngine::build(&members, 4);
        for k in 1..200 {
            engine.push(&[range(0, k, k + 5)]);
        }
        engine.push(&[range(3, 0, 0)]);
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
        engine.swap_remove(146);
        assert_eq!(engine.len(), 200);
        // Member 200 (x3 = 0, unconstrained on x0) is now number 146.
        let c = cands(&engine, &[(3, Value::Int(0))]);
        assert_eq!(c, [146]);
    }

    #[test]
    fn quantile_cuts_are_distinct_and_sorted() {
        let cuts = quantile_cuts(vec![5, 5, 5, 1, 9, 9, 3], 4);
        assert!(cuts.windows(2).all(|w| w[0] < w[1]));
        assert!(quantile_cuts(Vec::new(), 8).is_empty());
    }
}
