//! Which filters match a message: the local queues' filters and the remote queues' filters of
//! the directory, each kept in a [`palio_filter::Index`] rather than scanned one by one.
//!
//! The index returns exactly the destinations whose filters [`Filter::matches`] the event (see
//! its documentation), so the answer is the one a scan would give; this module adds the keyed
//! replacement the engine needs (a queue is added, removed, or its directory entry replaced by
//! a newer generation) and a deterministic order, since the answer goes into the log.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;

use palio_filter::{EntryId, Event, Filter, Index, Scratch};

/// Filters under keys `K`, each leading to a destination `D` (several keys may share one).
pub(super) struct FilterIndex<K, D> {
    index: Index<D>,
    /// The index entry of each key, to remove or replace it.
    entries: HashMap<K, EntryId>,
    /// Reused across matches, so matching does not allocate it each time.
    scratch: Scratch,
}

impl<K, D> Default for FilterIndex<K, D> {
    fn default() -> Self {
        Self {
            index: Index::default(),
            entries: HashMap::new(),
            scratch: Scratch::default(),
        }
    }
}

impl<K, D> fmt::Debug for FilterIndex<K, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FilterIndex")
            .field("entries", &self.entries.len())
            .finish_non_exhaustive()
    }
}

impl<K: Eq + Hash, D: Clone + Eq + Hash + Ord> FilterIndex<K, D> {
    /// Sets the filter of `key` (replacing the one it had).
    pub(super) fn insert(&mut self, key: K, filter: &Filter, dest: D) {
        let id = self.index.insert(filter, dest);
        if let Some(old) = self.entries.insert(key, id) {
            self.index.remove(old);
        }
    }

    /// Forgets the filter of `key`, if any.
    pub(super) fn remove(&mut self, key: &K) {
        if let Some(id) = self.entries.remove(key) {
            self.index.remove(id);
        }
    }

    /// The destinations with a filter matching `event`, each once, in ascending order.
    pub(super) fn matches(&mut self, event: &Event) -> Vec<D> {
        let mut out = Vec::new();
        self.index.matches(event, &mut self.scratch, &mut out);
        out.sort_unstable();
        out
    }

    /// [`FilterIndex::matches`], and how many keys have a filter matching `event` (several
    /// keys may lead to one destination).
    pub(super) fn matches_counted(&mut self, event: &Event) -> (Vec<D>, usize) {
        let mut ids = Vec::new();
        self.index
            .matching_entries(event, &mut self.scratch, &mut ids);
        let mut out: Vec<D> = ids
            .iter()
            .filter_map(|&id| self.index.destination(id).cloned())
            .collect();
        out.sort_unstable();
        out.dedup();
        (out, ids.len())
    }

    /// How many keys have a filter.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// A small deterministic generator (xorshift), so a failure is reproducible.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[self.below(items.len() as u64) as usize]
        }
    }

    const INTS: &[&str] = &["a", "b", "c"];
    const STRS: &[&str] = &["s", "t"];

    fn constraint(r: &mut Rng) -> String {
        let n = r.below(8);
        let s = ["red", "green", "blue", "re"][r.below(4) as usize];
        match r.below(9) {
            0 => format!("{} = {n}", r.pick(INTS)),
            1 => format!("{} > {n}", r.pick(INTS)),
            2 => format!("{} <= {n}", r.pick(INTS)),
            3 => format!("{} <> {n}", r.pick(INTS)),
            4 => format!("{} = '{s}'", r.pick(STRS)),
            5 => format!("{} LIKE '{s}%'", r.pick(STRS)),
            6 => format!("EXISTS {}", r.pick(&["a", "s", "z"])),
            7 => format!("NOT ({} = {n})", r.pick(INTS)),
            _ => format!("{} + 1 > {n}", r.pick(INTS)),
        }
    }

    fn filter(r: &mut Rng) -> Filter {
        let conj = |r: &mut Rng| {
            let n = 1 + r.below(3);
            (0..n)
                .map(|_| constraint(r))
                .collect::<Vec<_>>()
                .join(" AND ")
        };
        let n = 1 + r.below(2);
        let text = (0..n)
            .map(|_| format!("({})", conj(r)))
            .collect::<Vec<_>>()
            .join(" OR ");
        Filter::new(&text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn event(r: &mut Rng) -> Event {
        let mut e = Event::new();
        for a in INTS {
            if r.below(4) > 0 {
                e = e.with(a, r.below(8) as i32).expect("an int attribute");
            }
        }
        for a in STRS {
            if r.below(4) > 0 {
                let v = ["red", "green", "blue", "reed", ""][r.below(5) as usize];
                e = e.with(a, v).expect("a string attribute");
            }
        }
        e
    }

    /// The index answers as a scan of the filters would, through insertions, replacements and
    /// removals, with several keys per destination.
    #[test]
    fn the_index_matches_what_a_scan_matches() {
        let mut r = Rng(0x9e37_79b9_7f4a_7c15);
        let mut index: FilterIndex<u32, u8> = FilterIndex::default();
        let mut naive: HashMap<u32, (Filter, u8)> = HashMap::new();
        let (mut some, mut none) = (0, 0);
        for round in 0..300 {
            for _ in 0..4 {
                let key = r.below(60) as u32;
                if r.below(5) == 0 {
                    index.remove(&key);
                    naive.remove(&key);
                } else {
                    let (f, dest) = (filter(&mut r), r.below(20) as u8);
                    index.insert(key, &f, dest);
                    naive.insert(key, (f, dest));
                }
            }
            assert_eq!(index.len(), naive.len());
            for _ in 0..10 {
                let e = event(&mut r);
                let want: Vec<u8> = naive
                    .values()
                    .filter(|(f, _)| f.matches(&e))
                    .map(|(_, d)| *d)
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect();
                if want.is_empty() {
                    none += 1;
                } else {
                    some += 1;
                }
                assert_eq!(index.matches(&e), want, "round {round}, event {e:?}");
            }
        }
        assert!(
            some > 500 && none > 10,
            "{some} events matched, {none} did not"
        );
    }
}
