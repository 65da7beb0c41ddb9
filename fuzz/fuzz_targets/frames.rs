//! The wire decoders on arbitrary bytes: every frame type, and the length-prefixed codec over a
//! stream of frames. Never panics; a frame that decodes re-encodes and decodes to itself. The
//! hand-written fast paths (`DecodeFrame` for publications, deliveries and peer notifications,
//! `encode_publish` / `encode_delivery`, `publish_persistent_len`) agree with serde on every input.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use palio_broker::wire::PeerMessage;
use palio_protocol::{
    ClientFrame, DecodeFrame, DeliveryFrame, FrameCodec, ServerFrame, decode, encode, encode_into,
};
use tokio_util::codec::Decoder;

fn round_trip<T>(data: &[u8])
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    if let Ok(frame) = decode::<T>(data) {
        let bytes = encode(&frame).expect("a decoded frame encodes");
        let again: T = decode(&bytes).expect("an encoded frame decodes");
        assert_eq!(again, frame);
    }
}

/// The codec's decoder (a fast path, then serde) accepts what serde accepts, as the same frame.
fn same_as_serde<T>(data: &[u8]) -> Option<T>
where
    T: DecodeFrame + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let fast = T::decode_frame(data).ok();
    let slow = decode::<T>(data).ok();
    assert_eq!(fast, slow, "the fast decoder and serde disagree");
    fast
}

/// The hand-written encoders write serde's bytes.
fn encoders_match(client: Option<ClientFrame>, delivery: Option<DeliveryFrame>) {
    const MAX: usize = 1 << 20;
    let (mut fast, mut slow) = (BytesMut::new(), BytesMut::new());
    if let Some(
        f @ ClientFrame::Publish {
            attributes,
            payload,
        },
    ) = &client
    {
        let a = palio_protocol::encode_publish(attributes, payload, &mut fast, MAX);
        let b = encode_into(f, &mut slow, MAX);
        assert_eq!(a.is_ok(), b.is_ok());
        assert_eq!(fast, slow, "encode_publish differs from serde");
    }
    if let Some(
        f @ ClientFrame::PublishPersistent {
            seq,
            attributes,
            payload,
        },
    ) = &client
    {
        let computed = palio_protocol::publish_persistent_len(*seq, attributes, payload);
        assert_eq!(Some(computed), palio_protocol::encoded_len(f).ok());
    }
    if let Some(d) = &delivery {
        let (mut fast, mut slow) = (BytesMut::new(), BytesMut::new());
        let a = palio_protocol::encode_delivery(
            d.subscription,
            &d.attributes,
            &d.payload,
            &mut fast,
            MAX,
        );
        let b = encode_into(d, &mut slow, MAX);
        assert_eq!(a.is_ok(), b.is_ok());
        assert_eq!(fast, slow, "encode_delivery differs from serde");
    }
}

fuzz_target!(|data: &[u8]| {
    let client = same_as_serde::<ClientFrame>(data);
    let delivery = same_as_serde::<DeliveryFrame>(data);
    same_as_serde::<PeerMessage>(data);
    encoders_match(client, delivery);
    round_trip::<ClientFrame>(data);
    round_trip::<ServerFrame>(data);
    round_trip::<DeliveryFrame>(data);
    round_trip::<PeerMessage>(data);
    let mut codec = FrameCodec::<PeerMessage>::new(4096);
    let mut buf = BytesMut::from(data);
    while let Ok(Some(_)) = codec.decode(&mut buf) {}
});
