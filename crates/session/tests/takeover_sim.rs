//! Issue 12, "Take-over order is deterministic": a seeded, sans-IO
//! simulation of client take-over, and the will-on-take-over matrix.
//!
//! The simulation drives real [`Session`]s through their public API
//! (`connect`, `handle_packet`, `deliver`, `handle_timer`,
//! `connection_lost`, `taken_over`) under a simulated clock, the way one
//! shard does, and applies their outboxes to a small model: timers in a
//! `BTreeMap` wheel, routes, wills collected, packets queued per simulated
//! connection. Simulated clients connect, reconnect and fight over one or
//! two client ids, read and (sometimes) acknowledge what they get, ping,
//! say DISCONNECT (0x00, v5 0x04, with a lowered Session Expiry) or just
//! vanish; QoS 1/2 messages are routed to the ids all the while; the clock
//! jumps over keep-alives, will delays and session expiries.
//!
//! The shard logic is mirrored here, kept as close as possible to the code
//! it copies (line numbers at commit 806afd3):
//! - `Table` / `Entry`: src/shard/table.rs (client id -> session -> link,
//!   one wheel entry and one generation per timer kind, the take-over
//!   fight counter; `attach` 173-179, `detach` 182-191, `set_timer`
//!   195-205, `fired` 210-214, `timer_current` 218-221).
//! - `Sim::on_connect`: src/shard/driver.rs `on_connect` 136-262: the
//!   take-over branch 194-226 (`fighting` 267-290 refuses the newcomer
//!   past --takeover-limit; else `taken_over`, apply on the old link,
//!   `detach`, the old link's session cleared), then `attach` 231 and
//!   `connect` on the new link.
//! - `Sim::on_packet`: driver.rs `on_packet` 314-330.
//! - `Sim::on_closed`: driver.rs `on_closed` 372-412 (nothing happens
//!   unless the closing link is still the one attached; --max-sessions
//!   ends a leaving client's session at once).
//! - `Sim::fire_timers` / `Sim::run_due` / `Sim::on_session_timer`:
//!   driver.rs `fire_timers` 416-450 (a fired entry leaves the table and
//!   joins the backlog with its generation), `run_due` 454-489 (a fire
//!   whose timer was armed or cancelled since is skipped; the rest as
//!   --will-rate allows: `Bucket` is src/shard/ratelimit.rs
//!   `TokenBucket`), `on_session_timer` 500-512.
//! - `Sim::publish_to`: src/shard/routing.rs `deliver_local` 126-186 for
//!   one matching session.
//! - `Sim::apply_delivery` / `Sim::write` / `Sim::wake`:
//!   src/shard/apply.rs `apply_delivery` 115-228, link.rs `wake` and
//!   `request_close`.
//! - `Sim::handle`: src/shard/frames.rs `feed` 45-142 and
//!   src/shard/engine.rs `handle` 566-644 (a take-over's new connection
//!   waits, unread and unwritten, until the old one is closed).
//! - `Sim::close`: engine.rs `close` 957-1001 (what was written leaves
//!   before the FIN, then `on_closed`); an EOF is engine.rs `on_recv` 553.
//! - `Sim::flush` / `Sim::resume_waiting` / `Sim::advance_to`: engine.rs
//!   `flush_dirty` 806-828 and `resume_waiting` 751-774: closes are carried
//!   out at the end of a turn, in the order the links were marked, so
//!   other completions of the same turn (another CONNECT for the same id
//!   included) run while a taken-over link is still open. The shard sleeps
//!   until the next wheel deadline or --will-rate token (engine.rs `run`).
//!
//! Not modelled: other shards and the mesh (a client id has one owner),
//! back-pressure pauses, the take-over wait's time limit, TLS/WebSocket.
//!
//! Asserted at every step: at most one connection attached per client id
//! (table and links agree, and a detached open link is closing); packets
//! are written only to the attached link and never after its `Close`;
//! every will is published exactly when an independent oracle says so,
//! which is the take-over matrix ([`takeover_publishes_will`], written
//! out in /work/i12/will_matrix.md) plus the ordinary will rules
//! (MQTT 5 3.1.2.5, 3.1.3.2.2; 3.1.1 3.1.2.5), never twice; the table
//! holds a session exactly when the oracle says it lives, and CONNACK's
//! Session Present agrees; a re-sent PUBLISH carries DUP and its first
//! packet id, a QoS 2 PUBLISH is never re-sent after its PUBREC, and the
//! client (deduplicating QoS 2 by packet id, method B of 4.3.3) never
//! gets a QoS 2 message twice as new. At the end of a case the last
//! client reconnects (clean start 0) to every id and acknowledges
//! everything: each QoS 1/2 message accepted for a session that survived
//! must have reached the client, and nothing may be left inflight. With
//! no timer backlog nothing is late: no will or expiry is overdue.
//!
//! Tests: `takeover_simulation` (seeded, the scenarios of issue 12:
//! (a) the old connection's FIN against the new CONNECT in both orders,
//! (b) 2-4 clients fighting over an id, (c) QoS 1/2 traffic across
//! reconnects); `will_on_takeover_matrix` (will_matrix.md row by row);
//! `fin_and_connect_in_both_orders`; the take-over of sessions that end
//! with their connection (a bug this simulation found, fixed in 806afd3);
//! with a --will-rate backlog, a reconnection cancelled a will whose delay
//! had already passed (found here, fixed by the session remembering the
//! will's deadline: `a_will_whose_delay_passed_is_published_though_its_fire_waits`,
//! `takeover_simulation_with_a_timer_backlog`).
//!
//! The simulated clients share their QoS state per client id and per
//! server session (an ideal client that always knows which session it
//! talks to): the checks are about what the server sends, not about
//! client bugs.
//!
//! Reproduce a failure with the seed it prints:
//! `RINGMQ_SIM_SEED=<seed> RINGMQ_SIM_CASES=1 cargo test -p ringmq-session
//! --test takeover_sim`. `RINGMQ_SIM_CASES` sets how many cases run
//! (default [`DEFAULT_CASES`], well under 3 s in a debug build).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;

use bytes::Bytes;
use ringmq_codec::{
    Connect, Disconnect, Packet, Properties, ProtocolVersion, PubAck, PubComp, PubRec, Publish,
    QoS, ReasonCode, Subscribe, SubscriptionOptions, Will,
};
use ringmq_session::{
    negotiate, refuse_connect, Action, CloseCause, Delivery, Negotiated, Outbox, ServerPolicy,
    Session, Tick, Timer,
};

/// Cases run when `RINGMQ_SIM_CASES` is not set.
const DEFAULT_CASES: u64 = 500;
/// Base seed when `RINGMQ_SIM_SEED` is not set; case `i` runs with seed
/// `base + i`.
const DEFAULT_SEED: u64 = 0x1212_5EED;

/// The filter every simulated client subscribes to, and the topic routed.
const FILTER: &[u8] = b"sim/#";
const TOPIC: &[u8] = b"sim/m";

// ---------------------------------------------------------------------
// The matrix
// ---------------------------------------------------------------------

/// Whether the old connection's will is published when a CONNECT takes
/// its client id over: the will-on-take-over matrix (will_matrix.md),
/// as ringmq does it (`Session::taken_over` with `will_due_on_close`).
///
/// - v3.1.1: never (ringmq's documented choice; 3.1.4 does not list a
///   take-over among the will triggers).
/// - v5: published at once when its Will Delay Interval is 0 (the
///   connection is closed) or the session ends: the new CONNECT has clean
///   start 1, or the old session's expiry is 0 (MQTT 5 3.1.4 comment);
///   otherwise discarded, as a new connection to the session within the
///   delay cancels it (MQTT-3.1.3-9).
fn takeover_publishes_will(
    old_v5: bool,
    new_clean_start: bool,
    old_expiry_secs: u32,
    will_delay_secs: u32,
) -> bool {
    old_v5 && (will_delay_secs == 0 || new_clean_start || old_expiry_secs == 0)
}

/// Whether the new connection's CONNACK says Session Present after a
/// take-over: clean start 0, and a session that outlives its connection
/// (3.1.1 MQTT-3.1.2-6; MQTT 5 3.1.2.11.2, 3.1.4 comment).
fn takeover_session_present(new_clean_start: bool, old_expiry_secs: u32) -> bool {
    !new_clean_start && old_expiry_secs > 0
}

// ---------------------------------------------------------------------
// Seeds, the PRNG, the trace printed on failure
// ---------------------------------------------------------------------

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(text) => {
            let text = text.trim().replace('_', "");
            let parsed = match text.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => text.parse(),
            };
            parsed.unwrap_or_else(|_| panic!("{name}={text:?} is not a number"))
        }
        Err(_) => default,
    }
}

/// splitmix64: tiny, deterministic, good enough to pick interleavings.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// 0..n (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// lo..=hi.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// true with probability num/den.
    fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

thread_local! {
    /// The last events of the running case, printed when it fails.
    static TRACE: RefCell<VecDeque<String>> = const { RefCell::new(VecDeque::new()) };
}

const TRACE_LINES: usize = 80;

fn trace(line: String) {
    TRACE.with(|t| {
        let mut t = t.borrow_mut();
        if t.len() == TRACE_LINES {
            t.pop_front();
        }
        t.push_back(line);
    });
}

// ---------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------

type ConnId = usize;
type Sid = u64;
type MsgId = u64;
type WillId = u64;

/// Stands for the sessions of other clients in a timer storm: never in
/// the table, always current, handled as nothing.
const OTHERS: Sid = 0;

/// What a simulated client asks for in its CONNECT.
#[derive(Clone, Copy, Debug)]
struct Params {
    v5: bool,
    clean_start: bool,
    /// v5 Session Expiry Interval (v3: from clean session and the policy).
    expiry_secs: u32,
    will: bool,
    /// v5 Will Delay Interval.
    will_delay_secs: u32,
    keep_alive: u16,
    receive_maximum: Option<u16>,
}

impl Params {
    fn plain(v5: bool, clean_start: bool) -> Self {
        Params {
            v5,
            clean_start,
            expiry_secs: if v5 { 3600 } else { 0 },
            will: false,
            will_delay_secs: 0,
            keep_alive: 0,
            receive_maximum: None,
        }
    }
}

/// One simulated network connection: the shard's `Link` and engine slot
/// (server side) and the client at its other end.
struct Conn {
    client: usize,
    v5: bool,
    connect: Connect,
    negotiated: Negotiated,
    will: Option<WillId>,
    // ---- server side
    /// `Link::session`: the session this link drives.
    session: Option<Sid>,
    /// `Link::close_requested`: the first cause wins.
    close: Option<CloseCause>,
    /// The socket is closed (engine `close` ran).
    closed: bool,
    /// engine `State::Waiting`: a take-over waiting for this old link.
    waiting: Option<ConnId>,
    /// Its CONNECT has been handled.
    accepted: bool,
    /// Sent by the client, not yet read by the server.
    to_server: VecDeque<Packet>,
    /// Written by the server, not yet read by the client, each with the
    /// server session (epoch) it belongs to.
    outbuf: VecDeque<(u64, Packet)>,
    // ---- client side
    /// The client closed its socket: it sends and reads nothing more.
    fin: bool,
    /// The client sent DISCONNECT: it sends nothing more.
    said_bye: bool,
    /// On the shard's dirty list (link.rs `Link::wake`).
    marked: bool,
}

