//! The matching index. (To be written.)

use std::marker::PhantomData;

/// Identifies one entry of an [`Index`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntryId(u32);

/// Maps events to the destinations whose filters match them.
#[derive(Debug)]
pub struct Index<D> {
    _d: PhantomData<D>,
    _id: EntryId,
}
