//! The [`Packet`] enum, its [`PacketType`], the fixed header (MQTT 5
//! section 2.1) and the entry points [`decode`], [`decode_buf`] and
//! [`frame_len`].
//!
//! Invariants: the first byte is validated (type and flags) as soon as it
//! arrives and the size limit as soon as the remaining length is complete,
//! so garbage and oversized packets are refused before their body is
//! buffered. A decoded packet consumed exactly its fixed header plus its
//! remaining length: any byte left inside that frame is an error.

use bytes::{BufMut, Bytes, BytesMut};

use crate::varint::{parse_varint, put_varint, varint_len, Reader};
use crate::{
    Auth, ConnAck, Connect, DecodeError, Disconnect, EncodeError, Limits, ProtocolVersion, PubAck,
    PubComp, PubRec, PubRel, Publish, SubAck, Subscribe, UnsubAck, Unsubscribe,
    MAX_REMAINING_LENGTH,
};

/// MQTT control packet type (the high nibble of the first byte).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PacketType {
    /// 1 CONNECT.
    Connect = 1,
    /// 2 CONNACK.
    ConnAck,
    /// 3 PUBLISH.
    Publish,
    /// 4 PUBACK.
    PubAck,
    /// 5 PUBREC.
    PubRec,
    /// 6 PUBREL.
    PubRel,
    /// 7 PUBCOMP.
    PubComp,
    /// 8 SUBSCRIBE.
    Subscribe,
    /// 9 SUBACK.
    SubAck,
    /// 10 UNSUBSCRIBE.
    Unsubscribe,
    /// 11 UNSUBACK.
    UnsubAck,
    /// 12 PINGREQ.
    PingReq,
    /// 13 PINGRESP.
    PingResp,
    /// 14 DISCONNECT.
    Disconnect,
    /// 15 AUTH (v5 only).
    Auth,
}

impl PacketType {
    /// The type for a wire value 1..=15; `None` for 0 and above 15.
    pub fn from_u8(value: u8) -> Option<PacketType> {
        use PacketType::*;
        Some(match value {
            1 => Connect,
            2 => ConnAck,
            3 => Publish,
            4 => PubAck,
            5 => PubRec,
            6 => PubRel,
            7 => PubComp,
            8 => Subscribe,
            9 => SubAck,
            10 => Unsubscribe,
            11 => UnsubAck,
            12 => PingReq,
            13 => PingResp,
            14 => Disconnect,
            15 => Auth,
            _ => return None,
        })
    }
}

/// One MQTT control packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Packet {
    /// CONNECT (boxed: it is large and rare).
    Connect(Box<Connect>),
    /// CONNACK.
    ConnAck(ConnAck),
    /// PUBLISH.
    Publish(Publish),
    /// PUBACK.
    PubAck(PubAck),
    /// PUBREC.
    PubRec(PubRec),
    /// PUBREL.
    PubRel(PubRel),
    /// PUBCOMP.
    PubComp(PubComp),
    /// SUBSCRIBE.
    Subscribe(Subscribe),
    /// SUBACK.
    SubAck(SubAck),
    /// UNSUBSCRIBE.
    Unsubscribe(Unsubscribe),
    /// UNSUBACK.
    UnsubAck(UnsubAck),
    /// PINGREQ.
    PingReq,
    /// PINGRESP.
    PingResp,
    /// DISCONNECT.
    Disconnect(Disconnect),
    /// AUTH (v5 only).
    Auth(Auth),
}

impl Packet {
    /// The packet's type.
    pub fn packet_type(&self) -> PacketType {
        match self {
            Packet::Connect(_) => PacketType::Connect,
            Packet::ConnAck(_) => PacketType::ConnAck,
            Packet::Publish(_) => PacketType::Publish,
            Packet::PubAck(_) => PacketType::PubAck,
            Packet::PubRec(_) => PacketType::PubRec,
            Packet::PubRel(_) => PacketType::PubRel,
            Packet::PubComp(_) => PacketType::PubComp,
            Packet::Subscribe(_) => PacketType::Subscribe,
            Packet::SubAck(_) => PacketType::SubAck,
            Packet::Unsubscribe(_) => PacketType::Unsubscribe,
            Packet::UnsubAck(_) => PacketType::UnsubAck,
            Packet::PingReq => PacketType::PingReq,
            Packet::PingResp => PacketType::PingResp,
            Packet::Disconnect(_) => PacketType::Disconnect,
            Packet::Auth(_) => PacketType::Auth,
        }
    }

