//! Principals, permissions, reloads and connection limits, through the SDK against in-process
//! brokers: what `docs/security.md` promises.

#![allow(clippy::unwrap_used)]

mod harness;

use std::time::Duration;

use harness::{InProc, Net, converged, http_get_with, next_within, wait_for};
use palio::filter::Value;
use palio::{Client, ErrorCode, Notification};

/// The issue's configuration contract, plus a user who may do anything and one to remove.
const USERS: &str = r#"
[auth]
allow_anonymous = false

[[auth.user]]
name = "alice"
token = "alice-secret"          # or token_sha256 = "<hex>"
publish = "type = 'order'"      # what alice may publish (default TRUE)
subscribe = "FALSE"             # what alice may receive (default TRUE)

[[auth.user]]
name = "bob"
token = "bob-secret"
publish = "FALSE"
subscribe = "region = 'eu'"

[[auth.user]]
name = "carol"
token = "carol-secret"

[[auth.user]]
name = "dave"
token = "dave-secret"
"#;

async fn as_user(b: &InProc, token: &str) -> Client {
    Client::connect(b.options().token(token)).await.unwrap()
}

fn note(kind: &str, region: &str, n: i32) -> Notification {
    Notification::builder()
        .attr("type", kind)
        .attr("region", region)
        .attr("n", n)
        .build()
        .unwrap()
}

fn n_of(n: &Notification) -> i64 {
    match n.get("n") {
        Some(Value::Int(v)) => i64::from(*v),
        other => panic!("n is {other:?}"),
    }
}

#[tokio::test]
async fn publications_outside_the_permission_are_refused_and_counted() {
    let net = Net::new();
    let b = net.broker_with("b1", USERS, &[]).await;
    let carol = as_user(&b, "carol-secret").await;
    let mut all = carol.subscribe("TRUE").await.unwrap();
    let alice = as_user(&b, "alice-secret").await;

    alice.publish(note("refund", "eu", 1)).await.unwrap();
    alice.publish(note("refund", "eu", 2)).await.unwrap();
    let err = alice.flush().await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::PermissionDenied), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("2 publication(s) refused") && text.contains("type = 'order'"),
        "{text}"
    );
    // The connection stays usable, and what the permission allows goes through.
    alice.publish(note("order", "eu", 3)).await.unwrap();
    assert_eq!(alice.flush().await.unwrap(), 1);
    let got = next_within(&mut all, 5000).await.expect("the order");
    assert_eq!(n_of(&got), 3);
    assert!(next_within(&mut all, 300).await.is_none(), "no refund");
    assert_eq!(
        b.metric("palio_permission_denied_total{action=\"publish\"}")
            .await,
        2.0
    );
}

#[tokio::test]
async fn a_subscription_is_narrowed_to_the_permission_across_brokers() {
    let net = Net::new();
    let b1 = net.broker_with("b1", USERS, &[]).await;
    let b2 = net.broker_with("b2", USERS, &[&b1]).await;
    converged(&[&b1, &b2], &[1, 1]).await;
    // bob asks for everything at b2; carol publishes at b1.
    let bob = as_user(&b2, "bob-secret").await;
    let mut sub = bob.subscribe("TRUE OR region = 'us'").await.unwrap();
    let carol = as_user(&b1, "carol-secret").await;
    // Wait for the subscription to reach b1: probes inside the permission.
    let mut probe = 0;
    loop {
        probe += 1;
        assert!(probe < 100, "bob's subscription never reached b1");
        carol.publish(note("probe", "eu", -probe)).await.unwrap();
        carol.flush().await.unwrap();
        if next_within(&mut sub, 100).await.is_some() {
            break;
        }
    }
    while next_within(&mut sub, 200).await.is_some() {}
    for n in 1..=10 {
        let region = if n % 2 == 0 { "eu" } else { "us" };
        carol.publish(note("x", region, n)).await.unwrap();
    }
    carol.flush().await.unwrap();
    let mut got = Vec::new();
    while let Some(n) = next_within(&mut sub, 500).await {
        assert_eq!(n.get("region"), Some(&Value::String("eu".into())));
        got.push(n_of(&n));
    }
    assert_eq!(got, vec![2, 4, 6, 8, 10]);
    // alice may receive nothing: her subscriptions are accepted and stay silent.
    let alice = as_user(&b2, "alice-secret").await;
    let mut none = alice.subscribe("TRUE").await.unwrap();
    carol.publish(note("x", "eu", 11)).await.unwrap();
    carol.flush().await.unwrap();
    assert_eq!(
        n_of(&next_within(&mut sub, 5000).await.expect("bob gets it")),
        11
    );
    assert!(next_within(&mut none, 300).await.is_none());
}

