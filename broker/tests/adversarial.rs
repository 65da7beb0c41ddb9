//! Hostile clients against one in-process broker, while a well-behaved pair of clients keeps
//! measuring its own round trip (publish → delivery). Each attack must leave the broker up,
//! be refused or cut with its error and metric, and keep every probe of the well-behaved pair
//! delivered within the bound `docs/security.md` documents ([`PROBE_BOUND`]; the slow reader,
//! which the lossless policy lets hold the traffic it shares for the stall timeout, gets that
//! timeout on top).

#![allow(clippy::unwrap_used)]

mod harness;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use harness::{InProc, Net, closed_with, raw_connect, wait_for, write_frame};
use palio::{Client, ErrorCode, Notification, Subscription};
use palio_protocol::{CLIENT_ALPN, ClientFrame, PROTOCOL_VERSION};

/// The longest a well-behaved client's notification may take, publish to delivery, while an
/// attack runs (a debug build on a loaded 2-core CI machine; typical figures are a few ms).
const PROBE_BOUND: Duration = Duration::from_secs(2);

/// A publisher and a subscriber that measure their round trip.
struct Probe {
    publisher: Client,
    _subscriber: Client,
    sub: Subscription,
    next: i32,
}

impl Probe {
    async fn new(b: &InProc) -> Probe {
        let subscriber = b.client().await;
        let sub = subscriber.subscribe("probe = TRUE").await.unwrap();
        let publisher = b.client().await;
        let mut p = Probe {
            publisher,
            _subscriber: subscriber,
            sub,
            next: 0,
        };
        p.once(Duration::from_secs(10)).await;
        p
    }

    /// Publishes one probe and waits for it: its round trip, or a panic past `bound`.
    async fn once(&mut self, bound: Duration) -> Duration {
        self.next += 1;
        let n = self.next;
        let start = Instant::now();
        let note = Notification::builder()
            .attr("probe", true)
            .attr("n", n)
            .build()
            .unwrap();
        self.publisher.publish(note).await.unwrap();
        let got = tokio::time::timeout(bound, self.sub.next())
            .await
            .unwrap_or_else(|_| panic!("probe {n} not delivered within {bound:?}"))
            .expect("the probe subscription stays open");
        assert_eq!(got.get("n"), Some(&palio::filter::Value::Int(n)));
        start.elapsed()
    }

