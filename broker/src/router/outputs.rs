//! The router's outputs: frames into peer outboxes, deliveries into subscriber outboxes.

use palio_protocol::ErrorCode;
use palio_topology::{PeerFrame, Transmit};

use super::owners::Owner;
use super::{Router, gauge};
use crate::config::SlowConsumerPolicy;
use crate::delivery::Delivery;
use crate::outbox::{Gate, Pushed};
use crate::wire::PeerOut;

impl Router {
    /// Sends and delivers everything the state machine has queued.
    pub(super) fn drain(&mut self) {
        loop {
            if let Some(t) = self.broker.poll_transmit() {
                self.transmit(t);
                continue;
            }
            if let Some(d) = self.broker.poll_delivery() {
                self.deliver(d);
                continue;
            }
            break;
        }
    }

    pub(super) fn update_gauges(&self) {
        let m = &self.metrics;
        m.table_entries.set(gauge(self.broker.table_entries()));
        m.forwarded_entries
            .set(gauge(self.broker.forwarded_entries()));
        m.known_brokers.set(gauge(self.broker.known_brokers()));
        m.peer_links_up.set(gauge(self.peers.len()));
        m.subscriptions.set(gauge(self.subscriptions.len()));
        m.advertisements.set(gauge(self.advertisements.len()));
    }

    /// Notes on the current batch's credit that `pushed` left an outbox over its limit.
    fn note(&self, pushed: Pushed, gate: impl FnOnce() -> Gate) {
        if pushed == Pushed::Full
            && let Some(c) = &self.credit
        {
            c.block_on(gate());
        }
    }

    /// Queues a frame for a peer: a notification in the outbox of the batch's lane, any other
    /// frame in the link's control outbox. Never drops: a full lane slows the traffic that goes
    /// there. Only notifications hold their ingress back: routing frames are small, limited
    /// where they are made, and must not wait behind data.
    fn transmit(&mut self, t: Transmit) {
        let Some(p) = self.peers.get(&t.peer) else {
            return;
        };
        let notification = matches!(t.frame, PeerFrame::Notification(_));
        let out = match t.frame {
            PeerFrame::Notification(n) => {
                self.counts.forwarded += 1;
                match &self.last_encoded {
                    Some(e) if e.wraps(&n) => e.share(),
                    _ => {
                        let out = PeerOut::of_frame(PeerFrame::Notification(n));
                        if let PeerOut::Notify(e) = &out {
                            self.last_encoded = Some(e.clone());
                        }
                        out
                    }
                }
            }
            other => PeerOut::of_frame(other),
        };
        let size = out.size();
        let outbox = if notification {
            p.lane(self.lane)
        } else {
            &p.frames
        };
        // A closed outbox means the link is going down; its PeerDown is on the way.
        let pushed = outbox.push(out, size);
        if notification && self.credit_from != Some(t.peer) {
            self.note(pushed, || outbox.gate());
        }
    }

    fn deliver(&mut self, d: palio_topology::Delivery) {
        let sub = d.subscription.0;
        let Some(entry) = self.subscriptions.get(&sub) else {
            return;
        };
        let client = match &entry.owner {
            Owner::Static(name) => {
                self.metrics.static_matches.with_label_values(&[name]).inc();
                return;
            }
            Owner::Client(c) => *c,
        };
        let Some(c) = self.clients.get_mut(&client) else {
            return;
        };
        if c.closing {
            return;
        }
        let full = c.deliveries.is_full();
        match self.limits.slow_consumer {
            SlowConsumerPolicy::Drop if full => {
                self.metrics
                    .dropped
                    .with_label_values(&["slow_consumer"])
                    .inc();
                return;
            }
            SlowConsumerPolicy::Disconnect if full => {
                self.metrics
                    .dropped
                    .with_label_values(&["slow_consumer"])
                    .inc();
                c.closing = true;
                self.metrics.slow_consumer_disconnects.inc();
                tracing::info!(
                    client,
                    "subscriber too slow: disconnecting (policy disconnect)"
                );
                c.connection.close(
                    ErrorCode::SlowConsumer.code().into(),
                    b"subscriber too slow: delivery queue full",
                );
                return;
            }
            _ => {}
        }
        let delivery = Delivery {
            subscription: sub,
            notification: d.notification,
        };
        let size = delivery.size();
        match c.deliveries.push(delivery, size) {
            Pushed::Closed => {
                self.metrics.dropped.with_label_values(&["closed"]).inc();
            }
            pushed => {
                self.counts.delivered += 1;
                // Only the lossless policy holds the publisher back; the others act on the
                // next delivery that finds the outbox full.
                if pushed == Pushed::Full
                    && self.limits.slow_consumer == SlowConsumerPolicy::Block
                    && let Some(credit) = &self.credit
                {
                    credit.block_on(c.deliveries.gate());
                }
            }
        }
    }
}
