//! The router task: the one owner of the topology state machine.
//!
//! Client sessions and peer links send [`Command`]s through one bounded channel. After each
//! command the router drains the state machine's outputs into outboxes: frames into the peer
//! links' outboxes (a notification into the outbox of its lane, every other frame into the
//! link's control outbox), deliveries into the subscribers' outboxes. Pushing into an outbox never
//! waits (waiting could deadlock two brokers whose links are both full); an outbox left over its
//! limit is noted on the [`Credit`] of the batch being routed, and the ingress that sent the
//! batch waits for it before sending more (the `pacer` module). Under the `drop` and
//! `disconnect` slow-consumer policies a full subscriber outbox drops or disconnects instead.
//! `poll_timeout` drives a sleep.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use palio_filter::Event;
use palio_protocol::{ErrorCode, ReplyTo, ServerFrame};
use palio_topology::tree::SpanningTree;
use palio_topology::{
    Broker, BrokerId, Notification, NotificationId, PeerFrame, SharedFilter, SubscriptionId,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::sleep_until;
use tokio_util::sync::CancellationToken;

use crate::config::{Limits, StaticSubscription};
mod counts;
mod listing;
mod outputs;
mod owners;
mod requests;
mod view;

pub(crate) use listing::Budget;

use self::counts::Counts;
use self::owners::{ClientEntry, Owner, SubEntry};
use self::requests::{RequestIn, Requests};
use crate::delivery::Delivery;
use crate::metrics::Metrics;
use crate::outbox::Outbox;
use crate::pacer::Credit;
use crate::wire::{EncodedOnce, PeerMessage, PeerOut};

/// Identifies a client connection within the broker.
pub(crate) type ClientId = u64;

/// A request refused: the code and message sent back to the client.
pub(crate) type Refusal = (ErrorCode, String);

/// How sessions, peer links and the admin listener talk to the router task.
pub(crate) type RouterHandle = crate::handle::TaskHandle<Command>;

/// What client sessions and peer links ask of the router.
#[derive(Debug)]
pub(crate) enum Command {
    RegisterClient {
        client: ClientId,
        deliveries: Outbox<Delivery>,
        /// Its control stream: requests for its subscriptions, and replies to its own.
        control: Outbox<ServerFrame>,
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
    /// A subscription's filter is replaced (its principal's permission changed); its id stays.
    Refilter {
        client: ClientId,
        subscription: u64,
        filter: SharedFilter,
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
        /// The session's lane: the notifications go to peers on it.
        lane: u8,
    },
    /// Answered once every earlier command has been handled.
    Flush {
        reply: oneshot::Sender<()>,
    },
    PeerUp {
        peer: BrokerId,
        name: String,
        link: u64,
        /// The link's control outbox.
        frames: Outbox<PeerOut>,
        /// The outboxes of its lanes (none: notifications go to `frames`).
        lanes: Vec<Outbox<PeerOut>>,
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
        /// The lane they came on (0 from the control stream): notifications go on along it.
        lane: u8,
    },
    /// What `/routes` and a client's `Routes` request show, the tables listed within
    /// `budget`.
    Routes {
        budget: Budget,
        reply: oneshot::Sender<palio_protocol::RoutesInfo>,
    },
    /// A client's request (`router::requests`), within its publish permission.
    Request {
        client: ClientId,
        request: u64,
        timeout: std::time::Duration,
        attributes: Event,
        payload: Vec<u8>,
    },
    /// A client's reply to a request, within its publish permission.
    Reply {
        to: ReplyTo,
        attributes: Event,
        payload: Vec<u8>,
    },
    /// Request/reply traffic from a peer: `Request`, `Reached` or `Reply` messages.
    PeerRequest {
        peer: BrokerId,
        link: u64,
        message: PeerMessage,
    },
}

/// A live peer link.
struct PeerEntry {
    name: String,
    /// Which connection this is (a reconnect is a new link).
    link: u64,
    /// The link's control outbox (limits: `limits.peer_queue[_bytes]`): every frame but
    /// best-effort notifications.
    frames: Outbox<PeerOut>,
    /// The outboxes of its lanes, each with the same limits; empty if the peer has none.
    lanes: Vec<Outbox<PeerOut>>,
    connection: quinn::Connection,
}

impl PeerEntry {
    /// The outbox for notifications on `lane`: the lane's own (lanes beyond the link's count
    /// wrap around, so one lane still maps to one outbox), or the control outbox on a link
    /// without lanes.
    fn lane(&self, lane: u8) -> &Outbox<PeerOut> {
        match self.lanes.len() {
            0 => &self.frames,
            n => &self.lanes[usize::from(lane) % n],
        }
    }
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
    /// The credit of the batch being routed: outboxes it fills are noted on it.
    credit: Option<Credit>,
    /// The peer the batch being routed came from, if any: its own link's outbox is never
    /// noted on its credit (a link reader waiting for its own link to drain would wait for the
    /// peer to read, while the peer's reader waits the same way: a deadlock).
    credit_from: Option<BrokerId>,
    /// The lane of the batch being routed: notifications go to peers on it.
    lane: u8,
    /// The last notification sent to a peer, encoded at most once for all its peers.
    last_encoded: Option<Arc<EncodedOnce>>,
    /// The next hop toward each broker on the tree, for the persist task's store-and-forward.
    hops: watch::Sender<HashMap<BrokerId, BrokerId>>,
    /// The tree `hops` was computed from.
    hops_tree: Option<SpanningTree>,
    /// Per-notification metrics, added to `metrics` after each command.
    counts: Counts,
    /// Requests of this broker's clients waiting for replies.
    requests: Requests,
}

impl Router {
    #[allow(clippy::too_many_arguments)] // one constructor wiring the task's channels
    pub(crate) fn new(
        broker: Broker,
        name: String,
        metrics: Metrics,
        limits: Limits,
        statics: Vec<StaticSubscription>,
        hops: watch::Sender<HashMap<BrokerId, BrokerId>>,
    ) -> Self {
        let counts = Counts::new(&metrics);
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
            credit: None,
            credit_from: None,
            lane: 0,
            last_encoded: None,
            hops,
            hops_tree: None,
            counts,
            requests: Requests::default(),
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
        self.counts.flush(&self.metrics);
        // The batch is routed: its credit goes back to its ingress.
        self.credit = None;
        self.credit_from = None;
        self.lane = 0;
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
                    let now = Instant::now();
                    self.broker.handle_timeout(now);
                    self.expire_requests(now);
                    self.drain();
                    self.counts.flush(&self.metrics);
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
        self.counts.published += 1;
        let n = Arc::new(Notification {
            id: NotificationId(id),
            attributes,
            payload,
        });
        self.broker.publish(n);
        self.counts.routed();
    }

    /// Publishes the next hop toward every broker of the tree, if the tree changed.
    fn update_hops(&mut self) {
        let tree = self.broker.tree();
        if self.hops_tree.as_ref() == Some(tree) {
            return;
        }
        let hops = tree.next_hops(self.broker.id()).into_iter().collect();
        self.hops_tree = Some(tree.clone());
        self.hops.send_replace(hops);
    }

    fn handle(&mut self, cmd: Command) {
        let now = Instant::now();
        match cmd {
            Command::RegisterClient {
                client,
                deliveries,
                control,
                connection,
            } => self.register_client(client, deliveries, control, connection),
            Command::ClientGone { client } => {
                self.client_gone(client);
                self.requests_gone(client);
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
                let _ = reply.send(self.unsubscribe(client, subscription));
            }
            Command::Refilter {
                client,
                subscription,
                filter,
            } => self.refilter(client, subscription, filter),
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
                let _ = reply.send(self.unadvertise(client, advertisement));
            }
            Command::Publish {
                items,
                credit,
                lane,
            } => {
                self.credit = Some(credit);
                self.lane = lane;
                self.counts.start();
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
                lanes,
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
                        lanes,
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
                lane,
            } => {
                if self.peers.get(&peer).is_none_or(|p| p.link != link) {
                    return;
                }
                self.credit = Some(credit);
                self.credit_from = Some(peer);
                self.lane = lane;
                self.counts.start();
                for frame in frames {
                    if !self.peer_frame(peer, frame, now) {
                        break;
                    }
                }
            }
            Command::Routes { budget, reply } => {
                let _ = reply.send(self.view(budget));
            }
            Command::Request {
                client,
                request,
                timeout,
                attributes,
                payload,
            } => self.request(client, request, timeout, attributes, payload),
            Command::Reply {
                to,
                attributes,
                payload,
            } => self.reply(to, attributes, payload),
            Command::PeerRequest {
                peer,
                link,
                message,
            } => {
                if self.peers.get(&peer).is_some_and(|p| p.link == link) {
                    self.peer_request_message(peer, message);
                }
            }
        }
    }

    /// Request/reply traffic from `peer` (see `requests`).
    fn peer_request_message(&mut self, peer: BrokerId, message: PeerMessage) {
        match message {
            PeerMessage::Request {
                origin,
                id,
                attributes,
                payload,
            } => self.peer_request(
                peer,
                RequestIn {
                    origin,
                    id,
                    attributes,
                    payload,
                },
            ),
            PeerMessage::Reached {
                origin,
                id,
                responders,
                forwarded,
            } => self.reached(origin, id, responders, forwarded),
            PeerMessage::Reply {
                origin,
                id,
                attributes,
                payload,
            } => self.reply(
                ReplyTo {
                    broker: origin.0,
                    id,
                },
                attributes,
                payload,
            ),
            _ => {}
        }
    }

    /// Hands one frame from `peer` to the state machine; false if it broke the protocol and
    /// the link was closed.
    fn peer_frame(&mut self, peer: BrokerId, frame: PeerFrame, now: Instant) -> bool {
        let is_notification = matches!(frame, PeerFrame::Notification(_));
        let r = self.broker.handle_frame(peer, frame, now);
        if is_notification {
            self.counts.received += 1;
            self.counts.routed();
        } else {
            // A routing frame's time is not a notification's.
            self.counts.start();
        }
        while let Some((reason, n)) = self.broker.poll_refused_advert() {
            self.metrics
                .peer_adverts_refused
                .with_label_values(&["link_state", reason.as_str()])
                .inc_by(n);
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
}

fn gauge(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
