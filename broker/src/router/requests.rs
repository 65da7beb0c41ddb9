//! Request/reply: a request is routed by content like a notification, to every subscription
//! that matches it anywhere in the network; replies go straight back to the requester.
//!
//! The requester's access broker (the *origin*) keeps the request's [`Pending`] entry: which
//! client asked, and how many brokers it is still waiting to hear from. Every broker a request
//! reaches, other than the origin, hands it to its local matching subscriptions, forwards it
//! on along the tree, and sends [`PeerMessage::Reached`] back toward the origin saying how many
//! subscriptions it reached and how many peers it forwarded to. Once every branch has answered
//! and nobody got the request, the origin answers `no_responders` at once, without waiting
//! for the requester's timeout. The first reply settles the request; later ones are dropped.
//!
//! Replies, `Reached` and the requests themselves are small and rare next to publications, so
//! they go into the outboxes without holding anyone back (an outbox never drops). A request
//! forwarded to several peers is one shared message, encoded once for all of them.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use palio_filter::Event;
use palio_protocol::{ErrorCode, ReplyTo, ServerFrame};
use palio_topology::{BrokerId, Interface, SubscriptionId};
use ring::rand::SecureRandom;

use super::owners::Owner;
use super::{ClientId, Router};
use crate::wire::{PeerMessage, PeerOut, SharedMessage};

/// The longest a broker keeps a request waiting for replies.
const MAX_TIMEOUT: Duration = Duration::from_secs(3600);

/// Requests waiting for a reply at this broker, at most; more are refused (`limit_exceeded`).
const MAX_PENDING: usize = 65_536;

/// A request of one of this broker's clients, waiting for its reply.
#[derive(Debug)]
struct Pending {
    client: ClientId,
    /// The client's request id.
    request: u64,
    /// Brokers the request was forwarded to that have not said whom they reached.
    outstanding: u64,
    /// Subscriptions it reached so far.
    responders: u64,
    deadline: Instant,
}

/// The requests this broker originated.
#[derive(Debug)]
pub(super) struct Requests {
    pending: HashMap<u64, Pending>,
    rng: ring::rand::SystemRandom,
    /// Ids taken when the system's randomness fails (see [`Requests::fresh_id`]).
    fallback: u64,
    /// When expired requests are next looked for (at most once a second, on a new request).
    next_sweep: Instant,
}

impl Default for Requests {
    fn default() -> Self {
        Self {
            pending: HashMap::new(),
            rng: ring::rand::SystemRandom::new(),
            fallback: 0,
            next_sweep: Instant::now(),
        }
    }
}

impl Requests {
    /// A fresh random request id: a reply can only be aimed at a request one was shown. The
    /// system's randomness does not fail on any platform the broker runs on; if it did, ids
    /// would come from a counter: guessable, but still distinct, so the caller's search for an
    /// id not in use ends.
    fn fresh_id(&mut self) -> u64 {
        let mut bytes = [0u8; 8];
        if self.rng.fill(&mut bytes).is_ok() {
            return u64::from_le_bytes(bytes);
        }
        self.fallback = self.fallback.wrapping_add(1);
        self.fallback
    }
}

/// One request on its way: what the routing needs at every broker.
pub(crate) struct RequestIn {
    pub(crate) origin: BrokerId,
    pub(crate) id: u64,
    pub(crate) attributes: Event,
    pub(crate) payload: Vec<u8>,
}

impl Router {
    /// A local client's request: routed, and remembered until its reply or its timeout.
    pub(super) fn request(
        &mut self,
        client: ClientId,
        request: u64,
        timeout: Duration,
        attributes: Event,
        payload: Vec<u8>,
    ) {
        let now = Instant::now();
        if now >= self.requests.next_sweep || self.requests.pending.len() >= MAX_PENDING {
            self.expire_requests(now);
            self.requests.next_sweep = now + Duration::from_secs(1);
        }
        if self.requests.pending.len() >= MAX_PENDING {
            self.count_request("refused");
            self.answer_error(
                client,
                request,
                ErrorCode::LimitExceeded,
                format!("too many requests waiting for replies at this broker ({MAX_PENDING})"),
            );
            return;
        }
        let mut id = self.requests.fresh_id();
        while self.requests.pending.contains_key(&id) {
            id = self.requests.fresh_id();
        }
        let msg = RequestIn {
            origin: self.broker.id(),
            id,
            attributes,
            payload,
        };
        let (responders, forwarded) = self.spread(msg, Interface::Local);
        if responders == 0 && forwarded == 0 {
            self.no_responders(client, request);
            return;
        }
        self.requests.pending.insert(
            id,
            Pending {
                client,
                request,
                outstanding: u64::from(forwarded),
                responders: u64::from(responders),
                deadline: now + timeout.min(MAX_TIMEOUT),
            },
        );
    }

    /// A request from a peer: delivered here, forwarded on, and reported back to its origin.
    pub(super) fn peer_request(&mut self, from: BrokerId, msg: RequestIn) {
        let (origin, id) = (msg.origin, msg.id);
        let (responders, forwarded) = self.spread(msg, Interface::Peer(from));
        self.toward(
            origin,
            PeerMessage::Reached {
                origin,
                id,
                responders,
                forwarded,
            },
        );
    }

