//! The shard's whole life as one loop on its own io_uring.
//!
//! A connection is a slot in a slab, not a task: its socket, its partial
//! packet and the bytes being sent. Nothing else waits for it; the kernel
//! holds one multishot receive per connection and picks a provided buffer
//! only when bytes arrive. One loop turn:
//!
//! 1. copy every ready completion out of the ring;
//! 2. drain the inbox (so a route-add that preceded this data is known),
//!    start the sockets other shards handed over;
//! 3. handle the completions: accepts open slots, reads feed the decode
//!    loop (`frames::feed`), sends advance, the doorbell re-arms;
//! 4. fire due timers, move waiting messages into full channels;
//! 5. flush the links marked dirty: closes first (a take-over's CONNACK
//!    waits for the old connection's close), then one write per link (the
//!    first few with send(2) at once, the rest as ring requests);
//! 6. submit everything and sleep in `io_uring_enter` until a completion
//!    or the next deadline (the wheel, a back-off, a take-over's limit).
//!
//! The sleep is the shard's only wait. Every wake-up source is a request on
//! this ring: sockets, the inbox doorbell (a byte on a socket pair, read
//! here), and time (the wait's timeout). glommio's own reactor has nothing
//! registered, so there is no second place a completion could be missed.
//! Before sleeping the shard marks its inbox parked and re-checks it, so a
//! message sent meanwhile rings the doorbell (see `mesh.rs`).

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use ringmq_session::CloseCause;
use tracing::{debug, trace, warn};

use super::frames::{self, Fed};
use super::link::{CertName, Dirty, Link};
use super::ratelimit::Gate;
use super::Shard;
use crate::config::Scheme;
use crate::io::ring::{Completion, Op, Ring, Token};
use crate::stats::ShardStats;
use crate::transport::{Fault, Status, Transport, WsConfig};

/// Longest a take-over waits for the old connection to close.
const TAKEOVER_WAIT: Duration = Duration::from_millis(100);
/// Back-off while a full channel to another shard drains.
const CONGESTED_BACKOFF: Duration = Duration::from_micros(100);
/// Back-off after an accept error (out of descriptors).
const ACCEPT_RETRY: Duration = Duration::from_millis(10);
/// Reads at least this large are taken whole (no copy) when nothing is
/// pending; smaller ones are copied into the arena and the buffer returned.
const TAKE_WHOLE_MIN: usize = 8 * 1024;
/// Bytes of each arena block small reads are copied into.
const ARENA_BYTES: usize = 64 * 1024;
/// Writes per turn made at once with send(2); the rest of a turn's writes
/// (a fan-out) go to the kernel as one batch of ring requests.
const DIRECT_SENDS: u32 = 4;
/// Bytes of input a turn handles before it writes what they produced (a
/// turn with many ready reads would otherwise hold every reply and
/// delivery until its end).
const FLUSH_BYTES: usize = 64 * 1024;
/// How long shutdown waits for clients to take their DISCONNECT.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(2);
/// TLS handshake steps (reads of a connection still handshaking: each may
/// cost a signature and a key exchange, ~0.1-0.2 ms) one turn handles; the
/// rest wait for the next turn, so a storm of TLS connects delays the
/// shard's established clients by a few milliseconds at most, not by a
/// turn of hundreds of handshakes.
const HANDSHAKES_PER_TURN: u32 = 16;

/// How a connection's reads stand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reading {
    /// No receive in the kernel.
    Off,
    /// A single receive (before CONNECT is handled).
    Once,
    /// A multishot receive.
    Multi,
}

/// Where a connection is in its life.
enum State {
    /// Reading and writing.
    Open,
    /// Back-pressure: a channel to another shard is full; bytes read are
    /// kept, not handled, and no new receive is armed.
    Paused,
    /// A take-over: everything after its CONNECT waits for the old link's
    /// close (or the time limit); see `Engine::waiting`.
    Waiting,
    /// The client does not read: its output passed --max-outbuf-bytes, so
    /// it is not read either (it would only make more output) until its
    /// output drains to half that.
    Blocked,
    /// Its CONNECT waits for its password check (a verifier thread): not
    /// read, its bytes kept, until the verdict resumes it.
    Parked,
    /// Its CONNECT names a client id another shard owns, but a send (of
    /// its TLS handshake) is still in flight: it moves once that is done.
    HandingOff(u8),
    /// Closed for the session; the slot lives until the kernel has
    /// finished every request on it.
    Closed,
}

/// One connection (its link lives in the core's `Links`, by the same slot).
struct Conn {
    /// A partial packet (or, while paused or waiting, unhandled bytes).
    pending: BytesMut,
    /// Bytes handed to the kernel to send (empty: no send in flight).
    sending: Bytes,
    fd: OwnedFd,
    reading: Reading,
    state: State,
    adopted: bool,
    /// `pending` is a view into a read block (the shared arena, or a whole
    /// read buffer taken without a copy): a partial packet left there must
    /// move out before the turn ends, or it pins the whole block.
    in_arena: bool,
    /// TLS and/or WebSocket (`None`: MQTT straight over TCP). `pending`
    /// then holds what it decoded, in storage of its own.
    transport: Option<Box<Transport>>,
}

impl Conn {
    fn in_flight(&self) -> bool {
        self.reading != Reading::Off || !self.sending.is_empty()
    }
}

struct Slot {
    gen: u32,
    conn: Option<Conn>,
}

/// Slots in pages of this many, so growing never moves a connection and
/// never over-allocates by more than a page.
const PAGE: usize = 1024;

/// Every connection of the shard, by slot.
#[derive(Default)]
struct Slab {
    pages: Vec<Box<[Slot]>>,
    free: Vec<u32>,
}

impl Slab {
    fn alloc(&mut self) -> u32 {
        if let Some(slot) = self.free.pop() {
            return slot;
        }
        let base = self.pages.len() * PAGE;
        self.pages
            .push((0..PAGE).map(|_| Slot { gen: 0, conn: None }).collect());
        self.free
            .extend((base + 1..base + PAGE).rev().map(|s| s as u32));
        base as u32
    }

    fn release(&mut self, slot: u32) {
        self.free.push(slot);
    }

    fn get(&self, slot: u32) -> Option<&Slot> {
        let slot = slot as usize;
        self.pages.get(slot / PAGE).map(|p| &p[slot % PAGE])
    }

    fn get_mut(&mut self, slot: u32) -> Option<&mut Slot> {
        let slot = slot as usize;
        self.pages.get_mut(slot / PAGE).map(|p| &mut p[slot % PAGE])
    }

    fn len(&self) -> u32 {
        (self.pages.len() * PAGE) as u32
    }

    fn conns(&self) -> impl Iterator<Item = &Conn> {
        self.pages
            .iter()
            .flat_map(|p| p.iter())
            .filter_map(|s| s.conn.as_ref())
    }
}

