//! Black-box tests of a shard's network I/O layer (accept, receive into
//! the shard's provided read buffers, send, close), engine-agnostic: they
//! only speak TCP to the broker. Bytes that arrive one at a time, packets
//! that span many small read buffers (pipelined with small ones), a peer
//! that resets mid-packet or while output is pending, a read-buffer ring
//! far smaller than the traffic, hundreds of connections closing in the
//! same turn, and a thousand PINGREQs at once on a shard with the
//! shallowest submission ring.
//!
//! Every test asserts on the bytes that come back (payloads compared byte
//! for byte), on `broker.stats()` where a counter says what happened, and
//! on other connections being served throughout. Nothing sleeps for a fixed
//! time: waits are socket reads with a deadline or `poll_until`.

mod common;

use common::*;
use std::net::SocketAddr;
use std::sync::{Arc, Barrier};
use std::thread::JoinHandle;
use std::time::Duration;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Raises the soft RLIMIT_NOFILE to the hard limit when it is below `need`
/// (each in-process connection costs two descriptors: client and broker
/// side); panics when even the hard limit is too low.
fn raise_nofile(need: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into a local we own.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    assert_eq!(rc, 0, "getrlimit: {}", std::io::Error::last_os_error());
    if lim.rlim_cur >= need {
        return;
    }
    let raised = libc::rlimit {
        // An infinite hard limit cannot be the soft limit of NOFILE
        // (fs.nr_open caps it); 1 Mi descriptors is plenty.
        rlim_cur: lim.rlim_max.min(1 << 20),
        rlim_max: lim.rlim_max,
    };
    // SAFETY: setrlimit reads one rlimit from a local we own.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) };
    assert_eq!(rc, 0, "setrlimit: {}", std::io::Error::last_os_error());
    assert!(
        raised.rlim_cur >= need,
        "this test needs {need} descriptors, the hard RLIMIT_NOFILE is {}",
        lim.rlim_max
    );
}

