//! The test harness: one [`Session`] driven the way a shard drives it.
//!
//! A [`Harness`] owns the session, the [`ServerPolicy`], the reused
//! [`Outbox`] and a clock. Every input drains the outbox into the record
//! of that input ([`Harness::actions`], [`Harness::trace`]) and keeps a
//! model of what the shard would hold: the timer wheel (one deadline per
//! [`Timer`] kind, set by `ArmTimer`, cleared by `CancelTimer`) and the
//! attached link. [`Harness::advance`] moves the clock and fires, at their
//! own tick and in deadline order, the timers that come due.
//!
//! Every packet written is checked on the way out, in every test:
//! - it is written to an open link (nothing after a `Close`);
//! - it encodes, and fits the client's Maximum Packet Size (a PUBLISH as
//!   is; other packets at least once their optional diagnostics are
//!   trimmed, as the shard's `encode_limited` does);
//! - a PUBLISH's Topic Alias is within the client's Topic Alias Maximum
//!   (none for v3) and an empty topic only follows an alias set earlier on
//!   this link; [`Harness::sent_topics`] resolves them as the client would;
//! - a timer is never armed in the past;
//! - the routes the actions add and drop are exactly the session's
//!   subscriptions after every input, a route is only dropped if it was
//!   added, and once `EndSession` is queued no route and no timer is left;
//! - under a policy with persistence on, the store the `Store` steps
//!   build (each through `Session::store_events`, into a `StoreState`) is
//!   after every input exactly what `Session::export` says of the session
//!   (and holds nothing once it ended): the journal never drifts from the
//!   state it records.
//!
//! No sockets, no sleeping, no clock: time is the harness's `Tick`.

#![allow(dead_code)]

use std::collections::{BTreeSet, HashMap};

pub use bytes::{Bytes, BytesMut};
pub use ringmq_codec::{
    ConnAck, Connect, Disconnect, Packet, Properties, ProtocolVersion, PubAck, PubComp, PubRec,
    PubRel, Publish, QoS, ReasonCode, RetainHandling, SubAck, Subscribe, SubscriptionOptions,
    UnsubAck, Unsubscribe, Will,
};
pub use ringmq_session::{
    negotiate, Action, CloseCause, Delivery, Limit, Negotiated, Outbox, ServerPolicy, Session,
    Subscription, Tick, Timer, Violation, WallClock,
};
use ringmq_store::StoreState;

/// The wall clock the harness's store records under.
pub const STORE_CLOCK: WallClock = WallClock {
    unix_ms_at_epoch: 1_700_000_000_000,
};

/// The timer kinds in the order a tie on one tick fires them (see
/// [`Harness::advance`]: ties fire in arm order; this is only for lookup).
const TIMERS: [Timer; 3] = [Timer::KeepAlive, Timer::WillDelay, Timer::SessionExpiry];

/// The policy most tests run under: every QoS, retain, 10 inbound
/// aliases, a roomy queue, the standard 1.5 x keep-alive.
pub fn policy() -> ServerPolicy {
    ServerPolicy {
        max_qos: QoS::ExactlyOnce,
        retain_available: true,
        topic_alias_maximum: 10,
        max_queued_messages: 100,
        persistence: true,
        ..ServerPolicy::default()
    }
}

/// What the harness knows about the attached link (the client's side of
/// the negotiated limits and its view of the aliases we set).
#[derive(Debug)]
struct LinkModel {
    version: ProtocolVersion,
    max_packet_size: u32,
    topic_alias_maximum: u16,
    /// Aliases the server set on this link, as the client resolves them.
    aliases: HashMap<u16, Bytes>,
    /// No `Close` queued yet.
    open: bool,
}

