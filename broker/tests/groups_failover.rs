//! Ordered groups through real processes and the `palio` command line: the CLI contract, and
//! total order across `kill -9` of the sequencer's broker, its restart, and a failover storm
//! (each newly elected sequencer killed in turn); a publisher across a loss of quorum.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Output;
use std::time::Duration;

use common::cli::{Collecting, ok, palio, run, tally};
use common::{BrokerProc, Dirs, wait_until};
use serde_json::Value as Json;

fn json_out(out: &Output) -> Json {
    serde_json::from_str(ok(out).trim()).expect("one JSON value")
}

fn info(b: &BrokerProc, group: &str) -> Json {
    json_out(&run(b, &["group", "info", group], 30))
}

#[tokio::test]
async fn the_group_commands_keep_their_contract() {
    let d = Dirs::new();
    let b = BrokerProc::start(&d.path("b"), &d.path("tls"), &["--id", "solo"]);
    let created = json_out(&run(
        &b,
        &["group", "create", "ledger", "--order", "total"],
        30,
    ));
    assert_eq!(
        created,
        serde_json::json!({"created": "ledger", "order": "total"})
    );
    let again = run(&b, &["group", "create", "ledger", "--order", "fifo"], 30);
    assert_eq!(again.status.code(), Some(1), "a group that exists: exit 1");
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("exists"), "the reason on stderr: {stderr}");
    let bad = run(&b, &["group", "create", "no spaces", "--order", "fifo"], 30);
    assert_eq!(
        bad.status.code(),
        Some(2),
        "an invalid name is a usage error"
    );
    json_out(&run(
        &b,
        &["group", "create", "chat", "--order", "causal"],
        30,
    ));
    let ls = json_out(&run(&b, &["group", "ls"], 30));
    let names: Vec<&str> = ls
        .as_array()
        .expect("ls prints an array")
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["chat", "ledger"]);
    wait_until("a sequencer", 20, || {
        info(&b, "ledger")["sequencer"] == "solo"
    })
    .await;
    let i = info(&b, "ledger");
    assert_eq!(i["name"], "ledger");
    assert_eq!(i["order"], "total");
    assert!(
        i["owner"].as_str().is_some_and(|o| !o.is_empty()),
        "the creating principal: {i}"
    );
    assert!(i["members"].as_array().is_some_and(|m| m.is_empty()));
    assert!(i["epoch"].as_u64().is_some_and(|e| e >= 1), "{i}");
    // Publish and receive through the command line.
    let sub = Collecting::start(
        palio(
            &b,
            &[
                "sub",
                "--group",
                "ledger",
                "--count",
                "5",
                "--timeout",
                "30",
            ],
        )
        .spawn()
        .unwrap(),
    );
    wait_until("the member listed", 20, || {
        info(&b, "ledger")["members"]
            .as_array()
            .is_some_and(|m| m.len() == 1)
    })
    .await;
    let published = run(
        &b,
        &["pub", "--group", "ledger", "--count", "5", "--attr", "k=v"],
        60,
    );
    assert_eq!(
        tally(&published),
        (5, 5),
        "{}",
        String::from_utf8_lossy(&published.stderr)
    );
    let lines = ok(&sub.finish(60));
    let got: Vec<Json> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(got.len(), 5);
    for (i, m) in got.iter().enumerate() {
        assert_eq!(m["group"], "ledger");
        assert_eq!(m["attributes"]["seq"], i as i64, "publish order");
        assert_eq!(m["attributes"]["k"], "v");
        assert!(m["epoch"].as_u64().is_some());
        assert!(m["seq"].as_u64().is_some());
    }
    let positions: Vec<u64> = got.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert!(
        positions.windows(2).all(|w| w[1] == w[0] + 1),
        "{positions:?}"
    );
    // Removal.
    let removed = json_out(&run(&b, &["group", "rm", "ledger"], 30));
    assert_eq!(removed, serde_json::json!({"removed": "ledger"}));
    let gone = run(&b, &["group", "info", "ledger"], 30);
    assert_eq!(gone.status.code(), Some(1));
    let to_nothing = run(&b, &["pub", "--group", "ledger", "--count", "1"], 30);
    assert_eq!(
        to_nothing.status.code(),
        Some(1),
        "publishing to no group fails"
    );
}

/// Three brokers in a triangle (so any two are a majority that can reach each other).
fn triangle(d: &Dirs) -> Vec<BrokerProc> {
    let tls = d.path("tls");
    let a = BrokerProc::start(&d.path("a"), &tls, &["--id", "a"]);
    let b = BrokerProc::start(&d.path("b"), &tls, &["--id", "b", "--peer", &a.quic]);
    let c = BrokerProc::start(
        &d.path("c"),
        &tls,
        &["--id", "c", "--peer", &a.quic, "--peer", &b.quic],
    );
    vec![a, b, c]
}

