//! Palio's wire protocol: the frames the broker and its clients (and brokers among themselves)
//! exchange over QUIC, and how they are put on a stream.
//!
//! # Model
//!
//! - **Roles by ALPN.** A QUIC connection negotiates [`CLIENT_ALPN`] (an application using the
//!   SDK or the `palio` command line) or [`PEER_ALPN`] (another broker of the overlay). The
//!   broker serves both on one endpoint and picks the session type from the ALPN alone.
//! - **Frames.** Every frame is a serde type encoded with MessagePack (`rmp-serde`, named
//!   fields, so frames stay self-describing across versions), preceded by its length as a
//!   big-endian `u32`. A frame longer than the receiver's maximum ([`DEFAULT_MAX_FRAME`]) is
//!   refused before any of it is buffered ([`FrameError::TooLarge`]); bytes that do not decode
//!   are [`FrameError::Malformed`]. Both close the connection with an [`ErrorCode`]. The two
//!   frames every notification crosses, [`ClientFrame::Publish`] and [`DeliveryFrame`], are
//!   also written and read by hand ([`encode_publish`], [`encode_delivery`], [`DecodeFrame`]):
//!   the same bytes, without serde's generic machinery on the data path.
//! - **Client streams.** The client opens one bidirectional *control* stream and sends
//!   [`ClientFrame::Hello`]; the broker answers [`ServerFrame::Welcome`] (or
//!   [`ServerFrame::Error`] and closes). Requests and their answers follow on the same stream,
//!   in order. Publications travel on the control stream too, unacknowledged; a
//!   [`ClientFrame::Flush`] is answered once every earlier frame has been routed. After the
//!   Welcome the broker opens one unidirectional *delivery* stream carrying
//!   [`DeliveryFrame`]s.
//! - **Peer streams.** Brokers speak to each other with the same framing ([`PEER_ALPN`]); the
//!   frames of that protocol carry the routing core's types and belong to the broker crate
//!   (`palio_broker::wire`), so this crate, and the SDK with it, does not depend on the
//!   routing core.
//!
//! - **Limits.** What both ends must agree on is defined here once: the frame size
//!   ([`DEFAULT_MAX_FRAME`], announced as [`Welcome::max_frame`], plus [`FRAME_HEADROOM`] for
//!   frames the broker re-encodes), [`MAX_PUSH_WINDOW`] and [`MAX_FETCH_BATCH`].
//! - **Persistent delivery.** Persistent publications, durable queues and their consumers use
//!   the control stream as well; the `durable` types ([`QueueInfo`], [`ConsumeMode`],
//!   [`DurableMessage`]) describe the model.
//!
//! - **Ordered groups.** Group administration, membership and publications use the control
//!   stream too; the `group` types ([`GroupInfo`], [`GroupMessage`]) describe the model.
//! - **Introspection.** A client may ask the broker about itself ([`ServerInfo`]: identity,
//!   uptime, peers), for its routing state ([`RoutesInfo`], what the admin listener's
//!   `/routes` shows) and for a ping; the `introspect` types describe the answers.
//!
//! `docs/protocol.md` describes the same with every frame, error code and acknowledgement.

#![warn(missing_docs)]

mod codec;
mod durable;
mod error_code;
mod frames;
mod group;
mod hot;
mod introspect;
mod limits;
pub mod tls;

pub use codec::{DecodeFrame, FrameCodec, FrameError, decode, encode, encode_into, encoded_len};
pub use durable::{
    ConsumeMode, DEAD_LETTER_SUFFIX, Discard, DurableMessage, MAX_QUEUE_NAME, PeekedMessage,
    QueueInfo, QueueMatches, QueueOptions, valid_queue_name,
};
pub use error_code::ErrorCode;
pub use frames::{Attributes, ClientFrame, DeliveryFrame, ReplyTo, ServerFrame, Welcome};
pub use group::{Clock, GroupGap, GroupInfo, GroupMessage, MAX_GROUP_NAME, valid_group_name};
pub use hot::{encode_delivery, encode_publish, publish_len, publish_persistent_len};
pub use introspect::{
    BrokerRef, DialInfo, LinkInfo, LinkStateInfo, Listing, LocalEntry, PeerInfo, RoutesInfo,
    ServerInfo, TreeInfo,
};

/// Building blocks of the hand-written frames: the broker writes and reads its peer links'
/// notification frame with them. They write what `rmp-serde` writes; a [`msgpack::Reader`]
/// reads only the canonical form, and its callers fall back to serde for anything else.
pub mod msgpack {
    pub use crate::hot::{
        Reader, bin_len, event_len, framed, put_bin, put_event, put_str, put_uint, str_len,
        uint_len,
    };
}
pub use limits::{FRAME_HEADROOM, MAX_FETCH_BATCH, MAX_PUSH_WINDOW};

/// ALPN of a client connection.
pub const CLIENT_ALPN: &[u8] = b"palio/1";

/// ALPN of a broker-to-broker connection.
pub const PEER_ALPN: &[u8] = b"palio-peer/1";

/// The protocol version this crate speaks, sent in every hello. A broker refuses a hello with
/// another version ([`ErrorCode::UnsupportedVersion`]).
pub const PROTOCOL_VERSION: u16 = 1;

/// The default largest frame, in bytes (1 MiB): far above a notification with a generous
/// payload, small enough that a peer cannot make the receiver buffer much before it is refused.
pub const DEFAULT_MAX_FRAME: usize = 1 << 20;

/// The largest frame limit a broker may be configured with (`limits.max_frame_bytes`), in
/// bytes (64 MiB): no broker accepts a longer frame.
pub const MAX_FRAME_CEILING: usize = 64 << 20;
