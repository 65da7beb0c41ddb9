//! What a broker says about itself: [`ServerInfo`] (its identity, uptime and peers, answering
//! [`ClientFrame::ServerInfo`](crate::ClientFrame::ServerInfo)) and [`RoutesInfo`] (its peer
//! links, the spanning tree and its routing tables, answering
//! [`ClientFrame::Routes`](crate::ClientFrame::Routes); the admin listener's `/routes` is the
//! same value in JSON).
//!
//! Routing tables can be long, so each is a [`Listing`]: its size, and at most its first
//! entries. Entries are left out in two ways: for size (`truncated` says how many), and by
//! the broker's disclosure policy (`entries` absent: filters and clients are not shown).

use serde::{Deserialize, Serialize};

/// A broker's identity, uptime and peers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerInfo {
    /// The broker's name (its `--id`).
    pub id: String,
    /// Its routing id (a hash of the name).
    pub broker_id: u32,
    /// The broker's version (its crate version).
    pub version: String,
    /// How long it has been running, in milliseconds.
    pub uptime_ms: u64,
    /// The routing strategy (`flooding`, `simple`, `covering` or `advertisements`).
    pub strategy: String,
    /// Client connections open now.
    pub clients: u64,
    /// The largest frame it accepts from a client.
    pub max_frame: u32,
    /// Its live peer links, and the configured peer addresses without one.
    pub peers: Vec<PeerInfo>,
}

/// A peer of a broker: a live link, or a configured address that has none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerInfo {
    /// The peer's routing id, once known.
    pub id: Option<u32>,
    /// The peer's name (its `--id`), once known.
    pub name: Option<String>,
    /// The configured address (for a dialed peer), else the link's remote address.
    pub address: String,
    /// `up` (a live link) or `down`.
    pub state: String,
    /// The link's round-trip time in microseconds (QUIC's estimate), when up.
    pub rtt_us: Option<u64>,
    /// Whether the address is in this broker's configured peers (it dials it).
    pub dialed: bool,
    /// Why the last attempt to dial it failed, if it did.
    pub last_error: Option<String>,
}

/// A broker's routing state: the admin listener's `/routes`, and the answer to
/// [`ClientFrame::Routes`](crate::ClientFrame::Routes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutesInfo {
    /// The broker.
    pub broker: BrokerRef,
    /// The routing strategy.
    pub strategy: String,
    /// `full`, or `summary` when filters and clients are not shown (the listings then have no
    /// entries).
    pub detail: String,
    /// Live peer links, each with its routing tables.
    pub peers: Vec<LinkInfo>,
    /// The configured peer addresses and how dialing them goes.
    pub dialed: Vec<DialInfo>,
    /// Brokers in the link-state database, this one included.
    pub known_brokers: u64,
    /// This broker's own link-state advertisement.
    pub link_state: LinkStateInfo,
    /// The shared spanning tree.
    pub tree: TreeInfo,
    /// The tree neighbours with a live link (routing state and notifications go to them).
    pub tree_neighbours: Vec<u32>,
    /// Routing table entries: subscriptions and advertisements, local and from peers.
    pub table_entries: u64,
    /// Filters forwarded to tree neighbours, over all links and both tables.
    pub forwarded_entries: u64,
    /// Client connections open now.
    pub clients: u64,
    /// Local subscriptions: clients' and the configuration's (`[[subscription]]`).
    pub subscriptions: Listing<LocalEntry>,
    /// Local clients' advertisements.
    pub advertisements: Listing<LocalEntry>,
}

/// A broker's name and routing id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRef {
    /// The name (`--id`).
    pub name: String,
    /// The routing id.
    pub id: u32,
}

/// A live peer link and the routing tables kept for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkInfo {
    /// The peer's routing id.
    pub id: u32,
    /// The peer's name.
    pub name: String,
    /// Which connection to it this is (a reconnect is a new link).
    pub link: u64,
    /// Its remote address.
    pub remote: String,
    /// Whether it is a tree neighbour.
    pub tree_neighbour: bool,
    /// Frames waiting in the link's outbox.
    pub queued_frames: u64,
    /// Bytes waiting in the link's outbox.
    pub queued_bytes: u64,
    /// The link's round-trip time in microseconds (QUIC's estimate).
    pub rtt_us: u64,
    /// The subscriptions the peer sent (on behalf of subscribers beyond it): notifications
    /// matching one are routed toward it.
    pub subscriptions: Listing<String>,
    /// The advertisements the peer sent: subscriptions intersecting one are routed toward it.
    pub advertisements: Listing<String>,
    /// The subscriptions this broker forwarded to the peer (after covering).
    pub forwarded_subscriptions: Listing<String>,
    /// The advertisements this broker forwarded to the peer.
    pub forwarded_advertisements: Listing<String>,
}

/// A configured peer address and how dialing it goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DialInfo {
    /// The address, as configured (with the default port added if it had none).
    pub address: String,
    /// `connecting`, `up`, `down`, `failed` or `linked by peer` (the peer dialed us first).
    pub state: String,
    /// The broker found there, once a link came up.
    pub peer: Option<BrokerRef>,
    /// Dial attempts so far.
    pub attempts: u64,
    /// Why the last attempt failed, if it did.
    pub last_error: Option<String>,
}

/// This broker's own link-state advertisement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkStateInfo {
    /// The brokers it has live links to.
    pub neighbours: Vec<u32>,
}

/// The shared spanning tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeInfo {
    /// Its root.
    pub root: u32,
    /// Its edges, as pairs of routing ids.
    pub edges: Vec<[u32; 2]>,
}

/// A local subscription or advertisement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalEntry {
    /// Its id at this broker.
    pub id: u64,
    /// Its filter, as routed (a subscription narrowed to its principal's permission).
    pub filter: String,
    /// Whose it is: `client N` (a connection) or `static NAME` (the configuration's).
    pub owner: String,
}

/// One routing table: how many entries it has, and the first of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listing<T> {
    /// Entries in the table.
    pub total: u64,
    /// Entries left out of `entries` to keep the answer small.
    pub truncated: u64,
    /// The first `total - truncated` entries; absent when the broker's disclosure policy does
    /// not show them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entries: Option<Vec<T>>,
}

impl<T> Listing<T> {
    /// A table of `total` entries, none shown.
    pub fn hidden(total: u64) -> Self {
        Self {
            total,
            truncated: 0,
            entries: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{decode, encode};

    #[test]
    fn a_hidden_listing_round_trips_without_entries() {
        let shown = Listing {
            total: 3,
            truncated: 1,
            entries: Some(vec!["a".to_owned(), "b".to_owned()]),
        };
        let hidden = Listing::<String>::hidden(3);
        for l in [shown, hidden] {
            let back: Listing<String> = decode(&encode(&l).unwrap()).unwrap();
            assert_eq!(back, l);
        }
    }
}
