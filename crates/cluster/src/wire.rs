//! A publish as it crosses nodes: the body of the NATS message sent on
//! the topic's subject ([`crate::subject::topic_subject`]).
//!
//! ```text
//! [version: u8 = 1][flags: u8][expiry: u32 LE, if flags & EXPIRY]
//! [properties length: u32 LE][properties][payload: the rest]
//! ```
//!
//! `flags`: bits 0-1 the QoS (0 to 2), bit 2 RETAIN, bit 3 an expiry is
//! present (the Message Expiry Interval left, in seconds, when it was
//! sent). The properties are the v5 property list as encoded on the wire
//! (opaque here: the broker encodes and decodes them), without the topic
//! alias or subscription identifiers, which belong to one connection.
//! [`decode`] copies nothing: the parts it returns borrow the body.
//!
//! Invariant: `decode(&encode(m)) == Ok(m)` for every message, and no
//! input makes `decode` panic.

use std::fmt;

/// Format version of the body.
pub const VERSION: u8 = 1;

const QOS_MASK: u8 = 0b0011;
const RETAIN: u8 = 0b0100;
const EXPIRY: u8 = 0b1000;

/// A cross-node publish, borrowing its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message<'a> {
    /// QoS it was published with (0 to 2).
    pub qos: u8,
    /// RETAIN as published.
    pub retain: bool,
    /// Message Expiry Interval left when sent, seconds.
    pub expiry_secs: Option<u32>,
    /// The v5 property list as encoded (opaque).
    pub properties: &'a [u8],
    /// The payload.
    pub payload: &'a [u8],
}

/// Why a body did not decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireError {
    /// A version this node does not read.
    Version(u8),
    /// Shorter than its header says.
    Short,
    /// QoS 3, or flag bits this version does not define.
    Flags(u8),
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Version(v) => write!(f, "cross-node message version {v} is not 1"),
            WireError::Short => f.write_str("cross-node message shorter than its header says"),
            WireError::Flags(b) => write!(f, "cross-node message flags {b:#04x} are not valid"),
        }
    }
}

impl std::error::Error for WireError {}

/// Appends the body of `m` to `out`.
pub fn encode(m: &Message<'_>, out: &mut Vec<u8>) {
    debug_assert!(m.qos <= 2, "QoS {} above 2", m.qos);
    let mut flags = m.qos & QOS_MASK;
    if m.retain {
        flags |= RETAIN;
    }
    if m.expiry_secs.is_some() {
        flags |= EXPIRY;
    }
    out.reserve(10 + m.properties.len() + m.payload.len());
    out.push(VERSION);
    out.push(flags);
    if let Some(secs) = m.expiry_secs {
        out.extend_from_slice(&secs.to_le_bytes());
    }
    // A property list over 4 GiB cannot come from a packet the broker took.
    out.extend_from_slice(&(m.properties.len() as u32).to_le_bytes());
    out.extend_from_slice(m.properties);
    out.extend_from_slice(m.payload);
}

/// Reads a body [`encode`] wrote.
pub fn decode(body: &[u8]) -> Result<Message<'_>, WireError> {
    let (&version, rest) = body.split_first().ok_or(WireError::Short)?;
    if version != VERSION {
        return Err(WireError::Version(version));
    }
    let (&flags, mut rest) = rest.split_first().ok_or(WireError::Short)?;
    if flags & !(QOS_MASK | RETAIN | EXPIRY) != 0 || flags & QOS_MASK == 3 {
        return Err(WireError::Flags(flags));
    }
    let u32_at = |rest: &mut &[u8]| -> Result<u32, WireError> {
        let (head, tail) = rest.split_at_checked(4).ok_or(WireError::Short)?;
        *rest = tail;
        Ok(u32::from_le_bytes([head[0], head[1], head[2], head[3]]))
    };
    let expiry_secs = if flags & EXPIRY != 0 {
        Some(u32_at(&mut rest)?)
    } else {
        None
    };
    let len = u32_at(&mut rest)? as usize;
    let (properties, payload) = rest.split_at_checked(len).ok_or(WireError::Short)?;
    Ok(Message {
        qos: flags & QOS_MASK,
        retain: flags & RETAIN != 0,
        expiry_secs,
        properties,
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_plain_qos0_message_costs_six_bytes_of_header() {
        let m = Message {
            qos: 0,
            retain: false,
            expiry_secs: None,
            properties: &[],
            payload: b"hello",
        };
        let mut out = Vec::new();
        encode(&m, &mut out);
        assert_eq!(out.len(), 6 + 5);
        assert_eq!(decode(&out), Ok(m));
    }

    #[test]
    fn bad_bodies_are_refused() {
        assert_eq!(decode(&[]), Err(WireError::Short));
        assert_eq!(decode(&[2, 0]), Err(WireError::Version(2)));
        assert_eq!(decode(&[1, 3, 0, 0, 0, 0]), Err(WireError::Flags(3)));
        assert_eq!(decode(&[1, 0x10, 0, 0, 0, 0]), Err(WireError::Flags(0x10)));
        assert_eq!(decode(&[1, EXPIRY, 1, 2]), Err(WireError::Short));
        assert_eq!(decode(&[1, 0, 9, 0, 0, 0, 1]), Err(WireError::Short));
    }

    proptest! {
        #[test]
        fn every_message_round_trips(
            qos in 0u8..=2,
            retain in any::<bool>(),
            expiry_secs in proptest::option::of(any::<u32>()),
            properties in prop::collection::vec(any::<u8>(), 0..40),
            payload in prop::collection::vec(any::<u8>(), 0..200),
        ) {
            let m = Message { qos, retain, expiry_secs, properties: &properties, payload: &payload };
            let mut out = Vec::new();
            encode(&m, &mut out);
            prop_assert_eq!(decode(&out), Ok(m));
        }

        #[test]
        fn no_input_panics(body in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode(&body);
        }
    }
}
