//! MQTT 5 properties (section 2.2.2): the [`Properties`] struct, reading
//! and writing a property list, and which property each packet kind allows
//! (table 2.2.2.2).
//!
//! Invariants: decoding checks every per-property rule the standard states
//! (allowed in this packet, at most once unless repeatable, value ranges,
//! non-zero values) and nothing session-level (topic alias maximum, receive
//! maximum accounting, direction rules such as "no Subscription Identifier
//! from a client"). Encoding writes properties in ascending identifier
//! order, user properties last.

use bytes::{BufMut, Bytes, BytesMut};

use crate::varint::{binary_len, has_wildcard, put_binary, put_varint, varint_len, Reader};
use crate::{DecodeError, EncodeError, PacketType, ProtocolVersion, MAX_REMAINING_LENGTH};

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

// Property identifiers (MQTT 5 table 2.2.2.2).
pub(crate) const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
pub(crate) const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
pub(crate) const CONTENT_TYPE: u8 = 0x03;
pub(crate) const RESPONSE_TOPIC: u8 = 0x08;
pub(crate) const CORRELATION_DATA: u8 = 0x09;
pub(crate) const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
pub(crate) const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
pub(crate) const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;
pub(crate) const SERVER_KEEP_ALIVE: u8 = 0x13;
pub(crate) const AUTHENTICATION_METHOD: u8 = 0x15;
pub(crate) const AUTHENTICATION_DATA: u8 = 0x16;
pub(crate) const REQUEST_PROBLEM_INFORMATION: u8 = 0x17;
pub(crate) const WILL_DELAY_INTERVAL: u8 = 0x18;
pub(crate) const REQUEST_RESPONSE_INFORMATION: u8 = 0x19;
pub(crate) const RESPONSE_INFORMATION: u8 = 0x1A;
pub(crate) const SERVER_REFERENCE: u8 = 0x1C;
pub(crate) const REASON_STRING: u8 = 0x1F;
pub(crate) const RECEIVE_MAXIMUM: u8 = 0x21;
pub(crate) const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
pub(crate) const TOPIC_ALIAS: u8 = 0x23;
pub(crate) const MAXIMUM_QOS: u8 = 0x24;
pub(crate) const RETAIN_AVAILABLE: u8 = 0x25;
pub(crate) const USER_PROPERTY: u8 = 0x26;
pub(crate) const MAXIMUM_PACKET_SIZE: u8 = 0x27;
pub(crate) const WILDCARD_SUBSCRIPTION_AVAILABLE: u8 = 0x28;
pub(crate) const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u8 = 0x29;
pub(crate) const SHARED_SUBSCRIPTION_AVAILABLE: u8 = 0x2A;

const fn mask(ids: &[u8]) -> u64 {
    let mut m = 0u64;
    let mut i = 0;
    while i < ids.len() {
        m |= 1 << ids[i];
        i += 1;
    }
    m
}

/// Which properties a packet kind may carry, as a bit per identifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Allowed {
    bits: u64,
    /// The packet type reported in errors (CONNECT for will properties).
    packet_type: PacketType,
}

