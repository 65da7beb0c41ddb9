//! Queue administration: adding, removing, listing and naming durable queues.
//!
//! A queue added or removed here is also a directory entry ([`QueueDecl`]) sent to every peer,
//! so that publishers' brokers route persistent messages to it (see `directory`).
//!
//! A queue is owned by the principal that added it (`access`): only it and admins may remove
//! or inspect it, and a listing shows a client only the queues it may use. Adding a queue
//! counts against `limits.max_queues`, and its size limits are resolved against the broker's
//! (`limits`).

use std::time::Duration;

use palio_filter::Filter;
use palio_protocol::{DEAD_LETTER_SUFFIX, ErrorCode, QueueInfo, QueueOptions, valid_queue_name};

use super::engine::{ClientId, Engine, Journal, Refusal, duration_ms};
use super::limits::Limit;
use super::output::Answer;
use super::queue::{Lane, Queue};
use super::record::{LaneId, QueueLimits, Record};
use crate::wire::QueueDecl;

impl Engine {
    /// Adds a durable queue; answered with `Done` once durable.
    pub(crate) fn queue_add(
        &mut self,
        j: &mut impl Journal,
        client: ClientId,
        request: u64,
        name: &str,
        filter: &str,
        options: QueueOptions,
    ) {
        if let Err(r) = self.try_queue_add(j, client, name, filter, options) {
            self.refuse(client, request, r);
            return;
        }
        self.answer_when_durable(j, client, request, Answer::Done);
    }

    fn try_queue_add(
        &mut self,
        j: &mut impl Journal,
        client: ClientId,
        name: &str,
        filter: &str,
        options: QueueOptions,
    ) -> Result<(), Refusal> {
        if !valid_queue_name(name) {
            return Err((
                ErrorCode::ProtocolViolation,
                format!("invalid queue name {name:?}: use 1 to 64 letters, digits, '_' or '-'"),
            ));
        }
        let compiled =
            Filter::new(filter).map_err(|e| (ErrorCode::InvalidFilter, e.to_string()))?;
        let ack_wait_ms = options
            .ack_wait_ms
            .unwrap_or_else(|| duration_ms(self.cfg.ack_wait))
            .max(1);
        if ack_wait_ms > duration_ms(super::consume::MAX_WAIT) {
            return Err((
                ErrorCode::ProtocolViolation,
                "the ack wait is at most 7 days".into(),
            ));
        }
        let max_deliveries = options
            .max_deliveries
            .unwrap_or(self.cfg.max_deliveries)
            .max(1);
        let limits = self.queue_limits(client, &options)?;
        if let Some(&key) = self.names.get(name) {
            // Whether the queue exists is no secret (names are one namespace), its settings
            // are.
            self.check_queue(client, key)?;
            if let Some(q) = self.queues.get(&key)
                && q.filter.source() == compiled.source()
                && duration_ms(q.ack_wait) == ack_wait_ms
                && q.max_deliveries == max_deliveries
                && q.limits == limits
            {
                return Ok(());
            }
            return Err((
                ErrorCode::QueueExists,
                format!("queue {name:?} exists with another filter or options"),
            ));
        }
        let max = self.cfg.limits.max_queues;
        if self.queues.len() >= max {
            self.limit_hit(Some(client), Limit::Queues, 1);
            return Err((
                ErrorCode::LimitExceeded,
                format!("this broker has {max} durable queues, its limit (limits.max_queues)"),
            ));
        }
        let owner = match self.principal(client) {
            Some(p) => p.name.to_string(),
            None => {
                return Err(self.deny(
                    client,
                    super::access::Action::Queue,
                    "not connected".into(),
                ));
            }
        };
        let key = self.next_queue;
        self.write(
            j,
            Record::QueueAdded {
                key,
                name: name.to_owned(),
                filter: compiled.source().to_owned(),
                ack_wait_ms,
                max_deliveries,
                owner,
                limits,
            },
        )?;
        let decl = QueueDecl {
            home: self.cfg.me,
            name: name.to_owned(),
            filter: compiled.source().to_owned(),
            generation: self.generation_for(name),
            removed: false,
        };
        self.write(j, Record::Directory(decl.clone()))?;
        self.announce(&decl, None);
        Ok(())
    }

