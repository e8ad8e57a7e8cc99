//! A live [`Session`] to and from the store's [`SessionState`] (issue 16),
//! as pure functions: the building block a shard uses to write a session
//! into a snapshot and to bring it back after a restart.
//!
//! It owns the mapping between the two shapes and nothing else: it reads
//! no clock (wall-clock time comes in as a [`WallClock`]), writes no file,
//! and decides nothing about when to persist.
//!
//! What is kept: the username (when the policy keeps identities: an ACL
//! or `takeover_same_user_only`; None otherwise and for an anonymous
//! client), the protocol level, session expiry, the will and its delay,
//! the subscriptions (options byte as in SUBSCRIBE, v5 layout, and
//! the subscription id), the QoS 1/2 messages towards the client (in
//! flight with their packet ids, `released` once PUBREC came, then the
//! queue) with their expiry in Unix ms, and the inbound QoS 2 packet ids
//! awaiting PUBREL. Properties are stored as the encoded v5 property list
//! without its length prefix (what [`Properties::encoded_len`] counts).
//!
//! An imported session under a policy that keeps identities gets its
//! username back, so `--takeover-same-user-only` still knows its owner,
//! and its subscriptions are decided again under the policy's ACL as a
//! resume decides them: refused ones are left out (`Revoked`), filtered
//! ones check each delivery's topic while the client is away.
//!
//! What is not kept (the store has no place for it): cached ACL
//! decisions (decided again on import), the packet id allocator's
//! position (new messages after an import may get other free ids than the
//! original would have), drop counters, and the content of a released
//! QoS 2 message (the session no longer holds it either: it is exported
//! with an empty topic and payload).
//!
//! Invariants, under one policy (and ACL) for both: `import(export(s))`
//! behaves as `s` on every later input up to the packet ids of messages
//! first sent after the import, and `export(import(state))` equals `state`
//! for every `state` that `export` made. Msg ids are the messages' store
//! ids (see `journal`), kept across export and import: they ascend in the
//! order the messages were taken in, which is their first-transmission
//! order, so an imported session re-sends in the original order (PUBRELs
//! too follow that order, not PUBREC order).

use bytes::{BufMut, Bytes, BytesMut};
use ringmq_auth::acl::SubscribeGrant;
use ringmq_codec::{
    Limits, Packet, Properties, ProtocolVersion, Publish, QoS, RetainHandling, SubscriptionOptions,
    Will,
};
use ringmq_store::{Event, SessionState, StoreState};
use std::fmt;

use crate::outbox::{Action, Outbox, Timer};
use crate::rights::Rights;
use crate::{
    Inbound, Outbound, OutboundConfig, OutboundEntry, ServerPolicy, Session, Subscription, Tick,
};

/// Maps the broker's ticks (ms since its epoch) to wall-clock time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WallClock {
    /// Unix time in ms at `Tick(0)`.
    pub unix_ms_at_epoch: u64,
}

impl WallClock {
    /// Unix ms of `tick` (saturating).
    pub fn to_unix(&self, tick: Tick) -> u64 {
        self.unix_ms_at_epoch.saturating_add(tick.0)
    }

    /// The tick of `unix_ms`; `Tick(0)` for a time before the epoch.
    pub fn to_tick(&self, unix_ms: u64) -> Tick {
        Tick(unix_ms.saturating_sub(self.unix_ms_at_epoch))
    }
}

/// Why [`Session::import`] refused a stored session (a store written by a
/// different version, or damaged past its checksums).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImportError {
    /// A protocol level other than 3, 4 or 5.
    Protocol(u8),
    /// A QoS above 2, or 0 for a kept message (QoS 0 is never kept).
    Qos(u8),
    /// A subscription options byte SUBSCRIBE could not carry.
    SubscriptionOptions {
        /// The filter it belongs to.
        filter: Bytes,
        /// The byte.
        byte: u8,
    },
    /// Stored properties that do not decode as a PUBLISH's.
    Properties,
    /// A message in flight with packet id 0 (MQTT-2.2.1-3).
    PacketIdZero,
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImportError::Protocol(level) => write!(f, "unknown protocol level {level}"),
            ImportError::Qos(qos) => write!(f, "QoS {qos} cannot be kept"),
            ImportError::SubscriptionOptions { filter, byte } => write!(
                f,
                "subscription options 0x{byte:02X} of {:?} are not valid",
                String::from_utf8_lossy(filter)
            ),
            ImportError::Properties => f.write_str("stored properties do not decode"),
            ImportError::PacketIdZero => f.write_str("a message in flight with packet id 0"),
        }
    }
}