impl Allowed {
    pub(crate) const CONNECT: Allowed = Allowed {
        bits: mask(&[
            SESSION_EXPIRY_INTERVAL,
            AUTHENTICATION_METHOD,
            AUTHENTICATION_DATA,
            REQUEST_PROBLEM_INFORMATION,
            REQUEST_RESPONSE_INFORMATION,
            RECEIVE_MAXIMUM,
            TOPIC_ALIAS_MAXIMUM,
            USER_PROPERTY,
            MAXIMUM_PACKET_SIZE,
        ]),
        packet_type: PacketType::Connect,
    };
    pub(crate) const WILL: Allowed = Allowed {
        bits: mask(&[
            PAYLOAD_FORMAT_INDICATOR,
            MESSAGE_EXPIRY_INTERVAL,
            CONTENT_TYPE,
            RESPONSE_TOPIC,
            CORRELATION_DATA,
            WILL_DELAY_INTERVAL,
            USER_PROPERTY,
        ]),
        packet_type: PacketType::Connect,
    };
    pub(crate) const CONNACK: Allowed = Allowed {
        bits: mask(&[
            SESSION_EXPIRY_INTERVAL,
            ASSIGNED_CLIENT_IDENTIFIER,
            SERVER_KEEP_ALIVE,
            AUTHENTICATION_METHOD,
            AUTHENTICATION_DATA,
            RESPONSE_INFORMATION,
            SERVER_REFERENCE,
            REASON_STRING,
            RECEIVE_MAXIMUM,
            TOPIC_ALIAS_MAXIMUM,
            MAXIMUM_QOS,
            RETAIN_AVAILABLE,
            USER_PROPERTY,
            MAXIMUM_PACKET_SIZE,
            WILDCARD_SUBSCRIPTION_AVAILABLE,
            SUBSCRIPTION_IDENTIFIER_AVAILABLE,
            SHARED_SUBSCRIPTION_AVAILABLE,
        ]),
        packet_type: PacketType::ConnAck,
    };
    pub(crate) const PUBLISH: Allowed = Allowed {
        bits: mask(&[
            PAYLOAD_FORMAT_INDICATOR,
            MESSAGE_EXPIRY_INTERVAL,
            CONTENT_TYPE,
            RESPONSE_TOPIC,
            CORRELATION_DATA,
            SUBSCRIPTION_IDENTIFIER,
            TOPIC_ALIAS,
            USER_PROPERTY,
        ]),
        packet_type: PacketType::Publish,
    };
    pub(crate) const SUBSCRIBE: Allowed = Allowed {
        bits: mask(&[SUBSCRIPTION_IDENTIFIER, USER_PROPERTY]),
        packet_type: PacketType::Subscribe,
    };
    pub(crate) const UNSUBSCRIBE: Allowed = Allowed {
        bits: mask(&[USER_PROPERTY]),
        packet_type: PacketType::Unsubscribe,
    };
    pub(crate) const DISCONNECT: Allowed = Allowed {
        bits: mask(&[
            SESSION_EXPIRY_INTERVAL,
            SERVER_REFERENCE,
            REASON_STRING,
            USER_PROPERTY,
        ]),
        packet_type: PacketType::Disconnect,
    };
    pub(crate) const AUTH: Allowed = Allowed {
        bits: mask(&[
            AUTHENTICATION_METHOD,
            AUTHENTICATION_DATA,
            REASON_STRING,
            USER_PROPERTY,
        ]),
        packet_type: PacketType::Auth,
    };

    /// PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK, UNSUBACK: Reason String and
    /// User Property only.
    pub(crate) const fn ack(packet_type: PacketType) -> Allowed {
        Allowed {
            bits: mask(&[REASON_STRING, USER_PROPERTY]),
            packet_type,
        }
    }

    #[inline]
    fn allows(self, id: u8) -> bool {
        id < 64 && self.bits & (1 << id) != 0
    }
}

/// Every identifier the standard defines.
const KNOWN: u64 = mask(&[
    PAYLOAD_FORMAT_INDICATOR,
    MESSAGE_EXPIRY_INTERVAL,
    CONTENT_TYPE,
    RESPONSE_TOPIC,
    CORRELATION_DATA,
    SUBSCRIPTION_IDENTIFIER,
    SESSION_EXPIRY_INTERVAL,
    ASSIGNED_CLIENT_IDENTIFIER,
    SERVER_KEEP_ALIVE,
    AUTHENTICATION_METHOD,
    AUTHENTICATION_DATA,
    REQUEST_PROBLEM_INFORMATION,
    WILL_DELAY_INTERVAL,
    REQUEST_RESPONSE_INFORMATION,
    RESPONSE_INFORMATION,
    SERVER_REFERENCE,
    REASON_STRING,
    RECEIVE_MAXIMUM,
    TOPIC_ALIAS_MAXIMUM,
    TOPIC_ALIAS,
    MAXIMUM_QOS,
    RETAIN_AVAILABLE,
    USER_PROPERTY,
    MAXIMUM_PACKET_SIZE,
    WILDCARD_SUBSCRIPTION_AVAILABLE,
    SUBSCRIPTION_IDENTIFIER_AVAILABLE,
    SHARED_SUBSCRIPTION_AVAILABLE,
]);

