//! One shard's routing tables: its own sessions' subscriptions (ordinary
//! and shared) and its replica of the other shards' routes, with the route
//! changes this shard must broadcast when its own tables change.
//!
//! Tables (all [`Trie`]s keyed by the ordinary or inner filter):
//! - `local`: filter -> session -> grant, this shard's ordinary
//!   subscriptions;
//! - `shared_local`: inner filter -> group -> slot in `groups`, the shared
//!   groups with members here; the members themselves live in the slot
//!   (a list plus an index, so joining, leaving and choosing are O(1) and a
//!   publish walks one entry per group, not one per member);
//! - `remote`: filter -> other shard -> 1, the replica of ordinary routes;
//! - `shared_remote`: inner filter -> (group, other shard) -> members there.
//!
//! Invariants:
//! - `remote` and `shared_remote` never name this shard, never hold a zero
//!   count, and hold exactly what the last [`RouteChange`] from each shard
//!   said (changes carry absolute counts, so re-applying one is a no-op);
//! - a group slot exists iff it has at least one member, and then it is in
//!   `shared_local` under its filter;
//! - `tallies[g].routes` counts the `shared_local` and `shared_remote`
//!   entries with key `g`; a tally exists iff that count is non-zero, so
//!   the per-group cursors never leak as groups come and go;
//! - a group is keyed by (filter, key) in every trie, so a [`GroupKey`]
//!   collision can never give a member a message its own filter does not
//!   match.
//!
//! Route ordering (DESIGN.md "Routing"): the caller puts every returned
//! change into every other shard's channel before it writes the SUBACK, and
//! drains its channels before routing what it read; this module only
//! computes the changes.

use std::fmt;

use bytes::Bytes;
use hashbrown::HashMap;
use ringmq_session::{SessionId, Subscription};
use ringmq_topic::Trie;

use crate::key::{split_filter, FilterKind, GroupKey, ShardId};

/// What the other shards must learn when this shard's subscriber count for
/// a filter changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteChange {
    /// The (inner, for shared) filter.
    pub filter: Bytes,
    /// The shared group, `None` for an ordinary filter.
    pub group: Option<GroupKey>,
    /// Subscribers now on the sending shard: for ordinary filters sent only
    /// on 0->1 (members 1) and 1->0 (members 0); for shared groups sent on
    /// every join/leave with the member count (0 = none left). Absolute
    /// counts, so applying is idempotent.
    pub members: u32,
}

impl RouteChange {
    fn new(filter: &str, group: Option<GroupKey>, members: usize) -> Self {
        RouteChange {
            filter: Bytes::copy_from_slice(filter.as_bytes()),
            group,
            members: count_u32(members),
        }
    }
}

/// A count as it travels in a [`RouteChange`], saturating.
fn count_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The members of one shared group on this shard.
#[derive(Debug)]
pub(crate) struct LocalGroup {
    /// The group's key (kept to check the slot against its trie entry).
    pub(crate) key: GroupKey,
    /// Members with their grants, in no particular order.
    pub(crate) members: Vec<(SessionId, Subscription)>,
    /// Session -> its position in `members`.
    positions: HashMap<SessionId, usize>,
    /// Where the next member search starts (round robin).
    pub(crate) cursor: usize,
}

impl LocalGroup {
    fn new(key: GroupKey) -> Self {
        LocalGroup {
            key,
            members: Vec::new(),
            positions: HashMap::new(),
            cursor: 0,
        }
    }

    /// Adds or replaces a member; true when it is new.
    fn join(&mut self, session: SessionId, grant: Subscription) -> bool {
        match self.positions.get(&session) {
            Some(&at) => {
                self.members[at].1 = grant;
                false
            }
            None => {
                self.positions.insert(session, self.members.len());
                self.members.push((session, grant));
                true
            }
        }
    }

    /// Removes a member; true when it was there.
    fn leave(&mut self, session: SessionId) -> bool {
        let Some(at) = self.positions.remove(&session) else {
            return false;
        };
        self.members.swap_remove(at);
        if let Some(&(moved, _)) = self.members.get(at) {
            self.positions.insert(moved, at);
        }
        debug_assert_eq!(self.members.len(), self.positions.len());
        true
    }

