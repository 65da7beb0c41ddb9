//! Durable consumers and queue administration through the SDK and the CLI, against the
//! scripted broker of `common/`: message routing by consumer, acks and naks, fetches, the
//! detach on drop, and the output of `palio sub --durable` and `palio queue`.

mod common;

#[cfg(feature = "cli")]
use std::process::ExitCode;
use std::time::Duration;

use common::{Mock, Session, message};
use palio::filter::Value;
use palio::{ConsumeMode, Error, ErrorCode, QueueOptions};
use palio_protocol::{ClientFrame, PeekedMessage, QueueInfo, ServerFrame};

async fn expect_consume(s: &mut Session, queue: &str, mode: ConsumeMode, consumer: u64) {
    let ClientFrame::Consume {
        request,
        queue: q,
        mode: m,
    } = s.recv().await
    else {
        panic!("expected a consume frame");
    };
    assert_eq!((q.as_str(), m), (queue, mode));
    s.send(ServerFrame::Consuming { request, consumer }).await;
}

/// Reads an ack of `tags` by `consumer` and answers it.
async fn expect_ack(s: &mut Session, consumer: u64, tags: &[u64]) {
    let ClientFrame::Ack {
        request,
        consumer: c,
        tags: t,
    } = s.recv().await
    else {
        panic!("expected an ack of {tags:?}");
    };
    assert_eq!((c, t.as_slice()), (consumer, tags));
    s.send(ServerFrame::Done { request }).await;
}

fn info(name: &str, pending: u64) -> QueueInfo {
    QueueInfo {
        name: name.into(),
        filter: "seq >= 0".into(),
        pending,
        unacked: 1,
        dead_lettered: 2,
        consumers: 0,
        ack_wait_ms: 30_000,
        max_deliveries: 5,
        owner: "alice".into(),
        bytes: 100,
        max_messages: 1000,
        max_bytes: 1 << 20,
        max_age_ms: 0,
        discard: palio::Discard::New,
    }
}

#[tokio::test]
async fn push_messages_reach_their_consumer_and_are_acked_and_naked() {
    let mock = Mock::start(|mut s| async move {
        expect_consume(&mut s, "orders", ConsumeMode::Push { window: 4 }, 7).await;
        // A message for a consumer the client does not know is dropped.
        s.send(message(99, 1, 1, 0)).await;
        s.send(message(7, 5, 1, 50)).await;
        s.send(message(7, 6, 2, 60)).await;
        expect_ack(&mut s, 7, &[5]).await;
        let ClientFrame::Nak {
            request,
            consumer,
            tags,
            delay_ms,
        } = s.recv().await
        else {
            panic!("expected a nak");
        };
        assert_eq!((consumer, tags, delay_ms), (7, vec![6], 2_500));
        s.send(ServerFrame::Done { request }).await;
        let ClientFrame::Ack { request, tags, .. } = s.recv().await else {
            panic!("expected an ack");
        };
        assert_eq!(tags, [5, 6]);
        s.send(ServerFrame::Error {
            request: Some(request),
            code: ErrorCode::QueueNotFound,
            message: "no consumer 7".into(),
        })
        .await;
        // Dropping the subscription detaches the consumer.
        let ClientFrame::StopConsume { consumer, .. } = s.recv().await else {
            panic!("expected a stop");
        };
        assert_eq!(consumer, 7);
        // A message still on its way for it is dropped by the client.
        s.send(message(7, 8, 1, 80)).await;
        let ClientFrame::QueueList { request } = s.recv().await else {
            panic!("expected a queue list");
        };
        s.send(ServerFrame::Queues {
            request,
            queues: vec![],
            more: false,
        })
        .await;
        s.until_closed().await;
    })
    .await;
    let client = mock.client().await;
    let mut sub = client
        .consume("orders", ConsumeMode::Push { window: 4 })
        .await
        .unwrap();
    assert_eq!((sub.id(), sub.queue()), (7, "orders"));
    let first = sub.next().await.unwrap();
    assert_eq!(
        (first.tag(), first.delivery_count(), first.queue()),
        (5, 1, "orders")
    );
    assert_eq!(first.get("seq"), Some(&Value::Int(50)));
    assert_eq!(first.payload(), b"p");
    let second = sub.next().await.unwrap();
    assert_eq!((second.tag(), second.delivery_count()), (6, 2));
    first.ack().await.unwrap();
    second.nak(Duration::from_millis(2_500)).await.unwrap();
    let e = sub.ack_many(&[5, 6]).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::QueueNotFound), "{e}");
    drop(sub);
    // A request after the drop: the detach went out before it (frames are sent in order).
    assert!(client.queue_list().await.unwrap().is_empty());
    // Pull mode is asked for with `pull`, not `consume`; nothing is sent.
    let e = client
        .consume("orders", ConsumeMode::Pull)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidRequest(_)), "{e}");
    client.close().await;
    mock.finish().await;
}