/// The standard's name of a property identifier, for messages.
pub(crate) fn property_name(id: u8) -> &'static str {
    match id {
        PAYLOAD_FORMAT_INDICATOR => "Payload Format Indicator",
        MESSAGE_EXPIRY_INTERVAL => "Message Expiry Interval",
        CONTENT_TYPE => "Content Type",
        RESPONSE_TOPIC => "Response Topic",
        CORRELATION_DATA => "Correlation Data",
        SUBSCRIPTION_IDENTIFIER => "Subscription Identifier",
        SESSION_EXPIRY_INTERVAL => "Session Expiry Interval",
        ASSIGNED_CLIENT_IDENTIFIER => "Assigned Client Identifier",
        SERVER_KEEP_ALIVE => "Server Keep Alive",
        AUTHENTICATION_METHOD => "Authentication Method",
        AUTHENTICATION_DATA => "Authentication Data",
        REQUEST_PROBLEM_INFORMATION => "Request Problem Information",
        WILL_DELAY_INTERVAL => "Will Delay Interval",
        REQUEST_RESPONSE_INFORMATION => "Request Response Information",
        RESPONSE_INFORMATION => "Response Information",
        SERVER_REFERENCE => "Server Reference",
        REASON_STRING => "Reason String",
        RECEIVE_MAXIMUM => "Receive Maximum",
        TOPIC_ALIAS_MAXIMUM => "Topic Alias Maximum",
        TOPIC_ALIAS => "Topic Alias",
        MAXIMUM_QOS => "Maximum QoS",
        RETAIN_AVAILABLE => "Retain Available",
        USER_PROPERTY => "User Property",
        MAXIMUM_PACKET_SIZE => "Maximum Packet Size",
        WILDCARD_SUBSCRIPTION_AVAILABLE => "Wildcard Subscription Available",
        SUBSCRIPTION_IDENTIFIER_AVAILABLE => "Subscription Identifier Available",
        SHARED_SUBSCRIPTION_AVAILABLE => "Shared Subscription Available",
        _ => "unknown property",
    }
}

/// A byte property that must be 0 or 1.
#[inline]
fn flag(r: &mut Reader<'_>, id: u8) -> Result<u8, DecodeError> {
    match r.u8()? {
        v @ (0 | 1) => Ok(v),
        v => Err(DecodeError::InvalidPropertyValue {
            property: id,
            value: u32::from(v),
        }),
    }
}

/// Stores `value` into `slot`; a second occurrence is a Protocol Error.
#[inline]
fn once<T>(slot: &mut Option<T>, id: u8, value: T) -> Result<(), DecodeError> {
    if slot.is_some() {
        return Err(DecodeError::DuplicateProperty(id));
    }
    *slot = Some(value);
    Ok(())
}

/// No properties, as a constant (what an absent property block reads as).
pub static EMPTY_PROPERTIES: Properties = Properties {
    payload_format_indicator: None,
    message_expiry_interval: None,
    content_type: None,
    response_topic: None,
    correlation_data: None,
    subscription_identifiers: Vec::new(),
    session_expiry_interval: None,
    assigned_client_identifier: None,
    server_keep_alive: None,
    authentication_method: None,
    authentication_data: None,
    request_problem_information: None,
    will_delay_interval: None,
    request_response_information: None,
    response_information: None,
    server_reference: None,
    reason_string: None,
    receive_maximum: None,
    topic_alias_maximum: None,
    topic_alias: None,
    maximum_qos: None,
    retain_available: None,
    user_properties: Vec::new(),
    maximum_packet_size: None,
    wildcard_subscription_available: None,
    subscription_identifier_available: None,
    shared_subscription_available: None,
};

impl Properties {
    /// True when no property is set.
    pub fn is_empty(&self) -> bool {
        self.len(false) == 0
    }

    /// Encoded size of the property list, without its length prefix.
    pub fn encoded_len(&self) -> usize {
        self.len(false)
    }

    /// Read a property length and the list it covers.
    pub(crate) fn decode(r: &mut Reader<'_>, allowed: Allowed) -> Result<Properties, DecodeError> {
        let len = r.varint()? as usize;
        let mut props = Properties::default();
        if len == 0 {
            return Ok(props);
        }
        let mut r = r.sub(len)?;
        while !r.is_empty() {
            // The identifier is a variable byte integer (section 2.2.2.2);
            // every defined one fits in one byte.
            let raw = r.varint()?;
            let id = match u8::try_from(raw) {
                Ok(id) if id < 64 && KNOWN & (1 << id) != 0 => id,
                _ => return Err(DecodeError::UnknownProperty(raw.min(255) as u8)),
            };
            if !allowed.allows(id) {
                return Err(DecodeError::PropertyNotAllowed {
                    property: id,
                    packet_type: allowed.packet_type,
                });
            }
            props.read_one(&mut r, id, allowed.packet_type)?;
        }
        if props.authentication_data.is_some() && props.authentication_method.is_none() {
            return Err(DecodeError::AuthenticationDataWithoutMethod);
        }
        Ok(props)
    }

