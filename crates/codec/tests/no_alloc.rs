//! Decoding a QoS 0 v3.1.1 PUBLISH allocates nothing: topic and payload
//! are refcounted slices of the read buffer. A counting global allocator
//! checks it (this file holds a single test so nothing else allocates
//! concurrently in this binary).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::{BufMut, Bytes, BytesMut};
use ringmq_codec::{decode, decode_buf, Limits, Packet, ProtocolVersion};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

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

    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let mut decoded = 0;
    while let Some(packet) = decode_buf(&mut read_buf, v, &limits).unwrap() {
        let Packet::Publish(p) = packet else {
            panic!("not a publish")
        };
        assert_eq!(p.payload.len(), 64);
        decoded += 1;
    }
    let after = ALLOCATIONS.load(Ordering::Relaxed);
    assert_eq!(decoded, 100);
    assert_eq!(after - before, 0, "decode_buf allocated");

    // `decode` on a shared Bytes.
    let mut one = BytesMut::new();
    publish_bytes(&mut one);
    let shared: Bytes = one.split().freeze();
    let _warm = shared.clone();
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..100 {
        let (packet, used) = decode(&shared, v, &limits).unwrap().unwrap();
        assert_eq!(used, shared.len());
        drop(packet);
    }
    let after = ALLOCATIONS.load(Ordering::Relaxed);
    assert_eq!(after - before, 0, "decode allocated");
}
