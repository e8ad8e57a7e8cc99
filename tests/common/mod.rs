//! Shared helpers for the black-box tests in `tests/`.
//!
//! Owns: starting a broker on a loopback port 0 with small timings, a
//! poll-until-deadline helper, hand-written MQTT byte builders (CONNECT
//! 3.1.1/5.0 with will, keep alive, clean flag, session expiry and will
//! delay; SUBSCRIBE, UNSUBSCRIBE, PUBLISH, PINGREQ, DISCONNECT), a raw
//! socket client that reads one packet at a time with a deadline and parses
//! the few packets the broker sends back, and thin wrappers around the
//! synchronous rumqttc clients (v3.1.1 and v5).
//!
//! Invariants: nothing here sleeps for a fixed time to wait for the broker;
//! every wait is a read with a socket timeout or `poll_until` with a
//! deadline. The byte builders are written from the standards, not from the
//! broker's codec, so a codec bug cannot hide itself.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

pub mod certs;
pub mod nats;
pub mod process;

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

pub use ringmq::{shard_for, Broker, Config, Stats};

/// A fresh, empty directory under the system's temporary directory,
/// removed with everything in it on drop. `name` is part of its name.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ringmq-{name}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {dir:?}: {e}"));
        TempDir(dir)
    }

    /// A path in the directory.
    pub fn path(&self, name: &str) -> std::path::PathBuf {
        self.0.join(name)
    }

    /// A path in the directory, as a string (for a flag).
    pub fn path_str(&self, name: &str) -> String {
        self.path(name).to_string_lossy().into_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A test broker with `--http-listen` on a loopback port 0 (plus `extra`
/// flags), and the address that listener got.
pub fn start_http(extra: &[&str]) -> (Broker, SocketAddr) {
    let mut flags = vec!["--http-listen", "127.0.0.1:0"];
    flags.extend_from_slice(extra);
    let broker = start(&flags);
    let addr = broker.http_addr().expect("an HTTP listener");
    (broker, addr)
}

/// One HTTP/1.1 request to `addr` (the broker answers and closes), with a
/// bearer `token` when given; returns (status, head, body).
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(PROMPT)).unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(s, "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}\r\n").unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let out = String::from_utf8(out).expect("a UTF-8 response");
    let status = out[9..12].parse().unwrap();
    let (head, body) = out.split_once("\r\n\r\n").expect("a response head");
    (status, head.to_owned(), body.to_owned())
}

/// Shards every test broker runs.
pub const SHARDS: usize = 2;
/// Keep-alive monitoring tick of every test broker, in milliseconds.
pub const TICK_MS: u64 = 20;
/// Generous allowance for scheduling noise on a shared 2-core CI machine.
pub const MARGIN: Duration = Duration::from_millis(1000);
/// How long a test waits for something that should happen "at once".
pub const PROMPT: Duration = Duration::from_secs(5);

/// MQTT control packet types (high nibble of the first byte).
pub const CONNECT: u8 = 1;
/// CONNACK packet type.
pub const CONNACK: u8 = 2;
/// PUBLISH packet type.
pub const PUBLISH: u8 = 3;
/// PUBACK packet type.
pub const PUBACK: u8 = 4;
/// SUBACK packet type.
pub const SUBACK: u8 = 9;
/// UNSUBACK packet type.
pub const UNSUBACK: u8 = 11;
/// PINGRESP packet type.
pub const PINGRESP: u8 = 13;
/// DISCONNECT packet type.
pub const DISCONNECT: u8 = 14;

/// The default flags of a test broker; `extra` adds flags or overrides these
/// (a default is dropped when `extra` names the same flag).
pub fn args(extra: &[&str]) -> Vec<String> {
    let defaults: [(&str, &str); 4] = [
        ("--listen", "127.0.0.1:0"),
        ("--shards", "2"),
        ("--keepalive-tick-ms", "20"),
        ("--io-memory-kib", "256"),
    ];
    let mut out = vec!["ringmq".to_string()];
    for (flag, value) in defaults {
        if !extra.contains(&flag) {
            out.push(flag.to_string());
            out.push(value.to_string());
        }
    }
    out.extend(extra.iter().map(|s| s.to_string()));
    out
}

/// Starts a broker with the default test flags plus `extra`.
pub fn start(extra: &[&str]) -> Broker {
    let args = args(extra);
    let config = Config::from_args(args.clone())
        .unwrap_or_else(|e| panic!("Config::from_args({args:?}) failed: {e}"));
    Broker::start(config).unwrap_or_else(|e| {
        panic!("Broker::start failed (io_uring needs locked memory: check `ulimit -l`): {e}")
    })
}

/// Calls `cond` until it returns true or `timeout` passes; answers whether it
/// became true. Polls every 5 ms.
pub fn poll_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits until `cond(stats)` holds, panicking with the last stats otherwise.
pub fn wait_stats(broker: &Broker, what: &str, mut cond: impl FnMut(&Stats) -> bool) -> Stats {
    let mut last = broker.stats();
    if poll_until(PROMPT, || {
        last = broker.stats();
        cond(&last)
    }) {
        last
    } else {
        panic!("timed out waiting for stats: {what}; last stats: {last:?}")
    }
}

/// A client id that `shard_for` places on `shard`, built from `prefix`.
pub fn id_on_shard(prefix: &str, shard: usize) -> String {
    (0..10_000)
        .map(|i| format!("{prefix}{i}"))
        .find(|id| shard_for(id.as_bytes(), SHARDS) == shard)
        .expect("some id maps to every shard")
}

// ---------------------------------------------------------------------------
// Byte builders
// ---------------------------------------------------------------------------

/// Appends a variable byte integer (MQTT 1.5.5 / 2.2.3).
pub fn put_varint(out: &mut Vec<u8>, mut value: usize) {
    loop {
        let mut byte = (value % 128) as u8;
        value /= 128;
        if value > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if value == 0 {
            break;
        }
    }
}

/// Appends a two-byte length prefixed string or binary value.
pub fn put_bin(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(&(data.len() as u16).to_be_bytes());
    out.extend_from_slice(data);
}

/// A whole packet from its first byte and body.
pub fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    put_varint(&mut out, body.len());
    out.extend_from_slice(body);
    out
}

/// Protocol levels.
pub const V3: u8 = 4;
/// MQTT 5.0 protocol level.
pub const V5: u8 = 5;

/// A will for `ConnectOpts`.
#[derive(Clone, Debug)]
pub struct WillOpts {
    /// Will topic.
    pub topic: String,
    /// Will payload.
    pub payload: Vec<u8>,
    /// Will QoS (0..=2).
    pub qos: u8,
    /// Will retain flag.
    pub retain: bool,
    /// v5 Will Delay Interval property.
    pub delay_secs: Option<u32>,
    /// Extra v5 will properties, already encoded (id + value ...).
    pub extra_props: Vec<u8>,
}

impl WillOpts {
    /// A QoS 0 will on `topic` with `payload`.
    pub fn new(topic: &str, payload: &str) -> WillOpts {
        WillOpts {
            topic: topic.to_string(),
            payload: payload.as_bytes().to_vec(),
            qos: 0,
            retain: false,
            delay_secs: None,
            extra_props: Vec::new(),
        }
    }

    /// Sets the v5 Will Delay Interval.
    pub fn delay(mut self, secs: u32) -> WillOpts {
        self.delay_secs = Some(secs);
        self
    }
}

/// What goes into a hand-built CONNECT.
#[derive(Clone, Debug)]
pub struct ConnectOpts {
    /// Protocol level: `V3` (4) or `V5` (5); other values are sent as is.
    pub level: u8,
    /// Client identifier (may be empty).
    pub client_id: String,
    /// Clean session (3.1.1) / clean start (5.0).
    pub clean: bool,
    /// Keep alive in seconds.
    pub keep_alive: u16,
    /// v5 Session Expiry Interval property.
    pub session_expiry: Option<u32>,
    /// Extra v5 CONNECT properties, already encoded (id + value ...).
    pub extra_props: Vec<u8>,
    /// The will, if any.
    pub will: Option<WillOpts>,
    /// User name and password, if any.
    pub login: Option<(String, Option<Vec<u8>>)>,
}

impl ConnectOpts {
    /// A v3.1.1 CONNECT: clean session, keep alive 60.
    pub fn v3(client_id: &str) -> ConnectOpts {
        ConnectOpts {
            level: V3,
            client_id: client_id.to_string(),
            clean: true,
            keep_alive: 60,
            session_expiry: None,
            extra_props: Vec::new(),
            will: None,
            login: None,
        }
    }

