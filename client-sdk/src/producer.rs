//! Persistent publish: a connection's [`Producer`] and the [`PublishAck`] of each publication.
//!
//! A connection names its producer once ([`Client::producer`]); the broker answers with the
//! next sequence number it expects, so a producer resuming after a crash under the same id
//! continues where its stored publications end, and a retried `(producer, seq)` already
//! stored is acknowledged again without being stored twice.
//!
//! Publishing is pipelined: [`Producer::send`] returns once the frame is queued for the
//! connection, with a [`PublishAck`] that resolves when the broker has the publication on disk
//! (or refused it, or the connection was lost). Publications settle in publish order (see
//! `in_flight.rs`). At most [`ProducerOptions::max_in_flight`] publications are unsettled at a
//! time; `send` waits for room, which bounds the memory a fast producer can take.
//! [`Producer::publish`] is `send` followed by waiting for the ack.
//!
//! An ack says how many durable queues the publication matched ([`Published::queues`]): one
//! that matched none is acked (it is on disk, and a retry of it is not stored again) but no
//! queue keeps it, which [`Published::stored`] tells.
//!
//! Each unsettled publication keeps its encoded frame: when the client reconnects (see
//! `link.rs`), the producer is named again under the same id and every unsettled publication
//! is sent again with its sequence number, before anything newer; those the broker had
//! already stored are acknowledged without being stored twice. Publications made while
//! disconnected are recorded (up to the in-flight bound) and sent the same way.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use palio_protocol::{ClientFrame, ErrorCode, QueueMatches, ServerFrame};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use crate::client::{Client, Shared, unexpected};
use crate::error::Error;
use crate::in_flight::InFlight;
use crate::notification::Notification;
use crate::outgoing::Outgoing;

/// How many publications may be unsettled by default.
///
/// ```
/// let opts = palio::ProducerOptions::new();
/// assert_eq!(opts.get_max_in_flight(), palio::DEFAULT_MAX_IN_FLIGHT);
/// ```
pub const DEFAULT_MAX_IN_FLIGHT: usize = 4096;

/// Options of a [`Producer`].
///
/// ```
/// let opts = palio::ProducerOptions::new().max_in_flight(256);
/// assert_eq!(opts.get_max_in_flight(), 256);
/// ```
#[derive(Debug, Clone)]
pub struct ProducerOptions {
    /// The bound on unsettled publications: what a producer may have in memory waiting for
    /// acks. Larger keeps more publications in one group commit; smaller bounds memory.
    max_in_flight: usize,
}

impl Default for ProducerOptions {
    fn default() -> Self {
        Self {
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
        }
    }
}

impl ProducerOptions {
    /// The defaults: at most [`DEFAULT_MAX_IN_FLIGHT`] unsettled publications.
    ///
    /// ```
    /// use palio::{DEFAULT_MAX_IN_FLIGHT, ProducerOptions};
    ///
    /// assert_eq!(ProducerOptions::new().get_max_in_flight(), DEFAULT_MAX_IN_FLIGHT);
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// At most `n` publications unsettled at a time (at least 1); [`Producer::send`] waits
    /// for room beyond that.
    ///
    /// ```
    /// use palio::ProducerOptions;
    ///
    /// assert_eq!(ProducerOptions::new().max_in_flight(64).get_max_in_flight(), 64);
    /// assert_eq!(ProducerOptions::new().max_in_flight(0).get_max_in_flight(), 1); // at least 1
    /// ```
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n.clamp(1, Semaphore::MAX_PERMITS);
        self
    }

    /// The bound on unsettled publications.
    ///
    /// ```
    /// let opts = palio::ProducerOptions::new().max_in_flight(512);
    /// assert_eq!(opts.get_max_in_flight(), 512);
    /// ```
    pub fn get_max_in_flight(&self) -> usize {
        self.max_in_flight
    }
}

/// Whether a connection has named its producer.
#[derive(Default)]
pub(crate) enum ProducerSlot {
    /// Not yet: [`Client::producer`] may be called.
    #[default]
    Free,
    /// A [`ClientFrame::Producer`] request is under way.
    Naming,
    /// Named: the control reader settles this producer's publications.
    Ready(Arc<ProducerState>),
    /// The control reader has ended: no producer can be named any more (one named now would
    /// wait for acks forever).
    Gone,
}

