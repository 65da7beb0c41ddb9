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
//!
//! # Compatibility
//!
//! Structs and struct variants are arrays of their fields in declaration order, variants are
//! named by their name. Logs and checkpoints written by an earlier version must stay readable,
//! so a field is only ever *added*, last, with `#[serde(default)]`: an older record is a
//! shorter array and decodes with the default (`tests` below keeps the older shapes). New
//! variants may be added anywhere.

use palio_protocol::{Attributes, Discard};
use palio_topology::BrokerId;
use serde::de::IgnoredAny;
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
        /// When this broker stored it (Unix milliseconds; 0 in records written before
        /// queues had a `max_age`): what a queue's `max_age` counts from.
        #[serde(default)]
        at_ms: u64,
        /// How many durable queues of the overlay it matched, when published here (`None`:
        /// received from a peer, or written before publish acks said so): what the ack of a
        /// retry of its `(producer, seq)` says.
        #[serde(default)]
        matched: Option<u32>,
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
        /// The principal that added it; empty in records written before queues had owners
        /// (such a queue is everyone's).
        #[serde(default)]
        owner: String,
        /// Its size limits (none in records written before queues had limits).
        #[serde(default)]
        limits: QueueLimits,
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
    /// after a crash a count may be one lower than it was. Written by earlier versions (now
    /// [`Record::DeliveredMany`]), still read.
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
    /// A principal claimed a producer name: from now on only it (or an admin) may name that
    /// producer. Written when a producer is first named, or first named after an upgrade from
    /// a version without producer owners (the entry then keeps its sequence number).
    ProducerClaimed {
        /// The producer's name.
        name: String,
        /// The principal's name.
        owner: String,
        /// When (Unix milliseconds).
        at_ms: u64,
    },
    /// Idle producers were forgotten to make room in the producer table (`limits.max_producers`):
    /// their sequence numbers and owners are gone.
    ProducersForgotten {
        /// Their names.
        names: Vec<String>,
    },
    /// Messages left a lane because of its queue's limits (`max_age`), not an ack.
    Dropped {
        /// The lane.
        lane: LaneId,
        /// Their tags.
        tags: Vec<u64>,
    },
    /// Messages of a lane were delivered: each tag with its delivery count now. What
    /// [`Record::Delivered`] says, for the whole batch a fetch (or a push window) took, in one
    /// record; written without waiting for an fsync like it.
    DeliveredMany {
        /// The lane.
        lane: LaneId,
        /// `(tag, delivery count)`.
        deliveries: Vec<(u64, u32)>,
    },
    /// Every message of a lane was removed (a purge, or the removal of a dead-letter queue):
    /// the lane's entries at this point of the log leave it; consumers stay attached.
    Purged {
        /// The lane.
        lane: LaneId,
    },
}

impl Record {
    /// Whether writing it asks for a sync. First deliveries do not: nothing waits for their
    /// counts to be durable, so they reach the disk with the next sync someone waits for, and
    /// losing one in a crash leaves its count one lower (0), as documented. A redelivery asks,
    /// so that a count is never more than one lower after a crash.
    pub(crate) fn awaits_sync(&self) -> bool {
        match self {
            Record::Delivered { count, .. } => *count > 1,
            Record::DeliveredMany { deliveries, .. } => deliveries.iter().any(|&(_, c)| c > 1),
            _ => true,
        }
    }
}

/// What of a [`Record::Message`] goes out again (delivered or forwarded): decoded from the
/// same bytes, with the other fields skipped rather than decoded (no allocation for the
/// producer name, queues and destinations). Any other record fails to decode as one.
#[derive(Debug, Deserialize)]
pub(crate) enum MessageBody {
    /// The fields of [`Record::Message`], in order.
    Message(
        IgnoredAny,
        IgnoredAny,
        Attributes,
        #[serde(with = "serde_bytes")] Vec<u8>,
        IgnoredAny,
        IgnoredAny,
        IgnoredAny,
        #[serde(default)] IgnoredAny,
        #[serde(default)] IgnoredAny,
    ),
}

