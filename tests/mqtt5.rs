//! Black-box MQTT 5 feature tests: CONNACK capability properties, request /
//! response and user properties passing through (live, queued, retained,
//! rumqttc both ways), Message Expiry (retained and queued messages expire,
//! delivered ones carry the remaining interval), topic aliases both ways,
//! shared subscriptions over both shards (spread, no loss when members
//! leave, one share name over different filters, a shared next to an
//! ordinary subscription), Subscription Identifiers (merged over six
//! overlapping subscriptions, refused on a client PUBLISH, following
//! Subscription Identifiers Available), and No Local.
//!
//! Expiry is observed by polling with a deadline: a fresh subscription (or a
//! fresh offline session) is tried every `POLL_GAP` until the message no
//! longer comes, and must stop coming before `expiry + EXPIRY_SLACK`.

mod common;

use common::*;
use std::time::{Duration, Instant};

/// How long "nothing more arrives" is watched where no sentinel can prove it.
const QUIET: Duration = Duration::from_millis(300);
/// Gap between two expiry probes.
const POLL_GAP: Duration = Duration::from_millis(150);
/// Allowance past an expiry interval (whole-second rounding, a busy machine).
const EXPIRY_SLACK: Duration = Duration::from_secs(3);

/// Ends a connection with DISCONNECT 0x00 and waits until the broker closed
/// it.
fn go_offline(c: &mut RawClient) {
    c.send(&disconnect_v5(0)).expect("send DISCONNECT");
    let got = c.expect_closed(PROMPT, "close after DISCONNECT");
    assert!(got.is_empty(), "packets after DISCONNECT: {got:?}");
}

/// A v5 CONNECT keeping its session for a minute.
fn session(id: &str, clean: bool) -> ConnectOpts {
    ConnectOpts::v5(id).clean(clean).session_expiry(60)
}

/// Runs `probe` every `POLL_GAP` until it answers true; panics when that
/// has not happened within `limit`.
fn poll_probe(limit: Duration, what: &str, mut probe: impl FnMut() -> bool) {
    let start = Instant::now();
    let mut last: Option<Instant> = None;
    let done = poll_until(limit, || {
        if last.is_some_and(|t| t.elapsed() < POLL_GAP) {
            return false;
        }
        last = Some(Instant::now());
        probe()
    });
    assert!(
        done,
        "{what}: still not true after {:?} (limit {limit:?})",
        start.elapsed()
    );
}

// ---------------------------------------------------------------------------
// CONNACK capabilities
// ---------------------------------------------------------------------------

/// Asserts a capability flag is absent (meaning 1) or 1.
fn assert_available(props: &Props, id: u8, name: &str) {
    let v = props.int(id);
    assert!(
        v.is_none() || v == Some(1),
        "{name} must be absent or 1 (the feature works): {props:?}"
    );
}

#[test]
fn connack_capability_properties_tell_the_truth() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let (mut c, ack) = RawClient::connected(addr, &ConnectOpts::v5(&id_on_shard("cap-", 0)));
    let props = &ack.props;
    assert_available(props, PROP_RETAIN_AVAILABLE, "Retain Available");
    assert_available(
        props,
        PROP_WILDCARD_AVAILABLE,
        "Wildcard Subscription Available",
    );
    assert_available(
        props,
        PROP_SHARED_AVAILABLE,
        "Shared Subscription Available",
    );
    assert_available(
        props,
        PROP_SUBSCRIPTION_ID_AVAILABLE,
        "Subscription Identifiers Available",
    );
    assert_eq!(
        props.int(PROP_TOPIC_ALIAS_MAXIMUM),
        Some(64),
        "Topic Alias Maximum = --topic-alias-maximum default: {props:?}"
    );
    assert_eq!(
        props.int(PROP_MAXIMUM_QOS),
        None,
        "Maximum QoS 2 is announced by absence: {props:?}"
    );
    assert_eq!(
        props.int(PROP_RECEIVE_MAXIMUM),
        Some(128),
        "Receive Maximum = --receive-maximum default: {props:?}"
    );
    // What was announced works: wildcard, shared and identified
    // subscriptions are granted, and a retained message is kept.
    assert_eq!(
        c.subscribe_v5(1, Some(3), &[("cap/+/x", 2), ("$share/g/capshared/#", 2)]),
        [2, 2]
    );
    c.send(&publish_packet("cap/r", b"kept", 0, 0, true, true))
        .unwrap();
    c.ping();
    let (mut late, _) = RawClient::connected(addr, &ConnectOpts::v5(&id_on_shard("cap-l", 1)));
    assert_eq!(late.subscribe(1, &[("cap/r", 0)]), [0]);
    let p = late.expect_publish(PROMPT);
    assert_eq!((&p.payload[..], p.retain), (&b"kept"[..], true));

    let limited = start(&[
        "--topic-alias-maximum",
        "5",
        "--max-qos",
        "1",
        "--receive-maximum",
        "10",
    ]);
    let (_c, ack) = RawClient::connected(limited.local_addr(), &ConnectOpts::v5("cap-limited"));
    assert_eq!(
        ack.props.int(PROP_TOPIC_ALIAS_MAXIMUM),
        Some(5),
        "{:?}",
        ack.props
    );
    assert_eq!(ack.props.int(PROP_MAXIMUM_QOS), Some(1), "{:?}", ack.props);
    assert_eq!(
        ack.props.int(PROP_RECEIVE_MAXIMUM),
        Some(10),
        "{:?}",
        ack.props
    );
}

// ---------------------------------------------------------------------------
// Properties passing through
// ---------------------------------------------------------------------------

