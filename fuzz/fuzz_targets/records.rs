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

#[derive(Debug, Arbitrary)]
struct Input {
    store: Log,
    groups: Log,
}

struct Harness {
    recovery: Recovery,
    scratch: Scratch,
}

fuzz_target!(
    init: {
        // Built before the first input, so that its cost is not an input's.
        let _ = samples();
    },
    |input: Input| {
    static HARNESS: std::sync::OnceLock<Harness> = std::sync::OnceLock::new();
    let h = HARNESS.get_or_init(|| Harness {
        recovery: Recovery::new().expect("a tokio runtime starts"),
        scratch: Scratch::new("records"),
    });
    let s = samples();

    let dir = h.scratch.fresh("store");
    let (files, written) = input.store.files(&s.durable);
    Scratch::write(&dir, &files);
    match h.recovery.open_store(&dir) {
        Ok(summary) => {
            if input.store.intact() {
                assert!(summary.clean, "an intact log of real records recovers cleanly: {summary:?}");
                assert_eq!(summary.records, written as u64, "every record is recovered");
            }
        }
        Err(e) => assert!(!input.store.intact(), "an intact log of real records opens: {e}"),
    }

    let dir = h.scratch.fresh("groups");
    let (files, _) = input.groups.files(&s.groups);
    Scratch::write(&dir, &files);
    let opened = h.recovery.open_groups(&dir);
    assert!(opened.is_ok() || !input.groups.intact(), "an intact groups' log opens: {opened:?}");
    h.scratch.clear();
});
