//! The routing state of one broker: what it has learned from each interface, what it forwards
//! to each tree neighbour, and where notifications go.
//!
//! # The model: reconciliation toward a desired state
//!
//! An *interface* contributes routing state if it is the local interface or a peer that is a
//! tree neighbour with a live link. For each tree neighbour `n` the filters *desired* on the
//! link to `n` are those held by some contributing interface other than `n`, restricted under
//! the advertisements strategy (for subscriptions) to those intersecting an advertisement
//! received from `n`. The [`Forest`] of `n` holds that set and forwards its covering-maximal
//! part. Every input changes the desired sets a little (a hold added or removed, a neighbour
//! joining or leaving the tree, an advertisement from `n` arriving or going), and each change
//! is applied to the forests, which emit the frames that bring the neighbour's view up to
//! date. Because the target is a function of the current inputs only, the state after any
//! sequence of changes is the same as if it had been built from scratch, which is what makes
//! re-establishment after a tree change correct.
//!
//! State received from a peer is kept, per link, for as long as the link is up, even while
//! the peer is not a tree neighbour (then it does not contribute). The link is a FIFO stream,
//! so what we hold from a peer is exactly what it has sent minus what it has withdrawn: when the
//! two sides disagree for a moment about the tree, nothing is lost or double counted, and the
//! peer's own reconciliation withdraws its entries once it agrees we are not its neighbour.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use palio_filter::Event;

use crate::config::Strategy;
use crate::error::{ClientError, PeerError};
use crate::forest::{Action, Forest};
use crate::frame::{Delivery, Notification, PeerFrame, SharedFilter, Targets, Transmit};
use crate::ids::{AdvertisementId, BrokerId, Interface, RouteKey, SubscriptionId};
use crate::matcher::{Dest, RouteEntry, RouteIndex};
use crate::table::{FilterId, FilterTable};

/// The two kinds of routing state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Subscriptions: route notifications toward subscribers.
    Sub,
    /// Advertisements: route subscriptions toward publishers.
    Adv,
}

/// Which of a broker's two routing tables, in [`Broker::held_from`](crate::Broker::held_from)
/// and [`Broker::forwarded_to`](crate::Broker::forwarded_to).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableKind {
    /// Subscriptions: where notifications go.
    Subscriptions,
    /// Advertisements: where subscriptions go.
    Advertisements,
}

impl From<TableKind> for Kind {
    fn from(k: TableKind) -> Self {
        match k {
            TableKind::Subscriptions => Kind::Sub,
            TableKind::Advertisements => Kind::Adv,
        }
    }
}

/// What a peer without a live link holds, and a link without a forest forwards: nothing.
static NOTHING_HELD: BTreeMap<RouteKey, Held> = BTreeMap::new();
static NOTHING_SENT: BTreeSet<FilterId> = BTreeSet::new();

/// One filter held by a peer on its link.
#[derive(Debug, Clone, Copy)]
struct Held {
    /// The interned filter.
    filter: FilterId,
    /// Its entry in the notification routing index (subscriptions only).
    route: Option<RouteEntry>,
}

/// The state of one kind.
#[derive(Debug, Default)]
struct KindState {
    /// Every filter of this kind some interface holds.
    table: FilterTable,
    /// What each peer with a live link holds, by the key it chose.
    received: BTreeMap<BrokerId, BTreeMap<RouteKey, Held>>,
    /// The forest of each tree neighbour, when this kind is forwarded.
    forests: BTreeMap<BrokerId, Forest>,
}

/// The advertisements received from one peer, summarised so that most eligibility questions
/// are answered by a few hash lookups instead of a scan.
#[derive(Debug, Default)]
struct AdvertSummary {
    /// Advertisements that are one equality (`pool = 'r3'`), by (attribute, kind), then by value
    /// digest, with how many advertisements have it.
    single: HashMap<(u64, u8), HashMap<u64, u32>>,
    /// How many advertisements have another shape.
    others: u32,
}

impl AdvertSummary {
    fn add(&mut self, adv: &SharedFilter) {
        match adv.shape().single_equality() {
            Some((a, k, v)) => *self.single.entry((a, k)).or_default().entry(v).or_default() += 1,
            None => self.others += 1,
        }
    }

