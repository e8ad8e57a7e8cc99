//! The subscription trie: topic filter -> (subscriber key -> value).
//!
//! Each node is one filter level. Literal levels live in a map keyed by the
//! level text, `+` has its own child, and a final `#` is not a node at all:
//! its subscribers sit in the `hash_subs` map of the node for the levels
//! before it (the root for the filter `"#"`).
//!
//! Invariants:
//! - every node except the root holds a subscriber or leads to one; nodes
//!   left empty by [`Trie::remove`] are pruned at once, so insert/remove
//!   cycles never leak;
//! - `len` equals the number of (filter, key) pairs stored;
//! - no operation recurses over levels: filters and topics may have up to
//!   32,768 levels, which would overflow a thread stack. Matching walks the
//!   trie with an explicit stack kept inline, and does not allocate unless
//!   more than [`INLINE_BRANCHES`] branch points are pending at once.
//!
//! Filters given to the trie are assumed valid ([`crate::validate_topic_filter`]).
//! An invalid one never causes a panic: `#` that is not the last level and
//! levels such as `"a+"` are stored literally, exactly as
//! [`crate::matches`] compares them. Shared filters must be split first
//! ([`crate::parse_shared`]); a `$share/...` string is stored literally.

use std::fmt;
use std::hash::Hash;

use hashbrown::HashMap;

/// Pending branch points kept on the matching stack before it spills to
/// the heap.
const INLINE_BRANCHES: usize = 32;

/// Marks "no levels left" in a topic position.
const END: usize = usize::MAX;

/// Which subscriber map of the final node a filter names.
#[derive(Clone, Copy)]
enum Slot {
    /// The filter ends at the node.
    Exact,
    /// The filter is the node's levels followed by a final `#`.
    Hash,
}

/// Splits a filter into the path of node levels and the slot at its end.
/// The path is `None` when the filter is exactly `"#"` (the root's slot).
fn locate(filter: &str) -> (Option<&str>, Slot) {
    if filter == "#" {
        (None, Slot::Hash)
    } else if let Some(path) = filter.strip_suffix("/#") {
        (Some(path), Slot::Hash)
    } else {
        (Some(filter), Slot::Exact)
    }
}

/// The levels of a path from [`locate`].
fn levels(path: Option<&str>) -> impl Iterator<Item = &str> + Clone {
    path.into_iter().flat_map(|p| p.split('/'))
}

/// The level of `topic` starting at byte `pos`, and where the next one
/// starts (`END` if this was the last). `None` once `pos` is `END`.
fn level_at(topic: &str, pos: usize) -> Option<(&str, usize)> {
    // `pos` is 0 or just past a '/', so it is a char boundary; `get` keeps
    // a bad position from panicking all the same.
    let rest = topic.get(pos..)?;
    Some(match rest.find('/') {
        Some(i) => (&rest[..i], pos + i + 1),
        None => (rest, END),
    })
}

struct Node<K, V> {
    /// Subscribers whose filter ends at this node.
    subs: HashMap<K, V>,
    /// Subscribers whose filter is this node's levels plus a final `#`.
    hash_subs: HashMap<K, V>,
    /// Literal next levels.
    children: HashMap<Box<str>, Node<K, V>>,
    /// The `+` next level.
    plus: Option<Box<Node<K, V>>>,
}

impl<K, V> Default for Node<K, V> {
    fn default() -> Self {
        Node {
            subs: HashMap::default(),
            hash_subs: HashMap::default(),
            children: HashMap::default(),
            plus: None,
        }
    }
}

impl<K: Eq + Hash, V> Node<K, V> {
    fn child(&self, level: &str) -> Option<&Node<K, V>> {
        if level == "+" {
            self.plus.as_deref()
        } else {
            self.children.get(level)
        }
    }

    fn child_mut(&mut self, level: &str) -> Option<&mut Node<K, V>> {
        if level == "+" {
            self.plus.as_deref_mut()
        } else {
            self.children.get_mut(level)
        }
    }

    fn child_or_insert(&mut self, level: &str) -> &mut Node<K, V> {
        if level == "+" {
            self.plus.get_or_insert_with(Box::default)
        } else {
            self.children.entry_ref(level).or_default()
        }
    }

    fn remove_child(&mut self, level: &str) {
        if level == "+" {
            self.plus = None;
        } else {
            self.children.remove(level);
            if self.children.is_empty() {
                self.children.shrink_to_fit();
            }
        }
    }

    fn slot(&self, slot: Slot) -> &HashMap<K, V> {
        match slot {
            Slot::Exact => &self.subs,
            Slot::Hash => &self.hash_subs,
        }
    }

