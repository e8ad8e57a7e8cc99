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
//! - With `--tls` or `--ws` the connection carries a [`Layer`]
//!   ([`crate::transport`]), checked once per read and per flush: a flush
//!   hands the whole write buffer to it (one WebSocket binary frame, then
//!   TLS records) and writes what it queued; a read goes through it and
//!   returns only once MQTT bytes came out (TLS records without
//!   application data, WebSocket control frames and partial frames are
//!   absorbed). Its output is written piecewise with the progress kept in
//!   the layer, so a layered read or flush is cancel-safe too; output a
//!   read produced (a pong) goes out at the start of the next read or
//!   flush. Without a layer both paths are exactly the plain ones.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{FromRawFd, IntoRawFd, RawFd};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use ringmq_codec::{
    decode_buf, ConnAck, Connect, Limits, Packet, Properties, ProtocolVersion, QoS, ReasonCode,
    Subscribe, SubscriptionOptions, Will,
};

use crate::error::ConnError;
use crate::transport::{Layer, TransportSpec};

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
    /// TLS and/or WebSocket; `None` for plain MQTT over TCP.
    layer: Option<Box<Layer>>,
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

    /// [`Conn::open`], from local address `source` (port chosen by the
    /// kernel) when given. glommio cannot bind before it connects, so the
    /// socket is made here: nonblocking `connect`, then its completion is
    /// polled (`poll(2)` with no wait, between short timer sleeps starting
    /// at 50 us), then it is handed to glommio.
    pub async fn open_from(
        addr: SocketAddr,
        source: Option<IpAddr>,
        version: ProtocolVersion,
        sizes: ReadSize,
    ) -> Result<Conn, ConnError> {
        let Some(source) = source else {
            return Conn::open(addr, version, sizes).await;
        };
        let fd = bound_socket(addr, source).map_err(|e| ConnError::TcpConnect(e.kind()))?;
        // From here `owned` closes the socket on every error.
        // SAFETY: `fd` is a fresh socket nobody else owns.
        let owned = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        let mut wait = Duration::from_micros(50);
        loop {
            let mut pfd = libc::pollfd {
                fd,
                events: libc::POLLOUT,
                revents: 0,
            };
            // SAFETY: one valid pollfd, no wait.
            let n = unsafe { libc::poll(&mut pfd, 1, 0) };
            if n < 0 {
                return Err(ConnError::TcpConnect(io::Error::last_os_error().kind()));
            }
            if n > 0 {
                break;
            }
            glommio::timer::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_millis(10));
        }
        let mut err: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `err` and `len` describe a c_int buffer.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_ERROR,
                (&mut err as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        if rc < 0 {
            return Err(ConnError::TcpConnect(io::Error::last_os_error().kind()));
        }
        if err != 0 {
            return Err(ConnError::TcpConnect(
                io::Error::from_raw_os_error(err).kind(),
            ));
        }
        // SAFETY: a connected TCP socket, ownership moves to glommio.
        let stream = unsafe { TcpStream::from_raw_fd(owned.into_raw_fd()) };
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
            layer: None,
        }
    }

    /// Put `spec`'s layers under this (just connected) stream; then
    /// [`Conn::tls_handshake`] and [`Conn::ws_upgrade`] bring them up.
    pub fn wrap(&mut self, spec: &TransportSpec) -> Result<(), ConnError> {
        self.layer = Some(Box::new(Layer::new(spec)?));
        Ok(())
    }

    /// Drive the TLS handshake to its end (no-op without TLS).
    pub async fn tls_handshake(&mut self) -> Result<(), ConnError> {
        loop {
            self.write_pending().await?;
            if !self.layer.as_ref().is_some_and(|l| l.is_handshaking()) {
                return Ok(());
            }
            self.read_layered().await?;
        }
    }

    /// Send the WebSocket upgrade and read its 101 (no-op without
    /// WebSocket).
    pub async fn ws_upgrade(&mut self) -> Result<(), ConnError> {
        let Some(layer) = self.layer.as_deref_mut() else {
            return Ok(());
        };
        layer.start_upgrade()?;
        self.write_pending().await?;
        while !self.layer.as_ref().is_none_or(|l| l.is_upgraded()) {
            self.read_layered().await?;
        }
        Ok(())
    }

    /// What TLS negotiated, if this connection has TLS.
    pub fn tls_summary(&self) -> Option<String> {
        self.layer.as_ref().and_then(|l| l.tls_summary())
    }

    /// Write what the layer queued, as far as the socket takes it; the
    /// progress is kept in the layer after every write.
    async fn write_pending(&mut self) -> Result<(), ConnError> {
        let Some(layer) = self.layer.as_deref_mut() else {
            return Ok(());
        };
        loop {
            let pending = layer.pending();
            if pending.is_empty() {
                return Ok(());
            }
            match self.stream.write(pending).await {
                Ok(0) => return Err(ConnError::Io(io::ErrorKind::WriteZero)),
                Ok(n) => layer.sent(n),
                Err(e) => return Err(ConnError::from_io(&e)),
            }
        }
    }

    /// One socket read through the layer; the MQTT bytes it yielded.
    async fn read_layered(&mut self) -> Result<usize, ConnError> {
        let Some(layer) = self.layer.as_deref_mut() else {
            return Ok(0);
        };
        let size = self.read_size;
        let n = match self.stream.read(layer.read_buf(size)).await {
            Ok(0) => return Err(ConnError::Closed),
            Ok(n) => n,
            Err(e) => return Err(ConnError::from_io(&e)),
        };
        self.read_size = self.sizes.next(size, n);
        layer.received(n, &mut self.rbuf)
    }

    /// [`Conn::fill`] through the layer.
    async fn fill_layered(&mut self) -> Result<usize, ConnError> {
        loop {
            self.write_pending().await?;
            if self.layer.as_ref().is_some_and(|l| l.peer_closed()) {
                return Err(ConnError::Closed);
            }
            let got = self.read_layered().await?;
            if got > 0 {
                return Ok(got);
            }
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
        if let Some(layer) = self.layer.as_deref_mut() {
            if !self.wbuf.is_empty() {
                let result = layer.send(&self.wbuf);
                self.wbuf.clear();
                result?;
            }
            return self.write_pending().await;
        }
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
        if self.layer.is_some() {
            return self.fill_layered().await;
        }
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
        let _ = self.finish(properties).await;
    }

    /// Send a normal DISCONNECT (and the layers' goodbyes: WebSocket
    /// close, TLS close_notify) and shut the write side, then wait at
    /// most `timeout` for the broker to close its side.
    pub async fn disconnect_and_wait(mut self, timeout: Duration) -> Result<Closed, ConnError> {
        match self.finish(Properties::default()).await {
            Ok(()) => {}
            Err(e) if is_reset(&e) => return Ok(Closed::Reset),
            Err(e) => return Err(e),
        }
        within(timeout, "broker close", async {
            loop {
                self.rbuf.clear();
                match self.fill().await {
                    Ok(_) => {}
                    Err(ConnError::Closed) => return Ok(Closed::Orderly),
                    Err(e) if is_reset(&e) => return Ok(Closed::Reset),
                    Err(e) => return Err(e),
                }
            }
        })
        .await
    }

    /// DISCONNECT, goodbyes, write side shut.
    async fn finish(&mut self, properties: Properties) -> Result<(), ConnError> {
        self.queue(&Packet::Disconnect(ringmq_codec::Disconnect {
            code: ReasonCode::NORMAL_DISCONNECTION,
            properties,
        }))?;
        if let Some(layer) = self.layer.as_deref_mut() {
            let result = layer.send(&self.wbuf);
            self.wbuf.clear();
            result?;
            layer.close();
        }
        self.flush().await?;
        self.stream
            .close()
            .await
            .map_err(|e| ConnError::from_io(&e))
    }

    /// The raw stream (for shutdown or socket options).
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }
}

