//! The notification routing table: which destinations want an event.
//!
//! A thin wrapper over the filter crate's matching index, with the destinations a broker
//! routes to. It matches on the routable form; local subscriptions are then checked against
//! their full filter by the caller before delivery.

use palio_filter::Event;

use crate::frame::SharedFilter;
use crate::ids::{BrokerId, SubscriptionId};

/// Where a matching notification goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Dest {
    /// Toward a peer that forwarded a matching filter.
    Peer(BrokerId),
    /// To a local subscription.
    Local(SubscriptionId),
}

/// Names one entry of a [`RouteIndex`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RouteEntry(usize);

/// Filters with their destinations.
#[derive(Debug, Default)]
pub(crate) struct RouteIndex {
    entries: Vec<Option<(SharedFilter, Dest)>>,
    free: Vec<usize>,
    len: usize,
}

impl RouteIndex {
    /// Adds `filter` for `dest`.
    pub(crate) fn insert(&mut self, filter: &SharedFilter, dest: Dest) -> RouteEntry {
        self.len += 1;
        let e = Some((filter.clone(), dest));
        match self.free.pop() {
            Some(i) => {
                self.entries[i] = e;
                RouteEntry(i)
            }
            None => {
                self.entries.push(e);
                RouteEntry(self.entries.len() - 1)
            }
        }
    }

    /// Removes an entry.
    pub(crate) fn remove(&mut self, entry: RouteEntry) {
        if self
            .entries
            .get_mut(entry.0)
            .and_then(Option::take)
            .is_some()
        {
            self.len -= 1;
            self.free.push(entry.0);
        }
    }

    /// The distinct destinations with a filter whose routable form matches `event`, ascending.
    pub(crate) fn matches(&mut self, event: &Event, out: &mut Vec<Dest>) {
        out.clear();
        for (f, d) in self.entries.iter().flatten() {
            if f.routable().matches(event) {
                out.push(*d);
            }
        }
        out.sort_unstable();
        out.dedup();
    }

    /// The number of entries.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}
