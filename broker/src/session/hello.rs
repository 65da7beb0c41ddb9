//! The start of a client session: the control stream, the hello, the credentials, `Welcome`.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use palio_protocol::{ClientFrame, ErrorCode, FrameCodec, PROTOCOL_VERSION, ServerFrame, Welcome};
use tokio::sync::watch;
use tokio_util::codec::{FramedRead, FramedWrite};

use crate::auth::gate::Access;
use crate::auth::{Credential, Principal};
use crate::context::Context;
use crate::outbox::Outbox;
use crate::router::Refusal;

/// How long a new connection may take to open its control stream and send its hello.
pub(super) const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest hello accepted, and so the most a client can make the broker buffer before it
/// has authenticated (a hello holds a version, a token and a name).
const MAX_HELLO_BYTES: usize = 16 << 10;

/// The control stream's reader, after the hello.
pub(super) type Reader = FramedRead<quinn::RecvStream, FrameCodec<ClientFrame>>;

/// A client that said hello and was let in.
pub(super) struct Hello {
    /// The control stream's reader, now accepting frames up to `limits.max_frame_bytes`.
    pub(super) reader: Reader,
    /// The control stream's send side.
    pub(super) send: quinn::SendStream,
    /// The name the client gave.
    pub(super) name: String,
    /// How it proved who it is (to authenticate it again after a reload).
    pub(super) credential: Credential,
    /// Who it is.
    pub(super) principal: Arc<Principal>,
    /// The access rules, as checked; changes when a reload replaces them.
    pub(super) access: watch::Receiver<Arc<Access>>,
}

/// Accepts the control stream, reads the hello and checks version and credentials; a refusal
/// was sent to the client.
pub(super) async fn handshake(
    shared: &Context,
    conn: &quinn::Connection,
) -> Result<Hello, Refusal> {
    let (send, recv) = tokio::time::timeout(HELLO_TIMEOUT, conn.accept_bi())
        .await
        .map_err(|_| {
            (
                ErrorCode::ProtocolViolation,
                "no control stream opened".to_owned(),
            )
        })?
        .map_err(|e| (ErrorCode::Closed, e.to_string()))?;
    let mut reader = FramedRead::new(recv, FrameCodec::<ClientFrame>::new(MAX_HELLO_BYTES));
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
    let credential = Credential::of(token.as_deref(), certificate_names(conn));
    // Watched from before the check: a reload that lands after it is seen by the session.
    let mut access = shared.gate.watch();
    let rules = access.borrow_and_update().clone();
    let principal = match rules.auth.authenticate(&credential) {
        Ok(p) => p,
        Err(denial) => {
            shared
                .metrics
                .auth_failures
                .with_label_values(&[denial.reason()])
                .inc();
            tracing::info!(remote = %conn.remote_address(), reason = denial.reason(), "client refused at the hello");
            return Err(refuse(
                &mut send,
                ErrorCode::Unauthenticated,
                denial.message().into(),
            )
            .await);
        }
    };
    // Authenticated: full frames, and the full connection window (see `PRE_AUTH_WINDOW`).
    reader.decoder_mut().set_max(shared.limits.max_frame_bytes);
    conn.set_receive_window(quinn::VarInt::from_u32(
        palio_protocol::tls::CONNECTION_WINDOW,
    ));
    let send = send.ok_or((ErrorCode::Internal, "control stream lost".to_owned()))?;
    Ok(Hello {
        reader,
        send,
        name,
        credential,
        principal,
        access,
    })
}

/// The names of the client's certificate (subject CN first, then SANs), if it presented one;
/// TLS has verified it against the broker's CA already.
fn certificate_names(conn: &quinn::Connection) -> Option<Vec<String>> {
    let certs = conn
        .peer_identity()?
        .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
        .ok()?;
    let leaf = certs.first()?;
    // TLS has parsed it already; one that does not parse here names nobody (refused).
    Some(
        palio_protocol::tls::CertNames::of(leaf)
            .map(|n| n.in_order().map(str::to_owned).collect())
            .unwrap_or_default(),
    )
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
