//! An event's attributes as the index sees them: for each attribute some constraint mentions,
//! its integer, boolean and (interned) string views, computed once per event.
//!
//! The views live in the caller's [`Scratch`](super::Scratch), in arrays indexed by attribute
//! id and stamped with an epoch, so that starting a new event costs nothing (no clearing) and a
//! lookup is one array access.

use crate::value::Value;

use super::intern::{Interner, NONE};

/// `flags` bit: the value casts to an integer, held in `int`.
const HAS_INT: u8 = 1;
/// `flags` bit: the value casts implicitly to a boolean, held in `BOOL_VALUE`.
const HAS_BOOL: u8 = 2;
/// `flags` bit: the boolean cast's result.
const BOOL_VALUE: u8 = 4;

/// The views of one present attribute.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct View {
    /// The epoch this view was written in; stale views are absent attributes.
    stamp: u32,
    /// The integer cast (with `HAS_INT`).
    int: i32,
    /// `HAS_INT`, `HAS_BOOL`, `BOOL_VALUE`.
    flags: u8,
    /// The string form's id among the index's interned constants, or `NONE` when it equals
    /// none of them (or when no constraint on this attribute compares strings).
    pub(crate) sid: u32,
}

impl View {
    /// Computes the views of `value`. `strings` is `Some` when constraints on this attribute
    /// compare strings for equality, so the string form's id is worth computing.
    pub(crate) fn of(value: &Value, strings: Option<&Interner<Box<str>>>) -> Self {
        let mut flags = 0;
        let int = match value.to_int() {
            Some(i) => {
                flags |= HAS_INT;
                i
            }
            None => 0,
        };
        match value.to_bool() {
            Some(true) => flags |= HAS_BOOL | BOOL_VALUE,
            Some(false) => flags |= HAS_BOOL,
            None => {}
        }
        let sid = strings
            .and_then(|s| s.get(&*value.to_string_value()))
            .unwrap_or(NONE);
        Self {
            stamp: 0,
            int,
            flags,
            sid,
        }
    }

    /// The integer cast, if the value has one.
    pub(crate) fn int(&self) -> Option<i32> {
        (self.flags & HAS_INT != 0).then_some(self.int)
    }

    /// The implicit boolean cast, if the value has one.
    pub(crate) fn boolean(&self) -> Option<bool> {
        (self.flags & HAS_BOOL != 0).then_some(self.flags & BOOL_VALUE != 0)
    }
}

/// The views of the current event's attributes, by attribute id.
#[derive(Debug, Clone, Default)]
pub(crate) struct Views {
    /// The current event's epoch; never 0, so that a zeroed view is stale.
    epoch: u32,
    /// Views by attribute id.
    slots: Vec<View>,
    /// The ids of the attributes present, in event order.
    present: Vec<u32>,
}

impl Views {
    /// Starts a new event for an index with attribute ids below `attr_bound`.
    pub(crate) fn begin(&mut self, attr_bound: usize) {
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            // Every stamp could now collide with a future epoch: forget them all.
            self.slots.iter_mut().for_each(|v| v.stamp = 0);
            self.epoch = 1;
        }
        if self.slots.len() < attr_bound {
            self.slots.resize(attr_bound, View::default());
        }
        self.present.clear();
    }

    /// Records the views of attribute `attr`.
    pub(crate) fn set(&mut self, attr: u32, mut view: View) {
        view.stamp = self.epoch;
        if let Some(slot) = self.slots.get_mut(attr as usize) {
            *slot = view;
            self.present.push(attr);
        }
    }

    /// The views of attribute `attr`, if the event has it.
    #[inline]
    pub(crate) fn get(&self, attr: u32) -> Option<&View> {
        self.slots
            .get(attr as usize)
            .filter(|v| v.stamp == self.epoch)
    }

    /// The ids of the attributes present.
    pub(crate) fn present(&self) -> &[u32] {
        &self.present
    }
}

/// A set of small integers (entry slots, destination ids), emptied per event in time
/// proportional to what the event marked.
///
/// A bitset rather than an array of epoch stamps: with a million destinations, stamps take
/// 4 MB and every check is a cache miss, where the bitset takes 128 KB and stays in the L2
/// cache. Emptying clears only the words marked since the last emptying, listed in `touched`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Marks {
    /// Bit `i` is set while `i` is in the set.
    bits: Vec<u64>,
    /// The words of `bits` that may be non-zero.
    touched: Vec<u32>,
}

impl Marks {
    /// Empties the set, for members below `bound`.
    pub(crate) fn begin(&mut self, bound: usize) {
        for &w in &self.touched {
            if let Some(word) = self.bits.get_mut(w as usize) {
                *word = 0;
            }
        }
        self.touched.clear();
        let words = bound.div_ceil(64);
        if self.bits.len() < words {
            self.bits.resize(words, 0);
        }
    }

    /// Adds `i`; returns whether it was absent before.
    #[inline]
    pub(crate) fn insert(&mut self, i: u32) -> bool {
        let w = (i / 64) as usize;
        let bit = 1u64 << (i % 64);
        match self.bits.get_mut(w) {
            Some(word) if *word & bit == 0 => {
                if *word == 0 {
                    self.touched.push(i / 64);
                }
                *word |= bit;
                true
            }
            _ => false,
        }
    }

    /// Whether `i` is in the set.
    #[inline]
    pub(crate) fn contains(&self, i: u32) -> bool {
        self.bits
            .get((i / 64) as usize)
            .is_some_and(|w| w & (1u64 << (i % 64)) != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_follow_cesql_casts() {
        let mut strings: Interner<Box<str>> = Interner::default();
        let five = strings.acquire("5");
        let v = View::of(&Value::Int(5), Some(&strings));
        assert_eq!(v.int(), Some(5));
        assert_eq!(v.boolean(), None);
        assert_eq!(v.sid, five);
        let v = View::of(&Value::from("+5"), Some(&strings));
        assert_eq!(v.int(), Some(5));
        assert_eq!(v.sid, NONE);
        let v = View::of(&Value::from("TRUE"), None);
        assert_eq!(v.boolean(), Some(true));
        assert_eq!(v.int(), None);
        let v = View::of(&Value::Bool(false), None);
        assert_eq!(v.boolean(), Some(false));
        assert_eq!(v.int(), Some(0));
    }

    #[test]
    fn a_new_epoch_forgets_the_previous_event() {
        let mut views = Views::default();
        views.begin(3);
        views.set(1, View::of(&Value::Int(1), None));
        assert!(views.get(1).is_some());
        assert_eq!(views.present(), [1]);
        views.begin(3);
        assert!(views.get(1).is_none());
        assert!(views.get(7).is_none());
        assert!(views.present().is_empty());
    }

    #[test]
    fn marks_are_emptied_by_begin() {
        let mut marks = Marks::default();
        marks.begin(200);
        assert!(marks.insert(2));
        assert!(!marks.insert(2));
        assert!(marks.insert(130));
        assert!(marks.insert(3));
        assert!(marks.contains(2) && marks.contains(3) && marks.contains(130));
        assert!(!marks.contains(4));
        marks.begin(200);
        for i in 0..200 {
            assert!(!marks.contains(i), "{i} was forgotten");
        }
        assert!(marks.insert(3));
        assert!(!marks.insert(256), "out of bounds is never inserted");
        assert!(!marks.contains(256));
    }
}
