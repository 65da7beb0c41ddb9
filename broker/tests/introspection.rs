//! A broker about itself: `server info`, `server ping`, `routes` and `peers` through the SDK
//! and the `palio` binary, against in-process brokers; the routing tables with their filters
//! in `/routes`; who may see filters; and configured peers that cannot be reached (their
//! dial state, and the broker's log).

#![allow(clippy::unwrap_used)]

mod common;
mod harness;

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::cli::{ok, palio_bin, wait_output};
use harness::{InProc, Net, converged, http_get_with, wait_for};
use serde_json::Value as Json;

const FILTER: &str = "type = 'alarm' AND level > 2";

/// Runs the `palio` binary against `b` with `args` (bounded), off the runtime the brokers
/// run on.
async fn palio(b: &InProc, args: &[&str]) -> Output {
    let child = Command::new(palio_bin())
        .args(args)
        .env("PALIO_SERVER", b.quic.to_string())
        .env("PALIO_TLS_DIR", &b.tls_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("palio runs");
    tokio::task::spawn_blocking(move || wait_output(child, 30))
        .await
        .unwrap()
}

fn json_line(out: &Output) -> Json {
    serde_json::from_str(ok(out).trim()).expect("one JSON value")
}

/// The filters a listing shows (none if it shows none).
fn entries(listing: &Json) -> Vec<String> {
    listing["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            e.as_str()
                .map_or_else(|| e["filter"].to_string(), str::to_owned)
        })
        .collect()
}

/// b2 dialing b1, and a subscription at b1 that b1 has forwarded to b2, with the client that
/// holds it.
async fn two_brokers_with_a_subscription(
    net: &Net,
) -> (InProc, InProc, palio::Client, palio::Subscription) {
    let b1 = net.broker("b1", "", &[]).await;
    let b2 = net.broker("b2", "", &[&b1]).await;
    converged(&[&b1, &b2], &[1, 1]).await;
    let c1 = b1.client().await;
    let sub = c1.subscribe(FILTER).await.unwrap();
    let b2r = &b2;
    wait_for("b2 to hold b1's subscription", 20, || async move {
        b2r.routes().await["peers"][0]["subscriptions"]["total"] == 1
    })
    .await;
    (b1, b2, c1, sub)
}

#[tokio::test]
async fn server_info_ping_and_routes_through_the_sdk_across_two_brokers() {
    let net = Net::new();
    let (b1, b2, c1, _sub) = two_brokers_with_a_subscription(&net).await;
    let c2 = b2.client().await;

    let info = c2.server_info().await.unwrap();
    assert_eq!((info.id.as_str(), info.broker_id), ("b2", b2.id.0));
    assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(info.max_frame, 1 << 20);
    assert!(info.clients >= 1, "{info:?}");
    assert!(!info.strategy.is_empty());
    assert_eq!(info.peers.len(), 1, "{info:?}");
    let p = &info.peers[0];
    assert_eq!(p.address, b1.quic.to_string());
    assert_eq!(
        (p.state.as_str(), p.name.as_deref(), p.id, p.dialed),
        ("up", Some("b1"), Some(b1.id.0), true)
    );
    assert!(p.rtt_us.is_some() && p.last_error.is_none(), "{p:?}");
    // b1 did not dial b2: it lists b2 by its link.
    let info1 = c1.server_info().await.unwrap();
    assert_eq!(info1.peers.len(), 1, "{info1:?}");
    let p = &info1.peers[0];
    assert_eq!(
        (p.state.as_str(), p.name.as_deref(), p.dialed),
        ("up", Some("b2"), false)
    );

    for _ in 0..3 {
        c2.ping().await.unwrap();
    }

    // The subscription, in every table it is in: local at b1, forwarded by b1 to b2, held
    // by b2 from b1 (notifications matching it are routed toward b1).
    let r1 = c1.routes().await.unwrap();
    assert_eq!(r1.detail, "full");
    let local = r1.subscriptions.entries.clone().unwrap();
    assert_eq!(local.len(), 1);
    assert_eq!(local[0].filter, FILTER);
    assert!(local[0].owner.starts_with("client "), "{local:?}");
    assert_eq!(
        r1.peers[0].forwarded_subscriptions.entries.as_deref(),
        Some([FILTER.to_owned()].as_slice())
    );
    let r2 = c2.routes().await.unwrap();
    assert_eq!(r2.peers[0].name, "b1");
    assert_eq!(
        r2.peers[0].subscriptions.entries.as_deref(),
        Some([FILTER.to_owned()].as_slice())
    );
    assert_eq!(r2.peers[0].subscriptions.truncated, 0);
    assert_eq!(r2.subscriptions.total, 0);
    assert_eq!(r2.dialed.len(), 1);
    assert_eq!(r2.dialed[0].state, "up");

    // /routes is the same document.
    let http = b2.routes().await;
    assert_eq!(http["detail"], "full");
    assert_eq!(entries(&http["peers"][0]["subscriptions"]), [FILTER]);
    assert_eq!(http["peers"][0]["subscriptions"]["truncated"], 0);
    assert_eq!(http["dialed"][0]["address"], b1.quic.to_string());
    let http1 = b1.routes().await;
    assert_eq!(
        entries(&http1["peers"][0]["forwarded_subscriptions"]),
        [FILTER]
    );
    assert_eq!(http1["subscriptions"]["total"], 1);
}

