//! The link-state database: every broker's newest advertisement of its live links.
//!
//! Each broker originates one [`LinkStateAd`] listing the peers it has a live link to, with a
//! version `(incarnation, seq)`. Advertisements are flooded over every live link (not only tree
//! links: the tree is what they are used to compute), and a broker whose link comes up sends
//! the new peer its whole database, so a broker joining or a partition healing converges in one
//! exchange plus one flood.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::frame::LinkStateAd;
use crate::ids::BrokerId;
use crate::tree::Graph;

/// What receiving an advertisement did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Received {
    /// Not newer than what we hold: drop it, do not flood it.
    Stale,
    /// Newer: stored; flood it on and recompute the tree.
    Newer,
    /// About ourselves and newer than ours (left over from a previous life): we jumped our own
    /// version past it; flood our own advertisement.
    OwnSuperseded,
}

/// One stored advertisement.
#[derive(Debug, Clone)]
struct Stored {
    /// The advertisement.
    lsa: LinkStateAd,
    /// When it was stored, for ageing out brokers that stopped refreshing.
    updated: Instant,
}

/// Every known broker's newest advertisement, ours included.
#[derive(Debug, Clone)]
pub(crate) struct LinkStateDb {
    /// Our id.
    me: BrokerId,
    /// By origin; ordered so that database exchanges and graph construction are deterministic.
    entries: BTreeMap<BrokerId, Stored>,
}

impl LinkStateDb {
    /// A database holding only our own advertisement, with no neighbours.
    pub(crate) fn new(me: BrokerId, incarnation: u64, now: Instant) -> Self {
        let own = LinkStateAd {
            origin: me,
            incarnation,
            seq: 0,
            neighbours: Vec::new(),
        };
        Self {
            me,
            entries: BTreeMap::from([(
                me,
                Stored {
                    lsa: own,
                    updated: now,
                },
            )]),
        }
    }

    /// Our own advertisement.
    pub(crate) fn own(&self) -> &LinkStateAd {
        // Invariant: `new` inserts our own entry and nothing removes it (`purge` skips it).
        &self.entries[&self.me].lsa
    }

    fn own_mut(&mut self) -> &mut Stored {
        self.entries
            .get_mut(&self.me)
            .expect("our own advertisement is never removed")
    }

    /// Replaces our own neighbour list (ascending), with a new version.
    pub(crate) fn set_own_neighbours(&mut self, neighbours: Vec<BrokerId>, now: Instant) {
        let own = self.own_mut();
        own.lsa.neighbours = neighbours;
        own.lsa.seq += 1;
        own.updated = now;
    }

    /// Gives our own advertisement a new version without changing it (periodic refresh).
    pub(crate) fn refresh_own(&mut self, now: Instant) {
        let own = self.own_mut();
        own.lsa.seq += 1;
        own.updated = now;
    }

    /// Takes in an advertisement received from a peer (already validated).
    pub(crate) fn receive(&mut self, lsa: LinkStateAd, now: Instant) -> Received {
        if lsa.origin == self.me {
            let own = self.own_mut();
            if lsa.version() < own.lsa.version() {
                return Received::Stale;
            }
            // Someone holds a version of us at least as new as ours: a previous life's. Jump
            // past it so that our current state wins everywhere.
            own.lsa.incarnation = lsa.incarnation;
            own.lsa.seq = lsa.seq + 1;
            own.updated = now;
            return Received::OwnSuperseded;
        }
        match self.entries.get(&lsa.origin) {
            Some(s) if s.lsa.version() >= lsa.version() => Received::Stale,
            _ => {
                self.entries
                    .insert(lsa.origin, Stored { lsa, updated: now });
                Received::Newer
            }
        }
    }

    /// Drops other brokers' advertisements not refreshed within `max_age`. Returns whether any
    /// was dropped.
    pub(crate) fn purge(&mut self, now: Instant, max_age: Duration) -> bool {
        let me = self.me;
        let before = self.entries.len();
        self.entries
            .retain(|&b, s| b == me || now.saturating_duration_since(s.updated) <= max_age);
        self.entries.len() != before
    }

    /// Every advertisement, ascending by origin (for a database exchange).
    pub(crate) fn all(&self) -> Vec<LinkStateAd> {
        self.entries.values().map(|s| s.lsa.clone()).collect()
    }

    /// The number of brokers known.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The overlay as this database sees it: a link counts only if both ends report it.
    pub(crate) fn graph(&self) -> Graph {
        let mut g = Graph::new();
        g.add_broker(self.me);
        for (&a, s) in &self.entries {
            for &n in &s.lsa.neighbours {
                if n > a
                    && self
                        .entries
                        .get(&n)
                        .is_some_and(|o| o.lsa.neighbours.binary_search(&a).is_ok())
                {
                    g.add_link(a, n);
                }
            }
        }
        g
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lsa(origin: u32, inc: u64, seq: u64, ns: &[u32]) -> LinkStateAd {
        LinkStateAd {
            origin: BrokerId(origin),
            incarnation: inc,
            seq,
            neighbours: ns.iter().map(|&n| BrokerId(n)).collect(),
        }
    }

    #[test]
    fn newest_version_wins_and_links_need_both_ends() {
        let now = Instant::now();
        let mut db = LinkStateDb::new(BrokerId(0), 1, now);
        db.set_own_neighbours(vec![BrokerId(1)], now);
        assert_eq!(db.receive(lsa(1, 1, 3, &[0, 2]), now), Received::Newer);
        assert_eq!(db.receive(lsa(1, 1, 2, &[0]), now), Received::Stale);
        assert_eq!(db.receive(lsa(2, 1, 1, &[]), now), Received::Newer);
        let g = db.graph();
        assert!(g.has_link(BrokerId(0), BrokerId(1)));
        assert!(!g.has_link(BrokerId(1), BrokerId(2)), "2 does not report 1");
        // A restart (larger incarnation, seq back at 0) beats the old life.
        assert_eq!(db.receive(lsa(1, 2, 0, &[0]), now), Received::Newer);
        assert_eq!(db.all()[1], lsa(1, 2, 0, &[0]));
    }

    #[test]
    fn own_advertisement_from_a_previous_life_is_superseded() {
        let now = Instant::now();
        let mut db = LinkStateDb::new(BrokerId(0), 1, now);
        assert_eq!(db.receive(lsa(0, 1, 7, &[3]), now), Received::OwnSuperseded);
        assert_eq!(db.own().version(), (1, 8));
        assert!(db.own().neighbours.is_empty(), "we keep our own view");
        assert_eq!(db.receive(lsa(0, 1, 7, &[3]), now), Received::Stale);
    }

    #[test]
    fn purge_drops_unrefreshed_but_never_ourselves() {
        let t0 = Instant::now();
        let mut db = LinkStateDb::new(BrokerId(0), 1, t0);
        db.receive(lsa(1, 1, 1, &[]), t0);
        let later = t0 + Duration::from_secs(100);
        assert!(!db.purge(later, Duration::from_secs(100)));
        assert!(db.purge(later, Duration::from_secs(99)));
        assert_eq!(db.len(), 1);
        assert_eq!(db.own().origin, BrokerId(0));
    }
}
