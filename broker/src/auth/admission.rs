//! Connection counts against the `[limits]` on them: in total, per source address (checked
//! before the QUIC handshake) and per principal (checked once the client has authenticated).
//!
//! Each admitted connection holds [`Slot`]s; dropping a slot gives its count back, however the
//! connection ended. The registries are `dashmap`s: every accepting and session task touches
//! them, and a sharded map keeps them from contending on one lock. No guard is held across an
//! `.await` (clippy's `await_holding_invalid_type` checks it).

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use dashmap::DashMap;

/// The counts, shared by the accept loop and every session.
#[derive(Debug)]
pub(crate) struct Admission {
    total: AtomicUsize,
    by_address: DashMap<IpAddr, usize>,
    by_principal: DashMap<Arc<str>, usize>,
    max_total: usize,
    max_per_address: usize,
    max_per_principal: usize,
}

/// What a slot counts toward.
#[derive(Debug)]
enum Key {
    /// The total and the source address.
    Address(IpAddr),
    /// A principal.
    Principal(Arc<str>),
}

/// One admitted connection's share of a count; gives it back when dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    admission: Arc<Admission>,
    key: Key,
}

/// Adds one to `map[key]` unless it is at `max`; returns whether it did.
fn take<K: std::hash::Hash + Eq>(map: &DashMap<K, usize>, key: K, max: usize) -> bool {
    let mut n = map.entry(key).or_insert(0);
    if *n >= max {
        return false;
    }
    *n += 1;
    true
}

/// Takes one from `map[key]`, removing the entry at zero (so the map holds only live keys).
fn give<K: std::hash::Hash + Eq + Clone>(map: &DashMap<K, usize>, key: &K) {
    map.remove_if_mut(key, |_, n| {
        *n = n.saturating_sub(1);
        *n == 0
    });
}

impl Admission {
    /// Counts against `limits.max_connections`, `max_connections_per_address` and
    /// `max_connections_per_principal`, in that order.
    pub(crate) fn new(
        max_total: usize,
        max_per_address: usize,
        max_per_principal: usize,
    ) -> Arc<Self> {
        Arc::new(Self {
            total: AtomicUsize::new(0),
            by_address: DashMap::new(),
            by_principal: DashMap::new(),
            max_total,
            max_per_address,
            max_per_principal,
        })
    }

    /// Admits a connection from `address`, or names the limit (the `[limits]` setting) it
    /// would exceed.
    pub(crate) fn admit_address(self: &Arc<Self>, address: IpAddr) -> Result<Slot, &'static str> {
        let max = self.max_total;
        if self
            .total
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_err()
        {
            return Err("max_connections");
        }
        if !take(&self.by_address, address, self.max_per_address) {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err("max_connections_per_address");
        }
        Ok(Slot {
            admission: self.clone(),
            key: Key::Address(address),
        })
    }

    /// Admits one more connection of `principal`, or names the limit it would exceed.
    pub(crate) fn admit_principal(
        self: &Arc<Self>,
        principal: &Arc<str>,
    ) -> Result<Slot, &'static str> {
        if !take(
            &self.by_principal,
            principal.clone(),
            self.max_per_principal,
        ) {
            return Err("max_connections_per_principal");
        }
        Ok(Slot {
            admission: self.clone(),
            key: Key::Principal(principal.clone()),
        })
    }

    /// Connections admitted and not yet gone.
    #[cfg(test)]
    fn total(&self) -> usize {
        self.total.load(Ordering::Acquire)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let a = &self.admission;
        match &self.key {
            Key::Address(ip) => {
                give(&a.by_address, ip);
                a.total.fetch_sub(1, Ordering::AcqRel);
            }
            Key::Principal(p) => give(&a.by_principal, p),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(total: usize, per_address: usize, per_principal: usize) -> Arc<Admission> {
        Admission::new(total, per_address, per_principal)
    }

    #[test]
    fn each_limit_refuses_the_one_too_many_and_slots_give_back() {
        let a = admission(3, 2, 1);
        let (x, y): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let s1 = a.admit_address(x).unwrap();
        let _s2 = a.admit_address(x).unwrap();
        assert_eq!(
            a.admit_address(x).unwrap_err(),
            "max_connections_per_address"
        );
        let _s3 = a.admit_address(y).unwrap();
        assert_eq!(a.admit_address(y).unwrap_err(), "max_connections");
        assert_eq!(a.total(), 3);
        drop(s1);
        assert_eq!(a.total(), 2);
        let _s4 = a.admit_address(x).unwrap();

        let alice: Arc<str> = "alice".into();
        let p = a.admit_principal(&alice).unwrap();
        assert_eq!(
            a.admit_principal(&alice).unwrap_err(),
            "max_connections_per_principal"
        );
        assert!(a.admit_principal(&"bob".into()).is_ok());
        drop(p);
        assert!(a.admit_principal(&alice).is_ok());
        // Entries go with their last slot: the maps hold live keys only.
        assert!(a.by_principal.is_empty());
    }
}