#[tokio::test]
async fn the_cli_prints_server_info_pings_peers_and_routes() {
    let net = Net::new();
    let (b1, b2, _c1, _sub) = two_brokers_with_a_subscription(&net).await;

    let info = json_line(&palio(&b2, &["server", "info"]).await);
    assert_eq!(info["id"], "b2");
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"));
    assert!(info["uptime_s"].is_u64(), "{info}");
    assert_eq!(info["peers"][0]["name"], "b1");
    assert_eq!(info["peers"][0]["address"], b1.quic.to_string());
    assert_eq!(info["peers"][0]["state"], "up");
    assert!(info["peers"][0]["rtt_ms"].is_f64(), "{info}");

    let out = palio(&b2, &["server", "ping", "--count", "3", "--interval", "0"]).await;
    let lines: Vec<Json> = ok(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["seq"], i);
        assert!(l["rtt_ms"].as_f64().is_some_and(|ms| ms >= 0.0), "{l}");
    }

    let peers = json_line(&palio(&b2, &["peers", "--json"]).await);
    assert_eq!(peers["peers"][0]["name"], "b1");
    assert_eq!(peers["dialed"][0]["state"], "up");
    let text = ok(&palio(&b2, &["peers"]).await);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "peer links:", "{text}");
    assert!(lines[1].starts_with("PEER  ID "), "{text}");
    assert!(lines[2].starts_with("b1  "), "{text}");
    assert!(text.contains(&format!("{}  up", b1.quic)), "{text}");

    let text = ok(&palio(&b2, &["routes"]).await);
    assert!(
        text.contains(&format!(
            "subscriptions from b1, notifications routed toward it (1):\n  {FILTER}\n"
        )),
        "{text}"
    );
    assert!(text.starts_with("broker b2 "), "{text}");
    let routes = json_line(&palio(&b2, &["routes", "--json"]).await);
    assert_eq!(entries(&routes["peers"][0]["subscriptions"]), [FILTER]);
}

#[tokio::test]
async fn long_tables_are_truncated_with_counts_and_fit_in_one_frame() {
    let net = Net::new();
    let limits = "max_subscriptions_per_client = 2000\nmax_frame_bytes = 65536";
    let b = net.broker("b1", limits, &[]).await;
    let c = b.client().await;
    let mut subs = Vec::new();
    for i in 0..1500 {
        subs.push(c.subscribe(&format!("n = {i}")).await.unwrap());
    }
    // /routes: the first 1000, oldest first, and how many more there are.
    let http = b.routes().await;
    let listed = entries(&http["subscriptions"]);
    assert_eq!(listed.len(), 1000);
    assert_eq!(http["subscriptions"]["total"], 1500);
    assert_eq!(http["subscriptions"]["truncated"], 500);
    assert!(listed[0].contains("n = 0") && listed[999].contains("n = 999"));
    // A client's answer is one frame of at most max_frame_bytes: fewer entries, counted.
    let routes = c.routes().await.unwrap();
    let shown = routes.subscriptions.entries.as_ref().unwrap().len() as u64;
    assert!(shown > 0 && shown < 1000, "{shown} entries");
    assert_eq!(routes.subscriptions.total, 1500);
    assert_eq!(routes.subscriptions.truncated, 1500 - shown);
    assert!(palio_protocol::encoded_len(&routes).unwrap() <= 65536);
}

