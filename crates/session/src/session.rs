//! One client's whole MQTT state, as a sans-IO state machine.
//!
//! A [`Session`] owns everything about one client id: its subscriptions,
//! its QoS 1/2 state both ways, and while a connection is attached, that
//! connection's keep-alive, topic aliases both ways and the peer's limits
//! (Maximum Packet Size, Receive Maximum, Topic Alias Maximum). It also
//! holds the will and its delay, and the session expiry.
//!
//! Inputs are plain calls that take a [`Tick`]: [`Session::connect`],
//! [`Session::handle_packet`], [`Session::deliver`],
//! [`Session::handle_timer`], [`Session::connection_lost`] and
//! [`Session::taken_over`]. Each writes what must happen into an
//! [`Outbox`]; the shard applies it. Nothing here reads a clock or a
//! socket, and nothing here decides where a message goes (that is
//! ringmq-route's job).
//!
//! Invariants:
//! - At most one connection is attached; `link` is `Some` exactly between
//!   `connect` and `connection_lost` / `taken_over`.
//! - After a `Close` is queued, further packets of that connection are
//!   ignored (the rest of a read batch cannot act on a dying connection).
//! - Every PUBLISH queued for sending fits the client's Maximum Packet
//!   Size (MQTT-3.1.2-25): QoS 0 here, QoS 1/2 in [`Outbound`].
//! - Everything kept beyond one call is copied out of the read buffer it
//!   arrived in: a session must not pin a shard's read arena.

use bytes::Bytes;
use hashbrown::HashMap;
use ringmq_codec::{
    ConnAck, Connect, Disconnect, Packet, Properties, ProtocolVersion, PubAck, PubRec, Publish,
    QoS, ReasonCode, SubAck, Subscribe, SubscriptionOptions, UnsubAck, Unsubscribe, Will,
};

use ringmq_auth::acl::{Access, SubscribeGrant};

use crate::aliases::{InAliases, OutAliases};
use crate::outbox::{Action, Outbox, Timer};
use crate::rights::Rights;
use crate::{
    exceeds_levels, keepalive_timeout_ms, will_due_on_close, CloseCause, DropReason, Inbound,
    InboundAction, Limit, Negotiated, Offer, Outbound, OutboundConfig, ServerPolicy, Tick,
    Violation,
};

/// One granted subscription.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subscription {
    /// The options granted (QoS already capped).
    pub options: SubscriptionOptions,
    /// v5 Subscription Identifier (0 = none).
    pub id: u32,
}

/// How one message reaches this session, as routing decided it.
#[derive(Clone, Copy, Debug)]
pub struct Delivery<'a> {
    /// Delivery QoS: min(message QoS, granted QoS).
    pub qos: QoS,
    /// The RETAIN flag to send (Retain As Published, or 1 for a retained
    /// message sent because of a new subscription).
    pub retain: bool,
    /// Subscription Identifiers of the matching subscriptions (v5 only).
    pub ids: &'a [u32],
    /// When the message expires (v5 Message Expiry Interval).
    pub expires_at: Option<Tick>,
}

/// A session's QoS 1/2 flows, created on first use: most device sessions
/// never use QoS 1/2, and an idle session should stay small.
#[derive(Debug)]
struct QosState {
    /// Deliveries to the client: inflight window and queue.
    outbound: Outbound,
    /// QoS 2 messages from the client awaiting PUBREL.
    inbound: Inbound,
}

/// What belongs to the attached network connection only.
#[derive(Debug)]
struct Link {
    /// Keep-alive timeout in milliseconds (0 = none).
    keepalive_ms: u64,
    /// When the client last sent a whole packet (stamped, rounded up).
    last_rx: Tick,
    /// The client's Maximum Packet Size (what the server may send it).
    max_packet_size: u32,
    /// The client's Receive Maximum (its inbound QoS 1/2 window).
    receive_maximum: u16,
    in_aliases: InAliases,
    out_aliases: Option<Box<OutAliases>>,
    /// A `Close` is queued: ignore the rest of this connection's input.
    closing: bool,
}

/// Filter (as the client wrote it) -> grant, allocated on the first
/// SUBSCRIBE: a session with none (a publishing device) pays one pointer.
#[derive(Debug, Default)]
struct Subscriptions(Option<Box<HashMap<Bytes, Subscription>>>);

impl Subscriptions {
    fn iter(&self) -> impl Iterator<Item = (&Bytes, &Subscription)> {
        self.0.iter().flat_map(|m| m.iter())
    }

    fn get(&self, filter: &[u8]) -> Option<&Subscription> {
        self.0.as_ref()?.get(filter)
    }

    fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |m| m.len())
    }

    fn insert(&mut self, filter: Bytes, grant: Subscription) -> Option<Subscription> {
        self.0
            .get_or_insert_with(Default::default)
            .insert(filter, grant)
    }

    fn remove_entry(&mut self, filter: &[u8]) -> Option<(Bytes, Subscription)> {
        let map = self.0.as_mut()?;
        let removed = map.remove_entry(filter);
        if map.is_empty() {
            self.0 = None;
        }
        removed
    }

    fn drain(&mut self) -> impl Iterator<Item = (Bytes, Subscription)> {
        self.0.take().into_iter().flat_map(|m| m.into_iter())
    }
}

/// The server-side state of one client id.
#[derive(Debug)]
pub struct Session {
    client_id: Bytes,
    protocol: ProtocolVersion,
    /// Filter (as the client wrote it, `$share/...` included) -> grant.
    subscriptions: Subscriptions,
    /// The will of the current (or last) connection (boxed: a `Will`
    /// with its v5 properties is ~450 bytes and most sessions have none).
    will: Option<Box<Will>>,
    /// Will Delay Interval of `will`, seconds.
    will_delay_secs: u32,
    /// `will` is due and waits for its delay (the WillDelay timer) until
    /// this tick.
    will_pending: Option<Tick>,
    /// Seconds the session outlives its connection (`u32::MAX` = forever).
    session_expiry_secs: u32,
    qos: Option<Box<QosState>>,
    link: Option<Link>,
    /// Has been connected before (a CONNECT with clean start 0 resumes it).
    resumable: bool,
    /// Username and cached ACL decisions, when the policy needs them
    /// ([`ServerPolicy::keeps_identity`]).
    rights: Option<Box<Rights>>,
    /// Persistent under a policy with persistence on: every change is
    /// queued as a store step in the outbox (see `journal`).
    journal: bool,
    /// When the last connection ended (meaningful while detached).
    left_at: Tick,
}

