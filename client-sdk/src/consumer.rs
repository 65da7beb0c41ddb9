//! Durable consumers: [`DurableSubscription`] (push) and [`PullConsumer`] (pull).
//!
//! A consumer is attached to a queue with [`Client::consume`] or [`Client::pull`]; the broker
//! names it, and its messages arrive on the control stream, where the control reader hands
//! them to the consumer's bounded queue without waiting (see `reader.rs`). The bounds follow
//! what the broker may have outstanding: in push mode at most `window` unacked messages, in
//! pull mode at most what was fetched; each queue holds twice that, so that redeliveries and a
//! cancelled fetch's late messages fit too. A message that still finds the queue full is
//! dropped and comes back after the queue's ack wait.
//!
//! Dropping a consumer detaches it (best effort, without waiting: its unacked messages are
//! delivered again at once); [`DurableSubscription::stop`] and [`PullConsumer::stop`] do the
//! same and wait for the broker's answer.
//!
//! Every attached consumer is also recorded in the client's [`Attachment`]s, which the link
//! supervisor (`link.rs`) attaches again on a new connection: the broker names it anew (the
//! handle's id changes), and the messages left unacked on the lost connection come again
//! after the queue's ack wait.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use palio_protocol::{ClientFrame, ConsumeMode, MAX_FETCH_BATCH, MAX_PUSH_WINDOW, ServerFrame};
use tokio::sync::mpsc;

use crate::client::{Client, Register, Shared, unexpected};
use crate::error::Error;
use crate::message::DurableMessage;
use crate::outgoing::NotQueued;

/// Where the control reader puts a consumer's messages.
pub(crate) type ConsumerTx = mpsc::Sender<palio_protocol::DurableMessage>;

/// A consumer to attach again after a reconnection.
pub(crate) struct Attachment {
    /// The broker's id of the consumer, shared with its handle.
    pub(crate) id: Arc<AtomicU64>,
    pub(crate) queue: String,
    pub(crate) mode: ConsumeMode,
    pub(crate) tx: ConsumerTx,
}

/// What a consumer and its messages share: the connection and the consumer's name.
pub(crate) struct ConsumerHandle {
    shared: Arc<Shared>,
    /// The broker's id of the consumer (it changes when the client reconnects).
    id: Arc<AtomicU64>,
    /// The queue's name.
    pub(crate) queue: String,
}

impl ConsumerHandle {
    /// The broker's id of the consumer on the current connection.
    pub(crate) fn id(&self) -> u64 {
        self.id.load(Ordering::Relaxed)
    }

    /// Forgets the consumer: it is not attached again after a reconnection.
    fn forget(&self) {
        if let Ok(mut a) = self.shared.attached.lock() {
            a.retain(|a| !Arc::ptr_eq(&a.id, &self.id));
        }
    }

    /// Acks `tags`; returns once the broker has the acks on disk.
    pub(crate) async fn ack(&self, tags: Vec<u64>) -> Result<(), Error> {
        let consumer = self.id();
        let answer = self
            .shared
            .request(
                |request| ClientFrame::Ack {
                    request,
                    consumer,
                    tags,
                },
                None,
                self.shared.timeout,
            )
            .await?;
        done(answer)
    }

    /// Naks `tags` with a redelivery delay.
    pub(crate) async fn nak(&self, tags: Vec<u64>, delay: Duration) -> Result<(), Error> {
        let consumer = self.id();
        let delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        let answer = self
            .shared
            .request(
                |request| ClientFrame::Nak {
                    request,
                    consumer,
                    tags,
                    delay_ms,
                },
                None,
                self.shared.timeout,
            )
            .await?;
        done(answer)
    }
}

fn done(answer: ServerFrame) -> Result<(), Error> {
    match answer {
        ServerFrame::Done { .. } => Ok(()),
        other => Err(unexpected(other)),
    }
}

/// Detaches `consumer` without waiting for the answer: used by `Drop`, and for a consumer
/// confirmed after its caller stopped waiting. Its route goes first, so messages already on
/// the way are dropped (the broker delivers them again once the consumer is detached).
pub(crate) fn stop_detached(shared: &Shared, consumer: u64) {
    if let Ok(mut c) = shared.consumers.lock() {
        c.remove(&consumer);
    }
    let frame = ClientFrame::StopConsume {
        request: shared.next_request(),
        consumer,
    };
    if let Err(NotQueued::Full) = shared.out.try_push(&frame) {
        // Without a runtime the connection is going away anyway, which detaches the
        // consumer too.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let out = shared.out.clone();
            rt.spawn(async move {
                let _ = out.send(&frame).await;
            });
        }
    }
}

