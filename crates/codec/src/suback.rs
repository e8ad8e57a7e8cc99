//! SUBACK (MQTT 5 section 3.9, 3.1.1 section 3.9): one code per filter of
//! the SUBSCRIBE it answers. MQTT 3.1.1 codes (0x00, 0x01, 0x02, 0x80) and
//! MQTT 3.1 granted QoS values (0x00..=0x02) are written as is.

use bytes::{BufMut, BytesMut};

use crate::packet::{frame_size, write_frame};
use crate::properties::Allowed;
use crate::reason::{SUBACK_V31, SUBACK_V311, SUBACK_V5};
use crate::varint::{varint_len, Reader};
use crate::{DecodeError, EncodeError, PacketType, Properties, ProtocolVersion, ReasonCode};

/// SUBACK packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubAck {
    /// Packet Identifier (non-zero).
    pub packet_id: u16,
    /// Properties (v5): Reason String and User Properties.
    pub properties: Properties,
    /// One code per filter (v3.x return codes written as is).
    pub codes: Vec<ReasonCode>,
}

impl SubAck {
    pub(crate) fn decode(
        r: &mut Reader<'_>,
        version: ProtocolVersion,
    ) -> Result<SubAck, DecodeError> {
        let packet_id = r.packet_id()?;
        let (properties, allowed) = match version {
            ProtocolVersion::V5 => (
                Properties::decode(r, Allowed::ack(PacketType::SubAck))?,
                SUBACK_V5,
            ),
            ProtocolVersion::V3_1_1 => (Properties::default(), SUBACK_V311),
            ProtocolVersion::V3_1 => (Properties::default(), SUBACK_V31),
        };
        let mut codes = Vec::with_capacity(r.remaining());
        while !r.is_empty() {
            let code = r.u8()?;
            if !allowed.contains(&code) {
                return Err(DecodeError::InvalidReasonCode {
                    packet_type: PacketType::SubAck,
                    code,
                });
            }
            codes.push(ReasonCode(code));
        }
        Ok(SubAck {
            packet_id,
            properties,
            codes,
        })
    }

    fn wire(&self) -> CodeList<'_> {
        CodeList {
            header: 0x90,
            kind: PacketType::SubAck,
            packet_id: self.packet_id,
            properties: &self.properties,
            codes: &self.codes,
            codes_before_v5: true,
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

    /// Append the encoded packet to `buf`.
    pub fn encode(&self, version: ProtocolVersion, buf: &mut BytesMut) -> Result<(), EncodeError> {
        self.encode_with(version, false, buf)
    }
}

/// The wire form SUBACK and UNSUBACK share: packet identifier, v5
/// properties, one reason code per filter (UNSUBACK has none before v5).
pub(crate) struct CodeList<'a> {
    pub(crate) header: u8,
    pub(crate) kind: PacketType,
    pub(crate) packet_id: u16,
    pub(crate) properties: &'a Properties,
    pub(crate) codes: &'a [ReasonCode],
    pub(crate) codes_before_v5: bool,
}

impl CodeList<'_> {
    fn has_codes(&self, version: ProtocolVersion) -> bool {
        version.is_v5() || self.codes_before_v5
    }

    fn body_len(&self, version: ProtocolVersion, props: usize) -> usize {
        let mut n = 2;
        if version.is_v5() {
            n += varint_len(props) + props;
        }
        if self.has_codes(version) {
            n += self.codes.len();
        }
        n
    }

    pub(crate) fn len_with(&self, version: ProtocolVersion, trim: bool) -> usize {
        let props = self.properties.len_in(version, trim);
        frame_size(self.body_len(version, props))
    }

    pub(crate) fn encode_with(
        &self,
        version: ProtocolVersion,
        trim: bool,
        buf: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        let v5 = version.is_v5();
        let props = self
            .properties
            .checked_len_in(version, Allowed::ack(self.kind), trim)?;
        write_frame(buf, self.header, self.body_len(version, props), |buf| {
            buf.put_u16(self.packet_id);
            if v5 {
                self.properties.write(buf, props, trim)?;
            }
            if self.has_codes(version) {
                for code in self.codes {
                    buf.put_u8(code.0);
                }
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{bad, good};
    use crate::Packet;
    use DecodeError::*;
    use ProtocolVersion::*;

    fn suback(codes: &[u8]) -> Packet {
        Packet::SubAck(SubAck {
            packet_id: 5,
            properties: Properties::default(),
            codes: codes.iter().map(|&c| ReasonCode(c)).collect(),
        })
    }

    #[test]
    fn good_subacks() {
        good(&[0x90, 5, 0, 5, 0, 1, 2], V3_1, suback(&[0, 1, 2]));
        good(
            &[0x90, 6, 0, 5, 0, 1, 2, 0x80],
            V3_1_1,
            suback(&[0, 1, 2, 0x80]),
        );
        good(
            &[0x90, 6, 0, 5, 0, 0x02, 0x8F, 0xA2],
            V5,
            suback(&[2, 0x8F, 0xA2]),
        );
    }

    #[test]
    fn bad_subacks() {
        let code = |code| InvalidReasonCode {
            packet_type: PacketType::SubAck,
            code,
        };
        bad(&[0x90, 3, 0, 5, 0x80], V3_1, code(0x80));
        bad(&[0x90, 3, 0, 5, 0x03], V3_1_1, code(0x03));
        bad(&[0x90, 3, 0, 5, 0x8F], V3_1_1, code(0x8F));
        bad(&[0x90, 4, 0, 5, 0, 0x11], V5, code(0x11));
        bad(&[0x90, 3, 0, 0, 0], V3_1_1, ZeroPacketIdentifier);
    }
}
