//! `--cluster-nats` client-id directory (issue 17): a client id moves
//! between nodes as it moves between shards of one node: the old
//! connection gets DISCONNECT 0x8E, the new one the session with its
//! unacknowledged messages, and two nodes racing for one id leave exactly
//! one live connection. A node killed with SIGKILL gives up its ids once
//! its heartbeat expires.
//!
//! Needs `nats-server` (see tests/common/nats.rs).

mod common;

use std::time::{Duration, Instant};

use common::nats::*;
use common::*;

/// Two nodes with the directory open on each.
fn directory_nodes() -> Option<(Nats, ringmq::Broker, ringmq::Broker)> {
    let (nats, a, b) = two_nodes()?;
    for n in [&a, &b] {
        wait_stats(n, "the directory open", |s| s.cluster_directory == 1);
    }
    Some((nats, a, b))
}

fn persistent(id: &str) -> ConnectOpts {
    ConnectOpts::v5(id).clean(false).session_expiry(3600)
}

#[test]
fn a_client_id_moves_to_another_node_with_0x8e_and_its_session() {
    let Some((_nats, a, b)) = directory_nodes() else {
        return;
    };
    let (mut old, ack) = RawClient::connected(a.local_addr(), &persistent("dev-1"));
    assert!(!ack.session_present);
    assert_eq!(old.subscribe(1, &[("t/#", 1)]), [1]);
    // Two QoS 1 messages reach it and stay unacknowledged.
    let (mut publisher, _) = RawClient::connected(a.local_addr(), &ConnectOpts::v5("pub"));
    publisher.publish1("t/1", b"one", 1);
    publisher.publish1("t/2", b"two", 2);
    for want in [&b"one"[..], b"two"] {
        let p = old.expect_packet(PROMPT, "a QoS 1 delivery on a");
        assert_eq!(p.publish(true).payload, want);
    }
    let (mut new, ack) = RawClient::connected(b.local_addr(), &persistent("dev-1"));
    assert!(ack.session_present, "the session came from node a");
    // The old connection was told and closed.
    let got = old.expect_closed(PROMPT, "the take-over from node b");
    let disconnect = got
        .iter()
        .find(|p| p.kind == DISCONNECT)
        .unwrap_or_else(|| panic!("no DISCONNECT before the close: {got:?}"));
    assert_eq!(disconnect.disconnect_reason(), 0x8E, "Session taken over");
    // The unacknowledged messages are sent again, DUP set, in order.
    for want in [&b"one"[..], b"two"] {
        let p = new.expect_packet(PROMPT, "a re-sent delivery on b");
        assert_eq!(p.kind, PUBLISH);
        assert!(p.flags & 0x08 != 0, "a re-send has DUP");
        let info = p.publish(true);
        assert_eq!(info.payload, want);
        new.send(&puback_packet(info.packet_id)).expect("PUBACK");
    }
    // The subscription moved too: a publish on a reaches it on b.
    wait_routed(&mut publisher, &mut new, "t/after");
    let sa = wait_stats(&a, "a let the id go", |s| s.cluster_takeovers_out == 1);
    let sb = wait_stats(&b, "b took the id over", |s| s.cluster_takeovers_in == 1);
    assert_eq!((sa.cluster_bad, sb.cluster_bad), (0, 0));
    assert_eq!(sb.cluster_handover_dropped, 0);
}

#[test]
fn a_take_over_on_the_node_that_holds_the_id_stays_on_that_node() {
    let Some((_nats, a, _b)) = directory_nodes() else {
        return;
    };
    let (mut first, _) = RawClient::connected(a.local_addr(), &persistent("local-1"));
    let claims = a.stats().cluster_claims;
    let (mut second, ack) = RawClient::connected(a.local_addr(), &persistent("local-1"));
    assert!(ack.session_present);
    let got = first.expect_closed(PROMPT, "the local take-over");
    assert!(got
        .iter()
        .any(|p| p.kind == DISCONNECT && p.disconnect_reason() == 0x8E));
    second.ping();
    assert_eq!(
        a.stats().cluster_claims,
        claims,
        "no directory round trip for an id this node holds"
    );
}

