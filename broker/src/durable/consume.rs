//! Consumers of durable queues: push windows, pull fetches, acks, naks, ack-wait redelivery and
//! dead-lettering.
//!
//! A consumer belongs to the connection that attached it, and only to a principal that may use
//! its queue (`access`): consume, fetch, ack and nak are checked against the queue's owner.
//! A connection has at most `limits.max_consumers_per_client` consumers, and each consumer at
//! most one pending fetch (a new fetch ends the one before), waiting at most
//! `limits.max_fetch_wait_ms`.
//!
//! An ack or nak names tags *in flight to that consumer*: delivered to it and neither acked,
//! nakked nor redelivered since (its ack wait not run out). A request naming any other tag —
//! never delivered to it, in flight to another consumer, acked already, gone back to the queue
//! — is refused whole with `unknown_id`, and nothing in it is acked or nakked.

use std::time::{Duration, Instant};

use palio_protocol::{ConsumeMode, ErrorCode, MAX_FETCH_BATCH, MAX_PUSH_WINDOW};

use super::engine::{ClientId, Consumer, Engine, Fetch, Journal, Refusal, Timer};
use super::limits::Limit;
use super::output::Answer;
use super::queue::State;
use super::record::{LaneId, Record};

/// The longest wait the engine schedules (ack wait, nak delay, fetch wait): longer requests are
/// cut to it, so no client value can overflow the clock.
pub(super) const MAX_WAIT: Duration = Duration::from_secs(7 * 24 * 3600);

/// `now` plus `d`, with `d` cut to [`MAX_WAIT`].
pub(super) fn after(now: Instant, d: Duration) -> Instant {
    now + d.min(MAX_WAIT)
}

impl Engine {
    /// Attaches a consumer of `client` to queue `queue` (`NAME` or `NAME.dlq`). A push window
    /// of 0 or above [`MAX_PUSH_WINDOW`] is refused, not cut down.
    pub(crate) fn consume(
        &mut self,
        j: &mut impl Journal,
        now: Instant,
        client: ClientId,
        request: u64,
        queue: &str,
        mode: ConsumeMode,
    ) {
        match mode {
            ConsumeMode::Push { window: 0 } => {
                self.refuse(
                    client,
                    request,
                    (ErrorCode::ProtocolViolation, "a push window of 0".into()),
                );
                return;
            }
            ConsumeMode::Push { window } if window > MAX_PUSH_WINDOW => {
                self.refuse(
                    client,
                    request,
                    (
                        ErrorCode::LimitExceeded,
                        format!(
                            "a push window of {window} messages is above the limit of \
                             {MAX_PUSH_WINDOW}"
                        ),
                    ),
                );
                return;
            }
            _ => {}
        }
        let lane = match self
            .resolve(queue)
            .and_then(|l| self.check_queue(client, l.queue).map(|()| l))
        {
            Ok(l) => l,
            Err(r) => {
                self.refuse(client, request, r);
                return;
            }
        };
        let max = self.cfg.limits.max_consumers_per_client;
        // Known: `check_queue` let it through.
        let consumers = self.clients.get(&client).map_or(0, |c| c.consumers);
        if consumers >= max {
            self.limit_hit(Some(client), Limit::ConsumersPerClient, 1);
            self.refuse(
                client,
                request,
                (
                    ErrorCode::LimitExceeded,
                    format!(
                        "this connection has {max} consumers, its limit \
                         (limits.max_consumers_per_client): stop one first"
                    ),
                ),
            );
            return;
        }
        if let Some(state) = self.clients.get_mut(&client) {
            state.consumers += 1;
        }
        let consumer = self.next_consumer;
        self.next_consumer += 1;
        self.consumers.insert(
            consumer,
            Consumer {
                client,
                lane,
                mode,
                in_flight: Default::default(),
                fetch: None,
            },
        );
        if let Some(l) = self.lane_mut(lane) {
            l.consumers.push(consumer);
        }
        self.answer(client, request, Answer::Consuming { consumer });
        self.pump(j, now, lane);
    }

