//! The log: append, commit, read, replay, checkpoint, and segment removal.
//!
//! One task owns a [`Log`] (`&mut self` for every write); the only other party is its sync
//! thread (see `sync.rs`). Appends go to an in-memory buffer of encoded frames; [`Log::commit`]
//! writes the whole buffer with one `pwrite` at the end of the active segment and asks the sync
//! thread to make it durable, which it reports through the `notify` callback given to
//! [`Log::open`]. Reads use `pread` on the segment files (a window of up to 256 KiB at a
//! time, which serves the records after the one asked for too: `read_ahead.rs`), or the
//! buffer for records not written yet, and verify checksums.
//!
//! Rolling to a new segment happens inside [`Log::append`] when the next frame would not fit
//! (a record larger than a whole segment gets a segment of its own): the full segment gets its
//! seal frame, is written and **made durable before the new segment file is created** — the
//! owner waits for the sync thread for that one fsync. So no byte of a segment can reach the
//! disk before every earlier segment is complete on it, and recovery can read any damage in a
//! finished segment as damage, never as a crash artefact.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::checkpoint;
use super::error::StoreError;
use super::fs::Fs;
use super::position::Position;
use super::read_ahead::ReadAhead;
use super::record::{
    FRAME_HEADER_LEN, FrameHeader, FrameKind, MAX_RECORD_LIMIT, SEGMENT_HEADER_LEN,
    decode_frame_header, encode_frame, payload_matches,
};
use super::recovery::{RecoveryReport, recover};
use super::scan::{SegmentSource, scan};
use super::segment::Segment;
use super::sync::{Notify, Syncer};

/// A buffer kept after a commit at most this large (a burst may have grown it further).
const KEEP_BUFFER: usize = 1 << 20;

/// Sizes that shape the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LogOptions {
    /// A segment is finished once the next record would take it past this size (64 MiB by
    /// default: large enough that rolling — one extra fsync and a directory fsync — is rare,
    /// small enough that removing a finished segment frees space promptly).
    pub(crate) segment_bytes: u64,
    /// The largest record [`Log::append`] accepts (4 MiB by default). Each segment records the
    /// bound it was created with, and recovery bounds record lengths by it, so lowering this
    /// never makes stored records unreadable.
    pub(crate) max_record_bytes: u32,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            segment_bytes: 64 << 20,
            max_record_bytes: 4 << 20,
        }
    }
}

impl LogOptions {
    fn validate(&self) -> Result<(), StoreError> {
        if self.max_record_bytes == 0 || self.max_record_bytes > MAX_RECORD_LIMIT {
            return Err(StoreError::InvalidOptions(
                "max_record_bytes must be between 1 byte and 1 GiB",
            ));
        }
        if self.segment_bytes < SEGMENT_HEADER_LEN + 2 * FRAME_HEADER_LEN as u64 {
            return Err(StoreError::InvalidOptions(
                "segment_bytes must leave room for a record and a seal",
            ));
        }
        Ok(())
    }
}

/// One segment as reported for metrics and garbage collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentInfo {
    /// The segment's id.
    pub(crate) id: u64,
    /// Its size in bytes (for the active segment, including appended but unwritten records).
    pub(crate) bytes: u64,
    /// The records in it.
    pub(crate) records: u64,
}

/// A segmented, checksummed, group-committed append-only log in one directory.
pub(crate) struct Log {
    fs: Arc<dyn Fs>,
    dir: PathBuf,
    opts: LogOptions,
    /// Every segment on disk; the active one is the last.
    segments: BTreeMap<u64, Segment>,
    /// The id of the segment appends go to.
    active: u64,
    /// Frames appended since the last commit; they follow the active segment's `len`.
    buf: Vec<u8>,
    /// Size of the checkpoint file, for [`Log::bytes_on_disk`].
    checkpoint_bytes: u64,
    /// The group-commit thread.
    syncer: Syncer,
    /// Written bytes read ahead for the next reads (see `read_ahead.rs`); a `RefCell` because
    /// reading takes `&self`, and only the owner's thread uses the log.
    ahead: RefCell<ReadAhead>,
}

