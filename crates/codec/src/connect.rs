//! CONNECT (MQTT 5 section 3.1, 3.1.1 section 3.1).

use bytes::{Bytes, BytesMut};

use crate::{EncodeError, Properties, ProtocolVersion, QoS, ReasonCode};

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
    /// Will Topic (a topic name).
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

impl Connect {
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