    fn read_one(
        &mut self,
        r: &mut Reader<'_>,
        id: u8,
        packet_type: PacketType,
    ) -> Result<(), DecodeError> {
        match id {
            PAYLOAD_FORMAT_INDICATOR => {
                let v = flag(r, id)?;
                once(&mut self.payload_format_indicator, id, v)
            }
            MESSAGE_EXPIRY_INTERVAL => {
                let v = r.u32()?;
                once(&mut self.message_expiry_interval, id, v)
            }
            CONTENT_TYPE => {
                let v = r.string()?;
                once(&mut self.content_type, id, v)
            }
            RESPONSE_TOPIC => {
                let v = r.string()?;
                // Section 3.3.2.3.5: the Response Topic is a topic name.
                if has_wildcard(&v) {
                    return Err(DecodeError::WildcardInResponseTopic);
                }
                once(&mut self.response_topic, id, v)
            }
            CORRELATION_DATA => {
                let v = r.binary()?;
                once(&mut self.correlation_data, id, v)
            }
            SUBSCRIPTION_IDENTIFIER => {
                let v = r.varint()?;
                if v == 0 {
                    return Err(DecodeError::SubscriptionIdentifierZero);
                }
                // Repeatable only in PUBLISH (one per matching
                // subscription, section 3.3.2.3.8); once in SUBSCRIBE.
                if packet_type != PacketType::Publish && !self.subscription_identifiers.is_empty() {
                    return Err(DecodeError::DuplicateProperty(id));
                }
                self.subscription_identifiers.push(v);
                Ok(())
            }
            SESSION_EXPIRY_INTERVAL => {
                let v = r.u32()?;
                once(&mut self.session_expiry_interval, id, v)
            }
            ASSIGNED_CLIENT_IDENTIFIER => {
                let v = r.string()?;
                once(&mut self.assigned_client_identifier, id, v)
            }
            SERVER_KEEP_ALIVE => {
                let v = r.u16()?;
                once(&mut self.server_keep_alive, id, v)
            }
            AUTHENTICATION_METHOD => {
                let v = r.string()?;
                once(&mut self.authentication_method, id, v)
            }
            AUTHENTICATION_DATA => {
                let v = r.binary()?;
                once(&mut self.authentication_data, id, v)
            }
            REQUEST_PROBLEM_INFORMATION => {
                let v = flag(r, id)?;
                once(&mut self.request_problem_information, id, v)
            }
            WILL_DELAY_INTERVAL => {
                let v = r.u32()?;
                once(&mut self.will_delay_interval, id, v)
            }
            REQUEST_RESPONSE_INFORMATION => {
                let v = flag(r, id)?;
                once(&mut self.request_response_information, id, v)
            }
            RESPONSE_INFORMATION => {
                let v = r.string()?;
                once(&mut self.response_information, id, v)
            }
            SERVER_REFERENCE => {
                let v = r.string()?;
                once(&mut self.server_reference, id, v)
            }
            REASON_STRING => {
                let v = r.string()?;
                once(&mut self.reason_string, id, v)
            }
            RECEIVE_MAXIMUM => {
                let v = r.u16()?;
                if v == 0 {
                    return Err(DecodeError::ReceiveMaximumZero);
                }
                once(&mut self.receive_maximum, id, v)
            }
            TOPIC_ALIAS_MAXIMUM => {
                let v = r.u16()?;
                once(&mut self.topic_alias_maximum, id, v)
            }
            TOPIC_ALIAS => {
                let v = r.u16()?;
                if v == 0 {
                    return Err(DecodeError::TopicAliasZero);
                }
                once(&mut self.topic_alias, id, v)
            }
            MAXIMUM_QOS => {
                let v = flag(r, id)?;
                once(&mut self.maximum_qos, id, v)
            }
            RETAIN_AVAILABLE => {
                let v = flag(r, id)?;
                once(&mut self.retain_available, id, v)
            }
            USER_PROPERTY => {
                let key = r.string()?;
                let value = r.string()?;
                self.user_properties.push((key, value));
                Ok(())
            }
            MAXIMUM_PACKET_SIZE => {
                let v = r.u32()?;
                if v == 0 {
                    return Err(DecodeError::MaximumPacketSizeZero);
                }
                once(&mut self.maximum_packet_size, id, v)
            }
            WILDCARD_SUBSCRIPTION_AVAILABLE => {
                let v = flag(r, id)?;
                once(&mut self.wildcard_subscription_available, id, v)
            }
            SUBSCRIPTION_IDENTIFIER_AVAILABLE => {
                let v = flag(r, id)?;
                once(&mut self.subscription_identifier_available, id, v)
            }
            SHARED_SUBSCRIPTION_AVAILABLE => {
                let v = flag(r, id)?;
                once(&mut self.shared_subscription_available, id, v)
            }
            // `decode` only passes identifiers in KNOWN.
            _ => Err(DecodeError::UnknownProperty(id)),
        }
    }

