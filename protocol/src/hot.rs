//! Hand-written MessagePack for the frames every notification crosses: a client's
//! [`ClientFrame::Publish`] and a subscriber's [`DeliveryFrame`].
//!
//! They go through serde everywhere else; on the data path serde's generic machinery (and
//! `rmp-serde`'s probing of every sequence for bytes) cost more than the work itself. This module
//! writes exactly the bytes `rmp-serde` writes for them (the tests compare the two), and reads
//! their canonical form, which is what every Palio writer produces. Reading is a fast path
//! only: anything else (another field order, another integer width for a field, an unknown
//! field, a value of the wrong type, an invalid name, a name given twice, trailing bytes) is
//! left to serde, so the accepted frames and the errors are serde's, unchanged.

use bytes::{BufMut, BytesMut};
use palio_filter::{AttrName, Event, Value};

use crate::codec::FrameError;
use crate::frames::{ClientFrame, DeliveryFrame};

/// Appends `ClientFrame::Publish { attributes, payload }` as a stream frame (length prefix and
/// body, the bytes of [`encode_into`](crate::encode_into)); over `max` bytes of body it is
/// refused and `dst` is left as it was.
pub fn encode_publish(
    attributes: &Event,
    payload: &[u8],
    dst: &mut BytesMut,
    max: usize,
) -> Result<(), FrameError> {
    framed(dst, max, publish_len(attributes, payload), |dst| {
        dst.put_u8(0x81); // a map of one: the variant
        put_str(dst, "Publish");
        dst.put_u8(0x82); // its two fields
        put_str(dst, "attributes");
        put_event(dst, attributes);
        put_str(dst, "payload");
        put_bin(dst, payload);
    })
}

/// The body length of [`encode_publish`]'s frame (what [`encoded_len`](crate::encoded_len)
/// says of the same frame), computed without encoding it.
pub fn publish_len(attributes: &Event, payload: &[u8]) -> usize {
    1 + str_len("Publish")
        + 1
        + str_len("attributes")
        + event_len(attributes)
        + str_len("payload")
        + bin_len(payload.len())
}

/// The body length of `ClientFrame::PublishPersistent { seq, attributes, payload }` (what
/// [`encoded_len`](crate::encoded_len) says of it), computed without encoding it. The frame
/// itself goes through serde; only its size is checked on the producer's path.
pub fn publish_persistent_len(seq: u64, attributes: &Event, payload: &[u8]) -> usize {
    1 + str_len("PublishPersistent")
        + 1
        + str_len("seq")
        + uint_len(seq)
        + str_len("attributes")
        + event_len(attributes)
        + str_len("payload")
        + bin_len(payload.len())
}

/// Appends a [`DeliveryFrame`] of these parts as a stream frame, like [`encode_publish`].
pub fn encode_delivery(
    subscription: u64,
    attributes: &Event,
    payload: &[u8],
    dst: &mut BytesMut,
    max: usize,
) -> Result<(), FrameError> {
    let len = 1
        + str_len("subscription")
        + uint_len(subscription)
        + str_len("attributes")
        + event_len(attributes)
        + str_len("payload")
        + bin_len(payload.len());
    framed(dst, max, len, |dst| {
        dst.put_u8(0x83); // three fields
        put_str(dst, "subscription");
        put_uint(dst, subscription);
        put_str(dst, "attributes");
        put_event(dst, attributes);
        put_str(dst, "payload");
        put_bin(dst, payload);
    })
}

/// Reads a publication in its canonical form; `None` for anything else (see the module docs).
pub(crate) fn decode_publish(bytes: &[u8]) -> Option<ClientFrame> {
    let mut r = Reader(bytes);
    r.expect(&[0x81])?;
    r.expect_str("Publish")?;
    r.expect(&[0x82])?;
    r.expect_str("attributes")?;
    let attributes = r.event()?;
    r.expect_str("payload")?;
    let payload = r.bin()?.to_vec();
    r.0.is_empty().then_some(ClientFrame::Publish {
        attributes,
        payload,
    })
}

/// Reads a delivery in its canonical form; `None` for anything else (see the module docs).
pub(crate) fn decode_delivery(bytes: &[u8]) -> Option<DeliveryFrame> {
    let mut r = Reader(bytes);
    r.expect(&[0x83])?;
    r.expect_str("subscription")?;
    let subscription = r.uint()?;
    r.expect_str("attributes")?;
    let attributes = r.event()?;
    r.expect_str("payload")?;
    let payload = r.bin()?.to_vec();
    r.0.is_empty().then_some(DeliveryFrame {
        subscription,
        attributes,
        payload,
    })
}