#[test]
fn request_response_and_user_properties_pass_through_unchanged() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let mut subs: Vec<Receiver> = [0, 1]
        .into_iter()
        .map(|shard| {
            let (mut r, _) =
                Receiver::connect(addr, &ConnectOpts::v5(&id_on_shard("pp-sub-", shard)));
            assert_eq!(r.raw.subscribe(1, &[("pp/#", 2)]), [2]);
            r
        })
        .collect();
    // A v3 subscriber gets the same message without any property bytes.
    let (mut v3, _) = Receiver::connect(addr, &ConnectOpts::v3(&id_on_shard("pp-v3-", 1)));
    assert_eq!(v3.raw.subscribe(1, &[("pp/#", 2)]), [2]);
    // An offline session also keeps them.
    let away = id_on_shard("pp-away-", 1);
    let (mut a, _) = RawClient::connected(addr, &session(&away, true));
    assert_eq!(a.subscribe(1, &[("pp/#", 2)]), [2]);
    go_offline(&mut a);

    let (mut publisher, _) = RawClient::connected(addr, &ConnectOpts::v5(&id_on_shard("pp-p", 0)));
    let props = message_props();
    publisher
        .send(&publish_packet_full(
            "pp/q0",
            b"0",
            0,
            0,
            false,
            false,
            Some(&props),
        ))
        .unwrap();
    publisher.publish1_props("pp/q1", b"1", 1, &props);
    publisher.publish2("pp/q2", b"2", 2, &props);
    // Retained, with its properties.
    publisher
        .send(&publish_packet_full(
            "pp/r",
            b"r",
            1,
            3,
            true,
            false,
            Some(&props),
        ))
        .unwrap();
    assert_eq!(
        publisher.expect_packet(PROMPT, "PUBACK").ack(PUBACK),
        (3, 0)
    );

    for (shard, sub) in subs.iter_mut().enumerate() {
        for topic in ["pp/q0", "pp/q1", "pp/q2", "pp/r"] {
            let p = sub.next(PROMPT);
            assert_eq!(p.topic, topic);
            assert_message_props(&p.props, &format!("live {topic} to shard {shard}"));
        }
        sub.finish();
    }
    for (topic, payload) in [
        ("pp/q0", "0"),
        ("pp/q1", "1"),
        ("pp/q2", "2"),
        ("pp/r", "r"),
    ] {
        let p = v3.next(PROMPT);
        assert_eq!(
            (&p.topic[..], &p.payload[..]),
            (topic, payload.as_bytes()),
            "v3 delivery of a v5 message with properties"
        );
    }
    v3.finish();
    let (a, ack) = RawClient::connected(addr, &session(&away, false));
    assert!(ack.session_present);
    let mut a = Receiver::new(a);
    for topic in ["pp/q1", "pp/q2", "pp/r"] {
        let p = a.next(PROMPT);
        assert_eq!(p.topic, topic);
        assert_message_props(&p.props, &format!("queued {topic}"));
    }
    a.finish();
    let (mut late, _) = RawClient::connected(addr, &ConnectOpts::v5(&id_on_shard("pp-l", 0)));
    assert_eq!(late.subscribe(1, &[("pp/r", 1)]), [1]);
    let p = late.expect_publish(PROMPT);
    assert!(p.retain);
    assert_message_props(&p.props, "retained on subscribe");
}

#[test]
fn rumqttc_v5_request_response_properties_round_trip() {
    use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::Event;
    let broker = start(&[]);
    let addr = broker.local_addr();
    // A responder (rumqttc, shard 1) serves requests from a raw requester
    // (shard 0) and answers on the Response Topic with the Correlation Data.
    let (mut responder, _) = V5Client::connect(addr, &id_on_shard("rr-resp-", 1), |_| {});
    responder.subscribe("rr/request", QoS::AtLeastOnce);
    let (mut requester, _) =
        RawClient::connected(addr, &ConnectOpts::v5(&id_on_shard("rr-req-", 0)));
    assert_eq!(requester.subscribe(1, &[("rr/reply/+", 1)]), [1]);
    requester.publish1_props("rr/request", b"ping?", 1, &message_props());

    let req = responder.pump_until(PROMPT, "request", |e| match e {
        Event::Incoming(Packet::Publish(p)) => Some(p.clone()),
        _ => None,
    });
    let props = req.properties.expect("request properties");
    assert_eq!(props.response_topic.as_deref(), Some("reply/here"));
    assert_eq!(
        props.correlation_data.as_deref(),
        Some(&b"\x00\x01corr"[..])
    );
    assert_eq!(props.content_type.as_deref(), Some("text/plain"));
    assert_eq!(props.payload_format_indicator, Some(1));
    assert_eq!(
        props.user_properties,
        [
            ("k1".to_string(), "v1".to_string()),
            ("k1".to_string(), "v2".to_string())
        ]
    );
    let reply = PublishProperties {
        correlation_data: props.correlation_data.clone(),
        user_properties: vec![("status".into(), "ok".into())],
        response_topic: Some("rr/reply/again".into()),
        ..Default::default()
    };
    responder
        .client
        .publish_with_properties(
            "rr/reply/1",
            QoS::AtLeastOnce,
            false,
            b"pong".to_vec(),
            reply,
        )
        .expect("queue reply");
    responder.pump_until(PROMPT, "reply PUBACK", |e| match e {
        Event::Incoming(Packet::PubAck(_)) => Some(()),
        _ => None,
    });
    let p = requester.expect_publish(PROMPT);
    assert_eq!((&p.topic[..], &p.payload[..]), ("rr/reply/1", &b"pong"[..]));
    assert_eq!(p.props.bin(0x09).as_deref(), Some(&b"\x00\x01corr"[..]));
    assert_eq!(p.props.bin(0x08).as_deref(), Some(&b"rr/reply/again"[..]));
    assert_eq!(
        p.props.user_properties(),
        [(b"status".to_vec(), b"ok".to_vec())]
    );
}

// ---------------------------------------------------------------------------
// Message expiry
// ---------------------------------------------------------------------------

#[test]
fn delivered_messages_carry_the_remaining_expiry_interval() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let (mut sub, _) = Receiver::connect(addr, &ConnectOpts::v5(&id_on_shard("rem-s-", 1)));
    assert_eq!(sub.raw.subscribe(1, &[("rem/#", 1)]), [1]);
    let away = id_on_shard("rem-away-", 0);
    let (mut a, _) = RawClient::connected(addr, &session(&away, true));
    assert_eq!(a.subscribe(1, &[("rem/#", 1)]), [1]);
    go_offline(&mut a);

    let (mut publisher, _) = RawClient::connected(addr, &ConnectOpts::v5(&id_on_shard("rem-p", 0)));
    publisher.publish1_props("rem/t", b"expiring", 1, &expiry_prop(60));
    publisher.publish1_props("rem/t", b"forever", 2, &[]);
    let p = sub.next(PROMPT);
    let left = p.props.int(PROP_MESSAGE_EXPIRY);
    assert!(
        matches!(left, Some(55..=60)),
        "live delivery: remaining expiry {left:?} (MQTT-3.3.2-6)"
    );
    let p = sub.next(PROMPT);
    assert_eq!(p.props.int(PROP_MESSAGE_EXPIRY), None, "no expiry was set");

    let (a, _) = RawClient::connected(addr, &session(&away, false));
    let mut a = Receiver::new(a);
    let p = a.next(PROMPT);
    assert_eq!(p.payload, b"expiring");
    let left = p.props.int(PROP_MESSAGE_EXPIRY);
    assert!(
        matches!(left, Some(1..=60)),
        "queued: remaining expiry {left:?}"
    );
    assert_eq!(a.next(PROMPT).props.int(PROP_MESSAGE_EXPIRY), None);

    // Retained with expiry: the new subscriber sees what is left.
    publisher
        .send(&publish_packet_full(
            "rem/r",
            b"r",
            0,
            0,
            true,
            false,
            Some(&expiry_prop(30)),
        ))
        .unwrap();
    publisher.ping();
    let (mut late, _) = RawClient::connected(addr, &ConnectOpts::v5(&id_on_shard("rem-l", 1)));
    assert_eq!(late.subscribe(1, &[("rem/r", 0)]), [0]);
    let p = late.expect_publish(PROMPT);
    let left = p.props.int(PROP_MESSAGE_EXPIRY);
    assert!(
        matches!(left, Some(25..=30)),
        "retained: remaining expiry {left:?}"
    );
}

