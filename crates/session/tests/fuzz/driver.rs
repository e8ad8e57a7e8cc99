//! The connection core as a shard runs it, minus sockets and the clock,
//! with every output checked.
//!
//! [`Core`] holds a session table (client id -> [`Session`], with the
//! timer wheel and the routes the shard would keep for it) and the links
//! (connections) of one fuzz case. Bytes reach a link the way
//! `src/shard/frames.rs` cuts them: CONNECT (0x10) must come first, then
//! [`frame_len`] with the server's [`Limits`], then [`decode`] of the
//! whole frame, then `connect` / `handle_packet`; a decode error goes to
//! `Session::malformed` with its [`DecodeError::reason_code`] and closes
//! the link. Take-over, refusal, `connection_lost`, deliveries, timers and
//! shutdown follow `src/shard/driver.rs`.
//!
//! Checked on every call (a failure panics with what broke):
//! - every decode error maps to an error reason code (>= 0x80) and a
//!   message; `decode` and `decode_buf` agree; `decode` never answers a
//!   packet from fewer bytes than `frame_len` asked for, nor "need more"
//!   for a whole frame; a decoded packet encodes and decodes back to
//!   itself;
//! - nothing is written to a link after a `Close` was queued for it, or
//!   to no link at all; CONNACK is the first packet and comes once;
//! - every packet written encodes, its `encoded_len` is its size, it fits
//!   the client's Maximum Packet Size (trimmed of optional diagnostics as
//!   the shard's `encode_limited` does) and the client can decode it;
//! - a server DISCONNECT carries an error code, only goes to a v5 client
//!   and is followed by the close; a violation maps to an error code;
//! - the client's model of the server's QoS 1/2 flows: a new PUBLISH uses
//!   an id not in flight and stays within the client's Receive Maximum;
//!   DUP re-sends and PUBRELs only on resume and only for flows the client
//!   holds; every acknowledgement the server writes answers a packet of
//!   this call;
//! - topic aliases within the client's maximum, set before use;
//! - SUBACK / UNSUBACK / PINGRESP answer the packet handled, in size;
//! - timers are armed in the future and never re-arm forever; routes
//!   match subscriptions; an ended session holds no route, no timer;
//! - per call, the outbox holds at most a bound linear in the session's
//!   state and the packet handled; queues stay within their limits.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use ringmq_codec::{
    decode, decode_buf, frame_len, Bytes, BytesMut, Connect, DecodeError, Limits, Packet,
    PacketType, ProtocolVersion, Publish, QoS, ReasonCode,
};
use ringmq_session::{
    negotiate, refuse_connect, Action, CloseCause, Delivery, Outbox, ServerPolicy, Session, Tick,
    Timer, Violation,
};

use super::gen;
use super::rng::Rng;

/// Timer kinds, by [`Timer::index`].
const TIMERS: [Timer; 3] = [Timer::KeepAlive, Timer::WillDelay, Timer::SessionExpiry];

/// What the fuzzer saw, for the summary line.
#[derive(Debug, Default)]
pub struct Stats {
    /// Cases run.
    pub cases: u64,
    /// Links (connections) opened.
    pub links: u64,
    /// Bytes handed to the decode loop.
    pub bytes: u64,
    /// Frames cut by `frame_len`.
    pub frames: u64,
    /// Packets decoded, by type nibble.
    pub decoded: [u64; 16],
    /// Decode errors, one example and a count per variant.
    pub errors: HashMap<std::mem::Discriminant<DecodeError>, (DecodeError, u64)>,
    /// Violations reported.
    pub violations: HashMap<Violation, u64>,
    /// Packets written, by type nibble.
    pub sent: [u64; 16],
    /// CONNECTs accepted, refused, resumed (session present), taken over.
    pub connects: u64,
    /// CONNECTs refused by negotiation.
    pub refused: u64,
    /// CONNACKs with session present.
    pub resumed: u64,
    /// Take-overs.
    pub takeovers: u64,
    /// DUP PUBLISHes and PUBRELs re-sent on resume.
    pub resent: u64,
    /// Deliveries offered.
    pub deliveries: u64,
    /// Deliveries the session dropped.
    pub dropped: u64,
    /// Timers fired.
    pub timers: u64,
    /// Keep-alive timeouts.
    pub keepalive_timeouts: u64,
    /// Wills published.
    pub wills: u64,
    /// Sessions ended.
    pub ended: u64,
    /// Known findings hit (see [`known`]).
    pub known: BTreeMap<&'static str, u64>,
}

impl Stats {
    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: Stats) {
        self.cases += other.cases;
        self.links += other.links;
        self.bytes += other.bytes;
        self.frames += other.frames;
        for i in 0..16 {
            self.decoded[i] += other.decoded[i];
            self.sent[i] += other.sent[i];
        }
        for (k, (e, n)) in other.errors {
            self.errors.entry(k).or_insert((e, 0)).1 += n;
        }
        for (k, n) in other.violations {
            *self.violations.entry(k).or_insert(0) += n;
        }
        self.connects += other.connects;
        self.refused += other.refused;
        self.resumed += other.resumed;
        self.takeovers += other.takeovers;
        self.resent += other.resent;
        self.deliveries += other.deliveries;
        self.dropped += other.dropped;
        self.timers += other.timers;
        self.keepalive_timeouts += other.keepalive_timeouts;
        self.wills += other.wills;
        self.ended += other.ended;
        for (k, n) in other.known {
            *self.known.entry(k).or_insert(0) += n;
        }
    }
}

/// One server -> client QoS flow as the client sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flow {
    /// PUBLISH received at this QoS, not acknowledged (PUBACK / PUBREC).
    Published(QoS),
    /// PUBREC sent; awaiting PUBCOMP.
    Released,
}

/// One session as the shard's table keeps it.
struct Entry {
    client_id: Bytes,
    session: Session,
    /// Deadline and arm order per timer kind.
    wheel: [Option<(Tick, u64)>; 3],
    routes: BTreeSet<Bytes>,
    /// The link attached, if any.
    link: Option<usize>,
    /// The client's view of the server's QoS 1/2 flows (it survives
    /// connections, as the session does).
    flows: BTreeMap<u16, Flow>,
    /// The will of the last CONNECT has not been published yet.
    will_armed: bool,
    /// The largest window any connection of this session granted.
    max_window: usize,
}

