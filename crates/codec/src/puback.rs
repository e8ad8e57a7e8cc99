//! PUBACK, PUBREC, PUBREL, PUBCOMP (MQTT 5 sections 3.4-3.7, 3.1.1 the
//! same): a packet identifier, then in MQTT 5 an optional reason code and
//! optional properties.
//!
//! Decoding accepts the MQTT 5 short forms (remaining length 2: Success
//! without properties; 3: a reason code without properties); encoding
//! writes the shortest form that carries the value. In MQTT 3.x the code
//! and properties are not on the wire (decoded as Success / empty).

use bytes::{BufMut, BytesMut};

use crate::packet::{frame_size, write_frame};
use crate::properties::Allowed;
use crate::reason::{PUBACK_V5, PUBREL_V5};
use crate::varint::{varint_len, Reader};
use crate::{DecodeError, EncodeError, PacketType, Properties, ProtocolVersion, ReasonCode};

/// Decode the shared body of the four acknowledgements.
fn decode_ack(
    r: &mut Reader<'_>,
    version: ProtocolVersion,
    packet_type: PacketType,
    codes: &[u8],
) -> Result<(u16, ReasonCode, Properties), DecodeError> {
    let packet_id = r.packet_id()?;
    if !version.is_v5() || r.is_empty() {
        return Ok((packet_id, ReasonCode::SUCCESS, Properties::default()));
    }
    let code = r.u8()?;
    if !codes.contains(&code) {
        return Err(DecodeError::InvalidReasonCode { packet_type, code });
    }
    let properties = if r.is_empty() {
        Properties::default()
    } else {
        Properties::decode(r, Allowed::ack(packet_type))?
    };
    Ok((packet_id, ReasonCode(code), properties))
}

/// Remaining length of an acknowledgement and its property length.
fn ack_body(
    version: ProtocolVersion,
    code: ReasonCode,
    props: &Properties,
    trim: bool,
) -> (usize, usize) {
    if !version.is_v5() {
        return (2, 0);
    }
    let len = props.len(trim);
    if len == 0 {
        if code == ReasonCode::SUCCESS {
            (2, 0)
        } else {
            (3, 0)
        }
    } else {
        (3 + varint_len(len) + len, len)
    }
}

#[allow(clippy::too_many_arguments)]
fn encode_ack(
    buf: &mut BytesMut,
    first: u8,
    packet_type: PacketType,
    version: ProtocolVersion,
    packet_id: u16,
    code: ReasonCode,
    props: &Properties,
    trim: bool,
) -> Result<(), EncodeError> {
    if version.is_v5() {
        props.check(Allowed::ack(packet_type))?;
    }
    let (body, props_len) = ack_body(version, code, props, trim);
    write_frame(buf, first, body, |buf| {
        buf.put_u16(packet_id);
        if body > 2 {
            buf.put_u8(code.0);
        }
        if body > 3 {
            props.write(buf, props_len, trim)?;
        }
        Ok(())
    })
}

macro_rules! ack_packet {
    ($name:ident, $doc:literal, $packet_type:expr, $first:literal, $codes:expr) => {
        #[doc = $doc]
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub struct $name {
            /// Packet Identifier (non-zero).
            pub packet_id: u16,
            /// Reason code (v5; Success in v3.x, where it is not on the wire).
            pub code: ReasonCode,
            /// Properties (v5): Reason String and User Properties.
            pub properties: Properties,
        }

        impl $name {
            pub(crate) fn decode(
                r: &mut Reader<'_>,
                version: ProtocolVersion,
            ) -> Result<$name, DecodeError> {
                let (packet_id, code, properties) = decode_ack(r, version, $packet_type, $codes)?;
                Ok($name {
                    packet_id,
                    code,
                    properties,
                })
            }

            pub(crate) fn len_with(&self, version: ProtocolVersion, trim: bool) -> usize {
                frame_size(ack_body(version, self.code, &self.properties, trim).0)
            }

            pub(crate) fn encode_with(
                &self,
                version: ProtocolVersion,
                trim: bool,
                buf: &mut BytesMut,
            ) -> Result<(), EncodeError> {
                encode_ack(
                    buf,
                    $first,
                    $packet_type,
                    version,
                    self.packet_id,
                    self.code,
                    &self.properties,
                    trim,
                )
            }

            /// Size of the whole encoded packet (fixed header included) in `version`.
            pub fn encoded_len(&self, version: ProtocolVersion) -> usize {
                self.len_with(version, false)
            }

            /// Append the encoded packet to `buf` in its shortest form.
            pub fn encode(
                &self,
                version: ProtocolVersion,
                buf: &mut BytesMut,
            ) -> Result<(), EncodeError> {
                self.encode_with(version, false, buf)
            }
        }
    };
}

