//! Updating the index: compiling a filter's conjunctions, choosing their clusters, and
//! undoing it all on removal.
//!
//! A conjunction goes to the cluster of one of its own constraints (see `cluster::Key`): its
//! equality with the smallest cluster, else the attribute whose presence cluster is smallest.
//! Its tests are copied into the cluster; the index keeps, per conjunction, where it is
//! (cluster and position, kept up to date when a cluster compacts) and its rarer requirements.

use std::hash::Hash;
use std::sync::Arc;

use crate::Filter;
use crate::routable::Routable;

use super::cluster::{Cluster, EXTRAS, Key, MULTI, Member, RESIDUAL, Renumbered};
use super::compile::{self, AttrTest, Extra, Symbols};
use super::intern::NONE;
use super::{Access, Conj, ConjSlots, Entry, EntryId, EntrySlot, Index};

impl<D: Clone + Eq + Hash> Index<D> {
    /// Adds an entry for `routable` to `dest`; `residual` is the full filter when the
    /// routable form is inexact (evaluated after a conjunction matches).
    pub(super) fn insert_inner(
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
    pub(super) fn insert_conj(
        &mut self,
        mut member: Member,
        tests: &[AttrTest],
        extras: Box<[Extra]>,
    ) -> u32 {
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
    pub(super) fn count_string_users(&mut self, extras: &[Extra], add: bool) {
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
    pub(super) fn remove_conj(&mut self, slot: u32) {
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
    pub(super) fn sync_positions(&mut self, cluster: u32) {
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
    pub(super) fn choose_key(&self, tests: &[AttrTest], extras: &[Extra]) -> Key {
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
    pub(super) fn cluster_of(&self, key: Key) -> Option<u32> {
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
    pub(super) fn set_cluster_of(&mut self, key: Key, id: u32) {
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
    pub(super) fn new_cluster(&mut self, key: Key) -> u32 {
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