impl Session {
    /// A fresh session with no state; [`Session::connect`] attaches its
    /// first connection.
    pub fn new(client_id: Bytes, protocol: ProtocolVersion) -> Self {
        Self {
            client_id,
            protocol,
            subscriptions: Subscriptions::default(),
            will: None,
            will_delay_secs: 0,
            will_pending: None,
            session_expiry_secs: 0,
            qos: None,
            link: None,
            resumable: false,
            rights: None,
            journal: false,
            left_at: Tick(0),
        }
    }

    /// Whether the session journals its changes ([`crate::Step`]).
    pub fn journals(&self) -> bool {
        self.journal
    }

    /// When its last connection ended (the tick given to
    /// `connection_lost`; for a session restored from the store, when
    /// it left then).
    pub fn left_at(&self) -> Tick {
        self.left_at
    }

    /// Queues a store step, if this session journals.
    fn store(&self, step: crate::Step, out: &mut Outbox) {
        if self.journal {
            out.store(step);
        }
    }

    /// The username this session was last connected with, when the policy
    /// keeps it (`None` also for an anonymous client).
    pub fn username(&self) -> Option<&Bytes> {
        self.rights.as_ref().and_then(|r| r.username())
    }

    /// `--takeover-same-user-only`: may a client named `username` (None:
    /// anonymous) take this session over or resume it? A session made
    /// while its identity was not kept (the flag turned on by a SIGHUP
    /// since) has no known owner and may be taken by anyone.
    pub fn may_take_over(&self, username: Option<&[u8]>, policy: &ServerPolicy) -> bool {
        if !policy.takeover_same_user_only {
            return true;
        }
        match self.rights.as_deref() {
            Some(rights) => rights.username().map(|u| u.as_ref()) == username,
            None => true,
        }
    }

    /// The client identifier.
    pub fn client_id(&self) -> &Bytes {
        &self.client_id
    }

    /// The protocol of the connection that last owned the session.
    pub fn protocol(&self) -> ProtocolVersion {
        self.protocol
    }

    /// Whether a connection is attached.
    pub fn is_connected(&self) -> bool {
        self.link.is_some()
    }

    /// Seconds the session outlives its connection.
    pub fn session_expiry_secs(&self) -> u32 {
        self.session_expiry_secs
    }

    /// The session's subscriptions.
    pub fn subscriptions(&self) -> impl Iterator<Item = (&Bytes, &Subscription)> {
        self.subscriptions.iter()
    }

    /// The grant of one subscription.
    pub fn subscription(&self, filter: &[u8]) -> Option<Subscription> {
        self.subscriptions.get(filter).copied()
    }

    /// QoS 1/2 messages inflight towards the client and queued for it.
    pub fn outbound_len(&self) -> (usize, usize) {
        self.qos.as_ref().map_or((0, 0), |q| {
            (q.outbound.inflight_len(), q.outbound.queued_len())
        })
    }

    /// When the attached connection's keep-alive runs out if it stays
    /// silent (last packet + 1.5 x keep-alive, as --keepalive-backoff
    /// sets it); `None` without a connection or keep-alive.
    pub fn keepalive_deadline(&self) -> Option<Tick> {
        let link = self.link.as_ref()?;
        (link.keepalive_ms > 0).then(|| link.last_rx.add_ms(link.keepalive_ms))
    }

    /// Whether a will is held (for the current connection, or waiting for
    /// its delay).
    pub fn has_will(&self) -> bool {
        self.will.is_some()
    }

    /// A CONNECT for this session, already negotiated (see
    /// [`crate::negotiate`]); any previous connection has been detached
    /// ([`Session::taken_over`]). Clean start discards the old state
    /// (routes dropped, a pending will published: the session ends);
    /// otherwise a pending will is cancelled by the reconnection. Queues
    /// CONNACK, then the re-sends (DUP publishes, PUBRELs, the queue), and
    /// arms keep-alive. `assigned_id`: the identifier the server picked
    /// for an empty one (v5 Assigned Client Identifier).
    pub fn connect(
        &mut self,
        connect: &Connect,
        negotiated: &Negotiated,
        policy: &ServerPolicy,
        assigned_id: Option<&Bytes>,
        now: Tick,
        out: &mut Outbox,
    ) {
        debug_assert!(self.link.is_none(), "connect with a connection attached");
        let version = connect.protocol;
        let v5 = version == ProtocolVersion::V5;
        let present = self.resumable && !connect.clean_start;
        let was_journaled = self.journal;
        if let Some(due) = self.will_pending.take() {
            // A reconnection within the delay cancels a delayed will,
            // unless it ends the session, which sends the will now
            // (3.1.2.5: "when the delay passes or the session ends"). One
            // after the delay (its timer still waiting for the shard's
            // --will-rate) does not: the will was due (MQTT-3.1.2-8).
            out.push(Action::CancelTimer(Timer::WillDelay));
            if let Some(will) = self.will.take() {
                if connect.clean_start || now >= due {
                    out.push(Action::PublishWill(will));
                }
            }
        }
        out.push(Action::CancelTimer(Timer::SessionExpiry));
        if connect.clean_start {
            self.clear(out);
        }
        // The identity is this connection's; what it may do is decided
        // again (a resumed session may come back under another name).
        self.rights = policy.keeps_identity().then(|| {
            let username = connect.username.as_ref().map(owned);
            Box::new(Rights::new(username))
        });
        self.reauthorize_subscriptions(policy, out);
        self.protocol = version;
        self.resumable = true;
        self.will = connect.will.as_ref().map(owned_will);
        self.will_delay_secs = negotiated.will_delay_secs;
        self.session_expiry_secs = negotiated.session_expiry_secs;
        self.journal = policy.persistence && self.session_expiry_secs > 0;
        if self.journal {
            // Recorded before the CONNACK that grants it goes out.
            let step = if present && was_journaled {
                crate::Step::Header
            } else {
                crate::Step::Fresh
            };
            out.store(step);
        } else if was_journaled {
            // A stored session continued without expiry: it ends with
            // this connection, and a crash must not bring it back.
            out.store(crate::Step::Gone);
        }
        if let Some(qos) = self.qos.as_deref_mut() {
            qos.outbound.set_journal(self.journal);
        }

        // Our window towards the client: its Receive Maximum (none for v3),
        // capped by --max-inflight-out.
        let receive_maximum = connect
            .properties
            .receive_maximum
            .unwrap_or(u16::MAX)
            .min(policy.max_inflight_out);
        let keepalive_ms =
            keepalive_timeout_ms(negotiated.keep_alive_secs, policy.keepalive_backoff).unwrap_or(0);
        self.link = Some(Link {
            keepalive_ms,
            last_rx: now,
            max_packet_size: negotiated.client_max_packet_size,
            receive_maximum,
            in_aliases: InAliases::default(),
            out_aliases: if v5 {
                OutAliases::new(
                    connect
                        .properties
                        .topic_alias_maximum
                        .unwrap_or(0)
                        .min(policy.max_topic_aliases_out),
                    policy.max_topic_alias_bytes,
                )
            } else {
                None
            },
            closing: false,
        });

        let mut properties = negotiated.connack_properties.clone();
        if v5 {
            properties.assigned_client_identifier = assigned_id.cloned();
        }
        out.send(Packet::ConnAck(ConnAck {
            session_present: present,
            code: ReasonCode::SUCCESS,
            properties,
        }));
        if let Some(qos) = self.qos.as_deref_mut() {
            qos.outbound.set_receive_maximum(receive_maximum);
            // The window we hold the client to follows the protocol it
            // connects with now (a v3 client is told no Receive Maximum).
            qos.inbound
                .set_receive_maximum(if v5 { policy.receive_maximum } else { u16::MAX });
            qos.outbound
                .set_max_packet_size(negotiated.client_max_packet_size, version);
            let mut resend = Vec::new();
            let before = qos.outbound.dropped_total();
            qos.outbound.resume(now.0, &mut resend);
            // Expired queued messages, and queued or inflight ones larger
            // than this connection's Maximum Packet Size.
            out.drop_many(qos.outbound.dropped_total() - before);
            journal_outbound(qos, out);
            for packet in resend {
                match packet {
                    Packet::Publish(p) => self.send_publish(p, out),
                    other => out.send(other),
                }
            }
        }
        if keepalive_ms > 0 {
            out.push(Action::ArmTimer(Timer::KeepAlive, now.add_ms(keepalive_ms)));
        }
    }

