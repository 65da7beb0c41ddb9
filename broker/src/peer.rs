//! Peer links: accepting and dialing other brokers, the hello exchange, and the link task.
//!
//! A link is one QUIC connection (mutual TLS, ALPN `palio-peer/1`) with one bidirectional
//! stream opened by the dialer. Each side sends a [`PeerHello`]; a broker id equal to ours, or
//! one already used by a connected broker of another name, is refused with `id_collision`.
//! Then the router is told the link is up, and the link task carries routing frames: received
//! ones to the router, in order; queued ones from the router to the stream. When the stream or
//! connection fails, the router is told the link is down; a dialer reconnects with exponential
//! backoff (attempts start 100 ms apart, doubling to 5 s; an attempt that timed out has already
//! waited its share, so a dead peer is retried back to back, once per handshake timeout, and a
//! restarted one is found within seconds). If two brokers dial each other, the newer link
//! replaces the older one and the dialer whose link was replaced waits while a link to that
//! peer is up.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{FutureExt, SinkExt, StreamExt};
use palio_protocol::{ErrorCode, FrameCodec, PROTOCOL_VERSION};
use palio_topology::{BrokerId, PeerFrame};
use serde_json::{Value as Json, json};
use tokio_util::codec::{FramedRead, FramedWrite};

use crate::outbox::{Inbox, Outbox};
use crate::pacer::{BATCH, Pacer};
use crate::peer_wire::PeerOut;
use crate::persist::PersistCommand;
use crate::router::{Command, Refusal};
use crate::server::{Shared, broker_id};
use crate::wire::{PeerHello, PeerMessage};
use crate::writer::{self, Role};

const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

type Reader = FramedRead<quinn::RecvStream, FrameCodec<PeerMessage>>;
type Writer = FramedWrite<quinn::SendStream, FrameCodec<()>>;

/// The state of one configured peer address, for `/routes`.
#[derive(Debug, Clone, Default)]
pub(crate) struct DialState {
    state: &'static str,
    peer: Option<(BrokerId, String)>,
    last_error: Option<String>,
    attempts: u64,
}

/// Configured peer addresses and their state.
pub(crate) type DialStates = Arc<Mutex<BTreeMap<String, DialState>>>;

/// Live links: peer → link number (to tell whether a dialer's peer is already linked).
pub(crate) type LiveLinks = Arc<Mutex<HashMap<BrokerId, u64>>>;

pub(crate) fn dial_snapshot(states: &DialStates) -> Json {
    let states = states.lock().map(|s| s.clone()).unwrap_or_default();
    Json::Array(
        states
            .into_iter()
            .map(|(addr, s)| {
                json!({
                    "address": addr,
                    "state": s.state,
                    "peer": s.peer.as_ref().map(|(id, name)| json!({"id": id.0, "name": name})),
                    "attempts": s.attempts,
                    "last_error": s.last_error,
                })
            })
            .collect(),
    )
}

fn set_state(shared: &Shared, addr: &str, f: impl FnOnce(&mut DialState)) {
    if let Ok(mut s) = shared.dial_states.lock() {
        f(s.entry(addr.to_owned()).or_default());
    }
}

/// Records in `live_links` that `link` to `hello`'s broker is up (`up`) or has ended, and
/// updates `palio_peer_up` and `palio_peer_link_up` from the result. Both happen under the
/// `live_links` lock, so that an old link ending after its replacement started cannot mark
/// the peer down: the gauges always say whether *some* link to the peer is up.
fn track_link(shared: &Shared, hello: &PeerHello, link: u64, up: bool) {
    let Ok(mut live) = shared.live_links.lock() else {
        return;
    };
    if up {
        live.insert(hello.id, link);
    } else if live.get(&hello.id) == Some(&link) {
        live.remove(&hello.id);
    }
    let value = i64::from(live.contains_key(&hello.id));
    let m = &shared.metrics;
    m.peer_up.with_label_values(&[&hello.name]).set(value);
    // Configured addresses known to lead to this broker (lock order: live_links, dial_states).
    if let Ok(states) = shared.dial_states.lock() {
        for (addr, state) in states.iter() {
            if state.peer.as_ref().is_some_and(|(id, _)| *id == hello.id) {
                m.peer_link_up.with_label_values(&[addr]).set(value);
            }
        }
    }
}

