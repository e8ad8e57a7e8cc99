//! The session table: client id -> session -> link.
//!
//! A client id always maps to this shard (its owner), so take-over is a
//! table operation: no lock, no cross-shard round trip. At most one link
//! is attached to a session; the new one is attached in the same
//! synchronous step that detaches the old. The table also keeps each
//! session's wheel entries (one per timer kind), so a timer is cancelled
//! when re-armed and none outlives its session.

use std::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashTable};
use ringmq_session::{Session, SessionId, Timer};
use ringmq_wheel::TimerKey;

use super::link::LinkId;

/// One session and what the shard tracks about it.
pub(crate) struct Entry {
    /// This entry's own id (checked on every lookup by id).
    id: SessionId,
    pub(crate) session: Session,
    pub(crate) link: Option<LinkId>,
    /// Wheel entries by `Timer::index`.
    pub(crate) timers: [Option<TimerKey>; 3],
    /// Bumped whenever the session arms or cancels a timer kind, so a
    /// fired timer still waiting for --will-rate can tell it is stale.
    pub(crate) timer_gen: [u32; 3],
    /// Take-overs of this client id since `fight_since_ms` (--takeover-limit).
    pub(crate) fights: u32,
    pub(crate) fight_since_ms: u64,
}

/// Sessions by id: a session id is its index here (low 32 bits) and a
/// count (high 32 bits, never 0), so a lookup is an index and a check, and
/// a slot costs a pointer.
#[derive(Default)]
struct Entries {
    slots: Vec<Option<Box<Entry>>>,
    free: Vec<u32>,
}

impl Entries {
    fn insert(&mut self, count: u32, entry: Entry) -> SessionId {
        let index = self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            (self.slots.len() - 1) as u32
        });
        let id = SessionId((u64::from(count) << 32) | u64::from(index));
        self.slots[index as usize] = Some(Box::new(Entry { id, ..entry }));
        id
    }

    fn get(&self, id: &SessionId) -> Option<&Entry> {
        let entry = self.slots.get(id.0 as u32 as usize)?.as_deref()?;
        (entry.id == *id).then_some(entry)
    }

    fn get_mut(&mut self, id: &SessionId) -> Option<&mut Entry> {
        let entry = self.slots.get_mut(id.0 as u32 as usize)?.as_deref_mut()?;
        (entry.id == *id).then_some(entry)
    }

    fn remove(&mut self, id: &SessionId) -> Option<Box<Entry>> {
        let index = id.0 as u32 as usize;
        self.get(id)?;
        self.free.push(index as u32);
        self.slots[index].take()
    }

    fn iter(&self) -> impl Iterator<Item = (&SessionId, &Entry)> {
        self.slots.iter().flatten().map(|e| (&e.id, &**e))
    }
}

/// Every session this shard owns.
#[derive(Default)]
pub(crate) struct SessionTable {
    /// Boxed entries: spare capacity costs a pointer per slot, not a whole
    /// entry.
    by_id: Entries,
    /// Client id -> session, holding only the id (8 bytes a slot): the
    /// client id itself is read from the session it names.
    by_client: HashTable<SessionId>,
    hasher: DefaultHashBuilder,
    next_id: u32,
    /// Source of assigned client identifiers.
    pub(crate) assigned_ids: u64,
    /// Sessions in the table, and those with a link attached.
    len: usize,
    attached: usize,
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
        self.next_id = self.next_id.wrapping_add(1).max(1);
        let hash = self.hasher.hash_one(&session.client_id()[..]);
        let id = self.by_id.insert(
            self.next_id,
            Entry {
                id: SessionId(0),
                session,
                link: None,
                timers: [None; 3],
                timer_gen: [0; 3],
                fights: 0,
                fight_since_ms: 0,
            },
        );
        self.len += 1;
        let (by_id, hasher) = (&self.by_id, &self.hasher);
        self.by_client.insert_unique(hash, id, |id| {
            by_id
                .get(id)
                .map_or(0, |e| hasher.hash_one(&e.session.client_id()[..]))
        });
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
        let entry = self.by_id.remove(&id)?;
        self.len -= 1;
        if entry.link.is_some() {
            self.attached -= 1;
        }
        Some(entry)
    }

    /// Sessions kept with no connection attached.
    pub(crate) fn absent(&self) -> usize {
        self.len - self.attached
    }

    pub(crate) fn get(&self, id: SessionId) -> Option<&Entry> {
        self.by_id.get(&id)
    }

    pub(crate) fn get_mut(&mut self, id: SessionId) -> Option<&mut Entry> {
        self.by_id.get_mut(&id)
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
        let old = self.get_mut(id)?.link.replace(link);
        if old.is_none() {
            self.attached += 1;
        }
        old
    }

    /// Detaches `link` if it is the one attached; true when it was.
    pub(crate) fn detach(&mut self, id: SessionId, link: LinkId) -> bool {
        match self.get_mut(id) {
            Some(e) if e.link == Some(link) => {
                e.link = None;
                self.attached -= 1;
                true
            }
            _ => false,
        }
    }

    /// Replaces a session's wheel entry for `timer` (the session armed or
    /// cancelled it); returns the old one.
    pub(crate) fn set_timer(
        &mut self,
        id: SessionId,
        timer: Timer,
        key: Option<TimerKey>,
    ) -> Option<TimerKey> {
        let entry = self.get_mut(id)?;
        let gen = &mut entry.timer_gen[timer.index()];
        *gen = gen.wrapping_add(1);
        std::mem::replace(&mut entry.timers[timer.index()], key)
    }

    /// The wheel entry for `timer` has fired: it is no longer armed.
    /// Returns the timer's generation, to check it is still current when
    /// it is handled.
    pub(crate) fn fired(&mut self, id: SessionId, timer: Timer) -> Option<u32> {
        let entry = self.get_mut(id)?;
        entry.timers[timer.index()] = None;
        Some(entry.timer_gen[timer.index()])
    }

    /// Whether `timer` is still at generation `gen` (neither armed again
    /// nor cancelled since it fired).
    pub(crate) fn timer_current(&self, id: SessionId, timer: Timer, gen: u32) -> bool {
        self.get(id)
            .is_some_and(|e| e.timer_gen[timer.index()] == gen)
    }

    /// Every session's id.
    pub(crate) fn ids(&self) -> impl Iterator<Item = SessionId> + '_ {
        self.by_id.iter().map(|(id, _)| *id)
    }

    /// Sessions with a link attached, and their links.
    pub(crate) fn connected(&self) -> impl Iterator<Item = (SessionId, LinkId)> + '_ {
        self.by_id
            .iter()
            .filter_map(|(id, e)| e.link.map(|l| (*id, l)))
    }
}