/// src/shard/table.rs `Entry`: one session and what the shard keeps.
struct Entry {
    session: Session,
    link: Option<ConnId>,
    /// Wheel keys by `Timer::index`.
    timers: [Option<(Tick, u64)>; 3],
    /// The route replica's view of this session's filters.
    routes: BTreeSet<Bytes>,
    /// table.rs `timer_gen`: bumped whenever the session arms or cancels
    /// a timer kind.
    timer_gen: [u32; 3],
    /// Take-overs since `fight_since_ms` (--takeover-limit).
    fights: u32,
    fight_since_ms: u64,
}

/// src/shard/table.rs `SessionTable`.
#[derive(Default)]
struct Table {
    by_id: BTreeMap<Sid, Entry>,
    by_client: BTreeMap<Bytes, Sid>,
    next_id: Sid,
}

impl Table {
    fn find(&self, client_id: &[u8]) -> Option<Sid> {
        self.by_client.get(client_id).copied()
    }

    fn insert(&mut self, session: Session) -> Sid {
        self.next_id += 1;
        let id = self.next_id;
        let previous = self.by_client.insert(session.client_id().clone(), id);
        assert!(previous.is_none(), "two sessions for one client id");
        self.by_id.insert(
            id,
            Entry {
                session,
                link: None,
                timers: [None; 3],
                routes: BTreeSet::new(),
                timer_gen: [0; 3],
                fights: 0,
                fight_since_ms: 0,
            },
        );
        id
    }

    fn remove(&mut self, id: Sid) -> Option<Entry> {
        let entry = self.by_id.remove(&id)?;
        self.by_client.remove(entry.session.client_id());
        Some(entry)
    }

    fn entry(&mut self, id: Sid) -> &mut Entry {
        self.by_id.get_mut(&id).expect("live session")
    }

    /// The session armed or cancelled `timer`: a new wheel entry (or
    /// none) and a new generation. Returns the entry replaced.
    fn set_timer(
        &mut self,
        id: Sid,
        timer: Timer,
        key: Option<(Tick, u64)>,
    ) -> Option<(Tick, u64)> {
        let entry = self.entry(id);
        let gen = &mut entry.timer_gen[timer.index()];
        *gen = gen.wrapping_add(1);
        std::mem::replace(&mut entry.timers[timer.index()], key)
    }

    /// Whether `timer` is still at generation `gen`.
    fn timer_current(&self, id: Sid, timer: Timer, gen: u32) -> bool {
        id == OTHERS
            || self
                .by_id
                .get(&id)
                .is_some_and(|e| e.timer_gen[timer.index()] == gen)
    }

    fn link_of(&self, id: Sid) -> Option<ConnId> {
        self.by_id.get(&id).and_then(|e| e.link)
    }

    /// Returns the link replaced (there must be none: the take-over
    /// detached it first).
    fn attach(&mut self, id: Sid, link: ConnId) -> Option<ConnId> {
        self.by_id.get_mut(&id).and_then(|e| e.link.replace(link))
    }

    fn detach(&mut self, id: Sid, link: ConnId) -> bool {
        match self.by_id.get_mut(&id) {
            Some(e) if e.link == Some(link) => {
                e.link = None;
                true
            }
            _ => false,
        }
    }
}

// ---------------------------------------------------------------------
// The oracle
// ---------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WillStatus {
    /// Its connection is attached.
    Armed,
    /// Due, waiting for its delay (or the session's end) at this tick.
    Pending(Tick),
    Published(Tick),
    Discarded,
}

struct WillRec {
    delay_secs: u32,
    status: WillStatus,
    /// How often the session really published it.
    published: u32,
}

/// What the oracle knows of one client id's session, from the rules
/// alone (never from the session's state).
#[derive(Default)]
struct Life {
    exists: bool,
    attached: Option<ConnId>,
    expiry_secs: u32,
    expires_at: Option<Tick>,
    /// The session's will while it is Armed or Pending.
    will: Option<WillId>,
    /// Changes whenever the server's session state starts afresh.
    epoch: u64,
    /// QoS 1/2 messages accepted for the session in this epoch.
    owed: BTreeSet<MsgId>,
}

/// What the server wrote to one client id in the current epoch.
#[derive(Default)]
struct Wire {
    epoch: u64,
    /// Message -> the packet id of its first transmission.
    first: BTreeMap<MsgId, u16>,
    by_pid: BTreeMap<u16, MsgId>,
    /// QoS 2 messages whose PUBLISH has been answered by PUBREL.
    released: BTreeSet<MsgId>,
}

/// The client side of one client id.
#[derive(Default)]
struct ClientView {
    /// (epoch, packet id) -> the QoS 2 message received, until its PUBREL.
    pending_rel: BTreeMap<(u64, u16), MsgId>,
    /// Messages handed to the application, and how often.
    app: BTreeMap<MsgId, u32>,
}

/// Counts reported at the end.
#[derive(Default, Clone, Debug)]
struct Stats {
    cases: u64,
    steps: u64,
    connects: u64,
    takeovers: u64,
    fin_first: u64,
    connect_first: u64,
    wills_published: u64,
    wills_discarded: u64,
    keepalive_closes: u64,
    takeovers_refused: u64,
    timers_deferred: u64,
    sessions_ended: u64,
    messages: u64,
    redeliveries: u64,
}

impl Stats {
    fn add(&mut self, o: &Stats) {
        self.cases += o.cases;
        self.steps += o.steps;
        self.connects += o.connects;
        self.takeovers += o.takeovers;
        self.fin_first += o.fin_first;
        self.connect_first += o.connect_first;
        self.wills_published += o.wills_published;
        self.wills_discarded += o.wills_discarded;
        self.keepalive_closes += o.keepalive_closes;
        self.takeovers_refused += o.takeovers_refused;
        self.timers_deferred += o.timers_deferred;
        self.sessions_ended += o.sessions_ended;
        self.messages += o.messages;
        self.redeliveries += o.redeliveries;
    }
}

/// How a case's clients behave.
#[derive(Clone, Copy, Debug)]
struct Knobs {
    /// Most connections per id open at once (2-4 in a fight).
    contenders: usize,
    /// Out of 100: a client acknowledges what it reads.
    ack: u64,
    /// Out of 100: chance of the clean start flag.
    clean: u64,
    /// Messages per server turn, at most.
    deliveries: u64,
}

/// The broker flags the model follows (src/config.rs).
#[derive(Clone, Copy, Debug)]
struct Flags {
    /// --session-expiry-default-secs (v3.1.1 clean session 0).
    v3_expiry_secs: u32,
    /// --will-rate: fired session timers handled per second (0 = no
    /// limit). The default 20,000 never defers anything for a handful of
    /// sessions, so the simulation runs unlimited; with a rate, the timers
    /// of other sessions in a storm are simulated too.
    will_rate: u64,
    /// --takeover-limit / --takeover-window-secs (defaults 10 / 10).
    takeover_limit: u32,
    takeover_window_secs: u64,
    /// --max-sessions divided among the shards: absent sessions kept.
    max_absent: usize,
}

impl Flags {
    fn new(v3_expiry_secs: u32) -> Self {
        Flags {
            v3_expiry_secs,
            will_rate: 0,
            takeover_limit: 10,
            takeover_window_secs: 10,
            max_absent: usize::MAX,
        }
    }
}

/// src/shard/ratelimit.rs `TokenBucket`, with the burst src/shard/mod.rs
/// gives the timer bucket (10 ms of work).
struct Bucket {
    rate: u64,
    burst: u64,
    milli_tokens: u64,
    last_ms: u64,
}

impl Bucket {
    fn new(rate: u64) -> Self {
        let burst = (rate / 100).max(1);
        Bucket {
            rate,
            burst,
            milli_tokens: burst * 1000,
            last_ms: 0,
        }
    }

    fn refill(&mut self, now: Tick) {
        let elapsed = now.0.saturating_sub(self.last_ms);
        if elapsed > 0 {
            self.last_ms = now.0;
            let add = elapsed.saturating_mul(self.rate);
            self.milli_tokens = self.milli_tokens.saturating_add(add).min(self.burst * 1000);
        }
    }

    fn take(&mut self, now: Tick) -> bool {
        if self.rate == 0 {
            return true;
        }
        self.refill(now);
        if self.milli_tokens >= 1000 {
            self.milli_tokens -= 1000;
            true
        } else {
            false
        }
    }

    fn wait_ms(&mut self, now: Tick) -> u64 {
        if self.rate == 0 {
            return 0;
        }
        self.refill(now);
        if self.milli_tokens >= 1000 {
            0
        } else {
            (1000 - self.milli_tokens).div_ceil(self.rate).max(1)
        }
    }
}

// ---------------------------------------------------------------------
// The simulation
// ---------------------------------------------------------------------

struct Sim {
    rng: Rng,
    now: Tick,
    policy: ServerPolicy,
    flags: Flags,
    knobs: Knobs,
    ids: Vec<Bytes>,
    conns: Vec<Conn>,
    table: Table,
    wheel: BTreeMap<(Tick, u64), (Sid, Timer)>,
    seq: u64,
    out: Outbox,
    /// link.rs `DIRTY`: links to flush, in the order they were marked.
    dirty: Vec<ConnId>,
    /// engine.rs `waiting`: take-overs waiting for their old link.
    waiting: Vec<ConnId>,
    /// driver.rs `due`: fired session timers waiting for --will-rate,
    /// with the timer's generation when it fired.
    due: VecDeque<(Sid, Timer, Tick, u32)>,
    bucket: Bucket,
    lives: Vec<Life>,
    next_epoch: u64,
    wills: Vec<WillRec>,
    wire: Vec<Wire>,
    clients: Vec<ClientView>,
    next_msg: MsgId,
    /// Wills the sessions published since the last check, and those the
    /// oracle expected, with their ticks.
    published: Vec<(WillId, Tick)>,
    expected: Vec<(WillId, Tick)>,
    stats: Stats,
}

fn msg_id(payload: &[u8]) -> u64 {
    u64::from_be_bytes(payload.try_into().expect("an 8-byte id"))
}

fn connack_present(out: &Outbox) -> Option<bool> {
    out.actions().iter().find_map(|a| match a {
        Action::Send(p) => match &**p {
            Packet::ConnAck(ack) => Some(ack.session_present),
            _ => None,
        },
        _ => None,
    })
}

