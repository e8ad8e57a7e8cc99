//! Black-box take-over and session tests (MQTT 3.1.4, 4.1): a second CONNECT
//! with a live client id closes the old connection (v5: DISCONNECT 0x8E
//! first); clean start 0 resumes the session (session present, subscriptions
//! and queued QoS 1 messages), clean start 1 discards it; a storm of
//! take-overs leaves exactly one live connection; empty client ids; a
//! take-over of a connection held back by a full cross-shard inbox.

mod common;

use common::*;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

#[test]
fn v5_takeover_sends_0x8e_and_resumes_session_then_clean_start_discards_it() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let id = id_on_shard("tk5-", 1);
    let (mut publisher, _) = RawClient::connected(addr, &ConnectOpts::v3(&id_on_shard("tkp-", 0)));
    let keep = ConnectOpts::v5(&id).clean(false).session_expiry(60);

    let (mut first, ack) = RawClient::connected(addr, &keep);
    assert!(!ack.session_present, "brand-new session: {ack:?}");
    assert_eq!(first.subscribe(1, &[("tk/x", 0)]), [0]);

    let (mut second, ack) = RawClient::connected(addr, &keep);
    assert!(ack.session_present, "clean start 0 resumes: {ack:?}");
    let old = first.expect_closed(PROMPT, "taken over");
    assert!(
        matches!(old.last(), Some(p) if p.is_disconnect(0x8E)),
        "old connection must get DISCONNECT 0x8E (session taken over): {old:?}"
    );

    // The subscription came along: no SUBSCRIBE on the new connection.
    publisher.publish0("tk/x", b"resumed");
    let p = second.expect_publish(PROMPT);
    assert_eq!(
        (p.topic.as_str(), p.payload.as_slice()),
        ("tk/x", &b"resumed"[..])
    );
    let stats = broker.stats();
    assert_eq!(stats.takeovers, 1, "{stats:?}");

    // Clean start 1: the session (and its subscription) is gone.
    let (mut third, ack) = RawClient::connected(addr, &ConnectOpts::v5(&id).clean(true));
    assert!(!ack.session_present, "clean start 1 discards: {ack:?}");
    let old = second.expect_closed(PROMPT, "taken over again");
    assert!(
        matches!(old.last(), Some(p) if p.is_disconnect(0x8E)),
        "{old:?}"
    );
    assert_eq!(third.subscribe(1, &[("tk/sentinel", 0)]), [0]);
    publisher.publish0("tk/x", b"must not arrive");
    publisher.publish0("tk/sentinel", b"s");
    let p = third.expect_publish(PROMPT);
    assert_eq!(
        p.topic, "tk/sentinel",
        "old subscription survived clean start 1"
    );
    wait_stats(&broker, "two take-overs, two connections", |s| {
        s.takeovers == 2 && s.connections == 2
    });
}

#[test]
fn v3_takeover_closes_old_and_clean_session_0_resumes() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let id = id_on_shard("tk3-", 0);
    let (mut publisher, _) = RawClient::connected(addr, &ConnectOpts::v3(&id_on_shard("tkp-", 1)));
    let keep = ConnectOpts::v3(&id).clean(false);

    let (mut first, ack) = RawClient::connected(addr, &keep);
    assert!(!ack.session_present);
    assert_eq!(first.subscribe(1, &[("tk3/+", 0)]), [0]);
    let (mut second, ack) = RawClient::connected(addr, &keep);
    assert!(ack.session_present, "{ack:?}");
    let old = first.expect_closed(PROMPT, "taken over");
    assert!(old.is_empty(), "v3.1.1 has no server DISCONNECT: {old:?}");

    publisher.publish0("tk3/a", b"resumed");
    let p = second.expect_publish(PROMPT);
    assert_eq!(
        (p.topic.as_str(), p.payload.as_slice()),
        ("tk3/a", &b"resumed"[..])
    );

    // clean session 1 discards; a later clean session 0 starts fresh.
    let (third, ack) = RawClient::connected(addr, &ConnectOpts::v3(&id).clean(true));
    assert!(!ack.session_present, "{ack:?}");
    second.expect_closed(PROMPT, "taken over by clean session");
    drop(third);
    wait_stats(&broker, "clean session ended", |s| s.connections == 1);
    let (_fourth, ack) = RawClient::connected(addr, &keep);
    assert!(!ack.session_present, "session was discarded: {ack:?}");
}

