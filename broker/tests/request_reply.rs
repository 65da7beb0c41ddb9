//! Request/reply: through the SDK on in-process brokers (one, and a line of three), and through
//! `palio req` / `palio reply` against real broker processes.

#![allow(clippy::unwrap_used)]

mod common;
mod harness;

use std::time::{Duration, Instant};

use harness::{InProc, Net, converged, next_within};
use palio::filter::Value;
use palio::{Client, ErrorCode, Notification};

fn note(pairs: &[(&str, &str)], payload: &str) -> Notification {
    let mut b = Notification::builder();
    for (k, v) in pairs {
        b = b.attr(k, *v);
    }
    b.payload(payload.as_bytes()).build().unwrap()
}

/// Answers every request of `filter` at `b` with `answer` (plus `who` = the broker's name).
async fn serve(
    b: &InProc,
    filter: &str,
    answer: &'static str,
) -> (Client, tokio::task::JoinHandle<u64>) {
    let client = b.client().await;
    let mut requests = client.responder(filter).await.unwrap();
    let replier = b.client().await;
    let who = b.name.clone();
    let task = tokio::spawn(async move {
        let mut answered = 0;
        while let Some(r) = requests.next().await {
            let level = r.get("level").cloned();
            let mut reply = Notification::builder().attr("who", who.as_str());
            if let Some(l) = level {
                reply = reply.attr("level", l);
            }
            // Answered over another connection: a reply may come from anywhere.
            replier
                .reply(&r, reply.payload(answer).build().unwrap())
                .await
                .unwrap();
            answered += 1;
        }
        answered
    });
    (client, task)
}

/// Requests `n` and expects `no_responders` well before the request's own (long) timeout.
async fn expect_no_responders(client: &Client, n: Notification) {
    let start = Instant::now();
    let e = client
        .request(n, Duration::from_secs(30))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::NoResponders), "{e}");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "no_responders after {:?}, not at once",
        start.elapsed()
    );
}