#[tokio::test]
async fn a_reload_narrows_live_subscriptions_and_disconnects_removed_users() {
    let net = Net::new();
    let b = net.broker_with("b1", USERS, &[]).await;
    let carol = as_user(&b, "carol-secret").await;
    let mut sub = carol.subscribe("TRUE").await.unwrap();
    let dave = as_user(&b, "dave-secret").await;
    let publisher = as_user(&b, "carol-secret").await;

    let shrunk = USERS
        .replace(
            "name = \"carol\"\ntoken = \"carol-secret\"\n",
            "name = \"carol\"\ntoken = \"carol-secret\"\nsubscribe = \"region = 'eu'\"\n",
        )
        .replace(
            "[[auth.user]]\nname = \"dave\"\ntoken = \"dave-secret\"\n",
            "",
        );
    assert_ne!(shrunk, USERS);
    b.reload(&shrunk);

    // Rounds of (us, eu) until a round delivers eu alone: the narrowed filter is in force.
    let mut round = 0;
    loop {
        round += 1;
        assert!(
            round < 100,
            "the reload never narrowed carol's subscription"
        );
        publisher.publish(note("x", "us", 2 * round)).await.unwrap();
        publisher
            .publish(note("x", "eu", 2 * round + 1))
            .await
            .unwrap();
        publisher.flush().await.unwrap();
        let mut got = Vec::new();
        while let Some(n) = next_within(&mut sub, 150).await {
            got.push(n_of(&n));
        }
        if got == [i64::from(2 * round + 1)] {
            break;
        }
    }
    // From then on, never an event outside the permission; and the same subscription id.
    for n in 0..20 {
        publisher.publish(note("x", "us", 1000 + n)).await.unwrap();
    }
    publisher.publish(note("x", "eu", 2000)).await.unwrap();
    publisher.flush().await.unwrap();
    let got = next_within(&mut sub, 5000).await.expect("the eu one");
    assert_eq!(n_of(&got), 2000);
    assert!(next_within(&mut sub, 300).await.is_none());

    wait_for("dave to be disconnected", 10, || async {
        dave.close_reason().is_some()
    })
    .await;
    assert_eq!(
        dave.close_reason().and_then(|e| e.code()),
        Some(ErrorCode::Unauthenticated)
    );
    assert_eq!(
        b.metric("palio_auth_failures_total{reason=\"removed\"}")
            .await,
        1.0
    );
    // A removed user's token no longer lets anyone in.
    let again = Client::connect(b.options().token("dave-secret")).await;
    assert_eq!(again.unwrap_err().code(), Some(ErrorCode::Unauthenticated));
    assert_eq!(
        b.metric("palio_auth_failures_total{reason=\"invalid_token\"}")
            .await,
        1.0
    );
}

