//! Black-box QoS 1 and 2 tests: every flow in both directions within and
//! across shards (rumqttc v3/v5 and raw bytes), delivered QoS = min(publish,
//! granted), `--max-qos`, offline queues and take-over, DUP resends and
//! PUBREL resends on reconnect, QoS 2 duplicates from the publisher, Receive
//! Maximum both ways, a queued message over the client's Maximum Packet
//! Size, `--max-queued-messages`, and will QoS 1 and 2.
//!
//! Client ids are chosen with `id_on_shard` so publisher and subscriber sit
//! on known shards. "Not delivered" is proven with a sentinel published
//! after it by the same publisher on the same topic (MQTT 4.6 ordering), or
//! with a bounded silence where no sentinel can be ordered after it.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::time::Duration;

/// How long "nothing more arrives" is watched where no sentinel can prove it.
const QUIET: Duration = Duration::from_millis(300);

/// A v5 CONNECT that keeps its session for a minute after the connection.
fn session_v5(id: &str, clean: bool) -> ConnectOpts {
    ConnectOpts::v5(id).clean(clean).session_expiry(60)
}

/// Ends a connection with a normal DISCONNECT and waits until the broker
/// closed it (so it has seen the client leave).
fn go_offline(c: &mut RawClient) {
    if c.v5 {
        c.send(&disconnect_v5(0)).expect("send DISCONNECT");
    } else {
        c.send(&DISCONNECT_V3).expect("send DISCONNECT");
    }
    let got = c.expect_closed(PROMPT, "close after DISCONNECT");
    assert!(got.is_empty(), "packets after DISCONNECT: {got:?}");
}

// ---------------------------------------------------------------------------
// Flows with rumqttc
// ---------------------------------------------------------------------------

/// Waits for the next PUBLISH at a v3 rumqttc client; answers it whole.
fn recv_v3(c: &mut V3Client) -> rumqttc::Publish {
    c.pump_until(PROMPT, "PUBLISH", |e| match e {
        rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)) => Some(p.clone()),
        _ => None,
    })
}

/// Publishes at QoS 2 from rumqttc v3 and waits for PUBREC then PUBCOMP.
fn publish2_v3(c: &mut V3Client, topic: &str, payload: &[u8]) {
    c.client
        .publish(topic, rumqttc::QoS::ExactlyOnce, false, payload.to_vec())
        .expect("queue PUBLISH");
    let mut rec = false;
    c.pump_until(PROMPT, "PUBREC then PUBCOMP", |e| match e {
        rumqttc::Event::Incoming(rumqttc::Packet::PubRec(_)) => {
            rec = true;
            None
        }
        rumqttc::Event::Incoming(rumqttc::Packet::PubComp(_)) => Some(()),
        _ => None,
    });
    assert!(rec, "PUBCOMP without a PUBREC first");
}

#[test]
fn qos1_and_qos2_flows_rumqttc_v3_same_and_cross_shard() {
    use rumqttc::{QoS, SubscribeReasonCode};
    let broker = start(&[]);
    let addr = broker.local_addr();
    let (mut sub, _) = V3Client::connect(addr, &id_on_shard("q3-sub-", 0), |_| {});
    assert_eq!(
        sub.subscribe("q3/#", QoS::ExactlyOnce),
        [SubscribeReasonCode::Success(QoS::ExactlyOnce)]
    );
    for shard in [0, 1] {
        let (mut publisher, _) = V3Client::connect(addr, &id_on_shard("q3-pub-", shard), |_| {});
        // QoS 1: PUBLISH -> PUBACK on both legs (rumqttc acks for us).
        publisher.publish("q3/one", QoS::AtLeastOnce, b"one");
        let p = recv_v3(&mut sub);
        assert_eq!(
            (p.topic.as_str(), &p.payload[..], p.qos, p.dup),
            ("q3/one", &b"one"[..], QoS::AtLeastOnce, false),
            "QoS 1 from shard {shard}"
        );
        assert_ne!(p.pkid, 0, "QoS 1 delivery needs a packet id");
        // QoS 2: PUBLISH, PUBREC, PUBREL, PUBCOMP on both legs.
        publish2_v3(&mut publisher, "q3/two", b"two");
        let p = recv_v3(&mut sub);
        assert_eq!(
            (p.topic.as_str(), &p.payload[..], p.qos, p.dup),
            ("q3/two", &b"two"[..], QoS::ExactlyOnce, false),
            "QoS 2 from shard {shard}"
        );
        // rumqttc answers PUBREC; the broker must then release it.
        sub.pump_until(PROMPT, "PUBREL from the broker", |e| match e {
            rumqttc::Event::Incoming(rumqttc::Packet::PubRel(r)) if r.pkid == p.pkid => Some(()),
            _ => None,
        });
    }
    let stats = broker.stats();
    assert!(stats.publishes_in >= 4, "{stats:?}");
    assert!(stats.publishes_out >= 4, "{stats:?}");
}

