//! One MQTT client connection over a glommio `TcpStream`: batched writes,
//! big adaptive reads and copy-free decoding through `ringmq-codec`.
//!
//! Owns: the socket, its read buffer and its write buffer. Packets are
//! encoded into the write buffer ([`Conn::queue`] or [`Conn::wbuf`]) and go
//! out in one `write` per [`Conn::flush`]. Reads land in one `BytesMut`;
//! [`Conn::next_buffered`] splits whole packets off its front without
//! copying (topics and payloads are slices of the read buffer).
//!
//! Invariants:
//! - [`Conn::fill`] is cancel-safe: glommio's unbuffered stream reads
//!   readiness-first (a non-blocking `recv`, then a poll), so dropping the
//!   future loses no bytes, and a guard trims the buffer back to the bytes
//!   actually received. Racing a read against a timer is therefore fine.
//! - The read size adapts between the [`ReadSize`] bounds: it doubles when
//!   a read fills it and halves when reads stay small, so an idle
//!   connection holds a few dozen bytes and a busy subscriber reads up to
//!   256 KiB per syscall.
//! - Peer input never panics: malformed bytes are a [`ConnError::Decode`].

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use ringmq_codec::{
    decode_buf, ConnAck, Connect, Limits, Packet, Properties, ProtocolVersion, QoS, ReasonCode,
    Subscribe, SubscriptionOptions, Will,
};

use crate::error::ConnError;

/// Bounds of a connection's adaptive read size, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadSize {
    /// Smallest read (and the starting one).
    pub min: usize,
    /// Largest read.
    pub max: usize,
}

impl ReadSize {
    /// For connections that mostly sit idle.
    pub const SMALL: ReadSize = ReadSize { min: 64, max: 4096 };
    /// For subscribers and publishers under load.
    pub const LARGE: ReadSize = ReadSize {
        min: 4096,
        max: 256 * 1024,
    };

    /// The next read size after a read of `got` bytes into `size`.
    pub fn next(&self, size: usize, got: usize) -> usize {
        if got >= size {
            (size * 2).min(self.max)
        } else if got < size / 4 {
            (size / 2).max(self.min)
        } else {
            size
        }
    }
}

/// Trims the read buffer back to the received bytes however the read ends.
struct Trim<'a> {
    buf: &'a mut BytesMut,
    keep: usize,
}

impl Drop for Trim<'_> {
    fn drop(&mut self) {
        self.buf.truncate(self.keep);
    }
}

/// An MQTT connection (client side).
pub struct Conn {
    stream: TcpStream,
    rbuf: BytesMut,
    wbuf: BytesMut,
    read_size: usize,
    sizes: ReadSize,
    version: ProtocolVersion,
    limits: Limits,
}

