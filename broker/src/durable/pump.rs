//! Moving messages to consumers: the pump (push windows and pending fetches), deliveries,
//! detaching, and the timers — ack-wait redelivery, nak delays, fetch waits and
//! dead-lettering after `max_deliveries`.

use std::cmp::Reverse;
use std::time::{Duration, Instant};

use palio_protocol::ConsumeMode;

use super::consume::after;
use super::engine::{Engine, Journal, Timer};
use super::output::{Answer, Output};
use super::queue::State;
use super::record::{LaneId, Record};

impl Engine {
    /// Fires due timers.
    pub(crate) fn handle_timeout(&mut self, j: &mut impl Journal, now: Instant) {
        while let Some(Reverse((t, timer))) = self.timers.peek().copied() {
            if t > now {
                break;
            }
            self.timers.pop();
            match timer {
                Timer::AckWait { lane, tag, count } => {
                    let expired = self
                        .lane(lane)
                        .and_then(|l| l.entries.get(&tag))
                        .is_some_and(|e| {
                            e.count == count && matches!(e.state, State::InFlight { .. })
                        });
                    if expired {
                        self.detach_in_flight(lane, tag);
                        self.release(j, now, lane, tag, None);
                        self.pump(j, now, lane);
                    }
                }
                Timer::Delay { lane, tag } => {
                    let due = self
                        .lane(lane)
                        .and_then(|l| l.entries.get(&tag))
                        .is_some_and(|e| matches!(e.state, State::Delayed(at) if at <= now));
                    if due {
                        if let Some(l) = self.lane_mut(lane) {
                            l.set_state(tag, State::Ready);
                        }
                        self.pump(j, now, lane);
                    }
                }
                Timer::Fetch { consumer, request } => {
                    let current = self
                        .consumers
                        .get(&consumer)
                        .and_then(|c| c.fetch)
                        .is_some_and(|f| f.request == request);
                    if current {
                        self.finish_fetch(consumer);
                    }
                }
                Timer::Expire { queue } => {
                    if self.timer_is_current(t, timer) {
                        self.expire(j, now, queue);
                    }
                }
            }
        }
        self.schedule_expiries();
    }

    /// Detaches a consumer: its messages in flight are ready again at once.
    pub(super) fn detach(&mut self, j: &mut impl Journal, now: Instant, consumer: u64) {
        self.finish_fetch(consumer);
        let Some(c) = self.forget_consumer(consumer) else {
            return;
        };
        if let Some(l) = self.lane_mut(c.lane) {
            l.consumers.retain(|x| *x != consumer);
        }
        for tag in c.in_flight {
            self.release(j, now, c.lane, tag, None);
        }
        self.pump(j, now, c.lane);
    }

    /// A delivery of `tag` ended without an ack: ready again (after `delay`), or dead-lettered
    /// if it was delivered the maximum number of times.
    pub(super) fn release(
        &mut self,
        j: &mut impl Journal,
        now: Instant,
        lane: LaneId,
        tag: u64,
        delay: Option<Instant>,
    ) {
        let Some(q) = self.queues.get(&lane.queue) else {
            return;
        };
        let Some(count) = q.lane(lane.dead).entries.get(&tag).map(|e| e.count) else {
            return;
        };
        if !lane.dead && q.max_deliveries > 0 && count >= q.max_deliveries {
            let rec = Record::DeadLettered {
                queue: lane.queue,
                tags: vec![tag],
            };
            if self.write(j, rec).is_ok() {
                self.stats.dead_lettered += 1;
                self.pump(j, now, LaneId { dead: true, ..lane });
                return;
            }
        }
        let Some(l) = self.lane_mut(lane) else {
            return;
        };
        match delay {
            Some(at) if at > now => {
                l.set_state(tag, State::Delayed(at));
                self.push_timer(at, Timer::Delay { lane, tag });
            }
            _ => l.set_state(tag, State::Ready),
        }
    }

