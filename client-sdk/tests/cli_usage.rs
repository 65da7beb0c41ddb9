//! The `palio` binary's usage contract without a broker: no broker at the address fails
//! fast and names it, the default port, `--version` on every command, short flags, attribute
//! names refused as usage errors, and the help naming `PALIO_LOG`. Against a real broker:
//! broker/tests/cli_client.rs.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use palio_protocol::tls::DevPki;

fn palio(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_palio"))
        .args(args)
        .env_remove("PALIO_SERVER")
        .env_remove("PALIO_TLS_DIR")
        .env_remove("PALIO_CA")
        .env_remove("PALIO_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("palio runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A development CA, so that commands get as far as dialing.
fn tls_dir() -> tempfile::TempDir {
    let d = tempfile::tempdir().expect("temp dir");
    DevPki::open_or_create(d.path()).expect("dev PKI");
    d
}

#[test]
fn every_broker_command_fails_within_3_seconds_naming_an_address_nobody_answers_at() {
    let tls = tls_dir();
    let tls = tls.path().to_str().expect("utf-8 path");
    // Holds the port and answers nothing: a stopped broker, as QUIC sees it.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = silent.local_addr().expect("address").to_string();
    for cmd in [
        &["sub", "x > 1"][..],
        &["sub", "--durable", "q"],
        &["pub", "-p", "x"],
        &["pub", "--persistent"],
        &["queue", "ls"],
        &["group", "ls"],
    ] {
        let mut args = cmd.to_vec();
        args.extend(["-s", &addr, "--tls-dir", tls]);
        let started = Instant::now();
        let out = palio(&args);
        let elapsed = started.elapsed();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{cmd:?}: {err}");
        assert!(elapsed < Duration::from_secs(3), "{cmd:?} took {elapsed:?}");
        assert!(
            err.contains(&format!("palio: no broker answered at {addr} within 2s"))
                && err.contains("--server/-s"),
            "{cmd:?}: {err}"
        );
    }
}

#[test]
fn an_address_without_a_port_means_port_7400() {
    let tls = tls_dir();
    let tls = tls.path().to_str().expect("utf-8 path");
    // Nothing listens on this loopback address, whatever runs on the machine's 127.0.0.1.
    for (server, named) in [("127.0.0.61", "127.0.0.61:7400"), ("[::1]:1", "[::1]:1")] {
        let out = palio(&["queue", "ls", "-s", server, "--tls-dir", tls]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(named), "{server}: {err}");
    }
    let out = palio(&["queue", "ls", "-s", "localhost:http", "--tls-dir", tls]);
    assert_eq!(out.status.code(), Some(2), "a usage error");
    assert!(stderr(&out).contains("not a number"), "{}", stderr(&out));
}

#[test]
fn every_command_answers_version() {
    // clap names the subcommand: `palio-sub 0.1.0`.
    let version = format!(" {}", env!("CARGO_PKG_VERSION"));
    for cmd in [
        &["--version"][..],
        &["sub", "--version"],
        &["pub", "-V"],
        &["queue", "ls", "--version"],
        &["filter", "eval", "--version"],
    ] {
        let out = palio(cmd);
        assert_eq!(out.status.code(), Some(0), "{cmd:?}: {}", stderr(&out));
        let printed = String::from_utf8_lossy(&out.stdout);
        assert!(
            printed.starts_with("palio") && printed.trim_end().ends_with(&version),
            "{cmd:?}: {printed}"
        );
    }
}

#[test]
fn an_invalid_attribute_name_is_a_usage_error_with_the_naming_rule() {
    let out = palio(&["pub", "--attr", "user_id=5"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("user_id") && err.contains("CloudEvents") && err.contains("\"userid\""),
        "{err}"
    );
    let out = palio(&["pub", "-a", "novalue"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn short_flags_are_the_long_ones() {
    // Parsed (a usage error would exit 2), then failing to connect (exit 1) at the address -s gave.
    let tls = tls_dir();
    let tls = tls.path().to_str().expect("utf-8 path");
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = silent.local_addr().expect("address").to_string();
    for cmd in [
        &["pub", "-a", "k=1", "-p", "x", "-c", "2"][..],
        &["pub", "-a", "k=1", "-f", "-", "-c", "2"],
        &["sub", "-c", "1", "-t", "5", "k = 1"],
    ] {
        let mut args = cmd.to_vec();
        args.extend(["-s", &addr, "--tls-dir", tls]);
        let out = palio(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{cmd:?}: {err}");
        assert!(err.contains(&addr), "{cmd:?}: {err}");
    }
    let out = palio(&["pub", "-p", "x", "-f", "file"]);
    assert_eq!(out.status.code(), Some(2), "--payload with --payload-file");
}

#[test]
fn help_names_the_log_variable() {
    let out = palio(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("PALIO_LOG"), "{help}");
}
