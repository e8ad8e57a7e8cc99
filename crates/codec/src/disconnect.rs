//! DISCONNECT (MQTT 5 section 3.14, 3.1.1 section 3.14).
//!
//! v3.x: an empty body. v5: remaining length 0 means Normal disconnection
//! without properties, 1 a reason code without properties; encoding writes
//! the shortest form.

use bytes::{BufMut, BytesMut};

use crate::packet::{frame_size, write_frame};
use crate::properties::Allowed;
use crate::reason::DISCONNECT_V5;
use crate::varint::{varint_len, Reader};
use crate::{DecodeError, EncodeError, PacketType, Properties, ProtocolVersion, ReasonCode};

/// DISCONNECT packet (v3.x: empty body).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Disconnect {
    /// Reason code (v5; Normal disconnection in v3.x).
    pub code: ReasonCode,
    /// Properties (v5).
    pub properties: Properties,
}

/// Decode the body shared by DISCONNECT and AUTH (v5).
pub(crate) fn decode_code_and_properties(
    r: &mut Reader<'_>,
    packet_type: PacketType,
    codes: &[u8],
    allowed: Allowed,
) -> Result<(ReasonCode, Properties), DecodeError> {
    if r.is_empty() {
        return Ok((ReasonCode::SUCCESS, Properties::default()));
    }
    let code = r.u8()?;
    if !codes.contains(&code) {
        return Err(DecodeError::InvalidReasonCode { packet_type, code });
    }
    let properties = if r.is_empty() {
        Properties::default()
    } else {
        Properties::decode(r, allowed)?
    };
    Ok((ReasonCode(code), properties))
}

impl Disconnect {
    pub(crate) fn decode(
        r: &mut Reader<'_>,
        version: ProtocolVersion,
    ) -> Result<Disconnect, DecodeError> {
        if !version.is_v5() {
            return Ok(Disconnect {
                code: ReasonCode::NORMAL_DISCONNECTION,
                properties: Properties::default(),
            });
        }
        let (code, properties) = decode_code_and_properties(
            r,
            PacketType::Disconnect,
            DISCONNECT_V5,
            Allowed::DISCONNECT,
        )?;
        Ok(Disconnect { code, properties })
    }

    /// Remaining length and property length.
    fn body(&self, version: ProtocolVersion, trim: bool) -> (usize, usize) {
        if !version.is_v5() {
            return (0, 0);
        }
        let props = self.properties.len(trim);
        match (self.code, props) {
            (ReasonCode::NORMAL_DISCONNECTION, 0) => (0, 0),
            (_, 0) => (1, 0),
            _ => (1 + varint_len(props) + props, props),
        }
    }

    pub(crate) fn len_with(&self, version: ProtocolVersion, trim: bool) -> usize {
        frame_size(self.body(version, trim).0)
    }

    pub(crate) fn encode_with(
        &self,
        version: ProtocolVersion,
        trim: bool,
        buf: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        if version.is_v5() {
            self.properties.check(Allowed::DISCONNECT)?;
        }
        let (body, props) = self.body(version, trim);
        write_frame(buf, 0xE0, body, |buf| {
            if body > 0 {
                buf.put_u8(self.code.0);
            }
            if body > 1 {
                self.properties.write(buf, props, trim)?;
            }
            Ok(())
        })
    }

    /// Size of the whole encoded packet (fixed header included) in `version`.
    pub fn encoded_len(&self, version: ProtocolVersion) -> usize {
        self.len_with(version, false)
    }

    /// Append the encoded packet to `buf` in its shortest form.
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

    fn disconnect(code: u8) -> Disconnect {
        Disconnect {
            code: ReasonCode(code),
            properties: Properties::default(),
        }
    }

    #[test]
    fn good_disconnects() {
        for v in [V3_1, V3_1_1, V5] {
            good(&[0xE0, 0], v, Packet::Disconnect(disconnect(0)));
        }
        good(&[0xE0, 1, 0x04], V5, Packet::Disconnect(disconnect(0x04)));
        assert_eq!(
            dec(&[0xE0, 2, 0, 0], V5),
            Ok(Packet::Disconnect(disconnect(0)))
        );
        let mut d = disconnect(0x8E);
        d.properties.session_expiry_interval = Some(0);
        d.properties.reason_string = Some(Bytes::from_static(b"r"));
        good(
            &[0xE0, 11, 0x8E, 9, 0x11, 0, 0, 0, 0, 0x1F, 0, 1, b'r'],
            V5,
            Packet::Disconnect(d),
        );
        // v3 ignores code and properties on encode.
        let mut buf = BytesMut::new();
        disconnect(0x8E).encode(V3_1_1, &mut buf).unwrap();
        assert_eq!(&buf[..], &[0xE0, 0]);
    }

    #[test]
    fn bad_disconnects() {
        for v in [V3_1, V3_1_1] {
            bad(&[0xE0, 1, 0], v, TrailingBytes);
        }
        bad(
            &[0xE0, 1, 0x01],
            V5,
            InvalidReasonCode {
                packet_type: PacketType::Disconnect,
                code: 1,
            },
        );
        bad(
            &[0xE0, 1, 0x84],
            V5,
            InvalidReasonCode {
                packet_type: PacketType::Disconnect,
                code: 0x84,
            },
        );
        bad(
            &[0xE0, 4, 0, 2, 0x21, 1],
            V5,
            PropertyNotAllowed {
                property: 0x21,
                packet_type: PacketType::Disconnect,
            },
        );
        bad(&[0xE0, 3, 0, 0, 0], V5, TrailingBytes);
    }
}