    /// The identifiers of the properties that are set, as a bit mask.
    fn present(&self) -> u64 {
        let mut m = 0u64;
        let mut set = |id: u8, on: bool| {
            if on {
                m |= 1 << id;
            }
        };
        set(
            PAYLOAD_FORMAT_INDICATOR,
            self.payload_format_indicator.is_some(),
        );
        set(
            MESSAGE_EXPIRY_INTERVAL,
            self.message_expiry_interval.is_some(),
        );
        set(CONTENT_TYPE, self.content_type.is_some());
        set(RESPONSE_TOPIC, self.response_topic.is_some());
        set(CORRELATION_DATA, self.correlation_data.is_some());
        set(
            SUBSCRIPTION_IDENTIFIER,
            !self.subscription_identifiers.is_empty(),
        );
        set(
            SESSION_EXPIRY_INTERVAL,
            self.session_expiry_interval.is_some(),
        );
        set(
            ASSIGNED_CLIENT_IDENTIFIER,
            self.assigned_client_identifier.is_some(),
        );
        set(SERVER_KEEP_ALIVE, self.server_keep_alive.is_some());
        set(AUTHENTICATION_METHOD, self.authentication_method.is_some());
        set(AUTHENTICATION_DATA, self.authentication_data.is_some());
        set(
            REQUEST_PROBLEM_INFORMATION,
            self.request_problem_information.is_some(),
        );
        set(WILL_DELAY_INTERVAL, self.will_delay_interval.is_some());
        set(
            REQUEST_RESPONSE_INFORMATION,
            self.request_response_information.is_some(),
        );
        set(RESPONSE_INFORMATION, self.response_information.is_some());
        set(SERVER_REFERENCE, self.server_reference.is_some());
        set(REASON_STRING, self.reason_string.is_some());
        set(RECEIVE_MAXIMUM, self.receive_maximum.is_some());
        set(TOPIC_ALIAS_MAXIMUM, self.topic_alias_maximum.is_some());
        set(TOPIC_ALIAS, self.topic_alias.is_some());
        set(MAXIMUM_QOS, self.maximum_qos.is_some());
        set(RETAIN_AVAILABLE, self.retain_available.is_some());
        set(USER_PROPERTY, !self.user_properties.is_empty());
        set(MAXIMUM_PACKET_SIZE, self.maximum_packet_size.is_some());
        set(
            WILDCARD_SUBSCRIPTION_AVAILABLE,
            self.wildcard_subscription_available.is_some(),
        );
        set(
            SUBSCRIPTION_IDENTIFIER_AVAILABLE,
            self.subscription_identifier_available.is_some(),
        );
        set(
            SHARED_SUBSCRIPTION_AVAILABLE,
            self.shared_subscription_available.is_some(),
        );
        m
    }

    /// Refuse to write a property the packet kind does not allow, or a
    /// Subscription Identifier outside 1..=268 435 455.
    /// Encoded length of these properties in `version` (0 before v5,
    /// where packets carry none).
    pub(crate) fn len_in(&self, version: ProtocolVersion, trim: bool) -> usize {
        if version.is_v5() {
            self.len(trim)
        } else {
            0
        }
    }

    /// Like [`Properties::len_in`], after checking every property is
    /// `allowed` in the packet (v5 only).
    pub(crate) fn checked_len_in(
        &self,
        version: ProtocolVersion,
        allowed: Allowed,
        trim: bool,
    ) -> Result<usize, EncodeError> {
        if version.is_v5() {
            self.check(allowed)?;
        }
        Ok(self.len_in(version, trim))
    }

    pub(crate) fn check(&self, allowed: Allowed) -> Result<(), EncodeError> {
        let extra = self.present() & !allowed.bits;
        if extra != 0 {
            return Err(EncodeError::PropertyNotAllowed {
                property: extra.trailing_zeros() as u8,
                packet_type: allowed.packet_type,
            });
        }
        for &id in &self.subscription_identifiers {
            if id == 0 || id > MAX_REMAINING_LENGTH {
                return Err(EncodeError::InvalidSubscriptionIdentifier(id));
            }
        }
        Ok(())
    }

