//! CONNECT (MQTT 5 section 3.1, 3.1.1 section 3.1, 3.1 "MQIsdp").
//!
//! Decoding reads the protocol version from the packet itself; every
//! connect-flag rule (reserved bit, will flags, 3.x password without user
//! name) is checked before any payload field is read. Client identifier
//! policy (length, characters, empty id with clean start 0) belongs to the
//! session, not here.

use bytes::{BufMut, Bytes, BytesMut};

use crate::packet::{frame_size, write_frame};
use crate::properties::Allowed;
use crate::varint::{binary_len, put_binary, Reader};
use crate::{DecodeError, EncodeError, Properties, ProtocolVersion, QoS};

/// CONNECT: the first packet a client sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connect {
    /// Protocol version, read from the packet itself (name and level).
    pub protocol: ProtocolVersion,
    /// Clean Start (v5) / Clean Session (v3.x).
    pub clean_start: bool,
    /// Keep Alive, seconds; 0 turns it off.
    pub keep_alive: u16,
    /// Client Identifier (UTF-8, may be empty).
    pub client_id: Bytes,
    /// The will message, when the will flag is set.
    pub will: Option<Will>,
    /// User Name, when its flag is set.
    pub username: Option<Bytes>,
    /// Password, when its flag is set.
    pub password: Option<Bytes>,
    /// CONNECT properties (v5).
    pub properties: Properties,
}

/// The will message carried by CONNECT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Will {
    /// Will Topic (a topic name: non-empty, no wildcards).
    pub topic: Bytes,
    /// Will Payload.
    pub payload: Bytes,
    /// Will QoS.
    pub qos: QoS,
    /// Will Retain.
    pub retain: bool,
    /// Will properties (v5).
    pub properties: Properties,
}

const USERNAME: u8 = 0x80;
const PASSWORD: u8 = 0x40;
const WILL_RETAIN: u8 = 0x20;
const WILL_QOS_SHIFT: u8 = 3;
const WILL_FLAG: u8 = 0x04;
const CLEAN_START: u8 = 0x02;
const RESERVED: u8 = 0x01;

impl Connect {
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Connect, DecodeError> {
        let name = r.binary()?;
        let level = r.u8()?;
        let protocol = match (&name[..], level) {
            (b"MQTT", 4) => ProtocolVersion::V3_1_1,
            (b"MQTT", 5) => ProtocolVersion::V5,
            (b"MQIsdp", 3) => ProtocolVersion::V3_1,
            // MQTT-3.1.2-2: the broker answers 0x01 (v3) / 0x84 (v5).
            (b"MQTT" | b"MQIsdp", level) => {
                return Err(DecodeError::UnsupportedProtocolVersion(level))
            }
            _ => return Err(DecodeError::InvalidProtocolName), // MQTT-3.1.2-1
        };
        let v5 = protocol.is_v5();
        let flags = r.u8()?;
        if flags & RESERVED != 0 {
            return Err(DecodeError::ConnectReservedFlagSet); // MQTT-3.1.2-3
        }
        let has_will = flags & WILL_FLAG != 0;
        let will_qos = (flags >> WILL_QOS_SHIFT) & 0b11;
        let will_retain = flags & WILL_RETAIN != 0;
        if !has_will && will_qos != 0 {
            return Err(DecodeError::WillQoSWithoutWillFlag); // MQTT-3.1.2-11
        }
        let Some(will_qos) = QoS::from_u8(will_qos) else {
            return Err(DecodeError::InvalidWillQoS); // MQTT-3.1.2-12
        };
        if !has_will && will_retain {
            return Err(DecodeError::WillRetainWithoutWillFlag); // MQTT-3.1.2-13
        }
        let has_username = flags & USERNAME != 0;
        let has_password = flags & PASSWORD != 0;
        if !v5 && has_password && !has_username {
            return Err(DecodeError::PasswordWithoutUsername); // 3.1.1 MQTT-3.1.2-22
        }
        let keep_alive = r.u16()?;
        let properties = if v5 {
            Properties::decode(r, Allowed::CONNECT)?
        } else {
            Properties::default()
        };
        let client_id = r.string()?;
        let will = if has_will {
            let properties = if v5 {
                Properties::decode(r, Allowed::WILL)?
            } else {
                Properties::default()
            };
            // A will topic is a topic name (MQTT 5 section 3.1.3.3).
            let topic = r.topic_name()?;
            if topic.is_empty() {
                return Err(DecodeError::EmptyTopicName); // MQTT-4.7.3-1
            }
            let payload = r.binary()?;
            Some(Will {
                topic,
                payload,
                qos: will_qos,
                retain: will_retain,
                properties,
            })
        } else {
            None
        };
        let username = if has_username {
            Some(r.string()?)
        } else {
            None
        };
        let password = if has_password {
            Some(r.binary()?)
        } else {
            None
        };
        Ok(Connect {
            protocol,
            clean_start: flags & CLEAN_START != 0,
            keep_alive,
            client_id,
            will,
            username,
            password,
            properties,
        })
    }

