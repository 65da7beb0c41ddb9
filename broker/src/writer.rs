//! The one writer: drains an [`Inbox`] onto a QUIC send stream.
//!
//! Every stream the broker writes (a client's control and delivery streams, a peer link) is
//! written by [`run`]. It takes whatever is queued, encodes it into one buffer of up to
//! [`BATCH_BYTES`], and writes the buffer with one call; what was written is released from the
//! outbox, which reopens its gate for the ingresses waiting on it.
//!
//! A write that makes no progress for the stall timeout means the receiver has stopped
//! reading (QUIC flow control holds the stream): the writer gives up with
//! [`WriteEnd::Stalled`]. The caller closes the connection or link with an error code and
//! counts it; an outbox whose writer stopped is closed, so nobody waits on it any more.

use std::time::Duration;

use bytes::BytesMut;
use palio_protocol::{ErrorCode, FrameError, ServerFrame};

use crate::metrics::Metrics;
use crate::outbox::Inbox;

/// Bytes encoded before a batch is written even if more is queued.
pub(crate) const BATCH_BYTES: usize = 64 * 1024;

/// Something a writer can put on a stream.
pub(crate) trait WireFrame: Send + 'static {
    /// Appends the frame, length prefix included, to `dst`; at most `max` bytes of body.
    fn encode(&self, dst: &mut BytesMut, max: usize) -> Result<(), FrameError>;
}

impl WireFrame for ServerFrame {
    fn encode(&self, dst: &mut BytesMut, max: usize) -> Result<(), FrameError> {
        palio_protocol::encode_into(self, dst, max)
    }
}

/// Why a writer stopped.
#[derive(Debug)]
pub(crate) enum WriteEnd {
    /// Every producer is gone; the stream was finished.
    Done,
    /// The receiver read nothing for the stall timeout.
    Stalled(Duration),
    /// The stream or connection failed.
    Failed(String),
    /// A frame could not be encoded (larger than the limit even with headroom).
    Unencodable(String),
}

impl WriteEnd {
    /// The error code to close the connection with, if this end is an error.
    pub(crate) fn code(&self) -> Option<ErrorCode> {
        match self {
            WriteEnd::Done | WriteEnd::Failed(_) => None,
            WriteEnd::Stalled(_) => Some(ErrorCode::SlowConsumer),
            WriteEnd::Unencodable(_) => Some(ErrorCode::Internal),
        }
    }

    /// The metric label of this end.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            WriteEnd::Done => "done",
            WriteEnd::Stalled(_) => "stalled",
            WriteEnd::Failed(_) => "stream_failed",
            WriteEnd::Unencodable(_) => "unencodable",
        }
    }
}

impl std::fmt::Display for WriteEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteEnd::Done => f.write_str("finished"),
            WriteEnd::Stalled(t) => write!(f, "receiver read nothing for {} ms", t.as_millis()),
            WriteEnd::Failed(e) => write!(f, "stream failed: {e}"),
            WriteEnd::Unencodable(e) => write!(f, "frame could not be encoded: {e}"),
        }
    }
}

/// Writes everything `inbox` receives to `stream` until every producer is gone or the stream
/// fails; see the module docs. `max` is the largest frame body written.
pub(crate) async fn run<T: WireFrame>(
    mut inbox: Inbox<T>,
    mut stream: quinn::SendStream,
    max: usize,
    stall: Duration,
) -> WriteEnd {
    let mut buf = BytesMut::with_capacity(BATCH_BYTES);
    while let Some(first) = inbox.recv().await {
        let (mut frames, mut bytes) = (0usize, 0usize);
        let mut next = Some(first);
        while let Some((item, size)) = next {
            if let Err(e) = item.encode(&mut buf, max) {
                return WriteEnd::Unencodable(e.to_string());
            }
            frames += 1;
            bytes += size;
            if buf.len() >= BATCH_BYTES {
                break;
            }
            next = inbox.try_recv();
        }
        // Stalled means no byte taken for `stall`, not a whole batch (which may be larger than
        // the stream window) taking that long.
        let mut written = 0;
        while written < buf.len() {
            match tokio::time::timeout(stall, stream.write(&buf[written..])).await {
                Err(_) => return WriteEnd::Stalled(stall),
                Ok(Err(e)) => return WriteEnd::Failed(e.to_string()),
                Ok(Ok(n)) => written += n,
            }
        }
        buf.clear();
        inbox.release(frames, bytes);
    }
    let _ = stream.finish();
    WriteEnd::Done
}

/// Which stream a writer feeds (a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// A client's delivery stream.
    Delivery,
    /// A client's control stream.
    Control,
    /// A peer link.
    Peer,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Delivery => "delivery",
            Role::Control => "control",
            Role::Peer => "peer",
        }
    }
}

/// Runs [`run`] on its own task. A writer that stops on an error closes `conn` with an error
/// code, counts it and logs it once: nothing stays half-open.
pub(crate) fn spawn<T: WireFrame>(
    inbox: Inbox<T>,
    stream: quinn::SendStream,
    max: usize,
    stall: Duration,
    conn: quinn::Connection,
    metrics: Metrics,
    role: Role,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let end = run(inbox, stream, max, stall).await;
        if matches!(end, WriteEnd::Done) || conn.close_reason().is_some() {
            // Finished, or the connection was already closed for another reason.
            return;
        }
        metrics
            .writer_failures
            .with_label_values(&[role.as_str(), end.label()])
            .inc();
        if let WriteEnd::Stalled(_) = end {
            match role {
                Role::Peer => metrics.peer_stalls.inc(),
                Role::Delivery | Role::Control => metrics.slow_consumer_disconnects.inc(),
            }
        }
        let code = end.code().unwrap_or(ErrorCode::Closed);
        tracing::warn!(remote = %conn.remote_address(), role = role.as_str(), %end, %code,
            "writer stopped; closing the connection");
        let reason = match (role, &end) {
            (Role::Peer, WriteEnd::Stalled(_)) => {
                "peer stalled: it read nothing for the stall timeout"
            }
            (_, WriteEnd::Stalled(_)) => "slow consumer: it read nothing for the stall timeout",
            _ => "stream writer failed",
        };
        conn.close(code.code().into(), reason.as_bytes());
    })
}
