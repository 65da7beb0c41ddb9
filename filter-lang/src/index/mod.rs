//! The matching index: from an event to the destinations whose filters match it, exactly.
//!
//! # Semantics
//!
//! An entry is a filter with a destination. An event matches an entry when
//! [`Filter::matches`] says so: when the filter's routable form is exact, when some conjunction
//! of the routable form holds; otherwise, when some conjunction holds (the routable form is a
//! sound pre-filter) *and* the full expression evaluates to `true` (the *residual*). The index
//! returns exactly those entries: no false positive, no false negative.
//!
//! # Design
//!
//! The index indexes conjunctions, each compiled to one test per constrained attribute (an
//! integer interval plus rarer string, boolean and `!=` requirements, see `compile`). An event
//! is turned into *views* once: per attribute, its integer cast, its implicit boolean cast and
//! the id of its string form among the interned string constants (see `view`). Then:
//!
//! 1. **Access clustering.** Each conjunction lives in one *cluster*, keyed by one of its own
//!    constraints: an equality (`x = 5`, `s = 'red'`, `b = TRUE`) when it has one, choosing the
//!    smallest existing cluster; otherwise the presence of one of its attributes, again the
//!    least crowded; otherwise (no constraint at all) the cluster visited by every event. An
//!    event visits only the clusters whose key it satisfies, by one hash lookup per attribute
//!    and view. This is the access-predicate clustering of Fabret et al. (SIGMOD 2001): it makes
//!    sparse workloads (many attributes, each in few filters, mostly equalities — workload W1)
//!    cost in proportion to the conjunctions that share a value with the event, where SIENA's
//!    counting algorithm pays for every satisfied constraint.
//! 2. **Cell bitmaps inside large clusters.** A cluster of at least `ENGINE_MIN` members whose
//!    members constrain at most `MAX_UNIVERSE` attributes keeps a `cells` engine: per
//!    attribute, the integer line is cut into about 32 cells at quantiles of the members'
//!    interval endpoints, and each cell has a bitmap of the members that some value of the cell
//!    may satisfy (unconstrained members included). The candidates for an event are the AND of
//!    one bitmap per attribute: for workload W2 (20 attributes, 10 intervals per subscription),
//!    20 passes over `n / 64` words, instead of the ~`n * 5` counter increments of counting.
//! 3. **Exact check.** Every candidate is checked exactly against the views (two comparisons
//!    per interval); candidates are few more than the matches (the cells make the AND a slight
//!    over-approximation). Inexact entries then evaluate their full expression, once per event.
//!
//! For [`Index::matches`], a candidate whose destination has already matched is skipped, and
//! the walk stops once every live destination has matched (SIENA's early exit: with 64
//! interfaces and a broad workload, most events stop early).
//!
//! # Memory layout
//!
//! At a million subscriptions the index no longer fits in cache, and matching cost is counted
//! in cache misses more than in instructions. The layout follows from that:
//!
//! - A cluster keeps, in position order, a small record per member (its conjunction, entry,
//!   destination and flags) and all its members' tests in one array of 12-byte tests; when
//!   every member has as many tests (W2), a member's tests are found from its position alone.
//!   A candidate's check reads those two places, fetched in parallel, and nothing else unless
//!   the entry has several conjunctions, a residual, or rare requirements (flags say which).
//! - Each cell bitmap is contiguous over all the cluster's members, so the AND reads one
//!   sequential stream per attribute, which the hardware prefetchers follow.
//! - The per-event sets (entries and destinations already decided) are bitsets cleared by the
//!   words they touched: 128 KB at a million destinations, in L2, rather than 4 MB of stamps.
//!
//! # Updates
//!
//! Insertion compiles the conjunctions (into a reused buffer: no allocation for a conjunction
//! of intervals) and appends each to its cluster. A cluster with an engine feeds new members
//! to it in batches of 64 (one bitmap word), which it checks one by one meanwhile; the engine
//! marks a batch with one sweep over each attribute's cells (see `cells`). Removal leaves a
//! tombstone (cleared from the engine's `live` bitmap, one bit), so no other member moves. A
//! cluster compacts and rebuilds its engine, with fresh quantile cells, when a quarter of its
//! positions are tombstones, or its live count has grown fourfold or shrunk to a quarter since
//! the last build: amortised O(1) per update, and the cells follow a drifting distribution. A
//! rebuild is a pause proportional to the cluster (not the index). Entry, conjunction,
//! cluster, destination, attribute and string ids are all recycled through free lists;
//! [`EntryId`]s carry a generation so a stale id never removes a newer entry.
//!
//! # Trade-offs
//!
//! - The bitmaps cost about `(32 + 2)` bits per member per attribute of the cluster's
//!   universe — for W2, ~85 bytes per subscription, plus up to a third of slack as rows grow —
//!   in exchange for word-parallel matching. 64 cells would cut W2's false candidates from
//!   ~0.4 to ~0.17 per match (about 10% of the matching time at a million subscriptions) for
//!   ~110 more bytes per subscription and slower insertion, so the index keeps 32.
//!   Clusters with a wide universe (W1's rare range-only conjunctions) are scanned instead.
//! - The cell cut points are fixed between rebuilds; a shifted distribution costs more false
//!   candidates (never a wrong answer) until the next rebuild.
//! - Matching takes `&self` and a caller-owned [`Scratch`], so many threads can match against
//!   one shared snapshot; updates need `&mut self` (clone the index to publish a new snapshot).
//! - Hash maps use foldhash (fast, seeded at random per map) rather than SipHash: attribute
//!   names and string constants come from remote subscribers, so the hash keeps some
//!   resistance to chosen collisions.

