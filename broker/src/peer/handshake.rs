//! The start of a peer link: the certificate checks, the hellos, and registering the link
//! (its control outbox and the outboxes of the lanes both hellos agree on).

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use palio_protocol::{ErrorCode, FrameCodec, PROTOCOL_VERSION};
use tokio_util::codec::{FramedRead, FramedWrite};

use super::Links;
use super::identity::{certified_brokers, check_claim, presented_chain};
use super::link::run_link;
use crate::context::broker_id;
use crate::outbox::{Inbox, Outbox};
use crate::router::{Command, Refusal};
use crate::wire::{LANES, PeerHello, PeerMessage, PeerOut, agreed_lanes, frame_limits_differ};

pub(super) const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) type Reader = FramedRead<quinn::RecvStream, FrameCodec<PeerMessage>>;
pub(super) type Writer = FramedWrite<quinn::SendStream, FrameCodec<()>>;

fn our_hello(shared: &Links) -> PeerMessage {
    PeerMessage::Hello(PeerHello {
        version: PROTOCOL_VERSION,
        name: shared.name.clone(),
        id: shared.id,
        incarnation: shared.incarnation,
        lanes: LANES,
        max_frame: u64::try_from(shared.limits.max_frame_bytes).unwrap_or(u64::MAX),
    })
}

