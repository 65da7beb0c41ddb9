//! A task's handle: how other tasks hand the router, the persist task or the groups task a
//! command, with one mapping for "the task is gone" (the broker is shutting down).

use tokio::sync::{mpsc, oneshot};

use crate::router::Refusal;

/// The refusal every request gets once the broker is shutting down (the task that would answer
/// it is gone).
pub(crate) fn shutting_down() -> Refusal {
    (
        palio_protocol::ErrorCode::ShuttingDown,
        "broker shutting down".to_owned(),
    )
}

/// The sending side of a task's bounded command channel.
#[derive(Debug)]
pub(crate) struct TaskHandle<C>(mpsc::Sender<C>);

impl<C> Clone for TaskHandle<C> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<C> TaskHandle<C> {
    pub(crate) fn new(tx: mpsc::Sender<C>) -> Self {
        Self(tx)
    }

    /// Hands the task a command (waits while its channel is full: the sender is slowed).
    pub(crate) async fn send(&self, cmd: C) -> Result<(), Refusal> {
        self.0.send(cmd).await.map_err(|_| shutting_down())
    }

    /// Sends the command `make` builds around a reply channel and waits for the answer.
    pub(crate) async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> C,
    ) -> Result<T, Refusal> {
        let (tx, rx) = oneshot::channel();
        self.send(make(tx)).await?;
        rx.await.map_err(|_| shutting_down())
    }

    /// Whether the task has stopped.
    pub(crate) fn is_closed(&self) -> bool {
        self.0.is_closed()
    }
}
