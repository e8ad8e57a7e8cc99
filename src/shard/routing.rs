//! Routing glue: carries out ringmq-route's decisions on this shard.
//!
//! A PUBLISH read here is planned once against the route replica and sent
//! once to each other shard with subscribers (and to the topic's retained
//! owner); each shard then matches its own sessions and hands each match
//! to that session's `deliver`. Payloads travel as shared `Bytes`.
//!
//! Ordering: a shard drains its inbox before handling what a connection
//! read, and a SUBACK is written only after its route-add is in every
//! other shard's FIFO, so a publish that causally follows a SUBACK is
//! never missed, across shards. All traffic between two shards shares one
//! FIFO, so nothing overtakes (mesh.rs).

use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use ringmq_codec::{Publish, QoS};
use ringmq_route::{owner_shard, GroupKey, RetainedMessage, Serve, ShardId, StoreOutcome};
use ringmq_session::{Delivery, SessionId, Tick};
use tracing::warn;

use super::apply::{Core, Deferred};
use super::msg::{Msg, Routed};
use super::ratelimit::Gate;
use crate::cluster::{Ticket, Via};
use crate::stats::ShardStats;

/// How often a shared-group message may be handed on to another shard whose
/// members are still there (bounds ping-pong while routes converge).
const MAX_GROUP_HOPS: u8 = 2;

/// Moves topic and payload into one allocation of their own size (and
/// the properties into their own), out of the read buffer they slice.
fn detach(publish: &mut Publish) {
    let (topic_len, payload_len) = (publish.topic.len(), publish.payload.len());
    let mut own = BytesMut::with_capacity(topic_len + payload_len);
    own.extend_from_slice(&publish.topic);
    own.extend_from_slice(&publish.payload);
    let mut own = own.freeze();
    publish.topic = own.split_to(topic_len);
    publish.payload = own;
    if !publish.properties.is_empty() {
        publish.properties = ringmq_session::owned_properties(&publish.properties).into();
    }
}

impl Core {
    /// Runs what `apply` deferred, in order, until nothing is left.
    pub(crate) fn run_deferred(&mut self) {
        while let Some(work) = self.deferred.pop_front() {
            match work {
                Deferred::Route { publish, origin } => self.route(publish, origin),
                Deferred::Retained {
                    session,
                    filter,
                    messages,
                } => self.deliver_retained(session, &filter, messages),
            }
        }
    }

    /// Routes a PUBLISH read on this shard (or a will): to each other
    /// shard with subscribers, to the retained owner when RETAIN is set,
    /// then to local subscribers. `origin` is the publishing session.
    fn route(&mut self, publish: Publish, origin: Option<SessionId>) {
        self.route_on(publish, origin, true, Serve::All);
    }

    /// A publish from another node (--cluster-nats), routed on this node
    /// only: to its ordinary subscribers, or (`group`) to one member of
    /// the shared group NATS chose this node for.
    pub(crate) fn route_from_cluster(&mut self, publish: Publish, group: Option<GroupKey>) {
        let serve = group.map_or(Serve::Ordinary, Serve::Group);
        self.route_on(publish, None, false, serve);
        self.run_deferred();
    }

