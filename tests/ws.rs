//! Black-box tests of the WebSocket listeners (`ws://`, `wss://`; MQTT 5.0
//! section 6, RFC 6455): rumqttc v3.1.1 and v5 over ws and wss; MQTT bytes
//! that do not line up with frames (a packet over several frames, several
//! packets in one frame, a packet in a fragmented message with a ping in
//! between); ping, text frames (close 1003), close frames, unmasked frames,
//! frames over `--max-packet-size` (close 1009) and fragmented messages
//! that would get a packet past it; 200 kB messages both ways; the HTTP
//! upgrade: path (404), key (400), subprotocol (`mqtt`, `mqttv3.1`, none
//! with and without `--ws-allow-no-subprotocol`), the accept value, other
//! malformed requests (4xx), bytes that are not HTTP, bytes sent with the
//! request, listener paths; `--connect-timeout-ms` over the upgrade;
//! keep-alive, will and take-over over WebSocket; connections handed to
//! the shard owning their client id.
//!
//! Clients: tungstenite over a blocking `TcpStream` (or a rustls stream for
//! wss), carrying the hand-built packets of tests/common through
//! `WsBytes`, which turns binary messages into a byte stream; and a raw
//! socket (`RawWs`) writing requests and frames byte by byte where
//! tungstenite would refuse to misbehave.

mod common;

use common::certs::*;
use common::*;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use tungstenite::client::IntoClientRequest;
use tungstenite::http::HeaderValue;
use tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tungstenite::protocol::frame::{CloseFrame, Frame};
use tungstenite::{Message, WebSocket};

/// The RFC 6455 section 1.3 sample key and its accept value.
const SAMPLE_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
/// SHA-1 of `SAMPLE_KEY` + the GUID, base64.
const SAMPLE_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// A broker with one `ws://` listener on /mqtt, plus `extra`.
fn ws_broker(extra: &[&str]) -> Broker {
    let mut flags = vec!["--listen", "ws://127.0.0.1:0/mqtt"];
    flags.extend_from_slice(extra);
    start(&flags)
}

// ---------------------------------------------------------------------------
// tungstenite clients
// ---------------------------------------------------------------------------

/// Runs the client upgrade for `url` over `stream`, offering subprotocol
/// `mqtt`; asserts the broker answered `mqtt`.
fn ws_handshake<S: Read + Write>(stream: S, url: &str) -> WebSocket<S> {
    let mut request = url.into_client_request().expect("WebSocket URL");
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("mqtt"));
    match tungstenite::client(request, stream) {
        Ok((ws, response)) => {
            assert_eq!(response.status().as_u16(), 101, "{response:?}");
            assert_eq!(
                response
                    .headers()
                    .get("Sec-WebSocket-Protocol")
                    .map(|v| v.as_bytes()),
                Some(&b"mqtt"[..]),
                "{response:?}"
            );
            ws
        }
        Err(tungstenite::HandshakeError::Failure(e)) => panic!("upgrade of {url} failed: {e}"),
        Err(tungstenite::HandshakeError::Interrupted(_)) => {
            panic!("upgrade of {url} did not finish within {PROMPT:?}")
        }
    }
}

/// A TCP connection to `addr` upgraded on /mqtt.
fn ws_open(addr: SocketAddr) -> WebSocket<TcpStream> {
    let stream = TcpStream::connect(addr).expect("TCP connect");
    stream.set_nodelay(true).unwrap();
    stream.set_read_timeout(Some(PROMPT)).unwrap();
    ws_handshake(stream, &format!("ws://{addr}/mqtt"))
}

/// A WebSocket as a byte stream: every write is one binary message, reads
/// give the payloads of binary messages in order. A close frame from the
/// broker reads as EOF (kept in `close`); pings are answered by tungstenite
/// and pongs skipped; a text message from the broker is an error.
struct WsBytes<S: Read + Write> {
    ws: WebSocket<S>,
    pending: Vec<u8>,
    /// The close frame the broker sent, once one came (`Some(None)`: a
    /// close frame without a status code).
    close: Option<Option<CloseFrame>>,
}

impl<S: Read + Write> WsBytes<S> {
    fn new(ws: WebSocket<S>) -> WsBytes<S> {
        WsBytes {
            ws,
            pending: Vec::new(),
            close: None,
        }
    }
}

fn ws_error(e: tungstenite::Error) -> io::Error {
    match e {
        tungstenite::Error::Io(e) => e,
        other => io::Error::other(other),
    }
}

impl<S: Read + Write> Read for WsBytes<S> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pending.is_empty() {
            match self.ws.read() {
                Ok(Message::Binary(b)) => self.pending.extend_from_slice(&b),
                Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => {}
                Ok(Message::Text(t)) => {
                    return Err(io::Error::other(format!("broker sent a text frame: {t}")))
                }
                Ok(Message::Close(frame)) => {
                    self.close = Some(frame);
                    return Ok(0);
                }
                Err(
                    tungstenite::Error::ConnectionClosed
                    | tungstenite::Error::AlreadyClosed
                    | tungstenite::Error::Protocol(
                        tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
                    ),
                ) => return Ok(0),
                Err(e) => return Err(ws_error(e)),
            }
        }
        let n = out.len().min(self.pending.len());
        out[..n].copy_from_slice(&self.pending[..n]);
        self.pending.drain(..n);
        Ok(n)
    }
}

impl<S: Read + Write> Write for WsBytes<S> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.ws
            .send(Message::binary(bytes.to_vec()))
            .map_err(ws_error)?;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<S: Timed> Timed for WsBytes<S> {
    fn limit_reads(&mut self, timeout: Duration) -> io::Result<()> {
        self.ws.get_mut().limit_reads(timeout)
    }
}

type WsClient = PacketStream<WsBytes<TcpStream>>;

/// A WebSocket connection to `addr` that sent `opts`' CONNECT and got a
/// successful CONNACK.
fn ws_connected(addr: SocketAddr, opts: &ConnectOpts) -> (WsClient, ConnAckInfo) {
    PacketStream::connected_over(WsBytes::new(ws_open(addr)), opts)
}