    /// Size of the whole encoded packet (fixed header included) in `version`.
    pub fn encoded_len(&self, version: ProtocolVersion) -> usize {
        self.len_with(version, false)
    }

    /// Append the encoded packet to `buf`. CONNECT is written in its own
    /// `protocol` version; properties only for MQTT 5.
    pub fn encode(&self, version: ProtocolVersion, buf: &mut BytesMut) -> Result<(), EncodeError> {
        self.encode_with(version, false, buf)
    }

    /// True for the packet kinds whose Reason String and User Properties a
    /// sender may leave out to respect the receiver's Maximum Packet Size
    /// (MQTT 5 sections 3.2.2.3.9 ff.: CONNACK, the four publish
    /// acknowledgements, SUBACK, UNSUBACK, DISCONNECT, AUTH).
    pub fn has_optional_diagnostics(&self) -> bool {
        matches!(
            self,
            Packet::ConnAck(_)
                | Packet::PubAck(_)
                | Packet::PubRec(_)
                | Packet::PubRel(_)
                | Packet::PubComp(_)
                | Packet::SubAck(_)
                | Packet::UnsubAck(_)
                | Packet::Disconnect(_)
                | Packet::Auth(_)
        )
    }

    /// [`Packet::encoded_len`] without Reason String and User Properties
    /// where [`Packet::has_optional_diagnostics`]; the full size otherwise.
    pub fn encoded_len_without_diagnostics(&self, version: ProtocolVersion) -> usize {
        self.len_with(version, self.has_optional_diagnostics())
    }

    /// [`Packet::encode`] without Reason String and User Properties where
    /// [`Packet::has_optional_diagnostics`]; the full packet otherwise.
    pub fn encode_without_diagnostics(
        &self,
        version: ProtocolVersion,
        buf: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        self.encode_with(version, self.has_optional_diagnostics(), buf)
    }

    /// Encode within the peer's Maximum Packet Size: the full packet if it
    /// fits, else the packet without optional diagnostics if that fits,
    /// else [`EncodeError::ExceedsMaximumPacketSize`] (for PUBLISH the
    /// server then drops the message, MQTT-3.1.2-25). Returns the bytes
    /// written.
    pub fn encode_limited(
        &self,
        version: ProtocolVersion,
        max_packet_size: u32,
        buf: &mut BytesMut,
    ) -> Result<usize, EncodeError> {
        let max = max_packet_size as usize;
        let full = self.len_with(version, false);
        if full <= max {
            self.encode_with(version, false, buf)?;
            return Ok(full);
        }
        let trim = self.has_optional_diagnostics();
        let smallest = self.len_with(version, trim);
        if trim && smallest <= max {
            self.encode_with(version, true, buf)?;
            return Ok(smallest);
        }
        Err(EncodeError::ExceedsMaximumPacketSize {
            size: smallest,
            max: max_packet_size,
        })
    }

    fn len_with(&self, version: ProtocolVersion, trim: bool) -> usize {
        match self {
            Packet::Connect(p) => p.encoded_len(version),
            Packet::ConnAck(p) => p.len_with(version, trim),
            Packet::Publish(p) => p.encoded_len(version),
            Packet::PubAck(p) => p.len_with(version, trim),
            Packet::PubRec(p) => p.len_with(version, trim),
            Packet::PubRel(p) => p.len_with(version, trim),
            Packet::PubComp(p) => p.len_with(version, trim),
            Packet::Subscribe(p) => p.encoded_len(version),
            Packet::SubAck(p) => p.len_with(version, trim),
            Packet::Unsubscribe(p) => p.encoded_len(version),
            Packet::UnsubAck(p) => p.len_with(version, trim),
            Packet::PingReq | Packet::PingResp => 2,
            Packet::Disconnect(p) => p.len_with(version, trim),
            Packet::Auth(p) => p.len_with(version, trim),
        }
    }

