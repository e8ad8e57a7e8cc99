//! ringmq-codec: sans-IO encoding and decoding of every MQTT 3.1, 3.1.1 and
//! 5.0 control packet.
//!
//! Owns: bytes <-> [`Packet`] and nothing else. It never reads a socket,
//! never reads a clock and keeps no state between calls.
//!
//! Invariants:
//! - Decoding answers a whole packet plus the bytes it consumed, `Ok(None)`
//!   ("need more bytes", which is not an error) or a typed [`DecodeError`].
//!   Peer input never panics.
//! - Decoding never copies a payload: topic names, payloads and every
//!   string or binary field are [`Bytes`] sliced from the input buffer.
//! - A packet larger than [`Limits::max_packet_size`] is rejected from its
//!   fixed header alone, before its body is buffered.
//! - The codec checks syntax only (the "Malformed Packet" and per-packet
//!   "Protocol Error" rules of the standards). Session-level rules (topic
//!   alias ranges, receive maximum, packet direction, client id policy) are
//!   the session's job.
//! - Properties are read and written only for [`ProtocolVersion::V5`].
//!
//! Layout: one file per packet kind holds its decode, encode and
//! byte-literal tests; `packet.rs` the fixed header and entry points;
//! `properties.rs` the v5 property list; `varint.rs` the wire primitives;
//! `reason.rs` reason codes; `error.rs` the errors and their reason codes.
//!
//! ```
//! use ringmq_codec::{decode_buf, BytesMut, Limits, Packet, ProtocolVersion};
//!
//! let mut read_buf = BytesMut::from(&[0x30, 0x05, 0x00, 0x01, b't', b'h', b'i', 0xC0][..]);
//! let limits = Limits::default();
//! let Ok(Some(Packet::Publish(p))) = decode_buf(&mut read_buf, ProtocolVersion::V3_1_1, &limits)
//! else {
//!     panic!("a PUBLISH")
//! };
//! assert_eq!((&p.topic[..], &p.payload[..]), (&b"t"[..], &b"hi"[..]));
//! // Half a PINGREQ: need more bytes.
//! assert_eq!(decode_buf(&mut read_buf, ProtocolVersion::V3_1_1, &limits), Ok(None));
//! ```

#![warn(missing_docs)]

mod auth;
mod connack;
mod connect;
mod disconnect;
mod error;
mod packet;
mod ping;
mod properties;
mod puback;
mod publish;
mod reason;
mod suback;
mod subscribe;
mod unsuback;
mod unsubscribe;
mod varint;

#[cfg(test)]
mod testutil;

pub use auth::Auth;
pub use connack::ConnAck;
pub use connect::{Connect, Will};
pub use disconnect::Disconnect;
pub use error::{DecodeError, EncodeError};
pub use packet::{check_first_byte, decode, decode_buf, frame_len, Packet, PacketType};
pub use properties::{Properties, EMPTY_PROPERTIES};
pub use puback::{PubAck, PubComp, PubRec, PubRel};
pub use publish::{Publish, PublishProperties};
pub use reason::ReasonCode;
pub use suback::SubAck;
pub use subscribe::{RetainHandling, Subscribe, SubscriptionOptions};
pub use unsuback::UnsubAck;
pub use unsubscribe::Unsubscribe;

pub use bytes::{Bytes, BytesMut};

/// Largest packet MQTT can express: a 5-byte fixed header plus the largest
/// remaining length (268 435 455).
pub const MAX_PACKET_SIZE: u32 = 268_435_460;

/// Largest value of the remaining length, i.e. of a variable byte integer
/// (MQTT 5 section 1.5.5).
pub const MAX_REMAINING_LENGTH: u32 = 268_435_455;

/// The protocol version a connection speaks, as chosen by its CONNECT.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProtocolVersion {
    /// MQTT 3.1: protocol name "MQIsdp", level 3.
    V3_1,
    /// MQTT 3.1.1: protocol name "MQTT", level 4.
    V3_1_1,
    /// MQTT 5.0: protocol name "MQTT", level 5.
    V5,
}

impl ProtocolVersion {
    /// The protocol level byte carried by CONNECT (3, 4 or 5).
    pub fn level(self) -> u8 {
        match self {
            ProtocolVersion::V3_1 => 3,
            ProtocolVersion::V3_1_1 => 4,
            ProtocolVersion::V5 => 5,
        }
    }

    /// The protocol name carried by CONNECT ("MQIsdp" or "MQTT").
    pub fn protocol_name(self) -> &'static str {
        match self {
            ProtocolVersion::V3_1 => "MQIsdp",
            ProtocolVersion::V3_1_1 | ProtocolVersion::V5 => "MQTT",
        }
    }

    /// True for MQTT 5.0, the only version with properties and reason codes.
    pub fn is_v5(self) -> bool {
        self == ProtocolVersion::V5
    }
}

/// Quality of service of a message or a subscription.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum QoS {
    /// QoS 0: at most once.
    #[default]
    AtMostOnce = 0,
    /// QoS 1: at least once.
    AtLeastOnce = 1,
    /// QoS 2: exactly once.
    ExactlyOnce = 2,
}

impl QoS {
    /// The QoS for a wire value 0..=2; `None` for 3 and above.
    pub fn from_u8(value: u8) -> Option<QoS> {
        match value {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }
}

/// Limits applied while decoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Limits {
    /// Largest accepted packet in bytes, fixed header included.
    pub max_packet_size: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_packet_size: MAX_PACKET_SIZE,
        }
    }
}
