//! Black-box keep-alive tests (MQTT 3.1.2.10): silent clients are closed no
//! earlier than 1.5 x Keep Alive after their last packet and not much later;
//! any packet counts; Keep Alive 0 never expires; traffic from the broker
//! does not count; v5 gets DISCONNECT 0x8D; Server Keep Alive and the
//! keep-alive cap.
//!
//! Timing: the lower bound is the real assertion and is measured from just
//! before the client's last packet was written (the broker cannot have seen
//! it earlier). The upper bound is measured from when the broker's answer was
//! read (it cannot have seen the packet later) and allows one tick plus a
//! generous `MARGIN` for CI noise.

mod common;

use common::*;
use std::time::{Duration, Instant};

#[test]
fn silent_v3_client_closed_after_1_5_keep_alive_and_will_delivered() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let (mut watcher, _) = RawClient::connected(addr, &ConnectOpts::v3("watcher").keep_alive(0));
    assert_eq!(watcher.subscribe(1, &[("will/ka/#", 0)]), [0]);

    let opts = ConnectOpts::v3(&id_on_shard("silent-", 1))
        .keep_alive(1)
        .will(WillOpts::new("will/ka/silent", "gone"));
    let mut silent = RawClient::open(addr);
    let sent = Instant::now();
    silent.send(&opts.encode()).unwrap();
    let ack = silent.expect_packet(PROMPT, "CONNACK").connack(false);
    let acked = Instant::now();
    assert_eq!(ack.code, 0);

    let (packets, closed) = silent.expect_closed_at(Duration::from_secs(5), "keep-alive expiry");
    assert!(
        packets.is_empty(),
        "v3.1.1 has no server DISCONNECT: {packets:?}"
    );
    assert_close_window(sent, acked, closed, Duration::from_millis(1500), "K=1");

    let will = watcher.expect_publish(PROMPT);
    assert_eq!(
        (will.topic.as_str(), will.payload.as_slice()),
        ("will/ka/silent", &b"gone"[..])
    );
    let stats = wait_stats(&broker, "expiry and will counted", |s| {
        s.keepalive_expired == 1 && s.wills_published == 1 && s.connections == 1
    });
    assert_eq!(stats.connect_timeouts, 0, "{stats:?}");
}

#[test]
fn silent_v5_client_gets_disconnect_0x8d_before_close() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let opts = ConnectOpts::v5(&id_on_shard("silent5-", 0)).keep_alive(1);
    let mut silent = RawClient::open(addr);
    silent.v5 = true;
    let sent = Instant::now();
    silent.send(&opts.encode()).unwrap();
    let ack = silent.expect_packet(PROMPT, "CONNACK").connack(true);
    let acked = Instant::now();
    assert_eq!(ack.code, 0);
    assert_eq!(
        ack.props.int(PROP_SERVER_KEEP_ALIVE).unwrap_or(1),
        1,
        "{ack:?}"
    );

    let (packets, closed) = silent.expect_closed_at(Duration::from_secs(5), "keep-alive expiry");
    assert_close_window(sent, acked, closed, Duration::from_millis(1500), "v5 K=1");
    assert!(
        matches!(packets.last(), Some(p) if p.is_disconnect(0x8D)),
        "expected DISCONNECT 0x8D (keep alive timeout) before the close, got {packets:?}"
    );
    assert_eq!(packets.len(), 1, "{packets:?}");
    wait_stats(&broker, "expiry counted", |s| s.keepalive_expired == 1);
}

#[test]
fn any_packet_resets_the_keep_alive_timer() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let (mut sub, _) = RawClient::connected(addr, &ConnectOpts::v3("ka-sub").keep_alive(0));
    assert_eq!(sub.subscribe(1, &[("ka/#", 0)]), [0]);
    let (mut c, _) = RawClient::connected(addr, &ConnectOpts::v3("ka-busy").keep_alive(1));

    // Stay 1 s quiet, then talk: 4 rounds = 4 s alive with K=1 (expiry 1.5 s).
    let mut last_sent = Instant::now();
    for round in 0..4u8 {
        c.expect_silence(Duration::from_millis(1000), "connection must stay open");
        last_sent = Instant::now();
        if round % 2 == 0 {
            c.ping();
        } else {
            // A PUBLISH counts as much as a PINGREQ.
            c.publish0("ka/x", &[round]);
            assert_eq!(sub.expect_publish(PROMPT).payload, [round]);
        }
    }
    let acked = Instant::now();
    let (_, closed) = c.expect_closed_at(Duration::from_secs(5), "expiry after the last packet");
    assert_close_window(
        last_sent,
        acked,
        closed,
        Duration::from_millis(1500),
        "after talk",
    );
    assert_eq!(broker.stats().keepalive_expired, 1);
}

