//! Group commit: the one background thread per log that makes written data durable.
//!
//! The owner writes batches to the active segment file ([`Syncer::request`] then says how far
//! the written data reaches) and never waits for the disk on the hot path. The sync thread loops:
//! take the furthest requested position, `fdatasync` the file it lies in (plus the directory if a
//! segment was created since the last round), report [`SyncEvent::Synced`], repeat. Everything
//! the owner writes while an fsync runs is covered by the next one, so batches grow with the
//! load and shrink to one commit when idle — there is no timer anywhere.
//!
//! A failed write or fsync *poisons* the log (see [`Syncer::poison`]): [`SyncEvent::Failed`] is
//! reported once, the thread stops, and nothing is ever reported durable again. After a failed
//! fsync Linux may drop the dirty pages and report the next fsync as a success (the 2018
//! "fsyncgate"), so retrying would turn a lost write into a false acknowledgement.
//!
//! The notification callback runs with the syncer's lock held, which is what makes "no
//! `Synced` after `Failed`" hold without a race; it must be quick, must not block, and must not
//! call back into the log (forwarding into a channel is the intended use).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use super::error::StoreError;
use super::fs::{Fs, FsFile};
use super::position::Position;

/// How the log tells its owner that data became durable, or that it never will.
#[derive(Debug, Clone)]
pub(crate) enum SyncEvent {
    /// Everything before this position is on disk. Positions only grow.
    Synced(Position),
    /// The log is poisoned by this error: nothing not yet reported `Synced` ever will be. Sent
    /// at most once, and never followed by `Synced`.
    Failed(StoreError),
}

/// The callback receiving [`SyncEvent`]s, called on the sync thread (or, for a failure the owner
/// hits itself, on the owner's thread inside the failing call). It runs with the syncer's lock
/// held: it must not block and must not call into the log.
pub(crate) type Notify = Box<dyn Fn(SyncEvent) + Send + Sync>;

/// The owner's handle on the sync thread. Dropping it lets the thread finish the fsync already
/// requested, then joins it.
pub(crate) struct Syncer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// What the owner and the sync thread share.
struct Shared {
    state: Mutex<SyncState>,
    /// Signalled by the owner when there is more to sync (or on shutdown).
    work: Condvar,
    /// Signalled by the thread after each round, for owners waiting on durability.
    done: Condvar,
    /// Mirrors `state.poison.is_some()` so the owner's hot path needs no lock.
    poisoned: AtomicBool,
    notify: Notify,
    fs: Arc<dyn Fs>,
    dir: PathBuf,
}

struct SyncState {
    /// The end of the data handed to the OS: what the next round should cover.
    requested: Position,
    /// The file `requested` lies in (the active segment).
    file: Arc<dyn FsFile>,
    /// That file's path, for error messages.
    path: PathBuf,
    /// A segment file was created since the last directory fsync.
    dir_dirty: bool,
    /// Everything before this is on disk.
    durable: Position,
    /// The failure that poisoned the log.
    poison: Option<StoreError>,
    /// The owner is gone.
    shutdown: bool,
}

impl Syncer {
    /// Starts the sync thread. `durable` is where the (already synced) log ends; `file` is the
    /// active segment.
    pub(crate) fn start(
        fs: Arc<dyn Fs>,
        dir: &Path,
        file: Arc<dyn FsFile>,
        path: PathBuf,
        durable: Position,
        notify: Notify,
    ) -> Result<Syncer, StoreError> {
        let shared = Arc::new(Shared {
            state: Mutex::new(SyncState {
                requested: durable,
                file,
                path,
                dir_dirty: false,
                durable,
                poison: None,
                shutdown: false,
            }),
            work: Condvar::new(),
            done: Condvar::new(),
            poisoned: AtomicBool::new(false),
            notify,
            fs,
            dir: dir.to_path_buf(),
        });
        let thread = std::thread::Builder::new()
            .name("palio-log-sync".into())
            .spawn({
                let shared = Arc::clone(&shared);
                move || shared.run()
            })
            .map_err(|e| StoreError::io("start the sync thread for", dir, e))?;
        Ok(Syncer {
            shared,
            thread: Some(thread),
        })
    }

