//! Routing: this shard's subscription trie and its replica of the route
//! table (filter -> shards with subscribers).
//!
//! A PUBLISH read here is matched once against the replica and sent once to
//! each other shard with subscribers; each shard then matches its own trie
//! and queues to each subscriber. Payloads travel as shared `Bytes`.
//!
//! Ordering invariant: a shard drains its inbox before routing a publish it
//! read, and a SUBACK is written only after the route-add is in every
//! other shard's inbox, so a publish that causally follows a SUBACK is never
//! missed, even across shards.

use std::rc::Rc;

use bytes::Bytes;
use ringmq_codec::{
    Packet, Properties, Publish, QoS, SubAck, Subscribe, SubscriptionOptions, UnsubAck,
    Unsubscribe, Will,
};
use ringmq_topic::Trie;

use super::conn::Conn;
use super::Shard;
use crate::mesh::{Control, RoutedPublish};
use crate::stats::ShardStats;

/// A publish some target shards could not take yet (inbox full).
pub(crate) struct BlockedRoute {
    mask: u64,
    routed: RoutedPublish,
}

/// The local trie plus the replica of other shards' routes.
pub(crate) struct Router {
    /// filter -> session serial -> granted options (this shard's sessions).
    local: Trie<u64, SubscriptionOptions>,
    /// filter -> other shards that have subscribers for it.
    remote: Trie<usize, ()>,
    /// Reused by `deliver_local` so matching allocates nothing.
    matched: Vec<u64>,
}

impl Router {
    pub(crate) fn new(_shards: usize) -> Self {
        Self {
            local: Trie::new(),
            remote: Trie::new(),
            matched: Vec::new(),
        }
    }

    /// Adds a local subscription; true when it is the filter's first here.
    fn add_local(&mut self, filter: &str, serial: u64, options: SubscriptionOptions) -> bool {
        let first = self.local.filter_len(filter) == 0;
        self.local.insert(filter, serial, options);
        first
    }

    /// Removes a local subscription; true when it was the filter's last here.
    fn remove_local(&mut self, filter: &str, serial: u64) -> bool {
        self.local.remove(filter, serial).is_some() && self.local.filter_len(filter) == 0
    }

    pub(crate) fn add_remote(&mut self, filter: &[u8], shard: usize) {
        if let Ok(filter) = std::str::from_utf8(filter) {
            self.remote.insert(filter, shard, ());
        }
    }

    pub(crate) fn drop_remote(&mut self, filter: &[u8], shard: usize) {
        if let Ok(filter) = std::str::from_utf8(filter) {
            self.remote.remove(filter, shard);
        }
    }

    /// Other shards with a subscriber matching `topic`, as a bit mask.
    fn remote_targets(&self, topic: &str) -> u64 {
        let mut mask = 0u64;
        self.remote
            .for_each_match(topic, |shard, _| mask |= 1 << shard);
        mask
    }
}

/// Turns a received PUBLISH into the one delivered to subscribers: QoS 0,
/// no DUP, RETAIN cleared (MQTT-3.3.1-9 for normal deliveries), and no
/// properties that belong to the publisher's connection only.
fn prepare_outbound(publish: &mut Publish) {
    publish.dup = false;
    publish.qos = QoS::AtMostOnce;
    publish.packet_id = 0;
    publish.retain = false;
    publish.properties.topic_alias = None;
    publish.properties.subscription_identifiers.clear();
}

impl Shard {
    /// Routes a PUBLISH read on this shard: once to each other shard with
    /// subscribers, then to local subscribers. Returns what could not be
    /// sent because a target inbox was full; the caller then waits with
    /// [`Shard::finish_route`] (back-pressure) before reading more.
    pub(crate) fn route_publish(self: &Rc<Self>, mut publish: Publish) -> Option<BlockedRoute> {
        self.drain_inbox();
        prepare_outbound(&mut publish);
        let Ok(topic) = std::str::from_utf8(&publish.topic) else {
            return None;
        };
        let mask = self.state.borrow().router.remote_targets(topic);
        let blocked = if mask == 0 {
            None
        } else {
            self.send_remote(mask, None, &publish)
        };
        self.deliver_local(&publish);
        blocked
    }

    /// Sends to every shard in `mask`; gives back the ones whose inbox was
    /// full.
    fn send_remote(
        &self,
        mut mask: u64,
        mut routed: Option<RoutedPublish>,
        publish: &Publish,
    ) -> Option<BlockedRoute> {
        let mut blocked = 0u64;
        while mask != 0 {
            let target = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            let msg = routed.take().unwrap_or_else(|| RoutedPublish::new(publish));
            if let Err(msg) = self.shared.mesh.try_send_publish(target, msg) {
                routed = Some(msg);
                blocked |= 1 << target;
            }
        }
        (blocked != 0).then(|| BlockedRoute {
            mask: blocked,
            routed: routed.unwrap_or_else(|| RoutedPublish::new(publish)),
        })
    }

