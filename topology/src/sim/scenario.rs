//! Complete runs: the routing measurement behind `palio-bench routing`, and the randomized
//! fault scenarios the crate's tests run over thousands of seeds.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::config::{Config, Strategy};
use crate::frame::{FrameKind, Notification, SharedFilter};
use crate::ids::{AdvertisementId, BrokerId, NotificationId, SubscriptionId};
use crate::sim::network::{NetConfig, Network};
use crate::sim::oracle::{Oracle, SubKey, Verdict, ideal_messages};
use crate::sim::overlay::{Overlay, OverlayKind};
use crate::sim::rng::SimRng;
use crate::sim::workload::ContentModel;
use crate::tree::Graph;

/// Parses generated filter texts once and shares them.
#[derive(Debug, Default)]
struct FilterCache(HashMap<String, SharedFilter>);

impl FilterCache {
    fn get(&mut self, text: &str) -> Result<SharedFilter, String> {
        if let Some(f) = self.0.get(text) {
            return Ok(f.clone());
        }
        let f = SharedFilter::parse(text).map_err(|e| format!("generated filter {text:?}: {e}"))?;
        self.0.insert(text.to_owned(), f.clone());
        Ok(f)
    }
}

/// Parameters of a routing measurement.
#[derive(Debug, Clone)]
pub struct RoutingParams {
    /// Brokers in the overlay.
    pub brokers: usize,
    /// Subscriptions made (spread uniformly over brokers).
    pub subscriptions: usize,
    /// Publications per measurement round (two rounds: before and after churn).
    pub publications: usize,
    /// The routing strategy.
    pub strategy: Strategy,
    /// The overlay shape.
    pub topology: OverlayKind,
    /// Locality (see [`crate::sim::workload`]).
    pub locality: f64,
    /// Brokers per region.
    pub brokers_per_region: usize,
    /// Topics per content pool.
    pub topics: usize,
    /// Fraction of subscriptions withdrawn after the first round.
    pub churn: f64,
    /// The seed.
    pub seed: u64,
}

impl Default for RoutingParams {
    fn default() -> Self {
        Self {
            brokers: 100,
            subscriptions: 10_000,
            publications: 1_000,
            strategy: Strategy::Covering,
            topology: OverlayKind::Tree,
            locality: 0.9,
            brokers_per_region: 10,
            topics: 200,
            churn: 0.1,
            seed: 1,
        }
    }
}

/// What a routing measurement found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoutingReport {
    /// Brokers in the overlay.
    pub brokers: usize,
    /// Subscriptions made.
    pub subscriptions: usize,
    /// Publications checked (both rounds).
    pub publications: usize,
    /// The strategy's name.
    pub strategy: String,
    /// The overlay's name.
    pub topology: String,
    /// Locality.
    pub locality: f64,
    /// Regions.
    pub regions: u32,
    /// Routing table entries summed over brokers, after all subscriptions settled.
    pub table_entries_total: u64,
    /// The largest routing table of one broker.
    pub table_entries_max: u64,
    /// Subscribe, unsubscribe, advertise and unadvertise frames (advertising, subscribing and
    /// churn phases).
    pub control_messages: u64,
    /// Of which advertise and unadvertise.
    pub advertisement_messages: u64,
    /// Link-state frames while the overlay came up.
    pub link_state_messages: u64,
    /// Notification frames (link traversals).
    pub notification_messages: u64,
    /// The fewest link traversals that reach every interested broker on the tree.
    pub ideal_notification_messages: u64,
    /// Deliveries the oracle expected.
    pub deliveries_expected: u64,
    /// Deliveries observed.
    pub deliveries_actual: u64,
    /// Expected deliveries missing.
    pub missing: u64,
    /// Repeated deliveries.
    pub duplicates: u64,
    /// Deliveries a subscription should not have had.
    pub false_deliveries: u64,
    /// Subscription and advertisement inputs (client requests and peer frames) handled.
    pub subscription_updates: u64,
    /// Those inputs per second of broker time (one core, state machine only).
    pub subscription_updates_per_second: f64,
    /// Virtual time the subscription phase took to settle, in milliseconds.
    pub settle_ms: f64,
    /// Wall-clock time of the whole run.
    pub wall_seconds: f64,
    /// The trace hash (same seed, same hash).
    pub trace_hash: String,
    /// One broker alone (see [`single_broker_update_rate`]): subscription updates per second.
    #[serde(default)]
    pub single_broker_updates_per_second: f64,
}

