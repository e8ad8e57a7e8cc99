//! Black-box tests of the broker's configuration and lifecycle: flag
//! validation with messages that name the flag, a start failure (huge
//! io_uring memory) reported as an error rather than a panic, and shutdown
//! telling v5 clients DISCONNECT 0x8B before closing every connection.

mod common;

use common::*;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// Asserts `from_args(args)` fails with a message naming `flag`.
fn assert_rejected(extra: &[&str], flag: &str) {
    let argv = args(extra);
    match Config::from_args(argv.clone()) {
        Ok(_) => panic!("{argv:?} was accepted"),
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.contains(flag),
                "error for {argv:?} does not name {flag}: {msg}"
            );
        }
    }
}

#[test]
fn valid_flags_are_accepted() {
    let extra = [
        "--keepalive-backoff",
        "0.5",
        "--server-keepalive",
        "30",
        "--max-keepalive",
        "600",
        "--connect-timeout-ms",
        "2000",
        "--max-connections",
        "100",
        "--max-packet-size",
        "4096",
        "--session-expiry-default-secs",
        "60",
        "--listen-backlog",
        "16",
    ];
    let argv = args(&extra);
    Config::from_args(argv.clone()).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    // And a broker starts with them.
    let broker = start(&extra);
    assert_serves(broker.local_addr());
}

#[test]
fn read_buffers_out_of_range_are_rejected() {
    assert_rejected(&["--read-buffers", "3"], "read-buffers");
    assert_rejected(&["--read-buffers", "1"], "read-buffers");
    assert_rejected(&["--read-buffer-kib", "0"], "read-buffer-kib");
    assert_rejected(&["--read-buffer-kib", "2048"], "read-buffer-kib");
}

#[test]
fn listen_backlog_out_of_range_is_rejected() {
    assert_rejected(&["--listen-backlog", "0"], "listen-backlog");
    assert_rejected(&["--listen-backlog", "65536"], "listen-backlog");
}

#[test]
fn negative_keepalive_backoff_is_rejected() {
    assert_rejected(&["--keepalive-backoff=-1"], "keepalive-backoff");
    assert_rejected(&["--keepalive-backoff", "-1"], "keepalive-backoff");
}

#[test]
fn zero_shards_is_rejected() {
    assert_rejected(&["--shards", "0"], "shards");
}

#[test]
fn malformed_values_are_rejected() {
    assert_rejected(&["--listen", "not-an-address"], "listen");
    assert_rejected(&["--shards", "two"], "shards");
    assert_rejected(&["--max-packet-size", "lots"], "max-packet-size");
    assert_rejected(&["--connect-timeout-ms", "soon"], "connect-timeout-ms");
    let argv = args(&["--no-such-flag"]);
    assert!(Config::from_args(argv).is_err(), "unknown flag accepted");
}

#[test]
fn nonsensical_values_are_rejected() {
    assert_rejected(&["--keepalive-backoff", "0"], "keepalive-backoff");
    assert_rejected(&["--keepalive-backoff", "NaN"], "keepalive-backoff");
    assert_rejected(&["--keepalive-tick-ms", "0"], "keepalive-tick-ms");
    assert_rejected(&["--max-packet-size", "0"], "max-packet-size");
}

#[test]
fn huge_io_memory_is_a_start_error_not_a_panic() {
    let argv = args(&["--io-memory-kib", "1073741824"]); // 1 TiB per shard
    let config = Config::from_args(argv).expect("the value parses; starting must fail");
    match Broker::start(config) {
        Ok(b) => panic!(
            "started with 1 TiB of io_uring memory per shard at {}",
            b.local_addr()
        ),
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.contains("io-memory"),
                "start error does not mention io-memory: {msg}"
            );
        }
    }
    // The process is fine: a normal broker still starts.
    let broker = start(&[]);
    assert_serves(broker.local_addr());
}

#[test]
fn shutdown_sends_0x8b_to_v5_clients_and_closes_everyone() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let (mut v5a, _) = RawClient::connected(addr, &ConnectOpts::v5(&id_on_shard("sd-", 0)));
    let (mut v5b, _) = RawClient::connected(addr, &ConnectOpts::v5(&id_on_shard("sd-", 1)));
    let (mut v3, _) = RawClient::connected(addr, &ConnectOpts::v3("sd3"));
    v5a.ping();
    v5b.ping();
    v3.ping();

    let (done_tx, done_rx) = mpsc::channel();
    let stopper = thread::spawn(move || {
        broker.shutdown();
        let _ = done_tx.send(());
    });
    done_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("Broker::shutdown returned within 10 s");
    stopper.join().expect("shutdown thread");

    for c in [&mut v5a, &mut v5b] {
        let got = c.expect_closed(PROMPT, "shutdown");
        assert!(
            matches!(got.as_slice(), [p] if p.is_disconnect(0x8B)),
            "v5 client must get DISCONNECT 0x8B (server shutting down): {got:?}"
        );
    }
    let got = v3.expect_closed(PROMPT, "shutdown");
    assert!(got.is_empty(), "{got:?}");
    // The listener goes away too. (Polled: the io_uring teardown that
    // drops the listening socket may finish a few ms after shutdown returns.)
    assert!(
        poll_until(PROMPT, || std::net::TcpStream::connect(addr).is_err()),
        "listener still accepts after shutdown"
    );
}

#[test]
fn dropping_the_broker_closes_connections_and_listener() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let (mut c, _) = RawClient::connected(addr, &ConnectOpts::v3("dropped"));
    let (done_tx, done_rx) = mpsc::channel();
    thread::spawn(move || {
        drop(broker);
        let _ = done_tx.send(());
    });
    done_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("dropping the Broker returned within 10 s");
    c.expect_closed(PROMPT, "broker dropped");
    assert!(
        poll_until(PROMPT, || std::net::TcpStream::connect(addr).is_err()),
        "listener still accepts after drop"
    );
}

#[test]
fn listener_is_closed_when_shutdown_returns() {
    for round in 0..20 {
        let broker = start(&[]);
        let addr = broker.local_addr();
        let (mut c, _) = RawClient::connected(addr, &ConnectOpts::v3("sd"));
        c.ping();
        broker.shutdown();
        let t = Instant::now();
        if let Ok(s) = std::net::TcpStream::connect(addr) {
            panic!(
                "round {round}: {addr} still accepted a TCP connection after \
                 Broker::shutdown returned ({:?} after; local {:?})",
                t.elapsed(),
                s.local_addr()
            );
        }
    }
}
