//! Failures injected through the simulated file system: fsync errors, a full disk, crashes
//! inside a checkpoint, process death.

use std::path::Path;
use std::sync::Arc;

use super::events;
use crate::store::{
    Fs, Log, LogOptions, Position, RecoveryReport, SimFs, StoreError, SyncEvent, Tear,
};

const DIR: &str = "/data/log";

const SMALL: LogOptions = LogOptions {
    segment_bytes: 256,
    max_record_bytes: 1000,
};

fn open(fs: &Arc<SimFs>, opts: LogOptions) -> (Log, RecoveryReport, super::Events) {
    let (notify, events) = events();
    let fs: Arc<dyn Fs> = fs.clone();
    let (log, report) = Log::open(fs, Path::new(DIR), opts, notify).expect("open");
    (log, report, events)
}

fn replay_all(log: &Log) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    log.replay(Position::START, |_, r| {
        out.push(r.to_vec());
        Ok(())
    })
    .expect("replay");
    out
}

/// Every write-side call is refused with `Poisoned`.
fn assert_refuses_writes(log: &mut Log) {
    assert!(matches!(log.append(b"more"), Err(StoreError::Poisoned(_))));
    assert!(matches!(log.commit(), Err(StoreError::Poisoned(_))));
    assert!(matches!(log.sync(), Err(StoreError::Poisoned(_))));
    let end = log.end();
    assert!(matches!(
        log.write_checkpoint(end, b"s"),
        Err(StoreError::Poisoned(_))
    ));
    assert!(matches!(
        log.remove_segments_before(end.segment),
        Err(StoreError::Poisoned(_))
    ));
}

#[test]
fn failed_fsync_poisons_the_log_and_is_never_retried() {
    let fs = SimFs::new();
    let (mut log, _, mut events) = open(&fs, LogOptions::default());
    let kept = log.append(b"durable").expect("append");
    log.sync().expect("sync");
    fs.fail_sync_after(0);
    log.append(b"doomed").expect("append");
    let end = log.commit().expect("the write itself succeeds");
    match events.wait(end) {
        SyncEvent::Failed(e) => assert!(matches!(
            e,
            StoreError::Io {
                op: "fdatasync",
                ..
            }
        )),
        SyncEvent::Synced(p) => panic!("reported {p} durable although the fsync failed"),
    }
    assert!(log.durable() < end);
    assert!(log.poisoned().is_some());
    let syncs = fs.syncs();
    assert_refuses_writes(&mut log);
    assert_eq!(
        fs.syncs(),
        syncs,
        "no fsync is attempted after a failed one"
    );
    assert_eq!(log.read(kept).expect("reads still work"), b"durable");
    drop(log);
    assert!(
        events
            .drain()
            .iter()
            .filter(|e| matches!(e, SyncEvent::Failed(_)))
            .count()
            == 1
    );

    // After a restart what was acknowledged is there, what was not may be lost.
    fs.crash_clean();
    let fs = fs.reboot();
    let (mut log, _, _) = open(&fs, LogOptions::default());
    assert_eq!(replay_all(&log), vec![b"durable".to_vec()]);
    log.append(b"the log works again").expect("append");
    log.sync().expect("sync");
}

#[test]
fn failed_fsync_while_rolling_refuses_the_append() {
    let fs = SimFs::new();
    let (mut log, _, mut events) = open(&fs, SMALL);
    fs.fail_sync_after(0);
    let mut result = Ok(Position::START);
    for i in 0..10 {
        result = log.append(format!("record {i:03} padded to a useful size").as_bytes());
        if result.is_err() {
            break;
        }
    }
    assert!(
        result.is_err(),
        "filling a segment rolls, which must fsync and fail"
    );
    assert!(matches!(events.failure(), Some(StoreError::Io { .. })));
    assert_eq!(events.synced(), None);
    assert_eq!(log.segments().len(), 1, "no new segment after the failure");
    assert_refuses_writes(&mut log);
}

#[test]
fn full_disk_is_no_space_and_poisons() {
    let fs = SimFs::new();
    let (mut log, _, mut events) = open(&fs, LogOptions::default());
    fs.limit_space(100);
    log.append(&[1; 60]).expect("append");
    log.append(&[2; 60]).expect("append");
    let err = log
        .commit()
        .expect_err("120 bytes of frames do not fit in 100");
    assert!(
        matches!(err, StoreError::NoSpace { op: "write", .. }),
        "{err}"
    );
    assert!(err.to_string().starts_with("disk full"), "{err}");
    assert!(matches!(events.failure(), Some(StoreError::NoSpace { .. })));
    let refused = log.append(b"x").expect_err("poisoned");
    assert!(
        refused.is_no_space(),
        "the refusal still says why: {refused}"
    );
    assert_refuses_writes(&mut log);
    assert_eq!(events.synced(), None);

    // After a restart, the half-written batch is a torn tail. Its first record was written
    // whole before the disk filled: it was never acknowledged, but it is intact, so it stays.
    drop(log);
    let fs = fs.reboot();
    let (log, report, _) = open(&fs, LogOptions::default());
    let kinds: Vec<_> = report.problems.iter().map(|p| (p.kind, p.bytes)).collect();
    assert_eq!(kinds, vec![(crate::store::ProblemKind::TornTail, 20)]);
    assert_eq!(replay_all(&log), vec![vec![1; 60]]);
}

