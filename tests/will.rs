//! Black-box Last Will tests (MQTT 3.1.2.5, 3.1.3.2): published when a
//! connection ends without a normal DISCONNECT, not after DISCONNECT 0x00,
//! after v5 DISCONNECT 0x04; v5 Will Delay Interval delays it, a reconnection
//! within the delay cancels it, and the end of the session cuts the delay
//! short; a v5 take-over publishes a delay-0 will and cancels a delayed one,
//! unless the new connection has clean start 1: then the delayed will goes
//! at once, as it does for a clean-start-1 reconnection within the delay.
//!
//! "No will" is proven with a sentinel: once the broker counts the
//! connection as gone (the will decision is made by then), a sentinel is
//! published on the watched topic tree; it must be the first thing the
//! watcher receives.

mod common;

use common::*;
use std::time::{Duration, Instant};

/// A watcher subscribed to `will/#` and a v3 helper that publishes sentinels.
fn watcher(broker: &Broker) -> (RawClient, RawClient) {
    let addr = broker.local_addr();
    let (mut w, _) = RawClient::connected(addr, &ConnectOpts::v3(&id_on_shard("watch-", 0)));
    assert_eq!(w.subscribe(1, &[("will/#", 0)]), [0]);
    let (s, _) = RawClient::connected(addr, &ConnectOpts::v3(&id_on_shard("sentinel-", 1)));
    (w, s)
}

fn assert_no_will(broker: &Broker, watcher: &mut RawClient, sentinel: &mut RawClient, open: u64) {
    wait_stats(broker, "dying connection closed", |s| s.connections == open);
    sentinel.publish0("will/sentinel", b"s");
    let p = watcher.expect_publish(PROMPT);
    assert_eq!(p.topic, "will/sentinel", "a will was published: {p:?}");
    assert_eq!(broker.stats().wills_published, 0);
}

#[test]
fn will_published_when_the_socket_just_closes_v3_and_v5() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let (mut w, _s) = watcher(&broker);
    for (i, level) in [V3, V5].into_iter().enumerate() {
        let mut opts =
            ConnectOpts::v3(&format!("vanish{i}")).will(WillOpts::new("will/vanish", "bye"));
        opts.level = level;
        let (c, _) = RawClient::connected(addr, &opts);
        drop(c);
        let p = w.expect_publish(PROMPT);
        assert_eq!(
            (p.topic.as_str(), p.payload.as_slice()),
            ("will/vanish", &b"bye"[..])
        );
    }
    wait_stats(&broker, "two wills", |s| s.wills_published == 2);
}

#[test]
fn no_will_after_clean_disconnect_v3() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let (mut w, mut s) = watcher(&broker);
    let opts = ConnectOpts::v3("polite3").will(WillOpts::new("will/polite", "no"));
    let (mut c, _) = RawClient::connected(addr, &opts);
    c.send(&DISCONNECT_V3).unwrap();
    c.expect_closed(PROMPT, "after DISCONNECT");
    assert_no_will(&broker, &mut w, &mut s, 2);
}

#[test]
fn no_will_after_v5_disconnect_0x00() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let (mut w, mut s) = watcher(&broker);
    let opts = ConnectOpts::v5("polite5").will(WillOpts::new("will/polite", "no"));
    let (mut c, _) = RawClient::connected(addr, &opts);
    c.send(&disconnect_v5(0x00)).unwrap();
    c.expect_closed(PROMPT, "after DISCONNECT");
    assert_no_will(&broker, &mut w, &mut s, 2);
}

#[test]
fn will_after_v5_disconnect_0x04() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let (mut w, _s) = watcher(&broker);
    let opts = ConnectOpts::v5("withwill").will(WillOpts::new("will/asked", "please"));
    let (mut c, _) = RawClient::connected(addr, &opts);
    c.send(&disconnect_v5(0x04)).unwrap();
    c.expect_closed(PROMPT, "after DISCONNECT 0x04");
    let p = w.expect_publish(PROMPT);
    assert_eq!(
        (p.topic.as_str(), p.payload.as_slice()),
        ("will/asked", &b"please"[..])
    );
    wait_stats(&broker, "will counted", |s| s.wills_published == 1);
}