#[tokio::test]
async fn ping_exits_1_naming_the_address_when_the_broker_is_gone() {
    let net = Net::new();
    let b = net.broker("b1", "", &[]).await;
    let (quic, tls_dir) = (b.quic.to_string(), b.tls_dir.clone());
    b.stop().await;
    let child = Command::new(palio_bin())
        .args(["server", "ping", "--server", &quic])
        .env("PALIO_TLS_DIR", &tls_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = tokio::task::spawn_blocking(move || wait_output(child, 30))
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(out.stdout.is_empty());
    assert!(
        stderr.starts_with("palio: no broker answered at ") && stderr.contains(&quic),
        "{stderr}"
    );
}

const USERS: &str = r#"
[auth]
allow_anonymous = false

[[auth.user]]
name = "root"
token = "root-secret"
admin = true

[[auth.user]]
name = "carol"
token = "carol-secret"

[admin_access]
token = "admin-secret"
"#;

#[tokio::test]
async fn only_admins_see_filters_where_routes_are_protected() {
    let net = Net::new();
    let b = net.broker_with("b1", USERS, &[]).await;
    let carol = palio::Client::connect(b.options().token("carol-secret"))
        .await
        .unwrap();
    let root = palio::Client::connect(b.options().token("root-secret"))
        .await
        .unwrap();
    let _sub = carol.subscribe("type = 'secret-filter'").await.unwrap();

    let seen = carol.routes().await.unwrap();
    assert_eq!(seen.detail, "summary");
    assert_eq!(seen.subscriptions.total, 1);
    assert_eq!(seen.subscriptions.entries, None);
    let seen = root.routes().await.unwrap();
    assert_eq!(seen.detail, "full");
    assert_eq!(
        seen.subscriptions.entries.unwrap()[0].filter,
        "type = 'secret-filter'"
    );
    // Everyone may ask about the broker itself.
    assert_eq!(carol.server_info().await.unwrap().id, "b1");
    carol.ping().await.unwrap();

    // The admin listener, with its token, follows `routes` (full by default).
    let (status, body) = http_get_with(b.admin, "/routes", Some("admin-secret")).await;
    assert_eq!(status, 200);
    assert!(body.contains("secret-filter"), "{body}");

    // The command line, as carol: sizes only.
    let out = palio(&b, &["routes", "--json", "--token", "carol-secret"]).await;
    let text = ok(&out);
    assert!(!text.contains("secret-filter"), "{text}");
    let json: Json = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(json["detail"], "summary");
    assert_eq!(
        json["subscriptions"],
        serde_json::json!({"total": 1, "truncated": 0})
    );
}

#[tokio::test]
async fn a_peer_without_a_port_is_dialed_on_7400_and_its_failure_is_shown() {
    let net = Net::new();
    let b = net
        .broker_with("b1", "peers = [\"nowhere.invalid\"]\n", &[])
        .await;
    let br = &b;
    wait_for("the dial to fail", 30, || async move {
        br.routes().await["dialed"][0]["last_error"].is_string()
    })
    .await;
    let dialed = &b.routes().await["dialed"][0];
    assert_eq!(dialed["address"], "nowhere.invalid:7400");
    assert_eq!(dialed["state"], "failed");
    let info = b.client().await.server_info().await.unwrap();
    let p = &info.peers[0];
    assert_eq!(
        (p.address.as_str(), p.state.as_str(), p.dialed),
        ("nowhere.invalid:7400", "down", true)
    );
    assert!(
        p.last_error
            .as_deref()
            .is_some_and(|e| e.contains("nowhere.invalid")),
        "{p:?}"
    );
}

/// A `palio-broker` process whose log (stderr) is collected.
struct Logged {
    child: std::process::Child,
    admin: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Drop for Logged {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn logged_broker(dir: &std::path::Path, args: &[&str]) -> Logged {
    let mut child = Command::new(env!("CARGO_BIN_EXE_palio-broker"))
        .args([
            "--id",
            "b1",
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--tls-dir")
        .arg(dir.join("tls"))
        .args(args)
        .env("PALIO_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn palio-broker");
    let log = Arc::new(Mutex::new(Vec::new()));
    let stderr = child.stderr.take().unwrap();
    let lines = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            lines.lock().unwrap().push(line);
        }
    });
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(json) = line.strip_prefix("PALIO_READY ") {
                let _ = tx.send(json.to_owned());
            }
        }
    });
    let mut logged = Logged {
        child,
        admin: String::new(),
        log,
    };
    let ready = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("broker ready within 20 s");
    let ready: Json = serde_json::from_str(&ready).unwrap();
    logged.admin = ready["admin"].as_str().unwrap().to_owned();
    logged
}

#[test]
fn an_unreachable_peer_is_warned_about_once_and_a_missing_port_is_said() {
    let dir = tempfile::tempdir().unwrap();
    let b = logged_broker(dir.path(), &["--peer", "nowhere.invalid"]);
    // Several attempts, all failed.
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let routes: Json = serde_json::from_str(&common::http_get(&b.admin, "/routes")).unwrap();
        if routes["dialed"][0]["attempts"].as_u64().unwrap_or(0) >= 4 {
            assert_eq!(routes["dialed"][0]["state"], "failed", "{routes}");
            break;
        }
        assert!(
            Instant::now() < end,
            "4 dial attempts within 30 s: {routes}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = b.log.lock().unwrap().clone();
    let said = |what: &str| {
        log.iter()
            .filter(|l| l.contains(what) && l.contains("nowhere.invalid"))
            .cloned()
            .collect::<Vec<_>>()
    };
    let port = said("peer address has no port");
    assert_eq!(port.len(), 1, "{log:#?}");
    assert!(
        port[0].contains("INFO") && port[0].contains("nowhere.invalid:7400"),
        "{log:#?}"
    );
    let warned = said("cannot link to configured peer");
    assert_eq!(warned.len(), 1, "warned once, not per attempt: {log:#?}");
    assert!(
        warned[0].contains("WARN") && warned[0].contains("peer=nowhere.invalid:7400"),
        "{log:#?}"
    );
    assert!(warned[0].contains("error="), "the reason: {log:#?}");
}
