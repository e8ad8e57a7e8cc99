//! Black-box routing tests: subscribe and publish across and within shards
//! with wildcards, `$`-topics, PINGREQ, QoS downgrade, invalid filters,
//! UNSUBSCRIBE, and the SUBACK-before-route ordering invariant.
//!
//! Client ids are chosen with `shard_for` so publisher and subscribers sit on
//! known shards. "Not delivered" is proven with a sentinel: messages of one
//! publisher on one QoS arrive in order (MQTT 4.6), so when the sentinel
//! published last is the first thing a subscriber sees, nothing before it was
//! delivered to that subscriber.

mod common;

use common::*;
use rumqttc::QoS;
use std::time::Duration;

/// Publishes four topics from `publisher` and checks what each wildcard
/// subscriber saw: `plus` holds `sport/+/score`, `hash` holds `sport/#`.
fn wildcard_round_v3(publisher: &mut V3Client, plus: &mut V3Client, hash: &mut V3Client) {
    for topic in [
        "sport/tennis/score",
        "sport",
        "sport/tennis/player/score",
        "sport/end/score",
    ] {
        publisher.publish(topic, QoS::AtMostOnce, topic.as_bytes());
    }
    let got: Vec<String> = (0..2).map(|_| plus.recv_publish(PROMPT).0).collect();
    assert_eq!(
        got,
        ["sport/tennis/score", "sport/end/score"],
        "sport/+/score"
    );
    let got: Vec<String> = (0..4).map(|_| hash.recv_publish(PROMPT).0).collect();
    assert_eq!(
        got,
        [
            "sport/tennis/score",
            "sport",
            "sport/tennis/player/score",
            "sport/end/score"
        ],
        "sport/# (also matches the parent level `sport`)"
    );
}

#[test]
fn wildcards_v3_same_and_cross_shard() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    // Publisher and `plus` on shard 0, `hash` on shard 1.
    let (mut plus, _) = V3Client::connect(addr, &id_on_shard("plus-", 0), |_| {});
    let (mut hash, _) = V3Client::connect(addr, &id_on_shard("hash-", 1), |_| {});
    let (mut publisher, _) = V3Client::connect(addr, &id_on_shard("pub-", 0), |_| {});
    // QoS 1 asked; the broker may grant less (it grants QoS 0 until QoS 1
    // delivery lands), but it must grant.
    let codes = plus.subscribe("sport/+/score", QoS::AtLeastOnce);
    assert!(
        matches!(codes[..], [rumqttc::SubscribeReasonCode::Success(_)]),
        "{codes:?}"
    );
    assert_eq!(
        hash.subscribe("sport/#", QoS::AtMostOnce),
        [rumqttc::SubscribeReasonCode::Success(QoS::AtMostOnce)]
    );
    wildcard_round_v3(&mut publisher, &mut plus, &mut hash);

    // The same from a publisher on the other shard.
    let (mut publisher1, _) = V3Client::connect(addr, &id_on_shard("pub-", 1), |_| {});
    wildcard_round_v3(&mut publisher1, &mut plus, &mut hash);

    let stats = broker.stats();
    assert!(stats.publishes_in >= 8, "{stats:?}");
    assert!(stats.publishes_out >= 12, "{stats:?}");
    assert_eq!(stats.connections, 4, "{stats:?}");
}

#[test]
fn wildcards_v5_same_and_cross_shard() {
    use rumqttc::v5::mqttbytes::QoS as Q5;
    let broker = start(&[]);
    let addr = broker.local_addr();
    // Publisher on shard 1, `plus` on shard 1 (same), `hash` on shard 0 (cross).
    let (mut plus, _) = V5Client::connect(addr, &id_on_shard("p5-", 1), |_| {});
    let (mut hash, _) = V5Client::connect(addr, &id_on_shard("h5-", 0), |_| {});
    let (mut publisher, _) = V5Client::connect(addr, &id_on_shard("pub5-", 1), |_| {});
    plus.subscribe("a/+/c", Q5::AtLeastOnce);
    hash.subscribe("a/#", Q5::AtLeastOnce);
    for topic in ["a/b/c", "a", "a/b/c/d", "b/b/c", "a//c"] {
        publisher.publish(topic, Q5::AtMostOnce, topic.as_bytes());
    }
    let got: Vec<(String, Vec<u8>)> = (0..2).map(|_| plus.recv_publish(PROMPT)).collect();
    assert_eq!(
        got,
        [
            ("a/b/c".to_string(), b"a/b/c".to_vec()),
            ("a//c".to_string(), b"a//c".to_vec())
        ],
        "a/+/c (+ matches an empty level)"
    );
    let got: Vec<String> = (0..4).map(|_| hash.recv_publish(PROMPT).0).collect();
    assert_eq!(got, ["a/b/c", "a", "a/b/c/d", "a//c"], "a/#");
}

