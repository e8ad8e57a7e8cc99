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
//! [`crate::matches()`] compares them. Shared filters must be split first
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
    // '/' is ASCII, so its byte index is a char boundary; a plain byte scan
    // beats the generic char searcher on topics of a few short levels.
    Some(match rest.bytes().position(|b| b == b'/') {
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

    /// Unlinks a child and tears its subtree down without recursing.
    fn remove_child(&mut self, level: &str) {
        let child = if level == "+" {
            self.plus.take().map(|n| *n)
        } else {
            let child = self.children.remove(level);
            if self.children.is_empty() {
                self.children.shrink_to_fit();
            }
            child
        };
        if let Some(child) = child {
            drop_subtree(child);
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

/// Drops `node` and everything below it one node at a time: the derived
/// drop would recurse once per level.
fn drop_subtree<K, V>(node: Node<K, V>) {
    let mut pending = vec![node];
    while let Some(mut node) = pending.pop() {
        pending.extend(node.children.drain().map(|(_, n)| n));
        pending.extend(node.plus.take().map(|n| *n));
    }
}

impl<K, V> Drop for Trie<K, V> {
    fn drop(&mut self) {
        drop_subtree(std::mem::take(&mut self.root));
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
    /// Same rules as [`crate::matches()`], including MQTT-4.7.2-1 for
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{matches, validate_topic_filter};
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    /// Sorted (key, value) pairs the trie reports for `topic`.
    fn matched<V: Clone + Ord>(trie: &Trie<u32, V>, topic: &str) -> Vec<(u32, V)> {
        let mut out = Vec::new();
        trie.for_each_match(topic, |k, v| out.push((k, v.clone())));
        out.sort();
        out
    }

    #[test]
    fn insert_get_replace_remove() {
        let mut trie = Trie::new();
        assert!(trie.is_empty());
        assert_eq!(trie.insert("a/b", 1, "x"), None);
        assert_eq!(trie.insert("a/b", 2, "y"), None);
        assert_eq!(trie.insert("a/b", 1, "z"), Some("x"));
        assert_eq!(trie.len(), 2);
        assert_eq!(trie.get("a/b", 1), Some(&"z"));
        assert_eq!(trie.get("a/b", 3), None);
        assert_eq!(trie.get("a", 1), None);
        assert_eq!(trie.get("a/b/c", 1), None);
        assert_eq!(trie.filter_len("a/b"), 2);
        assert_eq!(trie.filter_len("a"), 0);
        assert_eq!(trie.filter_len("nope/x"), 0);
        assert_eq!(trie.remove("a/b", 3), None);
        assert_eq!(trie.remove("a/c", 1), None);
        assert_eq!(trie.remove("a/b", 1), Some("z"));
        assert_eq!(trie.remove("a/b", 1), None);
        assert_eq!(trie.len(), 1);
        assert_eq!(trie.remove("a/b", 2), Some("y"));
        assert!(trie.is_empty());
        assert_eq!(trie.node_count(), 0);
    }

    #[test]
    fn filters_sharing_a_path_are_distinct() {
        let mut trie = Trie::new();
        for (i, filter) in [
            "a", "a/#", "a/+", "a/+/#", "#", "+", "a/", "/a", "/", "a//b",
        ]
        .into_iter()
        .enumerate()
        {
            assert_eq!(trie.insert(filter, 7, i), None, "{filter}");
        }
        assert_eq!(trie.len(), 10);
        assert_eq!(trie.get("a/#", 7), Some(&1));
        assert_eq!(trie.get("a/+/#", 7), Some(&3));
        assert_eq!(trie.get("#", 7), Some(&4));
        assert_eq!(trie.get("/", 7), Some(&8));
        assert_eq!(trie.remove("a", 7), Some(0));
        assert_eq!(trie.get("a/#", 7), Some(&1));
        assert_eq!(trie.get("a/+", 7), Some(&2));
    }

    #[test]
    fn spec_matching_examples() {
        let mut trie = Trie::new();
        let filters = [
            "sport/tennis/player1/#",
            "sport/#",
            "#",
            "sport/tennis/+",
            "+",
            "+/+",
            "/+",
            "+/monitor/Clients",
            "$SYS/#",
            "$SYS/monitor/+",
            "sport",
        ];
        for (i, filter) in filters.iter().enumerate() {
            trie.insert(filter, i as u32, *filter);
        }
        let want = |topic: &str| -> Vec<(u32, &str)> {
            filters
                .iter()
                .enumerate()
                .filter(|(_, f)| matches(f, topic))
                .map(|(i, f)| (i as u32, *f))
                .collect()
        };
        assert_eq!(
            matched(&trie, "sport/tennis/player1"),
            vec![
                (0, "sport/tennis/player1/#"),
                (1, "sport/#"),
                (2, "#"),
                (3, "sport/tennis/+")
            ]
        );
        assert_eq!(
            matched(&trie, "sport"),
            vec![(1, "sport/#"), (2, "#"), (4, "+"), (10, "sport")]
        );
        assert_eq!(
            matched(&trie, "/finance"),
            vec![(2, "#"), (5, "+/+"), (6, "/+")]
        );
        assert_eq!(
            matched(&trie, "$SYS/monitor/Clients"),
            vec![(8, "$SYS/#"), (9, "$SYS/monitor/+")]
        );
        assert_eq!(matched(&trie, "$SYS"), vec![(8, "$SYS/#")]);
        assert_eq!(matched(&trie, "$other"), vec![]);
        for topic in [
            "sport/tennis/player1/ranking",
            "a/monitor/Clients",
            "sport/",
            "/",
        ] {
            assert_eq!(matched(&trie, topic), want(topic), "{topic}");
        }
    }

    #[test]
    fn dollar_rule_applies_only_at_first_level() {
        let mut trie = Trie::new();
        trie.insert("a/+", 1, ());
        trie.insert("a/#", 2, ());
        trie.insert("+/$x", 3, ());
        trie.insert("$x/+", 4, ());
        trie.insert("+/#", 5, ());
        let keys = |topic: &str| {
            matched(&trie, topic)
                .into_iter()
                .map(|(k, _)| k)
                .collect::<Vec<_>>()
        };
        assert_eq!(keys("a/$x"), vec![1, 2, 3, 5]);
        assert_eq!(keys("$x/$x"), vec![4]);
        assert_eq!(keys("$x"), Vec::<u32>::new());
    }

    #[test]
    fn iter_replays_every_subscription() {
        let mut trie = Trie::new();
        let filters = ["#", "+", "a", "a/#", "+/b/#", "/", "a//", "$SYS/+", "a/b/c"];
        for (i, filter) in filters.iter().enumerate() {
            trie.insert(filter, i as u32, i * 10);
            trie.insert(filter, 100, i);
        }
        let mut got: Vec<(String, u32, usize)> = trie.iter().map(|(f, k, v)| (f, k, *v)).collect();
        got.sort();
        let mut want: Vec<(String, u32, usize)> = filters
            .iter()
            .enumerate()
            .flat_map(|(i, f)| [(f.to_string(), i as u32, i * 10), (f.to_string(), 100, i)])
            .collect();
        want.sort();
        assert_eq!(got, want);
        assert_eq!(Trie::<u32, ()>::new().iter().count(), 0);
    }

    #[test]
    fn insert_remove_cycles_do_not_leak() {
        let mut trie = Trie::new();
        let filters = [
            "a/b/c", "a/b/#", "a/+/c", "+/+/+", "#", "a", "a//", "/", "x/y/z/w",
        ];
        for round in 0..50u32 {
            for (i, filter) in filters.iter().enumerate() {
                trie.insert(filter, round * 100 + i as u32, ());
            }
            assert!(trie.node_count() > 0);
            // Remove in a different order each round.
            for step in 0..filters.len() {
                let i = (step * 7 + round as usize) % filters.len();
                assert_eq!(trie.remove(filters[i], round * 100 + i as u32), Some(()));
            }
            assert!(trie.is_empty());
            assert_eq!(trie.node_count(), 0, "round {round}");
        }
    }

    #[test]
    fn pruning_keeps_shared_prefixes() {
        let mut trie = Trie::new();
        trie.insert("a/b/c/d", 1, ());
        trie.insert("a/b", 2, ());
        trie.insert("a/+/x", 3, ());
        assert_eq!(trie.node_count(), 6); // a, b, c, d, +, x
        trie.remove("a/b/c/d", 1);
        assert_eq!(trie.node_count(), 4); // a, b, +, x
        assert_eq!(trie.filter_len("a/b"), 1);
        trie.remove("a/+/x", 3);
        assert_eq!(trie.node_count(), 2);
        trie.insert("a/b/#", 4, ());
        assert_eq!(trie.node_count(), 2);
        trie.remove("a/b", 2);
        assert_eq!(trie.node_count(), 2); // "a/b/#" still lives on node b
        trie.remove("a/b/#", 4);
        assert_eq!(trie.node_count(), 0);
    }

    #[test]
    fn many_pending_branches_spill_correctly() {
        // Each level of "a/a/.../a" has both an "a" child and a "+" child,
        // so matching pushes one branch per level, past the inline capacity.
        let depth = INLINE_BRANCHES * 3;
        let mut trie = Trie::new();
        let mut filters = Vec::new();
        for i in 0..depth {
            let mut levels = vec!["a"; i];
            levels.push("+");
            levels.extend(vec!["a"; depth - i - 1]);
            filters.push(levels.join("/"));
        }
        filters.push(vec!["a"; depth].join("/"));
        for (i, filter) in filters.iter().enumerate() {
            trie.insert(filter, i as u32, ());
        }
        let topic = vec!["a"; depth].join("/");
        let got: Vec<u32> = matched(&trie, &topic).into_iter().map(|(k, _)| k).collect();
        assert_eq!(got, (0..filters.len() as u32).collect::<Vec<_>>());
    }

    #[test]
    fn deepest_filters_do_not_overflow_the_stack() {
        // 32,768 levels: the most a 65,535-byte filter can have.
        let filter = "+/".repeat(32_767) + "#";
        assert_eq!(validate_topic_filter(&filter), Ok(()));
        let literal = "/".repeat(32_767);
        let topic = "a/".repeat(32_767) + "a";
        // Run on a thread with a small stack to catch per-level recursion.
        std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || {
                let mut trie = Trie::new();
                trie.insert(&filter, 1, ());
                trie.insert(&literal, 2, ());
                // 32,767 '+' nodes, then 32,768 empty-level nodes.
                assert_eq!(trie.node_count(), 32_767 + 32_768);
                assert_eq!(matched(&trie, &topic), vec![(1, ())]);
                // '+' matches empty levels too.
                assert_eq!(matched(&trie, &literal), vec![(1, ()), (2, ())]);
                assert_eq!(trie.iter().count(), 2);
                assert_eq!(trie.remove(&filter, 1), Some(()));
                assert_eq!(trie.node_count(), 32_768);
                // Dropping the trie with the deep literal chain still in it.
            })
            .expect("spawn test thread")
            .join()
            .expect("deep trie operations ran without overflowing");
    }

    #[test]
    fn small_stack_is_lifo_across_the_spill() {
        let mut stack: SmallStack<u32, 2> = SmallStack::new();
        assert_eq!(stack.pop(), None);
        for i in 0..5 {
            stack.push(i);
        }
        assert_eq!(stack.pop(), Some(4));
        stack.push(9);
        let mut rest = Vec::new();
        while let Some(i) = stack.pop() {
            rest.push(i);
        }
        assert_eq!(rest, vec![9, 3, 2, 1, 0]);
    }

    #[global_allocator]
    static GLOBAL: ringmq_testalloc::CountingAlloc = ringmq_testalloc::CountingAlloc;

    #[test]
    fn matching_does_not_allocate() {
        let mut trie = Trie::new();
        let filters = [
            "#", "+", "+/+", "+/#", "a/#", "a/+/c", "a/b/c", "a/b/+", "+/b/#", "$SYS/#", "/+",
            "a//",
        ];
        for (i, filter) in filters.iter().enumerate() {
            trie.insert(filter, i as u32, i);
        }
        // Branch points on "a/b/c": root (a and +), a (b and +), a/b (c and +).
        let topics = ["a/b/c", "a/x/c", "$SYS/x", "/", "a//", "q"];
        let mut total = 0;
        let before = ringmq_testalloc::allocations();
        for topic in topics {
            trie.for_each_match(topic, |k, v| total += k as usize + v);
        }
        let after = ringmq_testalloc::allocations();
        assert_eq!(after - before, 0, "allocations during matching");
        // The walk really happened: compare with the naive matcher.
        let want: usize = topics
            .iter()
            .flat_map(|t| filters.iter().enumerate().filter(|(_, f)| matches(f, t)))
            .map(|(i, _)| 2 * i)
            .sum();
        assert_eq!(total, want);
    }

    fn filter_strategy() -> impl Strategy<Value = String> {
        let level = prop::sample::select(vec!["a", "b", "+", "$x", ""]);
        (prop::collection::vec(level, 0..4), any::<bool>()).prop_filter_map(
            "empty filter",
            |(mut levels, hash)| {
                if hash {
                    levels.push("#");
                }
                let filter = levels.join("/");
                (!filter.is_empty()).then_some(filter)
            },
        )
    }

    fn topic_strategy() -> impl Strategy<Value = String> {
        let level = prop::sample::select(vec!["a", "b", "$x", ""]);
        prop::collection::vec(level, 1..5).prop_map(|levels| levels.join("/"))
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(String, u32),
        Remove(String, u32),
    }

    fn op_strategy() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (filter_strategy(), 0..4u32).prop_map(|(f, k)| Op::Insert(f, k)),
            2 => (filter_strategy(), 0..4u32).prop_map(|(f, k)| Op::Remove(f, k)),
        ]
    }

    proptest! {
        #[test]
        fn trie_agrees_with_naive_matcher(
            ops in prop::collection::vec(op_strategy(), 0..60),
            topics in prop::collection::vec(topic_strategy(), 1..12),
        ) {
            let mut trie = Trie::new();
            let mut model: BTreeMap<(String, u32), usize> = BTreeMap::new();
            for (n, op) in ops.iter().enumerate() {
                match op {
                    Op::Insert(f, k) => {
                        prop_assert_eq!(validate_topic_filter(f), Ok(()));
                        prop_assert_eq!(trie.insert(f, *k, n), model.insert((f.clone(), *k), n));
                    }
                    Op::Remove(f, k) => {
                        prop_assert_eq!(trie.remove(f, *k), model.remove(&(f.clone(), *k)));
                    }
                }
                prop_assert_eq!(trie.len(), model.len());
            }
            for topic in &topics {
                let got = matched(&trie, topic);
                let mut want: Vec<(u32, usize)> = model
                    .iter()
                    .filter(|((f, _), _)| matches(f, topic))
                    .map(|((_, k), v)| (*k, *v))
                    .collect();
                want.sort();
                prop_assert_eq!(got, want, "topic {}", topic);
            }
            for ((f, k), v) in &model {
                prop_assert_eq!(trie.get(f, *k), Some(v));
            }
            let mut replay: Vec<(String, u32, usize)> = trie.iter().map(|(f, k, v)| (f, k, *v)).collect();
            replay.sort();
            let expected: Vec<(String, u32, usize)> =
                model.iter().map(|((f, k), v)| (f.clone(), *k, *v)).collect();
            prop_assert_eq!(replay, expected);
            // Remove everything: nothing may be left behind.
            for (f, k) in model.keys() {
                prop_assert!(trie.remove(f, *k).is_some());
            }
            prop_assert!(trie.is_empty());
            prop_assert_eq!(trie.node_count(), 0);
        }
    }
}
