//! PUBACK, PUBREC, PUBREL, PUBCOMP (MQTT 5 sections 3.4-3.7).

use bytes::{Bytes, BytesMut};

use crate::{EncodeError, Properties, ProtocolVersion, QoS, ReasonCode};

/// PUBACK packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PubAck {
    /// Packet Identifier.
    pub packet_id: u16,
    /// Reason code (v5; SUCCESS in v3.x).
    pub code: ReasonCode,
    /// Properties (v5).
    pub properties: Properties,
}

impl PubAck {
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
/// PUBREC packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PubRec {
    /// Packet Identifier.
    pub packet_id: u16,
    /// Reason code (v5; SUCCESS in v3.x).
    pub code: ReasonCode,
    /// Properties (v5).
    pub properties: Properties,
}

impl PubRec {
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
/// PUBREL packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PubRel {
    /// Packet Identifier.
    pub packet_id: u16,
    /// Reason code (v5; SUCCESS in v3.x).
    pub code: ReasonCode,
    /// Properties (v5).
    pub properties: Properties,
}

impl PubRel {
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
/// PUBCOMP packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PubComp {
    /// Packet Identifier.
    pub packet_id: u16,
    /// Reason code (v5; SUCCESS in v3.x).
    pub code: ReasonCode,
    /// Properties (v5).
    pub properties: Properties,
}

impl PubComp {
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
