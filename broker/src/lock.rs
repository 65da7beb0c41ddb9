//! The data directory lock: one broker per data directory.
//!
//! Two brokers on one data directory would both append to the same log and both ack
//! persistent messages, each overwriting what the other wrote. So [`Server::bind`] takes an
//! exclusive advisory lock on a `LOCK` file in the data directory before it opens the store or
//! binds a port, and the broker holds it until the store is closed.
//!
//! The lock is the operating system's (`flock` on Linux, through [`std::fs::File::try_lock`]),
//! held by the open file: the kernel releases it when the process exits, however it exits
//! (`kill -9` included), so a crashed broker never leaves a stale lock behind. The file's
//! *presence* means nothing; only the lock does. The holder writes its process id into the file
//! so that a broker refused the lock can name it. Like every advisory lock, it binds only
//! processes that take it, and it does not reach across machines on filesystems whose locks
//! are local (some network filesystems).
//!
//! [`Server::bind`]: crate::Server::bind

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::error::StartError;

/// The lock file's name in the data directory.
pub(crate) const LOCK_FILE: &str = "LOCK";

/// An exclusive lock on a data directory, held while this value (and any clone of the `Arc`
/// holding it) lives.
#[derive(Debug)]
pub(crate) struct DataDirLock {
    /// The open lock file: closing it releases the lock.
    _file: File,
    /// The locked directory, for logs.
    dir: PathBuf,
}

impl DataDirLock {
    /// Takes the lock on `dir` (which must exist) without waiting: another broker holding it is
    /// [`StartError::DataDirInUse`].
    pub(crate) fn acquire(dir: &Path) -> Result<Self, StartError> {
        let path = dir.join(LOCK_FILE);
        let io = |what: &str, source| StartError::Io {
            what: format!("{what} {}", path.display()),
            source,
        };
        // Neither truncated nor created anew: the holder's pid must survive our opening it.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| io("opening the lock file", e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                // Best effort: the pid is a hint for the operator, not part of the protocol.
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(StartError::DataDirInUse {
                    dir: dir.display().to_string(),
                    holder: (!holder.is_empty() && holder.len() <= 20).then(|| holder.to_owned()),
                });
            }
            Err(TryLockError::Error(e)) if e.kind() == std::io::ErrorKind::Unsupported => {
                // A filesystem without locks: run, but say that nothing guards the directory.
                tracing::warn!(
                    dir = %dir.display(),
                    "the filesystem does not support file locks; \
                     nothing stops a second broker from using this data directory"
                );
            }
            Err(TryLockError::Error(e)) => return Err(io("locking", e)),
        }
        // Ours now: record who holds it.
        file.set_len(0)
            .and_then(|()| file.write_all(format!("{}\n", std::process::id()).as_bytes()))
            .map_err(|e| io("writing", e))?;
        Ok(Self {
            _file: file,
            dir: dir.to_owned(),
        })
    }
}

impl Drop for DataDirLock {
    fn drop(&mut self) {
        tracing::debug!(dir = %self.dir.display(), "data directory lock released");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_second_lock_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDirLock::acquire(dir.path()).unwrap();
        match DataDirLock::acquire(dir.path()) {
            Err(e @ StartError::DataDirInUse { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
                assert!(msg.contains("another broker"), "{msg}");
                assert!(
                    msg.contains(&std::process::id().to_string()),
                    "names the holder: {msg}"
                );
            }
            other => panic!("expected DataDirInUse, got {other:?}"),
        }
        drop(first);
        let again = DataDirLock::acquire(dir.path()).unwrap();
        drop(again);
    }

    #[test]
    fn a_missing_directory_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let err = DataDirLock::acquire(&dir.path().join("absent")).unwrap_err();
        assert!(matches!(err, StartError::Io { .. }), "{err:?}");
    }
}