    fn flags(&self) -> u8 {
        let mut flags = 0;
        if self.clean_start {
            flags |= CLEAN_START;
        }
        if let Some(will) = &self.will {
            flags |= WILL_FLAG | ((will.qos as u8) << WILL_QOS_SHIFT);
            if will.retain {
                flags |= WILL_RETAIN;
            }
        }
        if self.username.is_some() {
            flags |= USERNAME;
        }
        if self.password.is_some() {
            flags |= PASSWORD;
        }
        flags
    }

    /// Remaining length, given the two property list lengths (v5).
    fn body_len(&self, props: usize, will_props: usize) -> usize {
        let v5 = self.protocol.is_v5();
        let mut n = binary_len(self.protocol.protocol_name().as_bytes()) + 1 + 1 + 2;
        if v5 {
            n += crate::varint::varint_len(props) + props;
        }
        n += binary_len(&self.client_id);
        if let Some(will) = &self.will {
            if v5 {
                n += crate::varint::varint_len(will_props) + will_props;
            }
            n += binary_len(&will.topic) + binary_len(&will.payload);
        }
        n += self.username.as_ref().map_or(0, |u| binary_len(u));
        n += self.password.as_ref().map_or(0, |p| binary_len(p));
        n
    }

    fn will_props_len(&self) -> usize {
        self.will.as_ref().map_or(0, |w| w.properties.len(false))
    }

    /// Size of the whole encoded packet (fixed header included). CONNECT is
    /// always written in its own [`Connect::protocol`]; `version` is ignored.
    pub fn encoded_len(&self, version: ProtocolVersion) -> usize {
        let _ = version;
        frame_size(self.body_len(self.properties.len(false), self.will_props_len()))
    }