#[tokio::test]
async fn a_request_gets_the_first_reply_and_no_responders_is_said_at_once() {
    let net = Net::new();
    let b = net.broker("b1", "", &[]).await;
    let (_responder, _task) = serve(&b, "type = 'time'", "noon").await;
    // A plain subscriber that matches gets the request too, marked as one.
    let watcher = b.client().await;
    let mut watching = watcher.subscribe("type = 'time'").await.unwrap();

    let client = b.client().await;
    let reply = client
        .request(note(&[("type", "time")], "when?"), Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(reply.payload(), b"noon");
    assert_eq!(reply.get("who"), Some(&Value::String("b1".into())));
    assert!(!reply.is_request());

    let seen = next_within(&mut watching, 5000).await.expect("delivered");
    assert!(seen.is_request());
    assert_eq!(seen.payload(), b"when?");
    // A notification is not a request, and cannot be answered.
    client
        .publish(note(&[("type", "time")], "tick"))
        .await
        .unwrap();
    let plain = next_within(&mut watching, 5000).await.expect("delivered");
    assert!(!plain.is_request());
    let e = watcher.reply(&plain, note(&[], "x")).await.unwrap_err();
    assert!(matches!(e, palio::Error::InvalidRequest(_)), "{e}");

    expect_no_responders(&client, note(&[("type", "weather")], "")).await;
    // The connection is still usable after it.
    let again = client
        .request(note(&[("type", "time")], ""), Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(again.payload(), b"noon");
    assert_eq!(
        b.metric("palio_requests_total{outcome=\"replied\"}").await,
        2.0
    );
    assert_eq!(
        b.metric("palio_requests_total{outcome=\"no_responders\"}")
            .await,
        1.0
    );
}

#[tokio::test]
async fn a_request_with_responders_that_do_not_answer_times_out() {
    let net = Net::new();
    let b = net.broker("b1", "", &[]).await;
    let silent = b.client().await;
    let _sub = silent.subscribe("type = 'time'").await.unwrap();
    let client = b.client().await;
    let e = client
        .request(note(&[("type", "time")], ""), Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(matches!(e, palio::Error::Timeout(_)), "{e}");
    // The broker forgets it (and counts it) once it looks again, a second later at most.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let e = client
        .request(note(&[("type", "other")], ""), Duration::from_secs(5))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::NoResponders));
    assert_eq!(
        b.metric("palio_requests_total{outcome=\"expired\"}").await,
        1.0
    );
}

/// b1 — b2 — b3, with `strategy`.
async fn line(net: &Net, strategy: &str) -> (InProc, InProc, InProc) {
    let config = format!("strategy = \"{strategy}\"\n");
    let b1 = net.broker_with("b1", &config, &[]).await;
    let b2 = net.broker_with("b2", &config, &[&b1]).await;
    let b3 = net.broker_with("b3", &config, &[&b2]).await;
    converged(&[&b1, &b2, &b3], &[1, 2, 1]).await;
    (b1, b2, b3)
}

#[tokio::test]
async fn replies_cross_brokers_and_no_responders_is_known_across_them() {
    for strategy in ["covering", "flooding"] {
        let net = Net::new();
        let (b1, _b2, b3) = line(&net, strategy).await;
        let (_responder, _task) = serve(&b3, "type = 'time'", "noon at b3").await;
        let client = b1.client().await;
        // The responder's subscription reaches b1 asynchronously.
        let deadline = Instant::now() + Duration::from_secs(20);
        let reply = loop {
            match client
                .request(note(&[("type", "time")], ""), Duration::from_secs(5))
                .await
            {
                Ok(r) => break r,
                Err(e) if e.code() == Some(ErrorCode::NoResponders) => {
                    assert!(Instant::now() < deadline, "{strategy}: never routed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("{strategy}: {e}"),
            }
        };
        assert_eq!(reply.payload(), b"noon at b3", "{strategy}");
        assert_eq!(reply.get("who"), Some(&Value::String("b3".into())));
        // Flooding carries the request to b2 and b3, which report that nobody there matched;
        // covering does not forward it at all. Either way b1 answers before the timeout.
        expect_no_responders(&client, note(&[("type", "weather")], "")).await;
    }
}

#[test]
fn palio_req_and_reply_through_the_command_line_across_brokers() {
    use common::cli::{Collecting, palio, run};

    let d = common::Dirs::new();
    let tls = d.path("tls");
    let b1 = common::BrokerProc::start(&d.path("d1"), &tls, &["--id", "b1"]);
    let b2 = common::BrokerProc::start(&d.path("d2"), &tls, &["--id", "b2", "--peer", &b1.quic]);
    let linked = Instant::now() + Duration::from_secs(20);
    while b1.routes()["peers"].as_array().is_none_or(|p| p.len() != 1) {
        assert!(Instant::now() < linked, "b1 and b2 never linked");
        std::thread::sleep(Duration::from_millis(50));
    }

    // `palio reply` at b2 answers two requests, printing each.
    let reply = Collecting::start(
        palio(
            &b2,
            &[
                "reply",
                "type = 'time'",
                "--payload",
                "noon",
                "--attr",
                "tz=utc",
                "--count",
                "2",
            ],
        )
        .spawn()
        .unwrap(),
    );

    // Until the responder's subscription has reached b1, requests find no responders.
    let deadline = Instant::now() + Duration::from_secs(30);
    let answered = loop {
        let out = run(
            &b1,
            &[
                "req",
                "--attr",
                "type=time",
                "--attr",
                "n=1",
                "--payload",
                "when?",
            ],
            20,
        );
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if out.status.code() == Some(0) {
            break out;
        }
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("no responders"), "{stderr}");
        assert!(Instant::now() < deadline, "never answered: {stderr}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let line: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&answered.stdout).trim()).unwrap();
    assert_eq!(
        line,
        serde_json::json!({"attributes": {"tz": "utc"}, "payload": "noon"})
    );

    // No responder for this one, across the two brokers: exit 1 at once, not at the timeout.
    let start = Instant::now();
    let out = run(
        &b1,
        &["req", "--attr", "type=weather", "--timeout", "30"],
        20,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no responders"));
    assert!(out.stdout.is_empty());
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );

    // The second request ends `palio reply --count 2`.
    let out = run(&b1, &["req", "--attr", "type=time", "--attr", "n=2"], 20);
    assert_eq!(out.status.code(), Some(0));
    let out = reply.finish(20);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    let requests: Vec<serde_json::Value> = printed
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(requests.len(), 2, "{printed}");
    assert_eq!(requests[0]["attributes"]["n"], 1);
    assert_eq!(requests[0]["payload"], "when?");
    assert_eq!(requests[1]["attributes"]["n"], 2);
}

#[tokio::test]
async fn requests_and_replies_stay_within_the_publish_permission() {
    let net = Net::new();
    let config = r#"
[auth]
allow_anonymous = false

[[auth.user]]
name = "alice"
token = "alice-secret"
publish = "type = 'order'"

[[auth.user]]
name = "mute"
token = "mute-secret"
publish = "FALSE"
"#;
    let b = net.broker_with("b1", config, &[]).await;
    let connect = |token: &'static str| {
        let opts = b.options().token(token);
        async move { Client::connect(opts).await.unwrap() }
    };
    let alice = connect("alice-secret").await;
    let e = alice
        .request(note(&[("type", "time")], ""), Duration::from_secs(5))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::PermissionDenied), "{e}");

    // A responder that may publish nothing cannot reply either: the request times out, and
    // the responder's next flush says why.
    let mute = connect("mute-secret").await;
    let mut requests = mute.responder("type = 'order'").await.unwrap();
    let asking = tokio::spawn(async move {
        alice
            .request(note(&[("type", "order")], ""), Duration::from_millis(1500))
            .await
    });
    let r = tokio::time::timeout(Duration::from_secs(10), requests.next())
        .await
        .unwrap()
        .unwrap();
    mute.reply(&r, note(&[("type", "order")], "ok"))
        .await
        .unwrap();
    let e = mute.flush().await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::PermissionDenied), "{e}");
    let e = asking.await.unwrap().unwrap_err();
    assert!(matches!(e, palio::Error::Timeout(_)), "{e}");
}
