//! WebSocket server byte layer (RFC 6455, as MQTT 5.0 section 6 and MQTT
//! 3.1.1 section 6 use it): the HTTP upgrade, then frames to MQTT bytes and
//! MQTT bytes to frames.
//!
//! Sans-IO: [`WsServer::input`] takes bytes read from the peer and appends
//! the MQTT bytes they carry to one buffer and the bytes owed to the peer
//! (the 101 response, pongs, a close frame, an HTTP refusal) to another;
//! [`WsServer::output`] wraps MQTT bytes as a binary frame. It never touches
//! a socket, a clock or the MQTT codec: packets may span frames and a frame
//! may hold several packets [MQTT-6.0.0-2], so payloads are only
//! concatenated.
//!
//! Invariants:
//! - A data frame's payload is never buffered: it is unmasked straight into
//!   the caller's MQTT buffer as it arrives. Only a partial frame header
//!   (at most 14 bytes) and a control frame's payload (at most 125 bytes)
//!   are kept, inline.
//! - The only heap this layer owns is the upgrade request while it is
//!   incomplete (at most 8 KiB); it is freed at the upgrade, so an upgraded
//!   connection holds none.
//! - At most one close frame is ever sent, and no data frame after it
//!   (RFC 6455 5.5.1).
//! - Once the peer's close frame is handled or an error is returned, later
//!   input is ignored.

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::{BufMut, BytesMut};
use tracing::debug;

/// Most bytes the upgrade request's headers may take, through the blank
/// line that ends them.
const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// Most header lines the upgrade request may have.
const MAX_HEADERS: usize = 32;
/// RFC 6455 1.3: appended to Sec-WebSocket-Key before hashing.
const ACCEPT_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// Length of base64(SHA-1): 20 bytes encode to 28.
const ACCEPT_LEN: usize = 28;

/// Longest frame header: 2 fixed bytes, a 64-bit length and a mask key.
const MAX_HEAD_BYTES: usize = 14;
/// RFC 6455 5.5: a control frame's payload is at most 125 bytes.
const MAX_CONTROL_BYTES: usize = 125;

const FIN: u8 = 0x80;
const RSV: u8 = 0x70;
const MASKED: u8 = 0x80;
const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// RFC 6455 7.4.1 status codes this layer sends.
const CLOSE_PROTOCOL_ERROR: u16 = 1002;
const CLOSE_UNSUPPORTED_DATA: u16 = 1003;
const CLOSE_INVALID_PAYLOAD: u16 = 1007;
const CLOSE_TOO_BIG: u16 = 1009;

/// A WebSocket listener's settings.
#[derive(Clone, Debug)]
pub(crate) struct WsConfig {
    /// The request path that upgrades (compared without the query string).
    pub(crate) path: String,
    /// Upgrade a client that offers neither `mqtt` nor `mqttv3.1`, answering
    /// no subprotocol; when false such a client gets 400.
    pub(crate) allow_no_subprotocol: bool,
    /// Largest data frame payload accepted, in bytes (larger: close 1009).
    pub(crate) max_frame: usize,
}

/// What the connection does after an input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WsStatus {
    /// Keep reading. The upgrade may still be incomplete: see
    /// [`WsServer::is_open`].
    Open,
    /// The peer sent a close frame (or the connection ended before): our
    /// close frame is already in `wire`; close the TCP connection once
    /// `wire` is sent.
    Closed,
}

/// Why the connection must close. An upgrade refusal has its HTTP response
/// in `wire`, a frame-level error its close frame (unless one was sent
/// before).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WsError {
    /// The request's headers did not end within 8 KiB (431).
    RequestTooLarge,
    /// The request has more than 32 header lines (431).
    TooManyHeaders,
    /// The request is not valid HTTP/1.x (400).
    Malformed(httparse::Error),
    /// RFC 6455 4.2.1 (1): the method is not GET (405).
    Method,
    /// RFC 6455 4.2.1 (1): the request is not HTTP/1.1 (400).
    HttpVersion,
    /// The path is not the listener's WebSocket path (404).
    Path,
    /// RFC 6455 4.2.1 (3): no `Upgrade: websocket` (400).
    NoUpgrade,
    /// RFC 6455 4.2.1 (4): no `upgrade` token in `Connection` (400).
    NoConnectionUpgrade,
    /// RFC 6455 4.2.1 (6), 4.4: `Sec-WebSocket-Version` is missing or not
    /// 13 (426).
    WsVersion,
    /// RFC 6455 4.2.1 (5), 11.3.1: `Sec-WebSocket-Key` is missing, repeated
    /// or not the base64 of 16 bytes (400).
    Key,
    /// [MQTT-6.0.0-3]: the client offers neither `mqtt` nor `mqttv3.1`
    /// (400).
    Subprotocol,
    /// RFC 6455 5.1: a client frame is not masked (1002).
    Unmasked,
    /// RFC 6455 5.2: a reserved bit is set; no extension is negotiated
    /// (1002).
    ReservedBits,
    /// RFC 6455 5.2: a reserved opcode (1002).
    UnknownOpcode(u8),
    /// [MQTT-6.0.0-1]: a text frame; MQTT travels in binary frames (1003).
    Text,
    /// RFC 6455 5.4: a continuation frame with no message to continue
    /// (1002).
    UnexpectedContinuation,
    /// RFC 6455 5.4: a new data frame before the fragmented message ended
    /// (1002).
    UnfinishedMessage,
    /// RFC 6455 5.5: a control frame without FIN (1002).
    FragmentedControl,
    /// RFC 6455 5.5: a control frame payload over 125 bytes (1002).
    ControlTooLong,
    /// RFC 6455 5.2: a 64-bit length with its most significant bit set
    /// (1002).
    LengthTopBit,
    /// A data frame longer than `WsConfig::max_frame` (1009).
    FrameTooLarge {
        /// The frame's payload length.
        len: u64,
        /// The limit.
        max: usize,
    },
    /// RFC 6455 5.5.1: a close payload of one byte (1002).
    CloseTruncated,
    /// RFC 6455 7.4: a close status code not allowed on the wire (1002).
    CloseCode(u16),
    /// RFC 6455 5.5.1: a close reason that is not UTF-8 (1007).
    CloseReason,
}

/// How an error is answered: the one place violations map to codes.
enum Reply {
    /// An HTTP status refusing the upgrade.
    Http(u16),
    /// A close frame with this status code.
    Close(u16),
}

impl WsError {
    fn reply(&self) -> Reply {
        match self {
            WsError::RequestTooLarge | WsError::TooManyHeaders => Reply::Http(431),
            WsError::Method => Reply::Http(405),
            WsError::Path => Reply::Http(404),
            WsError::WsVersion => Reply::Http(426),
            WsError::Malformed(_)
            | WsError::HttpVersion
            | WsError::NoUpgrade
            | WsError::NoConnectionUpgrade
            | WsError::Key
            | WsError::Subprotocol => Reply::Http(400),
            WsError::Text => Reply::Close(CLOSE_UNSUPPORTED_DATA),
            WsError::FrameTooLarge { .. } => Reply::Close(CLOSE_TOO_BIG),
            WsError::CloseReason => Reply::Close(CLOSE_INVALID_PAYLOAD),
            WsError::Unmasked
            | WsError::ReservedBits
            | WsError::UnknownOpcode(_)
            | WsError::UnexpectedContinuation
            | WsError::UnfinishedMessage
            | WsError::FragmentedControl
            | WsError::ControlTooLong
            | WsError::LengthTopBit
            | WsError::CloseTruncated
            | WsError::CloseCode(_) => Reply::Close(CLOSE_PROTOCOL_ERROR),
        }
    }

    /// True when the HTTP upgrade was refused; false for a frame-level
    /// error after the upgrade.
    pub(crate) fn is_upgrade(&self) -> bool {
        matches!(self.reply(), Reply::Http(_))
    }
}