#[test]
fn dollar_topics_not_matched_by_leading_wildcards() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let (mut all, _) = RawClient::connected(addr, &ConnectOpts::v3(&id_on_shard("all-", 0)));
    let (mut plus, _) = RawClient::connected(addr, &ConnectOpts::v5(&id_on_shard("plus-", 1)));
    let (mut dollar, _) = RawClient::connected(addr, &ConnectOpts::v3(&id_on_shard("dol-", 1)));
    let (mut publisher, _) = RawClient::connected(addr, &ConnectOpts::v3(&id_on_shard("pub-", 0)));
    assert_eq!(all.subscribe(1, &[("#", 0)]), [0]);
    assert_eq!(plus.subscribe(1, &[("+/x", 0), ("+/+", 0)]), [0, 0]);
    assert_eq!(dollar.subscribe(1, &[("$test/#", 0)]), [0]);

    publisher.publish0("$test/x", b"dollar");
    publisher.publish0("plain/x", b"sentinel");

    let p = all.expect_publish(PROMPT);
    assert_eq!(
        p.topic, "plain/x",
        "`#` must not match `$test/x` (MQTT-4.7.2-1)"
    );
    let p = plus.expect_publish(PROMPT);
    assert_eq!(p.topic, "plain/x", "`+/x` must not match `$test/x`");
    // plain/x matches both of `plus`'s filters; the standard allows one or two
    // copies, so only the first is checked.
    let p = dollar.expect_publish(PROMPT);
    assert_eq!(
        (p.topic.as_str(), p.payload.as_slice()),
        ("$test/x", &b"dollar"[..])
    );
}

#[test]
fn pingreq_gets_pingresp_v3_and_v5() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let (mut a, _) = RawClient::connected(addr, &ConnectOpts::v3("ping3").keep_alive(5));
    a.ping();
    // Three PINGREQs in one write: three PINGRESPs, nothing else.
    let mut three = PINGREQ_BYTES.to_vec();
    three.extend_from_slice(&PINGREQ_BYTES);
    three.extend_from_slice(&PINGREQ_BYTES);
    a.send(&three).unwrap();
    for _ in 0..3 {
        let p = a.expect_packet(PROMPT, "PINGRESP");
        assert_eq!((p.kind, p.flags, p.body.len()), (PINGRESP, 0, 0), "{p:?}");
    }
    let (mut b, _) = RawClient::connected(addr, &ConnectOpts::v5("ping5").keep_alive(5));
    b.ping();
    b.ping();
}

#[test]
fn delivered_qos_is_min_of_publish_and_granted() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let (mut q0, _) = RawClient::connected(addr, &ConnectOpts::v3(&id_on_shard("q0-", 0)));
    let (mut q1, _) = RawClient::connected(addr, &ConnectOpts::v3(&id_on_shard("q1-", 1)));
    let (mut publisher, _) = RawClient::connected(addr, &ConnectOpts::v3(&id_on_shard("qp-", 1)));
    assert_eq!(q0.subscribe(1, &[("q/t", 0)]), [0]);
    let granted = q1.subscribe(1, &[("q/t", 1)]);
    assert!(matches!(granted[..], [0 | 1]), "{granted:?}");
    let granted = granted[0];

    // A v3 QoS 1 PUBLISH is acknowledged whatever QoS the broker delivers.
    publisher.publish1("q/t", b"one", 7);
    let p = q0.expect_publish(PROMPT);
    assert_eq!((p.qos, p.payload.as_slice()), (0, &b"one"[..]), "{p:?}");
    let p = q1.expect_publish(PROMPT);
    assert_eq!(
        (p.qos, p.payload.as_slice()),
        (granted, &b"one"[..]),
        "{p:?}"
    );
    assert_eq!(
        p.packet_id == 0,
        granted == 0,
        "packet id iff QoS > 0: {p:?}"
    );
    publisher.publish0("q/t", b"zero");
    let p = q1.expect_publish(PROMPT);
    assert_eq!((p.qos, p.payload.as_slice()), (0, &b"zero"[..]), "{p:?}");
}

