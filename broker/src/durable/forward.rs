//! Store-and-forward between brokers.
//!
//! The access broker of a persistent publication stores it with the brokers it must reach (from
//! the `directory`) and, once durable, sends it toward each through the next hop on the current
//! tree (the router's `SpanningTree::next_hops`, given by [`Engine::set_next_hops`]). A hop
//! stores the message before it acks it ([`Output::StoreAck`]); only then does the sender write
//! that it handed those destinations off. A message whose ack never came (link lost) is sent
//! again — to the same or another next hop. A receiver ignores a destination it still takes care
//! of for that [`MessageId`] (its own queues, when it enqueued the message already; another
//! broker, while the message waits to be handed on); a destination it handed off before is taken
//! again, so a changed route can cause a duplicate further on but never a loss. A destination
//! with no route waits until one appears.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;

use palio_protocol::Attributes;
use palio_topology::BrokerId;

use super::engine::{Engine, Journal};
use super::output::Output;
use super::record::Record;
use crate::wire::MessageId;

impl Engine {
    /// A peer link is up: send it the whole directory, and messages routed through it.
    pub(crate) fn peer_up(&mut self, j: &mut impl Journal, peer: BrokerId) {
        if self.peers.contains_key(&peer) {
            // A new link replaced one whose end we have not seen yet: what went out on the old
            // one may never be acked.
            self.peer_down(j, peer);
        }
        self.peers.insert(peer, 0);
        self.send_directory(peer);
        self.retry_all();
        self.pump_forwards(j);
    }

    /// A peer link is down: what was sent through it and not acked is sent again (through
    /// whatever hop the tree gives next).
    pub(crate) fn peer_down(&mut self, j: &mut impl Journal, peer: BrokerId) {
        self.peers.remove(&peer);
        let ids: Vec<MessageId> = self.forwards.keys().copied().collect();
        for id in ids {
            if let Some(f) = self.forwards.get_mut(&id)
                && let Some(dests) = f.sent.remove(&peer)
            {
                f.unsent.extend(dests);
                self.to_send.insert(id);
            }
        }
        self.pump_forwards(j);
    }

    /// The tree changed: `hops` maps each reachable broker to the peer leading to it.
    pub(crate) fn set_next_hops(
        &mut self,
        j: &mut impl Journal,
        hops: HashMap<BrokerId, BrokerId>,
    ) {
        if hops == self.next_hops {
            return;
        }
        self.next_hops = hops;
        self.retry_all();
        self.pump_forwards(j);
    }

    /// Makes every forward with unsent destinations a candidate again (a route may exist now).
    fn retry_all(&mut self) {
        self.to_send.extend(
            self.forwards
                .iter()
                .filter(|(_, f)| !f.unsent.is_empty())
                .map(|(id, _)| *id),
        );
    }

