//! The groups task's owners, permissions, bounds and routing of bodies, driven by hand:
//! clients with principals of their own (before sessions authenticate them), peers as
//! outboxes, no network.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use palio_filter::{AttrName, Event, Value};
use palio_protocol::{ClientFrame, ErrorCode, ServerFrame};
use palio_topology::group::Order;
use palio_topology::{BrokerId, SharedFilter};

use super::bounds::{MAX_BROKER_NAME, MAX_GROUP_MEMBERS};
use super::members::Hangup;
use super::{GroupCommand, Groups, Task};
use crate::auth::Principal;
use crate::metrics::Metrics;
use crate::outbox::{Capacity, Inbox, Outbox};
use crate::router::ClientId;
use crate::wire::{GroupDecl, GroupPeer, PeerMessage, PeerOut};

const ROOMY: Capacity = Capacity {
    frames: 1 << 16,
    bytes: 1 << 30,
};

/// One broker's groups task, its clients' control streams and one peer's link.
struct Broker {
    task: Task,
    clients: HashMap<ClientId, Inbox<ServerFrame>>,
    peer: Inbox<PeerOut>,
    now: Instant,
    next_request: u64,
    _dir: tempfile::TempDir,
}

const PEER: BrokerId = BrokerId(2);

fn principal(
    name: &str,
    admin: bool,
    publish: Option<&str>,
    subscribe: Option<&str>,
) -> Arc<Principal> {
    let filter = |f: Option<&str>| f.map(|f| SharedFilter::parse(f).unwrap());
    Arc::new(Principal {
        name: name.into(),
        admin,
        publish: filter(publish),
        subscribe: filter(subscribe),
    })
}

fn event(n: i32) -> Event {
    [(AttrName::new("n").unwrap(), Value::Int(n))]
        .into_iter()
        .collect()
}

fn peer_decl(name: &str, owner: &str) -> GroupDecl {
    GroupDecl {
        name: name.into(),
        order: Order::Fifo,
        voters: Vec::new(),
        creator: PEER,
        generation: 1,
        removed: false,
        owner: owner.into(),
    }
}

impl Broker {
    fn new(max_groups: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let groups =
            Groups::open(dir.path(), BrokerId(1), "b1", max_groups, Metrics::new()).unwrap();
        let mut task = groups.task;
        let (out, peer) = Outbox::new(ROOMY);
        task.peers.insert(PEER, (1, out));
        Broker {
            task,
            clients: HashMap::new(),
            peer,
            now: Instant::now(),
            next_request: 0,
            _dir: dir,
        }
    }

    fn connect(&mut self, client: ClientId, principal: Arc<Principal>) {
        let (out, inbox) = Outbox::new(ROOMY);
        let hangup = Hangup::new(|| panic!("no client here is too slow"));
        self.task
            .locals
            .client_up(client, format!("c{client}"), principal, out, hangup);
        self.clients.insert(client, inbox);
    }

    /// What `client` received since last asked.
    fn received(&mut self, client: ClientId) -> Vec<ServerFrame> {
        let inbox = self.clients.get_mut(&client).unwrap();
        std::iter::from_fn(|| inbox.try_recv().map(|(f, _)| f)).collect()
    }

    /// What went to the peer since last asked.
    fn flooded(&mut self) -> Vec<GroupPeer> {
        std::iter::from_fn(|| self.peer.try_recv())
            .filter_map(|(m, _)| match m {
                PeerOut::Message(PeerMessage::Group(g)) => Some(g),
                _ => None,
            })
            .collect()
    }

    /// Sends a request (`request` filled in) and returns the one answer.
    fn ask(&mut self, client: ClientId, frame: impl FnOnce(u64) -> ClientFrame) -> ServerFrame {
        self.next_request += 1;
        self.task
            .request(self.now, client, frame(self.next_request));
        self.task.drive();
        let mut answers = self.received(client);
        assert_eq!(answers.len(), 1, "one answer: {answers:?}");
        answers.remove(0)
    }

    fn create(&mut self, client: ClientId, name: &str) -> ServerFrame {
        self.ask(client, |request| ClientFrame::GroupCreate {
            request,
            name: name.into(),
            order: "fifo".into(),
        })
    }

    fn info(&mut self, client: ClientId, name: &str) -> ServerFrame {
        self.ask(client, |request| ClientFrame::GroupInfo {
            request,
            name: name.into(),
        })
    }