    fn slot_mut(&mut self, slot: Slot) -> &mut HashMap<K, V> {
        match slot {
            Slot::Exact => &mut self.subs,
            Slot::Hash => &mut self.hash_subs,
        }
    }

    /// Subscribers plus child links held by this node.
    fn entries(&self) -> usize {
        self.subs.len()
            + self.hash_subs.len()
            + self.children.len()
            + usize::from(self.plus.is_some())
    }
}

/// A LIFO stack holding its first `N` items inline.
struct SmallStack<T: Copy, const N: usize> {
    inline: [Option<T>; N],
    inline_len: usize,
    spill: Vec<T>,
}

impl<T: Copy, const N: usize> SmallStack<T, N> {
    fn new() -> Self {
        SmallStack {
            inline: [None; N],
            inline_len: 0,
            spill: Vec::new(),
        }
    }

    fn push(&mut self, item: T) {
        if self.inline_len < N {
            self.inline[self.inline_len] = Some(item);
            self.inline_len += 1;
        } else {
            self.spill.push(item);
        }
    }

    fn pop(&mut self) -> Option<T> {
        // The spill only fills once the inline part is full, so it holds
        // the newest items.
        if let Some(item) = self.spill.pop() {
            return Some(item);
        }
        if self.inline_len == 0 {
            return None;
        }
        self.inline_len -= 1;
        self.inline[self.inline_len].take()
    }
}

/// A subscription trie: topic filter -> (subscriber key -> value).
///
/// `K` identifies a subscriber (a session index, a shard id, ...), `V` is
/// what the subscription carries (options, a count, ...). One key has at
/// most one value per filter.
pub struct Trie<K, V> {
    root: Node<K, V>,
    len: usize,
}

impl<K: Copy + Eq + Hash, V> Default for Trie<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K, V> fmt::Debug for Trie<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Trie")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl<K, V> Drop for Trie<K, V> {
    /// Tears the nodes down one at a time: the derived drop would recurse
    /// once per level.
    fn drop(&mut self) {
        let mut pending: Vec<Node<K, V>> = self.root.children.drain().map(|(_, n)| n).collect();
        pending.extend(self.root.plus.take().map(|n| *n));
        while let Some(mut node) = pending.pop() {
            pending.extend(node.children.drain().map(|(_, n)| n));
            pending.extend(node.plus.take().map(|n| *n));
        }
    }
}

impl<K: Copy + Eq + Hash, V> Trie<K, V> {
    /// An empty trie; allocates nothing.
    pub fn new() -> Self {
        Trie {
            root: Node::default(),
            len: 0,
        }
    }

    /// Inserts or replaces the value for (`filter`, `key`); returns the
    /// previous value.
    pub fn insert(&mut self, filter: &str, key: K, value: V) -> Option<V> {
        let (path, slot) = locate(filter);
        let mut node = &mut self.root;
        for level in levels(path) {
            node = node.child_or_insert(level);
        }
        let previous = node.slot_mut(slot).insert(key, value);
        if previous.is_none() {
            self.len += 1;
        }
        previous
    }

    /// Removes (`filter`, `key`) and returns its value, pruning nodes that
    /// no longer lead to any subscriber.
    pub fn remove(&mut self, filter: &str, key: K) -> Option<V> {
        let (path, slot) = locate(filter);
        let mut node = &mut self.root;
        for level in levels(path) {
            node = node.child_mut(level)?;
        }
        let map = node.slot_mut(slot);
        let value = map.remove(&key)?;
        if map.is_empty() {
            // Give back the table of a map that may have been large.
            map.shrink_to_fit();
        }
        self.len -= 1;
        self.prune(path);
        Some(value)
    }

    /// Drops the longest run of nodes at the end of `path` that hold
    /// nothing but the link to the next node on the path.
    fn prune(&mut self, path: Option<&str>) {
        // First pass, read-only: find the first level of that run.
        let mut cut = None;
        let mut node = &self.root;
        let mut walk = levels(path).enumerate().peekable();
        while let Some((depth, level)) = walk.next() {
            let Some(child) = node.child(level) else {
                debug_assert!(false, "prune path must exist");
                return;
            };
            let own_link = usize::from(walk.peek().is_some());
            if child.entries() == own_link {
                cut.get_or_insert(depth);
            } else {
                cut = None;
            }
            node = child;
        }
        let Some(cut) = cut else { return };
        // Second pass: walk to the parent of the run and unlink it.
        let mut node = &mut self.root;
        let mut walk = levels(path);
        for level in walk.by_ref().take(cut) {
            match node.child_mut(level) {
                Some(child) => node = child,
                None => return,
            }
        }
        if let Some(level) = walk.next() {
            node.remove_child(level);
        }
    }