/// One network connection.
#[derive(Default)]
struct Link {
    /// Bytes read and not yet cut into a packet.
    pending: BytesMut,
    /// Set by its CONNECT.
    version: Option<ProtocolVersion>,
    /// The session attached (table slot).
    session: Option<usize>,
    /// The shard reads no more from it.
    read_closed: bool,
    /// A `Close` was queued: nothing more may be written.
    closed: bool,
    close_cause: Option<CloseCause>,
    /// The socket is gone (`connection_lost` done, or taken over).
    gone: bool,
    connacked: bool,
    /// The client's Maximum Packet Size, Topic Alias Maximum and Receive
    /// Maximum.
    client_max: u32,
    alias_max: u16,
    receive_max: u16,
    /// Aliases the server set, as the client resolves them.
    aliases: HashMap<u16, Bytes>,
    /// PUBRECs the server sent: the client owes PUBREL for these ids.
    pubrecs: BTreeSet<u16>,
}

/// What the call being absorbed was, for the answer checks.
#[derive(Clone, Copy)]
enum Call<'a> {
    /// `Session::connect`; `present`: the CONNACK must say so.
    Connect {
        present: bool,
    },
    /// `Session::handle_packet` of this packet.
    Packet(&'a Packet),
    /// `Session::deliver` of this message.
    Deliver(&'a Publish),
    Timer,
    Lost,
    TakenOver,
    /// `Session::malformed` (or the v3 CONNACK 0x01 before a session).
    Malformed(ReasonCode),
    /// `refuse_connect` with this code.
    Refused(ReasonCode),
    Shutdown,
}

/// The connection core of one case.
pub struct Core {
    pub policy: ServerPolicy,
    limits: Limits,
    /// After a session's `Close`, keep handing it the rest of the read (the
    /// shard stops; the session must ignore it anyway).
    feed_after_close: bool,
    /// Known findings fail the case instead of being counted.
    strict: bool,
    now: Tick,
    arm_seq: u64,
    entries: Vec<Option<Entry>>,
    links: Vec<Link>,
    out: Outbox,
    assigned: u64,
    /// Messages clients published (routed), delivered again later.
    routed: Vec<Publish>,
    pub stats: Stats,
}

impl Core {
    /// A core under `policy`; the decode limit is the policy's.
    pub fn new(policy: ServerPolicy, feed_after_close: bool, strict: bool) -> Self {
        let limits = Limits {
            max_packet_size: policy.max_packet_size,
        };
        Self {
            policy,
            limits,
            feed_after_close,
            strict,
            now: Tick(0),
            arm_seq: 0,
            entries: Vec::new(),
            links: Vec::new(),
            out: Outbox::new(),
            assigned: 0,
            routed: Vec::new(),
            stats: Stats::default(),
        }
    }

    /// The clock.
    pub fn now(&self) -> Tick {
        self.now
    }

    /// Opens a new link; returns its index.
    pub fn open(&mut self) -> usize {
        self.stats.links += 1;
        self.links.push(Link {
            client_max: ringmq_codec::MAX_PACKET_SIZE,
            receive_max: u16::MAX,
            ..Link::default()
        });
        self.links.len() - 1
    }

    /// Whether the link takes bytes.
    pub fn readable(&self, link: usize) -> bool {
        let l = &self.links[link];
        !l.gone && !l.read_closed
    }

    /// Whether the link has a session attached and is not closing.
    pub fn live(&self, link: usize) -> bool {
        let l = &self.links[link];
        l.session.is_some() && !l.closed && !l.gone
    }

    /// The version of the link's CONNECT.
    pub fn version(&self, link: usize) -> Option<ProtocolVersion> {
        self.links[link].version
    }

    /// Links whose `Close` was queued but whose socket is not yet gone.
    pub fn closing_links(&self) -> Vec<usize> {
        (0..self.links.len())
            .filter(|&l| self.links[l].closed && !self.links[l].gone)
            .collect()
    }

    /// The answers a well-behaved client of `link` owes: acknowledgements
    /// of the server's flows it holds and PUBRELs for the PUBRECs it got.
    pub fn replies(&self, rng: &mut Rng, link: usize) -> Vec<Packet> {
        let l = &self.links[link];
        let (Some(version), Some(e)) = (l.version, l.session) else {
            return Vec::new();
        };
        let entry = self.entries[e].as_ref().expect("attached session exists");
        let mut out = Vec::new();
        for (&id, &flow) in &entry.flows {
            if rng.chance(1, 4) {
                continue;
            }
            let kind = match flow {
                Flow::Published(QoS::AtLeastOnce) => 0,
                Flow::Published(_) => 1,
                Flow::Released => 2,
            };
            // Now and then the wrong acknowledgement for the flow.
            let kind = if rng.chance(1, 12) {
                rng.below(3) as u8
            } else {
                kind
            };
            out.push(gen::ack(rng, version, kind, id));
        }
        for &id in &l.pubrecs {
            if rng.chance(3, 4) {
                out.push(gen::ack(rng, version, 3, id));
            }
        }
        if rng.chance(1, 4) {
            let i = rng.size(0, out.len());
            out.insert(i, Packet::PingReq);
        }
        if out.len() > 1 && rng.chance(1, 5) {
            let (a, b) = (rng.size(0, out.len() - 1), rng.size(0, out.len() - 1));
            out.swap(a, b);
        }
        out
    }

    // ----- inputs -----

    /// One read of `bytes` on `link`, stamped now: every whole packet is
    /// cut out, decoded and handled, as `src/shard/frames.rs` does.
    pub fn read(&mut self, link: usize, bytes: &[u8], rng: &mut Rng) {
        if !self.readable(link) {
            return;
        }
        self.stats.bytes += bytes.len() as u64;
        self.links[link].pending.extend_from_slice(bytes);
        loop {
            let l = &self.links[link];
            if l.read_closed || l.gone {
                self.links[link].pending.clear();
                return;
            }
            let connected = l.session.is_some();
            if !connected && l.pending.first().is_some_and(|b| *b != 0x10) {
                // MQTT-3.1.0-1: the shard closes without a word.
                self.not_connect(link);
                continue;
            }
            let version = l.version.unwrap_or(ProtocolVersion::V3_1_1);
            let len = match frame_len(&l.pending, &self.limits) {
                Ok(Some(len)) => len,
                Ok(None) => {
                    self.check_partial(link, version, rng);
                    return;
                }
                Err(e) => {
                    self.decode_error(link, &e);
                    continue;
                }
            };
            if l.pending.len() < len {
                self.check_partial(link, version, rng);
                return;
            }
            self.stats.frames += 1;
            let frame = self.links[link].pending.split_to(len).freeze();
            let result = decode(&frame, version, &self.limits);
            check_decode_buf(&frame, version, &self.limits, &result);
            let packet = match result {
                Ok(Some((packet, used))) => {
                    assert_eq!(used, len, "decode used {used} of a {len}-byte frame");
                    check_round_trip(&packet, version);
                    packet
                }
                Ok(None) => panic!(
                    "decode asks for more bytes of a whole {len}-byte frame: {:02x?}",
                    &frame[..]
                ),
                Err(e) => {
                    self.decode_error(link, &e);
                    continue;
                }
            };
            self.stats.decoded[packet_type_index(&packet)] += 1;
            if connected {
                self.packet(link, packet);
                continue;
            }
            match packet {
                Packet::Connect(connect) => self.connect(link, &connect),
                _ => self.not_connect(link),
            }
        }
    }

    /// A delivery routed to one of the sessions (picked by `rng`).
    pub fn deliver(&mut self, rng: &mut Rng) {
        let alive: Vec<usize> = (0..self.entries.len())
            .filter(|&e| self.entries[e].is_some())
            .collect();
        if alive.is_empty() {
            return;
        }
        let e = rng.pick(&alive);
        let message = if !self.routed.is_empty() && rng.coin() {
            rng.pick(&self.routed)
        } else {
            gen::message(rng)
        };
        let qos = message.qos.min(gen::qos(rng));
        let ids = gen::subscription_ids(rng);
        let expires_at = match message.properties.message_expiry_interval {
            Some(secs) if rng.chance(3, 4) => Some(self.now.add_secs(u64::from(secs))),
            _ if rng.chance(1, 10) => Some(Tick(self.now.0.saturating_sub(rng.below(3000)))),
            _ => None,
        };
        let delivery = Delivery {
            qos,
            retain: rng.chance(1, 4),
            ids: &ids,
            expires_at,
        };
        self.stats.deliveries += 1;
        let bound = self.bound(Some(e), ids.len());
        let link = self.entries[e].as_ref().and_then(|x| x.link);
        let entry = self.entries[e].as_mut().expect("alive");
        entry
            .session
            .deliver(&message, delivery, &self.policy, self.now, &mut self.out);
        self.absorb(Some(e), link, Call::Deliver(&message), bound);
    }

    /// Moves the clock `ms` on, firing the timers that come due, each at
    /// its own deadline, in deadline order (a tie in arm order).
    pub fn advance(&mut self, ms: u64) {
        let target = self.now.add_ms(ms);
        for _ in 0..10_000 {
            let due = self
                .entries
                .iter()
                .enumerate()
                .filter_map(|(e, x)| x.as_ref().map(|x| (e, x)))
                .flat_map(|(e, x)| {
                    TIMERS
                        .iter()
                        .filter_map(move |&t| x.wheel[t.index()].map(|(at, seq)| (at, seq, e, t)))
                })
                .filter(|&(at, ..)| at <= target)
                .min_by_key(|&(at, seq, ..)| (at, seq));
            let Some((at, _, e, timer)) = due else {
                self.now = target;
                return;
            };
            self.now = self.now.max(at);
            self.fire(e, timer);
        }
        panic!("timers keep re-arming at or before {target}");
    }

    /// The ms until the next armed deadline, if any.
    pub fn next_deadline_in(&self) -> Option<u64> {
        self.entries
            .iter()
            .flatten()
            .flat_map(|x| x.wheel.iter().flatten())
            .map(|(at, _)| at.0.saturating_sub(self.now.0))
            .min()
    }

    /// The socket of `link` is closed: its session learns why (the cause
    /// of its `Close`, or a network error).
    pub fn lost(&mut self, link: usize) {
        let l = &mut self.links[link];
        if l.gone {
            return;
        }
        l.gone = true;
        l.read_closed = true;
        let cause = l.close_cause.unwrap_or(CloseCause::NetworkError);
        let Some(e) = l.session.take() else {
            return;
        };
        let bound = self.bound(Some(e), 0);
        let entry = self.entries[e].as_mut().expect("attached session exists");
        assert_eq!(entry.link, Some(link));
        entry.link = None;
        entry
            .session
            .connection_lost(cause, self.now, &mut self.out);
        self.absorb(Some(e), None, Call::Lost, bound);
    }

    /// The broker shuts down: every attached session says so.
    pub fn shutdown(&mut self) {
        for e in 0..self.entries.len() {
            let Some(link) = self.entries[e].as_ref().and_then(|x| x.link) else {
                continue;
            };
            let bound = self.bound(Some(e), 0);
            let entry = self.entries[e].as_mut().expect("alive");
            entry.session.shutdown(&mut self.out);
            self.absorb(Some(e), Some(link), Call::Shutdown, bound);
        }
    }

    /// End of a case: every socket closes, then the clock runs far enough
    /// for every will delay and finite session expiry to pass.
    pub fn finish(&mut self) {
        for link in 0..self.links.len() {
            self.lost(link);
        }
        // u32::MAX seconds of will delay is the longest wait there is.
        self.advance((u64::from(u32::MAX) + 1) * 1000);
        for entry in self.entries.iter().flatten() {
            assert!(entry.link.is_none());
            assert_eq!(
                entry.session.session_expiry_secs(),
                u32::MAX,
                "session {:?} outlived its expiry",
                entry.client_id
            );
        }
    }

    // ----- the shard's steps -----

    fn not_connect(&mut self, link: usize) {
        let l = &mut self.links[link];
        l.read_closed = true;
        l.closed = true;
        l.close_cause.get_or_insert(CloseCause::ProtocolError);
        l.pending.clear();
    }

    /// `Core::on_decode_error`: the session (if any) says why, or an
    /// unknown protocol level is answered with CONNACK 0x01; then close.
    fn decode_error(&mut self, link: usize, error: &DecodeError) {
        let code = error.reason_code();
        assert!(
            code.is_error(),
            "decode error {error:?} maps to non-error reason code {code}"
        );
        assert!(!error.to_string().is_empty(), "{error:?} has no message");
        let slot = self
            .stats
            .errors
            .entry(std::mem::discriminant(error))
            .or_insert_with(|| (error.clone(), 0));
        slot.1 += 1;
        let session = self.links[link].session;
        if let Some(e) = session {
            let bound = self.bound(Some(e), 0);
            let entry = self.entries[e].as_mut().expect("attached session exists");
            entry.session.malformed(code, &mut self.out);
            self.absorb(Some(e), Some(link), Call::Malformed(code), bound);
        } else if code == ReasonCode::UNSUPPORTED_PROTOCOL_VERSION {
            self.links[link].version = Some(ProtocolVersion::V3_1_1);
            refuse_connect(ReasonCode(0x01), &mut self.out);
            self.absorb(None, Some(link), Call::Malformed(code), 64);
        }
        // Whatever the session decided, these bytes end the connection.
        self.out.push(Action::Close(CloseCause::ProtocolError));
        self.absorb(session, Some(link), Call::Malformed(code), 64);
        let l = &mut self.links[link];
        l.read_closed = true;
        l.pending.clear();
    }

    /// `Core::on_connect`: negotiation, take-over, the session's connect.
    fn connect(&mut self, link: usize, connect: &Connect) {
        let version = connect.protocol;
        let v5 = version.is_v5();
        self.links[link].version = Some(version);
        let negotiated = match negotiate(connect, &self.policy) {
            Ok(n) => n,
            Err(refusal) => {
                self.stats.refused += 1;
                if v5 {
                    assert!(refusal.code.is_error(), "v5 refusal {}", refusal.code);
                } else {
                    assert!(
                        (1..=5).contains(&refusal.code.0),
                        "v3 refusal {}",
                        refusal.code
                    );
                }
                refuse_connect(refusal.code, &mut self.out);
                self.absorb(None, Some(link), Call::Refused(refusal.code), 64);
                // No session to ignore the rest: the shard stops reading.
                self.links[link].read_closed = true;
                return;
            }
        };
        self.stats.connects += 1;
        let assigned = negotiated.assign_client_id.then(|| {
            self.assigned += 1;
            Bytes::from(format!("auto-{}", self.assigned))
        });
        let client_id = assigned
            .clone()
            .unwrap_or_else(|| connect.client_id.clone());
        let found = (0..self.entries.len()).find(|&e| {
            self.entries[e]
                .as_ref()
                .is_some_and(|x| x.client_id == client_id)
        });
        // A session with expiry 0 ends at a take-over (MQTT 5 3.1.4): the
        // newcomer never finds it present.
        let mut ended_by_takeover = false;
        if let Some(e) = found {
            let old = self.entries[e].as_ref().and_then(|x| x.link);
            if let Some(old) = old {
                ended_by_takeover = self.entries[e]
                    .as_ref()
                    .is_some_and(|x| x.session.session_expiry_secs() == 0);
                // MQTT-3.1.4-3: the old connection is closed first.
                self.stats.takeovers += 1;
                let bound = self.bound(Some(e), 0);
                let entry = self.entries[e].as_mut().expect("found");
                entry.session.taken_over(connect.clean_start, &mut self.out);
                self.absorb(Some(e), Some(old), Call::TakenOver, bound);
                if let Some(entry) = self.entries[e].as_mut() {
                    entry.link = None;
                }
                let l = &mut self.links[old];
                l.session = None;
                l.gone = true;
                l.read_closed = true;
            }
        }
        // The take-over may have ended the session (clean start publishes
        // a delayed will, but never ends it: only expiry does).
        let found = found.filter(|&e| self.entries[e].is_some());
        let e = match found {
            Some(e) => e,
            None => {
                self.entries.push(Some(Entry {
                    client_id: client_id.clone(),
                    session: Session::new(client_id, version),
                    wheel: [None; 3],
                    routes: BTreeSet::new(),
                    link: None,
                    flows: BTreeMap::new(),
                    will_armed: false,
                    max_window: 0,
                }));
                self.entries.len() - 1
            }
        };
        let present = found.is_some() && !connect.clean_start && !ended_by_takeover;
        let receive_max = if v5 {
            connect.properties.receive_maximum.unwrap_or(u16::MAX)
        } else {
            u16::MAX
        };
        let l = &mut self.links[link];
        l.session = Some(e);
        l.client_max = negotiated.client_max_packet_size;
        l.alias_max = if v5 {
            connect.properties.topic_alias_maximum.unwrap_or(0)
        } else {
            0
        };
        l.receive_max = receive_max;
        let bound = self.bound(Some(e), 0);
        let entry = self.entries[e].as_mut().expect("just found or made");
        entry.link = Some(link);
        entry.max_window = entry.max_window.max(usize::from(receive_max.max(1)));
        entry.session.connect(
            connect,
            &negotiated,
            &self.policy,
            assigned.as_ref(),
            self.now,
            &mut self.out,
        );
        self.absorb(Some(e), Some(link), Call::Connect { present }, bound);
        if let Some(entry) = self.entries[e].as_mut() {
            entry.will_armed = connect.will.is_some();
        }
    }

    /// A packet after CONNECT: the client's model of the server's flows
    /// learns from it first (if the session will act on it), then the
    /// session handles it.
    fn packet(&mut self, link: usize, packet: Packet) {
        let Some(e) = self.links[link].session else {
            return;
        };
        let extra = match &packet {
            Packet::Subscribe(s) => s.filters.len(),
            Packet::Unsubscribe(u) => u.filters.len(),
            _ => 0,
        };
        let bound = self.bound(Some(e), extra);
        if !self.links[link].closed {
            let entry = self.entries[e].as_mut().expect("attached session exists");
            let flows = &mut entry.flows;
            let held = |id: &u16| flows.get(id).copied();
            match &packet {
                Packet::PubAck(a)
                    if held(&a.packet_id) == Some(Flow::Published(QoS::AtLeastOnce)) =>
                {
                    flows.remove(&a.packet_id);
                }
                Packet::PubRec(r)
                    if held(&r.packet_id) == Some(Flow::Published(QoS::ExactlyOnce)) =>
                {
                    if r.code.is_error() {
                        flows.remove(&r.packet_id);
                    } else {
                        flows.insert(r.packet_id, Flow::Released);
                    }
                }
                Packet::PubComp(c) if held(&c.packet_id) == Some(Flow::Released) => {
                    flows.remove(&c.packet_id);
                }
                Packet::PubRel(r) => {
                    self.links[link].pubrecs.remove(&r.packet_id);
                }
                _ => {}
            }
        }
        let entry = self.entries[e].as_mut().expect("attached session exists");
        entry
            .session
            .handle_packet(packet.clone(), &self.policy, self.now, &mut self.out);
        self.absorb(Some(e), Some(link), Call::Packet(&packet), bound);
        if self.links[link].closed && !self.feed_after_close {
            // The shard stops reading a link whose close it was asked for.
            self.links[link].read_closed = true;
        }
    }

    fn fire(&mut self, e: usize, timer: Timer) {
        self.stats.timers += 1;
        let bound = self.bound(Some(e), 0);
        let entry = self.entries[e]
            .as_mut()
            .expect("armed timers belong to live sessions");
        entry.wheel[timer.index()] = None;
        let link = entry.link;
        entry.session.handle_timer(timer, self.now, &mut self.out);
        self.absorb(Some(e), link, Call::Timer, bound);
    }

    // ----- checks -----

    /// Most actions (and dropped deliveries) one call may produce: linear
    /// in what the session holds plus what the input carries.
    fn bound(&self, e: Option<usize>, extra: usize) -> usize {
        let held = e.and_then(|e| self.entries[e].as_ref()).map_or(0, |x| {
            let (inflight, queued) = x.session.outbound_len();
            inflight + queued + x.session.subscriptions().count()
        });
        64 + 4 * (held + extra)
    }

    /// `decode` never answers a packet before its frame is whole.
    fn check_partial(&self, link: usize, version: ProtocolVersion, rng: &mut Rng) {
        let pending = &self.links[link].pending;
        if pending.is_empty() || !rng.chance(1, 4) {
            return;
        }
        let partial = Bytes::copy_from_slice(pending);
        if let Ok(Some((p, n))) = decode(&partial, version, &self.limits) {
            panic!(
                "decode answered {p:?} ({n} bytes) from a partial frame {:02x?}",
                &partial[..]
            );
        }
    }

    /// Drains the outbox of one call on session `e`, for `link`, checking
    /// every action; then the session-wide invariants.
    fn absorb(&mut self, e: Option<usize>, link: Option<usize>, call: Call<'_>, bound: usize) {
        let dropped = self.out.take_dropped();
        self.stats.dropped += u64::from(dropped);
        assert!(
            dropped as usize <= bound,
            "{dropped} drops in one call (bound {bound})"
        );
        let actions: Vec<Action> = self.out.drain().collect();
        assert!(
            actions.len() <= bound,
            "{} actions in one call (bound {bound}): {actions:?}",
            actions.len()
        );
        let forwarded = match call {
            Call::Deliver(m) => Some(m),
            _ => None,
        };
        // On resume the client's flows are rebuilt from the re-sends.
        let mut old_flows = None;
        if let (Call::Connect { present }, Some(e)) = (call, e) {
            let entry = self.entries[e].as_mut().expect("connecting session");
            let flows = std::mem::take(&mut entry.flows);
            if present {
                old_flows = Some(flows);
            }
        }
        let mut violation: Option<Violation> = None;
        let mut disconnect_at = None;
        let mut close_at = None;
        let mut ended = false;
        for (i, action) in actions.iter().enumerate() {
            if let Some(packet) = action.packet(forwarded) {
                if let Packet::Disconnect(d) = &packet {
                    disconnect_at.get_or_insert(i);
                    if let Some(v) = violation {
                        assert_eq!(d.code, v.reason_code(), "DISCONNECT after {v:?}");
                    }
                    if let Call::Malformed(code) = call {
                        // A CONNACK-only code becomes a Protocol Error.
                        let expected = if code.allowed_in_disconnect() {
                            code
                        } else {
                            ReasonCode::PROTOCOL_ERROR
                        };
                        assert_eq!(d.code, expected, "DISCONNECT after a decode error");
                    }
                }
                self.check_sent(e, link, &packet, call, old_flows.as_ref());
                continue;
            }
            assert!(*action != Action::Forward, "Forward outside a delivery");
            match action {
                Action::Close(cause) => {
                    close_at.get_or_insert(i);
                    if *cause == CloseCause::KeepAliveTimeout {
                        self.stats.keepalive_timeouts += 1;
                    }
                    let l = link.unwrap_or_else(|| panic!("Close({cause:?}) with no link"));
                    let l = &mut self.links[l];
                    l.closed = true;
                    l.close_cause.get_or_insert(*cause);
                }
                Action::Violation(v) => {
                    assert!(v.reason_code().is_error(), "{v:?} -> {}", v.reason_code());
                    assert!(!v.to_string().is_empty());
                    *self.stats.violations.entry(*v).or_insert(0) += 1;
                    violation = Some(*v);
                }
                Action::ArmTimer(timer, at) => {
                    assert!(*at > self.now, "{timer:?} armed at {at}, now {}", self.now);
                    self.arm_seq += 1;
                    let entry = self.entries[e.expect("timer of a session")]
                        .as_mut()
                        .expect("live");
                    entry.wheel[timer.index()] = Some((*at, self.arm_seq));
                }
                Action::CancelTimer(timer) => {
                    let entry = self.entries[e.expect("timer of a session")]
                        .as_mut()
                        .expect("live");
                    entry.wheel[timer.index()] = None;
                }
                Action::AddRoute { filter, .. } => {
                    let entry = self.entries[e.expect("route of a session")]
                        .as_mut()
                        .expect("live");
                    entry.routes.insert(filter.clone());
                }
                Action::DropRoute { filter } => {
                    let entry = self.entries[e.expect("route of a session")]
                        .as_mut()
                        .expect("live");
                    assert!(
                        entry.routes.remove(filter),
                        "dropping unknown route {filter:?}"
                    );
                }
                Action::SendRetained { filter, .. } => {
                    let entry = self.entries[e.expect("route of a session")]
                        .as_ref()
                        .expect("live");
                    assert!(
                        entry.routes.contains(filter),
                        "retained for {filter:?} without its route"
                    );
                }
                Action::EndSession => {
                    let entry = self.entries[e.expect("a session ends")]
                        .as_ref()
                        .expect("live");
                    assert!(
                        entry.routes.is_empty(),
                        "session ended with routes {:?}",
                        entry.routes
                    );
                    assert!(!entry.session.is_connected(), "ended while connected");
                    ended = true;
                }
                Action::PublishWill(will) => {
                    self.stats.wills += 1;
                    assert!(!will.topic.is_empty());
                    let entry = self.entries[e.expect("a session's will")]
                        .as_mut()
                        .expect("live");
                    assert!(entry.will_armed, "will published twice: {will:?}");
                    entry.will_armed = false;
                }
                Action::Publish(p) => {
                    assert!(
                        matches!(call, Call::Packet(Packet::Publish(_))),
                        "a route outside a client PUBLISH"
                    );
                    assert!(!p.topic.is_empty(), "routed with no topic: {p:?}");
                    assert!(p.properties.topic_alias.is_none(), "routed with alias");
                    assert!(p.packet_id == 0 && !p.dup, "hop-only fields routed: {p:?}");
                    if self.routed.len() < 8 {
                        self.routed.push(p.clone());
                    } else {
                        let i = (self.arm_seq as usize) % 8;
                        self.routed[i] = p.clone();
                    }
                }
                _ => {}
            }
        }
        if let Some(v) = violation {
            assert!(close_at.is_some(), "{v:?} without a Close: {actions:?}");
        }
        if let Some(d) = disconnect_at {
            assert!(
                close_at.is_some_and(|c| c > d),
                "DISCONNECT without a Close after it: {actions:?}"
            );
        }
        if let (Some(old), Some(e)) = (old_flows, e) {
            // Flows the client held and the server did not re-send were
            // discarded (too large for the new Maximum Packet Size): each
            // is counted as dropped, and none was past PUBREC.
            let entry = self.entries[e].as_ref().expect("connected");
            let mut missing = 0;
            for (id, flow) in old {
                if !entry.flows.contains_key(&id) {
                    assert!(
                        matches!(flow, Flow::Published(_)),
                        "PUBREL for {id} not re-sent on resume"
                    );
                    missing += 1;
                }
            }
            assert!(
                missing <= dropped,
                "{missing} flows vanished on resume, {dropped} counted dropped"
            );
        }
        let Some(e) = e else {
            return;
        };
        let entry = self.entries[e].as_ref().expect("live");
        let subscribed: BTreeSet<Bytes> = entry
            .session
            .subscriptions()
            .map(|(f, _)| f.clone())
            .collect();
        assert_eq!(subscribed, entry.routes, "subscriptions and routes differ");
        let (inflight, queued) = entry.session.outbound_len();
        assert!(
            queued <= self.policy.max_queued_messages,
            "{queued} queued, limit {}",
            self.policy.max_queued_messages
        );
        assert!(
            inflight <= entry.max_window,
            "{inflight} inflight, window {}",
            entry.max_window
        );
        if ended {
            assert_eq!(entry.wheel, [None; 3], "timers left after EndSession");
            self.stats.ended += 1;
            self.entries[e] = None;
        }
    }

    /// One packet written to `link` by a call on session `e`.
    fn check_sent(
        &mut self,
        e: Option<usize>,
        link: Option<usize>,
        packet: &Packet,
        call: Call<'_>,
        old_flows: Option<&BTreeMap<u16, Flow>>,
    ) {
        let index = link.unwrap_or_else(|| panic!("{packet:?} written with no link attached"));
        let policy_max_qos = self.policy.max_qos;
        let l = &mut self.links[index];
        assert!(!l.closed, "{packet:?} written after Close");
        assert!(!l.gone, "{packet:?} written to a closed socket");
        let version = l
            .version
            .unwrap_or_else(|| panic!("{packet:?} written before CONNECT"));
        self.stats.sent[packet_type_index(packet)] += 1;

        // Encodes, at its announced size, within the client's maximum,
        // and the client reads back what was meant.
        let mut buf = BytesMut::new();
        packet
            .encode(version, &mut buf)
            .unwrap_or_else(|e| panic!("{packet:?} does not encode: {e}"));
        assert_eq!(buf.len(), packet.encoded_len(version), "{packet:?}");
        let mut wire = BytesMut::new();
        let size = match packet.encode_limited(version, l.client_max, &mut wire) {
            Ok(size) => size,
            Err(e) if !matches!(packet, Packet::Publish(_)) => {
                // Finding 3: only PUBLISH is fitted to the client.
                let _ = e;
                known(&mut self.stats, self.strict, KNOWN_OVERSIZE);
                packet.encode(version, &mut wire).expect("encoded above");
                wire.len()
            }
            Err(e) => panic!(
                "{packet:?} does not fit the client's Maximum Packet Size {}: {e}",
                l.client_max
            ),
        };
        assert_eq!(size, wire.len());
        let client_limits = Limits {
            max_packet_size: l.client_max.max(size as u32),
        };
        let wire = wire.freeze();
        if let Some(what) = known_unreadable(packet, version) {
            known(&mut self.stats, self.strict, what);
        } else {
            check_client_reads(packet, &wire, &buf, size, version, &client_limits);
        }

        if !l.connacked {
            assert!(
                matches!(packet, Packet::ConnAck(_)),
                "{packet:?} before CONNACK"
            );
        }
        let entry = e.and_then(|e| self.entries[e].as_mut());
        match packet {
            Packet::ConnAck(c) => {
                assert!(!l.connacked, "second CONNACK");
                l.connacked = true;
                match call {
                    Call::Connect { present } => {
                        assert_eq!(c.code, ReasonCode::SUCCESS);
                        assert_eq!(c.session_present, present, "CONNACK session present");
                        if present {
                            self.stats.resumed += 1;
                        }
                    }
                    Call::Refused(code) => assert_eq!(c.code, code),
                    Call::Malformed(ReasonCode::UNSUPPORTED_PROTOCOL_VERSION) => {
                        assert_eq!(c.code, ReasonCode(0x01))
                    }
                    _ => panic!("CONNACK outside CONNECT"),
                }
            }
            Packet::Disconnect(d) => {
                assert!(version.is_v5(), "DISCONNECT to a {version:?} client");
                assert!(d.code.is_error(), "server DISCONNECT with {}", d.code);
            }
            Packet::Publish(p) => {
                let topic = crate::client_aliases::client_topic(&mut l.aliases, l.alias_max, p);
                assert!(!topic.is_empty());
                if p.qos == QoS::AtMostOnce {
                    assert!(p.packet_id == 0 && !p.dup, "QoS 0 with id or DUP: {p:?}");
                    return;
                }
                assert_ne!(p.packet_id, 0, "QoS {:?} PUBLISH with id 0", p.qos);
                let entry = entry.expect("a PUBLISH of a session");
                if p.dup {
                    self.stats.resent += 1;
                    let old = old_flows.unwrap_or_else(|| panic!("DUP outside a resume: {p:?}"));
                    assert_eq!(
                        old.get(&p.packet_id),
                        Some(&Flow::Published(p.qos)),
                        "DUP re-send of a flow the client does not hold"
                    );
                    assert!(
                        entry
                            .flows
                            .insert(p.packet_id, Flow::Published(p.qos))
                            .is_none(),
                        "id {} re-sent twice",
                        p.packet_id
                    );
                } else {
                    assert!(
                        !entry.flows.contains_key(&p.packet_id),
                        "packet id {} reused while in flight: {:?}",
                        p.packet_id,
                        entry.flows
                    );
                    assert!(
                        entry.flows.len() < usize::from(l.receive_max),
                        "window: {} in flight, client Receive Maximum {}",
                        entry.flows.len(),
                        l.receive_max
                    );
                    entry.flows.insert(p.packet_id, Flow::Published(p.qos));
                }
            }
            Packet::PubRel(r) => {
                let entry = entry.expect("a PUBREL of a session");
                match call {
                    Call::Connect { .. } => {
                        self.stats.resent += 1;
                        let old = old_flows.expect("PUBREL re-sent on resume only");
                        assert_eq!(r.code, ReasonCode::SUCCESS);
                        assert_eq!(old.get(&r.packet_id), Some(&Flow::Released));
                        assert!(entry.flows.insert(r.packet_id, Flow::Released).is_none());
                    }
                    Call::Packet(Packet::PubRec(rec)) => {
                        assert_eq!(r.packet_id, rec.packet_id, "PUBREL for another id");
                        let flow = entry.flows.get(&r.packet_id);
                        if r.code == ReasonCode::SUCCESS {
                            assert_eq!(flow, Some(&Flow::Released), "PUBREL for {r:?}");
                        } else {
                            assert_eq!(r.code, ReasonCode::PACKET_IDENTIFIER_NOT_FOUND);
                            assert!(
                                matches!(flow, None | Some(Flow::Published(QoS::AtLeastOnce))),
                                "PUBREL 0x92 for a flow in {flow:?}"
                            );
                        }
                    }
                    _ => panic!("PUBREL outside a resume or a PUBREC"),
                }
            }
            Packet::PubAck(a) => match call {
                Call::Packet(Packet::Publish(p)) if p.qos == QoS::AtLeastOnce => {
                    assert_eq!(a.packet_id, p.packet_id)
                }
                _ => panic!("PUBACK not answering a QoS 1 PUBLISH"),
            },
            Packet::PubRec(a) => match call {
                Call::Packet(Packet::Publish(p)) if p.qos == QoS::ExactlyOnce => {
                    assert_eq!(a.packet_id, p.packet_id);
                    l.pubrecs.insert(a.packet_id);
                }
                _ => panic!("PUBREC not answering a QoS 2 PUBLISH"),
            },
            Packet::PubComp(a) => match call {
                Call::Packet(Packet::PubRel(r)) => assert_eq!(a.packet_id, r.packet_id),
                _ => panic!("PUBCOMP not answering a PUBREL"),
            },
            Packet::SubAck(s) => match call {
                Call::Packet(Packet::Subscribe(sub)) => {
                    assert_eq!(s.packet_id, sub.packet_id);
                    assert_eq!(s.codes.len(), sub.filters.len(), "SUBACK codes");
                    for (code, (_, options)) in s.codes.iter().zip(&sub.filters) {
                        if !code.is_error() {
                            assert!(code.0 <= options.qos as u8 && code.0 <= policy_max_qos as u8);
                        }
                    }
                }
                _ => panic!("SUBACK not answering a SUBSCRIBE"),
            },
            Packet::UnsubAck(u) => match call {
                Call::Packet(Packet::Unsubscribe(un)) => {
                    assert_eq!(u.packet_id, un.packet_id);
                    let expected = if version.is_v5() { un.filters.len() } else { 0 };
                    assert_eq!(u.codes.len(), expected, "UNSUBACK codes");
                }
                _ => panic!("UNSUBACK not answering an UNSUBSCRIBE"),
            },
            Packet::PingResp => {
                assert!(
                    matches!(call, Call::Packet(Packet::PingReq)),
                    "PINGRESP unasked"
                )
            }
            other => panic!("the server wrote a client packet: {other:?}"),
        }
    }
}

fn packet_type_index(packet: &Packet) -> usize {
    packet.packet_type() as usize
}

/// `decode_buf` answers what `decode` does, and consumes the frame.
fn check_decode_buf(
    frame: &Bytes,
    version: ProtocolVersion,
    limits: &Limits,
    result: &Result<Option<(Packet, usize)>, DecodeError>,
) {
    let mut buf = BytesMut::from(&frame[..]);
    let other = decode_buf(&mut buf, version, limits);
    match (result, &other) {
        (Ok(Some((a, _))), Ok(Some(b))) => {
            assert_eq!(a, b, "decode and decode_buf differ");
            assert!(buf.is_empty(), "decode_buf left {} bytes", buf.len());
        }
        (Err(a), Err(b)) => assert_eq!(a, b, "decode and decode_buf fail differently"),
        (Ok(None), Ok(None)) => {}
        _ => panic!(
            "decode {result:?} but decode_buf {other:?} on {:02x?}",
            &frame[..]
        ),
    }
}

/// The client decodes what the server wrote (`wire`, `size` bytes, maybe
/// trimmed of diagnostics; `full` the untrimmed encoding) as the packet
/// meant.
fn check_client_reads(
    packet: &Packet,
    wire: &Bytes,
    full: &[u8],
    size: usize,
    version: ProtocolVersion,
    limits: &Limits,
) {
    match decode(wire, version, limits) {
        Ok(Some((back, n))) => {
            assert_eq!(n, wire.len());
            if size == full.len() && version.is_v5() {
                assert_eq!(&back, packet, "the client reads another packet");
            } else if size == full.len() {
                // v3 carries no reason codes or properties: the same
                // bytes are all that can be asked.
                let mut again = BytesMut::new();
                back.encode(version, &mut again)
                    .expect("decoded packets encode");
                assert_eq!(&again[..], full, "the client reads another packet");
            }
        }
        other => panic!("client cannot decode {packet:?} ({version:?}): {other:?}"),
    }
}

/// A decoded packet encodes in its version and decodes back to itself.
fn check_round_trip(packet: &Packet, version: ProtocolVersion) {
    let version = match packet {
        Packet::Connect(c) => c.protocol,
        _ => version,
    };
    let mut buf = BytesMut::new();
    packet
        .encode(version, &mut buf)
        .unwrap_or_else(|e| panic!("decoded {packet:?} does not encode: {e}"));
    assert_eq!(buf.len(), packet.encoded_len(version), "{packet:?}");
    let bytes = buf.freeze();
    match decode(&bytes, version, &Limits::default()) {
        Ok(Some((back, n))) => {
            assert_eq!(n, bytes.len());
            assert_eq!(&back, packet, "decode(encode(p)) != p");
        }
        other => panic!("re-encoded {packet:?} does not decode: {other:?}"),
    }
}

/// Finding 1: the session answers an invalid filter from an MQTT 3.1
/// client with SUBACK 0x80, a code 3.1 does not have (its SUBACK carries
/// granted QoS 0-2 only).
pub const KNOWN_V31_SUBACK: &str = "SUBACK 0x80 to an MQTT 3.1 client";

/// Finding 2: `Violation::AuthWithoutMethod` ends the connection with
/// DISCONNECT 0x8C, a code MQTT 5 does not allow in DISCONNECT
/// (3.14.2.1; the codec refuses it).
pub const KNOWN_DISCONNECT_8C: &str = "DISCONNECT 0x8C (Bad authentication method)";

/// Finding 4: a second CONNECT whose protocol name or level is unknown
/// is a decode error mapped to 0x84 (Unsupported Protocol Version, right
/// for CONNACK), and `Session::malformed` writes it into a DISCONNECT,
/// which may not carry 0x84 (3.14.2.1; the codec refuses it).
pub const KNOWN_DISCONNECT_84: &str = "DISCONNECT 0x84 (Unsupported Protocol Version)";

/// Finding 3: a packet other than PUBLISH (CONNACK with its properties,
/// SUBACK with many codes) larger than the client's Maximum Packet Size
/// even without Reason String and User Properties; MQTT-3.1.2-24 says it
/// must not be sent. Only a client announcing a tiny maximum meets it.
pub const KNOWN_OVERSIZE: &str = "non-PUBLISH packet above a tiny client Maximum Packet Size";

/// A packet written that the client cannot decode, for a reason already
/// reported.
fn known_unreadable(packet: &Packet, version: ProtocolVersion) -> Option<&'static str> {
    match packet {
        Packet::SubAck(s)
            if version == ProtocolVersion::V3_1 && s.codes.iter().any(|c| c.is_error()) =>
        {
            Some(KNOWN_V31_SUBACK)
        }
        Packet::Disconnect(d) if d.code == ReasonCode::BAD_AUTHENTICATION_METHOD => {
            Some(KNOWN_DISCONNECT_8C)
        }
        Packet::Disconnect(d) if d.code == ReasonCode::UNSUPPORTED_PROTOCOL_VERSION => {
            Some(KNOWN_DISCONNECT_84)
        }
        _ => None,
    }
}