    /// A v5 CONNECT: clean start, keep alive 60, no properties.
    pub fn v5(client_id: &str) -> ConnectOpts {
        ConnectOpts {
            level: V5,
            ..ConnectOpts::v3(client_id)
        }
    }

    /// Sets keep alive (seconds).
    pub fn keep_alive(mut self, secs: u16) -> ConnectOpts {
        self.keep_alive = secs;
        self
    }

    /// Sets clean session / clean start.
    pub fn clean(mut self, clean: bool) -> ConnectOpts {
        self.clean = clean;
        self
    }

    /// Sets the v5 Session Expiry Interval.
    pub fn session_expiry(mut self, secs: u32) -> ConnectOpts {
        self.session_expiry = Some(secs);
        self
    }

    /// Sets the will.
    pub fn will(mut self, will: WillOpts) -> ConnectOpts {
        self.will = Some(will);
        self
    }

    /// Sets the user name and (optionally) the password.
    pub fn login(mut self, user: &str, password: Option<&[u8]>) -> ConnectOpts {
        self.login = Some((user.to_string(), password.map(<[u8]>::to_vec)));
        self
    }

    /// Whether this speaks MQTT 5.
    pub fn is_v5(&self) -> bool {
        self.level == V5
    }

    /// The CONNECT packet bytes.
    pub fn encode(&self) -> Vec<u8> {
        let v5 = self.is_v5();
        let mut body = Vec::new();
        put_bin(&mut body, b"MQTT");
        body.push(self.level);
        let mut flags = 0u8;
        if self.clean {
            flags |= 0x02;
        }
        if let Some(w) = &self.will {
            flags |= 0x04 | (w.qos << 3);
            if w.retain {
                flags |= 0x20;
            }
        }
        if let Some((_, password)) = &self.login {
            flags |= 0x80;
            if password.is_some() {
                flags |= 0x40;
            }
        }
        body.push(flags);
        body.extend_from_slice(&self.keep_alive.to_be_bytes());
        if v5 {
            let mut props = Vec::new();
            if let Some(e) = self.session_expiry {
                props.push(0x11);
                props.extend_from_slice(&e.to_be_bytes());
            }
            props.extend_from_slice(&self.extra_props);
            put_varint(&mut body, props.len());
            body.extend_from_slice(&props);
        }
        put_bin(&mut body, self.client_id.as_bytes());
        if let Some(w) = &self.will {
            if v5 {
                let mut props = Vec::new();
                if let Some(d) = w.delay_secs {
                    props.push(0x18);
                    props.extend_from_slice(&d.to_be_bytes());
                }
                props.extend_from_slice(&w.extra_props);
                put_varint(&mut body, props.len());
                body.extend_from_slice(&props);
            }
            put_bin(&mut body, w.topic.as_bytes());
            put_bin(&mut body, &w.payload);
        }
        if let Some((user, password)) = &self.login {
            put_bin(&mut body, user.as_bytes());
            if let Some(password) = password {
                put_bin(&mut body, password);
            }
        }
        packet(0x10, &body)
    }
}

/// SUBSCRIBE with `filters` as (filter, requested QoS).
pub fn subscribe_packet(packet_id: u16, filters: &[(&str, u8)], v5: bool) -> Vec<u8> {
    let mut body = packet_id.to_be_bytes().to_vec();
    if v5 {
        body.push(0);
    }
    for (filter, qos) in filters {
        put_bin(&mut body, filter.as_bytes());
        body.push(*qos);
    }
    packet(0x82, &body)
}

/// UNSUBSCRIBE of `filters`.
pub fn unsubscribe_packet(packet_id: u16, filters: &[&str], v5: bool) -> Vec<u8> {
    let mut body = packet_id.to_be_bytes().to_vec();
    if v5 {
        body.push(0);
    }
    for filter in filters {
        put_bin(&mut body, filter.as_bytes());
    }
    packet(0xA2, &body)
}

/// PUBLISH (no DUP, no properties). `packet_id` is ignored for QoS 0.
pub fn publish_packet(
    topic: &str,
    payload: &[u8],
    qos: u8,
    packet_id: u16,
    retain: bool,
    v5: bool,
) -> Vec<u8> {
    let mut body = Vec::new();
    put_bin(&mut body, topic.as_bytes());
    if qos > 0 {
        body.extend_from_slice(&packet_id.to_be_bytes());
    }
    if v5 {
        body.push(0);
    }
    body.extend_from_slice(payload);
    packet(0x30 | (qos << 1) | u8::from(retain), &body)
}

/// A v5 PUBLISH with already encoded `props` (no DUP).
pub fn publish_packet_v5_props(
    topic: &str,
    payload: &[u8],
    qos: u8,
    packet_id: u16,
    retain: bool,
    props: &[u8],
) -> Vec<u8> {
    let mut body = Vec::new();
    put_bin(&mut body, topic.as_bytes());
    if qos > 0 {
        body.extend_from_slice(&packet_id.to_be_bytes());
    }
    put_varint(&mut body, props.len());
    body.extend_from_slice(props);
    body.extend_from_slice(payload);
    packet(0x30 | (qos << 1) | u8::from(retain), &body)
}

/// PINGREQ.
pub const PINGREQ_BYTES: [u8; 2] = [0xC0, 0x00];

/// DISCONNECT for v3.1.1 (empty body).
pub const DISCONNECT_V3: [u8; 2] = [0xE0, 0x00];

/// A v5 DISCONNECT with `reason` and an empty property list.
pub fn disconnect_v5(reason: u8) -> Vec<u8> {
    packet(0xE0, &[reason, 0])
}

/// PUBACK for `packet_id` (short form, valid in both versions).
pub fn puback_packet(packet_id: u16) -> Vec<u8> {
    packet(0x40, &packet_id.to_be_bytes())
}

// ---------------------------------------------------------------------------
// Parsing what the broker sends
// ---------------------------------------------------------------------------

/// One packet as read from the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawPacket {
    /// Packet type (high nibble of the first byte).
    pub kind: u8,
    /// Fixed header flags (low nibble).
    pub flags: u8,
    /// Everything after the remaining length.
    pub body: Vec<u8>,
}

/// A cursor over a packet body; every read panics with a clear message when
/// the broker sent fewer bytes than the standard requires.
pub struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    /// A cursor at the start of `data`.
    pub fn new(data: &'a [u8]) -> Cursor<'a> {
        Cursor { data, pos: 0 }
    }

    /// Bytes left.
    pub fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    /// Takes `n` bytes.
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        assert!(
            self.remaining() >= n,
            "broker packet too short: wanted {n} more bytes at {} of {:?}",
            self.pos,
            self.data
        );
        let out = &self.data[self.pos..self.pos + n];
        self.pos += n;
        out
    }

    /// One byte.
    pub fn u8(&mut self) -> u8 {
        self.take(1)[0]
    }

    /// A big-endian u16.
    pub fn u16(&mut self) -> u16 {
        let b = self.take(2);
        u16::from_be_bytes([b[0], b[1]])
    }

    /// A big-endian u32.
    pub fn u32(&mut self) -> u32 {
        let b = self.take(4);
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    /// A variable byte integer.
    pub fn varint(&mut self) -> usize {
        let mut value = 0usize;
        for i in 0..4 {
            let b = self.u8();
            value |= usize::from(b & 0x7F) << (7 * i);
            if b & 0x80 == 0 {
                return value;
            }
        }
        panic!("broker sent a variable byte integer over 4 bytes")
    }

    /// A two-byte length prefixed value.
    pub fn bin(&mut self) -> &'a [u8] {
        let n = usize::from(self.u16());
        self.take(n)
    }

    /// The rest.
    pub fn rest(&mut self) -> &'a [u8] {
        let n = self.remaining();
        self.take(n)
    }
}

/// A v5 property value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PropValue {
    /// Byte, two-byte, four-byte or variable byte integer.
    Int(u32),
    /// UTF-8 string or binary data.
    Bin(Vec<u8>),
    /// User property.
    Pair(Vec<u8>, Vec<u8>),
}

/// A parsed v5 property list, in wire order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Props(pub Vec<(u8, PropValue)>);

