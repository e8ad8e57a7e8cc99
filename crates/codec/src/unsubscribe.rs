//! UNSUBSCRIBE (MQTT 5 section 3.10, 3.1.1 section 3.10).

use bytes::{Bytes, BytesMut};

use crate::{EncodeError, Properties, ProtocolVersion, QoS, ReasonCode};

/// UNSUBSCRIBE packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unsubscribe {
    /// Packet Identifier.
    pub packet_id: u16,
    /// Properties (v5).
    pub properties: Properties,
    /// Topic filters (at least one).
    pub filters: Vec<Bytes>,
}

impl Unsubscribe {
    /// Size of the whole encoded packet (fixed header included) in `version`.
    pub fn encoded_len(&self, version: ProtocolVersion) -> usize {
        let _ = version;
        unimplemented!("issue 3: in progress")
    }

    /// Append the encoded packet to `buf`.
    pub fn encode(&self, version: ProtocolVersion, buf: &mut BytesMut) -> Result<(), EncodeError> {
        let _ = (version, buf);
        unimplemented!("issue 3: in progress")
    }
}