impl MessageBody {
    /// The attributes and payload.
    pub(crate) fn into_parts(self) -> (Attributes, Vec<u8>) {
        let MessageBody::Message(_, _, attributes, payload, ..) = self;
        (attributes, payload)
    }
}

/// A durable queue's size limits, as recorded. 0 is "no limit".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct QueueLimits {
    /// Messages per lane.
    pub(crate) max_messages: u64,
    /// Bytes per lane (the sum of its messages' record sizes).
    pub(crate) max_bytes: u64,
    /// Milliseconds a message stays after it was stored here.
    pub(crate) max_age_ms: u64,
    /// What a full lane does with a new message.
    pub(crate) discard: Discard,
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
    /// See [`Record::QueueAdded`].
    #[serde(default)]
    pub(crate) owner: String,
    #[serde(default)]
    pub(crate) limits: QueueLimits,
    /// The main lane's entries with their sizes: replaces `main` (left empty) in checkpoints
    /// written since queues have limits.
    #[serde(default)]
    pub(crate) main_sized: Vec<SnapshotEntry>,
    /// The same for the dead-letter lane.
    #[serde(default)]
    pub(crate) dead_sized: Vec<SnapshotEntry>,
}

/// A lane entry in a [`Snapshot`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SnapshotEntry {
    pub(crate) tag: u64,
    pub(crate) pos: Position,
    pub(crate) count: u32,
    /// Its record's size in bytes.
    pub(crate) size: u64,
    /// When it was stored (Unix milliseconds).
    pub(crate) at_ms: u64,
}

/// A producer in a [`Snapshot`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ProducerSnapshot {
    pub(crate) name: String,
    /// Empty: not claimed since the upgrade to producer owners.
    pub(crate) owner: String,
    /// The highest stored sequence number, if any.
    pub(crate) last_seq: Option<u64>,
    /// The last claim or stored publication (Unix milliseconds).
    pub(crate) last_used_ms: u64,
    /// How many queues its latest publications matched: `(from, through, queues)` runs of
    /// sequence numbers, oldest first (none in checkpoints written before publish acks said
    /// so).
    #[serde(default)]
    pub(crate) matches: Vec<(u64, u64, u32)>,
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
    /// The highest stored sequence number of each producer, in checkpoints written before
    /// producers had owners (left empty since: see `producer_table`).
    pub(crate) producers: Vec<(String, u64)>,
    /// Ids of messages from peers recently put into local queues (oldest first).
    pub(crate) seen: Vec<MessageId>,
    pub(crate) directory: Vec<QueueDecl>,
    /// The producers with their owners and sequence numbers.
    #[serde(default)]
    pub(crate) producer_table: Vec<ProducerSnapshot>,
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

#[cfg(test)]
mod tests {
    use palio_protocol::Attributes;
    use palio_topology::BrokerId;
    use serde::Serialize;

    use super::*;

    /// The shapes records and checkpoints had before owners and limits, as that version wrote
    /// them.
    #[derive(Serialize)]
    enum OldRecord {
        Message {
            id: MessageId,
            producer: Option<(String, u64)>,
            attributes: Attributes,
            #[serde(with = "serde_bytes")]
            payload: Vec<u8>,
            local: bool,
            queues: Vec<(u64, u64)>,
            dests: Vec<BrokerId>,
        },
        QueueAdded {
            key: u64,
            name: String,
            filter: String,
            ack_wait_ms: u64,
            max_deliveries: u32,
        },
    }

    #[derive(Serialize)]
    struct OldQueueSnapshot {
        key: u64,
        name: String,
        filter: String,
        ack_wait_ms: u64,
        max_deliveries: u32,
        next_tag: u64,
        main: Vec<(u64, Position, u32)>,
        dead: Vec<(u64, Position, u32)>,
    }

    #[derive(Serialize)]
    struct OldSnapshot {
        next_msg: u64,
        next_queue: u64,
        next_generation: u64,
        queues: Vec<OldQueueSnapshot>,
        forwards: Vec<(MessageId, Position, Vec<BrokerId>)>,
        producers: Vec<(String, u64)>,
        seen: Vec<MessageId>,
        directory: Vec<QueueDecl>,
    }

