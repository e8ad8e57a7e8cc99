//! Black-box tests for misbehaving peers and limits: a first packet that is
//! not CONNECT, garbage, oversized packets, a second CONNECT, QoS 3, reserved
//! bits, wildcards in a PUBLISH topic, an unknown protocol level, silence
//! before CONNECT, and --max-connections. Each bad connection is closed
//! (with the v5 reason code where the protocol has one) and the broker keeps
//! serving other clients.

mod common;

use common::*;
use std::time::{Duration, Instant};

/// Reads until close; every packet the broker sent must be a refusal (CONNACK
/// with a failure code or a DISCONNECT with an error reason). Answers them.
fn expect_refused(c: &mut RawClient, why: &str) -> Vec<RawPacket> {
    let got = c.expect_closed(PROMPT, why);
    for p in &got {
        let refusal = match p.kind {
            CONNACK => p.body.get(1).is_some_and(|&code| code != 0),
            DISCONNECT => p.body.first().is_some_and(|&code| code >= 0x80),
            _ => false,
        };
        assert!(refusal, "{why}: unexpected packet before close: {p:?}");
    }
    got
}

/// A v3 or v5 connection that completed CONNECT.
fn connected(addr: std::net::SocketAddr, id: &str, v5: bool) -> RawClient {
    let opts = if v5 {
        ConnectOpts::v5(id)
    } else {
        ConnectOpts::v3(id)
    };
    RawClient::connected(addr, &opts).0
}

#[test]
fn first_packet_not_connect_is_closed() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    for first in [
        PINGREQ_BYTES.to_vec(),
        publish_packet("a", b"x", 0, 0, false, false),
        subscribe_packet(1, &[("a", 0)], false),
    ] {
        let mut c = RawClient::open(addr);
        c.send(&first).unwrap();
        let got = expect_refused(&mut c, "first packet not CONNECT");
        assert!(
            got.is_empty(),
            "nothing may be sent before CONNECT: {got:?}"
        );
    }
    assert_serves(addr);
}

#[test]
fn garbage_is_closed() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    // An HTTP request frames as type 4 (PUBACK) with invalid flags and a
    // remaining length of 0x45; padded so that the whole frame is there.
    let http = [&b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..], &[b' '; 80]].concat();
    let garbage: [&[u8]; 3] = [
        &http,
        // CONNECT with a five-byte remaining length (MQTT 1.5.5: at most 4).
        &[0x10, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
        // Type 0 is reserved.
        &[0x00, 0x00],
    ];
    for bytes in garbage {
        let mut c = RawClient::open(addr);
        c.send(bytes).unwrap();
        expect_refused(&mut c, &format!("garbage {bytes:?}"));
    }
    // Garbage after a good CONNECT (type 0 packet).
    for v5 in [false, true] {
        let mut c = connected(addr, "garbage-late", v5);
        c.send(&[0x00, 0x02, 0xAB, 0xCD]).unwrap();
        expect_refused(&mut c, "garbage after CONNECT");
    }
    wait_stats(&broker, "protocol errors counted", |s| {
        s.protocol_errors >= 2
    });
    assert_serves(addr);
}

