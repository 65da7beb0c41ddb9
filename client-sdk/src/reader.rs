//! The connection's two readers: where every frame from the broker goes.
//!
//! - The **control reader** reads the control stream in order. Answers go to the request that
//!   waits for them (matched by request id; a queue listing split over several frames is
//!   gathered until its last frame); a confirmation that opens a route (a subscription, a
//!   durable consumer) installs the route *before* the next frame is read. Persistent-publish
//!   acks settle the producer's publications; durable queue messages go to their consumer's
//!   bounded queue. This reader never waits on an application: a consumer whose queue is full
//!   loses the message here (the broker delivers it again after the queue's ack wait), because
//!   blocking would also hold up the answers that application may be waiting for.
//! - The **delivery reader** reads the broker's delivery stream of best-effort notifications
//!   and waits when a subscription's queue is full: that is the backpressure of best-effort
//!   delivery (see the client module).
//!
//! Both serve one connection and end with it; the link supervisor (`link.rs`) then decides
//! what becomes of the requests, routes and publications (restored on a new connection, or
//! failed with the client's ending). The control reader returns why it stopped when the
//! broker said so on the stream or sent a frame that does not decode (reasons not to
//! reconnect); a lost connection speaks for itself.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::{FutureExt, StreamExt};
use palio_protocol::{
    DeliveryFrame, DurableMessage, FRAME_HEADROOM, FrameCodec, QueueInfo, ServerFrame,
};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::oneshot;
use tokio_util::codec::FramedRead;

use crate::client::{DELIVERY_BATCH, Register, SUBSCRIPTION_BUFFER, Shared};
use crate::consumer::{ConsumerTx, stop_detached};
use crate::error::Error;
use crate::group::{GroupDelivery, GroupEvent};
use crate::notification::Notification;
use crate::subscription::SubscriptionTx;

/// Deliveries kept for subscriptions whose confirmation has not arrived yet (the delivery and
/// control streams are not ordered with respect to each other).
const EARLY_BUFFER: usize = SUBSCRIPTION_BUFFER;