mod cells;
mod cluster;
mod compile;
mod heap;
mod intern;
mod matcher;
mod update;
mod view;

use std::fmt;
use std::hash::Hash;
use std::mem::size_of;
use std::sync::Arc;

use crate::Filter;
use crate::routable::Routable;

use self::cells::MarkScratch;
use self::cluster::Cluster;
use self::compile::{AttrTest, Extra};
use self::intern::{FastMap, Interner, NONE, hash_map_bytes};
use self::view::{Marks, Views};

/// Identifies one entry of an [`Index`], as returned by [`Index::insert`].
///
/// Ids are recycled, but each carries a generation: an id whose entry was removed never names
/// a later entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntryId {
    /// The entry's slot.
    slot: u32,
    /// The slot's generation when the entry was inserted.
    generation: u32,
}

/// Maps events to the destinations whose filters match them, exactly, with incremental
/// insertion and removal.
///
/// Conjunctions are clustered by an access key (an equality or an attribute's presence), found
/// per event by hash lookups; large clusters pre-filter their members with per-attribute cell
/// bitmaps ANDed a word at a time; every candidate is then checked exactly, and inexact filters
/// evaluate their full expression. The `index` module's source documentation details the design
/// and its trade-offs.
///
/// ```
/// use palio_filter::{AttrName, Conjunction, Constraint, Event, Index, IntOp, Predicate, Routable};
///
/// let level = AttrName::new("level")?;
/// let at_least = |n| {
///     let c = Constraint::new(level.clone(), Predicate::Int(IntOp::Ge, n));
///     Routable::new(vec![Conjunction::new(vec![c])], true)
/// };
/// let mut index = Index::new();
/// index.insert_routable(&at_least(2), "ops");
/// let id = index.insert_routable(&at_least(5), "pager");
///
/// let event = Event::new().with("level", 7)?;
/// let mut found = index.matches_vec(&event);
/// found.sort();
/// assert_eq!(found, ["ops", "pager"]);
///
/// index.remove(id);
/// assert_eq!(index.matches_vec(&event), ["ops"]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Index<D> {
    /// Attribute names mentioned by indexed constraints.
    attrs: Interner<Box<str>>,
    /// String constants of `=` and `!=` constraints.
    strings: Interner<Box<str>>,
    /// Per attribute id: the clusters reached through it.
    access: Vec<Access>,
    /// A buffer for compiling a conjunction's tests, reused (they are copied into a cluster).
    compile_buf: Vec<AttrTest>,
    /// Working memory of the cell engines' updates, shared by all clusters.
    mark_scratch: MarkScratch,
    /// Destinations, interned so that the per-event "already matched" set is an array.
    dests: Interner<D>,
    /// Entries by slot.
    entries: Vec<EntrySlot>,
    /// Free entry slots.
    free_entries: Vec<u32>,
    /// Conjunctions by slot.
    conjs: Vec<Option<Conj>>,
    /// Free conjunction slots.
    free_conjs: Vec<u32>,
    /// Clusters by id.
    clusters: Vec<Option<Cluster>>,
    /// Free cluster ids.
    free_clusters: Vec<u32>,
    /// The cluster of constraint-free conjunctions, or `NONE`.
    always: u32,
    /// The number of live entries.
    len: usize,
}

/// The clusters reached through one attribute.
#[derive(Debug, Clone)]
struct Access {
    /// The cluster keyed by the attribute's presence, or `NONE`.
    present: u32,
    /// Clusters keyed by an integer value.
    int_eq: FastMap<i32, u32>,
    /// Clusters keyed by an interned string.
    str_eq: FastMap<u32, u32>,
    /// Clusters keyed by `false` and `true`, or `NONE`.
    bool_eq: [u32; 2],
    /// How many tests on this attribute compare interned strings: when none, events skip
    /// computing the string view's id.
    str_users: u32,
}

