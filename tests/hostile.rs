//! Proof against hostile clients (issue 12): one test per attack, each on
//! a live broker (2 shards, loopback port 0) spoken to over raw sockets.
//!
//! In every test a canary (one client per shard, each publishing QoS 1 to
//! its own subscription and waiting for the PUBACK and the echo) keeps
//! completing its round trips within a generous deadline: the attack must
//! not starve anyone else. What the attacker can make the broker hold is
//! asserted on the broker's own accounting (`broker.stats()`: pauses,
//! drops, refusals, closes), never on timing: nothing here asserts a speed.
//!
//! Nothing sleeps for a fixed time: waits are socket reads with a deadline,
//! `poll_until` or `wait_stats`. Flag values are small so each attack is
//! bounded and done in seconds.

mod common;

use common::*;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

/// How long one canary round trip may take: generous, only a starved
/// canary misses it.
const ROUND_TRIP: Duration = Duration::from_secs(10);

/// The canary's own address (all of 127.0.0.0/8 is loopback on Linux), so
/// that per-address limits on 127.0.0.1 do not count it.
const CANARY_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// How long an attack may take to reach the limit it tests.
const ATTACK: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// One QoS 1 client per shard, each subscribed to its own topic (v5 on
/// shard 0, v3.1.1 on shard 1), connecting from `CANARY_IP`.
struct Canary {
    links: Vec<(RawClient, String)>,
    sent: u16,
}

impl Canary {
    /// Connects the canary (named after the test) and runs a first round
    /// trip.
    fn connect(addr: SocketAddr, name: &str) -> Canary {
        let links = (0..SHARDS)
            .map(|shard| {
                let id = id_on_shard(&format!("canary-{name}-"), shard);
                let opts = if shard % 2 == 0 {
                    ConnectOpts::v5(&id)
                } else {
                    ConnectOpts::v3(&id)
                };
                let mut c = RawClient::open_from(addr, CANARY_IP, None);
                c.v5 = opts.is_v5();
                c.send(&opts.encode()).expect("send canary CONNECT");
                let ack = c.expect_packet(PROMPT, "canary CONNACK").connack(c.v5);
                assert_eq!(ack.code, 0, "canary {id} refused: {ack:?}");
                let topic = format!("canary/{id}");
                assert_eq!(c.subscribe(1, &[(&topic, 1)]), [1], "canary SUBACK");
                (c, topic)
            })
            .collect();
        let mut canary = Canary { links, sent: 0 };
        canary.round_trip("at start");
        canary
    }

    /// Every canary client publishes QoS 1 to itself and gets both the
    /// PUBACK and the echo (acknowledged) within `ROUND_TRIP`.
    fn round_trip(&mut self, when: &str) {
        for (c, topic) in &mut self.links {
            self.sent = self.sent % 60_000 + 1;
            let id = self.sent;
            let payload = format!("canary {id}");
            c.send(&publish_packet(
                topic,
                payload.as_bytes(),
                1,
                id,
                false,
                c.v5,
            ))
            .unwrap_or_else(|e| panic!("canary {topic} {when}: send: {e}"));
            let deadline = Instant::now() + ROUND_TRIP;
            let (mut acked, mut echoed) = (false, false);
            while !(acked && echoed) {
                let left = deadline.saturating_duration_since(Instant::now());
                let p = c.read_packet(left).unwrap_or_else(|e| {
                    panic!("canary {topic} {when}: round trip {id} not done within {ROUND_TRIP:?}: {e:?}")
                });
                match p.kind {
                    PUBACK => {
                        assert_eq!(p.ack(PUBACK), (id, 0), "canary PUBACK {when}");
                        acked = true;
                    }
                    PUBLISH => {
                        let info = p.publish(c.v5);
                        assert_eq!(
                            (info.topic.as_str(), info.payload.as_slice()),
                            (topic.as_str(), payload.as_bytes()),
                            "canary echo {when}"
                        );
                        c.send(&puback_packet(info.packet_id))
                            .expect("canary PUBACK");
                        echoed = true;
                    }
                    _ => panic!("canary {topic} {when}: unexpected {p:?}"),
                }
            }
        }
    }
}

/// A connected v3.1.1 or v5 client.
fn client(addr: SocketAddr, id: &str, v5: bool) -> RawClient {
    let opts = if v5 {
        ConnectOpts::v5(id)
    } else {
        ConnectOpts::v3(id)
    };
    RawClient::connected(addr, &opts).0
}

/// Opens one connection per `opts`, sends every CONNECT, then reads every
/// CONNACK (asserting success): all of the handshakes in flight at once.
fn connect_all(addr: SocketAddr, opts: &[ConnectOpts]) -> Vec<RawClient> {
    let mut clients: Vec<RawClient> = opts
        .iter()
        .map(|o| {
            let mut c = RawClient::open(addr);
            c.v5 = o.is_v5();
            c.send(&o.encode()).expect("send CONNECT");
            c
        })
        .collect();
    for (c, o) in clients.iter_mut().zip(opts) {
        let ack = c.expect_packet(PROMPT, "CONNACK").connack(c.v5);
        assert_eq!(ack.code, 0, "CONNACK for {}: {ack:?}", o.client_id);
    }
    clients
}

/// A client that will not read: a small receive buffer (so the broker's
/// output backs up after kilobytes), subscribed at `qos` to its own topic.
fn non_reader(addr: SocketAddr, id: &str, qos: u8) -> (RawClient, String) {
    let mut c = RawClient::open_from(addr, Ipv4Addr::LOCALHOST, Some(8 * 1024));
    c.send(&ConnectOpts::v3(id).encode()).expect("send CONNECT");
    assert_eq!(c.expect_packet(PROMPT, "CONNACK").connack(false).code, 0);
    let topic = format!("nr/{id}");
    assert_eq!(c.subscribe(1, &[(&topic, qos)]), [qos]);
    (c, topic)
}

/// `c` writes PINGREQs and 4 KiB QoS 0 PUBLISHes to `topic` (its own
/// subscription) and never reads, until `done(stats)` holds (`what` names
/// it) or the broker closes the connection. Writes never block the test
/// for long. Answers the stats that ended the flood and the rest of the
/// packet it stopped in (to send before anything else).
fn flood(
    broker: &Broker,
    c: &mut RawClient,
    topic: &str,
    what: &str,
    done: impl Fn(&Stats) -> bool,
) -> (Stats, Vec<u8>) {
    let mut chunk = PINGREQ_BYTES.to_vec();
    for _ in 0..4 {
        chunk.extend(publish_packet(topic, &[b'f'; 4096], 0, 0, false, false));
    }
    let deadline = Instant::now() + ATTACK;
    let mut at = 0;
    let mut written = 0usize;
    loop {
        let s = broker.stats();
        if done(&s) {
            // The rest of the packet the flood stopped in: up to the end
            // of the chunk, whose packets end together.
            let rest = if at == 0 {
                Vec::new()
            } else {
                chunk[at..].to_vec()
            };
            return (s, rest);
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not reached after {written} bytes from a client that does not read: {s:?}"
        );
        match c.write_some(&chunk[at..], Duration::from_millis(20)) {
            Ok(n) => {
                written += n;
                at = (at + n) % chunk.len();
            }
            Err(e) if would_block(&e) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
                ) =>
            {
                return (wait_stats(broker, what, done), Vec::new());
            }
            Err(e) => panic!("flooding: {e} after {written} bytes"),
        }
    }
}

