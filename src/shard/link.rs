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

/// One connection on its shard; never reused while the shard runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct LinkId(pub(crate) u64);

/// The links with something to do (output to write or a close to carry
/// out) since the engine last looked: `--io-engine ring` flushes them once
/// per loop turn instead of waking a task per link.
#[derive(Default)]
pub(crate) struct Dirty(RefCell<Vec<u32>>);

impl Dirty {
    /// Takes the slots marked so far (each link once), leaving `into`'s
    /// old contents replaced.
    pub(crate) fn take_into(&self, into: &mut Vec<u32>) {
        into.clear();
        std::mem::swap(&mut *self.0.borrow_mut(), into);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.borrow().is_empty()
    }
}

/// The shard's handle on one connection.
pub(crate) struct Link {
    pub(crate) id: LinkId,
    pub(crate) peer: SocketAddr,
    /// Encoded packets waiting to be written.
    pub(crate) outbuf: RefCell<BytesMut>,
    close: Cell<Option<CloseCause>>,
    /// The socket is closed (the task is ending); take-over waits on it.
    closed: Cell<bool>,
    /// Negotiated protocol; `None` until CONNECT is accepted.
    pub(crate) version: Cell<Option<ProtocolVersion>>,
    /// The session this connection drives, once connected.
    pub(crate) session: Cell<Option<SessionId>>,
    /// The CONNECT deadline's wheel entry, until CONNECT is accepted.
    pub(crate) connect_timer: Cell<Option<TimerKey>>,
    /// The engine's slot for this link, and the shard's dirty list.
    slot: Cell<u32>,
    marked: Cell<bool>,
    dirty: Rc<Dirty>,
}

impl Link {
    pub(crate) fn new(id: LinkId, peer: SocketAddr, dirty: Rc<Dirty>) -> Self {
        Self {
            slot: Cell::new(u32::MAX),
            marked: Cell::new(false),
            dirty,
            id,
            peer,
            outbuf: RefCell::new(BytesMut::new()),
            close: Cell::new(None),
            closed: Cell::new(false),
            version: Cell::new(None),
            session: Cell::new(None),
            connect_timer: Cell::new(None),
        }
    }

    /// Marks the link dirty: the engine writes its output or carries out
    /// its close at the end of this loop turn.
    pub(crate) fn wake(&self) {
        if !self.marked.replace(true) && self.slot.get() != u32::MAX {
            self.dirty.0.borrow_mut().push(self.slot.get());
        }
    }

    /// Ties the link to its ring-engine slot.
    pub(crate) fn set_slot(&self, slot: u32) {
        self.slot.set(slot);
    }

    /// The engine took the link off the dirty list.
    pub(crate) fn unmark(&self) {
        self.marked.set(false);
    }

    /// Bytes waiting to be written.
    pub(crate) fn queued_bytes(&self) -> usize {
        self.outbuf.borrow().len()
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
