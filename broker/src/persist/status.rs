//! The store's state as the persist task reports it: what `/store` shows and `/healthz`
//! checks. Typed here; the admin listener (`admin`) turns it into JSON.

use serde::Serialize;

/// The persistent store's state at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(crate) struct StoreStatus {
    /// Why the store refuses writes, once a write or fsync failed.
    pub(crate) failed: Option<String>,
    /// Whether that failure was a full disk.
    pub(crate) disk_full: bool,
    /// Durable queues of other brokers known here.
    pub(crate) remote_queues: usize,
    /// Stored messages not yet handed to every next hop.
    pub(crate) forwards_pending: usize,
    /// Log segments on disk.
    pub(crate) segments: usize,
    /// Bytes on disk: the segments and the checkpoint.
    pub(crate) bytes: u64,
    /// The log's end position.
    pub(crate) end: String,
    /// The position up to which the log is durable.
    pub(crate) durable: String,
}
