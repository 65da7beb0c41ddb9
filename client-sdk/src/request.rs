//! Request/reply: [`Client::request`], [`Client::reply`] and the [`Responder`] stream.
//!
//! A request is routed by content like a publication: every subscription that matches it,
//! anywhere in the network, gets it (as a [`Notification`] for which
//! [`is_request`](Notification::is_request) is true). The first reply goes straight back to
//! the requester, across brokers. When nothing matches, the requester learns it at once
//! ([`ErrorCode::NoResponders`](crate::ErrorCode::NoResponders)), not at its timeout.
//!
//! Requests arrive on the connection's control stream, whose reader never waits on the
//! application: a responder whose queue is full loses the request (the requester times out,
//! or another responder answers).

use std::time::Duration;

use palio_protocol::{ClientFrame, ServerFrame};

use crate::client::{Client, unexpected};
use crate::error::Error;
use crate::notification::Notification;
use crate::subscription::Subscription;

impl Client {
    /// Sends a request and waits, at most `timeout`, for the first reply.
    ///
    /// Fails with [`Error::Request`] whose code is
    /// [`ErrorCode::NoResponders`](crate::ErrorCode::NoResponders) as soon as the
    /// broker network knows that no subscription matches the request, and with
    /// [`Error::Timeout`] if subscribers got it but none replied in time.
    ///
    /// ```no_run
    /// # async fn demo(client: &palio::Client) -> Result<(), palio::Error> {
    /// use std::time::Duration;
    /// use palio::{ErrorCode, Notification};
    ///
    /// let question = Notification::builder().attr("type", "price").attr("item", "tea").build()?;
    /// match client.request(question, Duration::from_secs(2)).await {
    ///     Ok(answer) => println!("{}", String::from_utf8_lossy(answer.payload())),
    ///     Err(e) if e.code() == Some(ErrorCode::NoResponders) => println!("nobody answers"),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn request(
        &self,
        request: Notification,
        timeout: Duration,
    ) -> Result<Notification, Error> {
        let (attributes, payload) = request.into_parts();
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let answer = self
            .shared
            .request(
                |request| ClientFrame::Request {
                    request,
                    timeout_ms,
                    attributes,
                    payload,
                },
                None,
                timeout,
            )
            .await;
        match answer {
            Ok(ServerFrame::Replied {
                attributes,
                payload,
                ..
            }) => Ok(Notification::new(attributes, payload)),
            Ok(other) => Err(unexpected(other)),
            Err(Error::Timeout(_)) => Err(Error::Timeout("waiting for a reply")),
            Err(e) => Err(e),
        }
    }

    /// Answers `request` (a notification from a subscription, for which
    /// [`is_request`](Notification::is_request) is true) with `reply`. Not acknowledged: a
    /// reply that comes after another, or after the requester's timeout, is dropped. A reply
    /// outside the principal's publish permission is refused like a publication (reported by
    /// the next [`flush`](Client::flush)).
    ///
    /// ```no_run
    /// # async fn demo(client: &palio::Client) -> Result<(), palio::Error> {
    /// use palio::Notification;
    ///
    /// let mut prices = client.subscribe("type = 'price'").await?;
    /// while let Some(n) = prices.next().await {
    ///     if n.is_request() {
    ///         client.reply(&n, Notification::builder().payload("4.20").build()?).await?;
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn reply(&self, request: &Notification, reply: Notification) -> Result<(), Error> {
        let Some(reply_to) = request.reply_to() else {
            return Err(Error::InvalidRequest(
                "not a request: only a notification delivered as a request can be answered".into(),
            ));
        };
        // Not kept while reconnecting: the requester waits for no longer than its timeout.
        if let Some(e) = self.shared.unusable() {
            return Err(e);
        }
        let (attributes, payload) = reply.into_parts();
        let frame = ClientFrame::Reply {
            reply_to,
            attributes,
            payload,
        };
        self.shared.check_size(&frame, "reply")?;
        self.shared
            .out
            .send(&frame)
            .await
            .map_err(|e| self.shared.not_queued(e))
    }

    /// Subscribes with `filter` to answer requests: a [`Responder`] yields only the requests
    /// that match (notifications that match are skipped).
    ///
    /// ```no_run
    /// # async fn demo(client: &palio::Client) -> Result<(), palio::Error> {
    /// use palio::Notification;
    ///
    /// let mut responder = client.responder("type = 'time'").await?;
    /// while let Some(request) = responder.next().await {
    ///     let now = Notification::builder().payload("12:00").build()?;
    ///     client.reply(&request, now).await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn responder(&self, filter: &str) -> Result<Responder, Error> {
        Ok(Responder {
            subscription: self.subscribe(filter).await?,
        })
    }
}

/// The requests matching a filter, from [`Client::responder`]; answer each with
/// [`Client::reply`].
///
/// ```no_run
/// # async fn demo(client: palio::Client) -> Result<(), palio::Error> {
/// let mut responder = client.responder("type = 'echo'").await?;
/// while let Some(request) = responder.next().await {
///     let echo = palio::Notification::builder().payload(request.payload().to_vec()).build()?;
///     client.reply(&request, echo).await?;
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Responder {
    subscription: Subscription,
}

impl Responder {
    /// The next request, or `None` once the subscription has ended.
    ///
    /// ```no_run
    /// # async fn demo(mut responder: palio::Responder) -> Result<(), palio::Error> {
    /// if let Some(request) = responder.next().await {
    ///     assert!(request.is_request());
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn next(&mut self) -> Option<Notification> {
        loop {
            let n = self.subscription.next().await?;
            if n.is_request() {
                return Some(n);
            }
        }
    }

    /// The subscription behind it (to end it with [`Client::unsubscribe`]).
    ///
    /// ```no_run
    /// # async fn demo(client: palio::Client, responder: palio::Responder) -> Result<(), palio::Error> {
    /// client.unsubscribe(responder.subscription()).await?;
    /// # Ok(()) }
    /// ```
    pub fn subscription(&self) -> &Subscription {
        &self.subscription
    }
}
