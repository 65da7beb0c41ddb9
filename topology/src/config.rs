//! Configuration: the routing strategy and the few knobs of the state machine.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::ids::BrokerId;

/// How subscriptions (and advertisements) are propagated. Notifications always travel on the
/// same spanning tree; the strategy decides how much each broker knows about where they are
/// wanted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Strategy {
    /// No subscription forwarding: every notification reaches every broker over the tree, and
    /// each broker matches it against its local subscriptions only. No routing state; the most
    /// notification traffic.
    Flooding,
    /// Every subscription is forwarded to every broker (each filter once per link).
    Simple,
    /// A subscription is not forwarded over a link that already carries a filter covering it;
    /// withdrawing a covering filter re-forwards what it covered. The default.
    #[default]
    Covering,
    /// Covering, and a subscription travels toward a neighbour only if an advertisement received
    /// from that neighbour intersects it. Advertisements are themselves flooded with covering.
    /// Publications a publisher did not advertise are not guaranteed to reach anyone.
    Advertisements,
}

impl Strategy {
    /// Every strategy, in order of increasing sophistication.
    pub const ALL: [Strategy; 4] = [
        Strategy::Flooding,
        Strategy::Simple,
        Strategy::Covering,
        Strategy::Advertisements,
    ];

    /// The name used on command lines and in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Flooding => "flooding",
            Strategy::Simple => "simple",
            Strategy::Covering => "covering",
            Strategy::Advertisements => "advertisements",
        }
    }

    /// Whether subscriptions are forwarded to peers at all.
    pub(crate) fn forwards_subscriptions(self) -> bool {
        self != Strategy::Flooding
    }

    /// Whether forwarded subscriptions (and advertisements) are pruned by covering.
    pub(crate) fn uses_covering(self) -> bool {
        matches!(self, Strategy::Covering | Strategy::Advertisements)
    }

    /// Whether advertisements are forwarded and gate subscription forwarding.
    pub(crate) fn uses_advertisements(self) -> bool {
        self == Strategy::Advertisements
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown strategy name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown routing strategy {0:?} (expected flooding, simple, covering or advertisements)")]
pub struct UnknownStrategy(pub String);

impl FromStr for Strategy {
    type Err = UnknownStrategy;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Strategy::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownStrategy(s.to_owned()))
    }
}

/// How a [`Broker`](crate::Broker) behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// This broker's id, unique in the overlay.
    pub id: BrokerId,
    /// This broker's life: must be larger after every restart (a start time in milliseconds, or
    /// a counter kept on disk). A broker that gets this wrong still recovers: on seeing its own
    /// advertisement from a previous life it jumps its sequence number past it.
    pub incarnation: u64,
    /// The routing strategy. Every broker of an overlay must use the same one.
    pub strategy: Strategy,
    /// How long after a link-state change the spanning tree is recomputed. Changes arriving in
    /// the meantime are folded into the same recomputation, so a burst of link-state floods
    /// (a broker with many links coming up) costs one recomputation and one re-establishment of
    /// routing state, not one per advertisement. Default 50 ms: longer than a flood takes to
    /// cross a data centre, short against link failure detection (QUIC idle timeout, seconds).
    pub tree_delay: Duration,
    /// How often the broker re-floods its own link-state advertisement. Default 10 minutes.
    pub lsa_refresh: Duration,
    /// How long another broker's advertisement is kept without being refreshed. Default 35
    /// minutes (three refreshes and some slack): long enough that a refresh lost to a partition
    /// does not drop a live broker; dead brokers are harmless meanwhile, because a link counts
    /// only if both ends report it.
    pub lsa_max_age: Duration,
    /// Bound on the candidates examined per covering lookup. A covering filter not found is
    /// harmless (the covered filter is merely forwarded too); the bound keeps the cost of a
    /// subscription update flat however many filters a link carries. Default 256.
    pub covering_scan_limit: usize,
    /// Bound on the neighbours one link-state advertisement may list. Default 4096. A broker's
    /// own advertisement over the bound is a protocol error; one relayed is refused and counted.
    pub max_neighbours: usize,
    /// Bound on the brokers the link-state database holds, this one included. Default 1024.
    /// An advertisement of a new broker beyond it is refused and counted, unless it comes from
    /// a broker we have a live link to (then the stalest broker we have no link to makes room).
    pub max_brokers: usize,
    /// Bound on the live route entries (subscriptions plus advertisements) one peer may hold on
    /// its link. Default 16 Mi entries.
    pub max_entries_per_peer: usize,
}

impl Config {
    /// The defaults for broker `id` in life `incarnation`.
    pub fn new(id: BrokerId, incarnation: u64) -> Self {
        Self {
            id,
            incarnation,
            strategy: Strategy::default(),
            tree_delay: Duration::from_millis(50),
            lsa_refresh: Duration::from_secs(600),
            lsa_max_age: Duration::from_secs(35 * 60),
            covering_scan_limit: 256,
            max_neighbours: 4096,
            max_brokers: 1024,
            max_entries_per_peer: 16 << 20,
        }
    }

    /// The same with `strategy`.
    pub fn with_strategy(mut self, strategy: Strategy) -> Self {
        self.strategy = strategy;
        self
    }
}
