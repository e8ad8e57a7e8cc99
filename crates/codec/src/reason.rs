//! MQTT 5 reason codes (section 2.4) and the set each packet kind may carry.
//!
//! Owns: [`ReasonCode`], its named constants and the per-packet allow-lists
//! used on decode. For MQTT 3.x the same type carries the CONNACK return
//! code (0x00..=0x05) and the SUBACK return codes (0x00, 0x01, 0x02, 0x80)
//! unchanged.

use core::fmt;

/// A one-byte MQTT 5 reason code (or a v3.x return code carried as is).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReasonCode(pub u8);

impl ReasonCode {
    /// 0x00 Success.
    pub const SUCCESS: ReasonCode = ReasonCode(0x00);
    /// 0x00 Normal disconnection (DISCONNECT).
    pub const NORMAL_DISCONNECTION: ReasonCode = ReasonCode(0x00);
    /// 0x00 Granted QoS 0 (SUBACK).
    pub const GRANTED_QOS_0: ReasonCode = ReasonCode(0x00);
    /// 0x01 Granted QoS 1 (SUBACK).
    pub const GRANTED_QOS_1: ReasonCode = ReasonCode(0x01);
    /// 0x02 Granted QoS 2 (SUBACK).
    pub const GRANTED_QOS_2: ReasonCode = ReasonCode(0x02);
    /// 0x04 Disconnect with Will Message (DISCONNECT).
    pub const DISCONNECT_WITH_WILL_MESSAGE: ReasonCode = ReasonCode(0x04);
    /// 0x10 No matching subscribers (PUBACK, PUBREC).
    pub const NO_MATCHING_SUBSCRIBERS: ReasonCode = ReasonCode(0x10);
    /// 0x11 No subscription existed (UNSUBACK).
    pub const NO_SUBSCRIPTION_EXISTED: ReasonCode = ReasonCode(0x11);
    /// 0x18 Continue authentication (AUTH).
    pub const CONTINUE_AUTHENTICATION: ReasonCode = ReasonCode(0x18);
    /// 0x19 Re-authenticate (AUTH).
    pub const RE_AUTHENTICATE: ReasonCode = ReasonCode(0x19);
    /// 0x80 Unspecified error.
    pub const UNSPECIFIED_ERROR: ReasonCode = ReasonCode(0x80);
    /// 0x81 Malformed Packet.
    pub const MALFORMED_PACKET: ReasonCode = ReasonCode(0x81);
    /// 0x82 Protocol Error.
    pub const PROTOCOL_ERROR: ReasonCode = ReasonCode(0x82);
    /// 0x83 Implementation specific error.
    pub const IMPLEMENTATION_SPECIFIC_ERROR: ReasonCode = ReasonCode(0x83);
    /// 0x84 Unsupported Protocol Version.
    pub const UNSUPPORTED_PROTOCOL_VERSION: ReasonCode = ReasonCode(0x84);
    /// 0x85 Client Identifier not valid.
    pub const CLIENT_IDENTIFIER_NOT_VALID: ReasonCode = ReasonCode(0x85);
    /// 0x86 Bad User Name or Password.
    pub const BAD_USER_NAME_OR_PASSWORD: ReasonCode = ReasonCode(0x86);
    /// 0x87 Not authorized.
    pub const NOT_AUTHORIZED: ReasonCode = ReasonCode(0x87);
    /// 0x88 Server unavailable.
    pub const SERVER_UNAVAILABLE: ReasonCode = ReasonCode(0x88);
    /// 0x89 Server busy.
    pub const SERVER_BUSY: ReasonCode = ReasonCode(0x89);
    /// 0x8A Banned.
    pub const BANNED: ReasonCode = ReasonCode(0x8A);
    /// 0x8B Server shutting down.
    pub const SERVER_SHUTTING_DOWN: ReasonCode = ReasonCode(0x8B);
    /// 0x8C Bad authentication method.
    pub const BAD_AUTHENTICATION_METHOD: ReasonCode = ReasonCode(0x8C);
    /// 0x8D Keep Alive timeout.
    pub const KEEP_ALIVE_TIMEOUT: ReasonCode = ReasonCode(0x8D);
    /// 0x8E Session taken over.
    pub const SESSION_TAKEN_OVER: ReasonCode = ReasonCode(0x8E);
    /// 0x8F Topic Filter invalid.
    pub const TOPIC_FILTER_INVALID: ReasonCode = ReasonCode(0x8F);
    /// 0x90 Topic Name invalid.
    pub const TOPIC_NAME_INVALID: ReasonCode = ReasonCode(0x90);
    /// 0x91 Packet Identifier in use.
    pub const PACKET_IDENTIFIER_IN_USE: ReasonCode = ReasonCode(0x91);
    /// 0x92 Packet Identifier not found.
    pub const PACKET_IDENTIFIER_NOT_FOUND: ReasonCode = ReasonCode(0x92);
    /// 0x93 Receive Maximum exceeded.
    pub const RECEIVE_MAXIMUM_EXCEEDED: ReasonCode = ReasonCode(0x93);
    /// 0x94 Topic Alias invalid.
    pub const TOPIC_ALIAS_INVALID: ReasonCode = ReasonCode(0x94);
    /// 0x95 Packet too large.
    pub const PACKET_TOO_LARGE: ReasonCode = ReasonCode(0x95);
    /// 0x96 Message rate too high.
    pub const MESSAGE_RATE_TOO_HIGH: ReasonCode = ReasonCode(0x96);
    /// 0x97 Quota exceeded.
    pub const QUOTA_EXCEEDED: ReasonCode = ReasonCode(0x97);
    /// 0x98 Administrative action.
    pub const ADMINISTRATIVE_ACTION: ReasonCode = ReasonCode(0x98);
    /// 0x99 Payload format invalid.
    pub const PAYLOAD_FORMAT_INVALID: ReasonCode = ReasonCode(0x99);
    /// 0x9A Retain not supported.
    pub const RETAIN_NOT_SUPPORTED: ReasonCode = ReasonCode(0x9A);
    /// 0x9B QoS not supported.
    pub const QOS_NOT_SUPPORTED: ReasonCode = ReasonCode(0x9B);
    /// 0x9C Use another server.
    pub const USE_ANOTHER_SERVER: ReasonCode = ReasonCode(0x9C);
    /// 0x9D Server moved.
    pub const SERVER_MOVED: ReasonCode = ReasonCode(0x9D);
    /// 0x9E Shared Subscriptions not supported.
    pub const SHARED_SUBSCRIPTIONS_NOT_SUPPORTED: ReasonCode = ReasonCode(0x9E);
    /// 0x9F Connection rate exceeded.
    pub const CONNECTION_RATE_EXCEEDED: ReasonCode = ReasonCode(0x9F);
    /// 0xA0 Maximum connect time.
    pub const MAXIMUM_CONNECT_TIME: ReasonCode = ReasonCode(0xA0);
    /// 0xA1 Subscription Identifiers not supported.
    pub const SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED: ReasonCode = ReasonCode(0xA1);
    /// 0xA2 Wildcard Subscriptions not supported.
    pub const WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED: ReasonCode = ReasonCode(0xA2);

