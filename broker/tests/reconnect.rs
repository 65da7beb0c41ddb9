//! The SDK and `palio sub` ride through a broker crash: real broker processes killed with
//! SIGKILL and started again on the same port. Subscriptions, durable consumers and the
//! producer are restored, publications made while disconnected are sent after reconnecting,
//! the application sees the connection's events in order, and the three endings (a clean
//! shutdown, attempts exhausted, a local close) are told apart. Every wait is bounded.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::cli::palio;
use common::{BrokerProc, Dirs, next_within};
use palio::filter::Value;
use palio::{
    Client, CloseReason, ConnectionEvent, ConnectionEvents, ConsumeMode, Error, ErrorCode,
    Notification, QueueOptions, Reconnect, Subscription,
};

/// The bound on waiting for one connection event: the client's idle timeout (5 s) to notice
/// a dead broker, plus the broker's restart and a few attempts.
const EVENT_WAIT: Duration = Duration::from_secs(30);

fn note(a: i32, seq: i32) -> Notification {
    Notification::builder()
        .attr("a", a)
        .attr("seq", seq)
        .build()
        .unwrap()
}

async fn next_event(events: &mut ConnectionEvents) -> ConnectionEvent {
    tokio::time::timeout(EVENT_WAIT, events.next())
        .await
        .expect("a connection event in time")
        .expect("the event stream is open")
}

/// Waits for the disconnection, then the reconnection, in that order.
async fn down_then_up(events: &mut ConnectionEvents) {
    let down = next_event(events).await;
    assert!(
        matches!(down, ConnectionEvent::Disconnected { .. }),
        "{down:?}"
    );
    let up = next_event(events).await;
    assert!(matches!(up, ConnectionEvent::Reconnected { .. }), "{up:?}");
}

fn restart(b: &mut BrokerProc) {
    tokio::task::block_in_place(|| b.restart());
}

/// Publishes `note(1, seq)` from a new client of `b` and waits until the broker has handled
/// it; returns that client.
async fn publish_one(b: &BrokerProc, seq: i32) -> Client {
    let publisher = b.client().await;
    publisher.publish(note(1, seq)).await.unwrap();
    publisher.flush().await.unwrap();
    publisher
}