    /// Encoded size of the list without its length prefix; `trim` leaves
    /// out Reason String and User Properties (which a sender may drop to
    /// respect the peer's Maximum Packet Size).
    pub(crate) fn len(&self, trim: bool) -> usize {
        fn opt<T>(v: &Option<T>, size: usize) -> usize {
            if v.is_some() {
                1 + size
            } else {
                0
            }
        }
        fn bin(v: &Option<Bytes>) -> usize {
            v.as_ref().map_or(0, |b| 1 + binary_len(b))
        }
        let mut n = opt(&self.payload_format_indicator, 1)
            + opt(&self.message_expiry_interval, 4)
            + bin(&self.content_type)
            + bin(&self.response_topic)
            + bin(&self.correlation_data)
            + opt(&self.session_expiry_interval, 4)
            + bin(&self.assigned_client_identifier)
            + opt(&self.server_keep_alive, 2)
            + bin(&self.authentication_method)
            + bin(&self.authentication_data)
            + opt(&self.request_problem_information, 1)
            + opt(&self.will_delay_interval, 4)
            + opt(&self.request_response_information, 1)
            + bin(&self.response_information)
            + bin(&self.server_reference)
            + opt(&self.receive_maximum, 2)
            + opt(&self.topic_alias_maximum, 2)
            + opt(&self.topic_alias, 2)
            + opt(&self.maximum_qos, 1)
            + opt(&self.retain_available, 1)
            + opt(&self.maximum_packet_size, 4)
            + opt(&self.wildcard_subscription_available, 1)
            + opt(&self.subscription_identifier_available, 1)
            + opt(&self.shared_subscription_available, 1);
        for &id in &self.subscription_identifiers {
            n += 1 + varint_len(id as usize);
        }
        if !trim {
            n += bin(&self.reason_string);
            for (k, v) in &self.user_properties {
                n += 1 + binary_len(k) + binary_len(v);
            }
        }
        n
    }

    /// Size on the wire with the length prefix.
    #[inline]
    pub(crate) fn wire_len(&self, trim: bool) -> usize {
        let len = self.len(trim);
        varint_len(len) + len
    }

    /// Write the length prefix `len` (from [`Properties::len`] with the
    /// same `trim`) and the list.
    pub(crate) fn write(
        &self,
        buf: &mut BytesMut,
        len: usize,
        trim: bool,
    ) -> Result<(), EncodeError> {
        put_varint(buf, len);
        if len == 0 {
            return Ok(());
        }
        let start = buf.len();
        fn put_u8(buf: &mut BytesMut, id: u8, v: Option<u8>) {
            if let Some(v) = v {
                buf.put_u8(id);
                buf.put_u8(v);
            }
        }
        fn put_u16(buf: &mut BytesMut, id: u8, v: Option<u16>) {
            if let Some(v) = v {
                buf.put_u8(id);
                buf.put_u16(v);
            }
        }
        fn put_u32(buf: &mut BytesMut, id: u8, v: Option<u32>) {
            if let Some(v) = v {
                buf.put_u8(id);
                buf.put_u32(v);
            }
        }
        fn put_bin(buf: &mut BytesMut, id: u8, v: &Option<Bytes>) -> Result<(), EncodeError> {
            if let Some(v) = v {
                buf.put_u8(id);
                put_binary(buf, v)?;
            }
            Ok(())
        }
        put_u8(buf, PAYLOAD_FORMAT_INDICATOR, self.payload_format_indicator);
        put_u32(buf, MESSAGE_EXPIRY_INTERVAL, self.message_expiry_interval);
        put_bin(buf, CONTENT_TYPE, &self.content_type)?;
        put_bin(buf, RESPONSE_TOPIC, &self.response_topic)?;
        put_bin(buf, CORRELATION_DATA, &self.correlation_data)?;
        for &id in &self.subscription_identifiers {
            buf.put_u8(SUBSCRIPTION_IDENTIFIER);
            put_varint(buf, id as usize);
        }
        put_u32(buf, SESSION_EXPIRY_INTERVAL, self.session_expiry_interval);
        put_bin(
            buf,
            ASSIGNED_CLIENT_IDENTIFIER,
            &self.assigned_client_identifier,
        )?;
        put_u16(buf, SERVER_KEEP_ALIVE, self.server_keep_alive);
        put_bin(buf, AUTHENTICATION_METHOD, &self.authentication_method)?;
        put_bin(buf, AUTHENTICATION_DATA, &self.authentication_data)?;
        put_u8(
            buf,
            REQUEST_PROBLEM_INFORMATION,
            self.request_problem_information,
        );
        put_u32(buf, WILL_DELAY_INTERVAL, self.will_delay_interval);
        put_u8(
            buf,
            REQUEST_RESPONSE_INFORMATION,
            self.request_response_information,
        );
        put_bin(buf, RESPONSE_INFORMATION, &self.response_information)?;
        put_bin(buf, SERVER_REFERENCE, &self.server_reference)?;
        if !trim {
            put_bin(buf, REASON_STRING, &self.reason_string)?;
        }
        put_u16(buf, RECEIVE_MAXIMUM, self.receive_maximum);
        put_u16(buf, TOPIC_ALIAS_MAXIMUM, self.topic_alias_maximum);
        put_u16(buf, TOPIC_ALIAS, self.topic_alias);
        put_u8(buf, MAXIMUM_QOS, self.maximum_qos);
        put_u8(buf, RETAIN_AVAILABLE, self.retain_available);
        put_u32(buf, MAXIMUM_PACKET_SIZE, self.maximum_packet_size);
        put_u8(
            buf,
            WILDCARD_SUBSCRIPTION_AVAILABLE,
            self.wildcard_subscription_available,
        );
        put_u8(
            buf,
            SUBSCRIPTION_IDENTIFIER_AVAILABLE,
            self.subscription_identifier_available,
        );
        put_u8(
            buf,
            SHARED_SUBSCRIPTION_AVAILABLE,
            self.shared_subscription_available,
        );
        if !trim {
            for (k, v) in &self.user_properties {
                buf.put_u8(USER_PROPERTY);
                put_binary(buf, k)?;
                put_binary(buf, v)?;
            }
        }
        debug_assert_eq!(buf.len() - start, len);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &'static [u8], allowed: Allowed) -> Result<Properties, DecodeError> {
        let buf = Bytes::from_static(bytes);
        let mut r = Reader::new(&buf, 0, buf.len());
        let props = Properties::decode(&mut r, allowed)?;
        r.finish()?;
        Ok(props)
    }