pub(crate) async fn read_control(
    shared: Arc<Shared>,
    conn: quinn::Connection,
    mut reader: FramedRead<quinn::RecvStream, FrameCodec<ServerFrame>>,
) -> Option<Error> {
    let mut reason = None;
    // Queue listings split over several frames (`more`), gathered by request until the last
    // frame answers the request with all of them.
    let mut listings: HashMap<u64, Vec<QueueInfo>> = HashMap::new();
    while let Some(next) = reader.next().await {
        let frame = match next {
            Ok(f) => f,
            Err(e) => {
                if conn.close_reason().is_some() {
                    // The connection went first: its reason is the one to report.
                    break;
                }
                // A frame that does not decode: the connection cannot be trusted any more.
                tracing::warn!(error = %e, "bad frame from the broker: closing");
                let message = format!("bad frame from the broker: {e}");
                conn.close(
                    palio_protocol::ErrorCode::MalformedFrame.code().into(),
                    message.as_bytes(),
                );
                reason = Some(Error::Protocol(message));
                break;
            }
        };
        let frame = match frame {
            ServerFrame::Queues {
                request,
                queues,
                more: true,
            } => {
                // Kept only while someone waits for the answer.
                if shared
                    .pending
                    .lock()
                    .is_ok_and(|p| p.contains_key(&request))
                {
                    listings.entry(request).or_default().extend(queues);
                }
                continue;
            }
            ServerFrame::Queues {
                request,
                queues,
                more: false,
            } => {
                let queues = match listings.remove(&request) {
                    Some(mut earlier) => {
                        earlier.extend(queues);
                        earlier
                    }
                    None => queues,
                };
                ServerFrame::Queues {
                    request,
                    queues,
                    more: false,
                }
            }
            ServerFrame::Message(m) => {
                route_message(&shared, m);
                continue;
            }
            ServerFrame::PublishAcked { through, matched } => {
                if let Some(p) = shared.producer() {
                    p.acked(through, &matched);
                }
                continue;
            }
            ServerFrame::PublishFailed { seq, code, message } => {
                if let Some(p) = shared.producer() {
                    p.failed(seq, code, message);
                }
                continue;
            }
            ServerFrame::PublishRefused {
                count,
                code,
                message,
            } => {
                if let Ok(mut r) = shared.refused.lock() {
                    let before = r.as_ref().map_or(0, |(n, _, _)| *n);
                    *r = Some((before.saturating_add(count), code, message));
                }
                continue;
            }
            ServerFrame::GroupMessage(m) => {
                let event = GroupEvent::Message(GroupDelivery {
                    group: m.group,
                    epoch: m.epoch,
                    seq: m.seq,
                    clock: m.clock,
                    notification: Notification::new(m.attributes, m.payload),
                });
                route_group_event(&shared, m.member, event).await;
                continue;
            }
            ServerFrame::Request {
                subscription,
                reply_to,
                attributes,
                payload,
            } => {
                route_request(
                    &shared,
                    subscription,
                    Notification::request(attributes, payload, reply_to),
                );
                continue;
            }
            ServerFrame::GroupGap(g) => {
                route_group_event(&shared, g.member, GroupEvent::Gap { count: g.count }).await;
                continue;
            }
            ServerFrame::GroupAcked { group, through } => {
                shared.group_ack(&group, Some(through), None);
                continue;
            }
            ServerFrame::GroupPublishFailed {
                group,
                seq,
                code,
                message,
            } => {
                shared.group_ack(&group, None, Some((seq, code, message)));
                continue;
            }
            ServerFrame::Error {
                request: None,
                code,
                message,
            } => {
                reason = Some(Error::Closed {
                    code: Some(code),
                    message,
                });
                break;
            }
            other => other,
        };
        let request = match &frame {
            ServerFrame::Subscribed { request, .. }
            | ServerFrame::Advertised { request, .. }
            | ServerFrame::Done { request }
            | ServerFrame::Flushed { request, .. }
            | ServerFrame::ProducerReady { request, .. }
            | ServerFrame::Queues { request, .. }
            | ServerFrame::Consuming { request, .. }
            | ServerFrame::Fetched { request, .. }
            | ServerFrame::Purged { request, .. }
            | ServerFrame::Peeked { request, .. }
            | ServerFrame::Groups { request, .. }
            | ServerFrame::Joined { request, .. }
            | ServerFrame::Replied { request, .. }
            | ServerFrame::ServerInfo { request, .. }
            | ServerFrame::Pong { request }
            | ServerFrame::Routes { request, .. }
            | ServerFrame::Error {
                request: Some(request),
                ..
            } => *request,
            _ => continue,
        };
        let Some(p) = shared
            .pending
            .lock()
            .ok()
            .and_then(|mut p| p.remove(&request))
        else {
            continue;
        };
        match p.register {
            Some(Register::Subscription(tx)) => register_subscription(&shared, &frame, tx),
            Some(Register::Consumer(tx, id)) => {
                register_consumer(&shared, &frame, tx, &id, &p.reply)
            }
            Some(Register::Member(tx)) => {
                if let ServerFrame::Joined { member, .. } = &frame
                    && let Ok(mut g) = shared.groups.lock()
                {
                    g.members.insert(*member, tx);
                }
            }
            None => {}
        }
        let _ = p.reply.send(frame);
    }
    reason
}

/// Installs a confirmed subscription's queue, with the deliveries that overtook the
/// confirmation.
fn register_subscription(shared: &Shared, frame: &ServerFrame, tx: SubscriptionTx) {
    let Ok(mut r) = shared.routes.lock() else {
        return;
    };
    r.pending_subscribes = r.pending_subscribes.saturating_sub(1);
    if let ServerFrame::Subscribed { subscription, .. } = frame {
        tx.set_id(*subscription);
        // Hand over deliveries that overtook the confirmation, as one batch; the queue is new
        // and holds at least one batch, so `try_send` cannot fail for lack of room.
        let early = std::mem::take(&mut r.early);
        let mut mine = Vec::new();
        for (id, n) in early {
            if id == *subscription {
                mine.push(n);
            } else {
                r.early.push((id, n));
            }
        }
        if !mine.is_empty() {
            let _ = tx.try_send(mine);
        }
        r.subs.insert(*subscription, tx);
    }
    if r.pending_subscribes == 0 {
        r.early.clear();
    }
}

/// Installs a confirmed consumer's queue, or detaches the consumer at once if nobody waits
/// for it any more (the consume call was cancelled or timed out): otherwise the broker would
/// keep delivering to a consumer whose messages nobody reads.
fn register_consumer(
    shared: &Shared,
    frame: &ServerFrame,
    tx: ConsumerTx,
    id: &AtomicU64,
    reply: &oneshot::Sender<ServerFrame>,
) {
    let ServerFrame::Consuming { consumer, .. } = frame else {
        return;
    };
    id.store(*consumer, Ordering::Relaxed);
    if reply.is_closed() {
        stop_detached(shared, *consumer);
    } else if let Ok(mut c) = shared.consumers.lock() {
        c.insert(*consumer, tx);
    }
}