/// Waits for the next notification on `sub`; it must carry `seq`.
async fn expect_seq(sub: &mut Subscription, seq: i32, what: &str) {
    let n = next_within(sub, 10_000).await.expect(what);
    assert_eq!(n.get("seq"), Some(&Value::Int(seq)), "{what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_survives_a_broker_crash_and_the_events_come_in_order() {
    let d = Dirs::new();
    let mut b = BrokerProc::start(&d.path("data"), &d.path("tls"), &[]);
    let client = b.client().await;
    let mut events = client.events();
    let mut sub = client.subscribe("a = 1").await.unwrap();
    restart(&mut b);
    down_then_up(&mut events).await;
    // Published after the restart, from another client: the subscription was made again.
    let publisher = publish_one(&b, 7).await;
    expect_seq(&mut sub, 7, "delivered after the restart").await;
    // The subscription's new id is the one the broker knows: unsubscribing ends the stream.
    client.unsubscribe(&sub).await.unwrap();
    publisher.publish(note(1, 8)).await.unwrap();
    publisher.flush().await.unwrap();
    assert!(next_within(&mut sub, 2000).await.is_none());
    // A local close is the last event, and tells itself apart.
    client.close().await;
    assert_eq!(
        next_event(&mut events).await,
        ConnectionEvent::Closed(CloseReason::Local)
    );
    assert!(events.next().await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publications_made_while_disconnected_are_sent_after_reconnecting() {
    let d = Dirs::new();
    let mut b = BrokerProc::start(&d.path("data"), &d.path("tls"), &[]);
    // 20 publications of this shape fit in the buffer; a large payload does not.
    let client = Client::connect(b.options().reconnect(Reconnect::new().buffer(4096)))
        .await
        .unwrap();
    let mut events = client.events();
    let mut sub = client.subscribe("a = 1").await.unwrap();
    tokio::task::block_in_place(|| b.kill());
    let down = next_event(&mut events).await;
    assert!(
        matches!(down, ConnectionEvent::Disconnected { .. }),
        "{down:?}"
    );
    // Requests fail at once while disconnected; publications are kept.
    let e = client.flush().await.unwrap_err();
    assert!(matches!(e, Error::Disconnected { .. }), "{e}");
    for seq in 0..20 {
        client.publish(note(1, seq)).await.unwrap();
    }
    let big = Notification::builder()
        .attr("a", 1)
        .payload(vec![0u8; 8192])
        .build()
        .unwrap();
    let e = client.publish(big).await.unwrap_err();
    assert!(matches!(e, Error::PublishBufferFull { limit: 4096 }), "{e}");
    restart(&mut b);
    let up = next_event(&mut events).await;
    assert!(matches!(up, ConnectionEvent::Reconnected { .. }), "{up:?}");
    // The subscription was made again before the kept publications were sent: all of them
    // come back, in order.
    for seq in 0..20 {
        let n = next_within(&mut sub, 10_000)
            .await
            .unwrap_or_else(|| panic!("publication {seq} delivered"));
        assert_eq!(n.get("seq"), Some(&Value::Int(seq)));
    }
    client.flush().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_consumers_and_the_producer_are_restored() {
    let d = Dirs::new();
    let mut b = BrokerProc::start(&d.path("data"), &d.path("tls"), &[]);
    let client = b.client().await;
    let mut events = client.events();
    let opts = QueueOptions {
        ack_wait_ms: Some(500),
        ..QueueOptions::default()
    };
    client.queue_add("jobs", "a = 1", opts).await.unwrap();
    let producer = client.producer("p1").await.unwrap();
    let mut consumer = client
        .consume("jobs", ConsumeMode::Push { window: 16 })
        .await
        .unwrap();
    assert_eq!(producer.publish(note(1, 0)).await.unwrap().seq(), 0);
    let first = tokio::time::timeout(EVENT_WAIT, consumer.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.get("seq"), Some(&Value::Int(0)));
    // Not acked: it comes again after the reconnection.
    tokio::task::block_in_place(|| b.kill());
    let down = next_event(&mut events).await;
    assert!(
        matches!(down, ConnectionEvent::Disconnected { .. }),
        "{down:?}"
    );
    // Recorded while disconnected; sent under the same producer once reconnected.
    let ack1 = producer.send(note(1, 1)).await.unwrap();
    let ack2 = producer.send(note(1, 2)).await.unwrap();
    restart(&mut b);
    let up = next_event(&mut events).await;
    assert!(matches!(up, ConnectionEvent::Reconnected { .. }), "{up:?}");
    assert_eq!(
        tokio::time::timeout(EVENT_WAIT, ack1)
            .await
            .unwrap()
            .unwrap()
            .seq(),
        1
    );
    assert_eq!(
        tokio::time::timeout(EVENT_WAIT, ack2)
            .await
            .unwrap()
            .unwrap()
            .seq(),
        2
    );
    let mut seen = std::collections::BTreeMap::new();
    while seen.len() < 3 {
        let m = tokio::time::timeout(EVENT_WAIT, consumer.next())
            .await
            .expect("messages after the reconnection")
            .expect("the consumer was attached again");
        let Some(Value::Int(seq)) = m.get("seq").cloned() else {
            panic!("no seq: {m:?}");
        };
        m.ack().await.unwrap();
        seen.insert(seq, m.delivery_count());
    }
    assert_eq!(seen.keys().copied().collect::<Vec<_>>(), [0, 1, 2]);
    assert!(seen[&0] >= 2, "the unacked message came again: {seen:?}");
    // Stored once each: nothing left.
    let info = client.queue_info("jobs").await.unwrap();
    assert_eq!(info.pending, 0, "{info:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_is_ridden_through_and_exhausted_attempts_end_the_client() {
    let d = Dirs::new();
    let mut b = BrokerProc::start(&d.path("data"), &d.path("tls"), &[]);
    let stays = b.client().await;
    let mut stays_events = stays.events();
    let mut sub = stays.subscribe("a = 1").await.unwrap();
    let gives_up = Client::connect(
        b.options().reconnect(
            Reconnect::new()
                .initial(Duration::from_millis(50))
                .max(Duration::from_millis(200))
                .max_attempts(2),
        ),
    )
    .await
    .unwrap();
    let mut events = gives_up.events();
    tokio::task::block_in_place(|| b.kill());
    assert!(matches!(
        next_event(&mut events).await,
        ConnectionEvent::Disconnected { .. }
    ));
    match next_event(&mut events).await {
        ConnectionEvent::Closed(CloseReason::GaveUp { attempts, .. }) => assert_eq!(attempts, 2),
        other => panic!("expected the client to give up: {other:?}"),
    }
    let e = gives_up.flush().await.unwrap_err();
    assert!(
        matches!(e, Error::ReconnectFailed { attempts: 2, .. }),
        "{e}"
    );
    // The other client reconnects to the restarted broker.
    restart(&mut b);
    down_then_up(&mut stays_events).await;

    // A clean shutdown, then a start again (one broker's turn in a rolling restart): the
    // client says why it went down, comes back, and its subscription goes on. One that does
    // not reconnect ends with the broker's reason instead.
    let ends = Client::connect(b.options().no_reconnect()).await.unwrap();
    let mut ends_events = ends.events();
    assert!(tokio::task::block_in_place(|| b.terminate(10)).is_some());
    match next_event(&mut stays_events).await {
        ConnectionEvent::Disconnected { reason } => {
            assert!(reason.starts_with("the broker shut down"), "{reason}")
        }
        other => panic!("expected a disconnection: {other:?}"),
    }
    match next_event(&mut ends_events).await {
        ConnectionEvent::Closed(CloseReason::Broker { code, .. }) => {
            assert_eq!(code, Some(ErrorCode::ShuttingDown))
        }
        other => panic!("expected a clean shutdown to end it: {other:?}"),
    }
    let e = ends.flush().await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::ShuttingDown), "{e}");
    restart(&mut b);
    let up = next_event(&mut stays_events).await;
    assert!(matches!(up, ConnectionEvent::Reconnected { .. }), "{up:?}");
    publish_one(&b, 9).await;
    expect_seq(&mut sub, 9, "delivered after the rolling restart").await;
    assert!(stays.close_reason().is_none(), "{:?}", stays.close_reason());
}

/// `palio` with its stderr read line by line on a thread (stdout collected).
struct Watched {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Watched {
    fn start(b: &BrokerProc, args: &[&str]) -> Watched {
        let mut child = palio(b, args).stderr(Stdio::piped()).spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Watched {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits (bounded) for a stderr line containing `text`; returns it.
    fn expect_line(&mut self, text: &str) -> String {
        loop {
            match self.lines.recv_timeout(EVENT_WAIT) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(text) {
                        return line;
                    }
                }
                Err(_) => panic!("no stderr line with {text:?}; saw {:?}", self.seen),
            }
        }
    }

    /// The exit status and stdout (bounded wait), with the rest of stderr.
    fn finish(mut self) -> (std::process::ExitStatus, String, Vec<String>) {
        let end = std::time::Instant::now() + EVENT_WAIT;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if std::time::Instant::now() > end {
                let _ = self.child.kill();
                panic!("palio did not exit; stderr so far {:?}", self.seen);
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut out = String::new();
        if let Some(mut o) = self.child.stdout.take() {
            let _ = std::io::Read::read_to_string(&mut o, &mut out);
        }
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(1)) {
            self.seen.push(line);
        }
        (status, out, self.seen)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn palio_sub_reconnects_says_so_and_gives_up_with_its_own_message() {
    let d = Dirs::new();
    let mut b = BrokerProc::start(&d.path("data"), &d.path("tls"), &[]);
    let addr = b.quic.clone();
    let mut sub = Watched::start(&b, &["sub", "--count", "1", "a = 1"]);
    sub.expect_line("palio: subscribed");
    restart(&mut b);
    let down = sub.expect_line("palio: disconnected from");
    assert!(
        down.starts_with(&format!("palio: disconnected from {addr} ("))
            && down.ends_with("); reconnecting"),
        "{down}"
    );
    assert_eq!(
        sub.expect_line("palio: reconnected"),
        format!("palio: reconnected to {addr}")
    );
    publish_one(&b, 3).await;
    let (status, out, _) = tokio::task::block_in_place(|| sub.finish());
    assert!(status.success(), "{status:?}");
    let line: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(line["attributes"]["seq"], 3);

    // Giving up: exit status 1 and a message of its own.
    let mut sub = Watched::start(
        &b,
        &[
            "sub",
            "--max-reconnects",
            "2",
            "--reconnect-wait",
            "0.2",
            "a = 1",
        ],
    );
    sub.expect_line("palio: subscribed");
    tokio::task::block_in_place(|| b.kill());
    sub.expect_line("palio: disconnected from");
    let (status, _, stderr) = tokio::task::block_in_place(|| sub.finish());
    assert_eq!(status.code(), Some(1), "{stderr:?}");
    let last = stderr.last().cloned().unwrap_or_default();
    assert!(
        last.starts_with(&format!(
            "palio: lost the connection to {addr} and gave up after 2 reconnect attempt(s)"
        )),
        "{stderr:?}"
    );

    // A clean shutdown and a start again is ridden through, and says so.
    tokio::task::block_in_place(|| b.restart());
    let mut sub = Watched::start(&b, &["sub", "--count", "1", "a = 1"]);
    sub.expect_line("palio: subscribed");
    assert!(tokio::task::block_in_place(|| b.terminate(10)).is_some());
    assert_eq!(
        sub.expect_line("palio: disconnected from"),
        format!(
            "palio: disconnected from {addr} (the broker shut down: broker shutting down); \
             reconnecting"
        )
    );
    tokio::task::block_in_place(|| b.restart());
    sub.expect_line("palio: reconnected to");
    publish_one(&b, 4).await;
    let (status, out, stderr) = tokio::task::block_in_place(|| sub.finish());
    assert!(status.success(), "{status:?} {stderr:?}");
    let line: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(line["attributes"]["seq"], 4);

    // With --no-reconnect, a clean shutdown ends it: status 1 and a message of its own.
    let mut sub = Watched::start(&b, &["sub", "--no-reconnect", "a = 1"]);
    sub.expect_line("palio: subscribed");
    assert!(tokio::task::block_in_place(|| b.terminate(10)).is_some());
    let (status, _, stderr) = tokio::task::block_in_place(|| sub.finish());
    assert_eq!(status.code(), Some(1), "{stderr:?}");
    let last = stderr.last().cloned().unwrap_or_default();
    assert!(
        last.starts_with(&format!("palio: the broker at {addr} shut down")),
        "{stderr:?}"
    );
    assert!(
        !stderr.iter().any(|l| l.contains("reconnecting")),
        "{stderr:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn palio_sub_durable_reconnects_in_push_and_pull_mode() {
    let d = Dirs::new();
    let mut b = BrokerProc::start(&d.path("data"), &d.path("tls"), &[]);
    let addr = b.quic.clone();
    for (round, mode) in [&[][..], &["--pull", "--max-wait", "1"][..]]
        .into_iter()
        .enumerate()
    {
        let queue = format!("jobs{round}");
        let setup = b.client().await;
        setup
            .queue_add(&queue, &format!("q = {round}"), QueueOptions::default())
            .await
            .unwrap();
        let mut args = vec!["sub", "--durable", queue.as_str(), "--count", "2"];
        args.extend_from_slice(mode);
        let mut sub = Watched::start(&b, &args);
        sub.expect_line("palio: ");
        let producer = setup.producer(&format!("p{round}")).await.unwrap();
        let first = Notification::builder()
            .attr("q", round as i32)
            .attr("seq", 0)
            .build()
            .unwrap();
        producer.publish(first).await.unwrap();
        // Printed and acked before the crash, so that it is not delivered again.
        let end = std::time::Instant::now() + EVENT_WAIT;
        loop {
            let info = setup.queue_info(&queue).await.unwrap();
            if info.pending == 0 && info.unacked == 0 {
                break;
            }
            assert!(std::time::Instant::now() < end, "never acked: {info:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        setup.close().await;
        restart(&mut b);
        sub.expect_line(&format!("palio: disconnected from {addr} ("));
        sub.expect_line(&format!("palio: reconnected to {addr}"));
        let after = b.client().await;
        let producer = after.producer(&format!("p{round}")).await.unwrap();
        let second = Notification::builder()
            .attr("q", round as i32)
            .attr("seq", 1)
            .build()
            .unwrap();
        producer.publish(second).await.unwrap();
        let (status, out, stderr) = tokio::task::block_in_place(|| sub.finish());
        assert!(status.success(), "{mode:?}: {status:?} {stderr:?}");
        let seqs: Vec<i64> = out
            .lines()
            .map(|l| {
                let j: serde_json::Value = serde_json::from_str(l).unwrap();
                j["attributes"]["seq"].as_i64().unwrap()
            })
            .collect();
        assert_eq!(seqs, [0, 1], "{mode:?}");
        after.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn palio_reply_reconnects_and_answers_after_a_broker_crash() {
    let d = Dirs::new();
    let mut b = BrokerProc::start(&d.path("data"), &d.path("tls"), &[]);
    let addr = b.quic.clone();
    let mut reply = Watched::start(&b, &["reply", "-c", "1", "-p", "pong", "a = 1"]);
    reply.expect_line("palio: replying");
    restart(&mut b);
    reply.expect_line("palio: disconnected from");
    assert_eq!(
        reply.expect_line("palio: reconnected"),
        format!("palio: reconnected to {addr}")
    );
    // The responder's subscription is back: a request finds it.
    let requester = b.client().await;
    let answer = requester
        .request(note(1, 7), Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(answer.payload(), b"pong");
    let (status, out, _) = tokio::task::block_in_place(|| reply.finish());
    assert!(status.success(), "{status:?}");
    let line: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(line["attributes"]["seq"], 7);
}
