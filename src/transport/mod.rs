//! Byte layers between a socket and the codec: TCP bytes -> [TLS] ->
//! [WebSocket] -> MQTT bytes, and the same way back.
//!
//! A plain connection has no `Transport` at all. Otherwise the engine
//! hands every read to [`Transport::input`], which appends the MQTT bytes
//! it yields to the connection's pending bytes (the decode loop never
//! knows where they came from), and passes every write through
//! [`Transport::output`]. Bytes a layer must send on its own (handshake
//! records, the HTTP upgrade answer, pongs, close frames, alerts) collect
//! in [`Transport::wire`] beside the wrapped output; the engine sends
//! `wire`. Nothing here does I/O or keeps a task: an idle connection's
//! transport is its rustls state and a few words.

pub(crate) mod tls;
pub(crate) mod ws;

use std::sync::Arc;

use bytes::BytesMut;
use rustls::ServerConfig;

pub(crate) use ws::WsConfig;
use ws::{WsServer, WsStatus};

/// After a read: go on, or the peer ended its side cleanly (TLS
/// close_notify, a WebSocket close frame) and the connection closes once
/// `wire` is sent.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Status {
    Open,
    Closed,
}

/// Why a transport gave up on its peer.
#[derive(Debug)]
pub(crate) enum Fault {
    /// The TLS handshake failed (not TLS, a refused certificate, ...).
    Handshake(rustls::Error),
    /// A TLS error after the handshake (a bad record, ...).
    Tls(rustls::Error),
    /// The WebSocket upgrade request was refused (answered with an HTTP
    /// error in `wire`).
    Upgrade(ws::WsError),
    /// A WebSocket frame broke the rules (a close frame is in `wire`).
    Frame(ws::WsError),
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::Handshake(e) => write!(f, "TLS handshake: {e}"),
            Fault::Tls(e) => write!(f, "TLS: {e}"),
            Fault::Upgrade(e) => write!(f, "WebSocket upgrade: {e}"),
            Fault::Frame(e) => write!(f, "WebSocket: {e}"),
        }
    }
}

/// One connection's layers (at least one of them).
pub(crate) struct Transport {
    /// Boxed apart: a WebSocket-only connection does not carry rustls's
    /// kilobyte of state inline.
    tls: Option<Box<tls::TlsConn>>,
    ws: Option<WsServer>,
    /// Bytes for the peer that the engine has not sent yet.
    pub(crate) wire: BytesMut,
    /// Bytes read but not handed to the layers yet (a handshake step
    /// waiting for the shard's next turn).
    pub(crate) held: BytesMut,
    /// The listener it came in on (its index in `--listen`, the same on
    /// every shard), for its WebSocket settings.
    pub(crate) listener: u16,
    /// Counted among the shard's TLS handshakes in progress.
    pub(crate) counted: bool,
    /// The client certificate's name went to the link.
    pub(crate) named: bool,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("tls", &self.tls.is_some())
            .field("ws", &self.ws.is_some())
            .field("wire", &self.wire.len())
            .finish()
    }
}

impl Transport {
    /// Layers for a socket accepted on listener `listener`: TLS with
    /// `tls` if given, WebSocket if `ws`.
    pub(crate) fn new(
        listener: u16,
        tls: Option<&Arc<ServerConfig>>,
        ws: bool,
    ) -> Result<Box<Transport>, rustls::Error> {
        let tls = match tls {
            Some(config) => Some(Box::new(tls::TlsConn::new(config.clone())?)),
            None => None,
        };
        Ok(Box::new(Transport {
            tls,
            ws: ws.then(WsServer::new),
            wire: BytesMut::new(),
            held: BytesMut::new(),
            listener,
            counted: false,
            named: false,
        }))
    }