impl Sim {
    fn new(seed: u64, ids: usize, knobs: Knobs, flags: Flags) -> Self {
        let policy = ServerPolicy {
            max_qos: QoS::ExactlyOnce,
            v3_session_expiry_secs: flags.v3_expiry_secs,
            // Nothing is dropped for room: a loss is a bug.
            max_queued_messages: 1 << 30,
            ..ServerPolicy::default()
        };
        Sim {
            rng: Rng::new(seed),
            now: Tick(0),
            policy,
            flags,
            knobs,
            ids: (0..ids).map(|i| Bytes::from(format!("dev{i}"))).collect(),
            conns: Vec::new(),
            table: Table::default(),
            wheel: BTreeMap::new(),
            seq: 0,
            out: Outbox::new(),
            dirty: Vec::new(),
            waiting: Vec::new(),
            due: VecDeque::new(),
            bucket: Bucket::new(flags.will_rate),
            lives: (0..ids).map(|_| Life::default()).collect(),
            next_epoch: 1,
            wills: Vec::new(),
            wire: (0..ids).map(|_| Wire::default()).collect(),
            clients: (0..ids).map(|_| ClientView::default()).collect(),
            next_msg: 1,
            published: Vec::new(),
            expected: Vec::new(),
            stats: Stats::default(),
        }
    }

    // ----- simulated clients -------------------------------------------

    /// A new connection for client id `client`: CONNECT and a pipelined
    /// SUBSCRIBE are on their way to the server.
    fn spawn(&mut self, client: usize, p: Params) -> ConnId {
        let c = self.conns.len();
        let will_id = p.will.then_some(self.wills.len() as WillId);
        let mut properties = Properties::default();
        if p.v5 {
            properties.session_expiry_interval = (p.expiry_secs > 0).then_some(p.expiry_secs);
            properties.receive_maximum = p.receive_maximum;
        }
        let will = will_id.map(|w| Will {
            topic: Bytes::from_static(b"will/sim"),
            payload: Bytes::copy_from_slice(&w.to_be_bytes()),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: Properties {
                will_delay_interval: (p.v5 && p.will_delay_secs > 0).then_some(p.will_delay_secs),
                ..Properties::default()
            },
        });
        let connect = Connect {
            protocol: if p.v5 {
                ProtocolVersion::V5
            } else {
                ProtocolVersion::V3_1_1
            },
            clean_start: p.clean_start,
            keep_alive: p.keep_alive,
            client_id: self.ids[client].clone(),
            will,
            username: None,
            password: None,
            properties,
        };
        let negotiated = negotiate(&connect, &self.policy).expect("an acceptable CONNECT");
        if let Some(w) = will_id {
            self.wills.push(WillRec {
                delay_secs: negotiated.will_delay_secs,
                status: WillStatus::Armed,
                published: 0,
            });
            debug_assert_eq!(self.wills.len() as u64, w + 1);
        }
        let subscribe = Subscribe {
            packet_id: 1,
            properties: Properties::default(),
            filters: vec![(
                Bytes::from_static(FILTER),
                SubscriptionOptions {
                    qos: QoS::ExactlyOnce,
                    ..SubscriptionOptions::default()
                },
            )],
        };
        trace(format!(
            "t={} spawn c{c} for {} {:?} will={will_id:?} expiry={} delay={}",
            self.now.0,
            String::from_utf8_lossy(&self.ids[client]),
            p,
            negotiated.session_expiry_secs,
            negotiated.will_delay_secs,
        ));
        self.conns.push(Conn {
            client,
            v5: p.v5,
            connect: connect.clone(),
            negotiated,
            will: will_id,
            session: None,
            close: None,
            closed: false,
            waiting: None,
            accepted: false,
            to_server: VecDeque::from([
                Packet::Connect(Box::new(connect)),
                Packet::Subscribe(subscribe),
            ]),
            outbuf: VecDeque::new(),
            fin: false,
            said_bye: false,
            marked: false,
        });
        c
    }

    fn random_params(&mut self) -> Params {
        let rng = &mut self.rng;
        let v5 = rng.chance(1, 2);
        Params {
            v5,
            clean_start: rng.chance(self.knobs.clean, 100),
            expiry_secs: match rng.below(6) {
                0 | 1 => 0,
                2 | 3 => rng.range(1, 30) as u32,
                4 => 120,
                _ => u32::MAX,
            },
            will: rng.chance(2, 3),
            will_delay_secs: match rng.below(3) {
                0 => 0,
                _ => rng.range(1, 20) as u32,
            },
            keep_alive: match rng.below(3) {
                0 => 0,
                _ => rng.range(5, 60) as u16,
            },
            receive_maximum: (v5 && rng.chance(1, 2)).then(|| rng.range(1, 3) as u16),
        }
    }

    /// The client of `c` sends `packet`, if it still sends anything.
    fn client_send(&mut self, c: ConnId, packet: Packet) {
        let conn = &mut self.conns[c];
        if !conn.closed && !conn.fin && !conn.said_bye {
            conn.to_server.push_back(packet);
        }
    }

    /// The client of `c` reads one packet; `reply` says whether it may
    /// still answer (not when it reads the tail of a closed connection).
    fn client_receive(&mut self, c: ConnId, epoch: u64, packet: Packet, reply: bool, ack: u64) {
        let client = self.conns[c].client;
        let answer = reply && self.rng.chance(ack, 100);
        match packet {
            Packet::Publish(p) => {
                let msg = msg_id(&p.payload);
                let view = &mut self.clients[client];
                match p.qos {
                    QoS::AtMostOnce => {}
                    QoS::AtLeastOnce => {
                        *view.app.entry(msg).or_default() += 1;
                        if answer {
                            self.client_send(c, puback(p.packet_id));
                        }
                    }
                    QoS::ExactlyOnce => {
                        let key = (epoch, p.packet_id);
                        match view.pending_rel.get(&key) {
                            Some(&known) => {
                                assert_eq!(
                                    known, msg,
                                    "packet id {} reused for message {msg} while the QoS 2 flow \
                                     of message {known} is open (MQTT-2.2.1-3)",
                                    p.packet_id
                                );
                            }
                            None => {
                                let n = view.app.entry(msg).or_default();
                                assert_eq!(*n, 0, "QoS 2 message {msg} delivered twice as new");
                                *n = 1;
                                view.pending_rel.insert(key, msg);
                            }
                        }
                        if answer {
                            self.client_send(c, pubrec(p.packet_id));
                        }
                    }
                }
            }
            Packet::PubRel(rel) => {
                self.clients[client]
                    .pending_rel
                    .remove(&(epoch, rel.packet_id));
                if answer {
                    self.client_send(c, pubcomp(rel.packet_id));
                }
            }
            _ => {}
        }
    }

    /// The client of `c` reads up to `n` packets (a taken-over
    /// connection's new link writes nothing before the old one closed).
    fn client_read(&mut self, c: ConnId, n: usize, ack: u64) -> usize {
        let mut read = 0;
        while read < n {
            let conn = &mut self.conns[c];
            if conn.closed || conn.fin || conn.waiting.is_some() {
                break;
            }
            let Some((epoch, packet)) = conn.outbuf.pop_front() else {
                break;
            };
            self.client_receive(c, epoch, packet, true, ack);
            read += 1;
        }
        read
    }

    /// One thing the client of `c` does.
    fn client_step(&mut self, c: ConnId) {
        if self.conns[c].closed || self.conns[c].fin {
            return;
        }
        let ack = self.knobs.ack;
        match self.rng.below(16) {
            0..=9 => {
                let n = self.rng.range(1, 6) as usize;
                self.client_read(c, n, ack);
            }
            10 | 11 => self.client_send(c, Packet::PingReq),
            12 => {
                if self.conns[c].said_bye {
                    return;
                }
                let disconnect = self.random_disconnect(c);
                trace(format!(
                    "t={} c{c} sends DISCONNECT 0x{:02X} expiry={:?}",
                    self.now.0, disconnect.code.0, disconnect.properties.session_expiry_interval
                ));
                self.client_send(c, Packet::Disconnect(disconnect));
                self.conns[c].said_bye = true;
            }
            _ => {
                trace(format!("t={} c{c} vanishes (FIN)", self.now.0));
                self.conns[c].fin = true;
            }
        }
    }

    fn random_disconnect(&mut self, c: ConnId) -> Disconnect {
        let conn = &self.conns[c];
        let mut properties = Properties::default();
        if !conn.v5 {
            return Disconnect {
                code: ReasonCode::NORMAL_DISCONNECTION,
                properties,
            };
        }
        let expiry = conn.negotiated.session_expiry_secs;
        let code = if self.rng.chance(1, 2) {
            ReasonCode::DISCONNECT_WITH_WILL_MESSAGE
        } else {
            ReasonCode::NORMAL_DISCONNECTION
        };
        // Only lowered: raising from 0 is a protocol error (MQTT-3.14.2-2).
        if expiry > 0 && self.rng.chance(1, 3) {
            properties.session_expiry_interval = Some(match self.rng.below(2) {
                0 => 0,
                _ => (expiry / 2).min(20),
            });
        }
        Disconnect { code, properties }
    }

    // ----- the shard (mirrors of src/shard) ----------------------------

    /// driver.rs `on_connect`: a new session, a resumed one, or a
    /// take-over. Returns the link taken over.
    fn on_connect(&mut self, c: ConnId, connect: &Connect) -> Option<ConnId> {
        self.stats.connects += 1;
        let negotiated = negotiate(connect, &self.policy).expect("an acceptable CONNECT");
        let client = self.conns[c].client;
        let sid = self.table.find(&connect.client_id);
        assert_eq!(sid.is_some(), self.lives[client].exists);
        let old = sid.and_then(|s| self.table.link_of(s));
        assert_eq!(old, self.lives[client].attached);
        if let (Some(sid), Some(_)) = (sid, old) {
            if self.fighting(sid) {
                self.refuse_fight(c, connect.protocol);
                return None;
            }
        }
        let present_expected = self.oracle_connect(c);
        let mut out = std::mem::take(&mut self.out);
        let mut taken_over = None;
        let sid = match self.table.find(&connect.client_id) {
            Some(sid) => {
                if let Some(old) = self.table.link_of(sid) {
                    self.stats.takeovers += 1;
                    trace(format!(
                        "t={} c{c} takes over c{old} (clean start {})",
                        self.now.0, connect.clean_start
                    ));
                    let was_closing = self.conns[old].close.is_some();
                    let written = self.conns[old].outbuf.len();
                    self.table
                        .entry(sid)
                        .session
                        .taken_over(connect.clean_start, &mut out);
                    self.apply(Some(sid), Some(old), &mut out, None);
                    self.check_takeover_close(old, was_closing, written);
                    assert!(self.table.detach(sid, old));
                    self.conns[old].session = None;
                    taken_over = Some(old);
                }
                sid
            }
            None => self
                .table
                .insert(Session::new(connect.client_id.clone(), connect.protocol)),
        };
        assert_eq!(self.table.attach(sid, c), None, "a link replaced in place");
        self.conns[c].session = Some(sid);
        self.conns[c].accepted = true;
        self.table.entry(sid).session.connect(
            connect,
            &negotiated,
            &self.policy,
            None,
            self.now,
            &mut out,
        );
        let present = connack_present(&out).expect("CONNACK");
        trace(format!(
            "t={} c{c} CONNACK session present {present}",
            self.now.0
        ));
        assert_eq!(
            present, present_expected,
            "CONNACK Session Present of c{c} (MQTT-3.2.2-2/-3)"
        );
        self.apply(Some(sid), Some(c), &mut out, None);
        self.out = out;
        taken_over
    }

