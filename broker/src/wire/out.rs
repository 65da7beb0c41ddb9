//! What a peer link's writer puts on the wire, and how a notification is encoded once per hop.
//!
//! The router hands each peer outbox [`PeerOut`] items. A notification that goes to several
//! peers is wrapped once in an [`EncodedOnce`] shared by all their outboxes: the first writer
//! to reach it encodes the frame, the others copy the bytes. The notification is written
//! straight from the router's `Arc<Notification>` (no copy of its attributes or payload) into
//! exactly the bytes of [`PeerMessage::Notify`] (by hand, `wire::notify`), so the receiver
//! decodes it as usual. A request that goes to several peers is shared the same way
//! ([`SharedMessage`]).

use std::sync::{Arc, OnceLock};

use bytes::{Bytes, BytesMut};
use palio_protocol::FrameError;
use palio_topology::{LinkStateAd, Notification, PeerFrame};
use serde::Serialize;

use super::PeerMessage;
use crate::frame_size::{attributes_size, notification_size};
use crate::writer::WireFrame;

/// An item of a peer link's outbox.
#[derive(Debug)]
pub(crate) enum PeerOut {
    /// A routing frame from the topology state machine (not a notification).
    Routing(PeerFrame),
    /// A notification, encoded at most once for all the peers it goes to.
    Notify(Arc<EncodedOnce>),
    /// A store-and-forward message from the persist task.
    Message(PeerMessage),
    /// A message that goes to several peers (a request), encoded at most once for all of them.
    Shared(Arc<SharedMessage>),
}

impl PeerOut {
    /// The outbox item for a frame of the topology state machine.
    pub(crate) fn of_frame(frame: PeerFrame) -> Self {
        match frame {
            PeerFrame::Notification(n) => PeerOut::Notify(Arc::new(EncodedOnce::new(n))),
            other => PeerOut::Routing(other),
        }
    }

    /// About how many bytes the item takes on the wire (what outbox limits count).
    pub(crate) fn size(&self) -> usize {
        match self {
            PeerOut::Notify(e) => notification_size(&e.notification),
            PeerOut::Routing(PeerFrame::LinkState(ads)) => {
                64 + ads.iter().map(link_state_size).sum::<usize>()
            }
            PeerOut::Routing(
                PeerFrame::Subscribe { filter, .. } | PeerFrame::Advertise { filter, .. },
            ) => 64 + filter.source().len(),
            PeerOut::Routing(_) => 64,
            PeerOut::Message(m) => message_size(m),
            PeerOut::Shared(m) => m.size,
        }
    }
}

/// About how many bytes a peer message takes on the wire (what outbox limits count).
fn message_size(m: &PeerMessage) -> usize {
    match m {
        PeerMessage::Store {
            attributes,
            payload,
            dests,
            ..
        } => 64 + payload.len() + 8 * dests.len() + attributes_size(attributes),
        PeerMessage::StoreAck { ids } => 64 + 16 * ids.len(),
        PeerMessage::QueueDecl(d) => 64 + d.name.len() + d.filter.len(),
        PeerMessage::Group(g) => group_size(g),
        PeerMessage::Request {
            attributes,
            payload,
            ..
        }
        | PeerMessage::Reply {
            attributes,
            payload,
            ..
        } => 64 + payload.len() + attributes_size(attributes),
        _ => 64,
    }
}

/// About how many bytes a group message takes on the wire (an upper bound).
fn group_size(g: &super::GroupPeer) -> usize {
    use super::GroupPeer;
    match g {
        GroupPeer::Names(n) => 64 + n.iter().map(|(_, s)| 8 + s.len()).sum::<usize>(),
        GroupPeer::Decl(d) => 64 + d.name.len() + 8 * d.voters.len(),
        GroupPeer::Members { group, members, .. } => {
            64 + group.len() + members.iter().map(|m| 4 + m.len()).sum::<usize>()
        }
        GroupPeer::Sequencer { group, .. } => 64 + group.len(),
        GroupPeer::Body { group, body, .. } => 64 + group.len() + body.len(),
    }
}

/// The most bytes of link-state advertisements put in one frame: a whole database (sent when a
/// link comes up) is split into several frames, so that it always fits the frame limit.
pub(crate) const LINK_STATE_CHUNK_BYTES: usize = 64 * 1024;

