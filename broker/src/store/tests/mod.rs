//! Tests of the whole log: scenarios on real files (`scenarios`), failures injected through the
//! simulated file system (`faults`), a model-based property test with crashes (`model`), and
//! the simulated file system's own behaviour (`sim_fs`).

use std::sync::mpsc;

use super::{Log, Notify, Position, StoreError, SyncEvent};

mod faults;
mod model;
mod scenarios;
mod sim_fs;

/// The log moves between threads with its owning task; its errors go to many waiters.
#[test]
fn log_is_send_and_errors_are_shareable() {
    fn send<T: Send>() {}
    fn shareable<T: Clone + Send + Sync + 'static>() {}
    send::<Log>();
    shareable::<StoreError>();
    shareable::<SyncEvent>();
}

/// The receiving end of a log's notifications.
pub(super) struct Events {
    rx: mpsc::Receiver<SyncEvent>,
    /// Everything received so far, in order.
    seen: Vec<SyncEvent>,
}

/// A notify callback forwarding into a channel, and its receiver.
pub(super) fn events() -> (Notify, Events) {
    let (tx, rx) = mpsc::channel();
    let notify: Notify = Box::new(move |event| {
        // The receiver may be gone when a test is finished with a log.
        let _ = tx.send(event);
    });
    (
        notify,
        Events {
            rx,
            seen: Vec::new(),
        },
    )
}

impl Events {
    /// Takes what has arrived, checking the contract on the whole sequence: `Synced`
    /// positions grow, at most one `Failed`, and no `Synced` after it.
    pub(super) fn drain(&mut self) -> &[SyncEvent] {
        self.seen.extend(self.rx.try_iter());
        self.check();
        &self.seen
    }

    /// Blocks until a `Synced` at or beyond `end` or a `Failed` arrives.
    pub(super) fn wait(&mut self, end: Position) -> &SyncEvent {
        loop {
            if let Some(i) = self.seen.iter().position(|e| {
                matches!(e, SyncEvent::Synced(p) if *p >= end) || matches!(e, SyncEvent::Failed(_))
            }) {
                self.check();
                return &self.seen[i];
            }
            let event = self
                .rx
                .recv()
                .expect("the log's sync thread outlives the wait");
            self.seen.push(event);
        }
    }

    /// The furthest position reported durable.
    pub(super) fn synced(&mut self) -> Option<Position> {
        self.drain()
            .iter()
            .filter_map(|e| match e {
                SyncEvent::Synced(p) => Some(*p),
                SyncEvent::Failed(_) => None,
            })
            .max()
    }

    /// The failure reported, if any.
    pub(super) fn failure(&mut self) -> Option<StoreError> {
        self.drain().iter().find_map(|e| match e {
            SyncEvent::Failed(err) => Some(err.clone()),
            SyncEvent::Synced(_) => None,
        })
    }

    fn check(&self) {
        let mut last = None;
        let mut failed = false;
        for e in &self.seen {
            match e {
                SyncEvent::Synced(p) => {
                    assert!(!failed, "Synced({p}) reported after Failed");
                    assert!(
                        last < Some(*p),
                        "Synced positions must grow: {last:?} then {p}"
                    );
                    last = Some(*p);
                }
                SyncEvent::Failed(_) => {
                    assert!(!failed, "Failed reported twice");
                    failed = true;
                }
            }
        }
    }
}