    /// A pull consumer asks for up to `batch` messages, waiting up to `max_wait`. A batch above
    /// [`MAX_FETCH_BATCH`] is refused, not cut down (and does not end the consumer's current
    /// fetch).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn fetch(
        &mut self,
        j: &mut impl Journal,
        now: Instant,
        client: ClientId,
        request: u64,
        consumer: u64,
        batch: u32,
        max_wait: Duration,
    ) {
        if batch > MAX_FETCH_BATCH {
            self.refuse(
                client,
                request,
                (
                    ErrorCode::LimitExceeded,
                    format!("a fetch of {batch} messages is above the limit of {MAX_FETCH_BATCH}"),
                ),
            );
            return;
        }
        let lane = match self.usable(client, consumer) {
            Ok(c) if c.mode == ConsumeMode::Pull => c.lane,
            Ok(_) => {
                self.refuse(
                    client,
                    request,
                    (
                        ErrorCode::ProtocolViolation,
                        "fetch on a push consumer".into(),
                    ),
                );
                return;
            }
            Err(r) => {
                self.refuse(client, request, r);
                return;
            }
        };
        let max_wait = if max_wait > self.cfg.limits.max_fetch_wait {
            // Cut, not refused: a fetch may return before its wait anyway.
            self.limit_hit(Some(client), Limit::FetchWait, 1);
            self.cfg.limits.max_fetch_wait
        } else {
            max_wait
        };
        // A new fetch ends the previous one.
        self.finish_fetch(consumer);
        if let Some(c) = self.consumers.get_mut(&consumer) {
            c.fetch = Some(Fetch {
                request,
                remaining: batch.max(1),
                delivered: 0,
            });
        }
        self.push_timer(after(now, max_wait), Timer::Fetch { consumer, request });
        self.pump(j, now, lane);
        if max_wait.is_zero() {
            self.finish_fetch(consumer);
        }
    }

    /// Acks messages; `Done` once the ack is durable.
    pub(crate) fn ack(
        &mut self,
        j: &mut impl Journal,
        now: Instant,
        client: ClientId,
        request: u64,
        consumer: u64,
        tags: &[u64],
    ) {
        let Some(lane) = self.usable_lane(client, request, consumer) else {
            return;
        };
        if let Err(r) = self.in_flight_to(consumer, lane, tags) {
            self.refuse(client, request, r);
            return;
        }
        let mut tags = tags.to_vec();
        tags.sort_unstable();
        tags.dedup();
        if !tags.is_empty()
            && let Err(r) = self.write(j, Record::Acked { lane, tags })
        {
            self.refuse(client, request, r);
            return;
        }
        self.answer_when_durable(j, client, request, Answer::Done);
        self.pump(j, now, lane);
    }

    /// Naks messages: each is delivered again after `delay`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn nak(
        &mut self,
        j: &mut impl Journal,
        now: Instant,
        client: ClientId,
        request: u64,
        consumer: u64,
        tags: &[u64],
        delay: Duration,
    ) {
        let Some(lane) = self.usable_lane(client, request, consumer) else {
            return;
        };
        if let Err(r) = self.in_flight_to(consumer, lane, tags) {
            self.refuse(client, request, r);
            return;
        }
        for &tag in tags {
            // A tag named twice is released once: the second time it is no longer in flight.
            if self.in_flight_to(consumer, lane, &[tag]).is_ok() {
                self.detach_in_flight(lane, tag);
                self.release(j, now, lane, tag, Some(after(now, delay)));
            }
        }
        self.answer(client, request, Answer::Done);
        self.pump(j, now, lane);
    }

    /// Detaches a consumer; its messages in flight are delivered again at once.
    pub(crate) fn stop_consume(
        &mut self,
        j: &mut impl Journal,
        now: Instant,
        client: ClientId,
        request: u64,
        consumer: u64,
    ) {
        if let Err(r) = self.owned(client, consumer) {
            self.refuse(client, request, r);
            return;
        }
        self.detach(j, now, consumer);
        self.answer(client, request, Answer::Done);
    }

    /// A client connection closed: its consumers detach and its producer is let go.
    pub(crate) fn client_gone(&mut self, j: &mut impl Journal, now: Instant, client: ClientId) {
        let now_ms = self.cfg.clock.unix_ms(now);
        self.release_producer(client, now_ms);
        let mine: Vec<u64> = self
            .consumers
            .iter()
            .filter(|(_, c)| c.client == client)
            .map(|(id, _)| *id)
            .collect();
        for c in mine {
            self.detach(j, now, c);
        }
        self.clients.remove(&client);
        self.waiting.retain(|(_, o)| o.client() != Some(client));
    }

    /// The lane of `consumer` if `client` may use it ([`Engine::usable`]); otherwise refuses
    /// `request`.
    fn usable_lane(&mut self, client: ClientId, request: u64, consumer: u64) -> Option<LaneId> {
        match self.usable(client, consumer) {
            Ok(c) => Some(c.lane),
            Err(r) => {
                self.refuse(client, request, r);
                None
            }
        }
    }

    /// The consumer, if `client` attached it and its principal may still use the queue.
    fn usable(&mut self, client: ClientId, consumer: u64) -> Result<&Consumer, Refusal> {
        let queue = self.owned(client, consumer)?.lane.queue;
        self.check_queue(client, queue)?;
        self.owned(client, consumer)
    }

    /// The consumer, if `client` owns it.
    fn owned(&self, client: ClientId, consumer: u64) -> Result<&Consumer, Refusal> {
        self.consumers
            .get(&consumer)
            .filter(|c| c.client == client)
            .ok_or_else(|| {
                (
                    ErrorCode::QueueNotFound,
                    format!("no consumer {consumer} on this connection"),
                )
            })
    }

    /// `Ok` if every tag of `tags` is in flight to `consumer` in `lane`; otherwise the refusal
    /// naming the first that is not.
    fn in_flight_to(&self, consumer: u64, lane: LaneId, tags: &[u64]) -> Result<(), Refusal> {
        let l = self.lane(lane);
        let stray = tags.iter().find(|tag| {
            !l.and_then(|l| l.entries.get(tag)).is_some_and(
                |e| matches!(e.state, State::InFlight { consumer: c, .. } if c == consumer),
            )
        });
        match stray {
            None => Ok(()),
            Some(tag) => Err((
                ErrorCode::UnknownId,
                format!(
                    "message {tag} is not in flight to consumer {consumer} (never delivered to \
                     it, acked already, or back in the queue after its ack wait): nothing was \
                     acked or nakked"
                ),
            )),
        }
    }

    /// Forgets a consumer, for its connection's count too.
    pub(super) fn forget_consumer(&mut self, consumer: u64) -> Option<Consumer> {
        let c = self.consumers.remove(&consumer)?;
        if let Some(state) = self.clients.get_mut(&c.client) {
            state.consumers = state.consumers.saturating_sub(1);
        }
        Some(c)
    }
}