/// Deterministic, non-periodic bytes (xorshift32 from `seed`): a chunk
/// delivered at the wrong offset cannot compare equal.
fn pattern(seed: u32, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

/// Asserts two byte strings are equal without dumping them whole.
fn assert_same_bytes(got: &[u8], want: &[u8], what: &str) {
    if got == want {
        return;
    }
    let at = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    panic!(
        "{what}: payload differs: got {} bytes, want {}; first difference at byte {at} \
         (got {:?}, want {:?})",
        got.len(),
        want.len(),
        got.get(at..(at + 16).min(got.len())),
        want.get(at..(at + 16).min(want.len())),
    );
}

/// Opens one TCP connection per `opts`, then sends every CONNECT, then
/// reads every CONNACK (asserting success): all of them in flight at once.
fn connect_many(addr: SocketAddr, opts: &[ConnectOpts]) -> Vec<RawClient> {
    let mut clients: Vec<RawClient> = opts
        .iter()
        .map(|o| {
            let mut c = RawClient::open(addr);
            c.v5 = o.is_v5();
            c
        })
        .collect();
    for (c, o) in clients.iter_mut().zip(opts) {
        c.send(&o.encode()).expect("send CONNECT");
    }
    for (c, o) in clients.iter_mut().zip(opts) {
        let p = c.expect_packet(PROMPT, "CONNACK");
        let ack = p.connack(c.v5);
        assert_eq!(ack.code, 0, "CONNACK for {}: {ack:?}", o.client_id);
    }
    clients
}

/// One round trip through the broker for a client subscribed (QoS 0 or 1)
/// to `topic`: a PUBLISH to itself comes back intact, and a PINGREQ is
/// answered.
fn echo(c: &mut RawClient, topic: &str, n: u32) {
    let payload = format!("echo-{n}");
    c.publish0(topic, payload.as_bytes());
    let p = c.expect_publish(PROMPT);
    assert_eq!(
        (p.topic.as_str(), p.payload.as_slice()),
        (topic, payload.as_bytes()),
        "echo {n}"
    );
    c.ping();
}

/// A client subscribed to its own echo topic, on `shard`.
fn canary(addr: SocketAddr, prefix: &str, shard: usize, v5: bool) -> (RawClient, String) {
    let id = id_on_shard(prefix, shard);
    let opts = if v5 {
        ConnectOpts::v5(&id)
    } else {
        ConnectOpts::v3(&id)
    };
    let (mut c, _) = RawClient::connected(addr, &opts);
    let topic = format!("canary/{id}");
    assert_eq!(c.subscribe(1, &[(&topic, 0)]), [0]);
    (c, topic)
}

/// Reads `n` packets in whatever order they come and answers them sorted by
/// packet type.
fn read_unordered(c: &mut RawClient, n: usize, what: &str) -> Vec<RawPacket> {
    let mut got: Vec<RawPacket> = (0..n).map(|_| c.expect_packet(PROMPT, what)).collect();
    got.sort_by_key(|p| p.kind);
    got
}

// ---------------------------------------------------------------------------
// 1. Bytes arriving one at a time
// ---------------------------------------------------------------------------

#[test]
fn packets_arriving_one_byte_at_a_time() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    // A canary on each shard: the dribbling connection sits on one of
    // them (whichever accepted it, then its client id's owner), and a
    // half-read packet there must not hold anyone else up.
    let mut canaries: Vec<(RawClient, String)> = (0..SHARDS)
        .map(|s| canary(addr, "drip-canary-", s, s == 0))
        .collect();
    let mut echoes = 0;
    let mut ping_canaries = |echoes: &mut u32| {
        for (c, topic) in &mut canaries {
            *echoes += 1;
            echo(c, topic, *echoes);
        }
    };

    for (i, level) in [V5, V3].into_iter().enumerate() {
        let v5 = level == V5;
        let id = id_on_shard(&format!("drip{i}-"), i % SHARDS);
        // A will and (v5) a property make a longer CONNECT with more
        // fields to split; the connection ends with DISCONNECT, so the
        // will must not be published.
        let mut opts = ConnectOpts::v3(&id).will(WillOpts::new("drip/will", "unexpected"));
        opts.level = level;
        if v5 {
            opts.session_expiry = Some(0);
        }
        let connect = opts.encode();
        let mut c = RawClient::open(addr);
        c.v5 = v5;

        // CONNECT, one byte per write, the canaries served in between.
        let (head, last) = connect.split_at(connect.len() - 1);
        for chunk in head.chunks(8) {
            c.send_bytewise(chunk).expect("send CONNECT byte");
            ping_canaries(&mut echoes);
        }
        c.expect_silence(
            Duration::from_millis(50),
            "CONNECT incomplete: nothing may be answered yet",
        );
        c.send_bytewise(last).expect("send CONNECT byte");
        let ack = c.expect_packet(PROMPT, "CONNACK").connack(v5);
        assert_eq!(ack.code, 0, "{ack:?}");

        // SUBSCRIBE, one byte per write.
        let topic = format!("drip/{i}");
        c.send_bytewise(&subscribe_packet(1, &[(&topic, 1)], v5))
            .expect("send SUBSCRIBE");
        let (pid, codes) = c.expect_packet(PROMPT, "SUBACK").ack_codes(SUBACK, v5);
        assert_eq!((pid, codes), (1, vec![1]), "SUBACK");

        // A QoS 1 PUBLISH (two-byte remaining length), one byte per write:
        // the PUBACK and our own message come back, in either order.
        let payload = pattern(100 + i as u32, 300);
        c.send_bytewise(&publish_packet(&topic, &payload, 1, 9, false, v5))
            .expect("send PUBLISH");
        let got = read_unordered(&mut c, 2, "PUBLISH and PUBACK");
        assert_eq!(got[0].kind, PUBLISH, "{got:?}");
        assert_eq!(got[1].ack(PUBACK), (9, 0), "PUBACK");
        let p = got[0].publish(v5);
        assert_eq!((p.topic.as_str(), p.qos), (topic.as_str(), 1), "{p:?}");
        assert_same_bytes(&p.payload, &payload, "QoS 1 message sent byte by byte");
        c.send_bytewise(&puback_packet(p.packet_id))
            .expect("send PUBACK");
        ping_canaries(&mut echoes);

        // Two packets in one byte stream, the boundary between two
        // writes like every other byte: a QoS 0 PUBLISH then a PINGREQ.
        let payload = pattern(200 + i as u32, 130);
        let mut two = publish_packet(&topic, &payload, 0, 0, false, v5);
        two.extend_from_slice(&PINGREQ_BYTES);
        c.send_bytewise(&two).expect("send PUBLISH + PINGREQ");
        let got = read_unordered(&mut c, 2, "PUBLISH and PINGRESP");
        assert_eq!(
            (got[0].kind, got[1].kind, got[1].body.len()),
            (PUBLISH, PINGRESP, 0),
            "{got:?}"
        );
        assert_same_bytes(
            &got[0].publish(v5).payload,
            &payload,
            "QoS 0 message before a PINGREQ",
        );

        // A 20 000-byte payload (three-byte remaining length): the fixed
        // header, the length and the topic byte by byte, the rest in one
        // write.
        let payload = pattern(300 + i as u32, 20_000);
        let big = publish_packet(&topic, &payload, 0, 0, false, v5);
        c.send_bytewise(&big[..12]).expect("send PUBLISH head");
        c.send(&big[12..]).expect("send PUBLISH rest");
        let p = c.expect_publish(PROMPT);
        assert_same_bytes(&p.payload, &payload, "20 000-byte message, header dribbled");

        // DISCONNECT byte by byte: a normal end, so no will.
        let disconnect = if v5 {
            disconnect_v5(0)
        } else {
            DISCONNECT_V3.to_vec()
        };
        c.send_bytewise(&disconnect).expect("send DISCONNECT");
        let rest = c.expect_closed(PROMPT, "after DISCONNECT");
        assert!(rest.is_empty(), "packets after DISCONNECT: {rest:?}");
        ping_canaries(&mut echoes);
    }
    let s = wait_stats(&broker, "dribbling clients gone", |s| {
        s.connections == SHARDS as u64
    });
    assert_eq!(s.wills_published, 0, "a will after DISCONNECT: {s:?}");
    assert_eq!(s.protocol_errors, 0, "{s:?}");
    assert_eq!(s.connects, 2 + SHARDS as u64, "{s:?}");
}

