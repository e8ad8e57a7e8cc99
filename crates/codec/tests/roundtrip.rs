//! Property tests over the public API: every valid packet of every kind
//! and version round-trips through encode and decode; prefixes of a valid
//! encoding are "need more bytes"; arbitrary and mutated input never
//! panics and never claims more bytes than it was given.

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::option::weighted;
use proptest::prelude::*;
use proptest::sample::select;
use ringmq_codec::*;

const VERSIONS: [ProtocolVersion; 3] = [
    ProtocolVersion::V3_1,
    ProtocolVersion::V3_1_1,
    ProtocolVersion::V5,
];

fn version() -> impl Strategy<Value = ProtocolVersion> {
    select(VERSIONS.to_vec())
}

/// A valid UTF-8 string without U+0000.
fn text() -> impl Strategy<Value = Bytes> {
    "[a-zA-Z0-9 /_.é€😀-]{0,10}".prop_map(Bytes::from)
}

/// A non-empty topic name (no wildcards).
fn topic() -> impl Strategy<Value = Bytes> {
    "[a-z0-9/é$]{1,12}".prop_map(Bytes::from)
}

/// A non-empty topic filter (wildcards allowed; syntax is not the codec's job).
fn filter() -> impl Strategy<Value = Bytes> {
    "[a-z0-9/+#é]{1,12}".prop_map(Bytes::from)
}

fn bin() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..16).prop_map(Bytes::from)
}

fn payload() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..200).prop_map(Bytes::from)
}

fn qos() -> impl Strategy<Value = QoS> {
    select(vec![QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce])
}

fn flag_value() -> impl Strategy<Value = Option<u8>> {
    weighted(0.3, 0u8..=1)
}

/// Every property with a valid value, each present with probability 0.3.
fn any_properties() -> impl Strategy<Value = Properties> {
    let a = (
        flag_value(),
        weighted(0.3, any::<u32>()),
        weighted(0.3, text()),
        weighted(0.3, topic()),
        weighted(0.3, bin()),
        vec(1u32..=268_435_455, 0..3),
        weighted(0.3, any::<u32>()),
        weighted(0.3, text()),
        weighted(0.3, any::<u16>()),
    );
    let b = (
        weighted(0.3, text()),
        weighted(0.3, bin()),
        flag_value(),
        weighted(0.3, any::<u32>()),
        flag_value(),
        weighted(0.3, text()),
        weighted(0.3, text()),
        weighted(0.3, text()),
        weighted(0.3, 1u16..),
    );
    let c = (
        weighted(0.3, any::<u16>()),
        weighted(0.3, 1u16..),
        flag_value(),
        flag_value(),
        vec((text(), text()), 0..3),
        weighted(0.3, 1u32..),
        flag_value(),
        flag_value(),
        flag_value(),
    );
    (a, b, c).prop_map(|(a, b, c)| Properties {
        payload_format_indicator: a.0,
        message_expiry_interval: a.1,
        content_type: a.2,
        response_topic: a.3,
        correlation_data: a.4,
        subscription_identifiers: a.5,
        session_expiry_interval: a.6,
        assigned_client_identifier: a.7,
        server_keep_alive: a.8,
        authentication_method: b.0,
        authentication_data: b.1,
        request_problem_information: b.2,
        will_delay_interval: b.3,
        request_response_information: b.4,
        response_information: b.5,
        server_reference: b.6,
        reason_string: b.7,
        receive_maximum: b.8,
        topic_alias_maximum: c.0,
        topic_alias: c.1,
        maximum_qos: c.2,
        retain_available: c.3,
        user_properties: c.4,
        maximum_packet_size: c.5,
        wildcard_subscription_available: c.6,
        subscription_identifier_available: c.7,
        shared_subscription_available: c.8,
    })
}

#[derive(Clone, Copy)]
enum Kind {
    Connect,
    Will,
    ConnAck,
    Publish,
    Ack,
    Subscribe,
    Unsubscribe,
    Disconnect,
    Auth,
}

