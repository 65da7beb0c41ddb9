//! Bad input: each gets a clear error, and the broker keeps serving everyone else.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{
    BrokerProc, Dirs, close_code, next_within, raw_connect, read_frame, wait_until, write_frame,
};
use palio::{Client, ErrorCode, Notification};
use palio_protocol::{CLIENT_ALPN, ClientFrame, PROTOCOL_VERSION, ServerFrame};

/// A normal client still publishes and receives through `b`.
async fn still_serving(b: &BrokerProc) {
    let c = b.client().await;
    let mut s = c.subscribe("ok = true").await.unwrap();
    c.publish(Notification::builder().attr("ok", true).build().unwrap())
        .await
        .unwrap();
    assert!(
        next_within(&mut s, 5000).await.is_some(),
        "broker still serves"
    );
    assert_eq!(b.get("/healthz").trim(), "ok");
}

fn hello() -> ClientFrame {
    ClientFrame::Hello {
        version: PROTOCOL_VERSION,
        token: None,
        name: "raw".into(),
    }
}

#[tokio::test]
async fn garbage_and_oversized_frames_close_only_that_connection() {
    let d = Dirs::new();
    let b = BrokerProc::start(&d.path("data"), &d.path("tls"), &[]);

    // Garbage instead of a hello.
    let (_ep, conn) = raw_connect(&b, &d.path("tls"), CLIENT_ALPN).await;
    let (mut tx, mut rx) = conn.open_bi().await.unwrap();
    tx.write_all(&[0, 0, 0, 4, 0xc1, 0xc1, 0xff, 0x00])
        .await
        .unwrap();
    let err: ServerFrame = read_frame(&mut rx).await;
    assert!(
        matches!(
            err,
            ServerFrame::Error {
                request: None,
                code: ErrorCode::MalformedFrame,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(close_code(&conn).await, Some(ErrorCode::MalformedFrame));

    // An oversized frame after a proper hello.
    let (_ep2, conn) = raw_connect(&b, &d.path("tls"), CLIENT_ALPN).await;
    let (mut tx, mut rx) = conn.open_bi().await.unwrap();
    write_frame(&mut tx, &hello()).await;
    let welcome: ServerFrame = read_frame(&mut rx).await;
    assert!(matches!(welcome, ServerFrame::Welcome(_)), "{welcome:?}");
    tx.write_all(&0x7fff_ffffu32.to_be_bytes()).await.unwrap();
    tx.write_all(&[0u8; 1024]).await.unwrap();
    let err: ServerFrame = read_frame(&mut rx).await;
    match err {
        ServerFrame::Error { code, message, .. } => {
            assert_eq!(code, ErrorCode::FrameTooLarge);
            assert!(message.contains("exceeds the maximum"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(close_code(&conn).await, Some(ErrorCode::FrameTooLarge));

    // A frame other than hello first.
    let (_ep3, conn) = raw_connect(&b, &d.path("tls"), CLIENT_ALPN).await;
    let (mut tx, _rx) = conn.open_bi().await.unwrap();
    write_frame(&mut tx, &ClientFrame::Flush { request: 1 }).await;
    assert_eq!(close_code(&conn).await, Some(ErrorCode::ProtocolViolation));

    assert_eq!(
        b.metric("palio_connection_errors_total{code=\"malformed_frame\"}"),
        1.0
    );
    assert_eq!(
        b.metric("palio_connection_errors_total{code=\"frame_too_large\"}"),
        1.0
    );
    still_serving(&b).await;
}

#[tokio::test]
async fn invalid_filter_is_refused_and_the_connection_stays_usable() {
    let d = Dirs::new();
    let b = BrokerProc::start(&d.path("data"), &d.path("tls"), &[]);
    let c = b.client().await;
    let err = c.subscribe("level > ").await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidFilter), "{err}");
    assert!(err.to_string().contains("invalid_filter"), "{err}");
    let err = c.subscribe("nosuchfunction(x) = 1").await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidFilter), "{err}");
    let err = c.advertise("(((").await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidFilter), "{err}");
    let mut s = c.subscribe("level > 1").await.unwrap();
    c.publish(Notification::builder().attr("level", 2).build().unwrap())
        .await
        .unwrap();
    assert!(next_within(&mut s, 5000).await.is_some());
}

#[tokio::test]
async fn clients_without_credentials_are_refused_and_tokens_work() {
    let d = Dirs::new();
    let cfg = d.path("auth.toml");
    std::fs::write(
        &cfg,
        "[[auth.user]]\nname = \"app\"\ntoken = \"s3cret-token\"\n",
    )
    .unwrap();
    let b = BrokerProc::start(
        &d.path("data"),
        &d.path("tls"),
        &["--config", cfg.to_str().unwrap()],
    );
    // A directory with the CA certificate only: the client can verify the broker but has no
    // certificate of its own.
    let ca_only = d.path("ca-only");
    std::fs::create_dir_all(&ca_only).unwrap();
    std::fs::copy(d.path("tls").join("ca.pem"), ca_only.join("ca.pem")).unwrap();
    let opts = || palio::ConnectOptions::new(&b.quic).tls_dir(&ca_only);

    let err = Client::connect(opts()).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Unauthenticated), "{err}");
    assert!(err.to_string().contains("no credentials"), "{err}");
    let err = Client::connect(opts().token("wrong")).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Unauthenticated), "{err}");
    assert!(err.to_string().contains("invalid token"), "{err}");
    let c = Client::connect(opts().token("s3cret-token")).await.unwrap();
    assert_eq!(c.flush().await.unwrap(), 0);
    still_serving(&b).await;
}