    fn remove(&mut self, adv: &SharedFilter) {
        match adv.shape().single_equality() {
            Some((a, k, v)) => {
                if let Some(values) = self.single.get_mut(&(a, k)) {
                    if let Some(n) = values.get_mut(&v) {
                        *n -= 1;
                        if *n == 0 {
                            values.remove(&v);
                        }
                    }
                    if values.is_empty() {
                        self.single.remove(&(a, k));
                    }
                }
            }
            None => self.others = self.others.saturating_sub(1),
        }
    }

    /// `Some(answer)` when the summary decides whether `sub` intersects some advertisement:
    /// yes if one advertisement is an equality `sub` has too (then it contains `sub`); no if
    /// every advertisement is an equality that `sub` contradicts (same attribute and kind,
    /// different value). `None` otherwise.
    fn decide(&self, sub: &SharedFilter) -> Option<bool> {
        let eqs = sub.shape().equalities();
        if eqs.iter().any(|&(a, k, v)| {
            self.single
                .get(&(a, k))
                .is_some_and(|values| values.contains_key(&v))
        }) {
            return Some(true);
        }
        let all_contradicted = self.others == 0
            && self
                .single
                .keys()
                .all(|&(a, k)| eqs.iter().any(|&(b, l, _)| b == a && l == k));
        all_contradicted.then_some(false)
    }
}

/// A local subscription.
#[derive(Debug, Clone, Copy)]
struct LocalSub {
    /// Its interned filter.
    filter: FilterId,
    /// Its entry in the notification routing index.
    route: RouteEntry,
}

/// What the state machine hands to the shell.
#[derive(Debug, Default)]
pub(crate) struct Outputs {
    /// Frames to send, in order.
    pub(crate) transmits: VecDeque<Transmit>,
    /// Notifications to deliver to local subscriptions, in order.
    pub(crate) deliveries: VecDeque<Delivery>,
}

/// All routing state of one broker.
#[derive(Debug)]
pub(crate) struct Routing {
    /// The strategy.
    strategy: Strategy,
    /// Bound on candidates per covering lookup.
    scan_limit: usize,
    /// Bound on entries one peer may hold on its link.
    max_entries_per_peer: usize,
    /// The contributing peers: tree neighbours with a live link.
    nbrs: BTreeSet<BrokerId>,
    /// Subscription state.
    subs: KindState,
    /// Advertisement state.
    advs: KindState,
    /// Local subscriptions (lookups only).
    local_subs: HashMap<SubscriptionId, LocalSub>,
    /// Local advertisements (lookups only).
    local_advs: HashMap<AdvertisementId, FilterId>,
    /// Summaries of the advertisements received from each peer.
    adv_summaries: BTreeMap<BrokerId, AdvertSummary>,
    /// Subscription filters (local and received) with their destinations.
    index: RouteIndex,
    /// Scratch for matching.
    dests: Vec<Dest>,
    /// Scratch for [`route`](Self::route): kept to reuse its allocations.
    targets: Targets,
    /// Scratch for forest updates.
    actions: Vec<Action>,
    /// Frames and deliveries waiting for the shell.
    pub(crate) out: Outputs,
}

impl Routing {
    /// Empty state.
    pub(crate) fn new(strategy: Strategy, scan_limit: usize, max_entries_per_peer: usize) -> Self {
        Self {
            strategy,
            scan_limit,
            max_entries_per_peer,
            nbrs: BTreeSet::new(),
            subs: KindState::default(),
            advs: KindState::default(),
            local_subs: HashMap::new(),
            local_advs: HashMap::new(),
            adv_summaries: BTreeMap::new(),
            index: RouteIndex::default(),
            dests: Vec::new(),
            targets: Targets::default(),
            actions: Vec::new(),
            out: Outputs::default(),
        }
    }

    /// The contributing peers.
    pub(crate) fn neighbours(&self) -> &BTreeSet<BrokerId> {
        &self.nbrs
    }

    /// The filters of kind `k` that neighbour `p` has sent us and we still hold.
    fn held_from(&self, k: Kind, p: BrokerId) -> Vec<FilterId> {
        self.kind(k)
            .received
            .get(&p)
            .into_iter()
            .flat_map(|m| m.values().map(|h| h.filter))
            .collect()
    }

