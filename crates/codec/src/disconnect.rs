//! DISCONNECT (MQTT 5 section 3.14, 3.1.1 section 3.14).

use bytes::{Bytes, BytesMut};

use crate::{EncodeError, Properties, ProtocolVersion, QoS, ReasonCode};

/// DISCONNECT packet (v3.x: empty body).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Disconnect {
    /// Reason code (v5).
    pub code: ReasonCode,
    /// Properties (v5).
    pub properties: Properties,
}

impl Disconnect {
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
