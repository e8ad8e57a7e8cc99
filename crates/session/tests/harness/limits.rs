//! Server limits (issue 12): subscriptions, topic levels, the outbound
//! window, the queue's byte budget, outbound aliases and session expiry.

use crate::util::*;

fn limits_hit(h: &Harness) -> Vec<Limit> {
    h.actions()
        .iter()
        .filter_map(|a| match a {
            Action::LimitHit(l) => Some(*l),
            _ => None,
        })
        .collect()
}

#[test]
fn subscriptions_beyond_the_limit_get_quota_exceeded() {
    let policy = ServerPolicy {
        max_subscriptions: 2,
        ..policy()
    };
    let mut h = Harness::connected_with(policy.clone(), v5("c"));
    let q1 = opts(QoS::AtLeastOnce);
    h.packet(subscribe(1, &[("a", q1), ("b", q1), ("c", q1)]));
    assert_eq!(suback_codes(&h), [0x01, 0x01, 0x97]);
    assert_eq!(limits_hit(&h), [Limit::Subscriptions]);
    assert_eq!(h.routes(), [&b"a"[..], b"b"]);
    // Replacing an existing subscription is not a new one.
    h.packet(subscribe(2, &[("a", opts(QoS::ExactlyOnce))]));
    assert_eq!(suback_codes(&h), [0x02]);
    // Nor may one packet repeat a filter past the limit (each repeat
    // would query the retained store again).
    h.packet(subscribe(3, &[("a", q1), ("a", q1), ("a", q1)]));
    assert_eq!(suback_codes(&h), [0x01, 0x01, 0x97]);
    let retained = h
        .actions()
        .iter()
        .filter(|a| matches!(a, Action::SendRetained { .. }))
        .count();
    assert_eq!(retained, 2);
    // v3 has only 0x80.
    let mut h = Harness::connected_with(policy, v3("c"));
    h.packet(subscribe(1, &[("a", q1), ("b", q1), ("c", q1)]));
    assert_eq!(suback_codes(&h), [0x01, 0x01, 0x80]);
}

#[test]
fn filters_deeper_than_the_limit_are_refused() {
    let policy = ServerPolicy {
        max_topic_levels: 3,
        ..policy()
    };
    let mut h = Harness::connected_with(policy, v5("c"));
    let q0 = opts(QoS::AtMostOnce);
    let deep = "a/".repeat(30_000) + "#";
    h.packet(subscribe(
        1,
        &[("a/b/c", q0), ("a/b/c/d", q0), (deep.as_str(), q0)],
    ));
    assert_eq!(suback_codes(&h), [0x00, 0x8F, 0x8F]);
    assert_eq!(limits_hit(&h), [Limit::TopicLevels, Limit::TopicLevels]);
    assert_eq!(h.routes(), [&b"a/b/c"[..]]);
}

#[test]
fn a_publish_deeper_than_the_limit_closes_with_0x90() {
    let policy = ServerPolicy {
        max_topic_levels: 3,
        ..policy()
    };
    let mut h = Harness::connected_with(policy, v5("c"));
    h.publish(publish("a/b/c", QoS::AtMostOnce, b"ok"));
    assert!(h.routed().len() == 1 && h.link_open());
    h.publish(publish("a/b/c/d", QoS::AtLeastOnce, b"deep").id(1));
    assert_eq!(h.routed().len(), 0, "not routed");
    assert_eq!(h.disconnect(), Some(ReasonCode::TOPIC_NAME_INVALID));
    assert_eq!(h.closed(), Some(CloseCause::ProtocolError));
    assert_eq!(limits_hit(&h), [Limit::TopicLevels]);
}

#[test]
fn the_outbound_window_is_capped_whatever_the_receive_maximum() {
    let policy = ServerPolicy {
        max_inflight_out: 3,
        ..policy()
    };
    // v3 has no Receive Maximum: without the cap it would be 65535.
    for connect in [v3("c"), v5("c").receive_max(100)] {
        let mut h = Harness::connected_with(policy.clone(), connect);
        for i in 0..5u8 {
            h.deliver(&message("t", &[i]), QoS::AtLeastOnce);
        }
        assert_eq!(h.session.outbound_len(), (3, 2));
    }
    // A smaller Receive Maximum still wins.
    let mut h = Harness::connected_with(policy, v5("c").receive_max(2));
    for i in 0..5u8 {
        h.deliver(&message("t", &[i]), QoS::AtLeastOnce);
    }
    assert_eq!(h.session.outbound_len(), (2, 3));
}

#[test]
fn the_queue_is_bounded_in_bytes_inflight_included() {
    let policy = ServerPolicy {
        max_inflight_out: 1,
        max_queued_messages: 1000,
        max_queued_bytes: 10 * 1024,
        ..policy()
    };
    let mut h = Harness::connected_with(policy, v5("c"));
    let kib = vec![7u8; 1024];
    for _ in 0..20 {
        h.deliver(&message("t", &kib), QoS::AtLeastOnce);
    }
    let (inflight, queued) = h.session.outbound_len();
    assert!(
        inflight + queued < 10 && inflight + queued >= 8,
        "{inflight} + {queued}"
    );
    assert!(limits_hit(&h).iter().all(|l| *l == Limit::QueuedBytes));
    assert!(!limits_hit(&h).is_empty());
    // Acknowledging frees bytes: a new message fits again.
    let before = h.session.outbound_len();
    h.packet(puback(1));
    h.deliver(&message("t", &kib), QoS::AtLeastOnce);
    assert_eq!(h.session.outbound_len(), before);
}

/// The alias each delivery of `topics` carried, in order.
fn aliases_of(h: &mut Harness, topics: &[&str]) -> Vec<Option<u16>> {
    topics
        .iter()
        .map(|topic| {
            h.deliver(&message(topic, b"x"), QoS::AtMostOnce);
            h.sent_publishes()[0].properties.topic_alias
        })
        .collect()
}

#[test]
fn outbound_aliases_respect_the_server_cap_and_byte_budget() {
    let policy = ServerPolicy {
        max_topic_aliases_out: 2,
        max_topic_alias_bytes: 100,
        ..policy()
    };
    let mut h = Harness::connected_with(policy.clone(), v5("c").alias_max(10));
    let aliases = aliases_of(&mut h, &["a", "b", "c", "a"]);
    assert_eq!(aliases, [Some(1), Some(2), None, Some(1)]);
    // The byte budget: a topic that would overrun it is sent in full.
    let long = "x".repeat(90);
    let mut h = Harness::connected_with(policy, v5("c").alias_max(10));
    let aliases = aliases_of(&mut h, &[&long, "yyyyyyyyyyyyyyyyyyyy", "z"]);
    assert_eq!(aliases, [Some(1), None, Some(2)]);
}

#[test]
fn disconnect_cannot_raise_expiry_past_the_cap() {
    let policy = ServerPolicy {
        max_session_expiry_secs: 60,
        ..policy()
    };
    let mut h = Harness::connected_with(policy, v5("c").expiry(30));
    let properties = Properties {
        session_expiry_interval: Some(u32::MAX),
        ..Properties::default()
    };
    h.packet(Packet::Disconnect(Disconnect {
        code: ReasonCode::SUCCESS,
        properties,
    }));
    assert_eq!(h.session.session_expiry_secs(), 60);
}