    /// Whether a TLS handshake is still under way.
    pub(crate) fn tls_handshaking(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.is_handshaking())
    }

    /// Whether this connection speaks TLS.
    pub(crate) fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The subject CN of the client's certificate (outer `None`: no TLS
    /// handshake finished yet; inner `None`: no certificate or no CN).
    pub(crate) fn peer_name(&self) -> Option<Option<Box<str>>> {
        self.tls.as_ref()?.peer_name()
    }

    /// Handles bytes read from the socket (`data` is worked on in place):
    /// MQTT bytes are appended to `mqtt`, bytes to send to `wire`. On a
    /// fault the connection closes after `wire` (an alert, an HTTP error,
    /// a close frame) is sent.
    pub(crate) fn input(
        &mut self,
        ws_config: &WsConfig,
        data: &mut [u8],
        mqtt: &mut BytesMut,
    ) -> Result<Status, Fault> {
        let Transport { tls, ws, wire, .. } = self;
        let Some(tls) = tls.as_mut() else {
            let ws = ws.as_mut().expect("a transport has a layer");
            return match ws.input(ws_config, data, mqtt, wire) {
                Ok(WsStatus::Open) => Ok(Status::Open),
                Ok(WsStatus::Closed) => Ok(Status::Closed),
                Err(e) => Err(ws_fault(ws, e)),
            };
        };
        let handshaking = tls.is_handshaking();
        let tls_fault = |e| {
            if handshaking {
                Fault::Handshake(e)
            } else {
                Fault::Tls(e)
            }
        };
        let Some(ws) = ws.as_mut() else {
            let closed = tls
                .input(data, wire, |plain| {
                    mqtt.extend_from_slice(plain);
                    true
                })
                .map_err(tls_fault)?;
            return Ok(if closed { Status::Closed } else { Status::Open });
        };
        // WebSocket inside TLS: what the WebSocket layer sends (the 101,
        // pongs, close frames) is encrypted after the read is handled.
        let mut ws_wire = BytesMut::new();
        let mut ws_result = Ok(WsStatus::Open);
        let closed = tls
            .input(data, wire, |plain| {
                ws_result = ws.input(ws_config, plain, mqtt, &mut ws_wire);
                matches!(ws_result, Ok(WsStatus::Open))
            })
            .map_err(tls_fault)?;
        if !ws_wire.is_empty() {
            tls.write(&ws_wire, wire);
        }
        match ws_result {
            Err(e) => Err(ws_fault(ws, e)),
            Ok(WsStatus::Closed) => Ok(Status::Closed),
            Ok(WsStatus::Open) if closed => Ok(Status::Closed),
            Ok(WsStatus::Open) => Ok(Status::Open),
        }
    }

    /// Wraps MQTT bytes for the peer into `wire`.
    pub(crate) fn output(&mut self, mqtt: &[u8]) {
        let Transport { tls, ws, wire, .. } = self;
        match (tls.as_mut(), ws.as_mut()) {
            (None, Some(ws)) => ws.output(mqtt, wire),
            (Some(tls), None) => {
                tls.write(mqtt, wire);
            }
            (Some(tls), Some(ws)) => {
                let mut framed = BytesMut::with_capacity(mqtt.len() + 10);
                ws.output(mqtt, &mut framed);
                tls.write(&framed, wire);
            }
            (None, None) => wire.extend_from_slice(mqtt),
        }
    }

    /// The broker ends the connection: a WebSocket close frame (1000) and
    /// a TLS close_notify go into `wire`, where the layers allow.
    pub(crate) fn close(&mut self) {
        let Transport { tls, ws, wire, .. } = self;
        let mut ws_wire = BytesMut::new();
        if let Some(ws) = ws.as_mut().filter(|w| w.is_open()) {
            ws.close(1000, &mut ws_wire);
        }
        match tls.as_mut() {
            Some(tls) => {
                if !ws_wire.is_empty() {
                    tls.write(&ws_wire, wire);
                }
                tls.close(wire);
            }
            None => wire.extend_from_slice(&ws_wire),
        }
    }
}

fn ws_fault(ws: &WsServer, e: ws::WsError) -> Fault {
    if e.is_upgrade() || !ws.is_open() {
        Fault::Upgrade(e)
    } else {
        Fault::Frame(e)
    }
}