// ---------------------------------------------------------------------------
// 2. Packets spanning several read buffers, pipelined with small ones
// ---------------------------------------------------------------------------

/// The payload length that makes a QoS 0 PUBLISH on `topic` exactly `wire`
/// bytes long.
fn payload_for_wire(topic: &str, v5: bool, wire: usize) -> usize {
    let fixed = 2 + topic.len() + usize::from(v5);
    (1..=4)
        .find_map(|len_bytes| {
            let remaining = wire.checked_sub(1 + len_bytes)?;
            let mut enc = Vec::new();
            put_varint(&mut enc, remaining);
            (enc.len() == len_bytes).then(|| remaining - fixed)
        })
        .expect("a payload length for the wire size")
}

#[test]
fn packets_spanning_many_small_read_buffers() {
    // Four read buffers of 1 KiB per shard: a 200 KiB packet spans 200
    // reads, and the ring is recycled fifty times over within it.
    let broker = start(&["--read-buffers", "4", "--read-buffer-kib", "1"]);
    let addr = broker.local_addr();
    // One subscriber per shard (same-shard and cross-shard delivery), v5
    // without a Maximum Packet Size, subscribed at QoS 1.
    let mut subs: Vec<RawClient> = (0..SHARDS)
        .map(|s| {
            let id = id_on_shard("span-sub-", s);
            let (mut c, _) = RawClient::connected(addr, &ConnectOpts::v5(&id));
            assert_eq!(c.subscribe(1, &[("span/#", 1)]), [1]);
            c
        })
        .collect();
    for (round, v5) in [false, true].into_iter().enumerate() {
        let id = id_on_shard(&format!("span-pub{round}-"), 0);
        let opts = if v5 {
            ConnectOpts::v5(&id)
        } else {
            ConnectOpts::v3(&id)
        };
        let (mut publisher, _) = RawClient::connected(addr, &opts);
        let topic = format!("span/{round}");

        // (qos, payload) in the order they are written.
        let mut msgs: Vec<(u8, Vec<u8>)> = Vec::new();
        for n in 0..40u32 {
            msgs.push(((n % 2) as u8, format!("before-{n}").into_bytes()));
        }
        // Packets of exactly one buffer, and one byte either side.
        for (n, wire) in [1024usize, 1024, 1023, 1025, 2048, 1024]
            .into_iter()
            .enumerate()
        {
            let len = payload_for_wire(&topic, v5, wire);
            msgs.push((0, pattern(1000 + n as u32, len)));
        }
        msgs.push((1, pattern(7 + round as u32, 200 * 1024)));
        msgs.push((0, pattern(8 + round as u32, 5000)));
        for n in 0..40u32 {
            msgs.push(((n % 2) as u8, format!("after-{n}").into_bytes()));
        }

        // Everything in one write.
        let mut batch = Vec::new();
        let mut ack_ids = Vec::new();
        for (n, (qos, payload)) in msgs.iter().enumerate() {
            let id = if *qos == 1 { n as u16 + 1 } else { 0 };
            if *qos == 1 {
                ack_ids.push(id);
            }
            batch.extend_from_slice(&publish_packet(&topic, payload, *qos, id, false, v5));
        }
        publisher.send(&batch).expect("send the batch");
        // PUBACKs in the order the PUBLISHes were sent (MQTT 4.6).
        for id in &ack_ids {
            let p = publisher.expect_packet(PROMPT, "PUBACK");
            assert_eq!(p.ack(PUBACK), (*id, 0), "PUBACK order");
        }
        publisher.ping();

        for (s, sub) in subs.iter_mut().enumerate() {
            let got: Vec<PublishInfo> = (0..msgs.len())
                .map(|_| sub.expect_publish(PROMPT))
                .collect();
            // Order is guaranteed per QoS (MQTT 4.6); compare each QoS's
            // stream separately, byte for byte.
            for qos in [0u8, 1] {
                let want: Vec<&Vec<u8>> = msgs
                    .iter()
                    .filter(|(q, _)| *q == qos)
                    .map(|(_, p)| p)
                    .collect();
                let have: Vec<&PublishInfo> = got.iter().filter(|p| p.qos == qos).collect();
                assert_eq!(
                    have.len(),
                    want.len(),
                    "round {round}, subscriber {s}: QoS {qos} messages"
                );
                for (n, (h, w)) in have.iter().zip(&want).enumerate() {
                    assert_eq!(h.topic, topic);
                    assert_same_bytes(
                        &h.payload,
                        w,
                        &format!("round {round}, subscriber {s}, QoS {qos} message {n}"),
                    );
                }
            }
            sub.ping();
        }
    }
    let s = broker.stats();
    assert_eq!(s.publishes_dropped, 0, "{s:?}");
    assert_eq!(s.protocol_errors, 0, "{s:?}");
}

