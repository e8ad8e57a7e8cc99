//! The will and its delay, the session expiry, take-over and the
//! DISCONNECT session-expiry rule.

use crate::util::*;

fn will_topics(h: &Harness) -> Vec<String> {
    h.wills()
        .iter()
        .map(|w| String::from_utf8_lossy(&w.topic).into_owned())
        .collect()
}

// ----- when the will is published -----

#[test]
fn will_is_published_when_the_network_fails() {
    let mut w = will("w/t");
    w.qos = QoS::AtLeastOnce;
    w.retain = true;
    w.properties.content_type = Some(Bytes::from_static(b"text/plain"));
    let mut h = Harness::connected(v5("c").will(w.clone(), 0));
    h.lost(CloseCause::NetworkError);
    assert_eq!(h.trace(), ["Will(w/t)", "EndSession"]);
    // QoS, retain and the will properties travel with it.
    assert_eq!(h.wills()[0], &w);
}

#[test]
fn will_is_published_on_every_abnormal_end() {
    for cause in [
        CloseCause::NetworkError,
        CloseCause::KeepAliveTimeout,
        CloseCause::ProtocolError,
    ] {
        for connect in [v5("c"), v3("c")] {
            let mut h = Harness::connected(connect.will(will("w"), 0));
            h.lost(cause);
            assert_eq!(will_topics(&h), ["w"], "{cause:?}");
        }
    }
}

#[test]
fn will_is_published_after_a_protocol_violation() {
    let mut h = Harness::connected(v5("c").will(will("w"), 0));
    h.publish(publish("", QoS::AtMostOnce, b"x"));
    assert_eq!(h.closed(), Some(CloseCause::ProtocolError));
    h.lost(CloseCause::ProtocolError);
    assert_eq!(will_topics(&h), ["w"]);
}

#[test]
fn will_is_not_published_after_a_normal_disconnect() {
    for connect in [v5("c"), v3("c")] {
        let mut h = Harness::connected(connect.will(will("w"), 0));
        h.packet(disconnect(0x00));
        let cause = h.closed().expect("closed");
        assert_eq!(cause, CloseCause::ClientDisconnect(ReasonCode::SUCCESS));
        h.lost(cause);
        assert!(h.wills().is_empty());
        assert_eq!(h.trace(), ["EndSession"]);
    }
}

#[test]
fn will_is_published_after_v5_disconnect_0x04() {
    let mut h = Harness::connected(v5("c").will(will("w"), 0));
    h.packet(disconnect(0x04));
    let cause = h.closed().expect("closed");
    assert_eq!(
        cause,
        CloseCause::ClientDisconnect(ReasonCode::DISCONNECT_WITH_WILL_MESSAGE)
    );
    h.lost(cause);
    assert_eq!(will_topics(&h), ["w"]);
}

#[test]
fn will_is_discarded_on_receipt_of_a_normal_disconnect_even_if_taken_over_before_the_close() {
    // MQTT-3.14.4-3: the will is discarded when the DISCONNECT arrives; a
    // take-over racing the shard's report of the closed socket must not
    // bring it back.
    for version in [v5("c"), v3("c")] {
        let mut h = Harness::connected(version.clone().clean(false).expiry(60).will(will("w"), 0));
        h.packet(disconnect(0x00));
        h.taken_over(false);
        assert!(h.wills().is_empty(), "{:?}", h.trace());
        h.connect(version.clean(false).expiry(60));
        assert!(h.wills().is_empty());
    }
}

#[test]
fn will_after_disconnect_0x04_is_still_due_if_taken_over_before_the_close() {
    let mut h = Harness::connected(v5("c").clean(false).expiry(60).will(will("w"), 0));
    h.packet(disconnect(0x04));
    h.taken_over(false);
    assert_eq!(will_topics(&h), ["w"]);
}

#[test]
fn will_is_not_published_on_server_shutdown() {
    let mut h = Harness::connected(v5("c").will(will("w"), 0));
    h.shutdown();
    h.lost(CloseCause::ServerShutdown);
    assert!(h.wills().is_empty());
}

// ----- will delay -----

