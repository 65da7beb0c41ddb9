//! Framing: a big-endian `u32` length, then that many bytes of MessagePack.
//!
//! The length is checked against the receiver's maximum before anything else is buffered, and
//! the decoder reserves buffer only a chunk (64 KiB) ahead of what has arrived, so a peer
//! announcing a large frame costs the bytes it sent, not the frame.

use std::io;
use std::marker::PhantomData;

use bytes::{Buf, BufMut, BytesMut};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_util::codec::{Decoder, Encoder};

use crate::error_code::ErrorCode;

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The stream failed.
    #[error("stream error: {0}")]
    Io(#[from] io::Error),
    /// The announced length exceeds the maximum.
    #[error("frame of {len} bytes exceeds the maximum of {max} bytes")]
    TooLarge {
        /// The announced length.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// The bytes did not decode as the expected frame.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// A frame could not be encoded (a bug, or a frame past the maximum).
    #[error("cannot encode frame: {0}")]
    Encode(String),
}

impl FrameError {
    /// The error code to close the stream's connection with.
    pub fn code(&self) -> ErrorCode {
        match self {
            FrameError::Io(_) => ErrorCode::Closed,
            FrameError::TooLarge { .. } => ErrorCode::FrameTooLarge,
            FrameError::Malformed(_) => ErrorCode::MalformedFrame,
            FrameError::Encode(_) => ErrorCode::Internal,
        }
    }
}

/// Encodes `frame` as MessagePack with named fields (no length prefix).
pub fn encode<T: Serialize + ?Sized>(frame: &T) -> Result<Vec<u8>, FrameError> {
    rmp_serde::to_vec_named(frame).map_err(|e| FrameError::Encode(e.to_string()))
}

/// Appends `frame` to `dst` as it goes on a stream: its length as a big-endian `u32`, then
/// MessagePack with named fields. Encodes straight into `dst` (no intermediate buffer); a frame
/// over `max` bytes is refused and leaves `dst` as it was.
pub fn encode_into<T: Serialize + ?Sized>(
    frame: &T,
    dst: &mut BytesMut,
    max: usize,
) -> Result<(), FrameError> {
    let start = dst.len();
    dst.put_u32(0);
    let mut w = (&mut *dst).writer();
    if let Err(e) = rmp_serde::encode::write_named(&mut w, frame) {
        dst.truncate(start);
        return Err(FrameError::Encode(e.to_string()));
    }
    let len = dst.len() - start - 4;
    let Some(prefix) = u32::try_from(len).ok().filter(|_| len <= max) else {
        dst.truncate(start);
        return Err(FrameError::Encode(format!(
            "frame of {len} bytes exceeds the maximum of {max} bytes"
        )));
    };
    dst[start..start + 4].copy_from_slice(&prefix.to_be_bytes());
    Ok(())
}

/// The length of `frame` encoded as by [`encode`] (no length prefix), without keeping the
/// bytes: for checking a frame against a limit before sending it.
pub fn encoded_len<T: Serialize + ?Sized>(frame: &T) -> Result<usize, FrameError> {
    /// Counts what is written to it.
    struct Counter(usize);

    impl io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    let mut counter = Counter(0);
    rmp_serde::encode::write_named(&mut counter, frame)
        .map_err(|e| FrameError::Encode(e.to_string()))?;
    Ok(counter.0)
}

/// Decodes one frame's MessagePack bytes (no length prefix).
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, FrameError> {
    rmp_serde::from_slice(bytes).map_err(|e| FrameError::Malformed(e.to_string()))
}

/// A frame type a [`FrameCodec`] reads. Most decode with serde ([`decode`]); the frames every
/// notification crosses ([`ClientFrame`](crate::ClientFrame) and
/// [`DeliveryFrame`](crate::DeliveryFrame)) try a hand-written reader of their canonical form
/// first, which falls back to serde for anything else, so what is accepted and refused does not
/// change.
pub trait DecodeFrame: Sized {
    /// Decodes one frame's MessagePack bytes (no length prefix).
    fn decode_frame(bytes: &[u8]) -> Result<Self, FrameError>;
}

impl DecodeFrame for crate::ClientFrame {
    fn decode_frame(bytes: &[u8]) -> Result<Self, FrameError> {
        match crate::hot::decode_publish(bytes) {
            Some(f) => Ok(f),
            None => decode(bytes),
        }
    }
}

impl DecodeFrame for crate::DeliveryFrame {
    fn decode_frame(bytes: &[u8]) -> Result<Self, FrameError> {
        match crate::hot::decode_delivery(bytes) {
            Some(f) => Ok(f),
            None => decode(bytes),
        }
    }
}

impl DecodeFrame for crate::ServerFrame {
    fn decode_frame(bytes: &[u8]) -> Result<Self, FrameError> {
        decode(bytes)
    }
}

/// The most buffer a decoder reserves ahead of the bytes that have arrived.
const RESERVE_CHUNK: usize = 64 << 10;

/// A tokio-util codec: decodes frames of type `D`, encodes any serializable frame.
#[derive(Debug)]
pub struct FrameCodec<D> {
    /// The largest frame accepted or sent, in bytes (without the 4-byte length).
    max: usize,
    _frames: PhantomData<fn() -> D>,
}

impl<D> FrameCodec<D> {
    /// A codec accepting frames of at most `max` bytes.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            _frames: PhantomData,
        }
    }

    /// The largest frame accepted.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Changes the largest frame accepted: a broker reads a client's hello under a small
    /// maximum and raises it once the client has authenticated.
    pub fn set_max(&mut self, max: usize) {
        self.max = max;
    }
}

