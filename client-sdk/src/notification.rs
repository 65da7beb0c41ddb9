//! Notifications: typed attributes and an opaque payload, with a builder and CloudEvents
//! conversions.

use base64::Engine;
use palio_filter::{AttrName, Event, Value};
use palio_protocol::ReplyTo;
use serde_json::{Value as Json, json};

use crate::error::Error;

/// A notification: the attributes filters see, and a payload they never see.
///
/// ```
/// use palio::Notification;
///
/// let n = Notification::builder()
///     .attr("type", "alarm")
///     .attr("level", 3)
///     .attr("urgent", true)
///     .payload("disk full")
///     .build()?;
/// assert_eq!(n.get("level"), Some(&palio::filter::Value::Int(3)));
/// assert_eq!(n.payload(), b"disk full");
/// # Ok::<(), palio::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Notification {
    attributes: Event,
    payload: Vec<u8>,
    /// Set on a request delivered to a subscription: where its reply goes.
    reply_to: Option<ReplyTo>,
}

impl Notification {
    /// A notification from its parts.
    ///
    /// ```
    /// use palio::filter::Event;
    ///
    /// let attributes = Event::new().with("type", "alarm")?.with("level", 3)?;
    /// let n = palio::Notification::new(attributes, "disk full");
    /// assert_eq!(n.payload(), b"disk full");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(attributes: Event, payload: impl Into<Vec<u8>>) -> Self {
        Self {
            attributes,
            payload: payload.into(),
            reply_to: None,
        }
    }

    /// A request delivered to a subscription, answered through `reply_to`.
    pub(crate) fn request(attributes: Event, payload: Vec<u8>, reply_to: ReplyTo) -> Self {
        Self {
            attributes,
            payload,
            reply_to: Some(reply_to),
        }
    }

    /// Whether this is a request ([`Client::request`](crate::Client::request) from some
    /// client) that can be answered with [`Client::reply`](crate::Client::reply). Requests
    /// reach every subscription that matches them, like notifications.
    ///
    /// ```
    /// let n = palio::Notification::builder().attr("type", "ping").build()?;
    /// assert!(!n.is_request()); // built here, not delivered as a request
    /// # Ok::<(), palio::Error>(())
    /// ```
    pub fn is_request(&self) -> bool {
        self.reply_to.is_some()
    }

    /// Where a reply to this request goes, if it is one.
    pub(crate) fn reply_to(&self) -> Option<ReplyTo> {
        self.reply_to
    }

    /// Starts building a notification.
    ///
    /// ```
    /// let n = palio::Notification::builder().attr("type", "alarm").build()?;
    /// assert_eq!(n.attributes().len(), 1);
    /// # Ok::<(), palio::Error>(())
    /// ```
    pub fn builder() -> NotificationBuilder {
        NotificationBuilder::default()
    }

    /// The attributes, sorted by name.
    ///
    /// ```
    /// let n = palio::Notification::builder().attr("b", 2).attr("a", 1).build()?;
    /// let names: Vec<&str> = n.attributes().iter().map(|(k, _)| k.as_str()).collect();
    /// assert_eq!(names, ["a", "b"]);
    /// # Ok::<(), palio::Error>(())
    /// ```
    pub fn attributes(&self) -> &Event {
        &self.attributes
    }

    /// One attribute.
    ///
    /// ```
    /// use palio::filter::Value;
    ///
    /// let n = palio::Notification::builder().attr("level", 3).build()?;
    /// assert_eq!(n.get("level"), Some(&Value::Int(3)));
    /// assert_eq!(n.get("missing"), None);
    /// # Ok::<(), palio::Error>(())
    /// ```
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.attributes.get(name)
    }

    /// The payload: opaque bytes that filters never see.
    ///
    /// ```
    /// let n = palio::Notification::builder().payload([0u8, 159, 146, 150]).build()?;
    /// assert_eq!(n.payload(), &[0, 159, 146, 150]);
    /// # Ok::<(), palio::Error>(())
    /// ```
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// Splits into attributes and payload.
    ///
    /// ```
    /// let n = palio::Notification::builder().attr("type", "alarm").payload("x").build()?;
    /// let (attributes, payload) = n.into_parts();
    /// assert_eq!((attributes.len(), payload), (1, b"x".to_vec()));
    /// # Ok::<(), palio::Error>(())
    /// ```
    pub fn into_parts(self) -> (Event, Vec<u8>) {
        (self.attributes, self.payload)
    }

    /// The `palio sub` output line: `{"attributes": {...}, "payload": "..."}` with the payload
    /// as text when it is UTF-8, else `{"attributes": {...}, "payload_base64": "..."}` with its
    /// bytes in base64 (RFC 4648, padded), so that no byte is lost.
    ///
    /// ```
    /// let n = palio::Notification::builder().attr("level", 5).payload("disk full").build()?;
    /// assert_eq!(
    ///     n.to_json(),
    ///     serde_json::json!({"attributes": {"level": 5}, "payload": "disk full"})
    /// );
    /// let n = palio::Notification::builder().payload(vec![0xff, 0x00]).build()?;
    /// assert_eq!(n.to_json()["payload_base64"], "/wA=");
    /// assert!(n.to_json().get("payload").is_none());
    /// # Ok::<(), palio::Error>(())
    /// ```
    pub fn to_json(&self) -> Json {
        let attributes = self.attributes.to_json();
        match std::str::from_utf8(&self.payload) {
            Ok(text) => json!({ "attributes": attributes, "payload": text }),
            Err(_) => json!({
                "attributes": attributes,
                "payload_base64": base64::engine::general_purpose::STANDARD.encode(&self.payload),
            }),
        }
    }

    /// Reads a CloudEvent in the JSON event format: every context attribute and extension
    /// becomes an attribute; `data` becomes the payload (a JSON string as its text, any other
    /// JSON value as its serialisation; `data_base64` is not decoded but carried as text).
    ///
    /// ```
    /// let ce = serde_json::json!({
    ///     "specversion": "1.0", "id": "1", "source": "/sensors", "type": "temp",
    ///     "celsius": 21, "data": "{\"raw\": 21.4}"
    /// });
    /// let n = palio::Notification::from_cloudevent(&ce)?;
    /// assert_eq!(n.get("type"), Some(&palio::filter::Value::String("temp".into())));
    /// assert_eq!(n.payload(), br#"{"raw": 21.4}"#);
    /// assert_eq!(n.to_cloudevent()["celsius"], 21);
    /// # Ok::<(), palio::Error>(())
    /// ```
    pub fn from_cloudevent(json: &Json) -> Result<Self, Error> {
        let attributes = Event::from_cloudevent_json(json)
            .map_err(|e| Error::InvalidAttribute(e.to_string()))?;
        let payload = match json.get("data").or_else(|| json.get("data_base64")) {
            None | Some(Json::Null) => Vec::new(),
            Some(Json::String(s)) => s.clone().into_bytes(),
            Some(other) => other.to_string().into_bytes(),
        };
        Ok(Self::new(attributes, payload))
    }

    /// The notification as a CloudEvent in JSON: attributes at the top level, the payload as
    /// `data` (a string) when it is UTF-8, else omitted.
    ///
    /// ```
    /// let n = palio::Notification::builder().attr("type", "alarm").payload("hot").build()?;
    /// assert_eq!(n.to_cloudevent(), serde_json::json!({"type": "alarm", "data": "hot"}));
    /// # Ok::<(), palio::Error>(())
    /// ```
    pub fn to_cloudevent(&self) -> Json {
        let mut j = self.attributes.to_json();
        if let (Json::Object(m), Ok(text)) = (&mut j, std::str::from_utf8(&self.payload))
            && !self.payload.is_empty()
        {
            m.insert("data".into(), Json::String(text.to_owned()));
        }
        j
    }
}

