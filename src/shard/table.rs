//! The session table: client id -> session -> link.
//!
//! A client id always maps to this shard (its owner), so take-over is a
//! table operation: no lock, no cross-shard round trip. At most one link
//! is attached to a session; the new one is attached in the same
//! synchronous step that detaches the old. The table also keeps each
//! session's wheel entries (one per timer kind), so a timer is cancelled
//! when re-armed and none outlives its session.

use std::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashMap, HashTable};
use ringmq_session::{Session, SessionId, Timer};
use ringmq_wheel::TimerKey;

use super::link::LinkId;

/// One session and what the shard tracks about it.
pub(crate) struct Entry {
    pub(crate) session: Session,
    pub(crate) link: Option<LinkId>,
    /// Wheel entries by `Timer::index`.
    pub(crate) timers: [Option<TimerKey>; 3],
}

/// Every session this shard owns.
#[derive(Default)]
pub(crate) struct SessionTable {
    /// Boxed: the map's spare capacity then costs a pointer per slot, not
    /// a whole entry.
    by_id: HashMap<SessionId, Box<Entry>>,
    /// Client id -> session, holding only the id (8 bytes a slot): the
    /// client id itself is read from the session it names.
    by_client: HashTable<SessionId>,
    hasher: DefaultHashBuilder,
    next_id: u64,
    /// Source of assigned client identifiers.
    pub(crate) assigned_ids: u64,
}

impl SessionTable {
    /// The session of a client id.
    pub(crate) fn find(&self, client_id: &[u8]) -> Option<SessionId> {
        let by_id = &self.by_id;
        self.by_client
            .find(self.hasher.hash_one(client_id), |id| {
                by_id
                    .get(id)
                    .is_some_and(|e| &e.session.client_id()[..] == client_id)
            })
            .copied()
    }

    /// Adds a fresh session for its client id.
    pub(crate) fn insert(&mut self, session: Session) -> SessionId {
        self.next_id += 1;
        let id = SessionId(self.next_id);
        let hash = self.hasher.hash_one(&session.client_id()[..]);
        let (by_id, hasher) = (&self.by_id, &self.hasher);
        self.by_client.insert_unique(hash, id, |id| {
            by_id
                .get(id)
                .map_or(0, |e| hasher.hash_one(&e.session.client_id()[..]))
        });
        self.by_id.insert(
            id,
            Box::new(Entry {
                session,
                link: None,
                timers: [None; 3],
            }),
        );
        id
    }

    /// Removes a session; returns its entry (for its timers).
    pub(crate) fn remove(&mut self, id: SessionId) -> Option<Box<Entry>> {
        let hash = self
            .hasher
            .hash_one(&self.by_id.get(&id)?.session.client_id()[..]);
        if let Ok(found) = self.by_client.find_entry(hash, |other| *other == id) {
            found.remove();
        }
        self.by_id.remove(&id)
    }

    pub(crate) fn get(&self, id: SessionId) -> Option<&Entry> {
        self.by_id.get(&id).map(|e| &**e)
    }

    pub(crate) fn get_mut(&mut self, id: SessionId) -> Option<&mut Entry> {
        self.by_id.get_mut(&id).map(|e| &mut **e)
    }

    /// The link attached to a session.
    pub(crate) fn link_of(&self, id: SessionId) -> Option<LinkId> {
        self.get(id).and_then(|e| e.link)
    }

    /// Whether a session has a link attached.
    pub(crate) fn is_connected(&self, id: SessionId) -> bool {
        self.link_of(id).is_some()
    }

    /// Attaches `link` to a session; returns the link it replaces.
    pub(crate) fn attach(&mut self, id: SessionId, link: LinkId) -> Option<LinkId> {
        self.get_mut(id).and_then(|e| e.link.replace(link))
    }

    /// Detaches `link` if it is the one attached; true when it was.
    pub(crate) fn detach(&mut self, id: SessionId, link: LinkId) -> bool {
        match self.get_mut(id) {
            Some(e) if e.link == Some(link) => {
                e.link = None;
                true
            }
            _ => false,
        }
    }

    /// Replaces a session's wheel entry for `timer`; returns the old one.
    pub(crate) fn set_timer(
        &mut self,
        id: SessionId,
        timer: Timer,
        key: Option<TimerKey>,
    ) -> Option<TimerKey> {
        let entry = self.get_mut(id)?;
        std::mem::replace(&mut entry.timers[timer.index()], key)
    }

    /// Sessions with a link attached, and their links.
    pub(crate) fn connected(&self) -> impl Iterator<Item = (SessionId, LinkId)> + '_ {
        self.by_id
            .iter()
            .filter_map(|(id, e)| e.link.map(|l| (*id, l)))
    }
}