fn resume_after_disconnect_round(v5: bool) {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let id = id_on_shard("off-", 1);
    let keep = if v5 {
        ConnectOpts::v5(&id).clean(false).session_expiry(60)
    } else {
        ConnectOpts::v3(&id).clean(false)
    };
    let (mut publisher, _) = RawClient::connected(addr, &ConnectOpts::v3(&id_on_shard("offp-", 0)));
    let (mut sub, _) = RawClient::connected(addr, &keep);
    assert_eq!(sub.subscribe(1, &[("off/q", 0)]), [0]);
    sub.send(&if v5 {
        disconnect_v5(0)
    } else {
        DISCONNECT_V3.to_vec()
    })
    .unwrap();
    sub.expect_closed(PROMPT, "after DISCONNECT");
    let stats = wait_stats(&broker, "subscriber offline", |s| s.connections == 1);
    assert_eq!(stats.sessions, 2, "offline session kept: {stats:?}");
    // QoS 0 while nobody is connected: may be dropped, must not break anything.
    publisher.publish0("off/q", b"while away");

    let (mut back, ack) = RawClient::connected(addr, &keep);
    assert!(ack.session_present, "{ack:?}");
    publisher.publish0("off/q", b"after");
    let mut p = back.expect_publish(PROMPT);
    if p.payload == b"while away" {
        p = back.expect_publish(PROMPT);
    }
    assert_eq!(
        (p.topic.as_str(), p.payload.as_slice()),
        ("off/q", &b"after"[..])
    );
    assert_eq!(broker.stats().sessions, 2);
}

#[test]
fn subscriptions_survive_disconnect_and_resume_v3() {
    resume_after_disconnect_round(false);
}

#[test]
fn subscriptions_survive_disconnect_and_resume_v5() {
    resume_after_disconnect_round(true);
}

#[test]
fn v5_session_expiry_0_ends_with_the_connection() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let opts = ConnectOpts::v5("short").clean(false);
    let (mut c, _) = RawClient::connected(addr, &opts);
    assert_eq!(c.subscribe(1, &[("short/x", 0)]), [0]);
    c.send(&disconnect_v5(0)).unwrap();
    c.expect_closed(PROMPT, "after DISCONNECT");
    wait_stats(&broker, "session gone", |s| {
        s.connections == 0 && s.sessions == 0
    });
    let (_c, ack) = RawClient::connected(addr, &opts);
    assert!(!ack.session_present, "expiry 0: {ack:?}");
}

