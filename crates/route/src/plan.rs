//! The publishing shard's decision: which other shards get a publish, what
//! each does with it, and which shard serves each matching shared group.
//!
//! A publish is matched once, on the shard that read it, against the route
//! replica, and sent at most once to each other shard (DESIGN.md "Cross-
//! shard mesh"); the receiving shard then matches its own sessions with
//! [`Routes::match_local`].
//!
//! Shared groups (MQTT 5.0 section 4.8.2): each matching group is served by
//! exactly one shard, chosen per group with weight = that shard's member
//! count, round robin over the group's total members: a shard with 1
//! member of 100 serves 1 message in 100. The cursor is per group, so
//! groups matched by the same publishes do not fall into step.
//!
//! Invariants: a [`Plan`] names this shard only in `local_groups` and
//! `store_locally`, never in `remote`; `remote` holds at most one
//! [`Target`] per shard, sorted by shard; a group appears once in the whole
//! plan. Planning allocates nothing once buffers are warm unless a shared
//! group matches (then only the target's `groups` list).

use crate::key::{GroupKey, ShardId};
use crate::routes::Routes;

/// Where one publish goes.
#[derive(Default, Debug)]
pub struct Plan {
    /// Other shards (never own) and what each does with the message; at
    /// most one Target per shard.
    pub remote: Vec<Target>,
    /// Shared groups own shard serves.
    pub local_groups: Vec<GroupKey>,
    /// Own shard is the retained owner: store it here.
    pub store_locally: bool,
}

/// What one other shard does with a publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The shard.
    pub shard: ShardId,
    /// Match its ordinary subscriptions.
    pub deliver: bool,
    /// It owns the topic's retained message: store (or clear) it there.
    pub store_retained: bool,
    /// Shared groups it serves (one member each).
    pub groups: Vec<GroupKey>,
}

impl Plan {
    /// Empties the plan, keeping its buffers.
    pub fn clear(&mut self) {
        self.remote.clear();
        self.local_groups.clear();
        self.store_locally = false;
    }

    /// True when the publish goes nowhere, not even to this shard's store.
    pub fn is_empty(&self) -> bool {
        self.remote.is_empty() && self.local_groups.is_empty() && !self.store_locally
    }

    /// The target for `shard`, added if missing.
    fn target(&mut self, shard: ShardId) -> &mut Target {
        let at = match self.remote.iter().position(|t| t.shard == shard) {
            Some(at) => at,
            None => {
                self.remote.push(Target {
                    shard,
                    deliver: false,
                    store_retained: false,
                    groups: Vec::new(),
                });
                self.remote.len() - 1
            }
        };
        &mut self.remote[at]
    }
}

/// Which part of a publish's audience a node serves, when nodes of a
/// cluster share the work (`--cluster-nats`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Serve {
    /// Everyone: ordinary subscribers and one member of each shared group
    /// (one node alone).
    All,
    /// Ordinary subscribers only: the cluster picks the member of each
    /// shared group (it may be on this node; the message then comes back
    /// as [`Serve::Group`]).
    Ordinary,
    /// One member of this shared group only (the cluster chose this node
    /// for it), and nothing is stored as retained.
    Group(GroupKey),
}

impl Plan {
    /// Narrows the plan to `serve`'s part: drops the groups it does not
    /// serve, and for [`Serve::Group`] the ordinary deliveries and retained
    /// storing; targets left with nothing to do go. Whether this shard
    /// delivers to its ordinary subscribers is `serve`'s
    /// [`Serve::ordinary`].
    pub fn restrict(&mut self, serve: Serve) {
        match serve {
            // One node alone: nothing to narrow (the hot path pays nothing).
            Serve::All => return,
            Serve::Ordinary => {
                self.local_groups.clear();
                for t in &mut self.remote {
                    t.groups.clear();
                }
            }
            Serve::Group(key) => {
                self.local_groups.retain(|&g| g == key);
                self.store_locally = false;
                for t in &mut self.remote {
                    t.groups.retain(|&g| g == key);
                    t.deliver = false;
                    t.store_retained = false;
                }
            }
        }
        self.remote
            .retain(|t| t.deliver || t.store_retained || !t.groups.is_empty());
    }
}