#[tokio::test]
async fn connection_limits_per_principal_and_address_refuse_and_count() {
    let net = Net::new();
    let config = format!(
        "{USERS}\n[limits]\nmax_connections_per_principal = 2\nmax_connections_per_address = 4\n"
    );
    let b = net.broker_with("b1", &config, &[]).await;
    let c1 = as_user(&b, "carol-secret").await;
    let _c2 = as_user(&b, "carol-secret").await;
    let third = Client::connect(b.options().token("carol-secret")).await;
    assert!(third.is_err(), "a third connection of carol");
    assert_eq!(
        b.metric("palio_limits_hit_total{limit=\"max_connections_per_principal\"}")
            .await,
        1.0
    );
    // Another principal is not held back by carol's count.
    let _d1 = as_user(&b, "dave-secret").await;
    // A slot given back is taken again.
    c1.close().await;
    wait_for("carol's slot to be given back", 10, || async {
        Client::connect(b.options().token("carol-secret"))
            .await
            .is_ok()
    })
    .await;
    // From one address: carol 2 + dave 1 + the one just made = 4; the fifth is refused
    // before its handshake.
    let many: Vec<_> = futures_util::future::join_all((0..3).map(|_| {
        Client::connect(
            b.options()
                .token("dave-secret")
                .timeout(Duration::from_secs(3)),
        )
    }))
    .await;
    assert!(many.iter().any(Result::is_err));
    assert!(
        b.metric("palio_limits_hit_total{limit=\"max_connections_per_address\"}")
            .await
            >= 1.0
    );
}

#[tokio::test]
async fn the_admin_listener_wants_its_token_and_routes_can_be_summaries() {
    let net = Net::new();
    let config =
        format!("{USERS}\n[admin_access]\ntoken = \"admin-secret\"\nroutes = \"summary\"\n");
    let b = net.broker_with("b1", &config, &[]).await;
    let carol = as_user(&b, "carol-secret").await;
    let _sub = carol.subscribe("type = 'secret-filter'").await.unwrap();
    for path in ["/metrics", "/routes", "/store"] {
        let (status, _) = http_get_with(b.admin, path, None).await;
        assert_eq!(status, 401, "{path} without a token");
        let (status, _) = http_get_with(b.admin, path, Some("wrong-token")).await;
        assert_eq!(status, 401, "{path} with a wrong token");
    }
    let (status, _) = http_get_with(b.admin, "/healthz", None).await;
    assert_eq!(status, 200, "/healthz stays open for probes");
    let (status, routes) = http_get_with(b.admin, "/routes", Some("admin-secret")).await;
    assert_eq!(status, 200);
    assert!(!routes.contains("secret-filter"), "{routes}");
    let json: serde_json::Value = serde_json::from_str(&routes).unwrap();
    assert_eq!(json["detail"], "summary");
    assert_eq!(
        json["subscriptions"],
        serde_json::json!({"total": 1, "truncated": 0}),
        "the size, no entries"
    );
    let (status, metrics) = http_get_with(b.admin, "/metrics", Some("admin-secret")).await;
    assert_eq!(status, 200);
    assert_eq!(
        harness::metric_in(&metrics, "palio_permission_denied_total{action=\"admin\"}"),
        6.0
    );
}

#[tokio::test]
async fn anonymous_clients_need_allow_anonymous_and_get_the_anonymous_users_rights() {
    let net = Net::new();
    // A broker first, for the CA; clients below present no certificate (CA file only).
    let b = net.broker_with("b1", USERS, &[]).await;
    let ca = net.tls_dir().join("ca.pem");
    let anonymous = || {
        palio::ConnectOptions::new(b.quic.to_string())
            .ca_file(&ca)
            .timeout(Duration::from_secs(5))
    };
    let refused = Client::connect(anonymous()).await.unwrap_err();
    assert_eq!(
        refused.code(),
        Some(ErrorCode::Unauthenticated),
        "{refused}"
    );
    assert!(refused.to_string().contains("no credentials"), "{refused}");
    assert_eq!(
        b.metric("palio_auth_failures_total{reason=\"no_credentials\"}")
            .await,
        1.0
    );
    b.reload(&format!(
        "{}\n[[auth.user]]\nname = \"anonymous\"\npublish = \"type = 'hello'\"\n",
        USERS.replace("allow_anonymous = false", "allow_anonymous = true")
    ));
    let anon = Client::connect(anonymous()).await.unwrap();
    anon.publish(note("order", "eu", 1)).await.unwrap();
    let err = anon.flush().await.unwrap_err();
    assert!(err.to_string().contains("\"anonymous\""), "{err}");
    anon.publish(note("hello", "eu", 2)).await.unwrap();
    assert_eq!(anon.flush().await.unwrap(), 1);
}