impl Default for Access {
    fn default() -> Self {
        Self {
            present: NONE,
            int_eq: Default::default(),
            str_eq: Default::default(),
            bool_eq: [NONE; 2],
            str_users: 0,
        }
    }
}

/// An entry's slot: its generation and, while live, the entry.
#[derive(Debug, Clone)]
struct EntrySlot {
    /// Bumped when the entry is removed, so old ids stop matching.
    generation: u32,
    /// The entry, while live.
    entry: Option<Entry>,
}

/// One (filter, destination) pair.
#[derive(Debug, Clone)]
struct Entry {
    /// The interned destination.
    dest: u32,
    /// The full filter when its routable form is inexact: evaluated after a conjunction
    /// matches. Exact filters are not kept (their conjunctions say everything).
    residual: Option<Arc<Filter>>,
    /// The slots of the entry's indexed conjunctions.
    conjs: ConjSlots,
}

/// The conjunction slots of an entry: most entries have one, kept inline (no allocation).
#[derive(Debug, Clone)]
enum ConjSlots {
    /// No indexed conjunction (the routable form is unsatisfiable).
    None,
    /// One conjunction.
    One(u32),
    /// Several.
    Many(Box<[u32]>),
}

impl ConjSlots {
    /// The slots.
    fn as_slice(&self) -> &[u32] {
        match self {
            ConjSlots::None => &[],
            ConjSlots::One(s) => std::slice::from_ref(s),
            ConjSlots::Many(s) => s,
        }
    }
}

/// One indexed conjunction. Its tests live in its cluster (see `cluster`), with copies of
/// its entry and destination; this record is what removal and the rare checks need.
#[derive(Debug, Clone)]
struct Conj {
    /// The cluster holding it.
    cluster: u32,
    /// Its position in the cluster.
    pos: u32,
    /// The out-of-line requirements its tests refer to (usually none).
    extras: Box<[Extra]>,
}

/// Per-thread working memory for matching, reused across events to avoid allocation.
///
/// Get one from [`Index::scratch`] (or [`Scratch::default`]); it adapts to any index it is used
/// with.
#[derive(Debug, Clone, Default)]
pub struct Scratch {
    /// The current event's views.
    views: Views,
    /// Entries decided for the current event.
    entries: Marks,
    /// Destinations found for the current event.
    dests: Marks,
    /// Candidate bitmap of the cluster being visited.
    cand: Vec<u64>,
}

impl<D> Default for Index<D> {
    fn default() -> Self {
        Self {
            attrs: Interner::default(),
            strings: Interner::default(),
            access: Vec::new(),
            compile_buf: Vec::new(),
            mark_scratch: MarkScratch::default(),
            dests: Interner::default(),
            entries: Vec::new(),
            free_entries: Vec::new(),
            conjs: Vec::new(),
            free_conjs: Vec::new(),
            clusters: Vec::new(),
            free_clusters: Vec::new(),
            always: NONE,
            len: 0,
        }
    }
}

impl<D: Clone + Eq + Hash> Index<D> {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an entry: events matching `filter` (see [`Filter::matches`]) go to `dest`.
    ///
    /// The filter is cloned only when its routable form is inexact (its expression is then
    /// needed after the routable pre-filter).
    pub fn insert(&mut self, filter: &Filter, dest: D) -> EntryId {
        let residual = (!filter.routable().is_exact()).then(|| Arc::new(filter.clone()));
        self.insert_inner(filter.routable(), residual, dest)
    }

    /// Like [`Index::insert`], sharing an already reference-counted filter.
    pub fn insert_arc(&mut self, filter: &Arc<Filter>, dest: D) -> EntryId {
        let residual = (!filter.routable().is_exact()).then(|| Arc::clone(filter));
        self.insert_inner(filter.routable(), residual, dest)
    }

    /// Adds an entry matching exactly the events `routable` matches ([`Routable::matches`]),
    /// whether or not the form is marked exact: for routing on routable forms received from
    /// other brokers, where the routable form is all there is.
    pub fn insert_routable(&mut self, routable: &Routable, dest: D) -> EntryId {
        self.insert_inner(routable, None, dest)
    }