impl Serve {
    /// Whether ordinary subscribers are served.
    pub fn ordinary(self) -> bool {
        !matches!(self, Serve::Group(_))
    }
}

/// The shard at position `cursor % total` when each candidate shard
/// covers as many positions as it has members, in slice order.
fn weighted_pick(candidates: &[(GroupKey, ShardId, u32)], cursor: u64) -> Option<ShardId> {
    let total: u64 = candidates.iter().map(|c| u64::from(c.2)).sum();
    if total == 0 {
        return None;
    }
    let mut left = cursor % total;
    for &(_, shard, members) in candidates {
        let members = u64::from(members);
        if left < members {
            return Some(shard);
        }
        left -= members;
    }
    debug_assert!(false, "position beyond the total");
    None
}

impl Routes {
    /// Where a publish on `topic` goes. `retained_owner`: Some(owner shard)
    /// when the PUBLISH has RETAIN set. Clears `plan` first. Reuses plan's
    /// buffers (no allocation per message when no shared groups match).
    ///
    /// `topic` is a valid topic name; the `$` rule (MQTT-4.7.2-1) applies
    /// through the tries.
    pub fn plan(&mut self, topic: &str, retained_owner: Option<ShardId>, plan: &mut Plan) {
        plan.clear();
        self.remote.for_each_match(topic, |shard, _| {
            plan.target(shard).deliver = true;
        });
        if !self.shared_remote.is_empty() || !self.shared_local.is_empty() {
            self.plan_groups(topic, plan);
        }
        match retained_owner {
            // MQTT-3.3.1-5: the owner stores (or, with an empty payload,
            // clears) the topic's retained message.
            Some(owner) if owner == self.own => plan.store_locally = true,
            Some(owner) => plan.target(owner).store_retained = true,
            None => {}
        }
        plan.remote.sort_unstable_by_key(|t| t.shard);
    }