    fn encode_with(
        &self,
        version: ProtocolVersion,
        trim: bool,
        buf: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        match self {
            Packet::Connect(p) => p.encode(version, buf),
            Packet::ConnAck(p) => p.encode_with(version, trim, buf),
            Packet::Publish(p) => p.encode(version, buf),
            Packet::PubAck(p) => p.encode_with(version, trim, buf),
            Packet::PubRec(p) => p.encode_with(version, trim, buf),
            Packet::PubRel(p) => p.encode_with(version, trim, buf),
            Packet::PubComp(p) => p.encode_with(version, trim, buf),
            Packet::Subscribe(p) => p.encode(version, buf),
            Packet::SubAck(p) => p.encode_with(version, trim, buf),
            Packet::Unsubscribe(p) => p.encode(version, buf),
            Packet::UnsubAck(p) => p.encode_with(version, trim, buf),
            Packet::PingReq => crate::ping::encode(PacketType::PingReq, buf),
            Packet::PingResp => crate::ping::encode(PacketType::PingResp, buf),
            Packet::Disconnect(p) => p.encode_with(version, trim, buf),
            Packet::Auth(p) => p.encode_with(version, trim, buf),
        }
    }
}

/// Validate the first byte of a packet: its type exists in `version` and
/// its flags are the ones the standard fixes (MQTT-2.1.3-1, table 2-2).
/// [`decode`] checks it too; a reader calls it as soon as the byte
/// arrives, so garbage is refused before its body is buffered.
#[inline]
pub fn check_first_byte(byte: u8, version: ProtocolVersion) -> Result<PacketType, DecodeError> {
    let kind = byte >> 4;
    let flags = byte & 0x0F;
    let packet_type = match PacketType::from_u8(kind) {
        Some(PacketType::Auth) if !version.is_v5() => {
            return Err(DecodeError::InvalidPacketType(kind))
        }
        Some(t) => t,
        None => return Err(DecodeError::InvalidPacketType(kind)),
    };
    let valid = match packet_type {
        PacketType::Publish => {
            let qos = (flags >> 1) & 0b11;
            if qos == 3 {
                return Err(DecodeError::InvalidQoS); // MQTT-3.3.1-4
            }
            if qos == 0 && flags & 0b1000 != 0 {
                return Err(DecodeError::DupWithQoS0); // MQTT-3.3.1-2
            }
            true
        }
        // MQTT 3.1 sent these with QoS 1 semantics and may set DUP on a
        // retransmission; 3.1.1 and 5 fix the flags to 0b0010.
        PacketType::PubRel | PacketType::Subscribe | PacketType::Unsubscribe => {
            flags == 0b0010 || (version == ProtocolVersion::V3_1 && flags == 0b1010)
        }
        _ => flags == 0,
    };
    if valid {
        Ok(packet_type)
    } else {
        Err(DecodeError::ReservedFlagSet { packet_type, flags })
    }
}

/// `(fixed header length, whole packet length)` once the remaining length
/// is complete; errors for a malformed or oversized one.
#[inline]
fn fixed_header(buf: &[u8], limits: &Limits) -> Result<Option<(usize, usize)>, DecodeError> {
    let Some(rest) = buf.get(1..) else {
        return Ok(None);
    };
    let Some((remaining, used)) = parse_varint(rest)? else {
        return Ok(None);
    };
    let header = 1 + used;
    let total = header + remaining as usize;
    if total > limits.max_packet_size as usize {
        return Err(DecodeError::PacketTooLarge {
            size: total,
            max: limits.max_packet_size,
        });
    }
    Ok(Some((header, total)))
}

