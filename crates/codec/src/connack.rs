//! CONNACK (MQTT 5 section 3.2, 3.1.1 section 3.2).
//!
//! For MQTT 3.x, [`ConnAck::code`] carries the v3 return code
//! (0x00..=0x05) and is written as is.

use bytes::{BufMut, BytesMut};

use crate::packet::{frame_size, write_frame};
use crate::properties::Allowed;
use crate::reason::{CONNACK_V3, CONNACK_V5};
use crate::varint::Reader;
use crate::{DecodeError, EncodeError, PacketType, Properties, ProtocolVersion, ReasonCode};

/// CONNACK: the server's answer to CONNECT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnAck {
    /// Session Present.
    pub session_present: bool,
    /// v5 reason code, or the v3.x return code (0x00..=0x05) as is.
    pub code: ReasonCode,
    /// CONNACK properties (v5).
    pub properties: Properties,
}

impl ConnAck {
    pub(crate) fn decode(
        r: &mut Reader<'_>,
        version: ProtocolVersion,
    ) -> Result<ConnAck, DecodeError> {
        let flags = r.u8()?;
        if flags & 0xFE != 0 {
            return Err(DecodeError::ConnAckReservedFlagSet); // MQTT-3.2.2-1
        }
        let session_present = flags & 0x01 != 0;
        let code = r.u8()?;
        let allowed = if version.is_v5() {
            CONNACK_V5
        } else {
            CONNACK_V3
        };
        if !allowed.contains(&code) {
            return Err(DecodeError::InvalidReasonCode {
                packet_type: PacketType::ConnAck,
                code,
            });
        }
        if session_present && code != 0 {
            return Err(DecodeError::SessionPresentWithError); // MQTT-3.2.2-6
        }
        let properties = if version.is_v5() {
            Properties::decode(r, Allowed::CONNACK)?
        } else {
            Properties::default()
        };
        Ok(ConnAck {
            session_present,
            code: ReasonCode(code),
            properties,
        })
    }

    pub(crate) fn len_with(&self, version: ProtocolVersion, trim: bool) -> usize {
        let props = if version.is_v5() {
            self.properties.wire_len(trim)
        } else {
            0
        };
        frame_size(2 + props)
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
            .checked_len_in(version, Allowed::CONNACK, trim)?;
        let body = 2 + if v5 {
            crate::varint::varint_len(props) + props
        } else {
            0
        };
        write_frame(buf, 0x20, body, |buf| {
            buf.put_u8(u8::from(self.session_present));
            buf.put_u8(self.code.0);
            if v5 {
                self.properties.write(buf, props, trim)?;
            }
            Ok(())
        })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{bad, good};
    use crate::Packet;
    use bytes::Bytes;
    use DecodeError::*;
    use ProtocolVersion::*;

    fn ack(session_present: bool, code: u8) -> Packet {
        Packet::ConnAck(ConnAck {
            session_present,
            code: ReasonCode(code),
            properties: Properties::default(),
        })
    }

    #[test]
    fn good_connacks() {
        for v in [V3_1, V3_1_1] {
            good(&[0x20, 2, 0, 0], v, ack(false, 0));
            good(&[0x20, 2, 1, 0], v, ack(true, 0));
            good(&[0x20, 2, 0, 5], v, ack(false, 5));
        }
        good(&[0x20, 3, 0, 0, 0], V5, ack(false, 0));
        good(&[0x20, 3, 1, 0, 0], V5, ack(true, 0));
        good(&[0x20, 3, 0, 0x84, 0], V5, ack(false, 0x84));
        let with_props = Packet::ConnAck(ConnAck {
            session_present: false,
            code: ReasonCode::SUCCESS,
            properties: Properties {
                assigned_client_identifier: Some(Bytes::from_static(b"a1")),
                server_keep_alive: Some(10),
                ..Properties::default()
            },
        });
        good(
            &[0x20, 11, 0, 0, 8, 0x12, 0, 2, b'a', b'1', 0x13, 0, 10],
            V5,
            with_props,
        );
    }

    #[test]
    fn bad_connacks() {
        for v in [V3_1, V3_1_1] {
            bad(&[0x20, 2, 2, 0], v, ConnAckReservedFlagSet);
            bad(
                &[0x20, 2, 0, 6],
                v,
                InvalidReasonCode {
                    packet_type: PacketType::ConnAck,
                    code: 6,
                },
            );
            bad(&[0x20, 2, 1, 4], v, SessionPresentWithError);
            bad(&[0x20, 3, 0, 0, 0], v, TrailingBytes);
            bad(&[0x20, 1, 0], v, UnexpectedEndOfPacket);
        }
        bad(
            &[0x20, 3, 0, 0x01, 0],
            V5,
            InvalidReasonCode {
                packet_type: PacketType::ConnAck,
                code: 1,
            },
        );
        bad(
            &[0x20, 3, 0, 0x8E, 0],
            V5,
            InvalidReasonCode {
                packet_type: PacketType::ConnAck,
                code: 0x8E,
            },
        );
        bad(&[0x20, 3, 1, 0x80, 0], V5, SessionPresentWithError);
        bad(&[0x20, 2, 0, 0], V5, UnexpectedEndOfPacket);
        bad(
            &[0x20, 5, 0, 0, 2, 0x17, 1],
            V5,
            PropertyNotAllowed {
                property: 0x17,
                packet_type: PacketType::ConnAck,
            },
        );
    }

    #[test]
    fn trimmed_connack_drops_reason_string_and_user_properties() {
        let c = ConnAck {
            session_present: false,
            code: ReasonCode::NOT_AUTHORIZED,
            properties: Properties {
                reason_string: Some(Bytes::from_static(b"no")),
                user_properties: vec![(Bytes::from_static(b"k"), Bytes::from_static(b"v"))],
                server_reference: Some(Bytes::from_static(b"s")),
                ..Properties::default()
            },
        };
        let mut buf = BytesMut::new();
        c.encode_with(V5, true, &mut buf).unwrap();
        assert_eq!(&buf[..], &[0x20, 7, 0, 0x87, 4, 0x1C, 0, 1, b's']);
        assert_eq!(c.len_with(V5, true), buf.len());
    }
}
