//! Total-order groups at one broker: a Raft-replicated log whose leader is the sequencer.
//!
//! # The model
//!
//! A total-order group has a fixed set of replica brokers, its `voters` (1, 3 or 5), chosen at
//! creation. They run one Raft group (raft-rs, behind the small [`Consensus`] trait). The
//! group's log is the Raft log; its entries hold batches of publications
//! `{access broker, producer, pseq, msg}`. Applying the committed entries in log order is a
//! deterministic state machine on every replica: each publication that is not a duplicate gets
//! the position `Position { epoch: term of its entry, seq: next }`, with `seq` = 1, 2, 3, …
//! gapless across epochs. A publication whose `pseq` is not above the last one applied for its
//! producer is a retry and gets no position (producers' sequences increase). The dedup table is
//! part of the replicated state, so every replica drops the same retries.
//!
//! Every broker, replica or not, also plays two other parts:
//!
//! - **Access** (`publish`): publications are queued and sent in batches — everything pending,
//!   up to [`TotalConfig::batch_max`], one batch outstanding at a time — to the broker believed
//!   to lead (at first the first voter). A replica that does not lead answers with a leader
//!   hint. The leader proposes the batch as one entry; when the replica that proposed it
//!   applies it, it acks `(producer, through pseq)` to the access broker, which emits
//!   [`Effect::Acked`] in publish order. With no ack after [`TotalConfig::retry_after`] the
//!   batch goes again (to the leader hint, else the next voter), and at once when a new leader
//!   is learned: dedup makes retries safe (see `access.rs` for why every batch being a prefix
//!   of what is pending makes "through" true).
//! - **Reading** (`set_reading(true)`, for brokers with local members): the reader follows the
//!   committed log from a replica (itself if it is one) and emits [`Effect::Deliver`] with a
//!   position, strictly in `seq` order, no gap, no duplicate. It stalls over to another replica
//!   when the one it follows stops answering or stops making progress, from its next `seq`.
//!
//! # Why raft-rs
//!
//! raft-rs's `RawNode` is sans-IO: the application steps messages in, ticks it, and takes a
//! `Ready` of entries to persist, messages to send and entries to apply. That is exactly the
//! shape of the group cores (inputs with `now`, effects out), so the whole group runs inside
//! the deterministic simulator with virtual time and seeded randomness (the election timeout
//! draw, which raft-rs takes from the thread's generator, is replaced by one derived from
//! [`TotalConfig::seed`]). It is the consensus TiKV runs in production. openraft was the other
//! candidate: it is async, owns its runtime through its own storage and network traits, and
//! is pre-1.0; it would have to be driven from inside a task rather than stepped. The
//! [`Consensus`] trait keeps the rest of the group independent of the choice. Protobuf stays
//! inside raft-rs: messages cross the wire in our own serde form (rmp), validated before they
//! reach raft (see `raft.rs`), so untrusted bytes never meet rust-protobuf.
//!
//! # Failover: epochs, fencing, tail agreement
//!
//! The leader is the sequencer and the Raft term is the epoch. Raft runs with `check_quorum`
//! (a leader that has not heard from a majority for an election timeout steps down) and
//! `pre_vote` (a partitioned replica does not inflate terms). When the leader fails, a new one
//! is elected in a higher term: that is the new epoch. Nothing commits without a majority
//! accepting it in the current term, so an old leader that was partitioned or paused (a zombie)
//! cannot commit anything once a majority has moved on: its appends are refused for their
//! stale term, and it learns the new term from the first answer. Positions are only handed out
//! when entries are *applied*, i.e. committed, and a new leader's first entry is Raft's empty
//! entry of its own term: committing it commits the old epoch's tail (whatever of it reached
//! the new leader) first, so the old epoch's last positions are agreed before any of the new
//! epoch's. Entry terms never decrease along the log, so epochs never decrease along `seq`.
//!
//! # What a reader sees
//!
//! A reader that starts (`set_reading(true)`) delivers from the next position committed at the
//! replica it follows, then every position after it, in order. If the replicas no longer hold
//! the messages it needs (they keep the last [`TotalConfig::retain`], and a replica that was
//! sent a snapshot holds none before it), it emits [`Effect::Gap`] with the count missing and
//! carries on.
//!
//! # Durability and memory bounds
//!
//! A replica emits [`Effect::Persist`] records for Raft's hard state, appended entries,
//! compactions and installed snapshots, before the messages that depend on them (raft-rs's
//! rules: a follower's acks and votes after its log is durable; the leader's appends may go
//! first). `TotalGroup::new` replays the records and rebuilds the state machine from the last
//! snapshot and the committed entries after it. The Raft log is compacted once it holds more
//! than `retain` entries, to a checkpoint of the state machine (dedup table, next `seq`,
//! epoch) taken every `retain / 2` entries; a follower too far behind is sent that snapshot.
//! In memory a replica holds at most about `retain` entries and `retain` messages for readers;
//! the dedup table holds one entry per producer ever seen. An access broker holds its pending
//! publications until acked (see [`TotalGroup::pending`] for back-pressure); a replica holds a
//! cursor per reader following it, dropped after `reader_stall` without a renewal.
//!
//! # Trust
//!
//! Bodies are validated before use and a bad one is refused with [`BodyError`] and changes
//! nothing. Raft messages from replicas are checked for type, sender, contiguity and snapshot
//! configuration; raft-rs itself assumes its peers follow the protocol (a replica that lies
//! about committed entries can make it stop), as replicas are brokers of the same deployment.