#[tokio::test]
async fn client_trusting_another_ca_does_not_connect() {
    let d = Dirs::new();
    let b = BrokerProc::start(&d.path("data"), &d.path("tls"), &[]);
    palio_protocol::tls::DevPki::open_or_create(&d.path("other")).unwrap();
    let err = Client::connect(palio::ConnectOptions::new(&b.quic).tls_dir(d.path("other")))
        .await
        .unwrap_err();
    assert!(matches!(err, palio::Error::Connect { .. }), "{err}");
    still_serving(&b).await;
}

#[tokio::test]
async fn peer_from_another_ca_and_colliding_ids_are_refused() {
    let d = Dirs::new();
    let a = BrokerProc::start(&d.path("a"), &d.path("tls-a"), &["--id", "a"]);
    let stranger = BrokerProc::start(
        &d.path("s"),
        &d.path("tls-s"),
        &["--id", "s", "--peer", &a.quic],
    );
    wait_until("the stranger's handshake to fail", 30, || {
        a.metric("palio_connection_errors_total{code=\"handshake_failed\"}") >= 1.0
    })
    .await;
    let dialed = &stranger.routes()["dialed"][0];
    assert_ne!(dialed["state"], "up", "{dialed}");
    assert!(a.routes()["peers"].as_array().unwrap().is_empty());

    // Same CA, same name: the id collides with a's own.
    let twin = BrokerProc::start(
        &d.path("t"),
        &d.path("tls-a"),
        &["--id", "a", "--peer", &a.quic],
    );
    wait_until("the twin to be refused", 30, || {
        a.metric("palio_connection_errors_total{code=\"id_collision\"}") >= 1.0
    })
    .await;
    wait_until("the twin to record the refusal", 30, || {
        twin.routes()["dialed"][0]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("id_collision"))
    })
    .await;
    assert!(a.routes()["peers"].as_array().unwrap().is_empty());
    still_serving(&a).await;
}

/// A raw client that subscribes and then never reads its delivery stream.
async fn stalled_subscriber(
    b: &BrokerProc,
    tls: &std::path::Path,
) -> (quinn::Endpoint, quinn::Connection) {
    let (ep, conn) = raw_connect(b, tls, CLIENT_ALPN).await;
    let (mut tx, mut rx) = conn.open_bi().await.unwrap();
    write_frame(&mut tx, &hello()).await;
    let _welcome: ServerFrame = read_frame(&mut rx).await;
    write_frame(
        &mut tx,
        &ClientFrame::Subscribe {
            request: 1,
            filter: "big = true".into(),
        },
    )
    .await;
    let ok: ServerFrame = read_frame(&mut rx).await;
    assert!(matches!(ok, ServerFrame::Subscribed { .. }), "{ok:?}");
    // Keep the streams alive without reading deliveries.
    std::mem::forget((tx, rx));
    (ep, conn)
}

#[tokio::test]
async fn drop_policy_drops_only_for_the_subscriber_that_never_reads() {
    let d = Dirs::new();
    let cfg = d.path("slow.toml");
    std::fs::write(
        &cfg,
        "[limits]\nsubscriber_buffer = 8\nslow_consumer = \"drop\"\n",
    )
    .unwrap();
    let b = BrokerProc::start(
        &d.path("data"),
        &d.path("tls"),
        &["--config", cfg.to_str().unwrap()],
    );
    let (_ep, _stalled) = stalled_subscriber(&b, &d.path("tls")).await;

    let reader = b.client().await;
    let mut good = reader.subscribe("big = true").await.unwrap();
    let publisher = b.client().await;
    let payload = vec![b'x'; 32 * 1024];
    // Batches smaller than the buffer, each read before the next is sent: the reading
    // subscriber never falls behind, while the stalled one's stream window (1 MiB) and
    // buffer fill up after about 40 notifications.
    let mut seq = 0;
    for _batch in 0..20 {
        for _ in 0..6 {
            publisher
                .publish(
                    Notification::builder()
                        .attr("big", true)
                        .attr("seq", seq)
                        .payload(payload.clone())
                        .build()
                        .unwrap(),
                )
                .await
                .unwrap();
            seq += 1;
        }
        publisher.flush().await.unwrap();
        for expect in seq - 6..seq {
            let n = next_within(&mut good, 10_000)
                .await
                .expect("reader gets every one");
            assert_eq!(n.get("seq"), Some(&palio::filter::Value::Int(expect)));
        }
    }
    assert!(
        b.metric("palio_notifications_dropped_total{reason=\"slow_consumer\"}") > 0.0,
        "drops for the stalled subscriber are counted"
    );
    still_serving(&b).await;
}

