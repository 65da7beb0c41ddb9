//! Clusters: the conjunctions reached through one *access key*.
//!
//! Every indexed conjunction belongs to exactly one cluster, chosen at insertion from its own
//! constraints (see [`Key`]). An event visits only the clusters whose key it satisfies, found by
//! hash lookups on its attributes' views, so conjunctions about attributes or values the event
//! does not carry cost nothing. Inside a visited cluster, a small cluster checks each member
//! exactly; a large one first narrows its members with a [`CellEngine`].
//!
//! A cluster stores what matching needs of its members itself, in position order: a
//! [`Member`] record (conjunction, entry, destination, flags) and the member's tests, copied
//! into one array shared by the cluster's members. Checking a candidate therefore reads one
//! record and one short run of tests, both found from the candidate's position, instead of
//! chasing the conjunction's record, then its boxed tests, then its entry: at a million
//! subscriptions, when the index no longer fits in cache, those were a cache miss each.

use std::mem::size_of;

use super::cells::{CellEngine, MarkScratch, for_each_bit};
use super::compile::AttrTest;
use super::intern::NONE;
use super::view::Views;

/// Below this many members a cluster is scanned member by member: the exact check of one
/// member costs a few nanoseconds, about what the engine spends per attribute per word.
pub(crate) const ENGINE_MIN: usize = 256;
/// A cluster whose members constrain more attributes than this is scanned: the engine would
/// spend one pass per attribute of the universe even when the event has few of them.
pub(crate) const MAX_UNIVERSE: usize = 48;
/// Cells per attribute. The engine's memory is about `(CELLS + 2)` bits per member and
/// attribute of the universe; the false-candidate rate falls as `1 / CELLS` (see `cells`).
pub(crate) const CELLS: usize = 32;

/// What an event must satisfy for a cluster to be visited.
///
/// Equality keys are the most selective: only events carrying that exact value visit the
/// cluster, as in the access-predicate clustering of Fabret et al. (SIGMOD 2001). A conjunction
/// without equality is reached through the presence of one of its attributes (every predicate
/// requires its attribute to be present), and the empty conjunction through [`Key::Always`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Key {
    /// Every event: conjunctions without constraints.
    Always,
    /// The attribute is present.
    Present(u32),
    /// The attribute's integer cast equals the value.
    IntEq(u32, i32),
    /// The attribute's string form equals the interned string.
    StrEq(u32, u32),
    /// The attribute's implicit boolean cast equals the value.
    BoolEq(u32, bool),
}

impl Key {
    /// Whether the key requires a particular value (rather than mere presence, or nothing).
    pub(crate) fn is_equality(self) -> bool {
        matches!(self, Key::IntEq(..) | Key::StrEq(..) | Key::BoolEq(..))
    }
}

/// The engine is rebuilt (fresh cells) when the live count has grown this many times since the
/// last build. Fourfold rather than twofold: a rebuild re-marks every member, and with W2 the
/// rebuilds dominated insertion cost at ×2 (amortised 2 re-marks per insertion, 1/3 at ×4),
/// while cells cut from a quarter of the members are still close to the quantiles.
const GROWTH: usize = 4;

/// Members fed to the engine at once (a bitmap word), so that the batch's bit writes hit the
/// same words instead of scattering one cache line per bit, and the engine's sweep over an
/// attribute's cells is shared by a whole word. Members waiting for their batch are checked one
/// by one when matching, a few nanoseconds each from the cluster's own arrays.
const BATCH: usize = 64;

/// [`Member::flags`] bit: the member's entry has other conjunctions, so the entry may be
/// reached more than once per event (and is marked when decided).
pub(crate) const MULTI: u8 = 1;
/// [`Member::flags`] bit: the entry has a residual filter to evaluate after a match.
pub(crate) const RESIDUAL: u8 = 2;
/// [`Member::flags`] bit: the conjunction has rarer requirements ([`Extra`]s: strings,
/// booleans, `!=`), kept in its record in the index.
///
/// [`Extra`]: super::compile::Extra
pub(crate) const EXTRAS: u8 = 4;

/// What a cluster keeps about one member: enough to check it and report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Member {
    /// The conjunction's slot in the index; `NONE` once removed (a tombstone).
    pub(crate) slot: u32,
    /// The conjunction's entry.
    pub(crate) entry: u32,
    /// The entry's interned destination.
    pub(crate) dest: u32,
    /// Where the member's tests start in the cluster's test array.
    start: u32,
    /// How many tests the member has.
    len: u32,
    /// `MULTI`, `RESIDUAL`, `EXTRAS`.
    pub(crate) flags: u8,
}