    /// One packet from the attached client after CONNECT, stamped `now`.
    pub fn handle_packet(
        &mut self,
        packet: Packet,
        policy: &ServerPolicy,
        now: Tick,
        out: &mut Outbox,
    ) {
        let Some(link) = self.link.as_mut() else {
            return;
        };
        if link.closing {
            return;
        }
        // Only what the client sends keeps it alive (3.1.2.10).
        link.last_rx = now;
        let result = match packet {
            Packet::PingReq => {
                out.send(Packet::PingResp);
                Ok(())
            }
            Packet::Publish(publish) => self.client_publish(publish, policy, out),
            Packet::PubAck(ack) => {
                self.outbound_ack(now, out, |o, now, next| {
                    let _ = o.handle_puback(ack.packet_id, now, next);
                    None
                });
                Ok(())
            }
            Packet::PubRec(rec) => {
                self.outbound_ack(now, out, |o, now, next| {
                    o.handle_pubrec(rec.packet_id, rec.code, now, next)
                        .map(Packet::PubRel)
                });
                Ok(())
            }
            Packet::PubComp(comp) => {
                self.outbound_ack(now, out, |o, now, next| {
                    let _ = o.handle_pubcomp(comp.packet_id, now, next);
                    None
                });
                Ok(())
            }
            Packet::PubRel(rel) => {
                let comp = self.qos_state(policy).inbound.handle_pubrel(rel.packet_id);
                self.store(
                    crate::Step::InboundDone {
                        packet_id: rel.packet_id,
                    },
                    out,
                );
                out.send(Packet::PubComp(comp));
                Ok(())
            }
            Packet::Subscribe(subscribe) => self.subscribe(&subscribe, policy, out),
            Packet::Unsubscribe(unsubscribe) => self.unsubscribe(&unsubscribe, out),
            Packet::Disconnect(disconnect) => self.client_disconnect(&disconnect, policy, out),
            Packet::Connect(_) => Err(Violation::SecondConnect),
            Packet::Auth(_) => Err(Violation::AuthWithoutMethod),
            Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp => {
                Err(Violation::ServerPacketFromClient)
            }
        };
        if let Err(violation) = result {
            self.violation(violation, out);
        }
    }

    /// A message routed to this session. QoS 0 goes straight to the
    /// connection (dropped while offline); QoS 1/2 through the inflight
    /// window and the bounded queue.
    pub fn deliver(
        &mut self,
        message: &Publish,
        delivery: Delivery<'_>,
        policy: &ServerPolicy,
        now: Tick,
        out: &mut Outbox,
    ) {
        if self.rights.as_ref().is_some_and(|r| r.checks_reads())
            && !self.may_read(&message.topic, policy)
        {
            // A filtered subscription matched a topic a deny rule covers.
            out.push(Action::Denied(Access::Read));
            return;
        }
        let connected = self.link.as_ref().is_some_and(|l| !l.closing);
        let v5 = self.protocol == ProtocolVersion::V5;
        if let Some(link) = self.link.as_ref().filter(|_| connected) {
            // The common case of a fan-out: QoS 0 in and out, nothing about
            // the message changes for this client. It is written as routed,
            // without a copy (not even of its `Bytes` handles).
            let unchanged = delivery.qos == QoS::AtMostOnce
                && message.qos == QoS::AtMostOnce
                && !message.dup
                && message.packet_id == 0
                && delivery.retain == message.retain
                && (delivery.ids.is_empty() || !v5)
                && delivery.expires_at.is_none()
                && link.out_aliases.is_none();
            if unchanged {
                if message.encoded_len(self.protocol) > link.max_packet_size as usize {
                    // MQTT-3.1.2-25: discarded as if delivered.
                    out.drop_one();
                } else {
                    out.push(Action::Forward);
                }
                return;
            }
        }
        let mut publish = message.clone();
        publish.dup = false;
        publish.packet_id = 0;
        publish.qos = delivery.qos;
        publish.retain = delivery.retain;
        if v5 && !delivery.ids.is_empty() {
            // Only written when there is something to write: the block is
            // allocated on first write.
            publish
                .properties
                .subscription_identifiers
                .extend_from_slice(delivery.ids);
        }
        if delivery.qos == QoS::AtMostOnce {
            if !connected {
                out.drop_one();
                return;
            }
            if let Some(deadline) = delivery.expires_at {
                if now > deadline {
                    // MQTT-3.3.2-5, as `Outbound::offer` does for QoS 1/2.
                    out.drop_one();
                    return;
                }
                publish.properties.message_expiry_interval = Some(now.secs_until(deadline));
            }
            self.send_publish(publish, out);
            return;
        }
        let qos = self.qos_state(policy);
        let before = qos.outbound.dropped_total();
        let offer = qos
            .outbound
            .offer(publish, delivery.expires_at.map(|t| t.0), now.0, connected);
        // The offer itself, or expired queued messages purged to make room.
        out.drop_many(qos.outbound.dropped_total() - before);
        journal_outbound(qos, out);
        match offer {
            Offer::Send(p) => self.send_publish(p, out),
            Offer::Dropped(DropReason::QueueFull) => {
                out.push(Action::LimitHit(Limit::QueuedMessages))
            }
            Offer::Dropped(DropReason::QueueBytes) => {
                out.push(Action::LimitHit(Limit::QueuedBytes))
            }
            Offer::Queued | Offer::Dropped(_) => {}
        }
    }

