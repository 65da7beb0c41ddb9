//! The file layer under the log, behind a trait so tests can inject faults and crashes.
//!
//! The log needs little from a file system: positional reads and writes (`pread`/`pwrite`, no
//! mmap — a failed mmap'd write arrives as a signal, not an error), `fdatasync`, the length,
//! truncation, and a handful of directory operations including `fsync` of the directory itself,
//! which is what makes a file's creation, rename or removal durable. [`StdFs`] maps these onto
//! `std::fs` and [`std::os::unix::fs::FileExt`]; the test-only `SimFs` keeps files in memory and
//! tells durable state from volatile state.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

/// How [`Fs::open`] opens a file (always for reading and writing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpenMode {
    /// The file must exist.
    Existing,
    /// The file must not exist yet; it is created empty.
    CreateNew,
    /// The file is created if absent and emptied if present.
    Truncate,
}

/// Directory-level operations the log performs.
pub(crate) trait Fs: Send + Sync + 'static {
    /// Creates `dir` and its missing parents.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// The names of the entries of `dir` (names that are not UTF-8 are left out).
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Opens a file for reading and writing.
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn FsFile>>;
    /// Renames `from` to `to`, replacing `to` if it exists (atomically, as `rename(2)`).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Makes the entries of `dir` durable (`fsync` on the directory).
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// An open file. Shared between the log's owner and its sync thread, hence `Sync`.
pub(crate) trait FsFile: Send + Sync + 'static {
    /// Reads at `offset` into `buf`; returns how many bytes were read (0 at the end).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Writes all of `buf` at `offset`, or fails (possibly after writing part of it).
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Makes the file's data (and the metadata needed to read it) durable: `fdatasync`.
    fn sync_data(&self) -> io::Result<()>;
    /// The file's current length.
    fn len(&self) -> io::Result<u64>;
    /// Truncates (or extends with zeros) to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;

    /// Fills `buf` from `offset`, failing with `UnexpectedEof` if the file is shorter.
    fn read_exact_at(&self, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match self.read_at(buf, offset) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => {
                    buf = &mut buf[n..];
                    offset += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// The real file system.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct StdFs;

impl Fs for StdFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            if let Ok(name) = entry?.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn FsFile>> {
        let mut options = OpenOptions::new();
        options.read(true).write(true);
        match mode {
            OpenMode::Existing => {}
            OpenMode::CreateNew => {
                options.create_new(true);
            }
            OpenMode::Truncate => {
                options.create(true).truncate(true);
            }
        }
        Ok(Arc::new(StdFile(options.open(path)?)))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

/// A real file.
#[derive(Debug)]
struct StdFile(File);

impl FsFile for StdFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.0.read_at(buf, offset)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_all_at(buf, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn std_fs_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fs = StdFs;
        let path = dir.path().join("a");
        let f = fs.open(&path, OpenMode::CreateNew).expect("create");
        assert!(fs.open(&path, OpenMode::CreateNew).is_err());
        f.write_all_at(b"hello", 0).expect("write");
        f.write_all_at(b"!", 5).expect("write");
        f.sync_data().expect("sync");
        assert_eq!(f.len().expect("len"), 6);
        let mut buf = [0u8; 6];
        f.read_exact_at(&mut buf, 0).expect("read");
        assert_eq!(&buf, b"hello!");
        assert!(f.read_exact_at(&mut buf, 1).is_err());
        f.set_len(2).expect("truncate");
        fs.rename(&path, &dir.path().join("b")).expect("rename");
        fs.sync_dir(dir.path()).expect("sync dir");
        assert_eq!(fs.list(dir.path()).expect("list"), vec!["b".to_string()]);
        let g = fs
            .open(&dir.path().join("b"), OpenMode::Existing)
            .expect("open");
        assert_eq!(g.len().expect("len"), 2);
        fs.remove(&dir.path().join("b")).expect("remove");
        assert!(fs.list(dir.path()).expect("list").is_empty());
    }
}
