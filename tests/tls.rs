//! Black-box tests of the TLS listener (`mqtts://`): rumqttc v3.1.1 and v5
//! over TLS; server certificates the client does not trust; client
//! certificates (`--tls-ca`, `--require-certificate`) and the certificate
//! CN as username (`--use-identity-as-username`); bytes that are not TLS,
//! garbage inside the handshake, records cut at every byte, handshakes cut
//! short and stalled ones (`--connect-timeout-ms`, `--max-tls-handshakes`);
//! reloading the certificate files (`Broker::reload_tls`, what SIGHUP
//! does), good and bad; keep-alive, will (also after close_notify) and
//! take-over over TLS; a connection handed to the shard owning its client
//! id; 200 kB messages and bursts; plain and TLS listeners side by side;
//! TLS 1.2 and 1.3; ALPN "mqtt"; a SEC1 server key; flag validation.
//!
//! Certificates come from `common::certs::Pki` (rcgen, a fresh directory per
//! test). Raw clients are rustls `ClientConnection`s over a blocking
//! `TcpStream` carrying the hand-built packets of tests/common; a refused
//! handshake is asserted as "no CONNACK, and the socket ends", since in TLS
//! 1.3 a client only learns that its certificate was refused on its first
//! read after the handshake.

mod common;

use common::certs::*;
use common::*;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::ClientConfig;

/// A broker with one `mqtts://` listener on `pki`'s live files, plus `extra`.
fn tls_broker(pki: &Pki, extra: &[&str]) -> Broker {
    let mut flags = vec![
        "--listen",
        "mqtts://127.0.0.1:0",
        "--tls-cert",
        pki.cert.as_str(),
        "--tls-key",
        pki.key.as_str(),
    ];
    flags.extend_from_slice(extra);
    start(&flags)
}

/// A TLS connection for `opts`' client, its handshake asserted done.
fn tls_handshake(addr: SocketAddr, config: &Arc<ClientConfig>, opts: &ConnectOpts) -> TlsStream {
    tls_connect(addr, config)
        .unwrap_or_else(|e| panic!("TLS handshake for {:?} failed: {e}", opts.client_id))
}

/// A TLS connection (handshake done, asserted) that sent `opts`' CONNECT
/// and got a successful CONNACK.
fn tls_connected(
    addr: SocketAddr,
    config: &Arc<ClientConfig>,
    opts: &ConnectOpts,
) -> (PacketStream<TlsStream>, ConnAckInfo) {
    PacketStream::connected_over(tls_handshake(addr, config, opts), opts)
}

/// Like `tls_connected`, answering the CONNACK whatever its code.
fn tls_connack(
    addr: SocketAddr,
    config: &Arc<ClientConfig>,
    opts: &ConnectOpts,
) -> (PacketStream<TlsStream>, ConnAckInfo) {
    PacketStream::connect_over(tls_handshake(addr, config, opts), opts)
}

/// Asserts the broker refuses `config` at the TLS layer: the handshake
/// fails, or (TLS 1.3, where the client finishes first) the CONNECT sent
/// after it gets no CONNACK and the connection ends.
fn assert_tls_refused(addr: SocketAddr, config: &Arc<ClientConfig>, what: &str) {
    let stream = match tls_connect(addr, config) {
        Err(_) => return,
        Ok(stream) => stream,
    };
    let mut c = PacketStream::new(stream, false);
    // The write may already fail: the broker may have closed.
    let _ = c.send(&ConnectOpts::v3("refused").encode());
    match c.read_packet(PROMPT) {
        Err(ReadError::Closed) | Err(ReadError::Io(_)) => {}
        other => panic!("{what}: expected the TLS handshake to be refused, got {other:?}"),
    }
}

/// Asserts the broker counted `reloads` good and `failures` failed TLS
/// reloads.
fn assert_reloads(broker: &Broker, reloads: u64, failures: u64) {
    let stats = broker.stats();
    assert_eq!(
        (stats.tls_reloads, stats.tls_reload_failures),
        (reloads, failures),
        "{stats:?}"
    );
}

/// The rumqttc transport for `config`.
fn rumqttc_tls(config: &Arc<ClientConfig>) -> rumqttc::Transport {
    rumqttc::Transport::Tls(rumqttc::TlsConfiguration::Rustls(config.clone()))
}

#[test]
fn rumqttc_v3_and_v5_connect_subscribe_publish_receive_over_mqtts() {
    let pki = Pki::generate();
    let broker = tls_broker(&pki, &[]);
    let addr = broker.local_addr();
    let config = client_config(&pki.ca, None, &[]);

    let (mut v3, _) = V3Client::connect(addr, "tls-v3", |o| {
        o.set_transport(rumqttc_tls(&config));
    });
    let (mut v5, _) = V5Client::connect(addr, "tls-v5", |o| {
        o.set_transport(rumqttc_tls(&config));
    });
    exchange_v3_v5(&mut v3, &mut v5, "tls");
    let stats = broker.stats();
    assert_eq!(stats.connects, 2, "{stats:?}");
    assert_eq!(stats.tls_handshake_errors, 0, "{stats:?}");
}