/// A rumqttc v3.1.1 client `id` over `transport` (ws or wss) to `url` on
/// `port`, its CONNACK asserted successful.
fn rumqttc_v3_ws(id: &str, url: String, port: u16, transport: rumqttc::Transport) -> V3Client {
    let mut opts = rumqttc::MqttOptions::new(id, url, port);
    opts.set_transport(transport);
    opts.set_keep_alive(Duration::from_secs(60));
    let (client, conn) = rumqttc::Client::new(opts, 64);
    let mut c = V3Client { client, conn };
    let ack = c.pump_until(PROMPT, &format!("CONNACK for {id}"), |e| match e {
        rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(a)) => Some(a.code),
        _ => None,
    });
    assert_eq!(ack, rumqttc::ConnectReturnCode::Success);
    c
}

/// Reads messages until the broker's close frame; answers the messages
/// before it and the close frame. Panics when none comes within `timeout`.
fn ws_expect_close<S: Timed>(
    ws: &mut WebSocket<S>,
    timeout: Duration,
    why: &str,
) -> (Vec<Message>, Option<CloseFrame>) {
    let deadline = Instant::now() + timeout;
    let mut before = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "no close frame within {timeout:?} ({why}); got {before:?}"
        );
        ws.get_mut().limit_reads(left).unwrap();
        match ws.read() {
            Ok(Message::Close(frame)) => return (before, frame),
            Ok(m) => before.push(m),
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("connection ended without a close frame ({why}): {e}; got {before:?}"),
        }
    }
}

/// After a close frame: asserts the connection ends within `timeout`.
fn ws_expect_end<S: Timed>(ws: &mut WebSocket<S>, timeout: Duration, why: &str) {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "connection still open after {timeout:?} ({why})"
        );
        ws.get_mut().limit_reads(left).unwrap();
        match ws.read() {
            Ok(m) => panic!("a message after the close frame ({why}): {m:?}"),
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            // EOF, reset, or our close reply meeting a closed socket.
            Err(_) => return,
        }
    }
}

/// The status code of a close frame (`None`: no code).
fn close_code(frame: &Option<CloseFrame>) -> Option<u16> {
    frame.as_ref().map(|f| u16::from(f.code))
}

/// Reads up to the broker's close frame on `c` (`why` it comes) and asserts
/// its code is `code` (`what` it means), that the connection then ends, and
/// that `broker` counted one protocol error and has no connection left;
/// answers the messages before the close frame.
fn expect_protocol_error_close(
    c: &mut WsClient,
    broker: &Broker,
    why: &str,
    code: u16,
    what: &str,
) -> Vec<Message> {
    let (before, close) = ws_expect_close(&mut c.stream.ws, PROMPT, why);
    assert_eq!(close_code(&close), Some(code), "{what}; before: {before:?}");
    ws_expect_end(&mut c.stream.ws, PROMPT, &format!("after close {code}"));
    wait_stats(broker, "protocol error counted", |s| {
        s.ws_protocol_errors == 1 && s.connections == 0
    });
    before
}

// ---------------------------------------------------------------------------
// Raw upgrade requests and frames
// ---------------------------------------------------------------------------

/// A parsed HTTP response head.
#[derive(Debug)]
struct HttpResponse {
    status: u16,
    /// (lower-case name, value), in order.
    headers: Vec<(String, String)>,
}

impl HttpResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One frame from the broker.
#[derive(Debug)]
struct WsFrame {
    opcode: u8,
    payload: Vec<u8>,
}

/// A raw TCP client speaking HTTP and RFC 6455 frames by hand.
struct RawWs {
    stream: TcpStream,
    buf: Vec<u8>,
}

/// An upgrade request for `path`: `key` and `protocol` None leave their
/// header out.
fn upgrade_request(path: &str, key: Option<&str>, protocol: Option<&str>) -> String {
    let mut r = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
    );
    if let Some(key) = key {
        r.push_str(&format!("Sec-WebSocket-Key: {key}\r\n"));
    }
    if let Some(protocol) = protocol {
        r.push_str(&format!("Sec-WebSocket-Protocol: {protocol}\r\n"));
    }
    r.push_str("\r\n");
    r
}

