//! The [`Packet`] enum, its [`PacketType`], the fixed header and the
//! top-level [`decode`] / [`decode_buf`] / [`frame_len`] entry points.

use bytes::{Bytes, BytesMut};

use crate::{
    Auth, ConnAck, Connect, DecodeError, Disconnect, EncodeError, Limits, ProtocolVersion, PubAck,
    PubComp, PubRec, PubRel, Publish, SubAck, Subscribe, UnsubAck, Unsubscribe,
};

/// MQTT control packet type (the high nibble of the first byte).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PacketType {
    /// 1 CONNECT.
    Connect = 1,
    /// 2 CONNACK.
    ConnAck,
    /// 3 PUBLISH.
    Publish,
    /// 4 PUBACK.
    PubAck,
    /// 5 PUBREC.
    PubRec,
    /// 6 PUBREL.
    PubRel,
    /// 7 PUBCOMP.
    PubComp,
    /// 8 SUBSCRIBE.
    Subscribe,
    /// 9 SUBACK.
    SubAck,
    /// 10 UNSUBSCRIBE.
    Unsubscribe,
    /// 11 UNSUBACK.
    UnsubAck,
    /// 12 PINGREQ.
    PingReq,
    /// 13 PINGRESP.
    PingResp,
    /// 14 DISCONNECT.
    Disconnect,
    /// 15 AUTH (v5 only).
    Auth,
}

/// One MQTT control packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Packet {
    /// CONNECT (boxed: it is large and rare).
    Connect(Box<Connect>),
    /// CONNACK.
    ConnAck(ConnAck),
    /// PUBLISH.
    Publish(Publish),
    /// PUBACK.
    PubAck(PubAck),
    /// PUBREC.
    PubRec(PubRec),
    /// PUBREL.
    PubRel(PubRel),
    /// PUBCOMP.
    PubComp(PubComp),
    /// SUBSCRIBE.
    Subscribe(Subscribe),
    /// SUBACK.
    SubAck(SubAck),
    /// UNSUBSCRIBE.
    Unsubscribe(Unsubscribe),
    /// UNSUBACK.
    UnsubAck(UnsubAck),
    /// PINGREQ.
    PingReq,
    /// PINGRESP.
    PingResp,
    /// DISCONNECT.
    Disconnect(Disconnect),
    /// AUTH (v5 only).
    Auth(Auth),
}

impl Packet {
    /// The packet's type.
    pub fn packet_type(&self) -> PacketType {
        match self {
            Packet::Connect(_) => PacketType::Connect,
            Packet::ConnAck(_) => PacketType::ConnAck,
            Packet::Publish(_) => PacketType::Publish,
            Packet::PubAck(_) => PacketType::PubAck,
            Packet::PubRec(_) => PacketType::PubRec,
            Packet::PubRel(_) => PacketType::PubRel,
            Packet::PubComp(_) => PacketType::PubComp,
            Packet::Subscribe(_) => PacketType::Subscribe,
            Packet::SubAck(_) => PacketType::SubAck,
            Packet::Unsubscribe(_) => PacketType::Unsubscribe,
            Packet::UnsubAck(_) => PacketType::UnsubAck,
            Packet::PingReq => PacketType::PingReq,
            Packet::PingResp => PacketType::PingResp,
            Packet::Disconnect(_) => PacketType::Disconnect,
            Packet::Auth(_) => PacketType::Auth,
        }
    }

    /// Size of the whole encoded packet (fixed header included) in `version`.
    pub fn encoded_len(&self, version: ProtocolVersion) -> usize {
        let _ = version;
        unimplemented!("issue 3: in progress")
    }

    /// Append the encoded packet to `buf`.
    pub fn encode(&self, version: ProtocolVersion, buf: &mut BytesMut) -> Result<(), EncodeError> {
        let _ = (version, buf);
        unimplemented!("issue 3: in progress")
    }
}

/// Decode one packet from the front of `buf`. `Ok(None)`: need more bytes.
/// `Ok(Some((packet, consumed)))`: a whole packet and the bytes it used.
/// `version` is ignored for CONNECT (read from the packet itself).
pub fn decode(
    buf: &Bytes,
    version: ProtocolVersion,
    limits: &Limits,
) -> Result<Option<(Packet, usize)>, DecodeError> {
    let _ = (buf, version, limits);
    unimplemented!("issue 3: in progress")
}

/// Like [`decode`], for a read buffer: on success the consumed bytes are
/// split off the front of `buf` (`split_to` + `freeze`, no copy).
pub fn decode_buf(
    buf: &mut BytesMut,
    version: ProtocolVersion,
    limits: &Limits,
) -> Result<Option<Packet>, DecodeError> {
    let _ = (buf, version, limits);
    unimplemented!("issue 3: in progress")
}

/// Fixed header only: `Ok(Some(total_len))` once the fixed header is
/// complete and `total_len` (fixed header + remaining length) is within
/// `limits.max_packet_size`; `Ok(None)` need more; an error for an
/// oversized packet or a malformed remaining length.
pub fn frame_len(buf: &[u8], limits: &Limits) -> Result<Option<usize>, DecodeError> {
    let _ = (buf, limits);
    unimplemented!("issue 3: in progress")
}
