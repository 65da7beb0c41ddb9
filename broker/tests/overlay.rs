//! Several brokers linked by mutual-TLS peer links: a line of three, a triangle, and a broker
//! that crashes and rejoins.

#![allow(clippy::unwrap_used)]

mod common;

use common::{BrokerProc, Dirs, next_within, wait_until};
use palio::Notification;
use palio::filter::Value;

fn note(kind: &str, seq: i32) -> Notification {
    Notification::builder()
        .attr("type", kind)
        .attr("seq", seq)
        .build()
        .unwrap()
}

/// Waits until every broker knows all `n` brokers and has the expected number of live links.
async fn converged(brokers: &[&BrokerProc], links: &[usize]) {
    for (b, &l) in brokers.iter().zip(links) {
        wait_until(&format!("{} to converge", b.name), 30, || {
            let r = b.routes();
            r["known_brokers"] == brokers.len()
                && r["peers"].as_array().is_some_and(|p| p.len() == l)
        })
        .await;
    }
}

/// Publishes probes (`type = 'alarm'`, `seq = -1`, which the filters passed must match) through
/// `publisher` until every subscription has received one: the routes are in place. Probes
/// still in flight arrive before anything published later (FIFO links), and the tests skip
/// them with [`next_real`].
async fn routes_ready(publisher: &palio::Client, subs: &mut [&mut palio::Subscription]) {
    let mut seen = vec![false; subs.len()];
    for _ in 0..300 {
        publisher.publish(note("alarm", -1)).await.unwrap();
        publisher.flush().await.unwrap();
        for (i, s) in subs.iter_mut().enumerate() {
            if next_within(s, 100).await.is_some() {
                seen[i] = true;
            }
        }
        if seen.iter().all(|&x| x) {
            return;
        }
    }
    panic!("routes not ready after 300 probes");
}

/// The next notification that is not a probe.
async fn next_real(sub: &mut palio::Subscription, millis: u64) -> Option<Notification> {
    loop {
        let n = next_within(sub, millis).await?;
        if n.get("seq") != Some(&Value::Int(-1)) {
            return Some(n);
        }
    }
}

/// Waits until `b` holds at least `n` routing table entries.
async fn entries_at_least(b: &BrokerProc, n: u64) {
    wait_until(&format!("{n} routing entries at {}", b.name), 30, || {
        b.routes()["table_entries"].as_u64().unwrap_or(0) >= n
    })
    .await;
}

#[tokio::test]
async fn line_of_three_routes_end_to_end() {
    let d = Dirs::new();
    let tls = d.path("tls");
    let b1 = BrokerProc::start(&d.path("b1"), &tls, &["--id", "b1"]);
    let b2 = BrokerProc::start(&d.path("b2"), &tls, &["--id", "b2", "--peer", &b1.quic]);
    let b3 = BrokerProc::start(&d.path("b3"), &tls, &["--id", "b3", "--peer", &b2.quic]);
    converged(&[&b1, &b2, &b3], &[1, 2, 1]).await;

    let subscriber = b3.client().await;
    let mut sub = subscriber
        .subscribe("type = 'alarm' AND seq >= 0")
        .await
        .unwrap();
    entries_at_least(&b1, 1).await;

    let publisher = b1.client().await;
    let forwarded_before = b1.metric("palio_notifications_forwarded_total");
    let delivered_before = b3.metric("palio_notifications_delivered_total");
    for i in 0..20 {
        publisher.publish(note("alarm", i)).await.unwrap();
        publisher.publish(note("noise", i)).await.unwrap();
    }
    publisher.flush().await.unwrap();
    for i in 0..20 {
        let n = next_within(&mut sub, 10_000).await.expect("delivered");
        assert_eq!(n.get("seq"), Some(&Value::Int(i)), "in order, exactly once");
        assert_eq!(n.get("type"), Some(&Value::String("alarm".into())));
    }
    assert!(
        next_within(&mut sub, 500).await.is_none(),
        "no duplicates, no noise"
    );
    // Non-matching notifications never left b1.
    let forwarded = b1.metric("palio_notifications_forwarded_total");
    assert_eq!(forwarded - forwarded_before, 20.0);
    assert_eq!(
        b3.metric("palio_notifications_delivered_total") - delivered_before,
        20.0
    );

    // Unsubscribing withdraws the route: nothing more reaches b3.
    subscriber.unsubscribe(&sub).await.unwrap();
    wait_until("the route to be withdrawn at b1", 30, || {
        b1.routes()["table_entries"] == 0
    })
    .await;
    publisher.publish(note("alarm", 99)).await.unwrap();
    publisher.flush().await.unwrap();
    assert!(next_within(&mut sub, 500).await.is_none());
    assert_eq!(b1.metric("palio_notifications_forwarded_total"), forwarded);
}