/// Works `c`'s backlog off: reads (discarding) while sending `rest` (the
/// end of a packet the flood stopped in) and then a QoS 1 PUBLISH as a
/// marker, until the marker's PUBACK comes, then pings. Proves a paused
/// client is served again once it reads.
fn catch_up(broker: &Broker, c: &mut RawClient, topic: &str, rest: &[u8]) {
    let mut marker = rest.to_vec();
    marker.extend(publish_packet(topic, b"end", 1, 7, false, c.v5));
    let mut at = 0;
    let deadline = Instant::now() + ATTACK * 2;
    let mut reads = 0u32;
    loop {
        assert!(
            Instant::now() < deadline,
            "no PUBACK for the marker: the client is not served again \
             ({reads} packets read, {at} of {} marker bytes written): {:?}",
            marker.len(),
            broker.stats()
        );
        match c.read_packet(Duration::from_millis(20)) {
            Ok(p) if p.kind == PUBACK => {
                assert_eq!(p.ack(PUBACK), (7, 0), "marker PUBACK");
                break;
            }
            Ok(p) => {
                assert!(
                    matches!(p.kind, PUBLISH | PINGRESP),
                    "unexpected {p:?} while catching up"
                );
                reads += 1;
                if reads % 64 != 0 {
                    continue;
                }
            }
            Err(ReadError::Timeout) => {}
            Err(e) => panic!("catching up: {e:?}"),
        }
        if at < marker.len() {
            match c.write_some(&marker[at..], Duration::from_millis(1)) {
                Ok(n) => at += n,
                Err(e) if would_block(&e) => {}
                Err(e) => panic!("sending the marker: {e}"),
            }
        }
    }
    // The marker's own echo (QoS 0 here) may still come before PINGRESP.
    c.send(&PINGREQ_BYTES).expect("send PINGREQ");
    loop {
        let p = c.expect_packet(PROMPT, "PINGRESP after catching up");
        if p.kind == PINGRESP {
            break;
        }
        assert_eq!(p.kind, PUBLISH, "{p:?}");
    }
}

/// A topic of exactly `levels` levels.
fn topic_of_levels(prefix: &str, levels: usize) -> String {
    let mut t = prefix.to_string();
    for i in 1..levels {
        t.push_str(&format!("/{i}"));
    }
    t
}

/// This process's virtual memory size (VmSize), in KiB: the broker runs
/// in it, so memory it reserves shows here even before it is touched.
fn vm_size_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmSize:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmSize in /proc/self/status")
}

