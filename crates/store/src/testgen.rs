//! Test-only event generators: small pools of ids so that generated
//! sequences hit the same sessions, messages and packet ids often.

use crate::event::{Event, WillRecord};
use bytes::Bytes;
use proptest::prelude::*;

fn pick(pool: &'static [&'static str]) -> impl Strategy<Value = Bytes> {
    proptest::sample::select(pool).prop_map(|s| Bytes::from_static(s.as_bytes()))
}

fn client_id() -> impl Strategy<Value = Bytes> {
    pick(&["a", "client-b", ""])
}

/// None (anonymous, or identities not kept) as often as a name; the empty
/// name is a name, not None.
fn username() -> impl Strategy<Value = Option<Bytes>> {
    proptest::option::of(pick(&["alice", "bob", ""]))
}

fn topic() -> impl Strategy<Value = Bytes> {
    pick(&["t", "a/b", "x/y/z"])
}

fn blob() -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..12).prop_map(Bytes::from)
}

fn time() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..200_000, Just(u64::MAX)]
}

fn secs() -> impl Strategy<Value = u32> {
    prop_oneof![Just(0), 1u32..200, Just(u32::MAX)]
}

fn will() -> impl Strategy<Value = Option<WillRecord>> {
    proptest::option::of((topic(), blob(), 0u8..=2, any::<bool>(), blob()).prop_map(
        |(topic, payload, qos, retain, properties)| WillRecord {
            topic,
            payload,
            qos,
            retain,
            properties,
        },
    ))
}

/// Any event, from small pools.
pub(crate) fn event() -> impl Strategy<Value = Event> {
    let msg_id = 0u64..4;
    let packet_id = 1u16..3;
    // Weighted so that sequences often reach messages in flight and
    // released, which need a session, a queued message and a send first.
    prop_oneof![
        3 => (client_id(), username(), 3u8..=5, secs(), will(), secs()).prop_map(
            |(client_id, username, protocol, expiry_secs, will, will_delay_secs)| {
                Event::SessionPut {
                    client_id,
                    username,
                    protocol,
                    expiry_secs,
                    will,
                    will_delay_secs,
                }
            }
        ),
        1 => (client_id(), time()).prop_map(|(client_id, at_unix_ms)| Event::SessionLeft {
            client_id,
            at_unix_ms
        }),
        1 => client_id().prop_map(|client_id| Event::SessionGone { client_id }),
        1 => client_id().prop_map(|client_id| Event::WillGone { client_id }),
        1 => (client_id(), topic(), any::<u8>(), any::<u32>()).prop_map(
            |(client_id, filter, options, id)| Event::SubscriptionPut {
                client_id,
                filter,
                options,
                id,
            }
        ),
        1 => (client_id(), topic())
            .prop_map(|(client_id, filter)| Event::SubscriptionGone { client_id, filter }),
        4 => (
            client_id(),
            msg_id.clone(),
            topic(),
            blob(),
            0u8..=2,
            any::<bool>(),
            blob(),
            proptest::option::of(time()),
        )
            .prop_map(
                |(client_id, msg_id, topic, payload, qos, retain, properties, expires)| {
                    Event::MessageQueued {
                        client_id,
                        msg_id,
                        topic,
                        payload,
                        qos,
                        retain,
                        properties,
                        expires_at_unix_ms: expires,
                    }
                }
            ),
        4 => (client_id(), msg_id.clone(), packet_id.clone()).prop_map(
            |(client_id, msg_id, packet_id)| Event::MessageSent {
                client_id,
                msg_id,
                packet_id,
            }
        ),
        2 => (client_id(), packet_id.clone()).prop_map(|(client_id, packet_id)| {
            Event::MessageReleased {
                client_id,
                packet_id,
            }
        }),
        2 => (client_id(), packet_id.clone()).prop_map(|(client_id, packet_id)| Event::MessageDone {
            client_id,
            packet_id
        }),
        1 => (client_id(), msg_id)
            .prop_map(|(client_id, msg_id)| Event::MessageDropped { client_id, msg_id }),
        1 => (client_id(), packet_id.clone()).prop_map(|(client_id, packet_id)| {
            Event::InboundPending {
                client_id,
                packet_id,
            }
        }),
        1 => (client_id(), packet_id).prop_map(|(client_id, packet_id)| Event::InboundDone {
            client_id,
            packet_id
        }),
        1 => (
            topic(),
            blob(),
            0u8..=2,
            blob(),
            proptest::option::of(time())
        )
            .prop_map(
                |(topic, payload, qos, properties, expires)| Event::RetainedPut {
                    topic,
                    payload,
                    qos,
                    properties,
                    expires_at_unix_ms: expires,
                }
            ),
        1 => topic().prop_map(|topic| Event::RetainedGone { topic }),
    ]
}

/// One event of every kind, with every optional field present somewhere.
pub(crate) fn one_of_each() -> Vec<Event> {
    let b = |s: &'static str| Bytes::from_static(s.as_bytes());
    let client_id = b("client-1");
    vec![
        Event::SessionPut {
            client_id: client_id.clone(),
            username: Some(b("alice")),
            protocol: 5,
            expiry_secs: 3600,
            will: Some(WillRecord {
                topic: b("will/topic"),
                payload: b("gone"),
                qos: 2,
                retain: true,
                properties: Bytes::from_static(&[0x01, 0x01]),
            }),
            will_delay_secs: 30,
        },
        Event::SessionLeft {
            client_id: client_id.clone(),
            at_unix_ms: 1_700_000_000_123,
        },
        Event::SessionGone {
            client_id: client_id.clone(),
        },
        Event::WillGone {
            client_id: client_id.clone(),
        },
        Event::SubscriptionPut {
            client_id: client_id.clone(),
            filter: b("sensors/+/temp"),
            options: 0b0010_1110,
            id: 268_435_455,
        },
        Event::SubscriptionGone {
            client_id: client_id.clone(),
            filter: b("sensors/+/temp"),
        },
        Event::MessageQueued {
            client_id: client_id.clone(),
            msg_id: u64::MAX - 1,
            topic: b("sensors/1/temp"),
            payload: b("21.5"),
            qos: 1,
            retain: false,
            properties: Bytes::from_static(&[0x02, 0, 0, 0, 10]),
            expires_at_unix_ms: Some(1_700_000_010_000),
        },
        Event::MessageSent {
            client_id: client_id.clone(),
            msg_id: 7,
            packet_id: 65535,
        },
        Event::MessageReleased {
            client_id: client_id.clone(),
            packet_id: 1,
        },
        Event::MessageDone {
            client_id: client_id.clone(),
            packet_id: 2,
        },
        Event::MessageDropped {
            client_id: client_id.clone(),
            msg_id: 8,
        },
        Event::InboundPending {
            client_id: client_id.clone(),
            packet_id: 3,
        },
        Event::InboundDone {
            client_id,
            packet_id: 4,
        },
        Event::RetainedPut {
            topic: b("status"),
            payload: Bytes::new(),
            qos: 0,
            properties: Bytes::new(),
            expires_at_unix_ms: None,
        },
        Event::RetainedGone { topic: b("status") },
    ]
}