/// A finding already reported (each has an `#[ignore]`d reproducer in
/// fuzz.rs): counted, so the fuzzer goes on looking for new ones, or a
/// failure under `RINGMQ_FUZZ_STRICT`.
fn known(stats: &mut Stats, strict: bool, what: &'static str) {
    assert!(!strict, "known finding: {what}");
    *stats.known.entry(what).or_insert(0) += 1;
}

/// The name of a packet type nibble (for the summary).
pub fn type_name(index: usize) -> &'static str {
    match PacketType::from_u8(index as u8) {
        Some(PacketType::Connect) => "CONNECT",
        Some(PacketType::ConnAck) => "CONNACK",
        Some(PacketType::Publish) => "PUBLISH",
        Some(PacketType::PubAck) => "PUBACK",
        Some(PacketType::PubRec) => "PUBREC",
        Some(PacketType::PubRel) => "PUBREL",
        Some(PacketType::PubComp) => "PUBCOMP",
        Some(PacketType::Subscribe) => "SUBSCRIBE",
        Some(PacketType::SubAck) => "SUBACK",
        Some(PacketType::Unsubscribe) => "UNSUBSCRIBE",
        Some(PacketType::UnsubAck) => "UNSUBACK",
        Some(PacketType::PingReq) => "PINGREQ",
        Some(PacketType::PingResp) => "PINGRESP",
        Some(PacketType::Disconnect) => "DISCONNECT",
        Some(PacketType::Auth) => "AUTH",
        None => "?",
    }
}
