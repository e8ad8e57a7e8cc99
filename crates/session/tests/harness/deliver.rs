//! Deliveries to the client: QoS, flags, subscription ids, the offline
//! queue, outbound aliases, the client's Maximum Packet Size on every path
//! and the order of re-sends on resume.

use crate::util::*;

/// The size of the PUBLISH the client gets for `payload_len` bytes on
/// `topic` at `qos`, without alias or other properties.
fn wire_len(topic: &str, qos: QoS, payload_len: usize, version: ProtocolVersion) -> u32 {
    let mut p = publish(topic, qos, &vec![0; payload_len]);
    if qos != QoS::AtMostOnce {
        p.packet_id = 1;
    }
    p.encoded_len(version) as u32
}

fn sized(topic: &str, payload_len: usize, tag: u8) -> Publish {
    let mut payload = vec![b'.'; payload_len];
    if let Some(first) = payload.first_mut() {
        *first = tag;
    }
    message(topic, &payload)
}

/// First payload bytes of the PUBLISHes last written.
fn tags(h: &Harness) -> Vec<u8> {
    h.sent_publishes().iter().map(|p| p.payload[0]).collect()
}

fn resumable() -> Connect {
    v5("c").clean(false).expiry(600)
}

// ----- what a delivery looks like -----

#[test]
fn deliver_downgrades_to_the_delivery_qos() {
    let mut h = Harness::connected(v5("c"));
    let m = message("a", b"x");
    assert_eq!(m.qos, QoS::ExactlyOnce);
    h.deliver(&m, QoS::AtLeastOnce);
    let p = h.sent_publishes()[0].clone();
    assert_eq!((p.qos, p.packet_id, p.dup), (QoS::AtLeastOnce, 1, false));
    h.deliver(&m, QoS::AtMostOnce);
    let p = h.sent_publishes()[0].clone();
    assert_eq!((p.qos, p.packet_id), (QoS::AtMostOnce, 0));
    assert_eq!(h.session.outbound_len(), (1, 0));
}

#[test]
fn deliver_sets_the_retain_flag_as_given() {
    let mut h = Harness::connected(v5("c"));
    let mut m = message("a", b"x");
    for (source, given) in [(true, false), (false, true), (true, true)] {
        m.retain = source;
        h.deliver_with(
            &m,
            Delivery {
                qos: QoS::AtMostOnce,
                retain: given,
                ids: &[],
                expires_at: None,
            },
        );
        assert_eq!(h.sent_publishes()[0].retain, given);
    }
}

#[test]
fn deliver_carries_every_subscription_identifier_in_v5() {
    let mut h = Harness::connected(v5("c"));
    let ids = [1, 7, 300, 16_384, 2_097_152, 268_435_455];
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce] {
        h.deliver_with(
            &message("a", b"x"),
            Delivery {
                qos,
                retain: false,
                ids: &ids,
                expires_at: None,
            },
        );
        assert_eq!(
            h.sent_publishes()[0].properties.subscription_identifiers,
            ids
        );
    }
}

#[test]
fn deliver_carries_no_subscription_identifiers_in_v3() {
    let mut h = Harness::connected(v3("c"));
    h.deliver_with(
        &message("a", b"x"),
        Delivery {
            qos: QoS::AtLeastOnce,
            retain: false,
            ids: &[1, 2, 3, 4, 5, 6],
            expires_at: None,
        },
    );
    assert!(h.sent_publishes()[0]
        .properties
        .subscription_identifiers
        .is_empty());
}

#[test]
fn deliver_writes_the_expiry_left() {
    let mut h = Harness::connected(resumable().receive_max(1));
    let delivery = |at: u64| Delivery {
        qos: QoS::AtLeastOnce,
        retain: false,
        ids: &[],
        expires_at: Some(Tick(at)),
    };
    h.deliver_with(&message("a", b"1"), delivery(10_000));
    assert_eq!(
        h.sent_publishes()[0].properties.message_expiry_interval,
        Some(10)
    );
    h.deliver_with(&message("a", b"2"), delivery(30_000));
    assert!(h.sent().is_empty());
    h.advance(4_500);
    h.packet(puback(1));
    // 25.5 s left, rounded up.
    assert_eq!(
        h.sent_publishes()[0].properties.message_expiry_interval,
        Some(26)
    );
}

