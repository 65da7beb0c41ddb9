//! The router task: the one owner of the topology state machine.
//!
//! Client sessions and peer links send [`Command`]s through one bounded channel. After each
//! command the router drains the state machine's outputs into outboxes: frames into the peer
//! links' outboxes, deliveries into the subscribers' outboxes. Pushing into an outbox never
//! waits (waiting could deadlock two brokers whose links are both full); an outbox left over its
//! limit is noted on the [`Credit`] of the batch being routed, and the ingress that sent the
//! batch waits for it before sending more (the `pacer` module). Under the `drop` and
//! `disconnect` slow-consumer policies a full subscriber outbox drops or disconnects instead.
//! `poll_timeout` drives a sleep.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use palio_filter::Event;
use palio_protocol::ErrorCode;
use palio_topology::tree::SpanningTree;
use palio_topology::{
    AdvertisementId, Broker, BrokerId, Notification, NotificationId, PeerFrame, SharedFilter,
    SubscriptionId, Transmit,
};
use serde_json::{Value as Json, json};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::sleep_until;
use tokio_util::sync::CancellationToken;

use crate::config::{Limits, SlowConsumerPolicy, StaticSubscription};
pub(crate) use crate::delivery::Delivery;
use crate::metrics::Metrics;
use crate::outbox::{Outbox, Pushed};
use crate::pacer::Credit;
use crate::peer_wire::{EncodedOnce, PeerOut};

/// Identifies a client connection within the broker.
pub(crate) type ClientId = u64;

/// A request refused: the code and message sent back to the client.
pub(crate) type Refusal = (ErrorCode, String);

/// The refusal every request gets once the broker is shutting down (the task that would answer
/// it is gone).
pub(crate) fn shutting_down() -> Refusal {
    (ErrorCode::ShuttingDown, "broker shutting down".to_owned())
}

/// How sessions, peer links and the admin listener talk to the router task.
#[derive(Debug, Clone)]
pub(crate) struct RouterHandle(mpsc::Sender<Command>);

impl RouterHandle {
    pub(crate) fn new(tx: mpsc::Sender<Command>) -> Self {
        Self(tx)
    }

    /// Hands the router a command (waits while its channel is full).
    pub(crate) async fn send(&self, cmd: Command) -> Result<(), Refusal> {
        self.0.send(cmd).await.map_err(|_| shutting_down())
    }

    /// Sends the command `make` builds around a reply channel and waits for the answer.
    pub(crate) async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, Refusal> {
        let (tx, rx) = oneshot::channel();
        self.send(make(tx)).await?;
        rx.await.map_err(|_| shutting_down())
    }

    /// Whether the router task has stopped.
    pub(crate) fn is_closed(&self) -> bool {
        self.0.is_closed()
    }
}

/// What client sessions and peer links ask of the router.
#[derive(Debug)]
pub(crate) enum Command {
    RegisterClient {
        client: ClientId,
        deliveries: Outbox<Delivery>,
        connection: quinn::Connection,
    },
    ClientGone {
        client: ClientId,
    },
    Subscribe {
        client: ClientId,
        filter: SharedFilter,
        reply: oneshot::Sender<Result<u64, Refusal>>,
    },
    Unsubscribe {
        client: ClientId,
        subscription: u64,
        reply: oneshot::Sender<Result<(), Refusal>>,
    },
    Advertise {
        client: ClientId,
        filter: SharedFilter,
        reply: oneshot::Sender<Result<u64, Refusal>>,
    },
    Unadvertise {
        client: ClientId,
        advertisement: u64,
        reply: oneshot::Sender<Result<(), Refusal>>,
    },
    /// A batch of a client's publications (persistent ones too: live subscribers get their
    /// best-effort copies), routed under the batch's credit.
    Publish {
        items: Vec<(Event, Vec<u8>)>,
        credit: Credit,
    },
    /// Answered once every earlier command has been handled.
    Flush {
        reply: oneshot::Sender<()>,
    },
    PeerUp {
        peer: BrokerId,
        name: String,
        link: u64,
        frames: Outbox<PeerOut>,
        connection: quinn::Connection,
        reply: oneshot::Sender<Result<(), Refusal>>,
    },
    PeerDown {
        peer: BrokerId,
        link: u64,
    },
    /// Routing frames received on a link, in order, routed under the batch's credit.
    PeerFrames {
        peer: BrokerId,
        link: u64,
        frames: Vec<PeerFrame>,
        credit: Credit,
    },
    Routes {
        reply: oneshot::Sender<Json>,
    },
}

