//! The link task: carries frames both ways until the link fails.
//!
//! A link has a control stream (the bidirectional stream of the hellos) and, when both brokers
//! have them, lane streams each way (`lanes`). The control stream carries every frame but
//! best-effort notifications: routing frames, store-and-forward, groups, requests and
//! replies, rejects (and notifications too on a link without lanes). Each stream has an
//! outbox and a writer on the sending side, and a reader on the receiving side; the lanes'
//! readers are paced each on its own, so a full outbox holds back only the lane whose traffic
//! filled it.

use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use palio_protocol::{ErrorCode, FrameError};
use palio_topology::{BrokerId, PeerFrame};

use super::Links;
use super::handshake::{Handshake, Reader, fail};
use super::{lanes, track_link};
use crate::groups::GroupCommand;
use crate::pacer::{BATCH, Pacer};
use crate::persist::PersistCommand;
use crate::router::{Command, Refusal};
use crate::wire::PeerMessage;
use crate::writer::{self, Role};

/// What a reader took from its stream: a message, its error, or its end (`None`).
pub(super) type Next = Option<Result<PeerMessage, FrameError>>;

/// The batch that starts with `first`: it and whatever `reader` has already received after it
/// that `fits`, up to [`BATCH`] frames; and the message read that did not fit, if any.
fn take_batch(
    first: PeerMessage,
    reader: &mut Reader,
    fits: impl Fn(&PeerMessage) -> bool,
) -> (Vec<PeerFrame>, Option<Next>) {
    let mut batch: Vec<PeerFrame> = first.into_frame().into_iter().collect();
    while batch.len() < BATCH {
        match reader.next().now_or_never() {
            Some(Some(Ok(m))) if fits(&m) => batch.extend(m.into_frame()),
            Some(other) => return (batch, Some(other)),
            None => break,
        }
    }
    (batch, None)
}

/// Where a batch read from a link came from: the peer, the link, and its lane (0 for the
/// control stream).
#[derive(Clone, Copy)]
pub(super) struct Origin {
    pub(super) peer: BrokerId,
    pub(super) link: u64,
    pub(super) lane: u8,
}

/// Once `pacer` lets this ingress go on (this is where the peer is slowed), hands the router
/// `first` and what arrived with it ([`take_batch`]) as one batch. Returns the message read
/// ahead; `Err` when the router is gone.
pub(super) async fn route_batch(
    shared: &Links,
    pacer: &std::sync::Arc<Pacer>,
    from: Origin,
    first: PeerMessage,
    reader: &mut Reader,
    fits: impl Fn(&PeerMessage) -> bool,
) -> Result<Option<Next>, ()> {
    let credit = pacer.ready().await;
    let (frames, ahead) = take_batch(first, reader, fits);
    let cmd = Command::PeerFrames {
        peer: from.peer,
        link: from.link,
        frames,
        credit,
        lane: from.lane,
    };
    shared.router.send(cmd).await.map_err(|_| ())?;
    Ok(ahead)
}

/// Why a link must close after its stream failed with `e` (`None`: it was closed normally).
pub(super) fn failed(e: &FrameError) -> Option<Refusal> {
    let code = e.code();
    (code != ErrorCode::Closed).then(|| (code, e.to_string()))
}