/// Keep only the properties MQTT 5 table 2.2.2.2 allows in `kind`
/// (written out independently of the codec's own table).
fn restrict(p: Properties, kind: Kind) -> Properties {
    let mut out = Properties {
        user_properties: p.user_properties,
        ..Properties::default()
    };
    macro_rules! keep {
        ($($field:ident),*) => {{ $( out.$field = p.$field; )* }};
    }
    match kind {
        Kind::Connect => keep!(
            session_expiry_interval,
            authentication_method,
            authentication_data,
            request_problem_information,
            request_response_information,
            receive_maximum,
            topic_alias_maximum,
            maximum_packet_size
        ),
        Kind::Will => keep!(
            payload_format_indicator,
            message_expiry_interval,
            content_type,
            response_topic,
            correlation_data,
            will_delay_interval
        ),
        Kind::ConnAck => keep!(
            session_expiry_interval,
            assigned_client_identifier,
            server_keep_alive,
            authentication_method,
            authentication_data,
            response_information,
            server_reference,
            reason_string,
            receive_maximum,
            topic_alias_maximum,
            maximum_qos,
            retain_available,
            maximum_packet_size,
            wildcard_subscription_available,
            subscription_identifier_available,
            shared_subscription_available
        ),
        Kind::Publish => keep!(
            payload_format_indicator,
            message_expiry_interval,
            content_type,
            response_topic,
            correlation_data,
            subscription_identifiers,
            topic_alias
        ),
        Kind::Ack => keep!(reason_string),
        Kind::Subscribe => {
            out.subscription_identifiers = p.subscription_identifiers.into_iter().take(1).collect();
        }
        Kind::Unsubscribe => {}
        Kind::Disconnect => keep!(session_expiry_interval, server_reference, reason_string),
        Kind::Auth => keep!(authentication_method, authentication_data, reason_string),
    }
    // Authentication Data requires an Authentication Method.
    if out.authentication_data.is_some() && out.authentication_method.is_none() {
        out.authentication_method = Some(Bytes::from_static(b"m"));
    }
    out
}

fn props(kind: Kind, v: ProtocolVersion) -> BoxedStrategy<Properties> {
    if v.is_v5() {
        any_properties()
            .prop_map(move |p| restrict(p, kind))
            .boxed()
    } else {
        Just(Properties::default()).boxed()
    }
}

fn code(
    v: ProtocolVersion,
    v5: &'static [u8],
    v3: &'static [u8],
) -> impl Strategy<Value = ReasonCode> {
    select(if v.is_v5() { v5 } else { v3 }).prop_map(ReasonCode)
}

const CONNACK_V5: &[u8] = &[
    0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97,
    0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F,
];
const PUBACK_V5: &[u8] = &[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99];
const PUBREL_V5: &[u8] = &[0x00, 0x92];
const SUBACK_V5: &[u8] = &[
    0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2,
];
const UNSUBACK_V5: &[u8] = &[0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91];
const DISCONNECT_V5: &[u8] = &[
    0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95,
    0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2,
];
const AUTH_V5: &[u8] = &[0x00, 0x18, 0x19];
const SUCCESS_ONLY: &[u8] = &[0x00];

fn connect(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let will = (topic(), bin(), qos(), any::<bool>(), props(Kind::Will, v)).prop_map(
        |(topic, payload, qos, retain, properties)| Will {
            topic,
            payload,
            qos,
            retain,
            properties,
        },
    );
    (
        any::<bool>(),
        any::<u16>(),
        text(),
        weighted(0.5, will),
        weighted(0.5, text()),
        weighted(0.5, bin()),
        props(Kind::Connect, v),
    )
        .prop_map(
            move |(clean_start, keep_alive, client_id, will, username, password, properties)| {
                // 3.x: a password needs a user name (MQTT-3.1.2-22).
                let password = if v.is_v5() || username.is_some() {
                    password
                } else {
                    None
                };
                Packet::Connect(Box::new(Connect {
                    protocol: v,
                    clean_start,
                    keep_alive,
                    client_id,
                    will,
                    username,
                    password,
                    properties,
                }))
            },
        )
}