#[test]
fn v5_publish_above_announced_maximum_qos_is_refused() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let (mut sub, _) = RawClient::connected(addr, &ConnectOpts::v5("mq-sub"));
    assert_eq!(sub.subscribe(1, &[("mq/#", 0)]), [0]);
    let (mut c, ack) = RawClient::connected(addr, &ConnectOpts::v5("mq-pub"));
    // Maximum QoS (0x24) absent means 2 (MQTT 3.2.2.3.4).
    match ack.props.int(0x24) {
        Some(0) => {
            // MQTT-3.2.2-11: DISCONNECT 0x9B (QoS not supported).
            c.send(&publish_packet("mq/1", b"x", 1, 1, false, true))
                .unwrap();
            let got = c.expect_closed(PROMPT, "QoS 1 over Maximum QoS 0");
            assert!(
                matches!(got.last(), Some(p) if p.is_disconnect(0x9B)),
                "{got:?}"
            );
            // Nothing of the refused PUBLISH reached the subscriber.
            let (mut other, _) = RawClient::connected(addr, &ConnectOpts::v5("mq-pub2"));
            other.publish0("mq/sentinel", b"s");
            assert_eq!(sub.expect_publish(PROMPT).topic, "mq/sentinel");
        }
        max => {
            assert!(matches!(max, None | Some(1) | Some(2)), "{ack:?}");
            c.publish1("mq/1", b"x", 1);
            assert_eq!(sub.expect_publish(PROMPT).topic, "mq/1");
        }
    }
}

#[test]
fn publish_right_after_suback_is_never_missed_across_shards() {
    // DESIGN: a SUBACK is written only after the route-add is in every
    // shard's inbox, so a publish that causally follows it is delivered.
    let broker = start(&[]);
    let addr = broker.local_addr();
    let (mut sub, _) = RawClient::connected(addr, &ConnectOpts::v3(&id_on_shard("os-", 1)));
    let (mut publisher, _) = RawClient::connected(addr, &ConnectOpts::v3(&id_on_shard("op-", 0)));
    for round in 0..20u16 {
        let topic = format!("order/{round}");
        assert_eq!(sub.subscribe(round + 1, &[(&topic, 0)]), [0]);
        publisher.publish0(&topic, &round.to_be_bytes());
        let p = sub.expect_publish(PROMPT);
        assert_eq!(
            (p.topic.as_str(), p.payload.as_slice()),
            (topic.as_str(), &round.to_be_bytes()[..]),
            "round {round}"
        );
    }
}

#[test]
fn clients_on_both_shards_all_receive() {
    // Whatever shard accepts a socket, the connection ends up on its owner
    // shard; with 16 sockets spread by SO_REUSEPORT some need a hand-off.
    let broker = start(&[]);
    let addr = broker.local_addr();
    let mut subs = Vec::new();
    for i in 0..16 {
        let id = id_on_shard(&format!("hs{i}-"), i % 2);
        let (mut c, _) = RawClient::connected(addr, &ConnectOpts::v3(&id));
        assert_eq!(c.subscribe(1, &[(&format!("h/{id}"), 0)]), [0]);
        subs.push((id, c));
    }
    let (mut publisher, _) = V3Client::connect(addr, "hand-pub", |_| {});
    for (id, _) in &subs {
        publisher.publish(&format!("h/{id}"), QoS::AtMostOnce, id.as_bytes());
    }
    for (id, c) in &mut subs {
        let p = c.expect_publish(PROMPT);
        assert_eq!(
            (p.topic.as_str(), p.payload.as_slice()),
            (format!("h/{id}").as_str(), id.as_bytes())
        );
        c.ping();
    }
    let stats = broker.stats();
    assert_eq!(stats.connections, 17, "{stats:?}");
    assert!(stats.connects >= 17, "{stats:?}");
    // With random accept placement the chance that none of 17 sockets needed
    // a hop is about 2^-17.
    assert!(
        stats.handoffs > 0,
        "no hand-off among 17 sockets: {stats:?}"
    );
}

