//! What the targets over stored files share: inputs that start from real records and damage
//! them, and a scratch directory to write the files into.
//!
//! Stored records are checksummed frames around MessagePack, often nested (a Raft snapshot in a
//! compaction record in a groups' log record in a frame). Random bytes almost never get past
//! the checksums and the enum tags, so a target's input is mostly *pieces*: a sample record the
//! broker's own encoders produced ([`palio_broker::fuzzing::Samples`]), as it is, in runs, or
//! with a few bytes edited; raw bytes remain possible. The harness frames the pieces so that
//! their checksums verify, then applies [`Damage`] to the files, which exercises the scan's
//! resynchronisation and the torn-tail handling.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use palio_broker::fuzzing::{self, Samples};

/// At most this many records go into one log: enough for every sample run, small enough to
/// keep an execution fast.
pub const MAX_RECORDS: usize = 64;

/// The samples, built once per process.
pub fn samples() -> &'static Samples {
    static SAMPLES: OnceLock<Samples> = OnceLock::new();
    SAMPLES.get_or_init(|| match Samples::new() {
        Ok(s) => s,
        // The samples are the broker's own records: failing to build them is a bug to fix,
        // not an input to skip.
        Err(e) => panic!("building the samples failed: {e}"),
    })
}

/// One record (or a run of them) of a log.
#[derive(Debug, Arbitrary)]
pub enum Piece {
    /// A sample as it is.
    Sample(u8),
    /// `len` samples in order from `from` (a log as the broker wrote it).
    Run {
        /// The first sample.
        from: u8,
        /// How many.
        len: u8,
    },
    /// A sample with some bytes changed.
    Edited {
        /// The sample.
        which: u8,
        /// The changes, in order.
        edits: Vec<Edit>,
    },
    /// Any bytes.
    Raw(Vec<u8>),
}

/// A change to a sample's bytes, at an offset taken modulo its length.
#[derive(Debug, Arbitrary)]
pub enum Edit {
    /// Flip bits.
    Xor(u16, u8),
    /// Set a byte.
    Set(u16, u8),
    /// Insert a byte.
    Insert(u16, u8),
    /// Remove a byte.
    Remove(u16),
    /// Cut the rest.
    Truncate(u16),
    /// Replace a byte (a small MessagePack integer, most often) by a wide integer at an edge:
    /// stored counters, tags, keys and indexes at their maximum are where arithmetic
    /// overflows.
    Wide(u16, u8),
}

/// MessagePack encodings of integers at the edges of their types.
const WIDE: &[&[u8]] = &[
    &[0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], // u64::MAX
    &[0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe], // u64::MAX - 1
    &[0xcf, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00], // 2^63
    &[0xce, 0xff, 0xff, 0xff, 0xff],                         // u32::MAX
    &[0xcd, 0xff, 0xff],                                     // u16::MAX
    &[0xd3, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00], // i64::MIN
    &[0xff],                                                 // -1
];

impl Piece {
    /// Whether this piece holds only samples as they are.
    pub fn is_sample(&self) -> bool {
        matches!(self, Piece::Sample(_) | Piece::Run { .. })
    }
}

/// The records `pieces` describe over `samples` (at most [`MAX_RECORDS`]).
pub fn records(pieces: &[Piece], samples: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let pick = |i: u8| samples.get(usize::from(i) % samples.len().max(1)).cloned();
    for p in pieces {
        match p {
            Piece::Sample(i) => out.extend(pick(*i)),
            Piece::Run { from, len } => {
                let from = usize::from(*from) % samples.len().max(1);
                out.extend(samples.iter().skip(from).take(usize::from(*len)).cloned());
            }
            Piece::Edited { which, edits } => {
                if let Some(mut bytes) = pick(*which) {
                    for e in edits.iter().take(16) {
                        edit(&mut bytes, e);
                    }
                    out.push(bytes);
                }
            }
            Piece::Raw(bytes) => out.push(bytes.clone()),
        }
    }
    out.truncate(MAX_RECORDS);
    out
}

fn edit(bytes: &mut Vec<u8>, e: &Edit) {
    let at = |i: u16, extra: usize| usize::from(i) % (bytes.len() + extra).max(1);
    match *e {
        Edit::Xor(i, m) if !bytes.is_empty() => {
            let i = at(i, 0);
            bytes[i] ^= m;
        }
        Edit::Set(i, b) if !bytes.is_empty() => {
            let i = at(i, 0);
            bytes[i] = b;
        }
        Edit::Insert(i, b) => {
            let i = at(i, 1);
            bytes.insert(i, b);
        }
        Edit::Remove(i) if !bytes.is_empty() => {
            let i = at(i, 0);
            bytes.remove(i);
        }
        Edit::Truncate(i) => {
            let i = at(i, 1);
            bytes.truncate(i);
        }
        Edit::Wide(i, w) if !bytes.is_empty() => {
            let i = at(i, 0);
            let wide = WIDE[usize::from(w) % WIDE.len()];
            bytes.splice(i..=i, wide.iter().copied());
        }
        _ => {}
    }
}

