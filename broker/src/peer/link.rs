//! The link task: carries frames both ways until the link fails.

use futures_util::{FutureExt, StreamExt};
use palio_protocol::ErrorCode;
use palio_topology::PeerFrame;

use super::Links;
use super::handshake::{Handshake, fail};
use super::track_link;
use crate::groups::GroupCommand;
use crate::pacer::{BATCH, Pacer};
use crate::persist::PersistCommand;
use crate::router::{Command, Refusal};
use crate::wire::PeerMessage;
use crate::writer::{self, Role};

/// Carries frames both ways until the link fails; then tells the router and the persist task.
///
/// The writer drains the link's outbox (routing frames from the router, store-and-forward
/// frames from the persist task). The reader hands routing frames to the router in paced
/// batches (the `pacer` module): while a queue the peer's traffic fills is full, the reader
/// stops reading and QUIC flow control slows the peer.
pub(super) async fn run_link(shared: &Links, conn: &quinn::Connection, handshake: Handshake) {
    let (hello, link, mut reader, writer, frames, inbox) = handshake;
    let peer = hello.id;
    track_link(shared, &hello, link, true);
    shared
        .metrics
        .open_connections
        .with_label_values(&["peer"])
        .inc();
    // The writer first: the router may already be filling the outbox, and only a running
    // writer drains it (or, stalled, closes it).
    let writer_task = writer::spawn(
        inbox,
        writer.into_inner(),
        shared.limits.internal_frame_bytes(),
        shared.limits.peer_stall_timeout(),
        conn.clone(),
        shared.metrics.clone(),
        Role::Peer,
    );
    let frames_for_groups = frames.clone();
    let persist_up = shared
        .persist
        .send(PersistCommand::PeerUp { peer, link, frames })
        .await
        .is_ok();
    let groups_up = shared
        .groups
        .send(GroupCommand::PeerUp {
            peer,
            link,
            frames: frames_for_groups,
        })
        .await
        .is_ok();
    let pacer = Pacer::new(shared.metrics.ingress_waits.with_label_values(&["peer"]));
    let mut ahead = None;
    let end: Option<Refusal> = loop {
        let msg = match ahead.take() {
            Some(m) => m,
            None => tokio::select! {
                m = reader.next() => m,
                () = shared.shutdown.cancelled() => break None,
            },
        };
        match msg {
            Some(Ok(m @ (PeerMessage::Frame(_) | PeerMessage::Notify { .. }))) => {
                // Wait for room before reading on: this is where the peer is slowed.
                let credit = pacer.ready().await;
                let mut batch: Vec<PeerFrame> = m.into_frame().into_iter().collect();
                while batch.len() < BATCH {
                    match reader.next().now_or_never() {
                        Some(Some(Ok(
                            m @ (PeerMessage::Frame(_) | PeerMessage::Notify { .. }),
                        ))) => {
                            batch.extend(m.into_frame());
                        }
                        Some(other) => {
                            ahead = Some(other);
                            break;
                        }
                        None => break,
                    }
                }
                let cmd = Command::PeerFrames {
                    peer,
                    link,
                    frames: batch,
                    credit,
                };
                if shared.router.send(cmd).await.is_err() {
                    break None;
                }
            }
            Some(Ok(
                m @ (PeerMessage::Store { .. }
                | PeerMessage::StoreAck { .. }
                | PeerMessage::QueueDecl(_)),
            )) => {
                if !persist_up
                    || shared
                        .persist
                        .send(PersistCommand::Peer {
                            peer,
                            link,
                            message: m,
                        })
                        .await
                        .is_err()
                {
                    break None;
                }
            }
            Some(Ok(
                m @ (PeerMessage::Request { .. }
                | PeerMessage::Reached { .. }
                | PeerMessage::Reply { .. }),
            )) => {
                let cmd = Command::PeerRequest {
                    peer,
                    link,
                    message: m,
                };
                if shared.router.send(cmd).await.is_err() {
                    break None;
                }
            }
            Some(Ok(PeerMessage::Group(message))) => {
                if groups_up
                    && shared
                        .groups
                        .send(GroupCommand::Peer { peer, message })
                        .await
                        .is_err()
                {
                    break None;
                }
            }
            Some(Ok(PeerMessage::Reject { code, message })) => {
                tracing::info!(%peer, %code, %message, "peer closed the link");
                break None;
            }
            Some(Ok(_)) => {
                break Some((
                    ErrorCode::ProtocolViolation,
                    "unexpected frame on a peer link".into(),
                ));
            }
            Some(Err(e)) => {
                let code = e.code();
                break (code != ErrorCode::Closed).then(|| (code, e.to_string()));
            }
            None => break None,
        }
    };
    let _ = shared.router.send(Command::PeerDown { peer, link }).await;
    let _ = shared
        .persist
        .send(PersistCommand::PeerDown { peer, link })
        .await;
    let _ = shared
        .groups
        .send(GroupCommand::PeerDown { peer, link })
        .await;
    // The router and the persist task dropped their handles of the outbox: the writer ends.
    writer_task.abort();
    track_link(shared, &hello, link, false);
    shared
        .metrics
        .open_connections
        .with_label_values(&["peer"])
        .dec();
    match end {
        Some(r) => fail(shared, conn, &r),
        None => conn.close(ErrorCode::Closed.code().into(), b"link closed"),
    }
}