#[test]
fn expired_retained_message_is_not_delivered() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    for owner in [0, 1] {
        let topic = topic_on_shard(&format!("xr/{owner}/"), owner);
        let control = topic_on_shard(&format!("xrc/{owner}/"), owner);
        // On the owner shard, so both are stored before the PUBACK.
        let (mut publisher, _) =
            RawClient::connected(addr, &ConnectOpts::v5(&id_on_shard("xr-p-", owner)));
        publisher
            .send(&publish_packet(&control, b"control", 0, 0, true, true))
            .unwrap();
        publisher
            .send(&publish_packet_full(
                &topic,
                b"short",
                1,
                1,
                true,
                false,
                Some(&expiry_prop(1)),
            ))
            .unwrap();
        assert_eq!(
            publisher.expect_packet(PROMPT, "PUBACK").ack(PUBACK),
            (1, 0)
        );
        let published = Instant::now();

        let mut n = 0;
        let mut probe = || {
            n += 1;
            let id = id_on_shard(&format!("xr-s{owner}-{n}-"), n % 2);
            let (mut c, _) = RawClient::connected(addr, &ConnectOpts::v5(&id));
            let got = retained_on(&mut c, 1, &topic, 0, &control);
            if let Some(p) = got.first() {
                assert_eq!(got.len(), 1, "{got:?}");
                let left = p.props.int(PROP_MESSAGE_EXPIRY);
                assert!(matches!(left, Some(0..=1)), "remaining expiry {left:?}");
            }
            got.is_empty()
        };
        // Right after it was published it is there ...
        assert!(!probe(), "owner {owner}: retained message missing at once");
        // ... and it stops being delivered once expired (MQTT-3.3.2-5).
        poll_probe(
            Duration::from_secs(1) + EXPIRY_SLACK,
            &format!("owner {owner}: retained message expired"),
            probe,
        );
        assert!(
            published.elapsed() >= Duration::from_millis(500),
            "owner {owner}: expired after only {:?}",
            published.elapsed()
        );
    }
}

#[test]
fn expired_queued_message_is_not_delivered() {
    const SESSIONS: usize = 30;
    let broker = start(&[]);
    let addr = broker.local_addr();
    // Many offline sessions hold the same queue; each probe spends one.
    let ids: Vec<String> = (0..SESSIONS)
        .map(|i| id_on_shard(&format!("xq{i}-"), i % 2))
        .collect();
    for id in &ids {
        let (mut c, _) = RawClient::connected(addr, &session(id, true));
        assert_eq!(c.subscribe(1, &[("xq/t", 1)]), [1]);
        go_offline(&mut c);
    }
    let (mut publisher, _) = RawClient::connected(addr, &ConnectOpts::v3("xq-pub"));
    let (mut publisher5, _) = RawClient::connected(addr, &ConnectOpts::v5("xq-pub5"));
    publisher5.publish1_props("xq/t", b"short", 1, &expiry_prop(1));
    publisher.publish1("xq/t", b"long", 2);
    let published = Instant::now();

    let mut next = ids.iter();
    let mut probe = || {
        let id = next.next().expect("ran out of offline sessions to probe");
        let (c, ack) = RawClient::connected(addr, &session(id, false));
        assert!(ack.session_present, "{id}");
        let mut c = Receiver::new(c);
        let p = c.next(PROMPT);
        if p.payload == b"long" {
            return true;
        }
        assert_eq!(p.payload, b"short");
        let left = p.props.int(PROP_MESSAGE_EXPIRY);
        assert!(matches!(left, Some(0..=1)), "remaining expiry {left:?}");
        assert_eq!(c.next(PROMPT).payload, b"long");
        false
    };
    assert!(!probe(), "queued message missing at once");
    poll_probe(
        Duration::from_secs(1) + EXPIRY_SLACK,
        "queued message expired (MQTT-3.3.2-5)",
        probe,
    );
    assert!(
        published.elapsed() >= Duration::from_millis(500),
        "expired after only {:?}",
        published.elapsed()
    );
}

#[test]
fn queued_message_expiring_behind_a_full_window_is_not_sent() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let mut opts = ConnectOpts::v5(&id_on_shard("wx-", 1));
    opts.extra_props = u16_prop(PROP_RECEIVE_MAXIMUM, 1);
    let (mut sub, _) = RawClient::connected(addr, &opts);
    assert_eq!(sub.subscribe(1, &[("wx/t", 1)]), [1]);
    let (mut publisher, _) = RawClient::connected(addr, &ConnectOpts::v5(&id_on_shard("wx-p", 0)));
    publisher.publish1_props("wx/t", b"first", 1, &[]);
    publisher.publish1_props("wx/t", b"short", 2, &expiry_prop(1));
    publisher.publish1_props("wx/t", b"last", 3, &[]);
    let (first, _) = sub.expect_publish_raw(PROMPT);
    assert_eq!(first.payload, b"first");
    // The window (Receive Maximum 1) stays full until "short" expired.
    sub.expect_silence(
        Duration::from_secs(1) + Duration::from_millis(1500),
        "window of one",
    );
    sub.send(&puback_packet(first.packet_id)).unwrap();
    let (next, _) = sub.expect_publish_raw(PROMPT);
    assert_eq!(
        next.payload, b"last",
        "an expired message was sent after waiting (MQTT-3.3.2-5): {next:?}"
    );
}