impl fmt::Display for WsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WsError::RequestTooLarge => write!(
                f,
                "websocket upgrade: request headers longer than {MAX_REQUEST_BYTES} bytes"
            ),
            WsError::TooManyHeaders => write!(
                f,
                "websocket upgrade: more than {MAX_HEADERS} request headers"
            ),
            WsError::Malformed(e) => write!(f, "websocket upgrade: malformed request: {e}"),
            WsError::Method => f.write_str("websocket upgrade: method is not GET (RFC 6455 4.2.1)"),
            WsError::HttpVersion => {
                f.write_str("websocket upgrade: request is not HTTP/1.1 (RFC 6455 4.2.1)")
            }
            WsError::Path => f.write_str("websocket upgrade: path is not the websocket path"),
            WsError::NoUpgrade => {
                f.write_str("websocket upgrade: no Upgrade: websocket header (RFC 6455 4.2.1)")
            }
            WsError::NoConnectionUpgrade => f.write_str(
                "websocket upgrade: Connection header lacks the upgrade token (RFC 6455 4.2.1)",
            ),
            WsError::WsVersion => f.write_str(
                "websocket upgrade: Sec-WebSocket-Version is missing or not 13 (RFC 6455 4.4)",
            ),
            WsError::Key => f.write_str(
                "websocket upgrade: Sec-WebSocket-Key is missing, repeated or not 16 bytes of base64 (RFC 6455 4.2.1)",
            ),
            WsError::Subprotocol => f.write_str(
                "websocket upgrade: client offers neither mqtt nor mqttv3.1 (MQTT-6.0.0-3)",
            ),
            WsError::Unmasked => f.write_str("websocket: client frame not masked (RFC 6455 5.1)"),
            WsError::ReservedBits => {
                f.write_str("websocket: reserved bits set in a frame (RFC 6455 5.2)")
            }
            WsError::UnknownOpcode(op) => {
                write!(f, "websocket: reserved opcode {op:#x} (RFC 6455 5.2)")
            }
            WsError::Text => {
                f.write_str("websocket: text frame; MQTT uses binary frames (MQTT-6.0.0-1)")
            }
            WsError::UnexpectedContinuation => f.write_str(
                "websocket: continuation frame with no message to continue (RFC 6455 5.4)",
            ),
            WsError::UnfinishedMessage => f.write_str(
                "websocket: new data frame before the fragmented message ended (RFC 6455 5.4)",
            ),
            WsError::FragmentedControl => {
                f.write_str("websocket: control frame without FIN (RFC 6455 5.5)")
            }
            WsError::ControlTooLong => {
                f.write_str("websocket: control frame payload over 125 bytes (RFC 6455 5.5)")
            }
            WsError::LengthTopBit => f.write_str(
                "websocket: 64-bit frame length with the top bit set (RFC 6455 5.2)",
            ),
            WsError::FrameTooLarge { len, max } => write!(
                f,
                "websocket: data frame of {len} bytes exceeds the limit of {max}"
            ),
            WsError::CloseTruncated => {
                f.write_str("websocket: close frame payload of 1 byte (RFC 6455 5.5.1)")
            }
            WsError::CloseCode(code) => write!(
                f,
                "websocket: close status code {code} not allowed on the wire (RFC 6455 7.4)"
            ),
            WsError::CloseReason => {
                f.write_str("websocket: close reason is not UTF-8 (RFC 6455 5.5.1)")
            }
        }
    }
}

impl std::error::Error for WsError {}

/// One connection's WebSocket state.
pub(crate) struct WsServer {
    phase: Phase,
}

enum Phase {
    /// Waiting for the whole upgrade request: the bytes of it that arrived
    /// in earlier inputs (empty, unallocated, when none did).
    Upgrade(Vec<u8>),
    /// Upgraded: frames both ways.
    Frames(Frames),
    /// The upgrade was refused; input is ignored.
    Refused,
}

impl WsServer {
    /// A connection that has sent nothing yet; allocates nothing.
    pub(crate) fn new() -> WsServer {
        WsServer {
            phase: Phase::Upgrade(Vec::new()),
        }
    }

    /// Feeds bytes read from the peer. Appends MQTT bytes (the unmasked
    /// payloads of binary and continuation frames) to `mqtt`, and bytes to
    /// send to the peer (the 101 response, pongs, a close frame, an HTTP
    /// refusal) to `wire`. Bytes after the request in the same input are
    /// frames and are handled in this call.
    ///
    /// On `Err` the connection must be closed after sending `wire`, which
    /// holds the refusal (see [`WsError::is_upgrade`]) or the close frame.
    pub(crate) fn input(
        &mut self,
        config: &WsConfig,
        input: &[u8],
        mqtt: &mut BytesMut,
        wire: &mut BytesMut,
    ) -> Result<WsStatus, WsError> {
        let frames = match &mut self.phase {
            Phase::Frames(state) => return state.input(config, input, mqtt, wire),
            Phase::Refused => return Ok(WsStatus::Closed),
            Phase::Upgrade(request) => match upgrade(config, request, input, wire) {
                Ok(None) => return Ok(WsStatus::Open),
                Ok(Some(used)) => &input[used..],
                Err(e) => {
                    self.phase = Phase::Refused;
                    return Err(e);
                }
            },
        };
        // Replacing the phase drops the request buffer: an upgraded
        // connection holds no heap here.
        let mut state = Frames::new();
        let status = state.input(config, frames, mqtt, wire);
        self.phase = Phase::Frames(state);
        status
    }

    /// Wraps MQTT bytes as one binary frame (server side: unmasked, FIN set,
    /// shortest length encoding) appended to `wire`. Only valid once
    /// upgraded; after a close frame was sent it appends nothing (RFC 6455
    /// 5.5.1).
    pub(crate) fn output(&self, mqtt: &[u8], wire: &mut BytesMut) {
        debug_assert!(
            matches!(self.phase, Phase::Frames(_)),
            "websocket output before the upgrade"
        );
        if let Phase::Frames(state) = &self.phase {
            if !state.close_sent {
                put_frame(wire, FIN | OP_BINARY, mqtt);
            }
        }
    }

    /// Appends a close frame with `code` (1000 normal, 1001 going away, ...)
    /// unless one was already sent. Before the upgrade there is no frame to
    /// send: it appends nothing.
    pub(crate) fn close(&mut self, code: u16, wire: &mut BytesMut) {
        if let Phase::Frames(state) = &mut self.phase {
            state.send_close(Some(code), wire);
        }
    }

    /// True once the upgrade is done (the 101 response was written), also
    /// after a close.
    pub(crate) fn is_open(&self) -> bool {
        matches!(self.phase, Phase::Frames(_))
    }

    /// Bytes this layer holds on the heap now: the part of the upgrade
    /// request that arrived, 0 once upgraded.
    #[cfg_attr(
        not(test),
        allow(
            dead_code,
            reason = "for the engine's memory accounting, not wired up yet"
        )
    )]
    pub(crate) fn heap_bytes(&self) -> usize {
        match &self.phase {
            Phase::Upgrade(request) => request.capacity(),
            Phase::Frames(_) | Phase::Refused => 0,
        }
    }
}

/// Takes upgrade request bytes. `Ok(None)`: the request is incomplete (its
/// start is kept in `buffered`). `Ok(Some(n))`: the 101 response is in
/// `wire` and `input[n..]` are frames. On `Err` the refusal is in `wire`.
fn upgrade(
    config: &WsConfig,
    buffered: &mut Vec<u8>,
    input: &[u8],
    wire: &mut BytesMut,
) -> Result<Option<usize>, WsError> {
    let old = buffered.len();
    let new = &input[..input.len().min(MAX_REQUEST_BYTES - old)];
    // The usual request arrives in one read: parse it in place, copy
    // nothing.
    let request: &[u8] = if old == 0 {
        new
    } else {
        grow(buffered, new);
        buffered
    };
    // Only a blank line ends the headers: parse when one may have arrived,
    // so a request trickling in byte by byte is not re-parsed at every
    // byte. Also parse the first bytes and the end of the request line:
    // a peer that does not speak HTTP at all (MQTT on a ws:// port) is
    // refused at once, not after 8 KiB or the connect timeout.
    let line_ended = !request[..old].contains(&b'\n') && new.contains(&b'\n');
    let parsed = if old == 0 || line_ended || has_blank_line(&request[old.saturating_sub(2)..]) {
        parse(config, request, wire)?
    } else {
        None
    };
    match parsed {
        Some(end) => {
            // The bytes before `old` held no whole request (or it would
            // have been parsed then), so the request ends in this input.
            debug_assert!(end > old);
            Ok(Some(end.saturating_sub(old)))
        }
        None if request.len() >= MAX_REQUEST_BYTES => Err(refuse(WsError::RequestTooLarge, wire)),
        None => {
            if old == 0 {
                grow(buffered, new);
            }
            Ok(None)
        }
    }
}

/// Appends to the request buffer, growing it by doubling up to
/// `MAX_REQUEST_BYTES` (a trickled request costs at most twice its size).
fn grow(buffered: &mut Vec<u8>, new: &[u8]) {
    let need = buffered.len() + new.len();
    if need > buffered.capacity() {
        let target = (buffered.capacity() * 2).max(need).min(MAX_REQUEST_BYTES);
        buffered.reserve_exact(target - buffered.len());
    }
    buffered.extend_from_slice(new);
}

/// Whether `bytes` hold an empty line (`\n\n` or `\n\r\n`).
fn has_blank_line(bytes: &[u8]) -> bool {
    bytes.windows(2).any(|w| w == b"\n\n") || bytes.windows(3).any(|w| w == b"\n\r\n")
}

/// Parses and checks the request. `Ok(Some(end))`: upgraded, the request
/// took `request[..end]` and the 101 response is in `wire`.
fn parse(config: &WsConfig, request: &[u8], wire: &mut BytesMut) -> Result<Option<usize>, WsError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let end = match req.parse(request) {
        Ok(httparse::Status::Complete(end)) => end,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(refuse(WsError::TooManyHeaders, wire)),
        Err(e) => return Err(refuse(WsError::Malformed(e), wire)),
    };
    match check(config, &req) {
        Ok(accept) => {
            debug!(
                subprotocol = accept.subprotocol.unwrap_or(""),
                "websocket upgrade"
            );
            put_switching(wire, accept);
            Ok(Some(end))
        }
        Err(e) => Err(refuse(e, wire)),
    }
}

