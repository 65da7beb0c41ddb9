//! What a replica persists: Raft's hard state, log entries, and snapshots of the state machine.
//!
//! Records are rmp-serde encoded [`Record`]s. Replaying them in order ([`Replay`]) rebuilds the
//! replica's Raft storage exactly as it was when the last record was made durable; the state
//! machine is then rebuilt from the snapshot and the committed entries after it.

use serde::{Deserialize, Serialize};

/// A Raft log entry as it is persisted and sent (our own form of raft's `eraftpb::Entry`; only
/// normal entries exist in a group, whose voters are fixed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LogEntry {
    pub(crate) term: u64,
    pub(crate) index: u64,
    #[serde(with = "serde_bytes")]
    pub(crate) data: Vec<u8>,
}

/// One durable record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Record {
    /// Raft's hard state: current term, vote, commit index.
    HardState {
        /// Current term.
        term: u64,
        /// Vote in `term` (raft id, 0 = none).
        vote: u64,
        /// Commit index.
        commit: u64,
    },
    /// Entries appended; an entry at an index already held replaces it and everything after.
    Entries(Vec<LogEntry>),
    /// Local compaction: the state machine as of `index` (of term `term`); entries up to
    /// `index` are dropped, later entries kept.
    Compact {
        /// Last index the snapshot covers.
        index: u64,
        /// Its term.
        term: u64,
        /// The encoded state machine.
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// A snapshot installed from the leader: replaces the whole log.
    Install {
        /// Last index the snapshot covers.
        index: u64,
        /// Its term.
        term: u64,
        /// The encoded state machine.
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
}

impl Record {
    pub(crate) fn encode(&self) -> Vec<u8> {
        // Encoding plain structs into a Vec cannot fail.
        rmp_serde::to_vec(self).unwrap_or_default()
    }

    /// Decodes a record, refusing terms and indexes beyond [`MAX_TERM_OR_INDEX`].
    pub(crate) fn decode(bytes: &[u8]) -> Result<Record, String> {
        let r: Record = rmp_serde::from_slice(bytes).map_err(|e| format!("bad record: {e}"))?;
        let mut values = match &r {
            Record::HardState { term, commit, .. } => vec![*term, *commit],
            Record::Entries(es) => es.iter().flat_map(|e| [e.term, e.index]).collect(),
            Record::Compact { index, term, .. } | Record::Install { index, term, .. } => {
                vec![*index, *term]
            }
        }
        .into_iter();
        match values.find(|v| *v > MAX_TERM_OR_INDEX) {
            Some(v) => Err(format!(
                "bad record: term or index {v} beyond the largest a log reaches ({MAX_TERM_OR_INDEX})"
            )),
            None => Ok(r),
        }
    }
}

/// The largest term or index a record may hold: 2^62, beyond any real log (a term per
/// election and an index per entry: one a nanosecond for 146 years), and far enough below
/// `u64::MAX` that raft-rs's unchecked `term + 1` and `index + 1` cannot overflow on a term
/// or index read back from disk.
pub(crate) const MAX_TERM_OR_INDEX: u64 = 1 << 62;

/// The Raft storage a run of records describes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Replay {
    pub(crate) term: u64,
    pub(crate) vote: u64,
    pub(crate) commit: u64,
    /// The latest snapshot: (index, term, data); index 0 = none.
    pub(crate) snap_index: u64,
    pub(crate) snap_term: u64,
    pub(crate) snap_data: Vec<u8>,
    /// Entries after the snapshot, contiguous from `snap_index + 1`.
    pub(crate) entries: Vec<LogEntry>,
}

