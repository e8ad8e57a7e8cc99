//! A link: what a connection task shares with the rest of its shard.
//!
//! The connection task owns the socket; everything else reaches the
//! connection only through its `Link`: `apply` appends encoded packets to
//! `outbuf` and wakes the task, or asks it to close. The task flushes,
//! reads and watches for the close request in one future, so a blocked
//! write never hides a close. An idle link owns no buffer: `outbuf` is
//! released whenever it drains.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::task::Waker;

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
    waker: Cell<Option<Waker>>,
    close: Cell<Option<CloseCause>>,
    /// The socket is closed (the task is ending); take-over waits on it.
    closed: Cell<bool>,
    /// Tasks waiting for `closed` (a take-over's new connection).
    closed_wakers: RefCell<Vec<Waker>>,
    /// Negotiated protocol; `None` until CONNECT is accepted.
    pub(crate) version: Cell<Option<ProtocolVersion>>,
    /// The session this connection drives, once connected.
    pub(crate) session: Cell<Option<SessionId>>,
    /// The CONNECT deadline's wheel entry, until CONNECT is accepted.
    pub(crate) connect_timer: Cell<Option<TimerKey>>,
    /// The ring engine's slot for this link and its dirty list.
    slot: Cell<u32>,
    marked: Cell<bool>,
    dirty: Option<Rc<Dirty>>,
}

impl Link {
    pub(crate) fn new(id: LinkId, peer: SocketAddr, dirty: Option<Rc<Dirty>>) -> Self {
        Self {
            slot: Cell::new(u32::MAX),
            marked: Cell::new(false),
            dirty,
            id,
            peer,
            outbuf: RefCell::new(BytesMut::new()),
            waker: Cell::new(None),
            close: Cell::new(None),
            closed: Cell::new(false),
            closed_wakers: RefCell::new(Vec::new()),
            version: Cell::new(None),
            session: Cell::new(None),
            connect_timer: Cell::new(None),
        }
    }

    /// Wakes the connection task (to flush or to close), or marks the
    /// link dirty for the ring engine.
    pub(crate) fn wake(&self) {
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
        if let Some(dirty) = &self.dirty {
            if !self.marked.replace(true) && self.slot.get() != u32::MAX {
                dirty.0.borrow_mut().push(self.slot.get());
            }
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

    /// Registers the task's waker.
    pub(crate) fn set_waker(&self, waker: &Waker) {
        self.waker.set(Some(waker.clone()));
    }

    /// Bytes waiting to be written.
    pub(crate) fn queued_bytes(&self) -> usize {
        self.outbuf.borrow().len()
    }

    /// Asks the task to close the connection (first cause wins).
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

    /// Marks the socket closed and wakes whoever waits for that.
    pub(crate) fn mark_closed(&self) {
        self.closed.set(true);
        for waker in self.closed_wakers.borrow_mut().drain(..) {
            waker.wake();
        }
    }

    /// Whether the socket is closed.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.get()
    }

    /// Whether the socket is closed; registers `waker` to hear when it is.
    pub(crate) fn poll_closed(&self, waker: &Waker) -> bool {
        if self.closed.get() {
            return true;
        }
        let mut wakers = self.closed_wakers.borrow_mut();
        if !wakers.iter().any(|w| w.will_wake(waker)) {
            wakers.push(waker.clone());
        }
        false
    }
}
