//! The serving shard's decision: which of its sessions get a publish, at
//! what QoS, with which subscription identifiers, and which member of each
//! shared group it serves.
//!
//! Rules:
//! - a session's ordinary subscriptions that match one publish merge into
//!   one [`Delivery`] with the highest granted QoS and every non-zero
//!   subscription identifier (MQTT-3.3.4-2, MQTT-3.3.4-3), no cap;
//! - a subscription with No Local set does not count when the publish came
//!   from its own session (MQTT-3.8.3-3); a session whose only matching
//!   subscriptions are skipped that way gets nothing;
//! - each shared group served gets its own [`Delivery`] for one member,
//!   never merged with that session's ordinary copy (MQTT 5.0 section
//!   4.8.2: every subscription matching a message gets a copy), carrying
//!   only the member's grant and identifier; No Local does not apply to
//!   shared subscriptions (it is a Protocol Error there, MQTT-3.8.3-4);
//! - the delivered QoS is min(message QoS, granted QoS) (MQTT-3.8.4-8,
//!   section 3.3.5 downgrade);
//! - a group whose members here are all gone, while another shard still
//!   has some, is reported in [`Matches::orphans`] so the caller can hand
//!   the message on instead of losing it.
//!
//! Invariants: [`Matches`] is cleared at the start of every call; each
//! delivery's identifiers are a range of `Matches::ids`, sorted and without
//! duplicates; once buffers are warm, matching ordinary subscriptions
//! allocates nothing.

use std::ops::Range;

use ringmq_codec::QoS;
use ringmq_session::SessionId;

use crate::key::{GroupKey, ShardId};
use crate::routes::Routes;

/// The local deliveries of one publish.
#[derive(Default, Debug)]
pub struct Matches {
    /// One entry per copy to queue: per session for ordinary subscriptions
    /// (sorted by session), then per shared group served.
    pub deliveries: Vec<Delivery>,
    /// Groups whose local members are all gone while another shard still
    /// has members: (that shard, group), for hand-on.
    pub orphans: Vec<(ShardId, GroupKey)>,
    /// Subscription identifiers of all deliveries, back to back.
    ids: Vec<u32>,
}

impl Matches {
    /// The subscription identifiers `d` carries (empty if `d` came from
    /// another `Matches`).
    pub fn ids(&self, d: &Delivery) -> &[u32] {
        self.ids.get(d.ids.clone()).unwrap_or(&[])
    }

    /// Empties every list, keeping the buffers.
    pub fn clear(&mut self) {
        self.deliveries.clear();
        self.orphans.clear();
        self.ids.clear();
    }

    /// Sorts and de-duplicates the identifiers from `start` on (two
    /// subscriptions may carry the same identifier).
    fn dedup_ids_from(&mut self, start: usize) {
        let tail = &mut self.ids[start..];
        tail.sort_unstable();
        let mut kept = start;
        for read in start..self.ids.len() {
            if kept == start || self.ids[read] != self.ids[kept - 1] {
                self.ids[kept] = self.ids[read];
                kept += 1;
            }
        }
        self.ids.truncate(kept);
    }
}

/// One copy of the publish for one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The receiving session.
    pub session: SessionId,
    /// min(message QoS, granted QoS) (MQTT-3.8.4-8 / 3.3.5 downgrade).
    pub qos: QoS,
    /// Retain As Published on at least one of the merged subscriptions.
    pub retain_as_published: bool,
    /// true for a shared-subscription copy.
    pub shared: bool,
    /// This delivery's identifiers in `Matches::ids`.
    ids: Range<usize>,
}

impl Routes {
    /// Local deliveries on this shard. `ordinary`: match ordinary
    /// subscriptions; `groups`: shared groups this shard must serve (one
    /// member each); `qos`: the message's QoS; `origin`: the publishing
    /// session (No Local, MQTT-3.8.3-3); `connected(s)`: whether session s
    /// has a live connection (prefer connected members). Clears `out`
    /// first.
    #[allow(clippy::too_many_arguments)] // the signature is the crate's API
    pub fn match_local(
        &mut self,
        topic: &str,
        qos: QoS,
        origin: Option<SessionId>,
        ordinary: bool,
        groups: &[GroupKey],
        connected: impl Fn(SessionId) -> bool,
        out: &mut Matches,
    ) {
        out.clear();
        if ordinary {
            self.match_ordinary(topic, qos, origin, out);
        }
        if !groups.is_empty() {
            self.match_groups(topic, qos, groups, &connected, out);
        }
    }