/// Builds a [`Notification`]; invalid names are reported by [`build`](Self::build).
///
/// ```
/// let n = palio::Notification::builder()
///     .attr("type", "order")
///     .attr("amount", 250)
///     .attr("paid", false)
///     .payload(r#"{"items": 3}"#)
///     .build()?;
/// assert_eq!(n.attributes().len(), 3);
/// # Ok::<(), palio::Error>(())
/// ```
#[derive(Debug, Default)]
pub struct NotificationBuilder {
    attributes: Event,
    payload: Vec<u8>,
    error: Option<String>,
}

impl NotificationBuilder {
    /// Sets an attribute (`&str`, `String`, `i32` or `bool`). Names are lowercase letters and
    /// digits (CloudEvents naming).
    ///
    /// ```
    /// let ok = palio::Notification::builder().attr("level2", 1).build();
    /// assert!(ok.is_ok());
    /// let bad = palio::Notification::builder().attr("user_id", 5).build();
    /// assert!(matches!(bad, Err(palio::Error::InvalidAttribute(_))));
    /// ```
    pub fn attr(mut self, name: &str, value: impl Into<Value>) -> Self {
        match AttrName::new(name) {
            Ok(n) => {
                self.attributes.set(n, value);
            }
            Err(e) => {
                self.error.get_or_insert(e.to_string());
            }
        }
        self
    }

    /// Sets the payload.
    ///
    /// ```
    /// let n = palio::Notification::builder().payload(vec![1u8, 2, 3]).build()?;
    /// assert_eq!(n.payload(), &[1, 2, 3]);
    /// # Ok::<(), palio::Error>(())
    /// ```
    pub fn payload(mut self, payload: impl Into<Vec<u8>>) -> Self {
        self.payload = payload.into();
        self
    }

    /// The notification, or the first invalid attribute name.
    ///
    /// ```
    /// let e = palio::Notification::builder().attr("Bad", 1).attr("x", 2).build().unwrap_err();
    /// assert!(e.to_string().contains("Bad"), "{e}");
    /// ```
    pub fn build(self) -> Result<Notification, Error> {
        match self.error {
            Some(e) => Err(Error::InvalidAttribute(e)),
            None => Ok(Notification::new(self.attributes, self.payload)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_names_are_reported() {
        let e = Notification::builder().attr("Bad-Name", 1).build();
        assert!(matches!(e, Err(Error::InvalidAttribute(_))));
    }

    #[test]
    fn json_line_shape() {
        let n = Notification::builder()
            .attr("seq", 2)
            .payload("hi")
            .build()
            .unwrap();
        assert_eq!(
            n.to_json(),
            json!({"attributes": {"seq": 2}, "payload": "hi"})
        );
        let binary = Notification::new(Event::new(), b"\xffbin\x00".to_vec());
        assert_eq!(
            binary.to_json(),
            json!({"attributes": {}, "payload_base64": "/2JpbgA="})
        );
    }
}
