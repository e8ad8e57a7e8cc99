//! A link: what the engine and the rest of the shard share about one
//! connection.
//!
//! The engine owns the socket; everything else reaches the connection only
//! through its `Link`: `apply` appends encoded packets to `outbuf`, or asks
//! for a close, and marks the link dirty. The engine carries out every
//! dirty link's close and write once per loop turn (closes first). An idle
//! link owns no buffer: `outbuf` is handed to the kernel whole whenever it
//! is written.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;

use bytes::BytesMut;
use ringmq_codec::ProtocolVersion;
use ringmq_session::{CloseCause, SessionId};
use ringmq_wheel::TimerKey;

/// One connection on its shard; never reused while the shard runs. The
/// low 32 bits are the engine slot it lives in, the high 32 a count, so a
/// lookup is an index plus a check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct LinkId(std::num::NonZeroU64);

impl LinkId {
    pub(crate) fn new(count: u32, slot: u32) -> LinkId {
        // The count starts at 1 and skips 0, so the id is never 0 and an
        // `Option<LinkId>` is 8 bytes.
        let count = u64::from(count.max(1));
        LinkId(std::num::NonZeroU64::new((count << 32) | u64::from(slot)).expect("count >= 1"))
    }

    pub(crate) fn slot(self) -> u32 {
        self.0.get() as u32
    }

    /// The id as a number (to travel through another thread).
    pub(crate) fn raw(self) -> u64 {
        self.0.get()
    }

    /// The id [`LinkId::raw`] gave, if it is one.
    pub(crate) fn from_raw(raw: u64) -> Option<LinkId> {
        std::num::NonZeroU64::new(raw).map(LinkId)
    }
}

/// Every link of the shard, by slot (a pointer per slot: no hash map).
#[derive(Default)]
pub(crate) struct Links {
    slots: Vec<Option<Rc<Link>>>,
    live: usize,
}

impl Links {
    pub(crate) fn insert(&mut self, link: Rc<Link>) {
        let slot = link.id.slot() as usize;
        if self.slots.len() <= slot {
            self.slots.resize(slot + 1, None);
        }
        if self.slots[slot].replace(link).is_none() {
            self.live += 1;
        }
    }

    pub(crate) fn get(&self, id: &LinkId) -> Option<&Rc<Link>> {
        self.slots
            .get(id.slot() as usize)?
            .as_ref()
            .filter(|l| l.id == *id)
    }

    /// The link in engine slot `slot`.
    pub(crate) fn at(&self, slot: u32) -> Option<&Rc<Link>> {
        self.slots.get(slot as usize)?.as_ref()
    }

    pub(crate) fn remove(&mut self, id: &LinkId) -> Option<Rc<Link>> {
        let slot = self.slots.get_mut(id.slot() as usize)?;
        if slot.as_ref().is_some_and(|l| l.id == *id) {
            self.live -= 1;
            return slot.take();
        }
        None
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &Rc<Link>> {
        self.slots.iter().flatten()
    }
}

thread_local! {
    /// The slots of the links with something to do (output to write or a
    /// close to carry out) since the engine last looked; it flushes them
    /// once per loop turn instead of waking anything per link. One per
    /// thread is one per shard (a shard never leaves its thread), and a
    /// link then needs no pointer to it.
    static DIRTY: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
}

/// The shard's dirty list (see `DIRTY`).
pub(crate) struct Dirty;

impl Dirty {
    /// Takes the slots marked so far (each link once) into `into`.
    pub(crate) fn take_into(into: &mut Vec<u32>) {
        into.clear();
        DIRTY.with(|d| std::mem::swap(&mut *d.borrow_mut(), into));
    }

    pub(crate) fn is_empty() -> bool {
        DIRTY.with(|d| d.borrow().is_empty())
    }
}

/// A link's session: `Cell<Option<SessionId>>` in 8 bytes (session ids
/// start at 1, so 0 means none).
#[derive(Default)]
pub(crate) struct SessionCell(Cell<u64>);

impl SessionCell {
    pub(crate) fn get(&self) -> Option<SessionId> {
        Some(self.0.get()).filter(|&id| id != 0).map(SessionId)
    }