    /// A broker reached by one of our requests (or on the way to its origin) says whom.
    pub(super) fn reached(&mut self, origin: BrokerId, id: u64, responders: u32, forwarded: u32) {
        if origin != self.broker.id() {
            self.toward(
                origin,
                PeerMessage::Reached {
                    origin,
                    id,
                    responders,
                    forwarded,
                },
            );
            return;
        }
        let Some(p) = self.requests.pending.get_mut(&id) else {
            return;
        };
        p.outstanding = (p.outstanding + u64::from(forwarded)).saturating_sub(1);
        p.responders += u64::from(responders);
        if p.outstanding == 0 && p.responders == 0 {
            let p = self.requests.pending.remove(&id).expect("present above");
            self.no_responders(p.client, p.request);
        }
    }

    /// A reply, from a local responder or a peer: to the requester if it is ours, else on
    /// toward its origin.
    pub(super) fn reply(&mut self, to: ReplyTo, attributes: Event, payload: Vec<u8>) {
        let origin = BrokerId(to.broker);
        if origin != self.broker.id() {
            self.toward(
                origin,
                PeerMessage::Reply {
                    origin,
                    id: to.id,
                    attributes,
                    payload,
                },
            );
            return;
        }
        let Some(p) = self.requests.pending.remove(&to.id) else {
            return; // too late, or a second reply
        };
        if p.deadline <= Instant::now() {
            self.count_request("expired");
            return;
        }
        self.count_request("replied");
        self.answer(
            p.client,
            ServerFrame::Replied {
                request: p.request,
                attributes,
                payload,
            },
        );
    }

    /// Forgets the requests whose requester has stopped waiting.
    pub(super) fn expire_requests(&mut self, now: Instant) {
        let before = self.requests.pending.len();
        self.requests.pending.retain(|_, p| p.deadline > now);
        let expired = before - self.requests.pending.len();
        if expired > 0 {
            self.metrics
                .requests
                .with_label_values(&["expired"])
                .inc_by(expired as u64);
        }
    }

    fn count_request(&self, outcome: &str) {
        self.metrics.requests.with_label_values(&[outcome]).inc();
    }

    /// A client's connection ended: its requests are forgotten.
    pub(super) fn requests_gone(&mut self, client: ClientId) {
        self.requests.pending.retain(|_, p| p.client != client);
    }

    /// Hands a request to the local subscriptions that match it and forwards it to the tree
    /// neighbours that want it. Returns how many clients' subscriptions got it and how many
    /// peers it went to.
    fn spread(&mut self, msg: RequestIn, from: Interface) -> (u32, u32) {
        let targets = self.broker.targets(&msg.attributes, from);
        let reply_to = ReplyTo {
            broker: msg.origin.0,
            id: msg.id,
        };
        let mut responders = 0u32;
        for &s in &targets.local {
            if self.deliver_request(s, reply_to, &msg) {
                responders += 1;
            }
        }
        let peers: Vec<_> = targets
            .peers
            .iter()
            .filter_map(|p| self.peers.get(p))
            .collect();
        let forwarded = u32::try_from(peers.len()).unwrap_or(u32::MAX);
        if !peers.is_empty() {
            // One message, encoded once, for every peer it goes to.
            let shared = SharedMessage::new(PeerMessage::Request {
                origin: msg.origin,
                id: msg.id,
                attributes: msg.attributes,
                payload: msg.payload,
            });
            for peer in peers {
                let out = shared.share();
                let size = out.size();
                peer.frames.push(out, size);
            }
        }
        (responders, forwarded)
    }

    /// Puts a request on the control stream of the client owning subscription `s`; false if
    /// no client can answer it there (a static subscription, or a connection closing).
    fn deliver_request(&mut self, s: SubscriptionId, reply_to: ReplyTo, msg: &RequestIn) -> bool {
        let Some(Owner::Client(client)) = self.subscriptions.get(&s.0).map(|e| &e.owner) else {
            return false;
        };
        let client = *client;
        if self.clients.get(&client).is_none_or(|c| c.closing) {
            return false;
        }
        self.answer(
            client,
            ServerFrame::Request {
                subscription: s.0,
                reply_to,
                attributes: msg.attributes.clone(),
                payload: msg.payload.clone(),
            },
        )
    }

    /// Sends `msg` one hop toward `origin` on the tree; dropped if the tree has no way there
    /// (the requester then times out).
    fn toward(&mut self, origin: BrokerId, msg: PeerMessage) {
        let hop = self.hops.borrow().get(&origin).copied();
        let Some(peer) = hop.and_then(|h| self.peers.get(&h)) else {
            tracing::debug!(%origin, "no route toward a request's origin: dropped");
            return;
        };
        let out = PeerOut::Message(msg);
        let size = out.size();
        peer.frames.push(out, size);
    }

    fn no_responders(&mut self, client: ClientId, request: u64) {
        self.count_request("no_responders");
        self.answer_error(
            client,
            request,
            ErrorCode::NoResponders,
            "no responders: no subscription matches the request".to_owned(),
        );
    }

    fn answer_error(&mut self, client: ClientId, request: u64, code: ErrorCode, message: String) {
        self.answer(
            client,
            ServerFrame::Error {
                request: Some(request),
                code,
                message,
            },
        );
    }

    /// Queues `frame` on a client's control stream; false if the client is gone.
    fn answer(&mut self, client: ClientId, frame: ServerFrame) -> bool {
        let Some(c) = self.clients.get(&client) else {
            return false;
        };
        let size = crate::frame_size::control_frame_size(&frame);
        !matches!(c.control.push(frame, size), crate::outbox::Pushed::Closed)
    }
}
