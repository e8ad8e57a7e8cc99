//! What nodes say to each other when a client id moves between them: the
//! directory's keys and values, the take-over request a claiming node
//! sends the owner, and the owner's reply carrying the session.
//!
//! ```text
//! directory key:   hex(client id)                (KV keys are [-/_=.A-Za-z0-9])
//! directory value: node id, b'\n', epoch in decimal
//! request:         [flags: u8] [user length: u16 LE, user, if flags bit 1] [client id]
//!                  flags bit 0: the new CONNECT's Clean Start; bit 1: it names a user
//! reply:           [held: u8] [session records]  held 1: the owner held it (and let it go),
//!                                                0: it does not hold it, 2: it keeps it
//!                                                (the user may not take it over)
//! ```
//!
//! The session travels as the store's own records (`ringmq-store`, each
//! with its length and CRC-32C), so a node reads it with the code that
//! reads its disk. A session too big for one NATS message loses its
//! queued messages (not those in flight) from the newest down until it
//! fits; [`reply`] says how many.
//!
//! Invariants (tests below): every body decodes to what was encoded, no
//! input makes a decoder panic, and a reply is never longer than asked.

use std::collections::BTreeMap;
use std::fmt::Write;

use bytes::Bytes;
use ringmq_store::{decode_all, encode, SessionState, StoreState, Tail};

use crate::directory::Owner;

/// The directory key of `client_id`.
pub fn key(client_id: &[u8]) -> String {
    let mut out = String::with_capacity(2 * client_id.len().max(1) + 1);
    // `c` keeps the empty id a valid (non-empty) key.
    out.push('c');
    for b in client_id {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// The directory value naming `owner`.
pub fn owner_value(owner: &Owner) -> Vec<u8> {
    format!("{}\n{}", owner.node, owner.epoch).into_bytes()
}

/// The owner a directory value names, if it is one [`owner_value`] wrote.
pub fn owner_of(value: &[u8]) -> Option<Owner> {
    let text = std::str::from_utf8(value).ok()?;
    let (node, epoch) = text.rsplit_once('\n')?;
    Some(Owner {
        node: node.to_string(),
        epoch: epoch.parse().ok()?,
    })
}

/// A take-over request, as [`read_request`] reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request<'a> {
    /// The id to hand over.
    pub client_id: &'a [u8],
    /// The new CONNECT's Clean Start.
    pub clean_start: bool,
    /// The new CONNECT's user name (for `--takeover-same-user-only`).
    pub username: Option<&'a [u8]>,
}

/// The take-over request for `r` (a user name longer than 65,535 bytes,
/// which MQTT does not allow, is cut).
pub fn request(r: &Request<'_>) -> Vec<u8> {
    let user = r.username.map(|u| &u[..u.len().min(usize::from(u16::MAX))]);
    let mut out = Vec::with_capacity(3 + user.map_or(0, <[u8]>::len) + r.client_id.len());
    out.push(u8::from(r.clean_start) | if user.is_some() { 2 } else { 0 });
    if let Some(user) = user {
        out.extend_from_slice(&(user.len() as u16).to_le_bytes());
        out.extend_from_slice(user);
    }
    out.extend_from_slice(r.client_id);
    out
}

/// The request a body holds, if it is one [`request`] wrote.
pub fn read_request(body: &[u8]) -> Option<Request<'_>> {
    let (&flags, rest) = body.split_first()?;
    if flags > 3 {
        return None;
    }
    let (username, client_id) = if flags & 2 != 0 {
        let len = usize::from(u16::from_le_bytes(rest.get(..2)?.try_into().ok()?));
        (Some(rest.get(2..2 + len)?), rest.get(2 + len..)?)
    } else {
        (None, rest)
    };
    Some(Request {
        client_id,
        clean_start: flags & 1 != 0,
        username,
    })
}

/// The owner's answer when it keeps the id (the user may not take it).
pub fn denied() -> Vec<u8> {
    vec![2]
}

/// What a reply says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// The owner does not hold the id.
    NotHeld,
    /// The owner let it go, with the session that lives on, if any.
    HandedOver(Option<Box<(Bytes, SessionState)>>),
    /// The owner keeps it: the new connection's user may not take it over.
    Denied,
}