/// A batch that does not fit fails alone: what earlier commits wrote is made durable before
/// the log is poisoned, so the acks it earned can still be released.
#[test]
fn full_disk_keeps_earlier_batches_durable() {
    let fs = SimFs::new();
    let (mut log, _, _events) = open(&fs, LogOptions::default());
    fs.limit_space(200);
    log.append(&[1; 60]).expect("append");
    let first = log.commit().expect("the first batch fits");
    log.append(&[2; 60]).expect("append");
    log.append(&[3; 60]).expect("append");
    let err = log.commit().expect_err("the second batch does not fit");
    assert!(err.is_no_space(), "{err}");
    assert!(
        log.durable() >= first,
        "the first batch is durable: {:?} < {first:?}",
        log.durable()
    );
    assert_refuses_writes(&mut log);
}

#[test]
fn full_disk_during_a_checkpoint_keeps_the_old_checkpoint() {
    let fs = SimFs::new();
    let (mut log, _, _) = open(&fs, LogOptions::default());
    log.append(b"a").expect("append");
    let first = log.end();
    log.write_checkpoint(first, b"old state")
        .expect("checkpoint");
    fs.limit_space(50);
    let err = log
        .write_checkpoint(first, &[9; 500])
        .expect_err("does not fit");
    assert!(err.is_no_space(), "{err}");
    assert!(log.poisoned().is_some());
    drop(log);
    fs.crash_clean();
    let fs = fs.reboot();
    let (log, report, _) = open(&fs, LogOptions::default());
    assert_eq!(report.checkpoint, Some(first));
    assert_eq!(
        log.checkpoint().expect("read"),
        Some((first, b"old state".to_vec()))
    );
}

#[test]
fn crash_at_every_step_of_a_checkpoint_leaves_the_old_or_the_new_one() {
    let mut outcomes = Vec::new();
    for step in 0.. {
        let fs = SimFs::new();
        let (mut log, _, _) = open(&fs, LogOptions::default());
        log.append(b"one").expect("append");
        let old = log.end();
        log.write_checkpoint(old, b"old").expect("checkpoint");
        log.append(b"two").expect("append");
        log.sync().expect("sync");
        let new = log.end();
        // The log is idle and durable: the checkpoint's own steps are the only operations.
        fs.crash_after_ops(step, Box::new(|_, _| Tear::default()));
        let done = log.write_checkpoint(new, b"new").is_ok();
        drop(log);
        if done {
            fs.crash_clean();
        }
        let fs = fs.reboot();
        let (log, report, _) = open(&fs, LogOptions::default());
        let found = log.checkpoint().expect("never damaged");
        assert!(
            found == Some((old, b"old".to_vec())) || found == Some((new, b"new".to_vec())),
            "step {step}: {found:?}"
        );
        if done {
            assert_eq!(
                found,
                Some((new, b"new".to_vec())),
                "a completed checkpoint is durable"
            );
            break;
        }
        assert!(
            report.problems.is_empty(),
            "step {step}: {:?}",
            report.problems
        );
        assert!(
            fs.list(Path::new(DIR))
                .expect("list")
                .iter()
                .all(|n| n != "checkpoint.tmp")
        );
        outcomes.push(found.map(|(p, _)| p == new));
    }
    // temp create, write, fdatasync, rename, directory fsync.
    assert_eq!(outcomes.len(), 5, "{outcomes:?}");
    assert!(
        outcomes.iter().all(|new| *new == Some(false)),
        "{outcomes:?}"
    );
}

#[test]
fn process_death_keeps_committed_records_and_loses_the_buffer() {
    let fs = SimFs::new();
    let (mut log, _, _) = open(&fs, SMALL);
    for i in 0..7 {
        log.append(format!("committed {i}").as_bytes())
            .expect("append");
    }
    log.commit().expect("commit");
    log.append(b"buffered only").expect("append");
    drop(log); // the process dies: the page cache survives, the buffer does not
    let (log, report, _) = open(&fs, SMALL);
    assert!(report.is_clean(), "{:?}", report.problems);
    let got = replay_all(&log);
    assert_eq!(got.len(), 7);
    assert!(got.iter().all(|r| r.starts_with(b"committed")));
}

#[test]
fn power_loss_keeps_what_was_reported_durable() {
    let fs = SimFs::new();
    let (mut log, _, mut events) = open(&fs, SMALL);
    for i in 0..9 {
        log.append(format!("synced {i}").as_bytes())
            .expect("append");
    }
    let end = log.sync().expect("sync");
    assert!(matches!(events.wait(end), SyncEvent::Synced(_)));
    for i in 0..3 {
        log.append(format!("written {i}").as_bytes())
            .expect("append");
    }
    log.commit().expect("commit");
    // Power fails: keep an arbitrary part of what was not yet synced, plus garbage.
    fs.crash(&mut |_, unsynced| Tear {
        keep: unsynced / 2,
        garbage: vec![0x5A; 11],
    });
    drop(log);
    let fs = fs.reboot();
    let (log, report, _) = open(&fs, SMALL);
    assert!(
        report
            .problems
            .iter()
            .all(|p| p.kind == crate::store::ProblemKind::TornTail)
    );
    let got = replay_all(&log);
    assert!(got.len() >= 9);
    for (i, r) in got.iter().take(9).enumerate() {
        assert_eq!(r, format!("synced {i}").as_bytes());
    }
}