    /// [`Core::route`] for the part `serve` says, forwarding to the other
    /// nodes when `to_cluster` (never `$` topics: each node has its own
    /// `$SYS`). A publish read here and forwarded leaves its shared groups
    /// to NATS, which chooses one member in the whole cluster.
    fn route_on(
        &mut self,
        mut publish: Publish,
        origin: Option<SessionId>,
        to_cluster: bool,
        mut serve: Serve,
    ) {
        if publish.qos != QoS::AtMostOnce {
            // Sessions keep QoS 1/2 messages until acknowledged, maybe for
            // days: they must not pin the 64 KiB read block this one was
            // read into. One copy per message, shared by every subscriber.
            detach(&mut publish);
        }
        let Ok(topic) = std::str::from_utf8(&publish.topic) else {
            return;
        };
        let now = self.now;
        let expires_at = publish
            .properties
            .message_expiry_interval
            .map(|secs| now.add_secs(u64::from(secs)));
        if to_cluster && !topic.starts_with('$') && self.forward_to_cluster(&publish, origin) {
            serve = Serve::Ordinary;
        }
        // A retained publish from another node is stored from the
        // cluster's retained stream instead (`store_from_cluster`): one
        // source, so two paths cannot reorder a topic's retained value.
        let owner =
            (publish.retain && to_cluster).then(|| owner_shard(&publish.topic, self.shared.shards));
        let mut plan = std::mem::take(&mut self.plan);
        self.routes.plan(topic, owner, &mut plan);
        plan.restrict(serve);
        // Persistence: the publisher's acknowledgement (already in its
        // output) waits until every shard this goes to has written it.
        let holder = match (&self.durability, origin) {
            (Some(_), Some(sid)) if publish.qos != QoS::AtMostOnce && !plan.remote.is_empty() => {
                self.table
                    .link_of(sid)
                    .and_then(|l| self.links.get(&l))
                    .cloned()
            }
            _ => None,
        };
        for target in plan.remote.iter_mut() {
            let mut msg = Routed::new(&publish, expires_at);
            msg.deliver = target.deliver;
            msg.store_retained = target.store_retained;
            msg.groups = std::mem::take(&mut target.groups);
            self.send_mesh(target.shard, Msg::Publish(msg));
            if let (Some(link), Some(d)) = (&holder, self.durability.as_mut()) {
                let peer = target.shard.0;
                link.hold();
                d.waits[peer].push_back((d.sent[peer], link.clone()));
            }
        }
        if plan.store_locally {
            self.store_retained(&publish, expires_at);
        }
        let groups = std::mem::take(&mut plan.local_groups);
        self.plan = plan;
        self.deliver_local(
            topic,
            &publish,
            origin,
            serve.ordinary(),
            &groups,
            expires_at,
            0,
        );
        self.plan.local_groups = groups;
    }

    /// Forwards a publish read here to the other nodes: into the message
    /// stream when the cluster stores its QoS now (a client publisher's
    /// link held, its PUBACK / PUBREC waiting, until the stream answers),
    /// else on core NATS. Answers whether NATS picks the shared groups'
    /// members (connected).
    fn forward_to_cluster(&mut self, publish: &Publish, origin: Option<SessionId>) -> bool {
        let Some(cluster) = &self.shared.cluster else {
            return false;
        };
        let expiry_secs = publish.properties.message_expiry_interval;
        if !cluster.stores(publish.qos) {
            cluster.forward(publish, expiry_secs, Via::Core);
            return cluster.picks_group_members();
        }
        let link = origin
            .and_then(|sid| self.table.link_of(sid))
            .and_then(|l| self.links.get(&l))
            .cloned();
        let ticket = link.map(|link| {
            link.hold();
            Ticket {
                shard: self.id.0,
                token: self.cluster_holds.insert(link),
            }
        });
        if !cluster.forward(publish, expiry_secs, Via::Stream(ticket)) {
            // Dropped (counted): no answer will come for it.
            if let Some(link) = ticket.and_then(|t| self.cluster_holds.take(t.token)) {
                link.release();
            }
        }
        cluster.picks_group_members()
    }

    /// The stream publish under `token` ended (stored or not): its
    /// publisher's output goes. A link closed meanwhile is released
    /// harmlessly: it is no longer the engine's.
    pub(crate) fn cluster_stored(&mut self, token: u64) {
        if let Some(link) = self.cluster_holds.take(token) {
            link.release();
        }
    }