impl Shared {
    /// The connection's producer, if it is named.
    pub(crate) fn producer(&self) -> Option<Arc<ProducerState>> {
        match &*lock(&self.producer) {
            ProducerSlot::Ready(p) => Some(p.clone()),
            _ => None,
        }
    }

    /// The control reader has ended: fails the producer's unsettled publications and refuses
    /// any producer named later. Under the slot's lock, so that a producer being named right
    /// now either is closed here or sees [`ProducerSlot::Gone`].
    pub(crate) fn end_producer(&self, reason: &Error) {
        let mut slot = lock(&self.producer);
        match &*slot {
            ProducerSlot::Ready(p) => p.close(reason),
            _ => *slot = ProducerSlot::Gone,
        }
    }
}

/// A producer's state, shared by its handle and the control reader.
pub(crate) struct ProducerState {
    /// The producer's id, to name it again on a new connection.
    pub(crate) id: String,
    inner: Mutex<Inner>,
    /// One permit per unsettled publication; closed when the connection is lost, which wakes
    /// every `send` waiting for room.
    permits: Arc<Semaphore>,
}

struct Inner {
    in_flight: InFlight<Settle, Error>,
    /// The last sequence number sent on this connection: the next one must be larger.
    last_sent: Option<u64>,
    /// The broker's `next_seq` when the producer was named: automatic sequence numbers never
    /// go below it, so a new publication is never mistaken for a retry of a stored one.
    first_new: u64,
    /// Set when the connection is lost: nothing more may be sent or recorded, since nothing
    /// would settle it.
    closed: Option<(Option<ErrorCode>, String)>,
}

/// What settling a publication does: tell its [`PublishAck`] and give back its permit; and
/// its frame, encoded, to send again on a new connection.
struct Settle {
    reply: oneshot::Sender<Result<Published, Error>>,
    _permit: OwnedSemaphorePermit,
    frame: Bytes,
}

impl Settle {
    /// Settles publication `seq`, which matched `queues` queues if it was acked.
    fn settle(self, seq: u64, queues: u32, result: Result<(), Error>) {
        let _ = self.reply.send(result.map(|()| Published { seq, queues }));
    }
}

/// An acknowledged persistent publication: what a [`PublishAck`] (and
/// [`Producer::publish`]) resolves to.
///
/// ```no_run
/// # async fn demo(producer: palio::Producer) -> Result<(), palio::Error> {
/// use palio::Notification;
///
/// let published = producer.publish(Notification::builder().attr("type", "order").build()?).await?;
/// if !published.stored() {
///     eprintln!("publication {} matched no durable queue: nobody keeps it", published.seq());
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    seq: u64,
    queues: u32,
}

impl Published {
    /// Its sequence number.
    ///
    /// ```no_run
    /// # async fn demo(producer: palio::Producer) -> Result<(), palio::Error> {
    /// let order = palio::Notification::builder().attr("type", "order").build()?;
    /// let ack = producer.send(order).await?;
    /// let seq = ack.seq();
    /// assert_eq!(ack.await?.seq(), seq);
    /// # Ok(()) }
    /// ```
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// How many durable queues it matched, at its broker and (through the queue directory)
    /// at other brokers, when the broker stored it; a retry of a stored publication is told
    /// the same. 0: acked, but no queue keeps it (also what a broker of a version before
    /// this count says).
    ///
    /// ```no_run
    /// # async fn demo(producer: palio::Producer) -> Result<(), palio::Error> {
    /// let order = palio::Notification::builder().attr("type", "order").build()?;
    /// let published = producer.publish(order).await?;
    /// println!("publication {} kept by {} queue(s)", published.seq(), published.queues());
    /// # Ok(()) }
    /// ```
    pub fn queues(&self) -> u32 {
        self.queues
    }

    /// Whether at least one durable queue keeps it.
    ///
    /// ```no_run
    /// # async fn demo(producer: palio::Producer) -> Result<(), palio::Error> {
    /// let audit = palio::Notification::builder().attr("type", "audit").build()?;
    /// let published = producer.publish(audit).await?;
    /// if !published.stored() {
    ///     eprintln!("no durable queue matches type = 'audit': add one with Client::queue_add");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn stored(&self) -> bool {
        self.queues > 0
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // No code holding these locks can panic, and their state stays consistent at every
    // step, so a poisoned lock is still usable.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Inner {
    fn next_auto(&self) -> Option<u64> {
        match self.last_sent {
            Some(l) => l.checked_add(1).map(|n| n.max(self.first_new)),
            None => Some(self.first_new),
        }
    }