    /// One member, round robin, preferring those `connected` says have a
    /// live connection; a disconnected one only when no member is
    /// connected (its session queues QoS 1/2 until it returns).
    pub(crate) fn pick(
        &mut self,
        connected: &impl Fn(SessionId) -> bool,
    ) -> Option<(SessionId, Subscription)> {
        let n = self.members.len();
        if n == 0 {
            return None;
        }
        let start = self.cursor % n;
        let chosen = (0..n)
            .map(|step| (start + step) % n)
            .find(|&i| connected(self.members[i].0))
            .unwrap_or(start);
        // The next search starts after the one chosen, so connected members
        // take turns even when disconnected ones sit between them.
        self.cursor = chosen + 1;
        Some(self.members[chosen])
    }
}

/// Per group key: how many trie entries name it, and the cursor for
/// choosing its serving shard.
#[derive(Debug, Default)]
pub(crate) struct GroupTally {
    routes: u32,
    pub(crate) cursor: u64,
}

/// This shard's subscription tables plus its replica of the other shards'
/// routes.
pub struct Routes {
    pub(crate) own: ShardId,
    pub(crate) shards: usize,
    /// Ordinary filter -> local session -> grant.
    pub(crate) local: Trie<SessionId, Subscription>,
    /// Inner filter -> group -> slot in `groups`.
    pub(crate) shared_local: Trie<GroupKey, usize>,
    /// Group slots; `None` is free (and listed in `free_slots`).
    pub(crate) groups: Vec<Option<LocalGroup>>,
    free_slots: Vec<usize>,
    /// Ordinary filter -> other shard -> subscribers there (always 1).
    pub(crate) remote: Trie<ShardId, u32>,
    /// Inner filter -> (group, other shard) -> members there.
    pub(crate) shared_remote: Trie<(GroupKey, ShardId), u32>,
    pub(crate) tallies: HashMap<GroupKey, GroupTally>,
    /// Members summed over all local groups.
    shared_members: usize,
    /// Scratch for `plan`: (group, shard, members) of matching groups.
    pub(crate) candidates: Vec<(GroupKey, ShardId, u32)>,
    /// Scratch for `match_local`: matching ordinary subscriptions.
    pub(crate) matched: Vec<(SessionId, Subscription)>,
    /// Scratch for `match_local`: requested groups found here.
    pub(crate) found: Vec<(GroupKey, usize)>,
}

impl fmt::Debug for Routes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Routes")
            .field("own", &self.own)
            .field("shards", &self.shards)
            .field("local", &self.local.len())
            .field("shared_members", &self.shared_members)
            .field("remote", &self.remote.len())
            .field("shared_remote", &self.shared_remote.len())
            .finish_non_exhaustive()
    }
}

impl Routes {
    /// Empty tables for shard `own` of `shards`.
    pub fn new(own: ShardId, shards: usize) -> Self {
        debug_assert!(own.0 < shards.max(1), "own shard out of range");
        Routes {
            own,
            shards,
            local: Trie::new(),
            shared_local: Trie::new(),
            groups: Vec::new(),
            free_slots: Vec::new(),
            remote: Trie::new(),
            shared_remote: Trie::new(),
            tallies: HashMap::new(),
            shared_members: 0,
            candidates: Vec::new(),
            matched: Vec::new(),
            found: Vec::new(),
        }
    }

    /// Adds or replaces (same filter, same session) a local subscription.
    /// Returns the change to broadcast, if any.
    ///
    /// `filter` is the filter as the client wrote it (`$share/...`
    /// included), already validated. Replacing an existing subscription
    /// changes no count, so it returns `None` (MQTT-3.8.4-3: the new grant
    /// simply takes the old one's place).
    pub fn subscribe(
        &mut self,
        filter: &str,
        session: SessionId,
        grant: Subscription,
    ) -> Option<RouteChange> {
        match split_filter(filter) {
            FilterKind::Ordinary(filter) => {
                let replaced = self.local.insert(filter, session, grant).is_some();
                (!replaced && self.local.filter_len(filter) == 1)
                    .then(|| RouteChange::new(filter, None, 1))
            }
            FilterKind::Shared { group, filter } => {
                let slot = match self.shared_local.get(filter, group) {
                    Some(&slot) => slot,
                    None => {
                        let slot = self.new_slot(group);
                        self.shared_local.insert(filter, group, slot);
                        self.count_route(group);
                        slot
                    }
                };
                let local = self.groups[slot].as_mut()?;
                debug_assert_eq!(local.key, group);
                if !local.join(session, grant) {
                    return None;
                }
                self.shared_members += 1;
                Some(RouteChange::new(filter, Some(group), local.members.len()))
            }
        }
    }

