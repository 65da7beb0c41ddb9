//! Lossless flow control, through the real interfaces: SDK clients and raw QUIC against
//! in-process brokers (see `harness`).

#![allow(clippy::unwrap_used)]

mod harness;

use std::time::{Duration, Instant};

use harness::{InProc, Net, next_within};
use palio::Notification;
use palio::filter::Value;

/// A 128-byte payload and four attributes, one of them the sequence number.
fn small(kind: &str, origin: &str, seq: i32) -> Notification {
    Notification::builder()
        .attr("kind", kind)
        .attr("origin", origin)
        .attr("seq", seq)
        .attr("ok", true)
        .payload(vec![b'p'; 128])
        .build()
        .unwrap()
}

fn seq_of(n: &Notification) -> i64 {
    match n.get("seq") {
        Some(Value::Int(i)) => i64::from(*i),
        other => panic!("no seq attribute: {other:?}"),
    }
}

/// Reads `count` notifications from `sub`, asserting they carry seq 0, 1, …, in order; sleeps
/// `pause` every `every` notifications (a deliberately slow reader). Each read is bounded.
async fn read_in_order(
    sub: &mut palio::Subscription,
    count: usize,
    every: usize,
    pause: Duration,
    what: &str,
) {
    for i in 0..count {
        let n = next_within(sub, 10_000)
            .await
            .unwrap_or_else(|| panic!("{what}: notification {i} of {count} did not arrive"));
        assert_eq!(seq_of(&n), i as i64, "{what}: in order, none lost");
        if every > 0 && (i + 1) % every == 0 {
            tokio::time::sleep(pause).await;
        }
    }
}

/// Sums every `palio_notifications_dropped_total` line of every broker.
async fn drops(brokers: &[&InProc]) -> f64 {
    let mut total = 0.0;
    for b in brokers {
        total += b.metric("palio_notifications_dropped_total").await;
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_loss_at_full_speed_on_one_broker() {
    const N: usize = 100_000;
    let started = Instant::now();
    let net = Net::new();
    let b = net
        .broker(
            "fc1",
            "subscriber_buffer = 64\nstall_timeout_ms = 10000",
            &[],
        )
        .await;
    let subscriber = b.client().await;
    let mut sub = subscriber.subscribe("kind = 'load'").await.unwrap();
    let reader = tokio::spawn(async move {
        read_in_order(
            &mut sub,
            N,
            500,
            Duration::from_millis(2),
            "slow subscriber",
        )
        .await;
        // Nothing more: no duplicates.
        assert!(next_within(&mut sub, 300).await.is_none(), "no duplicates");
        sub
    });
    let publisher = b.client().await;
    for i in 0..N {
        publisher
            .publish(small("load", "p", i32::try_from(i).unwrap()))
            .await
            .unwrap();
    }
    let published = tokio::time::timeout(Duration::from_secs(30), publisher.flush())
        .await
        .expect("flush within 30 s")
        .unwrap();
    assert_eq!(published, N as u64);
    tokio::time::timeout(Duration::from_secs(30), reader)
        .await
        .expect("the subscriber reads everything within 30 s")
        .unwrap();
    assert_eq!(drops(&[&b]).await, 0.0, "nothing dropped, for any reason");
    assert_eq!(
        b.metric("palio_notifications_delivered_total").await,
        N as f64
    );
    let waits = b
        .metric("palio_ingress_waits_total{ingress=\"client\"}")
        .await;
    assert!(
        waits > 0.0,
        "the publisher was held back at least once (else the test proves nothing)"
    );
    eprintln!(
        "zero_loss_at_full_speed_on_one_broker: {N} in {:?}, {waits} ingress waits",
        started.elapsed()
    );
}