#[test]
fn deliver_of_an_expired_message_is_dropped_at_every_qos() {
    let mut h = Harness::connected(v5("c"));
    h.advance(10_000);
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce] {
        let at = |t: u64| Delivery {
            qos,
            retain: false,
            ids: &[],
            expires_at: Some(Tick(t)),
        };
        // MQTT-3.3.2-5: its expiry has passed before onward delivery began.
        h.deliver_with(&message("a", b"x"), at(9_999));
        assert!(h.sent().is_empty(), "{qos:?}");
        assert_eq!(h.dropped(), 1, "{qos:?}");
        // Expiring right now is not expired yet: sent with 0 left.
        h.deliver_with(&message("a", b"x"), at(10_000));
        assert_eq!(
            h.sent_publishes()[0].properties.message_expiry_interval,
            Some(0)
        );
    }
}

#[test]
fn deliver_qos0_while_offline_is_dropped() {
    let mut h = Harness::connected(resumable());
    h.lost(CloseCause::NetworkError);
    h.deliver(&message("a", b"x"), QoS::AtMostOnce);
    assert!(h.actions().is_empty());
    assert_eq!(h.dropped(), 1);
    h.connect(resumable());
    assert_eq!(h.trace(), ["ConnAck"]);
}

#[test]
fn deliver_qos1_while_offline_is_queued_and_sent_on_resume() {
    let mut h = Harness::connected(resumable());
    h.lost(CloseCause::NetworkError);
    h.deliver(&message("a", b"1"), QoS::AtLeastOnce);
    h.deliver(&message("b", b"2"), QoS::AtLeastOnce);
    assert!(h.actions().is_empty());
    assert_eq!(h.dropped(), 0);
    assert_eq!(h.session.outbound_len(), (0, 2));
    h.connect(resumable());
    assert_eq!(h.trace(), ["ConnAck", "Publish(a)", "Publish(b)"]);
    let sent = h.sent_publishes();
    assert_eq!(ids(&sent), [1, 2]);
    assert!(sent.iter().all(|p| !p.dup && p.qos == QoS::AtLeastOnce));
    assert_eq!(h.session.outbound_len(), (2, 0));
}

#[test]
fn deliver_queued_message_that_expires_offline_is_dropped_and_counted_on_resume() {
    let mut h = Harness::connected(resumable());
    h.lost(CloseCause::NetworkError);
    let expiring = |at: u64| Delivery {
        qos: QoS::AtLeastOnce,
        retain: false,
        ids: &[],
        expires_at: Some(Tick(at)),
    };
    h.deliver_with(&sized("a", 1, b'1'), expiring(5_000));
    h.deliver_with(&sized("a", 1, b'2'), expiring(50_000));
    h.advance(10_000);
    h.connect(resumable());
    assert_eq!(tags(&h), b"2");
    assert_eq!(h.dropped(), 1);
    assert_eq!(
        h.sent_publishes()[0].properties.message_expiry_interval,
        Some(40)
    );
}

#[test]
fn deliveries_after_a_close_wait_for_the_next_connection() {
    let mut h = Harness::connected(resumable());
    h.publish(publish("", QoS::AtMostOnce, b"x"));
    assert_eq!(h.closed(), Some(CloseCause::ProtocolError));
    // The link is closing: nothing more is written to it (the harness
    // would fail on a write after Close).
    h.deliver(&sized("a", 1, b'0'), QoS::AtMostOnce);
    assert_eq!(h.dropped(), 1);
    h.deliver(&sized("a", 1, b'1'), QoS::AtLeastOnce);
    assert!(h.actions().is_empty());
    h.lost(CloseCause::ProtocolError);
    h.connect(resumable());
    assert_eq!(tags(&h), b"1");
}

#[test]
fn deliver_queue_is_bounded() {
    let policy = ServerPolicy {
        max_queued_messages: 2,
        ..policy()
    };
    let mut h = Harness::connected_with(policy, resumable());
    h.lost(CloseCause::NetworkError);
    for tag in [b'1', b'2', b'3'] {
        h.deliver(&sized("a", 1, tag), QoS::AtLeastOnce);
    }
    assert_eq!(h.dropped_total(), 1);
    h.connect(resumable());
    assert_eq!(tags(&h), b"12");
}

