//! Ordered group multicast: the sans-IO cores.
//!
//! A group is a named set of member subscriptions with an ordering mode fixed at creation
//! ([`Order`]). Each broker runs one core per group it knows:
//!
//! - [`CausalGroup`] for `fifo` and `causal` groups: every broker stamps the publications it
//!   accepts with its own sequence and a vector clock over brokers, broadcasts them to every
//!   other broker, and delivers by the ISIS CBCAST rule (`causal`) or per origin (`fifo`).
//!   A missing message is asked for again from its origin; one that cannot be had is reported as
//!   a gap, never skipped silently.
//! - [`TotalGroup`] for `total` groups: the group's log is a Raft log (raft-rs, behind the
//!   [`total::Consensus`] trait) on a few replica brokers. The Raft leader is the sequencer and
//!   the Raft term the epoch; a publication is acked once the entry holding it is committed.
//!   Brokers with members read the committed log from a replica and deliver it in order.
//!
//! # Call protocol (the same for both cores)
//!
//! The shell feeds inputs (`publish`, `handle_body`, `handle_timeout`, …, each with `now`) and
//! then drains [`Effect`]s with `poll_effect` until it returns `None`, and arms a timer for
//! `poll_timeout`. Effects must be carried out **in order**, with one rule: a
//! [`Effect::Persist`] must be durable before any effect after it is carried out (the shell may
//! write a run of them and sync once). Message bodies between brokers are opaque bytes the
//! cores encode and decode themselves; a body that does not decode is refused with
//! [`BodyError`] and changes nothing.

mod causal;
mod clock;
pub mod total;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::BrokerId;

pub use causal::{CausalConfig, CausalGroup};
pub use clock::VClock;
pub use total::{TotalConfig, TotalGroup};

/// A group's ordering mode, fixed at creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    /// Per publisher: a publisher's messages are delivered in the order it published them.
    Fifo,
    /// Happened-before: whoever delivers m2 delivered every m1 that happened before it.
    Causal,
    /// One order: every member delivers every message at its `(epoch, seq)` position.
    Total,
}

impl Order {
    /// The name used in the CLI, config and JSON: `fifo`, `causal` or `total`.
    pub fn as_str(self) -> &'static str {
        match self {
            Order::Fifo => "fifo",
            Order::Causal => "causal",
            Order::Total => "total",
        }
    }
}

impl fmt::Display for Order {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An ordering mode name that is not `fifo`, `causal` or `total`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown group order {0:?}: expected fifo, causal or total")]
pub struct UnknownOrder(pub String);

impl FromStr for Order {
    type Err = UnknownOrder;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "fifo" => Ok(Order::Fifo),
            "causal" => Ok(Order::Causal),
            "total" => Ok(Order::Total),
            other => Err(UnknownOrder(other.to_owned())),
        }
    }
}

/// A message's place in a total-order group: the epoch (the Raft term of the entry that
/// ordered it) and its sequence number in the group (1, 2, 3, … with no gap, across epochs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Position {
    /// The epoch: the term of the sequencer that ordered the message.
    pub epoch: u64,
    /// The message's number in the group, from 1, gapless across epochs.
    pub seq: u64,
}

/// One message delivered to the local members of a group, in the group's order.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery<M> {
    /// Total order: the message's position.
    pub position: Option<Position>,
    /// Fifo and causal: the broker that accepted the publication.
    pub origin: Option<BrokerId>,
    /// Causal: the message's vector clock. A client that delivered it and then publishes
    /// passes this clock (merged with others it delivered) as its dependencies.
    pub clock: Option<VClock>,
    /// The message itself.
    pub msg: M,
}

/// What a core asks its shell to do. See the module docs for the order rule.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect<M> {
    /// Send `body` to this group's core at broker `to`.
    Send {
        /// The destination broker (the shell routes hop by hop).
        to: BrokerId,
        /// Opaque to the shell; given to the destination's `handle_body`.
        body: Vec<u8>,
    },
    /// Send `body` to this group's core at every other broker the shell knows.
    Broadcast {
        /// Opaque to the shell.
        body: Vec<u8>,
    },
    /// Append `record` to this group's durable log. It must be durable before any later
    /// effect is carried out. After a restart the records are handed back, in order, to the
    /// core's constructor.
    Persist {
        /// Opaque to the shell.
        record: Vec<u8>,
    },
    /// Deliver to the group's local members, in this order.
    Deliver(Delivery<M>),
    /// The publications of `producer` at this broker up to and including `through` are
    /// accepted for good (total: committed on a majority of replicas, on disk; fifo and causal:
    /// stamped and sent). Acks come in publish order.
    Acked {
        /// The producer named in `publish`.
        producer: String,
        /// The highest producer sequence acknowledged.
        through: u64,
    },
    /// Messages the local members will never get (their origin lost them). Reported to the
    /// members in order, at the place where the messages would have been.
    Gap {
        /// Fifo and causal: the origin whose messages are lost; total: `None`.
        origin: Option<BrokerId>,
        /// How many messages are lost.
        count: u64,
    },
}

/// About how many bytes of messages one body carries at most (more than one message only if
/// they fit together): a batch of proposals, a Raft append, a stream chunk to a reader, a
/// repair answer. Together with the largest publication it keeps every body within the peer
/// links' frame limit (1 MiB plus 64 KiB of headroom by default).
pub const BODY_BYTES: usize = 256 * 1024;

/// The MessagePack length of `value` (counted, not allocated).
pub(crate) fn encoded_len<T: Serialize + ?Sized>(value: &T) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    let _ = rmp_serde::encode::write_named(&mut c, value);
    c.0
}

/// How many of `items`, from the first, fit in [`BODY_BYTES`] (at least one).
pub(crate) fn fitting<T: Serialize>(items: impl IntoIterator<Item = T>) -> usize {
    let mut bytes = 0;
    let mut n = 0;
    for item in items {
        bytes += encoded_len(&item);
        if n > 0 && bytes > BODY_BYTES {
            break;
        }
        n += 1;
    }
    n
}

/// A body from another broker that does not decode, or that breaks the protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad group message from {from}: {reason}")]
pub struct BodyError {
    /// The sending broker.
    pub from: BrokerId,
    /// What was wrong.
    pub reason: String,
}
