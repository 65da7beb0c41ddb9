//! The log's error type.
//!
//! Errors are `Clone` (I/O errors are shared behind an `Arc`) because one failure is reported to
//! many parties: the call that hit it, the [`SyncEvent::Failed`](super::SyncEvent::Failed)
//! notification, and every later call refused with [`StoreError::Poisoned`].

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::position::Position;

/// What went wrong in the store.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum StoreError {
    /// A file operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What the log was doing (`"write"`, `"fdatasync"`, `"rename"`, …).
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: Arc<io::Error>,
    },
    /// The disk (or the user's quota) is full: a write failed with `ENOSPC` or `EDQUOT`.
    #[error("disk full: {op} {}", path.display())]
    NoSpace {
        /// What the log was doing.
        op: &'static str,
        /// The file concerned.
        path: PathBuf,
    },
    /// An earlier failure (the wrapped error) made the log refuse every later write: after a
    /// failed write or fsync nothing can be trusted to reach the disk (see `docs/durability.md`).
    #[error("the log refuses writes after an earlier failure: {0}")]
    Poisoned(Arc<StoreError>),
    /// A record read back from disk is damaged (its checksum or header does not verify).
    #[error("corrupt record at {pos}: {reason}")]
    Corrupt {
        /// Where the record was expected.
        pos: Position,
        /// What did not verify.
        reason: &'static str,
    },
    /// The checkpoint file exists but is damaged.
    #[error("corrupt checkpoint {}: {reason}", path.display())]
    CorruptCheckpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What did not verify.
        reason: &'static str,
    },
    /// A record larger than [`LogOptions::max_record_bytes`](super::LogOptions) was refused.
    #[error("record of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The record's length.
        len: usize,
        /// The limit.
        max: u32,
    },
    /// No record starts at this position (beyond the end, or in a removed segment).
    #[error("no record at {0}")]
    NotFound(Position),
    /// A position beyond the end of the log was given where one inside it is needed.
    #[error("position {pos} is beyond the end of the log ({end})")]
    BeyondEnd {
        /// The position given.
        pos: Position,
        /// The end of the log.
        end: Position,
    },
    /// The [`LogOptions`](super::LogOptions) are unusable.
    #[error("invalid log options: {0}")]
    InvalidOptions(&'static str),
}

impl StoreError {
    /// Wraps an I/O error, recognising a full disk (`ENOSPC`, `EDQUOT`).
    pub(crate) fn io(op: &'static str, path: &Path, source: io::Error) -> StoreError {
        match source.kind() {
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => StoreError::NoSpace {
                op,
                path: path.to_path_buf(),
            },
            _ => StoreError::Io {
                op,
                path: path.to_path_buf(),
                source: Arc::new(source),
            },
        }
    }

    /// Whether this error, or the failure that poisoned the log, is a full disk — so the broker
    /// can tell publishers "disk full" rather than a generic storage error.
    pub(crate) fn is_no_space(&self) -> bool {
        match self {
            StoreError::NoSpace { .. } => true,
            StoreError::Poisoned(cause) => cause.is_no_space(),
            _ => false,
        }
    }

    /// The error to refuse later calls with once `self` has poisoned the log.
    pub(crate) fn poisoned(self) -> StoreError {
        match self {
            already @ StoreError::Poisoned(_) => already,
            cause => StoreError::Poisoned(Arc::new(cause)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enospc_is_no_space_also_through_poisoning() {
        let full = StoreError::io(
            "write",
            Path::new("x"),
            io::Error::from(io::ErrorKind::StorageFull),
        );
        assert!(matches!(full, StoreError::NoSpace { .. }));
        let poisoned = full.poisoned();
        assert!(poisoned.is_no_space());
        assert!(
            matches!(poisoned.clone().poisoned(), StoreError::Poisoned(inner) if !matches!(*inner, StoreError::Poisoned(_)))
        );
        let eio = StoreError::io("fdatasync", Path::new("x"), io::Error::other("EIO"));
        assert!(!eio.is_no_space());
        assert!(!eio.poisoned().is_no_space());
    }
}
