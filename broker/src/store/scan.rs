//! Reading a segment record by record, trusting none of its bytes (no I/O of its own: it reads
//! through [`Source`], so it runs the same over a file, a file plus the unwritten buffer, or a
//! byte slice in tests).
//!
//! The scan verifies each frame in turn. At a frame that does not verify it *resynchronises*:
//! it searches forward for the frame magic and accepts the first candidate whose header checksum
//! (which covers the candidate's own position) and payload checksum verify. The damaged region
//! in between is skipped and reported; if no valid frame follows, the damage reaches the end of
//! the segment and the caller decides (truncate a torn tail of the last segment, report a
//! truncated finished segment). Checking the small header checksum before reading a payload
//! keeps a resynchronisation linear in the segment size, whatever the bytes are. Lengths are
//! bounded by the segment's record bound and by the bytes actually present, so a damaged
//! length never makes the scan allocate more than the segment holds.
//!
//! Recovery and replay run this same scan, so replay skips exactly what recovery reported.

use std::io;
use std::path::Path;

use super::error::StoreError;
use super::fs::FsFile;
use super::position::Position;
use super::record::{
    FRAME_HEADER_LEN, FRAME_MAGIC, FrameHeader, FrameKind, HeaderError, MAX_RECORD_LIMIT,
    SEGMENT_HEADER_LEN, SegmentHeader, decode_frame_header, decode_segment_header, payload_matches,
};

/// How much of a segment the scan reads at a time.
const WINDOW: usize = 1 << 20;

/// Bytes the scan can read: a segment's contents.
pub(crate) trait Source {
    /// The number of bytes.
    fn len(&self) -> u64;
    /// Fills `buf` from `offset` (the range is within `len`).
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
}

/// A segment as the log sees it: the first `file_len` bytes of its file, then `tail` (the
/// active segment's appended but not yet written frames).
pub(crate) struct SegmentSource<'a> {
    /// The segment file.
    pub(crate) file: &'a dyn FsFile,
    /// How many of its bytes belong to the log.
    pub(crate) file_len: u64,
    /// Bytes that follow them in memory.
    pub(crate) tail: &'a [u8],
}

impl Source for SegmentSource<'_> {
    fn len(&self) -> u64 {
        self.file_len + self.tail.len() as u64
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let from_file = self.file_len.saturating_sub(offset).min(buf.len() as u64) as usize;
        let (head, rest) = buf.split_at_mut(from_file);
        if !head.is_empty() {
            self.file.read_exact_at(head, offset)?;
        }
        if !rest.is_empty() {
            let start = (offset + from_file as u64 - self.file_len) as usize;
            let src = self
                .tail
                .get(start..start + rest.len())
                .ok_or(io::ErrorKind::UnexpectedEof)?;
            rest.copy_from_slice(src);
        }
        Ok(())
    }
}

impl Source for [u8] {
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(io::Error::other)?;
        let src = self
            .get(start..start + buf.len())
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

/// What a scan found in one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SegmentScan {
    /// The segment header, or why it was refused.
    pub(crate) header: Result<SegmentHeader, HeaderError>,
    /// The record bound used (the header's, else the caller's fallback).
    pub(crate) bound: u32,
    /// Valid data records.
    pub(crate) records: u64,
    /// Their payload bytes.
    pub(crate) record_bytes: u64,
    /// The offset just after the last valid frame (the segment header's length if none).
    pub(crate) valid_end: u64,
    /// The segment ends with a valid seal frame.
    pub(crate) sealed: bool,
    /// Damaged regions followed by a valid frame: (offset, length).
    pub(crate) skipped: Vec<(u64, u64)>,
    /// Where a damaged region that reaches the end of the segment begins.
    pub(crate) bad_tail: Option<u64>,
    /// Bytes found after the seal (offset; they run to the end).
    pub(crate) after_seal: Option<u64>,
}

