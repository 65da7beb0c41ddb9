//! The groups task: the one owner of every ordered group's core at this broker.
//!
//! - **Cores.** Each group known here has one sans-IO core from `palio_topology::group`
//!   (fifo and causal: `CausalGroup`; total: `TotalGroup`, a Raft log whose leader is the
//!   sequencer). The task feeds them client publications, peer bodies and timer ticks, and
//!   carries out the effects they return, in order: persist records (one fdatasync for a run
//!   of them, before anything that follows), send bodies to other brokers (hop by hop over the
//!   spanning tree's next hops), deliver to local members, ack publishers, report gaps.
//! - **Catalog.** Group declarations, brokers' names and members are flooded over peer links
//!   and merged (`catalog`); declarations are kept in the groups' log (`journal`) with the
//!   cores' records, so groups and their logs survive restarts.
//! - **Clients.** Group requests come from client sessions; answers, group messages, acks and
//!   gaps go back on the client's control outbox (`members`). A member that lets its outbox
//!   fill is disconnected (`slow_consumer`).
//!
//! Like the persist task, it runs on a thread of its own: an fsync never stalls the network.

mod catalog;
mod core;
mod journal;
mod members;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use palio_filter::Expr as Filter;
use palio_protocol::{ClientFrame, ErrorCode, GroupInfo, ServerFrame, valid_group_name};
use palio_topology::BrokerId;
use palio_topology::group::{Effect, Order, VClock};
use tokio::sync::{mpsc, watch};
use tokio::time::sleep_until;
use tokio_util::sync::CancellationToken;

use self::catalog::Catalog;
use self::core::{Core, Msg};
use self::journal::{Journal, Recovered};
use self::members::Locals;
use crate::metrics::Metrics;
use crate::outbox::Outbox;
use crate::router::ClientId;
use crate::wire::{GroupDecl, GroupPeer, PeerMessage, PeerOut};

/// How many replicas a total-order group gets (fewer when the network has fewer brokers).
const REPLICAS: usize = 3;

/// What sessions and peer links ask of the groups task.
#[derive(Debug)]
pub(crate) enum GroupCommand {
    ClientUp {
        client: ClientId,
        frames: Outbox<ServerFrame>,
        connection: quinn::Connection,
    },
    ClientGone {
        client: ClientId,
    },
    /// A group request or publication of a client, named `name` in its hello; `producer` is
    /// the connection's producer name, if it gave one.
    Request {
        client: ClientId,
        name: String,
        producer: Option<String>,
        frame: ClientFrame,
    },
    PeerUp {
        peer: BrokerId,
        link: u64,
        frames: Outbox<PeerOut>,
    },
    PeerDown {
        peer: BrokerId,
        link: u64,
    },
    Peer {
        peer: BrokerId,
        message: GroupPeer,
    },
}

/// How sessions and peer links talk to the groups task.
#[derive(Debug, Clone)]
pub(crate) struct GroupHandle(mpsc::Sender<GroupCommand>);

impl GroupHandle {
    pub(crate) fn new(tx: mpsc::Sender<GroupCommand>) -> Self {
        Self(tx)
    }

    /// Hands the task a command (waits while its channel is full: publishers are slowed).
    pub(crate) async fn send(&self, cmd: GroupCommand) -> Result<(), crate::router::Refusal> {
        self.0
            .send(cmd)
            .await
            .map_err(|_| crate::router::shutting_down())
    }
}

/// The groups' state, opened from disk.
pub(crate) struct Groups {
    task: Task,
    recovered: Recovered,
}

impl std::fmt::Debug for Groups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Groups").finish_non_exhaustive()
    }
}

impl Groups {
    /// Opens the groups' log in `dir` and reads it back.
    pub(crate) fn open(
        dir: &Path,
        me: BrokerId,
        name: &str,
        metrics: Metrics,
    ) -> Result<Self, String> {
        let (journal, recovered) = Journal::open(dir).map_err(|e| e.to_string())?;
        let mut catalog = Catalog::default();
        catalog.merge_names(vec![(me, name.to_owned())]);
        Ok(Groups {
            task: Task {
                me,
                name: name.to_owned(),
                catalog,
                cores: HashMap::new(),
                locals: Locals::default(),
                client_names: HashMap::new(),
                peers: HashMap::new(),
                hops: HashMap::new(),
                journal,
                failed: None,
                version: 0,
                metrics,
            },
            recovered,
        })
    }