/// One session, its policy, its outbox and a clock.
pub struct Harness {
    /// The session under test.
    pub session: Session,
    /// The policy every input is made under.
    pub policy: ServerPolicy,
    out: Outbox,
    now: Tick,
    /// The wheel: per timer kind (by [`Timer::index`]), its deadline and
    /// the order it was armed in.
    wheel: [Option<(Tick, u64)>; 3],
    arm_seq: u64,
    /// The actions of the last input, in order.
    last: Vec<Action>,
    /// The last input as short strings, timer firings included.
    trace: Vec<String>,
    /// Topics of the PUBLISHes of the last input, aliases resolved.
    topics: Vec<Bytes>,
    dropped: u32,
    dropped_total: u64,
    /// When the last `Close` was queued.
    closed_at: Option<Tick>,
    link: Option<LinkModel>,
    /// Every packet written since the harness was made, across links.
    wire: Vec<Packet>,
    /// The routes the shard would hold for this session.
    routes: BTreeSet<Bytes>,
    /// `EndSession` was queued.
    ended: bool,
    /// The message being delivered (what an `Action::Forward` writes).
    forwarded: Option<Publish>,
    /// What the `Store` steps recorded (persistence on).
    pub store: StoreState,
    /// Detached by a take-over, the new connection not yet attached: the
    /// store still has the client connected until it is.
    taken_over: bool,
}

impl Harness {
    /// A fresh v5 session `"c"` under [`policy`], nothing connected.
    pub fn new() -> Self {
        Self::with_policy(policy())
    }

    /// A fresh v5 session `"c"` under `policy`.
    pub fn with_policy(policy: ServerPolicy) -> Self {
        Self {
            session: Session::new(Bytes::from_static(b"c"), ProtocolVersion::V5),
            policy,
            out: Outbox::new(),
            now: Tick(0),
            wheel: [None; 3],
            arm_seq: 0,
            last: Vec::new(),
            trace: Vec::new(),
            topics: Vec::new(),
            dropped: 0,
            dropped_total: 0,
            closed_at: None,
            link: None,
            wire: Vec::new(),
            routes: BTreeSet::new(),
            ended: false,
            forwarded: None,
            store: StoreState::new(),
            taken_over: false,
        }
    }

    /// A harness connected with `connect` (its outputs are the last input).
    pub fn connected(connect: Connect) -> Self {
        let mut h = Self::new();
        h.connect(connect);
        h
    }

    /// A harness under `policy` connected with `connect`.
    pub fn connected_with(policy: ServerPolicy, connect: Connect) -> Self {
        let mut h = Self::with_policy(policy);
        h.connect(connect);
        h
    }

    // ----- inputs -----

    /// A CONNECT on a new link: negotiated under the policy (it must be
    /// accepted), then handed to the session.
    pub fn connect(&mut self, connect: Connect) -> Negotiated {
        let negotiated = negotiate(&connect, &self.policy).expect("CONNECT accepted");
        assert!(!self.ended, "the shard forgets an ended session");
        self.begin();
        assert!(
            !self.session.is_connected(),
            "connect while a link is attached: call lost() or taken_over() first"
        );
        self.link = Some(LinkModel {
            version: connect.protocol,
            max_packet_size: negotiated.client_max_packet_size,
            topic_alias_maximum: if connect.protocol == ProtocolVersion::V5 {
                connect.properties.topic_alias_maximum.unwrap_or(0)
            } else {
                0
            },
            aliases: HashMap::new(),
            open: true,
        });
        let assigned = negotiated
            .assign_client_id
            .then(|| Bytes::from_static(b"auto-1"));
        self.session.connect(
            &connect,
            &negotiated,
            &self.policy,
            assigned.as_ref(),
            self.now,
            &mut self.out,
        );
        self.taken_over = false;
        self.absorb();
        negotiated
    }

    /// One packet from the client, stamped now.
    pub fn packet(&mut self, packet: Packet) {
        self.begin();
        self.feed(packet);
    }

    /// Several packets from one read: one record for all of them.
    pub fn batch(&mut self, packets: impl IntoIterator<Item = Packet>) {
        self.begin();
        for packet in packets {
            self.feed(packet);
        }
    }

