//! What one shard's store holds, how events change it, and how it is
//! written back out as a snapshot.
//!
//! This file owns the replay rules ([`StoreState::apply`]), snapshots,
//! recovery and the restart helpers (expiry, redistribution). It never
//! reads a clock: wall-clock time comes in as `*_unix_ms` arguments.
//!
//! Invariants, kept by `apply` and checked in tests: within a session,
//! each packet id is held by at most one message; `in_flight` maps exactly
//! the messages whose `packet_id` is `Some` to their msg id; a message is
//! `released` only while it is in flight.

use crate::event::{Event, WillRecord};
use crate::record::{decode_each, encode, Tail};
use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet};

/// Everything one shard's store holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreState {
    /// Persistent sessions by client id.
    pub sessions: BTreeMap<Bytes, SessionState>,
    /// Retained messages by topic.
    pub retained: BTreeMap<Bytes, RetainedRecord>,
}

/// One persistent session.
///
/// Change it through [`StoreState::apply`]: the fields are public to read,
/// but `messages` and `packet_id`s must stay in step with a private index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionState {
    /// The username of the connection that last connected (None:
    /// anonymous, or the broker keeps no identities).
    pub username: Option<Bytes>,
    /// Protocol level from CONNECT (4 = 3.1.1, 5 = 5.0).
    pub protocol: u8,
    /// Session expiry interval in seconds; `u32::MAX` never expires.
    pub expiry_secs: u32,
    /// When the client left, ms since the Unix epoch; None while connected.
    pub left_at_unix_ms: Option<u64>,
    /// The will, if one is still to be published.
    pub will: Option<WillRecord>,
    /// Will delay interval in seconds.
    pub will_delay_secs: u32,
    /// Filter -> (SUBSCRIBE options byte, subscription id or 0).
    pub subscriptions: BTreeMap<Bytes, (u8, u32)>,
    /// Outbound QoS 1/2 messages by msg id (queued and in flight).
    pub messages: BTreeMap<u64, StoredMessage>,
    /// Inbound QoS 2 packet ids answered with PUBREC, awaiting PUBREL.
    pub inbound_pending: BTreeSet<u16>,
    /// Packet id -> msg id of every message in flight, so PUBACK, PUBREC
    /// and PUBCOMP find their message without a scan.
    in_flight: BTreeMap<u16, u64>,
    /// The released messages' msg ids in the order their PUBREC came: on
    /// resume PUBRELs go in this order (MQTT-4.6.0-3).
    released_order: Vec<u64>,
}

/// An outbound message kept for a session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredMessage {
    /// Topic it is delivered on.
    pub topic: Bytes,
    /// Payload.
    pub payload: Bytes,
    /// QoS it is delivered at.
    pub qos: u8,
    /// Retain flag it is delivered with.
    pub retain: bool,
    /// v5 properties as encoded (opaque).
    pub properties: Bytes,
    /// Expiry, ms since the Unix epoch; None never.
    pub expires_at_unix_ms: Option<u64>,
    /// The packet id while in flight; None while queued.
    pub packet_id: Option<u16>,
    /// PUBREC received: on resume send PUBREL, not the PUBLISH.
    pub released: bool,
}

/// A retained message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetainedRecord {
    /// Payload.
    pub payload: Bytes,
    /// QoS.
    pub qos: u8,
    /// v5 properties as encoded (opaque).
    pub properties: Bytes,
    /// Expiry, ms since the Unix epoch; None never.
    pub expires_at_unix_ms: Option<u64>,
}

/// The result of [`recover`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovered {
    /// The snapshot's good records applied, then the log's.
    pub state: StoreState,
    /// How the snapshot ended (its offset, if any, is its good length).
    pub snapshot_tail: Tail,
    /// How the log ended.
    pub log_tail: Tail,
    /// The log's good length: truncate the log file to it before appending.
    pub log_good_len: usize,
}

/// What [`StoreState::expire`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expiry {
    /// Sessions that ended, and live sessions whose will came due.
    pub expired: Vec<Expired>,
    /// Events that make the same changes durable: applied to the state as it
    /// was before `expire`, they give the state after it. Append them to the
    /// log (or write a snapshot) before publishing any will.
    pub events: Vec<Event>,
}

/// One session `expire` acted on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expired {
    /// The client id.
    pub client_id: Bytes,
    /// The will to publish now, if any.
    pub will: Option<WillRecord>,
    /// True if the session ended and was removed; false if it lives on and
    /// only its will came due (the will was removed from it).
    pub session_ended: bool,
}

impl SessionState {
    fn new(
        username: Option<Bytes>,
        protocol: u8,
        expiry_secs: u32,
        will: Option<WillRecord>,
        will_delay_secs: u32,
    ) -> Self {
        SessionState {
            username,
            protocol,
            expiry_secs,
            left_at_unix_ms: None,
            will,
            will_delay_secs,
            subscriptions: BTreeMap::new(),
            messages: BTreeMap::new(),
            inbound_pending: BTreeSet::new(),
            in_flight: BTreeMap::new(),
            released_order: Vec::new(),
        }
    }