/// A client frame (RFC 6455 5.2); `mask` None sends it unmasked.
fn ws_frame(opcode: u8, fin: bool, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = vec![(u8::from(fin) << 7) | opcode];
    let bit = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(bit | n as u8),
        n if n <= 0xFFFF => {
            out.push(bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// A masked binary frame.
fn binary(payload: &[u8]) -> Vec<u8> {
    ws_frame(0x2, true, payload, Some([0x37, 0xFA, 0x21, 0x3D]))
}

impl RawWs {
    fn open(addr: SocketAddr) -> RawWs {
        let stream = TcpStream::connect(addr).expect("TCP connect");
        stream.set_nodelay(true).unwrap();
        RawWs {
            stream,
            buf: Vec::new(),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to the broker");
    }

    /// Reads more bytes into `buf`; false on EOF or reset. Panics at `deadline`.
    fn fill(&mut self, deadline: Instant, what: &str) -> bool {
        let now = Instant::now();
        assert!(now < deadline, "no {what} in time; have {:?}", self.buf);
        self.stream
            .set_read_timeout(Some((deadline - now).max(Duration::from_millis(1))))
            .unwrap();
        let mut chunk = [0u8; 4096];
        match self.stream.read(&mut chunk) {
            Ok(0) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(e) => match e.kind() {
                io::ErrorKind::WouldBlock
                | io::ErrorKind::TimedOut
                | io::ErrorKind::Interrupted => true,
                io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => false,
                _ => panic!("reading {what}: {e}"),
            },
        }
    }

    /// Sends `request` and reads the response head; bytes after it stay in
    /// `buf`.
    fn upgrade(addr: SocketAddr, request: &str) -> (RawWs, HttpResponse) {
        let mut c = RawWs::open(addr);
        c.send(request.as_bytes());
        let deadline = Instant::now() + PROMPT;
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut response = httparse::Response::new(&mut headers);
            match response.parse(&c.buf) {
                Ok(httparse::Status::Complete(len)) => {
                    let parsed = HttpResponse {
                        status: response.code.expect("status code"),
                        headers: response
                            .headers
                            .iter()
                            .map(|h| {
                                (
                                    h.name.to_ascii_lowercase(),
                                    String::from_utf8_lossy(h.value).into_owned(),
                                )
                            })
                            .collect(),
                    };
                    c.buf.drain(..len);
                    return (c, parsed);
                }
                Ok(httparse::Status::Partial) => {}
                Err(e) => panic!(
                    "bad HTTP response {e}: {:?}",
                    String::from_utf8_lossy(&c.buf)
                ),
            }
            assert!(
                c.fill(deadline, "HTTP response"),
                "closed before a whole HTTP response: {:?}",
                String::from_utf8_lossy(&c.buf)
            );
        }
    }

    /// The next frame from the broker (asserted unmasked, RFC 6455 5.1), or
    /// None when the connection ended first.
    fn read_frame(&mut self, timeout: Duration) -> Option<WsFrame> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.buf.len() >= 2 {
                let masked = self.buf[1] & 0x80 != 0;
                assert!(!masked, "a server frame must not be masked: {:?}", self.buf);
                let (len, head) = match self.buf[1] & 0x7F {
                    126 if self.buf.len() >= 4 => (
                        usize::from(u16::from_be_bytes([self.buf[2], self.buf[3]])),
                        4,
                    ),
                    127 if self.buf.len() >= 10 => {
                        let mut b = [0u8; 8];
                        b.copy_from_slice(&self.buf[2..10]);
                        (u64::from_be_bytes(b) as usize, 10)
                    }
                    126 | 127 => (usize::MAX, 0),
                    n => (usize::from(n), 2),
                };
                if len != usize::MAX && self.buf.len() >= head + len {
                    let frame = WsFrame {
                        opcode: self.buf[0] & 0x0F,
                        payload: self.buf[head..head + len].to_vec(),
                    };
                    self.buf.drain(..head + len);
                    return Some(frame);
                }
            }
            if !self.fill(deadline, "frame") {
                return None;
            }
        }
    }

    /// Asserts the broker ends the connection within `timeout`.
    fn expect_end(&mut self, timeout: Duration, why: &str) {
        let deadline = Instant::now() + timeout;
        while self.fill(deadline, why) {}
    }
}

/// A raw upgrade on /mqtt offering `mqtt`, asserted to succeed.
fn raw_upgraded(addr: SocketAddr) -> RawWs {
    let (c, r) = RawWs::upgrade(
        addr,
        &upgrade_request("/mqtt", Some(SAMPLE_KEY), Some("mqtt")),
    );
    assert_eq!(r.status, 101, "{r:?}");
    c
}

/// Sends CONNECT in one masked frame and asserts a CONNACK with code 0
/// comes back in binary frames.
fn raw_mqtt_connect(c: &mut RawWs, id: &str) {
    raw_mqtt_connect_with(c, &ConnectOpts::v3(id));
}

/// Like `raw_mqtt_connect`, with the CONNECT of `opts`.
fn raw_mqtt_connect_with(c: &mut RawWs, opts: &ConnectOpts) {
    c.send(&binary(&opts.encode()));
    let mut bytes = Vec::new();
    loop {
        let f = c.read_frame(PROMPT).expect("a frame with the CONNACK");
        assert_eq!(f.opcode & 0x7, 0x2, "binary or continuation frame: {f:?}");
        bytes.extend_from_slice(&f.payload);
        if let Some(p) = take_packet(&mut bytes).expect("MQTT framing") {
            assert_eq!(p.connack(false).code, 0, "{p:?}");
            return;
        }
    }
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[test]
fn rumqttc_v3_and_v5_over_ws_exchange_messages_with_each_other_and_plain_mqtt() {
    use rumqttc::QoS;
    let broker = start(&[
        "--listen",
        "ws://127.0.0.1:0/mqtt",
        "--listen",
        "mqtt://127.0.0.1:0",
    ]);
    let (ws, plain) = (broker.local_addrs()[0], broker.local_addrs()[1]);
    let url = format!("ws://{ws}/mqtt");

    let mut v3 = rumqttc_v3_ws("ws-v3", url.clone(), ws.port(), rumqttc::Transport::Ws);

    let mut opts = rumqttc::v5::MqttOptions::new("ws-v5", url, ws.port());
    opts.set_transport(rumqttc::Transport::Ws);
    opts.set_keep_alive(Duration::from_secs(60));
    let (client, conn) = rumqttc::v5::Client::new(opts, 64);
    let mut v5 = V5Client { client, conn };
    let ack = v5.pump_until(PROMPT, "CONNACK over ws", |e| match e {
        rumqttc::v5::Event::Incoming(rumqttc::v5::Incoming::ConnAck(a)) => Some(a.code),
        _ => None,
    });
    assert_eq!(ack, rumqttc::v5::mqttbytes::v5::ConnectReturnCode::Success);

    exchange_v3_v5(&mut v3, &mut v5, "ws");

    // Across transports.
    let (mut tcp, _) = RawClient::connected(plain, &ConnectOpts::v3("tcp"));
    assert_eq!(tcp.subscribe(1, &[("ws/to-tcp", 1)]), [1]);
    v3.publish("ws/to-tcp", QoS::AtLeastOnce, b"ws to tcp");
    let p = tcp.expect_publish(PROMPT);
    assert_eq!(
        (p.topic.as_str(), p.payload.as_slice()),
        ("ws/to-tcp", &b"ws to tcp"[..])
    );
    tcp.publish1("ws/to-v5", b"tcp to ws", 5);
    assert_eq!(
        v5.recv_publish(PROMPT),
        ("ws/to-v5".to_string(), b"tcp to ws".to_vec())
    );
    let stats = wait_stats(&broker, "three connected", |s| s.connections == 3);
    assert_eq!(
        (stats.ws_upgrade_refused, stats.ws_protocol_errors),
        (0, 0),
        "{stats:?}"
    );
}

#[test]
fn packets_split_over_frames_and_several_packets_in_one_frame() {
    let broker = ws_broker(&[]);
    let addr = broker.local_addr();
    let mut ws = ws_open(addr);
    // CONNECT in three binary messages: 1 byte, 3 bytes, the rest.
    let connect = ConnectOpts::v5("frames").encode();
    for part in [&connect[..1], &connect[1..4], &connect[4..]] {
        ws.send(Message::binary(part.to_vec())).unwrap();
    }
    let mut c = PacketStream::new(WsBytes::new(ws), true);
    assert_eq!(c.expect_packet(PROMPT, "CONNACK").connack(true).code, 0);

    // PINGREQ, PUBLISH QoS 1, PINGREQ in one frame: answered in order.
    let mut batch = PINGREQ_BYTES.to_vec();
    batch.extend(publish_packet("frames/none", b"x", 1, 3, false, true));
    batch.extend(PINGREQ_BYTES);
    c.send(&batch).unwrap();
    assert_eq!(c.expect_packet(PROMPT, "PINGRESP").kind, PINGRESP);
    assert_eq!(c.expect_packet(PROMPT, "PUBACK").ack(PUBACK).0, 3);
    assert_eq!(c.expect_packet(PROMPT, "PINGRESP").kind, PINGRESP);

    // Two PUBLISHes cut in the middle of the second one's header.
    assert_eq!(c.subscribe(1, &[("frames/#", 0)]), [0]);
    let mut both = publish_packet("frames/a", b"first", 1, 10, false, true);
    let cut = both.len() + 3;
    both.extend(publish_packet("frames/b", b"second", 1, 11, false, true));
    c.send(&both[..cut]).unwrap();
    c.send(&both[cut..]).unwrap();
    let mut acks = Vec::new();
    let mut got = Vec::new();
    while acks.len() < 2 || got.len() < 2 {
        let p = c.expect_packet(PROMPT, "PUBACK or PUBLISH");
        match p.kind {
            PUBACK => acks.push(p.ack(PUBACK).0),
            PUBLISH => {
                let p = p.publish(true);
                got.push((p.topic, p.payload));
            }
            _ => panic!("unexpected {p:?}"),
        }
    }
    assert_eq!(acks, [10, 11]);
    assert_eq!(
        got,
        [
            ("frames/a".to_string(), b"first".to_vec()),
            ("frames/b".to_string(), b"second".to_vec())
        ]
    );
    assert_eq!(broker.stats().ws_protocol_errors, 0);
}

#[test]
fn one_packet_in_a_fragmented_message_with_a_ping_between_fragments() {
    let broker = ws_broker(&[]);
    let mut ws = ws_open(broker.local_addr());
    let connect = ConnectOpts::v3("fragments").encode();
    let binary = OpCode::Data(Data::Binary);
    let cont = OpCode::Data(Data::Continue);
    ws.send(Message::Frame(Frame::message(
        connect[..2].to_vec(),
        binary,
        false,
    )))
    .unwrap();
    ws.send(Message::Frame(Frame::message(
        connect[2..5].to_vec(),
        cont,
        false,
    )))
    .unwrap();
    // Control frames may come between fragments (RFC 6455 5.4).
    ws.send(Message::Ping(b"between".to_vec().into())).unwrap();
    ws.send(Message::Frame(Frame::message(
        connect[5..].to_vec(),
        cont,
        true,
    )))
    .unwrap();

    let deadline = Instant::now() + PROMPT;
    let (mut pong, mut connack, mut bytes) = (false, None, Vec::new());
    while !(pong && connack.is_some()) {
        assert!(
            Instant::now() < deadline,
            "pong {pong}, CONNACK {connack:?}"
        );
        match ws.read() {
            Ok(Message::Pong(p)) => {
                assert_eq!(&p[..], b"between", "pong carries the ping's payload");
                pong = true;
            }
            Ok(Message::Binary(b)) => {
                bytes.extend_from_slice(&b);
                if let Some(p) = take_packet(&mut bytes).unwrap() {
                    connack = Some(p.connack(false));
                }
            }
            other => panic!("expected a pong and a CONNACK, got {other:?}"),
        }
    }
    assert_eq!(connack.unwrap().code, 0);
    // MQTT goes on over the same connection.
    let mut c = PacketStream::new(WsBytes::new(ws), false);
    c.ping();
}

#[test]
fn large_messages_cross_websocket_intact_in_both_directions() {
    let broker = start(&[
        "--listen",
        "ws://127.0.0.1:0/mqtt",
        "--listen",
        "mqtt://127.0.0.1:0",
    ]);
    let (ws, plain) = (broker.local_addrs()[0], broker.local_addrs()[1]);
    let (mut ws_sub, _) = ws_connected(ws, &ConnectOpts::v3("big-ws-sub"));
    assert_eq!(ws_sub.subscribe(1, &[("big/#", 0)]), [0]);
    let (mut tcp_sub, _) = RawClient::connected(plain, &ConnectOpts::v3("big-tcp-sub"));
    assert_eq!(tcp_sub.subscribe(1, &[("big/ws", 0)]), [0]);
    let (mut ws_pub, _) = ws_connected(ws, &ConnectOpts::v5("big-ws-pub"));
    let (mut tcp_pub, _) = RawClient::connected(plain, &ConnectOpts::v5("big-tcp-pub"));

    // 200 kB: one client frame with a 64-bit length, and whatever framing
    // the broker chooses on the way out.
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    ws_pub.publish1("big/ws", &payload, 1);
    assert!(
        ws_sub.expect_publish(PROMPT).payload == payload,
        "ws in, ws out"
    );
    assert!(
        tcp_sub.expect_publish(PROMPT).payload == payload,
        "ws in, tcp out"
    );
    tcp_pub.publish1("big/tcp", &payload, 1);
    assert!(
        ws_sub.expect_publish(PROMPT).payload == payload,
        "tcp in, ws out"
    );
    // 16-bit lengths too.
    ws_pub.publish1("big/ws", &payload[..30_000], 2);
    assert!(ws_sub.expect_publish(PROMPT).payload == payload[..30_000]);
    assert!(tcp_sub.expect_publish(PROMPT).payload == payload[..30_000]);
    assert_eq!(broker.stats().ws_protocol_errors, 0);
}

#[test]
fn bytes_sent_with_the_upgrade_request_are_kept() {
    let broker = ws_broker(&[]);
    let addr = broker.local_addr();
    // The request and the CONNECT frame in one write, before any answer.
    let mut bytes = upgrade_request("/mqtt", Some(SAMPLE_KEY), Some("mqtt")).into_bytes();
    bytes.extend(binary(&ConnectOpts::v3("eager").encode()));
    bytes.extend(binary(&PINGREQ_BYTES));
    let mut c = RawWs::open(addr);
    c.send(&bytes);
    let deadline = Instant::now() + PROMPT;
    while !c.buf.windows(4).any(|w| w == b"\r\n\r\n") {
        assert!(c.fill(deadline, "HTTP response"), "{:?}", c.buf);
    }
    let head_end = c.buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(
        c.buf.starts_with(b"HTTP/1.1 101"),
        "{:?}",
        String::from_utf8_lossy(&c.buf)
    );
    c.buf.drain(..head_end);
    let mut mqtt = Vec::new();
    let mut got = Vec::new();
    while got.len() < 2 {
        let f = c.read_frame(PROMPT).expect("CONNACK and PINGRESP frames");
        assert_eq!(f.opcode & 0x7, 0x2, "{f:?}");
        mqtt.extend_from_slice(&f.payload);
        while let Some(p) = take_packet(&mut mqtt).unwrap() {
            got.push(p.kind);
        }
    }
    assert_eq!(got, [CONNACK, PINGRESP]);
}

#[test]
fn ws_and_wss_connections_handed_to_the_owner_shard_keep_working() {
    let pki = Pki::generate();
    let broker = start(&[
        "--listen",
        "ws://127.0.0.1:0/mqtt",
        "--listen",
        "wss://127.0.0.1:0/mqtt",
        "--tls-cert",
        &pki.cert,
        "--tls-key",
        &pki.key,
    ]);
    let (ws, wss) = (broker.local_addrs()[0], broker.local_addrs()[1]);
    let config = client_config(&pki.ca, None, &[]);
    let (mut publisher, _) = ws_connected(ws, &ConnectOpts::v3("ho-ws-pub"));

    let (mut a, _) = handed_off(&broker, "ho-ws-", |id| {
        ws_connected(ws, &ConnectOpts::v5(id))
    });
    let (mut b, _) = handed_off(&broker, "ho-wss-", |id| {
        let tls = tls_connect(wss, &config).expect("TLS handshake");
        let ws = ws_handshake(tls, &format!("wss://localhost:{}/mqtt", wss.port()));
        PacketStream::connected_over(WsBytes::new(ws), &ConnectOpts::v3(id))
    });
    assert_eq!(a.subscribe(1, &[("handoff/ws", 1)]), [1]);
    assert_eq!(b.subscribe(1, &[("handoff/ws", 1)]), [1]);
    publisher.publish1("handoff/ws", b"after the hand-off", 1);
    assert_eq!(a.expect_publish(PROMPT).payload, b"after the hand-off");
    assert_eq!(b.expect_publish(PROMPT).payload, b"after the hand-off");
    a.ping();
    b.ping();
    let stats = broker.stats();
    assert_eq!(
        (stats.ws_protocol_errors, stats.tls_handshake_errors),
        (0, 0),
        "{stats:?}"
    );
}

#[test]
fn ping_is_answered_with_a_pong_carrying_the_same_payload() {
    let broker = ws_broker(&[]);
    let (mut c, _) = ws_connected(broker.local_addr(), &ConnectOpts::v5("pinger"));
    for payload in [&b"are you there?"[..], &b""[..], &[0u8, 0xFF, 0x80][..]] {
        c.stream
            .ws
            .send(Message::Ping(payload.to_vec().into()))
            .unwrap();
        match c.stream.ws.read() {
            Ok(Message::Pong(p)) => assert_eq!(&p[..], payload),
            other => panic!("expected a pong for {payload:?}, got {other:?}"),
        }
    }
    c.ping();
    c.publish1("ping/x", b"still MQTT", 2);
}

#[test]
fn a_text_frame_is_closed_with_1003_and_counted() {
    let broker = ws_broker(&[]);
    let (mut c, _) = ws_connected(broker.local_addr(), &ConnectOpts::v5("texter"));
    c.stream
        .ws
        .send(Message::text("{\"mqtt\": \"as text\"}"))
        .unwrap();
    let before = expect_protocol_error_close(
        &mut c,
        &broker,
        "text frame",
        1003,
        "MQTT 5 6.0: a text frame closes the connection (1003 unsupported data)",
    );
    for m in &before {
        assert!(
            m.is_binary(),
            "only MQTT bytes before the close: {before:?}"
        );
    }
}

#[test]
fn a_close_frame_is_answered_and_the_will_is_published() {
    let broker = ws_broker(&[]);
    let addr = broker.local_addr();
    let (mut watcher, _) = ws_connected(addr, &ConnectOpts::v3("ws-watcher").keep_alive(0));
    assert_eq!(watcher.subscribe(1, &[("will/ws/#", 0)]), [0]);
    let opts = ConnectOpts::v3("closer").will(WillOpts::new("will/ws/closer", "closed"));
    let (mut c, _) = ws_connected(addr, &opts);

    c.stream
        .ws
        .close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "bye".into(),
        }))
        .unwrap();
    let (before, close) = ws_expect_close(&mut c.stream.ws, PROMPT, "close answered");
    assert!(before.is_empty(), "{before:?}");
    let code = close_code(&close);
    assert!(
        code.is_none() || code == Some(1000),
        "the answer to a normal close echoes 1000 or has no code: {close:?}"
    );
    ws_expect_end(&mut c.stream.ws, PROMPT, "after the close handshake");

    // No MQTT DISCONNECT came first: the will goes (MQTT-3.1.2-8).
    let will = watcher.expect_publish(PROMPT);
    assert_eq!(
        (will.topic.as_str(), will.payload.as_slice()),
        ("will/ws/closer", &b"closed"[..])
    );
    let stats = wait_stats(&broker, "closed and counted", |s| {
        s.connections == 1 && s.wills_published == 1
    });
    assert_eq!(
        stats.ws_protocol_errors, 0,
        "a close is not an error: {stats:?}"
    );
}

