//! A link's lanes: the streams best-effort notifications travel on, one set each way.
//!
//! Once the hellos agree on `n` lanes (`wire::agreed_lanes`), each side opens `n`
//! unidirectional streams toward the other, writes on each its lane number (one byte) before
//! any frame, and drains lane k's outbox onto stream k (the generic `writer`). It accepts the
//! peer's `n` streams and reads each as an ingress of its own, with its own `Pacer`: a lane
//! whose batches filled an outbox stops reading until that outbox drains, and QUIC flow
//! control, which is per stream, slows that lane of the sender and no other. A lane carries
//! notifications only ([`PeerMessage::Notify`]); anything else on it breaks the protocol.

use futures_util::StreamExt;
use palio_protocol::{ErrorCode, FrameCodec};
use palio_topology::BrokerId;
use tokio::task::JoinHandle;
use tokio_util::codec::FramedRead;

use super::Links;
use super::handshake::{HELLO_TIMEOUT, Reader};
use super::link::{Origin, failed, route_batch};
use crate::outbox::Inbox;
use crate::pacer::Pacer;
use crate::router::Refusal;
use crate::wire::{PeerMessage, PeerOut};
use crate::writer::{self, Role};

fn closed(e: impl std::fmt::Display) -> Refusal {
    (ErrorCode::Closed, e.to_string())
}

/// Opens our lane streams, one per inbox, and spawns their writers into `writers` (the caller
/// aborts them when the link ends, whatever happens here); then accepts the peer's as many
/// lane streams, returned in lane order. Bounded by the hello timeout.
pub(super) async fn start(
    shared: &Links,
    conn: &quinn::Connection,
    inboxes: Vec<Inbox<PeerOut>>,
    writers: &mut Vec<JoinHandle<()>>,
) -> Result<Vec<Reader>, Refusal> {
    let n = inboxes.len();
    let setup = async {
        for (lane, inbox) in (0u8..).zip(inboxes) {
            let mut send = conn.open_uni().await.map_err(closed)?;
            send.write_all(&[lane]).await.map_err(closed)?;
            writers.push(writer::spawn(
                inbox,
                send,
                shared.limits.internal_frame_bytes(),
                shared.limits.peer_stall_timeout(),
                conn.clone(),
                shared.metrics.clone(),
                Role::Peer,
            ));
        }
        accept(conn, n, shared.limits.internal_frame_bytes()).await
    };
    tokio::time::timeout(HELLO_TIMEOUT, setup)
        .await
        .unwrap_or_else(|_| {
            Err((
                ErrorCode::ProtocolViolation,
                format!("the peer did not open its {n} lane streams"),
            ))
        })
}

/// Accepts the peer's `n` lane streams, each named by its first byte.
async fn accept(conn: &quinn::Connection, n: usize, max: usize) -> Result<Vec<Reader>, Refusal> {
    let mut lanes: Vec<Option<Reader>> = (0..n).map(|_| None).collect();
    for _ in 0..n {
        let mut recv = conn.accept_uni().await.map_err(closed)?;
        let mut lane = [0u8];
        recv.read_exact(&mut lane).await.map_err(closed)?;
        let slot = lanes
            .get_mut(usize::from(lane[0]))
            .filter(|s| s.is_none())
            .ok_or_else(|| {
                (
                    ErrorCode::ProtocolViolation,
                    format!("lane stream {} of {n}: unknown or repeated", lane[0]),
                )
            })?;
        *slot = Some(FramedRead::new(recv, FrameCodec::new(max)));
    }
    Ok(lanes.into_iter().flatten().collect())
}

/// Reads lane `lane` of the link to `peer` until it ends, handing its notifications to the
/// router in paced batches; returns why the link must close (`None`: it closed normally).
pub(super) async fn read(
    shared: &Links,
    peer: BrokerId,
    link: u64,
    lane: u8,
    mut reader: Reader,
) -> Option<Refusal> {
    let pacer = Pacer::new(shared.metrics.ingress_waits.with_label_values(&["peer"]));
    let notify = |m: &PeerMessage| matches!(m, PeerMessage::Notify { .. });
    let mut ahead = None;
    loop {
        let msg = match ahead.take() {
            Some(m) => m,
            None => reader.next().await,
        };
        match msg {
            Some(Ok(m @ PeerMessage::Notify { .. })) => {
                let from = Origin { peer, link, lane };
                match route_batch(shared, &pacer, from, m, &mut reader, notify).await {
                    Ok(next) => ahead = next,
                    Err(()) => return None,
                }
            }
            Some(Ok(_)) => {
                return Some((
                    ErrorCode::ProtocolViolation,
                    format!("a frame other than a notification on lane {lane}"),
                ));
            }
            Some(Err(e)) => return failed(&e),
            None => return None,
        }
    }
}