/// Scans segment `id` (read through `src`; `path` names it in errors), calling `on_record` for
/// each valid data record in order. `fallback_bound` bounds record lengths when the header is
/// unreadable.
pub(crate) fn scan<S: Source + ?Sized>(
    id: u64,
    path: &Path,
    src: &S,
    fallback_bound: u32,
    mut on_record: impl FnMut(Position, &[u8]) -> Result<(), StoreError>,
) -> Result<SegmentScan, StoreError> {
    let io = |e| StoreError::io("read", path, e);
    let len = src.len();
    let mut w = Window::new(src);
    let header = match w.get(0, SEGMENT_HEADER_LEN as usize).map_err(io)? {
        Some(bytes) => decode_segment_header(bytes, id),
        None => Err(HeaderError::Short),
    };
    let bound = header
        .map(|h| h.max_record)
        .unwrap_or(fallback_bound)
        .min(MAX_RECORD_LIMIT);
    let mut out = SegmentScan {
        header,
        bound,
        records: 0,
        record_bytes: 0,
        valid_end: SEGMENT_HEADER_LEN,
        sealed: false,
        skipped: Vec::new(),
        bad_tail: None,
        after_seal: None,
    };
    let mut off = SEGMENT_HEADER_LEN;
    while off < len {
        let pos = Position::new(id, off);
        match frame_at(&mut w, pos, bound).map_err(io)? {
            Some(h) => {
                let next = off + h.frame_len();
                out.valid_end = next;
                match h.kind {
                    FrameKind::Data => {
                        let payload = w
                            .get(off + FRAME_HEADER_LEN as u64, h.len as usize)
                            .map_err(io)?
                            .unwrap_or_default();
                        on_record(pos, payload)?;
                        out.records += 1;
                        out.record_bytes += u64::from(h.len);
                    }
                    FrameKind::Seal => {
                        out.sealed = true;
                        if next < len {
                            out.after_seal = Some(next);
                        }
                        break;
                    }
                }
                off = next;
            }
            None => match resync(&mut w, id, off + 1, bound).map_err(io)? {
                Some(next) => {
                    out.skipped.push((off, next - off));
                    off = next;
                }
                None => {
                    out.bad_tail = Some(off);
                    break;
                }
            },
        }
    }
    Ok(out)
}

/// The verified header of the frame at `pos`, if a whole valid frame is there.
fn frame_at<S: Source + ?Sized>(
    w: &mut Window<'_, S>,
    pos: Position,
    bound: u32,
) -> io::Result<Option<FrameHeader>> {
    let Some(bytes) = w.get(pos.offset, FRAME_HEADER_LEN)? else {
        return Ok(None);
    };
    let Some(h) = decode_frame_header(bytes, pos, bound) else {
        return Ok(None);
    };
    let Some(payload) = w.get(pos.offset + FRAME_HEADER_LEN as u64, h.len as usize)? else {
        return Ok(None);
    };
    Ok(payload_matches(&h, payload).then_some(h))
}

/// The offset of the first valid frame at or after `from`, if any.
fn resync<S: Source + ?Sized>(
    w: &mut Window<'_, S>,
    id: u64,
    from: u64,
    bound: u32,
) -> io::Result<Option<u64>> {
    let mut at = from;
    loop {
        let chunk = w.chunk(at)?;
        if chunk.len() < FRAME_HEADER_LEN {
            return Ok(None);
        }
        let found = chunk
            .windows(FRAME_MAGIC.len())
            .position(|c| c == FRAME_MAGIC);
        let step = chunk.len() - (FRAME_MAGIC.len() - 1);
        match found {
            Some(i) => {
                let candidate = at + i as u64;
                if frame_at(w, Position::new(id, candidate), bound)?.is_some() {
                    return Ok(Some(candidate));
                }
                at = candidate + 1;
            }
            // The last three bytes may start a magic that straddles into the next chunk.
            None => at += step as u64,
        }
    }
}

/// A read-ahead window over a [`Source`].
struct Window<'a, S: Source + ?Sized> {
    src: &'a S,
    len: u64,
    start: u64,
    buf: Vec<u8>,
}

impl<'a, S: Source + ?Sized> Window<'a, S> {
    fn new(src: &'a S) -> Self {
        Window {
            len: src.len(),
            src,
            start: 0,
            buf: Vec::new(),
        }
    }