    /// A PUBLISH from the client.
    pub fn publish(&mut self, publish: Publish) {
        self.packet(Packet::Publish(publish));
    }

    /// A routed message at `qos`, no retain, no ids, no expiry.
    pub fn deliver(&mut self, message: &Publish, qos: QoS) {
        self.deliver_with(
            message,
            Delivery {
                qos,
                retain: false,
                ids: &[],
                expires_at: None,
            },
        );
    }

    /// A routed message, as routing decided it.
    pub fn deliver_with(&mut self, message: &Publish, delivery: Delivery<'_>) {
        self.begin();
        self.forwarded = Some(message.clone());
        self.session
            .deliver(message, delivery, &self.policy, self.now, &mut self.out);
        self.absorb();
    }

    /// Moves the clock `ms` on, firing every armed timer that comes due on
    /// the way, each at its own tick (deadline order; a tie in arm order).
    pub fn advance(&mut self, ms: u64) {
        self.begin();
        let target = self.now.add_ms(ms);
        for _ in 0..1000 {
            let due = TIMERS
                .iter()
                .filter_map(|&t| self.wheel[t.index()].map(|(at, seq)| (at, seq, t)))
                .filter(|&(at, _, _)| at <= target)
                .min_by_key(|&(at, seq, _)| (at, seq));
            let Some((at, _, timer)) = due else {
                self.now = target;
                return;
            };
            self.fire_at(timer, at);
        }
        panic!("timers keep re-arming at or before {target}");
    }

    /// Fires `timer` (which must be armed) at its deadline, ahead of any
    /// other timer due on the same tick: the order a wheel may pick.
    pub fn fire(&mut self, timer: Timer) {
        let (at, _) = self.wheel[timer.index()].expect("timer armed");
        assert!(at >= self.now);
        self.begin();
        self.fire_at(timer, at);
    }

    /// The shard saw the connection end for `cause`.
    pub fn lost(&mut self, cause: CloseCause) {
        self.begin();
        self.session.connection_lost(cause, self.now, &mut self.out);
        self.absorb();
        self.link = None;
    }

    /// Another connection takes the client id over; `clean_start` is the
    /// new CONNECT's. The new connection is then [`Harness::connect`]ed.
    pub fn taken_over(&mut self, clean_start: bool) {
        self.begin();
        self.session.taken_over(clean_start, &mut self.out);
        self.taken_over = true;
        self.absorb();
        self.link = None;
    }

    /// The client id moves to another node whose CONNECT has
    /// `clean_start`: the session ends here; returns what moves.
    pub fn hand_over(&mut self, clean_start: bool) -> Option<ringmq_store::SessionState> {
        self.begin();
        let state = self
            .session
            .hand_over(clean_start, self.now, &STORE_CLOCK, &mut self.out);
        self.taken_over = true;
        self.absorb();
        self.link = None;
        state
    }

    /// The ACL was reloaded: `policy.acl` becomes `acl` and the session
    /// decides again what it may do.
    pub fn reload_acl(&mut self, acl: &str) {
        self.policy.acl = Some(std::sync::Arc::new(
            ringmq_auth::acl::Acl::parse(acl).expect("a valid ACL"),
        ));
        self.begin();
        self.session.reauthorize(&self.policy, &mut self.out);
        self.absorb();
    }

    /// Replaces the session with the one `make` builds at the clock (an
    /// imported one, see `harness/persist.rs`), no link attached; its
    /// actions are recorded as an input.
    pub fn install(&mut self, make: impl FnOnce(&ServerPolicy, Tick, &mut Outbox) -> Session) {
        self.begin();
        self.session = make(&self.policy, self.now, &mut self.out);
        self.link = None;
        // The store the session came from (what a restart recovered).
        self.store = StoreState::new();
        if self.session.journals() {
            let state = self.session.export(self.session.left_at(), &STORE_CLOCK);
            self.store
                .sessions
                .insert(self.session.client_id().clone(), state);
        }
        self.absorb();
    }

