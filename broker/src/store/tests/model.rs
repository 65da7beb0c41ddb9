//! The log against a model, through random operation sequences with crashes.
//!
//! The model is the list of records appended, how many of them were handed to the OS, how many
//! were reported durable (`Synced`), and the checkpoints written. Operations: append, commit,
//! sync, checkpoint (optionally followed by segment removal), read, power loss (only durable
//! state survives, plus a torn prefix of unsynced appends and garbage), process death (the page
//! cache survives, the buffer does not), and a crash scheduled a few file operations ahead,
//! so it lands between any write, fsync, rename or directory fsync — including inside a
//! checkpoint or a segment roll, and on the sync thread.
//!
//! After every restart: the checkpoint is one that was written (or was being written), never a
//! mix; the records replayed from it are exactly a prefix of the records appended after it;
//! that prefix holds every record reported durable (and, after a process death without power
//! loss, every record handed to the OS); and recovery reported nothing but torn tails.

use std::path::Path;
use std::sync::Arc;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;

use super::{Events, events};
use crate::store::{Fs, Log, LogOptions, Position, ProblemKind, SimFs, StoreError, Tear};

const DIR: &str = "/broker/log";

/// Small segments and records so that sequences of a few dozen operations roll, checkpoint and
/// remove segments often.
const OPTS: LogOptions = LogOptions {
    segment_bytes: 320,
    max_record_bytes: 120,
};

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<u8>),
    Commit,
    Sync,
    Checkpoint {
        gc: bool,
        filler: u8,
    },
    Read(Index),
    PowerLoss {
        keep: u8,
        garbage: Vec<u8>,
    },
    ProcessDeath,
    CrashSoon {
        after: u64,
        keep: u8,
        garbage: Vec<u8>,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => vec(any::<u8>(), 0..=120).prop_map(Op::Append),
        4 => Just(Op::Commit),
        2 => Just(Op::Sync),
        2 => (any::<bool>(), any::<u8>()).prop_map(|(gc, filler)| Op::Checkpoint { gc, filler }),
        2 => any::<Index>().prop_map(Op::Read),
        1 => (any::<u8>(), vec(any::<u8>(), 0..24))
            .prop_map(|(keep, garbage)| Op::PowerLoss { keep, garbage }),
        1 => Just(Op::ProcessDeath),
        1 => (0u64..12, any::<u8>(), vec(any::<u8>(), 0..24))
            .prop_map(|(after, keep, garbage)| Op::CrashSoon { after, keep, garbage }),
    ]
}

/// A checkpoint as the model knows it: where it was taken, how many records it covers, and
/// its exact bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Checkpoint {
    upto: Position,
    covers: usize,
    state: Vec<u8>,
}

fn checkpoint_state(covers: usize, filler: u8) -> Vec<u8> {
    let mut state = (covers as u64).to_le_bytes().to_vec();
    state.extend(std::iter::repeat_n(filler, 8 + usize::from(filler) % 64));
    state
}

/// Keeps `keep`/255 of each file's unsynced appended bytes, then `garbage`.
fn tear(keep: u8, garbage: Vec<u8>) -> impl FnMut(&Path, usize) -> Tear + Send {
    move |_, unsynced| Tear {
        keep: unsynced * usize::from(keep) / 255,
        garbage: garbage.clone(),
    }
}

struct Harness {
    fs: Arc<SimFs>,
    log: Option<Log>,
    events: Events,
    /// The file system generation the log was opened in: a different one means it crashed.
    generation: u64,
    /// Every record of the current history, from the start of the log.
    records: Vec<Vec<u8>>,
    /// Where each was appended.
    positions: Vec<Position>,
    /// Records handed to the OS (committed, or written by a roll).
    written: usize,
    /// Records known durable without a `Synced` event: those recovered at the last restart.
    recovered: usize,
    /// The durable checkpoint.
    checkpoint: Option<Checkpoint>,
    /// A checkpoint whose write was interrupted: after a crash it may be the one found.
    attempted: Option<Checkpoint>,
}