#[test]
fn an_unmasked_client_frame_ends_the_connection() {
    let broker = ws_broker(&[]);
    let mut c = raw_upgraded(broker.local_addr());
    // RFC 6455 5.1: the server MUST close a connection on an unmasked frame.
    c.send(&ws_frame(
        0x2,
        true,
        &ConnectOpts::v3("unmasked").encode(),
        None,
    ));
    // Either a close frame (then with 1002, protocol error) or just the end.
    match c.read_frame(PROMPT) {
        None => {}
        Some(f) if f.opcode == 0x8 => {
            if f.payload.len() >= 2 {
                let code = u16::from_be_bytes([f.payload[0], f.payload[1]]);
                assert_eq!(code, 1002, "protocol error status: {f:?}");
            }
            c.expect_end(PROMPT, "after close 1002");
        }
        Some(f) => panic!("no MQTT answer to an unmasked frame, got {f:?}"),
    }
    let stats = wait_stats(&broker, "protocol error counted", |s| {
        s.ws_protocol_errors == 1 && s.connections == 0
    });
    assert_eq!(stats.connects, 0, "{stats:?}");
}

#[test]
fn a_frame_over_max_packet_size_is_closed_with_1009() {
    let broker = ws_broker(&["--max-packet-size", "1024"]);
    let (mut c, _) = ws_connected(broker.local_addr(), &ConnectOpts::v3("big"));
    assert_eq!(c.subscribe(1, &[("big/#", 0)]), [0]);
    // Close to the limit: passes.
    let fits = publish_packet("big/ok", &[7u8; 980], 0, 0, false, false);
    assert!(fits.len() < 1024);
    c.send(&fits).unwrap();
    let p = c.expect_publish(PROMPT);
    assert_eq!((p.topic.as_str(), p.payload.len()), ("big/ok", 980));

    // A header announcing 2000 bytes and 100 of them: judged by the header.
    let raw = c.stream.ws.get_mut();
    let mut frame = vec![0x82, 0x80 | 126];
    frame.extend_from_slice(&2000u16.to_be_bytes());
    frame.extend_from_slice(&[1, 2, 3, 4]);
    frame.extend_from_slice(&[0u8; 100]);
    raw.write_all(&frame).unwrap();
    expect_protocol_error_close(&mut c, &broker, "oversize frame", 1009, "message too big");
}