    fn closed_error(&self) -> Option<Error> {
        self.closed.as_ref().map(|(code, message)| Error::Closed {
            code: *code,
            message: message.clone(),
        })
    }
}

impl ProducerState {
    /// The broker has every publication up to `through` on disk; `matched` says how many
    /// queues they matched (runs in increasing order; a publication in none: 0).
    pub(crate) fn acked(&self, through: u64, matched: &[QueueMatches]) {
        // Publications settle in increasing order, so the runs are walked once.
        let mut runs = matched.iter().peekable();
        let mut queues = |seq: u64| {
            while runs.next_if(|r| r.through < seq).is_some() {}
            runs.peek()
                .filter(|r| r.from <= seq)
                .map_or(0, |r| r.queues)
        };
        lock(&self.inner)
            .in_flight
            .ack_through(through, |seq, s, r| s.settle(seq, queues(seq), r));
    }

    /// The broker refused publication `seq`.
    pub(crate) fn failed(&self, seq: u64, code: ErrorCode, message: String) {
        let error = Error::Publish { seq, code, message };
        lock(&self.inner)
            .in_flight
            .fail(seq, error, |seq, s, r| s.settle(seq, 0, r));
    }

    /// Named again on a new connection whose broker expects `next_seq`: queues every
    /// unsettled publication again, oldest first, then opens the connection's buffer to
    /// everything else (see `outgoing.rs`), under the producer's lock so that no newer
    /// publication goes first.
    pub(crate) fn resend(&self, next_seq: u64, out: &Outgoing) {
        let mut inner = lock(&self.inner);
        inner.first_new = inner.first_new.max(next_seq);
        for (_, s) in inner.in_flight.iter() {
            let _ = out.push_restore_encoded(&s.frame);
        }
        out.open();
    }

    /// The connection is lost: every unsettled publication fails with `reason` (or the
    /// refusal it already had) and nothing more can be sent.
    pub(crate) fn close(&self, reason: &Error) {
        let (code, message) = match reason {
            Error::Closed { code, message } => (*code, message.clone()),
            other => (other.code(), other.to_string()),
        };
        let mut inner = lock(&self.inner);
        inner.closed = Some((code, message));
        self.permits.close();
        let drained: Vec<_> = inner.in_flight.drain().collect();
        for (seq, s, failed) in drained {
            let e = failed
                .or_else(|| inner.closed_error())
                .unwrap_or_else(|| Error::Protocol("closed".into()));
            s.settle(seq, 0, Err(e));
        }
    }
}

/// The publisher of persistent notifications on one connection.
///
/// Made by [`Client::producer`]. Each publication carries a sequence number, increasing on
/// the connection; the broker acknowledges it once it is on disk. Dropping the producer does
/// not cancel publications already sent: their [`PublishAck`]s still resolve.
///
/// ```no_run
/// # async fn demo(client: palio::Client) -> Result<(), palio::Error> {
/// use palio::Notification;
///
/// let producer = client.producer("orders-service-1").await?;
/// // One at a time: returns once the broker has it on disk.
/// let seq = producer.publish(Notification::builder().attr("type", "order").build()?).await?;
/// // Pipelined: queue many, then wait for the acks (they settle in publish order).
/// let mut acks = Vec::new();
/// for i in 0..1000 {
///     acks.push(producer.send(Notification::builder().attr("n", i).build()?).await?);
/// }
/// for ack in acks {
///     ack.await?;
/// }
/// # let _ = seq; Ok(()) }
/// ```
pub struct Producer {
    shared: Arc<Shared>,
    state: Arc<ProducerState>,
    id: String,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("id", &self.id)
            .field("next_seq", &self.next_seq())
            .field("in_flight", &self.in_flight())
            .finish()
    }
}

