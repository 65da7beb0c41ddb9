//! The broker state machine: link state, the tree, timers, and the public call protocol.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use crate::config::{Config, Strategy};
use crate::error::{ClientError, PeerError};
use crate::frame::{
    Delivery, LinkStateAd, Notification, PeerFrame, SharedFilter, Targets, Transmit,
};
use crate::ids::{AdvertisementId, BrokerId, Interface, SubscriptionId};
use crate::linkstate::{AdvertRefusal, LinkStateDb, Received};
use crate::routing::{Kind, Routing, TableKind};
use crate::tree::SpanningTree;

/// The routing brain of one broker: a deterministic state machine with no I/O and no clock.
///
/// # Call protocol
///
/// The shell (the broker daemon, or a simulator) owns the sockets and the clock:
///
/// - **Inputs.** Client requests: [`subscribe`](Self::subscribe),
///   [`unsubscribe`](Self::unsubscribe), [`advertise`](Self::advertise),
///   [`unadvertise`](Self::unadvertise), [`publish`](Self::publish). Peer links:
///   [`handle_peer_up`](Self::handle_peer_up) when a link to a peer broker is established,
///   [`handle_frame`](Self::handle_frame) for each frame received on it, in order,
///   [`handle_peer_down`](Self::handle_peer_down) when it is lost (frames still in flight on it
///   are lost with it; a new link is a new `handle_peer_up`). Time:
///   [`handle_timeout`](Self::handle_timeout) once `now` reaches [`poll_timeout`](Self::poll_timeout).
/// - **Outputs.** After any input, drain [`poll_transmit`](Self::poll_transmit) (frames to send,
///   in order, each on its peer's link) and [`poll_delivery`](Self::poll_delivery)
///   (notifications for local subscriptions), and re-read [`poll_timeout`](Self::poll_timeout).
///
/// Each peer link must be a reliable FIFO stream (a QUIC stream). Frames for a peer whose link
/// went down are discarded by the state machine, never sent on a later link.
///
/// Link-state advertisements a peer relays are checked but cannot all be trusted (see the
/// `linkstate` module): those refused are not protocol errors, they are counted; drain the
/// counts with [`poll_refused_advert`](Self::poll_refused_advert) (e.g. into a metric).
#[derive(Debug)]
pub struct Broker {
    /// Configuration, fixed for the broker's life.
    config: Config,
    /// Every broker's advertised links, ours included.
    lsdb: LinkStateDb,
    /// Our own advertisement changed and has not been flooded yet. Flooding waits for the next
    /// `poll_transmit`, so several links coming up together cost one flood.
    own_dirty: bool,
    /// Peers whose link came up and who are owed our whole database.
    pending_sync: BTreeSet<BrokerId>,
    /// When to recompute the tree (a change is pending).
    tree_at: Option<Instant>,
    /// When to re-flood our own advertisement and age out silent brokers.
    refresh_at: Instant,
    /// The tree as last computed.
    tree: SpanningTree,
    /// Peers with a live link.
    up: BTreeSet<BrokerId>,
    /// Subscriptions, advertisements, forwarding state and outputs.
    routing: Routing,
    /// Link-state advertisements refused since the shell last drained the counts, by
    /// [`AdvertRefusal::index`].
    refused: [u64; AdvertRefusal::ALL.len()],
}

impl Broker {
    /// A broker with no links, at time `now`.
    pub fn new(config: Config, now: Instant) -> Self {
        let lsdb = LinkStateDb::new(config.id, config.incarnation, config.max_brokers, now);
        let routing = Routing::new(
            config.strategy,
            config.covering_scan_limit,
            config.max_entries_per_peer,
        );
        Self {
            refresh_at: now + config.lsa_refresh,
            tree: SpanningTree::single(config.id),
            config,
            lsdb,
            own_dirty: false,
            pending_sync: BTreeSet::new(),
            tree_at: None,
            up: BTreeSet::new(),
            routing,
            refused: [0; AdvertRefusal::ALL.len()],
        }
    }

