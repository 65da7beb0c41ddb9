//! Durable queue administration: add, remove, list, describe, purge, peek.
//!
//! Queues live at the broker the client is connected to, and belong to the principal that added
//! them: only it (or an admin) may consume from, describe or remove one, and a listing shows
//! only those ([`ErrorCode::PermissionDenied`] for another's). Each queue `NAME` has a dead-letter
//! queue `NAME.dlq`, listed and described like any queue, which receives the messages
//! delivered [`QueueOptions::max_deliveries`] times without an ack.

use palio_protocol::{ClientFrame, ErrorCode, QueueInfo, QueueOptions, ServerFrame};

use crate::client::{Client, unexpected};
use crate::error::Error;
use crate::peeked::PeekedMessage;

impl Client {
    /// Adds a durable queue at this broker: from now on it keeps every matching persistent
    /// notification until a consumer acks it, within its size limits ([`QueueOptions`]).
    /// Adding a queue that exists with the same filter and options is not an error; with
    /// others it is ([`ErrorCode::QueueExists`]). Limits above the broker's, or a broker at its
    /// number of queues, are refused with [`ErrorCode::LimitExceeded`].
    ///
    /// ```no_run
    /// # async fn demo(client: palio::Client) -> Result<(), palio::Error> {
    /// use palio::{Discard, QueueOptions};
    ///
    /// let options = QueueOptions {
    ///     ack_wait_ms: Some(10_000),
    ///     max_deliveries: Some(3),
    ///     max_messages: Some(100_000),
    ///     discard: Some(Discard::New),
    ///     ..QueueOptions::default()
    /// };
    /// client.queue_add("orders", "type = 'order'", options).await?;
    /// let info = client.queue_info("orders").await?;
    /// println!("{} pending, {} unacked", info.pending, info.unacked);
    /// # Ok(()) }
    /// ```
    pub async fn queue_add(
        &self,
        name: &str,
        filter: &str,
        options: QueueOptions,
    ) -> Result<(), Error> {
        let answer = self
            .call(
                |request| ClientFrame::QueueAdd {
                    request,
                    name: name.to_owned(),
                    filter: filter.to_owned(),
                    options,
                },
                None,
            )
            .await?;
        match answer {
            ServerFrame::Done { .. } => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Removes a durable queue, its dead-letter queue and their messages
    /// ([`ErrorCode::QueueNotFound`] if there is none). `NAME.dlq` empties the dead-letter
    /// queue of `NAME`: it lives as long as `NAME` does, and later dead letters go to it again.
    ///
    /// ```no_run
    /// # async fn demo(client: palio::Client) -> Result<(), palio::Error> {
    /// client.queue_remove("orders.dlq").await?; // empties the dead letters
    /// client.queue_remove("orders").await?;     // the queue, its dead letters and messages
    /// # Ok(()) }
    /// ```
    pub async fn queue_remove(&self, name: &str) -> Result<(), Error> {
        let answer = self
            .call(
                |request| ClientFrame::QueueRemove {
                    request,
                    name: name.to_owned(),
                },
                None,
            )
            .await?;
        match answer {
            ServerFrame::Done { .. } => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// This broker's durable queues that this client's principal may use, dead-letter queues
    /// included. A long listing comes from the broker in several frames; this returns all of
    /// them, in the broker's order.
    ///
    /// ```no_run
    /// # async fn demo(client: palio::Client) -> Result<(), palio::Error> {
    /// for q in client.queue_list().await? {
    ///     println!("{}: {} pending, {} consumers", q.name, q.pending, q.consumers);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn queue_list(&self) -> Result<Vec<QueueInfo>, Error> {
        let answer = self
            .call(|request| ClientFrame::QueueList { request }, None)
            .await?;
        match answer {
            ServerFrame::Queues { queues, .. } => Ok(queues),
            other => Err(unexpected(other)),
        }
    }

    /// One queue (`NAME.dlq` for a dead-letter queue): its filter, options and counts
    /// ([`ErrorCode::QueueNotFound`] if there is none).
    ///
    /// ```no_run
    /// # async fn demo(client: palio::Client) -> Result<(), palio::Error> {
    /// let q = client.queue_info("orders.dlq").await?;
    /// println!("{} dead letters", q.pending);
    /// # Ok(()) }
    /// ```
    pub async fn queue_info(&self, name: &str) -> Result<QueueInfo, Error> {
        let answer = self
            .call(
                |request| ClientFrame::QueueInfo {
                    request,
                    name: name.to_owned(),
                },
                None,
            )
            .await?;
        match answer {
            ServerFrame::Queues { queues, .. } => queues
                .into_iter()
                .find(|q| q.name == name)
                .ok_or_else(|| Error::Request {
                    code: ErrorCode::QueueNotFound,
                    message: format!("no queue named {name:?}"),
                }),
            other => Err(unexpected(other)),
        }
    }

    /// Removes every message of a queue (`NAME.dlq`: of a dead-letter queue), pending and
    /// unacked, and returns how many there were, once the removal is on the broker's disk (it
    /// survives a restart). The queue and its consumers stay; an ack of a purged message in
    /// flight is refused with [`ErrorCode::UnknownId`]. Like every queue operation, only the
    /// queue's owner or an admin may ([`ErrorCode::PermissionDenied`]).
    ///
    /// ```no_run
    /// # async fn demo(client: palio::Client) -> Result<(), palio::Error> {
    /// let removed = client.queue_purge("orders").await?;
    /// println!("{removed} messages purged");
    /// assert_eq!(client.queue_info("orders").await?.pending, 0);
    /// # Ok(()) }
    /// ```
    pub async fn queue_purge(&self, name: &str) -> Result<u64, Error> {
        let answer = self
            .call(
                |request| ClientFrame::QueuePurge {
                    request,
                    name: name.to_owned(),
                },
                None,
            )
            .await?;
        match answer {
            ServerFrame::Purged { messages, .. } => Ok(messages),
            other => Err(unexpected(other)),
        }
    }

    /// The next (at most `max`) pending messages of a queue (`NAME.dlq` for a dead-letter
    /// queue), in queue order, without delivering them: nothing is acked, no delivery count
    /// changes, and consumers get them as if nobody had looked. Messages in flight to a
    /// consumer are not shown. `max` is 1 to [`MAX_FETCH_BATCH`](crate::MAX_FETCH_BATCH)
    /// (more is refused with [`ErrorCode::LimitExceeded`]); fewer come back when the queue has
    /// fewer, or when more would not fit in one frame of the broker's. Only the queue's owner
    /// or an admin may peek.
    ///
    /// ```no_run
    /// # async fn demo(client: palio::Client) -> Result<(), palio::Error> {
    /// for m in client.queue_peek("orders", 10).await? {
    ///     println!("{:?} (delivered {} times)", m.get("type"), m.delivery_count());
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn queue_peek(&self, name: &str, max: u32) -> Result<Vec<PeekedMessage>, Error> {
        let answer = self
            .call(
                |request| ClientFrame::QueuePeek {
                    request,
                    name: name.to_owned(),
                    max,
                },
                None,
            )
            .await?;
        match answer {
            ServerFrame::Peeked { messages, .. } => Ok(messages
                .into_iter()
                .map(|m| PeekedMessage::new(m, name))
                .collect()),
            other => Err(unexpected(other)),
        }
    }
}