    /// A peer sent a persistent message: store it (unless every destination is taken care of
    /// before) and ack it once durable. A full local queue with `discard = new` does not take
    /// it (dropped and counted for that queue: the publisher's broker acked it long ago).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn handle_store(
        &mut self,
        j: &mut impl Journal,
        now: std::time::Instant,
        peer: BrokerId,
        id: MessageId,
        dests: Vec<BrokerId>,
        attributes: Attributes,
        payload: Vec<u8>,
    ) {
        let me = self.cfg.me;
        // A destination is ignored only while it is taken care of here: delivered to the local
        // queues, or still waiting to be handed on. One handed off already is taken again (a
        // route may have changed under the message): at worst a duplicate that the next
        // holder ignores, never a loss.
        let pending = self.forwards.get(&id);
        let new: BTreeSet<BrokerId> = dests
            .into_iter()
            .filter(|d| {
                if *d == me {
                    !self.seen.contains(&id)
                } else {
                    pending.is_none_or(|f| {
                        !f.unsent.contains(d) && !f.sent.values().any(|s| s.contains(d))
                    })
                }
            })
            .collect();
        if !new.is_empty() {
            let local = new.contains(&me);
            let queues = if local {
                self.local_matches(&attributes)
            } else {
                Vec::new()
            };
            let rec = Record::Message {
                id,
                producer: None,
                attributes,
                payload,
                local,
                queues,
                dests: new.into_iter().filter(|d| *d != me).collect(),
                at_ms: self.cfg.clock.unix_ms(now),
                matched: None,
            };
            if self.write(j, rec).is_err() {
                // Not stored: no ack; the peer sends it again after the store recovers.
                return;
            }
        } else {
            self.stats.duplicates += 1;
        }
        self.when_durable(
            j,
            Output::StoreAck {
                peer,
                ids: vec![id],
            },
        );
    }

    /// A peer stored messages we sent it.
    pub(crate) fn handle_store_ack(
        &mut self,
        j: &mut impl Journal,
        peer: BrokerId,
        ids: &[MessageId],
    ) {
        for id in ids {
            let Some(f) = self.forwards.get_mut(id) else {
                continue;
            };
            let Some(dests) = f.sent.remove(&peer) else {
                continue;
            };
            if !f.unsent.is_empty() {
                // Destinations that waited for this hop's ack (see pump_forwards).
                self.to_send.insert(*id);
            }
            if let Some(n) = self.peers.get_mut(&peer) {
                *n = n.saturating_sub(1);
            }
            self.stats.forwarded += 1;
            // Not waited on: if it is lost in a crash, the message is sent again and the peer
            // ignores it.
            let _ = self.write(
                j,
                Record::HandedOff {
                    id: *id,
                    dests: dests.into_iter().collect(),
                },
            );
        }
        self.pump_forwards(j);
    }

    /// Sends durable messages with unsent destinations toward them, within each peer's
    /// window.
    pub(super) fn pump_forwards(&mut self, j: &mut impl Journal) {
        let window = self.cfg.peer_window;
        let mut cursor: Option<MessageId> = None;
        loop {
            let next = match cursor {
                None => self.to_send.first().copied(),
                Some(c) => self
                    .to_send
                    .range((Bound::Excluded(c), Bound::Unbounded))
                    .next()
                    .copied(),
            };
            let Some(id) = next else {
                break;
            };
            cursor = Some(id);
            if !self.peers.values().any(|n| *n < window) {
                break;
            }
            let Some(f) = self.forwards.get(&id) else {
                self.to_send.remove(&id);
                continue;
            };
            if f.pos >= self.durable {
                // Not durable yet (ids are not in log order: look further).
                continue;
            }
            let mut by_hop: BTreeMap<BrokerId, BTreeSet<BrokerId>> = BTreeMap::new();
            for d in &f.unsent {
                // One Store per message and hop in flight: its ack names the message only, so
                // it must cover everything sent to that hop.
                if let Some(hop) = self.next_hops.get(d)
                    && !f.sent.contains_key(hop)
                    && self.peers.get(hop).is_some_and(|n| *n < window)
                {
                    by_hop.entry(*hop).or_default().insert(*d);
                }
            }
            if by_hop.is_empty() {
                // No route (or no room) now; set_next_hops or peer_up brings it back.
                if self.peers.values().all(|n| *n < window) {
                    self.to_send.remove(&id);
                }
                continue;
            }
            let pos = f.pos;
            let (attributes, payload) = match Self::read_message(j, pos) {
                Ok(body) => body,
                Err(why) => {
                    tracing::error!(?id, error = %why, "a stored message cannot be read; not forwarded");
                    let dests: Vec<BrokerId> = f.unsent.iter().copied().collect();
                    let _ = self.write(j, Record::HandedOff { id, dests });
                    continue;
                }
            };
            let Some(f) = self.forwards.get_mut(&id) else {
                continue;
            };
            for (hop, dests) in by_hop {
                for d in &dests {
                    f.unsent.remove(d);
                }
                f.sent.entry(hop).or_default().extend(dests.iter().copied());
                if let Some(n) = self.peers.get_mut(&hop) {
                    *n += 1;
                }
                self.out.push_back(Output::Store {
                    peer: hop,
                    id,
                    dests: dests.into_iter().collect(),
                    attributes: attributes.clone(),
                    payload: payload.clone(),
                });
            }
            if f.unsent.is_empty() {
                self.to_send.remove(&id);
            }
        }
    }
}