/// Damage to a file's bytes, at an offset taken modulo its length (what a crash, a bad sector
/// or a stray write leaves).
#[derive(Debug, Arbitrary)]
pub enum Damage {
    /// Flip bits.
    Xor(u32, u8),
    /// Overwrite a range.
    Overwrite(u32, Vec<u8>),
    /// Cut the file (a torn write).
    Truncate(u32),
    /// Insert bytes.
    Insert(u32, Vec<u8>),
    /// Append bytes.
    Append(Vec<u8>),
}

/// Applies `damage` (the first 8) to `bytes`.
pub fn damage(bytes: &mut Vec<u8>, damage: &[Damage]) {
    for d in damage.iter().take(8) {
        let at = |i: u32, len: usize| usize::try_from(i).unwrap_or(0) % (len + 1);
        match d {
            Damage::Xor(i, m) if !bytes.is_empty() => {
                let i = at(*i, bytes.len() - 1);
                bytes[i] ^= m;
            }
            Damage::Overwrite(i, b) => {
                let i = at(*i, bytes.len());
                let end = (i + b.len()).min(bytes.len());
                bytes[i..end].copy_from_slice(&b[..end - i]);
            }
            Damage::Truncate(i) => {
                let i = at(*i, bytes.len());
                bytes.truncate(i);
            }
            Damage::Insert(i, b) => {
                let i = at(*i, bytes.len());
                bytes.splice(i..i, b.iter().copied());
            }
            Damage::Append(b) => bytes.extend_from_slice(b),
            Damage::Xor(..) => {}
        }
    }
}

/// Segment files holding `records`: segment `first`, and if `split` falls inside the records,
/// a sealed segment `first` with the records before it and segment `first + 1` with the rest.
/// `bound` is the record bound written into the headers.
pub fn segments(
    first: u64,
    records: &[Vec<u8>],
    split: Option<u8>,
    bound: u32,
) -> Vec<(u64, Vec<u8>)> {
    let split = split.map(usize::from).filter(|s| *s < records.len());
    let mut out = Vec::new();
    let start = |id: u64| fuzzing::segment_header(id, bound);
    match split {
        Some(s) => {
            let mut a = start(first);
            for r in &records[..s] {
                fuzzing::push_frame(&mut a, first, r);
            }
            fuzzing::push_seal(&mut a, first);
            out.push((first, a));
            let mut b = start(first + 1);
            for r in &records[s..] {
                fuzzing::push_frame(&mut b, first + 1, r);
            }
            out.push((first + 1, b));
        }
        None => {
            let mut a = start(first);
            for r in records {
                fuzzing::push_frame(&mut a, first, r);
            }
            out.push((first, a));
        }
    }
    out
}

/// A directory of this process for the files a target recovers: on `/dev/shm` when there is
/// one (recovery fsyncs, which cost nothing on tmpfs), else in the temporary directory.
#[derive(Debug)]
pub struct Scratch {
    root: PathBuf,
}

impl Scratch {
    /// The scratch directory of target `name` in this process.
    pub fn new(name: &str) -> Scratch {
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        Scratch {
            root: base.join(format!("palio-fuzz-{name}-{}", std::process::id())),
        }
    }

    /// An empty directory `sub` in it (whatever an earlier execution left there is removed).
    pub fn fresh(&self, sub: &str) -> PathBuf {
        let dir = self.root.join(sub);
        let _ = std::fs::remove_dir_all(&dir);
        if let Err(e) = std::fs::create_dir_all(&dir) {
            panic!("cannot create the scratch directory {}: {e}", dir.display());
        }
        dir
    }

    /// Writes `files` into `dir`.
    pub fn write(dir: &Path, files: &[(String, Vec<u8>)]) {
        for (name, bytes) in files {
            if let Err(e) = std::fs::write(dir.join(name), bytes) {
                panic!("cannot write {name} in {}: {e}", dir.display());
            }
        }
    }

    /// Removes it and everything in it (called after each execution, so that only a crashing
    /// input leaves files behind).
    pub fn clear(&self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// The segment files of `segments` named as the log names them.
pub fn segment_files(segments: Vec<(u64, Vec<u8>)>) -> Vec<(String, Vec<u8>)> {
    segments
        .into_iter()
        .map(|(id, bytes)| (fuzzing::segment_file_name(id), bytes))
        .collect()
}
