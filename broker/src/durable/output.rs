//! What the engine hands its owner, and when: domain outputs, some held back until the log is
//! durable.
//!
//! An [`Output`] says what happened for a client or a peer in the engine's terms (a publication
//! acked, a message delivered, a request answered, a message to store); the shell turns each
//! into wire frames (`persist::frames`), and chooses their encoding and chunking. Outputs that
//! promise durability (publish acks, `Done` after a write, store acks) wait in
//! `Engine::waiting` until [`Engine::handle_durable`] passes the log position they depend on;
//! if the store fails first, [`Engine::handle_failure`] turns them into failures.

use std::collections::BTreeMap;
use std::time::Instant;

use palio_protocol::{Attributes, ErrorCode, PeekedMessage, QueueInfo, QueueMatches};
use palio_topology::BrokerId;

use super::engine::{ClientId, Engine, Journal, Refusal};
use super::record::LaneId;
use crate::store::Position;
use crate::wire::{MessageId, QueueDecl};

/// An output of the engine, for one client or one peer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Output {
    /// The persistent publications of `client` are durable up to sequence number `through`;
    /// `matched` says how many durable queues they matched (runs in increasing order).
    Acked {
        client: ClientId,
        through: u64,
        matched: Vec<QueueMatches>,
    },
    /// The persistent publication `seq` of `client` was not stored.
    PublishFailed {
        client: ClientId,
        seq: u64,
        code: ErrorCode,
        message: String,
    },
    /// A message of a durable queue, for a consumer of `client`.
    Delivered {
        client: ClientId,
        consumer: u64,
        /// The message's tag in the consumer's queue (what the client acks).
        tag: u64,
        /// 1 on the first delivery.
        delivery_count: u32,
        attributes: Attributes,
        payload: Vec<u8>,
    },
    /// The answer to a durable request of `client`.
    Answer {
        client: ClientId,
        request: u64,
        answer: Answer,
    },
    /// A persistent message for `peer` to store and pass on toward `dests`.
    Store {
        peer: BrokerId,
        id: MessageId,
        dests: Vec<BrokerId>,
        attributes: Attributes,
        payload: Vec<u8>,
    },
    /// `peer`'s messages `ids` are durable here.
    StoreAck { peer: BrokerId, ids: Vec<MessageId> },
    /// A durable queue of the overlay, for `peer`'s directory.
    Decl { peer: BrokerId, decl: QueueDecl },
}

impl Output {
    /// The client it is for, if it is for a client.
    pub(crate) fn client(&self) -> Option<ClientId> {
        match self {
            Output::Acked { client, .. }
            | Output::PublishFailed { client, .. }
            | Output::Delivered { client, .. }
            | Output::Answer { client, .. } => Some(*client),
            Output::Store { .. } | Output::StoreAck { .. } | Output::Decl { .. } => None,
        }
    }
}

/// How a durable request went.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Answer {
    /// Carried out (and durable, when it wrote).
    Done,
    /// The producer is named; its next publication should have this sequence number.
    ProducerReady { next_seq: u64 },
    /// The consumer is attached.
    Consuming { consumer: u64 },
    /// A fetch ended with this many messages delivered.
    Fetched { count: u32 },
    /// A queue listing or a queue's info, whatever its length (the shell splits it to fit its
    /// frames).
    Queues(Vec<QueueInfo>),
    /// Refused, or failed.
    Refused { code: ErrorCode, message: String },
    /// A queue was purged of this many messages (durable).
    Purged { messages: u64 },
    /// The next pending messages of a queue, however many (the shell keeps those that fit
    /// in a frame).
    Peeked(Vec<PeekedMessage>),
}

