//! What every task of one broker shares: its identity and start time, the handles of the
//! tasks that own state (router, persist and groups tasks), its metrics, limits and
//! credentials, the configured peers' dial states (written by the dialers, read by the admin
//! listener and client sessions' introspection requests) and the shutdown signal. Peer-only
//! state (the endpoint that dials, peer certificates, live links) lives with the peer links
//! (`peer::Links`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use palio_topology::BrokerId;
use tokio_util::sync::CancellationToken;

use crate::auth::admission::Admission;
use crate::auth::gate::Gate;
use crate::config::Limits;
use crate::dial_states::DialStates;
use crate::groups::GroupHandle;
use crate::metrics::Metrics;
use crate::persist::PersistHandle;
use crate::router::RouterHandle;

/// The routing id of the broker named `name`: FNV-1a over its bytes. Deterministic, so a
/// broker keeps its id across restarts; two names that collide are refused at the peer hello.
pub fn broker_id(name: &str) -> BrokerId {
    let mut h: u32 = 0x811c_9dc5;
    for b in name.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    BrokerId(h)
}

/// What every task of one broker shares.
pub(crate) struct Context {
    /// The broker's name (`--id`).
    pub(crate) name: String,
    /// Its routing id, a hash of the name.
    pub(crate) id: BrokerId,
    /// The router task, sole owner of the routing state.
    pub(crate) router: RouterHandle,
    /// The persist task, sole owner of the log and the durable queues.
    pub(crate) persist: PersistHandle,
    /// The groups task, sole owner of the ordered groups.
    pub(crate) groups: GroupHandle,
    /// Every metric, handed to each component (never global).
    pub(crate) metrics: Metrics,
    /// Frame sizes, queue limits, stall timeout.
    pub(crate) limits: Limits,
    /// Who may connect as a client, and what each principal may do (replaced on reload).
    pub(crate) gate: Arc<Gate>,
    /// Connection counts against their limits.
    pub(crate) admission: Arc<Admission>,
    /// Cancelled when the broker shuts down.
    pub(crate) shutdown: CancellationToken,
    /// When the broker started running (for its uptime).
    pub(crate) started: Instant,
    /// The configured peer addresses and how dialing each goes.
    pub(crate) dial_states: DialStates,
    /// Ids for client connections and peer links.
    next_id: AtomicU64,
    /// Sessions started, for their lanes.
    sessions: AtomicU64,
}

impl Context {
    #[allow(clippy::too_many_arguments)] // one constructor, called once by the server
    pub(crate) fn new(
        name: String,
        id: BrokerId,
        router: RouterHandle,
        persist: PersistHandle,
        groups: GroupHandle,
        metrics: Metrics,
        limits: Limits,
        gate: Arc<Gate>,
        admission: Arc<Admission>,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            name,
            id,
            router,
            persist,
            groups,
            metrics,
            limits,
            gate,
            admission,
            shutdown,
            started: Instant::now(),
            dial_states: Arc::new(Mutex::new(Default::default())),
            next_id: AtomicU64::new(1),
            sessions: AtomicU64::new(0),
        }
    }

    /// A fresh id for a client connection or peer link.
    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The lane of a client session starting now: round-robin over the sessions as they
    /// start, so two consecutive sessions never share one. Its publications travel on this
    /// lane of every peer link (see the `peer` module).
    pub(crate) fn next_lane(&self) -> u8 {
        let n = self.sessions.fetch_add(1, Ordering::Relaxed) % u64::from(crate::wire::LANES);
        u8::try_from(n).unwrap_or(0)
    }
}
