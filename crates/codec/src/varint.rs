//! Wire primitives: variable byte integers (MQTT 5 section 1.5.5), two and
//! four byte integers, UTF-8 strings (1.5.4) and binary data (1.5.6).
//!
//! Owns: [`Reader`], a bounds-checked cursor over one packet's bytes that
//! hands out string and binary fields as [`Bytes`] slices of the input (a
//! refcount bump, never a copy), and the matching writers into `BytesMut`.
//!
//! Invariants: a `Reader` never reads past its `end`; running out of bytes
//! inside a packet is [`DecodeError::UnexpectedEndOfPacket`], never a panic.

use bytes::{BufMut, Bytes, BytesMut};

use crate::{DecodeError, EncodeError, MAX_REMAINING_LENGTH};

/// Parse a variable byte integer at the front of `buf`.
/// `Ok(None)`: `buf` ends before the integer does.
/// `Ok(Some((value, bytes_used)))` otherwise.
#[inline]
pub(crate) fn parse_varint(buf: &[u8]) -> Result<Option<(u32, usize)>, DecodeError> {
    let mut value = 0u32;
    for i in 0..4 {
        let Some(&byte) = buf.get(i) else {
            return Ok(None);
        };
        value |= u32::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            // MQTT-1.5.5-1: a last byte of 0 after a continuation adds
            // nothing, so a shorter encoding existed.
            if i > 0 && byte == 0 {
                return Err(DecodeError::NonMinimalVariableByteInteger);
            }
            return Ok(Some((value, i + 1)));
        }
    }
    Err(DecodeError::MalformedVariableByteInteger)
}

/// Bytes needed to encode `value` as a variable byte integer. Values above
/// the maximum (which are never written) count as 4.
#[inline]
pub(crate) fn varint_len(value: usize) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Append `value` (at most [`MAX_REMAINING_LENGTH`]) as a variable byte
/// integer.
#[inline]
pub(crate) fn put_varint(buf: &mut BytesMut, value: usize) {
    debug_assert!(value <= MAX_REMAINING_LENGTH as usize);
    let mut value = value;
    loop {
        let mut byte = (value & 0x7F) as u8;
        value >>= 7;
        if value > 0 {
            byte |= 0x80;
        }
        buf.put_u8(byte);
        if value == 0 {
            return;
        }
    }
}

/// Append a two-byte length then `data` (string or binary data).
#[inline]
pub(crate) fn put_binary(buf: &mut BytesMut, data: &[u8]) -> Result<(), EncodeError> {
    let Ok(len) = u16::try_from(data.len()) else {
        return Err(EncodeError::ValueTooLong { len: data.len() });
    };
    buf.put_u16(len);
    buf.put_slice(data);
    Ok(())
}

/// Encoded size of a string or binary field (length prefix included).
#[inline]
pub(crate) fn binary_len(data: &[u8]) -> usize {
    2 + data.len()
}

/// MQTT-1.5.4-1 / MQTT-1.5.4-2: well-formed UTF-8 without U+0000.
#[inline]
pub(crate) fn check_string(data: &[u8]) -> Result<(), DecodeError> {
    if plain_ascii(data, false) {
        return Ok(());
    }
    // Rust's UTF-8 validation also rejects the surrogates U+D800..U+DFFF
    // that MQTT-1.5.4-1 forbids.
    if core::str::from_utf8(data).is_err() {
        return Err(DecodeError::InvalidUtf8);
    }
    if data.contains(&0) {
        return Err(DecodeError::NullCharacter);
    }
    Ok(())
}

/// A topic name: a valid string (as [`check_string`]) without `+` or `#`
/// (MQTT-3.3.2-2). Emptiness is the caller's rule.
#[inline]
pub(crate) fn check_topic_name(data: &[u8]) -> Result<(), DecodeError> {
    // One pass for the common case: printable ASCII, no wildcard.
    if plain_ascii(data, true) {
        return Ok(());
    }
    check_string(data)?;
    if has_wildcard(data) {
        return Err(DecodeError::WildcardInTopicName);
    }
    Ok(())
}

/// True when `data` holds a `+` or `#` wildcard.
#[inline]
pub(crate) fn has_wildcard(data: &[u8]) -> bool {
    data.iter().any(|&c| c == b'+' || c == b'#')
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// True when one of the eight bytes of `word` equals `byte` (exact: the
/// borrow trick only errs in bytes above a true match).
#[inline(always)]
fn has_byte(word: u64, byte: u8) -> bool {
    let x = word ^ (LO * u64::from(byte));
    x.wrapping_sub(LO) & !x & HI != 0
}

/// True when every byte is ASCII and not NUL (and, with `no_wildcards`,
/// neither `+` nor `#`), checked eight bytes at a time. `false` means
/// "look closer", not "invalid".
#[inline]
fn plain_ascii(data: &[u8], no_wildcards: bool) -> bool {
    let mut chunks = data.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_le_bytes(word);
        if word & HI != 0 || has_byte(word, 0) {
            return false;
        }
        if no_wildcards && (has_byte(word, b'+') || has_byte(word, b'#')) {
            return false;
        }
    }
    chunks
        .remainder()
        .iter()
        .all(|&c| c != 0 && c < 0x80 && !(no_wildcards && (c == b'+' || c == b'#')))
}