#[tokio::test]
async fn triangle_delivers_exactly_once_everywhere() {
    let d = Dirs::new();
    let tls = d.path("tls");
    let b1 = BrokerProc::start(&d.path("b1"), &tls, &["--id", "t1"]);
    let b2 = BrokerProc::start(&d.path("b2"), &tls, &["--id", "t2", "--peer", &b1.quic]);
    let b3 = BrokerProc::start(
        &d.path("b3"),
        &tls,
        &["--id", "t3", "--peer", &b1.quic, "--peer", &b2.quic],
    );
    converged(&[&b1, &b2, &b3], &[2, 2, 2]).await;

    let c2 = b2.client().await;
    let c3 = b3.client().await;
    let mut s2 = c2.subscribe("seq < 10").await.unwrap();
    let mut s3 = c3.subscribe("type = 'alarm'").await.unwrap();
    let p = b1.client().await;
    routes_ready(&p, &mut [&mut s2, &mut s3]).await;
    for i in 0..10 {
        p.publish(note("alarm", i)).await.unwrap();
    }
    p.publish(note("other", 50)).await.unwrap();
    p.flush().await.unwrap();
    for i in 0..10 {
        assert_eq!(
            next_real(&mut s2, 10_000)
                .await
                .expect("b2 delivery")
                .get("seq"),
            Some(&Value::Int(i))
        );
        assert_eq!(
            next_real(&mut s3, 10_000)
                .await
                .expect("b3 delivery")
                .get("seq"),
            Some(&Value::Int(i))
        );
    }
    assert!(next_within(&mut s2, 500).await.is_none());
    assert!(next_within(&mut s3, 200).await.is_none());
}

#[tokio::test]
async fn restarted_broker_rejoins_and_routes_again() {
    let d = Dirs::new();
    let tls = d.path("tls");
    let b1 = BrokerProc::start(&d.path("b1"), &tls, &["--id", "r1"]);
    let b2 = BrokerProc::start(&d.path("b2"), &tls, &["--id", "r2", "--peer", &b1.quic]);
    let mut b3 = BrokerProc::start(&d.path("b3"), &tls, &["--id", "r3", "--peer", &b2.quic]);
    converged(&[&b1, &b2, &b3], &[1, 2, 1]).await;
    // A subscriber at b1 that lives through b3's crash.
    let c1 = b1.client().await;
    let mut at_b1 = c1.subscribe("type = 'alarm'").await.unwrap();

    // b3 crashes (no goodbye) and comes back on the same address.
    b3.restart();
    converged(&[&b1, &b2, &b3], &[1, 2, 1]).await;

    // b1's subscription is routed to the new b3: a publisher there reaches it.
    let c3 = b3.client().await;
    routes_ready(&c3, &mut [&mut at_b1]).await;
    // And a new subscription at b3 is routed to b1.
    let mut at_b3 = c3.subscribe("type = 'alarm'").await.unwrap();
    routes_ready(&c1, &mut [&mut at_b3]).await;
    for i in 0..5 {
        c3.publish(note("alarm", i)).await.unwrap();
        c1.publish(note("alarm", 100 + i)).await.unwrap();
    }
    c3.flush().await.unwrap();
    c1.flush().await.unwrap();
    let mut got_b1 = Vec::new();
    let mut got_b3 = Vec::new();
    for _ in 0..10 {
        got_b1.push(
            next_real(&mut at_b1, 10_000)
                .await
                .expect("delivered at b1")
                .get("seq")
                .cloned(),
        );
        got_b3.push(
            next_real(&mut at_b3, 10_000)
                .await
                .expect("delivered at b3")
                .get("seq")
                .cloned(),
        );
    }
    let mut expect: Vec<_> = (0..5)
        .chain(100..105)
        .map(|i| Some(Value::Int(i)))
        .collect();
    expect.sort();
    got_b1.sort();
    got_b3.sort();
    assert_eq!(got_b1, expect);
    assert_eq!(got_b3, expect);
    assert!(next_real(&mut at_b1, 300).await.is_none());
    assert!(next_real(&mut at_b3, 300).await.is_none());
}

#[tokio::test]
async fn advertisements_strategy_routes_advertised_publications() {
    let d = Dirs::new();
    let tls = d.path("tls");
    let cfg = d.path("adv.toml");
    std::fs::write(&cfg, "strategy = \"advertisements\"\n").unwrap();
    let cfg = cfg.to_str().unwrap();
    let b1 = BrokerProc::start(&d.path("b1"), &tls, &["--id", "a1", "--config", cfg]);
    let b2 = BrokerProc::start(
        &d.path("b2"),
        &tls,
        &["--id", "a2", "--config", cfg, "--peer", &b1.quic],
    );
    converged(&[&b1, &b2], &[1, 1]).await;
    assert_eq!(b1.routes()["strategy"], "advertisements");
    let publisher = b1.client().await;
    publisher.advertise("type = 'alarm'").await.unwrap();
    let subscriber = b2.client().await;
    let mut sub = subscriber.subscribe("type = 'alarm'").await.unwrap();
    routes_ready(&publisher, &mut [&mut sub]).await;
    for i in 0..5 {
        publisher.publish(note("alarm", i)).await.unwrap();
    }
    publisher.flush().await.unwrap();
    for i in 0..5 {
        let n = next_real(&mut sub, 10_000).await.expect("delivered");
        assert_eq!(n.get("seq"), Some(&Value::Int(i)));
    }
    assert!(next_real(&mut sub, 300).await.is_none());
}