    fn match_ordinary(
        &mut self,
        topic: &str,
        qos: QoS,
        origin: Option<SessionId>,
        out: &mut Matches,
    ) {
        let matched = &mut self.matched;
        matched.clear();
        self.local
            .for_each_match(topic, |session, sub| matched.push((session, *sub)));
        // Group each session's subscriptions together.
        matched.sort_unstable_by_key(|(session, _)| *session);
        for run in matched.chunk_by(|a, b| a.0 == b.0) {
            let session = run[0].0;
            let start = out.ids.len();
            let mut granted: Option<QoS> = None;
            let mut retain_as_published = false;
            for (_, sub) in run {
                // MQTT-3.8.3-3: No Local, never to the publisher's session.
                if sub.options.no_local && origin == Some(session) {
                    continue;
                }
                // MQTT-3.3.4-2: the highest QoS of the overlapping ones.
                granted = Some(granted.map_or(sub.options.qos, |q| q.max(sub.options.qos)));
                retain_as_published |= sub.options.retain_as_published;
                // MQTT-3.3.4-3: every identifier, however many.
                if sub.id != 0 {
                    out.ids.push(sub.id);
                }
            }
            let Some(granted) = granted else {
                continue;
            };
            out.dedup_ids_from(start);
            out.deliveries.push(Delivery {
                session,
                qos: qos.min(granted),
                retain_as_published,
                shared: false,
                ids: start..out.ids.len(),
            });
        }
        matched.clear();
    }

    fn match_groups(
        &mut self,
        topic: &str,
        qos: QoS,
        groups: &[GroupKey],
        connected: &impl Fn(SessionId) -> bool,
        out: &mut Matches,
    ) {
        let mut found = std::mem::take(&mut self.found);
        found.clear();
        // Walk the trie rather than look groups up by key alone: only a
        // group whose own filter matches the topic may serve it.
        self.shared_local.for_each_match(topic, |group, &slot| {
            if groups.contains(&group) {
                found.push((group, slot));
            }
        });
        for &(_, slot) in &found {
            let Some(local) = self.groups.get_mut(slot).and_then(Option::as_mut) else {
                debug_assert!(false, "trie names a free group slot");
                continue;
            };
            let Some((session, sub)) = local.pick(connected) else {
                continue;
            };
            let start = out.ids.len();
            if sub.id != 0 {
                out.ids.push(sub.id);
            }
            out.deliveries.push(Delivery {
                session,
                qos: qos.min(sub.options.qos),
                retain_as_published: sub.options.retain_as_published,
                shared: true,
                ids: start..out.ids.len(),
            });
        }
        for (i, &group) in groups.iter().enumerate() {
            let repeated = groups[..i].contains(&group);
            if repeated || found.iter().any(|&(g, _)| g == group) {
                continue;
            }
            if let Some(shard) = self.other_member_shard(topic, group) {
                out.orphans.push((shard, group));
            }
        }
        found.clear();
        self.found = found;
    }

