//! `$SYS` belongs to the broker (issue 15): a client's PUBLISH to `$SYS`
//! or `$SYS/...` is neither routed nor retained, ACL or not; v5 QoS 1/2
//! get 0x87, v3 is acknowledged as usual, QoS 0 is dropped, and each is
//! counted as a refused write.

use std::sync::Arc;

use ringmq_auth::acl::Acl;

use crate::util::*;

fn ack_code(h: &Harness) -> Option<(&'static str, u8)> {
    h.sent().into_iter().find_map(|p| match p {
        Packet::PubAck(a) => Some(("PubAck", a.code.0)),
        Packet::PubRec(a) => Some(("PubRec", a.code.0)),
        _ => None,
    })
}

fn denied(h: &Harness) -> usize {
    h.trace().iter().filter(|t| **t == "Denied(Write)").count()
}

#[test]
fn v5_publishes_into_sys_get_0x87_and_are_not_routed() {
    let mut h = Harness::connected(v5("c"));
    for topic in ["$SYS", "$SYS/x", "$SYS/broker/uptime"] {
        h.publish(publish(topic, QoS::AtLeastOnce, b"no"));
        assert_eq!(ack_code(&h), Some(("PubAck", 0x87)), "{topic}");
        assert!(h.routed().is_empty());
        assert_eq!(denied(&h), 1);
        h.publish(publish(topic, QoS::ExactlyOnce, b"no"));
        assert_eq!(ack_code(&h), Some(("PubRec", 0x87)), "{topic}");
        assert!(h.routed().is_empty());
        h.publish(publish(topic, QoS::AtMostOnce, b"no"));
        assert!(h.routed().is_empty());
        assert!(h.sent().is_empty());
        assert_eq!(denied(&h), 1);
    }
    // 0x87 ended the QoS 2 flow: the same id routes at once elsewhere.
    h.publish(publish("a/b", QoS::ExactlyOnce, b"yes"));
    assert_eq!(ack_code(&h), Some(("PubRec", 0x00)));
    assert_eq!(payloads(&h.routed()), ["yes"]);
    assert!(h.link_open());
}

#[test]
fn a_retained_publish_into_sys_is_not_retained() {
    let mut h = Harness::connected(v5("c"));
    let mut p = publish("$SYS/broker/version", QoS::AtMostOnce, b"fake");
    p.retain = true;
    h.publish(p);
    // Retaining is the shard's part of routing: nothing routed, nothing kept.
    assert_eq!(h.trace(), ["Denied(Write)"]);
}

#[test]
fn v3_publishes_into_sys_are_acknowledged_but_dropped() {
    let mut h = Harness::connected(v3("c"));
    h.publish(publish("$SYS/x", QoS::AtLeastOnce, b"no"));
    assert_eq!(ack_code(&h), Some(("PubAck", 0x00)));
    assert!(h.routed().is_empty());
    assert_eq!(denied(&h), 1);
    h.publish(publish("$SYS/x", QoS::ExactlyOnce, b"no"));
    assert_eq!(ack_code(&h), Some(("PubRec", 0x00)));
    assert!(h.routed().is_empty());
    h.packet(pubrel(1));
    assert_eq!(h.trace(), ["PubComp(1)"]);
    h.publish(publish("$SYS", QoS::AtMostOnce, b"no"));
    assert_eq!(h.trace(), ["Denied(Write)"]);
}

#[test]
fn sys_is_refused_even_when_the_acl_allows_it() {
    let policy = ServerPolicy {
        acl: Some(Arc::new(
            Acl::parse("topic readwrite #\ntopic readwrite $SYS/#\n").unwrap(),
        )),
        ..policy()
    };
    let mut h = Harness::connected_with(policy, v5("c"));
    h.publish(publish("$SYS/x", QoS::AtLeastOnce, b"no"));
    assert_eq!(ack_code(&h), Some(("PubAck", 0x87)));
    assert!(h.routed().is_empty());
    h.publish(publish("a", QoS::AtLeastOnce, b"yes"));
    assert_eq!(payloads(&h.routed()), ["yes"]);
}

#[test]
fn only_the_sys_level_itself_is_reserved() {
    let mut h = Harness::connected(v5("c"));
    for topic in ["$SYSTEM", "$SYSx/y", "$sys/x", "a/$SYS", "$other/x"] {
        h.publish(publish(topic, QoS::AtLeastOnce, b"ok"));
        assert_eq!(ack_code(&h), Some(("PubAck", 0x00)), "{topic}");
        assert_eq!(payloads(&h.routed()), ["ok"], "{topic}");
    }
}
