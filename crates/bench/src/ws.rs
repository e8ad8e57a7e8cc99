//! WebSocket (RFC 6455) as a byte codec for MQTT over WebSocket (MQTT
//! 3.1.1 and 5.0 section 6): the client's upgrade request, the check of
//! the server's 101 response, frame encoding (client frames are masked)
//! and a streaming frame decoder.
//!
//! Owns: bytes in, bytes out. Never touches a socket or a clock; the
//! connection ([`crate::transport`]) moves the bytes.
//!
//! Invariants:
//! - The decoder consumes every input byte it is given: a partial frame
//!   header waits in a 14-byte array, data payloads go straight to the
//!   caller's buffer as they arrive (a frame of any size costs no extra
//!   buffering), control payloads (at most 125 bytes) are collected.
//! - Peer input never panics: a frame the RFC forbids is a [`WsError`]
//!   naming the rule.

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::BytesMut;

/// The GUID of the Sec-WebSocket-Accept computation (RFC 6455 1.3).
pub const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Largest 101 response accepted, in bytes.
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024;

/// Largest frame header: 2 bytes, 8 of extended length, 4 of mask.
const MAX_HEADER: usize = 14;

/// Frame opcodes (RFC 6455 5.2).
pub mod opcode {
    /// Continuation of a fragmented message.
    pub const CONTINUATION: u8 = 0x0;
    /// Text data.
    pub const TEXT: u8 = 0x1;
    /// Binary data.
    pub const BINARY: u8 = 0x2;
    /// Close.
    pub const CLOSE: u8 = 0x8;
    /// Ping.
    pub const PING: u8 = 0x9;
    /// Pong.
    pub const PONG: u8 = 0xA;
}

/// Status code of a normal closure (RFC 6455 7.4.1).
pub const CLOSE_NORMAL: u16 = 1000;

/// What breaks the WebSocket layer of one connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WsError {
    /// The server answered the upgrade with this status instead of 101.
    Refused(u16),
    /// The 101 response breaks RFC 6455 4.1 (names what).
    Upgrade(&'static str),
    /// A frame breaks RFC 6455 section 5 or MQTT section 6 (names what).
    Frame(&'static str),
}

impl fmt::Display for WsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WsError::Refused(status) => write!(f, "upgrade refused: HTTP {status}"),
            WsError::Upgrade(why) => write!(f, "bad upgrade response: {why}"),
            WsError::Frame(why) => write!(f, "bad frame: {why}"),
        }
    }
}

impl std::error::Error for WsError {}

/// The client's opening handshake (RFC 6455 4.1), with the MQTT
/// subprotocol (MQTT-6.0.0-3 for the server's side of it).
pub fn upgrade_request(path: &str, host: &str, key: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: mqtt\r\n\r\n"
    )
    .into_bytes()
}

/// A Sec-WebSocket-Key: 16 random bytes in base64.
pub fn new_key(random: [u8; 16]) -> String {
    BASE64.encode(random)
}

/// The Sec-WebSocket-Accept a server must answer `key` with (RFC 6455
/// 4.2.2): base64 of SHA-1 of the key and the GUID.
pub fn accept_for(key: &str) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(key.as_bytes());
    ctx.update(ACCEPT_GUID.as_bytes());
    BASE64.encode(ctx.finish().as_ref())
}

/// Check the server's answer to the upgrade: `Ok(None)` until the header
/// is complete, then `Ok(Some(header_len))` (bytes after it are frames).
pub fn parse_upgrade_response(buf: &[u8], accept: &str) -> Result<Option<usize>, WsError> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let len = match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > MAX_RESPONSE_BYTES => {
            return Err(WsError::Upgrade("header longer than 16 KiB"));
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(WsError::Upgrade("more than 32 header lines"))
        }
        Err(_) => return Err(WsError::Upgrade("not an HTTP/1.1 response")),
    };
    let status = response.code.unwrap_or(0);
    if status != 101 {
        return Err(WsError::Refused(status));
    }
    let header = |name: &str| {
        response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_string())
    };
    // RFC 6455 4.1, the client's checks of the server's handshake, 2 to 6.
    if !header("upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket")) {
        return Err(WsError::Upgrade("no Upgrade: websocket"));
    }
    let connection = header("connection").unwrap_or_default();
    if !connection
        .split(',')
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
    {
        return Err(WsError::Upgrade("no Connection: Upgrade"));
    }
    if header("sec-websocket-accept").as_deref() != Some(accept) {
        return Err(WsError::Upgrade("wrong or missing Sec-WebSocket-Accept"));
    }
    if header("sec-websocket-extensions").is_some() {
        return Err(WsError::Upgrade("an extension the client did not offer"));
    }
    if let Some(protocol) = header("sec-websocket-protocol") {
        if protocol != "mqtt" {
            return Err(WsError::Upgrade("a subprotocol other than mqtt"));
        }
    }
    Ok(Some(len))
}