    /// The ACL changed (`policy.acl` is the new one): cached decisions
    /// are forgotten, subscriptions it no longer allows are removed
    /// (`Revoked`), and a will it no longer lets the client publish is
    /// dropped.
    pub fn reauthorize(&mut self, policy: &ServerPolicy, out: &mut Outbox) {
        if let Some(rights) = self.rights.as_deref_mut() {
            rights.reset();
        }
        self.reauthorize_subscriptions(policy, out);
        if let (Some(acl), Some(rights), Some(will)) = (&policy.acl, &self.rights, &self.will) {
            if !acl.check(&rights.who(&self.client_id), Access::Write, &will.topic) {
                self.will = None;
                self.will_pending = None;
                out.push(Action::CancelTimer(Timer::WillDelay));
                self.store(crate::Step::WillGone, out);
            }
        }
    }

    /// Decides every subscription again with fresh rights: the ones
    /// refused are dropped, the filtered ones recorded.
    fn reauthorize_subscriptions(&mut self, policy: &ServerPolicy, out: &mut Outbox) {
        let (Some(acl), Some(rights)) = (&policy.acl, self.rights.as_deref_mut()) else {
            return;
        };
        let mut revoked = Vec::new();
        for (filter, _) in self.subscriptions.iter() {
            match acl.subscribe(&rights.who(&self.client_id), filter) {
                SubscribeGrant::Refused => revoked.push(filter.clone()),
                SubscribeGrant::Filtered => rights.set_filtered(filter, true),
                SubscribeGrant::Granted => {}
            }
        }
        for filter in revoked {
            if let Some((filter, _)) = self.subscriptions.remove_entry(&filter) {
                if self.journal {
                    out.store(crate::Step::Unsubscribed {
                        filter: filter.clone(),
                    });
                }
                out.push(Action::DropRoute { filter });
                out.push(Action::Revoked);
            }
        }
    }

    /// May this session read `topic`? Asked only when a subscription of
    /// it is filtered (a deny rule overlaps it).
    fn may_read(&mut self, topic: &[u8], policy: &ServerPolicy) -> bool {
        match (&policy.acl, self.rights.as_deref_mut()) {
            (Some(acl), Some(rights)) if rights.checks_reads() => {
                rights.allowed(acl, &self.client_id, Access::Read, topic)
            }
            _ => true,
        }
    }

    /// May this session publish to `topic`?
    fn may_write(&mut self, topic: &[u8], policy: &ServerPolicy) -> bool {
        match (&policy.acl, self.rights.as_deref_mut()) {
            (Some(acl), Some(rights)) => rights.allowed(acl, &self.client_id, Access::Write, topic),
            (Some(_), None) => false,
            _ => true,
        }
    }

    /// A timer this session armed has fired at `now`.
    pub fn handle_timer(&mut self, timer: Timer, now: Tick, out: &mut Outbox) {
        match timer {
            Timer::KeepAlive => {
                let Some(link) = self.link.as_mut() else {
                    return;
                };
                if link.keepalive_ms == 0 || link.closing {
                    return;
                }
                let deadline = link.last_rx.add_ms(link.keepalive_ms);
                if deadline > now {
                    // Heard from since it was armed: lazily re-armed.
                    out.push(Action::ArmTimer(Timer::KeepAlive, deadline));
                } else {
                    // 3.1.2.10; v5 may say why first (0x8D).
                    self.close_with(ReasonCode::KEEP_ALIVE_TIMEOUT, None, out);
                    out.push(Action::Close(CloseCause::KeepAliveTimeout));
                }
            }
            Timer::WillDelay => {
                if self.will_pending.take().is_some() {
                    if let Some(will) = self.will.take() {
                        // Recorded first: a restart must not publish it
                        // again.
                        self.store(crate::Step::WillGone, out);
                        out.push(Action::PublishWill(will));
                    }
                }
            }
            Timer::SessionExpiry => {
                if self.link.is_some() {
                    return;
                }
                // The session ends before the will delay: the will goes now.
                if self.will_pending.take().is_some() {
                    out.push(Action::CancelTimer(Timer::WillDelay));
                    if let Some(will) = self.will.take() {
                        out.push(Action::PublishWill(will));
                    }
                }
                self.end(out);
            }
        }
    }

    /// The attached connection has ended for `cause` (the shard calls
    /// this once the socket is closed). Publishes the will if the cause
    /// makes it due (after its delay), then starts the session expiry.
    pub fn connection_lost(&mut self, cause: CloseCause, now: Tick, out: &mut Outbox) {
        if self.link.take().is_none() {
            return;
        }
        self.left_at = now;
        out.push(Action::CancelTimer(Timer::KeepAlive));
        self.store(crate::Step::Left(now), out);
        let had_will = self.will.is_some();
        if will_due_on_close(cause, self.protocol) {
            if self.will.is_some() {
                if self.will_delay_secs == 0 || self.session_expiry_secs == 0 {
                    if let Some(will) = self.will.take() {
                        out.push(Action::PublishWill(will));
                    }
                } else {
                    // When the delay passes or the session ends, whichever
                    // comes first.
                    let secs = self.will_delay_secs.min(self.session_expiry_secs);
                    let due = now.add_secs(u64::from(secs));
                    self.will_pending = Some(due);
                    out.push(Action::ArmTimer(Timer::WillDelay, due));
                }
            }
        } else {
            self.will = None;
        }
        if had_will && self.will.is_none() && self.session_expiry_secs > 0 {
            self.store(crate::Step::WillGone, out);
        }
        match self.session_expiry_secs {
            0 => self.end(out),
            u32::MAX => {}
            secs => out.push(Action::ArmTimer(
                Timer::SessionExpiry,
                now.add_secs(u64::from(secs)),
            )),
        }
    }

