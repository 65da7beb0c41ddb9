//! A notification on its way to one subscription of a client, and how it is encoded.

use std::sync::Arc;

use bytes::BytesMut;
use palio_protocol::FrameError;
use palio_topology::Notification;

use crate::frame_size::notification_size;
use crate::writer::WireFrame;

/// A notification for one subscription of a client.
#[derive(Debug)]
pub(crate) struct Delivery {
    pub(crate) subscription: u64,
    pub(crate) notification: Arc<Notification>,
}

impl Delivery {
    /// About how many bytes the delivery takes on the wire.
    pub(crate) fn size(&self) -> usize {
        notification_size(&self.notification)
    }
}

impl WireFrame for Delivery {
    /// The bytes of a [`palio_protocol::DeliveryFrame`], written straight from the shared
    /// notification (no copy of its attributes or payload).
    fn encode(&self, dst: &mut BytesMut, max: usize) -> Result<(), FrameError> {
        palio_protocol::encode_delivery(
            self.subscription,
            &self.notification.attributes,
            &self.notification.payload,
            dst,
            max,
        )
    }
}

#[cfg(test)]
mod tests {
    use palio_filter::{AttrName, Value};
    use palio_protocol::{DeliveryFrame, encode};
    use palio_topology::NotificationId;

    use super::*;

    #[test]
    fn a_delivery_encodes_to_the_bytes_of_a_delivery_frame() {
        let n = Arc::new(Notification {
            id: NotificationId(1),
            attributes: [
                (AttrName::new("type").unwrap(), Value::String("x".into())),
                (AttrName::new("n").unwrap(), Value::Int(5)),
            ]
            .into_iter()
            .collect(),
            payload: b"data".to_vec(),
        });
        let d = Delivery {
            subscription: 9,
            notification: n.clone(),
        };
        let mut dst = BytesMut::new();
        d.encode(&mut dst, 1024).unwrap();
        let owned = DeliveryFrame {
            subscription: 9,
            attributes: n
                .attributes
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            payload: n.payload.clone(),
        };
        assert_eq!(&dst[4..], &encode(&owned).unwrap()[..]);
        assert!(d.size() >= dst.len());
    }
}