/// Decode one packet from the front of `buf`. `Ok(None)`: need more bytes.
/// `Ok(Some((packet, consumed)))`: a whole packet and the bytes it used.
/// `version` is ignored for CONNECT (read from the packet itself).
///
/// String and binary fields are slices of `buf`. Slicing a `Bytes` that
/// was built from a `Vec` makes the bytes crate allocate its shared header
/// once; a `Bytes` frozen from a split `BytesMut` (as [`decode_buf`] uses)
/// is already shared, so decoding a v3.x QoS 0 PUBLISH allocates nothing.
pub fn decode(
    buf: &Bytes,
    version: ProtocolVersion,
    limits: &Limits,
) -> Result<Option<(Packet, usize)>, DecodeError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let packet_type = check_first_byte(first, version)?;
    let Some((header, total)) = fixed_header(buf, limits)? else {
        return Ok(None);
    };
    if buf.len() < total {
        return Ok(None);
    }
    if packet_type == PacketType::Publish {
        // The hot path: build the packet straight into the return value.
        let mut r = Reader::new(buf, header, total);
        return Publish::decode_into(first & 0x0F, &mut r, version, |p| {
            Some((Packet::Publish(p), total))
        });
    }
    let packet = decode_frame(buf, header, total, packet_type, first & 0x0F, version)?;
    Ok(Some((packet, total)))
}

/// Like [`decode`], for a read buffer: on success the consumed bytes are
/// split off the front of `buf` (`split_to` + `freeze`, no copy). On error
/// the buffer may have lost the offending packet; the connection is to be
/// closed anyway.
pub fn decode_buf(
    buf: &mut BytesMut,
    version: ProtocolVersion,
    limits: &Limits,
) -> Result<Option<Packet>, DecodeError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let packet_type = check_first_byte(first, version)?;
    let Some((header, total)) = fixed_header(buf, limits)? else {
        return Ok(None);
    };
    if buf.len() < total {
        return Ok(None);
    }
    let frame = buf.split_to(total).freeze();
    if packet_type == PacketType::Publish {
        let mut r = Reader::new(&frame, header, total);
        return Publish::decode_into(first & 0x0F, &mut r, version, |p| Some(Packet::Publish(p)));
    }
    decode_frame(&frame, header, total, packet_type, first & 0x0F, version).map(Some)
}

/// Fixed header only: `Ok(Some(total_len))` once the fixed header is
/// complete and `total_len` (fixed header + remaining length) is within
/// `limits.max_packet_size`; `Ok(None)` need more; an error for an
/// oversized packet or a malformed remaining length.
pub fn frame_len(buf: &[u8], limits: &Limits) -> Result<Option<usize>, DecodeError> {
    Ok(fixed_header(buf, limits)?.map(|(_, total)| total))
}

/// Decode the body of a complete frame `buf[..total]`.
#[inline]
fn decode_frame(
    buf: &Bytes,
    header: usize,
    total: usize,
    packet_type: PacketType,
    flags: u8,
    version: ProtocolVersion,
) -> Result<Packet, DecodeError> {
    let mut r = Reader::new(buf, header, total);
    let r = &mut r;
    let packet = match packet_type {
        PacketType::Publish => Publish::decode_into(flags, r, version, Packet::Publish)?,
        PacketType::Connect => Packet::Connect(Box::new(Connect::decode(r)?)),
        PacketType::ConnAck => Packet::ConnAck(ConnAck::decode(r, version)?),
        PacketType::PubAck => Packet::PubAck(PubAck::decode(r, version)?),
        PacketType::PubRec => Packet::PubRec(PubRec::decode(r, version)?),
        PacketType::PubRel => Packet::PubRel(PubRel::decode(r, version)?),
        PacketType::PubComp => Packet::PubComp(PubComp::decode(r, version)?),
        PacketType::Subscribe => Packet::Subscribe(Subscribe::decode(r, version)?),
        PacketType::SubAck => Packet::SubAck(SubAck::decode(r, version)?),
        PacketType::Unsubscribe => Packet::Unsubscribe(Unsubscribe::decode(r, version)?),
        PacketType::UnsubAck => Packet::UnsubAck(UnsubAck::decode(r, version)?),
        PacketType::PingReq => Packet::PingReq,
        PacketType::PingResp => Packet::PingResp,
        PacketType::Disconnect => Packet::Disconnect(Disconnect::decode(r, version)?),
        PacketType::Auth => Packet::Auth(Auth::decode(r, version)?),
    };
    // Remaining length longer than the contents.
    r.finish()?;
    Ok(packet)
}

