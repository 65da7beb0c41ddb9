//! Targeted behaviours of the routing state machine, on small hand-built networks.

use std::sync::Arc;
use std::time::{Duration, Instant};

use palio_filter::Event;
use palio_topology::sim::network::{NetConfig, Network};
use palio_topology::{
    AdvertRefusal, AdvertisementId, Broker, BrokerId, ClientError, Config, LinkStateAd,
    Notification, NotificationId, PeerError, PeerFrame, RouteKey, SharedFilter, Strategy,
    SubscriptionId, TableKind,
};

const BOUND: u64 = 100_000;

fn b(i: u32) -> BrokerId {
    BrokerId(i)
}

fn f(text: &str) -> SharedFilter {
    SharedFilter::parse(text).expect("test filters are valid")
}

/// A line of `n` brokers 0 – 1 – … – n-1, settled.
fn line(n: u32, strategy: Strategy) -> Network {
    let mut net = Network::new(NetConfig::default(), 7);
    for i in 0..n {
        net.add_broker(Config::new(b(i), 1).with_strategy(strategy));
    }
    for i in 1..n {
        net.link_up(b(i - 1), b(i));
    }
    net.drive_bounded(BOUND).expect("a line settles");
    net
}

fn publish(net: &mut Network, at: BrokerId, id: u64, x0: i32) {
    let event = Event::new()
        .with("pool", "g")
        .and_then(|e| e.with("x0", x0))
        .expect("valid names");
    net.publish(
        at,
        Arc::new(Notification {
            id: NotificationId(id),
            attributes: event,
            payload: b"p".to_vec(),
        }),
    );
    net.drive_bounded(BOUND).expect("settles");
}

fn delivered(net: &mut Network) -> Vec<(BrokerId, SubscriptionId, NotificationId)> {
    net.take_observed()
        .into_iter()
        .map(|o| (o.broker, o.subscription, o.notification))
        .collect()
}

#[test]
fn unsubscribing_a_covering_filter_reforwards_what_it_covered() {
    for strategy in [Strategy::Simple, Strategy::Covering] {
        let mut net = line(2, strategy);
        let (narrow, broad) = (SubscriptionId(1), SubscriptionId(2));
        net.subscribe(b(1), narrow, f("pool = 'g' AND x0 > 50"))
            .unwrap();
        net.subscribe(b(1), broad, f("pool = 'g' AND x0 > 10"))
            .unwrap();
        net.drive_bounded(BOUND).unwrap();
        let at_0 = net.broker(b(0)).unwrap().table_entries();
        assert_eq!(at_0, if strategy == Strategy::Simple { 2 } else { 1 });

        net.unsubscribe(b(1), broad).unwrap();
        net.drive_bounded(BOUND).unwrap();
        assert_eq!(net.broker(b(0)).unwrap().table_entries(), 1, "{strategy}");
        publish(&mut net, b(0), 1, 60);
        publish(&mut net, b(0), 2, 20);
        assert_eq!(delivered(&mut net), [(b(1), narrow, NotificationId(1))]);
        // The notification that only the withdrawn filter wanted never crossed the link.
        assert_eq!(
            net.counters().sent(palio_topology::FrameKind::Notification),
            1
        );
        net.audit().unwrap();
    }
}

#[test]
fn identical_filters_are_forwarded_once_and_withdrawn_with_the_last() {
    let mut net = line(2, Strategy::Covering);
    for s in 1..=3 {
        net.subscribe(b(1), SubscriptionId(s), f("pool = 'g'"))
            .unwrap();
    }
    net.drive_bounded(BOUND).unwrap();
    assert_eq!(net.counters().sent(palio_topology::FrameKind::Subscribe), 1);
    net.unsubscribe(b(1), SubscriptionId(1)).unwrap();
    net.unsubscribe(b(1), SubscriptionId(2)).unwrap();
    net.drive_bounded(BOUND).unwrap();
    assert_eq!(
        net.counters().sent(palio_topology::FrameKind::Unsubscribe),
        0
    );
    net.unsubscribe(b(1), SubscriptionId(3)).unwrap();
    net.drive_bounded(BOUND).unwrap();
    assert_eq!(
        net.counters().sent(palio_topology::FrameKind::Unsubscribe),
        1
    );
    assert_eq!(net.broker(b(0)).unwrap().table_entries(), 0);
}