#[tokio::test]
async fn a_fetch_returns_the_messages_that_precede_its_answer() {
    let mock = Mock::start(|mut s| async move {
        expect_consume(&mut s, "jobs", ConsumeMode::Pull, 3).await;
        for (count, tags) in [(2u32, vec![10u64, 11]), (0, vec![])] {
            let ClientFrame::Fetch {
                request,
                consumer,
                batch,
                max_wait_ms,
            } = s.recv().await
            else {
                panic!("expected a fetch");
            };
            assert_eq!((consumer, batch, max_wait_ms), (3, 10, 1_500));
            for &t in &tags {
                s.send(message(3, t, 1, t as i32)).await;
            }
            s.send(ServerFrame::Fetched { request, count }).await;
        }
        expect_ack(&mut s, 3, &[10, 11]).await;
        let ClientFrame::StopConsume { request, consumer } = s.recv().await else {
            panic!("expected a stop");
        };
        assert_eq!(consumer, 3);
        s.send(ServerFrame::Done { request }).await;
        s.until_closed().await;
    })
    .await;
    let client = mock.client().await;
    let mut jobs = client.pull("jobs").await.unwrap();
    let batch = jobs.fetch(10, Duration::from_millis(1_500)).await.unwrap();
    let tags: Vec<u64> = batch.iter().map(|m| m.tag()).collect();
    assert_eq!(tags, [10, 11]);
    assert!(
        jobs.fetch(10, Duration::from_millis(1_500))
            .await
            .unwrap()
            .is_empty()
    );
    jobs.ack_many(&tags).await.unwrap();
    jobs.stop().await.unwrap();
    client.close().await;
    mock.finish().await;
}

#[tokio::test]
async fn a_queue_listing_in_several_frames_is_put_back_together_in_order() {
    let mock = Mock::start(|mut s| async move {
        // A listing and a flush under way together.
        let (mut list, mut flush) = (None, None);
        for _ in 0..2 {
            match s.recv().await {
                ClientFrame::QueueList { request } => list = Some(request),
                ClientFrame::Flush { request } => flush = Some(request),
                other => panic!("expected a queue list and a flush, got {other:?}"),
            }
        }
        let (list, flush) = (list.unwrap(), flush.unwrap());
        let chunk = |names: &[&str], more: bool| ServerFrame::Queues {
            request: list,
            queues: names.iter().map(|n| info(n, 1)).collect(),
            more,
        };
        s.send(chunk(&["a", "a.dlq"], true)).await;
        // Another answer between two frames of the listing does not end it.
        s.send(ServerFrame::Flushed {
            request: flush,
            published: 0,
        })
        .await;
        s.send(chunk(&[], true)).await;
        s.send(chunk(&["b", "b.dlq", "c"], true)).await;
        s.send(chunk(&["c.dlq"], false)).await;
        // A single-frame answer after it stands alone.
        let ClientFrame::QueueList { request } = s.recv().await else {
            panic!("expected a second queue list");
        };
        s.send(ServerFrame::Queues {
            request,
            queues: vec![info("d", 1)],
            more: false,
        })
        .await;
        s.until_closed().await;
    })
    .await;
    let client = mock.client().await;
    let names = |qs: Vec<QueueInfo>| qs.into_iter().map(|q| q.name).collect::<Vec<_>>();
    let (listed, flushed) = tokio::join!(client.queue_list(), client.flush());
    assert_eq!(flushed.unwrap(), 0);
    assert_eq!(
        names(listed.unwrap()),
        ["a", "a.dlq", "b", "b.dlq", "c", "c.dlq"]
    );
    assert_eq!(names(client.queue_list().await.unwrap()), ["d"]);
    client.close().await;
    mock.finish().await;
}

