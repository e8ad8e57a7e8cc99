//! Bytes to packets: the one decode loop every I/O engine feeds.
//!
//! An engine appends what it read to a connection's `pending` bytes and
//! calls [`feed`]; every whole packet is cut out (a `Bytes` slice, no
//! copy), decoded and handed to the driver. What remains is a partial
//! packet, kept for the next read. The engine learns what to do next from
//! [`Fed`]: read more, hold the connection until the session it took over
//! is closed, close it, or hand it to the shard that owns its client id.

use std::rc::Rc;

use bytes::BytesMut;
use ringmq_codec::{
    check_first_byte, frame_len, Limits, Packet, PacketType, ProtocolVersion, ReasonCode,
};
use ringmq_session::{CloseCause, Tick};
use tracing::trace;

use ringmq_route::ShardId;

use super::apply::Core;
use super::driver::Connected;
use super::link::Link;

/// What the connection does after a feed.
pub(crate) enum Fed {
    /// Every whole packet is handled; read more.
    More,
    /// A channel to another shard is full, or the connection has too many
    /// retained queries unanswered: the rest of `pending` waits (the engine
    /// pauses the connection), so a client's input can never grow a
    /// channel's overflow by more than one packet's effects.
    Congested,
    /// A take-over: hold everything after this CONNECT (its CONNACK
    /// included) until the old link is closed (MQTT-3.1.4-3).
    WaitFor(Rc<Link>),
    /// Its password is being checked off the shard: hold the connection
    /// (not read, its bytes kept) until the shard resumes it.
    Parked,
    /// Close the connection.
    Close(CloseCause),
    /// The client id belongs to another shard: the caller sends it the
    /// socket with these bytes (the CONNECT and everything after it) and
    /// forgets the link.
    HandOff(ShardId, BytesMut),
}

/// Handles every whole packet in `pending`. `adopted` says another shard
/// handed the connection here (so it stays, whatever its client id).
pub(crate) fn feed(
    core: &mut Core,
    link: &Rc<Link>,
    pending: &mut BytesMut,
    adopted: bool,
    stamp: Tick,
) -> Fed {
    let limits = Limits {
        max_packet_size: core.shared.config.max_packet_size,
    };
    loop {
        if let Some(cause) = link.close_requested() {
            return Fed::Close(cause);
        }
        let connected = link.session.get().is_some();
        let version = link.version.get().unwrap_or(ProtocolVersion::V3_1_1);
        match pending.first() {
            None => return Fed::More,
            // MQTT-3.1.0-1: nothing but CONNECT (0x10) may come first;
            // close at once rather than wait for a frame.
            Some(&b) if !connected && b != 0x10 => {
                core.on_not_connect(link);
                continue;
            }
            // After CONNECT every first byte is checked as it arrives
            // (type and flags, MQTT-2.1.3-1), not after its body.
            Some(&b) if connected => match check_first_byte(b, version) {
                Ok(
                    PacketType::ConnAck
                    | PacketType::SubAck
                    | PacketType::UnsubAck
                    | PacketType::PingResp,
                ) => {
                    let code = ReasonCode::PROTOCOL_ERROR;
                    core.on_bad_bytes(link, code, &"packet only a server may send");
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    core.on_decode_error(link, &e);
                    continue;
                }
            },
            Some(_) => {}
        }
        let len = match frame_len(pending, &limits) {
            Ok(Some(len)) => len,
            Ok(None) => return Fed::More,
            Err(e) => {
                core.on_decode_error(link, &e);
                continue;
            }
        };
        if pending.len() < len {
            // Nothing is reserved for the length it announces: memory
            // follows the bytes that really arrive (a client announcing
            // 256 MiB and trickling costs what it sent).
            return Fed::More;
        }
        let frame = pending.split_to(len).freeze();
        let packet = match ringmq_codec::decode(&frame, version, &limits) {
            Ok(Some((packet, _))) => packet,
            // frame_len said the frame is whole; a decoder asking for more
            // means the lengths disagree: malformed.
            Ok(None) => {
                let code = ReasonCode::MALFORMED_PACKET;
                core.on_bad_bytes(link, code, &"packet length mismatch");
                continue;
            }
            Err(e) => {
                core.on_decode_error(link, &e);
                continue;
            }
        };
        if connected {
            core.on_packet(link, packet, stamp);
            if (core.outlet.is_congested() || link.retained_backlog()) && !pending.is_empty() {
                return Fed::Congested;
            }
            continue;
        }
        let Packet::Connect(connect) = packet else {
            core.on_not_connect(link);
            continue;
        };
        let owner = core.owner_of(&connect.client_id);
        if owner != core.id && !adopted {
            let mut read = BytesMut::with_capacity(frame.len() + pending.len());
            read.extend_from_slice(&frame);
            read.extend_from_slice(pending);
            trace!(owner = owner.0, "handing connection to its owner shard");
            return Fed::HandOff(owner, read);
        }
        match core.on_connect(link, *connect, stamp) {
            Connected::Done => {}
            Connected::WaitFor(old) => return Fed::WaitFor(old),
            Connected::Parked => {
                // The CONNECT goes back in front of what follows it: when
                // the verdict comes it is handled again from the start.
                let mut back = BytesMut::with_capacity(frame.len() + pending.len());
                back.extend_from_slice(&frame);
                back.extend_from_slice(pending);
                *pending = back;
                return Fed::Parked;
            }
        }
    }
}
