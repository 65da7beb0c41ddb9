//! Durable queue administration: add, remove, list, describe.
//!
//! Queues live at the broker the client is connected to, and belong to the principal that added
//! them: only it (or an admin) may consume from, describe or remove one, and a listing shows
//! only those ([`ErrorCode::PermissionDenied`] for another's). Each queue `NAME` has a dead-letter
//! queue `NAME.dlq`, listed and described like any queue, which receives the messages
//! delivered [`QueueOptions::max_deliveries`] times without an ack.

use palio_protocol::{ClientFrame, ErrorCode, QueueInfo, QueueOptions, ServerFrame};

use crate::client::{Client, unexpected};
use crate::error::Error;

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
            .request(
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
    pub async fn queue_remove(&self, name: &str) -> Result<(), Error> {
        let answer = self
            .request(
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
    pub async fn queue_list(&self) -> Result<Vec<QueueInfo>, Error> {
        let answer = self
            .request(|request| ClientFrame::QueueList { request }, None)
            .await?;
        match answer {
            ServerFrame::Queues { queues, .. } => Ok(queues),
            other => Err(unexpected(other)),
        }
    }

    /// One queue (`NAME.dlq` for a dead-letter queue): its filter, options and counts
    /// ([`ErrorCode::QueueNotFound`] if there is none).
    pub async fn queue_info(&self, name: &str) -> Result<QueueInfo, Error> {
        let answer = self
            .request(
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
}