mod access;
mod raft;
mod reader;
mod records;
mod serve;
mod state;
mod storage;
mod wire;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use self::access::Access;
use self::raft::RaftNode;
use self::reader::Reader;
use self::records::{Record, Replay};
use self::serve::Serving;
use self::state::{Applied, Batch, Publication};
use self::wire::Body;
use super::{BodyError, Effect, Position};
use crate::BrokerId;

/// A committed log entry handed to the state machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// The entry's index in the log.
    pub index: u64,
    /// The term it was proposed in: the epoch of the positions it hands out.
    pub term: u64,
    /// The entry's data (an encoded batch; empty for a leader's first entry).
    pub data: Vec<u8>,
}

/// What a [`Consensus`] asks its group to do, in this order: send `send_now`, persist
/// `persist` (durable before anything after), send `send_after_persist`, restore the state
/// machine from `install`, apply `committed`.
#[derive(Debug, Clone)]
pub struct ConsensusOutput<Msg> {
    /// Messages that may go before the records below are durable (the leader's appends).
    pub send_now: Vec<(BrokerId, Msg)>,
    /// Records to persist.
    pub persist: Vec<Vec<u8>>,
    /// Messages that may only go once the records are durable (votes, acks of appends).
    pub send_after_persist: Vec<(BrokerId, Msg)>,
    /// A snapshot installed from the leader: `(last index it covers, state machine data)`.
    pub install: Option<(u64, Vec<u8>)>,
    /// Entries committed, in log order, to apply.
    pub committed: Vec<Committed>,
}

impl<Msg> Default for ConsensusOutput<Msg> {
    fn default() -> Self {
        ConsensusOutput {
            send_now: Vec::new(),
            persist: Vec::new(),
            send_after_persist: Vec::new(),
            install: None,
            committed: Vec::new(),
        }
    }
}

/// The consensus a total-order group runs on, as small as the group needs (implemented over
/// raft-rs; see `raft.rs`). The group never looks inside messages or records.
pub trait Consensus {
    /// A message between replicas, as it goes on the wire.
    type Message: Serialize + DeserializeOwned;

    /// Proposes an entry. `false` if this replica does not lead (or the proposal was dropped).
    fn propose(&mut self, data: Vec<u8>) -> bool;

    /// A message from replica `from`; an error if it is invalid (and then nothing changed).
    fn step(&mut self, from: crate::BrokerId, msg: Self::Message) -> Result<(), String>;

    /// One tick of logical time (elections, heartbeats, quorum checks).
    fn tick(&mut self);

    /// What to do now, if anything; the consensus considers it done once taken (the group
    /// carries it out in order, through its effects).
    fn take_output(&mut self) -> Option<ConsensusOutput<Self::Message>>;