ack_packet!(
    PubAck,
    "PUBACK: acknowledges a QoS 1 PUBLISH.",
    PacketType::PubAck,
    0x40,
    PUBACK_V5
);
ack_packet!(
    PubRec,
    "PUBREC: first acknowledgement of a QoS 2 PUBLISH.",
    PacketType::PubRec,
    0x50,
    PUBACK_V5
);
ack_packet!(
    PubRel,
    "PUBREL: releases a QoS 2 PUBLISH (fixed header flags 0b0010).",
    PacketType::PubRel,
    0x62,
    PUBREL_V5
);
ack_packet!(
    PubComp,
    "PUBCOMP: completes a QoS 2 exchange.",
    PacketType::PubComp,
    0x70,
    PUBREL_V5
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{bad, dec, good};
    use crate::Packet;
    use bytes::Bytes;
    use DecodeError::*;
    use ProtocolVersion::*;

    fn puback(code: u8) -> PubAck {
        PubAck {
            packet_id: 0x0102,
            code: ReasonCode(code),
            properties: Properties::default(),
        }
    }

    #[test]
    fn v3_forms() {
        for v in [V3_1, V3_1_1] {
            good(&[0x40, 2, 1, 2], v, Packet::PubAck(puback(0)));
            good(
                &[0x50, 2, 1, 2],
                v,
                Packet::PubRec(PubRec {
                    packet_id: 0x0102,
                    code: ReasonCode::SUCCESS,
                    properties: Properties::default(),
                }),
            );
            good(
                &[0x62, 2, 1, 2],
                v,
                Packet::PubRel(PubRel {
                    packet_id: 0x0102,
                    code: ReasonCode::SUCCESS,
                    properties: Properties::default(),
                }),
            );
            good(
                &[0x70, 2, 1, 2],
                v,
                Packet::PubComp(PubComp {
                    packet_id: 0x0102,
                    code: ReasonCode::SUCCESS,
                    properties: Properties::default(),
                }),
            );
            bad(&[0x40, 3, 1, 2, 0], v, TrailingBytes);
            bad(&[0x40, 1, 1], v, UnexpectedEndOfPacket);
            bad(&[0x40, 2, 0, 0], v, ZeroPacketIdentifier);
        }
        // A v3 encoder ignores the code and properties.
        let mut buf = BytesMut::new();
        puback(0x80).encode(V3_1_1, &mut buf).unwrap();
        assert_eq!(&buf[..], &[0x40, 2, 1, 2]);
    }

    #[test]
    fn v5_short_and_long_forms() {
        good(&[0x40, 2, 1, 2], V5, Packet::PubAck(puback(0)));
        good(&[0x40, 3, 1, 2, 0x10], V5, Packet::PubAck(puback(0x10)));
        // Non-canonical but valid: explicit Success and empty properties.
        assert_eq!(dec(&[0x40, 3, 1, 2, 0], V5), Ok(Packet::PubAck(puback(0))));
        assert_eq!(
            dec(&[0x40, 4, 1, 2, 0, 0], V5),
            Ok(Packet::PubAck(puback(0)))
        );
        let mut with_reason = puback(0x97);
        with_reason.properties.reason_string = Some(Bytes::from_static(b"q"));
        good(
            &[0x40, 8, 1, 2, 0x97, 4, 0x1F, 0, 1, b'q'],
            V5,
            Packet::PubAck(with_reason),
        );
        good(
            &[0x62, 3, 1, 2, 0x92],
            V5,
            Packet::PubRel(PubRel {
                packet_id: 0x0102,
                code: ReasonCode::PACKET_IDENTIFIER_NOT_FOUND,
                properties: Properties::default(),
            }),
        );
    }

    #[test]
    fn v5_bad_codes_and_properties() {
        bad(
            &[0x40, 3, 1, 2, 0x92],
            V5,
            InvalidReasonCode {
                packet_type: PacketType::PubAck,
                code: 0x92,
            },
        );
        bad(
            &[0x50, 3, 1, 2, 0x01],
            V5,
            InvalidReasonCode {
                packet_type: PacketType::PubRec,
                code: 0x01,
            },
        );
        bad(
            &[0x62, 3, 1, 2, 0x10],
            V5,
            InvalidReasonCode {
                packet_type: PacketType::PubRel,
                code: 0x10,
            },
        );
        bad(
            &[0x70, 3, 1, 2, 0x80],
            V5,
            InvalidReasonCode {
                packet_type: PacketType::PubComp,
                code: 0x80,
            },
        );
        bad(
            &[0x40, 6, 1, 2, 0, 2, 0x01, 0],
            V5,
            PropertyNotAllowed {
                property: 0x01,
                packet_type: PacketType::PubAck,
            },
        );
        bad(&[0x40, 5, 1, 2, 0, 0, 0], V5, TrailingBytes);
        bad(&[0x40, 4, 1, 2, 0, 1], V5, UnexpectedEndOfPacket);
    }
}