impl Log {
    /// Opens the log in `dir` (creating the directory if absent) and recovers it: every segment
    /// is scanned and every record's checksum verified; a torn tail of the last segment is
    /// truncated, damaged regions elsewhere are skipped, and all of it is reported (see the
    /// `recovery` module). Everything recovered is on disk when this returns.
    ///
    /// `notify` receives the [`SyncEvent`](super::SyncEvent)s: on the sync thread, or on the
    /// caller's thread for a failure the caller hits itself; always with an internal lock held,
    /// so it must be quick, must not block and must not call into the log — forwarding into an
    /// unbounded channel is the intended use.
    pub(crate) fn open(
        fs: Arc<dyn Fs>,
        dir: &Path,
        opts: LogOptions,
        notify: Notify,
    ) -> Result<(Log, RecoveryReport), StoreError> {
        opts.validate()?;
        let recovered = recover(&*fs, dir, opts.max_record_bytes)?;
        let end = recovered.report.end;
        let active = recovered
            .segments
            .get(&end.segment)
            .expect("recovery always leaves the active segment in the map");
        let syncer = Syncer::start(
            Arc::clone(&fs),
            dir,
            Arc::clone(&active.file),
            active.path.clone(),
            end,
            notify,
        )?;
        let log = Log {
            fs,
            dir: dir.to_path_buf(),
            opts,
            segments: recovered.segments,
            active: recovered.active,
            buf: Vec::new(),
            checkpoint_bytes: recovered.checkpoint_bytes,
            syncer,
            ahead: RefCell::default(),
        };
        Ok((log, recovered.report))
    }

    /// The latest checkpoint, if any: the position its state covers up to, and the state.
    /// A damaged checkpoint is an error ([`StoreError::CorruptCheckpoint`]), not `None`:
    /// segments it covered may be gone, so replaying from the start would not rebuild it.
    pub(crate) fn checkpoint(&self) -> Result<Option<(Position, Vec<u8>)>, StoreError> {
        checkpoint::read(&*self.fs, &self.dir)
    }

    /// Calls `f` for every valid record at or after `from`, in log order, including records
    /// appended but not yet committed. Damaged regions are skipped exactly as recovery reported
    /// them. An error from `f` stops the replay and is returned.
    pub(crate) fn replay(
        &self,
        from: Position,
        mut f: impl FnMut(Position, &[u8]) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        for (&id, segment) in self.segments.range(from.segment..) {
            let tail: &[u8] = if id == self.active { &self.buf } else { &[] };
            let src = SegmentSource {
                file: &*segment.file,
                file_len: segment.len,
                tail,
            };
            scan(id, &segment.path, &src, segment.bound, |pos, payload| {
                if pos >= from { f(pos, payload) } else { Ok(()) }
            })?;
        }
        Ok(())
    }

    /// Appends one record to the buffer and returns its position. Not written, not durable:
    /// see [`Log::commit`]. Rolls to a new segment first when the current one is full, which
    /// waits for the full segment to be durable. Refused once the log is poisoned, or when
    /// the record is larger than `max_record_bytes`.
    pub(crate) fn append(&mut self, record: &[u8]) -> Result<Position, StoreError> {
        self.syncer.check()?;
        if record.len() > self.opts.max_record_bytes as usize {
            return Err(StoreError::TooLarge {
                len: record.len(),
                max: self.opts.max_record_bytes,
            });
        }
        let frame = (FRAME_HEADER_LEN + record.len()) as u64;
        let end = self.end();
        let seal = FRAME_HEADER_LEN as u64;
        if end.offset > SEGMENT_HEADER_LEN && end.offset + frame + seal > self.opts.segment_bytes {
            self.roll()?;
        }
        let pos = self.end();
        encode_frame(&mut self.buf, pos, FrameKind::Data, record);
        self.active_segment_mut().records += 1;
        Ok(pos)
    }

    /// Writes everything appended so far to the OS (one `pwrite`) and asks the sync thread to
    /// make it durable. Returns the end of the written data: a later `Synced(p)` with `p` at or
    /// beyond it reports it durable. A failed write poisons the log (a full disk included:
    /// the error is [`StoreError::NoSpace`]), once what earlier commits wrote is durable: then
    /// [`Log::durable`] says how far the acks may go.
    pub(crate) fn commit(&mut self) -> Result<Position, StoreError> {
        let end = self.end();
        self.commit_upto(end)
    }

    /// [`Log::commit`], asking the sync thread for durability only up to `upto` (at most the
    /// end): the owner knows nothing waits for the records after it, and the next sync covers
    /// them anyway (`fdatasync` covers the whole file). Returns the end of the written data.
    pub(crate) fn commit_upto(&mut self, upto: Position) -> Result<Position, StoreError> {
        self.syncer.check()?;
        self.write_buffer()?;
        let end = self.end();
        self.syncer.request(upto.min(end));
        Ok(end)
    }

    /// Commits and blocks until everything appended is durable (for shutdown and tests; the
    /// broker's hot path uses [`Log::commit`] and the notifications).
    pub(crate) fn sync(&mut self) -> Result<Position, StoreError> {
        let end = self.commit()?;
        self.syncer.wait_durable(end)?;
        Ok(end)
    }