    /// A publish routed here by another shard.
    pub(crate) fn handle_routed(&mut self, routed: Routed) {
        let publish = &routed.publish;
        if routed.store_retained {
            self.store_retained(publish, routed.expires_at);
        }
        if routed.expires_at.is_some_and(|at| self.now > at) {
            return;
        }
        let Ok(topic) = std::str::from_utf8(&publish.topic) else {
            return;
        };
        self.deliver_local(
            topic,
            publish,
            None,
            routed.deliver,
            &routed.groups,
            routed.expires_at,
            routed.hops,
        );
    }

    /// Hands `publish` to every local session whose subscriptions match
    /// (when `ordinary`) and to one member of each group in `groups`.
    #[allow(clippy::too_many_arguments)]
    fn deliver_local(
        &mut self,
        topic: &str,
        publish: &Publish,
        origin: Option<SessionId>,
        ordinary: bool,
        groups: &[GroupKey],
        expires_at: Option<Tick>,
        hops: u8,
    ) {
        let mut matches = std::mem::take(&mut self.matches);
        let table = &self.table;
        self.routes.match_local(
            topic,
            publish.qos,
            origin,
            ordinary,
            groups,
            |s| table.is_connected(s),
            &mut matches,
        );
        let now = self.now;
        let max_outbuf = self.shared.config.max_outbuf_bytes;
        let mut out = std::mem::take(&mut self.outbox);
        for d in &matches.deliveries {
            let Some(entry) = self.table.get_mut(d.session) else {
                continue;
            };
            let link = entry.link.and_then(|l| self.links.get(&l)).cloned();
            if d.qos == QoS::AtMostOnce
                && link.as_ref().is_some_and(|l| l.queued_bytes() > max_outbuf)
            {
                // A subscriber that does not read: QoS 0 is dropped.
                ShardStats::inc(&self.stats.publishes_dropped);
                continue;
            }
            let delivery = Delivery {
                qos: d.qos,
                retain: d.retain_as_published && publish.retain,
                ids: matches.ids(d),
                expires_at,
            };
            entry
                .session
                .deliver(publish, delivery, &self.policy, now, &mut out);
            if link.is_none() && d.qos != QoS::AtMostOnce && self.shared.cluster.is_some() {
                // Queued for an absent client: its stored copy follows
                // (at most once a second, `flush_cluster_sessions`).
                self.cluster_absent.insert(d.session);
            }
            self.apply_delivery(Some(d.session), link.as_ref(), &mut out, Some(publish));
        }
        self.outbox = out;
        let orphans = std::mem::take(&mut matches.orphans);
        self.matches = matches;
        for (shard, group) in orphans {
            // Our last member just left and the sender had not yet heard:
            // hand the message to a shard that still has members.
            if hops < MAX_GROUP_HOPS {
                let mut msg = Routed::new(publish, expires_at);
                msg.groups.push(group);
                msg.hops = hops + 1;
                self.send_mesh(shard, Msg::Publish(msg));
            }
        }
    }

    /// Stores (or clears) the retained message of a topic this shard owns.
    fn store_retained(&mut self, publish: &Publish, expires_at: Option<Tick>) {
        let outcome = self.retained.store(
            &publish.topic,
            &publish.payload,
            publish.qos,
            &publish.properties,
            expires_at,
        );
        if let Some(journal) = self.journal.as_mut() {
            let event = match outcome {
                StoreOutcome::Stored | StoreOutcome::Replaced => {
                    Some(ringmq_store::Event::RetainedPut {
                        topic: publish.topic.clone(),
                        payload: publish.payload.clone(),
                        qos: publish.qos as u8,
                        properties: ringmq_session::encode_message_properties(&publish.properties),
                        expires_at_unix_ms: expires_at.map(|t| journal.clock().to_unix(t)),
                    })
                }
                StoreOutcome::Cleared => Some(ringmq_store::Event::RetainedGone {
                    topic: publish.topic.clone(),
                }),
                StoreOutcome::Full | StoreOutcome::FullBytes => None,
            };
            if let Some(event) = event {
                journal.record_event(&event);
            }
        }
        let (counter, flag) = match outcome {
            StoreOutcome::Full => (&self.stats.retained_dropped, "--max-retained"),
            StoreOutcome::FullBytes => (&self.stats.retained_bytes_dropped, "--max-retained-bytes"),
            _ => return,
        };
        ShardStats::inc(counter);
        if let Some(unlogged) = self.gates.check(Gate::Retained, self.now) {
            warn!(
                shard = self.id.0,
                unlogged, "{flag} reached: retained message not stored"
            );
        }
    }

