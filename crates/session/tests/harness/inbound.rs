//! PUBLISH from the client: the checks, the QoS 1/2 flows, inbound aliases.

use crate::util::*;

// ----- QoS flows -----

#[test]
fn qos0_publish_is_routed_without_an_answer() {
    let mut h = Harness::connected(v5("c"));
    h.publish(publish("a/b", QoS::AtMostOnce, b"x"));
    assert_eq!(h.trace(), ["Route(a/b)"]);
}

#[test]
fn qos1_publish_is_routed_then_acknowledged() {
    let mut h = Harness::connected(v5("c"));
    h.publish(publish("a/b", QoS::AtLeastOnce, b"x").id(7).dup());
    // The route goes before the PUBACK that acknowledges it.
    assert_eq!(h.trace(), ["Route(a/b)", "PubAck(7)"]);
    // DUP and the packet id belong to the client's hop (MQTT-3.3.1-3).
    let routed = h.routed()[0];
    assert_eq!((routed.dup, routed.packet_id), (false, 0));
    assert_eq!(routed.qos, QoS::AtLeastOnce);
}

#[test]
fn qos2_publish_is_routed_exactly_once_until_pubrel() {
    let mut h = Harness::connected(v5("c"));
    h.publish(publish("a", QoS::ExactlyOnce, b"x").id(3));
    assert_eq!(h.trace(), ["Route(a)", "PubRec(3)"]);
    // A repeat before PUBREL, with or without DUP: PUBREC again, no route
    // (MQTT-4.3.3-10).
    h.publish(publish("a", QoS::ExactlyOnce, b"x").id(3).dup());
    assert_eq!(h.trace(), ["PubRec(3)"]);
    h.publish(publish("a", QoS::ExactlyOnce, b"x").id(3));
    assert_eq!(h.trace(), ["PubRec(3)"]);
    h.packet(pubrel(3));
    assert_eq!(h.trace(), ["PubComp(3)"]);
    let Packet::PubComp(comp) = h.sent()[0] else {
        unreachable!()
    };
    assert_eq!(comp.code, ReasonCode::SUCCESS);
    // Released: the same id is a new message.
    h.publish(publish("a", QoS::ExactlyOnce, b"y").id(3));
    assert_eq!(h.trace(), ["Route(a)", "PubRec(3)"]);
}

#[test]
fn pubrel_for_an_unknown_id_gets_pubcomp_0x92() {
    let mut h = Harness::connected(v5("c"));
    h.packet(pubrel(9));
    let Packet::PubComp(comp) = h.sent()[0] else {
        panic!("{:?}", h.trace())
    };
    assert_eq!(comp.code, ReasonCode::PACKET_IDENTIFIER_NOT_FOUND);
}

#[test]
fn qos2_receive_state_survives_a_resume() {
    let mut h = Harness::connected(v5("c").clean(false).expiry(60));
    h.publish(publish("a", QoS::ExactlyOnce, b"x").id(4));
    h.lost(CloseCause::NetworkError);
    h.connect(v5("c").clean(false).expiry(60));
    // The client re-sends after reconnecting: still not routed twice.
    h.publish(publish("a", QoS::ExactlyOnce, b"x").id(4).dup());
    assert_eq!(h.trace(), ["PubRec(4)"]);
}

// ----- checks -----

#[test]
fn client_publish_with_a_subscription_identifier_is_0x82() {
    let mut h = Harness::connected(v5("c"));
    let mut p = publish("a", QoS::AtLeastOnce, b"x");
    p.properties.subscription_identifiers = vec![5];
    h.publish(p);
    // MQTT-3.3.4-6; nothing routed, nothing acknowledged.
    h.assert_violation(Violation::SubscriptionIdentifierFromClient, 0x82);
    assert_eq!(h.trace().len(), 3);
}

#[test]
fn client_publish_above_the_maximum_qos_is_0x9b() {
    let policy = ServerPolicy {
        max_qos: QoS::AtLeastOnce,
        ..policy()
    };
    let mut h = Harness::connected_with(policy, v5("c"));
    assert_eq!(h.connack().properties.maximum_qos, Some(1));
    h.publish(publish("a", QoS::AtLeastOnce, b"x"));
    assert_eq!(h.trace(), ["Route(a)", "PubAck(1)"]);
    h.publish(publish("a", QoS::ExactlyOnce, b"x").id(2));
    h.assert_violation(Violation::QosNotSupported, 0x9B);
    assert!(h.routed().is_empty());
}

#[test]
fn receive_maximum_exceeded_is_0x93() {
    let policy = ServerPolicy {
        receive_maximum: 2,
        ..policy()
    };
    let mut h = Harness::connected_with(policy, v5("c"));
    assert_eq!(h.connack().properties.receive_maximum, Some(2));
    h.publish(publish("a", QoS::ExactlyOnce, b"1").id(1));
    h.publish(publish("a", QoS::ExactlyOnce, b"2").id(2));
    assert_eq!(h.trace(), ["Route(a)", "PubRec(2)"]);
    h.publish(publish("a", QoS::ExactlyOnce, b"3").id(3));
    h.assert_violation(Violation::ReceiveMaximumExceeded, 0x93);
    assert!(h.routed().is_empty());
}

