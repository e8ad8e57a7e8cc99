//! The optional byte layers between MQTT and TCP: TLS (`--tls`, rustls
//! driven as a state machine over bytes the caller owns) and WebSocket
//! (`--ws`, [`crate::ws`]); on the wire MQTT | WebSocket | TLS | TCP.
//!
//! Owns: the TLS client configuration built once from the flags
//! ([`TransportSpec`]) and one connection's layer state ([`Layer`]): the
//! rustls session, the WebSocket upgrade and decoder, and the bytes
//! waiting for the socket. Sans-IO: [`crate::conn::Conn`] reads and writes
//! the socket and hands the bytes over.
//!
//! Invariants:
//! - Every byte handed to [`Layer::received`] is consumed before it
//!   returns: TLS records and WebSocket frames are unwrapped as far as
//!   they go and the plaintext is appended to the caller's read buffer.
//!   State between two reads lives here, so the connection's reads stay
//!   cancel-safe.
//! - Output (data, pongs, alerts, close frames) queues in one buffer in
//!   wire order; [`Layer::pending`] and [`Layer::sent`] let the caller
//!   write it in as many pieces as the socket takes.
//! - No session resumption: every TLS handshake is a full one, which is
//!   what a handshake rate has to measure.

use std::io::{self, Read as _, Write as _};
use std::path::Path;
use std::sync::Arc;

use bytes::BytesMut;
use ring::rand::SecureRandom as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};

use crate::cli::{ArgError, Common};
use crate::error::{BenchError, ConnError};
use crate::ws::{self, Control, Decoder, MaskKeys};

/// The ALPN protocol offered with `--tls`.
pub const ALPN_MQTT: &[u8] = b"mqtt";

/// The layers every connection of a run gets, built once from the flags.
#[derive(Debug)]
pub struct TransportSpec {
    /// TLS, with `--tls`.
    pub tls: Option<TlsSpec>,
    /// WebSocket, with `--ws`.
    pub ws: Option<WsSpec>,
}

/// TLS client settings.
#[derive(Debug)]
pub struct TlsSpec {
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
}

/// WebSocket upgrade settings.
#[derive(Debug, Clone)]
pub struct WsSpec {
    /// Request path (`--ws-path`).
    pub path: String,
    /// Host header: `--host:--port`.
    pub host: String,
}

fn arg_error(flag: &'static str, reason: impl Into<String>) -> BenchError {
    BenchError::Args(ArgError {
        flag,
        reason: reason.into(),
    })
}

fn read_pem(flag: &'static str, path: &Path) -> Result<Vec<u8>, BenchError> {
    std::fs::read(path).map_err(|source| BenchError::Io {
        what: format!("reading --{flag} {}", path.display()),
        source,
    })
}

fn load_certs(flag: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, BenchError> {
    let pem = read_pem(flag, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| arg_error(flag, format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(arg_error(
            flag,
            format!("{}: no PEM certificate in it", path.display()),
        ));
    }
    Ok(certs)
}

impl TransportSpec {
    /// The layers `common` asks for; `None` for plain MQTT over TCP.
    pub fn from_common(common: &Common) -> Result<Option<Arc<TransportSpec>>, BenchError> {
        if !common.tls && !common.ws {
            return Ok(None);
        }
        let tls = if common.tls {
            Some(TlsSpec::from_common(common)?)
        } else {
            None
        };
        let ws = common.ws.then(|| WsSpec {
            path: common.ws_path.clone(),
            host: if common.host.contains(':') {
                format!("[{}]:{}", common.host, common.port)
            } else {
                format!("{}:{}", common.host, common.port)
            },
        });
        Ok(Some(Arc::new(TransportSpec { tls, ws })))
    }
}

impl TlsSpec {
    fn from_common(common: &Common) -> Result<TlsSpec, BenchError> {
        let Some(ca) = &common.ca else {
            return Err(arg_error("ca", "--tls needs a CA bundle to trust"));
        };
        let mut roots = RootCertStore::empty();
        for cert in load_certs("ca", ca)? {
            roots
                .add(cert)
                .map_err(|e| arg_error("ca", format!("{}: {e}", ca.display())))?;
        }
        let client_auth = match (&common.cert, &common.key) {
            (Some(cert), Some(key)) => {
                let chain = load_certs("cert", cert)?;
                let pem = read_pem("key", key)?;
                let key_der = PrivateKeyDer::from_pem_slice(&pem)
                    .map_err(|e| arg_error("key", format!("{}: {e}", key.display())))?;
                Some((chain, key_der))
            }
            (None, None) => None,
            _ => return Err(arg_error("cert", "--cert and --key go together")),
        };
        TlsSpec::new(roots, client_auth, &common.server_name)
    }

    /// Trust `roots`, present `client_auth` if given, expect
    /// `server_name`; ring provider, ALPN "mqtt", no resumption.
    pub fn new(
        roots: RootCertStore,
        client_auth: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
        server_name: &str,
    ) -> Result<TlsSpec, BenchError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| BenchError::Setup(format!("TLS: {e}")))?
            .with_root_certificates(roots);
        let mut config = match client_auth {
            Some((chain, key)) => builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| arg_error("key", e.to_string()))?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![ALPN_MQTT.to_vec()];
        config.resumption = rustls::client::Resumption::disabled();
        let server_name = ServerName::try_from(server_name.to_string())
            .map_err(|e| arg_error("server-name", e.to_string()))?;
        Ok(TlsSpec {
            config: Arc::new(config),
            server_name,
        })
    }
}