/// Size of a whole packet whose remaining length is `body`.
#[inline]
pub(crate) fn frame_size(body: usize) -> usize {
    1 + varint_len(body) + body
}

/// Write a fixed header then the body; on error `buf` is restored.
#[inline]
pub(crate) fn write_frame(
    buf: &mut BytesMut,
    first: u8,
    body_len: usize,
    body: impl FnOnce(&mut BytesMut) -> Result<(), EncodeError>,
) -> Result<(), EncodeError> {
    if body_len > MAX_REMAINING_LENGTH as usize {
        return Err(EncodeError::PacketTooLarge {
            remaining_length: body_len,
        });
    }
    let start = buf.len();
    buf.reserve(frame_size(body_len));
    buf.put_u8(first);
    put_varint(buf, body_len);
    if let Err(e) = body(buf) {
        buf.truncate(start);
        return Err(e);
    }
    debug_assert_eq!(buf.len() - start, frame_size(body_len));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{bad, dec};
    use crate::{QoS, MAX_PACKET_SIZE};
    use ProtocolVersion::*;

    const ALL: [ProtocolVersion; 3] = [V3_1, V3_1_1, V5];

    #[test]
    fn packet_type_numbers() {
        for n in 1..=15u8 {
            assert_eq!(PacketType::from_u8(n).map(|t| t as u8), Some(n));
        }
        assert_eq!(PacketType::from_u8(0), None);
        assert_eq!(PacketType::from_u8(16), None);
    }

    #[test]
    fn frame_len_cases() {
        let limits = Limits::default();
        assert_eq!(frame_len(&[], &limits), Ok(None));
        assert_eq!(frame_len(&[0x30], &limits), Ok(None));
        assert_eq!(frame_len(&[0x30, 0x80], &limits), Ok(None));
        assert_eq!(frame_len(&[0x30, 0x00], &limits), Ok(Some(2)));
        assert_eq!(frame_len(&[0x30, 0x80, 0x01], &limits), Ok(Some(131)));
        assert_eq!(
            frame_len(&[0x30, 0xFF, 0xFF, 0xFF, 0x7F], &limits),
            Ok(Some(MAX_PACKET_SIZE as usize))
        );
        assert_eq!(
            frame_len(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01], &limits),
            Err(DecodeError::MalformedVariableByteInteger)
        );
        assert_eq!(
            frame_len(&[0x30, 0x80, 0x00], &limits),
            Err(DecodeError::NonMinimalVariableByteInteger)
        );
        let small = Limits {
            max_packet_size: 130,
        };
        assert_eq!(frame_len(&[0x30, 0x7F], &small), Ok(Some(129)));
        assert_eq!(
            frame_len(&[0x30, 0x80, 0x01], &small),
            Err(DecodeError::PacketTooLarge {
                size: 131,
                max: 130
            })
        );
    }

    #[test]
    fn oversized_packet_rejected_from_fixed_header_alone() {
        let limits = Limits {
            max_packet_size: 16,
        };
        // Only the fixed header of a 1 MiB PUBLISH has arrived.
        let buf = Bytes::from_static(&[0x30, 0x80, 0x80, 0x40]);
        for v in ALL {
            assert_eq!(
                decode(&buf, v, &limits),
                Err(DecodeError::PacketTooLarge {
                    size: 1 + 3 + (1 << 20),
                    max: 16
                })
            );
        }
        let mut bm = BytesMut::from(&buf[..]);
        assert!(matches!(
            decode_buf(&mut bm, V3_1_1, &limits),
            Err(DecodeError::PacketTooLarge { .. })
        ));
    }

    #[test]
    fn first_byte_rejected_before_the_rest() {
        let limits = Limits::default();
        let one = |b: u8, v| decode(&Bytes::copy_from_slice(&[b]), v, &limits);
        for v in ALL {
            assert_eq!(one(0x00, v), Err(DecodeError::InvalidPacketType(0)));
            assert_eq!(one(0x36, v), Err(DecodeError::InvalidQoS));
            assert_eq!(one(0x38, v), Err(DecodeError::DupWithQoS0));
            assert_eq!(one(0x30, v), Ok(None));
        }
        assert_eq!(one(0xF0, V3_1_1), Err(DecodeError::InvalidPacketType(15)));
        assert_eq!(one(0xF0, V3_1), Err(DecodeError::InvalidPacketType(15)));
        assert_eq!(one(0xF0, V5), Ok(None));
    }

    #[test]
    fn reserved_flags_table() {
        // (first byte, packet type) with a wrong flags nibble.
        let table: &[(u8, PacketType)] = &[
            (0x11, PacketType::Connect),
            (0x28, PacketType::ConnAck),
            (0x42, PacketType::PubAck),
            (0x51, PacketType::PubRec),
            (0x60, PacketType::PubRel),
            (0x63, PacketType::PubRel),
            (0x74, PacketType::PubComp),
            (0x80, PacketType::Subscribe),
            (0x8A, PacketType::Subscribe),
            (0x92, PacketType::SubAck),
            (0xA0, PacketType::Unsubscribe),
            (0xB1, PacketType::UnsubAck),
            (0xC1, PacketType::PingReq),
            (0xD8, PacketType::PingResp),
            (0xE2, PacketType::Disconnect),
        ];
        for v in [V3_1_1, V5] {
            for &(byte, packet_type) in table {
                bad(
                    &[byte, 0x00],
                    v,
                    DecodeError::ReservedFlagSet {
                        packet_type,
                        flags: byte & 0x0F,
                    },
                );
            }
        }
        bad(
            &[0xF1, 0x00],
            V5,
            DecodeError::ReservedFlagSet {
                packet_type: PacketType::Auth,
                flags: 1,
            },
        );
        // MQTT 3.1 allows DUP on a retransmitted PUBREL.
        assert!(matches!(
            dec(&[0x6A, 0x02, 0x00, 0x01], V3_1),
            Ok(Packet::PubRel(_))
        ));
    }

    #[test]
    fn ping_and_trailing_bytes() {
        for v in ALL {
            assert_eq!(dec(&[0xC0, 0x00], v), Ok(Packet::PingReq));
            assert_eq!(dec(&[0xD0, 0x00], v), Ok(Packet::PingResp));
            bad(&[0xC0, 0x01, 0x00], v, DecodeError::TrailingBytes);
            bad(&[0xD0, 0x01, 0x00], v, DecodeError::TrailingBytes);
        }
    }

    #[test]
    fn decode_consumes_one_packet_and_leaves_the_rest() {
        let limits = Limits::default();
        let buf = Bytes::from_static(&[0xC0, 0x00, 0x30, 0x05, 0x00, 0x01, b'a', b'h', b'i', 0xD0]);
        assert_eq!(
            decode(&buf, V3_1_1, &limits),
            Ok(Some((Packet::PingReq, 2)))
        );
        let rest = buf.slice(2..);
        let (p, n) = decode(&rest, V3_1_1, &limits).unwrap().unwrap();
        assert_eq!(n, 7);
        let Packet::Publish(p) = p else {
            panic!("not a publish: {p:?}")
        };
        assert_eq!(
            (&p.topic[..], &p.payload[..], p.qos),
            (&b"a"[..], &b"hi"[..], QoS::AtMostOnce)
        );
        assert_eq!(decode(&rest.slice(7..), V3_1_1, &limits), Ok(None));

        let mut bm = BytesMut::from(&buf[..]);
        assert_eq!(
            decode_buf(&mut bm, V3_1_1, &limits),
            Ok(Some(Packet::PingReq))
        );
        assert!(matches!(
            decode_buf(&mut bm, V3_1_1, &limits),
            Ok(Some(Packet::Publish(_)))
        ));
        assert_eq!(&bm[..], &[0xD0]);
        assert_eq!(decode_buf(&mut bm, V3_1_1, &limits), Ok(None));
        assert_eq!(&bm[..], &[0xD0]);
    }

    #[test]
    fn payload_is_not_copied() {
        let buf = Bytes::from(vec![0x30, 0x05, 0x00, 0x01, b'a', b'h', b'i']);
        let (p, _) = decode(&buf, V3_1_1, &Limits::default()).unwrap().unwrap();
        let Packet::Publish(p) = p else {
            panic!("not a publish: {p:?}")
        };
        let base = buf.as_ptr() as usize;
        assert_eq!(p.topic.as_ptr() as usize, base + 4);
        assert_eq!(p.payload.as_ptr() as usize, base + 5);

        let mut bm = BytesMut::from(&buf[..]);
        let base = bm.as_ptr() as usize;
        let Ok(Some(Packet::Publish(p))) = decode_buf(&mut bm, V3_1_1, &Limits::default()) else {
            panic!("no publish")
        };
        assert_eq!(p.payload.as_ptr() as usize, base + 5);
    }

    #[test]
    fn encode_limited_drops_diagnostics_then_gives_up() {
        use crate::{Properties, PubAck, ReasonCode};
        let ack = Packet::PubAck(PubAck {
            packet_id: 7,
            code: ReasonCode::QUOTA_EXCEEDED,
            properties: Properties {
                reason_string: Some(Bytes::from_static(b"too many messages")),
                ..Properties::default()
            },
        });
        let full = ack.encoded_len(V5);
        assert_eq!(full, 2 + 2 + 1 + 1 + 3 + 17);
        assert_eq!(ack.encoded_len_without_diagnostics(V5), 5);
        let mut buf = BytesMut::new();
        assert_eq!(ack.encode_limited(V5, full as u32, &mut buf), Ok(full));
        buf.clear();
        assert_eq!(ack.encode_limited(V5, 10, &mut buf), Ok(5));
        assert_eq!(&buf[..], &[0x40, 0x03, 0x00, 0x07, 0x97]);
        buf.clear();
        assert_eq!(
            ack.encode_limited(V5, 4, &mut buf),
            Err(EncodeError::ExceedsMaximumPacketSize { size: 5, max: 4 })
        );
        assert!(buf.is_empty());
        let publish = Packet::Publish(crate::Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: Bytes::from_static(b"t"),
            packet_id: 0,
            properties: Properties {
                user_properties: vec![(Bytes::from_static(b"k"), Bytes::from_static(b"v"))],
                ..Properties::default()
            }
            .into(),
            payload: Bytes::from_static(b"x"),
        });
        // PUBLISH user properties belong to the message: never dropped.
        assert!(!publish.has_optional_diagnostics());
        let size = publish.encoded_len(V5);
        assert_eq!(publish.encoded_len_without_diagnostics(V5), size);
        assert_eq!(
            publish.encode_limited(V5, size as u32 - 1, &mut buf),
            Err(EncodeError::ExceedsMaximumPacketSize {
                size,
                max: size as u32 - 1
            })
        );
    }

    #[test]
    fn encode_error_leaves_buffer_untouched() {
        let publish = Packet::Publish(crate::Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: Bytes::from(vec![b'a'; 70_000]),
            packet_id: 0,
            properties: crate::Properties::default().into(),
            payload: Bytes::new(),
        });
        let mut buf = BytesMut::from(&b"keep"[..]);
        assert_eq!(
            publish.encode(V3_1_1, &mut buf),
            Err(EncodeError::ValueTooLong { len: 70_000 })
        );
        assert_eq!(&buf[..], b"keep");
    }
}