#[test]
fn invalid_subscribe_filter_gets_failure_code() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let (mut c5, _) = RawClient::connected(addr, &ConnectOpts::v5("badf5"));
    assert_eq!(c5.subscribe(1, &[("a/#/b", 0)]), [0x8F], "v5 a/#/b");
    let codes = c5.subscribe(2, &[("ok/+", 1), ("x#", 0), ("a+/b", 0)]);
    assert_eq!(codes.len(), 3, "{codes:?}");
    assert!(codes[0] <= 1, "ok/+ must be granted: {codes:?}");
    assert_eq!(&codes[1..], [0x8F, 0x8F], "x#, a+/b: {codes:?}");
    c5.ping();

    let (mut c3, _) = RawClient::connected(addr, &ConnectOpts::v3("badf3"));
    assert_eq!(c3.subscribe(1, &[("a/#/b", 0)]), [0x80], "v3 a/#/b");
    assert_eq!(c3.subscribe(2, &[("ok/#", 0), ("#/x", 0)]), [0, 0x80]);
    c3.ping();

    // The valid filter from the mixed SUBSCRIBE really is in place.
    let (mut p, _) = RawClient::connected(addr, &ConnectOpts::v3("badf-pub"));
    p.publish0("ok/1", b"x");
    assert_eq!(c5.expect_publish(PROMPT).topic, "ok/1");
    assert_eq!(c3.expect_publish(PROMPT).topic, "ok/1");
}

fn unsubscribe_round(v5: bool) {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let opts = if v5 {
        ConnectOpts::v5(&id_on_shard("un-", 0))
    } else {
        ConnectOpts::v3(&id_on_shard("un-", 0))
    };
    let (mut sub, _) = RawClient::connected(addr, &opts);
    let (mut publisher, _) = RawClient::connected(addr, &ConnectOpts::v3(&id_on_shard("up-", 1)));
    assert_eq!(sub.subscribe(1, &[("u/a", 0), ("u/b", 0)]), [0, 0]);
    publisher.publish0("u/a", b"1");
    assert_eq!(sub.expect_publish(PROMPT).topic, "u/a");

    sub.send(&unsubscribe_packet(9, &["u/a", "u/never"], v5))
        .unwrap();
    let p = sub.expect_packet(PROMPT, "UNSUBACK");
    assert_eq!(p.flags, 0, "{p:?}");
    let (id, codes) = p.ack_codes(UNSUBACK, v5);
    assert_eq!(id, 9);
    if v5 {
        assert_eq!(codes, [0x00, 0x11], "success, no subscription existed");
    } else {
        assert!(
            codes.is_empty(),
            "v3.1.1 UNSUBACK has no payload: {codes:?}"
        );
    }

    publisher.publish0("u/a", b"2");
    publisher.publish0("u/b", b"sentinel");
    let p = sub.expect_publish(PROMPT);
    assert_eq!(
        (p.topic.as_str(), p.payload.as_slice()),
        ("u/b", &b"sentinel"[..]),
        "u/a must not be delivered after UNSUBACK"
    );
}

#[test]
fn unsubscribe_stops_delivery_v3() {
    unsubscribe_round(false);
}

#[test]
fn unsubscribe_stops_delivery_v5() {
    unsubscribe_round(true);
}

/// Connects with `opts`, writing CONNECT and `then` in one write.
fn pipelined(addr: std::net::SocketAddr, opts: &ConnectOpts, then: &[u8]) -> RawClient {
    let mut c = RawClient::open(addr);
    c.v5 = opts.is_v5();
    let mut bytes = opts.encode();
    bytes.extend_from_slice(then);
    c.send(&bytes).unwrap();
    let ack = c.expect_packet(PROMPT, "CONNACK").connack(c.v5);
    assert_eq!(ack.code, 0, "{ack:?}");
    c
}

