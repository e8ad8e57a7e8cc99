//! The ACL applied by the session: SUBSCRIBE grants (0x87 / 0x80),
//! PUBLISH refusals (v5 PUBACK / PUBREC 0x87, v3 acknowledged but not
//! routed), filtered deliveries, reauthorization after a reload or a
//! resume under another username, and the CONNECT identity rules
//! ([`ringmq_session::authorize`]).

use std::sync::Arc;

use ringmq_auth::acl::Acl;
use ringmq_auth::client_id::ClientIdPattern;
use ringmq_session::{authorize, Denial};

use crate::util::*;

const RULES: &str = "user alice\n\
                     topic read public/#\n\
                     topic readwrite alice/#\n\
                     topic deny alice/secret\n\
                     topic read all/#\n\
                     topic deny all/hidden/#\n\
                     pattern write devices/%c/state\n";

fn acl_policy(rules: &str) -> ServerPolicy {
    ServerPolicy {
        acl: Some(Arc::new(Acl::parse(rules).unwrap())),
        ..policy()
    }
}

fn alice(connect: Connect) -> Connect {
    Connect {
        username: Some(Bytes::from_static(b"alice")),
        ..connect
    }
}

fn ack_code(h: &Harness) -> (String, u8) {
    h.sent()
        .into_iter()
        .find_map(|p| match p {
            Packet::PubAck(a) => Some(("PubAck".to_owned(), a.code.0)),
            Packet::PubRec(a) => Some(("PubRec".to_owned(), a.code.0)),
            _ => None,
        })
        .expect("an acknowledgement")
}

#[test]
fn refused_filters_get_0x87_in_v5_and_0x80_in_v3_and_no_route() {
    for (connect, refused) in [(v5("c"), 0x87), (v3("c"), 0x80)] {
        let mut h = Harness::connected_with(acl_policy(RULES), alice(connect));
        h.packet(subscribe(
            1,
            &[
                ("public/#", opts(QoS::AtLeastOnce)),
                ("#", opts(QoS::AtMostOnce)),
                ("alice/+", opts(QoS::AtMostOnce)),
                ("alice/secret", opts(QoS::AtMostOnce)),
                ("private/x", opts(QoS::AtMostOnce)),
            ],
        ));
        assert_eq!(suback_codes(&h), [0x01, refused, 0x00, refused, refused]);
        assert_eq!(h.routes(), [&b"alice/+"[..], b"public/#"]);
        let denied = h
            .trace()
            .iter()
            .filter(|t| *t == &"Denied(Subscribe)")
            .count();
        assert_eq!(denied, 3);
    }
}

#[test]
fn a_v5_publish_the_acl_refuses_gets_0x87_and_is_not_routed() {
    let mut h = Harness::connected_with(acl_policy(RULES), alice(v5("c")));
    h.publish(publish("public/x", QoS::AtLeastOnce, b"no"));
    assert_eq!(ack_code(&h), ("PubAck".into(), 0x87));
    assert!(h.routed().is_empty());
    assert!(h.trace().contains(&"Denied(Write)"));
    h.publish(publish("public/x", QoS::ExactlyOnce, b"no"));
    assert_eq!(ack_code(&h), ("PubRec".into(), 0x87));
    assert!(h.routed().is_empty());
    // 0x87 ended the QoS 2 flow: the same id may be used at once.
    h.publish(publish("alice/x", QoS::ExactlyOnce, b"yes"));
    assert_eq!(ack_code(&h), ("PubRec".into(), 0x00));
    assert_eq!(payloads(&h.routed()), ["yes"]);
    h.publish(publish("alice/secret", QoS::AtMostOnce, b"no"));
    assert!(h.routed().is_empty());
    assert!(h.sent().is_empty());
}

#[test]
fn a_v3_publish_the_acl_refuses_is_acknowledged_but_not_routed() {
    let mut h = Harness::connected_with(acl_policy(RULES), alice(v3("c")));
    h.publish(publish("public/x", QoS::AtLeastOnce, b"no"));
    assert_eq!(ack_code(&h), ("PubAck".into(), 0x00));
    assert!(h.routed().is_empty());
    h.publish(publish("public/x", QoS::ExactlyOnce, b"no"));
    assert_eq!(ack_code(&h), ("PubRec".into(), 0x00));
    assert!(h.routed().is_empty());
    h.packet(pubrel(1));
    assert_eq!(h.trace(), ["PubComp(1)"]);
}

#[test]
fn patterns_substitute_the_client_id() {
    let mut h = Harness::with_policy(acl_policy(RULES));
    h.session = Session::new(Bytes::from_static(b"dev1"), ProtocolVersion::V5);
    h.connect(v5("dev1"));
    h.publish(publish("devices/dev1/state", QoS::AtMostOnce, b"mine"));
    assert_eq!(payloads(&h.routed()), ["mine"]);
    h.publish(publish("devices/dev2/state", QoS::AtMostOnce, b"theirs"));
    assert!(h.routed().is_empty());
}

#[test]
fn a_filtered_subscription_does_not_deliver_denied_topics() {
    let mut h = Harness::connected_with(acl_policy(RULES), alice(v5("c")));
    h.packet(subscribe(1, &[("all/#", opts(QoS::AtMostOnce))]));
    assert_eq!(suback_codes(&h), [0x00]);
    h.deliver(&message("all/open", b"1"), QoS::AtMostOnce);
    assert_eq!(h.trace(), ["Publish(all/open)"]);
    h.deliver(&message("all/hidden/x", b"2"), QoS::AtMostOnce);
    assert_eq!(h.trace(), ["Denied(Read)"]);
    // Unsubscribed, nothing is filtered any more (no check, no cost).
    h.packet(unsubscribe(2, &["all/#"]));
    h.deliver(&message("all/hidden/x", b"3"), QoS::AtMostOnce);
    assert_eq!(h.trace(), ["Publish(all/hidden/x)"]);
}