/// Writes the length prefix and the `len` bytes `body` writes, if `len` is within `max`
/// (otherwise refused, `dst` unchanged). `body` must write exactly `len` bytes.
pub fn framed(
    dst: &mut BytesMut,
    max: usize,
    len: usize,
    body: impl FnOnce(&mut BytesMut),
) -> Result<(), FrameError> {
    let Some(prefix) = u32::try_from(len).ok().filter(|_| len <= max) else {
        return Err(FrameError::Encode(format!(
            "frame of {len} bytes exceeds the maximum of {max} bytes"
        )));
    };
    dst.reserve(4 + len);
    dst.put_u32(prefix);
    let start = dst.len();
    body(dst);
    debug_assert_eq!(dst.len() - start, len, "computed and written lengths agree");
    Ok(())
}

// ----- writing, as `rmp` does (the smallest form of each length and integer); public as
// `palio_protocol::msgpack` for the broker's peer frames -----

/// The encoded length of a string.
pub fn str_len(s: &str) -> usize {
    let n = s.len();
    n + match n {
        0..32 => 1,
        32..256 => 2,
        256..65_536 => 3,
        _ => 5,
    }
}

/// Writes a string (the smallest header, as `rmp` does).
pub fn put_str(dst: &mut BytesMut, s: &str) {
    // Lengths past u32 cannot occur: a frame's length is checked against a u32 first.
    let n = s.len();
    match n {
        0..32 => dst.put_u8(0xa0 | n as u8),
        32..256 => {
            dst.put_u8(0xd9);
            dst.put_u8(n as u8);
        }
        256..65_536 => {
            dst.put_u8(0xda);
            dst.put_u16(n as u16);
        }
        _ => {
            dst.put_u8(0xdb);
            dst.put_u32(n as u32);
        }
    }
    dst.put_slice(s.as_bytes());
}

/// The encoded length of `n` bytes of binary.
pub fn bin_len(n: usize) -> usize {
    n + match n {
        0..256 => 2,
        256..65_536 => 3,
        _ => 5,
    }
}

/// Writes binary data.
pub fn put_bin(dst: &mut BytesMut, b: &[u8]) {
    let n = b.len();
    match n {
        0..256 => {
            dst.put_u8(0xc4);
            dst.put_u8(n as u8);
        }
        256..65_536 => {
            dst.put_u8(0xc5);
            dst.put_u16(n as u16);
        }
        _ => {
            dst.put_u8(0xc6);
            dst.put_u32(n as u32);
        }
    }
    dst.put_slice(b);
}

/// The encoded length of an unsigned integer.
pub fn uint_len(v: u64) -> usize {
    match v {
        0..128 => 1,
        128..256 => 2,
        256..65_536 => 3,
        65_536..4_294_967_296 => 5,
        _ => 9,
    }
}

/// Writes an unsigned integer (its smallest form).
pub fn put_uint(dst: &mut BytesMut, v: u64) {
    match v {
        0..128 => dst.put_u8(v as u8),
        128..256 => {
            dst.put_u8(0xcc);
            dst.put_u8(v as u8);
        }
        256..65_536 => {
            dst.put_u8(0xcd);
            dst.put_u16(v as u16);
        }
        65_536..4_294_967_296 => {
            dst.put_u8(0xce);
            dst.put_u32(v as u32);
        }
        _ => {
            dst.put_u8(0xcf);
            dst.put_u64(v);
        }
    }
}

fn int_len(v: i32) -> usize {
    match v {
        -32..0 => 1,
        -128..-32 => 2,
        -32_768..-128 => 3,
        i32::MIN..-32_768 => 5,
        _ => uint_len(v as u64),
    }
}

fn put_int(dst: &mut BytesMut, v: i32) {
    match v {
        -32..0 => dst.put_i8(v as i8),
        -128..-32 => {
            dst.put_u8(0xd0);
            dst.put_i8(v as i8);
        }
        -32_768..-128 => {
            dst.put_u8(0xd1);
            dst.put_i16(v as i16);
        }
        i32::MIN..-32_768 => {
            dst.put_u8(0xd2);
            dst.put_i32(v);
        }
        _ => put_uint(dst, v as u64),
    }
}