/// Whether an I/O error only says the socket would block.
fn would_block(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

// ---------------------------------------------------------------------------
// 1. Clients that do not read
// ---------------------------------------------------------------------------

/// Attack: a client sends PINGREQs and QoS 0 PUBLISHes to a topic it
/// subscribed itself, and never reads. Past --max-outbuf-bytes the broker
/// stops reading it and drops QoS 0 to it (counted); once it reads again it
/// is served again.
#[test]
fn never_reading_client_is_paused_and_loses_qos0() {
    let broker = start(&[
        "--max-outbuf-bytes",
        "65536",
        "--write-stall-timeout-ms",
        "0",
    ]);
    let addr = broker.local_addr();
    let mut canary = Canary::connect(addr, "pause");
    let (mut nr, topic) = non_reader(addr, "nr-pause", 0);

    let (s, rest) = flood(
        &broker,
        &mut nr,
        &topic,
        "paused, QoS 0 to it dropped",
        |s| s.outbuf_paused > 0 && s.publishes_dropped > 0,
    );
    assert_eq!(s.outbuf_closed, 0, "paused, not closed: {s:?}");
    canary.round_trip("with a paused client");

    // Reading again, it is read again.
    catch_up(&broker, &mut nr, &topic, &rest);
    canary.round_trip("after the client caught up");
    let s = broker.stats();
    assert_eq!(
        (s.outbuf_closed, s.write_stall_closed),
        (0, 0),
        "nobody closed: {s:?}"
    );
}

/// Attack: as above, the client going on writing, with
/// --write-stall-timeout-ms 500: once paused, a client whose output takes
/// nothing for that long is closed (counted), and its socket sees the
/// close.
#[test]
fn never_reading_client_is_closed_after_the_write_stall_timeout() {
    let broker = start(&[
        "--max-outbuf-bytes",
        "65536",
        "--write-stall-timeout-ms",
        "500",
    ]);
    let addr = broker.local_addr();
    let mut canary = Canary::connect(addr, "stall");
    let (mut nr, topic) = non_reader(addr, "nr-stall", 0);

    let (s, _) = flood(
        &broker,
        &mut nr,
        &topic,
        "closed for the write stall",
        |s| s.write_stall_closed >= 1,
    );
    assert!(s.outbuf_paused >= 1, "paused first: {s:?}");
    canary.round_trip("after the stalled client was closed");
    nr.drain_until_closed(ATTACK * 2, "write stall");
    let s = wait_stats(&broker, "only the canary left", |s| {
        s.connections == SHARDS as u64
    });
    assert_eq!(s.outbuf_closed, 0, "the stall, not the hard limit: {s:?}");
    assert_eq!(s.sessions, SHARDS as u64, "its clean session ended: {s:?}");
    canary.round_trip("at the end");
}

/// Attack: a QoS 0 subscriber with keep-alive 0 that stops reading (and
/// sends nothing) while another client publishes to it. Its output passes
/// --max-outbuf-bytes (further QoS 0 to it is dropped, counted) and its
/// socket takes nothing; --write-stall-timeout-ms says "a client with
/// output waiting whose socket takes nothing for this long is closed".
#[test]
fn quiet_non_reader_with_stalled_output_is_closed_after_the_write_stall_timeout() {
    let broker = start(&[
        "--max-outbuf-bytes",
        "65536",
        "--write-stall-timeout-ms",
        "500",
    ]);
    let addr = broker.local_addr();
    let mut canary = Canary::connect(addr, "quiet");
    let mut nr = RawClient::open_from(addr, Ipv4Addr::LOCALHOST, Some(8 * 1024));
    nr.send(&ConnectOpts::v3("nr-quiet").keep_alive(0).encode())
        .expect("send CONNECT");
    assert_eq!(nr.expect_packet(PROMPT, "CONNACK").connack(false).code, 0);
    assert_eq!(nr.subscribe(1, &[("nr/quiet", 0)]), [0]);
    let mut publisher = client(addr, "nr-quiet-pub", false);

    // Publish until the broker drops QoS 0 to it: its output is full.
    let deadline = Instant::now() + ATTACK;
    while broker.stats().publishes_dropped == 0 {
        assert!(Instant::now() < deadline, "{:?}", broker.stats());
        for _ in 0..16 {
            publisher.publish0("nr/quiet", &[b'q'; 4096]);
        }
        publisher.ping();
    }
    canary.round_trip("with a stalled subscriber");
    wait_stats(&broker, "closed for the write stall", |s| {
        s.write_stall_closed >= 1
    });
    nr.drain_until_closed(ATTACK * 2, "write stall");
    canary.round_trip("at the end");
}

/// Attack: a v3.1.1 QoS 1 subscriber that never reads (and never writes)
/// while another client publishes QoS 1 to it, with --max-inflight-out so
/// large that every delivery is written at once: past
/// --max-outbuf-hard-bytes it is closed (`outbuf_closed`), and the
/// publisher keeps getting its PUBACKs throughout.
#[test]
fn never_reading_subscriber_is_closed_at_the_hard_output_limit() {
    let broker = start(&[
        "--max-outbuf-bytes",
        "65536",
        "--max-outbuf-hard-bytes",
        "262144",
        "--write-stall-timeout-ms",
        "0",
        "--max-inflight-out",
        "65535",
    ]);
    let addr = broker.local_addr();
    let mut canary = Canary::connect(addr, "hard");
    let (mut nr, topic) = non_reader(addr, "nr-hard", 1);
    let mut publisher = client(addr, "nr-hard-pub", false);

    let deadline = Instant::now() + ATTACK;
    let payload = vec![b'h'; 8192];
    let mut next_id = 1u16;
    while broker.stats().outbuf_closed == 0 {
        assert!(
            Instant::now() < deadline,
            "not closed after {next_id} deliveries of 8 KiB: {:?}",
            broker.stats()
        );
        // A window of 16 QoS 1 PUBLISHes, then their 16 PUBACKs.
        let ids: Vec<u16> = (0..16).map(|i| next_id + i).collect();
        next_id += 16;
        for &id in &ids {
            publisher
                .send(&publish_packet(&topic, &payload, 1, id, false, false))
                .expect("send PUBLISH");
        }
        for &id in &ids {
            let p = publisher.expect_packet(PROMPT, "PUBACK");
            assert_eq!(p.ack(PUBACK), (id, 0), "the publisher keeps its PUBACKs");
        }
    }
    canary.round_trip("after the hard close");
    nr.drain_until_closed(ATTACK * 2, "hard output limit");
    let s = wait_stats(&broker, "the subscriber gone", |s| {
        s.connections == SHARDS as u64 + 1 && s.sessions == SHARDS as u64 + 1
    });
    assert_eq!(s.outbuf_closed, 1, "{s:?}");
    publisher.publish1(&topic, b"after", next_id);
    canary.round_trip("at the end");
}

// ---------------------------------------------------------------------------
// 2-3. Subscriptions
// ---------------------------------------------------------------------------

/// Attack: a SUBSCRIBE with a 30,000-level filter (and PUBLISHes to topics
/// deeper than --max-topic-levels). The filter is refused in its SUBACK
/// (0x80 v3 / 0x8F v5) and counted, the connection stays usable; a PUBLISH
/// too deep closes the connection (v5: DISCONNECT 0x90 first).
#[test]
fn deep_filters_are_refused_and_deep_topics_close() {
    let broker = start(&["--max-topic-levels", "16"]);
    let addr = broker.local_addr();
    let mut canary = Canary::connect(addr, "levels");
    let deep = format!("{}a", "a/".repeat(29_999));
    assert_eq!(deep.split('/').count(), 30_000, "test setup");
    let at_limit = topic_of_levels("lv", 16);
    let too_deep = topic_of_levels("lv", 17);

    for v5 in [false, true] {
        let mut c = client(addr, &format!("levels-{v5}"), v5);
        let ok = format!("levels/ok/{v5}");
        let refused = if v5 { 0x8F } else { 0x80 };
        assert_eq!(
            c.subscribe(1, &[(&deep, 1), (&at_limit, 0), (&ok, 0)]),
            [refused, 0, 0],
            "30,000 levels refused, 16 granted (v5: {v5})"
        );
        c.ping();
        c.publish0(&ok, b"still usable");
        assert_eq!(c.expect_publish(PROMPT).payload, b"still usable");
        canary.round_trip("after a deep filter");
    }
    wait_stats(&broker, "two deep filters counted", |s| {
        s.topic_levels_refused == 2
    });

    for v5 in [false, true] {
        let mut c = client(addr, &format!("levels-pub-{v5}"), v5);
        c.publish1(&at_limit, b"16 levels", 1);
        c.send(&publish_packet(&too_deep, b"17 levels", 0, 0, false, v5))
            .expect("send PUBLISH");
        let got = c.expect_closed(PROMPT, "PUBLISH deeper than --max-topic-levels");
        if v5 {
            assert!(
                matches!(got.as_slice(), [p] if p.is_disconnect(0x90)),
                "DISCONNECT 0x90 (topic name invalid) then close: {got:?}"
            );
        } else {
            assert!(got.is_empty(), "v3: closed without a packet: {got:?}");
        }
    }
    wait_stats(&broker, "two deep topics counted", |s| {
        s.topic_levels_refused == 4
    });
    canary.round_trip("at the end");
}

/// Attack: a client subscribing to ever more filters. With
/// --max-subscriptions 3 the 4th new filter is refused (0x97 v5 / 0x80 v3)
/// and counted and gets no route; re-subscribing an existing filter still
/// works, and so does a new one once another is unsubscribed.
#[test]
fn subscriptions_beyond_the_limit_are_refused() {
    let broker = start(&["--max-subscriptions", "3"]);
    let addr = broker.local_addr();
    let mut canary = Canary::connect(addr, "subs");
    let mut publisher = client(addr, "subs-pub", false);

    for v5 in [false, true] {
        let mut c = client(addr, &format!("subs-{v5}"), v5);
        let t = |name: &str| format!("subs/{v5}/{name}");
        let (a, b, d, e) = (t("a"), t("b"), t("d"), t("e"));
        let refused = if v5 { 0x97 } else { 0x80 };
        assert_eq!(c.subscribe(1, &[(&a, 0), (&b, 0), (&t("c"), 0)]), [0, 0, 0]);
        assert_eq!(c.subscribe(2, &[(&d, 0)]), [refused], "4th filter");
        assert_eq!(
            c.subscribe(3, &[(&d, 0), (&e, 1)]),
            [refused, refused],
            "5th and 6th"
        );
        assert_eq!(c.subscribe(4, &[(&a, 1)]), [1], "re-subscribing a");
        // The refused filter has no route: the next message is b's.
        publisher.publish0(&d, b"to d");
        publisher.publish0(&b, b"to b");
        assert_eq!(c.expect_publish(PROMPT).topic, b);
        c.send(&unsubscribe_packet(5, &[&a], v5))
            .expect("UNSUBSCRIBE");
        assert_eq!(c.expect_packet(PROMPT, "UNSUBACK").kind, UNSUBACK);
        assert_eq!(c.subscribe(6, &[(&d, 0)]), [0], "room again after one left");
        canary.round_trip("after refused filters");
    }
    wait_stats(&broker, "refused filters counted", |s| {
        s.subscriptions_refused == 6
    });
}

// ---------------------------------------------------------------------------
// 4. Slow QoS 1 subscribers
// ---------------------------------------------------------------------------

/// Attack: v3.1.1 QoS 1 subscribers that never read while a publisher
/// sends QoS 1 to them. Inflight towards each stops at --max-inflight-out;
/// then --max-queued-messages (count) and --max-queued-bytes (bytes) drop
/// the rest, counted; the publisher gets every PUBACK; what is kept is
/// delivered in order once the subscriber reads, and nothing more.
#[test]
fn slow_qos1_subscriber_is_bounded_by_inflight_and_queue_limits() {
    let broker = start(&[
        "--max-inflight-out",
        "4",
        "--max-queued-messages",
        "10",
        "--max-queued-bytes",
        "30000",
    ]);
    let addr = broker.local_addr();
    let mut canary = Canary::connect(addr, "slow");
    let mut by_count = client(addr, &id_on_shard("slow-count-", 0), false);
    assert_eq!(by_count.subscribe(1, &[("slow/count", 1)]), [1]);
    let mut by_bytes = client(addr, &id_on_shard("slow-bytes-", 1), false);
    assert_eq!(by_bytes.subscribe(1, &[("slow/bytes", 1)]), [1]);
    let mut publisher = client(addr, "slow-pub", false);

    // 20 small messages: 4 in flight, 10 queued, 6 dropped by count.
    for i in 0..20u16 {
        publisher.publish1("slow/count", format!("m{i}").as_bytes(), i + 1);
    }
    let s = wait_stats(&broker, "6 dropped by --max-queued-messages", |s| {
        s.queue_full_dropped == 6
    });
    assert_eq!(s.queue_bytes_dropped, 0, "{s:?}");
    canary.round_trip("after count drops");

    // 10 messages of 4500 bytes: the 30,000-byte budget (inflight and
    // queued together, each message with its record) holds 6 of them
    // (4 in flight, 2 queued); 7 x 4500 is over it whatever the record.
    for i in 0..10u16 {
        let payload = vec![b'0' + i as u8; 4500];
        publisher.publish1("slow/bytes", &payload, 100 + i);
    }
    let s = wait_stats(&broker, "4 dropped by --max-queued-bytes", |s| {
        s.queue_bytes_dropped == 4
    });
    assert_eq!(s.queue_full_dropped, 6, "{s:?}");
    let kept_bytes = 6;
    canary.round_trip("after byte drops");

    // The window: exactly 4 PUBLISHes came before a PINGRESP.
    by_count.send(&PINGREQ_BYTES).expect("PINGREQ");
    let mut inflight = Vec::new();
    loop {
        let p = by_count.expect_packet(PROMPT, "PUBLISH or PINGRESP");
        if p.kind == PINGRESP {
            break;
        }
        inflight.push(p.publish(false));
    }
    assert_eq!(inflight.len(), 4, "--max-inflight-out 4: {inflight:?}");
    // Acknowledged, the queue drains in order: m0..m13, nothing more.
    let mut got: Vec<String> = Vec::new();
    for p in &inflight {
        by_count.send(&puback_packet(p.packet_id)).expect("PUBACK");
        got.push(String::from_utf8_lossy(&p.payload).into_owned());
    }
    while got.len() < 14 {
        let p = by_count.expect_publish(PROMPT);
        got.push(String::from_utf8_lossy(&p.payload).into_owned());
    }
    let want: Vec<String> = (0..14).map(|i| format!("m{i}")).collect();
    assert_eq!(got, want, "in order, the dropped ones last");
    by_count.ping();

    let mut n = 0;
    while n < kept_bytes {
        let p = by_bytes.expect_publish(PROMPT);
        assert_eq!(p.payload, vec![b'0' + n as u8; 4500], "in order");
        n += 1;
    }
    by_bytes.ping();
    canary.round_trip("at the end");
}

// ---------------------------------------------------------------------------
// 5-6. Packets that announce much, or start wrong
// ---------------------------------------------------------------------------

/// The fixed header of a PUBLISH announcing a whole packet of
/// 268,435,455 bytes (256 MiB; the largest remaining length MQTT allows is
/// that minus the 5 header bytes).
fn huge_announcement() -> Vec<u8> {
    let mut header = vec![0x30];
    put_varint(&mut header, 268_435_455 - 5);
    assert_eq!(header.len(), 5, "test setup");
    header
}

/// Attack: 200 connections each announce a 256 MiB PUBLISH (allowed by
/// --max-packet-size 268435455) and then trickle its body. The broker
/// holds what arrives, not what is announced: it keeps every connection
/// and keeps serving the canary; the address space of this process (where
/// the broker runs) does not grow by the announced sizes.
#[test]
fn huge_announced_packets_trickled_do_not_starve_the_broker() {
    let broker = start(&["--max-packet-size", "268435455"]);
    let addr = broker.local_addr();
    let mut canary = Canary::connect(addr, "big");
    let opts: Vec<ConnectOpts> = (0..200)
        .map(|i| ConnectOpts::v3(&format!("big-{i}")))
        .collect();
    let mut clients = connect_all(addr, &opts);
    let vm_before = vm_size_kib();
    for (i, c) in clients.iter_mut().enumerate() {
        let mut start = huge_announcement();
        put_bin(&mut start, format!("big/{i}").as_bytes());
        c.send(&start).expect("send the announcement");
    }
    canary.round_trip("after 200 announcements");
    for round in 0..5 {
        for c in &mut clients {
            c.send(&[b'p'; 1024]).expect("trickle");
        }
        canary.round_trip(&format!("after trickle round {round}"));
    }
    // Nothing reserved for what is announced: 200 x 256 MiB would be
    // 50 GiB of address space, even untouched. (Other tests' brokers in
    // this process add under 300 MiB each, hence the slack.)
    let grown_kib = vm_size_kib().saturating_sub(vm_before);
    assert!(
        grown_kib < 8 << 20,
        "address space grew by {} MiB during the announcements",
        grown_kib >> 10
    );
    let s = broker.stats();
    assert_eq!(s.connections, 200 + SHARDS as u64, "all kept: {s:?}");
    assert_eq!(s.protocol_errors, 0, "{s:?}");
    assert_serves(addr);
    drop(clients);
    wait_stats(&broker, "the announcers gone", |s| {
        s.connections == SHARDS as u64
    });
    canary.round_trip("at the end");
}

/// Attack: the same announcement with the default --max-packet-size: it is
/// refused from the fixed header alone (v5 DISCONNECT 0x95, v3 closed),
/// without waiting for a body that never comes.
#[test]
fn huge_announced_packet_is_refused_from_its_header() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let mut canary = Canary::connect(addr, "bighead");
    for v5 in [false, true] {
        let mut c = client(addr, &format!("bighead-{v5}"), v5);
        c.send(&huge_announcement()).expect("send the announcement");
        let got = c.expect_closed(PROMPT, "256 MiB announced, 1 MiB allowed");
        if v5 {
            assert!(
                matches!(got.as_slice(), [p] if p.is_disconnect(0x95)),
                "DISCONNECT 0x95 (packet too large): {got:?}"
            );
        } else {
            assert!(got.is_empty(), "{got:?}");
        }
        canary.round_trip("after a refused announcement");
    }
    wait_stats(&broker, "counted", |s| s.protocol_errors == 2);
}

