//! A whole broker, in process, whose store is on the fault-injecting file layer (`SimFs`), and
//! one whose durable limits are small.
//!
//! `tests/persistence.rs` fills a real 2 MiB tmpfs under the broker binary, which needs a
//! private mount namespace (root). This runs the same disk-full scenario on the simulated file
//! layer, which fails writes with `ENOSPC` once a byte budget is spent, so that it runs for
//! everyone, and in CI beside the real one. The limits scenario checks that the engine's
//! refusals reach the client as errors and `/metrics` as `palio_limits_hit_total`.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use palio::{Client, ConnectOptions, ConsumeMode, ErrorCode, Notification, QueueOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::store::{Fs, SimFs};
use crate::{Server, Settings};

thread_local! {
    /// The file layer the next [`Store::open`](super::Store::open) on this thread uses instead
    /// of the real file system. A thread-local rather than a parameter: production code has no
    /// reason to choose its file layer, and `Server::bind` opens the store on the thread that
    /// awaits it.
    static FILE_LAYER: RefCell<Option<Arc<dyn Fs>>> = const { RefCell::new(None) };
}

/// Takes the file layer a test set for this thread, if any.
pub(super) fn take_file_layer() -> Option<Arc<dyn Fs>> {
    FILE_LAYER.take()
}

/// Bytes the publications may add to the store before writes fail with `ENOSPC`.
const SPACE: u64 = 1 << 20;
/// Payload of each publication: the budget holds about a thousand of them.
const PAYLOAD: usize = 1000;
/// Publications sent before waiting for their acks.
const WINDOW: u64 = 64;
/// An upper bound on publications: ten times what `SPACE` holds.
const MAX_PUBLICATIONS: u64 = 10 * SPACE / PAYLOAD as u64;

/// Status and body of `GET path` on the admin listener (bounded by 10 s).
async fn admin_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("admin");
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        s.write_all(request.as_bytes()).await.expect("request");
        let mut response = String::new();
        s.read_to_string(&mut response).await.expect("response");
        response
    };
    let response = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .expect("the admin listener answers within 10 s");
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("a status line");
    (status, body.to_owned())
}

