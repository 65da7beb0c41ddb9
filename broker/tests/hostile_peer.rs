//! A peer broker that is verified but hostile: the link-state adverts and durable queue
//! declarations it forges about other brokers (and about the broker itself) are refused and
//! counted in `palio_peer_adverts_refused_total`, the broker's state stays bounded, and the
//! broker keeps the link and keeps serving.

#![allow(clippy::unwrap_used)]

mod harness;

use harness::{Net, next_within, raw_connect, read_frame, wait_for, write_frame};
use palio::Notification;
use palio_broker::wire::{PeerHello, PeerMessage, QueueDecl};
use palio_protocol::{PEER_ALPN, PROTOCOL_VERSION};
use palio_topology::{BrokerId, LinkStateAd, PeerFrame};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_adverts_and_declarations_are_refused_counted_and_bounded() {
    let net = Net::new();
    let b = net.broker("victim", "max_brokers = 16", &[]).await;
    let mallory = palio_broker::broker_id("mallory");
    let (_endpoint, conn) = raw_connect(b.quic, &net.tls_dir(), "mallory", PEER_ALPN).await;
    let (mut tx, mut rx) = conn.open_bi().await.unwrap();
    let hello = PeerMessage::Hello(PeerHello {
        version: PROTOCOL_VERSION,
        name: "mallory".to_owned(),
        id: mallory,
        incarnation: 1,
        lanes: 0,
        max_frame: 0,
    });
    write_frame(&mut tx, &hello).await;
    match read_frame::<PeerMessage>(&mut rx).await {
        PeerMessage::Hello(h) => assert_eq!(h.id, b.id),
        other => panic!("expected the broker's hello, got {other:?}"),
    }
    // Its own advert, then forgeries: the victim itself at the top of the version space, and
    // 100 brokers that do not exist.
    let ad = |origin, incarnation, seq, neighbours| LinkStateAd {
        origin,
        incarnation,
        seq,
        neighbours,
    };
    let mut ads = vec![
        ad(mallory, 1, 1, vec![b.id]),
        ad(b.id, u64::MAX, u64::MAX, vec![]),
    ];
    ads.extend((0..100).map(|i| ad(BrokerId(1_000_000 + i), u64::MAX, u64::MAX, vec![mallory])));
    write_frame(&mut tx, &PeerMessage::Frame(PeerFrame::LinkState(ads))).await;
    // A declaration with a name no queue can have, and one of a queue at the victim that does
    // not exist.
    let decl = |home, name: &str, generation| QueueDecl {
        home,
        name: name.to_owned(),
        filter: "TRUE".to_owned(),
        generation,
        removed: false,
    };
    write_frame(
        &mut tx,
        &PeerMessage::QueueDecl(decl(BrokerId(5), "no such name", 1)),
    )
    .await;
    write_frame(
        &mut tx,
        &PeerMessage::QueueDecl(decl(b.id, "ghost", u64::MAX)),
    )
    .await;

    let refused = |reason: &'static str, kind: &'static str| {
        format!("palio_peer_adverts_refused_total{{kind=\"{kind}\",reason=\"{reason}\"}}")
    };
    wait_for("the refusals to be counted", 10, || async {
        let text = b.metrics_text().await;
        let n = |kind, reason| harness::metric_in(&text, &refused(reason, kind));
        n("queue_decl", "malformed") == 1.0 && n("queue_decl", "contradicted") == 1.0
    })
    .await;
    let text = b.metrics_text().await;
    // The victim and mallory, then 14 forged brokers fit; 86 did not.
    assert_eq!(
        harness::metric_in(&text, &refused("database_full", "link_state")),
        86.0
    );
    assert_eq!(
        harness::metric_in(&text, &refused("version", "link_state")),
        1.0
    );
    assert_eq!(harness::metric_in(&text, "palio_known_brokers "), 16.0);
    // The link stays up and the broker serves.
    let routes = b.routes().await;
    assert_eq!(
        routes["peers"].as_array().map(Vec::len),
        Some(1),
        "{routes}"
    );
    let c = b.client().await;
    let mut s = c.subscribe("ok = true").await.unwrap();
    c.publish(Notification::builder().attr("ok", true).build().unwrap())
        .await
        .unwrap();
    assert!(next_within(&mut s, 5000).await.is_some(), "still serving");
}
