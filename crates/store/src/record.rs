//! Record framing: `[len: u32 LE][crc: u32 LE][kind: u8][body: len-1 bytes]`.
//!
//! `len` counts the kind byte and the body; `crc` is the CRC-32C of the same
//! `len` bytes. This file owns the frame and the rules for a damaged file;
//! bodies are `event`'s. It never panics on any input and never allocates
//! in proportion to a length it has not checked against the buffer.
//!
//! Decoding walks the buffer from offset 0 and stops at the first record
//! that is not whole and sound. Every record before it is returned;
//! `good_len` is that record's offset, the length to truncate the file to.

use crate::event::{decode_body, BodyError, Event};
use bytes::Bytes;
use std::fmt;

/// Bytes before the kind: `len` and `crc`.
pub const HEADER_LEN: usize = 8;

/// The largest `len` a record may have. It fits the largest PUBLISH the
/// codec accepts (268,435,460 bytes of topic, properties and payload) plus a
/// client id of up to 65,535 bytes and the fixed fields, so every message
/// the broker can accept can be stored; anything above is a damaged length.
pub const MAX_RECORD: u32 = 256 * 1024 * 1024 + 128 * 1024;

/// How a buffer ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tail {
    /// The buffer ended exactly after a whole record (or is empty).
    Clean,
    /// A partial record at `offset`: fewer than [`HEADER_LEN`] bytes are
    /// left, or `len` runs past the end of the buffer. This is what a write
    /// cut short by a crash leaves (or a damaged `len` that points past the
    /// end: the two cannot be told apart).
    Torn {
        /// Where the partial record starts.
        offset: usize,
    },
    /// A whole-looking record at `offset` is damaged; nothing from it on was
    /// decoded.
    Corrupt {
        /// Where the damaged record starts.
        offset: usize,
        /// What is wrong with it.
        why: Corruption,
    },
}

impl Tail {
    /// The offset of the first undecoded byte when the tail is not clean.
    pub fn offset(&self) -> Option<usize> {
        match self {
            Tail::Clean => None,
            Tail::Torn { offset } | Tail::Corrupt { offset, .. } => Some(*offset),
        }
    }
}

/// What is wrong with a corrupt record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Corruption {
    /// `len` is 0 (no kind byte; also what a zero-filled region reads as)
    /// or above [`MAX_RECORD`].
    Length {
        /// The stored length.
        len: u32,
    },
    /// The CRC-32C of kind and body is not the stored one.
    Checksum {
        /// The stored checksum.
        stored: u32,
        /// The checksum of the bytes as read.
        computed: u32,
    },
    /// The checksum is good but no event has this kind byte (a file from a
    /// newer version, or a bug).
    UnknownKind {
        /// The kind byte.
        kind: u8,
    },
    /// The checksum is good and the kind known, but the body does not parse.
    Body {
        /// The kind byte.
        kind: u8,
        /// What did not parse.
        error: BodyError,
    },
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Corruption::Length { len } => {
                write!(f, "record length {len} is 0 or above {MAX_RECORD}")
            }
            Corruption::Checksum { stored, computed } => write!(
                f,
                "record checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
            ),
            Corruption::UnknownKind { kind } => write!(f, "unknown record kind {kind}"),
            Corruption::Body { kind, error } => {
                write!(f, "record of kind {kind} does not parse: {error}")
            }
        }
    }
}

impl std::error::Error for Corruption {}

/// The result of [`decode_all`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoded {
    /// Every event before the first bad record, in order.
    pub events: Vec<Event>,
    /// The length of the good prefix: the offset to truncate the file to.
    pub good_len: usize,
    /// How the buffer ended; its offset, if any, equals `good_len`.
    pub tail: Tail,
}

