//! TLS for the mqtts:// and wss:// listeners: the certificate material
//! (read at start and on SIGHUP), the rustls server configurations built
//! from it, and [`TlsConn`], one connection's TLS driven as a state
//! machine over the broker's own buffers.
//!
//! `TlsConn` uses rustls's unbuffered API: records are decrypted where
//! they were read (the shard's read buffer) and encrypted straight into
//! the connection's output, so rustls keeps no buffers of its own: an
//! idle connection holds its keys and handshake results, nothing else (the
//! buffered `ServerConnection` keeps a 4 KiB receive buffer per
//! connection for good). Nothing here does I/O beyond reading the PEM
//! files. The crypto provider is ring: it builds with only a C compiler,
//! where rustls's default (aws-lc-rs) adds a long C build to every clean
//! checkout.

use std::path::Path;
use std::sync::Arc;

use bytes::{Buf, BytesMut};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ServerSessionMemoryCache, UnbufferedServerConnection, WebPkiClientVerifier};
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, UnbufferedStatus, WriteTraffic,
};
use rustls::{RootCertStore, ServerConfig};

use crate::config::Config;

/// Resumable TLS sessions each shard remembers per kind of listener.
const SESSION_CACHE: usize = 1024;

/// Server configurations built from --tls-cert, --tls-key and --tls-ca,
/// one per kind of TLS listener (they differ in ALPN). Shards clone them
/// with a session cache of their own, so no lock is shared between shards.
pub(crate) struct TlsMaterial {
    mqtts: ServerConfig,
    wss: ServerConfig,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsMaterial")
    }
}

/// One shard's TLS configurations.
pub(crate) struct ShardTls {
    pub(crate) mqtts: Arc<ServerConfig>,
    pub(crate) wss: Arc<ServerConfig>,
}

impl ShardTls {
    pub(crate) fn new(material: &TlsMaterial) -> ShardTls {
        let own = |base: &ServerConfig| {
            let mut config = base.clone();
            config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE);
            Arc::new(config)
        };
        ShardTls {
            mqtts: own(&material.mqtts),
            wss: own(&material.wss),
        }
    }
}

