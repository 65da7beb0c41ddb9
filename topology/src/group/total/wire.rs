//! The bodies total-order cores send each other (rmp-serde; raft messages in our own form).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::raft::WireMessage;
use crate::BrokerId;
use crate::group::Position;

/// A publication on its way from an access broker to the sequencer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Pending<M> {
    pub(crate) producer: String,
    pub(crate) pseq: u64,
    pub(crate) msg: M,
}

/// One body between two brokers' cores of a total-order group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound = "M: Serialize + DeserializeOwned")]
pub(crate) enum Body<M> {
    /// Raft, between replicas.
    Raft(WireMessage),
    /// Access broker → replica: order these (everything pending there, in publish order, up to
    /// a bound).
    Propose {
        /// The publications.
        pubs: Vec<Pending<M>>,
    },
    /// Replica → access broker: committed through these producer sequences.
    Acked {
        /// The replica's term.
        term: u64,
        /// The leader it knows.
        leader: Option<BrokerId>,
        /// `(producer, through)`.
        acks: Vec<(String, u64)>,
    },
    /// Replica → access broker: not the leader; try this one.
    Redirect {
        /// The replica's term.
        term: u64,
        /// The leader it knows.
        leader: Option<BrokerId>,
    },
    /// Reader → replica: stream committed messages from `from` (`None`: from the next one).
    Follow {
        /// The first sequence wanted.
        from: Option<u64>,
    },
    /// Replica → reader: committed messages `start..start + items.len()`.
    Stream {
        /// The replica's term.
        term: u64,
        /// The leader it knows.
        leader: Option<BrokerId>,
        /// The first sequence it still holds: earlier ones are gone there.
        floor: u64,
        /// The last sequence it has applied (0: none).
        through: u64,
        /// The sequence of the first item.
        start: u64,
        /// Positions and messages, contiguous from `start`.
        items: Vec<(Position, M)>,
    },
}

impl<M: Serialize + DeserializeOwned> Body<M> {
    pub(crate) fn encode(&self) -> Vec<u8> {
        rmp_serde::to_vec(self).unwrap_or_default()
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Body<M>, String> {
        rmp_serde::from_slice(bytes).map_err(|e| format!("does not decode: {e}"))
    }
}
