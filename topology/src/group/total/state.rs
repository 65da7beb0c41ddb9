//! The replicated state machine: committed entries applied in log order hand out positions.
//!
//! Every replica applies the same committed entries in the same order, so every replica hands
//! out the same positions: each publication that is not a duplicate gets
//! `Position { epoch: entry term, seq: next }`, `seq` counting 1, 2, 3, … with no gap across
//! epochs. A publication whose producer sequence is not above the last one applied for its
//! producer is a duplicate (a retry) and gets no position. The dedup table, the next sequence
//! and the epoch are the state: they are what a snapshot holds.

use std::collections::{BTreeMap, VecDeque};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::BrokerId;
use crate::group::Position;

/// One publication as it travels to the sequencer and sits in the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Publication<M> {
    /// The access broker the producer published at (where the ack goes).
    pub(crate) access: BrokerId,
    /// The producer's name.
    pub(crate) producer: String,
    /// The producer's sequence (increasing per producer).
    pub(crate) pseq: u64,
    /// The message.
    pub(crate) msg: M,
}

/// What a log entry holds: publications proposed together by one replica.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Batch<M> {
    /// The replica that proposed the entry: it sends the acks when it applies it.
    pub(crate) proposer: BrokerId,
    /// The publications, in the access brokers' publish order.
    pub(crate) pubs: Vec<Publication<M>>,
}

impl<M: Serialize + DeserializeOwned> Batch<M> {
    pub(crate) fn encode(&self) -> Vec<u8> {
        rmp_serde::to_vec(self).unwrap_or_default()
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<Batch<M>> {
        rmp_serde::from_slice(bytes).ok()
    }
}

/// The state machine's durable part (what a snapshot holds).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub(crate) struct SnapData {
    /// The next sequence to hand out.
    pub(crate) next_seq: u64,
    /// The term of the last entry applied.
    pub(crate) epoch: u64,
    /// The last position handed out (if any).
    pub(crate) last: Option<Position>,
    /// Per producer, the highest producer sequence applied.
    pub(crate) dedup: BTreeMap<String, u64>,
}

impl SnapData {
    pub(crate) fn encode(&self) -> Vec<u8> {
        rmp_serde::to_vec(self).unwrap_or_default()
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<SnapData, String> {
        if bytes.is_empty() {
            return Ok(SnapData {
                next_seq: 1,
                ..SnapData::default()
            });
        }
        let d: SnapData =
            rmp_serde::from_slice(bytes).map_err(|e| format!("bad snapshot data: {e}"))?;
        if d.next_seq == 0
            || d.next_seq == u64::MAX
            || d.last
                .is_some_and(|p| p.seq.checked_add(1) != Some(d.next_seq))
        {
            return Err("inconsistent snapshot data".into());
        }
        Ok(d)
    }
}

/// An ack owed to an access broker: `producer`'s publications there are committed through
/// `through`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ack {
    pub(crate) access: BrokerId,
    pub(crate) producer: String,
    pub(crate) through: u64,
}

/// The state machine at one replica, plus the recent messages it keeps to serve readers.
#[derive(Debug)]
pub(crate) struct Applied<M> {
    me: BrokerId,
    data: SnapData,
    applied_index: u64,
    /// The last `retain` positioned messages, contiguous, ending at `data.next_seq - 1`.
    retained: VecDeque<(Position, M)>,
    retain: usize,
    /// A copy of the state taken every `retain / 2` entries: the point the log is compacted to.
    checkpoint: Option<(u64, Vec<u8>)>,
}

impl<M: Clone + Serialize + DeserializeOwned> Applied<M> {
    /// The state restored from a snapshot taken at `index` (empty data: the initial state).
    pub(crate) fn restore(
        me: BrokerId,
        index: u64,
        data: &[u8],
        retain: usize,
    ) -> Result<Self, String> {
        Ok(Applied {
            me,
            data: SnapData::decode(data)?,
            applied_index: index,
            retained: VecDeque::new(),
            retain: retain.max(1),
            checkpoint: None,
        })
    }

    /// Applies a committed entry. Returns the acks this replica owes (it proposed the entry).
    /// New positioned messages are appended to the retained window (see [`Self::since`]).
    pub(crate) fn apply(&mut self, index: u64, term: u64, data: &[u8]) -> Vec<Ack> {
        if index <= self.applied_index {
            return Vec::new();
        }
        self.applied_index = index;
        self.data.epoch = self.data.epoch.max(term);
        let mut acks: Vec<Ack> = Vec::new();
        if data.is_empty() {
            return acks; // the leader's no-op entry
        }
        // An entry that does not decode is skipped the same way by every replica.
        let Some(batch) = Batch::<M>::decode(data) else {
            return acks;
        };
        for p in batch.pubs {
            let last = self.data.dedup.get(&p.producer).copied();
            if last.is_none_or(|l| p.pseq > l) {
                self.data.dedup.insert(p.producer.clone(), p.pseq);
                let pos = Position {
                    epoch: term,
                    seq: self.data.next_seq,
                };
                self.data.next_seq = self.data.next_seq.saturating_add(1);
                self.data.last = Some(pos);
                self.retained.push_back((pos, p.msg));
                if self.retained.len() > self.retain {
                    self.retained.pop_front();
                }
            }
            if batch.proposer == self.me {
                // New or a duplicate of one applied before: either way committed.
                match acks
                    .iter_mut()
                    .find(|a| a.access == p.access && a.producer == p.producer)
                {
                    Some(a) => a.through = a.through.max(p.pseq),
                    None => acks.push(Ack {
                        access: p.access,
                        producer: p.producer,
                        through: p.pseq,
                    }),
                }
            }
        }
        acks
    }

    /// Takes a checkpoint if `every` entries have been applied since the last one.
    pub(crate) fn maybe_checkpoint(&mut self, every: u64) {
        let last = self.checkpoint.as_ref().map_or(0, |c| c.0);
        if self.applied_index >= last.saturating_add(every.max(1)) {
            self.checkpoint = Some((self.applied_index, self.data.encode()));
        }
    }

    pub(crate) fn checkpoint(&self) -> Option<&(u64, Vec<u8>)> {
        self.checkpoint.as_ref()
    }

    /// Replaces the state with a snapshot installed from the leader. The retained window is
    /// emptied: the messages before the snapshot are not held here.
    pub(crate) fn install(&mut self, index: u64, data: &[u8]) -> Result<(), String> {
        let d = SnapData::decode(data)?;
        self.data = d;
        self.applied_index = index;
        self.retained.clear();
        self.checkpoint = Some((index, data.to_vec()));
        Ok(())
    }

    /// Messages held from `seq` on, at most `max`.
    pub(crate) fn since(&self, seq: u64, max: usize) -> Vec<(Position, M)> {
        let floor = self.floor();
        if seq < floor {
            return Vec::new();
        }
        let skip = (seq - floor) as usize;
        self.retained.iter().skip(skip).take(max).cloned().collect()
    }

    /// The first sequence held (the next one to hand out when nothing is held).
    pub(crate) fn floor(&self) -> u64 {
        self.retained
            .front()
            .map_or(self.data.next_seq, |m| m.0.seq)
    }

    /// The next sequence to hand out.
    pub(crate) fn next_seq(&self) -> u64 {
        self.data.next_seq
    }

    pub(crate) fn last_position(&self) -> Option<Position> {
        self.data.last
    }

    /// The highest producer sequence applied for `producer`.
    pub(crate) fn applied_pseq(&self, producer: &str) -> Option<u64> {
        self.data.dedup.get(producer).copied()
    }
}
