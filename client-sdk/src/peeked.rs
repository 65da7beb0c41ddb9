//! A message of a durable queue as [`Client::queue_peek`](crate::Client::queue_peek) shows it:
//! looked at, not delivered, so it cannot be acked and has no tag.

use palio_filter::{Event, Value};
use serde_json::Value as Json;

use crate::message::durable_json;
use crate::notification::Notification;

/// A pending message of a durable queue, shown by
/// [`Client::queue_peek`](crate::Client::queue_peek) without being delivered: its delivery
/// count is what it was (0 if it was never delivered), and consumers still get it.
///
/// ```no_run
/// # async fn demo(client: palio::Client) -> Result<(), palio::Error> {
/// for m in client.queue_peek("orders", 10).await? {
///     println!("{} (delivered {} times)", m.to_json(), m.delivery_count());
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct PeekedMessage {
    notification: Notification,
    delivery_count: u32,
    queue: String,
}

impl PeekedMessage {
    pub(crate) fn new(m: palio_protocol::PeekedMessage, queue: &str) -> Self {
        Self {
            notification: Notification::new(m.attributes, m.payload),
            delivery_count: m.delivery_count,
            queue: queue.to_owned(),
        }
    }

    /// The notification.
    ///
    /// ```no_run
    /// # fn demo(m: &palio::PeekedMessage) -> Result<(), palio::Error> {
    /// let n: &palio::Notification = m.notification();
    /// println!("{:?}", n.get("type"));
    /// # Ok(()) }
    /// ```
    pub fn notification(&self) -> &Notification {
        &self.notification
    }

    /// Its attributes.
    ///
    /// ```no_run
    /// # fn demo(m: &palio::PeekedMessage) -> Result<(), palio::Error> {
    /// println!("{} attributes", m.attributes().len());
    /// # Ok(()) }
    /// ```
    pub fn attributes(&self) -> &Event {
        self.notification.attributes()
    }

    /// One attribute.
    ///
    /// ```no_run
    /// # fn demo(m: &palio::PeekedMessage) -> Result<(), palio::Error> {
    /// if let Some(palio::filter::Value::String(t)) = m.get("type") {
    ///     println!("type {t}");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.notification.get(name)
    }

    /// Its payload.
    ///
    /// ```no_run
    /// # fn demo(m: &palio::PeekedMessage) -> Result<(), palio::Error> {
    /// println!("{} bytes", m.payload().len());
    /// # Ok(()) }
    /// ```
    pub fn payload(&self) -> &[u8] {
        self.notification.payload()
    }

    /// How many times it was delivered so far (0: never).
    ///
    /// ```no_run
    /// # fn demo(m: &palio::PeekedMessage) -> Result<(), palio::Error> {
    /// if m.delivery_count() == 0 {
    ///     println!("never delivered yet");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn delivery_count(&self) -> u32 {
        self.delivery_count
    }

    /// The queue it is in.
    ///
    /// ```no_run
    /// # fn demo(m: &palio::PeekedMessage) -> Result<(), palio::Error> {
    /// println!("in {}", m.queue());
    /// # Ok(()) }
    /// ```
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// The line `palio queue peek` prints: the `palio sub` line plus `delivery_count` and
    /// `queue` (no `tag`: it was not delivered).
    ///
    /// ```no_run
    /// # fn demo(m: &palio::PeekedMessage) -> Result<(), palio::Error> {
    /// assert!(m.to_json().get("tag").is_none());
    /// # Ok(()) }
    /// ```
    pub fn to_json(&self) -> Json {
        durable_json(&self.notification, self.delivery_count, &self.queue, None)
    }
}
