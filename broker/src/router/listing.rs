//! How much of the routing tables a view lists: each table at most its first [`PER_TABLE`]
//! entries, all tables together at most a byte budget, and nothing at all under the
//! `summary` disclosure policy. A broker holding 100k subscriptions so answers with a view of
//! bounded size (one client frame) and says how many entries it left out.

use palio_protocol::Listing;

use crate::auth::RoutesDetail;

/// The most entries a view lists per table.
pub(crate) const PER_TABLE: usize = 1000;

/// What an entry costs beyond its text: ids, field names, framing (an estimate on the high
/// side, so that the answer fits in the frame the budget is sized for).
const ENTRY_OVERHEAD: usize = 48;

/// The entries a view may still list.
#[derive(Debug)]
pub(crate) struct Budget {
    show: bool,
    bytes_left: usize,
}

impl Budget {
    /// A budget of `bytes` of entries under disclosure policy `detail` (`summary`: none).
    pub(crate) fn new(detail: RoutesDetail, bytes: usize) -> Self {
        Self {
            show: detail == RoutesDetail::Full,
            bytes_left: bytes,
        }
    }

    /// The policy this budget lists under.
    pub(crate) fn detail(&self) -> RoutesDetail {
        if self.show {
            RoutesDetail::Full
        } else {
            RoutesDetail::Summary
        }
    }

    /// A table of `items`, as many of the first ones as the budget allows, each costing
    /// `size` bytes (its text) plus an overhead.
    pub(crate) fn list<T>(
        &mut self,
        items: impl ExactSizeIterator<Item = T>,
        size: impl Fn(&T) -> usize,
    ) -> Listing<T> {
        self.list_first(items.len(), items, size)
    }

    /// A table of `total` entries, of which `first` yields the first ones (at least as many
    /// as a table lists, [`PER_TABLE`], when there are that many).
    pub(crate) fn list_first<T>(
        &mut self,
        total: usize,
        first: impl Iterator<Item = T>,
        size: impl Fn(&T) -> usize,
    ) -> Listing<T> {
        let total = total as u64;
        if !self.show {
            return Listing::hidden(total);
        }
        let mut entries = Vec::new();
        for item in first.take(PER_TABLE) {
            let cost = size(&item) + ENTRY_OVERHEAD;
            if cost > self.bytes_left {
                break;
            }
            self.bytes_left -= cost;
            entries.push(item);
        }
        Listing {
            total,
            truncated: total - entries.len() as u64,
            entries: Some(entries),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(n: usize) -> impl ExactSizeIterator<Item = String> {
        (0..n).map(|i| format!("x = {i}"))
    }

    #[test]
    fn a_table_lists_its_first_entries_and_counts_the_rest() {
        let mut b = Budget::new(RoutesDetail::Full, usize::MAX);
        let l = b.list(texts(3), String::len);
        assert_eq!((l.total, l.truncated), (3, 0));
        assert_eq!(l.entries.unwrap(), ["x = 0", "x = 1", "x = 2"]);
        let l = b.list(texts(100_000), String::len);
        assert_eq!(
            (l.total, l.truncated),
            (100_000, 100_000 - PER_TABLE as u64)
        );
        assert_eq!(l.entries.unwrap().len(), PER_TABLE);
    }

    #[test]
    fn the_byte_budget_is_shared_by_every_table() {
        // Room for two entries of 5 bytes.
        let mut b = Budget::new(RoutesDetail::Full, 2 * (5 + ENTRY_OVERHEAD) + 1);
        let l = b.list(texts(1), String::len);
        assert_eq!(l.entries.unwrap().len(), 1);
        let l = b.list(texts(5), String::len);
        assert_eq!((l.total, l.truncated), (5, 4));
        let l = b.list(texts(5), String::len);
        assert_eq!((l.total, l.truncated), (5, 5));
        assert_eq!(l.entries.unwrap(), Vec::<String>::new());
    }

    #[test]
    fn a_summary_lists_nothing_but_sizes() {
        let mut b = Budget::new(RoutesDetail::Summary, usize::MAX);
        assert_eq!(b.detail(), RoutesDetail::Summary);
        let l = b.list(texts(7), String::len);
        assert_eq!(l, Listing::hidden(7));
    }
}