impl Member {
    /// A member record for conjunction `slot` of `entry` (its tests are placed by
    /// [`Cluster::push`]).
    pub(crate) fn new(slot: u32, entry: u32, dest: u32, flags: u8) -> Self {
        Self {
            slot,
            entry,
            dest,
            start: 0,
            len: 0,
            flags,
        }
    }

    /// The member's tests within the cluster's test array.
    #[inline]
    fn range(&self) -> std::ops::Range<usize> {
        self.start as usize..self.start as usize + self.len as usize
    }
}

/// The conjunctions sharing one access key.
///
/// Members are numbered by position in `members`, which only grows between compactions: a
/// removed member leaves a tombstone (slot `NONE`), so removal never moves another member's
/// bits, and its tests stay in `tests` until the next compaction. The engine covers the first
/// `engine.len()` positions; later ones (at most a batch) are checked one by one until the next
/// batch is fed in. Once a quarter of the positions are tombstones, or the live count has grown
/// fourfold or fallen to a quarter since the engine was last built, the cluster compacts and
/// rebuilds: amortised O(1) per update.
#[derive(Debug, Clone)]
pub(crate) struct Cluster {
    /// The key, to unregister the cluster when it empties.
    pub(crate) key: Key,
    /// Member records by position.
    members: Vec<Member>,
    /// The members' tests, each member's in one run (see [`Member::range`]), in position order.
    tests: Vec<AttrTest>,
    /// The number of tests of every member since the last compaction, when they all have the
    /// same (as in workload W2): the tests of position `p` then start at `p * stride`, an
    /// address known without reading the member's record, so both loads of a candidate's
    /// check proceed in parallel. `NONE` otherwise.
    stride: u32,
    /// The number of tombstones in `members`.
    dead: usize,
    /// The pre-filter, when the cluster is large enough and its universe small enough.
    engine: Option<CellEngine>,
    /// The live count when the engine was last built or refused.
    decided_at: usize,
}

/// Whether an update renumbered the cluster's members (their positions must be re-read).
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Renumbered {
    /// Positions are unchanged.
    No,
    /// The cluster was compacted: read every member's position from [`Cluster::slots`].
    Yes,
}

impl Cluster {
    /// An empty cluster for `key`.
    pub(crate) fn new(key: Key) -> Self {
        Self {
            key,
            members: Vec::new(),
            tests: Vec::new(),
            stride: NONE,
            dead: 0,
            engine: None,
            decided_at: 0,
        }
    }

    /// The number of live members.
    pub(crate) fn len(&self) -> usize {
        self.members.len() - self.dead
    }