#[test]
fn deliver_window_full_queues_and_puback_sends_the_next() {
    let mut h = Harness::connected(v5("c").receive_max(1));
    h.deliver(&sized("a", 1, b'1'), QoS::AtLeastOnce);
    h.deliver(&sized("a", 1, b'2'), QoS::AtLeastOnce);
    assert!(h.sent().is_empty());
    assert_eq!(h.session.outbound_len(), (1, 1));
    h.packet(puback(1));
    assert_eq!(tags(&h), b"2");
    assert_eq!(ids(&h.sent_publishes()), [2]);
    // A stray PUBACK changes nothing.
    h.packet(puback(1));
    assert!(h.actions().is_empty());
}

#[test]
fn deliver_qos2_flow_pubrec_pubrel_pubcomp() {
    let mut h = Harness::connected(v5("c").receive_max(1));
    h.deliver(&sized("a", 1, b'1'), QoS::ExactlyOnce);
    h.deliver(&sized("a", 1, b'2'), QoS::ExactlyOnce);
    h.packet(pubrec(1));
    assert_eq!(h.trace(), ["PubRel(1)"]);
    // Still counted until PUBCOMP.
    assert_eq!(h.session.outbound_len(), (1, 1));
    h.packet(pubcomp(1));
    assert_eq!(h.trace(), ["Publish(a)"]);
    assert_eq!(tags(&h), b"2");
}

#[test]
fn deliver_qos2_pubrec_with_an_error_ends_the_flow() {
    let mut h = Harness::connected(v5("c").receive_max(1));
    h.deliver(&sized("a", 1, b'1'), QoS::ExactlyOnce);
    h.deliver(&sized("a", 1, b'2'), QoS::ExactlyOnce);
    h.packet(Packet::PubRec(PubRec {
        packet_id: 1,
        code: ReasonCode::QUOTA_EXCEEDED,
        properties: Properties::default(),
    }));
    // No PUBREL; the window slot goes to the next message.
    assert_eq!(h.trace(), ["Publish(a)"]);
    assert_eq!(tags(&h), b"2");
}

#[test]
fn deliver_pubrec_for_an_unknown_id_gets_pubrel_0x92() {
    let mut h = Harness::connected(v5("c"));
    h.deliver(&sized("a", 1, b'1'), QoS::ExactlyOnce);
    h.packet(pubrec(9));
    let Packet::PubRel(rel) = h.sent()[0] else {
        panic!("{:?}", h.trace())
    };
    assert_eq!(
        (rel.packet_id, rel.code),
        (9, ReasonCode::PACKET_IDENTIFIER_NOT_FOUND)
    );
}

// ----- outbound topic aliases -----

#[test]
fn outbound_first_publish_carries_topic_and_alias_later_ones_an_empty_topic() {
    let mut h = Harness::connected(v5("c").alias_max(5));
    let mut got = Vec::new();
    for topic in ["a/b", "a/b", "c", "a/b", "c"] {
        h.deliver(&message(topic, b"x"), QoS::AtMostOnce);
        let p = h.sent_publishes()[0];
        got.push((
            String::from_utf8_lossy(&p.topic).into_owned(),
            p.properties.topic_alias,
        ));
        assert_eq!(h.sent_topics(), [topic.as_bytes()]);
    }
    let expected = [
        ("a/b", Some(1)),
        ("", Some(1)),
        ("c", Some(2)),
        ("", Some(1)),
        ("", Some(2)),
    ];
    let expected: Vec<(String, Option<u16>)> = expected
        .iter()
        .map(|(t, a)| ((*t).to_owned(), *a))
        .collect();
    assert_eq!(got, expected);
}

#[test]
fn outbound_aliases_stop_at_the_client_topic_alias_maximum() {
    let mut h = Harness::connected(v5("c").alias_max(2));
    let mut aliases = Vec::new();
    for topic in ["a", "b", "c", "c", "a"] {
        h.deliver(&message(topic, b"x"), QoS::AtLeastOnce);
        let p = h.sent_publishes()[0];
        aliases.push(p.properties.topic_alias);
        assert_eq!(h.sent_topics(), [topic.as_bytes()]);
    }
    assert_eq!(aliases, [Some(1), Some(2), None, None, Some(1)]);
}

