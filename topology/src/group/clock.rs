//! Vector clocks over brokers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::BrokerId;

/// A vector clock over brokers, sparse: an absent broker counts 0.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VClock(pub BTreeMap<BrokerId, u64>);

impl VClock {
    /// The entry of broker `b` (0 when absent).
    pub fn get(&self, b: BrokerId) -> u64 {
        self.0.get(&b).copied().unwrap_or(0)
    }

    /// Sets the entry of broker `b`.
    pub fn set(&mut self, b: BrokerId, v: u64) {
        if v == 0 {
            self.0.remove(&b);
        } else {
            self.0.insert(b, v);
        }
    }

    /// Raises every entry to at least `other`'s.
    pub fn merge(&mut self, other: &VClock) {
        for (&b, &v) in &other.0 {
            if v > self.get(b) {
                self.0.insert(b, v);
            }
        }
    }

    /// Whether every entry of `self` is at most `other`'s.
    pub fn le(&self, other: &VClock) -> bool {
        self.0.iter().all(|(&b, &v)| v <= other.get(b))
    }
}
