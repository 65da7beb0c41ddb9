//! The frames between a client and its broker: [`ClientFrame`], [`ServerFrame`],
//! [`DeliveryFrame`].
//!
//! Frames decode into types that can hold only legal values: attribute names are validated by
//! [`AttrName`](palio_filter::AttrName)'s deserializer and an event naming an attribute twice
//! does not decode. Filters travel as text and are compiled by the broker, which answers a bad
//! one with [`ErrorCode::InvalidFilter`].

use serde::{Deserialize, Serialize};

use crate::durable::{
    ConsumeMode, DurableMessage, PeekedMessage, QueueInfo, QueueMatches, QueueOptions,
};
use crate::error_code::ErrorCode;
use crate::group::{Clock, GroupGap, GroupInfo, GroupMessage};
use crate::introspect::{RoutesInfo, ServerInfo};

/// A notification's attributes: on the wire a list of `(name, value)` pairs, decoded once into
/// the filter language's [`Event`](palio_filter::Event) (sorted by name), which refuses a name
/// given twice. Broker, SDK and routing core share this one representation.
pub type Attributes = palio_filter::Event;

/// A frame from a client, on its control stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ClientFrame {
    /// The first frame of a connection.
    Hello {
        /// [`PROTOCOL_VERSION`](crate::PROTOCOL_VERSION) of the client.
        version: u16,
        /// A bearer token, for clients without a certificate.
        token: Option<String>,
        /// A free-form name for logs.
        name: String,
    },
    /// Subscribe with a CESQL filter. Answered by [`ServerFrame::Subscribed`] or an error.
    Subscribe {
        /// Echoed in the answer.
        request: u64,
        /// The filter's source text.
        filter: String,
    },
    /// Drop a subscription. Answered by [`ServerFrame::Done`] or an error. No delivery for it
    /// follows the answer.
    Unsubscribe {
        /// Echoed in the answer.
        request: u64,
        /// The subscription, as named by [`ServerFrame::Subscribed`].
        subscription: u64,
    },
    /// Declare what this client will publish. Answered by [`ServerFrame::Advertised`].
    Advertise {
        /// Echoed in the answer.
        request: u64,
        /// The filter's source text.
        filter: String,
    },
    /// Withdraw an advertisement. Answered by [`ServerFrame::Done`].
    Unadvertise {
        /// Echoed in the answer.
        request: u64,
        /// The advertisement, as named by [`ServerFrame::Advertised`].
        advertisement: u64,
    },
    /// Publish a notification. Not answered (best effort); an invalid notification closes the
    /// connection with [`ErrorCode::InvalidNotification`].
    Publish {
        /// The attributes filters see.
        attributes: Attributes,
        /// The opaque application data.
        #[serde(with = "serde_bytes")]
        payload: Vec<u8>,
    },
    /// Answered by [`ServerFrame::Flushed`] once every frame sent before it has been handled:
    /// every earlier publication has been handed to routing.
    Flush {
        /// Echoed in the answer.
        request: u64,
    },
    /// Names the producer of this connection's persistent publications. Answered by
    /// [`ServerFrame::ProducerReady`]. Sent once, before the first
    /// [`ClientFrame::PublishPersistent`]; a producer id is meant to be used by one connection
    /// at a time.
    Producer {
        /// Echoed in the answer.
        request: u64,
        /// The producer's id: 1–128 bytes, stable across the producer's reconnects so that
        /// the broker can de-duplicate its retries.
        producer: String,
    },
    /// Publish a notification persistently. Answered (cumulatively, in order) by
    /// [`ServerFrame::PublishAcked`] once it is on the broker's disk, or by
    /// [`ServerFrame::PublishFailed`].
    PublishPersistent {
        /// The producer's sequence number: increasing on a connection. A sequence number the
        /// broker already stored for this producer is acked without being stored again.
        seq: u64,
        /// The attributes filters see.
        attributes: Attributes,
        /// The opaque application data.
        #[serde(with = "serde_bytes")]
        payload: Vec<u8>,
    },
    /// Add a durable queue at this broker. Answered by [`ServerFrame::Done`]; adding a queue
    /// that exists with the same filter and options is not an error.
    QueueAdd {
        /// Echoed in the answer.
        request: u64,
        /// The name (see [`valid_queue_name`](crate::valid_queue_name)).
        name: String,
        /// The CESQL filter's source text.
        filter: String,
        /// Ack wait, maximum deliveries, size limits and discard policy.
        options: QueueOptions,
    },
    /// Remove a durable queue, its dead-letter queue and their messages. Answered by
    /// [`ServerFrame::Done`]. `NAME.dlq` removes the messages of the dead-letter queue of
    /// `NAME` only: it lives as long as `NAME` does.
    QueueRemove {
        /// Echoed in the answer.
        request: u64,
        /// The queue's name.
        name: String,
    },
    /// List this broker's durable queues (dead-letter queues included). Answered by
    /// [`ServerFrame::Queues`].
    QueueList {
        /// Echoed in the answer.
        request: u64,
    },
    /// Describe one queue. Answered by [`ServerFrame::Queues`] with one entry.
    QueueInfo {
        /// Echoed in the answer.
        request: u64,
        /// The queue's name (`NAME.dlq` for a dead-letter queue).
        name: String,
    },
    /// Attach a consumer to a queue. Answered by [`ServerFrame::Consuming`].
    Consume {
        /// Echoed in the answer.
        request: u64,
        /// The queue's name (`NAME.dlq` for a dead-letter queue).
        queue: String,
        /// Push or pull.
        mode: ConsumeMode,
    },
    /// Ask a pull consumer's queue for up to `batch` messages, waiting at most `max_wait_ms`
    /// for the first one. The messages arrive as [`ServerFrame::Message`], followed by
    /// [`ServerFrame::Fetched`].
    Fetch {
        /// Echoed in the answer.
        request: u64,
        /// The pull consumer.
        consumer: u64,
        /// The most messages to deliver: 1 to [`MAX_FETCH_BATCH`](crate::MAX_FETCH_BATCH)
        /// (more is refused with [`ErrorCode::LimitExceeded`]).
        batch: u32,
        /// How long to wait for messages, in milliseconds.
        max_wait_ms: u64,
    },
    /// Acknowledge messages: they leave the queue. Answered by [`ServerFrame::Done`] once the
    /// acks are on disk. Tags that are no longer unacked (acked already, or removed) are
    /// ignored.
    Ack {
        /// Echoed in the answer.
        request: u64,
        /// The consumer that received them.
        consumer: u64,
        /// The messages' tags.
        tags: Vec<u64>,
    },
    /// Refuse messages for now: each is delivered again (to any consumer) after `delay_ms`.
    /// Answered by [`ServerFrame::Done`].
    Nak {
        /// Echoed in the answer.
        request: u64,
        /// The consumer that received them.
        consumer: u64,
        /// The messages' tags.
        tags: Vec<u64>,
        /// How long to wait before delivering them again, in milliseconds.
        delay_ms: u64,
    },
    /// Detach a consumer; its unacked messages are delivered again at once. Answered by
    /// [`ServerFrame::Done`]. A connection's consumers are detached when it closes.
    StopConsume {
        /// Echoed in the answer.
        request: u64,
        /// The consumer.
        consumer: u64,
    },
    /// Create an ordered group. Answered by [`ServerFrame::Done`], or
    /// [`ErrorCode::GroupExists`].
    GroupCreate {
        /// Echoed in the answer.
        request: u64,
        /// The name (see [`valid_group_name`](crate::valid_group_name)).
        name: String,
        /// `fifo`, `causal` or `total`.
        order: String,
    },
    /// Remove a group. Answered by [`ServerFrame::Done`], or [`ErrorCode::GroupNotFound`].
    GroupRemove {
        /// Echoed in the answer.
        request: u64,
        /// The group's name.
        name: String,
    },
    /// List the groups the network knows. Answered by [`ServerFrame::Groups`].
    GroupList {
        /// Echoed in the answer.
        request: u64,
    },
    /// Describe one group. Answered by [`ServerFrame::Groups`] with one entry, or
    /// [`ErrorCode::GroupNotFound`].
    GroupInfo {
        /// Echoed in the answer.
        request: u64,
        /// The group's name.
        name: String,
    },
    /// Join a group as a member, receiving what matches `filter` (everything when `None`)
    /// from now on. Answered by [`ServerFrame::Joined`].
    GroupJoin {
        /// Echoed in the answer.
        request: u64,
        /// The group's name.
        group: String,
        /// A CESQL filter's source text.
        filter: Option<String>,
    },
    /// Leave a group. Answered by [`ServerFrame::Done`]; no message for the member follows.
    GroupLeave {
        /// Echoed in the answer.
        request: u64,
        /// The member, as named by [`ServerFrame::Joined`].
        member: u64,
    },
    /// Publish to a group. Acknowledged by [`ServerFrame::GroupAcked`] (cumulative per group,
    /// in publish order) or refused by [`ServerFrame::GroupPublishFailed`].
    GroupPublish {
        /// The group's name.
        group: String,
        /// Increasing on this connection for this group; with the connection's producer (see
        /// [`ClientFrame::Producer`]; a name of the broker's making otherwise) it identifies
        /// the publication, so a retry is ordered once.
        seq: u64,
        /// Causal order: the clock of what this client delivered from the group.
        deps: Option<Clock>,
        /// The attributes.
        attributes: Attributes,
        /// The opaque application data.
        #[serde(with = "serde_bytes")]
        payload: Vec<u8>,
    },
    /// Remove every message of a queue (`NAME.dlq`: of a dead-letter queue), pending and
    /// unacked; its consumers stay attached. Answered by [`ServerFrame::Purged`] once durable.
    QueuePurge {
        /// Echoed in the answer.
        request: u64,
        /// The queue's name.
        name: String,
    },
    /// Look at the next pending messages of a queue without delivering them: no delivery
    /// count changes, no consumer misses them. Answered by [`ServerFrame::Peeked`].
    QueuePeek {
        /// Echoed in the answer.
        request: u64,
        /// The queue's name (`NAME.dlq` for a dead-letter queue).
        name: String,
        /// The most messages to show: 1 to [`MAX_FETCH_BATCH`](crate::MAX_FETCH_BATCH) (more
        /// is refused with [`ErrorCode::LimitExceeded`]).
        max: u32,
    },
    /// Ask the broker about itself. Answered by [`ServerFrame::ServerInfo`]. Any
    /// authenticated client may ask.
    ServerInfo {
        /// Echoed in the answer.
        request: u64,
    },
    /// Answered by [`ServerFrame::Pong`] as soon as the broker reads it: the round trip over
    /// the control stream.
    Ping {
        /// Echoed in the answer.
        request: u64,
    },
    /// Ask for the broker's routing state (what the admin listener's `/routes` shows).
    /// Answered by [`ServerFrame::Routes`]; filters and clients only for those the broker's
    /// disclosure policy allows (see [`RoutesInfo::detail`]).
    Routes {
        /// Echoed in the answer.
        request: u64,
    },
    /// A request: routed by content like a publication, to every subscription that matches it
    /// anywhere in the network (each gets a [`ServerFrame::Request`]). The first reply comes
    /// back as [`ServerFrame::Replied`]; if no subscription matches, the answer is an
    /// [`ServerFrame::Error`] with [`ErrorCode::NoResponders`], as soon as every broker the
    /// request reached has said so. The broker forgets the request after `timeout_ms`.
    Request {
        /// Echoed in the answer.
        request: u64,
        /// How long the requester waits for a reply, in milliseconds.
        timeout_ms: u64,
        /// The attributes filters see.
        attributes: Attributes,
        /// The opaque application data.
        #[serde(with = "serde_bytes")]
        payload: Vec<u8>,
    },
    /// A reply to a [`ServerFrame::Request`], sent straight back to the requester (across
    /// brokers). Not answered; a reply that comes too late, or after another, is dropped. It
    /// must be within the principal's publish permission.
    Reply {
        /// The request's [`ServerFrame::Request::reply_to`].
        reply_to: ReplyTo,
        /// The attributes.
        attributes: Attributes,
        /// The opaque application data.
        #[serde(with = "serde_bytes")]
        payload: Vec<u8>,
    },
}

