//! What one link should carry, and what it does carry: the per-neighbour covering forest.
//!
//! For each tree neighbour `n` and each kind (subscriptions, advertisements), the broker knows
//! the *desired* set of filters for `n`: every filter held by some other contributing interface
//! (and, for subscriptions under the advertisements strategy, intersecting an advertisement
//! received from `n`). The forest holds exactly that set, each member either
//!
//! - **sent**: forwarded to `n` (a root), or
//! - **covered**: not forwarded, because a sent filter (its parent) covers it.
//!
//! Invariant: every covered member's parent is a sent member that covers it. So every event
//! matching a member matches a sent filter, which is all the neighbour needs to route toward us.
//! Without covering (the simple strategy) every member is sent.
//!
//! Updates are incremental and emit the difference as [`Action`]s:
//! - inserting `f`: if a sent filter covers it, `f` becomes its child (nothing sent); otherwise
//!   `f` is sent, and sent filters that `f` covers are withdrawn and become its children (after
//!   `f` is sent, so the neighbour never lacks a covering entry).
//! - removing a covered `f`: nothing to say. Removing a sent `f`: it is withdrawn and its
//!   children are re-inserted broadest first: this is how unsubscribing re-forwards the
//!   subscriptions it had covered.
//!
//! Children lists are cleaned lazily: removing a covered member leaves its id in the parent's
//! list, and readers check the member's slot still names that parent.

use std::collections::{BTreeSet, HashMap};

use crate::cover::CoverIndex;
use crate::table::{FilterId, FilterTable};

/// A change to what the link carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Forward this filter.
    Send(FilterId),
    /// Withdraw this previously forwarded filter.
    Withdraw(FilterId),
}

/// A member's place in the forest.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Slot {
    /// Forwarded. `children` may hold stale ids (see the module docs); `stale` counts removals
    /// since the last compaction.
    Sent { children: Vec<FilterId>, stale: u32 },
    /// Not forwarded: covered by `parent`, which is sent.
    Covered { parent: FilterId },
}

/// The desired set for one neighbour and one kind, and which of it is forwarded.
#[derive(Debug)]
pub(crate) struct Forest {
    /// Whether covering prunes what is sent (false: the simple strategy).
    covering: bool,
    /// Bound on candidates examined per covering lookup.
    scan_limit: usize,
    /// Every member (lookups only).
    slots: HashMap<FilterId, Slot>,
    /// The sent members, ascending (deterministic teardown).
    sent: BTreeSet<FilterId>,
    /// The sent members, filed for covering lookups (empty without covering).
    index: CoverIndex,
}

impl Forest {
    /// An empty forest.
    pub(crate) fn new(covering: bool, scan_limit: usize) -> Self {
        Self {
            covering,
            scan_limit,
            slots: HashMap::new(),
            sent: BTreeSet::new(),
            index: CoverIndex::default(),
        }
    }

    /// Whether `f` is a member.
    pub(crate) fn contains(&self, f: FilterId) -> bool {
        self.slots.contains_key(&f)
    }

    /// The number of members.
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// The sent members, ascending.
    pub(crate) fn sent(&self) -> &BTreeSet<FilterId> {
        &self.sent
    }

    /// The members, ascending.
    pub(crate) fn members(&self) -> Vec<FilterId> {
        let mut m: Vec<FilterId> = self.slots.keys().copied().collect();
        m.sort_unstable();
        m
    }

    /// Adds `f` (not a member) to the desired set.
    pub(crate) fn insert(&mut self, f: FilterId, table: &FilterTable, out: &mut Vec<Action>) {
        debug_assert!(!self.contains(f));
        if self.covering
            && let Some(g) = self.index.find_coverer(f, table, self.scan_limit)
        {
            self.adopt(g, f);
            return;
        }
        self.slots.insert(
            f,
            Slot::Sent {
                children: Vec::new(),
                stale: 0,
            },
        );
        self.sent.insert(f);
        out.push(Action::Send(f));
        if !self.covering {
            return;
        }
        self.index.insert(f, table.filter(f).shape());
        for h in self.index.find_coverees(f, table, self.scan_limit) {
            // `h` is sent and covered by `f`: withdraw it and hand its children to `f`.
            self.sent.remove(&h);
            self.index.remove(h, table.filter(h).shape());
            out.push(Action::Withdraw(h));
            let old = self.slots.insert(h, Slot::Covered { parent: f });
            self.push_child(f, h);
            if let Some(Slot::Sent { children, .. }) = old {
                for c in children {
                    if self.slots.get(&c) == Some(&Slot::Covered { parent: h }) {
                        self.slots.insert(c, Slot::Covered { parent: f });
                        self.push_child(f, c);
                    }
                }
            }
        }
    }

