//! Codec micro-benchmarks: decode and encode of the packets on the hot
//! path (QoS 0 PUBLISH in v3.1.1 with 64 B and 1 KiB payloads, a QoS 1 v5
//! PUBLISH with properties) and a v5 CONNECT with a will.
//!
//! Decode timings include dropping the packet (its refcounted slices);
//! the packet is read by reference, not copied out (`Publish` is 472
//! bytes, so `black_box` of the whole result would time a memcpy).
//!
//! Run: `cargo bench --bench codec -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ringmq_codec::{
    decode, Connect, Limits, Packet, Properties, ProtocolVersion, Publish, QoS, Will,
};

fn qos0_publish(payload_len: usize) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: Bytes::from_static(b"sensors/building-7/floor-3/room-12/temperature"),
        packet_id: 0,
        properties: Properties::default().into(),
        payload: Bytes::from(vec![0x5A; payload_len]),
    })
}

fn qos1_v5_publish() -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: Bytes::from_static(b"sensors/building-7/floor-3/room-12/temperature"),
        packet_id: 4242,
        properties: Properties {
            message_expiry_interval: Some(3600),
            content_type: Some(Bytes::from_static(b"application/json")),
            user_properties: vec![
                (
                    Bytes::from_static(b"trace-id"),
                    Bytes::from_static(b"4bf92f3577b34da6"),
                ),
                (Bytes::from_static(b"tenant"), Bytes::from_static(b"acme")),
            ],
            ..Properties::default()
        }
        .into(),
        payload: Bytes::from(vec![0x5A; 64]),
    })
}

fn v5_connect() -> Packet {
    Packet::Connect(Box::new(Connect {
        protocol: ProtocolVersion::V5,
        clean_start: false,
        keep_alive: 60,
        client_id: Bytes::from_static(b"device-0001-abcdef"),
        will: Some(Will {
            topic: Bytes::from_static(b"devices/device-0001-abcdef/status"),
            payload: Bytes::from_static(b"offline"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: Properties {
                will_delay_interval: Some(30),
                message_expiry_interval: Some(600),
                ..Properties::default()
            },
        }),
        username: Some(Bytes::from_static(b"device-0001")),
        password: Some(Bytes::from_static(b"s3cr3t-t0k3n")),
        properties: Properties {
            session_expiry_interval: Some(86_400),
            receive_maximum: Some(32),
            maximum_packet_size: Some(1 << 20),
            topic_alias_maximum: Some(16),
            ..Properties::default()
        },
    }))
}

/// The packet's bytes as a shared `Bytes`, as `decode_buf` hands them out.
fn shared_bytes(packet: &Packet, version: ProtocolVersion) -> Bytes {
    let mut buf = BytesMut::new();
    packet
        .encode(version, &mut buf)
        .expect("bench packets encode");
    let bytes = buf.split().freeze();
    // Slicing a shared Bytes only bumps its refcount.
    drop(bytes.clone());
    bytes
}

fn bench(c: &mut Criterion) {
    let cases = [
        (
            "publish_qos0_64B_v311",
            qos0_publish(64),
            ProtocolVersion::V3_1_1,
        ),
        (
            "publish_qos0_1KiB_v311",
            qos0_publish(1024),
            ProtocolVersion::V3_1_1,
        ),
        (
            "publish_qos1_props_v5",
            qos1_v5_publish(),
            ProtocolVersion::V5,
        ),
        ("connect_will_v5", v5_connect(), ProtocolVersion::V5),
    ];
    let limits = Limits::default();

    let mut group = c.benchmark_group("decode");
    for (name, packet, version) in &cases {
        let bytes = shared_bytes(packet, *version);
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_function(*name, |b| {
            b.iter(|| match decode(black_box(&bytes), *version, &limits) {
                // Inspect the packet where it was built (as a caller
                // matching on it does) and drop it: both are timed.
                Ok(Some((packet, used))) => black_box((&packet, used)).1,
                other => panic!("bench packet failed to decode: {other:?}"),
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("encode");
    for (name, packet, version) in &cases {
        let mut buf = BytesMut::with_capacity(4096);
        group.throughput(Throughput::Bytes(packet.encoded_len(*version) as u64));
        group.bench_function(*name, |b| {
            b.iter(|| {
                buf.clear();
                black_box(packet)
                    .encode(*version, &mut buf)
                    .expect("bench packets encode");
                black_box(buf.len())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
