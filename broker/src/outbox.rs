//! Outboxes: the queue between the task that decides what to send (the router, the persist
//! task, a session answering requests) and the writer that puts it on one QUIC stream.
//!
//! An outbox never refuses an item for lack of room and never makes the producer wait: the
//! router must not block on one slow receiver (two brokers waiting on each other's full links
//! would deadlock). Instead every outbox meters what it holds, in frames and in bytes, against
//! a limit; a push that leaves it over the limit tells the producer so, and the producer
//! passes the outbox's [`Gate`] to the ingress whose traffic went there (see the `pacer`
//! module). That ingress stops reading its own stream until the gate opens, so QUIC flow
//! control slows the sender behind it: backpressure, hop by hop, instead of loss. An outbox
//! therefore exceeds its limit by at most the batches already on their way to it.
//!
//! The writer ([`Inbox`]) releases what it has handed to the stream, which reopens the gate,
//! and closes the outbox when it stops, so that nobody waits on a dead receiver.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::sync::{Notify, mpsc};

/// The limits of one outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Capacity {
    /// Frames held before the outbox counts as full.
    pub(crate) frames: usize,
    /// Bytes (estimated encoded size) held before the outbox counts as full.
    pub(crate) bytes: usize,
}

/// What an outbox holds, shared by its producers, its writer and the ingresses waiting on it.
#[derive(Debug)]
struct Meter {
    frames: AtomicUsize,
    bytes: AtomicUsize,
    capacity: Capacity,
    /// Set when the writer stopped: pushes fail and waiters are released.
    closed: AtomicBool,
    /// Signalled when the outbox drops back under its limit, or closes.
    opened: Notify,
}

impl Meter {
    fn over(&self) -> bool {
        self.frames.load(Ordering::Relaxed) > self.capacity.frames
            || self.bytes.load(Ordering::Relaxed) > self.capacity.bytes
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.opened.notify_waiters();
    }
}

/// The producing side of an outbox. Cloning is cheap; every clone feeds the same writer.
#[derive(Debug)]
pub(crate) struct Outbox<T> {
    tx: mpsc::UnboundedSender<(T, usize)>,
    meter: Arc<Meter>,
}

impl<T> Clone for Outbox<T> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            meter: self.meter.clone(),
        }
    }
}

/// The outcome of [`Outbox::push`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// Queued, and the outbox is within its limit.
    Room,
    /// Queued, and the outbox is now over its limit: whoever's traffic this is should wait on
    /// [`Outbox::gate`].
    Full,
    /// The writer has stopped; the item was dropped with the outbox.
    Closed,
}

impl<T> Outbox<T> {
    /// A new outbox and the inbox its writer reads.
    pub(crate) fn new(capacity: Capacity) -> (Self, Inbox<T>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let meter = Arc::new(Meter {
            frames: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            capacity,
            closed: AtomicBool::new(false),
            opened: Notify::new(),
        });
        (
            Self {
                tx,
                meter: meter.clone(),
            },
            Inbox { rx, meter },
        )
    }

    /// Queues `item`, whose encoded size is about `bytes`. Never waits, never refuses for lack
    /// of room (see the module docs).
    pub(crate) fn push(&self, item: T, bytes: usize) -> Pushed {
        if self.meter.is_closed() {
            return Pushed::Closed;
        }
        self.meter.frames.fetch_add(1, Ordering::Relaxed);
        self.meter.bytes.fetch_add(bytes, Ordering::Relaxed);
        if self.tx.send((item, bytes)).is_err() {
            self.meter.frames.fetch_sub(1, Ordering::Relaxed);
            self.meter.bytes.fetch_sub(bytes, Ordering::Relaxed);
            return Pushed::Closed;
        }
        if self.meter.over() {
            Pushed::Full
        } else {
            Pushed::Room
        }
    }

    /// Whether the outbox is over its limit now (the `drop` and `disconnect` policies look
    /// before they push).
    pub(crate) fn is_full(&self) -> bool {
        self.meter.over()
    }

    /// What an ingress waits on until this outbox has room again.
    pub(crate) fn gate(&self) -> Gate {
        Gate(self.meter.clone())
    }

    /// Frames and bytes held now (for `/routes` and tests).
    pub(crate) fn held(&self) -> (usize, usize) {
        (
            self.meter.frames.load(Ordering::Relaxed),
            self.meter.bytes.load(Ordering::Relaxed),
        )
    }
}

/// Waits until an outbox has room again (or its writer stopped).
#[derive(Debug, Clone)]
pub(crate) struct Gate(Arc<Meter>);

impl Gate {
    /// Returns once the outbox is within its limit, or closed.
    pub(crate) async fn opened(&self) {
        loop {
            let notified = self.0.opened.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !self.0.over() || self.0.is_closed() {
                return;
            }
            notified.await;
        }
    }

    /// Whether two gates guard the same outbox.
    pub(crate) fn same(&self, other: &Gate) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// The writer's side of an outbox.
#[derive(Debug)]
pub(crate) struct Inbox<T> {
    rx: mpsc::UnboundedReceiver<(T, usize)>,
    meter: Arc<Meter>,
}

impl<T> Inbox<T> {
    /// The next item and its metered size; `None` once every producer is gone.
    pub(crate) async fn recv(&mut self) -> Option<(T, usize)> {
        self.rx.recv().await
    }

    /// The next item if one is queued.
    pub(crate) fn try_recv(&mut self) -> Option<(T, usize)> {
        self.rx.try_recv().ok()
    }

    /// Releases `frames` items of `bytes` in all, handed to the stream; opens the gate if the
    /// outbox is back within its limit.
    pub(crate) fn release(&self, frames: usize, bytes: usize) {
        self.meter.frames.fetch_sub(frames, Ordering::Relaxed);
        self.meter.bytes.fetch_sub(bytes, Ordering::Relaxed);
        if !self.meter.over() {
            self.meter.opened.notify_waiters();
        }
    }
}

impl<T> Drop for Inbox<T> {
    /// The writer stopped: later pushes fail and every waiting ingress is released.
    fn drop(&mut self) {
        self.meter.close();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const SMALL: Capacity = Capacity {
        frames: 2,
        bytes: 1000,
    };

    #[tokio::test]
    async fn full_in_frames_or_bytes_and_open_again_when_released() {
        let (out, mut inbox) = Outbox::new(SMALL);
        assert_eq!(out.push(1, 10), Pushed::Room);
        assert_eq!(out.push(2, 10), Pushed::Room);
        assert_eq!(out.push(3, 10), Pushed::Full, "three frames > 2");
        let gate = out.gate();
        let waiter = tokio::spawn(async move { gate.opened().await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !waiter.is_finished(),
            "the gate stays shut while over the limit"
        );
        let (item, bytes) = inbox.recv().await.unwrap();
        assert_eq!((item, bytes), (1, 10));
        inbox.release(1, bytes);
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("released under the limit: the gate opens")
            .unwrap();
        assert_eq!(out.held(), (2, 20));

        let (big, _inbox) = Outbox::new(SMALL);
        assert_eq!(
            big.push((), 1001),
            Pushed::Full,
            "one frame over the byte limit"
        );
    }

    #[tokio::test]
    async fn a_stopped_writer_closes_the_outbox_and_releases_waiters() {
        let (out, inbox) = Outbox::new(SMALL);
        for i in 0..3 {
            out.push(i, 1);
        }
        let gate = out.gate();
        let waiter = tokio::spawn(async move { gate.opened().await });
        drop(inbox);
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("a closed outbox releases its waiters")
            .unwrap();
        assert_eq!(out.push(9, 1), Pushed::Closed);
    }
}