    /// driver.rs `fighting`: counts a take-over of `sid`; true past
    /// --takeover-limit within the window.
    fn fighting(&mut self, sid: Sid) -> bool {
        let (limit, window_ms) = (
            self.flags.takeover_limit,
            self.flags.takeover_window_secs * 1000,
        );
        let now = self.now;
        let entry = self.table.entry(sid);
        if limit == 0 {
            return false;
        }
        if entry.fights == 0 || now.0.saturating_sub(entry.fight_since_ms) >= window_ms {
            entry.fights = 0;
            entry.fight_since_ms = now.0;
        }
        entry.fights = entry.fights.saturating_add(1);
        entry.fights > limit
    }

    /// driver.rs `on_connect` refusing the newcomer of a take-over fight
    /// (v5 CONNACK 0x9F, v3 0x03): nothing about the session changes, the
    /// newcomer's will is never stored.
    fn refuse_fight(&mut self, c: ConnId, protocol: ProtocolVersion) {
        self.stats.takeovers_refused += 1;
        trace(format!("t={} c{c} refused: take-over fight", self.now.0));
        if let Some(w) = self.conns[c].will {
            self.resolve_will(w, WillStatus::Discarded);
        }
        self.conns[c].accepted = true;
        let code = if protocol == ProtocolVersion::V5 {
            ReasonCode::CONNECTION_RATE_EXCEEDED
        } else {
            ReasonCode(0x03)
        };
        let mut out = std::mem::take(&mut self.out);
        refuse_connect(code, &mut out);
        self.apply(None, Some(c), &mut out, None);
        self.out = out;
    }

    /// The old link of a take-over: v5 DISCONNECT 0x8E is the last thing
    /// written to it, then its close (MQTT-3.1.4-3); nothing for v3.
    fn check_takeover_close(&self, old: ConnId, was_closing: bool, written_before: usize) {
        let conn = &self.conns[old];
        if was_closing {
            assert!(conn.close.is_some());
        } else {
            assert_eq!(conn.close, Some(CloseCause::TakenOver), "taken-over c{old}");
        }
        let new: Vec<&Packet> = conn
            .outbuf
            .iter()
            .skip(written_before)
            .map(|(_, p)| p)
            .collect();
        match (conn.v5 && !was_closing, new.as_slice()) {
            (true, [Packet::Disconnect(d)]) => {
                assert_eq!(d.code, ReasonCode::SESSION_TAKEN_OVER);
            }
            (false, []) => {}
            (_, other) => panic!("taken-over c{old} was written {other:?}"),
        }
    }

    /// driver.rs `on_packet`.
    fn on_packet(&mut self, c: ConnId, packet: Packet) {
        let Some(sid) = self.conns[c].session else {
            return;
        };
        if let Packet::Disconnect(d) = &packet {
            self.oracle_disconnect(c, d);
        }
        let mut out = std::mem::take(&mut self.out);
        self.table
            .entry(sid)
            .session
            .handle_packet(packet, &self.policy, self.now, &mut out);
        self.apply(Some(sid), Some(c), &mut out, None);
        self.out = out;
    }

    /// driver.rs `on_closed`: the session learns why, unless another
    /// connection has taken it over.
    fn on_closed(&mut self, c: ConnId, cause: CloseCause) {
        let Some(sid) = self.conns[c].session.take() else {
            return;
        };
        if !self.table.detach(sid, c) {
            return;
        }
        trace(format!("t={} c{c} lost: {cause:?}", self.now.0));
        if cause == CloseCause::KeepAliveTimeout {
            self.stats.keepalive_closes += 1;
        }
        self.oracle_lost(c, cause);
        let mut out = std::mem::take(&mut self.out);
        self.table
            .entry(sid)
            .session
            .connection_lost(cause, self.now, &mut out);
        self.apply(Some(sid), None, &mut out, None);
        let absent = self
            .table
            .by_id
            .values()
            .filter(|e| e.link.is_none())
            .count();
        let discard = self.table.by_id.contains_key(&sid) && absent > self.flags.max_absent;
        let lives_absent = self
            .lives
            .iter()
            .filter(|l| l.exists && l.attached.is_none())
            .count();
        let client = self.conns[c].client;
        let expected = self.lives[client].exists && lives_absent > self.flags.max_absent;
        assert_eq!(
            discard, expected,
            "--max-sessions: table and oracle disagree"
        );
        if discard {
            // --max-sessions: the leaving client's session ends now, its
            // will (if due) published as at expiry.
            trace(format!(
                "t={} s{sid} discarded (--max-sessions)",
                self.now.0
            ));
            self.oracle_discard(self.conns[c].client);
            self.table
                .entry(sid)
                .session
                .handle_timer(Timer::SessionExpiry, self.now, &mut out);
            self.apply(Some(sid), None, &mut out, None);
        }
        self.out = out;
    }

    /// driver.rs `on_session_timer`: an entry of a session that ended
    /// meanwhile finds no session and does nothing.
    fn on_session_timer(&mut self, sid: Sid, timer: Timer) {
        let client = self.table.by_id.get(&sid).map(|e| {
            let id = e.session.client_id();
            self.ids
                .iter()
                .position(|i| i == id)
                .expect("a simulated id")
        });
        let Some(client) = client else {
            return;
        };
        self.oracle_timer(client, timer);
        let mut out = std::mem::take(&mut self.out);
        let entry = self.table.entry(sid);
        entry.session.handle_timer(timer, self.now, &mut out);
        let link = entry.link;
        self.apply(Some(sid), link, &mut out, None);
        self.out = out;
    }

    /// driver.rs `fire_timers`: what the wheel fires at `now` (in an order
    /// it is free to pick: a session's WillDelay and SessionExpiry often
    /// share a tick) is no longer armed and joins the backlog, which
    /// `run_due` works through as --will-rate allows.
    fn fire_timers(&mut self) {
        let now = self.now;
        let mut fired = Vec::new();
        while let Some((&key, &(sid, timer))) = self.wheel.iter().next() {
            if key.0 > now {
                break;
            }
            self.wheel.remove(&key);
            let entry = self.table.entry(sid);
            // The table keeps exactly the wheel entry that fires.
            assert_eq!(
                entry.timers[timer.index()],
                Some(key),
                "stale {timer:?} fired"
            );
            // table.rs `fired`: no longer armed; its generation kept.
            entry.timers[timer.index()] = None;
            fired.push((sid, timer, entry.timer_gen[timer.index()]));
        }
        if self.flags.will_rate > 0 && !fired.is_empty() && self.rng.chance(1, 2) {
            // A storm: the timers of many other sessions fired on the same
            // tick.
            let others = self.rng.range(1, 30);
            fired.extend((0..others).map(|_| (OTHERS, Timer::SessionExpiry, 0)));
        }
        self.rng.shuffle(&mut fired);
        for (sid, timer, gen) in fired {
            if !self.due.is_empty() {
                self.stats.timers_deferred += 1;
            }
            self.due.push_back((sid, timer, now, gen));
        }
        self.run_due();
    }

    /// driver.rs `run_due`: a fire whose timer was armed or cancelled
    /// since is dropped (no token); the rest as --will-rate allows.
    fn run_due(&mut self) {
        while let Some(&(sid, timer, _, gen)) = self.due.front() {
            if !self.table.timer_current(sid, timer, gen) {
                self.due.pop_front();
                continue;
            }
            if !self.bucket.take(self.now) {
                break;
            }
            self.due.pop_front();
            if sid != OTHERS {
                self.on_session_timer(sid, timer);
            }
        }
    }