#[tokio::test]
async fn queue_requests_carry_their_arguments_and_map_refusals() {
    let mock = Mock::start(|mut s| async move {
        let ClientFrame::QueueAdd {
            request,
            name,
            filter,
            options,
        } = s.recv().await
        else {
            panic!("expected a queue add");
        };
        assert_eq!((name.as_str(), filter.as_str()), ("orders", "seq >= 0"));
        assert_eq!(options.ack_wait_ms, Some(1_500));
        assert_eq!(options.max_deliveries, Some(3));
        s.send(ServerFrame::Done { request }).await;
        let ClientFrame::QueueList { request } = s.recv().await else {
            panic!("expected a queue list");
        };
        let queues = vec![info("orders", 4), info("orders.dlq", 0)];
        s.send(ServerFrame::Queues {
            request,
            queues,
            more: false,
        })
        .await;
        let ClientFrame::QueueInfo { request, name } = s.recv().await else {
            panic!("expected a queue info");
        };
        assert_eq!(name, "nope");
        s.send(ServerFrame::Error {
            request: Some(request),
            code: ErrorCode::QueueNotFound,
            message: "no queue nope".into(),
        })
        .await;
        let ClientFrame::QueueRemove { request, name } = s.recv().await else {
            panic!("expected a queue remove");
        };
        assert_eq!(name, "orders");
        s.send(ServerFrame::Done { request }).await;
        s.until_closed().await;
    })
    .await;
    let client = mock.client().await;
    let options = QueueOptions {
        ack_wait_ms: Some(1_500),
        max_deliveries: Some(3),
        ..QueueOptions::default()
    };
    client
        .queue_add("orders", "seq >= 0", options)
        .await
        .unwrap();
    let names: Vec<String> = client
        .queue_list()
        .await
        .unwrap()
        .into_iter()
        .map(|q| q.name)
        .collect();
    assert_eq!(names, ["orders", "orders.dlq"]);
    let e = client.queue_info("nope").await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::QueueNotFound), "{e}");
    client.queue_remove("orders").await.unwrap();
    client.close().await;
    mock.finish().await;
}

#[cfg(feature = "cli")]
#[tokio::test]
async fn cli_durable_sub_prints_each_message_with_its_delivery_then_acks_it() {
    let mock = Mock::start(|mut s| async move {
        // The window is no larger than --count: nothing is delivered only to be dropped.
        expect_consume(&mut s, "orders", ConsumeMode::Push { window: 2 }, 4).await;
        s.send(message(4, 20, 1, 0)).await;
        s.send(message(4, 21, 3, 1)).await;
        let mut acked = Vec::new();
        for _ in 0..2 {
            let ClientFrame::Ack {
                request,
                consumer,
                tags,
            } = s.recv().await
            else {
                panic!("expected an ack");
            };
            assert_eq!(consumer, 4);
            acked.extend(tags);
            s.send(ServerFrame::Done { request }).await;
        }
        acked.sort_unstable();
        assert_eq!(acked, [20, 21]);
        s.until_closed().await;
    })
    .await;
    let (code, out, err) = mock
        .cli(&["sub", "--durable", "orders", "--count", "2"])
        .await;
    assert_eq!(code, ExitCode::SUCCESS, "{err}");
    assert_eq!(
        out,
        "{\"attributes\":{\"seq\":0},\"payload\":\"p\",\"delivery_count\":1,\"queue\":\"orders\",\"tag\":20}\n\
         {\"attributes\":{\"seq\":1},\"payload\":\"p\",\"delivery_count\":3,\"queue\":\"orders\",\"tag\":21}\n"
    );
    mock.finish().await;
}

