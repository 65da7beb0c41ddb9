//! What the broker writes to its log: one [`Record`] per state change, and the [`Snapshot`]
//! a checkpoint holds.
//!
//! The queue state is *event-sourced*: every change (a message stored, a delivery, an ack, a
//! queue added…) is a record appended to the log, and [`Engine::apply`](super::Engine) turns a
//! record into state the same way live and during recovery. A checkpoint is the state after a
//! prefix of the log, so recovery loads it and replays only the records after it; segments
//! before it whose messages are all acked and forwarded can then be deleted.
//!
//! Records are MessagePack (`rmp-serde`, compact form): the log is read only by this code, its
//! segment header carries the format version.

use palio_protocol::Attributes;
use palio_topology::BrokerId;
use serde::{Deserialize, Serialize};

use crate::store::Position;
use crate::wire::{MessageId, QueueDecl};

/// Which part of a queue: its main lane or its dead-letter lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) struct LaneId {
    /// The queue's key.
    pub(crate) queue: u64,
    /// The dead-letter lane.
    pub(crate) dead: bool,
}

/// One state change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum Record {
    /// A persistent message stored here (published here, or received from a peer).
    Message {
        /// End-to-end identity.
        id: MessageId,
        /// `(producer, seq)` when published here, for de-duplicating retries.
        producer: Option<(String, u64)>,
        /// The attributes.
        attributes: Attributes,
        /// The payload.
        #[serde(with = "serde_bytes")]
        payload: Vec<u8>,
        /// This broker was one of its destinations (so `queues` were chosen here).
        local: bool,
        /// The local queues it entered, with its tag in each.
        queues: Vec<(u64, u64)>,
        /// The other brokers it must still reach (store-and-forward).
        dests: Vec<BrokerId>,
    },
    /// A durable queue was added here.
    QueueAdded {
        /// Its key (never reused).
        key: u64,
        /// Its name.
        name: String,
        /// The filter's source text.
        filter: String,
        /// Ack wait, milliseconds.
        ack_wait_ms: u64,
        /// Deliveries before dead-lettering.
        max_deliveries: u32,
    },
    /// A durable queue (and its dead-letter lane) was removed with its messages.
    QueueRemoved {
        /// Its key.
        key: u64,
    },
    /// Messages were acked: they leave the lane.
    Acked {
        /// The lane.
        lane: LaneId,
        /// Their tags.
        tags: Vec<u64>,
    },
    /// A message was delivered for the `count`-th time. Written without waiting for an fsync:
    /// after a crash a count may be one lower than it was.
    Delivered {
        /// The lane.
        lane: LaneId,
        /// The message's tag.
        tag: u64,
        /// Its delivery count now.
        count: u32,
    },
    /// Messages reached the maximum deliveries and moved to the dead-letter lane.
    DeadLettered {
        /// The queue.
        queue: u64,
        /// Their tags (kept in the dead-letter lane).
        tags: Vec<u64>,
    },
    /// The next hop stored the message for these destinations: they are no longer ours.
    HandedOff {
        /// The message.
        id: MessageId,
        /// The destinations handed off.
        dests: Vec<BrokerId>,
    },
    /// A directory entry learned or made here.
    Directory(QueueDecl),
}

/// A queue in a [`Snapshot`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct QueueSnapshot {
    pub(crate) key: u64,
    pub(crate) name: String,
    pub(crate) filter: String,
    pub(crate) ack_wait_ms: u64,
    pub(crate) max_deliveries: u32,
    pub(crate) next_tag: u64,
    /// `(tag, message position, delivery count)` of the main lane.
    pub(crate) main: Vec<(u64, Position, u32)>,
    /// The same for the dead-letter lane.
    pub(crate) dead: Vec<(u64, Position, u32)>,
}

/// The whole persistent state after a prefix of the log: what a checkpoint holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Snapshot {
    pub(crate) next_msg: u64,
    pub(crate) next_queue: u64,
    pub(crate) next_generation: u64,
    pub(crate) queues: Vec<QueueSnapshot>,
    /// Messages with destinations not yet handed off: `(id, position, destinations)`.
    pub(crate) forwards: Vec<(MessageId, Position, Vec<BrokerId>)>,
    /// The highest stored sequence number of each producer.
    pub(crate) producers: Vec<(String, u64)>,
    /// Ids of messages from peers recently put into local queues (oldest first).
    pub(crate) seen: Vec<MessageId>,
    pub(crate) directory: Vec<QueueDecl>,
}

/// Encodes a record or snapshot.
pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing these plain data types into a Vec cannot fail: no maps with non-string
    // keys, no I/O.
    rmp_serde::to_vec(value).unwrap_or_default()
}

/// Decodes a record or snapshot.
pub(crate) fn decode<'a, T: Deserialize<'a>>(
    bytes: &'a [u8],
) -> Result<T, rmp_serde::decode::Error> {
    rmp_serde::from_slice(bytes)
}
