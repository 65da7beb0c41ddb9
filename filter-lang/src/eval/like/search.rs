//! Finding the leftmost match of a segment's core between two `%`s (see [`super`]).
//!
//! Each search returns where the match *ends*, and adds to `steps` the text it examined: a
//! successful search examines the text up to the end of its match, and the next segment's
//! search starts after it, so the searches of one match scan disjoint stretches of the text.

use super::{Item, count, forward};

/// The end of the leftmost occurrence of `literal` in `text[from..end]`.
///
/// std's substring search is the two-way algorithm: linear in the text, whatever the literal.
pub(super) fn literal(
    literal: &str,
    text: &str,
    from: usize,
    end: usize,
    steps: &mut u64,
) -> Option<usize> {
    match text[from..end].find(literal) {
        Some(i) => {
            *steps = steps.saturating_add(count(i + literal.len()));
            Some(from + i + literal.len())
        }
        None => {
            *steps = steps.saturating_add(count(end - from));
            None
        }
    }
}

/// The end of the leftmost match of `core` in `text[from..end]`, trying every position.
///
/// O(text × core): only for cores with `_`s that span more than [`Bits`] can hold.
pub(super) fn each_position(
    core: &[Item],
    text: &str,
    from: usize,
    end: usize,
    steps: &mut u64,
) -> Option<usize> {
    text[from..end]
        .char_indices()
        .find_map(|(i, _)| forward(core, text, from + i, end, steps))
}

/// The shift-and automaton of a core of at most 64 characters (Baeza-Yates and Gonnet).
///
/// Bit `i` of the state is set after a text character when the core's first `i + 1`
/// characters match the text ending there; a `_` matches any character. One step per text
/// character: shift, set bit 0, and keep the bits the character may occupy.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct Bits {
    /// For each character of the core's literals, sorted by character: the positions it may
    /// occupy (its own, and every `_`).
    masks: Vec<(char, u64)>,
    /// The positions any other character may occupy: those of the `_`s.
    any: u64,
    /// The bit of the core's last character: set when the whole core matched.
    last: u64,
}

impl Bits {
    /// The automaton of `core`, or `None` if it spans more than 64 characters.
    pub(super) fn new(core: &[Item]) -> Option<Self> {
        let mut masks: Vec<(char, u64)> = Vec::new();
        let mut any = 0u64;
        let mut position = 0u32;
        for item in core {
            match item {
                Item::Literal(l) => {
                    for c in l.chars() {
                        let bit = 1u64.checked_shl(position)?;
                        match masks.binary_search_by_key(&c, |&(k, _)| k) {
                            Ok(i) => masks[i].1 |= bit,
                            Err(i) => masks.insert(i, (c, bit)),
                        }
                        position += 1;
                    }
                }
                Item::Skip(n) => {
                    for _ in 0..*n {
                        any |= 1u64.checked_shl(position)?;
                        position += 1;
                    }
                }
            }
        }
        let last = 1u64.checked_shl(position.checked_sub(1)?)?;
        for (_, mask) in &mut masks {
            *mask |= any;
        }
        Some(Self { masks, any, last })
    }

    /// The end of the leftmost match in `text[from..end]`.
    pub(super) fn find(
        &self,
        text: &str,
        from: usize,
        end: usize,
        steps: &mut u64,
    ) -> Option<usize> {
        let mut state = 0u64;
        for (i, c) in text[from..end].char_indices() {
            let mask = match self.masks.binary_search_by_key(&c, |&(k, _)| k) {
                Ok(j) => self.masks.get(j).map_or(self.any, |&(_, m)| m),
                Err(_) => self.any,
            };
            state = ((state << 1) | 1) & mask;
            if state & self.last != 0 {
                let after = i + c.len_utf8();
                *steps = steps.saturating_add(count(after));
                return Some(from + after);
            }
        }
        *steps = steps.saturating_add(count(end - from));
        None
    }

    /// Heap bytes owned.
    pub(super) fn heap_bytes(&self) -> usize {
        self.masks.capacity() * size_of::<(char, u64)>()
    }
}