fn publish(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (
        qos(),
        any::<bool>(),
        any::<bool>(),
        topic(),
        any::<bool>(),
        1u16..,
        props(Kind::Publish, v),
        payload(),
    )
        .prop_map(
            move |(qos, dup, retain, topic, empty_topic, id, properties, payload)| {
                // An empty topic name is valid only in v5 with a Topic Alias.
                let topic = if empty_topic && properties.topic_alias.is_some() {
                    Bytes::new()
                } else {
                    topic
                };
                Packet::Publish(Publish {
                    dup: dup && qos != QoS::AtMostOnce,
                    qos,
                    retain,
                    topic,
                    packet_id: if qos == QoS::AtMostOnce { 0 } else { id },
                    properties: properties.into(),
                    payload,
                })
            },
        )
}

fn ack(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let puback = code(v, PUBACK_V5, SUCCESS_ONLY);
    let pubrel = code(v, PUBREL_V5, SUCCESS_ONLY);
    (0u8..4, 1u16.., puback, pubrel, props(Kind::Ack, v)).prop_map(
        |(which, packet_id, puback_code, pubrel_code, properties)| match which {
            0 => Packet::PubAck(PubAck {
                packet_id,
                code: puback_code,
                properties,
            }),
            1 => Packet::PubRec(PubRec {
                packet_id,
                code: puback_code,
                properties,
            }),
            2 => Packet::PubRel(PubRel {
                packet_id,
                code: pubrel_code,
                properties,
            }),
            _ => Packet::PubComp(PubComp {
                packet_id,
                code: pubrel_code,
                properties,
            }),
        },
    )
}

fn subscribe(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let options = (
        qos(),
        any::<bool>(),
        any::<bool>(),
        select(vec![
            RetainHandling::SendAtSubscribe,
            RetainHandling::SendAtSubscribeIfNew,
            RetainHandling::DoNotSend,
        ]),
    )
        .prop_map(
            move |(qos, no_local, retain_as_published, retain_handling)| {
                if v.is_v5() {
                    SubscriptionOptions {
                        qos,
                        no_local,
                        retain_as_published,
                        retain_handling,
                    }
                } else {
                    SubscriptionOptions {
                        qos,
                        ..SubscriptionOptions::default()
                    }
                }
            },
        );
    (
        1u16..,
        props(Kind::Subscribe, v),
        vec((filter(), options), 1..5),
    )
        .prop_map(|(packet_id, properties, filters)| {
            Packet::Subscribe(Subscribe {
                packet_id,
                properties,
                filters,
            })
        })
}

fn suback(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let allowed: &'static [u8] = match v {
        ProtocolVersion::V5 => SUBACK_V5,
        ProtocolVersion::V3_1_1 => &[0x00, 0x01, 0x02, 0x80],
        ProtocolVersion::V3_1 => &[0x00, 0x01, 0x02],
    };
    (
        1u16..,
        props(Kind::Ack, v),
        vec(select(allowed).prop_map(ReasonCode), 0..5),
    )
        .prop_map(|(packet_id, properties, codes)| {
            Packet::SubAck(SubAck {
                packet_id,
                properties,
                codes,
            })
        })
}

fn unsubscribe(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (1u16.., props(Kind::Unsubscribe, v), vec(filter(), 1..5)).prop_map(
        |(packet_id, properties, filters)| {
            Packet::Unsubscribe(Unsubscribe {
                packet_id,
                properties,
                filters,
            })
        },
    )
}

fn unsuback(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let max_codes = if v.is_v5() { 5 } else { 1 };
    (
        1u16..,
        props(Kind::Ack, v),
        vec(select(UNSUBACK_V5).prop_map(ReasonCode), 0..max_codes),
    )
        .prop_map(|(packet_id, properties, codes)| {
            Packet::UnsubAck(UnsubAck {
                packet_id,
                properties,
                codes,
            })
        })
}

fn disconnect(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (
        code(v, DISCONNECT_V5, SUCCESS_ONLY),
        props(Kind::Disconnect, v),
    )
        .prop_map(|(code, properties)| Packet::Disconnect(Disconnect { code, properties }))
}

