//! Routing: this shard's subscription tries and its replica of the route
//! table (filter -> shards with subscribers).
//!
//! A PUBLISH read here is matched once against the replica and sent once to
//! each other shard with subscribers; each shard then matches its own trie
//! and queues to each subscriber. Payloads travel as shared `Bytes`.
//!
//! Shared subscriptions (`$share/group/filter`) live in their own tries,
//! keyed by (group hash, session) locally and (group hash, shard) in the
//! replica: the publishing shard picks one shard per matching group (round
//! robin among the shards with members) and that shard picks one member.
//!
//! Ordering invariant: a shard drains its inbox before routing a publish it
//! read, and a SUBACK is written only after the route-add is in every
//! other shard's inbox, so a publish that causally follows a SUBACK is never
//! missed, even across shards.

use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hashbrown::HashMap;
use ringmq_codec::{
    Packet, Properties, Publish, QoS, ReasonCode, SubAck, Subscribe, UnsubAck, Unsubscribe, Will,
};
use ringmq_session::{CloseCause, Subscription};
use ringmq_topic::Trie;

use super::conn::Conn;
use super::Shard;
use crate::mesh::{Control, RoutedPublish};
use crate::stats::ShardStats;

/// A publish some target shards could not take yet (inbox full).
pub(crate) struct BlockedRoute {
    pending: Vec<(usize, RoutedPublish)>,
}

/// The local tries plus the replica of other shards' routes.
pub(crate) struct Router {
    /// filter -> session serial -> grant (this shard's sessions).
    local: Trie<u64, Subscription>,
    /// inner filter -> (group hash, session serial) -> grant.
    shared_local: Trie<(u64, u64), Subscription>,
    /// filter -> other shards that have subscribers for it.
    remote: Trie<usize, ()>,
    /// inner filter -> (group hash, shard) with members of that group.
    shared_remote: Trie<(u64, usize), ()>,
    /// Reused by `deliver_local` so matching allocates nothing.
    matched: Vec<(u64, Subscription)>,
    /// Reused for shared-group matching.
    group_matched: Vec<((u64, u64), Subscription)>,
    /// Reused by `route_publish`: the other shards a publish goes to.
    targets: Vec<(usize, RoutedPublish)>,
    /// Reused by `route_publish`: (shard, group) picked per shared group.
    group_picks: Vec<(usize, u64)>,
    /// (inner filter, group) -> members on this shard.
    group_members: HashMap<(Box<str>, u64), u32>,
    /// Round-robin cursor for picking a shard per shared group.
    cursor: u64,
    /// Round-robin cursor for picking a member; separate from `cursor` so
    /// the two choices do not fall into step (which sent every message for
    /// this shard to one member).
    member_cursor: u64,
}