    // ----- getters -----

    /// This broker's id.
    pub fn id(&self) -> BrokerId {
        self.config.id
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The routing strategy.
    pub fn strategy(&self) -> Strategy {
        self.config.strategy
    }

    /// Peers with a live link, ascending.
    pub fn peers(&self) -> &BTreeSet<BrokerId> {
        &self.up
    }

    /// The spanning tree as last computed.
    pub fn tree(&self) -> &SpanningTree {
        &self.tree
    }

    /// The tree neighbours with a live link: where notifications and routing state go.
    pub fn tree_neighbours(&self) -> &BTreeSet<BrokerId> {
        self.routing.neighbours()
    }

    /// The number of brokers in the link-state database (ourselves included).
    pub fn known_brokers(&self) -> usize {
        self.lsdb.len()
    }

    /// Our own current link-state advertisement.
    pub fn own_link_state(&self) -> &LinkStateAd {
        self.lsdb.own()
    }

    /// Routing table entries: subscriptions (local, and received from peers) plus
    /// advertisements (local, and received from peers).
    pub fn table_entries(&self) -> usize {
        self.routing.table_entries()
    }

    /// Filters currently forwarded to tree neighbours, summed over links and both kinds.
    pub fn forwarded_entries(&self) -> usize {
        self.routing.forwarded_entries()
    }

    /// The filters of one table that `peer` holds on its link: what it has sent us and not
    /// withdrawn. For subscriptions, notifications matching one of them are routed toward
    /// `peer`; for advertisements, subscriptions intersecting one. Empty for a peer without a
    /// live link.
    pub fn held_from(
        &self,
        kind: TableKind,
        peer: BrokerId,
    ) -> impl ExactSizeIterator<Item = &SharedFilter> + '_ {
        self.routing.held_from_peer(kind.into(), peer)
    }

