//! The broker's frame limit as the SDK applies it, against the scripted broker of `common/`:
//! frames longer than the welcome's `max_frame` are refused before sending, and frames from
//! the broker may exceed it by `FRAME_HEADROOM`, not more.

mod common;

use common::{LIMIT, Mock, attr, expect_producer, expect_publications, note};
use futures_util::SinkExt;
use palio::{ConsumeMode, Error, Notification};
use palio_protocol::{
    ClientFrame, DEFAULT_MAX_FRAME, DeliveryFrame, DurableMessage, FRAME_HEADROOM, FrameCodec,
    ServerFrame,
};
use tokio_util::codec::FramedWrite;

/// The frame limit the scripted broker announces.
const MAX: u32 = 4096;

fn large(seq: i32) -> Notification {
    Notification::builder()
        .attr("seq", seq)
        .payload(vec![b'x'; MAX as usize])
        .build()
        .expect("a valid notification")
}

#[tokio::test]
async fn frames_above_the_broker_limit_are_refused_before_sending() {
    let mock = Mock::start_with(MAX, |mut s| async move {
        // Only what fits arrives: the refused frames were never sent.
        match s.recv().await {
            ClientFrame::Publish { payload, .. } => assert_eq!(payload, b"small"),
            other => panic!("expected the small publication, got {other:?}"),
        }
        expect_producer(&mut s, "p", 0).await;
        // Sequence number 0: the refused publication did not use it.
        expect_publications(&mut s, 0..1).await;
        s.send(common::acked(0, &[(0, 0, 1)])).await;
        let ClientFrame::Flush { request } = s.recv().await else {
            panic!("expected the flush");
        };
        s.send(ServerFrame::Flushed {
            request,
            published: 2,
        })
        .await;
        s.until_closed().await;
    })
    .await;
    let client = mock.client().await;
    assert_eq!(client.broker().max_frame, MAX);

    let e = client.publish(large(0)).await.unwrap_err();
    let Error::FrameTooLarge { what, size, max } = &e else {
        panic!("expected frame_too_large, got {e}");
    };
    assert_eq!((*what, *max), ("publication", MAX as usize));
    assert!(*size > MAX as usize, "{size}");
    assert!(e.to_string().starts_with("frame_too_large: "), "{e}");
    // The connection is still usable.
    let small = Notification::builder().payload("small").build().unwrap();
    client.publish(small).await.unwrap();

    let producer = client.producer("p").await.unwrap();
    let e = producer.send(large(1)).await.unwrap_err();
    assert!(matches!(e, Error::FrameTooLarge { .. }), "{e}");
    assert_eq!((producer.next_seq(), producer.in_flight()), (0, 0));
    assert_eq!(producer.publish(note(1)).await.unwrap().seq(), 0);

    // Requests too: a filter longer than the limit.
    let filter = format!("x = '{}'", "y".repeat(MAX as usize));
    let e = client.subscribe(&filter).await.unwrap_err();
    assert!(
        matches!(
            e,
            Error::FrameTooLarge {
                what: "request",
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(client.flush().await.unwrap(), 2);
    client.close().await;
    mock.finish().await;
}

#[tokio::test]
async fn frames_from_the_broker_may_exceed_its_limit_by_the_headroom_not_more() {
    // Above the announced limit, within the headroom.
    let within = MAX as usize + FRAME_HEADROOM - 1024;
    let beyond = MAX as usize + FRAME_HEADROOM + 1;
    let mock = Mock::start_with(MAX, move |mut s| async move {
        let ClientFrame::Subscribe { request, .. } = s.recv().await else {
            panic!("expected a subscribe");
        };
        s.send(ServerFrame::Subscribed {
            request,
            subscription: 5,
        })
        .await;
        let uni = s.conn.open_uni().await.unwrap();
        let mut deliveries = FramedWrite::new(uni, FrameCodec::<()>::new(DEFAULT_MAX_FRAME));
        let delivery = |payload: Vec<u8>| DeliveryFrame {
            subscription: 5,
            attributes: [attr("seq", 0)].into_iter().collect(),
            payload,
        };
        deliveries.send(&delivery(vec![1; within])).await.unwrap();
        let ClientFrame::Consume { request, .. } = s.recv().await else {
            panic!("expected a consume");
        };
        s.send(ServerFrame::Consuming {
            request,
            consumer: 9,
        })
        .await;
        let message = |tag: u64, payload: Vec<u8>| {
            ServerFrame::Message(DurableMessage {
                consumer: 9,
                tag,
                delivery_count: 1,
                attributes: [attr("seq", 1)].into_iter().collect(),
                payload,
            })
        };
        s.send(message(1, vec![2; within])).await;
        // Past the headroom: each stream is refused from there on.
        deliveries.send(&delivery(vec![3; beyond])).await.unwrap();
        s.send(message(2, vec![4; beyond])).await;
        s.until_closed().await;
    })
    .await;
    let client = mock.client().await;
    let mut sub = client.subscribe("seq >= 0").await.unwrap();
    let n = tokio::time::timeout(LIMIT, sub.next())
        .await
        .unwrap()
        .expect("the delivery above max_frame");
    assert_eq!(n.payload().len(), within);
    let mut consumer = client
        .consume("q", ConsumeMode::Push { window: 2 })
        .await
        .unwrap();
    let m = tokio::time::timeout(LIMIT, consumer.next())
        .await
        .unwrap()
        .expect("the message above max_frame");
    assert_eq!((m.tag(), m.payload().len()), (1, within));
    // The frames past the headroom end both streams.
    assert!(
        tokio::time::timeout(LIMIT, sub.next())
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        tokio::time::timeout(LIMIT, consumer.next())
            .await
            .unwrap()
            .is_none()
    );
    drop(consumer);
    client.close().await;
    mock.finish().await;
}

#[cfg(feature = "cli")]
#[tokio::test]
async fn cli_pub_of_a_notification_above_the_limit_exits_1_and_sends_nothing() {
    use std::process::ExitCode;

    use futures_util::StreamExt;

    let payload = "x".repeat(MAX as usize);
    for persistent in [false, true] {
        let mock = Mock::start_with(MAX, move |mut s| async move {
            if persistent {
                let ClientFrame::Producer { request, .. } = s.recv().await else {
                    panic!("expected a producer frame");
                };
                s.send(ServerFrame::ProducerReady {
                    request,
                    next_seq: 0,
                })
                .await;
            }
            // Nothing else comes before the client closes.
            match tokio::time::timeout(LIMIT, s.rx.next()).await {
                Ok(Some(Ok(frame))) => panic!("sent anyway: {frame:?}"),
                Ok(_) => {}
                Err(_) => panic!("the client did not close"),
            }
        })
        .await;
        let mut args = vec!["pub", "--attr", "type=big", "--payload", &payload];
        if persistent {
            args.push("--persistent");
        }
        let (code, out, err) = mock.cli(&args).await;
        assert_eq!(code, ExitCode::from(1), "{err}");
        assert!(
            err.starts_with("palio: frame_too_large: the publication encodes to "),
            "{err}"
        );
        assert!(err.contains("limit of 4096 bytes"), "{err}");
        let expected = if persistent {
            "{\"published\":0,\"acked\":0,\"stored\":0}\n"
        } else {
            ""
        };
        assert_eq!(out, expected);
        mock.finish().await;
    }
}
