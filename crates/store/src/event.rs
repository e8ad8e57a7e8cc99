//! The store's events: one per change the broker makes durable, each with a
//! kind byte and a compact body.
//!
//! This file owns the body encoding only (framing, length and checksum are
//! `record`'s). It never interprets MQTT beyond checking that flags are 0/1
//! and QoS is at most 2. Invariant: for every event `e`,
//! `decode_body(e.kind(), body_of(e)) == Ok(e)`, and a body decodes only if
//! it is consumed exactly (no trailing bytes).
//!
//! Body fields, in declaration order: integers little-endian (u8, u16, u32,
//! u64), `bool` one byte 0 or 1, byte strings as a u32 length then the bytes,
//! `Option<T>` a flag byte 0 (None) or 1 (Some) then `T`.

use bytes::Bytes;
use std::fmt;

/// A will message as kept with its session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WillRecord {
    /// The will topic.
    pub topic: Bytes,
    /// The will payload.
    pub payload: Bytes,
    /// The will QoS, 0 to 2.
    pub qos: u8,
    /// The will retain flag.
    pub retain: bool,
    /// The will's v5 properties as encoded on the wire (opaque here; empty
    /// for v3).
    pub properties: Bytes,
}

/// One durable change. See `state` for what each does to a `StoreState`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A persistent session was granted (CONNECT) or its parameters changed;
    /// the client is connected.
    SessionPut {
        /// The client identifier.
        client_id: Bytes,
        /// The username of the connection (None: anonymous, or the broker
        /// keeps no identities).
        username: Option<Bytes>,
        /// The protocol level from CONNECT (4 = 3.1.1, 5 = 5.0).
        protocol: u8,
        /// Session expiry interval in seconds; `u32::MAX` never expires.
        expiry_secs: u32,
        /// The will, if the client set one.
        will: Option<WillRecord>,
        /// Will delay interval in seconds (0 for v3).
        will_delay_secs: u32,
    },
    /// The client went away; session expiry and will delay count from here,
    /// across restarts.
    SessionLeft {
        /// The client identifier.
        client_id: Bytes,
        /// Wall-clock time the connection ended, ms since the Unix epoch.
        at_unix_ms: u64,
    },
    /// The session ended (expired, clean start, taken over with clean
    /// start): forget everything of it.
    SessionGone {
        /// The client identifier.
        client_id: Bytes,
    },
    /// The session's will was published or discarded; the session lives
    /// on (so a restart does not publish it again).
    WillGone {
        /// The client identifier.
        client_id: Bytes,
    },
    /// A subscription was added or replaced.
    SubscriptionPut {
        /// The client identifier.
        client_id: Bytes,
        /// The topic filter as subscribed (including any `$share/` prefix).
        filter: Bytes,
        /// The SUBSCRIBE options byte (QoS, No Local, RAP, Retain Handling).
        options: u8,
        /// The subscription identifier; 0 means none (v5 ids are 1 or more).
        id: u32,
    },
    /// A subscription was removed (UNSUBSCRIBE).
    SubscriptionGone {
        /// The client identifier.
        client_id: Bytes,
        /// The topic filter as subscribed.
        filter: Bytes,
    },
    /// A QoS 1/2 message was queued for the session.
    MessageQueued {
        /// The client identifier.
        client_id: Bytes,
        /// Identifies the message within its shard's store.
        msg_id: u64,
        /// The topic the message is delivered on.
        topic: Bytes,
        /// The payload.
        payload: Bytes,
        /// The QoS it is delivered at (1 or 2; 0 is kept as given).
        qos: u8,
        /// The retain flag it is delivered with.
        retain: bool,
        /// Its v5 properties as encoded (opaque here).
        properties: Bytes,
        /// When it expires, ms since the Unix epoch; None never.
        expires_at_unix_ms: Option<u64>,
    },
    /// A queued message went out with this packet id (in flight; on resume
    /// it is re-sent with DUP).
    MessageSent {
        /// The client identifier.
        client_id: Bytes,
        /// The message.
        msg_id: u64,
        /// The packet id it was sent with.
        packet_id: u16,
    },
    /// PUBREC arrived for this packet id: the flow is at PUBREL.
    MessageReleased {
        /// The client identifier.
        client_id: Bytes,
        /// The packet id of the message in flight.
        packet_id: u16,
    },
    /// PUBACK (QoS 1) or PUBCOMP (QoS 2) arrived: forget the message.
    MessageDone {
        /// The client identifier.
        client_id: Bytes,
        /// The packet id of the message in flight.
        packet_id: u16,
    },
    /// A message was expired or dropped while queued.
    MessageDropped {
        /// The client identifier.
        client_id: Bytes,
        /// The message.
        msg_id: u64,
    },
    /// A QoS 2 PUBLISH from the client was answered with PUBREC; PUBREL is
    /// awaited.
    InboundPending {
        /// The client identifier.
        client_id: Bytes,
        /// The client's packet id.
        packet_id: u16,
    },
    /// PUBREL arrived (PUBCOMP sent): the inbound flow is over.
    InboundDone {
        /// The client identifier.
        client_id: Bytes,
        /// The client's packet id.
        packet_id: u16,
    },
    /// A retained message was set.
    RetainedPut {
        /// The topic it is retained on.
        topic: Bytes,
        /// The payload.
        payload: Bytes,
        /// Its QoS, 0 to 2.
        qos: u8,
        /// Its v5 properties as encoded (opaque here).
        properties: Bytes,
        /// When it expires, ms since the Unix epoch; None never.
        expires_at_unix_ms: Option<u64>,
    },
    /// A retained message was cleared.
    RetainedGone {
        /// The topic.
        topic: Bytes,
    },
}