    /// Another connection takes this client id over (MQTT-3.1.4-3). The
    /// old connection is told (v5 DISCONNECT 0x8E) and closed. Its will is
    /// due on a v5 take-over; a Will Delay Interval lets the new
    /// connection cancel it, unless `clean_start` (the new CONNECT's) ends
    /// the session, which sends it now. A v3.1.1 will is not published
    /// (3.1.4 does not list take-over among the will triggers).
    pub fn taken_over(&mut self, clean_start: bool, out: &mut Outbox) {
        if self.link.is_none() {
            return;
        }
        self.close_with(ReasonCode::SESSION_TAKEN_OVER, None, out);
        out.push(Action::Close(CloseCause::TakenOver));
        self.link = None;
        out.push(Action::CancelTimer(Timer::KeepAlive));
        // A session with expiry 0 (v3 clean session 1) ends with its
        // connection, so on take-over too (MQTT 5 3.1.4 comment): the new
        // connection gets a fresh one (Session Present 0) whatever its
        // Clean Start, and a delayed will is cut short like any other
        // ending session (3.1.3.2.2).
        let ends = clean_start || self.session_expiry_secs == 0;
        let due = will_due_on_close(CloseCause::TakenOver, self.protocol);
        match self.will.take() {
            Some(will) if due && (self.will_delay_secs == 0 || ends) => {
                out.push(Action::PublishWill(will));
            }
            _ => {}
        }
        if self.session_expiry_secs == 0 && !clean_start {
            self.clear(out);
            self.resumable = false;
        }
    }

    /// The client id moves to another node of the cluster, whose new
    /// connection (Clean Start `clean_start`) takes it over: the session
    /// ends here. A connection attached is taken over as on one node (v5
    /// DISCONNECT 0x8E, close, the will as [`Session::taken_over`] decides);
    /// without one, a delayed will still waiting is published when
    /// `clean_start` ends the session, as a local CONNECT would. Returns
    /// the session as the store keeps it when it lives on at the new node
    /// (clean start 0, session expiry above 0), the export taken once the
    /// connection is gone (`now`: when it left; a session already detached
    /// keeps its own departure time). Either way the session ends here:
    /// routes dropped, `EndSession`.
    pub fn hand_over(
        &mut self,
        clean_start: bool,
        now: Tick,
        clock: &crate::WallClock,
        out: &mut Outbox,
    ) -> Option<ringmq_store::SessionState> {
        let left_at = if self.link.is_some() {
            self.taken_over(clean_start, out);
            now
        } else {
            self.left_at
        };
        let moves = !clean_start && self.resumable && self.session_expiry_secs > 0;
        // Taken with a waiting will: the new node's CONNECT cancels it.
        let state = moves.then(|| self.export(left_at, clock));
        if self.will_pending.take().is_some() {
            out.push(Action::CancelTimer(Timer::WillDelay));
            if let Some(will) = self.will.take() {
                if clean_start {
                    out.push(Action::PublishWill(will));
                }
            }
        }
        self.end(out);
        state
    }

    /// An administrator disconnects the client: v5 DISCONNECT 0x98, then
    /// close (its will is due, as for any close the client did not ask
    /// for). With `discard` the session ends with the connection; a
    /// session without a connection ends now (a will waiting for its
    /// delay is published first, as at expiry).
    pub fn kick(&mut self, discard: bool, now: Tick, out: &mut Outbox) {
        if discard {
            self.session_expiry_secs = 0;
        }
        match self.link.as_ref() {
            Some(link) if !link.closing => {
                self.close_with(
                    ReasonCode::ADMINISTRATIVE_ACTION,
                    Some("disconnected by an administrator"),
                    out,
                );
                out.push(Action::Close(CloseCause::Administrative));
            }
            Some(_) => {}
            None if discard => self.handle_timer(Timer::SessionExpiry, now, out),
            None => {}
        }
    }

    /// The broker is going away: v5 DISCONNECT 0x8B, then close.
    pub fn shutdown(&mut self, out: &mut Outbox) {
        if self.link.as_ref().is_some_and(|l| !l.closing) {
            self.close_with(ReasonCode::SERVER_SHUTTING_DOWN, None, out);
            out.push(Action::Close(CloseCause::ServerShutdown));
        }
    }

    /// Bytes from the client that are not a valid packet (a decode error
    /// the codec mapped to `code`): v5 DISCONNECT with it, then close. The
    /// rest of the connection's input is ignored.
    pub fn malformed(&mut self, code: ReasonCode, out: &mut Outbox) {
        if self.link.as_ref().is_some_and(|l| !l.closing) {
            // A decode error meant for CONNACK (0x84 for a second CONNECT
            // of an unknown version) becomes a Protocol Error here:
            // DISCONNECT cannot carry it (3.14.2.1; a second CONNECT is a
            // Protocol Error, MQTT-3.1.0-2).
            let code = if code.allowed_in_disconnect() {
                code
            } else {
                ReasonCode::PROTOCOL_ERROR
            };
            self.close_with(code, None, out);
            out.push(Action::Close(CloseCause::ProtocolError));
        }
    }

    /// A rule broken by the client: v5 DISCONNECT with its code and text.
    fn violation(&mut self, violation: Violation, out: &mut Outbox) {
        out.push(Action::Violation(violation));
        self.close_with(violation.reason_code(), Some(violation.text()), out);
        out.push(Action::Close(CloseCause::ProtocolError));
    }

    /// Queues the v5 DISCONNECT that precedes a server-side close (a v3
    /// connection is just closed) and marks the connection closing.
    fn close_with(&mut self, code: ReasonCode, reason: Option<&'static str>, out: &mut Outbox) {
        if let Some(link) = self.link.as_mut() {
            if link.closing {
                return;
            }
            link.closing = true;
        }
        if self.protocol == ProtocolVersion::V5 {
            let properties = Properties {
                reason_string: reason.map(|r| Bytes::from_static(r.as_bytes())),
                ..Properties::default()
            };
            let mut disconnect = Packet::Disconnect(Disconnect { code, properties });
            if !self.fits(&disconnect) {
                // The Reason String is optional (MQTT-3.14.2-3): it goes
                // first when the client's Maximum Packet Size is tiny.
                disconnect = Packet::Disconnect(Disconnect {
                    code,
                    properties: Properties::default(),
                });
            }
            out.send(disconnect);
        }
    }