#[test]
fn will_is_published_after_the_will_delay() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let (mut w, _s) = watcher(&broker);
    let opts = ConnectOpts::v5("delayed")
        .clean(false)
        .session_expiry(10)
        .will(WillOpts::new("will/delayed", "late").delay(1));
    let (c, _) = RawClient::connected(addr, &opts);
    let closed = Instant::now();
    drop(c);
    let p = w.expect_publish(Duration::from_secs(5));
    let arrived = Instant::now();
    assert_eq!(p.topic, "will/delayed");
    let delay = arrived - closed;
    assert!(
        delay >= Duration::from_secs(1),
        "will after {delay:?}, before its 1 s delay"
    );
    assert!(
        delay <= Duration::from_secs(1) + Duration::from_millis(TICK_MS) + MARGIN,
        "will after {delay:?}"
    );
}

#[test]
fn reconnecting_within_the_will_delay_cancels_the_will() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let (mut w, mut s) = watcher(&broker);
    let opts = ConnectOpts::v5("comeback")
        .clean(false)
        .session_expiry(10)
        .will(WillOpts::new("will/comeback", "gone?").delay(1));
    let (c, _) = RawClient::connected(addr, &opts);
    drop(c);
    wait_stats(&broker, "first connection gone", |s| s.connections == 2);
    let (mut again, ack) = RawClient::connected(
        addr,
        &ConnectOpts::v5("comeback").clean(false).session_expiry(10),
    );
    assert!(ack.session_present, "{ack:?}");
    // Past the delay plus a margin: no will.
    w.expect_silence(
        Duration::from_secs(1) + MARGIN,
        "will cancelled by reconnection",
    );
    s.publish0("will/sentinel", b"s");
    assert_eq!(w.expect_publish(PROMPT).topic, "will/sentinel");
    assert_eq!(broker.stats().wills_published, 0);
    again.ping();
}

#[test]
fn session_end_cuts_the_will_delay_short() {
    // Will delay 30 s, session expiry 1 s: the will goes when the session
    // ends (MQTT 3.1.3.2.2: whichever happens first).
    let broker = start(&[]);
    let addr = broker.local_addr();
    let (mut w, _s) = watcher(&broker);
    let opts = ConnectOpts::v5("shortlived")
        .clean(false)
        .session_expiry(1)
        .will(WillOpts::new("will/session-end", "ended").delay(30));
    let (c, _) = RawClient::connected(addr, &opts);
    let closed = Instant::now();
    drop(c);
    let p = w.expect_publish(Duration::from_secs(1) + MARGIN + Duration::from_secs(2));
    let delay = closed.elapsed();
    assert_eq!(p.topic, "will/session-end");
    assert!(
        delay >= Duration::from_secs(1),
        "will after {delay:?}, before the session ended"
    );
}

#[test]
fn v5_takeover_publishes_undelayed_will_of_the_old_connection() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let (mut w, _s) = watcher(&broker);
    let opts = ConnectOpts::v5("tw").clean(false).session_expiry(60);
    let (mut old, _) =
        RawClient::connected(addr, &opts.clone().will(WillOpts::new("will/tw", "old")));
    let (mut new, ack) = RawClient::connected(addr, &opts);
    assert!(ack.session_present);
    let pk = old.expect_closed(PROMPT, "taken over");
    assert!(
        matches!(pk.last(), Some(p) if p.is_disconnect(0x8E)),
        "{pk:?}"
    );
    let p = w.expect_publish(PROMPT);
    assert_eq!(
        (p.topic.as_str(), p.payload.as_slice()),
        ("will/tw", &b"old"[..])
    );
    new.ping();
}

#[test]
fn v5_takeover_within_will_delay_cancels_the_will() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let (mut w, mut s) = watcher(&broker);
    let opts = ConnectOpts::v5("twd").clean(false).session_expiry(60);
    let (mut old, _) = RawClient::connected(
        addr,
        &opts.clone().will(WillOpts::new("will/twd", "old").delay(1)),
    );
    let (mut new, ack) = RawClient::connected(addr, &opts);
    assert!(ack.session_present);
    old.expect_closed(PROMPT, "taken over");
    w.expect_silence(
        Duration::from_secs(1) + MARGIN,
        "take-over within the delay",
    );
    s.publish0("will/sentinel", b"s");
    assert_eq!(w.expect_publish(PROMPT).topic, "will/sentinel");
    assert_eq!(broker.stats().wills_published, 0);
    new.ping();
}