// ---------------------------------------------------------------------------
// 3. A peer that resets mid-packet or with output pending
// ---------------------------------------------------------------------------

#[test]
fn peer_reset_mid_packet_is_closed_and_its_will_published() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let (mut watcher, _) =
        RawClient::connected(addr, &ConnectOpts::v3(&id_on_shard("rst-watch-", 0)));
    assert_eq!(watcher.subscribe(1, &[("rst/#", 0)]), [0]);
    let (mut canary, canary_topic) = canary(addr, "rst-canary-", 1, true);
    let open = 2u64;
    let mut echoes = 0;

    // Reset before CONNECT is complete: no session, so no will; the socket
    // must still go.
    let mut early = RawClient::open(addr);
    let connect = ConnectOpts::v5("rst-early")
        .will(WillOpts::new("rst/will/early", "never"))
        .encode();
    early
        .send(&connect[..connect.len() / 2])
        .expect("send half a CONNECT");
    wait_stats(&broker, "half-connected socket accepted", |s| {
        s.connections == open + 1
    });
    early.reset();
    wait_stats(&broker, "reset before CONNECT closed", |s| {
        s.connections == open
    });
    echo(&mut canary, &canary_topic, 0);

    for (i, level) in [V3, V5].into_iter().enumerate() {
        let v5 = level == V5;
        let mut opts = ConnectOpts::v3(&id_on_shard(&format!("rst{i}-"), i % SHARDS)).will(
            WillOpts::new(&format!("rst/will/{i}"), &format!("gone-{i}")),
        );
        opts.level = level;
        let (mut c, _) = RawClient::connected(addr, &opts);
        // A whole PUBLISH and the first half of a second one in one write.
        let whole = format!("whole-{i}");
        let mut bytes = publish_packet("rst/data", whole.as_bytes(), 0, 0, false, v5);
        let half = publish_packet("rst/data", &pattern(i as u32, 1000), 1, 7, false, v5);
        bytes.extend_from_slice(&half[..half.len() / 2]);
        c.send(&bytes).expect("send PUBLISH and a half");
        // The whole one arrives: the broker has read the write.
        let p = watcher.expect_publish(PROMPT);
        assert_eq!(
            (p.topic.as_str(), p.payload.as_slice()),
            ("rst/data", whole.as_bytes())
        );
        c.reset();
        // Connection lost without DISCONNECT: the will goes (and nothing of
        // the half PUBLISH).
        let p = watcher.expect_publish(PROMPT);
        assert_eq!(
            (p.topic.as_str(), p.payload.as_slice()),
            (
                format!("rst/will/{i}").as_str(),
                format!("gone-{i}").as_bytes()
            ),
            "the will of the reset client"
        );
        wait_stats(&broker, "reset client closed", |s| {
            s.connections == open && s.wills_published == i as u64 + 1
        });
        echoes += 1;
        echo(&mut canary, &canary_topic, echoes);
    }

    // Nothing else reached the watcher: a sentinel is the next thing.
    canary.publish0("rst/sentinel", b"s");
    let p = watcher.expect_publish(PROMPT);
    assert_eq!(p.topic, "rst/sentinel", "unexpected message: {p:?}");
    watcher.ping();
    let s = broker.stats();
    assert_eq!(s.wills_published, 2, "{s:?}");
    assert_eq!(s.publishes_in, 2 + 1 + echoes as u64 + 1, "{s:?}");
}