fn our_hello(shared: &Shared) -> PeerMessage {
    PeerMessage::Hello(PeerHello {
        version: PROTOCOL_VERSION,
        name: shared.name.clone(),
        id: shared.id,
        incarnation: shared.incarnation,
    })
}

/// Checks a peer's hello against ours.
fn check_hello(shared: &Shared, hello: &PeerHello) -> Result<(), Refusal> {
    if hello.version != PROTOCOL_VERSION {
        return Err((
            ErrorCode::UnsupportedVersion,
            format!(
                "peer protocol version {} (ours {PROTOCOL_VERSION})",
                hello.version
            ),
        ));
    }
    if hello.id != broker_id(&hello.name) {
        return Err((
            ErrorCode::ProtocolViolation,
            format!(
                "broker id {} does not belong to name {:?}",
                hello.id, hello.name
            ),
        ));
    }
    if hello.id == shared.id {
        let msg = if hello.name == shared.name {
            format!("connected to itself (broker {:?})", shared.name)
        } else {
            format!(
                "broker ids collide: {:?} and {:?} both hash to {}; rename one",
                hello.name, shared.name, hello.id
            )
        };
        return Err((ErrorCode::IdCollision, msg));
    }
    Ok(())
}

async fn refuse(writer: &mut Writer, code: ErrorCode, message: &str) {
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        writer.send(&PeerMessage::Reject {
            code,
            message: message.to_owned(),
        }),
    )
    .await;
    let _ = writer.get_mut().finish();
    tokio::time::sleep(Duration::from_millis(50)).await;
}

async fn register(
    shared: &Shared,
    conn: &quinn::Connection,
    hello: &PeerHello,
) -> Result<(u64, Outbox<PeerOut>, Inbox<PeerOut>), Refusal> {
    let link = shared.next_id();
    let (frames, inbox) = Outbox::new(shared.limits.peer_capacity());
    shared
        .router
        .call(|reply| Command::PeerUp {
            peer: hello.id,
            name: hello.name.clone(),
            link,
            frames: frames.clone(),
            connection: conn.clone(),
            reply,
        })
        .await??;
    Ok((link, frames, inbox))
}

fn fail(shared: &Shared, conn: &quinn::Connection, (code, message): &Refusal) {
    if *code != ErrorCode::Closed {
        tracing::warn!(remote = %conn.remote_address(), %code, %message, "peer link refused");
        shared
            .metrics
            .connection_errors
            .with_label_values(&[code.as_str()])
            .inc();
    }
    conn.close(code.code().into(), message.as_bytes());
}

/// Serves a connection accepted with the peer ALPN.
pub(crate) async fn serve_accepted(shared: Arc<Shared>, conn: quinn::Connection) {
    shared
        .metrics
        .connections
        .with_label_values(&["peer"])
        .inc();
    let chain = conn
        .peer_identity()
        .and_then(|id| {
            id.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
                .ok()
        })
        .map(|c| *c)
        .unwrap_or_default();
    // A peer must hold a certificate we would accept from it as a server (not merely a client
    // certificate from the same CA).
    if let Err(e) =
        palio_protocol::tls::verify_as_server(&shared.peer_roots, &chain, &shared.peer_server_name)
    {
        fail(
            &shared,
            &conn,
            &(
                ErrorCode::Unauthenticated,
                format!("peer brokers must present a broker certificate: {e}"),
            ),
        );
        return;
    }
    match accept_handshake(&shared, &conn).await {
        Ok(h) => run_link(&shared, &conn, h).await,
        Err(r) => fail(&shared, &conn, &r),
    }
}