#[tokio::test]
async fn disconnect_policy_closes_the_slow_subscriber() {
    let d = Dirs::new();
    let cfg = d.path("slow.toml");
    std::fs::write(
        &cfg,
        "[limits]\nsubscriber_buffer = 4\nslow_consumer = \"disconnect\"\n",
    )
    .unwrap();
    let b = BrokerProc::start(
        &d.path("data"),
        &d.path("tls"),
        &["--config", cfg.to_str().unwrap()],
    );
    let (_ep, stalled) = stalled_subscriber(&b, &d.path("tls")).await;
    let publisher = b.client().await;
    let payload = vec![b'x'; 64 * 1024];
    for i in 0..80 {
        publisher
            .publish(
                Notification::builder()
                    .attr("big", true)
                    .attr("seq", i)
                    .payload(payload.clone())
                    .build()
                    .unwrap(),
            )
            .await
            .unwrap();
    }
    publisher.flush().await.unwrap();
    // The broker closes with SLOW_CONSUMER. The CONNECTION_CLOSE packet is sent once and, like
    // any packet, can be lost (here: the stalled client's UDP receive buffer overflows under
    // the burst); the client then learns of the close by a stateless reset when it next sends
    // (its keep-alive). Either way the connection ends, and the metric counts the decision.
    let closed = tokio::time::timeout(Duration::from_secs(20), stalled.closed())
        .await
        .expect("the stalled subscriber is disconnected within 20 s");
    match closed {
        quinn::ConnectionError::ApplicationClosed(c) => assert_eq!(
            ErrorCode::from_code(c.error_code.into_inner()),
            Some(ErrorCode::SlowConsumer)
        ),
        quinn::ConnectionError::Reset => {}
        other => panic!("closed otherwise: {other:?}"),
    }
    assert_eq!(b.metric("palio_slow_consumer_disconnects_total"), 1.0);
    still_serving(&b).await;
}

#[tokio::test]
async fn client_certificate_cannot_pose_as_a_peer() {
    use palio_protocol::tls;
    let d = Dirs::new();
    let b = BrokerProc::start(&d.path("data"), &d.path("tls"), &[]);
    let pki = tls::DevPki::open(&d.path("tls")).unwrap();
    let identity = pki.issue_client("sneaky").unwrap();
    let cfg = tls::client_config(
        pki.roots().unwrap(),
        Some(identity),
        palio_protocol::PEER_ALPN,
    )
    .unwrap();
    let ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let conn = ep
        .connect_with(cfg, b.quic.parse().unwrap(), tls::DEV_SERVER_NAME)
        .unwrap()
        .await
        .expect("TLS accepts the client certificate itself");
    assert_eq!(close_code(&conn).await, Some(ErrorCode::Unauthenticated));
    assert_eq!(
        b.metric("palio_connection_errors_total{code=\"unauthenticated\"}"),
        1.0
    );
    assert!(b.routes()["peers"].as_array().unwrap().is_empty());
    still_serving(&b).await;
}

#[tokio::test]
async fn garbage_on_a_peer_link_closes_only_that_link() {
    let d = Dirs::new();
    let b = BrokerProc::start(&d.path("data"), &d.path("tls"), &["--id", "p1"]);
    // A broker-capable certificate from the right CA, then garbage instead of a hello.
    let (_ep, conn) = raw_connect(&b, &d.path("tls"), palio_protocol::PEER_ALPN).await;
    let (mut tx, _rx) = conn.open_bi().await.unwrap();
    tx.write_all(&[0, 0, 0, 2, 0xc1, 0xc1]).await.unwrap();
    assert_eq!(close_code(&conn).await, Some(ErrorCode::MalformedFrame));
    // And an oversized frame.
    let (_ep2, conn) = raw_connect(&b, &d.path("tls"), palio_protocol::PEER_ALPN).await;
    let (mut tx, _rx) = conn.open_bi().await.unwrap();
    tx.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
    assert_eq!(close_code(&conn).await, Some(ErrorCode::FrameTooLarge));
    assert!(b.routes()["peers"].as_array().unwrap().is_empty());
    still_serving(&b).await;
}

#[tokio::test]
async fn per_connection_subscription_limit_is_enforced() {
    let d = Dirs::new();
    let cfg = d.path("limits.toml");
    std::fs::write(&cfg, "[limits]\nmax_subscriptions_per_client = 2\n").unwrap();
    let b = BrokerProc::start(
        &d.path("data"),
        &d.path("tls"),
        &["--config", cfg.to_str().unwrap()],
    );
    let c = b.client().await;
    let _a = c.subscribe("a = 1").await.unwrap();
    let second = c.subscribe("a = 2").await.unwrap();
    let err = c.subscribe("a = 3").await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::LimitExceeded), "{err}");
    // Room again after an unsubscribe.
    c.unsubscribe(&second).await.unwrap();
    assert!(c.subscribe("a = 3").await.is_ok());
}