    /// Runs the task until `shutdown` or until every sender is gone.
    pub(crate) async fn run(
        self,
        mut rx: mpsc::Receiver<GroupCommand>,
        mut hops: watch::Receiver<HashMap<BrokerId, BrokerId>>,
        shutdown: CancellationToken,
    ) {
        let Groups {
            mut task,
            mut recovered,
        } = self;
        if recovered.undecodable > 0 {
            tracing::warn!(
                records = recovered.undecodable,
                "undecodable records in the groups' log skipped"
            );
        }
        let now = Instant::now();
        for d in std::mem::take(&mut recovered.decls) {
            task.catalog.merge_decl(d);
        }
        let live: Vec<GroupDecl> = task.catalog.live_groups().cloned().collect();
        for d in live {
            let records = recovered
                .cores
                .remove(&(d.name.clone(), d.generation))
                .unwrap_or_default();
            task.start_core(&d, records, now);
        }
        task.count_groups();
        task.drive(now);
        loop {
            let deadline = task.next_timeout();
            tokio::select! {
                cmd = rx.recv() => {
                    let Some(cmd) = cmd else { break };
                    let now = Instant::now();
                    task.handle(now, cmd);
                    for _ in 0..256 {
                        let Ok(cmd) = rx.try_recv() else { break };
                        task.handle(now, cmd);
                    }
                }
                () = async { match deadline { Some(d) => sleep_until(d.into()).await, None => std::future::pending().await } } => {
                    let now = Instant::now();
                    for (_, core) in task.cores.values_mut() {
                        if core.poll_timeout().is_some_and(|t| t <= now) {
                            core.handle_timeout(now);
                        }
                    }
                }
                r = hops.changed() => {
                    if r.is_err() { break }
                    let h = hops.borrow_and_update().clone();
                    task.set_hops(Instant::now(), h);
                }
                () = shutdown.cancelled() => break,
            }
            task.drive(Instant::now());
        }
        let _ = task.journal.sync();
    }
}

/// The task's state.
struct Task {
    me: BrokerId,
    name: String,
    catalog: Catalog,
    /// Per live group: the generation of its declaration and its core.
    cores: HashMap<String, (u64, Core)>,
    locals: Locals,
    client_names: HashMap<ClientId, String>,
    peers: HashMap<BrokerId, (u64, Outbox<PeerOut>)>,
    /// Next hop toward every reachable broker.
    hops: HashMap<BrokerId, BrokerId>,
    journal: Journal,
    /// The groups' log failed: nothing more is persisted or acked.
    failed: Option<String>,
    /// The version of this broker's member lists.
    version: u64,
    metrics: Metrics,
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn refuse(request: u64, code: ErrorCode, message: String) -> ServerFrame {
    ServerFrame::Error {
        request: Some(request),
        code,
        message,
    }
}

impl Task {
    fn handle(&mut self, now: Instant, cmd: GroupCommand) {
        match cmd {
            GroupCommand::ClientUp {
                client,
                frames,
                connection,
            } => self.locals.client_up(client, frames, connection),
            GroupCommand::ClientGone { client } => {
                self.client_names.remove(&client);
                for g in self.locals.client_gone(client) {
                    self.members_changed(now, &g);
                }
            }
            GroupCommand::Request {
                client,
                name,
                producer,
                frame,
            } => {
                self.client_names.insert(client, name);
                self.request(now, client, producer.as_deref(), frame);
            }
            GroupCommand::PeerUp { peer, link, frames } => {
                self.peers.insert(peer, (link, frames));
                self.greet(peer);
            }
            GroupCommand::PeerDown { peer, link } => {
                if self.peers.get(&peer).is_some_and(|(l, _)| *l == link) {
                    self.peers.remove(&peer);
                }
            }
            GroupCommand::Peer { peer, message } => self.peer(now, peer, message),
        }
    }