    /// Bytes `[off, off + n)`, or `None` if they are not all within the source.
    fn get(&mut self, off: u64, n: usize) -> io::Result<Option<&[u8]>> {
        let Some(end) = off.checked_add(n as u64) else {
            return Ok(None);
        };
        if end > self.len {
            return Ok(None);
        }
        if off < self.start || end > self.start + self.buf.len() as u64 {
            self.load(off, n)?;
        }
        let at = (off - self.start) as usize;
        Ok(self.buf.get(at..at + n))
    }

    /// The bytes from `off` to the end of the window (loading a new window if few are left).
    fn chunk(&mut self, off: u64) -> io::Result<&[u8]> {
        if off >= self.len {
            return Ok(&[]);
        }
        let window_end = self.start + self.buf.len() as u64;
        let enough = (window_end.saturating_sub(off) as usize >= FRAME_HEADER_LEN * 4)
            || window_end == self.len;
        if off < self.start || off >= window_end || !enough {
            self.load(off, 0)?;
        }
        let at = (off - self.start) as usize;
        Ok(self.buf.get(at..).unwrap_or_default())
    }

    fn load(&mut self, off: u64, at_least: usize) -> io::Result<()> {
        let n = (at_least.max(WINDOW) as u64).min(self.len - off) as usize;
        self.buf.resize(n, 0);
        self.src.read_exact_at(&mut self.buf, off)?;
        self.start = off;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::store::record::{encode_frame, encode_segment_header};

    /// A segment holding `records`, and each record's offset.
    fn segment(id: u64, records: &[&[u8]], seal: bool) -> (Vec<u8>, Vec<u64>) {
        let mut bytes = encode_segment_header(id, 1000).to_vec();
        let mut offsets = Vec::new();
        for r in records {
            offsets.push(bytes.len() as u64);
            let pos = Position::new(id, bytes.len() as u64);
            encode_frame(&mut bytes, pos, FrameKind::Data, r);
        }
        if seal {
            let pos = Position::new(id, bytes.len() as u64);
            encode_frame(&mut bytes, pos, FrameKind::Seal, b"");
        }
        (bytes, offsets)
    }

    fn collect(id: u64, bytes: &[u8]) -> (SegmentScan, Vec<(u64, Vec<u8>)>) {
        let mut seen = Vec::new();
        let scan = scan(id, Path::new("seg"), bytes, 1000, |pos, p| {
            seen.push((pos.offset, p.to_vec()));
            Ok(())
        })
        .expect("scan of memory cannot fail");
        (scan, seen)
    }

    #[test]
    fn clean_segment() {
        let (bytes, offsets) = segment(5, &[b"a", b"bb", b""], true);
        let (s, seen) = collect(5, &bytes);
        assert_eq!(s.header.map(|h| h.id), Ok(5));
        assert_eq!((s.records, s.record_bytes, s.sealed), (3, 3, true));
        assert_eq!(s.valid_end, bytes.len() as u64);
        assert!(s.skipped.is_empty() && s.bad_tail.is_none() && s.after_seal.is_none());
        assert_eq!(seen.iter().map(|r| r.0).collect::<Vec<_>>(), offsets);
    }

    #[test]
    fn flipped_byte_is_skipped_and_the_rest_kept() {
        let (mut bytes, offsets) = segment(1, &[b"one", b"two", b"three"], false);
        bytes[offsets[1] as usize + FRAME_HEADER_LEN + 1] ^= 0x01;
        let (s, seen) = collect(1, &bytes);
        assert_eq!(s.skipped, vec![(offsets[1], offsets[2] - offsets[1])]);
        assert_eq!(
            seen,
            vec![
                (offsets[0], b"one".to_vec()),
                (offsets[2], b"three".to_vec())
            ]
        );
        assert_eq!(s.bad_tail, None);
    }

    #[test]
    fn cut_record_is_a_bad_tail() {
        let (bytes, offsets) = segment(1, &[b"one", b"two"], false);
        let cut = &bytes[..bytes.len() - 1];
        let (s, seen) = collect(1, cut);
        assert_eq!(seen.len(), 1);
        assert_eq!(s.bad_tail, Some(offsets[1]));
        assert_eq!(s.valid_end, offsets[1]);
    }

    #[test]
    fn a_frame_copied_to_another_offset_does_not_verify() {
        let (bytes, offsets) = segment(1, &[b"one"], false);
        let mut shifted = bytes[..offsets[0] as usize].to_vec();
        shifted.extend_from_slice(b"xx");
        shifted.extend_from_slice(&bytes[offsets[0] as usize..]);
        let (s, seen) = collect(1, &shifted);
        assert!(seen.is_empty());
        assert_eq!(s.bad_tail, Some(offsets[0]));
    }

    #[test]
    fn damaged_header_still_scans_records() {
        let (mut bytes, _) = segment(2, &[b"x"], false);
        bytes[0] = b'X';
        let (s, seen) = collect(2, &bytes);
        assert!(s.header.is_err());
        assert_eq!(seen.len(), 1);
    }

    #[test]
    fn resync_across_many_windows() {
        // A damaged region longer than the read window, then a valid record.
        let id = 3;
        let mut bytes = encode_segment_header(id, 1000).to_vec();
        bytes.extend(std::iter::repeat_n(0xD0u8, WINDOW + 123));
        let at = bytes.len() as u64;
        encode_frame(&mut bytes, Position::new(id, at), FrameKind::Data, b"after");
        let (s, seen) = collect(id, &bytes);
        assert_eq!(
            s.skipped,
            vec![(SEGMENT_HEADER_LEN, at - SEGMENT_HEADER_LEN)]
        );
        assert_eq!(seen, vec![(at, b"after".to_vec())]);
    }

    #[test]
    fn segment_source_spans_file_and_tail() {
        use crate::store::fs::{Fs, OpenMode};
        use crate::store::sim_fs::SimFs;
        let fs = SimFs::new();
        fs.create_dir_all(Path::new("/d")).expect("mkdir");
        let f = fs
            .open(Path::new("/d/f"), OpenMode::CreateNew)
            .expect("create");
        f.write_all_at(b"abcdefXX", 0).expect("write");
        let src = SegmentSource {
            file: &*f,
            file_len: 6,
            tail: b"ghi",
        };
        assert_eq!(src.len(), 9);
        let mut buf = [0u8; 5];
        src.read_exact_at(&mut buf, 3).expect("read");
        assert_eq!(&buf, b"defgh");
        let mut buf = [0u8; 2];
        src.read_exact_at(&mut buf, 7).expect("read");
        assert_eq!(&buf, b"hi");
        assert!(src.read_exact_at(&mut buf, 8).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Damage anywhere: the scan never panics, every record it returns is one that was
        /// written at that offset, and records outside the damage all come back.
        #[test]
        fn damage_never_yields_a_record_that_was_not_written(
            records in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 1..12),
            at in any::<prop::sample::Index>(),
            len in 0usize..60,
            fill in any::<u8>(),
            truncate in any::<Option<prop::sample::Index>>(),
        ) {
            let refs: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
            let (mut bytes, offsets) = segment(9, &refs, false);
            let start = SEGMENT_HEADER_LEN as usize + at.index(bytes.len() - SEGMENT_HEADER_LEN as usize);
            let end = (start + len).min(bytes.len());
            for b in &mut bytes[start..end] { *b = fill; }
            if let Some(t) = truncate { bytes.truncate(t.index(bytes.len() + 1)); }
            let (_, seen) = collect(9, &bytes);
            for (off, payload) in &seen {
                let i = offsets.iter().position(|o| o == off).expect("a written offset");
                prop_assert_eq!(payload, &records[i]);
            }
            for (i, off) in offsets.iter().enumerate() {
                let frame_end = *off as usize + FRAME_HEADER_LEN + records[i].len();
                let untouched = (frame_end <= start || *off as usize >= end || start == end)
                    && frame_end <= bytes.len();
                if untouched {
                    prop_assert!(seen.iter().any(|(o, _)| o == off), "record at {} lost", off);
                }
            }
        }
    }
}