/// The group part of `$share/group/filter` as a stable 64-bit key.
pub(crate) fn group_key(group: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in group.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// A filter split into (inner filter, group key) for shared subscriptions.
fn split_filter(filter: &str) -> (&str, Option<u64>) {
    match ringmq_topic::parse_shared(filter) {
        Ok(Some(shared)) => (shared.filter, Some(group_key(shared.group))),
        _ => (filter, None),
    }
}

impl Router {
    pub(crate) fn new() -> Self {
        Self {
            local: Trie::new(),
            shared_local: Trie::new(),
            remote: Trie::new(),
            shared_remote: Trie::new(),
            matched: Vec::new(),
            group_matched: Vec::new(),
            targets: Vec::new(),
            group_picks: Vec::new(),
            group_members: HashMap::new(),
            cursor: 0,
            member_cursor: 0,
        }
    }

    /// Adds a local subscription; true when it is the first here for that
    /// filter (and group).
    fn add_local(&mut self, filter: &str, serial: u64, sub: Subscription) -> bool {
        match split_filter(filter) {
            (inner, Some(group)) => {
                if self
                    .shared_local
                    .insert(inner, (group, serial), sub)
                    .is_some()
                {
                    return false;
                }
                let members = self.group_members.entry((inner.into(), group)).or_insert(0);
                *members += 1;
                *members == 1
            }
            (filter, None) => {
                let first = self.local.filter_len(filter) == 0;
                self.local.insert(filter, serial, sub);
                first
            }
        }
    }

    /// Removes a local subscription; true when it was the last here.
    fn remove_local(&mut self, filter: &str, serial: u64) -> bool {
        match split_filter(filter) {
            (inner, Some(group)) => {
                if self.shared_local.remove(inner, (group, serial)).is_none() {
                    return false;
                }
                let key: (Box<str>, u64) = (inner.into(), group);
                match self.group_members.get_mut(&key) {
                    Some(n) if *n > 1 => {
                        *n -= 1;
                        false
                    }
                    _ => {
                        self.group_members.remove(&key);
                        true
                    }
                }
            }
            (filter, None) => {
                self.local.remove(filter, serial).is_some() && self.local.filter_len(filter) == 0
            }
        }
    }

    pub(crate) fn add_remote(&mut self, filter: &[u8], group: Option<u64>, shard: usize) {
        if let Ok(filter) = std::str::from_utf8(filter) {
            match group {
                Some(group) => {
                    self.shared_remote.insert(filter, (group, shard), ());
                }
                None => {
                    self.remote.insert(filter, shard, ());
                }
            }
        }
    }

    pub(crate) fn drop_remote(&mut self, filter: &[u8], group: Option<u64>, shard: usize) {
        if let Ok(filter) = std::str::from_utf8(filter) {
            match group {
                Some(group) => {
                    self.shared_remote.remove(filter, (group, shard));
                }
                None => {
                    self.remote.remove(filter, shard);
                }
            }
        }
    }

    /// Another shard with members of `group` for `topic`, if any.
    fn other_group_shard(&self, topic: &str, group: u64, own: usize) -> Option<usize> {
        let mut found = None;
        self.shared_remote.for_each_match(topic, |(g, shard), _| {
            if g == group && shard != own && found.is_none() {
                found = Some(shard);
            }
        });
        found
    }

    /// Other shards with an ordinary subscriber matching `topic`.
    fn remote_targets(&self, topic: &str) -> u64 {
        let mut mask = 0u64;
        self.remote
            .for_each_match(topic, |shard, _| mask |= 1 << shard);
        mask
    }

    /// For each shared group matching `topic`, the shard chosen to serve it
    /// (`own` stands for this shard). Appends (shard, group) to `out`.
    fn pick_group_shards(&mut self, topic: &str, own: usize, out: &mut Vec<(usize, u64)>) {
        // group -> shard mask with members.
        let mut groups: Vec<(u64, u64)> = Vec::new();
        let mut add = |group: u64, shard: usize| match groups.iter_mut().find(|(g, _)| *g == group)
        {
            Some((_, mask)) => *mask |= 1 << shard,
            None => groups.push((group, 1 << shard)),
        };
        if self.shared_remote.is_empty() && self.shared_local.is_empty() {
            return;
        }
        self.shared_remote
            .for_each_match(topic, |(group, shard), _| add(group, shard));
        self.shared_local
            .for_each_match(topic, |(group, _), _| add(group, own));
        for (group, mask) in groups {
            let n = u64::from(mask.count_ones());
            self.cursor = self.cursor.wrapping_add(1);
            let mut pick = self.cursor % n;
            let mut rest = mask;
            loop {
                let shard = rest.trailing_zeros() as usize;
                if pick == 0 {
                    out.push((shard, group));
                    break;
                }
                pick -= 1;
                rest &= rest - 1;
            }
        }
    }
}

/// How often a shared-group message may be handed on to another shard whose
/// members are still there (bounds ping-pong while routes converge).
const MAX_GROUP_HOPS: u8 = 2;

/// Removes what belongs to the publisher's connection only.
fn strip_connection_properties(publish: &mut Publish) {
    publish.dup = false;
    publish.packet_id = 0;
    publish.properties.topic_alias = None;
    publish.properties.subscription_identifiers.clear();
}

/// Seconds left before `expires_at`, rounded up; `None` once expired.
pub(crate) fn remaining_secs(expires_at: Instant, now: Instant) -> Option<u32> {
    let left = expires_at.checked_duration_since(now)?;
    if left.is_zero() {
        return None;
    }
    Some(
        left.as_secs()
            .saturating_add(u64::from(left.subsec_nanos() > 0)) as u32,
    )
}

impl Shard {
    /// Routes a PUBLISH read on this shard (or a will): once to each other
    /// shard with subscribers, to the retained owner when RETAIN is set,
    /// then to local subscribers. Returns what could not be sent because a
    /// target inbox was full; the caller waits with [`Shard::finish_route`]
    /// (back-pressure) before reading more. `origin` is the publishing
    /// session (for No Local).
    pub(crate) fn route_publish(
        self: &Rc<Self>,
        mut publish: Publish,
        origin: Option<u64>,
    ) -> Option<BlockedRoute> {
        self.drain_inbox();
        strip_connection_properties(&mut publish);
        let Ok(topic) = std::str::from_utf8(&publish.topic) else {
            return None;
        };
        let expires_at = publish
            .properties
            .message_expiry_interval
            .map(|secs| Instant::now() + Duration::from_secs(u64::from(secs)));

        let mut own_groups: Vec<u64> = Vec::new();
        // Reused buffers: routing a publish allocates nothing per message.
        let (mask, mut targets, mut group_picks) = {
            let mut state = self.state.borrow_mut();
            let router = &mut state.router;
            let mask = router.remote_targets(topic);
            let mut picks = std::mem::take(&mut router.group_picks);
            router.pick_group_shards(topic, self.id, &mut picks);
            (mask, std::mem::take(&mut router.targets), picks)
        };
        let target = |shard: usize, targets: &mut Vec<(usize, RoutedPublish)>| -> usize {
            match targets.iter().position(|(s, _)| *s == shard) {
                Some(i) => i,
                None => {
                    targets.push((shard, RoutedPublish::new(&publish, expires_at)));
                    targets.len() - 1
                }
            }
        };
        let mut rest = mask;
        while rest != 0 {
            let shard = rest.trailing_zeros() as usize;
            rest &= rest - 1;
            let i = target(shard, &mut targets);
            targets[i].1.deliver = true;
        }
        for (shard, group) in group_picks.drain(..) {
            if shard == self.id {
                own_groups.push(group);
            } else {
                let i = target(shard, &mut targets);
                targets[i].1.groups.push(group);
            }
        }
        if publish.retain {
            let owner = crate::shard_for(&publish.topic, self.shared.shards);
            if owner == self.id {
                self.store_retained(&publish, expires_at);
            } else {
                let i = target(owner, &mut targets);
                targets[i].1.store_retained = true;
            }
        }

        tracing::trace!(
            shard = self.id,
            targets = targets.len(),
            "routing a publish"
        );
        let mut blocked = Vec::new();
        for (shard, msg) in targets.drain(..) {
            if msg.store_retained {
                // The store goes in order with retained queries (control
                // channel), or a subscription made after the publish could
                // overtake it and get the previous value.
                self.shared.mesh.send_control(shard, Control::Publish(msg));
            } else if let Err(msg) = self.shared.mesh.try_send_publish(shard, msg) {
                blocked.push((shard, msg));
            }
        }
        {
            let router = &mut self.state.borrow_mut().router;
            router.targets = targets;
            router.group_picks = group_picks;
        }
        self.deliver_local(&publish, origin, true, &own_groups, expires_at, 0);
        (!blocked.is_empty()).then_some(BlockedRoute { pending: blocked })
    }

    /// Waits until every blocked target has taken the publish. Rare: the
    /// caller boxes this future so connection tasks stay small.
    pub(crate) async fn finish_route(self: Rc<Self>, mut blocked: BlockedRoute) {
        while !blocked.pending.is_empty() {
            self.backoff().await;
            self.drain_inbox();
            let pending = std::mem::take(&mut blocked.pending);
            for (shard, msg) in pending {
                if let Err(msg) = self.shared.mesh.try_send_publish(shard, msg) {
                    blocked.pending.push((shard, msg));
                }
            }
        }
    }

    /// A publish routed here by another shard.
    pub(crate) fn handle_routed(self: &Rc<Self>, routed: RoutedPublish) {
        tracing::trace!(shard = self.id, "publish from another shard");
        let publish = routed.to_publish();
        if routed.store_retained {
            self.store_retained(&publish, routed.expires_at);
        }
        if let Some(expires_at) = routed.expires_at {
            if remaining_secs(expires_at, Instant::now()).is_none() {
                return;
            }
        }
        self.deliver_local(
            &publish,
            None,
            routed.deliver,
            &routed.groups,
            routed.expires_at,
            routed.hops,
        );
    }

    /// Queues `publish` to every local subscriber whose filter matches
    /// (when `ordinary`), and to one member of each group in `groups`.
    pub(crate) fn deliver_local(
        &self,
        publish: &Publish,
        origin: Option<u64>,
        ordinary: bool,
        groups: &[u64],
        expires_at: Option<Instant>,
        hops: u8,
    ) {
        let Ok(topic) = std::str::from_utf8(&publish.topic) else {
            return;
        };
        let mut orphaned: Vec<(usize, u64)> = Vec::new();
        let mut matched = {
            let mut state = self.state.borrow_mut();
            let state = &mut *state;
            let router = &mut state.router;
            let mut matched = std::mem::take(&mut router.matched);
            matched.clear();
            if ordinary {
                router
                    .local
                    .for_each_match(topic, |serial, sub| matched.push((serial, *sub)));
            }
            if !groups.is_empty() {
                let mut members = std::mem::take(&mut router.group_matched);
                members.clear();
                router.shared_local.for_each_match(topic, |key, sub| {
                    if groups.contains(&key.0) {
                        members.push((key, *sub));
                    }
                });
                for group in groups {
                    if let Some(pick) =
                        pick_member(&state.sessions, &members, *group, &mut router.member_cursor)
                    {
                        matched.push(pick);
                    } else if let Some(shard) = router.other_group_shard(topic, *group, self.id) {
                        // Our last member just left and the sender had not yet
                        // heard: hand the message to a shard that still has
                        // members rather than drop it.
                        orphaned.push((shard, *group));
                    }
                }
                router.group_matched = members;
            }
            matched
        };
        if !matched.is_empty() {
            // Overlapping subscriptions deliver once with the highest QoS
            // and every Subscription Identifier (MQTT-3.3.4-2, 3.3.4-3).
            matched.sort_unstable_by_key(|(serial, _)| *serial);
            let mut i = 0;
            while i < matched.len() {
                let serial = matched[i].0;
                let mut j = i;
                let mut qos = QoS::AtMostOnce;
                let mut retain_as_published = false;
                let mut ids: [u32; 4] = [0; 4];
                let mut n_ids = 0;
                let mut any = false;
                while j < matched.len() && matched[j].0 == serial {
                    let sub = matched[j].1;
                    j += 1;
                    // MQTT-3.8.3-3: No Local skips the publisher's own session.
                    if sub.options.no_local && origin == Some(serial) {
                        continue;
                    }
                    any = true;
                    qos = qos.max(sub.options.qos);
                    retain_as_published |= sub.options.retain_as_published;
                    if sub.id != 0 && n_ids < ids.len() {
                        ids[n_ids] = sub.id;
                        n_ids += 1;
                    }
                }
                if any {
                    let retain = retain_as_published && publish.retain;
                    self.deliver_to(serial, publish, qos, retain, &ids[..n_ids], expires_at);
                }
                i = j;
            }
        }
        matched.clear();
        self.state.borrow_mut().router.matched = matched;
        for (shard, group) in orphaned {
            if hops < MAX_GROUP_HOPS {
                let mut msg = RoutedPublish::new(publish, expires_at);
                msg.groups.push(group);
                msg.hops = hops + 1;
                self.shared.mesh.send_control(shard, Control::Publish(msg));
            }
        }
    }

    /// Delivers one message to one session at min(publish QoS, granted):
    /// QoS 0 straight to its connection (not kept while offline), QoS 1/2
    /// through the session's inflight window and queue.
    pub(crate) fn deliver_to(
        &self,
        serial: u64,
        publish: &Publish,
        granted: QoS,
        retain: bool,
        ids: &[u32],
        expires_at: Option<Instant>,
    ) {
        let qos = publish.qos.min(granted);
        let (conn, v5) = {
            let state = self.state.borrow();
            let Some((conn, protocol)) = state.sessions.delivery_target(serial) else {
                return;
            };
            (conn, protocol == ringmq_codec::ProtocolVersion::V5)
        };
        if qos == QoS::AtMostOnce {
            let Some(conn) = &conn else {
                return;
            };
            if conn.queued_bytes() > self.config().max_outbuf_bytes {
                ShardStats::inc(&self.stats.publishes_dropped);
                return;
            }
            // The shared message is sent as is only when nothing about it
            // changes for this subscriber.
            let plain = publish.qos == QoS::AtMostOnce
                && !retain
                && !publish.retain
                && (ids.is_empty() || !v5);
            if plain {
                self.send_checked(conn, publish);
                return;
            }
        }
        let mut out = publish.clone();
        out.qos = qos;
        out.retain = retain;
        if v5 {
            out.properties
                .subscription_identifiers
                .extend_from_slice(ids);
        }
        match conn {
            Some(conn) if qos == QoS::AtMostOnce => self.send_checked(&conn, &out),
            _ => self.offer_to_session(serial, out, expires_at),
        }
    }

    pub(crate) fn send_checked(&self, conn: &Conn, publish: &Publish) {
        if let Some(version) = conn.version.get() {
            // The client's Maximum Packet Size: skip what it cannot take
            // (MQTT-3.1.2-25).
            if publish.encoded_len(version) > conn.client_max_packet.get() as usize {
                ShardStats::inc(&self.stats.publishes_dropped);
                return;
            }
        }
        conn.send_publish(publish);
        ShardStats::inc(&self.stats.publishes_out);
    }

    /// Publishes a will (never dropped: it goes through control inboxes).
    pub(crate) fn publish_will(self: &Rc<Self>, will: Box<Will>) {
        let will = *will;
        ShardStats::inc(&self.stats.wills_published);
        let mut properties = will.properties;
        // Will-only properties do not travel with the message.
        properties.will_delay_interval = None;
        let publish = Publish {
            dup: false,
            qos: will.qos,
            retain: will.retain,
            topic: will.topic,
            packet_id: 0,
            properties,
            payload: will.payload,
        };
        if let Some(blocked) = self.route_publish(publish, None) {
            // Wills must not be lost to a full inbox: use the control path.
            for (shard, msg) in blocked.pending {
                self.shared.mesh.send_control(shard, Control::Publish(msg));
            }
        }
    }

    fn broadcast_route(&self, filter: &str, add: bool) {
        let (inner, group) = split_filter(filter);
        let inner = Bytes::copy_from_slice(inner.as_bytes());
        for target in (0..self.shared.shards).filter(|&s| s != self.id) {
            let msg = Control::Route {
                filter: inner.clone(),
                group,
                shard: self.id,
                add,
            };
            self.shared.mesh.send_control(target, msg);
        }
    }

    /// Removes one session's subscription from the tries (and the route
    /// table when it was the filter's last subscriber here).
    pub(crate) fn unroute(&self, filter: &Bytes, serial: u64) {
        let Ok(text) = std::str::from_utf8(filter) else {
            return;
        };
        let last = self.state.borrow_mut().router.remove_local(text, serial);
        if last {
            self.broadcast_route(text, false);
        }
    }

    /// Puts one subscription into the tries (and the route table).
    pub(crate) fn route_subscription(&self, filter: &Bytes, serial: u64, sub: Subscription) {
        let Ok(text) = std::str::from_utf8(filter) else {
            return;
        };
        let first = self.state.borrow_mut().router.add_local(text, serial, sub);
        if first {
            // Into every inbox before the SUBACK (ordering invariant).
            self.broadcast_route(text, true);
        }
    }

    /// SUBSCRIBE: update the session and the routes, SUBACK, then the
    /// retained messages the Retain Handling option asks for.
    pub(crate) fn subscribe(
        self: &Rc<Self>,
        conn: &Conn,
        packet: &Subscribe,
    ) -> Result<(), CloseCause> {
        let Some(serial) = conn.session.get() else {
            return Ok(());
        };
        let outcome = {
            let mut state = self.state.borrow_mut();
            let Some(session) = state.sessions.session_mut(serial) else {
                return Ok(());
            };
            session.subscribe(packet, self.policy.max_qos)
        };
        if let Some(what) = outcome.protocol_error {
            return Err(self.protocol_violation(conn, ReasonCode::PROTOCOL_ERROR, what));
        }
        for (filter, sub) in outcome.added.iter().chain(outcome.replaced.iter()) {
            self.route_subscription(filter, serial, *sub);
        }
        conn.send(&Packet::SubAck(SubAck {
            packet_id: packet.packet_id,
            properties: Properties::default(),
            codes: outcome.codes,
        }));
        let new = outcome.added.iter().map(|s| (s, true));
        let old = outcome.replaced.iter().map(|s| (s, false));
        for ((filter, sub), is_new) in new.chain(old) {
            self.send_retained_for(filter, serial, *sub, is_new);
        }
        Ok(())
    }

    /// UNSUBSCRIBE: update the session and the routes, then UNSUBACK.
    pub(crate) fn unsubscribe(&self, conn: &Conn, packet: &Unsubscribe) {
        let Some(serial) = conn.session.get() else {
            return;
        };
        let outcome = {
            let mut state = self.state.borrow_mut();
            let Some(session) = state.sessions.session_mut(serial) else {
                return;
            };
            session.unsubscribe(packet)
        };
        for filter in &outcome.removed {
            self.unroute(filter, serial);
        }
        conn.send(&Packet::UnsubAck(UnsubAck {
            packet_id: packet.packet_id,
            properties: Properties::default(),
            codes: outcome.codes,
        }));
    }
}

/// One member of `group` among `members`, preferring connected sessions,
/// round robin.
fn pick_member(
    sessions: &super::sessions::Sessions,
    members: &[((u64, u64), Subscription)],
    group: u64,
    cursor: &mut u64,
) -> Option<(u64, Subscription)> {
    let in_group = || members.iter().filter(move |((g, _), _)| *g == group);
    let connected = in_group()
        .filter(|((_, serial), _)| sessions.conn_of(*serial).is_some())
        .count();
    *cursor = cursor.wrapping_add(1);
    if connected > 0 {
        let pick = (*cursor % connected as u64) as usize;
        return in_group()
            .filter(|((_, serial), _)| sessions.conn_of(*serial).is_some())
            .nth(pick)
            .map(|((_, serial), sub)| (*serial, *sub));
    }
    let total = in_group().count();
    if total == 0 {
        return None;
    }
    let pick = (*cursor % total as u64) as usize;
    in_group()
        .nth(pick)
        .map(|((_, serial), sub)| (*serial, *sub))
}