/// A connected client.
struct ClientEntry {
    /// Its delivery outbox (limits: `limits.subscriber_buffer[_bytes]`).
    deliveries: Outbox<Delivery>,
    /// To close it under the disconnect policy.
    connection: quinn::Connection,
    /// Already being closed: no more deliveries or counting.
    closing: bool,
    subscriptions: HashSet<u64>,
    advertisements: HashSet<u64>,
}

/// Who owns a subscription.
enum Owner {
    Client(ClientId),
    Static(String),
}

struct SubEntry {
    owner: Owner,
    filter: SharedFilter,
}

/// A live peer link.
struct PeerEntry {
    name: String,
    /// Which connection this is (a reconnect is a new link).
    link: u64,
    /// The link's outbox (limits: `limits.peer_queue[_bytes]`).
    frames: Outbox<PeerOut>,
    connection: quinn::Connection,
}

/// The router's state; see the module docs.
pub(crate) struct Router {
    broker: Broker,
    name: String,
    metrics: Metrics,
    limits: Limits,
    clients: HashMap<ClientId, ClientEntry>,
    subscriptions: HashMap<u64, SubEntry>,
    advertisements: HashMap<u64, (ClientId, SharedFilter)>,
    peers: BTreeMap<BrokerId, PeerEntry>,
    next_subscription: u64,
    next_advertisement: u64,
    next_notification: u64,
    /// Configured peer addresses and their state, shared with the dialers (for `/routes`).
    dial_states: crate::peer::DialStates,
    /// The credit of the batch being routed: outboxes it fills are noted on it.
    credit: Option<Credit>,
    /// The last notification sent to a peer, encoded at most once for all its peers.
    last_encoded: Option<Arc<EncodedOnce>>,
    /// The next hop toward each broker on the tree, for the persist task's store-and-forward.
    hops: watch::Sender<HashMap<BrokerId, BrokerId>>,
    /// The tree `hops` was computed from.
    hops_tree: Option<SpanningTree>,
}

impl Router {
    #[allow(clippy::too_many_arguments)] // one constructor wiring the task's channels
    pub(crate) fn new(
        broker: Broker,
        name: String,
        metrics: Metrics,
        limits: Limits,
        statics: Vec<StaticSubscription>,
        dial_states: crate::peer::DialStates,
        hops: watch::Sender<HashMap<BrokerId, BrokerId>>,
    ) -> Self {
        let mut r = Self {
            broker,
            name,
            metrics,
            limits,
            clients: HashMap::new(),
            subscriptions: HashMap::new(),
            advertisements: HashMap::new(),
            peers: BTreeMap::new(),
            next_subscription: 1,
            next_advertisement: 1,
            next_notification: 0,
            dial_states,
            credit: None,
            last_encoded: None,
            hops,
            hops_tree: None,
        };
        for s in statics {
            let id = r.next_subscription;
            r.next_subscription += 1;
            if r.broker
                .subscribe(SubscriptionId(id), s.filter.clone())
                .is_ok()
            {
                r.subscriptions.insert(
                    id,
                    SubEntry {
                        owner: Owner::Static(s.name),
                        filter: s.filter,
                    },
                );
            }
        }
        r
    }

    /// Handles one command and sends or delivers everything it produced.
    fn handle_and_drain(&mut self, cmd: Command) {
        self.handle(cmd);
        self.drain();
        // The batch is routed: its credit goes back to its ingress.
        self.credit = None;
    }