fn array_header_len(n: usize) -> usize {
    match n {
        0..16 => 1,
        16..65_536 => 3,
        _ => 5,
    }
}

fn put_array_header(dst: &mut BytesMut, n: usize) {
    match n {
        0..16 => dst.put_u8(0x90 | n as u8),
        16..65_536 => {
            dst.put_u8(0xdc);
            dst.put_u16(n as u16);
        }
        _ => {
            dst.put_u8(0xdd);
            dst.put_u32(n as u32);
        }
    }
}

fn value_len(v: &Value) -> usize {
    match v {
        Value::Bool(_) => 1,
        Value::Int(i) => int_len(*i),
        Value::String(s) => str_len(s),
    }
}

fn put_value(dst: &mut BytesMut, v: &Value) {
    match v {
        Value::Bool(b) => dst.put_u8(if *b { 0xc3 } else { 0xc2 }),
        Value::Int(i) => put_int(dst, *i),
        Value::String(s) => put_str(dst, s),
    }
}

/// The encoded length of an event: an array of `[name, value]` arrays, in name order.
pub fn event_len(e: &Event) -> usize {
    array_header_len(e.len())
        + e.iter()
            .map(|(n, v)| 1 + str_len(n.as_str()) + value_len(v))
            .sum::<usize>()
}

/// Writes an event as serde does.
pub fn put_event(dst: &mut BytesMut, e: &Event) {
    put_array_header(dst, e.len());
    for (n, v) in e.iter() {
        dst.put_u8(0x92);
        put_str(dst, n.as_str());
        put_value(dst, v);
    }
}

// ----- reading the canonical form -----