/// Attack: after CONNECT, a first byte that no client may send: a known
/// type with the wrong fixed header flags, a packet only a server sends, a
/// type reserved in the client's version. The connection closes on that
/// byte alone, before any body (counted; v5 may say why in a DISCONNECT).
/// A valid first byte alone is not closed.
#[test]
fn bad_first_byte_after_connect_closes_at_once() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let mut canary = Canary::connect(addr, "first");
    let cases: [(bool, u8, &str); 12] = [
        (false, 0x60, "PUBREL with flags 0000 (must be 0010)"),
        (false, 0x80, "SUBSCRIBE with flags 0000"),
        (false, 0xC1, "PINGREQ with flags 0001"),
        (false, 0x20, "CONNACK from a client"),
        (false, 0x90, "SUBACK from a client"),
        (false, 0xF0, "AUTH in v3.1.1 (reserved type 15)"),
        (false, 0x00, "reserved type 0"),
        (true, 0x60, "PUBREL with flags 0000"),
        (true, 0x20, "CONNACK from a client"),
        (true, 0xD0, "PINGRESP from a client"),
        (true, 0xF1, "AUTH with flags 0001"),
        (true, 0x00, "reserved type 0"),
    ];
    for (i, (v5, byte, what)) in cases.iter().enumerate() {
        let mut c = client(addr, &format!("first-{i}"), *v5);
        c.send(&[*byte]).expect("send one byte");
        let got = c.expect_closed(PROMPT, what);
        for p in &got {
            assert!(
                p.kind == DISCONNECT && p.disconnect_reason() >= 0x80,
                "{what}: only a DISCONNECT with an error may come: {got:?}"
            );
        }
    }
    wait_stats(&broker, "every bad first byte counted", |s| {
        s.protocol_errors == cases.len() as u64
    });
    canary.round_trip("after bad first bytes");

    // Valid first bytes alone wait for the rest: 0x31 (PUBLISH, retain),
    // 0x62 (PUBREL) and, in v5, 0xF0 would be AUTH (not tried: the broker
    // has no authentication method).
    for v5 in [false, true] {
        let mut c = client(addr, &format!("first-ok-{v5}"), v5);
        let publish = publish_packet("first/ok", b"x", 0, 0, true, v5);
        assert_eq!(publish[0], 0x31);
        c.send(&publish[..1]).expect("first byte");
        canary.round_trip("while a PUBLISH waits for its body");
        c.send(&publish[1..]).expect("the rest");
        let pubrel = pubrel_packet(9);
        c.send(&pubrel[..1]).expect("first byte");
        canary.round_trip("while a PUBREL waits for its body");
        c.send(&pubrel[1..]).expect("the rest");
        // A PUBREL for an unknown id still gets its PUBCOMP.
        let p = c.expect_packet(PROMPT, "PUBCOMP");
        assert_eq!(p.kind, PUBCOMP, "{p:?}");
        c.ping();
    }
    assert_eq!(broker.stats().protocol_errors, cases.len() as u64);
    // Clear the retained message the check stored.
    let mut c = client(addr, "first-clear", false);
    c.send(&publish_packet("first/ok", b"", 0, 0, true, false))
        .expect("clear");
    c.ping();
}