#[test]
fn a_reload_revokes_subscriptions_and_the_will_it_no_longer_allows() {
    let connect = Connect {
        will: Some(will("alice/will")),
        ..alice(v5("c"))
    };
    let mut h = Harness::connected_with(acl_policy(RULES), connect);
    h.packet(subscribe(
        1,
        &[
            ("public/#", opts(QoS::AtMostOnce)),
            ("alice/x", opts(QoS::AtMostOnce)),
        ],
    ));
    h.publish(publish("alice/x", QoS::AtMostOnce, b"1"));
    assert_eq!(h.routed().len(), 1);
    h.reload_acl("user alice\ntopic read public/#\n");
    assert_eq!(h.trace(), ["DropRoute(alice/x)", "Revoked"]);
    assert_eq!(h.routes(), [&b"public/#"[..]]);
    // The cached "allowed" is gone with the old rules.
    h.publish(publish("alice/x", QoS::AtMostOnce, b"2"));
    assert!(h.routed().is_empty());
    // The will is not writable any more: not published.
    h.lost(CloseCause::KeepAliveTimeout);
    assert!(h.wills().is_empty());
}

#[test]
fn a_session_resumed_under_another_username_is_decided_again() {
    let policy = acl_policy("user alice\ntopic read a/#\nuser bob\ntopic read b/#\n");
    let mut h = Harness::connected_with(
        policy,
        Connect {
            clean_start: false,
            properties: Properties {
                session_expiry_interval: Some(60),
                ..Properties::default()
            },
            ..alice(v5("c"))
        },
    );
    h.packet(subscribe(1, &[("a/#", opts(QoS::AtMostOnce))]));
    assert_eq!(suback_codes(&h), [0x00]);
    h.lost(CloseCause::ClientDisconnect(ReasonCode::SUCCESS));
    h.connect(Connect {
        clean_start: false,
        username: Some(Bytes::from_static(b"bob")),
        ..v5("c")
    });
    assert!(h.connack().session_present);
    assert!(h.trace().contains(&"Revoked"));
    assert!(h.routes().is_empty());
}

#[test]
fn without_an_acl_nothing_is_checked_or_kept() {
    let mut h = Harness::connected(alice(v5("c")));
    assert!(h.session.username().is_none());
    h.packet(subscribe(1, &[("#", opts(QoS::AtMostOnce))]));
    assert_eq!(suback_codes(&h), [0x00]);
    h.publish(publish("any", QoS::AtLeastOnce, b"x"));
    assert_eq!(ack_code(&h), ("PubAck".into(), 0x00));
}

#[test]
fn takeover_by_another_user_is_refused_only_when_asked() {
    let same_user = ServerPolicy {
        takeover_same_user_only: true,
        ..policy()
    };
    let h = Harness::connected_with(same_user.clone(), alice(v5("c")));
    assert!(h.session.may_take_over(Some(b"alice"), &same_user));
    assert!(!h.session.may_take_over(Some(b"bob"), &same_user));
    assert!(!h.session.may_take_over(None, &same_user));
    assert!(h.session.may_take_over(Some(b"bob"), &policy()));
    let anon = Harness::connected_with(same_user.clone(), v5("c"));
    assert!(anon.session.may_take_over(None, &same_user));
    assert!(!anon.session.may_take_over(Some(b"alice"), &same_user));
    // Made before the flag was turned on (a live reload): no owner known,
    // so not locked to "anonymous".
    let before = Harness::connected(alice(v5("c")));
    assert!(before.session.may_take_over(Some(b"alice"), &same_user));
    assert!(before.session.may_take_over(Some(b"bob"), &same_user));
}

#[test]
fn authorize_checks_client_id_patterns_and_the_will() {
    let patterns = ServerPolicy {
        client_id_patterns: Arc::from(vec![ClientIdPattern::parse("%u-*").unwrap()]),
        ..acl_policy(RULES)
    };
    let ok = alice(v5("alice-1"));
    assert_eq!(authorize(&ok, b"alice-1", false, &patterns), Ok(()));
    let other = alice(v5("bob-1"));
    assert_eq!(
        authorize(&other, b"bob-1", false, &patterns),
        Err(Denial::ClientId)
    );
    // A server-assigned id and an anonymous client are not restricted.
    assert_eq!(
        authorize(&alice(v5("")), b"auto-1", true, &patterns),
        Ok(())
    );
    let anonymous = v5("bob-1");
    let plain = ServerPolicy {
        client_id_patterns: patterns.client_id_patterns.clone(),
        ..policy()
    };
    assert_eq!(authorize(&anonymous, b"bob-1", false, &plain), Ok(()));
    let bad_will = Connect {
        will: Some(will("public/will")),
        ..alice(v5("alice-2"))
    };
    assert_eq!(
        authorize(&bad_will, b"alice-2", false, &patterns),
        Err(Denial::Will)
    );
    let good_will = Connect {
        will: Some(will("alice/will")),
        ..alice(v5("alice-3"))
    };
    assert_eq!(authorize(&good_will, b"alice-3", false, &patterns), Ok(()));
    assert_eq!(Denial::Will.refusal(true).code.0, 0x87);
    assert_eq!(Denial::Will.refusal(false).code.0, 0x05);
    assert_eq!(Denial::ClientId.refusal(true).code.0, 0x85);
    assert_eq!(Denial::ClientId.refusal(false).code.0, 0x02);
    assert_eq!(Denial::Takeover.refusal(false).code.0, 0x05);
}
