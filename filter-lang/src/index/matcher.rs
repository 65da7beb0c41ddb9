//! Matching an event: views, cluster visits, exact checks, residuals, and the two outputs
//! (every matching entry, or each matching destination once with early exit).

use std::hash::Hash;
use std::ops::ControlFlow;

use crate::event::Event;

use super::cluster::Cluster;
use super::compile::EventCtx;
use super::intern::NONE;
use super::view::{Marks, View, Views};
use super::{Conj, EntryId, Index, Scratch};

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
        let index = self.index;
        let complete = cluster.for_each_candidate(self.views, cand, |slot| {
            let Some(conj) = index.conjs.get(slot as usize).and_then(Option::as_ref) else {
                return true;
            };
            self.candidate(conj).is_continue()
        });
        if complete {
            ControlFlow::Continue(())
        } else {
            ControlFlow::Break(())
        }
    }

    /// Checks one candidate conjunction and reports its entry if it matches.
    #[inline]
    fn candidate(&mut self, conj: &Conj) -> ControlFlow<()> {
        if self.entries.contains(conj.entry) {
            return ControlFlow::Continue(());
        }
        let want_dests = matches!(self.out, Out::Dests(_));
        if want_dests && self.dests.contains(conj.dest) {
            return ControlFlow::Continue(());
        }
        if !conj.compiled.holds(self.views, &self.ctx) {
            return ControlFlow::Continue(());
        }
        self.entries.insert(conj.entry);
        let Some(slot) = self.index.entries.get(conj.entry as usize) else {
            return ControlFlow::Continue(());
        };
        let Some(entry) = &slot.entry else {
            return ControlFlow::Continue(());
        };
        if let Some(filter) = &entry.residual
            && !filter.matches(self.ctx.event)
        {
            return ControlFlow::Continue(());
        }
        match self.out {
            Out::Entries(out) => out.push(EntryId {
                slot: conj.entry,
                generation: slot.generation,
            }),
            Out::Dests(out) => {
                if self.dests.insert(entry.dest) {
                    if let Some(d) = self.index.dests.key(entry.dest) {
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