// ---------------------------------------------------------------------------
// 7-9. Sessions and retained messages
// ---------------------------------------------------------------------------

/// Attack: ever more persistent clients connect and leave. With
/// --max-sessions 4 each of the 2 shards keeps ceil(4 / 2) = 2 absent
/// sessions; a client leaving beyond that has its session ended at once
/// (counted), so `sessions` never exceeds the limit plus those connected.
#[test]
fn absent_sessions_beyond_max_sessions_are_discarded() {
    let broker = start(&["--max-sessions", "4"]);
    let addr = broker.local_addr();
    let mut canary = Canary::connect(addr, "sess");
    let per_shard_keep = 4usize.div_ceil(SHARDS);
    let per_shard = 5;
    // Interleaved over the shards, alternating v3.1.1 and v5.
    let opts: Vec<ConnectOpts> = (0..per_shard)
        .flat_map(|i| (0..SHARDS).map(move |shard| (i, shard)))
        .map(|(i, shard)| {
            let id = id_on_shard(&format!("sess{i}-"), shard);
            if (i + shard) % 2 == 0 {
                ConnectOpts::v3(&id).clean(false)
            } else {
                ConnectOpts::v5(&id).clean(false).session_expiry(300)
            }
        })
        .collect();
    let mut clients = connect_all(addr, &opts);
    let n = clients.len() as u64;
    let canaries = SHARDS as u64;
    wait_stats(&broker, "all connected", |s| s.sessions == n + canaries);

    for (left, c) in clients.iter_mut().enumerate() {
        if c.v5 {
            c.send(&disconnect_v5(0)).expect("DISCONNECT");
        } else {
            c.send(&DISCONNECT_V3).expect("DISCONNECT");
        }
        c.expect_closed(PROMPT, "after DISCONNECT");
        let connected = n - left as u64 - 1 + canaries;
        // Counters are read one by one while the shard works: the bound
        // is waited for, not read in passing.
        wait_stats(&broker, "the client left, absent sessions bounded", |s| {
            s.connections == connected && s.sessions <= 4 + connected
        });
    }
    let kept = (per_shard_keep * SHARDS) as u64;
    let s = wait_stats(&broker, "absent sessions bounded", |s| {
        s.sessions == kept + canaries
    });
    assert_eq!(s.sessions_discarded, n - kept, "{s:?}");
    canary.round_trip("after the sessions left");

    // The first ones to leave on each shard were kept, the rest ended.
    for (i, o) in opts.iter().enumerate() {
        let (mut c, ack) = RawClient::connected(addr, o);
        let kept = i / SHARDS < per_shard_keep;
        assert_eq!(ack.session_present, kept, "{} (left #{i})", o.client_id);
        c.ping();
    }
    canary.round_trip("at the end");
}

/// Attack: a v5 client asking for a session that never expires
/// (0xFFFFFFFF). With --max-session-expiry-secs 600 it is granted 600,
/// and CONNACK says so; a smaller request is granted as asked.
#[test]
fn session_expiry_is_capped_and_announced() {
    let broker = start(&[
        "--max-session-expiry-secs",
        "600",
        "--session-expiry-default-secs",
        "600",
    ]);
    let addr = broker.local_addr();
    let mut canary = Canary::connect(addr, "expiry");
    let forever = ConnectOpts::v5("expiry-forever")
        .clean(false)
        .session_expiry(u32::MAX);
    let (mut c, ack) = RawClient::connected(addr, &forever);
    assert_eq!(ack.props.int(0x11), Some(600), "capped: {ack:?}");
    c.ping();
    let (mut short, ack) =
        RawClient::connected(addr, &ConnectOpts::v5("expiry-short").session_expiry(60));
    assert!(
        matches!(ack.props.int(0x11), None | Some(60)),
        "60 s is granted as asked: {ack:?}"
    );
    short.ping();
    c.send(&disconnect_v5(0)).expect("DISCONNECT");
    c.expect_closed(PROMPT, "after DISCONNECT");
    let (_c, ack) = RawClient::connected(addr, &forever);
    assert!(ack.session_present, "the capped session is kept: {ack:?}");
    assert_eq!(ack.props.int(0x11), Some(600));
    canary.round_trip("at the end");
}

/// The retained messages a fresh subscriber gets for `topic`; `control` is
/// a topic with a retained message owned by the same shard (see
/// `retained_on`).
fn retained_payloads(addr: SocketAddr, id: &str, topic: &str, control: &str) -> Vec<Vec<u8>> {
    let mut c = client(addr, id, false);
    retained_on(&mut c, 1, topic, 0, control)
        .into_iter()
        .map(|p| p.payload)
        .collect()
}