    /// The value stored for (`filter`, `key`).
    pub fn get(&self, filter: &str, key: K) -> Option<&V> {
        self.subscribers(filter)?.get(&key)
    }

    /// Number of keys subscribed to exactly this filter.
    pub fn filter_len(&self, filter: &str) -> usize {
        self.subscribers(filter).map_or(0, HashMap::len)
    }

    fn subscribers(&self, filter: &str) -> Option<&HashMap<K, V>> {
        let (path, slot) = locate(filter);
        let mut node = &self.root;
        for level in levels(path) {
            node = node.child(level)?;
        }
        Some(node.slot(slot))
    }

    /// Calls `f(key, value)` once for every stored (filter, key) whose
    /// filter matches the topic name `topic`, in no particular order.
    ///
    /// Same rules as [`crate::matches`], including MQTT-4.7.2-1 for
    /// `$`-topics. Does not allocate unless more than 32 branch points (a
    /// node with both a matching literal child and a `+` child) are pending
    /// at once.
    pub fn for_each_match(&self, topic: &str, mut f: impl FnMut(K, &V)) {
        let mut emit = |map: &HashMap<K, V>| {
            for (key, value) in map {
                f(*key, value);
            }
        };
        let mut pending: SmallStack<(&Node<K, V>, usize), INLINE_BRANCHES> = SmallStack::new();
        let (mut node, mut pos) = (&self.root, 0);
        loop {
            let next = match level_at(topic, pos) {
                None => {
                    // The topic ends here; "x/#" also matches "x" (4.7.1.2).
                    emit(&node.subs);
                    emit(&node.hash_subs);
                    None
                }
                Some((level, next_pos)) => {
                    // MQTT-4.7.2-1: no wildcard at the first level matches
                    // a topic starting with '$'.
                    let wildcards = !(pos == 0 && level.starts_with('$'));
                    if wildcards {
                        emit(&node.hash_subs);
                    }
                    let literal = node.children.get(level);
                    let plus = node.plus.as_deref().filter(|_| wildcards);
                    match (literal, plus) {
                        (Some(literal), Some(plus)) => {
                            pending.push((plus, next_pos));
                            Some((literal, next_pos))
                        }
                        (Some(one), None) | (None, Some(one)) => Some((one, next_pos)),
                        (None, None) => None,
                    }
                }
            };
            match next.or_else(|| pending.pop()) {
                Some((n, p)) => (node, pos) = (n, p),
                None => return,
            }
        }
    }

    /// Number of (filter, key) pairs stored.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no subscription is stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every stored (filter, key, value), in no particular order; builds
    /// each filter string, so it allocates. Meant for replaying routes.
    pub fn iter(&self) -> impl Iterator<Item = (String, K, &V)> + '_ {
        Iter {
            nodes: vec![(&self.root, None)],
            maps: Vec::new(),
        }
    }

    /// Number of nodes below the root; zero when the trie is empty.
    #[doc(hidden)]
    pub fn node_count(&self) -> usize {
        let mut count = 0;
        let mut pending = vec![&self.root];
        while let Some(node) = pending.pop() {
            pending.extend(node.children.values());
            pending.extend(node.plus.as_deref());
            count += node.children.len() + usize::from(node.plus.is_some());
        }
        count
    }
}

/// Depth-first walk behind [`Trie::iter`].
struct Iter<'a, K, V> {
    /// Nodes still to visit, with their filter text (`None` for the root).
    nodes: Vec<(&'a Node<K, V>, Option<String>)>,
    /// Subscriber maps being drained, with the filter they belong to.
    maps: Vec<(String, hashbrown::hash_map::Iter<'a, K, V>)>,
}

impl<'a, K: Copy, V> Iterator for Iter<'a, K, V> {
    type Item = (String, K, &'a V);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some((filter, entries)) = self.maps.last_mut() {
                if let Some((key, value)) = entries.next() {
                    return Some((filter.clone(), *key, value));
                }
                self.maps.pop();
                continue;
            }
            let (node, path) = self.nodes.pop()?;
            let join = |level: &str| match &path {
                None => level.to_owned(),
                Some(p) => format!("{p}/{level}"),
            };
            if !node.hash_subs.is_empty() {
                self.maps.push((join("#"), node.hash_subs.iter()));
            }
            for (level, child) in &node.children {
                self.nodes.push((child, Some(join(level))));
            }
            if let Some(plus) = &node.plus {
                self.nodes.push((plus, Some(join("+"))));
            }
            if let Some(path) = path {
                if !node.subs.is_empty() {
                    self.maps.push((path, node.subs.iter()));
                }
            }
        }
    }
}
