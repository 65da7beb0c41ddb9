//! Persistent publish through the SDK and `palio pub --persistent`, against the scripted
//! broker of `common/`: acks in publish order, refusals, the in-flight bound, a lost
//! connection.

mod common;

use common::{Mock, acked, expect_producer, expect_publications, note};
use palio::{Client, Error, ErrorCode};
use palio_protocol::ServerFrame;
// For the command line's tests.
#[cfg(feature = "cli")]
use {common::attr, palio_protocol::ClientFrame, std::process::ExitCode};

#[tokio::test]
async fn publications_settle_in_publish_order_with_refusals_and_cumulative_acks() {
    let mock = Mock::start(|mut s| async move {
        expect_producer(&mut s, "p1", 10).await;
        expect_publications(&mut s, 10..16).await;
        // The refusal of 12 comes before the ack of 10 and 11, and the ack through 13
        // covers it: it must still settle third, and as a failure.
        s.send(ServerFrame::PublishFailed {
            seq: 12,
            code: ErrorCode::StoreUnavailable,
            message: "disk full".into(),
        })
        .await;
        // With how many queues each matched (12, refused, in none of the runs).
        s.send(acked(13, &[(10, 11, 1), (13, 13, 2)])).await;
        s.send(acked(15, &[(14, 15, 0)])).await;
        s.until_closed().await;
    })
    .await;
    let client = mock.client().await;
    let producer = client.producer("p1").await.unwrap();
    assert_eq!(producer.next_seq(), 10);
    let mut acks = Vec::new();
    for i in 0..6 {
        acks.push(producer.send(note(i)).await.unwrap());
    }
    assert_eq!(producer.next_seq(), 16);
    let mut outcomes = Vec::new();
    for ack in acks {
        let seq = ack.seq();
        let outcome = ack.await.map(|p| (p.seq(), p.queues(), p.stored()));
        outcomes.push((seq, outcome.map_err(|e| e.code())));
    }
    assert_eq!(
        outcomes,
        [
            (10, Ok((10, 1, true))),
            (11, Ok((11, 1, true))),
            (12, Err(Some(ErrorCode::StoreUnavailable))),
            (13, Ok((13, 2, true))),
            (14, Ok((14, 0, false))),
            (15, Ok((15, 0, false))),
        ]
    );
    assert_eq!(producer.in_flight(), 0);
    // Sequence numbers only increase, and a connection has one producer.
    let e = producer.send_with_seq(15, note(0)).await.unwrap_err();
    assert!(matches!(e, Error::InvalidRequest(_)), "{e}");
    let e = client.producer("p2").await.unwrap_err();
    assert!(matches!(e, Error::InvalidRequest(_)), "{e}");
    client.close().await;
    mock.finish().await;
}

/// With reconnecting off, the end of the connection (here a clean shutdown, which a client that
/// reconnects would ride through) fails every publication not yet acked.
#[tokio::test]
async fn the_end_of_the_connection_fails_every_unsettled_publication() {
    let (acked_seen, wait_acked) = tokio::sync::oneshot::channel::<()>();
    let mock = Mock::start(|mut s| async move {
        expect_producer(&mut s, "p", 0).await;
        expect_publications(&mut s, 0..5).await;
        s.send(acked(1, &[(0, 1, 1)])).await;
        // Close only once the client has seen the ack, so that it is not lost with the
        // connection.
        let _ = wait_acked.await;
        s.conn
            .close(ErrorCode::ShuttingDown.code().into(), b"going away");
    })
    .await;
    let client = Client::connect(mock.options().no_reconnect())
        .await
        .unwrap();
    let producer = client
        .producer_with("p", palio::ProducerOptions::new().max_in_flight(5))
        .await
        .unwrap();
    let mut acks = Vec::new();
    for i in 0..5 {
        acks.push(producer.send(note(i)).await.unwrap());
    }
    let mut acks = acks.into_iter();
    for expected in 0..2 {
        let ack = acks.next().unwrap();
        assert_eq!(ack.await.unwrap().seq(), expected);
    }
    acked_seen.send(()).unwrap();
    for ack in acks {
        let e = ack.await.unwrap_err();
        assert!(matches!(e, Error::Closed { .. }), "{e}");
        assert_eq!(e.code(), Some(ErrorCode::ShuttingDown), "{e}");
    }
    let e = producer.send(note(9)).await.unwrap_err();
    assert!(matches!(e, Error::Closed { .. }), "{e}");
    mock.finish().await;
}