impl Props {
    /// Parses a length-prefixed property list at the cursor.
    pub fn parse(c: &mut Cursor<'_>) -> Props {
        let len = c.varint();
        let mut inner = Cursor::new(c.take(len));
        let mut out = Vec::new();
        while inner.remaining() > 0 {
            let id = inner.varint() as u8;
            let value = match id {
                0x01 | 0x17 | 0x19 | 0x24 | 0x25 | 0x28 | 0x29 | 0x2A => {
                    PropValue::Int(u32::from(inner.u8()))
                }
                0x13 | 0x21 | 0x22 | 0x23 => PropValue::Int(u32::from(inner.u16())),
                0x02 | 0x11 | 0x18 | 0x27 => PropValue::Int(inner.u32()),
                0x0B => PropValue::Int(inner.varint() as u32),
                0x03 | 0x08 | 0x09 | 0x12 | 0x15 | 0x16 | 0x1A | 0x1C | 0x1F => {
                    PropValue::Bin(inner.bin().to_vec())
                }
                0x26 => {
                    let k = inner.bin().to_vec();
                    PropValue::Pair(k, inner.bin().to_vec())
                }
                other => panic!("broker sent unknown property id {other:#04x}"),
            };
            out.push((id, value));
        }
        Props(out)
    }

    /// An integer property.
    pub fn int(&self, id: u8) -> Option<u32> {
        self.0.iter().find_map(|(i, v)| match v {
            PropValue::Int(n) if *i == id => Some(*n),
            _ => None,
        })
    }

    /// Every user property, in order.
    pub fn user_properties(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.0
            .iter()
            .filter_map(|(_, v)| match v {
                PropValue::Pair(k, v) => Some((k.clone(), v.clone())),
                _ => None,
            })
            .collect()
    }

    /// A string or binary property.
    pub fn bin(&self, id: u8) -> Option<Vec<u8>> {
        self.0.iter().find_map(|(i, v)| match v {
            PropValue::Bin(b) if *i == id => Some(b.clone()),
            _ => None,
        })
    }
}

/// Property ids used by the tests.
pub const PROP_SERVER_KEEP_ALIVE: u8 = 0x13;
/// Assigned Client Identifier property id.
pub const PROP_ASSIGNED_CLIENT_ID: u8 = 0x12;

/// A parsed CONNACK.
#[derive(Clone, Debug)]
pub struct ConnAckInfo {
    /// Session present flag.
    pub session_present: bool,
    /// Return code (v3) / reason code (v5).
    pub code: u8,
    /// v5 properties (empty for v3).
    pub props: Props,
}

/// A parsed PUBLISH.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishInfo {
    /// Topic name.
    pub topic: String,
    /// Payload.
    pub payload: Vec<u8>,
    /// QoS.
    pub qos: u8,
    /// Retain flag.
    pub retain: bool,
    /// Packet identifier (0 for QoS 0).
    pub packet_id: u16,
    /// v5 properties (empty for v3).
    pub props: Props,
}

impl RawPacket {
    /// Parses a CONNACK (panics when this is another packet).
    pub fn connack(&self, v5: bool) -> ConnAckInfo {
        assert_eq!(self.kind, CONNACK, "expected CONNACK, got {self:?}");
        let mut c = Cursor::new(&self.body);
        let ack_flags = c.u8();
        assert_eq!(
            ack_flags & 0xFE,
            0,
            "CONNACK reserved ack flags set: {self:?}"
        );
        let code = c.u8();
        let props = if v5 && c.remaining() > 0 {
            Props::parse(&mut c)
        } else {
            Props::default()
        };
        assert_eq!(c.remaining(), 0, "trailing bytes in CONNACK {self:?}");
        ConnAckInfo {
            session_present: ack_flags & 1 == 1,
            code,
            props,
        }
    }

    /// The reason code of a DISCONNECT (0x00 when the body is empty).
    pub fn disconnect_reason(&self) -> u8 {
        assert_eq!(self.kind, DISCONNECT, "expected DISCONNECT, got {self:?}");
        self.body.first().copied().unwrap_or(0)
    }

    /// Whether this is a DISCONNECT with `reason`.
    pub fn is_disconnect(&self, reason: u8) -> bool {
        self.kind == DISCONNECT && self.body.first().copied().unwrap_or(0) == reason
    }

    /// Parses a PUBLISH (panics when this is another packet).
    pub fn publish(&self, v5: bool) -> PublishInfo {
        assert_eq!(self.kind, PUBLISH, "expected PUBLISH, got {self:?}");
        let qos = (self.flags >> 1) & 3;
        let mut c = Cursor::new(&self.body);
        let topic = String::from_utf8(c.bin().to_vec()).expect("topic is UTF-8");
        let packet_id = if qos > 0 { c.u16() } else { 0 };
        let props = if v5 {
            Props::parse(&mut c)
        } else {
            Props::default()
        };
        PublishInfo {
            topic,
            payload: c.rest().to_vec(),
            qos,
            retain: self.flags & 1 == 1,
            packet_id,
            props,
        }
    }

    /// Parses a SUBACK or UNSUBACK into (packet id, reason codes).
    pub fn ack_codes(&self, kind: u8, v5: bool) -> (u16, Vec<u8>) {
        assert_eq!(self.kind, kind, "expected packet type {kind}, got {self:?}");
        let mut c = Cursor::new(&self.body);
        let id = c.u16();
        if v5 {
            Props::parse(&mut c);
        }
        (id, c.rest().to_vec())
    }
}

/// Why `PacketStream::read_packet` returned no packet.
#[derive(Debug)]
pub enum ReadError {
    /// Nothing complete arrived before the deadline.
    Timeout,
    /// The broker closed the connection (EOF or reset).
    Closed,
    /// Another socket error.
    Io(io::Error),
    /// The broker sent bytes that do not frame as MQTT.
    Malformed(Vec<u8>),
}

// ---------------------------------------------------------------------------
// Packets over any byte stream (TCP, TLS, WebSocket)
// ---------------------------------------------------------------------------

/// A byte stream whose reads can be bounded in time: TCP, TLS over TCP, a
/// WebSocket carrying bytes in binary messages.
pub trait Timed: Read + Write {
    /// Bounds every following read to `timeout`.
    fn limit_reads(&mut self, timeout: Duration) -> io::Result<()>;
}

impl Timed for TcpStream {
    fn limit_reads(&mut self, timeout: Duration) -> io::Result<()> {
        TcpStream::set_read_timeout(self, Some(timeout.max(Duration::from_millis(1))))
    }
}

/// Splits one whole packet off the front of `buf` (remaining length as in
/// MQTT 2.1.4), or answers `None` when it is not complete yet.
pub fn take_packet(buf: &mut Vec<u8>) -> Result<Option<RawPacket>, ReadError> {
    let mut len = 0usize;
    let mut i = 1;
    loop {
        let Some(&b) = buf.get(i) else {
            return Ok(None);
        };
        len |= usize::from(b & 0x7F) << (7 * (i - 1));
        i += 1;
        if b & 0x80 == 0 {
            break;
        }
        if i > 4 {
            return Err(ReadError::Malformed(buf.clone()));
        }
    }
    if buf.len() < i + len {
        return Ok(None);
    }
    let first = buf[0];
    let body = buf[i..i + len].to_vec();
    buf.drain(..i + len);
    Ok(Some(RawPacket {
        kind: first >> 4,
        flags: first & 0x0F,
        body,
    }))
}

/// An MQTT client over any `Timed` stream (`RawClient` over TCP): writes
/// hand-built bytes and reads whole packets with a deadline. EOF, reset and
/// a TLS peer that closes without close_notify all read as
/// `ReadError::Closed`.
pub struct PacketStream<S> {
    /// The byte stream.
    pub stream: S,
    buf: Vec<u8>,
    /// Whether to parse incoming packets as MQTT 5.
    pub v5: bool,
}

impl<S: Timed> PacketStream<S> {
    /// Wraps a stream on which nothing was read yet.
    pub fn new(stream: S, v5: bool) -> PacketStream<S> {
        PacketStream {
            stream,
            buf: Vec::new(),
            v5,
        }
    }

    /// Wraps `stream`, sends `opts`' CONNECT and answers the CONNACK
    /// (whatever its code).
    pub fn connect_over(stream: S, opts: &ConnectOpts) -> (PacketStream<S>, ConnAckInfo) {
        let mut c = PacketStream::new(stream, opts.is_v5());
        c.send(&opts.encode()).expect("send CONNECT");
        let ack = c.expect_packet(PROMPT, "CONNACK").connack(c.v5);
        (c, ack)
    }

    /// Like `connect_over`, asserting the CONNACK code is success.
    pub fn connected_over(stream: S, opts: &ConnectOpts) -> (PacketStream<S>, ConnAckInfo) {
        let (c, ack) = PacketStream::connect_over(stream, opts);
        assert_eq!(ack.code, 0, "CONNACK for {opts:?} refused: {ack:?}");
        (c, ack)
    }