fn connack(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (
        any::<bool>(),
        code(v, CONNACK_V5, &[0, 1, 2, 3, 4, 5]),
        props(Kind::ConnAck, v),
    )
        .prop_map(|(session_present, code, properties)| {
            Packet::ConnAck(ConnAck {
                // MQTT-3.2.2-6: no session with a failure code.
                session_present: session_present && code == ReasonCode::SUCCESS,
                code,
                properties,
            })
        })
}

fn auth() -> impl Strategy<Value = Packet> {
    (
        code(ProtocolVersion::V5, AUTH_V5, AUTH_V5),
        props(Kind::Auth, ProtocolVersion::V5),
    )
        .prop_map(|(code, properties)| Packet::Auth(Auth { code, properties }))
}

/// A valid packet for `v`, of any kind that exists in `v`.
fn packet(v: ProtocolVersion) -> BoxedStrategy<Packet> {
    let common = prop_oneof![
        connect(v),
        connack(v),
        publish(v),
        ack(v),
        subscribe(v),
        suback(v),
        unsubscribe(v),
        unsuback(v),
        Just(Packet::PingReq),
        Just(Packet::PingResp),
        disconnect(v),
    ];
    if v.is_v5() {
        prop_oneof![10 => common, 1 => auth()].boxed()
    } else {
        common.boxed()
    }
}

fn versioned_packet() -> impl Strategy<Value = (ProtocolVersion, Packet)> {
    version().prop_flat_map(|v| packet(v).prop_map(move |p| (v, p)))
}

fn encode(packet: &Packet, v: ProtocolVersion) -> Bytes {
    let mut buf = BytesMut::new();
    packet.encode(v, &mut buf).expect("valid packets encode");
    buf.freeze()
}

/// Decoding arbitrary input: never panics, never claims more than given,
/// and whatever it accepts re-encodes to something that decodes the same.
fn check_arbitrary(bytes: &[u8], v: ProtocolVersion) -> Result<(), TestCaseError> {
    let buf = Bytes::copy_from_slice(bytes);
    if let Ok(Some((packet, used))) = decode(&buf, v, &Limits::default()) {
        prop_assert!(used <= bytes.len());
        prop_assert!(used >= 2);
        let again = encode(&packet, v);
        let decoded = decode(&again, v, &Limits::default());
        prop_assert_eq!(decoded, Ok(Some((packet, again.len()))));
    }
    let mut bm = BytesMut::from(bytes);
    if let Ok(Some(_)) = decode_buf(&mut bm, v, &Limits::default()) {
        prop_assert!(bm.len() < bytes.len());
    }
    Ok(())
}

