//! One broker: publish/subscribe through the SDK and the `palio` CLI, unsubscribe, admin
//! endpoints, configuration errors.

#![allow(clippy::unwrap_used)]

mod common;

use clap::Parser;
use common::{BrokerProc, Dirs, next_within, wait_until};
use palio::Notification;
use palio::filter::Value;

fn note(kind: &str, level: i32) -> Notification {
    Notification::builder()
        .attr("type", kind)
        .attr("level", level)
        .payload(format!("{kind}-{level}"))
        .build()
        .unwrap()
}

#[tokio::test]
async fn matching_notifications_are_delivered_once_and_others_not() {
    let d = Dirs::new();
    let b = BrokerProc::start(&d.path("data"), &d.path("tls"), &["--id", "solo"]);
    let client = b.client().await;
    assert_eq!(client.broker().broker, "solo");
    let mut sub = client
        .subscribe("type = 'alarm' AND level > 2")
        .await
        .unwrap();
    for (kind, level) in [("alarm", 5), ("alarm", 1), ("info", 9), ("alarm", 3)] {
        client.publish(note(kind, level)).await.unwrap();
    }
    assert_eq!(client.flush().await.unwrap(), 4);
    let first = next_within(&mut sub, 5000).await.expect("first match");
    assert_eq!(first.get("level"), Some(&Value::Int(5)));
    assert_eq!(first.payload(), b"alarm-5");
    let second = next_within(&mut sub, 5000).await.expect("second match");
    assert_eq!(second.get("level"), Some(&Value::Int(3)));
    assert!(
        next_within(&mut sub, 300).await.is_none(),
        "no other delivery"
    );
    assert_eq!(b.metric("palio_notifications_delivered_total"), 2.0);
    assert_eq!(b.metric("palio_notifications_published_total"), 4.0);
}

/// The ids of the subscriptions the broker's `/routes` lists, sorted.
fn listed_subscriptions(b: &BrokerProc) -> Vec<u64> {
    let mut ids: Vec<u64> = b.routes()["subscriptions"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_u64().unwrap())
        .collect();
    ids.sort_unstable();
    ids
}

/// Checked on the broker's side: the SDK drops deliveries for a subscription it has ended, so
/// the client alone could not tell a broker that ignored the unsubscribe. A second subscription
/// with the same filter on the same connection keeps receiving, so the checks cannot pass
/// because nothing was routed at all.
#[tokio::test]
async fn unsubscribe_stops_delivery() {
    let d = Dirs::new();
    let b = BrokerProc::start(&d.path("data"), &d.path("tls"), &[]);
    let client = b.client().await;
    let mut keep = client.subscribe("type = 'x'").await.unwrap();
    let mut gone = client.subscribe("type = 'x'").await.unwrap();
    client.publish(note("x", 1)).await.unwrap();
    assert!(next_within(&mut gone, 5000).await.is_some());
    assert!(next_within(&mut keep, 5000).await.is_some());
    assert_eq!(b.metric("palio_notifications_delivered_total"), 2.0);
    let mut both = vec![keep.id(), gone.id()];
    both.sort_unstable();
    assert_eq!(listed_subscriptions(&b), both);

    client.unsubscribe(&gone).await.unwrap();
    assert_eq!(listed_subscriptions(&b), vec![keep.id()]);
    for level in 2..=4 {
        client.publish(note("x", level)).await.unwrap();
    }
    client.flush().await.unwrap();
    for level in 2..=4 {
        let n = next_within(&mut keep, 5000)
            .await
            .expect("still subscribed");
        assert_eq!(n.get("level"), Some(&Value::Int(level)));
    }
    assert!(next_within(&mut gone, 300).await.is_none());
    // The router hands a notification to every matching subscription before it takes the
    // next one, so once `keep` has the last of them (and 300 ms later) the counter is final:
    // one delivery per publication, none for `gone`.
    assert_eq!(b.metric("palio_notifications_delivered_total"), 2.0 + 3.0);
    // Unsubscribing twice names an unknown subscription.
    let err = client.unsubscribe(&gone).await.unwrap_err();
    assert_eq!(err.code(), Some(palio::ErrorCode::UnknownId));
}