#[test]
fn qos1_and_qos2_flows_rumqttc_v5_same_and_cross_shard() {
    use rumqttc::v5::mqttbytes::v5::{Packet, SubscribeReasonCode};
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::Event;
    let broker = start(&[]);
    let addr = broker.local_addr();
    let (mut sub, _) = V5Client::connect(addr, &id_on_shard("q5-sub-", 1), |_| {});
    assert_eq!(
        sub.subscribe("q5/#", QoS::ExactlyOnce),
        [SubscribeReasonCode::Success(QoS::ExactlyOnce)]
    );
    for shard in [1, 0] {
        let (mut publisher, _) = V5Client::connect(addr, &id_on_shard("q5-pub-", shard), |_| {});
        publisher.publish("q5/one", QoS::AtLeastOnce, b"one");
        publisher
            .client
            .publish("q5/two", QoS::ExactlyOnce, false, b"two".to_vec())
            .expect("queue PUBLISH");
        publisher.pump_until(PROMPT, "PUBCOMP", |e| match e {
            Event::Incoming(Packet::PubRec(r)) => {
                assert_eq!(
                    r.reason,
                    rumqttc::v5::mqttbytes::v5::PubRecReason::Success,
                    "{r:?}"
                );
                None
            }
            Event::Incoming(Packet::PubComp(_)) => Some(()),
            _ => None,
        });
        for (topic, qos) in [("q5/one", QoS::AtLeastOnce), ("q5/two", QoS::ExactlyOnce)] {
            let p = sub.pump_until(PROMPT, "PUBLISH", |e| match e {
                Event::Incoming(Packet::Publish(p)) => Some(p.clone()),
                _ => None,
            });
            assert_eq!(
                (&p.topic[..], p.qos, p.dup),
                (topic.as_bytes(), qos, false),
                "from shard {shard}: {p:?}"
            );
            if qos == QoS::ExactlyOnce {
                let pkid = p.pkid;
                sub.pump_until(PROMPT, "PUBREL from the broker", |e| match e {
                    Event::Incoming(Packet::PubRel(r)) if r.pkid == pkid => Some(()),
                    _ => None,
                });
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Flows in raw bytes
// ---------------------------------------------------------------------------

#[test]
fn raw_qos2_flow_bytes_both_directions_within_and_across_shards() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    for (sub_shard, pub_shard, v5) in [(0, 0, true), (0, 1, false), (1, 0, true), (1, 1, false)] {
        let sub_id = id_on_shard(&format!("r2-sub-{sub_shard}{pub_shard}-"), sub_shard);
        let pub_id = id_on_shard(&format!("r2-pub-{sub_shard}{pub_shard}-"), pub_shard);
        let sub_opts = if v5 {
            ConnectOpts::v5(&sub_id)
        } else {
            ConnectOpts::v3(&sub_id)
        };
        let (mut sub, _) = RawClient::connected(addr, &sub_opts);
        assert_eq!(sub.subscribe(1, &[("r2/t", 2)]), [2], "granted QoS 2");
        // The publisher speaks the other version.
        let pub_opts = if v5 {
            ConnectOpts::v3(&pub_id)
        } else {
            ConnectOpts::v5(&pub_id)
        };
        let (mut publisher, _) = RawClient::connected(addr, &pub_opts);
        let what = format!("sub shard {sub_shard}, pub shard {pub_shard}, sub v5 {v5}");

        // Client -> broker: PUBLISH, PUBREC (flags 0), PUBREL, PUBCOMP.
        publisher.publish2("r2/t", b"exactly once", 0x1234, &[]);

        // Broker -> client.
        let (p, dup) = sub.expect_publish_raw(PROMPT);
        assert_eq!(
            (p.topic.as_str(), &p.payload[..], p.qos, p.retain, dup),
            ("r2/t", &b"exactly once"[..], 2, false, false),
            "{what}"
        );
        assert_ne!(p.packet_id, 0, "{what}: QoS 2 PUBLISH with packet id 0");
        sub.send(&pubrec_packet(p.packet_id)).unwrap();
        let rel = sub.expect_packet(PROMPT, "PUBREL");
        assert_eq!(rel.ack(PUBREL), (p.packet_id, 0), "{what}: PUBREL");
        sub.send(&pubcomp_packet(p.packet_id)).unwrap();
        // Nothing else is owed: the flow is complete on both sides.
        sub.ping();
        publisher.ping();
    }
}

/// Completes the flow of `(topic, payload)` at `qos` from a raw publisher.
fn publish_at(c: &mut RawClient, topic: &str, payload: &[u8], qos: u8, id: u16) {
    match qos {
        0 => {
            c.publish0(topic, payload);
        }
        1 => c.publish1_props(topic, payload, id, &[]),
        _ => c.publish2(topic, payload, id, &[]),
    }
}

#[test]
fn delivered_qos_is_min_of_publish_and_granted_qos() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    for (sub_shard, pub_shard) in [(1, 0), (0, 0)] {
        let sub_id = id_on_shard(&format!("min-sub-{pub_shard}-"), sub_shard);
        let (mut sub, _) = Receiver::connect(addr, &ConnectOpts::v3(&sub_id));
        let codes = sub
            .raw
            .subscribe(1, &[("min/0/+", 0), ("min/1/+", 1), ("min/2/+", 2)]);
        assert_eq!(codes, [0, 1, 2]);
        let (mut publisher, _) = RawClient::connected(
            addr,
            &ConnectOpts::v5(&id_on_shard(&format!("min-pub-{sub_shard}-"), pub_shard)),
        );
        let mut id = 1;
        for granted in 0..3u8 {
            for qos in 0..3u8 {
                let topic = format!("min/{granted}/{qos}");
                publish_at(&mut publisher, &topic, topic.as_bytes(), qos, id);
                id += 1;
            }
        }
        let mut got = BTreeMap::new();
        for _ in 0..9 {
            let p = sub.next(PROMPT);
            assert_eq!(p.payload, p.topic.as_bytes());
            assert!(got.insert(p.topic.clone(), p.qos).is_none(), "twice: {p:?}");
        }
        sub.finish();
        for granted in 0..3u8 {
            for qos in 0..3u8 {
                assert_eq!(
                    got.get(&format!("min/{granted}/{qos}")),
                    Some(&granted.min(qos)),
                    "granted {granted}, published {qos} (sub shard {sub_shard}, pub shard \
                     {pub_shard}): {got:?}"
                );
            }
        }
    }
}

#[test]
fn max_qos_1_caps_grants_announcements_and_deliveries() {
    let broker = start(&["--max-qos", "1"]);
    let addr = broker.local_addr();
    let (mut sub3, _) = Receiver::connect(addr, &ConnectOpts::v3(&id_on_shard("mq-s3-", 0)));
    assert_eq!(sub3.raw.subscribe(1, &[("mq/#", 2)]), [1], "v3 SUBACK");
    let (mut sub5, ack) = Receiver::connect(addr, &ConnectOpts::v5(&id_on_shard("mq-s5-", 1)));
    assert_eq!(
        ack.props.int(PROP_MAXIMUM_QOS),
        Some(1),
        "v5 CONNACK Maximum QoS: {:?}",
        ack.props
    );
    assert_eq!(sub5.raw.subscribe(1, &[("mq/#", 2)]), [1], "v5 SUBACK");

    // A v3 publisher cannot be told the limit: its QoS 2 PUBLISH is taken
    // and delivered at the granted QoS 1.
    let (mut p3, _) = RawClient::connected(addr, &ConnectOpts::v3(&id_on_shard("mq-p3-", 1)));
    p3.publish2("mq/t", b"from v3", 5, &[]);
    for sub in [&mut sub3, &mut sub5] {
        let p = sub.next(PROMPT);
        assert_eq!((&p.payload[..], p.qos), (&b"from v3"[..], 1), "{p:?}");
    }
    p3.publish1("mq/t", b"q1", 6);
    for sub in [&mut sub3, &mut sub5] {
        let p = sub.next(PROMPT);
        assert_eq!((&p.payload[..], p.qos), (&b"q1"[..], 1), "{p:?}");
    }

    // A v5 publisher was told Maximum QoS 1: QoS 2 is a violation (0x9B,
    // MQTT-3.2.2-11).
    let (mut p5, _) = RawClient::connected(addr, &ConnectOpts::v5(&id_on_shard("mq-p5-", 0)));
    p5.send(&publish_packet("mq/t", b"too high", 2, 7, false, true))
        .unwrap();
    let got = p5.expect_closed(PROMPT, "QoS 2 above Maximum QoS 1");
    assert!(
        got.iter().any(|p| p.is_disconnect(0x9B)),
        "expected DISCONNECT 0x9B, got {got:?}"
    );
    // ... and nothing of it reached the subscribers.
    p3.publish1("mq/t", b"end", 8);
    assert_eq!(sub5.next(PROMPT).payload, b"end");
    assert_eq!(sub3.next(PROMPT).payload, b"end");
}

// ---------------------------------------------------------------------------
// Sessions: offline queue, take-over, resends
// ---------------------------------------------------------------------------

#[test]
fn offline_qos1_and_qos2_messages_arrive_after_reconnect_v5_and_v3() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    for (v5, sub_shard) in [(true, 1), (false, 0)] {
        let id = id_on_shard(if v5 { "off5-" } else { "off3-" }, sub_shard);
        let opts = |clean: bool| {
            if v5 {
                session_v5(&id, clean)
            } else {
                // A v3 session outlives its connection only with clean
                // session 0, from the first connection on.
                ConnectOpts::v3(&id).clean(false)
            }
        };
        let topic = if v5 { "off5/t" } else { "off3/t" };
        let (mut sub, ack) = RawClient::connected(addr, &opts(true));
        assert!(!ack.session_present);
        assert_eq!(sub.subscribe(1, &[(topic, 2)]), [2]);
        go_offline(&mut sub);

        let (mut publisher, _) = RawClient::connected(
            addr,
            &ConnectOpts::v3(&id_on_shard("off-pub-", 1 - sub_shard)),
        );
        publisher.publish1(topic, b"q1 while away", 1);
        publisher.publish2(topic, b"q2 while away", 2, &[]);

        let (mut sub, ack) = Receiver::connect(addr, &opts(false));
        assert!(ack.session_present, "v5 {v5}: session present 1 expected");
        let p = sub.next(PROMPT);
        assert_eq!(
            (&p.payload[..], p.qos),
            (&b"q1 while away"[..], 1),
            "v5 {v5}"
        );
        let p = sub.next(PROMPT);
        assert_eq!(
            (&p.payload[..], p.qos),
            (&b"q2 while away"[..], 2),
            "v5 {v5}"
        );
        sub.finish();
        // The subscription itself survived too, and nothing came twice.
        publisher.publish1(topic, b"live", 3);
        assert_eq!(sub.next(PROMPT).payload, b"live", "v5 {v5}");
    }
}

#[test]
fn takeover_hands_unacknowledged_messages_to_the_new_connection() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    for v5 in [true, false] {
        let id = id_on_shard(if v5 { "tk5-" } else { "tk3-" }, 0);
        let opts = |clean: bool| {
            if v5 {
                session_v5(&id, clean)
            } else {
                // A v3 session outlives its connection only with clean
                // session 0, from the first connection on.
                ConnectOpts::v3(&id).clean(false)
            }
        };
        let topic = if v5 { "tk5/t" } else { "tk3/t" };
        // The old connection receives both but never acknowledges them (a
        // half-dead device).
        let (mut old, _) = RawClient::connected(addr, &opts(true));
        assert_eq!(old.subscribe(1, &[(topic, 2)]), [2]);
        let (mut publisher, _) =
            RawClient::connected(addr, &ConnectOpts::v5(&id_on_shard("tk-pub-", 1)));
        publisher.publish1_props(topic, b"one", 1, &[]);
        publisher.publish2(topic, b"two", 2, &[]);
        let (first, dup1) = old.expect_publish_raw(PROMPT);
        let (second, dup2) = old.expect_publish_raw(PROMPT);
        assert!(!dup1 && !dup2, "first sends carry DUP 0");
        assert_eq!((first.qos, second.qos), (1, 2));

        let (mut new, ack) = Receiver::connect(addr, &opts(false));
        assert!(ack.session_present, "v5 {v5}: take-over keeps the session");
        let got = old.expect_closed(PROMPT, "taken over");
        if v5 {
            assert!(
                got.iter().any(|p| p.is_disconnect(0x8E)),
                "DISCONNECT 0x8E: {got:?}"
            );
        }
        for sent in [&first, &second] {
            let (p, dup) = new.next_dup(PROMPT);
            assert_eq!(
                (&p.topic, &p.payload, p.qos, p.packet_id, dup),
                (&sent.topic, &sent.payload, sent.qos, sent.packet_id, true),
                "v5 {v5}: resent on the new connection with the same id and DUP 1"
            );
        }
        new.finish();
        publisher.publish1_props(topic, b"after", 3, &[]);
        assert_eq!(new.next(PROMPT).payload, b"after", "v5 {v5}");
    }
}