/// Kind bytes. 0 is never used, so a zero-filled region never decodes.
pub(crate) mod kind {
    pub const SESSION_PUT: u8 = 1;
    pub const SESSION_LEFT: u8 = 2;
    pub const SESSION_GONE: u8 = 3;
    pub const SUBSCRIPTION_PUT: u8 = 4;
    pub const SUBSCRIPTION_GONE: u8 = 5;
    pub const MESSAGE_QUEUED: u8 = 6;
    pub const MESSAGE_SENT: u8 = 7;
    pub const MESSAGE_RELEASED: u8 = 8;
    pub const MESSAGE_DONE: u8 = 9;
    pub const MESSAGE_DROPPED: u8 = 10;
    pub const INBOUND_PENDING: u8 = 11;
    pub const INBOUND_DONE: u8 = 12;
    pub const RETAINED_PUT: u8 = 13;
    pub const RETAINED_GONE: u8 = 14;
    pub const WILL_GONE: u8 = 15;
}

/// Why a body with a good checksum and a known kind did not parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyError {
    /// A field runs past the end of the body.
    Short,
    /// Bytes are left over after the last field.
    Trailing,
    /// A bool or Option flag byte is neither 0 nor 1.
    BadFlag,
    /// A QoS byte is above 2.
    BadQos,
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BodyError::Short => "a field runs past the end of the body",
            BodyError::Trailing => "bytes left over after the last field",
            BodyError::BadFlag => "a flag byte is neither 0 nor 1",
            BodyError::BadQos => "a QoS byte is above 2",
        })
    }
}

impl std::error::Error for BodyError {}

impl Event {
    /// The record kind byte of this event.
    pub fn kind(&self) -> u8 {
        match self {
            Event::SessionPut { .. } => kind::SESSION_PUT,
            Event::SessionLeft { .. } => kind::SESSION_LEFT,
            Event::SessionGone { .. } => kind::SESSION_GONE,
            Event::SubscriptionPut { .. } => kind::SUBSCRIPTION_PUT,
            Event::SubscriptionGone { .. } => kind::SUBSCRIPTION_GONE,
            Event::MessageQueued { .. } => kind::MESSAGE_QUEUED,
            Event::MessageSent { .. } => kind::MESSAGE_SENT,
            Event::MessageReleased { .. } => kind::MESSAGE_RELEASED,
            Event::MessageDone { .. } => kind::MESSAGE_DONE,
            Event::MessageDropped { .. } => kind::MESSAGE_DROPPED,
            Event::InboundPending { .. } => kind::INBOUND_PENDING,
            Event::InboundDone { .. } => kind::INBOUND_DONE,
            Event::RetainedPut { .. } => kind::RETAINED_PUT,
            Event::RetainedGone { .. } => kind::RETAINED_GONE,
            Event::WillGone { .. } => kind::WILL_GONE,
        }
    }