impl Client {
    /// Names this connection's producer (with the default [`ProducerOptions`]) and returns
    /// it. A connection has at most one producer; `id` (1–128 bytes) should be stable across
    /// the producer's restarts, so that the broker can de-duplicate its retries.
    ///
    /// ```no_run
    /// # async fn demo(client: palio::Client) -> Result<(), palio::Error> {
    /// let producer = client.producer("billing-1").await?;
    /// // Resuming under the same id continues after the stored publications.
    /// println!("next sequence number: {}", producer.next_seq());
    /// # Ok(()) }
    /// ```
    pub async fn producer(&self, id: &str) -> Result<Producer, Error> {
        self.producer_with(id, ProducerOptions::default()).await
    }

    /// [`producer`](Self::producer) with options.
    ///
    /// ```no_run
    /// # async fn demo(client: palio::Client) -> Result<(), palio::Error> {
    /// use palio::ProducerOptions;
    ///
    /// let options = ProducerOptions::new().max_in_flight(256);
    /// let producer = client.producer_with("ingest-1", options).await?;
    /// # let _ = producer;
    /// # Ok(()) }
    /// ```
    pub async fn producer_with(
        &self,
        id: &str,
        options: ProducerOptions,
    ) -> Result<Producer, Error> {
        {
            let mut slot = lock(&self.shared.producer);
            match *slot {
                ProducerSlot::Free => *slot = ProducerSlot::Naming,
                ProducerSlot::Gone => return Err(self.shared.closed_error()),
                ProducerSlot::Naming | ProducerSlot::Ready(_) => {
                    return Err(Error::InvalidRequest(
                        "this connection has a producer already (one producer per connection)"
                            .into(),
                    ));
                }
            }
        }
        // Frees the slot again unless the producer gets named (also if this future is
        // dropped half-way).
        let mut guard = SlotGuard(Some(&self.shared));
        let answer = self
            .call(
                |request| ClientFrame::Producer {
                    request,
                    producer: id.to_owned(),
                },
                None,
            )
            .await?;
        let ServerFrame::ProducerReady { next_seq, .. } = answer else {
            return Err(unexpected(answer));
        };
        let state = Arc::new(ProducerState {
            id: id.to_owned(),
            inner: Mutex::new(Inner {
                in_flight: InFlight::default(),
                last_sent: None,
                first_new: next_seq,
                closed: None,
            }),
            permits: Arc::new(Semaphore::new(options.max_in_flight)),
        });
        {
            let mut slot = lock(&self.shared.producer);
            if matches!(*slot, ProducerSlot::Gone) {
                guard.0 = None;
                return Err(self.shared.closed_error());
            }
            *slot = ProducerSlot::Ready(state.clone());
        }
        guard.0 = None;
        Ok(Producer {
            shared: self.shared.clone(),
            state,
            id: id.to_owned(),
        })
    }
}

struct SlotGuard<'a>(Option<&'a Shared>);

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        if let Some(shared) = self.0 {
            let mut slot = lock(&shared.producer);
            if matches!(*slot, ProducerSlot::Naming) {
                *slot = ProducerSlot::Free;
            }
        }
    }
}

impl Producer {
    /// The producer's id.
    ///
    /// ```no_run
    /// # async fn demo(client: palio::Client) -> Result<(), palio::Error> {
    /// let producer = client.producer("billing-1").await?;
    /// assert_eq!(producer.id(), "billing-1");
    /// # Ok(()) }
    /// ```
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The sequence number [`send`](Self::send) uses next: one more than the last one sent,
    /// and never below the broker's `next_seq` when the producer was named.
    ///
    /// ```no_run
    /// # async fn demo(producer: palio::Producer) -> Result<(), palio::Error> {
    /// let seq = producer.next_seq();
    /// let order = palio::Notification::builder().attr("type", "order").build()?;
    /// let ack = producer.send(order).await?;
    /// assert_eq!(ack.seq(), seq);
    /// # Ok(()) }
    /// ```
    pub fn next_seq(&self) -> u64 {
        lock(&self.state.inner).next_auto().unwrap_or(u64::MAX)
    }

    /// Publications sent and not settled yet.
    ///
    /// ```no_run
    /// # async fn demo(producer: palio::Producer) -> Result<(), palio::Error> {
    /// let order = palio::Notification::builder().attr("type", "order").build()?;
    /// let ack = producer.send(order).await?;
    /// println!("{} publication(s) waiting for their ack", producer.in_flight());
    /// ack.await?;
    /// # Ok(()) }
    /// ```
    pub fn in_flight(&self) -> usize {
        lock(&self.state.inner).in_flight.len()
    }

