//! An in-memory file system for tests that knows what a crash keeps (test builds only).
//!
//! Each file has its current bytes and the bytes its last successful `sync_data` made durable.
//! Directory entries are kept twice: the live ones, and the durable ones that only a
//! `sync_dir` of their directory updates — so a creation, rename or removal that was never
//! followed by a directory fsync is undone by a crash. (Directories themselves are created
//! durably; the log never relies on that.)
//!
//! [`SimFs::crash`] turns the durable state into the live state, optionally keeping a prefix of
//! each file's unsynced appended bytes and some garbage after it (a torn write), and ends every
//! handle opened before the crash: the crashed process's log and its sync thread then fail on
//! every call, and a test reopens through [`SimFs::reboot`]. Faults: the Nth fsync fails (and,
//! like Linux after a writeback error, later fsyncs of that file claim success without making
//! anything durable), writes fail with `ENOSPC` once a byte budget is spent, and a crash can be
//! scheduled before the Nth mutating operation, so it lands inside any multi-step operation.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::fs::{Fs, FsFile, OpenMode};

/// What a crash keeps of one file's unsynced appended bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Tear {
    /// How many of the unsynced appended bytes survive (clamped to what there is).
    pub(crate) keep: usize,
    /// Bytes that land after them, as if a sector had been half written.
    pub(crate) garbage: Vec<u8>,
}

/// Decides the tear of each file at a crash, from its path and its count of unsynced appended
/// bytes (only asked about files that have some).
pub(crate) type TearFn = Box<dyn FnMut(&Path, usize) -> Tear + Send>;

/// The simulated file system: a handle on shared state, valid until the next crash.
pub(crate) struct SimFs {
    state: Arc<Mutex<State>>,
    /// The crash generation this handle was made in; after a crash it only returns errors.
    generation: u64,
}

#[derive(Default)]
struct State {
    generation: u64,
    dirs: BTreeSet<PathBuf>,
    live: BTreeMap<PathBuf, u64>,
    durable: BTreeMap<PathBuf, u64>,
    inodes: HashMap<u64, Inode>,
    next_inode: u64,
    /// Fsyncs (of files and directories) still allowed to succeed before one fails.
    syncs_until_failure: Option<u64>,
    /// Bytes that writes may still add before `ENOSPC`.
    space: Option<u64>,
    /// Mutating operations still allowed before a scheduled crash, and its tear.
    crash_at: Option<(u64, TearFn)>,
    /// Successful fsyncs so far (files and directories).
    syncs: u64,
}

#[derive(Default, Clone)]
struct Inode {
    data: Vec<u8>,
    synced: Vec<u8>,
    /// An fsync of this file failed: later ones report success but persist nothing.
    sync_broken: bool,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

fn crashed() -> io::Error {
    io::Error::other("simulated crash: this handle belongs to a process that died")
}

impl SimFs {
    /// An empty file system.
    pub(crate) fn new() -> Arc<SimFs> {
        Arc::new(SimFs {
            state: Arc::new(Mutex::new(State::default())),
            generation: 0,
        })
    }

    /// A handle for the process started after the last crash.
    pub(crate) fn reboot(&self) -> Arc<SimFs> {
        let generation = lock(&self.state).generation;
        Arc::new(SimFs {
            state: Arc::clone(&self.state),
            generation,
        })
    }

    /// Crashes now: only durable state survives, plus what `tear` keeps of unsynced appends.
    pub(crate) fn crash(&self, tear: &mut dyn FnMut(&Path, usize) -> Tear) {
        lock(&self.state).crash(tear);
    }

    /// Crashes keeping exactly the durable state.
    pub(crate) fn crash_clean(&self) {
        self.crash(&mut |_, _| Tear::default());
    }

    /// Schedules a crash instead of the mutating operation after the next `ops` ones.
    pub(crate) fn crash_after_ops(&self, ops: u64, tear: TearFn) {
        lock(&self.state).crash_at = Some((ops, tear));
    }

    /// Makes the fsync after the next `ok` successful ones fail with `EIO`.
    pub(crate) fn fail_sync_after(&self, ok: u64) {
        lock(&self.state).syncs_until_failure = Some(ok);
    }

