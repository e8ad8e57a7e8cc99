//! One shard's partition of the retained messages (the topics
//! [`crate::owner_shard`] gives it), in a topic-level tree, and the Retain
//! Handling rule for new subscriptions.
//!
//! The tree has one node per topic level; a node holds the retained
//! message of the topic ending there, if any. A query walks the tree with
//! the filter: a plain filter is one lookup per level, `+` visits the
//! children of one node, `#` visits one subtree; nothing scans the store.
//!
//! Invariants:
//! - nodes live in an arena (`Vec`) and link by index, so dropping the
//!   store never recurses, and every walk keeps its own explicit stack: a
//!   topic may have tens of thousands of levels;
//! - every node but the root holds a message or leads to one: clearing or
//!   expiring a message prunes the nodes it leaves empty at once;
//! - `len` is the number of messages stored and never exceeds `capacity`;
//! - a stored message owns its bytes (copied out of the caller's buffer,
//!   so a read arena is never pinned by a long-lived message) and keeps
//!   only the properties that travel with it.
//!
//! Expiry is lazy: a message past its `expires_at` is removed when a query
//! reaches it, never returned.

use std::fmt;

use bytes::Bytes;
use hashbrown::HashMap;
use ringmq_codec::{Properties, QoS, RetainHandling};
use ringmq_session::Tick;

/// One stored retained message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetainedMessage {
    /// The topic name (owned copy).
    pub topic: Bytes,
    /// The payload (owned copy, never empty).
    pub payload: Bytes,
    /// The QoS it was published with.
    pub qos: QoS,
    /// The properties kept with it, `None` when there are none.
    pub properties: Option<Box<Properties>>,
    /// When it expires (its Message Expiry Interval), if ever.
    pub expires_at: Option<Tick>,
}

/// What [`RetainedStore::store`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum StoreOutcome {
    /// A message was stored for a topic that had none.
    Stored,
    /// The topic's previous message was replaced.
    Replaced,
    /// The empty payload cleared the topic (whether or not it had one).
    Cleared,
    /// A new topic, but the store is at capacity: not stored.
    Full,
    /// Storing it would take the store past its byte budget: not stored
    /// (the topic's previous message, if any, is kept).
    FullBytes,
}

/// Whether a new subscription gets retained messages (MQTT-3.3.1-9/-10/-11,
/// 3.8.3.1 Retain Handling 0/1/2); shared subscriptions never do (4.8.2).
pub fn wants_retained(handling: RetainHandling, is_new: bool, shared: bool) -> bool {
    if shared {
        return false;
    }
    match handling {
        // MQTT-3.3.1-9: 0 sends them at every subscribe.
        RetainHandling::SendAtSubscribe => true,
        // MQTT-3.3.1-10: 1 only when the subscription did not exist.
        RetainHandling::SendAtSubscribeIfNew => is_new,
        // MQTT-3.3.1-11: 2 never.
        RetainHandling::DoNotSend => false,
    }
}

/// The root's index in the arena.
const ROOT: usize = 0;

/// Marks "no filter levels left" in a filter position.
const END: usize = usize::MAX;

/// The level of `filter` at byte `pos` and where the next one starts
/// (`END` after the last). `None` once `pos` is `END`.
fn level_at(filter: &str, pos: usize) -> Option<(&str, usize)> {
    let rest = filter.get(pos..)?;
    Some(match rest.find('/') {
        Some(i) => (&rest[..i], pos + i + 1),
        None => (rest, END),
    })
}

/// The levels of a topic name.
fn topic_levels(topic: &[u8]) -> impl DoubleEndedIterator<Item = &[u8]> {
    topic.split(|&b| b == b'/')
}

#[derive(Default)]
struct Node {
    /// The parent's index (unused for the root and free slots).
    parent: usize,
    /// Next level -> node index.
    children: HashMap<Box<[u8]>, usize>,
    /// The retained message of the topic ending here.
    message: Option<Box<RetainedMessage>>,
}