    /// Publishes persistently and waits for the broker's ack; returns its sequence number
    /// and how many durable queues keep it ([`Published`]).
    ///
    /// ```no_run
    /// # async fn demo(producer: palio::Producer) -> Result<(), palio::Error> {
    /// use palio::Notification;
    ///
    /// let order = Notification::builder().attr("type", "order").attr("id", 42).build()?;
    /// let published = producer.publish(order).await?; // on the broker's disk
    /// println!("stored as {} in {} queue(s)", published.seq(), published.queues());
    /// # Ok(()) }
    /// ```
    pub async fn publish(&self, notification: Notification) -> Result<Published, Error> {
        self.send(notification).await?.await
    }

    /// Queues a persistent publication with the next sequence number and returns its
    /// [`PublishAck`] without waiting for it. Waits while
    /// [`max_in_flight`](ProducerOptions::max_in_flight) publications are unsettled. A
    /// notification whose frame is longer than the broker accepts is refused with
    /// [`Error::FrameTooLarge`], without using a sequence number.
    ///
    /// Cancel-safe: if the returned future is dropped before it completes, nothing was sent.
    ///
    /// ```no_run
    /// # async fn demo(producer: palio::Producer) -> Result<(), palio::Error> {
    /// use palio::Notification;
    ///
    /// let mut acks = Vec::new();
    /// for i in 0..100 {
    ///     acks.push(producer.send(Notification::builder().attr("n", i).build()?).await?);
    /// }
    /// for ack in acks {
    ///     ack.await?; // in publish order
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn send(&self, notification: Notification) -> Result<PublishAck, Error> {
        self.send_inner(None, notification).await
    }

    /// [`send`](Self::send) with a sequence number chosen by the caller: larger than every
    /// one sent before on this connection. A producer retrying after a failure sends its
    /// unacknowledged publications again with their original numbers; those the broker
    /// already stored are acknowledged without being stored twice.
    ///
    /// ```no_run
    /// # use palio::{Error, Notification, Producer};
    /// # type Unacked = Vec<(u64, Notification)>;
    /// # async fn demo(producer: Producer, unacked: Unacked) -> Result<(), Error> {
    /// // Publications whose acks never came (saved by the application before it restarted), in
    /// // increasing order: sent again with their numbers, none is stored twice.
    /// for (seq, notification) in unacked {
    ///     producer.send_with_seq(seq, notification).await?.await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn send_with_seq(
        &self,
        seq: u64,
        notification: Notification,
    ) -> Result<PublishAck, Error> {
        self.send_inner(Some(seq), notification).await
    }

    async fn send_inner(
        &self,
        seq: Option<u64>,
        notification: Notification,
    ) -> Result<PublishAck, Error> {
        let closed = |state: &ProducerState| {
            lock(&state.inner)
                .closed_error()
                .unwrap_or_else(|| self.shared.closed_error())
        };
        let permit = self
            .state
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| closed(&self.state))?;
        self.shared
            .out
            .room()
            .await
            .map_err(|e| self.shared.not_queued(e))?;
        // From here on nothing waits: the publication is recorded and queued together, in
        // sequence-number order, or not at all.
        let mut inner = lock(&self.state.inner);
        if let Some(e) = inner.closed_error() {
            return Err(e);
        }
        let seq = match seq {
            Some(s) if inner.last_sent.is_some_and(|l| s <= l) => {
                return Err(Error::InvalidRequest(format!(
                    "sequence number {s} is not larger than the last one sent ({})",
                    inner.last_sent.unwrap_or_default()
                )));
            }
            Some(s) => s,
            None => inner.next_auto().ok_or_else(|| {
                Error::InvalidRequest("the producer's sequence numbers are exhausted".into())
            })?,
        };
        let (attributes, payload) = notification.into_parts();
        // Refused before it is recorded: the sequence number stays free.
        let size = palio_protocol::publish_persistent_len(seq, &attributes, &payload);
        let max = self.shared.max_frame();
        if size > max {
            return Err(Error::FrameTooLarge {
                what: "publication",
                size,
                max,
            });
        }
        let frame = ClientFrame::PublishPersistent {
            seq,
            attributes,
            payload,
        };
        // Encoded once, kept to be sent again after a reconnection.
        let mut encoded = BytesMut::with_capacity(size + 4);
        palio_protocol::encode_into(&frame, &mut encoded, max)
            .map_err(|e| Error::InvalidRequest(e.to_string()))?;
        let encoded = encoded.freeze();
        let (reply, rx) = oneshot::channel();
        let settle = Settle {
            reply,
            _permit: permit,
            frame: encoded.clone(),
        };
        if inner.in_flight.push(seq, settle).is_err() {
            // Unreachable while `last_sent` is kept, since every unsettled number is at most
            // `last_sent`; refused rather than sent out of order.
            return Err(Error::InvalidRequest(format!(
                "sequence number {seq} is out of order"
            )));
        }
        inner.last_sent = Some(seq);
        // Queued without waiting (room was taken above). A closed connection fails every
        // unsettled publication, this one included, and a lost one has it sent again after
        // the reconnection, so an error here needs no answer.
        let _ = self.shared.out.push_encoded(&encoded);
        Ok(PublishAck { seq, rx })
    }
}