/// A nonblocking TCP socket bound to `source` (port 0) whose connect to
/// `addr` has started (or finished).
fn bound_socket(addr: SocketAddr, source: IpAddr) -> io::Result<RawFd> {
    let family = match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    if addr.is_ipv4() != source.is_ipv4() {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    // SAFETY: plain socket(2).
    let fd = unsafe {
        libc::socket(
            family,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is ours; closed on every error below.
    let owned = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    let one: libc::c_int = 1;
    // Let the kernel pick the port at connect time (per destination),
    // not at bind time (per source address): far more connections per
    // source. Best effort: older kernels lack it.
    // SAFETY: a c_int option.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    let (local, local_len) = sockaddr(SocketAddr::new(source, 0));
    // SAFETY: `local` holds a sockaddr of `local_len` bytes.
    if unsafe {
        libc::bind(
            fd,
            (&local as *const libc::sockaddr_storage).cast(),
            local_len,
        )
    } < 0
    {
        return Err(io::Error::last_os_error());
    }
    let (remote, remote_len) = sockaddr(addr);
    // SAFETY: as above.
    let rc = unsafe {
        libc::connect(
            fd,
            (&remote as *const libc::sockaddr_storage).cast(),
            remote_len,
        )
    };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINPROGRESS) {
            return Err(e);
        }
    }
    Ok(owned.into_raw_fd())
}

/// `addr` as a C socket address and its length.
fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            let sin = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from(*a.ip()).to_be();
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            sin6.sin6_scope_id = a.scope_id();
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

/// How the broker ended a connection after the client's DISCONNECT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Closed {
    /// With a FIN (end of stream).
    Orderly,
    /// With a reset: typically it closed with the client's goodbyes
    /// (WebSocket close, TLS close_notify) still unread.
    Reset,
}