/// Appends one record holding `event` to `out`.
///
/// An event whose record would exceed [`MAX_RECORD`] encodes, but then
/// decodes as [`Corruption::Length`]; the broker's packet limit keeps every
/// event below it (checked by a `debug_assert!`).
pub fn encode(event: &Event, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER_LEN]);
    out.push(event.kind());
    event.encode_body(out);
    let len = out.len() - start - HEADER_LEN;
    debug_assert!(
        len <= MAX_RECORD as usize,
        "record of {len} bytes above MAX_RECORD"
    );
    let crc = crc32c::crc32c(&out[start + HEADER_LEN..]);
    out[start..start + 4].copy_from_slice(&(len as u32).to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Decodes every whole, sound record of `buf`; see [`decode_each`].
pub fn decode_all(buf: &[u8]) -> Decoded {
    let mut events = Vec::new();
    let (good_len, tail) = decode_each(buf, |e| events.push(e));
    Decoded {
        events,
        good_len,
        tail,
    }
}

/// Decodes the records of `buf` in order, handing each event to `on_event`,
/// and returns `(good_len, tail)`. Recovery uses this to apply a large log
/// without holding all its events at once.
///
/// Each record's body is copied once into a `Bytes` of its own and the
/// event's byte strings are slices of it. Copying (rather than slicing a
/// caller's `Bytes`) means a payload kept for days pins only its own record,
/// never the whole file buffer it was read from; the cost is one copy of
/// each record at start-up.
pub fn decode_each(buf: &[u8], mut on_event: impl FnMut(Event)) -> (usize, Tail) {
    let mut offset = 0;
    loop {
        let rest = &buf[offset..];
        if rest.is_empty() {
            return (offset, Tail::Clean);
        }
        let Some((header, after)) = rest.split_first_chunk::<HEADER_LEN>() else {
            return (offset, Tail::Torn { offset });
        };
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let stored = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if len == 0 || len > MAX_RECORD {
            let why = Corruption::Length { len };
            return (offset, Tail::Corrupt { offset, why });
        }
        let Some(framed) = after.get(..len as usize) else {
            return (offset, Tail::Torn { offset });
        };
        let computed = crc32c::crc32c(framed);
        if computed != stored {
            let why = Corruption::Checksum { stored, computed };
            return (offset, Tail::Corrupt { offset, why });
        }
        let kind = framed[0];
        let body = Bytes::copy_from_slice(&framed[1..]);
        match decode_body(kind, &body) {
            None => {
                let why = Corruption::UnknownKind { kind };
                return (offset, Tail::Corrupt { offset, why });
            }
            Some(Err(error)) => {
                let why = Corruption::Body { kind, error };
                return (offset, Tail::Corrupt { offset, why });
            }
            Some(Ok(event)) => on_event(event),
        }
        offset += HEADER_LEN + len as usize;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testgen;
    use proptest::prelude::*;

    /// Encodes `events` and returns the buffer and each record's offset
    /// (plus the end, so `offsets.len() == events.len() + 1`).
    fn encode_all(events: &[Event]) -> (Vec<u8>, Vec<usize>) {
        let mut buf = Vec::new();
        let mut offsets = vec![0];
        for e in events {
            encode(e, &mut buf);
            offsets.push(buf.len());
        }
        (buf, offsets)
    }

    /// A hand-built frame around `kind` and `body`, with a good checksum.
    fn frame(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut framed = vec![kind];
        framed.extend_from_slice(body);
        let mut out = (framed.len() as u32).to_le_bytes().to_vec();
        out.extend_from_slice(&crc32c::crc32c(&framed).to_le_bytes());
        out.extend_from_slice(&framed);
        out
    }

    #[test]
    fn every_kind_round_trips() {
        let events = testgen::one_of_each();
        let (buf, offsets) = encode_all(&events);
        let d = decode_all(&buf);
        assert_eq!(d.events, events);
        assert_eq!(d.good_len, buf.len());
        assert_eq!(d.tail, Tail::Clean);
        assert_eq!(*offsets.last().unwrap(), buf.len());
    }

    #[test]
    fn the_frame_is_as_documented() {
        let e = Event::SessionGone {
            client_id: Bytes::from_static(b"ab"),
        };
        let mut buf = Vec::new();
        encode(&e, &mut buf);
        let framed = [3, 2, 0, 0, 0, b'a', b'b'];
        let mut want = 7u32.to_le_bytes().to_vec();
        want.extend_from_slice(&crc32c::crc32c(&framed).to_le_bytes());
        want.extend_from_slice(&framed);
        assert_eq!(buf, want);
        assert_eq!(buf, frame(3, &framed[1..]));
    }

    #[test]
    fn empty_buffer_is_clean() {
        assert_eq!(
            decode_all(&[]),
            Decoded {
                events: vec![],
                good_len: 0,
                tail: Tail::Clean
            }
        );
    }

    #[test]
    fn every_truncation_point_yields_the_whole_records_before_it() {
        let events = testgen::one_of_each();
        let (buf, offsets) = encode_all(&events);
        for cut in 0..=buf.len() {
            let d = decode_all(&buf[..cut]);
            // The records that end at or before the cut are whole.
            let whole = offsets.iter().rposition(|&o| o <= cut).unwrap();
            assert_eq!(d.events, events[..whole], "cut at {cut}");
            assert_eq!(d.good_len, offsets[whole], "cut at {cut}");
            if cut == offsets[whole] {
                assert_eq!(d.tail, Tail::Clean, "cut at {cut}");
            } else {
                let offset = offsets[whole];
                assert_eq!(d.tail, Tail::Torn { offset }, "cut at {cut}");
            }
        }
    }

    #[test]
    fn every_flipped_bit_stops_decoding_at_its_record() {
        let events = testgen::one_of_each();
        let (buf, offsets) = encode_all(&events);
        for byte in 0..buf.len() {
            let rec = offsets.iter().rposition(|&o| o <= byte).unwrap();
            let offset = offsets[rec];
            for bit in 0..8 {
                let mut bad = buf.clone();
                bad[byte] ^= 1 << bit;
                let d = decode_all(&bad);
                let at = format!("byte {byte} bit {bit}");
                assert_eq!(d.events, events[..rec], "{at}");
                assert_eq!(d.good_len, offset, "{at}");
                let in_len = byte < offset + 4;
                match d.tail {
                    Tail::Corrupt { offset: o, .. } => assert_eq!(o, offset, "{at}"),
                    // Only a damaged length can make the record look cut
                    // short: one that now runs past the end of the buffer.
                    Tail::Torn { offset: o } => {
                        assert_eq!(o, offset, "{at}");
                        assert!(in_len, "{at}");
                        let len = u32::from_le_bytes(bad[offset..offset + 4].try_into().unwrap());
                        assert!(offset + HEADER_LEN + len as usize > bad.len(), "{at}");
                    }
                    Tail::Clean => panic!("{at}: flipped bit went unnoticed"),
                }
                if !in_len {
                    // The checksum covers everything after the length.
                    assert!(
                        matches!(
                            d.tail,
                            Tail::Corrupt {
                                why: Corruption::Checksum { .. },
                                ..
                            }
                        ),
                        "{at}: {:?}",
                        d.tail
                    );
                }
            }
        }
    }

    #[test]
    fn unknown_kind_is_corrupt() {
        let good = testgen::one_of_each().remove(0);
        let mut buf = Vec::new();
        encode(&good, &mut buf);
        let offset = buf.len();
        for kind in [0u8, 16, 200, 255] {
            let mut b = buf.clone();
            b.extend_from_slice(&frame(kind, b"xyz"));
            let d = decode_all(&b);
            assert_eq!(d.events, std::slice::from_ref(&good));
            assert_eq!(d.good_len, offset);
            let why = Corruption::UnknownKind { kind };
            assert_eq!(d.tail, Tail::Corrupt { offset, why });
        }
    }

    #[test]
    fn unparsable_body_is_corrupt() {
        // SessionGone whose string length says 9 but holds 2 bytes.
        let b = frame(3, &[9, 0, 0, 0, b'a', b'b']);
        let why = Corruption::Body {
            kind: 3,
            error: BodyError::Short,
        };
        assert_eq!(decode_all(&b).tail, Tail::Corrupt { offset: 0, why });
    }

    #[test]
    fn zero_and_huge_lengths_are_corrupt() {
        for len in [0, MAX_RECORD + 1, u32::MAX] {
            let mut b = len.to_le_bytes().to_vec();
            b.extend_from_slice(&[0; 12]);
            let why = Corruption::Length { len };
            assert_eq!(
                decode_all(&b),
                Decoded {
                    events: vec![],
                    good_len: 0,
                    tail: Tail::Corrupt { offset: 0, why }
                }
            );
        }
        // A zero-filled tail (a preallocated or padded file) reads as corrupt.
        assert!(matches!(
            decode_all(&[0; 64]).tail,
            Tail::Corrupt {
                offset: 0,
                why: Corruption::Length { len: 0 }
            }
        ));
        // MAX_RECORD itself is a legal length: with the body missing it is torn.
        let mut b = MAX_RECORD.to_le_bytes().to_vec();
        b.extend_from_slice(&[0; 12]);
        assert_eq!(decode_all(&b).tail, Tail::Torn { offset: 0 });
    }

    #[test]
    fn corruption_displays() {
        let why = Corruption::Checksum {
            stored: 1,
            computed: 2,
        };
        assert_eq!(
            why.to_string(),
            "record checksum mismatch (stored 0x00000001, computed 0x00000002)"
        );
    }

    proptest! {
        #[test]
        fn any_events_round_trip(events in proptest::collection::vec(testgen::event(), 0..40)) {
            let (buf, _) = encode_all(&events);
            let d = decode_all(&buf);
            prop_assert_eq!(d.events, events);
            prop_assert_eq!(d.good_len, buf.len());
            prop_assert_eq!(d.tail, Tail::Clean);
        }

        #[test]
        fn arbitrary_bytes_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..512)) {
            let d = decode_all(&buf);
            prop_assert!(d.good_len <= buf.len());
            prop_assert_eq!(d.tail.offset().unwrap_or(buf.len()), d.good_len);
        }

        #[test]
        fn garbage_after_good_records_keeps_them(
            events in proptest::collection::vec(testgen::event(), 0..8),
            garbage in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let (mut buf, _) = encode_all(&events);
            let good = buf.len();
            buf.extend_from_slice(&garbage);
            let d = decode_all(&buf);
            prop_assert!(d.good_len >= good);
            prop_assert_eq!(&d.events[..events.len()], &events[..]);
        }
    }
}
