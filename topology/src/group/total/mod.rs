//! Total-order groups at one broker: a Raft-replicated log whose leader is the sequencer.
//!
//! SKELETON: the API is fixed; the bodies are being written (see the module docs of
//! `group` for the call protocol).

use std::marker::PhantomData;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{BodyError, Effect};
use crate::BrokerId;

/// The consensus a total-order group runs on, as small as the group needs (implemented over
/// raft-rs; see `raft.rs`).
pub trait Consensus {}

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
    /// How many messages the core keeps in memory to serve readers.
    pub retain: usize,
}

impl Default for TotalConfig {
    fn default() -> Self {
        TotalConfig {
            tick: Duration::from_millis(100),
            election_ticks: 10,
            heartbeat_ticks: 2,
            retry_after: Duration::from_secs(2),
            retain: 1 << 20,
        }
    }
}

/// One total-order group at one broker: a replica (if `me` is among the voters), an access
/// broker for local publishers, and a reader for local members.
#[derive(Debug)]
pub struct TotalGroup<M> {
    _m: PhantomData<M>,
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
        let _ = (me, voters, config, recovered.into_iter().count(), now);
        unimplemented!("skeleton")
    }

    /// A publication from a local client. Acked (in publish order per producer) once committed.
    pub fn publish(&mut self, now: Instant, producer: &str, pseq: u64, msg: M) {
        let _ = (now, producer, pseq, msg);
        unimplemented!("skeleton")
    }

    /// Whether this broker has local members: a reader follows the committed log and delivers.
    /// A reader that starts delivers from the next committed position on.
    pub fn set_reading(&mut self, now: Instant, reading: bool) {
        let _ = (now, reading);
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

    /// Timers due at `now` (Raft ticks, publication retries, reader catch-up).
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

    /// The current epoch (Raft term) as this broker knows it.
    pub fn epoch(&self) -> u64 {
        unimplemented!("skeleton")
    }

    /// The sequencer (Raft leader) as this broker knows it.
    pub fn sequencer(&self) -> Option<BrokerId> {
        unimplemented!("skeleton")
    }

    /// The group's replicas.
    pub fn voters(&self) -> &[BrokerId] {
        unimplemented!("skeleton")
    }

    /// The last position delivered (or, on a replica that does not read, applied).
    pub fn last_position(&self) -> Option<super::Position> {
        unimplemented!("skeleton")
    }
}
