//! What brokers say to each other ([`PeerFrame`]) and what a broker hands to its shell
//! ([`Transmit`], [`Delivery`], [`Targets`]).
//!
//! Frames derive serde so the protocol crate can put them on the wire: a filter travels as its
//! source text and is parsed again (within the receiver's limits) when decoded, so a frame that
//! decodes holds only valid filters; an event travels as its list of attributes.

use std::fmt;
use std::sync::Arc;

use palio_filter::{Event, Filter, FilterError};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::cover::Shape;
use crate::ids::{BrokerId, NotificationId, RouteKey, SubscriptionId};

/// A compiled filter shared between the tables that hold it and the frames that carry it,
/// together with the keys the covering lookups use (computed once, when it is compiled).
///
/// Cloning is cheap (one reference count). Equality and hashing are by source text, which is
/// also what travels on the wire.
#[derive(Clone)]
pub struct SharedFilter(Arc<Compiled>);

/// The compiled filter and its covering-lookup keys.
struct Compiled {
    /// The filter (itself shared with the matching index, which keeps inexact filters).
    filter: Arc<Filter>,
    /// The covering-lookup keys.
    shape: Shape,
}

impl SharedFilter {
    /// Wraps a compiled filter.
    pub fn new(filter: Filter) -> Self {
        let shape = Shape::of(&filter);
        Self(Arc::new(Compiled {
            filter: Arc::new(filter),
            shape,
        }))
    }

    /// The covering-lookup keys.
    pub(crate) fn shape(&self) -> &Shape {
        &self.0.shape
    }

    /// The filter, as the shared pointer the matching index takes.
    pub(crate) fn arc(&self) -> &Arc<Filter> {
        &self.0.filter
    }

    /// Parses and compiles `source` (the decoding of a filter received from a peer).
    pub fn parse(source: &str) -> Result<Self, FilterError> {
        Filter::new(source).map(Self::new)
    }

    /// The filter.
    pub fn filter(&self) -> &Filter {
        &self.0.filter
    }

    /// The source text.
    pub fn source(&self) -> &str {
        self.0.filter.source()
    }
}

impl From<Filter> for SharedFilter {
    fn from(filter: Filter) -> Self {
        Self::new(filter)
    }
}

impl std::ops::Deref for SharedFilter {
    type Target = Filter;

    fn deref(&self) -> &Filter {
        &self.0.filter
    }
}

impl std::borrow::Borrow<str> for SharedFilter {
    fn borrow(&self) -> &str {
        self.source()
    }
}

impl PartialEq for SharedFilter {
    fn eq(&self, other: &Self) -> bool {
        self.source() == other.source()
    }
}

impl Eq for SharedFilter {}

impl std::hash::Hash for SharedFilter {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.source().hash(state);
    }
}

impl fmt::Debug for SharedFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.source())
    }
}

impl fmt::Display for SharedFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.source())
    }
}

impl Serialize for SharedFilter {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.source())
    }
}

impl<'de> Deserialize<'de> for SharedFilter {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let source = String::deserialize(deserializer)?;
        Self::parse(&source).map_err(serde::de::Error::custom)
    }
}

/// A notification: typed attributes that filters see, and an opaque payload they never see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// End-to-end identity, for tests and traces.
    pub id: NotificationId,
    /// The attributes routing and filtering look at.
    pub attributes: Event,
    /// The application data.
    pub payload: Vec<u8>,
}

/// One broker's link-state advertisement: who it is and which peers it has a live link to.
///
/// The newest advertisement of each broker wins, ordered by `(incarnation, seq)`: a broker that
/// restarts takes a larger incarnation (e.g. its start time, or a counter kept on disk), so its
/// fresh state beats whatever its previous life left in the network.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LinkStateAd {
    /// The broker described.
    pub origin: BrokerId,
    /// The broker's life: larger after every restart.
    pub incarnation: u64,
    /// Increases with every change within one incarnation.
    pub seq: u64,
    /// The peers the broker has a live link to, ascending, without repeats.
    pub neighbours: Vec<BrokerId>,
}

impl LinkStateAd {
    /// The version used to decide which of two advertisements of a broker is newer.
    pub fn version(&self) -> (u64, u64) {
        (self.incarnation, self.seq)
    }
}

/// A frame on a peer link (a reliable FIFO stream).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum PeerFrame {
    /// Link-state advertisements: one that changed (flooded), or the whole database (sent to a
    /// peer whose link just came up).
    LinkState(Vec<LinkStateAd>),
    /// The sender routes notifications matching `filter` toward us, and wants those we see.
    Subscribe {
        /// Names this entry for a later [`PeerFrame::Unsubscribe`].
        key: RouteKey,
        /// The subscription filter.
        filter: SharedFilter,
    },
    /// Withdraws the subscription entry `key`.
    Unsubscribe {
        /// The entry withdrawn.
        key: RouteKey,
    },
    /// Publishers beyond the sender may publish notifications matching `filter`.
    Advertise {
        /// Names this entry for a later [`PeerFrame::Unadvertise`].
        key: RouteKey,
        /// The advertisement filter.
        filter: SharedFilter,
    },
    /// Withdraws the advertisement entry `key`.
    Unadvertise {
        /// The entry withdrawn.
        key: RouteKey,
    },
    /// A notification travelling along the tree.
    Notification(Arc<Notification>),
}

impl PeerFrame {
    /// A short name of the frame's kind, for counters and traces.
    pub fn kind(&self) -> FrameKind {
        match self {
            PeerFrame::LinkState(_) => FrameKind::LinkState,
            PeerFrame::Subscribe { .. } => FrameKind::Subscribe,
            PeerFrame::Unsubscribe { .. } => FrameKind::Unsubscribe,
            PeerFrame::Advertise { .. } => FrameKind::Advertise,
            PeerFrame::Unadvertise { .. } => FrameKind::Unadvertise,
            PeerFrame::Notification(_) => FrameKind::Notification,
        }
    }
}

/// The kinds of [`PeerFrame`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum FrameKind {
    /// [`PeerFrame::LinkState`]
    LinkState,
    /// [`PeerFrame::Subscribe`]
    Subscribe,
    /// [`PeerFrame::Unsubscribe`]
    Unsubscribe,
    /// [`PeerFrame::Advertise`]
    Advertise,
    /// [`PeerFrame::Unadvertise`]
    Unadvertise,
    /// [`PeerFrame::Notification`]
    Notification,
}

impl FrameKind {
    /// Whether the frame is subscription or advertisement control traffic.
    pub fn is_routing_control(self) -> bool {
        matches!(
            self,
            FrameKind::Subscribe
                | FrameKind::Unsubscribe
                | FrameKind::Advertise
                | FrameKind::Unadvertise
        )
    }
}

/// A frame the shell must send to a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The peer to send to.
    pub peer: BrokerId,
    /// What to send.
    pub frame: PeerFrame,
}

/// Where a notification would go from one broker ([`Broker::targets`](crate::Broker::targets)):
/// a request is routed so, and its access broker counts who it reached.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Targets {
    /// The local subscriptions whose full filter passes it.
    pub local: Vec<SubscriptionId>,
    /// The tree neighbours to forward it to.
    pub peers: Vec<BrokerId>,
}

/// A notification to hand to a local subscription. Its filter has been evaluated in full.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The subscription it is for.
    pub subscription: SubscriptionId,
    /// The notification (shared with every other delivery of it).
    pub notification: Arc<Notification>,
}
