//! Who owns what: clients, their subscriptions and advertisements, and the per-client limits.

use std::collections::HashSet;

use palio_protocol::{ErrorCode, ServerFrame};
use palio_topology::{AdvertisementId, SharedFilter, SubscriptionId};

use super::{ClientId, Refusal, Router};
use crate::delivery::Delivery;
use crate::outbox::Outbox;

/// A connected client.
pub(super) struct ClientEntry {
    /// Its delivery outbox (limits: `limits.subscriber_buffer[_bytes]`).
    pub(super) deliveries: Outbox<Delivery>,
    /// Its control outbox: requests for its subscriptions, replies to its requests.
    pub(super) control: Outbox<ServerFrame>,
    /// To close it under the disconnect policy.
    pub(super) connection: quinn::Connection,
    /// Already being closed: no more deliveries or counting.
    pub(super) closing: bool,
    subscriptions: HashSet<u64>,
    advertisements: HashSet<u64>,
}

/// Who owns a subscription.
pub(super) enum Owner {
    Client(ClientId),
    Static(String),
}

pub(super) struct SubEntry {
    pub(super) owner: Owner,
    pub(super) filter: SharedFilter,
}

impl Router {
    pub(super) fn register_client(
        &mut self,
        client: ClientId,
        deliveries: Outbox<Delivery>,
        control: Outbox<ServerFrame>,
        connection: quinn::Connection,
    ) {
        self.clients.insert(
            client,
            ClientEntry {
                deliveries,
                control,
                connection,
                closing: false,
                subscriptions: HashSet::new(),
                advertisements: HashSet::new(),
            },
        );
    }

    /// A client's connection ended: its subscriptions and advertisements go with it.
    pub(super) fn client_gone(&mut self, client: ClientId) {
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

    pub(super) fn subscribe(
        &mut self,
        client: ClientId,
        filter: SharedFilter,
    ) -> Result<u64, Refusal> {
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

    pub(super) fn advertise(
        &mut self,
        client: ClientId,
        filter: SharedFilter,
    ) -> Result<u64, Refusal> {
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

    /// Drops a subscription the client owns.
    pub(super) fn unsubscribe(
        &mut self,
        client: ClientId,
        subscription: u64,
    ) -> Result<(), Refusal> {
        let owned = self
            .clients
            .get_mut(&client)
            .is_some_and(|c| c.subscriptions.remove(&subscription));
        if !owned {
            return Err((
                ErrorCode::UnknownId,
                format!("no subscription {subscription} on this connection"),
            ));
        }
        self.subscriptions.remove(&subscription);
        let _ = self.broker.unsubscribe(SubscriptionId(subscription));
        Ok(())
    }

    /// Replaces the filter of a subscription the client owns, keeping its id (what the
    /// client's deliveries name). Between the withdrawal and the new entry nothing is routed:
    /// the router does both in one step.
    pub(super) fn refilter(&mut self, client: ClientId, subscription: u64, filter: SharedFilter) {
        let owned = self
            .clients
            .get(&client)
            .is_some_and(|c| c.subscriptions.contains(&subscription));
        let Some(entry) = self.subscriptions.get_mut(&subscription) else {
            return;
        };
        if !owned {
            return;
        }
        let id = SubscriptionId(subscription);
        let _ = self.broker.unsubscribe(id);
        if let Err(e) = self.broker.subscribe(id, filter.clone()) {
            tracing::error!(subscription, error = %e, "re-subscribing with a narrowed filter failed");
        }
        entry.filter = filter;
    }

    /// Withdraws an advertisement the client owns.
    pub(super) fn unadvertise(
        &mut self,
        client: ClientId,
        advertisement: u64,
    ) -> Result<(), Refusal> {
        let owned = self
            .clients
            .get_mut(&client)
            .is_some_and(|c| c.advertisements.remove(&advertisement));
        if !owned {
            return Err((
                ErrorCode::UnknownId,
                format!("no advertisement {advertisement} on this connection"),
            ));
        }
        self.advertisements.remove(&advertisement);
        let _ = self.broker.unadvertise(AdvertisementId(advertisement));
        Ok(())
    }
}