#[test]
fn unacknowledged_qos1_is_resent_with_dup_on_reconnect_and_not_after_puback() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    for v5 in [false, true] {
        let id = id_on_shard(if v5 { "dup5-" } else { "dup3-" }, 1);
        let opts = |clean: bool| {
            if v5 {
                session_v5(&id, clean)
            } else {
                // A v3 session outlives its connection only with clean
                // session 0, from the first connection on.
                ConnectOpts::v3(&id).clean(false)
            }
        };
        let topic = if v5 { "dup5/t" } else { "dup3/t" };
        let (mut sub, _) = RawClient::connected(addr, &opts(true));
        assert_eq!(sub.subscribe(1, &[(topic, 1)]), [1]);
        let (mut publisher, _) =
            RawClient::connected(addr, &ConnectOpts::v3(&id_on_shard("dup-pub-", 0)));
        publisher.publish1(topic, b"ack me", 1);
        let (first, dup) = sub.expect_publish_raw(PROMPT);
        assert_eq!((first.qos, dup), (1, false));
        // No PUBACK: the connection ends with the message in flight.
        go_offline(&mut sub);

        let (mut sub, ack) = RawClient::connected(addr, &opts(false));
        assert!(ack.session_present);
        let (again, dup) = sub.expect_publish_raw(PROMPT);
        assert!(
            dup,
            "v5 {v5}: resend must carry DUP 1 (MQTT-4.4.0-1): {again:?}"
        );
        assert_eq!(
            (&again.topic, &again.payload, again.qos, again.packet_id),
            (&first.topic, &first.payload, 1, first.packet_id),
            "v5 {v5}: same message, same packet id"
        );
        sub.send(&puback_packet(again.packet_id)).unwrap();
        sub.ping();
        go_offline(&mut sub);

        // Acknowledged now: a third connection gets only what is new.
        let (mut sub, _) = RawClient::connected(addr, &opts(false));
        publisher.publish1(topic, b"fresh", 2);
        let (p, dup) = sub.expect_publish_raw(PROMPT);
        assert_eq!(
            (&p.payload[..], dup),
            (&b"fresh"[..], false),
            "v5 {v5}: acknowledged message resent"
        );
    }
}