    /// A retained message (or an empty one: a clear) from the cluster's
    /// retained stream (--cluster-nats), for a topic this shard owns:
    /// stored, journaled and limited like a local one, never delivered
    /// (subscribers had it from core routing) nor sent back.
    pub(crate) fn store_from_cluster(&mut self, publish: Publish) {
        let now = self.now;
        let expires_at = publish
            .properties
            .message_expiry_interval
            .map(|secs| now.add_secs(u64::from(secs)));
        self.store_retained(&publish, expires_at);
    }

    /// Another shard asks for the retained messages matching `filter`.
    pub(crate) fn answer_retained_query(
        &mut self,
        filter: Bytes,
        reply_to: ShardId,
        session: SessionId,
    ) {
        let Ok(text) = std::str::from_utf8(&filter) else {
            return;
        };
        let mut messages = Vec::new();
        self.retained.matching(text, self.now, &mut messages);
        // Always answered, empty or not: the asking connection counts its
        // queries in flight (see `Link::retained_queries`).
        let reply = Msg::RetainedReply {
            session,
            filter,
            messages,
        };
        self.send_mesh(reply_to, reply);
    }

    /// Retained messages for a new subscription: RETAIN 1 (MQTT-3.3.1-8),
    /// QoS min(message, granted), the subscription's identifier. Dropped
    /// if the subscription is gone meanwhile.
    pub(crate) fn deliver_retained(
        &mut self,
        session: SessionId,
        filter: &[u8],
        messages: Vec<RetainedMessage>,
    ) {
        let Some(entry) = self.table.get_mut(session) else {
            return;
        };
        if let Some(link) = entry.link.and_then(|l| self.links.get(&l)) {
            link.retained_answered();
        }
        if messages.is_empty() {
            return;
        }
        let Some(grant) = entry.session.subscription(filter) else {
            return;
        };
        let link: Option<Rc<_>> = entry.link.and_then(|l| self.links.get(&l)).cloned();
        let ids: &[u32] = if grant.id != 0 {
            std::slice::from_ref(&grant.id)
        } else {
            &[]
        };
        let now = self.now;
        let mut out = std::mem::take(&mut self.outbox);
        for message in messages {
            let publish = Publish {
                dup: false,
                qos: message.qos,
                retain: true,
                topic: message.topic,
                packet_id: 0,
                properties: message.properties.into(),
                payload: message.payload,
            };
            let delivery = Delivery {
                qos: message.qos.min(grant.options.qos),
                retain: true,
                ids,
                expires_at: message.expires_at,
            };
            let max_outbuf = self.shared.config.max_outbuf_bytes;
            if delivery.qos == QoS::AtMostOnce
                && link.as_ref().is_some_and(|l| l.queued_bytes() > max_outbuf)
            {
                // As for live QoS 0: a subscriber that does not read (or a
                // wildcard over more retained messages than its output
                // holds) loses QoS 0, counted; QoS 1/2 wait in the session.
                ShardStats::inc(&self.stats.publishes_dropped);
                continue;
            }
            if let Some(entry) = self.table.get_mut(session) {
                entry
                    .session
                    .deliver(&publish, delivery, &self.policy, now, &mut out);
            }
            self.apply_delivery(Some(session), link.as_ref(), &mut out, Some(&publish));
        }
        self.outbox = out;
    }
}
