//! The producer table: for each producer name, its owner and highest stored sequence number,
//! which de-duplicate retried persistent publications.
//!
//! # Owners
//!
//! A producer name belongs to the principal that first names it: naming it writes a
//! `ProducerClaimed` record, and from then on another principal naming it is refused with
//! `permission_denied` (an admin may name any). A producer recorded before producers had owners
//! is claimed by the first principal to name it after the upgrade, keeping its sequence number.
//!
//! # Sequence numbers
//!
//! A publication whose sequence number is at most the producer's highest stored one is acked
//! as a duplicate and not stored again. `u64::MAX` is refused as a sequence number: were it
//! stored, every later publication of the producer would be a "duplicate", and `next_seq` would
//! overflow. One stored by an earlier version is not counted.
//!
//! # What a retry is told
//!
//! A publication's ack says how many durable queues it matched (`publish`). So that a retry
//! of a stored publication is told the same, each producer keeps how many queues its latest
//! publications matched, in runs of sequence numbers with the same count (the count is in
//! each publication's record too, so recovery rebuilds them): at most [`MATCH_RUNS`] runs,
//! which for a producer whose publications match the same queues is every one of them. A
//! retry older than that is told how many queues it matches now.
//!
//! # Bounded, never forgetting an active producer
//!
//! The table holds at most `limits.max_producers` entries. Naming a new producer with the table
//! full first forgets the producers idle longest (a `ProducersForgotten` record): those not
//! named by any connected client and with no claim or stored publication for at least
//! `limits.producer_idle_ms`. If there is none, the naming is refused with `limit_exceeded`.
//! A producer that is in use, or was within that time, is never forgotten; one that was
//! forgotten starts again from `next_seq = 0` under whoever names it next, so a retry of one
//! of its publications from before would be stored again.

use std::collections::VecDeque;

use palio_protocol::{ErrorCode, QueueMatches};

use super::access::Action;
use super::engine::{ClientId, Engine, Journal, Refusal, duration_ms};
use super::limits::Limit;
use super::output::Answer;
use super::record::Record;

/// Producers forgotten at most per record, when making room.
const FORGET_BATCH: usize = 1024;

/// The longest producer name, in bytes.
const MAX_PRODUCER_NAME: usize = 128;

/// The runs of match counts a producer keeps (see the module docs).
const MATCH_RUNS: usize = 16;

/// What the engine knows of a producer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProducerEntry {
    /// The principal that claimed it; empty for one recorded before producers had owners.
    pub(crate) owner: String,
    /// Its highest stored sequence number, once it stored one.
    pub(crate) last_seq: Option<u64>,
    /// Its last claim or stored publication, or when its last connection let it go (Unix
    /// milliseconds): how long it has been idle.
    pub(crate) last_used_ms: u64,
    /// Connected clients that named it now (not recorded: none after a restart).
    pub(crate) attached: u32,
    /// How many queues its latest stored publications matched: runs of sequence numbers,
    /// oldest first, at most [`MATCH_RUNS`].
    pub(crate) matches: VecDeque<QueueMatches>,
}

impl ProducerEntry {
    /// The sequence number its next publication should have.
    pub(crate) fn next_seq(&self) -> u64 {
        // Never stored above u64::MAX - 1 (`producer_stored`), so this does not saturate.
        self.last_seq.map_or(0, |s| s.saturating_add(1))
    }

    /// How many queues its stored publication `seq` matched, if it is among those it keeps.
    pub(crate) fn matched(&self, seq: u64) -> Option<u32> {
        self.matches
            .iter()
            .rev()
            .find(|m| (m.from..=m.through).contains(&seq))
            .map(|m| m.queues)
    }

    /// Its publication `seq` matched `queues` queues.
    fn record_match(&mut self, seq: u64, queues: u32) {
        match self.matches.back_mut() {
            Some(last) if last.queues == queues && last.through.checked_add(1) == Some(seq) => {
                last.through = seq;
            }
            _ => {
                self.matches.push_back(QueueMatches {
                    from: seq,
                    through: seq,
                    queues,
                });
                if self.matches.len() > MATCH_RUNS {
                    self.matches.pop_front();
                }
            }
        }
    }
}

impl Engine {
    /// Names the producer of `client`'s persistent publications.
    pub(crate) fn producer(
        &mut self,
        j: &mut impl Journal,
        now: std::time::Instant,
        client: ClientId,
        request: u64,
        name: String,
    ) {
        match self.try_producer(j, now, client, &name) {
            // `next_seq` may count publications not on disk yet: answer once they are, so that
            // a producer resuming from it never skips one a crash could still lose.
            Ok(next_seq) => {
                self.answer_when_durable(j, client, request, Answer::ProducerReady { next_seq })
            }
            Err(r) => self.refuse(client, request, r),
        }
    }