    pub(crate) fn set(&self, id: Option<SessionId>) {
        debug_assert!(id != Some(SessionId(0)));
        self.0.set(id.map_or(0, |id| id.0));
    }

    pub(crate) fn take(&self) -> Option<SessionId> {
        let id = self.get();
        self.0.set(0);
        id
    }
}

/// A peer address in 16 bytes (a `SocketAddr` is 32): IPv4 inline, the
/// rarer IPv6 boxed.
pub(crate) enum Peer {
    V4(std::net::SocketAddrV4),
    V6(Box<std::net::SocketAddrV6>),
}

impl Peer {
    pub(crate) fn new(addr: SocketAddr) -> Peer {
        match addr {
            SocketAddr::V4(a) => Peer::V4(a),
            SocketAddr::V6(a) => Peer::V6(Box::new(a)),
        }
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        match self {
            Peer::V4(a) => SocketAddr::V4(*a),
            Peer::V6(a) => SocketAddr::V6(**a),
        }
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.addr().fmt(f)
    }
}

/// The shard's handle on one connection.
pub(crate) struct Link {
    pub(crate) id: LinkId,
    pub(crate) peer: Peer,
    /// Encoded packets waiting to be written.
    pub(crate) outbuf: RefCell<BytesMut>,
    close: Cell<Option<CloseCause>>,
    /// The socket is closed (the task is ending); take-over waits on it.
    closed: Cell<bool>,
    /// Negotiated protocol; `None` until CONNECT is accepted.
    pub(crate) version: Cell<Option<ProtocolVersion>>,
    /// The session this connection drives, once connected.
    pub(crate) session: SessionCell,
    /// The CONNECT deadline's wheel entry, until CONNECT is accepted.
    pub(crate) connect_timer: Cell<Option<TimerKey>>,
    /// Whether the link is on the shard's dirty list.
    marked: Cell<bool>,
    /// TCP_USER_TIMEOUT for the engine to set on the socket (once, after
    /// CONNECT), in milliseconds.
    pub(crate) user_timeout_ms: Cell<Option<u32>>,
    /// Bytes handed to the kernel and not yet written.
    in_flight: Cell<u32>,
    /// Retained queries sent to other shards and not yet answered.
    retained_queries: Cell<u16>,
    /// Persistence: messages this connection published that another shard
    /// has not yet reported written (its output, PUBACKs included, waits).
    durable_holds: Cell<u32>,
    /// With --use-identity-as-username, a TLS connection's client
    /// certificate name, for its CONNECT (inside: `None` when the client
    /// showed no certificate or one without a CN).
    pub(crate) cert_name: Cell<Option<Box<CertName>>>,
    /// Where its CONNECT's password check stands.
    pub(crate) auth: Cell<AuthState>,
    /// --cluster-nats: where its CONNECT's claim of the client id stands.
    pub(crate) claim: Cell<ClaimState>,
    /// Counted in `clients_v*` (CONNACK 0x00 sent, not yet closed).
    pub(crate) counted: Cell<bool>,
    /// The keep-alive granted, in seconds, and who chose it, for the
    /// admin API.
    pub(crate) keep_alive: Cell<(u16, ringmq_session::KeepAliveSource)>,
}

/// A CONNECT's password check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) enum AuthState {
    /// Not asked (or not needed) yet.
    #[default]
    Unchecked,
    /// Parked: a verifier thread is checking the hash.
    Pending,
    /// The verifier said yes / no; the CONNECT is handled again.
    Passed,
    Failed,
}

/// A CONNECT's claim of its client id in the cluster's directory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum ClaimState {
    /// Not asked (one node, or the id is already held here).
    #[default]
    Unchecked,
    /// Parked: the control thread runs the claim.
    Pending,
    /// The id is this node's; the CONNECT is handled again.
    Granted,
    /// Refused, or another node took the id while this one claimed it: the
    /// CONNECT is refused when handled again.
    Refused,
    /// The owner keeps the id from this connection's user
    /// (`--takeover-same-user-only`): CONNACK 0x87 when handled again.
    Denied,
}

