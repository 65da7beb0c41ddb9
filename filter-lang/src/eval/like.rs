//! LIKE patterns: compiling them, and matching strings against them in time linear in the text.
//!
//! A pattern is compiled once, by the parser, into [`LikePiece`]s: literal runs, `_` (one
//! character) and `%` (any run of characters). `\%` and `\_` stand for a literal `%` and `_`;
//! every other backslash is an ordinary character (CESQL defines no other escape, and the
//! conformance suite expects `'ab\c' LIKE 'ab\c'` to hold). Escapes are read left to right, so
//! in `\\%` the first backslash is a literal backslash and `\%` a literal percent sign.
//! Matching is case-sensitive and works on characters, not bytes (`_` matches `é`).
//!
//! # Matching in one pass
//!
//! The pieces are also compiled into a [`Plan`]: the pattern split at its `%`s into *segments*
//! of literal characters and `_`s. The first segment must sit at the start of the text and the
//! last at its end; both are checked in steps proportional to the segment, not to the text.
//! Each segment in between is placed at its leftmost match after the previous one. Leftmost is
//! always right: if some placement of the segments matches, moving one segment left to its
//! leftmost match leaves at least as much room for those after it, and the `%`s around it
//! absorb the difference. So the text is scanned once, left to right, and a segment is never
//! tried again. Each middle segment is found ([`search`]) by
//!
//! - a substring search (std's, the two-way algorithm: linear) when it has no `_`;
//! - a bit-parallel shift-and automaton, one 64-bit word of state per text character, when its
//!   literals and inner `_`s span at most 64 characters (`_`s at either end are plain skips);
//! - trying every position when that span is longer: O(text × span). No hand-written filter
//!   has such a segment, and the cost model ([`cost`]) charges it as such.
//!
//! [`run`] counts the work done in steps (about one per text byte or pattern character
//! examined), and never counts more than [`cost`] predicts: the tests check both.
//!
//! Every position the matcher holds is a character boundary of the text: it only moves by a
//! literal that was found there, or by whole characters.

mod search;
#[cfg(test)]
mod tests;

use crate::ast::{LikePattern, LikePiece};

use search::Bits;

/// Compiles a pattern (already unescaped as a string literal).
pub(crate) fn compile(source: String) -> LikePattern {
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut chars = source.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if matches!(chars.peek(), Some('%' | '_')) => {
                literal.extend(chars.next());
            }
            '%' | '_' => {
                if !literal.is_empty() {
                    pieces.push(LikePiece::Literal(std::mem::take(&mut literal)));
                }
                if c == '_' {
                    pieces.push(LikePiece::AnyChar);
                } else if pieces.last() != Some(&LikePiece::AnyString) {
                    pieces.push(LikePiece::AnyString);
                }
            }
            c => literal.push(c),
        }
    }
    if !literal.is_empty() {
        pieces.push(LikePiece::Literal(literal));
    }
    LikePattern::new(source, pieces)
}

/// Whether `text` matches `pattern`.
pub(crate) fn matches(pattern: &LikePattern, text: &str) -> bool {
    run(pattern, text).0
}

/// Whether `text` matches `pattern`, and the steps it took (see the module documentation).
pub(crate) fn run(pattern: &LikePattern, text: &str) -> (bool, u64) {
    let mut steps = 0;
    let matched = pattern.plan.matches(text, &mut steps);
    (matched, steps)
}

/// An upper bound on the steps [`run`] takes on a text of at most `text_len` bytes.
///
/// The anchored first and last segments, and the `_`s of every segment, cost at most one step
/// per character of the pattern; the middle segments scan disjoint stretches of the text, one
/// step per byte, except a segment searched position by position, which costs its span at each.
pub(crate) fn cost(pattern: &LikePattern, text_len: u64) -> u64 {
    let per_byte = pattern
        .plan
        .middle
        .iter()
        .map(Segment::per_byte)
        .max()
        .unwrap_or(0);
    count(pattern.source.len()).saturating_add(text_len.saturating_mul(per_byte))
}

/// A length as steps (saturating; no length is near 2^64).
fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// A pattern split at its `%`s, ready to match.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Plan {
    /// The segment before the first `%` (or the whole pattern): anchored at the start.
    head: Segment,
    /// The segments between two `%`s, each placed at its leftmost match.
    middle: Vec<Segment>,
    /// The segment after the last `%`, anchored at the end; `None` when there is no `%`, and
    /// the head must then span the whole text.
    tail: Option<Segment>,
}

impl Plan {
    /// The plan of `pieces` (consecutive `%`s merged, as [`compile`] leaves them).
    pub(crate) fn new(pieces: &[LikePiece]) -> Self {
        let mut segments = pieces
            .split(|p| *p == LikePiece::AnyString)
            .map(Segment::new);
        // `split` yields at least one (possibly empty) slice.
        let head = segments.next().unwrap_or_default();
        let mut middle: Vec<Segment> = segments.collect();
        let tail = middle.pop();
        Self { head, middle, tail }
    }

    /// Heap bytes owned by the plan, for the index's memory accounting.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.head.heap_bytes()
            + self.middle.capacity() * size_of::<Segment>()
            + self.middle.iter().map(Segment::heap_bytes).sum::<usize>()
            + self.tail.as_ref().map_or(0, Segment::heap_bytes)
    }

    fn matches(&self, text: &str, steps: &mut u64) -> bool {
        let end = text.len();
        let Some(mut at) = self.head.forward(text, 0, end, steps) else {
            return false;
        };
        let Some(tail) = &self.tail else {
            return at == end;
        };
        // The tail is placed first, so that no middle segment takes the text it needs.
        let Some(limit) = tail.backward(text, at, end, steps) else {
            return false;
        };
        for segment in &self.middle {
            match segment.find(text, at, limit, steps) {
                Some(after) => at = after,
                None => return false,
            }
        }
        true
    }
}

