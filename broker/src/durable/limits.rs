//! Bounds on what clients can make the engine hold, and the queue size limits.
//!
//! Broker-wide ([`EngineLimits`], from `[limits]`): local queues, consumers per connection, a
//! fetch's wait, producers (see `producers`). Each refusal is `limit_exceeded` with the
//! setting's name in the message, and counted by [`Limit`].
//!
//! Per queue ([`QueueLimits`], from its options within the broker's defaults): each lane (the
//! queue and, separately, its dead-letter queue) holds at most `max_messages` messages and
//! `max_bytes` bytes of records, and none older than `max_age`. A message that finds a lane
//! full:
//!
//! - with `discard = old` enters it, and the lane's oldest messages leave to make room, in
//!   flight or not;
//! - with `discard = new` does not enter it. A persistent publication at this broker is refused
//!   before anything is stored (`Engine::publish` asks [`Engine::refusal`] first), so that an ack
//!   still means "stored in every matching local queue"; a message from a peer (already acked by
//!   its access broker) or moving to a full dead-letter lane skips the lane.
//!
//! Both outcomes are decided in [`Engine::enqueue`], which `apply` calls for live records and in
//! recovery alike: they follow from the records, so recovery repeats them without records of
//! their own. `max_age` depends on the time, so its removals are `Dropped` records, written
//! when a queue's expiry timer fires (one per queue, for its oldest message).
//!
//! Messages dropped, and publications refused, are counted by limit ([`Limit::Messages`],
//! [`Limit::Bytes`], [`Limit::Age`]); the broker exports them as
//! `palio_limits_hit_total{limit}`.

use std::time::{Duration, Instant};

use palio_protocol::{Discard, ErrorCode, QueueOptions};

use super::engine::{ClientId, Engine, Journal, Refusal, Timer};
use super::queue::{Over, Stored};
use super::record::{LaneId, QueueLimits, Record};

/// Messages dropped for `max_age` per record: one timer firing writes at most this many, then
/// fires again at once for the rest.
const EXPIRE_BATCH: usize = 4096;

/// The wall-clock time at one instant, so that the engine, which is handed only `Instant`s,
/// can stamp records with times that mean something after a restart.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WallClock {
    /// The instant.
    pub(crate) at: Instant,
    /// The wall-clock time then, in Unix milliseconds.
    pub(crate) unix_ms: u64,
}

impl WallClock {
    /// The wall-clock time at `now`, in Unix milliseconds.
    pub(crate) fn unix_ms(&self, now: Instant) -> u64 {
        match now.checked_duration_since(self.at) {
            Some(d) => self.unix_ms.saturating_add(ms(d)),
            None => self.unix_ms.saturating_sub(ms(self.at - now)),
        }
    }

    /// The instant of wall-clock time `unix_ms` (times before `at` become `at`: they are past).
    pub(crate) fn instant(&self, unix_ms: u64) -> Instant {
        let ahead = Duration::from_millis(unix_ms.saturating_sub(self.unix_ms));
        // Past any clock's range only for absurd times: then the farthest we can schedule.
        self.at
            .checked_add(ahead)
            .unwrap_or_else(|| self.at + super::consume::MAX_WAIT)
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The engine's broker-wide limits.
#[derive(Debug, Clone)]
pub(crate) struct EngineLimits {
    /// Durable queues at this broker (`limits.max_queues`).
    pub(crate) max_queues: usize,
    /// Consumers one connection may have attached (`limits.max_consumers_per_client`).
    pub(crate) max_consumers_per_client: usize,
    /// The longest a fetch waits for messages (`limits.max_fetch_wait_ms`); a longer wait is
    /// cut to it (the fetch just returns sooner, as it may anyway).
    pub(crate) max_fetch_wait: Duration,
    /// Entries of the producer table (`limits.max_producers`).
    pub(crate) max_producers: usize,
    /// How long a producer must have been unused, and not named by a connected client, before
    /// it may be forgotten to make room (`limits.producer_idle_ms`).
    pub(crate) producer_idle: Duration,
    /// The limits of a queue added without its own, and the largest it may ask for (0: no
    /// limit, any may be asked for).
    pub(crate) queue: QueueLimits,
}

/// A limit, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Limit {
    /// `limits.max_queues`.
    Queues,
    /// `limits.max_consumers_per_client`.
    ConsumersPerClient,
    /// `limits.max_fetch_wait_ms` (a fetch's wait cut to it).
    FetchWait,
    /// `limits.max_producers`.
    Producers,
    /// A queue's `max_messages` (a message dropped, or a publication refused).
    Messages,
    /// A queue's `max_bytes`.
    Bytes,
    /// A queue's `max_age_ms` (a message dropped).
    Age,
}

impl Limit {
    /// Every limit, in index order.
    pub(crate) const ALL: [Limit; 7] = [
        Limit::Queues,
        Limit::ConsumersPerClient,
        Limit::FetchWait,
        Limit::Producers,
        Limit::Messages,
        Limit::Bytes,
        Limit::Age,
    ];

