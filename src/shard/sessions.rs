//! The client-id -> session table: CONNECT acceptance, take-over, will
//! delay, expiry.
//!
//! A client id always maps to this shard (its owner), so take-over is a
//! local operation: no lock, no cross-shard round trip. At most one
//! connection is attached to a session at any time: the new connection is
//! attached in the same synchronous step that detaches and closes the old.

use std::rc::Rc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use hashbrown::HashMap;
use ringmq_codec::{
    Connect, Disconnect, Packet, Properties, ProtocolVersion, Publish, QoS, ReasonCode, Will,
};
use ringmq_session::{
    keepalive_timeout_ms, negotiate, will_due_on_close, CloseCause, Inbound, InboundAction, Offer,
    Outbound, OutboundConfig, Session,
};
use ringmq_wheel::TimerKey;
use tracing::{debug, warn};

use super::conn::Conn;
use super::{Shard, TimerEvent};
use crate::stats::ShardStats;

/// One session and what the shard tracks about it.
pub(crate) struct SessionEntry {
    session: Session,
    conn: Option<Rc<Conn>>,
    will_delay_secs: u32,
    /// A due will waiting for its Will Delay Interval.
    pending_will: Option<Box<Will>>,
    will_timer: Option<TimerKey>,
    expiry_timer: Option<TimerKey>,
    /// QoS 1/2 state, created on first use: most device sessions never
    /// use QoS 1/2, and an idle session should stay small.
    qos: Option<Box<QosState>>,
    /// The client's Receive Maximum (what the outbound window allows).
    client_receive_maximum: u16,
}

/// A session's QoS 1/2 flows.
struct QosState {
    /// Deliveries to the client: inflight window and queue.
    outbound: Outbound,
    /// QoS 2 messages from the client awaiting PUBREL.
    inbound: Inbound,
}

impl SessionEntry {
    fn qos(&mut self, max_queued: usize, server_receive_maximum: u16) -> &mut QosState {
        let v5 = self.session.protocol == ProtocolVersion::V5;
        let client_receive_maximum = self.client_receive_maximum;
        self.qos.get_or_insert_with(|| {
            let mut outbound = Outbound::new(OutboundConfig { max_queued });
            outbound.set_receive_maximum(client_receive_maximum);
            Box::new(QosState {
                outbound,
                // A v3 client is never told a Receive Maximum: don't hold
                // it to one.
                inbound: Inbound::new(if v5 { server_receive_maximum } else { u16::MAX }),
            })
        })
    }
}

/// Every session this shard owns.
#[derive(Default)]
pub(crate) struct Sessions {
    /// Boxed: the map's spare capacity then costs a pointer per slot, not
    /// a whole entry.
    by_serial: HashMap<u64, Box<SessionEntry>>,
    by_client: HashMap<Bytes, u64>,
    next_serial: u64,
    assigned_ids: u64,
}

impl Sessions {
    /// The live connection of a session, if any.
    pub(crate) fn conn_of(&self, serial: u64) -> Option<&Rc<Conn>> {
        self.by_serial.get(&serial).and_then(|e| e.conn.as_ref())
    }

    /// The connection (if any, and not closing) and protocol of a session.
    pub(crate) fn delivery_target(
        &self,
        serial: u64,
    ) -> Option<(Option<Rc<Conn>>, ProtocolVersion)> {
        let entry = self.by_serial.get(&serial)?;
        let conn = entry.conn.as_ref().filter(|c| !c.is_closing()).cloned();
        Some((conn, entry.session.protocol))
    }

    pub(crate) fn session_mut(&mut self, serial: u64) -> Option<&mut Session> {
        self.by_serial.get_mut(&serial).map(|e| &mut e.session)
    }
}

/// A copy that does not pin the read arena the original slices.
pub(crate) fn owned(b: &Bytes) -> Bytes {
    Bytes::copy_from_slice(b)
}