#[test]
fn packets_pipelined_behind_connect_survive_the_hand_off() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let (mut publisher, _) = RawClient::connected(addr, &ConnectOpts::v3("pl-pub"));
    // 20 sockets, ids alternating between shards: about half need a hop, and
    // each carries SUBSCRIBE + PINGREQ in the same write as its CONNECT.
    let mut subs = Vec::new();
    for i in 0..20 {
        let v5 = i % 4 < 2;
        let id = id_on_shard(&format!("pl{i}-"), i % 2);
        let opts = if v5 {
            ConnectOpts::v5(&id)
        } else {
            ConnectOpts::v3(&id)
        };
        let mut then = subscribe_packet(3, &[(&format!("pl/{id}"), 0)], v5);
        then.extend_from_slice(&PINGREQ_BYTES);
        let mut c = pipelined(addr, &opts, &then);
        let p = c.expect_packet(PROMPT, "SUBACK");
        assert_eq!(p.ack_codes(SUBACK, v5), (3, vec![0]), "{id}");
        let p = c.expect_packet(PROMPT, "PINGRESP");
        assert_eq!(p.kind, PINGRESP, "{p:?}");
        subs.push((id, c));
    }
    for (id, _) in &subs {
        publisher.publish0(&format!("pl/{id}"), id.as_bytes());
    }
    for (id, c) in &mut subs {
        let p = c.expect_publish(PROMPT);
        assert_eq!(p.payload, id.as_bytes());
    }
    assert!(broker.stats().handoffs > 0, "{:?}", broker.stats());
}

#[test]
fn connect_and_packets_split_into_single_bytes() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let (mut sub, _) = RawClient::connected(addr, &ConnectOpts::v3("split-sub"));
    assert_eq!(sub.subscribe(1, &[("split/#", 0)]), [0]);
    for shard in 0..2 {
        for v5 in [false, true] {
            let id = id_on_shard(&format!("split{}-", u8::from(v5)), shard);
            let opts = if v5 {
                ConnectOpts::v5(&id)
            } else {
                ConnectOpts::v3(&id)
            };
            let mut c = RawClient::open(addr);
            c.v5 = v5;
            let mut bytes = opts.encode();
            bytes.extend_from_slice(&publish_packet("split/x", id.as_bytes(), 0, 0, false, v5));
            bytes.extend_from_slice(&PINGREQ_BYTES);
            for b in &bytes {
                c.send(&[*b]).unwrap();
            }
            assert_eq!(c.expect_packet(PROMPT, "CONNACK").connack(v5).code, 0);
            assert_eq!(c.expect_packet(PROMPT, "PINGRESP").kind, PINGRESP);
            assert_eq!(sub.expect_publish(PROMPT).payload, id.as_bytes());
        }
    }
}

#[test]
fn large_payload_crosses_shards_intact() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let (mut sub, _) = RawClient::connected(addr, &ConnectOpts::v5(&id_on_shard("big-s", 0)));
    assert_eq!(sub.subscribe(1, &[("big", 0)]), [0]);
    let (mut publisher, _) = RawClient::connected(addr, &ConnectOpts::v3(&id_on_shard("big-p", 1)));
    let payload: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    publisher.publish0("big", &payload);
    publisher.publish0("big", b"after");
    let p = sub.expect_publish(PROMPT);
    assert_eq!(p.payload.len(), payload.len());
    assert!(p.payload == payload, "payload corrupted");
    assert_eq!(sub.expect_publish(PROMPT).payload, b"after");
}

#[test]
fn many_messages_arrive_in_order_across_shards() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let (mut sub, _) = RawClient::connected(addr, &ConnectOpts::v3(&id_on_shard("ord-s", 0)));
    assert_eq!(sub.subscribe(1, &[("ord/+", 0)]), [0]);
    let (mut publisher, _) = RawClient::connected(addr, &ConnectOpts::v3(&id_on_shard("ord-p", 1)));
    let mut batch = Vec::new();
    for i in 0..2000u32 {
        batch.extend_from_slice(&publish_packet(
            "ord/x",
            &i.to_be_bytes(),
            0,
            0,
            false,
            false,
        ));
    }
    publisher.send(&batch).unwrap();
    for i in 0..2000u32 {
        let p = sub.expect_publish(PROMPT);
        assert_eq!(p.payload, i.to_be_bytes(), "message {i}");
    }
    publisher.ping();
}