    /// Its setting's (or queue option's) name: the `limit` label of
    /// `palio_limits_hit_total`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Limit::Queues => "max_queues",
            Limit::ConsumersPerClient => "max_consumers_per_client",
            Limit::FetchWait => "max_fetch_wait_ms",
            Limit::Producers => "max_producers",
            Limit::Messages => "max_messages",
            Limit::Bytes => "max_bytes",
            Limit::Age => "max_age_ms",
        }
    }
}

impl From<Over> for Limit {
    fn from(o: Over) -> Self {
        match o {
            Over::Messages => Limit::Messages,
            Over::Bytes => Limit::Bytes,
        }
    }
}

impl Engine {
    /// Counts `n` hits of `limit`; the first hit of each limit by a client is logged.
    pub(super) fn limit_hit(&mut self, client: Option<ClientId>, limit: Limit, n: u64) {
        self.stats.limits[limit as usize] += n;
        if let Some(client) = client {
            self.log_once(client, limit.name(), || {
                tracing::info!(client, limit = limit.name(), "limit reached");
            });
        }
    }

    /// The limits of a queue added with `options`: the broker's defaults where it gives none;
    /// more than the broker allows is refused (and counted).
    pub(super) fn queue_limits(
        &mut self,
        client: ClientId,
        options: &QueueOptions,
    ) -> Result<QueueLimits, Refusal> {
        let broker = self.cfg.limits.queue;
        let asked = [
            (
                options.max_messages,
                broker.max_messages,
                Limit::Messages,
                "queue_max_messages",
            ),
            (
                options.max_bytes,
                broker.max_bytes,
                Limit::Bytes,
                "queue_max_bytes",
            ),
            (
                options.max_age_ms,
                broker.max_age_ms,
                Limit::Age,
                "queue_max_age_ms",
            ),
        ];
        let mut values = [0u64; 3];
        for (value, (asked, max, limit, setting)) in values.iter_mut().zip(asked) {
            *value = match asked {
                None => max,
                Some(0) => {
                    return Err((
                        ErrorCode::ProtocolViolation,
                        format!("{} must be at least 1", limit.name()),
                    ));
                }
                Some(n) if max > 0 && n > max => {
                    self.limit_hit(Some(client), limit, 1);
                    return Err((
                        ErrorCode::LimitExceeded,
                        format!(
                            "{} of {n} is above this broker's limit of {max} (limits.{setting})",
                            limit.name()
                        ),
                    ));
                }
                Some(n) => n,
            };
        }
        let [max_messages, max_bytes, max_age_ms] = values;
        Ok(QueueLimits {
            max_messages,
            max_bytes,
            max_age_ms,
            discard: options.discard.unwrap_or(broker.discard),
        })
    }

    /// Why a publication of `size` bytes by `client` must be refused for the local queue
    /// `key`, if it must: the message is larger than the queue's `max_bytes`, or the queue is
    /// full and keeps its old messages (`discard = new`). The queue is named only to a client
    /// that may use it (a listing would not show it to others).
    pub(super) fn refusal(&self, client: ClientId, key: u64, size: u64) -> Option<(Limit, String)> {
        let q = self.queues.get(&key)?;
        let name = if self.may_use(client, key) {
            format!("queue {:?}", q.name)
        } else {
            "a durable queue it matches".to_owned()
        };
        let l = q.limits;
        if l.max_bytes > 0 && size > l.max_bytes {
            return Some((
                Limit::Bytes,
                format!(
                    "a message of {size} bytes is larger than {name} holds (max_bytes {}): \
                     nothing was stored",
                    l.max_bytes
                ),
            ));
        }
        if l.discard != Discard::New {
            return None;
        }
        let over = q.main.full_for(&l, size)?;
        let what = match over {
            Over::Messages => format!("max_messages {}", l.max_messages),
            Over::Bytes => format!("max_bytes {}", l.max_bytes),
        };
        Some((
            over.into(),
            format!("{name} is full ({what}, discard new): nothing was stored"),
        ))
    }

