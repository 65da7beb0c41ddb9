//! What `/routes` and a client's `Routes` request show of the router: a typed view
//! ([`RoutesInfo`], the protocol's), turned into JSON by the admin listener and into a frame by
//! client sessions. Its routing tables are listed within a [`Budget`] (the `listing` module),
//! which also applies the disclosure policy.

use std::collections::HashMap;

use palio_protocol::{
    BrokerRef, LinkInfo, LinkStateInfo, Listing, LocalEntry, RoutesInfo, TreeInfo,
};
use palio_topology::{BrokerId, SharedFilter, TableKind};

use super::Router;
use super::listing::{Budget, PER_TABLE};
use super::owners::Owner;
use crate::auth::RoutesDetail;
use crate::outbox::Outbox;

fn ids(it: impl Iterator<Item = BrokerId>) -> Vec<u32> {
    it.map(|i| i.0).collect()
}

fn count(n: usize) -> u64 {
    n as u64
}

/// A table of filters, listed as their source texts.
fn filters<'a>(
    budget: &mut Budget,
    it: impl ExactSizeIterator<Item = &'a SharedFilter>,
) -> Listing<String> {
    budget.list(it.map(|f| f.source().to_owned()), String::len)
}

/// Local entries, the oldest (smallest ids) first. Only those a table may list are sorted
/// and built, and none for a summary: a broker with 100k subscriptions answers quickly.
fn local<V>(
    budget: &mut Budget,
    map: &HashMap<u64, V>,
    entry: impl Fn(u64, &V) -> LocalEntry,
) -> Listing<LocalEntry> {
    if budget.detail() == RoutesDetail::Summary {
        return Listing::hidden(map.len() as u64);
    }
    let mut oldest: Vec<(&u64, &V)> = map.iter().collect();
    if oldest.len() > PER_TABLE {
        oldest.select_nth_unstable_by_key(PER_TABLE, |(id, _)| **id);
        oldest.truncate(PER_TABLE);
    }
    oldest.sort_unstable_by_key(|(id, _)| **id);
    budget.list_first(
        map.len(),
        oldest.into_iter().map(|(id, v)| entry(*id, v)),
        |e| e.filter.len() + e.owner.len(),
    )
}

impl Router {
    /// The routing state, its tables listed within `budget`. `dialed` is left empty: the
    /// dial states are not the router's.
    pub(super) fn view(&self, mut budget: Budget) -> RoutesInfo {
        let b = &self.broker;
        let budget = &mut budget;
        let peers = self
            .peers
            .iter()
            .map(|(id, p)| {
                let (queued_frames, queued_bytes) = p
                    .lanes
                    .iter()
                    .chain([&p.frames])
                    .map(Outbox::held)
                    .fold((0, 0), |(f, b), (f2, b2)| (f + f2, b + b2));
                let (subs, advs) = (TableKind::Subscriptions, TableKind::Advertisements);
                LinkInfo {
                    id: id.0,
                    name: p.name.clone(),
                    link: p.link,
                    remote: p.connection.remote_address().to_string(),
                    tree_neighbour: b.tree_neighbours().contains(id),
                    queued_frames: count(queued_frames),
                    queued_bytes: count(queued_bytes),
                    rtt_us: u64::try_from(p.connection.rtt().as_micros()).unwrap_or(u64::MAX),
                    subscriptions: filters(budget, b.held_from(subs, *id)),
                    advertisements: filters(budget, b.held_from(advs, *id)),
                    forwarded_subscriptions: filters(budget, b.forwarded_to(subs, *id)),
                    forwarded_advertisements: filters(budget, b.forwarded_to(advs, *id)),
                }
            })
            .collect();
        let subscriptions = local(budget, &self.subscriptions, |id, s| LocalEntry {
            id,
            filter: s.filter.source().to_owned(),
            owner: match &s.owner {
                Owner::Client(c) => format!("client {c}"),
                Owner::Static(n) => format!("static {n}"),
            },
        });
        let advertisements = local(budget, &self.advertisements, |id, (c, f)| LocalEntry {
            id,
            filter: f.source().to_owned(),
            owner: format!("client {c}"),
        });
        RoutesInfo {
            broker: BrokerRef {
                name: self.name.clone(),
                id: b.id().0,
            },
            strategy: b.strategy().as_str().to_owned(),
            detail: budget.detail().as_str().to_owned(),
            peers,
            dialed: Vec::new(),
            known_brokers: count(b.known_brokers()),
            link_state: LinkStateInfo {
                neighbours: ids(b.own_link_state().neighbours.iter().copied()),
            },
            tree: TreeInfo {
                root: b.tree().root().0,
                edges: b.tree().edges().map(|(x, y)| [x.0, y.0]).collect(),
            },
            tree_neighbours: ids(b.tree_neighbours().iter().copied()),
            table_entries: count(b.table_entries()),
            forwarded_entries: count(b.forwarded_entries()),
            clients: count(self.clients.len()),
            subscriptions,
            advertisements,
        }
    }
}