#[test]
fn pubrel_is_resent_for_a_qos2_flow_interrupted_after_pubrec() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    for v5 in [true, false] {
        let id = id_on_shard(if v5 { "rel5-" } else { "rel3-" }, 0);
        let opts = |clean: bool| {
            if v5 {
                session_v5(&id, clean)
            } else {
                // A v3 session outlives its connection only with clean
                // session 0, from the first connection on.
                ConnectOpts::v3(&id).clean(false)
            }
        };
        let topic = if v5 { "rel5/t" } else { "rel3/t" };
        let (mut sub, _) = RawClient::connected(addr, &opts(true));
        assert_eq!(sub.subscribe(1, &[(topic, 2)]), [2]);
        let (mut publisher, _) =
            RawClient::connected(addr, &ConnectOpts::v5(&id_on_shard("rel-pub-", 1)));
        publisher.publish2(topic, b"released?", 1, &[]);
        let (p, _) = sub.expect_publish_raw(PROMPT);
        assert_eq!(p.qos, 2);
        sub.send(&pubrec_packet(p.packet_id)).unwrap();
        let rel = sub.expect_packet(PROMPT, "PUBREL");
        assert_eq!(rel.ack(PUBREL), (p.packet_id, 0));
        // No PUBCOMP: the connection ends in the middle of the release.
        go_offline(&mut sub);

        let (mut sub, ack) = RawClient::connected(addr, &opts(false));
        assert!(ack.session_present);
        let again = sub.expect_packet(PROMPT, "PUBREL resent");
        assert_eq!(
            again.kind, PUBREL,
            "v5 {v5}: after PUBREC the broker resends PUBREL, not the PUBLISH \
             (MQTT-4.4.0-1): {again:?}"
        );
        assert_eq!(again.ack(PUBREL), (p.packet_id, 0));
        sub.send(&pubcomp_packet(p.packet_id)).unwrap();
        // Complete now: the next message is a new one (and is not the old
        // PUBLISH again).
        publisher.publish2(topic, b"next", 2, &[]);
        let mut sub = Receiver::new(sub);
        let (p, dup) = sub.next_dup(PROMPT);
        assert_eq!((&p.payload[..], dup), (&b"next"[..], false), "v5 {v5}");
        sub.finish();
    }
}

#[test]
fn qos2_publish_interrupted_before_pubrec_is_resent_with_dup_on_reconnect() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let id = id_on_shard("pre-rec-", 1);
    let (mut sub, _) = RawClient::connected(addr, &session_v5(&id, true));
    assert_eq!(sub.subscribe(1, &[("prerec/t", 2)]), [2]);
    let (mut publisher, _) = RawClient::connected(addr, &ConnectOpts::v3(&id_on_shard("pr-", 1)));
    publisher.publish2("prerec/t", b"q2", 1, &[]);
    let (first, _) = sub.expect_publish_raw(PROMPT);
    go_offline(&mut sub);
    let (sub, _) = RawClient::connected(addr, &session_v5(&id, false));
    let mut sub = Receiver::new(sub);
    let (p, dup) = sub.next_dup(PROMPT);
    assert_eq!(
        (&p.payload[..], p.qos, p.packet_id, dup),
        (&b"q2"[..], 2, first.packet_id, true),
        "QoS 2 PUBLISH resent with DUP 1 and the same id"
    );
    sub.finish();
}

