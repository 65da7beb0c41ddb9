//! The persist task: the one owner of the log and of the persistence
//! [`Engine`](crate::durable::Engine).
//!
//! Client sessions and peer links send [`PersistCommand`]s through one bounded channel (a full
//! channel holds publishers back). The task applies each to the engine, which appends records
//! to the log's buffer; after each batch of commands (at most about `task::COMMIT_BYTES`) it
//! calls [`Log::commit_upto`](crate::store::Log::commit_upto), which writes the batch with one
//! `write` and wakes the log's sync thread. That thread runs one `fdatasync` for everything
//! written so far and reports [`SyncEvent::Synced`](crate::store::SyncEvent::Synced); commands
//! keep arriving and appending meanwhile, so the next batch grows while an fsync runs (group
//! commit). Only then does the engine release publish acks, ack confirmations and store acks.
//! A batch holding only records nothing waits for (the delivery counts a fetch writes) is
//! written without asking for a sync: the next sync covers it.
//!
//! Outputs go to the clients' control outboxes and the peer links' outboxes (the `outbox`
//! module), which never make the task wait. A client whose control outbox is over its limit
//! is disconnected (its unacked messages are delivered again); toward peers the task is
//! bounded by the store-and-forward window, so it pushes whatever the link's outbox holds.
//!
//! Checkpoints: once the log has moved to a new segment since the last checkpoint, the task
//! snapshots the engine and writes the snapshot as soon as the log is durable up to the
//! snapshot's position; then it deletes the segments that hold no live message.
//!
//! Files: this one holds the commands and the handle; `open` opens the log and recovers the
//! engine; `task` is the loop; `frames` maps the engine's outputs to frames, `listing` splits
//! queue listings, `status` is the typed `/store` view.

use std::sync::Arc;

use palio_filter::Event;
use palio_protocol::{ClientFrame, ServerFrame};
use palio_topology::BrokerId;
use tokio::sync::oneshot;

use crate::auth::Principal;
use crate::durable::ClientId;
use crate::outbox::Outbox;
use crate::wire::PeerMessage;
use crate::wire::PeerOut;

pub(crate) mod frames;
mod listing;
mod open;
mod status;
mod task;

pub(crate) use open::Store;
pub(crate) use status::StoreStatus;

/// What client sessions and peer links ask of the persist task.
#[derive(Debug)]
pub(crate) enum PersistCommand {
    /// A client connected: its control-stream queue and principal.
    ClientUp {
        client: ClientId,
        frames: Outbox<ServerFrame>,
        connection: quinn::Connection,
        principal: Arc<Principal>,
    },
    /// A reload changed a connected client's principal.
    Principal {
        client: ClientId,
        principal: Arc<Principal>,
    },
    ClientGone {
        client: ClientId,
    },
    /// A durable request (producer, queue administration, consumers, acks).
    Request {
        client: ClientId,
        frame: ClientFrame,
    },
    /// Persistent publications of one client, validated, in order.
    Publish {
        client: ClientId,
        items: Vec<Publication>,
    },
    PeerUp {
        peer: BrokerId,
        link: u64,
        frames: Outbox<PeerOut>,
    },
    PeerDown {
        peer: BrokerId,
        link: u64,
    },
    Peer {
        peer: BrokerId,
        link: u64,
        message: PeerMessage,
    },
    /// The store's state, for `/healthz` and `/store`.
    Status {
        reply: oneshot::Sender<StoreStatus>,
    },
}

/// How sessions, peer links and the admin listener talk to the persist task.
pub(crate) type PersistHandle = crate::handle::TaskHandle<PersistCommand>;

/// A persistent publication, validated.
#[derive(Debug)]
pub(crate) struct Publication {
    pub(crate) seq: u64,
    /// The attributes.
    pub(crate) event: Event,
    pub(crate) payload: Vec<u8>,
}

#[cfg(test)]
mod tests;
