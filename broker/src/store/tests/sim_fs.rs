//! The simulated file system itself: what a crash keeps, and its faults.

use std::io;
use std::path::Path;
use std::sync::Arc;

use crate::store::fs::{Fs, FsFile, OpenMode};
use crate::store::{SimFs, Tear};

fn file(fs: &SimFs, path: &str, mode: OpenMode) -> Arc<dyn FsFile> {
    fs.open(Path::new(path), mode).expect("open")
}

#[test]
fn crash_keeps_only_synced_data_and_synced_entries() {
    let fs = SimFs::new();
    fs.create_dir_all(Path::new("/d")).expect("mkdir");
    let a = file(&fs, "/d/a", OpenMode::CreateNew);
    a.write_all_at(b"durable", 0).expect("write");
    a.sync_data().expect("sync");
    fs.sync_dir(Path::new("/d")).expect("sync dir");
    a.write_all_at(b"+volatile", 7).expect("write");
    let b = file(&fs, "/d/b", OpenMode::CreateNew);
    b.write_all_at(b"never linked durably", 0).expect("write");
    b.sync_data().expect("sync");
    fs.crash_clean();
    assert!(a.len().is_err(), "old handles die with the process");
    assert!(
        fs.list(Path::new("/d")).is_err(),
        "so does the old fs handle"
    );
    let fs = fs.reboot();
    assert_eq!(
        fs.list(Path::new("/d")).expect("list"),
        vec!["a".to_string()]
    );
    assert_eq!(fs.contents(Path::new("/d/a")).expect("a"), b"durable");
}

#[test]
fn torn_crash_keeps_a_prefix_and_garbage() {
    let fs = SimFs::new();
    fs.create_dir_all(Path::new("/d")).expect("mkdir");
    let a = file(&fs, "/d/a", OpenMode::CreateNew);
    fs.sync_dir(Path::new("/d")).expect("sync dir");
    a.write_all_at(b"0123456789", 0).expect("write");
    fs.crash(&mut |_, unsynced| {
        assert_eq!(unsynced, 10);
        Tear {
            keep: 4,
            garbage: vec![0xEE; 3],
        }
    });
    let fs = fs.reboot();
    assert_eq!(
        fs.contents(Path::new("/d/a")).expect("a"),
        b"0123\xEE\xEE\xEE"
    );
}

#[test]
fn rename_and_remove_need_a_directory_sync() {
    let fs = SimFs::new();
    fs.create_dir_all(Path::new("/d")).expect("mkdir");
    let a = file(&fs, "/d/a", OpenMode::CreateNew);
    a.write_all_at(b"old", 0).expect("write");
    a.sync_data().expect("sync");
    fs.sync_dir(Path::new("/d")).expect("sync dir");
    let t = file(&fs, "/d/t", OpenMode::CreateNew);
    t.write_all_at(b"new", 0).expect("write");
    t.sync_data().expect("sync");
    fs.rename(Path::new("/d/t"), Path::new("/d/a"))
        .expect("rename");
    fs.crash_clean();
    let fs = fs.reboot();
    assert_eq!(fs.contents(Path::new("/d/a")).expect("a"), b"old");
    fs.remove(Path::new("/d/a")).expect("remove");
    fs.crash_clean();
    let fs = fs.reboot();
    assert_eq!(fs.contents(Path::new("/d/a")).expect("a"), b"old");
}

#[test]
fn failed_sync_is_not_retried_into_success() {
    let fs = SimFs::new();
    fs.create_dir_all(Path::new("/d")).expect("mkdir");
    let a = file(&fs, "/d/a", OpenMode::CreateNew);
    fs.sync_dir(Path::new("/d")).expect("sync dir");
    a.write_all_at(b"lost", 0).expect("write");
    fs.fail_sync_after(0);
    assert!(a.sync_data().is_err());
    a.sync_data().expect("a second fsync claims success");
    fs.crash_clean();
    assert_eq!(fs.reboot().contents(Path::new("/d/a")).expect("a"), b"");
}

#[test]
fn space_runs_out() {
    let fs = SimFs::new();
    fs.create_dir_all(Path::new("/d")).expect("mkdir");
    let a = file(&fs, "/d/a", OpenMode::CreateNew);
    fs.limit_space(5);
    a.write_all_at(b"abc", 0).expect("fits");
    a.write_all_at(b"xy", 0).expect("overwrite is free");
    let e = a.write_all_at(b"defg", 3).expect_err("full");
    assert_eq!(e.kind(), io::ErrorKind::StorageFull);
    assert_eq!(fs.contents(Path::new("/d/a")).expect("a"), b"xycde");
}

#[test]
fn scheduled_crash_replaces_an_operation() {
    let fs = SimFs::new();
    fs.create_dir_all(Path::new("/d")).expect("mkdir");
    let a = file(&fs, "/d/a", OpenMode::CreateNew);
    fs.sync_dir(Path::new("/d")).expect("sync dir");
    fs.crash_after_ops(1, Box::new(|_, _| Tear::default()));
    a.write_all_at(b"x", 0).expect("first op runs");
    assert!(a.sync_data().is_err(), "second op is the crash");
    assert_eq!(fs.reboot().contents(Path::new("/d/a")).expect("a"), b"");
}
