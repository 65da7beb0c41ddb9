//! The engine's domain outputs as wire frames: [`ServerFrame`]s on a client's control stream,
//! [`PeerMessage`]s on a peer link.
//!
//! The engine says what happened ([`Output`]); only here is it decided how that is said on the
//! wire, including splitting a queue listing into frames that fit the client's frame limit
//! (the `listing` module).

use palio_protocol::{DurableMessage, PeekedMessage, ServerFrame, encoded_len};
use palio_topology::BrokerId;

use super::listing::queue_frames;
use crate::durable::{Answer, ClientId, Output};
use crate::wire::PeerMessage;

/// The frames of one client output, in order (one, or several for a long queue listing).
pub(crate) type ClientFrames =
    std::iter::Chain<std::option::IntoIter<ServerFrame>, std::vec::IntoIter<ServerFrame>>;

/// An output, framed for the wire.
#[derive(Debug)]
pub(crate) enum Framed {
    /// Frames for a client's control stream.
    Client {
        client: ClientId,
        frames: ClientFrames,
    },
    /// A message for a peer link.
    Peer {
        peer: BrokerId,
        message: PeerMessage,
    },
}

/// Frames `output`; a queue listing goes in frames of at most `max_frame` bytes (see
/// `listing`).
pub(crate) fn frame(output: Output, max_frame: usize) -> Framed {
    let client = |client, frame| Framed::Client {
        client,
        frames: one(frame),
    };
    match output {
        Output::Acked {
            client: c,
            through,
            matched,
        } => client(c, ServerFrame::PublishAcked { through, matched }),
        Output::PublishFailed {
            client: c,
            seq,
            code,
            message,
        } => client(c, ServerFrame::PublishFailed { seq, code, message }),
        Output::Delivered {
            client: c,
            consumer,
            tag,
            delivery_count,
            attributes,
            payload,
        } => client(
            c,
            ServerFrame::Message(DurableMessage {
                consumer,
                tag,
                delivery_count,
                attributes,
                payload,
            }),
        ),
        Output::Answer {
            client,
            request,
            answer,
        } => Framed::Client {
            client,
            frames: answer_frames(request, answer, max_frame),
        },
        Output::Store {
            peer,
            id,
            dests,
            attributes,
            payload,
        } => Framed::Peer {
            peer,
            message: PeerMessage::Store {
                id,
                dests,
                attributes,
                payload,
            },
        },
        Output::StoreAck { peer, ids } => Framed::Peer {
            peer,
            message: PeerMessage::StoreAck { ids },
        },
        Output::Decl { peer, decl } => Framed::Peer {
            peer,
            message: PeerMessage::QueueDecl(decl),
        },
    }
}

/// One frame.
fn one(frame: ServerFrame) -> ClientFrames {
    Some(frame).into_iter().chain(Vec::new())
}

/// The frames answering `request`: one, or as many as a queue listing needs.
fn answer_frames(request: u64, answer: Answer, max_frame: usize) -> ClientFrames {
    let frame = match answer {
        Answer::Queues(queues) => {
            return None
                .into_iter()
                .chain(queue_frames(request, queues, max_frame));
        }
        Answer::Done => ServerFrame::Done { request },
        Answer::ProducerReady { next_seq } => ServerFrame::ProducerReady { request, next_seq },
        Answer::Consuming { consumer } => ServerFrame::Consuming { request, consumer },
        Answer::Fetched { count } => ServerFrame::Fetched { request, count },
        Answer::Refused { code, message } => ServerFrame::Error {
            request: Some(request),
            code,
            message,
        },
        Answer::Purged { messages } => ServerFrame::Purged { request, messages },
        Answer::Peeked(messages) => ServerFrame::Peeked {
            request,
            messages: fitting(request, messages, max_frame),
        },
    };
    one(frame)
}

/// The first of `messages` that fit in a [`ServerFrame::Peeked`] of at most `max_frame`
/// bytes, and at least one (a message alone is within `FRAME_HEADROOM` of it, as a delivery
/// of it would be).
fn fitting(request: u64, mut messages: Vec<PeekedMessage>, max_frame: usize) -> Vec<PeekedMessage> {
    let empty = ServerFrame::Peeked {
        request,
        messages: Vec::new(),
    };
    // The longest array header is 5 bytes; the empty frame has a 1-byte one.
    let mut size = encoded_len(&empty).map_or(0, |n| n + 4);
    let keep = messages
        .iter()
        .position(|m| {
            size = size.saturating_add(encoded_len(m).unwrap_or(max_frame));
            size > max_frame
        })
        .unwrap_or(messages.len())
        .max(1);
    messages.truncate(keep);
    messages
}

#[cfg(test)]
mod tests {
    use palio_protocol::{ErrorCode, QueueInfo, QueueMatches};

    use super::*;
    use crate::wire::{MessageId, QueueDecl};

    fn client_frames(o: Output, max_frame: usize) -> (ClientId, Vec<ServerFrame>) {
        match frame(o, max_frame) {
            Framed::Client { client, frames } => (client, frames.collect()),
            Framed::Peer { peer, message } => panic!("for peer {peer}: {message:?}"),
        }
    }