/// Every broker links to every other and its spanning tree spans them all (a total-order
/// group takes its replicas from the brokers its creator's tree reaches).
async fn converged(brokers: &[BrokerProc]) {
    for b in brokers {
        wait_until(&format!("{} to converge", b.name), 30, || {
            let r = b.routes();
            r["known_brokers"] == brokers.len()
                && r["peers"]
                    .as_array()
                    .is_some_and(|p| p.len() == brokers.len() - 1)
                && r["tree"]["edges"]
                    .as_array()
                    .is_some_and(|e| e.len() == brokers.len() - 1)
        })
        .await;
    }
}

/// Creates the total-order group `ledger` at `b`, with a replica at each of the three brokers.
fn create_ledger(b: &BrokerProc) {
    json_out(&run(
        b,
        &["group", "create", "ledger", "--order", "total"],
        30,
    ));
    let replicas = info(b, "ledger")["replicas"].clone();
    assert_eq!(
        replicas.as_array().map(Vec::len),
        Some(3),
        "a replica at each broker: {replicas}"
    );
}

/// The sequencer's name as `at` sees it, once every broker but `except` agrees on one.
async fn agreed_sequencer(brokers: &[BrokerProc], except: Option<usize>) -> (String, u64) {
    let mut found = (String::new(), 0);
    wait_until("the live brokers to agree on a sequencer", 60, || {
        let views: Vec<Json> = brokers
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != except)
            .map(|(_, b)| info(b, "ledger"))
            .collect();
        let s = &views[0]["sequencer"];
        let ok = s.is_string()
            && views.iter().all(|v| &v["sequencer"] == s)
            && Some(s.as_str().unwrap()) != except.map(|i| brokers[i].name.as_str());
        if ok {
            found = (
                s.as_str().unwrap().to_owned(),
                views[0]["epoch"].as_u64().unwrap(),
            );
        }
        ok
    })
    .await;
    found
}