#[test]
fn peer_reset_with_output_pending_is_closed() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let (mut canary, canary_topic) = canary(addr, "rstout-canary-", 0, false);
    let (mut publisher, _) =
        RawClient::connected(addr, &ConnectOpts::v3(&id_on_shard("rstout-pub-", 1)));
    // A subscriber that stops reading, on either shard, then resets while
    // the broker still has megabytes to write to it.
    for (i, shard) in [0usize, 1].into_iter().enumerate() {
        let id = id_on_shard(&format!("rstout-sub{i}-"), shard);
        let opts = ConnectOpts::v5(&id).will(WillOpts::new("rstout/will", "w"));
        let (mut sub, _) = RawClient::connected(addr, &opts);
        let topic = format!("rstout/{i}");
        assert_eq!(sub.subscribe(1, &[(&topic, 1)]), [1]);
        // 8 MiB at QoS 1 (never dropped for a full output buffer): more
        // than the loopback socket buffers hold.
        let payload = pattern(i as u32, 16 * 1024);
        let mut batch = Vec::new();
        for n in 0..512u16 {
            batch.extend_from_slice(&publish_packet(&topic, &payload, 1, n + 1, false, false));
        }
        publisher.send(&batch).expect("send flood");
        for n in 0..512u16 {
            let p = publisher.expect_packet(PROMPT, "PUBACK");
            assert_eq!(p.ack(PUBACK), (n + 1, 0));
        }
        // The first delivery arrived: the subscriber's output is flowing.
        let p = sub.expect_packet(PROMPT, "first delivery");
        assert_eq!(p.kind, PUBLISH, "{p:?}");
        sub.reset();
        wait_stats(&broker, "reset subscriber closed", |s| {
            s.connections == 2 && s.wills_published == i as u64 + 1
        });
        echo(&mut canary, &canary_topic, i as u32);
    }
    publisher.ping();
    assert_serves(addr);
}