/// Carries frames both ways until the link fails; then tells the router, the persist task
/// and the groups task, once.
///
/// The writers drain the link's outboxes (the control outbox: routing frames from the router,
/// store-and-forward frames from the persist task, the groups task's; a lane's: notifications
/// from the router). Each reader hands what it reads to the router in paced batches (the
/// `pacer` module): while a queue a lane's traffic fills is full, that lane's reader stops
/// reading and QUIC flow control slows that lane of the peer. The link ends when any of its
/// streams ends or fails, or a writer stalls (it closes the connection, which ends the
/// readers).
pub(super) async fn run_link(shared: &Links, conn: &quinn::Connection, handshake: Handshake) {
    let Handshake {
        hello,
        link,
        reader,
        writer,
        frames,
        inbox,
        lanes,
    } = handshake;
    let peer = hello.id;
    track_link(shared, &hello, link, true);
    shared
        .metrics
        .open_connections
        .with_label_values(&["peer"])
        .inc();
    // The writer first: the router may already be filling the outbox, and only a running
    // writer drains it (or, stalled, closes it).
    let mut writers = vec![writer::spawn(
        inbox,
        writer.into_inner(),
        shared.limits.internal_frame_bytes(),
        shared.limits.peer_stall_timeout(),
        conn.clone(),
        shared.metrics.clone(),
        Role::Peer,
    )];
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
    let end = match lanes::start(shared, conn, lanes, &mut writers).await {
        Err(r) => Some(r),
        Ok(readers) => {
            let mut lane_readers: FuturesUnordered<_> = (0u8..)
                .zip(readers)
                .map(|(lane, r)| lanes::read(shared, peer, link, lane, r))
                .collect();
            let up = Up {
                persist: persist_up,
                groups: groups_up,
            };
            tokio::select! {
                end = read_control(shared, peer, link, reader, up) => end,
                // With no lanes this branch is disabled at once; the others go on.
                Some(end) = lane_readers.next() => end,
                () = shared.shutdown.cancelled() => None,
            }
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
    // The router and the persist task dropped their handles of the outboxes: the writers end.
    for w in writers {
        w.abort();
    }
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

/// Whether the persist and groups tasks took the link up. A frame for a task that did not, or
/// has stopped since, ends the link (the broker's `/healthz` fails then too): the peer routes
/// around this broker rather than have its frames ignored.
struct Up {
    persist: bool,
    groups: bool,
}

/// Reads the control stream of the link to `peer` until it ends; returns why the link must
/// close (`None`: it closed normally). Routing frames (and, on a link without lanes,
/// notifications) go to the router in paced batches; only notifications can make this reader
/// wait (see `router::outputs`), so on a link with lanes routing frames never wait on data.
async fn read_control(
    shared: &Links,
    peer: BrokerId,
    link: u64,
    mut reader: Reader,
    up: Up,
) -> Option<Refusal> {
    let pacer = Pacer::new(shared.metrics.ingress_waits.with_label_values(&["peer"]));
    let routed = |m: &PeerMessage| matches!(m, PeerMessage::Frame(_) | PeerMessage::Notify { .. });
    let mut ahead = None;
    loop {
        let msg = match ahead.take() {
            Some(m) => m,
            None => reader.next().await,
        };
        match msg {
            Some(Ok(m @ (PeerMessage::Frame(_) | PeerMessage::Notify { .. }))) => {
                let from = Origin {
                    peer,
                    link,
                    lane: 0,
                };
                match route_batch(shared, &pacer, from, m, &mut reader, routed).await {
                    Ok(next) => ahead = next,
                    Err(()) => return None,
                }
            }
            Some(Ok(
                m @ (PeerMessage::Store { .. }
                | PeerMessage::StoreAck { .. }
                | PeerMessage::QueueDecl(_)),
            )) => {
                if !up.persist
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
                    return None;
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
                    return None;
                }
            }
            Some(Ok(PeerMessage::Group(message))) => {
                if !up.groups
                    || shared
                        .groups
                        .send(GroupCommand::Peer { peer, message })
                        .await
                        .is_err()
                {
                    return None;
                }
            }
            Some(Ok(PeerMessage::Reject { code, message })) => {
                tracing::info!(%peer, %code, %message, "peer closed the link");
                return None;
            }
            Some(Ok(_)) => {
                return Some((
                    ErrorCode::ProtocolViolation,
                    "unexpected frame on a peer link".into(),
                ));
            }
            Some(Err(e)) => return failed(&e),
            None => return None,
        }
    }
}