/// The WebSocket side of one connection.
#[derive(Debug)]
struct WsLayer {
    /// Request bytes, until [`Layer::start_upgrade`] sends them.
    request: Option<Vec<u8>>,
    /// The Sec-WebSocket-Accept expected back.
    accept: String,
    /// The 101 response read so far; `None` once the upgrade is done.
    response: Option<Vec<u8>>,
    decoder: Decoder,
    masks: MaskKeys,
    controls: Vec<Control>,
    /// A close frame went out: a close coming back is not answered.
    close_sent: bool,
    /// Frame scratch when TLS carries the frames.
    frame: Vec<u8>,
}

/// One connection's layers.
#[derive(Debug)]
pub struct Layer {
    tls: Option<ClientConnection>,
    ws: Option<WsLayer>,
    /// Socket read scratch: its length only grows, so a read needs no
    /// zeroing.
    raw: Vec<u8>,
    /// TLS plaintext on its way to the WebSocket decoder.
    plain: Vec<u8>,
    /// Bytes for the socket, written from `out_sent` on.
    out: Vec<u8>,
    out_sent: usize,
    /// The peer closed its side (TLS close_notify or a WebSocket close).
    peer_closed: bool,
}

fn tls_error(e: &rustls::Error) -> ConnError {
    ConnError::Tls(e.to_string())
}

/// Move whatever TLS wants to send into `out`.
fn drain_tls(tls: &mut ClientConnection, out: &mut Vec<u8>) {
    while tls.wants_write() {
        // Writing into a Vec cannot fail.
        if tls.write_tls(out).is_err() {
            break;
        }
    }
}

/// Bytes for the wire under WebSocket: through TLS if there is one.
fn to_wire(
    tls: &mut Option<ClientConnection>,
    out: &mut Vec<u8>,
    mut bytes: &[u8],
) -> Result<(), ConnError> {
    let Some(tls) = tls else {
        out.extend_from_slice(bytes);
        return Ok(());
    };
    while !bytes.is_empty() {
        let n = tls
            .writer()
            .write(bytes)
            .map_err(|e| ConnError::Io(e.kind()))?;
        drain_tls(tls, out);
        if n == 0 {
            return Err(ConnError::Io(io::ErrorKind::WriteZero));
        }
        bytes = &bytes[n..];
    }
    Ok(())
}