    /// Runs until `shutdown` is cancelled or every sender is gone.
    pub(crate) async fn run(
        mut self,
        mut rx: mpsc::Receiver<Command>,
        shutdown: CancellationToken,
    ) {
        self.drain();
        self.update_gauges();
        loop {
            let deadline = self.broker.poll_timeout();
            tokio::select! {
                cmd = rx.recv() => {
                    let Some(cmd) = cmd else { break };
                    self.handle_and_drain(cmd);
                    // Take whatever else is queued; each command's outputs are drained under
                    // its own credit.
                    for _ in 0..256 {
                        match rx.try_recv() {
                            Ok(cmd) => self.handle_and_drain(cmd),
                            Err(_) => break,
                        }
                    }
                }
                () = async {
                    match deadline {
                        Some(t) => sleep_until(t.into()).await,
                        None => std::future::pending().await,
                    }
                } => {
                    self.broker.handle_timeout(Instant::now());
                    self.drain();
                }
                () = shutdown.cancelled() => break,
            }
            self.update_gauges();
            self.update_hops();
        }
        for p in self.peers.values() {
            p.connection.close(
                ErrorCode::ShuttingDown.code().into(),
                b"broker shutting down",
            );
        }
    }

    /// Routes a local publication.
    fn publish(&mut self, attributes: Event, payload: Vec<u8>) {
        let id = (u64::from(self.broker.id().0) << 32) | (self.next_notification & 0xffff_ffff);
        self.next_notification += 1;
        self.metrics.published.inc();
        let n = Arc::new(Notification {
            id: NotificationId(id),
            attributes,
            payload,
        });
        let timer = self.metrics.matching_seconds.start_timer();
        self.broker.publish(n);
        timer.observe_duration();
    }

    /// Publishes the next hop toward every broker of the tree, if the tree changed.
    fn update_hops(&mut self) {
        let tree = self.broker.tree();
        if self.hops_tree.as_ref() == Some(tree) {
            return;
        }
        let me = self.broker.id();
        let adj = tree.adjacency();
        let mut hops = HashMap::new();
        let mut queue: std::collections::VecDeque<BrokerId> = Default::default();
        for &n in adj.get(&me).into_iter().flatten() {
            hops.insert(n, n);
            queue.push_back(n);
        }
        while let Some(b) = queue.pop_front() {
            let hop = hops[&b];
            for &n in adj.get(&b).into_iter().flatten() {
                if n != me && !hops.contains_key(&n) {
                    hops.insert(n, hop);
                    queue.push_back(n);
                }
            }
        }
        self.hops_tree = Some(tree.clone());
        self.hops.send_replace(hops);
    }

