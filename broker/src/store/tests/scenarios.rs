//! Scenarios on real files: damage a closed log the way disks and crashes do, reopen it, and
//! check what recovery reports and what replay returns.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::events;
use crate::store::record::{FRAME_HEADER_LEN, SEGMENT_HEADER_LEN, segment_file_name};
use crate::store::{
    Log, LogOptions, Position, ProblemKind, RecoveryProblem, RecoveryReport, SegmentInfo, StdFs,
    StoreError, SyncEvent,
};

/// Small segments so a few records span several of them.
const SMALL: LogOptions = LogOptions {
    segment_bytes: 256,
    max_record_bytes: 1000,
};

fn open(dir: &Path, opts: LogOptions) -> (Log, RecoveryReport) {
    let (notify, _events) = events();
    Log::open(Arc::new(StdFs), dir, opts, notify).expect("open")
}

fn record(i: usize) -> Vec<u8> {
    format!("record number {i:04} with some payload").into_bytes()
}

/// Writes `n` records, makes them durable and closes the log; returns their positions.
fn write_log(dir: &Path, opts: LogOptions, n: usize) -> Vec<Position> {
    let (mut log, report) = open(dir, opts);
    assert!(report.is_clean(), "{:?}", report.problems);
    let positions = (0..n)
        .map(|i| log.append(&record(i)).expect("append"))
        .collect();
    log.sync().expect("sync");
    positions
}

fn replay_all(log: &Log) -> Vec<(Position, Vec<u8>)> {
    let mut out = Vec::new();
    log.replay(Position::START, |pos, r| {
        out.push((pos, r.to_vec()));
        Ok(())
    })
    .expect("replay");
    out
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(segment_file_name(id))
}

fn kinds(report: &RecoveryReport) -> Vec<ProblemKind> {
    report.problems.iter().map(|p| p.kind).collect()
}

#[test]
fn clean_reopen_replays_everything_and_appends_after() {
    let dir = tempfile::tempdir().expect("tempdir");
    let positions = write_log(dir.path(), SMALL, 20);
    let (mut log, report) = open(dir.path(), SMALL);
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.records, 20);
    assert!(
        report.segments > 2,
        "small segments roll: {}",
        report.segments
    );
    let got = replay_all(&log);
    assert_eq!(got.len(), 20);
    for (i, (pos, r)) in got.iter().enumerate() {
        assert_eq!((*pos, r), (positions[i], &record(i)));
        assert_eq!(log.read(*pos).expect("read"), record(i));
    }
    let next = log.append(b"after").expect("append");
    assert!(next > positions[19]);
    assert_eq!(log.durable(), report.end);
    assert_eq!(next, report.end);
}

#[test]
fn flipped_byte_in_a_finished_segment_loses_only_that_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let positions = write_log(dir.path(), SMALL, 20);
    let in_one: Vec<usize> = (0..20).filter(|i| positions[*i].segment == 1).collect();
    assert!(in_one.len() >= 3, "segment 1 holds several records");
    let victim = in_one[1];
    let at = positions[victim];
    let path = segment_path(dir.path(), at.segment);
    let mut bytes = std::fs::read(&path).expect("read");
    bytes[(at.offset as usize) + FRAME_HEADER_LEN + 3] ^= 0x20;
    std::fs::write(&path, bytes).expect("write");

    let (log, report) = open(dir.path(), SMALL);
    let problem = &report.problems[0];
    assert_eq!(
        report.problems,
        vec![RecoveryProblem {
            segment: at.segment,
            offset: at.offset,
            bytes: (FRAME_HEADER_LEN + record(victim).len()) as u64,
            kind: ProblemKind::CorruptRecord,
        }]
    );
    assert!(problem.to_string().contains("skipped"), "{problem}");
    let got: Vec<Vec<u8>> = replay_all(&log).into_iter().map(|(_, r)| r).collect();
    let expected: Vec<Vec<u8>> = (0..20).filter(|i| *i != victim).map(record).collect();
    assert_eq!(got, expected);
    assert!(matches!(log.read(at), Err(StoreError::Corrupt { .. })));
    // Its neighbours still read, whichever is read first (the read-ahead window covers them
    // all).
    for i in [victim + 1, victim - 1] {
        assert_eq!(log.read(positions[i]).expect("read"), record(i));
    }
}

