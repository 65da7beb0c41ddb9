//! The link-state database: every broker's newest advertisement of its live links.
//!
//! Each broker originates one [`LinkStateAd`] listing the peers it has a live link to, with a
//! version `(incarnation, seq)`. Advertisements are flooded over every live link (not only tree
//! links: the tree is what they are used to compute), and a broker whose link comes up sends
//! the new peer its whole database, so a broker joining or a partition healing converges in one
//! exchange plus one flood.
//!
//! # What a peer cannot do to it
//!
//! A peer is verified to be the broker it says it is, but what it relays about other brokers
//! cannot be checked. So:
//!
//! - **No overflow.** A version is compared as one 128-bit number (incarnation in the high
//!   half, `seq` in the low half), and our own version advances on that number: `seq` rolls
//!   over into the incarnation instead of overflowing. At the very top it stays put (then we
//!   can no longer advance; the next rule makes that unreachable from outside).
//! - **Jumps keep headroom.** When a peer holds an advertisement of us at least as new as ours
//!   (a previous life's), we jump our version past it, but only if that leaves
//!   [`JUMP_HEADROOM`] (2³²) versions above us; an advertisement of us nearer the top is refused
//!   ([`AdvertRefusal::Version`]), because no broker of ours can have made it and jumping to it
//!   would leave us unable to advance. Brokers with no link to us may still hold such a forgery
//!   until it ages out (`lsa_max_age`): without signed advertisements nothing can outbid it.
//! - **Direct links are authoritative.** While we have a live link to broker `x`, we take `x`'s
//!   advertisement only from `x` itself; copies relayed by other peers are dropped as stale
//!   (not counted: in a mesh a relayed copy often overtakes `x`'s own, so counting them would
//!   only count races). The first advertisement `x` sends on a new link replaces a relayed one
//!   whatever their versions. This also means our own advertisement is never echoed back to
//!   us by a neighbour.
//! - **Bounded.** The database holds at most `max_brokers` brokers, ourselves included. An
//!   advertisement of a new broker beyond that is refused ([`AdvertRefusal::DatabaseFull`]),
//!   unless it comes first-hand from a linked broker: then it evicts the stalest entry of a
//!   broker we have no link to. Relayed advertisements can thus never push out a broker we are
//!   linked to.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::frame::LinkStateAd;
use crate::ids::BrokerId;
use crate::tree::Graph;

/// How many versions must remain above the one we jump to when a peer holds an advertisement
/// of us newer than ours. Each change of our links and each refresh takes one version, so 2³²
/// is more than a broker ever uses; what is nearer the top can only be a forgery.
pub(crate) const JUMP_HEADROOM: u128 = 1 << 32;

/// Why a link-state advertisement from a peer was refused. Refusals are counted, not protocol
/// errors: the peer that relayed one may only be passing on what it received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum AdvertRefusal {
    /// It describes a broker not in the database, which is full (`max_brokers`).
    DatabaseFull,
    /// It describes us with a version so near the top of the version space that jumping past
    /// it would leave us unable to advance.
    Version,
    /// It lists more neighbours than `max_neighbours` (relayed; first-hand it is a protocol
    /// error).
    TooLarge,
}

impl AdvertRefusal {
    /// Every reason, in a fixed order.
    pub const ALL: [AdvertRefusal; 3] = [
        AdvertRefusal::DatabaseFull,
        AdvertRefusal::Version,
        AdvertRefusal::TooLarge,
    ];

    /// The label used in metrics: `database_full`, `version`, `too_large`.
    pub fn as_str(self) -> &'static str {
        match self {
            AdvertRefusal::DatabaseFull => "database_full",
            AdvertRefusal::Version => "version",
            AdvertRefusal::TooLarge => "too_large",
        }
    }

    /// The reason's place in [`AdvertRefusal::ALL`].
    pub(crate) fn index(self) -> usize {
        match self {
            AdvertRefusal::DatabaseFull => 0,
            AdvertRefusal::Version => 1,
            AdvertRefusal::TooLarge => 2,
        }
    }
}

/// What receiving an advertisement did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Received {
    /// Not newer than what we hold (or a relayed copy about a linked broker): drop it, do not
    /// flood it.
    Stale,
    /// Newer: stored; flood it on and recompute the tree.
    Newer,
    /// About ourselves and newer than ours (left over from a previous life): we jumped our own
    /// version past it; flood our own advertisement.
    OwnSuperseded,
    /// Refused: drop it, do not flood it, count it.
    Refused(AdvertRefusal),
}

/// An advertisement's version as one number, so that "the next version" never overflows.
fn version_number(lsa: &LinkStateAd) -> u128 {
    (u128::from(lsa.incarnation) << 64) | u128::from(lsa.seq)
}

