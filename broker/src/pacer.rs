//! Pacing an ingress: how a full outbox slows exactly the traffic that must go there.
//!
//! Every stream that brings notifications into the broker (a client's control stream, each
//! lane of a peer link, a peer link's control stream) has a [`Pacer`]. The ingress hands its frames to the router in batches, each with a
//! [`Credit`]. While the router routes a batch, every outbox it leaves over its limit is noted
//! on that credit. Before its next batch the ingress calls [`Pacer::ready`], which waits for
//! every noted outbox to drain below its limit. Meanwhile the ingress does not read its QUIC
//! stream, so the sender's stream window fills and the sender is slowed in turn: a publisher
//! feeding a stalled link ends up blocked in `publish`, while a publisher whose traffic goes
//! elsewhere is not affected. Between brokers, notifications travel on lanes (the `peer`
//! module): each lane of a link is read as an ingress of its own, so a full outbox stops only
//! the lane whose batches filled it; traffic on the link's other lanes goes on. Only
//! notifications and deliveries note an outbox on a credit: routing frames never make their
//! reader wait.
//!
//! Credits are few ([`IN_FLIGHT`] batches per ingress), so an ingress cannot run far ahead of
//! the router: what an outbox holds beyond its limit is bounded by the batches in flight.
//!
//! Why this cannot deadlock: an ingress waits only on outboxes its own traffic went to, and a
//! peer link's readers never on their own link's outboxes (the router does not note them).
//! So the reader of lane k of a link waits only on lane k of other links of the same spanning
//! tree (a notification never goes back where it came from, and keeps its lane) and on local
//! subscribers; a control reader waits on nothing but, on a link without lanes, the same
//! outboxes a lane reader would. Following "waits on" along tree edges never returns to where
//! it started, and subscribers wait on nobody. The router itself never waits
//! on an outbox. A receiver that stops reading altogether is cut after the stall timeout (see
//! the `writer` module), which also closes its outbox and releases everyone waiting on it.

use std::sync::{Arc, Mutex};

use prometheus::IntCounter;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::outbox::Gate;

/// Batches an ingress may have handed to the router and not yet seen routed.
pub(crate) const IN_FLIGHT: usize = 2;

/// The most frames an ingress hands to the router in one batch.
pub(crate) const BATCH: usize = 256;

/// One ingress's pacing state.
#[derive(Debug)]
pub(crate) struct Pacer {
    /// Credits for batches in flight toward the router.
    credits: Arc<Semaphore>,
    /// Outboxes found over their limit while routing this ingress's batches.
    blocked: Mutex<Vec<Gate>>,
    /// Counts the times this ingress waited for a full outbox.
    waits: IntCounter,
}

impl Pacer {
    /// A pacer counting its waits in `waits`.
    pub(crate) fn new(waits: IntCounter) -> Arc<Self> {
        Arc::new(Self {
            credits: Arc::new(Semaphore::new(IN_FLIGHT)),
            blocked: Mutex::new(Vec::new()),
            waits,
        })
    }

    /// Waits until this ingress may hand the router another batch: a credit is free and
    /// every outbox its earlier batches filled has room again.
    pub(crate) async fn ready(self: &Arc<Self>) -> Credit {
        // A closed semaphore is impossible (nobody closes it); fall back to no credit.
        let permit = self.credits.clone().acquire_owned().await.ok();
        loop {
            let gates = self
                .blocked
                .lock()
                .map(|mut b| std::mem::take(&mut *b))
                .unwrap_or_default();
            if gates.is_empty() {
                break;
            }
            self.waits.inc();
            for g in gates {
                g.opened().await;
            }
        }
        Credit {
            pacer: self.clone(),
            _permit: permit,
        }
    }
}

/// Permission for one batch; returned (dropped) once the router has routed it.
#[derive(Debug)]
pub(crate) struct Credit {
    pacer: Arc<Pacer>,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Credit {
    /// Notes that routing this batch left `gate`'s outbox over its limit.
    pub(crate) fn block_on(&self, gate: Gate) {
        if let Ok(mut b) = self.pacer.blocked.lock()
            && !b.iter().any(|g| g.same(&gate))
        {
            b.push(gate);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::outbox::{Capacity, Outbox, Pushed};

    #[tokio::test]
    async fn an_ingress_waits_for_the_outboxes_its_traffic_filled() {
        let (full, mut inbox) = Outbox::new(Capacity {
            frames: 1,
            bytes: 1 << 20,
        });
        let (other, _other_inbox) = Outbox::<u32>::new(Capacity {
            frames: 1,
            bytes: 1 << 20,
        });
        let waits = IntCounter::new("w", "w").unwrap();
        let slowed = Pacer::new(waits.clone());
        let free = Pacer::new(waits.clone());
        let credit = slowed.ready().await;
        full.push(1, 1);
        if full.push(2, 1) == Pushed::Full {
            credit.block_on(full.gate());
        }
        drop(credit);
        other.push(7, 1);
        // The ingress whose traffic went elsewhere is not held back.
        tokio::time::timeout(Duration::from_millis(200), free.ready())
            .await
            .expect("an unrelated ingress goes on");
        let waiting = {
            let slowed = slowed.clone();
            tokio::spawn(async move { drop(slowed.ready().await) })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "held while its outbox is full");
        let (_, bytes) = inbox.recv().await.unwrap();
        inbox.release(1, bytes);
        tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("released once the outbox drained")
            .unwrap();
        assert_eq!(waits.get(), 1, "one wait, counted");
    }

    #[tokio::test]
    async fn credits_bound_the_batches_in_flight() {
        let p = Pacer::new(IntCounter::new("w", "w").unwrap());
        let held: Vec<Credit> =
            futures_util::future::join_all((0..IN_FLIGHT).map(|_| p.ready())).await;
        assert!(
            tokio::time::timeout(Duration::from_millis(50), p.ready())
                .await
                .is_err(),
            "no credit while {IN_FLIGHT} batches are in flight"
        );
        drop(held);
        tokio::time::timeout(Duration::from_millis(200), p.ready())
            .await
            .expect("credits come back when batches are routed");
    }
}
