//! Test PKI for the TLS and WebSocket black-box tests (tests/tls.rs,
//! tests/ws.rs): certificates made with rcgen into a fresh temporary
//! directory, rustls client configurations on the ring provider, and a
//! blocking TLS client stream.
//!
//! Owns: two independent CAs ("ca" and "other"); server certificates for
//! `localhost` and 127.0.0.1 from each; client certificates from "ca" with
//! CN "device-7" and with no CN, and one with CN "device-7" from "other";
//! their PEM files; the live `--tls-cert` / `--tls-key` files a broker is
//! started with, which a reload test rewrites.
//!
//! Invariants: every `Pki` has its own directory, removed on drop; keys are
//! ECDSA P-256 in PKCS#8 unless a test asks otherwise; nothing here talks
//! to the broker except `tls_connect`, which bounds the handshake by
//! `PROMPT`.

use std::fs;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{
    ClientConfig, ClientConnection, RootCertStore, StreamOwned, SupportedProtocolVersion,
};

use super::{Timed, PROMPT};

/// A blocking TLS client stream over TCP.
pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;

impl Timed for TlsStream {
    fn limit_reads(&mut self, timeout: Duration) -> io::Result<()> {
        self.sock
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))
    }
}

/// A certificate authority: its certificate and the PEM file holding it.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    /// The CA certificate, DER.
    pub der: CertificateDer<'static>,
    /// The CA certificate, PEM.
    pub pem: String,
    /// Path of the PEM file (for `--tls-ca`).
    pub path: String,
}

/// An end-entity certificate with its key and PEM files.
pub struct Leaf {
    /// The certificate, DER.
    pub der: CertificateDer<'static>,
    /// The chain as PEM: this certificate, then its issuer's.
    pub chain_pem: String,
    /// The private key, PKCS#8 DER.
    pub key_der: Vec<u8>,
    /// The private key, PKCS#8 PEM.
    pub key_pem: String,
    /// Path of the chain PEM file.
    pub cert_path: String,
    /// Path of the key PEM file.
    pub key_path: String,
}

/// Every certificate the TLS tests use, in one temporary directory.
pub struct Pki {
    dir: PathBuf,
    /// The CA the broker's server certificate comes from.
    pub ca: Ca,
    /// An independent CA no broker trusts at start.
    pub other: Ca,
    /// Server certificate from `ca` for `localhost` and 127.0.0.1.
    pub server: Leaf,
    /// Server certificate from `other` for `localhost` and 127.0.0.1.
    pub other_server: Leaf,
    /// Client certificate from `ca`, subject CN "device-7".
    pub device: Leaf,
    /// Client certificate from `ca` whose subject has no CN (only O).
    pub no_cn: Leaf,
    /// Client certificate from `other`, subject CN "device-7".
    pub other_device: Leaf,
    /// The live `--tls-cert` file: starts as `server`'s chain.
    pub cert: String,
    /// The live `--tls-key` file: starts as `server`'s key.
    pub key: String,
}

fn path_string(p: &Path) -> String {
    p.to_str()
        .unwrap_or_else(|| panic!("temporary path {p:?} is not UTF-8"))
        .to_string()
}

fn write(path: &Path, contents: &str) {
    fs::write(path, contents).unwrap_or_else(|e| panic!("writing {path:?}: {e}"));
}

impl Ca {
    fn new(dir: &Path, name: &str) -> Ca {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, format!("ringmq test CA {name}"));
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("generate CA key");
        let issuer = CertifiedIssuer::self_signed(params, key).expect("self-sign CA");
        let pem = issuer.pem();
        let path = dir.join(format!("{name}-ca.pem"));
        write(&path, &pem);
        Ca {
            der: issuer.der().clone(),
            issuer,
            pem,
            path: path_string(&path),
        }
    }

    /// Issues a certificate: `cn` None leaves the subject with only an O;
    /// `sans` are DNS names or IP addresses; `server` picks the extended key
    /// usage (serverAuth or clientAuth). Its files are `<file>.pem` and
    /// `<file>.key` in `dir`.
    fn issue(&self, dir: &Path, file: &str, cn: Option<&str>, sans: &[&str], server: bool) -> Leaf {
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans).expect("subject alt names");
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "ringmq tests");
        if let Some(cn) = cn {
            dn.push(DnType::CommonName, cn);
        }
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().expect("generate leaf key");
        let cert = params.signed_by(&key, &*self.issuer).expect("sign leaf");
        let chain_pem = format!("{}{}", cert.pem(), self.pem);
        let key_pem = key.serialize_pem();
        let cert_path = dir.join(format!("{file}.pem"));
        let key_path = dir.join(format!("{file}.key"));
        write(&cert_path, &chain_pem);
        write(&key_path, &key_pem);
        Leaf {
            der: cert.der().clone(),
            chain_pem,
            key_der: key.serialize_der(),
            key_pem,
            cert_path: path_string(&cert_path),
            key_path: path_string(&key_path),
        }
    }
}