    fn kind(&self, k: Kind) -> &KindState {
        match k {
            Kind::Sub => &self.subs,
            Kind::Adv => &self.advs,
        }
    }

    fn kind_mut(&mut self, k: Kind) -> &mut KindState {
        match k {
            Kind::Sub => &mut self.subs,
            Kind::Adv => &mut self.advs,
        }
    }

    /// Whether this kind is forwarded to peers under the strategy.
    fn forwards(&self, k: Kind) -> bool {
        match k {
            Kind::Sub => self.strategy.forwards_subscriptions(),
            Kind::Adv => self.strategy.uses_advertisements(),
        }
    }

    fn contributes(&self, iface: Interface) -> bool {
        match iface {
            Interface::Local => true,
            Interface::Peer(p) => self.nbrs.contains(&p),
        }
    }

    /// Whether an interface other than `n` contributes `f`.
    fn has_other_contributor(&self, k: Kind, f: FilterId, n: BrokerId) -> bool {
        self.kind(k)
            .table
            .holders(f)
            .iter()
            .any(|&(h, _)| h != Interface::Peer(n) && self.contributes(h))
    }

    /// Whether `f` may be forwarded to `n` as far as advertisements go.
    fn eligible(&self, k: Kind, n: BrokerId, f: FilterId) -> bool {
        if k == Kind::Adv || !self.strategy.uses_advertisements() {
            return true;
        }
        let sub = self.subs.table.filter(f);
        if let Some(answer) = self.adv_summaries.get(&n).and_then(|s| s.decide(sub)) {
            return answer;
        }
        self.eligible_by_scan(n, f)
    }

    /// [`Routing::eligible`] for subscriptions under the advertisements strategy, by checking
    /// every advertisement received from `n`.
    fn eligible_by_scan(&self, n: BrokerId, f: FilterId) -> bool {
        let sub = self.subs.table.filter(f);
        self.advs.received.get(&n).is_some_and(|held| {
            held.values().any(|h| {
                let adv = self.advs.table.filter(h.filter);
                adv.shape().may_intersect(sub.shape())
                    && (adv.shape().surely_intersects(sub.shape()) || adv.intersects(sub))
            })
        })
    }

    /// Turns forest actions for `n` into frames.
    fn emit(&mut self, k: Kind, n: BrokerId) {
        for a in std::mem::take(&mut self.actions) {
            let frame = match (k, a) {
                (Kind::Sub, Action::Send(f)) => PeerFrame::Subscribe {
                    key: RouteKey(u64::from(f.0)),
                    filter: self.subs.table.filter(f).clone(),
                },
                (Kind::Sub, Action::Withdraw(f)) => PeerFrame::Unsubscribe {
                    key: RouteKey(u64::from(f.0)),
                },
                (Kind::Adv, Action::Send(f)) => PeerFrame::Advertise {
                    key: RouteKey(u64::from(f.0)),
                    filter: self.advs.table.filter(f).clone(),
                },
                (Kind::Adv, Action::Withdraw(f)) => PeerFrame::Unadvertise {
                    key: RouteKey(u64::from(f.0)),
                },
            };
            self.out.transmits.push_back(Transmit { peer: n, frame });
        }
    }

    /// Inserts `f` into the forest of `n` and emits the frames.
    fn forest_insert(&mut self, k: Kind, n: BrokerId, f: FilterId) {
        let mut actions = std::mem::take(&mut self.actions);
        let state = self.kind_mut(k);
        if let Some(forest) = state.forests.get_mut(&n) {
            forest.insert(f, &state.table, &mut actions);
        }
        self.actions = actions;
        self.emit(k, n);
    }

    /// Removes `f` from the forest of `n` and emits the frames.
    fn forest_remove(&mut self, k: Kind, n: BrokerId, f: FilterId) {
        let mut actions = std::mem::take(&mut self.actions);
        let state = self.kind_mut(k);
        if let Some(forest) = state.forests.get_mut(&n) {
            forest.remove(f, &state.table, &mut actions);
        }
        self.actions = actions;
        self.emit(k, n);
    }

    fn forest_contains(&self, k: Kind, n: BrokerId, f: FilterId) -> bool {
        self.kind(k).forests.get(&n).is_some_and(|t| t.contains(f))
    }