    /// The leader as known here.
    fn leader(&self) -> Option<crate::BrokerId>;

    /// The current term: the group's epoch.
    fn term(&self) -> u64;

    /// Whether this replica leads.
    fn is_leader(&self) -> bool;

    /// How many entries the log holds.
    fn log_len(&self) -> u64;

    /// Drops the log up to `index` (applied), keeping `data`, the state machine as of `index`,
    /// as its snapshot. Returns the record to persist, or `None` if there was nothing to do.
    fn compact(&mut self, index: u64, data: Vec<u8>) -> Option<Vec<u8>>;
}

/// Tuning of a [`TotalGroup`].
#[derive(Debug, Clone)]
pub struct TotalConfig {
    /// One Raft tick.
    pub tick: Duration,
    /// Election timeout, in ticks.
    pub election_ticks: usize,
    /// Heartbeat interval, in ticks.
    pub heartbeat_ticks: usize,
    /// How long an access broker waits for a commit before it sends a publication again
    /// (to the leader it knows then; duplicates are dropped by producer sequence).
    pub retry_after: Duration,
    /// How many messages the core keeps in memory to serve readers (and how many entries the
    /// Raft log holds before it is compacted).
    pub retain: usize,
    /// How many publications one proposal holds at most.
    pub batch_max: usize,
    /// How many messages a replica sends a reader that is behind in one go.
    pub reader_chunk: usize,
    /// A reader that delivers nothing for this long follows another replica.
    pub reader_stall: Duration,
    /// Seeds the election timeouts (mixed with the broker id), so that a run is reproducible.
    pub seed: u64,
}

impl Default for TotalConfig {
    fn default() -> Self {
        TotalConfig {
            tick: Duration::from_millis(100),
            election_ticks: 10,
            heartbeat_ticks: 2,
            retry_after: Duration::from_secs(2),
            retain: 1 << 20,
            batch_max: 4096,
            reader_chunk: 256,
            reader_stall: Duration::from_secs(3),
            seed: 0,
        }
    }
}

/// The replica part of a broker that is one of the voters.
#[derive(Debug)]
struct Replica<M> {
    node: RaftNode,
    state: Applied<M>,
    serving: Serving,
    next_tick: Instant,
}

/// One total-order group at one broker: a replica (if `me` is among the voters), an access
/// broker for local publishers, and a reader for local members.
#[derive(Debug)]
pub struct TotalGroup<M> {
    me: BrokerId,
    voters: Vec<BrokerId>,
    config: TotalConfig,
    replica: Option<Replica<M>>,
    access: Access<M>,
    reader: Reader,
    effects: VecDeque<Effect<M>>,
    /// Bodies for this broker's own core (a replica's own access broker or reader).
    local: VecDeque<Body<M>>,
    /// The term and leader heard of (for a broker that is not a replica).
    heard_term: u64,
    heard_leader: Option<BrokerId>,
}

fn err(from: BrokerId, reason: impl Into<String>) -> BodyError {
    BodyError {
        from,
        reason: reason.into(),
    }
}

impl<M: Clone + Serialize + DeserializeOwned> TotalGroup<M> {
    /// The group at broker `me`, whose replicas are `voters` (fixed at creation), rebuilt from
    /// the records it persisted before (empty when new).
    pub fn new(
        me: BrokerId,
        voters: &[BrokerId],
        config: TotalConfig,
        recovered: impl IntoIterator<Item = Vec<u8>>,
        now: Instant,
    ) -> Result<Self, BodyError> {
        let mut vs = voters.to_vec();
        vs.sort_unstable();
        vs.dedup();
        if vs.is_empty() || vs.len() != voters.len() {
            return Err(err(me, "voters must be a non-empty set"));
        }
        // Records are replayed one at a time: compactions drop what they cover, so memory
        // stays bounded by the log as it was, not by the length of the record file.
        let mut replay = Replay::default();
        let mut any = false;
        for r in recovered {
            any = true;
            replay
                .apply(Record::decode(&r).map_err(|e| err(me, e))?)
                .map_err(|e| err(me, e))?;
        }
        let replica = if voters.contains(&me) {
            let (node, rec) = RaftNode::new(me, voters, &config, replay).map_err(|e| err(me, e))?;
            let mut state = Applied::restore(me, rec.snap_index, &rec.snap_data, config.retain)
                .map_err(|e| err(me, e))?;
            for c in &rec.committed {
                state.apply(c.index, c.term, &c.data);
                state.maybe_checkpoint(Self::checkpoint_every(&config));
            }
            Some(Replica {
                node,
                state,
                serving: Serving::new(config.reader_chunk, config.reader_stall),
                next_tick: now + config.tick,
            })
        } else if any {
            return Err(err(me, "records at a broker that is not a replica"));
        } else {
            None
        };
        Ok(TotalGroup {
            me,
            voters: voters.to_vec(),
            access: Access::new(voters, config.batch_max, config.retry_after),
            reader: Reader::new(me, voters, config.reader_stall, now),
            config,
            replica,
            effects: VecDeque::new(),
            local: VecDeque::new(),
            heard_term: 0,
            heard_leader: None,
        })
    }

