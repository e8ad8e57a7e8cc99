//! Builders of well-formed client packets and routed messages, from the
//! codec's own types.
//!
//! "Well-formed" means the codec accepts them, mostly: the values are
//! drawn from small pools (a few client ids, topics, filters, packet ids)
//! so that a sequence revisits the same state (an alias set then used, a
//! subscription made then dropped, an acknowledgement for an id the
//! server did use), and the pools hold the odd cases on purpose:
//! `$share` filters good and bad, wildcards in the wrong place, aliases
//! out of range, acknowledgements for ids never sent. A few values break
//! a codec rule (the fuzzer wants those paths too) at a low rate.

use ringmq_codec::{
    Auth, Bytes, BytesMut, ConnAck, Connect, Disconnect, Packet, Properties, ProtocolVersion,
    PubAck, PubComp, PubRec, PubRel, Publish, QoS, ReasonCode, RetainHandling, SubAck, Subscribe,
    SubscriptionOptions, UnsubAck, Unsubscribe, Will,
};

use super::rng::Rng;

/// Client ids: mostly one (so connections resume and take over one
/// session), an empty one (assigned by the server), a few others.
const CLIENT_IDS: &[&str] = &["c", "c", "c", "c", "d", "", "client/with/slashes"];

/// Topic names a client publishes to and messages are routed on.
pub const TOPICS: &[&str] = &[
    "a",
    "a/b",
    "a/b/c",
    "x",
    "$SYS/uptime",
    "sport/tennis/player1",
    "/",
    "//",
    "a/",
    "\u{e9}t\u{e9}",
    "very/long/topic/name/that/takes/some/room/in/a/small/maximum/packet",
];

/// Topic filters, valid and not, for SUBSCRIBE and UNSUBSCRIBE.
const FILTERS: &[&str] = &[
    "a",
    "a/b",
    "a/+",
    "a/#",
    "#",
    "+",
    "+/+",
    "/+",
    "+/#",
    "x",
    "$SYS/#",
    "$share/g/a/#",
    "$share/g/+",
    "$share/h/a/b",
    "$share/g/#",
    "$share//a",
    "$share/g",
    "$share/g/",
    "$share/+/a",
    "$share/g#/a",
    "$shared/g/a",
    "a/#/b",
    "a/b#",
    "a+",
    "#/a",
    "sport/tennis/+",
];

/// Content types for message properties.
const CONTENT_TYPES: &[&str] = &["text/plain", "application/json", ""];

/// DISCONNECT reason codes a client may send (v5 3.14.2.1), and two it
/// may not (0x8E, 0x8B are server-only but allowed on the wire).
const CLIENT_DISCONNECT_CODES: &[u8] = &[
    0x00, 0x00, 0x00, 0x04, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8E, 0x90, 0x93, 0x95,
    0x96, 0x97, 0x98, 0x99, 0x9A,
];

/// PUBACK / PUBREC reason codes (v5 3.4.2.1).
const PUBACK_CODES: &[u8] = &[
    0x00, 0x00, 0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99,
];

/// Packet ids the client uses and acknowledges: small, because the
/// server allocates from 1 up, so most acknowledgements hit a real flow.
pub fn packet_id(rng: &mut Rng) -> u16 {
    match rng.below(20) {
        0 => rng.range(1, u64::from(u16::MAX)) as u16,
        1 => u16::MAX,
        _ => rng.range(1, 8) as u16,
    }
}