    /// Removes a local subscription (no-op if absent). Returns the change
    /// to broadcast, if any.
    pub fn unsubscribe(&mut self, filter: &str, session: SessionId) -> Option<RouteChange> {
        match split_filter(filter) {
            FilterKind::Ordinary(filter) => {
                self.local.remove(filter, session)?;
                (self.local.filter_len(filter) == 0).then(|| RouteChange::new(filter, None, 0))
            }
            FilterKind::Shared { group, filter } => {
                let slot = *self.shared_local.get(filter, group)?;
                let local = self.groups[slot].as_mut()?;
                if !local.leave(session) {
                    return None;
                }
                self.shared_members -= 1;
                let left = local.members.len();
                if left == 0 {
                    self.shared_local.remove(filter, group);
                    self.groups[slot] = None;
                    self.free_slots.push(slot);
                    self.uncount_route(group);
                }
                Some(RouteChange::new(filter, Some(group), left))
            }
        }
    }

    /// Applies another shard's change to the replica.
    ///
    /// Changes from this shard itself, from a shard out of range, or with a
    /// filter that is not UTF-8 are ignored: the replica must never make a
    /// plan target this shard or a shard that does not exist.
    pub fn apply_remote(&mut self, from: ShardId, change: &RouteChange) {
        if from == self.own || from.0 >= self.shards {
            return;
        }
        let Ok(filter) = std::str::from_utf8(&change.filter) else {
            return;
        };
        match (change.group, change.members) {
            (None, 0) => {
                self.remote.remove(filter, from);
            }
            (None, members) => {
                self.remote.insert(filter, from, members);
            }
            (Some(group), 0) => {
                if self.shared_remote.remove(filter, (group, from)).is_some() {
                    self.uncount_route(group);
                }
            }
            (Some(group), members) => {
                if self
                    .shared_remote
                    .insert(filter, (group, from), members)
                    .is_none()
                {
                    self.count_route(group);
                }
            }
        }
    }

    /// Local (filter, session) pairs, ordinary and shared.
    pub fn local_len(&self) -> usize {
        self.local.len() + self.shared_members
    }

    /// Every route this shard advertises, as the changes that would tell a
    /// freshly started replica about them. Allocates; meant for replaying
    /// routes, not for the hot path.
    pub fn advertised(&self) -> Vec<RouteChange> {
        let ordinary = self
            .local
            .iter()
            .map(|(filter, _, _)| filter)
            .collect::<hashbrown::HashSet<String>>()
            .into_iter()
            .map(|filter| RouteChange::new(&filter, None, 1));
        let shared = self
            .shared_local
            .iter()
            .filter_map(|(filter, group, &slot)| {
                let local = self.groups.get(slot)?.as_ref()?;
                Some(RouteChange::new(&filter, Some(group), local.members.len()))
            });
        ordinary.chain(shared).collect()
    }

    fn new_slot(&mut self, group: GroupKey) -> usize {
        let local = Some(LocalGroup::new(group));
        match self.free_slots.pop() {
            Some(slot) => {
                self.groups[slot] = local;
                slot
            }
            None => {
                self.groups.push(local);
                self.groups.len() - 1
            }
        }
    }

    fn count_route(&mut self, group: GroupKey) {
        self.tallies.entry(group).or_default().routes += 1;
    }