impl std::error::Error for ImportError {}

/// The protocol byte stored for `version`: its CONNECT level (3 = 3.1,
/// 4 = 3.1.1, 5 = 5.0).
pub fn protocol_byte(version: ProtocolVersion) -> u8 {
    version.level()
}

/// The protocol a stored level byte names.
pub fn protocol_from_byte(level: u8) -> Option<ProtocolVersion> {
    match level {
        3 => Some(ProtocolVersion::V3_1),
        4 => Some(ProtocolVersion::V3_1_1),
        5 => Some(ProtocolVersion::V5),
        _ => None,
    }
}

const NO_LOCAL: u8 = 0x04;
const RETAIN_AS_PUBLISHED: u8 = 0x08;
const RETAIN_HANDLING_SHIFT: u8 = 4;

/// The SUBSCRIBE options byte of a grant, in the v5 layout (MQTT 5
/// 3.8.3.1); a v3 grant has only its QoS set, so this is its v3 byte too.
pub fn options_byte(options: SubscriptionOptions) -> u8 {
    let mut byte = options.qos as u8;
    if options.no_local {
        byte |= NO_LOCAL;
    }
    if options.retain_as_published {
        byte |= RETAIN_AS_PUBLISHED;
    }
    byte | (options.retain_handling as u8) << RETAIN_HANDLING_SHIFT
}

/// The grant of a v5 options byte; `None` where SUBSCRIBE would be
/// malformed (reserved bits, QoS 3, Retain Handling 3).
pub fn options_from_byte(byte: u8) -> Option<SubscriptionOptions> {
    if byte & 0xC0 != 0 {
        return None; // MQTT-3.8.3-5
    }
    Some(SubscriptionOptions {
        qos: QoS::from_u8(byte & 0b11)?,
        no_local: byte & NO_LOCAL != 0,
        retain_as_published: byte & RETAIN_AS_PUBLISHED != 0,
        retain_handling: RetainHandling::from_u8((byte >> RETAIN_HANDLING_SHIFT) & 0b11)?,
    })
}

/// The parts of a [`Session`] that outlive its connections, as
/// [`Session::from_parts`] takes them.
pub(crate) struct Parts {
    pub(crate) client_id: Bytes,
    pub(crate) protocol: ProtocolVersion,
    pub(crate) subscriptions: Vec<(Bytes, Subscription)>,
    pub(crate) will: Option<Will>,
    pub(crate) will_delay_secs: u32,
    pub(crate) will_pending: Option<Tick>,
    pub(crate) session_expiry_secs: u32,
    pub(crate) qos: Option<(Outbound, Inbound)>,
    /// The identity and ACL decisions, when the policy keeps them.
    pub(crate) rights: Option<Rights>,
    /// Journal its changes ([`crate::Step`]).
    pub(crate) journal: bool,
    /// When its connection ended.
    pub(crate) left_at: Tick,
}