// ---------------------------------------------------------------------------
// Topic aliases
// ---------------------------------------------------------------------------

/// A v5 QoS 0 PUBLISH with a Topic Alias.
fn aliased(topic: &str, payload: &[u8], alias: u16) -> Vec<u8> {
    publish_packet_full(topic, payload, 0, 0, false, false, Some(&alias_prop(alias)))
}

/// Sends `bytes` on a fresh v5 connection and expects DISCONNECT `reason`.
fn expect_refused(
    addr: std::net::SocketAddr,
    id: &str,
    packets: &[Vec<u8>],
    reason: u8,
    why: &str,
) {
    let (mut c, _) = RawClient::connected(addr, &ConnectOpts::v5(id));
    for p in packets {
        c.send(p).unwrap();
    }
    let got = c.expect_closed(PROMPT, why);
    assert!(
        matches!(got.last(), Some(p) if p.is_disconnect(reason)),
        "{why}: expected DISCONNECT {reason:#04x}, got {got:?}"
    );
}

#[test]
fn inbound_topic_aliases_route_and_bad_ones_disconnect() {
    let broker = start(&["--topic-alias-maximum", "5"]);
    let addr = broker.local_addr();
    let (mut sub, _) = Receiver::connect(addr, &ConnectOpts::v5(&id_on_shard("tai-s-", 1)));
    assert_eq!(sub.raw.subscribe(1, &[("ta/#", 1)]), [1]);
    let pub_id = id_on_shard("tai-p-", 0);
    let (mut publisher, ack) = RawClient::connected(addr, &session(&pub_id, true));
    assert_eq!(ack.props.int(PROP_TOPIC_ALIAS_MAXIMUM), Some(5));
    publisher.send(&aliased("ta/x", b"a", 1)).unwrap();
    publisher.send(&aliased("", b"b", 1)).unwrap();
    publisher.send(&aliased("ta/y", b"c", 1)).unwrap(); // re-mapped
    publisher.send(&aliased("", b"d", 1)).unwrap();
    publisher.send(&aliased("ta/z", b"e", 5)).unwrap(); // the maximum
    publisher
        .send(&publish_packet_full(
            "",
            b"f",
            1,
            7,
            false,
            false,
            Some(&alias_prop(5)),
        ))
        .unwrap();
    assert_eq!(
        publisher.expect_packet(PROMPT, "PUBACK").ack(PUBACK),
        (7, 0)
    );
    publisher.send(&aliased("", b"g", 1)).unwrap();
    publisher.ping();
    let want = [
        ("ta/x", "a"),
        ("ta/x", "b"),
        ("ta/y", "c"),
        ("ta/y", "d"),
        ("ta/z", "e"),
        ("ta/z", "f"),
        ("ta/y", "g"),
    ];
    for (topic, payload) in want {
        let p = sub.next(PROMPT);
        assert_eq!(
            (&p.topic[..], &p.payload[..]),
            (topic, payload.as_bytes()),
            "alias resolved"
        );
        assert!(
            !p.props.has(PROP_TOPIC_ALIAS),
            "alias sent to a client that allowed none (MQTT-3.3.2-10): {p:?}"
        );
    }

    // Aliases live only as long as their connection (MQTT-3.3.2-7): on a
    // new connection of the same session alias 1 is unknown.
    go_offline(&mut publisher);
    expect_refused(
        addr,
        &pub_id,
        &[aliased("", b"stale", 1)],
        0x82,
        "alias from an earlier connection",
    );
    expect_refused(
        addr,
        "tai-0",
        &[aliased("ta/x", b"x", 0)],
        0x94,
        "alias 0 (MQTT-3.3.2-8)",
    );
    expect_refused(
        addr,
        "tai-6",
        &[aliased("ta/x", b"x", 6)],
        0x94,
        "alias above Topic Alias Maximum (MQTT-3.3.2-9)",
    );
    expect_refused(
        addr,
        "tai-u",
        &[aliased("", b"x", 2)],
        0x82,
        "unmapped alias",
    );
    // Nothing of the refused ones was routed.
    sub.expect_no_publish(QUIET, "refused aliased PUBLISHes");
    assert_serves(addr);

    let none = start(&["--topic-alias-maximum", "0"]);
    let (_c, ack) = RawClient::connected(none.local_addr(), &ConnectOpts::v5("tai-n"));
    let tam = ack.props.int(PROP_TOPIC_ALIAS_MAXIMUM);
    assert!(tam.is_none() || tam == Some(0), "{:?}", ack.props);
    expect_refused(
        none.local_addr(),
        "tai-n1",
        &[aliased("ta/x", b"x", 1)],
        0x94,
        "any alias with Topic Alias Maximum 0",
    );
}

#[test]
fn outbound_topic_aliases_are_used_and_reset_per_connection() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let id = id_on_shard("tao-s-", 1);
    let mut opts = session(&id, true);
    opts.extra_props = u16_prop(PROP_TOPIC_ALIAS_MAXIMUM, 10);
    let (mut sub, _) = RawClient::connected(addr, &opts);
    assert_eq!(sub.subscribe(1, &[("tb/#", 1)]), [1]);
    let (mut publisher, _) = RawClient::connected(addr, &ConnectOpts::v3(&id_on_shard("tao-p", 0)));
    for (i, topic) in ["tb/x", "tb/x", "tb/y", "tb/y", "tb/x"].iter().enumerate() {
        publisher.publish1(topic, format!("{i}").as_bytes(), i as u16 + 1);
    }
    let mut got = Vec::new();
    for _ in 0..5 {
        got.push(sub.expect_publish(PROMPT));
    }
    let alias_of = |p: &PublishInfo| p.props.int(PROP_TOPIC_ALIAS);
    let ax = alias_of(&got[0]).expect("first tb/x should set an alias");
    let ay = alias_of(&got[2]).expect("first tb/y should set an alias");
    assert!(
        (1..=10).contains(&ax) && (1..=10).contains(&ay) && ax != ay,
        "{got:?}"
    );
    let seen: Vec<(&str, Option<u32>)> = got.iter().map(|p| (&p.topic[..], alias_of(p))).collect();
    assert_eq!(
        seen,
        [
            ("tb/x", Some(ax)),
            ("", Some(ax)),
            ("tb/y", Some(ay)),
            ("", Some(ay)),
            ("", Some(ax)),
        ],
        "second message on a topic: empty topic + alias"
    );

    // A resend on a new connection cannot use the old connection's alias.
    publisher.publish1("tb/x", b"unacked", 9);
    let (p, _) = sub.expect_publish_raw(PROMPT);
    assert_eq!((&p.topic[..], &p.payload[..]), ("", &b"unacked"[..]));
    go_offline(&mut sub);
    let mut opts = session(&id, false);
    opts.extra_props = u16_prop(PROP_TOPIC_ALIAS_MAXIMUM, 10);
    let (mut sub, _) = RawClient::connected(addr, &opts);
    let (p, dup) = sub.expect_publish_raw(PROMPT);
    assert!(dup);
    assert_eq!(
        (&p.topic[..], &p.payload[..]),
        ("tb/x", &b"unacked"[..]),
        "resend after reconnect must name the topic (aliases are per connection, MQTT-3.3.2-7)"
    );
}