    fn checkpoint_every(config: &TotalConfig) -> u64 {
        (config.retain as u64 / 2).max(1)
    }

    /// A publication from a local client. Acked (in publish order per producer) once committed.
    pub fn publish(&mut self, now: Instant, producer: &str, pseq: u64, msg: M) {
        let mut out = Vec::new();
        self.access.publish(now, producer, pseq, msg, &mut out);
        self.route(out);
        self.pump(now);
    }

    /// Whether this broker has local members: a reader follows the committed log and delivers.
    /// A reader that starts delivers from the next committed position on.
    pub fn set_reading(&mut self, now: Instant, reading: bool) {
        let mut out = Vec::new();
        self.reader.set_reading(now, reading, &mut out);
        self.route(out);
        self.pump(now);
    }

    /// A body from this group's core at broker `from`.
    pub fn handle_body(
        &mut self,
        now: Instant,
        from: BrokerId,
        body: &[u8],
    ) -> Result<(), BodyError> {
        let body = Body::<M>::decode(body).map_err(|e| err(from, e))?;
        let r = self.dispatch(now, from, body).map_err(|e| err(from, e));
        self.pump(now);
        r
    }

    /// Timers due at `now` (Raft ticks, publication retries, reader catch-up).
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(r) = &mut self.replica {
            // A broker that was paused does not replay every tick it missed: a few are enough
            // for Raft to see that its election timeout (or its lease) has passed.
            let mut ticks = 0;
            while r.next_tick <= now && ticks <= 2 * self.config.election_ticks {
                r.node.tick();
                r.next_tick += self.config.tick;
                ticks += 1;
            }
            if r.next_tick <= now {
                r.next_tick = now + self.config.tick;
            }
        }
        let mut out = Vec::new();
        self.access.on_timeout(now, &mut out);
        self.reader.on_timeout(now, &mut self.effects, &mut out);
        self.route(out);
        self.pump(now);
    }

    /// When `handle_timeout` wants to be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.replica.as_ref().map(|r| r.next_tick),
            self.access.poll_timeout(),
            self.reader.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The next effect to carry out.
    pub fn poll_effect(&mut self) -> Option<Effect<M>> {
        self.effects.pop_front()
    }

    /// The current epoch (Raft term) as this broker knows it.
    pub fn epoch(&self) -> u64 {
        match &self.replica {
            Some(r) => r.node.term(),
            None => self.heard_term,
        }
    }

    /// The sequencer (Raft leader) as this broker knows it.
    pub fn sequencer(&self) -> Option<BrokerId> {
        match &self.replica {
            Some(r) => r.node.leader(),
            None => self.heard_leader,
        }
    }

    /// The group's replicas.
    pub fn voters(&self) -> &[BrokerId] {
        &self.voters
    }

    /// The last position delivered (or, on a replica that does not read, applied).
    pub fn last_position(&self) -> Option<Position> {
        match &self.replica {
            Some(r) if !self.reader.reading() => r.state.last_position(),
            _ => self.reader.last(),
        }
    }

    /// This broker, as the group knows it.
    pub fn me(&self) -> BrokerId {
        self.me
    }

    /// Whether this broker is one of the group's replicas.
    pub fn is_replica(&self) -> bool {
        self.replica.is_some()
    }

    /// The last position applied by this replica's state machine (`None` on other brokers or
    /// before any).
    pub fn applied_position(&self) -> Option<Position> {
        self.replica.as_ref().and_then(|r| r.state.last_position())
    }

    /// Publications published here and not acked yet (for back-pressure).
    pub fn pending(&self) -> usize {
        self.access.pending()
    }

    /// The next sequence this broker's reader will deliver (`None` when not reading, or not
    /// yet known).
    pub fn reader_next(&self) -> Option<u64> {
        self.reader.next()
    }

    /// How many Raft log entries this replica holds in memory (0 on other brokers).
    pub fn log_len(&self) -> u64 {
        self.replica.as_ref().map_or(0, |r| r.node.log_len())
    }

    /// How many readers follow this replica.
    pub fn followers(&self) -> usize {
        self.replica.as_ref().map_or(0, |r| r.serving.followers())
    }

    fn route(&mut self, out: Vec<(BrokerId, Body<M>)>) {
        for (to, body) in out {
            if to == self.me {
                self.local.push_back(body);
            } else {
                self.effects.push_back(Effect::Send {
                    to,
                    body: body.encode(),
                });
            }
        }
    }

    fn hear(&mut self, term: u64, leader: Option<BrokerId>) {
        if term > self.heard_term {
            self.heard_term = term;
            self.heard_leader = leader;
        } else if term == self.heard_term && leader.is_some() {
            self.heard_leader = leader;
        }
    }

    fn dispatch(&mut self, now: Instant, from: BrokerId, body: Body<M>) -> Result<(), String> {
        let from_voter = self.voters.contains(&from);
        let mut out = Vec::new();
        match body {
            Body::Raft(w) => {
                let r = self
                    .replica
                    .as_mut()
                    .ok_or("raft message to a non-replica")?;
                r.node.step(from, w)?;
            }
            Body::Propose { pubs } => {
                let r = self.replica.as_mut().ok_or("proposal to a non-replica")?;
                if pubs.len() > self.config.batch_max {
                    return Err(format!("proposal of {} publications", pubs.len()));
                }
                let (term, leader) = (r.node.term(), r.node.leader());
                if !r.node.is_leader() {
                    out.push((from, Body::Redirect { term, leader }));
                } else {
                    // Retries already applied are acked at once and not proposed again.
                    let mut acks: Vec<(String, u64)> = Vec::new();
                    let mut fresh = Vec::new();
                    for p in pubs {
                        if r.state
                            .applied_pseq(&p.producer)
                            .is_some_and(|l| p.pseq <= l)
                        {
                            match acks.iter_mut().find(|(q, _)| *q == p.producer) {
                                Some((_, t)) => *t = (*t).max(p.pseq),
                                None => acks.push((p.producer, p.pseq)),
                            }
                        } else {
                            fresh.push(Publication {
                                access: from,
                                producer: p.producer,
                                pseq: p.pseq,
                                msg: p.msg,
                            });
                        }
                    }
                    if !acks.is_empty() {
                        out.push((from, Body::Acked { term, leader, acks }));
                    }
                    if !fresh.is_empty() {
                        let batch = Batch {
                            proposer: self.me,
                            pubs: fresh,
                        };
                        if !r.node.propose(batch.encode()) {
                            out.push((from, Body::Redirect { term, leader }));
                        }
                    }
                }
            }
            Body::Acked { term, leader, acks } => {
                if !from_voter {
                    return Err("ack from a non-replica".into());
                }
                self.hear(term, leader);
                self.access.learn(now, term, leader, &mut out);
                self.access.on_ack(now, &acks, &mut self.effects, &mut out);
            }
            Body::Redirect { term, leader } => {
                if !from_voter {
                    return Err("redirect from a non-replica".into());
                }
                self.hear(term, leader);
                self.access.refused_by(from);
                self.access.learn(now, term, leader, &mut out);
            }
            Body::Follow { from: seq } => {
                let r = self.replica.as_mut().ok_or("follow to a non-replica")?;
                let (term, leader) = (r.node.term(), r.node.leader());
                let body = r.serving.on_follow(now, from, seq, &r.state, term, leader);
                out.push((from, body));
            }
            Body::Stream {
                term,
                leader,
                floor,
                through,
                start,
                items,
            } => {
                if !from_voter {
                    return Err("stream from a non-replica".into());
                }
                self.reader.on_stream(
                    now,
                    from,
                    floor,
                    through,
                    start,
                    items,
                    &mut self.effects,
                    &mut out,
                )?;
                self.hear(term, leader);
            }
        }
        self.route(out);
        Ok(())
    }

    /// Runs Raft's output and the bodies for this broker itself until nothing is left.
    fn pump(&mut self, now: Instant) {
        for _ in 0..10_000 {
            let mut busy = false;
            if let Some(o) = self.replica.as_mut().and_then(|r| r.node.take_output()) {
                self.carry_out(now, o);
                busy = true;
            }
            if let Some(body) = self.local.pop_front() {
                // Bodies from this core to itself are well-formed by construction.
                let _ = self.dispatch(now, self.me, body);
                busy = true;
            }
            if !busy {
                break;
            }
        }
        if let Some(r) = &self.replica {
            let (term, leader) = (r.node.term(), r.node.leader());
            let mut out = Vec::new();
            self.access.learn(now, term, leader, &mut out);
            self.route(out);
            if !self.local.is_empty() {
                self.pump(now);
            }
        }
    }

    fn carry_out(&mut self, now: Instant, o: ConsensusOutput<raft::WireMessage>) {
        // 1. The leader's appends: they may travel before its own records are durable.
        let send_now = o.send_now.into_iter().map(|(to, w)| (to, Body::Raft(w)));
        self.route(send_now.collect());
        // 2. What the committed entries bring: acks, reader streams and local deliveries. A
        //    committed entry is durable on a majority already (a leader's own entries were
        //    synced in an earlier round), so none of it waits for this round's records; local
        //    bodies are dispatched now so that their acks and deliveries come first too.
        let Some(r2) = self.replica.as_mut() else {
            return;
        };
        let first_new = r2.state.next_seq();
        let mut installed = false;
        if let Some((index, data)) = &o.install {
            installed = r2.state.install(*index, data).is_ok();
        }
        let (term, leader) = (r2.node.term(), r2.node.leader());
        let every = Self::checkpoint_every(&self.config);
        let mut acks: Vec<(BrokerId, Vec<(String, u64)>)> = Vec::new();
        for c in &o.committed {
            for a in r2.state.apply(c.index, c.term, &c.data) {
                let i = match acks.iter().position(|(b, _)| *b == a.access) {
                    Some(i) => i,
                    None => {
                        acks.push((a.access, Vec::new()));
                        acks.len() - 1
                    }
                };
                acks[i].1.push((a.producer, a.through));
            }
            r2.state.maybe_checkpoint(every);
        }
        let mut out: Vec<(BrokerId, Body<M>)> = Vec::new();
        for (access, acks) in acks {
            out.push((access, Body::Acked { term, leader, acks }));
        }
        if installed || r2.state.next_seq() > first_new {
            r2.serving
                .on_applied(now, first_new, &r2.state, term, leader, &mut out);
        }
        self.route(out);
        while let Some(body) = self.local.pop_front() {
            // Bodies from this core to itself are well-formed by construction.
            let _ = self.dispatch(now, self.me, body);
        }
        // 3. This round's records, then what may only go once they are durable.
        for record in o.persist {
            self.effects.push_back(Effect::Persist { record });
        }
        let Some(r2) = self.replica.as_mut() else {
            return;
        };
        if r2.node.log_len() > self.config.retain as u64
            && let Some((index, data)) = r2.state.checkpoint().cloned()
            && let Some(record) = r2.node.compact(index, data)
        {
            self.effects.push_back(Effect::Persist { record });
        }
        let after = o
            .send_after_persist
            .into_iter()
            .map(|(to, w)| (to, Body::Raft(w)));
        self.route(after.collect());
    }
}

#[cfg(test)]
mod tests;