/// What the 101 response needs from an accepted request.
struct Accept<'a> {
    /// Sec-WebSocket-Key as sent (trimmed).
    key: &'a [u8],
    /// The subprotocol answered, if any.
    subprotocol: Option<&'static str>,
}

/// RFC 6455 4.2.1 and MQTT section 6: whether the request may upgrade.
fn check<'a>(config: &WsConfig, req: &httparse::Request<'_, 'a>) -> Result<Accept<'a>, WsError> {
    if req.method != Some("GET") {
        return Err(WsError::Method);
    }
    if req.version != Some(1) {
        return Err(WsError::HttpVersion);
    }
    let target = req.path.unwrap_or("");
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    if path != config.path {
        return Err(WsError::Path);
    }
    let mut upgrade = false;
    let mut connection = false;
    let mut versions = 0;
    let mut version_13 = true;
    let mut keys = 0;
    let mut key: &[u8] = b"";
    let mut offers_mqtt = false;
    let mut offers_v31 = false;
    for header in req.headers.iter() {
        let name = header.name;
        let value = header.value;
        if name.eq_ignore_ascii_case("upgrade") {
            upgrade |= tokens(value).any(|t| t.eq_ignore_ascii_case(b"websocket"));
        } else if name.eq_ignore_ascii_case("connection") {
            // RFC 9110 7.6.1: a comma list of case-insensitive tokens.
            connection |= tokens(value).any(|t| t.eq_ignore_ascii_case(b"upgrade"));
        } else if name.eq_ignore_ascii_case("sec-websocket-version") {
            versions += 1;
            version_13 &= value.trim_ascii() == b"13";
        } else if name.eq_ignore_ascii_case("sec-websocket-key") {
            keys += 1;
            key = value.trim_ascii();
        } else if name.eq_ignore_ascii_case("sec-websocket-protocol") {
            // RFC 6455 4.2.1 (8), 11.3.4: subprotocol names are
            // case-sensitive tokens; the header may repeat.
            for token in tokens(value) {
                offers_mqtt |= token == b"mqtt";
                offers_v31 |= token == b"mqttv3.1";
            }
        }
    }
    if !upgrade {
        return Err(WsError::NoUpgrade);
    }
    if !connection {
        return Err(WsError::NoConnectionUpgrade);
    }
    if versions == 0 || !version_13 {
        return Err(WsError::WsVersion);
    }
    if keys != 1 || !key_is_16_bytes(key) {
        return Err(WsError::Key);
    }
    // [MQTT-6.0.0-4]: answer "mqtt"; "mqttv3.1" is MQTT 3.1's name. Never
    // a protocol the client did not offer (RFC 6455 4.2.2).
    let subprotocol = if offers_mqtt {
        Some("mqtt")
    } else if offers_v31 {
        Some("mqttv3.1")
    } else if config.allow_no_subprotocol {
        None
    } else {
        return Err(WsError::Subprotocol);
    };
    Ok(Accept { key, subprotocol })
}

/// The items of a comma-separated header value, trimmed.
fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(<[u8]>::trim_ascii)
}

/// RFC 6455 4.2.1 (5): the key is the base64 of 16 bytes.
fn key_is_16_bytes(key: &[u8]) -> bool {
    // Room for any key a few bytes too long to decode and be refused; a
    // longer one fails as not fitting.
    let mut decoded = [0u8; 32];
    matches!(BASE64.decode_slice(key, &mut decoded), Ok(16))
}

/// RFC 6455 4.2.2 (5.4): base64(SHA-1(key + GUID)).
fn accept_key(key: &[u8]) -> [u8; ACCEPT_LEN] {
    // Hashed in two parts: no buffer for the joined input.
    let mut context = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    context.update(key);
    context.update(ACCEPT_GUID);
    let digest = context.finish();
    let mut out = [0u8; ACCEPT_LEN];
    // Invariant: a 20-byte digest encodes to exactly 28 bytes.
    let written = BASE64
        .encode_slice(digest.as_ref(), &mut out)
        .expect("28 bytes hold base64 of a SHA-1 digest");
    debug_assert_eq!(written, ACCEPT_LEN);
    out
}

/// Appends the 101 response.
fn put_switching(wire: &mut BytesMut, accept: Accept<'_>) {
    wire.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ",
    );
    wire.extend_from_slice(&accept_key(accept.key));
    wire.extend_from_slice(b"\r\n");
    if let Some(name) = accept.subprotocol {
        wire.extend_from_slice(b"Sec-WebSocket-Protocol: ");
        wire.extend_from_slice(name.as_bytes());
        wire.extend_from_slice(b"\r\n");
    }
    wire.extend_from_slice(b"\r\n");
}

/// Appends the HTTP response refusing the upgrade and hands the error back.
fn refuse(error: WsError, wire: &mut BytesMut) -> WsError {
    debug_assert!(error.is_upgrade(), "an HTTP refusal for a frame error");
    let status = match error.reply() {
        Reply::Http(status) => status,
        Reply::Close(_) => 400,
    };
    let (line, extra): (&[u8], &[u8]) = match status {
        404 => (b"404 Not Found", b""),
        // RFC 9110 15.5.6: a 405 names the allowed methods.
        405 => (b"405 Method Not Allowed", b"Allow: GET\r\n"),
        // RFC 6455 4.4: name the version this server speaks.
        426 => (b"426 Upgrade Required", b"Sec-WebSocket-Version: 13\r\n"),
        431 => (b"431 Request Header Fields Too Large", b""),
        _ => (b"400 Bad Request", b""),
    };
    wire.extend_from_slice(b"HTTP/1.1 ");
    wire.extend_from_slice(line);
    wire.extend_from_slice(b"\r\n");
    wire.extend_from_slice(extra);
    wire.extend_from_slice(b"Connection: close\r\nContent-Length: 0\r\n\r\n");
    error
}

/// Frame state of an upgraded connection.
struct Frames {
    /// The next frame's header, as much as has arrived.
    head: [u8; MAX_HEAD_BYTES],
    /// Bytes of `head` filled.
    head_len: u8,
    /// The frame whose payload is arriving; `None` while a header is.
    current: Option<Frame>,
    /// A control frame's payload so far (unmasked).
    control: [u8; MAX_CONTROL_BYTES],
    /// Bytes of `control` filled.
    control_len: u8,
    /// A data message started without FIN and has not ended.
    fragmented: bool,
    /// Our close frame was sent: no more frames go out.
    close_sent: bool,
    /// The peer closed or broke the protocol: input is ignored.
    ended: bool,
}

/// A frame whose header is whole.
#[derive(Clone, Copy)]
struct Frame {
    opcode: u8,
    /// Payload bytes still to arrive.
    left: u64,
    mask: [u8; 4],
    /// Payload bytes unmasked so far, modulo 4.
    mask_pos: u8,
}

impl Frames {
    fn new() -> Frames {
        Frames {
            head: [0; MAX_HEAD_BYTES],
            head_len: 0,
            current: None,
            control: [0; MAX_CONTROL_BYTES],
            control_len: 0,
            fragmented: false,
            close_sent: false,
            ended: false,
        }
    }

    fn input(
        &mut self,
        config: &WsConfig,
        mut input: &[u8],
        mqtt: &mut BytesMut,
        wire: &mut BytesMut,
    ) -> Result<WsStatus, WsError> {
        if self.ended {
            return Ok(WsStatus::Closed);
        }
        loop {
            let Some(mut frame) = self.current else {
                if input.is_empty() {
                    return Ok(WsStatus::Open);
                }
                match self.read_head(config, input) {
                    Ok(used) => input = &input[used..],
                    Err(e) => return Err(self.fail(e, wire)),
                }
                continue;
            };
            // An empty payload passes through here too, so a frame is
            // finished as soon as its header is whole.
            let n = usize::try_from(frame.left)
                .unwrap_or(usize::MAX)
                .min(input.len());
            let (chunk, rest) = input.split_at(n);
            input = rest;
            let pos = usize::from(frame.mask_pos);
            if is_control(frame.opcode) {
                let start = usize::from(self.control_len);
                // n <= left <= 125 - start: the header check bounds it.
                let dest = &mut self.control[start..start + n];
                dest.copy_from_slice(chunk);
                unmask(dest, frame.mask, pos);
                self.control_len += n as u8;
            } else {
                let start = mqtt.len();
                mqtt.extend_from_slice(chunk);
                unmask(&mut mqtt[start..], frame.mask, pos);
            }
            frame.mask_pos = ((pos + n) & 3) as u8;
            frame.left -= n as u64;
            if frame.left > 0 {
                debug_assert!(input.is_empty());
                self.current = Some(frame);
                return Ok(WsStatus::Open);
            }
            self.current = None;
            match frame.opcode {
                OP_PING => self.pong(wire),
                OP_CLOSE => return self.peer_closed(wire),
                // RFC 6455 5.5.3: an unsolicited pong needs no answer.
                _ => {}
            }
            self.control_len = 0;
        }
    }