/// A consumer attached to a queue: its handle and its message queue, detached on drop.
struct Attached {
    handle: Arc<ConsumerHandle>,
    rx: mpsc::Receiver<palio_protocol::DurableMessage>,
    /// Set by `stop`, which detaches the consumer itself.
    stopped: bool,
}

impl Attached {
    fn message(&self, m: palio_protocol::DurableMessage) -> DurableMessage {
        DurableMessage::new(m, self.handle.clone())
    }

    async fn stop(&mut self) -> Result<(), Error> {
        self.stopped = true;
        self.handle.forget();
        let shared = &self.handle.shared;
        let consumer = self.handle.id();
        if let Ok(mut c) = shared.consumers.lock() {
            c.remove(&consumer);
        }
        let answer = shared
            .request(
                |request| ClientFrame::StopConsume { request, consumer },
                None,
                shared.timeout,
            )
            .await?;
        done(answer)
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        if !self.stopped {
            self.handle.forget();
            stop_detached(&self.handle.shared, self.handle.id());
        }
    }
}

impl Client {
    /// Attaches a push consumer to the durable queue `queue` (`NAME.dlq` for a dead-letter
    /// queue): the broker sends messages as they come, keeping at most `window` of them
    /// unacked (clamped to 1..=[`MAX_PUSH_WINDOW`]). `mode` must be [`ConsumeMode::Push`];
    /// pull consumers come from [`pull`](Self::pull).
    ///
    /// ```no_run
    /// # async fn demo(client: palio::Client) -> Result<(), palio::Error> {
    /// use palio::ConsumeMode;
    ///
    /// let mut orders = client.consume("orders", ConsumeMode::Push { window: 64 }).await?;
    /// while let Some(m) = orders.next().await {
    ///     println!("{}", m.notification().to_json());
    ///     m.ack().await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn consume(
        &self,
        queue: &str,
        mode: ConsumeMode,
    ) -> Result<DurableSubscription, Error> {
        let ConsumeMode::Push { window } = mode else {
            return Err(Error::InvalidRequest(
                "consume takes push mode; use Client::pull for a pull consumer".into(),
            ));
        };
        let window = window.clamp(1, MAX_PUSH_WINDOW);
        let capacity = usize::try_from(window)
            .unwrap_or(usize::MAX)
            .saturating_mul(2);
        let attached = self
            .attach(queue, ConsumeMode::Push { window }, capacity)
            .await?;
        Ok(DurableSubscription { attached })
    }

    /// Attaches a pull consumer to the durable queue `queue` (`NAME.dlq` for a dead-letter
    /// queue): messages come only in answer to [`PullConsumer::fetch`].
    ///
    /// ```no_run
    /// # async fn demo(client: palio::Client) -> Result<(), palio::Error> {
    /// use std::time::Duration;
    ///
    /// let mut jobs = client.pull("jobs").await?;
    /// for m in jobs.fetch(10, Duration::from_millis(500)).await? {
    ///     m.ack().await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn pull(&self, queue: &str) -> Result<PullConsumer, Error> {
        let capacity = usize::try_from(MAX_FETCH_BATCH).unwrap_or(usize::MAX) * 2;
        let attached = self.attach(queue, ConsumeMode::Pull, capacity).await?;
        Ok(PullConsumer { attached })
    }

    async fn attach(
        &self,
        queue: &str,
        mode: ConsumeMode,
        capacity: usize,
    ) -> Result<Attached, Error> {
        let (tx, rx) = mpsc::channel(capacity);
        let id = Arc::new(AtomicU64::new(0));
        let answer = self
            .call(
                |request| ClientFrame::Consume {
                    request,
                    queue: queue.to_owned(),
                    mode,
                },
                Some(Register::Consumer(tx.clone(), id.clone())),
            )
            .await?;
        let ServerFrame::Consuming { .. } = answer else {
            return Err(unexpected(answer));
        };
        if let Ok(mut a) = self.shared.attached.lock() {
            a.push(Attachment {
                id: id.clone(),
                queue: queue.to_owned(),
                mode,
                tx,
            });
        }
        Ok(Attached {
            handle: Arc::new(ConsumerHandle {
                shared: self.shared.clone(),
                id,
                queue: queue.to_owned(),
            }),
            rx,
            stopped: false,
        })
    }
}

/// A push consumer of a durable queue: a [`Stream`] of [`DurableMessage`]s, which the
/// application acks. [`next`](Self::next) is the same without importing a stream trait.
///
/// The stream ends when the client's connection ends for good; across a reconnection the
/// consumer is attached again (see [`Reconnect`](crate::Reconnect)), and the messages left
/// unacked on the lost connection come again after the queue's ack wait, with a larger
/// [`delivery_count`](DurableMessage::delivery_count). Dropping it detaches the consumer; its
/// unacked messages are delivered again.
///
/// ```no_run
/// # async fn demo(client: palio::Client) -> Result<(), palio::Error> {
/// use palio::ConsumeMode;
///
/// let mut sub = client.consume("orders", ConsumeMode::Push { window: 256 }).await?;
/// let mut tags = Vec::new();
/// while let Some(m) = sub.next().await {
///     tags.push(m.tag());
///     if tags.len() == 100 {
///         sub.ack_many(&tags).await?; // one ack for the batch
///         tags.clear();
///     }
/// }
/// # Ok(()) }
/// ```
pub struct DurableSubscription {
    attached: Attached,
}