#[test]
fn takeover_storm_leaves_exactly_one_connection() {
    const PER_THREAD: usize = 25;
    // 50 take-overs of one id in a moment: the fight limit is off here
    // (tests/hostile.rs covers it).
    let broker = start(&["--takeover-limit", "0"]);
    let addr = broker.local_addr();
    let (mut bystander0, _) = RawClient::connected(addr, &ConnectOpts::v3(&id_on_shard("by-", 0)));
    let (mut bystander1, _) = RawClient::connected(addr, &ConnectOpts::v5(&id_on_shard("by-", 1)));

    let barrier = Arc::new(Barrier::new(2));
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                barrier.wait();
                let opts = ConnectOpts::v5("storm").clean(false).session_expiry(60);
                let mut conns = Vec::new();
                for _ in 0..PER_THREAD {
                    let mut c = RawClient::open(addr);
                    c.v5 = true;
                    c.send(&opts.encode()).unwrap();
                    // CONNACK, or closed when the other thread took over first.
                    let acked = match c.read_packet(PROMPT) {
                        Ok(p) => {
                            assert_eq!(p.connack(true).code, 0, "{p:?}");
                            true
                        }
                        Err(ReadError::Closed) => false,
                        Err(e) => panic!("storm CONNECT: {e:?}"),
                    };
                    conns.push((c, acked));
                }
                conns
            })
        })
        .collect();
    let mut conns: Vec<(RawClient, bool)> = workers
        .into_iter()
        .flat_map(|w| w.join().expect("storm thread"))
        .collect();

    let stats = wait_stats(&broker, "storm settled", |s| s.connections == 3);
    assert_eq!(stats.sessions, 3, "{stats:?}");
    let mut alive = 0;
    for (c, acked) in &mut conns {
        match c.read_packet(std::time::Duration::from_millis(50)) {
            Err(ReadError::Timeout) => {
                alive += 1;
                c.ping();
            }
            Ok(p) => {
                assert!(*acked, "packet before CONNACK: {p:?}");
                assert!(p.is_disconnect(0x8E), "taken-over connection got {p:?}");
                let rest = c.expect_closed(PROMPT, "taken over in the storm");
                assert!(rest.is_empty(), "{rest:?}");
            }
            Err(ReadError::Closed) => {
                assert!(!*acked, "acked connection closed without DISCONNECT 0x8E");
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(alive, 1, "exactly one storm connection must survive");
    let stats = broker.stats();
    let storm_connects = stats.connects - 2;
    assert_eq!(
        stats.takeovers,
        storm_connects - 1,
        "every storm CONNECT but the first takes over: {stats:?}"
    );
    bystander0.ping();
    bystander1.ping();
    assert_serves(addr);
}

#[test]
fn empty_client_id_v5_gets_assigned_identifier() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let (mut a, ack) = RawClient::connected(addr, &ConnectOpts::v5(""));
    let assigned = ack
        .props
        .bin(PROP_ASSIGNED_CLIENT_ID)
        .unwrap_or_else(|| panic!("no Assigned Client Identifier: {ack:?}"));
    assert!(!assigned.is_empty());
    let (mut b, ack) = RawClient::connected(addr, &ConnectOpts::v5(""));
    let other = ack.props.bin(PROP_ASSIGNED_CLIENT_ID).expect("assigned id");
    assert_ne!(assigned, other, "assigned ids must be unique");
    // Both work, neither took the other over.
    assert_eq!(a.subscribe(1, &[("anon/#", 0)]), [0]);
    b.publish0("anon/1", b"hi");
    assert_eq!(a.expect_publish(PROMPT).topic, "anon/1");
    b.ping();
    assert_eq!(broker.stats().takeovers, 0);
}

#[test]
fn empty_client_id_v3_needs_clean_session() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let (mut ok, ack) = RawClient::connect(addr, &ConnectOpts::v3("").clean(true));
    assert_eq!(ack.code, 0, "{ack:?}");
    ok.ping();
    let (mut ok2, ack) = RawClient::connect(addr, &ConnectOpts::v3("").clean(true));
    assert_eq!(ack.code, 0, "{ack:?}");
    ok2.ping();
    ok.ping();

    let (mut refused, ack) = RawClient::connect(addr, &ConnectOpts::v3("").clean(false));
    assert_eq!(ack.code, 0x02, "identifier rejected: {ack:?}");
    assert!(!ack.session_present);
    refused.expect_closed(PROMPT, "refused empty id with clean session 0");
    assert_serves(addr);
}

#[test]
fn empty_client_ids_need_no_hop() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let mut keep = Vec::new();
    for _ in 0..12 {
        let (mut c, ack) = RawClient::connected(addr, &ConnectOpts::v5(""));
        assert!(ack.props.bin(PROP_ASSIGNED_CLIENT_ID).is_some());
        c.ping();
        keep.push(c);
    }
    let stats = broker.stats();
    assert_eq!(
        stats.handoffs, 0,
        "assigned ids map to the accepting shard: {stats:?}"
    );
    assert_eq!(stats.connections, 12);
}

