//! Limits the broker and its clients must agree on, defined once so that they cannot drift.
//!
//! A request past one of these limits is refused by the broker with
//! [`ErrorCode::LimitExceeded`](crate::ErrorCode::LimitExceeded), never cut down silently; the
//! SDK keeps its requests within them before sending.

/// The largest push window ([`ConsumeMode::Push`](crate::ConsumeMode::Push)): the most
/// unacked messages the broker keeps in flight to one push consumer.
///
/// Messages travel on the client's control stream, whose queue at the broker holds 16 Ki
/// frames (a full queue disconnects the client): a window of a quarter of that leaves room for
/// the answers to requests and publish acks, so that one consumer cannot fill the queue on its
/// own.
pub const MAX_PUSH_WINDOW: u32 = 4096;

/// The largest batch of one [`ClientFrame::Fetch`](crate::ClientFrame::Fetch): the most
/// messages a pull consumer receives for one fetch. Bounded for the same reason as
/// [`MAX_PUSH_WINDOW`].
pub const MAX_FETCH_BATCH: u32 = 4096;

/// How much larger than the client frame limit a frame from the broker may be.
///
/// Frames the broker re-encodes a client's publication into (deliveries, peer notifications,
/// stored and forwarded messages) may exceed the client frame limit by at most this much;
/// receivers of those frames accept `max_frame + FRAME_HEADROOM`.
///
/// A publication is at most `max_frame` bytes as the client encodes it; the frames that carry
/// it on (a [`DeliveryFrame`](crate::DeliveryFrame), a
/// [`ServerFrame::Message`](crate::ServerFrame::Message), the peer protocol's stored and
/// notified messages) add their own fields (ids, tags, destinations): little next to this headroom, but not
/// nothing, so a receiver enforcing exactly `max_frame` would refuse a notification the broker
/// accepted.
/// The same headroom covers a queue listing's entry whose filter alone is close to the limit
/// (see [`ServerFrame::Queues`](crate::ServerFrame::Queues)).
pub const FRAME_HEADROOM: usize = 64 * 1024;