/// Sets an advertisement's version from its number.
fn set_version_number(lsa: &mut LinkStateAd, v: u128) {
    // The high and low halves of a u128 each fit a u64 exactly.
    lsa.incarnation = (v >> 64) as u64;
    lsa.seq = v as u64;
}

/// One stored advertisement.
#[derive(Debug, Clone)]
struct Stored {
    /// The advertisement.
    lsa: LinkStateAd,
    /// When it was stored, for ageing out brokers that stopped refreshing.
    updated: Instant,
    /// It came from its origin itself, on the link that is still up: relayed copies cannot
    /// replace it (see the module docs).
    first_hand: bool,
}

/// Every known broker's newest advertisement, ours included.
#[derive(Debug, Clone)]
pub(crate) struct LinkStateDb {
    /// Our id.
    me: BrokerId,
    /// The most brokers held, ourselves included.
    max_brokers: usize,
    /// By origin; ordered so that database exchanges and graph construction are deterministic.
    entries: BTreeMap<BrokerId, Stored>,
}

impl LinkStateDb {
    /// A database holding only our own advertisement, with no neighbours, and room for
    /// `max_brokers` brokers (at least ourselves).
    pub(crate) fn new(me: BrokerId, incarnation: u64, max_brokers: usize, now: Instant) -> Self {
        let own = LinkStateAd {
            origin: me,
            incarnation,
            seq: 0,
            neighbours: Vec::new(),
        };
        Self {
            me,
            max_brokers: max_brokers.max(1),
            entries: BTreeMap::from([(
                me,
                Stored {
                    lsa: own,
                    updated: now,
                    first_hand: true,
                },
            )]),
        }
    }

    /// Our own advertisement.
    pub(crate) fn own(&self) -> &LinkStateAd {
        // Invariant: `new` inserts our own entry and nothing removes it (`purge` and `evict`
        // skip it).
        &self.entries[&self.me].lsa
    }

    fn own_mut(&mut self) -> &mut Stored {
        self.entries
            .get_mut(&self.me)
            .expect("our own advertisement is never removed")
    }

    /// Gives our own advertisement the next version (it stays put at the very top).
    fn advance_own(own: &mut Stored, now: Instant) {
        if let Some(v) = version_number(&own.lsa).checked_add(1) {
            set_version_number(&mut own.lsa, v);
        }
        own.updated = now;
    }

    /// Replaces our own neighbour list (ascending), with a new version.
    pub(crate) fn set_own_neighbours(&mut self, neighbours: Vec<BrokerId>, now: Instant) {
        let own = self.own_mut();
        own.lsa.neighbours = neighbours;
        Self::advance_own(own, now);
    }

    /// Gives our own advertisement a new version without changing it (periodic refresh).
    pub(crate) fn refresh_own(&mut self, now: Instant) {
        Self::advance_own(self.own_mut(), now);
    }

    /// The link to `peer` went down: what it told us itself may be replaced by relayed copies
    /// again (by version, as usual).
    pub(crate) fn link_down(&mut self, peer: BrokerId) {
        if let Some(s) = self.entries.get_mut(&peer) {
            s.first_hand = false;
        }
    }

    /// Takes in an advertisement that peer `from` sent us (already validated for size).
    /// `linked` are the peers we have a live link to.
    pub(crate) fn receive(
        &mut self,
        lsa: LinkStateAd,
        from: BrokerId,
        linked: &BTreeSet<BrokerId>,
        now: Instant,
    ) -> Received {
        let version = version_number(&lsa);
        if lsa.origin == self.me {
            let own = self.own_mut();
            if version < version_number(&own.lsa) {
                return Received::Stale;
            }
            // Someone holds a version of us at least as new as ours: a previous life's. Jump
            // past it so that our current state wins everywhere — unless that would leave us
            // too little room to advance (see the module docs).
            match version.checked_add(1) {
                Some(next) if u128::MAX - next >= JUMP_HEADROOM => {
                    set_version_number(&mut own.lsa, next);
                    own.updated = now;
                    return Received::OwnSuperseded;
                }
                _ => return Received::Refused(AdvertRefusal::Version),
            }
        }
        let first_hand = from == lsa.origin;
        let held = self.entries.get(&lsa.origin);
        let newer = held.is_none_or(|s| version > version_number(&s.lsa));
        if !first_hand && linked.contains(&lsa.origin) {
            // The origin speaks for itself on its own link.
            return Received::Stale;
        }
        let replaces = match held {
            None => true,
            // A first-hand advertisement on a new link replaces a relayed one, whatever
            // their versions; otherwise the newer version wins.
            Some(s) => newer || (first_hand && !s.first_hand),
        };
        if !replaces {
            return Received::Stale;
        }
        if held.is_none() && self.entries.len() >= self.max_brokers {
            let evicted = first_hand && self.evict(linked);
            if !evicted {
                return Received::Refused(AdvertRefusal::DatabaseFull);
            }
        }
        self.entries.insert(
            lsa.origin,
            Stored {
                lsa,
                updated: now,
                first_hand,
            },
        );
        Received::Newer
    }