// ---------------------------------------------------------------------------
// 4. A read-buffer ring far smaller than the traffic
// ---------------------------------------------------------------------------

/// Payload of publisher `p`'s message `seq`: p, seq, then pattern bytes.
fn ring_payload(p: u32, seq: u32, len: usize) -> Vec<u8> {
    let mut out = p.to_be_bytes().to_vec();
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&pattern((p << 16) | seq, len - 8));
    out
}

/// Joins every finished thread, propagating its panic.
fn join_finished(handles: &mut Vec<JoinHandle<()>>) {
    let mut i = 0;
    while i < handles.len() {
        if handles[i].is_finished() {
            if let Err(e) = handles.swap_remove(i).join() {
                std::panic::resume_unwind(e);
            }
        } else {
            i += 1;
        }
    }
}

#[test]
fn full_read_buffer_ring_pauses_reads_and_loses_nothing() {
    const PUBLISHERS: u32 = 20;
    const MESSAGES: u32 = 500;
    const SIZE: usize = 700;
    let broker = start(&[
        "--shards",
        "1",
        "--read-buffers",
        "2",
        "--read-buffer-kib",
        "1",
        // All 10,000 messages may wait for the one subscriber's window.
        "--max-queued-messages",
        "10000",
    ]);
    let addr = broker.local_addr();
    let (mut sub, _) = Receiver::connect(addr, &ConnectOpts::v5("ring-sub"));
    assert_eq!(sub.raw.subscribe(1, &[("ring/#", 1)]), [1]);
    let (mut canary, canary_topic) = canary(addr, "ring-canary-", 0, false);

    let barrier = Arc::new(Barrier::new(PUBLISHERS as usize));
    let mut handles: Vec<JoinHandle<()>> = (0..PUBLISHERS)
        .map(|p| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let opts = ConnectOpts::v3(&format!("ring-pub-{p}"));
                let (mut c, _) = RawClient::connected(addr, &opts);
                let topic = format!("ring/{p}");
                let mut batch = Vec::new();
                for seq in 0..MESSAGES {
                    let payload = ring_payload(p, seq, SIZE);
                    let id = seq as u16 + 1;
                    batch.extend_from_slice(&publish_packet(&topic, &payload, 1, id, false, false));
                }
                // Every publisher writes its 350 KB at the same moment.
                barrier.wait();
                c.send(&batch).expect("send the batch");
                for seq in 0..MESSAGES {
                    let a = c.expect_packet(PROMPT, "PUBACK");
                    assert_eq!(a.ack(PUBACK), (seq as u16 + 1, 0), "publisher {p}");
                }
                c.ping();
            })
        })
        .collect();

    let mut next = vec![0u32; PUBLISHERS as usize];
    let total = PUBLISHERS * MESSAGES;
    for n in 0..total {
        let m = match sub.try_next(Duration::from_millis(500)) {
            Some(m) => m,
            None => {
                // A publisher that failed says why first.
                join_finished(&mut handles);
                sub.try_next(PROMPT).unwrap_or_else(|| {
                    panic!(
                        "message {n} of {total} never came; next per publisher: {next:?}; {:?}",
                        broker.stats()
                    )
                })
            }
        };
        assert_eq!(m.qos, 1, "{:?}", m.topic);
        let p = u32::from_be_bytes(m.payload[..4].try_into().unwrap());
        let seq = u32::from_be_bytes(m.payload[4..8].try_into().unwrap());
        assert!(p < PUBLISHERS, "publisher {p} in {}", m.topic);
        assert_eq!(m.topic, format!("ring/{p}"));
        assert_eq!(
            seq, next[p as usize],
            "publisher {p}: message {seq} when {} was due (lost, repeated or reordered)",
            next[p as usize]
        );
        assert_same_bytes(
            &m.payload,
            &ring_payload(p, seq, SIZE),
            &format!("publisher {p} message {seq}"),
        );
        next[p as usize] += 1;
    }
    for h in handles {
        if let Err(e) = h.join() {
            std::panic::resume_unwind(e);
        }
    }
    sub.expect_no_publish(Duration::from_millis(100), "every message came once");
    let s = broker.stats();
    assert_eq!(s.publishes_in, u64::from(total), "{s:?}");
    assert_eq!(s.publishes_out, u64::from(total), "{s:?}");
    assert_eq!(s.publishes_dropped, 0, "{s:?}");
    assert_eq!(s.protocol_errors, 0, "{s:?}");
    echo(&mut canary, &canary_topic, 1);
}