#[test]
fn qos2_duplicates_from_the_publisher_are_delivered_once() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let (mut sub, _) = Receiver::connect(addr, &ConnectOpts::v5(&id_on_shard("d2-sub-", 1)));
    assert_eq!(sub.raw.subscribe(1, &[("d2/t", 2)]), [2]);
    let pub_id = id_on_shard("d2-pub-", 0);
    let (mut publisher, _) = RawClient::connected(addr, &session_v5(&pub_id, true));
    let props = Some(&[][..]);
    publisher
        .send(&publish_packet_full(
            "d2/t", b"once", 2, 9, false, false, props,
        ))
        .unwrap();
    let rec = publisher.expect_packet(PROMPT, "PUBREC");
    assert_eq!(rec.ack(PUBREC), (9, 0));
    // The PUBREC "got lost": the same PUBLISH again with DUP 1, twice.
    for _ in 0..2 {
        publisher
            .send(&publish_packet_full(
                "d2/t", b"once", 2, 9, false, true, props,
            ))
            .unwrap();
        let rec = publisher.expect_packet(PROMPT, "PUBREC for the duplicate");
        assert_eq!(rec.ack(PUBREC), (9, 0));
    }
    // And again on a new connection of the same session (MQTT-4.3.3: the
    // packet id stays reserved until PUBREL).
    go_offline(&mut publisher);
    let (mut publisher, ack) = RawClient::connected(addr, &session_v5(&pub_id, false));
    assert!(ack.session_present);
    publisher
        .send(&publish_packet_full(
            "d2/t", b"once", 2, 9, false, true, props,
        ))
        .unwrap();
    let rec = publisher.expect_packet(PROMPT, "PUBREC after reconnect");
    assert_eq!(rec.ack(PUBREC), (9, 0));
    publisher.send(&pubrel_packet(9)).unwrap();
    let comp = publisher.expect_packet(PROMPT, "PUBCOMP");
    assert_eq!(comp.ack(PUBCOMP), (9, 0));
    // Released: id 9 now starts a new message, which is delivered.
    publisher.publish2("d2/t", b"second", 9, &[]);

    let p = sub.next(PROMPT);
    assert_eq!(p.payload, b"once");
    let p = sub.next(PROMPT);
    assert_eq!(
        p.payload, b"second",
        "a duplicate QoS 2 PUBLISH was delivered again (MQTT-4.3.3-10)"
    );
    sub.finish();
    assert_eq!(broker.stats().publishes_out, 2, "{:?}", broker.stats());
}

#[test]
fn v3_qos2_duplicate_before_pubrel_is_delivered_once() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let (mut sub, _) = Receiver::connect(addr, &ConnectOpts::v3(&id_on_shard("d3-sub-", 0)));
    assert_eq!(sub.raw.subscribe(1, &[("d3/t", 2)]), [2]);
    let (mut publisher, _) = RawClient::connected(addr, &ConnectOpts::v3(&id_on_shard("d3-p-", 1)));
    for dup in [false, true] {
        publisher
            .send(&publish_packet_full(
                "d3/t", b"once", 2, 4, false, dup, None,
            ))
            .unwrap();
        let rec = publisher.expect_packet(PROMPT, "PUBREC");
        assert_eq!(rec.ack(PUBREC), (4, 0));
    }
    publisher.send(&pubrel_packet(4)).unwrap();
    assert_eq!(
        publisher.expect_packet(PROMPT, "PUBCOMP").ack(PUBCOMP),
        (4, 0)
    );
    publisher.publish2("d3/t", b"end", 5, &[]);
    assert_eq!(sub.next(PROMPT).payload, b"once");
    assert_eq!(
        sub.next(PROMPT).payload,
        b"end",
        "duplicate delivered twice"
    );
    sub.finish();
}

#[test]
fn v3_qos2_publish_is_acknowledged_and_delivered_once() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let (mut sub, _) = RawClient::connected(addr, &ConnectOpts::v3("q2-sub"));
    assert_eq!(sub.subscribe(1, &[("q2/#", 0)]), [0]);
    let (mut c, _) = RawClient::connected(addr, &ConnectOpts::v3("q2-pub"));
    c.send(&publish_packet("q2/x", b"once", 2, 42, false, false))
        .unwrap();
    let p = c.expect_packet(PROMPT, "PUBREC");
    assert_eq!(
        (p.kind, p.flags, p.body.as_slice()),
        (5, 0, &[0, 42][..]),
        "{p:?}"
    );
    // Resent with DUP before PUBREL: must not be delivered twice (4.3.3).
    let mut dup = publish_packet("q2/x", b"once", 2, 42, false, false);
    dup[0] |= 0x08;
    c.send(&dup).unwrap();
    let p = c.expect_packet(PROMPT, "PUBREC again");
    assert_eq!(p.kind, 5, "{p:?}");
    c.send(&packet(0x62, &[0, 42])).unwrap();
    let p = c.expect_packet(PROMPT, "PUBCOMP");
    assert_eq!((p.kind, p.body.as_slice()), (7, &[0, 42][..]), "{p:?}");
    c.publish0("q2/end", b"end");
    assert_eq!(sub.expect_publish(PROMPT).payload, b"once");
    assert_eq!(
        sub.expect_publish(PROMPT).topic,
        "q2/end",
        "QoS 2 message delivered twice"
    );
}

#[test]
fn overlapping_subscriptions_deliver_once_at_the_highest_granted_qos() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    for v5 in [false, true] {
        let id = id_on_shard(if v5 { "ov5-" } else { "ov3-" }, 1);
        let opts = if v5 {
            ConnectOpts::v5(&id)
        } else {
            ConnectOpts::v3(&id)
        };
        let (mut sub, _) = Receiver::connect(addr, &opts);
        let filters = [("ov/#", 0), ("ov/+", 2), ("+/x", 1)];
        assert_eq!(sub.raw.subscribe(1, &filters), [0, 2, 1]);
        let (mut publisher, _) =
            RawClient::connected(addr, &ConnectOpts::v5(&id_on_shard("ov-p-", 0)));
        publisher.publish2("ov/x", b"one", 1, &[]);
        publisher.publish2("ov/end", b"end", 2, &[]);
        let p = sub.next(PROMPT);
        assert_eq!(
            (&p.topic[..], p.qos),
            ("ov/x", 2),
            "v5 {v5}: highest QoS of the matching subscriptions"
        );
        let p = sub.next(PROMPT);
        assert_eq!(p.topic, "ov/end", "v5 {v5}: ov/x delivered more than once");
        sub.finish();
    }
}

