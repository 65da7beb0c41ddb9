//! The start of a client session: the control stream, the hello, the credentials, `Welcome`.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use palio_protocol::{ClientFrame, ErrorCode, FrameCodec, PROTOCOL_VERSION, ServerFrame, Welcome};
use tokio_util::codec::{FramedRead, FramedWrite};

use crate::context::Context;
use crate::outbox::Outbox;
use crate::router::Refusal;

/// How long a new connection may take to open its control stream and send its hello.
pub(super) const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// The control stream's reader, after the hello.
pub(super) type Reader = FramedRead<quinn::RecvStream, FrameCodec<ClientFrame>>;

/// Accepts the control stream, reads the hello and checks version and credentials. Returns
/// the reader, the stream's send side and the client's name; a refusal was sent to the client.
pub(super) async fn handshake(
    shared: &Context,
    conn: &quinn::Connection,
) -> Result<(Reader, quinn::SendStream, String), Refusal> {
    let max = shared.limits.max_frame_bytes;
    let (send, recv) = tokio::time::timeout(HELLO_TIMEOUT, conn.accept_bi())
        .await
        .map_err(|_| {
            (
                ErrorCode::ProtocolViolation,
                "no control stream opened".to_owned(),
            )
        })?
        .map_err(|e| (ErrorCode::Closed, e.to_string()))?;
    let mut reader = FramedRead::new(recv, FrameCodec::<ClientFrame>::new(max));
    let mut send = Some(send);
    let refuse = |send: &mut Option<quinn::SendStream>, code, message: String| {
        let stream = send.take();
        async move {
            if let Some(s) = stream {
                refuse(s, code, &message).await;
            }
            (code, message)
        }
    };
    let hello = tokio::time::timeout(HELLO_TIMEOUT, reader.next())
        .await
        .map_err(|_| (ErrorCode::ProtocolViolation, "no hello received".to_owned()))?;
    let (version, token, name) = match hello {
        Some(Ok(ClientFrame::Hello {
            version,
            token,
            name,
        })) => (version, token, name),
        Some(Ok(_)) => {
            return Err(refuse(
                &mut send,
                ErrorCode::ProtocolViolation,
                "the first frame must be a hello".into(),
            )
            .await);
        }
        Some(Err(e)) => return Err(refuse(&mut send, e.code(), e.to_string()).await),
        None => return Err((ErrorCode::Closed, "closed before hello".into())),
    };
    if version != PROTOCOL_VERSION {
        return Err(refuse(
            &mut send,
            ErrorCode::UnsupportedVersion,
            format!("protocol version {version} is not supported (this broker speaks {PROTOCOL_VERSION})"),
        )
        .await);
    }
    if let Err(why) = authenticate(shared, conn, token.as_deref()) {
        return Err(refuse(&mut send, ErrorCode::Unauthenticated, why.into()).await);
    }
    let send = send.ok_or((ErrorCode::Internal, "control stream lost".to_owned()))?;
    Ok((reader, send, name))
}

/// A client is let in with a certificate of the broker's CA, a configured token, or, where
/// allowed, neither.
fn authenticate(
    shared: &Context,
    conn: &quinn::Connection,
    token: Option<&str>,
) -> Result<(), &'static str> {
    let has_cert = conn
        .peer_identity()
        .and_then(|id| {
            id.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
                .ok()
        })
        .is_some_and(|certs| !certs.is_empty());
    let token_ok = token.is_some_and(|t| shared.auth.tokens.iter().any(|k| k == t));
    if has_cert || token_ok || shared.auth.allow_anonymous {
        return Ok(());
    }
    Err(if token.is_some() {
        "invalid token"
    } else {
        "no credentials: present a client certificate issued by the broker's CA, or a token"
    })
}

/// Queues the `Welcome` frame: the first on the control stream.
pub(super) fn welcome(shared: &Context, control: &Outbox<ServerFrame>) {
    let frame = ServerFrame::Welcome(Welcome {
        version: PROTOCOL_VERSION,
        broker: shared.name.clone(),
        broker_id: shared.id.0,
        max_frame: u32::try_from(shared.limits.max_frame_bytes).unwrap_or(u32::MAX),
    });
    control.push(frame, 128);
}

/// Tells the client why it is being refused (best effort) before the connection is closed.
async fn refuse(send: quinn::SendStream, code: ErrorCode, message: &str) {
    let mut w = FramedWrite::new(
        send,
        FrameCodec::<()>::new(palio_protocol::DEFAULT_MAX_FRAME),
    );
    let frame = ServerFrame::Error {
        request: None,
        code,
        message: message.to_owned(),
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), w.send(&frame)).await;
    let _ = w.get_mut().finish();
    // Give the frame a moment to leave before the connection is closed.
    tokio::time::sleep(Duration::from_millis(50)).await;
}
