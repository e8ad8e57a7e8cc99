//! Decoding a QoS 0 v3.1.1 PUBLISH allocates nothing: topic and payload
//! are refcounted slices of the read buffer. A counting global allocator
//! checks it (this file holds a single test so nothing else allocates
//! concurrently in this binary).

use bytes::{BufMut, Bytes, BytesMut};
use ringmq_codec::{decode, decode_buf, Limits, Packet, ProtocolVersion};

#[global_allocator]
static GLOBAL: ringmq_testalloc::CountingAlloc = ringmq_testalloc::CountingAlloc;

fn publish_bytes(buf: &mut BytesMut) {
    let topic = b"sensors/room1/temperature";
    let payload = [0x5Au8; 64];
    buf.put_u8(0x30);
    buf.put_u8((2 + topic.len() + payload.len()) as u8);
    buf.put_u16(topic.len() as u16);
    buf.put_slice(topic);
    buf.put_slice(&payload);
}

#[test]
fn qos0_v311_publish_decode_does_not_allocate() {
    let limits = Limits::default();
    let v = ProtocolVersion::V3_1_1;

    // A read buffer holding many packets, already shared (as after the
    // first split of a connection's read buffer).
    let mut read_buf = BytesMut::with_capacity(64 * 1024);
    for _ in 0..101 {
        publish_bytes(&mut read_buf);
    }
    let first = decode_buf(&mut read_buf, v, &limits).unwrap().unwrap();
    assert!(matches!(first, Packet::Publish(_)));
    drop(first);

    let before = ringmq_testalloc::allocations();
    let mut decoded = 0;
    while let Some(packet) = decode_buf(&mut read_buf, v, &limits).unwrap() {
        let Packet::Publish(p) = packet else {
            panic!("not a publish")
        };
        assert_eq!(p.payload.len(), 64);
        decoded += 1;
    }
    let after = ringmq_testalloc::allocations();
    assert_eq!(decoded, 100);
    assert_eq!(after - before, 0, "decode_buf allocated");

    // `decode` on a shared Bytes.
    let mut one = BytesMut::new();
    publish_bytes(&mut one);
    let shared: Bytes = one.split().freeze();
    let _warm = shared.clone();
    let before = ringmq_testalloc::allocations();
    for _ in 0..100 {
        let (packet, used) = decode(&shared, v, &limits).unwrap().unwrap();
        assert_eq!(used, shared.len());
        drop(packet);
    }
    let after = ringmq_testalloc::allocations();
    assert_eq!(after - before, 0, "decode allocated");
}
