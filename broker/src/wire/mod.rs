//! The broker-to-broker wire protocol: what travels on a peer link.
//!
//! These types belong to the broker, not to `palio-protocol` (which the SDK shares): they carry
//! the routing core's frames ([`PeerFrame`]) and the broker's ids, and no client ever sees
//! them. Framing is the same as for clients ([`palio_protocol::FrameCodec`]). Public (and
//! hidden from the docs) only so that tests and fuzz targets can speak to a broker as a peer.

mod notify;
mod out;

use std::sync::Arc;

use palio_protocol::{Attributes, ErrorCode};
use palio_topology::{BrokerId, Notification, NotificationId, PeerFrame};
use serde::{Deserialize, Serialize};

pub(crate) use self::out::{EncodedOnce, PeerOut, SharedMessage};

/// A persistent message's end-to-end identity: the broker that first stored it and that
/// broker's counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MessageId {
    /// The access broker of its publisher.
    pub origin: BrokerId,
    /// Increasing at the origin.
    pub n: u64,
}

/// A durable queue as every broker of the overlay knows it: brokers forward the persistent
/// messages matching `filter` toward `home`, storing them at every hop.
///
/// Only `home` changes its entries, each time with a larger `generation`, so wherever two
/// entries for the same queue meet, the larger generation wins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueDecl {
    /// Where the queue lives.
    pub home: BrokerId,
    /// Its name at `home`.
    pub name: String,
    /// The filter's source text.
    pub filter: String,
    /// Larger for each change at `home`.
    pub generation: u64,
    /// The queue was removed (a tombstone, so that an older entry cannot come back).
    pub removed: bool,
}

/// An ordered group as every broker of the overlay knows it (see the `groups` module).
///
/// Where two entries for the same name meet, the one with the larger
/// `(generation, removed, creator)` wins: a removal is a tombstone, and a group created again
/// after a removal has a larger generation.
///
/// Kept in the groups' log as a MessagePack array and sent to peers as a map: fields added
/// later go last, with a default, so that older logs and peers still decode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupDecl {
    /// The group's name.
    pub name: String,
    /// Its ordering mode.
    pub order: palio_topology::group::Order,
    /// Total order: the replica brokers of its log (fixed at creation).
    pub voters: Vec<BrokerId>,
    /// The broker where it was created.
    pub creator: BrokerId,
    /// The creator's clock at creation (milliseconds since the Unix epoch), or at removal.
    pub generation: u64,
    /// The group was removed (a tombstone).
    pub removed: bool,
    /// The name of the principal that created it: only it (or an admin) may use the group.
    /// Empty for a group declared before groups had owners: everyone's.
    #[serde(default)]
    pub owner: String,
}

/// What brokers exchange about ordered groups (the `groups` task).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GroupPeer {
    /// Brokers' names by id: flooded, so that every broker can name every other.
    Names(Vec<(BrokerId, String)>),
    /// A group declared or removed: flooded.
    Decl(GroupDecl),
    /// The members of a group at broker `broker` (`client@broker` names): flooded; a larger
    /// `version` replaces a smaller one.
    Members {
        /// The group.
        group: String,
        /// Where the members are.
        broker: BrokerId,
        /// Larger for each change at `broker`.
        version: u64,
        /// The members.
        members: Vec<String>,
    },
    /// The sequencer of a total-order group, announced by the sequencer itself when it is
    /// elected: flooded; a larger `epoch` replaces a smaller one.
    Sequencer {
        /// The group.
        group: String,
        /// Its epoch.
        epoch: u64,
        /// The sequencer's broker.
        broker: BrokerId,
    },
    /// A message between the group's cores at `from` and `to`, routed hop by hop.
    Body {
        /// The group.
        group: String,
        /// The sending broker.
        from: BrokerId,
        /// The destination broker.
        to: BrokerId,
        /// Opaque to the shell: the cores encode and decode it.
        #[serde(with = "serde_bytes")]
        body: Vec<u8>,
    },
}

/// The hello brokers exchange on a new peer link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerHello {
    /// [`PROTOCOL_VERSION`](palio_protocol::PROTOCOL_VERSION) of the sender.
    pub version: u16,
    /// The sender's configured name.
    pub name: String,
    /// The sender's routing id (derived from its name).
    pub id: BrokerId,
    /// The sender's life, larger after each restart.
    pub incarnation: u64,
    /// The lane streams the sender can carry each way ([`LANES`]); 0 from a broker that
    /// predates lanes (a hello without the field). A link uses the smaller of the two hellos'
    /// counts; with 0 lanes, notifications travel on the link stream as before.
    #[serde(default)]
    pub lanes: u8,
    /// The sender's `limits.max_frame_bytes`; 0 from a broker that predates the field. Brokers
    /// of one network should agree: see [`frame_limits_differ`].
    #[serde(default)]
    pub max_frame: u64,
}

