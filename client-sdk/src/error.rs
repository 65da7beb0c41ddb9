//! The SDK's typed errors.

use palio_protocol::ErrorCode;
use palio_protocol::tls::TlsError;

/// What can go wrong talking to a broker.
///
/// ```no_run
/// # async fn demo(client: palio::Client) {
/// use palio::{Error, ErrorCode};
///
/// match client.queue_info("orders").await {
///     Ok(q) => println!("{} pending", q.pending),
///     Err(e) if e.code() == Some(ErrorCode::QueueNotFound) => println!("no such queue"),
///     Err(Error::Closed { .. }) => println!("connection lost"),
///     Err(e) => println!("{e}"),
/// }
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The broker could not be reached, or the QUIC/TLS handshake failed.
    #[error("cannot connect to {server}: {message}")]
    Connect {
        /// The address dialed.
        server: String,
        /// What failed.
        message: String,
    },
    /// TLS material could not be loaded.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The broker refused the connection at the hello (bad credentials, version, …).
    #[error("refused by the broker ({code}): {message}")]
    Refused {
        /// Why.
        code: ErrorCode,
        /// The broker's explanation.
        message: String,
    },
    /// The broker refused one request; the connection is still usable.
    #[error("request failed ({code}): {message}")]
    Request {
        /// Why.
        code: ErrorCode,
        /// The broker's explanation.
        message: String,
    },
    /// The broker did not store a persistent publication; nothing about it is acknowledged.
    #[error("publication {seq} failed ({code}): {message}")]
    Publish {
        /// The publication's producer sequence number.
        seq: u64,
        /// Why ([`ErrorCode::StoreUnavailable`] when the broker's disk is full or failed).
        code: ErrorCode,
        /// The broker's explanation.
        message: String,
    },
    /// The connection is closed.
    #[error("connection closed{}: {message}", code.map(|c| format!(" ({c})")).unwrap_or_default())]
    Closed {
        /// The broker's reason code, if it closed the connection with one.
        code: Option<ErrorCode>,
        /// Details.
        message: String,
    },
    /// A wait exceeded its limit.
    #[error("timed out {0}")]
    Timeout(&'static str),
    /// An attribute name or value is not valid.
    #[error("invalid attribute: {0}")]
    InvalidAttribute(String),
    /// The SDK refused a call before sending anything (e.g. a second producer on one
    /// connection, or sequence numbers that do not increase).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The SDK refused to send a frame longer than the broker accepts (the `max_frame` of its
    /// [`Welcome`](crate::Welcome)): nothing was sent, and the connection is still usable. The
    /// broker would have closed the connection with [`ErrorCode::FrameTooLarge`].
    #[error(
        "frame_too_large: the {what} encodes to {size} bytes, more than the broker's limit of \
         {max} bytes; nothing was sent"
    )]
    FrameTooLarge {
        /// What was refused: `"publication"` or `"request"`.
        what: &'static str,
        /// The encoded frame's length, in bytes.
        size: usize,
        /// The broker's limit, in bytes.
        max: usize,
    },
    /// The broker sent something this SDK does not understand.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// No broker completed the QUIC handshake at the address within the connect timeout
    /// ([`ConnectOptions::connect_timeout`](crate::ConnectOptions::connect_timeout)): nothing
    /// listens there, the broker is stopped, or the network drops the packets.
    #[error("no broker answered at {server} within {waited:?} (is palio-broker running there?)")]
    Unreachable {
        /// The address dialed.
        server: String,
        /// How long the client waited.
        waited: std::time::Duration,
    },
    /// The connection is lost and the client is reconnecting (see
    /// [`Reconnect`](crate::Reconnect)): the call was not carried out; try again once the
    /// client is back ([`ConnectionEvent::Reconnected`](crate::ConnectionEvent::Reconnected)).
    #[error("disconnected from the broker ({reason}); reconnecting: try again later")]
    Disconnected {
        /// Why the connection was lost.
        reason: String,
    },
    /// A best-effort publication made while disconnected did not fit in the reconnect
    /// buffer ([`Reconnect::buffer`](crate::Reconnect::buffer)): it was not queued.
    #[error(
        "disconnected from the broker and the reconnect buffer is full ({limit} bytes): \
         publication not queued; raise Reconnect::buffer or wait for the reconnection"
    )]
    PublishBufferFull {
        /// The buffer's bound, in bytes.
        limit: usize,
    },
    /// The connection was lost and could not be re-established within the reconnect
    /// policy's attempts.
    #[error(
        "lost the connection to {server} and gave up after {attempts} reconnect attempt(s): {reason}"
    )]
    ReconnectFailed {
        /// The broker's address.
        server: String,
        /// The attempts made.
        attempts: u32,
        /// Why the last one failed.
        reason: String,
    },
    /// The application closed this client ([`Client::close`](crate::Client::close), or
    /// dropped it).
    #[error("connection closed by the application")]
    ClosedLocally,
}

impl Error {
    /// The broker's error code, if the broker gave one.
    ///
    /// ```
    /// use palio::{Error, ErrorCode};
    ///
    /// let e = Error::Request { code: ErrorCode::NoResponders, message: "no responders".into() };
    /// assert_eq!(e.code(), Some(ErrorCode::NoResponders));
    /// assert_eq!(Error::Timeout("waiting").code(), None);
    /// ```
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Refused { code, .. }
            | Error::Request { code, .. }
            | Error::Publish { code, .. } => Some(*code),
            Error::Closed { code, .. } => *code,
            _ => None,
        }
    }

    pub(crate) fn from_connection(e: &quinn::ConnectionError) -> Self {
        match e {
            quinn::ConnectionError::LocallyClosed => Error::ClosedLocally,
            quinn::ConnectionError::ApplicationClosed(c) => Error::Closed {
                code: ErrorCode::from_code(c.error_code.into_inner()),
                message: String::from_utf8_lossy(&c.reason).into_owned(),
            },
            other => Error::Closed {
                code: None,
                message: other.to_string(),
            },
        }
    }
}