impl Layer {
    /// Fresh layers for one connection: with TLS, its ClientHello is
    /// queued at once.
    pub fn new(spec: &TransportSpec) -> Result<Layer, ConnError> {
        let mut out = Vec::new();
        let tls = match &spec.tls {
            Some(t) => {
                let mut tls = ClientConnection::new(Arc::clone(&t.config), t.server_name.clone())
                    .map_err(|e| tls_error(&e))?;
                drain_tls(&mut tls, &mut out);
                Some(tls)
            }
            None => None,
        };
        let ws = match &spec.ws {
            Some(w) => {
                let mut random = [0u8; 24];
                ring::rand::SystemRandom::new()
                    .fill(&mut random)
                    .map_err(|_| ConnError::Io(io::ErrorKind::Other))?;
                let mut key = [0u8; 16];
                key.copy_from_slice(&random[..16]);
                let key = ws::new_key(key);
                let mut seed = [0u8; 8];
                seed.copy_from_slice(&random[16..]);
                Some(WsLayer {
                    request: Some(ws::upgrade_request(&w.path, &w.host, &key)),
                    accept: ws::accept_for(&key),
                    response: Some(Vec::new()),
                    decoder: Decoder::new(),
                    masks: MaskKeys::new(u64::from_ne_bytes(seed)),
                    controls: Vec::new(),
                    close_sent: false,
                    frame: Vec::new(),
                })
            }
            None => None,
        };
        Ok(Layer {
            tls,
            ws,
            raw: Vec::new(),
            plain: Vec::new(),
            out,
            out_sent: 0,
            peer_closed: false,
        })
    }

    /// The TLS handshake is still going on.
    pub fn is_handshaking(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.is_handshaking())
    }

    /// Queue the WebSocket upgrade request (after the TLS handshake).
    pub fn start_upgrade(&mut self) -> Result<(), ConnError> {
        let Some(request) = self.ws.as_mut().and_then(|w| w.request.take()) else {
            return Ok(());
        };
        to_wire(&mut self.tls, &mut self.out, &request)
    }

    /// No WebSocket upgrade is waiting for its answer.
    pub fn is_upgraded(&self) -> bool {
        self.ws.as_ref().is_none_or(|w| w.response.is_none())
    }

    /// The peer closed its side: nothing more will arrive.
    pub fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// Wrap MQTT bytes for the wire: one binary frame, then TLS.
    pub fn send(&mut self, data: &[u8]) -> Result<(), ConnError> {
        match &mut self.ws {
            Some(w) => {
                let mask = w.masks.next_key();
                if self.tls.is_some() {
                    w.frame.clear();
                    ws::encode_frame(ws::opcode::BINARY, data, mask, &mut w.frame);
                    to_wire(&mut self.tls, &mut self.out, &w.frame)
                } else {
                    ws::encode_frame(ws::opcode::BINARY, data, mask, &mut self.out);
                    Ok(())
                }
            }
            None => to_wire(&mut self.tls, &mut self.out, data),
        }
    }

    /// Queue the polite goodbyes: a WebSocket close (1000) and a TLS
    /// close_notify.
    pub fn close(&mut self) {
        if let Some(w) = &mut self.ws {
            if w.response.is_none() && !w.close_sent {
                w.close_sent = true;
                let mut frame = Vec::new();
                let code = ws::CLOSE_NORMAL.to_be_bytes();
                ws::encode_frame(ws::opcode::CLOSE, &code, w.masks.next_key(), &mut frame);
                let _ = to_wire(&mut self.tls, &mut self.out, &frame);
            }
        }
        if let Some(tls) = &mut self.tls {
            tls.send_close_notify();
            drain_tls(tls, &mut self.out);
        }
    }

    /// The socket read buffer, `size` bytes long.
    pub fn read_buf(&mut self, size: usize) -> &mut [u8] {
        if self.raw.len() < size {
            self.raw.resize(size, 0);
        }
        &mut self.raw[..size]
    }

    /// The first `n` bytes of [`Layer::read_buf`] came off the socket:
    /// unwrap them, append the MQTT bytes to `rbuf` and return how many.
    pub fn received(&mut self, n: usize, rbuf: &mut BytesMut) -> Result<usize, ConnError> {
        let before = rbuf.len();
        let Layer {
            tls,
            ws,
            raw,
            plain,
            out,
            peer_closed,
            ..
        } = self;
        let raw = &raw[..n.min(raw.len())];
        match tls {
            None => {
                if let Some(w) = ws {
                    w.input(raw, rbuf)?;
                }
            }
            Some(tls) => {
                let mut input = raw;
                while !input.is_empty() {
                    tls.read_tls(&mut input)
                        .map_err(|e| ConnError::Tls(e.to_string()))?;
                    let state = tls.process_new_packets().map_err(|e| {
                        // Let the alert rustls queued go out with the close.
                        drain_tls(tls, out);
                        tls_error(&e)
                    })?;
                    if state.peer_has_closed() {
                        *peer_closed = true;
                    }
                    match ws {
                        None => read_plaintext(tls, state.plaintext_bytes_to_read(), rbuf)?,
                        Some(w) => {
                            plain.clear();
                            read_plaintext_vec(tls, plain)?;
                            w.input(plain, rbuf)?;
                        }
                    }
                    drain_tls(tls, out);
                }
            }
        }
        if let Some(w) = ws {
            if w.decoder.is_closed() {
                *peer_closed = true;
            }
            for control in std::mem::take(&mut w.controls) {
                let reply = match control {
                    // RFC 6455 5.5.2: a pong echoes the ping's payload.
                    Control::Ping(payload) => Some((ws::opcode::PONG, payload)),
                    Control::Pong => None,
                    // RFC 6455 5.5.1: answer a close unless we sent one.
                    Control::Close(code) if !w.close_sent => {
                        w.close_sent = true;
                        let code = code.unwrap_or(ws::CLOSE_NORMAL);
                        Some((ws::opcode::CLOSE, code.to_be_bytes().to_vec()))
                    }
                    Control::Close(_) => None,
                };
                if let Some((opcode, payload)) = reply {
                    w.frame.clear();
                    ws::encode_frame(opcode, &payload, w.masks.next_key(), &mut w.frame);
                    to_wire(tls, out, &w.frame)?;
                }
            }
        }
        Ok(rbuf.len() - before)
    }

    /// Bytes waiting for the socket.
    pub fn pending(&self) -> &[u8] {
        &self.out[self.out_sent..]
    }

    /// The socket took `n` bytes of [`Layer::pending`].
    pub fn sent(&mut self, n: usize) {
        self.out_sent = (self.out_sent + n).min(self.out.len());
        if self.out_sent == self.out.len() {
            self.out.clear();
            self.out_sent = 0;
        }
    }

    /// What TLS negotiated ("TLSv1_3 TLS13_AES_128_GCM_SHA256 X25519
    /// alpn=mqtt"), once the handshake is done.
    pub fn tls_summary(&self) -> Option<String> {
        let tls = self.tls.as_ref()?;
        let version = tls.protocol_version()?;
        let suite = tls.negotiated_cipher_suite()?;
        let group = tls
            .negotiated_key_exchange_group()
            .map_or_else(|| "-".to_string(), |g| format!("{:?}", g.name()));
        let alpn = tls.alpn_protocol().map_or_else(
            || "none".to_string(),
            |p| String::from_utf8_lossy(p).into_owned(),
        );
        Some(format!(
            "{version:?} {:?} {group} alpn={alpn}",
            suite.suite()
        ))
    }
}

