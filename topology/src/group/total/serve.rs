//! The replica side of reading: stream applied messages to the readers that follow it.
//!
//! A reader asks with `Follow { from }` (and asks again every third of its stall timeout, which
//! renews its lease here). The replica answers with a chunk of what it holds from `from` on,
//! remembers the reader's cursor, and while the reader is caught up pushes each newly applied
//! message as it is applied. A reader behind gets the next chunk when it asks for it. A reader
//! that stops asking is forgotten after its lease.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::state::Applied;
use super::wire::Body;
use crate::BrokerId;

#[derive(Debug, Clone, Copy)]
struct Follower {
    /// The next sequence to send it.
    cursor: u64,
    expires: Instant,
}

/// The readers following one replica.
#[derive(Debug)]
pub(crate) struct Serving {
    followers: BTreeMap<BrokerId, Follower>,
    chunk: usize,
    lease: Duration,
}

impl Serving {
    pub(crate) fn new(chunk: usize, lease: Duration) -> Self {
        Serving {
            followers: BTreeMap::new(),
            chunk: chunk.max(1),
            lease,
        }
    }

    fn stream<M: Clone + Serialize + DeserializeOwned>(
        state: &Applied<M>,
        term: u64,
        leader: Option<BrokerId>,
        start: u64,
        max: usize,
    ) -> Body<M> {
        Body::Stream {
            term,
            leader,
            floor: state.floor(),
            through: state.next_seq().saturating_sub(1),
            start,
            items: {
                let mut items = state.since(start, max);
                // Bounded in bytes as well: one body stays within a peer link's frame.
                items.truncate(crate::group::fitting(items.iter()));
                items
            },
        }
    }

    /// A reader asks to follow from `from` (`None`: from the next message applied).
    pub(crate) fn on_follow<M: Clone + Serialize + DeserializeOwned>(
        &mut self,
        now: Instant,
        reader: BrokerId,
        from: Option<u64>,
        state: &Applied<M>,
        term: u64,
        leader: Option<BrokerId>,
    ) -> Body<M> {
        let cursor = from.unwrap_or(state.next_seq()).max(1);
        let body = Self::stream(state, term, leader, cursor, self.chunk);
        let sent = match &body {
            Body::Stream { items, .. } => items.len() as u64,
            _ => 0,
        };
        self.followers.insert(
            reader,
            Follower {
                cursor: cursor.saturating_add(sent),
                expires: now + self.lease,
            },
        );
        self.followers.retain(|_, f| f.expires > now);
        body
    }

    /// Messages from `first_new` on were just applied: push them to the caught-up readers.
    pub(crate) fn on_applied<M: Clone + Serialize + DeserializeOwned>(
        &mut self,
        now: Instant,
        first_new: u64,
        state: &Applied<M>,
        term: u64,
        leader: Option<BrokerId>,
        out: &mut Vec<(BrokerId, Body<M>)>,
    ) {
        self.followers.retain(|_, f| f.expires > now);
        let next = state.next_seq();
        for (reader, f) in &mut self.followers {
            if f.cursor < first_new || f.cursor >= next || f.cursor < state.floor() {
                continue;
            }
            // Everything new, in chunks that each fit a body.
            while f.cursor < next {
                let body = Self::stream(state, term, leader, f.cursor, usize::MAX);
                let sent = match &body {
                    Body::Stream { items, .. } => items.len() as u64,
                    _ => 0,
                };
                out.push((*reader, body));
                if sent == 0 {
                    break;
                }
                f.cursor += sent;
            }
        }
    }

    pub(crate) fn followers(&self) -> usize {
        self.followers.len()
    }
}
