//! The codec's typed errors: [`DecodeError`] for bytes a peer sent us,
//! [`EncodeError`] for packets we cannot put on the wire.
//!
//! Owns: one variant per violation, named after its conformance statement
//! where one exists (the doc comment and the Display text cite the id; the
//! MQTT 5 id is cited, with the 3.1.1 one when it differs), and the single
//! mapping from a violation to an MQTT 5 reason code
//! ([`DecodeError::reason_code`]). "Need more bytes" is not an error.

use core::fmt;

use crate::properties::property_name;
use crate::{PacketType, ProtocolVersion, ReasonCode};

/// Why a packet could not be decoded. After any of these the connection
/// must be closed (v5: after a DISCONNECT / CONNACK carrying
/// [`DecodeError::reason_code`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// A variable byte integer (remaining length, property length,
    /// subscription identifier) continues past its fourth byte
    /// (MQTT 5 section 1.5.5).
    MalformedVariableByteInteger,
    /// MQTT-1.5.5-1: a variable byte integer does not use the minimum number
    /// of bytes (e.g. `0x80 0x00` for 0).
    NonMinimalVariableByteInteger,
    /// The fixed header announces a packet larger than
    /// [`crate::Limits::max_packet_size`] (MQTT-3.1.2-24 / 3.2.2.3.6).
    PacketTooLarge {
        /// Whole packet size announced by the fixed header.
        size: usize,
        /// The limit it exceeds.
        max: u32,
    },
    /// The packet type nibble is 0, or 15 (AUTH) outside MQTT 5
    /// (MQTT 5 section 2.1.2, 3.1.1 section 2.2.1).
    InvalidPacketType(u8),
    /// MQTT-2.1.3-1 (3.1.1: MQTT-2.2.2-1): the fixed header flags differ from
    /// the value the standard fixes for this packet type.
    ReservedFlagSet {
        /// The packet type.
        packet_type: PacketType,
        /// The flags nibble received.
        flags: u8,
    },
    /// MQTT-3.3.1-4: PUBLISH with both QoS bits set.
    InvalidQoS,
    /// MQTT-3.3.1-2: PUBLISH with QoS 0 and DUP set.
    DupWithQoS0,
    /// A field runs past the end of the packet (or of its property list):
    /// the remaining length is shorter than the contents.
    UnexpectedEndOfPacket,
    /// Bytes are left after the last field: the remaining length is longer
    /// than the contents.
    TrailingBytes,
    /// MQTT-1.5.4-1 (3.1.1: MQTT-1.5.3-1): a string is not well-formed UTF-8.
    InvalidUtf8,
    /// MQTT-1.5.4-2 (3.1.1: MQTT-1.5.3-2): a string contains U+0000.
    NullCharacter,
    /// MQTT-3.1.2-1: CONNECT protocol name is neither "MQTT" nor "MQIsdp".
    InvalidProtocolName,
    /// MQTT-3.1.2-2: CONNECT protocol level is not one we speak (3 with
    /// "MQIsdp", 4 or 5 with "MQTT"). The broker answers CONNACK 0x01 (v3)
    /// or 0x84 (v5).
    UnsupportedProtocolVersion(u8),
    /// MQTT-3.1.2-3: the reserved CONNECT flag (bit 0) is set.
    ConnectReservedFlagSet,
    /// MQTT-3.1.2-11 (3.1.1: MQTT-3.1.2-13): will QoS set without the will flag.
    WillQoSWithoutWillFlag,
    /// MQTT-3.1.2-12 (3.1.1: MQTT-3.1.2-14): will QoS is 3.
    InvalidWillQoS,
    /// MQTT-3.1.2-13 (3.1.1: MQTT-3.1.2-15): will retain set without the will flag.
    WillRetainWithoutWillFlag,
    /// MQTT-3.1.2-22 (3.1.1 and 3.1 only): password flag set without the
    /// user name flag.
    PasswordWithoutUsername,
    /// MQTT-3.2.2-1: CONNACK acknowledge flags bits 7-1 are not 0.
    ConnAckReservedFlagSet,
    /// MQTT-3.2.2-6 (3.1.1: MQTT-3.2.2-4): CONNACK with session present and a
    /// failure code.
    SessionPresentWithError,
    /// MQTT-4.7.3-1: an empty topic name (in MQTT 5 PUBLISH, allowed only
    /// with a Topic Alias, MQTT 5 section 3.3.2.1).
    EmptyTopicName,
    /// MQTT-3.3.2-2: a topic name (PUBLISH or will topic) contains `+` or `#`.
    WildcardInTopicName,
    /// MQTT 5 section 3.3.2.3.5: the Response Topic contains `+` or `#`.
    WildcardInResponseTopic,
    /// MQTT-4.7.3-1: an empty topic filter in SUBSCRIBE or UNSUBSCRIBE.
    EmptyTopicFilter,
    /// MQTT-2.2.1-3 (3.1.1: MQTT-2.3.1-1): a packet identifier is 0.
    ZeroPacketIdentifier,
    /// MQTT 5 section 2.2.2.2: an unknown property identifier.
    UnknownProperty(u8),
    /// MQTT 5 section 2.2.2.2: a property not allowed in this packet kind.
    PropertyNotAllowed {
        /// The property identifier.
        property: u8,
        /// The packet it appeared in (CONNECT for will properties).
        packet_type: PacketType,
    },
    /// MQTT 5 section 3: a property other than User Property (and
    /// Subscription Identifier in PUBLISH) appears twice.
    DuplicateProperty(u8),
    /// MQTT 5 section 3: a property holds a value outside its range (e.g.
    /// Payload Format Indicator 2, Maximum QoS 2, a boolean property 2).
    InvalidPropertyValue {
        /// The property identifier.
        property: u8,
        /// The value received.
        value: u32,
    },
    /// MQTT-3.3.2-8: Topic Alias 0.
    TopicAliasZero,
    /// MQTT 5 section 3.1.2.11.3 / 3.2.2.3.3: Receive Maximum 0.
    ReceiveMaximumZero,
    /// MQTT 5 section 3.1.2.11.4 / 3.2.2.3.6: Maximum Packet Size 0.
    MaximumPacketSizeZero,
    /// MQTT 5 section 3.8.2.1.2: Subscription Identifier 0.
    SubscriptionIdentifierZero,
    /// MQTT 5 section 3.1.2.11.10: Authentication Data without an
    /// Authentication Method.
    AuthenticationDataWithoutMethod,
    /// MQTT-3.8.3-3: SUBSCRIBE without any topic filter.
    NoTopicFilters,
    /// MQTT-3.10.3-2: UNSUBSCRIBE without any topic filter.
    NoUnsubscribeFilters,
    /// MQTT-3.8.3-5 (3.1.1: MQTT-3.8.3-4): reserved subscription option bits set.
    SubscriptionOptionsReservedBits,
    /// MQTT 5 section 3.8.3.1 (3.1.1: MQTT-3.8.3-4): requested QoS is 3.
    InvalidSubscriptionQoS,
    /// MQTT 5 section 3.8.3.1: Retain Handling is 3.
    InvalidRetainHandling,
    /// MQTT-3.8.3-4: No Local set on a shared subscription (`$share/...`).
    NoLocalOnSharedSubscription,
    /// MQTT 5 section 2.4 (3.1.1 sections 3.2.2.3 / 3.9.3): a reason or
    /// return code this packet kind may not carry.
    InvalidReasonCode {
        /// The packet type.
        packet_type: PacketType,
        /// The code received.
        code: u8,
    },
}

