//! PINGREQ and PINGRESP (MQTT 5 sections 3.12-3.13): a fixed header and
//! nothing else. Decoding lives in the packet layer (an empty body; any
//! byte is [`crate::DecodeError::TrailingBytes`]).

use bytes::{BufMut, BytesMut};

use crate::{EncodeError, PacketType};

/// Append a PINGREQ or PINGRESP.
pub(crate) fn encode(packet_type: PacketType, buf: &mut BytesMut) -> Result<(), EncodeError> {
    debug_assert!(matches!(
        packet_type,
        PacketType::PingReq | PacketType::PingResp
    ));
    buf.put_u8((packet_type as u8) << 4);
    buf.put_u8(0);
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::testutil::{bad, good};
    use crate::{DecodeError, Packet, PacketType, ProtocolVersion};

    #[test]
    fn pings() {
        for v in [
            ProtocolVersion::V3_1,
            ProtocolVersion::V3_1_1,
            ProtocolVersion::V5,
        ] {
            good(&[0xC0, 0], v, Packet::PingReq);
            good(&[0xD0, 0], v, Packet::PingResp);
            bad(&[0xC0, 2, 0, 0], v, DecodeError::TrailingBytes);
            bad(
                &[0xC2, 0],
                v,
                DecodeError::ReservedFlagSet {
                    packet_type: PacketType::PingReq,
                    flags: 2,
                },
            );
        }
    }
}
