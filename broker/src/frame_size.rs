//! About how many bytes a frame takes on the wire: what outbox limits count (see `outbox`).
//!
//! Estimates, upper bounds where it matters, computed without encoding. Every producer of an
//! outbox item sizes it here, so that the writer (which only encodes) and the peer-link
//! types (`wire`) do not depend on each other for it.

use palio_filter::{Event, Value};
use palio_protocol::ServerFrame;
use palio_topology::Notification;

/// About how many bytes a notification takes on the wire.
pub(crate) fn notification_size(n: &Notification) -> usize {
    48 + n.payload.len() + attributes_size(&n.attributes)
}

/// About how many bytes an event's attributes take on the wire (an upper bound).
pub(crate) fn attributes_size(attributes: &Event) -> usize {
    attributes
        .iter()
        .map(|(name, value)| {
            4 + name.as_str().len()
                + match value {
                    Value::String(s) => 5 + s.len(),
                    _ => 9,
                }
        })
        .sum()
}

/// About how many bytes a control-stream frame takes on the wire.
pub(crate) fn control_frame_size(frame: &ServerFrame) -> usize {
    match frame {
        ServerFrame::Message(m) => 64 + m.payload.len() + attributes_size(&m.attributes),
        ServerFrame::Queues { queues, .. } => 64 + 128 * queues.len(),
        ServerFrame::Request {
            attributes,
            payload,
            ..
        }
        | ServerFrame::Replied {
            attributes,
            payload,
            ..
        } => 64 + payload.len() + attributes_size(attributes),
        ServerFrame::Peeked { messages, .. } => messages.iter().fold(64, |size, m| {
            size + 64 + m.payload.len() + attributes_size(&m.attributes)
        }),
        _ => 64,
    }
}