    /// Takes header bytes from `input`, checking the fixed two bytes as
    /// soon as they are in and the length once the header is whole.
    /// Returns how many bytes it took.
    fn read_head(&mut self, config: &WsConfig, input: &[u8]) -> Result<usize, WsError> {
        let have = usize::from(self.head_len);
        let want = if have < 2 {
            2
        } else {
            head_bytes(self.head[1])
        };
        let n = (want - have).min(input.len());
        self.head[have..have + n].copy_from_slice(&input[..n]);
        self.head_len += n as u8;
        if have + n == want {
            if want == 2 {
                self.check_fixed()?;
            } else {
                self.start_frame(config)?;
            }
        }
        Ok(n)
    }

    /// RFC 6455 5.2, 5.4, 5.5: the first two header bytes.
    fn check_fixed(&self) -> Result<(), WsError> {
        let (b0, b1) = (self.head[0], self.head[1]);
        if b0 & RSV != 0 {
            return Err(WsError::ReservedBits);
        }
        match b0 & 0x0F {
            OP_CONTINUATION if !self.fragmented => return Err(WsError::UnexpectedContinuation),
            OP_CONTINUATION => {}
            // [MQTT-6.0.0-1]: only binary frames carry MQTT.
            OP_TEXT => return Err(WsError::Text),
            OP_BINARY if self.fragmented => return Err(WsError::UnfinishedMessage),
            OP_BINARY => {}
            OP_CLOSE | OP_PING | OP_PONG => {
                if b0 & FIN == 0 {
                    return Err(WsError::FragmentedControl);
                }
                if usize::from(b1 & 0x7F) > MAX_CONTROL_BYTES {
                    return Err(WsError::ControlTooLong);
                }
            }
            op => return Err(WsError::UnknownOpcode(op)),
        }
        // RFC 6455 5.1: a server closes on an unmasked client frame.
        if b1 & MASKED == 0 {
            return Err(WsError::Unmasked);
        }
        Ok(())
    }

    /// The header is whole: read the length and mask key and start the
    /// payload.
    fn start_frame(&mut self, config: &WsConfig) -> Result<(), WsError> {
        let head = &self.head;
        let (len, mask_at) = match head[1] & 0x7F {
            126 => (u64::from(u16::from_be_bytes([head[2], head[3]])), 4),
            127 => {
                let mut be = [0u8; 8];
                be.copy_from_slice(&head[2..10]);
                (u64::from_be_bytes(be), 10)
            }
            // RFC 6455 5.2 asks for the minimal encoding but a longer one
            // is harmless, so it is accepted.
            short => (u64::from(short), 2),
        };
        if len >> 63 != 0 {
            return Err(WsError::LengthTopBit);
        }
        let opcode = head[0] & 0x0F;
        if !is_control(opcode) {
            // Checked before any payload arrives (RFC 6455 7.4.1: 1009).
            if len > config.max_frame as u64 {
                return Err(WsError::FrameTooLarge {
                    len,
                    max: config.max_frame,
                });
            }
            self.fragmented = head[0] & FIN == 0;
        }
        let mut mask = [0u8; 4];
        mask.copy_from_slice(&head[mask_at..mask_at + 4]);
        self.current = Some(Frame {
            opcode,
            left: len,
            mask,
            mask_pos: 0,
        });
        self.head_len = 0;
        Ok(())
    }

    /// RFC 6455 5.5.2: answer a ping with its payload.
    fn pong(&self, wire: &mut BytesMut) {
        // After our close frame nothing more goes out (RFC 6455 5.5.1).
        if !self.close_sent {
            put_frame(
                wire,
                FIN | OP_PONG,
                &self.control[..usize::from(self.control_len)],
            );
        }
    }

    /// RFC 6455 5.5.1, 7.4: the peer's close frame is whole.
    fn peer_closed(&mut self, wire: &mut BytesMut) -> Result<WsStatus, WsError> {
        let payload = &self.control[..usize::from(self.control_len)];
        let code = match payload {
            [] => None,
            [_] => return Err(self.fail(WsError::CloseTruncated, wire)),
            [hi, lo, reason @ ..] => {
                let code = u16::from_be_bytes([*hi, *lo]);
                if !close_code_allowed(code) {
                    return Err(self.fail(WsError::CloseCode(code), wire));
                }
                if std::str::from_utf8(reason).is_err() {
                    return Err(self.fail(WsError::CloseReason, wire));
                }
                Some(code)
            }
        };
        // Echo the peer's code (none if it sent none); if we closed first
        // this frame is the peer's answer and needs none.
        self.send_close(code, wire);
        self.ended = true;
        Ok(WsStatus::Closed)
    }

    /// Appends a close frame unless one was sent.
    fn send_close(&mut self, code: Option<u16>, wire: &mut BytesMut) {
        if self.close_sent {
            return;
        }
        self.close_sent = true;
        match code {
            Some(code) => put_frame(wire, FIN | OP_CLOSE, &code.to_be_bytes()),
            None => put_frame(wire, FIN | OP_CLOSE, &[]),
        }
    }

    /// A protocol error: send its close frame, ignore all later input.
    fn fail(&mut self, error: WsError, wire: &mut BytesMut) -> WsError {
        debug_assert!(!error.is_upgrade(), "a close frame for an upgrade refusal");
        let code = match error.reply() {
            Reply::Close(code) => code,
            Reply::Http(_) => CLOSE_PROTOCOL_ERROR,
        };
        self.send_close(Some(code), wire);
        self.ended = true;
        error
    }
}