/// XOR `buf` with the repeated 4-byte `mask` (RFC 6455 5.3), the first
/// byte with `mask[0]`.
pub fn apply_mask(buf: &mut [u8], mask: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i % 4];
    }
}

/// Append one final, masked frame (RFC 6455 5.2: a client masks every
/// frame) carrying `payload` to `out`.
pub fn encode_frame(opcode: u8, payload: &[u8], mask: [u8; 4], out: &mut Vec<u8>) {
    out.reserve(MAX_HEADER + payload.len());
    out.push(0x80 | opcode);
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= usize::from(u16::MAX) {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], mask);
}

/// Mask keys from xorshift64*: they need not be secret for a load tool
/// (RFC 6455 10.3 guards against proxies fed by hostile scripts), only
/// different from frame to frame.
#[derive(Clone, Debug)]
pub struct MaskKeys(u64);

impl MaskKeys {
    /// Keys from `seed` (any value; zero is replaced).
    pub fn new(seed: u64) -> MaskKeys {
        MaskKeys(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// The next key.
    pub fn next_key(&mut self) -> [u8; 4] {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        ((x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) as u32).to_ne_bytes()
    }
}

/// A control frame the decoder has read whole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Control {
    /// Ping with its payload (to be echoed in a pong, RFC 6455 5.5.2).
    Ping(Vec<u8>),
    /// Pong (ignored).
    Pong,
    /// Close, with its status code if it carried one.
    Close(Option<u16>),
}

/// The header of the frame being read.
#[derive(Clone, Copy, Debug)]
struct Frame {
    opcode: u8,
    remaining: u64,
}

/// A streaming decoder of server frames.
#[derive(Debug, Default)]
pub struct Decoder {
    head: [u8; MAX_HEADER],
    head_len: usize,
    frame: Option<Frame>,
    control: Vec<u8>,
    /// A data message continues in later frames (RFC 6455 5.4).
    fragmented: bool,
    /// A close frame was read: what follows is ignored (RFC 6455 5.5.1).
    closed: bool,
}

/// Header length announced by the first bytes of a header (2 until the
/// second byte is there).
fn header_len(head: &[u8]) -> usize {
    let Some(&b1) = head.get(1) else {
        return 2;
    };
    let ext = match b1 & 0x7F {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let mask = if b1 & 0x80 != 0 { 4 } else { 0 };
    2 + ext + mask
}

impl Decoder {
    /// A decoder at the start of the stream.
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// Whether a close frame was read.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Read `input`: data payloads are appended to `data`, whole control
    /// frames to `controls`.
    pub fn feed(
        &mut self,
        mut input: &[u8],
        data: &mut BytesMut,
        controls: &mut Vec<Control>,
    ) -> Result<(), WsError> {
        while !self.closed {
            match self.frame {
                None => {
                    if input.is_empty() {
                        break;
                    }
                    let want = header_len(&self.head[..self.head_len]);
                    let take = (want - self.head_len).min(input.len());
                    self.head[self.head_len..self.head_len + take].copy_from_slice(&input[..take]);
                    self.head_len += take;
                    input = &input[take..];
                    // The second byte may have announced a longer header.
                    if self.head_len == header_len(&self.head[..self.head_len]) {
                        self.frame = Some(self.start_frame()?);
                        self.head_len = 0;
                    }
                }
                Some(mut frame) => {
                    if frame.remaining > 0 {
                        if input.is_empty() {
                            break;
                        }
                        let take = frame.remaining.min(input.len() as u64) as usize;
                        if frame.opcode & 0x8 == 0 {
                            data.extend_from_slice(&input[..take]);
                        } else {
                            self.control.extend_from_slice(&input[..take]);
                        }
                        input = &input[take..];
                        frame.remaining -= take as u64;
                        self.frame = Some(frame);
                    }
                    if frame.remaining == 0 {
                        self.frame = None;
                        self.end_frame(frame.opcode, controls);
                    }
                }
            }
        }
        Ok(())
    }

    /// Check a whole header (RFC 6455 5.2) and start its frame.
    fn start_frame(&mut self) -> Result<Frame, WsError> {
        let head = &self.head[..self.head_len];
        let fin = head[0] & 0x80 != 0;
        let opcode = head[0] & 0x0F;
        if head[0] & 0x70 != 0 {
            return Err(WsError::Frame(
                "reserved bits set without an extension (RFC 6455 5.2)",
            ));
        }
        if head[1] & 0x80 != 0 {
            return Err(WsError::Frame(
                "masked frame from the server (RFC 6455 5.1)",
            ));
        }
        let len = match head[1] & 0x7F {
            126 => u64::from(u16::from_be_bytes([head[2], head[3]])),
            127 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&head[2..10]);
                let len = u64::from_be_bytes(b);
                if len >> 63 != 0 {
                    return Err(WsError::Frame(
                        "64-bit length with the top bit set (RFC 6455 5.2)",
                    ));
                }
                len
            }
            n => u64::from(n),
        };
        match opcode {
            opcode::CONTINUATION if !self.fragmented => {
                return Err(WsError::Frame(
                    "continuation outside a fragmented message (RFC 6455 5.4)",
                ))
            }
            opcode::CONTINUATION => self.fragmented = !fin,
            opcode::TEXT => {
                return Err(WsError::Frame(
                    "text frame: MQTT travels in binary frames (MQTT-6.0.0-1)",
                ))
            }
            opcode::BINARY if self.fragmented => {
                return Err(WsError::Frame(
                    "new message inside a fragmented one (RFC 6455 5.4)",
                ))
            }
            opcode::BINARY => self.fragmented = !fin,
            opcode::CLOSE | opcode::PING | opcode::PONG => {
                if !fin || len > 125 {
                    return Err(WsError::Frame(
                        "fragmented or longer than 125 bytes control frame (RFC 6455 5.5)",
                    ));
                }
                self.control.clear();
            }
            _ => return Err(WsError::Frame("reserved opcode (RFC 6455 5.2)")),
        }
        Ok(Frame {
            opcode,
            remaining: len,
        })
    }