/// A listening socket and whether its multishot accept is armed.
struct Listener {
    fd: OwnedFd,
    armed: bool,
    scheme: Scheme,
    /// Its WebSocket settings (unused by other schemes).
    ws: WsConfig,
}

/// The engine's state beside the shard's `Core`.
struct Engine {
    shard: Rc<Shard>,
    ring: Ring,
    slots: Slab,
    listeners: Vec<Listener>,
    doorbell: OwnedFd,
    doorbell_buf: Box<[u8; 64]>,
    doorbell_armed: bool,
    /// Small reads are copied here; frames are `Bytes` slices of it.
    arena: BytesMut,
    completions: Vec<Completion>,
    dirty: Vec<u32>,
    /// Connections to re-arm a receive for at the end of the turn.
    rearm: Vec<u32>,
    paused: Vec<u32>,
    /// Take-overs: (new connection's slot, the old link, time limit).
    waiting: Vec<(u32, Rc<Link>, Instant)>,
    accept_retry_at: Option<Instant>,
    accept_error_logged: Option<Instant>,
    shutdown_deadline: Option<Instant>,
    /// `--busy-poll-us`.
    busy_poll: Duration,
    /// Writes left this turn that may go out directly with send(2).
    direct_sends: u32,
    /// Bytes read since the last flush within this turn.
    read_since_flush: usize,
    /// `--max-outbuf-bytes`.
    max_outbuf: usize,
    /// Sends the kernel holds (slot, the bytes' address, next check, the
    /// peer's acknowledged bytes at the last check). At each check a send
    /// still there whose peer acknowledged nothing since the last one
    /// (`--write-stall-timeout-ms` apart) closes its connection; a slow
    /// reader that makes progress is checked again later. An entry is
    /// current while the connection's `sending` still starts at that
    /// address; a send that completes, or is resubmitted after progress,
    /// leaves a stale entry behind, dropped at the next check.
    stalls: Vec<Stall>,
    stall_timeout: Duration,
    /// TLS handshakes under way on this shard, and --max-tls-handshakes.
    handshakes: usize,
    max_handshakes: usize,
    /// Handshake steps this turn may still take (`HANDSHAKES_PER_TURN`).
    handshake_budget: u32,
    /// Handshaking connections whose input waits for a turn's budget
    /// (slot, generation), oldest first; the bytes wait in their
    /// transport. Not read meanwhile: their receive is re-armed once the
    /// input is handled.
    held: std::collections::VecDeque<(u32, u32)>,
}

/// Runs the shard on its own ring until shutdown has closed every
/// connection. `listeners` are bound and listening; `doorbell` is the
/// inbox's doorbell read end.
pub(crate) async fn run(shard: Rc<Shard>, ring: Ring, listeners: Vec<OwnedFd>, doorbell: OwnedFd) {
    let config = shard.config();
    let listeners = listeners
        .into_iter()
        .zip(&config.listen)
        .map(|(fd, url)| Listener {
            fd,
            armed: false,
            scheme: url.scheme,
            ws: WsConfig {
                path: url.path.clone(),
                allow_no_subprotocol: config.ws_allow_no_subprotocol,
                max_frame: config.max_packet_size as usize,
            },
        })
        .collect();
    let mut engine = Engine {
        shard: shard.clone(),
        ring,
        slots: Slab::default(),
        listeners,
        doorbell,
        doorbell_buf: Box::new([0; 64]),
        doorbell_armed: false,
        arena: BytesMut::new(),
        completions: Vec::with_capacity(256),
        dirty: Vec::new(),
        rearm: Vec::new(),
        paused: Vec::new(),
        waiting: Vec::new(),
        accept_retry_at: None,
        accept_error_logged: None,
        shutdown_deadline: None,
        busy_poll: Duration::from_micros(shard.config().busy_poll_us),
        direct_sends: DIRECT_SENDS,
        read_since_flush: 0,
        max_outbuf: shard.config().max_outbuf_bytes,
        stalls: Vec::new(),
        stall_timeout: Duration::from_millis(shard.config().write_stall_timeout_ms),
        handshakes: 0,
        max_handshakes: shard.config().max_tls_handshakes,
        handshake_budget: HANDSHAKES_PER_TURN,
        held: Default::default(),
    };
    engine.arm_listeners();
    engine.arm_doorbell();
    engine.run();
    engine.finish();
    shard.core.borrow_mut().close_journal();
    debug!(shard = shard.id, "stopped");
}

impl Engine {
    fn run(&mut self) {
        loop {
            self.completions.clear();
            self.ring.reap(&mut self.completions);
            self.direct_sends = DIRECT_SENDS;
            self.take_inbox();
            self.handshake_budget = HANDSHAKES_PER_TURN;
            self.run_held();
            let completions = std::mem::take(&mut self.completions);
            for c in &completions {
                self.complete(*c);
                if self.read_since_flush >= FLUSH_BYTES {
                    // A long turn writes as it goes: what this much input
                    // produced leaves now, and deliveries from other
                    // shards are taken, instead of all waiting for the end.
                    self.read_since_flush = 0;
                    self.flush_dirty();
                    self.ring.submit();
                    self.take_inbox();
                }
            }
            self.read_since_flush = 0;
            self.completions = completions;
            self.shard.core.borrow_mut().fire_timers();
            self.close_stalled();
            if self.accept_retry_at.is_some_and(|at| at <= Instant::now()) {
                self.accept_retry_at = None;
                self.arm_listeners();
            }
            let congested = !self.shard.core.borrow_mut().outlet.flush();
            if !congested {
                self.resume_paused();
            }
            self.flush_dirty();
            self.rearm_reads();
            // Records of a turn that sent nothing (a timer, a close) are
            // written before the shard sleeps; --fsync interval's
            // fdatasync goes to the ring when due.
            self.shard.core.borrow_mut().commit_journal();
            let sync = self
                .shard
                .core
                .borrow_mut()
                .journal
                .as_mut()
                .and_then(|j| j.take_sync());
            if let Some(fd) = sync {
                let token = self.token(Op::Fsync, 0);
                self.ring.fdatasync(fd, token);
            }
            if self.shard.shutting_down() && !self.shutdown_step() {
                return;
            }
            self.shard.core.borrow_mut().refresh_gauges();
            // Sleep unless something is already waiting. The deadline is
            // read after everything this turn armed.
            if self.ring.has_completions()
                || !self.held.is_empty()
                || !self.shard.core.borrow().inbox.park()
            {
                self.ring.submit();
                continue;
            }
            // Read again: a connection resumed in this turn may have filled
            // a channel and paused itself since `congested` was taken, and
            // nothing else wakes the shard when the other side drains.
            // (The outlet only drains in `flush`, at the top of the turn, so
            // a congested start is still congested here.)
            let congested =
                !self.paused.is_empty() || self.shard.core.borrow().outlet.is_congested();
            let next_timer = self.shard.core.borrow().wheel.next_deadline();
            let mut timeout = self.timeout(next_timer, congested);
            if let Some(ms) = self.shard.core.borrow_mut().due_wait_ms() {
                // Fired timers wait for --will-rate tokens.
                let wait = Duration::from_millis(ms);
                timeout = Some(timeout.map_or(wait, |t| t.min(wait)));
            }
            if let Some(ms) = self.shard.core.borrow().cluster_flush_wait_ms() {
                // --cluster-nats: absent sessions' copies wait for their
                // next write.
                let wait = Duration::from_millis(ms);
                timeout = Some(timeout.map_or(wait, |t| t.min(wait)));
            }
            if self.busy_poll.is_zero() || !self.spin(timeout) {
                self.ring.submit_and_wait(timeout);
            }
            self.shard.core.borrow().inbox.unpark();
        }
    }