/// About how many bytes an advertisement takes on the wire (an upper bound).
fn link_state_size(ad: &LinkStateAd) -> usize {
    64 + 9 * ad.neighbours.len()
}

impl WireFrame for PeerOut {
    fn encode(&self, dst: &mut BytesMut, max: usize) -> Result<(), FrameError> {
        match self {
            PeerOut::Notify(e) => encode_once(&e.bytes, dst, |b| {
                super::notify::encode_notify(&e.notification, b, max)
            }),
            PeerOut::Routing(PeerFrame::LinkState(ads)) => {
                let mut start = 0;
                while start < ads.len() {
                    let mut end = start;
                    let mut bytes = 0;
                    while end < ads.len() && (end == start || bytes < LINK_STATE_CHUNK_BYTES) {
                        bytes += link_state_size(&ads[end]);
                        end += 1;
                    }
                    palio_protocol::encode_into(
                        &LinkStateRef::Frame(LinkStateFrameRef::LinkState(&ads[start..end])),
                        dst,
                        max,
                    )?;
                    start = end;
                }
                Ok(())
            }
            PeerOut::Routing(f) => palio_protocol::encode_into(&RoutingRef::Frame(f), dst, max),
            PeerOut::Message(m) => palio_protocol::encode_into(m, dst, max),
            PeerOut::Shared(m) => encode_once(&m.bytes, dst, |b| {
                palio_protocol::encode_into(&m.message, b, max)
            }),
        }
    }
}

