//! One broker per data directory: a second broker on a directory in use refuses to start, and
//! the lock goes with the process that held it, whether it stopped or was killed.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::{BrokerProc, Dirs};

/// Runs `palio-broker` on `data`, listening on `quic` (admin on an ephemeral port), and waits
/// at most 20 s for it to exit: its status and stderr. A broker still running then is killed
/// and the test fails.
fn run_to_exit(data: &Path, tls: &Path, quic: &str) -> (ExitStatus, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_palio-broker"))
        .args([
            "--id",
            "intruder",
            "--listen",
            quic,
            "--admin",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(data)
        .arg("--tls-dir")
        .arg(tls)
        .env("PALIO_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn palio-broker");
    let end = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("a second broker on a data directory in use kept running");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (status, stderr)
}

fn assert_refused(data: &Path, tls: &Path, quic: &str) {
    let (status, stderr) = run_to_exit(data, tls, quic);
    assert!(!status.success(), "exit status {status}; stderr: {stderr}");
    assert!(
        stderr.contains(&data.display().to_string()) && stderr.contains("in use by another broker"),
        "the error names the directory and the reason: {stderr}"
    );
}

#[test]
fn a_second_broker_on_the_same_data_dir_refuses_to_start() {
    let d = Dirs::new();
    let (data, tls) = (d.path("data"), d.path("tls"));
    let mut first = BrokerProc::start(&data, &tls, &["--id", "owner"]);
    assert_refused(&data, &tls, "127.0.0.1:0");
    // Started twice with the same configuration, port included: the directory is what the
    // second is told about, since it is checked before any port is bound.
    assert_refused(&data, &tls, &first.quic);
    // The refused broker touched nothing the first one uses: it still serves.
    assert_eq!(first.get_status("/healthz").0, 200);
    let pid = std::fs::read_to_string(data.join("LOCK")).unwrap();
    assert_eq!(
        pid.trim(),
        first.pid().to_string(),
        "the lock file names its holder"
    );

    // Once the first stops, the directory is free again.
    let status = first
        .terminate(10)
        .expect("the first broker stops on SIGTERM");
    assert!(status.success(), "{status}");
    let second = BrokerProc::start(&data, &tls, &["--id", "owner"]);
    assert_eq!(second.get_status("/healthz").0, 200);
    assert_refused(&data, &tls, "127.0.0.1:0");
}

#[test]
fn the_lock_of_a_killed_broker_is_released() {
    let d = Dirs::new();
    let (data, tls) = (d.path("data"), d.path("tls"));
    let mut first = BrokerProc::start(&data, &tls, &["--id", "victim"]);
    assert_refused(&data, &tls, "127.0.0.1:0");
    // SIGKILL: no shutdown code runs, the kernel drops the lock with the process.
    first.kill();
    let second = BrokerProc::start(&data, &tls, &["--id", "victim"]);
    assert_eq!(second.get_status("/healthz").0, 200);
    assert_refused(&data, &tls, "127.0.0.1:0");
}
