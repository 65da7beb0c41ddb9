//! Reference-counted interners: attribute names, string constants and destinations become dense
//! `u32` ids, so that the matching structures index plain arrays and compare integers.
//!
//! An id is released when its last user goes away and is then reused, so an index that sees a
//! stream of distinct names (say, subscribers inventing attribute names) holds memory in
//! proportion to what is live, not to what it has ever seen.
//!
//! The index's maps hash with foldhash ([`FastMap`]) rather than the standard SipHash: keys
//! are short (attribute names, small integers), hashing them is on the insertion path of every
//! subscription and the matching path of every event attribute, and SipHash cost about as much
//! as the rest of the lookup. foldhash is seeded at random per map, which keeps the minimal
//! resistance to collision flooding that names chosen by remote subscribers call for.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::mem::size_of;

/// A hash map with foldhash's fast, randomly seeded hasher.
pub(crate) type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// The id meaning "none" in places where an `Option<u32>` would double the size.
pub(crate) const NONE: u32 = u32::MAX;

/// Keys to dense ids, with a use count per id.
#[derive(Debug, Clone)]
pub(crate) struct Interner<K> {
    /// Key to id, for lookups.
    ids: FastMap<K, u32>,
    /// Id to key and use count; `None` for a free id.
    slots: Vec<Option<(K, u32)>>,
    /// Free ids, reused before the table grows.
    free: Vec<u32>,
}

impl<K> Default for Interner<K> {
    fn default() -> Self {
        Self {
            ids: FastMap::default(),
            slots: Vec::new(),
            free: Vec::new(),
        }
    }
}

impl<K> Interner<K> {
    /// The key of a live `id`.
    pub(crate) fn key(&self, id: u32) -> Option<&K> {
        self.slots
            .get(id as usize)
            .and_then(|s| s.as_ref())
            .map(|(k, _)| k)
    }

    /// One more than the largest id ever handed out: the size of arrays indexed by id.
    pub(crate) fn id_bound(&self) -> usize {
        self.slots.len()
    }

    /// The number of live ids.
    pub(crate) fn live(&self) -> usize {
        self.slots.len() - self.free.len()
    }
}

impl<K: Clone + Eq + Hash> Interner<K> {
    /// The id of `key`, creating it if needed, and counts one more use.
    pub(crate) fn acquire<Q>(&mut self, key: &Q) -> u32
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwnedKey<K> + ?Sized,
    {
        if let Some(&id) = self.ids.get(key) {
            if let Some(Some((_, uses))) = self.slots.get_mut(id as usize) {
                *uses += 1;
            }
            return id;
        }
        let owned = key.to_owned_key();
        let id = match self.free.pop() {
            Some(id) => {
                self.slots[id as usize] = Some((owned.clone(), 1));
                id
            }
            None => {
                let id = u32::try_from(self.slots.len()).expect("fewer than 2^32 live ids");
                self.slots.push(Some((owned.clone(), 1)));
                id
            }
        };
        self.ids.insert(owned, id);
        id
    }

    /// Counts one use less of `id`; returns whether the id was freed.
    pub(crate) fn release(&mut self, id: u32) -> bool {
        let Some(slot) = self.slots.get_mut(id as usize) else {
            return false;
        };
        let Some((_, uses)) = slot else {
            return false;
        };
        *uses -= 1;
        if *uses > 0 {
            return false;
        }
        if let Some((key, _)) = slot.take() {
            self.ids.remove(&key);
        }
        self.free.push(id);
        true
    }

    /// The id of `key`, if interned.
    pub(crate) fn get<Q>(&self, key: &Q) -> Option<u32>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.ids.get(key).copied()
    }

    /// Heap bytes held, not counting what the keys themselves own (see `key_heap`).
    pub(crate) fn heap_bytes(&self, key_heap: impl Fn(&K) -> usize) -> usize {
        let keys: usize = self
            .slots
            .iter()
            .flatten()
            .map(|(k, _)| 2 * key_heap(k))
            .sum();
        hash_map_bytes(&self.ids)
            + self.slots.capacity() * size_of::<Option<(K, u32)>>()
            + self.free.capacity() * size_of::<u32>()
            + keys
    }
}

/// How to make an owned key from a borrowed lookup key (`&str` to `Box<str>`, `&D` to `D`).
pub(crate) trait ToOwnedKey<K> {
    /// The owned key.
    fn to_owned_key(&self) -> K;
}

impl ToOwnedKey<Box<str>> for str {
    fn to_owned_key(&self) -> Box<str> {
        self.into()
    }
}

impl<K: Clone> ToOwnedKey<K> for K {
    fn to_owned_key(&self) -> K {
        self.clone()
    }
}

/// An estimate of the heap bytes of a `HashMap`: its buckets plus one control byte each.
pub(crate) fn hash_map_bytes<K, V, S: BuildHasher>(map: &HashMap<K, V, S>) -> usize {
    if map.capacity() == 0 {
        return 0;
    }
    // hashbrown allocates a power of two of buckets at 7/8 load.
    let buckets = (map.capacity() * 8 / 7).next_power_of_two();
    buckets * (size_of::<(K, V)>() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_counted_and_reused() {
        let mut names: Interner<Box<str>> = Interner::default();
        let a = names.acquire("a");
        let b = names.acquire("b");
        assert_ne!(a, b);
        assert_eq!(names.acquire("a"), a);
        assert!(!names.release(a));
        assert_eq!(names.get("a"), Some(a));
        assert!(names.release(a));
        assert_eq!(names.get("a"), None);
        assert_eq!(names.live(), 1);
        let c = names.acquire("c");
        assert_eq!(c, a, "a freed id is reused");
        assert_eq!(names.key(c).map(|k| &**k), Some("c"));
        assert_eq!(names.id_bound(), 2);
    }

    #[test]
    fn release_of_unknown_ids_is_harmless() {
        let mut dests: Interner<u64> = Interner::default();
        assert!(!dests.release(7));
        let id = dests.acquire(&9);
        assert!(dests.release(id));
        assert!(!dests.release(id));
        assert_eq!(dests.live(), 0);
    }
}