#[test]
fn will_published_when_the_broker_closes_for_a_protocol_error() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let (mut w, _s) = watcher(&broker);
    for level in [V3, V5] {
        let mut opts = ConnectOpts::v3("offender").will(WillOpts::new("will/offender", "bad"));
        opts.level = level;
        let (mut c, _) = RawClient::connected(addr, &opts);
        c.send(&[0x00, 0x00]).unwrap(); // packet type 0 is reserved
        c.expect_closed(PROMPT, "protocol error");
        let p = w.expect_publish(PROMPT);
        assert_eq!(
            (p.topic.as_str(), p.payload.as_slice()),
            ("will/offender", &b"bad"[..])
        );
    }
}

#[test]
fn v3_takeover_does_not_publish_the_will() {
    // Documented choice: 3.1.4 does not list take-over among the v3.1.1 will
    // triggers, and the client is demonstrably alive.
    let broker = start(&[]);
    let addr = broker.local_addr();
    let (mut w, mut s) = watcher(&broker);
    let opts = ConnectOpts::v3("tw3").clean(false);
    let (mut old, _) =
        RawClient::connected(addr, &opts.clone().will(WillOpts::new("will/tw3", "old")));
    let (mut new, ack) = RawClient::connected(addr, &opts);
    assert!(ack.session_present);
    old.expect_closed(PROMPT, "taken over");
    assert_no_will(&broker, &mut w, &mut s, 3);
    new.ping();
}

#[test]
fn v5_will_retain_follows_retain_available() {
    // MQTT-3.2.2-13: Will Retain 1 when retained messages are unsupported =>
    // CONNACK 0x9A and close; otherwise the will is retained.
    let broker = start(&[]);
    let addr = broker.local_addr();
    let mut will = WillOpts::new("will/kept", "w");
    will.retain = true;
    let (mut c, ack) = RawClient::connect(addr, &ConnectOpts::v5("retw").will(will));
    if ack.props.int(0x25) == Some(0) || ack.code != 0 {
        assert_eq!(ack.code, 0x9A, "{ack:?}");
        c.expect_closed(PROMPT, "refused");
    } else {
        drop(c);
        wait_stats(&broker, "will published", |s| s.wills_published == 1);
        let (mut late, _) = RawClient::connected(addr, &ConnectOpts::v5("retw-late"));
        assert_eq!(late.subscribe(1, &[("will/+", 0)]), [0]);
        let p = late.expect_publish(PROMPT);
        assert_eq!((p.topic.as_str(), p.retain), ("will/kept", true));
    }
}

#[test]
fn v5_will_properties_apply_to_the_published_will() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let (mut w, _) = RawClient::connected(addr, &ConnectOpts::v5(&id_on_shard("wp-w", 0)));
    assert_eq!(w.subscribe(1, &[("will/props", 0)]), [0]);
    let mut will = WillOpts::new("will/props", "bye");
    will.extra_props = message_props();
    let (c, _) = RawClient::connected(addr, &ConnectOpts::v5(&id_on_shard("wp-c", 1)).will(will));
    drop(c);
    let p = w.expect_publish(PROMPT);
    assert_eq!(p.payload, b"bye");
    assert_message_props(&p.props, "will");
}

#[test]
fn v5_takeover_with_clean_start_1_sends_a_delayed_will_at_once() {
    // MQTT 5.0 3.1.3.2.2 (non-normative) / 3.1.4: the old connection's will
    // is sent unless the new connection has clean start 0 and the will delay
    // is > 0. Clean start 1 ends the session, so the will goes at once: well
    // within the 30 s delay.
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
    let (mut new, ack) = RawClient::connected(addr, &ConnectOpts::v5("tc1").clean(true));
    assert!(!ack.session_present);
    old.expect_closed(PROMPT, "taken over");
    let p = w.expect_publish(Duration::from_secs(3));
    assert_eq!(p.topic, "will/tc1");
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