    fn handle(&mut self, cmd: Command) {
        let now = Instant::now();
        match cmd {
            Command::RegisterClient {
                client,
                deliveries,
                connection,
            } => {
                self.clients.insert(
                    client,
                    ClientEntry {
                        deliveries,
                        connection,
                        closing: false,
                        subscriptions: HashSet::new(),
                        advertisements: HashSet::new(),
                    },
                );
            }
            Command::ClientGone { client } => {
                if let Some(c) = self.clients.remove(&client) {
                    for s in c.subscriptions {
                        self.subscriptions.remove(&s);
                        let _ = self.broker.unsubscribe(SubscriptionId(s));
                    }
                    for a in c.advertisements {
                        self.advertisements.remove(&a);
                        let _ = self.broker.unadvertise(AdvertisementId(a));
                    }
                }
            }
            Command::Subscribe {
                client,
                filter,
                reply,
            } => {
                let _ = reply.send(self.subscribe(client, filter));
            }
            Command::Unsubscribe {
                client,
                subscription,
                reply,
            } => {
                let owned = self
                    .clients
                    .get_mut(&client)
                    .is_some_and(|c| c.subscriptions.remove(&subscription));
                let r = if owned {
                    self.subscriptions.remove(&subscription);
                    let _ = self.broker.unsubscribe(SubscriptionId(subscription));
                    Ok(())
                } else {
                    Err((
                        ErrorCode::UnknownId,
                        format!("no subscription {subscription} on this connection"),
                    ))
                };
                let _ = reply.send(r);
            }
            Command::Advertise {
                client,
                filter,
                reply,
            } => {
                let _ = reply.send(self.advertise(client, filter));
            }
            Command::Unadvertise {
                client,
                advertisement,
                reply,
            } => {
                let owned = self
                    .clients
                    .get_mut(&client)
                    .is_some_and(|c| c.advertisements.remove(&advertisement));
                let r = if owned {
                    self.advertisements.remove(&advertisement);
                    let _ = self.broker.unadvertise(AdvertisementId(advertisement));
                    Ok(())
                } else {
                    Err((
                        ErrorCode::UnknownId,
                        format!("no advertisement {advertisement} on this connection"),
                    ))
                };
                let _ = reply.send(r);
            }
            Command::Publish { items, credit } => {
                self.credit = Some(credit);
                for (attributes, payload) in items {
                    self.publish(attributes, payload);
                }
            }
            Command::Flush { reply } => {
                let _ = reply.send(());
            }
            Command::PeerUp {
                peer,
                name,
                link,
                frames,
                connection,
                reply,
            } => {
                if let Some(old) = self.peers.get(&peer)
                    && old.name != name
                {
                    let _ = reply.send(Err((
                        ErrorCode::IdCollision,
                        format!(
                            "broker id {peer} of {name:?} is already used by connected broker {:?}",
                            old.name
                        ),
                    )));
                    return;
                }
                if let Some(old) = self.peers.remove(&peer) {
                    old.connection
                        .close(ErrorCode::Closed.code().into(), b"replaced by a new link");
                }
                tracing::info!(%peer, %name, link, "peer link up");
                self.peers.insert(
                    peer,
                    PeerEntry {
                        name,
                        link,
                        frames,
                        connection,
                    },
                );
                self.broker.handle_peer_up(peer, now);
                let _ = reply.send(Ok(()));
            }
            Command::PeerDown { peer, link } => {
                if self.peers.get(&peer).is_some_and(|p| p.link == link) {
                    tracing::info!(%peer, link, "peer link down");
                    self.peers.remove(&peer);
                    self.broker.handle_peer_down(peer, now);
                }
            }
            Command::PeerFrames {
                peer,
                link,
                frames,
                credit,
            } => {
                if self.peers.get(&peer).is_none_or(|p| p.link != link) {
                    return;
                }
                self.credit = Some(credit);
                for frame in frames {
                    if !self.peer_frame(peer, frame, now) {
                        break;
                    }
                }
            }
            Command::Routes { reply } => {
                let _ = reply.send(self.routes());
            }
        }
    }

    /// Hands one frame from `peer` to the state machine; false if it broke the protocol and
    /// the link was closed.
    fn peer_frame(&mut self, peer: BrokerId, frame: PeerFrame, now: Instant) -> bool {
        let is_notification = matches!(frame, PeerFrame::Notification(_));
        if is_notification {
            self.metrics.received.inc();
        }
        let timer = is_notification.then(|| self.metrics.matching_seconds.start_timer());
        let r = self.broker.handle_frame(peer, frame, now);
        if let Some(t) = timer {
            t.observe_duration();
        }
        let Err(e) = r else { return true };
        tracing::warn!(%peer, error = %e, "peer broke the routing protocol; closing link");
        self.metrics
            .connection_errors
            .with_label_values(&[ErrorCode::RoutingError.as_str()])
            .inc();
        if let Some(p) = self.peers.remove(&peer) {
            p.connection.close(
                ErrorCode::RoutingError.code().into(),
                e.to_string().as_bytes(),
            );
        }
        self.broker.handle_peer_down(peer, now);
        false
    }