    /// Writes bytes and flushes them.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// Reads one whole packet, waiting at most `timeout`.
    pub fn read_packet(&mut self, timeout: Duration) -> Result<RawPacket, ReadError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(p) = take_packet(&mut self.buf)? {
                return Ok(p);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(ReadError::Timeout);
            }
            self.stream
                .limit_reads(deadline - now)
                .map_err(ReadError::Io)?;
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(ReadError::Closed),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) => match e.kind() {
                    io::ErrorKind::WouldBlock
                    | io::ErrorKind::TimedOut
                    | io::ErrorKind::Interrupted => {}
                    io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::UnexpectedEof
                    | io::ErrorKind::BrokenPipe => return Err(ReadError::Closed),
                    _ => return Err(ReadError::Io(e)),
                },
            }
        }
    }

    /// Reads one packet, panicking (naming `what`) on timeout or close.
    pub fn expect_packet(&mut self, timeout: Duration, what: &str) -> RawPacket {
        match self.read_packet(timeout) {
            Ok(p) => p,
            Err(e) => panic!("waiting for {what}: {e:?}"),
        }
    }

    /// Reads the next packet and parses it as a PUBLISH; QoS 1 is acked.
    pub fn expect_publish(&mut self, timeout: Duration) -> PublishInfo {
        let info = self.expect_packet(timeout, "PUBLISH").publish(self.v5);
        if info.qos == 1 {
            self.send(&puback_packet(info.packet_id))
                .expect("send PUBACK");
        }
        info
    }

    /// Asserts that neither a packet nor a close arrives within `dur`.
    pub fn expect_silence(&mut self, dur: Duration, why: &str) {
        match self.read_packet(dur) {
            Err(ReadError::Timeout) => {}
            other => panic!("expected silence for {dur:?} ({why}), got {other:?}"),
        }
    }

    /// Reads until the broker closes the connection; answers the packets that
    /// came first. Panics when it is still open at `timeout`.
    pub fn expect_closed(&mut self, timeout: Duration, why: &str) -> Vec<RawPacket> {
        let deadline = Instant::now() + timeout;
        let mut got = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.read_packet(left) {
                Ok(p) => got.push(p),
                Err(ReadError::Closed) => return got,
                Err(ReadError::Timeout) => {
                    panic!("connection not closed within {timeout:?} ({why}); got {got:?}")
                }
                // Trash after a packet still means the broker is tearing down;
                // an error other than a reset is a test environment problem.
                Err(e) => panic!("reading until close ({why}): {e:?}; got {got:?}"),
            }
        }
    }

    /// Sends PINGREQ and asserts the next packet is PINGRESP.
    pub fn ping(&mut self) {
        self.send(&PINGREQ_BYTES).expect("send PINGREQ");
        let p = self.expect_packet(PROMPT, "PINGRESP");
        assert_eq!(p.kind, PINGRESP, "expected PINGRESP, got {p:?}");
        assert!(p.body.is_empty(), "PINGRESP with a body: {p:?}");
    }

    /// Subscribes and answers the SUBACK codes (asserting the packet id).
    pub fn subscribe(&mut self, packet_id: u16, filters: &[(&str, u8)]) -> Vec<u8> {
        let v5 = self.v5;
        self.send(&subscribe_packet(packet_id, filters, v5))
            .expect("send SUBSCRIBE");
        let (id, codes) = self.expect_packet(PROMPT, "SUBACK").ack_codes(SUBACK, v5);
        assert_eq!(id, packet_id, "SUBACK packet id");
        codes
    }

    /// Publishes at QoS 0.
    pub fn publish0(&mut self, topic: &str, payload: &[u8]) {
        let v5 = self.v5;
        self.send(&publish_packet(topic, payload, 0, 0, false, v5))
            .expect("send PUBLISH");
    }

    /// Publishes at QoS 1 and waits for the PUBACK.
    pub fn publish1(&mut self, topic: &str, payload: &[u8], packet_id: u16) {
        let v5 = self.v5;
        self.send(&publish_packet(topic, payload, 1, packet_id, false, v5))
            .expect("send PUBLISH");
        let p = self.expect_packet(PROMPT, "PUBACK");
        assert_eq!(p.kind, PUBACK, "expected PUBACK, got {p:?}");
        assert_eq!(&p.body[..2], &packet_id.to_be_bytes(), "PUBACK packet id");
    }
}

/// A raw TCP MQTT client that writes hand-built bytes and reads whole packets.
pub type RawClient = PacketStream<TcpStream>;

impl RawClient {
    /// Opens a TCP connection (no MQTT yet).
    pub fn open(addr: SocketAddr) -> RawClient {
        let stream = TcpStream::connect(addr).expect("TCP connect to the broker");
        RawClient::from_stream(stream, false)
    }

    /// Opens a connection, sends `opts`' CONNECT and answers the CONNACK
    /// (whatever its code).
    pub fn connect(addr: SocketAddr, opts: &ConnectOpts) -> (RawClient, ConnAckInfo) {
        let stream = TcpStream::connect(addr).expect("TCP connect to the broker");
        stream.set_nodelay(true).expect("set_nodelay");
        PacketStream::connect_over(stream, opts)
    }

    /// Like `connect`, asserting the CONNACK code is success.
    pub fn connected(addr: SocketAddr, opts: &ConnectOpts) -> (RawClient, ConnAckInfo) {
        let (c, ack) = RawClient::connect(addr, opts);
        assert_eq!(ack.code, 0, "CONNACK for {opts:?} refused: {ack:?}");
        (c, ack)
    }

    /// Half-closes our side for writing (the broker reads EOF).
    pub fn shutdown_write(&self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    /// Like `expect_closed`, also answering when (after the call began) the
    /// close was seen.
    pub fn expect_closed_at(&mut self, timeout: Duration, why: &str) -> (Vec<RawPacket>, Instant) {
        let got = self.expect_closed(timeout, why);
        (got, Instant::now())
    }
}

/// Encodes v5 properties: user property, content type, payload format,
/// correlation data, response topic.
pub fn message_props() -> Vec<u8> {
    let mut p = vec![0x01, 1]; // payload format indicator: UTF-8
    p.push(0x03);
    put_bin(&mut p, b"text/plain");
    p.push(0x08);
    put_bin(&mut p, b"reply/here");
    p.push(0x09);
    put_bin(&mut p, b"\x00\x01corr");
    p.push(0x26);
    put_bin(&mut p, b"k1");
    put_bin(&mut p, b"v1");
    p.push(0x26);
    put_bin(&mut p, b"k1");
    put_bin(&mut p, b"v2");
    p
}

pub fn assert_message_props(props: &Props, what: &str) {
    assert_eq!(
        props.int(0x01),
        Some(1),
        "{what}: payload format: {props:?}"
    );
    assert_eq!(
        props.bin(0x03).as_deref(),
        Some(&b"text/plain"[..]),
        "{what}: content type"
    );
    assert_eq!(
        props.bin(0x08).as_deref(),
        Some(&b"reply/here"[..]),
        "{what}: response topic"
    );
    assert_eq!(
        props.bin(0x09).as_deref(),
        Some(&b"\x00\x01corr"[..]),
        "{what}: correlation data"
    );
    assert_eq!(
        props.user_properties(),
        [
            (b"k1".to_vec(), b"v1".to_vec()),
            (b"k1".to_vec(), b"v2".to_vec())
        ],
        "{what}: user properties, in order (MQTT-3.3.2-17/18)"
    );
}

/// Asserts a fresh v3.1.1 and a fresh v5 client can connect and ping: the
/// broker still serves after whatever a test did to it.
pub fn assert_serves(addr: SocketAddr) {
    let (mut a, _) = RawClient::connected(addr, &ConnectOpts::v3("fresh-v3"));
    a.ping();
    let (mut b, _) = RawClient::connected(addr, &ConnectOpts::v5("fresh-v5"));
    b.ping();
}

// ---------------------------------------------------------------------------
// rumqttc wrappers
// ---------------------------------------------------------------------------

/// A synchronous rumqttc v3.1.1 client plus its connection, pumped by the
/// test thread.
pub struct V3Client {
    /// Request handle.
    pub client: rumqttc::Client,
    /// Event loop, pumped by `pump_until`.
    pub conn: rumqttc::Connection,
}

impl V3Client {
    /// Connects with id `id`; `tweak` may change options. Waits for a
    /// successful CONNACK and answers it.
    pub fn connect(
        addr: SocketAddr,
        id: &str,
        tweak: impl FnOnce(&mut rumqttc::MqttOptions),
    ) -> (V3Client, rumqttc::ConnAck) {
        let mut opts = rumqttc::MqttOptions::new(id, addr.ip().to_string(), addr.port());
        opts.set_keep_alive(Duration::from_secs(60));
        tweak(&mut opts);
        let (client, conn) = rumqttc::Client::new(opts, 64);
        let mut c = V3Client { client, conn };
        let ack = c.pump_until(PROMPT, "CONNACK", |e| match e {
            rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(a)) => Some(a.clone()),
            _ => None,
        });
        assert_eq!(ack.code, rumqttc::ConnectReturnCode::Success, "{ack:?}");
        (c, ack)
    }