#[test]
fn each_link_shows_the_filters_it_holds_and_those_forwarded_to_it() {
    let mut net = line(3, Strategy::Covering);
    net.subscribe(b(2), SubscriptionId(1), f("pool = 'g' AND x0 > 50"))
        .unwrap();
    net.subscribe(b(2), SubscriptionId(2), f("pool = 'g' AND x0 > 10"))
        .unwrap();
    net.drive_bounded(BOUND).unwrap();
    let texts = |it: &mut dyn ExactSizeIterator<Item = &SharedFilter>| {
        it.map(|f| f.source().to_owned()).collect::<Vec<_>>()
    };
    let subs = TableKind::Subscriptions;
    let b1 = net.broker(b(1)).unwrap();
    // Broker 2 forwarded only the covering filter; broker 1 holds it from 2 and forwards it on.
    assert_eq!(b1.held_from(subs, b(2)).len(), 1);
    assert_eq!(
        texts(&mut b1.held_from(subs, b(2))),
        ["pool = 'g' AND x0 > 10"]
    );
    assert_eq!(
        texts(&mut b1.forwarded_to(subs, b(0))),
        ["pool = 'g' AND x0 > 10"]
    );
    assert_eq!(b1.held_from(subs, b(0)).len(), 0);
    assert_eq!(b1.forwarded_to(subs, b(2)).len(), 0, "nothing goes back");
    assert_eq!(b1.held_from(TableKind::Advertisements, b(2)).len(), 0);
    // A broker that is not a peer holds nothing and is sent nothing.
    assert_eq!(b1.held_from(subs, b(9)).len(), 0);
    assert_eq!(b1.forwarded_to(subs, b(9)).len(), 0);
    let b2 = net.broker(b(2)).unwrap();
    assert_eq!(
        texts(&mut b2.forwarded_to(subs, b(1))),
        ["pool = 'g' AND x0 > 10"]
    );
}

#[test]
fn subscriptions_follow_advertisements_and_unadvertising_withdraws_them() {
    let mut net = line(3, Strategy::Advertisements);
    net.subscribe(b(0), SubscriptionId(1), f("pool = 'g' AND x0 > 5"))
        .unwrap();
    net.drive_bounded(BOUND).unwrap();
    // Nobody advertises: the subscription stays home.
    assert_eq!(net.broker(b(1)).unwrap().table_entries(), 0);

    net.advertise(b(2), AdvertisementId(1), f("pool = 'g'"))
        .unwrap();
    // A disjoint advertisement attracts nothing.
    net.advertise(b(2), AdvertisementId(2), f("pool = 'r1'"))
        .unwrap();
    net.drive_bounded(BOUND).unwrap();
    // b1 holds the two advertisements from b2 and the subscription from b0; b2 holds the
    // subscription and its own two advertisements.
    assert_eq!(net.broker(b(1)).unwrap().table_entries(), 3);
    assert_eq!(net.broker(b(2)).unwrap().table_entries(), 3);
    publish(&mut net, b(2), 1, 9);
    assert_eq!(
        delivered(&mut net),
        [(b(0), SubscriptionId(1), NotificationId(1))]
    );

    net.unadvertise(b(2), AdvertisementId(1)).unwrap();
    net.drive_bounded(BOUND).unwrap();
    assert_eq!(
        net.broker(b(1)).unwrap().table_entries(),
        1,
        "only r1 is left"
    );
    assert_eq!(net.broker(b(2)).unwrap().table_entries(), 1);
    net.audit().unwrap();
}

