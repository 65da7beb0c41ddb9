//! The [`Consensus`] adapter over raft-rs's `RawNode`, and raft messages in our own wire form.
//!
//! raft-rs's messages are protobuf structs; protobuf never goes on the wire. An outgoing
//! `eraftpb::Message` is converted into a [`WireMessage`] (serde, rmp-encoded with the rest of
//! the group's bodies), and an incoming one is converted back only after validation: a known
//! message type that replicas exchange, sender and destination matching the link it came on,
//! contiguous entries of normal type, a snapshot whose configuration is the group's and whose
//! data decodes. Untrusted bytes are never parsed by rust-protobuf (RUSTSEC-2024-0437).
//!
//! # What raft-rs must never be stepped with
//!
//! raft-rs trusts its peers: several messages a replica could send make it abort (`fatal!`) or
//! overflow. Each is refused before stepping (the group then returns a `BodyError`, which the
//! shell counts):
//!
//! - a term of 0: raft-rs takes it for a local message, and answering a vote request of term 0
//!   aborts ("term should be set when sending");
//! - a term above [`MAX_TERM`], or more than [`MAX_TERM_LEAD`] above ours: raft-rs adds one to
//!   the term when it campaigns, so a term near `u64::MAX` overflows (and a replica that could
//!   jump the term arbitrarily could push it there);
//! - an index (`index`, `commit`, `reject_hint`, a snapshot's, the last entry's) above
//!   [`MAX_INDEX`]: raft-rs computes `index + 1` (a progress's next index, a restored log's
//!   offset);
//! - an append after index `i > 0` with log term 0: raft-rs reads the term of an index beyond
//!   its log as 0, so the append "matches" there and commits beyond the log's end, which aborts
//!   ("to_commit is out of range"); entries of term 0 likewise;
//! - an append response at our term naming an index beyond our log: raft-rs would take the
//!   follower to have matched entries that do not exist;
//! - a snapshot request (`request_snapshot`) or a `context`: this group uses neither (no
//!   follower asks for snapshots, no read index, no leader transfer), and a vote request whose
//!   context says "leader transfer" would force elections past the leader's lease.
//!
//! What remains: a replica is still trusted to follow Raft. One that lies about what it
//! accepted or votes dishonestly can make the group lose committed entries or stall, but it can
//! no longer make another replica abort.

use raft::eraftpb::{Entry, Message, MessageType, Snapshot};
use raft::{RawNode, SnapshotStatus, StateRole};
use serde::{Deserialize, Serialize};

use super::records::{LogEntry, MAX_TERM_OR_INDEX, Record, Replay};

use super::state::SnapData;
use super::storage::{GroupStorage, from_entry, to_entry};
use super::{Committed, Consensus, ConsensusOutput, TotalConfig};
use crate::BrokerId;

/// The highest term accepted in a message: far above any real term (one per election), far
/// below where raft-rs's `term + 1` overflows.
pub(crate) const MAX_TERM: u64 = 1 << 62;

/// How far above this replica's term a message's term may be. Terms grow by one per election,
/// and pre-vote keeps a partitioned replica from inflating its own, so a replica a million
/// elections ahead is not a real one; refusing it keeps a lying replica from pushing the
/// group's term toward [`MAX_TERM`] in a few messages.
pub(crate) const MAX_TERM_LEAD: u64 = 1 << 20;

/// The highest log index a message may name: far above any real log, far below where raft-rs's
/// `index + 1` overflows.
pub(crate) const MAX_INDEX: u64 = 1 << 62;

/// A broker's raft id (raft reserves 0 for "none").
pub(crate) fn raft_id(b: BrokerId) -> u64 {
    u64::from(b.0) + 1
}

/// The broker of a raft id, if it is one.
pub(crate) fn broker_of(id: u64) -> Option<BrokerId> {
    id.checked_sub(1)
        .and_then(|n| u32::try_from(n).ok())
        .map(BrokerId)
}

