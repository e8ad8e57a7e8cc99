//! PUBLISH (MQTT 5 section 3.3, 3.1.1 section 3.3).

use bytes::{Bytes, BytesMut};

use crate::{EncodeError, Properties, ProtocolVersion, QoS, ReasonCode};

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
    /// PUBLISH properties (v5).
    pub properties: Properties,
    /// Application payload.
    pub payload: Bytes,
}

impl Publish {
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