#[test]
fn peer_protocol_violations_are_typed_errors() {
    let now = Instant::now();
    let mut config = Config::new(b(0), 1);
    config.max_neighbours = 2;
    config.max_entries_per_peer = 2;
    let mut br = Broker::new(config, now);
    let sub = |k| PeerFrame::Subscribe {
        key: RouteKey(k),
        filter: f("x0 > 1"),
    };
    assert_eq!(
        br.handle_frame(b(1), sub(1), now),
        Err(PeerError::NotConnected(b(1)))
    );
    br.handle_peer_up(b(1), now);
    assert_eq!(br.handle_frame(b(1), sub(1), now), Ok(()));
    assert_eq!(
        br.handle_frame(b(1), sub(1), now),
        Err(PeerError::DuplicateKey {
            peer: b(1),
            key: RouteKey(1)
        })
    );
    assert_eq!(br.handle_frame(b(1), sub(2), now), Ok(()));
    assert_eq!(
        br.handle_frame(b(1), sub(3), now),
        Err(PeerError::TooManyEntries { peer: b(1), max: 2 })
    );
    assert_eq!(
        br.handle_frame(b(1), PeerFrame::Unadvertise { key: RouteKey(1) }, now),
        Err(PeerError::UnknownKey {
            peer: b(1),
            key: RouteKey(1)
        })
    );
    // An advertisement listing too many neighbours: from the broker it describes, a protocol
    // error; relayed, refused and counted (the relay may only be passing it on).
    let oversized = |origin| LinkStateAd {
        origin,
        incarnation: 1,
        seq: 1,
        neighbours: vec![b(1), b(2), b(3)],
    };
    assert!(matches!(
        br.handle_frame(b(1), PeerFrame::LinkState(vec![oversized(b(1))]), now),
        Err(PeerError::TooManyNeighbours { count: 3, .. })
    ));
    assert_eq!(
        br.handle_frame(b(1), PeerFrame::LinkState(vec![oversized(b(5))]), now),
        Ok(())
    );
    assert_eq!(br.known_brokers(), 1, "nothing stored");
    assert_eq!(br.poll_refused_advert(), Some((AdvertRefusal::TooLarge, 1)));
    assert_eq!(br.poll_refused_advert(), None);
    // A frame after the link went down is refused, and the link's state is gone.
    br.handle_peer_down(b(1), now);
    assert_eq!(br.table_entries(), 0);
    assert_eq!(
        br.handle_frame(b(1), PeerFrame::Unsubscribe { key: RouteKey(1) }, now),
        Err(PeerError::NotConnected(b(1)))
    );

    assert_eq!(br.subscribe(SubscriptionId(1), f("TRUE")), Ok(()));
    assert_eq!(
        br.subscribe(SubscriptionId(1), f("TRUE")),
        Err(ClientError::DuplicateSubscription(SubscriptionId(1)))
    );
    assert_eq!(
        br.unadvertise(AdvertisementId(9)),
        Err(ClientError::UnknownAdvertisement(AdvertisementId(9)))
    );
}

#[test]
fn frames_round_trip_and_bad_filter_text_does_not_decode() {
    let frames = vec![
        PeerFrame::Subscribe {
            key: RouteKey(3),
            filter: f("type = 'alarm' AND level > 2"),
        },
        PeerFrame::Unadvertise { key: RouteKey(4) },
        PeerFrame::LinkState(vec![LinkStateAd {
            origin: b(1),
            incarnation: 2,
            seq: 3,
            neighbours: vec![b(0), b(2)],
        }]),
        PeerFrame::Notification(Arc::new(Notification {
            id: NotificationId(9),
            attributes: Event::new()
                .with("level", 3)
                .unwrap()
                .with("type", "alarm")
                .unwrap(),
            payload: vec![1, 2, 3],
        })),
    ];
    for frame in frames {
        let json = serde_json::to_string(&frame).unwrap();
        let back: PeerFrame = serde_json::from_str(&json).unwrap();
        assert_eq!(back, frame, "{json}");
    }
    let bad = r#"{"Subscribe":{"key":1,"filter":"level >"}}"#;
    assert!(serde_json::from_str::<PeerFrame>(bad).is_err());
    let bad_name = r#"{"Notification":{"id":1,"attributes":[["Bad",1]],"payload":[]}}"#;
    assert!(serde_json::from_str::<PeerFrame>(bad_name).is_err());
}

#[test]
fn dead_brokers_age_out_of_link_state_and_restarts_win() {
    let mut net = line(3, Strategy::Covering);
    assert_eq!(net.broker(b(0)).unwrap().known_brokers(), 3);
    net.crash(b(2));
    net.drive_bounded(BOUND).unwrap();
    assert_eq!(
        net.broker(b(0)).unwrap().known_brokers(),
        3,
        "kept until it ages out"
    );
    net.advance(Duration::from_secs(45 * 60));
    net.drive_bounded(BOUND).unwrap();
    assert_eq!(net.broker(b(0)).unwrap().known_brokers(), 2);

    // Restarted with a new incarnation, b2 is back in everyone's tree.
    net.restart(b(2));
    net.link_up(b(1), b(2));
    net.drive_bounded(BOUND).unwrap();
    net.audit().unwrap();
    assert_eq!(net.broker(b(0)).unwrap().tree().members().count(), 3);
    assert_eq!(net.broker(b(2)).unwrap().own_link_state().incarnation, 2);
}

#[test]
fn a_broker_that_restarts_with_a_stale_incarnation_jumps_past_its_old_self() {
    let now = Instant::now();
    let mut br = Broker::new(Config::new(b(0), 1), now);
    br.handle_peer_up(b(1), now);
    let old_self = LinkStateAd {
        origin: b(0),
        incarnation: 1,
        seq: 40,
        neighbours: vec![b(7)],
    };
    br.handle_frame(b(1), PeerFrame::LinkState(vec![old_self]), now)
        .unwrap();
    let own = br.own_link_state().clone();
    assert_eq!((own.incarnation, own.seq), (1, 41));
    assert_eq!(own.neighbours, vec![b(1)]);
    // And it floods that version to its peer.
    let mut sent = Vec::new();
    while let Some(t) = br.poll_transmit() {
        sent.push(t.frame);
    }
    assert!(sent.iter().any(|f| matches!(f,
        PeerFrame::LinkState(l) if l.iter().any(|a| a.origin == b(0) && a.seq == 41))));
}