    /// True for a failure code (0x80 and above), MQTT 5 section 2.4.
    pub fn is_error(self) -> bool {
        self.0 >= 0x80
    }

    /// The standard's name for this code, in its generic (non packet
    /// specific) reading; "Unknown" for values the standard does not define.
    pub fn name(self) -> &'static str {
        match self.0 {
            0x00 => "Success",
            0x01 => "Granted QoS 1",
            0x02 => "Granted QoS 2",
            0x04 => "Disconnect with Will Message",
            0x10 => "No matching subscribers",
            0x11 => "No subscription existed",
            0x18 => "Continue authentication",
            0x19 => "Re-authenticate",
            0x80 => "Unspecified error",
            0x81 => "Malformed Packet",
            0x82 => "Protocol Error",
            0x83 => "Implementation specific error",
            0x84 => "Unsupported Protocol Version",
            0x85 => "Client Identifier not valid",
            0x86 => "Bad User Name or Password",
            0x87 => "Not authorized",
            0x88 => "Server unavailable",
            0x89 => "Server busy",
            0x8A => "Banned",
            0x8B => "Server shutting down",
            0x8C => "Bad authentication method",
            0x8D => "Keep Alive timeout",
            0x8E => "Session taken over",
            0x8F => "Topic Filter invalid",
            0x90 => "Topic Name invalid",
            0x91 => "Packet Identifier in use",
            0x92 => "Packet Identifier not found",
            0x93 => "Receive Maximum exceeded",
            0x94 => "Topic Alias invalid",
            0x95 => "Packet too large",
            0x96 => "Message rate too high",
            0x97 => "Quota exceeded",
            0x98 => "Administrative action",
            0x99 => "Payload format invalid",
            0x9A => "Retain not supported",
            0x9B => "QoS not supported",
            0x9C => "Use another server",
            0x9D => "Server moved",
            0x9E => "Shared Subscriptions not supported",
            0x9F => "Connection rate exceeded",
            0xA0 => "Maximum connect time",
            0xA1 => "Subscription Identifiers not supported",
            0xA2 => "Wildcard Subscriptions not supported",
            _ => "Unknown",
        }
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:02X} {}", self.0, self.name())
    }
}

