//! Peer links: accepting and dialing other brokers, the hello exchange, and the link task.
//!
//! A link is one QUIC connection (mutual TLS, ALPN `palio-peer/1`) with one bidirectional
//! stream opened by the dialer, the control stream, and lane streams each way. Each side
//! sends a `PeerHello`; a broker name that the sender's
//! certificate does not name (its `urn:palio:broker:` SAN) is refused with `unauthenticated`,
//! and a broker id equal to ours, or one already used by a connected broker of another name,
//! with `id_collision`.
//! Then the router is told the link is up, each side opens as many unidirectional lane streams
//! as both hellos' lane counts allow (the smaller: 0 with a broker from before lanes), and the
//! link task carries frames: received ones to the router (or the persist or groups task), in
//! order per stream; queued ones from the router to the streams. Best-effort notifications
//! travel on the lanes, everything else on the control stream. A notification keeps its lane
//! on every hop and a publisher's notifications all take one lane (its session's, given
//! round-robin), so each publisher's order is kept end to end, while publishers on different
//! lanes do not wait on each other. When any stream or the connection fails, or a writer
//! stalls, the router is told the link is down (once); a dialer reconnects with exponential
//! backoff (attempts start 100 ms apart, doubling to 5 s; an attempt that timed out has already
//! waited its share, so a dead peer is retried back to back, once per handshake timeout, and a
//! restarted one is found within seconds). If two brokers dial each other, the newer link
//! replaces the older one and the dialer whose link was replaced waits while a link to that
//! peer is up.
//!
//! - [`handshake`]: the certificate checks, the hellos, registering the link with the router.
//! - [`identity`]: the broker names a peer's certificate carries, checked against its hello.
//! - [`dial`]: keeping a configured peer address linked (redial with backoff).
//! - [`link`]: the link task: the control stream's reader, the writers, the link's end.
//! - [`lanes`]: opening and accepting the lane streams, and each lane's paced reader.
//! - What the writer puts on the wire, each notification encoded once per hop, is
//!   `crate::wire::out`.
//!
//! Peer-only state lives here: the live links. The configured addresses' dial states, which
//! the dialers write, are in the broker's `Context` (the admin listener and client sessions
//! read them; their type is `crate::dial_states`).

mod dial;
mod handshake;
mod identity;
mod lanes;
mod link;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use palio_topology::BrokerId;

pub(crate) use self::dial::dial_loop;
pub(crate) use self::handshake::serve_accepted;
pub(crate) use self::identity::warn_unless_named;
use crate::context::Context;
use crate::wire::PeerHello;

/// The peer links' own state, beside the broker's [`Context`] (which it derefs to).
pub(crate) struct Links {
    /// The broker's shared context.
    pub(crate) ctx: Arc<Context>,
    /// This broker's life, larger after each restart (sent in hellos).
    pub(crate) incarnation: u64,
    /// Dials peers (its default client config presents our certificate).
    pub(crate) endpoint: quinn::Endpoint,
    /// The name peer certificates are checked against.
    pub(crate) peer_server_name: String,
    /// The CA(s) peer certificates must chain to.
    pub(crate) peer_roots: Arc<rustls::RootCertStore>,
    /// The live link to each peer, whoever dialed it.
    pub(crate) live_links: LiveLinks,
}

impl std::ops::Deref for Links {
    type Target = Context;

    fn deref(&self) -> &Context {
        &self.ctx
    }
}

/// Live links: peer → link number (to tell whether a dialer's peer is already linked).
pub(crate) type LiveLinks = Arc<Mutex<HashMap<BrokerId, u64>>>;

/// Records in `live_links` that `link` to `hello`'s broker is up (`up`) or has ended, and
/// updates `palio_peer_up` and `palio_peer_link_up` from the result. Both happen under the
/// `live_links` lock, so that an old link ending after its replacement started cannot mark
/// the peer down: the gauges always say whether *some* link to the peer is up.
pub(super) fn track_link(shared: &Links, hello: &PeerHello, link: u64, up: bool) {
    let Ok(mut live) = shared.live_links.lock() else {
        return;
    };
    if up {
        live.insert(hello.id, link);
    } else if live.get(&hello.id) == Some(&link) {
        live.remove(&hello.id);
    }
    let value = i64::from(live.contains_key(&hello.id));
    let m = &shared.metrics;
    m.peer_up.with_label_values(&[&hello.name]).set(value);
    // Configured addresses known to lead to this broker (lock order: live_links, dial_states).
    if let Ok(states) = shared.dial_states.lock() {
        for (addr, state) in states.iter() {
            if state.peer.as_ref().is_some_and(|(id, _)| *id == hello.id) {
                m.peer_link_up.with_label_values(&[addr]).set(value);
            }
        }
    }
}