#[test]
fn oversized_packets_are_refused() {
    let broker = start(&["--max-packet-size", "256"]);
    let addr = broker.local_addr();
    let big = vec![b'x'; 1000];

    // v5 PUBLISH over the limit: DISCONNECT 0x95 (packet too large).
    let mut c = connected(addr, "big5", true);
    c.send(&publish_packet("big", &big, 0, 0, false, true))
        .unwrap();
    let got = expect_refused(&mut c, "oversized v5 PUBLISH");
    assert!(
        got.iter().any(|p| p.is_disconnect(0x95)),
        "expected DISCONNECT 0x95: {got:?}"
    );

    // v3 PUBLISH over the limit: closed.
    let mut c = connected(addr, "big3", false);
    c.send(&publish_packet("big", &big, 0, 0, false, false))
        .unwrap();
    expect_refused(&mut c, "oversized v3 PUBLISH");

    // Only a fixed header announcing 1 MB: refused from the header alone,
    // without waiting for a body that never comes.
    let mut c = connected(addr, "bighead", true);
    let mut header = vec![0x30];
    put_varint(&mut header, 1_000_000);
    c.send(&header).unwrap();
    let got = expect_refused(&mut c, "oversized fixed header");
    assert!(got.iter().any(|p| p.is_disconnect(0x95)), "{got:?}");

    // An oversized CONNECT: closed, at most a CONNACK 0x95.
    let mut c = RawClient::open(addr);
    let mut opts = ConnectOpts::v5(&"c".repeat(300));
    opts.keep_alive = 30;
    c.send(&opts.encode()).unwrap();
    let got = expect_refused(&mut c, "oversized CONNECT");
    for p in got {
        assert_eq!(p.connack(true).code, 0x95, "oversized CONNECT");
    }

    // Exactly at the limit still passes.
    let (mut sub, _) = RawClient::connected(addr, &ConnectOpts::v3("fits-sub"));
    assert_eq!(sub.subscribe(1, &[("fit", 0)]), [0]);
    let mut c = connected(addr, "fits", false);
    // 1 type byte + 2 length bytes + 5 topic bytes + 248 payload = 256.
    let exact = publish_packet("fit", &vec![b'y'; 248], 0, 0, false, false);
    assert_eq!(exact.len(), 256, "test setup: packet of exactly the limit");
    c.send(&exact).unwrap();
    assert_eq!(sub.expect_publish(PROMPT).payload.len(), 248);
    c.ping();
    assert_serves(addr);
}

#[test]
fn second_connect_is_a_protocol_error() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    for v5 in [false, true] {
        let opts = if v5 {
            ConnectOpts::v5("twice5")
        } else {
            ConnectOpts::v3("twice3")
        };
        let (mut c, _) = RawClient::connected(addr, &opts);
        c.send(&opts.encode()).unwrap();
        expect_refused(&mut c, "second CONNECT");
    }
    wait_stats(&broker, "protocol errors counted", |s| {
        s.protocol_errors >= 2
    });
    assert_serves(addr);
}

#[test]
fn qos_3_publish_is_closed() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    for v5 in [false, true] {
        let mut c = connected(addr, "qos3", v5);
        let mut bad = publish_packet("t", b"x", 2, 1, false, v5);
        bad[0] |= 0x06; // QoS bits 11 (MQTT-3.3.1-4)
        c.send(&bad).unwrap();
        expect_refused(&mut c, "QoS 3 PUBLISH");
    }
    wait_stats(&broker, "protocol errors counted", |s| {
        s.protocol_errors >= 2
    });
    assert_serves(addr);
}

#[test]
fn reserved_bit_violations_are_closed() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    for v5 in [false, true] {
        // SUBSCRIBE must have fixed header flags 0010 (MQTT-3.8.1-1).
        let mut c = connected(addr, "rsv-sub", v5);
        let mut bad = subscribe_packet(1, &[("a", 0)], v5);
        bad[0] = 0x80;
        c.send(&bad).unwrap();
        expect_refused(&mut c, "SUBSCRIBE flags 0000");

        // PINGREQ with a flag bit set.
        let mut c = connected(addr, "rsv-ping", v5);
        c.send(&[0xC1, 0x00]).unwrap();
        expect_refused(&mut c, "PINGREQ flags 0001");

        // CONNECT reserved flag (bit 0) set (MQTT-3.1.2-3): no CONNACK 0.
        let mut opts = ConnectOpts::v3("rsv-connect");
        if v5 {
            opts.level = V5;
        }
        let mut bytes = opts.encode();
        bytes[9] |= 0x01; // fixed header 2 + name 6 + level 1 => connect flags
        let mut c = RawClient::open(addr);
        c.send(&bytes).unwrap();
        expect_refused(&mut c, "CONNECT reserved flag");
    }
    wait_stats(&broker, "protocol errors counted", |s| {
        s.protocol_errors >= 4
    });
    assert_serves(addr);
}

#[test]
fn wildcard_in_publish_topic_is_closed() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    for v5 in [false, true] {
        let mut c = connected(addr, "wild-pub", v5);
        c.send(&publish_packet("a/+/b", b"x", 0, 0, false, v5))
            .unwrap();
        expect_refused(&mut c, "wildcard in PUBLISH topic (MQTT-3.3.2-2)");
    }
    assert_serves(addr);
}