#[test]
fn will_delay_arms_a_timer_and_publishes_when_it_fires() {
    let mut h = Harness::connected(v5("c").expiry(300).will(will("w"), 30));
    h.advance(1_000);
    h.lost(CloseCause::NetworkError);
    assert_eq!(
        h.full_trace(),
        [
            "Cancel(KeepAlive)",
            "Arm(WillDelay@31000)",
            "Arm(SessionExpiry@301000)"
        ]
    );
    assert_eq!(h.armed(Timer::WillDelay), Some(Tick(31_000)));
    assert_eq!(h.armed(Timer::SessionExpiry), Some(Tick(301_000)));
    h.advance(29_999);
    assert!(h.actions().is_empty());
    h.advance(1);
    assert_eq!(h.full_trace(), ["Fire(WillDelay@31000)", "Will(w)"]);
    // The session itself lives on until its own expiry.
    h.advance(269_999);
    assert!(h.actions().is_empty());
    h.advance(1);
    assert_eq!(h.trace(), ["EndSession"]);
}

#[test]
fn will_delay_does_not_outlive_a_session_that_ends_with_the_connection() {
    let mut h = Harness::connected(v5("c").will(will("w"), 30));
    h.lost(CloseCause::NetworkError);
    assert_eq!(h.trace(), ["Will(w)", "EndSession"]);
    assert_eq!(h.armed(Timer::WillDelay), None);
}

#[test]
fn will_delay_is_cancelled_by_a_reconnection_within_the_delay() {
    let connect = v5("c").clean(false).expiry(300).will(will("w"), 30);
    let mut h = Harness::connected(connect.clone());
    h.lost(CloseCause::NetworkError);
    h.advance(29_999);
    h.connect(connect);
    assert!(h.full_trace().contains(&"Cancel(WillDelay)"));
    assert!(h.wills().is_empty());
    assert!(h.connack().session_present);
    assert_eq!(h.armed(Timer::WillDelay), None);
    h.advance(600_000);
    assert!(h.wills().is_empty());
}

#[test]
fn will_delay_reconnection_with_clean_start_publishes_the_will_at_once() {
    let mut h = Harness::connected(v5("c").clean(false).expiry(300).will(will("w"), 30));
    h.packet(subscribe(1, &[("a", opts(QoS::AtMostOnce))]));
    h.lost(CloseCause::NetworkError);
    h.advance(10_000);
    // Clean start ends the old session, and a session's end sends the will.
    h.connect(v5("c").clean(true));
    assert_eq!(h.trace(), ["Will(w)", "DropRoute(a)", "ConnAck"]);
    assert!(!h.connack().session_present);
    assert_eq!(h.armed(Timer::WillDelay), None);
}

#[test]
fn will_delay_longer_than_session_expiry_publishes_when_the_session_expires() {
    let mut h = Harness::connected(v5("c").expiry(60).will(will("w"), 120));
    h.packet(subscribe(1, &[("a", opts(QoS::AtMostOnce))]));
    h.lost(CloseCause::NetworkError);
    assert_eq!(h.armed(Timer::SessionExpiry), Some(Tick(60_000)));
    assert!(h.armed(Timer::WillDelay) <= Some(Tick(60_000)));
    // The wheel may run SessionExpiry first on the shared tick.
    h.fire(Timer::SessionExpiry);
    assert_eq!(h.trace(), ["Will(w)", "DropRoute(a)", "EndSession"]);
    assert_eq!(h.armed(Timer::WillDelay), None);
}

#[test]
fn will_delay_longer_than_session_expiry_publishes_once_whatever_fires_first() {
    let mut h = Harness::connected(v5("c").expiry(60).will(will("w"), 120));
    h.lost(CloseCause::NetworkError);
    h.advance(59_999);
    assert!(h.actions().is_empty());
    h.advance(1);
    assert_eq!(h.trace(), ["Will(w)", "EndSession"]);
    h.advance(600_000);
    assert!(h.actions().is_empty());
}

// ----- session expiry -----