    fn encode(props: &Properties) -> Vec<u8> {
        let mut buf = BytesMut::new();
        props.write(&mut buf, props.len(false), false).unwrap();
        buf.to_vec()
    }

    #[test]
    fn empty_list() {
        assert_eq!(decode(&[0x00], Allowed::PUBLISH), Ok(Properties::default()));
        assert!(Properties::default().is_empty());
        assert_eq!(encode(&Properties::default()), [0x00]);
    }

    #[test]
    fn publish_properties_good() {
        let bytes: &[u8] = &[
            23, // property length
            0x01, 0x01, // payload format indicator 1
            0x02, 0x00, 0x00, 0x00, 0x3C, // message expiry 60
            0x03, 0x00, 0x01, b't', // content type "t"
            0x0B, 0x05, // subscription identifier 5
            0x0B, 0x80, 0x01, // subscription identifier 128
            0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v', // user property k=v
        ];
        let p = decode(bytes, Allowed::PUBLISH).unwrap();
        assert_eq!(p.payload_format_indicator, Some(1));
        assert_eq!(p.message_expiry_interval, Some(60));
        assert_eq!(p.content_type.as_deref(), Some(&b"t"[..]));
        assert_eq!(p.subscription_identifiers, [5, 128]);
        assert_eq!(
            p.user_properties,
            [(Bytes::from_static(b"k"), Bytes::from_static(b"v"))]
        );
        assert_eq!(p.encoded_len(), 23);
        assert_eq!(encode(&p), bytes);
    }