/// Attack: retained messages beyond the budgets. With
/// --max-retained-bytes 8192 (4096 per shard) a message that does not fit
/// is not stored (counted) while a replacement that fits is; with
/// --max-retained 6 (3 per shard) a 4th topic is not stored (counted) while
/// replacing a stored one works.
#[test]
fn retained_beyond_the_budgets_is_not_stored() {
    let broker = start(&["--max-retained-bytes", "8192", "--max-retained", "6"]);
    let addr = broker.local_addr();
    let mut canary = Canary::connect(addr, "ret");
    // Publishers on the owner shards: the store is updated before PUBACK.
    let mut p0 = client(addr, &id_on_shard("ret-pub-", 0), false);
    let mut p1 = client(addr, &id_on_shard("ret-pub-", 1), false);
    let retain = |c: &mut RawClient, topic: &str, payload: &[u8], id: u16| {
        c.send(&publish_packet(topic, payload, 1, id, true, false))
            .expect("send PUBLISH");
        let p = c.expect_packet(PROMPT, "PUBACK");
        assert_eq!(p.ack(PUBACK), (id, 0));
    };

    // Bytes, on shard 0: two of 1500 fit in 4096, a third does not.
    let x = topics_on_shard("retb/", 0, 3);
    retain(&mut p0, &x[0], &[b'a'; 1500], 1);
    retain(&mut p0, &x[1], &[b'b'; 1500], 2);
    retain(&mut p0, &x[2], &[b'c'; 1500], 3);
    wait_stats(&broker, "third not stored", |s| {
        s.retained_bytes_dropped == 1
    });
    assert!(retained_payloads(addr, "ret-s1", &x[2], &x[0]).is_empty());
    // A replacement that fits is stored; one that does not is refused and
    // the old message stays.
    retain(&mut p0, &x[0], &[b'A'; 1400], 4);
    assert_eq!(
        retained_payloads(addr, "ret-s2", &x[0], &x[1]),
        [vec![b'A'; 1400]]
    );
    retain(&mut p0, &x[0], &[b'Z'; 3000], 5);
    wait_stats(&broker, "too big a replacement", |s| {
        s.retained_bytes_dropped == 2
    });
    assert_eq!(
        retained_payloads(addr, "ret-s3", &x[0], &x[1]),
        [vec![b'A'; 1400]]
    );
    // Clearing one makes room.
    retain(&mut p0, &x[1], b"", 6);
    retain(&mut p0, &x[2], &[b'c'; 1500], 7);
    assert_eq!(
        retained_payloads(addr, "ret-s4", &x[2], &x[0]),
        [vec![b'c'; 1500]]
    );
    canary.round_trip("after the byte budget");

    // Count, on shard 1: three topics, not a fourth.
    let y = topics_on_shard("retn/", 1, 4);
    for (i, t) in y.iter().enumerate() {
        retain(&mut p1, t, format!("y{i}").as_bytes(), 10 + i as u16);
    }
    let s = wait_stats(&broker, "fourth topic not stored", |s| {
        s.retained_dropped == 1
    });
    assert_eq!(s.retained_bytes_dropped, 2, "{s:?}");
    assert!(retained_payloads(addr, "ret-s5", &y[3], &y[0]).is_empty());
    retain(&mut p1, &y[0], b"y0 again", 20);
    assert_eq!(
        retained_payloads(addr, "ret-s6", &y[0], &y[1]),
        [b"y0 again".to_vec()]
    );
    assert_eq!(broker.stats().retained_dropped, 1);
    canary.round_trip("at the end");
}

// ---------------------------------------------------------------------------
// 10-13. Connection storms
// ---------------------------------------------------------------------------

/// Attack: bursts of 50 CONNECTs with --max-connect-rate 5 (per shard,
/// with a burst of 1). The excess v5 CONNECTs get CONNACK 0x9F and the v3
/// ones are closed without a CONNACK, all counted; what is accepted stays
/// within the rate; later CONNECTs are accepted again.
#[test]
fn connect_bursts_beyond_the_rate_are_refused() {
    let broker = start(&["--max-connect-rate", "5"]);
    let addr = broker.local_addr();
    let mut canary = Canary::connect(addr, "rate");

    for v5 in [true, false] {
        let before = broker.stats().connects_rate_limited;
        let began = Instant::now();
        let mut clients: Vec<RawClient> = (0..50)
            .map(|_| {
                let mut c = RawClient::open(addr);
                c.v5 = v5;
                c
            })
            .collect();
        for (i, c) in clients.iter_mut().enumerate() {
            let opts = if v5 {
                ConnectOpts::v5(&format!("rate5-{i}"))
            } else {
                ConnectOpts::v3(&format!("rate3-{i}"))
            };
            c.send(&opts.encode()).expect("send CONNECT");
        }
        let (mut accepted, mut refused) = (0u64, 0u64);
        for c in &mut clients {
            match c.read_packet(PROMPT) {
                Ok(p) => {
                    let code = p.connack(v5).code;
                    if code == 0 {
                        accepted += 1;
                    } else {
                        assert!(v5, "v3: refused without a CONNACK, got {p:?}");
                        assert_eq!(code, 0x9F, "connection rate exceeded");
                        c.expect_closed(PROMPT, "after CONNACK 0x9F");
                        refused += 1;
                    }
                }
                Err(ReadError::Closed) => {
                    assert!(!v5, "v5 gets CONNACK 0x9F before the close");
                    refused += 1;
                }
                Err(e) => panic!("reading CONNACK: {e:?}"),
            }
        }
        let elapsed = began.elapsed().as_secs_f64();
        assert_eq!(accepted + refused, 50);
        assert!(refused > 0, "a burst of 50 at 5/s is refused in part");
        // A bucket of 1 per shard plus 5 per second per shard: an upper
        // bound that only grows on a slower machine.
        let bound = SHARDS as f64 * (1.0 + 5.0 * elapsed) + 1.0;
        assert!(
            accepted as f64 <= bound,
            "{accepted} accepted in {elapsed:.2} s, at most {bound:.1} allowed"
        );
        wait_stats(&broker, "refusals counted", |s| {
            s.connects_rate_limited == before + refused
        });
        canary.round_trip("after a connect burst");
    }

    // The rate refills: a later CONNECT gets in.
    let deadline = Instant::now() + ATTACK;
    let mut attempt = 0;
    loop {
        let (mut c, ack) = RawClient::connect(addr, &ConnectOpts::v5(&format!("late-{attempt}")));
        if ack.code == 0 {
            c.ping();
            break;
        }
        assert_eq!(ack.code, 0x9F);
        attempt += 1;
        assert!(Instant::now() < deadline, "no CONNECT accepted again");
    }
    canary.round_trip("at the end");
}

/// Attack: many connections from one address. With
/// --max-connections-per-ip 5 the 6th from 127.0.0.1 is closed at accept
/// (counted) while another address still connects; once one of the five
/// closes, a new one is admitted.
#[test]
fn connections_per_ip_beyond_the_limit_are_closed_at_accept() {
    let broker = start(&["--max-connections-per-ip", "5"]);
    let addr = broker.local_addr();
    // The canary connects from 127.0.0.2: its own address, its own count.
    let mut canary = Canary::connect(addr, "perip");
    let mut five: Vec<RawClient> = (0..5)
        .map(|i| client(addr, &format!("perip-{i}"), i % 2 == 0))
        .collect();

    let mut sixth = RawClient::open(addr);
    // The broker may close before it reads the CONNECT.
    let _ = sixth.send(&ConnectOpts::v3("perip-6").encode());
    let got = sixth.expect_closed(PROMPT, "6th connection from 127.0.0.1");
    assert!(got.is_empty(), "closed at accept, no CONNACK: {got:?}");
    wait_stats(&broker, "refusal counted", |s| {
        s.connects_per_ip_refused == 1
    });
    canary.round_trip("after a refused connection");
    let mut other = RawClient::open_from(addr, Ipv4Addr::new(127, 0, 0, 3), None);
    other
        .send(&ConnectOpts::v3("perip-other").encode())
        .expect("CONNECT");
    assert_eq!(
        other.expect_packet(PROMPT, "CONNACK").connack(false).code,
        0
    );
    other.ping();
    for c in &mut five {
        c.ping();
    }

    drop(five.remove(0));
    let deadline = Instant::now() + ATTACK;
    let mut admitted = loop {
        assert!(
            Instant::now() < deadline,
            "no room after a close: {:?}",
            broker.stats()
        );
        let mut c = RawClient::open(addr);
        let _ = c.send(&ConnectOpts::v3("perip-again").encode());
        match c.read_packet(PROMPT) {
            Ok(p) => {
                assert_eq!(p.connack(false).code, 0);
                break c;
            }
            Err(ReadError::Closed) => {}
            Err(e) => panic!("{e:?}"),
        }
    };
    admitted.ping();
    let s = broker.stats();
    assert_eq!(
        s.connections,
        5 + 1 + SHARDS as u64,
        "five from 127.0.0.1, one from 127.0.0.3 and the canary: {s:?}"
    );
    canary.round_trip("at the end");
}

