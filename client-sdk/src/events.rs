//! What the application can watch of its connection: [`ConnectionEvent`]s (lost, back,
//! ended) on a [`ConnectionEvents`] stream, and the [`CloseReason`] a client ended with.
//!
//! Each [`Client::events`](crate::Client::events) call gets its own unbounded queue (events
//! are rare: one per disconnection, reconnection and ending); the link supervisor
//! (`link.rs`) emits them, and every stream ends after [`ConnectionEvent::Closed`].

use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

use futures_util::Stream;
use palio_protocol::ErrorCode;
use tokio::sync::mpsc;

use crate::error::Error;

/// A change of a client's connection.
///
/// ```
/// use palio::{CloseReason, ConnectionEvent};
///
/// fn describe(event: &ConnectionEvent) -> String {
///     match event {
///         ConnectionEvent::Disconnected { reason } => format!("reconnecting ({reason})"),
///         ConnectionEvent::Reconnected { server, attempts } => {
///             format!("back on {server} after {attempts} attempt(s)")
///         }
///         ConnectionEvent::Closed(why) => format!("closed: {why}"),
///         _ => "something else".to_owned(),
///     }
/// }
/// let closed = ConnectionEvent::Closed(CloseReason::Local);
/// assert_eq!(describe(&closed), "closed: connection closed by the application");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionEvent {
    /// The connection was lost; the client is reconnecting. Requests fail with
    /// [`Error::Disconnected`] meanwhile; best-effort publications are buffered.
    Disconnected {
        /// Why it was lost.
        reason: String,
    },
    /// The client is connected again: its subscriptions, durable consumers and producer are
    /// restored, and the publications buffered meanwhile were sent.
    Reconnected {
        /// The broker's address.
        server: String,
        /// The attempts it took.
        attempts: u32,
    },
    /// The client's connection ended for good; nothing more will come.
    Closed(CloseReason),
}

/// Why a client's connection ended for good.
///
/// ```
/// use palio::{CloseReason, ErrorCode};
///
/// let shutdown = CloseReason::Broker {
///     code: Some(ErrorCode::ShuttingDown),
///     message: "broker shutting down".into(),
/// };
/// assert_eq!(shutdown.to_error().code(), Some(ErrorCode::ShuttingDown));
/// assert_eq!(CloseReason::Local.to_string(), "connection closed by the application");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The application closed the client ([`Client::close`](crate::Client::close) or drop).
    Local,
    /// The broker closed the connection with a reason, e.g. [`ErrorCode::SlowConsumer`]; not
    /// retried. A clean shutdown ([`ErrorCode::ShuttingDown`]) ends the client this way only
    /// when reconnecting is off; otherwise the client reconnects, as after a lost connection.
    Broker {
        /// The broker's code, if it gave one.
        code: Option<ErrorCode>,
        /// Its explanation.
        message: String,
    },
    /// The connection was lost and reconnecting is off.
    Lost {
        /// Why it was lost.
        reason: String,
    },
    /// The connection was lost and could not be re-established.
    GaveUp {
        /// The broker's address.
        server: String,
        /// The attempts made.
        attempts: u32,
        /// Why the last attempt failed.
        reason: String,
    },
}

impl CloseReason {
    /// The error that calls on the closed client report.
    ///
    /// ```
    /// use palio::{CloseReason, Error};
    ///
    /// let gave_up = CloseReason::GaveUp {
    ///     server: "127.0.0.1:7400".into(),
    ///     attempts: 3,
    ///     reason: "timed out".into(),
    /// };
    /// assert!(matches!(gave_up.to_error(), Error::ReconnectFailed { attempts: 3, .. }));
    /// assert!(matches!(CloseReason::Local.to_error(), Error::ClosedLocally));
    /// ```
    pub fn to_error(&self) -> Error {
        match self {
            CloseReason::Local => Error::ClosedLocally,
            CloseReason::Broker { code, message } => Error::Closed {
                code: *code,
                message: message.clone(),
            },
            CloseReason::Lost { reason } => Error::Closed {
                code: None,
                message: reason.clone(),
            },
            CloseReason::GaveUp {
                server,
                attempts,
                reason,
            } => Error::ReconnectFailed {
                server: server.clone(),
                attempts: *attempts,
                reason: reason.clone(),
            },
        }
    }
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.to_error().fmt(f)
    }
}