#[test]
fn session_expiry_0_ends_the_session_at_connection_lost_dropping_routes_first() {
    let mut h = Harness::connected(v5("c"));
    h.packet(subscribe(
        1,
        &[("a", opts(QoS::AtMostOnce)), ("b", opts(QoS::AtLeastOnce))],
    ));
    h.deliver(&message("a", b"x"), QoS::AtLeastOnce);
    h.lost(CloseCause::NetworkError);
    let mut trace = h.trace();
    assert_eq!(trace.pop(), Some("EndSession"));
    trace.sort_unstable();
    assert_eq!(trace, ["DropRoute(a)", "DropRoute(b)"]);
    assert_eq!(h.session.subscriptions().count(), 0);
    assert_eq!(h.session.outbound_len(), (0, 0));
}

#[test]
fn session_expiry_ends_a_detached_session_when_it_fires() {
    let mut h = Harness::connected(v5("c").expiry(60));
    h.packet(subscribe(1, &[("a", opts(QoS::AtMostOnce))]));
    h.advance(5_000);
    h.lost(CloseCause::NetworkError);
    assert_eq!(h.trace(), Vec::<&str>::new());
    h.advance(59_999);
    assert!(h.actions().is_empty());
    h.advance(1);
    assert_eq!(h.trace(), ["DropRoute(a)", "EndSession"]);
}

#[test]
fn session_expiry_0xffffffff_never_expires() {
    let mut h = Harness::connected(v5("c").expiry(u32::MAX));
    h.lost(CloseCause::NetworkError);
    assert_eq!(h.armed(Timer::SessionExpiry), None);
    assert!(h.actions().iter().all(|a| *a != Action::EndSession));
}

#[test]
fn session_expiry_of_a_v3_session_is_the_policy_default() {
    let mut h = Harness::connected(v3("c").clean(false));
    h.lost(CloseCause::NetworkError);
    assert_eq!(h.armed(Timer::SessionExpiry), Some(Tick(86_400_000)));
    h.connect(v3("c").clean(false));
    assert!(h.connack().session_present);
    assert_eq!(h.armed(Timer::SessionExpiry), None);
}

// ----- DISCONNECT and the session expiry (MQTT-3.14.2-2) -----

#[test]
fn disconnect_cannot_raise_session_expiry_from_0() {
    let mut h = Harness::connected(v5("c").will(will("w"), 0));
    h.packet(disconnect_expiry(0x00, 60));
    h.assert_violation(Violation::SessionExpiryRaisedFromZero, 0x82);
    assert_eq!(h.session.session_expiry_secs(), 0);
    h.lost(CloseCause::ProtocolError);
    // A protocol error is an abnormal end: the will goes, then the session.
    assert_eq!(h.trace(), ["Will(w)", "EndSession"]);
}

#[test]
fn disconnect_may_change_a_nonzero_session_expiry() {
    let mut h = Harness::connected(v5("c").expiry(60));
    h.packet(disconnect_expiry(0x00, 600));
    assert_eq!(h.violation(), None);
    let cause = h.closed().expect("closed");
    assert_eq!(h.session.session_expiry_secs(), 600);
    h.lost(cause);
    assert_eq!(h.armed(Timer::SessionExpiry), Some(Tick(600_000)));

    let mut h = Harness::connected(v5("c").expiry(60));
    h.packet(subscribe(1, &[("a", opts(QoS::AtMostOnce))]));
    h.packet(disconnect_expiry(0x00, 0));
    let cause = h.closed().expect("closed");
    h.lost(cause);
    assert_eq!(h.trace(), ["DropRoute(a)", "EndSession"]);
}

// ----- take-over (MQTT-3.1.4-3) -----

#[test]
fn takeover_sends_the_v5_old_link_disconnect_0x8e_and_closes_it() {
    let mut h = Harness::connected(v5("c").clean(false).expiry(60));
    h.taken_over(false);
    assert_eq!(h.trace(), ["Disconnect(0x8E)", "Close(TakenOver)"]);
    assert!(!h.session.is_connected());
    assert_eq!(h.armed(Timer::KeepAlive), None);
    // The shard's later report of the old socket closing changes nothing.
    h.lost(CloseCause::TakenOver);
    assert!(h.actions().is_empty());
}