    /// Lets writes add only `bytes` more bytes; beyond that they fail with `ENOSPC`.
    pub(crate) fn limit_space(&self, bytes: u64) {
        lock(&self.state).space = Some(bytes);
    }

    /// How many crashes there have been (a handle from before the last one is dead).
    pub(crate) fn generation(&self) -> u64 {
        lock(&self.state).generation
    }

    /// How many fsyncs have succeeded.
    pub(crate) fn syncs(&self) -> u64 {
        lock(&self.state).syncs
    }

    /// The live contents of a file, if it exists.
    pub(crate) fn contents(&self, path: &Path) -> Option<Vec<u8>> {
        let st = lock(&self.state);
        let inode = st.live.get(path)?;
        st.inodes.get(inode).map(|i| i.data.clone())
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> io::Result<T>) -> io::Result<T> {
        let mut st = lock(&self.state);
        if st.generation != self.generation {
            return Err(crashed());
        }
        f(&mut st)
    }

    fn mutate<T>(&self, f: impl FnOnce(&mut State) -> io::Result<T>) -> io::Result<T> {
        self.with(|st| {
            st.tick()?;
            f(st)
        })
    }
}

impl State {
    /// Counts one mutating operation; crashes instead of it if one is scheduled.
    fn tick(&mut self) -> io::Result<()> {
        match self.crash_at.take() {
            Some((0, mut tear)) => {
                self.crash(&mut *tear);
                Err(crashed())
            }
            Some((n, tear)) => {
                self.crash_at = Some((n - 1, tear));
                Ok(())
            }
            None => Ok(()),
        }
    }

    fn sync_fault(&mut self) -> io::Result<()> {
        match self.syncs_until_failure {
            Some(0) => {
                self.syncs_until_failure = None;
                Err(io::Error::other("simulated EIO on fsync"))
            }
            Some(n) => {
                self.syncs_until_failure = Some(n - 1);
                self.syncs += 1;
                Ok(())
            }
            None => {
                self.syncs += 1;
                Ok(())
            }
        }
    }

    fn crash(&mut self, tear: &mut dyn FnMut(&Path, usize) -> Tear) {
        let mut inodes = HashMap::new();
        let mut renumbered = HashMap::new();
        let mut entries = BTreeMap::new();
        for (path, old) in &self.durable {
            let inode = *renumbered.entry(*old).or_insert_with(|| {
                let fresh = self.next_inode;
                self.next_inode += 1;
                fresh
            });
            if let Entry::Vacant(slot) = inodes.entry(inode) {
                let before = self.inodes.get(old).cloned().unwrap_or_default();
                let mut data = before.synced.clone();
                let appended = before.data.len() > data.len()
                    && before.data.starts_with(&data)
                    && !before.sync_broken;
                if appended {
                    let extra = &before.data[data.len()..];
                    let t = tear(path, extra.len());
                    data.extend_from_slice(&extra[..t.keep.min(extra.len())]);
                    data.extend_from_slice(&t.garbage);
                }
                slot.insert(Inode {
                    synced: data.clone(),
                    data,
                    sync_broken: false,
                });
            }
            entries.insert(path.clone(), inode);
        }
        self.inodes = inodes;
        self.live = entries.clone();
        self.durable = entries;
        self.generation += 1;
        self.crash_at = None;
    }