    /// Probes every 20 ms until `done` is set (at most `secs`); returns the slowest round trip.
    async fn during(&mut self, done: &AtomicBool, secs: u64, bound: Duration) -> Duration {
        let end = Instant::now() + Duration::from_secs(secs);
        let mut worst = Duration::ZERO;
        let mut rounds = 0;
        while !done.load(Ordering::Acquire) && Instant::now() < end {
            worst = worst.max(self.once(bound).await);
            rounds += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(rounds > 0, "the attack ended before any probe");
        worst
    }
}

/// Runs `attack` while probing; returns the slowest probe.
async fn under_attack<F: std::future::Future<Output = ()>>(
    probe: &mut Probe,
    bound: Duration,
    attack: F,
) -> Duration {
    let done = Arc::new(AtomicBool::new(false));
    let flag = done.clone();
    let attack = async move {
        attack.await;
        flag.store(true, Ordering::Release);
    };
    let (worst, ()) = tokio::join!(probe.during(&done, 60, bound), attack);
    worst
}

/// The clauses joined by `OR` in a balanced tree (a chain of a hundred would be too deep).
fn any_of(clauses: &[String]) -> String {
    match clauses {
        [] => "FALSE".to_owned(),
        [one] => one.clone(),
        _ => {
            let (left, right) = clauses.split_at(clauses.len() / 2);
            format!("({} OR {})", any_of(left), any_of(right))
        }
    }
}

/// How the attempts of a connection flood ended, besides those admitted.
#[derive(Clone, Debug, Default)]
struct Flood {
    /// Closed by the broker with QUIC `CONNECTION_REFUSED`.
    refused: usize,
    /// No answer within the attempt's bound.
    unanswered: usize,
    /// Anything else (none is expected).
    other: Vec<String>,
}

/// A client endpoint trusting the broker's CA and presenting no certificate.
fn bare_endpoint(b: &InProc) -> (quinn::Endpoint, quinn::ClientConfig) {
    use palio_protocol::tls;
    let roots = tls::DevPki::open(&b.tls_dir).unwrap().roots().unwrap();
    let cfg = tls::client_config(roots, None, CLIENT_ALPN).unwrap();
    let ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    (ep, cfg)
}

#[tokio::test]
async fn connection_and_handshake_floods_are_refused_at_the_door() {
    let net = Net::new();
    let b = net
        .broker(
            "b1",
            "max_connections_per_address = 64\nmax_handshakes = 16",
            &[],
        )
        .await;
    let mut probe = Probe::new(&b).await;
    let (ep, cfg) = bare_endpoint(&b);
    let held = Arc::new(std::sync::Mutex::new(Vec::new()));
    let outcomes = Arc::new(std::sync::Mutex::new(Flood::default()));
    let (keep, tally) = (held.clone(), outcomes.clone());
    let worst = under_attack(&mut probe, PROBE_BOUND, async move {
        // 400 connection attempts at once, each kept open without a hello if it gets in. An
        // attempt whose packets the kernel dropped (400 Initials overflow a UDP receive buffer
        // on a loaded machine) retries by itself, within a bound shorter than the hello timeout:
        // no admitted connection has been closed yet to make room for a late one, so at most
        // 64 can be admitted.
        let attempts = (0..400).map(|_| {
            let connecting = ep.connect_with(cfg.clone(), b.quic, "localhost").unwrap();
            async move { tokio::time::timeout(Duration::from_secs(9), connecting).await }
        });
        for r in futures_util::future::join_all(attempts).await {
            let mut tally = tally.lock().unwrap();
            match r {
                Ok(Ok(conn)) => keep.lock().unwrap().push(conn),
                Ok(Err(quinn::ConnectionError::ConnectionClosed(close)))
                    if close.error_code == quinn::TransportErrorCode::CONNECTION_REFUSED =>
                {
                    tally.refused += 1;
                }
                Ok(Err(other)) => tally.other.push(other.to_string()),
                Err(_) => tally.unanswered += 1,
            }
        }
    })
    .await;
    let admitted = held.lock().unwrap().len();
    let flood = outcomes.lock().unwrap().clone();
    let counted = b.metric("palio_limits_hit_total").await;
    println!(
        "flood: {admitted} admitted, {} refused ({counted} counted), {} unanswered, worst probe {worst:?}",
        flood.refused, flood.unanswered
    );
    assert!(admitted <= 64, "{admitted} connections admitted");
    assert!(flood.other.is_empty(), "other outcomes: {:?}", flood.other);
    // The door answers: a broker that dropped the excess silently would leave most unanswered.
    assert!(
        flood.refused > flood.unanswered,
        "{flood:?}, {admitted} admitted"
    );
    // Every refusal a client saw was counted (the broker may count more: a refusal whose
    // packet was lost leaves its client unanswered).
    assert!(
        counted >= flood.refused as f64,
        "{counted} refusals counted, {} seen",
        flood.refused
    );
    // The admitted ones said no hello: each is closed at the hello timeout.
    let first = held.lock().unwrap().first().cloned().expect("one got in");
    assert_eq!(
        closed_with(&first, 15).await,
        Ok(Some(ErrorCode::ProtocolViolation))
    );
    probe.once(PROBE_BOUND).await;
}

#[tokio::test]
async fn a_subscription_storm_hits_its_limit_and_leaves_others_alone() {
    let net = Net::new();
    let b = net
        .broker("b1", "max_subscriptions_per_client = 256", &[])
        .await;
    let mut probe = Probe::new(&b).await;
    let attacker = b.client().await;
    let worst = under_attack(&mut probe, PROBE_BOUND, async {
        let mut refused = 0;
        let mut subs = Vec::new();
        for i in 0..300 {
            match attacker
                .subscribe(&format!("storm = {i} OR (level > {i} AND kind = 'x{i}')"))
                .await
            {
                Ok(s) => subs.push(s),
                Err(e) => {
                    assert_eq!(e.code(), Some(ErrorCode::LimitExceeded), "{e}");
                    refused += 1;
                }
            }
        }
        assert_eq!((subs.len(), refused), (256, 44));
        // Churn: unsubscribe and subscribe again, bounded.
        for (i, s) in subs.into_iter().enumerate().take(200) {
            attacker.unsubscribe(&s).await.unwrap();
            attacker.subscribe(&format!("churn = {i}")).await.unwrap();
        }
    })
    .await;
    println!("subscription storm: worst probe {worst:?}");
    assert_eq!(b.metric("palio_subscriptions").await, 257.0);
}

#[tokio::test]
async fn a_reader_that_stops_is_cut_and_the_traffic_it_held_flows_again() {
    let net = Net::new();
    let b = net.broker("b1", "stall_timeout_ms = 500", &[]).await;
    let mut probe = Probe::new(&b).await;
    // The slow reader: a raw connection that subscribes to everything and never reads its
    // delivery stream.
    let (_ep, conn) = raw_connect(b.quic, &b.tls_dir, "loris", CLIENT_ALPN).await;
    let (mut send, _recv) = conn.open_bi().await.unwrap();
    write_frame(
        &mut send,
        &ClientFrame::Hello {
            version: PROTOCOL_VERSION,
            token: None,
            name: "loris".into(),
        },
    )
    .await;
    write_frame(
        &mut send,
        &ClientFrame::Subscribe {
            request: 1,
            filter: "TRUE".into(),
        },
    )
    .await;
    let flooder = b.client().await;
    let payload = vec![7u8; 16 << 10];
    let bound = PROBE_BOUND + Duration::from_millis(500);
    let worst = under_attack(&mut probe, bound, async {
        // 64 MiB the reader never takes: far past its delivery queue and QUIC windows.
        for i in 0..4096 {
            let note = Notification::builder()
                .attr("bulk", i)
                .payload(payload.clone())
                .build()
                .unwrap();
            flooder.publish(note).await.unwrap();
        }
        flooder.flush().await.unwrap();
    })
    .await;
    println!("slow reader: worst probe {worst:?}");
    assert_eq!(
        closed_with(&conn, 10).await,
        Ok(Some(ErrorCode::SlowConsumer))
    );
    assert_eq!(b.metric("palio_slow_consumer_disconnects_total").await, 1.0);
    probe.once(PROBE_BOUND).await;
}

#[tokio::test]
async fn slow_hellos_and_bad_frames_are_cut_without_touching_others() {
    let net = Net::new();
    let b = net.broker("b1", "", &[]).await;
    let mut probe = Probe::new(&b).await;
    let tls = b.tls_dir.clone();
    let quic = b.quic;
    let worst = under_attack(&mut probe, PROBE_BOUND, async move {
        let mut attackers = Vec::new();
        for i in 0..30 {
            let tls = tls.clone();
            attackers.push(tokio::spawn(async move {
                let (ep, conn) = raw_connect(quic, &tls, &format!("bad{i}"), CLIENT_ALPN).await;
                let (mut send, _recv) = conn.open_bi().await.unwrap();
                let expected = match i % 3 {
                    // A hello announced at 16 MiB: refused before it is buffered.
                    0 => {
                        let _ = send.write_all(&(16u32 << 20).to_be_bytes()).await;
                        ErrorCode::FrameTooLarge
                    }
                    // Bytes that are no frame.
                    1 => {
                        let _ = send.write_all(&[0, 0, 0, 4, 0xc1, 0xc1, 0xc1, 0xc1]).await;
                        ErrorCode::MalformedFrame
                    }
                    // A slow-loris hello: one byte every 200 ms, never complete in time.
                    _ => {
                        for byte in [0u8, 0, 0, 200].into_iter().chain([0x80; 60]) {
                            if send.write_all(&[byte]).await.is_err() {
                                break;
                            }
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                        ErrorCode::ProtocolViolation
                    }
                };
                assert_eq!(
                    closed_with(&conn, 15).await,
                    Ok(Some(expected)),
                    "attacker {i}"
                );
                drop(ep);
            }));
        }
        for a in attackers {
            a.await.unwrap();
        }
    })
    .await;
    println!("bad frames and slow hellos: worst probe {worst:?}");
    wait_for("the refusals to be counted", 5, || async {
        b.metric("palio_connection_errors_total").await >= 30.0
    })
    .await;
}

#[tokio::test]
async fn filter_bombs_are_refused_at_subscribe_time_or_evaluate_cheaply() {
    let net = Net::new();
    let b = net.broker("b1", "", &[]).await;
    let mut probe = Probe::new(&b).await;
    let attacker = b.client().await;
    // Many references to a large attribute, built into strings again and again: over the
    // cost budget, refused before the router ever sees it.
    let clause = format!("CONCAT({}a) LIKE '%x%'", "a, ".repeat(30));
    let concat = any_of(&vec![clause; 100]);
    let refused = attacker.subscribe(&concat).await.unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::LimitExceeded), "{refused}");
    assert!(refused.to_string().contains("too costly"), "{refused}");
    assert_eq!(
        b.metric("palio_limits_hit_total{limit=\"filter_cost\"}")
            .await,
        1.0
    );
    // What the budget lets through is linear: backtracking LIKE patterns and a string built
    // past its 64 KiB bound (an evaluation error: no match, nothing built).
    let _like = attacker
        .subscribe("a LIKE '%a%a%a%a%a%a%a%a%a%a%a%a%b' OR CONCAT(a, a, a) = 'z'")
        .await
        .unwrap();
    let publisher = b.client().await;
    let big = "a".repeat(256 << 10);
    let worst = under_attack(&mut probe, PROBE_BOUND, async {
        for i in 0..200 {
            let note = Notification::builder()
                .attr("a", big.as_str())
                .attr("i", i)
                .build()
                .unwrap();
            publisher.publish(note).await.unwrap();
        }
        publisher.flush().await.unwrap();
    })
    .await;
    println!("filter bombs: worst probe {worst:?}");
}

