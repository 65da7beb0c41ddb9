//! Clusters: the conjunctions reached through one *access key*.
//!
//! Every indexed conjunction belongs to exactly one cluster, chosen at insertion from its own
//! constraints (see [`Key`]). An event visits only the clusters whose key it satisfies, found by
//! hash lookups on its attributes' views, so conjunctions about attributes or values the event
//! does not carry cost nothing. Inside a visited cluster, a small cluster checks each member
//! exactly; a large one first narrows its members with a [`CellEngine`].

use std::mem::size_of;

use super::cells::{CellEngine, for_each_bit};
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

/// Members fed to the engine at once (a quarter of a bitmap word), so that the batch's bit writes
/// hit the same words (and cache lines) instead of scattering one cache line per bit.
const BATCH: usize = 16;

/// The conjunctions sharing one access key.
///
/// Members are numbered by position in `members`, which only grows between compactions: a
/// removed member leaves a tombstone (`NONE`), so removal never moves another member's bits.
/// The engine covers the first `engine.len()` positions; later ones (at most a batch) are
/// checked one by one until the next batch is fed in. Once a quarter of the positions are
/// tombstones, or the live count has grown fourfold or fallen to a quarter since the engine was
/// last built, the cluster compacts and rebuilds: amortised O(1) per update.
#[derive(Debug, Clone)]
pub(crate) struct Cluster {
    /// The key, to unregister the cluster when it empties.
    pub(crate) key: Key,
    /// Conjunction slots by position; `NONE` for a removed member.
    members: Vec<u32>,
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
    /// The cluster was compacted: read every member's position from [`Cluster::members`].
    Yes,
}

impl Cluster {
    /// An empty cluster for `key`.
    pub(crate) fn new(key: Key) -> Self {
        Self {
            key,
            members: Vec::new(),
            dead: 0,
            engine: None,
            decided_at: 0,
        }
    }

    /// The number of live members.
    pub(crate) fn len(&self) -> usize {
        self.members.len() - self.dead
    }

    /// Member slots by position (`NONE` for tombstones).
    pub(crate) fn members(&self) -> &[u32] {
        &self.members
    }

    /// Whether the engine is in use (for tests and statistics).
    pub(crate) fn has_engine(&self) -> bool {
        self.engine.is_some()
    }

    /// Adds conjunction `slot`, which must already be visible through `tests_of`; returns its
    /// position and whether the cluster was renumbered.
    pub(crate) fn push<'a>(
        &mut self,
        slot: u32,
        tests_of: impl Fn(u32) -> &'a [AttrTest],
    ) -> (u32, Renumbered) {
        let pos = u32::try_from(self.members.len()).expect("fewer than 2^32 conjunctions");
        self.members.push(slot);
        let live = self.len();
        let threshold = ENGINE_MIN.max(GROWTH * self.decided_at);
        if live >= threshold {
            return (pos, self.rebuild(tests_of));
        }
        if let Some(engine) = &mut self.engine
            && self.members.len() - engine.len() >= BATCH
        {
            let start = engine.len();
            let pending = &self.members[start..];
            let batch: Vec<&[AttrTest]> = pending
                .iter()
                .map(|&m| if m == NONE { &[][..] } else { tests_of(m) })
                .collect();
            engine.extend(&batch);
            for (k, &m) in pending.iter().enumerate() {
                if m == NONE {
                    engine.kill(start + k);
                }
            }
        }
        (pos, Renumbered::No)
    }

    /// Removes the member at `pos`; returns whether the cluster was renumbered.
    pub(crate) fn remove<'a>(
        &mut self,
        pos: u32,
        tests_of: impl Fn(u32) -> &'a [AttrTest],
    ) -> Renumbered {
        let pos = pos as usize;
        match self.members.get_mut(pos) {
            Some(m) if *m != NONE => *m = NONE,
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
            self.dead = 0;
            self.engine = None;
            return Renumbered::Yes;
        }
        let shrunk = self.engine.is_some() && live * 4 <= self.decided_at;
        if self.dead * 4 > self.members.len() || shrunk {
            return self.rebuild(tests_of);
        }
        Renumbered::No
    }

    /// Compacts the members and builds, rebuilds or drops the engine.
    fn rebuild<'a>(&mut self, tests_of: impl Fn(u32) -> &'a [AttrTest]) -> Renumbered {
        self.members.retain(|&m| m != NONE);
        self.dead = 0;
        self.decided_at = self.members.len();
        self.engine = None;
        if self.key != Key::Always && self.members.len() >= ENGINE_MIN {
            let tests: Vec<&[AttrTest]> = self.members.iter().map(|&m| tests_of(m)).collect();
            let mut universe: Vec<u32> = tests
                .iter()
                .flat_map(|t| t.iter().map(|t| t.attr))
                .collect();
            universe.sort_unstable();
            universe.dedup();
            if universe.len() <= MAX_UNIVERSE {
                self.engine = Some(CellEngine::build(&tests, CELLS));
            }
        }
        Renumbered::Yes
    }

    /// Calls `f` with each live member that may match the event of `views` (a superset of
    /// those that do); stops and returns `false` as soon as `f` does.
    #[inline]
    pub(crate) fn for_each_candidate(
        &self,
        views: &Views,
        cand: &mut Vec<u64>,
        mut f: impl FnMut(u32) -> bool,
    ) -> bool {
        let mut scan = |members: &[u32]| members.iter().all(|&m| m == NONE || f(m));
        match &self.engine {
            None => scan(&self.members),
            Some(engine) => {
                let covered = engine.len().min(self.members.len());
                let (indexed, tail) = self.members.split_at(covered);
                if !scan(tail) {
                    return false;
                }
                if !engine.candidates(views, cand) {
                    return true;
                }
                for_each_bit(cand, |i| {
                    indexed.get(i).is_none_or(|&m| m == NONE || scan(&[m]))
                })
            }
        }
    }

    /// Heap bytes held.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.members.capacity() * size_of::<u32>()
            + self.engine.as_ref().map_or(0, CellEngine::heap_bytes)
    }
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
        cluster.for_each_candidate(&views, &mut Vec::new(), |m| {
            out.push(m);
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
        let tests_of = |m: u32| &tests[m as usize][..];
        let mut cluster = Cluster::new(Key::Present(0));
        for m in 0..1024u32 {
            let (pos, _) = cluster.push(m, tests_of);
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
            if cluster.remove(p, tests_of) == Renumbered::Yes {
                for (p, &s) in cluster.members().iter().enumerate() {
                    if s != NONE {
                        pos[s as usize] = Some(u32::try_from(p).unwrap());
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
        let tests_of = |m: u32| &tests[m as usize][..];
        let mut cluster = Cluster::new(Key::Present(0));
        for m in 0..300u32 {
            let _ = cluster.push(m, tests_of);
            assert!(members_visited(&cluster, i32::try_from(m).unwrap()).contains(&m));
        }
        assert!(cluster.has_engine());
    }

    #[test]
    fn refuses_an_engine_over_a_wide_universe() {
        let tests: Vec<[AttrTest; 1]> = (0..600)
            .map(|k| [AttrTest::range_for_tests(k % 100, 0, 0)])
            .collect();
        let tests_of = |m: u32| &tests[m as usize][..];
        let mut cluster = Cluster::new(Key::Present(0));
        for m in 0..600u32 {
            let _ = cluster.push(m, tests_of);
        }
        assert!(!cluster.has_engine());
        assert_eq!(members_visited(&cluster, 0).len(), 600);
    }
}