/// USERS plus an admin and a principal who may receive only `region = 'eu'`.
fn group_users() -> String {
    format!(
        "{USERS}\n[[auth.user]]\nname = \"ops\"\ntoken = \"ops-secret\"\nadmin = true\n\
         [[auth.user]]\nname = \"erin\"\ntoken = \"erin-secret\"\nsubscribe = \"region = 'eu'\"\n"
    )
}

#[tokio::test]
async fn a_group_is_its_owners_and_admins_and_members_get_only_what_they_may_receive() {
    let net = Net::new();
    let config = group_users();
    let a = net.broker_with("a", &config, &[]).await;
    let b = net.broker_with("b", &config, &[&a]).await;
    converged(&[&a, &b], &[1, 1]).await;
    let carol = as_user(&a, "carol-secret").await;
    carol
        .group_create("carols", palio::GroupOrder::Fifo)
        .await
        .unwrap();
    let ops = as_user(&b, "ops-secret").await;
    wait_for("the group to reach b", 20, || async {
        ops.group_info("carols").await.is_ok()
    })
    .await;
    assert_eq!(ops.group_info("carols").await.unwrap().owner, "carol");

    // dave, at the other broker, may not see, join, publish to or remove it.
    let dave = as_user(&b, "dave-secret").await;
    assert!(
        !dave
            .group_list()
            .await
            .unwrap()
            .iter()
            .any(|g| g.name == "carols")
    );
    let denied = |r: Result<(), palio::Error>| {
        assert_eq!(r.unwrap_err().code(), Some(ErrorCode::PermissionDenied));
    };
    denied(dave.group_info("carols").await.map(|_| ()));
    denied(dave.group_join("carols", None).await.map(|_| ()));
    let mut p = dave.group_publisher("carols");
    p.send(note("x", "eu", 1)).await.unwrap();
    denied(p.wait_acked(1, Duration::from_secs(10)).await);
    denied(dave.group_remove("carols").await);
    assert!(
        b.metric("palio_permission_denied_total{action=\"group\"}")
            .await
            >= 4.0
    );
    // The admin may.
    ops.group_remove("carols").await.unwrap();

    // erin's member at b gets only what her permission allows of what she publishes at a.
    let erin_a = as_user(&a, "erin-secret").await;
    erin_a
        .group_create("erins", palio::GroupOrder::Fifo)
        .await
        .unwrap();
    let erin_b = as_user(&b, "erin-secret").await;
    wait_for("erin's group at b", 20, || async {
        erin_b.group_info("erins").await.is_ok()
    })
    .await;
    let mut member = erin_b.group_join("erins", None).await.unwrap();
    wait_for("erin's member listed at a", 20, || async {
        erin_a
            .group_info("erins")
            .await
            .is_ok_and(|g| g.members.len() == 1)
    })
    .await;
    let mut p = erin_a.group_publisher("erins");
    for n in 1..=10 {
        let region = if n % 2 == 0 { "eu" } else { "us" };
        p.send(note("x", region, n)).await.unwrap();
    }
    p.wait_acked(10, Duration::from_secs(20)).await.unwrap();
    let mut got = Vec::new();
    while got.len() < 5 {
        match tokio::time::timeout(Duration::from_secs(10), member.next()).await {
            Ok(Some(palio::GroupEvent::Message(m))) => got.push(n_of(&m.notification)),
            other => panic!("after {got:?}: {other:?}"),
        }
    }
    assert_eq!(got, vec![2, 4, 6, 8, 10]);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), member.next())
            .await
            .is_err(),
        "nothing else, and no gap"
    );
}

#[tokio::test]
async fn with_quic_retry_clients_prove_their_address_and_connect() {
    let net = Net::new();
    let b = net
        .broker_with(
            "b1",
            &format!("{USERS}\n[limits]\nquic_retry = true\n"),
            &[],
        )
        .await;
    let carol = as_user(&b, "carol-secret").await;
    let mut sub = carol.subscribe("TRUE").await.unwrap();
    let other = as_user(&b, "dave-secret").await;
    other.publish(note("x", "eu", 1)).await.unwrap();
    assert_eq!(
        n_of(&next_within(&mut sub, 5000).await.expect("delivered")),
        1
    );
    assert_eq!(
        b.metric("palio_connections_total{role=\"client\"}").await,
        2.0
    );
}