#[test]
fn keep_alive_zero_never_expires() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let started = Instant::now();
    let (mut zero3, _) = RawClient::connected(addr, &ConnectOpts::v3("zero3").keep_alive(0));
    let (mut zero5, _) = RawClient::connected(addr, &ConnectOpts::v5("zero5").keep_alive(0));
    // Control: a K=1 client in the same broker expires, so the wheel runs.
    let (mut one, _) = RawClient::connected(addr, &ConnectOpts::v3("one").keep_alive(1));
    one.expect_closed(Duration::from_secs(5), "the K=1 control client expires");
    wait_stats(&broker, "control expiry counted", |s| {
        s.keepalive_expired == 1
    });

    // More than 3 x 1.5 s of silence from the K=0 clients.
    let quiet = Duration::from_millis(4600).saturating_sub(started.elapsed());
    zero3.expect_silence(quiet, "K=0 must never expire");
    zero5.expect_silence(Duration::from_millis(10), "K=0 must never expire");
    zero3.ping();
    zero5.ping();
    let stats = broker.stats();
    assert_eq!(stats.keepalive_expired, 1, "{stats:?}");
    assert_eq!(stats.connections, 2, "{stats:?}");
}

#[test]
fn traffic_to_a_silent_subscriber_does_not_keep_it_alive() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let (mut publisher, _) = RawClient::connected(addr, &ConnectOpts::v3("feeder").keep_alive(0));
    let (mut sub, _) = RawClient::connected(addr, &ConnectOpts::v3("deaf").keep_alive(1));
    let sent = Instant::now();
    sub.send(&subscribe_packet(1, &[("feed/#", 0)], false))
        .unwrap();
    let p = sub.expect_packet(PROMPT, "SUBACK");
    let acked = Instant::now();
    assert_eq!(p.ack_codes(SUBACK, false).1, [0]);

    // Feed it every ~100 ms; it never answers.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut received = 0u32;
    let closed = loop {
        assert!(
            Instant::now() < deadline,
            "silent subscriber was never closed"
        );
        publisher.publish0("feed/x", b"tick");
        match sub.read_packet(Duration::from_millis(100)) {
            Ok(p) => {
                assert_eq!(p.publish(false).topic, "feed/x");
                received += 1;
            }
            Err(ReadError::Timeout) => {}
            Err(ReadError::Closed) => break Instant::now(),
            Err(e) => panic!("{e:?}"),
        }
    };
    assert!(received >= 5, "subscriber got only {received} publishes");
    assert_close_window(
        sent,
        acked,
        closed,
        Duration::from_millis(1500),
        "fed subscriber",
    );
    publisher.ping();
}

#[test]
fn keepalive_backoff_flag_scales_the_timeout() {
    // backoff 1.0: timeout = K x 1.0 x 2 = 2 s for K=1.
    let broker = start(&["--keepalive-backoff", "1.0"]);
    let addr = broker.local_addr();
    let opts = ConnectOpts::v3("backoff").keep_alive(1);
    let mut c = RawClient::open(addr);
    let sent = Instant::now();
    c.send(&opts.encode()).unwrap();
    assert_eq!(c.expect_packet(PROMPT, "CONNACK").connack(false).code, 0);
    let acked = Instant::now();
    let (_, closed) = c.expect_closed_at(Duration::from_secs(6), "expiry with backoff 1.0");
    assert_close_window(
        sent,
        acked,
        closed,
        Duration::from_millis(2000),
        "backoff 1.0",
    );
}

#[test]
fn server_keepalive_is_imposed_on_v5_clients() {
    let broker = start(&["--server-keepalive", "1"]);
    let addr = broker.local_addr();
    // Asks for 60 s, is told 1 s, and is held to it.
    let opts = ConnectOpts::v5("told").keep_alive(60);
    let mut c = RawClient::open(addr);
    c.v5 = true;
    let sent = Instant::now();
    c.send(&opts.encode()).unwrap();
    let ack = c.expect_packet(PROMPT, "CONNACK").connack(true);
    let acked = Instant::now();
    assert_eq!(ack.code, 0);
    assert_eq!(ack.props.int(PROP_SERVER_KEEP_ALIVE), Some(1), "{ack:?}");
    // Asks for 0 (off): the server still imposes 1.
    let (_, ack0) = RawClient::connected(addr, &ConnectOpts::v5("told0").keep_alive(0));
    assert_eq!(ack0.props.int(PROP_SERVER_KEEP_ALIVE), Some(1), "{ack0:?}");

    let (packets, closed) = c.expect_closed_at(Duration::from_secs(5), "server keep alive");
    assert_close_window(
        sent,
        acked,
        closed,
        Duration::from_millis(1500),
        "server K=1",
    );
    assert!(
        matches!(packets.last(), Some(p) if p.is_disconnect(0x8D)),
        "{packets:?}"
    );
}