#[test]
fn a_v3_session_resumed_as_v5_is_held_to_the_announced_receive_maximum() {
    let policy = ServerPolicy {
        receive_maximum: 1,
        ..policy()
    };
    let mut h = Harness::connected_with(policy, v3("c").clean(false));
    // v3 is told no Receive Maximum and is not held to one.
    h.publish(publish("a", QoS::ExactlyOnce, b"1").id(1));
    h.publish(publish("a", QoS::ExactlyOnce, b"2").id(2));
    assert_eq!(h.trace(), ["Route(a)", "PubRec(2)"]);
    h.lost(CloseCause::NetworkError);
    h.connect(v5("c").clean(false).expiry(60));
    h.packet(pubrel(1));
    h.packet(pubrel(2));
    h.publish(publish("a", QoS::ExactlyOnce, b"3").id(3));
    h.publish(publish("a", QoS::ExactlyOnce, b"4").id(4));
    h.assert_violation(Violation::ReceiveMaximumExceeded, 0x93);
}

#[test]
fn a_pubrel_frees_the_receive_window() {
    let policy = ServerPolicy {
        receive_maximum: 1,
        ..policy()
    };
    let mut h = Harness::connected_with(policy, v5("c"));
    h.publish(publish("a", QoS::ExactlyOnce, b"1").id(1));
    h.packet(pubrel(1));
    h.publish(publish("a", QoS::ExactlyOnce, b"2").id(2));
    assert_eq!(h.trace(), ["Route(a)", "PubRec(2)"]);
}

// ----- inbound topic aliases -----

#[test]
fn inbound_topic_alias_is_set_then_used() {
    let mut h = Harness::connected(v5("c"));
    assert_eq!(h.connack().properties.topic_alias_maximum, Some(10));
    h.publish(publish("a/b", QoS::AtMostOnce, b"1").alias(3));
    assert_eq!(h.trace(), ["Route(a/b)"]);
    // The alias is the connection's business: not routed on.
    assert_eq!(h.routed()[0].properties.topic_alias, None);
    h.publish(publish("a/b", QoS::AtLeastOnce, b"2").no_topic().alias(3));
    assert_eq!(h.trace(), ["Route(a/b)", "PubAck(1)"]);
    assert_eq!(h.routed()[0].properties.topic_alias, None);
    // Set again to another topic.
    h.publish(publish("c", QoS::AtMostOnce, b"3").alias(3));
    h.publish(publish("", QoS::AtMostOnce, b"4").alias(3));
    assert_eq!(h.trace(), ["Route(c)"]);
}

#[test]
fn inbound_unknown_topic_alias_is_a_protocol_error_0x82() {
    let mut h = Harness::connected(v5("c"));
    h.publish(publish("a", QoS::AtMostOnce, b"1").alias(1));
    h.publish(publish("", QoS::AtMostOnce, b"2").alias(2));
    h.assert_violation(Violation::TopicAliasUnknown, 0x82);
    assert!(h.routed().is_empty());
}

#[test]
fn inbound_topic_alias_0_is_0x94() {
    let mut h = Harness::connected(v5("c"));
    h.publish(publish("a", QoS::AtMostOnce, b"1").alias(0));
    h.assert_violation(Violation::TopicAliasOutOfRange, 0x94);
}

#[test]
fn inbound_topic_alias_above_the_maximum_is_0x94() {
    let mut h = Harness::connected(v5("c"));
    h.publish(publish("a", QoS::AtMostOnce, b"1").alias(10));
    assert_eq!(h.trace(), ["Route(a)"]);
    h.publish(publish("a", QoS::AtMostOnce, b"1").alias(11));
    h.assert_violation(Violation::TopicAliasOutOfRange, 0x94);
}

#[test]
fn inbound_topic_alias_is_0x94_when_the_server_allows_none() {
    let policy = ServerPolicy {
        topic_alias_maximum: 0,
        ..policy()
    };
    let mut h = Harness::connected_with(policy, v5("c"));
    assert_eq!(h.connack().properties.topic_alias_maximum, None);
    h.publish(publish("a", QoS::AtMostOnce, b"1").alias(1));
    h.assert_violation(Violation::TopicAliasOutOfRange, 0x94);
}

#[test]
fn inbound_empty_topic_without_alias_is_0x82() {
    let mut h = Harness::connected(v5("c"));
    h.publish(publish("", QoS::AtMostOnce, b"1"));
    h.assert_violation(Violation::EmptyTopicWithoutAlias, 0x82);
}

#[test]
fn inbound_aliases_do_not_survive_a_reconnection() {
    let mut h = Harness::connected(v5("c").clean(false).expiry(60));
    h.publish(publish("a", QoS::AtMostOnce, b"1").alias(1));
    h.lost(CloseCause::NetworkError);
    h.connect(v5("c").clean(false).expiry(60));
    // MQTT-3.3.2-10: aliases belong to one network connection.
    h.publish(publish("", QoS::AtMostOnce, b"2").alias(1));
    h.assert_violation(Violation::TopicAliasUnknown, 0x82);
}