/// The subject CN of a client certificate, if there was one with a CN.
pub(crate) struct CertName(pub(crate) Option<Box<str>>);

/// Retained queries one connection may have unanswered before it is not
/// read (each reply may carry a shard's whole share of the retained
/// store: a client repeating wildcard SUBSCRIBEs must wait for them).
pub(crate) const MAX_RETAINED_QUERIES: u16 = 64;

impl Link {
    pub(crate) fn new(id: LinkId, peer: SocketAddr) -> Self {
        Self {
            marked: Cell::new(false),
            id,
            peer: Peer::new(peer),
            outbuf: RefCell::new(BytesMut::new()),
            close: Cell::new(None),
            closed: Cell::new(false),
            version: Cell::new(None),
            session: SessionCell::default(),
            connect_timer: Cell::new(None),
            user_timeout_ms: Cell::new(None),
            in_flight: Cell::new(0),
            retained_queries: Cell::new(0),
            durable_holds: Cell::new(0),
            cert_name: Cell::new(None),
            auth: Cell::new(AuthState::Unchecked),
            claim: Cell::new(ClaimState::Unchecked),
            counted: Cell::new(false),
            keep_alive: Cell::new((0, ringmq_session::KeepAliveSource::Client)),
        }
    }

    /// Holds the link's output until a release (persistence: a PUBACK
    /// waits until every shard it routed the message to has written it).
    pub(crate) fn hold(&self) {
        self.durable_holds.set(self.durable_holds.get() + 1);
    }

    /// Ends one hold; the output goes at the end of the turn once none is
    /// left.
    pub(crate) fn release(&self) {
        let left = self.durable_holds.get().saturating_sub(1);
        self.durable_holds.set(left);
        if left == 0 {
            self.wake();
        }
    }

    /// Whether the output waits for a release.
    pub(crate) fn held(&self) -> bool {
        self.durable_holds.get() > 0
    }

    /// Marks the link dirty: the engine writes its output or carries out
    /// its close at the end of this loop turn.
    pub(crate) fn wake(&self) {
        if !self.marked.replace(true) {
            let slot = self.id.slot();
            DIRTY.with(|d| d.borrow_mut().push(slot));
        }
    }

    /// The engine took the link off the dirty list.
    pub(crate) fn unmark(&self) {
        self.marked.set(false);
    }

    /// Bytes waiting to be written: encoded, and handed to the kernel.
    pub(crate) fn queued_bytes(&self) -> usize {
        self.outbuf.borrow().len() + self.in_flight.get() as usize
    }

    /// A retained query of this connection went to another shard.
    pub(crate) fn retained_asked(&self) {
        self.retained_queries
            .set(self.retained_queries.get().saturating_add(1));
    }

    /// A retained query of this connection's session was answered (one of
    /// a previous connection's may land here: it saturates at 0).
    pub(crate) fn retained_answered(&self) {
        self.retained_queries
            .set(self.retained_queries.get().saturating_sub(1));
    }

    /// Too many retained queries in flight: stop reading until answered.
    pub(crate) fn retained_backlog(&self) -> bool {
        self.retained_queries.get() >= MAX_RETAINED_QUERIES
    }

    /// The engine's count of bytes handed to the kernel and not written.
    pub(crate) fn set_in_flight(&self, bytes: usize) {
        self.in_flight.set(bytes.min(u32::MAX as usize) as u32);
    }

    /// Asks the engine to close the connection (first cause wins).
    pub(crate) fn request_close(&self, cause: CloseCause) {
        if self.close.get().is_none() {
            self.close.set(Some(cause));
        }
        self.wake();
    }

    /// The close asked for, if any.
    pub(crate) fn close_requested(&self) -> Option<CloseCause> {
        self.close.get()
    }

    /// Marks the socket closed (a take-over waiting on it goes on).
    pub(crate) fn mark_closed(&self) {
        self.closed.set(true);
    }

    /// Whether the socket is closed.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.get()
    }
}