#[tokio::test]
async fn advertise_and_unadvertise() {
    let d = Dirs::new();
    let b = BrokerProc::start(&d.path("data"), &d.path("tls"), &[]);
    let client = b.client().await;
    let a = client.advertise("type = 'alarm'").await.unwrap();
    assert_eq!(b.routes()["advertisements"]["total"], 1);
    client.unadvertise(a).await.unwrap();
    assert_eq!(b.routes()["advertisements"]["total"], 0);
    assert!(client.unadvertise(a).await.is_err());
}

/// Runs the `palio` command line in a thread (it starts its own runtime).
fn cli(args: Vec<String>) -> std::thread::JoinHandle<(u8, String, String)> {
    std::thread::spawn(move || {
        let cli = palio::cli::Cli::try_parse_from(args).expect("valid command line");
        let mut out = Vec::new();
        let mut err = Vec::new();
        let code = palio::cli::run(cli, &mut out, &mut err);
        let code = if code == std::process::ExitCode::SUCCESS {
            0
        } else {
            1
        };
        (
            code,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    })
}

#[tokio::test]
async fn cli_sub_and_pub_follow_the_output_contract() {
    let d = Dirs::new();
    let b = BrokerProc::start(&d.path("data"), &d.path("tls"), &[]);
    let tls = d.path("tls").display().to_string();
    let base = |cmd: &str| -> Vec<String> {
        vec![
            "palio".into(),
            cmd.into(),
            "--server".into(),
            b.quic.clone(),
            "--tls-dir".into(),
            tls.clone(),
        ]
    };
    let mut sub_args = base("sub");
    sub_args.extend(
        [
            "--count",
            "3",
            "--timeout",
            "30",
            "kind = 'demo' AND seq >= 1",
        ]
        .map(String::from),
    );
    let sub = cli(sub_args);
    wait_until("the CLI subscription", 20, || {
        b.routes()["subscriptions"]["entries"]
            .as_array()
            .is_some_and(|s| s.len() == 1)
    })
    .await;
    let mut pub_args = base("pub");
    pub_args.extend(
        [
            "--attr",
            "kind=demo",
            "--attr",
            "ok=true",
            "--attr",
            "note=hi there",
            "--payload",
            "p",
            "--count",
            "4",
        ]
        .map(String::from),
    );
    let (code, out, err) = tokio::task::spawn_blocking(move || cli(pub_args).join().unwrap())
        .await
        .unwrap();
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), r#"{"published":4}"#);
    let (code, out, err) = tokio::task::spawn_blocking(move || sub.join().unwrap())
        .await
        .unwrap();
    assert_eq!(code, 0, "{err}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["attributes"]["seq"], i as i64 + 1);
        assert_eq!(l["attributes"]["ok"], true);
        assert_eq!(l["attributes"]["kind"], "demo");
        assert_eq!(l["attributes"]["note"], "hi there");
        assert_eq!(l["payload"], "p");
    }
}

#[tokio::test]
async fn cli_sub_times_out_with_a_failure_status() {
    let d = Dirs::new();
    let b = BrokerProc::start(&d.path("data"), &d.path("tls"), &[]);
    let args = vec![
        "palio".into(),
        "sub".into(),
        "--server".into(),
        b.quic.clone(),
        "--tls-dir".into(),
        d.path("tls").display().to_string(),
        "--count".into(),
        "1".into(),
        "--timeout".into(),
        "0.5".into(),
        "type = 'never'".into(),
    ];
    let handle = cli(args);
    let (code, out, _) = tokio::task::spawn_blocking(move || handle.join().unwrap())
        .await
        .unwrap();
    assert_eq!(code, 1);
    assert!(out.is_empty());
}