    fn subscribe(&mut self, client: ClientId, filter: SharedFilter) -> Result<u64, Refusal> {
        let max = self.limits.max_subscriptions_per_client;
        let c = self
            .clients
            .get_mut(&client)
            .ok_or((ErrorCode::Internal, "connection not registered".to_owned()))?;
        if c.subscriptions.len() >= max {
            return Err((
                ErrorCode::LimitExceeded,
                format!("at most {max} subscriptions per connection"),
            ));
        }
        let id = self.next_subscription;
        self.next_subscription += 1;
        self.broker
            .subscribe(SubscriptionId(id), filter.clone())
            .map_err(|e| (ErrorCode::Internal, e.to_string()))?;
        c.subscriptions.insert(id);
        self.subscriptions.insert(
            id,
            SubEntry {
                owner: Owner::Client(client),
                filter,
            },
        );
        Ok(id)
    }

    fn advertise(&mut self, client: ClientId, filter: SharedFilter) -> Result<u64, Refusal> {
        let max = self.limits.max_advertisements_per_client;
        let c = self
            .clients
            .get_mut(&client)
            .ok_or((ErrorCode::Internal, "connection not registered".to_owned()))?;
        if c.advertisements.len() >= max {
            return Err((
                ErrorCode::LimitExceeded,
                format!("at most {max} advertisements per connection"),
            ));
        }
        let id = self.next_advertisement;
        self.next_advertisement += 1;
        self.broker
            .advertise(AdvertisementId(id), filter.clone())
            .map_err(|e| (ErrorCode::Internal, e.to_string()))?;
        c.advertisements.insert(id);
        self.advertisements.insert(id, (client, filter));
        Ok(id)
    }

    /// Sends and delivers everything the state machine has queued.
    fn drain(&mut self) {
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

    fn update_gauges(&self) {
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
    fn note(&self, pushed: Pushed, gate: impl FnOnce() -> crate::outbox::Gate) {
        if pushed == Pushed::Full
            && let Some(c) = &self.credit
        {
            c.block_on(gate());
        }
    }

    /// Queues a frame for a peer. Never drops: a full link slows the traffic that goes there.
    fn transmit(&mut self, t: Transmit) {
        let Some(p) = self.peers.get(&t.peer) else {
            return;
        };
        let out = match t.frame {
            PeerFrame::Notification(n) => {
                self.metrics.forwarded.inc();
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
        // A closed outbox means the link is going down; its PeerDown is on the way.
        let pushed = p.frames.push(out, size);
        self.note(pushed, || p.frames.gate());
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
                self.metrics.delivered.inc();
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

    fn routes(&self) -> Json {
        let b = &self.broker;
        let ids =
            |it: &mut dyn Iterator<Item = BrokerId>| -> Vec<u32> { it.map(|i| i.0).collect() };
        json!({
            "broker": { "name": self.name, "id": b.id().0 },
            "strategy": b.strategy().as_str(),
            "peers": self.peers.iter().map(|(id, p)| json!({
                "id": id.0, "name": p.name, "link": p.link,
                "remote": p.connection.remote_address().to_string(),
                "tree_neighbour": b.tree_neighbours().contains(id),
                "queued_frames": p.frames.held().0,
                "queued_bytes": p.frames.held().1,
            })).collect::<Vec<_>>(),
            "dialed": crate::peer::dial_snapshot(&self.dial_states),
            "known_brokers": b.known_brokers(),
            "link_state": { "neighbours": ids(&mut b.own_link_state().neighbours.iter().copied()) },
            "tree": {
                "root": b.tree().root().0,
                "edges": b.tree().edges().map(|(x, y)| [x.0, y.0]).collect::<Vec<_>>(),
            },
            "tree_neighbours": ids(&mut b.tree_neighbours().iter().copied()),
            "table_entries": b.table_entries(),
            "forwarded_entries": b.forwarded_entries(),
            "subscriptions": self.subscriptions.iter().map(|(id, s)| json!({
                "id": id,
                "filter": s.filter.source(),
                "owner": match &s.owner { Owner::Client(c) => format!("client {c}"), Owner::Static(n) => format!("static {n}") },
            })).collect::<Vec<_>>(),
            "advertisements": self.advertisements.iter().map(|(id, (c, f))| json!({
                "id": id, "filter": f.source(), "owner": format!("client {c}"),
            })).collect::<Vec<_>>(),
        })
    }
}

fn gauge(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
