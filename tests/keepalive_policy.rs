//! Black-box tests of the keep-alive policy (issue 15): `--min-keepalive`
//! (v5 told through CONNACK Server Keep Alive, v3 held to it or refused
//! with `--refuse-low-keepalive`), `--allow-zero-keepalive false`, and
//! clients refused when they publish into `$SYS`.
//!
//! Timing as in tests/keepalive.rs: the lower bound of a close is measured
//! from just before the CONNECT was written, the upper bound from when its
//! CONNACK was read, allowing one tick and `MARGIN`.

mod common;

use common::*;
use std::time::{Duration, Instant};

#[test]
fn v5_below_the_minimum_is_told_the_minimum() {
    let broker = start(&["--min-keepalive", "5"]);
    let addr = broker.local_addr();
    let (mut low, ack) = RawClient::connected(addr, &ConnectOpts::v5("low5").keep_alive(1));
    assert_eq!(ack.props.int(PROP_SERVER_KEEP_ALIVE), Some(5), "{ack:?}");
    let (mut ok, ack) = RawClient::connected(addr, &ConnectOpts::v5("ok5").keep_alive(30));
    assert_eq!(ack.props.int(PROP_SERVER_KEEP_ALIVE), None, "{ack:?}");
    // 0 is allowed by default, minimum or not.
    let (mut zero, ack) = RawClient::connected(addr, &ConnectOpts::v5("zero5").keep_alive(0));
    assert_eq!(ack.props.int(PROP_SERVER_KEEP_ALIVE), None, "{ack:?}");
    low.ping();
    ok.ping();
    zero.ping();
}

#[test]
fn v5_zero_is_told_the_imposed_value_when_zero_is_refused() {
    let broker = start(&["--min-keepalive", "2", "--allow-zero-keepalive", "false"]);
    let addr = broker.local_addr();
    let (mut c, ack) = RawClient::connected(addr, &ConnectOpts::v5("zero-min").keep_alive(0));
    assert_eq!(ack.props.int(PROP_SERVER_KEEP_ALIVE), Some(2), "{ack:?}");
    c.ping();

    // Without a minimum the maximum is imposed.
    let broker = start(&["--max-keepalive", "30", "--allow-zero-keepalive", "false"]);
    let (mut c, ack) = RawClient::connected(
        broker.local_addr(),
        &ConnectOpts::v5("zero-max").keep_alive(0),
    );
    assert_eq!(ack.props.int(PROP_SERVER_KEEP_ALIVE), Some(30), "{ack:?}");
    c.ping();
}

#[test]
fn v3_below_the_minimum_is_held_to_the_minimum() {
    let broker = start(&["--min-keepalive", "2"]);
    let addr = broker.local_addr();
    let opts = ConnectOpts::v3(&id_on_shard("held-", 1)).keep_alive(1);
    let mut c = RawClient::open(addr);
    let sent = Instant::now();
    c.send(&opts.encode()).unwrap();
    let ack = c.expect_packet(PROMPT, "CONNACK").connack(false);
    let acked = Instant::now();
    assert_eq!(ack.code, 0, "{ack:?}");

    // Still open well after 1.5 x its own 1 s ...
    let own = Duration::from_millis(1500 + 2 * TICK_MS + 200);
    c.expect_silence(
        own.saturating_sub(sent.elapsed()),
        "held to the 2 s minimum, not its own 1 s",
    );
    // ... and closed after 1.5 x the 2 s minimum.
    let (packets, closed) = c.expect_closed_at(Duration::from_secs(5), "expiry at the minimum");
    assert!(packets.is_empty(), "{packets:?}");
    assert_close_window(
        sent,
        acked,
        closed,
        Duration::from_millis(3000),
        "v3 K=1 min 2",
    );
    wait_stats(&broker, "expiry counted", |s| s.keepalive_expired == 1);
}

#[test]
fn v3_below_the_minimum_is_refused_with_0x02_under_refuse_low() {
    let broker = start(&["--min-keepalive", "10", "--refuse-low-keepalive"]);
    let addr = broker.local_addr();
    let (mut low, ack) = RawClient::connect(addr, &ConnectOpts::v3("low3").keep_alive(5));
    assert_eq!(ack.code, 0x02, "{ack:?}");
    assert!(low.expect_closed(PROMPT, "refused v3 client").is_empty());
    let (mut ok, _) = RawClient::connected(addr, &ConnectOpts::v3("ok3").keep_alive(10));
    ok.ping();
    // v5 below the minimum is told it, not refused.
    let (mut v5, ack) = RawClient::connected(addr, &ConnectOpts::v5("low5").keep_alive(5));
    assert_eq!(ack.props.int(PROP_SERVER_KEEP_ALIVE), Some(10), "{ack:?}");
    v5.ping();
}

#[test]
fn v3_zero_is_refused_with_0x02_when_zero_is_not_allowed() {
    let broker = start(&["--allow-zero-keepalive", "false"]);
    let addr = broker.local_addr();
    let (mut zero, ack) = RawClient::connect(addr, &ConnectOpts::v3("zero3").keep_alive(0));
    assert_eq!(ack.code, 0x02, "{ack:?}");
    assert!(zero.expect_closed(PROMPT, "refused v3 client").is_empty());
    let (mut ok, _) = RawClient::connected(addr, &ConnectOpts::v3("one3").keep_alive(60));
    ok.ping();
    wait_stats(&broker, "refusal counted", |s| s.connects_refused == 1);
}

#[test]
fn clients_cannot_publish_into_sys() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let (mut sub, _) = RawClient::connected(addr, &ConnectOpts::v5(&id_on_shard("sys-sub-", 0)));
    assert_eq!(sub.subscribe(1, &[("$SYS/#", 0), ("ok/#", 0)]), [0, 0]);
    let (mut publisher, _) =
        RawClient::connected(addr, &ConnectOpts::v5(&id_on_shard("sys-pub-", 1)));

    publisher
        .send(&publish_packet("$SYS/x", b"forged", 1, 7, false, true))
        .unwrap();
    let ack = publisher.expect_packet(PROMPT, "PUBACK").ack(PUBACK);
    assert_eq!(ack, (7, 0x87), "v5 QoS 1 into $SYS: not authorized");
    publisher.publish0("$SYS", b"forged too");
    wait_stats(&broker, "both refusals counted", |s| {
        s.acl_publish_denied == 2
    });

    // The next message the subscriber gets is the normal one after them.
    publisher.publish1("ok/x", b"real", 8);
    let got = sub.expect_publish(PROMPT);
    assert_eq!(
        (got.topic.as_str(), got.payload.as_slice()),
        ("ok/x", &b"real"[..])
    );
    sub.ping();
}
