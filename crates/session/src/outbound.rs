//! Server -> client QoS 0/1/2 delivery state of one session (MQTT 5
//! sections 4.3, 4.4, 4.6, 4.9; 3.1.1 sections 4.3, 4.4, 4.6).
//!
//! Owns the packet identifiers the server uses towards one client, the
//! inflight window (messages sent and not completely acknowledged) and the
//! bounded queue of messages waiting for a connection or for room in the
//! window. It survives disconnects; [`Outbound::clear`] ends it.
//!
//! Sans-IO: it never reads a clock (time is `now_ms`, milliseconds since an
//! epoch the caller picks) and never writes a socket; every call answers
//! the packets to send now.
//!
//! Invariants:
//! - Packet identifiers are 1..=65535 and no two inflight messages share
//!   one (MQTT-2.2.1-3/-4); allocation skips identifiers in use.
//! - A new message goes inflight only while fewer than Receive Maximum
//!   QoS 1/2 messages are inflight; a QoS 1 message counts until its
//!   PUBACK, a QoS 2 message until its PUBCOMP or an error PUBREC
//!   (MQTT-4.9.0-2). After a reconnect with a smaller Receive Maximum the
//!   window may hold more than that; nothing new is sent until it drains.
//! - QoS 1/2 messages are first sent in the order they were offered: a
//!   message is sent at once only when nothing is queued ahead of it, and
//!   the queue drains from its front (MQTT 4.6).
//! - The queue never holds more than `max_queued` messages, and the queue
//!   and the inflight window together never hold more than `max_bytes` of
//!   stored messages (topic, payload, properties as stored, and the
//!   record itself; see [`Outbound::stored_bytes`]). QoS 0 is never
//!   queued; it is sent at once while connected (flow control does not
//!   apply to QoS 0, MQTT 5 section 4.9) and dropped while offline.
//! - A queued message whose expiry has passed is dropped instead of sent
//!   (MQTT-3.3.2-5); a message already sent is still re-sent on resume, as
//!   its flow must complete (MQTT-4.4.0-1).

use std::collections::VecDeque;
use std::fmt;

use bytes::Bytes;
use hashbrown::HashMap;

use crate::journal::Step;
use ringmq_codec::{
    Packet, PacketType, Properties, ProtocolVersion, PubRel, Publish, PublishProperties, QoS,
    ReasonCode,
};

/// A QoS flow answer that does not fit the state of the flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QosError {
    /// No message is inflight with this packet identifier (v5: the
    /// acknowledgement is ignored; the caller may log it).
    UnknownPacketId(u16),
    /// The identifier is inflight, but in a flow this acknowledgement does
    /// not belong to (a PUBACK for a QoS 2 message, a PUBCOMP before the
    /// PUBREC). The flow is left unchanged.
    UnexpectedAck {
        /// The packet identifier the acknowledgement carried.
        packet_id: u16,
        /// The kind of acknowledgement received.
        ack: PacketType,
    },
}

impl fmt::Display for QosError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QosError::UnknownPacketId(id) => {
                write!(f, "no message inflight with packet identifier {id}")
            }
            QosError::UnexpectedAck { packet_id, ack } => write!(
                f,
                "{ack:?} for packet identifier {packet_id} does not match the state of its flow"
            ),
        }
    }
}

impl std::error::Error for QosError {}

/// Limits of one session's outbound state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutboundConfig {
    /// Most messages kept waiting (offline, or behind a full window).
    pub max_queued: usize,
    /// Most bytes of stored messages, queued and inflight together.
    pub max_bytes: usize,
}

impl Default for OutboundConfig {
    fn default() -> Self {
        Self {
            max_queued: 1000,
            max_bytes: usize::MAX,
        }
    }
}

/// Why [`Outbound::offer`] dropped a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// A QoS 0 message while no connection is attached (never queued).
    QoS0Offline,
    /// The queue already holds `max_queued` messages.
    QueueFull,
    /// Queued and inflight messages already hold `max_bytes`.
    QueueBytes,
    /// Its Message Expiry Interval had already passed.
    Expired,
    /// Larger than the client's Maximum Packet Size: discarded as if it
    /// had been delivered (MQTT-3.1.2-25), freeing its window slot.
    TooLarge,
}

/// What to do with an offered message now.
// Returned and consumed at once on the delivery path; boxing the PUBLISH
// would cost an allocation per delivered message.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Offer {
    /// Send now (QoS 0: as is; QoS 1/2: with a fresh packet id, now inflight).
    Send(Publish),
    /// Kept for later (offline, or the window is full).
    Queued,
    /// Dropped, for the reason given (counted).
    Dropped(DropReason),
}

/// A message as kept by the session: the parts of a [`Publish`] that
/// survive between connections, without the 400-byte properties block
/// when the message has no properties.
#[derive(Debug)]
struct Message {
    /// Store id: unique within the session, the store's msg id.
    sid: u64,
    topic: Bytes,
    payload: Bytes,
    qos: QoS,
    retain: bool,
    properties: PublishProperties,
    expires_at_ms: Option<u64>,
}

impl Message {
    fn new(sid: u64, publish: Publish, expires_at_ms: Option<u64>) -> Self {
        Self {
            sid,
            topic: publish.topic,
            payload: publish.payload,
            qos: publish.qos,
            retain: publish.retain,
            properties: publish.properties,
            expires_at_ms,
        }
    }

    /// Bytes this message keeps alive: the record, its topic and payload,
    /// and its properties as stored (user properties included).
    fn size(&self) -> usize {
        let properties = if self.properties.is_empty() {
            0
        } else {
            std::mem::size_of::<Properties>() + self.properties.encoded_len()
        };
        std::mem::size_of::<Self>() + self.topic.len() + self.payload.len() + properties
    }

    fn expired(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_some_and(|d| is_expired(d, now_ms))
    }

    /// The PUBLISH to write, with the expiry that remains at `now_ms`.
    fn to_publish(&self, packet_id: u16, dup: bool, now_ms: u64) -> Publish {
        let mut properties = self.properties.clone();
        if let Some(deadline) = self.expires_at_ms {
            properties.message_expiry_interval = Some(remaining_secs(deadline, now_ms));
        }
        Publish {
            dup,
            qos: self.qos,
            retain: self.retain,
            topic: self.topic.clone(),
            packet_id,
            properties,
            payload: self.payload.clone(),
        }
    }
}

