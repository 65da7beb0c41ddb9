//! The checkpoint file: the owner's state as of a log position, replaced atomically.
//!
//! Layout (little-endian): magic `PALIOCKP` (8 bytes), format version `u32`, reserved `u32`
//! (zero), the position the state covers up to (`segment: u64`, `offset: u64`), the state's
//! length `u64`, a CRC32C of all the preceding bytes and the state (`u32`), then the state.
//!
//! Replacing it is the classic sequence: write `checkpoint.tmp`, `fdatasync` it, `rename` it over
//! `checkpoint`, `fsync` the directory. A crash at any point leaves either the old or the new
//! checkpoint in place, never a mix; a leftover `checkpoint.tmp` is removed at open.

use std::path::Path;

use super::error::StoreError;
use super::fs::{Fs, OpenMode};
use super::position::Position;
use super::record::{le_u32, le_u64};

/// The checkpoint's file name.
pub(crate) const CHECKPOINT_FILE: &str = "checkpoint";
/// The name it is written under before the rename.
pub(crate) const CHECKPOINT_TEMP: &str = "checkpoint.tmp";

const MAGIC: [u8; 8] = *b"PALIOCKP";
const VERSION: u32 = 1;
const HEADER_LEN: usize = 44;

/// The bytes of a checkpoint file.
pub(crate) fn encode(upto: Position, state: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + state.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&upto.segment.to_le_bytes());
    out.extend_from_slice(&upto.offset.to_le_bytes());
    out.extend_from_slice(&(state.len() as u64).to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&out), state);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(state);
    out
}

/// The size of the checkpoint file holding `state_len` bytes of state.
pub(crate) fn encoded_len(state_len: usize) -> u64 {
    (HEADER_LEN + state_len) as u64
}

/// The position and state in checkpoint file bytes, or what is wrong with them.
pub(crate) fn decode(bytes: &[u8]) -> Result<(Position, &[u8]), &'static str> {
    let Some((header, state)) = bytes.split_at_checked(HEADER_LEN) else {
        return Err("shorter than its header");
    };
    if header[0..8] != MAGIC {
        return Err("not a checkpoint file (bad magic)");
    }
    if le_u32(&header[8..12]) != VERSION {
        return Err("unknown format version");
    }
    if le_u64(&header[32..40]) != state.len() as u64 {
        return Err("length does not match the file size");
    }
    let crc = crc32c::crc32c_append(crc32c::crc32c(&header[0..40]), state);
    if crc != le_u32(&header[40..44]) || header[12..16] != [0; 4] {
        return Err("checksum mismatch");
    }
    let upto = Position::new(le_u64(&header[16..24]), le_u64(&header[24..32]));
    Ok((upto, state))
}

/// Reads and verifies the checkpoint in `dir`; `None` if there is none.
pub(crate) fn read(fs: &dyn Fs, dir: &Path) -> Result<Option<(Position, Vec<u8>)>, StoreError> {
    let path = dir.join(CHECKPOINT_FILE);
    let file = match fs.open(&path, OpenMode::Existing) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::io("open", &path, e)),
    };
    let len = file.len().map_err(|e| StoreError::io("stat", &path, e))?;
    let len = usize::try_from(len).map_err(|_| StoreError::CorruptCheckpoint {
        path: path.clone(),
        reason: "too large to read",
    })?;
    let mut bytes = vec![0u8; len];
    file.read_exact_at(&mut bytes, 0)
        .map_err(|e| StoreError::io("read", &path, e))?;
    match decode(&bytes) {
        Ok((upto, state)) => Ok(Some((upto, state.to_vec()))),
        Err(reason) => Err(StoreError::CorruptCheckpoint { path, reason }),
    }
}

/// Atomically replaces the checkpoint in `dir`; returns the new file's size.
pub(crate) fn write(
    fs: &dyn Fs,
    dir: &Path,
    upto: Position,
    state: &[u8],
) -> Result<u64, StoreError> {
    let temp = dir.join(CHECKPOINT_TEMP);
    let path = dir.join(CHECKPOINT_FILE);
    let bytes = encode(upto, state);
    let file = fs
        .open(&temp, OpenMode::Truncate)
        .map_err(|e| StoreError::io("create", &temp, e))?;
    file.write_all_at(&bytes, 0)
        .map_err(|e| StoreError::io("write", &temp, e))?;
    file.sync_data()
        .map_err(|e| StoreError::io("fdatasync", &temp, e))?;
    fs.rename(&temp, &path)
        .map_err(|e| StoreError::io("rename", &temp, e))?;
    fs.sync_dir(dir)
        .map_err(|e| StoreError::io("fsync directory", dir, e))?;
    Ok(bytes.len() as u64)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn round_trip() {
        let bytes = encode(Position::new(4, 1000), b"state");
        assert_eq!(decode(&bytes), Ok((Position::new(4, 1000), &b"state"[..])));
        assert_eq!(
            decode(&bytes[..bytes.len() - 1]),
            Err("length does not match the file size")
        );
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert!(decode(&bad).is_err(), "byte {i}");
        }
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            let _ = decode(&bytes);
        }
    }
}
