//! The logs as the broker recovers them at start: the durable engine's records in the store's
//! segments (`DATA_DIR/store`) and the groups' declarations and cores' records in theirs
//! (`DATA_DIR/groups`), written as files and opened through the broker's own recovery. Never a
//! panic; and a log of well-formed records without damage recovers every record, cleanly.
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
        }
    }
);