#[test]
fn outbound_aliases_are_not_used_in_v3() {
    // A Topic Alias Maximum cannot reach a v3 session; even if one were set
    // it must not be used.
    let mut h = Harness::connected(v3("c").alias_max(5));
    for _ in 0..2 {
        h.deliver(&message("a/b", b"x"), QoS::AtMostOnce);
        let p = h.sent_publishes()[0];
        assert_eq!(
            (&p.topic[..], p.properties.topic_alias),
            (&b"a/b"[..], None)
        );
    }
}

#[test]
fn outbound_aliases_are_not_used_without_a_client_maximum() {
    let mut h = Harness::connected(v5("c"));
    h.deliver(&message("a/b", b"x"), QoS::AtMostOnce);
    h.deliver(&message("a/b", b"x"), QoS::AtMostOnce);
    assert_eq!(h.sent_publishes()[0].properties.topic_alias, None);
}

#[test]
fn outbound_aliases_start_over_on_a_new_connection() {
    let mut h = Harness::connected(resumable().alias_max(5));
    h.deliver(&message("a/b", b"x"), QoS::AtMostOnce);
    h.lost(CloseCause::NetworkError);
    h.connect(resumable().alias_max(5));
    h.deliver(&message("a/b", b"x"), QoS::AtMostOnce);
    let p = h.sent_publishes()[0];
    assert_eq!(
        (&p.topic[..], p.properties.topic_alias),
        (&b"a/b"[..], Some(1))
    );
}

#[test]
fn outbound_alias_never_pushes_a_publish_over_the_maximum_packet_size() {
    let v = ProtocolVersion::V5;
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce] {
        // Exactly the client's limit without an alias: it goes as is, and
        // the alias is not spent on it.
        let exact = wire_len("topic/x", qos, 20, v);
        let mut h = Harness::connected(v5("c").alias_max(5).max_packet(exact));
        h.deliver(&sized("topic/x", 20, b'1'), qos);
        let p = h.sent_publishes()[0].clone();
        assert_eq!(
            (&p.topic[..], p.properties.topic_alias),
            (&b"topic/x"[..], None)
        );
        // A smaller one sets the alias ...
        h.deliver(&sized("topic/x", 10, b'2'), qos);
        assert_eq!(h.sent_publishes()[0].properties.topic_alias, Some(1));
        // ... which then makes a full-size one smaller.
        h.deliver(&sized("topic/x", 20, b'3'), qos);
        let p = h.sent_publishes()[0].clone();
        assert_eq!(
            (&p.topic[..], p.properties.topic_alias),
            (&b""[..], Some(1))
        );
        assert_eq!(h.dropped_total(), 0);
        if qos == QoS::AtLeastOnce {
            assert_eq!(h.session.outbound_len(), (3, 0));
        }
    }
}

#[test]
fn outbound_alias_for_a_short_topic_is_skipped_when_it_does_not_fit() {
    // For a one-byte topic an empty topic plus alias is longer than the
    // topic itself.
    let v = ProtocolVersion::V5;
    let exact = wire_len("t", QoS::AtMostOnce, 20, v);
    let mut h = Harness::connected(v5("c").alias_max(5).max_packet(exact));
    h.deliver(&sized("t", 1, b'1'), QoS::AtMostOnce);
    assert_eq!(h.sent_publishes()[0].properties.topic_alias, Some(1));
    h.deliver(&sized("t", 20, b'2'), QoS::AtMostOnce);
    let p = h.sent_publishes()[0].clone();
    assert_eq!((&p.topic[..], p.properties.topic_alias), (&b"t"[..], None));
    assert_eq!(h.dropped_total(), 0);
}

// ----- Maximum Packet Size on every path (MQTT-3.1.2-25) -----

#[test]
fn max_packet_size_discards_a_live_qos0_delivery() {
    let v = ProtocolVersion::V5;
    let limit = wire_len("a", QoS::AtMostOnce, 10, v);
    let mut h = Harness::connected(v5("c").max_packet(limit));
    h.deliver(&sized("a", 10, b'1'), QoS::AtMostOnce);
    assert_eq!(tags(&h), b"1");
    h.deliver(&sized("a", 11, b'2'), QoS::AtMostOnce);
    assert!(h.actions().is_empty());
    assert_eq!(h.dropped(), 1);
}

