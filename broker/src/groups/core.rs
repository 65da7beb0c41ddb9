//! One group's sans-IO core, whichever its order: the task drives them all the same way.

use std::time::Instant;

use palio_filter::Event;
use palio_topology::BrokerId;
use palio_topology::group::{
    BodyError, CausalConfig, CausalGroup, Effect, Order, TotalConfig, TotalGroup, VClock,
};
use serde::{Deserialize, Serialize};

use crate::wire::GroupDecl;

/// What a group carries: a notification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Msg {
    /// The attributes.
    pub(crate) attributes: Event,
    /// The payload.
    #[serde(with = "serde_bytes")]
    pub(crate) payload: Vec<u8>,
}

/// A fifo or causal core, or a total-order one.
#[derive(Debug)]
pub(super) enum Core {
    Causal(Box<CausalGroup<Msg>>),
    Total(Box<TotalGroup<Msg>>),
}

impl Core {
    /// The core of `decl` at broker `me`, rebuilt from its records.
    pub(super) fn new(
        me: BrokerId,
        decl: &GroupDecl,
        recovered: Vec<Vec<u8>>,
        now: Instant,
    ) -> Result<Self, BodyError> {
        Ok(match decl.order {
            Order::Fifo | Order::Causal => Core::Causal(Box::new(CausalGroup::new(
                me,
                decl.order,
                CausalConfig::default(),
                recovered,
            )?)),
            Order::Total => Core::Total(Box::new(TotalGroup::new(
                me,
                &decl.voters,
                TotalConfig::default(),
                recovered,
                now,
            )?)),
        })
    }

    pub(super) fn publish(
        &mut self,
        now: Instant,
        producer: &str,
        pseq: u64,
        deps: &VClock,
        msg: Msg,
    ) {
        match self {
            Core::Causal(c) => c.publish(now, producer, pseq, deps, msg),
            Core::Total(t) => t.publish(now, producer, pseq, msg),
        }
    }

    pub(super) fn handle_body(
        &mut self,
        now: Instant,
        from: BrokerId,
        body: &[u8],
    ) -> Result<(), BodyError> {
        match self {
            Core::Causal(c) => c.handle_body(now, from, body),
            Core::Total(t) => t.handle_body(now, from, body),
        }
    }

    /// Whether the broker has local members (a total-order reader then follows the log).
    pub(super) fn set_reading(&mut self, now: Instant, reading: bool) {
        if let Core::Total(t) = self {
            t.set_reading(now, reading);
        }
    }

    /// Broker `b` became reachable.
    pub(super) fn broker_up(&mut self, now: Instant, b: BrokerId) {
        if let Core::Causal(c) = self {
            c.handle_broker_up(now, b);
        }
    }

    pub(super) fn handle_timeout(&mut self, now: Instant) {
        match self {
            Core::Causal(c) => c.handle_timeout(now),
            Core::Total(t) => t.handle_timeout(now),
        }
    }

    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Core::Causal(c) => c.poll_timeout(),
            Core::Total(t) => t.poll_timeout(),
        }
    }

    pub(super) fn poll_effect(&mut self) -> Option<Effect<Msg>> {
        match self {
            Core::Causal(c) => c.poll_effect(),
            Core::Total(t) => t.poll_effect(),
        }
    }

    /// Total order: the epoch and the sequencer as this broker knows them.
    pub(super) fn sequencing(&self) -> Option<(u64, Option<BrokerId>)> {
        match self {
            Core::Causal(_) => None,
            Core::Total(t) => Some((t.epoch(), t.sequencer())),
        }
    }
}