/// The properties a stored message keeps (will, retained), copied out of
/// the read arena.
pub(crate) fn owned_properties(p: &Properties) -> Properties {
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

impl Shard {
    /// Refuses a CONNECT with `code` (in the client's version) and closes.
    fn refuse(&self, conn: &Conn, version: ProtocolVersion, code: ReasonCode, why: &str) {
        ShardStats::inc(&self.stats.connects_refused);
        debug!(reason = why, code = code.0, "CONNECT refused");
        conn.send_as(&Shard::connack(code, false, Properties::default()), version);
        conn.request_close(CloseCause::ProtocolError);
    }

    /// Runs a CONNECT against the session table and answers it. Returns
    /// the client id on success, with the connection it took over (if any).
    pub(crate) fn accept_connect(
        self: &Rc<Self>,
        conn: &Rc<Conn>,
        connect: Connect,
    ) -> Option<(Bytes, Option<Rc<Conn>>)> {
        let version = connect.protocol;
        let v5 = version == ProtocolVersion::V5;
        let max = self.config().max_connections;
        if max > 0 && self.shared.open_connections.load(Ordering::Relaxed) > max {
            warn!(max, "--max-connections reached: refusing CONNECT");
            // v3 has no quota code: 0x03 is "server unavailable".
            let code = if v5 {
                ReasonCode::QUOTA_EXCEEDED
            } else {
                ReasonCode(0x03)
            };
            self.refuse(conn, version, code, "max connections");
            return None;
        }
        let negotiated = match negotiate(&connect, &self.policy) {
            Ok(n) => n,
            Err(refusal) => {
                self.refuse(conn, version, refusal.code, refusal.why);
                return None;
            }
        };
        if let Some(will) = &connect.will {
            let valid = std::str::from_utf8(&will.topic)
                .map(|t| ringmq_topic::validate_topic_name(t).is_ok())
                .unwrap_or(false);
            if !valid {
                // MQTT-3.1.3-11: the will topic is a topic name.
                let code = if v5 {
                    ReasonCode::TOPIC_NAME_INVALID
                } else {
                    ReasonCode(0x02)
                };
                self.refuse(conn, version, code, "invalid will topic");
                return None;
            }
        }

        let client_id = if negotiated.assign_client_id {
            let mut counter = self.state.borrow().sessions.assigned_ids;
            let id = self.assign_client_id(&mut counter);
            self.state.borrow_mut().sessions.assigned_ids = counter;
            id
        } else {
            owned(&connect.client_id)
        };
        let mut properties = negotiated.connack_properties.clone();
        if negotiated.assign_client_id && v5 {
            properties.assigned_client_identifier = Some(client_id.clone());
        }

        // Take-over and resumption.
        let existing = self
            .state
            .borrow()
            .sessions
            .by_client
            .get(&client_id)
            .copied();
        let mut session_present = false;
        let mut taken_over = None;
        if let Some(serial) = existing {
            let (old_conn, old_will, timers) = {
                let mut state = self.state.borrow_mut();
                let entry = state.sessions.by_serial.get_mut(&serial)?;
                let old_conn = entry.conn.take();
                // The old connection's will: due on a v5 take-over; its delay
                // is cut short when clean start 1 ends the session now
                // (3.1.2.5: "when the delay passes or the session ends").
                let ends_session = connect.clean_start;
                let old_will = match &old_conn {
                    Some(_)
                        if will_due_on_close(CloseCause::TakenOver, entry.session.protocol)
                            && (entry.will_delay_secs == 0 || ends_session) =>
                    {
                        entry.session.will.take()
                    }
                    Some(_) => None,
                    // Disconnected with a delayed will pending: a reconnection
                    // cancels it, unless it ends the session.
                    None if ends_session => entry.pending_will.take(),
                    None => None,
                };
                entry.pending_will = None;
                (
                    old_conn,
                    old_will,
                    [entry.will_timer.take(), entry.expiry_timer.take()],
                )
            };
            for key in timers {
                self.cancel_timer(key);
            }
            if let Some(old) = old_conn {
                ShardStats::inc(&self.stats.takeovers);
                debug!(client_id = ?client_id, old_peer = %old.peer, "take-over");
                old.session.set(None);
                old.disconnect(ReasonCode::SESSION_TAKEN_OVER, CloseCause::TakenOver);
                taken_over = Some(old);
            }
            if let Some(will) = old_will {
                self.publish_will(will);
            }
            if connect.clean_start {
                self.end_session(serial);
            } else {
                session_present = true;
            }
        }

        let serial = if session_present {
            existing?
        } else {
            let mut state = self.state.borrow_mut();
            let sessions = &mut state.sessions;
            sessions.next_serial += 1;
            let serial = sessions.next_serial;
            sessions.by_serial.insert(
                serial,
                Box::new(SessionEntry {
                    session: Session::new(client_id.clone(), version),
                    conn: None,
                    will_delay_secs: 0,
                    pending_will: None,
                    will_timer: None,
                    expiry_timer: None,
                    qos: None,
                    client_receive_maximum: u16::MAX,
                }),
            );
            sessions.by_client.insert(client_id.clone(), serial);
            ShardStats::inc(&self.stats.sessions);
            serial
        };
        {
            let mut state = self.state.borrow_mut();
            let entry = state.sessions.by_serial.get_mut(&serial)?;
            entry.session.protocol = version;
            entry.session.will = connect.will.as_ref().map(owned_will);
            entry.session.session_expiry_secs = negotiated.session_expiry_secs;
            entry.will_delay_secs = negotiated.will_delay_secs;
            entry.conn = Some(conn.clone());
        }
        conn.session.set(Some(serial));
        conn.version.set(Some(version));
        conn.client_max_packet
            .set(negotiated.client_max_packet_size);
        if v5 {
            let max = connect.properties.topic_alias_maximum.unwrap_or(0);
            conn.set_outbound_alias_maximum(max);
        }

        // The CONNECT deadline gives way to keep-alive.
        self.cancel_timer(conn.timer.take());
        if let Some(ms) =
            keepalive_timeout_ms(negotiated.keep_alive_secs, self.config().keepalive_backoff)
        {
            let ticks = self.clock.ticks(ms);
            conn.keepalive_ticks.set(ticks);
            let key = self.arm_timer(
                conn.last_rx_tick.get() + ticks,
                TimerEvent::KeepAlive(conn.id),
            );
            conn.timer.set(Some(key));
        }
        ShardStats::inc(&self.stats.connects);
        conn.send(&Shard::connack(
            ReasonCode::SUCCESS,
            session_present,
            properties,
        ));
        // Unacknowledged messages again (DUP), PUBRELs, then the queue.
        let mut resend = Vec::new();
        if let Some(entry) = self.state.borrow_mut().sessions.by_serial.get_mut(&serial) {
            let receive_maximum = connect.properties.receive_maximum.unwrap_or(u16::MAX);
            entry.client_receive_maximum = receive_maximum;
            if let Some(qos) = entry.qos.as_deref_mut() {
                qos.outbound.set_receive_maximum(receive_maximum);
                qos.outbound.resume(self.now_ms(), &mut resend);
            }
        }
        for packet in &resend {
            match packet {
                Packet::Publish(p) => self.send_checked(conn, p),
                other => conn.send(other),
            }
        }
        debug!(
            client_id = ?client_id,
            ?version,
            keep_alive = negotiated.keep_alive_secs,
            session_present,
            "connected"
        );
        Some((client_id, taken_over))
    }

    /// DISCONNECT from the client: the cause that ends the connection.
    pub(crate) fn client_disconnect(
        &self,
        conn: &Conn,
        packet: &Disconnect,
    ) -> Result<(), CloseCause> {
        if let (Some(serial), Some(new_expiry)) = (
            conn.session.get(),
            packet.properties.session_expiry_interval,
        ) {
            let mut state = self.state.borrow_mut();
            if let Some(session) = state.sessions.session_mut(serial) {
                if session.session_expiry_secs == 0 && new_expiry != 0 {
                    drop(state);
                    // MQTT-3.14.2-2: cannot turn a 0 expiry into another.
                    return Err(self.protocol_violation(
                        conn,
                        ReasonCode::PROTOCOL_ERROR,
                        "session expiry raised from 0",
                    ));
                }
                session.session_expiry_secs = new_expiry;
            }
        }
        Err(CloseCause::ClientDisconnect(packet.code))
    }

    /// Removes a connection from the shard's table and the wheel.
    pub(crate) fn forget_connection(&self, conn: &Conn) {
        self.state.borrow_mut().conns.remove(&conn.id);
        self.cancel_timer(conn.timer.take());
    }

    /// A connection has ended: its will, its session's expiry.
    pub(crate) fn connection_closed(self: &Rc<Self>, conn: &Rc<Conn>, cause: CloseCause) {
        self.forget_connection(conn);
        ShardStats::dec(&self.stats.connections);
        self.shared.open_connections.fetch_sub(1, Ordering::Relaxed);
        let Some(serial) = conn.session.take() else {
            return;
        };
        let (will, expiry_secs, delay_secs) = {
            let mut state = self.state.borrow_mut();
            let Some(entry) = state.sessions.by_serial.get_mut(&serial) else {
                return;
            };
            if !entry.conn.as_ref().is_some_and(|c| Rc::ptr_eq(c, conn)) {
                return;
            }
            entry.conn = None;
            let protocol = entry.session.protocol;
            let will = entry
                .session
                .will
                .take()
                .filter(|_| will_due_on_close(cause, protocol));
            (
                will,
                entry.session.session_expiry_secs,
                entry.will_delay_secs,
            )
        };
        if let Some(will) = will {
            if delay_secs == 0 || expiry_secs == 0 {
                self.publish_will(will);
            } else {
                // Published when the delay passes or the session ends,
                // whichever comes first.
                let secs = delay_secs.min(expiry_secs);
                let at = self.now_tick() + self.clock.ticks(u64::from(secs) * 1000) + 1;
                let key = self.arm_timer(at, TimerEvent::WillDelay(serial));
                let mut state = self.state.borrow_mut();
                if let Some(entry) = state.sessions.by_serial.get_mut(&serial) {
                    entry.pending_will = Some(will);
                    entry.will_timer = Some(key);
                }
            }
        }
        if expiry_secs == 0 {
            self.end_session(serial);
        } else if expiry_secs != u32::MAX {
            let at = self.now_tick() + self.clock.ticks(u64::from(expiry_secs) * 1000) + 1;
            let key = self.arm_timer(at, TimerEvent::SessionExpiry(serial));
            if let Some(entry) = self.state.borrow_mut().sessions.by_serial.get_mut(&serial) {
                entry.expiry_timer = Some(key);
            }
        }
    }

    pub(crate) fn will_delay_elapsed(self: &Rc<Self>, serial: u64) {
        let will = {
            let mut state = self.state.borrow_mut();
            let Some(entry) = state.sessions.by_serial.get_mut(&serial) else {
                return;
            };
            entry.will_timer = None;
            entry.pending_will.take()
        };
        if let Some(will) = will {
            debug!(serial, "will delay elapsed");
            self.publish_will(will);
        }
    }

    pub(crate) fn session_expired(self: &Rc<Self>, serial: u64) {
        let will = {
            let mut state = self.state.borrow_mut();
            let Some(entry) = state.sessions.by_serial.get_mut(&serial) else {
                return;
            };
            entry.expiry_timer = None;
            if entry.conn.is_some() {
                return;
            }
            entry.pending_will.take()
        };
        // The session ends before the will delay: the will goes now.
        if let Some(will) = will {
            self.publish_will(will);
        }
        debug!(serial, "session expired");
        self.end_session(serial);
    }

    /// Drops a session: its subscriptions, timers and table entries.
    fn end_session(&self, serial: u64) {
        let Some(mut entry) = ({
            let mut state = self.state.borrow_mut();
            let entry = state.sessions.by_serial.remove(&serial);
            if let Some(e) = &entry {
                state.sessions.by_client.remove(&e.session.client_id);
            }
            entry
        }) else {
            return;
        };
        ShardStats::dec(&self.stats.sessions);
        self.cancel_timer(entry.will_timer.take());
        self.cancel_timer(entry.expiry_timer.take());
        for filter in entry.session.clear_subscriptions() {
            self.unroute(&filter, serial);
        }
    }
}

impl Shard {
    fn qos_limits(&self) -> (usize, u16) {
        (
            self.config().max_queued_messages,
            self.config().receive_maximum,
        )
    }

    /// Offers a QoS 1/2 message to a session: sent now if its connection
    /// and window allow, queued otherwise (bounded, counted when dropped).
    pub(crate) fn offer_to_session(
        &self,
        serial: u64,
        publish: Publish,
        expires_at: Option<std::time::Instant>,
    ) {
        let now_ms = self.now_ms();
        let expires_ms = expires_at.map(|t| self.instant_ms(t));
        let (offer, conn) = {
            let mut state = self.state.borrow_mut();
            let Some(entry) = state.sessions.by_serial.get_mut(&serial) else {
                return;
            };
            let conn = entry.conn.as_ref().filter(|c| !c.is_closing()).cloned();
            if let Some(c) = &conn {
                // Too large for the client: discarded as if delivered
                // (MQTT-3.1.2-25), never stuck in the window.
                if publish.encoded_len(entry.session.protocol) > c.client_max_packet.get() as usize
                {
                    ShardStats::inc(&self.stats.publishes_dropped);
                    return;
                }
            }
            let (max_queued, receive_maximum) = self.qos_limits();
            let offer = entry.qos(max_queued, receive_maximum).outbound.offer(
                publish,
                expires_ms,
                now_ms,
                conn.is_some(),
            );
            (offer, conn)
        };
        match offer {
            Offer::Send(p) => {
                if let Some(conn) = conn {
                    conn.send_publish(&p);
                    ShardStats::inc(&self.stats.publishes_out);
                }
            }
            Offer::Queued => {}
            Offer::Dropped(reason) => {
                ShardStats::inc(&self.stats.publishes_dropped);
                debug!(serial, ?reason, "delivery dropped");
            }
        }
    }

    /// A QoS 1/2 PUBLISH from the client: what to answer, whether to route.
    pub(crate) fn inbound_publish(
        &self,
        conn: &Conn,
        qos: QoS,
        packet_id: u16,
        dup: bool,
    ) -> InboundAction {
        let Some(serial) = conn.session.get() else {
            return InboundAction::Route;
        };
        let (max_queued, receive_maximum) = self.qos_limits();
        let mut state = self.state.borrow_mut();
        match state.sessions.by_serial.get_mut(&serial) {
            Some(entry) => entry
                .qos(max_queued, receive_maximum)
                .inbound
                .handle_publish(qos, packet_id, dup),
            None => InboundAction::Route,
        }
    }

    /// PUBACK, PUBREC, PUBREL or PUBCOMP from the client.
    pub(crate) fn handle_ack(&self, conn: &Conn, packet: &Packet) {
        let Some(serial) = conn.session.get() else {
            return;
        };
        let now_ms = self.now_ms();
        let mut next = Vec::new();
        let mut reply = None;
        let result = {
            let mut state = self.state.borrow_mut();
            let Some(entry) = state.sessions.by_serial.get_mut(&serial) else {
                return;
            };
            let (max_queued, receive_maximum) = self.qos_limits();
            let qos = entry.qos(max_queued, receive_maximum);
            match packet {
                Packet::PubAck(ack) => qos.outbound.handle_puback(ack.packet_id, now_ms, &mut next),
                Packet::PubRec(rec) => {
                    reply = qos
                        .outbound
                        .handle_pubrec(rec.packet_id, rec.code, now_ms, &mut next)
                        .map(Packet::PubRel);
                    Ok(())
                }
                Packet::PubComp(comp) => {
                    qos.outbound
                        .handle_pubcomp(comp.packet_id, now_ms, &mut next)
                }
                Packet::PubRel(rel) => {
                    reply = Some(Packet::PubComp(qos.inbound.handle_pubrel(rel.packet_id)));
                    Ok(())
                }
                _ => Ok(()),
            }
        };
        if let Err(e) = result {
            // v5 4.3: an acknowledgement for an unknown id is ignored.
            debug!(error = %e, "unexpected acknowledgement");
        }
        if let Some(reply) = reply {
            conn.send(&reply);
        }
        for publish in &next {
            conn.send_publish(publish);
            ShardStats::inc(&self.stats.publishes_out);
        }
    }
}