    /// Pumps events until `f` answers Some, panicking on error or timeout.
    pub fn pump_until<T>(
        &mut self,
        timeout: Duration,
        what: &str,
        mut f: impl FnMut(&rumqttc::Event) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.conn.recv_timeout(left) {
                Ok(Ok(e)) => {
                    if let Some(t) = f(&e) {
                        return t;
                    }
                }
                Ok(Err(e)) => panic!("rumqttc v3 error while waiting for {what}: {e:?}"),
                Err(e) => panic!("rumqttc v3: no {what} within {timeout:?}: {e:?}"),
            }
        }
    }

    /// Subscribes and waits for the SUBACK; answers its return codes.
    pub fn subscribe(
        &mut self,
        filter: &str,
        qos: rumqttc::QoS,
    ) -> Vec<rumqttc::SubscribeReasonCode> {
        self.client.subscribe(filter, qos).expect("queue SUBSCRIBE");
        self.pump_until(PROMPT, "SUBACK", |e| match e {
            rumqttc::Event::Incoming(rumqttc::Packet::SubAck(a)) => Some(a.return_codes.clone()),
            _ => None,
        })
    }

    /// Publishes and waits until it was written (QoS 0) or acked (QoS 1).
    pub fn publish(&mut self, topic: &str, qos: rumqttc::QoS, payload: &[u8]) {
        self.client
            .publish(topic, qos, false, payload.to_vec())
            .expect("queue PUBLISH");
        self.pump_until(PROMPT, "publish sent/acked", |e| match (qos, e) {
            (rumqttc::QoS::AtMostOnce, rumqttc::Event::Outgoing(rumqttc::Outgoing::Publish(_))) => {
                Some(())
            }
            (_, rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) => Some(()),
            _ => None,
        })
    }

    /// Waits for the next incoming PUBLISH; answers (topic, payload).
    pub fn recv_publish(&mut self, timeout: Duration) -> (String, Vec<u8>) {
        self.pump_until(timeout, "PUBLISH", |e| match e {
            rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)) => {
                Some((p.topic.clone(), p.payload.to_vec()))
            }
            _ => None,
        })
    }
}

/// A synchronous rumqttc v5 client plus its connection.
pub struct V5Client {
    /// Request handle.
    pub client: rumqttc::v5::Client,
    /// Event loop, pumped by `pump_until`.
    pub conn: rumqttc::v5::Connection,
}

impl V5Client {
    /// Connects with id `id`; `tweak` may change options. Waits for a
    /// successful CONNACK and answers it.
    pub fn connect(
        addr: SocketAddr,
        id: &str,
        tweak: impl FnOnce(&mut rumqttc::v5::MqttOptions),
    ) -> (V5Client, rumqttc::v5::mqttbytes::v5::ConnAck) {
        let mut opts = rumqttc::v5::MqttOptions::new(id, addr.ip().to_string(), addr.port());
        opts.set_keep_alive(Duration::from_secs(60));
        tweak(&mut opts);
        let (client, conn) = rumqttc::v5::Client::new(opts, 64);
        let mut c = V5Client { client, conn };
        let ack = c.pump_until(PROMPT, "CONNACK", |e| match e {
            rumqttc::v5::Event::Incoming(rumqttc::v5::Incoming::ConnAck(a)) => Some(a.clone()),
            _ => None,
        });
        assert_eq!(
            ack.code,
            rumqttc::v5::mqttbytes::v5::ConnectReturnCode::Success,
            "{ack:?}"
        );
        (c, ack)
    }

    /// Pumps events until `f` answers Some, panicking on error or timeout.
    pub fn pump_until<T>(
        &mut self,
        timeout: Duration,
        what: &str,
        mut f: impl FnMut(&rumqttc::v5::Event) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.conn.recv_timeout(left) {
                Ok(Ok(e)) => {
                    if let Some(t) = f(&e) {
                        return t;
                    }
                }
                Ok(Err(e)) => panic!("rumqttc v5 error while waiting for {what}: {e:?}"),
                Err(e) => panic!("rumqttc v5: no {what} within {timeout:?}: {e:?}"),
            }
        }
    }

    /// Subscribes and waits for the SUBACK; answers its reason codes.
    pub fn subscribe(
        &mut self,
        filter: &str,
        qos: rumqttc::v5::mqttbytes::QoS,
    ) -> Vec<rumqttc::v5::mqttbytes::v5::SubscribeReasonCode> {
        self.client.subscribe(filter, qos).expect("queue SUBSCRIBE");
        self.pump_until(PROMPT, "SUBACK", |e| match e {
            rumqttc::v5::Event::Incoming(rumqttc::v5::Incoming::SubAck(a)) => {
                Some(a.return_codes.clone())
            }
            _ => None,
        })
    }

    /// Publishes and waits until it was written (QoS 0) or acked (QoS 1).
    pub fn publish(&mut self, topic: &str, qos: rumqttc::v5::mqttbytes::QoS, payload: &[u8]) {
        use rumqttc::v5::mqttbytes::QoS;
        self.client
            .publish(topic, qos, false, payload.to_vec())
            .expect("queue PUBLISH");
        self.pump_until(PROMPT, "publish sent/acked", |e| match (qos, e) {
            (QoS::AtMostOnce, rumqttc::v5::Event::Outgoing(rumqttc::Outgoing::Publish(_))) => {
                Some(())
            }
            (_, rumqttc::v5::Event::Incoming(rumqttc::v5::Incoming::PubAck(_))) => Some(()),
            _ => None,
        })
    }

    /// Waits for the next incoming PUBLISH; answers (topic, payload).
    pub fn recv_publish(&mut self, timeout: Duration) -> (String, Vec<u8>) {
        self.pump_until(timeout, "PUBLISH", |e| match e {
            rumqttc::v5::Event::Incoming(rumqttc::v5::Incoming::Publish(p)) => Some((
                String::from_utf8_lossy(&p.topic).into_owned(),
                p.payload.to_vec(),
            )),
            _ => None,
        })
    }
}

