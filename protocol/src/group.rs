//! The types of ordered group multicast.
//!
//! # Model
//!
//! - A **group** is named network-wide and has an ordering mode fixed at creation
//!   ([`ClientFrame::GroupCreate`]): `fifo` (per publisher), `causal` (happened-before, by
//!   vector clocks over brokers) or `total` (one order, `(epoch, seq)` positions from a
//!   sequencer replicated with Raft).
//! - A client **joins** a group with an optional filter ([`ClientFrame::GroupJoin`], answered
//!   by [`ServerFrame::Joined`]) and receives [`ServerFrame::GroupMessage`]s on the control
//!   stream, in the group's order, from the point it joined.
//! - A client **publishes** to a group with [`ClientFrame::GroupPublish`] and increasing
//!   sequence numbers; acks ([`ServerFrame::GroupAcked`]) are cumulative per group and come in
//!   publish order. For a causal group the client passes the clock of what it delivered
//!   ([`GroupMessage::clock`], merged) as the publication's dependencies.
//!
//! [`ClientFrame::GroupCreate`]: crate::ClientFrame::GroupCreate
//! [`ClientFrame::GroupJoin`]: crate::ClientFrame::GroupJoin
//! [`ClientFrame::GroupPublish`]: crate::ClientFrame::GroupPublish
//! [`ServerFrame::Joined`]: crate::ServerFrame::Joined
//! [`ServerFrame::GroupMessage`]: crate::ServerFrame::GroupMessage
//! [`ServerFrame::GroupAcked`]: crate::ServerFrame::GroupAcked

use serde::{Deserialize, Serialize};

use crate::frames::Attributes;

/// The longest group name, in bytes.
pub const MAX_GROUP_NAME: usize = 64;

/// Whether `name` is a valid group name: 1–64 ASCII letters, digits, `_`, `-` and `.`.
pub fn valid_group_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_GROUP_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

/// A vector clock over brokers: `(broker id, count)` pairs, sorted by broker id.
pub type Clock = Vec<(u32, u64)>;

/// A group as the network knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupInfo {
    /// The group's name.
    pub name: String,
    /// `fifo`, `causal` or `total`.
    pub order: String,
    /// The members known to the answering broker, as `client@broker` names.
    pub members: Vec<String>,
    /// Total order: the current epoch as the answering broker knows it.
    pub epoch: Option<u64>,
    /// Total order: the sequencer's broker name (`--id`), if one is known.
    pub sequencer: Option<String>,
    /// Total order: the replica brokers' names.
    pub replicas: Vec<String>,
    /// The broker where the group was created.
    pub creator: String,
    /// The principal that created it: only it (or an admin) may use the group. Empty for a
    /// group made before groups had owners (everyone may use it), and from older brokers.
    #[serde(default)]
    pub owner: String,
}

/// A message of a group delivered to a member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMessage {
    /// The member it is for (see [`ServerFrame::Joined`](crate::ServerFrame::Joined)).
    pub member: u64,
    /// The group's name.
    pub group: String,
    /// Total order: the epoch of its position.
    pub epoch: Option<u64>,
    /// Total order: its sequence number in the group.
    pub seq: Option<u64>,
    /// Causal order: its vector clock (pass it back, merged, as the dependencies of what this
    /// client publishes next).
    pub clock: Option<Clock>,
    /// The attributes.
    pub attributes: Attributes,
    /// The payload.
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
}

/// Messages a member will never get: their origin lost them. Delivered at the place where
/// they would have been.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupGap {
    /// The member it is for.
    pub member: u64,
    /// The group's name.
    pub group: String,
    /// How many messages are lost.
    pub count: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{decode, encode};

    /// A group as brokers described it before groups had owners.
    #[derive(Serialize)]
    struct InfoBeforeOwners {
        name: String,
        order: String,
        members: Vec<String>,
        epoch: Option<u64>,
        sequencer: Option<String>,
        replicas: Vec<String>,
        creator: String,
    }

    #[test]
    fn a_group_info_without_an_owner_decodes_with_an_empty_one() {
        let old = InfoBeforeOwners {
            name: "g".into(),
            order: "fifo".into(),
            members: Vec::new(),
            epoch: None,
            sequencer: None,
            replicas: Vec::new(),
            creator: "b1".into(),
        };
        let info: GroupInfo = decode(&encode(&old).unwrap()).unwrap();
        assert_eq!((info.name.as_str(), info.owner.as_str()), ("g", ""));
    }
}