#[test]
fn drive_bounded_fails_a_run_that_does_not_settle_in_time() {
    let mut net = Network::new(NetConfig::default(), 1);
    for i in 0..4 {
        net.add_broker(Config::new(b(i), 1));
    }
    for i in 1..4 {
        net.link_up(b(0), b(i));
    }
    let err = net.drive_bounded(3).unwrap_err();
    assert_eq!(err.events, 3);
    assert!(net.drive_bounded(BOUND).is_ok());
}

#[test]
fn hostile_link_state_cannot_overflow_grow_or_overwrite() {
    let now = Instant::now();
    let mut config = Config::new(b(0), 1);
    config.max_brokers = 4;
    let mut br = Broker::new(config, now);
    br.handle_peer_up(b(1), now);
    br.handle_peer_up(b(2), now);
    while br.poll_transmit().is_some() {}
    let ad = |origin, incarnation, seq, neighbours: Vec<BrokerId>| LinkStateAd {
        origin,
        incarnation,
        seq,
        neighbours,
    };
    // Broker 2, a verified peer, forges adverts: of us at the very top of the version space,
    // of broker 1 (which we are linked to), and of many brokers that do not exist.
    let mut forged = vec![
        ad(b(0), u64::MAX, u64::MAX, vec![]),
        ad(b(0), 1, u64::MAX, vec![]),
        ad(b(1), u64::MAX, u64::MAX, vec![]),
    ];
    forged.extend((100..10_100).map(|i| ad(b(i), u64::MAX, u64::MAX, vec![b(2)])));
    assert_eq!(
        br.handle_frame(b(2), PeerFrame::LinkState(forged), now),
        Ok(())
    );
    let mut refused: Vec<(AdvertRefusal, u64)> =
        std::iter::from_fn(|| br.poll_refused_advert()).collect();
    refused.sort();
    assert_eq!(
        refused,
        vec![
            (AdvertRefusal::DatabaseFull, 10_000 - 3),
            (AdvertRefusal::Version, 1)
        ]
    );
    assert_eq!(
        br.known_brokers(),
        4,
        "us and three forged brokers: never more than 4"
    );
    // Jumping past (1, u64::MAX) rolled our seq over into the next incarnation.
    assert_eq!(br.own_link_state().incarnation, 2);
    // Broker 1's and 2's own advertisements still get in, each evicting a forged broker, and
    // the forgery of broker 1 was never taken.
    let real = ad(b(1), 1, 1, vec![b(0)]);
    assert_eq!(
        br.handle_frame(b(1), PeerFrame::LinkState(vec![real.clone()]), now),
        Ok(())
    );
    assert_eq!(
        br.handle_frame(
            b(2),
            PeerFrame::LinkState(vec![ad(b(2), 1, 1, vec![b(0)])]),
            now
        ),
        Ok(())
    );
    assert_eq!(br.known_brokers(), 4);
    br.handle_timeout(now + Duration::from_secs(1));
    assert!(br.tree().neighbours(b(0)).contains(&b(1)));
    assert!(br.tree().neighbours(b(0)).contains(&b(2)));
    assert_eq!(br.poll_refused_advert(), None);
}

#[test]
fn targets_name_the_matching_subscriptions_without_routing_anything() {
    let mut broker = Broker::new(Config::new(b(0), 1), Instant::now());
    broker.subscribe(SubscriptionId(1), f("x0 > 5")).unwrap();
    broker
        .subscribe(SubscriptionId(2), f("x0 > 6 AND pool = 'g'"))
        .unwrap();
    let event = |x0: i32| {
        Event::new()
            .with("pool", "g")
            .unwrap()
            .with("x0", x0)
            .unwrap()
    };
    let mut t = broker.targets(&event(7), palio_topology::Interface::Local);
    t.local.sort();
    assert_eq!(t.local, vec![SubscriptionId(1), SubscriptionId(2)]);
    assert!(t.peers.is_empty());
    assert_eq!(
        broker
            .targets(&event(6), palio_topology::Interface::Local)
            .local,
        vec![SubscriptionId(1)]
    );
    assert!(
        broker
            .targets(&event(1), palio_topology::Interface::Local)
            .local
            .is_empty()
    );
    // Nothing was delivered: a request is not a publication.
    assert!(broker.poll_delivery().is_none());
}
