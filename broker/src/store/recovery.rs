//! Opening a log directory: scan every segment, repair what a crash can leave, report the rest.
//!
//! What recovery does, segment by segment (all of it reported in [`RecoveryReport`]):
//!
//! - A damaged region followed by a valid record (a flipped bit, a bad sector) is skipped:
//!   [`ProblemKind::CorruptRecord`]. The records after it are kept, in every segment.
//! - A damaged region reaching the end of the **last** segment is a write the crash tore: it is
//!   truncated ([`ProblemKind::TornTail`]) and new records go after the last valid one. So are
//!   bytes after the seal of the last segment (a seal written just before the crash).
//! - A finished segment (any but the last) must end with a seal frame; if its end is missing or
//!   damaged it is reported as [`ProblemKind::TruncatedSegment`] and left as it is (recovery
//!   never rewrites a finished segment).
//! - A damaged segment header is reported ([`ProblemKind::BadHeader`]) and the segment's records
//!   are still checked one by one (their checksums cover the segment id, not the header). A last
//!   segment with a damaged header and no record is a creation the crash cut short: it is
//!   rewritten.
//! - Gaps in the segment ids after the checkpoint ([`ProblemKind::MissingSegments`]), a damaged
//!   checkpoint ([`ProblemKind::BadCheckpoint`]) and a checkpoint beyond the end of the log
//!   ([`ProblemKind::CheckpointAhead`]) are reported; a leftover `checkpoint.tmp` is removed.
//!
//! Appending continues in the last segment, unless it is sealed, has a damaged header or a
//! smaller record bound than asked for, or the checkpoint is ahead of it; then it is sealed (if
//! it is not yet) and a new segment is created (file and directory fsynced). Either way the last
//! segment is fsynced first: a process that crashed may have left written but unsynced data in
//! the page cache, which the new process is about to treat as durable.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use super::checkpoint::{self, CHECKPOINT_TEMP};
use super::error::StoreError;
use super::fs::{Fs, OpenMode};
use super::position::Position;
use super::record::{
    FrameKind, HeaderError, SEGMENT_HEADER_LEN, encode_frame, encode_segment_header,
    parse_segment_file_name, segment_file_name,
};
use super::scan::{SegmentScan, SegmentSource, scan};
use super::segment::Segment;

/// What [`Log::open`](super::Log::open) found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RecoveryReport {
    /// Segment files in the log after recovery (including one it created).
    pub(crate) segments: usize,
    /// Valid records found.
    pub(crate) records: u64,
    /// Their payload bytes.
    pub(crate) bytes: u64,
    /// Everything that was not as a clean shutdown leaves it, in log order (checkpoint problems
    /// first).
    pub(crate) problems: Vec<RecoveryProblem>,
    /// Where the next record goes.
    pub(crate) end: Position,
    /// The position the checkpoint covers up to, if there is a valid one.
    pub(crate) checkpoint: Option<Position>,
    /// A temporary checkpoint from an interrupted checkpoint write was removed.
    pub(crate) removed_temp_checkpoint: bool,
}

impl RecoveryReport {
    /// Whether recovery found nothing to report.
    pub(crate) fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

impl fmt::Display for RecoveryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "recovered {} records ({} bytes) in {} segments, ending at {}; {} problems",
            self.records,
            self.bytes,
            self.segments,
            self.end,
            self.problems.len()
        )
    }
}

/// One thing recovery found wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RecoveryProblem {
    /// The segment concerned (for checkpoint problems, the checkpoint's segment).
    pub(crate) segment: u64,
    /// Where in it the problem starts.
    pub(crate) offset: u64,
    /// How many bytes were truncated, skipped or ignored (0 when none were present).
    pub(crate) bytes: u64,
    /// What it is.
    pub(crate) kind: ProblemKind,
}

/// The kinds of [`RecoveryProblem`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProblemKind {
    /// Damage at the end of the last segment — a write the crash interrupted — truncated.
    /// (Damage to the very last record of the log looks the same and is treated the same.)
    TornTail,
    /// A damaged region followed by valid records: skipped, the records after it kept.
    CorruptRecord,
    /// A finished segment whose end is missing or damaged (no seal): the records that were in
    /// the lost part are gone.
    TruncatedSegment,
    /// A damaged or foreign segment header; the segment's records were still checked.
    BadHeader(HeaderError),
    /// Bytes after the seal of a finished segment (not the last one), ignored.
    AfterSeal,
    /// Segment files missing from the middle of the log (`count` of them from `segment` on).
    MissingSegments {
        /// How many consecutive ids are missing.
        count: u64,
    },
    /// The checkpoint file is damaged; [`Log::checkpoint`](super::Log::checkpoint) reports it.
    BadCheckpoint(&'static str),
    /// The checkpoint covers records beyond the end of the log, so records were lost; new
    /// records start in a new segment after the checkpoint's position.
    CheckpointAhead,
}

