//! A message of a durable queue as the application sees it: the notification, its place in
//! the queue, and the means to acknowledge it.

use std::sync::Arc;
use std::time::Duration;

use palio_filter::{Event, Value};
use serde_json::{Value as Json, json};

use crate::consumer::ConsumerHandle;
use crate::error::Error;
use crate::notification::Notification;

/// A message delivered from a durable queue, to be acknowledged.
///
/// Until it is acked it stays in the queue: if it is not acked within the queue's ack wait,
/// or its consumer goes away, the broker delivers it again with a larger
/// [`delivery_count`](Self::delivery_count). [`ack`](Self::ack) removes it;
/// [`nak`](Self::nak) asks for it again later.
///
/// ```no_run
/// # async fn demo(client: palio::Client) -> Result<(), palio::Error> {
/// let mut orders = client.consume("orders", palio::ConsumeMode::Push { window: 64 }).await?;
/// while let Some(m) = orders.next().await {
///     println!("{:?} (delivery {})", m.get("type"), m.delivery_count());
///     m.ack().await?;
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct DurableMessage {
    notification: Notification,
    tag: u64,
    delivery_count: u32,
    /// The consumer it was delivered to: acks and naks go through it.
    consumer: Arc<ConsumerHandle>,
}

impl std::fmt::Debug for DurableMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DurableMessage")
            .field("queue", &self.queue())
            .field("consumer", &self.consumer.id())
            .field("tag", &self.tag)
            .field("delivery_count", &self.delivery_count)
            .field("notification", &self.notification)
            .finish()
    }
}

impl DurableMessage {
    pub(crate) fn new(m: palio_protocol::DurableMessage, consumer: Arc<ConsumerHandle>) -> Self {
        Self {
            notification: Notification::new(m.attributes, m.payload),
            tag: m.tag,
            delivery_count: m.delivery_count,
            consumer,
        }
    }

    /// The notification.
    ///
    /// ```no_run
    /// # fn demo(m: &palio::DurableMessage) -> Result<(), palio::Error> {
    /// let n: &palio::Notification = m.notification();
    /// println!("{}", n.to_json());
    /// # Ok(()) }
    /// ```
    pub fn notification(&self) -> &Notification {
        &self.notification
    }

    /// The notification, without the means to ack it.
    ///
    /// ```no_run
    /// # fn demo(m: &palio::DurableMessage) -> Result<(), palio::Error> {
    /// let kept: palio::Notification = m.clone().into_notification();
    /// assert_eq!(kept.payload(), m.payload());
    /// # Ok(()) }
    /// ```
    pub fn into_notification(self) -> Notification {
        self.notification
    }