impl Pki {
    /// Generates everything into a fresh temporary directory.
    pub fn generate() -> Pki {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "ringmq-pki-{}-{}-{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {dir:?}: {e}"));
        let server_names = ["localhost", "127.0.0.1"];
        let ca = Ca::new(&dir, "main");
        let other = Ca::new(&dir, "other");
        let server = ca.issue(&dir, "server", Some("localhost"), &server_names, true);
        let other_server =
            other.issue(&dir, "other-server", Some("localhost"), &server_names, true);
        let device = ca.issue(&dir, "device-7", Some("device-7"), &[], false);
        let no_cn = ca.issue(&dir, "no-cn", None, &[], false);
        let other_device = other.issue(&dir, "other-device-7", Some("device-7"), &[], false);
        let cert = dir.join("live.pem");
        let key = dir.join("live.key");
        write(&cert, &server.chain_pem);
        write(&key, &server.key_pem);
        Pki {
            ca,
            other,
            server,
            other_server,
            device,
            no_cn,
            other_device,
            cert: path_string(&cert),
            key: path_string(&key),
            dir,
        }
    }

    /// Rewrites the live `--tls-cert` / `--tls-key` files with `leaf`.
    pub fn install(&self, leaf: &Leaf) {
        write(Path::new(&self.cert), &leaf.chain_pem);
        write(Path::new(&self.key), &leaf.key_pem);
    }

    /// Rewrites the live files with arbitrary contents.
    pub fn install_raw(&self, cert: &str, key: &str) {
        write(Path::new(&self.cert), cert);
        write(Path::new(&self.key), key);
    }

    /// A path in this PKI's directory (for extra files a test writes).
    pub fn path(&self, name: &str) -> String {
        path_string(&self.dir.join(name))
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A rustls client configuration on the ring provider that trusts only
/// `trust`, presents `identity` when given and offers `alpn` (empty: no
/// ALPN extension), with rustls' default protocol versions (1.2 and 1.3).
pub fn client_config(trust: &Ca, identity: Option<&Leaf>, alpn: &[&[u8]]) -> Arc<ClientConfig> {
    client_config_versions(trust, identity, alpn, rustls::DEFAULT_VERSIONS)
}

/// Like `client_config`, limited to `versions`.
pub fn client_config_versions(
    trust: &Ca,
    identity: Option<&Leaf>,
    alpn: &[&[u8]],
    versions: &[&'static SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(trust.der.clone()).expect("add the trusted CA");
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(versions)
            .expect("protocol versions supported by ring")
            .with_root_certificates(roots);
    let mut config = match identity {
        Some(leaf) => builder
            .with_client_auth_cert(
                vec![leaf.der.clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf.key_der.clone())),
            )
            .expect("client certificate and key"),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// A rustls client connection to `localhost` (not started on any socket).
pub fn client_connection(config: &Arc<ClientConfig>) -> ClientConnection {
    let name = ServerName::try_from("localhost").expect("server name");
    ClientConnection::new(config.clone(), name).expect("client connection")
}

/// Connects over TCP and completes the TLS handshake (each read bounded by
/// `PROMPT`). An error is the handshake failing: the server's certificate
/// refused, an alert from the broker, or the broker closing the socket.
///
/// In TLS 1.3 the client's handshake ends before the server has checked the
/// client's certificate; a refused certificate shows on the first read.
pub fn tls_connect(addr: SocketAddr, config: &Arc<ClientConfig>) -> io::Result<TlsStream> {
    let mut sock = TcpStream::connect(addr)?;
    sock.set_nodelay(true)?;
    sock.set_read_timeout(Some(PROMPT))?;
    let mut conn = client_connection(config);
    while conn.is_handshaking() {
        conn.complete_io(&mut sock)?;
    }
    Ok(StreamOwned::new(conn, sock))
}

/// The bytes of a ClientHello for `config`, as the first flight on the wire.
pub fn client_hello(config: &Arc<ClientConfig>) -> Vec<u8> {
    let mut conn = client_connection(config);
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).expect("write ClientHello");
    }
    assert!(
        out.len() > 40 && out[0] == 0x16,
        "a ClientHello is a handshake record: {out:?}"
    );
    out
}

/// One DER element at the start of `der`: (tag, contents, rest).
fn der_element(der: &[u8]) -> (u8, &[u8], &[u8]) {
    let tag = der[0];
    let (len, head) = match der[1] {
        n if n < 0x80 => (usize::from(n), 2),
        0x81 => (usize::from(der[2]), 3),
        0x82 => (usize::from(u16::from_be_bytes([der[2], der[3]])), 4),
        n => panic!("DER length form {n:#04x} not expected in a P-256 key"),
    };
    (tag, &der[head..head + len], &der[head + len..])
}

/// `leaf`'s key as a SEC1 PEM ("EC PRIVATE KEY"): the ECPrivateKey that
/// its PKCS#8 PrivateKeyInfo (RFC 5208: version, algorithm, privateKey
/// OCTET STRING) wraps.
pub fn sec1_key_pem(leaf: &Leaf) -> String {
    use base64::Engine;
    let (tag, info, _) = der_element(&leaf.key_der);
    assert_eq!(tag, 0x30, "PrivateKeyInfo is a SEQUENCE");
    let (_, _version, rest) = der_element(info);
    let (_, _algorithm, rest) = der_element(rest);
    let (tag, sec1, _) = der_element(rest);
    assert_eq!(tag, 0x04, "privateKey is an OCTET STRING");
    let b64 = base64::engine::general_purpose::STANDARD.encode(sec1);
    let mut pem = String::from("-----BEGIN EC PRIVATE KEY-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        pem.push('\n');
    }
    pem.push_str("-----END EC PRIVATE KEY-----\n");
    pem
}
