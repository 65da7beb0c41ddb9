//! Chasing what is missing (joins and repairs), and answering repair requests.

use std::time::Instant;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::wire::{Body, Stamped};
use super::{CausalGroup, Chase};
use crate::BrokerId;

/// The most holes one repair request names (and one answer serves).
const MAX_RANGES: usize = 64;

impl<M: Clone + Serialize + DeserializeOwned> CausalGroup<M> {
    /// Answers a repair request of broker `to` from the retain buffer.
    pub(super) fn answer_repair(&mut self, to: BrokerId, ranges: &[(u64, u64)]) {
        // The retain buffer is contiguous and ends at `seq`.
        let oldest = self.seq + 1 - self.retained.len() as u64;
        let mut msgs: Vec<Stamped<M>> = Vec::new();
        let mut bytes = 0;
        let mut lost_through = 0;
        for &(from, through) in ranges.iter().take(MAX_RANGES) {
            let from = from.max(1);
            let through = through.min(self.seq);
            if from > through {
                continue;
            }
            if from < oldest {
                lost_through = lost_through.max(through.min(oldest - 1));
            }
            for s in from.max(oldest)..=through {
                // Bounded in messages and in bytes (one body stays within a peer link's
                // frame); what is left out is asked for again.
                if msgs.len() >= self.config.repair_batch
                    || (!msgs.is_empty() && bytes >= crate::group::BODY_BYTES)
                {
                    break;
                }
                if let Some(m) = self.retained.get((s - oldest) as usize) {
                    bytes += crate::group::encoded_len(m);
                    msgs.push(m.clone());
                }
            }
        }
        self.stats.repairs_served += 1;
        self.send(
            to,
            &Body::Repair {
                msgs,
                lost_through,
                top: self.seq,
            },
        );
    }

    /// `origin` answered a repair request.
    pub(super) fn repaired(
        &mut self,
        now: Instant,
        origin: BrokerId,
        msgs: Vec<Stamped<M>>,
        lost_through: u64,
        top: u64,
    ) {
        let mut progress = false;
        for m in msgs {
            progress |= self.insert(origin, m);
        }
        let v = self.delivered.get(origin);
        let Some(o) = self.origins.get_mut(&origin) else {
            return;
        };
        o.top = o.top.max(top);
        if o.joined.is_some() && lost_through > v.max(o.gap_through) {
            o.gap_through = lost_through;
            progress = true;
        }
        if progress && let Some(chase) = o.chase.as_mut() {
            // The origin is answering: whatever is still missing (a batch was full, more was
            // published) is asked again at once, with fresh attempts.
            chase.attempts = 0;
            chase.next = now;
        }
    }

    /// Starts a chase for every origin the core waits for, and ends the others.
    pub(super) fn refresh_chases(&mut self, now: Instant) {
        let after = self.config.repair_after;
        for (&k, o) in &mut self.origins {
            let waiting = match o.joined {
                None => o.top > 0,
                Some(_) => {
                    let v = self.delivered.get(k);
                    o.top > v && o.top - v > o.held as u64
                }
            };
            if !waiting {
                o.chase = None;
            } else if o.chase.is_none() {
                o.chase = Some(Chase {
                    attempts: 0,
                    next: now + after,
                });
            }
        }
    }

    /// Sends the due `Hello`s and repair requests, or gives up on them.
    pub(super) fn fire_chases(&mut self, now: Instant) {
        let due: Vec<BrokerId> = self
            .origins
            .iter()
            .filter(|(_, o)| o.chase.as_ref().is_some_and(|c| c.next <= now))
            .map(|(&k, _)| k)
            .collect();
        let (after, attempts) = (self.config.repair_after, self.config.repair_attempts);
        for k in due {
            let Some(o) = self.origins.get_mut(&k) else {
                continue;
            };
            let joined = o.joined.is_some();
            let Some(chase) = o.chase.as_mut() else {
                continue;
            };
            if chase.attempts >= attempts {
                o.chase = None;
                if joined {
                    // Every hole up to what is known to exist is lost.
                    o.gap_through = o.gap_through.max(o.top);
                } else {
                    // Join at the start: what cannot be had is then reported as a gap.
                    self.join(k, 0);
                }
                continue;
            }
            chase.attempts += 1;
            chase.next = now + after;
            if joined {
                let ranges = self.holes(k);
                self.stats.repair_requests += 1;
                self.send(k, &Body::RepairRequest { ranges });
            } else {
                self.send(k, &Body::Hello { top: self.seq });
            }
        }
    }

    /// The holes of `origin` between what is delivered and what is known to exist, as
    /// inclusive ranges (at most [`MAX_RANGES`]).
    fn holes(&self, origin: BrokerId) -> Vec<(u64, u64)> {
        let top = self.origins.get(&origin).map_or(0, |o| o.top);
        let v = self.delivered.get(origin);
        let mut ranges = Vec::new();
        let mut cur = v.saturating_add(1);
        if cur > top {
            return ranges;
        }
        for (&(_, s), _) in self.held.range((origin, cur)..=(origin, top)) {
            if s > cur {
                ranges.push((cur, s - 1));
                if ranges.len() >= MAX_RANGES {
                    return ranges;
                }
            }
            cur = s.saturating_add(1);
        }
        if cur <= top {
            ranges.push((cur, top));
        }
        ranges
    }
}