    fn join(&mut self, client: ClientId, name: &str) -> ServerFrame {
        self.ask(client, |request| ClientFrame::GroupJoin {
            request,
            group: name.into(),
            filter: None,
        })
    }

    fn remove(&mut self, client: ClientId, name: &str) -> ServerFrame {
        self.ask(client, |request| ClientFrame::GroupRemove {
            request,
            name: name.into(),
        })
    }

    fn list(&mut self, client: ClientId) -> Vec<String> {
        match self.ask(client, |request| ClientFrame::GroupList { request }) {
            ServerFrame::Groups { groups, .. } => groups.into_iter().map(|g| g.name).collect(),
            other => panic!("{other:?}"),
        }
    }

    /// Publishes `n` to `group` as `client`'s publication `seq`; returns what came back to
    /// the client (acks, refusals, its own members' messages).
    fn publish(&mut self, client: ClientId, group: &str, seq: u64, n: i32) -> Vec<ServerFrame> {
        self.task.request(
            self.now,
            client,
            ClientFrame::GroupPublish {
                group: group.into(),
                seq,
                deps: None,
                attributes: event(n),
                payload: Vec::new(),
            },
        );
        self.task.drive();
        self.received(client)
    }

    fn peer_says(&mut self, m: GroupPeer) {
        self.task.handle(
            self.now,
            GroupCommand::Peer {
                peer: PEER,
                message: m,
            },
        );
        self.task.drive();
    }

    fn denied(&self, action: &str) -> u64 {
        self.task
            .metrics
            .permission_denied
            .with_label_values(&[action])
            .get()
    }

    fn hits(&self, limit: &str) -> u64 {
        self.task
            .metrics
            .limits_hit
            .with_label_values(&[limit])
            .get()
    }
}

fn code(frame: &ServerFrame) -> Option<ErrorCode> {
    match frame {
        ServerFrame::Error { code, .. } | ServerFrame::GroupPublishFailed { code, .. } => {
            Some(*code)
        }
        _ => None,
    }
}

/// The values of `n` of the group messages among `frames`.
fn delivered(frames: &[ServerFrame]) -> Vec<i32> {
    frames
        .iter()
        .filter_map(|f| match f {
            ServerFrame::GroupMessage(m) => match m.attributes.get("n") {
                Some(Value::Int(n)) => Some(*n),
                _ => None,
            },
            ServerFrame::GroupGap(g) => panic!("a gap: {g:?}"),
            _ => None,
        })
        .collect()
}

const ALICE: ClientId = 1;
const BOB: ClientId = 2;
const ROOT: ClientId = 3;

#[test]
fn only_the_owner_or_an_admin_may_use_a_group() {
    let mut b = Broker::new(16);
    b.connect(ALICE, principal("alice", false, None, None));
    b.connect(BOB, principal("bob", false, None, None));
    b.connect(ROOT, principal("root", true, None, None));
    assert!(matches!(b.create(ALICE, "g"), ServerFrame::Done { .. }));
    assert!(
        b.flooded()
            .iter()
            .any(|m| matches!(m, GroupPeer::Decl(d) if d.owner == "alice")),
        "the owner travels in the declaration"
    );
    match b.info(ALICE, "g") {
        ServerFrame::Groups { groups, .. } => assert_eq!(groups[0].owner, "alice"),
        other => panic!("{other:?}"),
    }

    assert_eq!(code(&b.info(BOB, "g")), Some(ErrorCode::PermissionDenied));
    assert_eq!(code(&b.join(BOB, "g")), Some(ErrorCode::PermissionDenied));
    assert_eq!(code(&b.remove(BOB, "g")), Some(ErrorCode::PermissionDenied));
    let refused = b.publish(BOB, "g", 1, 1);
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(code(&refused[0]), Some(ErrorCode::PermissionDenied));
    assert_eq!(
        b.list(BOB),
        Vec::<String>::new(),
        "ls shows only what bob may use"
    );
    assert_eq!(b.denied("group"), 4, "info, join, remove and publish");
    assert!(b.task.catalog.live("g").is_some(), "bob removed nothing");

    assert_eq!(b.list(ALICE), vec!["g".to_owned()]);
    assert_eq!(b.list(ROOT), vec!["g".to_owned()]);
    assert!(matches!(b.join(ROOT, "g"), ServerFrame::Joined { .. }));
    assert!(
        matches!(b.remove(ROOT, "g"), ServerFrame::Done { .. }),
        "an admin may"
    );
    assert!(b.task.catalog.live("g").is_none());
    assert_eq!(b.denied("group"), 4);
}