    /// The attributes.
    ///
    /// ```no_run
    /// # fn demo(m: &palio::DurableMessage) -> Result<(), palio::Error> {
    /// for (name, value) in m.attributes().iter() {
    ///     println!("{name} = {value:?}");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn attributes(&self) -> &Event {
        self.notification.attributes()
    }

    /// One attribute.
    ///
    /// ```no_run
    /// # fn demo(m: &palio::DurableMessage) -> Result<(), palio::Error> {
    /// if let Some(palio::filter::Value::Int(level)) = m.get("level") {
    ///     println!("level {level}");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.notification.get(name)
    }

    /// The payload.
    ///
    /// ```no_run
    /// # fn demo(m: &palio::DurableMessage) -> Result<(), palio::Error> {
    /// let text = String::from_utf8_lossy(m.payload());
    /// println!("{text}");
    /// # Ok(()) }
    /// ```
    pub fn payload(&self) -> &[u8] {
        self.notification.payload()
    }

    /// Names the message in its queue (increasing in queue order); acks carry it.
    ///
    /// ```no_run
    /// # fn demo(m: &palio::DurableMessage) -> Result<(), palio::Error> {
    /// println!("{} #{}", m.queue(), m.tag());
    /// # Ok(()) }
    /// ```
    pub fn tag(&self) -> u64 {
        self.tag
    }

    /// 1 on the first delivery, 2 on the next, and so on.
    ///
    /// ```no_run
    /// # fn demo(m: &palio::DurableMessage) -> Result<(), palio::Error> {
    /// if m.delivery_count() > 1 {
    ///     println!("redelivered: {}", m.delivery_count());
    /// }
    /// # Ok(()) }
    /// ```
    pub fn delivery_count(&self) -> u32 {
        self.delivery_count
    }

    /// The queue it comes from.
    ///
    /// ```no_run
    /// # fn demo(m: &palio::DurableMessage) -> Result<(), palio::Error> {
    /// assert!(!m.queue().is_empty());
    /// # Ok(()) }
    /// ```
    pub fn queue(&self) -> &str {
        &self.consumer.queue
    }

    /// The broker's id of the consumer it was delivered to.
    ///
    /// ```no_run
    /// # fn demo(m: &palio::DurableMessage) -> Result<(), palio::Error> {
    /// println!("consumer {}", m.consumer());
    /// # Ok(()) }
    /// ```
    pub fn consumer(&self) -> u64 {
        self.consumer.id()
    }

    /// Acknowledges the message: it leaves the queue. Returns once the broker has the ack on
    /// disk, so an acked message is never delivered again. Fails if its consumer has been
    /// detached (dropped or stopped, or its connection lost): the message is then delivered
    /// again anyway.
    ///
    /// ```no_run
    /// # async fn demo(m: palio::DurableMessage) -> Result<(), palio::Error> {
    /// m.ack().await?; // on the broker's disk: never delivered again
    /// # Ok(()) }
    /// ```
    pub async fn ack(&self) -> Result<(), Error> {
        self.consumer.ack(vec![self.tag]).await
    }

    /// Refuses the message for now: the broker delivers it again (to any consumer of the
    /// queue) after `delay`. It counts as a delivery towards the queue's maximum.
    ///
    /// ```no_run
    /// # async fn demo(m: palio::DurableMessage) -> Result<(), palio::Error> {
    /// m.nak(std::time::Duration::from_secs(5)).await?; // again in 5 s
    /// # Ok(()) }
    /// ```
    pub async fn nak(&self, delay: Duration) -> Result<(), Error> {
        self.consumer.nak(vec![self.tag], delay).await
    }

    /// The `palio sub --durable` output line: the notification's
    /// [`to_json`](Notification::to_json) with `delivery_count`, `queue` and `tag` added.
    ///
    /// ```no_run
    /// # fn demo(m: &palio::DurableMessage) -> Result<(), palio::Error> {
    /// let line = m.to_json();
    /// assert_eq!(line["delivery_count"], m.delivery_count());
    /// # Ok(()) }
    /// ```
    pub fn to_json(&self) -> Json {
        durable_json(
            &self.notification,
            self.delivery_count,
            self.queue(),
            Some(self.tag),
        )
    }
}

/// The JSON line of a durable message (see [`DurableMessage::to_json`]); without `tag` for
/// a message only looked at (`PeekedMessage`).
pub(crate) fn durable_json(
    n: &Notification,
    delivery_count: u32,
    queue: &str,
    tag: Option<u64>,
) -> Json {
    let mut j = n.to_json();
    if let Json::Object(m) = &mut j {
        m.insert("delivery_count".into(), json!(delivery_count));
        m.insert("queue".into(), json!(queue));
        if let Some(tag) = tag {
            m.insert("tag".into(), json!(tag));
        }
    }
    j
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_line_is_the_sub_line_plus_the_delivery() {
        let n = Notification::builder()
            .attr("seq", 4)
            .payload("hi")
            .build()
            .unwrap();
        let line = durable_json(&n, 2, "orders", Some(17)).to_string();
        // Key order is part of what scripts see: the `palio sub` keys first.
        assert_eq!(
            line,
            r#"{"attributes":{"seq":4},"payload":"hi","delivery_count":2,"queue":"orders","tag":17}"#
        );
    }
}