/// A run of characters that must appear together: literals and `_`s, no `%`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
struct Segment {
    /// Literal runs and runs of `_`, alternating.
    items: Vec<Item>,
    /// The shift-and automaton of the core (see [`Segment::parts`]), when it has an inner `_`
    /// and spans at most 64 characters.
    bits: Option<Bits>,
}

/// One run within a segment.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Item {
    /// Characters that must appear exactly.
    Literal(String),
    /// This many `_`: any characters, this many.
    Skip(usize),
}

impl Segment {
    fn new(pieces: &[LikePiece]) -> Self {
        let mut items: Vec<Item> = Vec::new();
        for piece in pieces {
            match (piece, items.last_mut()) {
                (LikePiece::AnyChar, Some(Item::Skip(n))) => *n += 1,
                (LikePiece::AnyChar, _) => items.push(Item::Skip(1)),
                (LikePiece::Literal(s), Some(Item::Literal(l))) => l.push_str(s),
                (LikePiece::Literal(s), _) => items.push(Item::Literal(s.clone())),
                // Not in a segment: `Plan::new` split there.
                (LikePiece::AnyString, _) => {}
            }
        }
        let mut segment = Self { items, bits: None };
        let (_, core, _) = segment.parts();
        segment.bits = (core.len() > 1).then(|| Bits::new(core)).flatten();
        segment
    }

    /// The `_`s it starts with, its *core* (empty, or from its first literal to its last), and
    /// the `_`s it ends with.
    fn parts(&self) -> (usize, &[Item], usize) {
        let mut core = self.items.as_slice();
        let mut lead = 0;
        let mut trail = 0;
        if let [Item::Skip(n), rest @ ..] = core {
            lead = *n;
            core = rest;
        }
        if let [rest @ .., Item::Skip(n)] = core {
            trail = *n;
            core = rest;
        }
        (lead, core, trail)
    }

    /// Steps per text byte of searching for it between two `%`s (see [`cost`]).
    fn per_byte(&self) -> u64 {
        match self.parts().1 {
            [] => 0,
            [_] => 1,
            _ if self.bits.is_some() => 1,
            core => core.iter().map(Item::steps).fold(0, u64::saturating_add),
        }
    }

    fn heap_bytes(&self) -> usize {
        self.items.capacity() * size_of::<Item>()
            + self
                .items
                .iter()
                .map(|item| match item {
                    Item::Literal(s) => s.capacity(),
                    Item::Skip(_) => 0,
                })
                .sum::<usize>()
            + self.bits.as_ref().map_or(0, Bits::heap_bytes)
    }

    /// Where it ends if it starts at `at` and stays before `end`.
    fn forward(&self, text: &str, at: usize, end: usize, steps: &mut u64) -> Option<usize> {
        forward(&self.items, text, at, end, steps)
    }

    /// Where it starts if it ends at `at` and stays after `start`.
    fn backward(&self, text: &str, start: usize, at: usize, steps: &mut u64) -> Option<usize> {
        let mut at = at;
        for item in self.items.iter().rev() {
            *steps = steps.saturating_add(item.steps());
            at = match item {
                Item::Literal(l) => text[start..at]
                    .ends_with(l.as_str())
                    .then(|| at - l.len())?,
                Item::Skip(0) => at,
                Item::Skip(n) => {
                    let (i, _) = text[start..at].char_indices().rev().nth(n - 1)?;
                    start + i
                }
            };
        }
        Some(at)
    }

    /// Where its leftmost match in `text[at..end]` ends.
    fn find(&self, text: &str, at: usize, end: usize, steps: &mut u64) -> Option<usize> {
        let (lead, core, trail) = self.parts();
        // A match starting at or after `at` has its core at or after `from`.
        let from = skip(text, at, end, lead, steps)?;
        let core_end = match (core, &self.bits) {
            ([], _) => from,
            ([Item::Literal(l)], _) => search::literal(l, text, from, end, steps)?,
            (_, Some(bits)) => bits.find(text, from, end, steps)?,
            (core, None) => search::each_position(core, text, from, end, steps)?,
        };
        // The core has a fixed number of characters, so its leftmost match also ends first:
        // if the trailing `_`s do not fit after it, they fit after no later match either.
        skip(text, core_end, end, trail, steps)
    }
}

impl Item {
    /// The steps of checking it at one position.
    fn steps(&self) -> u64 {
        match self {
            Item::Literal(l) => count(l.len()),
            Item::Skip(n) => count(*n),
        }
    }
}

/// Where `items` end if they start at `at` and stay before `end`.
fn forward(items: &[Item], text: &str, at: usize, end: usize, steps: &mut u64) -> Option<usize> {
    let mut at = at;
    for item in items {
        at = match item {
            Item::Literal(l) => {
                *steps = steps.saturating_add(count(l.len()));
                text[at..end]
                    .starts_with(l.as_str())
                    .then(|| at + l.len())?
            }
            Item::Skip(n) => skip(text, at, end, *n, steps)?,
        };
    }
    Some(at)
}

/// The position `n` characters after `at`, if they are before `end`.
fn skip(text: &str, at: usize, end: usize, n: usize, steps: &mut u64) -> Option<usize> {
    let Some(last) = n.checked_sub(1) else {
        return Some(at);
    };
    *steps = steps.saturating_add(count(n));
    let (i, c) = text[at..end].char_indices().nth(last)?;
    Some(at + i + c.len_utf8())
}