#[test]
fn a_clean_start_on_another_node_ends_the_session_and_publishes_the_will() {
    let Some((_nats, a, b)) = directory_nodes() else {
        return;
    };
    let (mut watcher, _) = RawClient::connected(b.local_addr(), &ConnectOpts::v5("watcher"));
    assert_eq!(watcher.subscribe(1, &[("wills/#", 0)]), [0]);
    let (mut probe, _) = RawClient::connected(a.local_addr(), &ConnectOpts::v5("probe"));
    wait_routed(&mut probe, &mut watcher, "wills/probe");
    let opts = persistent("dev-2").will(WillOpts::new("wills/dev-2", "gone"));
    let (mut old, _) = RawClient::connected(a.local_addr(), &opts);
    let (_new, ack) = RawClient::connected(b.local_addr(), &ConnectOpts::v5("dev-2"));
    assert!(!ack.session_present, "Clean Start: a new session");
    old.expect_closed(PROMPT, "the take-over from node b");
    let p = watcher.expect_packet(PROMPT, "the will of the session that ended");
    assert_eq!(p.publish(true).payload, b"gone");
}

#[test]
fn two_nodes_racing_for_one_id_leave_exactly_one_live_connection() {
    let Some((_nats, a, b)) = directory_nodes() else {
        return;
    };
    let addrs = [a.local_addr(), b.local_addr()];
    for round in 0..8 {
        let id = format!("race-{round}");
        let racers: Vec<_> = addrs
            .iter()
            .map(|&addr| {
                let opts = persistent(&id);
                std::thread::spawn(move || RawClient::connect(addr, &opts))
            })
            .collect();
        let mut clients: Vec<(RawClient, bool)> = racers
            .into_iter()
            .map(|r| {
                let (c, ack) = r.join().unwrap();
                if ack.code != 0 {
                    assert_eq!(ack.code, 0x89, "a refused racer: Server busy");
                }
                (c, ack.code == 0)
            })
            .collect();
        // One taken over (0x8E, closed) is out; the others must still
        // answer PINGREQ. Wait until every loser is out.
        let deadline = Instant::now() + Duration::from_secs(10);
        let live = loop {
            let mut live = 0;
            for (c, alive) in clients.iter_mut().filter(|(_, alive)| *alive) {
                let answer = c
                    .send(&PINGREQ_BYTES)
                    .ok()
                    .and_then(|_| c.read_packet(Duration::from_millis(500)).ok());
                match answer {
                    Some(p) if p.kind == PINGRESP => live += 1,
                    Some(p) if p.kind == DISCONNECT => {
                        assert_eq!(p.disconnect_reason(), 0x8E, "round {round}");
                        *alive = false;
                    }
                    _ => *alive = false,
                }
            }
            if live <= 1 || Instant::now() > deadline {
                break live;
            }
        };
        assert_eq!(live, 1, "round {round}: one live connection for {id}");
    }
}

/// The flags of a node as a child process (for SIGKILL) on `nats`.
fn node_args<'a>(nats: &'a Nats, name: &'a str) -> Vec<&'a str> {
    vec![
        "--listen",
        "127.0.0.1:0",
        "--shards",
        "2",
        "--keepalive-tick-ms",
        "20",
        "--sys-interval",
        "0",
        "--log",
        "info,ringmq::cluster=debug",
        "--cluster-nats",
        &nats.url,
        "--node-id",
        name,
        "--cluster-heartbeat-ms",
        "200",
    ]
}

