//! What brokers tell each other about groups: names, declarations, members and
//! sequencers flooded over peer links, and the cores' bodies routed (on the link to their
//! destination when there is one, else hop by hop over the spanning tree). What a peer
//! floods past a bound (see `bounds`) is neither taken nor passed on, and is counted.

use std::collections::HashMap;
use std::time::Instant;

use palio_topology::BrokerId;
use palio_topology::group::Order;

use super::Task;
use super::bounds::{MAX_BROKER_NAME, MAX_BROKER_NAMES, OverLimit};
use crate::wire::{GroupDecl, GroupPeer, PeerMessage, PeerOut};

impl Task {
    /// Tells a new peer everything this broker knows.
    pub(super) fn greet(&mut self, peer: BrokerId) {
        self.to_peer(peer, GroupPeer::Names(self.catalog.names()));
        let decls: Vec<GroupDecl> = self.catalog.decls().cloned().collect();
        for d in decls {
            self.to_peer(peer, GroupPeer::Decl(d));
        }
        let lists: Vec<GroupPeer> = self
            .catalog
            .member_lists()
            .map(|(g, b, v, m)| GroupPeer::Members {
                group: g.to_owned(),
                broker: b,
                version: v,
                members: m.to_vec(),
            })
            .collect();
        for m in lists {
            self.to_peer(peer, m);
        }
        let sequencers: Vec<GroupPeer> = self
            .catalog
            .sequencers()
            .map(|(g, epoch, broker)| GroupPeer::Sequencer {
                group: g.to_owned(),
                epoch,
                broker,
            })
            .collect();
        for m in sequencers {
            self.to_peer(peer, m);
        }
    }

    pub(super) fn peer(&mut self, now: Instant, from: BrokerId, message: GroupPeer) {
        match message {
            GroupPeer::Names(names) => {
                let (new, refused) = self.catalog.merge_names(names);
                if refused > 0 {
                    self.over_limit(&OverLimit::new(
                        "group_broker_names",
                        format!(
                            "{refused} broker names from {from} not taken: longer than \
                             {MAX_BROKER_NAME} bytes, or past {MAX_BROKER_NAMES} brokers"
                        ),
                    ));
                }
                if !new.is_empty() {
                    self.flood(GroupPeer::Names(new), Some(from));
                }
            }
            GroupPeer::Decl(d) => {
                // A refusal is counted and logged by `take_decl`; the peer is not answered.
                let _ = self.take_decl(now, d, Some(from));
            }
            GroupPeer::Members {
                group,
                broker,
                version,
                members,
            } => {
                if broker == self.me {
                    return;
                }
                match self
                    .catalog
                    .merge_members(&group, broker, version, members.clone())
                {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(e) => {
                        self.over_limit(&e);
                        return;
                    }
                }
                self.flood(
                    GroupPeer::Members {
                        group,
                        broker,
                        version,
                        members,
                    },
                    Some(from),
                );
            }
            GroupPeer::Sequencer {
                group,
                epoch,
                broker,
            } => {
                if self.catalog.merge_sequencer(&group, epoch, broker) {
                    self.flood(
                        GroupPeer::Sequencer {
                            group,
                            epoch,
                            broker,
                        },
                        Some(from),
                    );
                }
            }
            GroupPeer::Body {
                group,
                from: origin,
                to,
                body,
            } => {
                if to != self.me {
                    self.send_body(group, origin, to, body);
                } else if let Some((_, core)) = self.cores.get_mut(&group)
                    && let Err(e) = core.handle_body(now, origin, &body)
                {
                    self.metrics.group_bad_bodies.inc();
                    tracing::debug!(%group, error = %e, "group message refused");
                }
            }
        }
    }

    /// Takes a declaration (this broker's or a peer's): kept on disk, cores started or
    /// stopped, passed on to the other peers. One past a bound is refused (counted, logged
    /// once per bound).
    pub(super) fn take_decl(
        &mut self,
        now: Instant,
        d: GroupDecl,
        from: Option<BrokerId>,
    ) -> Result<(), OverLimit> {
        match self.catalog.merge_decl(d.clone()) {
            Ok(true) => {}
            Ok(false) => return Ok(()),
            Err(e) => {
                self.over_limit(&e);
                return Err(e);
            }
        }
        if let Err(e) = self.journal.decl(&d).and_then(|()| self.journal.sync()) {
            self.fail(e.to_string());
        }
        if d.removed {
            self.cores.remove(&d.name);
            self.locals.drop_group(&d.name);
        } else {
            self.start_core(&d, Vec::new(), now);
        }
        self.flood(GroupPeer::Decl(d), from);
        self.count_groups();
        Ok(())
    }

    pub(super) fn count_groups(&self) {
        for order in [Order::Fifo, Order::Causal, Order::Total] {
            let n = self
                .catalog
                .live_groups()
                .filter(|d| d.order == order)
                .count();
            self.metrics
                .groups
                .with_label_values(&[order.as_str()])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// A sequencer announces itself to the overlay when it is elected, so that `group info`
    /// anywhere names it.
    pub(super) fn announce(&mut self, group: &str) {
        let Some((epoch, Some(leader))) = self.cores.get(group).and_then(|(_, c)| c.sequencing())
        else {
            return;
        };
        if leader == self.me && self.catalog.merge_sequencer(group, epoch, leader) {
            self.flood(
                GroupPeer::Sequencer {
                    group: group.to_owned(),
                    epoch,
                    broker: leader,
                },
                None,
            );
        }
    }

    /// Sends a core's body toward `to`: on the link to `to` itself when there is one, else
    /// over the spanning tree's next hop (dropped when `to` is unreachable: the cores retry).
    ///
    /// The direct link comes first because the tree may lead through a broker that has just
    /// died: the tree is recomputed only once the dead broker's links time out (about 6 s,
    /// docs/operations.md), and until then two survivors linked to each other would not hear
    /// each other over the tree. A total-order group whose sequencer's broker was the tree's
    /// root could not elect a new sequencer meanwhile.
    pub(super) fn send_body(&mut self, group: String, from: BrokerId, to: BrokerId, body: Vec<u8>) {
        let hop = if self.peers.contains_key(&to) {
            to
        } else {
            match self.hops.get(&to) {
                Some(hop) => *hop,
                None => return,
            }
        };
        self.to_peer(
            hop,
            GroupPeer::Body {
                group,
                from,
                to,
                body,
            },
        );
    }

    pub(super) fn to_peer(&self, peer: BrokerId, m: GroupPeer) {
        if let Some((_, out)) = self.peers.get(&peer) {
            let item = PeerOut::Message(PeerMessage::Group(m));
            let size = item.size();
            // Never waits; the link's own limits and stall timeout bound it.
            out.push(item, size);
        }
    }

    pub(super) fn flood(&self, m: GroupPeer, except: Option<BrokerId>) {
        for peer in self.peers.keys() {
            if Some(*peer) != except {
                self.to_peer(*peer, m.clone());
            }
        }
    }

    /// New next hops: brokers that became reachable are told to the causal cores.
    pub(super) fn set_hops(&mut self, now: Instant, hops: HashMap<BrokerId, BrokerId>) {
        let new: Vec<BrokerId> = hops
            .keys()
            .filter(|b| !self.hops.contains_key(b))
            .copied()
            .collect();
        self.hops = hops;
        for (_, core) in self.cores.values_mut() {
            for b in &new {
                core.broker_up(now, *b);
            }
        }
    }
}
