//! CONNACK, keep-alive and the rules on the order of packets.

use crate::util::*;

// ----- CONNACK session present -----

#[test]
fn connack_session_present_is_0_for_a_fresh_session() {
    let h = Harness::connected(v5("c").clean(false).expiry(60));
    assert_eq!(h.trace(), ["ConnAck"]);
    let connack = h.connack();
    assert!(!connack.session_present);
    assert_eq!(connack.code, ReasonCode::SUCCESS);
    assert!(h.session.is_connected());
}

#[test]
fn connack_session_present_is_1_when_a_session_resumes() {
    let mut h = Harness::connected(v5("c").clean(false).expiry(60));
    h.packet(subscribe(1, &[("a/b", opts(QoS::AtLeastOnce))]));
    h.lost(CloseCause::NetworkError);
    assert_eq!(h.armed(Timer::SessionExpiry), Some(Tick(60_000)));
    h.advance(59_999);
    assert!(h.actions().is_empty());
    h.connect(v5("c").clean(false).expiry(60));
    assert_eq!(h.trace(), ["ConnAck"]);
    assert!(h.connack().session_present);
    assert!(h.session.subscription(b"a/b").is_some());
    // The reconnection stopped the expiry.
    assert_eq!(h.armed(Timer::SessionExpiry), None);
}

#[test]
fn connack_session_present_is_0_with_clean_start_which_drops_the_old_session() {
    let mut h = Harness::connected(v5("c").clean(false).expiry(60));
    h.packet(subscribe(1, &[("a/b", opts(QoS::AtLeastOnce))]));
    h.lost(CloseCause::NetworkError);
    h.connect(v5("c").clean(true).expiry(60));
    assert_eq!(h.trace(), ["DropRoute(a/b)", "ConnAck"]);
    assert!(!h.connack().session_present);
    assert_eq!(h.session.subscriptions().count(), 0);
}

#[test]
fn connack_carries_the_assigned_client_identifier_for_an_empty_one() {
    let h = Harness::connected(v5(""));
    assert_eq!(
        h.connack().properties.assigned_client_identifier.as_deref(),
        Some(&b"auto-1"[..])
    );
}

// ----- keep-alive -----

#[test]
fn keepalive_never_closes_before_one_and_a_half_keep_alive() {
    let mut h = Harness::connected(v5("c").keep_alive(10));
    assert_eq!(h.armed(Timer::KeepAlive), Some(Tick(15_000)));
    h.advance(14_999);
    assert!(h.actions().is_empty(), "{:?}", h.full_trace());
    assert!(h.link_open());
}

#[test]
fn keepalive_deadline_closes_with_v5_disconnect_0x8d() {
    let mut h = Harness::connected(v5("c").keep_alive(10));
    h.advance(15_000);
    assert_eq!(
        h.full_trace(),
        [
            "Fire(KeepAlive@15000)",
            "Disconnect(0x8D)",
            "Close(KeepAliveTimeout)"
        ]
    );
    // Closing: the rest of what the client sent is ignored.
    h.packet(Packet::PingReq);
    assert!(h.actions().is_empty());
    h.lost(CloseCause::KeepAliveTimeout);
    assert_eq!(h.trace(), ["EndSession"]);
}

#[test]
fn keepalive_deadline_closes_a_v3_link_without_disconnect() {
    let mut h = Harness::connected(v3("c").keep_alive(4));
    h.advance(6_000);
    assert_eq!(h.trace(), ["Close(KeepAliveTimeout)"]);
}

#[test]
fn keepalive_any_packet_rearms_lazily() {
    let mut h = Harness::connected(v5("c").keep_alive(10));
    h.advance(10_000);
    // A QoS 0 PUBLISH, not a PINGREQ, counts too; it arms nothing itself.
    h.publish(publish("t", QoS::AtMostOnce, b"x"));
    assert_eq!(h.full_trace(), ["Route(t)"]);
    // At the first deadline the timer sees the packet and re-arms.
    h.advance(5_000);
    assert_eq!(
        h.full_trace(),
        ["Fire(KeepAlive@15000)", "Arm(KeepAlive@25000)"]
    );
    h.advance(9_999);
    assert!(h.actions().is_empty());
    h.advance(1);
    assert_eq!(h.trace(), ["Disconnect(0x8D)", "Close(KeepAliveTimeout)"]);
    assert_eq!(h.now(), Tick(25_000));
}

#[test]
fn keepalive_zero_arms_nothing() {
    let mut h = Harness::connected(v5("c").keep_alive(0));
    assert!(!h.full_trace().iter().any(|s| s.starts_with("Arm(")));
    assert_eq!(h.armed(Timer::KeepAlive), None);
    h.advance(u64::from(u32::MAX));
    assert!(h.actions().is_empty());
    assert!(h.link_open());
}