#[test]
fn max_keepalive_caps_v5_and_refuses_v3_over_the_cap() {
    let broker = start(&["--max-keepalive", "10"]);
    let addr = broker.local_addr();
    let (_c, ack) = RawClient::connected(addr, &ConnectOpts::v5("cap60").keep_alive(60));
    assert_eq!(
        ack.props.int(PROP_SERVER_KEEP_ALIVE),
        Some(10),
        "asked 60: {ack:?}"
    );
    let (_c0, ack) = RawClient::connected(addr, &ConnectOpts::v5("cap0").keep_alive(0));
    assert_eq!(
        ack.props.int(PROP_SERVER_KEEP_ALIVE),
        Some(10),
        "asked 0: {ack:?}"
    );
    let (mut c5, ack) = RawClient::connected(addr, &ConnectOpts::v5("cap5").keep_alive(5));
    assert!(
        matches!(ack.props.int(PROP_SERVER_KEEP_ALIVE), None | Some(5)),
        "asked 5 (under the cap): {ack:?}"
    );
    c5.ping();

    // v3.1.1 cannot be told: over the cap is refused with 0x02.
    let (mut v3, ack) = RawClient::connect(addr, &ConnectOpts::v3("cap3-60").keep_alive(60));
    assert_eq!(ack.code, 0x02, "{ack:?}");
    assert!(!ack.session_present);
    let after = v3.expect_closed(PROMPT, "refused v3 client");
    assert!(after.is_empty(), "{after:?}");
    let (mut ok3, ack) = RawClient::connected(addr, &ConnectOpts::v3("cap3-10").keep_alive(10));
    assert_eq!(ack.code, 0);
    ok3.ping();
}

#[test]
fn v3_client_is_not_held_to_server_keepalive() {
    let broker = start(&["--server-keepalive", "1"]);
    let addr = broker.local_addr();
    let (mut c, _) = RawClient::connected(addr, &ConnectOpts::v3("v3free").keep_alive(0));
    c.expect_silence(
        Duration::from_millis(2200),
        "v3 cannot be told a server keep alive",
    );
    c.ping();
}

#[test]
fn many_silent_clients_on_both_shards_each_expire_in_their_window() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let (mut watcher, _) = RawClient::connected(addr, &ConnectOpts::v3("mw").keep_alive(0));
    assert_eq!(watcher.subscribe(1, &[("will/many/+", 0)]), [0]);
    // 12 clients, ids on both shards (so some sockets hop), K = 1 or 2.
    let mut clients = Vec::new();
    for i in 0..12u16 {
        let k = 1 + i % 2;
        let id = id_on_shard(&format!("many{i}-"), usize::from(i % 4 / 2));
        let opts = ConnectOpts::v5(&id)
            .keep_alive(k)
            .will(WillOpts::new(&format!("will/many/{i}"), "x"));
        let mut c = RawClient::open(addr);
        c.v5 = true;
        let sent = Instant::now();
        c.send(&opts.encode()).unwrap();
        assert_eq!(c.expect_packet(PROMPT, "CONNACK").connack(true).code, 0);
        clients.push((i, k, sent, Instant::now(), c));
    }
    // One reader thread per client, so each close is seen when it happens.
    let readers: Vec<_> = clients
        .into_iter()
        .map(|(i, k, sent, acked, mut c)| {
            std::thread::spawn(move || {
                let (got, closed) = c.expect_closed_at(Duration::from_secs(8), "expiry");
                assert!(
                    matches!(got.last(), Some(p) if p.is_disconnect(0x8D)),
                    "client {i}: {got:?}"
                );
                let lower = Duration::from_millis(1500 * u64::from(k));
                assert_close_window(sent, acked, closed, lower, &format!("client {i} K={k}"));
            })
        })
        .collect();
    for r in readers {
        r.join().expect("reader thread");
    }
    let mut wills: Vec<String> = (0..12)
        .map(|_| watcher.expect_publish(PROMPT).topic)
        .collect();
    wills.sort();
    let mut want: Vec<String> = (0..12).map(|i| format!("will/many/{i}")).collect();
    want.sort();
    assert_eq!(wills, want);
    let stats = wait_stats(&broker, "all expired", |s| s.keepalive_expired == 12);
    assert_eq!(stats.connections, 1, "{stats:?}");
}