/// One step of a query walk.
#[derive(Clone, Copy)]
enum Visit {
    /// Match the filter from byte `pos` against `node`'s children.
    Match { node: usize, pos: usize },
    /// Everything in `node`'s subtree matches (`#`).
    Subtree(usize),
}

/// topic -> retained message for the topics one shard owns.
pub struct RetainedStore {
    /// The arena; `nodes[ROOT]` is the root, which never holds a message.
    nodes: Vec<Node>,
    /// Free arena slots.
    free: Vec<usize>,
    len: usize,
    capacity: usize,
    /// Bytes the stored messages hold (see `message_bytes`).
    bytes: usize,
    max_bytes: usize,
    /// Reused by `matching`.
    stack: Vec<Visit>,
    /// Reused by `matching`: nodes whose message expired.
    expired: Vec<usize>,
}

impl fmt::Debug for RetainedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetainedStore")
            .field("len", &self.len)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

/// The properties a retained message keeps, copied out of the caller's
/// buffer. Not Topic Alias (a connection's own), not Subscription
/// Identifiers (a subscriber's own), not Message Expiry Interval (kept as
/// `expires_at`, and rewritten with the time left on delivery,
/// MQTT-3.3.2-6).
fn kept_properties(p: &Properties) -> Option<Box<Properties>> {
    let kept = Properties {
        message_expiry_interval: None,
        ..ringmq_session::owned_properties(p)
    };
    (!kept.is_empty()).then(|| Box::new(kept))
}

/// What one stored message costs: its record, topic, payload and kept
/// properties, plus the topic again for the tree nodes on its path.
fn message_bytes(m: &RetainedMessage) -> usize {
    let properties = m
        .properties
        .as_deref()
        .map_or(0, |p| std::mem::size_of::<Properties>() + p.encoded_len());
    std::mem::size_of::<RetainedMessage>() + 2 * m.topic.len() + m.payload.len() + properties
}

impl RetainedStore {
    /// An empty store holding at most `capacity` messages.
    pub fn new(capacity: usize) -> Self {
        RetainedStore {
            nodes: vec![Node::default()],
            free: Vec::new(),
            len: 0,
            capacity,
            bytes: 0,
            max_bytes: usize::MAX,
            stack: Vec::new(),
            expired: Vec::new(),
        }
    }

    /// The same store, also bounded to `max_bytes` of stored messages.
    pub fn with_max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// Stores or replaces the topic's retained message; an empty payload
    /// clears it (3.1.1: MQTT-3.3.1-10/-11). Copies topic, payload and kept
    /// property Bytes into storage of their own (Bytes::copy_from_slice) so
    /// the caller's read buffer is not pinned. Kept properties:
    /// payload_format_indicator, content_type, response_topic,
    /// correlation_data, user_properties (not topic_alias, not
    /// subscription_identifiers, not message_expiry_interval: expiry is
    /// expires_at). A new topic beyond capacity -> Full (not stored).
    ///
    /// (MQTT 5.0 numbers these rules MQTT-3.3.1-5, -6 and -7.)
    pub fn store(
        &mut self,
        topic: &Bytes,
        payload: &Bytes,
        qos: QoS,
        properties: &Properties,
        expires_at: Option<Tick>,
    ) -> StoreOutcome {
        let existing = self.find(topic);
        if payload.is_empty() {
            // Remove the topic's message and never store an empty one
            // (3.1.1: MQTT-3.3.1-10, -11; 5.0: MQTT-3.3.1-6, -7).
            if let Some(node) = existing {
                if let Some(old) = self.nodes[node].message.take() {
                    self.len -= 1;
                    self.bytes -= message_bytes(&old);
                    self.prune(node, &old.topic);
                }
            }
            return StoreOutcome::Cleared;
        }
        let old_bytes = existing
            .and_then(|node| self.nodes[node].message.as_deref())
            .map(message_bytes);
        if old_bytes.is_none() && self.len >= self.capacity {
            return StoreOutcome::Full;
        }
        let message = Box::new(RetainedMessage {
            topic: Bytes::copy_from_slice(topic),
            payload: Bytes::copy_from_slice(payload),
            qos,
            properties: kept_properties(properties),
            expires_at,
        });
        let new_bytes = message_bytes(&message);
        if self.bytes - old_bytes.unwrap_or(0) + new_bytes > self.max_bytes {
            return StoreOutcome::FullBytes;
        }
        self.bytes = self.bytes - old_bytes.unwrap_or(0) + new_bytes;
        let node = match existing {
            Some(node) => node,
            None => self.create(topic),
        };
        // The new message replaces the old one (5.0: MQTT-3.3.1-5).
        if self.nodes[node].message.replace(message).is_some() {
            StoreOutcome::Replaced
        } else {
            self.len += 1;
            StoreOutcome::Stored
        }
    }