impl Harness {
    fn new() -> Result<Harness, TestCaseError> {
        let fs = SimFs::new();
        let (notify, events) = events();
        let dyn_fs: Arc<dyn Fs> = fs.clone();
        let (log, report) = Log::open(dyn_fs, Path::new(DIR), OPTS, notify)
            .map_err(|e| TestCaseError::fail(format!("open: {e}")))?;
        prop_assert!(report.is_clean());
        Ok(Harness {
            generation: fs.generation(),
            fs,
            log: Some(log),
            events,
            records: Vec::new(),
            positions: Vec::new(),
            written: 0,
            recovered: 0,
            checkpoint: None,
            attempted: None,
        })
    }

    fn log(&mut self) -> &mut Log {
        self.log
            .as_mut()
            .expect("the harness always holds an open log between operations")
    }

    /// Records known durable: reported `Synced`, or recovered by the last restart.
    fn synced(&mut self) -> usize {
        let reported = match self.events.synced() {
            Some(p) => self.positions.partition_point(|q| *q < p),
            None => 0,
        };
        reported.max(self.recovered)
    }

    fn covered(&self) -> usize {
        self.checkpoint.as_ref().map_or(0, |c| c.covers)
    }

    fn apply(&mut self, op: Op) -> Result<(), TestCaseError> {
        match op {
            Op::Append(record) => {
                let before = self.log().end();
                match self.log().append(&record) {
                    Ok(pos) => {
                        prop_assert!(pos >= before);
                        if pos.segment != before.segment {
                            // Rolling wrote (and synced) everything before it.
                            self.written = self.records.len();
                        }
                        self.records.push(record);
                        self.positions.push(pos);
                    }
                    Err(e) => self.died(e)?,
                }
            }
            Op::Commit => match self.log().commit() {
                Ok(end) => {
                    prop_assert_eq!(end, self.log().end());
                    self.written = self.records.len();
                }
                Err(e) => self.died(e)?,
            },
            Op::Sync => match self.log().sync() {
                Ok(end) => {
                    self.written = self.records.len();
                    prop_assert!(self.log().durable() >= end);
                }
                Err(e) => self.died(e)?,
            },
            Op::Checkpoint { gc, filler } => {
                let upto = self.log().end();
                let covers = self.records.len();
                let state = checkpoint_state(covers, filler);
                let attempt = Checkpoint {
                    upto,
                    covers,
                    state,
                };
                match self.log().write_checkpoint(upto, &attempt.state) {
                    Ok(()) => {
                        prop_assert!(self.log().durable() >= upto);
                        self.written = covers;
                        self.checkpoint = Some(attempt);
                        if gc && let Err(e) = self.log().remove_segments_before(upto.segment) {
                            self.died(e)?;
                        }
                    }
                    Err(e) => {
                        self.attempted = Some(attempt);
                        self.died(e)?;
                    }
                }
            }
            Op::Read(i) => {
                let from = self.covered();
                if self.records.len() > from {
                    let k = from + i.index(self.records.len() - from);
                    let pos = self.positions[k];
                    match self.log().read(pos) {
                        Ok(bytes) => prop_assert_eq!(&bytes, &self.records[k]),
                        Err(e) => self.died(e)?,
                    }
                }
            }
            Op::PowerLoss { keep, garbage } => {
                self.fs.crash(&mut tear(keep, garbage));
                self.restart(true)?;
            }
            Op::ProcessDeath => self.restart(false)?,
            Op::CrashSoon {
                after,
                keep,
                garbage,
            } => self
                .fs
                .crash_after_ops(after, Box::new(tear(keep, garbage))),
        }
        Ok(())
    }

