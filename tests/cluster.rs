//! `--cluster-nats` (issue 17, first step): two brokers on one NATS server
//! route publishes to each other's subscribers.
//!
//! Needs `nats-server`: on PATH, or its path in `RINGMQ_NATS_SERVER`.
//! Without it the tests say how to install it and pass, unless `CI` is
//! set (then a missing server is a failure).

mod common;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::nats::*;
use common::*;

#[test]
fn a_publish_on_one_node_reaches_subscribers_on_another() {
    let Some((_nats, a, b)) = two_nodes() else {
        return;
    };
    let (mut sub_b, _) = RawClient::connected(b.local_addr(), &ConnectOpts::v5("sub-b"));
    assert_eq!(sub_b.subscribe(1, &[("c/+/x", 1)]), [1]);
    let (mut sub_a, _) = RawClient::connected(a.local_addr(), &ConnectOpts::v5("sub-a"));
    assert_eq!(sub_a.subscribe(1, &[("c/#", 1)]), [1]);
    let (mut publisher, _) = RawClient::connected(a.local_addr(), &ConnectOpts::v5("pub-a"));
    wait_routed(&mut publisher, &mut sub_b, "c/probe/x");
    // The local subscriber saw the probes once each; skip them.
    while let Ok(p) = sub_a.read_packet(Duration::from_millis(200)) {
        assert_eq!(p.publish(true).payload, b"probe");
    }
    let want: Vec<Vec<u8>> = (0..20).map(|i| format!("m{i}").into_bytes()).collect();
    for (i, m) in want.iter().enumerate() {
        publisher.publish1("c/1/x", m, i as u16 + 1);
    }
    assert_eq!(
        payloads(&mut sub_b, 20),
        want,
        "node b, in order, once each"
    );
    assert_eq!(
        payloads(&mut sub_a, 20),
        want,
        "node a's own subscriber, once each"
    );
    // A topic b has no subscriber for is not delivered there.
    publisher.publish0("c/1/y", b"not for b");
    assert_eq!(payloads(&mut sub_a, 1), [b"not for b".to_vec()]);
    assert!(sub_b.read_packet(Duration::from_millis(300)).is_err());
    let s = wait_stats(&b, "received from a", |s| s.cluster_received >= 20);
    assert_eq!(s.cluster_bad, 0);
}

#[test]
fn an_unsubscribe_stops_the_traffic() {
    let Some((_nats, a, b)) = two_nodes() else {
        return;
    };
    let (mut sub_b, _) = RawClient::connected(b.local_addr(), &ConnectOpts::v5("sub-b"));
    assert_eq!(sub_b.subscribe(1, &[("u/#", 0), ("v/m", 0)]), [0, 0]);
    let (mut publisher, _) = RawClient::connected(a.local_addr(), &ConnectOpts::v5("pub-a"));
    wait_routed(&mut publisher, &mut sub_b, "u/probe");
    sub_b
        .send(&unsubscribe_packet(2, &["u/#"], true))
        .expect("UNSUBSCRIBE");
    let ack = sub_b.expect_packet(PROMPT, "UNSUBACK");
    assert_eq!(ack.kind, UNSUBACK);
    // NATS keeps one publisher's order: once the marker after a u/ publish
    // reached b's client, b's node had received the u/ one too, if it was
    // still subscribed. Its node must drop the NATS subscription: then
    // each round adds the marker alone to what b's node received.
    let dropped = poll_until(Duration::from_secs(10), || {
        let before = b.stats().cluster_received;
        publisher.publish0("u/after", b"gone");
        publisher.publish0("v/m", b"marker");
        let p = sub_b.expect_packet(PROMPT, "the marker");
        assert_eq!(
            p.publish(true).payload,
            b"marker",
            "only the marker reaches b's client"
        );
        b.stats().cluster_received - before == 1
    });
    assert!(
        dropped,
        "b's node kept its NATS subscription to u/# after the last UNSUBSCRIBE"
    );
    assert_eq!(b.stats().cluster_bad, 0);
}

#[test]
fn nodes_recover_when_the_nats_server_restarts() {
    let Some(bin) = nats_server() else {
        return;
    };
    let nats = start_nats(&bin);
    let port: u16 = nats.url.rsplit(':').next().unwrap().parse().unwrap();
    let a = node(&nats, "a");
    let b = node(&nats, "b");
    let (mut sub_b, _) = RawClient::connected(b.local_addr(), &ConnectOpts::v5("sub-b"));
    assert_eq!(sub_b.subscribe(1, &[("r/#", 0)]), [0]);
    let (mut publisher, _) = RawClient::connected(a.local_addr(), &ConnectOpts::v5("pub-a"));
    wait_routed(&mut publisher, &mut sub_b, "r/before");
    drop(nats);
    wait_stats(&a, "a saw NATS go", |s| s.cluster_connected == 0);
    // Local clients are still served while NATS is away.
    let (mut sub_a, _) = RawClient::connected(a.local_addr(), &ConnectOpts::v5("sub-a"));
    assert_eq!(sub_a.subscribe(1, &[("r/#", 0)]), [0]);
    publisher.publish0("r/local", b"local");
    let p = sub_a.expect_packet(PROMPT, "a local delivery while NATS is down");
    assert_eq!(p.publish(true).payload, b"local");
    // The server comes back on the same port: both nodes reconnect and
    // subscribe again, and routing resumes.
    let _nats = start_nats_on(&bin, port);
    wait_stats(&a, "a reconnected", |s| s.cluster_connected == 1);
    wait_stats(&b, "b reconnected", |s| s.cluster_connected == 1);
    // What a's NATS client buffered while disconnected goes out once it is
    // back: `local` may reach b, at most once, before the probes.
    let mut locals = 0;
    let routed = poll_until(Duration::from_secs(10), || {
        publisher.publish0("r/after", b"probe");
        match sub_b.read_packet(Duration::from_millis(50)) {
            Ok(p) if p.kind == PUBLISH && p.publish(true).payload == b"local" => {
                locals += 1;
                false
            }
            Ok(p) => p.kind == PUBLISH,
            Err(_) => false,
        }
    });
    assert!(routed, "routing did not resume after the NATS restart");
    assert!(locals <= 1, "the buffered publish arrived {locals} times");
    // `_nats` goes first (declared last): the nodes then stop with NATS
    // away, which must not hold up their exit.
}

