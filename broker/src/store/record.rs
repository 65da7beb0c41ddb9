//! The byte layout of segment headers and record frames (pure functions, no I/O).
//!
//! Every integer is little-endian. See the module docs of [`super`] for the whole format; this
//! file is the single place that reads or writes it.
//!
//! Decoding treats every byte as untrusted: a frame is accepted only if its magic, kind,
//! reserved bytes and header checksum verify, its length is within the bound and the bytes
//! available, and its payload checksum verifies. Nothing here panics on any input.

use super::position::Position;

/// Length of the segment header at the start of every segment file.
pub(crate) const SEGMENT_HEADER_LEN: u64 = 32;
/// Length of a frame header (the bytes before a record's payload).
pub(crate) const FRAME_HEADER_LEN: usize = 20;
/// The largest record bound a segment header may declare (1 GiB): a header claiming more is
/// not ours, even with a valid checksum.
pub(crate) const MAX_RECORD_LIMIT: u32 = 1 << 30;

/// The first eight bytes of every segment file.
const SEGMENT_MAGIC: [u8; 8] = *b"PALIOSEG";
/// The segment format this code writes and reads.
pub(crate) const FORMAT_VERSION: u32 = 1;
/// The first four bytes of every frame: what recovery searches for to resynchronise after a
/// damaged region. The high bit in the first byte makes it unlikely in text payloads.
pub(crate) const FRAME_MAGIC: [u8; 4] = [0xD0, b'P', b'L', b'R'];

/// What a frame holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FrameKind {
    /// A record appended by the log's owner.
    Data = 1,
    /// The last frame of a finished segment (empty payload): a segment without it, other than
    /// the last one, has lost its end.
    Seal = 2,
}

/// A frame header that verified: what follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameHeader {
    /// Data or seal.
    pub(crate) kind: FrameKind,
    /// Payload length in bytes.
    pub(crate) len: u32,
    /// CRC32C of the payload.
    pub(crate) payload_crc: u32,
}

impl FrameHeader {
    /// Header plus payload, in bytes.
    pub(crate) fn frame_len(&self) -> u64 {
        FRAME_HEADER_LEN as u64 + u64::from(self.len)
    }
}

/// Why a segment header was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeaderError {
    /// Fewer bytes than a header.
    Short,
    /// The magic or the checksum does not match.
    Damaged,
    /// A valid header of a format version this code does not know.
    Version(u32),
    /// A valid header naming another segment than its file name says.
    WrongId(u64),
}

/// A segment header that verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentHeader {
    /// The segment's id.
    pub(crate) id: u64,
    /// The largest record this segment may hold (the `max_record_bytes` it was created with),
    /// which bounds what recovery accepts in it.
    pub(crate) max_record: u32,
}