    /// Makes `f` a covered child of the sent member `g`.
    fn adopt(&mut self, g: FilterId, f: FilterId) {
        self.slots.insert(f, Slot::Covered { parent: g });
        self.push_child(g, f);
    }

    fn push_child(&mut self, parent: FilterId, child: FilterId) {
        if let Some(Slot::Sent { children, .. }) = self.slots.get_mut(&parent) {
            children.push(child);
        }
    }

    /// Removes `f` from the desired set (no effect if it is not a member).
    pub(crate) fn remove(&mut self, f: FilterId, table: &FilterTable, out: &mut Vec<Action>) {
        match self.slots.remove(&f) {
            None => {}
            Some(Slot::Covered { parent }) => {
                let compact = match self.slots.get_mut(&parent) {
                    Some(Slot::Sent { children, stale }) => {
                        *stale += 1;
                        *stale as usize > 16 && *stale as usize * 2 > children.len()
                    }
                    _ => false,
                };
                if compact && let Some(Slot::Sent { children, .. }) = self.slots.get(&parent) {
                    let mut kept: Vec<FilterId> = children
                        .iter()
                        .copied()
                        .filter(|c| self.slots.get(c) == Some(&Slot::Covered { parent }))
                        .collect();
                    kept.sort_unstable();
                    kept.dedup();
                    if let Some(Slot::Sent { children, stale }) = self.slots.get_mut(&parent) {
                        *children = kept;
                        *stale = 0;
                    }
                }
            }
            Some(Slot::Sent { children, .. }) => {
                self.sent.remove(&f);
                if self.covering {
                    self.index.remove(f, table.filter(f).shape());
                }
                out.push(Action::Withdraw(f));
                let mut orphans: Vec<FilterId> = children
                    .into_iter()
                    .filter(|c| self.slots.get(c) == Some(&Slot::Covered { parent: f }))
                    .collect();
                orphans.sort_unstable();
                orphans.dedup();
                orphans.sort_by_key(|&c| (table.filter(c).shape().breadth_rank(), c));
                for &c in &orphans {
                    self.slots.remove(&c);
                }
                for c in orphans {
                    self.insert(c, table, out);
                }
            }
        }
    }

    /// Empties the forest, returning the sent members (ascending) so the caller can withdraw
    /// them if the link is still up.
    pub(crate) fn clear(&mut self) -> Vec<FilterId> {
        self.slots.clear();
        self.index = CoverIndex::default();
        std::mem::take(&mut self.sent).into_iter().collect()
    }

    /// Checks the invariant against `table`: every covered member's parent is sent and covers
    /// it. For tests and audits.
    pub(crate) fn audit(&self, table: &FilterTable) -> Result<(), String> {
        for (&f, slot) in &self.slots {
            if !table.is_live(f) {
                return Err(format!("member {f:?} is not a live filter"));
            }
            match slot {
                Slot::Sent { .. } => {
                    if !self.sent.contains(&f) {
                        return Err(format!("{f:?} is sent but not listed"));
                    }
                }
                Slot::Covered { parent } => {
                    if !self.sent.contains(parent) {
                        return Err(format!("{f:?}'s parent {parent:?} is not sent"));
                    }
                    if !crate::cover::covers(table.filter(*parent), table.filter(f)) {
                        return Err(format!("{f:?}'s parent {parent:?} does not cover it"));
                    }
                    if !self.covering {
                        return Err(format!("{f:?} is covered without covering"));
                    }
                }
            }
        }
        if self.sent.iter().any(|s| !self.slots.contains_key(s)) {
            return Err("a listed sent filter is not a member".to_owned());
        }
        Ok(())
    }
}