impl Message {
    /// The message as kept, for [`Outbound::entries`]: no DUP, no packet
    /// id, its properties as stored.
    fn to_stored(&self) -> Publish {
        Publish {
            dup: false,
            qos: self.qos,
            retain: self.retain,
            topic: self.topic.clone(),
            packet_id: 0,
            properties: self.properties.clone(),
            payload: self.payload.clone(),
        }
    }
}

/// A message has expired once its deadline is in the past; a deadline
/// equal to now (a Message Expiry Interval of 0 delivered at once) has not.
fn is_expired(deadline_ms: u64, now_ms: u64) -> bool {
    now_ms > deadline_ms
}

/// Seconds of expiry left, rounded up so the client never discards a
/// message early (MQTT-3.3.2-6: the received interval minus the time the
/// message waited). 0 once the deadline has passed.
fn remaining_secs(deadline_ms: u64, now_ms: u64) -> u32 {
    let secs = deadline_ms.saturating_sub(now_ms).div_ceil(1000);
    u32::try_from(secs).unwrap_or(u32::MAX)
}

/// Where an inflight message is in its flow.
#[derive(Debug)]
enum Flight {
    /// Sent; awaiting PUBACK (QoS 1) or PUBREC (QoS 2). Kept for re-sending.
    Published(Message),
    /// QoS 2 after PUBREC: PUBREL sent, awaiting PUBCOMP. The message
    /// itself is no longer needed; its store id is kept.
    Released(u64),
}

/// One inflight message. `seq` orders re-sending: for `Published` it is
/// the order of first transmission, for `Released` the order its PUBREC
/// arrived (MQTT 5 section 4.6: PUBREL in PUBREC order).
#[derive(Debug)]
struct Inflight {
    seq: u64,
    flight: Flight,
}

/// Server -> client delivery state of one session.
#[derive(Debug)]
pub struct Outbound {
    config: OutboundConfig,
    /// The client's Receive Maximum (at least 1).
    receive_maximum: u16,
    /// Packet id -> inflight message.
    inflight: HashMap<u16, Inflight>,
    /// Messages waiting, oldest first.
    queue: VecDeque<Message>,
    /// No queued message expires before this (a lower bound, so an expiry
    /// purge is skipped while nothing can have expired); `None` when no
    /// queued message has an expiry.
    earliest_expiry_ms: Option<u64>,
    /// The next packet identifier to try.
    next_id: u16,
    /// Source of `Inflight::seq`.
    next_seq: u64,
    /// Source of `Message::sid`.
    next_sid: u64,
    /// Record every change as a [`Step`] in `steps` (a persistent
    /// session under a policy with persistence on).
    journal: bool,
    /// Changes not yet taken by [`Outbound::take_steps`].
    steps: Vec<Step>,
    /// Bytes of the messages in `queue` and `Flight::Published`.
    stored_bytes: usize,
    dropped_full: u64,
    dropped_bytes: u64,
    dropped_expired: u64,
    dropped_qos0_offline: u64,
    dropped_too_large: u64,
    /// The client's Maximum Packet Size and protocol, once connected.
    limit: Option<(u32, ProtocolVersion)>,
}

impl Outbound {
    /// Empty state; Receive Maximum 65535 until [`Outbound::set_receive_maximum`].
    pub fn new(config: OutboundConfig) -> Self {
        Self {
            config,
            receive_maximum: u16::MAX,
            inflight: HashMap::new(),
            queue: VecDeque::new(),
            earliest_expiry_ms: None,
            next_id: 1,
            next_seq: 0,
            next_sid: 0,
            journal: false,
            steps: Vec::new(),
            stored_bytes: 0,
            dropped_full: 0,
            dropped_bytes: 0,
            dropped_expired: 0,
            dropped_qos0_offline: 0,
            dropped_too_large: 0,
            limit: None,
        }
    }

    /// The client's Maximum Packet Size (set at each CONNECT): every
    /// PUBLISH this state hands out fits it; a message that does not is
    /// discarded (MQTT-3.1.2-25) on every path: a new offer, a queued
    /// message sent after an acknowledgement, a re-send on resume.
    pub fn set_max_packet_size(&mut self, max: u32, version: ProtocolVersion) {
        self.limit = Some((max, version));
    }

    fn fits(&self, publish: &Publish) -> bool {
        match self.limit {
            Some((max, version)) => publish.encoded_len(version) <= max as usize,
            None => true,
        }
    }

    /// The client's v5 Receive Maximum (65535 for v3); set at each CONNECT.
    /// 0 is a protocol error the codec already refuses; it is taken as 1.
    pub fn set_receive_maximum(&mut self, n: u16) {
        self.receive_maximum = n.max(1);
    }

    /// The Receive Maximum in force.
    pub fn receive_maximum(&self) -> u16 {
        self.receive_maximum
    }

