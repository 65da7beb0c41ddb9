//! Persistent delivery: durable queues, persistent publications, push and pull consumers, and
//! store-and-forward between brokers.
//!
//! The [`Engine`] is a deterministic state machine over an append-only journal (the
//! `store` module's log in the broker, a vector in tests); the `persist` task is its async
//! shell. `docs/durability.md` states the contract: what an ack means, what survives which
//! crash, and how messages are de-duplicated.
//!
//! # Sans-IO
//!
//! The engine owns no socket, file, timer or clock: `now` and a [`Journal`] come in with each
//! call, and what it has to say comes out of [`Engine::poll_output`] as domain [`Output`]s
//! (a publication acked, a message delivered, a request [`Answer`]ed, a message for a peer to
//! store…). The persist task turns them into wire frames (`persist::frames`, which also splits
//! long queue listings to the client's frame limit). Protocol *value* types (`QueueInfo`,
//! `QueueOptions`, `ConsumeMode`, `ErrorCode`, attributes) are used as they are; frame enums
//! are not. The matching of messages against local queues and remote queue declarations goes
//! through `palio_filter::Index` (`matching`); next hops come from the router's spanning tree
//! ([`Engine::set_next_hops`]).
//!
//! # Why a module of the broker, not a crate
//!
//! The engine is sans-IO, but it is not independent of the broker, and cutting it out would
//! move more than it frees:
//!
//! - Its [`record`] format *is* the broker's log format: records embed the broker's peer-wire
//!   ids ([`MessageId`](crate::wire::MessageId), [`QueueDecl`](crate::wire::QueueDecl)) and
//!   log positions (`store::Position`), and must stay byte-identical across releases. A crate
//!   of its own would need those types moved into it or into a third crate, and the broker's
//!   peer wire and store to depend on them, for no caller besides the broker.
//! - The [`Journal`] it writes to is the `store` module's log (positions, `StoreError`); the
//!   two are versioned together (the segment header carries the record format's version).
//! - Nothing else needs it: the SDK never stores, and `bench` drives whole brokers. Unlike the
//!   topology crate's routing core, which the simulator and benches use on their own, there is
//!   no second consumer to justify a public API (and its `missing_docs`/semver surface).
//!
//! What a crate would enforce — no I/O, no frames — is kept by the module's boundary instead:
//! outside its tests it imports nothing from the broker but the record's id types, the
//! journal's position and error, and the principal whose permissions it checks
//! (`auth::Principal`, in `access`); it is tested on its own over an in-memory journal in
//! virtual time (`tests`, which read client outputs through the shell's framing, so that the
//! frames clients get are checked too). Should a second user appear (a simulator of many
//! brokers' durable paths, say), moving `MessageId`, `QueueDecl` and `Position` into a small
//! shared crate is the first step.
//!
//! Files by concern: `engine` the state and its outputs; `publish`, `producers` and `forward`
//! the way in (local publications, de-duplication, store-and-forward); `consume` consumers'
//! requests and `pump` moving messages to them (windows, fetches, timers, dead letters);
//! `queue`, `directory`, `matching` queues and where they live; `admin`, `peek`, `purge`
//! their management; `record`, `apply`, `snapshot` the log format and recovery; `limits`
//! and `access` what a client may do.

mod access;
mod admin;
mod apply;
mod consume;
mod directory;
mod engine;
mod forward;
mod limits;
mod matching;
mod output;
mod peek;
mod producers;
mod publish;
mod pump;
mod purge;
mod queue;
pub(crate) mod record;
mod snapshot;

pub(crate) use engine::{ClientId, Engine, EngineConfig, Journal, Stats};
pub(crate) use limits::{EngineLimits, Limit, WallClock};
pub(crate) use output::{Answer, Output};
pub(crate) use record::QueueLimits;
pub(crate) use record::Snapshot;

/// Encodes a checkpoint's state.
pub(crate) fn encode_snapshot(s: &Snapshot) -> Vec<u8> {
    record::encode(s)
}

/// Decodes a checkpoint's state.
pub(crate) fn decode_snapshot(bytes: &[u8]) -> Result<Snapshot, rmp_serde::decode::Error> {
    record::decode(bytes)
}

#[cfg(test)]
mod tests;