/// The owner's reply: whether it held the id and the session it let go,
/// at most `max_len` bytes (at least 1); returns it with the number of
/// queued messages left out to fit.
pub fn reply(held: Option<(&Bytes, SessionState)>, max_len: usize) -> (Vec<u8>, usize) {
    let Some((client_id, session)) = held else {
        return (vec![0], 0);
    };
    let mut out = vec![1];
    let dropped = records_fitting(client_id, session, max_len.max(1), &mut out);
    (out, dropped)
}

/// Appends `session`'s records to `out` while `out` stays within
/// `max_len`: the newest queued messages are left out first (those in
/// flight stay: their packet ids are the client's); a session that does
/// not fit even then is left out whole. Returns the messages left out.
fn records_fitting(
    client_id: &Bytes,
    mut session: SessionState,
    max_len: usize,
    out: &mut Vec<u8>,
) -> usize {
    let start = out.len();
    let mut dropped = 0;
    loop {
        out.truncate(start);
        for event in session.events(client_id) {
            encode(&event, out);
        }
        if out.len() <= max_len {
            return dropped;
        }
        let newest_queued = session
            .messages
            .iter()
            .rev()
            .find(|(_, m)| m.packet_id.is_none())
            .map(|(&id, _)| id);
        match newest_queued {
            Some(id) => {
                session.messages.remove(&id);
                dropped += 1;
            }
            None => {
                out.truncate(start);
                return dropped + session.messages.len();
            }
        }
    }
}

/// The sessions bucket's key of `client_id`'s session held by `node`
/// (`{hex(node)}.{hex(client id)}`: a node's sessions share a prefix).
pub fn session_key(node: &str, client_id: &[u8]) -> String {
    format!("{}.{}", key(node.as_bytes()), key(client_id))
}

/// The prefix of every key [`session_key`] makes for `node`.
pub fn session_key_prefix(node: &str) -> String {
    format!("{}.", key(node.as_bytes()))
}

/// A session as the sessions bucket keeps it, at most `max_len` bytes:
/// `[node length: u16 LE][node][records]`. Returns it with the queued
/// messages left out to fit (and `None` when not even the session's
/// header fits).
pub fn stored(
    node: &str,
    client_id: &Bytes,
    session: SessionState,
    max_len: usize,
) -> Option<(Vec<u8>, usize)> {
    let len = u16::try_from(node.len()).ok()?;
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(node.as_bytes());
    let head = out.len();
    let dropped = records_fitting(client_id, session, max_len, &mut out);
    (out.len() > head).then_some((out, dropped))
}

/// The node, client id and session of a value [`stored`] wrote.
pub fn read_stored(value: &[u8]) -> Option<(String, Bytes, SessionState)> {
    let len = usize::from(u16::from_le_bytes(value.get(..2)?.try_into().ok()?));
    let node = std::str::from_utf8(value.get(2..2 + len)?).ok()?;
    let (id, session) = one_session(value.get(2 + len..)?)?;
    Some((node.to_string(), id, session))
}

/// The one session `records` hold, and nothing else.
fn one_session(records: &[u8]) -> Option<(Bytes, SessionState)> {
    let decoded = decode_all(records);
    if decoded.tail != Tail::Clean {
        return None;
    }
    let mut state = StoreState::new();
    for event in &decoded.events {
        state.apply(event);
    }
    let mut sessions: BTreeMap<Bytes, SessionState> = state.sessions;
    if sessions.len() != 1 || !state.retained.is_empty() {
        return None;
    }
    sessions.pop_first()
}