    /// Offer a message for delivery. `publish.qos` is already the delivery
    /// QoS; its `dup` and `packet_id` are ignored (MQTT-3.3.1-3: DUP is not
    /// propagated). `expires_at_ms`: the message's expiry deadline, if it
    /// has a Message Expiry Interval. `connected`: whether a connection is
    /// attached now.
    pub fn offer(
        &mut self,
        publish: Publish,
        expires_at_ms: Option<u64>,
        now_ms: u64,
        connected: bool,
    ) -> Offer {
        if expires_at_ms.is_some_and(|d| is_expired(d, now_ms)) {
            self.dropped_expired += 1;
            return Offer::Dropped(DropReason::Expired);
        }
        if publish.qos == QoS::AtMostOnce {
            if !connected {
                self.dropped_qos0_offline += 1;
                return Offer::Dropped(DropReason::QoS0Offline);
            }
            let mut publish = publish;
            publish.dup = false;
            publish.packet_id = 0;
            if let Some(deadline) = expires_at_ms {
                publish.properties.message_expiry_interval = Some(remaining_secs(deadline, now_ms));
            }
            if !self.fits(&publish) {
                self.dropped_too_large += 1;
                return Offer::Dropped(DropReason::TooLarge);
            }
            return Offer::Send(publish);
        }
        let sid = self.next_sid;
        self.next_sid += 1;
        let message = Message::new(sid, publish, expires_at_ms);
        let size = message.size();
        if self.stored_bytes + size > self.config.max_bytes {
            self.purge_expired(now_ms);
            if self.stored_bytes + size > self.config.max_bytes {
                self.dropped_bytes += 1;
                return Offer::Dropped(DropReason::QueueBytes);
            }
        }
        // MQTT 4.6: only when nothing waits ahead of it may it go now.
        if connected && self.queue.is_empty() && self.window_open() {
            let stored = self
                .journal
                .then(|| (message.to_stored(), message.expires_at_ms));
            return match self.send_new(message, now_ms) {
                Some(publish) => {
                    if let Some((publish_stored, expires_at_ms)) = stored {
                        // Recorded as taken in, then sent: `Sent` follows.
                        let sent = self.steps.pop();
                        self.steps.push(Step::Queued {
                            sid,
                            publish: publish_stored,
                            expires_at_ms,
                        });
                        self.steps.extend(sent);
                    }
                    Offer::Send(publish)
                }
                None => Offer::Dropped(DropReason::TooLarge),
            };
        }
        if self.queue.len() >= self.config.max_queued {
            self.purge_expired(now_ms);
            if self.queue.len() >= self.config.max_queued {
                self.dropped_full += 1;
                return Offer::Dropped(DropReason::QueueFull);
            }
        }
        self.stored_bytes += size;
        if let Some(deadline) = message.expires_at_ms {
            self.earliest_expiry_ms = Some(match self.earliest_expiry_ms {
                Some(e) => e.min(deadline),
                None => deadline,
            });
        }
        if self.journal {
            self.steps.push(Step::Queued {
                sid,
                publish: message.to_stored(),
                expires_at_ms: message.expires_at_ms,
            });
        }
        self.queue.push_back(message);
        Offer::Queued
    }

    /// PUBACK from the client: ends a QoS 1 flow and appends to `out` the
    /// queued messages that now fit the window (packet ids assigned), in
    /// order. Like the other `handle_*` calls it is meant for an attached
    /// connection: what lands in `out` is inflight and must be written now
    /// (if the connection is gone, [`Outbound::resume`] re-sends it).
    pub fn handle_puback(
        &mut self,
        packet_id: u16,
        now_ms: u64,
        out: &mut Vec<Publish>,
    ) -> Result<(), QosError> {
        self.complete(
            packet_id,
            PacketType::PubAck,
            now_ms,
            out,
            |flight| matches!(flight, Flight::Published(m) if m.qos == QoS::AtLeastOnce),
        )
    }

    /// Ends the flow of `packet_id` when `expected` accepts its state, then
    /// refills the window from the queue.
    fn complete(
        &mut self,
        packet_id: u16,
        ack: PacketType,
        now_ms: u64,
        out: &mut Vec<Publish>,
        expected: impl Fn(&Flight) -> bool,
    ) -> Result<(), QosError> {
        match self.inflight.get(&packet_id) {
            None => return Err(QosError::UnknownPacketId(packet_id)),
            Some(entry) if expected(&entry.flight) => {}
            Some(_) => return Err(QosError::UnexpectedAck { packet_id, ack }),
        }
        self.remove_inflight(packet_id);
        self.drain(now_ms, |p| out.push(p));
        Ok(())
    }

    /// PUBREC from the client. Success: the answer is the PUBREL to send
    /// (again for a repeated PUBREC). An error reason code (0x80 and above)
    /// ends the flow without a PUBREL (MQTT 5 section 4.3.3), frees the id
    /// and appends to `out` the queued messages that now fit. An unknown
    /// id, or one inflight at QoS 1, is answered with PUBREL 0x92 (Packet
    /// Identifier not found) unless the PUBREC itself carried an error.
    pub fn handle_pubrec(
        &mut self,
        packet_id: u16,
        code: ReasonCode,
        now_ms: u64,
        out: &mut Vec<Publish>,
    ) -> Option<PubRel> {
        let Some(entry) = self.inflight.get_mut(&packet_id) else {
            return (!code.is_error())
                .then(|| pubrel(packet_id, ReasonCode::PACKET_IDENTIFIER_NOT_FOUND));
        };
        match &entry.flight {
            Flight::Published(m) if m.qos == QoS::ExactlyOnce => {
                if code.is_error() {
                    self.remove_inflight(packet_id);
                    self.drain(now_ms, |p| out.push(p));
                    return None;
                }
                entry.seq = self.next_seq;
                self.next_seq += 1;
                let sid = m.sid;
                if let Flight::Published(m) =
                    std::mem::replace(&mut entry.flight, Flight::Released(sid))
                {
                    self.stored_bytes -= m.size();
                }
                if self.journal {
                    self.steps.push(Step::Released { packet_id });
                }
                Some(pubrel(packet_id, ReasonCode::SUCCESS))
            }
            // A repeated PUBREC (the client did not see our PUBREL yet):
            // answer it the same way; an error now cannot undo the flow.
            Flight::Released(_) => {
                (!code.is_error()).then(|| pubrel(packet_id, ReasonCode::SUCCESS))
            }
            Flight::Published(_) => (!code.is_error())
                .then(|| pubrel(packet_id, ReasonCode::PACKET_IDENTIFIER_NOT_FOUND)),
        }
    }

    /// PUBCOMP from the client: ends a QoS 2 flow and appends to `out` the
    /// queued messages that now fit the window, in order.
    pub fn handle_pubcomp(
        &mut self,
        packet_id: u16,
        now_ms: u64,
        out: &mut Vec<Publish>,
    ) -> Result<(), QosError> {
        self.complete(packet_id, PacketType::PubComp, now_ms, out, |flight| {
            matches!(flight, Flight::Released(_))
        })
    }