/// Appends to `dst` the frame kept in `cell`, encoding it with `encode` if no writer has yet.
fn encode_once(
    cell: &OnceLock<Result<Bytes, String>>,
    dst: &mut BytesMut,
    encode: impl FnOnce(&mut BytesMut) -> Result<(), FrameError>,
) -> Result<(), FrameError> {
    let bytes = cell
        .get_or_init(|| {
            let mut b = BytesMut::new();
            encode(&mut b)
                .map(|()| b.freeze())
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| FrameError::Encode(e.clone()))?;
    dst.extend_from_slice(bytes);
    Ok(())
}

/// A peer message shared by several peers' outboxes and, once a writer needed it, its frame.
#[derive(Debug)]
pub(crate) struct SharedMessage {
    message: PeerMessage,
    size: usize,
    bytes: OnceLock<Result<Bytes, String>>,
}

impl SharedMessage {
    /// Wraps `message` for several outboxes.
    pub(crate) fn new(message: PeerMessage) -> Arc<Self> {
        Arc::new(Self {
            size: message_size(&message),
            message,
            bytes: OnceLock::new(),
        })
    }

    /// The same message (and encoding) for another peer.
    pub(crate) fn share(self: &Arc<Self>) -> PeerOut {
        PeerOut::Shared(self.clone())
    }
}

/// A notification and, once a writer needed it, its encoded [`PeerMessage::Notify`] frame.
#[derive(Debug)]
pub(crate) struct EncodedOnce {
    notification: Arc<Notification>,
    bytes: OnceLock<Result<Bytes, String>>,
}

impl EncodedOnce {
    fn new(notification: Arc<Notification>) -> Self {
        Self {
            notification,
            bytes: OnceLock::new(),
        }
    }

    /// Whether this wraps `n` (the same allocation).
    pub(crate) fn wraps(&self, n: &Arc<Notification>) -> bool {
        Arc::ptr_eq(&self.notification, n)
    }

    /// The same encoding for another peer.
    pub(crate) fn share(self: &Arc<Self>) -> PeerOut {
        PeerOut::Notify(self.clone())
    }
}

/// [`PeerMessage::Frame`], borrowed.
#[derive(Serialize)]
enum RoutingRef<'a> {
    Frame(&'a PeerFrame),
}

/// [`PeerMessage::Frame`] of a [`PeerFrame::LinkState`] with some of the advertisements.
#[derive(Serialize)]
enum LinkStateFrameRef<'a> {
    LinkState(&'a [LinkStateAd]),
}

#[derive(Serialize)]
enum LinkStateRef<'a> {
    Frame(LinkStateFrameRef<'a>),
}

#[cfg(test)]
mod tests {
    use palio_filter::{AttrName, Event, Value};
    use palio_protocol::{decode, encode};
    use palio_topology::NotificationId;

    use super::*;

    fn note(payload: usize) -> Arc<Notification> {
        let attributes: Event = [
            (
                AttrName::new("type").unwrap(),
                Value::String("bench".into()),
            ),
            (AttrName::new("level").unwrap(), Value::Int(-3)),
            (AttrName::new("ok").unwrap(), Value::Bool(true)),
        ]
        .into_iter()
        .collect();
        Arc::new(Notification {
            id: NotificationId(42),
            attributes,
            payload: vec![7; payload],
        })
    }

    #[test]
    fn a_notification_encodes_to_the_bytes_of_its_peer_message() {
        let n = note(100);
        let out = PeerOut::of_frame(PeerFrame::Notification(n.clone()));
        let mut dst = BytesMut::new();
        out.encode(&mut dst, 1 << 20).unwrap();
        let owned = encode(&PeerMessage::from_frame(PeerFrame::Notification(n.clone()))).unwrap();
        assert_eq!(&dst[4..], &owned[..]);
        let back: PeerMessage = decode(&dst[4..]).unwrap();
        assert_eq!(back.into_frame(), Some(PeerFrame::Notification(n)));
        // The size estimate is an upper bound of the real size for small frames.
        assert!(out.size() >= dst.len(), "{} < {}", out.size(), dst.len());
    }

    #[test]
    fn a_shared_encoding_is_made_once() {
        let n = note(10);
        let PeerOut::Notify(e) = PeerOut::of_frame(PeerFrame::Notification(n.clone())) else {
            panic!("a notification");
        };
        assert!(e.wraps(&n));
        let (mut a, mut b) = (BytesMut::new(), BytesMut::new());
        e.share().encode(&mut a, 1 << 20).unwrap();
        e.share().encode(&mut b, 1 << 20).unwrap();
        assert_eq!(a, b);
        assert!(e.bytes.get().is_some());
    }

    #[test]
    fn a_shared_message_encodes_once_to_its_own_bytes() {
        let n = note(300);
        let message = || PeerMessage::Request {
            origin: palio_topology::BrokerId(3),
            id: 99,
            attributes: n.attributes.clone(),
            payload: n.payload.clone(),
        };
        let shared = SharedMessage::new(message());
        let (mut a, mut b) = (BytesMut::new(), BytesMut::new());
        shared.share().encode(&mut a, 1 << 20).unwrap();
        assert!(shared.bytes.get().is_some());
        shared.share().encode(&mut b, 1 << 20).unwrap();
        assert_eq!(a, b);
        assert_eq!(&a[4..], &encode(&message()).unwrap()[..]);
        assert_eq!(shared.share().size(), PeerOut::Message(message()).size());
        assert!(shared.size >= a.len(), "{} < {}", shared.size, a.len());
    }

    #[test]
    fn a_large_link_state_database_is_split_into_frames_that_fit() {
        use palio_protocol::FrameCodec;
        use tokio_util::codec::Decoder;

        let ads: Vec<LinkStateAd> = (0..5000u32)
            .map(|i| LinkStateAd {
                origin: palio_topology::BrokerId(i),
                incarnation: 1,
                seq: u64::from(i),
                neighbours: (0..20).map(|j| palio_topology::BrokerId(i ^ j)).collect(),
            })
            .collect();
        let mut dst = BytesMut::new();
        let max = 256 * 1024;
        PeerOut::Routing(PeerFrame::LinkState(ads.clone()))
            .encode(&mut dst, max)
            .unwrap();
        let mut codec = FrameCodec::<PeerMessage>::new(max);
        let mut back = Vec::new();
        let mut frames = 0;
        while let Some(m) = codec.decode(&mut dst).unwrap() {
            frames += 1;
            match m {
                PeerMessage::Frame(PeerFrame::LinkState(part)) => back.extend(part),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(frames > 1, "split into several frames");
        assert_eq!(back, ads, "every advertisement, in order");
    }

    #[test]
    fn routing_frames_encode_as_peer_messages() {
        let f = PeerFrame::Unsubscribe {
            key: palio_topology::RouteKey(9),
        };
        let mut dst = BytesMut::new();
        PeerOut::Routing(f.clone())
            .encode(&mut dst, 1 << 20)
            .unwrap();
        assert_eq!(&dst[4..], &encode(&PeerMessage::Frame(f)).unwrap()[..]);
    }
}