/// Reads the TLS files the flags name and builds the server
/// configurations; `None` when no listener speaks TLS. The error names the
/// flag and the file.
pub(crate) fn load(config: &Config) -> Result<Option<TlsMaterial>, String> {
    let (Some(cert_path), Some(key_path)) = (&config.tls_cert, &config.tls_key) else {
        return Ok(None);
    };
    let certs = read_certs("tls-cert", cert_path)?;
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| {
        format!(
            "--tls-key {}: no PEM private key (PKCS#8, RSA or SEC1): {e}",
            key_path.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS versions: {e}"))?;
    let builder = match &config.tls_ca {
        Some(ca_path) => {
            let mut roots = RootCertStore::empty();
            for cert in read_certs("tls-ca", ca_path)? {
                roots
                    .add(cert)
                    .map_err(|e| format!("--tls-ca {}: {e}", ca_path.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if config.require_certificate {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            let verifier = verifier
                .build()
                .map_err(|e| format!("--tls-ca {}: {e}", ca_path.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut mqtts = builder.with_single_cert(certs, key).map_err(|e| {
        format!(
            "--tls-cert {} / --tls-key {}: {e}",
            cert_path.display(),
            key_path.display()
        )
    })?;
    let mut wss = mqtts.clone();
    mqtts.alpn_protocols = vec![b"mqtt".to_vec()];
    // Browsers offer http/1.1 for a WebSocket; MQTT clients may offer mqtt.
    wss.alpn_protocols = vec![b"http/1.1".to_vec(), b"mqtt".to_vec()];
    Ok(Some(TlsMaterial { mqtts, wss }))
}

fn read_certs(flag: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("--{flag} {}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("--{flag} {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "--{flag} {}: no PEM certificate in the file",
            path.display()
        ));
    }
    Ok(certs)
}

/// One connection's TLS.
pub(crate) struct TlsConn {
    conn: UnbufferedServerConnection,
    /// Received bytes that do not make a whole record yet (storage of its
    /// own, and none at all when empty).
    incoming: BytesMut,
    /// rustls reported an error: nothing more is asked of it (its view
    /// of the input may no longer match `incoming`).
    failed: bool,
}

/// Most state changes one call handles before it gives up (a peer cannot
/// make a call loop for ever; in practice a call takes a few).
const MAX_STEPS: usize = 4096;

impl TlsConn {
    pub(crate) fn new(config: Arc<ServerConfig>) -> Result<TlsConn, rustls::Error> {
        Ok(TlsConn {
            conn: UnbufferedServerConnection::new(config)?,
            incoming: BytesMut::new(),
            failed: false,
        })
    }

    pub(crate) fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// The subject CN of the client's certificate, once the handshake is
    /// done (inner `None`: no certificate, or one without a CN).
    pub(crate) fn peer_name(&self) -> Option<Option<Box<str>>> {
        if self.conn.is_handshaking() {
            return None;
        }
        Some(
            self.conn
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(|cert| subject_cn(cert)),
        )
    }

    /// Handles bytes read from the socket (decrypted in place, so `data`
    /// is scratch afterwards). Application data goes to `plain`, which
    /// returns false to stop (its layer failed); records for the peer
    /// (handshake, alerts) are appended to `wire`. True when the peer
    /// closed its side (close_notify).
    pub(crate) fn input(
        &mut self,
        data: &mut [u8],
        wire: &mut BytesMut,
        mut plain: impl FnMut(&[u8]) -> bool,
    ) -> Result<bool, rustls::Error> {
        if self.failed {
            return Err(rustls::Error::General("TLS failed already".into()));
        }
        let TlsConn { conn, incoming, .. } = self;
        let result = if incoming.is_empty() {
            // The usual case: whole records, worked on where they were read.
            let r = drive(conn, data, wire, &mut plain);
            if let Ok((used, _)) = r {
                if used < data.len() {
                    // A partial record waits in storage of its own size.
                    *incoming = BytesMut::from(&data[used..]);
                }
            }
            r
        } else {
            incoming.extend_from_slice(data);
            let r = drive(conn, incoming, wire, &mut plain);
            if let Ok((used, _)) = r {
                incoming.advance(used);
                if incoming.is_empty() {
                    *incoming = BytesMut::new();
                }
            }
            r
        };
        self.failed = result.is_err();
        result.map(|(_, closed)| closed)
    }

    /// Encrypts application data into `wire` (after any records rustls
    /// has waiting, such as session tickets). False when the handshake is
    /// not done (nothing may be sent yet) or rustls refused.
    pub(crate) fn write(&mut self, data: &[u8], wire: &mut BytesMut) -> bool {
        self.with_traffic(wire, |w, wire| encrypt(w, data, wire))
    }

    /// Appends a close_notify alert to `wire`, when the handshake is done.
    pub(crate) fn close(&mut self, wire: &mut BytesMut) {
        self.with_traffic(wire, |w, wire| {
            let mut buf = [0u8; 64];
            match w.queue_close_notify(&mut buf) {
                Ok(n) => {
                    wire.extend_from_slice(&buf[..n]);
                    true
                }
                Err(_) => false,
            }
        });
    }

    /// Runs `f` once rustls allows application data, after moving every
    /// record it has waiting into `wire`.
    ///
    /// rustls must always be shown the same unconsumed input (a
    /// handshake message split over records is remembered by offsets into
    /// it), so this passes the partial record kept in `incoming`, never a
    /// buffer of its own.
    fn with_traffic(
        &mut self,
        wire: &mut BytesMut,
        f: impl FnOnce(
            &mut WriteTraffic<'_, rustls::server::ServerConnectionData>,
            &mut BytesMut,
        ) -> bool,
    ) -> bool {
        if self.failed || self.conn.is_handshaking() {
            return false;
        }
        let mut f = Some(f);
        for _ in 0..MAX_STEPS {
            let UnbufferedStatus { discard, state } =
                self.conn.process_tls_records(&mut self.incoming);
            let done = match state {
                Ok(ConnectionState::EncodeTlsData(mut e)) => {
                    (!encode(&mut e, wire)).then_some(false)
                }
                Ok(ConnectionState::TransmitTlsData(t)) => {
                    t.done();
                    None
                }
                Ok(ConnectionState::WriteTraffic(mut w)) => {
                    Some(f.take().is_some_and(|f| f(&mut w, wire)))
                }
                _ => Some(false),
            };
            self.incoming.advance(discard);
            if let Some(done) = done {
                return done;
            }
        }
        false
    }

    /// Moves the records rustls has waiting (the alert after an error)
    /// from `conn` into `wire`; `buf` is the input the error came from.
    /// Only records already queued are asked for: each call then pops one
    /// before looking at the input again (which would repeat the error).
    fn pending_records(conn: &mut UnbufferedServerConnection, buf: &mut [u8], wire: &mut BytesMut) {
        for _ in 0..16 {
            if !conn.wants_write() {
                return;
            }
            let UnbufferedStatus { state, .. } = conn.process_tls_records(buf);
            match state {
                Ok(ConnectionState::EncodeTlsData(mut e)) => {
                    if !encode(&mut e, wire) {
                        return;
                    }
                }
                _ => return,
            }
        }
    }
}

/// Processes the records in `buf`: returns how many bytes were used up
/// (the rest is a partial record) and whether the peer closed.
fn drive(
    conn: &mut UnbufferedServerConnection,
    buf: &mut [u8],
    wire: &mut BytesMut,
    plain: &mut impl FnMut(&[u8]) -> bool,
) -> Result<(usize, bool), rustls::Error> {
    let mut used = 0;
    let mut closed = false;
    for _ in 0..MAX_STEPS {
        let UnbufferedStatus { discard, state } = conn.process_tls_records(&mut buf[used..]);
        let state = match state {
            Ok(state) => state,
            Err(e) => {
                // The alert rustls queued for this error goes to the peer
                // (taken with the same input, as rustls requires).
                used += discard;
                TlsConn::pending_records(conn, &mut buf[used..], wire);
                return Err(e);
            }
        };
        let mut stop = false;
        match state {
            ConnectionState::ReadTraffic(mut r) => {
                while let Some(record) = r.next_record() {
                    let record = record?;
                    if !plain(record.payload) {
                        stop = true;
                        break;
                    }
                }
            }
            ConnectionState::EncodeTlsData(mut e) => {
                if !encode(&mut e, wire) {
                    return Err(rustls::Error::General("cannot encode a record".into()));
                }
            }
            // What was encoded is in `wire`, which the engine sends in order.
            ConnectionState::TransmitTlsData(t) => t.done(),
            ConnectionState::PeerClosed | ConnectionState::Closed => {
                closed = true;
                stop = true;
            }
            // Everything whole is handled: wait for more bytes.
            _ => stop = true,
        }
        used += discard;
        if stop {
            return Ok((used, closed));
        }
    }
    Err(rustls::Error::General(
        "too many TLS state changes in one read".into(),
    ))
}

fn encode(
    e: &mut rustls::unbuffered::EncodeTlsData<'_, rustls::server::ServerConnectionData>,
    wire: &mut BytesMut,
) -> bool {
    append(wire, 1024, |out| match e.encode(out) {
        Ok(n) => Ok(n),
        Err(EncodeError::InsufficientSize(s)) => Err(Some(s.required_size)),
        Err(_) => Err(None),
    })
}

/// Encrypts `data` into `wire` (written in place after what is there).
fn encrypt(
    w: &mut WriteTraffic<'_, rustls::server::ServerConnectionData>,
    data: &[u8],
    wire: &mut BytesMut,
) -> bool {
    // Per record (at most 16 KiB of data): a header, the content type, the
    // tag (and for TLS 1.2 an explicit nonce): well under 64 bytes.
    let guess = data.len() + (data.len() / 16384 + 1) * 64;
    append(wire, guess, |out| match w.encrypt(data, out) {
        Ok(n) => Ok(n),
        Err(EncryptError::InsufficientSize(s)) => Err(Some(s.required_size)),
        Err(_) => Err(None),
    })
}

/// Lets `write` fill the end of `wire` in place: it returns the bytes it
/// wrote, or the room it needs (`Some`) or failure (`None`). Starts with
/// `guess` bytes of room; `wire` keeps only what was written.
fn append(
    wire: &mut BytesMut,
    guess: usize,
    mut write: impl FnMut(&mut [u8]) -> Result<usize, Option<usize>>,
) -> bool {
    let at = wire.len();
    let mut room = guess;
    loop {
        wire.resize(at + room, 0);
        match write(&mut wire[at..]) {
            Ok(n) => {
                wire.truncate(at + n);
                return true;
            }
            Err(Some(needed)) if needed > room => room = needed,
            Err(_) => {
                wire.truncate(at);
                return false;
            }
        }
    }
}

/// The subject common name (CN) of a DER certificate, if it has one that
/// is text.
pub(crate) fn subject_cn(der: &[u8]) -> Option<Box<str>> {
    use x509_cert::der::Decode;
    let cert = x509_cert::Certificate::from_der(der).ok()?;
    const CN: x509_cert::der::asn1::ObjectIdentifier =
        x509_cert::der::asn1::ObjectIdentifier::new_unwrap("2.5.4.3");
    cert.tbs_certificate
        .subject
        .0
        .iter()
        .flat_map(|rdn| rdn.0.iter())
        .find(|atv| atv.oid == CN)
        .and_then(|atv| std::str::from_utf8(atv.value.value()).ok())
        .filter(|cn| !cn.is_empty())
        .map(Box::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// A server config with a fresh self-signed certificate for
    /// "localhost", and a client config that trusts it.
    fn configs() -> (Arc<ServerConfig>, Arc<rustls::ClientConfig>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let der = CertificateDer::from(cert.der().to_vec());
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![der.clone()],
                PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
            )
            .unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(der).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        (Arc::new(server), Arc::new(client))
    }

    /// Runs a client against a `TlsConn` in memory, feeding the server in
    /// pieces of `chunk` bytes (after `corrupt` changed the client's
    /// bytes). Returns what the server decrypted, or its error.
    fn exchange(
        chunk: usize,
        messages: &[&[u8]],
        corrupt: impl Fn(&mut Vec<u8>),
    ) -> Result<Vec<u8>, rustls::Error> {
        let (server_config, client_config) = configs();
        let mut server = TlsConn::new(server_config).unwrap();
        let mut client =
            rustls::ClientConnection::new(client_config, "localhost".try_into().unwrap()).unwrap();
        let mut got = Vec::new();
        let mut wire = BytesMut::new();
        let mut sent = 0;
        for _ in 0..50 {
            if !client.is_handshaking() && sent < messages.len() {
                client.writer().write_all(messages[sent]).unwrap();
                sent += 1;
            }
            let mut to_server = Vec::new();
            while client.wants_write() {
                client.write_tls(&mut to_server).unwrap();
            }
            corrupt(&mut to_server);
            for piece in to_server.chunks_mut(chunk) {
                server.input(piece, &mut wire, |plain| {
                    got.extend_from_slice(plain);
                    true
                })?;
            }
            let mut from_server = &wire.split()[..];
            while !from_server.is_empty() {
                client.read_tls(&mut from_server).unwrap();
                client
                    .process_new_packets()
                    .map_err(|e| rustls::Error::General(format!("client: {e}")))?;
            }
            if sent == messages.len() && !client.is_handshaking() && !client.wants_write() {
                break;
            }
        }
        // The server writes back; the client reads it.
        if !server.write(b"from the server", &mut wire) {
            return Err(rustls::Error::General("server cannot write".into()));
        }
        let mut from_server = &wire.split()[..];
        while !from_server.is_empty() {
            client.read_tls(&mut from_server).unwrap();
            client
                .process_new_packets()
                .map_err(|e| rustls::Error::General(format!("client: {e}")))?;
        }
        let mut back = [0u8; 64];
        let n = client.reader().read(&mut back).unwrap_or(0);
        if &back[..n] != b"from the server" {
            return Err(rustls::Error::General("client got no reply".into()));
        }
        Ok(got)
    }

    #[test]
    fn records_split_anywhere_decrypt_the_same() {
        let big = vec![7u8; 40_000];
        let messages: [&[u8]; 3] = [b"CONNECT", &big, b"PINGREQ"];
        let want: Vec<u8> = messages.concat();
        for chunk in [1, 2, 3, 5, 7, 100, 1000, 4096, 1 << 20] {
            let got = exchange(chunk, &messages, |_| {}).unwrap();
            assert_eq!(got.len(), want.len(), "chunk {chunk}");
            assert!(got == want, "chunk {chunk}");
        }
        // An idle connection keeps no input buffer.
        let (server_config, _) = configs();
        assert!(TlsConn::new(server_config).unwrap().incoming.capacity() == 0);
    }

    /// Not a check: holds 1000 server connections after their handshakes,
    /// for a heap profiler to say what an idle TLS connection keeps
    /// (`valgrind --tool=massif <test binary> --ignored idle_tls_heap`).
    #[test]
    #[ignore]
    fn idle_tls_heap() {
        let (server_config, client_config) = configs();
        let mut kept = Vec::new();
        for _ in 0..1000 {
            let mut server = TlsConn::new(server_config.clone()).unwrap();
            let mut client = rustls::ClientConnection::new(
                client_config.clone(),
                "localhost".try_into().unwrap(),
            )
            .unwrap();
            let mut wire = BytesMut::new();
            while client.is_handshaking() || client.wants_write() {
                let mut to_server = Vec::new();
                while client.wants_write() {
                    client.write_tls(&mut to_server).unwrap();
                }
                server.input(&mut to_server, &mut wire, |_| true).unwrap();
                let mut from_server = &wire.split()[..];
                while !from_server.is_empty() {
                    client.read_tls(&mut from_server).unwrap();
                    client.process_new_packets().unwrap();
                }
            }
            assert!(server.write(b"x", &mut wire));
            kept.push(Box::new(server));
        }
        std::hint::black_box(&kept);
        eprintln!("holding {} idle TLS connections", kept.len());
    }

    #[test]
    fn corrupt_input_is_an_error_never_a_panic() {
        // Every position of the client's first flight and of a later
        // record, flipped in turn, split in a few ways: rustls must
        // refuse (or, for bytes it ignores, go on), and the shard lives.
        for chunk in [1, 13, 4096] {
            for at in (0..400).step_by(7) {
                let _ = exchange(chunk, &[b"hello"], |bytes| {
                    if let Some(b) = bytes.get_mut(at) {
                        *b ^= 0x5a;
                    }
                });
            }
        }
        // Garbage straight away, and after a failure, more input.
        let (server_config, _) = configs();
        let mut server = TlsConn::new(server_config).unwrap();
        let mut wire = BytesMut::new();
        let mut junk = b"GET / HTTP/1.1\r\n\r\n".to_vec();
        assert!(server.input(&mut junk, &mut wire, |_| true).is_err());
        assert!(server.input(&mut junk, &mut wire, |_| true).is_err());
        assert!(!server.write(b"x", &mut wire));
        server.close(&mut wire);
    }

    #[test]
    fn common_name_is_read_from_the_subject() {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "ringmq tests");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "device-7");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(subject_cn(cert.der()).as_deref(), Some("device-7"));

        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(subject_cn(cert.der()), None);
        assert_eq!(subject_cn(b"not a certificate"), None);
    }
}
