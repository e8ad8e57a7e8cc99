//! When a Last Will is due (MQTT 3.1.2.5, 3.1.3.2-3; v5 3.1.2.5).
//!
//! The will is published when the network connection ends without a normal
//! DISCONNECT. The one choice the standards leave open is take-over in
//! v3.1.1: ringmq does not publish a v3 will on take-over (3.1.4-3 does not
//! list it among the will triggers, and the client is demonstrably alive),
//! while a v5 will is published on take-over as for any abnormal end, so
//! that its Will Delay Interval decides (a take-over inside the delay is a
//! reconnection and cancels it).

use ringmq_codec::{ProtocolVersion, ReasonCode};

/// Why a connection ended, as far as the will is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseCause {
    /// The client sent DISCONNECT with this reason code.
    ClientDisconnect(ReasonCode),
    /// The keep-alive timer expired.
    KeepAliveTimeout,
    /// The peer closed or reset the socket, or an I/O error occurred.
    NetworkError,
    /// The server closed the connection for a protocol violation.
    ProtocolError,
    /// Another connection took the client id over.
    TakenOver,
    /// The broker is shutting down.
    ServerShutdown,
    /// An administrator disconnected the client (the admin API).
    Administrative,
}

/// Whether the session's will (if any) becomes due when its connection ends
/// this way. A due will is still subject to the v5 Will Delay Interval.
pub fn will_due_on_close(cause: CloseCause, version: ProtocolVersion) -> bool {
    match cause {
        // MQTT-3.1.2-8 / 3.14.4-3: a normal DISCONNECT discards the will;
        // v5 0x04 asks for it explicitly.
        CloseCause::ClientDisconnect(code) => code == ReasonCode::DISCONNECT_WITH_WILL_MESSAGE,
        // An administrator's kick is not the client leaving cleanly.
        CloseCause::KeepAliveTimeout
        | CloseCause::NetworkError
        | CloseCause::ProtocolError
        | CloseCause::Administrative => true,
        CloseCause::TakenOver => version == ProtocolVersion::V5,
        // The broker itself is going away: nobody is left to deliver to.
        CloseCause::ServerShutdown => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn will_rules() {
        use ProtocolVersion::*;
        let normal = CloseCause::ClientDisconnect(ReasonCode::SUCCESS);
        let with_will = CloseCause::ClientDisconnect(ReasonCode::DISCONNECT_WITH_WILL_MESSAGE);
        for v in [V3_1, V3_1_1, V5] {
            assert!(!will_due_on_close(normal, v));
            assert!(will_due_on_close(CloseCause::KeepAliveTimeout, v));
            assert!(will_due_on_close(CloseCause::NetworkError, v));
            assert!(will_due_on_close(CloseCause::ProtocolError, v));
            assert!(!will_due_on_close(CloseCause::ServerShutdown, v));
        }
        assert!(will_due_on_close(with_will, V5));
        assert!(will_due_on_close(CloseCause::TakenOver, V5));
        assert!(!will_due_on_close(CloseCause::TakenOver, V3_1_1));
    }
}