// ---------------------------------------------------------------------------
// 5. Many connections closing in the same turn
// ---------------------------------------------------------------------------

#[test]
fn hundreds_of_connections_closing_at_once() {
    raise_nofile(4096);
    let broker = start(&[]);
    let addr = broker.local_addr();

    // 300 connections, then all gone at once: even ones with FIN, odd ones
    // with RST.
    let opts: Vec<ConnectOpts> = (0..300)
        .map(|i| {
            let id = format!("mass-{i}");
            if i % 3 == 0 {
                ConnectOpts::v5(&id)
            } else {
                ConnectOpts::v3(&id)
            }
        })
        .collect();
    let clients = connect_many(addr, &opts);
    wait_stats(&broker, "300 connected", |s| {
        s.connections == 300 && s.connects == 300
    });
    for (i, c) in clients.into_iter().enumerate() {
        if i % 2 == 0 {
            drop(c);
        } else {
            c.reset();
        }
    }
    wait_stats(&broker, "all 300 closed", |s| s.connections == 0);
    let (mut c, topic) = canary(addr, "mass-after-", 0, true);
    echo(&mut c, &topic, 0);
    drop(c);
    wait_stats(&broker, "canary closed", |s| s.connections == 0);

    // 200 clients with wills (QoS 0 and 1, v3 and v5) dropped at once: the
    // watcher gets every will exactly once.
    let (mut watcher, _) = Receiver::connect(addr, &ConnectOpts::v5("mass-watch"));
    assert_eq!(watcher.raw.subscribe(1, &[("mass/will/#", 1)]), [1]);
    let opts: Vec<ConnectOpts> = (0..200)
        .map(|i| {
            let mut will = WillOpts::new(&format!("mass/will/{i}"), &format!("will-{i}"));
            will.qos = (i % 2) as u8;
            let id = format!("mass-will-{i}");
            let o = if i % 4 < 2 {
                ConnectOpts::v3(&id)
            } else {
                ConnectOpts::v5(&id)
            };
            o.will(will)
        })
        .collect();
    let clients = connect_many(addr, &opts);
    wait_stats(&broker, "200 with wills connected", |s| {
        s.connections == 201
    });
    for (i, c) in clients.into_iter().enumerate() {
        if i % 3 == 0 {
            c.reset();
        } else {
            drop(c);
        }
    }
    let mut seen = [false; 200];
    for n in 0..200 {
        let p = watcher.next(PROMPT);
        let i: usize = p
            .topic
            .strip_prefix("mass/will/")
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("unexpected topic {p:?}"));
        assert!(i < 200 && !seen[i], "will {i} twice (message {n})");
        seen[i] = true;
        assert_eq!(p.payload, format!("will-{i}").into_bytes());
        assert_eq!(p.qos, (i % 2) as u8, "will {i} QoS");
    }
    watcher.expect_no_publish(Duration::from_millis(100), "no will twice");
    let s = wait_stats(&broker, "all will clients closed", |s| {
        s.connections == 1 && s.wills_published == 200
    });
    assert_eq!(s.protocol_errors, 0, "{s:?}");
    watcher.raw.ping();
    assert_serves(addr);
}

// ---------------------------------------------------------------------------
// 6. A thousand PINGREQs at once on a shard with a 128-entry ring
// ---------------------------------------------------------------------------