    /// The conjunction slot at each position (`NONE` for tombstones).
    pub(crate) fn slots(&self) -> impl Iterator<Item = u32> + '_ {
        self.members.iter().map(|m| m.slot)
    }

    /// The tests of the member at `pos` (none for a tombstone or an unknown position).
    pub(crate) fn tests_at(&self, pos: u32) -> &[AttrTest] {
        match self.members.get(pos as usize) {
            Some(m) if m.slot != NONE => self.tests.get(m.range()).unwrap_or(&[]),
            _ => &[],
        }
    }

    /// Whether the engine is in use (for tests and statistics).
    pub(crate) fn has_engine(&self) -> bool {
        self.engine.is_some()
    }

    /// Adds `member` with `tests` (sorted by attribute); returns its position and whether the
    /// cluster was renumbered.
    pub(crate) fn push(
        &mut self,
        mut member: Member,
        tests: &[AttrTest],
        scratch: &mut MarkScratch,
    ) -> (u32, Renumbered) {
        let pos = u32::try_from(self.members.len()).expect("fewer than 2^32 conjunctions");
        member.start = u32::try_from(self.tests.len()).expect("fewer than 2^32 tests per cluster");
        member.len = u32::try_from(tests.len()).expect("fewer than 2^32 tests per conjunction");
        if self.members.is_empty() {
            self.stride = member.len;
        } else if self.stride != member.len {
            self.stride = NONE;
        }
        self.tests.extend_from_slice(tests);
        self.members.push(member);
        let live = self.len();
        let threshold = ENGINE_MIN.max(GROWTH * self.decided_at);
        if live >= threshold {
            return (pos, self.rebuild(scratch));
        }
        if let Some(engine) = &mut self.engine
            && self.members.len() - engine.len() >= BATCH
        {
            let start = engine.len();
            let pending = &self.members[start..];
            let tests = &self.tests;
            engine.extend(
                pending.len(),
                |k| {
                    let m = &pending[k];
                    if m.slot == NONE {
                        &[]
                    } else {
                        tests.get(m.range()).unwrap_or(&[])
                    }
                },
                scratch,
            );
            for (k, m) in pending.iter().enumerate() {
                if m.slot == NONE {
                    engine.kill(start + k);
                }
            }
        }
        (pos, Renumbered::No)
    }

    /// Removes the member at `pos`; returns whether the cluster was renumbered.
    pub(crate) fn remove(&mut self, pos: u32, scratch: &mut MarkScratch) -> Renumbered {
        let pos = pos as usize;
        match self.members.get_mut(pos) {
            Some(m) if m.slot != NONE => m.slot = NONE,
            _ => return Renumbered::No,
        }
        self.dead += 1;
        if let Some(engine) = &mut self.engine
            && pos < engine.len()
        {
            engine.kill(pos);
        }
        let live = self.len();
        if live == 0 {
            self.members.clear();
            self.tests.clear();
            self.stride = NONE;
            self.dead = 0;
            self.engine = None;
            return Renumbered::Yes;
        }
        let shrunk = self.engine.is_some() && live * 4 <= self.decided_at;
        if self.dead * 4 > self.members.len() || shrunk {
            return self.rebuild(scratch);
        }
        Renumbered::No
    }

    /// Compacts the members and their tests, and builds, rebuilds or drops the engine.
    fn rebuild(&mut self, scratch: &mut MarkScratch) -> Renumbered {
        self.compact();
        self.decided_at = self.members.len();
        self.engine = None;
        if self.key != Key::Always
            && self.members.len() >= ENGINE_MIN
            && let Some(universe) = universe(&self.tests, MAX_UNIVERSE)
        {
            let (members, tests) = (&self.members, &self.tests);
            self.engine = Some(CellEngine::build(
                &universe,
                members.len(),
                |i| tests.get(members[i].range()).unwrap_or(&[]),
                CELLS,
                scratch,
            ));
        }
        Renumbered::Yes
    }

    /// Drops the tombstones and the tests of removed members, keeping the order.
    fn compact(&mut self) {
        if self.dead == 0 {
            return;
        }
        let mut kept = 0;
        let mut tests_kept = 0;
        let mut stride = self
            .members
            .iter()
            .find(|m| m.slot != NONE)
            .map_or(NONE, |m| m.len);
        for i in 0..self.members.len() {
            let mut m = self.members[i];
            if m.slot == NONE {
                continue;
            }
            if m.len != stride {
                stride = NONE;
            }
            let r = m.range();
            // Runs are in position order, so the copy never overtakes a run still to be read.
            if r.start != tests_kept {
                self.tests.copy_within(r.clone(), tests_kept);
            }
            m.start = u32::try_from(tests_kept).expect("the tests fitted before compaction");
            tests_kept += r.len();
            self.members[kept] = m;
            kept += 1;
        }
        self.members.truncate(kept);
        self.tests.truncate(tests_kept);
        self.stride = stride;
        self.dead = 0;
    }

    /// Calls `f` with the record and tests of each live member that may match the event of
    /// `views` (a superset of those that do); stops and returns `false` as soon as `f` does.
    #[inline]
    pub(crate) fn for_each_candidate(
        &self,
        views: &Views,
        cand: &mut Vec<u64>,
        mut f: impl FnMut(&Member, &[AttrTest]) -> bool,
    ) -> bool {
        let tests = &self.tests;
        // A live member's tests are always in range (checked in debug builds); were they not,
        // the member is skipped rather than checked against no test at all.
        let mut call = |m: &Member, t: Option<&[AttrTest]>| match t {
            _ if m.slot == NONE => true,
            Some(t) => f(m, t),
            None => {
                debug_assert!(false, "a live member's tests are in range");
                true
            }
        };
        let mut visit = |m: &Member| call(m, tests.get(m.range()));
        match &self.engine {
            None => self.members.iter().all(visit),
            Some(engine) => {
                let covered = engine.len().min(self.members.len());
                let (indexed, tail) = self.members.split_at(covered);
                if !tail.iter().all(&mut visit) {
                    return false;
                }
                if !engine.candidates(views, cand) {
                    return true;
                }
                if self.stride != NONE {
                    // Every run has `stride` tests: find them by position.
                    let k = self.stride as usize;
                    return for_each_bit(cand, |i| {
                        indexed
                            .get(i)
                            .is_none_or(|m| call(m, tests.get(i * k..i * k + k)))
                    });
                }
                for_each_bit(cand, |i| indexed.get(i).is_none_or(&mut visit))
            }
        }
    }

    /// Heap bytes held.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.members.capacity() * size_of::<Member>()
            + self.tests.capacity() * size_of::<AttrTest>()
            + self.engine.as_ref().map_or(0, CellEngine::heap_bytes)
    }
}