impl std::fmt::Debug for DurableSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DurableSubscription")
            .field("queue", &self.queue())
            .field("id", &self.id())
            .finish()
    }
}

impl DurableSubscription {
    /// The broker's id of this consumer (it changes when the client reconnects).
    ///
    /// ```no_run
    /// # async fn demo(client: palio::Client) -> Result<(), palio::Error> {
    /// use palio::ConsumeMode;
    ///
    /// let orders = client.consume("orders", ConsumeMode::Push { window: 64 }).await?;
    /// println!("consumer {} of {}", orders.id(), orders.queue());
    /// # Ok(()) }
    /// ```
    pub fn id(&self) -> u64 {
        self.attached.handle.id()
    }

    /// The queue.
    ///
    /// ```no_run
    /// # async fn demo(client: palio::Client) -> Result<(), palio::Error> {
    /// use palio::ConsumeMode;
    ///
    /// // The dead-letter queue of "orders".
    /// let dead = client.consume("orders.dlq", ConsumeMode::Push { window: 16 }).await?;
    /// assert_eq!(dead.queue(), "orders.dlq");
    /// # Ok(()) }
    /// ```
    pub fn queue(&self) -> &str {
        &self.attached.handle.queue
    }

    /// The next message, or `None` once the connection has closed.
    ///
    /// ```no_run
    /// # async fn demo(client: palio::Client) -> Result<(), palio::Error> {
    /// use std::time::Duration;
    /// use palio::ConsumeMode;
    ///
    /// let mut orders = client.consume("orders", ConsumeMode::Push { window: 64 }).await?;
    /// while let Some(m) = orders.next().await {
    ///     if m.get("amount").is_some() {
    ///         m.ack().await?;
    ///     } else {
    ///         m.nak(Duration::from_secs(30)).await?; // delivered again in 30 s
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn next(&mut self) -> Option<DurableMessage> {
        let m = self.attached.rx.recv().await?;
        Some(self.attached.message(m))
    }

    /// Acks several messages of this consumer in one request; returns once the broker has
    /// the acks on disk. Tags no longer unacked are ignored by the broker.
    ///
    /// ```no_run
    /// # async fn demo(client: palio::Client) -> Result<(), palio::Error> {
    /// use palio::ConsumeMode;
    ///
    /// let mut orders = client.consume("orders", ConsumeMode::Push { window: 16 }).await?;
    /// let mut tags = Vec::new();
    /// while tags.len() < 16 {
    ///     let Some(m) = orders.next().await else { break };
    ///     tags.push(m.tag());
    /// }
    /// orders.ack_many(&tags).await?; // one request for the batch
    /// # Ok(()) }
    /// ```
    pub async fn ack_many(&self, tags: &[u64]) -> Result<(), Error> {
        self.attached.handle.ack(tags.to_vec()).await
    }

    /// Detaches the consumer and waits for the broker's answer; its unacked messages are
    /// delivered again.
    ///
    /// ```no_run
    /// # async fn demo(client: palio::Client) -> Result<(), palio::Error> {
    /// use palio::ConsumeMode;
    ///
    /// let orders = client.consume("orders", ConsumeMode::Push { window: 64 }).await?;
    /// // … handle some messages …
    /// orders.stop().await?; // detached: what it left unacked is delivered again
    /// # Ok(()) }
    /// ```
    pub async fn stop(mut self) -> Result<(), Error> {
        self.attached.stop().await
    }
}

impl Stream for DurableSubscription {
    type Item = DurableMessage;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<DurableMessage>> {
        self.attached
            .rx
            .poll_recv(cx)
            .map(|m| m.map(|m| self.attached.message(m)))
    }
}

/// A pull consumer of a durable queue: messages come in batches, in answer to
/// [`fetch`](Self::fetch).
///
/// Dropping it detaches the consumer; its unacked messages are delivered again.
///
/// ```no_run
/// # async fn demo(client: palio::Client) -> Result<(), palio::Error> {
/// use std::time::Duration;
///
/// let mut jobs = client.pull("jobs").await?;
/// loop {
///     let batch = jobs.fetch(64, Duration::from_secs(1)).await?;
///     let tags: Vec<u64> = batch.iter().map(|m| m.tag()).collect();
///     // … process the batch …
///     jobs.ack_many(&tags).await?;
/// }
/// # }
/// ```
pub struct PullConsumer {
    attached: Attached,
}

