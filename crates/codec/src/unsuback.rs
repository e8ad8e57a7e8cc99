//! UNSUBACK (MQTT 5 section 3.11, 3.1.1 section 3.11): v3.x carries only
//! the packet identifier; v5 adds properties and one reason code per filter.

use bytes::BytesMut;

use crate::properties::Allowed;
use crate::reason::UNSUBACK_V5;
use crate::suback::CodeList;
use crate::varint::Reader;
use crate::{DecodeError, EncodeError, PacketType, Properties, ProtocolVersion, ReasonCode};

/// UNSUBACK packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnsubAck {
    /// Packet Identifier (non-zero).
    pub packet_id: u16,
    /// Properties (v5): Reason String and User Properties.
    pub properties: Properties,
    /// One reason code per filter (v5); empty in v3.x (not on the wire).
    pub codes: Vec<ReasonCode>,
}

impl UnsubAck {
    pub(crate) fn decode(
        r: &mut Reader<'_>,
        version: ProtocolVersion,
    ) -> Result<UnsubAck, DecodeError> {
        let packet_id = r.packet_id()?;
        if !version.is_v5() {
            return Ok(UnsubAck {
                packet_id,
                properties: Properties::default(),
                codes: Vec::new(),
            });
        }
        let properties = Properties::decode(r, Allowed::ack(PacketType::UnsubAck))?;
        let mut codes = Vec::with_capacity(r.remaining());
        while !r.is_empty() {
            let code = r.u8()?;
            if !UNSUBACK_V5.contains(&code) {
                return Err(DecodeError::InvalidReasonCode {
                    packet_type: PacketType::UnsubAck,
                    code,
                });
            }
            codes.push(ReasonCode(code));
        }
        Ok(UnsubAck {
            packet_id,
            properties,
            codes,
        })
    }

    fn wire(&self) -> CodeList<'_> {
        CodeList {
            header: 0xB0,
            kind: PacketType::UnsubAck,
            packet_id: self.packet_id,
            properties: &self.properties,
            codes: &self.codes,
            codes_before_v5: false,
        }
    }

    pub(crate) fn len_with(&self, version: ProtocolVersion, trim: bool) -> usize {
        self.wire().len_with(version, trim)
    }

    pub(crate) fn encode_with(
        &self,
        version: ProtocolVersion,
        trim: bool,
        buf: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        self.wire().encode_with(version, trim, buf)
    }

    /// Size of the whole encoded packet (fixed header included) in `version`.
    pub fn encoded_len(&self, version: ProtocolVersion) -> usize {
        self.len_with(version, false)
    }

    /// Append the encoded packet to `buf` (v3.x: codes are not written).
    pub fn encode(&self, version: ProtocolVersion, buf: &mut BytesMut) -> Result<(), EncodeError> {
        self.encode_with(version, false, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{bad, good};
    use crate::Packet;
    use DecodeError::*;
    use ProtocolVersion::*;

    fn unsuback(codes: &[u8]) -> Packet {
        Packet::UnsubAck(UnsubAck {
            packet_id: 9,
            properties: Properties::default(),
            codes: codes.iter().map(|&c| ReasonCode(c)).collect(),
        })
    }

    #[test]
    fn good_unsubacks() {
        for v in [V3_1, V3_1_1] {
            good(&[0xB0, 2, 0, 9], v, unsuback(&[]));
        }
        good(&[0xB0, 5, 0, 9, 0, 0x00, 0x11], V5, unsuback(&[0, 0x11]));
    }

    #[test]
    fn bad_unsubacks() {
        for v in [V3_1, V3_1_1] {
            bad(&[0xB0, 3, 0, 9, 0], v, TrailingBytes);
            bad(&[0xB0, 2, 0, 0], v, ZeroPacketIdentifier);
        }
        bad(
            &[0xB0, 4, 0, 9, 0, 0x02],
            V5,
            InvalidReasonCode {
                packet_type: PacketType::UnsubAck,
                code: 2,
            },
        );
        bad(&[0xB0, 2, 0, 9], V5, UnexpectedEndOfPacket);
    }
}