impl Replay {
    /// Applies one record. A record that does not fit (a gap in the log, a non-contiguous run)
    /// is an error; nothing is changed then.
    pub(crate) fn apply(&mut self, record: Record) -> Result<(), String> {
        match record {
            Record::HardState { term, vote, commit } => {
                self.term = term;
                self.vote = vote;
                self.commit = commit.max(self.snap_index);
            }
            Record::Entries(es) => {
                for w in es.windows(2) {
                    if w[0].index.checked_add(1) != Some(w[1].index) || w[1].term < w[0].term {
                        return Err("entries record is not contiguous".into());
                    }
                }
                // Entries already covered by the snapshot are dropped.
                let es: Vec<LogEntry> = es
                    .into_iter()
                    .filter(|e| e.index > self.snap_index)
                    .collect();
                let Some(first) = es.first() else {
                    return Ok(());
                };
                let last = self.last_index();
                if first.index > last.saturating_add(1) {
                    return Err(format!(
                        "entries record starts at {} after the log's end {last}",
                        first.index
                    ));
                }
                let keep = (first.index - self.snap_index - 1) as usize;
                self.entries.truncate(keep);
                self.entries.extend(es);
            }
            Record::Compact { index, term, data } => {
                let last = self.last_index();
                if index <= self.snap_index {
                    return Ok(());
                }
                if index > last {
                    return Err(format!("compaction to {index} beyond the log's end {last}"));
                }
                let drop = (index - self.snap_index) as usize;
                self.entries.drain(..drop);
                self.snap_index = index;
                self.snap_term = term;
                self.snap_data = data;
                self.commit = self.commit.max(index);
            }
            Record::Install { index, term, data } => {
                self.entries.clear();
                self.snap_index = index;
                self.snap_term = term;
                self.snap_data = data;
                self.term = self.term.max(term);
                self.commit = self.commit.max(index);
            }
        }
        Ok(())
    }

    pub(crate) fn last_index(&self) -> u64 {
        self.snap_index.saturating_add(self.entries.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(term: u64, index: u64) -> LogEntry {
        LogEntry {
            term,
            index,
            data: vec![index as u8],
        }
    }

    #[test]
    fn replay_truncates_compacts_and_installs() {
        let mut r = Replay::default();
        r.apply(Record::Entries(vec![e(1, 1), e(1, 2), e(1, 3)]))
            .unwrap();
        r.apply(Record::Entries(vec![e(2, 3), e(2, 4)])).unwrap();
        assert_eq!(r.entries, vec![e(1, 1), e(1, 2), e(2, 3), e(2, 4)]);
        r.apply(Record::Compact {
            index: 2,
            term: 1,
            data: vec![9],
        })
        .unwrap();
        assert_eq!(r.entries, vec![e(2, 3), e(2, 4)]);
        assert_eq!(r.last_index(), 4);
        // A gap is refused and changes nothing.
        let before = r.clone();
        assert!(r.apply(Record::Entries(vec![e(2, 9)])).is_err());
        assert!(r.apply(Record::Entries(vec![e(2, 5), e(2, 7)])).is_err());
        assert_eq!(r, before);
        r.apply(Record::Install {
            index: 10,
            term: 3,
            data: vec![],
        })
        .unwrap();
        assert!(r.entries.is_empty());
        assert_eq!((r.snap_index, r.commit, r.term), (10, 10, 3));
        let rec = Record::HardState {
            term: 4,
            vote: 2,
            commit: 11,
        };
        assert_eq!(Record::decode(&rec.encode()).unwrap(), rec);
        assert!(Record::decode(&[0xc1, 0x00]).is_err());
    }

    /// `{"HardState": [u64::MAX, 2, 0]}`: the `checkpoints` fuzz target's crash (a core's own
    /// hard state with its term widened). It loaded, and the replica's first election computed
    /// `term + 1` inside raft-rs: a panic in debug builds, a wrapped term in release ones.
    const TERM_AT_MAX: &[u8] = b"\x81\xa9HardState\x93\xcf\xff\xff\xff\xff\xff\xff\xff\xff\x02\x00";

    #[test]
    fn terms_and_indexes_beyond_the_bound_are_refused() {
        let err = Record::decode(TERM_AT_MAX).expect_err("refused");
        assert!(err.contains("beyond the largest"), "{err}");
        let big = MAX_TERM_OR_INDEX + 1;
        for rec in [
            Record::HardState {
                term: 1,
                vote: 0,
                commit: big,
            },
            Record::Entries(vec![e(1, 1), e(big, 2)]),
            Record::Entries(vec![e(1, big)]),
            Record::Compact {
                index: big,
                term: 1,
                data: vec![],
            },
            Record::Install {
                index: 1,
                term: big,
                data: vec![],
            },
        ] {
            assert!(Record::decode(&rec.encode()).is_err(), "{rec:?}");
        }
        // At the bound is fine.
        let rec = Record::Install {
            index: MAX_TERM_OR_INDEX,
            term: MAX_TERM_OR_INDEX,
            data: vec![],
        };
        assert_eq!(Record::decode(&rec.encode()), Ok(rec));
    }
}
