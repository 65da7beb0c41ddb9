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

/// The conjunctions sharing one access key.
#[derive(Debug, Clone)]
pub(crate) struct Cluster {
    /// The key, to unregister the cluster when it empties.
    pub(crate) key: Key,
    /// Conjunction slots; a member's position here is its number in the engine.
    members: Vec<u32>,
    /// The pre-filter, when the cluster is large enough and its universe small enough.
    engine: Option<CellEngine>,
    /// The member count when the engine was last built or refused: the next decision is taken
    /// when the count has doubled or fallen to a quarter, so rebuilds cost amortised O(1).
    decided_at: usize,
}

impl Cluster {
    /// An empty cluster for `key`.
    pub(crate) fn new(key: Key) -> Self {
        Self {
            key,
            members: Vec::new(),
            engine: None,
            decided_at: 0,
        }
    }

    /// The number of members.
    pub(crate) fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the engine is in use (for tests and statistics).
    pub(crate) fn has_engine(&self) -> bool {
        self.engine.is_some()
    }

    /// Adds conjunction `slot` with tests `tests`; returns its position. `tests_of` gives the
    /// tests of any member, for rebuilding the engine.
    pub(crate) fn push<'a>(
        &mut self,
        slot: u32,
        tests: &[AttrTest],
        tests_of: impl Fn(u32) -> &'a [AttrTest],
    ) -> u32 {
        let pos = u32::try_from(self.members.len()).expect("fewer than 2^32 conjunctions");
        self.members.push(slot);
        match &mut self.engine {
            Some(engine) => {
                engine.push(tests);
                if self.members.len() >= 2 * self.decided_at {
                    self.decide(tests_of);
                }
            }
            None => {
                if self.members.len() >= ENGINE_MIN && self.members.len() >= 2 * self.decided_at {
                    self.decide(tests_of);
                }
            }
        }
        pos
    }

    /// Removes the member at `pos`, whose tests are `removed`; returns the slot of the member
    /// moved into `pos`, if any.
    pub(crate) fn swap_remove<'a>(
        &mut self,
        pos: u32,
        removed: &[AttrTest],
        tests_of: impl Fn(u32) -> &'a [AttrTest],
    ) -> Option<u32> {
        let pos = pos as usize;
        let Some(&last) = self.members.last() else {
            return None;
        };
        if pos >= self.members.len() {
            return None;
        }
        self.members.swap_remove(pos);
        if let Some(engine) = &mut self.engine {
            engine.swap_remove(pos, removed, tests_of(last));
            if self.members.len() * 4 <= self.decided_at {
                self.decide(tests_of);
            }
        }
        self.members.get(pos).copied()
    }

    /// Builds, rebuilds or drops the engine for the current members.
    fn decide<'a>(&mut self, tests_of: impl Fn(u32) -> &'a [AttrTest]) {
        self.decided_at = self.members.len();
        self.engine = None;
        if self.key == Key::Always || self.members.len() < ENGINE_MIN {
            return;
        }
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

    /// Calls `f` with each member that may match the event of `views` (a superset of those
    /// that do); stops and returns `false` as soon as `f` does.
    #[inline]
    pub(crate) fn for_each_candidate(
        &self,
        views: &Views,
        cand: &mut Vec<u64>,
        mut f: impl FnMut(u32) -> bool,
    ) -> bool {
        match &self.engine {
            None => self.members.iter().all(|&m| f(m)),
            Some(engine) => {
                if !engine.candidates(views, cand) {
                    return true;
                }
                for_each_bit(cand, |i| self.members.get(i).is_none_or(|&m| f(m)))
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
            assert_eq!(cluster.push(m, tests_of(m), tests_of), m);
        }
        assert!(cluster.has_engine());
        // The engine narrows the members to the cell holding 500: far fewer than 1024, and
        // always including member 500.
        let visited = members_visited(&cluster, 500);
        assert!(visited.contains(&500));
        assert!(visited.len() < 100, "{} candidates", visited.len());
        // Remove from the front: the last member moves in.
        let mut live: Vec<u32> = (0..1024).collect();
        while cluster.len() > 10 {
            let moved = cluster.swap_remove(0, tests_of(live[0]), tests_of);
            live.swap_remove(0);
            assert_eq!(moved, live.first().copied());
        }
        assert!(!cluster.has_engine());
        assert_eq!(cluster.len(), live.len());
        for &m in &live {
            assert!(members_visited(&cluster, i32::try_from(m).unwrap()).contains(&m));
        }
    }

    #[test]
    fn refuses_an_engine_over_a_wide_universe() {
        let tests: Vec<[AttrTest; 1]> = (0..600)
            .map(|k| [AttrTest::range_for_tests(k % 100, 0, 0)])
            .collect();
        let tests_of = |m: u32| &tests[m as usize][..];
        let mut cluster = Cluster::new(Key::Present(0));
        for m in 0..600u32 {
            cluster.push(m, tests_of(m), tests_of);
        }
        assert!(!cluster.has_engine());
        assert_eq!(members_visited(&cluster, 0).len(), 600);
    }
}