/// Checks a peer's hello against ours and against the brokers its certificate names
/// (`certified`).
fn check_hello(shared: &Links, certified: &[String], hello: &PeerHello) -> Result<(), Refusal> {
    if hello.version != PROTOCOL_VERSION {
        return Err((
            ErrorCode::UnsupportedVersion,
            format!(
                "peer protocol version {} (ours {PROTOCOL_VERSION})",
                hello.version
            ),
        ));
    }
    check_claim(certified, &hello.name)?;
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
    if let Some(message) = frame_limits_differ(shared.limits.max_frame_bytes, hello.max_frame) {
        // Not refused: that would cut the network in two during a rolling change of the limit.
        tracing::warn!(peer = %hello.name, "{message}");
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

/// Lets the peer open our share of lane streams toward us (the server's transport allows no
/// unidirectional streams until the peer has authenticated).
fn allow_lanes(conn: &quinn::Connection) {
    conn.set_max_concurrent_uni_streams(quinn::VarInt::from(u32::from(LANES)));
}

/// A registered link: its number, its control outbox and inbox, the inboxes of its lanes.
type Registered = (u64, Outbox<PeerOut>, Inbox<PeerOut>, Vec<Inbox<PeerOut>>);

async fn register(
    shared: &Links,
    conn: &quinn::Connection,
    hello: &PeerHello,
) -> Result<Registered, Refusal> {
    let link = shared.next_id();
    let (frames, inbox) = Outbox::new(shared.limits.peer_capacity());
    let n = agreed_lanes(LANES, hello.lanes);
    let (lanes, lane_inboxes): (Vec<_>, Vec<_>) = (0..n)
        .map(|_| Outbox::new(shared.limits.lane_capacity(n)))
        .unzip();
    shared
        .router
        .call(|reply| Command::PeerUp {
            peer: hello.id,
            name: hello.name.clone(),
            link,
            frames: frames.clone(),
            lanes,
            connection: conn.clone(),
            reply,
        })
        .await??;
    Ok((link, frames, inbox, lane_inboxes))
}

pub(super) fn fail(shared: &Links, conn: &quinn::Connection, (code, message): &Refusal) {
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
pub(crate) async fn serve_accepted(shared: Arc<Links>, conn: quinn::Connection) {
    shared
        .metrics
        .connections
        .with_label_values(&["peer"])
        .inc();
    let chain = presented_chain(&conn);
    // A peer must hold a certificate we would accept from it as a server (not merely a client
    // certificate from the same CA), naming the broker its hello will claim to be.
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
    let certified = match certified_brokers(&chain) {
        Ok(c) => c,
        Err(r) => return fail(&shared, &conn, &r),
    };
    // A broker certificate of the network: the peer is authenticated, its link gets the
    // full connection window (see `PRE_AUTH_WINDOW`).
    conn.set_receive_window(quinn::VarInt::from_u32(
        palio_protocol::tls::CONNECTION_WINDOW,
    ));
    allow_lanes(&conn);
    match accept_handshake(&shared, &conn, &certified).await {
        Ok(h) => run_link(&shared, &conn, h).await,
        Err(r) => fail(&shared, &conn, &r),
    }
}

/// A link after the hellos, registered with the router.
pub(super) struct Handshake {
    /// The peer's hello.
    pub(super) hello: PeerHello,
    /// The link's number.
    pub(super) link: u64,
    /// The control stream's two sides.
    pub(super) reader: Reader,
    pub(super) writer: Writer,
    /// The control outbox (for the persist and groups tasks) and the inbox its writer drains.
    pub(super) frames: Outbox<PeerOut>,
    pub(super) inbox: Inbox<PeerOut>,
    /// The inboxes of the link's lanes, in lane order (the router has their outboxes).
    pub(super) lanes: Vec<Inbox<PeerOut>>,
}

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

async fn accept_handshake(
    shared: &Links,
    conn: &quinn::Connection,
    certified: &[String],
) -> Result<Handshake, Refusal> {
    let max = shared.limits.internal_frame_bytes();
    let (send, recv) = tokio::time::timeout(HELLO_TIMEOUT, conn.accept_bi())
        .await
        .map_err(|_| (ErrorCode::ProtocolViolation, "no stream opened".to_owned()))?
        .map_err(|e| (ErrorCode::Closed, e.to_string()))?;
    let (mut reader, mut writer) = framed(send, recv, max);
    let hello = match read_hello(&mut reader).await {
        Ok(h) => h,
        Err((code, msg)) => {
            refuse(&mut writer, code, &msg).await;
            return Err((code, msg));
        }
    };
    let mut h = admit(shared, conn, certified, hello, reader, writer).await?;
    if let Err(e) = h.writer.send(&our_hello(shared)).await {
        // Registered but never run: the router must not keep it as up.
        let _ = shared
            .router
            .send(Command::PeerDown {
                peer: h.hello.id,
                link: h.link,
            })
            .await;
        return Err((ErrorCode::Closed, e.to_string()));
    }
    Ok(h)
}

/// The control stream's two sides, framed with frames of at most `max` bytes.
fn framed(send: quinn::SendStream, recv: quinn::RecvStream, max: usize) -> (Reader, Writer) {
    (
        FramedRead::new(recv, FrameCodec::new(max)),
        FramedWrite::new(send, FrameCodec::new(max)),
    )
}

/// Checks the peer's `hello` and registers its link; a peer that fails either is told why on
/// the control stream.
async fn admit(
    shared: &Links,
    conn: &quinn::Connection,
    certified: &[String],
    hello: PeerHello,
    reader: Reader,
    mut writer: Writer,
) -> Result<Handshake, Refusal> {
    let registered = match check_hello(shared, certified, &hello) {
        Ok(()) => register(shared, conn, &hello).await,
        Err(r) => Err(r),
    };
    match registered {
        Ok((link, frames, inbox, lanes)) => Ok(Handshake {
            hello,
            link,
            reader,
            writer,
            frames,
            inbox,
            lanes,
        }),
        Err((code, msg)) => {
            refuse(&mut writer, code, &msg).await;
            Err((code, msg))
        }
    }
}

pub(super) async fn dial_handshake(
    shared: &Links,
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
    allow_lanes(&conn);
    let max = shared.limits.internal_frame_bytes();
    let r: Result<Handshake, Refusal> = async {
        // rustls checked the chain and the server name; the broker name is checked here.
        let certified = certified_brokers(&presented_chain(&conn))?;
        let (send, recv) = conn
            .open_bi()
            .await
            .map_err(|e| (ErrorCode::Closed, e.to_string()))?;
        let (mut reader, mut writer) = framed(send, recv, max);
        writer
            .send(&our_hello(shared))
            .await
            .map_err(|e| (ErrorCode::Closed, e.to_string()))?;
        let hello = read_hello(&mut reader).await?;
        admit(shared, &conn, &certified, hello, reader, writer).await
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