/// Subscribes `v3` to `<prefix>/to-v3` and `v5` to `<prefix>/to-v5` (QoS
/// 1, asserted granted) and sends one QoS 1 message each way between them,
/// asserting it arrives.
pub fn exchange_v3_v5(v3: &mut V3Client, v5: &mut V5Client, prefix: &str) {
    use rumqttc::v5::mqttbytes::QoS as QoS5;
    use rumqttc::QoS;
    let (to_v3, to_v5) = (format!("{prefix}/to-v3"), format!("{prefix}/to-v5"));
    assert_eq!(
        v3.subscribe(&to_v3, QoS::AtLeastOnce),
        [rumqttc::SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );
    assert_eq!(
        v5.subscribe(&to_v5, QoS5::AtLeastOnce),
        [rumqttc::v5::mqttbytes::v5::SubscribeReasonCode::Success(
            QoS5::AtLeastOnce
        )]
    );
    v5.publish(&to_v3, QoS5::AtLeastOnce, b"from v5");
    assert_eq!(v3.recv_publish(PROMPT), (to_v3, b"from v5".to_vec()));
    v3.publish(&to_v5, QoS::AtLeastOnce, b"from v3");
    assert_eq!(v5.recv_publish(PROMPT), (to_v5, b"from v3".to_vec()));
}

// ---------------------------------------------------------------------------
// QoS 1/2, retained and MQTT 5 feature helpers (issue 6 black-box tests)
// ---------------------------------------------------------------------------

/// PUBREC packet type.
pub const PUBREC: u8 = 5;
/// PUBREL packet type.
pub const PUBREL: u8 = 6;
/// PUBCOMP packet type.
pub const PUBCOMP: u8 = 7;

/// Subscription option: No Local (v5).
pub const NO_LOCAL: u8 = 0x04;
/// Subscription option: Retain As Published (v5).
pub const RETAIN_AS_PUBLISHED: u8 = 0x08;

/// Subscription option bits for Retain Handling `n` (0, 1 or 2).
pub fn retain_handling(n: u8) -> u8 {
    n << 4
}

/// v5 property ids used by the issue 6 tests.
pub const PROP_MESSAGE_EXPIRY: u8 = 0x02;
/// Subscription Identifier property id.
pub const PROP_SUBSCRIPTION_ID: u8 = 0x0B;
/// Receive Maximum property id.
pub const PROP_RECEIVE_MAXIMUM: u8 = 0x21;
/// Topic Alias Maximum property id.
pub const PROP_TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
/// Topic Alias property id.
pub const PROP_TOPIC_ALIAS: u8 = 0x23;
/// Maximum QoS property id.
pub const PROP_MAXIMUM_QOS: u8 = 0x24;
/// Retain Available property id.
pub const PROP_RETAIN_AVAILABLE: u8 = 0x25;
/// Wildcard Subscription Available property id.
pub const PROP_WILDCARD_AVAILABLE: u8 = 0x28;
/// Subscription Identifiers Available property id.
pub const PROP_SUBSCRIPTION_ID_AVAILABLE: u8 = 0x29;
/// Shared Subscription Available property id.
pub const PROP_SHARED_AVAILABLE: u8 = 0x2A;

/// PUBREC for `packet_id` (short form).
pub fn pubrec_packet(packet_id: u16) -> Vec<u8> {
    packet(0x50, &packet_id.to_be_bytes())
}

/// PUBREL for `packet_id` (short form; fixed header flags 0b0010).
pub fn pubrel_packet(packet_id: u16) -> Vec<u8> {
    packet(0x62, &packet_id.to_be_bytes())
}

/// PUBCOMP for `packet_id` (short form).
pub fn pubcomp_packet(packet_id: u16) -> Vec<u8> {
    packet(0x70, &packet_id.to_be_bytes())
}

/// Any PUBLISH: `props` is the encoded v5 property list (`None` = v3.1.1,
/// no property list at all); `dup` sets the DUP flag.
pub fn publish_packet_full(
    topic: &str,
    payload: &[u8],
    qos: u8,
    packet_id: u16,
    retain: bool,
    dup: bool,
    props: Option<&[u8]>,
) -> Vec<u8> {
    let mut body = Vec::new();
    put_bin(&mut body, topic.as_bytes());
    if qos > 0 {
        body.extend_from_slice(&packet_id.to_be_bytes());
    }
    if let Some(props) = props {
        put_varint(&mut body, props.len());
        body.extend_from_slice(props);
    }
    body.extend_from_slice(payload);
    let first = 0x30 | (u8::from(dup) << 3) | (qos << 1) | u8::from(retain);
    packet(first, &body)
}

/// A v5 SUBSCRIBE with an optional Subscription Identifier; each filter
/// comes with its whole subscription options byte.
pub fn subscribe_packet_v5(packet_id: u16, sub_id: Option<u32>, filters: &[(&str, u8)]) -> Vec<u8> {
    let mut props = Vec::new();
    if let Some(id) = sub_id {
        props.push(PROP_SUBSCRIPTION_ID);
        put_varint(&mut props, id as usize);
    }
    let mut body = packet_id.to_be_bytes().to_vec();
    put_varint(&mut body, props.len());
    body.extend_from_slice(&props);
    for (filter, options) in filters {
        put_bin(&mut body, filter.as_bytes());
        body.push(*options);
    }
    packet(0x82, &body)
}

/// Encodes a Message Expiry Interval property.
pub fn expiry_prop(secs: u32) -> Vec<u8> {
    let mut p = vec![PROP_MESSAGE_EXPIRY];
    p.extend_from_slice(&secs.to_be_bytes());
    p
}

/// Encodes a Topic Alias property.
pub fn alias_prop(alias: u16) -> Vec<u8> {
    let mut p = vec![PROP_TOPIC_ALIAS];
    p.extend_from_slice(&alias.to_be_bytes());
    p
}

/// Encodes a two-byte integer property (Receive Maximum, Topic Alias
/// Maximum, ...).
pub fn u16_prop(id: u8, value: u16) -> Vec<u8> {
    let mut p = vec![id];
    p.extend_from_slice(&value.to_be_bytes());
    p
}

impl Props {
    /// Every integer value of property `id`, in wire order (Subscription
    /// Identifier may repeat).
    pub fn ints(&self, id: u8) -> Vec<u32> {
        self.0
            .iter()
            .filter_map(|(i, v)| match v {
                PropValue::Int(n) if *i == id => Some(*n),
                _ => None,
            })
            .collect()
    }

    /// Whether property `id` is present.
    pub fn has(&self, id: u8) -> bool {
        self.0.iter().any(|(i, _)| *i == id)
    }
}

impl RawPacket {
    /// The DUP flag of a PUBLISH.
    pub fn dup(&self) -> bool {
        assert_eq!(self.kind, PUBLISH, "DUP of a non-PUBLISH: {self:?}");
        self.flags & 0x08 != 0
    }

    /// Parses a PUBACK, PUBREC, PUBREL or PUBCOMP of `kind` into (packet id,
    /// reason code); asserts the fixed header flags the standard requires.
    pub fn ack(&self, kind: u8) -> (u16, u8) {
        assert_eq!(self.kind, kind, "expected packet type {kind}, got {self:?}");
        let want_flags = if kind == PUBREL { 2 } else { 0 };
        assert_eq!(self.flags, want_flags, "fixed header flags of {self:?}");
        let mut c = Cursor::new(&self.body);
        let id = c.u16();
        let code = if c.remaining() > 0 { c.u8() } else { 0 };
        (id, code)
    }
}

impl RawClient {
    /// v5: subscribes with an optional Subscription Identifier and whole
    /// options bytes; answers the SUBACK reason codes.
    pub fn subscribe_v5(
        &mut self,
        packet_id: u16,
        sub_id: Option<u32>,
        filters: &[(&str, u8)],
    ) -> Vec<u8> {
        self.send(&subscribe_packet_v5(packet_id, sub_id, filters))
            .expect("send SUBSCRIBE");
        let p = self.expect_packet(PROMPT, "SUBACK");
        let (id, codes) = p.ack_codes(SUBACK, true);
        assert_eq!(id, packet_id, "SUBACK packet id");
        codes
    }

    /// Reads the next packet, asserting it is a PUBLISH; answers it parsed
    /// with its DUP flag and sends no acknowledgement.
    pub fn expect_publish_raw(&mut self, timeout: Duration) -> (PublishInfo, bool) {
        let p = self.expect_packet(timeout, "PUBLISH");
        let info = p.publish(self.v5);
        (info, p.dup())
    }

    /// Publishes at QoS 2 and runs the whole flow (PUBREC, PUBREL, PUBCOMP),
    /// asserting packet ids and success codes. `props`: v5 properties.
    pub fn publish2(&mut self, topic: &str, payload: &[u8], packet_id: u16, props: &[u8]) {
        let props = if self.v5 { Some(props) } else { None };
        self.send(&publish_packet_full(
            topic, payload, 2, packet_id, false, false, props,
        ))
        .expect("send PUBLISH");
        let p = self.expect_packet(PROMPT, "PUBREC");
        assert_eq!(p.ack(PUBREC), (packet_id, 0), "PUBREC of {topic}");
        self.send(&pubrel_packet(packet_id)).expect("send PUBREL");
        let p = self.expect_packet(PROMPT, "PUBCOMP");
        assert_eq!(p.ack(PUBCOMP), (packet_id, 0), "PUBCOMP of {topic}");
    }

    /// Publishes at QoS 1 with v5 `props` (ignored for v3) and waits for a
    /// successful PUBACK.
    pub fn publish1_props(&mut self, topic: &str, payload: &[u8], packet_id: u16, props: &[u8]) {
        let props = if self.v5 { Some(props) } else { None };
        self.send(&publish_packet_full(
            topic, payload, 1, packet_id, false, false, props,
        ))
        .expect("send PUBLISH");
        let p = self.expect_packet(PROMPT, "PUBACK");
        assert_eq!(p.ack(PUBACK), (packet_id, 0), "PUBACK of {topic}");
    }
}

/// A raw client that completes the QoS 1 and 2 flows of what it receives:
/// PUBACK for QoS 1, PUBREC for QoS 2 and PUBCOMP for each PUBREL (which may
/// arrive between later PUBLISHes).
pub struct Receiver {
    /// The connection.
    pub raw: RawClient,
    /// QoS 2 packet ids answered with PUBREC whose PUBREL has not come yet.
    pub awaiting_pubrel: Vec<u16>,
}

impl Receiver {
    /// Wraps a connected raw client.
    pub fn new(raw: RawClient) -> Receiver {
        Receiver {
            raw,
            awaiting_pubrel: Vec::new(),
        }
    }

    /// Connects (asserting success) and answers the CONNACK.
    pub fn connect(addr: SocketAddr, opts: &ConnectOpts) -> (Receiver, ConnAckInfo) {
        let (raw, ack) = RawClient::connected(addr, opts);
        (Receiver::new(raw), ack)
    }

    fn answer_pubrel(&mut self, p: &RawPacket) {
        let (id, code) = p.ack(PUBREL);
        assert_eq!(code, 0, "PUBREL reason code: {p:?}");
        let Some(at) = self.awaiting_pubrel.iter().position(|&i| i == id) else {
            panic!(
                "PUBREL for {id}, which is not awaiting one ({:?})",
                self.awaiting_pubrel
            )
        };
        self.awaiting_pubrel.remove(at);
        self.raw.send(&pubcomp_packet(id)).expect("send PUBCOMP");
    }

    /// The next PUBLISH (acknowledged as its QoS requires) with its DUP
    /// flag; PUBRELs met on the way are answered.
    pub fn next_dup(&mut self, timeout: Duration) -> (PublishInfo, bool) {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let p = self.raw.expect_packet(left, "PUBLISH");
            if p.kind == PUBREL {
                self.answer_pubrel(&p);
                continue;
            }
            return self.acknowledge(&p);
        }
    }

    /// Parses a PUBLISH and acknowledges it as its QoS requires.
    fn acknowledge(&mut self, p: &RawPacket) -> (PublishInfo, bool) {
        let info = p.publish(self.raw.v5);
        match info.qos {
            1 => self
                .raw
                .send(&puback_packet(info.packet_id))
                .expect("send PUBACK"),
            2 => {
                assert!(
                    !self.awaiting_pubrel.contains(&info.packet_id),
                    "QoS 2 PUBLISH with packet id {} still in flight: {info:?}",
                    info.packet_id
                );
                self.raw
                    .send(&pubrec_packet(info.packet_id))
                    .expect("send PUBREC");
                self.awaiting_pubrel.push(info.packet_id);
            }
            _ => {}
        }
        (info, p.dup())
    }

    /// The next PUBLISH, acknowledged, or `None` when none came within
    /// `timeout` (PUBRELs met on the way are answered).
    pub fn try_next(&mut self, timeout: Duration) -> Option<PublishInfo> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.raw.read_packet(left) {
                Err(ReadError::Timeout) => return None,
                Ok(p) if p.kind == PUBREL => self.answer_pubrel(&p),
                Ok(p) => return Some(self.acknowledge(&p).0),
                Err(e) => panic!("reading a PUBLISH: {e:?}"),
            }
        }
    }

    /// The next PUBLISH, acknowledged.
    pub fn next(&mut self, timeout: Duration) -> PublishInfo {
        self.next_dup(timeout).0
    }

    /// Waits for every outstanding PUBREL and answers it.
    pub fn finish(&mut self) {
        while !self.awaiting_pubrel.is_empty() {
            let p = self.raw.expect_packet(PROMPT, "PUBREL");
            self.answer_pubrel(&p);
        }
    }

    /// Asserts no PUBLISH arrives within `dur` (PUBRELs are answered).
    pub fn expect_no_publish(&mut self, dur: Duration, why: &str) {
        let deadline = Instant::now() + dur;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.raw.read_packet(left) {
                Err(ReadError::Timeout) => return,
                Ok(p) if p.kind == PUBREL => self.answer_pubrel(&p),
                other => panic!("expected no PUBLISH for {dur:?} ({why}), got {other:?}"),
            }
        }
    }
}

