//! Protocol violations a session detects after CONNECT, one variant per
//! conformance statement, mapped to an MQTT 5 reason code in one place.
//!
//! Decode errors (malformed bytes) are the codec's; these are the rules
//! that need session state: aliases, windows, the order of packets.

use std::fmt;

use ringmq_codec::ReasonCode;

/// A rule broken by the client; the connection ends (v5: DISCONNECT with
/// [`Violation::reason_code`] first).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Violation {
    /// MQTT-3.1.0-2: a second CONNECT on one connection.
    SecondConnect,
    /// MQTT-3.3.2-8 / MQTT-3.3.2-9: Topic Alias 0 or above the maximum the
    /// server announced.
    TopicAliasOutOfRange,
    /// MQTT-3.3.2-7 (3.3.2.3.4): an empty topic with an alias the client
    /// never set on this connection.
    TopicAliasUnknown,
    /// MQTT-3.3.2-1: an empty topic name without a Topic Alias.
    EmptyTopicWithoutAlias,
    /// MQTT-3.3.4-6: a PUBLISH from a client must not carry a
    /// Subscription Identifier.
    SubscriptionIdentifierFromClient,
    /// MQTT-3.2.2-11: a PUBLISH above the Maximum QoS the server announced.
    QosNotSupported,
    /// MQTT-3.3.4-9: more unacknowledged QoS 1/2 PUBLISHes than the
    /// server's Receive Maximum.
    ReceiveMaximumExceeded,
    /// MQTT-3.8.3-4: No Local set on a shared subscription.
    NoLocalOnSharedSubscription,
    /// MQTT-3.8.2-1 (3.8.2.1.2): a SUBSCRIBE may carry at most one
    /// Subscription Identifier.
    SeveralSubscriptionIdentifiers,
    /// MQTT-3.14.2-2: DISCONNECT sets a Session Expiry Interval although
    /// CONNECT set 0.
    SessionExpiryRaisedFromZero,
    /// MQTT-4.12.0-1: AUTH although CONNECT named no Authentication Method.
    AuthWithoutMethod,
    /// MQTT-3.2.0-1 and kin (CONNACK, SUBACK, UNSUBACK, PINGRESP): a packet
    /// only a server may send.
    ServerPacketFromClient,
    /// MQTT-3.1.2-24 from the other side: a SUBSCRIBE or UNSUBSCRIBE with
    /// more filters than the answer (one code each) can carry within the
    /// client's own Maximum Packet Size.
    ResponseTooLarge,
}

impl Violation {
    /// The v5 reason code for the DISCONNECT that ends the connection.
    pub fn reason_code(self) -> ReasonCode {
        match self {
            Violation::TopicAliasOutOfRange => ReasonCode::TOPIC_ALIAS_INVALID,
            Violation::QosNotSupported => ReasonCode::QOS_NOT_SUPPORTED,
            Violation::ReceiveMaximumExceeded => ReasonCode::RECEIVE_MAXIMUM_EXCEEDED,
            Violation::ResponseTooLarge => ReasonCode::PACKET_TOO_LARGE,
            Violation::SecondConnect
            | Violation::TopicAliasUnknown
            | Violation::EmptyTopicWithoutAlias
            | Violation::SubscriptionIdentifierFromClient
            | Violation::NoLocalOnSharedSubscription
            | Violation::SeveralSubscriptionIdentifiers
            | Violation::SessionExpiryRaisedFromZero
            // 4.12: a Protocol Error (0x8C Bad authentication method is a
            // CONNACK code; DISCONNECT may not carry it).
            | Violation::AuthWithoutMethod
            | Violation::ServerPacketFromClient => ReasonCode::PROTOCOL_ERROR,
        }
    }

    /// The conformance statement broken.
    pub fn spec_id(self) -> &'static str {
        match self {
            Violation::SecondConnect => "MQTT-3.1.0-2",
            Violation::TopicAliasOutOfRange => "MQTT-3.3.2-9",
            Violation::TopicAliasUnknown => "MQTT-3.3.2-7",
            Violation::EmptyTopicWithoutAlias => "MQTT-3.3.2-1",
            Violation::SubscriptionIdentifierFromClient => "MQTT-3.3.4-6",
            Violation::QosNotSupported => "MQTT-3.2.2-11",
            Violation::ReceiveMaximumExceeded => "MQTT-3.3.4-9",
            Violation::NoLocalOnSharedSubscription => "MQTT-3.8.3-4",
            Violation::SeveralSubscriptionIdentifiers => "MQTT-3.8.2-1",
            Violation::SessionExpiryRaisedFromZero => "MQTT-3.14.2-2",
            Violation::AuthWithoutMethod => "MQTT-4.12.0-1",
            Violation::ServerPacketFromClient => "MQTT-3.2.0-1",
            Violation::ResponseTooLarge => "MQTT-3.1.2-24",
        }
    }

    /// A short text for the DISCONNECT's Reason String and the log.
    pub fn text(self) -> &'static str {
        match self {
            Violation::SecondConnect => "second CONNECT",
            Violation::TopicAliasOutOfRange => "topic alias out of range",
            Violation::TopicAliasUnknown => "unknown topic alias",
            Violation::EmptyTopicWithoutAlias => "empty topic without alias",
            Violation::SubscriptionIdentifierFromClient => {
                "subscription identifier in a client PUBLISH"
            }
            Violation::QosNotSupported => "QoS above Maximum QoS",
            Violation::ReceiveMaximumExceeded => "Receive Maximum exceeded",
            Violation::NoLocalOnSharedSubscription => "No Local on a shared subscription",
            Violation::SeveralSubscriptionIdentifiers => "more than one subscription identifier",
            Violation::SessionExpiryRaisedFromZero => "session expiry raised from 0",
            Violation::AuthWithoutMethod => "AUTH without an authentication method",
            Violation::ServerPacketFromClient => "packet only a server may send",
            Violation::ResponseTooLarge => "the answer would exceed your Maximum Packet Size",
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.text(), self.spec_id())
    }
}

impl std::error::Error for Violation {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_violation_maps_to_an_error_code_and_a_spec_id() {
        use Violation::*;
        for v in [
            SecondConnect,
            TopicAliasOutOfRange,
            TopicAliasUnknown,
            EmptyTopicWithoutAlias,
            SubscriptionIdentifierFromClient,
            QosNotSupported,
            ReceiveMaximumExceeded,
            NoLocalOnSharedSubscription,
            SeveralSubscriptionIdentifiers,
            SessionExpiryRaisedFromZero,
            AuthWithoutMethod,
            ServerPacketFromClient,
            ResponseTooLarge,
        ] {
            assert!(v.reason_code().is_error(), "{v}");
            assert!(v.spec_id().starts_with("MQTT-"));
        }
        assert_eq!(QosNotSupported.reason_code(), ReasonCode(0x9B));
        assert_eq!(TopicAliasOutOfRange.reason_code(), ReasonCode(0x94));
        assert_eq!(ReceiveMaximumExceeded.reason_code(), ReasonCode(0x93));
    }
}
