//! Pre-encoded PUBLISH packets: the codec encodes one packet per (topic,
//! QoS, payload size) once; every message after that is a `memcpy` of the
//! template into the write buffer plus two patches (the payload stamp and,
//! for QoS 1, the packet identifier). This is what lets one core encode
//! well over a million PUBLISH packets per second, many per write.
//!
//! Invariants: the template is a valid packet encoded by `ringmq-codec`;
//! the patched offsets are derived from its fixed header and topic length,
//! and a unit test decodes patched copies with the codec to prove them.

use bytes::{BufMut, Bytes, BytesMut};
use ringmq_codec::{EncodeError, Properties, ProtocolVersion, Publish, QoS};

use crate::payload::{Stamp, STAMP_LEN};

/// A PUBLISH ready to be stamped and appended.
#[derive(Clone, Debug)]
pub struct PublishTemplate {
    bytes: Vec<u8>,
    payload_at: usize,
    packet_id_at: Option<usize>,
}

impl PublishTemplate {
    /// Encode the template: `payload_len` bytes (at least [`STAMP_LEN`];
    /// the filler after the stamp is a fixed pattern).
    pub fn new(
        version: ProtocolVersion,
        topic: &str,
        qos: QoS,
        payload_len: usize,
    ) -> Result<PublishTemplate, EncodeError> {
        let payload_len = payload_len.max(STAMP_LEN);
        let payload: Vec<u8> = (0..payload_len).map(|i| (i % 251) as u8).collect();
        let publish = Publish {
            dup: false,
            qos,
            retain: false,
            topic: Bytes::copy_from_slice(topic.as_bytes()),
            packet_id: if qos == QoS::AtMostOnce { 0 } else { 1 },
            properties: Properties::default().into(),
            payload: Bytes::from(payload),
        };
        let mut buf = BytesMut::with_capacity(publish.encoded_len(version));
        publish.encode(version, &mut buf)?;
        let bytes = buf.to_vec();
        // Fixed header: the type byte, then the remaining length as a
        // variable byte integer whose last byte has the top bit clear.
        let varint_len = bytes[1..]
            .iter()
            .position(|b| b & 0x80 == 0)
            .map_or(4, |p| p + 1);
        let topic_at = 1 + varint_len;
        let packet_id_at = (qos != QoS::AtMostOnce).then_some(topic_at + 2 + topic.len());
        Ok(PublishTemplate {
            payload_at: bytes.len() - payload_len,
            bytes,
            packet_id_at,
        })
    }

    /// Encoded size of one packet.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Always false: a PUBLISH has at least a fixed header.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Append one stamped copy (with `packet_id` for QoS 1; ignored for
    /// QoS 0).
    #[inline]
    pub fn append(&self, buf: &mut BytesMut, stamp: &Stamp, packet_id: u16) {
        let start = buf.len();
        buf.put_slice(&self.bytes);
        let packet = &mut buf[start..];
        stamp.write(&mut packet[self.payload_at..]);
        if let Some(at) = self.packet_id_at {
            packet[at..at + 2].copy_from_slice(&packet_id.to_be_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringmq_codec::{decode_buf, Limits, Packet};

    fn check(version: ProtocolVersion, qos: QoS, topic: &str, payload_len: usize) {
        let t = PublishTemplate::new(version, topic, qos, payload_len).expect("encodes");
        let mut buf = BytesMut::new();
        for seq in 0..3u64 {
            let stamp = Stamp {
                publisher: 9,
                sequence: seq,
                sent_ns: 1000 + seq,
            };
            t.append(&mut buf, &stamp, 40_000 + seq as u16);
        }
        assert_eq!(buf.len(), 3 * t.len());
        for seq in 0..3u64 {
            let packet = decode_buf(&mut buf, version, &Limits::default())
                .expect("valid")
                .expect("whole");
            let Packet::Publish(p) = packet else {
                panic!("not a PUBLISH");
            };
            assert_eq!(&p.topic[..], topic.as_bytes());
            assert_eq!(p.qos, qos);
            assert_eq!(p.payload.len(), payload_len.max(STAMP_LEN));
            let expected_id = if qos == QoS::AtMostOnce {
                0
            } else {
                40_000 + seq as u16
            };
            assert_eq!(p.packet_id, expected_id);
            let stamp = Stamp::read(&p.payload).expect("stamped");
            assert_eq!((stamp.publisher, stamp.sequence), (9, seq));
            assert_eq!(stamp.sent_ns, 1000 + seq);
        }
        assert!(buf.is_empty());
    }

    #[test]
    fn patched_copies_decode() {
        for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
            for qos in [QoS::AtMostOnce, QoS::AtLeastOnce] {
                check(version, qos, "ringmq-bench/t/0", 64);
                check(version, qos, "a", 16);
                // Remaining length needs 2 and 3 varint bytes.
                check(version, qos, "x/y", 300);
                check(version, qos, "x/y", 70_000);
            }
        }
    }
}