/// The outcome of one persistent publication: a future resolving once the broker has it on
/// disk to its sequence number and how many durable queues it matched ([`Published`]), or to
/// the error that settled it —
/// [`Error::Publish`] if the broker refused it, [`Error::Closed`] if the connection was lost
/// first (its outcome is then unknown: a retry with the same sequence number is safe).
///
/// Dropping it does not cancel the publication.
///
/// ```no_run
/// # async fn demo(producer: palio::Producer) -> Result<(), palio::Error> {
/// use palio::{Error, Notification};
///
/// let ack = producer.send(Notification::builder().attr("type", "order").build()?).await?;
/// let seq = ack.seq();
/// match ack.await {
///     Ok(published) => println!("{} on disk", published.seq()),
///     Err(Error::Publish { code, .. }) => eprintln!("{seq} refused: {code}"),
///     // The connection ended first: a retry with the same number is safe.
///     Err(e @ Error::Closed { .. }) => eprintln!("{seq}: outcome unknown ({e})"),
///     Err(e) => return Err(e),
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct PublishAck {
    seq: u64,
    rx: oneshot::Receiver<Result<Published, Error>>,
}

impl PublishAck {
    /// The publication's sequence number.
    ///
    /// ```no_run
    /// # async fn demo(producer: palio::Producer) -> Result<(), palio::Error> {
    /// let order = palio::Notification::builder().attr("type", "order").build()?;
    /// let ack = producer.send(order).await?;
    /// println!("sent as {}", ack.seq());
    /// ack.await?;
    /// # Ok(()) }
    /// ```
    pub fn seq(&self) -> u64 {
        self.seq
    }
}

impl Future for PublishAck {
    type Output = Result<Published, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Ready(match ready!(Pin::new(&mut self.rx).poll(cx)) {
            Ok(result) => result,
            // Every recorded publication is settled before its sender is dropped; this is
            // the runtime going away under us.
            Err(_) => Err(Error::Closed {
                code: None,
                message: "connection tasks ended".into(),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use palio_filter::{AttrName, Value};
    use palio_protocol::Attributes;

    use super::*;

    #[test]
    fn the_size_checked_is_the_encoded_length() {
        let values = [
            Value::Bool(true),
            Value::Int(0),
            Value::Int(i32::MIN),
            Value::Int(i32::MAX),
            Value::String(String::new()),
            Value::String("x".repeat(31)),
            Value::String("y".repeat(300)),
            Value::String("z".repeat(70_000)),
        ];
        for attrs in 0..6usize {
            for payload in [0usize, 1, 255, 256, 70_000] {
                let attributes: Attributes = (0..attrs)
                    .map(|i| {
                        let name = AttrName::new("n".repeat(1 + i * 25)).expect("a name");
                        (name, values[(i * 3 + payload) % values.len()].clone())
                    })
                    .collect();
                let payload = vec![7u8; payload];
                let checked =
                    palio_protocol::publish_persistent_len(u64::MAX, &attributes, &payload);
                let frame = ClientFrame::PublishPersistent {
                    seq: u64::MAX,
                    attributes,
                    payload,
                };
                let exact = palio_protocol::encoded_len(&frame).expect("encodes");
                assert_eq!(checked, exact);
            }
        }
    }
}
