//! Matching an event: views, cluster visits, exact checks, residuals, and the two outputs
//! (every matching entry, or each matching destination once with early exit).

use std::hash::Hash;
use std::ops::ControlFlow;

use crate::event::Event;

use super::cluster::{Cluster, EXTRAS, MULTI, Member, RESIDUAL};
use super::compile::{self, AttrTest, EventCtx};
use super::intern::NONE;
use super::view::{Marks, View, Views};
use super::{EntryId, Index, Scratch};

/// Where matches go.
enum Out<'o, D> {
    /// Every matching entry.
    Entries(&'o mut Vec<EntryId>),
    /// Each matching destination once.
    Dests(&'o mut Vec<D>),
}

impl<D: Clone + Eq + Hash> Index<D> {
    /// Appends to `out` each destination with at least one entry matching `event`, once.
    ///
    /// Stops as soon as every destination of the index has matched. `out` is not cleared.
    pub fn matches(&self, event: &Event, scratch: &mut Scratch, out: &mut Vec<D>) {
        self.walk(event, scratch, Out::Dests(out));
    }

    /// Appends to `out` the id of every entry matching `event`, once each. `out` is not cleared.
    pub fn matching_entries(&self, event: &Event, scratch: &mut Scratch, out: &mut Vec<EntryId>) {
        self.walk(event, scratch, Out::Entries(out));
    }

    /// The destinations matching `event`, each once (allocates a scratch: prefer
    /// [`Index::matches`] in loops).
    pub fn matches_vec(&self, event: &Event) -> Vec<D> {
        let mut out = Vec::new();
        self.matches(event, &mut self.scratch(), &mut out);
        out
    }

    /// The walk shared by both outputs.
    fn walk(&self, event: &Event, scratch: &mut Scratch, mut out: Out<'_, D>) {
        let Scratch {
            views,
            entries,
            dests,
            cand,
        } = scratch;
        views.begin(self.attrs.id_bound());
        entries.begin(self.entries.len());
        dests.begin(self.dests.id_bound());
        if self.len == 0 {
            return;
        }
        for (name, value) in event.iter() {
            if let Some(a) = self.attrs.get(name.as_str()) {
                let strings = self
                    .access
                    .get(a as usize)
                    .is_some_and(|acc| acc.str_users > 0)
                    .then_some(&self.strings);
                views.set(a, View::of(value, strings));
            }
        }
        let views: &Views = views;
        let mut visit = Visit {
            index: self,
            ctx: EventCtx {
                event,
                attrs: &self.attrs,
            },
            views,
            entries,
            dests,
            found: 0,
            out: &mut out,
        };
        let _ = visit.all_clusters(cand);
    }

    /// The cluster with id `id`, if live.
    fn cluster(&self, id: u32) -> Option<&Cluster> {
        if id == NONE {
            return None;
        }
        self.clusters.get(id as usize).and_then(Option::as_ref)
    }
}

/// The state of one event's walk.
struct Visit<'a, 'o, D> {
    index: &'a Index<D>,
    ctx: EventCtx<'a>,
    views: &'a Views,
    /// Entries already decided (matched, or residual evaluated to no match).
    entries: &'a mut Marks,
    /// Destinations already found.
    dests: &'a mut Marks,
    /// The number of destinations found.
    found: usize,
    out: &'a mut Out<'o, D>,
}

impl<D: Clone + Eq + Hash> Visit<'_, '_, D> {
    /// Visits the clusters whose key the event satisfies.
    fn all_clusters(&mut self, cand: &mut Vec<u64>) -> ControlFlow<()> {
        let index = self.index;
        if let Some(c) = index.cluster(index.always) {
            self.cluster(c, cand)?;
        }
        for &a in self.views.present() {
            let (Some(acc), Some(v)) = (index.access.get(a as usize), self.views.get(a)) else {
                continue;
            };
            if let Some(c) = index.cluster(acc.present) {
                self.cluster(c, cand)?;
            }
            if let Some(i) = v.int()
                && let Some(&id) = acc.int_eq.get(&i)
                && let Some(c) = index.cluster(id)
            {
                self.cluster(c, cand)?;
            }
            if v.sid != NONE
                && let Some(&id) = acc.str_eq.get(&v.sid)
                && let Some(c) = index.cluster(id)
            {
                self.cluster(c, cand)?;
            }
            if let Some(b) = v.boolean()
                && let Some(c) = index.cluster(acc.bool_eq[usize::from(b)])
            {
                self.cluster(c, cand)?;
            }
        }
        ControlFlow::Continue(())
    }

    /// Checks the candidates of one cluster.
    fn cluster(&mut self, cluster: &Cluster, cand: &mut Vec<u64>) -> ControlFlow<()> {
        let complete = cluster.for_each_candidate(self.views, cand, |member, tests| {
            self.candidate(member, tests).is_continue()
        });
        if complete {
            ControlFlow::Continue(())
        } else {
            ControlFlow::Break(())
        }
    }

    /// Checks one candidate conjunction, with tests `tests`, and reports its entry if it
    /// matches.
    ///
    /// The common case reads only the cluster's record and tests of the member: the entry's
    /// marks are consulted only when the entry has several conjunctions, the entry itself only
    /// for a residual or an entry id, the conjunction's record only for out-of-line tests.
    #[inline]
    fn candidate(&mut self, m: &Member, tests: &[AttrTest]) -> ControlFlow<()> {
        let multi = m.flags & MULTI != 0;
        if multi && self.entries.contains(m.entry) {
            return ControlFlow::Continue(());
        }
        let extras = if m.flags & EXTRAS != 0 {
            self.index
                .conjs
                .get(m.slot as usize)
                .and_then(Option::as_ref)
                .map_or(&[][..], |c| &c.extras)
        } else {
            &[]
        };
        if !compile::holds(tests, extras, self.views, &self.ctx) {
            return ControlFlow::Continue(());
        }
        // Checked after the tests, which are in cache already, so that only matches pay.
        if matches!(self.out, Out::Dests(_)) && self.dests.contains(m.dest) {
            return ControlFlow::Continue(());
        }
        if multi {
            self.entries.insert(m.entry);
        }
        if m.flags & RESIDUAL != 0 {
            let residual = self
                .index
                .entries
                .get(m.entry as usize)
                .and_then(|s| s.entry.as_ref())
                .and_then(|e| e.residual.as_deref());
            if residual.is_some_and(|f| !f.matches(self.ctx.event)) {
                return ControlFlow::Continue(());
            }
        }
        match self.out {
            Out::Entries(out) => {
                if let Some(slot) = self.index.entries.get(m.entry as usize) {
                    out.push(EntryId {
                        slot: m.entry,
                        generation: slot.generation,
                    });
                }
            }
            Out::Dests(out) => {
                if self.dests.insert(m.dest) {
                    if let Some(d) = self.index.dests.key(m.dest) {
                        out.push(d.clone());
                    }
                    self.found += 1;
                    if self.found >= self.index.dests.live() {
                        return ControlFlow::Break(());
                    }
                }
            }
        }
        ControlFlow::Continue(())
    }
}
