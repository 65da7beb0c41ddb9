//! The `palio` binary as a newcomer uses it, against a real `palio-broker`: no flags but
//! `--server` from another directory (the broker's record of its TLS directory), a client
//! holding only the CA told what to give, payloads from files and standard input (binary, up
//! to the frame limit), `sub --raw`, and the short flags. Without a broker: client-sdk's
//! `tests/cli_usage.rs`.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::cli::{Collecting, palio_bin, wait_output};
use common::{BrokerProc, Dirs, wait_until};
use serde_json::Value as Json;

/// `palio` with none of the user's settings: run in `cwd`, with the broker's state home (where
/// it recorded its TLS directory) and a home of its own, and no `PALIO_*` variables.
fn bare(b: &BrokerProc, cwd: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(palio_bin());
    c.args(args)
        .current_dir(cwd)
        .env("XDG_STATE_HOME", &b.state_home)
        .env("HOME", cwd)
        .env_remove("PALIO_SERVER")
        .env_remove("PALIO_TLS_DIR")
        .env_remove("PALIO_CA")
        .env_remove("PALIO_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

fn run(mut c: Command) -> Output {
    wait_output(c.spawn().expect("palio runs"), 30)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Waits until the broker has `n` subscriptions (a `palio sub` started is subscribed).
async fn subscribed(b: &BrokerProc, n: usize) {
    wait_until("the CLI subscriptions", 20, || {
        b.routes()["subscriptions"]["total"].as_u64() == Some(n as u64)
    })
    .await;
}

#[tokio::test]
async fn from_another_directory_only_server_is_needed_while_the_broker_runs() {
    let d = Dirs::new();
    let mut b = BrokerProc::start(&d.path("data"), &d.path("tls"), &[]);
    let record = b
        .state_home
        .join("palio/brokers")
        .join(b.quic.replace(':', "_"));
    assert!(record.is_file(), "no record at {}", record.display());
    let elsewhere = d.path("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();

    let sub = Collecting::start(
        bare(
            &b,
            &elsewhere,
            &["sub", "-s", &b.quic, "-c", "1", "type = 'hi'"],
        )
        .spawn()
        .unwrap(),
    );
    subscribed(&b, 1).await;
    let out = run(bare(
        &b,
        &elsewhere,
        &["pub", "-s", &b.quic, "-a", "type=hi", "-p", "there"],
    ));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = sub.finish(30);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let line: Json = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(line["payload"], "there");

    // A clean stop removes the record; the CLI then says where it looked.
    assert!(b.terminate(20).is_some_and(|s| s.success()));
    assert!(!record.exists(), "the record outlived the broker");
    let out = run(bare(&b, &elsewhere, &["queue", "ls", "-s", &b.quic]));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&b.quic) && err.contains("--tls-dir") && err.contains("palio/brokers"),
        "{err}"
    );
}

#[tokio::test]
async fn a_client_with_only_the_ca_is_told_to_give_the_client_identity_which_needs_no_ca_key() {
    let d = Dirs::new();
    let b = BrokerProc::start(&d.path("data"), &d.path("tls"), &[]);
    let only_ca = d.path("only-ca");
    std::fs::create_dir_all(&only_ca).unwrap();
    std::fs::copy(d.path("tls/ca.pem"), only_ca.join("ca.pem")).unwrap();
    let out = run(bare(
        &b,
        &d.path("."),
        &["pub", "-s", &b.quic, "--tls-dir", only_ca.to_str().unwrap()],
    ));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for says in [b.quic.as_str(), "unauthenticated", "client.pem", "--token"] {
        assert!(err.contains(says), "{says:?} missing: {err}");
    }
    // With the client identity beside the CA (and still no CA key), it connects.
    for f in ["client.pem", "client-key.pem"] {
        std::fs::copy(d.path("tls").join(f), only_ca.join(f)).unwrap();
    }
    assert!(!only_ca.join("ca-key.pem").exists());
    let out = run(bare(
        &b,
        &d.path("."),
        &["pub", "-s", &b.quic, "--tls-dir", only_ca.to_str().unwrap()],
    ));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[tokio::test]
async fn binary_payloads_go_from_a_file_or_standard_input_to_sub_raw_and_json() {
    let d = Dirs::new();
    let b = BrokerProc::start(&d.path("data"), &d.path("tls"), &[]);
    let tls = d.path("tls");
    let here = d.path(".");
    let with_tls = |args: &[&str]| {
        let mut c = bare(&b, &here, args);
        c.env("PALIO_TLS_DIR", &tls);
        c
    };
    // Every byte value, newlines and invalid UTF-8 included.
    let bytes: Vec<u8> = (0..=255u8).chain(0..=255u8).collect();
    let file = d.path("payload.bin");
    std::fs::write(&file, &bytes).unwrap();

    let raw = Collecting::start(
        with_tls(&[
            "sub",
            "-s",
            &b.quic,
            "--raw",
            "-c",
            "2",
            "-t",
            "30",
            "kind = 'bin'",
        ])
        .spawn()
        .unwrap(),
    );
    let json = Collecting::start(
        with_tls(&["sub", "-s", &b.quic, "-c", "4", "-t", "30", "kind = 'bin'"])
            .spawn()
            .unwrap(),
    );
    subscribed(&b, 2).await;
    // From the file.
    let out = run(with_tls(&[
        "pub",
        "-s",
        &b.quic,
        "-a",
        "kind=bin",
        "-a",
        "n=0",
        "-f",
        file.to_str().unwrap(),
    ]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // From standard input, with `-f -` and with no payload flag at all.
    for (n, flag) in [("1", Some("-")), ("2", None)] {
        let mut args = vec!["pub", "-s", &b.quic, "-a", "kind=bin", "-a"];
        let attr = format!("n={n}");
        args.push(&attr);
        if let Some(f) = flag {
            args.extend(["-f", f]);
        }
        let mut c = with_tls(&args);
        let mut child = c.stdin(Stdio::piped()).spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(format!("from stdin {n}").as_bytes())
            .unwrap();
        drop(stdin);
        let out = wait_output(child, 30);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    // Standard input that is not a pipe or a file (here /dev/null) is not read.
    let out = run(with_tls(&[
        "pub", "-s", &b.quic, "-a", "kind=bin", "-a", "n=3",
    ]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let out = raw.finish(30);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let mut expected = bytes.clone();
    expected.push(b'\n');
    expected.extend_from_slice(b"from stdin 1\n");
    assert_eq!(out.stdout, expected);

    let out = json.finish(30);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let lines: Vec<Json> = out
        .stdout
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    use base64::Engine;
    assert_eq!(
        lines[0]["payload_base64"],
        base64::engine::general_purpose::STANDARD.encode(&bytes)
    );
    assert!(lines[0].get("payload").is_none());
    assert_eq!(lines[1]["payload"], "from stdin 1");
    assert_eq!(lines[2]["payload"], "from stdin 2");
    assert_eq!(lines[3]["payload"], "");
    assert_eq!(lines[3]["attributes"]["n"], 3);
}

#[tokio::test]
async fn a_payload_up_to_the_frame_limit_goes_and_a_larger_one_is_refused_naming_the_limit() {
    const LIMIT: usize = 64 * 1024;
    let d = Dirs::new();
    let cfg = d.path("palio.toml");
    std::fs::write(&cfg, format!("[limits]\nmax_frame_bytes = {LIMIT}\n")).unwrap();
    let b = BrokerProc::start(
        &d.path("data"),
        &d.path("tls"),
        &["--config", cfg.to_str().unwrap()],
    );
    let here = d.path(".");
    let tls = d.path("tls");
    let with_tls = |args: &[&str]| {
        let mut c = bare(&b, &here, args);
        c.env("PALIO_TLS_DIR", &tls);
        c
    };
    let near = d.path("near.bin");
    let over = d.path("over.bin");
    // The frame adds the attributes and a few bytes of framing to the payload.
    std::fs::write(&near, vec![b'x'; LIMIT - 64]).unwrap();
    std::fs::write(&over, vec![b'x'; LIMIT + 1]).unwrap();

    let sub = Collecting::start(
        with_tls(&[
            "sub", "-s", &b.quic, "--raw", "-c", "1", "-t", "30", "k = 1",
        ])
        .spawn()
        .unwrap(),
    );
    subscribed(&b, 1).await;
    let out = run(with_tls(&[
        "pub",
        "-s",
        &b.quic,
        "-a",
        "k=1",
        "-f",
        over.to_str().unwrap(),
    ]));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("frame_too_large") && err.contains(&LIMIT.to_string()),
        "{err}"
    );
    let out = run(with_tls(&[
        "pub",
        "-s",
        &b.quic,
        "-a",
        "k=1",
        "-f",
        near.to_str().unwrap(),
    ]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = sub.finish(30);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(out.stdout.len(), LIMIT - 64 + 1);
}