impl DecodeError {
    /// The MQTT 5 reason code to report this violation with (in CONNACK
    /// before a session exists, in DISCONNECT after).
    pub fn reason_code(&self) -> ReasonCode {
        use DecodeError::*;
        match self {
            PacketTooLarge { .. } => ReasonCode::PACKET_TOO_LARGE,
            InvalidProtocolName | UnsupportedProtocolVersion(_) => {
                ReasonCode::UNSUPPORTED_PROTOCOL_VERSION
            }
            WildcardInTopicName => ReasonCode::TOPIC_NAME_INVALID,
            EmptyTopicFilter => ReasonCode::TOPIC_FILTER_INVALID,
            TopicAliasZero => ReasonCode::TOPIC_ALIAS_INVALID,
            SessionPresentWithError
            | EmptyTopicName
            | WildcardInResponseTopic
            | ZeroPacketIdentifier
            | DuplicateProperty(_)
            | InvalidPropertyValue { .. }
            | ReceiveMaximumZero
            | MaximumPacketSizeZero
            | SubscriptionIdentifierZero
            | AuthenticationDataWithoutMethod
            | NoTopicFilters
            | NoUnsubscribeFilters
            | InvalidSubscriptionQoS
            | InvalidRetainHandling
            | NoLocalOnSharedSubscription => ReasonCode::PROTOCOL_ERROR,
            MalformedVariableByteInteger
            | NonMinimalVariableByteInteger
            | InvalidPacketType(_)
            | ReservedFlagSet { .. }
            | InvalidQoS
            | DupWithQoS0
            | UnexpectedEndOfPacket
            | TrailingBytes
            | InvalidUtf8
            | NullCharacter
            | ConnectReservedFlagSet
            | WillQoSWithoutWillFlag
            | InvalidWillQoS
            | WillRetainWithoutWillFlag
            | PasswordWithoutUsername
            | ConnAckReservedFlagSet
            | UnknownProperty(_)
            | PropertyNotAllowed { .. }
            | SubscriptionOptionsReservedBits
            | InvalidReasonCode { .. } => ReasonCode::MALFORMED_PACKET,
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use DecodeError::*;
        match self {
            MalformedVariableByteInteger => {
                f.write_str("variable byte integer longer than 4 bytes")
            }
            NonMinimalVariableByteInteger => {
                f.write_str("MQTT-1.5.5-1: variable byte integer not minimally encoded")
            }
            PacketTooLarge { size, max } => {
                write!(
                    f,
                    "packet of {size} bytes exceeds the maximum packet size {max}"
                )
            }
            InvalidPacketType(t) => write!(f, "invalid packet type {t}"),
            ReservedFlagSet { packet_type, flags } => write!(
                f,
                "MQTT-2.1.3-1: invalid fixed header flags {flags:#06b} for {packet_type:?}"
            ),
            InvalidQoS => f.write_str("MQTT-3.3.1-4: PUBLISH QoS 3"),
            DupWithQoS0 => f.write_str("MQTT-3.3.1-2: DUP set on a QoS 0 PUBLISH"),
            UnexpectedEndOfPacket => {
                f.write_str("field runs past the end of the packet (remaining length too short)")
            }
            TrailingBytes => {
                f.write_str("bytes left after the last field (remaining length too long)")
            }
            InvalidUtf8 => f.write_str("MQTT-1.5.4-1: string is not well-formed UTF-8"),
            NullCharacter => f.write_str("MQTT-1.5.4-2: string contains U+0000"),
            InvalidProtocolName => f.write_str("MQTT-3.1.2-1: unknown protocol name"),
            UnsupportedProtocolVersion(level) => {
                write!(f, "MQTT-3.1.2-2: unsupported protocol level {level}")
            }
            ConnectReservedFlagSet => f.write_str("MQTT-3.1.2-3: reserved connect flag set"),
            WillQoSWithoutWillFlag => {
                f.write_str("MQTT-3.1.2-11: will QoS set without the will flag")
            }
            InvalidWillQoS => f.write_str("MQTT-3.1.2-12: will QoS 3"),
            WillRetainWithoutWillFlag => {
                f.write_str("MQTT-3.1.2-13: will retain set without the will flag")
            }
            PasswordWithoutUsername => {
                f.write_str("MQTT-3.1.2-22: password flag set without user name flag")
            }
            ConnAckReservedFlagSet => f.write_str("MQTT-3.2.2-1: reserved CONNACK flag set"),
            SessionPresentWithError => {
                f.write_str("MQTT-3.2.2-6: session present with a failure reason code")
            }
            EmptyTopicName => f.write_str("MQTT-4.7.3-1: empty topic name"),
            WildcardInTopicName => f.write_str("MQTT-3.3.2-2: wildcard in topic name"),
            WildcardInResponseTopic => f.write_str("wildcard in Response Topic"),
            EmptyTopicFilter => f.write_str("MQTT-4.7.3-1: empty topic filter"),
            ZeroPacketIdentifier => f.write_str("MQTT-2.2.1-3: packet identifier 0"),
            UnknownProperty(id) => write!(f, "unknown property identifier {id:#04x}"),
            PropertyNotAllowed {
                property,
                packet_type,
            } => write!(
                f,
                "property {} not allowed in {packet_type:?}",
                property_name(*property)
            ),
            DuplicateProperty(id) => write!(f, "property {} included twice", property_name(*id)),
            InvalidPropertyValue { property, value } => {
                write!(f, "invalid value {value} for {}", property_name(*property))
            }
            TopicAliasZero => f.write_str("MQTT-3.3.2-8: Topic Alias 0"),
            ReceiveMaximumZero => f.write_str("Receive Maximum 0"),
            MaximumPacketSizeZero => f.write_str("Maximum Packet Size 0"),
            SubscriptionIdentifierZero => f.write_str("Subscription Identifier 0"),
            AuthenticationDataWithoutMethod => {
                f.write_str("Authentication Data without Authentication Method")
            }
            NoTopicFilters => f.write_str("MQTT-3.8.3-3: SUBSCRIBE without topic filters"),
            NoUnsubscribeFilters => f.write_str("MQTT-3.10.3-2: UNSUBSCRIBE without topic filters"),
            SubscriptionOptionsReservedBits => {
                f.write_str("MQTT-3.8.3-5: reserved subscription option bits set")
            }
            InvalidSubscriptionQoS => f.write_str("subscription QoS 3"),
            InvalidRetainHandling => f.write_str("Retain Handling 3"),
            NoLocalOnSharedSubscription => {
                f.write_str("MQTT-3.8.3-4: No Local on a shared subscription")
            }
            InvalidReasonCode { packet_type, code } => {
                write!(f, "reason code {code:#04x} not allowed in {packet_type:?}")
            }
        }
    }
}

impl std::error::Error for DecodeError {}

/// Why a packet could not be encoded. The output buffer is left as it was.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EncodeError {
    /// A string or binary field is longer than 65 535 bytes
    /// (MQTT 5 sections 1.5.4, 1.5.6).
    ValueTooLong {
        /// Its length.
        len: usize,
    },
    /// The remaining length would exceed 268 435 455 (MQTT 5 section 2.1.4).
    PacketTooLarge {
        /// The remaining length that would be needed.
        remaining_length: usize,
    },
    /// The packet kind does not exist in this protocol version (AUTH before 5.0).
    NotInVersion {
        /// The packet type.
        packet_type: PacketType,
        /// The version asked for.
        version: ProtocolVersion,
    },
    /// A set property is not allowed in this packet kind (MQTT 5 section 2.2.2.2).
    PropertyNotAllowed {
        /// The property identifier.
        property: u8,
        /// The packet type (CONNECT for will properties).
        packet_type: PacketType,
    },
    /// A Subscription Identifier above 268 435 455 (or 0).
    InvalidSubscriptionIdentifier(u32),
    /// Even without optional diagnostics the packet exceeds the peer's
    /// Maximum Packet Size (MQTT-3.1.2-24 / MQTT-3.2.2-15).
    ExceedsMaximumPacketSize {
        /// The smallest size the packet can be encoded in.
        size: usize,
        /// The peer's maximum.
        max: u32,
    },
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::ValueTooLong { len } => {
                write!(f, "string or binary field of {len} bytes exceeds 65535")
            }
            EncodeError::PacketTooLarge { remaining_length } => write!(
                f,
                "remaining length {remaining_length} exceeds {}",
                crate::MAX_REMAINING_LENGTH
            ),
            EncodeError::NotInVersion {
                packet_type,
                version,
            } => write!(f, "{packet_type:?} does not exist in {version:?}"),
            EncodeError::PropertyNotAllowed {
                property,
                packet_type,
            } => write!(
                f,
                "property {} not allowed in {packet_type:?}",
                property_name(*property)
            ),
            EncodeError::InvalidSubscriptionIdentifier(v) => {
                write!(f, "Subscription Identifier {v} out of range 1..=268435455")
            }
            EncodeError::ExceedsMaximumPacketSize { size, max } => write!(
                f,
                "packet of {size} bytes exceeds the peer's maximum packet size {max}"
            ),
        }
    }
}

