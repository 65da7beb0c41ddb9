//! The same seed gives the same trace; the oracle is not vacuous.

use std::sync::Arc;

use palio_filter::Event;
use palio_topology::sim::network::{NetConfig, Network, Observed};
use palio_topology::sim::oracle::Oracle;
use palio_topology::sim::overlay::OverlayKind;
use palio_topology::sim::scenario::{ChaosParams, RoutingParams, run_chaos, run_routing};
use palio_topology::{
    BrokerId, Config, Notification, NotificationId, SharedFilter, Strategy, SubscriptionId,
};

#[test]
fn same_seed_same_trace_hash() {
    for strategy in Strategy::ALL {
        let p = ChaosParams {
            brokers: 12,
            topology: OverlayKind::Mesh,
            strategy,
            ops: 80,
            rounds: 2,
            publications: 10,
            faults: true,
        };
        let a = run_chaos(42, &p).unwrap();
        let b = run_chaos(42, &p).unwrap();
        let c = run_chaos(43, &p).unwrap();
        assert_eq!(a.trace_hash, b.trace_hash, "{strategy}");
        assert_eq!(a.events, b.events);
        assert_ne!(
            a.trace_hash, c.trace_hash,
            "{strategy}: seeds 42 and 43 look alike"
        );
    }
}

#[test]
fn routing_measurement_is_reproducible_and_meets_its_invariants() {
    let p = RoutingParams {
        brokers: 30,
        subscriptions: 600,
        publications: 60,
        topology: OverlayKind::Mesh,
        brokers_per_region: 5,
        ..RoutingParams::default()
    };
    let mut by_strategy = Vec::new();
    for strategy in Strategy::ALL {
        let p = RoutingParams {
            strategy,
            ..p.clone()
        };
        let r = run_routing(&p).unwrap();
        let again = run_routing(&p).unwrap();
        assert_eq!(r.trace_hash, again.trace_hash, "{strategy}");
        assert_eq!(
            (r.missing, r.duplicates, r.false_deliveries),
            (0, 0, 0),
            "{strategy}"
        );
        assert_eq!(r.deliveries_actual, r.deliveries_expected);
        assert!(r.deliveries_expected > 0);
        if strategy == Strategy::Flooding {
            // Every notification crosses every tree link.
            assert_eq!(
                r.notification_messages,
                (r.brokers as u64 - 1) * r.publications as u64
            );
        } else {
            assert_eq!(
                r.notification_messages, r.ideal_notification_messages,
                "{strategy}"
            );
        }
        by_strategy.push(r);
    }
    let [_, simple, covering, adverts] = &by_strategy[..] else {
        unreachable!()
    };
    assert!(covering.table_entries_total < simple.table_entries_total);
    assert!(adverts.table_entries_total < covering.table_entries_total);
    assert!(adverts.control_messages < covering.control_messages);
}

fn note(id: u64, x0: i32) -> Arc<Notification> {
    Arc::new(Notification {
        id: NotificationId(id),
        attributes: Event::new().with("x0", x0).expect("valid name"),
        payload: Vec::new(),
    })
}

#[test]
fn the_oracle_catches_missing_duplicate_and_false_deliveries() {
    // Publishing before routes have propagated loses the notification: the oracle says so.
    let mut net = Network::new(NetConfig::default(), 3);
    for i in 0..5 {
        net.add_broker(Config::new(BrokerId(i), 1));
    }
    for i in 1..5 {
        net.link_up(BrokerId(i - 1), BrokerId(i));
    }
    net.drive_bounded(100_000).unwrap();
    let mut oracle = Oracle::new();
    let filter = SharedFilter::parse("x0 > 5").unwrap();
    net.subscribe(BrokerId(4), SubscriptionId(1), filter.clone())
        .unwrap();
    oracle.subscribe((BrokerId(4), SubscriptionId(1)), filter);
    let event = note(1, 9);
    oracle.published_checked(event.id, event.attributes.clone());
    net.publish(BrokerId(0), event);
    net.drive_bounded(100_000).unwrap();
    let v = oracle.check(&net.take_observed());
    assert_eq!((v.expected, v.missing), (1, 1));

    // Duplicates and deliveries the filter rejects are counted.
    let e2 = note(2, 9);
    let e3 = note(3, 1);
    oracle.published_checked(e2.id, e2.attributes.clone());
    oracle.published_unchecked(e3.id, e3.attributes.clone());
    let seen = |n| Observed {
        broker: BrokerId(4),
        subscription: SubscriptionId(1),
        notification: NotificationId(n),
    };
    let v = oracle.check(&[seen(2), seen(2), seen(3)]);
    assert_eq!((v.missing, v.duplicates, v.false_deliveries), (0, 1, 1));
    assert!(!v.is_perfect());
}
