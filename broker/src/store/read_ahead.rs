//! Read-ahead for [`Log::read`](super::Log::read): one `pread` of a window of a segment's
//! written bytes serves the records after it too.
//!
//! Consumers read messages in log order (a fetch of 256 messages published one after another
//! reads 256 neighbouring records), and a `pread` per record costs a system call and a page
//! cache lookup each. The window holds up to [`WINDOW`] bytes of one segment, taken only from
//! the part already written to the file: that part never changes (the log is append-only, and
//! recovery truncates only before the log is opened), so the window stays valid until its
//! segment is deleted, and the log forgets it then. Every record served from it is still
//! verified (header and payload checksums), exactly as a direct read is.
//!
//! A read the window cannot serve fills it again from the record's position; if that larger
//! read fails (a bad sector somewhere after the record), the record is read on its own, so
//! read-ahead never makes a readable record unreadable.

use super::fs::FsFile;

/// The window's size: about a fetch of 256 small messages, small enough to cost nothing
/// beside the log's write buffer.
pub(super) const WINDOW: u64 = 256 << 10;

/// Bytes `start..start + bytes.len()` of segment `segment`, as written.
#[derive(Debug, Default)]
pub(super) struct ReadAhead {
    segment: u64,
    start: u64,
    bytes: Vec<u8>,
}

impl ReadAhead {
    /// The window's bytes `offset..offset + len` of `segment`, if it holds all of them.
    pub(super) fn get(&self, segment: u64, offset: u64, len: u64) -> Option<&[u8]> {
        if segment != self.segment || offset < self.start {
            return None;
        }
        let from = usize::try_from(offset - self.start).ok()?;
        let to = from.checked_add(usize::try_from(len).ok()?)?;
        self.bytes.get(from..to)
    }

    /// Refills the window from `offset` of `segment` (`file`), up to [`WINDOW`] bytes but never
    /// past `written`, the end of what the file holds. On failure the window is left empty.
    pub(super) fn fill(
        &mut self,
        file: &dyn FsFile,
        segment: u64,
        offset: u64,
        written: u64,
    ) -> std::io::Result<()> {
        let len = written.saturating_sub(offset).min(WINDOW);
        self.segment = segment;
        self.start = offset;
        // Bounded by WINDOW, so it fits a usize.
        self.bytes.resize(usize::try_from(len).unwrap_or(0), 0);
        let read = file.read_exact_at(&mut self.bytes, offset);
        if read.is_err() {
            self.bytes.clear();
        }
        read
    }

    /// Forgets the window if it lies in a segment before `segment` (those are being deleted).
    pub(super) fn forget_before(&mut self, segment: u64) {
        if self.segment < segment {
            self.bytes.clear();
        }
    }
}