#[cfg(feature = "cli")]
#[tokio::test]
async fn cli_durable_pull_fetches_no_more_than_it_prints() {
    let mock = Mock::start(|mut s| async move {
        expect_consume(&mut s, "jobs", ConsumeMode::Pull, 8).await;
        let mut tag = 0;
        // --count 3 --batch 2: a fetch of 2, then a fetch of the 1 left.
        for want in [2u32, 1] {
            let ClientFrame::Fetch { request, batch, .. } = s.recv().await else {
                panic!("expected a fetch");
            };
            assert_eq!(batch, want);
            let tags: Vec<u64> = (tag..tag + u64::from(want)).collect();
            for &t in &tags {
                s.send(message(8, t, 1, t as i32)).await;
            }
            s.send(ServerFrame::Fetched {
                request,
                count: want,
            })
            .await;
            expect_ack(&mut s, 8, &tags).await;
            tag += u64::from(want);
        }
        s.until_closed().await;
    })
    .await;
    let args = [
        "sub",
        "--durable",
        "jobs",
        "--pull",
        "--batch",
        "2",
        "--count",
        "3",
    ];
    let (code, out, err) = mock.cli(&args).await;
    assert_eq!(code, ExitCode::SUCCESS, "{err}");
    let seqs: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["attributes"]["seq"].clone())
        .collect();
    assert_eq!(seqs, [0, 1, 2]);
    mock.finish().await;
}

#[cfg(feature = "cli")]
#[tokio::test]
async fn cli_queue_commands_print_json_and_explain_a_missing_queue() {
    let mock = Mock::start(|mut s| async move {
        let ClientFrame::QueueInfo { request, name } = s.recv().await else {
            panic!("expected a queue info");
        };
        assert_eq!(name, "nope");
        s.send(ServerFrame::Error {
            request: Some(request),
            code: ErrorCode::QueueNotFound,
            message: "no queue nope".into(),
        })
        .await;
        s.until_closed().await;
    })
    .await;
    let (code, out, err) = mock.cli(&["queue", "info", "nope"]).await;
    assert_eq!(code, ExitCode::from(1));
    assert_eq!(out, "");
    // Said once: the CLI's sentence and the code, not the broker's message after it.
    assert_eq!(err, "palio: no queue named \"nope\" (queue_not_found)\n");
    mock.finish().await;

    let mock = Mock::start(|mut s| async move {
        let ClientFrame::QueueList { request } = s.recv().await else {
            panic!("expected a queue list");
        };
        // In two frames: `ls` prints one array all the same.
        s.send(ServerFrame::Queues {
            request,
            queues: vec![info("orders", 4)],
            more: true,
        })
        .await;
        s.send(ServerFrame::Queues {
            request,
            queues: vec![info("orders.dlq", 0)],
            more: false,
        })
        .await;
        s.until_closed().await;
    })
    .await;
    let (code, out, err) = mock.cli(&["queue", "ls"]).await;
    assert_eq!(code, ExitCode::SUCCESS, "{err}");
    let ls: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        ls,
        serde_json::json!([{
            "name": "orders", "filter": "seq >= 0", "pending": 4, "unacked": 1,
            "dead_lettered": 2, "consumers": 0, "ack_wait_ms": 30000, "max_deliveries": 5,
            "owner": "alice", "bytes": 100, "max_messages": 1000, "max_bytes": 1048576,
            "max_age_ms": 0, "discard": "new"
        }, {
            "name": "orders.dlq", "filter": "seq >= 0", "pending": 0, "unacked": 1,
            "dead_lettered": 2, "consumers": 0, "ack_wait_ms": 30000, "max_deliveries": 5,
            "owner": "alice", "bytes": 100, "max_messages": 1000, "max_bytes": 1048576,
            "max_age_ms": 0, "discard": "new"
        }])
    );
    assert_eq!(out.lines().count(), 1);
    mock.finish().await;
}