    /// Tells a new peer everything this broker knows.
    fn greet(&mut self, peer: BrokerId) {
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

    fn peer(&mut self, now: Instant, from: BrokerId, message: GroupPeer) {
        match message {
            GroupPeer::Names(names) => {
                let new = self.catalog.merge_names(names);
                if !new.is_empty() {
                    self.flood(GroupPeer::Names(new), Some(from));
                }
            }
            GroupPeer::Decl(d) => self.take_decl(now, d, Some(from)),
            GroupPeer::Members {
                group,
                broker,
                version,
                members,
            } => {
                if broker != self.me
                    && self
                        .catalog
                        .merge_members(&group, broker, version, members.clone())
                {
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
    /// stopped, passed on to the other peers.
    fn take_decl(&mut self, now: Instant, d: GroupDecl, from: Option<BrokerId>) {
        if !self.catalog.merge_decl(d.clone()) {
            return;
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
    }

    fn count_groups(&self) {
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

    fn start_core(&mut self, d: &GroupDecl, records: Vec<Vec<u8>>, now: Instant) {
        match Core::new(self.me, d, records, now) {
            Ok(mut core) => {
                if self.locals.has_members(&d.name) {
                    core.set_reading(now, true);
                }
                self.cores.insert(d.name.clone(), (d.generation, core));
            }
            Err(e) => {
                tracing::error!(group = %d.name, error = %e, "the group's records do not load; the group is not served here");
            }
        }
    }

    fn fail(&mut self, why: String) {
        if self.failed.is_none() {
            tracing::error!(error = %why, "the groups' log failed: group publications are refused until restart");
            self.failed = Some(why);
        }
    }

    fn request(
        &mut self,
        now: Instant,
        client: ClientId,
        producer: Option<&str>,
        frame: ClientFrame,
    ) {
        let answer = match frame {
            ClientFrame::GroupCreate {
                request,
                name,
                order,
            } => self.create(now, request, name, &order),
            ClientFrame::GroupRemove { request, name } => match self.catalog.live(&name).cloned() {
                None => refuse(
                    request,
                    ErrorCode::GroupNotFound,
                    format!("no group {name:?}"),
                ),
                Some(mut d) => {
                    d.removed = true;
                    self.take_decl(now, d, None);
                    ServerFrame::Done { request }
                }
            },
            ClientFrame::GroupList { request } => {
                let names: Vec<String> =
                    self.catalog.live_groups().map(|d| d.name.clone()).collect();
                let groups = names.iter().filter_map(|n| self.info(n)).collect();
                ServerFrame::Groups { request, groups }
            }
            ClientFrame::GroupInfo { request, name } => match self.info(&name) {
                Some(g) => ServerFrame::Groups {
                    request,
                    groups: vec![g],
                },
                None => refuse(
                    request,
                    ErrorCode::GroupNotFound,
                    format!("no group {name:?}"),
                ),
            },
            ClientFrame::GroupJoin {
                request,
                group,
                filter,
            } => self.join(now, client, request, &group, filter.as_deref()),
            ClientFrame::GroupLeave { request, member } => {
                if let Some(g) = self.locals.leave(client, member) {
                    self.members_changed(now, &g);
                }
                ServerFrame::Done { request }
            }
            ClientFrame::GroupPublish {
                group,
                seq,
                deps,
                attributes,
                payload,
            } => {
                let key = self.locals.producer(&group, &self.name, client, producer);
                let refusal = match (&self.failed, self.cores.get_mut(&group)) {
                    (Some(why), _) => Some((ErrorCode::StoreUnavailable, why.clone())),
                    (None, None) => Some((ErrorCode::GroupNotFound, format!("no group {group:?}"))),
                    (None, Some((_, core))) => {
                        let mut clock = VClock::default();
                        for (b, n) in deps.unwrap_or_default() {
                            clock.set(BrokerId(b), n);
                        }
                        core.publish(
                            now,
                            &key,
                            seq,
                            &clock,
                            Msg {
                                attributes,
                                payload,
                            },
                        );
                        None
                    }
                };
                match refusal {
                    None => return,
                    Some((code, message)) => ServerFrame::GroupPublishFailed {
                        group,
                        seq,
                        code,
                        message,
                    },
                }
            }
            _ => return,
        };
        self.locals.send(client, answer, 256);
    }

    fn create(&mut self, now: Instant, request: u64, name: String, order: &str) -> ServerFrame {
        if !valid_group_name(&name) {
            return refuse(
                request,
                ErrorCode::ProtocolViolation,
                format!("invalid group name {name:?}: 1-64 letters, digits, '_', '-' or '.'"),
            );
        }
        let order: Order = match order.parse() {
            Ok(o) => o,
            Err(e) => return refuse(request, ErrorCode::ProtocolViolation, format!("{e}")),
        };
        if let Some(d) = self.catalog.live(&name) {
            return refuse(
                request,
                ErrorCode::GroupExists,
                format!("group {name:?} exists already ({} order)", d.order),
            );
        }
        let voters = match order {
            Order::Total => {
                let others: BTreeSet<BrokerId> = self
                    .hops
                    .keys()
                    .copied()
                    .filter(|b| *b != self.me)
                    .collect();
                std::iter::once(self.me)
                    .chain(others.into_iter().take(REPLICAS - 1))
                    .collect()
            }
            _ => Vec::new(),
        };
        let d = GroupDecl {
            generation: now_ms().max(self.catalog.generation(&name) + 1),
            name,
            order,
            voters,
            creator: self.me,
            removed: false,
        };
        self.take_decl(now, d, None);
        ServerFrame::Done { request }
    }

    fn info(&self, name: &str) -> Option<GroupInfo> {
        let d = self.catalog.live(name)?;
        // What this broker's core knows, or the latest announcement, whichever is newer.
        let sequencing = match (
            self.cores.get(name).and_then(|(_, c)| c.sequencing()),
            self.catalog.sequencer(name),
        ) {
            (Some((e, Some(s))), Some((ae, _))) if e >= ae => Some((e, Some(s))),
            (_, Some((ae, s))) => Some((ae, Some(s))),
            (own, None) => own,
        };
        Some(GroupInfo {
            name: d.name.clone(),
            order: d.order.as_str().to_owned(),
            members: self.catalog.members(name),
            epoch: sequencing.map(|(e, _)| e),
            sequencer: sequencing
                .and_then(|(_, s)| s)
                .map(|s| self.catalog.name_of(s)),
            replicas: d.voters.iter().map(|v| self.catalog.name_of(*v)).collect(),
            creator: self.catalog.name_of(d.creator),
        })
    }

    fn join(
        &mut self,
        now: Instant,
        client: ClientId,
        request: u64,
        group: &str,
        filter: Option<&str>,
    ) -> ServerFrame {
        if self.catalog.live(group).is_none() {
            return refuse(
                request,
                ErrorCode::GroupNotFound,
                format!("no group {group:?}"),
            );
        }
        let filter = match filter.map(Filter::parse).transpose() {
            Ok(f) => f,
            Err(e) => return refuse(request, ErrorCode::InvalidFilter, e.to_string()),
        };
        let name = self
            .client_names
            .get(&client)
            .cloned()
            .unwrap_or_else(|| format!("client{client}"));
        let member = self.locals.join(client, group, filter, name);
        self.members_changed(now, group);
        ServerFrame::Joined { request, member }
    }

    /// This broker's members of `group` changed: the core reads or not, the overlay is told.
    fn members_changed(&mut self, now: Instant, group: &str) {
        let reading = self.locals.has_members(group);
        if let Some((_, core)) = self.cores.get_mut(group) {
            core.set_reading(now, reading);
        }
        self.version = now_ms().max(self.version + 1);
        let members = self.locals.names(group, &self.name);
        self.catalog
            .merge_members(group, self.me, self.version, members.clone());
        self.flood(
            GroupPeer::Members {
                group: group.to_owned(),
                broker: self.me,
                version: self.version,
                members,
            },
            None,
        );
    }

    /// New next hops: brokers that became reachable are told to the causal cores.
    fn set_hops(&mut self, now: Instant, hops: HashMap<BrokerId, BrokerId>) {
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

    fn next_timeout(&self) -> Option<Instant> {
        self.cores
            .values()
            .filter_map(|(_, c)| c.poll_timeout())
            .min()
    }

    /// Drains every core's effects and carries them out: the records first (one sync), then
    /// the rest in order.
    fn drive(&mut self, _now: Instant) {
        let names: Vec<String> = self.cores.keys().cloned().collect();
        for group in names {
            let mut effects = Vec::new();
            let generation = match self.cores.get_mut(&group) {
                Some((generation, core)) => {
                    while let Some(e) = core.poll_effect() {
                        effects.push(e);
                    }
                    *generation
                }
                None => continue,
            };
            self.announce(&group);
            if effects.is_empty() {
                continue;
            }
            // What comes before the first record goes out at once (a Raft leader's appends,
            // so they travel while its disk syncs). Then every record of the run is appended
            // and synced with one fdatasync, and only then is the rest carried out, in order:
            // nothing that follows a record is done before the record is durable.
            let first = effects
                .iter()
                .position(|e| matches!(e, Effect::Persist { .. }))
                .unwrap_or(effects.len());
            let mut rest = effects.split_off(first);
            for e in effects {
                if !self.synced() {
                    break;
                }
                self.carry_out(&group, e);
            }
            for e in &mut rest {
                if let Effect::Persist { record } = e
                    && self.failed.is_none()
                    && let Err(err) = self
                        .journal
                        .core(&group, generation, std::mem::take(record))
                {
                    self.fail(err.to_string());
                }
            }
            if !self.synced() {
                // Nothing that followed an unsynced record may be carried out.
                continue;
            }
            for e in rest {
                self.carry_out(&group, e);
            }
        }
    }

    /// Makes what the journal has appended durable, if anything; false if that failed (or
    /// the journal failed before).
    fn synced(&mut self) -> bool {
        if self.failed.is_some() {
            return false;
        }
        match self.journal.sync() {
            Ok(true) => {
                self.metrics.group_log_syncs.inc();
                true
            }
            Ok(false) => true,
            Err(err) => {
                self.fail(err.to_string());
                false
            }
        }
    }

    /// A sequencer announces itself to the overlay when it is elected, so that `group info`
    /// anywhere names it.
    fn announce(&mut self, group: &str) {
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

    fn carry_out(&mut self, group: &str, effect: Effect<Msg>) {
        let order = self
            .catalog
            .live(group)
            .map_or("unknown", |d| d.order.as_str());
        match &effect {
            Effect::Deliver(_) => self
                .metrics
                .group_delivered
                .with_label_values(&[order])
                .inc(),
            Effect::Gap { count, .. } => self
                .metrics
                .group_gaps
                .with_label_values(&[order])
                .inc_by(*count),
            _ => {}
        }
        match effect {
            Effect::Persist { .. } => {}
            Effect::Send { to, body } => self.send_body(group.to_owned(), self.me, to, body),
            Effect::Broadcast { body } => {
                let all: Vec<BrokerId> = self
                    .hops
                    .keys()
                    .copied()
                    .filter(|b| *b != self.me)
                    .collect();
                for to in all {
                    self.send_body(group.to_owned(), self.me, to, body.clone());
                }
            }
            Effect::Deliver(d) => self.locals.deliver(group, &d),
            Effect::Acked { producer, through } => {
                let new = self.locals.acked(group, &producer, through);
                self.metrics
                    .group_acked
                    .with_label_values(&[order])
                    .inc_by(new);
            }
            Effect::Gap { count, .. } => self.locals.gap(group, count),
        }
    }

    /// Sends a core's body toward `to` over the next hop (dropped when `to` is unreachable:
    /// the cores retry).
    fn send_body(&mut self, group: String, from: BrokerId, to: BrokerId, body: Vec<u8>) {
        let Some(hop) = self.hops.get(&to).copied() else {
            return;
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

    fn to_peer(&self, peer: BrokerId, m: GroupPeer) {
        if let Some((_, out)) = self.peers.get(&peer) {
            let item = PeerOut::Message(PeerMessage::Group(m));
            let size = item.size();
            // Never waits; the link's own limits and stall timeout bound it.
            out.push(item, size);
        }
    }

    fn flood(&self, m: GroupPeer, except: Option<BrokerId>) {
        for peer in self.peers.keys() {
            if Some(*peer) != except {
                self.to_peer(*peer, m.clone());
            }
        }
    }
}
