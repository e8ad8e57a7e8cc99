//! PUBLISH (MQTT 5 section 3.3, 3.1.1 section 3.3).
//!
//! The hot path: a QoS 0 v3.1.1 PUBLISH decodes with two refcount bumps
//! (topic and payload are slices of the input) and no heap allocation.
//! The fixed header flags (QoS 3, DUP with QoS 0) were checked by the
//! packet layer before the body arrived. Topic alias resolution and
//! direction rules (no Subscription Identifier from a client) belong to
//! the session.

use bytes::{BufMut, Bytes, BytesMut};

use crate::packet::{frame_size, write_frame};
use crate::properties::Allowed;
use crate::properties::EMPTY_PROPERTIES;
use crate::varint::{binary_len, put_binary, varint_len, Reader};
use crate::{DecodeError, EncodeError, Properties, ProtocolVersion, QoS};

/// The properties of a PUBLISH, boxed only when there are any.
///
/// A v5 `Properties` block is ~400 bytes and almost every message has
/// none, so a `Publish` holds a pointer instead: it stays ~90 bytes and
/// moves and clones (two refcounts) cheaply on the routing path. Reading
/// through `Deref` never allocates (an absent block reads as empty);
/// writing through `DerefMut` allocates the block on first write, so hot
/// paths check before they write.
#[derive(Clone, Default)]
pub struct PublishProperties(Option<Box<Properties>>);

impl PublishProperties {
    /// No properties.
    pub const fn none() -> Self {
        Self(None)
    }

    /// Whether no property is set (never allocates).
    pub fn is_empty(&self) -> bool {
        self.0.as_deref().is_none_or(Properties::is_empty)
    }
}

impl From<Properties> for PublishProperties {
    fn from(p: Properties) -> Self {
        if p.is_empty() {
            Self(None)
        } else {
            Self(Some(Box::new(p)))
        }
    }
}

impl From<Option<Box<Properties>>> for PublishProperties {
    fn from(p: Option<Box<Properties>>) -> Self {
        Self(p)
    }
}

impl std::ops::Deref for PublishProperties {
    type Target = Properties;
    fn deref(&self) -> &Properties {
        self.0.as_deref().unwrap_or(&EMPTY_PROPERTIES)
    }
}

impl std::ops::DerefMut for PublishProperties {
    fn deref_mut(&mut self) -> &mut Properties {
        self.0.get_or_insert_with(Box::default)
    }
}

impl PartialEq for PublishProperties {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for PublishProperties {}

impl std::fmt::Debug for PublishProperties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

/// PUBLISH: an application message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Publish {
    /// DUP flag (re-delivery).
    pub dup: bool,
    /// QoS.
    pub qos: QoS,
    /// RETAIN flag.
    pub retain: bool,
    /// Topic Name (may be empty in v5 when a Topic Alias is set).
    pub topic: Bytes,
    /// Packet Identifier; 0 when QoS 0.
    pub packet_id: u16,
    /// PUBLISH properties (v5), boxed when present.
    pub properties: PublishProperties,
    /// Application payload.
    pub payload: Bytes,
}

/// Everything in a PUBLISH before its properties. Small, so the large
/// [`Publish`] (its `Properties` are 400 bytes) is built once, in the
/// caller's return slot, instead of being copied through each layer.
pub(crate) struct PublishHead {
    flags: u8,
    qos: QoS,
    topic: Bytes,
    packet_id: u16,
}

impl PublishHead {
    /// `flags` is the fixed header's low nibble, already validated.
    #[inline(always)]
    fn decode(flags: u8, r: &mut Reader<'_>) -> Result<PublishHead, DecodeError> {
        let qos = match (flags >> 1) & 0b11 {
            0 => QoS::AtMostOnce,
            1 => QoS::AtLeastOnce,
            2 => QoS::ExactlyOnce,
            _ => return Err(DecodeError::InvalidQoS), // MQTT-3.3.1-4
        };
        let topic = r.topic_name()?; // MQTT-1.5.4-1/2, MQTT-3.3.2-2
        let packet_id = if qos == QoS::AtMostOnce {
            0
        } else {
            r.packet_id()? // MQTT-2.2.1-3
        };
        Ok(PublishHead {
            flags,
            qos,
            topic,
            packet_id,
        })
    }