#[test]
fn reads_in_any_order_and_of_any_size_as_the_file_grows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = LogOptions {
        segment_bytes: 4 << 20,
        max_record_bytes: 1 << 20,
    };
    let (mut log, _) = open(dir.path(), opts);
    // Small records around one larger than the read-ahead window, each committed and then
    // everything read back, so windows filled earlier end before the newer records.
    let mut stored = Vec::new();
    for (i, len) in [100, 300, 400 << 10, 50, 70].into_iter().enumerate() {
        let r = vec![i as u8; len];
        let pos = log.append(&r).expect("append");
        log.commit().expect("commit");
        stored.push((pos, r));
        for (p, r) in &stored {
            assert_eq!(&log.read(*p).expect("read"), r);
        }
    }
    for (p, r) in stored.iter().rev() {
        assert_eq!(&log.read(*p).expect("read"), r);
    }
}

#[test]
fn flipped_byte_in_the_last_segment_keeps_the_records_after_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let positions = write_log(dir.path(), LogOptions::default(), 10);
    let at = positions[4];
    let path = segment_path(dir.path(), 0);
    let mut bytes = std::fs::read(&path).expect("read");
    bytes[at.offset as usize + 6] ^= 0x01;
    std::fs::write(&path, bytes).expect("write");
    let (log, report) = open(dir.path(), LogOptions::default());
    assert_eq!(kinds(&report), vec![ProblemKind::CorruptRecord]);
    assert_eq!(replay_all(&log).len(), 9);
}

#[test]
fn torn_last_segment_is_truncated_and_appends_continue_there() {
    let dir = tempfile::tempdir().expect("tempdir");
    let positions = write_log(dir.path(), LogOptions::default(), 10);
    let last = positions[9];
    let path = segment_path(dir.path(), 0);
    let len = std::fs::metadata(&path).expect("stat").len();
    let cut = last.offset + 7;
    OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open")
        .set_len(cut)
        .expect("truncate");

    let (mut log, report) = open(dir.path(), LogOptions::default());
    assert_eq!(kinds(&report), vec![ProblemKind::TornTail]);
    assert_eq!(
        (report.problems[0].offset, report.problems[0].bytes),
        (last.offset, 7)
    );
    assert!(len > cut);
    assert_eq!(std::fs::metadata(&path).expect("stat").len(), last.offset);
    assert_eq!(replay_all(&log).len(), 9);
    assert_eq!(
        log.end(),
        last,
        "the next record takes the torn one's place"
    );
    assert_eq!(log.append(b"new").expect("append"), last);
    log.sync().expect("sync");
    drop(log);

    let (log, report) = open(dir.path(), LogOptions::default());
    assert!(report.is_clean(), "{:?}", report.problems);
    let got = replay_all(&log);
    assert_eq!(got.len(), 10);
    assert_eq!(got[9], (last, b"new".to_vec()));
}

#[test]
fn truncated_middle_segment_is_reported_and_the_rest_replayed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let positions = write_log(dir.path(), SMALL, 20);
    let in_one: Vec<usize> = (0..20).filter(|i| positions[*i].segment == 1).collect();
    assert!(in_one.len() >= 2);
    // Cut segment 1 right after its first record: its other records and its seal are gone.
    let keep_end = positions[in_one[1]].offset;
    let path = segment_path(dir.path(), 1);
    OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open")
        .set_len(keep_end)
        .expect("truncate");

    let (log, report) = open(dir.path(), SMALL);
    assert_eq!(kinds(&report), vec![ProblemKind::TruncatedSegment]);
    assert_eq!(
        (report.problems[0].segment, report.problems[0].offset),
        (1, keep_end)
    );
    let got: Vec<Vec<u8>> = replay_all(&log).into_iter().map(|(_, r)| r).collect();
    let expected: Vec<Vec<u8>> = (0..20)
        .filter(|i| !in_one[1..].contains(i))
        .map(record)
        .collect();
    assert_eq!(got, expected);
}

#[test]
fn garbage_appended_to_the_last_segment_is_a_torn_tail() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_log(dir.path(), SMALL, 20);
    let (log, _) = open(dir.path(), SMALL);
    let last = log.end().segment;
    drop(log);
    let path = segment_path(dir.path(), last);
    let mut bytes = std::fs::read(&path).expect("read");
    let before = bytes.len() as u64;
    bytes.extend_from_slice(&[0xD0, b'P', b'L', b'R', 9, 9, 9, 9, 0xFF, 0, 1, 2, 3]);
    std::fs::write(&path, bytes).expect("write");

    let (log, report) = open(dir.path(), SMALL);
    assert_eq!(kinds(&report), vec![ProblemKind::TornTail]);
    assert_eq!(
        (report.problems[0].offset, report.problems[0].bytes),
        (before, 13)
    );
    assert_eq!(replay_all(&log).len(), 20);
    drop(log);
    let (_, report) = open(dir.path(), SMALL);
    assert!(report.is_clean(), "truncated once: {:?}", report.problems);
}