/// The 32 header bytes of segment `id` created with record bound `max_record`.
pub(crate) fn encode_segment_header(id: u64, max_record: u32) -> [u8; SEGMENT_HEADER_LEN as usize] {
    let mut h = [0u8; SEGMENT_HEADER_LEN as usize];
    h[0..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&max_record.to_le_bytes());
    h[16..24].copy_from_slice(&id.to_le_bytes());
    // 24..28 reserved, zero.
    let crc = crc32c::crc32c(&h[0..28]);
    h[28..32].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Verifies the header of the segment whose file name says `expected_id`.
pub(crate) fn decode_segment_header(
    bytes: &[u8],
    expected_id: u64,
) -> Result<SegmentHeader, HeaderError> {
    let Some(h) = bytes.get(..SEGMENT_HEADER_LEN as usize) else {
        return Err(HeaderError::Short);
    };
    if h[0..8] != SEGMENT_MAGIC || crc32c::crc32c(&h[0..28]) != le_u32(&h[28..32]) {
        return Err(HeaderError::Damaged);
    }
    let version = le_u32(&h[8..12]);
    if version != FORMAT_VERSION {
        return Err(HeaderError::Version(version));
    }
    let max_record = le_u32(&h[12..16]);
    let id = le_u64(&h[16..24]);
    if max_record > MAX_RECORD_LIMIT || h[24..28] != [0; 4] {
        return Err(HeaderError::Damaged);
    }
    if id != expected_id {
        return Err(HeaderError::WrongId(id));
    }
    Ok(SegmentHeader { id, max_record })
}

/// Appends the frame of `payload` at `pos` to `out`.
///
/// The header checksum covers the position, so a frame copied elsewhere (or a frame-shaped
/// byte string inside some payload) never verifies at a position it was not written for.
pub(crate) fn encode_frame(out: &mut Vec<u8>, pos: Position, kind: FrameKind, payload: &[u8]) {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let mut h = [0u8; FRAME_HEADER_LEN];
    h[0..4].copy_from_slice(&FRAME_MAGIC);
    h[4..8].copy_from_slice(&len.to_le_bytes());
    h[8] = kind as u8;
    // 9..12 reserved, zero.
    h[12..16].copy_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    let crc = header_crc(pos, &h[0..16]);
    h[16..20].copy_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(payload);
}

/// Verifies a frame header found at `pos` whose payload may be at most `bound` bytes.
pub(crate) fn decode_frame_header(bytes: &[u8], pos: Position, bound: u32) -> Option<FrameHeader> {
    let h = bytes.get(..FRAME_HEADER_LEN)?;
    if h[0..4] != FRAME_MAGIC || h[9..12] != [0; 3] {
        return None;
    }
    if header_crc(pos, &h[0..16]) != le_u32(&h[16..20]) {
        return None;
    }
    let kind = match h[8] {
        1 => FrameKind::Data,
        2 => FrameKind::Seal,
        _ => return None,
    };
    let len = le_u32(&h[4..8]);
    if len > bound || (kind == FrameKind::Seal && len != 0) {
        return None;
    }
    Some(FrameHeader {
        kind,
        len,
        payload_crc: le_u32(&h[12..16]),
    })
}

/// Whether `payload` is the one `header` describes.
pub(crate) fn payload_matches(header: &FrameHeader, payload: &[u8]) -> bool {
    payload.len() as u64 == u64::from(header.len) && crc32c::crc32c(payload) == header.payload_crc
}

/// The file name of segment `id`: 20 digits (every `u64` fits), so names sort as ids do.
pub(crate) fn segment_file_name(id: u64) -> String {
    format!("{id:020}.seg")
}

/// The id in a segment file name, if `name` is one.
pub(crate) fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn header_crc(pos: Position, header: &[u8]) -> u32 {
    let crc = crc32c::crc32c(&pos.segment.to_le_bytes());
    let crc = crc32c::crc32c_append(crc, &pos.offset.to_le_bytes());
    crc32c::crc32c_append(crc, header)
}

/// Reads a little-endian `u32` from exactly four bytes (callers slice exactly four).
pub(crate) fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

/// Reads a little-endian `u64` from exactly eight bytes (callers slice exactly eight).
pub(crate) fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn segment_header_round_trip_and_checks() {
        let h = encode_segment_header(7, 4096);
        assert_eq!(
            decode_segment_header(&h, 7),
            Ok(SegmentHeader {
                id: 7,
                max_record: 4096
            })
        );
        assert_eq!(decode_segment_header(&h, 8), Err(HeaderError::WrongId(7)));
        assert_eq!(decode_segment_header(&h[..31], 7), Err(HeaderError::Short));
        let mut bad = h;
        bad[13] ^= 1;
        assert_eq!(decode_segment_header(&bad, 7), Err(HeaderError::Damaged));
    }

    #[test]
    fn frame_round_trip() {
        let pos = Position::new(3, 32);
        let mut out = Vec::new();
        encode_frame(&mut out, pos, FrameKind::Data, b"hello");
        assert_eq!(out.len(), FRAME_HEADER_LEN + 5);
        let h = decode_frame_header(&out, pos, 100).expect("valid header");
        assert_eq!(h.kind, FrameKind::Data);
        assert_eq!(h.frame_len(), out.len() as u64);
        assert!(payload_matches(&h, &out[FRAME_HEADER_LEN..]));
        assert!(!payload_matches(&h, b"hellO"));
        // Bound, position and every header byte matter.
        assert_eq!(decode_frame_header(&out, pos, 4), None);
        assert_eq!(decode_frame_header(&out, Position::new(3, 33), 100), None);
        assert_eq!(decode_frame_header(&out, Position::new(4, 32), 100), None);
        for i in 0..FRAME_HEADER_LEN {
            let mut bad = out.clone();
            bad[i] ^= 0x40;
            assert_eq!(decode_frame_header(&bad, pos, 100), None, "byte {i}");
        }
    }

    #[test]
    fn seal_has_no_payload() {
        let pos = Position::new(0, 32);
        let mut out = Vec::new();
        encode_frame(&mut out, pos, FrameKind::Seal, b"");
        let h = decode_frame_header(&out, pos, 0).expect("valid seal");
        assert_eq!((h.kind, h.len), (FrameKind::Seal, 0));
    }

    #[test]
    fn segment_names() {
        assert_eq!(segment_file_name(42), "00000000000000000042.seg");
        assert_eq!(
            parse_segment_file_name("00000000000000000042.seg"),
            Some(42)
        );
        assert_eq!(
            parse_segment_file_name(&segment_file_name(u64::MAX)),
            Some(u64::MAX)
        );
        assert_eq!(parse_segment_file_name("42.seg"), None);
        assert_eq!(parse_segment_file_name("99999999999999999999.seg"), None);
        assert_eq!(parse_segment_file_name("0000000000000000004a.seg"), None);
        assert_eq!(parse_segment_file_name("checkpoint"), None);
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64), seg in any::<u64>(), off in any::<u64>()) {
            let _ = decode_frame_header(&bytes, Position::new(seg, off), u32::MAX);
            let _ = decode_segment_header(&bytes, seg);
        }
    }
}