    /// Data up to `end` has been written to the active file: make it durable.
    pub(crate) fn request(&self, end: Position) {
        let mut st = self.shared.lock();
        if end > st.requested {
            st.requested = end;
            self.shared.work.notify_one();
        }
    }

    /// A new active segment file exists (header written, nothing synced): the next round syncs
    /// it and the directory. Must only be called once every earlier segment is durable.
    pub(crate) fn switch_file(&self, file: Arc<dyn FsFile>, path: PathBuf, start: Position) {
        let mut st = self.shared.lock();
        st.file = file;
        st.path = path;
        st.dir_dirty = true;
        st.requested = start;
        self.shared.work.notify_one();
    }

    /// Blocks until everything before `end` is durable, or the log is poisoned.
    pub(crate) fn wait_durable(&self, end: Position) -> Result<(), StoreError> {
        let mut st = self.shared.lock();
        loop {
            if let Some(e) = &st.poison {
                return Err(e.clone().poisoned());
            }
            if st.durable >= end {
                return Ok(());
            }
            st = self
                .shared
                .done
                .wait(st)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Everything before this position is on disk.
    pub(crate) fn durable(&self) -> Position {
        self.shared.lock().durable
    }

    /// The failure that poisoned the log, if any.
    pub(crate) fn poison_cause(&self) -> Option<StoreError> {
        self.shared.lock().poison.clone()
    }

    /// Refuses with [`StoreError::Poisoned`] once the log is poisoned (lock-free when healthy).
    pub(crate) fn check(&self) -> Result<(), StoreError> {
        if !self.shared.poisoned.load(Ordering::Acquire) {
            return Ok(());
        }
        match self.poison_cause() {
            Some(e) => Err(e.poisoned()),
            None => Ok(()),
        }
    }

    /// Poisons the log with `error` (a failure the owner hit), reporting `Failed` if it is the
    /// first failure, and hands the error back for the failing call to return.
    pub(crate) fn poison(&self, error: StoreError) -> StoreError {
        let mut st = self.shared.lock();
        self.shared.poison_locked(&mut st, error.clone());
        error
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.shared.lock().shutdown = true;
        self.shared.work.notify_all();
        if let Some(thread) = self.thread.take() {
            // A panic on the sync thread has already been reported by the panic hook; there
            // is nothing more to do about it here.
            let _ = thread.join();
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, SyncState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn poison_locked(&self, st: &mut SyncState, error: StoreError) {
        if st.poison.is_none() {
            st.poison = Some(error.clone());
            self.poisoned.store(true, Ordering::Release);
            (self.notify)(SyncEvent::Failed(error));
        }
        self.done.notify_all();
        self.work.notify_all();
    }

    /// The sync thread's loop.
    fn run(&self) {
        let mut st = self.lock();
        loop {
            while st.poison.is_none() && st.requested <= st.durable && !st.shutdown {
                st = self.work.wait(st).unwrap_or_else(PoisonError::into_inner);
            }
            if st.poison.is_some() || st.requested <= st.durable {
                // Poisoned, or shut down with nothing left to sync.
                return;
            }
            let target = st.requested;
            let file = Arc::clone(&st.file);
            let path = st.path.clone();
            let sync_dir = std::mem::take(&mut st.dir_dirty);
            drop(st);

            let mut result = file
                .sync_data()
                .map_err(|e| StoreError::io("fdatasync", &path, e));
            if result.is_ok() && sync_dir {
                result = self
                    .fs
                    .sync_dir(&self.dir)
                    .map_err(|e| StoreError::io("fsync directory", &self.dir, e));
            }

            st = self.lock();
            match result {
                Ok(()) if st.poison.is_none() => {
                    st.durable = target;
                    (self.notify)(SyncEvent::Synced(target));
                    self.done.notify_all();
                }
                Ok(()) => {}
                Err(e) => self.poison_locked(&mut st, e),
            }
        }
    }
}