/// Header length once its second byte is known (client frames carry a
/// mask key).
fn head_bytes(b1: u8) -> usize {
    let extended = match b1 & 0x7F {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    2 + extended + 4
}

fn is_control(opcode: u8) -> bool {
    opcode & 0x8 != 0
}

/// RFC 6455 7.4.1, 7.4.2 and the IANA registry: the codes a peer may send.
/// 1004-1006 and 1015 are reserved or never sent; 1016-2999 are unassigned.
fn close_code_allowed(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// RFC 6455 5.3: XORs `bytes` with the mask key, starting `pos` bytes into
/// the payload.
fn unmask(bytes: &mut [u8], mask: [u8; 4], pos: usize) {
    let key = [
        mask[pos & 3],
        mask[(pos + 1) & 3],
        mask[(pos + 2) & 3],
        mask[(pos + 3) & 3],
    ];
    let word_key = u32::from_ne_bytes(key);
    let mut words = bytes.chunks_exact_mut(4);
    for word in &mut words {
        let x = u32::from_ne_bytes([word[0], word[1], word[2], word[3]]) ^ word_key;
        word.copy_from_slice(&x.to_ne_bytes());
    }
    for (b, k) in words.into_remainder().iter_mut().zip(key) {
        *b ^= k;
    }
}

/// Appends a server frame: unmasked, shortest length encoding (RFC 6455
/// 5.1, 5.2).
fn put_frame(wire: &mut BytesMut, first: u8, payload: &[u8]) {
    let len = payload.len();
    wire.reserve(10 + len);
    wire.put_u8(first);
    if len < 126 {
        wire.put_u8(len as u8);
    } else if let Ok(len) = u16::try_from(len) {
        wire.put_u8(126);
        wire.put_u16(len);
    } else {
        wire.put_u8(127);
        wire.put_u64(len as u64);
    }
    wire.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The RFC 6455 1.3 example key and its accept value.
    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
    const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
    /// The RFC 6455 5.7 example mask key.
    const MASK: [u8; 4] = [0x37, 0xFA, 0x21, 0x3D];

    /// A good request, line by line (the blank line is added).
    const GOOD: &[&str] = &[
        "GET /mqtt HTTP/1.1",
        "Host: broker.example",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
        "Sec-WebSocket-Protocol: mqtt",
    ];

    const SWITCHING_MQTT: &str = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n";
    const SWITCHING_V31: &str = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: mqttv3.1\r\n\r\n";
    const SWITCHING_NONE: &str = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
    const R400: &str = "HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
    const R404: &str = "HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
    const R405: &str =
        "HTTP/1.1 405 Method Not Allowed\r\nAllow: GET\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
    const R426: &str = "HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
    const R431: &str = "HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";

    fn config() -> WsConfig {
        WsConfig {
            path: "/mqtt".into(),
            allow_no_subprotocol: false,
            max_frame: 1 << 20,
        }
    }

    fn lenient() -> WsConfig {
        WsConfig {
            allow_no_subprotocol: true,
            ..config()
        }
    }

    fn request_of(lines: &[&str]) -> Vec<u8> {
        let mut out = String::new();
        for line in lines {
            out.push_str(line);
            out.push_str("\r\n");
        }
        out.push_str("\r\n");
        out.into_bytes()
    }

    fn good_request() -> Vec<u8> {
        request_of(GOOD)
    }

    /// GOOD with the line starting with `prefix` replaced by `line` (or
    /// dropped when `line` is empty).
    fn request_with(prefix: &str, line: &str) -> Vec<u8> {
        let mut lines: Vec<&str> = GOOD.to_vec();
        let at = lines
            .iter()
            .position(|l| l.starts_with(prefix))
            .expect("prefix names a line of GOOD");
        if line.is_empty() {
            lines.remove(at);
        } else {
            lines[at] = line;
        }
        request_of(&lines)
    }

    /// GOOD with `extra` lines appended.
    fn request_plus(extra: &[&str]) -> Vec<u8> {
        let mut lines: Vec<&str> = GOOD.to_vec();
        lines.extend_from_slice(extra);
        request_of(&lines)
    }

    /// A client frame: masked with MASK, shortest length encoding.
    fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let form = if payload.len() < 126 {
            Len::Short
        } else if payload.len() <= 0xFFFF {
            Len::Sixteen
        } else {
            Len::SixtyFour
        };
        frame_with(first, payload, form, MASK)
    }

    #[derive(Clone, Copy)]
    enum Len {
        Short,
        Sixteen,
        SixtyFour,
    }

    /// A client frame with the length in the given form and the given mask.
    fn frame_with(first: u8, payload: &[u8], form: Len, mask: [u8; 4]) -> Vec<u8> {
        let mut out = vec![first];
        match form {
            Len::Short => out.push(MASKED | payload.len() as u8),
            Len::Sixteen => {
                out.push(MASKED | 126);
                out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
            }
            Len::SixtyFour => {
                out.push(MASKED | 127);
                out.extend_from_slice(&(payload.len() as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    fn close_frame(code: u16) -> Vec<u8> {
        let mut out = vec![0x88, 0x02];
        out.extend_from_slice(&code.to_be_bytes());
        out
    }

    fn concat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    /// Feeds chunks in order; records every output and the first end
    /// (`Closed` or an error).
    struct Run {
        mqtt: BytesMut,
        wire: BytesMut,
        end: Option<Result<WsStatus, WsError>>,
        server: WsServer,
    }

    fn run<'a>(config: &WsConfig, chunks: impl IntoIterator<Item = &'a [u8]>) -> Run {
        let mut r = Run {
            mqtt: BytesMut::new(),
            wire: BytesMut::new(),
            end: None,
            server: WsServer::new(),
        };
        for chunk in chunks {
            let result = r.server.input(config, chunk, &mut r.mqtt, &mut r.wire);
            if r.end.is_none() && result != Ok(WsStatus::Open) {
                r.end = Some(result);
            }
        }
        r
    }

    fn run_whole(config: &WsConfig, bytes: &[u8]) -> Run {
        run(config, [bytes])
    }

    /// A server past a good upgrade with `wire` cleared.
    fn upgraded(config: &WsConfig) -> (WsServer, BytesMut, BytesMut) {
        let mut server = WsServer::new();
        let mut mqtt = BytesMut::new();
        let mut wire = BytesMut::new();
        let status = server.input(config, &good_request(), &mut mqtt, &mut wire);
        assert_eq!(status, Ok(WsStatus::Open));
        assert_eq!(&wire[..], SWITCHING_MQTT.as_bytes());
        assert!(server.is_open());
        wire.clear();
        (server, mqtt, wire)
    }

    // ---- upgrade ----

    #[test]
    fn accept_key_of_the_rfc_example() {
        assert_eq!(&accept_key(KEY.as_bytes())[..], ACCEPT.as_bytes());
    }

    #[test]
    fn good_upgrades_and_their_responses() {
        let cases: &[(WsConfig, Vec<u8>, &str)] = &[
            (config(), good_request(), SWITCHING_MQTT),
            (
                config(),
                request_with("Sec-WebSocket-Protocol", "Sec-WebSocket-Protocol: mqttv3.1"),
                SWITCHING_V31,
            ),
            // mqtt wins whatever the order.
            (
                config(),
                request_with(
                    "Sec-WebSocket-Protocol",
                    "Sec-WebSocket-Protocol: mqttv3.1, mqtt",
                ),
                SWITCHING_MQTT,
            ),
            (
                config(),
                request_with(
                    "Sec-WebSocket-Protocol",
                    "Sec-WebSocket-Protocol: wamp,mqttv3.1",
                ),
                SWITCHING_V31,
            ),
            // Repeated headers, each a list, spaces trimmed.
            (
                config(),
                request_plus(&["Sec-WebSocket-Protocol:  wamp ,  mqtt  "]),
                SWITCHING_MQTT,
            ),
            (
                config(),
                request_of(&[
                    "GET /mqtt HTTP/1.1",
                    "Sec-WebSocket-Protocol: wamp",
                    "Upgrade: websocket",
                    "Connection: Upgrade",
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                    "Sec-WebSocket-Version: 13",
                    "Sec-WebSocket-Protocol: soap, mqttv3.1",
                    "Sec-WebSocket-Protocol: mqtt",
                ]),
                SWITCHING_MQTT,
            ),
            // Header names and the Upgrade/Connection tokens in any case.
            (
                config(),
                request_of(&[
                    "GET /mqtt HTTP/1.1",
                    "upgrade: WebSocket",
                    "CONNECTION: keep-alive, UPGRADE",
                    "sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==",
                    "sec-websocket-version: 13",
                    "sec-websocket-protocol: mqtt",
                ]),
                SWITCHING_MQTT,
            ),
            // The query string is not part of the path.
            (
                config(),
                request_with("GET", "GET /mqtt?client=1&x HTTP/1.1"),
                SWITCHING_MQTT,
            ),
            // Connection as two headers.
            (
                config(),
                request_of(&[
                    "GET /mqtt HTTP/1.1",
                    "Upgrade: websocket",
                    "Connection: keep-alive",
                    "Connection: upgrade",
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                    "Sec-WebSocket-Version: 13",
                    "Sec-WebSocket-Protocol: mqtt",
                ]),
                SWITCHING_MQTT,
            ),
            // Without a subprotocol only when allowed, then none answered.
            (
                lenient(),
                request_with("Sec-WebSocket-Protocol", ""),
                SWITCHING_NONE,
            ),
            (
                lenient(),
                request_with("Sec-WebSocket-Protocol", "Sec-WebSocket-Protocol: wamp"),
                SWITCHING_NONE,
            ),
            (lenient(), good_request(), SWITCHING_MQTT),
        ];
        for (i, (config, request, response)) in cases.iter().enumerate() {
            let r = run_whole(config, request);
            assert_eq!(r.end, None, "case {i}");
            assert_eq!(std::str::from_utf8(&r.wire).unwrap(), *response, "case {i}");
            assert!(r.server.is_open(), "case {i}");
            assert!(r.mqtt.is_empty(), "case {i}");
        }
    }

    #[test]
    fn refused_upgrades() {
        let cases: &[(WsConfig, Vec<u8>, WsError, &str)] = &[
            (
                config(),
                request_with("GET", "POST /mqtt HTTP/1.1"),
                WsError::Method,
                R405,
            ),
            (
                config(),
                request_with("GET", "GET /mqtt HTTP/1.0"),
                WsError::HttpVersion,
                R400,
            ),
            (
                config(),
                request_with("GET", "GET /other HTTP/1.1"),
                WsError::Path,
                R404,
            ),
            (
                config(),
                request_with("GET", "GET /mqtt/ HTTP/1.1"),
                WsError::Path,
                R404,
            ),
            (
                config(),
                request_with("GET", "GET /MQTT HTTP/1.1"),
                WsError::Path,
                R404,
            ),
            (
                config(),
                request_with("Upgrade", ""),
                WsError::NoUpgrade,
                R400,
            ),
            (
                config(),
                request_with("Upgrade", "Upgrade: h2c"),
                WsError::NoUpgrade,
                R400,
            ),
            (
                config(),
                request_with("Connection", ""),
                WsError::NoConnectionUpgrade,
                R400,
            ),
            (
                config(),
                request_with("Connection", "Connection: keep-alive"),
                WsError::NoConnectionUpgrade,
                R400,
            ),
            // A token, not a substring.
            (
                config(),
                request_with("Connection", "Connection: upgraded"),
                WsError::NoConnectionUpgrade,
                R400,
            ),
            (
                config(),
                request_with("Sec-WebSocket-Version", ""),
                WsError::WsVersion,
                R426,
            ),
            (
                config(),
                request_with("Sec-WebSocket-Version", "Sec-WebSocket-Version: 8"),
                WsError::WsVersion,
                R426,
            ),
            (
                config(),
                request_plus(&["Sec-WebSocket-Version: 8"]),
                WsError::WsVersion,
                R426,
            ),
            (
                config(),
                request_with("Sec-WebSocket-Key", ""),
                WsError::Key,
                R400,
            ),
            // 15 bytes.
            (
                config(),
                request_with("Sec-WebSocket-Key", "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAA"),
                WsError::Key,
                R400,
            ),
            // 17 bytes.
            (
                config(),
                request_with(
                    "Sec-WebSocket-Key",
                    "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAAA=",
                ),
                WsError::Key,
                R400,
            ),
            (
                config(),
                request_with(
                    "Sec-WebSocket-Key",
                    "Sec-WebSocket-Key: !!not*base64!!not*base64",
                ),
                WsError::Key,
                R400,
            ),
            (
                config(),
                request_with(
                    "Sec-WebSocket-Key",
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==dGhlIHNhbXBsZSBub25jZQ==dGhlIHNhbXBsZSBub25jZQ==",
                ),
                WsError::Key,
                R400,
            ),
            // RFC 6455 11.3.1: the key appears once.
            (
                config(),
                request_plus(&["Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA=="]),
                WsError::Key,
                R400,
            ),
            (
                config(),
                request_with("Sec-WebSocket-Protocol", ""),
                WsError::Subprotocol,
                R400,
            ),
            (
                config(),
                request_with("Sec-WebSocket-Protocol", "Sec-WebSocket-Protocol: wamp, soap"),
                WsError::Subprotocol,
                R400,
            ),
            // Subprotocol names are case-sensitive.
            (
                config(),
                request_with("Sec-WebSocket-Protocol", "Sec-WebSocket-Protocol: MQTT"),
                WsError::Subprotocol,
                R400,
            ),
            (
                config(),
                request_with("Sec-WebSocket-Protocol", "Sec-WebSocket-Protocol: mqtt5"),
                WsError::Subprotocol,
                R400,
            ),
            (
                config(),
                request_with("Host", "Host broker"),
                WsError::Malformed(httparse::Error::HeaderName),
                R400,
            ),
            (
                config(),
                b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n".to_vec(),
                WsError::Malformed(httparse::Error::Token),
                R400,
            ),
        ];
        for (i, (config, request, error, response)) in cases.iter().enumerate() {
            let r = run_whole(config, request);
            assert_eq!(r.end, Some(Err(*error)), "case {i}");
            assert!(error.is_upgrade(), "case {i}");
            assert_eq!(std::str::from_utf8(&r.wire).unwrap(), *response, "case {i}");
            assert!(!r.server.is_open(), "case {i}");
            assert_eq!(r.server.heap_bytes(), 0, "case {i}");
        }
    }

    #[test]
    fn at_most_32_headers() {
        let padding: Vec<String> = (0..MAX_HEADERS - GOOD.len())
            .map(|i| format!("X-Pad-{i}: {i}"))
            .collect();
        let mut lines: Vec<&str> = GOOD.to_vec();
        lines.extend(padding.iter().map(String::as_str));
        assert_eq!(lines.len() - 1, MAX_HEADERS - 1);
        // 31 header lines after the request line: fine; 32 too.
        let r = run_whole(&config(), &request_of(&lines));
        assert_eq!(r.end, None);
        assert_eq!(&r.wire[..], SWITCHING_MQTT.as_bytes());
        lines.push("X-Pad-last: 1");
        assert_eq!(lines.len() - 1, MAX_HEADERS);
        let r = run_whole(&config(), &request_of(&lines));
        assert_eq!(r.end, None);
        lines.push("X-Pad-over: 1");
        let r = run_whole(&config(), &request_of(&lines));
        assert_eq!(r.end, Some(Err(WsError::TooManyHeaders)));
        assert_eq!(&r.wire[..], R431.as_bytes());
    }

    /// GOOD padded with one header so the request is `total` bytes.
    fn request_of_len(total: usize) -> Vec<u8> {
        let base = request_plus(&["X-Pad: "]).len();
        let pad = "a".repeat(total - base);
        let line = format!("X-Pad: {pad}");
        let request = request_plus(&[&line]);
        assert_eq!(request.len(), total);
        request
    }

    #[test]
    fn request_headers_at_most_8_kib() {
        let at_limit = request_of_len(MAX_REQUEST_BYTES);
        for chunk in [at_limit.len(), 1, 1000] {
            let r = run(&config(), at_limit.chunks(chunk));
            assert_eq!(r.end, None, "chunk {chunk}");
            assert_eq!(&r.wire[..], SWITCHING_MQTT.as_bytes(), "chunk {chunk}");
            assert_eq!(r.server.heap_bytes(), 0, "chunk {chunk}");
        }
        let over = request_of_len(MAX_REQUEST_BYTES + 1);
        for chunk in [over.len(), 1, 1000, MAX_REQUEST_BYTES] {
            let r = run(&config(), over.chunks(chunk));
            assert_eq!(r.end, Some(Err(WsError::RequestTooLarge)), "chunk {chunk}");
            assert_eq!(&r.wire[..], R431.as_bytes(), "chunk {chunk}");
            assert!(r.server.heap_bytes() == 0);
        }
        // Headers that never end are refused at 8 KiB, not buffered on.
        let endless = vec![b'a'; 3 * MAX_REQUEST_BYTES];
        let mut server = WsServer::new();
        let (mut mqtt, mut wire) = (BytesMut::new(), BytesMut::new());
        let mut result = Ok(WsStatus::Open);
        for chunk in endless.chunks(100) {
            result = server.input(&config(), chunk, &mut mqtt, &mut wire);
            assert!(server.heap_bytes() <= MAX_REQUEST_BYTES);
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(WsError::RequestTooLarge));
        assert_eq!(&wire[..], R431.as_bytes());
    }

    #[test]
    fn incomplete_request_waits_and_is_freed_at_the_upgrade() {
        let request = good_request();
        let mut server = WsServer::new();
        assert_eq!(server.heap_bytes(), 0);
        let (mut mqtt, mut wire) = (BytesMut::new(), BytesMut::new());
        let (head, tail) = request.split_at(20);
        assert_eq!(
            server.input(&config(), head, &mut mqtt, &mut wire),
            Ok(WsStatus::Open)
        );
        assert!(wire.is_empty());
        assert!(!server.is_open());
        assert!(server.heap_bytes() >= 20);
        assert!(server.heap_bytes() <= 2 * request.len());
        assert_eq!(
            server.input(&config(), tail, &mut mqtt, &mut wire),
            Ok(WsStatus::Open)
        );
        assert_eq!(&wire[..], SWITCHING_MQTT.as_bytes());
        assert!(server.is_open());
        assert_eq!(server.heap_bytes(), 0);
    }

    #[test]
    fn whole_request_in_one_read_allocates_nothing() {
        let (server, _, _) = upgraded(&config());
        assert_eq!(server.heap_bytes(), 0);
    }

    #[test]
    fn input_after_a_refusal_is_ignored() {
        let mut bad = request_with("GET", "GET /nope HTTP/1.1");
        bad.extend_from_slice(&frame(0x82, b"\x10"));
        let r = run(&config(), [&bad[..], &good_request()[..]]);
        assert_eq!(r.end, Some(Err(WsError::Path)));
        assert_eq!(&r.wire[..], R404.as_bytes());
        assert!(r.mqtt.is_empty());
    }

    #[test]
    fn frames_in_the_same_read_as_the_request() {
        let stream = concat(&[
            &good_request(),
            &frame(0x82, b"\xC0\x00"),
            &frame(0x89, b"p"),
        ]);
        let r = run_whole(&config(), &stream);
        assert_eq!(r.end, None);
        assert_eq!(&r.mqtt[..], b"\xC0\x00");
        assert_eq!(
            &r.wire[..],
            concat(&[SWITCHING_MQTT.as_bytes(), b"\x8A\x01p"])
        );
    }

    #[test]
    fn close_before_the_upgrade_sends_nothing() {
        let mut server = WsServer::new();
        let mut wire = BytesMut::new();
        server.close(1000, &mut wire);
        assert!(wire.is_empty());
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "before the upgrade")]
    fn output_before_the_upgrade_is_a_bug() {
        WsServer::new().output(b"x", &mut BytesMut::new());
    }

    // ---- frames ----

    /// Feeds `bytes` to an upgraded server; returns the result and both
    /// outputs.
    fn after_upgrade(
        config: &WsConfig,
        bytes: &[u8],
    ) -> (Result<WsStatus, WsError>, BytesMut, BytesMut) {
        let (mut server, mut mqtt, mut wire) = upgraded(config);
        let result = server.input(config, bytes, &mut mqtt, &mut wire);
        // Whatever ended the connection, later input changes nothing.
        if result != Ok(WsStatus::Open) {
            let (m, w) = (mqtt.len(), wire.len());
            let again = server.input(config, &frame(0x89, b"late"), &mut mqtt, &mut wire);
            assert_eq!(again, Ok(WsStatus::Closed));
            assert_eq!((mqtt.len(), wire.len()), (m, w));
        }
        (result, mqtt, wire)
    }

    #[test]
    fn binary_frame_payload_is_unmasked_into_mqtt() {
        let (result, mqtt, wire) = after_upgrade(
            &config(),
            &frame(0x82, b"\x10\x0C\x00\x04MQTT\x05\x02\x00\x3C\x00"),
        );
        assert_eq!(result, Ok(WsStatus::Open));
        assert_eq!(&mqtt[..], b"\x10\x0C\x00\x04MQTT\x05\x02\x00\x3C\x00");
        assert!(wire.is_empty());
    }

    #[test]
    fn several_packets_in_one_frame() {
        let packets = concat(&[
            b"\xC0\x00",
            b"\x30\x07\x00\x03a/bxy",
            b"\xC0\x00",
            b"\xE0\x00",
        ]);
        let (result, mqtt, _) = after_upgrade(&config(), &frame(0x82, &packets));
        assert_eq!(result, Ok(WsStatus::Open));
        assert_eq!(&mqtt[..], &packets[..]);
    }

    const PUBLISH: &[u8] = b"\x30\x0E\x00\x05a/b/chello, w";

    #[test]
    fn one_packet_over_a_fragmented_message() {
        let stream = concat(&[
            &frame(0x02, &PUBLISH[..3]),
            &frame(0x00, &PUBLISH[3..9]),
            &frame(0x80, &PUBLISH[9..]),
        ]);
        let (result, mqtt, wire) = after_upgrade(&config(), &stream);
        assert_eq!(result, Ok(WsStatus::Open));
        assert_eq!(&mqtt[..], PUBLISH);
        assert!(wire.is_empty());
    }

    #[test]
    fn one_packet_over_three_messages() {
        let stream = concat(&[
            &frame(0x82, &PUBLISH[..3]),
            &frame(0x82, &PUBLISH[3..9]),
            &frame(0x82, &PUBLISH[9..]),
        ]);
        let (result, mqtt, _) = after_upgrade(&config(), &stream);
        assert_eq!(result, Ok(WsStatus::Open));
        assert_eq!(&mqtt[..], PUBLISH);
    }

    #[test]
    fn ping_between_fragments_is_answered() {
        let stream = concat(&[
            &frame(0x02, &PUBLISH[..4]),
            &frame(0x89, b"beat"),
            &frame(0x00, &PUBLISH[4..8]),
            &frame(0x8A, b"unsolicited"),
            &frame(0x89, b""),
            &frame(0x80, &PUBLISH[8..]),
            // The message ended: a new one may start.
            &frame(0x82, b"\xC0\x00"),
        ]);
        let (result, mqtt, wire) = after_upgrade(&config(), &stream);
        assert_eq!(result, Ok(WsStatus::Open));
        assert_eq!(&mqtt[..], concat(&[PUBLISH, b"\xC0\x00"]));
        assert_eq!(&wire[..], b"\x8A\x04beat\x8A\x00");
    }

    #[test]
    fn pong_is_ignored() {
        let (result, mqtt, wire) = after_upgrade(&config(), &frame(0x8A, b"1234"));
        assert_eq!(result, Ok(WsStatus::Open));
        assert!(mqtt.is_empty());
        assert!(wire.is_empty());
    }

    #[test]
    fn largest_ping_split_byte_by_byte() {
        let payload: Vec<u8> = (0..125u8).collect();
        let ping = frame(0x89, &payload);
        let (mut server, mut mqtt, mut wire) = upgraded(&config());
        for byte in ping.chunks(1) {
            assert_eq!(
                server.input(&config(), byte, &mut mqtt, &mut wire),
                Ok(WsStatus::Open)
            );
        }
        assert_eq!(&wire[..], concat(&[b"\x8A\x7D", &payload]));
        assert_eq!(server.heap_bytes(), 0);
    }

    #[test]
    fn length_encodings() {
        let big: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
        let cases: &[(&[u8], Len)] = &[
            (&big[..125], Len::Short),
            (&big[..126], Len::Sixteen),
            (&big[..300], Len::Sixteen),
            (&big[..65_535], Len::Sixteen),
            (&big[..65_536], Len::SixtyFour),
            (&big, Len::SixtyFour),
            // Non-minimal encodings are accepted.
            (&big[..5], Len::Sixteen),
            (&big[..5], Len::SixtyFour),
            (&big[..0], Len::SixtyFour),
            (&big[..300], Len::SixtyFour),
        ];
        for (i, (payload, form)) in cases.iter().enumerate() {
            let bytes = frame_with(0x82, payload, *form, [1, 2, 3, 4]);
            let (result, mqtt, _) = after_upgrade(&config(), &bytes);
            assert_eq!(result, Ok(WsStatus::Open), "case {i}");
            assert_eq!(&mqtt[..], *payload, "case {i}");
        }
    }

    #[test]
    fn empty_data_frames() {
        let stream = concat(&[
            &frame(0x82, b""),
            &frame(0x02, b""),
            &frame(0x00, b"\xC0"),
            &frame(0x80, b""),
        ]);
        let (result, mqtt, _) = after_upgrade(&config(), &stream);
        assert_eq!(result, Ok(WsStatus::Open));
        assert_eq!(&mqtt[..], b"\xC0");
    }

    #[test]
    fn data_is_streamed_not_buffered() {
        let payload: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let bytes = frame(0x82, &payload);
        let (mut server, mut mqtt, mut wire) = upgraded(&config());
        // Header (8 bytes) and 10 payload bytes.
        assert_eq!(
            server.input(&config(), &bytes[..18], &mut mqtt, &mut wire),
            Ok(WsStatus::Open)
        );
        assert_eq!(&mqtt[..], &payload[..10]);
        assert_eq!(server.heap_bytes(), 0);
        // Odd chunk sizes move the mask position around.
        for chunk in bytes[18..].chunks(7) {
            server
                .input(&config(), chunk, &mut mqtt, &mut wire)
                .unwrap();
        }
        assert_eq!(&mqtt[..], &payload[..]);
        assert_eq!(server.heap_bytes(), 0);
    }

    #[test]
    fn frame_at_max_frame_is_accepted() {
        let config = WsConfig {
            max_frame: 100,
            ..config()
        };
        let payload = [7u8; 100];
        let (result, mqtt, _) = after_upgrade(&config, &frame(0x82, &payload));
        assert_eq!(result, Ok(WsStatus::Open));
        assert_eq!(&mqtt[..], &payload[..]);
    }

    #[test]
    fn frame_over_max_frame_is_refused_from_its_header() {
        let config = WsConfig {
            max_frame: 100,
            ..config()
        };
        for (len, form) in [
            (101, Len::Short),
            (101, Len::Sixteen),
            (70_000, Len::SixtyFour),
        ] {
            let bytes = frame_with(0x82, &vec![0u8; len], form, MASK);
            let head = head_bytes(bytes[1]);
            // Only the header is fed: the check needs no payload.
            let (result, mqtt, wire) = after_upgrade(&config, &bytes[..head]);
            assert_eq!(
                result,
                Err(WsError::FrameTooLarge {
                    len: len as u64,
                    max: 100
                })
            );
            assert!(!result.unwrap_err().is_upgrade());
            assert!(mqtt.is_empty());
            assert_eq!(&wire[..], close_frame(1009));
        }
        // A continuation frame is limited too.
        let stream = concat(&[&frame(0x02, b"ab"), &frame(0x80, &[0u8; 101])]);
        let (result, mqtt, wire) = after_upgrade(&config, &stream);
        assert_eq!(result, Err(WsError::FrameTooLarge { len: 101, max: 100 }));
        assert_eq!(&mqtt[..], b"ab");
        assert_eq!(&wire[..], close_frame(1009));
    }

    #[test]
    fn frame_errors_and_their_close_codes() {
        let mut top_bit = vec![0x82, MASKED | 127, 0x80, 0, 0, 0, 0, 0, 0, 1];
        top_bit.extend_from_slice(&MASK);
        let mut control_126 = vec![0x89, MASKED | 126, 0, 126];
        control_126.extend_from_slice(&MASK);
        let cases: Vec<(Vec<u8>, WsError, u16)> = vec![
            (vec![0x82, 0x01, 0xAA], WsError::Unmasked, 1002),
            (vec![0x89, 0x00], WsError::Unmasked, 1002),
            (frame(0xC2, b"x"), WsError::ReservedBits, 1002),
            (frame(0xA2, b"x"), WsError::ReservedBits, 1002),
            (frame(0x92, b"x"), WsError::ReservedBits, 1002),
            (frame(0x80, b"x"), WsError::UnexpectedContinuation, 1002),
            (frame(0x00, b"x"), WsError::UnexpectedContinuation, 1002),
            (
                concat(&[&frame(0x02, b"a"), &frame(0x82, b"b")]),
                WsError::UnfinishedMessage,
                1002,
            ),
            (
                concat(&[&frame(0x02, b"a"), &frame(0x02, b"b")]),
                WsError::UnfinishedMessage,
                1002,
            ),
            (frame(0x81, b"hi"), WsError::Text, 1003),
            (frame(0x01, b"hi"), WsError::Text, 1003),
            (
                concat(&[&frame(0x02, b"a"), &frame(0x81, b"b")]),
                WsError::Text,
                1003,
            ),
            (frame(0x83, b""), WsError::UnknownOpcode(0x3), 1002),
            (frame(0x87, b""), WsError::UnknownOpcode(0x7), 1002),
            (frame(0x8B, b""), WsError::UnknownOpcode(0xB), 1002),
            (frame(0x8F, b""), WsError::UnknownOpcode(0xF), 1002),
            (frame(0x09, b"p"), WsError::FragmentedControl, 1002),
            (frame(0x08, b""), WsError::FragmentedControl, 1002),
            (frame(0x0A, b""), WsError::FragmentedControl, 1002),
            (control_126, WsError::ControlTooLong, 1002),
            (frame(0x89, &[0u8; 126]), WsError::ControlTooLong, 1002),
            (top_bit, WsError::LengthTopBit, 1002),
            (frame(0x88, b"\x03"), WsError::CloseTruncated, 1002),
            (frame(0x88, b"\x03\xE8\xFF\xFE"), WsError::CloseReason, 1007),
        ];
        for (i, (bytes, error, code)) in cases.iter().enumerate() {
            // A packet first, to see the data before the error is kept.
            let stream = concat(&[&frame(0x82, b"\xC0\x00"), bytes]);
            let (result, mqtt, wire) = after_upgrade(&config(), &stream);
            assert_eq!(result, Err(*error), "case {i}");
            assert!(!error.is_upgrade(), "case {i}");
            let expect_mqtt: &[u8] = if bytes.starts_with(&frame(0x02, b"a")) {
                b"\xC0\x00a"
            } else {
                b"\xC0\x00"
            };
            assert_eq!(&mqtt[..], expect_mqtt, "case {i}");
            assert_eq!(&wire[..], close_frame(*code), "case {i}");
        }
    }

    #[test]
    fn close_codes_the_peer_may_not_send() {
        for code in [
            0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535,
        ] {
            let (result, _, wire) = after_upgrade(&config(), &frame(0x88, &u16::to_be_bytes(code)));
            assert_eq!(result, Err(WsError::CloseCode(code)), "code {code}");
            assert_eq!(&wire[..], close_frame(1002), "code {code}");
        }
    }

    #[test]
    fn peer_close_is_echoed() {
        for code in [
            1000, 1001, 1002, 1003, 1007, 1008, 1011, 1012, 1014, 3000, 4000, 4999,
        ] {
            let (result, _, wire) = after_upgrade(&config(), &frame(0x88, &u16::to_be_bytes(code)));
            assert_eq!(result, Ok(WsStatus::Closed), "code {code}");
            assert_eq!(&wire[..], close_frame(code), "code {code}");
        }
        // The reason is not echoed, only the code.
        let (result, _, wire) = after_upgrade(&config(), &frame(0x88, b"\x03\xE8bye \xC3\xA9"));
        assert_eq!(result, Ok(WsStatus::Closed));
        assert_eq!(&wire[..], close_frame(1000));
        // No code: none echoed.
        let (result, _, wire) = after_upgrade(&config(), &frame(0x88, b""));
        assert_eq!(result, Ok(WsStatus::Closed));
        assert_eq!(&wire[..], b"\x88\x00");
    }

    #[test]
    fn bytes_after_a_close_are_ignored() {
        let stream = concat(&[
            &frame(0x82, b"\xC0\x00"),
            &frame(0x88, b"\x03\xE8"),
            &frame(0x82, b"\xE0\x00"),
            &frame(0x89, b"x"),
            b"garbage",
        ]);
        let (result, mqtt, wire) = after_upgrade(&config(), &stream);
        assert_eq!(result, Ok(WsStatus::Closed));
        assert_eq!(&mqtt[..], b"\xC0\x00");
        assert_eq!(&wire[..], close_frame(1000));
    }

    #[test]
    fn server_close_is_sent_once_and_stops_output() {
        let (mut server, mut mqtt, mut wire) = upgraded(&config());
        server.output(b"\xD0\x00", &mut wire);
        server.close(1001, &mut wire);
        server.close(1000, &mut wire);
        server.output(b"\xD0\x00", &mut wire);
        assert_eq!(
            &wire[..],
            concat(&[b"\x82\x02\xD0\x00", &close_frame(1001)])
        );
        wire.clear();
        // Data still in flight from the peer is passed on; a ping is not
        // answered after our close; the peer's close needs no reply.
        let stream = concat(&[
            &frame(0x82, b"\xC0\x00"),
            &frame(0x89, b"p"),
            &frame(0x88, b"\x03\xE9"),
        ]);
        assert_eq!(
            server.input(&config(), &stream, &mut mqtt, &mut wire),
            Ok(WsStatus::Closed)
        );
        assert_eq!(&mqtt[..], b"\xC0\x00");
        assert!(wire.is_empty());
        assert!(server.is_open());
    }

    #[test]
    fn error_after_server_close_sends_no_second_close() {
        let (mut server, mut mqtt, mut wire) = upgraded(&config());
        server.close(1000, &mut wire);
        wire.clear();
        assert_eq!(
            server.input(&config(), &frame(0x81, b"t"), &mut mqtt, &mut wire),
            Err(WsError::Text)
        );
        assert!(wire.is_empty());
    }

    #[test]
    fn output_headers() {
        let cases: &[(usize, &[u8])] = &[
            (0, b"\x82\x00"),
            (1, b"\x82\x01"),
            (125, b"\x82\x7D"),
            (126, b"\x82\x7E\x00\x7E"),
            (65_535, b"\x82\x7E\xFF\xFF"),
            (65_536, b"\x82\x7F\x00\x00\x00\x00\x00\x01\x00\x00"),
        ];
        for (len, head) in cases {
            let (server, _, mut wire) = upgraded(&config());
            let payload: Vec<u8> = (0..*len).map(|i| i as u8).collect();
            server.output(&payload, &mut wire);
            assert_eq!(&wire[..head.len()], *head, "len {len}");
            assert_eq!(&wire[head.len()..], &payload[..], "len {len}");
        }
    }

    #[test]
    fn idle_upgraded_connection_holds_no_heap() {
        let (mut server, mut mqtt, mut wire) = upgraded(&config());
        assert_eq!(server.heap_bytes(), 0);
        let stream = concat(&[&frame(0x82, PUBLISH), &frame(0x89, b"x")]);
        server
            .input(&config(), &stream, &mut mqtt, &mut wire)
            .unwrap();
        server.output(PUBLISH, &mut wire);
        assert_eq!(server.heap_bytes(), 0);
        // Mid-header and mid-control-frame state is inline too.
        server
            .input(&config(), &frame(0x89, b"abc")[..4], &mut mqtt, &mut wire)
            .unwrap();
        assert_eq!(server.heap_bytes(), 0);
        assert!(std::mem::size_of::<WsServer>() <= 192);
    }

    #[test]
    fn display_names_the_rule() {
        assert!(WsError::Text.to_string().contains("MQTT-6.0.0-1"));
        assert!(WsError::Unmasked.to_string().contains("5.1"));
        assert!(WsError::CloseCode(1005).to_string().contains("1005"));
        assert!(WsError::FrameTooLarge { len: 9, max: 8 }
            .to_string()
            .contains("9 bytes"));
    }

    // ---- splitting ----

    /// A valid conversation: upgrade, fragmented packet with a ping and a
    /// pong inside, a 300-byte frame (16-bit length), an empty frame, a
    /// close, and bytes after it.
    fn conversation() -> Vec<u8> {
        let long: Vec<u8> = (0..300u32).map(|i| (i * 7) as u8).collect();
        concat(&[
            &good_request(),
            &frame_with(0x02, &PUBLISH[..5], Len::Short, [0x11, 0x22, 0x33, 0x44]),
            &frame(0x89, b"ping!"),
            &frame_with(0x00, &PUBLISH[5..], Len::Short, [0xA5, 0x5A, 0xFF, 0x01]),
            &frame(0x8A, b"po"),
            &frame(0x80, b""),
            &frame(0x82, &long),
            &frame(0x82, b""),
            &frame(0x82, b"\xC0\x00\xC0"),
            &frame(0x82, b"\x00"),
            &frame(0x88, b"\x03\xE8"),
            &frame(0x82, b"after"),
        ])
    }

    fn assert_same(a: &Run, b: &Run, what: &str) {
        assert_eq!(a.mqtt, b.mqtt, "{what}");
        assert_eq!(a.wire, b.wire, "{what}");
        assert_eq!(a.end, b.end, "{what}");
    }

    fn check_every_split(config: &WsConfig, stream: &[u8]) -> Run {
        let whole = run_whole(config, stream);
        for at in 0..=stream.len() {
            let (a, b) = stream.split_at(at);
            assert_same(&run(config, [a, b]), &whole, &format!("split at {at}"));
        }
        assert_same(&run(config, stream.chunks(1)), &whole, "byte by byte");
        for size in 2..=17 {
            assert_same(
                &run(config, stream.chunks(size)),
                &whole,
                &format!("chunks of {size}"),
            );
        }
        whole
    }

    #[test]
    fn any_split_gives_the_same_result() {
        let whole = check_every_split(&config(), &conversation());
        assert_eq!(whole.end, Some(Ok(WsStatus::Closed)));
        let long: Vec<u8> = (0..300u32).map(|i| (i * 7) as u8).collect();
        assert_eq!(
            &whole.mqtt[..],
            concat(&[PUBLISH, &long, b"\xC0\x00\xC0", b"\x00"])
        );
        assert_eq!(
            &whole.wire[..],
            concat(&[
                SWITCHING_MQTT.as_bytes(),
                b"\x8A\x05ping!",
                &close_frame(1000)
            ])
        );
        assert_eq!(whole.server.heap_bytes(), 0);
    }

    #[test]
    fn any_split_gives_the_same_error() {
        let mut stream = conversation();
        // Cut before the close frame and end with a text frame.
        let close = frame(0x88, b"\x03\xE8");
        let at = stream
            .windows(close.len())
            .position(|w| w == &close[..])
            .unwrap();
        stream.truncate(at);
        stream.extend_from_slice(&frame(0x81, b"text"));
        let whole = check_every_split(&config(), &stream);
        assert_eq!(whole.end, Some(Err(WsError::Text)));
        assert!(whole.wire.ends_with(&close_frame(1003)));
    }

    #[test]
    fn any_split_of_a_refused_request_gives_the_same_refusal() {
        let request = request_with("Sec-WebSocket-Version", "Sec-WebSocket-Version: 7");
        let whole = check_every_split(&config(), &request);
        assert_eq!(whole.end, Some(Err(WsError::WsVersion)));
        assert_eq!(&whole.wire[..], R426.as_bytes());
    }
}