/// A node whose NATS server never answers still starts, serves its local
/// clients, and stops.
#[test]
fn a_node_without_its_nats_server_serves_locally_and_stops() {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let url = format!("nats://127.0.0.1:{port}");
    let a = start(&["--cluster-nats", &url, "--node-id", "alone"]);
    let (mut sub, _) = RawClient::connected(a.local_addr(), &ConnectOpts::v5("sub"));
    assert_eq!(sub.subscribe(1, &[("l/#", 0)]), [0]);
    let (mut publisher, _) = RawClient::connected(a.local_addr(), &ConnectOpts::v5("pub"));
    publisher.publish0("l/x", b"local");
    let p = sub.expect_packet(PROMPT, "a local delivery without NATS");
    assert_eq!(p.publish(true).payload, b"local");
    assert_eq!(a.stats().cluster_connected, 0);
    let stopping = Instant::now();
    drop(a);
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "the broker took {:?} to stop without NATS",
        stopping.elapsed()
    );
}

/// Reads what each of `members` gets (acknowledging QoS 1) until `n`
/// messages other than probes arrived in all, or `within` passed: the
/// payloads each one got.
fn spread(members: &mut [RawClient], n: usize, within: Duration) -> Vec<Vec<Vec<u8>>> {
    let mut got: Vec<Vec<Vec<u8>>> = vec![Vec::new(); members.len()];
    let deadline = Instant::now() + within;
    while got.iter().map(Vec::len).sum::<usize>() < n && Instant::now() < deadline {
        for (c, got) in members.iter_mut().zip(got.iter_mut()) {
            while let Ok(p) = c.read_packet(Duration::from_millis(10)) {
                assert_eq!(p.kind, PUBLISH, "{p:?}");
                let info = p.publish(c.v5);
                if info.qos == 1 {
                    c.send(&puback_packet(info.packet_id)).expect("PUBACK");
                }
                if info.payload != b"probe" {
                    got.push(info.payload.to_vec());
                }
            }
        }
    }
    got
}

#[test]
fn a_shared_group_across_nodes_gets_each_message_once() {
    let Some((_nats, a, b)) = two_nodes() else {
        return;
    };
    // One member on a, two on b (one per shard), and an ordinary
    // subscriber on b that gets everything.
    let member = |addr, id: String| {
        let (mut c, _) = RawClient::connected(addr, &ConnectOpts::v5(&id));
        assert_eq!(c.subscribe(1, &[("$share/g/s/#", 1)]), [1]);
        c
    };
    let mut members = vec![
        member(a.local_addr(), id_on_shard("m-a", 0)),
        member(b.local_addr(), id_on_shard("m-b", 0)),
        member(b.local_addr(), id_on_shard("m-b", 1)),
    ];
    let (mut ordinary, _) = RawClient::connected(b.local_addr(), &ConnectOpts::v5("all-b"));
    assert_eq!(ordinary.subscribe(1, &[("s/#", 1)]), [1]);
    let (mut pub_a, _) = RawClient::connected(a.local_addr(), &ConnectOpts::v5("pub-a"));
    let (mut pub_b, _) = RawClient::connected(b.local_addr(), &ConnectOpts::v5("pub-b"));
    // Both nodes' interest is on NATS once b's ordinary subscriber gets a
    // probe from a and a's member one from b.
    wait_routed(&mut pub_a, &mut ordinary, "s/probe");
    let reached_a = poll_until(Duration::from_secs(10), || {
        pub_b.publish0("s/probe", b"probe");
        matches!(members[0].read_packet(Duration::from_millis(50)), Ok(p) if p.kind == PUBLISH)
    });
    assert!(reached_a, "no probe from b reached the group member on a");
    // Probes still on their way.
    spread(&mut members, usize::MAX, Duration::from_millis(300));
    while ordinary.read_packet(Duration::from_millis(200)).is_ok() {}
    let want: Vec<Vec<u8>> = (0..60).map(|i| format!("m{i}").into_bytes()).collect();
    for (i, m) in want.iter().enumerate() {
        // Half published on each node.
        let publisher = if i % 2 == 0 { &mut pub_a } else { &mut pub_b };
        publisher.publish1("s/x", m, i as u16 + 1);
    }
    let got = spread(&mut members, want.len(), Duration::from_secs(10));
    let mut all: Vec<Vec<u8>> = got.iter().flatten().cloned().collect();
    all.sort();
    let mut sorted = want.clone();
    sorted.sort();
    assert_eq!(all, sorted, "each message once in the whole group: {got:?}");
    assert!(
        !got[0].is_empty() && (!got[1].is_empty() || !got[2].is_empty()),
        "the group spans both nodes: {got:?}"
    );
    // Nothing more for anyone, and the ordinary subscriber got them all.
    assert_eq!(
        spread(&mut members, 1, Duration::from_millis(300)),
        vec![Vec::<Vec<u8>>::new(); 3]
    );
    let mut seen = payloads(&mut ordinary, want.len());
    seen.sort();
    assert_eq!(seen, sorted, "the ordinary subscriber, once each");
}