#[tokio::test]
async fn the_in_flight_bound_holds_sends_until_acks_come() {
    let mock = Mock::start(|mut s| async move {
        expect_producer(&mut s, "p", 0).await;
        for through in 0..6 {
            expect_publications(&mut s, through..through + 1).await;
            s.send(acked(through, &[(through, through, 1)])).await;
        }
        s.until_closed().await;
    })
    .await;
    let client = mock.client().await;
    let producer = client
        .producer_with("p", palio::ProducerOptions::new().max_in_flight(1))
        .await
        .unwrap();
    // The broker acks each publication only after reading it, and the next is sent only
    // after that ack: with a bound of 1, the sends still all complete, one by one.
    let mut acks = Vec::new();
    for i in 0..6 {
        acks.push(producer.send(note(i)).await.unwrap());
        assert!(producer.in_flight() <= 1);
    }
    for (i, ack) in acks.into_iter().enumerate() {
        assert_eq!(ack.await.unwrap().seq(), i as u64);
    }
    client.close().await;
    mock.finish().await;
}

#[cfg(feature = "cli")]
#[tokio::test]
async fn cli_persistent_pub_reports_acks_when_the_connection_ends_midway() {
    let mock = Mock::start(|mut s| async move {
        let ClientFrame::Producer { request, producer } = s.recv().await else {
            panic!("expected a producer frame");
        };
        assert!(producer.starts_with("palio-pub-"), "{producer}");
        s.send(ServerFrame::ProducerReady {
            request,
            next_seq: 0,
        })
        .await;
        expect_publications(&mut s, 0..10).await;
        s.send(acked(4, &[(0, 4, 1)])).await;
        // End the control stream after the ack: the client reads the ack, then the end.
        s.tx.get_mut().finish().unwrap();
        s.until_closed().await;
    })
    .await;
    let (code, out, err) = mock.cli(&["pub", "--persistent", "--count", "10"]).await;
    assert_eq!(code, ExitCode::from(1), "{err}");
    assert_eq!(out, "{\"published\":10,\"acked\":5,\"stored\":5}\n");
    assert!(err.starts_with("palio: "), "{err}");
    mock.finish().await;
}

#[cfg(feature = "cli")]
#[tokio::test]
async fn cli_persistent_pub_uses_seq_as_the_sequence_number() {
    let mock = Mock::start(|mut s| async move {
        // A producer resuming: the broker has 0..3 already; the CLI still sends 0..5, and
        // the broker acks the repeats without storing them.
        expect_producer(&mut s, "resumed", 3).await;
        for seq in 0..5u64 {
            let ClientFrame::PublishPersistent {
                seq: got,
                attributes,
                ..
            } = s.recv().await
            else {
                panic!("expected a publication");
            };
            assert_eq!(got, seq);
            assert!(
                attributes.get("seq") == Some(&attr("seq", seq as i32).1),
                "{attributes:?}"
            );
        }
        // 3 and 4 matched no queue (the repeats are told what they were the first time).
        s.send(acked(4, &[(0, 2, 1), (3, 4, 0)])).await;
        s.until_closed().await;
    })
    .await;
    let args = [
        "pub",
        "--persistent",
        "--producer",
        "resumed",
        "--count",
        "5",
    ];
    let (code, out, err) = mock.cli(&args).await;
    // Acked all the same: the exit status is 0, and a warning says what no queue keeps.
    assert_eq!(code, ExitCode::SUCCESS, "{err}");
    assert_eq!(out, "{\"published\":5,\"acked\":5,\"stored\":3}\n");
    assert_eq!(
        err,
        "palio: 2 publications matched no queue; nothing stored them (palio queue ls)\n"
    );
    mock.finish().await;
}
