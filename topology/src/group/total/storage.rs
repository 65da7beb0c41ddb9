//! The replica's Raft log in memory: raft-rs's `Storage` over what the records describe.
//!
//! It mirrors the durable records exactly: every change made here is also emitted as a
//! [`Record`](super::records::Record), so a replica rebuilt from its records has this storage.
//! Unlike raft's `MemStorage` it never panics on an index out of range (it answers with an
//! error) and it keeps the state-machine snapshot's data, so a lagging follower can be sent one.

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError};

use super::records::{LogEntry, Replay};

/// The replica's Raft log: hard state, the latest snapshot and the entries after it.
#[derive(Debug)]
pub(crate) struct GroupStorage {
    hard: HardState,
    conf: ConfState,
    snap_index: u64,
    snap_term: u64,
    snap_data: Vec<u8>,
    /// Entries from `snap_index + 1`, contiguous.
    entries: Vec<Entry>,
}

pub(crate) fn to_entry(e: &LogEntry) -> Entry {
    Entry {
        term: e.term,
        index: e.index,
        data: e.data.clone().into(),
        ..Entry::default()
    }
}

pub(crate) fn from_entry(e: &Entry) -> LogEntry {
    LogEntry {
        term: e.term,
        index: e.index,
        data: e.data.to_vec(),
    }
}

impl GroupStorage {
    /// The storage a replay describes, for a group whose voters are `voters` (raft ids).
    pub(crate) fn from_replay(r: &Replay, voters: Vec<u64>) -> GroupStorage {
        let hard = HardState {
            term: r.term.max(r.snap_term),
            vote: r.vote,
            // The commit persisted may run ahead of the entries that reached the disk only if
            // records were lost; committing less than was committed is safe (it is learned
            // again).
            commit: r.commit.clamp(r.snap_index, r.last_index()),
            ..HardState::default()
        };
        let conf = ConfState {
            voters,
            ..ConfState::default()
        };
        GroupStorage {
            hard,
            conf,
            snap_index: r.snap_index,
            snap_term: r.snap_term,
            snap_data: r.snap_data.clone(),
            entries: r.entries.iter().map(to_entry).collect(),
        }
    }

    pub(crate) fn set_hard_state(&mut self, hs: &HardState) {
        self.hard = hs.clone();
    }

    pub(crate) fn set_commit(&mut self, commit: u64) {
        self.hard.commit = commit;
    }

    pub(crate) fn hard_state(&self) -> &HardState {
        &self.hard
    }

    /// Appends entries (replacing any at the same indexes and after). Entries raft hands over
    /// always fit; ones that do not (a gap) are refused.
    pub(crate) fn append(&mut self, es: &[Entry]) -> Result<(), String> {
        let es: Vec<&Entry> = es.iter().filter(|e| e.index > self.snap_index).collect();
        let Some(first) = es.first() else {
            return Ok(());
        };
        if first.index > self.last().saturating_add(1) {
            return Err(format!("append at {} after {}", first.index, self.last()));
        }
        let keep = (first.index - self.snap_index - 1) as usize;
        self.entries.truncate(keep);
        self.entries.extend(es.into_iter().cloned());
        Ok(())
    }

    /// Installs a snapshot from the leader: the whole log is replaced.
    pub(crate) fn install(&mut self, index: u64, term: u64, data: Vec<u8>) {
        self.entries.clear();
        self.snap_index = index;
        self.snap_term = term;
        self.snap_data = data;
        self.hard.term = self.hard.term.max(term);
        self.hard.commit = self.hard.commit.max(index);
    }

    /// Drops the entries up to `index` (which must be held), keeping `data` as the snapshot.
    pub(crate) fn compact(&mut self, index: u64, data: Vec<u8>) -> Option<u64> {
        if index <= self.snap_index || index > self.last() {
            return None;
        }
        let term = self.term_of(index)?;
        let drop = (index - self.snap_index) as usize;
        self.entries.drain(..drop);
        self.snap_index = index;
        self.snap_term = term;
        self.snap_data = data;
        Some(term)
    }

    pub(crate) fn first(&self) -> u64 {
        self.snap_index.saturating_add(1)
    }

    pub(crate) fn last(&self) -> u64 {
        self.snap_index.saturating_add(self.entries.len() as u64)
    }

    pub(crate) fn snapshot_index(&self) -> u64 {
        self.snap_index
    }

    pub(crate) fn term_of(&self, idx: u64) -> Option<u64> {
        if idx == self.snap_index {
            return Some(self.snap_term);
        }
        if idx < self.snap_index || idx > self.last() {
            return None;
        }
        self.entries
            .get((idx - self.snap_index - 1) as usize)
            .map(|e| e.term)
    }

    /// Committed entries in `lo..=hi` that are held.
    pub(crate) fn slice(&self, lo: u64, hi: u64) -> &[Entry] {
        let lo = lo.max(self.first());
        let hi = hi.min(self.last());
        if lo > hi {
            return &[];
        }
        let a = (lo - self.snap_index - 1) as usize;
        let b = (hi - self.snap_index) as usize;
        self.entries.get(a..b).unwrap_or(&[])
    }

    pub(crate) fn snapshot_data(&self) -> &[u8] {
        &self.snap_data
    }
}

impl raft::Storage for GroupStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(self.hard.clone(), self.conf.clone()))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low <= self.snap_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last().saturating_add(1) || low > high {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let a = (low - self.snap_index - 1) as usize;
        let b = (high - self.snap_index - 1) as usize;
        let mut out = self
            .entries
            .get(a..b)
            .ok_or(raft::Error::Store(StorageError::Unavailable))?
            .to_vec();
        raft::util::limit_size(&mut out, max_size.into());
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx < self.snap_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        self.term_of(idx)
            .ok_or(raft::Error::Store(StorageError::Unavailable))
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.first())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last())
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        if self.snap_index == 0 || self.snap_index < request_index {
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        let mut s = Snapshot {
            data: self.snap_data.clone().into(),
            ..Snapshot::default()
        };
        let meta = s.mut_metadata();
        meta.index = self.snap_index;
        meta.term = self.snap_term;
        meta.set_conf_state(self.conf.clone());
        Ok(s)
    }
}
