//! This broker's side of groups' clients: their control outboxes, their principals, their
//! members (with filters) and their producers.
//!
//! A member receives only what its client's principal may receive: the subscribe permission
//! is checked here, at the member's access broker, for every message whatever broker it was
//! published at.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use palio_filter::Expr as Filter;
use palio_protocol::{ErrorCode, GroupGap, GroupMessage, ServerFrame};
use palio_topology::group::Delivery;

use super::bounds::{MAX_CLIENT_NAME, cut};
use super::core::Msg;
use crate::auth::Principal;
use crate::outbox::{Outbox, Pushed};
use crate::router::ClientId;

/// Closes a client's connection when its member does not read (`slow_consumer`). A closure
/// rather than the connection, so that the task's logic runs without a network in tests.
pub(super) struct Hangup(Box<dyn Fn() + Send>);

impl Hangup {
    /// Closes `connection` with `slow_consumer`.
    pub(super) fn connection(connection: quinn::Connection) -> Self {
        Self(Box::new(move || {
            connection.close(
                ErrorCode::SlowConsumer.code().into(),
                b"group messages not read",
            );
        }))
    }

    #[cfg(test)]
    pub(super) fn new(f: impl Fn() + Send + 'static) -> Self {
        Self(Box::new(f))
    }
}

impl std::fmt::Debug for Hangup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hangup")
    }
}

/// A connected client.
#[derive(Debug)]
struct Client {
    /// The name in its hello (members are listed by it).
    name: String,
    /// Who it is: what it may use, publish and receive (replaced on a reload).
    principal: Arc<Principal>,
    /// The connection's producer name, if it gave one.
    producer: Option<String>,
    frames: Outbox<ServerFrame>,
    hangup: Hangup,
    /// The kinds of refusal already logged for it: each is logged once per client.
    denied: HashSet<&'static str>,
}

/// A member: a client's subscription to a group.
#[derive(Debug)]
struct Member {
    client: ClientId,
    group: String,
    filter: Option<Filter>,
    name: String,
}

/// Clients, members and producers at this broker.
#[derive(Debug, Default)]
pub(super) struct Locals {
    clients: HashMap<ClientId, Client>,
    members: BTreeMap<u64, Member>,
    next_member: u64,
    /// Producer keys (see [`Locals::producer`]) of connected clients, with how far their
    /// publications are acked.
    producers: HashMap<(String, String), (ClientId, u64)>,
}

impl Locals {
    pub(super) fn client_up(
        &mut self,
        client: ClientId,
        name: String,
        principal: Arc<Principal>,
        frames: Outbox<ServerFrame>,
        hangup: Hangup,
    ) {
        let c = Client {
            name,
            principal,
            producer: None,
            frames,
            hangup,
            denied: HashSet::new(),
        };
        self.clients.insert(client, c);
    }

    /// The principal of a connected client.
    pub(super) fn principal(&self, client: ClientId) -> Option<&Arc<Principal>> {
        self.clients.get(&client).map(|c| &c.principal)
    }

    /// A reload gave the client a new principal; returns its members, `(id, group)`, for the
    /// task to drop those of groups it may no longer use.
    pub(super) fn set_principal(
        &mut self,
        client: ClientId,
        principal: Arc<Principal>,
    ) -> Vec<(u64, String)> {
        let Some(c) = self.clients.get_mut(&client) else {
            return Vec::new();
        };
        c.principal = principal;
        self.members
            .iter()
            .filter(|(_, m)| m.client == client)
            .map(|(id, m)| (*id, m.group.clone()))
            .collect()
    }

    /// Logs a refusal of `client`'s, once per client and `kind` (no secrets: the principal's
    /// name and what was refused).
    pub(super) fn denied(&mut self, client: ClientId, kind: &'static str, why: &str) {
        if let Some(c) = self.clients.get_mut(&client)
            && c.denied.insert(kind)
        {
            tracing::info!(
                client,
                principal = %c.principal.name,
                kind,
                "permission denied: {why} (logged once per client and kind)"
            );
        }
    }

    /// The client named its connection's producer.
    pub(super) fn named_producer(&mut self, client: ClientId, producer: String) {
        if let Some(c) = self.clients.get_mut(&client) {
            c.producer = Some(producer);
        }
    }

    /// Forgets a client; returns the groups it had members in.
    pub(super) fn client_gone(&mut self, client: ClientId) -> Vec<String> {
        self.clients.remove(&client);
        self.producers.retain(|_, (c, _)| *c != client);
        let mut groups: Vec<String> = Vec::new();
        self.members.retain(|_, m| {
            if m.client == client {
                groups.push(m.group.clone());
                false
            } else {
                true
            }
        });
        groups.sort();
        groups.dedup();
        groups
    }