impl Engine {
    /// The journal is durable up to `durable`: release what waited for it, make the stored
    /// messages deliverable and forwardable.
    pub(crate) fn handle_durable(&mut self, j: &mut impl Journal, now: Instant, durable: Position) {
        // Queues that got messages (or came back in recovery) since: their `max_age` timers.
        self.schedule_expiries();
        if durable <= self.durable {
            return;
        }
        self.durable = durable;
        // Publish acks and store acks released together are merged: one per client and peer.
        let mut acks: BTreeMap<ClientId, (u64, Vec<QueueMatches>)> = BTreeMap::new();
        let mut store_acks: BTreeMap<BrokerId, Vec<MessageId>> = BTreeMap::new();
        while self.waiting.front().is_some_and(|(p, _)| *p <= durable) {
            let Some((_, o)) = self.waiting.pop_front() else {
                break;
            };
            match o {
                Output::Acked {
                    client,
                    through,
                    matched,
                } => {
                    let (t, runs) = acks.entry(client).or_insert((through, Vec::new()));
                    *t = (*t).max(through);
                    for run in matched {
                        push_run(runs, run);
                    }
                }
                Output::StoreAck { peer, ids } => store_acks.entry(peer).or_default().extend(ids),
                other => self.out.push_back(other),
            }
        }
        for (client, (through, matched)) in acks {
            self.out.push_back(Output::Acked {
                client,
                through,
                matched,
            });
        }
        for (peer, ids) in store_acks {
            self.out.push_back(Output::StoreAck { peer, ids });
        }
        let keys: Vec<u64> = self.queues.keys().copied().collect();
        for key in keys {
            let Some(q) = self.queues.get_mut(&key) else {
                continue;
            };
            if q.main.synced(durable) {
                self.pump(
                    j,
                    now,
                    LaneId {
                        queue: key,
                        dead: false,
                    },
                );
            }
        }
        self.pump_forwards(j);
    }

    /// The store failed: nothing waiting will ever be durable. Every waiting publish ack and
    /// `Done` becomes a failure, and every later write is refused.
    pub(crate) fn handle_failure(&mut self, why: &str) {
        if self.failed.is_some() {
            return;
        }
        tracing::error!(
            error = why,
            "the store failed: persistent writes are refused until restart"
        );
        self.failed = Some(why.to_owned());
        for (_, o) in std::mem::take(&mut self.waiting) {
            match o {
                Output::Acked {
                    client, through, ..
                } => {
                    self.stats.publish_failures += 1;
                    self.out.push_back(Output::PublishFailed {
                        client,
                        seq: through,
                        code: ErrorCode::StoreUnavailable,
                        message: why.to_owned(),
                    });
                }
                Output::Answer {
                    client,
                    request,
                    answer: Answer::Done,
                } => self.refuse(
                    client,
                    request,
                    (ErrorCode::StoreUnavailable, why.to_owned()),
                ),
                // Store acks are never sent: the peer keeps the messages and retries later.
                _ => {}
            }
        }
    }

    /// Queues `o` until the log is durable up to the journal's current end.
    pub(super) fn when_durable(&mut self, j: &impl Journal, o: Output) {
        let need = j.end();
        self.wanted = self.wanted.max(need);
        if need <= self.durable {
            self.out.push_back(o);
        } else {
            self.waiting.push_back((need, o));
        }
    }

    /// Answers `request` of `client` now.
    pub(super) fn answer(&mut self, client: ClientId, request: u64, answer: Answer) {
        self.out.push_back(Output::Answer {
            client,
            request,
            answer,
        });
    }

    /// Answers `request` of `client` once the log is durable up to its current end.
    pub(super) fn answer_when_durable(
        &mut self,
        j: &impl Journal,
        client: ClientId,
        request: u64,
        answer: Answer,
    ) {
        self.when_durable(
            j,
            Output::Answer {
                client,
                request,
                answer,
            },
        );
    }

    /// Refuses `request` of `client`.
    pub(super) fn refuse(&mut self, client: ClientId, request: u64, (code, message): Refusal) {
        self.answer(client, request, Answer::Refused { code, message });
    }
}

/// Appends `run` to `runs`, merged into the last run if it continues it with the same count:
/// the runs of one ack stay few however many publications it covers.
pub(super) fn push_run(runs: &mut Vec<QueueMatches>, run: QueueMatches) {
    match runs.last_mut() {
        Some(last)
            if last.queues == run.queues && last.through.checked_add(1) == Some(run.from) =>
        {
            last.through = run.through;
        }
        _ => runs.push(run),
    }
}
