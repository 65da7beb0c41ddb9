//! Persistent delivery through real processes: `kill -9` during a persistent publish stream, a
//! durable subscriber behind a broker that crashes, redelivery, dead letters, damaged segments
//! and a full disk. Scripts' view: the `palio` command line; the rest through the SDK.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::cli::{ok, palio, run, tally, wait_output};
use common::{BrokerProc, Dirs, wait_until};
use palio::{ConsumeMode, QueueOptions};
use serde_json::Value as Json;

fn queue_info(b: &BrokerProc, name: &str) -> Json {
    serde_json::from_str(&ok(&run(b, &["queue", "info", name], 30))).expect("info is JSON")
}

/// Consumes exactly `n` messages of `queue` with `palio sub --durable` (acking each) and
/// returns seq → delivery counts.
fn drain(b: &BrokerProc, queue: &str, n: u64, pull: bool) -> BTreeMap<i64, Vec<u64>> {
    let n_s = n.to_string();
    let mut args = vec![
        "sub",
        "--durable",
        queue,
        "--count",
        &n_s,
        "--timeout",
        "120",
    ];
    if pull {
        args.extend(["--pull", "--batch", "256"]);
    }
    let out = ok(&run(b, &args, 150));
    let mut seen: BTreeMap<i64, Vec<u64>> = BTreeMap::new();
    for line in out.lines() {
        let j: Json = serde_json::from_str(line).expect("a JSON line per message");
        let seq = j["attributes"]["seq"].as_i64().expect("seq attribute");
        let count = j["delivery_count"].as_u64().expect("delivery_count");
        seen.entry(seq).or_default().push(count);
    }
    assert_eq!(out.lines().count() as u64, n);
    seen
}