    /// The broker shuts down.
    pub fn shutdown(&mut self) {
        self.begin();
        self.session.shutdown(&mut self.out);
        self.absorb();
    }

    // ----- outputs of the last input -----

    /// The actions of the last input, in order.
    pub fn actions(&self) -> &[Action] {
        &self.last
    }

    /// The last input as short strings, without timer bookkeeping
    /// (`Arm`, `Cancel`, `Fire`).
    pub fn trace(&self) -> Vec<&str> {
        self.trace
            .iter()
            .map(String::as_str)
            .filter(|s| {
                !s.starts_with("Arm(") && !s.starts_with("Cancel(") && !s.starts_with("Fire(")
            })
            .collect()
    }

    /// The last input as short strings, timer bookkeeping included.
    pub fn full_trace(&self) -> Vec<&str> {
        self.trace.iter().map(String::as_str).collect()
    }

    /// The packets written by the last input.
    pub fn sent(&self) -> Vec<&Packet> {
        self.last
            .iter()
            .filter_map(|a| match a {
                Action::Send(p) => Some(&**p),
                _ => None,
            })
            .collect()
    }

    /// The PUBLISHes written by the last input.
    pub fn sent_publishes(&self) -> Vec<&Publish> {
        self.sent()
            .into_iter()
            .filter_map(|p| match p {
                Packet::Publish(p) => Some(p),
                _ => None,
            })
            .collect()
    }

    /// The topics of [`Harness::sent_publishes`], aliases resolved.
    pub fn sent_topics(&self) -> Vec<&[u8]> {
        self.topics.iter().map(|t| &t[..]).collect()
    }

    /// The client PUBLISHes the last input routed.
    pub fn routed(&self) -> Vec<&Publish> {
        self.last
            .iter()
            .filter_map(|a| match a {
                Action::Publish(p) => Some(p),
                _ => None,
            })
            .collect()
    }

    /// The wills the last input published.
    pub fn wills(&self) -> Vec<&Will> {
        self.last
            .iter()
            .filter_map(|a| match a {
                Action::PublishWill(w) => Some(&**w),
                _ => None,
            })
            .collect()
    }

    /// The reason code of the DISCONNECT the last input wrote.
    pub fn disconnect(&self) -> Option<ReasonCode> {
        self.sent().into_iter().find_map(|p| match p {
            Packet::Disconnect(d) => Some(d.code),
            _ => None,
        })
    }

    /// The `Close` the last input queued.
    pub fn closed(&self) -> Option<CloseCause> {
        self.last.iter().find_map(|a| match a {
            Action::Close(c) => Some(*c),
            _ => None,
        })
    }

    /// The violation the last input reported.
    pub fn violation(&self) -> Option<Violation> {
        self.last.iter().find_map(|a| match a {
            Action::Violation(v) => Some(*v),
            _ => None,
        })
    }

    /// Asserts the last input ended the link for `violation`: the
    /// violation, then (v5) DISCONNECT with `code`, then the close.
    #[track_caller]
    pub fn assert_violation(&self, violation: Violation, code: u8) {
        assert_eq!(violation.reason_code(), ReasonCode(code), "{violation:?}");
        let tail: Vec<&str> = self
            .trace()
            .into_iter()
            .skip_while(|s| !s.starts_with("Violation("))
            .collect();
        let disconnect = format!("Disconnect(0x{code:02X})");
        assert_eq!(
            tail,
            [
                format!("Violation({violation:?})").as_str(),
                disconnect.as_str(),
                "Close(ProtocolError)",
            ],
            "whole trace: {:?}",
            self.trace
        );
    }

    /// The CONNACK the last input wrote.
    #[track_caller]
    pub fn connack(&self) -> &ConnAck {
        self.sent()
            .into_iter()
            .find_map(|p| match p {
                Packet::ConnAck(c) => Some(c),
                _ => None,
            })
            .expect("a CONNACK")
    }

