//! MQTT 5 properties (section 2.2.2): the [`Properties`] struct, reading
//! and writing a property list, and which property each packet kind allows.

use bytes::Bytes;

/// Every MQTT 5 property; `None` / empty means absent. Strings and binary
/// data are [`Bytes`] sliced from the input (strings are validated UTF-8 on
/// decode). Read and written only for MQTT 5.
#[derive(Default, Clone, Debug, PartialEq, Eq)]
pub struct Properties {
    /// 0x01 Payload Format Indicator (0 bytes, 1 UTF-8).
    pub payload_format_indicator: Option<u8>,
    /// 0x02 Message Expiry Interval, seconds.
    pub message_expiry_interval: Option<u32>,
    /// 0x03 Content Type.
    pub content_type: Option<Bytes>,
    /// 0x08 Response Topic.
    pub response_topic: Option<Bytes>,
    /// 0x09 Correlation Data.
    pub correlation_data: Option<Bytes>,
    /// 0x0B Subscription Identifier(s), 1..=268 435 455.
    pub subscription_identifiers: Vec<u32>,
    /// 0x11 Session Expiry Interval, seconds.
    pub session_expiry_interval: Option<u32>,
    /// 0x12 Assigned Client Identifier.
    pub assigned_client_identifier: Option<Bytes>,
    /// 0x13 Server Keep Alive, seconds.
    pub server_keep_alive: Option<u16>,
    /// 0x15 Authentication Method.
    pub authentication_method: Option<Bytes>,
    /// 0x16 Authentication Data.
    pub authentication_data: Option<Bytes>,
    /// 0x17 Request Problem Information (0 or 1).
    pub request_problem_information: Option<u8>,
    /// 0x18 Will Delay Interval, seconds.
    pub will_delay_interval: Option<u32>,
    /// 0x19 Request Response Information (0 or 1).
    pub request_response_information: Option<u8>,
    /// 0x1A Response Information.
    pub response_information: Option<Bytes>,
    /// 0x1C Server Reference.
    pub server_reference: Option<Bytes>,
    /// 0x1F Reason String.
    pub reason_string: Option<Bytes>,
    /// 0x21 Receive Maximum (non-zero).
    pub receive_maximum: Option<u16>,
    /// 0x22 Topic Alias Maximum.
    pub topic_alias_maximum: Option<u16>,
    /// 0x23 Topic Alias (non-zero).
    pub topic_alias: Option<u16>,
    /// 0x24 Maximum QoS (0 or 1).
    pub maximum_qos: Option<u8>,
    /// 0x25 Retain Available (0 or 1).
    pub retain_available: Option<u8>,
    /// 0x26 User Property pairs, in wire order.
    pub user_properties: Vec<(Bytes, Bytes)>,
    /// 0x27 Maximum Packet Size (non-zero).
    pub maximum_packet_size: Option<u32>,
    /// 0x28 Wildcard Subscription Available (0 or 1).
    pub wildcard_subscription_available: Option<u8>,
    /// 0x29 Subscription Identifier Available (0 or 1).
    pub subscription_identifier_available: Option<u8>,
    /// 0x2A Shared Subscription Available (0 or 1).
    pub shared_subscription_available: Option<u8>,
}

impl Properties {
    /// True when no property is set.
    pub fn is_empty(&self) -> bool {
        *self == Properties::default()
    }

    /// Encoded size of the property list, without its length prefix.
    pub fn encoded_len(&self) -> usize {
        0
    }
}

/// The standard's name of a property identifier, for messages.
pub(crate) fn property_name(id: u8) -> &'static str {
    match id {
        _ => "unknown property",
    }
}