#[test]
fn max_packet_size_discards_a_live_qos1_delivery_without_holding_a_slot() {
    let v = ProtocolVersion::V5;
    let limit = wire_len("a", QoS::AtLeastOnce, 10, v);
    let mut h = Harness::connected(v5("c").max_packet(limit).receive_max(1));
    h.deliver(&sized("a", 11, b'1'), QoS::AtLeastOnce);
    assert!(h.actions().is_empty());
    assert_eq!(h.dropped(), 1);
    assert_eq!(h.session.outbound_len(), (0, 0));
    // The window of one is still free.
    h.deliver(&sized("a", 10, b'2'), QoS::AtLeastOnce);
    assert_eq!(tags(&h), b"2");
}

#[test]
fn max_packet_size_discards_a_queued_message_sent_after_a_puback() {
    let v = ProtocolVersion::V5;
    let limit = wire_len("a", QoS::AtLeastOnce, 10, v);
    let mut h = Harness::connected(v5("c").max_packet(limit).receive_max(1));
    h.deliver(&sized("a", 10, b'1'), QoS::AtLeastOnce);
    h.deliver(&sized("a", 50, b'2'), QoS::AtLeastOnce);
    h.deliver(&sized("a", 10, b'3'), QoS::AtLeastOnce);
    assert_eq!(h.session.outbound_len(), (1, 2));
    h.packet(puback(1));
    // "2" is discarded as if delivered; "3" takes the window.
    assert_eq!(tags(&h), b"3");
    assert_eq!(h.dropped(), 1);
    assert_eq!(h.session.outbound_len(), (1, 0));
}

#[test]
fn max_packet_size_discards_messages_queued_offline_when_they_are_sent_on_resume() {
    let v = ProtocolVersion::V5;
    let limit = wire_len("a", QoS::AtLeastOnce, 10, v);
    let mut h = Harness::connected(resumable());
    h.lost(CloseCause::NetworkError);
    h.deliver(&sized("a", 10, b'1'), QoS::AtLeastOnce);
    h.deliver(&sized("a", 50, b'2'), QoS::AtLeastOnce);
    h.deliver(&sized("a", 10, b'3'), QoS::AtLeastOnce);
    assert_eq!(h.dropped_total(), 0);
    h.connect(resumable().max_packet(limit));
    assert_eq!(tags(&h), b"13");
    assert_eq!(h.dropped(), 1);
    assert_eq!(h.session.outbound_len(), (2, 0));
}

#[test]
fn max_packet_size_discards_an_inflight_message_on_a_resume_with_a_smaller_limit() {
    let v = ProtocolVersion::V5;
    let limit = wire_len("a", QoS::AtLeastOnce, 10, v);
    let mut h = Harness::connected(resumable().receive_max(1));
    h.deliver(&sized("a", 50, b'1'), QoS::AtLeastOnce);
    h.deliver(&sized("a", 10, b'2'), QoS::AtLeastOnce);
    assert_eq!(tags(&h), b"");
    assert_eq!(h.session.outbound_len(), (1, 1));
    h.lost(CloseCause::NetworkError);
    h.connect(resumable().receive_max(1).max_packet(limit));
    // The re-send of "1" no longer fits: discarded, its slot freed for "2".
    assert_eq!(h.trace(), ["ConnAck", "Publish(a)"]);
    let p = h.sent_publishes()[0].clone();
    assert_eq!((p.payload[0], p.dup), (b'2', false));
    assert_eq!(h.dropped(), 1);
    assert_eq!(h.session.outbound_len(), (1, 0));
    h.packet(puback(p.packet_id));
    assert_eq!(h.session.outbound_len(), (0, 0));
    // No phantom re-sent (and dropped) on every later reconnection.
    for _ in 0..2 {
        h.lost(CloseCause::NetworkError);
        h.connect(resumable().receive_max(1).max_packet(limit));
        assert_eq!(h.trace(), ["ConnAck"]);
        assert_eq!(h.dropped(), 0);
    }
}

#[test]
fn max_packet_size_counts_subscription_identifiers() {
    let v = ProtocolVersion::V5;
    let limit = wire_len("a", QoS::AtMostOnce, 10, v);
    let mut h = Harness::connected(v5("c").max_packet(limit));
    h.deliver_with(
        &sized("a", 10, b'1'),
        Delivery {
            qos: QoS::AtMostOnce,
            retain: false,
            ids: &[1],
            expires_at: None,
        },
    );
    assert!(h.sent().is_empty());
    assert_eq!(h.dropped(), 1);
}

// ----- re-sends on resume -----