#[test]
fn garbage_after_a_seal_is_ignored_or_truncated_in_the_last_segment() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_log(dir.path(), SMALL, 20);
    let path = segment_path(dir.path(), 0);
    let mut bytes = std::fs::read(&path).expect("read");
    let sealed_len = bytes.len() as u64;
    bytes.extend_from_slice(b"junk");
    std::fs::write(&path, bytes).expect("write");
    let (log, report) = open(dir.path(), SMALL);
    assert_eq!(kinds(&report), vec![ProblemKind::AfterSeal]);
    assert_eq!(report.problems[0].bytes, 4);
    assert_eq!(replay_all(&log).len(), 20);
    drop(log);

    // A crash right after a roll wrote the seal: the last segment is sealed, torn after it.
    let only = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(only.path()).expect("mkdir");
    let mut sealed = std::fs::read(&path).expect("read");
    sealed.truncate(sealed_len as usize);
    sealed.extend_from_slice(&[0xD0, b'P']);
    std::fs::write(segment_path(only.path(), 0), sealed).expect("write");
    let (log, report) = open(only.path(), SMALL);
    assert_eq!(kinds(&report), vec![ProblemKind::TornTail]);
    assert_eq!(report.end, Position::new(1, SEGMENT_HEADER_LEN));
    assert_eq!(
        std::fs::metadata(segment_path(only.path(), 0))
            .expect("stat")
            .len(),
        sealed_len
    );
    assert!(!replay_all(&log).is_empty());
    drop(log);
    let (_, report) = open(only.path(), SMALL);
    assert!(report.is_clean(), "{:?}", report.problems);
}

#[test]
fn damaged_segment_header_keeps_its_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_log(dir.path(), SMALL, 20);
    let path = segment_path(dir.path(), 0);
    let mut bytes = std::fs::read(&path).expect("read");
    bytes[2] ^= 0xFF;
    std::fs::write(&path, bytes).expect("write");
    let (log, report) = open(dir.path(), SMALL);
    assert!(matches!(kinds(&report)[..], [ProblemKind::BadHeader(_)]));
    assert_eq!(replay_all(&log).len(), 20);
}

#[test]
fn missing_middle_segment_is_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let positions = write_log(dir.path(), SMALL, 20);
    std::fs::remove_file(segment_path(dir.path(), 1)).expect("remove");
    let (log, report) = open(dir.path(), SMALL);
    assert_eq!(
        kinds(&report),
        vec![ProblemKind::MissingSegments { count: 1 }]
    );
    let lost = positions.iter().filter(|p| p.segment == 1).count();
    assert_eq!(replay_all(&log).len(), 20 - lost);
}

#[test]
fn checkpoint_and_segment_removal_survive_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut log, _) = open(dir.path(), SMALL);
    for i in 0..15 {
        log.append(&record(i)).expect("append");
    }
    let upto = log.end();
    log.write_checkpoint(upto, b"state after 15")
        .expect("checkpoint");
    assert!(
        log.durable() >= upto,
        "a checkpoint never covers what a crash could lose"
    );
    let before = log.bytes_on_disk();
    let removed = log.remove_segments_before(upto.segment).expect("remove");
    assert_eq!(removed as u64, upto.segment);
    let SegmentInfo { id, bytes, records } = log.segments()[0];
    assert_eq!(id, upto.segment);
    assert_eq!(bytes, upto.offset);
    assert!(records > 0);
    assert!(log.bytes_on_disk() < before);
    for i in 15..20 {
        log.append(&record(i)).expect("append");
    }
    log.sync().expect("sync");
    drop(log);

    let (log, report) = open(dir.path(), SMALL);
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.checkpoint, Some(upto));
    let (at, state) = log.checkpoint().expect("read").expect("present");
    assert_eq!((at, state.as_slice()), (upto, &b"state after 15"[..]));
    let mut after = Vec::new();
    log.replay(at, |_, r| {
        after.push(r.to_vec());
        Ok(())
    })
    .expect("replay");
    assert_eq!(after, (15..20).map(record).collect::<Vec<_>>());
}