    fn try_producer(
        &mut self,
        j: &mut impl Journal,
        now: std::time::Instant,
        client: ClientId,
        name: &str,
    ) -> Result<u64, Refusal> {
        if name.is_empty() || name.len() > MAX_PRODUCER_NAME {
            return Err((
                ErrorCode::ProtocolViolation,
                format!("a producer id has 1 to {MAX_PRODUCER_NAME} bytes"),
            ));
        }
        let Some(principal) = self.principal(client).cloned() else {
            return Err(self.deny(client, Action::Producer, "not connected".into()));
        };
        let now_ms = self.cfg.clock.unix_ms(now);
        let claim = match self.producers.get(name) {
            Some(p) if !p.owner.is_empty() && !principal.may_use(&p.owner) => {
                return Err(self.deny(
                    client,
                    Action::Producer,
                    format!("producer {name:?} belongs to another principal"),
                ));
            }
            // Recorded before producers had owners: the first to name it now claims it.
            Some(p) => p.owner.is_empty(),
            None => {
                self.make_room_for_producer(j, client, now_ms)?;
                true
            }
        };
        if claim {
            let rec = Record::ProducerClaimed {
                name: name.to_owned(),
                owner: principal.name.to_string(),
                at_ms: now_ms,
            };
            self.write(j, rec)?;
        }
        self.release_producer(client, now_ms);
        let Some(entry) = self.producers.get_mut(name) else {
            return Err((
                ErrorCode::Internal,
                format!("producer {name:?} vanished while being named"),
            ));
        };
        entry.attached += 1;
        let next_seq = entry.next_seq();
        self.client_producers.insert(client, name.to_owned());
        Ok(next_seq)
    }

    /// `client` no longer names its producer (it named another, or left).
    pub(super) fn release_producer(&mut self, client: ClientId, now_ms: u64) {
        let Some(name) = self.client_producers.remove(&client) else {
            return;
        };
        if let Some(p) = self.producers.get_mut(&name) {
            p.attached = p.attached.saturating_sub(1);
            p.last_used_ms = p.last_used_ms.max(now_ms);
            let idle = duration_ms(self.cfg.limits.producer_idle);
            self.producers_full_until = self
                .producers_full_until
                .min(p.last_used_ms.saturating_add(idle));
        }
    }

    /// Makes room for one more producer, forgetting the longest idle ones if the table is
    /// full; refuses (and counts) if none may be forgotten.
    fn make_room_for_producer(
        &mut self,
        j: &mut impl Journal,
        client: ClientId,
        now_ms: u64,
    ) -> Result<(), Refusal> {
        let max = self.cfg.limits.max_producers;
        if self.producers.len() < max {
            return Ok(());
        }
        let idle = duration_ms(self.cfg.limits.producer_idle);
        let mut forget: Vec<(u64, &String)> = Vec::new();
        if now_ms >= self.producers_full_until {
            // The scan: at most once per FORGET_BATCH producers forgotten, or once per idle
            // period while there is nothing to forget.
            forget = self
                .producers
                .iter()
                .filter(|(_, p)| p.attached == 0)
                .map(|(name, p)| (p.last_used_ms, name))
                .collect();
            forget.sort_unstable();
            let first_kept = forget
                .iter()
                .position(|(used, _)| used.saturating_add(idle) > now_ms)
                .unwrap_or(forget.len());
            self.producers_full_until = forget
                .get(first_kept)
                .map_or(u64::MAX, |(used, _)| used.saturating_add(idle));
            forget.truncate(first_kept.min(FORGET_BATCH));
            if forget.len() == FORGET_BATCH {
                // More may be idle: look again next time.
                self.producers_full_until = 0;
            }
        }
        if forget.is_empty() {
            self.limit_hit(Some(client), Limit::Producers, 1);
            return Err((
                ErrorCode::LimitExceeded,
                format!(
                    "this broker has {max} producers, its limit (limits.max_producers), and \
                     none has been idle for limits.producer_idle_ms: try again later"
                ),
            ));
        }
        let names = forget.into_iter().map(|(_, n)| n.clone()).collect();
        self.write(j, Record::ProducersForgotten { names })?;
        Ok(())
    }

    /// A publication of producer `name` with `seq`, which matched `matched` queues (if
    /// known), was stored at `at_ms` (live or in recovery).
    pub(super) fn producer_stored(
        &mut self,
        name: &str,
        seq: u64,
        at_ms: u64,
        matched: Option<u32>,
    ) {
        self.with_producer(name, |p| {
            if seq != u64::MAX {
                p.last_seq = Some(p.last_seq.map_or(seq, |s| s.max(seq)));
            }
            if let Some(queues) = matched {
                p.record_match(seq, queues);
            }
            p.last_used_ms = p.last_used_ms.max(at_ms);
        });
    }

    /// A `ProducerClaimed` record (live or in recovery).
    pub(super) fn producer_claimed(&mut self, name: &str, owner: &str, at_ms: u64) {
        self.with_producer(name, |p| {
            owner.clone_into(&mut p.owner);
            p.last_used_ms = p.last_used_ms.max(at_ms);
        });
    }

    /// Changes the entry of producer `name`, made (with no owner) if there is none: a
    /// publication replayed from a log written before producers had owners has no claim
    /// before it.
    fn with_producer(&mut self, name: &str, change: impl FnOnce(&mut ProducerEntry)) {
        match self.producers.get_mut(name) {
            Some(p) => change(p),
            None => {
                let mut p = ProducerEntry {
                    owner: String::new(),
                    last_seq: None,
                    last_used_ms: 0,
                    attached: 0,
                    matches: VecDeque::new(),
                };
                change(&mut p);
                self.producers.insert(name.to_owned(), p);
            }
        }
    }
}