#[tokio::test]
async fn queues_and_producer_names_belong_to_their_principal_and_queues_are_narrowed() {
    let net = Net::new();
    let b = net.broker_with("b1", &group_users(), &[]).await;
    let carol = as_user(&b, "carol-secret").await;
    carol
        .queue_add("carols", "type = 'x'", palio::QueueOptions::default())
        .await
        .unwrap();
    let dave = as_user(&b, "dave-secret").await;
    let denied = |r: Result<(), palio::Error>| {
        assert_eq!(r.unwrap_err().code(), Some(ErrorCode::PermissionDenied));
    };
    denied(dave.queue_info("carols").await.map(|_| ()));
    denied(dave.pull("carols").await.map(|_| ()));
    denied(dave.queue_remove("carols").await);
    assert!(
        !dave
            .queue_list()
            .await
            .unwrap()
            .iter()
            .any(|q| q.name == "carols")
    );
    let ops = as_user(&b, "ops-secret").await;
    assert_eq!(ops.queue_info("carols").await.unwrap().owner, "carol");
    assert!(
        b.metric("palio_permission_denied_total{action=\"queue\"}")
            .await
            >= 3.0
    );

    // A producer name is its first principal's.
    let mine = carol.producer("ledger").await.unwrap();
    mine.publish(note("x", "eu", 1)).await.unwrap();
    let taken = dave.producer("ledger").await.unwrap_err();
    assert_eq!(taken.code(), Some(ErrorCode::PermissionDenied), "{taken}");

    // erin's queue keeps only what she may receive.
    let erin = as_user(&b, "erin-secret").await;
    erin.queue_add("erins", "type = 'x'", palio::QueueOptions::default())
        .await
        .unwrap();
    for n in 2..=7 {
        let region = if n % 2 == 0 { "eu" } else { "us" };
        mine.publish(note("x", region, n)).await.unwrap();
    }
    let mut consumer = erin.pull("erins").await.unwrap();
    let batch = consumer.fetch(10, Duration::from_secs(2)).await.unwrap();
    let got: Vec<i64> = batch.iter().map(|m| n_of(m.notification())).collect();
    assert_eq!(got, vec![2, 4, 6]);
}

#[tokio::test]
async fn a_reload_withholds_queued_messages_outside_the_new_permission() {
    let net = Net::new();
    let b = net.broker_with("b1", USERS, &[]).await;
    let carol = as_user(&b, "carol-secret").await;
    carol
        .queue_add("mine", "type = 'x'", palio::QueueOptions::default())
        .await
        .unwrap();
    let producer = carol.producer("p").await.unwrap();
    for n in 1..=6 {
        let region = if n % 2 == 0 { "eu" } else { "us" };
        producer.publish(note("x", region, n)).await.unwrap();
    }
    b.reload(&USERS.replace(
        "name = \"carol\"\ntoken = \"carol-secret\"\n",
        "name = \"carol\"\ntoken = \"carol-secret\"\nsubscribe = \"region = 'eu'\"\n",
    ));
    // The queue was added before: what it holds outside the new permission is never handed
    // out (a new connection authenticates under the new rules).
    let again = as_user(&b, "carol-secret").await;
    let mut consumer = again.pull("mine").await.unwrap();
    let mut got = Vec::new();
    for _ in 0..5 {
        for m in consumer
            .fetch(10, Duration::from_millis(300))
            .await
            .unwrap()
        {
            got.push(n_of(m.notification()));
            m.ack().await.unwrap();
        }
    }
    assert_eq!(got, vec![2, 4, 6]);
    assert_eq!(
        b.metric("palio_permission_denied_total{action=\"receive\"}")
            .await,
        3.0
    );
    assert_eq!(again.queue_info("mine").await.unwrap().pending, 0);
}