    /// On (re)connect, after [`Outbound::set_receive_maximum`]: appends
    /// everything to send, in this order: unacknowledged PUBLISH with DUP=1
    /// and their original ids in first-transmission order (MQTT-4.4.0-1,
    /// MQTT-4.6.0-1), PUBREL for ids awaiting PUBCOMP in PUBREC order
    /// (MQTT-4.6.0-3), then queued messages up to the window. Expired queued
    /// messages are dropped (counted); every PUBLISH carries the expiry it
    /// has left (seconds, rounded up; 0 for an expired one being re-sent).
    pub fn resume(&mut self, now_ms: u64, out: &mut Vec<Packet>) {
        let mut published: Vec<(u64, u16)> = Vec::new();
        let mut released: Vec<(u64, u16)> = Vec::new();
        for (&id, entry) in &self.inflight {
            match entry.flight {
                Flight::Published(_) => published.push((entry.seq, id)),
                Flight::Released(_) => released.push((entry.seq, id)),
            }
        }
        published.sort_unstable();
        released.sort_unstable();
        for (_, id) in published {
            if let Some(Inflight {
                flight: Flight::Published(m),
                ..
            }) = self.inflight.get(&id)
            {
                let publish = m.to_publish(id, true, now_ms);
                if self.fits(&publish) {
                    out.push(Packet::Publish(publish));
                } else {
                    // The client now takes less than when it was first
                    // sent: discard it and free its slot, never a phantom
                    // resent and dropped on every reconnection.
                    self.remove_inflight(id);
                    self.dropped_too_large += 1;
                }
            }
        }
        for (_, id) in released {
            out.push(Packet::PubRel(pubrel(id, ReasonCode::SUCCESS)));
        }
        self.drain(now_ms, |p| out.push(Packet::Publish(p)));
    }

    /// On clean start or session end: forget every inflight and queued
    /// message. The drop counters and the Receive Maximum are kept.
    pub fn clear(&mut self) {
        self.inflight.clear();
        self.queue.clear();
        self.steps.clear();
        self.stored_bytes = 0;
        self.earliest_expiry_ms = None;
        self.next_id = 1;
    }

    /// Turns the journal on or off: while on, every change is recorded as
    /// a [`Step`] for [`Outbound::take_steps`].
    pub fn set_journal(&mut self, on: bool) {
        self.journal = on;
        if !on {
            self.steps.clear();
        }
    }

    /// The changes recorded since the last call, in order.
    pub fn take_steps(&mut self) -> std::vec::Drain<'_, Step> {
        self.steps.drain(..)
    }

    /// QoS 1/2 messages sent and not completely acknowledged.
    pub fn inflight_len(&self) -> usize {
        self.inflight.len()
    }

    /// Messages waiting to be sent.
    pub fn queued_len(&self) -> usize {
        self.queue.len()
    }

    /// Messages dropped since creation because the queue was full.
    pub fn dropped_full(&self) -> u64 {
        self.dropped_full
    }

    /// Messages dropped since creation because stored messages already
    /// held `max_bytes`.
    pub fn dropped_bytes(&self) -> u64 {
        self.dropped_bytes
    }

    /// Bytes kept by queued and inflight messages (what `max_bytes` bounds).
    pub fn stored_bytes(&self) -> usize {
        self.stored_bytes
    }

    /// Messages dropped since creation because they expired before they
    /// were sent.
    pub fn dropped_expired(&self) -> u64 {
        self.dropped_expired
    }

    /// QoS 0 messages dropped since creation because no connection was
    /// attached.
    pub fn dropped_qos0_offline(&self) -> u64 {
        self.dropped_qos0_offline
    }

    /// Messages dropped since creation, for every reason.
    pub fn dropped_total(&self) -> u64 {
        self.dropped_full
            + self.dropped_bytes
            + self.dropped_expired
            + self.dropped_qos0_offline
            + self.dropped_too_large
    }

    /// Messages discarded since creation because they exceeded the
    /// client's Maximum Packet Size.
    pub fn dropped_too_large(&self) -> u64 {
        self.dropped_too_large
    }

    fn window_open(&self) -> bool {
        self.inflight.len() < usize::from(self.receive_maximum)
    }

    /// Assign a packet id to a QoS 1/2 message, record it inflight and
    /// return its first transmission; `None` (counted) when it is too
    /// large for the client.
    fn send_new(&mut self, message: Message, now_ms: u64) -> Option<Publish> {
        debug_assert!(message.qos != QoS::AtMostOnce);
        debug_assert!(self.window_open());
        let packet_id = self.allocate_id();
        let publish = message.to_publish(packet_id, false, now_ms);
        if !self.fits(&publish) {
            self.dropped_too_large += 1;
            return None;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.stored_bytes += message.size();
        if self.journal {
            self.steps.push(Step::Sent {
                sid: message.sid,
                packet_id,
            });
        }
        self.inflight.insert(
            packet_id,
            Inflight {
                seq,
                flight: Flight::Published(message),
            },
        );
        Some(publish)
    }

    /// Ends an inflight flow, releasing what its message held.
    fn remove_inflight(&mut self, packet_id: u16) {
        let removed = self.inflight.remove(&packet_id);
        if self.journal && removed.is_some() {
            self.steps.push(Step::Done { packet_id });
        }
        if let Some(Inflight {
            flight: Flight::Published(m),
            ..
        }) = removed
        {
            self.stored_bytes -= m.size();
        }
    }

    /// The next free packet identifier. Only called with the window open,
    /// so fewer than 65535 ids are in use and the loop ends.
    fn allocate_id(&mut self) -> u16 {
        debug_assert!(self.inflight.len() < usize::from(u16::MAX));
        loop {
            let id = self.next_id;
            self.next_id = if id == u16::MAX { 1 } else { id + 1 };
            if !self.inflight.contains_key(&id) {
                return id;
            }
        }
    }

    /// Move queued messages inflight while the window has room, dropping
    /// those that expired.
    fn drain(&mut self, now_ms: u64, mut emit: impl FnMut(Publish)) {
        while self.window_open() {
            let Some(message) = self.queue.pop_front() else {
                break;
            };
            self.stored_bytes -= message.size();
            let sid = message.sid;
            if message.expired(now_ms) {
                self.dropped_expired += 1; // MQTT-3.3.2-5
                if self.journal {
                    self.steps.push(Step::Dropped { sid });
                }
                continue;
            }
            match self.send_new(message, now_ms) {
                Some(publish) => emit(publish),
                None if self.journal => self.steps.push(Step::Dropped { sid }),
                None => {}
            }
        }
        if self.queue.is_empty() {
            self.earliest_expiry_ms = None;
        }
    }

    /// Drop every queued message that has expired; skipped while the
    /// earliest deadline is still ahead.
    fn purge_expired(&mut self, now_ms: u64) {
        match self.earliest_expiry_ms {
            Some(e) if is_expired(e, now_ms) => {}
            _ => return,
        }
        let before = self.queue.len();
        let mut freed = 0;
        let (journal, steps) = (self.journal, &mut self.steps);
        self.queue.retain(|m| {
            let keep = !m.expired(now_ms);
            if !keep {
                freed += m.size();
                if journal {
                    steps.push(Step::Dropped { sid: m.sid });
                }
            }
            keep
        });
        self.stored_bytes -= freed;
        self.dropped_expired += (before - self.queue.len()) as u64;
        self.earliest_expiry_ms = self.queue.iter().filter_map(|m| m.expires_at_ms).min();
    }
}