#[test]
fn unknown_protocol_level_is_refused() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let mut opts = ConnectOpts::v3("level6");
    opts.level = 6;
    let mut c = RawClient::open(addr);
    c.send(&opts.encode()).unwrap();
    let got = expect_refused(&mut c, "protocol level 6");
    assert_eq!(got.len(), 1, "expected one CONNACK: {got:?}");
    assert_eq!(got[0].kind, CONNACK, "{got:?}");
    let code = got[0].body[1];
    assert!(
        code == 0x01 || code == 0x84,
        "unacceptable protocol version: 0x01 (v3) or 0x84 (v5), got {code:#04x}"
    );
    assert_serves(addr);
}

#[test]
fn silence_before_connect_hits_the_connect_timeout() {
    let broker = start(&["--connect-timeout-ms", "300"]);
    let addr = broker.local_addr();
    let opened = Instant::now();
    let mut mute = RawClient::open(addr);
    // Half a CONNECT is no better than nothing.
    let mut partial = RawClient::open(addr);
    let connect = ConnectOpts::v3("partial").encode();
    partial.send(&connect[..connect.len() / 2]).unwrap();

    let got = mute.expect_closed(Duration::from_secs(5), "connect timeout");
    let after = opened.elapsed();
    assert!(got.is_empty(), "{got:?}");
    assert!(
        after >= Duration::from_millis(300),
        "closed after {after:?}, before the timeout"
    );
    assert!(
        after <= Duration::from_millis(300 + TICK_MS) + MARGIN,
        "closed after {after:?}"
    );
    partial.expect_closed(Duration::from_secs(5), "connect timeout, partial CONNECT");
    wait_stats(&broker, "timeouts counted", |s| s.connect_timeouts == 2);

    // A client that sends CONNECT at once is unaffected, also after the timeout.
    let (mut ok, _) = RawClient::connected(addr, &ConnectOpts::v3("prompt").keep_alive(0));
    ok.expect_silence(
        Duration::from_millis(600),
        "connected clients have no connect timeout",
    );
    ok.ping();
}

#[test]
fn max_connections_refuses_the_next_one() {
    let broker = start(&["--max-connections", "2"]);
    let addr = broker.local_addr();
    let (mut a, _) = RawClient::connected(addr, &ConnectOpts::v3(&id_on_shard("mc-", 0)));
    let (mut b, _) = RawClient::connected(addr, &ConnectOpts::v5(&id_on_shard("mc-", 1)));

    for (id, v5) in [("third5", true), ("third3", false)] {
        let mut c = RawClient::open(addr);
        let opts = if v5 {
            ConnectOpts::v5(id)
        } else {
            ConnectOpts::v3(id)
        };
        // The broker may close before reading the CONNECT.
        let _ = c.send(&opts.encode());
        let got = expect_refused(&mut c, "over --max-connections");
        if v5 {
            for p in &got {
                assert_eq!(p.connack(true).code, 0x97, "quota exceeded: {p:?}");
            }
        }
    }
    a.ping();
    b.ping();

    // A freed slot can be used again.
    drop(a);
    wait_stats(&broker, "one connection left", |s| s.connections == 1);
    let (mut d, _) = RawClient::connected(addr, &ConnectOpts::v3("fourth"));
    d.ping();
    b.ping();
}

#[test]
fn connack_announces_maximum_packet_size() {
    let broker = start(&["--max-packet-size", "5000"]);
    let addr = broker.local_addr();
    let (_c, ack) = RawClient::connected(addr, &ConnectOpts::v5("mps"));
    assert_eq!(ack.props.int(0x27), Some(5000), "{ack:?}");
}