#[test]
fn a_client_that_does_not_trust_the_server_certificate_fails_the_handshake() {
    let pki = Pki::generate();
    let broker = tls_broker(&pki, &[]);
    let addr = broker.local_addr();

    let mut opts = rumqttc::MqttOptions::new("wrong-ca", addr.ip().to_string(), addr.port());
    opts.set_transport(rumqttc_tls(&client_config(&pki.other, None, &[])));
    let (_client, mut conn) = rumqttc::Client::new(opts, 8);
    match conn.recv_timeout(PROMPT) {
        Ok(Err(rumqttc::ConnectionError::Tls(e))) => {
            let msg = format!("{e:?}");
            assert!(
                msg.contains("UnknownIssuer"),
                "refused for another reason than the unknown CA: {msg}"
            );
        }
        other => panic!("a client trusting another CA must fail the handshake: {other:?}"),
    }
    drop(conn);
    let stats = wait_stats(&broker, "handshake error counted", |s| {
        s.tls_handshake_errors == 1 && s.connections == 0
    });
    assert_eq!(stats.connects, 0, "{stats:?}");

    // The same client trusting the right CA connects.
    let (mut ok, _) = V3Client::connect(addr, "right-ca", |o| {
        o.set_transport(rumqttc_tls(&client_config(&pki.ca, None, &[])));
    });
    ok.subscribe("tls/ok", rumqttc::QoS::AtMostOnce);
}

#[test]
fn require_certificate_refuses_clients_without_a_valid_certificate() {
    let pki = Pki::generate();
    let broker = tls_broker(&pki, &["--tls-ca", &pki.ca.path, "--require-certificate"]);
    let addr = broker.local_addr();

    // No certificate, in TLS 1.2 (refused inside the handshake) and 1.3
    // (refused after the client's Finished).
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let config = client_config_versions(&pki.ca, None, &[], &[version]);
        assert_tls_refused(addr, &config, &format!("no certificate, {version:?}"));
    }
    // A certificate from a CA the broker does not trust.
    let config = client_config(&pki.ca, Some(&pki.other_device), &[]);
    assert_tls_refused(addr, &config, "client certificate from another CA");
    let stats = wait_stats(&broker, "three handshake errors", |s| {
        s.tls_handshake_errors == 3 && s.connections == 0
    });
    assert_eq!(stats.connects, 0, "{stats:?}");

    // A certificate from the trusted CA: accepted, and MQTT works.
    let config = client_config(&pki.ca, Some(&pki.device), &[]);
    let (mut c, _) = tls_connected(addr, &config, &ConnectOpts::v5("with-cert"));
    assert_eq!(c.subscribe(1, &[("cert/#", 1)]), [1]);
    c.publish1("cert/echo", b"mine", 7);
    let p = c.expect_publish(PROMPT);
    assert_eq!(
        (p.topic.as_str(), p.payload.as_slice()),
        ("cert/echo", &b"mine"[..])
    );
    // TLS 1.2 with the certificate too.
    let config =
        client_config_versions(&pki.ca, Some(&pki.device), &[], &[&rustls::version::TLS12]);
    let (mut c12, _) = tls_connected(addr, &config, &ConnectOpts::v3("with-cert-1.2"));
    c12.ping();
    assert_eq!(broker.stats().tls_handshake_errors, 3);
}

#[test]
fn an_untrusted_client_certificate_is_refused_without_harming_the_broker() {
    let pki = Pki::generate();
    let broker = tls_broker(&pki, &["--tls-ca", &pki.ca.path, "--require-certificate"]);
    let addr = broker.local_addr();
    let device = client_config(&pki.ca, Some(&pki.device), &[]);
    let (mut bystander, _) = tls_connected(addr, &device, &ConnectOpts::v5("bystander"));
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let config = client_config_versions(&pki.ca, Some(&pki.other_device), &[], &[version]);
        assert_tls_refused(
            addr,
            &config,
            &format!("untrusted certificate, {version:?}"),
        );
    }
    wait_stats(&broker, "two handshake errors", |s| {
        s.tls_handshake_errors == 2 && s.connections == 1
    });
    bystander.ping();
    let (mut again, _) = tls_connected(addr, &device, &ConnectOpts::v3("again"));
    again.ping();
}

/// A TCP stream that writes one byte per `write` call (TCP_NODELAY on), so
/// TLS records reach the broker cut at every byte.
struct Bytewise(TcpStream);

