//! Ordered groups across a line of three in-process brokers, through the SDK: one order for
//! total-order members everywhere, replies after their questions in causal groups, each
//! publisher's order in fifo groups, member filters, and removal.

#![allow(clippy::unwrap_used)]

mod harness;

use std::collections::BTreeMap;
use std::time::Duration;

use harness::{DelayRelay, InProc, Net, converged, wait_for};
use palio::filter::Value;
use palio::{
    Client, ErrorCode, GroupDelivery, GroupEvent, GroupOrder, GroupSubscription, Notification,
};

fn note(producer: &str, n: i32) -> Notification {
    Notification::builder()
        .attr("producer", producer)
        .attr("n", n)
        .build()
        .unwrap()
}

fn attr_str(m: &GroupDelivery, name: &str) -> String {
    match m.notification.get(name) {
        Some(Value::String(s)) => s.clone(),
        other => panic!("{name}: {other:?}"),
    }
}

fn attr_int(m: &GroupDelivery, name: &str) -> i32 {
    match m.notification.get(name) {
        Some(Value::Int(i)) => *i,
        other => panic!("{name}: {other:?}"),
    }
}

/// The next `n` messages of a member (a gap fails the test), each within 20 s.
async fn take(member: &mut GroupSubscription, n: usize) -> Vec<GroupDelivery> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        match tokio::time::timeout(Duration::from_secs(20), member.next()).await {
            Ok(Some(GroupEvent::Message(m))) => out.push(m),
            Ok(Some(GroupEvent::Gap { count })) => panic!("{count} messages reported lost"),
            Ok(None) => panic!("the member's stream ended after {} messages", out.len()),
            Err(_) => panic!("only {} of {n} messages within 20 s", out.len()),
        }
    }
    out
}

/// Three brokers in a line a – b – c, converged.
async fn line(net: &Net) -> (InProc, InProc, InProc) {
    let a = net.broker("a", "", &[]).await;
    let b = net.broker("b", "", &[&a]).await;
    let c = net.broker("c", "", &[&b]).await;
    converged(&[&a, &b, &c], &[1, 2, 1]).await;
    (a, b, c)
}