impl Session {
    /// The session as the store keeps it.
    ///
    /// `left_at`: when its connection ended (the tick given to
    /// `connection_lost` or `taken_over`; the shard knows it, the session
    /// does not keep it). It is ignored while a connection is attached:
    /// `left_at_unix_ms` is then `None`, as the store has it for a
    /// connected client.
    pub fn export(&self, left_at: Tick, clock: &WallClock) -> SessionState {
        let client_id = self.client_id().clone();
        let mut events = vec![self.header_event()];
        if !self.is_connected() {
            events.push(Event::SessionLeft {
                client_id: client_id.clone(),
                at_unix_ms: clock.to_unix(left_at),
            });
        }
        for (filter, grant) in self.subscriptions() {
            events.push(Event::SubscriptionPut {
                client_id: client_id.clone(),
                filter: filter.clone(),
                options: options_byte(grant.options),
                id: grant.id,
            });
        }
        if let Some((outbound, inbound)) = self.qos_flows() {
            for entry in outbound.entries() {
                let msg_id = entry.sid();
                let queued = |publish: &Publish, expires_at_ms: Option<u64>| Event::MessageQueued {
                    client_id: client_id.clone(),
                    msg_id,
                    topic: publish.topic.clone(),
                    payload: publish.payload.clone(),
                    qos: publish.qos as u8,
                    retain: publish.retain,
                    properties: encode_properties(&publish.properties),
                    expires_at_unix_ms: expires_at_ms.map(|t| clock.to_unix(Tick(t))),
                };
                let sent = |packet_id| Event::MessageSent {
                    client_id: client_id.clone(),
                    msg_id,
                    packet_id,
                };
                match entry {
                    OutboundEntry::Published {
                        packet_id,
                        publish,
                        expires_at_ms,
                        ..
                    } => {
                        events.push(queued(&publish, expires_at_ms));
                        events.push(sent(packet_id));
                    }
                    OutboundEntry::Released { packet_id, .. } => {
                        let released = Publish {
                            dup: false,
                            qos: QoS::ExactlyOnce,
                            retain: false,
                            topic: Bytes::new(),
                            packet_id: 0,
                            properties: Default::default(),
                            payload: Bytes::new(),
                        };
                        events.push(queued(&released, None));
                        events.push(sent(packet_id));
                        events.push(Event::MessageReleased {
                            client_id: client_id.clone(),
                            packet_id,
                        });
                    }
                    OutboundEntry::Queued {
                        publish,
                        expires_at_ms,
                        ..
                    } => events.push(queued(&publish, expires_at_ms)),
                }
            }
            for packet_id in inbound.awaiting_rel_ids() {
                events.push(Event::InboundPending {
                    client_id: client_id.clone(),
                    packet_id,
                });
            }
        }
        // Built through the store's own replay rules: `SessionState` keeps
        // a private index in step with its messages.
        let mut store = StoreState::new();
        for event in &events {
            store.apply(event);
        }
        let state = store.sessions.remove(&client_id);
        // Invariant: the first event put the session there.
        state.expect("SessionPut creates the session")
    }