/// A link after the hellos: the peer's hello, the link number, the stream's two sides, and
/// the link's outbox with the inbox its writer drains.
type Handshake = (
    PeerHello,
    u64,
    Reader,
    Writer,
    Outbox<PeerOut>,
    Inbox<PeerOut>,
);

async fn read_hello(reader: &mut Reader) -> Result<PeerHello, Refusal> {
    match tokio::time::timeout(HELLO_TIMEOUT, reader.next()).await {
        Err(_) => Err((ErrorCode::ProtocolViolation, "no hello received".into())),
        Ok(Some(Ok(PeerMessage::Hello(h)))) => Ok(h),
        Ok(Some(Ok(PeerMessage::Reject { code, message }))) => {
            Err((code, format!("refused by peer: {message}")))
        }
        Ok(Some(Ok(_))) => Err((ErrorCode::ProtocolViolation, "expected a hello".into())),
        Ok(Some(Err(e))) => Err((e.code(), e.to_string())),
        Ok(None) => Err((ErrorCode::Closed, "closed during the hello".into())),
    }
}

async fn accept_handshake(shared: &Shared, conn: &quinn::Connection) -> Result<Handshake, Refusal> {
    let max = shared.limits.internal_frame_bytes();
    let (send, recv) = tokio::time::timeout(HELLO_TIMEOUT, conn.accept_bi())
        .await
        .map_err(|_| (ErrorCode::ProtocolViolation, "no stream opened".to_owned()))?
        .map_err(|e| (ErrorCode::Closed, e.to_string()))?;
    let mut reader = FramedRead::new(recv, FrameCodec::new(max));
    let mut writer: Writer = FramedWrite::new(send, FrameCodec::new(max));
    let hello = match read_hello(&mut reader).await {
        Ok(h) => h,
        Err((code, msg)) => {
            refuse(&mut writer, code, &msg).await;
            return Err((code, msg));
        }
    };
    let registered = match check_hello(shared, &hello) {
        Ok(()) => register(shared, conn, &hello).await,
        Err(r) => Err(r),
    };
    let (link, frames, inbox) = match registered {
        Ok(x) => x,
        Err((code, msg)) => {
            refuse(&mut writer, code, &msg).await;
            return Err((code, msg));
        }
    };
    if let Err(e) = writer.send(&our_hello(shared)).await {
        // Registered but never run: the router must not keep it as up.
        let _ = shared
            .router
            .send(Command::PeerDown {
                peer: hello.id,
                link,
            })
            .await;
        return Err((ErrorCode::Closed, e.to_string()));
    }
    Ok((hello, link, reader, writer, frames, inbox))
}

