//! Persistent delivery: durable queues, persistent publications, push and pull consumers, and
//! store-and-forward between brokers.
//!
//! The [`Engine`] is a deterministic state machine over an append-only journal (the
//! `store` module's log in the broker, a vector in tests); the `persist` task is its async
//! shell. `docs/durability.md` states the contract: what an ack means, what survives which
//! crash, and how messages are de-duplicated.

mod admin;
mod apply;
mod consume;
mod directory;
mod engine;
mod forward;
mod matching;
mod output;
mod publish;
mod queue;
mod record;
mod snapshot;

pub(crate) use engine::{ClientId, Engine, EngineConfig, Journal, Stats};
pub(crate) use output::{Answer, Output};
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