#[test]
fn expired_session_takes_its_queue_with_it() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let id = id_on_shard("sx-", 1);
    let (mut sub, _) = RawClient::connected(addr, &ConnectOpts::v5(&id).session_expiry(1));
    assert_eq!(sub.subscribe(1, &[("sx/t", 1)]), [1]);
    go_offline(&mut sub);
    let (mut publisher, _) = RawClient::connected(addr, &ConnectOpts::v3(&id_on_shard("sx-p", 0)));
    publisher.publish1("sx/t", b"queued", 1);
    // Only the publisher's session is left once the subscriber's expired.
    wait_stats(&broker, "subscriber session expired", |s| s.sessions == 1);
    let opts = ConnectOpts::v5(&id).clean(false).session_expiry(60);
    let (mut sub, ack) = RawClient::connected(addr, &opts);
    assert!(!ack.session_present, "the session expired");
    sub.expect_silence(QUIET, "nothing from an expired session's queue");
}

// ---------------------------------------------------------------------------
// Receive Maximum, both directions
// ---------------------------------------------------------------------------

#[test]
fn client_receive_maximum_limits_unacknowledged_deliveries() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let mut opts = ConnectOpts::v5(&id_on_shard("rm-sub-", 0));
    opts.extra_props = u16_prop(PROP_RECEIVE_MAXIMUM, 2);
    let (mut sub, _) = RawClient::connected(addr, &opts);
    assert_eq!(sub.subscribe(1, &[("rm/t", 2)]), [2]);
    let (mut publisher, _) = RawClient::connected(addr, &ConnectOpts::v3(&id_on_shard("rm-p-", 1)));
    for i in 0..5u16 {
        publisher.publish1("rm/t", format!("m{i}").as_bytes(), i + 1);
    }
    let a = sub.expect_publish_raw(PROMPT).0;
    let b = sub.expect_publish_raw(PROMPT).0;
    assert_eq!((&a.payload[..], &b.payload[..]), (&b"m0"[..], &b"m1"[..]));
    sub.expect_silence(
        QUIET,
        "Receive Maximum 2 with two unacknowledged (MQTT-3.3.4-9)",
    );
    sub.send(&puback_packet(a.packet_id)).unwrap();
    let c = sub.expect_publish_raw(PROMPT).0;
    assert_eq!(c.payload, b"m2", "one PUBACK frees one slot");
    sub.expect_silence(QUIET, "window full again");
    sub.send(&puback_packet(b.packet_id)).unwrap();
    sub.send(&puback_packet(c.packet_id)).unwrap();
    let d = sub.expect_publish_raw(PROMPT).0;
    let e = sub.expect_publish_raw(PROMPT).0;
    assert_eq!((&d.payload[..], &e.payload[..]), (&b"m3"[..], &b"m4"[..]));

    // QoS 2 holds its slot until PUBCOMP, not PUBREC.
    sub.send(&puback_packet(d.packet_id)).unwrap();
    sub.send(&puback_packet(e.packet_id)).unwrap();
    for i in 0..3u16 {
        publisher.publish2("rm/t", format!("x{i}").as_bytes(), 10 + i, &[]);
    }
    let x0 = sub.expect_publish_raw(PROMPT).0;
    let x1 = sub.expect_publish_raw(PROMPT).0;
    assert_eq!(
        (x0.qos, &x0.payload[..], &x1.payload[..]),
        (2, &b"x0"[..], &b"x1"[..])
    );
    sub.send(&pubrec_packet(x0.packet_id)).unwrap();
    let rel = sub.expect_packet(PROMPT, "PUBREL");
    assert_eq!(rel.ack(PUBREL), (x0.packet_id, 0));
    sub.expect_silence(QUIET, "QoS 2 after PUBREC still counts");
    sub.send(&pubcomp_packet(x0.packet_id)).unwrap();
    let x2 = sub.expect_publish_raw(PROMPT).0;
    assert_eq!(x2.payload, b"x2");
}

#[test]
fn receive_maximum_holds_for_queued_messages_sent_on_reconnect() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let id = id_on_shard("rmq-", 1);
    let (mut sub, _) = RawClient::connected(addr, &session_v5(&id, true));
    assert_eq!(sub.subscribe(1, &[("rmq/t", 1)]), [1]);
    go_offline(&mut sub);
    let (mut publisher, _) = RawClient::connected(addr, &ConnectOpts::v3(&id_on_shard("rmq-p", 0)));
    for i in 0..4u16 {
        publisher.publish1("rmq/t", format!("m{i}").as_bytes(), i + 1);
    }
    // Back with Receive Maximum 2: the queue drains two at a time.
    let mut opts = session_v5(&id, false);
    opts.extra_props = u16_prop(PROP_RECEIVE_MAXIMUM, 2);
    let (mut sub, ack) = RawClient::connected(addr, &opts);
    assert!(ack.session_present);
    let a = sub.expect_publish_raw(PROMPT).0;
    let b = sub.expect_publish_raw(PROMPT).0;
    assert_eq!((&a.payload[..], &b.payload[..]), (&b"m0"[..], &b"m1"[..]));
    sub.expect_silence(QUIET, "queued messages beyond Receive Maximum 2");
    sub.send(&puback_packet(a.packet_id)).unwrap();
    sub.send(&puback_packet(b.packet_id)).unwrap();
    let c = sub.expect_publish_raw(PROMPT).0;
    let d = sub.expect_publish_raw(PROMPT).0;
    assert_eq!((&c.payload[..], &d.payload[..]), (&b"m2"[..], &b"m3"[..]));
}