    /// The released messages' msg ids in the order their PUBREC came.
    pub fn released_in_order(&self) -> &[u64] {
        &self.released_order
    }

    fn unrelease(&mut self, msg_id: u64) {
        self.released_order.retain(|&id| id != msg_id);
    }

    /// The msg id of the message in flight with `packet_id`, if any.
    pub fn in_flight(&self, packet_id: u16) -> Option<u64> {
        self.in_flight.get(&packet_id).copied()
    }

    /// Takes `msg_id` out of flight (back to queued); the index entry is the
    /// caller's to have removed or to remove.
    fn unsend(&mut self, msg_id: u64) {
        if let Some(m) = self.messages.get_mut(&msg_id) {
            m.packet_id = None;
            if std::mem::take(&mut m.released) {
                self.unrelease(msg_id);
            }
        }
    }

    /// Removes `msg_id` and its index entry.
    fn forget(&mut self, msg_id: u64) {
        if let Some(m) = self.messages.remove(&msg_id) {
            if let Some(p) = m.packet_id {
                self.in_flight.remove(&p);
            }
            if m.released {
                self.unrelease(msg_id);
            }
        }
    }

    /// The Put-style events that rebuild this session from nothing.
    pub fn events<'a>(&'a self, client_id: &'a Bytes) -> impl Iterator<Item = Event> + 'a {
        let put = Event::SessionPut {
            client_id: client_id.clone(),
            username: self.username.clone(),
            protocol: self.protocol,
            expiry_secs: self.expiry_secs,
            will: self.will.clone(),
            will_delay_secs: self.will_delay_secs,
        };
        let left = self.left_at_unix_ms.map(|at_unix_ms| Event::SessionLeft {
            client_id: client_id.clone(),
            at_unix_ms,
        });
        let subscriptions =
            self.subscriptions
                .iter()
                .map(|(filter, &(options, id))| Event::SubscriptionPut {
                    client_id: client_id.clone(),
                    filter: filter.clone(),
                    options,
                    id,
                });
        let messages = self.messages.iter().flat_map(|(&msg_id, m)| {
            let queued = Event::MessageQueued {
                client_id: client_id.clone(),
                msg_id,
                topic: m.topic.clone(),
                payload: m.payload.clone(),
                qos: m.qos,
                retain: m.retain,
                properties: m.properties.clone(),
                expires_at_unix_ms: m.expires_at_unix_ms,
            };
            let sent = m.packet_id.map(|packet_id| Event::MessageSent {
                client_id: client_id.clone(),
                msg_id,
                packet_id,
            });
            std::iter::once(queued).chain(sent)
        });
        // After every message is in flight, in PUBREC order.
        let released = self.released_order.iter().filter_map(|msg_id| {
            let packet_id = self.messages.get(msg_id)?.packet_id?;
            Some(Event::MessageReleased {
                client_id: client_id.clone(),
                packet_id,
            })
        });
        let inbound = self
            .inbound_pending
            .iter()
            .map(|&packet_id| Event::InboundPending {
                client_id: client_id.clone(),
                packet_id,
            });
        std::iter::once(put)
            .chain(left)
            .chain(subscriptions)
            .chain(messages)
            .chain(released)
            .chain(inbound)
    }
}

