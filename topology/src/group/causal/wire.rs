//! What fifo and causal cores say to each other, and what they persist: MessagePack
//! (rmp-serde) encodings of [`Body`] and [`Stamped`].

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::super::VClock;

/// One message as its origin stamped it: the durable record, and the payload of
/// [`Body::Data`] and [`Body::Repair`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Stamped<M> {
    /// The origin's sequence number of the message, from 1.
    pub(super) seq: u64,
    /// The origin's delivered clock when it stamped the message, without the origin's own
    /// entry (the sequence says it). Empty in fifo groups.
    pub(super) deps: VClock,
    /// The message.
    pub(super) msg: M,
}

/// A body between two cores of one group. The sender is the `from` the shell hands to
/// `handle_body`; only an origin sends its own messages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) enum Body<M> {
    /// "I (re)started or my link to you came back; my last sequence is `top`; tell me yours."
    /// Answered with [`Body::Welcome`].
    Hello {
        /// The sender's last stamped sequence.
        top: u64,
    },
    /// The answer to a [`Body::Hello`].
    Welcome {
        /// The sender's last stamped sequence.
        top: u64,
    },
    /// A new message of the sender.
    Data(Stamped<M>),
    /// "Send me again your messages in these inclusive sequence ranges."
    RepairRequest {
        /// Inclusive `(from, to)` ranges of the addressee's own sequences.
        ranges: Vec<(u64, u64)>,
    },
    /// The answer to a [`Body::RepairRequest`].
    Repair {
        /// The messages the origin still had, ascending (at most a batch).
        msgs: Vec<Stamped<M>>,
        /// Every asked-for sequence up to this one is gone from the origin (beyond its retain
        /// buffer); 0 if none was.
        lost_through: u64,
        /// The origin's last stamped sequence.
        top: u64,
    },
}

/// Encodes a body or a record.
pub(super) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, rmp_serde::encode::Error> {
    rmp_serde::to_vec(value)
}

/// Decodes a body or a record.
pub(super) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, rmp_serde::decode::Error> {
    rmp_serde::from_slice(bytes)
}