    /// `--busy-poll-us`: submits, then polls the completion queue (and
    /// the inbox) for a while before sleeping. True when something came.
    fn spin(&mut self, timeout: Option<Duration>) -> bool {
        self.ring.submit();
        let limit = timeout.map_or(self.busy_poll, |t| t.min(self.busy_poll));
        let until = Instant::now() + limit;
        loop {
            if self.ring.has_completions() || !self.shard.core.borrow().inbox.is_empty() {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            std::hint::spin_loop();
        }
    }

    /// The longest the shard may sleep.
    fn timeout(&self, next_timer: Option<ringmq_wheel::Tick>, congested: bool) -> Option<Duration> {
        let now = Instant::now();
        let clock = self.shard.core.borrow().clock;
        let mut until: Option<Instant> = next_timer.map(|t| clock.instant_of(t));
        let mut consider = |at: Instant| {
            until = Some(until.map_or(at, |u| u.min(at)));
        };
        if congested {
            consider(now + CONGESTED_BACKOFF);
        }
        if let Some(at) = self.accept_retry_at {
            consider(at);
        }
        for (_, _, at) in &self.waiting {
            consider(*at);
        }
        if !self.stall_timeout.is_zero() {
            if let Some(at) = self.stalls.iter().map(|s| s.check).min() {
                consider(at);
            }
        }
        if let Some(at) = self.shutdown_deadline {
            consider(at);
        }
        let sync = self
            .shard
            .core
            .borrow()
            .journal
            .as_ref()
            .and_then(|j| j.sync_due_in());
        if let Some(wait) = sync {
            // --fsync interval: written records are synced in time even
            // when nothing else happens.
            consider(now + wait);
        }
        until.map(|at| at.saturating_duration_since(now))
    }

    /// The token of a request `op` on the connection in `slot`.
    fn token(&self, op: Op, slot: u32) -> Token {
        let gen = self.slots.get(slot).map_or(0, |s| s.gen);
        Token { op, slot, gen }
    }

    /// The link of the connection in `slot`.
    fn link(&self, slot: u32) -> Option<Rc<Link>> {
        self.shard.core.borrow().links.at(slot).cloned()
    }

    fn conn(&self, slot: u32) -> Option<&Conn> {
        self.slots.get(slot)?.conn.as_ref()
    }

    fn conn_mut(&mut self, slot: u32) -> Option<&mut Conn> {
        self.slots.get_mut(slot)?.conn.as_mut()
    }

    /// The connection a completion is for, if it is still the same one.
    fn conn_for(&mut self, token: Token) -> Option<&mut Conn> {
        let slot = self.slots.get_mut(token.slot)?;
        if slot.gen != token.gen {
            return None;
        }
        slot.conn.as_mut()
    }

    fn take_inbox(&mut self) {
        let (adopts, resumed) = {
            let mut core = self.shard.core.borrow_mut();
            core.now = core.clock.read().1;
            core.drain_inbox();
            (
                std::mem::take(&mut core.adopts),
                std::mem::take(&mut core.resumed),
            )
        };
        for adopt in adopts {
            self.open(adopt.fd, adopt.peer, adopt.read, true, adopt.transport);
        }
        for slot in resumed {
            // A verdict on a parked CONNECT: handle it again.
            if let Some(conn) = self.conn_mut(slot) {
                if matches!(conn.state, State::Parked) {
                    conn.state = State::Open;
                    self.handle(slot);
                }
            }
        }
    }

    fn complete(&mut self, c: Completion) {
        match c.token.op {
            Op::Accept => self.on_accept(c),
            Op::Recv => self.on_recv(c),
            Op::Send => self.on_send(c),
            Op::Doorbell => {
                self.doorbell_armed = false;
                if c.result > 0 {
                    self.drain_doorbell();
                    self.arm_doorbell();
                } else if !self.shard.shutting_down() && c.result != -libc::ECANCELED {
                    // The mesh's write end is gone only when the broker is
                    // being dropped; a shutdown message follows.
                    trace!(result = c.result, "doorbell closed");
                }
            }
            Op::Cancel => {}
            Op::Fsync => self.shard.core.borrow_mut().journal_synced(c.result),
        }
    }

    // ---- accepting --------------------------------------------------

    fn arm_listeners(&mut self) {
        if self.shard.shutting_down() {
            return;
        }
        for (i, l) in self.listeners.iter_mut().enumerate() {
            if !l.armed {
                l.armed = true;
                let token = Token {
                    op: Op::Accept,
                    slot: i as u32,
                    gen: 0,
                };
                self.ring.accept(l.fd.as_raw_fd(), token);
            }
        }
    }

    fn on_accept(&mut self, c: Completion) {
        if !c.more {
            if let Some(l) = self.listeners.get_mut(c.token.slot as usize) {
                l.armed = false;
            }
        }
        if c.result >= 0 {
            // SAFETY: a successful accept returns a new descriptor we own.
            let fd = unsafe { OwnedFd::from_raw_fd(c.result) };
            if self.shard.shutting_down() {
                return;
            }
            let peer = peer_addr(fd.as_raw_fd());
            let listener = c.token.slot as usize;
            let mut transport = match self.transport_for(listener) {
                Ok(t) => t,
                // Dropping the descriptor closes it (counted, logged).
                Err(()) => return self.rearm_accept(&c),
            };
            if !self.shard.core.borrow_mut().admit(peer) {
                // Dropping the descriptor closes it.
                return self.rearm_accept(&c);
            }
            if let Some(t) = transport.as_mut().filter(|t| t.is_tls()) {
                t.counted = true;
                self.handshakes += 1;
            }
            set_nodelay(fd.as_raw_fd());
            self.open(fd, peer, BytesMut::new(), false, transport);
        } else if !self.shard.shutting_down() {
            let error = std::io::Error::from_raw_os_error(-c.result);
            crate::stats::ShardStats::inc(&self.shard.shared.stats[self.shard.id].accept_errors);
            let now = Instant::now();
            let quiet = self
                .accept_error_logged
                .is_some_and(|at| now.duration_since(at) < Duration::from_secs(10));
            if !quiet {
                warn!(shard = self.shard.id, error = %error, "accept failed; open connections are still served, retrying every 10 ms");
                self.accept_error_logged = Some(now);
            }
            self.accept_retry_at = Some(now + ACCEPT_RETRY);
        }
        self.rearm_accept(&c);
    }

    /// The layers a socket accepted on `listener` needs; `Err` when it must
    /// be closed at once (--max-tls-handshakes).
    fn transport_for(&mut self, listener: usize) -> Result<Option<Box<Transport>>, ()> {
        let Some(l) = self.listeners.get(listener) else {
            return Ok(None);
        };
        let scheme = l.scheme;
        if scheme == Scheme::Mqtt {
            return Ok(None);
        }
        let stats = &self.shard.shared.stats[self.shard.id];
        if scheme.tls() && self.handshakes >= self.max_handshakes {
            ShardStats::inc(&stats.tls_handshakes_refused);
            let mut core = self.shard.core.borrow_mut();
            let now = core.clock.read().1;
            if let Some(unlogged) = core.gates.check(Gate::TlsHandshakes, now) {
                warn!(
                    shard = self.shard.id,
                    max = self.max_handshakes,
                    unlogged,
                    "--max-tls-handshakes in progress: closing new TLS sockets"
                );
            }
            return Err(());
        }
        let core = self.shard.core.borrow();
        let tls = match (scheme.tls(), &core.tls) {
            (false, _) => None,
            (true, Some(tls)) if scheme == Scheme::Wss => Some(&tls.wss),
            (true, Some(tls)) => Some(&tls.mqtts),
            (true, None) => return Err(()),
        };
        match Transport::new(listener as u16, tls, scheme.ws()) {
            Ok(t) => Ok(Some(t)),
            Err(e) => {
                debug!(error = %e, "cannot start a TLS connection");
                ShardStats::inc(&stats.tls_handshake_errors);
                Err(())
            }
        }
    }

    /// A multishot accept that ended is armed again (unless accepts are
    /// backing off).
    fn rearm_accept(&mut self, c: &Completion) {
        if !c.more && self.accept_retry_at.is_none() {
            self.arm_listeners();
        }
    }

    // ---- connections ------------------------------------------------

    fn open(
        &mut self,
        fd: OwnedFd,
        peer: SocketAddr,
        read: BytesMut,
        adopted: bool,
        mut transport: Option<Box<Transport>>,
    ) {
        let slot = self.slots.alloc();
        // The core keeps the link, by this same slot.
        let link = self.shard.core.borrow_mut().new_link(peer, adopted, slot);
        if let Some(t) = transport.as_mut() {
            // A handed-over connection: its name goes to the new link, and
            // what its layers still have to send (TLS tickets) goes out.
            t.named = false;
            if !t.wire.is_empty() {
                link.wake();
            }
        }
        let entry = self.slots.get_mut(slot).expect("allocated");
        entry.gen = Token::next_gen(entry.gen);
        entry.conn = Some(Conn {
            fd,
            pending: read,
            sending: Bytes::new(),
            reading: Reading::Off,
            state: State::Open,
            adopted,
            in_arena: false,
            transport,
        });
        self.note_identity(slot, &link);
        self.handle(slot);
    }

    /// --use-identity-as-username: once a TLS handshake is done, the
    /// client certificate's name goes to the link for its CONNECT.
    fn note_identity(&mut self, slot: u32, link: &Link) {
        if !self.shard.config().use_identity_as_username {
            return;
        }
        let Some(t) = self.conn_mut(slot).and_then(|c| c.transport.as_mut()) else {
            return;
        };
        if t.named {
            return;
        }
        if let Some(name) = t.peer_name() {
            t.named = true;
            link.cert_name.set(Some(Box::new(CertName(name))));
        }
    }

    /// Handles bytes read on a connection with a transport: its layers
    /// decode them into `pending`. `Err`: the transport ended (the peer
    /// closed it, or broke its rules) and the connection closes for that
    /// cause once what the read decoded is handled.
    /// `read`: the read buffer and its length, or `None` for the input
    /// held in the transport.
    fn transport_input(&mut self, slot: u32, read: Option<(u16, usize)>) -> Result<(), CloseCause> {
        let Some(conn) = self.slots.get_mut(slot).and_then(|s| s.conn.as_mut()) else {
            if let Some((id, _)) = read {
                self.ring.give_back(id);
            }
            return Ok(());
        };
        let t = conn.transport.as_mut().expect("a transport connection");
        let ws = &self.listeners[usize::from(t.listener)].ws;
        let result = match read {
            Some((id, n)) => {
                // Decrypted where it was read: the buffer is scratch after.
                let r = t.input(ws, self.ring.read_slice(id, n), &mut conn.pending);
                self.ring.give_back(id);
                r
            }
            None => {
                let mut held = std::mem::take(&mut t.held);
                t.input(ws, &mut held, &mut conn.pending)
            }
        };
        conn.in_arena = false;
        let done = t.counted && !t.tls_handshaking();
        if done {
            t.counted = false;
        }
        let wire = !t.wire.is_empty();
        if done {
            self.handshakes -= 1;
        }
        let Some(link) = self.link(slot) else {
            return Ok(());
        };
        if wire {
            link.wake();
        }
        self.note_identity(slot, &link);
        let stats = &self.shard.shared.stats[self.shard.id];
        match result {
            Ok(Status::Open) => Ok(()),
            Ok(Status::Closed) => {
                trace!("peer closed its transport");
                Err(CloseCause::NetworkError)
            }
            Err(fault) => {
                let counter = match &fault {
                    Fault::Handshake(_) => &stats.tls_handshake_errors,
                    Fault::Tls(_) => &stats.tls_errors,
                    Fault::Upgrade(_) => &stats.ws_upgrade_refused,
                    Fault::Frame(_) => &stats.ws_protocol_errors,
                };
                ShardStats::inc(counter);
                debug!(peer = %link.peer, %fault, "closing connection");
                Err(CloseCause::ProtocolError)
            }
        }
    }

    fn on_recv(&mut self, c: Completion) {
        let slot = c.token.slot;
        let live = self
            .slots
            .get(slot)
            .is_some_and(|s| s.gen == c.token.gen && s.conn.is_some());
        if !live {
            if let Some(id) = c.buffer {
                // A stale read: give the buffer back.
                self.ring.give_back(id);
            }
            return;
        }
        if c.result > 0 {
            let stats = &self.shard.shared.stats[self.shard.id];
            crate::stats::ShardStats::add(&stats.bytes_in, c.result as u64);
        }
        // Disjoint borrows: the slot, the ring and the arena.
        let conn = self
            .slots
            .get_mut(slot)
            .and_then(|s| s.conn.as_mut())
            .expect("live");
        if !c.more {
            conn.reading = Reading::Off;
        }
        if let (Some(id), true) = (c.buffer, conn.transport.is_some()) {
            let n = c.result.max(0) as usize;
            let t = conn.transport.as_mut().expect("checked");
            if matches!(conn.state, State::Closed) || n == 0 {
                self.ring.give_back(id);
            } else if t.tls_handshaking() && self.handshake_budget == 0 {
                // This turn's handshake work is done: the step waits for
                // the next turn, its bytes in the transport.
                t.held.extend_from_slice(self.ring.read_slice(id, n));
                self.ring.give_back(id);
                self.held.push_back((slot, c.token.gen));
                return;
            } else {
                if t.tls_handshaking() {
                    self.handshake_budget -= 1;
                }
                if let Err(cause) = self.transport_input(slot, Some((id, n))) {
                    // What the same read carried before the transport's
                    // end is handled first: its PUBLISHes are delivered,
                    // and a DISCONNECT in it decides the will.
                    self.handle(slot);
                    self.close(slot, cause);
                    return;
                }
            }
        } else if let Some(id) = c.buffer {
            let n = c.result.max(0) as usize;
            let take_whole = TAKE_WHOLE_MIN.min(self.ring.read_buffer_bytes());
            if n == 0 {
                self.ring.give_back(id);
            } else if conn.pending.is_empty() && n >= take_whole {
                conn.pending = self.ring.take_read(id, n);
                conn.in_arena = true;
            } else if conn.pending.is_empty() {
                if self.arena.capacity() - self.arena.len() < n {
                    self.arena = BytesMut::with_capacity(ARENA_BYTES.max(n));
                }
                self.ring.copy_read(id, n, &mut self.arena);
                conn.pending = self.arena.split();
                conn.in_arena = true;
            } else {
                // Appending to a view moves it into storage of its own.
                self.ring.copy_read(id, n, &mut conn.pending);
                conn.in_arena = false;
            }
        }
        let Some(conn) = self.conn_mut(slot) else {
            return;
        };
        if matches!(conn.state, State::Closed) {
            self.release_if_done(slot);
            return;
        }
        if c.result == 0 && conn.transport.as_ref().is_some_and(|t| t.tls_handshaking()) {
            // The peer gave up mid-handshake.
            let stats = &self.shard.shared.stats[self.shard.id];
            ShardStats::inc(&stats.tls_handshake_errors);
        }
        if c.result > 0 {
            self.read_since_flush += c.result as usize;
            self.handle(slot);
            return;
        }
        match -c.result {
            // End of stream, or a reset: the connection is gone.
            0 => self.close(slot, CloseCause::NetworkError),
            // Out of read buffers, or cancelled for back-pressure: read
            // again once buffers are back / the pause ends.
            libc::ENOBUFS | libc::ECANCELED => self.rearm.push(slot),
            errno => {
                trace!(errno, "receive failed");
                self.count_timeout(errno);
                self.close(slot, CloseCause::NetworkError);
            }
        }
    }

    /// Handshake steps held back by earlier turns' budgets, oldest first,
    /// within this turn's budget.
    fn run_held(&mut self) {
        while self.handshake_budget > 0 {
            let Some((slot, gen)) = self.held.pop_front() else {
                return;
            };
            let live = self.slots.get(slot).is_some_and(|s| {
                s.gen == gen
                    && s.conn
                        .as_ref()
                        .is_some_and(|c| !matches!(c.state, State::Closed))
            });
            if !live {
                continue;
            }
            self.handshake_budget -= 1;
            if let Err(cause) = self.transport_input(slot, None) {
                self.handle(slot);
                self.close(slot, cause);
                continue;
            }
            self.handle(slot);
        }
    }

    /// Handles what a connection has read, then keeps it reading.
    fn handle(&mut self, slot: u32) {
        let shard = self.shard.clone();
        let Some(conn) = self.conn_mut(slot) else {
            return;
        };
        if !matches!(conn.state, State::Open) {
            return;
        }
        let (fed, link) = {
            let mut core = shard.core.borrow_mut();
            let Some(link) = core.links.at(slot).cloned() else {
                return;
            };
            let (stamp, now) = core.clock.read();
            core.now = now;
            let fed = frames::feed(&mut core, &link, &mut conn.pending, conn.adopted, stamp);
            if let Some(ms) = link.user_timeout_ms.take() {
                // Set once the CONNECT is accepted: a peer that stops
                // acknowledging what we send is dropped by the kernel in
                // about its keep-alive window, not after ~15 minutes of
                // retransmissions.
                set_tcp_option(
                    conn.fd.as_raw_fd(),
                    libc::TCP_USER_TIMEOUT,
                    ms as libc::c_int,
                );
            }
            (fed, link)
        };
        if conn.pending.is_empty() {
            // An empty view still holds its read block: let it go, so an
            // idle connection pins no memory.
            conn.pending = BytesMut::new();
            conn.in_arena = false;
        } else if conn.in_arena && matches!(fed, Fed::More) {
            // A partial packet waits for more: copy it out of the shared
            // block into storage of its own size, so a client that stops
            // mid-packet holds what it sent, never a 64 KiB block.
            conn.pending = BytesMut::from(&conn.pending[..]);
            conn.in_arena = false;
        }
        match fed {
            Fed::More | Fed::Congested => {}
            Fed::Parked => {
                // `pending` was rebuilt in storage of its own.
                conn.in_arena = false;
                conn.state = State::Parked;
                return;
            }
            Fed::WaitFor(old) => {
                conn.state = State::Waiting;
                self.waiting
                    .push((slot, old, Instant::now() + TAKEOVER_WAIT));
                return;
            }
            Fed::Close(cause) => {
                self.close(slot, cause);
                return;
            }
            Fed::HandOff(owner, read) => {
                if conn.sending.is_empty() {
                    self.hand_off(slot, owner, read);
                } else {
                    // Its TLS handshake is still being sent: the socket
                    // moves once the kernel is done with it.
                    conn.pending = read;
                    // (Shards are at most 64: the id fits a byte.)
                    conn.state = State::HandingOff(owner.0 as u8);
                }
                return;
            }
        }
        if link.queued_bytes() > self.max_outbuf {
            let stats = &shard.shared.stats[shard.id];
            crate::stats::ShardStats::inc(&stats.outbuf_paused);
            trace!("output above --max-outbuf-bytes: not reading");
            self.stop_reading(slot, State::Blocked);
            return;
        }
        let waits_for_retained = link.retained_backlog();
        if shard.core.borrow().outlet.is_congested() || waits_for_retained {
            // Back-pressure: stop reading until the other shards take what
            // this connection sent them (or answer its retained queries).
            if waits_for_retained {
                let stats = &shard.shared.stats[shard.id];
                crate::stats::ShardStats::inc(&stats.retained_query_waits);
            }
            self.stop_reading(slot, State::Paused);
            self.paused.push(slot);
            return;
        }
        self.read_more(slot);
    }

    /// Stops reading a connection for a while (`Paused` or `Blocked`):
    /// its multishot receive is cancelled; bytes already read stay pending.
    fn stop_reading(&mut self, slot: u32, state: State) {
        let token = self.token(Op::Recv, slot);
        let Some(conn) = self.conn_mut(slot) else {
            return;
        };
        conn.state = state;
        if conn.reading == Reading::Multi {
            self.ring.cancel(token);
        }
    }

    /// A blocked connection reads again once its output is down to half
    /// of --max-outbuf-bytes.
    fn unblock_if_drained(&mut self, slot: u32) {
        // Checked on every send completion: the link is looked up only for
        // a connection that is blocked.
        if !self
            .conn(slot)
            .is_some_and(|c| matches!(c.state, State::Blocked))
        {
            return;
        }
        let drained = self
            .link(slot)
            .is_some_and(|l| l.queued_bytes() <= self.max_outbuf / 2);
        if let (true, Some(conn)) = (drained, self.conn_mut(slot)) {
            conn.state = State::Open;
            self.handle(slot);
        }
    }

    /// Closes connections whose socket has not taken a send whole within
    /// --write-stall-timeout-ms (a client that does not read, whatever it
    /// sends).
    fn close_stalled(&mut self) {
        if self.stalls.is_empty() {
            return;
        }
        let now = Instant::now();
        let stalls = std::mem::take(&mut self.stalls);
        for mut stall in stalls {
            let Some(conn) = self.conn(stall.slot) else {
                continue;
            };
            let current = !matches!(conn.state, State::Closed)
                && !conn.sending.is_empty()
                && conn.sending.as_ptr() as usize == stall.at;
            if !current {
                continue;
            }
            if now < stall.check {
                self.stalls.push(stall);
                continue;
            }
            let acked = bytes_acked(conn.fd.as_raw_fd());
            if stall.acked.is_some_and(|before| acked <= before) {
                let stats = &self.shard.shared.stats[self.shard.id];
                crate::stats::ShardStats::inc(&stats.write_stall_closed);
                debug!("output stalled past --write-stall-timeout-ms: closing");
                self.close(stall.slot, CloseCause::NetworkError);
            } else {
                // Progress (or the first look): check again a timeout later.
                stall.acked = Some(acked);
                stall.check = now + self.stall_timeout;
                self.stalls.push(stall);
            }
        }
    }

    /// Arms the receive a connection needs next, if it has none.
    fn read_more(&mut self, slot: u32) {
        let token = self.token(Op::Recv, slot);
        let connected = self.link(slot).is_some_and(|l| l.session.get().is_some());
        let Some(conn) = self.conn_mut(slot) else {
            return;
        };
        if !matches!(conn.state, State::Open) || conn.reading != Reading::Off {
            return;
        }
        let fd = conn.fd.as_raw_fd();
        if connected {
            conn.reading = Reading::Multi;
            self.ring.recv_multi(fd, token);
        } else {
            // Before CONNECT: one read at a time, so a socket handed to its
            // owner shard has nothing of ours pending on it.
            conn.reading = Reading::Once;
            self.ring.recv_once(fd, token);
        }
    }

    fn rearm_reads(&mut self) {
        let rearm = std::mem::take(&mut self.rearm);
        for &slot in &rearm {
            self.read_more(slot);
        }
        self.rearm = rearm;
        self.rearm.clear();
    }

    fn resume_paused(&mut self) {
        if self.paused.is_empty() {
            return;
        }
        let paused = std::mem::take(&mut self.paused);
        for slot in paused {
            if let Some(conn) = self.conn_mut(slot) {
                if matches!(conn.state, State::Paused) {
                    conn.state = State::Open;
                    self.handle(slot);
                }
            }
        }
    }

    /// A take-over's new connection goes on once the old one is closed.
    fn resume_waiting(&mut self) {
        if self.waiting.is_empty() {
            return;
        }
        let now = Instant::now();
        let waiting = std::mem::take(&mut self.waiting);
        for (slot, old, at) in waiting {
            let Some(conn) = self.conn_mut(slot) else {
                continue;
            };
            if !matches!(conn.state, State::Waiting) {
                continue;
            }
            if old.is_closed() || now >= at {
                conn.state = State::Open;
                // From the take-over CONNECT to its CONNACK leaving now.
                let waited = TAKEOVER_WAIT.saturating_sub(at.saturating_duration_since(now));
                let stats = &self.shard.shared.stats[self.shard.id];
                stats.hist.takeover.observe_us(waited.as_micros() as u64);
                if let Some(link) = self.link(slot) {
                    link.wake();
                }
                self.handle(slot);
            } else {
                self.waiting.push((slot, old, at));
            }
        }
    }

    /// Sends the socket itself to the shard that owns its client id: no
    /// request of ours is pending on it (reads before CONNECT are one at a
    /// time), so the descriptor simply moves.
    fn hand_off(&mut self, slot: u32, owner: ringmq_route::ShardId, read: BytesMut) {
        let conn = self
            .slots
            .get_mut(slot)
            .and_then(|s| s.conn.take())
            .expect("live slot");
        self.slots.release(slot);
        debug_assert!(!conn.in_flight());
        let mut core = self.shard.core.borrow_mut();
        let link = core
            .links
            .at(slot)
            .cloned()
            .expect("a live slot has its link");
        core.forget_link(&link);
        let adopt = super::apply::Adopt {
            fd: conn.fd,
            read,
            peer: link.peer.addr(),
            transport: conn.transport,
        };
        core.hand_off(owner, adopt);
    }

    // ---- writing and closing ----------------------------------------

    /// Carries out what `apply` asked of each dirty link: closes first,
    /// then one send per link.
    fn flush_dirty(&mut self) {
        loop {
            self.resume_waiting();
            // Group commit: the records this output depends on reach the
            // kernel before any of it is handed to a socket.
            self.shard.core.borrow_mut().commit_journal();
            if Dirty::is_empty() {
                return;
            }
            let mut list = std::mem::take(&mut self.dirty);
            Dirty::take_into(&mut list);
            for &slot in &list {
                let Some(link) = self.link(slot) else {
                    continue;
                };
                link.unmark();
                if let Some(cause) = link.close_requested() {
                    self.close(slot, cause);
                }
            }
            self.hold_for_sync(&list);
            for &slot in &list {
                self.send(slot);
            }
            self.dirty = list;
        }
    }

    /// `--fsync always`: output written after records not yet synced waits
    /// for the fdatasync that covers them (the completion releases it).
    fn hold_for_sync(&mut self, list: &[u32]) {
        let core = &mut *self.shard.core.borrow_mut();
        let Some(epoch) = core.journal.as_ref().and_then(|j| j.unsynced_epoch()) else {
            return;
        };
        for &slot in list {
            let Some(link) = core.links.at(slot) else {
                continue;
            };
            if !link.outbuf.borrow().is_empty() && !link.is_closed() {
                link.hold();
                core.sync_waits.push_back((epoch, link.clone()));
            }
        }
    }

    /// Hands the link's output to the kernel, unless a send is in flight
    /// (its completion sends the rest) or the connection waits.
    fn send(&mut self, slot: u32) {
        let direct = self.direct_sends > 0;
        let Some(link) = self.link(slot) else {
            return;
        };
        if link.held() {
            // Its acknowledgements wait for another shard's write; the
            // release marks it dirty again.
            return;
        }
        let Some(conn) = self.conn_mut(slot) else {
            return;
        };
        if !matches!(conn.state, State::Open | State::Paused | State::Blocked)
            || !conn.sending.is_empty()
        {
            return;
        }
        let mut out = {
            let mut out = link.outbuf.borrow_mut();
            let wire = conn.transport.as_ref().is_some_and(|t| !t.wire.is_empty());
            if out.is_empty() && !wire {
                return;
            }
            // The link keeps no buffer while the bytes are in flight.
            std::mem::take(&mut *out)
        };
        if let Some(t) = conn.transport.as_mut() {
            // Wrapped by the layers, behind what they had to send already.
            if !out.is_empty() {
                t.output(&out);
            }
            out = std::mem::take(&mut t.wire);
        }
        if direct {
            // The first few writes of a turn go out at once with send(2):
            // a lone reply (a PINGRESP, a PUBACK) then costs one syscall and
            // no completion to come back for. What the socket does not take
            // goes through the ring like any other write.
            let fd = conn.fd.as_raw_fd();
            // SAFETY: a non-blocking send from memory we own.
            let n = unsafe {
                libc::send(
                    fd,
                    out.as_ptr().cast(),
                    out.len(),
                    libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                )
            };
            self.direct_sends -= 1;
            if n >= 0 {
                let n = n as usize;
                trace!(bytes = n, "written");
                let stats = &self.shard.shared.stats[self.shard.id];
                crate::stats::ShardStats::add(&stats.bytes_out, n as u64);
                if n == out.len() {
                    self.unblock_if_drained(slot);
                    return;
                }
                out.advance(n);
            } else {
                let errno = std::io::Error::last_os_error().raw_os_error();
                if !matches!(errno, Some(libc::EAGAIN) | Some(libc::EINTR)) {
                    trace!(?errno, "send failed");
                    self.close(slot, CloseCause::NetworkError);
                    return;
                }
            }
        }
        link.set_in_flight(out.len());
        let Some(conn) = self.conn_mut(slot) else {
            return;
        };
        conn.sending = out.freeze();
        self.submit_send(slot);
    }

    fn submit_send(&mut self, slot: u32) {
        let token = self.token(Op::Send, slot);
        let Some(conn) = self.conn_mut(slot) else {
            return;
        };
        let len = conn.sending.len().min(u32::MAX as usize) as u32;
        let (fd, ptr) = (conn.fd.as_raw_fd(), conn.sending.as_ptr());
        if !self.stall_timeout.is_zero() {
            // The first look takes the peer's acknowledged bytes (a second,
            // or the timeout if shorter); a stall is judged from there.
            let first = self.stall_timeout.min(Duration::from_secs(1));
            self.stalls.push(Stall {
                slot,
                at: ptr as usize,
                check: Instant::now() + first,
                acked: None,
            });
        }
        // SAFETY: `sending` is kept unchanged in the slot until this send's
        // completion (the slot is not freed while a send is in flight).
        unsafe { self.ring.send(fd, ptr, len, token) };
    }

    fn on_send(&mut self, c: Completion) {
        let slot = c.token.slot;
        if c.result > 0 {
            let stats = &self.shard.shared.stats[self.shard.id];
            crate::stats::ShardStats::add(&stats.bytes_out, c.result as u64);
        }
        let Some(conn) = self.conn_for(c.token) else {
            return;
        };
        if c.result < 0 {
            conn.sending = Bytes::new();
            if matches!(conn.state, State::Closed) {
                self.release_if_done(slot);
            } else {
                trace!(errno = -c.result, "send failed");
                self.count_timeout(-c.result);
                self.close(slot, CloseCause::NetworkError);
            }
            return;
        }
        let n = (c.result as usize).min(conn.sending.len());
        trace!(bytes = n, "written");
        conn.sending.advance(n);
        if conn.sending.is_empty() {
            // Written: release the output buffer (an empty view holds it).
            conn.sending = Bytes::new();
        }
        let left = conn.sending.len();
        if matches!(conn.state, State::Closed) {
            conn.sending = Bytes::new();
            self.release_if_done(slot);
            return;
        }
        if let (State::HandingOff(owner), 0) = (&conn.state, left) {
            let owner = ringmq_route::ShardId(usize::from(*owner));
            let read = std::mem::take(&mut conn.pending);
            self.hand_off(slot, owner, read);
            return;
        }
        if let Some(link) = self.link(slot) {
            link.set_in_flight(left);
        }
        if left > 0 {
            self.submit_send(slot);
        } else {
            self.send(slot);
        }
        self.unblock_if_drained(slot);
    }

    /// A socket error of ETIMEDOUT is the kernel's TCP_USER_TIMEOUT (or
    /// its keep-alive probes) giving up on the peer: counted by reason.
    fn count_timeout(&self, errno: i32) {
        if errno == libc::ETIMEDOUT {
            let stats = &self.shard.shared.stats[self.shard.id];
            crate::stats::ShardStats::inc(&stats.tcp_user_timeouts);
        }
    }

    /// Closes a connection for its session now; the slot is freed once the
    /// kernel is done with it.
    fn close(&mut self, slot: u32, cause: CloseCause) {
        let shard = self.shard.clone();
        let Some(link) = self.link(slot) else {
            return;
        };
        let Some(conn) = self.conn_mut(slot) else {
            return;
        };
        if matches!(conn.state, State::Closed) {
            return;
        }
        conn.state = State::Closed;
        let fd = conn.fd.as_raw_fd();
        let in_flight = !conn.sending.is_empty();
        if in_flight {
            // A send of this connection may still sit in the submission
            // queue: hand it to the kernel first, so what it carries (a
            // CONNACK, a PUBACK) leaves before the DISCONNECT and the FIN.
            self.ring.submit();
        }
        let conn = self
            .slots
            .get_mut(slot)
            .and_then(|s| s.conn.as_mut())
            .expect("live");
        if let Some(t) = conn.transport.as_mut() {
            if t.counted {
                t.counted = false;
                self.handshakes -= 1;
            }
            // Last chance for a queued DISCONNECT to leave, wrapped, with
            // the layers' goodbyes (close frame, close_notify) after it.
            let mut out = link.outbuf.borrow_mut();
            if !out.is_empty() {
                t.output(&out);
                out.clear();
            }
            t.close();
            if !t.wire.is_empty() {
                // SAFETY: a non-blocking send from memory we own.
                unsafe {
                    libc::send(
                        fd,
                        t.wire.as_ptr().cast(),
                        t.wire.len(),
                        libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                    )
                };
                t.wire = BytesMut::new();
            }
        } else {
            // Last chance for a queued DISCONNECT to leave (no waiting).
            let out = link.outbuf.borrow();
            if !out.is_empty() {
                // SAFETY: a non-blocking send from memory we own.
                unsafe {
                    libc::send(
                        fd,
                        out.as_ptr().cast(),
                        out.len(),
                        libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                    )
                };
            }
        }
        // The FIN goes now, so a take-over's CONNACK (which waits for this
        // close) really follows the old connection's end; it also ends the
        // receive and any send the kernel still holds.
        // SAFETY: the descriptor is open (owned by the slot).
        unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
        link.mark_closed();
        debug!(shard = shard.id, peer = %link.peer, ?cause, "connection closed");
        shard.core.borrow_mut().on_closed(&link, cause);
        self.release_if_done(slot);
    }

    fn release_if_done(&mut self, slot: u32) {
        let Some(entry) = self.slots.get_mut(slot) else {
            return;
        };
        if entry.conn.as_ref().is_some_and(|c| !c.in_flight()) {
            // Dropping the connection closes its descriptor.
            entry.conn = None;
            self.slots.release(slot);
        }
    }

    // ---- doorbell and shutdown --------------------------------------

    fn arm_doorbell(&mut self) {
        if self.doorbell_armed {
            return;
        }
        self.doorbell_armed = true;
        let token = Token {
            op: Op::Doorbell,
            slot: 0,
            gen: 0,
        };
        let buf = self.doorbell_buf.as_mut_ptr();
        // SAFETY: the buffer is boxed in the engine, which outlives every
        // request (see `finish`).
        unsafe {
            self.ring
                .recv_into(self.doorbell.as_raw_fd(), buf, 64, token)
        };
    }

    fn drain_doorbell(&mut self) {
        let mut rings = [0u8; 256];
        loop {
            // SAFETY: a non-blocking recv into a buffer we own.
            let n = unsafe {
                libc::recv(
                    self.doorbell.as_raw_fd(),
                    rings.as_mut_ptr().cast(),
                    rings.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n < rings.len() as isize {
                return;
            }
        }
    }

    /// One turn of shutdown; false when the shard may stop.
    fn shutdown_step(&mut self) -> bool {
        if self.shutdown_deadline.is_none() {
            self.shutdown_deadline = Some(Instant::now() + SHUTDOWN_WAIT);
            for l in &self.listeners {
                // Ends the multishot accept and closes the port at once.
                // SAFETY: the listener's descriptor is open.
                unsafe { libc::shutdown(l.fd.as_raw_fd(), libc::SHUT_RDWR) };
            }
        }
        let open = self
            .slots
            .conns()
            .any(|c| !matches!(c.state, State::Closed));
        open && self.shutdown_deadline.is_none_or(|at| Instant::now() < at)
    }

    /// Ends every request on the ring before its memory goes away: every
    /// socket is shut down, then completions are reaped until none is left
    /// in flight (bounded).
    fn finish(&mut self) {
        for slot in 0..self.slots.len() {
            if self
                .conn(slot)
                .is_some_and(|c| !matches!(c.state, State::Closed))
            {
                self.close(slot, CloseCause::ServerShutdown);
            }
        }
        for l in &self.listeners {
            // SAFETY: the listener's descriptor is open.
            unsafe { libc::shutdown(l.fd.as_raw_fd(), libc::SHUT_RDWR) };
        }
        // SAFETY: our end of the doorbell is open.
        unsafe { libc::shutdown(self.doorbell.as_raw_fd(), libc::SHUT_RDWR) };
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let busy = self.doorbell_armed
                || self.listeners.iter().any(|l| l.armed)
                || self.slots.conns().next().is_some();
            if !busy {
                return;
            }
            if Instant::now() >= deadline {
                // Memory a request may still touch must outlive it: keep it.
                warn!(
                    shard = self.shard.id,
                    "io_uring requests still in flight at exit"
                );
                std::mem::forget(std::mem::take(&mut self.slots));
                return;
            }
            self.ring.submit_and_wait(Some(Duration::from_millis(10)));
            self.completions.clear();
            self.ring.reap(&mut self.completions);
            let completions = std::mem::take(&mut self.completions);
            for c in completions {
                match c.token.op {
                    Op::Accept if !c.more => {
                        if c.result >= 0 {
                            // SAFETY: a descriptor accepted just now; ours to close.
                            drop(unsafe { OwnedFd::from_raw_fd(c.result) });
                        }
                        if let Some(l) = self.listeners.get_mut(c.token.slot as usize) {
                            l.armed = false;
                        }
                    }
                    Op::Accept => {
                        if c.result >= 0 {
                            // SAFETY: as above.
                            drop(unsafe { OwnedFd::from_raw_fd(c.result) });
                        }
                    }
                    Op::Doorbell => self.doorbell_armed = false,
                    Op::Recv | Op::Send | Op::Fsync => self.complete(c),
                    Op::Cancel => {}
                }
            }
        }
    }
}

/// A send the kernel holds, watched for `--write-stall-timeout-ms`.
struct Stall {
    slot: u32,
    /// Address of the bytes sent (identifies the send).
    at: usize,
    /// When to look next.
    check: Instant,
    /// The peer's acknowledged bytes at the last look.
    acked: Option<u64>,
}

/// Bytes the peer has acknowledged on this socket (TCP_INFO), 0 if unknown.
fn bytes_acked(fd: RawFd) -> u64 {
    // SAFETY: tcp_info is plain data; getsockopt writes at most `len`.
    unsafe {
        let mut info: libc::tcp_info = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        let r = libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        );
        if r == 0 {
            info.tcpi_bytes_acked
        } else {
            0
        }
    }
}

fn set_nodelay(fd: RawFd) {
    set_tcp_option(fd, libc::TCP_NODELAY, 1);
}

fn set_tcp_option(fd: RawFd, option: libc::c_int, value: libc::c_int) {
    // SAFETY: setsockopt on an open socket with a valid int option.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            option,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
}

fn peer_addr(fd: RawFd) -> SocketAddr {
    // SAFETY: the descriptor is open for the duration of this call; the
    // std socket is forgotten so it does not close it.
    let stream = std::mem::ManuallyDrop::new(unsafe { std::net::TcpStream::from_raw_fd(fd) });
    stream
        .peer_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
}
