//! The configured peer addresses and how dialing each goes: written by the dialers
//! (`peer::dial`), kept in the broker's `Context`, read by `/routes` and clients'
//! introspection requests. Its own module so that `context` need not depend on `peer`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use palio_protocol::{BrokerRef, DialInfo};
use palio_topology::BrokerId;

/// The state of one configured peer address, for `/routes`.
#[derive(Debug, Clone, Default)]
pub(crate) struct DialState {
    pub(crate) state: &'static str,
    pub(crate) peer: Option<(BrokerId, String)>,
    pub(crate) last_error: Option<String>,
    pub(crate) attempts: u64,
}

/// Configured peer addresses and their state.
pub(crate) type DialStates = Arc<Mutex<BTreeMap<String, DialState>>>;

/// The configured peer addresses and their states, in address order.
pub(crate) fn snapshot(states: &DialStates) -> Vec<DialInfo> {
    let states = states.lock().map(|s| s.clone()).unwrap_or_default();
    states
        .into_iter()
        .map(|(address, s)| DialInfo {
            address,
            state: s.state.to_owned(),
            peer: s.peer.map(|(id, name)| BrokerRef { id: id.0, name }),
            attempts: s.attempts,
            last_error: s.last_error,
        })
        .collect()
}