/// A bounds-checked cursor over `buf[pos..end]`.
pub(crate) struct Reader<'a> {
    buf: &'a Bytes,
    pos: usize,
    end: usize,
}

impl<'a> Reader<'a> {
    /// A reader over `buf[pos..end]`; `pos <= end <= buf.len()`.
    #[inline]
    pub(crate) fn new(buf: &'a Bytes, pos: usize, end: usize) -> Self {
        debug_assert!(pos <= end && end <= buf.len());
        Reader { buf, pos, end }
    }

    /// Bytes left.
    #[inline]
    pub(crate) fn remaining(&self) -> usize {
        self.end - self.pos
    }

    /// True when every byte has been read.
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.pos == self.end
    }

    /// Error unless every byte has been read (remaining length too long).
    #[inline]
    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes)
        }
    }

    #[inline]
    fn advance(&mut self, n: usize) -> Result<usize, DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::UnexpectedEndOfPacket);
        }
        let start = self.pos;
        self.pos += n;
        Ok(start)
    }

    /// One byte.
    #[inline]
    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        let at = self.advance(1)?;
        Ok(self.buf[at])
    }

    /// A big-endian two byte integer.
    #[inline]
    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        let at = self.advance(2)?;
        Ok(u16::from_be_bytes([self.buf[at], self.buf[at + 1]]))
    }

    /// A big-endian four byte integer.
    #[inline]
    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        let at = self.advance(4)?;
        let b = &self.buf[at..at + 4];
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A variable byte integer.
    #[inline]
    pub(crate) fn varint(&mut self) -> Result<u32, DecodeError> {
        match parse_varint(&self.buf[self.pos..self.end])? {
            Some((value, used)) => {
                self.pos += used;
                Ok(value)
            }
            None => Err(DecodeError::UnexpectedEndOfPacket),
        }
    }

    /// The next `n` bytes as a slice of the input.
    #[inline]
    pub(crate) fn take(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        let at = self.advance(n)?;
        Ok(self.buf.slice(at..at + n))
    }

    /// Binary data: a two-byte length then that many bytes.
    #[inline]
    pub(crate) fn binary(&mut self) -> Result<Bytes, DecodeError> {
        let len = self.u16()?;
        self.take(usize::from(len))
    }

    /// A UTF-8 encoded string (validated, see [`check_string`]).
    #[inline]
    pub(crate) fn string(&mut self) -> Result<Bytes, DecodeError> {
        let s = self.binary()?;
        check_string(&s)?;
        Ok(s)
    }

    /// A topic name string (see [`check_topic_name`]).
    #[inline]
    pub(crate) fn topic_name(&mut self) -> Result<Bytes, DecodeError> {
        let s = self.binary()?;
        check_topic_name(&s)?;
        Ok(s)
    }

    /// A non-zero packet identifier (MQTT-2.2.1-3).
    #[inline]
    pub(crate) fn packet_id(&mut self) -> Result<u16, DecodeError> {
        match self.u16()? {
            0 => Err(DecodeError::ZeroPacketIdentifier),
            id => Ok(id),
        }
    }

    /// Everything left, as a slice of the input.
    #[inline]
    pub(crate) fn rest(&mut self) -> Bytes {
        let out = self.buf.slice(self.pos..self.end);
        self.pos = self.end;
        out
    }

    /// Split off the next `n` bytes as their own reader (a property list).
    #[inline]
    pub(crate) fn sub(&mut self, n: usize) -> Result<Reader<'a>, DecodeError> {
        let at = self.advance(n)?;
        Ok(Reader::new(self.buf, at, at + n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(value: usize) -> Vec<u8> {
        let mut buf = BytesMut::new();
        put_varint(&mut buf, value);
        buf.to_vec()
    }

    #[test]
    fn varint_boundaries() {
        // Table 1.5.5 of MQTT 5: the edges of each encoded length.
        let table: &[(usize, &[u8])] = &[
            (0, &[0x00]),
            (127, &[0x7F]),
            (128, &[0x80, 0x01]),
            (16_383, &[0xFF, 0x7F]),
            (16_384, &[0x80, 0x80, 0x01]),
            (2_097_151, &[0xFF, 0xFF, 0x7F]),
            (2_097_152, &[0x80, 0x80, 0x80, 0x01]),
            (268_435_455, &[0xFF, 0xFF, 0xFF, 0x7F]),
        ];
        for &(value, bytes) in table {
            assert_eq!(encode(value), bytes, "{value}");
            assert_eq!(varint_len(value), bytes.len(), "{value}");
            assert_eq!(
                parse_varint(bytes),
                Ok(Some((value as u32, bytes.len()))),
                "{value}"
            );
            // Every strict prefix is incomplete.
            for cut in 0..bytes.len() {
                assert_eq!(parse_varint(&bytes[..cut]), Ok(None), "{value} cut {cut}");
            }
        }
    }

    #[test]
    fn varint_errors() {
        assert_eq!(
            parse_varint(&[0xFF, 0xFF, 0xFF, 0xFF, 0x01]),
            Err(DecodeError::MalformedVariableByteInteger)
        );
        assert_eq!(
            parse_varint(&[0x80, 0x80, 0x80, 0x80]),
            Err(DecodeError::MalformedVariableByteInteger)
        );
        assert_eq!(
            parse_varint(&[0x80, 0x00]),
            Err(DecodeError::NonMinimalVariableByteInteger)
        );
        assert_eq!(
            parse_varint(&[0x81, 0x80, 0x00]),
            Err(DecodeError::NonMinimalVariableByteInteger)
        );
    }

    #[test]
    fn strings() {
        assert_eq!(check_string(b"a/b"), Ok(()));
        assert_eq!(check_string("é/\u{FEFF}".as_bytes()), Ok(()));
        assert_eq!(check_string(b"a\0b"), Err(DecodeError::NullCharacter));
        assert_eq!(
            check_string("é\0".as_bytes()),
            Err(DecodeError::NullCharacter)
        );
        assert_eq!(check_string(&[0xC3]), Err(DecodeError::InvalidUtf8));
        // An encoded surrogate U+D800 (MQTT-1.5.4-1).
        assert_eq!(
            check_string(&[0xED, 0xA0, 0x80]),
            Err(DecodeError::InvalidUtf8)
        );
        assert_eq!(check_topic_name(b"a/b/c/d/e/f/g/h/i"), Ok(()));
        assert_eq!(check_topic_name("a/é".as_bytes()), Ok(()));
        assert_eq!(
            check_topic_name(b"a/b/c/d/+"),
            Err(DecodeError::WildcardInTopicName)
        );
        assert_eq!(
            check_topic_name(b"a/b/c/d/#/x"),
            Err(DecodeError::WildcardInTopicName)
        );
        assert_eq!(
            check_topic_name(b"a\0/b/c/d/+"),
            Err(DecodeError::NullCharacter)
        );
        assert_eq!(
            check_topic_name(&[b'+', 0xFF]),
            Err(DecodeError::InvalidUtf8)
        );
        assert!(has_wildcard(b"a/+"));
        assert!(has_wildcard(b"#"));
        assert!(!has_wildcard(b"a/b"));
    }

    #[test]
    fn word_scan_finds_every_position() {
        // Each special byte at each offset of 1..=20 byte strings, so both
        // the 8-byte chunks and the tail are covered.
        for len in 1..=20 {
            let clean = vec![b'a'; len];
            assert!(plain_ascii(&clean, true));
            for at in 0..len {
                for (byte, wild_only) in [
                    (0u8, false),
                    (0x80, false),
                    (0xFF, false),
                    (b'+', true),
                    (b'#', true),
                ] {
                    let mut s = clean.clone();
                    s[at] = byte;
                    assert!(!plain_ascii(&s, true), "{byte:#x} at {at} of {len}");
                    assert_eq!(
                        plain_ascii(&s, false),
                        wild_only,
                        "{byte:#x} at {at} of {len}"
                    );
                }
                // Neighbours of the special bytes are not mistaken for them.
                for byte in [1u8, 0x7F, b'*', b',', b'"', b'$'] {
                    let mut s = clean.clone();
                    s[at] = byte;
                    assert!(plain_ascii(&s, true), "{byte:#x} at {at} of {len}");
                }
            }
        }
    }

    #[test]
    fn reader_bounds() {
        let buf = Bytes::from_static(&[0x00, 0x03, b'a', b'b', b'c', 0x00, 0x00, 0x12, 0x34]);
        let mut r = Reader::new(&buf, 0, 7);
        assert_eq!(r.string().unwrap(), Bytes::from_static(b"abc"));
        assert_eq!(r.packet_id(), Err(DecodeError::ZeroPacketIdentifier));
        assert_eq!(r.u8(), Err(DecodeError::UnexpectedEndOfPacket));
        r.finish().unwrap();
        let mut r = Reader::new(&buf, 5, 9);
        assert_eq!(r.u32().unwrap(), 0x0000_1234);
        let mut r = Reader::new(&buf, 0, 4);
        assert_eq!(r.binary(), Err(DecodeError::UnexpectedEndOfPacket));
        assert_eq!(r.finish(), Err(DecodeError::TrailingBytes));
    }

    #[test]
    fn put_binary_limit() {
        let mut buf = BytesMut::new();
        let big = vec![b'x'; 65_536];
        assert_eq!(
            put_binary(&mut buf, &big),
            Err(EncodeError::ValueTooLong { len: 65_536 })
        );
        put_binary(&mut buf, &big[..65_535]).unwrap();
        assert_eq!(buf.len(), 65_537);
    }
}