    /// Removes a durable queue with its messages; answered with `Done` once durable. `NAME.dlq`
    /// empties the dead-letter queue of `NAME` (`purge`).
    pub(crate) fn queue_remove(
        &mut self,
        j: &mut impl Journal,
        client: ClientId,
        request: u64,
        name: &str,
    ) {
        if name.ends_with(DEAD_LETTER_SUFFIX) {
            self.dead_letters_remove(j, client, request, name);
            return;
        }
        let Some(&key) = self.names.get(name) else {
            self.refuse(client, request, not_found(name));
            return;
        };
        if let Err(r) = self.check_queue(client, key) {
            self.refuse(client, request, r);
            return;
        }
        let filter = self
            .queues
            .get(&key)
            .map(|q| q.filter.source().to_owned())
            .unwrap_or_default();
        let decl = QueueDecl {
            home: self.cfg.me,
            name: name.to_owned(),
            filter,
            generation: self.generation_for(name),
            removed: true,
        };
        let r = self
            .write(j, Record::QueueRemoved { key })
            .and_then(|_| self.write(j, Record::Directory(decl.clone())));
        if let Err(r) = r {
            self.refuse(client, request, r);
            return;
        }
        self.announce(&decl, None);
        self.answer_when_durable(j, client, request, Answer::Done);
    }

    /// Answers a list (`name` = `None`: the queues `client` may use) or info request.
    pub(crate) fn queue_info(&mut self, client: ClientId, request: u64, name: Option<&str>) {
        if let Some(n) = name {
            let checked = self
                .resolve(n)
                .and_then(|lane| self.check_queue(client, lane.queue));
            if let Err(r) = checked {
                self.refuse(client, request, r);
                return;
            }
        }
        let mut infos = Vec::new();
        for q in self.queues.values() {
            if !self.may_use(client, q.key) {
                continue;
            }
            for dead in [false, true] {
                let lane = q.lane(dead);
                let full = if dead {
                    format!("{}{DEAD_LETTER_SUFFIX}", q.name)
                } else {
                    q.name.clone()
                };
                if name.is_some_and(|n| n != full) {
                    continue;
                }
                infos.push(QueueInfo {
                    name: full,
                    filter: q.filter.source().to_owned(),
                    pending: lane.pending(),
                    unacked: lane.in_flight as u64,
                    dead_lettered: if dead { 0 } else { q.dead.entries.len() as u64 },
                    consumers: u32::try_from(lane.consumers.len()).unwrap_or(u32::MAX),
                    ack_wait_ms: duration_ms(q.ack_wait),
                    max_deliveries: if dead { 0 } else { q.max_deliveries },
                    owner: q.owner.clone(),
                    bytes: lane.bytes,
                    max_messages: q.limits.max_messages,
                    max_bytes: q.limits.max_bytes,
                    max_age_ms: q.limits.max_age_ms,
                    discard: q.limits.discard,
                });
            }
        }
        self.answer(client, request, Answer::Queues(infos));
    }

    /// Resolves a queue name (`NAME` or `NAME.dlq`) to its lane.
    pub(super) fn resolve(&self, name: &str) -> Result<LaneId, Refusal> {
        let (base, dead) = match name.strip_suffix(DEAD_LETTER_SUFFIX) {
            Some(base) => (base, true),
            None => (name, false),
        };
        self.names
            .get(base)
            .map(|&queue| LaneId { queue, dead })
            .ok_or_else(|| not_found(name))
    }

    pub(super) fn make_queue(
        &self,
        key: u64,
        name: &str,
        filter: &str,
        settings: QueueSettings,
    ) -> Option<Queue> {
        let filter = match Filter::new(filter) {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(queue = name, error = %e, "a stored queue filter no longer compiles; queue skipped");
                return None;
            }
        };
        Some(Queue {
            key,
            name: name.to_owned(),
            owner: settings.owner,
            filter,
            limits: settings.limits,
            expiry: None,
            ack_wait: Duration::from_millis(settings.ack_wait_ms),
            max_deliveries: settings.max_deliveries,
            next_tag: 0,
            main: Lane::default(),
            dead: Lane::default(),
        })
    }

    pub(super) fn drop_queue(&mut self, key: u64) {
        let Some(q) = self.queues.remove(&key) else {
            return;
        };
        self.names.remove(&q.name);
        self.local.remove(&key);
        for e in q.main.entries.values().chain(q.dead.entries.values()) {
            self.unref(e.pos);
        }
        let gone: Vec<u64> = self
            .consumers
            .iter()
            .filter(|(_, c)| c.lane.queue == key)
            .map(|(id, _)| *id)
            .collect();
        for consumer in gone {
            // A pending fetch still gets its answer (with what it got so far).
            self.finish_fetch(consumer);
            self.forget_consumer(consumer);
        }
    }
}

/// A queue's settings as recorded, beside its name and filter.
#[derive(Debug, Clone)]
pub(super) struct QueueSettings {
    pub(super) ack_wait_ms: u64,
    pub(super) max_deliveries: u32,
    pub(super) owner: String,
    pub(super) limits: QueueLimits,
}

pub(super) fn not_found(name: &str) -> Refusal {
    (
        ErrorCode::QueueNotFound,
        format!("no durable queue named {name:?}"),
    )
}