/// Reads the canonical form of a frame; every method returns `None` on anything else.
#[derive(Debug)]
pub struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    /// Reads `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self(bytes)
    }

    /// Whether everything was read.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn byte(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn be<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    /// Reads exactly `bytes`.
    pub fn expect(&mut self, bytes: &[u8]) -> Option<()> {
        (self.take(bytes.len())? == bytes).then_some(())
    }

    /// Reads the string `s`.
    pub fn expect_str(&mut self, s: &str) -> Option<()> {
        (self.str()? == s).then_some(())
    }

    /// Reads a string.
    pub fn str(&mut self) -> Option<&'a str> {
        let n = match self.byte()? {
            m @ 0xa0..=0xbf => usize::from(m & 0x1f),
            0xd9 => usize::from(self.byte()?),
            0xda => usize::from(u16::from_be_bytes(self.be()?)),
            0xdb => usize::try_from(u32::from_be_bytes(self.be()?)).ok()?,
            _ => return None,
        };
        std::str::from_utf8(self.take(n)?).ok()
    }

    /// Reads binary data.
    pub fn bin(&mut self) -> Option<&'a [u8]> {
        let n = match self.byte()? {
            0xc4 => usize::from(self.byte()?),
            0xc5 => usize::from(u16::from_be_bytes(self.be()?)),
            0xc6 => usize::try_from(u32::from_be_bytes(self.be()?)).ok()?,
            _ => return None,
        };
        self.take(n)
    }

    /// Reads an unsigned integer, whatever its width.
    pub fn uint(&mut self) -> Option<u64> {
        match self.byte()? {
            m @ 0x00..=0x7f => Some(u64::from(m)),
            0xcc => Some(u64::from(self.byte()?)),
            0xcd => Some(u64::from(u16::from_be_bytes(self.be()?))),
            0xce => Some(u64::from(u32::from_be_bytes(self.be()?))),
            0xcf => Some(u64::from_be_bytes(self.be()?)),
            _ => None,
        }
    }

    /// A value as `Value`'s deserializer reads it: a boolean, an integer that fits an `i32`
    /// (whatever its encoding), or a string.
    fn value(&mut self) -> Option<Value> {
        let m = *self.0.first()?;
        let wide: i64 = match m {
            0xc2 | 0xc3 => {
                self.byte()?;
                return Some(Value::Bool(m == 0xc3));
            }
            0xa0..=0xbf | 0xd9..=0xdb => return Some(Value::String(self.str()?.to_owned())),
            0x00..=0x7f | 0xcc..=0xcf => i64::try_from(self.uint()?).ok()?,
            0xe0..=0xff => {
                self.byte()?;
                i64::from(m as i8)
            }
            0xd0 => {
                self.byte()?;
                i64::from(i8::from_be_bytes(self.be()?))
            }
            0xd1 => {
                self.byte()?;
                i64::from(i16::from_be_bytes(self.be()?))
            }
            0xd2 => {
                self.byte()?;
                i64::from(i32::from_be_bytes(self.be()?))
            }
            0xd3 => {
                self.byte()?;
                i64::from_be_bytes(self.be()?)
            }
            _ => return None,
        };
        i32::try_from(wide).ok().map(Value::Int)
    }

    /// Reads an event as its deserializer does (valid names, each once, values that fit).
    pub fn event(&mut self) -> Option<Event> {
        let n = match self.byte()? {
            m @ 0x90..=0x9f => usize::from(m & 0x0f),
            0xdc => usize::from(u16::from_be_bytes(self.be()?)),
            0xdd => usize::try_from(u32::from_be_bytes(self.be()?)).ok()?,
            _ => return None,
        };
        // Each pair takes at least 3 bytes: an announced count cannot reserve more than that.
        let mut pairs = Vec::with_capacity(n.min(self.0.len() / 3));
        for _ in 0..n {
            self.expect(&[0x92])?;
            let name = AttrName::new(self.str()?).ok()?;
            pairs.push((name, self.value()?));
        }
        Event::from_pairs(pairs).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{decode, encode, encode_into};

    fn event(pairs: &[(&str, Value)]) -> Event {
        pairs
            .iter()
            .map(|(n, v)| (AttrName::new(*n).unwrap(), v.clone()))
            .collect()
    }

    /// Integers at every boundary of MessagePack's encodings.
    const INTS: [i32; 22] = [
        i32::MIN,
        -2_147_483_647,
        -32_769,
        -32_768,
        -32_767,
        -129,
        -128,
        -127,
        -33,
        -32,
        -31,
        -1,
        0,
        1,
        127,
        128,
        255,
        256,
        65_535,
        65_536,
        2_000_000_000,
        i32::MAX,
    ];

    fn samples() -> Vec<(Event, Vec<u8>)> {
        let mut out = vec![(Event::new(), Vec::new())];
        for (k, i) in INTS.iter().enumerate() {
            let long = "s".repeat([0, 1, 31, 32, 255, 256, 65_535, 65_536][k % 8]);
            let name = "n".repeat([1, 31, 32, 128][k % 4]);
            let e = event(&[
                ("type", Value::String("bench".into())),
                ("seq", Value::Int(*i)),
                ("flag", Value::Bool(k % 2 == 0)),
                ("text", Value::String(long)),
                (name.as_str(), Value::Int(i / -3)),
            ]);
            let payload = vec![7u8; [0, 1, 255, 256, 65_535, 65_536][k % 6]];
            out.push((e, payload));
        }
        let many: Vec<(String, Value)> =
            (0..20).map(|i| (format!("a{i}"), Value::Int(i))).collect();
        let many: Vec<(&str, Value)> = many.iter().map(|(n, v)| (n.as_str(), v.clone())).collect();
        out.push((event(&many), b"x".to_vec()));
        out
    }

    #[test]
    fn publish_and_delivery_are_written_as_serde_writes_them() {
        for (attributes, payload) in samples() {
            let frame = ClientFrame::Publish {
                attributes: attributes.clone(),
                payload: payload.clone(),
            };
            let (mut fast, mut slow) = (BytesMut::new(), BytesMut::new());
            encode_publish(&attributes, &payload, &mut fast, usize::MAX).unwrap();
            encode_into(&frame, &mut slow, usize::MAX).unwrap();
            assert_eq!(fast, slow);
            assert_eq!(publish_len(&attributes, &payload), slow.len() - 4);
            assert_eq!(decode_publish(&fast[4..]), Some(frame));

            for seq in [
                0,
                127,
                128,
                255,
                256,
                65_535,
                65_536,
                u64::from(u32::MAX) + 1,
                u64::MAX,
            ] {
                let frame = ClientFrame::PublishPersistent {
                    seq,
                    attributes: attributes.clone(),
                    payload: payload.clone(),
                };
                assert_eq!(
                    publish_persistent_len(seq, &attributes, &payload),
                    crate::encoded_len(&frame).unwrap()
                );
            }

            for subscription in [0, 127, 128, 255, 256, 65_535, 65_536, u64::MAX] {
                let frame = DeliveryFrame {
                    subscription,
                    attributes: attributes.clone(),
                    payload: payload.clone(),
                };
                let (mut fast, mut slow) = (BytesMut::new(), BytesMut::new());
                encode_delivery(subscription, &attributes, &payload, &mut fast, usize::MAX)
                    .unwrap();
                encode_into(&frame, &mut slow, usize::MAX).unwrap();
                assert_eq!(fast, slow);
                assert_eq!(decode_delivery(&fast[4..]), Some(frame));
            }
        }
    }

    #[test]
    fn a_frame_over_the_maximum_is_refused_and_leaves_nothing() {
        let e = event(&[("type", Value::String("x".into()))]);
        let mut dst = BytesMut::from(&b"ab"[..]);
        let len = publish_len(&e, b"data");
        assert!(encode_publish(&e, b"data", &mut dst, len - 1).is_err());
        assert!(encode_delivery(1, &e, b"data", &mut dst, 10).is_err());
        assert_eq!(&dst[..], b"ab");
        encode_publish(&e, b"data", &mut dst, len).unwrap();
        assert_eq!(dst.len(), 2 + 4 + len);
    }

    #[test]
    fn anything_but_the_canonical_form_is_left_to_serde() {
        let e = event(&[("a", Value::Int(1)), ("b", Value::String("x".into()))]);
        let frame = ClientFrame::Publish {
            attributes: e.clone(),
            payload: b"p".to_vec(),
        };
        let body = encode(&frame).unwrap();
        assert_eq!(decode_publish(&body), Some(frame.clone()));
        // Trailing bytes, a truncated frame, another frame.
        let mut longer = body.clone();
        longer.push(0);
        assert_eq!(decode_publish(&longer), None);
        for cut in 0..body.len() {
            assert_eq!(decode_publish(&body[..cut]), None, "cut at {cut}");
        }
        let flush = encode(&ClientFrame::Flush { request: 1 }).unwrap();
        assert_eq!(decode_publish(&flush), None);
        // Fields in the other order: serde reads it, the fast path does not.
        #[derive(serde::Serialize)]
        enum Swapped<'a> {
            Publish {
                #[serde(with = "serde_bytes")]
                payload: &'a [u8],
                attributes: &'a Event,
            },
        }
        let swapped = encode(&Swapped::Publish {
            payload: b"p",
            attributes: &e,
        })
        .unwrap();
        assert_eq!(decode_publish(&swapped), None);
        assert_eq!(decode::<ClientFrame>(&swapped).unwrap(), frame);
    }

    #[test]
    fn bad_names_values_and_repeated_names_are_left_to_serde() {
        // [[name, value]] events written by hand.
        let publish = |pairs: &[u8]| {
            let mut b = vec![0x81];
            b.extend_from_slice(&[0xa7]);
            b.extend_from_slice(b"Publish");
            b.push(0x82);
            b.push(0xaa);
            b.extend_from_slice(b"attributes");
            b.extend_from_slice(pairs);
            b.push(0xa7);
            b.extend_from_slice(b"payload");
            b.extend_from_slice(&[0xc4, 0]);
            b
        };
        let cases: [&[u8]; 6] = [
            &[0x91, 0x92, 0xa1, b'A', 0x01], // invalid name
            &[0x92, 0x92, 0xa1, b'a', 0x01, 0x92, 0xa1, b'a', 0x02], // named twice
            &[0x91, 0x92, 0xa1, b'a', 0xce, 0x80, 0, 0, 0], // past i32
            &[0x91, 0x92, 0xa1, b'a', 0xca, 0, 0, 0, 0], // a float
            &[0x91, 0x92, 0xa1, b'a', 0xc0], // nil
            &[0x91, 0x92, 0xa1, b'a', 0xa1, 0xff], // not UTF-8
        ];
        for pairs in cases {
            let body = publish(pairs);
            assert_eq!(decode_publish(&body), None, "{pairs:?}");
            assert!(decode::<ClientFrame>(&body).is_err(), "{pairs:?}");
        }
        // Any integer encoding of an i32 is read as serde reads it.
        let body = publish(&[
            0x92, 0x92, 0xa1, b'b', 0xd3, 0, 0, 0, 0, 0, 0, 0, 5, 0x92, 0xa1, b'a', 0xcf, 0, 0, 0,
            0, 0, 0, 0, 7,
        ]);
        let fast = decode_publish(&body).unwrap();
        assert_eq!(fast, decode::<ClientFrame>(&body).unwrap());
    }
}