#[test]
fn exceeding_the_broker_receive_maximum_gets_disconnect_0x93() {
    let broker = start(&["--receive-maximum", "2"]);
    let addr = broker.local_addr();
    let (mut sub, _) = Receiver::connect(addr, &ConnectOpts::v3(&id_on_shard("rx-sub-", 0)));
    assert_eq!(sub.raw.subscribe(1, &[("rx/t", 2)]), [2]);

    // Within the window: two QoS 2 in flight, released, then two more.
    let (mut good, ack) = RawClient::connected(addr, &ConnectOpts::v5(&id_on_shard("rx-ok-", 1)));
    assert_eq!(
        ack.props.int(PROP_RECEIVE_MAXIMUM),
        Some(2),
        "CONNACK Receive Maximum: {:?}",
        ack.props
    );
    for round in 0..2u16 {
        for i in 1..=2u16 {
            let id = round * 2 + i;
            good.send(&publish_packet("rx/t", b"ok", 2, id, false, true))
                .unwrap();
            assert_eq!(good.expect_packet(PROMPT, "PUBREC").ack(PUBREC), (id, 0));
        }
        for i in 1..=2u16 {
            let id = round * 2 + i;
            good.send(&pubrel_packet(id)).unwrap();
            assert_eq!(good.expect_packet(PROMPT, "PUBCOMP").ack(PUBCOMP), (id, 0));
        }
    }
    // QoS 1 is acknowledged at once, so it never fills the window.
    for id in 20..25 {
        good.publish1_props("rx/t", b"q1", id, &[]);
    }
    for _ in 0..9 {
        sub.next(PROMPT);
    }
    sub.finish();

    // A third unreleased QoS 2 PUBLISH exceeds the window.
    let (mut bad, _) = RawClient::connected(addr, &ConnectOpts::v5(&id_on_shard("rx-bad-", 0)));
    for id in 1..=2u16 {
        bad.send(&publish_packet("rx/t", b"held", 2, id, false, true))
            .unwrap();
        assert_eq!(bad.expect_packet(PROMPT, "PUBREC").ack(PUBREC), (id, 0));
    }
    bad.send(&publish_packet("rx/t", b"one too many", 2, 3, false, true))
        .unwrap();
    let got = bad.expect_closed(PROMPT, "Receive Maximum exceeded");
    assert!(
        matches!(got.last(), Some(p) if p.is_disconnect(0x93)),
        "expected DISCONNECT 0x93 (MQTT-3.3.4-8), got {got:?}"
    );
    assert_serves(addr);
}

/// Reads the next packet and asserts it fits the client's Maximum Packet
/// Size `max` (MQTT-3.1.2-24).
fn next_within(c: &mut RawClient, max: u32, what: &str) -> RawPacket {
    let p = match c.read_packet(PROMPT) {
        Ok(p) => p,
        Err(e) => panic!("{what}: no packet within {PROMPT:?} ({e:?})"),
    };
    assert!(
        p.wire_len() <= max as usize,
        "{what}: sent a {}-byte packet to a client with Maximum Packet Size {max} \
         (MQTT-3.1.2-24): {p:?}",
        p.wire_len()
    );
    p
}

/// A persistent v5 session `id` (shard 1), subscribed QoS 1 to `big/#`,
/// is offline while a 600-byte and then a small QoS 1 message arrive for it
/// from `publisher` (also shard 1, so both are queued before their PUBACKs).
fn queue_big_then_small(addr: std::net::SocketAddr, id: &str) -> RawClient {
    let (mut sub, _) = RawClient::connected(addr, &session_v5(id, true));
    assert_eq!(sub.subscribe(1, &[("big/#", 1)]), [1]);
    go_offline(&mut sub);
    let (mut publisher, _) =
        RawClient::connected(addr, &ConnectOpts::v3(&id_on_shard("mpq-p-", 1)));
    publisher.publish1("big/x", &[b'B'; 600], 1);
    publisher.publish1("big/x", b"small", 2);
    publisher
}

/// Reconnects session `id` with Maximum Packet Size `MAX_PACKET` and the
/// extra CONNECT properties `props`; asserts the small message is the first
/// packet and acknowledges it, then that nothing else was due (PINGRESP
/// next), and goes offline again.
fn take_only_the_small_one(addr: std::net::SocketAddr, id: &str, props: &[u8], what: &str) {
    let mut opts = session_v5(id, false);
    opts.extra_props = u32_prop(PROP_MAXIMUM_PACKET_SIZE, MAX_PACKET);
    opts.extra_props.extend_from_slice(props);
    let (mut sub, ack) = RawClient::connected(addr, &opts);
    assert!(ack.session_present);
    let p = next_within(&mut sub, MAX_PACKET, what);
    let small = p.publish(true);
    assert_eq!(
        (&small.topic[..], &small.payload[..], small.qos),
        ("big/x", &b"small"[..], 1),
        "{what}: the 600-byte message must be dropped (MQTT-3.1.2-25), the small one sent"
    );
    sub.send(&puback_packet(small.packet_id)).unwrap();
    sub.send(&PINGREQ_BYTES).unwrap();
    let p = next_within(&mut sub, MAX_PACKET, "PINGRESP");
    assert_eq!(
        p.kind, PINGRESP,
        "{what}: only the small message was due, then got {p:?}"
    );
    go_offline(&mut sub);
}

/// Maximum Packet Size of the client in the oversized-queue tests.
const MAX_PACKET: u32 = 256;