    /// The filters of one table this broker has forwarded to `peer` (a tree neighbour; none
    /// for another peer): after covering, what the peer holds from us.
    pub fn forwarded_to(
        &self,
        kind: TableKind,
        peer: BrokerId,
    ) -> impl ExactSizeIterator<Item = &SharedFilter> + '_ {
        self.routing.forwarded_to_peer(kind.into(), peer)
    }

    /// Bytes used by the notification matching index.
    pub fn index_memory_bytes(&self) -> usize {
        self.routing.index_memory_bytes()
    }

    /// Distinct subscription filters held (after interning identical texts).
    pub fn distinct_subscription_filters(&self) -> usize {
        self.routing.distinct_subscription_filters()
    }

    /// Whether nothing is pending but periodic refreshes: no output waiting, no tree
    /// recomputation scheduled. A network of quiescent brokers with nothing in flight has
    /// settled.
    pub fn is_quiescent(&self) -> bool {
        self.tree_at.is_none()
            && !self.own_dirty
            && self.pending_sync.is_empty()
            && self.routing.out.transmits.is_empty()
            && self.routing.out.deliveries.is_empty()
    }

    /// Checks the routing state against its invariants, recomputing what every link should
    /// carry from scratch. Slow; for tests and diagnostics.
    pub fn audit(&self) -> Result<(), String> {
        if !self.routing.neighbours().is_subset(&self.up) {
            return Err("a tree neighbour has no live link".to_owned());
        }
        if self.tree_at.is_none() {
            let expected: BTreeSet<BrokerId> = self
                .tree
                .neighbours(self.config.id)
                .intersection(&self.up)
                .copied()
                .collect();
            if &expected != self.routing.neighbours() {
                return Err(format!(
                    "routing to {:?}, tree neighbours {expected:?}",
                    self.routing.neighbours()
                ));
            }
        }
        self.routing.audit()
    }

    // ----- client inputs -----

    /// A local client subscribes with `filter`; matching notifications will be delivered with
    /// `id`.
    pub fn subscribe(
        &mut self,
        id: SubscriptionId,
        filter: SharedFilter,
    ) -> Result<(), ClientError> {
        self.routing.subscribe(id, &filter)
    }

    /// Removes a local subscription; what it covered on each link is forwarded again.
    pub fn unsubscribe(&mut self, id: SubscriptionId) -> Result<(), ClientError> {
        self.routing.unsubscribe(id)
    }

    /// A local publisher declares that it will publish notifications matching `filter`.
    pub fn advertise(
        &mut self,
        id: AdvertisementId,
        filter: SharedFilter,
    ) -> Result<(), ClientError> {
        self.routing.advertise(id, &filter)
    }

    /// Withdraws a local advertisement, and with it the routes that depended on it.
    pub fn unadvertise(&mut self, id: AdvertisementId) -> Result<(), ClientError> {
        self.routing.unadvertise(id)
    }

    /// A local client publishes a notification.
    pub fn publish(&mut self, notification: Arc<Notification>) {
        self.routing.route(notification, Interface::Local);
    }

    /// Where a notification with `attributes` arriving from `from` would go (local
    /// subscriptions and tree neighbours), without routing anything: requests travel on this.
    pub fn targets(&mut self, attributes: &palio_filter::Event, from: Interface) -> Targets {
        self.routing.targets(attributes, from)
    }

    // ----- peer and time inputs -----

    /// A link to `peer` is established (a fresh FIFO stream). If one was up, it is taken as
    /// lost first.
    pub fn handle_peer_up(&mut self, peer: BrokerId, now: Instant) {
        if peer == self.config.id {
            return;
        }
        if self.up.contains(&peer) {
            self.handle_peer_down(peer, now);
        }
        self.up.insert(peer);
        self.routing.peer_up(peer);
        self.pending_sync.insert(peer);
        self.own_links_changed(now);
    }

    /// The link to `peer` is lost, with whatever was in flight on it.
    pub fn handle_peer_down(&mut self, peer: BrokerId, now: Instant) {
        if !self.up.remove(&peer) {
            return;
        }
        self.pending_sync.remove(&peer);
        self.lsdb.link_down(peer);
        self.routing.peer_down(peer);
        self.own_links_changed(now);
    }

    fn own_links_changed(&mut self, now: Instant) {
        self.lsdb
            .set_own_neighbours(self.up.iter().copied().collect(), now);
        self.own_dirty = true;
        self.schedule_tree(now);
    }

    fn schedule_tree(&mut self, now: Instant) {
        if self.tree_at.is_none() {
            self.tree_at = Some(now + self.config.tree_delay);
        }
    }

    /// A frame arrived from `peer`. On error the frame was ignored; the shell should close the
    /// link.
    pub fn handle_frame(
        &mut self,
        peer: BrokerId,
        frame: PeerFrame,
        now: Instant,
    ) -> Result<(), PeerError> {
        if !self.up.contains(&peer) {
            return Err(PeerError::NotConnected(peer));
        }
        match frame {
            PeerFrame::LinkState(lsas) => self.handle_link_state(peer, lsas, now),
            PeerFrame::Subscribe { key, filter } => {
                self.routing.receive(Kind::Sub, peer, key, &filter)
            }
            PeerFrame::Unsubscribe { key } => self.routing.withdraw(Kind::Sub, peer, key),
            PeerFrame::Advertise { key, filter } => {
                self.routing.receive(Kind::Adv, peer, key, &filter)
            }
            PeerFrame::Unadvertise { key } => self.routing.withdraw(Kind::Adv, peer, key),
            PeerFrame::Notification(n) => {
                self.routing.route(n, Interface::Peer(peer));
                Ok(())
            }
        }
    }

    fn handle_link_state(
        &mut self,
        peer: BrokerId,
        lsas: Vec<LinkStateAd>,
        now: Instant,
    ) -> Result<(), PeerError> {
        let max = self.config.max_neighbours;
        // Too large from the broker it describes: that peer broke the protocol. Relayed, it is
        // refused and counted below (the relay may only be passing it on).
        if let Some(lsa) = lsas
            .iter()
            .find(|l| l.origin == peer && l.neighbours.len() > max)
        {
            return Err(PeerError::TooManyNeighbours {
                origin: lsa.origin,
                count: lsa.neighbours.len(),
                max,
            });
        }
        for mut lsa in lsas {
            if lsa.neighbours.len() > max {
                self.refuse(AdvertRefusal::TooLarge);
                continue;
            }
            lsa.neighbours.sort_unstable();
            lsa.neighbours.dedup();
            let origin = lsa.origin;
            lsa.neighbours.retain(|&n| n != origin);
            match self.lsdb.receive(lsa.clone(), peer, &self.up, now) {
                Received::Stale => {}
                Received::Refused(r) => self.refuse(r),
                Received::OwnSuperseded => self.own_dirty = true,
                Received::Newer => {
                    for &p in &self.up {
                        if p != peer && !self.pending_sync.contains(&p) {
                            self.routing.out.transmits.push_back(Transmit {
                                peer: p,
                                frame: PeerFrame::LinkState(vec![lsa.clone()]),
                            });
                        }
                    }
                    self.schedule_tree(now);
                }
            }
        }
        Ok(())
    }

    fn refuse(&mut self, reason: AdvertRefusal) {
        let n = &mut self.refused[reason.index()];
        *n = n.saturating_add(1);
    }

    /// Time has reached `now`: run whatever timers are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.tree_at.is_some_and(|t| t <= now) {
            self.tree_at = None;
            self.recompute_tree();
        }
        if self.refresh_at <= now {
            self.refresh_at = now + self.config.lsa_refresh;
            self.lsdb.refresh_own(now);
            self.own_dirty = true;
            if self.lsdb.purge(now, self.config.lsa_max_age) {
                self.schedule_tree(now);
            }
        }
    }

    fn recompute_tree(&mut self) {
        self.tree = self.lsdb.graph().spanning_tree(self.config.id);
        let nbrs: BTreeSet<BrokerId> = self
            .tree
            .neighbours(self.config.id)
            .intersection(&self.up)
            .copied()
            .collect();
        self.routing.set_neighbours(&nbrs, &self.up);
    }

    // ----- outputs -----

    /// The next frame to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.flush_link_state();
        self.routing.out.transmits.pop_front()
    }

    /// Link-state advertisements refused since the last call, one reason at a time with its
    /// count (`None` once every count is drained).
    pub fn poll_refused_advert(&mut self) -> Option<(AdvertRefusal, u64)> {
        AdvertRefusal::ALL.into_iter().find_map(|r| {
            let n = std::mem::take(&mut self.refused[r.index()]);
            (n > 0).then_some((r, n))
        })
    }

    /// The next notification to deliver to a local subscription, if any.
    pub fn poll_delivery(&mut self) -> Option<Delivery> {
        self.routing.out.deliveries.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        Some(match self.tree_at {
            Some(t) => t.min(self.refresh_at),
            None => self.refresh_at,
        })
    }

    /// Queues the link-state frames owed: our own advertisement to every peer if it changed,
    /// and the whole database to peers whose link just came up.
    fn flush_link_state(&mut self) {
        if self.own_dirty {
            self.own_dirty = false;
            let own = self.lsdb.own().clone();
            for &p in &self.up {
                if !self.pending_sync.contains(&p) {
                    self.routing.out.transmits.push_back(Transmit {
                        peer: p,
                        frame: PeerFrame::LinkState(vec![own.clone()]),
                    });
                }
            }
        }
        if !self.pending_sync.is_empty() {
            let all = self.lsdb.all();
            for p in std::mem::take(&mut self.pending_sync) {
                self.routing.out.transmits.push_back(Transmit {
                    peer: p,
                    frame: PeerFrame::LinkState(all.clone()),
                });
            }
        }
    }
}