/// Publishes each topic then a sentinel from `publisher`; answers the topics
/// `sub` received before the sentinel.
fn received_before_sentinel(
    publisher: &mut RawClient,
    sub: &mut RawClient,
    topics: &[&str],
    sentinel: &str,
) -> Vec<String> {
    for t in topics {
        publisher.publish0(t, t.as_bytes());
    }
    publisher.publish0(sentinel, b"sentinel");
    let mut got = Vec::new();
    loop {
        let p = sub.expect_publish(PROMPT);
        if p.topic == sentinel && p.payload == b"sentinel" {
            return got;
        }
        got.push(p.topic);
    }
}

#[test]
fn wildcard_edge_levels() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let (mut publisher, _) = RawClient::connected(addr, &ConnectOpts::v3(&id_on_shard("ep-", 0)));
    let topics = ["/", "a", "a/", "/a", "A", "a/b", "a//b"];
    let cases: [(&str, &[&str]); 6] = [
        ("+", &["a", "A"]),
        ("+/+", &["/", "a/", "/a", "a/b"]),
        ("a/+", &["a/", "a/b"]),
        ("a/#", &["a", "a/", "a/b", "a//b"]),
        ("/#", &["/", "/a"]),
        ("a/+/b", &["a//b"]),
    ];
    for (i, (filter, want)) in cases.iter().enumerate() {
        let id = id_on_shard(&format!("edge{i}-"), i % 2);
        let (mut sub, _) = RawClient::connected(addr, &ConnectOpts::v3(&id));
        assert_eq!(sub.subscribe(1, &[(filter, 0), ("end", 0)]), [0, 0]);
        let got = received_before_sentinel(&mut publisher, &mut sub, &topics, "end");
        assert_eq!(got, *want, "filter {filter}");
    }
}

#[test]
fn subscribing_twice_replaces_the_subscription() {
    // MQTT-3.8.4-3: an identical filter replaces the existing subscription,
    // so one PUBLISH gives one copy.
    let broker = start(&[]);
    let addr = broker.local_addr();
    let (mut sub, _) = RawClient::connected(addr, &ConnectOpts::v3(&id_on_shard("twice-", 1)));
    let (mut publisher, _) = RawClient::connected(addr, &ConnectOpts::v3(&id_on_shard("tp-", 0)));
    assert_eq!(sub.subscribe(1, &[("dup/x", 0), ("dup/end", 0)]), [0, 0]);
    assert_eq!(sub.subscribe(2, &[("dup/x", 0)]), [0]);
    let got = received_before_sentinel(&mut publisher, &mut sub, &["dup/x"], "dup/end");
    assert_eq!(got, ["dup/x"], "one copy per matching subscription");

    // One UNSUBSCRIBE removes it, however often it was subscribed.
    sub.send(&unsubscribe_packet(3, &["dup/x"], false)).unwrap();
    assert_eq!(sub.expect_packet(PROMPT, "UNSUBACK").kind, UNSUBACK);
    let got = received_before_sentinel(&mut publisher, &mut sub, &["dup/x"], "dup/end");
    assert!(got.is_empty(), "delivered after UNSUBSCRIBE: {got:?}");
}