#[test]
fn upgrade_refusals_wrong_path_404_bad_key_or_no_subprotocol_400() {
    let broker = ws_broker(&[]);
    let addr = broker.local_addr();
    let cases = [
        ("/nope", Some(SAMPLE_KEY), Some("mqtt"), 404, "wrong path"),
        (
            "/mqtt",
            Some("not a key!"),
            Some("mqtt"),
            400,
            "key is not base64",
        ),
        (
            "/mqtt",
            Some("AAAA"),
            Some("mqtt"),
            400,
            "key is not 16 bytes",
        ),
        ("/mqtt", None, Some("mqtt"), 400, "no key"),
        ("/mqtt", Some(SAMPLE_KEY), None, 400, "no subprotocol"),
        (
            "/mqtt",
            Some(SAMPLE_KEY),
            Some("foo"),
            400,
            "no MQTT subprotocol",
        ),
    ];
    for (i, (path, key, protocol, status, what)) in cases.into_iter().enumerate() {
        let (mut c, r) = RawWs::upgrade(addr, &upgrade_request(path, key, protocol));
        assert_eq!(r.status, status, "{what}: {r:?}");
        assert_eq!(r.header("sec-websocket-accept"), None, "{what}: {r:?}");
        c.expect_end(PROMPT, what);
        wait_stats(&broker, what, |s| s.ws_upgrade_refused == i as u64 + 1);
    }
    let stats = wait_stats(&broker, "all closed", |s| s.connections == 0);
    assert_eq!(stats.connects, 0, "{stats:?}");
}