#[test]
fn a_group_declared_before_owners_is_everyones() {
    let mut b = Broker::new(16);
    b.connect(BOB, principal("bob", false, None, None));
    b.peer_says(GroupPeer::Decl(peer_decl("old", "")));
    assert!(matches!(b.info(BOB, "old"), ServerFrame::Groups { .. }));
    assert!(matches!(b.join(BOB, "old"), ServerFrame::Joined { .. }));
    assert_eq!(delivered(&b.publish(BOB, "old", 1, 7)), vec![7]);
    assert_eq!(b.denied("group"), 0);
}

#[test]
fn a_publication_outside_the_publish_permission_is_refused_and_not_delivered() {
    let mut b = Broker::new(16);
    b.connect(ALICE, principal("alice", false, Some("n < 10"), None));
    b.create(ALICE, "g");
    b.join(ALICE, "g");
    let first = b.publish(ALICE, "g", 1, 5);
    assert_eq!(delivered(&first), vec![5]);
    assert!(
        first
            .iter()
            .any(|f| matches!(f, ServerFrame::GroupAcked { through: 1, .. }))
    );
    let second = b.publish(ALICE, "g", 2, 50);
    assert_eq!(second.len(), 1, "only the refusal: {second:?}");
    assert!(matches!(
        &second[0],
        ServerFrame::GroupPublishFailed {
            seq: 2,
            code: ErrorCode::PermissionDenied,
            ..
        }
    ));
    assert_eq!(b.denied("publish"), 1);
}

#[test]
fn members_receive_only_what_their_principal_may_receive_without_gaps() {
    let mut b = Broker::new(16);
    b.connect(ALICE, principal("alice", false, None, Some("n < 10")));
    b.connect(ROOT, principal("root", true, None, None));
    b.create(ALICE, "g");
    b.join(ALICE, "g");
    b.join(ROOT, "g");
    b.received(ROOT);
    let mut to_root = Vec::new();
    for (seq, n) in [(1, 1), (2, 50), (3, 2)] {
        to_root.extend(delivered(&b.publish(ROOT, "g", seq, n)));
    }
    assert_eq!(to_root, vec![1, 50, 2]);
    assert_eq!(
        delivered(&b.received(ALICE)),
        vec![1, 2],
        "50 is outside alice's permission"
    );
    // A reload that narrows the permission applies to what follows.
    b.task.handle(
        b.now,
        GroupCommand::Principal {
            client: ROOT,
            principal: principal("root", true, None, Some("n > 100")),
        },
    );
    assert_eq!(delivered(&b.publish(ROOT, "g", 4, 70)), Vec::<i32>::new());
    assert_eq!(delivered(&b.publish(ROOT, "g", 5, 700)), vec![700]);
    assert_eq!(
        delivered(&b.received(ALICE)),
        Vec::<i32>::new(),
        "neither is within alice's permission"
    );
}

#[test]
fn a_reload_that_takes_a_group_away_drops_its_members() {
    let mut b = Broker::new(16);
    b.connect(ALICE, principal("alice", false, None, None));
    b.connect(BOB, principal("bob", true, None, None));
    b.create(ALICE, "g");
    b.join(ALICE, "g");
    b.join(BOB, "g");
    assert_eq!(b.task.catalog.members("g").len(), 2);
    b.flooded();
    b.task.handle(
        b.now,
        GroupCommand::Principal {
            client: BOB,
            principal: principal("bob", false, None, None),
        },
    );
    assert_eq!(b.task.catalog.members("g"), vec!["c1#1@b1".to_owned()]);
    assert!(
        b.flooded()
            .iter()
            .any(|m| matches!(m, GroupPeer::Members { members, .. } if members.len() == 1)),
        "the peers are told"
    );
    assert_eq!(delivered(&b.publish(ALICE, "g", 1, 3)), vec![3]);
    assert_eq!(delivered(&b.received(BOB)), Vec::<i32>::new());
    assert_eq!(code(&b.join(BOB, "g")), Some(ErrorCode::PermissionDenied));
}