impl std::io::Read for Bytewise {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for Bytewise {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match buf.first() {
            Some(b) => self.0.write(std::slice::from_ref(b)),
            None => Ok(0),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl Timed for rustls::StreamOwned<rustls::ClientConnection, Bytewise> {
    fn limit_reads(&mut self, timeout: Duration) -> std::io::Result<()> {
        self.sock.0.limit_reads(timeout)
    }
}

#[test]
fn tls_bytes_arriving_one_at_a_time_are_reassembled() {
    let pki = Pki::generate();
    let broker = tls_broker(&pki, &["--tls-ca", &pki.ca.path]);
    let addr = broker.local_addr();
    for (i, version) in [&rustls::version::TLS12, &rustls::version::TLS13]
        .into_iter()
        .enumerate()
    {
        // With a client certificate: the longest client flight.
        let config = client_config_versions(&pki.ca, Some(&pki.device), &[], &[version]);
        let sock = TcpStream::connect(addr).expect("TCP connect");
        sock.set_nodelay(true).unwrap();
        sock.set_read_timeout(Some(PROMPT)).unwrap();
        let mut sock = Bytewise(sock);
        let mut conn = client_connection(&config);
        while conn.is_handshaking() {
            conn.complete_io(&mut sock)
                .unwrap_or_else(|e| panic!("{version:?} handshake byte by byte: {e}"));
        }
        let stream = rustls::StreamOwned::new(conn, sock);
        let (mut c, _) =
            PacketStream::connected_over(stream, &ConnectOpts::v5(&format!("bytewise-{i}")));
        assert_eq!(c.subscribe(1, &[("bytewise/#", 1)]), [1]);
        c.publish1("bytewise/x", &[0x5A; 3000], 2);
        assert_eq!(c.expect_publish(PROMPT).payload, [0x5A; 3000]);
    }
    assert_eq!(broker.stats().tls_handshake_errors, 0);
}

#[test]
fn garbage_inside_the_handshake_is_refused_and_counted() {
    let pki = Pki::generate();
    let broker = tls_broker(&pki, &[]);
    let addr = broker.local_addr();
    let config = client_config(&pki.ca, None, &[]);
    let (mut bystander, _) = tls_connected(addr, &config, &ConnectOpts::v3("bystander"));
    let hello = client_hello(&config);

    // A ClientHello followed at once by a broken handshake record.
    let mut s = TcpStream::connect(addr).expect("TCP connect");
    let mut bytes = hello.clone();
    bytes.extend_from_slice(&[0x16, 0x03, 0x03, 0x00, 0x05, 0xFF, 0x00, 0x00, 0x01, 0x00]);
    s.write_all(&bytes).unwrap();
    read_until_closed(&mut s, PROMPT, "broken second handshake record");

    // A ClientHello, the server's flight, then a record that cannot decrypt.
    let mut s = TcpStream::connect(addr).expect("TCP connect");
    s.write_all(&hello).unwrap();
    s.set_read_timeout(Some(PROMPT)).unwrap();
    let mut first = [0u8; 1];
    std::io::Read::read_exact(&mut s, &mut first).expect("the server's first flight");
    let mut record = vec![0x17, 0x03, 0x03, 0x00, 0x30];
    record.extend((0..0x30u8).map(|i| i.wrapping_mul(37)));
    s.write_all(&record).unwrap();
    read_until_closed(&mut s, PROMPT, "undecryptable record");

    // A record header announcing more than TLS allows (2^14 + 2048).
    let mut s = TcpStream::connect(addr).expect("TCP connect");
    s.write_all(&[0x16, 0x03, 0x01, 0xFF, 0xFF, 0x01]).unwrap();
    read_until_closed(&mut s, PROMPT, "oversized record");

    wait_stats(&broker, "three handshake errors", |s| {
        s.tls_handshake_errors == 3 && s.connections == 1
    });
    bystander.ping();
}

#[test]
fn identity_as_username_accepts_a_cn_and_refuses_no_cn_or_no_certificate() {
    let pki = Pki::generate();
    let broker = tls_broker(
        &pki,
        &["--tls-ca", &pki.ca.path, "--use-identity-as-username"],
    );
    let addr = broker.local_addr();
    let with_cn = client_config(&pki.ca, Some(&pki.device), &[]);
    let no_cn = client_config(&pki.ca, Some(&pki.no_cn), &[]);
    let no_cert = client_config(&pki.ca, None, &[]);

    for (config, what) in [
        (&no_cn, "certificate without CN"),
        (&no_cert, "no certificate"),
    ] {
        // v5 0x87 Not authorized (3.2.2.2), v3.1.1 0x05 not authorized (3.2.2.3).
        let (mut c, ack) = tls_connack(addr, config, &ConnectOpts::v5(&format!("{what} v5")));
        assert_eq!(ack.code, 0x87, "{what}, v5: {ack:?}");
        assert!(!ack.session_present, "{ack:?}");
        c.expect_closed(PROMPT, "refused CONNECT");
        let (mut c, ack) = tls_connack(addr, config, &ConnectOpts::v3(&format!("{what} v3")));
        assert_eq!(ack.code, 0x05, "{what}, v3.1.1: {ack:?}");
        c.expect_closed(PROMPT, "refused CONNECT");
    }
    let stats = wait_stats(&broker, "four refusals", |s| {
        s.connects_refused == 4 && s.connections == 0
    });
    assert_eq!(stats.connects, 0, "{stats:?}");
    assert_eq!(
        stats.tls_handshake_errors, 0,
        "refused in MQTT, not TLS: {stats:?}"
    );

    // CN "device-7": accepted in both versions, a username in CONNECT or not.
    let (mut a, _) = tls_connected(addr, &with_cn, &ConnectOpts::v5("cn-v5"));
    a.ping();
    let (mut b, _) = tls_connected(addr, &with_cn, &ConnectOpts::v3("cn-v3"));
    assert_eq!(b.subscribe(1, &[("id/x", 0)]), [0]);
    a.publish0("id/x", b"hello device-7");
    assert_eq!(b.expect_publish(PROMPT).payload, b"hello device-7");
    wait_stats(&broker, "two accepted", |s| s.connects == 2);
}

#[test]
fn tls_ca_without_require_certificate_makes_the_certificate_optional() {
    let pki = Pki::generate();
    let broker = tls_broker(&pki, &["--tls-ca", &pki.ca.path]);
    let addr = broker.local_addr();
    let (mut none, _) = tls_connected(
        addr,
        &client_config(&pki.ca, None, &[]),
        &ConnectOpts::v3("no-cert"),
    );
    none.ping();
    let (mut with, _) = tls_connected(
        addr,
        &client_config(&pki.ca, Some(&pki.device), &[]),
        &ConnectOpts::v5("cert"),
    );
    with.ping();
    // A certificate that is presented is still verified.
    assert_tls_refused(
        addr,
        &client_config(&pki.ca, Some(&pki.other_device), &[]),
        "client certificate from another CA",
    );
    wait_stats(&broker, "one handshake error", |s| {
        s.tls_handshake_errors == 1 && s.connections == 2
    });
}

#[test]
fn large_messages_and_bursts_cross_tls_intact() {
    let pki = Pki::generate();
    let broker = tls_broker(&pki, &["--listen", "mqtt://127.0.0.1:0"]);
    let (tls, plain) = (broker.local_addrs()[0], broker.local_addrs()[1]);
    let config = client_config(&pki.ca, None, &[]);
    let (mut tls_sub, _) = tls_connected(tls, &config, &ConnectOpts::v3("big-tls-sub"));
    assert_eq!(tls_sub.subscribe(1, &[("big/#", 0)]), [0]);
    let (mut plain_sub, _) = RawClient::connected(plain, &ConnectOpts::v3("big-plain-sub"));
    assert_eq!(plain_sub.subscribe(1, &[("big/tls", 0)]), [0]);
    let (mut tls_pub, _) = tls_connected(tls, &config, &ConnectOpts::v5("big-tls-pub"));
    let (mut plain_pub, _) = RawClient::connected(plain, &ConnectOpts::v5("big-plain-pub"));

    // 200 kB: many TLS records each way.
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    tls_pub.publish1("big/tls", &payload, 1);
    assert!(
        tls_sub.expect_publish(PROMPT).payload == payload,
        "TLS in, TLS out"
    );
    assert!(
        plain_sub.expect_publish(PROMPT).payload == payload,
        "TLS in, TCP out"
    );
    plain_pub.publish1("big/plain", &payload, 1);
    assert!(
        tls_sub.expect_publish(PROMPT).payload == payload,
        "TCP in, TLS out"
    );

    // 300 packets in one write, through TLS both ways, in order.
    let mut burst = Vec::new();
    for i in 0..300u16 {
        let mut body = i.to_be_bytes().to_vec();
        body.resize(1000, 0xAB);
        burst.extend(publish_packet("big/burst", &body, 0, 0, false, true));
    }
    tls_pub.send(&burst).unwrap();
    for i in 0..300u16 {
        let p = tls_sub.expect_publish(PROMPT);
        assert_eq!(
            (p.topic.as_str(), &p.payload[..2], p.payload.len()),
            ("big/burst", &i.to_be_bytes()[..], 1000),
            "message {i} of the burst"
        );
    }
    let stats = broker.stats();
    assert_eq!(stats.publishes_dropped, 0, "{stats:?}");
}

#[test]
fn a_tls_connection_handed_to_the_shard_owning_its_client_id_keeps_working() {
    let pki = Pki::generate();
    let broker = tls_broker(&pki, &[]);
    let addr = broker.local_addr();
    let config = client_config(&pki.ca, None, &[]);
    let (mut publisher, _) = tls_connected(addr, &config, &ConnectOpts::v3("ho-pub"));
    // The accepting shard ran the handshake; the owner carries on with it.
    let (mut c, _) = handed_off(&broker, "ho-tls-", |id| {
        tls_connected(addr, &config, &ConnectOpts::v5(id))
    });
    assert_eq!(c.subscribe(1, &[("handoff/tls", 1)]), [1]);
    publisher.publish1("handoff/tls", b"after the hand-off", 1);
    let p = c.expect_publish(PROMPT);
    assert_eq!(p.payload, b"after the hand-off");
    c.publish1("handoff/back", b"and back", 2);
    c.ping();
    assert_eq!(broker.stats().tls_handshake_errors, 0);
}

#[test]
fn clear_mqtt_on_the_tls_port_is_closed_and_counted_without_disturbing_tls_clients() {
    let pki = Pki::generate();
    let broker = tls_broker(&pki, &[]);
    let addr = broker.local_addr();
    let config = client_config(&pki.ca, None, &[]);
    let (mut sub, _) = tls_connected(addr, &config, &ConnectOpts::v3("tls-sub"));
    assert_eq!(sub.subscribe(1, &[("clear/#", 0)]), [0]);
    let (mut publisher, _) = tls_connected(addr, &config, &ConnectOpts::v5("tls-pub"));

    let mut clear = TcpStream::connect(addr).expect("TCP connect");
    clear
        .write_all(&ConnectOpts::v3("in-clear").encode())
        .expect("send CONNECT in clear");
    let got = read_until_closed(&mut clear, PROMPT, "CONNECT in clear on mqtts");
    // Nothing but possibly a TLS alert record (content type 21).
    assert!(
        got.is_empty() || got[0] == 0x15,
        "expected nothing or a TLS alert, got {got:?}"
    );
    let stats = wait_stats(&broker, "handshake error counted", |s| {
        s.tls_handshake_errors == 1 && s.connections == 2
    });
    assert_eq!(stats.connects, 2, "{stats:?}");

    publisher.publish0("clear/after", b"undisturbed");
    let p = sub.expect_publish(PROMPT);
    assert_eq!(
        (p.topic.as_str(), p.payload.as_slice()),
        ("clear/after", &b"undisturbed"[..])
    );
    publisher.ping();
    sub.ping();
}

#[test]
fn a_handshake_stalled_halfway_is_closed_by_the_connect_timeout() {
    let pki = Pki::generate();
    let broker = tls_broker(&pki, &["--connect-timeout-ms", "500"]);
    let addr = broker.local_addr();
    let config = client_config(&pki.ca, None, &[]);
    let hello = client_hello(&config);

    let opened = Instant::now();
    let mut stalled = TcpStream::connect(addr).expect("TCP connect");
    stalled
        .write_all(&hello[..hello.len() / 2])
        .expect("send half a ClientHello");
    // A whole handshake and then no CONNECT: the deadline counts from
    // accept, not from the end of the handshake.
    let mut mute = PacketStream::new(tls_connect(addr, &config).expect("handshake"), false);
    // A client that completes everything at once is not affected.
    let (mut prompt, _) = tls_connected(addr, &config, &ConnectOpts::v3("prompt").keep_alive(0));

    let got = read_until_closed(&mut stalled, Duration::from_secs(5), "stalled ClientHello");
    let after = opened.elapsed();
    let packets = mute.expect_closed(Duration::from_secs(5), "handshake done, no CONNECT");
    assert!(packets.is_empty(), "{packets:?}");
    let mute_after = opened.elapsed();
    assert!(
        mute_after <= Duration::from_millis(500 + TICK_MS) + MARGIN,
        "the silent TLS client closed after {mute_after:?}"
    );
    assert!(
        got.is_empty() || got[0] == 0x15,
        "half a ClientHello got something else than an alert: {got:?}"
    );
    assert_connect_timeout_window(after, 500);
    wait_stats(&broker, "connect timeouts counted", |s| {
        s.connect_timeouts == 2 && s.connections == 1
    });
    prompt.expect_silence(
        Duration::from_millis(600),
        "a connected TLS client has no connect timeout",
    );
    prompt.ping();
}

#[test]
fn a_peer_that_closes_mid_handshake_is_counted() {
    let pki = Pki::generate();
    // The default connect timeout (10 s) is far away: what closes these is
    // the peer, and what counts them is the handshake failing.
    let broker = tls_broker(&pki, &[]);
    let addr = broker.local_addr();
    let config = client_config(&pki.ca, None, &[]);
    let hello = client_hello(&config);

    // Half a ClientHello, then FIN.
    let mut half = TcpStream::connect(addr).expect("TCP connect");
    half.write_all(&hello[..hello.len() / 2]).unwrap();
    half.shutdown(std::net::Shutdown::Write).unwrap();
    read_until_closed(&mut half, PROMPT, "FIN after half a ClientHello");

    // A whole ClientHello, then FIN once the server's flight is in.
    let mut whole = TcpStream::connect(addr).expect("TCP connect");
    whole.write_all(&hello).unwrap();
    whole.set_read_timeout(Some(PROMPT)).unwrap();
    let mut first = [0u8; 1];
    std::io::Read::read_exact(&mut whole, &mut first).expect("the server's first flight");
    assert_eq!(first[0], 0x16, "ServerHello is a handshake record");
    whole.shutdown(std::net::Shutdown::Write).unwrap();
    read_until_closed(&mut whole, PROMPT, "FIN after the ClientHello");

    let stats = wait_stats(&broker, "two handshake errors", |s| {
        s.tls_handshake_errors == 2 && s.connections == 0
    });
    assert_eq!(stats.connect_timeouts, 0, "{stats:?}");
    let (mut ok, _) = tls_connected(addr, &config, &ConnectOpts::v5("after"));
    ok.ping();
}

#[test]
fn reload_switches_new_handshakes_to_the_new_certificate_and_keeps_connections() {
    let pki = Pki::generate();
    let broker = tls_broker(&pki, &[]);
    let addr = broker.local_addr();
    let trust_main = client_config(&pki.ca, None, &[]);
    let trust_other = client_config(&pki.other, None, &[]);
    assert_tls_refused(addr, &trust_other, "other CA before the reload");

    let (mut one, _) = tls_connected(addr, &trust_main, &ConnectOpts::v5("before-reload"));
    assert_eq!(one.subscribe(1, &[("reload/#", 1)]), [1]);

    pki.install(&pki.other_server);
    broker
        .reload_tls()
        .expect("reload with a valid certificate");
    assert_reloads(&broker, 1, 0);

    // New handshakes get the new certificate: only the other CA works now.
    let (mut two, _) = tls_connected(addr, &trust_other, &ConnectOpts::v3("after-reload"));
    assert_tls_refused(addr, &trust_main, "main CA after the reload");

    // The connection made before the reload still works both ways.
    two.publish0("reload/new", b"from the new certificate");
    let p = one.expect_publish(PROMPT);
    assert_eq!(
        (p.topic.as_str(), p.payload.as_slice()),
        ("reload/new", &b"from the new certificate"[..])
    );
    one.publish1("reload/old", b"still here", 9);
    let p = one.expect_publish(PROMPT);
    assert_eq!(
        (p.topic.as_str(), p.payload.as_slice()),
        ("reload/old", &b"still here"[..])
    );
    one.ping();
    two.ping();
    wait_stats(&broker, "both connections open", |s| s.connections == 2);
}

#[test]
fn a_failed_reload_returns_an_error_and_keeps_the_old_certificate() {
    let pki = Pki::generate();
    let broker = tls_broker(&pki, &[]);
    let addr = broker.local_addr();
    let trust_main = client_config(&pki.ca, None, &[]);
    let (mut before, _) = tls_connected(addr, &trust_main, &ConnectOpts::v5("before"));

    pki.install_raw("not a certificate\n", "not a key\n");
    let err = broker
        .reload_tls()
        .expect_err("garbage certificate and key files");
    assert!(!err.is_empty(), "the error says why");
    // A good certificate with another certificate's key: serving it would
    // fail every handshake, so it must be refused as well.
    pki.install_raw(&pki.server.chain_pem, &pki.other_server.key_pem);
    broker
        .reload_tls()
        .expect_err("a key that does not match the certificate");
    assert_reloads(&broker, 0, 2);

    // New clients still get the old material; old ones are untouched.
    let (mut after, _) = tls_connected(addr, &trust_main, &ConnectOpts::v3("after"));
    after.ping();
    before.ping();
    assert_tls_refused(addr, &client_config(&pki.other, None, &[]), "other CA");

    // A good reload after the failed ones works.
    pki.install(&pki.other_server);
    broker.reload_tls().expect("valid files again");
    let (mut other, _) = tls_connected(
        addr,
        &client_config(&pki.other, None, &[]),
        &ConnectOpts::v5("other"),
    );
    other.ping();
    assert_reloads(&broker, 1, 2);
}

#[test]
fn reload_also_rereads_the_client_ca() {
    let pki = Pki::generate();
    let ca_file = pki.path("clients-ca.pem");
    std::fs::write(&ca_file, &pki.ca.pem).unwrap();
    let broker = tls_broker(&pki, &["--tls-ca", &ca_file, "--require-certificate"]);
    let addr = broker.local_addr();
    let main_device = client_config(&pki.ca, Some(&pki.device), &[]);
    let other_device = client_config(&pki.ca, Some(&pki.other_device), &[]);
    let (mut kept, _) = tls_connected(addr, &main_device, &ConnectOpts::v3("kept"));
    assert_tls_refused(addr, &other_device, "device of the other CA before");

    std::fs::write(&ca_file, &pki.other.pem).unwrap();
    broker.reload_tls().expect("reload with a new client CA");
    let (mut c, _) = tls_connected(addr, &other_device, &ConnectOpts::v5("other-device"));
    c.ping();
    assert_tls_refused(addr, &main_device, "device of the main CA after");
    kept.ping();
}

#[test]
fn silent_mqtts_client_is_closed_after_1_5_keep_alive_and_its_will_published() {
    let pki = Pki::generate();
    let broker = tls_broker(&pki, &[]);
    let addr = broker.local_addr();
    let config = client_config(&pki.ca, None, &[]);
    let (mut watcher, _) =
        tls_connected(addr, &config, &ConnectOpts::v3("tls-watcher").keep_alive(0));
    assert_eq!(watcher.subscribe(1, &[("will/tls/#", 0)]), [0]);

    // The handshake comes first, so the window measures MQTT only.
    let stream = tls_connect(addr, &config).expect("TLS handshake");
    let mut silent = PacketStream::new(stream, false);
    let opts = ConnectOpts::v3(&id_on_shard("tls-silent-", 1))
        .keep_alive(1)
        .will(WillOpts::new("will/tls/silent", "gone"));
    let sent = Instant::now();
    silent.send(&opts.encode()).unwrap();
    let ack = silent.expect_packet(PROMPT, "CONNACK").connack(false);
    let acked = Instant::now();
    assert_eq!(ack.code, 0, "{ack:?}");

    let packets = silent.expect_closed(Duration::from_secs(5), "keep-alive expiry");
    let closed = Instant::now();
    assert!(
        packets.is_empty(),
        "v3.1.1 has no server DISCONNECT: {packets:?}"
    );
    assert_close_window(
        sent,
        acked,
        closed,
        Duration::from_millis(1500),
        "mqtts K=1",
    );

    let will = watcher.expect_publish(PROMPT);
    assert_eq!(
        (will.topic.as_str(), will.payload.as_slice()),
        ("will/tls/silent", &b"gone"[..])
    );
    wait_stats(&broker, "expiry and will counted", |s| {
        s.keepalive_expired == 1 && s.wills_published == 1 && s.connections == 1
    });
}

#[test]
fn close_notify_without_disconnect_ends_the_connection_and_publishes_the_will() {
    let pki = Pki::generate();
    let broker = tls_broker(&pki, &[]);
    let addr = broker.local_addr();
    let config = client_config(&pki.ca, None, &[]);
    let (mut watcher, _) = tls_connected(addr, &config, &ConnectOpts::v3("cn-watcher"));
    assert_eq!(watcher.subscribe(1, &[("will/tls/#", 0)]), [0]);
    let opts = ConnectOpts::v5("notifier").will(WillOpts::new("will/tls/notify", "no DISCONNECT"));
    let (mut c, _) = tls_connected(addr, &config, &opts);
    // A TLS close is not an MQTT DISCONNECT (MQTT-3.1.2-8).
    c.stream.conn.send_close_notify();
    c.stream.flush().unwrap();
    c.expect_closed(PROMPT, "after close_notify");
    let will = watcher.expect_publish(PROMPT);
    assert_eq!(
        (will.topic.as_str(), will.payload.as_slice()),
        ("will/tls/notify", &b"no DISCONNECT"[..])
    );
    let stats = wait_stats(&broker, "closed", |s| s.connections == 1);
    assert_eq!(stats.tls_handshake_errors, 0, "{stats:?}");
}

#[test]
fn takeover_over_mqtts_sends_0x8e_and_resumes_the_session() {
    let pki = Pki::generate();
    let broker = tls_broker(&pki, &[]);
    let addr = broker.local_addr();
    let config = client_config(&pki.ca, None, &[]);
    let (mut publisher, _) = tls_connected(addr, &config, &ConnectOpts::v3("tk-tls-pub"));
    let keep = ConnectOpts::v5(&id_on_shard("tk-tls-", 1))
        .clean(false)
        .session_expiry(60);

    let (mut first, ack) = tls_connected(addr, &config, &keep);
    assert!(!ack.session_present, "brand-new session: {ack:?}");
    assert_eq!(first.subscribe(1, &[("tk/tls", 0)]), [0]);
    let (mut second, ack) = tls_connected(addr, &config, &keep);
    assert!(ack.session_present, "clean start 0 resumes: {ack:?}");
    let old = first.expect_closed(PROMPT, "taken over");
    assert!(
        matches!(old.last(), Some(p) if p.is_disconnect(0x8E)),
        "the old TLS connection must get DISCONNECT 0x8E: {old:?}"
    );

    publisher.publish0("tk/tls", b"resumed");
    let p = second.expect_publish(PROMPT);
    assert_eq!(
        (p.topic.as_str(), p.payload.as_slice()),
        ("tk/tls", &b"resumed"[..])
    );
    let stats = wait_stats(&broker, "one take-over", |s| {
        s.takeovers == 1 && s.connections == 2
    });
    assert_eq!(stats.tls_handshake_errors, 0, "{stats:?}");
}

#[test]
fn plain_and_tls_listeners_exchange_messages_both_ways() {
    let pki = Pki::generate();
    let broker = start(&[
        "--listen",
        "mqtt://127.0.0.1:0",
        "--listen",
        "mqtts://127.0.0.1:0",
        "--tls-cert",
        &pki.cert,
        "--tls-key",
        &pki.key,
    ]);
    let addrs = broker.local_addrs().to_vec();
    assert_eq!(addrs.len(), 2, "one address per --listen: {addrs:?}");
    let (plain, tls) = (addrs[0], addrs[1]);
    assert_ne!(plain.port(), tls.port(), "{addrs:?}");
    assert_eq!(
        broker.local_addr(),
        plain,
        "local_addr is the first listener"
    );
    let config = client_config(&pki.ca, None, &[]);

    let (mut plain_sub, _) = RawClient::connected(plain, &ConnectOpts::v3("plain-sub"));
    assert_eq!(plain_sub.subscribe(1, &[("mix/plain", 1)]), [1]);
    let (mut tls_sub, _) = tls_connected(tls, &config, &ConnectOpts::v5("tls-sub"));
    assert_eq!(tls_sub.subscribe(1, &[("mix/tls", 1)]), [1]);

    let (mut tls_pub, _) = tls_connected(tls, &config, &ConnectOpts::v3("tls-pub"));
    tls_pub.publish1("mix/plain", b"tls to plain", 1);
    let p = plain_sub.expect_publish(PROMPT);
    assert_eq!(
        (p.topic.as_str(), p.payload.as_slice()),
        ("mix/plain", &b"tls to plain"[..])
    );
    let (mut plain_pub, _) = RawClient::connected(plain, &ConnectOpts::v5("plain-pub"));
    plain_pub.publish1("mix/tls", b"plain to tls", 1);
    let p = tls_sub.expect_publish(PROMPT);
    assert_eq!(
        (p.topic.as_str(), p.payload.as_slice()),
        ("mix/tls", &b"plain to tls"[..])
    );

    // Each port speaks only its own transport.
    assert!(
        tls_connect(plain, &config).is_err(),
        "a TLS handshake on the plain port must fail"
    );
    wait_stats(&broker, "four clients", |s| s.connections == 4);
}

#[test]
fn tls_1_2_only_and_tls_1_3_only_clients_both_work_and_alpn_mqtt_is_chosen() {
    use rustls::ProtocolVersion;
    let pki = Pki::generate();
    let broker = tls_broker(&pki, &[]);
    let addr = broker.local_addr();
    let cases = [
        (&rustls::version::TLS12, ProtocolVersion::TLSv1_2),
        (&rustls::version::TLS13, ProtocolVersion::TLSv1_3),
    ];
    for (i, (version, wire)) in cases.into_iter().enumerate() {
        let config = client_config_versions(&pki.ca, None, &[b"mqtt"], &[version]);
        let stream = tls_connect(addr, &config).unwrap_or_else(|e| panic!("{wire:?}: {e}"));
        assert_eq!(stream.conn.protocol_version(), Some(wire));
        assert_eq!(
            stream.conn.alpn_protocol(),
            Some(&b"mqtt"[..]),
            "{wire:?}: ALPN mqtt offered and expected back"
        );
        let (mut c, _) =
            PacketStream::connected_over(stream, &ConnectOpts::v5(&format!("ver-{i}")));
        assert_eq!(c.subscribe(1, &[("ver/#", 1)]), [1]);
        c.publish1(&format!("ver/{i}"), b"x", 3);
        assert_eq!(c.expect_publish(PROMPT).topic, format!("ver/{i}"));
    }
    // No ALPN at all is accepted too.
    let config = client_config(&pki.ca, None, &[]);
    let stream = tls_connect(addr, &config).expect("handshake without ALPN");
    assert_eq!(stream.conn.alpn_protocol(), None);
    let (mut c, _) = PacketStream::connected_over(stream, &ConnectOpts::v3("no-alpn"));
    c.ping();
}

#[test]
fn max_tls_handshakes_refuses_new_tls_sockets_while_plain_ones_still_work() {
    let pki = Pki::generate();
    // One shard: the limit is per shard, so every socket must meet it.
    let broker = start(&[
        "--shards",
        "1",
        "--listen",
        "mqtts://127.0.0.1:0",
        "--listen",
        "mqtt://127.0.0.1:0",
        "--tls-cert",
        &pki.cert,
        "--tls-key",
        &pki.key,
        "--max-tls-handshakes",
        "1",
        "--connect-timeout-ms",
        "30000",
    ]);
    let (tls, plain) = (broker.local_addrs()[0], broker.local_addrs()[1]);
    let config = client_config(&pki.ca, None, &[]);
    let hello = client_hello(&config);

    let mut stalled = TcpStream::connect(tls).expect("TCP connect");
    stalled.write_all(&hello[..hello.len() / 2]).unwrap();
    wait_stats(&broker, "stalled handshake accepted", |s| {
        s.connections == 1
    });

    assert_tls_refused(tls, &config, "a TLS socket beyond --max-tls-handshakes");
    wait_stats(&broker, "refusal counted", |s| {
        s.tls_handshakes_refused == 1 && s.connections == 1
    });
    let (mut c, _) = RawClient::connected(plain, &ConnectOpts::v3("plain-while-full"));
    c.ping();

    // The stalled handshake ends: its place is free again.
    drop(stalled);
    wait_stats(&broker, "stalled handshake gone", |s| {
        s.tls_handshake_errors == 1 && s.connections == 1
    });
    let (mut t, _) = tls_connected(tls, &config, &ConnectOpts::v5("tls-after"));
    t.ping();
    // A finished handshake does not hold a place either.
    let (mut u, _) = tls_connected(tls, &config, &ConnectOpts::v5("tls-after-2"));
    u.ping();
    assert_eq!(broker.stats().tls_handshakes_refused, 1);
}

#[test]
fn server_key_in_sec1_form_is_accepted() {
    let pki = Pki::generate();
    pki.install_raw(&pki.server.chain_pem, &sec1_key_pem(&pki.server));
    let broker = tls_broker(&pki, &[]);
    let (mut c, _) = tls_connected(
        broker.local_addr(),
        &client_config(&pki.ca, None, &[]),
        &ConnectOpts::v5("sec1"),
    );
    c.ping();
}

/// The message of the error `extra`'s flags make, from `Config::from_args`
/// or from `Broker::start` (which reads the files).
fn start_error(extra: &[&str]) -> String {
    let argv = args(extra);
    match Config::from_args(argv.clone()) {
        Err(e) => e.to_string(),
        Ok(config) => match Broker::start(config) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{argv:?} was accepted"),
        },
    }
}

#[test]
fn tls_flags_are_validated() {
    let pki = Pki::generate();
    let msg = start_error(&["--listen", "mqtts://127.0.0.1:0"]);
    assert!(
        msg.contains("tls-cert"),
        "mqtts without a certificate: {msg}"
    );
    let msg = start_error(&[
        "--listen",
        "mqtts://127.0.0.1:0",
        "--tls-cert",
        &pki.cert,
        "--tls-key",
        &pki.key,
        "--require-certificate",
    ]);
    assert!(
        msg.contains("tls-ca"),
        "--require-certificate without CA: {msg}"
    );
    let missing = pki.path("missing.pem");
    let msg = start_error(&[
        "--listen",
        "mqtts://127.0.0.1:0",
        "--tls-cert",
        &missing,
        "--tls-key",
        &pki.key,
    ]);
    assert!(
        msg.contains("missing.pem"),
        "a certificate file that does not exist is named: {msg}"
    );
    let msg = start_error(&["--listen", "gopher://127.0.0.1:0"]);
    assert!(msg.contains("listen"), "unknown scheme: {msg}");
}

#[test]
fn packets_in_the_read_that_carries_close_notify_are_handled_first() {
    // Ten PUBLISHes, a DISCONNECT and close_notify in one write: the
    // broker decrypts them in one read and must handle the packets before
    // it ends the connection (every message delivered, no will).
    let pki = Pki::generate();
    let broker = tls_broker(&pki, &[]);
    let addr = broker.local_addr();
    let config = client_config(&pki.ca, None, &[]);
    let (mut watcher, _) = tls_connected(addr, &config, &ConnectOpts::v3("last-watcher"));
    assert_eq!(watcher.subscribe(1, &[("last/#", 0)]), [0]);
    let opts = ConnectOpts::v5("last-words").will(WillOpts::new("last/will", "gone"));
    let (mut c, _) = tls_connected(addr, &config, &opts);
    let conn = &mut c.stream.conn;
    for i in 0..10 {
        let publish = publish_packet("last/msg", format!("m{i}").as_bytes(), 0, 0, false, true);
        conn.writer().write_all(&publish).unwrap();
    }
    conn.writer().write_all(&disconnect_v5(0)).unwrap();
    conn.send_close_notify();
    let mut records = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut records).unwrap();
    }
    c.stream.sock.write_all(&records).unwrap();
    assert_last_words_handled(&broker, &mut watcher);
}