const SETTLE_BOUND: u64 = u64::MAX / 4;

/// Runs one routing measurement: overlay up, advertisements, subscriptions, a round of
/// publications, churn (unsubscribing a fraction), another round. Checks every delivery
/// against the oracle.
pub fn run_routing(p: &RoutingParams) -> Result<RoutingReport, String> {
    let wall = Instant::now();
    // Measured first, on a fresh heap.
    let single_broker_updates_per_second = single_broker_update_rate(p)?;
    let rng = SimRng::new(p.seed);
    let regions = p.brokers.div_ceil(p.brokers_per_region.max(1)).max(1) as u32;
    let overlay = Overlay::generate(p.topology, p.brokers, regions, &mut rng.fork(1));
    let model = ContentModel::new(p.topics, p.locality, 0.0);
    let mut net = Network::new(NetConfig::default(), p.seed);
    let ids: Vec<BrokerId> = (0..p.brokers).map(|i| BrokerId(i as u32)).collect();
    for &b in &ids {
        net.add_broker(Config::new(b, 1).with_strategy(p.strategy));
    }
    for (a, b) in overlay.graph.links() {
        net.link_up(a, b);
    }
    net.drive_bounded(SETTLE_BOUND).map_err(|e| e.to_string())?;
    let link_state_messages = net.counters().sent(FrameKind::LinkState);
    net.reset_counters();
    net.set_timing(true);

    let mut cache = FilterCache::default();
    // Advertisements.
    for &b in &ids {
        for (j, text) in model.advertisements(overlay.region(b)).iter().enumerate() {
            net.advertise(b, AdvertisementId(j as u64), cache.get(text)?)
                .map_err(|e| e.to_string())?;
        }
    }
    net.drive_bounded(SETTLE_BOUND).map_err(|e| e.to_string())?;

    // Subscriptions. The oracle indexes them, and checks one publication in 50 by brute force.
    let mut oracle = Oracle::with_index(50);
    let mut subs_rng = rng.fork(2);
    let mut live: Vec<SubKey> = Vec::with_capacity(p.subscriptions);
    let start = net.now();
    for i in 0..p.subscriptions {
        let b = ids[subs_rng.index(ids.len())];
        let f = cache.get(&model.subscription(overlay.region(b), &mut subs_rng))?;
        let id = SubscriptionId(i as u64);
        net.subscribe(b, id, f.clone()).map_err(|e| e.to_string())?;
        oracle.subscribe((b, id), f);
        live.push((b, id));
    }
    net.drive_bounded(SETTLE_BOUND).map_err(|e| e.to_string())?;
    let settle_ms = (net.now() - start).as_secs_f64() * 1e3;
    let tables: Vec<u64> = net.brokers().map(|b| b.table_entries() as u64).collect();
    let tree = net.expected_tree(ids[0]);

    let mut verdict = Verdict::default();
    let mut ideal = 0;
    let mut notification_messages = 0;
    let mut pub_rng = rng.fork(3);
    let mut next_id = 0u64;
    let mut round = |net: &mut Network, oracle: &mut Oracle| -> Result<(), String> {
        let before = net.counters().sent(FrameKind::Notification);
        for _ in 0..p.publications {
            let b = ids[pub_rng.index(ids.len())];
            let event = model.event(overlay.region(b), &mut pub_rng);
            let id = NotificationId(next_id);
            next_id += 1;
            let interested = oracle.published_checked(id, event.clone());
            ideal += ideal_messages(&tree, b, &interested);
            net.publish(
                b,
                Arc::new(Notification {
                    id,
                    attributes: event,
                    payload: Vec::new(),
                }),
            );
        }
        net.drive_bounded(SETTLE_BOUND).map_err(|e| e.to_string())?;
        notification_messages += net.counters().sent(FrameKind::Notification) - before;
        verdict.absorb(oracle.check(&net.take_observed()));
        Ok(())
    };
    round(&mut net, &mut oracle)?;

    // Churn: withdraw a fraction of the subscriptions (re-forwarding what they covered).
    let mut churn_rng = rng.fork(4);
    churn_rng.shuffle(&mut live);
    let gone = ((p.subscriptions as f64) * p.churn.clamp(0.0, 1.0)) as usize;
    for &(b, id) in &live[..gone] {
        net.unsubscribe(b, id).map_err(|e| e.to_string())?;
        oracle.unsubscribe((b, id));
    }
    net.drive_bounded(SETTLE_BOUND).map_err(|e| e.to_string())?;
    round(&mut net, &mut oracle)?;
    if let Some(e) = net.errors().first() {
        return Err(e.clone());
    }
    if oracle.index_mismatches() > 0 {
        return Err(format!(
            "the oracle's index disagreed with brute force {} times",
            oracle.index_mismatches()
        ));
    }

    let c = net.counters();
    let handling = c.control_handling.as_secs_f64();
    Ok(RoutingReport {
        brokers: p.brokers,
        subscriptions: p.subscriptions,
        publications: 2 * p.publications,
        strategy: p.strategy.to_string(),
        topology: p.topology.to_string(),
        locality: p.locality,
        regions,
        table_entries_total: tables.iter().sum(),
        table_entries_max: tables.iter().copied().max().unwrap_or(0),
        control_messages: c.control(),
        advertisement_messages: c.sent(FrameKind::Advertise) + c.sent(FrameKind::Unadvertise),
        link_state_messages,
        notification_messages,
        ideal_notification_messages: ideal,
        deliveries_expected: verdict.expected,
        deliveries_actual: verdict.actual,
        missing: verdict.missing,
        duplicates: verdict.duplicates,
        false_deliveries: verdict.false_deliveries,
        subscription_updates: c.control_inputs,
        subscription_updates_per_second: if handling > 0.0 {
            c.control_inputs as f64 / handling
        } else {
            0.0
        },
        settle_ms,
        wall_seconds: wall.elapsed().as_secs_f64(),
        trace_hash: format!("{:016x}", net.trace_hash()),
        single_broker_updates_per_second,
    })
}

