//! `--cluster-qos` (issue 17, QoS across nodes): with `durable` a QoS 1/2
//! publish crosses nodes through the JetStream stream `ringmq_messages`,
//! and its PUBACK / PUBREC waits until NATS stored it; `best-effort` and
//! QoS 0 take core NATS.
//!
//! Needs `nats-server` (with JetStream: tests/common/nats.rs starts it
//! with `-js`). The tests look at NATS itself with async-nats: the
//! stream's message count and the headers of what crosses.

mod common;

use std::process::Command;
use std::time::Duration;

use common::nats::*;
use common::*;

/// The stream the nodes publish QoS 1/2 into (`--cluster-prefix ringmq`).
const STREAM: &str = "ringmq_messages";

/// A NATS client of the test's own, on a current-thread runtime, with at
/// most one subscription.
struct Peek {
    rt: tokio::runtime::Runtime,
    client: async_nats::Client,
    sub: Option<async_nats::Subscriber>,
}

impl Drop for Peek {
    fn drop(&mut self) {
        // A subscriber unsubscribes on drop through the runtime.
        let _inside = self.rt.enter();
        self.sub = None;
    }
}

impl Peek {
    fn new(nats: &Nats) -> Peek {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let client = rt
            .block_on(async_nats::connect(nats.url.as_str()))
            .expect("the test connects to NATS");
        Peek {
            rt,
            client,
            sub: None,
        }
    }

    /// The stream's message count; `None` when it does not exist.
    fn stored(&self) -> Option<u64> {
        let js = async_nats::jetstream::new(self.client.clone());
        self.rt
            .block_on(js.get_stream(STREAM))
            .ok()
            .map(|s| s.cached_info().state.messages)
    }

    /// Deletes the stream.
    fn delete_stream(&self) {
        let js = async_nats::jetstream::new(self.client.clone());
        self.rt
            .block_on(js.delete_stream(STREAM))
            .expect("the stream is deleted");
    }

    /// Subscribes on `subject`; the server knows when this returns.
    fn subscribe(&mut self, subject: &str) {
        let sub = self.rt.block_on(async {
            let sub = self
                .client
                .subscribe(subject.to_string())
                .await
                .expect("subscribe");
            self.client.flush().await.expect("flush");
            sub
        });
        self.sub = Some(sub);
    }

    /// The next message of the subscription within `timeout`.
    fn next(&mut self, timeout: Duration) -> Option<async_nats::Message> {
        use futures_util::StreamExt;
        let sub = self.sub.as_mut().expect("subscribed");
        self.rt
            .block_on(async { tokio::time::timeout(timeout, sub.next()).await })
            .ok()
            .flatten()
    }
}

/// A header of `m`, if it has it.
fn header(
    m: &async_nats::Message,
    name: impl async_nats::header::IntoHeaderName,
) -> Option<String> {
    m.headers
        .as_ref()
        .and_then(|h| h.get(name))
        .map(|v| v.as_str().to_string())
}

/// Two nodes with `extra` flags, and (durable) once both opened the stream.
fn nodes(extra: &[&str]) -> Option<(Nats, ringmq::Broker, ringmq::Broker)> {
    let nats = start_nats(&nats_server()?);
    let a = node_with(&nats, "a", extra);
    let b = node_with(&nats, "b", extra);
    if !extra.contains(&"best-effort") {
        wait_stats(&a, "a opened the stream", |s| s.cluster_qos_stream == 1);
        wait_stats(&b, "b opened the stream", |s| s.cluster_qos_stream == 1);
    }
    Some((nats, a, b))
}

/// A QoS 2 subscriber to `filter` on `broker` (its flows completed).
fn subscriber(broker: &ringmq::Broker, id: &str, filter: &str) -> Receiver {
    let (mut r, _) = Receiver::connect(broker.local_addr(), &ConnectOpts::v5(id));
    assert_eq!(r.raw.subscribe(1, &[(filter, 2)]), [2]);
    r
}