/// Attack: sockets that connect and never send CONNECT. With
/// --max-pending-connects 3 (per shard) the ones beyond are closed at once
/// (counted); after the pending ones complete their CONNECT new sockets are
/// admitted again.
#[test]
fn pending_connects_beyond_the_limit_are_closed_at_once() {
    let broker = start(&[
        "--max-pending-connects",
        "3",
        "--connect-timeout-ms",
        "60000",
    ]);
    let addr = broker.local_addr();
    let mut canary = Canary::connect(addr, "pending");
    let canaries = SHARDS as u64;

    let mut silent: Vec<Option<RawClient>> = (0..20).map(|_| Some(RawClient::open(addr))).collect();
    // Each shard admits at most 3 of the 20 (the kernel spreads accepts).
    let s = wait_stats(&broker, "every socket admitted or refused", |s| {
        s.pending_connects_refused + s.connections - canaries == 20
    });
    let refused = s.pending_connects_refused as usize;
    assert!(
        refused >= 20 - 3 * SHARDS,
        "at most 3 per shard admitted: {s:?}"
    );
    // The refused ones see the close at once; find them.
    let mut closed = 0;
    let found = poll_until(PROMPT, || {
        for slot in silent.iter_mut() {
            if slot
                .as_mut()
                .is_some_and(|c| c.closed_within(Duration::from_millis(1)))
            {
                *slot = None;
                closed += 1;
            }
        }
        closed == refused
    });
    assert!(found, "{closed} of {refused} refused sockets saw the close");
    canary.round_trip("after refused sockets");

    // The admitted ones complete their CONNECT and are pending no more.
    let mut admitted: Vec<RawClient> = silent.into_iter().flatten().collect();
    assert_eq!(admitted.len(), 20 - refused);
    for (i, c) in admitted.iter_mut().enumerate() {
        c.send(&ConnectOpts::v3(&format!("pending-{i}")).encode())
            .expect("CONNECT");
        assert_eq!(c.expect_packet(PROMPT, "CONNACK").connack(false).code, 0);
    }
    // Three new silent sockets: room for them on any shard.
    let mut more: Vec<RawClient> = (0..3).map(|_| RawClient::open(addr)).collect();
    let open = canaries + admitted.len() as u64 + 3;
    let s = wait_stats(&broker, "three new sockets admitted", |s| {
        s.connections == open
    });
    assert_eq!(s.pending_connects_refused as usize, refused, "{s:?}");
    for (i, c) in more.iter_mut().enumerate() {
        c.send(&ConnectOpts::v3(&format!("pending-more-{i}")).encode())
            .expect("CONNECT");
        assert_eq!(c.expect_packet(PROMPT, "CONNACK").connack(false).code, 0);
    }
    canary.round_trip("at the end");
}

/// Two clients fight over one id: each connects and takes the other over.
/// The first 3 take-overs are allowed; afterwards the newcomer is refused
/// and closed while the holder stays. Answers the holder.
fn fight(addr: SocketAddr, id: &str, v5: bool) -> RawClient {
    let opts = if v5 {
        ConnectOpts::v5(id)
    } else {
        ConnectOpts::v3(id)
    };
    let (mut holder, _) = RawClient::connected(addr, &opts);
    for round in 1..=3 {
        let (newcomer, ack) = RawClient::connect(addr, &opts);
        assert_eq!(ack.code, 0, "take-over {round} of {id} is allowed: {ack:?}");
        let got = holder.expect_closed(PROMPT, "taken over");
        if v5 {
            assert!(
                got.iter().any(|p| p.is_disconnect(0x8E)),
                "DISCONNECT 0x8E (session taken over): {got:?}"
            );
        }
        holder = newcomer;
    }
    for attempt in 1..=2 {
        let (mut refused, ack) = RawClient::connect(addr, &opts);
        let want = if v5 { 0x9F } else { 0x03 };
        assert_eq!(
            ack.code, want,
            "newcomer {attempt} after 3 take-overs of {id}: {ack:?}"
        );
        refused.expect_closed(PROMPT, "refused newcomer");
        holder.ping();
    }
    holder
}

/// Attack: a take-over fight (two devices sharing a client id reconnect in
/// a loop). With --takeover-limit 3 --takeover-window-secs 30, after 3
/// take-overs the newcomer gets CONNACK 0x9F (v5) / 0x03 (v3), counted,
/// and exactly one connection for the id stays live.
#[test]
fn takeover_fight_is_stopped_after_the_limit() {
    let broker = start(&["--takeover-limit", "3", "--takeover-window-secs", "30"]);
    let addr = broker.local_addr();
    let mut canary = Canary::connect(addr, "fight");
    let mut v5 = fight(addr, &id_on_shard("fight5-", 0), true);
    let mut v3 = fight(addr, &id_on_shard("fight3-", 1), false);
    let s = wait_stats(&broker, "the fights counted", |s| {
        s.takeovers_refused == 4 && s.connections == SHARDS as u64 + 2
    });
    assert_eq!(s.takeovers, 6, "{s:?}");
    assert_eq!(s.sessions, SHARDS as u64 + 2, "one session per id: {s:?}");
    v5.ping();
    v3.ping();
    canary.round_trip("at the end");
}

// ---------------------------------------------------------------------------
// 14. Will storm
// ---------------------------------------------------------------------------

/// `n` clients (v3.1.1 and v5 alternating) with QoS 1 wills on
/// `storm/<prefix>/<i>` and keep-alive 1 connect, send a last PINGREQ all
/// at once and go silent, staying connected (they neither read nor write
/// again: only keep-alive can notice). Waits until the watcher has every
/// will once, running canary round trips all along. Answers the stats and
/// how many round trips completed while wills were being published.
fn will_storm(broker: &Broker, canary: &mut Canary, prefix: &str, n: usize) -> (Stats, usize) {
    let addr = broker.local_addr();
    let mut watcher = Receiver::new(client(addr, &format!("{prefix}-watcher"), true));
    let filter = format!("storm/{prefix}/#");
    assert_eq!(watcher.raw.subscribe(1, &[(&filter, 1)]), [1]);
    let opts: Vec<ConnectOpts> = (0..n)
        .map(|i| {
            let mut will = WillOpts::new(&format!("storm/{prefix}/{i}"), "gone");
            will.qos = 1;
            let id = format!("{prefix}-{i}");
            let opts = if i % 2 == 0 {
                ConnectOpts::v3(&id)
            } else {
                ConnectOpts::v5(&id)
            };
            opts.keep_alive(1).will(will)
        })
        .collect();
    let mut clients = connect_all(addr, &opts);
    // The last packet of each: a PINGREQ, all at once. Their PINGRESPs are
    // never read.
    for c in &mut clients {
        c.send(&PINGREQ_BYTES).expect("PINGREQ");
    }
    let mut wills = std::collections::BTreeSet::new();
    let mut during_storm = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while wills.len() < n {
        assert!(
            Instant::now() < deadline,
            "{} of {n} wills delivered: {:?}",
            wills.len(),
            broker.stats()
        );
        // Wills for a slice of time, then a canary round trip: the storm
        // goes on while the canary runs.
        let slice = Instant::now() + Duration::from_millis(100);
        while Instant::now() < slice && wills.len() < n {
            if let Some(p) = watcher.try_next(Duration::from_millis(20)) {
                assert_eq!(p.payload, b"gone", "{p:?}");
                assert!(wills.insert(p.topic.clone()), "will twice: {p:?}");
            }
        }
        let published = broker.stats().wills_published;
        canary.round_trip("during the will storm");
        if published > 0 && (published as usize) < n {
            during_storm += 1;
        }
    }
    drop(clients);
    (broker.stats(), during_storm)
}