    /// Appends the body (everything after the kind byte) to `out`.
    pub(crate) fn encode_body(&self, out: &mut Vec<u8>) {
        match self {
            Event::SessionPut {
                client_id,
                username,
                protocol,
                expiry_secs,
                will,
                will_delay_secs,
            } => {
                put_bytes(out, client_id);
                put_opt_bytes(out, username.as_deref());
                out.push(*protocol);
                out.extend_from_slice(&expiry_secs.to_le_bytes());
                match will {
                    None => out.push(0),
                    Some(w) => {
                        debug_assert!(w.qos <= 2, "will QoS {} above 2", w.qos);
                        out.push(1);
                        put_bytes(out, &w.topic);
                        put_bytes(out, &w.payload);
                        out.push(w.qos);
                        out.push(u8::from(w.retain));
                        put_bytes(out, &w.properties);
                    }
                }
                out.extend_from_slice(&will_delay_secs.to_le_bytes());
            }
            Event::SessionLeft {
                client_id,
                at_unix_ms,
            } => {
                put_bytes(out, client_id);
                out.extend_from_slice(&at_unix_ms.to_le_bytes());
            }
            Event::SessionGone { client_id } | Event::WillGone { client_id } => {
                put_bytes(out, client_id)
            }
            Event::SubscriptionPut {
                client_id,
                filter,
                options,
                id,
            } => {
                put_bytes(out, client_id);
                put_bytes(out, filter);
                out.push(*options);
                out.extend_from_slice(&id.to_le_bytes());
            }
            Event::SubscriptionGone { client_id, filter } => {
                put_bytes(out, client_id);
                put_bytes(out, filter);
            }
            Event::MessageQueued {
                client_id,
                msg_id,
                topic,
                payload,
                qos,
                retain,
                properties,
                expires_at_unix_ms,
            } => {
                debug_assert!(*qos <= 2, "message QoS {qos} above 2");
                put_bytes(out, client_id);
                out.extend_from_slice(&msg_id.to_le_bytes());
                put_bytes(out, topic);
                put_bytes(out, payload);
                out.push(*qos);
                out.push(u8::from(*retain));
                put_bytes(out, properties);
                put_opt_u64(out, *expires_at_unix_ms);
            }
            Event::MessageSent {
                client_id,
                msg_id,
                packet_id,
            } => {
                put_bytes(out, client_id);
                out.extend_from_slice(&msg_id.to_le_bytes());
                out.extend_from_slice(&packet_id.to_le_bytes());
            }
            Event::MessageReleased {
                client_id,
                packet_id,
            }
            | Event::MessageDone {
                client_id,
                packet_id,
            }
            | Event::InboundPending {
                client_id,
                packet_id,
            }
            | Event::InboundDone {
                client_id,
                packet_id,
            } => {
                put_bytes(out, client_id);
                out.extend_from_slice(&packet_id.to_le_bytes());
            }
            Event::MessageDropped { client_id, msg_id } => {
                put_bytes(out, client_id);
                out.extend_from_slice(&msg_id.to_le_bytes());
            }
            Event::RetainedPut {
                topic,
                payload,
                qos,
                properties,
                expires_at_unix_ms,
            } => {
                debug_assert!(*qos <= 2, "retained QoS {qos} above 2");
                put_bytes(out, topic);
                put_bytes(out, payload);
                out.push(*qos);
                put_bytes(out, properties);
                put_opt_u64(out, *expires_at_unix_ms);
            }
            Event::RetainedGone { topic } => put_bytes(out, topic),
        }
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    // A field over 4 GiB cannot occur: records are capped at MAX_RECORD,
    // far below, and the broker's packet limit keeps every event under it.
    debug_assert!(u32::try_from(b.len()).is_ok(), "byte string over 4 GiB");
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

fn put_opt_bytes(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => out.push(0),
        Some(b) => {
            out.push(1);
            put_bytes(out, b);
        }
    }
}

fn put_opt_u64(out: &mut Vec<u8>, v: Option<u64>) {
    match v {
        None => out.push(0),
        Some(v) => {
            out.push(1);
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
}

/// Decodes a body of a known kind. `None` for an unknown kind; byte
/// strings are slices of `body` (no copies).
pub(crate) fn decode_body(kind: u8, body: &Bytes) -> Option<Result<Event, BodyError>> {
    let mut r = Reader { body, pos: 0 };
    let event = match kind {
        kind::SESSION_PUT => (|| {
            Ok(Event::SessionPut {
                client_id: r.bytes()?,
                username: r.opt_bytes()?,
                protocol: r.u8()?,
                expiry_secs: r.u32()?,
                will: if r.flag()? {
                    Some(WillRecord {
                        topic: r.bytes()?,
                        payload: r.bytes()?,
                        qos: r.qos()?,
                        retain: r.flag()?,
                        properties: r.bytes()?,
                    })
                } else {
                    None
                },
                will_delay_secs: r.u32()?,
            })
        })(),
        kind::SESSION_LEFT => (|| {
            Ok(Event::SessionLeft {
                client_id: r.bytes()?,
                at_unix_ms: r.u64()?,
            })
        })(),
        kind::SESSION_GONE => (|| {
            Ok(Event::SessionGone {
                client_id: r.bytes()?,
            })
        })(),
        kind::WILL_GONE => (|| {
            Ok(Event::WillGone {
                client_id: r.bytes()?,
            })
        })(),
        kind::SUBSCRIPTION_PUT => (|| {
            Ok(Event::SubscriptionPut {
                client_id: r.bytes()?,
                filter: r.bytes()?,
                options: r.u8()?,
                id: r.u32()?,
            })
        })(),
        kind::SUBSCRIPTION_GONE => (|| {
            Ok(Event::SubscriptionGone {
                client_id: r.bytes()?,
                filter: r.bytes()?,
            })
        })(),
        kind::MESSAGE_QUEUED => (|| {
            Ok(Event::MessageQueued {
                client_id: r.bytes()?,
                msg_id: r.u64()?,
                topic: r.bytes()?,
                payload: r.bytes()?,
                qos: r.qos()?,
                retain: r.flag()?,
                properties: r.bytes()?,
                expires_at_unix_ms: r.opt_u64()?,
            })
        })(),
        kind::MESSAGE_SENT => (|| {
            Ok(Event::MessageSent {
                client_id: r.bytes()?,
                msg_id: r.u64()?,
                packet_id: r.u16()?,
            })
        })(),
        kind::MESSAGE_RELEASED => (|| {
            Ok(Event::MessageReleased {
                client_id: r.bytes()?,
                packet_id: r.u16()?,
            })
        })(),
        kind::MESSAGE_DONE => (|| {
            Ok(Event::MessageDone {
                client_id: r.bytes()?,
                packet_id: r.u16()?,
            })
        })(),
        kind::MESSAGE_DROPPED => (|| {
            Ok(Event::MessageDropped {
                client_id: r.bytes()?,
                msg_id: r.u64()?,
            })
        })(),
        kind::INBOUND_PENDING => (|| {
            Ok(Event::InboundPending {
                client_id: r.bytes()?,
                packet_id: r.u16()?,
            })
        })(),
        kind::INBOUND_DONE => (|| {
            Ok(Event::InboundDone {
                client_id: r.bytes()?,
                packet_id: r.u16()?,
            })
        })(),
        kind::RETAINED_PUT => (|| {
            Ok(Event::RetainedPut {
                topic: r.bytes()?,
                payload: r.bytes()?,
                qos: r.qos()?,
                properties: r.bytes()?,
                expires_at_unix_ms: r.opt_u64()?,
            })
        })(),
        kind::RETAINED_GONE => (|| Ok(Event::RetainedGone { topic: r.bytes()? }))(),
        _ => return None,
    };
    Some(event.and_then(|e| {
        if r.pos == body.len() {
            Ok(e)
        } else {
            Err(BodyError::Trailing)
        }
    }))
}

/// A cursor over one record body.
struct Reader<'a> {
    body: &'a Bytes,
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], BodyError> {
        let end = self.pos.checked_add(n).ok_or(BodyError::Short)?;
        let s = self.body.get(self.pos..end).ok_or(BodyError::Short)?;
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], BodyError> {
        let mut a = [0; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, BodyError> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, BodyError> {
        self.array().map(u16::from_le_bytes)
    }

    fn u32(&mut self) -> Result<u32, BodyError> {
        self.array().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Result<u64, BodyError> {
        self.array().map(u64::from_le_bytes)
    }

    fn flag(&mut self) -> Result<bool, BodyError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(BodyError::BadFlag),
        }
    }

    fn qos(&mut self) -> Result<u8, BodyError> {
        match self.u8()? {
            q @ 0..=2 => Ok(q),
            _ => Err(BodyError::BadQos),
        }
    }

    fn bytes(&mut self) -> Result<Bytes, BodyError> {
        let len = self.u32()? as usize;
        let start = self.pos;
        self.take(len)?;
        Ok(self.body.slice(start..self.pos))
    }

    fn opt_bytes(&mut self) -> Result<Option<Bytes>, BodyError> {
        if self.flag()? {
            self.bytes().map(Some)
        } else {
            Ok(None)
        }
    }

    fn opt_u64(&mut self) -> Result<Option<u64>, BodyError> {
        if self.flag()? {
            self.u64().map(Some)
        } else {
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(e: &Event) -> Bytes {
        let mut out = Vec::new();
        e.encode_body(&mut out);
        Bytes::from(out)
    }

    #[test]
    fn every_kind_round_trips() {
        for e in crate::testgen::one_of_each() {
            assert_eq!(decode_body(e.kind(), &body(&e)), Some(Ok(e.clone())));
        }
    }

    #[test]
    fn kinds_are_distinct_and_never_zero() {
        let mut kinds: Vec<u8> = crate::testgen::one_of_each()
            .iter()
            .map(Event::kind)
            .collect();
        assert_eq!(kinds.len(), 15);
        kinds.sort_unstable();
        kinds.dedup();
        assert_eq!(kinds.len(), 15);
        assert!(!kinds.contains(&0));
        assert_eq!(decode_body(0, &Bytes::new()), None);
        assert_eq!(decode_body(16, &Bytes::new()), None);
    }

    #[test]
    fn every_short_body_is_short() {
        for e in crate::testgen::one_of_each() {
            let b = body(&e);
            for cut in 0..b.len() {
                assert_eq!(
                    decode_body(e.kind(), &b.slice(..cut)),
                    Some(Err(BodyError::Short)),
                    "{e:?} cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        for e in crate::testgen::one_of_each() {
            let mut b = body(&e).to_vec();
            b.push(0);
            assert_eq!(
                decode_body(e.kind(), &Bytes::from(b)),
                Some(Err(BodyError::Trailing))
            );
        }
    }

    #[test]
    fn bad_flags_and_qos_are_rejected() {
        // A RetainedPut body: topic "t", empty payload, the QoS, empty
        // properties, the expiry flag (and the expiry when it is 1).
        let retained = |qos: u8, flag: u8| {
            let mut b = vec![1, 0, 0, 0, b't', 0, 0, 0, 0, qos, 0, 0, 0, 0, flag];
            if flag == 1 {
                b.extend_from_slice(&7u64.to_le_bytes());
            }
            decode_body(kind::RETAINED_PUT, &Bytes::from(b))
        };
        assert!(matches!(retained(2, 1), Some(Ok(_))));
        assert_eq!(retained(3, 0), Some(Err(BodyError::BadQos)));
        assert_eq!(retained(0, 2), Some(Err(BodyError::BadFlag)));
    }

    #[test]
    fn session_put_username_is_an_option_after_the_client_id() {
        let put = |username: Option<&'static [u8]>| Event::SessionPut {
            client_id: Bytes::from_static(b"c"),
            username: username.map(Bytes::from_static),
            protocol: 4,
            expiry_secs: 0,
            will: None,
            will_delay_secs: 0,
        };
        // client id "c", the username flag (and the name), protocol 4,
        // expiry 0, no will, will delay 0.
        let mut anonymous = vec![1, 0, 0, 0, b'c', 0, 4];
        anonymous.extend_from_slice(&[0; 4]);
        anonymous.push(0);
        anonymous.extend_from_slice(&[0; 4]);
        assert_eq!(body(&put(None)), anonymous);
        let mut named = vec![1, 0, 0, 0, b'c', 1, 2, 0, 0, 0, b'b', b'o', 4];
        named.extend_from_slice(&anonymous[7..]);
        assert_eq!(body(&put(Some(b"bo"))), named);
        for username in [None, Some(&b""[..]), Some(b"bo")] {
            let e = put(username);
            assert_eq!(decode_body(e.kind(), &body(&e)), Some(Ok(e)));
        }
        anonymous[5] = 2;
        assert_eq!(
            decode_body(kind::SESSION_PUT, &Bytes::from(anonymous)),
            Some(Err(BodyError::BadFlag))
        );
    }

    #[test]
    fn strings_are_slices_of_the_body() {
        let e = Event::SessionGone {
            client_id: Bytes::from_static(b"client"),
        };
        let b = body(&e);
        let Some(Ok(Event::SessionGone { client_id })) = decode_body(e.kind(), &b) else {
            panic!("did not decode");
        };
        assert_eq!(client_id.as_ptr(), b[4..].as_ptr());
    }
}
