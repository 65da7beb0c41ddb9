//! The groups task: the one owner of every ordered group's core at this broker.
//!
//! - **Cores.** Each group known here has one sans-IO core from `palio_topology::group`
//!   (fifo and causal: `CausalGroup`; total: `TotalGroup`, a Raft log whose leader is the
//!   sequencer). The task feeds them client publications, peer bodies and timer ticks, and
//!   carries out the effects they return, in order: persist records (one fdatasync for a run
//!   of them, before anything that follows), send bodies to other brokers (on the link to the
//!   destination when there is one, else hop by hop over the spanning tree's next hops),
//!   deliver to local members, ack publishers, report gaps.
//! - **Catalog.** Group declarations, brokers' names and members are flooded over peer links
//!   and merged (`catalog`); declarations are kept in the groups' log (`journal`) with the
//!   cores' records, so groups and their logs survive restarts.
//! - **Clients.** Group requests come from client sessions; answers, group messages, acks and
//!   gaps go back on the client's control outbox (`members`). A member that lets its outbox
//!   fill is disconnected (`slow_consumer`).
//! - **Owners and permissions.** A group belongs to the principal that created it (its
//!   declaration's `owner`): only that principal or an admin may remove it, describe it, list
//!   it, join it or publish to it (`permission_denied`). A publication must also be within
//!   the principal's publish permission, and a member receives only what its principal may
//!   receive (checked at delivery, at the member's broker). A reload that takes a group away
//!   from a principal drops its members there.
//! - **Bounds.** What peers flood is bounded (`bounds`, and `limits.max_groups`): past a bound
//!   it is not taken and is counted in `palio_limits_hit_total`.
//!
//! Like the persist task, it runs on a thread of its own: an fsync never stalls the network.
//!
//! Files: this one holds the commands, the handle and the loop; `requests` the clients'
//! requests, `overlay` what brokers flood and route to each other, `effects` how the cores'
//! effects are carried out; `catalog`, `journal`, `members` and `core` the state they use,
//! `bounds` what peers' floods are held to.

mod bounds;
mod catalog;
pub(crate) mod core;
mod effects;
pub(crate) mod journal;
mod members;
mod overlay;
mod owners;
mod requests;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use palio_protocol::{ClientFrame, ErrorCode, ServerFrame};
use palio_topology::BrokerId;
use tokio::sync::{mpsc, watch};
use tokio::time::sleep_until;
use tokio_util::sync::CancellationToken;

use self::bounds::OverLimit;
use self::catalog::Catalog;
use self::core::Core;
use self::journal::{Journal, Recovered};
use self::members::{Hangup, Locals};
use crate::auth::Principal;
use crate::metrics::Metrics;
use crate::outbox::Outbox;
use crate::router::ClientId;
use crate::wire::{GroupDecl, GroupPeer, PeerOut};

/// How many replicas a total-order group gets (fewer when the network has fewer brokers).
const REPLICAS: usize = 3;

/// What sessions and peer links ask of the groups task.
#[derive(Debug)]
pub(crate) enum GroupCommand {
    /// A client connected, named `name` in its hello.
    ClientUp {
        client: ClientId,
        name: String,
        frames: Outbox<ServerFrame>,
        connection: quinn::Connection,
        principal: Arc<Principal>,
    },
    /// A reload changed a connected client's principal.
    Principal {
        client: ClientId,
        principal: Arc<Principal>,
    },
    /// A client named the producer of its connection (`ClientFrame::Producer`): its group
    /// publications are keyed on that name too.
    Producer {
        client: ClientId,
        producer: String,
    },
    ClientGone {
        client: ClientId,
    },
    /// A group request or publication of a client.
    Request {
        client: ClientId,
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
pub(crate) type GroupHandle = crate::handle::TaskHandle<GroupCommand>;

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
    /// Opens the groups' log in `dir` and reads it back; at most `max_groups` groups are
    /// kept (`limits.max_groups`).
    pub(crate) fn open(
        dir: &Path,
        me: BrokerId,
        name: &str,
        max_groups: usize,
        metrics: Metrics,
    ) -> Result<Self, String> {
        let (journal, recovered) = Journal::open(dir).map_err(|e| e.to_string())?;
        let mut catalog = Catalog::new(max_groups);
        catalog.merge_names(vec![(me, name.to_owned())]);
        Ok(Groups {
            task: Task {
                me,
                name: name.to_owned(),
                catalog,
                cores: HashMap::new(),
                locals: Locals::default(),
                peers: HashMap::new(),
                hops: HashMap::new(),
                journal,
                failed: None,
                version: 0,
                metrics,
                warned: HashSet::new(),
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
            if let Err(e) = task.catalog.merge_decl(d) {
                // `limits.max_groups` was lowered since: the groups past it are not served.
                task.over_limit(&e);
            }
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
        task.drive();
        loop {
            let deadline = task.next_timeout();
            tokio::select! {
                cmd = rx.recv() => {
                    let Some(cmd) = cmd else { break };
                    let now = Instant::now();
                    // Next hops the router published before this command first: a group
                    // created right after the network formed gets its replicas from the
                    // whole network (select! picks a ready branch at random, so the change
                    // could otherwise wait until after the command).
                    if hops.has_changed().unwrap_or(false) {
                        let h = hops.borrow_and_update().clone();
                        task.set_hops(now, h);
                    }
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
            task.drive();
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
    peers: HashMap<BrokerId, (u64, Outbox<PeerOut>)>,
    /// Next hop toward every reachable broker.
    hops: HashMap<BrokerId, BrokerId>,
    journal: Journal,
    /// The groups' log failed: nothing more is persisted or acked.
    failed: Option<String>,
    /// The version of this broker's member lists.
    version: u64,
    metrics: Metrics,
    /// The bounds whose hits were logged: each is logged once (they are all counted).
    warned: HashSet<&'static str>,
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
                name,
                frames,
                connection,
                principal,
            } => {
                let hangup = Hangup::connection(connection);
                self.locals
                    .client_up(client, name, principal, frames, hangup);
            }
            GroupCommand::Principal { client, principal } => {
                self.principal_changed(now, client, principal);
            }
            GroupCommand::Producer { client, producer } => {
                self.locals.named_producer(client, producer);
            }
            GroupCommand::ClientGone { client } => {
                for g in self.locals.client_gone(client) {
                    self.members_changed(now, &g);
                }
            }
            GroupCommand::Request { client, frame } => self.request(now, client, frame),
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

    /// Counts and logs (once per bound) something a bound kept out.
    fn over_limit(&mut self, e: &OverLimit) {
        self.metrics.limits_hit.with_label_values(&[e.limit]).inc();
        if self.warned.insert(e.limit) {
            tracing::warn!(
                limit = e.limit,
                "{e} (logged once per bound; counted in palio_limits_hit_total)"
            );
        } else {
            tracing::debug!(limit = e.limit, "{e}");
        }
    }

    fn fail(&mut self, why: String) {
        if self.failed.is_none() {
            tracing::error!(error = %why, "the groups' log failed: group publications are refused until restart");
            self.failed = Some(why);
        }
    }

    fn next_timeout(&self) -> Option<Instant> {
        self.cores
            .values()
            .filter_map(|(_, c)| c.poll_timeout())
            .min()
    }
}