#[test]
fn route_counts_survive_unsubscribe_disconnect_and_resubscribe() {
    // Two subscribers of one filter on the shard opposite the publisher: the
    // route to that shard must stay while either holds the filter.
    let broker = start(&[]);
    let addr = broker.local_addr();
    let (mut publisher, _) = RawClient::connected(addr, &ConnectOpts::v3(&id_on_shard("rp-", 0)));
    let (mut s1, _) = RawClient::connected(addr, &ConnectOpts::v3(&id_on_shard("rs1-", 1)));
    let (mut s2, _) = RawClient::connected(addr, &ConnectOpts::v5(&id_on_shard("rs2-", 1)));
    for s in [&mut s1, &mut s2] {
        assert_eq!(s.subscribe(1, &[("rc/+", 0), ("rc-end", 0)]), [0, 0]);
    }
    // s1 unsubscribes: s2 still receives.
    s1.send(&unsubscribe_packet(2, &["rc/+"], false)).unwrap();
    assert_eq!(s1.expect_packet(PROMPT, "UNSUBACK").kind, UNSUBACK);
    assert_eq!(
        received_before_sentinel(&mut publisher, &mut s2, &["rc/1"], "rc-end"),
        ["rc/1"]
    );
    // s1 got only the sentinel of that round.
    assert_eq!(s1.expect_publish(PROMPT).topic, "rc-end");
    assert!(received_before_sentinel(&mut publisher, &mut s1, &["rc/2"], "rc-end").is_empty());
    assert_eq!(s2.expect_publish(PROMPT).topic, "rc/2");
    assert_eq!(s2.expect_publish(PROMPT).topic, "rc-end");

    // s1 subscribes again, then s2 (clean) goes away: s1 still receives.
    assert_eq!(s1.subscribe(3, &[("rc/+", 0)]), [0]);
    s2.send(&disconnect_v5(0)).unwrap();
    s2.expect_closed(PROMPT, "DISCONNECT");
    wait_stats(&broker, "s2 gone", |s| s.connections == 2);
    assert_eq!(
        received_before_sentinel(&mut publisher, &mut s1, &["rc/3"], "rc-end"),
        ["rc/3"]
    );

    // A new subscriber on the publisher's own shard, after all that.
    let (mut s3, _) = RawClient::connected(addr, &ConnectOpts::v3(&id_on_shard("rs3-", 0)));
    assert_eq!(s3.subscribe(1, &[("rc/#", 0), ("rc-end", 0)]), [0, 0]);
    assert_eq!(
        received_before_sentinel(&mut publisher, &mut s3, &["rc/4"], "rc-end"),
        ["rc/4"]
    );
    assert_eq!(s1.expect_publish(PROMPT).topic, "rc/4");
    assert_eq!(s1.expect_publish(PROMPT).topic, "rc-end");
}

#[test]
fn an_expired_offline_session_takes_its_routes_along() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let (mut publisher, _) = RawClient::connected(addr, &ConnectOpts::v3(&id_on_shard("xp-", 0)));
    let opts = ConnectOpts::v5(&id_on_shard("xs-", 1))
        .clean(false)
        .session_expiry(1);
    let (mut gone, _) = RawClient::connected(addr, &opts);
    assert_eq!(gone.subscribe(1, &[("exp/x", 0)]), [0]);
    gone.send(&disconnect_v5(0)).unwrap();
    gone.expect_closed(PROMPT, "DISCONNECT");
    assert!(
        poll_until(Duration::from_secs(5), || broker.stats().sessions == 1),
        "offline session never expired: {:?}",
        broker.stats()
    );
    // Publishing to the dead session's filter is harmless; a new subscriber
    // on the same shard gets exactly what it should.
    publisher.publish0("exp/x", b"nobody");
    // The PINGRESP follows the handling of that QoS 0 publish (same
    // connection, in order), so it is routed before the new subscriber
    // exists; without this the publish could still be in flight and reach
    // the new subscription.
    publisher.ping();
    let (mut fresh, _) = RawClient::connected(addr, &ConnectOpts::v3(&id_on_shard("xf-", 1)));
    assert_eq!(fresh.subscribe(1, &[("exp/x", 0)]), [0]);
    publisher.publish0("exp/x", b"fresh");
    assert_eq!(fresh.expect_publish(PROMPT).payload, b"fresh");
    let (_back, ack) = RawClient::connected(addr, &opts);
    assert!(!ack.session_present);
}

#[test]
fn v5_retained_publish_follows_retain_available() {
    // Retain Available 0 in CONNACK and a PUBLISH with RETAIN 1 => DISCONNECT
    // 0x9A (MQTT 5.0 3.3.1.3); otherwise a later subscriber gets the message
    // with RETAIN set (MQTT-3.3.1-9).
    let broker = start(&[]);
    let addr = broker.local_addr();
    let (mut c, ack) = RawClient::connected(addr, &ConnectOpts::v5("ret"));
    c.send(&publish_packet("r/x", b"kept", 0, 0, true, true))
        .unwrap();
    if ack.props.int(0x25) == Some(0) {
        let got = c.expect_closed(PROMPT, "retained PUBLISH with Retain Available 0");
        assert!(
            matches!(got.last(), Some(p) if p.is_disconnect(0x9A)),
            "{got:?}"
        );
    } else {
        c.ping();
        let (mut late, _) = RawClient::connected(addr, &ConnectOpts::v5("ret-late"));
        assert_eq!(late.subscribe(1, &[("r/+", 0)]), [0]);
        let p = late.expect_publish(PROMPT);
        assert_eq!(
            (p.topic.as_str(), p.payload.as_slice(), p.retain),
            ("r/x", &b"kept"[..], true)
        );
    }
}