    /// Drops the stalest advertisement of a broker we have no link to (never ours). Returns
    /// whether one was dropped.
    fn evict(&mut self, linked: &BTreeSet<BrokerId>) -> bool {
        let me = self.me;
        let victim = self
            .entries
            .iter()
            .filter(|&(&b, _)| b != me && !linked.contains(&b))
            .min_by_key(|&(&b, s)| (s.updated, b))
            .map(|(&b, _)| b);
        victim.is_some_and(|b| self.entries.remove(&b).is_some())
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

    /// No live links: everything is relayed (by broker 99).
    fn relayed(db: &mut LinkStateDb, a: LinkStateAd, now: Instant) -> Received {
        db.receive(a, BrokerId(99), &BTreeSet::new(), now)
    }

    fn linked(ids: &[u32]) -> BTreeSet<BrokerId> {
        ids.iter().map(|&b| BrokerId(b)).collect()
    }

    #[test]
    fn newest_version_wins_and_links_need_both_ends() {
        let now = Instant::now();
        let mut db = LinkStateDb::new(BrokerId(0), 1, 1024, now);
        db.set_own_neighbours(vec![BrokerId(1)], now);
        assert_eq!(
            relayed(&mut db, lsa(1, 1, 3, &[0, 2]), now),
            Received::Newer
        );
        assert_eq!(relayed(&mut db, lsa(1, 1, 2, &[0]), now), Received::Stale);
        assert_eq!(relayed(&mut db, lsa(2, 1, 1, &[]), now), Received::Newer);
        let g = db.graph();
        assert!(g.has_link(BrokerId(0), BrokerId(1)));
        assert!(!g.has_link(BrokerId(1), BrokerId(2)), "2 does not report 1");
        // A restart (larger incarnation, seq back at 0) beats the old life.
        assert_eq!(relayed(&mut db, lsa(1, 2, 0, &[0]), now), Received::Newer);
        assert_eq!(db.all()[1], lsa(1, 2, 0, &[0]));
    }

    #[test]
    fn own_advertisement_from_a_previous_life_is_superseded() {
        let now = Instant::now();
        let mut db = LinkStateDb::new(BrokerId(0), 1, 1024, now);
        assert_eq!(
            relayed(&mut db, lsa(0, 1, 7, &[3]), now),
            Received::OwnSuperseded
        );
        assert_eq!(db.own().version(), (1, 8));
        assert!(db.own().neighbours.is_empty(), "we keep our own view");
        assert_eq!(relayed(&mut db, lsa(0, 1, 7, &[3]), now), Received::Stale);
    }

    #[test]
    fn a_seq_of_u64_max_rolls_into_the_incarnation_instead_of_overflowing() {
        let now = Instant::now();
        let mut db = LinkStateDb::new(BrokerId(0), 1, 1024, now);
        // Jumping past seq u64::MAX: the next version is the next incarnation's first.
        assert_eq!(
            relayed(&mut db, lsa(0, 1, u64::MAX, &[]), now),
            Received::OwnSuperseded
        );
        assert_eq!(db.own().version(), (2, 0));
        // Our own advances roll over the same way.
        assert_eq!(
            relayed(&mut db, lsa(0, 2, u64::MAX - 1, &[]), now),
            Received::OwnSuperseded
        );
        assert_eq!(db.own().version(), (2, u64::MAX));
        db.set_own_neighbours(vec![BrokerId(4)], now);
        assert_eq!(db.own().version(), (3, 0));
        db.refresh_own(now);
        assert_eq!(db.own().version(), (3, 1));
        // Others' advertisements with extreme versions are plain data.
        assert_eq!(
            relayed(&mut db, lsa(5, u64::MAX, u64::MAX, &[]), now),
            Received::Newer
        );
    }

    #[test]
    fn a_version_of_us_too_near_the_top_is_refused_and_we_keep_advancing() {
        let now = Instant::now();
        let mut db = LinkStateDb::new(BrokerId(0), 1, 1024, now);
        for (inc, seq) in [(u64::MAX, u64::MAX), (u64::MAX, u64::MAX - (1 << 32) + 1)] {
            assert_eq!(
                relayed(&mut db, lsa(0, inc, seq, &[]), now),
                Received::Refused(AdvertRefusal::Version)
            );
            assert_eq!(db.own().version(), (1, 0), "no jump");
        }
        // The highest version we do jump to still leaves 2^32 advances.
        let top = u64::MAX - (1 << 32);
        assert_eq!(
            relayed(&mut db, lsa(0, u64::MAX, top - 1, &[]), now),
            Received::OwnSuperseded
        );
        assert_eq!(db.own().version(), (u64::MAX, top));
        db.set_own_neighbours(vec![BrokerId(1)], now);
        assert_eq!(db.own().version(), (u64::MAX, top + 1));
        assert_eq!(
            relayed(&mut db, lsa(0, u64::MAX, top + 1, &[]), now),
            Received::Refused(AdvertRefusal::Version),
            "a second forgery cannot push us further"
        );
    }

    #[test]
    fn the_database_is_bounded_and_only_first_hand_advertisements_evict() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(1);
        let mut db = LinkStateDb::new(BrokerId(0), 1, 3, t0);
        let up = linked(&[1]);
        assert_eq!(
            db.receive(lsa(5, 1, 1, &[]), BrokerId(1), &up, t0),
            Received::Newer
        );
        assert_eq!(
            db.receive(lsa(6, 1, 1, &[]), BrokerId(1), &up, t1),
            Received::Newer
        );
        assert_eq!(db.len(), 3);
        // A relayed advertisement of a new broker is refused; one of a known broker is not.
        assert_eq!(
            db.receive(lsa(7, 1, 1, &[]), BrokerId(1), &up, t1),
            Received::Refused(AdvertRefusal::DatabaseFull)
        );
        assert_eq!(
            db.receive(lsa(6, 1, 2, &[]), BrokerId(1), &up, t1),
            Received::Newer
        );
        // Broker 1 itself, on its live link: the stalest unlinked entry (5) makes room.
        assert_eq!(
            db.receive(lsa(1, 1, 1, &[0]), BrokerId(1), &up, t1),
            Received::Newer
        );
        assert_eq!(db.len(), 3);
        let origins: Vec<u32> = db.all().iter().map(|a| a.origin.0).collect();
        assert_eq!(origins, vec![0, 1, 6]);
        // With every other entry linked, nothing can be evicted.
        let both = linked(&[1, 6]);
        assert_eq!(
            db.receive(lsa(6, 1, 3, &[]), BrokerId(6), &both, t1),
            Received::Newer
        );
        assert_eq!(
            db.receive(lsa(8, 1, 1, &[]), BrokerId(8), &linked(&[1, 6, 8]), t1),
            Received::Refused(AdvertRefusal::DatabaseFull)
        );
        assert_eq!(db.len(), 3);
    }

