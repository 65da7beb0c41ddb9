//! Who each connected client is, and which queues its principal may use.
//!
//! The session authenticates a client and hands its [`Principal`] to the persist task with the
//! client's `ClientUp` ([`Engine::client_up`]), and a new one when a credentials reload changes
//! it ([`Engine::set_principal`]). A queue belongs to the principal that added it: only that
//! principal, or one with `admin = true`, may consume from it, ack or nak in it, inspect it or
//! remove it. A queue added before queues had owners has none and is everyone's
//! ([`Principal::may_use`]). Producers are owned the same way (`producers`).
//!
//! A refusal is `permission_denied`, counted by action (`queue`, `producer`: the `action` label
//! of `palio_permission_denied_total`), and logged once per client and action, with the
//! principal's name and never a secret.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use palio_protocol::ErrorCode;

use super::engine::{ClientId, Engine, Journal, Refusal};
use crate::auth::Principal;

/// What the engine keeps of a connected client.
#[derive(Debug)]
pub(crate) struct ClientState {
    /// Who it is, as its session last told.
    pub(super) principal: Arc<Principal>,
    /// Its attached consumers (`limits.max_consumers_per_client`).
    pub(super) consumers: usize,
    /// Causes of refusals already logged for it: each is logged once per connection.
    logged: BTreeSet<&'static str>,
}

/// What a permission refusal was about: the `action` label of its counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Using a durable queue (consume, fetch, ack, nak, info, remove, add over another's).
    Queue,
    /// Naming a producer another principal owns.
    Producer,
}

impl Action {
    /// The metric label.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Action::Queue => "queue",
            Action::Producer => "producer",
        }
    }
}

impl Engine {
    /// A client connected as `principal`: call before its first request.
    pub(crate) fn client_up(&mut self, client: ClientId, principal: Arc<Principal>) {
        self.clients.insert(
            client,
            ClientState {
                principal,
                consumers: 0,
                logged: BTreeSet::new(),
            },
        );
    }

    /// A reload gave connected `client` a new principal (or new rights). Its consumers of
    /// queues it may no longer use are detached, their unacked messages ready again at once;
    /// requests naming them are then answered `queue_not_found`.
    pub(crate) fn set_principal(
        &mut self,
        j: &mut impl Journal,
        now: Instant,
        client: ClientId,
        principal: Arc<Principal>,
    ) {
        let Some(state) = self.clients.get_mut(&client) else {
            return;
        };
        state.principal = principal;
        let mut lost: Vec<u64> = self
            .consumers
            .iter()
            .filter(|(_, c)| c.client == client && !self.may_use(client, c.lane.queue))
            .map(|(id, _)| *id)
            .collect();
        lost.sort_unstable();
        for consumer in lost {
            self.detach(j, now, consumer);
            self.log_once(client, "reload", || {
                tracing::info!(
                    client,
                    consumer,
                    "a reload took a queue from this client: its consumer is detached"
                );
            });
        }
    }

    /// The principal of `client`, if it is connected.
    pub(super) fn principal(&self, client: ClientId) -> Option<&Arc<Principal>> {
        self.clients.get(&client).map(|c| &c.principal)
    }

    /// Whether `client` may use the local queue `key` (false if either is unknown).
    pub(super) fn may_use(&self, client: ClientId, key: u64) -> bool {
        match (self.principal(client), self.queues.get(&key)) {
            (Some(p), Some(q)) => p.may_use(&q.owner),
            _ => false,
        }
    }

    /// `Ok` if `client` may use queue `key`; otherwise the refusal, counted and logged.
    pub(super) fn check_queue(&mut self, client: ClientId, key: u64) -> Result<(), Refusal> {
        if self.may_use(client, key) {
            return Ok(());
        }
        let name = self
            .queues
            .get(&key)
            .map(|q| q.name.clone())
            .unwrap_or_default();
        Err(self.deny(
            client,
            Action::Queue,
            format!("queue {name:?} is not yours: only its owner and admins may use it"),
        ))
    }

    /// A `permission_denied` refusal of `client` for `action`, counted and logged once per
    /// client and action.
    pub(super) fn deny(&mut self, client: ClientId, action: Action, message: String) -> Refusal {
        match action {
            Action::Queue => self.stats.denied_queue += 1,
            Action::Producer => self.stats.denied_producer += 1,
        }
        let principal = self
            .principal(client)
            .map(|p| p.name.clone())
            .unwrap_or_else(|| "(not connected)".into());
        self.log_once(client, action.as_str(), || {
            tracing::info!(
                client,
                %principal,
                action = action.as_str(),
                reason = %message,
                "permission denied"
            );
        });
        (ErrorCode::PermissionDenied, message)
    }

    /// Runs `log` the first time `cause` comes up for `client` on this connection.
    pub(super) fn log_once(&mut self, client: ClientId, cause: &'static str, log: impl FnOnce()) {
        if let Some(c) = self.clients.get_mut(&client)
            && c.logged.insert(cause)
        {
            log();
        }
    }
}