/// A topic `prefix<n>` owned by `shard`.
pub fn topic_on_shard(prefix: &str, shard: usize) -> String {
    (0..10_000)
        .map(|i| format!("{prefix}{i}"))
        .find(|t| shard_for(t.as_bytes(), SHARDS) == shard)
        .expect("some topic maps to every shard")
}

/// Subscribes `c` to `filter` with the subscription options byte `options`
/// (v5) or QoS (v3), then to `control`, a topic holding a retained message on
/// the same owner shard (`shard_for(topic, 2)`), and answers the retained
/// messages sent for `filter`. The owner answers in order, so the control
/// message comes after every retained message of `filter`: its arrival proves
/// the answer complete. SUBACKs and retained PUBLISHes may
/// interleave; both SUBACKs must come and succeed.
pub fn retained_on(
    c: &mut RawClient,
    packet_id: u16,
    filter: &str,
    options: u8,
    control: &str,
) -> Vec<PublishInfo> {
    let v5 = c.v5;
    c.send(&subscribe_packet(packet_id, &[(filter, options)], v5))
        .expect("send SUBSCRIBE");
    c.send(&subscribe_packet(packet_id + 1, &[(control, 0)], v5))
        .expect("send SUBSCRIBE");
    let mut acks = Vec::new();
    let mut got = Vec::new();
    let mut control_seen = false;
    while !(control_seen && acks.len() == 2) {
        let p = c.expect_packet(PROMPT, "SUBACK or retained PUBLISH");
        if p.kind == SUBACK {
            let (id, codes) = p.ack_codes(SUBACK, v5);
            assert!(
                codes.len() == 1 && codes[0] < 0x80,
                "SUBACK {id} refused: {codes:?}"
            );
            acks.push(id);
            continue;
        }
        let p = p.publish(v5);
        assert!(
            !control_seen,
            "retained message after the control one: {p:?}"
        );
        if p.topic == control {
            assert!(p.retain, "control message without RETAIN: {p:?}");
            control_seen = true;
        } else {
            got.push(p);
        }
    }
    assert_eq!(acks, [packet_id, packet_id + 1], "SUBACK order");
    got
}

// ---------------------------------------------------------------------------
// Packet sizes and writes that may block
// ---------------------------------------------------------------------------

/// Maximum Packet Size property id.
pub const PROP_MAXIMUM_PACKET_SIZE: u8 = 0x27;

/// Encodes a four-byte integer property (Maximum Packet Size, Session Expiry
/// Interval, ...).
pub fn u32_prop(id: u8, value: u32) -> Vec<u8> {
    let mut p = vec![id];
    p.extend_from_slice(&value.to_be_bytes());
    p
}

impl RawPacket {
    /// The size of the whole packet on the wire: fixed header byte, remaining
    /// length and body (what Maximum Packet Size limits, MQTT 3.1.2.11.4).
    pub fn wire_len(&self) -> usize {
        let mut len = Vec::new();
        put_varint(&mut len, self.body.len());
        1 + len.len() + self.body.len()
    }
}

impl RawClient {
    /// One `write` of a prefix of `bytes`, waiting at most `timeout` for the
    /// socket to take anything; answers how many bytes it took. A timeout is
    /// an error of kind `WouldBlock` or `TimedOut` and leaves the stream
    /// usable (nothing was written).
    pub fn write_some(&mut self, bytes: &[u8], timeout: Duration) -> io::Result<usize> {
        self.stream.set_write_timeout(Some(timeout))?;
        self.stream.write(bytes)
    }
}

// ---------------------------------------------------------------------------
// Socket-level helpers (I/O layer tests: tests/io.rs, tests/emfile.rs)
// ---------------------------------------------------------------------------

impl RawClient {
    /// Wraps an already connected stream (sets TCP_NODELAY); `v5` says how
    /// to parse what comes back.
    pub fn from_stream(stream: TcpStream, v5: bool) -> RawClient {
        stream.set_nodelay(true).expect("set_nodelay");
        PacketStream::new(stream, v5)
    }

    /// Writes `bytes` one byte per `write` call (TCP_NODELAY is on, so each
    /// byte leaves as its own segment unless the kernel coalesces a
    /// retransmission).
    pub fn send_bytewise(&mut self, bytes: &[u8]) -> io::Result<()> {
        for b in bytes {
            self.stream.write_all(std::slice::from_ref(b))?;
        }
        Ok(())
    }