    /// Puts a stored message into a lane within its queue's limits (see the module docs);
    /// returns whether it entered (then it holds a reference to its segment). `ready`: it is
    /// durable; `live`: the record is being written now, not replayed in recovery (only then
    /// is what it drops counted).
    pub(super) fn enqueue(
        &mut self,
        lane: LaneId,
        tag: u64,
        mut stored: Stored,
        count: u32,
        ready: bool,
        live: bool,
    ) -> bool {
        if stored.at_ms == 0 {
            // Stored before records had times: its age counts from this start.
            stored.at_ms = self.cfg.clock.unix_ms;
        }
        let Some(limits) = self.queues.get(&lane.queue).map(|q| q.limits) else {
            return false;
        };
        if limits.max_bytes > 0 && stored.size > limits.max_bytes {
            if live {
                self.limit_hit(None, Limit::Bytes, 1);
            }
            return false;
        }
        // Bounded: each turn removes an entry, and an empty lane has room for a message
        // within max_bytes.
        loop {
            let Some(l) = self.lane(lane) else {
                return false;
            };
            let Some(over) = l.full_for(&limits, stored.size) else {
                break;
            };
            let oldest = l.entries.keys().next().copied();
            if live {
                self.limit_hit(None, over.into(), 1);
            }
            match oldest {
                Some(oldest) if limits.discard == Discard::Old => {
                    self.drop_entry(lane, oldest);
                }
                _ => return false,
            }
        }
        let Some(q) = self.queues.get_mut(&lane.queue) else {
            return false;
        };
        q.lane_mut(lane.dead).insert(tag, stored, count, ready);
        if limits.max_age_ms > 0 && q.expiry.is_none() {
            self.expiry_due.insert(lane.queue);
        }
        *self.seg_refs.entry(stored.pos.segment).or_default() += 1;
        true
    }

    /// Sets the expiry timer of each queue that needs one, for its oldest message.
    pub(super) fn schedule_expiries(&mut self) {
        for key in std::mem::take(&mut self.expiry_due) {
            let clock = self.cfg.clock;
            let Some(q) = self.queues.get_mut(&key) else {
                continue;
            };
            if q.limits.max_age_ms == 0 || q.expiry.is_some() {
                continue;
            }
            let oldest = [&q.main, &q.dead]
                .into_iter()
                .filter_map(|l| l.entries.values().next().map(|e| e.at_ms))
                .min();
            let Some(oldest) = oldest else {
                continue;
            };
            let at = clock.instant(oldest.saturating_add(q.limits.max_age_ms));
            q.expiry = Some(at);
            self.push_timer(at, Timer::Expire { queue: key });
        }
    }

    /// The expiry timer of queue `key` fired: its messages older than `max_age` leave (a
    /// `Dropped` record per lane), and the timer is set again for the oldest left.
    pub(super) fn expire(&mut self, j: &mut impl Journal, now: Instant, key: u64) {
        let Some(q) = self.queues.get_mut(&key) else {
            return;
        };
        q.expiry = None;
        let max_age = q.limits.max_age_ms;
        let now_ms = self.cfg.clock.unix_ms(now);
        for dead in [false, true] {
            let lane = LaneId { queue: key, dead };
            let tags: Vec<u64> = self
                .lane(lane)
                .map(|l| {
                    l.entries
                        .iter()
                        .take_while(|(_, e)| e.at_ms.saturating_add(max_age) <= now_ms)
                        .take(EXPIRE_BATCH)
                        .map(|(tag, _)| *tag)
                        .collect()
                })
                .unwrap_or_default();
            if tags.is_empty() {
                continue;
            }
            let n = tags.len() as u64;
            if self.write(j, Record::Dropped { lane, tags }).is_err() {
                // The store failed: it takes no more writes, expiries included.
                return;
            }
            self.limit_hit(None, Limit::Age, n);
            // Dropped messages in flight free room in their consumers' windows.
            self.pump(j, now, lane);
        }
        self.expiry_due.insert(key);
        self.schedule_expiries();
    }
}