    /// A log call failed: only a crash may cause that here. Restart after it.
    fn died(&mut self, e: StoreError) -> Result<(), TestCaseError> {
        prop_assert_ne!(
            self.fs.generation(),
            self.generation,
            "the log failed without a crash: {}",
            e
        );
        self.restart(true)
    }

    /// Restarts the process and checks what the new log recovered against the model.
    fn restart(&mut self, power_lost: bool) -> Result<(), TestCaseError> {
        drop(self.log.take());
        let synced = self.synced();
        let mut crashed = power_lost || self.fs.generation() != self.generation;
        let mut fs = self.fs.reboot();
        let (log, report, events) = loop {
            let (notify, events) = events();
            let dyn_fs: Arc<dyn Fs> = fs.clone();
            match Log::open(dyn_fs, Path::new(DIR), OPTS, notify) {
                Ok((log, report)) => break (log, report, events),
                Err(e) => {
                    // A scheduled crash may land inside recovery; then recover again.
                    prop_assert_ne!(fs.generation(), self.generation, "open failed: {}", e);
                    crashed = true;
                    fs = fs.reboot();
                }
            }
        };
        if self.fs.generation() != fs.generation() || fs.generation() != self.generation {
            crashed = true;
        }
        for p in &report.problems {
            prop_assert_eq!(
                p.kind,
                ProblemKind::TornTail,
                "a crash leaves only torn tails: {}",
                p
            );
            prop_assert!(crashed, "problems without a crash: {}", p);
        }

        let found = log
            .checkpoint()
            .map_err(|e| TestCaseError::fail(format!("checkpoint: {e}")))?;
        let found = match found {
            None => {
                prop_assert!(self.checkpoint.is_none(), "the checkpoint vanished");
                None
            }
            Some((upto, state)) => {
                let candidates = [&self.checkpoint, &self.attempted];
                let matched = candidates
                    .into_iter()
                    .flatten()
                    .find(|c| c.upto == upto && c.state == state);
                prop_assert!(matched.is_some(), "unknown checkpoint at {}", upto);
                matched.cloned()
            }
        };
        let covers = found.as_ref().map_or(0, |c| c.covers);
        let from = found.as_ref().map_or(Position::START, |c| c.upto);
        let mut replayed = Vec::new();
        log.replay(from, |pos, r| {
            replayed.push((pos, r.to_vec()));
            Ok(())
        })
        .map_err(|e| TestCaseError::fail(format!("replay: {e}")))?;

        let total = covers + replayed.len();
        prop_assert!(
            total <= self.records.len(),
            "more records than were appended"
        );
        for (i, (pos, r)) in replayed.iter().enumerate() {
            prop_assert_eq!(
                *pos,
                self.positions[covers + i],
                "record {} moved",
                covers + i
            );
            prop_assert_eq!(
                r,
                &self.records[covers + i],
                "record {} changed",
                covers + i
            );
        }
        prop_assert!(
            total >= synced,
            "lost a record reported durable: recovered {} of {} durable",
            total,
            synced
        );
        if !crashed {
            prop_assert_eq!(total, self.written, "a process death loses only the buffer");
        }
        prop_assert_eq!(log.durable(), log.end());
        if let Some(last) = self.positions.get(total.wrapping_sub(1)) {
            prop_assert!(log.end() > *last);
        }

        self.records.truncate(total);
        self.positions.truncate(total);
        self.written = total;
        self.recovered = total;
        self.checkpoint = found;
        self.attempted = None;
        self.generation = fs.generation();
        self.fs = fs;
        self.log = Some(log);
        self.events = events;
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        max_shrink_iters: 2000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn log_matches_the_model_across_crashes(ops in vec(op(), 1..80)) {
        let mut h = Harness::new()?;
        for op in ops {
            h.apply(op)?;
        }
        // A final power loss checks the last stretch of the sequence too.
        h.apply(Op::PowerLoss { keep: 0, garbage: Vec::new() })?;
    }
}
