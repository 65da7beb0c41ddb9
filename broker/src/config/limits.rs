//! The `[limits]` section: sizes, counts, queues, the slow-consumer policy and stall timeout
//! (documented in `docs/operations.md`).

use std::fmt;

use serde::Deserialize;

/// What happens to a notification for a subscriber whose delivery queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SlowConsumerPolicy {
    /// Lossless: the notification is queued anyway and the traffic that brought it waits until
    /// the queue drains (the publisher is slowed, hop by hop). A subscriber that reads nothing
    /// for `stall_timeout_ms` is disconnected with `slow_consumer`.
    #[default]
    Block,
    /// Drop the new notification for that subscriber only (counted in
    /// `palio_notifications_dropped_total{reason="slow_consumer"}`); everyone else is unaffected.
    Drop,
    /// Close the subscriber's connection with the `slow_consumer` error code (counted in
    /// `palio_slow_consumer_disconnects_total`).
    Disconnect,
}

/// Limits; each has a declared overflow behaviour (`docs/operations.md`, "Flow control").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest frame a client may send, in bytes; a longer one closes the connection
    /// (`frame_too_large`). Frames the broker re-encodes a publication into (deliveries, peer
    /// notifications, stored messages) may be larger by
    /// [`FRAME_HEADROOM`](palio_protocol::FRAME_HEADROOM), and peers accept that much.
    pub max_frame_bytes: usize,
    /// Notifications queued per subscribing connection between routing and its QUIC stream.
    pub subscriber_buffer: usize,
    /// The same queue's limit in bytes (estimated encoded size).
    pub subscriber_buffer_bytes: usize,
    /// What happens when that queue is full.
    pub slow_consumer: SlowConsumerPolicy,
    /// Frames queued per peer link. When full, the traffic that must cross the link waits
    /// (nothing is dropped); a link that takes nothing for `stall_timeout_ms` is closed and
    /// routing reconverges around it. A link's lanes share it (each holds its share of the
    /// link's notifications); its control stream has it whole.
    pub peer_queue: usize,
    /// The same queue's limit in bytes.
    pub peer_queue_bytes: usize,
    /// How long a subscriber may read nothing while the broker has something to send it before
    /// it is cut with `slow_consumer`, in milliseconds. A peer link gets three times as long
    /// before it is closed.
    pub stall_timeout_ms: u64,
    /// Live subscriptions per connection (`limit_exceeded` beyond).
    pub max_subscriptions_per_client: usize,
    /// Live advertisements per connection.
    pub max_advertisements_per_client: usize,
    /// Client connections open at once; one more is refused before its handshake.
    pub max_connections: usize,
    /// Client and peer connections open at once from one IP address; checked before the
    /// handshake.
    pub max_connections_per_address: usize,
    /// Client connections open at once per principal; checked after authentication.
    pub max_connections_per_principal: usize,
    /// QUIC handshakes in progress at once; more are refused (QUIC's `CONNECTION_REFUSED`).
    pub max_handshakes: usize,
    /// Send a QUIC Retry to every new connection and accept it only once the client has
    /// echoed the token: proves the source address before the broker does any handshake work
    /// (costs a round trip per connection; for brokers reachable from untrusted networks).
    pub quic_retry: bool,
    /// Brokers this broker's link-state database holds, itself included: adverts of more
    /// brokers relayed by peers are refused (`palio_peer_adverts_refused_total`).
    pub max_brokers: usize,
    /// Ordered groups this broker keeps (network-wide, since every broker knows every group):
    /// a client's create beyond it gets `limit_exceeded`; a peer's declaration beyond it is
    /// not taken (`palio_limits_hit_total{limit="max_groups"}`).
    pub max_groups: usize,
    /// Durable queues at this broker (`limit_exceeded` beyond). See `docs/durability.md` for
    /// this and the settings below.
    pub max_queues: usize,
    /// Durable-queue consumers attached per connection.
    pub max_consumers_per_client: usize,
    /// The longest a pull consumer's fetch waits, in milliseconds (a longer wait is cut).
    pub max_fetch_wait_ms: u64,
    /// Producers the broker remembers (owner and sequence number).
    pub max_producers: usize,
    /// How long a producer must have been idle before it may be forgotten to make room for a
    /// new one, in milliseconds.
    pub producer_idle_ms: u64,
    /// The `max_messages` of a queue added without one, and the most one may ask for (0: no
    /// limit).
    pub queue_max_messages: u64,
    /// The same for `max_bytes`.
    pub queue_max_bytes: u64,
    /// The same for `max_age_ms`.
    pub queue_max_age_ms: u64,
    /// The discard policy of a queue added without one.
    pub queue_discard: palio_protocol::Discard,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame_bytes: palio_protocol::DEFAULT_MAX_FRAME,
            subscriber_buffer: 1024,
            subscriber_buffer_bytes: 1 << 20,
            slow_consumer: SlowConsumerPolicy::Block,
            peer_queue: 16 * 1024,
            peer_queue_bytes: 16 << 20,
            stall_timeout_ms: 10_000,
            max_subscriptions_per_client: 1024,
            max_advertisements_per_client: 1024,
            max_connections: 10_000,
            max_connections_per_address: 1_000,
            max_connections_per_principal: 1_000,
            max_handshakes: 256,
            quic_retry: false,
            max_brokers: 1024,
            max_groups: 1024,
            max_queues: 10_000,
            max_consumers_per_client: 1024,
            max_fetch_wait_ms: 300_000,
            max_producers: 100_000,
            producer_idle_ms: 24 * 3600 * 1000,
            queue_max_messages: 1_000_000,
            queue_max_bytes: 1 << 30,
            queue_max_age_ms: 0,
            queue_discard: palio_protocol::Discard::Old,
        }
    }
}

