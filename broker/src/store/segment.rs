//! One segment file as the log keeps it open.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::error::StoreError;
use super::fs::{Fs, FsFile, OpenMode};
use super::record::{SEGMENT_HEADER_LEN, encode_segment_header, segment_file_name};

/// An open segment.
pub(crate) struct Segment {
    /// Its id (also in its file name and header).
    pub(crate) id: u64,
    /// Its file's path.
    pub(crate) path: PathBuf,
    /// The open file, kept for reads (and, for the active segment, writes and fsyncs).
    pub(crate) file: Arc<dyn FsFile>,
    /// How many bytes of the file belong to the log: for the active segment, what has been
    /// written (the owner's buffer follows); after recovery, the file's length less any torn
    /// tail that was truncated.
    pub(crate) len: u64,
    /// Valid data records in it (for metrics).
    pub(crate) records: u64,
    /// The largest record length it may hold (its header's, so lowering
    /// `max_record_bytes` never makes older records unreadable).
    pub(crate) bound: u32,
}

impl Segment {
    /// Creates segment `id` in `dir` and writes its header (not synced: the caller makes the
    /// file and the directory durable before anything in it is reported durable).
    pub(crate) fn create(
        fs: &dyn Fs,
        dir: &Path,
        id: u64,
        bound: u32,
    ) -> Result<Segment, StoreError> {
        let path = dir.join(segment_file_name(id));
        let file = fs
            .open(&path, OpenMode::CreateNew)
            .map_err(|e| StoreError::io("create", &path, e))?;
        file.write_all_at(&encode_segment_header(id, bound), 0)
            .map_err(|e| StoreError::io("write", &path, e))?;
        Ok(Segment {
            id,
            path,
            file,
            len: SEGMENT_HEADER_LEN,
            records: 0,
            bound,
        })
    }
}