    /// Deliveries the last input dropped.
    pub fn dropped(&self) -> u32 {
        self.dropped
    }

    /// Deliveries dropped since the harness was made.
    pub fn dropped_total(&self) -> u64 {
        self.dropped_total
    }

    /// The deadline of `timer` if armed.
    pub fn armed(&self, timer: Timer) -> Option<Tick> {
        self.wheel[timer.index()].map(|(at, _)| at)
    }

    /// When the last `Close` was queued (any input).
    pub fn closed_at(&self) -> Option<Tick> {
        self.closed_at
    }

    /// The clock.
    pub fn now(&self) -> Tick {
        self.now
    }

    /// Every packet written since the harness was made.
    pub fn wire(&self) -> &[Packet] {
        &self.wire
    }

    /// The routes the shard would hold for this session.
    pub fn routes(&self) -> Vec<&[u8]> {
        self.routes.iter().map(|r| &r[..]).collect()
    }

    /// Whether `EndSession` has been queued.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Whether the harness's link is attached and not closing.
    pub fn link_open(&self) -> bool {
        self.link.as_ref().is_some_and(|l| l.open)
    }

    // ----- plumbing -----

    fn begin(&mut self) {
        self.last.clear();
        self.trace.clear();
        self.topics.clear();
        self.dropped = 0;
    }

    fn feed(&mut self, packet: Packet) {
        self.session
            .handle_packet(packet, &self.policy, self.now, &mut self.out);
        self.absorb();
    }

    fn fire_at(&mut self, timer: Timer, at: Tick) {
        self.wheel[timer.index()] = None;
        self.now = self.now.max(at);
        self.trace.push(format!("Fire({timer:?}@{})", self.now.0));
        self.session.handle_timer(timer, self.now, &mut self.out);
        self.absorb();
    }

    /// Drains the outbox into the record, checking every packet and
    /// keeping the wheel and the link model.
    fn absorb(&mut self) {
        let dropped = self.out.take_dropped();
        self.dropped += dropped;
        self.dropped_total += u64::from(dropped);
        // Compact sends (a PUBLISH, an ack, PINGRESP, a forwarded message)
        // are recorded as the packets they write, so every check below
        // sees one kind of send.
        let steps: Vec<_> = self.out.steps().collect();
        for step in steps {
            assert!(self.policy.persistence, "a store step without persistence");
            let store = &mut self.store;
            self.session
                .store_events(step, &STORE_CLOCK, |e| store.apply(&e));
        }
        let forwarded = self.forwarded.take();
        let actions: Vec<Action> = self
            .out
            .drain()
            .map(|a| match a.packet(forwarded.as_ref()) {
                Some(packet) => Action::Send(Box::new(packet)),
                None => {
                    assert!(a != Action::Forward, "Forward outside a delivery");
                    a
                }
            })
            .collect();
        for action in actions {
            self.trace.push(describe(&action));
            match &action {
                Action::Send(packet) => self.check_sent(packet),
                Action::Close(_) => {
                    self.closed_at = Some(self.now);
                    if let Some(link) = self.link.as_mut() {
                        link.open = false;
                    }
                }
                Action::ArmTimer(timer, at) => {
                    assert!(*at > self.now, "{timer:?} armed at {at}, now {}", self.now);
                    self.arm_seq += 1;
                    self.wheel[timer.index()] = Some((*at, self.arm_seq));
                }
                Action::CancelTimer(timer) => self.wheel[timer.index()] = None,
                Action::AddRoute { filter, .. } => {
                    self.routes.insert(filter.clone());
                }
                Action::DropRoute { filter } => {
                    assert!(
                        self.routes.remove(filter),
                        "dropping unknown route {filter:?}"
                    );
                }
                Action::EndSession => {
                    assert!(
                        self.routes.is_empty(),
                        "session ended with routes {:?}",
                        self.routes
                    );
                    self.ended = true;
                }
                _ => {}
            }
            self.last.push(action);
        }
        let subscribed: BTreeSet<Bytes> = self
            .session
            .subscriptions()
            .map(|(f, _)| f.clone())
            .collect();
        assert_eq!(
            subscribed, self.routes,
            "session subscriptions and routes differ"
        );
        if self.ended {
            assert_eq!(self.wheel, [None; 3], "timers left armed after EndSession");
        }
        if self.policy.persistence {
            self.check_store();
        }
    }

