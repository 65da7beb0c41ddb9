//! The publisher side: queue local publications, send them to the sequencer, retry, ack.
//!
//! Every batch sent is *everything pending* (up to a bound) in publish order, and only one batch
//! is outstanding at a time (a new one goes when an ack advances the queue, on a retry, or when
//! a new leader is learned). So any entry holding a producer's publication `p` also holds every
//! publication of that producer before `p` that is not yet committed, and the producer
//! sequence dedup of the state machine ("not above the last one applied: a duplicate") never
//! drops a publication that was not committed before. Retries are therefore safe, and an ack
//! "through `p`" covers all of the producer's earlier publications.
//!
//! A batch goes to the leader last heard of, if any (learned from the replica's own Raft node,
//! or from a replica's answer), else to the broker the last one went to (at first the first
//! voter). It goes again at once when a leader is learned that it has not reached as leader:
//! another broker than the one it went to, or the same one when that broker refused it
//! (`Redirect`, e.g. as a candidate during an election it then won). Waiting for the retry
//! timer instead would add up to `TotalConfig::retry_after` to every failover, and the timer,
//! finding that the leader it knows is the target, tries the next voter rather than the leader.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::wire::{Body, Pending};
use crate::BrokerId;
use crate::group::Effect;

/// The access side of one broker.
#[derive(Debug)]
pub(crate) struct Access<M> {
    voters: Vec<BrokerId>,
    pending: VecDeque<Pending<M>>,
    /// When the outstanding batch is sent again (`None`: nothing outstanding).
    retry_at: Option<Instant>,
    /// Where the outstanding batch went.
    target: BrokerId,
    /// The target refused the outstanding batch (it did not lead when it arrived).
    refused: bool,
    /// The leader as last heard, and the term it was heard for.
    leader: Option<BrokerId>,
    term: u64,
    batch_max: usize,
    retry_after: Duration,
}

impl<M: Clone + serde::Serialize> Access<M> {
    pub(crate) fn new(voters: &[BrokerId], batch_max: usize, retry_after: Duration) -> Self {
        Access {
            voters: voters.to_vec(),
            pending: VecDeque::new(),
            retry_at: None,
            target: voters.first().copied().unwrap_or(BrokerId(0)),
            refused: false,
            leader: None,
            term: 0,
            batch_max: batch_max.max(1),
            retry_after,
        }
    }

    pub(crate) fn publish(
        &mut self,
        now: Instant,
        producer: &str,
        pseq: u64,
        msg: M,
        out: &mut Vec<(BrokerId, Body<M>)>,
    ) {
        self.pending.push_back(Pending {
            producer: producer.to_owned(),
            pseq,
            msg,
        });
        if self.retry_at.is_none() {
            self.send(now, out);
        }
    }

    /// Sends everything pending (bounded) to the leader if one is known, else to the target.
    fn send(&mut self, now: Instant, out: &mut Vec<(BrokerId, Body<M>)>) {
        if self.pending.is_empty() {
            self.retry_at = None;
            return;
        }
        // A leader learned while nothing was outstanding did not move the target.
        if let Some(l) = self.leader.filter(|l| self.voters.contains(l)) {
            self.target = l;
        }
        let n = crate::group::fitting(self.pending.iter().take(self.batch_max));
        let pubs = self.pending.iter().take(n).cloned().collect();
        out.push((self.target, Body::Propose { pubs }));
        self.retry_at = Some(now + self.retry_after);
        self.refused = false;
    }

    /// Replica `from` refused a batch (it does not lead): if that was the outstanding one's
    /// target, the batch is sent again as soon as a leader is learned, even that same replica.
    pub(crate) fn refused_by(&mut self, from: BrokerId) {
        if self.retry_at.is_some() && from == self.target {
            self.refused = true;
        }
    }

    /// Learns who leads in `term`. A new leader while a batch is outstanding: send it there,
    /// unless it went there already and was not refused.
    pub(crate) fn learn(
        &mut self,
        now: Instant,
        term: u64,
        leader: Option<BrokerId>,
        out: &mut Vec<(BrokerId, Body<M>)>,
    ) {
        if term < self.term {
            return;
        }
        if term > self.term {
            self.term = term;
            if leader.is_none() {
                self.leader = None;
            }
        }
        let Some(l) = leader else {
            return;
        };
        if self.leader == Some(l) {
            return;
        }
        self.leader = Some(l);
        if self.voters.contains(&l) && self.retry_at.is_some() && (l != self.target || self.refused)
        {
            self.target = l;
            self.send(now, out);
        }
    }

    /// An ack from a replica. Emits `Acked` for the producers it advances, and sends what is
    /// pending next.
    pub(crate) fn on_ack(
        &mut self,
        now: Instant,
        acks: &[(String, u64)],
        effects: &mut VecDeque<Effect<M>>,
        out: &mut Vec<(BrokerId, Body<M>)>,
    ) {
        let mut advanced: Vec<(String, u64)> = Vec::new();
        self.pending.retain(|p| {
            let acked = acks
                .iter()
                .any(|(producer, through)| *producer == p.producer && p.pseq <= *through);
            if acked {
                match advanced.iter_mut().find(|(q, _)| *q == p.producer) {
                    Some((_, t)) => *t = (*t).max(p.pseq),
                    None => advanced.push((p.producer.clone(), p.pseq)),
                }
            }
            !acked
        });
        if advanced.is_empty() {
            return;
        }
        for (producer, through) in advanced {
            effects.push_back(Effect::Acked { producer, through });
        }
        self.send(now, out);
    }

    /// Retries due at `now`: to the leader hint if it is another broker, else the next voter.
    pub(crate) fn on_timeout(&mut self, now: Instant, out: &mut Vec<(BrokerId, Body<M>)>) {
        if self.retry_at.is_none_or(|t| t > now) {
            return;
        }
        self.target = match self.leader {
            Some(l) if l != self.target && self.voters.contains(&l) => l,
            _ => {
                self.leader = None;
                let i = self.voters.iter().position(|v| *v == self.target);
                let next = i.map_or(0, |i| (i + 1) % self.voters.len().max(1));
                self.voters.get(next).copied().unwrap_or(self.target)
            }
        };
        self.send(now, out);
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.retry_at
    }

    pub(crate) fn pending(&self) -> usize {
        self.pending.len()
    }
}
