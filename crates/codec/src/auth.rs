//! AUTH (MQTT 5 section 3.15; does not exist before 5.0).
//!
//! Remaining length 0 means Success without properties. A reason code
//! without a property length is accepted on decode as for DISCONNECT;
//! encoding always writes the property length after a code.

use bytes::{BufMut, BytesMut};

use crate::disconnect::decode_code_and_properties;
use crate::packet::{frame_size, write_frame};
use crate::properties::Allowed;
use crate::reason::AUTH_V5;
use crate::varint::{varint_len, Reader};
use crate::{DecodeError, EncodeError, PacketType, Properties, ProtocolVersion, ReasonCode};

/// AUTH packet (v5 only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Auth {
    /// Reason code: Success, Continue authentication or Re-authenticate.
    pub code: ReasonCode,
    /// Properties: Authentication Method and Data, Reason String, User
    /// Properties.
    pub properties: Properties,
}

impl Auth {
    /// `version` is V5: the packet layer refuses type 15 before.
    pub(crate) fn decode(
        r: &mut Reader<'_>,
        version: ProtocolVersion,
    ) -> Result<Auth, DecodeError> {
        debug_assert!(version.is_v5());
        let (code, properties) =
            decode_code_and_properties(r, PacketType::Auth, AUTH_V5, Allowed::AUTH)?;
        Ok(Auth { code, properties })
    }

    fn body(&self, trim: bool) -> (usize, usize) {
        let props = self.properties.len(trim);
        if self.code == ReasonCode::SUCCESS && props == 0 {
            (0, 0)
        } else {
            (1 + varint_len(props) + props, props)
        }
    }

    pub(crate) fn len_with(&self, version: ProtocolVersion, trim: bool) -> usize {
        let _ = version;
        frame_size(self.body(trim).0)
    }

    pub(crate) fn encode_with(
        &self,
        version: ProtocolVersion,
        trim: bool,
        buf: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        if !version.is_v5() {
            return Err(EncodeError::NotInVersion {
                packet_type: PacketType::Auth,
                version,
            });
        }
        self.properties.check(Allowed::AUTH)?;
        let (body, props) = self.body(trim);
        write_frame(buf, 0xF0, body, |buf| {
            if body > 0 {
                buf.put_u8(self.code.0);
                self.properties.write(buf, props, trim)?;
            }
            Ok(())
        })
    }

    /// Size of the whole encoded packet (fixed header included); AUTH has
    /// one encoding (MQTT 5).
    pub fn encoded_len(&self, version: ProtocolVersion) -> usize {
        self.len_with(version, false)
    }

    /// Append the encoded packet to `buf`; an error before MQTT 5.
    pub fn encode(&self, version: ProtocolVersion, buf: &mut BytesMut) -> Result<(), EncodeError> {
        self.encode_with(version, false, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{bad, dec, good};
    use crate::Packet;
    use bytes::Bytes;
    use DecodeError::*;
    use ProtocolVersion::*;

    #[test]
    fn good_auths() {
        let success = Auth {
            code: ReasonCode::SUCCESS,
            properties: Properties::default(),
        };
        good(&[0xF0, 0], V5, Packet::Auth(success.clone()));
        assert_eq!(dec(&[0xF0, 1, 0], V5), Ok(Packet::Auth(success.clone())));
        let cont = Auth {
            code: ReasonCode::CONTINUE_AUTHENTICATION,
            properties: Properties {
                authentication_method: Some(Bytes::from_static(b"S")),
                authentication_data: Some(Bytes::from_static(&[1, 2])),
                ..Properties::default()
            },
        };
        good(
            &[0xF0, 11, 0x18, 9, 0x15, 0, 1, b'S', 0x16, 0, 2, 1, 2],
            V5,
            Packet::Auth(cont),
        );
        let reauth = Auth {
            code: ReasonCode::RE_AUTHENTICATE,
            properties: Properties::default(),
        };
        good(&[0xF0, 2, 0x19, 0], V5, Packet::Auth(reauth));
    }

    #[test]
    fn bad_auths() {
        bad(
            &[0xF0, 2, 0x80, 0],
            V5,
            InvalidReasonCode {
                packet_type: PacketType::Auth,
                code: 0x80,
            },
        );
        bad(
            &[0xF0, 5, 0x18, 3, 0x16, 0, 0],
            V5,
            AuthenticationDataWithoutMethod,
        );
        bad(
            &[0xF0, 4, 0x18, 2, 0x17, 1],
            V5,
            PropertyNotAllowed {
                property: 0x17,
                packet_type: PacketType::Auth,
            },
        );
        for v in [V3_1, V3_1_1] {
            bad(&[0xF0, 0], v, InvalidPacketType(15));
        }
    }

    #[test]
    fn not_encodable_before_v5() {
        let auth = Auth {
            code: ReasonCode::SUCCESS,
            properties: Properties::default(),
        };
        let mut buf = BytesMut::new();
        assert_eq!(
            auth.encode(V3_1_1, &mut buf),
            Err(EncodeError::NotInVersion {
                packet_type: PacketType::Auth,
                version: V3_1_1
            })
        );
        assert!(buf.is_empty());
    }
}