    /// `iface` takes one more hold on `f`.
    fn add_hold(&mut self, k: Kind, f: FilterId, iface: Interface) {
        let targets: Vec<BrokerId> = if self.contributes(iface) {
            self.kind(k)
                .forests
                .iter()
                .filter(|&(&n, t)| Interface::Peer(n) != iface && !t.contains(f))
                .map(|(&n, _)| n)
                .collect()
        } else {
            Vec::new()
        };
        self.kind_mut(k).table.add_holder(f, iface);
        for n in targets {
            if self.eligible(k, n, f) {
                self.forest_insert(k, n, f);
            }
        }
    }

    /// `iface` releases one hold on `f` (the entry goes when nobody holds it).
    fn remove_hold(&mut self, k: Kind, f: FilterId, iface: Interface) {
        if self.contributes(iface) {
            let keeps = self
                .kind(k)
                .table
                .holders(f)
                .iter()
                .any(|&(h, count)| h == iface && count > 1);
            let targets: Vec<BrokerId> = self
                .kind(k)
                .forests
                .iter()
                .filter(|&(_, t)| t.contains(f))
                .map(|(&n, _)| n)
                .filter(|&n| {
                    Interface::Peer(n) != iface
                        && !keeps
                        && !self.kind(k).table.holders(f).iter().any(|&(h, _)| {
                            h != iface && h != Interface::Peer(n) && self.contributes(h)
                        })
                })
                .collect();
            for n in targets {
                self.forest_remove(k, n, f);
            }
        }
        self.kind_mut(k).table.remove_holder(f, iface);
    }

    /// A peer link came up: start holding its state.
    pub(crate) fn peer_up(&mut self, p: BrokerId) {
        self.subs.received.entry(p).or_default();
        self.advs.received.entry(p).or_default();
        self.adv_summaries.entry(p).or_default();
    }

    /// A peer link went down: forget everything learned from it and everything owed to it.
    pub(crate) fn peer_down(&mut self, p: BrokerId) {
        if self.nbrs.contains(&p) {
            self.leave(p, false);
        }
        for k in [Kind::Sub, Kind::Adv] {
            let held = self.kind_mut(k).received.remove(&p).unwrap_or_default();
            for (_, h) in held {
                if let Some(r) = h.route {
                    self.index.remove(r);
                }
                self.remove_hold(k, h.filter, Interface::Peer(p));
            }
        }
        self.adv_summaries.remove(&p);
        self.out.transmits.retain(|t| t.peer != p);
    }

    /// Sets the contributing peers (tree neighbours with a live link) and re-establishes
    /// routing state toward the new ones.
    pub(crate) fn set_neighbours(&mut self, new: &BTreeSet<BrokerId>, up: &BTreeSet<BrokerId>) {
        let leaving: Vec<BrokerId> = self.nbrs.difference(new).copied().collect();
        let joining: Vec<BrokerId> = new.difference(&self.nbrs).copied().collect();
        for p in leaving {
            self.leave(p, up.contains(&p));
        }
        for p in joining {
            self.join(p);
        }
    }

    /// `p` stops being a tree neighbour.
    fn leave(&mut self, p: BrokerId, link_up: bool) {
        self.nbrs.remove(&p);
        for k in [Kind::Sub, Kind::Adv] {
            if !self.forwards(k) {
                continue;
            }
            if let Some(mut forest) = self.kind_mut(k).forests.remove(&p) {
                let sent = forest.clear();
                if link_up {
                    self.actions.extend(sent.into_iter().map(Action::Withdraw));
                    self.emit(k, p);
                }
            }
            let held = self.held_from(k, p);
            for f in held {
                let targets: Vec<BrokerId> = self
                    .kind(k)
                    .forests
                    .iter()
                    .filter(|&(_, t)| t.contains(f))
                    .map(|(&n, _)| n)
                    .filter(|&n| !self.has_other_contributor(k, f, n))
                    .collect();
                for n in targets {
                    self.forest_remove(k, n, f);
                }
            }
        }
    }

