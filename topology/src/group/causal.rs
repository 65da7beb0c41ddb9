//! Fifo and causal groups at one broker: stamping, broadcast, CBCAST delivery, repair.
//!
//! SKELETON: the API is fixed; the bodies are being written (see the module docs of
//! `group` for the call protocol).

use std::marker::PhantomData;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{BodyError, Effect, Order, VClock};
use crate::BrokerId;

/// Tuning of a [`CausalGroup`].
#[derive(Debug, Clone)]
pub struct CausalConfig {
    /// How long a message waits for a missing predecessor before the core asks its origin again.
    pub repair_after: Duration,
    /// How many times it asks before it reports the missing messages as a gap.
    pub repair_attempts: u32,
    /// How many of its own messages a broker keeps to answer repair requests.
    pub retain: usize,
}

impl Default for CausalConfig {
    fn default() -> Self {
        CausalConfig {
            repair_after: Duration::from_millis(500),
            repair_attempts: 5,
            retain: 65_536,
        }
    }
}

/// One fifo or causal group at one broker.
#[derive(Debug)]
pub struct CausalGroup<M> {
    _m: PhantomData<M>,
}

impl<M: Clone + Serialize + DeserializeOwned> CausalGroup<M> {
    /// A group at broker `me`, rebuilt from the records it persisted before (empty when new).
    /// `order` is [`Order::Fifo`] or [`Order::Causal`].
    pub fn new(
        me: BrokerId,
        order: Order,
        config: CausalConfig,
        recovered: impl IntoIterator<Item = Vec<u8>>,
    ) -> Result<Self, BodyError> {
        let _ = (me, order, config, recovered.into_iter().count());
        unimplemented!("skeleton")
    }

    /// A publication accepted from a local client, after everything in `deps` (the clock of
    /// what that client delivered; empty for fifo) is delivered here.
    pub fn publish(&mut self, now: Instant, producer: &str, pseq: u64, deps: &VClock, msg: M) {
        let _ = (now, producer, pseq, deps, msg);
        unimplemented!("skeleton")
    }

    /// A body from this group's core at broker `from`.
    pub fn handle_body(
        &mut self,
        now: Instant,
        from: BrokerId,
        body: &[u8],
    ) -> Result<(), BodyError> {
        let _ = (now, from, body);
        unimplemented!("skeleton")
    }

    /// Broker `b` is reachable again, or newly known (the core may resend what `b` may lack).
    pub fn handle_broker_up(&mut self, now: Instant, b: BrokerId) {
        let _ = (now, b);
        unimplemented!("skeleton")
    }

    /// Timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let _ = now;
        unimplemented!("skeleton")
    }

    /// When `handle_timeout` wants to be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        unimplemented!("skeleton")
    }

    /// The next effect to carry out.
    pub fn poll_effect(&mut self) -> Option<Effect<M>> {
        unimplemented!("skeleton")
    }

    /// The clock of what this broker delivered.
    pub fn delivered(&self) -> &VClock {
        unimplemented!("skeleton")
    }
}
