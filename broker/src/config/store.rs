//! The `[store]` section.

use serde::Deserialize;

/// The `[store]` section: the persistent log and durable queues (`docs/durability.md`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSettings {
    /// Size at which a log segment is closed and a new one started, in bytes. Segments are the
    /// unit of deletion: a segment goes once every message in it is acked and forwarded.
    pub segment_bytes: u64,
    /// Ack wait of queues added without one, in milliseconds.
    pub ack_wait_ms: u64,
    /// Maximum deliveries of queues added without one (then the message is dead-lettered).
    pub max_deliveries: u32,
    /// Persistent messages sent to one peer and not yet acked by it (store-and-forward).
    pub peer_window: usize,
    /// Message ids remembered per broker to ignore copies that arrive again from peers.
    pub dedup_window: usize,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            segment_bytes: 64 << 20,
            ack_wait_ms: 30_000,
            max_deliveries: 5,
            peer_window: 1024,
            dedup_window: 1_000_000,
        }
    }
}