    /// The other shard with the most members of `group` for `topic`
    /// (lowest id on a tie), if any.
    fn other_member_shard(&self, topic: &str, group: GroupKey) -> Option<ShardId> {
        let mut best: Option<(u32, ShardId)> = None;
        self.shared_remote
            .for_each_match(topic, |(g, shard), &members| {
                let better = match best {
                    None => true,
                    Some((m, s)) => members > m || (members == m && shard < s),
                };
                if g == group && members > 0 && better {
                    best = Some((members, shard));
                }
            });
        best.map(|(_, shard)| shard)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::group_key;
    use crate::routes::tests::change;
    use proptest::prelude::*;
    use ringmq_codec::SubscriptionOptions;
    use ringmq_session::Subscription;
    use ringmq_topic::matches;

    fn sub(qos: QoS, id: u32, no_local: bool, rap: bool) -> Subscription {
        Subscription {
            options: SubscriptionOptions {
                qos,
                no_local,
                retain_as_published: rap,
                ..SubscriptionOptions::default()
            },
            id,
        }
    }

    /// (session, qos, rap, shared, ids) of every delivery.
    type Flat = (u64, QoS, bool, bool, Vec<u32>);

    fn flat(m: &Matches) -> Vec<Flat> {
        m.deliveries
            .iter()
            .map(|d| {
                (
                    d.session.0,
                    d.qos,
                    d.retain_as_published,
                    d.shared,
                    m.ids(d).to_vec(),
                )
            })
            .collect()
    }

    fn all_connected(_: SessionId) -> bool {
        true
    }

    fn ordinary(routes: &mut Routes, topic: &str, qos: QoS, origin: Option<u64>) -> Vec<Flat> {
        let mut out = Matches::default();
        routes.match_local(
            topic,
            qos,
            origin.map(SessionId),
            true,
            &[],
            all_connected,
            &mut out,
        );
        flat(&out)
    }

    #[test]
    fn overlapping_subscriptions_merge() {
        let mut routes = Routes::new(ShardId(0), 1);
        routes.subscribe("a/+", SessionId(1), sub(QoS::AtMostOnce, 0, false, false));
        routes.subscribe("a/#", SessionId(1), sub(QoS::ExactlyOnce, 5, false, true));
        routes.subscribe("a/b", SessionId(1), sub(QoS::AtLeastOnce, 3, false, false));
        routes.subscribe("a/b", SessionId(2), sub(QoS::AtLeastOnce, 0, false, false));
        routes.subscribe("x", SessionId(3), sub(QoS::AtLeastOnce, 0, false, false));
        assert_eq!(
            ordinary(&mut routes, "a/b", QoS::ExactlyOnce, None),
            vec![
                (1, QoS::ExactlyOnce, true, false, vec![3, 5]),
                (2, QoS::AtLeastOnce, false, false, vec![]),
            ]
        );
        // The downgrade is min(message, merged grant).
        assert_eq!(
            ordinary(&mut routes, "a/b", QoS::AtMostOnce, None),
            vec![
                (1, QoS::AtMostOnce, true, false, vec![3, 5]),
                (2, QoS::AtMostOnce, false, false, vec![]),
            ]
        );
        assert_eq!(
            ordinary(&mut routes, "a/c", QoS::AtLeastOnce, None),
            vec![(1, QoS::AtLeastOnce, true, false, vec![5])]
        );
        assert_eq!(ordinary(&mut routes, "b", QoS::AtLeastOnce, None), vec![]);
    }

    #[test]
    fn subscription_identifiers_are_not_capped() {
        let mut routes = Routes::new(ShardId(0), 1);
        let filters = ["a/b/c", "a/b/+", "a/+/c", "+/b/c", "a/#", "#"];
        for (i, filter) in filters.iter().enumerate() {
            let id = 100 + i as u32;
            routes.subscribe(filter, SessionId(1), sub(QoS::AtMostOnce, id, false, false));
        }
        // Same identifier twice is sent once.
        routes.subscribe(
            "+/+/+",
            SessionId(1),
            sub(QoS::AtMostOnce, 100, false, false),
        );
        let got = ordinary(&mut routes, "a/b/c", QoS::AtLeastOnce, None);
        assert_eq!(
            got,
            vec![(1, QoS::AtMostOnce, false, false, (100..106).collect())]
        );
    }

    #[test]
    fn no_local_skips_only_the_publisher() {
        let mut routes = Routes::new(ShardId(0), 1);
        routes.subscribe("a/#", SessionId(1), sub(QoS::ExactlyOnce, 1, true, false));
        routes.subscribe("a/b", SessionId(1), sub(QoS::AtMostOnce, 2, false, false));
        routes.subscribe("a/b", SessionId(2), sub(QoS::AtLeastOnce, 3, true, false));
        // From session 1: its No Local sub does not count (QoS, ids).
        assert_eq!(
            ordinary(&mut routes, "a/b", QoS::ExactlyOnce, Some(1)),
            vec![
                (1, QoS::AtMostOnce, false, false, vec![2]),
                (2, QoS::AtLeastOnce, false, false, vec![3]),
            ]
        );
        // Only No Local subscriptions match: session 1 gets nothing.
        assert_eq!(
            ordinary(&mut routes, "a/c", QoS::ExactlyOnce, Some(1)),
            vec![]
        );
        assert_eq!(
            ordinary(&mut routes, "a/b", QoS::ExactlyOnce, Some(2)),
            vec![(1, QoS::ExactlyOnce, false, false, vec![1, 2])]
        );
        // No origin (a will, a message from another shard): nobody skipped.
        assert_eq!(
            ordinary(&mut routes, "a/c", QoS::ExactlyOnce, None),
            vec![(1, QoS::ExactlyOnce, false, false, vec![1])]
        );
    }

    #[test]
    fn shared_and_ordinary_copies_are_separate() {
        let mut routes = Routes::new(ShardId(0), 1);
        routes.subscribe("a/b", SessionId(1), sub(QoS::AtMostOnce, 1, false, false));
        // No Local on the shared one is ignored (MQTT-3.8.3-4).
        routes.subscribe(
            "$share/g/a/+",
            SessionId(1),
            sub(QoS::AtLeastOnce, 2, true, true),
        );
        let key = group_key("g", "a/+");
        let mut out = Matches::default();
        routes.match_local(
            "a/b",
            QoS::ExactlyOnce,
            Some(SessionId(1)),
            true,
            &[key],
            all_connected,
            &mut out,
        );
        assert_eq!(
            flat(&out),
            vec![
                (1, QoS::AtMostOnce, false, false, vec![1]),
                (1, QoS::AtLeastOnce, true, true, vec![2]),
            ]
        );
        // Only the groups asked for are served; ordinary only when asked.
        routes.match_local(
            "a/b",
            QoS::ExactlyOnce,
            None,
            false,
            &[],
            all_connected,
            &mut out,
        );
        assert!(out.deliveries.is_empty());
        routes.match_local(
            "a/b",
            QoS::ExactlyOnce,
            None,
            false,
            &[key],
            all_connected,
            &mut out,
        );
        assert_eq!(flat(&out), vec![(1, QoS::AtLeastOnce, true, true, vec![2])]);
    }

    #[test]
    fn groups_with_one_name_and_two_filters_each_get_a_copy() {
        let mut routes = Routes::new(ShardId(0), 1);
        routes.subscribe(
            "$share/g/a/+",
            SessionId(1),
            sub(QoS::AtMostOnce, 1, false, false),
        );
        routes.subscribe(
            "$share/g/a/#",
            SessionId(1),
            sub(QoS::AtMostOnce, 2, false, false),
        );
        let mut plan = crate::Plan::default();
        routes.plan("a/b", None, &mut plan);
        assert_eq!(plan.local_groups.len(), 2);
        let mut out = Matches::default();
        routes.match_local(
            "a/b",
            QoS::AtMostOnce,
            None,
            true,
            &plan.local_groups,
            all_connected,
            &mut out,
        );
        let mut got = flat(&out);
        got.sort();
        assert_eq!(
            got,
            vec![
                (1, QoS::AtMostOnce, false, true, vec![1]),
                (1, QoS::AtMostOnce, false, true, vec![2]),
            ]
        );
    }

    #[test]
    fn group_is_served_only_where_its_filter_matches() {
        // A group key asked for on a topic its filter does not match (a
        // stale or colliding key) serves nobody.
        let mut routes = Routes::new(ShardId(0), 1);
        routes.subscribe(
            "$share/g/a",
            SessionId(1),
            sub(QoS::AtMostOnce, 0, false, false),
        );
        let mut out = Matches::default();
        let key = group_key("g", "a");
        routes.match_local(
            "b",
            QoS::AtMostOnce,
            None,
            false,
            &[key],
            all_connected,
            &mut out,
        );
        assert!(out.deliveries.is_empty());
        assert!(out.orphans.is_empty());
    }

    /// Which members of `$share/g/t` get `n` messages.
    fn picks(routes: &mut Routes, n: usize, connected: impl Fn(SessionId) -> bool) -> Vec<u64> {
        let key = group_key("g", "t");
        let mut out = Matches::default();
        let mut got = Vec::new();
        for _ in 0..n {
            routes.match_local(
                "t",
                QoS::AtMostOnce,
                None,
                false,
                &[key],
                &connected,
                &mut out,
            );
            assert_eq!(out.deliveries.len(), 1);
            got.push(out.deliveries[0].session.0);
        }
        got
    }

    fn count(picks: &[u64], session: u64) -> usize {
        picks.iter().filter(|&&s| s == session).count()
    }

    #[test]
    fn member_choice_is_round_robin_and_prefers_connected() {
        let mut routes = Routes::new(ShardId(0), 1);
        for s in 1..=4 {
            routes.subscribe(
                "$share/g/t",
                SessionId(s),
                sub(QoS::AtMostOnce, 0, false, false),
            );
        }
        let all = picks(&mut routes, 400, |_| true);
        for s in 1..=4 {
            assert_eq!(count(&all, s), 100, "session {s}");
        }
        // Only 2 and 4 connected: they share everything evenly.
        let some = picks(&mut routes, 400, |s| s.0 % 2 == 0);
        assert_eq!((count(&some, 2), count(&some, 4)), (200, 200));
        // Only 3 connected: it gets everything.
        assert_eq!(count(&picks(&mut routes, 50, |s| s.0 == 3), 3), 50);
        // Nobody connected: round robin over all (their sessions queue).
        let none = picks(&mut routes, 400, |_| false);
        for s in 1..=4 {
            assert_eq!(count(&none, s), 100, "session {s}");
        }
        // Members leaving mid-stream: the rest keep sharing.
        routes.unsubscribe("$share/g/t", SessionId(1));
        routes.unsubscribe("$share/g/t", SessionId(4));
        let rest = picks(&mut routes, 100, |_| true);
        assert_eq!((count(&rest, 2), count(&rest, 3)), (50, 50));
    }

    #[test]
    fn orphaned_group_is_handed_to_a_shard_with_members() {
        let mut routes = Routes::new(ShardId(0), 4);
        let key = group_key("g", "t/#");
        let gone = group_key("gone", "t/#");
        routes.apply_remote(ShardId(1), &change("t/#", Some(key), 1));
        routes.apply_remote(ShardId(3), &change("t/#", Some(key), 5));
        routes.apply_remote(ShardId(2), &change("t/#", Some(key), 5));
        let mut out = Matches::default();
        // The plan that sent `key` here predates our last member leaving.
        routes.match_local(
            "t/x",
            QoS::AtMostOnce,
            None,
            true,
            &[key, gone, key],
            all_connected,
            &mut out,
        );
        assert!(out.deliveries.is_empty());
        // Most members wins, lowest shard on a tie; a group with members
        // nowhere is simply done; a repeated key is reported once.
        assert_eq!(out.orphans, vec![(ShardId(2), key)]);
        // With a local member there is no orphan.
        routes.subscribe(
            "$share/g/t/#",
            SessionId(7),
            sub(QoS::AtMostOnce, 0, false, false),
        );
        routes.match_local(
            "t/x",
            QoS::AtMostOnce,
            None,
            true,
            &[key],
            all_connected,
            &mut out,
        );
        assert_eq!(out.deliveries.len(), 1);
        assert!(out.orphans.is_empty());
    }

    #[test]
    fn ids_of_a_foreign_delivery_are_empty() {
        let mut routes = Routes::new(ShardId(0), 1);
        routes.subscribe("a", SessionId(1), sub(QoS::AtMostOnce, 9, false, false));
        let mut out = Matches::default();
        routes.match_local(
            "a",
            QoS::AtMostOnce,
            None,
            true,
            &[],
            all_connected,
            &mut out,
        );
        let d = out.deliveries[0].clone();
        assert_eq!(out.ids(&d), &[9]);
        assert_eq!(Matches::default().ids(&d), &[] as &[u32]);
    }

    #[test]
    fn dedup_keeps_earlier_deliveries_intact() {
        let mut m = Matches::default();
        m.ids.extend([7, 7, 3, 9, 3, 3, 1]);
        m.dedup_ids_from(2);
        assert_eq!(m.ids, vec![7, 7, 1, 3, 9]);
        m.dedup_ids_from(5);
        assert_eq!(m.ids, vec![7, 7, 1, 3, 9]);
    }

    #[global_allocator]
    static GLOBAL: ringmq_testalloc::CountingAlloc = ringmq_testalloc::CountingAlloc;

    #[test]
    fn warm_routing_does_not_allocate() {
        let mut routes = Routes::new(ShardId(0), 3);
        for s in 0..20u64 {
            let filter = ["a/+", "a/#", "#", "+/b", "a/b"][s as usize % 5];
            routes.subscribe(
                filter,
                SessionId(s),
                sub(QoS::AtLeastOnce, s as u32 + 1, s % 3 == 0, false),
            );
            routes.subscribe(
                "a/b",
                SessionId(s),
                sub(QoS::AtMostOnce, 50 + s as u32, false, false),
            );
        }
        routes.apply_remote(ShardId(1), &change("a/#", None, 1));
        routes.apply_remote(ShardId(2), &change("+/b", None, 1));
        let topics = ["a/b", "a/c", "x/b", "$SYS/b", "q"];
        let mut out = Matches::default();
        let mut plan = crate::Plan::default();
        let mut total = 0;
        let mut run = |routes: &mut Routes, out: &mut Matches, plan: &mut crate::Plan| {
            for topic in topics {
                routes.plan(topic, Some(ShardId(2)), plan);
                routes.match_local(
                    topic,
                    QoS::ExactlyOnce,
                    Some(SessionId(3)),
                    true,
                    &[],
                    all_connected,
                    out,
                );
                total += out.deliveries.len() + plan.remote.len();
            }
        };
        // Warm the buffers, then count.
        run(&mut routes, &mut out, &mut plan);
        let before = ringmq_testalloc::allocations();
        run(&mut routes, &mut out, &mut plan);
        let after = ringmq_testalloc::allocations();
        assert_eq!(after - before, 0, "allocations while routing");
        assert!(total > 0);
    }

    #[derive(Debug, Clone)]
    struct SubOp {
        session: u64,
        filter: String,
        qos: u8,
        id: u32,
        no_local: bool,
        add: bool,
    }

    fn filter_strategy() -> impl Strategy<Value = String> {
        let level = prop::sample::select(vec!["a", "b", "+", "$x", ""]);
        (prop::collection::vec(level, 1..4), any::<bool>()).prop_map(|(levels, hash)| {
            let mut filter = levels.join("/");
            if hash {
                filter.push_str("/#");
            }
            filter
        })
    }

    fn topic_strategy() -> impl Strategy<Value = String> {
        let level = prop::sample::select(vec!["a", "b", "$x", ""]);
        prop::collection::vec(level, 1..5).prop_map(|levels| levels.join("/"))
    }

    fn sub_op() -> impl Strategy<Value = SubOp> {
        (
            0..4u64,
            filter_strategy(),
            0..3u8,
            0..4u32,
            any::<bool>(),
            prop::bool::weighted(0.75),
        )
            .prop_map(|(session, filter, qos, id, no_local, add)| SubOp {
                session,
                filter,
                qos,
                id,
                no_local,
                add,
            })
    }

    proptest! {
        /// Ordinary matching agrees with a naive merge over every
        /// subscription with `ringmq_topic::matches`.
        #[test]
        fn local_matching_agrees_with_naive_merge(
            ops in prop::collection::vec(sub_op(), 0..40),
            topic in topic_strategy(),
            origin in prop::option::of(0..4u64),
            msg_qos in 0..3u8,
        ) {
            let mut routes = Routes::new(ShardId(0), 1);
            let mut model: std::collections::BTreeMap<(u64, String), Subscription> = Default::default();
            for op in &ops {
                if op.add {
                    let s = sub(QoS::from_u8(op.qos).unwrap(), op.id, op.no_local, op.id == 1);
                    routes.subscribe(&op.filter, SessionId(op.session), s);
                    model.insert((op.session, op.filter.clone()), s);
                } else {
                    routes.unsubscribe(&op.filter, SessionId(op.session));
                    model.remove(&(op.session, op.filter.clone()));
                }
            }
            prop_assert_eq!(routes.local_len(), model.len());
            let msg_qos = QoS::from_u8(msg_qos).unwrap();
            let mut want: Vec<Flat> = Vec::new();
            for session in 0..4u64 {
                let subs: Vec<&Subscription> = model
                    .iter()
                    .filter(|((s, f), sub)| {
                        *s == session
                            && matches(f, &topic)
                            && !(sub.options.no_local && origin == Some(session))
                    })
                    .map(|(_, sub)| sub)
                    .collect();
                if subs.is_empty() {
                    continue;
                }
                let granted = subs.iter().map(|s| s.options.qos).max().unwrap();
                let rap = subs.iter().any(|s| s.options.retain_as_published);
                let mut ids: Vec<u32> = subs.iter().map(|s| s.id).filter(|&i| i != 0).collect();
                ids.sort();
                ids.dedup();
                want.push((session, msg_qos.min(granted), rap, false, ids));
            }
            let got = ordinary(&mut routes, &topic, msg_qos, origin);
            prop_assert_eq!(got, want);
        }
    }
}
