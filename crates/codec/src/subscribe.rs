//! SUBSCRIBE (MQTT 5 section 3.8, 3.1.1 section 3.8) and its subscription
//! options.
//!
//! Decoding checks the filter is a non-empty valid string and the options
//! byte; wildcard placement and `$share/` syntax are the topic crate's job
//! (in MQTT 5 the broker may answer a bad filter with SUBACK 0x8F instead
//! of closing). The one `$share/` rule checked here is MQTT-3.8.3-4 (No
//! Local on a shared subscription), since it is a packet-level error.

use bytes::{BufMut, Bytes, BytesMut};

use crate::packet::{frame_size, write_frame};
use crate::properties::Allowed;
use crate::varint::{binary_len, put_binary, varint_len, Reader};
use crate::{DecodeError, EncodeError, Properties, ProtocolVersion, QoS};

/// Retain Handling subscription option (v5).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RetainHandling {
    /// 0: send retained messages at subscribe time.
    #[default]
    SendAtSubscribe = 0,
    /// 1: send retained messages only if the subscription is new.
    SendAtSubscribeIfNew = 1,
    /// 2: do not send retained messages at subscribe time.
    DoNotSend = 2,
}

impl RetainHandling {
    /// The value for a wire value 0..=2; `None` for 3.
    pub fn from_u8(value: u8) -> Option<RetainHandling> {
        match value {
            0 => Some(RetainHandling::SendAtSubscribe),
            1 => Some(RetainHandling::SendAtSubscribeIfNew),
            2 => Some(RetainHandling::DoNotSend),
            _ => None,
        }
    }
}

/// Subscription options byte (v3.x: only the QoS is on the wire).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SubscriptionOptions {
    /// Maximum QoS.
    pub qos: QoS,
    /// No Local (v5).
    pub no_local: bool,
    /// Retain As Published (v5).
    pub retain_as_published: bool,
    /// Retain Handling (v5).
    pub retain_handling: RetainHandling,
}

const NO_LOCAL: u8 = 0x04;
const RETAIN_AS_PUBLISHED: u8 = 0x08;
const RETAIN_HANDLING_SHIFT: u8 = 4;

impl SubscriptionOptions {
    fn decode(byte: u8, version: ProtocolVersion) -> Result<SubscriptionOptions, DecodeError> {
        // v5: bits 7-6 reserved (MQTT-3.8.3-5); v3.x: bits 7-2
        // (3.1.1 MQTT-3.8.3-4).
        let reserved = if version.is_v5() { 0xC0 } else { 0xFC };
        if byte & reserved != 0 {
            return Err(DecodeError::SubscriptionOptionsReservedBits);
        }
        let Some(qos) = QoS::from_u8(byte & 0b11) else {
            return Err(DecodeError::InvalidSubscriptionQoS);
        };
        let Some(retain_handling) = RetainHandling::from_u8((byte >> RETAIN_HANDLING_SHIFT) & 0b11)
        else {
            return Err(DecodeError::InvalidRetainHandling);
        };
        Ok(SubscriptionOptions {
            qos,
            no_local: byte & NO_LOCAL != 0,
            retain_as_published: byte & RETAIN_AS_PUBLISHED != 0,
            retain_handling,
        })
    }

    /// The options byte; only the QoS bits outside MQTT 5.
    fn to_byte(self, version: ProtocolVersion) -> u8 {
        let mut byte = self.qos as u8;
        if version.is_v5() {
            if self.no_local {
                byte |= NO_LOCAL;
            }
            if self.retain_as_published {
                byte |= RETAIN_AS_PUBLISHED;
            }
            byte |= (self.retain_handling as u8) << RETAIN_HANDLING_SHIFT;
        }
        byte
    }
}

/// SUBSCRIBE packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscribe {
    /// Packet Identifier (non-zero).
    pub packet_id: u16,
    /// Properties (v5): Subscription Identifier (at most one), User Properties.
    pub properties: Properties,
    /// Topic filters with their options, in wire order (at least one).
    pub filters: Vec<(Bytes, SubscriptionOptions)>,
}

impl Subscribe {
    pub(crate) fn decode(
        r: &mut Reader<'_>,
        version: ProtocolVersion,
    ) -> Result<Subscribe, DecodeError> {
        let packet_id = r.packet_id()?;
        let properties = if version.is_v5() {
            Properties::decode(r, Allowed::SUBSCRIBE)?
        } else {
            Properties::default()
        };
        let mut filters = Vec::new();
        while !r.is_empty() {
            let filter = r.string()?;
            if filter.is_empty() {
                return Err(DecodeError::EmptyTopicFilter); // MQTT-4.7.3-1
            }
            let options = SubscriptionOptions::decode(r.u8()?, version)?;
            if options.no_local && filter.starts_with(b"$share/") {
                return Err(DecodeError::NoLocalOnSharedSubscription); // MQTT-3.8.3-4
            }
            filters.push((filter, options));
        }
        if filters.is_empty() {
            return Err(DecodeError::NoTopicFilters); // MQTT-3.8.3-3
        }
        Ok(Subscribe {
            packet_id,
            properties,
            filters,
        })
    }