#[test]
fn client_maximum_packet_size_is_respected() {
    // MQTT-3.1.2-24/25: the server must not send a packet over the client's
    // Maximum Packet Size; it drops it as if delivered.
    let broker = start(&[]);
    let addr = broker.local_addr();
    let mut opts = ConnectOpts::v5(&id_on_shard("small-", 1));
    opts.extra_props = vec![0x27, 0, 0, 0, 64];
    let (mut sub, _) = RawClient::connected(addr, &opts);
    assert_eq!(sub.subscribe(1, &[("mps/#", 0)]), [0]);
    let (mut publisher, _) = RawClient::connected(addr, &ConnectOpts::v3(&id_on_shard("mpsp", 0)));
    publisher.publish0("mps/big", &[7u8; 200]);
    publisher.publish0("mps/small", b"ok");
    let p = sub.expect_packet(PROMPT, "the small publish");
    assert!(
        p.body.len() + 2 <= 64,
        "sent {} bytes to a client with max 64",
        p.body.len() + 2
    );
    assert_eq!(p.publish(true).topic, "mps/small");
    sub.ping();
}

#[test]
fn v5_topic_alias_over_maximum_is_refused() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let (mut c, ack) = RawClient::connected(addr, &ConnectOpts::v5("alias"));
    let max = ack.props.int(0x22).unwrap_or(0);
    let alias = (max + 1) as u16;
    let mut props = vec![0x23];
    props.extend_from_slice(&alias.to_be_bytes());
    c.send(&publish_packet_v5_props("al/x", b"x", 0, 0, false, &props))
        .unwrap();
    let got = c.expect_closed(PROMPT, "topic alias over the maximum");
    assert!(
        matches!(got.last(), Some(p) if p.is_disconnect(0x94)),
        "{got:?}"
    );
    assert_serves(addr);
}

#[test]
fn invalid_utf8_and_nul_in_topic_are_refused() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    for (v5, topic) in [
        (false, &b"a/\xff"[..]),
        (true, &b"a/\xc0\x80"[..]),
        (false, &b"a\x00b"[..]),
    ] {
        let mut c = RawClient::open(addr);
        c.v5 = v5;
        let opts = if v5 {
            ConnectOpts::v5("utf")
        } else {
            ConnectOpts::v3("utf")
        };
        c.send(&opts.encode()).unwrap();
        assert_eq!(c.expect_packet(PROMPT, "CONNACK").connack(v5).code, 0);
        let mut body = Vec::new();
        put_bin(&mut body, topic);
        if v5 {
            body.push(0);
        }
        body.extend_from_slice(b"x");
        c.send(&packet(0x30, &body)).unwrap();
        c.expect_closed(PROMPT, "bad topic");
    }
    assert_serves(addr);
}

#[test]
fn slow_but_complete_connect_within_timeout_is_accepted() {
    let broker = start(&["--connect-timeout-ms", "800"]);
    let addr = broker.local_addr();
    let mut c = RawClient::open(addr);
    let bytes = ConnectOpts::v3("slow").encode();
    let (a, b) = bytes.split_at(5);
    c.send(a).unwrap();
    c.expect_silence(Duration::from_millis(300), "half a CONNECT");
    c.send(b).unwrap();
    assert_eq!(c.expect_packet(PROMPT, "CONNACK").connack(false).code, 0);
    c.expect_silence(
        Duration::from_millis(800),
        "connected: the connect timeout is over",
    );
    c.ping();
}

#[test]
fn garbage_first_byte_is_refused_without_waiting_for_a_whole_frame() {
    // "GET " frames as PUBACK (0x47, invalid flags) with remaining length
    // 0x45 = 69 bytes; the request is shorter. A first byte that is not
    // 0x10 can never start a CONNECT: close at once, not after the connect
    // timeout (10 s by default).
    let broker = start(&[]);
    let addr = broker.local_addr();
    let mut c = RawClient::open(addr);
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let got = c.expect_closed(Duration::from_secs(3), "HTTP request as first bytes");
    assert!(got.is_empty(), "{got:?}");
}

#[test]
fn auth_packet_without_method_is_a_protocol_error() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let (mut c, _) = RawClient::connected(addr, &ConnectOpts::v5("auth"));
    c.send(&packet(0xF0, &[0x18, 0])).unwrap();
    let got = c.expect_closed(PROMPT, "AUTH without Authentication Method");
    for p in &got {
        assert!(p.kind == DISCONNECT && p.body[0] >= 0x80, "{got:?}");
    }
    assert_serves(addr);
}