impl StoreState {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one event. The rules:
    ///
    /// - `SessionPut` creates the session, or on an existing one (a resume)
    ///   replaces username, protocol, expiry, will and will delay (a resume
    ///   may come back under another username, or anonymously) and keeps
    ///   its subscriptions, messages and inbound packet ids. Either way the
    ///   client is connected: `left_at_unix_ms` becomes None.
    /// - `SessionLeft` sets `left_at_unix_ms`; `SessionGone` removes the
    ///   session with everything of it; `WillGone` removes its will.
    /// - Every other session event about a client id with no session is
    ///   ignored (it outlived its session, or the snapshot lost it).
    /// - `SubscriptionPut` adds or replaces the filter's options and id;
    ///   `SubscriptionGone` removes it (absent: ignored).
    /// - `MessageQueued` adds a queued message; a msg id the session already
    ///   holds is ignored (ids are unique; the first record wins).
    /// - `MessageSent` puts the message in flight with that packet id at the
    ///   PUBLISH stage (`released` false), replacing any packet id it had;
    ///   another message of the session holding that packet id goes back
    ///   to queued. An unknown msg id is ignored.
    /// - `MessageReleased` marks the message in flight with that packet id
    ///   released and forgets its content (topic, payload, properties,
    ///   retain, expiry: a PUBREL needs none of it); `MessageDone` removes it; `MessageDropped` removes a
    ///   message by msg id, in flight or not. Unknown ids are ignored.
    /// - `InboundPending` / `InboundDone` add / remove an inbound packet id.
    /// - `RetainedPut` sets the topic's retained message; `RetainedGone`
    ///   removes it.
    ///
    /// Session and filter keys and the username are copied out of the
    /// event, so what the state keeps never pins the record buffer it was
    /// decoded from.
    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::SessionPut {
                client_id,
                username,
                protocol,
                expiry_secs,
                will,
                will_delay_secs,
            } => match self.sessions.get_mut(client_id) {
                Some(s) => {
                    s.username = username.as_deref().map(Bytes::copy_from_slice);
                    s.protocol = *protocol;
                    s.expiry_secs = *expiry_secs;
                    s.will = will.clone();
                    s.will_delay_secs = *will_delay_secs;
                    s.left_at_unix_ms = None;
                }
                None => {
                    let s = SessionState::new(
                        username.as_deref().map(Bytes::copy_from_slice),
                        *protocol,
                        *expiry_secs,
                        will.clone(),
                        *will_delay_secs,
                    );
                    self.sessions.insert(Bytes::copy_from_slice(client_id), s);
                }
            },
            Event::SessionLeft {
                client_id,
                at_unix_ms,
            } => {
                if let Some(s) = self.sessions.get_mut(client_id) {
                    s.left_at_unix_ms = Some(*at_unix_ms);
                }
            }
            Event::SessionGone { client_id } => {
                self.sessions.remove(client_id);
            }
            Event::WillGone { client_id } => {
                if let Some(s) = self.sessions.get_mut(client_id) {
                    s.will = None;
                }
            }
            Event::SubscriptionPut {
                client_id,
                filter,
                options,
                id,
            } => {
                if let Some(s) = self.sessions.get_mut(client_id) {
                    match s.subscriptions.get_mut(filter) {
                        Some(sub) => *sub = (*options, *id),
                        None => {
                            s.subscriptions
                                .insert(Bytes::copy_from_slice(filter), (*options, *id));
                        }
                    }
                }
            }
            Event::SubscriptionGone { client_id, filter } => {
                if let Some(s) = self.sessions.get_mut(client_id) {
                    s.subscriptions.remove(filter);
                }
            }
            Event::MessageQueued {
                client_id,
                msg_id,
                topic,
                payload,
                qos,
                retain,
                properties,
                expires_at_unix_ms,
            } => {
                if let Some(s) = self.sessions.get_mut(client_id) {
                    s.messages.entry(*msg_id).or_insert_with(|| StoredMessage {
                        topic: topic.clone(),
                        payload: payload.clone(),
                        qos: *qos,
                        retain: *retain,
                        properties: properties.clone(),
                        expires_at_unix_ms: *expires_at_unix_ms,
                        packet_id: None,
                        released: false,
                    });
                }
            }
            Event::MessageSent {
                client_id,
                msg_id,
                packet_id,
            } => {
                let Some(s) = self.sessions.get_mut(client_id) else {
                    return;
                };
                let Some(old) = s.messages.get(msg_id).map(|m| m.packet_id) else {
                    return;
                };
                if let Some(old) = old {
                    s.in_flight.remove(&old);
                }
                if let Some(other) = s.in_flight.insert(*packet_id, *msg_id) {
                    if other != *msg_id {
                        s.unsend(other);
                    }
                }
                if let Some(m) = s.messages.get_mut(msg_id) {
                    m.packet_id = Some(*packet_id);
                    if std::mem::take(&mut m.released) {
                        s.unrelease(*msg_id);
                    }
                }
            }
            Event::MessageReleased {
                client_id,
                packet_id,
            } => {
                if let Some(s) = self.sessions.get_mut(client_id) {
                    if let Some(msg_id) = s.in_flight(*packet_id) {
                        if let Some(m) = s.messages.get_mut(&msg_id) {
                            if !m.released {
                                m.released = true;
                                s.released_order.push(msg_id);
                                // Only its packet id is needed from here
                                // on (PUBREL), as the session keeps it.
                                m.topic = Bytes::new();
                                m.payload = Bytes::new();
                                m.properties = Bytes::new();
                                m.retain = false;
                                m.expires_at_unix_ms = None;
                            }
                        }
                    }
                }
            }
            Event::MessageDone {
                client_id,
                packet_id,
            } => {
                if let Some(s) = self.sessions.get_mut(client_id) {
                    if let Some(msg_id) = s.in_flight(*packet_id) {
                        s.forget(msg_id);
                    }
                }
            }
            Event::MessageDropped { client_id, msg_id } => {
                if let Some(s) = self.sessions.get_mut(client_id) {
                    s.forget(*msg_id);
                }
            }
            Event::InboundPending {
                client_id,
                packet_id,
            } => {
                if let Some(s) = self.sessions.get_mut(client_id) {
                    s.inbound_pending.insert(*packet_id);
                }
            }
            Event::InboundDone {
                client_id,
                packet_id,
            } => {
                if let Some(s) = self.sessions.get_mut(client_id) {
                    s.inbound_pending.remove(packet_id);
                }
            }
            Event::RetainedPut {
                topic,
                payload,
                qos,
                properties,
                expires_at_unix_ms,
            } => {
                let r = RetainedRecord {
                    payload: payload.clone(),
                    qos: *qos,
                    properties: properties.clone(),
                    expires_at_unix_ms: *expires_at_unix_ms,
                };
                self.retained.insert(topic.clone(), r);
            }
            Event::RetainedGone { topic } => {
                self.retained.remove(topic);
            }
        }
    }

    /// The Put-style events that rebuild this state from nothing, in
    /// snapshot order: per session (by client id) `SessionPut` (with the
    /// username), then
    /// `SessionLeft` if it has left, its `SubscriptionPut`s, each message's
    /// `MessageQueued` followed by `MessageSent` if in flight and
    /// `MessageReleased` if released, its `InboundPending`s; then every
    /// `RetainedPut`.
    pub fn events(&self) -> impl Iterator<Item = Event> + '_ {
        let sessions = self.sessions.iter().flat_map(|(id, s)| s.events(id));
        let retained = self.retained.iter().map(|(topic, r)| Event::RetainedPut {
            topic: topic.clone(),
            payload: r.payload.clone(),
            qos: r.qos,
            properties: r.properties.clone(),
            expires_at_unix_ms: r.expires_at_unix_ms,
        });
        sessions.chain(retained)
    }

    /// Appends the state to `out` as records of [`StoreState::events`];
    /// replaying them into an empty state yields a state equal to `self`.
    pub fn snapshot(&self, out: &mut Vec<u8>) {
        for e in self.events() {
            encode(&e, out);
        }
    }

    /// The restart step for time that passed while the broker was down (or
    /// any later sweep): removes what expired by `now_unix_ms` and returns
    /// the wills to publish with the events that record it all.
    ///
    /// - A session that has left ends once `left_at + expiry_secs` is at or
    ///   before `now` (`u32::MAX` never ends; a connected session never
    ///   ends here, see [`StoreState::leave_all`]). It is removed and
    ///   returned with its will: the will is published when the will delay
    ///   passes or the session ends, whichever is first (MQTT 5.0
    ///   3.1.3.2.2), so a session that ends always brings its will.
    /// - A session that lives on but whose `left_at + will_delay_secs` is at
    ///   or before `now` is returned with its will, which it loses.
    /// - A queued message (not in flight) whose `expires_at` is at or before
    ///   `now` is dropped; one in flight is kept, as its delivery has started
    ///   (MQTT-3.3.2-5). Expired retained messages are dropped.
    ///
    /// Additions are saturating: a time beyond `u64::MAX` ms never comes.
    pub fn expire(&mut self, now_unix_ms: u64) -> Expiry {
        let mut out = Expiry::default();
        let ended: Vec<Bytes> = self
            .sessions
            .iter()
            .filter(|(_, s)| {
                let end = s
                    .left_at_unix_ms
                    .filter(|_| s.expiry_secs != u32::MAX)
                    .map(|at| at.saturating_add(u64::from(s.expiry_secs).saturating_mul(1000)));
                end.is_some_and(|end| end <= now_unix_ms)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for client_id in ended {
            let Some(s) = self.sessions.remove(&client_id) else {
                continue;
            };
            out.events.push(Event::SessionGone {
                client_id: client_id.clone(),
            });
            out.expired.push(Expired {
                client_id,
                will: s.will,
                session_ended: true,
            });
        }
        for (client_id, s) in &mut self.sessions {
            if let (Some(at), Some(_)) = (s.left_at_unix_ms, &s.will) {
                let due = at.saturating_add(u64::from(s.will_delay_secs).saturating_mul(1000));
                if due <= now_unix_ms {
                    let will = s.will.take();
                    out.events.push(Event::SessionPut {
                        client_id: client_id.clone(),
                        username: s.username.clone(),
                        protocol: s.protocol,
                        expiry_secs: s.expiry_secs,
                        will: None,
                        will_delay_secs: s.will_delay_secs,
                    });
                    out.events.push(Event::SessionLeft {
                        client_id: client_id.clone(),
                        at_unix_ms: at,
                    });
                    out.expired.push(Expired {
                        client_id: client_id.clone(),
                        will,
                        session_ended: false,
                    });
                }
            }
            let dropped: Vec<u64> = s
                .messages
                .iter()
                .filter(|(_, m)| {
                    m.packet_id.is_none()
                        && m.expires_at_unix_ms.is_some_and(|at| at <= now_unix_ms)
                })
                .map(|(&id, _)| id)
                .collect();
            for msg_id in dropped {
                s.forget(msg_id);
                out.events.push(Event::MessageDropped {
                    client_id: client_id.clone(),
                    msg_id,
                });
            }
        }
        self.retained.retain(|topic, r| {
            let keep = r.expires_at_unix_ms.is_none_or(|at| at > now_unix_ms);
            if !keep {
                out.events.push(Event::RetainedGone {
                    topic: topic.clone(),
                });
            }
            keep
        });
        out
    }

    /// Marks every connected session as left at `at_unix_ms` and returns
    /// the `SessionLeft` events to log. At start-up every client is gone,
    /// whatever the store last said: call this (with the start time, or the
    /// time of the crash if the caller knows it) before [`StoreState::expire`]
    /// so their expiry and will delay start counting.
    pub fn leave_all(&mut self, at_unix_ms: u64) -> Vec<Event> {
        let mut events = Vec::new();
        for (client_id, s) in &mut self.sessions {
            if s.left_at_unix_ms.is_none() {
                s.left_at_unix_ms = Some(at_unix_ms);
                events.push(Event::SessionLeft {
                    client_id: client_id.clone(),
                    at_unix_ms,
                });
            }
        }
        events
    }

    /// Splits the state into `shards` parts for a changed shard count:
    /// session `c` goes to part `hash(c) % shards`, retained topic `t` to
    /// `hash(t) % shards`. Combine the parts of several old shards with
    /// [`StoreState::merge`].
    ///
    /// # Panics
    ///
    /// If `shards` is 0.
    pub fn split_by(self, shards: usize, hash: impl Fn(&[u8]) -> usize) -> Vec<StoreState> {
        assert!(shards > 0, "split_by into 0 shards");
        let mut parts = vec![StoreState::new(); shards];
        for (client_id, s) in self.sessions {
            parts[hash(&client_id) % shards]
                .sessions
                .insert(client_id, s);
        }
        for (topic, r) in self.retained {
            parts[hash(&topic) % shards].retained.insert(topic, r);
        }
        parts
    }

    /// Moves everything of `other` into `self`. A client id or retained
    /// topic present in both (which cannot happen when both came from one
    /// consistent hash) keeps `self`'s entry.
    pub fn merge(&mut self, other: StoreState) {
        for (client_id, s) in other.sessions {
            self.sessions.entry(client_id).or_insert(s);
        }
        for (topic, r) in other.retained {
            self.retained.entry(topic).or_insert(r);
        }
    }

    /// One more than the largest msg id held (0 if none): where a shard's
    /// msg id counter resumes, also after a merge.
    pub fn next_msg_id(&self) -> u64 {
        self.sessions
            .values()
            .filter_map(|s| s.messages.keys().next_back())
            .max()
            .map_or(0, |&id| id.saturating_add(1))
    }

    /// Checks the invariants stated at the top of this file.
    #[cfg(test)]
    pub(crate) fn check(&self) {
        for s in self.sessions.values() {
            let from_messages: BTreeMap<u16, u64> = s
                .messages
                .iter()
                .filter_map(|(&id, m)| m.packet_id.map(|p| (p, id)))
                .collect();
            let in_flight = s
                .messages
                .values()
                .filter(|m| m.packet_id.is_some())
                .count();
            assert_eq!(from_messages.len(), in_flight, "a packet id held twice");
            assert_eq!(from_messages, s.in_flight);
            assert!(s
                .messages
                .values()
                .all(|m| !m.released || m.packet_id.is_some()));
            let mut released: Vec<u64> = s
                .messages
                .iter()
                .filter(|(_, m)| m.released)
                .map(|(&id, _)| id)
                .collect();
            let mut order = s.released_order.clone();
            order.sort_unstable();
            released.sort_unstable();
            assert_eq!(order, released, "released_order out of step");
        }
    }
}

/// Rebuilds a shard's state: the snapshot's good records, then the log's.
///
/// A damaged snapshot tail is reported and its good prefix used; the log
/// still applies on top (events about sessions the snapshot lost are
/// ignored, per [`StoreState::apply`]). The caller truncates the log to
/// `log_good_len`, warns with the file name and the tail's offset, and goes
/// on: a damaged tail never stops the broker.
pub fn recover(snapshot: &[u8], log: &[u8]) -> Recovered {
    let mut state = StoreState::new();
    let (_, snapshot_tail) = decode_each(snapshot, |e| state.apply(&e));
    let (log_good_len, log_tail) = decode_each(log, |e| state.apply(&e));
    Recovered {
        state,
        snapshot_tail,
        log_tail,
        log_good_len,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::decode_all;
    use crate::testgen;
    use proptest::prelude::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn replay<'a>(events: impl IntoIterator<Item = &'a Event>) -> StoreState {
        let mut state = StoreState::new();
        for e in events {
            state.apply(e);
            state.check();
        }
        state
    }

    fn put(client: &str, expiry_secs: u32, will_delay_secs: u32) -> Event {
        Event::SessionPut {
            client_id: b(client),
            username: Some(b("user")),
            protocol: 5,
            expiry_secs,
            will: Some(WillRecord {
                topic: b("will"),
                payload: b("bye"),
                qos: 1,
                retain: false,
                properties: Bytes::new(),
            }),
            will_delay_secs,
        }
    }

    fn left(client: &str, at_unix_ms: u64) -> Event {
        Event::SessionLeft {
            client_id: b(client),
            at_unix_ms,
        }
    }

    fn queued(client: &str, msg_id: u64, expires_at_unix_ms: Option<u64>) -> Event {
        Event::MessageQueued {
            client_id: b(client),
            msg_id,
            topic: b("t"),
            payload: b("p"),
            qos: 2,
            retain: false,
            properties: Bytes::new(),
            expires_at_unix_ms,
        }
    }

    fn sent(client: &str, msg_id: u64, packet_id: u16) -> Event {
        Event::MessageSent {
            client_id: b(client),
            msg_id,
            packet_id,
        }
    }

    fn sub(client: &str, filter: &str) -> Event {
        Event::SubscriptionPut {
            client_id: b(client),
            filter: b(filter),
            options: 1,
            id: 7,
        }
    }

    #[test]
    fn resume_keeps_subscriptions_and_messages() {
        let mut state = replay(&[
            put("c", 60, 0),
            sub("c", "a/#"),
            queued("c", 1, None),
            sent("c", 1, 9),
            left("c", 1000),
        ]);
        assert_eq!(state.sessions[&b("c")].username, Some(b("user")));
        state.apply(&Event::SessionPut {
            client_id: b("c"),
            username: None,
            protocol: 4,
            expiry_secs: u32::MAX,
            will: None,
            will_delay_secs: 0,
        });
        let s = &state.sessions[&b("c")];
        assert_eq!(
            (
                s.username.clone(),
                s.protocol,
                s.expiry_secs,
                s.will.clone()
            ),
            (None, 4, u32::MAX, None)
        );
        assert_eq!(s.left_at_unix_ms, None);
        assert_eq!(s.subscriptions[&b("a/#")], (1, 7));
        assert_eq!(s.messages[&1].packet_id, Some(9));
        assert_eq!(s.in_flight(9), Some(1));
    }

    #[test]
    fn session_gone_drops_everything_and_later_events_are_ignored() {
        let state = replay(&[
            put("c", 60, 0),
            sub("c", "a"),
            queued("c", 1, None),
            Event::SessionGone { client_id: b("c") },
            sub("c", "b"),
            queued("c", 2, None),
            sent("c", 2, 1),
            left("c", 5),
            Event::InboundPending {
                client_id: b("c"),
                packet_id: 3,
            },
        ]);
        assert_eq!(state, StoreState::new());
    }

    #[test]
    fn packet_id_flow_qos2() {
        let mut state = replay(&[put("c", 60, 0), queued("c", 1, None), sent("c", 1, 4)]);
        let released = Event::MessageReleased {
            client_id: b("c"),
            packet_id: 4,
        };
        state.apply(&released);
        assert!(state.sessions[&b("c")].messages[&1].released);
        // Unknown packet ids change nothing.
        let before = state.clone();
        state.apply(&Event::MessageDone {
            client_id: b("c"),
            packet_id: 5,
        });
        assert_eq!(state, before);
        state.apply(&Event::MessageDone {
            client_id: b("c"),
            packet_id: 4,
        });
        assert!(state.sessions[&b("c")].messages.is_empty());
        assert_eq!(state.sessions[&b("c")].in_flight(4), None);
    }

    #[test]
    fn a_reused_packet_id_sends_the_old_holder_back_to_the_queue() {
        let state = replay(&[
            put("c", 60, 0),
            queued("c", 1, None),
            queued("c", 2, None),
            sent("c", 1, 4),
            Event::MessageReleased {
                client_id: b("c"),
                packet_id: 4,
            },
            sent("c", 2, 4),
        ]);
        let s = &state.sessions[&b("c")];
        assert_eq!(
            (s.messages[&1].packet_id, s.messages[&1].released),
            (None, false)
        );
        assert_eq!(s.messages[&2].packet_id, Some(4));
        assert_eq!(s.in_flight(4), Some(2));
    }

    #[test]
    fn duplicate_msg_id_keeps_the_first() {
        let mut other = queued("c", 1, None);
        if let Event::MessageQueued { payload, .. } = &mut other {
            *payload = b("other");
        }
        let state = replay(&[put("c", 60, 0), queued("c", 1, None), other]);
        assert_eq!(state.sessions[&b("c")].messages[&1].payload, b("p"));
    }

    #[test]
    fn keys_do_not_pin_the_record_buffer() {
        let mut buf = Vec::new();
        encode(&put("c", 60, 0), &mut buf);
        let events = decode_all(&buf).events;
        let state = replay(&events);
        let Event::SessionPut {
            client_id,
            username: Some(username),
            ..
        } = &events[0]
        else {
            unreachable!()
        };
        let (key, s) = state.sessions.iter().next().unwrap();
        assert_ne!(key.as_ptr(), client_id.as_ptr());
        let kept = s.username.as_ref().unwrap();
        assert_eq!(kept, username);
        assert_ne!(kept.as_ptr(), username.as_ptr());
    }

    #[test]
    fn snapshot_order_is_as_documented() {
        let state = replay(&[
            put("c", 60, 0),
            left("c", 10),
            sub("c", "a"),
            queued("c", 1, None),
            sent("c", 1, 4),
            Event::MessageReleased {
                client_id: b("c"),
                packet_id: 4,
            },
            Event::InboundPending {
                client_id: b("c"),
                packet_id: 2,
            },
            Event::RetainedPut {
                topic: b("r"),
                payload: b("x"),
                qos: 0,
                properties: Bytes::new(),
                expires_at_unix_ms: None,
            },
        ]);
        let kinds: Vec<u8> = state.events().map(|e| e.kind()).collect();
        assert_eq!(kinds, [1, 2, 4, 6, 7, 8, 11, 13]);
    }

    #[test]
    fn usernames_survive_a_snapshot_and_expiry() {
        let anonymous = |client: &str| match put(client, 100, 5) {
            Event::SessionPut {
                client_id,
                protocol,
                expiry_secs,
                will,
                will_delay_secs,
                ..
            } => Event::SessionPut {
                client_id,
                username: None,
                protocol,
                expiry_secs,
                will,
                will_delay_secs,
            },
            _ => unreachable!(),
        };
        let mut state = replay(&[
            put("named", 100, 5),
            left("named", 0),
            anonymous("anon"),
            left("anon", 0),
        ]);
        let mut buf = Vec::new();
        state.snapshot(&mut buf);
        let replayed = replay(&decode_all(&buf).events);
        assert_eq!(replayed, state);
        assert_eq!(replayed.sessions[&b("named")].username, Some(b("user")));
        assert_eq!(replayed.sessions[&b("anon")].username, None);
        // A will that comes due is recorded by a SessionPut: it keeps the
        // username.
        let before = state.clone();
        let expiry = state.expire(5_000);
        assert_eq!(expiry.expired.len(), 2);
        assert_eq!(state.sessions[&b("named")].username, Some(b("user")));
        assert_eq!(state.sessions[&b("anon")].username, None);
        let mut again = before;
        for e in &expiry.events {
            again.apply(e);
        }
        assert_eq!(again, state);
    }

    #[test]
    fn expire_ends_sessions_and_publishes_wills() {
        let mut state = replay(&[
            // Ends at 11_000 with its will (delay 100 s, but the end is first).
            put("ends", 10, 100),
            left("ends", 1000),
            // Lives until 101_000; its will is due at 6_000.
            put("will", 100, 5),
            left("will", 1000),
            // Never ends; its will is not due until 1_001_000.
            put("never", u32::MAX, 1000),
            left("never", 1000),
            // Connected: nothing happens to it.
            put("here", 0, 0),
        ]);
        let before = state.clone();
        assert_eq!(state.expire(5_999), Expiry::default());
        let expiry = state.expire(11_000);
        let will = before.sessions[&b("ends")].will.clone();
        assert_eq!(
            expiry.expired,
            [
                Expired {
                    client_id: b("ends"),
                    will: will.clone(),
                    session_ended: true
                },
                Expired {
                    client_id: b("will"),
                    will,
                    session_ended: false
                },
            ]
        );
        assert!(!state.sessions.contains_key(&b("ends")));
        assert_eq!(state.sessions[&b("will")].will, None);
        assert_eq!(state.sessions[&b("will")].left_at_unix_ms, Some(1000));
        let mut replayed = before;
        for e in &expiry.events {
            replayed.apply(e);
        }
        assert_eq!(replayed, state);
        // Nothing more is due, and "never" outlives any clock.
        assert_eq!(state.expire(11_000), Expiry::default());
        state.expire(u64::MAX);
        assert_eq!(
            state.sessions.keys().collect::<Vec<_>>(),
            [&b("here"), &b("never")]
        );
    }

    #[test]
    fn expire_drops_queued_messages_but_not_in_flight_ones() {
        let retained = |topic: &str, at: Option<u64>| Event::RetainedPut {
            topic: b(topic),
            payload: b("x"),
            qos: 1,
            properties: Bytes::new(),
            expires_at_unix_ms: at,
        };
        let mut state = replay(&[
            put("c", u32::MAX, 0),
            queued("c", 1, Some(50)),
            queued("c", 2, Some(50)),
            sent("c", 2, 1),
            queued("c", 3, Some(51)),
            queued("c", 4, None),
            retained("old", Some(50)),
            retained("new", Some(51)),
            retained("forever", None),
        ]);
        let expiry = state.expire(50);
        assert!(expiry.expired.is_empty());
        let s = &state.sessions[&b("c")];
        assert_eq!(s.messages.keys().copied().collect::<Vec<_>>(), [2, 3, 4]);
        assert_eq!(
            state.retained.keys().collect::<Vec<_>>(),
            [&b("forever"), &b("new")]
        );
        assert_eq!(
            expiry.events,
            [
                Event::MessageDropped {
                    client_id: b("c"),
                    msg_id: 1
                },
                Event::RetainedGone { topic: b("old") },
            ]
        );
    }

    #[test]
    fn leave_all_marks_connected_sessions() {
        let mut state = replay(&[put("a", 60, 0), put("b", 60, 0), left("b", 5)]);
        let before = state.clone();
        let events = state.leave_all(100);
        assert_eq!(events, [left("a", 100)]);
        assert_eq!(state.sessions[&b("b")].left_at_unix_ms, Some(5));
        assert_eq!(
            replay(before.events().collect::<Vec<_>>().iter().chain(&events)),
            state
        );
    }

    #[test]
    fn split_and_merge() {
        let state = replay(&[
            put("a", 60, 0),
            put("b", 60, 0),
            queued("b", 41, None),
            Event::RetainedPut {
                topic: b("a"),
                payload: b("x"),
                qos: 1,
                properties: Bytes::new(),
                expires_at_unix_ms: None,
            },
        ]);
        let hash = |k: &[u8]| usize::from(k[0]);
        let parts = state.clone().split_by(2, hash);
        assert_eq!(parts[1].sessions.keys().collect::<Vec<_>>(), [&b("a")]);
        assert_eq!(parts[1].retained.keys().collect::<Vec<_>>(), [&b("a")]);
        assert_eq!(parts[0].sessions.keys().collect::<Vec<_>>(), [&b("b")]);
        assert_eq!(parts[0].next_msg_id(), 42);
        assert_eq!(parts[1].next_msg_id(), 0);
        let mut merged = StoreState::new();
        for p in parts {
            merged.merge(p);
        }
        assert_eq!(merged, state);
    }

    #[test]
    fn recover_reports_both_tails() {
        let mut snapshot = Vec::new();
        encode(&put("a", 60, 0), &mut snapshot);
        let snapshot_len = snapshot.len();
        snapshot.extend_from_slice(&[1, 2, 3]);
        let mut log = Vec::new();
        encode(&sub("a", "x"), &mut log);
        let log_len = log.len();
        encode(&sub("a", "y"), &mut log);
        log.truncate(log.len() - 1);
        let r = recover(&snapshot, &log);
        assert_eq!(
            r.snapshot_tail,
            Tail::Torn {
                offset: snapshot_len
            }
        );
        assert_eq!(r.log_tail, Tail::Torn { offset: log_len });
        assert_eq!(r.log_good_len, log_len);
        assert_eq!(r.state, replay(&[put("a", 60, 0), sub("a", "x")]));
    }

    proptest! {
        #[test]
        fn snapshot_then_replay_is_equal(
            events in proptest::collection::vec(testgen::event(), 0..80),
        ) {
            let state = replay(&events);
            let mut buf = Vec::new();
            state.snapshot(&mut buf);
            let d = decode_all(&buf);
            prop_assert_eq!(d.tail, Tail::Clean);
            prop_assert_eq!(replay(&d.events), state);
        }

        #[test]
        fn recover_is_snapshot_events_then_log_events(
            before in proptest::collection::vec(testgen::event(), 0..60),
            after in proptest::collection::vec(testgen::event(), 0..60),
            cut in any::<proptest::sample::Index>(),
        ) {
            let mut snapshot = Vec::new();
            replay(&before).snapshot(&mut snapshot);
            let mut log = Vec::new();
            let mut ends = vec![0];
            for e in &after {
                encode(e, &mut log);
                ends.push(log.len());
            }
            // Cut the log anywhere: recovery keeps the whole records before it.
            let cut = cut.index(log.len() + 1);
            let whole = ends.iter().rposition(|&o| o <= cut).unwrap_or(0);
            let r = recover(&snapshot, &log[..cut]);
            let expected = replay(decode_all(&snapshot).events.iter().chain(&after[..whole]));
            prop_assert_eq!(r.snapshot_tail, Tail::Clean);
            prop_assert_eq!(r.log_good_len, ends[whole]);
            prop_assert_eq!(r.state, expected);
        }

        #[test]
        fn expire_events_reproduce_the_expired_state(
            events in proptest::collection::vec(testgen::event(), 0..80),
            now in 0u64..300_000,
        ) {
            let mut state = replay(&events);
            let before = state.clone();
            let expiry = state.expire(now);
            state.check();
            let mut replayed = before;
            for e in &expiry.events {
                replayed.apply(e);
            }
            prop_assert_eq!(replayed, state.clone());
            // Expiry is idempotent.
            prop_assert_eq!(state.expire(now), Expiry::default());
        }

        #[test]
        fn split_then_merge_is_the_identity(
            events in proptest::collection::vec(testgen::event(), 0..80),
            shards in 1usize..5,
        ) {
            let state = replay(&events);
            let hash = |k: &[u8]| k.iter().map(|&b| usize::from(b)).sum::<usize>();
            let parts = state.clone().split_by(shards, hash);
            prop_assert_eq!(parts.len(), shards);
            for (i, p) in parts.iter().enumerate() {
                prop_assert!(p.sessions.keys().all(|k| hash(k) % shards == i));
                prop_assert!(p.retained.keys().all(|k| hash(k) % shards == i));
            }
            let mut merged = StoreState::new();
            for p in parts {
                merged.merge(p);
            }
            prop_assert_eq!(merged, state);
        }
    }
}
