//! AUTH (MQTT 5 section 3.15; v5 only).

use bytes::{Bytes, BytesMut};

use crate::{EncodeError, Properties, ProtocolVersion, QoS, ReasonCode};

/// AUTH packet (v5 only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Auth {
    /// Reason code.
    pub code: ReasonCode,
    /// Properties.
    pub properties: Properties,
}

impl Auth {
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