    /// A PUBLISH from the client: resolve its alias, check it, route it,
    /// acknowledge it.
    fn client_publish(
        &mut self,
        mut publish: Publish,
        policy: &ServerPolicy,
        out: &mut Outbox,
    ) -> Result<(), Violation> {
        let v5 = self.protocol == ProtocolVersion::V5;
        if !publish.properties.subscription_identifiers.is_empty() {
            return Err(Violation::SubscriptionIdentifierFromClient);
        }
        if let Some(link) = self.link.as_mut() {
            link.in_aliases
                .resolve(&mut publish, policy.topic_alias_maximum)?;
        }
        if v5 && publish.qos > policy.max_qos {
            return Err(Violation::QosNotSupported);
        }
        if exceeds_levels(&publish.topic, policy.max_topic_levels) {
            // A server limit, not a rule of the standard: refused with
            // Topic Name invalid (0x90) and closed, as for a bad name.
            out.push(Action::LimitHit(Limit::TopicLevels));
            self.close_with(
                ReasonCode::TOPIC_NAME_INVALID,
                Some("too many topic levels"),
                out,
            );
            out.push(Action::Close(CloseCause::ProtocolError));
            return Ok(());
        }
        let (qos, packet_id, dup) = (publish.qos, publish.packet_id, publish.dup);
        // DUP and the packet id belong to this hop only (MQTT-3.3.1-3).
        publish.dup = false;
        publish.packet_id = 0;
        // `$SYS` belongs to the broker (issue 15): a client may not publish
        // there, ACL or not; refused like an ACL refusal, so it is counted.
        let sys = publish.topic.as_ref() == b"$SYS" || publish.topic.starts_with(b"$SYS/");
        let allowed = !sys && self.may_write(&publish.topic, policy);
        if !allowed {
            out.push(Action::Denied(Access::Write));
            if v5 && qos != QoS::AtMostOnce {
                // 0x87 ends the flow: no QoS 2 state is kept (4.3.3).
                let (packet_id, code, properties) =
                    (packet_id, ReasonCode::NOT_AUTHORIZED, Properties::default());
                out.send(if qos == QoS::AtLeastOnce {
                    Packet::PubAck(PubAck {
                        packet_id,
                        code,
                        properties,
                    })
                } else {
                    Packet::PubRec(PubRec {
                        packet_id,
                        code,
                        properties,
                    })
                });
                return Ok(());
            }
            // v3 has no refusal code: acknowledged as usual (below), so the
            // client does not send it again, and not routed.
        }
        let route = |out: &mut Outbox, publish| {
            if allowed {
                out.push(Action::Publish(publish));
            }
        };
        if qos == QoS::AtMostOnce {
            route(out, publish);
            return Ok(());
        }
        match self
            .qos_state(policy)
            .inbound
            .handle_publish(qos, packet_id, dup)
        {
            InboundAction::Route => route(out, publish),
            InboundAction::RouteAndPubAck(ack) => {
                route(out, publish);
                out.send(Packet::PubAck(ack));
            }
            InboundAction::RouteAndPubRec(rec) => {
                route(out, publish);
                if !rec.code.is_error() {
                    // Recorded before the PUBREC: a restart still knows
                    // the id, so the client's re-send is not routed again.
                    self.store(crate::Step::InboundPending { packet_id }, out);
                }
                out.send(Packet::PubRec(rec));
            }
            // A QoS 2 repeat before PUBREL: answered, not routed again
            // (MQTT-4.3.3-10).
            InboundAction::PubRecOnly(rec) => out.send(Packet::PubRec(rec)),
            InboundAction::ReceiveMaximumExceeded => return Err(Violation::ReceiveMaximumExceeded),
        }
        Ok(())
    }

    /// An acknowledgement of one of our deliveries: `step` updates the
    /// flow and may answer; queued messages that now fit follow.
    fn outbound_ack(
        &mut self,
        now: Tick,
        out: &mut Outbox,
        step: impl FnOnce(&mut Outbound, u64, &mut Vec<Publish>) -> Option<Packet>,
    ) {
        let Some(qos) = self.qos.as_deref_mut() else {
            // v5 4.3: an acknowledgement for an unknown id is ignored.
            return;
        };
        let mut next = Vec::new();
        let before = qos.outbound.dropped_total();
        if let Some(reply) = step(&mut qos.outbound, now.0, &mut next) {
            out.send(reply);
        }
        // Queued messages that expired or no longer fit, skipped on the way.
        out.drop_many(qos.outbound.dropped_total() - before);
        journal_outbound(qos, out);
        for publish in next {
            self.send_publish(publish, out);
        }
    }