/// A snapshot as it travels between replicas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct WireSnapshot {
    pub(super) index: u64,
    pub(super) term: u64,
    pub(super) voters: Vec<u64>,
    #[serde(with = "serde_bytes")]
    pub(super) data: Vec<u8>,
}

/// A raft message between replicas, in our own wire form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct WireMessage {
    pub(super) kind: u8,
    pub(super) to: u64,
    pub(super) from: u64,
    pub(super) term: u64,
    pub(super) log_term: u64,
    pub(super) index: u64,
    pub(super) entries: Vec<LogEntry>,
    pub(super) commit: u64,
    pub(super) commit_term: u64,
    pub(super) snapshot: Option<WireSnapshot>,
    pub(super) request_snapshot: u64,
    pub(super) reject: bool,
    pub(super) reject_hint: u64,
    #[serde(with = "serde_bytes")]
    pub(super) context: Vec<u8>,
}

/// The message types replicas exchange (local ones, proposals and leader transfer are not).
fn kind_of(t: MessageType) -> Option<u8> {
    Some(match t {
        MessageType::MsgAppend => 3,
        MessageType::MsgAppendResponse => 4,
        MessageType::MsgRequestVote => 5,
        MessageType::MsgRequestVoteResponse => 6,
        MessageType::MsgSnapshot => 7,
        MessageType::MsgHeartbeat => 8,
        MessageType::MsgHeartbeatResponse => 9,
        MessageType::MsgRequestPreVote => 17,
        MessageType::MsgRequestPreVoteResponse => 18,
        _ => return None,
    })
}

fn type_of(kind: u8) -> Option<MessageType> {
    Some(match kind {
        3 => MessageType::MsgAppend,
        4 => MessageType::MsgAppendResponse,
        5 => MessageType::MsgRequestVote,
        6 => MessageType::MsgRequestVoteResponse,
        7 => MessageType::MsgSnapshot,
        8 => MessageType::MsgHeartbeat,
        9 => MessageType::MsgHeartbeatResponse,
        17 => MessageType::MsgRequestPreVote,
        18 => MessageType::MsgRequestPreVoteResponse,
        _ => return None,
    })
}

impl WireMessage {
    /// The wire form of an outgoing raft message (`None` for a type replicas do not exchange).
    fn from_raft(m: &Message) -> Option<WireMessage> {
        let snapshot = m.snapshot.as_ref().filter(|_| m.has_snapshot()).map(|s| {
            let meta = s.get_metadata();
            WireSnapshot {
                index: meta.index,
                term: meta.term,
                voters: meta.get_conf_state().voters.clone(),
                data: s.data.to_vec(),
            }
        });
        Some(WireMessage {
            kind: kind_of(m.get_msg_type())?,
            to: m.to,
            from: m.from,
            term: m.term,
            log_term: m.log_term,
            index: m.index,
            entries: m.entries.iter().map(from_entry).collect(),
            commit: m.commit,
            commit_term: m.commit_term,
            snapshot,
            request_snapshot: m.request_snapshot,
            reject: m.reject,
            reject_hint: m.reject_hint,
            context: m.context.to_vec(),
        })
    }
}

/// The raft-rs node of one replica.
pub(crate) struct RaftNode {
    raw: RawNode<GroupStorage>,
    me: u64,
    voters: Vec<u64>,
    seed: u64,
}

impl std::fmt::Debug for RaftNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftNode")
            .field("me", &self.me)
            .field("term", &self.raw.raft.term)
            .field("state", &self.raw.raft.state)
            .field("leader", &self.raw.raft.leader_id)
            .finish()
    }
}