    /// A session rebuilt from `state`: no connection attached, resumable
    /// (a CONNECT with clean start 0 finds it present and gets the
    /// re-sends), under `policy`'s queue limits.
    ///
    /// Under a policy that keeps identities (`policy.acl` or
    /// `policy.takeover_same_user_only`) the session is owned by the stored
    /// username ([`Session::may_take_over`]), and with an ACL its
    /// subscriptions are decided again as a resume decides them: one
    /// refused is left out (no route; `Revoked`), one a deny rule overlaps
    /// checks each delivery's topic. Otherwise the stored username is
    /// ignored and the session has no owner.
    ///
    /// Into `out`, as for the live session: per subscription (by filter)
    /// an `AddRoute`, or `Revoked` for one the ACL refuses, then
    /// `ArmTimer(WillDelay)` for a will still to be published (at
    /// `left_at + min(will delay, session expiry)`, as
    /// `connection_lost` arms it) and `ArmTimer(SessionExpiry)` at
    /// `left_at + expiry` (none for `u32::MAX`). A state that never left
    /// (`left_at_unix_ms` None: the shard stopped while it was connected)
    /// is taken as left at `now`. A deadline already past is armed 1 ms
    /// after `now` (a timer is never armed at or before now): the caller
    /// is expected to have run `StoreState::expire` first, this only keeps
    /// a late one safe.
    ///
    /// Nothing is written to `out` when the state is refused.
    pub fn import(
        client_id: Bytes,
        state: &SessionState,
        clock: &WallClock,
        policy: &ServerPolicy,
        now: Tick,
        out: &mut Outbox,
    ) -> Result<Session, ImportError> {
        let protocol =
            protocol_from_byte(state.protocol).ok_or(ImportError::Protocol(state.protocol))?;
        let v5 = protocol == ProtocolVersion::V5;
        let mut subscriptions = Vec::with_capacity(state.subscriptions.len());
        for (filter, &(byte, id)) in &state.subscriptions {
            let options =
                options_from_byte(byte).ok_or_else(|| ImportError::SubscriptionOptions {
                    filter: filter.clone(),
                    byte,
                })?;
            subscriptions.push((Bytes::copy_from_slice(filter), Subscription { options, id }));
        }
        let will = match &state.will {
            Some(w) => Some(Will {
                topic: w.topic.clone(),
                payload: w.payload.clone(),
                qos: QoS::from_u8(w.qos).ok_or(ImportError::Qos(w.qos))?,
                retain: w.retain,
                properties: decode_properties(&w.properties)?,
            }),
            None => None,
        };
        let mut entries = Vec::with_capacity(state.messages.len());
        let mut released = Vec::new();
        for (&sid, m) in &state.messages {
            let entry = match m.packet_id {
                Some(0) => return Err(ImportError::PacketIdZero),
                Some(packet_id) if m.released => {
                    // Placed below, in PUBREC order.
                    released.push(OutboundEntry::Released { sid, packet_id });
                    continue;
                }
                packet_id => {
                    let qos = match QoS::from_u8(m.qos) {
                        Some(QoS::AtMostOnce) | None => return Err(ImportError::Qos(m.qos)),
                        Some(qos) => qos,
                    };
                    let publish = Publish {
                        dup: false,
                        qos,
                        retain: m.retain,
                        topic: m.topic.clone(),
                        packet_id: 0,
                        properties: decode_properties(&m.properties)?.into(),
                        payload: m.payload.clone(),
                    };
                    let expires_at_ms = m.expires_at_unix_ms.map(|t| clock.to_tick(t).0);
                    match packet_id {
                        Some(packet_id) => OutboundEntry::Published {
                            sid,
                            packet_id,
                            publish,
                            expires_at_ms,
                        },
                        None => OutboundEntry::Queued {
                            sid,
                            publish,
                            expires_at_ms,
                        },
                    }
                }
            };
            entries.push(entry);
        }
        let order = state.released_in_order();
        released.sort_by_key(|e| order.iter().position(|&id| id == e.sid()));
        entries.extend(released);
        let qos = (!entries.is_empty() || !state.inbound_pending.is_empty()).then(|| {
            let outbound = Outbound::restore(
                OutboundConfig {
                    max_queued: policy.max_queued_messages,
                    max_bytes: policy.max_queued_bytes,
                },
                entries,
            );
            // As `Session::qos_state` makes it: a v3 client is never told
            // a Receive Maximum.
            let receive_maximum = if v5 { policy.receive_maximum } else { u16::MAX };
            let inbound = Inbound::restore(receive_maximum, state.inbound_pending.iter().copied());
            (outbound, inbound)
        });

        // A will the ACL no longer lets this client publish is dropped, as
        // `Session::reauthorize` does after a reload.
        let will = will.filter(|w| match &policy.acl {
            Some(acl) if policy.keeps_identity() => {
                let who = ringmq_auth::acl::Who {
                    client_id: &client_id,
                    username: state.username.as_deref(),
                };
                acl.check(&who, ringmq_auth::acl::Access::Write, &w.topic)
            }
            _ => true,
        });
        let left_at = state.left_at_unix_ms.map_or(now, |at| clock.to_tick(at));
        let not_before = now.add_ms(1);
        // `connection_lost`: the will goes when the delay passes or the
        // session ends, whichever comes first.
        let will_pending = will.as_ref().map(|_| {
            let secs = state.will_delay_secs.min(state.expiry_secs);
            left_at.add_secs(u64::from(secs)).max(not_before)
        });
        // As `Session::connect` decides a resumed session's subscriptions
        // (the rules may have changed while it was stored), but before any
        // route is added: a refused one is left out, not dropped.
        let mut rights = policy
            .keeps_identity()
            .then(|| Rights::new(state.username.as_deref().map(Bytes::copy_from_slice)));
        subscriptions.retain(|(filter, grant)| {
            if let (Some(acl), Some(rights)) = (&policy.acl, rights.as_mut()) {
                match acl.subscribe(&rights.who(&client_id), filter) {
                    SubscribeGrant::Refused => {
                        out.push(Action::Revoked);
                        return false;
                    }
                    SubscribeGrant::Filtered => rights.set_filtered(filter, true),
                    SubscribeGrant::Granted => {}
                }
            }
            out.push(Action::AddRoute {
                filter: filter.clone(),
                grant: *grant,
            });
            true
        });
        if let Some(due) = will_pending {
            out.push(Action::ArmTimer(Timer::WillDelay, due));
        }
        if state.expiry_secs != u32::MAX {
            let end = left_at.add_secs(u64::from(state.expiry_secs));
            out.push(Action::ArmTimer(Timer::SessionExpiry, end.max(not_before)));
        }
        Ok(Session::from_parts(Parts {
            client_id,
            protocol,
            subscriptions,
            will,
            will_delay_secs: state.will_delay_secs,
            will_pending,
            session_expiry_secs: state.expiry_secs,
            qos,
            rights,
            journal: policy.persistence && state.expiry_secs > 0,
            left_at,
        }))
    }
}

