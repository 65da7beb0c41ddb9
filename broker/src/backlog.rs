//! Backpressure from peer links to publishers.
//!
//! The router never waits on a peer link (it would risk a deadlock between two brokers whose
//! links are both full), so a fast publisher could fill a slower link's queue and have
//! notifications dropped there. Instead, every notification queued toward any peer is counted
//! in a [`Backlog`], and client sessions hold a publication back while the backlog is above a
//! high-water mark (half a peer queue), resuming when a link writer drains it. The publisher's
//! QUIC stream then fills and the publisher itself is slowed: backpressure, end to end, instead
//! of loss. The wait is bounded (one second per publication), so a stuck link cannot stall
//! publishers forever; past it, the peer queue's declared drop policy applies.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use palio_topology::PeerFrame;
use tokio::sync::Notify;

/// Notifications queued toward peers, over all links.
#[derive(Debug)]
pub(crate) struct Backlog {
    queued: AtomicUsize,
    high_water: usize,
    drained: Notify,
}

impl Backlog {
    pub(crate) fn new(high_water: usize) -> Arc<Self> {
        Arc::new(Self {
            queued: AtomicUsize::new(0),
            high_water: high_water.max(1),
            drained: Notify::new(),
        })
    }

    /// Waits (at most one second) until the backlog is at or below the high-water mark.
    pub(crate) async fn wait_below_high_water(&self) {
        if self.queued.load(Ordering::Relaxed) <= self.high_water {
            return;
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            loop {
                let notified = self.drained.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if self.queued.load(Ordering::Relaxed) <= self.high_water {
                    return;
                }
                notified.await;
            }
        })
        .await;
    }
}

/// A frame in a peer link's queue. A notification counts in the backlog from creation until
/// it is dropped: written, refused by a full queue, or discarded with a dead link's queue.
#[derive(Debug)]
pub(crate) struct Queued {
    frame: Option<PeerFrame>,
    backlog: Option<Arc<Backlog>>,
}

impl Queued {
    pub(crate) fn new(frame: PeerFrame, backlog: &Arc<Backlog>) -> Self {
        let counted = matches!(frame, PeerFrame::Notification(_));
        if counted {
            backlog.queued.fetch_add(1, Ordering::Relaxed);
        }
        Self {
            frame: Some(frame),
            backlog: counted.then(|| backlog.clone()),
        }
    }

    /// Takes the frame out (for writing); the count is released when `self` drops.
    pub(crate) fn take(&mut self) -> Option<PeerFrame> {
        self.frame.take()
    }
}

impl Drop for Queued {
    fn drop(&mut self) {
        if let Some(b) = &self.backlog {
            let before = b.queued.fetch_sub(1, Ordering::Relaxed);
            if before == b.high_water + 1 {
                b.drained.notify_waiters();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use palio_filter::Event;
    use palio_topology::{Notification, NotificationId};

    use super::*;

    fn note() -> PeerFrame {
        PeerFrame::Notification(Arc::new(Notification {
            id: NotificationId(1),
            attributes: Event::new(),
            payload: Vec::new(),
        }))
    }

    #[tokio::test]
    async fn waiters_resume_when_the_backlog_drains() {
        let b = Backlog::new(2);
        let mut q: Vec<Queued> = (0..4).map(|_| Queued::new(note(), &b)).collect();
        assert_eq!(b.queued.load(Ordering::Relaxed), 4);
        let waiter = {
            let b = b.clone();
            tokio::spawn(async move {
                let t = tokio::time::Instant::now();
                b.wait_below_high_water().await;
                t.elapsed()
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        q.pop();
        q.pop();
        let waited = waiter.await.unwrap();
        assert!(waited >= Duration::from_millis(15) && waited < Duration::from_millis(900));
        drop(q);
        assert_eq!(b.queued.load(Ordering::Relaxed), 0);
    }
}
