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

#[derive(Debug, Arbitrary)]
struct Input {
    checkpoint: Checkpoint,
    /// Damage to the checkpoint file.
    damage: Vec<Damage>,
    /// A leftover `checkpoint.tmp` (a checkpoint write the crash interrupted).
    temp: Option<Vec<u8>>,
    /// The durable records in the log.
    records: Vec<Piece>,
    /// The groups' log of a total-order group.
    raft: Vec<Piece>,
    /// Where its sealed first segment ends, if it has two.
    raft_split: Option<u8>,
    /// A total-order core's records, for a core restored from them and run for some ticks.
    core: Vec<Piece>,
    /// The core's group has two more replicas (else this broker is the only one).
    three_voters: bool,
    /// Ticks to run it for (modulo 64).
    ticks: u8,
}

struct Harness {
    recovery: Recovery,
    scratch: Scratch,
}

fuzz_target!(
    init: {
        let _ = samples();
    },
    |input: Input| {
    static HARNESS: std::sync::OnceLock<Harness> = std::sync::OnceLock::new();
    let h = HARNESS.get_or_init(|| Harness {
        recovery: Recovery::new().expect("a tokio runtime starts"),
        scratch: Scratch::new("checkpoints"),
    });
    let s = samples();

    let mut files = Vec::new();
    let mut intact = input.damage.is_empty() && input.records.iter().all(Piece::is_sample);
    let checkpoint = match &input.checkpoint {
        Checkpoint::Absent => None,
        Checkpoint::Framed { segment, offset, state } => {
            // One sample state, as it is (a run of them is not one state).
            intact &= matches!(state, Piece::Sample(_));
            let state = records(std::slice::from_ref(state), &s.snapshots).concat();
            let bytes = fuzzing::checkpoint_file(u64::from(*segment), u64::from(*offset), &state);
            // The framing on its own reads back what it framed.
            assert_eq!(
                fuzzing::decode_checkpoint(&bytes),
                Ok(((u64::from(*segment), u64::from(*offset)), state.len()))
            );
            Some(bytes)
        }
        Checkpoint::Raw(bytes) => {
            intact = false;
            Some(bytes.clone())
        }
    };
    if let Some(mut bytes) = checkpoint {
        damage(&mut bytes, &input.damage);
        let _ = fuzzing::decode_checkpoint(&bytes);
        files.push((CHECKPOINT_FILE.to_owned(), bytes));
    }
    if let Some(temp) = &input.temp {
        files.push((CHECKPOINT_TEMP.to_owned(), temp.clone()));
    }
    let log = records(&input.records, &s.durable);
    files.extend(segment_files(segments(0, &log, None, fuzzing::default_record_bound())));
    let dir = h.scratch.fresh("store");
    Scratch::write(&dir, &files);
    let opened = h.recovery.open_store(&dir);
    assert!(opened.is_ok() || !intact, "a real checkpoint over an intact log opens: {opened:?}");

    let raft = records(&input.raft, &s.raft);
    let files = segment_files(segments(0, &raft, input.raft_split, fuzzing::default_record_bound()));
    let dir = h.scratch.fresh("groups");
    Scratch::write(&dir, &files);
    let opened = h.recovery.open_groups(&dir);
    assert!(
        opened.is_ok() || !input.raft.iter().all(Piece::is_sample),
        "an intact groups' log opens: {opened:?}"
    );
    h.scratch.clear();

    let core = records(&input.core, &s.raft_core);
    let voters = if input.three_voters {
        &[fuzzing::ME, BrokerId(2), BrokerId(3)][..]
    } else {
        &[fuzzing::ME][..]
    };
    let ran = fuzzing::run_total(voters, core, u32::from(input.ticks % 64));
    // Every prefix of the records a core wrote is a log a crash can leave: it must restore.
    let prefix = match input.core.as_slice() {
        [] => true,
        [Piece::Run { from, .. }] => usize::from(*from) % s.raft_core.len() == 0,
        _ => false,
    };
    assert!(ran.is_ok() || !prefix, "a core restores from a prefix of its records: {ran:?}");
});