#[test]
fn other_malformed_upgrades_are_refused_with_a_4xx_and_closed() {
    let broker = ws_broker(&[]);
    let addr = broker.local_addr();
    let good = upgrade_request("/mqtt", Some(SAMPLE_KEY), Some("mqtt"));
    let cases = [
        (
            good.replace("Version: 13", "Version: 8"),
            "WebSocket version 8",
        ),
        (good.replace("GET ", "POST "), "POST"),
        (
            good.replace("Upgrade: websocket\r\n", ""),
            "no Upgrade header",
        ),
        (good.replace("HTTP/1.1", "HTTP/1.0"), "HTTP/1.0"),
    ];
    for (i, (request, what)) in cases.iter().enumerate() {
        let (mut c, r) = RawWs::upgrade(addr, request);
        assert!(
            (400..500).contains(&r.status),
            "{what}: expected a 4xx, got {r:?}"
        );
        c.expect_end(PROMPT, what);
        wait_stats(&broker, what, |s| s.ws_upgrade_refused == i as u64 + 1);
    }
    // A request head that never ends: refused once past the broker's bound
    // (64 kB sent, no blank line), not held until the connect timeout.
    let mut c = RawWs::open(addr);
    let mut head = b"GET /mqtt HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Filler: ".to_vec();
    head.resize(64 * 1024, b'a');
    // The broker may close while this is still being written.
    let _ = c.stream.write_all(&head);
    c.expect_end(PROMPT, "endless request head");
    let stats = wait_stats(&broker, "all refused and closed", |s| {
        s.ws_upgrade_refused == 5 && s.connections == 0
    });
    assert_eq!(stats.connects, 0, "{stats:?}");
}