    /// `p` becomes a tree neighbour.
    fn join(&mut self, p: BrokerId) {
        self.nbrs.insert(p);
        for k in [Kind::Adv, Kind::Sub] {
            if !self.forwards(k) {
                continue;
            }
            // What p holds now contributes toward the other neighbours.
            let held = self.held_from(k, p);
            for f in held {
                let targets: Vec<BrokerId> = self
                    .kind(k)
                    .forests
                    .iter()
                    .filter(|&(_, t)| !t.contains(f))
                    .map(|(&n, _)| n)
                    .collect();
                for n in targets {
                    if self.eligible(k, n, f) {
                        self.forest_insert(k, n, f);
                    }
                }
            }
            // Everything the others contribute goes to p, broadest first.
            let covering = k == Kind::Adv || self.strategy.uses_covering();
            let forest = Forest::new(covering, self.scan_limit);
            self.kind_mut(k).forests.insert(p, forest);
            let mut wanted: Vec<FilterId> = self
                .kind(k)
                .table
                .ids()
                .filter(|&f| self.has_other_contributor(k, f, p) && self.eligible(k, p, f))
                .collect();
            let table = &self.kind(k).table;
            wanted.sort_by_key(|&f| (table.filter(f).shape().breadth_rank(), f));
            for f in wanted {
                self.forest_insert(k, p, f);
            }
        }
    }

    /// An advertisement `a` from tree neighbour `p` arrived: subscriptions it intersects may now
    /// go to `p`.
    fn advertisement_added(&mut self, p: BrokerId, a: FilterId) {
        let adv = self.advs.table.filter(a).clone();
        let mut wanted: Vec<FilterId> = self
            .subs
            .table
            .ids()
            .filter(|&f| {
                let sub = self.subs.table.filter(f);
                !self.forest_contains(Kind::Sub, p, f)
                    && self.has_other_contributor(Kind::Sub, f, p)
                    && adv.shape().may_intersect(sub.shape())
                    && (adv.shape().surely_intersects(sub.shape()) || adv.intersects(sub))
            })
            .collect();
        let table = &self.subs.table;
        wanted.sort_by_key(|&f| (table.filter(f).shape().breadth_rank(), f));
        for f in wanted {
            self.forest_insert(Kind::Sub, p, f);
        }
    }

    /// An advertisement from tree neighbour `p` was withdrawn: subscriptions that no remaining
    /// advertisement from `p` intersects stop going there.
    fn advertisement_removed(&mut self, p: BrokerId) {
        let Some(forest) = self.subs.forests.get(&p) else {
            return;
        };
        let mut gone: Vec<FilterId> = forest
            .members()
            .into_iter()
            .filter(|&f| !self.eligible(Kind::Sub, p, f))
            .collect();
        // Narrowest first, so that covered filters leave before their coverers and are not
        // re-homed on the way out.
        let table = &self.subs.table;
        gone.sort_by_key(|&f| (std::cmp::Reverse(table.filter(f).shape().breadth_rank()), f));
        for f in gone {
            self.forest_remove(Kind::Sub, p, f);
        }
    }

    /// A peer forwarded a filter.
    pub(crate) fn receive(
        &mut self,
        k: Kind,
        p: BrokerId,
        key: RouteKey,
        filter: &SharedFilter,
    ) -> Result<(), PeerError> {
        let total = self.subs.received.get(&p).map_or(0, BTreeMap::len)
            + self.advs.received.get(&p).map_or(0, BTreeMap::len);
        let Some(held) = self.kind(k).received.get(&p) else {
            return Err(PeerError::NotConnected(p));
        };
        if held.contains_key(&key) {
            return Err(PeerError::DuplicateKey { peer: p, key });
        }
        if total >= self.max_entries_per_peer {
            return Err(PeerError::TooManyEntries {
                peer: p,
                max: self.max_entries_per_peer,
            });
        }
        let f = self.kind_mut(k).table.intern(filter);
        let route = (k == Kind::Sub).then(|| self.index.insert(filter, Dest::Peer(p)));
        if k == Kind::Adv {
            self.adv_summaries.entry(p).or_default().add(filter);
        }
        self.kind_mut(k)
            .received
            .entry(p)
            .or_default()
            .insert(key, Held { filter: f, route });
        self.add_hold(k, f, Interface::Peer(p));
        if k == Kind::Adv && self.strategy.uses_advertisements() && self.nbrs.contains(&p) {
            self.advertisement_added(p, f);
        }
        Ok(())
    }

