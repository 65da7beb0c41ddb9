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
///
/// The size limits (`max_messages`, `max_bytes`, `max_age_ms`) hold for the queue and,
/// separately, for its dead-letter queue. The broker's defaults are also its maxima: a queue
/// may ask for smaller limits than the broker's, never larger ones (refused with
/// [`ErrorCode::LimitExceeded`](crate::ErrorCode::LimitExceeded)). Fields added after the
/// first release decode as `None` from frames that lack them.
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
    /// The most messages the queue holds (at least 1).
    #[serde(default)]
    pub max_messages: Option<u64>,
    /// The most bytes the queue's messages take, counted as stored (payload, attributes and
    /// a few dozen bytes of framing per message; at least 1).
    #[serde(default)]
    pub max_bytes: Option<u64>,
    /// How long a message stays in the queue, acked or not, counted from when this broker
    /// stored it (milliseconds; at least 1).
    #[serde(default)]
    pub max_age_ms: Option<u64>,
    /// What a full queue does with a new message.
    #[serde(default)]
    pub discard: Option<Discard>,
}

/// What a durable queue at its `max_messages` or `max_bytes` does with a new message (as
/// JetStream's discard policies).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Discard {
    /// Drop the queue's oldest messages to make room (each one counted by the broker).
    #[default]
    Old,
    /// Keep the old messages: a persistent publication at this broker that the full queue
    /// matches is refused with [`ErrorCode::LimitExceeded`](crate::ErrorCode::LimitExceeded)
    /// before anything is stored; a message arriving from another broker skips the full
    /// queue (counted by the broker).
    New,
}

impl Discard {
    /// `"old"` or `"new"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Discard::Old => "old",
            Discard::New => "new",
        }
    }
}

impl std::fmt::Display for Discard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Discard {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "old" => Ok(Discard::Old),
            "new" => Ok(Discard::New),
            other => Err(format!("discard policy {other:?}: use \"old\" or \"new\"")),
        }
    }
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
    /// The principal that added the queue; empty for a queue added before queues had
    /// owners (everyone may use it). Only the owner and admins may consume from, inspect or
    /// remove a queue.
    #[serde(default)]
    pub owner: String,
    /// Bytes the queue's messages take, counted as for [`QueueOptions::max_bytes`].
    #[serde(default)]
    pub bytes: u64,
    /// The most messages the queue holds (0: no limit).
    #[serde(default)]
    pub max_messages: u64,
    /// The most bytes its messages take (0: no limit).
    #[serde(default)]
    pub max_bytes: u64,
    /// How long a message stays, in milliseconds (0: no limit).
    #[serde(default)]
    pub max_age_ms: u64,
    /// What the queue does with a new message when full.
    #[serde(default)]
    pub discard: Discard,
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

/// How many durable queues persistent publications matched: those of one connection with
/// sequence numbers `from` to `through` (both included), in a
/// [`ServerFrame::PublishAcked`](crate::ServerFrame::PublishAcked).
///
/// The queues counted are every durable queue of the overlay the publication's broker knew
/// of (its own and, through the queue directory, other brokers'), whose filter matched. A
/// publication that matched none was acked but is kept by no queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueMatches {
    /// The first sequence number of the run.
    pub from: u64,
    /// The last sequence number of the run.
    pub through: u64,
    /// How many durable queues each publication of the run matched.
    pub queues: u32,
}

/// A message of a durable queue as [`ClientFrame::QueuePeek`](crate::ClientFrame::QueuePeek)
/// shows it: looked at, not delivered, so it has no tag and its delivery count is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeekedMessage {
    /// How many times it was delivered so far (0: never).
    pub delivery_count: u32,
    /// The attributes.
    pub attributes: Attributes,
    /// The payload.
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
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

#[cfg(test)]
mod tests {
    use serde::Serialize;

    use super::*;
    use crate::{decode, encode};

    /// Frames of brokers and clients from before queue limits and owners still decode.
    #[test]
    fn options_and_infos_without_the_newer_fields_decode_with_defaults() {
        #[derive(Serialize)]
        struct OldOptions {
            ack_wait_ms: Option<u64>,
            max_deliveries: Option<u32>,
        }
        let bytes = encode(&OldOptions {
            ack_wait_ms: Some(5),
            max_deliveries: None,
        })
        .unwrap();
        assert_eq!(
            decode::<QueueOptions>(&bytes).unwrap(),
            QueueOptions {
                ack_wait_ms: Some(5),
                ..QueueOptions::default()
            }
        );
        #[derive(Serialize)]
        struct OldInfo {
            name: String,
            filter: String,
            pending: u64,
            unacked: u64,
            dead_lettered: u64,
            consumers: u32,
            ack_wait_ms: u64,
            max_deliveries: u32,
        }
        let bytes = encode(&OldInfo {
            name: "q".into(),
            filter: "TRUE".into(),
            pending: 1,
            unacked: 2,
            dead_lettered: 3,
            consumers: 4,
            ack_wait_ms: 5,
            max_deliveries: 6,
        })
        .unwrap();
        let info: QueueInfo = decode(&bytes).unwrap();
        assert_eq!((info.pending, info.max_deliveries), (1, 6));
        assert_eq!((info.owner.as_str(), info.max_messages), ("", 0));
        assert_eq!(info.discard, Discard::Old);
    }

    #[test]
    fn discard_policies_read_and_print_as_lowercase_words() {
        for d in [Discard::Old, Discard::New] {
            assert_eq!(d.as_str().parse::<Discard>(), Ok(d));
            let bytes = encode(&d).unwrap();
            assert_eq!(decode::<Discard>(&bytes).unwrap(), d);
        }
        assert_eq!(encode(&Discard::New).unwrap(), encode(&"new").unwrap());
        assert!("Old".parse::<Discard>().is_err());
    }
}