    /// A frame's payload is all read.
    fn end_frame(&mut self, opcode: u8, controls: &mut Vec<Control>) {
        match opcode {
            opcode::PING => controls.push(Control::Ping(std::mem::take(&mut self.control))),
            opcode::PONG => controls.push(Control::Pong),
            opcode::CLOSE => {
                let code = (self.control.len() >= 2)
                    .then(|| u16::from_be_bytes([self.control[0], self.control[1]]));
                controls.push(Control::Close(code));
                self.closed = true;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server frame (unmasked) with `len` announced in the shortest form.
    fn server_frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![first];
        let len = payload.len();
        if len < 126 {
            out.push(len as u8);
        } else if len <= 0xFFFF {
            out.push(126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        out.extend_from_slice(payload);
        out
    }

    fn decode_all(chunks: &[&[u8]]) -> Result<(Vec<u8>, Vec<Control>), WsError> {
        let mut d = Decoder::new();
        let mut data = BytesMut::new();
        let mut controls = Vec::new();
        for c in chunks {
            d.feed(c, &mut data, &mut controls)?;
        }
        Ok((data.to_vec(), controls))
    }

    /// Decode a masked client frame the way a server would.
    fn unmask_client_frame(frame: &[u8]) -> (u8, Vec<u8>) {
        assert_eq!(frame[0] & 0xF0, 0x80, "FIN, no RSV");
        assert_eq!(frame[1] & 0x80, 0x80, "client frames are masked");
        let (len, at) = match frame[1] & 0x7F {
            126 => (u16::from_be_bytes([frame[2], frame[3]]) as usize, 4),
            127 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&frame[2..10]);
                (u64::from_be_bytes(b) as usize, 10)
            }
            n => (n as usize, 2),
        };
        let mask = [frame[at], frame[at + 1], frame[at + 2], frame[at + 3]];
        let mut payload = frame[at + 4..].to_vec();
        assert_eq!(payload.len(), len, "announced length");
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= mask[i % 4];
        }
        (frame[0] & 0x0F, payload)
    }

    #[test]
    fn encoded_frames_use_the_shortest_length_and_mask() {
        for len in [0usize, 1, 125, 126, 65_535, 65_536, 200_000] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let mut out = Vec::new();
            encode_frame(opcode::BINARY, &payload, [0xA1, 0x02, 0xF3, 0x44], &mut out);
            let header = match len {
                0..=125 => 6,
                126..=65_535 => 8,
                _ => 14,
            };
            assert_eq!(out.len(), header + len, "len {len}");
            let (op, back) = unmask_client_frame(&out);
            assert_eq!(op, opcode::BINARY);
            assert_eq!(back, payload, "len {len}");
        }
    }

