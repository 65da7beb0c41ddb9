//! The `palio` command line against a [`BrokerProc`]: run it bounded, read its tallies.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value as Json;

use super::BrokerProc;

/// The `palio` binary (built beside the broker; built on demand when only this package's
/// tests were compiled).
pub fn palio_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let broker = PathBuf::from(env!("CARGO_BIN_EXE_palio-broker"));
        let bin = broker.with_file_name("palio");
        if !bin.exists() {
            let mut cmd = Command::new(option_env!("CARGO").unwrap_or("cargo"));
            cmd.args(["build", "-q", "-p", "palio", "--bin", "palio"]);
            cmd.args(["--features", "cli"]);
            if broker.parent().is_some_and(|d| d.ends_with("release")) {
                cmd.arg("--release");
            }
            assert!(
                cmd.status().expect("cargo runs").success(),
                "building palio"
            );
        }
        bin
    })
    .clone()
}

pub fn palio(b: &BrokerProc, args: &[&str]) -> Command {
    let mut c = Command::new(palio_bin());
    c.args(args)
        .env("PALIO_SERVER", &b.quic)
        .env("PALIO_TLS_DIR", &b.tls_dir)
        // Not the test's: `palio pub` reads a piped standard input as its payload.
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// Runs `palio` to completion (bounded by `secs`).
pub fn run(b: &BrokerProc, args: &[&str], secs: u64) -> Output {
    let child = palio(b, args).spawn().expect("palio runs");
    wait_output(child, secs)
}

/// Waits for `child` (reading its output meanwhile, so a full pipe cannot stall it); kills it
/// and panics after `secs`.
pub fn wait_output(child: Child, secs: u64) -> Output {
    Collecting::start(child).finish(secs)
}

/// A child whose output is being read while the test does other things: a `palio sub` that
/// prints more than a pipe holds would otherwise block on stdout, stop serving its QUIC
/// connection and be dropped by the broker's idle timeout.
pub struct Collecting {
    pid: u32,
    rx: std::sync::mpsc::Receiver<std::io::Result<Output>>,
}

impl Collecting {
    /// Starts reading `child`'s output on a thread.
    pub fn start(child: Child) -> Self {
        let pid = child.id();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        Collecting { pid, rx }
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The child's output once it exits; kills it and panics after `secs`.
    pub fn finish(self, secs: u64) -> Output {
        match self.rx.recv_timeout(Duration::from_secs(secs)) {
            Ok(out) => out.expect("palio output"),
            Err(_) => {
                let _ = Command::new("kill")
                    .args(["-9", &self.pid.to_string()])
                    .status();
                let out = self
                    .rx
                    .recv()
                    .expect("palio output after kill")
                    .expect("output");
                panic!(
                    "palio did not finish within {secs} s; stderr: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }
}

pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "palio failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `{"published": N, "acked": M}` line a publishing command printed last.
pub fn tally(out: &Output) -> (u64, u64) {
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().expect("a tally line");
    let j: Json = serde_json::from_str(line).expect("tally is JSON");
    (
        j["published"].as_u64().expect("published"),
        j["acked"].as_u64().expect("acked"),
    )
}
