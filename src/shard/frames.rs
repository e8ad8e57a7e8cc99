//! Bytes to packets: the one decode loop every I/O engine feeds.
//!
//! An engine appends what it read to a connection's `pending` bytes and
//! calls [`feed`]; every whole packet is cut out (a `Bytes` slice, no
//! copy), decoded and handed to the driver. What remains is a partial
//! packet, kept for the next read. The engine learns what to do next from
//! [`Fed`]: read more, hold the connection until the session it took over
//! is closed, close it, or forget it (handed to its owner shard).

use std::os::fd::{BorrowedFd, RawFd};
use std::rc::Rc;

use bytes::BytesMut;
use ringmq_codec::{frame_len, Limits, Packet, ProtocolVersion, ReasonCode};
use ringmq_session::{CloseCause, Tick};
use tracing::trace;

use super::apply::{Adopt, Core};
use super::link::Link;

/// What the connection does after a feed.
pub(crate) enum Fed {
    /// Every whole packet is handled; read more.
    More,
    /// A take-over: hold everything after this CONNECT (its CONNACK
    /// included) until the old link is closed (MQTT-3.1.4-3).
    WaitFor(Rc<Link>),
    /// Close the connection.
    Close(CloseCause),
    /// The socket went to its owner shard (a duplicate descriptor); the
    /// caller closes its own descriptor and forgets the link.
    HandedOff,
}

/// Handles every whole packet in `pending`. `fd` is the connection's
/// socket (duplicated for a hand-off); `adopted` says another shard
/// handed it here (so it stays, whatever its client id).
pub(crate) fn feed(
    core: &mut Core,
    link: &Rc<Link>,
    pending: &mut BytesMut,
    fd: RawFd,
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
        if !connected && pending.first().is_some_and(|b| *b != 0x10) {
            // MQTT-3.1.0-1: nothing but CONNECT (0x10) may come first;
            // close at once rather than wait for a frame.
            core.on_not_connect(link);
            continue;
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
            pending.reserve(len - pending.len());
            return Fed::More;
        }
        let frame = pending.split_to(len).freeze();
        let version = link.version.get().unwrap_or(ProtocolVersion::V3_1_1);
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
            continue;
        }
        let Packet::Connect(connect) = packet else {
            core.on_not_connect(link);
            continue;
        };
        let owner = core.owner_of(&connect.client_id);
        if owner != core.id && !adopted {
            return hand_off(core, link, owner, fd, &frame, pending);
        }
        if let Some(old) = core.on_connect(link, *connect, stamp) {
            return Fed::WaitFor(old);
        }
    }
}

/// Sends the socket (a duplicate of `fd`) and every byte read so far to
/// the shard that owns the client id.
fn hand_off(
    core: &mut Core,
    link: &Link,
    owner: ringmq_route::ShardId,
    fd: RawFd,
    frame: &[u8],
    rest: &[u8],
) -> Fed {
    // SAFETY: the caller's socket is open for the whole call.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    match borrowed.try_clone_to_owned() {
        Ok(fd) => {
            let mut read = BytesMut::with_capacity(frame.len() + rest.len());
            read.extend_from_slice(frame);
            read.extend_from_slice(rest);
            trace!(owner = owner.0, "handing connection to its owner shard");
            let adopt = Adopt {
                fd,
                read: read.freeze(),
                peer: link.peer,
            };
            core.hand_off(owner, adopt);
            Fed::HandedOff
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot duplicate socket for hand-off");
            Fed::Close(CloseCause::NetworkError)
        }
    }
}