/// Hands a request to its subscription's queue without waiting (see the module docs): a
/// responder whose queue is full loses it, and the requester times out or gets another reply.
fn route_request(shared: &Shared, subscription: u64, request: Notification) {
    let tx = match shared.routes.lock() {
        Ok(r) => r.subs.get(&subscription).cloned(),
        Err(_) => None,
    };
    match tx {
        Some(tx) => {
            if !tx.try_send(vec![request]) {
                tracing::debug!(subscription, "subscription queue full: request dropped");
            }
        }
        None => tracing::trace!(subscription, "request for an unknown subscription dropped"),
    }
}

/// Hands a durable message to its consumer's queue without waiting (see the module docs).
fn route_message(shared: &Shared, m: DurableMessage) {
    let Ok(consumers) = shared.consumers.lock() else {
        return;
    };
    let Some(tx) = consumers.get(&m.consumer) else {
        tracing::trace!(
            consumer = m.consumer,
            tag = m.tag,
            "message for an unknown consumer dropped"
        );
        return;
    };
    match tx.try_send(m) {
        Ok(()) => {}
        Err(TrySendError::Full(m)) => tracing::debug!(
            consumer = m.consumer,
            tag = m.tag,
            "consumer queue full: message dropped, the broker delivers it again after its ack wait"
        ),
        Err(TrySendError::Closed(m)) => tracing::trace!(
            consumer = m.consumer,
            tag = m.tag,
            "message for a closed consumer dropped"
        ),
    }
}

/// Hands a group event to its member's queue, waiting while the queue is full: group messages
/// may not be dropped (their order is the point), so a member that is not read holds up this
/// connection's control stream, and in the end the broker disconnects it as a slow consumer.
async fn route_group_event(shared: &Shared, member: u64, event: GroupEvent) {
    let tx = match shared.groups.lock() {
        Ok(g) => g.members.get(&member).cloned(),
        Err(_) => None,
    };
    if let Some(tx) = tx
        && tx.send(event).await.is_err()
        && let Ok(mut g) = shared.groups.lock()
    {
        // The application dropped the stream: forget the member.
        g.members.remove(&member);
    }
}

pub(crate) async fn read_deliveries(shared: Arc<Shared>, conn: quinn::Connection) {
    if let Ok(uni) = conn.accept_uni().await {
        deliver(&shared, uni).await;
    }
}

async fn deliver(shared: &Shared, uni: quinn::RecvStream) {
    // A delivery re-encodes a publication the broker accepted: it may exceed the broker's
    // frame limit by the headroom.
    let max = shared.max_frame().saturating_add(FRAME_HEADROOM);
    let mut reader = FramedRead::new(uni, FrameCodec::<DeliveryFrame>::new(max));
    let mut batch = Vec::with_capacity(DELIVERY_BATCH);
    while let Some(Ok(first)) = reader.next().await {
        // With the first, whatever the stream has already brought (read without waiting).
        batch.push(first);
        let mut ended = false;
        while batch.len() < DELIVERY_BATCH {
            match reader.next().now_or_never() {
                Some(Some(Ok(d))) => batch.push(d),
                // The stream ended or failed: hand over what was read, then stop.
                Some(_) => {
                    ended = true;
                    break;
                }
                None => break,
            }
        }
        if !hand_over(shared, &mut batch).await || ended {
            return;
        }
    }
}

/// Hands every subscription its notifications of `batch` (emptied), in order, in one batch per
/// run of the same subscription; waits while a subscription's queue is full (the backpressure,
/// see the module docs). False if the routes are unusable.
async fn hand_over(shared: &Shared, batch: &mut Vec<DeliveryFrame>) -> bool {
    let mut runs: Vec<(SubscriptionTx, Vec<Notification>)> = Vec::new();
    {
        let Ok(mut r) = shared.routes.lock() else {
            return false;
        };
        for d in batch.drain(..) {
            let n = Notification::new(d.attributes, d.payload);
            match r.subs.get(&d.subscription) {
                Some(tx) => match runs.last_mut() {
                    Some((last, ns)) if last.same_queue(tx) => ns.push(n),
                    _ => runs.push((tx.clone(), vec![n])),
                },
                None => {
                    if r.pending_subscribes > 0 && r.early.len() < EARLY_BUFFER {
                        r.early.push((d.subscription, n));
                    }
                }
            }
        }
    }
    for (tx, ns) in runs {
        // A subscription dropped by the application: its notifications are dropped too.
        tx.send(ns).await;
    }
    true
}
