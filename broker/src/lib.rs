//! Palio's broker daemon: a thin async shell around pure cores.
//!
//! The cores take inputs and time as arguments and return outputs: routing and matching
//! ([`palio_topology::Broker`], with `palio_filter`), the durable queue engine (`durable`) and
//! the log (`store`). This crate owns the sockets, files and timers that drive them.
//!
//! # Where a publication goes
//!
//! 1. `session::requests` reads it from the client's control stream (decoded once into a
//!    `palio_filter::Event`) and hands it to the router in a batch, under a credit of the
//!    connection's `pacer::Pacer`.
//! 2. The router (`router`) matches it and drains the state machine's outputs into outboxes
//!    (`router::outputs`): one per peer link on the tree toward interested brokers, that of
//!    the publisher's lane (encoded once for all of them, `wire::out`), and one per
//!    subscribing connection (`delivery`).
//! 3. A writer (`writer`) per stream drains each outbox onto QUIC. On the next broker, the
//!    reader of that lane (`peer::lanes`) hands it to that broker's router: step 2 again, on
//!    the same lane.
//! 4. If an outbox was left over its limit, the ingress of step 1 or 3 (the session, or that
//!    one lane of the link) waits for it before reading more: lossless flow control, hop by
//!    hop (`outbox`, `pacer`).
//!
//! Persistent publications also go to the persist task (`persist`), which stores them
//! (`store`), acks them once durable, and forwards them hop by hop (`durable`). Publications
//! to an ordered group go to the groups task (`groups`) instead, whose cores order them.
//! Requests are routed like publications; the router remembers, at the requester's broker,
//! which are waiting for a reply (`router::requests`), and replies travel back hop by hop.
//!
//! # Which task owns which state
//!
//! | task | owns | talk to it through |
//! |---|---|---|
//! | router (one) | routing tables, link state, clients' subscriptions, outboxes' producer side | `router::RouterHandle` |
//! | persist task (own thread) | the log, the durable engine, checkpoints | `persist::PersistHandle` |
//! | groups task (own thread) | ordered groups' cores, their catalog and log, members | `groups::GroupHandle` |
//! | session (per client connection) | the control stream's reader, the pacer, its principal and subscriptions' filters as written | — |
//! | writer (per stream) | the stream's send side, the outbox's consumer side | its outbox |
//! | link (per peer link) | the control stream's and the lanes' readers, a pacer each | — |
//! | dialer (per configured peer) | redial and backoff, the address's dial state (in the context) | — |
//! | admin listener | nothing: asks the router and persist task | — |
//!
//! The three tasks' handles are one type (`handle::TaskHandle`), with one mapping for a task
//! that is gone (`shutting_down`).
//!
//! Shared and read-mostly: `context::Context` (identity, start time, the tasks' handles,
//! metrics, limits, credentials, the peers' dial states, shutdown) and, for peer tasks,
//! `peer::Links` (the dialing endpoint, peer certificates, live links).
//!
//! # Which file for which concern
//!
//! - wire frames to clients: `palio-protocol`; between brokers: `wire`;
//! - limits, policies and their defaults: `config` (documented in `docs/operations.md`);
//! - flow control: `outbox`, `pacer`, `writer` (what an item counts: `frame_size`); slow
//!   consumers: `router::outputs`;
//! - who may connect and do what: `auth` (principals, permissions as filters, the reloadable
//!   `auth::gate`, connection counts in `auth::admission`); the front door's screening:
//!   `accept`; authentication of clients: `session::hello`, and their permissions in force:
//!   `session::permissions`; of peers: `peer::handshake`, `peer::identity`;
//! - timeouts and reconnects: `peer::dial`, `config` (`[timeouts]`), `reset_key`;
//! - `/metrics`, `/healthz`, `/routes`: `metrics`, `admin`, `router::view`; what a broker
//!   tells about itself (`/routes`, and clients' `ServerInfo`, `Routes` and `Ping`
//!   requests): `introspect`, `router::view`, `router::listing`;
//! - the data directory: `lock`, `store`, `persist`.
//!
//! [`Server::bind`] (or [`Server::with_sockets`], on sockets the caller bound) takes a
//! validated [`Settings`]; [`Server::run`] takes a shutdown future, so tests run brokers
//! in-process on ephemeral ports as easily as the binary does.

#![warn(missing_docs)]

mod accept;
mod admin;
mod auth;
pub mod config;
mod context;
mod delivery;
mod dial_states;
mod durable;
mod error;
mod filters;
mod frame_size;
#[doc(hidden)]
pub mod fuzzing;
mod groups;
mod handle;
mod introspect;
mod lock;
mod metrics;
mod outbox;
mod pacer;
mod peer;
mod persist;
mod reset_key;
mod router;
mod server;
mod session;
mod store;
#[doc(hidden)]
pub mod wire;
mod writer;

pub use config::{ConfigError, Overrides, Settings};
pub use context::broker_id;
pub use server::{Reloader, Server, StartError};
