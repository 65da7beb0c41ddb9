//! Checkpoints as the broker reads them at start: the store's checkpoint file (its framing, then
//! the durable engine's state in it, then the records after it), and the Raft state of a
//! total-order group (hard state, entries, compactions and installed snapshots of the state
//! machine) in the groups' log. Written as files and opened through the broker's own recovery;
//! the Raft records also restore a core on their own, which then runs for some ticks (elections,
//! publications, compactions over the restored log). Never a panic; a well-formed checkpoint
//! over an intact log opens, its framing reads back what was framed, and a core restores from
//! every prefix of the records it wrote.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use palio_broker::fuzzing::{self, CHECKPOINT_FILE, CHECKPOINT_TEMP, Recovery};
use palio_fuzz::{Damage, Piece, Scratch, damage, records, samples, segment_files, segments};
use palio_topology::BrokerId;

#[derive(Debug, Arbitrary)]
enum Checkpoint {
    /// No checkpoint file.
    Absent,
    /// A checkpoint file whose checksum verifies, holding a state, covering the log up to
    /// `segment:offset`.
    Framed {
        segment: u8,
        offset: u16,
        state: Piece,
    },
    /// Any bytes.
    Raw(Vec<u8>),
}

/// One of three things per input, so that each gets the whole input to explore.
#[derive(Debug, Arbitrary)]
enum Input {
    /// A store directory: a checkpoint file and the durable log after it.
    Store {
        checkpoint: Checkpoint,
        /// Damage to the checkpoint file.
        damage: Vec<Damage>,
        /// A leftover `checkpoint.tmp` (a checkpoint write the crash interrupted).
        temp: Option<Vec<u8>>,
        /// The durable records in the log.
        records: Vec<Piece>,
    },
    /// A groups' log holding a total-order group and its Raft records.
    Groups {
        records: Vec<Piece>,
        /// Where its sealed first segment ends, if it has two.
        split: Option<u8>,
    },
    /// A total-order core restored from its records on their own, then run for some ticks.
    Core {
        records: Vec<Piece>,
        /// The group has two more replicas (else this broker is the only one).
        three_voters: bool,
        /// Ticks to run it for (modulo 64).
        ticks: u8,
    },
}

struct Harness {
    recovery: Recovery,
    scratch: Scratch,
}

fn harness() -> &'static Harness {
    static HARNESS: std::sync::OnceLock<Harness> = std::sync::OnceLock::new();
    HARNESS.get_or_init(|| Harness {
        recovery: Recovery::new().expect("a tokio runtime starts"),
        scratch: Scratch::new("checkpoints"),
    })
}

fn store(checkpoint: &Checkpoint, damaged: &[Damage], temp: Option<&[u8]>, pieces: &[Piece]) {
    let s = samples();
    let mut files = Vec::new();
    let mut intact = damaged.is_empty() && pieces.iter().all(Piece::is_sample);
    let bytes = match checkpoint {
        Checkpoint::Absent => None,
        Checkpoint::Framed {
            segment,
            offset,
            state,
        } => {
            // One sample state, as it is (a run of them is not one state).
            intact &= matches!(state, Piece::Sample(_));
            let state = records(std::slice::from_ref(state), &s.snapshots).concat();
            let (segment, offset) = (u64::from(*segment), u64::from(*offset));
            let bytes = fuzzing::checkpoint_file(segment, offset, &state);
            // The framing on its own reads back what it framed.
            assert_eq!(
                fuzzing::decode_checkpoint(&bytes),
                Ok(((segment, offset), state.len()))
            );
            Some(bytes)
        }
        Checkpoint::Raw(bytes) => {
            intact = false;
            Some(bytes.clone())
        }
    };
    if let Some(mut bytes) = bytes {
        damage(&mut bytes, damaged);
        let _ = fuzzing::decode_checkpoint(&bytes);
        files.push((CHECKPOINT_FILE.to_owned(), bytes));
    }
    if let Some(temp) = temp {
        files.push((CHECKPOINT_TEMP.to_owned(), temp.to_vec()));
    }
    let log = records(pieces, &s.durable);
    files.extend(segment_files(segments(
        0,
        &log,
        None,
        fuzzing::default_record_bound(),
    )));
    let h = harness();
    let dir = h.scratch.fresh("store");
    Scratch::write(&dir, &files);
    let opened = h.recovery.open_store(&dir);
    h.scratch.clear();
    assert!(
        opened.is_ok() || !intact,
        "a real checkpoint over an intact log opens: {opened:?}"
    );
}

fn groups(pieces: &[Piece], split: Option<u8>) {
    let raft = records(pieces, &samples().raft);
    let files = segment_files(segments(0, &raft, split, fuzzing::default_record_bound()));
    let h = harness();
    let dir = h.scratch.fresh("groups");
    Scratch::write(&dir, &files);
    let opened = h.recovery.open_groups(&dir);
    h.scratch.clear();
    assert!(
        opened.is_ok() || !pieces.iter().all(Piece::is_sample),
        "an intact groups' log opens: {opened:?}"
    );
}

fn core(pieces: &[Piece], three_voters: bool, ticks: u8) {
    let written = &samples().raft_core;
    let voters = if three_voters {
        &[fuzzing::ME, BrokerId(2), BrokerId(3)][..]
    } else {
        &[fuzzing::ME][..]
    };
    let ran = fuzzing::run_total(voters, records(pieces, written), u32::from(ticks % 64));
    // Every prefix of the records a core wrote is a log a crash can leave: it must restore.
    let prefix = match pieces {
        [] => true,
        [Piece::Run { from, .. }] => usize::from(*from) % written.len() == 0,
        _ => false,
    };
    assert!(
        ran.is_ok() || !prefix,
        "a core restores from a prefix of its records: {ran:?}"
    );
}

fuzz_target!(
    init: {
        // Built before the first input, so that its cost is not an input's.
        let _ = samples();
    },
    |input: Input| match &input {
        Input::Store { checkpoint, damage, temp, records } => {
            store(checkpoint, damage, temp.as_deref(), records)
        }
        Input::Groups { records, split } => groups(records, *split),
        Input::Core { records, three_voters, ticks } => core(records, *three_voters, *ticks),
    }
);