#[test]
fn connection_gauges_return_to_zero() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    for i in 0..40 {
        let v5 = i % 2 == 0;
        let id = format!("churn{i}");
        let opts = if v5 {
            ConnectOpts::v5(&id)
        } else {
            ConnectOpts::v3(&id)
        };
        let (mut c, _) = RawClient::connected(addr, &opts);
        c.subscribe(1, &[("churn/#", 0)]);
        match i % 3 {
            0 => {
                let bye = if v5 {
                    disconnect_v5(0)
                } else {
                    DISCONNECT_V3.to_vec()
                };
                c.send(&bye).unwrap();
            }
            1 => c.shutdown_write(),
            _ => {}
        }
        drop(c);
    }
    let stats = wait_stats(&broker, "all gone", |s| {
        s.connections == 0 && s.sessions == 0
    });
    assert_eq!(stats.connects, 40, "{stats:?}");
}

#[test]
fn v5_disconnect_cannot_raise_session_expiry_from_zero() {
    // MQTT-3.14.2-2: Session Expiry 0 in CONNECT, non-zero in DISCONNECT is a
    // protocol error.
    let broker = start(&[]);
    let addr = broker.local_addr();
    let (mut c, _) = RawClient::connected(addr, &ConnectOpts::v5("sx0").clean(false));
    c.send(&packet(0xE0, &[0x00, 5, 0x11, 0, 0, 0, 60]))
        .unwrap();
    let got = c.expect_closed(PROMPT, "DISCONNECT raising expiry");
    // The server may answer DISCONNECT 0x82 before closing.
    for p in &got {
        assert!(p.is_disconnect(0x82), "{got:?}");
    }
    wait_stats(&broker, "session gone", |s| {
        s.connections == 0 && s.sessions == 0
    });
}

#[test]
fn v5_disconnect_can_set_session_expiry() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let opts = ConnectOpts::v5("sxk").clean(false).session_expiry(1);
    let (mut c, _) = RawClient::connected(addr, &opts);
    assert_eq!(c.subscribe(1, &[("sx/x", 0)]), [0]);
    // Lengthen to 60 s on the way out.
    c.send(&packet(0xE0, &[0x00, 5, 0x11, 0, 0, 0, 60]))
        .unwrap();
    c.expect_closed(PROMPT, "DISCONNECT");
    // Past the original 1 s: still present.
    let (mut w, _) = RawClient::connected(addr, &ConnectOpts::v3("sx-w"));
    w.expect_silence(Duration::from_millis(1600), "waiting past the old expiry");
    let (_c, ack) = RawClient::connected(
        addr,
        &ConnectOpts::v5("sxk").clean(false).session_expiry(60),
    );
    assert!(ack.session_present, "{ack:?}");
}

#[test]
fn v5_session_expires_after_its_interval() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let opts = ConnectOpts::v5("sxe").clean(false).session_expiry(1);
    let (mut c, _) = RawClient::connected(addr, &opts);
    c.send(&disconnect_v5(0)).unwrap();
    c.expect_closed(PROMPT, "DISCONNECT");
    let gone_at = Instant::now();
    assert!(
        poll_until(Duration::from_secs(5), || broker.stats().sessions == 0),
        "{:?}",
        broker.stats()
    );
    assert!(
        gone_at.elapsed() >= Duration::from_millis(900),
        "expired after {:?}",
        gone_at.elapsed()
    );
    let (_c, ack) = RawClient::connected(addr, &opts);
    assert!(!ack.session_present, "{ack:?}");
}

#[test]
fn long_and_case_different_client_ids() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let long = "L".repeat(200);
    let (mut a, _) = RawClient::connected(addr, &ConnectOpts::v3(&long));
    let (mut b, _) = RawClient::connected(addr, &ConnectOpts::v5("Case"));
    let (mut c, _) = RawClient::connected(addr, &ConnectOpts::v5("case"));
    a.ping();
    b.ping();
    c.ping();
    assert_eq!(broker.stats().takeovers, 0);
}

