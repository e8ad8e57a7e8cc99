//! The client's Maximum Packet Size bounds every packet the server
//! writes (MQTT-3.1.2-24), not only PUBLISH: a CONNACK that would not fit
//! refuses the CONNECT (0x95, or silently when even that does not fit), a
//! SUBSCRIBE or UNSUBSCRIBE whose answer would not fit ends the
//! connection with 0x95, and a DISCONNECT drops its Reason String first.
//! (Fuzz finding 3.)

use ringmq_session::{ConnectRefusal, MAX_ASSIGNED_ID_LEN};

use crate::util::*;

#[test]
fn a_connack_that_would_not_fit_refuses_the_connect() {
    let policy = ServerPolicy::default();
    // Maximum QoS 0 and Retain Available 0 make a 9-byte CONNACK.
    let refusal: ConnectRefusal = negotiate(&v5("c").max_packet(8), &policy).expect_err("refused");
    assert_eq!(refusal.code.0, 0x95);
    assert!(!refusal.silent, "a 5-byte refusal fits 8 bytes");
    // Below 5 bytes not even the refusal fits: closed without a word.
    assert!(
        negotiate(&v5("c").max_packet(4), &policy)
            .unwrap_err()
            .silent
    );
    assert!(negotiate(&v5("c").max_packet(9), &policy).is_ok());
    // An empty id: room for the identifier the server will assign.
    let assigned = v5("").max_packet(9 + 3 + MAX_ASSIGNED_ID_LEN as u32 - 1);
    assert_eq!(negotiate(&assigned, &policy).unwrap_err().code.0, 0x95);
    let assigned = v5("").max_packet(9 + 3 + MAX_ASSIGNED_ID_LEN as u32);
    assert!(negotiate(&assigned, &policy).is_ok());
}

#[test]
fn a_subscribe_whose_suback_would_not_fit_ends_the_connection() {
    let mut h = Harness::connected(v5("c").max_packet(64));
    let names: Vec<String> = (0..80).map(|i| format!("t/{i}")).collect();
    let filters: Vec<(&str, SubscriptionOptions)> = names
        .iter()
        .map(|n| (n.as_str(), opts(QoS::AtMostOnce)))
        .collect();
    h.packet(subscribe(1, &filters));
    h.assert_violation(Violation::ResponseTooLarge, 0x95);
    assert!(h.routes().is_empty(), "nothing subscribed");
    // A SUBSCRIBE that fits is answered as usual.
    let mut h = Harness::connected(v5("c").max_packet(64));
    h.packet(subscribe(1, &filters[..10]));
    assert_eq!(suback_codes(&h).len(), 10);
}

#[test]
fn an_unsubscribe_whose_unsuback_would_not_fit_ends_the_connection() {
    let mut h = Harness::connected(v5("c").max_packet(32));
    let names: Vec<String> = (0..40).map(|i| format!("t/{i}")).collect();
    let filters: Vec<&str> = names.iter().map(String::as_str).collect();
    h.packet(unsubscribe(1, &filters));
    h.assert_violation(Violation::ResponseTooLarge, 0x95);
}

#[test]
fn a_disconnect_drops_its_reason_string_to_fit() {
    // Maximum Packet Size 9: the CONNACK (9 bytes) fits; a DISCONNECT
    // with its reason string would not, without it (4 bytes) does.
    let mut h = Harness::connected(v5("c").max_packet(12));
    h.packet(Packet::Connect(Box::new(v5("c"))));
    let disconnect = h
        .sent()
        .into_iter()
        .find_map(|p| match p {
            Packet::Disconnect(d) => Some(d.clone()),
            _ => None,
        })
        .expect("a DISCONNECT");
    assert_eq!(disconnect.code.0, 0x82);
    assert!(disconnect.properties.reason_string.is_none());
}