    #[test]
    fn bad_lists() {
        use DecodeError::*;
        let table: &[(&[u8], Allowed, DecodeError)] = &[
            (
                &[0x02, 0x01, 0x02],
                Allowed::PUBLISH,
                InvalidPropertyValue {
                    property: 0x01,
                    value: 2,
                },
            ),
            (
                &[0x04, 0x01, 0x00, 0x01, 0x01],
                Allowed::PUBLISH,
                DuplicateProperty(0x01),
            ),
            (&[0x03, 0x23, 0x00, 0x00], Allowed::PUBLISH, TopicAliasZero),
            (
                &[0x03, 0x21, 0x00, 0x00],
                Allowed::CONNECT,
                ReceiveMaximumZero,
            ),
            (
                &[0x05, 0x27, 0, 0, 0, 0],
                Allowed::CONNECT,
                MaximumPacketSizeZero,
            ),
            (
                &[0x02, 0x0B, 0x00],
                Allowed::SUBSCRIBE,
                SubscriptionIdentifierZero,
            ),
            (
                &[0x04, 0x0B, 0x01, 0x0B, 0x02],
                Allowed::SUBSCRIBE,
                DuplicateProperty(0x0B),
            ),
            (&[0x02, 0x00, 0x00], Allowed::PUBLISH, UnknownProperty(0x00)),
            (&[0x02, 0x7F, 0x00], Allowed::PUBLISH, UnknownProperty(0x7F)),
            (
                &[0x03, 0x80, 0x01, 0x00],
                Allowed::PUBLISH,
                UnknownProperty(128),
            ),
            (
                &[0x03, 0x80, 0x00, 0x00],
                Allowed::PUBLISH,
                NonMinimalVariableByteInteger,
            ),
            (
                &[0x03, 0x13, 0x00, 0x0A],
                Allowed::PUBLISH,
                PropertyNotAllowed {
                    property: 0x13,
                    packet_type: PacketType::Publish,
                },
            ),
            (
                &[0x05, 0x18, 0, 0, 0, 1],
                Allowed::CONNECT,
                PropertyNotAllowed {
                    property: 0x18,
                    packet_type: PacketType::Connect,
                },
            ),
            (
                &[0x04, 0x16, 0x00, 0x01, 0xFF],
                Allowed::AUTH,
                AuthenticationDataWithoutMethod,
            ),
            (
                &[0x04, 0x08, 0x00, 0x01, b'#'],
                Allowed::PUBLISH,
                WildcardInResponseTopic,
            ),
            (
                &[0x04, 0x03, 0x00, 0x01, 0x00],
                Allowed::PUBLISH,
                NullCharacter,
            ),
            (
                &[0x04, 0x03, 0x00, 0x01, 0xFF],
                Allowed::PUBLISH,
                InvalidUtf8,
            ),
            // Property length runs past the end of the packet.
            (&[0x05, 0x01, 0x00], Allowed::PUBLISH, UnexpectedEndOfPacket),
            // A property runs past the property length.
            (
                &[0x02, 0x02, 0x00, 0x00, 0x00, 0x01],
                Allowed::PUBLISH,
                UnexpectedEndOfPacket,
            ),
            (
                &[0x02, 0x24, 0x02],
                Allowed::CONNACK,
                InvalidPropertyValue {
                    property: 0x24,
                    value: 2,
                },
            ),
        ];
        for (bytes, allowed, err) in table {
            assert_eq!(decode(bytes, *allowed).as_ref(), Err(err), "{bytes:02x?}");
        }
    }

    #[test]
    fn every_property_roundtrips_in_connack_order() {
        let s = |v: &'static str| Some(Bytes::from_static(v.as_bytes()));
        let p = Properties {
            session_expiry_interval: Some(7),
            assigned_client_identifier: s("id"),
            server_keep_alive: Some(30),
            authentication_method: s("m"),
            authentication_data: s("d"),
            response_information: s("ri"),
            server_reference: s("sr"),
            reason_string: s("why"),
            receive_maximum: Some(10),
            topic_alias_maximum: Some(5),
            maximum_qos: Some(1),
            retain_available: Some(0),
            user_properties: vec![(Bytes::from_static(b"a"), Bytes::from_static(b"b"))],
            maximum_packet_size: Some(1024),
            wildcard_subscription_available: Some(1),
            subscription_identifier_available: Some(0),
            shared_subscription_available: Some(1),
            ..Properties::default()
        };
        p.check(Allowed::CONNACK).unwrap();
        let bytes = encode(&p);
        let buf = Bytes::from(bytes);
        let mut r = Reader::new(&buf, 0, buf.len());
        assert_eq!(Properties::decode(&mut r, Allowed::CONNACK), Ok(p.clone()));
        // Trimmed: no reason string, no user properties.
        let trimmed = p.len(true);
        assert_eq!(trimmed, p.len(false) - (1 + 2 + 3) - (1 + 3 + 3));
    }

    #[test]
    fn encode_checks() {
        let p = Properties {
            topic_alias: Some(1),
            ..Properties::default()
        };
        assert_eq!(
            p.check(Allowed::CONNECT),
            Err(EncodeError::PropertyNotAllowed {
                property: 0x23,
                packet_type: PacketType::Connect
            })
        );
        let p = Properties {
            subscription_identifiers: vec![268_435_456],
            ..Properties::default()
        };
        assert_eq!(
            p.check(Allowed::PUBLISH),
            Err(EncodeError::InvalidSubscriptionIdentifier(268_435_456))
        );
    }

    #[test]
    fn names() {
        assert_eq!(property_name(0x26), "User Property");
        assert_eq!(property_name(0x05), "unknown property");
        assert_eq!(KNOWN.count_ones(), 27);
    }
}
