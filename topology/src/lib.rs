//! Palio's routing core: the broker overlay as a deterministic state machine.
//!
//! A [`Broker`] is the routing brain of one broker daemon. It does no I/O and reads no clock:
//! the daemon (or the [`sim`] harness) feeds it client requests, peer frames, link events and
//! the time, and drains the frames to send, the notifications to deliver and the next timer
//! (quinn-proto's `handle_*` / `poll_*` style; see [`Broker`] for the call protocol).
//!
//! # How routing works
//!
//! - **Link state.** Each broker floods a [`LinkStateAd`] listing its live peer links, versioned
//!   by `(incarnation, seq)`; a link comes up with a full database exchange. Every broker thus
//!   learns the same graph.
//! - **One shared tree.** From that graph every broker computes the same spanning tree (a
//!   breadth-first tree from the smallest broker id, using only links both ends report; see
//!   [`tree`] for why a shared tree rather than SIENA's per-source trees). Notifications and
//!   routing state travel only on tree links. When a link or broker goes away, the tree is
//!   recomputed (after [`Config::tree_delay`], to fold a burst of changes into one) and the
//!   routing state toward new neighbours is re-established.
//! - **Subscription forwarding** by [`Strategy`]: flooding (none), simple (every subscription to
//!   every broker), covering (default: not over a link that carries a covering filter) and
//!   covering + advertisements (only toward brokers whose advertisements intersect it).
//!   Routing state is *reconciled*: for each tree link the broker knows the set of filters that
//!   link should carry, given everything it has learned, and the frames it sends are the
//!   difference between that and what it has sent. Unsubscribing re-forwards what the filter
//!   covered; unadvertising withdraws what only it attracted.
//! - **Notifications** go from the publisher's broker along the tree, copied only toward
//!   neighbours that forwarded a matching filter (matching uses the routable form, through the
//!   filter crate's index). The subscriber's access broker evaluates the full filter before
//!   delivering, so a subscription never receives a notification its filter rejects.
//!
//! # Guarantees
//!
//! Once link state has converged and routing traffic has drained ("settled"), every
//! notification published is delivered exactly once to every local subscription, anywhere,
//! whose filter matches it (under the advertisements strategy: if an advertisement of its
//! broker covers it), and to no other. The [`sim`] module checks this against an oracle on
//! random overlays, workloads and failures.

#![warn(missing_docs)]

mod broker;
mod config;
mod cover;
mod error;
mod forest;
mod frame;
pub mod group;
mod ids;
mod linkstate;
mod matcher;
mod routing;
mod table;
pub mod tree;

pub mod sim;

pub use broker::Broker;
pub use config::{Config, Strategy, UnknownStrategy};
pub use error::{ClientError, PeerError};
pub use frame::{
    Delivery, FrameKind, LinkStateAd, Notification, PeerFrame, SharedFilter, Targets, Transmit,
};
pub use ids::{AdvertisementId, BrokerId, Interface, NotificationId, RouteKey, SubscriptionId};
pub use linkstate::AdvertRefusal;
pub use routing::TableKind;