#[test]
fn leftover_temp_checkpoint_is_removed_and_damaged_checkpoint_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_log(dir.path(), SMALL, 3);
    std::fs::write(dir.path().join("checkpoint.tmp"), b"half a checkpoint").expect("write");
    std::fs::write(
        dir.path().join("checkpoint"),
        b"not a checkpoint at all, too",
    )
    .expect("write");
    let (log, report) = open(dir.path(), SMALL);
    assert!(report.removed_temp_checkpoint);
    assert!(!dir.path().join("checkpoint.tmp").exists());
    assert!(matches!(
        kinds(&report)[..],
        [ProblemKind::BadCheckpoint(_)]
    ));
    assert!(matches!(
        log.checkpoint(),
        Err(StoreError::CorruptCheckpoint { .. })
    ));
}

#[test]
fn reads_of_buffered_and_written_records_and_bad_positions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut log, _) = open(dir.path(), LogOptions::default());
    let a = log.append(b"written").expect("append");
    log.commit().expect("commit");
    let b = log.append(b"buffered").expect("append");
    assert_eq!(log.read(a).expect("read"), b"written");
    assert_eq!(log.read(b).expect("read"), b"buffered");
    assert!(matches!(
        log.read(Position::new(0, 1)),
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        log.read(Position::new(0, a.offset + 1)),
        Err(StoreError::Corrupt { .. })
    ));
    assert!(matches!(log.read(log.end()), Err(StoreError::NotFound(_))));
    assert!(matches!(
        log.read(Position::new(7, 40)),
        Err(StoreError::NotFound(_))
    ));
    let mut seen = Vec::new();
    log.replay(Position::START, |_, r| {
        seen.push(r.to_vec());
        Ok(())
    })
    .expect("replay includes the buffer");
    assert_eq!(seen, vec![b"written".to_vec(), b"buffered".to_vec()]);
    let stop = log.replay(Position::START, |pos, _| Err(StoreError::NotFound(pos)));
    assert!(matches!(stop, Err(StoreError::NotFound(pos)) if pos == a));
}

#[test]
fn records_above_the_limit_are_refused_and_changing_the_limit_keeps_old_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let small = LogOptions {
        segment_bytes: 64 << 10,
        max_record_bytes: 100,
    };
    let big = LogOptions {
        max_record_bytes: 2000,
        ..small
    };
    let (mut log, _) = open(dir.path(), small);
    assert!(matches!(
        log.append(&[0; 101]),
        Err(StoreError::TooLarge { len: 101, max: 100 })
    ));
    log.append(&[7; 100]).expect("fits");
    log.sync().expect("sync");
    drop(log);

    // A larger limit needs a segment whose header allows it.
    let (mut log, report) = open(dir.path(), big);
    assert!(report.is_clean(), "{:?}", report.problems);
    let pos = log.append(&[1; 2000]).expect("fits");
    assert_eq!(pos, Position::new(1, SEGMENT_HEADER_LEN));
    log.sync().expect("sync");
    drop(log);

    // Lowering it again refuses large appends but still reads what is stored.
    let (mut log, report) = open(dir.path(), small);
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(
        replay_all(&log),
        vec![
            (Position::new(0, SEGMENT_HEADER_LEN), vec![7; 100]),
            (pos, vec![1; 2000])
        ]
    );
    assert!(matches!(
        log.append(&[0; 101]),
        Err(StoreError::TooLarge { .. })
    ));
    assert_eq!(log.read(pos).expect("read"), vec![1; 2000]);
}

#[test]
fn a_record_larger_than_a_segment_gets_its_own() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut log, _) = open(dir.path(), SMALL);
    let a = log.append(b"small").expect("append");
    let b = log.append(&[5; 600]).expect("append");
    let c = log.append(b"small again").expect("append");
    assert_eq!((a.segment, b.segment, c.segment), (0, 1, 2));
    log.sync().expect("sync");
    drop(log);
    let (log, report) = open(dir.path(), SMALL);
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(replay_all(&log).len(), 3);
}

#[test]
fn group_commit_reports_every_commit_durable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (notify, mut events) = events();
    let (mut log, _) = Log::open(Arc::new(StdFs), dir.path(), SMALL, notify).expect("open");
    let mut last = Position::START;
    for batch in 0..30 {
        for i in 0..5 {
            log.append(&record(batch * 5 + i)).expect("append");
        }
        last = log.commit().expect("commit");
    }
    assert!(matches!(events.wait(last), SyncEvent::Synced(p) if *p >= last));
    assert!(log.durable() >= last);
    let synced = events.drain().len();
    assert!(
        (1..=30 + log.segments().len()).contains(&synced),
        "at most one fsync round per commit or roll: {synced}"
    );
    assert!(log.poisoned().is_none());
}