#[test]
fn groups_past_max_groups_are_refused_to_clients_and_peers() {
    let mut b = Broker::new(2);
    b.connect(ALICE, principal("alice", false, None, None));
    assert!(matches!(b.create(ALICE, "a"), ServerFrame::Done { .. }));
    b.peer_says(GroupPeer::Decl(peer_decl("b", "")));
    b.flooded();
    assert_eq!(code(&b.create(ALICE, "c")), Some(ErrorCode::LimitExceeded));
    b.peer_says(GroupPeer::Decl(peer_decl("d", "")));
    assert!(b.task.catalog.live("d").is_none());
    assert!(
        !b.task.cores.contains_key("d"),
        "no core for a group not taken"
    );
    assert_eq!(b.flooded(), Vec::new(), "nothing refused is passed on");
    assert_eq!(b.hits("max_groups"), 2);
    assert!(matches!(b.remove(ALICE, "a"), ServerFrame::Done { .. }));
    assert!(
        matches!(b.create(ALICE, "c"), ServerFrame::Done { .. }),
        "room again"
    );
}

#[test]
fn peer_floods_past_the_bounds_are_counted_and_not_passed_on() {
    let mut b = Broker::new(16);
    let mut bad = peer_decl("bad name", "");
    b.peer_says(GroupPeer::Decl(bad.clone()));
    bad.name = "g".into();
    bad.owner = "o".repeat(4096);
    b.peer_says(GroupPeer::Decl(bad));
    assert_eq!(b.hits("group_decl"), 2);
    assert_eq!(b.task.catalog.decls().count(), 0);

    b.peer_says(GroupPeer::Names(vec![(
        BrokerId(9),
        "x".repeat(MAX_BROKER_NAME + 1),
    )]));
    assert_eq!(b.hits("group_broker_names"), 1);

    b.peer_says(GroupPeer::Decl(peer_decl("g", "")));
    b.flooded();
    let members = |n: usize| (0..n).map(|i| format!("m{i}@b2")).collect::<Vec<_>>();
    b.peer_says(GroupPeer::Members {
        group: "g".into(),
        broker: PEER,
        version: 1,
        members: members(MAX_GROUP_MEMBERS + 1),
    });
    assert_eq!(b.hits("group_members"), 1);
    assert!(b.task.catalog.members("g").is_empty());
    assert_eq!(b.flooded(), Vec::new());

    // A group full of members elsewhere takes no member here.
    b.peer_says(GroupPeer::Members {
        group: "g".into(),
        broker: PEER,
        version: 2,
        members: members(MAX_GROUP_MEMBERS),
    });
    b.connect(BOB, principal("bob", false, None, None));
    assert_eq!(code(&b.join(BOB, "g")), Some(ErrorCode::LimitExceeded));
    assert_eq!(b.hits("group_members"), 2);
}

/// The destinations of the cores' bodies among `messages`, with the bodies.
fn bodies(messages: impl IntoIterator<Item = GroupPeer>) -> Vec<(BrokerId, Vec<u8>)> {
    messages
        .into_iter()
        .filter_map(|m| match m {
            GroupPeer::Body { to, body, .. } => Some((to, body)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_body_goes_on_the_link_to_its_destination_rather_than_the_trees_next_hop() {
    let mut b = Broker::new(16);
    let (linked, far, nowhere) = (BrokerId(3), BrokerId(4), BrokerId(5));
    let (out, mut linked_inbox) = Outbox::new(ROOMY);
    b.task.peers.insert(linked, (1, out));
    // The tree leads to both through PEER: the triangle b1 - PEER - linked whose root PEER
    // has just died, before the links to it time out and the tree is recomputed.
    b.task.hops = [(PEER, PEER), (linked, PEER), (far, PEER)].into();
    for (to, body) in [(linked, 1), (far, 2), (nowhere, 3)] {
        b.task.send_body("g".into(), BrokerId(1), to, vec![body]);
    }
    let direct = bodies(std::iter::from_fn(|| linked_inbox.try_recv()).filter_map(
        |(m, _)| match m {
            PeerOut::Message(PeerMessage::Group(g)) => Some(g),
            _ => None,
        },
    ));
    assert_eq!(direct, vec![(linked, vec![1])], "on the direct link");
    let flooded = b.flooded();
    assert_eq!(
        bodies(flooded),
        vec![(far, vec![2])],
        "over the tree when there is no direct link; dropped when unreachable"
    );
}