    #[inline(always)]
    fn finish(self, properties: PublishProperties, payload: Bytes) -> Publish {
        Publish {
            dup: self.flags & 0b1000 != 0,
            qos: self.qos,
            retain: self.flags & 0b0001 != 0,
            topic: self.topic,
            packet_id: self.packet_id,
            properties,
            payload,
        }
    }
}

impl Publish {
    /// Decode the body (it runs to the end of the frame, so `r` is empty
    /// afterwards) and hand the packet to `wrap`, which builds the
    /// caller's return value around it.
    #[inline(always)]
    pub(crate) fn decode_into<T>(
        flags: u8,
        r: &mut Reader<'_>,
        version: ProtocolVersion,
        wrap: impl FnOnce(Publish) -> T,
    ) -> Result<T, DecodeError> {
        let head = PublishHead::decode(flags, r)?;
        if version.is_v5() {
            let properties = Properties::decode(r, Allowed::PUBLISH)?;
            // MQTT 5 section 3.3.2.1: an empty topic name only with a
            // Topic Alias.
            if head.topic.is_empty() && properties.topic_alias.is_none() {
                return Err(DecodeError::EmptyTopicName);
            }
            let payload = r.rest();
            Ok(wrap(head.finish(properties.into(), payload)))
        } else {
            if head.topic.is_empty() {
                return Err(DecodeError::EmptyTopicName); // MQTT-4.7.3-1
            }
            let payload = r.rest();
            Ok(wrap(head.finish(PublishProperties::none(), payload)))
        }
    }

    fn first_byte(&self) -> u8 {
        0x30 | (u8::from(self.dup) << 3) | ((self.qos as u8) << 1) | u8::from(self.retain)
    }

    fn body_len(&self, version: ProtocolVersion, props: usize) -> usize {
        let mut n = binary_len(&self.topic) + self.payload.len();
        if self.qos != QoS::AtMostOnce {
            n += 2;
        }
        if version.is_v5() {
            n += varint_len(props) + props;
        }
        n
    }

    /// Size of the whole encoded packet (fixed header included) in `version`.
    #[inline]
    pub fn encoded_len(&self, version: ProtocolVersion) -> usize {
        let props = self.properties.len_in(version, false);
        frame_size(self.body_len(version, props))
    }