/// First bytes of every packet type with valid flags.
const FIRST_BYTES: &[u8] = &[
    0x10, 0x20, 0x30, 0x32, 0x35, 0x3B, 0x3C, 0x40, 0x50, 0x62, 0x70, 0x82, 0x90, 0xA2, 0xB0, 0xC0,
    0xD0, 0xE0, 0xF0,
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn encode_then_decode_is_identity((v, packet) in versioned_packet()) {
        let bytes = encode(&packet, v);
        prop_assert_eq!(bytes.len(), packet.encoded_len(v));
        prop_assert_eq!(frame_len(&bytes, &Limits::default()), Ok(Some(bytes.len())));
        let decoded = decode(&bytes, v, &Limits::default());
        prop_assert_eq!(decoded, Ok(Some((packet.clone(), bytes.len()))));

        // Two packets back to back in a read buffer.
        let mut bm = BytesMut::new();
        bm.extend_from_slice(&bytes);
        bm.extend_from_slice(&bytes);
        prop_assert_eq!(decode_buf(&mut bm, v, &Limits::default()), Ok(Some(packet.clone())));
        prop_assert_eq!(decode_buf(&mut bm, v, &Limits::default()), Ok(Some(packet.clone())));
        prop_assert!(bm.is_empty());

        // Without diagnostics: still a valid packet, never larger.
        let mut trimmed = BytesMut::new();
        packet.encode_without_diagnostics(v, &mut trimmed).unwrap();
        prop_assert_eq!(trimmed.len(), packet.encoded_len_without_diagnostics(v));
        prop_assert!(trimmed.len() <= bytes.len());
        let trimmed = trimmed.freeze();
        prop_assert!(matches!(decode(&trimmed, v, &Limits::default()), Ok(Some((_, n))) if n == trimmed.len()));

        // A limit one byte below the full size: trimmed, or refused.
        let mut limited = BytesMut::new();
        match packet.encode_limited(v, bytes.len() as u32 - 1, &mut limited) {
            Ok(n) => {
                prop_assert!(packet.has_optional_diagnostics());
                prop_assert_eq!(n, limited.len());
                prop_assert!(n < bytes.len());
            }
            Err(EncodeError::ExceedsMaximumPacketSize { size, .. }) => {
                prop_assert!(size >= bytes.len() || packet.has_optional_diagnostics());
                prop_assert!(limited.is_empty());
            }
            Err(e) => prop_assert!(false, "unexpected {e}"),
        }
    }

    #[test]
    fn every_prefix_needs_more_bytes((v, packet) in versioned_packet()) {
        let bytes = encode(&packet, v);
        for cut in 0..bytes.len() {
            let prefix = bytes.slice(..cut);
            prop_assert_eq!(decode(&prefix, v, &Limits::default()), Ok(None), "cut {}", cut);
            let mut bm = BytesMut::from(&prefix[..]);
            prop_assert_eq!(decode_buf(&mut bm, v, &Limits::default()), Ok(None));
            prop_assert_eq!(bm.len(), cut);
        }
    }

    #[test]
    fn limits_are_enforced_from_the_header((v, packet) in versioned_packet()) {
        let bytes = encode(&packet, v);
        let limits = Limits { max_packet_size: bytes.len() as u32 - 1 };
        // Only the fixed header is needed to refuse it.
        let header_len = 1 + bytes[1..].iter().position(|b| b & 0x80 == 0).unwrap() + 1;
        let header = bytes.slice(..header_len);
        prop_assert_eq!(
            decode(&header, v, &limits),
            Err(DecodeError::PacketTooLarge { size: bytes.len(), max: limits.max_packet_size })
        );
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..300), v in version()) {
        check_arbitrary(&bytes, v)?;
    }

    #[test]
    fn framed_garbage_never_panics(
        first in select(FIRST_BYTES),
        body in vec(any::<u8>(), 0..80),
        v in version(),
    ) {
        // A well-framed packet with a random body reaches the body parsers.
        let mut bytes = vec![first];
        let mut len = body.len();
        loop {
            let mut b = (len & 0x7F) as u8;
            len >>= 7;
            if len > 0 { b |= 0x80; }
            bytes.push(b);
            if len == 0 { break; }
        }
        bytes.extend_from_slice(&body);
        check_arbitrary(&bytes, v)?;
    }

    #[test]
    fn mutated_packets_never_panic(
        (v, packet) in versioned_packet(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        cut in any::<prop::sample::Index>(),
    ) {
        let bytes = encode(&packet, v).to_vec();
        let mut mutated = bytes.clone();
        let i = at.index(mutated.len());
        mutated[i] = byte;
        check_arbitrary(&mutated, v)?;
        // A body shortened or lengthened under the same remaining length.
        let cut = cut.index(bytes.len());
        check_arbitrary(&bytes[..cut], v)?;
        let mut longer = bytes.clone();
        longer.push(0);
        check_arbitrary(&longer, v)?;
    }
}

#[test]
fn each_version_has_its_kinds() {
    // Guards the generators: AUTH only in v5, everything else everywhere.
    for v in VERSIONS {
        let auth = Packet::Auth(Auth {
            code: ReasonCode::SUCCESS,
            properties: Properties::default(),
        });
        let mut buf = BytesMut::new();
        assert_eq!(auth.encode(v, &mut buf).is_ok(), v.is_v5());
    }
}