impl Conn {
    /// TCP-connect to `addr` (with TCP_NODELAY: writes are batched anyway).
    pub async fn open(
        addr: SocketAddr,
        version: ProtocolVersion,
        sizes: ReadSize,
    ) -> Result<Conn, ConnError> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| ConnError::TcpConnect(std::io::Error::from(e).kind()))?;
        // Best effort: a socket without NODELAY still works, only slower.
        let _ = stream.set_nodelay(true);
        Ok(Conn::from_stream(stream, version, sizes))
    }

    /// Wrap an already connected stream (the sink's accepted sockets).
    pub fn from_stream(stream: TcpStream, version: ProtocolVersion, sizes: ReadSize) -> Conn {
        Conn {
            stream,
            rbuf: BytesMut::new(),
            wbuf: BytesMut::new(),
            read_size: sizes.min,
            sizes,
            version,
            limits: Limits::default(),
        }
    }

    /// The protocol version packets are encoded and decoded in.
    pub fn version(&self) -> ProtocolVersion {
        self.version
    }

    /// Switch the protocol version (the sink learns it from CONNECT).
    pub fn set_version(&mut self, version: ProtocolVersion) {
        self.version = version;
    }

    /// The write buffer, to encode packets straight into it.
    pub fn wbuf(&mut self) -> &mut BytesMut {
        &mut self.wbuf
    }

    /// Encode `packet` into the write buffer (sent by the next flush).
    pub fn queue(&mut self, packet: &Packet) -> Result<(), ConnError> {
        packet.encode(self.version, &mut self.wbuf)?;
        Ok(())
    }

    /// Write everything queued, in one `write` when the socket takes it.
    pub async fn flush(&mut self) -> Result<(), ConnError> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        let result = self.stream.write_all(&self.wbuf).await;
        self.wbuf.clear();
        result.map_err(|e| ConnError::from_io(&e))
    }

    /// Queue and flush one packet.
    pub async fn send(&mut self, packet: &Packet) -> Result<(), ConnError> {
        self.queue(packet)?;
        self.flush().await
    }

    /// Decode the next whole packet already read, if any.
    #[inline]
    pub fn next_buffered(&mut self) -> Result<Option<Packet>, ConnError> {
        Ok(decode_buf(&mut self.rbuf, self.version, &self.limits)?)
    }

    /// Bytes read but not yet decoded.
    pub fn buffered_len(&self) -> usize {
        self.rbuf.len()
    }

    /// The bytes read but not yet decoded.
    pub fn buffered(&self) -> &[u8] {
        &self.rbuf
    }

    /// Drop `n` buffered bytes without decoding them (`n` is clamped to
    /// what is buffered).
    pub fn consume(&mut self, n: usize) {
        let n = n.min(self.rbuf.len());
        bytes::Buf::advance(&mut self.rbuf, n);
    }

    /// Read more bytes (one `recv`); `Err(Closed)` when the peer closed.
    /// Cancel-safe (see the module docs).
    pub async fn fill(&mut self) -> Result<usize, ConnError> {
        let start = self.rbuf.len();
        let size = self.read_size;
        // Reclaims the space of packets already split off and dropped.
        self.rbuf.reserve(size);
        self.rbuf.resize(start + size, 0);
        let trim = Trim {
            buf: &mut self.rbuf,
            keep: start,
        };
        let result = self.stream.read(&mut trim.buf[start..]).await;
        let mut trim = trim;
        match result {
            Ok(0) => Err(ConnError::Closed),
            Ok(n) => {
                trim.keep = start + n;
                drop(trim);
                self.read_size = self.sizes.next(size, n);
                Ok(n)
            }
            Err(e) => Err(ConnError::from_io(&e)),
        }
    }

    /// The next packet, reading as needed.
    pub async fn recv(&mut self) -> Result<Packet, ConnError> {
        loop {
            if let Some(packet) = self.next_buffered()? {
                return Ok(packet);
            }
            self.fill().await?;
        }
    }

    /// Send CONNECT and wait for CONNACK; a refusal or anything else than
    /// CONNACK is an error.
    pub async fn handshake(&mut self, connect: &Connect) -> Result<ConnAck, ConnError> {
        connect.encode(self.version, &mut self.wbuf)?;
        self.flush().await?;
        match self.recv().await? {
            Packet::ConnAck(ack) if ack.code.0 == 0 => Ok(ack),
            Packet::ConnAck(ack) => Err(ConnError::Refused {
                code: ack.code.0,
                v5: self.version.is_v5(),
            }),
            Packet::Disconnect(d) => Err(ConnError::Disconnected(d.code)),
            other => Err(ConnError::Unexpected(other.packet_type())),
        }
    }

    /// Send SUBSCRIBE for `filters` and wait for its SUBACK; returns the
    /// granted codes. PUBLISH packets arriving meanwhile (retained
    /// messages) are skipped.
    pub async fn subscribe(
        &mut self,
        packet_id: u16,
        filters: &[(String, QoS)],
    ) -> Result<Vec<ReasonCode>, ConnError> {
        let subscribe = Subscribe {
            packet_id,
            properties: Properties::default(),
            filters: filters
                .iter()
                .map(|(f, qos)| {
                    let options = SubscriptionOptions {
                        qos: *qos,
                        ..SubscriptionOptions::default()
                    };
                    (Bytes::from(f.clone()), options)
                })
                .collect(),
        };
        self.send(&Packet::Subscribe(subscribe)).await?;
        loop {
            match self.recv().await? {
                Packet::SubAck(ack) if ack.packet_id == packet_id => return Ok(ack.codes),
                Packet::Publish(_) | Packet::PingResp => {}
                Packet::Disconnect(d) => return Err(ConnError::Disconnected(d.code)),
                other => return Err(ConnError::Unexpected(other.packet_type())),
            }
        }
    }

    /// Send a normal DISCONNECT (best effort) and close.
    pub async fn disconnect(self) {
        self.disconnect_with(Properties::default()).await;
    }

    /// Send a normal DISCONNECT with these (v5) properties, best effort,
    /// and close.
    pub async fn disconnect_with(mut self, properties: Properties) {
        let _ = self
            .send(&Packet::Disconnect(ringmq_codec::Disconnect {
                code: ReasonCode::NORMAL_DISCONNECTION,
                properties,
            }))
            .await;
        let _ = self.stream.close().await;
    }

    /// The raw stream (for shutdown or socket options).
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }
}