/// A member's lines: `(epoch, position, publisher, publisher's seq attribute)` (the publisher
/// is the `from` attribute, empty when there is none).
fn positions(out: &str) -> Vec<(u64, u64, String, i64)> {
    out.lines()
        .map(|l| {
            let j: Json = serde_json::from_str(l).unwrap();
            (
                j["epoch"].as_u64().unwrap(),
                j["seq"].as_u64().unwrap(),
                j["attributes"]["from"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                j["attributes"]["seq"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// `palio pub --group ledger` of `n` messages with the attribute `from`, started at `b`.
fn publisher(b: &BrokerProc, n: u64, from: &str) -> Collecting {
    let n = n.to_string();
    let from = format!("from={from}");
    let args = [
        "pub",
        "--group",
        "ledger",
        "--count",
        &n,
        "--payload",
        "x",
        "--attr",
        &from,
    ];
    Collecting::start(palio(b, &args).spawn().unwrap())
}

fn member(b: &BrokerProc, count: u64, filter: Option<&str>) -> Collecting {
    let count = count.to_string();
    let mut args = vec![
        "sub",
        "--group",
        "ledger",
        "--count",
        &count,
        "--timeout",
        "120",
    ];
    args.extend(filter);
    Collecting::start(palio(b, &args).spawn().unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn total_order_survives_kill_9_of_each_sequencer_in_turn() {
    let d = Dirs::new();
    let mut brokers = triangle(&d);
    converged(&brokers).await;
    create_ledger(&brokers[0]);
    let (first, epoch0) = agreed_sequencer(&brokers, None).await;
    let victim = brokers.iter().position(|b| b.name == first).unwrap();
    let survivors: Vec<usize> = (0..3).filter(|i| *i != victim).collect();
    // Enough that the publishers are still going when their sequencer dies (a debug build
    // orders a few thousand per second).
    const N: u64 = 5_000;
    // Members at every broker (the victim's dies with it); a publisher at each broker that
    // stays up.
    let members: Vec<Collecting> = brokers.iter().map(|b| member(b, 2 * N, None)).collect();
    wait_until("three members listed", 30, || {
        info(&brokers[survivors[0]], "ledger")["members"]
            .as_array()
            .is_some_and(|m| m.len() == 3)
    })
    .await;
    let publishers: Vec<Collecting> = survivors
        .iter()
        .map(|i| publisher(&brokers[*i], N, &brokers[*i].name))
        .collect();
    // Kill the sequencer's broker mid-stream, once it has committed publications (a fixed
    // pause is not enough on a loaded machine: the kill could come before the first commit,
    // and the stream would not span the failover), and bring it back.
    wait_until("publications committed by the first sequencer", 60, || {
        survivors
            .iter()
            .map(|i| brokers[*i].metric("palio_group_acked_total{order=\"total\"}"))
            .sum::<f64>()
            > 0.0
    })
    .await;
    brokers[victim].kill();
    let (second, epoch1) = agreed_sequencer(&brokers, Some(victim)).await;
    assert_ne!(second, first);
    assert!(epoch1 > epoch0, "a new epoch: {epoch0} -> {epoch1}");
    for p in publishers {
        let out = p.finish(120);
        assert_eq!(
            tally(&out),
            (N, N),
            "every publication acked: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    brokers[victim].restart();
    let mut logs: Vec<Vec<(u64, u64, String, i64)>> = Vec::new();
    let mut cut_short = Vec::new();
    for (i, m) in members.into_iter().enumerate() {
        let out = m.finish(150);
        if i == victim {
            // Killed with its broker: whatever it printed first.
            cut_short = positions(&String::from_utf8_lossy(&out.stdout));
        } else {
            logs.push(positions(&ok(&out)));
        }
    }
    assert_eq!(logs[0], logs[1], "the surviving members deliver one order");
    assert_eq!(
        cut_short.as_slice(),
        &logs[0][..cut_short.len()],
        "the member killed with the sequencer saw a prefix of that order"
    );
    for p in survivors.iter().map(|i| brokers[*i].name.clone()) {
        let seqs: Vec<i64> = logs[0].iter().filter(|m| m.2 == p).map(|m| m.3).collect();
        assert_eq!(
            seqs,
            (0..N as i64).collect::<Vec<_>>(),
            "{p}: every message once, in publish order"
        );
    }
    assert!(
        logs[0]
            .windows(2)
            .all(|w| w[1].1 == w[0].1 + 1 && w[1].0 >= w[0].0),
        "positions without a gap, epochs never back"
    );
    assert!(
        logs[0].first().unwrap().0 == epoch0 && logs[0].last().unwrap().0 >= epoch1,
        "the stream spans the failover: epochs {epoch0} .. {:?}",
        logs[0].last()
    );

    // The storm: kill each newly elected sequencer as soon as it is known, then publish on.
    converged(&brokers).await;
    for round in 0..2 {
        let (s, _) = agreed_sequencer(&brokers, None).await;
        let v = brokers.iter().position(|b| b.name == s).unwrap();
        brokers[v].kill();
        let (next, _) = agreed_sequencer(&brokers, Some(v)).await;
        assert_ne!(next, s, "round {round}");
        let at = (0..3).find(|i| *i != v).unwrap();
        let out = run(
            &brokers[at],
            &["pub", "--group", "ledger", "--count", "100"],
            90,
        );
        assert_eq!(
            tally(&out),
            (100, 100),
            "round {round}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        brokers[v].restart();
        converged(&brokers).await;
    }
    // After healing, every broker accepts and delivers: a member at each sees a new message.
    // (A member starts at the position its broker knows to be committed when it joins; a
    // broker still catching up after its restart may start it a little earlier, so the
    // members filter for the new message.)
    let members: Vec<Collecting> = brokers
        .iter()
        .map(|b| member(b, 1, Some("final = 'yes'")))
        .collect();
    wait_until("three members listed", 30, || {
        info(&brokers[0], "ledger")["members"]
            .as_array()
            .is_some_and(|m| m.len() == 3)
    })
    .await;
    let out = run(
        &brokers[2],
        &[
            "pub",
            "--group",
            "ledger",
            "--count",
            "1",
            "--attr",
            "final=yes",
        ],
        60,
    );
    assert_eq!(tally(&out), (1, 1));
    let last: Vec<Vec<(u64, u64, String, i64)>> = members
        .into_iter()
        .map(|m| positions(&ok(&m.finish(60))))
        .collect();
    assert!(last.windows(2).all(|w| w[0] == w[1]), "{last:?}");
    assert_eq!(
        last[0][0].1,
        2 * N + 200 + 1,
        "positions continue without a gap across epochs"
    );
}

/// `palio pub --group` with more publications than the SDK keeps unacknowledged waits for room
/// as long as for its last acks: a majority of the replicas gone for longer than the
/// connection's request timeout (10 s), then back, and every publication is acked.
#[tokio::test(flavor = "multi_thread")]
async fn a_publisher_with_a_full_window_waits_out_a_loss_of_quorum() {
    let d = Dirs::new();
    let mut brokers = triangle(&d);
    converged(&brokers).await;
    create_ledger(&brokers[0]);
    agreed_sequencer(&brokers, None).await;
    brokers[1].kill();
    brokers[2].kill();
    // More than palio::DEFAULT_MAX_IN_FLIGHT (4,096): nothing commits without a majority, so
    // the window fills and the publisher waits for room.
    const N: u64 = 5_000;
    let p = publisher(&brokers[0], N, "a");
    // Longer than the request timeout, with room for the command's start on a loaded machine.
    tokio::time::sleep(Duration::from_secs(15)).await;
    brokers[1].restart();
    brokers[2].restart();
    let out = p.finish(120);
    assert_eq!(
        tally(&out),
        (N, N),
        "every publication acked once a majority is back: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