#[test]
fn outbound_topic_aliases_stay_within_the_client_maximum() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let mut opts = ConnectOpts::v5(&id_on_shard("tam2-", 1));
    opts.extra_props = u16_prop(PROP_TOPIC_ALIAS_MAXIMUM, 2);
    let (mut sub, _) = RawClient::connected(addr, &opts);
    assert_eq!(sub.subscribe(1, &[("ta2/#", 0)]), [0]);
    let (mut publisher, _) =
        RawClient::connected(addr, &ConnectOpts::v3(&id_on_shard("tam2-p", 0)));
    let topics = [
        "ta2/a", "ta2/b", "ta2/c", "ta2/d", "ta2/a", "ta2/c", "ta2/e", "ta2/b", "ta2/b",
    ];
    for t in topics {
        publisher.publish0(t, t.as_bytes());
    }
    // Resolve what arrives the way a client must (MQTT-3.3.2-12).
    let mut aliases = std::collections::HashMap::new();
    for t in topics {
        let p = sub.expect_publish(PROMPT);
        let alias = p.props.int(PROP_TOPIC_ALIAS);
        if let Some(a) = alias {
            assert!(
                (1..=2).contains(&a),
                "alias {a} above Topic Alias Maximum 2"
            );
        }
        let topic = if p.topic.is_empty() {
            let a = alias.expect("empty topic without an alias");
            aliases.get(&a).cloned().expect("alias never set")
        } else {
            if let Some(a) = alias {
                aliases.insert(a, p.topic.clone());
            }
            p.topic.clone()
        };
        assert_eq!((&topic[..], &p.payload[..]), (t, t.as_bytes()));
    }
}

// ---------------------------------------------------------------------------
// Shared subscriptions
// ---------------------------------------------------------------------------

/// Reads from every member until `n` messages arrived in total (or the
/// deadline passes); answers each member's payloads.
fn gather(members: &mut [Receiver], n: usize) -> Vec<Vec<u32>> {
    let mut got = vec![Vec::new(); members.len()];
    let deadline = Instant::now() + PROMPT;
    while got.iter().map(Vec::len).sum::<usize>() < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} shared messages arrived: {got:?}",
            got.iter().map(Vec::len).sum::<usize>()
        );
        for (i, m) in members.iter_mut().enumerate() {
            while let Some(p) = m.try_next(Duration::from_millis(20)) {
                let text = String::from_utf8(p.payload).expect("payload");
                got[i].push(text.parse().expect("number"));
            }
        }
    }
    got
}

/// Asserts the union of `got` is exactly `range`, nothing twice.
fn assert_exactly_once(got: &[Vec<u32>], range: std::ops::Range<u32>, what: &str) {
    let mut all: Vec<u32> = got.iter().flatten().copied().collect();
    all.sort_unstable();
    let want: Vec<u32> = range.collect();
    assert_eq!(
        all, want,
        "{what}: each message to exactly one member: {got:?}"
    );
}

#[test]
fn shared_subscription_on_both_shards_delivers_each_message_once_as_members_leave() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let mut members: Vec<Receiver> = [0, 0, 1, 1]
        .into_iter()
        .enumerate()
        .map(|(i, shard)| {
            let (mut m, _) = Receiver::connect(
                addr,
                &ConnectOpts::v5(&id_on_shard(&format!("sh-m{i}-"), shard)),
            );
            assert_eq!(m.raw.subscribe(1, &[("$share/g/sh/t", 1)]), [1]);
            m
        })
        .collect();
    // A plain subscriber sees everything regardless of the group.
    let (mut all, _) = Receiver::connect(addr, &ConnectOpts::v3(&id_on_shard("sh-all-", 1)));
    assert_eq!(all.raw.subscribe(1, &[("sh/t", 1)]), [1]);
    let (mut publisher, _) = RawClient::connected(addr, &ConnectOpts::v3(&id_on_shard("sh-p-", 0)));
    let mut publish = |range: std::ops::Range<u32>| {
        for i in range {
            publisher.publish1("sh/t", i.to_string().as_bytes(), i as u16 + 1);
        }
    };
    const N: u32 = 40;

    publish(0..N);
    let got = gather(&mut members, N as usize);
    assert_exactly_once(&got, 0..N, "four members");
    for (i, g) in got.iter().enumerate() {
        assert!(!g.is_empty(), "member {i} got none: {got:?}");
    }
    for i in 0..N {
        assert_eq!(all.next(PROMPT).payload, i.to_string().as_bytes());
    }

    // One member on shard 1 leaves: later messages go to the other three.
    // (The last member of a shard leaving is
    // `shared_message_right_after_a_member_left_is_not_lost`.)
    let mut leaving = members.remove(2);
    go_offline(&mut leaving.raw);
    publish(N..2 * N);
    let got = gather(&mut members, N as usize);
    assert_exactly_once(&got, N..2 * N, "three members after one left");
    for m in &mut members {
        m.expect_no_publish(QUIET, "no extra shared deliveries");
    }
    for i in N..2 * N {
        assert_eq!(all.next(PROMPT).payload, i.to_string().as_bytes());
    }
}