    /// Appends every live message matching `filter` (a plain topic or
    /// wildcard filter, MQTT 4.7 incl. MQTT-4.7.2-1: wildcards at the first
    /// level do not match `$` topics); expired ones (now > expires_at) are
    /// removed instead. Walks the topic tree: a plain filter is a lookup,
    /// `+` visits children of one level, `#` visits a subtree; never scans
    /// the whole store.
    ///
    /// Matching follows [`ringmq_topic::matches`] exactly, including on
    /// malformed filters (a `#` that is not last is compared literally).
    /// A shared filter must be refused by the caller first (4.8.2).
    pub fn matching(&mut self, filter: &str, now: Tick, out: &mut Vec<RetainedMessage>) {
        let mut stack = std::mem::take(&mut self.stack);
        let mut expired = std::mem::take(&mut self.expired);
        stack.clear();
        expired.clear();
        let mut emit = |node: &Node, at: usize| {
            if let Some(message) = &node.message {
                if message.expires_at.is_some_and(|deadline| now > deadline) {
                    expired.push(at);
                } else {
                    out.push((**message).clone());
                }
            }
        };
        stack.push(Visit::Match { node: ROOT, pos: 0 });
        while let Some(visit) = stack.pop() {
            match visit {
                Visit::Subtree(at) => {
                    let node = &self.nodes[at];
                    emit(node, at);
                    stack.extend(node.children.values().map(|&c| Visit::Subtree(c)));
                }
                Visit::Match { node: at, pos } => {
                    let node = &self.nodes[at];
                    let Some((level, next)) = level_at(filter, pos) else {
                        // The whole filter matched the path to this node.
                        emit(node, at);
                        continue;
                    };
                    // MQTT-4.7.2-1: a wildcard at the first level does not
                    // match a topic whose first level starts with '$'.
                    let first = at == ROOT;
                    let reachable = |child: &[u8]| !(first && child.starts_with(b"$"));
                    if level == "#" && next == END {
                        // A final '#' matches this level and everything
                        // below, so "a/#" also matches "a" (4.7.1.2).
                        if first {
                            stack.extend(
                                node.children
                                    .iter()
                                    .filter(|(l, _)| reachable(l))
                                    .map(|(_, &c)| Visit::Subtree(c)),
                            );
                        } else {
                            stack.push(Visit::Subtree(at));
                        }
                    } else if level == "+" {
                        stack.extend(
                            node.children
                                .iter()
                                .filter(|(l, _)| reachable(l))
                                .map(|(_, &c)| Visit::Match { node: c, pos: next }),
                        );
                    } else if let Some(&child) = node.children.get(level.as_bytes()) {
                        stack.push(Visit::Match {
                            node: child,
                            pos: next,
                        });
                    }
                }
            }
        }
        for &at in &expired {
            if let Some(old) = self.nodes[at].message.take() {
                self.len -= 1;
                self.bytes -= message_bytes(&old);
                self.prune(at, &old.topic);
            }
        }
        stack.clear();
        expired.clear();
        self.stack = stack;
        self.expired = expired;
    }