    /// Reads the record at `pos` (`pread` and checksum check, or from the buffer if it is not
    /// written yet).
    pub(crate) fn read(&self, pos: Position) -> Result<Vec<u8>, StoreError> {
        let segment = self
            .segments
            .get(&pos.segment)
            .ok_or(StoreError::NotFound(pos))?;
        if pos.offset < SEGMENT_HEADER_LEN {
            return Err(StoreError::NotFound(pos));
        }
        if pos.segment == self.active && pos.offset >= segment.len {
            let at = usize::try_from(pos.offset - segment.len).unwrap_or(usize::MAX);
            let bytes = self.buf.get(at..).ok_or(StoreError::NotFound(pos))?;
            let header = decode_frame_header(bytes, pos, segment.bound)
                .filter(|h| h.kind == FrameKind::Data)
                .ok_or(StoreError::NotFound(pos))?;
            let payload = bytes
                .get(FRAME_HEADER_LEN..FRAME_HEADER_LEN + header.len as usize)
                .ok_or(StoreError::NotFound(pos))?;
            return Ok(payload.to_vec());
        }
        if pos.offset + FRAME_HEADER_LEN as u64 > segment.len {
            return Err(StoreError::NotFound(pos));
        }
        let io = |e| StoreError::io("read", &segment.path, e);
        let mut ahead = self.ahead.borrow_mut();
        let head_len = FRAME_HEADER_LEN as u64;
        if ahead.get(pos.segment, pos.offset, head_len).is_none()
            && ahead
                .fill(&*segment.file, pos.segment, pos.offset, segment.len)
                .is_err()
        {
            // Read the record on its own: the window's larger read may have hit damage
            // beyond it.
            drop(ahead);
            return read_alone(segment, pos);
        }
        let Some(head) = ahead.get(pos.segment, pos.offset, head_len) else {
            return Err(io(std::io::ErrorKind::UnexpectedEof.into()));
        };
        let header = check_header(head, segment, pos)?;
        match ahead.get(pos.segment, pos.offset + head_len, u64::from(header.len)) {
            Some(payload) => verified(&header, payload.to_vec(), pos),
            // Larger than what the window holds from here: read it on its own.
            None => {
                drop(ahead);
                read_alone(segment, pos)
            }
        }
    }

    /// Atomically replaces the checkpoint: `state` covers every record before `upto`. First
    /// makes the log durable up to `upto` if it is not yet (so a checkpoint never covers
    /// records a crash could lose), then writes a temporary file, fdatasyncs it, renames it over
    /// the old checkpoint and fsyncs the directory. Any I/O failure poisons the log.
    pub(crate) fn write_checkpoint(
        &mut self,
        upto: Position,
        state: &[u8],
    ) -> Result<(), StoreError> {
        self.syncer.check()?;
        let end = self.end();
        if upto > end {
            return Err(StoreError::BeyondEnd { pos: upto, end });
        }
        if upto > self.syncer.durable() {
            self.commit()?;
            self.syncer.wait_durable(upto)?;
        }
        match checkpoint::write(&*self.fs, &self.dir, upto, state) {
            Ok(bytes) => {
                self.checkpoint_bytes = bytes;
                Ok(())
            }
            Err(e) => Err(self.syncer.poison(e)),
        }
    }

