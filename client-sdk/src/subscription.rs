//! A subscription's stream of notifications.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::Stream;
use tokio::sync::mpsc;

use crate::notification::Notification;

/// The notifications matching one subscription, in the order the broker delivered them.
///
/// A [`Stream`]; [`next`](Self::next) is the same without importing a stream trait. The stream
/// ends when the subscription is ended with [`Client::unsubscribe`](crate::Client::unsubscribe)
/// or the connection closes.
#[derive(Debug)]
pub struct Subscription {
    id: u64,
    filter: String,
    rx: mpsc::Receiver<Notification>,
}

impl Subscription {
    pub(crate) fn new(id: u64, filter: String, rx: mpsc::Receiver<Notification>) -> Self {
        Self { id, filter, rx }
    }

    /// The broker's id for this subscription.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The filter.
    pub fn filter(&self) -> &str {
        &self.filter
    }

    /// The next notification, or `None` once the subscription has ended.
    pub async fn next(&mut self) -> Option<Notification> {
        self.rx.recv().await
    }
}

impl Stream for Subscription {
    type Item = Notification;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Notification>> {
        self.rx.poll_recv(cx)
    }
}