#[test]
fn bytes_that_cannot_start_an_http_request_are_refused_at_once() {
    // As on mqtt:// (tests/bad_input.rs), a first byte that can never start
    // what the listener expects is refused without waiting for more: here
    // well before the 10 s default connect timeout.
    let broker = ws_broker(&[]);
    let mut c = RawWs::open(broker.local_addr());
    c.send(&ConnectOpts::v3("mqtt-on-ws").encode());
    let got = read_until_closed(&mut c.stream, PROMPT, "MQTT CONNECT on a ws port");
    assert!(
        got.is_empty() || got.starts_with(b"HTTP/1.1 400"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    wait_stats(&broker, "refusal counted", |s| {
        s.ws_upgrade_refused == 1 && s.connections == 0
    });
}

#[test]
fn fragmentation_does_not_get_a_packet_past_max_packet_size() {
    let broker = ws_broker(&["--max-packet-size", "1024"]);
    let addr = broker.local_addr();
    let (mut watcher, _) = ws_connected(addr, &ConnectOpts::v3("frag-watcher"));
    assert_eq!(watcher.subscribe(1, &[("frag/#", 0)]), [0]);
    let (mut c, _) = ws_connected(addr, &ConnectOpts::v5("frag-big"));
    // A 5 kB PUBLISH in 100-byte fragments: no frame is over the limit.
    let big = publish_packet("frag/big", &[1u8; 5000], 0, 0, false, true);
    let chunks: Vec<&[u8]> = big.chunks(100).collect();
    let last = chunks.len() - 1;
    for (i, chunk) in chunks.into_iter().enumerate() {
        let opcode = if i == 0 {
            OpCode::Data(Data::Binary)
        } else {
            OpCode::Data(Data::Continue)
        };
        let frame = Frame::message(chunk.to_vec(), opcode, i == last);
        if c.stream.ws.send(Message::Frame(frame)).is_err() {
            break; // closed already
        }
    }
    let got = c.expect_closed(PROMPT, "PUBLISH over --max-packet-size");
    for p in &got {
        assert!(
            p.is_disconnect(0x95),
            "only DISCONNECT 0x95 (packet too large) may come first: {got:?}"
        );
    }
    let close = close_code(c.stream.close.as_ref().unwrap_or(&None));
    assert!(
        close.is_none() || close == Some(1009) || close == Some(1000),
        "{close:?}"
    );
    watcher.expect_silence(Duration::from_millis(200), "the big PUBLISH was not routed");
    let stats = broker.stats();
    assert_eq!(stats.publishes_in, 0, "{stats:?}");
}

#[test]
fn upgrade_answers_with_the_accept_value_and_an_offered_mqtt_subprotocol() {
    let broker = ws_broker(&[]);
    let addr = broker.local_addr();
    let cases = [
        ("mqtt", "mqtt"),
        ("mqttv3.1", "mqttv3.1"),
        ("foo, mqtt", "mqtt"),
        ("foo,mqtt , bar", "mqtt"),
    ];
    for (i, (offer, answer)) in cases.into_iter().enumerate() {
        let (mut c, r) = RawWs::upgrade(
            addr,
            &upgrade_request("/mqtt", Some(SAMPLE_KEY), Some(offer)),
        );
        assert_eq!(r.status, 101, "offer {offer:?}: {r:?}");
        assert_eq!(
            r.header("sec-websocket-accept"),
            Some(SAMPLE_ACCEPT),
            "{r:?}"
        );
        assert_eq!(
            r.header("upgrade").map(str::to_ascii_lowercase).as_deref(),
            Some("websocket"),
            "{r:?}"
        );
        assert!(
            r.header("connection")
                .is_some_and(|v| v.to_ascii_lowercase().contains("upgrade")),
            "{r:?}"
        );
        assert_eq!(
            r.header("sec-websocket-protocol"),
            Some(answer),
            "offer {offer:?}: {r:?}"
        );
        raw_mqtt_connect(&mut c, &format!("raw-{i}"));
    }
    // Both offered: either is right, nothing else is.
    let (_c, r) = RawWs::upgrade(
        addr,
        &upgrade_request("/mqtt", Some(SAMPLE_KEY), Some("mqttv3.1, mqtt")),
    );
    assert_eq!(r.status, 101, "{r:?}");
    assert!(
        matches!(
            r.header("sec-websocket-protocol"),
            Some("mqtt" | "mqttv3.1")
        ),
        "{r:?}"
    );
    assert_eq!(broker.stats().ws_upgrade_refused, 0);
}

#[test]
fn ws_allow_no_subprotocol_accepts_an_upgrade_without_one() {
    let broker = ws_broker(&["--ws-allow-no-subprotocol"]);
    let addr = broker.local_addr();
    for (i, offer) in [None, Some("foo")].into_iter().enumerate() {
        let (mut c, r) = RawWs::upgrade(addr, &upgrade_request("/mqtt", Some(SAMPLE_KEY), offer));
        assert_eq!(r.status, 101, "offer {offer:?}: {r:?}");
        assert_eq!(
            r.header("sec-websocket-protocol"),
            None,
            "never a subprotocol the client did not offer: {r:?}"
        );
        raw_mqtt_connect(&mut c, &format!("no-sub-{i}"));
    }
    // An offered mqtt is still answered.
    let (_c, r) = RawWs::upgrade(
        addr,
        &upgrade_request("/mqtt", Some(SAMPLE_KEY), Some("mqtt")),
    );
    assert_eq!(r.header("sec-websocket-protocol"), Some("mqtt"), "{r:?}");
    // The path is still checked.
    let (_c, r) = RawWs::upgrade(addr, &upgrade_request("/other", Some(SAMPLE_KEY), None));
    assert_eq!(r.status, 404, "{r:?}");
}

#[test]
fn listener_paths_default_to_mqtt_and_can_be_chosen() {
    let broker = start(&[
        "--listen",
        "ws://127.0.0.1:0",
        "--listen",
        "ws://127.0.0.1:0/custom/path",
    ]);
    let (default, custom) = (broker.local_addrs()[0], broker.local_addrs()[1]);
    let request = |path| upgrade_request(path, Some(SAMPLE_KEY), Some("mqtt"));
    assert_eq!(RawWs::upgrade(default, &request("/mqtt")).1.status, 101);
    assert_eq!(
        RawWs::upgrade(custom, &request("/custom/path")).1.status,
        101
    );
    assert_eq!(RawWs::upgrade(custom, &request("/mqtt")).1.status, 404);
    assert_eq!(
        RawWs::upgrade(default, &request("/custom/path")).1.status,
        404
    );
}

#[test]
fn the_connect_timeout_covers_the_upgrade() {
    let broker = ws_broker(&["--connect-timeout-ms", "500"]);
    let addr = broker.local_addr();
    let opened = Instant::now();
    // Nothing at all; half a request; an upgrade and then no CONNECT.
    let mut mute = RawWs::open(addr);
    let mut half = RawWs::open(addr);
    let request = upgrade_request("/mqtt", Some(SAMPLE_KEY), Some("mqtt"));
    half.send(&request.as_bytes()[..request.len() / 2]);
    let mut upgraded = raw_upgraded(addr);
    // And one that does everything at once.
    let (mut prompt, _) = ws_connected(addr, &ConnectOpts::v3("prompt").keep_alive(0));

    let got = read_until_closed(&mut mute.stream, Duration::from_secs(5), "silent socket");
    let after = opened.elapsed();
    assert!(
        !got.starts_with(b"HTTP/1.1 101"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    assert_connect_timeout_window(after, 500);
    half.expect_end(Duration::from_secs(5), "half an upgrade request");
    upgraded.expect_end(Duration::from_secs(5), "upgraded, no CONNECT");
    let after = opened.elapsed();
    assert!(
        after <= Duration::from_millis(500 + TICK_MS) + MARGIN,
        "the upgraded one closed after {after:?}: the timeout counts from accept"
    );
    wait_stats(&broker, "three connect timeouts", |s| {
        s.connect_timeouts == 3 && s.connections == 1
    });
    prompt.expect_silence(
        Duration::from_millis(600),
        "a connected client has no connect timeout",
    );
    prompt.ping();
}

#[test]
fn silent_ws_client_gets_0x8d_after_1_5_keep_alive_and_its_will_is_published() {
    let broker = ws_broker(&[]);
    let addr = broker.local_addr();
    let (mut watcher, _) = ws_connected(addr, &ConnectOpts::v3("ka-watcher").keep_alive(0));
    assert_eq!(watcher.subscribe(1, &[("will/ka/#", 0)]), [0]);

    // The upgrade comes first, so the window measures MQTT only.
    let mut silent = PacketStream::new(WsBytes::new(ws_open(addr)), true);
    let opts = ConnectOpts::v5(&id_on_shard("ws-silent-", 0))
        .keep_alive(1)
        .will(WillOpts::new("will/ka/ws", "gone"));
    let sent = Instant::now();
    silent.send(&opts.encode()).unwrap();
    let ack = silent.expect_packet(PROMPT, "CONNACK").connack(true);
    let acked = Instant::now();
    assert_eq!(ack.code, 0, "{ack:?}");

    let packets = silent.expect_closed(Duration::from_secs(5), "keep-alive expiry");
    let closed = Instant::now();
    assert_close_window(sent, acked, closed, Duration::from_millis(1500), "ws K=1");
    assert!(
        matches!(packets.last(), Some(p) if p.is_disconnect(0x8D)),
        "expected DISCONNECT 0x8D (keep alive timeout) before the close, got {packets:?}"
    );
    let will = watcher.expect_publish(PROMPT);
    assert_eq!(
        (will.topic.as_str(), will.payload.as_slice()),
        ("will/ka/ws", &b"gone"[..])
    );
    wait_stats(&broker, "expiry and will counted", |s| {
        s.keepalive_expired == 1 && s.wills_published == 1 && s.connections == 1
    });
}

#[test]
fn takeover_over_ws_sends_0x8e_and_resumes_also_from_plain_tcp() {
    let broker = start(&[
        "--listen",
        "ws://127.0.0.1:0/mqtt",
        "--listen",
        "mqtt://127.0.0.1:0",
    ]);
    let (ws, plain) = (broker.local_addrs()[0], broker.local_addrs()[1]);
    let (mut publisher, _) = RawClient::connected(plain, &ConnectOpts::v3("tk-ws-pub"));
    let keep = ConnectOpts::v5(&id_on_shard("tk-ws-", 1))
        .clean(false)
        .session_expiry(60);

    let (mut first, ack) = ws_connected(ws, &keep);
    assert!(!ack.session_present, "{ack:?}");
    assert_eq!(first.subscribe(1, &[("tk/ws", 0)]), [0]);
    let (mut second, ack) = ws_connected(ws, &keep);
    assert!(ack.session_present, "clean start 0 resumes: {ack:?}");
    let old = first.expect_closed(PROMPT, "taken over over ws");
    assert!(
        matches!(old.last(), Some(p) if p.is_disconnect(0x8E)),
        "the old ws connection must get DISCONNECT 0x8E: {old:?}"
    );
    publisher.publish0("tk/ws", b"resumed");
    let p = second.expect_publish(PROMPT);
    assert_eq!(
        (p.topic.as_str(), p.payload.as_slice()),
        ("tk/ws", &b"resumed"[..])
    );

    // Plain TCP takes the session over from the WebSocket.
    let (mut third, ack) = RawClient::connected(plain, &keep);
    assert!(ack.session_present, "{ack:?}");
    let old = second.expect_closed(PROMPT, "taken over from TCP");
    assert!(
        matches!(old.last(), Some(p) if p.is_disconnect(0x8E)),
        "{old:?}"
    );
    publisher.publish0("tk/ws", b"on tcp");
    assert_eq!(third.expect_publish(PROMPT).payload, b"on tcp");
    wait_stats(&broker, "two take-overs", |s| {
        s.takeovers == 2 && s.connections == 2
    });
}

#[test]
fn wss_carries_mqtt_for_tungstenite_and_rumqttc() {
    let pki = Pki::generate();
    let broker = start(&[
        "--listen",
        "wss://127.0.0.1:0/mqtt",
        "--tls-cert",
        &pki.cert,
        "--tls-key",
        &pki.key,
    ]);
    let addr = broker.local_addr();
    let config = client_config(&pki.ca, None, &[]);

    let tls = tls_connect(addr, &config).expect("TLS handshake");
    let ws = ws_handshake(tls, &format!("wss://localhost:{}/mqtt", addr.port()));
    let (mut c, _) = PacketStream::connected_over(WsBytes::new(ws), &ConnectOpts::v5("wss-raw"));
    assert_eq!(c.subscribe(1, &[("wss/#", 1)]), [1]);
    c.publish1("wss/self", b"over TLS and WebSocket", 4);
    let p = c.expect_publish(PROMPT);
    assert_eq!(
        (p.topic.as_str(), p.payload.as_slice()),
        ("wss/self", &b"over TLS and WebSocket"[..])
    );

    let wss = rumqttc::Transport::Wss(rumqttc::TlsConfiguration::Rustls(config.clone()));
    let mut r = rumqttc_v3_ws(
        "wss-rumqttc",
        format!("wss://{addr}/mqtt"),
        addr.port(),
        wss,
    );
    r.publish("wss/rumqttc", rumqttc::QoS::AtLeastOnce, b"from rumqttc");
    let p = c.expect_publish(PROMPT);
    assert_eq!(
        (p.topic.as_str(), p.payload.as_slice()),
        ("wss/rumqttc", &b"from rumqttc"[..])
    );

    // An upgrade in clear on the wss port is a failed TLS handshake.
    let (mut clear, _) = (RawWs::open(addr), ());
    clear.send(upgrade_request("/mqtt", Some(SAMPLE_KEY), Some("mqtt")).as_bytes());
    let got = read_until_closed(&mut clear.stream, PROMPT, "clear upgrade on wss");
    assert!(
        !got.starts_with(b"HTTP"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    wait_stats(&broker, "TLS error counted", |s| {
        s.tls_handshake_errors == 1 && s.connections == 2
    });
}

#[test]
fn packets_in_the_read_that_carries_the_close_frame_are_handled_first() {
    // Ten PUBLISHes, a DISCONNECT and the close frame in one write: the
    // broker reads them together and must handle the packets before it
    // ends the connection (every message delivered, no will).
    let broker = ws_broker(&[]);
    let addr = broker.local_addr();
    let (mut watcher, _) = ws_connected(addr, &ConnectOpts::v3("last-watcher").keep_alive(0));
    assert_eq!(watcher.subscribe(1, &[("last/#", 0)]), [0]);
    let mut c = raw_upgraded(addr);
    let opts = ConnectOpts::v3("last-words").will(WillOpts::new("last/will", "gone"));
    raw_mqtt_connect_with(&mut c, &opts);
    let mut bytes = Vec::new();
    for i in 0..10 {
        let publish = publish_packet("last/msg", format!("m{i}").as_bytes(), 0, 0, false, false);
        bytes.extend(binary(&publish));
    }
    bytes.extend(binary(&DISCONNECT_V3));
    bytes.extend(ws_frame(
        0x8,
        true,
        &1000u16.to_be_bytes(),
        Some([9, 8, 7, 6]),
    ));
    c.send(&bytes);
    assert_last_words_handled(&broker, &mut watcher);
}