impl fmt::Display for RecoveryProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (seg, off, n) = (self.segment, self.offset, self.bytes);
        match self.kind {
            ProblemKind::TornTail => write!(
                f,
                "segment {seg} offset {off}: torn tail, {n} bytes truncated (a write cut short by a crash)"
            ),
            ProblemKind::CorruptRecord => write!(
                f,
                "segment {seg} offset {off}: {n} damaged bytes skipped; the records after them were kept"
            ),
            ProblemKind::TruncatedSegment => write!(
                f,
                "segment {seg} offset {off}: finished segment ends without its seal ({n} damaged bytes at its end); records after this point in it are lost"
            ),
            ProblemKind::BadHeader(why) => {
                let why = match why {
                    HeaderError::Short => "too short".to_string(),
                    HeaderError::Damaged => "checksum or magic mismatch".to_string(),
                    HeaderError::Version(v) => format!("unknown format version {v}"),
                    HeaderError::WrongId(id) => format!("it names segment {id}"),
                };
                write!(
                    f,
                    "segment {seg}: damaged header ({why}); its records were checked one by one"
                )
            }
            ProblemKind::AfterSeal => write!(
                f,
                "segment {seg} offset {off}: {n} unexpected bytes after the seal ignored"
            ),
            ProblemKind::MissingSegments { count } => write!(
                f,
                "segment {seg}: {count} segment file(s) missing from the log from here on; their records are lost"
            ),
            ProblemKind::BadCheckpoint(why) => write!(f, "checkpoint is damaged: {why}"),
            ProblemKind::CheckpointAhead => write!(
                f,
                "checkpoint covers the log up to {seg}:{off}, beyond its end: records were lost; new records start after it"
            ),
        }
    }
}

/// The state a recovered log starts from.
pub(crate) struct Recovered {
    /// Every segment, the active one last.
    pub(crate) segments: BTreeMap<u64, Segment>,
    /// The segment to append to.
    pub(crate) active: u64,
    /// What was found and done.
    pub(crate) report: RecoveryReport,
    /// Size of the checkpoint file (0 if none).
    pub(crate) checkpoint_bytes: u64,
}

fn problem(segment: u64, offset: u64, bytes: u64, kind: ProblemKind) -> RecoveryProblem {
    RecoveryProblem {
        segment,
        offset,
        bytes,
        kind,
    }
}