    /// Time passes up to `target`. The shard wakes at each wheel deadline
    /// and, with a timer backlog, whenever --will-rate has a token again
    /// (engine.rs `run`: the sleep ends at the earlier of the two); each
    /// wake-up is a turn with no input: timers, then the turn's closes.
    fn advance_to(&mut self, target: Tick) {
        loop {
            let deadline = self.wheel.keys().next().map(|k| k.0);
            let now = self.now;
            let tokens = (!self.due.is_empty()).then(|| now.add_ms(self.bucket.wait_ms(now)));
            let next = match (deadline, tokens) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(t) => t,
                    None => break,
                },
            };
            if next > target {
                break;
            }
            assert!(
                next >= self.now,
                "timer at {next} fired late (now {})",
                self.now
            );
            self.now = next;
            self.fire_timers();
            self.flush();
            self.check();
        }
        self.now = target;
    }

    /// routing.rs `deliver_local` for the session of `client`, when its
    /// route matches: a new QoS 1/2 message.
    fn publish_to(&mut self, client: usize, qos: QoS) {
        let Some(sid) = self.table.find(&self.ids[client]) else {
            return;
        };
        let msg = self.next_msg;
        let message = Publish {
            dup: false,
            qos,
            retain: false,
            topic: Bytes::from_static(TOPIC),
            packet_id: 0,
            properties: Default::default(),
            payload: Bytes::copy_from_slice(&msg.to_be_bytes()),
        };
        let mut out = std::mem::take(&mut self.out);
        let entry = self.table.entry(sid);
        if !entry.routes.contains(FILTER) {
            self.out = out;
            return;
        }
        let grant = entry
            .session
            .subscription(FILTER)
            .expect("a route without its subscription");
        let link = entry.link;
        let delivery = Delivery {
            qos: qos.min(grant.options.qos),
            retain: false,
            ids: &[],
            expires_at: None,
        };
        entry
            .session
            .deliver(&message, delivery, &self.policy, self.now, &mut out);
        self.next_msg += 1;
        self.stats.messages += 1;
        self.lives[client].owed.insert(msg);
        trace(format!(
            "t={} message {msg} {qos:?} to {} (link {link:?})",
            self.now.0,
            String::from_utf8_lossy(&self.ids[client])
        ));
        self.apply_delivery(Some(sid), link, &mut out, Some(&message));
        self.out = out;
    }

    fn apply(
        &mut self,
        sid: Option<Sid>,
        link: Option<ConnId>,
        out: &mut Outbox,
        m: Option<&Publish>,
    ) {
        self.apply_delivery(sid, link, out, m);
    }

    /// apply.rs `apply_delivery`: carries out `out`, in order, for
    /// session `sid` whose connection is `link` (None when detached).
    fn apply_delivery(
        &mut self,
        sid: Option<Sid>,
        link: Option<ConnId>,
        out: &mut Outbox,
        message: Option<&Publish>,
    ) {
        assert_eq!(
            out.take_dropped(),
            0,
            "a delivery was dropped (nothing limits the queue here)"
        );
        for action in out.drain() {
            match action {
                Action::SendPublish(p) => self.write(sid, link, Packet::Publish(p)),
                Action::Forward => {
                    let m = message.expect("Forward outside a delivery").clone();
                    self.write(sid, link, Packet::Publish(m));
                }
                Action::SendAck(ack) => self.write(sid, link, ack.to_packet()),
                Action::SendPingResp => self.write(sid, link, Packet::PingResp),
                Action::Send(packet) => self.write(sid, link, *packet),
                Action::Publish(p) => panic!("no simulated client publishes: {p:?}"),
                Action::PublishWill(will) => self.will_published(&will),
                Action::AddRoute { filter, .. } => {
                    let sid = sid.expect("a route for a session");
                    self.table.entry(sid).routes.insert(filter);
                }
                Action::DropRoute { filter } => {
                    let sid = sid.expect("a route for a session");
                    let had = self.table.entry(sid).routes.remove(&filter);
                    assert!(had, "dropped a route never added: {filter:?}");
                }
                Action::ArmTimer(timer, at) => {
                    assert!(
                        at >= self.now,
                        "{timer:?} armed in the past ({at} < {})",
                        self.now
                    );
                    let sid = sid.expect("a timer for a session");
                    let key = (at, self.seq);
                    self.seq += 1;
                    self.wheel.insert(key, (sid, timer));
                    if let Some(old) = self.table.set_timer(sid, timer, Some(key)) {
                        self.wheel.remove(&old);
                    }
                }
                Action::CancelTimer(timer) => {
                    let sid = sid.expect("a timer for a session");
                    if let Some(old) = self.table.set_timer(sid, timer, None) {
                        self.wheel.remove(&old);
                    }
                }
                Action::Violation(v) => panic!("a well-behaved client broke a rule: {v:?}"),
                Action::Close(cause) => {
                    if let Some(l) = link {
                        // link.rs `request_close`: the first cause wins.
                        self.conns[l].close.get_or_insert(cause);
                        self.wake(l);
                    }
                }
                Action::EndSession => {
                    let sid = sid.expect("EndSession for a session");
                    if let Some(entry) = self.table.remove(sid) {
                        for key in entry.timers.into_iter().flatten() {
                            self.wheel.remove(&key);
                        }
                        assert!(entry.routes.is_empty(), "session ended with routes left");
                        assert_eq!(entry.link, None, "session ended with a link attached");
                        self.stats.sessions_ended += 1;
                        trace(format!("t={} s{sid} ended", self.now.0));
                    }
                }
                // Retained queries, limit counters: nothing the model keeps.
                _ => {}
            }
        }
    }

    /// `apply` encoding a packet into a link's output.
    fn write(&mut self, sid: Option<Sid>, link: Option<ConnId>, packet: Packet) {
        let Some(c) = link else {
            return;
        };
        let Some(sid) = sid else {
            // A refused CONNECT: CONNACK with its code, to a link that
            // never had a session.
            assert!(self.conns[c].session.is_none());
            self.conns[c].outbuf.push_back((0, packet));
            self.wake(c);
            return;
        };
        assert_eq!(
            self.table.link_of(sid),
            Some(c),
            "{packet:?} written to c{c}, which is not the attached link"
        );
        let conn = &self.conns[c];
        assert!(!conn.closed, "{packet:?} written to closed c{c}");
        assert!(
            conn.close.is_none(),
            "{packet:?} written to c{c} after its Close"
        );
        let client = conn.client;
        let epoch = self.lives[client].epoch;
        let wire = &mut self.wire[client];
        if wire.epoch != epoch {
            *wire = Wire {
                epoch,
                ..Wire::default()
            };
        }
        match &packet {
            Packet::Publish(p) if p.qos != QoS::AtMostOnce => {
                let msg = msg_id(&p.payload);
                assert!(
                    !wire.released.contains(&msg),
                    "QoS 2 message {msg} re-sent after PUBREC (MQTT-4.3.3)"
                );
                match wire.first.get(&msg) {
                    None => {
                        assert!(!p.dup, "first delivery of message {msg} with DUP");
                        wire.first.insert(msg, p.packet_id);
                        wire.by_pid.insert(p.packet_id, msg);
                    }
                    Some(&pid) => {
                        assert!(p.dup, "message {msg} re-sent without DUP (MQTT-3.3.1-1)");
                        assert_eq!(
                            pid, p.packet_id,
                            "message {msg} re-sent with another packet id (MQTT-4.4.0-1)"
                        );
                        self.stats.redeliveries += 1;
                    }
                }
            }
            Packet::PubRel(rel) => {
                let msg = *wire
                    .by_pid
                    .get(&rel.packet_id)
                    .expect("PUBREL for a packet id never sent");
                wire.released.insert(msg);
            }
            _ => {}
        }
        self.conns[c].outbuf.push_back((epoch, packet));
        self.wake(c);
    }

    /// link.rs `Link::wake`: onto the dirty list, once per flush.
    fn wake(&mut self, c: ConnId) {
        if !std::mem::replace(&mut self.conns[c].marked, true) {
            self.dirty.push(c);
        }
    }

    /// frames.rs `feed` + engine.rs `handle`: up to `n` packets of what
    /// the client sent, then close, wait, or read on.
    fn handle(&mut self, c: ConnId, n: usize) {
        if self.conns[c].closed || self.conns[c].waiting.is_some() {
            return;
        }
        let mut handled = 0;
        let mut wait_for = None;
        loop {
            if let Some(cause) = self.conns[c].close {
                self.close(c, cause);
                return;
            }
            if handled == n {
                break;
            }
            let Some(packet) = self.conns[c].to_server.pop_front() else {
                break;
            };
            handled += 1;
            if self.conns[c].session.is_some() {
                self.on_packet(c, packet);
                continue;
            }
            match packet {
                Packet::Connect(connect) if !self.conns[c].accepted => {
                    if let Some(old) = self.on_connect(c, &connect) {
                        wait_for = Some(old);
                        break;
                    }
                }
                // A link loses its session only with its Close requested.
                other => panic!("c{c} read {other:?} with no session and no close"),
            }
        }
        if let Some(old) = wait_for {
            self.conns[c].waiting = Some(old);
            self.waiting.push(c);
        }
    }

    /// engine.rs `close`: what was written leaves before the FIN (the
    /// client, if still there, reads a prefix of it), then `on_closed`.
    fn close(&mut self, c: ConnId, cause: CloseCause) {
        if self.conns[c].closed {
            return;
        }
        trace(format!("t={} close c{c} ({cause:?})", self.now.0));
        self.conns[c].closed = true;
        let tail = std::mem::take(&mut self.conns[c].outbuf);
        if !self.conns[c].fin {
            let keep = if self.rng.chance(1, 2) {
                tail.len()
            } else {
                self.rng.below(tail.len() as u64 + 1) as usize
            };
            for (epoch, packet) in tail.into_iter().take(keep) {
                self.client_receive(c, epoch, packet, false, 0);
            }
        }
        self.conns[c].to_server.clear();
        self.on_closed(c, cause);
    }

    /// engine.rs `flush_dirty`: resumes the take-overs whose old link is
    /// closed, then carries out the closes of the dirty links in the order
    /// they were marked (a taken-over link was marked before the link that
    /// took it over, so a chain of take-overs closes oldest first), until
    /// nothing is left. The writes need no step here: the client reads a
    /// link's output whenever the link is not waiting.
    fn flush(&mut self) {
        loop {
            self.resume_waiting();
            if self.dirty.is_empty() {
                return;
            }
            let list = std::mem::take(&mut self.dirty);
            for &c in &list {
                self.conns[c].marked = false;
                if let Some(cause) = self.conns[c].close {
                    self.close(c, cause);
                }
            }
        }
    }

    /// engine.rs `resume_waiting`.
    fn resume_waiting(&mut self) {
        let waiting = std::mem::take(&mut self.waiting);
        for c in waiting {
            let Some(old) = self.conns[c].waiting else {
                continue;
            };
            if self.conns[c].closed {
                continue;
            }
            if self.conns[old].closed {
                self.conns[c].waiting = None;
                self.wake(c);
                // What arrived behind the CONNECT, read as it waited.
                let n = self.rng.range(0, 4) as usize;
                self.handle(c, n);
            } else {
                self.waiting.push(c);
            }
        }
    }

    /// Conns the server could get a completion for now.
    fn readable(&self, c: ConnId) -> bool {
        let conn = &self.conns[c];
        !conn.closed && conn.waiting.is_none() && (!conn.to_server.is_empty() || conn.fin)
    }

    /// One completion of `c`: a read of what has arrived (a random
    /// prefix), or its EOF.
    fn complete(&mut self, c: ConnId) {
        if !self.readable(c) {
            return;
        }
        if self.conns[c].to_server.is_empty() {
            // engine.rs on_recv: end of stream.
            self.close(c, CloseCause::NetworkError);
            return;
        }
        let len = self.conns[c].to_server.len() as u64;
        let n = if self.rng.chance(2, 3) {
            len
        } else {
            self.rng.range(1, len)
        } as usize;
        self.handle(c, n);
        if self.conns[c].fin && self.rng.chance(1, 2) {
            // The EOF came in the same batch of completions.
            self.complete_eof(c);
        }
    }

    fn complete_eof(&mut self, c: ConnId) {
        if self.readable(c) && self.conns[c].to_server.is_empty() {
            self.close(c, CloseCause::NetworkError);
        }
    }

    /// One loop turn of the engine: the inbox (messages routed here),
    /// completions in any order, timers, then closes and resumptions.
    fn server_turn(&mut self) {
        let deliveries = self.rng.below(self.knobs.deliveries + 1);
        for _ in 0..deliveries {
            let client = self.rng.below(self.ids.len() as u64) as usize;
            let qos = if self.rng.chance(1, 2) {
                QoS::AtLeastOnce
            } else {
                QoS::ExactlyOnce
            };
            self.publish_to(client, qos);
        }
        let mut ready: Vec<ConnId> = (0..self.conns.len())
            .filter(|&c| self.readable(c))
            .collect();
        self.rng.shuffle(&mut ready);
        for c in ready {
            if self.rng.chance(4, 5) {
                self.complete(c);
                self.check_attachment();
            }
        }
        self.fire_timers();
        self.flush();
    }

    // ----- the oracle ---------------------------------------------------

    fn resolve_will(&mut self, w: WillId, status: WillStatus) {
        let rec = &mut self.wills[w as usize];
        match status {
            WillStatus::Published(at) => {
                self.expected.push((w, at));
                self.stats.wills_published += 1;
            }
            WillStatus::Discarded => self.stats.wills_discarded += 1,
            _ => {}
        }
        rec.status = status;
    }

    /// Before `on_connect` of `c` touches anything: what must happen to
    /// the session's will and what CONNACK must say.
    fn oracle_connect(&mut self, c: ConnId) -> bool {
        let client = self.conns[c].client;
        let clean = self.conns[c].connect.clean_start;
        let now = self.now;
        let attached = self.lives[client].attached;
        let present = if let Some(old) = attached {
            // A take-over (MQTT-3.1.4-3): the matrix.
            let old_v5 = self.conns[old].v5;
            let expiry = self.lives[client].expiry_secs;
            if let Some(w) = self.lives[client].will.take() {
                let rec = &self.wills[w as usize];
                assert_eq!(rec.status, WillStatus::Armed);
                let publish = takeover_publishes_will(old_v5, clean, expiry, rec.delay_secs);
                let status = if publish {
                    WillStatus::Published(now)
                } else {
                    WillStatus::Discarded
                };
                self.resolve_will(w, status);
            }
            takeover_session_present(clean, expiry)
        } else if self.lives[client].exists {
            // A reconnection: a pending will is cancelled (MQTT-3.1.3-9),
            // or sent because clean start ends the session (3.1.2.5).
            if let Some(w) = self.lives[client].will.take() {
                let status = match self.wills[w as usize].status {
                    WillStatus::Pending(_) if clean => WillStatus::Published(now),
                    // MQTT-3.1.2-8: cancelled only by a connection opened
                    // before the delay elapsed (a fire still in the
                    // --will-rate backlog does not make it later).
                    WillStatus::Pending(at) if at <= now => WillStatus::Published(now),
                    WillStatus::Pending(_) => WillStatus::Discarded,
                    other => panic!("will {w} is {other:?} with no connection"),
                };
                self.resolve_will(w, status);
            }
            !clean
        } else {
            false
        };
        let epoch = self.next_epoch;
        let life = &mut self.lives[client];
        if !present {
            life.epoch = epoch;
            life.owed.clear();
            self.next_epoch += 1;
        }
        life.exists = true;
        life.attached = Some(c);
        life.expiry_secs = self.conns[c].negotiated.session_expiry_secs;
        life.expires_at = None;
        life.will = self.conns[c].will;
        present
    }

    /// DISCONNECT read on the attached link `c`.
    fn oracle_disconnect(&mut self, c: ConnId, d: &Disconnect) {
        let client = self.conns[c].client;
        assert_eq!(self.lives[client].attached, Some(c));
        if let Some(expiry) = d.properties.session_expiry_interval {
            self.lives[client].expiry_secs = expiry;
        }
        if d.code != ReasonCode::DISCONNECT_WITH_WILL_MESSAGE {
            // MQTT-3.14.4-3: deleted on receipt.
            if let Some(w) = self.lives[client].will.take() {
                self.resolve_will(w, WillStatus::Discarded);
            }
        }
    }

    /// The attached link `c` has ended for `cause` (3.1.2.5).
    fn oracle_lost(&mut self, c: ConnId, cause: CloseCause) {
        let client = self.conns[c].client;
        let now = self.now;
        assert_eq!(self.lives[client].attached, Some(c));
        self.lives[client].attached = None;
        let expiry = self.lives[client].expiry_secs;
        if let Some(w) = self.lives[client].will.take() {
            let due = match cause {
                CloseCause::ClientDisconnect(code) => {
                    code == ReasonCode::DISCONNECT_WITH_WILL_MESSAGE
                }
                CloseCause::KeepAliveTimeout
                | CloseCause::NetworkError
                | CloseCause::ProtocolError
                | CloseCause::Administrative => true,
                CloseCause::TakenOver | CloseCause::ServerShutdown => false,
            };
            let delay = self.wills[w as usize].delay_secs;
            let status = if !due {
                WillStatus::Discarded
            } else if delay == 0 || expiry == 0 {
                WillStatus::Published(now)
            } else {
                // The delay or the session's end, whichever first.
                let secs = delay.min(expiry);
                self.lives[client].will = Some(w);
                WillStatus::Pending(now.add_secs(u64::from(secs)))
            };
            self.resolve_will(w, status);
        }
        match expiry {
            0 => self.end_life(client),
            u32::MAX => {}
            secs => self.lives[client].expires_at = Some(now.add_secs(u64::from(secs))),
        }
    }

    fn end_life(&mut self, client: usize) {
        assert!(
            self.lives[client].will.is_none(),
            "a session ended with its will pending"
        );
        let epoch = self.next_epoch;
        self.next_epoch += 1;
        let life = &mut self.lives[client];
        life.exists = false;
        life.attached = None;
        life.expires_at = None;
        life.epoch = epoch;
        life.owed.clear();
    }

    /// A timer of the session of `client` is handled now: what is due by
    /// the oracle's own deadlines happens (a fire before them, a stale
    /// one, must change nothing).
    fn oracle_timer(&mut self, client: usize, timer: Timer) {
        let now = self.now;
        match timer {
            Timer::KeepAlive => {}
            Timer::WillDelay => {
                if let Some(w) = self.lives[client].will {
                    if let WillStatus::Pending(at) = self.wills[w as usize].status {
                        if at <= now {
                            self.lives[client].will = None;
                            self.resolve_will(w, WillStatus::Published(now));
                        }
                    }
                }
            }
            Timer::SessionExpiry => {
                let life = &self.lives[client];
                if life.attached.is_none() && life.expires_at.is_some_and(|at| at <= now) {
                    self.oracle_discard(client);
                }
            }
        }
    }

    /// The absent session of `client` ends now (expiry, --max-sessions):
    /// a pending will goes at once (3.1.3.2.2: "or the Session ends").
    fn oracle_discard(&mut self, client: usize) {
        assert_eq!(self.lives[client].attached, None);
        if let Some(w) = self.lives[client].will.take() {
            assert!(matches!(
                self.wills[w as usize].status,
                WillStatus::Pending(_)
            ));
            self.resolve_will(w, WillStatus::Published(self.now));
        }
        self.end_life(client);
    }

    fn will_published(&mut self, will: &Will) {
        let w = msg_id(&will.payload);
        trace(format!("t={} will {w} published", self.now.0));
        let rec = &mut self.wills[w as usize];
        rec.published += 1;
        assert_eq!(rec.published, 1, "will {w} published twice");
        self.published.push((w, self.now));
    }

    // ----- checks -------------------------------------------------------

    /// At most one connection attached per client id, table and links
    /// agreeing; a detached, open link is closing.
    fn check_attachment(&self) {
        for client in 0..self.ids.len() {
            let sid = self.table.find(&self.ids[client]);
            let attached: Vec<ConnId> = (0..self.conns.len())
                .filter(|&c| self.conns[c].client == client && self.conns[c].session.is_some())
                .collect();
            assert!(
                attached.len() <= 1,
                "connections {attached:?} attached to one id"
            );
            let link = sid.and_then(|s| self.table.link_of(s));
            assert_eq!(link, attached.first().copied(), "table and links disagree");
            if let Some(c) = link {
                assert!(!self.conns[c].closed, "closed c{c} attached");
                assert_eq!(self.conns[c].session, sid);
            }
            for (c, conn) in self.conns.iter().enumerate() {
                if conn.client == client && conn.accepted && !conn.closed && conn.session.is_none()
                {
                    assert!(conn.close.is_some(), "detached c{c} left open");
                }
            }
        }
    }

    /// Everything that must hold between steps.
    fn check(&mut self) {
        self.check_attachment();
        self.published.sort_unstable();
        self.expected.sort_unstable();
        assert_eq!(
            self.published, self.expected,
            "wills published (left) differ from the matrix and will rules (right)"
        );
        self.published.clear();
        self.expected.clear();
        for client in 0..self.ids.len() {
            let life = &self.lives[client];
            let sid = self.table.find(&self.ids[client]);
            assert_eq!(
                sid.is_some(),
                life.exists,
                "the table holds a session the rules ended, or lost one"
            );
            if let Some(sid) = sid {
                let entry = &self.table.by_id[&sid];
                assert_eq!(entry.link, life.attached);
                assert_eq!(entry.session.is_connected(), entry.link.is_some());
                let subs: BTreeSet<Bytes> = entry
                    .session
                    .subscriptions()
                    .map(|(f, _)| f.clone())
                    .collect();
                assert_eq!(subs, entry.routes, "routes and subscriptions disagree");
                for key in entry.timers.iter().flatten() {
                    assert!(
                        self.wheel.contains_key(key),
                        "a timer key with no wheel entry"
                    );
                }
            }
        }
        if self.due.is_empty() {
            // No backlog: nothing is late.
            for (client, life) in self.lives.iter().enumerate() {
                if let Some(w) = life.will {
                    if let WillStatus::Pending(at) = self.wills[w as usize].status {
                        assert!(at > self.now, "will {w} of dev{client} overdue since {at}");
                    }
                }
                if let Some(at) = life.expires_at {
                    assert!(at > self.now, "session of dev{client} overdue since {at}");
                }
            }
        }
        for (key, (sid, timer)) in &self.wheel {
            let entry = self
                .table
                .by_id
                .get(sid)
                .expect("a wheel entry outlived its session");
            assert_eq!(entry.timers[timer.index()], Some(*key));
        }
    }

    // ----- a case -------------------------------------------------------

    fn live_conns(&self, client: usize) -> usize {
        self.conns
            .iter()
            .filter(|c| c.client == client && !c.closed && !c.fin)
            .count()
    }

    /// One random step of the world.
    fn step(&mut self) {
        self.stats.steps += 1;
        match self.rng.below(20) {
            0..=2 => {
                let client = self.rng.below(self.ids.len() as u64) as usize;
                if self.live_conns(client) < self.knobs.contenders {
                    let p = self.random_params();
                    self.spawn(client, p);
                }
            }
            3..=9 => {
                let alive: Vec<ConnId> = (0..self.conns.len())
                    .filter(|&c| !self.conns[c].closed && !self.conns[c].fin)
                    .collect();
                if !alive.is_empty() {
                    let c = self.rng.pick(&alive);
                    self.client_step(c);
                }
            }
            10..=16 => self.server_turn(),
            _ => {
                let ms = match self.rng.below(10) {
                    0..=4 => self.rng.range(0, 300),
                    5..=8 => self.rng.range(300, 5_000),
                    _ => self.rng.range(5_000, 60_000),
                };
                self.advance_to(self.now.add_ms(ms));
            }
        }
        self.check();
    }

    /// Scenario (a): a connection with a session, then its FIN and a new
    /// CONNECT for the same id, handled in one turn in a random order.
    fn fin_against_connect(&mut self) {
        let p = self.random_params();
        let old = self.spawn(0, p);
        self.handle(old, usize::MAX);
        self.flush();
        self.check();
        for _ in 0..self.rng.range(0, 6) {
            self.server_turn();
            self.client_read(old, 3, self.knobs.ack);
            self.check();
        }
        if self.conns[old].closed {
            return;
        }
        self.conns[old].fin = true;
        let p = self.random_params();
        let new = self.spawn(0, p);
        if self.rng.chance(1, 2) {
            self.stats.fin_first += 1;
            self.complete(old);
            self.complete_eof(old);
            self.handle(new, usize::MAX);
        } else {
            self.stats.connect_first += 1;
            self.handle(new, usize::MAX);
            self.complete(old);
            self.complete_eof(old);
        }
        self.flush();
        self.check();
    }

    /// The end of a case: the server handles everything in flight, then
    /// the last client reconnects (clean start 0) to every id and
    /// acknowledges everything; every message owed must have reached it.
    fn settle(&mut self) {
        self.quiesce();
        let mut finals = Vec::new();
        for client in 0..self.ids.len() {
            for attempt in 0.. {
                assert!(attempt < 5, "the last client cannot connect");
                let v5 = self.rng.chance(1, 2);
                let f = self.spawn(client, Params::plain(v5, false));
                self.quiesce();
                if self.conns[f].session.is_some() {
                    finals.push(f);
                    break;
                }
                // Refused (--takeover-limit): wait the window out.
                let window = self.flags.takeover_window_secs + 1;
                self.advance_to(self.now.add_secs(window));
                self.quiesce();
            }
        }
        for (client, &f) in finals.iter().enumerate() {
            assert!(self.conns[f].session.is_some(), "final c{f} not attached");
            let life = &self.lives[client];
            let app = &self.clients[client].app;
            for msg in &life.owed {
                assert!(
                    app.contains_key(msg),
                    "message {msg} accepted for a session that survived never reached the client"
                );
            }
            let sid = self
                .table
                .find(&self.ids[client])
                .expect("the final session");
            assert_eq!(
                self.table.by_id[&sid].session.outbound_len(),
                (0, 0),
                "messages left after everything was acknowledged"
            );
        }
        // Goodbye; then time runs out for every session and every will.
        for &f in &finals {
            let bye = Disconnect {
                code: ReasonCode::NORMAL_DISCONNECTION,
                properties: Properties::default(),
            };
            self.client_send(f, Packet::Disconnect(bye));
        }
        self.quiesce();
        self.advance_to(self.now.add_secs(30 * 86_400));
        self.check();
        assert!(self.due.is_empty(), "fired timers never handled");
        assert!(
            self.table.by_id.is_empty(),
            "sessions left after every expiry"
        );
        assert!(
            self.wheel.is_empty(),
            "timers left after every session ended"
        );
        for (w, rec) in self.wills.iter().enumerate() {
            match rec.status {
                WillStatus::Published(_) => assert_eq!(rec.published, 1, "will {w}"),
                WillStatus::Discarded => assert_eq!(rec.published, 0, "will {w}"),
                other => panic!("will {w} still {other:?} at the end"),
            }
        }
    }

    /// Runs server turns and acknowledging clients (no time passes, no
    /// new decisions by clients) until nothing moves.
    fn quiesce(&mut self) {
        for _ in 0..10_000 {
            let mut moved = false;
            let ready: Vec<ConnId> = (0..self.conns.len())
                .filter(|&c| self.readable(c))
                .collect();
            for c in ready {
                moved = true;
                let n = self.conns[c].to_server.len();
                if n == 0 {
                    self.close(c, CloseCause::NetworkError);
                } else {
                    self.handle(c, n);
                }
                self.check_attachment();
            }
            self.flush();
            for c in 0..self.conns.len() {
                if self.client_read(c, usize::MAX, 100) > 0 {
                    moved = true;
                }
            }
            self.check();
            if !moved {
                return;
            }
        }
        panic!("the simulation does not settle");
    }
}