/// What a reply says; `None` for a body that is not one.
pub fn read_reply(body: &[u8]) -> Option<Reply> {
    let (&held, records) = body.split_first()?;
    match held {
        0 if records.is_empty() => Some(Reply::NotHeld),
        1 if records.is_empty() => Some(Reply::HandedOver(None)),
        1 => Some(Reply::HandedOver(Some(Box::new(one_session(records)?)))),
        2 if records.is_empty() => Some(Reply::Denied),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use ringmq_store::Event;

    fn session(messages: usize, payload: usize) -> (Bytes, SessionState) {
        let id = Bytes::from_static(b"dev-1");
        let mut state = StoreState::new();
        state.apply(&Event::SessionPut {
            client_id: id.clone(),
            username: None,
            protocol: 5,
            expiry_secs: 3600,
            will: None,
            will_delay_secs: 0,
        });
        state.apply(&Event::SubscriptionPut {
            client_id: id.clone(),
            filter: Bytes::from_static(b"a/#"),
            options: 1,
            id: 7,
        });
        for m in 0..messages as u64 {
            state.apply(&Event::MessageQueued {
                client_id: id.clone(),
                msg_id: m + 1,
                topic: Bytes::from_static(b"a/b"),
                payload: Bytes::from(vec![m as u8; payload]),
                qos: 1,
                retain: false,
                properties: Bytes::new(),
                expires_at_unix_ms: None,
            });
        }
        if messages > 0 {
            state.apply(&Event::MessageSent {
                client_id: id.clone(),
                msg_id: 1,
                packet_id: 9,
            });
        }
        let s = state.sessions.remove(&id).unwrap();
        (id, s)
    }

    #[test]
    fn keys_and_values_round_trip() {
        assert_eq!(key(b""), "c");
        assert_eq!(key(b"A/b"), "c412f62");
        assert_ne!(key(b"ab"), key(b"a"));
        let owner = Owner {
            node: "node\n1".into(),
            epoch: 42,
        };
        assert_eq!(owner_of(&owner_value(&owner)), Some(owner));
        assert_eq!(owner_of(b"no epoch"), None);
        for r in [
            Request {
                client_id: b"id",
                clean_start: true,
                username: None,
            },
            Request {
                client_id: b"",
                clean_start: false,
                username: Some(b"alice"),
            },
            Request {
                client_id: b"x",
                clean_start: true,
                username: Some(b""),
            },
        ] {
            assert_eq!(read_request(&request(&r)), Some(r));
        }
        assert_eq!(read_request(&[4, b'x']), None);
        assert_eq!(
            read_request(&[2, 9, 0, b'x']),
            None,
            "user longer than the body"
        );
        assert_eq!(read_reply(&denied()), Some(Reply::Denied));
    }

    #[test]
    fn a_session_travels_whole_when_it_fits() {
        let (id, s) = session(3, 10);
        let (body, dropped) = reply(Some((&id, s.clone())), 1 << 20);
        assert_eq!(dropped, 0);
        assert_eq!(
            read_reply(&body),
            Some(Reply::HandedOver(Some(Box::new((id, s)))))
        );
        assert_eq!(read_reply(&reply(None, 10).0), Some(Reply::NotHeld));
    }

    #[test]
    fn a_session_too_big_loses_its_newest_queued_messages() {
        let (id, s) = session(10, 1000);
        let (body, dropped) = reply(Some((&id, s.clone())), 5000);
        assert!(body.len() <= 5000);
        assert!(dropped >= 6, "{dropped}");
        let Some(Reply::HandedOver(Some(moved))) = read_reply(&body) else {
            panic!("no session");
        };
        let (_, got) = *moved;
        // The one in flight and the oldest queued stay, in order.
        let ids: Vec<u64> = got.messages.keys().copied().collect();
        assert_eq!(ids, (1..=(10 - dropped as u64)).collect::<Vec<_>>());
        assert_eq!(got.messages[&1].packet_id, Some(9));
        assert_eq!(got.subscriptions, s.subscriptions);
        // Too small for anything: the id alone.
        let (body, _) = reply(Some((&id, s)), 1);
        assert_eq!(read_reply(&body), Some(Reply::HandedOver(None)));
    }

    #[test]
    fn a_stored_session_names_its_node_and_fits() {
        let (id, s) = session(10, 1000);
        let (value, dropped) = stored("node-a", &id, s.clone(), 1 << 20).unwrap();
        assert_eq!(dropped, 0);
        assert_eq!(
            read_stored(&value),
            Some(("node-a".into(), id.clone(), s.clone()))
        );
        let (value, dropped) = stored("node-a", &id, s.clone(), 4000).unwrap();
        assert!(value.len() <= 4000 && dropped > 0);
        assert!(stored("node-a", &id, s, 10).is_none());
        assert!(session_key("a", b"x").starts_with(&session_key_prefix("a")));
        assert!(!session_key("ab", b"x").starts_with(&session_key_prefix("a")));
    }

    proptest! {
        #[test]
        fn no_reply_makes_the_reader_panic(body in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = read_reply(&body);
            let _ = read_request(&body);
            let _ = owner_of(&body);
            let _ = read_stored(&body);
        }
    }
}