impl Limits {
    /// A subscribing connection's delivery queue.
    pub(crate) fn subscriber_capacity(&self) -> crate::outbox::Capacity {
        crate::outbox::Capacity {
            frames: self.subscriber_buffer,
            bytes: self.subscriber_buffer_bytes,
        }
    }

    /// A peer link's queue (its control stream's; all its traffic on a link without lanes).
    pub(crate) fn peer_capacity(&self) -> crate::outbox::Capacity {
        crate::outbox::Capacity {
            frames: self.peer_queue,
            bytes: self.peer_queue_bytes,
        }
    }

    /// The queue of each lane of a peer link with `lanes` lanes: its notifications share the
    /// link's limit, so that lanes add no memory to the worst case.
    pub(crate) fn lane_capacity(&self, lanes: u8) -> crate::outbox::Capacity {
        let n = usize::from(lanes.max(1));
        crate::outbox::Capacity {
            frames: (self.peer_queue / n).max(1),
            bytes: (self.peer_queue_bytes / n).max(1),
        }
    }

    /// The stall timeout of a client's streams.
    pub(crate) fn stall_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.stall_timeout_ms)
    }

    /// The stall timeout of a peer link: three times a client's, so that when a slow
    /// subscriber holds back the link that feeds it, the subscriber is cut first, not the link
    /// (which carries everyone else's traffic too).
    pub(crate) fn peer_stall_timeout(&self) -> std::time::Duration {
        self.stall_timeout().saturating_mul(3)
    }

    /// The largest frame the broker writes or accepts from a peer: a client's frame plus the
    /// headroom of re-encoding it.
    pub(crate) fn internal_frame_bytes(&self) -> usize {
        self.max_frame_bytes + palio_protocol::FRAME_HEADROOM
    }
}

impl fmt::Display for SlowConsumerPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SlowConsumerPolicy::Block => "block",
            SlowConsumerPolicy::Drop => "drop",
            SlowConsumerPolicy::Disconnect => "disconnect",
        })
    }
}