fn puback(packet_id: u16) -> Packet {
    Packet::PubAck(PubAck {
        packet_id,
        code: ReasonCode::SUCCESS,
        properties: Properties::default(),
    })
}

fn pubrec(packet_id: u16) -> Packet {
    Packet::PubRec(PubRec {
        packet_id,
        code: ReasonCode::SUCCESS,
        properties: Properties::default(),
    })
}

fn pubcomp(packet_id: u16) -> Packet {
    Packet::PubComp(PubComp {
        packet_id,
        code: ReasonCode::SUCCESS,
        properties: Properties::default(),
    })
}

/// One seeded case: scenario (a), (b) or (c) by the seed. `backlog`: a
/// --will-rate of 1-3 timers a second, so fired timers wait.
fn run_case(seed: u64, backlog: bool) -> Stats {
    let mut rng = Rng::new(seed ^ 0xA5A5_A5A5_A5A5_A5A5);
    let scenario = rng.below(3);
    let (ids, knobs, steps) = match scenario {
        // (a) FIN against CONNECT, then a little of everything.
        0 => (
            1,
            Knobs {
                contenders: 2,
                ack: rng.range(30, 100),
                clean: 25,
                deliveries: 2,
            },
            rng.range(5, 30),
        ),
        // (b) fights: 2-4 clients reconnecting with the same id.
        1 => (
            if rng.chance(1, 4) { 2 } else { 1 },
            Knobs {
                contenders: rng.range(2, 4) as usize,
                ack: rng.range(30, 100),
                clean: 30,
                deliveries: 2,
            },
            rng.range(30, 90),
        ),
        // (c) QoS 1/2 traffic throughout, reconnects in between.
        _ => (
            1,
            Knobs {
                contenders: 2,
                ack: rng.range(10, 90),
                clean: 10,
                deliveries: 5,
            },
            rng.range(40, 100),
        ),
    };
    let mut flags = Flags::new(rng.range(5, 120) as u32);
    flags.takeover_limit = match rng.below(4) {
        0 => 0,
        1 => rng.range(1, 3) as u32,
        _ => 10,
    };
    if ids == 2 && rng.chance(1, 4) {
        flags.max_absent = 1;
    }
    if backlog {
        flags.will_rate = rng.range(1, 3);
    }
    let mut sim = Sim::new(seed, ids, knobs, flags);
    if scenario == 0 {
        sim.fin_against_connect();
    }
    for _ in 0..steps {
        sim.step();
    }
    sim.settle();
    sim.stats.cases = 1;
    sim.stats.clone()
}