/// One message [`Outbound`] holds, as [`Outbound::entries`] lists it and
/// [`Outbound::restore`] takes it back (persistence, `crate::persist`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutboundEntry {
    /// Sent and awaiting PUBACK (QoS 1) or PUBREC (QoS 2): re-sent with
    /// DUP on resume.
    Published {
        /// Its store id.
        sid: u64,
        /// Its packet identifier.
        packet_id: u16,
        /// The message (`dup` false, `packet_id` 0).
        publish: Publish,
        /// Its expiry deadline, ms on the caller's clock.
        expires_at_ms: Option<u64>,
    },
    /// QoS 2 after PUBREC: PUBREL re-sent on resume. The message itself is
    /// no longer kept.
    Released {
        /// Its store id.
        sid: u64,
        /// Its packet identifier.
        packet_id: u16,
    },
    /// Waiting for a connection or for room in the window.
    Queued {
        /// Its store id.
        sid: u64,
        /// The message (`dup` false, `packet_id` 0).
        publish: Publish,
        /// Its expiry deadline, ms on the caller's clock.
        expires_at_ms: Option<u64>,
    },
}

impl OutboundEntry {
    /// The entry's store id.
    pub fn sid(&self) -> u64 {
        match self {
            OutboundEntry::Published { sid, .. }
            | OutboundEntry::Released { sid, .. }
            | OutboundEntry::Queued { sid, .. } => *sid,
        }
    }
}

impl Outbound {
    /// Every message held: the inflight ones in re-send order (the order
    /// of `seq`: first transmission, or PUBREC for a released one), then
    /// the queue, oldest first.
    pub fn entries(&self) -> Vec<OutboundEntry> {
        let mut inflight: Vec<(u64, u16, &Flight)> = self
            .inflight
            .iter()
            .map(|(&id, entry)| (entry.seq, id, &entry.flight))
            .collect();
        inflight.sort_unstable_by_key(|&(seq, id, _)| (seq, id));
        let inflight = inflight
            .into_iter()
            .map(|(_, packet_id, flight)| match flight {
                Flight::Published(m) => OutboundEntry::Published {
                    sid: m.sid,
                    packet_id,
                    publish: m.to_stored(),
                    expires_at_ms: m.expires_at_ms,
                },
                Flight::Released(sid) => OutboundEntry::Released {
                    sid: *sid,
                    packet_id,
                },
            });
        let queued = self.queue.iter().map(|m| OutboundEntry::Queued {
            sid: m.sid,
            publish: m.to_stored(),
            expires_at_ms: m.expires_at_ms,
        });
        inflight.chain(queued).collect()
    }

    /// The state [`Outbound::entries`] listed, rebuilt under `config`:
    /// inflight entries keep their packet ids and are re-sent in the order
    /// given, queued ones are queued in the order given (not bounded by
    /// `max_queued` or `max_bytes`: what was kept stays kept). Receive
    /// Maximum is 65535 until set. The next new packet id is the one after
    /// the largest inflight id (the allocator's position is not kept; any
    /// free id is as valid). An entry never held (QoS 0, packet id 0) is
    /// skipped; a packet id given twice keeps its last entry.
    pub fn restore(
        config: OutboundConfig,
        entries: impl IntoIterator<Item = OutboundEntry>,
    ) -> Outbound {
        let mut o = Outbound::new(config);
        let mut max_id = 0;
        for entry in entries {
            let (packet_id, flight) = match entry {
                OutboundEntry::Published {
                    sid,
                    packet_id,
                    publish,
                    expires_at_ms,
                } if publish.qos != QoS::AtMostOnce && packet_id != 0 => {
                    o.next_sid = o.next_sid.max(sid.saturating_add(1));
                    let m = Message::new(sid, publish, expires_at_ms);
                    o.stored_bytes += m.size();
                    (packet_id, Flight::Published(m))
                }
                OutboundEntry::Released { sid, packet_id } if packet_id != 0 => {
                    o.next_sid = o.next_sid.max(sid.saturating_add(1));
                    (packet_id, Flight::Released(sid))
                }
                OutboundEntry::Queued {
                    sid,
                    publish,
                    expires_at_ms,
                } if publish.qos != QoS::AtMostOnce => {
                    o.next_sid = o.next_sid.max(sid.saturating_add(1));
                    let m = Message::new(sid, publish, expires_at_ms);
                    o.stored_bytes += m.size();
                    if let Some(deadline) = expires_at_ms {
                        o.earliest_expiry_ms =
                            Some(o.earliest_expiry_ms.map_or(deadline, |e| e.min(deadline)));
                    }
                    o.queue.push_back(m);
                    continue;
                }
                // Never held: QoS 0, packet id 0 (MQTT-2.2.1-3).
                OutboundEntry::Published { .. }
                | OutboundEntry::Released { .. }
                | OutboundEntry::Queued { .. } => continue,
            };
            let seq = o.next_seq;
            o.next_seq += 1;
            max_id = max_id.max(packet_id);
            if let Some(Inflight {
                flight: Flight::Published(old),
                ..
            }) = o.inflight.insert(packet_id, Inflight { seq, flight })
            {
                o.stored_bytes -= old.size();
            }
        }
        o.next_id = if max_id == u16::MAX { 1 } else { max_id + 1 };
        o
    }
}