#[test]
fn a_session_left_on_a_stopped_node_resumes_on_another_with_its_queue() {
    let Some(bin) = nats_server() else {
        return;
    };
    let nats = start_nats(&bin);
    let a = node_with(&nats, "a", &["--cluster-heartbeat-ms", "200"]);
    let b = node_with(&nats, "b", &["--cluster-heartbeat-ms", "200"]);
    for n in [&a, &b] {
        wait_stats(n, "the directory open", |s| s.cluster_directory == 1);
    }
    let (mut c, _) = RawClient::connected(a.local_addr(), &persistent("dev-3"));
    assert_eq!(c.subscribe(1, &[("q/#", 1)]), [1]);
    c.send(&disconnect_v5(0)).expect("DISCONNECT");
    c.expect_closed(PROMPT, "a normal disconnect");
    // Queued on a for the absent client.
    let (mut publisher, _) = RawClient::connected(a.local_addr(), &ConnectOpts::v5("pub"));
    for (i, m) in [&b"q1"[..], b"q2", b"q3"].iter().enumerate() {
        publisher.publish1("q/x", m, i as u16 + 1);
    }
    // a stops: its sessions' copies are written and its heartbeat goes.
    drop(publisher);
    drop(a);
    let (mut c, ack) = RawClient::connected(b.local_addr(), &persistent("dev-3"));
    assert!(ack.session_present, "the session a stored resumes on b");
    for want in [&b"q1"[..], b"q2", b"q3"] {
        let p = c.expect_packet(PROMPT, "a message queued on a");
        assert_eq!(p.kind, PUBLISH);
        let info = p.publish(true);
        assert_eq!(info.payload, want);
        c.send(&puback_packet(info.packet_id)).expect("PUBACK");
    }
    // The subscription came too.
    let (mut publisher, _) = RawClient::connected(b.local_addr(), &ConnectOpts::v5("pub-b"));
    publisher.publish0("q/later", b"later");
    let p = c.expect_packet(PROMPT, "a publish on b");
    assert_eq!(p.publish(true).payload, b"later");
}

/// A NATS server, node `a` as a child process (to SIGKILL) and its
/// address, and node `b` in this process, both with the directory open and
/// 200 ms heartbeats.
fn killable_pair() -> Option<(
    Nats,
    common::process::Process,
    std::net::SocketAddr,
    ringmq::Broker,
)> {
    let nats = start_nats(&nats_server()?);
    let (mut a, a_addr) = common::process::Process::start(&node_args(&nats, "a"), "mqtt://");
    a.wait_log("the directory open", |l| {
        l.contains("client-id directory open")
    });
    let b = node_with(&nats, "b", &["--cluster-heartbeat-ms", "200"]);
    wait_stats(&b, "the directory open", |s| s.cluster_directory == 1);
    Some((nats, a, a_addr, b))
}

#[test]
fn a_killed_nodes_clients_get_their_wills_and_resume_on_another_node() {
    let Some((_nats, mut a, a_addr, b)) = killable_pair() else {
        return;
    };
    let (mut watcher, _) = RawClient::connected(b.local_addr(), &ConnectOpts::v5("watcher"));
    assert_eq!(watcher.subscribe(1, &[("wills/#", 0)]), [0]);
    let (mut probe, _) = RawClient::connected(a_addr, &ConnectOpts::v5("probe"));
    wait_routed(&mut probe, &mut watcher, "wills/probe");
    let opts = persistent("dev-4").will(WillOpts::new("wills/dev-4", "dead"));
    let (mut c, _) = RawClient::connected(a_addr, &opts);
    assert_eq!(c.subscribe(1, &[("k/#", 1)]), [1]);
    // Its copy (with the subscription) is in the sessions bucket.
    a.wait_log("dev-4's session stored twice (CONNECT, SUBSCRIBE)", |l| {
        l.contains("cluster: session stored") && l.contains("stored=2") && l.contains("dev-4")
    });
    let killed_at = Instant::now();
    a.child.kill().expect("SIGKILL node a");
    let _ = a.child.wait();
    // b notices the silence and publishes the will.
    let p = watcher.expect_packet(Duration::from_secs(10), "the will of a's client");
    assert_eq!(p.publish(true).payload, b"dead");
    let noticed = killed_at.elapsed();
    wait_stats(&b, "b took the session", |s| {
        s.cluster_sessions_adopted == 1
    });
    // The client comes back on b and resumes.
    let (mut c2, ack) = RawClient::connected(b.local_addr(), &persistent("dev-4"));
    assert!(ack.session_present, "resumed on b after {noticed:?}");
    let (mut publisher, _) = RawClient::connected(b.local_addr(), &ConnectOpts::v5("pub-b"));
    publisher.publish0("k/x", b"after");
    let p = c2.expect_packet(PROMPT, "a publish to the resumed session");
    assert_eq!(p.publish(true).payload, b"after");
    drop(c);
}

