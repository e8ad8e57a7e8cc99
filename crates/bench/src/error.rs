//! The tool's two error types: [`BenchError`] stops a run (bad flags,
//! executors that cannot start, a broker refusing the scenario's setup),
//! [`ConnError`] is the fate of one connection and is counted by reason.
//!
//! Both have hand-written `Display` and `std::error::Error`. A
//! [`ConnError`] maps to a short, stable label ([`ConnError::label`]) so
//! failures group well in the report and in JSON.

use std::fmt;
use std::io;

use ringmq_codec::{DecodeError, EncodeError, PacketType, ReasonCode};

use crate::cli::ArgError;
use crate::ws::WsError;

/// Why a run could not be carried out.
#[derive(Debug)]
pub enum BenchError {
    /// A flag value is invalid.
    Args(ArgError),
    /// `--host`/`--port` did not resolve.
    Resolve {
        /// What was asked for.
        target: String,
        /// Why it failed.
        source: io::Error,
    },
    /// A glommio executor could not start or died.
    Executor(String),
    /// The broker refused something the scenario cannot do without (the
    /// will watcher's subscription, a subscriber's SUBSCRIBE, ...).
    Setup(String),
    /// A local IO operation failed (the sink's listener, a netns file).
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: io::Error,
    },
}

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BenchError::Args(e) => write!(f, "{e}"),
            BenchError::Resolve { target, source } => {
                write!(f, "cannot resolve {target}: {source}")
            }
            BenchError::Executor(why) => write!(f, "load executor failed: {why}"),
            BenchError::Setup(why) => write!(f, "scenario setup failed: {why}"),
            BenchError::Io { what, source } => write!(f, "{what}: {source}"),
        }
    }
}

impl std::error::Error for BenchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BenchError::Args(e) => Some(e),
            BenchError::Resolve { source, .. } | BenchError::Io { source, .. } => Some(source),
            BenchError::Executor(_) | BenchError::Setup(_) => None,
        }
    }
}

impl From<ArgError> for BenchError {
    fn from(e: ArgError) -> BenchError {
        BenchError::Args(e)
    }
}

/// What ended (or refused) one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnError {
    /// The TCP connect failed.
    TcpConnect(io::ErrorKind),
    /// A read or write failed after connecting.
    Io(io::ErrorKind),
    /// The peer closed the connection (read returned 0).
    Closed,
    /// Nothing arrived in time; names the stage that waited.
    Timeout(&'static str),
    /// The peer sent bytes the codec refuses.
    Decode(DecodeError),
    /// A packet could not be encoded (a flag value too large for MQTT).
    Encode(EncodeError),
    /// CONNACK with a failure code (a v5 reason code, or a 3.x return
    /// code when `v5` is false).
    Refused {
        /// The code as sent.
        code: u8,
        /// Whether it is a v5 reason code.
        v5: bool,
    },
    /// The broker sent DISCONNECT (v5) with this reason.
    Disconnected(ReasonCode),
    /// A packet that makes no sense at this point.
    Unexpected(PacketType),
    /// The TLS layer failed (handshake, certificate, record, alert): the
    /// rustls error as text.
    Tls(String),
    /// The WebSocket layer failed (upgrade refused, a forbidden frame).
    WebSocket(WsError),
}

impl ConnError {
    /// A short stable label for grouping failures.
    pub fn label(&self) -> String {
        match self {
            ConnError::TcpConnect(kind) => format!("tcp connect: {kind}"),
            ConnError::Io(kind) => format!("io: {kind}"),
            ConnError::Closed => "closed by broker".to_string(),
            ConnError::Timeout(stage) => format!("timeout: {stage}"),
            ConnError::Decode(_) => "malformed packet from broker".to_string(),
            ConnError::Encode(_) => "cannot encode packet".to_string(),
            ConnError::Refused { code, v5: true } => {
                format!("CONNACK 0x{code:02X} {}", ReasonCode(*code).name())
            }
            ConnError::Refused { code, v5: false } => {
                format!("CONNACK 0x{code:02X} {}", v3_connack_name(*code))
            }
            ConnError::Disconnected(code) => format!("DISCONNECT 0x{:02X} {}", code.0, code.name()),
            ConnError::Unexpected(t) => format!("unexpected {t:?}"),
            ConnError::Tls(why) => format!("tls: {why}"),
            ConnError::WebSocket(e) => format!("websocket: {e}"),
        }
    }

    /// The error of a failed read or write.
    pub fn from_io(e: &io::Error) -> ConnError {
        ConnError::Io(e.kind())
    }
}

/// Meaning of an MQTT 3.x CONNACK return code (3.1.1 table 3.1).
pub fn v3_connack_name(code: u8) -> &'static str {
    match code {
        0 => "Connection accepted",
        1 => "Unacceptable protocol version",
        2 => "Identifier rejected",
        3 => "Server unavailable",
        4 => "Bad user name or password",
        5 => "Not authorized",
        _ => "Unknown",
    }
}

impl fmt::Display for ConnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnError::Decode(e) => write!(f, "malformed packet from broker: {e}"),
            ConnError::Encode(e) => write!(f, "cannot encode packet: {e}"),
            other => f.write_str(&other.label()),
        }
    }
}

impl std::error::Error for ConnError {}

impl From<DecodeError> for ConnError {
    fn from(e: DecodeError) -> ConnError {
        ConnError::Decode(e)
    }
}

impl From<EncodeError> for ConnError {
    fn from(e: EncodeError) -> ConnError {
        ConnError::Encode(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_short_and_stable() {
        let quota = ConnError::Refused {
            code: 0x97,
            v5: true,
        };
        assert_eq!(
            quota.label(),
            format!("CONNACK 0x97 {}", ReasonCode::QUOTA_EXCEEDED.name())
        );
        let unavailable = ConnError::Refused { code: 3, v5: false };
        assert_eq!(unavailable.label(), "CONNACK 0x03 Server unavailable");
        // Authentication refusals, v5 and 3.x.
        let refused = |code, v5| ConnError::Refused { code, v5 }.label();
        assert_eq!(
            refused(0x86, true),
            "CONNACK 0x86 Bad User Name or Password"
        );
        assert_eq!(refused(0x87, true), "CONNACK 0x87 Not authorized");
        assert_eq!(refused(4, false), "CONNACK 0x04 Bad user name or password");
        assert_eq!(refused(5, false), "CONNACK 0x05 Not authorized");
        assert_eq!(ConnError::Closed.label(), "closed by broker");
        assert_eq!(ConnError::Timeout("CONNACK").label(), "timeout: CONNACK");
        assert_eq!(
            ConnError::TcpConnect(io::ErrorKind::ConnectionRefused).label(),
            "tcp connect: connection refused"
        );
        assert_eq!(
            ConnError::Unexpected(PacketType::SubAck).label(),
            "unexpected SubAck"
        );
        assert_eq!(
            ConnError::WebSocket(WsError::Refused(404)).label(),
            "websocket: upgrade refused: HTTP 404"
        );
        assert_eq!(
            ConnError::Tls("received fatal alert: BadCertificate".into()).label(),
            "tls: received fatal alert: BadCertificate"
        );
    }

    #[test]
    fn bench_error_display_names_the_cause() {
        let e = BenchError::from(ArgError {
            flag: "qos",
            reason: "0 or 1".into(),
        });
        assert_eq!(e.to_string(), "invalid --qos: 0 or 1");
        assert!(std::error::Error::source(&e).is_some());
        let e = BenchError::Setup("SUBACK refused".into());
        assert_eq!(e.to_string(), "scenario setup failed: SUBACK refused");
    }
}
