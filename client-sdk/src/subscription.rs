//! A subscription's stream of notifications, and the queue that feeds it.
//!
//! The delivery reader hands a subscription its notifications in batches (what the stream has
//! already brought), so that the application's task is woken once per batch. The queue is
//! bounded in notifications, not batches ([`SUBSCRIPTION_BUFFER`]): a semaphore's permits are
//! taken for every notification queued and given back when the subscription takes its batch.
//!
//! The queue's sending side also carries what restores the subscription on a new connection
//! (see `link.rs`): its filter, and the broker's id of it, which the reconnection changes.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use futures_util::Stream;
use tokio::sync::{Semaphore, mpsc};

use crate::client::SUBSCRIPTION_BUFFER;
use crate::notification::Notification;

/// A subscription's queue, for `filter`: the delivery reader's side and the
/// [`Subscription`]'s.
pub(crate) fn queue(filter: &str) -> (SubscriptionTx, Receiver) {
    let (tx, rx) = mpsc::unbounded_channel();
    let room = Arc::new(Semaphore::new(SUBSCRIPTION_BUFFER));
    let id = Arc::new(AtomicU64::new(0));
    (
        SubscriptionTx {
            tx,
            room: room.clone(),
            filter: filter.into(),
            id: id.clone(),
        },
        Receiver { rx, room, id },
    )
}

/// The delivery reader's side of a subscription's queue.
#[derive(Debug, Clone)]
pub(crate) struct SubscriptionTx {
    tx: mpsc::UnboundedSender<Vec<Notification>>,
    /// One permit per notification the queue may still take.
    room: Arc<Semaphore>,
    /// The filter, to subscribe again on a new connection.
    pub(crate) filter: Arc<str>,
    /// The broker's id of the subscription on the current connection.
    id: Arc<AtomicU64>,
}

impl SubscriptionTx {
    /// The broker named the subscription `id` (on this connection).
    pub(crate) fn set_id(&self, id: u64) {
        self.id.store(id, Ordering::Relaxed);
    }

    /// Whether the application dropped the [`Subscription`].
    pub(crate) fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Queues `batch`, waiting while the queue is full (the backpressure of best-effort
    /// delivery); false if the subscription is gone. A batch larger than the whole queue is
    /// never sent (batches are at most [`DELIVERY_BATCH`](crate::client::DELIVERY_BATCH)).
    pub(crate) async fn send(&self, batch: Vec<Notification>) -> bool {
        let n = u32::try_from(batch.len()).unwrap_or(u32::MAX);
        match self.room.acquire_many(n).await {
            Ok(permits) => permits.forget(),
            Err(_) => return false,
        }
        self.tx.send(batch).is_ok()
    }

    /// Queues `batch` if there is room now (for a new subscription's first batch).
    pub(crate) fn try_send(&self, batch: Vec<Notification>) -> bool {
        let n = u32::try_from(batch.len()).unwrap_or(u32::MAX);
        match self.room.try_acquire_many(n) {
            Ok(permits) => permits.forget(),
            Err(_) => return false,
        }
        self.tx.send(batch).is_ok()
    }

    /// Whether both feed the same subscription.
    pub(crate) fn same_queue(&self, other: &SubscriptionTx) -> bool {
        self.tx.same_channel(&other.tx)
    }
}

/// The subscription's side of its queue.
#[derive(Debug)]
pub(crate) struct Receiver {
    rx: mpsc::UnboundedReceiver<Vec<Notification>>,
    room: Arc<Semaphore>,
    id: Arc<AtomicU64>,
}

impl Drop for Receiver {
    /// Nobody reads any more: a delivery reader waiting for room gives up.
    fn drop(&mut self) {
        self.room.close();
    }
}

/// The notifications matching one subscription, in the order the broker delivered them.
///
/// A [`Stream`]; [`next`](Self::next) is the same without importing a stream trait. The stream
/// ends when the subscription is ended with [`Client::unsubscribe`](crate::Client::unsubscribe)
/// or the client's connection ends for good. It goes on across reconnections (see
/// [`Reconnect`](crate::Reconnect)): the client subscribes again with the same filter, and
/// the notifications published while it was disconnected are not delivered.
///
/// ```no_run
/// # async fn demo(client: palio::Client) -> Result<(), palio::Error> {
/// use futures_util::StreamExt;
///
/// let alarms = client.subscribe("type = 'alarm'").await?;
/// // A Stream: its combinators apply.
/// let first: Vec<palio::Notification> = alarms.take(10).collect().await;
/// assert!(first.len() <= 10);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Subscription {
    filter: String,
    /// Batches from the delivery reader.
    rx: Receiver,
    /// The rest of the batch being read.
    ready: std::vec::IntoIter<Notification>,
}

impl Subscription {
    pub(crate) fn new(filter: String, rx: Receiver) -> Self {
        Self {
            filter,
            rx,
            ready: Vec::new().into_iter(),
        }
    }

    /// The broker's id for this subscription (it changes when the client reconnects).
    ///
    /// ```no_run
    /// # async fn demo(client: palio::Client) -> Result<(), palio::Error> {
    /// let alarms = client.subscribe("type = 'alarm'").await?;
    /// println!("subscription {} for {}", alarms.id(), alarms.filter());
    /// # Ok(()) }
    /// ```
    pub fn id(&self) -> u64 {
        self.rx.id.load(Ordering::Relaxed)
    }

    /// The filter.
    ///
    /// ```no_run
    /// # async fn demo(client: palio::Client) -> Result<(), palio::Error> {
    /// let alarms = client.subscribe("type = 'alarm' AND level > 2").await?;
    /// assert_eq!(alarms.filter(), "type = 'alarm' AND level > 2");
    /// # Ok(()) }
    /// ```
    pub fn filter(&self) -> &str {
        &self.filter
    }

    /// The next notification, or `None` once the subscription has ended.
    ///
    /// ```no_run
    /// # async fn demo(client: palio::Client) -> Result<(), palio::Error> {
    /// let mut alarms = client.subscribe("type = 'alarm'").await?;
    /// while let Some(n) = alarms.next().await {
    ///     println!("{}", n.to_json());
    /// }
    /// // Ended: unsubscribed, or the client's connection ended for good.
    /// # Ok(()) }
    /// ```
    pub async fn next(&mut self) -> Option<Notification> {
        std::future::poll_fn(|cx| self.poll_batch(cx)).await
    }

    /// The next notification: from the batch being read, else from the next batch.
    fn poll_batch(&mut self, cx: &mut Context<'_>) -> Poll<Option<Notification>> {
        loop {
            if let Some(n) = self.ready.next() {
                return Poll::Ready(Some(n));
            }
            match self.rx.rx.poll_recv(cx) {
                Poll::Ready(Some(batch)) => {
                    // Taken off the queue: its room is free again.
                    self.rx.room.add_permits(batch.len());
                    self.ready = batch.into_iter();
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl Stream for Subscription {
    type Item = Notification;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Notification>> {
        self.poll_batch(cx)
    }
}