/// What a replica recovered from its records: the snapshot to restore the state machine from
/// and the committed entries after it, to apply.
pub(crate) struct Recovered {
    pub(crate) snap_index: u64,
    pub(crate) snap_data: Vec<u8>,
    pub(crate) committed: Vec<Committed>,
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl RaftNode {
    /// The node of replica `me`, rebuilt from its records.
    pub(crate) fn new(
        me: BrokerId,
        voters: &[BrokerId],
        config: &TotalConfig,
        replay: Replay,
    ) -> Result<(RaftNode, Recovered), String> {
        SnapData::decode(&replay.snap_data)?;
        let voter_ids: Vec<u64> = voters.iter().map(|b| raft_id(*b)).collect();
        let storage = GroupStorage::from_replay(&replay, voter_ids.clone());
        let commit = storage.hard_state().commit;
        let committed = storage
            .slice(storage.first(), commit)
            .iter()
            .map(|e| Committed {
                index: e.index,
                term: e.term,
                data: e.data.to_vec(),
            })
            .collect();
        let recovered = Recovered {
            snap_index: storage.snapshot_index(),
            snap_data: storage.snapshot_data().to_vec(),
            committed,
        };
        let mut c = raft::Config::new(raft_id(me));
        c.election_tick = config.election_ticks;
        c.heartbeat_tick = config.heartbeat_ticks;
        c.check_quorum = true;
        c.pre_vote = true;
        c.applied = commit;
        // Appends stay within a peer link's frame (an entry is itself bounded the same way).
        c.max_size_per_msg = crate::group::BODY_BYTES as u64;
        c.max_inflight_msgs = 256;
        c.max_uncommitted_size = 64 << 20;
        c.validate().map_err(|e| format!("bad raft config: {e}"))?;
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let raw = RawNode::new(&c, storage, &logger).map_err(|e| format!("raft: {e}"))?;
        let mut node = RaftNode {
            raw,
            me: raft_id(me),
            voters: voter_ids,
            seed: config.seed,
        };
        node.fix_timeout();
        Ok((node, recovered))
    }

    /// raft-rs draws election timeouts from the thread's random generator; replace the draw
    /// with one derived from the seed, the node and its state, so a seed means one run.
    fn fix_timeout(&mut self) {
        let r = &mut self.raw.raft;
        let et = r.election_timeout().max(1);
        let role = match r.state {
            StateRole::Follower => 1,
            StateRole::Candidate => 2,
            StateRole::Leader => 3,
            StateRole::PreCandidate => 4,
        };
        let h = mix(self.seed ^ mix(self.me ^ mix(r.term ^ mix(role ^ (r.leader_id << 8)))));
        let t = et + (h % et as u64) as usize;
        if r.randomized_election_timeout() != t {
            r.set_randomized_election_timeout(t);
        }
    }

    /// Validates an incoming message from broker `from` and converts it to raft's form.
    fn to_raft(&self, from: BrokerId, w: WireMessage) -> Result<Message, String> {
        let t = type_of(w.kind).ok_or_else(|| format!("unknown raft message type {}", w.kind))?;
        if w.from != raft_id(from) || !self.voters.contains(&w.from) {
            return Err("raft message from a broker that is not its sender or not a voter".into());
        }
        if w.to != self.me {
            return Err("raft message for another replica".into());
        }
        self.check_bounds(t, &w)?;
        // Terms and indexes are bounded as the records are: raft-rs adds one to them unchecked.
        let numbers = [
            w.term,
            w.log_term,
            w.index,
            w.commit,
            w.commit_term,
            w.request_snapshot,
            w.reject_hint,
        ];
        let entries = w.entries.iter().flat_map(|e| [e.term, e.index]);
        let snapshot = w.snapshot.iter().flat_map(|s| [s.index, s.term]);
        if let Some(v) = numbers
            .into_iter()
            .chain(entries)
            .chain(snapshot)
            .find(|v| *v > MAX_TERM_OR_INDEX)
        {
            return Err(format!(
                "raft message with a term or index ({v}) beyond {MAX_TERM_OR_INDEX}"
            ));
        }
        if t == MessageType::MsgAppend {
            if w.index > 0 && w.log_term == 0 {
                return Err("append after an entry of term 0".into());
            }
            let mut term = w.log_term.max(1);
            for (i, e) in w.entries.iter().enumerate() {
                let want = w.index.checked_add(1 + i as u64);
                if want != Some(e.index) || e.term < term || e.term > w.term {
                    return Err("append entries are not contiguous".into());
                }
                term = e.term;
            }
            if w.entries.last().is_some_and(|e| e.index > MAX_INDEX) {
                return Err("append beyond the largest index".into());
            }
        } else if !w.entries.is_empty() {
            return Err("entries in a message that carries none".into());
        }
        if t == MessageType::MsgHeartbeat && w.commit > self.raw.store().last() {
            return Err("heartbeat commits beyond the log".into());
        }
        let mut m = Message::default();
        m.set_msg_type(t);
        match (t, w.snapshot) {
            (MessageType::MsgSnapshot, Some(s)) => {
                let mut vs = s.voters.clone();
                vs.sort_unstable();
                let mut ours = self.voters.clone();
                ours.sort_unstable();
                if vs != ours {
                    return Err("snapshot of another configuration".into());
                }
                if s.index == 0 || s.term == 0 || s.term > w.term {
                    return Err("snapshot of index or term 0".into());
                }
                if s.index > MAX_INDEX {
                    return Err("snapshot beyond the largest index".into());
                }
                SnapData::decode(&s.data)?;
                let mut snap = Snapshot {
                    data: s.data.into(),
                    ..Snapshot::default()
                };
                let meta = snap.mut_metadata();
                meta.index = s.index;
                meta.term = s.term;
                meta.mut_conf_state().voters = s.voters;
                m.set_snapshot(snap);
            }
            (MessageType::MsgSnapshot, None) => return Err("snapshot message without one".into()),
            (_, Some(_)) => return Err("snapshot in a message that carries none".into()),
            (_, None) => {}
        }
        m.to = w.to;
        m.from = w.from;
        m.term = w.term;
        m.log_term = w.log_term;
        m.index = w.index;
        m.entries = w
            .entries
            .iter()
            .map(to_entry)
            .collect::<Vec<Entry>>()
            .into();
        m.commit = w.commit;
        m.commit_term = w.commit_term;
        m.request_snapshot = w.request_snapshot;
        m.reject = w.reject;
        m.reject_hint = w.reject_hint;
        m.context = w.context.into();
        Ok(m)
    }

    /// The checks on terms, indexes and unused fields that keep raft-rs from aborting or
    /// overflowing (see the module docs).
    fn check_bounds(&self, t: MessageType, w: &WireMessage) -> Result<(), String> {
        let ours = self.raw.raft.term;
        if w.term == 0 {
            return Err("raft message without a term".into());
        }
        if w.term > MAX_TERM || w.term > ours.saturating_add(MAX_TERM_LEAD) {
            return Err(format!(
                "raft term {} implausibly far above ours ({ours})",
                w.term
            ));
        }
        if [w.index, w.commit, w.reject_hint]
            .iter()
            .any(|&i| i > MAX_INDEX)
        {
            return Err("raft index beyond the largest index".into());
        }
        if w.request_snapshot != 0 || !w.context.is_empty() {
            return Err("raft message with a snapshot request or a context".into());
        }
        if t == MessageType::MsgAppendResponse && w.term == ours {
            let last = self.raw.raft.raft_log.last_index();
            if w.index > last || w.reject_hint > last {
                return Err("append response beyond our log".into());
            }
        }
        Ok(())
    }

    fn wire(msgs: Vec<Message>, out: &mut Vec<(BrokerId, WireMessage)>, snaps: &mut Vec<u64>) {
        for m in msgs {
            if m.get_msg_type() == MessageType::MsgSnapshot {
                snaps.push(m.to);
            }
            if let (Some(w), Some(to)) = (WireMessage::from_raft(&m), broker_of(m.to)) {
                out.push((to, w));
            }
        }
    }
}

fn committed(es: Vec<Entry>, out: &mut Vec<Committed>) {
    out.extend(es.into_iter().map(|e| Committed {
        index: e.index,
        term: e.term,
        data: e.data.to_vec(),
    }));
}

impl Consensus for RaftNode {
    type Message = WireMessage;