/// The attributes `tests` mention, sorted, if there are at most `max` of them.
fn universe(tests: &[AttrTest], max: usize) -> Option<Vec<u32>> {
    let mut universe: Vec<u32> = Vec::new();
    // Attributes recently found, by id modulo the table's size: most tests hit.
    let mut seen = [NONE; 64];
    for t in tests {
        let slot = &mut seen[t.attr as usize % 64];
        if *slot == t.attr {
            continue;
        }
        *slot = t.attr;
        if let Err(at) = universe.binary_search(&t.attr) {
            if universe.len() == max {
                return None;
            }
            universe.insert(at, t.attr);
        }
    }
    Some(universe)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::view::View;
    use crate::value::Value;

    fn members_visited(cluster: &Cluster, x0: i32) -> Vec<u32> {
        let mut views = Views::default();
        views.begin(4);
        views.set(0, View::of(&Value::Int(x0), None));
        let mut out = Vec::new();
        cluster.for_each_candidate(&views, &mut Vec::new(), |m, tests| {
            assert_eq!(tests.len(), 1, "every member here has one test");
            out.push(m.slot);
            true
        });
        out
    }

    #[test]
    fn builds_its_engine_when_large_and_drops_it_when_small() {
        // 1024 members: the last rebuild, at 1024, cut cells over all of them.
        let tests: Vec<[AttrTest; 1]> = (0..1024)
            .map(|k| [AttrTest::range_for_tests(0, k, k)])
            .collect();
        let mut cluster = Cluster::new(Key::Present(0));
        let mut scratch = MarkScratch::default();
        for m in 0..1024u32 {
            let (pos, _) = cluster.push(Member::new(m, m, m, 0), &tests[m as usize], &mut scratch);
            assert_eq!(
                pos, m,
                "no removal, so no compaction: positions follow insertion"
            );
        }
        assert!(cluster.has_engine());
        // The engine narrows the members to the cell holding 500: far fewer than 1024, and
        // always including member 500.
        let visited = members_visited(&cluster, 500);
        assert!(visited.contains(&500));
        assert!(visited.len() < 100, "{} candidates", visited.len());
        // Remove all but ten, tracking positions across compactions.
        let mut pos: Vec<Option<u32>> = (0..1024).map(Some).collect();
        for m in 0..1014u32 {
            let p = pos[m as usize].take().unwrap();
            if cluster.remove(p, &mut scratch) == Renumbered::Yes {
                for (p, s) in cluster.slots().enumerate() {
                    if s != NONE {
                        let p = u32::try_from(p).unwrap();
                        pos[s as usize] = Some(p);
                        assert_eq!(cluster.tests_at(p), tests[s as usize], "tests follow");
                    }
                }
            }
            assert!(!members_visited(&cluster, i32::try_from(m).unwrap()).contains(&m));
        }
        assert!(!cluster.has_engine());
        assert_eq!(cluster.len(), 10);
        for m in 1014..1024u32 {
            assert!(members_visited(&cluster, i32::try_from(m).unwrap()).contains(&m));
        }
    }

    #[test]
    fn members_pending_a_batch_are_still_visited() {
        let tests: Vec<[AttrTest; 1]> = (0..300)
            .map(|k| [AttrTest::range_for_tests(0, k, k)])
            .collect();
        let mut cluster = Cluster::new(Key::Present(0));
        let mut scratch = MarkScratch::default();
        for m in 0..300u32 {
            let _ = cluster.push(Member::new(m, m, m, 0), &tests[m as usize], &mut scratch);
            assert!(members_visited(&cluster, i32::try_from(m).unwrap()).contains(&m));
        }
        assert!(cluster.has_engine());
    }

    #[test]
    fn refuses_an_engine_over_a_wide_universe() {
        let tests: Vec<[AttrTest; 1]> = (0..600)
            .map(|k| [AttrTest::range_for_tests(k % 100, 0, 0)])
            .collect();
        let mut cluster = Cluster::new(Key::Present(0));
        let mut scratch = MarkScratch::default();
        for m in 0..600u32 {
            let _ = cluster.push(Member::new(m, m, m, 0), &tests[m as usize], &mut scratch);
        }
        assert!(!cluster.has_engine());
        assert_eq!(members_visited(&cluster, 0).len(), 600);
    }
}