    /// Chooses one serving shard for every shared group matching `topic`.
    fn plan_groups(&mut self, topic: &str, plan: &mut Plan) {
        let mut candidates = std::mem::take(&mut self.candidates);
        candidates.clear();
        self.shared_remote
            .for_each_match(topic, |(group, shard), &members| {
                candidates.push((group, shard, members));
            });
        let (own, groups) = (self.own, &self.groups);
        self.shared_local.for_each_match(topic, |group, &slot| {
            if let Some(local) = groups.get(slot).and_then(Option::as_ref) {
                let members = u32::try_from(local.members.len()).unwrap_or(u32::MAX);
                candidates.push((group, own, members));
            }
        });
        // Sorted by (group, shard): each group's candidates are adjacent
        // and in a fixed order, so the cursor walks them fairly.
        candidates.sort_unstable();
        for run in candidates.chunk_by(|a, b| a.0 == b.0) {
            let group = run[0].0;
            let cursor = match self.tallies.get_mut(&group) {
                Some(tally) => {
                    let cursor = tally.cursor;
                    tally.cursor = cursor.wrapping_add(1);
                    cursor
                }
                None => {
                    debug_assert!(false, "matching group without a tally");
                    0
                }
            };
            match weighted_pick(run, cursor) {
                Some(shard) if shard == self.own => plan.local_groups.push(group),
                Some(shard) => plan.target(shard).groups.push(group),
                None => {}
            }
        }
        self.candidates = candidates;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::group_key;
    use crate::routes::tests::{change, grant};
    use crate::routes::RouteChange;
    use proptest::prelude::*;
    use ringmq_codec::QoS;
    use ringmq_session::SessionId;
    use ringmq_topic::matches;

    fn target(shard: usize, deliver: bool, store: bool, groups: &[GroupKey]) -> Target {
        Target {
            shard: ShardId(shard),
            deliver,
            store_retained: store,
            groups: groups.to_vec(),
        }
    }

    fn planned(routes: &mut Routes, topic: &str, owner: Option<ShardId>) -> Plan {
        let mut plan = Plan::default();
        routes.plan(topic, owner, &mut plan);
        plan
    }

    #[test]
    fn a_plan_narrows_to_what_this_node_serves() {
        let (g, h) = (group_key("g", "a/+"), group_key("h", "a/#"));
        let mut routes = Routes::new(ShardId(0), 3);
        routes.apply_remote(ShardId(1), &change("a/b", None, 1));
        routes.apply_remote(ShardId(2), &change("a/+", Some(g), 1));
        routes.subscribe("$share/h/a/#", SessionId(1), grant(QoS::AtMostOnce, 0));
        let all = planned(&mut routes, "a/b", Some(ShardId(1)));
        assert_eq!(all.local_groups, [h]);
        assert_eq!(
            all.remote,
            [target(1, true, true, &[]), target(2, false, false, &[g])]
        );
        let mut ordinary = planned(&mut routes, "a/b", Some(ShardId(1)));
        ordinary.restrict(Serve::Ordinary);
        assert!(ordinary.local_groups.is_empty());
        assert_eq!(ordinary.remote, [target(1, true, true, &[])]);
        let mut only_g = planned(&mut routes, "a/b", Some(ShardId(1)));
        only_g.restrict(Serve::Group(g));
        assert!(only_g.local_groups.is_empty() && !only_g.store_locally);
        assert_eq!(only_g.remote, [target(2, false, false, &[g])]);
        let mut only_h = planned(&mut routes, "a/b", Some(ShardId(0)));
        only_h.restrict(Serve::Group(h));
        assert_eq!(only_h.local_groups, [h]);
        assert!(only_h.remote.is_empty() && !only_h.store_locally);
        assert!(Serve::All.ordinary() && Serve::Ordinary.ordinary());
        assert!(!Serve::Group(g).ordinary());
    }

    #[test]
    fn ordinary_targets_are_other_shards_with_matching_routes() {
        let mut routes = Routes::new(ShardId(0), 4);
        routes.apply_remote(ShardId(2), &change("a/+", None, 1));
        routes.apply_remote(ShardId(2), &change("a/#", None, 1));
        routes.apply_remote(ShardId(1), &change("a/b", None, 1));
        routes.apply_remote(ShardId(3), &change("x", None, 1));
        // Local subscriptions never make a remote target.
        routes.subscribe("a/b", SessionId(1), grant(QoS::AtMostOnce, 0));
        let plan = planned(&mut routes, "a/b", None);
        assert_eq!(
            plan.remote,
            vec![target(1, true, false, &[]), target(2, true, false, &[])]
        );
        assert!(plan.local_groups.is_empty());
        assert!(!plan.store_locally);
        assert!(planned(&mut routes, "q", None).is_empty());
        // MQTT-4.7.2-1 through the replica.
        routes.apply_remote(ShardId(3), &change("#", None, 1));
        assert!(planned(&mut routes, "$SYS/x", None).is_empty());
    }

    #[test]
    fn replica_drop_removes_target() {
        let mut routes = Routes::new(ShardId(0), 2);
        routes.apply_remote(ShardId(1), &change("a", None, 1));
        assert_eq!(planned(&mut routes, "a", None).remote.len(), 1);
        routes.apply_remote(ShardId(1), &change("a", None, 0));
        assert!(planned(&mut routes, "a", None).is_empty());
    }

    #[test]
    fn retained_owner_goes_into_the_plan() {
        let mut routes = Routes::new(ShardId(1), 3);
        let plan = planned(&mut routes, "a", Some(ShardId(1)));
        assert!(plan.store_locally);
        assert!(plan.remote.is_empty());
        let plan = planned(&mut routes, "a", Some(ShardId(2)));
        assert!(!plan.store_locally);
        assert_eq!(plan.remote, vec![target(2, false, true, &[])]);
        // Delivery and storage on one shard share one target.
        routes.apply_remote(ShardId(2), &change("a", None, 1));
        routes.apply_remote(ShardId(0), &change("#", None, 1));
        let plan = planned(&mut routes, "a", Some(ShardId(2)));
        assert_eq!(
            plan.remote,
            vec![target(0, true, false, &[]), target(2, true, true, &[])]
        );
        // The plan is cleared between calls.
        let mut plan = plan;
        routes.plan("$q", None, &mut plan); // "#" does not match "$q"
        assert!(plan.is_empty());
    }

    #[test]
    fn groups_with_one_name_and_different_filters_are_distinct() {
        let mut routes = Routes::new(ShardId(0), 2);
        let g = grant(QoS::AtMostOnce, 0);
        routes.subscribe("$share/g/a/+", SessionId(1), g);
        routes.subscribe("$share/g/a/#", SessionId(2), g);
        let plan = planned(&mut routes, "a/b", None);
        let mut groups = plan.local_groups.clone();
        groups.sort();
        let mut want = vec![group_key("g", "a/+"), group_key("g", "a/#")];
        want.sort();
        assert_eq!(groups, want);
        // Only "a/#" matches "a".
        let plan = planned(&mut routes, "a", None);
        assert_eq!(plan.local_groups, vec![group_key("g", "a/#")]);
    }

    #[test]
    fn remote_group_is_served_by_its_shard() {
        let mut routes = Routes::new(ShardId(0), 3);
        let key = group_key("g", "a/#");
        routes.apply_remote(ShardId(2), &change("a/#", Some(key), 4));
        routes.apply_remote(ShardId(2), &change("a/b", None, 1));
        let plan = planned(&mut routes, "a/b", Some(ShardId(1)));
        assert_eq!(
            plan.remote,
            vec![target(1, false, true, &[]), target(2, true, false, &[key])]
        );
        assert!(plan.local_groups.is_empty());
    }

    /// How often each shard serves `key` over `calls` plans of `topic`.
    fn serve_counts(routes: &mut Routes, topic: &str, key: GroupKey, calls: usize) -> Vec<usize> {
        let mut counts = vec![0; routes.shards];
        let mut plan = Plan::default();
        for _ in 0..calls {
            routes.plan(topic, None, &mut plan);
            let mut served = 0;
            if plan.local_groups.contains(&key) {
                counts[routes.own.0] += 1;
                served += 1;
            }
            for t in &plan.remote {
                if t.groups.contains(&key) {
                    counts[t.shard.0] += 1;
                    served += 1;
                }
            }
            assert_eq!(served, 1, "exactly one shard serves a group");
        }
        counts
    }

    #[test]
    fn shard_choice_is_weighted_by_members() {
        let mut routes = Routes::new(ShardId(0), 2);
        let key = group_key("g", "t");
        routes.subscribe("$share/g/t", SessionId(1), grant(QoS::AtMostOnce, 0));
        routes.apply_remote(ShardId(1), &change("t", Some(key), 99));
        // 1 member here against 99 there: 1% against 99%, exactly, since
        // the cursor walks every member in turn.
        assert_eq!(
            serve_counts(&mut routes, "t", key, 10_000),
            vec![100, 9_900]
        );

        let mut routes = Routes::new(ShardId(1), 4);
        routes.apply_remote(ShardId(0), &change("t", Some(key), 1));
        routes.apply_remote(ShardId(2), &change("t", Some(key), 3));
        routes.apply_remote(ShardId(3), &change("t", Some(key), 6));
        assert_eq!(
            serve_counts(&mut routes, "t", key, 1_000),
            vec![100, 0, 300, 600]
        );
        // Absolute counts: a shard's new count replaces the old one.
        routes.apply_remote(ShardId(3), &change("t", Some(key), 1));
        assert_eq!(
            serve_counts(&mut routes, "t", key, 500),
            vec![100, 0, 300, 100]
        );
    }

    #[test]
    fn groups_on_the_same_topics_do_not_fall_into_step() {
        // Two groups, each with one member here and one on shard 1, both
        // matching every publish: each must still alternate.
        let mut routes = Routes::new(ShardId(0), 2);
        let g = grant(QoS::AtMostOnce, 0);
        let a = group_key("a", "t");
        let b = group_key("b", "t");
        routes.subscribe("$share/a/t", SessionId(1), g);
        routes.subscribe("$share/b/t", SessionId(1), g);
        routes.apply_remote(ShardId(1), &change("t", Some(a), 1));
        routes.apply_remote(ShardId(1), &change("t", Some(b), 1));
        assert_eq!(serve_counts(&mut routes, "t", a, 100), vec![50, 50]);
        assert_eq!(serve_counts(&mut routes, "t", b, 100), vec![50, 50]);
    }

    #[test]
    fn weighted_pick_walks_positions_in_order() {
        let k = GroupKey(0);
        let c = [(k, ShardId(0), 2), (k, ShardId(3), 1)];
        let picks: Vec<usize> = (0..6).map(|i| weighted_pick(&c, i).unwrap().0).collect();
        assert_eq!(picks, vec![0, 0, 3, 0, 0, 3]);
        assert_eq!(weighted_pick(&[], 5), None);
        assert_eq!(weighted_pick(&[(k, ShardId(1), 0)], 5), None);
        assert_eq!(weighted_pick(&c, u64::MAX), Some(ShardId(0)));
    }

    #[test]
    fn departed_group_is_no_longer_planned() {
        let mut routes = Routes::new(ShardId(0), 2);
        let key = group_key("g", "t");
        routes.subscribe("$share/g/t", SessionId(1), grant(QoS::AtMostOnce, 0));
        routes.apply_remote(ShardId(1), &change("t", Some(key), 1));
        routes.unsubscribe("$share/g/t", SessionId(1));
        assert_eq!(serve_counts(&mut routes, "t", key, 4), vec![0, 4]);
        routes.apply_remote(ShardId(1), &change("t", Some(key), 0));
        assert!(planned(&mut routes, "t", None).is_empty());
        assert!(routes.tallies.is_empty());
    }

    #[derive(Debug, Clone)]
    enum Op {
        Remote(usize, String, bool),
        Local(u64, String, bool),
    }

    fn filter_strategy() -> impl Strategy<Value = String> {
        let level = prop::sample::select(vec!["a", "b", "+", "$x", ""]);
        (prop::collection::vec(level, 1..4), any::<bool>())
            .prop_map(|(levels, hash)| {
                let mut filter = levels.join("/");
                if hash {
                    filter.push_str("/#");
                }
                filter
            })
            .prop_filter("empty filter", |f| !f.is_empty())
    }

    fn topic_strategy() -> impl Strategy<Value = String> {
        let level = prop::sample::select(vec!["a", "b", "$x", ""]);
        prop::collection::vec(level, 1..5).prop_map(|levels| levels.join("/"))
    }

    fn op_strategy() -> impl Strategy<Value = Op> {
        prop_oneof![
            (1..4usize, filter_strategy(), any::<bool>())
                .prop_map(|(s, f, add)| Op::Remote(s, f, add)),
            (0..3u64, filter_strategy(), any::<bool>())
                .prop_map(|(s, f, add)| Op::Local(s, f, add)),
        ]
    }

    proptest! {
        /// Ordinary remote targets agree with a naive scan of the routes
        /// every shard announced, fed through real `RouteChange`s.
        #[test]
        fn plan_targets_agree_with_naive_scan(
            ops in prop::collection::vec(op_strategy(), 0..40),
            topics in prop::collection::vec(topic_strategy(), 1..8),
        ) {
            // Shard 0 plans; shards 1..4 are simulated by their own Routes.
            let mut shards: Vec<Routes> = (0..4).map(|i| Routes::new(ShardId(i), 4)).collect();
            let mut model: std::collections::BTreeSet<(usize, String)> = Default::default();
            for op in &ops {
                let (shard, session, filter, add) = match op {
                    Op::Remote(s, f, add) => (*s, 0, f, *add),
                    Op::Local(s, f, add) => (0, *s, f, *add),
                };
                let grant = grant(QoS::AtMostOnce, 0);
                let changed: Option<RouteChange> = if add {
                    shards[shard].subscribe(filter, SessionId(session), grant)
                } else {
                    shards[shard].unsubscribe(filter, SessionId(session))
                };
                if let Some(c) = changed {
                    for (i, other) in shards.iter_mut().enumerate() {
                        if i != shard {
                            other.apply_remote(ShardId(shard), &c);
                        }
                    }
                }
                if shard != 0 {
                    if add { model.insert((shard, filter.clone())); } else { model.remove(&(shard, filter.clone())); }
                }
            }
            let mut plan = Plan::default();
            for topic in &topics {
                shards[0].plan(topic, None, &mut plan);
                let got: Vec<usize> = plan.remote.iter().map(|t| { assert!(t.deliver); t.shard.0 }).collect();
                let mut want: Vec<usize> = model.iter().filter(|(_, f)| matches(f, topic)).map(|(s, _)| *s).collect();
                want.dedup();
                prop_assert_eq!(got, want, "topic {}", topic);
            }
        }
    }
}