#[test]
fn a_thousand_pingreqs_at_once_on_a_shallow_ring() {
    const N: usize = 1000;
    raise_nofile(2 * N as u64 + 1024);
    let broker = start(&["--shards", "1", "--ring-depth", "128"]);
    let addr = broker.local_addr();
    let opts: Vec<ConnectOpts> = (0..N)
        .map(|i| ConnectOpts::v3(&format!("ping-{i}")).keep_alive(60))
        .collect();
    let mut clients = connect_many(addr, &opts);
    wait_stats(&broker, "all connected", |s| {
        s.connections == N as u64 && s.connects == N as u64
    });
    // Round 1: one PINGREQ each; round 2: two in one write each.
    for per in [1usize, 2] {
        let bytes = PINGREQ_BYTES.repeat(per);
        for c in &mut clients {
            c.send(&bytes).expect("send PINGREQ");
        }
        for (i, c) in clients.iter_mut().enumerate() {
            for k in 0..per {
                let p = c.expect_packet(PROMPT, "PINGRESP");
                assert_eq!(
                    (p.kind, p.flags, p.body.len()),
                    (PINGRESP, 0, 0),
                    "client {i}, PINGRESP {k} of {per}: {p:?}"
                );
            }
        }
    }
    // Nothing else came, and nobody was closed.
    for (i, c) in clients.iter_mut().enumerate().step_by(97) {
        c.expect_silence(Duration::from_millis(1), &format!("client {i}"));
    }
    let s = broker.stats();
    assert_eq!(s.connections, N as u64, "{s:?}");
    assert_eq!(s.keepalive_expired + s.protocol_errors, 0, "{s:?}");
}

/// A publisher paused because a channel to another shard is full must be
/// resumed by the shard itself once that channel drains, with no other
/// event to wake it: the broker once slept without a deadline when a
/// connection resumed in a turn filled the channel again and paused.
/// The publisher floods until its writes stall (TCP back-pressure from the
/// paused reads), stops, completes its last packet, and must then get its
/// PINGRESP promptly.
#[test]
fn a_publisher_paused_by_a_full_cross_shard_channel_resumes_by_itself() {
    let broker = start(&["--inbox-capacity", "64"]);
    let addr = broker.local_addr();
    // Subscribers on shard 0 that never read: shard 0 keeps draining its
    // inbox (their QoS 0 output is bounded and dropped), slower than shard
    // 1 can fill it.
    let _sinks: Vec<RawClient> = (0..8)
        .map(|i| {
            let (mut s, _) = RawClient::connected(
                addr,
                &ConnectOpts::v3(&id_on_shard(&format!("pz-s{i}-"), 0)),
            );
            assert_eq!(s.subscribe(1, &[("pz/#", 0)]), [0]);
            s
        })
        .collect();
    let (mut publisher, _) = RawClient::connected(addr, &ConnectOpts::v3(&id_on_shard("pz-p-", 1)));
    let one = publish_packet("pz/x", &[b'p'; 64], 0, 0, false, false);
    let burst: Vec<u8> = one.iter().copied().cycle().take(one.len() * 4096).collect();
    let mut at = 0usize;
    let mut stalled = false;
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while std::time::Instant::now() < deadline {
        match publisher.write_some(&burst[at..], Duration::from_millis(100)) {
            Ok(n) => at = (at + n) % burst.len(),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                stalled = true;
                break;
            }
            Err(e) => panic!("flood: {e}"),
        }
    }
    // Finish the packet the flood stopped in; the broker must read again
    // by itself for this to complete.
    let rest = (one.len() - at % one.len()) % one.len();
    let mut written = 0;
    while written < rest {
        match publisher.write_some(&burst[at + written..at + rest], PROMPT) {
            Ok(n) => written += n,
            Err(e) => panic!("the paused publisher was never read again ({e}); stalled: {stalled}"),
        }
    }
    // Everything the kernel buffered for the publisher (megabytes, on a
    // slow debug build) is handled before the PINGRESP: the deadline says
    // "by itself", not how fast.
    publisher.send(&PINGREQ_BYTES).expect("send PINGREQ");
    let p = publisher.expect_packet(Duration::from_secs(60), "PINGRESP");
    assert_eq!(p.kind, PINGRESP, "{p:?}");
    assert!(broker.stats().publishes_in > 0);
}