    /// Append the encoded packet to `buf`; the packet identifier is written
    /// only for QoS 1 and 2, properties only for MQTT 5.
    #[inline]
    pub fn encode(&self, version: ProtocolVersion, buf: &mut BytesMut) -> Result<(), EncodeError> {
        let v5 = version.is_v5();
        let props = self
            .properties
            .checked_len_in(version, Allowed::PUBLISH, false)?;
        write_frame(
            buf,
            self.first_byte(),
            self.body_len(version, props),
            |buf| {
                put_binary(buf, &self.topic)?;
                if self.qos != QoS::AtMostOnce {
                    buf.put_u16(self.packet_id);
                }
                if v5 {
                    self.properties.write(buf, props, false)?;
                }
                buf.put_slice(&self.payload);
                Ok(())
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{bad, good};
    use crate::{Packet, PacketType};
    use DecodeError::*;
    use ProtocolVersion::*;

    fn publish(qos: QoS, packet_id: u16, topic: &'static str, payload: &'static str) -> Publish {
        Publish {
            dup: false,
            qos,
            retain: false,
            topic: Bytes::from_static(topic.as_bytes()),
            packet_id,
            properties: Properties::default().into(),
            payload: Bytes::from_static(payload.as_bytes()),
        }
    }

    #[test]
    fn good_v3() {
        for v in [V3_1, V3_1_1] {
            good(
                &[0x30, 5, 0, 1, b'a', b'h', b'i'],
                v,
                Packet::Publish(publish(QoS::AtMostOnce, 0, "a", "hi")),
            );
            good(
                &[0x30, 3, 0, 1, b'a'],
                v,
                Packet::Publish(publish(QoS::AtMostOnce, 0, "a", "")),
            );
            let mut p = publish(QoS::AtLeastOnce, 10, "a/b", "x");
            p.retain = true;
            good(
                &[0x33, 8, 0, 3, b'a', b'/', b'b', 0, 10, b'x'],
                v,
                Packet::Publish(p),
            );
            let mut p = publish(QoS::ExactlyOnce, 0xFFFF, "é", "");
            p.dup = true;
            good(
                &[0x3C, 6, 0, 2, 0xC3, 0xA9, 0xFF, 0xFF],
                v,
                Packet::Publish(p),
            );
        }
    }

    #[test]
    fn good_v5() {
        good(
            &[0x30, 6, 0, 1, b'a', 0, b'h', b'i'],
            V5,
            Packet::Publish(publish(QoS::AtMostOnce, 0, "a", "hi")),
        );
        // Empty topic name with a Topic Alias.
        let mut p = publish(QoS::AtLeastOnce, 1, "", "x");
        p.properties.topic_alias = Some(3);
        p.properties.subscription_identifiers = vec![1, 2];
        good(
            &[0x32, 13, 0, 0, 0, 1, 7, 0x0B, 1, 0x0B, 2, 0x23, 0, 3, b'x'],
            V5,
            Packet::Publish(p),
        );
    }

    #[test]
    fn bad_publishes() {
        for v in [V3_1, V3_1_1, V5] {
            bad(&[0x30, 3, 0, 1, b'+'], v, WildcardInTopicName);
            bad(&[0x30, 5, 0, 3, b'a', b'/', b'#'], v, WildcardInTopicName);
            bad(&[0x30, 3, 0, 1, 0x00], v, NullCharacter);
            bad(&[0x30, 4, 0, 2, 0xC3, 0x28], v, InvalidUtf8);
            bad(&[0x32, 5, 0, 1, b'a', 0, 0], v, ZeroPacketIdentifier);
            bad(&[0x32, 4, 0, 1, b'a', 0], v, UnexpectedEndOfPacket);
            bad(&[0x30, 1, 0], v, UnexpectedEndOfPacket);
            bad(&[0x30, 2, 0, 2], v, UnexpectedEndOfPacket);
        }
        bad(&[0x30, 2, 0, 0], V3_1_1, EmptyTopicName);
        bad(&[0x30, 3, 0, 0, 0], V5, EmptyTopicName);
        bad(&[0x30, 7, 0, 1, b'a', 3, 0x23, 0, 0], V5, TopicAliasZero);
        bad(
            &[0x30, 6, 0, 1, b'a', 2, 0x01, 2],
            V5,
            InvalidPropertyValue {
                property: 1,
                value: 2,
            },
        );
        bad(
            &[0x30, 6, 0, 1, b'a', 2, 0x17, 1],
            V5,
            PropertyNotAllowed {
                property: 0x17,
                packet_type: PacketType::Publish,
            },
        );
        // Property length longer than the rest of the packet.
        bad(&[0x30, 4, 0, 1, b'a', 9], V5, UnexpectedEndOfPacket);
        // v5 QoS 0 PUBLISH with no property length at all.
        bad(&[0x30, 3, 0, 1, b'a'], V5, UnexpectedEndOfPacket);
    }

    #[test]
    fn properties_ignored_outside_v5() {
        let mut p = publish(QoS::AtMostOnce, 0, "a", "x");
        p.properties.message_expiry_interval = Some(1);
        let mut buf = BytesMut::new();
        p.encode(V3_1_1, &mut buf).unwrap();
        assert_eq!(&buf[..], &[0x30, 4, 0, 1, b'a', b'x']);
        assert_eq!(p.encoded_len(V3_1_1), 6);
        assert_eq!(p.encoded_len(V5), 12);
    }
}