/// What to tell the operator when a peer's `limits.max_frame_bytes` (`theirs`, from its hello;
/// 0 if it did not say) differs from ours: a publication accepted by the broker with the larger
/// limit closes the link when it is forwarded to the other, which refuses the frame.
pub fn frame_limits_differ(ours: usize, theirs: u64) -> Option<String> {
    let ours_u64 = u64::try_from(ours).unwrap_or(u64::MAX);
    (theirs != 0 && theirs != ours_u64).then(|| {
        format!(
            "the peer's limits.max_frame_bytes is {theirs}, this broker's {ours}: a publication \
             larger than {} closes the link when it crosses it; give every broker of a network \
             the same value",
            theirs.min(ours_u64)
        )
    })
}

/// Lane streams per direction of a peer link: best-effort notifications travel on them, each
/// with its own QUIC flow-control window, so that one lane held back does not hold the others
/// (see the `peer` module). Every other frame travels on the link stream.
pub const LANES: u8 = 8;

/// The lanes a link between brokers that sent these hellos' counts uses (both compute the
/// same).
pub fn agreed_lanes(ours: u8, theirs: u8) -> u8 {
    ours.min(theirs)
}

/// A frame on a peer link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum PeerMessage {
    /// The first frame in each direction.
    Hello(PeerHello),
    /// The link is refused (sent instead of the answering hello), or closed.
    Reject {
        /// Why.
        code: ErrorCode,
        /// A human-readable explanation.
        message: String,
    },
    /// A routing frame for the topology state machine (notifications travel as
    /// [`PeerMessage::Notify`] instead).
    Frame(PeerFrame),
    /// A persistent message, stored by the receiver before it acks it with
    /// [`PeerMessage::StoreAck`] (store-and-forward). The receiver delivers it to its own
    /// durable queues if it is one of `dests`, and forwards it toward the other `dests`.
    Store {
        /// End-to-end identity; the receiver ignores a copy it stored already.
        id: MessageId,
        /// The brokers with durable queues it must reach through the receiver.
        dests: Vec<BrokerId>,
        /// The attributes.
        attributes: Attributes,
        /// The payload.
        #[serde(with = "serde_bytes")]
        payload: Vec<u8>,
    },
    /// The receiver has these [`PeerMessage::Store`]s on disk: the sender may forget them.
    StoreAck {
        /// The messages.
        ids: Vec<MessageId>,
    },
    /// A durable queue (or its removal) as the overlay knows it. Sent to every peer when it
    /// changes and, on link-up, every entry known.
    QueueDecl(QueueDecl),
    /// A notification travelling along the tree: the topology's
    /// [`PeerFrame::Notification`], with the payload as MessagePack binary (the topology
    /// frame's own encoding would write it as an array of integers).
    Notify {
        /// End-to-end identity.
        id: NotificationId,
        /// The attributes.
        attributes: Attributes,
        /// The payload.
        #[serde(with = "serde_bytes")]
        payload: Vec<u8>,
    },
    /// Ordered groups: declarations, members and the cores' messages.
    Group(GroupPeer),
    /// A request (a client's `Request`), routed along the tree like a notification. Every
    /// broker it reaches answers [`PeerMessage::Reached`] toward `origin`.
    Request {
        /// The requester's access broker.
        origin: BrokerId,
        /// The request's id there (random).
        id: u64,
        /// The attributes.
        attributes: Attributes,
        /// The payload.
        #[serde(with = "serde_bytes")]
        payload: Vec<u8>,
    },
    /// Routed hop by hop toward `origin`: a broker the request reached handed it to
    /// `responders` local subscriptions and forwarded it to `forwarded` more brokers. From
    /// these the origin knows, without waiting for a timeout, that nobody can answer.
    Reached {
        /// The requester's access broker.
        origin: BrokerId,
        /// The request's id there.
        id: u64,
        /// Local subscriptions that got it.
        responders: u32,
        /// Peers it was forwarded to.
        forwarded: u32,
    },
    /// A reply, routed hop by hop toward the requester's access broker.
    Reply {
        /// The requester's access broker.
        origin: BrokerId,
        /// The request's id there.
        id: u64,
        /// The attributes.
        attributes: Attributes,
        /// The payload.
        #[serde(with = "serde_bytes")]
        payload: Vec<u8>,
    },
}

impl palio_protocol::DecodeFrame for PeerMessage {
    /// Notifications by hand ([`notify`]), everything else (and any other form) by serde.
    fn decode_frame(bytes: &[u8]) -> Result<Self, palio_protocol::FrameError> {
        match notify::decode_notify(bytes) {
            Some(m) => Ok(m),
            None => palio_protocol::decode(bytes),
        }
    }
}

impl PeerMessage {
    /// The message carrying a routing frame: notifications as [`PeerMessage::Notify`].
    pub fn from_frame(frame: PeerFrame) -> Self {
        match frame {
            PeerFrame::Notification(n) => PeerMessage::Notify {
                id: n.id,
                attributes: n.attributes.clone(),
                payload: n.payload.clone(),
            },
            other => PeerMessage::Frame(other),
        }
    }