    /// The journal's store against the session (see the module docs).
    fn check_store(&self) {
        let stored = self.store.sessions.get(self.session.client_id());
        if self.ended {
            assert_eq!(stored, None, "an ended session left in the store");
        } else if self.session.journals() && !self.taken_over {
            let want = self.session.export(self.session.left_at(), &STORE_CLOCK);
            assert_eq!(stored, Some(&want), "the journal drifted from the session");
        } else if !self.session.journals() {
            assert_eq!(stored, None, "a session that does not journal is stored");
        }
    }

    fn check_sent(&mut self, packet: &Packet) {
        let link = self
            .link
            .as_mut()
            .unwrap_or_else(|| panic!("{packet:?} written with no link attached"));
        assert!(link.open, "{packet:?} written after Close");
        let version = link.version;
        let mut buf = BytesMut::new();
        packet
            .encode(version, &mut buf)
            .unwrap_or_else(|e| panic!("{packet:?} does not encode: {e}"));
        assert_eq!(buf.len(), packet.encoded_len(version));
        let size = match packet {
            Packet::Publish(_) => buf.len(),
            other => other.encoded_len_without_diagnostics(version),
        };
        assert!(
            size <= link.max_packet_size as usize,
            "{size}-byte {:?} exceeds the client's Maximum Packet Size {}: {packet:?}",
            packet.packet_type(),
            link.max_packet_size
        );
        if let Packet::Publish(p) = packet {
            let topic =
                crate::client_aliases::client_topic(&mut link.aliases, link.topic_alias_maximum, p);
            self.topics.push(topic);
        }
        self.wire.push(packet.clone());
    }
}