impl<D> Clone for FrameCodec<D> {
    fn clone(&self) -> Self {
        Self::new(self.max)
    }
}

impl<D: DecodeFrame> Decoder for FrameCodec<D> {
    type Item = D;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<D>, FrameError> {
        if src.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize;
        if len > self.max {
            return Err(FrameError::TooLarge { len, max: self.max });
        }
        if src.len() < 4 + len {
            // Room for what is missing, but never more than a chunk ahead of what arrived: a
            // peer that announces a large frame and sends nothing costs nothing.
            src.reserve((4 + len - src.len()).min(RESERVE_CHUNK));
            return Ok(None);
        }
        src.advance(4);
        let body = src.split_to(len);
        D::decode_frame(&body).map(Some)
    }
}

impl<D, T: Serialize> Encoder<&T> for FrameCodec<D> {
    type Error = FrameError;

    fn encode(&mut self, frame: &T, dst: &mut BytesMut) -> Result<(), FrameError> {
        encode_into(frame, dst, self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frames::ClientFrame;

    #[test]
    fn frames_split_anywhere_decode_once_complete() {
        let mut codec = FrameCodec::<ClientFrame>::new(1024);
        let mut buf = BytesMut::new();
        let f = ClientFrame::Flush { request: 42 };
        codec.encode(&f, &mut buf).unwrap();
        codec.encode(&f, &mut buf).unwrap();
        let all = buf.clone();
        for cut in 0..all.len() / 2 {
            let mut partial = BytesMut::from(&all[..cut]);
            let first = codec.decode(&mut partial).unwrap();
            assert_eq!(first.is_some(), cut == all.len() / 2);
        }
        let mut whole = all;
        assert_eq!(codec.decode(&mut whole).unwrap(), Some(f.clone()));
        assert_eq!(codec.decode(&mut whole).unwrap(), Some(f));
        assert_eq!(codec.decode(&mut whole).unwrap(), None);
    }

    #[test]
    fn an_announced_length_reserves_at_most_a_chunk() {
        let mut codec = FrameCodec::<ClientFrame>::new(16 << 20);
        let mut buf = BytesMut::from(&[0u8, 0xf0, 0, 0, 1][..]);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        assert!(buf.capacity() <= RESERVE_CHUNK + 64, "{}", buf.capacity());
    }

    #[test]
    fn oversized_length_is_refused_before_buffering() {
        let mut codec = FrameCodec::<ClientFrame>::new(1024);
        let mut buf = BytesMut::from(&[0u8, 0, 4, 1][..]);
        let err = codec.decode(&mut buf).unwrap_err();
        assert!(matches!(
            err,
            FrameError::TooLarge {
                len: 1025,
                max: 1024
            }
        ));
        assert_eq!(err.code(), ErrorCode::FrameTooLarge);
    }

    #[test]
    fn garbage_is_malformed() {
        let mut codec = FrameCodec::<ClientFrame>::new(1024);
        let mut buf = BytesMut::from(&[0u8, 0, 0, 3, 0xc1, 0xff, 0x00][..]);
        let err = codec.decode(&mut buf).unwrap_err();
        assert_eq!(err.code(), ErrorCode::MalformedFrame);
    }

    #[test]
    fn encoded_len_is_the_length_of_the_encoding() {
        let frames = [
            ClientFrame::Flush { request: u64::MAX },
            ClientFrame::Subscribe {
                request: 1,
                filter: "x".repeat(70_000),
            },
        ];
        for f in frames {
            assert_eq!(encoded_len(&f).unwrap(), encode(&f).unwrap().len());
        }
    }

    #[test]
    fn encoding_past_the_maximum_fails() {
        let mut codec = FrameCodec::<ClientFrame>::new(8);
        let mut buf = BytesMut::new();
        let f = ClientFrame::Subscribe {
            request: 1,
            filter: "a_long_attribute_name = 'and a long value'".into(),
        };
        assert!(codec.encode(&f, &mut buf).is_err());
        assert!(buf.is_empty(), "a refused frame leaves nothing behind");
    }

    #[test]
    fn encode_into_matches_encode_with_a_length_prefix() {
        let f = ClientFrame::Subscribe {
            request: 3,
            filter: "x > 1".into(),
        };
        let mut buf = BytesMut::from(&b"ab"[..]);
        encode_into(&f, &mut buf, 1024).unwrap();
        let body = encode(&f).unwrap();
        assert_eq!(&buf[..2], b"ab");
        assert_eq!(
            &buf[2..6],
            &u32::try_from(body.len()).unwrap().to_be_bytes()
        );
        assert_eq!(&buf[6..], &body[..]);
    }
}