/// Attack: 300 clients with wills and keep-alive 1 go silent at once (they
/// stay connected; only keep-alive can notice). With --will-rate 50 (per
/// shard) the expiries wait their turn (`timers_deferred`), every will
/// still reaches the watcher once, and the canary's round trips keep
/// completing during the storm.
#[test]
fn will_storm_is_paced_and_every_will_delivered() {
    let broker = start(&["--will-rate", "50"]);
    let mut canary = Canary::connect(broker.local_addr(), "storm");
    let n = 300;
    let (s, during_storm) = will_storm(&broker, &mut canary, "storm", n);
    assert_eq!(s.wills_published, n as u64, "{s:?}");
    assert_eq!(s.keepalive_expired, n as u64, "{s:?}");
    assert!(
        s.timers_deferred > 0,
        "expiries waited for --will-rate: {s:?}"
    );
    assert!(
        during_storm > 0,
        "no canary round trip while the wills were being published"
    );
    canary.round_trip("at the end");
}

/// Attack: a smaller will storm (60 clients, --will-rate 20 per shard, so
/// the last wills go out more than a second after their keep-alive
/// deadline): the expiries that waited, and so their wills, must be
/// counted as late (`timers_late`, `timer_lateness_ms`).
#[test]
fn will_storm_counts_late_wills() {
    let broker = start(&["--will-rate", "20"]);
    let mut canary = Canary::connect(broker.local_addr(), "late");
    let n = 60;
    let (s, _) = will_storm(&broker, &mut canary, "late", n);
    assert_eq!(s.wills_published, n as u64, "{s:?}");
    assert!(
        s.timers_deferred > 0,
        "expiries waited for --will-rate: {s:?}"
    );
    assert!(
        s.timers_late > 0 && s.timer_lateness_ms > 0,
        "late wills counted: {s:?}"
    );
}

// ---------------------------------------------------------------------------
// 15. Outbound topic aliases
// ---------------------------------------------------------------------------

/// Attack: a v5 subscriber offering Topic Alias Maximum 100 (so that the
/// broker would keep up to 100 topic names for it) with
/// --max-topic-aliases-out 2: it receives aliases 1 and 2 only; other
/// topics come in full, without an alias.
#[test]
fn outbound_topic_aliases_are_capped() {
    let broker = start(&["--max-topic-aliases-out", "2"]);
    let addr = broker.local_addr();
    let mut canary = Canary::connect(addr, "alias");
    let mut opts = ConnectOpts::v5("alias-sub");
    opts.extra_props = u16_prop(PROP_TOPIC_ALIAS_MAXIMUM, 100);
    let (mut sub, _) = RawClient::connected(addr, &opts);
    assert_eq!(sub.subscribe(1, &[("alias/#", 0)]), [0]);
    let mut publisher = client(addr, "alias-pub", false);
    let topics: Vec<String> = (1..=5).map(|i| format!("alias/{i}")).collect();
    let mut by_alias = std::collections::BTreeMap::new();
    for round in 0..2 {
        for t in &topics {
            publisher.publish0(t, format!("{t} {round}").as_bytes());
        }
        for t in &topics {
            let p = sub.expect_publish(PROMPT);
            assert_eq!(p.payload, format!("{t} {round}").as_bytes(), "{p:?}");
            match p.props.int(PROP_TOPIC_ALIAS) {
                Some(alias) => {
                    assert!((1..=2).contains(&alias), "alias {alias} beyond 2: {p:?}");
                    let known = by_alias.entry(alias).or_insert_with(|| t.clone());
                    assert_eq!(known, t, "alias {alias} names another topic");
                    assert!(p.topic.is_empty() || p.topic == *t, "{p:?}");
                    if round == 0 {
                        assert_eq!(p.topic, *t, "first use carries the topic");
                    }
                }
                None => assert_eq!(p.topic, *t, "no alias: the topic in full"),
            }
        }
    }
    assert_eq!(by_alias.len(), 2, "both aliases used: {by_alias:?}");
    sub.ping();
    canary.round_trip("at the end");
}

// ---------------------------------------------------------------------------
// 16. Repeated wildcard SUBSCRIBEs (retained query amplification)
// ---------------------------------------------------------------------------

/// Attack: a client on shard 0 sends 300 SUBSCRIBEs of `#` in one write
/// while shard 1 holds retained messages: each one asks shard 1 for its
/// whole share of the store. The connection is not read while it has too
/// many queries unanswered (`retained_query_waits`), yet every SUBACK and
/// every retained copy still arrives, and the canary keeps its round trips.
#[test]
fn repeated_wildcard_subscribes_wait_for_their_retained_answers() {
    const SUBSCRIBES: u16 = 300;
    let broker = start(&[]);
    let addr = broker.local_addr();
    let mut canary = Canary::connect(addr, "amp");
    let mut publisher = client(addr, &id_on_shard("amp-pub-", 1), false);
    let topics = topics_on_shard("amp/", 1, 3);
    for (i, t) in topics.iter().enumerate() {
        publisher
            .send(&publish_packet(t, b"kept", 1, i as u16 + 1, true, false))
            .expect("send PUBLISH");
        let p = publisher.expect_packet(PROMPT, "PUBACK");
        assert_eq!(p.kind, PUBACK, "{p:?}");
    }
    let mut greedy = client(addr, &id_on_shard("amp-sub-", 0), false);
    let mut burst = Vec::new();
    for id in 1..=SUBSCRIBES {
        burst.extend_from_slice(&subscribe_packet(id, &[("amp/#", 0)], false));
    }
    greedy.send(&burst).expect("send the SUBSCRIBEs");
    let (mut subacks, mut retained) = (0u16, 0usize);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while subacks < SUBSCRIBES || retained < 3 * SUBSCRIBES as usize {
        assert!(
            std::time::Instant::now() < deadline,
            "{subacks} SUBACKs and {retained} retained copies; {:?}",
            broker.stats()
        );
        let p = greedy.expect_packet(PROMPT, "SUBACK or PUBLISH");
        match p.kind {
            SUBACK => subacks += 1,
            PUBLISH => retained += 1,
            other => panic!("unexpected packet {other:#x}: {p:?}"),
        }
    }
    let s = broker.stats();
    assert!(s.retained_query_waits > 0, "the connection waited: {s:?}");
    canary.round_trip("after the amplification");
}
