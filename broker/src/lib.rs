//! Palio's broker daemon: a thin async shell around the routing state machine.
//!
//! # Tasks
//!
//! - **The router** (one task) owns the topology
//!   [`Broker`](palio_topology::Broker). Everything else talks to it through one bounded
//!   command channel; it answers through oneshot channels and pushes outputs into bounded
//!   per-peer and per-subscriber queues without ever waiting on them.
//! - **Client sessions** (one task per connection, plus a delivery writer): hello and
//!   authentication, requests, publications, and pushing deliveries under QUIC flow control.
//! - **Peer links** (one task per link, plus a writer; one dialer per configured peer):
//!   mutual TLS, hello with id-collision check, reconnect with backoff.
//! - **The admin listener**: `/metrics`, `/healthz`, `/routes`.
//!
//! Flow control: QUIC windows bound what any stream can have in flight; every channel is
//! bounded; the router never waits (it `try_send`s into per-subscriber and per-peer queues,
//! whose overflow policies are declared in [`config::Limits`] and counted in metrics); and
//! publishers are held back while the notifications queued toward peers are high (the
//! `backlog` module), so saturation slows publishers before it drops anything.
//!
//! `docs/protocol.md` describes the wire protocol, `docs/operations.md` the flags, endpoints,
//! metrics and limits.
//!
//! [`Server::bind`] takes a validated [`Settings`] and binds; [`Server::run`] takes a shutdown
//! future, so tests run brokers in-process on ephemeral ports as easily as the binary does.

#![warn(missing_docs)]

mod admin;
pub mod config;
mod context;
mod delivery;
mod durable;
mod error;
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
pub use server::{Server, StartError};