    fn parent_exists(&self, path: &Path) -> bool {
        path.parent().is_some_and(|p| self.dirs.contains(p))
    }
}

impl Fs for SimFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.with(|st| {
            for d in dir.ancestors() {
                st.dirs.insert(d.to_path_buf());
            }
            Ok(())
        })
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.with(|st| {
            if !st.dirs.contains(dir) {
                return Err(io::ErrorKind::NotFound.into());
            }
            Ok(st
                .live
                .keys()
                .filter(|p| p.parent() == Some(dir))
                .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
                .collect())
        })
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn FsFile>> {
        let open = |st: &mut State| {
            if !st.parent_exists(path) {
                return Err(io::Error::from(io::ErrorKind::NotFound));
            }
            let inode = match (st.live.get(path).copied(), mode) {
                (Some(i), OpenMode::Existing) => i,
                (None, OpenMode::Existing) => return Err(io::ErrorKind::NotFound.into()),
                (Some(_), OpenMode::CreateNew) => return Err(io::ErrorKind::AlreadyExists.into()),
                (Some(i), OpenMode::Truncate) => {
                    if let Some(inode) = st.inodes.get_mut(&i) {
                        inode.data.clear();
                    }
                    i
                }
                (None, OpenMode::CreateNew | OpenMode::Truncate) => {
                    let i = st.next_inode;
                    st.next_inode += 1;
                    st.inodes.insert(i, Inode::default());
                    st.live.insert(path.to_path_buf(), i);
                    i
                }
            };
            Ok(inode)
        };
        let inode = if mode == OpenMode::Existing {
            self.with(open)?
        } else {
            self.mutate(open)?
        };
        Ok(Arc::new(SimFile {
            state: Arc::clone(&self.state),
            generation: self.generation,
            inode,
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.mutate(|st| {
            if !st.parent_exists(to) {
                return Err(io::ErrorKind::NotFound.into());
            }
            let inode = st.live.remove(from).ok_or(io::ErrorKind::NotFound)?;
            st.live.insert(to.to_path_buf(), inode);
            Ok(())
        })
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        self.mutate(|st| {
            st.live.remove(path).ok_or(io::ErrorKind::NotFound)?;
            Ok(())
        })
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.mutate(|st| {
            st.sync_fault()?;
            st.durable.retain(|p, _| p.parent() != Some(dir));
            let entries: Vec<_> = st
                .live
                .iter()
                .filter(|(p, _)| p.parent() == Some(dir))
                .map(|(p, i)| (p.clone(), *i))
                .collect();
            st.durable.extend(entries);
            Ok(())
        })
    }
}

/// An open simulated file.
struct SimFile {
    state: Arc<Mutex<State>>,
    generation: u64,
    inode: u64,
}

impl SimFile {
    fn with<T>(
        &self,
        mutating: bool,
        f: impl FnOnce(&mut State, u64) -> io::Result<T>,
    ) -> io::Result<T> {
        let mut st = lock(&self.state);
        if st.generation != self.generation {
            return Err(crashed());
        }
        if mutating {
            st.tick()?;
        }
        f(&mut st, self.inode)
    }
}

fn inode(st: &mut State, i: u64) -> io::Result<&mut Inode> {
    st.inodes
        .get_mut(&i)
        .ok_or_else(|| io::Error::other("simulated file vanished"))
}

impl FsFile for SimFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.with(false, |st, i| {
            let data = &inode(st, i)?.data;
            let start = usize::try_from(offset)
                .unwrap_or(usize::MAX)
                .min(data.len());
            let n = buf.len().min(data.len() - start);
            buf[..n].copy_from_slice(&data[start..start + n]);
            Ok(n)
        })
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.with(true, |st, i| {
            let offset = usize::try_from(offset).map_err(io::Error::other)?;
            let current = inode(st, i)?.data.len();
            let growth = (offset + buf.len()).saturating_sub(current) as u64;
            let (fits, full) = match st.space {
                Some(space) if space < growth => {
                    st.space = Some(0);
                    (buf.len() - (growth - space) as usize, true)
                }
                Some(space) => {
                    st.space = Some(space - growth);
                    (buf.len(), false)
                }
                None => (buf.len(), false),
            };
            let data = &mut inode(st, i)?.data;
            if data.len() < offset + fits {
                data.resize(offset + fits, 0);
            }
            data[offset..offset + fits].copy_from_slice(&buf[..fits]);
            if full {
                Err(io::Error::from(io::ErrorKind::StorageFull))
            } else {
                Ok(())
            }
        })
    }

    fn sync_data(&self) -> io::Result<()> {
        self.with(true, |st, i| {
            if let Err(e) = st.sync_fault() {
                inode(st, i)?.sync_broken = true;
                return Err(e);
            }
            let file = inode(st, i)?;
            if !file.sync_broken {
                file.synced = file.data.clone();
            }
            Ok(())
        })
    }

    fn len(&self) -> io::Result<u64> {
        self.with(false, |st, i| Ok(inode(st, i)?.data.len() as u64))
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.with(true, |st, i| {
            let len = usize::try_from(len).map_err(io::Error::other)?;
            inode(st, i)?.data.resize(len, 0);
            Ok(())
        })
    }
}