#[test]
fn v5_publish_properties_are_forwarded_unaltered() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let (mut sub5, _) = RawClient::connected(addr, &ConnectOpts::v5(&id_on_shard("pp5-", 1)));
    let (mut sub3, _) = RawClient::connected(addr, &ConnectOpts::v3(&id_on_shard("pp3-", 0)));
    assert_eq!(sub5.subscribe(1, &[("pp/#", 0)]), [0]);
    assert_eq!(sub3.subscribe(1, &[("pp/#", 0)]), [0]);
    let (mut publisher, _) = RawClient::connected(addr, &ConnectOpts::v5(&id_on_shard("ppp-", 0)));
    let mut props = message_props();
    props.extend_from_slice(&[0x02, 0, 0, 0, 60]); // message expiry 60 s
    publisher
        .send(&publish_packet_v5_props(
            "pp/x", b"hello", 0, 0, false, &props,
        ))
        .unwrap();
    let p = sub5.expect_publish(PROMPT);
    assert_eq!(p.payload, b"hello");
    assert_message_props(&p.props, "PUBLISH");
    let expiry = p
        .props
        .int(0x02)
        .expect("message expiry forwarded (MQTT-3.3.2-6)");
    assert!((55..=60).contains(&expiry), "remaining expiry {expiry}");
    let p = sub3.expect_publish(PROMPT);
    assert_eq!(p.payload, b"hello", "v3 subscriber gets the bare message");
}

#[test]
fn nothing_after_disconnect_is_processed() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let (mut sub, _) = RawClient::connected(addr, &ConnectOpts::v3("after-sub"));
    assert_eq!(sub.subscribe(1, &[("after/#", 0)]), [0]);
    for v5 in [false, true] {
        let opts = if v5 {
            ConnectOpts::v5("after5")
        } else {
            ConnectOpts::v3("after3")
        };
        let (mut c, _) = RawClient::connected(addr, &opts);
        let mut bytes = if v5 {
            disconnect_v5(0)
        } else {
            DISCONNECT_V3.to_vec()
        };
        bytes.extend_from_slice(&publish_packet("after/x", b"late", 0, 0, false, v5));
        c.send(&bytes).unwrap();
        c.expect_closed(PROMPT, "DISCONNECT");
    }
    let (mut s, _) = RawClient::connected(addr, &ConnectOpts::v3("after-s"));
    s.publish0("after/end", b"end");
    assert_eq!(
        sub.expect_publish(PROMPT).topic,
        "after/end",
        "PUBLISH after DISCONNECT routed"
    );
}

#[test]
fn shared_subscription_follows_shared_subscription_available() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let (mut c5, ack) = RawClient::connected(addr, &ConnectOpts::v5("share5"));
    let codes = c5.subscribe(1, &[("$share/g/t", 0), ("ok", 0)]);
    if ack.props.int(0x2A) == Some(0) {
        assert_eq!(codes, [0x9E, 0], "shared subscriptions not supported");
        let (mut c3, _) = RawClient::connected(addr, &ConnectOpts::v3("share3"));
        assert_eq!(c3.subscribe(1, &[("$share/g/t", 0)]), [0x80]);
        c3.ping();
    } else {
        assert_eq!(codes, [0, 0]);
    }
    // Malformed share names are invalid filters either way (MQTT 4.8.2).
    let codes = c5.subscribe(2, &[("$share/g", 0), ("$share//t", 0), ("$share/g+/t", 0)]);
    assert!(codes.iter().all(|&c| c == 0x8F || c == 0x9E), "{codes:?}");
    c5.ping();
}