/// Two members of one group on each shard: 40 messages from a publisher on
/// either shard reach every member (a shared round-robin cursor once locked
/// onto one shard and one member).
#[test]
fn shared_subscription_spreads_over_every_member() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let mut failures = Vec::new();
    for pub_shard in [0, 1] {
        let group = format!("$share/g{pub_shard}/sh/t{pub_shard}");
        let topic = format!("sh/t{pub_shard}");
        let mut members: Vec<Receiver> = [0, 0, 1, 1]
            .into_iter()
            .enumerate()
            .map(|(i, shard)| {
                let id = id_on_shard(&format!("sp{pub_shard}-m{i}-"), shard);
                let (mut m, _) = Receiver::connect(addr, &ConnectOpts::v5(&id));
                assert_eq!(m.raw.subscribe(1, &[(&group, 1)]), [1]);
                m
            })
            .collect();
        let (mut publisher, _) = RawClient::connected(
            addr,
            &ConnectOpts::v3(&id_on_shard(&format!("sp{pub_shard}-p-"), pub_shard)),
        );
        for i in 0..40u16 {
            publisher.publish1(&topic, i.to_string().as_bytes(), i + 1);
        }
        let got = gather(&mut members, 40);
        let counts: Vec<usize> = got.iter().map(Vec::len).collect();
        if counts.contains(&0) {
            failures.push(format!(
                "publisher on shard {pub_shard}: per member (shards 0, 0, 1, 1) {counts:?}: {got:?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "members left out:\n{}",
        failures.join("\n")
    );
}

/// Reads from every member until each has `n` messages (or the deadline
/// passes; the caller asserts what came); answers each member's payloads in
/// arrival order.
fn gather_each(members: &mut [Receiver], n: usize) -> Vec<Vec<u32>> {
    let mut got = vec![Vec::new(); members.len()];
    let deadline = Instant::now() + PROMPT;
    while got.iter().any(|g| g.len() < n) && Instant::now() < deadline {
        for (i, m) in members.iter_mut().enumerate() {
            while let Some(p) = m.try_next(Duration::from_millis(20)) {
                let text = String::from_utf8(p.payload).expect("payload");
                got[i].push(text.parse().expect("number"));
            }
        }
    }
    got
}

/// `$share/g/sh/+` and `$share/g/sh/#` are two shared subscriptions: a
/// shared subscription is its share name together with its filter (MQTT 5
/// 4.8.2), so each one gets every message once, although they share the
/// name `g`. Seen: the two were taken for one group and the 100 messages
/// split 50/50 between them.
#[test]
fn shared_subscriptions_with_one_share_name_and_different_filters_each_get_every_message() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let mut members: Vec<Receiver> = [("$share/g/sh/+", 0), ("$share/g/sh/#", 1)]
        .into_iter()
        .enumerate()
        .map(|(i, (filter, shard))| {
            let id = id_on_shard(&format!("sf-m{i}-"), shard);
            let (mut m, _) = Receiver::connect(addr, &ConnectOpts::v5(&id));
            assert_eq!(m.raw.subscribe(1, &[(filter, 1)]), [1], "{filter}");
            m
        })
        .collect();
    let (mut publisher, _) = RawClient::connected(addr, &ConnectOpts::v3(&id_on_shard("sf-p-", 0)));
    const N: u32 = 100;
    for i in 0..N {
        let payload = i.to_string();
        if i % 2 == 0 {
            publisher.publish0("sh/x", payload.as_bytes());
        } else {
            publisher.publish1("sh/x", payload.as_bytes(), i as u16);
        }
    }
    let mut got = gather_each(&mut members, N as usize);
    let counts: Vec<usize> = got.iter().map(Vec::len).collect();
    for g in &mut got {
        g.sort_unstable();
    }
    let want: Vec<u32> = (0..N).collect();
    assert!(
        got.iter().all(|g| *g == want),
        "each of $share/g/sh/+ (shard 0) and $share/g/sh/# (shard 1) must get all {N} \
         messages once; got {counts:?}: {got:?}"
    );
    for m in &mut members {
        m.expect_no_publish(QUIET, "each message once per shared subscription");
    }
}

/// A client with a shared subscription `$share/g/t/#` and an ordinary `t/#`
/// gets each message twice, once for each (MQTT 5 4.8.2: a shared and a
/// non-shared subscription of one session are delivered separately), with
/// the publisher on either shard.
#[test]
fn shared_and_ordinary_subscription_of_one_client_each_get_a_copy() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let (mut sub, _) = Receiver::connect(addr, &ConnectOpts::v5(&id_on_shard("so-s-", 1)));
    assert_eq!(
        sub.raw.subscribe(1, &[("$share/g/t/#", 1), ("t/#", 1)]),
        [1, 1]
    );
    const N: u16 = 10;
    for pub_shard in [0, 1] {
        let (mut publisher, _) = RawClient::connected(
            addr,
            &ConnectOpts::v3(&id_on_shard(&format!("so-p{pub_shard}-"), pub_shard)),
        );
        let topic = format!("t/{pub_shard}");
        for i in 0..N {
            publisher.publish1(&topic, i.to_string().as_bytes(), i + 1);
        }
        let mut got = Vec::new();
        while got.len() < 2 * N as usize {
            match sub.try_next(PROMPT) {
                Some(p) => {
                    assert_eq!(p.topic, topic, "publisher on shard {pub_shard}");
                    got.push(String::from_utf8(p.payload).expect("payload"));
                }
                None => break,
            }
        }
        got.sort_unstable();
        let mut want: Vec<String> = (0..N)
            .flat_map(|i| [i.to_string(), i.to_string()])
            .collect();
        want.sort_unstable();
        assert_eq!(
            got, want,
            "publisher on shard {pub_shard}: every message once for $share/g/t/# and once \
             for t/# (MQTT 5 4.8.2)"
        );
        sub.expect_no_publish(QUIET, "two copies, not more");
    }
}