    #[test]
    fn records_written_before_owners_and_limits_decode_with_defaults() {
        let id = MessageId {
            origin: BrokerId(1),
            n: 4,
        };
        let old = encode(&OldRecord::Message {
            id,
            producer: Some(("p".into(), 3)),
            attributes: Attributes::default(),
            payload: vec![1, 2],
            local: true,
            queues: vec![(1, 0)],
            dests: vec![],
        });
        match decode::<Record>(&old).expect("decodes") {
            Record::Message {
                id: back,
                producer,
                at_ms,
                queues,
                matched,
                ..
            } => {
                assert_eq!(back, id);
                assert_eq!(producer, Some(("p".into(), 3)));
                assert_eq!(queues, vec![(1, 0)]);
                assert_eq!((at_ms, matched), (0, None));
            }
            other => panic!("{other:?}"),
        }
        let old = encode(&OldRecord::QueueAdded {
            key: 2,
            name: "q".into(),
            filter: "TRUE".into(),
            ack_wait_ms: 10,
            max_deliveries: 3,
        });
        assert_eq!(
            decode::<Record>(&old).expect("decodes"),
            Record::QueueAdded {
                key: 2,
                name: "q".into(),
                filter: "TRUE".into(),
                ack_wait_ms: 10,
                max_deliveries: 3,
                owner: String::new(),
                limits: QueueLimits::default(),
            }
        );
    }

    #[test]
    fn message_bodies_decode_from_messages_of_every_version_and_nothing_else() {
        let attributes: Attributes = [(
            palio_filter::AttrName::new("type").expect("a name"),
            palio_filter::Value::String("a".into()),
        )]
        .into_iter()
        .collect();
        let id = MessageId {
            origin: BrokerId(1),
            n: 4,
        };
        let now = encode(&Record::Message {
            id,
            producer: Some(("p".into(), 3)),
            attributes: attributes.clone(),
            payload: vec![1, 2],
            local: true,
            queues: vec![(1, 0), (2, 5)],
            dests: vec![BrokerId(2)],
            at_ms: 9,
            matched: Some(3),
        });
        let old = encode(&OldRecord::Message {
            id,
            producer: None,
            attributes: attributes.clone(),
            payload: vec![3],
            local: false,
            queues: vec![],
            dests: vec![],
        });
        let body = |b: &[u8]| decode::<MessageBody>(b).map(MessageBody::into_parts);
        assert_eq!(
            body(&now).expect("decodes"),
            (attributes.clone(), vec![1, 2])
        );
        assert_eq!(body(&old).expect("decodes"), (attributes, vec![3]));
        let other = encode(&Record::QueueRemoved { key: 1 });
        assert!(body(&other).is_err());
    }

    #[test]
    fn checkpoints_written_before_owners_and_limits_decode_with_defaults() {
        let pos = Position::new(0, 7);
        let old = encode(&OldSnapshot {
            next_msg: 1,
            next_queue: 2,
            next_generation: 3,
            queues: vec![OldQueueSnapshot {
                key: 1,
                name: "q".into(),
                filter: "TRUE".into(),
                ack_wait_ms: 10,
                max_deliveries: 3,
                next_tag: 5,
                main: vec![(4, pos, 1)],
                dead: vec![],
            }],
            forwards: vec![],
            producers: vec![("p".into(), 9)],
            seen: vec![],
            directory: vec![],
        });
        let snap: Snapshot = decode(&old).expect("decodes");
        assert_eq!(snap.producers, vec![("p".to_owned(), 9)]);
        assert!(snap.producer_table.is_empty());
        let q = &snap.queues[0];
        assert_eq!(q.main, vec![(4, pos, 1)]);
        assert_eq!((q.owner.as_str(), q.limits), ("", QueueLimits::default()));
        assert!(q.main_sized.is_empty() && q.dead_sized.is_empty());
    }
}