/// A take-over reaches a connection that waits on a full cross-shard inbox.
/// Two shards, `--inbox-capacity 16` (the minimum): `SINKS` subscribers on
/// shard 0 to `f/#` that never read (`--max-outbuf-bytes 65536` bounds what
/// the broker buffers for them; one sink alone drains too fast for the
/// inbox to stay full), and a v5 publisher on shard 1 flooding QoS 0 to
/// `f/x` (kept up from a second thread during the take-over, so its
/// connection keeps running into the full inbox of shard 0) until its
/// writes stall or `FLOOD` passes. A new CONNECT with the publisher's client
/// id must then get its CONNACK within `PROMPT`, and the old connection
/// must be closed.
#[test]
fn takeover_reaches_a_publisher_waiting_on_a_full_cross_shard_inbox() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    /// Longest the flood runs before the take-over when writes never stall.
    const FLOOD: Duration = Duration::from_secs(3);
    /// A write that takes nothing for this long counts as stalled.
    const STALL: Duration = Duration::from_millis(200);
    /// Subscribers on shard 0 that never read.
    const SINKS: usize = 100;
    let broker = start(&["--inbox-capacity", "16", "--max-outbuf-bytes", "65536"]);
    let addr = broker.local_addr();
    // Many subscribers make each message slow to take on shard 0, so the
    // inbox is full most of the time. From here on they are never read.
    let sinks: Vec<RawClient> = (0..SINKS)
        .map(|i| {
            let id = id_on_shard(&format!("fl-s{i}-"), 0);
            let (mut sink, _) = RawClient::connected(addr, &ConnectOpts::v3(&id));
            assert_eq!(sink.subscribe(1, &[("f/#", 0)]), [0]);
            sink
        })
        .collect();
    let id = id_on_shard("fl-p-", 1);
    let (mut flooder, _) = RawClient::connected(addr, &ConnectOpts::v5(&id));
    let mut burst = Vec::new();
    while burst.len() < 64 * 1024 {
        burst.extend_from_slice(&publish_packet("f/x", &[b'f'; 64], 0, 0, false, true));
    }
    let stalls = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let ended = Arc::new(AtomicBool::new(false));
    let flood = {
        let (stalls, stop, ended) = (stalls.clone(), stop.clone(), ended.clone());
        thread::spawn(move || {
            // `burst` holds whole packets, so wrapping around keeps framing.
            let mut at = 0;
            let mut written = 0u64;
            let error = loop {
                if stop.load(Ordering::Relaxed) {
                    break None;
                }
                match flooder.write_some(&burst[at..], STALL) {
                    Ok(0) => break Some("write took 0 bytes".to_string()),
                    Ok(n) => {
                        written += n as u64;
                        at = (at + n) % burst.len();
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        stalls.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => break Some(e.to_string()),
                }
            };
            ended.store(true, Ordering::Relaxed);
            (flooder, written, error)
        })
    };
    let started = Instant::now();
    let stalled = poll_until(FLOOD, || stalls.load(Ordering::Relaxed) > 0);
    let flood_for = started.elapsed();

    let mut new = RawClient::open(addr);
    new.v5 = true;
    new.send(&ConnectOpts::v5(&id).encode()).unwrap();
    let connack = new.read_packet(PROMPT);
    let stop_flood = || {
        stop.store(true, Ordering::Relaxed);
        flood.join().expect("flood thread")
    };
    let ack = match connack {
        Ok(p) => p.connack(true),
        Err(e) => {
            drop(sinks);
            let (_, written, error) = stop_flood();
            panic!(
                "take-over: no CONNACK within {PROMPT:?} ({e:?}); the old connection \
                 flooded {written} bytes for {flood_for:?}, writes stalled: {stalled}, \
                 flood ended by: {error:?}"
            );
        }
    };
    assert_eq!(ack.code, 0, "take-over refused: {ack:?}");
    let closed = poll_until(PROMPT, || ended.load(Ordering::Relaxed));
    let (mut old, written, error) = stop_flood();
    assert!(
        closed && error.is_some(),
        "the taken-over connection is still open {PROMPT:?} after the new CONNACK \
         (flooded {written} bytes, writes stalled: {stalled})"
    );
    old.expect_closed(PROMPT, "taken over");
    new.ping();
    eprintln!(
        "flooded {written} bytes; writes stalled before the take-over: {stalled} \
         (after {flood_for:?}); flood ended by: {error:?}"
    );
}
