//! Identifiers: brokers, client subscriptions and advertisements, interfaces and route keys.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A broker of the overlay, unique in the whole network (from configuration).
///
/// Peer links are named by the broker at their far end: there is at most one link between two
/// brokers, so the peer's id is the link's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BrokerId(pub u32);

impl fmt::Display for BrokerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "b{}", self.0)
    }
}

/// A local client's subscription at its access broker, chosen by the broker shell and unique
/// among that broker's live subscriptions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SubscriptionId(pub u64);

impl fmt::Display for SubscriptionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s{}", self.0)
    }
}

/// A local publisher's advertisement at its access broker, unique among that broker's live
/// advertisements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AdvertisementId(pub u64);

impl fmt::Display for AdvertisementId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a{}", self.0)
    }
}

/// Where routing state comes from and where notifications go: the broker's own clients, or a
/// peer broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Interface {
    /// The broker's local clients (subscribers and publishers) taken together.
    Local,
    /// The link to a peer broker.
    Peer(BrokerId),
}

/// Names one filter a broker has forwarded over one link, so that withdrawing it needs no
/// filter text. Chosen by the sender; unique among the live entries of one link and one kind
/// (subscriptions and advertisements have separate key spaces). A key may be reused after the
/// entry it named was withdrawn: the link is a FIFO stream, so the withdrawal arrives first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RouteKey(pub u64);

impl fmt::Display for RouteKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "k{}", self.0)
    }
}

/// Identifies a notification end to end (chosen by the publisher's access broker shell); used
/// by tests and traces, never for routing decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NotificationId(pub u64);

impl fmt::Display for NotificationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.0)
    }
}