/// The next `n` messages `r` gets as (QoS, payload), then nothing more.
fn received(r: &mut Receiver, n: usize) -> Vec<(u8, Vec<u8>)> {
    let got: Vec<(u8, Vec<u8>)> = (0..n)
        .map(|_| {
            let p = r.next(PROMPT);
            (p.qos, p.payload)
        })
        .collect();
    r.expect_no_publish(Duration::from_millis(300), "one message too many");
    r.finish();
    got
}

/// Drops the probes `wait_routed` left with `r`.
fn skip_probes(r: &mut Receiver) {
    while let Some(p) = r.try_next(Duration::from_millis(200)) {
        assert_eq!(p.payload, b"probe");
    }
}

#[test]
fn qos1_and_qos2_cross_nodes_once_each_and_in_order() {
    let Some((_nats, a, b)) = nodes(&[]) else {
        return;
    };
    let mut sub_b = subscriber(&b, "sub-b", "q/#");
    let mut sub_a = subscriber(&a, "sub-a", "q/#");
    let (mut publisher, _) = RawClient::connected(a.local_addr(), &ConnectOpts::v5("pub-a"));
    wait_routed(&mut publisher, &mut sub_b.raw, "q/probe");
    skip_probes(&mut sub_a);
    let want: Vec<(u8, Vec<u8>)> = (0..20u16)
        .map(|i| (1 + (i % 2) as u8, format!("m{i}").into_bytes()))
        .collect();
    for (i, (qos, m)) in want.iter().enumerate() {
        let id = i as u16 + 1;
        match qos {
            1 => publisher.publish1("q/x", m, id),
            _ => publisher.publish2("q/x", m, id, &[]),
        }
    }
    assert_eq!(
        received(&mut sub_b, want.len()),
        want,
        "node b: once each, in order"
    );
    assert_eq!(
        received(&mut sub_a, want.len()),
        want,
        "node a's own subscriber: once each (its republished copies dropped)"
    );
    let sa = a.stats();
    assert_eq!(sa.cluster_qos_published, want.len() as u64, "{sa:?}");
    assert_eq!(sa.cluster_qos_failed, 0);
    let sb = wait_stats(&b, "b received them", |s| {
        s.cluster_received >= want.len() as u64
    });
    assert_eq!(sb.cluster_bad, 0);
    // b published nothing: nothing of its own to drop or store.
    assert_eq!(sb.cluster_qos_published, 0);
}

/// Resumes a stopped nats-server when dropped (a failed assertion must
/// not leave it stopped for the other drops).
struct Stopped(u32);

impl Stopped {
    fn new(nats: &Nats) -> Stopped {
        let pid = nats.child.id();
        signal("-STOP", pid);
        // SIGSTOP is delivered asynchronously: wait until every thread of
        // the server is stopped, or it may still store what comes next.
        let stopped = poll_until(PROMPT, || {
            let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
                .map(|d| d.flatten().map(|e| e.path()).collect::<Vec<_>>())
                .unwrap_or_default();
            !tasks.is_empty()
                && tasks.iter().all(|t| {
                    std::fs::read_to_string(t.join("stat")).is_ok_and(|stat| {
                        stat.rsplit_once(") ")
                            .is_some_and(|(_, rest)| rest.starts_with('T'))
                    })
                })
        });
        assert!(stopped, "nats-server {pid} did not stop");
        Stopped(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        signal("-CONT", self.0);
    }
}

/// Sends `sig` to the nats-server this test started (by its pid).
fn signal(sig: &str, pid: u32) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill {sig} {pid}");
}