/// MQTT 5 CONNACK reason codes (section 3.2.2.2).
pub(crate) const CONNACK_V5: &[u8] = &[
    0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97,
    0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F,
];
/// MQTT 3.x CONNACK return codes (3.1.1 section 3.2.2.3; 3.1 uses the same).
pub(crate) const CONNACK_V3: &[u8] = &[0x00, 0x01, 0x02, 0x03, 0x04, 0x05];
/// MQTT 5 PUBACK and PUBREC reason codes (sections 3.4.2.1, 3.5.2.1).
pub(crate) const PUBACK_V5: &[u8] = &[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99];
/// MQTT 5 PUBREL and PUBCOMP reason codes (sections 3.6.2.1, 3.7.2.1).
pub(crate) const PUBREL_V5: &[u8] = &[0x00, 0x92];
/// MQTT 5 SUBACK reason codes (section 3.9.3).
pub(crate) const SUBACK_V5: &[u8] = &[
    0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2,
];
/// MQTT 3.1.1 SUBACK return codes (section 3.9.3); 0x80 does not exist in 3.1.
pub(crate) const SUBACK_V311: &[u8] = &[0x00, 0x01, 0x02, 0x80];
/// MQTT 3.1 SUBACK granted QoS values.
pub(crate) const SUBACK_V31: &[u8] = &[0x00, 0x01, 0x02];
/// MQTT 5 UNSUBACK reason codes (section 3.11.3).
pub(crate) const UNSUBACK_V5: &[u8] = &[0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91];
/// MQTT 5 DISCONNECT reason codes (section 3.14.2.1).
pub(crate) const DISCONNECT_V5: &[u8] = &[
    0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95,
    0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2,
];
impl ReasonCode {
    /// Whether a v5 DISCONNECT may carry this code (section 3.14.2.1):
    /// some error codes belong to CONNACK only (0x84, 0x8C, ...).
    pub fn allowed_in_disconnect(self) -> bool {
        DISCONNECT_V5.binary_search(&self.0).is_ok()
    }
}

/// MQTT 5 AUTH reason codes (section 3.15.2.1).
pub(crate) const AUTH_V5: &[u8] = &[0x00, 0x18, 0x19];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_threshold() {
        assert!(!ReasonCode::SUCCESS.is_error());
        assert!(!ReasonCode::RE_AUTHENTICATE.is_error());
        assert!(ReasonCode::UNSPECIFIED_ERROR.is_error());
        assert!(ReasonCode::WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED.is_error());
    }

    #[test]
    fn names_and_display() {
        assert_eq!(ReasonCode::PACKET_TOO_LARGE.name(), "Packet too large");
        assert_eq!(ReasonCode(0x03).name(), "Unknown");
        assert_eq!(
            ReasonCode::MALFORMED_PACKET.to_string(),
            "0x81 Malformed Packet"
        );
    }

    #[test]
    fn allow_lists_are_sorted_and_known() {
        for list in [
            CONNACK_V5,
            CONNACK_V3,
            PUBACK_V5,
            PUBREL_V5,
            SUBACK_V5,
            SUBACK_V311,
            SUBACK_V31,
            UNSUBACK_V5,
            DISCONNECT_V5,
            AUTH_V5,
        ] {
            assert!(list.windows(2).all(|w| w[0] < w[1]));
        }
        for list in [
            CONNACK_V5,
            PUBACK_V5,
            PUBREL_V5,
            SUBACK_V5,
            UNSUBACK_V5,
            DISCONNECT_V5,
            AUTH_V5,
        ] {
            for &code in list {
                assert_ne!(ReasonCode(code).name(), "Unknown", "{code:#x}");
            }
        }
    }
}