    /// Deletes whole segments with an id below `segment` (never the active one), then fsyncs
    /// the directory; returns how many were deleted. The caller guarantees that nothing live is
    /// in them and that a checkpoint covering them is written. A failure poisons the log.
    pub(crate) fn remove_segments_before(&mut self, segment: u64) -> Result<usize, StoreError> {
        self.syncer.check()?;
        let doomed: Vec<u64> = self
            .segments
            .range(..segment.min(self.active))
            .map(|(&id, _)| id)
            .collect();
        if doomed.is_empty() {
            return Ok(0);
        }
        self.ahead.get_mut().forget_before(segment.min(self.active));
        for id in &doomed {
            if let Some(segment) = self.segments.remove(id) {
                match self.fs.remove(&segment.path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(self
                            .syncer
                            .poison(StoreError::io("remove", &segment.path, e)));
                    }
                }
            }
        }
        if let Err(e) = self.fs.sync_dir(&self.dir) {
            return Err(self
                .syncer
                .poison(StoreError::io("fsync directory", &self.dir, e)));
        }
        Ok(doomed.len())
    }

    /// Bytes appended and not yet written (the next [`Log::commit`]'s write).
    pub(crate) fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Where the next record goes.
    pub(crate) fn end(&self) -> Position {
        Position::new(
            self.active,
            self.active_segment().len + self.buf.len() as u64,
        )
    }

    /// Everything before this position is on disk.
    pub(crate) fn durable(&self) -> Position {
        self.syncer.durable()
    }

    /// The failure that poisoned the log, if it is poisoned.
    pub(crate) fn poisoned(&self) -> Option<StoreError> {
        self.syncer.poison_cause()
    }

    /// Every segment, in order.
    pub(crate) fn segments(&self) -> Vec<SegmentInfo> {
        self.segments
            .values()
            .map(|s| SegmentInfo {
                id: s.id,
                bytes: s.len
                    + if s.id == self.active {
                        self.buf.len() as u64
                    } else {
                        0
                    },
                records: s.records,
            })
            .collect()
    }

    /// Bytes written to segment files plus the checkpoint file.
    pub(crate) fn bytes_on_disk(&self) -> u64 {
        self.segments.values().map(|s| s.len).sum::<u64>() + self.checkpoint_bytes
    }

    fn active_segment(&self) -> &Segment {
        self.segments
            .get(&self.active)
            .expect("the active segment is always in the map")
    }

    fn active_segment_mut(&mut self) -> &mut Segment {
        self.segments
            .get_mut(&self.active)
            .expect("the active segment is always in the map")
    }

    /// Writes the buffer at the end of the active segment; a failure poisons the log.
    fn write_buffer(&mut self) -> Result<(), StoreError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let segment = self
            .segments
            .get_mut(&self.active)
            .expect("the active segment is always in the map");
        if let Err(e) = segment.file.write_all_at(&self.buf, segment.len) {
            // What earlier writes put in the file is whole: make it durable before poisoning,
            // so that the acks it earned are released and only this batch fails. A torn tail
            // this write may have left is cut by recovery (bad checksum).
            let written = Position::new(self.active, segment.len);
            self.syncer.request(written);
            let _ = self.syncer.wait_durable(written);
            return Err(self
                .syncer
                .poison(StoreError::io("write", &segment.path, e)));
        }
        segment.len += self.buf.len() as u64;
        self.buf.clear();
        if self.buf.capacity() > 8 * KEEP_BUFFER {
            self.buf.shrink_to(KEEP_BUFFER);
        }
        Ok(())
    }

    /// Seals the active segment, makes it durable, and starts the next one.
    fn roll(&mut self) -> Result<(), StoreError> {
        let seal_at = self.end();
        encode_frame(&mut self.buf, seal_at, FrameKind::Seal, &[]);
        self.write_buffer()?;
        let sealed = self.end();
        self.syncer.request(sealed);
        self.syncer.wait_durable(sealed)?;
        let id = self.active.saturating_add(1);
        let segment = Segment::create(&*self.fs, &self.dir, id, self.opts.max_record_bytes)
            .map_err(|e| self.syncer.poison(e))?;
        self.syncer.switch_file(
            Arc::clone(&segment.file),
            segment.path.clone(),
            Position::new(id, SEGMENT_HEADER_LEN),
        );
        self.segments.insert(id, segment);
        self.active = id;
        Ok(())
    }
}

/// The record at `pos`, read from `segment`'s file with a `pread` for its header and one for
/// its payload.
fn read_alone(segment: &Segment, pos: Position) -> Result<Vec<u8>, StoreError> {
    let io = |e| StoreError::io("read", &segment.path, e);
    let mut head = [0u8; FRAME_HEADER_LEN];
    segment
        .file
        .read_exact_at(&mut head, pos.offset)
        .map_err(io)?;
    let header = check_header(&head, segment, pos)?;
    let mut payload = vec![0u8; header.len as usize];
    segment
        .file
        .read_exact_at(&mut payload, pos.offset + FRAME_HEADER_LEN as u64)
        .map_err(io)?;
    verified(&header, payload, pos)
}

/// The header of the data record at `pos` of `segment`, if `head` is one that fits in what the
/// segment's file holds.
fn check_header(head: &[u8], segment: &Segment, pos: Position) -> Result<FrameHeader, StoreError> {
    let header = decode_frame_header(head, pos, segment.bound).ok_or(StoreError::Corrupt {
        pos,
        reason: "no valid frame header at this position",
    })?;
    if header.kind != FrameKind::Data {
        return Err(StoreError::NotFound(pos));
    }
    if pos.offset + header.frame_len() > segment.len {
        return Err(StoreError::Corrupt {
            pos,
            reason: "record runs past the end of its segment",
        });
    }
    Ok(header)
}

/// `payload` if its checksum matches `header`'s.
fn verified(header: &FrameHeader, payload: Vec<u8>, pos: Position) -> Result<Vec<u8>, StoreError> {
    if !payload_matches(header, &payload) {
        return Err(StoreError::Corrupt {
            pos,
            reason: "payload checksum mismatch",
        });
    }
    Ok(payload)
}