    /// The routing frame carried, if this is a [`PeerMessage::Frame`] or
    /// [`PeerMessage::Notify`].
    pub fn into_frame(self) -> Option<PeerFrame> {
        match self {
            PeerMessage::Frame(f) => Some(f),
            PeerMessage::Notify {
                id,
                attributes,
                payload,
            } => Some(PeerFrame::Notification(Arc::new(Notification {
                id,
                attributes,
                payload,
            }))),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use palio_filter::{AttrName, Value};
    use palio_protocol::{decode, encode};

    use super::*;

    #[test]
    fn notifications_travel_as_notify_and_come_back_equal() {
        let n = Arc::new(Notification {
            id: NotificationId(7),
            attributes: [(AttrName::new("a").unwrap(), Value::Int(1))]
                .into_iter()
                .collect(),
            payload: vec![1, 2, 3],
        });
        let m = PeerMessage::from_frame(PeerFrame::Notification(n.clone()));
        assert!(matches!(m, PeerMessage::Notify { .. }));
        let bytes = encode(&m).unwrap();
        let back: PeerMessage = decode(&bytes).unwrap();
        assert_eq!(back.into_frame(), Some(PeerFrame::Notification(n)));
    }

    /// A hello as brokers sent it before lanes.
    #[derive(Serialize)]
    struct HelloBeforeLanes {
        version: u16,
        name: String,
        id: BrokerId,
        incarnation: u64,
    }

    #[test]
    fn a_hello_from_before_lanes_decodes_with_none_and_the_link_uses_none() {
        let old = HelloBeforeLanes {
            version: 1,
            name: "old".into(),
            id: BrokerId(9),
            incarnation: 3,
        };
        let back: PeerMessage = decode(
            &encode(&PeerMessage::Hello(PeerHello {
                version: old.version,
                name: old.name.clone(),
                id: old.id,
                incarnation: old.incarnation,
                lanes: LANES,
                max_frame: 1 << 20,
            }))
            .unwrap(),
        )
        .unwrap();
        assert!(matches!(
            back,
            PeerMessage::Hello(PeerHello { lanes: LANES, .. })
        ));
        let h: PeerHello = decode(&encode(&old).unwrap()).unwrap();
        assert_eq!((h.name.as_str(), h.incarnation, h.lanes), ("old", 3, 0));
        assert_eq!(
            h.max_frame, 0,
            "an old hello says nothing of its frame limit"
        );
        assert_eq!(frame_limits_differ(1 << 20, h.max_frame), None);
        assert_eq!(agreed_lanes(LANES, h.lanes), 0);
        assert_eq!(agreed_lanes(LANES, 3), 3);
        assert_eq!(agreed_lanes(LANES, u8::MAX), LANES);
    }

    #[test]
    fn differing_frame_limits_are_reported_with_the_smaller_one() {
        assert_eq!(frame_limits_differ(1 << 20, 1 << 20), None);
        let message = frame_limits_differ(1 << 20, 4 << 20).expect("they differ");
        assert!(
            message.contains("4194304") && message.contains("larger than 1048576"),
            "{message}"
        );
        let message = frame_limits_differ(4 << 20, 1 << 20).expect("they differ");
        assert!(message.contains("larger than 1048576"), "{message}");
    }

    /// A declaration as brokers wrote and sent it before groups had owners.
    #[derive(Serialize)]
    struct DeclBeforeOwners {
        name: String,
        order: palio_topology::group::Order,
        voters: Vec<BrokerId>,
        creator: BrokerId,
        generation: u64,
        removed: bool,
    }

    #[test]
    fn a_declaration_from_before_owners_decodes_as_everyones() {
        let old = DeclBeforeOwners {
            name: "g".into(),
            order: palio_topology::group::Order::Total,
            voters: vec![BrokerId(1)],
            creator: BrokerId(1),
            generation: 7,
            removed: false,
        };
        // As the groups' log holds it (an array) and as a peer sends it (a map).
        let logged: GroupDecl = rmp_serde::from_slice(&rmp_serde::to_vec(&old).unwrap()).unwrap();
        let sent: GroupDecl = decode(&encode(&old).unwrap()).unwrap();
        for d in [logged, sent] {
            assert_eq!(d.owner, "");
            assert_eq!((d.name.as_str(), d.generation), ("g", 7));
        }
        let new = GroupDecl {
            owner: "alice".into(),
            ..decode(&encode(&old).unwrap()).unwrap()
        };
        let back: GroupDecl = rmp_serde::from_slice(&rmp_serde::to_vec(&new).unwrap()).unwrap();
        assert_eq!(back, new);
    }

    #[test]
    fn peer_frames_carry_parsed_filters() {
        let filter = palio_topology::SharedFilter::parse("x > 1").unwrap();
        let m = PeerMessage::Frame(PeerFrame::Subscribe {
            key: palio_topology::RouteKey(3),
            filter,
        });
        let bytes = encode(&m).unwrap();
        assert_eq!(decode::<PeerMessage>(&bytes).unwrap(), m);
    }
}