/// The codes of the SUBACK the last call wrote.
pub fn suback_codes(h: &Harness) -> Vec<u8> {
    h.sent()
        .into_iter()
        .find_map(|p| match p {
            Packet::SubAck(s) => Some(s.codes.iter().map(|c| c.0).collect()),
            _ => None,
        })
        .expect("a SUBACK")
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

/// One action as a short string for order assertions.
pub fn describe(action: &Action) -> String {
    let text = |b: &Bytes| String::from_utf8_lossy(b).into_owned();
    match action {
        Action::Send(packet) => match &**packet {
            Packet::Publish(p) => format!("Publish({})", text(&p.topic)),
            Packet::PubAck(a) => format!("PubAck({})", a.packet_id),
            Packet::PubRec(a) => format!("PubRec({})", a.packet_id),
            Packet::PubRel(a) => format!("PubRel({})", a.packet_id),
            Packet::PubComp(a) => format!("PubComp({})", a.packet_id),
            Packet::Disconnect(d) => format!("Disconnect(0x{:02X})", d.code.0),
            other => format!("{:?}", other.packet_type()),
        },
        Action::Publish(p) => format!("Route({})", text(&p.topic)),
        Action::PublishWill(w) => format!("Will({})", text(&w.topic)),
        Action::AddRoute { filter, .. } => format!("AddRoute({})", text(filter)),
        Action::DropRoute { filter } => format!("DropRoute({})", text(filter)),
        Action::SendRetained { filter, .. } => format!("SendRetained({})", text(filter)),
        Action::ArmTimer(t, at) => format!("Arm({t:?}@{})", at.0),
        Action::CancelTimer(t) => format!("Cancel({t:?})"),
        Action::Violation(v) => format!("Violation({v:?})"),
        Action::Close(c) => format!("Close({c:?})"),
        Action::EndSession => "EndSession".to_owned(),
        // Recorded as `Send` by `absorb`; described for completeness.
        other => match other.packet(None) {
            Some(packet) => describe(&Action::Send(Box::new(packet))),
            None => format!("{other:?}"),
        },
    }
}

// ----- packet builders -----

/// A v5 CONNECT for `id`: clean start, keep-alive off, no properties.
pub fn v5(id: &str) -> Connect {
    Connect {
        protocol: ProtocolVersion::V5,
        clean_start: true,
        keep_alive: 0,
        client_id: Bytes::copy_from_slice(id.as_bytes()),
        will: None,
        username: None,
        password: None,
        properties: Properties::default(),
    }
}

/// A v3.1.1 CONNECT for `id`: clean session, keep-alive off.
pub fn v3(id: &str) -> Connect {
    Connect {
        protocol: ProtocolVersion::V3_1_1,
        ..v5(id)
    }
}

/// A will on `topic`, QoS 0, no delay.
pub fn will(topic: &str) -> Will {
    Will {
        topic: Bytes::copy_from_slice(topic.as_bytes()),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Properties::default(),
    }
}

/// Chained setters for a CONNECT.
pub trait ConnectExt: Sized {
    /// Clean Start / Clean Session.
    fn clean(self, clean: bool) -> Self;
    /// Keep Alive seconds.
    fn keep_alive(self, secs: u16) -> Self;
    /// v5 Session Expiry Interval.
    fn expiry(self, secs: u32) -> Self;
    /// A will with a v5 Will Delay Interval (0 = none given).
    fn will(self, will: Will, delay_secs: u32) -> Self;
    /// v5 Maximum Packet Size.
    fn max_packet(self, bytes: u32) -> Self;
    /// v5 Topic Alias Maximum.
    fn alias_max(self, n: u16) -> Self;
    /// v5 Receive Maximum.
    fn receive_max(self, n: u16) -> Self;
}

impl ConnectExt for Connect {
    fn clean(mut self, clean: bool) -> Self {
        self.clean_start = clean;
        self
    }
    fn keep_alive(mut self, secs: u16) -> Self {
        self.keep_alive = secs;
        self
    }
    fn expiry(mut self, secs: u32) -> Self {
        self.properties.session_expiry_interval = Some(secs);
        self
    }
    fn will(mut self, mut will: Will, delay_secs: u32) -> Self {
        if delay_secs > 0 {
            will.properties.will_delay_interval = Some(delay_secs);
        }
        self.will = Some(will);
        self
    }
    fn max_packet(mut self, bytes: u32) -> Self {
        self.properties.maximum_packet_size = Some(bytes);
        self
    }
    fn alias_max(mut self, n: u16) -> Self {
        self.properties.topic_alias_maximum = Some(n);
        self
    }
    fn receive_max(mut self, n: u16) -> Self {
        self.properties.receive_maximum = Some(n);
        self
    }
}

/// A PUBLISH on `topic` (packet id 1 unless QoS 0).
pub fn publish(topic: &str, qos: QoS, payload: &[u8]) -> Publish {
    Publish {
        dup: false,
        qos,
        retain: false,
        topic: Bytes::copy_from_slice(topic.as_bytes()),
        packet_id: if qos == QoS::AtMostOnce { 0 } else { 1 },
        properties: Properties::default().into(),
        payload: Bytes::copy_from_slice(payload),
    }
}

/// A routed message: QoS 2 at the source (deliveries pick their QoS).
pub fn message(topic: &str, payload: &[u8]) -> Publish {
    Publish {
        packet_id: 0,
        ..publish(topic, QoS::ExactlyOnce, payload)
    }
}

/// Chained setters for a PUBLISH.
pub trait PublishExt: Sized {
    /// Packet Identifier.
    fn id(self, id: u16) -> Self;
    /// DUP flag set.
    fn dup(self) -> Self;
    /// v5 Topic Alias.
    fn alias(self, alias: u16) -> Self;
    /// An empty topic (for an aliased PUBLISH).
    fn no_topic(self) -> Self;
}

impl PublishExt for Publish {
    fn id(mut self, id: u16) -> Self {
        self.packet_id = id;
        self
    }
    fn dup(mut self) -> Self {
        self.dup = true;
        self
    }
    fn alias(mut self, alias: u16) -> Self {
        self.properties.topic_alias = Some(alias);
        self
    }
    fn no_topic(mut self) -> Self {
        self.topic = Bytes::new();
        self
    }
}

/// Subscription options at `qos`, everything else default.
pub fn opts(qos: QoS) -> SubscriptionOptions {
    SubscriptionOptions {
        qos,
        ..SubscriptionOptions::default()
    }
}

/// SUBSCRIBE with `filters`.
pub fn subscribe(packet_id: u16, filters: &[(&str, SubscriptionOptions)]) -> Packet {
    Packet::Subscribe(Subscribe {
        packet_id,
        properties: Properties::default(),
        filters: filters
            .iter()
            .map(|(f, o)| (Bytes::copy_from_slice(f.as_bytes()), *o))
            .collect(),
    })
}

/// SUBSCRIBE with one Subscription Identifier.
pub fn subscribe_with_id(
    packet_id: u16,
    id: u32,
    filters: &[(&str, SubscriptionOptions)],
) -> Packet {
    let Packet::Subscribe(mut s) = subscribe(packet_id, filters) else {
        unreachable!()
    };
    s.properties.subscription_identifiers = vec![id];
    Packet::Subscribe(s)
}

/// UNSUBSCRIBE of `filters`.
pub fn unsubscribe(packet_id: u16, filters: &[&str]) -> Packet {
    Packet::Unsubscribe(Unsubscribe {
        packet_id,
        properties: Properties::default(),
        filters: filters
            .iter()
            .map(|f| Bytes::copy_from_slice(f.as_bytes()))
            .collect(),
    })
}

/// PUBACK.
pub fn puback(packet_id: u16) -> Packet {
    Packet::PubAck(PubAck {
        packet_id,
        code: ReasonCode::SUCCESS,
        properties: Properties::default(),
    })
}

/// PUBREC (success).
pub fn pubrec(packet_id: u16) -> Packet {
    Packet::PubRec(PubRec {
        packet_id,
        code: ReasonCode::SUCCESS,
        properties: Properties::default(),
    })
}

/// PUBREL (success).
pub fn pubrel(packet_id: u16) -> Packet {
    Packet::PubRel(PubRel {
        packet_id,
        code: ReasonCode::SUCCESS,
        properties: Properties::default(),
    })
}

/// PUBCOMP (success).
pub fn pubcomp(packet_id: u16) -> Packet {
    Packet::PubComp(PubComp {
        packet_id,
        code: ReasonCode::SUCCESS,
        properties: Properties::default(),
    })
}

/// DISCONNECT with `code`.
pub fn disconnect(code: u8) -> Packet {
    Packet::Disconnect(Disconnect {
        code: ReasonCode(code),
        properties: Properties::default(),
    })
}

/// DISCONNECT with `code` and a Session Expiry Interval.
pub fn disconnect_expiry(code: u8, secs: u32) -> Packet {
    Packet::Disconnect(Disconnect {
        code: ReasonCode(code),
        properties: Properties {
            session_expiry_interval: Some(secs),
            ..Properties::default()
        },
    })
}

/// The packet id of a PUBLISH.
pub fn ids(publishes: &[&Publish]) -> Vec<u16> {
    publishes.iter().map(|p| p.packet_id).collect()
}

/// The payloads of PUBLISHes, as text.
pub fn payloads(publishes: &[&Publish]) -> Vec<String> {
    publishes
        .iter()
        .map(|p| String::from_utf8_lossy(&p.payload).into_owned())
        .collect()
}
