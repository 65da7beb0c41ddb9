//! Where a record lives in the log.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The start of a record in the log: a segment id and a byte offset inside that segment.
///
/// Positions order the log: a record appended later always has a greater position (segment ids
/// only grow, offsets grow inside a segment), so the derived `Ord` is log order. A position is
/// also used as an *end* ("everything before this position"): [`Log::end`](super::Log::end),
/// [`Log::durable`](super::Log::durable) and checkpoints are expressed that way.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
pub(crate) struct Position {
    /// The segment's id (its file is named by this id, zero-padded to 20 digits).
    pub(crate) segment: u64,
    /// The byte offset of the record's frame inside the segment file.
    pub(crate) offset: u64,
}

impl Position {
    /// The smallest position: replaying from here replays the whole log.
    pub(crate) const START: Position = Position {
        segment: 0,
        offset: 0,
    };

    /// A position from its parts.
    pub(crate) const fn new(segment: u64, offset: u64) -> Position {
        Position { segment, offset }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.segment, self.offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_is_segment_then_offset() {
        assert!(Position::new(1, 900) < Position::new(2, 32));
        assert!(Position::new(2, 32) < Position::new(2, 33));
        assert!(Position::START <= Position::new(0, 0));
        assert_eq!(Position::new(3, 7).to_string(), "3:7");
    }
}