impl std::fmt::Debug for PullConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PullConsumer")
            .field("queue", &self.queue())
            .field("id", &self.id())
            .finish()
    }
}

impl PullConsumer {
    /// The broker's id of this consumer (it changes when the client reconnects).
    ///
    /// ```no_run
    /// # async fn demo(client: palio::Client) -> Result<(), palio::Error> {
    /// let jobs = client.pull("jobs").await?;
    /// println!("pull consumer {} of {}", jobs.id(), jobs.queue());
    /// # Ok(()) }
    /// ```
    pub fn id(&self) -> u64 {
        self.attached.handle.id()
    }

    /// The queue.
    ///
    /// ```no_run
    /// # async fn demo(client: palio::Client) -> Result<(), palio::Error> {
    /// let jobs = client.pull("jobs.dlq").await?;
    /// assert_eq!(jobs.queue(), "jobs.dlq");
    /// # Ok(()) }
    /// ```
    pub fn queue(&self) -> &str {
        &self.attached.handle.queue
    }

    /// Fetches up to `batch` messages (clamped to 1..=[`MAX_FETCH_BATCH`]), waiting at most
    /// `max_wait` for them; returns those that came (possibly none). Messages that arrived
    /// after an earlier fetch was cancelled are returned first.
    ///
    /// ```no_run
    /// # async fn demo(client: palio::Client) -> Result<(), palio::Error> {
    /// use std::time::Duration;
    ///
    /// let mut jobs = client.pull("jobs").await?;
    /// let batch = jobs.fetch(100, Duration::from_secs(2)).await?;
    /// if batch.is_empty() {
    ///     println!("no job within 2 s");
    /// }
    /// for m in &batch {
    ///     m.ack().await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn fetch(
        &mut self,
        batch: u32,
        max_wait: Duration,
    ) -> Result<Vec<DurableMessage>, Error> {
        let batch = usize::try_from(batch.clamp(1, MAX_FETCH_BATCH)).unwrap_or(1);
        let mut out = Vec::with_capacity(batch);
        self.drain(&mut out, batch);
        if out.len() < batch {
            let want = u32::try_from(batch - out.len()).unwrap_or(MAX_FETCH_BATCH);
            let consumer = self.attached.handle.id();
            let max_wait_ms = u64::try_from(max_wait.as_millis()).unwrap_or(u64::MAX);
            let shared = &self.attached.handle.shared;
            // The broker answers after at most `max_wait`; the usual bound applies beyond.
            let timeout = max_wait.saturating_add(shared.timeout);
            let answer = shared
                .request(
                    |request| ClientFrame::Fetch {
                        request,
                        consumer,
                        batch: want,
                        max_wait_ms,
                    },
                    None,
                    timeout,
                )
                .await?;
            let ServerFrame::Fetched { .. } = answer else {
                return Err(unexpected(answer));
            };
            // The fetch's messages preceded its answer on the control stream, so they are
            // all queued by now.
            self.drain(&mut out, batch);
        }
        Ok(out)
    }

    fn drain(&mut self, out: &mut Vec<DurableMessage>, batch: usize) {
        while out.len() < batch {
            let Ok(m) = self.attached.rx.try_recv() else {
                break;
            };
            out.push(self.attached.message(m));
        }
    }

    /// Acks several messages of this consumer in one request; returns once the broker has
    /// the acks on disk. Tags no longer unacked are ignored by the broker.
    ///
    /// ```no_run
    /// # async fn demo(client: palio::Client) -> Result<(), palio::Error> {
    /// use std::time::Duration;
    ///
    /// let mut jobs = client.pull("jobs").await?;
    /// let batch = jobs.fetch(64, Duration::from_secs(1)).await?;
    /// let tags: Vec<u64> = batch.iter().map(|m| m.tag()).collect();
    /// jobs.ack_many(&tags).await?;
    /// # Ok(()) }
    /// ```
    pub async fn ack_many(&self, tags: &[u64]) -> Result<(), Error> {
        self.attached.handle.ack(tags.to_vec()).await
    }

    /// Detaches the consumer and waits for the broker's answer; its unacked messages are
    /// delivered again.
    ///
    /// ```no_run
    /// # async fn demo(client: palio::Client) -> Result<(), palio::Error> {
    /// let jobs = client.pull("jobs").await?;
    /// // … fetch and handle some batches …
    /// jobs.stop().await?; // detached: what it left unacked is delivered again
    /// # Ok(()) }
    /// ```
    pub async fn stop(mut self) -> Result<(), Error> {
        self.attached.stop().await
    }
}