/// Run `fut`, or fail with `Timeout(stage)` after `timeout`.
pub async fn within<T>(
    timeout: Duration,
    stage: &'static str,
    fut: impl Future<Output = Result<T, ConnError>>,
) -> Result<T, ConnError> {
    futures_lite::future::or(fut, async {
        glommio::timer::sleep(timeout).await;
        Err(ConnError::Timeout(stage))
    })
    .await
}

/// What a CONNECT should say.
#[derive(Clone, Debug)]
pub struct ConnectSpec {
    /// Client identifier.
    pub client_id: String,
    /// Keep Alive, seconds.
    pub keep_alive: u16,
    /// Clean Start / Clean Session.
    pub clean_start: bool,
    /// v5 Session Expiry Interval (ignored for 3.x).
    pub session_expiry: Option<u32>,
    /// Will topic and payload (QoS 0, not retained).
    pub will: Option<(String, Vec<u8>)>,
}

impl ConnectSpec {
    /// A clean connection without will.
    pub fn new(client_id: String, keep_alive: u16) -> ConnectSpec {
        ConnectSpec {
            client_id,
            keep_alive,
            clean_start: true,
            session_expiry: None,
            will: None,
        }
    }

    /// The CONNECT packet in `version`.
    pub fn packet(&self, version: ProtocolVersion) -> Connect {
        let mut properties = Properties::default();
        if version.is_v5() {
            properties.session_expiry_interval = self.session_expiry;
        }
        Connect {
            protocol: version,
            clean_start: self.clean_start,
            keep_alive: self.keep_alive,
            client_id: self.client_id.clone().into(),
            will: self.will.as_ref().map(|(topic, payload)| Will {
                topic: topic.clone().into(),
                payload: payload.clone().into(),
                qos: QoS::AtMostOnce,
                retain: false,
                properties: Properties::default(),
            }),
            username: None,
            password: None,
            properties,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringmq_codec::decode;

    #[test]
    fn read_size_adapts_within_bounds() {
        let s = ReadSize { min: 64, max: 1024 };
        assert_eq!(s.next(64, 64), 128, "full read doubles");
        assert_eq!(s.next(1024, 1024), 1024, "capped at max");
        assert_eq!(s.next(512, 100), 256, "small read halves");
        assert_eq!(s.next(64, 1), 64, "floored at min");
        assert_eq!(s.next(512, 200), 512, "in between stays");
    }

    #[test]
    fn connect_spec_encodes_what_it_says() {
        let mut spec = ConnectSpec::new("rb-ka-7".into(), 2);
        spec.clean_start = false;
        spec.session_expiry = Some(300);
        spec.will = Some(("wills/7".into(), b"7".to_vec()));
        for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
            let mut buf = BytesMut::new();
            spec.packet(version)
                .encode(version, &mut buf)
                .expect("encodes");
            let (packet, used) = decode(&buf.freeze(), version, &Limits::default())
                .expect("decodes")
                .expect("whole");
            let Packet::Connect(c) = packet else {
                panic!("not a CONNECT");
            };
            assert!(used > 10);
            assert_eq!(c.protocol, version);
            assert_eq!(&c.client_id[..], b"rb-ka-7");
            assert_eq!(c.keep_alive, 2);
            assert!(!c.clean_start);
            let will = c.will.expect("will");
            assert_eq!(&will.topic[..], b"wills/7");
            let expiry = c.properties.session_expiry_interval;
            assert_eq!(expiry, version.is_v5().then_some(300));
        }
    }
}
