//! The broker's persistent log: segmented, checksummed, group-committed.
//!
//! Persistent notifications and the queue engine's state changes are records in one
//! append-only log per broker, the structure Kafka and NATS JetStream use. [`Log`] is owned by
//! one task; a background thread per log makes written data durable with one `fdatasync` per
//! batch (group commit) and reports it through a callback ([`SyncEvent`]). `docs/durability.md`
//! states the contract: what an acknowledgement means, what survives which crash, what recovery
//! truncates, skips and reports.
//!
//! # Files
//!
//! One directory holds the log:
//!
//! - `NNNNNNNNNNNNNNNNNNNN.seg` — segment files, named by their id in 20 decimal digits (so
//!   every `u64` fits and names sort like ids). Ids start at 0 and grow by one per segment.
//! - `checkpoint` — the owner's state as of a log position (see `checkpoint.rs`);
//!   `checkpoint.tmp` — the next one while it is being written (removed at open if a crash
//!   left it).
//!
//! Every other file name is ignored.
//!
//! # Segment format (version 1, little-endian)
//!
//! ```text
//! segment header, 32 bytes:
//!   0..8    magic "PALIOSEG"
//!   8..12   format version (u32) = 1
//!   12..16  record bound (u32): the largest payload this segment may hold
//!   16..24  segment id (u64), the same as in the file name
//!   24..28  reserved, zero
//!   28..32  CRC32C of bytes 0..28
//! then frames, back to back, from offset 32:
//!   0..4    magic D0 50 4C 52 ("\xD0PLR"), what recovery searches for to resynchronise
//!   4..8    payload length (u32), at most the segment's record bound
//!   8       kind: 1 = data record, 2 = seal (payload empty; the last frame of a full segment)
//!   9..12   reserved, zero
//!   12..16  CRC32C of the payload
//!   16..20  CRC32C of: segment id (u64), frame offset (u64), bytes 0..16 of this header
//!   20..    payload
//! ```
//!
//! A record's [`Position`] is its segment id and the offset of its frame. Putting the position
//! into the header checksum means a frame only verifies where it was written: a frame-shaped
//! byte string inside some payload, or a stale frame at another offset, is never mistaken for a
//! record when recovery resynchronises after damage. The header checksum is checked before the
//! payload is read, so a candidate costs 20 bytes, not a payload, which keeps the search linear.
//!
//! # Layout of the code
//!
//! `record.rs` (byte layout), `scan.rs` (reading a segment frame by frame, resynchronising after
//! damage), `recovery.rs` (opening a directory), `sync.rs` (the group-commit thread),
//! `checkpoint.rs`, `segment.rs`, `log.rs` (the owner's API), `read_ahead.rs` (reads in log
//! order), `fs.rs` (the file layer: real files, or the fault-injecting `SimFs` in tests).

pub(crate) mod checkpoint;
mod error;
mod fs;
mod log;
mod position;
mod read_ahead;
pub(crate) mod record;
mod recovery;
pub(crate) mod scan;
mod segment;
#[cfg(test)]
mod sim_fs;
mod sync;
#[cfg(test)]
mod tests;

pub(crate) use error::StoreError;
#[cfg(test)]
pub(crate) use fs::Fs;
pub(crate) use fs::StdFs;
#[cfg(test)]
pub(crate) use log::SegmentInfo;
pub(crate) use log::{Log, LogOptions};
pub(crate) use position::Position;
pub(crate) use recovery::RecoveryReport;
#[cfg(test)]
pub(crate) use recovery::{ProblemKind, RecoveryProblem};
#[cfg(test)]
pub(crate) use sim_fs::{SimFs, Tear};
#[cfg(test)]
pub(crate) use sync::Notify;
pub(crate) use sync::SyncEvent;