/// The subscription update rate of one broker: a broker with four tree neighbours receives
/// `p.subscriptions` subscribe frames (the workload's filters) from one neighbour, then the
/// matching unsubscribes, and forwards what its strategy says to the other three (which, for
/// the advertisements strategy, have advertised every pool). Returns updates per second of
/// handling time (frames in, frames drained out), excluding filter parsing.
pub fn single_broker_update_rate(p: &RoutingParams) -> Result<f64, String> {
    let now = Instant::now();
    let mut config = Config::new(BrokerId(0), 1).with_strategy(p.strategy);
    config.tree_delay = Duration::ZERO;
    let mut broker = crate::Broker::new(config, now);
    let peers: Vec<BrokerId> = (1..=4).map(BrokerId).collect();
    let drain = |b: &mut crate::Broker| while b.poll_transmit().is_some() {};
    for &peer in &peers {
        broker.handle_peer_up(peer, now);
        let lsa = crate::LinkStateAd {
            origin: peer,
            incarnation: 1,
            seq: 1,
            neighbours: vec![BrokerId(0)],
        };
        broker
            .handle_frame(peer, crate::PeerFrame::LinkState(vec![lsa]), now)
            .map_err(|e| e.to_string())?;
    }
    broker.handle_timeout(now);
    if broker.tree_neighbours().len() != peers.len() {
        return Err("the test broker did not adopt its neighbours".to_owned());
    }
    let regions = p.brokers.div_ceil(p.brokers_per_region.max(1)).max(1) as u32;
    let model = ContentModel::new(p.topics, p.locality, 0.0);
    let mut cache = FilterCache::default();
    let mut key = 0u64;
    for &peer in &peers[1..] {
        for r in 0..regions {
            for text in model.advertisements(r) {
                key += 1;
                let frame = crate::PeerFrame::Advertise {
                    key: crate::RouteKey(key),
                    filter: cache.get(&text)?,
                };
                // Repeated texts (the global pool) are new keys of the same filter.
                broker
                    .handle_frame(peer, frame, now)
                    .map_err(|e| e.to_string())?;
            }
        }
    }
    drain(&mut broker);
    let mut rng = SimRng::new(p.seed).fork(9);
    let filters = (0..p.subscriptions)
        .map(|_| {
            let region = rng.below(u64::from(regions)) as u32;
            cache.get(&model.subscription(region, &mut rng))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let start = Instant::now();
    for (i, filter) in filters.into_iter().enumerate() {
        let frame = crate::PeerFrame::Subscribe {
            key: crate::RouteKey(i as u64),
            filter,
        };
        broker
            .handle_frame(peers[0], frame, now)
            .map_err(|e| e.to_string())?;
        drain(&mut broker);
    }
    for i in 0..p.subscriptions {
        let frame = crate::PeerFrame::Unsubscribe {
            key: crate::RouteKey(i as u64),
        };
        broker
            .handle_frame(peers[0], frame, now)
            .map_err(|e| e.to_string())?;
        drain(&mut broker);
    }
    let secs = start.elapsed().as_secs_f64();
    Ok(if secs > 0.0 {
        2.0 * p.subscriptions as f64 / secs
    } else {
        0.0
    })
}

/// Parameters of a randomized fault scenario.
#[derive(Debug, Clone)]
pub struct ChaosParams {
    /// Brokers.
    pub brokers: usize,
    /// Overlay shape.
    pub topology: OverlayKind,
    /// Strategy.
    pub strategy: Strategy,
    /// Random operations per round.
    pub ops: usize,
    /// Settle-and-check rounds.
    pub rounds: usize,
    /// Checked publications per round.
    pub publications: usize,
    /// Whether links and brokers fail and return.
    pub faults: bool,
}

/// What a fault scenario found.
#[derive(Debug, Clone)]
pub struct ChaosOutcome {
    /// Deliveries judged over all rounds.
    pub verdict: Verdict,
    /// The trace hash.
    pub trace_hash: u64,
    /// Events processed.
    pub events: u64,
    /// Faults injected (link downs and crashes).
    pub faults: u64,
}

/// The scenario's mutable state beside the network.
struct Chaos {
    rng: SimRng,
    net: Network,
    oracle: Oracle,
    cache: FilterCache,
    model: ContentModel,
    overlay: Overlay,
    /// Overlay index → broker id (a random permutation, so the tree root is arbitrary).
    ids: Vec<BrokerId>,
    /// Configured links (broker ids).
    links: Vec<(BrokerId, BrokerId)>,
    /// Links taken down on purpose (not restored when a broker restarts).
    downed: BTreeSet<(BrokerId, BrokerId)>,
    live: Vec<SubKey>,
    adverts: BTreeMap<BrokerId, BTreeMap<AdvertisementId, SharedFilter>>,
    next_sub: u64,
    next_adv: u64,
    next_note: u64,
    faults: u64,
    strategy: Strategy,
}

impl Chaos {
    fn region(&self, b: BrokerId) -> u32 {
        let i = self.ids.iter().position(|&x| x == b).unwrap_or(0);
        self.overlay.region_of[i]
    }

    fn running(&self) -> Vec<BrokerId> {
        self.net.brokers().map(|b| b.id()).collect()
    }

    fn random_running(&mut self) -> Option<BrokerId> {
        let r = self.running();
        self.rng.pick(&r).copied()
    }

    /// Whether the running brokers stay connected without `link` and `broker`.
    fn connected_without(
        &self,
        link: Option<(BrokerId, BrokerId)>,
        broker: Option<BrokerId>,
    ) -> bool {
        let mut g = Graph::new();
        for b in self.running() {
            if Some(b) != broker {
                g.add_broker(b);
            }
        }
        for (a, b) in self.net.up_links() {
            if Some((a, b)) == link || Some(a) == broker || Some(b) == broker {
                continue;
            }
            g.add_link(a, b);
        }
        !g.is_empty() && g.is_connected()
    }

    fn advertise_all(&mut self, b: BrokerId) -> Result<(), String> {
        for text in self.model.advertisements(self.region(b)) {
            self.advertise(b, &text)?;
        }
        Ok(())
    }

    /// Broker `b` advertises the filter `text` under a fresh id, remembered for withdrawal.
    fn advertise(&mut self, b: BrokerId, text: &str) -> Result<(), String> {
        let f = self.cache.get(text)?;
        let id = AdvertisementId(self.next_adv);
        self.next_adv += 1;
        self.net
            .advertise(b, id, f.clone())
            .map_err(|e| e.to_string())?;
        self.adverts.entry(b).or_default().insert(id, f);
        Ok(())
    }

    fn op(&mut self, faults: bool) -> Result<(), String> {
        match self.rng.below(100) {
            0..35 => {
                let Some(b) = self.random_running() else {
                    return Ok(());
                };
                let text = self.model.subscription(self.region(b), &mut self.rng);
                let f = self.cache.get(&text)?;
                let id = SubscriptionId(self.next_sub);
                self.next_sub += 1;
                self.net
                    .subscribe(b, id, f.clone())
                    .map_err(|e| e.to_string())?;
                self.oracle.subscribe((b, id), f);
                self.live.push((b, id));
            }
            35..50 => {
                if self.live.is_empty() {
                    return Ok(());
                }
                let i = self.rng.index(self.live.len());
                let (b, id) = self.live.swap_remove(i);
                self.net.unsubscribe(b, id).map_err(|e| e.to_string())?;
                self.oracle.unsubscribe((b, id));
            }
            50..60 => {
                let Some(b) = self.random_running() else {
                    return Ok(());
                };
                let event = self.model.event(self.region(b), &mut self.rng);
                let id = NotificationId(self.next_note);
                self.next_note += 1;
                self.oracle.published_unchecked(id, event.clone());
                self.net.publish(b, note(id, event));
            }
            60..65 => {
                let Some(b) = self.random_running() else {
                    return Ok(());
                };
                let mine = self.adverts.entry(b).or_default();
                if let Some((&id, _)) = mine.iter().next()
                    && self.rng.chance(0.5)
                {
                    mine.remove(&id);
                    self.net.unadvertise(b, id).map_err(|e| e.to_string())?;
                } else {
                    let texts = self.model.advertisements(self.region(b));
                    if let Some(text) = self.rng.pick(&texts).cloned() {
                        self.advertise(b, &text)?;
                    }
                }
            }
            65..72 if faults => {
                let Some(&(a, b)) = self.rng.pick(&self.links) else {
                    return Ok(());
                };
                if self.net.is_link_up(a, b) {
                    if self.connected_without(Some((a, b)), None) {
                        self.net.link_down(a, b);
                        self.downed.insert((a, b));
                        self.faults += 1;
                    }
                } else if self.net.is_running(a) && self.net.is_running(b) {
                    self.downed.remove(&(a, b));
                    self.net.link_up(a, b);
                }
            }
            72..75 if faults => {
                let Some(&b) = self.rng.pick(&self.ids) else {
                    return Ok(());
                };
                if self.net.is_running(b) {
                    if self.running().len() > 1 && self.connected_without(None, Some(b)) {
                        self.net.crash(b);
                        self.oracle.crash(b);
                        self.live.retain(|k| k.0 != b);
                        self.adverts.remove(&b);
                        self.faults += 1;
                    }
                } else {
                    let peers: Vec<(BrokerId, BrokerId)> = self
                        .links
                        .iter()
                        .copied()
                        .filter(|&(x, y)| (x == b || y == b) && !self.downed.contains(&(x, y)))
                        .collect();
                    // Restart only where the broker rejoins the running network at once, so
                    // that the running brokers stay connected.
                    let other = |&(x, y): &(BrokerId, BrokerId)| if x == b { y } else { x };
                    if !peers.iter().any(|l| self.net.is_running(other(l))) {
                        return Ok(());
                    }
                    self.net.restart(b);
                    for (x, y) in peers {
                        self.net.link_up(x, y);
                    }
                    self.advertise_all(b)?;
                }
            }
            _ => {
                for _ in 0..self.rng.below(30) {
                    self.net.step();
                }
            }
        }
        Ok(())
    }

    /// Settles, audits, publishes a checked batch, settles and judges.
    fn check_round(&mut self, publications: usize) -> Result<Verdict, String> {
        self.net
            .drive_bounded(2_000_000)
            .map_err(|e| e.to_string())?;
        self.net.audit()?;
        for _ in 0..publications {
            let Some(b) = self.random_running() else {
                break;
            };
            let event = self.model.event(self.region(b), &mut self.rng);
            if self.strategy == Strategy::Advertisements
                && !self
                    .adverts
                    .get(&b)
                    .is_some_and(|m| m.values().any(|a| a.covers_event(&event)))
            {
                // The publisher did not advertise this: no guarantee to check.
                continue;
            }
            let id = NotificationId(self.next_note);
            self.next_note += 1;
            self.oracle.published_checked(id, event.clone());
            self.net.publish(b, note(id, event));
        }
        self.net
            .drive_bounded(2_000_000)
            .map_err(|e| e.to_string())?;
        let observed = self.net.take_observed();
        Ok(self.oracle.check(&observed))
    }
}

fn note(id: NotificationId, attributes: palio_filter::Event) -> Arc<Notification> {
    Arc::new(Notification {
        id,
        attributes,
        payload: Vec::new(),
    })
}

/// Runs a randomized scenario: a random overlay, random subscribe / unsubscribe / advertise /
/// unadvertise / publish operations interleaved with partial progress of the network (so
/// routing is often unsettled), optional link and broker failures and returns that keep the
/// running brokers connected, and after each round a settle, an audit of every broker, and a
/// batch of publications whose deliveries the oracle checks exactly.
pub fn run_chaos(seed: u64, p: &ChaosParams) -> Result<ChaosOutcome, String> {
    let mut rng = SimRng::new(seed);
    let n = p.brokers.max(1);
    let regions = 1 + (n as u32) / 4;
    let overlay = Overlay::generate(p.topology, n, regions, &mut rng.fork(1));
    let mut perm: Vec<u32> = (0..n as u32).collect();
    rng.shuffle(&mut perm);
    let ids: Vec<BrokerId> = perm.into_iter().map(BrokerId).collect();
    let links: Vec<(BrokerId, BrokerId)> = overlay
        .graph
        .links()
        .map(|(a, b)| {
            let (x, y) = (ids[a.0 as usize], ids[b.0 as usize]);
            if x < y { (x, y) } else { (y, x) }
        })
        .collect();
    let model = ContentModel::new(6, rng.unit(), 0.15);
    let mut net = Network::new(NetConfig::default(), seed);
    for &b in &ids {
        let mut config = Config::new(b, 1).with_strategy(p.strategy);
        config.tree_delay = Duration::from_millis(rng.below(3) * 10);
        config.covering_scan_limit = 1 + rng.index(64);
        net.add_broker(config);
    }
    let mut chaos = Chaos {
        rng,
        net,
        oracle: Oracle::new(),
        cache: FilterCache::default(),
        model,
        overlay,
        ids: ids.clone(),
        links: links.clone(),
        downed: BTreeSet::new(),
        live: Vec::new(),
        adverts: BTreeMap::new(),
        next_sub: 0,
        next_adv: 0,
        next_note: 0,
        faults: 0,
        strategy: p.strategy,
    };
    for (a, b) in links {
        chaos.net.link_up(a, b);
    }
    for b in ids {
        chaos.advertise_all(b)?;
    }
    let mut verdict = Verdict::default();
    for _ in 0..p.rounds {
        for _ in 0..p.ops {
            chaos.op(p.faults)?;
        }
        verdict.absorb(chaos.check_round(p.publications)?);
    }
    Ok(ChaosOutcome {
        verdict,
        trace_hash: chaos.net.trace_hash(),
        events: chaos.net.counters().events,
        faults: chaos.faults,
    })
}
