//! SUBSCRIBE and UNSUBSCRIBE: validation, grants, the order of effects.

use crate::util::*;

fn unsuback_codes(h: &Harness) -> Vec<u8> {
    h.sent()
        .into_iter()
        .find_map(|p| match p {
            Packet::UnsubAck(s) => Some(s.codes.iter().map(|c| c.0).collect()),
            _ => None,
        })
        .expect("an UNSUBACK")
}

fn grants(h: &Harness) -> Vec<(String, Subscription)> {
    h.actions()
        .iter()
        .filter_map(|a| match a {
            Action::AddRoute { filter, grant } => {
                Some((String::from_utf8_lossy(filter).into_owned(), *grant))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn subscribe_adds_routes_then_subacks_then_sends_retained() {
    let mut h = Harness::connected(v5("c"));
    h.packet(subscribe(
        4,
        &[
            ("a/+", opts(QoS::AtLeastOnce)),
            ("b/#", opts(QoS::ExactlyOnce)),
        ],
    ));
    // A route exists before the SUBACK announces it; retained messages
    // follow the SUBACK (MQTT-3.8.4-4 ordering).
    assert_eq!(
        h.trace(),
        [
            "AddRoute(a/+)",
            "AddRoute(b/#)",
            "SubAck",
            "SendRetained(a/+)",
            "SendRetained(b/#)"
        ]
    );
    assert_eq!(suback_codes(&h), [0x01, 0x02]);
    let Packet::SubAck(suback) = h.sent()[0] else {
        unreachable!()
    };
    assert_eq!(suback.packet_id, 4);
    assert!(h
        .actions()
        .iter()
        .all(|a| !matches!(a, Action::SendRetained { is_new: false, .. })));
}

#[test]
fn subscribe_is_validated_whole_before_any_route_is_added() {
    let mut h = Harness::connected(v5("c"));
    let no_local = SubscriptionOptions {
        no_local: true,
        ..opts(QoS::AtLeastOnce)
    };
    // The offending filter is last: the valid ones before it must not be
    // routed either (MQTT-3.8.3-4).
    h.packet(subscribe(
        1,
        &[
            ("a", opts(QoS::AtLeastOnce)),
            ("b", no_local),
            ("$share/g/c", no_local),
        ],
    ));
    h.assert_violation(Violation::NoLocalOnSharedSubscription, 0x82);
    assert!(grants(&h).is_empty());
    assert!(!h.trace().contains(&"SubAck"));
    assert_eq!(h.session.subscriptions().count(), 0);
}

#[test]
fn subscribe_invalid_filter_is_0x8f_in_v5_and_the_others_are_granted() {
    let mut h = Harness::connected(v5("c"));
    h.packet(subscribe(
        1,
        &[
            ("a", opts(QoS::AtLeastOnce)),
            ("a/#/b", opts(QoS::AtLeastOnce)),
            ("c", opts(QoS::AtMostOnce)),
        ],
    ));
    assert_eq!(suback_codes(&h), [0x01, 0x8F, 0x00]);
    assert_eq!(
        h.trace(),
        [
            "AddRoute(a)",
            "AddRoute(c)",
            "SubAck",
            "SendRetained(a)",
            "SendRetained(c)"
        ]
    );
    assert!(h.session.subscription(b"a/#/b").is_none());
}

#[test]
fn subscribe_invalid_filter_is_0x80_in_v3() {
    let mut h = Harness::connected(v3("c"));
    h.packet(subscribe(
        1,
        &[
            ("a+", opts(QoS::AtLeastOnce)),
            ("b", opts(QoS::ExactlyOnce)),
        ],
    ));
    assert_eq!(suback_codes(&h), [0x80, 0x02]);
    assert_eq!(grants(&h).len(), 1);
}

#[test]
fn subscribe_granted_qos_is_capped_by_the_policy() {
    let policy = ServerPolicy {
        max_qos: QoS::AtLeastOnce,
        ..policy()
    };
    let mut h = Harness::connected_with(policy, v5("c"));
    h.packet(subscribe(
        1,
        &[("a", opts(QoS::ExactlyOnce)), ("b", opts(QoS::AtMostOnce))],
    ));
    assert_eq!(suback_codes(&h), [0x01, 0x00]);
    let granted: Vec<QoS> = grants(&h).iter().map(|(_, g)| g.options.qos).collect();
    assert_eq!(granted, [QoS::AtLeastOnce, QoS::AtMostOnce]);
    assert_eq!(
        h.session.subscription(b"a").map(|s| s.options.qos),
        Some(QoS::AtLeastOnce)
    );
}

#[test]
fn subscribe_keeps_the_options_and_the_subscription_identifier() {
    let mut h = Harness::connected(v5("c"));
    let options = SubscriptionOptions {
        qos: QoS::AtLeastOnce,
        no_local: true,
        retain_as_published: true,
        retain_handling: RetainHandling::SendAtSubscribeIfNew,
    };
    h.packet(subscribe_with_id(1, 42, &[("a", options)]));
    let expected = Subscription { options, id: 42 };
    assert_eq!(grants(&h), [("a".to_owned(), expected)]);
    assert_eq!(h.session.subscription(b"a"), Some(expected));
}

#[test]
fn subscribe_again_replaces_the_grant_and_is_not_new() {
    let mut h = Harness::connected(v5("c"));
    h.packet(subscribe(1, &[("a", opts(QoS::AtMostOnce))]));
    h.packet(subscribe(2, &[("a", opts(QoS::AtLeastOnce))]));
    assert_eq!(h.trace(), ["AddRoute(a)", "SubAck", "SendRetained(a)"]);
    assert!(h
        .actions()
        .iter()
        .any(|a| matches!(a, Action::SendRetained { is_new: false, .. })));
    assert_eq!(h.session.subscriptions().count(), 1);
    assert_eq!(
        h.session.subscription(b"a").map(|s| s.options.qos),
        Some(QoS::AtLeastOnce)
    );
}

#[test]
fn subscribe_with_two_subscription_identifiers_is_0x82() {
    let mut h = Harness::connected(v5("c"));
    let Packet::Subscribe(mut s) = subscribe(1, &[("a", opts(QoS::AtMostOnce))]) else {
        unreachable!()
    };
    s.properties.subscription_identifiers = vec![1, 2];
    h.packet(Packet::Subscribe(s));
    h.assert_violation(Violation::SeveralSubscriptionIdentifiers, 0x82);
    assert!(grants(&h).is_empty());
}

#[test]
fn unsubscribe_drops_routes_then_unsubacks_with_codes() {
    let mut h = Harness::connected(v5("c"));
    h.packet(subscribe(
        1,
        &[
            ("a", opts(QoS::AtMostOnce)),
            ("$share/g/b", opts(QoS::AtMostOnce)),
        ],
    ));
    h.packet(unsubscribe(2, &["a", "x", "a/#/b", "$share/g/b"]));
    assert_eq!(
        h.trace(),
        ["DropRoute(a)", "DropRoute($share/g/b)", "UnsubAck"]
    );
    assert_eq!(unsuback_codes(&h), [0x00, 0x11, 0x8F, 0x00]);
    assert_eq!(h.session.subscriptions().count(), 0);
    // Gone: a second UNSUBSCRIBE finds nothing.
    h.packet(unsubscribe(3, &["a"]));
    assert_eq!(h.trace(), ["UnsubAck"]);
    assert_eq!(unsuback_codes(&h), [0x11]);
}

#[test]
fn unsubscribe_in_v3_has_no_codes() {
    let mut h = Harness::connected(v3("c"));
    h.packet(subscribe(1, &[("a", opts(QoS::AtMostOnce))]));
    h.packet(unsubscribe(2, &["a", "b"]));
    assert_eq!(h.trace(), ["DropRoute(a)", "UnsubAck"]);
    assert!(unsuback_codes(&h).is_empty());
}