fn text(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// A short random printable string (no NUL: that is a decode error).
fn word(rng: &mut Rng, max: usize) -> Bytes {
    let n = rng.size(0, max);
    Bytes::from(
        (0..n)
            .map(|_| rng.range(0x21, 0x7E) as u8)
            .collect::<Vec<u8>>(),
    )
}

/// A payload: usually short, sometimes large enough to cross a small
/// Maximum Packet Size.
fn payload(rng: &mut Rng) -> Bytes {
    let n = match rng.below(10) {
        0 => rng.size(100, 600),
        1 => 0,
        _ => rng.size(1, 24),
    };
    Bytes::from(rng.bytes(n))
}

fn user_properties(rng: &mut Rng, props: &mut Properties) {
    if rng.chance(1, 6) {
        for _ in 0..rng.size(1, 3) {
            let key = word(rng, 6);
            let max = if rng.chance(1, 8) { 300 } else { 8 };
            let value = word(rng, max);
            props.user_properties.push((key, value));
        }
    }
}

/// A protocol version for a new connection.
pub fn version(rng: &mut Rng) -> ProtocolVersion {
    match rng.below(10) {
        0 => ProtocolVersion::V3_1,
        1..=4 => ProtocolVersion::V3_1_1,
        _ => ProtocolVersion::V5,
    }
}

/// Message properties a PUBLISH or a will may carry (v5).
fn message_properties(rng: &mut Rng, props: &mut Properties) {
    if rng.chance(1, 4) {
        props.message_expiry_interval = Some(match rng.below(4) {
            0 => 0,
            1 => u32::MAX,
            _ => rng.range(1, 30) as u32,
        });
    }
    if rng.chance(1, 8) {
        props.payload_format_indicator = Some(rng.below(2) as u8);
    }
    if rng.chance(1, 8) {
        props.content_type = Some(text(rng.pick(CONTENT_TYPES)));
    }
    if rng.chance(1, 10) {
        props.response_topic = Some(text(rng.pick(TOPICS)));
    }
    if rng.chance(1, 10) {
        props.correlation_data = Some(Bytes::from(rng.bytes_up_to(0, 16)));
    }
    user_properties(rng, props);
}

/// A CONNECT in `version` (3.1 never with an empty client id that the
/// server would accept; that refusal is exercised too).
pub fn connect(rng: &mut Rng, version: ProtocolVersion) -> Connect {
    let v5 = version.is_v5();
    let mut properties = Properties::default();
    if v5 {
        if rng.chance(2, 3) {
            properties.session_expiry_interval = Some(match rng.below(6) {
                0 => 0,
                1 => u32::MAX,
                2 => rng.range(100, 100_000) as u32,
                _ => rng.range(1, 10) as u32,
            });
        }
        if rng.chance(1, 2) {
            properties.receive_maximum = Some(match rng.below(4) {
                0 => u16::MAX,
                _ => rng.range(1, 4) as u16,
            });
        }
        if rng.chance(1, 2) {
            properties.maximum_packet_size = Some(match rng.below(24) {
                0..=4 => rng.range(100_000, u64::from(u32::MAX)) as u32,
                5 => rng.range(2, 30) as u32,
                _ => rng.range(30, 400) as u32,
            });
        }
        if rng.chance(1, 2) {
            properties.topic_alias_maximum = Some(rng.range(0, 4) as u16);
        }
        if rng.chance(1, 10) {
            properties.request_problem_information = Some(rng.below(2) as u8);
        }
        if rng.chance(1, 10) {
            properties.request_response_information = Some(rng.below(2) as u8);
        }
        if rng.chance(1, 20) {
            properties.authentication_method = Some(text("SCRAM-SHA-1"));
            if rng.coin() {
                properties.authentication_data = Some(Bytes::from(rng.bytes(4)));
            }
        }
        user_properties(rng, &mut properties);
    }
    let will = rng.chance(1, 3).then(|| {
        let mut props = Properties::default();
        if v5 {
            message_properties(rng, &mut props);
            if rng.chance(1, 2) {
                props.will_delay_interval = Some(match rng.below(4) {
                    0 => 0,
                    1 => u32::MAX,
                    _ => rng.range(1, 8) as u32,
                });
            }
        }
        Will {
            topic: text(if rng.chance(1, 20) {
                "bad/+/will"
            } else {
                rng.pick(TOPICS)
            }),
            payload: payload(rng),
            qos: qos(rng),
            retain: rng.chance(1, 4),
            properties: props,
        }
    });
    let client_id = if rng.chance(1, 30) {
        word(rng, 30)
    } else {
        text(rng.pick(CLIENT_IDS))
    };
    let username = rng.chance(1, 8).then(|| word(rng, 8));
    // v3 without a user name: a decode error (3.1.1 MQTT-3.1.2-22), rarely.
    let password = (username.is_some() || v5 || rng.chance(1, 20))
        .then_some(())
        .filter(|()| rng.chance(1, 4))
        .map(|()| Bytes::from(rng.bytes_up_to(0, 8)));
    Connect {
        protocol: version,
        clean_start: rng.chance(1, 3),
        keep_alive: match rng.below(6) {
            0 | 1 => 0,
            2 => rng.range(1, u64::from(u16::MAX)) as u16,
            _ => rng.range(1, 20) as u16,
        },
        client_id,
        will,
        username,
        password,
        properties,
    }
}

/// A QoS, uniformly.
pub fn qos(rng: &mut Rng) -> QoS {
    match rng.below(3) {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

/// A PUBLISH from the client; its aliases go a little beyond what any
/// server policy here grants.
pub fn client_publish(rng: &mut Rng, version: ProtocolVersion) -> Publish {
    let qos = qos(rng);
    let mut publish = Publish {
        dup: qos != QoS::AtMostOnce && rng.chance(1, 5),
        qos,
        retain: rng.chance(1, 5),
        topic: text(rng.pick(TOPICS)),
        packet_id: if qos == QoS::AtMostOnce {
            0
        } else {
            packet_id(rng)
        },
        properties: Properties::default().into(),
        payload: payload(rng),
    };
    if version.is_v5() {
        let mut props = Properties::default();
        message_properties(rng, &mut props);
        if rng.chance(1, 3) {
            props.topic_alias = Some(match rng.below(8) {
                0 => u16::MAX,
                _ => rng.range(1, 12) as u16,
            });
            if rng.coin() {
                // Use an alias set before (or not).
                publish.topic = Bytes::new();
            }
        }
        if rng.chance(1, 40) {
            // A client must not send one (MQTT-3.3.4-6).
            props
                .subscription_identifiers
                .push(rng.range(1, 100) as u32);
        }
        publish.properties = props.into();
    }
    publish
}

fn reason_or_user(rng: &mut Rng, props: &mut Properties) {
    if rng.chance(1, 10) {
        props.reason_string = Some(word(rng, 20));
    }
    user_properties(rng, props);
}

/// An acknowledgement of a server PUBLISH, for `id`.
pub fn ack(rng: &mut Rng, version: ProtocolVersion, kind: u8, id: u16) -> Packet {
    let v5 = version.is_v5();
    let mut properties = Properties::default();
    if v5 {
        reason_or_user(rng, &mut properties);
    }
    let code = |rng: &mut Rng, codes: &[u8]| {
        if v5 {
            ReasonCode(rng.pick(codes))
        } else {
            ReasonCode::SUCCESS
        }
    };
    match kind {
        0 => Packet::PubAck(PubAck {
            packet_id: id,
            code: code(rng, PUBACK_CODES),
            properties,
        }),
        1 => Packet::PubRec(PubRec {
            packet_id: id,
            code: code(rng, PUBACK_CODES),
            properties,
        }),
        2 => Packet::PubComp(PubComp {
            packet_id: id,
            code: code(rng, &[0x00, 0x00, 0x92]),
            properties,
        }),
        _ => Packet::PubRel(PubRel {
            packet_id: id,
            code: code(rng, &[0x00, 0x00, 0x92]),
            properties,
        }),
    }
}

fn options(rng: &mut Rng, version: ProtocolVersion) -> SubscriptionOptions {
    let v5 = version.is_v5();
    SubscriptionOptions {
        qos: qos(rng),
        no_local: v5 && rng.chance(1, 6),
        retain_as_published: v5 && rng.chance(1, 4),
        retain_handling: if v5 {
            match rng.below(3) {
                0 => RetainHandling::SendAtSubscribe,
                1 => RetainHandling::SendAtSubscribeIfNew,
                _ => RetainHandling::DoNotSend,
            }
        } else {
            RetainHandling::SendAtSubscribe
        },
    }
}

fn filter(rng: &mut Rng) -> Bytes {
    if rng.chance(1, 30) {
        let mut w = word(rng, 12).to_vec();
        if w.is_empty() {
            w.push(b'+');
        }
        return Bytes::from(w);
    }
    text(rng.pick(FILTERS))
}

/// Any packet a client might send after CONNECT, weighted towards the
/// flows that build state.
pub fn client_packet(rng: &mut Rng, version: ProtocolVersion) -> Packet {
    let v5 = version.is_v5();
    match rng.weighted(&[30, 10, 6, 6, 6, 4, 14, 5, 5, 4, 3, 2, 2]) {
        0 => Packet::Publish(client_publish(rng, version)),
        1 => {
            let id = packet_id(rng);
            ack(rng, version, 0, id)
        }
        2 => {
            let id = packet_id(rng);
            ack(rng, version, 1, id)
        }
        3 => {
            let id = packet_id(rng);
            ack(rng, version, 2, id)
        }
        4 => {
            let id = packet_id(rng);
            ack(rng, version, 3, id)
        }
        5 => Packet::PingReq,
        6 => {
            let mut properties = Properties::default();
            if v5 {
                match rng.below(10) {
                    0..=2 => properties
                        .subscription_identifiers
                        .push(rng.range(1, 268_435_455) as u32),
                    // Two identifiers: a protocol error (3.8.2.1.2).
                    3 => properties.subscription_identifiers.extend([1, 2]),
                    _ => {}
                }
                user_properties(rng, &mut properties);
            }
            let filters = (0..rng.size(1, 4))
                .map(|_| (filter(rng), options(rng, version)))
                .collect();
            Packet::Subscribe(Subscribe {
                packet_id: packet_id(rng),
                properties,
                filters,
            })
        }
        7 => {
            let mut properties = Properties::default();
            if v5 {
                user_properties(rng, &mut properties);
            }
            Packet::Unsubscribe(Unsubscribe {
                packet_id: packet_id(rng),
                properties,
                filters: (0..rng.size(1, 3)).map(|_| filter(rng)).collect(),
            })
        }
        8 => {
            let mut properties = Properties::default();
            if v5 {
                if rng.chance(1, 3) {
                    properties.session_expiry_interval = Some(match rng.below(3) {
                        0 => 0,
                        1 => u32::MAX,
                        _ => rng.range(1, 10) as u32,
                    });
                }
                reason_or_user(rng, &mut properties);
                if rng.chance(1, 20) {
                    properties.server_reference = Some(word(rng, 10));
                }
            }
            Packet::Disconnect(Disconnect {
                code: ReasonCode(if v5 {
                    rng.pick(CLIENT_DISCONNECT_CODES)
                } else {
                    0
                }),
                properties,
            })
        }
        9 => {
            let mut properties = Properties::default();
            if rng.coin() {
                properties.authentication_method = Some(text("SCRAM-SHA-1"));
                if rng.coin() {
                    properties.authentication_data = Some(Bytes::from(rng.bytes(8)));
                }
            }
            reason_or_user(rng, &mut properties);
            Packet::Auth(Auth {
                code: ReasonCode(rng.pick(&[0x00, 0x18, 0x19])),
                properties,
            })
        }
        10 => Packet::Connect(Box::new(connect(rng, version))),
        11 => match rng.below(4) {
            0 => Packet::PingResp,
            1 => Packet::ConnAck(ConnAck {
                session_present: false,
                code: ReasonCode::SUCCESS,
                properties: Properties::default(),
            }),
            2 => Packet::SubAck(SubAck {
                packet_id: packet_id(rng),
                properties: Properties::default(),
                codes: vec![ReasonCode::GRANTED_QOS_1],
            }),
            _ => Packet::UnsubAck(UnsubAck {
                packet_id: packet_id(rng),
                properties: Properties::default(),
                codes: if v5 {
                    vec![ReasonCode::SUCCESS]
                } else {
                    Vec::new()
                },
            }),
        },
        _ => {
            // A packet with an id 0 (MQTT-2.2.1-3) or QoS 0 with DUP.
            let mut publish = client_publish(rng, version);
            if publish.qos == QoS::AtMostOnce {
                publish.dup = true;
            } else {
                publish.packet_id = 0;
            }
            Packet::Publish(publish)
        }
    }
}

/// The bytes of `packet` in `version`. A packet the version cannot carry
/// (AUTH before v5) is written as its bare fixed header, which the server
/// must refuse all the same.
pub fn encode(packet: &Packet, version: ProtocolVersion) -> Vec<u8> {
    let mut buf = BytesMut::new();
    match packet.encode(version, &mut buf) {
        Ok(()) => buf.to_vec(),
        Err(_) if matches!(packet, Packet::Auth(_)) => vec![0xF0, 0x00],
        Err(e) => panic!("generator built a packet that does not encode: {e}: {packet:?}"),
    }
}

/// A message as routing hands it to a session: a valid topic name, any
/// QoS (the delivery picks its own), no alias, no subscription ids.
pub fn message(rng: &mut Rng) -> Publish {
    let mut props = Properties::default();
    if rng.coin() {
        message_properties(rng, &mut props);
    }
    Publish {
        dup: false,
        qos: qos(rng),
        retain: rng.chance(1, 4),
        topic: text(rng.pick(TOPICS)),
        packet_id: 0,
        properties: props.into(),
        payload: payload(rng),
    }
}

/// Subscription identifiers routing may attach to a delivery.
pub fn subscription_ids(rng: &mut Rng) -> Vec<u32> {
    match rng.below(6) {
        0 => vec![rng.range(1, 268_435_455) as u32],
        1 => vec![1, rng.range(2, 20) as u32],
        _ => Vec::new(),
    }
}