    /// Waits until every blocked target has taken the publish. Rare: the
    /// caller boxes this future so connection tasks stay small.
    pub(crate) async fn finish_route(self: Rc<Self>, mut blocked: BlockedRoute) {
        loop {
            self.backoff().await;
            self.drain_inbox();
            let mut mask = blocked.mask;
            let mut still = 0u64;
            let mut routed = Some(blocked.routed);
            while mask != 0 {
                let target = mask.trailing_zeros() as usize;
                mask &= mask - 1;
                let msg = match routed.take() {
                    Some(m) => m,
                    None => return,
                };
                let copy = RoutedPublish {
                    topic: msg.topic.clone(),
                    payload: msg.payload.clone(),
                    properties: msg.properties.clone(),
                };
                match self.shared.mesh.try_send_publish(target, msg) {
                    Ok(()) => routed = Some(copy),
                    Err(msg) => {
                        still |= 1 << target;
                        routed = Some(msg);
                    }
                }
            }
            match (still, routed) {
                (0, _) | (_, None) => return,
                (mask, Some(routed)) => blocked = BlockedRoute { mask, routed },
            }
        }
    }

    /// Queues `publish` to every local subscriber whose filter matches.
    pub(crate) fn deliver_local(&self, publish: &Publish) {
        let Ok(topic) = std::str::from_utf8(&publish.topic) else {
            return;
        };
        let mut state = self.state.borrow_mut();
        let state = &mut *state;
        let matched = &mut state.router.matched;
        matched.clear();
        state
            .router
            .local
            .for_each_match(topic, |serial, _| matched.push(serial));
        if matched.is_empty() {
            return;
        }
        // Overlapping subscriptions deliver once (MQTT-3.3.5-1).
        matched.sort_unstable();
        matched.dedup();
        let max_outbuf = self.config().max_outbuf_bytes;
        for serial in matched.iter() {
            let Some(conn) = state.sessions.conn_of(*serial) else {
                continue;
            };
            if conn.is_closing() {
                continue;
            }
            if conn.queued_bytes() > max_outbuf {
                ShardStats::inc(&self.stats.publishes_dropped);
                continue;
            }
            if let Some(version) = conn.version.get() {
                // The client's Maximum Packet Size: skip what it cannot take
                // (MQTT-3.1.2-25).
                if publish.encoded_len(version) > conn.client_max_packet.get() as usize {
                    ShardStats::inc(&self.stats.publishes_dropped);
                    continue;
                }
            }
            conn.send_publish(publish);
            ShardStats::inc(&self.stats.publishes_out);
        }
    }

    /// Publishes a will (never dropped: it goes through control inboxes).
    pub(crate) fn publish_will(self: &Rc<Self>, will: Box<Will>) {
        let will = *will;
        ShardStats::inc(&self.stats.wills_published);
        let mut publish = Publish {
            dup: false,
            qos: will.qos,
            retain: will.retain,
            topic: will.topic,
            packet_id: 0,
            properties: will.properties,
            payload: will.payload,
        };
        // Will-only properties do not travel with the message.
        publish.properties.will_delay_interval = None;
        prepare_outbound(&mut publish);
        let Ok(topic) = std::str::from_utf8(&publish.topic) else {
            return;
        };
        let mut mask = self.state.borrow().router.remote_targets(topic);
        while mask != 0 {
            let target = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            self.shared
                .mesh
                .send_control(target, Control::Publish(Box::new(publish.clone())));
        }
        self.deliver_local(&publish);
    }

    fn broadcast_route(&self, filter: &Bytes, add: bool) {
        for target in (0..self.shared.shards).filter(|&s| s != self.id) {
            let msg = if add {
                Control::RouteAdd {
                    filter: filter.clone(),
                    shard: self.id,
                }
            } else {
                Control::RouteDrop {
                    filter: filter.clone(),
                    shard: self.id,
                }
            };
            self.shared.mesh.send_control(target, msg);
        }
    }

    /// Removes one session's subscription from the trie (and the route
    /// table when it was the filter's last subscriber here).
    pub(crate) fn unroute(&self, filter: &Bytes, serial: u64) {
        let Ok(text) = std::str::from_utf8(filter) else {
            return;
        };
        let last = self.state.borrow_mut().router.remove_local(text, serial);
        if last {
            self.broadcast_route(filter, false);
        }
    }

    /// SUBSCRIBE: update the session and the routes, then SUBACK.
    pub(crate) fn subscribe(&self, conn: &Conn, packet: &Subscribe) {
        let Some(serial) = conn.session.get() else {
            return;
        };
        let outcome = {
            let mut state = self.state.borrow_mut();
            let Some(session) = state.sessions.session_mut(serial) else {
                return;
            };
            session.subscribe(packet, self.policy.max_qos)
        };
        for (filter, options) in outcome.added.iter().chain(outcome.replaced.iter()) {
            let Ok(text) = std::str::from_utf8(filter) else {
                continue;
            };
            let first = self
                .state
                .borrow_mut()
                .router
                .add_local(text, serial, *options);
            if first {
                // Into every inbox before the SUBACK (ordering invariant).
                self.broadcast_route(filter, true);
            }
        }
        conn.send(&Packet::SubAck(SubAck {
            packet_id: packet.packet_id,
            properties: Properties::default(),
            codes: outcome.codes,
        }));
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