    /// The key a core knows a client's publications to `group` by: unique to the connection,
    /// so that only the broker's own retries are de-duplicated.
    pub(super) fn producer(&mut self, group: &str, broker: &str, client: ClientId) -> String {
        let named = self
            .clients
            .get(&client)
            .and_then(|c| c.producer.as_deref());
        let key = format!("{}/{broker}/{client}", named.unwrap_or("anon"));
        self.producers
            .entry((group.to_owned(), key.clone()))
            .or_insert((client, 0));
        key
    }

    /// Adds a member; returns its id.
    pub(super) fn join(&mut self, client: ClientId, group: &str, filter: Option<Filter>) -> u64 {
        self.next_member += 1;
        let id = self.next_member;
        let name = self.clients.get(&client).map_or_else(
            || format!("client{client}"),
            |c| cut(&c.name, MAX_CLIENT_NAME).to_owned(),
        );
        self.members.insert(
            id,
            Member {
                client,
                group: group.to_owned(),
                filter,
                name: format!("{name}#{id}"),
            },
        );
        id
    }

    /// Removes `client`'s member `id`; returns its group.
    pub(super) fn leave(&mut self, client: ClientId, id: u64) -> Option<String> {
        match self.members.get(&id) {
            Some(m) if m.client == client => self.members.remove(&id).map(|m| m.group),
            _ => None,
        }
    }

    /// How many members `group` has here.
    pub(super) fn count(&self, group: &str) -> usize {
        self.members.values().filter(|m| m.group == group).count()
    }

    /// The names of `group`'s members here.
    pub(super) fn names(&self, group: &str, broker: &str) -> Vec<String> {
        self.members
            .values()
            .filter(|m| m.group == group)
            .map(|m| format!("{}@{broker}", m.name))
            .collect()
    }

    /// Whether `group` has members here.
    pub(super) fn has_members(&self, group: &str) -> bool {
        self.members.values().any(|m| m.group == group)
    }

    /// Drops every member of `group` (it was removed).
    pub(super) fn drop_group(&mut self, group: &str) {
        self.members.retain(|_, m| m.group != group);
    }

    /// Delivers `d` to the members of `group` whose filter it passes and whose principal may
    /// receive it. A message a member may not receive is left out of its stream as one its
    /// filter refuses is: not a gap; the order of the others holds.
    pub(super) fn deliver(&mut self, group: &str, d: &Delivery<Msg>) {
        let clock = d
            .clock
            .as_ref()
            .map(|c| c.0.iter().map(|(b, n)| (b.0, *n)).collect());
        let targets: Vec<(u64, ClientId)> = self
            .members
            .iter()
            .filter(|(_, m)| m.group == group)
            .filter(|(_, m)| {
                m.filter
                    .as_ref()
                    .is_none_or(|f| f.matches(&d.msg.attributes))
            })
            .filter(|(_, m)| {
                self.clients
                    .get(&m.client)
                    .is_some_and(|c| c.principal.may_receive(&d.msg.attributes))
            })
            .map(|(id, m)| (*id, m.client))
            .collect();
        for (member, client) in targets {
            let frame = ServerFrame::GroupMessage(GroupMessage {
                member,
                group: group.to_owned(),
                epoch: d.position.map(|p| p.epoch),
                seq: d.position.map(|p| p.seq),
                clock: clock.clone(),
                attributes: d.msg.attributes.clone(),
                payload: d.msg.payload.clone(),
            });
            let size =
                128 + d.msg.payload.len() + crate::frame_size::attributes_size(&d.msg.attributes);
            self.send(client, frame, size);
        }
    }

    /// Tells the members of `group` that `count` messages are lost.
    pub(super) fn gap(&mut self, group: &str, count: u64) {
        let targets: Vec<(u64, ClientId)> = self
            .members
            .iter()
            .filter(|(_, m)| m.group == group)
            .map(|(id, m)| (*id, m.client))
            .collect();
        for (member, client) in targets {
            let frame = ServerFrame::GroupGap(GroupGap {
                member,
                group: group.to_owned(),
                count,
            });
            self.send(client, frame, 128);
        }
    }

    /// Acks a producer's publications; returns how many are newly acked.
    pub(super) fn acked(&mut self, group: &str, producer: &str, through: u64) -> u64 {
        let Some((client, done)) = self
            .producers
            .get_mut(&(group.to_owned(), producer.to_owned()))
        else {
            return 0;
        };
        let client = *client;
        let new = through.saturating_sub(*done);
        *done = (*done).max(through);
        let frame = ServerFrame::GroupAcked {
            group: group.to_owned(),
            through,
        };
        self.send(client, frame, 128);
        new
    }

    /// Sends a frame to a client (an answer, or a refusal).
    pub(super) fn send(&mut self, client: ClientId, frame: ServerFrame, size: usize) {
        let Some(c) = self.clients.get(&client) else {
            return;
        };
        if let Pushed::Full = c.frames.push(frame, size) {
            // A member that does not read its group messages is cut, as a durable consumer
            // is: it holds nobody else back.
            tracing::info!(client, "group member too slow: disconnecting");
            (c.hangup.0)();
        }
    }
}
