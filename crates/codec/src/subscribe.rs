//! SUBSCRIBE (MQTT 5 section 3.8, 3.1.1 section 3.8).

use bytes::{Bytes, BytesMut};

use crate::{EncodeError, Properties, ProtocolVersion, QoS, ReasonCode};

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

/// Subscription options byte (v3.x: only the QoS).
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

/// SUBSCRIBE packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscribe {
    /// Packet Identifier.
    pub packet_id: u16,
    /// Properties (v5).
    pub properties: Properties,
    /// Topic filters with their options, in wire order (at least one).
    pub filters: Vec<(Bytes, SubscriptionOptions)>,
}

impl Subscribe {
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
