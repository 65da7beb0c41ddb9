//! What `/routes` shows of the router: a typed view, turned into JSON by the admin listener.

use palio_topology::BrokerId;
use serde::Serialize;

use super::Router;
use super::owners::Owner;

/// The router's state as `/routes` shows it.
#[derive(Debug, Serialize)]
pub(crate) struct RoutesView {
    pub(crate) broker: BrokerView,
    pub(crate) strategy: &'static str,
    pub(crate) peers: Vec<PeerView>,
    pub(crate) known_brokers: usize,
    pub(crate) link_state: LinkStateView,
    pub(crate) tree: TreeView,
    pub(crate) tree_neighbours: Vec<u32>,
    pub(crate) table_entries: usize,
    pub(crate) forwarded_entries: usize,
    pub(crate) subscriptions: Vec<EntryView>,
    pub(crate) advertisements: Vec<EntryView>,
}

/// This broker.
#[derive(Debug, Serialize)]
pub(crate) struct BrokerView {
    pub(crate) name: String,
    pub(crate) id: u32,
}

/// A live peer link.
#[derive(Debug, Serialize)]
pub(crate) struct PeerView {
    pub(crate) id: u32,
    pub(crate) name: String,
    pub(crate) link: u64,
    pub(crate) remote: String,
    pub(crate) tree_neighbour: bool,
    /// Frames and bytes waiting in the link's outbox.
    pub(crate) queued_frames: usize,
    pub(crate) queued_bytes: usize,
}

/// This broker's own link-state advertisement.
#[derive(Debug, Serialize)]
pub(crate) struct LinkStateView {
    pub(crate) neighbours: Vec<u32>,
}

/// The shared spanning tree.
#[derive(Debug, Serialize)]
pub(crate) struct TreeView {
    pub(crate) root: u32,
    pub(crate) edges: Vec<[u32; 2]>,
}

/// A local subscription or advertisement.
#[derive(Debug, Serialize)]
pub(crate) struct EntryView {
    pub(crate) id: u64,
    pub(crate) filter: String,
    pub(crate) owner: String,
}

fn ids(it: impl Iterator<Item = BrokerId>) -> Vec<u32> {
    it.map(|i| i.0).collect()
}

impl Router {
    /// The view `/routes` shows.
    pub(super) fn view(&self) -> RoutesView {
        let b = &self.broker;
        RoutesView {
            broker: BrokerView {
                name: self.name.clone(),
                id: b.id().0,
            },
            strategy: b.strategy().as_str(),
            peers: self
                .peers
                .iter()
                .map(|(id, p)| {
                    let (queued_frames, queued_bytes) = p.frames.held();
                    PeerView {
                        id: id.0,
                        name: p.name.clone(),
                        link: p.link,
                        remote: p.connection.remote_address().to_string(),
                        tree_neighbour: b.tree_neighbours().contains(id),
                        queued_frames,
                        queued_bytes,
                    }
                })
                .collect(),
            known_brokers: b.known_brokers(),
            link_state: LinkStateView {
                neighbours: ids(b.own_link_state().neighbours.iter().copied()),
            },
            tree: TreeView {
                root: b.tree().root().0,
                edges: b.tree().edges().map(|(x, y)| [x.0, y.0]).collect(),
            },
            tree_neighbours: ids(b.tree_neighbours().iter().copied()),
            table_entries: b.table_entries(),
            forwarded_entries: b.forwarded_entries(),
            subscriptions: self
                .subscriptions
                .iter()
                .map(|(id, s)| EntryView {
                    id: *id,
                    filter: s.filter.source().to_owned(),
                    owner: match &s.owner {
                        Owner::Client(c) => format!("client {c}"),
                        Owner::Static(n) => format!("static {n}"),
                    },
                })
                .collect(),
            advertisements: self
                .advertisements
                .iter()
                .map(|(id, (c, f))| EntryView {
                    id: *id,
                    filter: f.source().to_owned(),
                    owner: format!("client {c}"),
                })
                .collect(),
        }
    }
}