/// Where a reply goes: the requester's access broker and the request's id there. Opaque to
/// clients; the id is random, so a reply cannot be aimed at a request one has not seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ReplyTo {
    /// The requester's access broker (its routing id).
    pub broker: u32,
    /// The request at that broker.
    pub id: u64,
}

/// What the broker tells a client in answer to its hello.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// [`PROTOCOL_VERSION`](crate::PROTOCOL_VERSION) of the broker.
    pub version: u16,
    /// The broker's name.
    pub broker: String,
    /// The broker's routing id (a hash of its name).
    pub broker_id: u32,
    /// The largest frame the broker accepts. Frames from the broker that carry a client's
    /// publication on may be up to [`FRAME_HEADROOM`](crate::FRAME_HEADROOM) larger.
    pub max_frame: u32,
}

/// A frame from the broker on a client's control stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ServerFrame {
    /// The hello was accepted: the connection is ready.
    Welcome(Welcome),
    /// A subscription is in place at the access broker; it is forwarded into the overlay
    /// asynchronously.
    Subscribed {
        /// The request answered.
        request: u64,
        /// Names the subscription in [`DeliveryFrame`]s and [`ClientFrame::Unsubscribe`].
        subscription: u64,
    },
    /// An advertisement is in place.
    Advertised {
        /// The request answered.
        request: u64,
        /// Names the advertisement in [`ClientFrame::Unadvertise`].
        advertisement: u64,
    },
    /// An unsubscribe or unadvertise was carried out.
    Done {
        /// The request answered.
        request: u64,
    },
    /// Every frame before the flush has been handled.
    Flushed {
        /// The request answered.
        request: u64,
        /// Publications received on this connection so far.
        published: u64,
    },
    /// The producer is named ([`ClientFrame::Producer`]).
    ProducerReady {
        /// The request answered.
        request: u64,
        /// One more than the highest sequence number stored for this producer (0 for a new
        /// producer): where a producer resuming after a crash may continue.
        next_seq: u64,
    },
    /// Every persistent publication of this connection with a sequence number up to `through`
    /// (and not answered by [`ServerFrame::PublishFailed`]) is on the broker's disk.
    PublishAcked {
        /// The highest sequence number acknowledged.
        through: u64,
        /// How many durable queues the publications this frame acknowledges matched, in runs
        /// of consecutive sequence numbers, in increasing order; a run's `queues` of 0 means
        /// acked but kept by no queue. Absent (a broker of an earlier version): not known.
        #[serde(default)]
        matched: Vec<QueueMatches>,
    },
    /// A persistent publication was not stored; nothing about it is acknowledged.
    PublishFailed {
        /// Its sequence number.
        seq: u64,
        /// Why ([`ErrorCode::StoreUnavailable`] when the disk is full or failed).
        code: ErrorCode,
        /// A human-readable explanation.
        message: String,
    },
    /// The answer to [`ClientFrame::QueueList`] and [`ClientFrame::QueueInfo`], in one or more
    /// frames: a listing longer than one frame is split, every frame but the last has `more`
    /// set, and the answer is the queues of all its frames in order. Each frame is at most the
    /// broker's `max_frame` (see [`Welcome`]), except one holding a single queue whose entry
    /// alone is longer, which stays within [`FRAME_HEADROOM`](crate::FRAME_HEADROOM) of it.
    Queues {
        /// The request answered.
        request: u64,
        /// The queues of this frame.
        queues: Vec<QueueInfo>,
        /// More frames of this answer follow. Absent (a sender that never splits) means
        /// `false`.
        #[serde(default)]
        more: bool,
    },
    /// A consumer is attached.
    Consuming {
        /// The request answered.
        request: u64,
        /// Names the consumer in [`DurableMessage::consumer`], acks, naks and fetches.
        consumer: u64,
    },
    /// A message of a durable queue for one of this connection's consumers.
    Message(DurableMessage),
    /// A fetch is over: `count` messages were sent for it, all before this frame.
    Fetched {
        /// The request answered.
        request: u64,
        /// How many messages the fetch delivered.
        count: u32,
    },
    /// The answer to [`ClientFrame::GroupList`] and [`ClientFrame::GroupInfo`].
    Groups {
        /// The request answered.
        request: u64,
        /// The groups.
        groups: Vec<GroupInfo>,
    },
    /// A member joined a group.
    Joined {
        /// The request answered.
        request: u64,
        /// Names the member in [`GroupMessage::member`] and [`ClientFrame::GroupLeave`].
        member: u64,
    },
    /// A message of a group for one of this connection's members, in the group's order.
    GroupMessage(GroupMessage),
    /// Messages of a group a member will never get.
    GroupGap(GroupGap),
    /// Every publication of this connection to `group` up to `through` is ordered for good
    /// (total: committed on a majority of the group's replicas, on disk).
    GroupAcked {
        /// The group.
        group: String,
        /// The highest sequence number acknowledged.
        through: u64,
    },
    /// A group publication was refused; nothing about it is acknowledged.
    GroupPublishFailed {
        /// The group.
        group: String,
        /// Its sequence number.
        seq: u64,
        /// Why.
        code: ErrorCode,
        /// A human-readable explanation.
        message: String,
    },
    /// A request failed (`request` is set; the connection stays usable), or the connection is
    /// being closed (`request` is `None`).
    Error {
        /// The request that failed, if any.
        request: Option<u64>,
        /// What went wrong.
        code: ErrorCode,
        /// A human-readable explanation.
        message: String,
    },
    /// Live publications ([`ClientFrame::Publish`], which has no request id) were refused:
    /// not routed to anyone. The connection stays open. Sent at most once per batch of
    /// publications the broker took together; the SDK reports it on the next flush.
    PublishRefused {
        /// How many were refused.
        count: u64,
        /// Why ([`ErrorCode::PermissionDenied`]: outside the principal's publish permission).
        code: ErrorCode,
        /// A human-readable explanation.
        message: String,
    },
    /// The answer to [`ClientFrame::QueuePurge`]: the queue's messages are gone, on disk.
    Purged {
        /// The request answered.
        request: u64,
        /// How many messages were removed.
        messages: u64,
    },
    /// The answer to [`ClientFrame::QueuePeek`]: the next pending messages of the queue, in
    /// queue order; fewer than asked when the queue has fewer, or when more would not fit in
    /// one frame of the broker's `max_frame` (see [`Welcome`]).
    Peeked {
        /// The request answered.
        request: u64,
        /// The messages.
        messages: Vec<PeekedMessage>,
    },
    /// The answer to [`ClientFrame::ServerInfo`].
    ServerInfo {
        /// The request answered.
        request: u64,
        /// The broker's identity, uptime and peers (boxed: it is larger than most frames).
        info: Box<ServerInfo>,
    },
    /// The answer to [`ClientFrame::Ping`].
    Pong {
        /// The request answered.
        request: u64,
    },
    /// The answer to [`ClientFrame::Routes`]: one frame, at most the broker's `max_frame`
    /// (long tables are truncated to fit, see [`Listing`](crate::Listing)).
    Routes {
        /// The request answered.
        request: u64,
        /// The broker's routing state (boxed: it is larger than most frames).
        routes: Box<RoutesInfo>,
    },
    /// A request ([`ClientFrame::Request`], from any client of the network) that matched one
    /// of this client's subscriptions; answer it with [`ClientFrame::Reply`].
    Request {
        /// The subscription it matched.
        subscription: u64,
        /// Where the reply goes.
        reply_to: ReplyTo,
        /// The attributes.
        attributes: Attributes,
        /// The payload.
        #[serde(with = "serde_bytes")]
        payload: Vec<u8>,
    },
    /// The first reply to this client's [`ClientFrame::Request`].
    Replied {
        /// The request it answers.
        request: u64,
        /// The reply's attributes.
        attributes: Attributes,
        /// The reply's payload.
        #[serde(with = "serde_bytes")]
        payload: Vec<u8>,
    },
}