    /// Closes the connection abortively: SO_LINGER 0, then close, so the
    /// kernel sends RST instead of FIN and discards anything unsent.
    pub fn reset(self) {
        use std::os::fd::AsRawFd;
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: the fd is the open socket `self.stream` owns; setsockopt
        // reads one `linger` from a live local.
        let rc = unsafe {
            libc::setsockopt(
                self.stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&linger as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "SO_LINGER 0: {}", io::Error::last_os_error());
        drop(self.stream);
    }
}

// ---------------------------------------------------------------------------
// Hostile-client helpers (tests/hostile.rs)
// ---------------------------------------------------------------------------

impl RawClient {
    /// Opens a TCP connection to the IPv4 `addr` from `local_ip` (any
    /// port; all of 127.0.0.0/8 is loopback on Linux, so a test can play a
    /// second host), with SO_RCVBUF set to `rcvbuf` bytes before the SYN
    /// when given: the window the kernel offers the broker then stays
    /// small, so a client that does not read backs the broker up after
    /// kilobytes instead of megabytes.
    pub fn open_from(
        addr: SocketAddr,
        local_ip: std::net::Ipv4Addr,
        rcvbuf: Option<usize>,
    ) -> RawClient {
        use std::os::fd::FromRawFd;
        let SocketAddr::V4(remote) = addr else {
            panic!("open_from: {addr} is not IPv4")
        };
        let sockaddr = |ip: std::net::Ipv4Addr, port: u16| libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes(ip.octets()),
            },
            sin_zero: [0; 8],
        };
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        // SAFETY: plain socket calls on a descriptor this function owns
        // until `from_raw_fd` takes it; every pointer is to a live local
        // of the size passed with it.
        let stream = unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
            assert!(fd >= 0, "socket: {}", io::Error::last_os_error());
            // Owned at once, so an assertion below closes it.
            let stream = TcpStream::from_raw_fd(fd);
            if let Some(bytes) = rcvbuf {
                let value = bytes as libc::c_int;
                let rc = libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_RCVBUF,
                    (&value as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                );
                assert_eq!(rc, 0, "SO_RCVBUF: {}", io::Error::last_os_error());
            }
            let local = sockaddr(local_ip, 0);
            let rc = libc::bind(fd, (&local as *const libc::sockaddr_in).cast(), len);
            assert_eq!(rc, 0, "bind {local_ip}: {}", io::Error::last_os_error());
            let peer = sockaddr(*remote.ip(), remote.port());
            let rc = libc::connect(fd, (&peer as *const libc::sockaddr_in).cast(), len);
            assert_eq!(rc, 0, "connect {addr}: {}", io::Error::last_os_error());
            stream
        };
        RawClient::from_stream(stream, false)
    }

    /// Whether the broker closes the connection within `timeout`; packets
    /// that come first are discarded. False when it is still open then.
    pub fn closed_within(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.read_packet(left) {
                Ok(_) => {}
                Err(ReadError::Closed) => return true,
                Err(ReadError::Timeout) => return false,
                Err(e) => panic!("reading until close: {e:?}"),
            }
        }
    }

    /// Reads and discards raw bytes until the broker closes the connection
    /// (EOF or reset); answers how many bytes came. Panics when it is still
    /// open at `timeout`. Unlike `expect_closed` this keeps nothing, for a
    /// connection with megabytes of backlog.
    pub fn drain_until_closed(&mut self, timeout: Duration, why: &str) -> usize {
        let deadline = Instant::now() + timeout;
        let mut total = std::mem::take(&mut self.buf).len();
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let now = Instant::now();
            assert!(
                now < deadline,
                "connection not closed within {timeout:?} ({why}); {total} bytes drained"
            );
            let wait = (deadline - now).max(Duration::from_millis(1));
            self.stream.set_read_timeout(Some(wait)).expect("timeout");
            match self.stream.read(&mut chunk) {
                Ok(0) => return total,
                Ok(n) => total += n,
                Err(e) => match e.kind() {
                    io::ErrorKind::WouldBlock
                    | io::ErrorKind::TimedOut
                    | io::ErrorKind::Interrupted => {}
                    io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => {
                        return total
                    }
                    _ => panic!("draining until close ({why}): {e}"),
                },
            }
        }
    }
}

/// `n` topics `prefix<i>` whose retained messages `shard` owns
/// (`shard_for(topic, SHARDS)`).
pub fn topics_on_shard(prefix: &str, shard: usize, n: usize) -> Vec<String> {
    (0..100_000)
        .map(|i| format!("{prefix}{i}"))
        .filter(|t| shard_for(t.as_bytes(), SHARDS) == shard)
        .take(n)
        .collect()
}

// ---------------------------------------------------------------------------
// Helpers shared by the TCP, TLS and WebSocket tests
// ---------------------------------------------------------------------------

/// Asserts a keep-alive close seen at `closed` lies in [sent + lower,
/// acked + lower + tick + MARGIN]: `sent` is just before the client's last
/// packet was written, `acked` when the broker's answer to it was read.
pub fn assert_close_window(
    sent: Instant,
    acked: Instant,
    closed: Instant,
    lower: Duration,
    what: &str,
) {
    let after_send = closed - sent;
    assert!(
        after_send >= lower,
        "{what}: closed {after_send:?} after the last packet, before {lower:?}"
    );
    let upper = lower + Duration::from_millis(TICK_MS) + MARGIN;
    let after_ack = closed.saturating_duration_since(acked);
    assert!(
        after_ack <= upper,
        "{what}: closed {after_ack:?} after the last packet, later than {upper:?}"
    );
}

/// Reads raw bytes until the peer closes `stream` (EOF or reset) and
/// answers them; panics when it is still open at `timeout`.
pub fn read_until_closed(stream: &mut TcpStream, timeout: Duration, why: &str) -> Vec<u8> {
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let now = Instant::now();
        assert!(
            now < deadline,
            "connection not closed within {timeout:?} ({why}); got {got:?}"
        );
        stream
            .set_read_timeout(Some((deadline - now).max(Duration::from_millis(1))))
            .expect("set_read_timeout");
        match stream.read(&mut chunk) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) => match e.kind() {
                io::ErrorKind::WouldBlock
                | io::ErrorKind::TimedOut
                | io::ErrorKind::Interrupted => {}
                io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => return got,
                _ => panic!("reading until close ({why}): {e}"),
            },
        }
    }
}

/// Connects with `connect(client_id)` (ids `prefix<n>` owned by shard 1,
/// a new one each try) until one
/// connection was accepted by the other shard and handed over to its owner
/// (`Stats::handoffs` grew during it); answers that connection. With
/// SO_REUSEPORT spreading accepts over two shards, 50 tries all landing on
/// the owner has odds of 2^-50.
pub fn handed_off<C>(broker: &Broker, prefix: &str, mut connect: impl FnMut(&str) -> C) -> C {
    for i in 0..50 {
        let before = broker.stats().handoffs;
        let c = connect(&id_on_shard(&format!("{prefix}{i}-"), 1));
        if broker.stats().handoffs > before {
            return c;
        }
    }
    panic!("50 connections were all accepted by the shard owning their client id")
}

/// Asserts a connection that closed `after` (measured from before its
/// connect) was closed by a connect timeout of `timeout_ms`: not before it,
/// and not later than one tick plus `MARGIN` after it.
pub fn assert_connect_timeout_window(after: Duration, timeout_ms: u64) {
    assert!(
        after >= Duration::from_millis(timeout_ms),
        "closed after {after:?}, before the connect timeout"
    );
    assert!(
        after <= Duration::from_millis(timeout_ms + TICK_MS) + MARGIN,
        "closed after {after:?}, long after the connect timeout"
    );
}

/// The end of a "last words" test: a client sent ten QoS 0 PUBLISHes "m0"
/// to "m9" on `last/msg`, a DISCONNECT and its transport's close in one
/// write, and had a will on `last/will`. Asserts `watcher` (subscribed to
/// `last/#`) gets all ten in order, the client goes, and no will follows
/// (a marker published after it arrives first).
pub fn assert_last_words_handled<S: Timed>(broker: &Broker, watcher: &mut PacketStream<S>) {
    for i in 0..10 {
        let p = watcher.expect_publish(PROMPT);
        assert_eq!(p.payload, format!("m{i}").as_bytes(), "message {i}");
    }
    wait_stats(broker, "the closer gone", |s| s.connections == 1);
    // A will would reach the watcher before this marker.
    watcher.publish0("last/will", b"marker");
    let p = watcher.expect_publish(PROMPT);
    assert_eq!(p.payload.as_slice(), b"marker", "a will after a DISCONNECT");
    assert_eq!(broker.stats().wills_published, 0);
}
