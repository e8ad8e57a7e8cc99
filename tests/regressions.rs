//! Regressions: each test pins a broker bug the black-box suite found
//! (No Local ignored, a QoS 2 duplicate routed twice, Subscription
//! Identifiers refused, a delayed will kept after a clean-start-1
//! reconnection or take-over).

mod common;

use common::*;
use std::time::{Duration, Instant};

#[test]
fn v5_no_local_subscription_skips_own_messages() {
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
fn v5_takeover_with_clean_start_1_sends_a_delayed_will_at_once() {
    // MQTT 5.0 3.1.3.2.2 (non-normative) / 3.1.4: the old connection's will
    // is sent unless the new connection has clean start 0 and the will delay
    // is > 0. Clean start 1 ends the session, so the will goes at once.
    let broker = start(&[]);
    let addr = broker.local_addr();
    let (mut w, _) = RawClient::connected(addr, &ConnectOpts::v3("tc-w"));
    assert_eq!(w.subscribe(1, &[("will/#", 0)]), [0]);
    let opts = ConnectOpts::v5("tc1").clean(false).session_expiry(60);
    let (mut old, _) = RawClient::connected(
        addr,
        &opts
            .clone()
            .will(WillOpts::new("will/tc1", "old").delay(30)),
    );
    let t = Instant::now();
    let (mut new, ack) = RawClient::connected(addr, &ConnectOpts::v5("tc1").clean(true));
    assert!(!ack.session_present);
    old.expect_closed(PROMPT, "taken over");
    let p = w.expect_publish(Duration::from_secs(3));
    assert_eq!(p.topic, "will/tc1");
    assert!(t.elapsed() < Duration::from_secs(3));
    new.ping();
}

#[test]
fn reconnect_with_clean_start_1_within_will_delay_sends_the_will() {
    // The session ends at the new clean-start-1 connection: "publish when the
    // delay passes or the session ends, whichever first".
    let broker = start(&[]);
    let addr = broker.local_addr();
    let (mut w, _) = RawClient::connected(addr, &ConnectOpts::v3("rc-w"));
    assert_eq!(w.subscribe(1, &[("will/#", 0)]), [0]);
    let opts = ConnectOpts::v5("rc1")
        .clean(false)
        .session_expiry(60)
        .will(WillOpts::new("will/rc1", "old").delay(30));
    let (c, _) = RawClient::connected(addr, &opts);
    drop(c);
    wait_stats(&broker, "gone", |s| s.connections == 1);
    let (mut new, ack) = RawClient::connected(addr, &ConnectOpts::v5("rc1").clean(true));
    assert!(!ack.session_present);
    let p = w.expect_publish(Duration::from_secs(3));
    assert_eq!(p.topic, "will/rc1");
    new.ping();
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
