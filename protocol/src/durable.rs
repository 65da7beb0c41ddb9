//! The types of persistent delivery: durable queues, consumers and the messages they receive.
//!
//! # Model
//!
//! - **Persistent publish.** A connection names its producer once ([`ClientFrame::Producer`],
//!   answered by [`ServerFrame::ProducerReady`] with the next sequence number the broker
//!   expects), then sends [`ClientFrame::PublishPersistent`] with increasing sequence numbers.
//!   The broker answers with cumulative [`ServerFrame::PublishAcked`] frames once the
//!   notifications are on its disk (group commit), in publish order, or with
//!   [`ServerFrame::PublishFailed`] for a sequence number it could not store. A retried
//!   `(producer, seq)` that is already stored is acknowledged again, not stored twice.
//! - **Durable queues** are named, live at the broker where they were added, and keep every
//!   matching persistent notification published after they were created until a consumer acks
//!   it. Each queue `NAME` has a dead-letter queue `NAME.dlq` receiving the messages delivered
//!   [`QueueOptions::max_deliveries`] times without an ack; it is consumed like any queue.
//! - **Consumers.** [`ClientFrame::Consume`] attaches a consumer to a queue in push mode (the
//!   broker sends up to `window` unacked messages) or pull mode (the client asks with
//!   [`ClientFrame::Fetch`]). Messages arrive as [`ServerFrame::Message`] on the control stream,
//!   in order with the answers, so a [`ServerFrame::Fetched`] follows the messages of its
//!   fetch. Acks and naks name messages by their [`DurableMessage::tag`]; a message not acked
//!   within the queue's ack wait, or whose consumer went away, is delivered again with a larger
//!   [`DurableMessage::delivery_count`].
//!
//! [`ClientFrame::Producer`]: crate::ClientFrame::Producer
//! [`ClientFrame::PublishPersistent`]: crate::ClientFrame::PublishPersistent
//! [`ClientFrame::Consume`]: crate::ClientFrame::Consume
//! [`ClientFrame::Fetch`]: crate::ClientFrame::Fetch
//! [`ServerFrame::ProducerReady`]: crate::ServerFrame::ProducerReady
//! [`ServerFrame::PublishAcked`]: crate::ServerFrame::PublishAcked
//! [`ServerFrame::PublishFailed`]: crate::ServerFrame::PublishFailed
//! [`ServerFrame::Message`]: crate::ServerFrame::Message
//! [`ServerFrame::Fetched`]: crate::ServerFrame::Fetched

use serde::{Deserialize, Serialize};

use crate::frames::Attributes;

/// The suffix naming a queue's dead-letter queue: `orders` → `orders.dlq`.
pub const DEAD_LETTER_SUFFIX: &str = ".dlq";

/// The longest queue name, in bytes.
pub const MAX_QUEUE_NAME: usize = 64;

/// Whether `name` is a valid name for [`ClientFrame::QueueAdd`](crate::ClientFrame::QueueAdd):
/// 1–64 ASCII letters, digits, `_` and `-`. (Dead-letter queues are named by the broker with
/// a `.dlq` suffix, which no added queue can carry.)
pub fn valid_queue_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_QUEUE_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Options of a durable queue, fixed when it is added. `None` takes the broker's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueOptions {
    /// How long a delivered message may stay unacked before it is delivered again
    /// (milliseconds; broker default 30 000).
    #[serde(default)]
    pub ack_wait_ms: Option<u64>,
    /// After this many deliveries without an ack a message moves to the dead-letter queue
    /// (broker default 5; at least 1).
    #[serde(default)]
    pub max_deliveries: Option<u32>,
}

/// What the broker reports about a durable queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueInfo {
    /// The queue's name (`NAME.dlq` for a dead-letter queue).
    pub name: String,
    /// The filter's source text (for a dead-letter queue, its parent's).
    pub filter: String,
    /// Messages stored and not delivered yet (including those waiting out a nak delay).
    pub pending: u64,
    /// Messages delivered and waiting for an ack.
    pub unacked: u64,
    /// Messages moved to this queue's dead-letter queue and not yet acked there.
    pub dead_lettered: u64,
    /// Consumers attached now.
    pub consumers: u32,
    /// The ack wait in effect, in milliseconds.
    pub ack_wait_ms: u64,
    /// The maximum deliveries in effect (0 for a dead-letter queue: no limit).
    pub max_deliveries: u32,
}

/// How a consumer receives messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ConsumeMode {
    /// The broker sends messages as they come, keeping at most `window` unacked.
    Push {
        /// The most unacked messages in flight to this consumer: 1 to
        /// [`MAX_PUSH_WINDOW`](crate::MAX_PUSH_WINDOW) (more is refused with
        /// [`ErrorCode::LimitExceeded`](crate::ErrorCode::LimitExceeded)).
        window: u32,
    },
    /// The broker sends messages only in answer to [`ClientFrame::Fetch`](crate::ClientFrame::Fetch).
    Pull,
}

/// A message of a durable queue delivered to a consumer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DurableMessage {
    /// The consumer it is delivered to (from [`ServerFrame::Consuming`](crate::ServerFrame::Consuming)).
    pub consumer: u64,
    /// Names the message in its queue: acks and naks carry it. Increasing in queue order.
    pub tag: u64,
    /// 1 on the first delivery, 2 on the next, and so on.
    pub delivery_count: u32,
    /// The attributes.
    pub attributes: Attributes,
    /// The payload.
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
}