#[tokio::test]
async fn admin_endpoints_answer() {
    let d = Dirs::new();
    let b = BrokerProc::start(&d.path("data"), &d.path("tls"), &["--id", "adm"]);
    assert_eq!(b.get("/healthz").trim(), "ok");
    let client = b.client().await;
    let _sub = client.subscribe("a = 1").await.unwrap();
    let metrics = b.get("/metrics");
    for name in [
        "palio_connections_total",
        "palio_open_connections",
        "palio_subscriptions",
        "palio_notifications_published_total",
        "palio_notifications_forwarded_total",
        "palio_notifications_delivered_total",
        "palio_routing_table_entries",
        "palio_peer_links_up",
        "palio_matching_duration_seconds_bucket",
    ] {
        assert!(metrics.contains(name), "missing {name}");
    }
    // The router updates its gauges after the batch of commands that subscribed, which may be
    // just after the subscription was answered.
    wait_until("palio_subscriptions = 1", 5, || {
        b.metric("palio_subscriptions ") == 1.0
    })
    .await;
    let routes = b.routes();
    assert_eq!(routes["broker"]["name"], "adm");
    assert_eq!(routes["subscriptions"]["entries"][0]["filter"], "a = 1");
}

#[tokio::test]
async fn invalid_config_names_file_and_line_and_broker_does_not_start() {
    let d = Dirs::new();
    let cfg = d.path("bad.toml");
    std::fs::write(
        &cfg,
        "id = \"b1\"\n[[subscription]]\nname = \"x\"\nfilter = \"level >\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_palio-broker"))
        .args([
            "--config",
            cfg.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "off",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml:4:"), "{err}");
    assert!(err.contains("invalid filter"), "{err}");
    assert!(String::from_utf8_lossy(&out.stdout).is_empty());
}

#[tokio::test]
async fn static_subscription_from_config_counts_matches() {
    let d = Dirs::new();
    let cfg = d.path("ok.toml");
    std::fs::write(
        &cfg,
        "id = \"st\"\n[[subscription]]\nname = \"alarms\"\nfilter = \"type = 'alarm'\"\n",
    )
    .unwrap();
    let b = BrokerProc::start(
        &d.path("data"),
        &d.path("tls"),
        &["--config", cfg.to_str().unwrap()],
    );
    let client = b.client().await;
    client.publish(note("alarm", 1)).await.unwrap();
    client.publish(note("other", 1)).await.unwrap();
    client.flush().await.unwrap();
    assert_eq!(
        b.metric("palio_static_subscription_matches_total{name=\"alarms\"}"),
        1.0
    );
}

#[tokio::test]
async fn metrics_are_valid_prometheus_text() {
    let d = Dirs::new();
    let b = BrokerProc::start(&d.path("data"), &d.path("tls"), &[]);
    let c = b.client().await;
    let mut s = c.subscribe("type = 'alarm'").await.unwrap();
    c.publish(note("alarm", 1)).await.unwrap();
    assert!(next_within(&mut s, 5000).await.is_some());
    let text = b.get("/metrics");
    // Our own conventions: palio_ (or process_) names, counters end in _total, values parse.
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let (name, kind) = (parts.next().unwrap(), parts.next().unwrap());
            assert!(
                name.starts_with("palio_") || name.starts_with("process_"),
                "{name}"
            );
            if kind == "counter" {
                assert!(name.ends_with("_total"), "counter {name} lacks _total");
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }
    // promtool's linter, where installed (.ci/run installs it; CI fails without it).
    let child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    match child {
        Ok(mut child) => {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
                "promtool: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Err(e) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "promtool is required in CI: {e}"
            );
            eprintln!("promtool not installed: only Palio's own metric checks ran");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_shuts_down_gracefully() {
    let d = Dirs::new();
    let mut b = BrokerProc::start(&d.path("data"), &d.path("tls"), &[]);
    // A client that reconnects would ride through the shutdown (tests/reconnect.rs); this one
    // shows what the broker said.
    let c = palio::Client::connect(b.options().no_reconnect())
        .await
        .unwrap();
    let mut s = c.subscribe("a = 1").await.unwrap();
    let status = tokio::task::block_in_place(|| b.terminate(10));
    let status = status.expect("broker exits within 10 s of SIGTERM");
    assert!(status.success(), "{status:?}");
    // The subscriber's stream ends, and further requests report the broker's reason.
    assert!(next_within(&mut s, 5000).await.is_none());
    let err = c.flush().await.unwrap_err();
    assert_eq!(err.code(), Some(palio::ErrorCode::ShuttingDown), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_subscribes_on_one_client_each_get_a_contiguous_tail() {
    let d = Dirs::new();
    let b = BrokerProc::start(&d.path("data"), &d.path("tls"), &[]);
    let client = std::sync::Arc::new(b.client().await);
    let publisher = b.client().await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood = {
        let stop = stop.clone();
        tokio::spawn(async move {
            // At most 600 notifications, paced: every subscription's SDK queue (1024) holds
            // its whole tail unread, so nothing is dropped and gaps would be a bug.
            let mut seq = 0;
            while seq < 600 && (seq < 100 || !stop.load(std::sync::atomic::Ordering::Relaxed)) {
                publisher.publish(note("x", seq)).await.unwrap();
                seq += 1;
                if seq % 10 == 0 {
                    publisher.flush().await.unwrap();
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                }
            }
            publisher.publish(note("end", seq)).await.unwrap();
            publisher.flush().await.unwrap();
            seq
        })
    };
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let c = client.clone();
        tasks.push(tokio::spawn(async move {
            c.subscribe("type = 'x' OR type = 'end'").await.unwrap()
        }));
    }
    let mut subs = Vec::new();
    for t in tasks {
        subs.push(t.await.unwrap());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let last = flood.await.unwrap();
    for mut s in subs {
        let mut seqs = Vec::new();
        loop {
            let n = next_within(&mut s, 10_000).await.expect("a delivery");
            if n.get("type") == Some(&Value::String("end".into())) {
                break;
            }
            match n.get("level") {
                Some(Value::Int(i)) => seqs.push(*i),
                other => panic!("{other:?}"),
            }
        }
        assert!(!seqs.is_empty());
        assert_eq!(*seqs.last().unwrap(), last - 1, "the tail reaches the end");
        for w in seqs.windows(2) {
            assert_eq!(w[1], w[0] + 1, "contiguous, in order, no duplicates");
        }
    }
}

#[tokio::test]
async fn certificate_files_instead_of_the_development_pki() {
    let d = Dirs::new();
    let pki_dir = d.path("pki");
    let pki = palio_protocol::tls::DevPki::open_or_create(&pki_dir).unwrap();
    let (cert, key) = pki.issue_files("fb", &[], &pki_dir).unwrap();
    let (ccert, ckey) = pki.issue_files("app", &[], &pki_dir).unwrap();
    let ca = pki_dir.join("ca.pem");
    let cfg = d.path("files.toml");
    std::fs::write(
        &cfg,
        format!(
            "id = \"fb\"\n[tls]\ncert = {:?}\nkey = {:?}\nca = {:?}\n[[auth.user]]\nname = \"app\"\ntoken = \"token-t1\"\n",
            cert.display().to_string(),
            key.display().to_string(),
            ca.display().to_string()
        ),
    )
    .unwrap();
    let b = BrokerProc::start_with_files(
        &d.path("data"),
        &pki_dir,
        &["--config", cfg.to_str().unwrap()],
    );
    // CA file plus token; CA file plus client certificate files.
    let with_token = palio::Client::connect(
        palio::ConnectOptions::new(&b.quic)
            .ca_file(&ca)
            .token("token-t1"),
    )
    .await
    .unwrap();
    let with_cert = palio::Client::connect(
        palio::ConnectOptions::new(&b.quic)
            .ca_file(&ca)
            .cert_files(&ccert, &ckey),
    )
    .await
    .unwrap();
    let mut s = with_cert.subscribe("a = 1").await.unwrap();
    with_token
        .publish(Notification::builder().attr("a", 1).build().unwrap())
        .await
        .unwrap();
    assert!(next_within(&mut s, 5000).await.is_some());
    // Neither: refused.
    let err = palio::Client::connect(palio::ConnectOptions::new(&b.quic).ca_file(&ca))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(palio::ErrorCode::Unauthenticated));
}