    /// Append the encoded packet to `buf`, in [`Connect::protocol`]
    /// (`version` is ignored); properties only for MQTT 5.
    pub fn encode(&self, version: ProtocolVersion, buf: &mut BytesMut) -> Result<(), EncodeError> {
        let _ = version;
        let v5 = self.protocol.is_v5();
        if v5 {
            self.properties.check(Allowed::CONNECT)?;
            if let Some(will) = &self.will {
                will.properties.check(Allowed::WILL)?;
            }
        }
        let props = self.properties.len(false);
        let will_props = self.will_props_len();
        let body = self.body_len(props, will_props);
        write_frame(buf, 0x10, body, |buf| {
            put_binary(buf, self.protocol.protocol_name().as_bytes())?;
            buf.put_u8(self.protocol.level());
            buf.put_u8(self.flags());
            buf.put_u16(self.keep_alive);
            if v5 {
                self.properties.write(buf, props, false)?;
            }
            put_binary(buf, &self.client_id)?;
            if let Some(will) = &self.will {
                if v5 {
                    will.properties.write(buf, will_props, false)?;
                }
                put_binary(buf, &will.topic)?;
                put_binary(buf, &will.payload)?;
            }
            if let Some(username) = &self.username {
                put_binary(buf, username)?;
            }
            if let Some(password) = &self.password {
                put_binary(buf, password)?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{bad, dec, good};
    use crate::{EncodeError, Packet, PacketType};
    use DecodeError::*;
    use ProtocolVersion::*;

    fn b(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    fn connect(protocol: ProtocolVersion) -> Connect {
        Connect {
            protocol,
            clean_start: true,
            keep_alive: 60,
            client_id: b("c"),
            will: None,
            username: None,
            password: None,
            properties: Properties::default(),
        }
    }

    #[test]
    fn minimal_in_each_version() {
        good(
            &[
                0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60, 0, 1, b'c',
            ],
            V3_1_1,
            Packet::Connect(Box::new(connect(V3_1_1))),
        );
        good(
            &[
                0x10, 14, 0, 4, b'M', b'Q', b'T', b'T', 5, 0x02, 0, 60, 0, 0, 1, b'c',
            ],
            V5,
            Packet::Connect(Box::new(connect(V5))),
        );
        good(
            &[
                0x10, 15, 0, 6, b'M', b'Q', b'I', b's', b'd', b'p', 3, 0x02, 0, 60, 0, 1, b'c',
            ],
            V3_1,
            Packet::Connect(Box::new(connect(V3_1))),
        );
    }

    #[test]
    fn version_argument_is_ignored() {
        let bytes = [
            0x10, 14, 0, 4, b'M', b'Q', b'T', b'T', 5, 0x02, 0, 60, 0, 0, 1, b'c',
        ];
        for v in [V3_1, V3_1_1, V5] {
            assert_eq!(dec(&bytes, v), Ok(Packet::Connect(Box::new(connect(V5)))));
        }
    }

    #[test]
    fn full_v311_with_will_user_password() {
        let mut c = connect(V3_1_1);
        c.clean_start = false;
        c.keep_alive = 0;
        c.will = Some(Will {
            topic: b("w/t"),
            payload: Bytes::from_static(&[0xFF, 0x00]),
            qos: QoS::ExactlyOnce,
            retain: true,
            properties: Properties::default(),
        });
        c.username = Some(b("u"));
        c.password = Some(Bytes::from_static(&[0x00]));
        let bytes = [
            0x10, 28, 0, 4, b'M', b'Q', b'T', b'T', 4, 0xF4, 0, 0, // header, flags 1111 0100
            0, 1, b'c', // client id
            0, 3, b'w', b'/', b't', 0, 2, 0xFF, 0x00, // will
            0, 1, b'u', 0, 1, 0x00, // user name, password
        ];
        good(&bytes, V3_1_1, Packet::Connect(Box::new(c)));
    }

    #[test]
    fn full_v5_with_properties_and_will_properties() {
        let mut c = connect(V5);
        c.properties.session_expiry_interval = Some(3600);
        c.properties.receive_maximum = Some(20);
        c.will = Some(Will {
            topic: b("w"),
            payload: b("bye"),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: Properties {
                will_delay_interval: Some(5),
                ..Properties::default()
            },
        });
        c.password = Some(b("p"));
        let bytes = [
            0x10, 39, 0, 4, b'M', b'Q', b'T', b'T', 5, 0x4E, 0, 60, // flags 0100 1110
            8, 0x11, 0, 0, 0x0E, 0x10, 0x21, 0, 20, // properties
            0, 1, b'c', // client id
            5, 0x18, 0, 0, 0, 5, // will properties
            0, 1, b'w', 0, 3, b'b', b'y', b'e', // will topic, payload
            0, 1, b'p', // password without user name: allowed in v5
        ];
        good(&bytes, V5, Packet::Connect(Box::new(c)));
    }

    #[test]
    fn bad_connects() {
        let table: &[(&[u8], DecodeError)] = &[
            (
                &[0x10, 10, 0, 4, b'M', b'Q', b'T', b'X', 4, 0x02, 0, 60],
                InvalidProtocolName,
            ),
            (
                &[0x10, 10, 0, 4, b'M', b'Q', b'T', b'T', 6, 0x02, 0, 60],
                UnsupportedProtocolVersion(6),
            ),
            (
                &[0x10, 10, 0, 4, b'M', b'Q', b'T', b'T', 3, 0x02, 0, 60],
                UnsupportedProtocolVersion(3),
            ),
            (
                &[
                    0x10, 12, 0, 6, b'M', b'Q', b'I', b's', b'd', b'p', 4, 0x02, 0, 60,
                ],
                UnsupportedProtocolVersion(4),
            ),
            (
                &[
                    0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x03, 0, 60, 0, 1, b'c',
                ],
                ConnectReservedFlagSet,
            ),
            (
                &[
                    0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x0A, 0, 60, 0, 1, b'c',
                ],
                WillQoSWithoutWillFlag,
            ),
            (
                &[
                    0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x1E, 0, 60, 0, 1, b'c',
                ],
                InvalidWillQoS,
            ),
            (
                &[
                    0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x22, 0, 60, 0, 1, b'c',
                ],
                WillRetainWithoutWillFlag,
            ),
            (
                &[
                    0x10, 16, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x42, 0, 60, 0, 1, b'c', 0, 1, b'p',
                ],
                PasswordWithoutUsername,
            ),
            (
                &[
                    0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60, 0, 1, 0x00,
                ],
                NullCharacter,
            ),
            (
                &[
                    0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60, 0, 1, 0xC0,
                ],
                InvalidUtf8,
            ),
            // Will flag set but no will fields.
            (
                &[
                    0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x06, 0, 60, 0, 1, b'c',
                ],
                UnexpectedEndOfPacket,
            ),
            (
                &[
                    0x10, 18, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x06, 0, 60, 0, 1, b'c', 0, 1, b'#',
                    0, 0,
                ],
                WildcardInTopicName,
            ),
            (
                &[
                    0x10, 17, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x06, 0, 60, 0, 1, b'c', 0, 0, 0, 0,
                ],
                EmptyTopicName,
            ),
            // Remaining length one byte longer than the contents.
            (
                &[
                    0x10, 14, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60, 0, 1, b'c', 0,
                ],
                TrailingBytes,
            ),
            // Remaining length shorter than the client id.
            (
                &[0x10, 12, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60, 0, 1],
                UnexpectedEndOfPacket,
            ),
        ];
        for (bytes, err) in table {
            bad(bytes, V3_1_1, err.clone());
        }
        // v5: a property CONNECT may not carry, and one a will may not carry.
        bad(
            &[
                0x10, 17, 0, 4, b'M', b'Q', b'T', b'T', 5, 0x02, 0, 60, 3, 0x23, 0, 1, 0, 1, b'c',
            ],
            V5,
            PropertyNotAllowed {
                property: 0x23,
                packet_type: PacketType::Connect,
            },
        );
        bad(
            &[
                0x10, 23, 0, 4, b'M', b'Q', b'T', b'T', 5, 0x06, 0, 60, 0, 0, 1, b'c', 3, 0x21, 0,
                1, 0, 1, b't', 0, 0,
            ],
            V5,
            PropertyNotAllowed {
                property: 0x21,
                packet_type: PacketType::Connect,
            },
        );
    }

    #[test]
    fn encode_rejects_will_property_not_allowed() {
        let mut c = connect(V5);
        c.will = Some(Will {
            topic: b("t"),
            payload: Bytes::new(),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: Properties {
                session_expiry_interval: Some(1),
                ..Properties::default()
            },
        });
        let mut buf = BytesMut::new();
        assert_eq!(
            c.encode(V5, &mut buf),
            Err(EncodeError::PropertyNotAllowed {
                property: 0x11,
                packet_type: PacketType::Connect
            })
        );
        // In v3.1.1 properties are simply not written.
        c.protocol = V3_1_1;
        c.encode(V3_1_1, &mut buf).unwrap();
        assert_eq!(buf.len(), c.encoded_len(V3_1_1));
    }
}