    /// SUBSCRIBE: validated whole before any of it changes the session
    /// (no filter may end up in the session but not in the routes), then
    /// route-adds, SUBACK, and the retained messages asked for.
    fn subscribe(
        &mut self,
        packet: &Subscribe,
        policy: &ServerPolicy,
        out: &mut Outbox,
    ) -> Result<(), Violation> {
        let v5 = self.protocol == ProtocolVersion::V5;
        if packet.properties.subscription_identifiers.len() > 1 {
            return Err(Violation::SeveralSubscriptionIdentifiers);
        }
        let suback = SubAck {
            packet_id: packet.packet_id,
            properties: Properties::default(),
            codes: vec![ReasonCode::SUCCESS; packet.filters.len()],
        };
        if !self.fits(&Packet::SubAck(suback)) {
            // One code per filter: a client that asks for more filters
            // than its own Maximum Packet Size lets us answer.
            return Err(Violation::ResponseTooLarge);
        }
        let checked: Vec<Result<bool, ()>> = packet
            .filters
            .iter()
            .map(|(filter, _)| check_filter(filter))
            .collect();
        for ((_, options), check) in packet.filters.iter().zip(&checked) {
            if *check == Ok(true) && options.no_local {
                return Err(Violation::NoLocalOnSharedSubscription);
            }
        }
        let id = packet
            .properties
            .subscription_identifiers
            .first()
            .copied()
            .unwrap_or(0);
        let mut codes = Vec::with_capacity(packet.filters.len());
        let mut retained = Vec::new();
        if self.protocol == ProtocolVersion::V3_1
            && packet
                .filters
                .iter()
                .zip(&checked)
                .enumerate()
                .any(|(n, ((filter, _), check))| {
                    self.refusal(n, filter, check.is_ok(), policy).is_err()
                })
        {
            // MQTT 3.1's SUBACK has no failure code: a filter it cannot
            // grant can only end the connection.
            out.push(Action::Close(CloseCause::ProtocolError));
            if let Some(link) = self.link.as_mut() {
                link.closing = true;
            }
            return Ok(());
        }
        for (n, ((filter, options), check)) in packet.filters.iter().zip(checked).enumerate() {
            let acl_grant = match self.refusal(n, filter, check.is_ok(), policy) {
                Ok(grant) => grant,
                Err((code, limit)) => {
                    if let Some(limit) = limit {
                        out.push(Action::LimitHit(limit));
                    }
                    if code == ReasonCode::NOT_AUTHORIZED {
                        out.push(Action::Denied(Access::Subscribe));
                    }
                    // v3 has only the failure code 0x80.
                    codes.push(if v5 { code } else { ReasonCode(0x80) });
                    continue;
                }
            };
            let grant = Subscription {
                options: SubscriptionOptions {
                    qos: options.qos.min(policy.max_qos),
                    ..*options
                },
                id,
            };
            codes.push(ReasonCode(grant.options.qos as u8));
            let key = Bytes::copy_from_slice(filter);
            if let Some(rights) = self.rights.as_deref_mut() {
                rights.set_filtered(&key, acl_grant == SubscribeGrant::Filtered);
            }
            let is_new = self.subscriptions.insert(key.clone(), grant).is_none();
            if self.journal {
                out.store(crate::Step::Subscribed {
                    filter: key.clone(),
                    grant,
                });
            }
            out.push(Action::AddRoute {
                filter: key.clone(),
                grant,
            });
            retained.push(Action::SendRetained {
                filter: key,
                grant,
                is_new,
            });
        }
        out.send(Packet::SubAck(SubAck {
            packet_id: packet.packet_id,
            properties: Properties::default(),
            codes,
        }));
        for action in retained {
            out.push(action);
        }
        Ok(())
    }

    /// What filter `n` of a SUBSCRIBE (`valid`: it passed the filter
    /// rules) is granted by the ACL, or why it cannot be granted: its v5
    /// SUBACK code (0x87 for the ACL) and the limit it ran into, if any.
    /// One packet cannot ask for more filters than a session may hold:
    /// each would query the retained store (a 1 MiB SUBSCRIBE of "#"
    /// repeated is 200,000 queries).
    fn refusal(
        &self,
        n: usize,
        filter: &[u8],
        valid: bool,
        policy: &ServerPolicy,
    ) -> Result<SubscribeGrant, (ReasonCode, Option<Limit>)> {
        let quota = Err((ReasonCode::QUOTA_EXCEEDED, Some(Limit::Subscriptions)));
        if !valid {
            return Err((ReasonCode::TOPIC_FILTER_INVALID, None));
        } else if n >= policy.max_subscriptions {
            return quota;
        } else if exceeds_levels(filter, policy.max_topic_levels) {
            return Err((ReasonCode::TOPIC_FILTER_INVALID, Some(Limit::TopicLevels)));
        } else if self.subscriptions.len() >= policy.max_subscriptions
            && self.subscriptions.get(filter).is_none()
        {
            return quota;
        }
        let grant = match (&policy.acl, &self.rights) {
            (Some(acl), Some(rights)) => acl.subscribe(&rights.who(&self.client_id), filter),
            (Some(_), None) => SubscribeGrant::Refused,
            (None, _) => SubscribeGrant::Granted,
        };
        match grant {
            SubscribeGrant::Refused => Err((ReasonCode::NOT_AUTHORIZED, None)),
            grant => Ok(grant),
        }
    }

    /// Whether `packet` fits the attached client's Maximum Packet Size
    /// (MQTT-3.1.2-24).
    fn fits(&self, packet: &Packet) -> bool {
        self.link
            .as_ref()
            .is_none_or(|l| packet.encoded_len(self.protocol) <= l.max_packet_size as usize)
    }

    /// UNSUBSCRIBE: route-drops, then UNSUBACK.
    fn unsubscribe(&mut self, packet: &Unsubscribe, out: &mut Outbox) -> Result<(), Violation> {
        let v5 = self.protocol == ProtocolVersion::V5;
        let unsuback = UnsubAck {
            packet_id: packet.packet_id,
            properties: Properties::default(),
            codes: if v5 {
                vec![ReasonCode::SUCCESS; packet.filters.len()]
            } else {
                Vec::new()
            },
        };
        if !self.fits(&Packet::UnsubAck(unsuback)) {
            return Err(Violation::ResponseTooLarge);
        }
        let mut codes = Vec::new();
        for filter in &packet.filters {
            let removed = self.subscriptions.remove_entry(filter.as_ref());
            if v5 {
                codes.push(match removed {
                    Some(_) => ReasonCode::SUCCESS,
                    None if check_filter(filter).is_err() => ReasonCode::TOPIC_FILTER_INVALID,
                    None => ReasonCode::NO_SUBSCRIPTION_EXISTED,
                });
            }
            if let Some((filter, _)) = removed {
                if let Some(rights) = self.rights.as_deref_mut() {
                    rights.set_filtered(&filter, false);
                }
                if self.journal {
                    out.store(crate::Step::Unsubscribed {
                        filter: filter.clone(),
                    });
                }
                out.push(Action::DropRoute { filter });
            }
        }
        out.send(Packet::UnsubAck(UnsubAck {
            packet_id: packet.packet_id,
            properties: Properties::default(),
            codes,
        }));
        Ok(())
    }

    /// DISCONNECT from the client: a new session expiry (never raised
    /// from 0, MQTT-3.14.2-2), then close; the cause decides the will.
    fn client_disconnect(
        &mut self,
        packet: &Disconnect,
        policy: &ServerPolicy,
        out: &mut Outbox,
    ) -> Result<(), Violation> {
        if let Some(expiry) = packet.properties.session_expiry_interval {
            if self.session_expiry_secs == 0 && expiry != 0 {
                return Err(Violation::SessionExpiryRaisedFromZero);
            }
            // Capped like the CONNECT's (--max-session-expiry-secs).
            self.session_expiry_secs = expiry.min(policy.max_session_expiry_secs);
        }
        let cause = CloseCause::ClientDisconnect(packet.code);
        if !will_due_on_close(cause, self.protocol) {
            // MQTT-3.14.4-3: discarded on receipt, so that a take-over
            // before `connection_lost` cannot publish it.
            self.will = None;
        }
        // A new expiry (0 too: a crash before the close must not keep
        // the session), or the will discarded.
        self.store(crate::Step::Header, out);
        if let Some(link) = self.link.as_mut() {
            link.closing = true;
        }
        out.push(Action::Close(cause));
        Ok(())
    }

