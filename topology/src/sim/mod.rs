//! A simulator for networks of [`Broker`](crate::Broker)s: the harness behind the crate's
//! tests and `palio-bench routing`.
//!
//! - [`network`]: N brokers over in-memory links in virtual time, with seeded delays,
//!   reordering across links (never within one: each link is a FIFO stream), link and broker
//!   failures, `drive_bounded`, and a trace hash.
//! - [`group`]: N brokers running one ordered-group core each (fifo, causal), with delays,
//!   reordering, loss, partitions and crashes that keep only the durable log.
//! - [`overlay`]: random overlays (trees, meshes, rings) grouped into regions.
//! - [`workload`]: content with regional locality: subscriptions, advertisements, events.
//! - [`oracle`]: which subscriptions must receive each notification, and the verdict.
//! - [`scenario`]: the routing measurement and the randomized fault scenarios.
//! - [`rng`]: the seeded generator everything draws from.

pub mod group;
pub mod network;
pub mod oracle;
pub mod overlay;
pub mod rng;
pub mod scenario;
pub mod workload;
