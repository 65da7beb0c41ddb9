//! Error codes: in [`ServerFrame::Error`](crate::ServerFrame::Error),
//! the peer protocol's `Reject`, and as QUIC application close codes.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a request failed or a connection was closed.
///
/// The numeric value ([`ErrorCode::code`]) is the QUIC application error code used when the
/// connection is closed for that reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ErrorCode {
    /// Normal close (the client or broker is going away on purpose).
    Closed,
    /// The hello named a protocol version the receiver does not speak.
    UnsupportedVersion,
    /// The client presented neither a valid certificate nor a valid token; or a peer presented
    /// no certificate.
    Unauthenticated,
    /// The first frame was not a hello, or a frame came that the role or state does not allow.
    ProtocolViolation,
    /// Bytes on a stream did not decode as a frame.
    MalformedFrame,
    /// A frame was longer than the receiver's maximum.
    FrameTooLarge,
    /// A filter did not parse or compile.
    InvalidFilter,
    /// An attribute name or value was not acceptable.
    InvalidNotification,
    /// The request named a subscription or advertisement the connection does not own.
    UnknownId,
    /// A limit would be exceeded: subscriptions or advertisements per connection, or a push
    /// window or fetch batch above [`MAX_PUSH_WINDOW`](crate::MAX_PUSH_WINDOW) or
    /// [`MAX_FETCH_BATCH`](crate::MAX_FETCH_BATCH).
    LimitExceeded,
    /// A peer hello named a broker id already taken by a different broker, or our own.
    IdCollision,
    /// The subscriber did not read its deliveries fast enough and the slow-consumer policy is
    /// to disconnect.
    SlowConsumer,
    /// The broker is shutting down.
    ShuttingDown,
    /// A peer broke the routing protocol.
    RoutingError,
    /// Anything else (a bug or resource exhaustion in the broker).
    Internal,
    /// The request named a durable queue (or consumer) the broker does not have.
    QueueNotFound,
    /// A queue of that name exists already with another filter or options.
    QueueExists,
    /// The broker's store cannot take persistent writes: the disk is full, or an fsync failed
    /// and the store refuses every later write (it is *poisoned*) until the broker restarts.
    /// Nothing was acknowledged for the request that got this code.
    StoreUnavailable,
    /// The request named a group the network does not know.
    GroupNotFound,
    /// A group of that name exists already.
    GroupExists,
    /// The principal may not do this: publish this notification, or use a queue or group it
    /// does not own. Counted in `palio_permission_denied_total{action}`.
    PermissionDenied,
    /// A request ([`ClientFrame::Request`](crate::ClientFrame::Request)) matched no
    /// subscription anywhere in the network: nobody could answer it.
    NoResponders,
}

impl ErrorCode {
    /// Every code, in order of [`ErrorCode::code`].
    pub const ALL: [ErrorCode; 22] = [
        ErrorCode::Closed,
        ErrorCode::UnsupportedVersion,
        ErrorCode::Unauthenticated,
        ErrorCode::ProtocolViolation,
        ErrorCode::MalformedFrame,
        ErrorCode::FrameTooLarge,
        ErrorCode::InvalidFilter,
        ErrorCode::InvalidNotification,
        ErrorCode::UnknownId,
        ErrorCode::LimitExceeded,
        ErrorCode::IdCollision,
        ErrorCode::SlowConsumer,
        ErrorCode::ShuttingDown,
        ErrorCode::RoutingError,
        ErrorCode::Internal,
        ErrorCode::QueueNotFound,
        ErrorCode::QueueExists,
        ErrorCode::StoreUnavailable,
        ErrorCode::GroupNotFound,
        ErrorCode::GroupExists,
        ErrorCode::PermissionDenied,
        ErrorCode::NoResponders,
    ];

    /// The QUIC application close code.
    pub fn code(self) -> u32 {
        match self {
            ErrorCode::Closed => 0,
            ErrorCode::UnsupportedVersion => 1,
            ErrorCode::Unauthenticated => 2,
            ErrorCode::ProtocolViolation => 3,
            ErrorCode::MalformedFrame => 4,
            ErrorCode::FrameTooLarge => 5,
            ErrorCode::InvalidFilter => 6,
            ErrorCode::InvalidNotification => 7,
            ErrorCode::UnknownId => 8,
            ErrorCode::LimitExceeded => 9,
            ErrorCode::IdCollision => 10,
            ErrorCode::SlowConsumer => 11,
            ErrorCode::ShuttingDown => 12,
            ErrorCode::RoutingError => 13,
            ErrorCode::Internal => 14,
            ErrorCode::QueueNotFound => 15,
            ErrorCode::QueueExists => 16,
            ErrorCode::StoreUnavailable => 17,
            ErrorCode::GroupNotFound => 18,
            ErrorCode::GroupExists => 19,
            ErrorCode::PermissionDenied => 20,
            ErrorCode::NoResponders => 21,
        }
    }

    /// The code with QUIC application close code `code`, if any.
    pub fn from_code(code: u64) -> Option<Self> {
        Self::ALL.into_iter().find(|c| u64::from(c.code()) == code)
    }

    /// A short snake_case name, for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Closed => "closed",
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::ProtocolViolation => "protocol_violation",
            ErrorCode::MalformedFrame => "malformed_frame",
            ErrorCode::FrameTooLarge => "frame_too_large",
            ErrorCode::InvalidFilter => "invalid_filter",
            ErrorCode::InvalidNotification => "invalid_notification",
            ErrorCode::UnknownId => "unknown_id",
            ErrorCode::LimitExceeded => "limit_exceeded",
            ErrorCode::IdCollision => "id_collision",
            ErrorCode::SlowConsumer => "slow_consumer",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::RoutingError => "routing_error",
            ErrorCode::Internal => "internal",
            ErrorCode::QueueNotFound => "queue_not_found",
            ErrorCode::QueueExists => "queue_exists",
            ErrorCode::StoreUnavailable => "store_unavailable",
            ErrorCode::GroupNotFound => "group_not_found",
            ErrorCode::GroupExists => "group_exists",
            ErrorCode::PermissionDenied => "permission_denied",
            ErrorCode::NoResponders => "no_responders",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_distinct() {
        for (i, c) in ErrorCode::ALL.into_iter().enumerate() {
            assert_eq!(c.code() as usize, i);
            assert_eq!(ErrorCode::from_code(u64::from(c.code())), Some(c));
        }
        assert_eq!(ErrorCode::from_code(99), None);
    }
}
