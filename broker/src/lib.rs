//! Palio's broker daemon: a thin async shell around the routing state machine.
//!
//! # Tasks
//!
//! - **The router** ([`router`](crate) module, one task) owns the topology
//!   [`Broker`](palio_topology::Broker). Everything else talks to it through one bounded
//!   command channel; it answers through oneshot channels and pushes outputs into bounded
//!   per-peer and per-subscriber queues without ever waiting on them.
//! - **Client sessions** (one task per connection, plus a delivery writer): hello and
//!   authentication, requests, publications, and pushing deliveries under QUIC flow control.
//! - **Peer links** (one task per link, plus a writer; one dialer per configured peer):
//!   mutual TLS, hello with id-collision check, reconnect with backoff.
//! - **The admin listener**: `/metrics`, `/healthz`, `/routes`.
//!
//! [`Server::bind`] takes a validated [`Settings`] and binds; [`Server::run`] takes a shutdown
//! future, so tests run brokers in-process on ephemeral ports as easily as the binary does.

#![warn(missing_docs)]

mod admin;
mod backlog;
mod client;
pub mod config;
mod metrics;
mod peer;
mod router;
mod server;

pub use config::{ConfigError, Overrides, Settings};
pub use server::{Server, StartError, broker_id};
