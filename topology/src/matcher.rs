//! The notification routing table: which destinations want an event.
//!
//! A thin layer over the filter crate's [`Index`], which matches exactly (the routable form,
//! then the full expression for filters whose routable form is inexact). Peers' entries are
//! matched exactly too: a peer forwarded its subscribers' own filters, so evaluating them in
//! full here is upstream evaluation, and keeps notifications off links where no subscriber
//! would accept them.

use palio_filter::{EntryId, Event, Index, Scratch};

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
pub(crate) type RouteEntry = EntryId;

/// Filters with their destinations.
pub(crate) struct RouteIndex {
    /// The index.
    index: Index<Dest>,
    /// Matching working memory, reused.
    scratch: Scratch,
}

impl std::fmt::Debug for RouteIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteIndex")
            .field("entries", &self.index.len())
            .finish()
    }
}

impl Default for RouteIndex {
    fn default() -> Self {
        Self {
            index: Index::new(),
            scratch: Scratch::default(),
        }
    }
}

impl RouteIndex {
    /// Adds `filter` for `dest`.
    pub(crate) fn insert(&mut self, filter: &SharedFilter, dest: Dest) -> RouteEntry {
        self.index.insert_arc(filter.arc(), dest)
    }

    /// Removes an entry.
    pub(crate) fn remove(&mut self, entry: RouteEntry) {
        self.index.remove(entry);
    }

    /// The distinct destinations with a filter matching `event`, ascending (so that what the
    /// broker emits does not depend on the index's internal order).
    pub(crate) fn matches(&mut self, event: &Event, out: &mut Vec<Dest>) {
        out.clear();
        self.index.matches(event, &mut self.scratch, out);
        out.sort_unstable();
    }

    /// The number of entries.
    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }

    /// Bytes used by the index.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.index.memory_bytes()
    }
}