fn pubrel(packet_id: u16, code: ReasonCode) -> PubRel {
    PubRel {
        packet_id,
        code,
        properties: Properties::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish(qos: QoS, payload: &'static str) -> Publish {
        Publish {
            dup: false,
            qos,
            retain: false,
            topic: Bytes::from_static(b"t"),
            packet_id: 0,
            properties: Properties::default().into(),
            payload: Bytes::from_static(payload.as_bytes()),
        }
    }

    fn outbound(max_queued: usize, receive_maximum: u16) -> Outbound {
        let mut o = Outbound::new(OutboundConfig {
            max_queued,
            ..OutboundConfig::default()
        });
        o.set_receive_maximum(receive_maximum);
        o
    }

    fn sent(offer: Offer) -> Publish {
        match offer {
            Offer::Send(p) => p,
            other => panic!("expected Send, got {other:?}"),
        }
    }

    fn payloads(out: &[Publish]) -> Vec<&[u8]> {
        out.iter().map(|p| &p.payload[..]).collect()
    }

    #[test]
    fn qos0_sent_as_is_when_connected_and_dropped_offline() {
        let mut o = outbound(10, 1);
        let mut p = publish(QoS::AtMostOnce, "a");
        p.dup = true; // MQTT-3.3.1-3: not propagated.
        p.packet_id = 7;
        let s = sent(o.offer(p, None, 0, true));
        assert_eq!((s.dup, s.packet_id, &s.payload[..]), (false, 0, &b"a"[..]));
        assert_eq!(o.inflight_len(), 0);
        // QoS 0 is not flow controlled: sent even with the window full.
        sent(o.offer(publish(QoS::AtLeastOnce, "b"), None, 0, true));
        sent(o.offer(publish(QoS::AtMostOnce, "c"), None, 0, true));
        assert_eq!(
            o.offer(publish(QoS::AtMostOnce, "d"), None, 0, false),
            Offer::Dropped(DropReason::QoS0Offline)
        );
        assert_eq!(o.dropped_qos0_offline(), 1);
        assert_eq!(o.queued_len(), 0);
    }

    #[test]
    fn qos1_gets_fresh_ids_and_puback_frees_them() {
        let mut o = outbound(10, 10);
        let a = sent(o.offer(publish(QoS::AtLeastOnce, "a"), None, 0, true));
        let b = sent(o.offer(publish(QoS::AtLeastOnce, "b"), None, 0, true));
        assert_eq!((a.packet_id, b.packet_id), (1, 2));
        assert!(!a.dup);
        assert_eq!(o.inflight_len(), 2);
        let mut out = Vec::new();
        assert_eq!(o.handle_puback(1, 0, &mut out), Ok(()));
        assert_eq!(
            o.handle_puback(1, 0, &mut out),
            Err(QosError::UnknownPacketId(1))
        );
        assert!(out.is_empty());
        assert_eq!(o.inflight_len(), 1);
    }

    #[test]
    fn window_full_queues_and_ack_releases_in_order() {
        let mut o = outbound(10, 2);
        sent(o.offer(publish(QoS::AtLeastOnce, "a"), None, 0, true));
        sent(o.offer(publish(QoS::ExactlyOnce, "b"), None, 0, true));
        assert_eq!(
            o.offer(publish(QoS::AtLeastOnce, "c"), None, 0, true),
            Offer::Queued
        );
        assert_eq!(
            o.offer(publish(QoS::ExactlyOnce, "d"), None, 0, true),
            Offer::Queued
        );
        let mut out = Vec::new();
        o.handle_puback(1, 0, &mut out).unwrap();
        assert_eq!(payloads(&out), [b"c"]);
        assert_eq!(out[0].packet_id, 3);
        out.clear();
        // PUBREC success keeps the QoS 2 message counted until PUBCOMP.
        let rel = o.handle_pubrec(2, ReasonCode::SUCCESS, 0, &mut out);
        assert_eq!(rel, Some(pubrel(2, ReasonCode::SUCCESS)));
        assert!(out.is_empty());
        o.handle_pubcomp(2, 0, &mut out).unwrap();
        assert_eq!(payloads(&out), [b"d"]);
        assert_eq!(o.queued_len(), 0);
        assert_eq!(o.inflight_len(), 2);
    }

    #[test]
    fn ids_wrap_and_skip_those_in_use() {
        let mut o = outbound(10, 10);
        let a = sent(o.offer(publish(QoS::AtLeastOnce, "a"), None, 0, true));
        assert_eq!(a.packet_id, 1);
        o.next_id = u16::MAX;
        let b = sent(o.offer(publish(QoS::AtLeastOnce, "b"), None, 0, true));
        let c = sent(o.offer(publish(QoS::AtLeastOnce, "c"), None, 0, true));
        assert_eq!((b.packet_id, c.packet_id), (u16::MAX, 2));
    }

    #[test]
    fn qos2_flow_and_mismatched_acks() {
        let mut o = outbound(10, 10);
        let mut out = Vec::new();
        let q1 = sent(o.offer(publish(QoS::AtLeastOnce, "a"), None, 0, true));
        let q2 = sent(o.offer(publish(QoS::ExactlyOnce, "b"), None, 0, true));
        assert_eq!(
            o.handle_puback(q2.packet_id, 0, &mut out),
            Err(QosError::UnexpectedAck {
                packet_id: q2.packet_id,
                ack: PacketType::PubAck
            })
        );
        assert_eq!(
            o.handle_pubcomp(q2.packet_id, 0, &mut out),
            Err(QosError::UnexpectedAck {
                packet_id: q2.packet_id,
                ack: PacketType::PubComp
            })
        );
        // PUBREC for a QoS 1 id or an unknown id: 0x92.
        let nf = Some(pubrel(
            q1.packet_id,
            ReasonCode::PACKET_IDENTIFIER_NOT_FOUND,
        ));
        assert_eq!(
            o.handle_pubrec(q1.packet_id, ReasonCode::SUCCESS, 0, &mut out),
            nf
        );
        assert_eq!(
            o.handle_pubrec(99, ReasonCode::SUCCESS, 0, &mut out),
            Some(pubrel(99, ReasonCode::PACKET_IDENTIFIER_NOT_FOUND))
        );
        assert_eq!(o.handle_pubrec(99, ReasonCode(0x80), 0, &mut out), None);
        let ok = Some(pubrel(q2.packet_id, ReasonCode::SUCCESS));
        assert_eq!(
            o.handle_pubrec(q2.packet_id, ReasonCode::SUCCESS, 0, &mut out),
            ok
        );
        // A repeated PUBREC gets the PUBREL again.
        assert_eq!(
            o.handle_pubrec(q2.packet_id, ReasonCode::SUCCESS, 0, &mut out),
            ok
        );
        assert_eq!(o.inflight_len(), 2);
        o.handle_pubcomp(q2.packet_id, 0, &mut out).unwrap();
        assert_eq!(
            o.handle_pubcomp(q2.packet_id, 0, &mut out),
            Err(QosError::UnknownPacketId(q2.packet_id))
        );
        assert_eq!(o.inflight_len(), 1);
        assert!(out.is_empty());
    }

    #[test]
    fn error_pubrec_ends_the_flow_and_drains() {
        let mut o = outbound(10, 1);
        let a = sent(o.offer(publish(QoS::ExactlyOnce, "a"), None, 0, true));
        assert_eq!(
            o.offer(publish(QoS::ExactlyOnce, "b"), None, 0, true),
            Offer::Queued
        );
        let mut out = Vec::new();
        assert_eq!(
            o.handle_pubrec(a.packet_id, ReasonCode::QUOTA_EXCEEDED, 0, &mut out),
            None
        );
        assert_eq!(payloads(&out), [b"b"]);
        assert_eq!(o.inflight_len(), 1);
        // The id is free: the flow is over.
        assert_eq!(
            o.handle_pubcomp(a.packet_id, 0, &mut out),
            Err(QosError::UnknownPacketId(a.packet_id))
        );
    }

    #[test]
    fn offline_messages_queue_and_resume_sends_everything_in_order() {
        let mut o = outbound(10, 10);
        let a = sent(o.offer(publish(QoS::AtLeastOnce, "a"), None, 0, true));
        let b = sent(o.offer(publish(QoS::ExactlyOnce, "b"), None, 0, true));
        let c = sent(o.offer(publish(QoS::ExactlyOnce, "c"), None, 0, true));
        let d = sent(o.offer(publish(QoS::ExactlyOnce, "d"), None, 0, true));
        let mut out = Vec::new();
        // PUBRECs out of send order: d then b.
        o.handle_pubrec(d.packet_id, ReasonCode::SUCCESS, 0, &mut out);
        o.handle_pubrec(b.packet_id, ReasonCode::SUCCESS, 0, &mut out);
        // Disconnect; more arrives.
        assert_eq!(
            o.offer(publish(QoS::AtLeastOnce, "e"), None, 0, false),
            Offer::Queued
        );
        assert_eq!(
            o.offer(publish(QoS::ExactlyOnce, "f"), None, 0, false),
            Offer::Queued
        );
        // Reconnect with a window of 5: 4 inflight, room for one more.
        o.set_receive_maximum(5);
        let mut packets = Vec::new();
        o.resume(0, &mut packets);
        let summary: Vec<(&str, u16, bool)> = packets
            .iter()
            .map(|p| match p {
                Packet::Publish(p) => ("publish", p.packet_id, p.dup),
                Packet::PubRel(r) => ("pubrel", r.packet_id, false),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("publish", a.packet_id, true),
                ("publish", c.packet_id, true),
                ("pubrel", d.packet_id, false),
                ("pubrel", b.packet_id, false),
                ("publish", 5, false),
            ]
        );
        match &packets[4] {
            Packet::Publish(p) => assert_eq!(&p.payload[..], b"e"),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!((o.inflight_len(), o.queued_len()), (5, 1));
    }

    #[test]
    fn queue_bound_and_expiry_purge_on_full() {
        let mut o = outbound(2, 10);
        assert_eq!(
            o.offer(publish(QoS::AtLeastOnce, "a"), Some(1_000), 0, false),
            Offer::Queued
        );
        assert_eq!(
            o.offer(publish(QoS::AtLeastOnce, "b"), None, 0, false),
            Offer::Queued
        );
        assert_eq!(
            o.offer(publish(QoS::AtLeastOnce, "c"), None, 500, false),
            Offer::Dropped(DropReason::QueueFull)
        );
        assert_eq!(o.dropped_full(), 1);
        // "a" has expired by now; its place is taken.
        assert_eq!(
            o.offer(publish(QoS::AtLeastOnce, "d"), None, 1_001, false),
            Offer::Queued
        );
        assert_eq!(o.dropped_expired(), 1);
        assert_eq!(o.queued_len(), 2);
        let mut packets = Vec::new();
        o.resume(1_001, &mut packets);
        let got: Vec<&[u8]> = packets
            .iter()
            .map(|p| match p {
                Packet::Publish(p) => &p.payload[..],
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(got, [b"b", b"d"]);
    }

    #[test]
    fn expired_at_offer_is_dropped() {
        let mut o = outbound(2, 10);
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce] {
            assert_eq!(
                o.offer(publish(qos, "a"), Some(99), 100, true),
                Offer::Dropped(DropReason::Expired)
            );
        }
        assert_eq!(o.dropped_expired(), 2);
        // A deadline equal to now (interval 0) is still delivered.
        let p = sent(o.offer(publish(QoS::AtLeastOnce, "b"), Some(100), 100, true));
        assert_eq!(p.properties.message_expiry_interval, Some(0));
    }

    #[test]
    fn resume_drops_expired_queued_and_resends_expired_inflight() {
        let mut o = outbound(10, 1);
        let a = sent(o.offer(publish(QoS::AtLeastOnce, "a"), Some(10_000), 0, true));
        assert_eq!(a.properties.message_expiry_interval, Some(10));
        o.offer(publish(QoS::AtLeastOnce, "b"), Some(5_000), 0, false);
        o.offer(publish(QoS::AtLeastOnce, "c"), Some(60_000), 0, false);
        let mut packets = Vec::new();
        // After 20 s: "a" was sent, so it is re-sent; "b" expired; "c"
        // waits (window of 1).
        o.resume(20_000, &mut packets);
        assert_eq!(packets.len(), 1);
        match &packets[0] {
            Packet::Publish(p) => {
                assert_eq!((&p.payload[..], p.dup), (&b"a"[..], true));
                assert_eq!(p.properties.message_expiry_interval, Some(0));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(o.dropped_expired(), 0);
        let mut out = Vec::new();
        o.handle_puback(a.packet_id, 20_001, &mut out).unwrap();
        assert_eq!(payloads(&out), [b"c"]);
        // 39 999 ms left: rounded up to 40 s.
        assert_eq!(out[0].properties.message_expiry_interval, Some(40));
        assert_eq!(o.dropped_expired(), 1);
    }

    #[test]
    fn properties_survive_and_expiry_is_rewritten() {
        let mut o = outbound(10, 1);
        let mut p = publish(QoS::AtLeastOnce, "a");
        p.properties.content_type = Some(Bytes::from_static(b"text/plain"));
        p.properties.message_expiry_interval = Some(30);
        p.retain = true;
        o.offer(p, Some(30_000), 0, false);
        let mut packets = Vec::new();
        o.resume(1_500, &mut packets);
        match &packets[..] {
            [Packet::Publish(p)] => {
                assert!(p.retain);
                assert_eq!(p.qos, QoS::AtLeastOnce);
                assert_eq!(
                    p.properties.content_type.as_deref(),
                    Some(&b"text/plain"[..])
                );
                assert_eq!(p.properties.message_expiry_interval, Some(29));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn nothing_overtakes_the_queue() {
        let mut o = outbound(10, 1);
        o.offer(publish(QoS::AtLeastOnce, "a"), None, 0, false);
        // Connected again but resume not called yet: "b" must wait behind "a".
        o.set_receive_maximum(10);
        assert_eq!(
            o.offer(publish(QoS::AtLeastOnce, "b"), None, 0, true),
            Offer::Queued
        );
        let mut packets = Vec::new();
        o.resume(0, &mut packets);
        assert_eq!(packets.len(), 2);
        assert!(matches!(&packets[0], Packet::Publish(p) if &p.payload[..] == b"a"));
        assert!(matches!(&packets[1], Packet::Publish(p) if &p.payload[..] == b"b"));
    }

    #[test]
    fn receive_maximum_zero_is_one() {
        let mut o = outbound(10, 0);
        assert_eq!(o.receive_maximum(), 1);
        sent(o.offer(publish(QoS::AtLeastOnce, "a"), None, 0, true));
        assert_eq!(
            o.offer(publish(QoS::AtLeastOnce, "b"), None, 0, true),
            Offer::Queued
        );
    }

    #[test]
    fn clear_forgets_messages_not_counters() {
        let mut o = outbound(1, 1);
        sent(o.offer(publish(QoS::AtLeastOnce, "a"), None, 0, true));
        o.offer(publish(QoS::AtLeastOnce, "b"), None, 0, true);
        o.offer(publish(QoS::AtLeastOnce, "c"), None, 0, true);
        assert_eq!(o.dropped_full(), 1);
        o.clear();
        assert_eq!(
            (o.inflight_len(), o.queued_len(), o.dropped_full()),
            (0, 0, 1)
        );
        let mut packets = Vec::new();
        o.resume(0, &mut packets);
        assert!(packets.is_empty());
        let a = sent(o.offer(publish(QoS::AtLeastOnce, "d"), None, 0, true));
        assert_eq!(a.packet_id, 1);
    }

    #[test]
    fn entries_restore_to_the_same_state() {
        let mut o = outbound(10, 3);
        let a = sent(o.offer(publish(QoS::AtLeastOnce, "a"), None, 0, true));
        let b = sent(o.offer(publish(QoS::ExactlyOnce, "b"), Some(9_000), 0, true));
        sent(o.offer(publish(QoS::ExactlyOnce, "c"), None, 0, true));
        o.offer(publish(QoS::AtLeastOnce, "d"), Some(5_000), 0, true);
        let mut out = Vec::new();
        o.handle_pubrec(b.packet_id, ReasonCode::SUCCESS, 0, &mut out);
        o.handle_puback(a.packet_id, 0, &mut out).unwrap();
        assert_eq!(payloads(&out), [b"d"]);
        o.offer(publish(QoS::ExactlyOnce, "e"), Some(7_000), 0, false);
        let entries = o.entries();
        // In flight by seq (c, then b at its PUBREC, then d), then the queue.
        assert!(matches!(
            &entries[0],
            OutboundEntry::Published { packet_id: 3, .. }
        ));
        // b was the second message taken in: store id 1.
        assert_eq!(
            entries[1],
            OutboundEntry::Released {
                sid: 1,
                packet_id: 2
            }
        );
        assert!(matches!(
            &entries[2],
            OutboundEntry::Published { packet_id: 4, .. }
        ));
        assert!(matches!(
            &entries[3],
            OutboundEntry::Queued {
                expires_at_ms: Some(7_000),
                ..
            }
        ));
        let mut r = Outbound::restore(o.config, entries.clone());
        assert_eq!(r.entries(), entries);
        assert_eq!(r.stored_bytes(), o.stored_bytes());
        assert_eq!(r.earliest_expiry_ms, o.earliest_expiry_ms);
        assert_eq!((r.inflight_len(), r.queued_len()), (3, 1));
        // The window is the next connection's to set.
        assert_eq!(r.receive_maximum(), u16::MAX);
        r.set_receive_maximum(3);
        let (mut want, mut got) = (Vec::new(), Vec::new());
        o.resume(0, &mut want);
        r.resume(0, &mut got);
        assert_eq!(got, want);
        // Entries never held are skipped.
        let r = Outbound::restore(
            o.config,
            [
                OutboundEntry::Released {
                    sid: 0,
                    packet_id: 0,
                },
                OutboundEntry::Queued {
                    sid: 1,
                    publish: publish(QoS::AtMostOnce, "z"),
                    expires_at_ms: None,
                },
            ],
        );
        assert_eq!((r.inflight_len(), r.queued_len()), (0, 0));
    }

    #[test]
    fn error_display() {
        assert_eq!(
            QosError::UnknownPacketId(7).to_string(),
            "no message inflight with packet identifier 7"
        );
        assert_eq!(
            QosError::UnexpectedAck {
                packet_id: 3,
                ack: PacketType::PubAck
            }
            .to_string(),
            "PubAck for packet identifier 3 does not match the state of its flow"
        );
    }
}