    fn body_len(&self, version: ProtocolVersion, props: usize) -> usize {
        let mut n = 2;
        if version.is_v5() {
            n += varint_len(props) + props;
        }
        for (filter, _) in &self.filters {
            n += binary_len(filter) + 1;
        }
        n
    }

    /// Size of the whole encoded packet (fixed header included) in `version`.
    pub fn encoded_len(&self, version: ProtocolVersion) -> usize {
        let props = self.properties.len_in(version, false);
        frame_size(self.body_len(version, props))
    }

    /// Append the encoded packet to `buf`.
    pub fn encode(&self, version: ProtocolVersion, buf: &mut BytesMut) -> Result<(), EncodeError> {
        let v5 = version.is_v5();
        let props = self
            .properties
            .checked_len_in(version, Allowed::SUBSCRIBE, false)?;
        write_frame(buf, 0x82, self.body_len(version, props), |buf| {
            buf.put_u16(self.packet_id);
            if v5 {
                self.properties.write(buf, props, false)?;
            }
            for (filter, options) in &self.filters {
                put_binary(buf, filter)?;
                buf.put_u8(options.to_byte(version));
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{bad, good};
    use crate::{Packet, PacketType};
    use DecodeError::*;
    use ProtocolVersion::*;

    fn opts(qos: QoS) -> SubscriptionOptions {
        SubscriptionOptions {
            qos,
            ..SubscriptionOptions::default()
        }
    }

    #[test]
    fn good_v3() {
        for v in [V3_1, V3_1_1] {
            good(
                &[0x82, 12, 0, 1, 0, 3, b'a', b'/', b'#', 1, 0, 1, b'+', 2],
                v,
                Packet::Subscribe(Subscribe {
                    packet_id: 1,
                    properties: Properties::default(),
                    filters: vec![
                        (Bytes::from_static(b"a/#"), opts(QoS::AtLeastOnce)),
                        (Bytes::from_static(b"+"), opts(QoS::ExactlyOnce)),
                    ],
                }),
            );
        }
    }

    #[test]
    fn good_v5() {
        let options = SubscriptionOptions {
            qos: QoS::AtLeastOnce,
            no_local: true,
            retain_as_published: true,
            retain_handling: RetainHandling::DoNotSend,
        };
        good(
            &[0x82, 9, 0, 7, 2, 0x0B, 9, 0, 1, b't', 0x2D],
            V5,
            Packet::Subscribe(Subscribe {
                packet_id: 7,
                properties: Properties {
                    subscription_identifiers: vec![9],
                    ..Properties::default()
                },
                filters: vec![(Bytes::from_static(b"t"), options)],
            }),
        );
    }

    #[test]
    fn bad_subscribes() {
        for v in [V3_1, V3_1_1] {
            bad(&[0x82, 2, 0, 1], v, NoTopicFilters);
            bad(
                &[0x82, 6, 0, 1, 0, 1, b'a', 0x04],
                v,
                SubscriptionOptionsReservedBits,
            );
            bad(
                &[0x82, 6, 0, 1, 0, 1, b'a', 0x03],
                v,
                InvalidSubscriptionQoS,
            );
            bad(&[0x82, 5, 0, 1, 0, 0, 0], v, EmptyTopicFilter);
            bad(&[0x82, 5, 0, 0, 0, 1, b'a'], v, ZeroPacketIdentifier);
            // Filter without its options byte.
            bad(&[0x82, 5, 0, 1, 0, 1, b'a'], v, UnexpectedEndOfPacket);
        }
        bad(&[0x82, 3, 0, 1, 0], V5, NoTopicFilters);
        bad(
            &[0x82, 7, 0, 1, 0, 0, 1, b'a', 0x40],
            V5,
            SubscriptionOptionsReservedBits,
        );
        bad(
            &[0x82, 7, 0, 1, 0, 0, 1, b'a', 0x30],
            V5,
            InvalidRetainHandling,
        );
        bad(
            &[0x82, 7, 0, 1, 0, 0, 1, b'a', 0x03],
            V5,
            InvalidSubscriptionQoS,
        );
        bad(
            &[
                0x82, 16, 0, 1, 0, 0, 10, b'$', b's', b'h', b'a', b'r', b'e', b'/', b'g', b'/',
                b't', 0x04,
            ],
            V5,
            NoLocalOnSharedSubscription,
        );
        bad(
            &[0x82, 9, 0, 1, 2, 0x26, 0, 0, 1, b'a', 0],
            V5,
            UnexpectedEndOfPacket,
        );
        bad(
            &[0x82, 9, 0, 1, 2, 0x23, 1, 0, 1, b'a', 0],
            V5,
            PropertyNotAllowed {
                property: 0x23,
                packet_type: PacketType::Subscribe,
            },
        );
    }

    #[test]
    fn v3_encoding_writes_only_qos() {
        let s = Subscribe {
            packet_id: 1,
            properties: Properties::default(),
            filters: vec![(
                Bytes::from_static(b"a"),
                SubscriptionOptions {
                    qos: QoS::AtLeastOnce,
                    no_local: true,
                    retain_as_published: true,
                    retain_handling: RetainHandling::DoNotSend,
                },
            )],
        };
        let mut buf = BytesMut::new();
        s.encode(V3_1_1, &mut buf).unwrap();
        assert_eq!(&buf[..], &[0x82, 6, 0, 1, 0, 1, b'a', 1]);
    }
}