    #[test]
    fn rfc_6455_masked_hello() {
        // RFC 6455 5.7: a single-frame masked text message "Hello".
        let mut out = Vec::new();
        encode_frame(opcode::TEXT, b"Hello", [0x37, 0xfa, 0x21, 0x3d], &mut out);
        assert_eq!(
            out,
            [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
        );
    }

    #[test]
    fn mask_matches_the_byte_rule_at_every_length() {
        let mask = [1, 2, 3, 250];
        for len in 0..40 {
            let mut fast: Vec<u8> = (0..len as u8).collect();
            apply_mask(&mut fast, mask);
            let slow: Vec<u8> = (0..len as u8)
                .enumerate()
                .map(|(i, b)| b ^ mask[i % 4])
                .collect();
            assert_eq!(fast, slow, "len {len}");
        }
    }

    #[test]
    fn frames_split_anywhere_decode_the_same() {
        let big: Vec<u8> = (0..70_000u32).map(|i| i as u8).collect();
        let mut wire = server_frame(0x82, b"\x20\x02\x00\x00");
        wire.extend(server_frame(0x89, b"ping!"));
        wire.extend(server_frame(0x82, &big));
        wire.extend(server_frame(0x82, &[]));
        wire.extend(server_frame(0x8A, b""));
        let mut expected = b"\x20\x02\x00\x00".to_vec();
        expected.extend_from_slice(&big);
        let controls = vec![Control::Ping(b"ping!".to_vec()), Control::Pong];
        assert_eq!(
            decode_all(&[&wire]),
            Ok((expected.clone(), controls.clone()))
        );
        for step in [1usize, 2, 3, 13, 1000] {
            let chunks: Vec<&[u8]> = wire.chunks(step).collect();
            assert_eq!(
                decode_all(&chunks),
                Ok((expected.clone(), controls.clone())),
                "step {step}"
            );
        }
    }

    #[test]
    fn fragmented_messages_join_with_controls_between() {
        let mut wire = server_frame(0x02, b"ab");
        wire.extend(server_frame(0x89, b""));
        wire.extend(server_frame(0x00, b"cd"));
        wire.extend(server_frame(0x80, b"e"));
        wire.extend(server_frame(0x82, b"f"));
        assert_eq!(
            decode_all(&[&wire]),
            Ok((b"abcdef".to_vec(), vec![Control::Ping(vec![])]))
        );
    }

    #[test]
    fn close_ends_the_stream() {
        let mut wire = server_frame(0x82, b"x");
        wire.extend(server_frame(0x88, &[0x03, 0xE8, b'b', b'y', b'e']));
        wire.extend(server_frame(0x82, b"ignored"));
        let mut d = Decoder::new();
        let mut data = BytesMut::new();
        let mut controls = Vec::new();
        d.feed(&wire, &mut data, &mut controls).expect("decodes");
        assert!(d.is_closed());
        assert_eq!(&data[..], b"x");
        assert_eq!(controls, vec![Control::Close(Some(1000))]);
        let (_, controls) = decode_all(&[&server_frame(0x88, &[])]).expect("decodes");
        assert_eq!(controls, vec![Control::Close(None)]);
    }

    #[test]
    fn forbidden_frames_name_their_rule() {
        let rule = |wire: Vec<u8>| match decode_all(&[&wire]) {
            Err(WsError::Frame(why)) => why,
            other => panic!("{other:?}"),
        };
        assert!(rule(server_frame(0x81, b"{}")).contains("MQTT-6.0.0-1"));
        assert!(rule(server_frame(0xC2, b"x")).contains("reserved bits"));
        assert!(rule(server_frame(0x80, b"x")).contains("continuation"));
        assert!(rule(server_frame(0x83, b"x")).contains("reserved opcode"));
        assert!(rule(server_frame(0x09, b"")).contains("control frame"));
        assert!(rule(server_frame(0x89, &[0; 126])).contains("control frame"));
        let mut nested = server_frame(0x02, b"a");
        nested.extend(server_frame(0x82, b"b"));
        assert!(rule(nested).contains("fragmented one"));
        assert!(rule(vec![0x82, 0x81, 1, 2, 3, 4, 5]).contains("masked"));
        let mut huge = vec![0x82, 127];
        huge.extend_from_slice(&u64::MAX.to_be_bytes());
        assert!(rule(huge).contains("top bit"));
    }

    #[test]
    fn accept_key_of_rfc_6455() {
        // RFC 6455 1.3's example.
        assert_eq!(
            accept_for("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert_eq!(new_key([0; 16]), "AAAAAAAAAAAAAAAAAAAAAA==");
    }

    #[test]
    fn request_asks_for_mqtt() {
        let req =
            String::from_utf8(upgrade_request("/mqtt", "127.0.0.1:8080", "k==")).expect("ascii");
        assert!(req.starts_with("GET /mqtt HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"));
        assert!(req.contains("\r\nSec-WebSocket-Protocol: mqtt\r\n"));
        assert!(req.contains("\r\nSec-WebSocket-Key: k==\r\n"));
        assert!(req.contains("\r\nSec-WebSocket-Version: 13\r\n"));
        assert!(req.ends_with("\r\n\r\n"));
    }

    const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

    fn response(extra: &str) -> String {
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Accept: {ACCEPT}\r\n{extra}\r\n"
        )
    }

    #[test]
    fn good_responses_are_accepted_whole_or_in_pieces() {
        let ok = response("Sec-WebSocket-Protocol: mqtt\r\n");
        let mut with_frame = ok.clone().into_bytes();
        with_frame.extend_from_slice(&[0x82, 0x02, 0x20, 0x00]);
        assert_eq!(
            parse_upgrade_response(&with_frame, ACCEPT),
            Ok(Some(ok.len()))
        );
        for cut in [0, 1, 10, ok.len() - 1] {
            assert_eq!(
                parse_upgrade_response(&ok.as_bytes()[..cut], ACCEPT),
                Ok(None),
                "cut {cut}"
            );
        }
        // No subprotocol echoed, odd case and a token list: still fine.
        let lax = "HTTP/1.1 101 OK\r\nupgrade: WebSocket\r\nconnection: keep-alive, upgrade\r\n\
                   sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        assert_eq!(
            parse_upgrade_response(lax.as_bytes(), ACCEPT),
            Ok(Some(lax.len()))
        );
    }

    #[test]
    fn bad_responses_say_why() {
        let check = |text: &str| parse_upgrade_response(text.as_bytes(), ACCEPT);
        assert_eq!(
            check("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
            Err(WsError::Refused(404))
        );
        assert_eq!(
            check(&response("").replace("Upgrade: websocket\r\n", "")),
            Err(WsError::Upgrade("no Upgrade: websocket"))
        );
        assert_eq!(
            check(&response("").replace("Connection: Upgrade", "Connection: close")),
            Err(WsError::Upgrade("no Connection: Upgrade"))
        );
        assert_eq!(
            check(&response("").replace(ACCEPT, "AAAA")),
            Err(WsError::Upgrade("wrong or missing Sec-WebSocket-Accept"))
        );
        assert_eq!(
            check(&response("Sec-WebSocket-Protocol: mqttv3.1\r\n")),
            Err(WsError::Upgrade("a subprotocol other than mqtt"))
        );
        assert_eq!(
            check(&response(
                "Sec-WebSocket-Extensions: permessage-deflate\r\n"
            )),
            Err(WsError::Upgrade("an extension the client did not offer"))
        );
        assert_eq!(
            check("SSH-2.0-OpenSSH\r\n\r\n"),
            Err(WsError::Upgrade("not an HTTP/1.1 response"))
        );
        let endless = format!("HTTP/1.1 101 OK\r\nX: {}", "a".repeat(MAX_RESPONSE_BYTES));
        assert_eq!(
            check(&endless),
            Err(WsError::Upgrade("header longer than 16 KiB"))
        );
    }

    #[test]
    fn mask_keys_vary() {
        let mut keys = MaskKeys::new(0);
        let a = keys.next_key();
        let b = keys.next_key();
        assert_ne!(a, b);
        let mut same = MaskKeys::new(0);
        assert_eq!(same.next_key(), a, "deterministic from the seed");
    }
}