    fn uncount_route(&mut self, group: GroupKey) {
        if let Some(tally) = self.tallies.get_mut(&group) {
            tally.routes -= 1;
            if tally.routes == 0 {
                self.tallies.remove(&group);
            }
        } else {
            debug_assert!(false, "route count for an unknown group");
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::key::group_key;
    use ringmq_codec::{QoS, SubscriptionOptions};

    /// A grant with QoS `qos` and subscription identifier `id`.
    pub(crate) fn grant(qos: QoS, id: u32) -> Subscription {
        Subscription {
            options: SubscriptionOptions {
                qos,
                ..SubscriptionOptions::default()
            },
            id,
        }
    }

    pub(crate) fn change(filter: &str, group: Option<GroupKey>, members: u32) -> RouteChange {
        RouteChange {
            filter: Bytes::copy_from_slice(filter.as_bytes()),
            group,
            members,
        }
    }

    #[test]
    fn ordinary_changes_only_on_first_and_last() {
        let mut routes = Routes::new(ShardId(0), 4);
        let g = grant(QoS::AtLeastOnce, 0);
        assert_eq!(
            routes.subscribe("a/+", SessionId(1), g),
            Some(change("a/+", None, 1))
        );
        // A second session, and a replacement: no count crosses 0/1.
        assert_eq!(routes.subscribe("a/+", SessionId(2), g), None);
        assert_eq!(
            routes.subscribe("a/+", SessionId(1), grant(QoS::ExactlyOnce, 7)),
            None
        );
        assert_eq!(routes.local.get("a/+", SessionId(1)).map(|s| s.id), Some(7));
        assert_eq!(routes.local_len(), 2);
        assert_eq!(routes.unsubscribe("a/+", SessionId(1)), None);
        assert_eq!(routes.unsubscribe("a/+", SessionId(1)), None);
        assert_eq!(routes.unsubscribe("nope", SessionId(2)), None);
        assert_eq!(
            routes.unsubscribe("a/+", SessionId(2)),
            Some(change("a/+", None, 0))
        );
        assert_eq!(routes.local_len(), 0);
        assert_eq!(routes.local.node_count(), 0);
    }

    #[test]
    fn shared_changes_on_every_join_and_leave() {
        let mut routes = Routes::new(ShardId(1), 2);
        let key = group_key("g", "a/#");
        let g = grant(QoS::AtMostOnce, 0);
        assert_eq!(
            routes.subscribe("$share/g/a/#", SessionId(1), g),
            Some(change("a/#", Some(key), 1))
        );
        assert_eq!(
            routes.subscribe("$share/g/a/#", SessionId(2), g),
            Some(change("a/#", Some(key), 2))
        );
        // Same session again: a replacement, no join.
        assert_eq!(routes.subscribe("$share/g/a/#", SessionId(2), g), None);
        assert_eq!(routes.local_len(), 2);
        assert_eq!(routes.unsubscribe("$share/g/a/#", SessionId(3)), None);
        assert_eq!(routes.unsubscribe("$share/h/a/#", SessionId(1)), None);
        assert_eq!(
            routes.unsubscribe("$share/g/a/#", SessionId(1)),
            Some(change("a/#", Some(key), 1))
        );
        assert_eq!(
            routes.unsubscribe("$share/g/a/#", SessionId(2)),
            Some(change("a/#", Some(key), 0))
        );
        assert_eq!(routes.local_len(), 0);
        assert!(routes.shared_local.is_empty());
        assert!(routes.tallies.is_empty());
        // The freed slot is reused.
        routes.subscribe("$share/x/b", SessionId(1), g);
        assert_eq!(routes.groups.len(), 1);
    }

    #[test]
    fn shared_and_ordinary_of_one_filter_are_separate_routes() {
        let mut routes = Routes::new(ShardId(0), 2);
        let g = grant(QoS::AtMostOnce, 0);
        assert!(routes.subscribe("a", SessionId(1), g).is_some());
        assert!(routes.subscribe("$share/g/a", SessionId(1), g).is_some());
        assert_eq!(routes.local_len(), 2);
        assert_eq!(
            routes.unsubscribe("a", SessionId(1)),
            Some(change("a", None, 0))
        );
        assert_eq!(routes.local_len(), 1);
    }

    #[test]
    fn group_members_swap_positions_correctly() {
        let mut group = LocalGroup::new(GroupKey(1));
        for s in 0..5 {
            assert!(group.join(SessionId(s), grant(QoS::AtMostOnce, s as u32)));
        }
        assert!(group.leave(SessionId(1)));
        assert!(!group.leave(SessionId(1)));
        assert!(group.leave(SessionId(4)));
        assert!(!group.join(SessionId(3), grant(QoS::ExactlyOnce, 33)));
        let mut members: Vec<(u64, u32)> = group.members.iter().map(|(s, g)| (s.0, g.id)).collect();
        members.sort();
        assert_eq!(members, vec![(0, 0), (2, 2), (3, 33)]);
        for (at, (s, _)) in group.members.iter().enumerate() {
            assert_eq!(group.positions[s], at);
        }
    }

    #[test]
    fn replica_changes_are_idempotent() {
        let mut routes = Routes::new(ShardId(0), 3);
        let add = change("a/#", None, 1);
        routes.apply_remote(ShardId(1), &add);
        routes.apply_remote(ShardId(1), &add);
        assert_eq!(routes.remote.len(), 1);
        let drop = change("a/#", None, 0);
        routes.apply_remote(ShardId(1), &drop);
        routes.apply_remote(ShardId(1), &drop);
        assert!(routes.remote.is_empty());
        assert_eq!(routes.remote.node_count(), 0);

        let key = group_key("g", "a/#");
        routes.apply_remote(ShardId(2), &change("a/#", Some(key), 5));
        routes.apply_remote(ShardId(2), &change("a/#", Some(key), 3));
        routes.apply_remote(ShardId(2), &change("a/#", Some(key), 3));
        assert_eq!(routes.shared_remote.get("a/#", (key, ShardId(2))), Some(&3));
        assert_eq!(routes.tallies[&key].routes, 1);
        routes.apply_remote(ShardId(2), &change("a/#", Some(key), 0));
        routes.apply_remote(ShardId(2), &change("a/#", Some(key), 0));
        assert!(routes.shared_remote.is_empty());
        assert!(routes.tallies.is_empty());
    }

    #[test]
    fn replica_ignores_own_and_unknown_shards() {
        let mut routes = Routes::new(ShardId(1), 3);
        routes.apply_remote(ShardId(1), &change("a", None, 1));
        routes.apply_remote(ShardId(3), &change("a", None, 1));
        routes.apply_remote(ShardId(1), &change("a", Some(GroupKey(9)), 4));
        let bad = RouteChange {
            filter: Bytes::from_static(b"\xff/a"),
            group: None,
            members: 1,
        };
        routes.apply_remote(ShardId(0), &bad);
        assert!(routes.remote.is_empty());
        assert!(routes.shared_remote.is_empty());
        assert!(routes.tallies.is_empty());
    }

    #[test]
    fn tallies_count_local_and_remote_entries() {
        let mut routes = Routes::new(ShardId(0), 2);
        let key = group_key("g", "t");
        routes.subscribe("$share/g/t", SessionId(1), grant(QoS::AtMostOnce, 0));
        routes.apply_remote(ShardId(1), &change("t", Some(key), 2));
        assert_eq!(routes.tallies[&key].routes, 2);
        routes.unsubscribe("$share/g/t", SessionId(1));
        assert_eq!(routes.tallies[&key].routes, 1);
        routes.apply_remote(ShardId(1), &change("t", Some(key), 0));
        assert!(routes.tallies.is_empty());
    }

    #[test]
    fn advertised_replays_every_route() {
        let mut routes = Routes::new(ShardId(0), 2);
        let g = grant(QoS::AtMostOnce, 0);
        routes.subscribe("a/+", SessionId(1), g);
        routes.subscribe("a/+", SessionId(2), g);
        routes.subscribe("b", SessionId(2), g);
        routes.subscribe("$share/g/a/+", SessionId(1), g);
        routes.subscribe("$share/g/a/+", SessionId(3), g);
        let mut got = routes.advertised();
        got.sort_by(|a, b| (&a.filter, a.group).cmp(&(&b.filter, b.group)));
        let key = group_key("g", "a/+");
        assert_eq!(
            got,
            vec![
                change("a/+", None, 1),
                change("a/+", Some(key), 2),
                change("b", None, 1)
            ]
        );
        // Replaying them into another shard's replica gives it the routes.
        let mut other = Routes::new(ShardId(1), 2);
        for c in &got {
            other.apply_remote(ShardId(0), c);
        }
        assert_eq!(other.remote.len(), 2);
        assert_eq!(other.shared_remote.get("a/+", (key, ShardId(0))), Some(&2));
    }
}
