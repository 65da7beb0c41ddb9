//! `palio-bench compare` and `compare-report` through the command line, against the real peers
//! (nats-server, mosquitto) and a real `palio-broker`, with small runs. The figures are not
//! judged (tests never time anything); what is checked is that every system ran, delivered
//! every message and was reported.
//!
//! The peers come from `bench/setup-peers.sh` (CI runs it). Without them the test says so and
//! passes on a developer's machine, and fails when `CI` is set.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The peers' executables, or `None` (with a note) where they are not installed.
fn peers() -> Option<(PathBuf, PathBuf)> {
    let find = |name: &str| -> Option<PathBuf> {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    };
    match (find("nats-server"), find("mosquitto")) {
        (Some(n), Some(m)) => Some((n, m)),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "nats-server and mosquitto are needed: run bench/setup-peers.sh"
            );
            eprintln!("NOTE: nats-server or mosquitto missing; run bench/setup-peers.sh");
            None
        }
    }
}

/// The `palio-broker` beside this package's `palio-bench`, built (or brought up to date) first:
/// `cargo test -p palio-bench` alone does not build other packages' binaries.
fn broker_bin() -> PathBuf {
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_palio-bench"));
    let mut cmd = Command::new(option_env!("CARGO").unwrap_or("cargo"));
    cmd.args(["build", "-q", "-p", "palio-broker", "--bin", "palio-broker"]);
    if bench.parent().is_some_and(|d| d.ends_with("release")) {
        cmd.arg("--release");
    }
    assert!(
        cmd.status().expect("cargo runs").success(),
        "building palio-broker"
    );
    bench.with_file_name("palio-broker")
}

fn compare(broker: &Path, nats: &Path, mosquitto: &Path, args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_palio-bench"))
        .arg("compare")
        .args(args)
        .args(["--runs", "1", "--json", "--timeout", "60"])
        .arg("--broker-bin")
        .arg(broker)
        .arg("--nats-server")
        .arg(nats)
        .arg("--mosquitto")
        .arg(mosquitto)
        .output()
        .expect("palio-bench runs");
    assert!(
        out.status.success(),
        "compare {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "quiet when not on a terminal, but said:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON object")
}

#[test]
fn compare_runs_each_system_in_its_own_processes_and_reports_every_delivery() {
    let Some((nats, mosquitto)) = peers() else {
        return;
    };
    let broker = broker_bin();
    let dir = tempfile::tempdir().unwrap();
    let mut lines = String::new();
    let cases = [
        ("nats", "1to1", 2_000),
        ("nats-tls", "1to1", 2_000),
        ("mosquitto", "1to1", 2_000),
        ("nats", "1to16", 320),
    ];
    for (peer, scenario, messages) in cases {
        let s = compare(
            &broker,
            &nats,
            &mosquitto,
            &[
                "--peer",
                peer,
                "--scenario",
                scenario,
                "--messages",
                &messages.to_string(),
            ],
        );
        for field in [
            "palio_msgs_per_s",
            "peer_msgs_per_s",
            "ratio",
            "palio_p50_us",
            "palio_p99_us",
            "palio_p999_us",
            "peer_p50_us",
            "peer_p99_us",
            "peer_p999_us",
        ] {
            assert!(
                s[field].as_f64().is_some_and(|v| v > 0.0),
                "{peer} {scenario}: {field} = {}",
                s[field]
            );
        }
        assert_eq!(s["runs"], 1);
        assert_eq!(s["palio_lost"], 0, "{peer} {scenario}: Palio lost messages");
        assert_eq!(s["peer"], peer);
        assert_eq!(s["scenario"], scenario);
        lines.push_str(&s.to_string());
        lines.push('\n');
    }
    let input = dir.path().join("compare.jsonl");
    std::fs::write(&input, lines).unwrap();
    let out_dir = dir.path().join("report");
    let out = Command::new(env!("CARGO_BIN_EXE_palio-bench"))
        .arg("compare-report")
        .arg(&input)
        .arg("--dir")
        .arg(&out_dir)
        .args(["--commit", "abc1234"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let readme = std::fs::read_to_string(out_dir.join("README.md")).unwrap();
    assert!(readme.contains("`abc1234`"));
    for row in [
        "| 1to1 | nats |",
        "| 1to1 | nats-tls |",
        "| 1to1 | mosquitto |",
        "| 1to16 | nats |",
    ] {
        assert!(readme.contains(row), "no row {row} in:\n{readme}");
    }
    for svg in [
        "throughput-vs-size.svg",
        "latency-vs-load.svg",
        "fan-out.svg",
    ] {
        let text = std::fs::read_to_string(out_dir.join(svg)).unwrap();
        assert!(text.starts_with("<svg"), "{svg}");
    }
}

#[test]
fn compare_refuses_what_cannot_run_with_a_clear_error() {
    for (args, says) in [
        (
            &["--peer", "mosquitto", "--scenario", "line"][..],
            "needs a cluster",
        ),
        (
            &["--peer", "nats", "--scenario", "persistent"][..],
            "jetstream",
        ),
        (&["--peer", "nats", "--size", "4"][..], "--size"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_palio-bench"))
            .arg("compare")
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} ran");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
}