/// A message's properties as they outlive one hop (a retained message in
/// the store, a publish sent to another node), encoded as
/// [`encode_properties`] does: without the Message Expiry Interval (kept
/// apart, as a deadline or the time left) and without the Topic Alias and
/// Subscription Identifiers (one connection's own).
pub fn encode_message_properties(properties: &Properties) -> Bytes {
    if properties.is_empty() {
        return Bytes::new();
    }
    encode_properties(&Properties {
        message_expiry_interval: None,
        topic_alias: None,
        subscription_identifiers: Vec::new(),
        ..properties.clone()
    })
}

/// The property list of a PUBLISH carrying `properties`, as the codec
/// writes it (ascending identifiers, user properties last), without its
/// length prefix; empty for none.
pub fn encode_properties(properties: &Properties) -> Bytes {
    if properties.is_empty() {
        return Bytes::new();
    }
    let publish = Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: Bytes::from_static(b"t"),
        packet_id: 0,
        properties: properties.clone().into(),
        payload: Bytes::new(),
    };
    let mut buf = BytesMut::new();
    if publish.encode(ProtocolVersion::V5, &mut buf).is_err() {
        // Kept properties came from a PUBLISH (or a will) that decoded.
        debug_assert!(false, "kept properties do not encode: {properties:?}");
        return Bytes::new();
    }
    // [0x30][remaining length][0x00 0x01 't'][property length][list]: the
    // payload is empty, so the list runs to the end.
    let start = 1 + varint_len_at(&buf[1..]) + 3;
    let start = start + varint_len_at(&buf[start..]);
    buf.freeze().slice(start..)
}

/// The length of the variable byte integer at the front of `bytes`.
fn varint_len_at(bytes: &[u8]) -> usize {
    bytes.iter().take_while(|b| *b & 0x80 != 0).count() + 1
}

/// Properties stored by [`encode_properties`], read back through the
/// codec as the property list of a PUBLISH (its rules checked).
pub fn decode_properties(list: &[u8]) -> Result<Properties, ImportError> {
    if list.is_empty() {
        return Ok(Properties::default());
    }
    let len = u32::try_from(list.len()).map_err(|_| ImportError::Properties)?;
    let mut body = BytesMut::with_capacity(list.len() + 8);
    body.put_slice(&[0x00, 0x01, b't']);
    put_varint(&mut body, len);
    body.put_slice(list);
    let mut frame = BytesMut::with_capacity(body.len() + 5);
    frame.put_u8(0x30);
    put_varint(
        &mut frame,
        u32::try_from(body.len()).map_err(|_| ImportError::Properties)?,
    );
    frame.put_slice(&body);
    let frame = frame.freeze();
    match ringmq_codec::decode(&frame, ProtocolVersion::V5, &Limits::default()) {
        Ok(Some((Packet::Publish(p), used))) if used == frame.len() => Ok((*p.properties).clone()),
        _ => Err(ImportError::Properties),
    }
}

