//! Criterion bench of the persistence plan's per-turn cost (README, design
//! notes): a session touched in a loop turn is written as a whole image
//! (`Session::export`, then its records encoded). Measured for a QoS 1
//! subscriber with 0, 16 and 128 messages in flight and 0 or 256 queued
//! (64-byte payloads, 16-byte topics), so the image cost per turn can be
//! set against a turn's work.
//!
//! `journal`: what persistence costs per message on the path it takes
//! (issue 16): a QoS 1 delivery to a connected persistent subscriber and
//! its PUBACK, with the store steps turned into records and encoded (a
//! `Queued`, a `Sent` and a `Done`), beside the same flow with
//! persistence off.
//!
//! Run: `CARGO_TARGET_DIR=/work/target-bench cargo bench --bench persist`.

use std::collections::BTreeMap;
use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ringmq_codec::{
    Connect, Packet, Properties, ProtocolVersion, PubAck, Publish, QoS, ReasonCode,
};
use ringmq_session::{negotiate, Delivery, Outbox, ServerPolicy, Session, Tick, WallClock};
use ringmq_store::{encode, StoreState};

/// A QoS 1 message of 64 bytes on `topic`.
fn message(topic: Bytes) -> Publish {
    Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic,
        packet_id: 0,
        properties: Default::default(),
        payload: Bytes::from(vec![b'x'; 64]),
    }
}

/// How every message reaches the subscriber: QoS 1, nothing else.
const DELIVERY: Delivery<'static> = Delivery {
    qos: QoS::AtLeastOnce,
    retain: false,
    ids: &[],
    expires_at: None,
};

/// A connected v5 session with Receive Maximum `inflight` that was
/// delivered `inflight + queued` QoS 1 messages.
fn session(inflight: u16, queued: usize) -> Session {
    session_under(inflight, queued, false).0
}

/// The policy of [`session`], with persistence on or off.
fn policy(persistence: bool) -> ServerPolicy {
    ServerPolicy {
        max_qos: QoS::ExactlyOnce,
        max_queued_messages: 10_000,
        persistence,
        ..ServerPolicy::default()
    }
}

/// [`session`] under [`policy`]`(persistence)`, with the policy.
fn session_under(inflight: u16, queued: usize, persistence: bool) -> (Session, ServerPolicy) {
    let policy = policy(persistence);
    let props = Properties {
        session_expiry_interval: Some(3600),
        receive_maximum: Some(inflight.max(1)),
        ..Properties::default()
    };
    let connect = Connect {
        protocol: ProtocolVersion::V5,
        clean_start: false,
        keep_alive: 60,
        client_id: Bytes::from_static(b"bench-subscriber"),
        will: None,
        username: None,
        password: None,
        properties: props,
    };
    let negotiated = negotiate(&connect, &policy).expect("accepted");
    let mut s = Session::new(connect.client_id.clone(), ProtocolVersion::V5);
    let mut out = Outbox::new();
    s.connect(&connect, &negotiated, &policy, None, Tick(0), &mut out);
    let total = usize::from(inflight) + queued;
    for i in 0..total {
        let message = message(Bytes::from(format!("bench/topic/{i:04}")));
        s.deliver(&message, DELIVERY, &policy, Tick(1), &mut out);
        let _ = out.drain().count();
        let _ = out.steps().count();
    }
    (s, policy)
}

fn journal(c: &mut Criterion) {
    let clock = WallClock {
        unix_ms_at_epoch: 1_700_000_000_000,
    };
    let mut group = c.benchmark_group("QoS 1 delivery + PUBACK");
    for persistence in [false, true] {
        let (mut s, policy) = session_under(64, 0, persistence);
        let mut out = Outbox::new();
        let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
        // 64 in flight: each PUBACK frees the slot the next delivery takes.
        let mut next_ack = 1u16;
        let message = message(Bytes::from_static(b"bench/topic/0000"));
        let name = if persistence {
            "persistent, records encoded"
        } else {
            "persistence off"
        };
        group.bench_function(name, |b| {
            b.iter(|| {
                let ack = Packet::PubAck(PubAck {
                    packet_id: next_ack,
                    code: ReasonCode::SUCCESS,
                    properties: Properties::default(),
                });
                next_ack = if next_ack == u16::MAX {
                    1
                } else {
                    next_ack + 1
                };
                s.handle_packet(ack, &policy, Tick(2), &mut out);
                s.deliver(black_box(&message), DELIVERY, &policy, Tick(2), &mut out);
                for step in out.steps() {
                    s.store_events(step, &clock, |e| encode(&e, &mut buf));
                }
                let n = out.drain().count();
                if buf.len() > (1 << 19) {
                    buf.clear();
                }
                black_box(n)
            })
        });
    }
    group.finish();
}

fn image(c: &mut Criterion) {
    let clock = WallClock {
        unix_ms_at_epoch: 1_700_000_000_000,
    };
    let mut group = c.benchmark_group("session image (export + encode)");
    for (inflight, queued) in [(0u16, 0usize), (16, 0), (128, 0), (128, 256)] {
        let s = session(inflight, queued);
        let id = s.client_id().clone();
        let mut buf = Vec::with_capacity(64 * 1024);
        group.bench_function(
            BenchmarkId::from_parameter(format!("{inflight} in flight, {queued} queued")),
            |b| {
                b.iter(|| {
                    buf.clear();
                    let state = black_box(&s).export(Tick(2), &clock);
                    let one = StoreState {
                        sessions: BTreeMap::from([(id.clone(), state)]),
                        retained: BTreeMap::new(),
                    };
                    one.snapshot(&mut buf);
                    black_box(buf.len())
                })
            },
        );
        buf.clear();
        let state = s.export(Tick(2), &clock);
        StoreState {
            sessions: BTreeMap::from([(id.clone(), state)]),
            retained: BTreeMap::new(),
        }
        .snapshot(&mut buf);
        eprintln!(
            "{inflight} in flight, {queued} queued: image of {} bytes",
            buf.len()
        );
    }
    group.finish();
}

criterion_group!(benches, image, journal);
criterion_main!(benches);