    /// A peer withdrew a filter.
    pub(crate) fn withdraw(
        &mut self,
        k: Kind,
        p: BrokerId,
        key: RouteKey,
    ) -> Result<(), PeerError> {
        let Some(h) = self
            .kind_mut(k)
            .received
            .get_mut(&p)
            .and_then(|m| m.remove(&key))
        else {
            return Err(PeerError::UnknownKey { peer: p, key });
        };
        if let Some(r) = h.route {
            self.index.remove(r);
        }
        if k == Kind::Adv
            && let Some(summary) = self.adv_summaries.get_mut(&p)
        {
            summary.remove(self.advs.table.filter(h.filter));
        }
        self.remove_hold(k, h.filter, Interface::Peer(p));
        if k == Kind::Adv && self.strategy.uses_advertisements() && self.nbrs.contains(&p) {
            self.advertisement_removed(p);
        }
        Ok(())
    }

    /// A local client subscribes.
    pub(crate) fn subscribe(
        &mut self,
        id: SubscriptionId,
        filter: &SharedFilter,
    ) -> Result<(), ClientError> {
        if self.local_subs.contains_key(&id) {
            return Err(ClientError::DuplicateSubscription(id));
        }
        let f = self.subs.table.intern(filter);
        let route = self.index.insert(filter, Dest::Local(id));
        self.local_subs.insert(id, LocalSub { filter: f, route });
        self.add_hold(Kind::Sub, f, Interface::Local);
        Ok(())
    }

    /// A local client unsubscribes.
    pub(crate) fn unsubscribe(&mut self, id: SubscriptionId) -> Result<(), ClientError> {
        let s = self
            .local_subs
            .remove(&id)
            .ok_or(ClientError::UnknownSubscription(id))?;
        self.index.remove(s.route);
        self.remove_hold(Kind::Sub, s.filter, Interface::Local);
        Ok(())
    }

    /// A local publisher advertises.
    pub(crate) fn advertise(
        &mut self,
        id: AdvertisementId,
        filter: &SharedFilter,
    ) -> Result<(), ClientError> {
        if self.local_advs.contains_key(&id) {
            return Err(ClientError::DuplicateAdvertisement(id));
        }
        let f = self.advs.table.intern(filter);
        self.local_advs.insert(id, f);
        self.add_hold(Kind::Adv, f, Interface::Local);
        Ok(())
    }

    /// A local publisher withdraws an advertisement.
    pub(crate) fn unadvertise(&mut self, id: AdvertisementId) -> Result<(), ClientError> {
        let f = self
            .local_advs
            .remove(&id)
            .ok_or(ClientError::UnknownAdvertisement(id))?;
        self.remove_hold(Kind::Adv, f, Interface::Local);
        Ok(())
    }

    /// Routes a notification that arrived from `from`: on to the tree neighbours that want it
    /// (all of them when flooding), and to the local subscriptions whose full filter passes it.
    pub(crate) fn route(&mut self, notification: Arc<Notification>, from: Interface) {
        let mut targets = std::mem::take(&mut self.targets);
        self.targets_into(&notification.attributes, from, &mut targets);
        for &s in &targets.local {
            self.out.deliveries.push_back(Delivery {
                subscription: s,
                notification: Arc::clone(&notification),
            });
        }
        for &p in &targets.peers {
            self.out.transmits.push_back(Transmit {
                peer: p,
                frame: PeerFrame::Notification(Arc::clone(&notification)),
            });
        }
        self.targets = targets;
    }

    /// Where a notification with `attributes` from `from` would go, without sending it.
    pub(crate) fn targets(&mut self, attributes: &Event, from: Interface) -> Targets {
        let mut t = Targets::default();
        self.targets_into(attributes, from, &mut t);
        t
    }