/// Appends `n` as a variable byte integer (MQTT 1.5.5).
fn put_varint(buf: &mut BytesMut, mut n: u32) {
    loop {
        let byte = (n & 0x7F) as u8;
        n >>= 7;
        if n == 0 {
            buf.put_u8(byte);
            return;
        }
        buf.put_u8(byte | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringmq_codec::Subscribe;

    #[test]
    fn wall_clock_maps_both_ways_and_saturates() {
        let clock = WallClock {
            unix_ms_at_epoch: 1_700_000_000_000,
        };
        assert_eq!(clock.to_unix(Tick(0)), 1_700_000_000_000);
        assert_eq!(clock.to_unix(Tick(1_500)), 1_700_000_001_500);
        assert_eq!(clock.to_tick(1_700_000_001_500), Tick(1_500));
        assert_eq!(clock.to_tick(clock.to_unix(Tick(42))), Tick(42));
        // Before the epoch: the epoch.
        assert_eq!(clock.to_tick(5), Tick(0));
        assert_eq!(clock.to_unix(Tick(u64::MAX)), u64::MAX);
    }

    #[test]
    fn protocol_bytes_are_connect_levels() {
        use ProtocolVersion::*;
        for (v, b) in [(V3_1, 3), (V3_1_1, 4), (V5, 5)] {
            assert_eq!(protocol_byte(v), b);
            assert_eq!(protocol_from_byte(b), Some(v));
        }
        for b in [0, 1, 2, 6, 255] {
            assert_eq!(protocol_from_byte(b), None);
        }
    }

    /// The byte SUBSCRIBE writes for `options`, through the codec.
    fn wire_byte(options: SubscriptionOptions) -> u8 {
        let packet = Packet::Subscribe(Subscribe {
            packet_id: 1,
            properties: Properties::default(),
            filters: vec![(Bytes::from_static(b"f"), options)],
        });
        let mut buf = BytesMut::new();
        packet.encode(ProtocolVersion::V5, &mut buf).unwrap();
        *buf.last().unwrap()
    }

    #[test]
    fn options_byte_is_the_subscribe_byte() {
        for byte in 0..=u8::MAX {
            match options_from_byte(byte) {
                Some(options) => {
                    assert_eq!(options_byte(options), byte);
                    assert_eq!(wire_byte(options), byte);
                }
                None => assert!(
                    byte & 0xC0 != 0 || byte & 0b11 == 3 || (byte >> 4) & 0b11 == 3,
                    "0x{byte:02X} refused"
                ),
            }
        }
    }

    #[test]
    fn properties_round_trip_through_the_codec() {
        let p = Properties {
            payload_format_indicator: Some(1),
            message_expiry_interval: Some(30),
            content_type: Some(Bytes::from_static(b"text/plain")),
            response_topic: Some(Bytes::from_static(b"r/t")),
            correlation_data: Some(Bytes::from_static(b"\x00\x01")),
            subscription_identifiers: vec![7, 300],
            user_properties: vec![(Bytes::from_static(b"k"), Bytes::from_static(b"v"))],
            ..Properties::default()
        };
        let list = encode_properties(&p);
        assert_eq!(list.len(), p.encoded_len());
        assert_eq!(decode_properties(&list), Ok(p));
        assert!(encode_properties(&Properties::default()).is_empty());
        assert_eq!(decode_properties(&[]), Ok(Properties::default()));
        // A truncated list, an unknown id, a property PUBLISH may not carry.
        assert_eq!(decode_properties(&list[..3]), Err(ImportError::Properties));
        assert_eq!(decode_properties(&[0x7F]), Err(ImportError::Properties));
        assert_eq!(
            decode_properties(&[0x11, 0, 0, 0, 1]),
            Err(ImportError::Properties)
        );
    }

    #[test]
    fn long_property_lists_use_long_varints() {
        let p = Properties {
            correlation_data: Some(Bytes::from(vec![7u8; 20_000])),
            ..Properties::default()
        };
        let list = encode_properties(&p);
        assert_eq!(list.len(), p.encoded_len());
        assert_eq!(decode_properties(&list), Ok(p));
    }

    #[test]
    fn import_error_display() {
        assert_eq!(
            ImportError::Protocol(9).to_string(),
            "unknown protocol level 9"
        );
        assert_eq!(
            ImportError::SubscriptionOptions {
                filter: Bytes::from_static(b"a/#"),
                byte: 0xC0
            }
            .to_string(),
            "subscription options 0xC0 of \"a/#\" are not valid"
        );
    }
}