    /// Removes entry `id`; returns whether it was present.
    pub fn remove(&mut self, id: EntryId) -> bool {
        let Some(slot) = self.entries.get_mut(id.slot as usize) else {
            return false;
        };
        if slot.generation != id.generation {
            return false;
        }
        let Some(entry) = slot.entry.take() else {
            return false;
        };
        slot.generation = slot.generation.wrapping_add(1);
        self.free_entries.push(id.slot);
        for &c in entry.conjs.as_slice() {
            self.remove_conj(c);
        }
        self.dests.release(entry.dest);
        self.len -= 1;
        true
    }

    /// Whether entry `id` is live.
    pub fn contains(&self, id: EntryId) -> bool {
        self.entries
            .get(id.slot as usize)
            .is_some_and(|s| s.generation == id.generation && s.entry.is_some())
    }

    /// The destination of entry `id`, if live.
    pub fn destination(&self, id: EntryId) -> Option<&D> {
        let slot = self.entries.get(id.slot as usize)?;
        let entry = slot
            .entry
            .as_ref()
            .filter(|_| slot.generation == id.generation)?;
        self.dests.key(entry.dest)
    }

    /// The number of live entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the index has no entry.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The number of distinct live destinations.
    pub fn destinations(&self) -> usize {
        self.dests.live()
    }

    /// A scratch sized for this index.
    pub fn scratch(&self) -> Scratch {
        Scratch::default()
    }

    /// An estimate of the heap bytes the index holds: every table, map and bitmap at its
    /// allocated capacity, and the residual filters (counted once per entry that holds one,
    /// even when shared). Allocator overhead is not counted; destinations' own heap data are
    /// counted only by their inline size.
    pub fn memory_bytes(&self) -> usize {
        let access: usize = self
            .access
            .iter()
            .map(|a| hash_map_bytes(&a.int_eq) + hash_map_bytes(&a.str_eq))
            .sum();
        let entries: usize = self
            .entries
            .iter()
            .filter_map(|s| s.entry.as_ref())
            .map(|e| {
                let conjs = match &e.conjs {
                    ConjSlots::Many(s) => s.len() * size_of::<u32>(),
                    ConjSlots::None | ConjSlots::One(_) => 0,
                };
                conjs + e.residual.as_deref().map_or(0, heap::filter_bytes)
            })
            .sum();
        let conjs: usize = self
            .conjs
            .iter()
            .flatten()
            .map(|c| compile::extras_heap_bytes(&c.extras))
            .sum();
        let clusters: usize = self
            .clusters
            .iter()
            .flatten()
            .map(Cluster::heap_bytes)
            .sum();
        self.attrs.heap_bytes(|k| k.len())
            + self.strings.heap_bytes(|k| k.len())
            + self.dests.heap_bytes(|_| 0)
            + self.access.capacity() * size_of::<Access>()
            + self.compile_buf.capacity() * size_of::<AttrTest>()
            + self.mark_scratch.heap_bytes()
            + access
            + self.entries.capacity() * size_of::<EntrySlot>()
            + self.free_entries.capacity() * size_of::<u32>()
            + entries
            + self.conjs.capacity() * size_of::<Option<Conj>>()
            + self.free_conjs.capacity() * size_of::<u32>()
            + conjs
            + self.clusters.capacity() * size_of::<Option<Cluster>>()
            + self.free_clusters.capacity() * size_of::<u32>()
            + clusters
    }

    /// Statistics on the index's structure (for benchmarks and tuning).
    pub fn stats(&self) -> IndexStats {
        let clusters: Vec<&Cluster> = self.clusters.iter().flatten().collect();
        IndexStats {
            entries: self.len,
            conjunctions: self.conjs.iter().flatten().count(),
            clusters: clusters.len(),
            engine_clusters: clusters.iter().filter(|c| c.has_engine()).count(),
            conjunctions_in_engines: clusters
                .iter()
                .filter(|c| c.has_engine())
                .map(|c| c.len())
                .sum(),
            largest_cluster: clusters.iter().map(|c| c.len()).max().unwrap_or(0),
        }
    }
}

impl<D> fmt::Debug for Index<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Index")
            .field("entries", &self.len)
            .field("destinations", &self.dests.live())
            .field("attributes", &self.attrs.live())
            .field("clusters", &self.clusters.iter().flatten().count())
            .finish_non_exhaustive()
    }
}

/// Counts describing an index's structure, from [`Index::stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct IndexStats {
    /// Live entries.
    pub entries: usize,
    /// Indexed conjunctions (unsatisfiable ones are not indexed).
    pub conjunctions: usize,
    /// Clusters.
    pub clusters: usize,
    /// Clusters with a cell-bitmap engine.
    pub engine_clusters: usize,
    /// Conjunctions in clusters with an engine.
    pub conjunctions_in_engines: usize,
    /// Members of the largest cluster.
    pub largest_cluster: usize,
}

#[cfg(test)]
mod tests;