/// `$share/g/...` with one member per shard; the member on shard 1 (session
/// expiry 0) leaves with DISCONNECT and the test waits until the broker has
/// closed its socket. A QoS 1 message published right after (from shard 0,
/// PUBACKed) must reach the remaining member on shard 0. Seen lost: the
/// publishing shard still picks shard 1 for the group and shard 1, with no
/// member left, dropped it; it now hands the message back.
#[test]
fn shared_message_right_after_a_member_left_is_not_lost() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let (mut stay, _) = Receiver::connect(addr, &ConnectOpts::v5(&id_on_shard("sl-stay-", 0)));
    assert_eq!(stay.raw.subscribe(1, &[("$share/g/sl/t", 1)]), [1]);
    let (mut publisher, _) = RawClient::connected(addr, &ConnectOpts::v3(&id_on_shard("sl-p-", 0)));
    let mut lost = Vec::new();
    for i in 0..200u16 {
        let id = id_on_shard(&format!("sl-leave{i}-"), 1);
        let (mut leaving, _) = RawClient::connected(addr, &ConnectOpts::v5(&id));
        assert_eq!(leaving.subscribe(1, &[("$share/g/sl/t", 1)]), [1]);
        leaving.send(&disconnect_v5(0)).unwrap();
        leaving.expect_closed(PROMPT, "DISCONNECT");
        publisher.publish1("sl/t", i.to_string().as_bytes(), i + 1);
        // The sentinel goes after it; both must reach `stay`. A message the
        // shard without members handed on may arrive after the sentinel
        // (shared subscriptions promise no order across paths), so the two
        // are taken in either order; a lost one shows as a missing payload.
        publisher.publish1("sl/t", b"sentinel", 1000 + i);
        let mut got = vec![stay.next(PROMPT).payload];
        match stay.try_next(PROMPT) {
            Some(p) => got.push(p.payload),
            None => lost.push(i),
        }
        got.sort();
        if lost.last() != Some(&i) {
            let mut want = vec![i.to_string().into_bytes(), b"sentinel".to_vec()];
            want.sort();
            assert_eq!(got, want, "round {i}");
        }
    }
    assert!(
        lost.is_empty(),
        "{} of 200 messages published right after the shard-1 member left were lost: {lost:?}",
        lost.len()
    );
}

// ---------------------------------------------------------------------------
// Subscription identifiers and No Local
// ---------------------------------------------------------------------------

#[test]
fn subscription_identifiers_are_delivered_and_merged() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let (mut sub, _) = Receiver::connect(addr, &ConnectOpts::v5(&id_on_shard("si-s-", 1)));
    let (mut publisher, _) = RawClient::connected(addr, &ConnectOpts::v3(&id_on_shard("si-p-", 0)));
    /// Publishes on `topic` and answers the sorted identifiers of the one
    /// delivery.
    fn ids(sub: &mut Receiver, publisher: &mut RawClient, topic: &str) -> Vec<u32> {
        publisher.publish1(topic, topic.as_bytes(), 1);
        let p = sub.next(PROMPT);
        assert_eq!(p.topic, topic);
        let mut ids = p.props.ints(PROP_SUBSCRIPTION_ID);
        ids.sort_unstable();
        ids
    }

    assert_eq!(sub.raw.subscribe_v5(1, Some(7), &[("si/a/#", 1)]), [1]);
    assert_eq!(ids(&mut sub, &mut publisher, "si/a/x"), [7], "MQTT-3.3.4-3");

    // Overlapping: one delivery carrying both identifiers (MQTT-3.3.4-4/5).
    assert_eq!(sub.raw.subscribe_v5(2, Some(8), &[("si/+/x", 0)]), [0]);
    assert_eq!(ids(&mut sub, &mut publisher, "si/a/x"), [7, 8]);
    assert_eq!(
        ids(&mut sub, &mut publisher, "si/a/end"),
        [7],
        "the overlapping message was delivered more than once"
    );

    // Re-subscribing without an identifier removes it from that filter.
    assert_eq!(sub.raw.subscribe_v5(3, None, &[("si/+/x", 0)]), [0]);
    assert_eq!(ids(&mut sub, &mut publisher, "si/a/x"), [7]);
    assert_eq!(ids(&mut sub, &mut publisher, "si/a/end"), [7]);

    // The largest identifier, and one on a retained message sent on subscribe.
    assert_eq!(
        sub.raw.subscribe_v5(4, Some(268_435_455), &[("si/big", 0)]),
        [0]
    );
    assert_eq!(ids(&mut sub, &mut publisher, "si/big"), [268_435_455]);
    publisher
        .send(&publish_packet("si/kept", b"kept", 0, 0, true, false))
        .unwrap();
    publisher.ping();
    assert_eq!(sub.raw.subscribe_v5(5, Some(9), &[("si/kept", 0)]), [0]);
    let p = sub.next(PROMPT);
    assert_eq!((&p.topic[..], p.retain), ("si/kept", true));
    assert_eq!(
        p.props.ints(PROP_SUBSCRIPTION_ID),
        [9],
        "retained on subscribe"
    );

    // Identifier 0 is a protocol error (MQTT-3.8.2.1.2).
    let (mut bad, _) = RawClient::connected(addr, &ConnectOpts::v5("si-zero"));
    bad.send(&subscribe_packet_v5(1, Some(0), &[("si/#", 0)]))
        .unwrap();
    let got = bad.expect_closed(PROMPT, "subscription identifier 0");
    assert!(
        matches!(got.last(), Some(p) if p.is_disconnect(0x82)),
        "expected DISCONNECT 0x82, got {got:?}"
    );
}

#[test]
fn no_local_drops_own_messages_only() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let (mut c, _) = Receiver::connect(addr, &ConnectOpts::v5(&id_on_shard("nl-", 0)));
    assert_eq!(
        c.raw
            .subscribe(1, &[("nl/own", NO_LOCAL | 1), ("nl/end", 1)]),
        [1, 1]
    );
    let (mut other, _) = RawClient::connected(addr, &ConnectOpts::v5(&id_on_shard("nl-o-", 1)));
    // QoS 0 from the subscriber itself: nothing to wait for that a
    // wrong delivery could overtake; "nl/end" is the sentinel.
    c.raw.publish0("nl/own", b"mine");
    c.raw.publish0("nl/end", b"end");
    let p = c.next(PROMPT);
    assert_eq!(
        (&p.topic[..], &p.payload[..]),
        ("nl/end", &b"end"[..]),
        "No Local: own message came back (MQTT-3.8.3-3)"
    );
    other.publish1_props("nl/own", b"theirs", 1, &[]);
    let p = c.next(PROMPT);
    assert_eq!((&p.topic[..], &p.payload[..]), ("nl/own", &b"theirs"[..]));
    // Seen from another subscriber, the same message is delivered normally.
    let (mut watcher, _) = Receiver::connect(addr, &ConnectOpts::v5(&id_on_shard("nl-w-", 1)));
    assert_eq!(watcher.raw.subscribe(1, &[("nl/own", NO_LOCAL)]), [0]);
    c.raw.publish0("nl/own", b"mine again");
    assert_eq!(watcher.next(PROMPT).payload, b"mine again");
}