#[test]
fn resume_resends_dup_publishes_then_pubrels_in_pubrec_order_then_the_queue() {
    let mut h = Harness::connected(resumable().receive_max(5));
    let plan = [
        (b'1', QoS::AtLeastOnce),
        (b'2', QoS::ExactlyOnce),
        (b'3', QoS::ExactlyOnce),
        (b'4', QoS::ExactlyOnce),
        (b'5', QoS::AtLeastOnce),
    ];
    for (tag, qos) in plan {
        h.deliver(&sized("a", 1, tag), qos);
    }
    // PUBRECs out of send order.
    h.packet(pubrec(4));
    assert_eq!(h.trace(), ["PubRel(4)"]);
    h.packet(pubrec(2));
    h.lost(CloseCause::NetworkError);
    h.deliver(&sized("a", 1, b'6'), QoS::AtLeastOnce);
    h.deliver(&sized("a", 1, b'7'), QoS::ExactlyOnce);
    h.connect(resumable().receive_max(10));
    assert_eq!(
        h.trace(),
        [
            "ConnAck",
            "Publish(a)",
            "Publish(a)",
            "Publish(a)",
            "PubRel(4)",
            "PubRel(2)",
            "Publish(a)",
            "Publish(a)"
        ]
    );
    let sent = h.sent_publishes();
    let summary: Vec<(u8, u16, bool)> = sent
        .iter()
        .map(|p| (p.payload[0], p.packet_id, p.dup))
        .collect();
    assert_eq!(
        summary,
        [
            (b'1', 1, true),
            (b'3', 3, true),
            (b'5', 5, true),
            (b'6', 6, false),
            (b'7', 7, false)
        ]
    );
}

#[test]
fn resume_respects_a_smaller_receive_maximum() {
    let mut h = Harness::connected(resumable().receive_max(3));
    for tag in [b'1', b'2', b'3'] {
        h.deliver(&sized("a", 1, tag), QoS::AtLeastOnce);
    }
    h.lost(CloseCause::NetworkError);
    h.deliver(&sized("a", 1, b'4'), QoS::AtLeastOnce);
    h.connect(resumable().receive_max(1));
    // All inflight are re-sent; nothing new until the window drains.
    assert_eq!(tags(&h), b"123");
    h.packet(puback(1));
    h.packet(puback(2));
    assert!(h.sent().is_empty());
    h.packet(puback(3));
    assert_eq!(tags(&h), b"4");
}

// ----- the zero-copy path -----

/// Delivers `m` at QoS 0 with no identifiers and returns the raw actions
/// (before the harness turns a `Forward` into the packet it writes).
fn raw_actions(session: &mut Session, m: &Publish, ids: &[u32]) -> Vec<Action> {
    let mut out = Outbox::new();
    let delivery = Delivery {
        qos: QoS::AtMostOnce,
        retain: m.retain,
        ids,
        expires_at: None,
    };
    session.deliver(m, delivery, &ServerPolicy::default(), Tick(0), &mut out);
    out.drain().collect()
}

#[test]
fn an_unchanged_qos0_message_is_forwarded_without_a_copy_and_a_changed_one_is_not() {
    let mut h = Harness::connected(v5("c"));
    let mut m = message("a", b"x");
    m.qos = QoS::AtMostOnce;
    assert_eq!(raw_actions(&mut h.session, &m, &[]), vec![Action::Forward]);
    // A subscription identifier changes the packet: a copy is written.
    let changed = raw_actions(&mut h.session, &m, &[7]);
    assert!(
        matches!(&changed[..], [Action::SendPublish(p)] if p.properties.subscription_identifiers == [7])
    );
    // So does an outbound topic alias.
    let mut aliased = Harness::connected(v5("c").alias_max(4));
    let actions = raw_actions(&mut aliased.session, &m, &[]);
    assert!(
        matches!(&actions[..], [Action::SendPublish(p)] if p.properties.topic_alias == Some(1))
    );
}

#[test]
fn a_forwarded_message_still_respects_the_maximum_packet_size() {
    let mut h = Harness::connected(v5("c").max_packet(32));
    let mut m = sized("a", 64, b'x');
    m.qos = QoS::AtMostOnce;
    assert!(raw_actions(&mut h.session, &m, &[]).is_empty());
    h.deliver(&m, QoS::AtMostOnce);
    assert!(h.sent_publishes().is_empty());
    assert_eq!(h.dropped(), 1);
}
