//! [`PeerMessage::Notify`], the frame every notification crosses on a peer link, written and
//! read by hand (`palio_protocol::msgpack`): the bytes serde writes for it (the tests compare
//! them), read in their canonical form with serde as the fallback for anything else, so what a
//! link accepts and refuses does not change.

use bytes::{BufMut, BytesMut};
use palio_protocol::FrameError;
use palio_protocol::msgpack::{
    Reader, bin_len, event_len, framed, put_bin, put_event, put_str, put_uint, str_len, uint_len,
};
use palio_topology::{Notification, NotificationId};

use super::PeerMessage;

/// Appends `n` as a [`PeerMessage::Notify`] stream frame; over `max` bytes of body it is
/// refused and `dst` is left as it was.
pub(crate) fn encode_notify(
    n: &Notification,
    dst: &mut BytesMut,
    max: usize,
) -> Result<(), FrameError> {
    let len = 1
        + str_len("Notify")
        + 1
        + str_len("id")
        + uint_len(n.id.0)
        + str_len("attributes")
        + event_len(&n.attributes)
        + str_len("payload")
        + bin_len(n.payload.len());
    framed(dst, max, len, |dst| {
        dst.put_u8(0x81); // a map of one: the variant
        put_str(dst, "Notify");
        dst.put_u8(0x83); // its three fields
        put_str(dst, "id");
        put_uint(dst, n.id.0);
        put_str(dst, "attributes");
        put_event(dst, &n.attributes);
        put_str(dst, "payload");
        put_bin(dst, &n.payload);
    })
}

/// Reads a [`PeerMessage::Notify`] in its canonical form; `None` for anything else.
pub(crate) fn decode_notify(bytes: &[u8]) -> Option<PeerMessage> {
    let mut r = Reader::new(bytes);
    r.expect(&[0x81])?;
    r.expect_str("Notify")?;
    r.expect(&[0x83])?;
    r.expect_str("id")?;
    let id = NotificationId(r.uint()?);
    r.expect_str("attributes")?;
    let attributes = r.event()?;
    r.expect_str("payload")?;
    let payload = r.bin()?.to_vec();
    r.is_empty().then_some(PeerMessage::Notify {
        id,
        attributes,
        payload,
    })
}

#[cfg(test)]
mod tests {
    use palio_filter::{AttrName, Event, Value};
    use palio_protocol::{decode, encode};

    use super::*;

    #[test]
    fn notify_is_written_as_serde_writes_it_and_read_back() {
        for (id, payload_len) in [
            (0, 0),
            (127, 1),
            (128, 255),
            (1 << 32, 256),
            (u64::MAX, 70_000),
        ] {
            let attributes: Event = [
                (
                    AttrName::new("type").unwrap(),
                    Value::String("bench".into()),
                ),
                (AttrName::new("seq").unwrap(), Value::Int(-70_000)),
                (AttrName::new("ok").unwrap(), Value::Bool(true)),
            ]
            .into_iter()
            .collect();
            let n = Notification {
                id: NotificationId(id),
                attributes: attributes.clone(),
                payload: vec![3; payload_len],
            };
            let message = PeerMessage::Notify {
                id: n.id,
                attributes,
                payload: n.payload.clone(),
            };
            let mut fast = BytesMut::new();
            encode_notify(&n, &mut fast, usize::MAX).unwrap();
            assert_eq!(&fast[4..], &encode(&message).unwrap()[..]);
            assert_eq!(decode_notify(&fast[4..]), Some(message.clone()));
            assert_eq!(decode::<PeerMessage>(&fast[4..]).unwrap(), message);
            let mut longer = fast[4..].to_vec();
            longer.push(0);
            assert_eq!(
                decode_notify(&longer),
                None,
                "trailing bytes: left to serde"
            );
        }
        let hello = encode(&PeerMessage::StoreAck { ids: Vec::new() }).unwrap();
        assert_eq!(decode_notify(&hello), None);
    }
}