#[test]
fn takeover_simulation() {
    run_cases(false);
}

/// The simulation with fired timers held back by a tiny --will-rate: it
/// finds the stale-timer bug of the backlog (see
/// `a_will_delay_fire_held_back_by_will_rate_is_harmless`).
#[test]
fn takeover_simulation_with_a_timer_backlog() {
    run_cases(true);
}

fn run_cases(backlog: bool) {
    let base = env_u64("RINGMQ_SIM_SEED", DEFAULT_SEED);
    let cases = env_u64("RINGMQ_SIM_CASES", DEFAULT_CASES);
    let mut total = Stats::default();
    let started = std::time::Instant::now();
    for i in 0..cases {
        let seed = base.wrapping_add(i);
        TRACE.with(|t| t.borrow_mut().clear());
        let result = std::panic::catch_unwind(|| run_case(seed, backlog));
        match result {
            Ok(stats) => total.add(&stats),
            Err(panic) => {
                let mut msg = String::new();
                TRACE.with(|t| {
                    for line in t.borrow().iter() {
                        let _ = writeln!(msg, "  {line}");
                    }
                });
                eprintln!(
                    "take-over simulation failed at case {i}: reproduce with\n  \
                     RINGMQ_SIM_SEED={seed} RINGMQ_SIM_CASES=1 cargo test -p ringmq-session \
                     --test takeover_sim {} -- --include-ignored\nlast events:\n{msg}",
                    if backlog {
                        "takeover_simulation_with_a_timer_backlog"
                    } else {
                        "takeover_simulation"
                    }
                );
                std::panic::resume_unwind(panic);
            }
        }
    }
    eprintln!(
        "take-over simulation: seed {base}, {} cases in {:?}: {total:?}",
        total.cases,
        started.elapsed()
    );
}

// ---------------------------------------------------------------------
// The matrix, row by row, and both orders of FIN against CONNECT
// ---------------------------------------------------------------------

/// One row of will_matrix.md: the old connection (protocol, session
/// expiry, will delay) and the new CONNECT's clean start; what happens
/// to the old connection's will, and the new CONNACK's Session Present.
struct Row {
    v5: bool,
    /// v5: Session Expiry Interval; v3.1.1: 0 = clean session 1, else
    /// clean session 0 (the session then lives `v3_session_expiry_secs`).
    old_expiry_secs: u32,
    will_delay_secs: u32,
    new_clean_start: bool,
    /// The old connection's will is published (at the take-over).
    will: bool,
    session_present: bool,
}

impl Row {
    fn describe(&self) -> String {
        format!(
            "{} old session expiry {} s, will delay {} s, new clean start {}",
            if self.v5 { "v5" } else { "v3.1.1" },
            self.old_expiry_secs,
            self.will_delay_secs,
            u8::from(self.new_clean_start)
        )
    }
}

const fn row(
    v5: bool,
    old_expiry_secs: u32,
    will_delay_secs: u32,
    new_clean_start: bool,
    will: bool,
    session_present: bool,
) -> Row {
    Row {
        v5,
        old_expiry_secs,
        will_delay_secs,
        new_clean_start,
        will,
        session_present,
    }
}

/// will_matrix.md, row by row. Expiry 0 (v3.1.1 clean session 1) rows
/// resumed the session until 806afd3.
const MATRIX: [Row; 12] = [
    // v3.1.1: the will is never published on take-over.
    row(false, 0, 0, false, false, false),
    row(false, 0, 0, true, false, false),
    row(false, 60, 0, false, false, true),
    row(false, 60, 0, true, false, false),
    // v5, Will Delay 0: published at once.
    row(true, 0, 0, false, true, false),
    row(true, 0, 0, true, true, false),
    row(true, 60, 0, false, true, true),
    row(true, 60, 0, true, true, false),
    // v5, Will Delay > 0: published at once when the session ends (clean
    // start 1, or expiry 0); cancelled by the new connection otherwise.
    row(true, 0, 30, false, true, false),
    row(true, 0, 30, true, true, false),
    row(true, 60, 30, false, false, true),
    row(true, 60, 30, true, true, false),
];

fn quiet_knobs() -> Knobs {
    Knobs {
        contenders: 2,
        ack: 100,
        clean: 0,
        deliveries: 0,
    }
}

/// The old connection of a row, connected and holding a subscription.
fn old_connection(sim: &mut Sim, r: &Row) -> ConnId {
    let old = sim.spawn(
        0,
        Params {
            v5: r.v5,
            clean_start: !r.v5 && r.old_expiry_secs == 0,
            expiry_secs: r.old_expiry_secs,
            will: true,
            will_delay_secs: r.will_delay_secs,
            keep_alive: 0,
            receive_maximum: None,
        },
    );
    sim.handle(old, usize::MAX);
    sim.flush();
    sim.check();
    assert!(sim.conns[old].session.is_some());
    old
}

/// The Session Present of the CONNACK written to `c`.
fn written_present(sim: &Sim, c: ConnId) -> bool {
    sim.conns[c]
        .outbuf
        .iter()
        .find_map(|(_, p)| match p {
            Packet::ConnAck(ack) => Some(ack.session_present),
            _ => None,
        })
        .expect("a CONNACK")
}