    fn peer_message(o: Output) -> (BrokerId, PeerMessage) {
        match frame(o, 1024) {
            Framed::Peer { peer, message } => (peer, message),
            Framed::Client { client, .. } => panic!("for client {client}"),
        }
    }

    #[test]
    fn client_outputs_are_one_frame_each() {
        let answer = |answer| Output::Answer {
            client: 3,
            request: 9,
            answer,
        };
        let cases = [
            (
                Output::Acked {
                    client: 3,
                    through: 4,
                    matched: vec![QueueMatches {
                        from: 3,
                        through: 4,
                        queues: 2,
                    }],
                },
                ServerFrame::PublishAcked {
                    through: 4,
                    matched: vec![QueueMatches {
                        from: 3,
                        through: 4,
                        queues: 2,
                    }],
                },
            ),
            (
                Output::PublishFailed {
                    client: 3,
                    seq: 5,
                    code: ErrorCode::StoreUnavailable,
                    message: "disk".into(),
                },
                ServerFrame::PublishFailed {
                    seq: 5,
                    code: ErrorCode::StoreUnavailable,
                    message: "disk".into(),
                },
            ),
            (
                Output::Delivered {
                    client: 3,
                    consumer: 1,
                    tag: 2,
                    delivery_count: 3,
                    attributes: Default::default(),
                    payload: vec![7],
                },
                ServerFrame::Message(DurableMessage {
                    consumer: 1,
                    tag: 2,
                    delivery_count: 3,
                    attributes: Default::default(),
                    payload: vec![7],
                }),
            ),
            (answer(Answer::Done), ServerFrame::Done { request: 9 }),
            (
                answer(Answer::ProducerReady { next_seq: 8 }),
                ServerFrame::ProducerReady {
                    request: 9,
                    next_seq: 8,
                },
            ),
            (
                answer(Answer::Consuming { consumer: 6 }),
                ServerFrame::Consuming {
                    request: 9,
                    consumer: 6,
                },
            ),
            (
                answer(Answer::Fetched { count: 2 }),
                ServerFrame::Fetched {
                    request: 9,
                    count: 2,
                },
            ),
            (
                answer(Answer::Refused {
                    code: ErrorCode::QueueNotFound,
                    message: "no".into(),
                }),
                ServerFrame::Error {
                    request: Some(9),
                    code: ErrorCode::QueueNotFound,
                    message: "no".into(),
                },
            ),
        ];
        for (output, want) in cases {
            assert_eq!(client_frames(output, 1024), (3, vec![want]));
        }
    }

    #[test]
    fn a_long_listing_is_split_and_a_short_one_is_not() {
        let info = |i: usize| QueueInfo {
            name: format!("q{i}"),
            filter: format!("kind = '{}'", "k".repeat(200)),
            pending: 0,
            unacked: 0,
            dead_lettered: 0,
            consumers: 0,
            ack_wait_ms: 1000,
            max_deliveries: 3,
            owner: "alice".into(),
            bytes: 0,
            max_messages: 0,
            max_bytes: 0,
            max_age_ms: 0,
            discard: palio_protocol::Discard::Old,
        };
        let listing = |n| Output::Answer {
            client: 1,
            request: 2,
            answer: Answer::Queues((0..n).map(info).collect()),
        };
        let (_, short) = client_frames(listing(1), 1024);
        assert_eq!(
            short,
            vec![ServerFrame::Queues {
                request: 2,
                queues: vec![info(0)],
                more: false,
            }]
        );
        let (_, long) = client_frames(listing(20), 1024);
        assert!(long.len() > 1, "{} frame(s)", long.len());
        let (n, mut back) = (long.len(), Vec::new());
        for (i, f) in long.into_iter().enumerate() {
            let ServerFrame::Queues { queues, more, .. } = f else {
                panic!("{f:?}");
            };
            assert_eq!(more, i + 1 < n, "only the last frame ends the answer");
            back.extend(queues);
        }
        assert_eq!(back, (0..20).map(info).collect::<Vec<_>>());
    }

    #[test]
    fn peer_outputs_are_peer_messages() {
        let id = MessageId {
            origin: BrokerId(1),
            n: 2,
        };
        assert_eq!(
            peer_message(Output::StoreAck {
                peer: BrokerId(4),
                ids: vec![id],
            }),
            (BrokerId(4), PeerMessage::StoreAck { ids: vec![id] })
        );
        let decl = QueueDecl {
            home: BrokerId(1),
            name: "q".into(),
            filter: "TRUE".into(),
            generation: 1,
            removed: false,
        };
        assert_eq!(
            peer_message(Output::Decl {
                peer: BrokerId(4),
                decl: decl.clone(),
            }),
            (BrokerId(4), PeerMessage::QueueDecl(decl))
        );
        assert_eq!(
            peer_message(Output::Store {
                peer: BrokerId(4),
                id,
                dests: vec![BrokerId(5)],
                attributes: Default::default(),
                payload: vec![1],
            }),
            (
                BrokerId(4),
                PeerMessage::Store {
                    id,
                    dests: vec![BrokerId(5)],
                    attributes: Default::default(),
                    payload: vec![1],
                }
            )
        );
    }
}