    /// Every stored message, in no particular order (expired ones
    /// included: they are dropped when a query meets them). For writing
    /// the store out whole (persistence snapshots).
    pub fn iter(&self) -> impl Iterator<Item = &RetainedMessage> + '_ {
        self.nodes.iter().filter_map(|n| n.message.as_deref())
    }

    /// Number of messages stored.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no message is stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The most messages the store holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes held by the stored messages (what `with_max_bytes` bounds).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The node of `topic`, if the tree has one.
    fn find(&self, topic: &[u8]) -> Option<usize> {
        let mut at = ROOT;
        for level in topic_levels(topic) {
            at = *self.nodes[at].children.get(level)?;
        }
        Some(at)
    }

    /// The node of `topic`, creating the missing path.
    fn create(&mut self, topic: &[u8]) -> usize {
        let mut at = ROOT;
        for level in topic_levels(topic) {
            at = match self.nodes[at].children.get(level) {
                Some(&child) => child,
                None => {
                    let child = self.alloc(at);
                    self.nodes[at].children.insert(level.into(), child);
                    child
                }
            };
        }
        at
    }

    fn alloc(&mut self, parent: usize) -> usize {
        let node = Node {
            parent,
            ..Node::default()
        };
        match self.free.pop() {
            Some(at) => {
                self.nodes[at] = node;
                at
            }
            None => {
                self.nodes.push(node);
                self.nodes.len() - 1
            }
        }
    }

    /// Frees the empty nodes from `at` (the node of `topic`) upwards.
    fn prune(&mut self, mut at: usize, topic: &[u8]) {
        // Walking up, the node's own level in its parent is the topic's
        // levels read backwards.
        for level in topic_levels(topic).rev() {
            let node = &self.nodes[at];
            if at == ROOT || node.message.is_some() || !node.children.is_empty() {
                return;
            }
            let parent = node.parent;
            let siblings = &mut self.nodes[parent].children;
            siblings.remove(level);
            if siblings.is_empty() {
                siblings.shrink_to_fit();
            }
            self.nodes[at] = Node::default();
            self.free.push(at);
            at = parent;
        }
    }

    /// Nodes in use below the root.
    #[cfg(test)]
    fn node_count(&self) -> usize {
        self.nodes.len() - self.free.len() - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iter_lists_every_stored_message_once() {
        let mut s = RetainedStore::new(10);
        let props = Properties::default();
        for t in ["a", "a/b", "$SYS/x", "c/d/e"] {
            let topic = Bytes::copy_from_slice(t.as_bytes());
            s.store(
                &topic,
                &Bytes::from_static(b"p"),
                QoS::AtMostOnce,
                &props,
                None,
            );
        }
        s.store(
            &Bytes::from_static(b"a/b"),
            &Bytes::new(),
            QoS::AtMostOnce,
            &props,
            None,
        );
        let mut topics: Vec<&[u8]> = s.iter().map(|m| &m.topic[..]).collect();
        topics.sort();
        assert_eq!(topics, [&b"$SYS/x"[..], b"a", b"c/d/e"]);
    }

    use proptest::prelude::*;
    use ringmq_topic::matches;
    use std::collections::BTreeMap;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn put(store: &mut RetainedStore, topic: &str, payload: &str) -> StoreOutcome {
        store.store(
            &b(topic),
            &b(payload),
            QoS::AtLeastOnce,
            &Properties::default(),
            None,
        )
    }

    /// (topic, payload) of every match, sorted.
    fn query(store: &mut RetainedStore, filter: &str, now: u64) -> Vec<(String, String)> {
        let mut out = Vec::new();
        store.matching(filter, Tick(now), &mut out);
        let mut got: Vec<(String, String)> = out
            .iter()
            .map(|m| {
                (
                    String::from_utf8(m.topic.to_vec()).unwrap(),
                    String::from_utf8(m.payload.to_vec()).unwrap(),
                )
            })
            .collect();
        got.sort();
        got
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(t, p)| (t.to_string(), p.to_string()))
            .collect()
    }

    #[test]
    fn the_byte_budget_bounds_what_is_stored() {
        let record = std::mem::size_of::<RetainedMessage>();
        // Room for two 100-byte messages on one-byte topics, not three.
        let mut store = RetainedStore::new(100).with_max_bytes(2 * (record + 102) + 50);
        let big = "x".repeat(100);
        assert_eq!(put(&mut store, "a", &big), StoreOutcome::Stored);
        assert_eq!(put(&mut store, "b", &big), StoreOutcome::Stored);
        assert_eq!(put(&mut store, "c", &big), StoreOutcome::FullBytes);
        assert_eq!(store.len(), 2);
        // Replacing by a larger message needs room too.
        assert_eq!(
            put(&mut store, "a", &"x".repeat(200)),
            StoreOutcome::FullBytes
        );
        // Clearing frees room; clearing all frees everything.
        assert_eq!(put(&mut store, "b", ""), StoreOutcome::Cleared);
        assert_eq!(put(&mut store, "c", &big), StoreOutcome::Stored);
        for t in ["a", "b", "c"] {
            assert_eq!(put(&mut store, t, ""), StoreOutcome::Cleared);
        }
        assert_eq!(store.bytes(), 0);
    }

    #[test]
    fn store_replace_clear() {
        let mut store = RetainedStore::new(10);
        assert!(store.is_empty());
        assert_eq!(put(&mut store, "a/b", "1"), StoreOutcome::Stored);
        assert_eq!(put(&mut store, "a/b", "2"), StoreOutcome::Replaced);
        assert_eq!(store.len(), 1);
        assert_eq!(query(&mut store, "a/b", 0), pairs(&[("a/b", "2")]));
        // An intermediate level is not a topic until something is stored.
        assert_eq!(query(&mut store, "a", 0), vec![]);
        assert_eq!(put(&mut store, "a", "p"), StoreOutcome::Stored);
        assert_eq!(store.node_count(), 2);
        assert_eq!(put(&mut store, "a/b", ""), StoreOutcome::Cleared);
        assert_eq!(query(&mut store, "a/b", 0), vec![]);
        assert_eq!(store.node_count(), 1, "a/b pruned, a kept");
        assert_eq!(put(&mut store, "a", ""), StoreOutcome::Cleared);
        // Clearing what is not there is still "cleared".
        assert_eq!(put(&mut store, "a", ""), StoreOutcome::Cleared);
        assert_eq!(put(&mut store, "x/y/z", ""), StoreOutcome::Cleared);
        assert!(store.is_empty());
        assert_eq!(store.node_count(), 0);
    }

    #[test]
    fn full_store_refuses_only_new_topics() {
        let mut store = RetainedStore::new(2);
        assert_eq!(put(&mut store, "a", "1"), StoreOutcome::Stored);
        assert_eq!(put(&mut store, "b/c", "1"), StoreOutcome::Stored);
        assert_eq!(put(&mut store, "b", "1"), StoreOutcome::Full);
        assert_eq!(put(&mut store, "d/e", "1"), StoreOutcome::Full);
        assert_eq!(store.node_count(), 3, "a refused topic leaves no nodes");
        assert_eq!(put(&mut store, "a", "2"), StoreOutcome::Replaced);
        assert_eq!(put(&mut store, "a", ""), StoreOutcome::Cleared);
        assert_eq!(put(&mut store, "d/e", "1"), StoreOutcome::Stored);
        assert_eq!(store.len(), 2);
        let mut none = RetainedStore::new(0);
        assert_eq!(put(&mut none, "a", "1"), StoreOutcome::Full);
        assert_eq!(put(&mut none, "a", ""), StoreOutcome::Cleared);
        assert_eq!(none.capacity(), 0);
    }

    #[test]
    fn wildcards_follow_the_topic_rules() {
        let mut store = RetainedStore::new(100);
        for topic in [
            "sport",
            "sport/tennis",
            "sport/tennis/player1",
            "sport/tennis/player1/ranking",
            "sport/golf",
            "/finance",
            "a//b",
            "$SYS/uptime",
            "$SYS/broker/load",
            "x/$y",
        ] {
            put(&mut store, topic, topic);
        }
        let topics = |filter: &str, store: &mut RetainedStore| {
            query(store, filter, 0)
                .into_iter()
                .map(|(t, _)| t)
                .collect::<Vec<_>>()
        };
        // 4.7.1.2: "sport/#" matches "sport" itself.
        assert_eq!(
            topics("sport/#", &mut store),
            vec![
                "sport",
                "sport/golf",
                "sport/tennis",
                "sport/tennis/player1",
                "sport/tennis/player1/ranking"
            ]
        );
        assert_eq!(
            topics("sport/tennis/player1/#", &mut store),
            vec!["sport/tennis/player1", "sport/tennis/player1/ranking"]
        );
        assert_eq!(
            topics("sport/+", &mut store),
            vec!["sport/golf", "sport/tennis"]
        );
        assert_eq!(topics("+", &mut store), vec!["sport"]);
        assert_eq!(
            topics("+/+", &mut store),
            vec!["/finance", "sport/golf", "sport/tennis", "x/$y"]
        );
        assert_eq!(topics("/+", &mut store), vec!["/finance"]);
        assert_eq!(topics("a/+/b", &mut store), vec!["a//b"]);
        assert_eq!(
            topics("sport/tennis/+/ranking", &mut store),
            vec!["sport/tennis/player1/ranking"]
        );
        // MQTT-4.7.2-1: no wildcard at the first level reaches $-topics...
        let all = topics("#", &mut store);
        assert_eq!(all.len(), 8);
        assert!(all.iter().all(|t| !t.starts_with('$')));
        assert!(topics("+/uptime", &mut store).is_empty());
        assert!(topics("+/#", &mut store)
            .iter()
            .all(|t| !t.starts_with('$')));
        // ...but a literal first level does, and '$' deeper is ordinary.
        assert_eq!(
            topics("$SYS/#", &mut store),
            vec!["$SYS/broker/load", "$SYS/uptime"]
        );
        assert_eq!(topics("$SYS/+", &mut store), vec!["$SYS/uptime"]);
        assert_eq!(topics("x/+", &mut store), vec!["x/$y"]);
        // Plain filters are lookups.
        assert_eq!(topics("sport/golf", &mut store), vec!["sport/golf"]);
        assert!(topics("sport/chess", &mut store).is_empty());
        assert!(topics("sport/golf/x", &mut store).is_empty());
    }

    #[test]
    fn expired_messages_are_removed_not_returned() {
        let mut store = RetainedStore::new(10);
        let none = Properties::default();
        store.store(
            &b("a/1"),
            &b("x"),
            QoS::AtMostOnce,
            &none,
            Some(Tick(1_000)),
        );
        store.store(
            &b("a/2"),
            &b("y"),
            QoS::AtMostOnce,
            &none,
            Some(Tick(5_000)),
        );
        store.store(
            &b("a/3/deep"),
            &b("z"),
            QoS::AtMostOnce,
            &none,
            Some(Tick(1_000)),
        );
        store.store(&b("a"), &b("w"), QoS::AtMostOnce, &none, None);
        // At the deadline itself a message is still alive.
        assert_eq!(query(&mut store, "a/#", 1_000).len(), 4);
        assert_eq!(store.len(), 4);
        // Past it: gone, and its empty nodes with it.
        assert_eq!(
            query(&mut store, "a/#", 1_001),
            pairs(&[("a", "w"), ("a/2", "y")])
        );
        assert_eq!(store.len(), 2);
        assert_eq!(store.node_count(), 2);
        // A query that does not reach a message leaves it alone.
        assert_eq!(query(&mut store, "b", 9_000), vec![]);
        assert_eq!(store.len(), 2);
        assert_eq!(query(&mut store, "a/2", 9_000), vec![]);
        assert_eq!(store.len(), 1);
        // An expired slot is free for a new topic again.
        let mut full = RetainedStore::new(1);
        full.store(&b("t"), &b("1"), QoS::AtMostOnce, &none, Some(Tick(10)));
        assert_eq!(put(&mut full, "u", "1"), StoreOutcome::Full);
        assert_eq!(query(&mut full, "#", 11), vec![]);
        assert_eq!(put(&mut full, "u", "1"), StoreOutcome::Stored);
    }

    #[test]
    fn stored_message_owns_its_bytes_and_keeps_only_travelling_properties() {
        let buffer = Bytes::from(b"topic/onehello-payload".to_vec());
        let topic = buffer.slice(0..9);
        let payload = buffer.slice(9..);
        let properties = Properties {
            payload_format_indicator: Some(1),
            message_expiry_interval: Some(60),
            content_type: Some(buffer.slice(0..5)),
            response_topic: Some(b("reply/here")),
            correlation_data: Some(b("corr")),
            subscription_identifiers: vec![4, 5],
            topic_alias: Some(3),
            user_properties: vec![(buffer.slice(0..2), buffer.slice(2..4))],
            ..Properties::default()
        };
        let mut store = RetainedStore::new(1);
        let outcome = store.store(
            &topic,
            &payload,
            QoS::ExactlyOnce,
            &properties,
            Some(Tick(7)),
        );
        assert_eq!(outcome, StoreOutcome::Stored);
        let mut out = Vec::new();
        store.matching("topic/one", Tick(0), &mut out);
        let message = out.pop().unwrap();
        let want = Properties {
            payload_format_indicator: Some(1),
            content_type: Some(b("topic")),
            response_topic: Some(b("reply/here")),
            correlation_data: Some(b("corr")),
            user_properties: vec![(b("to"), b("pi"))],
            ..Properties::default()
        };
        assert_eq!(
            message,
            RetainedMessage {
                topic: b("topic/one"),
                payload: b("hello-payload"),
                qos: QoS::ExactlyOnce,
                properties: Some(Box::new(want)),
                expires_at: Some(Tick(7)),
            }
        );
        // None of the stored bytes point into the caller's buffer.
        let inside = |x: &Bytes| buffer.as_ptr_range().contains(&x.as_ptr());
        let kept = message.properties.as_ref().unwrap();
        assert!(!inside(&message.topic));
        assert!(!inside(&message.payload));
        assert!(!inside(kept.content_type.as_ref().unwrap()));
        assert!(!inside(&kept.user_properties[0].0));
        // No properties worth keeping: nothing boxed.
        let bare = Properties {
            topic_alias: Some(1),
            message_expiry_interval: Some(5),
            ..Properties::default()
        };
        store.store(&topic, &payload, QoS::AtMostOnce, &bare, None);
        store.matching("topic/one", Tick(0), &mut out);
        assert_eq!(out[0].properties, None);
    }

    #[test]
    fn retain_handling_table() {
        use RetainHandling::*;
        let table = [
            (SendAtSubscribe, true, false, true),
            (SendAtSubscribe, false, false, true),
            (SendAtSubscribeIfNew, true, false, true),
            (SendAtSubscribeIfNew, false, false, false),
            (DoNotSend, true, false, false),
            (DoNotSend, false, false, false),
            (SendAtSubscribe, true, true, false),
            (SendAtSubscribeIfNew, true, true, false),
            (DoNotSend, true, true, false),
        ];
        for (handling, is_new, shared, want) in table {
            assert_eq!(
                wants_retained(handling, is_new, shared),
                want,
                "{handling:?} new={is_new} shared={shared}"
            );
        }
    }

    #[test]
    fn deep_topics_do_not_overflow_the_stack() {
        // 32,768 levels: the most a 65,535-byte topic can have.
        let deep = "a/".repeat(32_767) + "a";
        let empty_levels = "/".repeat(32_767);
        std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || {
                let mut store = RetainedStore::new(10);
                assert_eq!(put(&mut store, &deep, "d"), StoreOutcome::Stored);
                assert_eq!(put(&mut store, &empty_levels, "e"), StoreOutcome::Stored);
                assert_eq!(store.node_count(), 32_768 * 2);
                assert_eq!(query(&mut store, "#", 0).len(), 2);
                assert_eq!(query(&mut store, "a/#", 0).len(), 1);
                let plus = "+/".repeat(32_767) + "+";
                assert_eq!(query(&mut store, &plus, 0).len(), 2);
                assert_eq!(query(&mut store, &deep, 0).len(), 1);
                assert_eq!(put(&mut store, &deep, ""), StoreOutcome::Cleared);
                assert_eq!(store.node_count(), 32_768);
                // Dropping the store with the deep empty-level chain in it.
            })
            .expect("spawn test thread")
            .join()
            .expect("deep retained topics handled without overflowing");
    }

    fn topic_strategy() -> impl Strategy<Value = String> {
        let level = prop::sample::select(vec!["a", "b", "$x", "c$", ""]);
        prop::collection::vec(level, 1..5).prop_map(|levels| levels.join("/"))
    }

    fn filter_strategy() -> impl Strategy<Value = String> {
        let level = prop::sample::select(vec!["a", "b", "$x", "", "+", "+", "#"]);
        // Any level mix, '#' anywhere: malformed filters must agree with
        // `matches` too.
        prop::collection::vec(level, 1..5).prop_map(|levels| levels.join("/"))
    }

    #[derive(Debug, Clone)]
    enum Op {
        Store(String, bool, Option<u64>),
        Query(String, u64),
    }

    fn op_strategy() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (topic_strategy(), prop::bool::weighted(0.8), prop::option::of(0..20u64))
                .prop_map(|(t, keep, exp)| Op::Store(t, keep, exp)),
            2 => (filter_strategy(), 0..20u64).prop_map(|(f, now)| Op::Query(f, now)),
        ]
    }

    proptest! {
        /// The tree walk agrees with a naive scan using
        /// `ringmq_topic::matches`, including expiry, capacity and pruning.
        #[test]
        fn matching_agrees_with_naive_scan(
            ops in prop::collection::vec(op_strategy(), 0..60),
            capacity in 0..12usize,
        ) {
            let mut store = RetainedStore::new(capacity);
            // topic -> (payload, expires_at)
            let mut model: BTreeMap<String, (String, Option<u64>)> = BTreeMap::new();
            for (n, op) in ops.iter().enumerate() {
                match op {
                    Op::Store(topic, keep, exp) => {
                        let payload = if *keep { n.to_string() } else { String::new() };
                        let got = store.store(&b(topic), &b(&payload), QoS::AtMostOnce, &Properties::default(), exp.map(Tick));
                        let want = if payload.is_empty() {
                            model.remove(topic);
                            StoreOutcome::Cleared
                        } else if model.contains_key(topic) {
                            model.insert(topic.clone(), (payload, *exp));
                            StoreOutcome::Replaced
                        } else if model.len() >= capacity {
                            StoreOutcome::Full
                        } else {
                            model.insert(topic.clone(), (payload, *exp));
                            StoreOutcome::Stored
                        };
                        prop_assert_eq!(got, want);
                    }
                    Op::Query(filter, now) => {
                        let got = query(&mut store, filter, *now);
                        let hits: Vec<String> = model.keys().filter(|t| matches(filter, t)).cloned().collect();
                        let mut want = Vec::new();
                        for topic in hits {
                            let (payload, exp) = model[&topic].clone();
                            if exp.is_some_and(|e| *now > e) {
                                model.remove(&topic);
                            } else {
                                want.push((topic, payload));
                            }
                        }
                        prop_assert_eq!(got, want, "filter {}", filter);
                    }
                }
                prop_assert_eq!(store.len(), model.len());
            }
            // Clearing everything leaves no node behind.
            for topic in model.keys() {
                prop_assert_eq!(put(&mut store, topic, ""), StoreOutcome::Cleared);
            }
            prop_assert!(store.is_empty());
            prop_assert_eq!(store.node_count(), 0);
        }
    }
}