    fn propose(&mut self, data: Vec<u8>) -> bool {
        if self.raw.raft.state != StateRole::Leader {
            return false;
        }
        let ok = self.raw.propose(Vec::new(), data).is_ok();
        self.fix_timeout();
        ok
    }

    fn step(&mut self, from: BrokerId, msg: WireMessage) -> Result<(), String> {
        let m = self.to_raft(from, msg)?;
        let r = self.raw.step(m).map_err(|e| format!("raft: {e}"));
        self.fix_timeout();
        r
    }

    fn tick(&mut self) {
        self.raw.tick();
        self.fix_timeout();
    }

    fn take_output(&mut self) -> Option<ConsensusOutput<WireMessage>> {
        if !self.raw.has_ready() {
            return None;
        }
        let mut out = ConsensusOutput::default();
        let mut snaps = Vec::new();
        let mut rd = self.raw.ready();
        // The leader's messages may go before its own log is durable (raft thesis 10.2.1).
        Self::wire(rd.take_messages(), &mut out.send_now, &mut snaps);
        if !rd.snapshot().is_empty() {
            let s = rd.snapshot();
            let (index, term, data) = (
                s.get_metadata().index,
                s.get_metadata().term,
                s.data.to_vec(),
            );
            self.raw.mut_store().install(index, term, data.clone());
            out.persist.push(
                Record::Install {
                    index,
                    term,
                    data: data.clone(),
                }
                .encode(),
            );
            out.install = Some((index, data));
        }
        committed(rd.take_committed_entries(), &mut out.committed);
        if !rd.entries().is_empty() {
            let es = rd.take_entries();
            // Entries raft hands over always follow the log; a gap would be a raft bug and is
            // dropped rather than panicking (the leader sends them again).
            if self.raw.mut_store().append(&es).is_ok() {
                out.persist
                    .push(Record::Entries(es.iter().map(from_entry).collect()).encode());
            }
        }
        if let Some(hs) = rd.hs() {
            let hs = hs.clone();
            self.raw.mut_store().set_hard_state(&hs);
            out.persist.push(
                Record::HardState {
                    term: hs.term,
                    vote: hs.vote,
                    commit: hs.commit,
                }
                .encode(),
            );
        }
        Self::wire(
            rd.take_persisted_messages(),
            &mut out.send_after_persist,
            &mut snaps,
        );
        let mut light = self.raw.advance(rd);
        if let Some(c) = light.commit_index() {
            self.raw.mut_store().set_commit(c);
            let hs = self.raw.store().hard_state().clone();
            out.persist.push(
                Record::HardState {
                    term: hs.term,
                    vote: hs.vote,
                    commit: hs.commit,
                }
                .encode(),
            );
        }
        Self::wire(
            light.take_messages(),
            &mut out.send_after_persist,
            &mut snaps,
        );
        committed(light.take_committed_entries(), &mut out.committed);
        self.raw.advance_apply();
        // A snapshot sent may be lost: report it finished at once, so the follower is probed
        // and, if it did not get it, rejects and is sent one again.
        for to in snaps {
            self.raw.report_snapshot(to, SnapshotStatus::Finish);
        }
        self.fix_timeout();
        Some(out)
    }

    fn leader(&self) -> Option<BrokerId> {
        match self.raw.raft.leader_id {
            0 => None,
            id => broker_of(id),
        }
    }

    fn term(&self) -> u64 {
        self.raw.raft.term
    }

    fn is_leader(&self) -> bool {
        self.raw.raft.state == StateRole::Leader
    }

    fn log_len(&self) -> u64 {
        let s = self.raw.store();
        (s.last().saturating_add(1)).saturating_sub(s.first())
    }

    fn compact(&mut self, index: u64, data: Vec<u8>) -> Option<Vec<u8>> {
        // Never compact past what raft has applied.
        if index > self.raw.raft.raft_log.applied {
            return None;
        }
        let term = self.raw.mut_store().compact(index, data.clone())?;
        Some(Record::Compact { index, term, data }.encode())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_zero_is_none() {
        assert_eq!(broker_of(raft_id(BrokerId(7))), Some(BrokerId(7)));
        assert_eq!(broker_of(0), None);
        assert_eq!(broker_of(u64::MAX), None);
    }
}