    /// Fills `targets` (cleared first): the tree neighbours other than `from` that want
    /// `attributes` (all of them when flooding), and the local subscriptions whose full filter
    /// passes them.
    fn targets_into(&mut self, attributes: &Event, from: Interface, targets: &mut Targets) {
        targets.local.clear();
        targets.peers.clear();
        let mut dests = std::mem::take(&mut self.dests);
        self.index.matches(attributes, &mut dests);
        let flooding = self.strategy == Strategy::Flooding;
        if flooding {
            targets.peers.extend(
                self.nbrs
                    .iter()
                    .copied()
                    .filter(|&p| Interface::Peer(p) != from),
            );
        }
        for &d in &dests {
            match d {
                Dest::Peer(p) => {
                    if !flooding && Interface::Peer(p) != from && self.nbrs.contains(&p) {
                        targets.peers.push(p);
                    }
                }
                Dest::Local(s) => {
                    let Some(sub) = self.local_subs.get(&s) else {
                        continue;
                    };
                    if self.subs.table.filter(sub.filter).matches(attributes) {
                        targets.local.push(s);
                    }
                }
            }
        }
        self.dests = dests;
    }

    /// Routing table entries: subscriptions and advertisements held, local or from peers.
    pub(crate) fn table_entries(&self) -> usize {
        self.index.len()
            + self.local_advs.len()
            + self
                .advs
                .received
                .values()
                .map(BTreeMap::len)
                .sum::<usize>()
    }

    /// The filters of kind `k` that peer `p` holds on its link (what it sent us and has not
    /// withdrawn), in key order.
    pub(crate) fn held_from_peer(
        &self,
        k: Kind,
        p: BrokerId,
    ) -> impl ExactSizeIterator<Item = &SharedFilter> + '_ {
        let state = self.kind(k);
        state
            .received
            .get(&p)
            .unwrap_or(&NOTHING_HELD)
            .values()
            .map(|h| state.table.filter(h.filter))
    }

    /// The filters of kind `k` this broker has forwarded to tree neighbour `p` (its forest's
    /// covering-maximal part); none for a peer that is not a tree neighbour.
    pub(crate) fn forwarded_to_peer(
        &self,
        k: Kind,
        p: BrokerId,
    ) -> impl ExactSizeIterator<Item = &SharedFilter> + '_ {
        let state = self.kind(k);
        state
            .forests
            .get(&p)
            .map_or(&NOTHING_SENT, Forest::sent)
            .iter()
            .map(|&f| state.table.filter(f))
    }

    /// Filters currently forwarded to peers (both kinds, all links).
    pub(crate) fn forwarded_entries(&self) -> usize {
        [&self.subs, &self.advs]
            .iter()
            .flat_map(|s| s.forests.values())
            .map(|t| t.sent().len())
            .sum()
    }

    /// Bytes used by the notification matching index.
    pub(crate) fn index_memory_bytes(&self) -> usize {
        self.index.memory_bytes()
    }

    /// The number of distinct subscription filters known.
    pub(crate) fn distinct_subscription_filters(&self) -> usize {
        self.subs.table.len()
    }

    /// Checks every forest against the desired state recomputed from scratch.
    pub(crate) fn audit(&self) -> Result<(), String> {
        for k in [Kind::Sub, Kind::Adv] {
            let state = self.kind(k);
            let expected: BTreeSet<BrokerId> = if self.forwards(k) {
                self.nbrs.clone()
            } else {
                BTreeSet::new()
            };
            let actual: BTreeSet<BrokerId> = state.forests.keys().copied().collect();
            if expected != actual {
                return Err(format!("{k:?} forests {actual:?}, neighbours {expected:?}"));
            }
            for (&n, forest) in &state.forests {
                forest
                    .audit(&state.table)
                    .map_err(|e| format!("{k:?} forest of {n}: {e}"))?;
                if k == Kind::Sub && self.strategy.uses_advertisements() {
                    for f in state.table.ids() {
                        if self.eligible(k, n, f) != self.eligible_by_scan(n, f) {
                            return Err(format!(
                                "advertisement summary of {n} misjudges {}",
                                state.table.filter(f)
                            ));
                        }
                    }
                }
                let mut members = 0;
                for f in state.table.ids() {
                    let want = self.has_other_contributor(k, f, n) && self.eligible(k, n, f);
                    if want != forest.contains(f) {
                        return Err(format!(
                            "{k:?} forest of {n}: {} should {}be a member",
                            state.table.filter(f),
                            if want { "" } else { "not " }
                        ));
                    }
                    members += usize::from(want);
                }
                if members != forest.len() {
                    return Err(format!("{k:?} forest of {n} has dead members"));
                }
            }
        }
        Ok(())
    }
}