#[test]
fn the_acknowledgement_waits_until_the_stream_stored_the_message() {
    let Some((nats, a, b)) = nodes(&[]) else {
        return;
    };
    let peek = Peek::new(&nats);
    let mut sub_b = subscriber(&b, "sub-b", "w/#");
    let (mut publisher, _) = RawClient::connected(a.local_addr(), &ConnectOpts::v5("pub-a"));
    wait_routed(&mut publisher, &mut sub_b.raw, "w/probe");
    // Each PUBACK comes after the stream counted its message.
    let before = peek.stored().expect("the stream exists");
    for i in 1..=5u16 {
        publisher.publish1("w/x", b"acked", i);
        let s = a.stats();
        assert!(
            s.cluster_qos_published >= u64::from(i),
            "PUBACK {i} before the stream acknowledged: {s:?}"
        );
        assert!(
            peek.stored().unwrap_or(0) >= before + u64::from(i),
            "PUBACK {i} before the stream held the message"
        );
    }
    assert_eq!(received(&mut sub_b, 5).len(), 5);
    // NATS stopped: the messages reach NATS's socket, but nothing is
    // stored, so neither PUBACK nor PUBREC may come; once NATS resumes,
    // both come and the stream holds the messages.
    let stored = peek.stored().expect("the stream exists");
    let published = a.stats().cluster_qos_published;
    // Connected first: a CONNECT's claim of its id waits for JetStream too.
    let (mut quitter, _) = RawClient::connected(a.local_addr(), &ConnectOpts::v5("quitter"));
    {
        let _stopped = Stopped::new(&nats);
        let v5 = publisher.v5;
        publisher
            .send(&publish_packet("w/x", b"held 1", 1, 10, false, v5))
            .expect("PUBLISH");
        publisher
            .send(&publish_packet("w/x", b"held 2", 2, 11, false, v5))
            .expect("PUBLISH");
        // A publisher that leaves while its PUBACK waits: its hold ends
        // with the stream's answer, on a link that is gone.
        quitter
            .send(&publish_packet("w/x", b"held 3", 1, 1, false, v5))
            .expect("PUBLISH");
        publisher.expect_silence(
            Duration::from_millis(500),
            "no PUBACK / PUBREC while NATS cannot store the messages",
        );
        drop(quitter);
        assert_eq!(a.stats().cluster_qos_published, published);
    }
    let ack = publisher.expect_packet(PROMPT, "PUBACK once NATS resumed");
    assert_eq!(ack.ack(PUBACK), (10, 0));
    let rec = publisher.expect_packet(PROMPT, "PUBREC once NATS resumed");
    assert_eq!(rec.ack(PUBREC), (11, 0));
    publisher.send(&pubrel_packet(11)).expect("PUBREL");
    let comp = publisher.expect_packet(PROMPT, "PUBCOMP");
    assert_eq!(comp.ack(PUBCOMP), (11, 0));
    let s = wait_stats(&a, "the three stored", |s| {
        s.cluster_qos_published == published + 3
    });
    assert_eq!(s.cluster_qos_failed, 0);
    assert_eq!(peek.stored(), Some(stored + 3));
    let mut got = received(&mut sub_b, 3);
    got.sort();
    assert_eq!(
        got,
        [
            (1, b"held 1".to_vec()),
            (1, b"held 3".to_vec()),
            (2, b"held 2".to_vec())
        ]
    );
    // The node goes on: a new publisher's PUBACK comes.
    let (mut next, _) = RawClient::connected(a.local_addr(), &ConnectOpts::v5("next"));
    next.publish1("w/x", b"after", 1);
    assert_eq!(received(&mut sub_b, 1), [(1, b"after".to_vec())]);
}

#[test]
fn best_effort_routes_on_core_nats_without_the_stream() {
    let Some((nats, a, b)) = nodes(&["--cluster-qos", "best-effort"]) else {
        return;
    };
    let peek = Peek::new(&nats);
    let mut sub_b = subscriber(&b, "sub-b", "e/#");
    let (mut publisher, _) = RawClient::connected(a.local_addr(), &ConnectOpts::v5("pub-a"));
    wait_routed(&mut publisher, &mut sub_b.raw, "e/probe");
    publisher.publish1("e/x", b"one", 1);
    publisher.publish2("e/x", b"two", 2, &[]);
    assert_eq!(
        received(&mut sub_b, 2),
        [(1, b"one".to_vec()), (2, b"two".to_vec())]
    );
    for s in [a.stats(), b.stats()] {
        assert_eq!(s.cluster_qos_stream, 0, "{s:?}");
        assert_eq!(s.cluster_qos_published, 0, "{s:?}");
        assert_eq!(s.cluster_qos_failed, 0, "{s:?}");
    }
    assert_eq!(peek.stored(), None, "best-effort makes no stream");
}