impl std::error::Error for EncodeError {}

#[cfg(test)]
mod tests {
    use super::*;
    use DecodeError::*;

    #[test]
    fn reason_codes() {
        let table: &[(DecodeError, ReasonCode)] = &[
            (
                PacketTooLarge { size: 10, max: 5 },
                ReasonCode::PACKET_TOO_LARGE,
            ),
            (
                UnsupportedProtocolVersion(6),
                ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
            ),
            (
                InvalidProtocolName,
                ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
            ),
            (WildcardInTopicName, ReasonCode::TOPIC_NAME_INVALID),
            (EmptyTopicFilter, ReasonCode::TOPIC_FILTER_INVALID),
            (TopicAliasZero, ReasonCode::TOPIC_ALIAS_INVALID),
            (DuplicateProperty(1), ReasonCode::PROTOCOL_ERROR),
            (ZeroPacketIdentifier, ReasonCode::PROTOCOL_ERROR),
            (InvalidRetainHandling, ReasonCode::PROTOCOL_ERROR),
            (ReceiveMaximumZero, ReasonCode::PROTOCOL_ERROR),
            (NoTopicFilters, ReasonCode::PROTOCOL_ERROR),
            (
                ReservedFlagSet {
                    packet_type: PacketType::Subscribe,
                    flags: 0,
                },
                ReasonCode::MALFORMED_PACKET,
            ),
            (ConnectReservedFlagSet, ReasonCode::MALFORMED_PACKET),
            (UnexpectedEndOfPacket, ReasonCode::MALFORMED_PACKET),
            (TrailingBytes, ReasonCode::MALFORMED_PACKET),
            (InvalidUtf8, ReasonCode::MALFORMED_PACKET),
            (MalformedVariableByteInteger, ReasonCode::MALFORMED_PACKET),
            (UnknownProperty(0x7F), ReasonCode::MALFORMED_PACKET),
        ];
        for (err, code) in table {
            assert_eq!(err.reason_code(), *code, "{err:?}");
            assert!(err.reason_code().is_error());
        }
    }