/// Recovers the log in `dir` (see the module docs); `max_record` is the record bound new
/// segments get, and the bound assumed for segments whose header is unreadable.
pub(crate) fn recover(fs: &dyn Fs, dir: &Path, max_record: u32) -> Result<Recovered, StoreError> {
    fs.create_dir_all(dir)
        .map_err(|e| StoreError::io("create directory", dir, e))?;
    let names = fs.list(dir).map_err(|e| StoreError::io("list", dir, e))?;
    let mut report = RecoveryReport::default();
    let mut dir_dirty = false;

    if names.iter().any(|n| n == CHECKPOINT_TEMP) {
        let temp = dir.join(CHECKPOINT_TEMP);
        fs.remove(&temp)
            .map_err(|e| StoreError::io("remove", &temp, e))?;
        report.removed_temp_checkpoint = true;
        dir_dirty = true;
    }
    let mut checkpoint_bytes = 0;
    match checkpoint::read(fs, dir) {
        Ok(Some((upto, state))) => {
            report.checkpoint = Some(upto);
            checkpoint_bytes = checkpoint::encoded_len(state.len());
        }
        Ok(None) => {}
        Err(StoreError::CorruptCheckpoint { reason, .. }) => {
            report
                .problems
                .push(problem(0, 0, 0, ProblemKind::BadCheckpoint(reason)));
        }
        Err(e) => return Err(e),
    }

    let mut ids: Vec<u64> = names
        .iter()
        .filter_map(|n| parse_segment_file_name(n))
        .collect();
    ids.sort_unstable();
    let mut segments = BTreeMap::new();
    // Segments before the checkpoint's may have been removed on purpose.
    let mut expected = report.checkpoint.map(|c| c.segment);
    let mut last_scan = None;
    for (i, &id) in ids.iter().enumerate() {
        let is_last = i + 1 == ids.len();
        if let Some(first_missing) = expected
            && first_missing < id
        {
            report.problems.push(problem(
                first_missing,
                0,
                0,
                ProblemKind::MissingSegments {
                    count: id - first_missing,
                },
            ));
        }
        expected = Some(id.saturating_add(1));
        let path = dir.join(segment_file_name(id));
        let file = fs
            .open(&path, OpenMode::Existing)
            .map_err(|e| StoreError::io("open", &path, e))?;
        let len = file.len().map_err(|e| StoreError::io("stat", &path, e))?;
        let src = SegmentSource {
            file: &*file,
            file_len: len,
            tail: &[],
        };
        let found = scan(id, &path, &src, max_record, |_, _| Ok(()))?;
        report_segment(&mut report.problems, id, len, is_last, &found);
        report.records += found.records;
        report.bytes += found.record_bytes;
        segments.insert(
            id,
            Segment {
                id,
                path,
                file,
                len,
                records: found.records,
                bound: found.bound,
            },
        );
        if is_last {
            last_scan = Some(found);
        }
    }

    let mut active = None;
    let mut last_sealed = true;
    let next_id = ids.last().map_or(0, |l| l.saturating_add(1));
    if let (Some(found), Some(segment)) = (last_scan, segments.values_mut().next_back()) {
        let torn_creation = torn_creation(&found);
        if torn_creation {
            if segment.len > 0 {
                report
                    .problems
                    .push(problem(segment.id, 0, segment.len, ProblemKind::TornTail));
            }
            segment
                .file
                .set_len(0)
                .map_err(|e| StoreError::io("truncate", &segment.path, e))?;
            segment
                .file
                .write_all_at(&encode_segment_header(segment.id, max_record), 0)
                .map_err(|e| StoreError::io("write", &segment.path, e))?;
            segment.len = SEGMENT_HEADER_LEN;
            segment.bound = max_record;
        } else if found.bad_tail.is_some() || found.after_seal.is_some() {
            segment
                .file
                .set_len(found.valid_end)
                .map_err(|e| StoreError::io("truncate", &segment.path, e))?;
            segment.len = found.valid_end;
        }
        last_sealed = found.sealed;
        let usable =
            (torn_creation || found.header.is_ok()) && !found.sealed && segment.bound >= max_record;
        if usable {
            active = Some(Position::new(segment.id, segment.len));
        }
    }

    let mut new_id = next_id;
    if let Some(c) = report.checkpoint {
        let end = active.unwrap_or(Position::new(next_id, SEGMENT_HEADER_LEN));
        if c > end {
            report.problems.push(problem(
                c.segment,
                c.offset,
                0,
                ProblemKind::CheckpointAhead,
            ));
            active = None;
            new_id = new_id.max(c.segment.saturating_add(1));
        }
    }
    if let Some(segment) = segments.values_mut().next_back() {
        if active.is_none() && !last_sealed {
            // Appending moves on to a new segment: finish this one, so that it reads as
            // complete next time.
            let mut seal = Vec::new();
            encode_frame(
                &mut seal,
                Position::new(segment.id, segment.len),
                FrameKind::Seal,
                &[],
            );
            segment
                .file
                .write_all_at(&seal, segment.len)
                .map_err(|e| StoreError::io("write", &segment.path, e))?;
            segment.len += seal.len() as u64;
        }
        segment
            .file
            .sync_data()
            .map_err(|e| StoreError::io("fdatasync", &segment.path, e))?;
    }
    let end = match active {
        Some(end) => end,
        None => {
            let segment = Segment::create(fs, dir, new_id, max_record)?;
            segment
                .file
                .sync_data()
                .map_err(|e| StoreError::io("fdatasync", &segment.path, e))?;
            dir_dirty = true;
            segments.insert(new_id, segment);
            Position::new(new_id, SEGMENT_HEADER_LEN)
        }
    };
    if dir_dirty {
        fs.sync_dir(dir)
            .map_err(|e| StoreError::io("fsync directory", dir, e))?;
    }
    report.segments = segments.len();
    report.end = end;
    Ok(Recovered {
        segments,
        active: end.segment,
        report,
        checkpoint_bytes,
    })
}

/// Turns one segment's scan into problems (the last segment's torn tail included; the caller
/// truncates it).
fn report_segment(
    problems: &mut Vec<RecoveryProblem>,
    id: u64,
    len: u64,
    is_last: bool,
    found: &SegmentScan,
) {
    let torn_creation = is_last && torn_creation(found);
    if let Err(why) = found.header
        && !torn_creation
    {
        problems.push(problem(
            id,
            0,
            len.min(SEGMENT_HEADER_LEN),
            ProblemKind::BadHeader(why),
        ));
    }
    for &(offset, bytes) in &found.skipped {
        problems.push(problem(id, offset, bytes, ProblemKind::CorruptRecord));
    }
    if let Some(offset) = found.after_seal {
        // In the last segment, a seal that was being written when the crash came, torn after it.
        let kind = if is_last {
            ProblemKind::TornTail
        } else {
            ProblemKind::AfterSeal
        };
        problems.push(problem(id, offset, len - offset, kind));
    }
    match found.bad_tail {
        // Reported once, as the whole file, by the caller.
        Some(_) if torn_creation => {}
        Some(offset) if is_last => {
            problems.push(problem(id, offset, len - offset, ProblemKind::TornTail));
        }
        Some(offset) => {
            problems.push(problem(
                id,
                offset,
                len - offset,
                ProblemKind::TruncatedSegment,
            ));
        }
        None if !is_last && !found.sealed => {
            problems.push(problem(
                id,
                found.valid_end,
                0,
                ProblemKind::TruncatedSegment,
            ));
        }
        None => {}
    }
}

/// Whether a last segment looks like a creation the crash cut short: no usable header and
/// nothing valid in it.
fn torn_creation(found: &SegmentScan) -> bool {
    found.header.is_err() && found.records == 0 && found.skipped.is_empty() && !found.sealed
}