/// `{"published": N, "acked": M}` from `palio pub --persistent`.
fn store_status(b: &BrokerProc) -> Json {
    serde_json::from_str(&b.get("/store")).expect("/store is JSON")
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_during_a_persistent_stream_loses_no_acked_message() {
    let d = Dirs::new();
    let tls = d.path("tls");
    let mut b = BrokerProc::start(&d.path("b"), &tls, &["--id", "k1"]);
    ok(&run(&b, &["queue", "add", "orders", "type = 'order'"], 30));
    let publisher = palio(
        &b,
        &[
            "pub",
            "--persistent",
            "--count",
            "2000000",
            "--attr",
            "type=order",
            "--payload",
            "0123456789abcdef",
        ],
    )
    .spawn()
    .expect("palio pub runs");
    wait_until("a few thousand persistent publications", 60, || {
        b.metric("palio_persistent_messages_stored_total") >= 5000.0
    })
    .await;
    b.kill();
    let out = wait_output(publisher, 60);
    assert!(
        !out.status.success(),
        "the publisher saw the connection drop"
    );
    let (published, acked) = tally(&out);
    assert!(acked > 0 && acked <= published, "{published} {acked}");

    b.restart();
    let pending = queue_info(&b, "orders")["pending"].as_u64().unwrap();
    assert!(
        pending >= acked,
        "{pending} pending after the crash, {acked} acked before it"
    );
    let seen = drain(&b, "orders", pending, true);
    for seq in 0..acked as i64 {
        assert!(seen.contains_key(&seq), "acked seq {seq} lost");
    }
    assert!(
        seen.keys().all(|s| (*s as u64) < published),
        "never-published seq delivered"
    );
    assert!(
        seen.values().all(|c| c.len() == 1),
        "nothing was delivered before: no duplicates"
    );
    let info = queue_info(&b, "orders");
    assert_eq!(
        (info["pending"].as_u64(), info["unacked"].as_u64()),
        (Some(0), Some(0))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_durable_subscriber_behind_a_crashed_middle_broker_gets_everything() {
    let d = Dirs::new();
    let tls = d.path("tls");
    let a = BrokerProc::start(&d.path("a"), &tls, &["--id", "sa"]);
    let mut b = BrokerProc::start(&d.path("b"), &tls, &["--id", "sb", "--peer", &a.quic]);
    let c = BrokerProc::start(&d.path("c"), &tls, &["--id", "sc", "--peer", &b.quic]);
    ok(&run(&c, &["queue", "add", "far", "kind = 'x'"], 30));
    wait_until("the queue at c to be known at a", 30, || {
        store_status(&a)["remote_queues"] == 1
    })
    .await;
    let n = 20_000u64;
    let n_s = n.to_string();
    let publisher = palio(
        &a,
        &["pub", "--persistent", "--count", &n_s, "--attr", "kind=x"],
    )
    .spawn()
    .expect("palio pub runs");
    wait_until("messages to flow through b", 60, || {
        c.metric("palio_persistent_messages_stored_total") >= 1000.0
    })
    .await;
    b.kill();
    let out = wait_output(publisher, 120);
    assert_eq!(
        tally(&out),
        (n, n),
        "a acks on its own disk while b is down"
    );
    assert!(
        store_status(&a)["forwards_pending"].as_u64().unwrap() > 0,
        "a holds what it could not forward"
    );
    b.restart();
    wait_until("everything to reach c", 120, || {
        queue_info(&c, "far")["pending"].as_u64() == Some(n)
    })
    .await;
    let seen = drain(&c, "far", n, false);
    assert_eq!(seen.len() as u64, n);
    assert!(seen.values().all(|counts| counts == &[1]), "exactly once");
    wait_until("a and b to forget what c stored", 60, || {
        store_status(&a)["forwards_pending"] == 0 && store_status(&b)["forwards_pending"] == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unacked_messages_are_redelivered_then_dead_lettered_and_the_dlq_is_consumable() {
    let d = Dirs::new();
    let b = BrokerProc::start(&d.path("b"), &d.path("tls"), &["--id", "r1"]);
    let client = b.client().await;
    client
        .queue_add(
            "jobs",
            "TRUE",
            QueueOptions {
                ack_wait_ms: Some(300),
                max_deliveries: Some(2),
                ..QueueOptions::default()
            },
        )
        .await
        .unwrap();
    let producer = client.producer("test-producer").await.unwrap();
    for i in 0..3 {
        let n = palio::Notification::builder()
            .attr("seq", i)
            .build()
            .unwrap();
        producer.publish(n).await.unwrap();
    }

    // A consumer that disappears without acking: its messages come back at once.
    let quitter = b.client().await;
    let mut sub = quitter
        .consume("jobs", ConsumeMode::Push { window: 10 })
        .await
        .unwrap();
    for _ in 0..3 {
        let m = tokio::time::timeout(Duration::from_secs(10), sub.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(m.delivery_count(), 1);
    }
    quitter.close().await;

    let worker = b.client().await;
    let mut sub = worker
        .consume("jobs", ConsumeMode::Push { window: 10 })
        .await
        .unwrap();
    let mut acked = 0;
    for _ in 0..3 {
        let m = tokio::time::timeout(Duration::from_secs(10), sub.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(m.delivery_count(), 2);
        if m.get("seq") == Some(&palio_filter::Value::Int(0)) {
            m.ack().await.unwrap();
            acked += 1;
        }
    }
    assert_eq!(acked, 1);
    // The other two reach max deliveries when their ack wait ends: dead-lettered.
    wait_until("two dead letters", 30, || {
        queue_info(&b, "jobs")["dead_lettered"] == 2
    })
    .await;
    let seen = drain(&b, "jobs.dlq", 2, true);
    assert_eq!(seen.keys().copied().collect::<Vec<_>>(), vec![1, 2]);
    let info = queue_info(&b, "jobs");
    assert_eq!(
        (info["pending"].as_u64(), info["dead_lettered"].as_u64()),
        (Some(0), Some(0))
    );
}

/// Publishes `n` persistent messages (seq 0…n−1) to queue `q` of a fresh broker, stops it,
/// and returns it with the path of its largest segment.
async fn stored_broker(d: &Dirs, n: u64) -> (BrokerProc, PathBuf) {
    let mut b = BrokerProc::start(&d.path("b"), &d.path("tls"), &["--id", "c1"]);
    ok(&run(&b, &["queue", "add", "q", "TRUE"], 30));
    let n_s = n.to_string();
    let out = run(
        &b,
        &[
            "pub",
            "--persistent",
            "--count",
            &n_s,
            "--payload",
            &"p".repeat(200),
        ],
        60,
    );
    assert_eq!(tally(&out), (n, n));
    assert!(b.terminate(10).is_some_and(|s| s.success()));
    let seg = largest_file(&d.path("b").join("store"));
    (b, seg)
}

fn largest_file(dir: &Path) -> PathBuf {
    std::fs::read_dir(dir)
        .expect("store dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .max_by_key(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .expect("a segment")
        .path()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupted_segment_is_reported_and_intact_acked_messages_are_delivered() {
    let d = Dirs::new();
    let n = 400u64;
    let (mut b, seg) = stored_broker(&d, n).await;
    let mut bytes = std::fs::read(&seg).unwrap();
    let mid = bytes.len() / 2;
    for byte in &mut bytes[mid..mid + 8] {
        *byte ^= 0xa5;
    }
    std::fs::write(&seg, &bytes).unwrap();
    b.restart();
    wait_until("the damage to be reported", 10, || {
        b.metric("palio_store_recovery_problems_total") >= 1.0
    })
    .await;
    let pending = queue_info(&b, "q")["pending"].as_u64().unwrap();
    // At most the two records the 8 bytes can touch are lost.
    assert!(pending >= n - 2 && pending < n, "{pending}");
    let seen = drain(&b, "q", pending, true);
    assert_eq!(seen.len() as u64, pending);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_truncated_segment_keeps_every_record_before_the_cut() {
    let d = Dirs::new();
    let n = 400u64;
    let (mut b, seg) = stored_broker(&d, n).await;
    let len = std::fs::metadata(&seg).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(len * 7 / 10).unwrap();
    drop(f);
    b.restart();
    wait_until("the cut to be reported", 10, || {
        b.metric("palio_store_recovery_problems_total") >= 1.0
    })
    .await;
    let pending = queue_info(&b, "q")["pending"].as_u64().unwrap();
    assert!(pending > 0 && pending < n, "{pending}");
    let seen = drain(&b, "q", pending, true);
    // The records before the cut are a prefix of the publications.
    assert_eq!(
        seen.keys().copied().collect::<Vec<_>>(),
        (0..pending as i64).collect::<Vec<_>>()
    );
    // The store keeps working after recovery.
    let out = run(
        &b,
        &["pub", "--persistent", "--count", "5", "--producer", "after"],
        30,
    );
    assert_eq!(tally(&out), (5, 5));
}

/// Why this process cannot mount a tmpfs on `dir` in a private mount namespace, if it cannot
/// (that needs root, or at least `CAP_SYS_ADMIN`): the mount is tried, then dropped with the
/// namespace.
fn no_tmpfs_mount(dir: &Path) -> Option<String> {
    let probe = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c"])
        .arg("mount -t tmpfs -o size=1m palio-probe \"$0\"")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output();
    let why = match probe {
        Ok(out) if out.status.success() => return None,
        Ok(out) => String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        Err(e) => format!("cannot run unshare: {e}"),
    };
    // The effective uid, the second field of `Uid:` in /proc/self/status.
    let euid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("Uid:"))?;
            line.split_whitespace().nth(2).map(str::to_owned)
        });
    Some(match euid.as_deref() {
        Some("0") => format!("as root: {why}"),
        _ => "not root".to_owned(),
    })
}

/// The real ENOSPC: the broker binary on a 2 MiB tmpfs. Where no tmpfs can be mounted (not
/// root), the same scenario runs on the store's fault-injecting file layer instead, in the
/// library's unit test `persist::tests::a_full_disk_fails_publications_clearly_and_acks_nothing_false`
/// (which always runs, so CI covers both). With `CI` set (as `.ci/run` does) a missing tmpfs is
/// a failure, so CI cannot lose the real one unnoticed.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_fails_publications_clearly_and_acks_nothing_false() {
    let d = Dirs::new();
    let data = d.path("small");
    std::fs::create_dir_all(&data).unwrap();
    if let Some(why) = no_tmpfs_mount(&data) {
        assert!(
            std::env::var_os("CI").is_none(),
            "the real full disk is required in CI, but no tmpfs mount is possible ({why})"
        );
        eprintln!(
            "no tmpfs mount possible ({why}): the disk-full scenario runs on the \
             fault-injecting file layer instead, in palio-broker's unit test \
             persist::tests::a_full_disk_fails_publications_clearly_and_acks_nothing_false \
             (part of `cargo test --workspace`)"
        );
        return;
    }
    // The broker runs in its own mount namespace on a 2 MiB tmpfs: a real ENOSPC.
    let b = BrokerProc::start_wrapped(
        &[
            "unshare",
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            "mount -t tmpfs -o size=2m palio-test \"$0\" && exec \"$@\"",
            &data.display().to_string(),
        ],
        &data,
        &d.path("tls"),
        &["--id", "full"],
    );
    ok(&run(&b, &["queue", "add", "q", "TRUE"], 30));
    let out = run(
        &b,
        &[
            "pub",
            "--persistent",
            "--count",
            "100000",
            "--payload",
            &"z".repeat(1000),
        ],
        120,
    );
    assert!(!out.status.success(), "the publisher is told");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("disk full") || stderr.contains("store_unavailable"),
        "{stderr}"
    );
    let (published, acked) = tally(&out);
    assert!(acked > 100 && acked < published, "{published} {acked}");
    assert!(
        b.get_status("/healthz").0 == 503,
        "health reports the failed store"
    );
    assert_eq!(b.metric("palio_store_poisoned"), 1.0);
    assert_eq!(store_status(&b)["disk_full"], true);
    // Every acked message is there and readable.
    let client = b.client().await;
    let window = u32::try_from(acked).unwrap().min(4096);
    let mut sub = client
        .consume("q", ConsumeMode::Push { window })
        .await
        .unwrap();
    let mut seqs = Vec::new();
    while (seqs.len() as u64) < acked.min(u64::from(window)) {
        let m = tokio::time::timeout(Duration::from_secs(10), sub.next())
            .await
            .expect("a message within 10 s")
            .expect("stream open");
        match m.get("seq") {
            Some(palio_filter::Value::Int(i)) => seqs.push(i64::from(*i)),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(seqs, (0..seqs.len() as i64).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_producer_retrying_under_its_id_stores_nothing_twice() {
    let d = Dirs::new();
    let b = BrokerProc::start(&d.path("b"), &d.path("tls"), &["--id", "p1"]);
    ok(&run(&b, &["queue", "add", "q", "TRUE"], 30));
    let args = [
        "pub",
        "--persistent",
        "--producer",
        "orders-7",
        "--count",
        "300",
    ];
    assert_eq!(tally(&run(&b, &args, 60)), (300, 300));
    // The same run again, as a producer that lost its acks would: all acked, none stored.
    assert_eq!(tally(&run(&b, &args, 60)), (300, 300));
    assert_eq!(b.metric("palio_persistent_duplicates_total"), 300.0);
    assert_eq!(queue_info(&b, "q")["pending"].as_u64(), Some(300));
}

#[tokio::test(flavor = "multi_thread")]
async fn acked_segments_are_deleted_and_the_checkpoint_survives_a_crash() {
    let d = Dirs::new();
    let cfg = d.path("small-segments.toml");
    std::fs::write(&cfg, "[store]\nsegment_bytes = 65536\n").unwrap();
    let cfg = cfg.display().to_string();
    let mut b = BrokerProc::start(
        &d.path("b"),
        &d.path("tls"),
        &["--id", "g1", "--config", &cfg],
    );
    ok(&run(&b, &["queue", "add", "q", "TRUE"], 30));
    ok(&run(&b, &["queue", "add", "kept", "keep = true"], 30));
    let payload = "x".repeat(300);
    let out = run(
        &b,
        &[
            "pub",
            "--persistent",
            "--producer",
            "a",
            "--count",
            "2000",
            "--payload",
            &payload,
        ],
        60,
    );
    assert_eq!(tally(&out), (2000, 2000));
    // Three messages that another queue keeps: their segment must stay.
    let out = run(
        &b,
        &[
            "pub",
            "--persistent",
            "--producer",
            "k",
            "--count",
            "3",
            "--attr",
            "keep=true",
        ],
        30,
    );
    assert_eq!(tally(&out), (3, 3));
    // Seqs 0…1999 from producer a, and 0…2 again from producer k.
    let seen = drain(&b, "q", 2003, true);
    assert_eq!(seen.len(), 2000);
    // More traffic rolls segments; checkpoints let the acked ones go.
    let out = run(
        &b,
        &[
            "pub",
            "--persistent",
            "--producer",
            "b",
            "--count",
            "1000",
            "--payload",
            &payload,
        ],
        60,
    );
    assert_eq!(tally(&out), (1000, 1000));
    wait_until("acked segments to be deleted", 30, || {
        b.metric("palio_store_segments_deleted_total") >= 1.0
    })
    .await;
    assert!(b.metric("palio_store_checkpoints_total") >= 1.0);
    let segments = store_status(&b)["segments"].as_u64().unwrap();
    assert!(segments < 15, "{segments} segments left for ~1 MB written");

    // Crash; recovery starts from the checkpoint and replays the rest.
    b.restart();
    let q = queue_info(&b, "q");
    assert_eq!(q["pending"].as_u64(), Some(1000), "{q}");
    let kept = queue_info(&b, "kept");
    assert_eq!(kept["pending"].as_u64(), Some(3), "{kept}");
    let seen = drain(&b, "kept", 3, false);
    assert_eq!(seen.keys().copied().collect::<Vec<_>>(), vec![0, 1, 2]);
    let seen = drain(&b, "q", 1000, true);
    assert_eq!(seen.len(), 1000);
    assert!(
        seen.values().all(|c| c == &[1]),
        "acked before the crash, never again"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_queue_listing_longer_than_a_frame_comes_whole_and_a_too_long_publication_is_refused() {
    let d = Dirs::new();
    let cfg = d.path("small-frames.toml");
    std::fs::write(&cfg, "[limits]\nmax_frame_bytes = 1024\n").unwrap();
    let cfg = cfg.display().to_string();
    let b = BrokerProc::start(
        &d.path("b"),
        &d.path("tls"),
        &["--id", "f1", "--config", &cfg],
    );
    let client = b.client().await;
    assert_eq!(client.broker().max_frame, 1024);
    // 30 queues and their dead-letter queues, each entry about 300 bytes: the listing takes
    // many 1 KiB frames.
    let filter = format!("kind = '{}'", "k".repeat(200));
    let names: Vec<String> = (0..30).map(|i| format!("q{i:02}")).collect();
    for name in &names {
        client
            .queue_add(name, &filter, QueueOptions::default())
            .await
            .unwrap();
    }
    let expected: Vec<String> = names
        .iter()
        .flat_map(|q| [q.clone(), format!("{q}.dlq")])
        .collect();
    let listed = client.queue_list().await.unwrap();
    assert!(listed.iter().all(|q| q.filter == filter));
    let listed: Vec<String> = listed.into_iter().map(|q| q.name).collect();
    assert_eq!(listed, expected);
    // `palio queue ls` prints the same listing as one array.
    let ls: Json = serde_json::from_str(&ok(&run(&b, &["queue", "ls"], 30))).unwrap();
    let ls: Vec<&str> = ls
        .as_array()
        .expect("an array")
        .iter()
        .filter_map(|q| q["name"].as_str())
        .collect();
    assert_eq!(ls, expected);

    // A publication longer than the broker's frame limit: `palio pub` refuses it before
    // sending and says why.
    let big = "x".repeat(2000);
    let out = run(&b, &["pub", "--persistent", "--payload", &big], 30);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("frame_too_large"), "{err}");
    assert!(err.contains("limit of 1024 bytes"), "{err}");
    assert_eq!(tally(&out), (0, 0));
    // The broker is unaffected.
    assert_eq!(client.queue_info("q00").await.unwrap().pending, 0);
    client.close().await;
}

/// `palio queue …` and `palio sub --durable` say a broker's refusal once, with its code.
#[tokio::test(flavor = "multi_thread")]
async fn refusals_of_queue_commands_are_said_once() {
    let d = Dirs::new();
    let b = BrokerProc::start(&d.path("b"), &d.path("tls"), &["--id", "e1"]);
    ok(&run(&b, &["queue", "add", "orders", "type = 'order'"], 30));
    let stderr = |out: &std::process::Output| {
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let out = run(&b, &["queue", "add", "orders", "type = 'other'"], 30);
    assert_eq!(
        stderr(&out),
        "palio: queue \"orders\" exists already with another filter or options (queue_exists)\n"
    );
    let out = run(&b, &["queue", "rm", "nope"], 30);
    assert_eq!(
        stderr(&out),
        "palio: no queue named \"nope\" (queue_not_found)\n"
    );
    let out = run(&b, &["sub", "--durable", "nope", "--count", "1"], 30);
    assert_eq!(
        stderr(&out),
        "palio: no queue named \"nope\" (queue_not_found)\n"
    );
}

/// A consumer whose process is killed (its connection is never closed) is detached once the
/// broker's idle timeout (`timeouts.idle_timeout_ms`, 5 s) ends the connection, with the
/// messages it had in flight ready again.
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_consumer_is_detached() {
    let d = Dirs::new();
    let b = BrokerProc::start(&d.path("b"), &d.path("tls"), &["--id", "g1"]);
    ok(&run(&b, &["queue", "add", "orders", "TRUE"], 30));
    let consumer = palio(&b, &["sub", "--durable", "orders", "--window", "4"])
        .spawn()
        .expect("palio runs");
    let consumer = common::cli::Collecting::start(consumer);
    wait_until("one consumer", 20, || {
        queue_info(&b, "orders")["consumers"] == 1
    })
    .await;
    // More than it can take at once: some are in flight to it when it dies.
    assert_eq!(
        tally(&run(&b, &["pub", "--persistent", "--count", "5000"], 60)),
        (5000, 5000)
    );
    let _ = Command::new("kill")
        .args(["-9", &consumer.pid().to_string()])
        .status();
    let _ = consumer.finish(20);
    wait_until("the killed consumer detached", 20, || {
        let info = queue_info(&b, "orders");
        info["consumers"] == 0 && info["unacked"] == 0
    })
    .await;
    // What it did not ack is all there for the next consumer.
    let left = queue_info(&b, "orders")["pending"]
        .as_u64()
        .expect("pending");
    if left > 0 {
        assert_eq!(drain(&b, "orders", left, false).len() as u64, left);
    }
}

/// `palio queue rm NAME.dlq` empties the dead-letter queue; it stays, and gets later dead
/// letters.
#[tokio::test(flavor = "multi_thread")]
async fn removing_a_dead_letter_queue_empties_it() {
    let d = Dirs::new();
    let mut b = BrokerProc::start(&d.path("b"), &d.path("tls"), &["--id", "l1"]);
    let client = b.client().await;
    client
        .queue_add(
            "jobs",
            "TRUE",
            QueueOptions {
                ack_wait_ms: Some(200),
                max_deliveries: Some(1),
                ..QueueOptions::default()
            },
        )
        .await
        .unwrap();
    client.close().await;
    assert_eq!(
        tally(&run(&b, &["pub", "--persistent", "--count", "2"], 30)),
        (2, 2)
    );
    // Delivered once and never acked: dead letters after the ack wait.
    let client = b.client().await;
    let mut jobs = client.pull("jobs").await.unwrap();
    let batch = jobs.fetch(2, Duration::from_secs(10)).await.unwrap();
    assert_eq!(batch.len(), 2);
    wait_until("two dead letters", 30, || {
        queue_info(&b, "jobs.dlq")["pending"] == 2
    })
    .await;
    client.close().await;

    let out = ok(&run(&b, &["queue", "rm", "jobs.dlq"], 30));
    assert_eq!(out.trim(), r#"{"removed":"jobs.dlq"}"#);
    let ls: Json = serde_json::from_str(&ok(&run(&b, &["queue", "ls"], 30))).unwrap();
    let names: Vec<&str> = ls
        .as_array()
        .expect("an array")
        .iter()
        .filter_map(|q| q["name"].as_str())
        .collect();
    assert_eq!(names, ["jobs", "jobs.dlq"]);
    assert_eq!(queue_info(&b, "jobs")["dead_lettered"], 0);
    // For good: a restart does not bring them back.
    b.restart();
    assert_eq!(queue_info(&b, "jobs.dlq")["pending"], 0);
    assert_eq!(queue_info(&b, "jobs")["pending"], 0);
}

/// A persistent publication that matches no durable queue is acked but kept by none: `palio
/// pub --persistent` says so (`stored`, and a warning), and a retry is told what the first
/// run was.
#[tokio::test(flavor = "multi_thread")]
async fn publications_matching_no_queue_are_reported_not_stored() {
    let d = Dirs::new();
    let b = BrokerProc::start(&d.path("b"), &d.path("tls"), &["--id", "u1"]);
    let publish = |producer: &str| {
        let out = run(
            &b,
            &[
                "pub",
                "--persistent",
                "--producer",
                producer,
                "--count",
                "3",
            ],
            30,
        );
        assert!(out.status.success(), "{out:?}");
        let line: Json = serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim())
            .expect("one JSON line");
        (line, String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (line, err) = publish("nowhere");
    assert_eq!(
        line,
        serde_json::json!({"published": 3, "acked": 3, "stored": 0})
    );
    assert_eq!(
        err,
        "palio: 3 publications matched no queue; nothing stored them (palio queue ls)\n"
    );
    assert_eq!(b.metric("palio_persistent_unmatched_total"), 3.0);

    ok(&run(&b, &["queue", "add", "orders", "TRUE"], 30));
    let (line, err) = publish("somewhere");
    assert_eq!(
        line,
        serde_json::json!({"published": 3, "acked": 3, "stored": 3})
    );
    assert_eq!(err, "");
    // The queue goes; the same run again is told what the first one was, and stores nothing.
    ok(&run(&b, &["queue", "rm", "orders"], 30));
    let (line, err) = publish("somewhere");
    assert_eq!(
        line,
        serde_json::json!({"published": 3, "acked": 3, "stored": 3})
    );
    assert_eq!(err, "");
    assert_eq!(b.metric("palio_persistent_duplicates_total"), 3.0);
}

/// The lines `palio queue peek orders --count N` prints.
fn peek(b: &BrokerProc, count: &str) -> Vec<Json> {
    ok(&run(b, &["queue", "peek", "orders", "--count", count], 30))
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line per message"))
        .collect()
}

/// `palio queue peek` shows the next messages without delivering them; `palio queue purge`
/// removes them all, for good, and the consumer stays.
#[tokio::test(flavor = "multi_thread")]
async fn peek_shows_without_delivering_and_purge_empties_for_good() {
    let d = Dirs::new();
    let mut b = BrokerProc::start(&d.path("b"), &d.path("tls"), &["--id", "q1"]);
    ok(&run(&b, &["queue", "add", "orders", "TRUE"], 30));
    assert_eq!(
        tally(&run(&b, &["pub", "--persistent", "--count", "5"], 30)),
        (5, 5)
    );
    let shown = peek(&b, "3");
    let seqs: Vec<i64> = shown
        .iter()
        .map(|m| m["attributes"]["seq"].as_i64().expect("seq"))
        .collect();
    assert_eq!(seqs, [0, 1, 2]);
    assert!(
        shown
            .iter()
            .all(|m| m["delivery_count"] == 0 && m["queue"] == "orders" && m.get("tag").is_none()),
        "{shown:?}"
    );
    assert_eq!(peek(&b, "1").len(), 1, "--count 1");
    let info = queue_info(&b, "orders");
    assert_eq!(
        (info["pending"].as_u64(), info["unacked"].as_u64()),
        (Some(5), Some(0))
    );
    // Peeking took nothing from a consumer: it gets all five as first deliveries.
    let got = drain(&b, "orders", 2, false);
    assert_eq!(
        got.into_iter().collect::<Vec<_>>(),
        [(0, vec![1]), (1, vec![1])]
    );

    // A consumer holds one in flight while the queue is purged; it stays attached.
    let client = b.client().await;
    let mut sub = client
        .consume("orders", ConsumeMode::Push { window: 1 })
        .await
        .unwrap();
    let held = tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .expect("a message in time")
        .expect("the stream is open");
    let out = ok(&run(&b, &["queue", "purge", "orders"], 30));
    assert_eq!(out.trim(), r#"{"purged":"orders","messages":3}"#);
    let info = queue_info(&b, "orders");
    assert_eq!(
        (
            info["pending"].as_u64(),
            info["unacked"].as_u64(),
            info["consumers"].as_u64()
        ),
        (Some(0), Some(0), Some(1))
    );
    assert_eq!(
        held.ack().await.unwrap_err().code(),
        Some(palio::ErrorCode::UnknownId)
    );
    assert_eq!(
        tally(&run(&b, &["pub", "--persistent", "--count", "1"], 30)),
        (1, 1)
    );
    let next = tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .expect("a message in time")
        .expect("the stream is open");
    next.ack().await.unwrap();
    client.close().await;
    // Nothing comes back after a restart.
    b.restart();
    assert_eq!(queue_info(&b, "orders")["pending"], 0);
    assert_eq!(peek(&b, "10").len(), 0);
    // A refusal is said once.
    let out = run(&b, &["queue", "purge", "nope"], 30);
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "palio: no queue named \"nope\" (queue_not_found)\n"
    );
}