/// The queues of the application's event streams.
#[derive(Default)]
pub(crate) struct EventHub {
    /// `None` once the client has ended, with the reason.
    listeners: Mutex<Hub>,
}

#[derive(Default)]
struct Hub {
    senders: Vec<mpsc::UnboundedSender<ConnectionEvent>>,
    ended: Option<CloseReason>,
}

impl EventHub {
    /// A new stream; if the client has already ended, it yields the ending and ends.
    pub(crate) fn subscribe(&self) -> ConnectionEvents {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut hub = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
        match &hub.ended {
            Some(reason) => {
                let _ = tx.send(ConnectionEvent::Closed(reason.clone()));
            }
            None => hub.senders.push(tx),
        }
        ConnectionEvents { rx }
    }

    /// Tells every stream (forgetting those the application dropped); a
    /// [`ConnectionEvent::Closed`] ends them.
    pub(crate) fn emit(&self, event: ConnectionEvent) {
        let mut hub = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
        hub.senders.retain(|tx| tx.send(event.clone()).is_ok());
        if let ConnectionEvent::Closed(reason) = event {
            hub.senders.clear();
            hub.ended = Some(reason);
        }
    }
}

/// The [`ConnectionEvent`]s of a client, in the order they happened: a [`Stream`];
/// [`next`](Self::next) is the same without importing a stream trait. It ends after
/// [`ConnectionEvent::Closed`].
///
/// ```no_run
/// # async fn demo() -> Result<(), palio::Error> {
/// use palio::{Client, ConnectOptions, ConnectionEvent};
///
/// let client = Client::connect(ConnectOptions::new("127.0.0.1:7400").tls_dir("palio-data/tls")).await?;
/// let mut events = client.events();
/// tokio::spawn(async move {
///     while let Some(event) = events.next().await {
///         match event {
///             ConnectionEvent::Disconnected { reason } => eprintln!("lost the broker: {reason}"),
///             ConnectionEvent::Reconnected { server, .. } => eprintln!("back on {server}"),
///             ConnectionEvent::Closed(why) => eprintln!("closed: {why}"),
///             _ => {}
///         }
///     }
/// });
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct ConnectionEvents {
    rx: mpsc::UnboundedReceiver<ConnectionEvent>,
}

impl ConnectionEvents {
    /// The next event, or `None` after [`ConnectionEvent::Closed`].
    ///
    /// ```no_run
    /// # async fn demo(client: palio::Client) -> Result<(), palio::Error> {
    /// let mut events = client.events();
    /// while let Some(event) = events.next().await {
    ///     eprintln!("{event:?}");
    /// }
    /// // The stream has ended: the last event was ConnectionEvent::Closed.
    /// # Ok(()) }
    /// ```
    pub async fn next(&mut self) -> Option<ConnectionEvent> {
        self.rx.recv().await
    }
}

impl Stream for ConnectionEvents {
    type Item = ConnectionEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn streams_see_events_in_order_and_end_after_closed() {
        let hub = EventHub::default();
        let mut early = hub.subscribe();
        hub.emit(ConnectionEvent::Disconnected { reason: "x".into() });
        hub.emit(ConnectionEvent::Closed(CloseReason::Local));
        assert_eq!(
            early.next().await,
            Some(ConnectionEvent::Disconnected { reason: "x".into() })
        );
        assert_eq!(
            early.next().await,
            Some(ConnectionEvent::Closed(CloseReason::Local))
        );
        assert_eq!(early.next().await, None);
        // A stream asked for later still learns how the client ended.
        let mut late = hub.subscribe();
        assert_eq!(
            late.next().await,
            Some(ConnectionEvent::Closed(CloseReason::Local))
        );
        assert_eq!(late.next().await, None);
    }
}