    #[test]
    fn relayed_copies_cannot_overwrite_a_directly_linked_broker() {
        let now = Instant::now();
        let mut db = LinkStateDb::new(BrokerId(0), 1, 1024, now);
        // A forgery of broker 1, relayed by 2, arrived before the link to 1 came up.
        let forged = lsa(1, u64::MAX, u64::MAX, &[]);
        assert_eq!(relayed(&mut db, forged.clone(), now), Received::Newer);
        let up = linked(&[1, 2]);
        db.set_own_neighbours(vec![BrokerId(1), BrokerId(2)], now);
        // Broker 1's own advertisement on its link replaces it, whatever the versions.
        assert_eq!(
            db.receive(lsa(1, 3, 4, &[0]), BrokerId(1), &up, now),
            Received::Newer
        );
        assert_eq!(db.all()[1], lsa(1, 3, 4, &[0]));
        // While the link is up, relayed copies are dropped, however new they claim to be.
        assert_eq!(
            db.receive(forged.clone(), BrokerId(2), &up, now),
            Received::Stale
        );
        assert_eq!(db.all()[1], lsa(1, 3, 4, &[0]));
        assert_eq!(
            db.receive(lsa(1, 3, 5, &[0, 2]), BrokerId(1), &up, now),
            Received::Newer
        );
        assert!(db.graph().has_link(BrokerId(0), BrokerId(1)));
        // Once the link is down, versions decide again.
        db.link_down(BrokerId(1));
        assert_eq!(
            db.receive(forged, BrokerId(2), &linked(&[2]), now),
            Received::Newer
        );
    }

    #[test]
    fn purge_drops_unrefreshed_but_never_ourselves() {
        let t0 = Instant::now();
        let mut db = LinkStateDb::new(BrokerId(0), 1, 1024, t0);
        relayed(&mut db, lsa(1, 1, 1, &[]), t0);
        let later = t0 + Duration::from_secs(100);
        assert!(!db.purge(later, Duration::from_secs(100)));
        assert!(db.purge(later, Duration::from_secs(99)));
        assert_eq!(db.len(), 1);
        assert_eq!(db.own().origin, BrokerId(0));
    }
}