/// A broker named `id` on ephemeral loopback ports, its data and TLS directories in `dir`.
fn settings(dir: &std::path::Path, id: &str) -> Settings {
    let mut settings = Settings {
        id: Some(id.into()),
        listen: "127.0.0.1:0".parse().expect("address"),
        admin: Some("127.0.0.1:0".parse().expect("address")),
        data_dir: dir.join("b"),
        ..Settings::default()
    };
    settings.tls.dir = Some(dir.join("tls"));
    settings
}

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_publications_clearly_and_acks_nothing_false() {
    let dir = tempfile::tempdir().expect("temp dir");
    let tls = dir.path().join("tls");
    let settings = settings(dir.path(), "full");
    let fs = SimFs::new();
    FILE_LAYER.set(Some(fs.clone() as Arc<dyn Fs>));
    let server = Server::bind(settings).await.expect("binds");
    assert!(
        take_file_layer().is_none(),
        "the store was opened on the simulated file layer"
    );
    let quic = server.local_addr().expect("QUIC address");
    let admin = server.admin_addr().expect("admin address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));

    let opts = ConnectOptions::new(quic.to_string())
        .tls_dir(&tls)
        .timeout(Duration::from_secs(10));
    let client = Client::connect(opts.clone()).await.expect("connects");
    client
        .queue_add("q", "TRUE", QueueOptions::default())
        .await
        .expect("queue added");
    // The disk fills up from here on.
    fs.limit_space(SPACE);

    // Publish in windows until the broker refuses; acks come in publish order, so once one
    // publication fails, none after it may be acked.
    let publisher = Client::connect(opts.clone()).await.expect("connects");
    let producer = publisher.producer("filler").await.expect("producer");
    let (mut acked, mut refused) = (0u64, None);
    let mut published = 0u64;
    while refused.is_none() && published < MAX_PUBLICATIONS {
        let mut acks = Vec::new();
        for _ in 0..WINDOW {
            let n = Notification::builder()
                .attr("seq", i32::try_from(published).expect("small"))
                .payload(vec![b'z'; PAYLOAD])
                .build()
                .expect("notification");
            match producer.send(n).await {
                Ok(ack) => acks.push(ack),
                Err(e) => {
                    refused.get_or_insert(e);
                    break;
                }
            }
            published += 1;
        }
        for ack in acks {
            match (ack.await, &refused) {
                (Ok(_), None) => acked += 1,
                (Ok(p), Some(e)) => panic!("publication {} acked after a refusal: {e}", p.seq()),
                (Err(e), _) => {
                    refused.get_or_insert(e);
                }
            }
        }
    }
    let refused = refused.expect("the broker refused a publication before the bound");
    assert_eq!(
        refused.code(),
        Some(ErrorCode::StoreUnavailable),
        "{refused}"
    );
    assert!(refused.to_string().contains("disk full"), "{refused}");
    assert!(acked > 100 && acked < published, "{published} {acked}");
    // Nothing is acked after the failure, also for a publication sent later.
    let late = Notification::builder()
        .attr("seq", -1)
        .build()
        .expect("notification");
    let late = producer
        .publish(late)
        .await
        .expect_err("a publication after the failure is refused");
    assert_eq!(late.code(), Some(ErrorCode::StoreUnavailable), "{late}");

    let (status, body) = admin_get(admin, "/healthz").await;
    assert_eq!(status, 503, "health reports the failed store: {body}");
    assert!(body.contains("disk full"), "{body}");
    let (_, metrics) = admin_get(admin, "/metrics").await;
    assert_eq!(metric(&metrics, "palio_store_poisoned"), Some(1.0));
    let (_, store) = admin_get(admin, "/store").await;
    let store: serde_json::Value = serde_json::from_str(&store).expect("/store is JSON");
    assert_eq!(store["disk_full"], true, "{store}");

    // Every acked message is there and readable (without acks: the store takes no writes).
    let window = u32::try_from(acked).expect("small");
    assert!(window <= palio::MAX_PUSH_WINDOW);
    let mut sub = client
        .consume("q", ConsumeMode::Push { window })
        .await
        .expect("consumer");
    let mut seqs = Vec::new();
    while (seqs.len() as u64) < acked {
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

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("the broker stops within 10 s")
        .expect("the broker task did not panic");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_limits_reach_the_client_as_errors_and_the_metrics() {
    let dir = tempfile::tempdir().expect("temp dir");
    let tls = dir.path().join("tls");
    let mut settings = settings(dir.path(), "small");
    settings.limits.max_queues = 1;
    settings.limits.queue_max_messages = 2;
    settings.limits.queue_discard = palio::Discard::New;
    let server = Server::bind(settings).await.expect("binds");
    let quic = server.local_addr().expect("QUIC address");
    let admin = server.admin_addr().expect("admin address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));

    let opts = ConnectOptions::new(quic.to_string())
        .tls_dir(&tls)
        .timeout(Duration::from_secs(10));
    let client = Client::connect(opts).await.expect("connects");
    client
        .queue_add("q", "TRUE", QueueOptions::default())
        .await
        .expect("queue added");
    let info = client.queue_info("q").await.expect("info");
    assert_eq!((info.max_messages, info.discard), (2, palio::Discard::New));
    assert_eq!(info.owner, palio_protocol::tls::DEV_CLIENT_NAME);
    let too_many = client
        .queue_add("r", "TRUE", QueueOptions::default())
        .await
        .expect_err("a second queue is over max_queues");
    assert_eq!(
        too_many.code(),
        Some(ErrorCode::LimitExceeded),
        "{too_many}"
    );
    assert!(too_many.to_string().contains("max_queues"), "{too_many}");

    let producer = client.producer("p").await.expect("producer");
    for seq in 0..2 {
        let n = Notification::builder()
            .attr("seq", seq)
            .build()
            .expect("notification");
        producer.publish(n).await.expect("room in the queue");
    }
    let n = Notification::builder()
        .attr("seq", 2)
        .build()
        .expect("notification");
    let full = producer
        .publish(n)
        .await
        .expect_err("the queue is full and keeps its messages");
    assert_eq!(full.code(), Some(ErrorCode::LimitExceeded), "{full}");
    assert_eq!(client.queue_info("q").await.expect("info").pending, 2);

    let (_, metrics) = admin_get(admin, "/metrics").await;
    for limit in ["max_queues", "max_messages"] {
        let name = format!("palio_limits_hit_total{{limit=\"{limit}\"}}");
        assert_eq!(metric(&metrics, &name), Some(1.0), "{name} in {metrics}");
    }

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("the broker stops within 10 s")
        .expect("the broker task did not panic");
}