#[test]
fn will_on_takeover_matrix() {
    for r in &MATRIX {
        let mut sim = Sim::new(1, 1, quiet_knobs(), Flags::new(60));
        let old = old_connection(&mut sim, r);
        let new = sim.spawn(0, Params::plain(r.v5, r.new_clean_start));
        sim.handle(new, usize::MAX);
        assert_eq!(sim.conns[new].waiting, Some(old), "a take-over");
        let at_takeover = sim.published.len();
        sim.flush();
        sim.check();
        assert!(sim.conns[old].closed && sim.conns[new].waiting.is_none());
        let present = written_present(&sim, new);
        // Nothing comes later either: the will was published or dropped.
        sim.advance_to(Tick(86_400_000));
        sim.check();
        let what = r.describe();
        assert_eq!(
            at_takeover,
            usize::from(r.will),
            "will at take-over: {what}"
        );
        assert_eq!(
            sim.wills[0].published,
            u32::from(r.will),
            "will in total: {what}"
        );
        assert_eq!(present, r.session_present, "Session Present: {what}");
        // The matrix function the simulation asserts is this table.
        let expiry = if r.v5 { r.old_expiry_secs } else { 0 };
        assert_eq!(
            takeover_publishes_will(r.v5, r.new_clean_start, expiry, r.will_delay_secs),
            r.will,
            "{what}"
        );
    }
}

/// What the will and CONNACK come to when the old connection's FIN is
/// handled before the new CONNECT: the ordinary will rules (the old
/// connection ended abnormally, then a new one came to the session).
fn fin_first_outcome(r: &Row) -> (bool, bool) {
    let session_lives = r.old_expiry_secs > 0;
    let will = !r.v5
        || r.will_delay_secs == 0
        || !session_lives
        // A reconnection within the delay cancels it, unless clean start
        // ends the session.
        || r.new_clean_start;
    (will, session_lives && !r.new_clean_start)
}

#[test]
fn fin_and_connect_in_both_orders() {
    let mut differ = Vec::new();
    for r in &MATRIX {
        let mut outcomes = Vec::new();
        for fin_first in [true, false] {
            let mut sim = Sim::new(2, 1, quiet_knobs(), Flags::new(60));
            let old = old_connection(&mut sim, r);
            sim.conns[old].fin = true;
            let new = sim.spawn(0, Params::plain(r.v5, r.new_clean_start));
            if fin_first {
                sim.complete(old);
                sim.handle(new, usize::MAX);
            } else {
                sim.handle(new, usize::MAX);
                sim.complete(old);
            }
            sim.flush();
            sim.check();
            let present = written_present(&sim, new);
            // A will still pending must not fire: the session is connected.
            sim.advance_to(Tick(86_400_000));
            sim.check();
            let will = match sim.wills[0].status {
                WillStatus::Published(at) => {
                    assert_eq!(at, Tick(0), "published at once or never");
                    true
                }
                WillStatus::Discarded => false,
                other => panic!("will {other:?}"),
            };
            outcomes.push((will, present));
        }
        let what = r.describe();
        assert_eq!(outcomes[0], fin_first_outcome(r), "FIN first: {what}");
        assert_eq!(
            outcomes[1],
            (r.will, r.session_present),
            "CONNECT first: {what}"
        );
        if outcomes[0] != outcomes[1] {
            differ.push(format!(
                "{what}: FIN first {:?}, CONNECT first {:?}",
                outcomes[0], outcomes[1]
            ));
        }
    }
    // (will published, session present) by order, where the order matters.
    eprintln!("rows where the order matters:\n  {}", differ.join("\n  "));
}

// ---------------------------------------------------------------------
// Bugs found: regression tests
// ---------------------------------------------------------------------

fn v3_connect(clean_session: bool) -> Connect {
    Connect {
        protocol: ProtocolVersion::V3_1_1,
        clean_start: clean_session,
        keep_alive: 0,
        client_id: Bytes::from_static(b"dev"),
        will: None,
        username: None,
        password: None,
        properties: Properties::default(),
    }
}

fn sim_subscribe() -> Packet {
    Packet::Subscribe(Subscribe {
        packet_id: 1,
        properties: Properties::default(),
        filters: vec![(
            Bytes::from_static(FILTER),
            SubscriptionOptions {
                qos: QoS::AtLeastOnce,
                ..SubscriptionOptions::default()
            },
        )],
    })
}

/// A take-over does not resume a v3.1.1 clean-session-1 session (a bug
/// until 806afd3, found by this simulation). 3.1.1 MQTT-3.1.2-6: with
/// CleanSession 1 "this Session lasts as long as the Network Connection.
/// State data associated with this Session MUST NOT be reused in any
/// subsequent Session"; the take-over closes that connection
/// (MQTT-3.1.4-2), so a CleanSession 0 CONNECT finds no session: Session
/// Present 0 (MQTT-3.2.2-3), no subscription, as when the old
/// connection's FIN is handled first.
#[test]
fn v3_takeover_must_not_resume_a_clean_session_1_session() {
    let policy = ServerPolicy {
        max_qos: QoS::ExactlyOnce,
        ..ServerPolicy::default()
    };
    let mut out = Outbox::new();
    let old = v3_connect(true);
    let mut session = Session::new(old.client_id.clone(), old.protocol);
    let negotiated = negotiate(&old, &policy).unwrap();
    session.connect(&old, &negotiated, &policy, None, Tick(0), &mut out);
    session.handle_packet(sim_subscribe(), &policy, Tick(1), &mut out);
    out.drain().for_each(drop);

    // The new CONNECT (clean session 0) is handled before the old FIN.
    let new = v3_connect(false);
    let negotiated = negotiate(&new, &policy).unwrap();
    session.taken_over(new.clean_start, &mut out);
    session.connect(&new, &negotiated, &policy, None, Tick(2), &mut out);
    let present = connack_present(&out).unwrap();
    assert!(
        !present,
        "CONNACK Session Present 1 for a clean-session-1 session"
    );
    assert!(
        session.subscription(FILTER).is_none(),
        "the clean-session-1 session's subscription was reused"
    );
}

/// A take-over ends a v5 session whose Session Expiry Interval is 0 and
/// sends its delayed will (a bug until 806afd3, found by this
/// simulation: Session Present 1 and the will dropped). MQTT 5
/// 3.1.2.11.2: with expiry 0 "the Session ends when the Network
/// Connection is closed", and the take-over closes it (MQTT-3.1.4-3); the
/// non-normative comment under MQTT-3.1.4-3: "If the Session Expiry
/// Interval of the existing Network Connection is 0 ... the Will Message
/// ... will be sent because the original Session is ended on the
/// takeover." So: Session Present 0, no subscription, the will at once,
/// as when the old connection's FIN is handled first.
#[test]
fn v5_takeover_ends_a_session_expiry_0_session_and_sends_its_will() {
    let policy = ServerPolicy {
        max_qos: QoS::ExactlyOnce,
        ..ServerPolicy::default()
    };
    let mut out = Outbox::new();
    let mut old = v3_connect(false);
    old.protocol = ProtocolVersion::V5;
    old.will = Some(Will {
        topic: Bytes::from_static(b"will/dev"),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Properties {
            will_delay_interval: Some(30),
            ..Properties::default()
        },
    });
    // No Session Expiry Interval: 0.
    let mut session = Session::new(old.client_id.clone(), old.protocol);
    let negotiated = negotiate(&old, &policy).unwrap();
    session.connect(&old, &negotiated, &policy, None, Tick(0), &mut out);
    session.handle_packet(sim_subscribe(), &policy, Tick(1), &mut out);
    out.drain().for_each(drop);

    let mut new = v3_connect(false);
    new.protocol = ProtocolVersion::V5;
    new.properties.session_expiry_interval = Some(60);
    let negotiated = negotiate(&new, &policy).unwrap();
    session.taken_over(new.clean_start, &mut out);
    let wills = out
        .actions()
        .iter()
        .filter(|a| matches!(a, Action::PublishWill(_)))
        .count();
    session.connect(&new, &negotiated, &policy, None, Tick(2), &mut out);
    let present = connack_present(&out).unwrap();
    assert_eq!(
        wills, 1,
        "the will of a session ended by the take-over was not sent"
    );
    assert!(
        !present,
        "CONNACK Session Present 1 for a Session Expiry 0 session"
    );
    assert!(
        session.subscription(FILTER).is_none(),
        "the expired session's subscription was reused"
    );
}

/// Regression (the --will-rate backlog; fixed by `Session` keeping the
/// will's deadline and publishing on a reconnection after it): a will whose
/// delay has passed, but whose WillDelay fire still waits for a token, is
/// cancelled if the client reconnects before the backlog reaches it. The
/// reconnection's CancelTimer makes the waiting fire stale (driver.rs
/// `run_due` skips it), and `Session::connect` cancels a pending will
/// without knowing its delay is over. MQTT-3.1.2-8: the will "MUST be
/// published after the Network Connection is subsequently closed and
/// either the Will Delay Interval has elapsed or the Session ends, unless
/// ... a new Network Connection for the ClientID is opened before the
/// Will Delay Interval has elapsed": this one was opened after. (A later
/// will is never published early any more: the stale fire is skipped.)
/// A fix: `on_connect` handles the session's fires already waiting in the
/// backlog before `connect` (they are due), or the session keeps its
/// will's deadline and publishes a pending will that is due on connect.
#[test]
fn a_will_whose_delay_passed_is_published_though_its_fire_waits() {
    let mut flags = Flags::new(60);
    flags.will_rate = 1;
    let mut sim = Sim::new(3, 1, quiet_knobs(), flags);
    let mut p = Params::plain(true, false);
    p.will = true;
    p.will_delay_secs = 10;
    let c0 = sim.spawn(0, p);
    sim.handle(c0, usize::MAX);
    sim.flush();
    // The token of this second goes to one of a storm of other sessions'
    // timers.
    sim.due
        .push_back((OTHERS, Timer::SessionExpiry, Tick(0), 0));
    sim.run_due();
    sim.conns[c0].fin = true;
    sim.complete(c0);
    sim.flush();
    sim.check();
    assert_eq!(sim.wills[0].status, WillStatus::Pending(Tick(10_000)));
    // 10 s: WillDelay fires, behind a storm of other sessions' timers.
    sim.advance_to(Tick(9_999));
    for _ in 0..5 {
        sim.due
            .push_back((OTHERS, Timer::SessionExpiry, Tick(9_999), 0));
    }
    sim.advance_to(Tick(10_000));
    assert!(sim
        .due
        .iter()
        .any(|&(sid, timer, _, _)| sid != OTHERS && timer == Timer::WillDelay));
    // 10.5 s: the client is back, after the delay; the fire still waits.
    sim.advance_to(Tick(10_500));
    assert!(sim
        .due
        .iter()
        .any(|&(sid, timer, _, _)| sid != OTHERS && timer == Timer::WillDelay));
    let c1 = sim.spawn(0, Params::plain(true, false));
    sim.handle(c1, usize::MAX);
    sim.flush();
    // The oracle expects the will now (MQTT-3.1.2-8).
    sim.check();
}
