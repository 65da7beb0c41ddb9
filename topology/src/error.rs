//! Errors: bad input from a peer, and misuse by the broker shell on behalf of a client.
//!
//! A [`PeerError`] means the peer broke the protocol; the state machine has ignored the frame
//! and the shell should close the link (which it reports with
//! [`Broker::handle_peer_down`](crate::Broker::handle_peer_down)). Nothing a peer sends can
//! make the state machine panic.

use crate::ids::{AdvertisementId, BrokerId, RouteKey, SubscriptionId};

/// A frame from a peer that breaks the protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PeerError {
    /// A frame arrived for a peer whose link is not up.
    #[error("frame from {0}, which has no live link")]
    NotConnected(BrokerId),
    /// A subscribe or advertise reused a key that is still live on this link.
    #[error("{peer} reused live route key {key}")]
    DuplicateKey {
        /// The peer.
        peer: BrokerId,
        /// The key.
        key: RouteKey,
    },
    /// An unsubscribe or unadvertise named a key that is not live on this link.
    #[error("{peer} withdrew unknown route key {key}")]
    UnknownKey {
        /// The peer.
        peer: BrokerId,
        /// The key.
        key: RouteKey,
    },
    /// A link-state advertisement lists more neighbours than the configured bound.
    #[error("link-state advertisement of {origin} lists {count} neighbours, more than {max}")]
    TooManyNeighbours {
        /// The broker described.
        origin: BrokerId,
        /// How many it lists.
        count: usize,
        /// The bound.
        max: usize,
    },
    /// The peer holds more route entries on this link than the configured bound.
    #[error("{peer} exceeded {max} route entries on one link")]
    TooManyEntries {
        /// The peer.
        peer: BrokerId,
        /// The bound.
        max: usize,
    },
}

/// A client request the broker cannot carry out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The subscription id is already live.
    #[error("subscription {0} already exists")]
    DuplicateSubscription(SubscriptionId),
    /// The subscription id is not live.
    #[error("no subscription {0}")]
    UnknownSubscription(SubscriptionId),
    /// The advertisement id is already live.
    #[error("advertisement {0} already exists")]
    DuplicateAdvertisement(AdvertisementId),
    /// The advertisement id is not live.
    #[error("no advertisement {0}")]
    UnknownAdvertisement(AdvertisementId),
}