/// Append the `available` plaintext bytes TLS holds to `rbuf`, straight
/// into its spare room.
fn read_plaintext(
    tls: &mut ClientConnection,
    available: usize,
    rbuf: &mut BytesMut,
) -> Result<(), ConnError> {
    if available == 0 {
        return Ok(());
    }
    let start = rbuf.len();
    rbuf.resize(start + available, 0);
    let mut filled = 0;
    let result = loop {
        match tls.reader().read(&mut rbuf[start + filled..]) {
            Ok(0) => break Ok(()),
            Ok(n) => {
                filled += n;
                if filled == available {
                    break Ok(());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(()),
            Err(e) => break Err(ConnError::Io(e.kind())),
        }
    };
    rbuf.truncate(start + filled);
    result
}

/// Append the plaintext TLS has to `plain`.
fn read_plaintext_vec(tls: &mut ClientConnection, plain: &mut Vec<u8>) -> Result<(), ConnError> {
    match tls.reader().read_to_end(plain) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
        Err(e) => Err(ConnError::Io(e.kind())),
    }
}

impl WsLayer {
    /// Bytes under the WebSocket layer: the 101 response, then frames.
    fn input(&mut self, bytes: &[u8], rbuf: &mut BytesMut) -> Result<(), ConnError> {
        let Some(response) = &mut self.response else {
            return self
                .decoder
                .feed(bytes, rbuf, &mut self.controls)
                .map_err(ConnError::WebSocket);
        };
        response.extend_from_slice(bytes);
        match ws::parse_upgrade_response(response, &self.accept).map_err(ConnError::WebSocket)? {
            None => Ok(()),
            Some(len) => {
                let rest = response.split_off(len);
                self.response = None;
                self.decoder
                    .feed(&rest, rbuf, &mut self.controls)
                    .map_err(ConnError::WebSocket)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    use rustls::pki_types::PrivatePkcs8KeyDer;
    use rustls::{ServerConfig, ServerConnection};

    /// A CA, a certificate for "localhost" it signed, and a server
    /// configuration offering ALPN "mqtt".
    fn pki() -> (RootCertStore, Arc<ServerConfig>) {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca =
            CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("key")).expect("CA");
        let key = KeyPair::generate().expect("key");
        let leaf = CertificateParams::new(vec!["localhost".to_string()])
            .expect("params")
            .signed_by(&key, &ca)
            .expect("leaf");
        let mut roots = RootCertStore::empty();
        roots.add(ca.der().clone()).expect("root");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut server = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .expect("server config");
        server.alpn_protocols = vec![ALPN_MQTT.to_vec()];
        (roots, Arc::new(server))
    }

    /// An in-memory server: TLS, then (optionally) the WebSocket side.
    struct Server {
        tls: ServerConnection,
        plain: Vec<u8>,
    }

    impl Server {
        /// Take the client's pending bytes and answer with the server's.
        fn exchange(&mut self, client: &mut Layer, rbuf: &mut BytesMut) -> usize {
            let mut from_client = client.pending().to_vec();
            client.sent(from_client.len());
            let mut input = &from_client[..];
            while !input.is_empty() {
                self.tls.read_tls(&mut input).expect("server read_tls");
                self.tls.process_new_packets().expect("server TLS");
                let _ = self.tls.reader().read_to_end(&mut self.plain);
            }
            from_client.clear();
            let mut to_client = Vec::new();
            while self.tls.wants_write() {
                self.tls
                    .write_tls(&mut to_client)
                    .expect("server write_tls");
            }
            // Odd-sized pieces: records and frames split anywhere.
            let mut got = 0;
            for piece in to_client.chunks(7) {
                client.read_buf(piece.len()).copy_from_slice(piece);
                got += client.received(piece.len(), rbuf).expect("client received");
            }
            got
        }

        fn send(&mut self, bytes: &[u8]) {
            self.tls.writer().write_all(bytes).expect("server write");
        }
    }

    fn connect(ws: bool) -> (Layer, Server, BytesMut) {
        let (roots, server_config) = pki();
        let spec = TransportSpec {
            tls: Some(TlsSpec::new(roots, None, "localhost").expect("tls spec")),
            ws: ws.then(|| WsSpec {
                path: "/mqtt".into(),
                host: "127.0.0.1:8883".into(),
            }),
        };
        let mut client = Layer::new(&spec).expect("layer");
        let mut server = Server {
            tls: ServerConnection::new(server_config).expect("server"),
            plain: Vec::new(),
        };
        // The test server writes 100 KB at once, before anything drains.
        server.tls.set_buffer_limit(None);
        let mut rbuf = BytesMut::new();
        for _ in 0..10 {
            if !client.is_handshaking() && client.pending().is_empty() {
                break;
            }
            assert_eq!(server.exchange(&mut client, &mut rbuf), 0);
        }
        assert!(!client.is_handshaking(), "handshake done");
        assert!(!server.tls.is_handshaking(), "server side done");
        assert_eq!(server.tls.alpn_protocol(), Some(ALPN_MQTT));
        let summary = client.tls_summary().expect("summary");
        assert!(summary.contains("alpn=mqtt"), "{summary}");
        (client, server, rbuf)
    }

    /// Unmask one client frame at the start of `buf`: (opcode, payload,
    /// frame length).
    fn client_frame(buf: &[u8]) -> (u8, Vec<u8>, usize) {
        assert_eq!(buf[1] & 0x80, 0x80, "masked");
        let (len, at) = match buf[1] & 0x7F {
            126 => (usize::from(u16::from_be_bytes([buf[2], buf[3]])), 4),
            127 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&buf[2..10]);
                (u64::from_be_bytes(b) as usize, 10)
            }
            n => (usize::from(n), 2),
        };
        let mask = [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]];
        let mut payload = buf[at + 4..at + 4 + len].to_vec();
        ws::apply_mask(&mut payload, mask);
        (buf[0] & 0x0F, payload, at + 4 + len)
    }

    #[test]
    fn mqtts_moves_bytes_both_ways() {
        let (mut client, mut server, mut rbuf) = connect(false);
        let big: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        client.send(b"\x10\x0cCONNECT...").expect("send");
        client.send(&big).expect("send big");
        server.send(b"\x20\x02\x00\x00");
        server.send(&big);
        let got = server.exchange(&mut client, &mut rbuf);
        assert_eq!(got, 4 + big.len());
        assert_eq!(&rbuf[..4], b"\x20\x02\x00\x00");
        assert_eq!(&rbuf[4..], &big[..]);
        assert_eq!(&server.plain[..12], b"\x10\x0cCONNECT...");
        assert_eq!(&server.plain[12..], &big[..]);
        client.close();
        server.exchange(&mut client, &mut rbuf);
        assert!(server
            .tls
            .process_new_packets()
            .expect("ok")
            .peer_has_closed());
    }

    #[test]
    fn wss_upgrades_frames_and_answers_pings() {
        let (mut client, mut server, mut rbuf) = connect(true);
        assert!(!client.is_upgraded());
        client.start_upgrade().expect("request");
        server.exchange(&mut client, &mut rbuf);
        let request = String::from_utf8(std::mem::take(&mut server.plain)).expect("ascii");
        assert!(request.starts_with("GET /mqtt HTTP/1.1\r\n"), "{request}");
        let key = request
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .expect("key");
        let response = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n",
            ws::accept_for(key)
        );
        // The 101, a CONNACK in two fragments with a ping between them.
        let mut wire = response.into_bytes();
        wire.extend_from_slice(&[0x02, 0x02, 0x20, 0x02]);
        wire.extend_from_slice(&[0x89, 0x03, b'a', b'b', b'c']);
        wire.extend_from_slice(&[0x80, 0x02, 0x00, 0x00]);
        server.send(&wire);
        let got = server.exchange(&mut client, &mut rbuf);
        assert!(client.is_upgraded());
        assert_eq!(got, 4);
        assert_eq!(&rbuf[..], b"\x20\x02\x00\x00");
        // The pong goes out with the next exchange, then a data frame.
        client.send(b"\xc0\x00").expect("send");
        server.exchange(&mut client, &mut rbuf);
        let (op, payload, used) = client_frame(&server.plain);
        assert_eq!((op, &payload[..]), (ws::opcode::PONG, &b"abc"[..]));
        let (op, payload, rest) = client_frame(&server.plain[used..]);
        assert_eq!((op, &payload[..]), (ws::opcode::BINARY, &b"\xc0\x00"[..]));
        assert_eq!(used + rest, server.plain.len());
        server.plain.clear();
        // A server close is answered once and ends the stream.
        server.send(&[0x88, 0x02, 0x03, 0xE8]);
        server.exchange(&mut client, &mut rbuf);
        assert!(client.peer_closed());
        client.close();
        server.exchange(&mut client, &mut rbuf);
        let (op, payload, used) = client_frame(&server.plain);
        assert_eq!((op, &payload[..]), (ws::opcode::CLOSE, &[0x03, 0xE8][..]));
        assert_eq!(used, server.plain.len(), "one close frame only");
    }

    #[test]
    fn wrong_server_name_fails_the_handshake() {
        let (roots, server_config) = pki();
        let spec = TransportSpec {
            tls: Some(TlsSpec::new(roots, None, "example.org").expect("tls spec")),
            ws: None,
        };
        let mut client = Layer::new(&spec).expect("layer");
        let mut server = ServerConnection::new(server_config).expect("server");
        let hello = client.pending().to_vec();
        client.sent(hello.len());
        server.read_tls(&mut &hello[..]).expect("read");
        server.process_new_packets().expect("hello");
        let mut answer = Vec::new();
        while server.wants_write() {
            server.write_tls(&mut answer).expect("write");
        }
        client.read_buf(answer.len()).copy_from_slice(&answer);
        let err = client
            .received(answer.len(), &mut BytesMut::new())
            .expect_err("certificate for another name");
        assert!(
            err.label().starts_with("tls: invalid peer certificate"),
            "{err}"
        );
    }
}