#[test]
fn keepalive_uses_the_server_keep_alive_and_tells_the_client() {
    let policy = ServerPolicy {
        server_keep_alive: Some(2),
        ..policy()
    };
    let mut h = Harness::connected_with(policy, v5("c").keep_alive(60));
    assert_eq!(h.connack().properties.server_keep_alive, Some(2));
    assert_eq!(h.armed(Timer::KeepAlive), Some(Tick(3_000)));
    h.advance(3_000);
    assert_eq!(h.disconnect(), Some(ReasonCode::KEEP_ALIVE_TIMEOUT));
}

#[test]
fn pingreq_is_answered_with_pingresp() {
    let mut h = Harness::connected(v5("c"));
    h.packet(Packet::PingReq);
    assert_eq!(h.trace(), ["PingResp"]);
}

// ----- order of packets -----

#[test]
fn second_connect_is_a_protocol_error_0x82() {
    let mut h = Harness::connected(v5("c"));
    h.packet(Packet::Connect(Box::new(v5("c"))));
    h.assert_violation(Violation::SecondConnect, 0x82);
    assert!(h.sent().iter().all(|p| !matches!(p, Packet::ConnAck(_))));
}

#[test]
fn server_only_packets_from_the_client_are_protocol_errors_0x82() {
    let server_packets = [
        Packet::ConnAck(ConnAck {
            session_present: false,
            code: ReasonCode::SUCCESS,
            properties: Properties::default(),
        }),
        Packet::SubAck(SubAck {
            packet_id: 1,
            properties: Properties::default(),
            codes: vec![ReasonCode::SUCCESS],
        }),
        Packet::UnsubAck(UnsubAck {
            packet_id: 1,
            properties: Properties::default(),
            codes: vec![ReasonCode::SUCCESS],
        }),
        Packet::PingResp,
    ];
    for packet in server_packets {
        let mut h = Harness::connected(v5("c"));
        let kind = packet.packet_type();
        h.packet(packet);
        assert_eq!(
            h.violation(),
            Some(Violation::ServerPacketFromClient),
            "{kind:?}"
        );
        h.assert_violation(Violation::ServerPacketFromClient, 0x82);
    }
}

#[test]
fn auth_without_an_authentication_method_is_a_protocol_error() {
    let mut h = Harness::connected(v5("c"));
    h.packet(Packet::Auth(ringmq_codec::Auth {
        code: ReasonCode::CONTINUE_AUTHENTICATION,
        properties: Properties::default(),
    }));
    h.assert_violation(Violation::AuthWithoutMethod, 0x82);
}

#[test]
fn packets_after_a_close_in_the_same_batch_are_ignored() {
    let mut h = Harness::connected(v5("c"));
    let mut bad = publish("t", QoS::AtMostOnce, b"x");
    bad.properties.subscription_identifiers = vec![1];
    h.batch([
        Packet::Publish(bad),
        Packet::PingReq,
        Packet::Publish(publish("t", QoS::AtLeastOnce, b"y")),
        subscribe(2, &[("a", opts(QoS::AtMostOnce))]),
    ]);
    h.assert_violation(Violation::SubscriptionIdentifierFromClient, 0x82);
    assert_eq!(h.trace().len(), 3, "{:?}", h.trace());
    assert!(h.routed().is_empty());
    assert_eq!(h.session.subscriptions().count(), 0);
}

#[test]
fn packets_after_a_client_disconnect_in_the_same_batch_are_ignored() {
    let mut h = Harness::connected(v5("c").expiry(60));
    h.batch([
        disconnect(0x00),
        Packet::Publish(publish("t", QoS::AtMostOnce, b"x")),
        Packet::PingReq,
    ]);
    assert_eq!(h.trace(), ["Close(ClientDisconnect(ReasonCode(0)))"]);
}

#[test]
fn shutdown_sends_v5_disconnect_0x8b_then_closes() {
    let mut h = Harness::connected(v5("c").will(will("w"), 0));
    h.shutdown();
    assert_eq!(h.trace(), ["Disconnect(0x8B)", "Close(ServerShutdown)"]);
    h.lost(CloseCause::ServerShutdown);
    // Nobody is left to deliver a will to.
    assert!(h.wills().is_empty());
}

#[test]
fn malformed_bytes_get_a_v5_disconnect_with_the_codec_reason_and_a_close() {
    let mut h = Harness::connected(v5("c"));
    let mut out = Outbox::new();
    h.session.malformed(ReasonCode::MALFORMED_PACKET, &mut out);
    let actions: Vec<Action> = out.drain().collect();
    assert!(
        matches!(&actions[..], [Action::Send(p), Action::Close(CloseCause::ProtocolError)]
        if matches!(&**p, Packet::Disconnect(d) if d.code == ReasonCode::MALFORMED_PACKET))
    );
    // Closing: nothing more from this connection is acted on.
    h.packet(Packet::PingReq);
    assert!(h.actions().is_empty());

    let mut v3 = Harness::connected(v3("c"));
    let mut out = Outbox::new();
    v3.session.malformed(ReasonCode::MALFORMED_PACKET, &mut out);
    let actions: Vec<Action> = out.drain().collect();
    assert_eq!(actions, vec![Action::Close(CloseCause::ProtocolError)]);
}
