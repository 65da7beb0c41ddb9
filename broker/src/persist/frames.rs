//! The engine's domain outputs as wire frames: [`ServerFrame`]s on a client's control stream,
//! [`PeerMessage`]s on a peer link.
//!
//! The engine says what happened ([`Output`]); only here is it decided how that is said on the
//! wire, including splitting a queue listing into frames that fit the client's frame limit
//! (the `listing` module).

use palio_protocol::{DurableMessage, ServerFrame};
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
        Output::Acked { client: c, through } => client(c, ServerFrame::PublishAcked { through }),
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
    };
    one(frame)
}