#[test]
fn takeover_of_a_closing_link_writes_nothing_more_to_it() {
    let mut h = Harness::connected(v5("c").clean(false).expiry(60).keep_alive(1));
    h.advance(1_500);
    assert_eq!(h.closed(), Some(CloseCause::KeepAliveTimeout));
    // The new connection arrives before the shard reports the old socket
    // closed: no second DISCONNECT (the harness fails a write after Close).
    h.taken_over(false);
    assert_eq!(h.disconnect(), None);
    h.connect(v5("c").clean(false).expiry(60));
    assert!(h.connack().session_present);
}

#[test]
fn takeover_closes_a_v3_old_link_without_disconnect() {
    let mut h = Harness::connected(v3("c").clean(false));
    h.taken_over(false);
    assert_eq!(h.trace(), ["Close(TakenOver)"]);
}

#[test]
fn takeover_publishes_a_v5_will_without_delay() {
    let mut h = Harness::connected(v5("c").clean(false).expiry(60).will(will("w"), 0));
    h.taken_over(false);
    assert_eq!(
        h.trace(),
        ["Disconnect(0x8E)", "Close(TakenOver)", "Will(w)"]
    );
}

#[test]
fn takeover_does_not_publish_a_v5_will_with_a_delay() {
    let connect = v5("c").clean(false).expiry(60).will(will("w"), 30);
    let mut h = Harness::connected(connect.clone());
    h.taken_over(false);
    assert!(h.wills().is_empty());
    // The new connection is the reconnection that cancels the delayed will.
    h.connect(v5("c").clean(false).expiry(60));
    assert!(h.wills().is_empty());
    h.lost(CloseCause::ClientDisconnect(ReasonCode::SUCCESS));
    h.advance(120_000);
    assert!(h.wills().is_empty());
}

#[test]
fn takeover_publishes_a_v5_will_with_a_delay_when_the_new_connect_has_clean_start() {
    let mut h = Harness::connected(v5("c").clean(false).expiry(60).will(will("w"), 30));
    h.taken_over(true);
    assert_eq!(will_topics(&h), ["w"]);
    h.connect(v5("c").clean(true));
    assert!(h.wills().is_empty());
}

#[test]
fn takeover_never_publishes_a_v3_will() {
    for clean_start in [false, true] {
        let mut h = Harness::connected(v3("c").clean(false).will(will("w"), 0));
        h.taken_over(clean_start);
        assert!(h.wills().is_empty());
        h.connect(v3("c").clean(clean_start));
        assert!(h.wills().is_empty());
        h.advance(100_000_000);
        assert!(h.wills().is_empty());
    }
}

#[test]
fn takeover_then_clean_start_0_resumes_the_session() {
    let mut h = Harness::connected(v5("c").clean(false).expiry(60).receive_max(1));
    h.packet(subscribe(1, &[("a", opts(QoS::AtLeastOnce))]));
    h.deliver(&message("a", b"1"), QoS::AtLeastOnce);
    h.deliver(&message("a", b"2"), QoS::AtLeastOnce);
    assert_eq!(h.session.outbound_len(), (1, 1));
    h.taken_over(false);
    h.connect(v5("c").clean(false).expiry(60).receive_max(10));
    assert!(h.connack().session_present);
    assert_eq!(h.trace(), ["ConnAck", "Publish(a)", "Publish(a)"]);
    let sent = h.sent_publishes();
    assert_eq!(payloads(&sent), ["1", "2"]);
    assert_eq!(
        sent.iter()
            .map(|p| (p.packet_id, p.dup))
            .collect::<Vec<_>>(),
        [(1, true), (2, false)]
    );
    assert!(h.session.subscription(b"a").is_some());
}

#[test]
fn takeover_then_clean_start_1_drops_the_routes() {
    let mut h = Harness::connected(v5("c").clean(false).expiry(60));
    h.packet(subscribe(1, &[("a", opts(QoS::AtLeastOnce))]));
    h.deliver(&message("a", b"1"), QoS::AtLeastOnce);
    h.taken_over(true);
    h.connect(v5("c").clean(true));
    assert_eq!(h.trace(), ["DropRoute(a)", "ConnAck"]);
    assert!(!h.connack().session_present);
    assert_eq!(h.session.subscriptions().count(), 0);
    assert_eq!(h.session.outbound_len(), (0, 0));
}