    #[test]
    fn display_cites_conformance_ids() {
        let table: &[(DecodeError, &str)] = &[
            (
                ConnectReservedFlagSet,
                "MQTT-3.1.2-3: reserved connect flag set",
            ),
            (
                ReservedFlagSet {
                    packet_type: PacketType::PubRel,
                    flags: 0,
                },
                "MQTT-2.1.3-1: invalid fixed header flags 0b0000 for PubRel",
            ),
            (DupWithQoS0, "MQTT-3.3.1-2: DUP set on a QoS 0 PUBLISH"),
            (NullCharacter, "MQTT-1.5.4-2: string contains U+0000"),
            (
                NoUnsubscribeFilters,
                "MQTT-3.10.3-2: UNSUBSCRIBE without topic filters",
            ),
            (
                PasswordWithoutUsername,
                "MQTT-3.1.2-22: password flag set without user name flag",
            ),
            (
                PropertyNotAllowed {
                    property: 0x23,
                    packet_type: PacketType::Connect,
                },
                "property Topic Alias not allowed in Connect",
            ),
        ];
        for (err, text) in table {
            assert_eq!(err.to_string(), *text);
        }
        assert_eq!(
            EncodeError::ValueTooLong { len: 70_000 }.to_string(),
            "string or binary field of 70000 bytes exceeds 65535"
        );
        let boxed: Box<dyn std::error::Error> = Box::new(TrailingBytes);
        assert!(boxed.to_string().contains("remaining length too long"));
    }
}
