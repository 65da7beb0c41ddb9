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
mod view;

use std::fmt;
use std::hash::Hash;
use std::mem::size_of;
use std::sync::Arc;

use crate::Filter;
use crate::routable::Routable;

use self::cells::MarkScratch;
use self::cluster::{Cluster, EXTRAS, Key, MULTI, Member, RESIDUAL, Renumbered};
use self::compile::{AttrTest, Extra, Symbols};
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

    fn insert_inner(
        &mut self,
        routable: &Routable,
        residual: Option<Arc<Filter>>,
        dest: D,
    ) -> EntryId {
        let dest = self.dests.acquire(&dest);
        let slot = match self.free_entries.pop() {
            Some(s) => s,
            None => {
                let s = u32::try_from(self.entries.len()).expect("fewer than 2^32 entries");
                self.entries.push(EntrySlot {
                    generation: 0,
                    entry: None,
                });
                s
            }
        };
        let mut flags = 0;
        if routable.conjunctions().len() > 1 {
            flags |= MULTI;
        }
        if residual.is_some() {
            flags |= RESIDUAL;
        }
        let mut conjs = ConjSlots::None;
        let mut buf = std::mem::take(&mut self.compile_buf);
        for conj in routable.conjunctions() {
            let mut syms = Symbols {
                attrs: &mut self.attrs,
                strings: &mut self.strings,
            };
            if let Some(extras) = compile::compile(conj, &mut syms, &mut buf) {
                let member = Member::new(NONE, slot, dest, flags);
                let c = self.insert_conj(member, &buf, extras);
                conjs = match conjs {
                    ConjSlots::None => ConjSlots::One(c),
                    ConjSlots::One(first) => ConjSlots::Many(Box::new([first, c])),
                    ConjSlots::Many(s) => ConjSlots::Many(s.iter().copied().chain([c]).collect()),
                };
            }
        }
        self.compile_buf = buf;
        let entry_slot = &mut self.entries[slot as usize];
        entry_slot.entry = Some(Entry {
            dest,
            residual,
            conjs,
        });
        self.len += 1;
        EntryId {
            slot,
            generation: entry_slot.generation,
        }
    }

    /// Indexes one compiled conjunction, with tests `tests` and extras `extras`, as `member`
    /// (whose slot is filled in here); returns its slot.
    fn insert_conj(&mut self, mut member: Member, tests: &[AttrTest], extras: Box<[Extra]>) -> u32 {
        if self.access.len() < self.attrs.id_bound() {
            self.access
                .resize_with(self.attrs.id_bound(), Access::default);
        }
        self.count_string_users(&extras, true);
        let key = self.choose_key(tests, &extras);
        let cluster = match self.cluster_of(key) {
            Some(c) => c,
            None => self.new_cluster(key),
        };
        let slot = match self.free_conjs.pop() {
            Some(s) => s,
            None => {
                let s = u32::try_from(self.conjs.len()).expect("fewer than 2^32 conjunctions");
                self.conjs.push(None);
                s
            }
        };
        member.slot = slot;
        if !extras.is_empty() {
            member.flags |= EXTRAS;
        }
        let cl = self.clusters[cluster as usize]
            .as_mut()
            .expect("cluster ids in access maps are live");
        let (pos, renumbered) = cl.push(member, tests, &mut self.mark_scratch);
        self.conjs[slot as usize] = Some(Conj {
            cluster,
            pos,
            extras,
        });
        if renumbered == Renumbered::Yes {
            self.sync_positions(cluster);
        }
        slot
    }

    /// Counts (`add`) or uncounts the requirements that compare an attribute's string form
    /// with interned strings, so events compute that view only when some requirement needs it.
    fn count_string_users(&mut self, extras: &[Extra], add: bool) {
        for e in extras {
            if compile::uses_strings(e)
                && let Some(a) = self.access.get_mut(e.attr as usize)
            {
                if add {
                    a.str_users += 1;
                } else {
                    a.str_users -= 1;
                }
            }
        }
    }

    /// Un-indexes conjunction `slot`, releasing its cluster and symbols when unused.
    fn remove_conj(&mut self, slot: u32) {
        let Some(conj) = self.conjs.get_mut(slot as usize).and_then(Option::take) else {
            return;
        };
        self.free_conjs.push(slot);
        let Some(cl) = self
            .clusters
            .get_mut(conj.cluster as usize)
            .and_then(Option::as_mut)
        else {
            return;
        };
        // The tests live in the cluster until it compacts: release what they hold first.
        let mut tests = std::mem::take(&mut self.compile_buf);
        tests.clear();
        tests.extend_from_slice(cl.tests_at(conj.pos));
        let renumbered = cl.remove(conj.pos, &mut self.mark_scratch);
        if cl.len() == 0 {
            let key = cl.key;
            self.clusters[conj.cluster as usize] = None;
            self.free_clusters.push(conj.cluster);
            self.set_cluster_of(key, NONE);
        } else if renumbered == Renumbered::Yes {
            self.sync_positions(conj.cluster);
        }
        self.count_string_users(&conj.extras, false);
        let mut syms = Symbols {
            attrs: &mut self.attrs,
            strings: &mut self.strings,
        };
        compile::release(&tests, &conj.extras, &mut syms);
        for t in &tests {
            if self.attrs.key(t.attr).is_none()
                && let Some(a) = self.access.get_mut(t.attr as usize)
            {
                *a = Access::default();
            }
        }
        self.compile_buf = tests;
    }

    /// Re-reads the positions of every member of `cluster` after a compaction.
    fn sync_positions(&mut self, cluster: u32) {
        let Some(cl) = self.clusters.get(cluster as usize).and_then(Option::as_ref) else {
            return;
        };
        for (p, m) in cl.slots().enumerate() {
            if let Some(c) = self.conjs.get_mut(m as usize).and_then(Option::as_mut) {
                c.pos = u32::try_from(p).expect("positions fit in u32");
            }
        }
    }

    /// The access key for a conjunction: its equality with the smallest cluster, else its
    /// attribute with the smallest presence cluster, else [`Key::Always`].
    fn choose_key(&self, tests: &[AttrTest], extras: &[Extra]) -> Key {
        // (is not an equality, cluster size, key): the smallest wins.
        let mut best: Option<(bool, usize, Key)> = None;
        let mut consider = |key: Key| {
            let size = self
                .cluster_of(key)
                .and_then(|c| self.clusters.get(c as usize))
                .and_then(Option::as_ref)
                .map_or(0, Cluster::len);
            let rank = (!key.is_equality(), size, key);
            if best.is_none_or(|(p, s, _)| (rank.0, rank.1) < (p, s)) {
                best = Some(rank);
            }
        };
        for t in tests {
            consider(Key::Present(t.attr));
            if let Some(v) = t.int_eq() {
                consider(Key::IntEq(t.attr, v));
            }
        }
        for e in extras {
            if e.str_eq != NONE {
                consider(Key::StrEq(e.attr, e.str_eq));
            }
            if let Some(b) = e.boolean {
                consider(Key::BoolEq(e.attr, b));
            }
        }
        best.map_or(Key::Always, |(_, _, k)| k)
    }

    /// The cluster registered under `key`.
    fn cluster_of(&self, key: Key) -> Option<u32> {
        let id = match key {
            Key::Always => self.always,
            Key::Present(a) => self.access.get(a as usize)?.present,
            Key::IntEq(a, v) => *self.access.get(a as usize)?.int_eq.get(&v)?,
            Key::StrEq(a, s) => *self.access.get(a as usize)?.str_eq.get(&s)?,
            Key::BoolEq(a, b) => self.access.get(a as usize)?.bool_eq[usize::from(b)],
        };
        (id != NONE).then_some(id)
    }

    /// Registers cluster `id` under `key` (`NONE` unregisters).
    fn set_cluster_of(&mut self, key: Key, id: u32) {
        if key == Key::Always {
            self.always = id;
            return;
        }
        let (Key::Present(a) | Key::IntEq(a, _) | Key::StrEq(a, _) | Key::BoolEq(a, _)) = key
        else {
            return;
        };
        let Some(acc) = self.access.get_mut(a as usize) else {
            return;
        };
        match key {
            Key::Always => {}
            Key::Present(_) => acc.present = id,
            Key::IntEq(_, v) if id == NONE => drop(acc.int_eq.remove(&v)),
            Key::IntEq(_, v) => drop(acc.int_eq.insert(v, id)),
            Key::StrEq(_, s) if id == NONE => drop(acc.str_eq.remove(&s)),
            Key::StrEq(_, s) => drop(acc.str_eq.insert(s, id)),
            Key::BoolEq(_, b) => acc.bool_eq[usize::from(b)] = id,
        }
    }

    /// Creates and registers an empty cluster for `key`.
    fn new_cluster(&mut self, key: Key) -> u32 {
        let id = match self.free_clusters.pop() {
            Some(id) => {
                self.clusters[id as usize] = Some(Cluster::new(key));
                id
            }
            None => {
                let id = u32::try_from(self.clusters.len()).expect("fewer than 2^32 clusters");
                self.clusters.push(Some(Cluster::new(key)));
                id
            }
        };
        self.set_cluster_of(key, id);
        id
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