#[tokio::test]
async fn purge_and_peek_carry_their_arguments_and_read_their_answers() {
    let mock = Mock::start(|mut s| async move {
        let ClientFrame::QueuePurge { request, name } = s.recv().await else {
            panic!("expected a purge");
        };
        assert_eq!(name, "orders.dlq");
        s.send(ServerFrame::Purged {
            request,
            messages: 12,
        })
        .await;
        let ClientFrame::QueuePeek { request, name, max } = s.recv().await else {
            panic!("expected a peek");
        };
        assert_eq!((name.as_str(), max), ("orders", 2));
        s.send(ServerFrame::Peeked {
            request,
            messages: vec![PeekedMessage {
                delivery_count: 3,
                attributes: [common::attr("seq", 9)].into_iter().collect(),
                payload: b"p".to_vec(),
            }],
        })
        .await;
        let ClientFrame::QueuePeek { request, .. } = s.recv().await else {
            panic!("expected a peek");
        };
        s.send(ServerFrame::Error {
            request: Some(request),
            code: ErrorCode::PermissionDenied,
            message: "not yours".into(),
        })
        .await;
        s.until_closed().await;
    })
    .await;
    let client = mock.client().await;
    assert_eq!(client.queue_purge("orders.dlq").await.unwrap(), 12);
    let shown = client.queue_peek("orders", 2).await.unwrap();
    assert_eq!(shown.len(), 1);
    assert_eq!(
        (
            shown[0].get("seq"),
            shown[0].delivery_count(),
            shown[0].queue()
        ),
        (Some(&Value::Int(9)), 3, "orders")
    );
    let e = client.queue_peek("orders", 2).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::PermissionDenied));
    client.close().await;
    mock.finish().await;
}

#[cfg(feature = "cli")]
#[tokio::test]
async fn cli_queue_purge_and_peek_print_json() {
    let mock = Mock::start(|mut s| async move {
        let ClientFrame::QueuePurge { request, .. } = s.recv().await else {
            panic!("expected a purge");
        };
        s.send(ServerFrame::Purged {
            request,
            messages: 4,
        })
        .await;
        s.until_closed().await;
    })
    .await;
    let (code, out, err) = mock.cli(&["queue", "purge", "orders"]).await;
    assert_eq!(code, ExitCode::SUCCESS, "{err}");
    assert_eq!(out, "{\"purged\":\"orders\",\"messages\":4}\n");
    mock.finish().await;

    let mock = Mock::start(|mut s| async move {
        let ClientFrame::QueuePeek { request, max, .. } = s.recv().await else {
            panic!("expected a peek");
        };
        assert_eq!(max, 2);
        let m = |seq| PeekedMessage {
            delivery_count: 0,
            attributes: [common::attr("seq", seq)].into_iter().collect(),
            payload: b"p".to_vec(),
        };
        s.send(ServerFrame::Peeked {
            request,
            messages: vec![m(0), m(1)],
        })
        .await;
        s.until_closed().await;
    })
    .await;
    let (code, out, err) = mock.cli(&["queue", "peek", "orders", "--count", "2"]).await;
    assert_eq!(code, ExitCode::SUCCESS, "{err}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines,
        [0, 1]
            .map(|seq| serde_json::json!({
                "attributes": {"seq": seq}, "payload": "p", "delivery_count": 0, "queue": "orders"
            }))
            .to_vec()
    );
    mock.finish().await;
}