#[test]
fn qos0_takes_core_nats_without_the_header_and_stays_out_of_the_stream() {
    let Some((nats, a, b)) = nodes(&[]) else {
        return;
    };
    let mut peek = Peek::new(&nats);
    peek.subscribe("ringmq.t.z.x");
    let mut sub_b = subscriber(&b, "sub-b", "z/#");
    let (mut publisher, _) = RawClient::connected(a.local_addr(), &ConnectOpts::v5("pub-a"));
    wait_routed(&mut publisher, &mut sub_b.raw, "z/probe");
    let stored = peek.stored().expect("the stream exists");
    for i in 0..3 {
        publisher.publish0("z/x", format!("zero {i}").as_bytes());
    }
    assert_eq!(
        received(&mut sub_b, 3),
        (0..3)
            .map(|i| (0, format!("zero {i}").into_bytes()))
            .collect::<Vec<_>>()
    );
    for _ in 0..3 {
        let m = peek.next(PROMPT).expect("the QoS 0 message on its subject");
        assert!(m.headers.is_none(), "QoS 0 without headers: {m:?}");
    }
    assert_eq!(peek.stored(), Some(stored), "QoS 0 is not stored");
    // A QoS 1 message on the same subject is the stream's republished
    // copy, with the header naming the node that stored it.
    publisher.publish1("z/x", b"one", 1);
    let m = peek.next(PROMPT).expect("the QoS 1 message");
    assert_eq!(
        header(&m, async_nats::header::NATS_STREAM).as_deref(),
        Some(STREAM),
        "{m:?}"
    );
    assert!(header(&m, "Ringmq-Node").is_some(), "{m:?}");
    assert_eq!(peek.stored(), Some(stored + 1));
    assert_eq!(received(&mut sub_b, 1), [(1, b"one".to_vec())]);
    if let Some(m) = peek.next(Duration::from_millis(300)) {
        panic!("one message too many on NATS: {m:?}");
    }
}

#[test]
fn a_publish_the_stream_refuses_is_acknowledged_counted_and_the_stream_comes_back() {
    let Some((nats, a, b)) = nodes(&[]) else {
        return;
    };
    let peek = Peek::new(&nats);
    let mut sub_b = subscriber(&b, "sub-b", "f/#");
    let (mut publisher, _) = RawClient::connected(a.local_addr(), &ConnectOpts::v5("pub-a"));
    wait_routed(&mut publisher, &mut sub_b.raw, "f/probe");
    peek.delete_stream();
    // No stream answers: the PUBACK goes anyway (the message crossed at
    // most once: here not at all), counted.
    publisher.publish1("f/x", b"lost", 1);
    let s = a.stats();
    assert_eq!(
        (s.cluster_qos_failed, s.cluster_qos_published),
        (1, 0),
        "{s:?}"
    );
    // The node makes the stream again, and stores through it.
    wait_stats(&a, "a opened the stream again", |s| {
        s.cluster_qos_stream == 1
    });
    assert_eq!(peek.stored(), Some(0));
    publisher.publish1("f/x", b"stored", 2);
    assert_eq!(received(&mut sub_b, 1), [(1, b"stored".to_vec())]);
    let s = a.stats();
    assert_eq!(
        (s.cluster_qos_failed, s.cluster_qos_published),
        (1, 1),
        "{s:?}"
    );
    assert_eq!(peek.stored(), Some(1));
}