async fn dial_handshake(
    shared: &Shared,
    addr: &str,
) -> Result<(quinn::Connection, Handshake), String> {
    let target = tokio::net::lookup_host(addr)
        .await
        .map_err(|e| format!("resolving {addr}: {e}"))?
        .next()
        .ok_or_else(|| format!("{addr} resolves to no address"))?;
    let connecting = shared
        .endpoint
        .connect(target, &shared.peer_server_name)
        .map_err(|e| e.to_string())?;
    let conn = tokio::time::timeout(HELLO_TIMEOUT, connecting)
        .await
        .map_err(|_| "connection timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    let max = shared.limits.internal_frame_bytes();
    let r: Result<Handshake, Refusal> = async {
        let (send, recv) = conn
            .open_bi()
            .await
            .map_err(|e| (ErrorCode::Closed, e.to_string()))?;
        let mut reader = FramedRead::new(recv, FrameCodec::new(max));
        let mut writer: Writer = FramedWrite::new(send, FrameCodec::new(max));
        writer
            .send(&our_hello(shared))
            .await
            .map_err(|e| (ErrorCode::Closed, e.to_string()))?;
        let hello = read_hello(&mut reader).await?;
        let registered = match check_hello(shared, &hello) {
            Ok(()) => register(shared, &conn, &hello).await,
            Err(r) => Err(r),
        };
        match registered {
            Ok((link, frames, inbox)) => Ok((hello, link, reader, writer, frames, inbox)),
            Err((code, msg)) => {
                refuse(&mut writer, code, &msg).await;
                Err((code, msg))
            }
        }
    }
    .await;
    match r {
        Ok(h) => Ok((conn, h)),
        Err(r) => {
            let msg = format!("{}: {}", r.0, r.1);
            fail(shared, &conn, &r);
            Err(msg)
        }
    }
}

/// Keeps a link to `addr` up until shutdown: dial, run, and redial with backoff.
pub(crate) async fn dial_loop(shared: Arc<Shared>, addr: String) {
    let gauge = shared.metrics.peer_link_up.with_label_values(&[&addr]);
    gauge.set(0);
    set_state(&shared, &addr, |s| s.state = "connecting");
    let mut backoff = BACKOFF_MIN;
    let mut known: Option<BrokerId> = None;
    loop {
        if shared.shutdown.is_cancelled() {
            return;
        }
        let attempt = Instant::now();
        let linked_elsewhere = known.is_some_and(|id| {
            shared
                .live_links
                .lock()
                .map(|l| l.contains_key(&id))
                .unwrap_or(false)
        });
        if linked_elsewhere {
            set_state(&shared, &addr, |s| s.state = "linked by peer");
            backoff = Duration::from_secs(1);
        } else {
            set_state(&shared, &addr, |s| {
                s.state = "connecting";
                s.attempts += 1;
            });
            match dial_handshake(&shared, &addr).await {
                Ok((conn, h)) => {
                    let hello = h.0.clone();
                    known = Some(hello.id);
                    set_state(&shared, &addr, |s| {
                        s.state = "up";
                        s.peer = Some((hello.id, hello.name.clone()));
                        s.last_error = None;
                    });
                    // `run_link` sets the gauge (through `track_link`), both ways.
                    let started = Instant::now();
                    run_link(&shared, &conn, h).await;
                    set_state(&shared, &addr, |s| s.state = "down");
                    if started.elapsed() > Duration::from_secs(5) {
                        backoff = BACKOFF_MIN;
                    }
                }
                Err(e) => {
                    tracing::debug!(peer = %addr, error = %e, "peer dial failed");
                    shared
                        .metrics
                        .peer_dial_failures
                        .with_label_values(&[&addr])
                        .inc();
                    set_state(&shared, &addr, |s| {
                        s.state = "failed";
                        s.last_error = Some(e);
                    });
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(backoff.saturating_sub(attempt.elapsed())) => {}
            () = shared.shutdown.cancelled() => return,
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Carries frames both ways until the link fails; then tells the router and the persist task.
///
/// The writer drains the link's outbox (routing frames from the router, store-and-forward
/// frames from the persist task). The reader hands routing frames to the router in paced
/// batches (the `pacer` module): while a queue the peer's traffic fills is full, the reader
/// stops reading and QUIC flow control slows the peer.
async fn run_link(shared: &Shared, conn: &quinn::Connection, handshake: Handshake) {
    let (hello, link, mut reader, writer, frames, inbox) = handshake;
    let peer = hello.id;
    track_link(shared, &hello, link, true);
    shared
        .metrics
        .open_connections
        .with_label_values(&["peer"])
        .inc();
    let persist_up = shared
        .persist
        .send(PersistCommand::PeerUp { peer, link, frames })
        .await
        .is_ok();
    let writer_task = writer::spawn(
        inbox,
        writer.into_inner(),
        shared.limits.internal_frame_bytes(),
        shared.limits.stall_timeout(),
        conn.clone(),
        shared.metrics.clone(),
        Role::Peer,
    );
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