#[test]
fn messages_queued_for_an_absent_client_outlive_a_killed_node() {
    let Some((_nats, mut a, a_addr, b)) = killable_pair() else {
        return;
    };
    let (mut c, _) = RawClient::connected(a_addr, &persistent("dev-5"));
    assert_eq!(c.subscribe(1, &[("m/#", 1)]), [1]);
    c.send(&disconnect_v5(0)).expect("DISCONNECT");
    c.expect_closed(PROMPT, "a normal disconnect");
    let (mut publisher, _) = RawClient::connected(a_addr, &ConnectOpts::v5("pub"));
    for (i, m) in [&b"m1"[..], b"m2", b"m3"].iter().enumerate() {
        publisher.publish1("m/x", m, i as u16 + 1);
    }
    // The queue's growth reaches the stored copy (within about a second).
    a.wait_log("dev-5's copy with its three queued messages", |l| {
        l.contains("cluster: session stored") && l.contains("dev-5") && l.contains("messages=3")
    });
    a.child.kill().expect("SIGKILL node a");
    let _ = a.child.wait();
    wait_stats(&b, "b took the session", |s| {
        s.cluster_sessions_adopted == 1
    });
    let (mut c, ack) = RawClient::connected(b.local_addr(), &persistent("dev-5"));
    assert!(ack.session_present);
    for want in [&b"m1"[..], b"m2", b"m3"] {
        let p = c.expect_packet(PROMPT, "a message queued on the dead node");
        assert_eq!(p.kind, PUBLISH);
        let info = p.publish(true);
        assert_eq!(info.payload, want);
        c.send(&puback_packet(info.packet_id)).expect("PUBACK");
    }
}

#[test]
fn another_user_cannot_take_an_id_over_from_another_node() {
    let Some(bin) = nats_server() else {
        return;
    };
    let nats = start_nats(&bin);
    let a = node_with(&nats, "a", &["--takeover-same-user-only"]);
    let b = node_with(&nats, "b", &["--takeover-same-user-only"]);
    for n in [&a, &b] {
        wait_stats(n, "the directory open", |s| s.cluster_directory == 1);
    }
    let (mut owner, _) = RawClient::connected(
        a.local_addr(),
        &persistent("dev-6").login("alice", Some(b"pw")),
    );
    // Another user on b: refused as on one node (0x87), and the owner's
    // connection on a is untouched.
    let (_, ack) = RawClient::connect(
        b.local_addr(),
        &persistent("dev-6").login("mallory", Some(b"pw")),
    );
    assert_eq!(ack.code, 0x87, "Not authorized");
    owner.ping();
    wait_stats(&a, "a counted the refusal", |s| {
        s.takeovers_refused_user == 1
    });
    // The same user on b takes it over.
    let (mut moved, ack) = RawClient::connected(
        b.local_addr(),
        &persistent("dev-6").login("alice", Some(b"pw")),
    );
    assert!(ack.session_present);
    owner.expect_closed(PROMPT, "the take-over by the same user");
    moved.ping();
}
