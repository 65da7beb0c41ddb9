//! The filters a broker knows, interned: one entry per distinct filter text, with the
//! interfaces that hold it.
//!
//! Interning is the first covering shortcut: a filter that several subscribers (or several
//! peers) use is one entry with several holders, forwarded at most once per link. An entry
//! lives while some interface holds it.

use std::collections::HashMap;

use crate::frame::SharedFilter;
use crate::ids::Interface;

/// Names an interned filter within one table. Reused after the filter is released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct FilterId(pub(crate) u32);

/// One interned filter.
#[derive(Debug)]
struct Entry {
    /// The filter.
    filter: SharedFilter,
    /// Who holds it and how many times (local subscribers may share a filter; a peer holds each
    /// filter at most once per link), sorted by interface. Usually one or two elements.
    holders: Vec<(Interface, u32)>,
}

/// The interned filters of one kind (subscriptions or advertisements).
#[derive(Debug, Default)]
pub(crate) struct FilterTable {
    /// Entries by id; `None` for free slots.
    slots: Vec<Option<Entry>>,
    /// Free slots, reused last-freed first (deterministic).
    free: Vec<u32>,
    /// Entries by source text (lookups only).
    by_text: HashMap<SharedFilter, FilterId>,
}

impl FilterTable {
    /// The id of `filter`'s entry, creating it (with no holder) if needed.
    pub(crate) fn intern(&mut self, filter: &SharedFilter) -> FilterId {
        if let Some(&id) = self.by_text.get(filter.source()) {
            return id;
        }
        let entry = Entry {
            filter: filter.clone(),
            holders: Vec::new(),
        };
        let id = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = Some(entry);
                FilterId(i)
            }
            None => {
                let i = u32::try_from(self.slots.len()).expect("fewer than 2^32 distinct filters");
                self.slots.push(Some(entry));
                FilterId(i)
            }
        };
        self.by_text.insert(filter.clone(), id);
        id
    }

    fn entry(&self, id: FilterId) -> &Entry {
        self.slots[id.0 as usize]
            .as_ref()
            .expect("FilterIds in use name live entries")
    }

    fn entry_mut(&mut self, id: FilterId) -> &mut Entry {
        self.slots[id.0 as usize]
            .as_mut()
            .expect("FilterIds in use name live entries")
    }

    /// The filter of a live entry.
    pub(crate) fn filter(&self, id: FilterId) -> &SharedFilter {
        &self.entry(id).filter
    }

    /// The holders of a live entry.
    pub(crate) fn holders(&self, id: FilterId) -> &[(Interface, u32)] {
        &self.entry(id).holders
    }

    /// Adds one hold by `iface`.
    pub(crate) fn add_holder(&mut self, id: FilterId, iface: Interface) {
        let holders = &mut self.entry_mut(id).holders;
        match holders.binary_search_by(|(i, _)| i.cmp(&iface)) {
            Ok(i) => holders[i].1 += 1,
            Err(i) => holders.insert(i, (iface, 1)),
        }
    }

    /// Removes one hold by `iface`; releases the entry when nobody holds it any more.
    /// Returns whether `iface` still holds it.
    pub(crate) fn remove_holder(&mut self, id: FilterId, iface: Interface) -> bool {
        let holders = &mut self.entry_mut(id).holders;
        let still = match holders.binary_search_by(|(i, _)| i.cmp(&iface)) {
            Ok(i) if holders[i].1 > 1 => {
                holders[i].1 -= 1;
                true
            }
            Ok(i) => {
                holders.remove(i);
                false
            }
            Err(_) => false,
        };
        if holders.is_empty() {
            let entry = self.slots[id.0 as usize]
                .take()
                .expect("FilterIds in use name live entries");
            self.by_text.remove(entry.filter.source());
            self.free.push(id.0);
        }
        still
    }

    /// Whether `id` names a live entry.
    pub(crate) fn is_live(&self, id: FilterId) -> bool {
        self.slots.get(id.0 as usize).is_some_and(Option::is_some)
    }

    /// The live entries, ascending by id.
    pub(crate) fn ids(&self) -> impl Iterator<Item = FilterId> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, e)| e.is_some())
            .map(|(i, _)| FilterId(i as u32))
    }

    /// The number of live entries.
    pub(crate) fn len(&self) -> usize {
        self.by_text.len()
    }
}
