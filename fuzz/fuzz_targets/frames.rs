//! The wire decoders on arbitrary bytes: every frame type, and the length-prefixed codec over a
//! stream of frames. Never panics; a frame that decodes re-encodes and decodes to itself.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use palio_broker::wire::PeerMessage;
use palio_protocol::{ClientFrame, DeliveryFrame, FrameCodec, ServerFrame, decode, encode};
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

fuzz_target!(|data: &[u8]| {
    round_trip::<ClientFrame>(data);
    round_trip::<ServerFrame>(data);
    round_trip::<DeliveryFrame>(data);
    round_trip::<PeerMessage>(data);
    let mut codec = FrameCodec::<PeerMessage>::new(4096);
    let mut buf = BytesMut::from(data);
    while let Ok(Some(_)) = codec.decode(&mut buf) {}
});