    /// Queues a PUBLISH for the client: dropped (counted) when larger than
    /// its Maximum Packet Size, otherwise with an outbound alias if the
    /// aliased packet fits too.
    fn send_publish(&mut self, mut publish: Publish, out: &mut Outbox) {
        let Some(link) = self.link.as_mut() else {
            return;
        };
        let (protocol, max) = (self.protocol, link.max_packet_size as usize);
        if publish.encoded_len(protocol) > max {
            // MQTT-3.1.2-25: discarded as if delivered.
            out.drop_one();
            return;
        }
        if let Some(aliases) = link.out_aliases.as_deref_mut() {
            // The alias changes the size: it must not push it over.
            aliases.apply(&mut publish, |p| p.encoded_len(protocol) <= max);
        }
        out.send(Packet::Publish(publish));
    }

    fn qos_state(&mut self, policy: &ServerPolicy) -> &mut QosState {
        let v5 = self.protocol == ProtocolVersion::V5;
        let link = self.link.as_ref();
        let receive_maximum = link.map_or(u16::MAX, |l| l.receive_maximum);
        let max_packet = link.map(|l| l.max_packet_size);
        let protocol = self.protocol;
        let journal = self.journal;
        self.qos.get_or_insert_with(|| {
            let mut outbound = Outbound::new(OutboundConfig {
                max_queued: policy.max_queued_messages,
                max_bytes: policy.max_queued_bytes,
            });
            outbound.set_journal(journal);
            outbound.set_receive_maximum(receive_maximum);
            if let Some(max) = max_packet {
                outbound.set_max_packet_size(max, protocol);
            }
            Box::new(QosState {
                outbound,
                // A v3 client is never told a Receive Maximum: don't hold
                // it to one.
                inbound: Inbound::new(if v5 { policy.receive_maximum } else { u16::MAX }),
            })
        })
    }

    /// Forgets subscriptions (dropping their routes) and QoS state.
    fn clear(&mut self, out: &mut Outbox) {
        for (filter, _) in self.subscriptions.drain() {
            out.push(Action::DropRoute { filter });
        }
        if let Some(rights) = self.rights.as_deref_mut() {
            rights.reset();
        }
        self.qos = None;
    }

    /// The session ends: routes dropped, then the table forgets it.
    fn end(&mut self, out: &mut Outbox) {
        self.clear(out);
        self.store(crate::Step::Gone, out);
        self.journal = false;
        out.push(Action::CancelTimer(Timer::SessionExpiry));
        out.push(Action::EndSession);
    }
}

/// Moves the steps the outbound flow recorded into the outbox.
fn journal_outbound(qos: &mut QosState, out: &mut Outbox) {
    for step in qos.outbound.take_steps() {
        out.store(step);
    }
}

/// Ok(is_shared) for a valid filter.
fn check_filter(filter: &[u8]) -> Result<bool, ()> {
    let text = std::str::from_utf8(filter).map_err(|_| ())?;
    ringmq_topic::validate_topic_filter(text).map_err(|_| ())?;
    match ringmq_topic::parse_shared(text) {
        Ok(shared) => Ok(shared.is_some()),
        Err(_) => Err(()),
    }
}

/// A copy that does not pin the read arena the original slices.
pub fn owned(b: &Bytes) -> Bytes {
    Bytes::copy_from_slice(b)
}

/// The properties a stored message keeps (will, retained, queued), copied
/// out of the read arena.
pub fn owned_properties(p: &Properties) -> Properties {
    Properties {
        payload_format_indicator: p.payload_format_indicator,
        message_expiry_interval: p.message_expiry_interval,
        content_type: p.content_type.as_ref().map(owned),
        response_topic: p.response_topic.as_ref().map(owned),
        correlation_data: p.correlation_data.as_ref().map(owned),
        user_properties: p
            .user_properties
            .iter()
            .map(|(k, v)| (owned(k), owned(v)))
            .collect(),
        ..Properties::default()
    }
}

fn owned_will(will: &Will) -> Box<Will> {
    Box::new(Will {
        topic: owned(&will.topic),
        payload: owned(&will.payload),
        qos: will.qos,
        retain: will.retain,
        properties: owned_properties(&will.properties),
    })
}

/// Refuses a CONNECT: CONNACK with `code` (a v3 return code for v3.x,
/// a v5 reason code for v5), then close.
pub fn refuse_connect(code: ReasonCode, out: &mut Outbox) {
    out.send(Packet::ConnAck(ConnAck {
        session_present: false,
        code,
        properties: Properties::default(),
    }));
    out.push(Action::Close(CloseCause::ProtocolError));
}

// ----- persistence: what `crate::persist` reads and restores -----

impl Session {
    /// The will, its delay, and when a due will goes out (`None` while
    /// the will is not due: a connection is attached).
    pub(crate) fn will_state(&self) -> (Option<&Will>, u32, Option<Tick>) {
        (
            self.will.as_deref(),
            self.will_delay_secs,
            self.will_pending,
        )
    }

    /// The QoS 1/2 flows, once any was used.
    pub(crate) fn qos_flows(&self) -> Option<(&Outbound, &Inbound)> {
        self.qos.as_deref().map(|q| (&q.outbound, &q.inbound))
    }

    /// A session with no connection attached, resumable (a CONNECT with
    /// clean start 0 finds it present), holding `parts`.
    pub(crate) fn from_parts(parts: crate::persist::Parts) -> Session {
        let mut s = Session::new(parts.client_id, parts.protocol);
        for (filter, grant) in parts.subscriptions {
            s.subscriptions.insert(filter, grant);
        }
        s.will = parts.will.map(Box::new);
        s.will_delay_secs = parts.will_delay_secs;
        s.will_pending = parts.will_pending;
        s.session_expiry_secs = parts.session_expiry_secs;
        s.qos = parts
            .qos
            .map(|(outbound, inbound)| Box::new(QosState { outbound, inbound }));
        s.resumable = true;
        s.rights = parts.rights.map(Box::new);
        s.journal = parts.journal;
        s.left_at = parts.left_at;
        if let Some(qos) = s.qos.as_deref_mut() {
            qos.outbound.set_journal(s.journal);
        }
        s
    }
}