/// A notification delivered to a subscription, on the client's delivery stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryFrame {
    /// The subscription it matched.
    pub subscription: u64,
    /// The attributes.
    pub attributes: Attributes,
    /// The payload.
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use palio_filter::{AttrName, Value};

    use super::*;
    use crate::codec::{decode, encode};

    #[test]
    fn client_frames_round_trip() {
        let frames = vec![
            ClientFrame::Hello {
                version: 1,
                token: Some("t".into()),
                name: "cli".into(),
            },
            ClientFrame::Subscribe {
                request: 7,
                filter: "type = 'a'".into(),
            },
            ClientFrame::Publish {
                attributes: [
                    (AttrName::new("type").unwrap(), Value::String("a".into())),
                    (AttrName::new("level").unwrap(), Value::Int(3)),
                    (AttrName::new("ok").unwrap(), Value::Bool(true)),
                ]
                .into_iter()
                .collect(),
                payload: b"hello".to_vec(),
            },
            ClientFrame::Flush { request: 9 },
            ClientFrame::ServerInfo { request: 10 },
            ClientFrame::Ping { request: 11 },
            ClientFrame::Routes { request: 12 },
        ];
        for f in frames {
            let bytes = encode(&f).unwrap();
            let back: ClientFrame = decode(&bytes).unwrap();
            assert_eq!(back, f);
        }
    }

    #[test]
    fn a_queues_frame_without_more_is_the_last() {
        #[derive(Serialize)]
        enum Old {
            Queues {
                request: u64,
                queues: Vec<QueueInfo>,
            },
        }
        let bytes = encode(&Old::Queues {
            request: 3,
            queues: vec![],
        })
        .unwrap();
        assert_eq!(
            decode::<ServerFrame>(&bytes).unwrap(),
            ServerFrame::Queues {
                request: 3,
                queues: vec![],
                more: false
            }
        );
    }

    #[test]
    fn a_publish_ack_without_matched_decodes_with_no_runs() {
        #[derive(Serialize)]
        enum Old {
            PublishAcked { through: u64 },
        }
        let bytes = encode(&Old::PublishAcked { through: 7 }).unwrap();
        assert_eq!(
            decode::<ServerFrame>(&bytes).unwrap(),
            ServerFrame::PublishAcked {
                through: 7,
                matched: vec![]
            }
        );
    }

    #[test]
    fn invalid_attribute_name_is_refused_when_decoding() {
        #[derive(Serialize)]
        enum Raw {
            Publish {
                attributes: Vec<(String, Value)>,
                #[serde(with = "serde_bytes")]
                payload: Vec<u8>,
            },
        }
        let raw = Raw::Publish {
            attributes: vec![("Not-Valid".into(), Value::Int(1))],
            payload: vec![],
        };
        let bytes = rmp_serde::to_vec_named(&raw).unwrap();
        assert!(decode::<ClientFrame>(&bytes).is_err());
    }

    #[test]
    fn a_publication_naming_an_attribute_twice_does_not_decode() {
        #[derive(Serialize)]
        enum Raw {
            Publish {
                attributes: Vec<(String, Value)>,
                #[serde(with = "serde_bytes")]
                payload: Vec<u8>,
            },
        }
        let raw = Raw::Publish {
            attributes: vec![("a".into(), Value::Int(1)), ("a".into(), Value::Int(2))],
            payload: vec![],
        };
        let bytes = rmp_serde::to_vec_named(&raw).unwrap();
        let err = decode::<ClientFrame>(&bytes).unwrap_err();
        assert_eq!(err.code(), ErrorCode::MalformedFrame);
        assert!(err.to_string().contains("named twice"), "{err}");
    }
}