#[test]
fn no_local_on_a_shared_subscription_is_a_protocol_error() {
    let broker = start(&[]);
    let (mut c, _) = RawClient::connected(broker.local_addr(), &ConnectOpts::v5("nl-shared"));
    c.send(&subscribe_packet(1, &[("$share/g/nl/t", NO_LOCAL)], true))
        .unwrap();
    let got = c.expect_closed(PROMPT, "No Local on a shared subscription");
    assert!(
        matches!(got.last(), Some(p) if p.is_disconnect(0x82)),
        "expected DISCONNECT 0x82 (MQTT-3.8.3-4), got {got:?}"
    );
}

/// Six overlapping subscriptions of one client, Subscription Identifiers 1
/// to 6: the one delivery of `a/b/c` carries all six (MQTT-3.3.4-4/5), with
/// the publisher on either shard. Seen: only four of them.
#[test]
fn one_delivery_carries_the_identifiers_of_six_overlapping_subscriptions() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let (mut sub, _) = Receiver::connect(addr, &ConnectOpts::v5(&id_on_shard("si6-s-", 1)));
    let filters = ["a/b/c", "a/b/+", "a/+/c", "+/b/c", "a/#", "#"];
    for (i, filter) in filters.iter().enumerate() {
        let id = i as u32 + 1;
        assert_eq!(
            sub.raw.subscribe_v5(id as u16, Some(id), &[(filter, 1)]),
            [1],
            "{filter}"
        );
    }
    for pub_shard in [0, 1] {
        let (mut publisher, _) = RawClient::connected(
            addr,
            &ConnectOpts::v3(&id_on_shard(&format!("si6-p{pub_shard}-"), pub_shard)),
        );
        publisher.publish1("a/b/c", b"all six", 1);
        // Matches a/b/+ (2), a/# (5) and # (6) only: the sentinel.
        publisher.publish1("a/b/end", b"end", 2);
        let p = sub.next(PROMPT);
        let mut ids = p.props.ints(PROP_SUBSCRIPTION_ID);
        ids.sort_unstable();
        assert_eq!(
            (&p.topic[..], &ids[..]),
            ("a/b/c", &[1, 2, 3, 4, 5, 6][..]),
            "publisher on shard {pub_shard}: one delivery with every matching identifier"
        );
        let p = sub.next(PROMPT);
        let mut ids = p.props.ints(PROP_SUBSCRIPTION_ID);
        ids.sort_unstable();
        assert_eq!(
            (&p.topic[..], &ids[..]),
            ("a/b/end", &[2, 5, 6][..]),
            "publisher on shard {pub_shard}: a/b/c delivered more than once"
        );
    }
}

/// A PUBLISH from a client must not carry a Subscription Identifier
/// (MQTT-3.3.4-6): the broker answers DISCONNECT 0x82, closes, and does not
/// route the message.
#[test]
fn client_publish_with_a_subscription_identifier_is_a_protocol_error() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    // Everyone on shard 1: a wrongly routed message would reach the watcher
    // before the sentinel published after the close.
    let (mut watcher, _) = Receiver::connect(addr, &ConnectOpts::v5(&id_on_shard("sip-w-", 1)));
    assert_eq!(watcher.raw.subscribe(1, &[("sip/#", 1)]), [1]);
    let (mut sentinel, _) = RawClient::connected(addr, &ConnectOpts::v3(&id_on_shard("sip-s-", 1)));
    for qos in [0u8, 1] {
        let id = id_on_shard(&format!("sip-bad{qos}-"), 1);
        let (mut bad, _) = RawClient::connected(addr, &ConnectOpts::v5(&id));
        let props = [PROP_SUBSCRIPTION_ID, 1];
        bad.send(&publish_packet_v5_props(
            "sip/t", b"bad", qos, 1, false, &props,
        ))
        .unwrap();
        let got = bad.expect_closed(PROMPT, "PUBLISH with a Subscription Identifier");
        assert!(
            matches!(got.last(), Some(p) if p.is_disconnect(0x82)),
            "QoS {qos}: expected DISCONNECT 0x82 (MQTT-3.3.4-6), got {got:?}"
        );
        sentinel.publish1("sip/t", b"sentinel", 1);
        let p = watcher.next(PROMPT);
        assert_eq!(
            p.payload, b"sentinel",
            "QoS {qos}: the refused PUBLISH was routed"
        );
    }
    assert_serves(addr);
}

#[test]
fn subscription_identifier_follows_subscription_identifiers_available() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let (mut c, ack) = RawClient::connected(addr, &ConnectOpts::v5("subid"));
    // SUBSCRIBE with Subscription Identifier 5.
    let mut body = 1u16.to_be_bytes().to_vec();
    body.extend_from_slice(&[2, 0x0B, 5]);
    put_bin(&mut body, b"sid/x");
    body.push(0);
    c.send(&packet(0x82, &body)).unwrap();
    if ack.props.int(0x29) == Some(0) {
        // Not supported: SUBACK 0xA1 or DISCONNECT 0xA1.
        let p = c.expect_packet(PROMPT, "refusal");
        let refused =
            p.is_disconnect(0xA1) || (p.kind == SUBACK && p.ack_codes(SUBACK, true).1 == [0xA1]);
        assert!(
            refused,
            "announced Subscription Identifiers Available 0, then accepted one: {p:?}"
        );
    } else {
        assert_eq!(
            c.expect_packet(PROMPT, "SUBACK").ack_codes(SUBACK, true).1,
            [0]
        );
        let (mut p, _) = RawClient::connected(addr, &ConnectOpts::v3("subid-pub"));
        p.publish0("sid/x", b"x");
        let got = c.expect_publish(PROMPT);
        assert_eq!(got.props.int(0x0B), Some(5), "{got:?}");
    }
}

#[test]
fn no_local_qos0_subscription_skips_own_messages() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let (mut c, _) = RawClient::connected(addr, &ConnectOpts::v5("nolocal"));
    // Options byte: QoS 0 | No Local (bit 2).
    assert_eq!(c.subscribe(1, &[("nl/own", 0x04), ("nl/end", 0)]), [0, 0]);
    let (mut other, _) = RawClient::connected(addr, &ConnectOpts::v3("nl-other"));
    c.publish0("nl/own", b"mine");
    c.publish0("nl/end", b"end");
    let p = c.expect_publish(PROMPT);
    assert_eq!(
        p.topic, "nl/end",
        "No Local: own message came back (MQTT-3.8.3-3)"
    );
    other.publish0("nl/own", b"theirs");
    assert_eq!(c.expect_publish(PROMPT).payload, b"theirs");
}
