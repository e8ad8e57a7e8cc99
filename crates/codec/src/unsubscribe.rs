//! UNSUBSCRIBE (MQTT 5 section 3.10, 3.1.1 section 3.10): a packet
//! identifier, v5 properties, then at least one non-empty topic filter.
//! Filter syntax beyond that is the topic crate's job.

use bytes::{BufMut, Bytes, BytesMut};

use crate::packet::{frame_size, write_frame};
use crate::properties::Allowed;
use crate::varint::{binary_len, put_binary, varint_len, Reader};
use crate::{DecodeError, EncodeError, Properties, ProtocolVersion};

/// UNSUBSCRIBE packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unsubscribe {
    /// Packet Identifier (non-zero).
    pub packet_id: u16,
    /// Properties (v5): User Properties.
    pub properties: Properties,
    /// Topic filters (at least one).
    pub filters: Vec<Bytes>,
}

impl Unsubscribe {
    pub(crate) fn decode(
        r: &mut Reader<'_>,
        version: ProtocolVersion,
    ) -> Result<Unsubscribe, DecodeError> {
        let packet_id = r.packet_id()?;
        let properties = if version.is_v5() {
            Properties::decode(r, Allowed::UNSUBSCRIBE)?
        } else {
            Properties::default()
        };
        let mut filters = Vec::new();
        while !r.is_empty() {
            let filter = r.string()?;
            if filter.is_empty() {
                return Err(DecodeError::EmptyTopicFilter); // MQTT-4.7.3-1
            }
            filters.push(filter);
        }
        if filters.is_empty() {
            return Err(DecodeError::NoUnsubscribeFilters); // MQTT-3.10.3-2
        }
        Ok(Unsubscribe {
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
        n + self.filters.iter().map(|f| binary_len(f)).sum::<usize>()
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
            .checked_len_in(version, Allowed::UNSUBSCRIBE, false)?;
        write_frame(buf, 0xA2, self.body_len(version, props), |buf| {
            buf.put_u16(self.packet_id);
            if v5 {
                self.properties.write(buf, props, false)?;
            }
            for filter in &self.filters {
                put_binary(buf, filter)?;
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

    fn unsubscribe(filters: &[&'static str]) -> Packet {
        Packet::Unsubscribe(Unsubscribe {
            packet_id: 3,
            properties: Properties::default(),
            filters: filters
                .iter()
                .map(|f| Bytes::from_static(f.as_bytes()))
                .collect(),
        })
    }

    #[test]
    fn good_unsubscribes() {
        for v in [V3_1, V3_1_1] {
            good(
                &[0xA2, 9, 0, 3, 0, 1, b'a', 0, 2, b'b', b'/'],
                v,
                unsubscribe(&["a", "b/"]),
            );
        }
        good(&[0xA2, 6, 0, 3, 0, 0, 1, b'#'], V5, unsubscribe(&["#"]));
    }

    #[test]
    fn bad_unsubscribes() {
        for v in [V3_1, V3_1_1] {
            bad(&[0xA2, 2, 0, 3], v, NoUnsubscribeFilters);
            bad(&[0xA2, 4, 0, 3, 0, 0], v, EmptyTopicFilter);
            bad(&[0xA2, 5, 0, 3, 0, 1, 0xFF], v, InvalidUtf8);
            bad(&[0xA2, 5, 0, 0, 0, 1, b'a'], v, ZeroPacketIdentifier);
        }
        bad(&[0xA2, 3, 0, 3, 0], V5, NoUnsubscribeFilters);
        bad(
            &[0xA2, 8, 0, 3, 2, 0x0B, 1, 0, 1, b'a'],
            V5,
            PropertyNotAllowed {
                property: 0x0B,
                packet_type: PacketType::Unsubscribe,
            },
        );
    }
}
