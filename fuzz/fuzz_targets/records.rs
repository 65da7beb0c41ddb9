//! The logs as the broker recovers them at start: the durable engine's records in the store's
//! segments (`DATA_DIR/store`) and the groups' declarations and cores' records in theirs
//! (`DATA_DIR/groups`), written as files and opened through the broker's own recovery; and a
//! causal core's records on their own, restored and then handed a peer's bodies and run. Never
//! a panic; a log of well-formed records without damage recovers every record, cleanly; and a
//! core restores from every prefix of the records it wrote.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use palio_broker::fuzzing::{self, Recovery};
use palio_fuzz::{Damage, Piece, Scratch, damage, records, samples, segment_files, segments};

#[derive(Debug, Arbitrary)]
struct Log {
    /// The records.
    pieces: Vec<Piece>,
    /// Where a sealed first segment ends, if the log has two.
    split: Option<u8>,
    /// Damage to the first segment, then to the second.
    damage: (Vec<Damage>, Vec<Damage>),
}

impl Log {
    fn intact(&self) -> bool {
        self.pieces.iter().all(Piece::is_sample)
            && self.damage.0.is_empty()
            && self.damage.1.is_empty()
    }

    /// The segment files, and how many records they hold before damage.
    fn files(&self, samples: &[Vec<u8>]) -> (Vec<(String, Vec<u8>)>, usize) {
        let records = records(&self.pieces, samples);
        let mut segs = segments(0, &records, self.split, fuzzing::default_record_bound());
        for (i, (id, bytes)) in segs.iter_mut().enumerate() {
            let d = if i == 0 {
                &self.damage.0
            } else {
                &self.damage.1
            };
            damage(bytes, d);
            // The scan on its own, as replay runs it (with the fallback bound a damaged header
            // leaves).
            let _ = fuzzing::scan_segment(*id, bytes, fuzzing::default_record_bound());
        }
        (segment_files(segs), records.len())
    }
}

/// One log per input, so that each gets the whole input to explore.
#[derive(Debug, Arbitrary)]
enum Input {
    /// The durable engine's log.
    Store(Log),
    /// The groups' log.
    Groups(Log),
    /// A causal core restored from its records on their own, then handed bodies from a peer
    /// and run for some ticks (what the groups task does with it after the start).
    Causal {
        records: Vec<Piece>,
        bodies: Vec<Piece>,
        /// Timer rounds (modulo 64).
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
        scratch: Scratch::new("records"),
    })
}

fuzz_target!(
    init: {
        // Built before the first input, so that its cost is not an input's.
        let _ = samples();
    },
    |input: Input| {
        let h = harness();
        match &input {
            Input::Store(log) => {
                let dir = h.scratch.fresh("store");
                let (files, written) = log.files(&samples().durable);
                Scratch::write(&dir, &files);
                let opened = h.recovery.open_store(&dir);
                h.scratch.clear();
                match opened {
                    Ok(summary) if log.intact() => {
                        assert!(summary.clean, "an intact log of real records recovers cleanly: {summary:?}");
                        assert_eq!(summary.records, written as u64, "every record is recovered");
                    }
                    Ok(_) => {}
                    Err(e) => assert!(!log.intact(), "an intact log of real records opens: {e}"),
                }
            }
            Input::Groups(log) => {
                let dir = h.scratch.fresh("groups");
                let (files, _) = log.files(&samples().groups);
                Scratch::write(&dir, &files);
                let opened = h.recovery.open_groups(&dir);
                h.scratch.clear();
                assert!(opened.is_ok() || !log.intact(), "an intact groups' log opens: {opened:?}");
            }
            Input::Causal { records: pieces, bodies, ticks } => {
                let s = samples();
                let written = &s.causal_core;
                let bodies = records(bodies, &s.causal_bodies);
                let ran = fuzzing::run_causal(records(pieces, written), &bodies, u32::from(ticks % 64));
                // Every prefix of the records a core wrote is a log a crash can leave.
                let prefix = match pieces.as_slice() {
                    [] => true,
                    [Piece::Run { from, .. }] => usize::from(*from) % written.len() == 0,
                    _ => false,
                };
                assert!(ran.is_ok() || !prefix, "a core restores from a prefix of its records: {ran:?}");
            }
        }
    }
);
