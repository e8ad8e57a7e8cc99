//! Criterion bench of the persistence plan's per-turn cost (README, design
//! notes): a session touched in a loop turn is written as a whole image
//! (`Session::export`, then its records encoded). Measured for a QoS 1
//! subscriber with 0, 16 and 128 messages in flight and 0 or 256 queued
//! (64-byte payloads, 16-byte topics), so the image cost per turn can be
//! set against a turn's work.
//!
//! Run: `CARGO_TARGET_DIR=/work/target-bench cargo bench --bench persist`.

use std::collections::BTreeMap;
use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ringmq_codec::{Connect, Properties, ProtocolVersion, Publish, QoS};
use ringmq_session::{negotiate, Delivery, Outbox, ServerPolicy, Session, Tick, WallClock};
use ringmq_store::StoreState;

/// A connected v5 session with Receive Maximum `inflight` that was
/// delivered `inflight + queued` QoS 1 messages.
fn session(inflight: u16, queued: usize) -> Session {
    let policy = ServerPolicy {
        max_qos: QoS::ExactlyOnce,
        max_queued_messages: 10_000,
        ..ServerPolicy::default()
    };
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
        let message = Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: Bytes::from(format!("bench/topic/{i:04}")),
            packet_id: 0,
            properties: Default::default(),
            payload: Bytes::from(vec![b'x'; 64]),
        };
        let delivery = Delivery {
            qos: QoS::AtLeastOnce,
            retain: false,
            ids: &[],
            expires_at: None,
        };
        s.deliver(&message, delivery, &policy, Tick(1), &mut out);
        let _ = out.drain().count();
    }
    s
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

criterion_group!(benches, image);
criterion_main!(benches);