/// Waits until `client`'s broker knows `group` (declarations are flooded) and, for total
/// order, a sequencer.
async fn known(client: &Client, group: &str, total: bool) {
    wait_for(&format!("group {group} known"), 30, || async {
        client
            .group_info(group)
            .await
            .is_ok_and(|g| !total || g.sequencer.is_some())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn total_order_is_one_order_for_members_on_every_broker() {
    let net = Net::new();
    let (a, b, c) = line(&net).await;
    let (ca, cb, cc) = (a.client().await, b.client().await, c.client().await);
    ca.group_create("replicas", GroupOrder::Total)
        .await
        .unwrap();
    let again = ca
        .group_create("replicas", GroupOrder::Fifo)
        .await
        .unwrap_err();
    assert_eq!(again.code(), Some(ErrorCode::GroupExists));
    for cl in [&ca, &cb, &cc] {
        known(cl, "replicas", true).await;
    }
    let mut members = Vec::new();
    for cl in [&ca, &cb, &cc] {
        members.push(cl.group_join("replicas", None).await.unwrap());
    }
    wait_for("three members listed", 20, || async {
        cb.group_info("replicas")
            .await
            .is_ok_and(|g| g.members.len() == 3)
    })
    .await;
    const N: i32 = 200;
    let (pa, pc) = (a.client().await, c.client().await);
    let publish = |client: Client, name: &'static str| async move {
        let mut p = client.group_publisher("replicas");
        for i in 0..N {
            p.send(note(name, i)).await.unwrap();
        }
        p.wait_acked(N as u64, Duration::from_secs(30))
            .await
            .unwrap();
        client
    };
    let (_pa, _pc) = tokio::join!(publish(pa, "at-a"), publish(pc, "at-c"));
    let mut logs = Vec::new();
    for m in &mut members {
        logs.push(take(m, 2 * N as usize).await);
    }
    let order = |log: &[GroupDelivery]| -> Vec<(u64, u64, String, i32)> {
        log.iter()
            .map(|m| {
                (
                    m.epoch.unwrap(),
                    m.seq.unwrap(),
                    attr_str(m, "producer"),
                    attr_int(m, "n"),
                )
            })
            .collect()
    };
    let first = order(&logs[0]);
    for log in &logs[1..] {
        assert_eq!(order(log), first, "every member delivers the same order");
    }
    for w in first.windows(2) {
        assert_eq!(w[1].1, w[0].1 + 1, "positions without a gap: {w:?}");
        assert!(w[1].0 >= w[0].0, "epochs never go back");
    }
    let mut per_producer: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for (_, _, p, n) in &first {
        per_producer.entry(p.clone()).or_default().push(*n);
    }
    for (p, ns) in per_producer {
        assert_eq!(
            ns,
            (0..N).collect::<Vec<_>>(),
            "{p}: every message once, in order"
        );
    }
    // What the brokers count: every publication acked at its access broker, every message
    // handed to each broker's member.
    assert_eq!(
        a.metric("palio_group_acked_total{order=\"total\"}").await,
        f64::from(N)
    );
    assert_eq!(
        c.metric("palio_group_acked_total{order=\"total\"}").await,
        f64::from(N)
    );
    for broker in [&a, &b, &c] {
        let delivered = broker
            .metric("palio_group_delivered_total{order=\"total\"}")
            .await;
        assert_eq!(delivered, f64::from(2 * N), "{}", broker.name);
        assert_eq!(broker.metric("palio_groups{order=\"total\"}").await, 1.0);
    }
    let info = cc.group_info("replicas").await.unwrap();
    assert_eq!(info.order, "total");
    assert!(info.epoch.is_some_and(|e| e >= 1));
    assert!(
        ["a", "b", "c"].contains(&info.sequencer.as_deref().unwrap()),
        "the sequencer is named by its broker's --id: {info:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_causal_reply_is_never_delivered_before_its_question() {
    let net = Net::new();
    let (a, b, c) = line(&net).await;
    let (asker, watcher, replier) = (a.client().await, b.client().await, c.client().await);
    asker
        .group_create("chat", GroupOrder::Causal)
        .await
        .unwrap();
    for cl in [&asker, &watcher, &replier] {
        known(cl, "chat", false).await;
    }
    let mut seen_by_watcher = watcher.group_join("chat", None).await.unwrap();
    let mut seen_by_replier = replier.group_join("chat", None).await.unwrap();
    let mut questions = asker.group_publisher("chat");
    let mut answers = replier.group_publisher("chat");
    const CHAINS: i32 = 30;
    for i in 0..CHAINS {
        questions.publish(note("question", i)).await.unwrap();
        // The replier answers only once it has the question: its SDK carries the question's
        // clock as the answer's dependency.
        let q = take(&mut seen_by_replier, 1).await.remove(0);
        assert_eq!(attr_str(&q, "producer"), "question");
        assert!(q.clock.is_some(), "causal messages carry their clock");
        answers.publish(note("answer", i)).await.unwrap();
        let own = take(&mut seen_by_replier, 1).await.remove(0);
        assert_eq!(attr_str(&own, "producer"), "answer");
    }
    let log = take(&mut seen_by_watcher, 2 * CHAINS as usize).await;
    let mut asked = -1;
    for m in &log {
        let n = attr_int(m, "n");
        match attr_str(m, "producer").as_str() {
            "question" => asked = n,
            _ => assert!(n <= asked, "answer {n} delivered before its question"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifo_keeps_each_publishers_order_and_members_filter() {
    let net = Net::new();
    let (a, b, c) = line(&net).await;
    let (ca, cb, cc) = (a.client().await, b.client().await, c.client().await);
    ca.group_create("feed", GroupOrder::Fifo).await.unwrap();
    for cl in [&ca, &cb, &cc] {
        known(cl, "feed", false).await;
    }
    let mut all = cb.group_join("feed", None).await.unwrap();
    let mut only_a = cb
        .group_join("feed", Some("producer = 'at-a'"))
        .await
        .unwrap();
    const N: i32 = 100;
    let mut pa = ca.group_publisher("feed");
    let mut pc = cc.group_publisher("feed");
    for i in 0..N {
        pa.send(note("at-a", i)).await.unwrap();
        pc.send(note("at-c", i)).await.unwrap();
    }
    pa.wait_acked(N as u64, Duration::from_secs(20))
        .await
        .unwrap();
    pc.wait_acked(N as u64, Duration::from_secs(20))
        .await
        .unwrap();
    let log = take(&mut all, 2 * N as usize).await;
    let mut per: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for m in &log {
        per.entry(attr_str(m, "producer"))
            .or_default()
            .push(attr_int(m, "n"));
    }
    for (_, ns) in per {
        assert_eq!(ns, (0..N).collect::<Vec<_>>());
    }
    let filtered = take(&mut only_a, N as usize).await;
    assert!(filtered.iter().all(|m| attr_str(m, "producer") == "at-a"));
    // Removal: the group is gone everywhere; joining it is refused.
    cc.group_remove("feed").await.unwrap();
    wait_for("the removal to reach a", 20, || async {
        ca.group_info("feed").await.is_err()
    })
    .await;
    let refused = ca.group_join("feed", None).await.unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::GroupNotFound));
    assert!(ca.group_list().await.unwrap().is_empty());
}

/// A causal chain across brokers with one slow link: x – y, and y – z through a relay that
/// delays every datagram by 300 ms. A client delivers the question at y and answers it through
/// its connection to z, before the question has crossed the slow link: z must hold the answer
/// until it has the question, so that z's own member never sees the answer first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_published_beyond_a_slow_link_waits_for_its_question() {
    let net = Net::new();
    let y = net.broker("y", "", &[]).await;
    let x = net.broker("x", "", &[&y]).await;
    let slow = DelayRelay::start(y.quic, Duration::from_millis(300)).await;
    let z = net.broker_dialing("z", "[limits]\n", &[slow.addr]).await;
    converged(&[&x, &y, &z], &[1, 2, 1]).await;
    let (asker, at_y, at_z, watcher) = (
        x.client().await,
        y.client().await,
        z.client().await,
        z.client().await,
    );
    asker
        .group_create("chat", GroupOrder::Causal)
        .await
        .unwrap();
    for cl in [&asker, &at_y, &at_z, &watcher] {
        known(cl, "chat", false).await;
    }
    let mut seen_at_y = at_y.group_join("chat", None).await.unwrap();
    let mut seen_at_z = watcher.group_join("chat", None).await.unwrap();
    let mut questions = asker.group_publisher("chat");
    let mut answers = at_z.group_publisher("chat");
    const CHAINS: i32 = 5;
    for i in 0..CHAINS {
        questions.publish(note("question", i)).await.unwrap();
        let q = take(&mut seen_at_y, 1).await.remove(0);
        assert_eq!(attr_int(&q, "n"), i);
        // The answer goes out through z, which may not have the question yet.
        answers.depend_on(q.clock.as_ref().unwrap());
        answers.publish(note("answer", i)).await.unwrap();
        let a = take(&mut seen_at_y, 1).await.remove(0);
        assert_eq!(attr_str(&a, "producer"), "answer");
    }
    let log = take(&mut seen_at_z, 2 * CHAINS as usize).await;
    let order: Vec<(String, i32)> = log
        .iter()
        .map(|m| (attr_str(m, "producer"), attr_int(m, "n")))
        .collect();
    let expected: Vec<(String, i32)> = (0..CHAINS)
        .flat_map(|i| [("question".to_owned(), i), ("answer".to_owned(), i)])
        .collect();
    assert_eq!(order, expected, "each answer after its question at z");
}

/// Large publications are batched, appended, streamed and repaired in bodies that fit a peer
/// link's frame: 40 publications of 200 KiB, pipelined, cross a line of three as one order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_messages_cross_the_group_in_bodies_that_fit_the_links() {
    let net = Net::new();
    let (a, b, c) = line(&net).await;
    let (ca, cc) = (a.client().await, c.client().await);
    ca.group_create("big", GroupOrder::Total).await.unwrap();
    let cb = b.client().await;
    for cl in [&ca, &cb, &cc] {
        known(cl, "big", true).await;
    }
    let mut member = cc.group_join("big", None).await.unwrap();
    let mut p = ca.group_publisher("big");
    const N: i32 = 40;
    for i in 0..N {
        let n = Notification::builder()
            .attr("producer", "big")
            .attr("n", i)
            .payload(vec![b'x'; 200 * 1024])
            .build()
            .unwrap();
        p.send(n).await.unwrap();
    }
    p.wait_acked(N as u64, Duration::from_secs(60))
        .await
        .unwrap();
    let got = take(&mut member, N as usize).await;
    let ns: Vec<i32> = got.iter().map(|m| attr_int(m, "n")).collect();
    assert_eq!(ns, (0..N).collect::<Vec<_>>());
    assert!(
        got.iter()
            .all(|m| m.notification.payload().len() == 200 * 1024)
    );
    for broker in [&a, &b, &c] {
        assert_eq!(
            broker.metric("palio_writer_failures_total").await,
            0.0,
            "no link or stream failed at {}",
            broker.name
        );
    }
}

/// `limits.max_groups` bounds the groups a broker keeps, its own and its peers': a create
/// beyond it is refused with `limit_exceeded`, a peer's declaration beyond it is not taken,
/// and both are counted. A group records the principal that created it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_past_max_groups_are_refused_and_counted() {
    let net = Net::new();
    let a = net.broker("a", "", &[]).await;
    let b = net.broker("b", "max_groups = 1", &[&a]).await;
    converged(&[&a, &b], &[1, 1]).await;
    let (ca, cb) = (a.client().await, b.client().await);
    ca.group_create("one", GroupOrder::Fifo).await.unwrap();
    known(&cb, "one", false).await;
    let refused = cb.group_create("two", GroupOrder::Fifo).await.unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::LimitExceeded), "{refused}");
    ca.group_create("three", GroupOrder::Causal).await.unwrap();
    known(&ca, "three", false).await;
    let hit = "palio_limits_hit_total{limit=\"max_groups\"}";
    wait_for("b to refuse a's second group", 20, || async {
        b.metric(hit).await >= 2.0
    })
    .await;
    let at_b: Vec<String> = cb
        .group_list()
        .await
        .unwrap()
        .into_iter()
        .map(|g| g.name)
        .collect();
    assert_eq!(at_b, vec!["one".to_owned()]);
    assert_eq!(a.metric(hit).await, 0.0);
    assert_eq!(ca.group_list().await.unwrap().len(), 2);
    let info = ca.group_info("one").await.unwrap();
    assert!(!info.owner.is_empty(), "the creator's principal: {info:?}");
    // A removal makes room again.
    cb.group_remove("one").await.unwrap();
    cb.group_create("two", GroupOrder::Fifo).await.unwrap();
}
