//! A peer broker that dies without a word (`kill -9`) is noticed within seconds by the brokers
//! linked to it, whichever side dialed, and a restarted one is linked and routed through again
//! within seconds. On defaults: the QUIC keep-alive (1 s) and idle timeout (5 s) do it.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{BrokerProc, Dirs, next_within, wait_until};
use palio::Notification;

/// How long noticing a dead peer, and relinking a restarted one, may take.
const WITHIN_SECS: u64 = 8;

fn alarm(seq: i32) -> Notification {
    Notification::builder()
        .attr("type", "alarm")
        .attr("seq", seq)
        .build()
        .unwrap()
}

/// Whether `b`'s `/routes` lists a live link to the broker named `name`.
fn lists_peer(b: &BrokerProc, name: &str) -> bool {
    b.routes()["peers"]
        .as_array()
        .is_some_and(|p| p.iter().any(|p| p["name"] == name))
}

/// `palio_peer_up{broker="name"}` at `b`.
fn peer_up(b: &BrokerProc, name: &str) -> f64 {
    b.metric(&format!("palio_peer_up{{broker=\"{name}\"}}"))
}

/// `palio_peer_link_up{peer="addr"}` at `b`.
fn link_up(b: &BrokerProc, addr: &str) -> f64 {
    b.metric(&format!("palio_peer_link_up{{peer=\"{addr}\"}}"))
}

/// Publishes at `publisher` every 100 ms until `sub` receives one, for at most `secs`: the time
/// it took, or `None`.
async fn reaches(
    publisher: &palio::Client,
    sub: &mut palio::Subscription,
    secs: u64,
) -> Option<Duration> {
    let start = Instant::now();
    let mut seq = 0;
    while start.elapsed() < Duration::from_secs(secs) {
        seq += 1;
        publisher.publish(alarm(seq)).await.unwrap();
        if next_within(sub, 100).await.is_some() {
            return Some(start.elapsed());
        }
    }
    None
}

/// Brokers `{prefix}1` — `{prefix}2` — `{prefix}3` (b2 dials b1, b3 dials b2, so b1 sees b2 on
/// an accepted link and b3 on a dialed one), converged.
async fn line_of_three(d: &Dirs, prefix: &str) -> (BrokerProc, BrokerProc, BrokerProc) {
    let tls = d.path("tls");
    let id = |i: u32| format!("{prefix}{i}");
    let b1 = BrokerProc::start(&d.path("b1"), &tls, &["--id", &id(1)]);
    let b2 = BrokerProc::start(&d.path("b2"), &tls, &["--id", &id(2), "--peer", &b1.quic]);
    let b3 = BrokerProc::start(&d.path("b3"), &tls, &["--id", &id(3), "--peer", &b2.quic]);
    for (b, links) in [(&b1, 1), (&b2, 2), (&b3, 1)] {
        wait_until(&format!("{} to converge", b.name), 30, || {
            let r = b.routes();
            r["known_brokers"] == 3 && r["peers"].as_array().is_some_and(|p| p.len() == links)
        })
        .await;
    }
    (b1, b2, b3)
}

#[tokio::test]
async fn a_killed_middle_broker_is_noticed_and_its_restart_relinked_within_seconds() {
    let d = Dirs::new();
    let (b1, mut b2, b3) = line_of_three(&d, "dp").await;
    let b2_addr = b2.quic.clone();
    let subscriber = b3.client().await;
    let mut sub = subscriber.subscribe("type = 'alarm'").await.unwrap();
    let publisher = b1.client().await;
    reaches(&publisher, &mut sub, 30)
        .await
        .expect("b1 → b2 → b3 routes before the crash");
    // Both ends report the link to b2, by name and (at the dialer) by address.
    assert_eq!(peer_up(&b1, "dp2"), 1.0, "b1 (accepted the link)");
    assert_eq!(peer_up(&b3, "dp2"), 1.0, "b3 (dialed the link)");
    assert_eq!(link_up(&b3, &b2_addr), 1.0, "b3's configured address");
    assert_eq!(
        peer_up(&b2, "dp1") + peer_up(&b2, "dp3"),
        2.0,
        "b2, both ways"
    );

    b2.kill();
    let killed = Instant::now();
    wait_until("b1 and b3 to notice that b2 is dead", WITHIN_SECS, || {
        !lists_peer(&b1, "dp2")
            && !lists_peer(&b3, "dp2")
            && peer_up(&b1, "dp2") == 0.0
            && peer_up(&b3, "dp2") == 0.0
            && link_up(&b3, &b2_addr) == 0.0
    })
    .await;
    let noticed = killed.elapsed();
    // Routed around: neither b1 nor b3 forwards anything toward b2 any more.
    for b in [&b1, &b3] {
        let tree = b.routes()["tree_neighbours"].clone();
        assert_eq!(tree, serde_json::json!([]), "{}'s tree neighbours", b.name);
    }

    // Same arguments, same data directory, same QUIC port.
    // Down until one of b3's redials has timed out against the dead address: the restart
    // must be found by a later attempt within seconds, not after a grown backoff.
    wait_until("a redial of b2 to time out", 15, || {
        b3.metric("palio_peer_dial_failures_total") >= 1.0
    })
    .await;
    let restarted = Instant::now();
    b2.restart();
    reaches(&publisher, &mut sub, WITHIN_SECS)
        .await
        .unwrap_or_else(|| panic!("b1 → b3 again within {WITHIN_SECS} s of b2's restart"));
    let relinked = restarted.elapsed();
    assert_eq!(peer_up(&b1, "dp2"), 1.0);
    assert_eq!(peer_up(&b3, "dp2"), 1.0);
    assert_eq!(link_up(&b3, &b2_addr), 1.0);
    eprintln!(
        "dead peer noticed after {:.1} s; routed through again {:.1} s after the restart",
        noticed.as_secs_f64(),
        relinked.as_secs_f64()
    );
}

/// A broker restarted faster than the idle timeout (here at once) is relinked without waiting
/// for it: its peers' old connections are answered with a stateless reset they accept, because
/// the reset key survives restarts (`<data-dir>/quic-reset.key`).
#[tokio::test]
async fn a_broker_restarted_at_once_is_relinked_before_the_idle_timeout() {
    let d = Dirs::new();
    let (b1, mut b2, b3) = line_of_three(&d, "fr").await;
    let subscriber = b3.client().await;
    let mut sub = subscriber.subscribe("type = 'alarm'").await.unwrap();
    let publisher = b1.client().await;
    reaches(&publisher, &mut sub, 30)
        .await
        .expect("b1 → b2 → b3 routes before the crash");
    let link_before = b3.routes()["peers"][0]["link"].clone();

    b2.kill();
    let restarted = Instant::now();
    b2.restart();
    // b3 dialed b2: its old connection must end by reset, and its redial succeed, well before
    // the 5 s idle timeout would have ended it.
    wait_until("b3 to relink to the restarted b2", 4, || {
        let r = b3.routes();
        r["peers"]
            .as_array()
            .is_some_and(|p| p.len() == 1 && p[0]["name"] == "fr2" && p[0]["link"] != link_before)
    })
    .await;
    reaches(&publisher, &mut sub, WITHIN_SECS)
        .await
        .expect("b1 → b3 again");
    let relinked = restarted.elapsed();
    assert!(
        relinked < Duration::from_secs(5),
        "relinked after {relinked:?}, not before the idle timeout"
    );
    eprintln!(
        "restarted at once: routed through again {:.1} s later",
        relinked.as_secs_f64()
    );
}