/// The queued 600-byte message, discarded for a client with Maximum Packet
/// Size 256, must not take the one slot of its Receive Maximum 1: the small
/// message behind it is sent, and no packet is over 256 bytes.
#[test]
fn queued_message_over_the_client_maximum_packet_size_does_not_hold_the_receive_window() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let id = id_on_shard("mpw-", 1);
    let _publisher = queue_big_then_small(addr, &id);
    take_only_the_small_one(
        addr,
        &id,
        &u16_prop(PROP_RECEIVE_MAXIMUM, 1),
        "reconnected with Receive Maximum 1 (the discarded message must not hold its one slot)",
    );
}

/// The queued 600-byte message is discarded for a client with Maximum
/// Packet Size 256 "as if it had completed sending" (MQTT-3.1.2-25): the
/// client never saw its packet id and cannot acknowledge it, so it is not in
/// flight. Once the client acked the small message, a reconnection without
/// the size limit gets nothing resent: the first PUBLISH is a fresh one.
#[test]
fn queued_message_over_the_client_maximum_packet_size_is_dropped_not_left_in_flight() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let id = id_on_shard("mpq-", 1);
    let mut publisher = queue_big_then_small(addr, &id);
    take_only_the_small_one(addr, &id, &[], "reconnected with Maximum Packet Size 256");

    let (mut sub, ack) = RawClient::connected(addr, &session_v5(&id, false));
    assert!(ack.session_present);
    publisher.publish1("big/x", b"fresh", 3);
    let (fresh, dup) = sub.expect_publish_raw(PROMPT);
    assert_eq!(
        (
            fresh.payload.len(),
            &fresh.payload[..fresh.payload.len().min(5)],
            dup
        ),
        (5, &b"fresh"[..], false),
        "(payload length, start, DUP) of the first PUBLISH after reconnecting: the \
         message discarded for its size was kept in flight and resent (packet id {})",
        fresh.packet_id
    );
    sub.send(&puback_packet(fresh.packet_id)).unwrap();
    sub.ping();
}

// ---------------------------------------------------------------------------
// Offline queue bound
// ---------------------------------------------------------------------------

#[test]
fn max_queued_messages_bounds_the_offline_queue() {
    let broker = start(&["--max-queued-messages", "3"]);
    let addr = broker.local_addr();
    let id = id_on_shard("mqm-", 1);
    let (mut sub, _) = RawClient::connected(addr, &session_v5(&id, true));
    assert_eq!(sub.subscribe(1, &[("mqm/t", 1)]), [1]);
    go_offline(&mut sub);
    let dropped_before = broker.stats().publishes_dropped;

    let (mut publisher, _) = RawClient::connected(addr, &ConnectOpts::v3(&id_on_shard("mqm-p", 0)));
    for i in 0..5u16 {
        publisher.publish1("mqm/t", format!("m{i}").as_bytes(), i + 1);
    }
    wait_stats(&broker, "two of five dropped", |s| {
        s.publishes_dropped >= dropped_before + 2
    });

    let (sub, ack) = RawClient::connected(addr, &session_v5(&id, false));
    assert!(ack.session_present);
    let mut sub = Receiver::new(sub);
    let got: Vec<Vec<u8>> = (0..3).map(|_| sub.next(PROMPT).payload).collect();
    // Which three survive is the broker's choice; they keep their order.
    let index = |p: &Vec<u8>| {
        (0..5)
            .position(|i| p == format!("m{i}").as_bytes())
            .unwrap_or_else(|| panic!("unexpected payload {p:?}"))
    };
    let order: Vec<usize> = got.iter().map(index).collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "order {order:?}");
    publisher.publish1("mqm/t", b"end", 9);
    assert_eq!(
        sub.next(PROMPT).payload,
        b"end",
        "more than 3 queued messages delivered (kept {order:?})"
    );
    assert_eq!(
        broker.stats().publishes_dropped,
        dropped_before + 2,
        "{:?}",
        broker.stats()
    );
}

// ---------------------------------------------------------------------------
// Will QoS
// ---------------------------------------------------------------------------

#[test]
fn will_qos1_is_delivered_at_granted_qos() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let (mut sub2, _) = Receiver::connect(addr, &ConnectOpts::v5(&id_on_shard("wq-s2-", 0)));
    assert_eq!(sub2.raw.subscribe(1, &[("wq/#", 2)]), [2]);
    let (mut sub0, _) = Receiver::connect(addr, &ConnectOpts::v3(&id_on_shard("wq-s0-", 1)));
    assert_eq!(sub0.raw.subscribe(1, &[("wq/#", 0)]), [0]);
    for (shard, v5) in [(1, false), (0, true)] {
        let mut will = WillOpts::new("wq/dead", "gone");
        will.qos = 1;
        let base = if v5 {
            ConnectOpts::v5(&id_on_shard("wq-d5-", shard))
        } else {
            ConnectOpts::v3(&id_on_shard("wq-d3-", shard))
        };
        let (dying, _) = RawClient::connected(addr, &base.will(will));
        // Closed without DISCONNECT: the will goes.
        drop(dying);
        let p = sub2.next(PROMPT);
        assert_eq!(
            (&p.topic[..], &p.payload[..], p.qos, p.retain),
            ("wq/dead", &b"gone"[..], 1, false),
            "will QoS 1 to a QoS 2 subscription (v5 dier {v5})"
        );
        let p = sub0.next(PROMPT);
        assert_eq!((&p.payload[..], p.qos), (&b"gone"[..], 0));
    }
}

#[test]
fn will_qos2_is_delivered_at_qos2() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let (mut sub, _) = Receiver::connect(addr, &ConnectOpts::v5(&id_on_shard("w2-s-", 0)));
    assert_eq!(sub.raw.subscribe(1, &[("w2/#", 2)]), [2]);
    let mut will = WillOpts::new("w2/dead", "bye");
    will.qos = 2;
    let opts = ConnectOpts::v5(&id_on_shard("w2-d-", 1)).will(will);
    let (dying, _) = RawClient::connected(addr, &opts);
    drop(dying);
    let p = sub.next(PROMPT);
    assert_eq!((&p.payload[..], p.qos), (&b"bye"[..], 2));
    sub.finish();
}