    /// Delivers ready messages of `lane` to its consumers while they have room, and records
    /// their delivery counts in one [`Record::DeliveredMany`].
    pub(super) fn pump(&mut self, j: &mut impl Journal, now: Instant, lane: LaneId) {
        let mut deliveries = Vec::new();
        loop {
            let Some(q) = self.queues.get_mut(&lane.queue) else {
                return;
            };
            let ack_wait = q.ack_wait;
            let l = q.lane_mut(lane.dead);
            let Some(&tag) = l.ready.first() else {
                break;
            };
            let consumers = &self.consumers;
            let Some(consumer) = l.next_consumer(|c| {
                consumers.get(&c).is_some_and(|c| match c.mode {
                    ConsumeMode::Push { window } => c.in_flight.len() < window as usize,
                    _ => c.fetch.is_some_and(|f| f.remaining > 0),
                })
            }) else {
                break;
            };
            self.deliver(j, now, lane, tag, consumer, ack_wait, &mut deliveries);
        }
        if !deliveries.is_empty() {
            // Best effort: after a crash the counts may be one lower (documented).
            let _ = self.write(j, Record::DeliveredMany { lane, deliveries });
        }
        // A fetch that got something returns once nothing more is ready.
        let fetching: Vec<u64> = self
            .lane(lane)
            .map(|l| l.consumers.clone())
            .unwrap_or_default();
        for c in fetching {
            if self
                .consumers
                .get(&c)
                .and_then(|c| c.fetch)
                .is_some_and(|f| f.delivered > 0)
            {
                self.finish_fetch(c);
            }
        }
    }

    /// Delivers `tag` to `consumer`; adds `(tag, count)` to `deliveries` for the caller to
    /// record.
    #[allow(clippy::too_many_arguments)]
    fn deliver(
        &mut self,
        j: &mut impl Journal,
        now: Instant,
        lane: LaneId,
        tag: u64,
        consumer: u64,
        ack_wait: Duration,
        deliveries: &mut Vec<(u64, u32)>,
    ) {
        let Some(l) = self.lane_mut(lane) else {
            return;
        };
        let Some(e) = l.entries.get_mut(&tag) else {
            l.ready.remove(&tag);
            return;
        };
        e.count += 1;
        let (count, pos) = (e.count, e.pos);
        let deadline = after(now, ack_wait);
        l.set_state(tag, State::InFlight { consumer, deadline });
        let (attributes, payload) = match Self::read_message(j, pos) {
            Ok(body) => body,
            Err(why) => {
                // The message's bytes are gone or damaged: it cannot be delivered, ever.
                tracing::error!(?lane, tag, error = %why, "a stored message cannot be read; dropped from its queue");
                let _ = self.write(
                    j,
                    Record::Acked {
                        lane,
                        tags: vec![tag],
                    },
                );
                return;
            }
        };
        // A queue was narrowed to its owner's permission when it was added; a consumer whose
        // principal may not receive this message (a reload shrank the permission since, or an
        // admin consumes another's queue) never gets it, and it leaves the queue.
        let allowed = self
            .consumers
            .get(&consumer)
            .and_then(|c| self.principal(c.client))
            .is_none_or(|p| p.may_receive(&attributes));
        if !allowed {
            self.stats.denied_receive += 1;
            let _ = self.write(
                j,
                Record::Acked {
                    lane,
                    tags: vec![tag],
                },
            );
            return;
        }
        deliveries.push((tag, count));
        self.push_timer(deadline, Timer::AckWait { lane, tag, count });
        self.stats.delivered += 1;
        if count > 1 {
            self.stats.redelivered += 1;
        }
        let Some(c) = self.consumers.get_mut(&consumer) else {
            return;
        };
        c.in_flight.insert(tag);
        if let Some(f) = &mut c.fetch {
            f.remaining -= 1;
            f.delivered += 1;
        }
        let client = c.client;
        let done = c.fetch.is_some_and(|f| f.remaining == 0);
        self.out.push_back(Output::Delivered {
            client,
            consumer,
            tag,
            delivery_count: count,
            attributes,
            payload,
        });
        if done {
            self.finish_fetch(consumer);
        }
    }

    /// Ends a consumer's pending fetch, if any, with `Fetched`.
    pub(super) fn finish_fetch(&mut self, consumer: u64) {
        let Some(c) = self.consumers.get_mut(&consumer) else {
            return;
        };
        let Some(f) = c.fetch.take() else {
            return;
        };
        let client = c.client;
        self.answer(client, f.request, Answer::Fetched { count: f.delivered });
    }
}