/// The socket was reset (or is no longer connected).
fn is_reset(e: &ConnError) -> bool {
    matches!(
        e,
        ConnError::Io(
            io::ErrorKind::ConnectionReset
                | io::ErrorKind::NotConnected
                | io::ErrorKind::BrokenPipe
        )
    )
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
    /// User Name (`--username`, see [`Login`]).
    pub username: Option<Bytes>,
    /// Password (`--password`, see [`Login`]).
    pub password: Option<Bytes>,
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
            username: None,
            password: None,
        }
    }

    /// The same, with `login`'s credentials for client `index`.
    pub fn with_login(mut self, login: &Login, index: u64) -> ConnectSpec {
        (self.username, self.password) = login.for_client(index);
        self
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
            username: self.username.clone(),
            password: self.password.clone(),
            properties,
        }
    }
}

/// What every CONNECT of a run authenticates with: `--username` and
/// `--password` as given, each `%i` in them replaced by the client's index
/// (the INDEX of its id PREFIX-ROLE-INDEX), so `user%i` / `pw%i` gives
/// every client its own credentials.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Login {
    /// User Name template.
    pub username: Option<String>,
    /// Password template.
    pub password: Option<String>,
}

/// Replaced by the client's index in [`Login`] templates.
pub const INDEX_MARK: &str = "%i";

impl Login {
    /// User Name and Password of client `index`.
    pub fn for_client(&self, index: u64) -> (Option<Bytes>, Option<Bytes>) {
        let fill = |t: &Option<String>| t.as_deref().map(|t| Bytes::from(expand(t, index)));
        (fill(&self.username), fill(&self.password))
    }

    /// Whether CONNECTs carry any credentials.
    pub fn is_set(&self) -> bool {
        self.username.is_some() || self.password.is_some()
    }
}

/// `template` with every [`INDEX_MARK`] replaced by `index`.
fn expand(template: &str, index: u64) -> String {
    if template.contains(INDEX_MARK) {
        template.replace(INDEX_MARK, &index.to_string())
    } else {
        template.to_string()
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
            assert_eq!((c.username, c.password), (None, None));
        }
    }

    #[test]
    fn login_gives_each_client_its_credentials() {
        let fleet = Login {
            username: Some("user%i".into()),
            password: Some("pw%i-%i".into()),
        };
        assert_eq!(
            fleet.for_client(17),
            (Some(Bytes::from("user17")), Some(Bytes::from("pw17-17")))
        );
        let one = Login {
            username: Some("alice".into()),
            password: Some("100%".into()),
        };
        assert_eq!(
            one.for_client(3),
            (Some(Bytes::from("alice")), Some(Bytes::from("100%")))
        );
        assert_eq!(Login::default().for_client(3), (None, None));
        assert!(!Login::default().is_set());
        let spec = ConnectSpec::new("rb-conn-5".into(), 60).with_login(&fleet, 5);
        for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
            let mut buf = BytesMut::new();
            spec.packet(version)
                .encode(version, &mut buf)
                .expect("encodes");
            let (packet, _) = decode(&buf.freeze(), version, &Limits::default())
                .expect("decodes")
                .expect("whole");
            let Packet::Connect(c) = packet else {
                panic!("not a CONNECT");
            };
            assert_eq!(c.username.as_deref(), Some(&b"user5"[..]));
            assert_eq!(c.password.as_deref(), Some(&b"pw5-5"[..]));
        }
    }
}