#[tokio::test]
async fn a_stranger_can_make_the_broker_buffer_no_more_than_the_pre_auth_window() {
    let net = Net::new();
    let b = net.broker("b1", "", &[]).await;
    let (_ep, cfg) = bare_endpoint(&b);
    let ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let conn = ep
        .connect_with(cfg, b.quic, "localhost")
        .unwrap()
        .await
        .unwrap();
    // The control stream, left silent, and a second stream the broker never reads: what is
    // written to it waits in the broker's buffers, up to what flow control allows.
    let (_control, _) = conn.open_bi().await.unwrap();
    let (mut extra, _) = conn.open_bi().await.unwrap();
    let chunk = vec![0u8; 4096];
    let mut written = 0usize;
    let blocked = loop {
        match tokio::time::timeout(Duration::from_secs(1), extra.write(&chunk)).await {
            Ok(Ok(n)) => written += n,
            Ok(Err(e)) => panic!("after {written} bytes: {e}"),
            Err(_) => break true,
        }
        if written > 4 << 20 {
            break false;
        }
    };
    assert!(
        blocked,
        "{written} bytes taken from an unauthenticated client"
    );
    assert!(
        written <= palio_protocol::tls::PRE_AUTH_WINDOW as usize,
        "{written} bytes"
    );
    // Clients that authenticate work as ever (their window is raised after the hello).
    let client = b.client().await;
    client.flush().await.unwrap();
}
