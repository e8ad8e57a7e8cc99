//! The shard's mutable state (`Core`) and the one place effects are
//! carried out (`Core::apply`).
//!
//! `apply` is the only code that encodes into a link's output, sends on
//! the mesh or arms the wheel. It never calls back into a session and
//! never routes: a PUBLISH it meets is queued in `deferred` and routed by
//! the caller once the outbox is done (routing.rs), so applying one
//! session's outbox can never re-enter another's, and no borrow is ever
//! held across a call that could need it again.

use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use ringmq_codec::{Packet, ProtocolVersion, Publish, QoS, Will};
use ringmq_route::{
    owner_shard, wants_retained, FilterKind, Matches, Plan, RetainedMessage, RetainedStore,
    RouteChange, Routes, ShardId,
};
use ringmq_session::{
    Action, CloseCause, Limit, Outbox, ServerPolicy, SessionId, Subscription, Tick,
};
use ringmq_wheel::Wheel;
use tracing::{debug, warn};

use super::link::Link;

/// --cluster-nats: at most one write a second of the stored copies of
/// absent sessions whose queue grew.
pub(crate) const ABSENT_FLUSH_MS: u64 = 1000;
use super::msg::Msg;
use super::ratelimit::Gate;
use super::shared::Shared;
use super::table::SessionTable;
use super::timers::{Clock, TimerEvent};
use crate::mesh::{Inbox, Outlet};
use crate::stats::ShardStats;

/// Work `apply` leaves for after the outbox: routing, and retained
/// messages found on this shard for a new subscription.
// Queued and taken at once in a reused queue; boxing the PUBLISH would
// cost an allocation per routed message.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Deferred {
    /// Route a publish of `origin` (None: a will).
    Route {
        publish: Publish,
        origin: Option<SessionId>,
    },
    /// Deliver retained messages to a new subscription of `session`.
    Retained {
        session: SessionId,
        filter: Bytes,
        messages: Vec<RetainedMessage>,
    },
}

/// A socket handed to this shard, waiting for the inbox task to start it.
pub(crate) struct Adopt {
    pub(crate) fd: std::os::fd::OwnedFd,
    pub(crate) read: bytes::BytesMut,
    pub(crate) peer: std::net::SocketAddr,
    pub(crate) transport: Option<Box<crate::transport::Transport>>,
}

/// Everything mutable a shard owns. Borrowed once per step (a read
/// batch, an inbox drain, a timer tick), never across an `.await`.
pub(crate) struct Core {
    pub(crate) id: ShardId,
    pub(crate) shared: Arc<Shared>,
    pub(crate) stats: Arc<ShardStats>,
    pub(crate) policy: ServerPolicy,
    pub(crate) clock: Clock,
    /// The time of the step being run (set when a step starts: one clock
    /// reading per read batch, inbox drain or timer tick, not per message).
    pub(crate) now: Tick,
    pub(crate) links: super::link::Links,
    pub(crate) table: SessionTable,
    pub(crate) wheel: Wheel<TimerEvent>,
    pub(crate) routes: Routes,
    pub(crate) retained: RetainedStore,
    pub(crate) outlet: Outlet<Msg>,
    pub(crate) inbox: Inbox<Msg>,
    /// Reused by every session call.
    pub(crate) outbox: Outbox,
    /// Reused by routing.
    pub(crate) plan: Plan,
    pub(crate) matches: Matches,
    pub(crate) deferred: VecDeque<Deferred>,
    pub(crate) adopts: Vec<Adopt>,
    pub(crate) shutting_down: bool,
    pub(crate) next_link: u32,
    /// Rate limits of the warnings about limits hit.
    pub(crate) gates: super::ratelimit::Gates,
    /// This shard's TLS configurations (`None`: no TLS listener).
    pub(crate) tls: Option<crate::transport::tls::ShardTls>,
    /// `--password-file` as this shard last got it.
    pub(crate) passwords: Option<Arc<ringmq_auth::password::PasswordFile>>,
    /// The verifier threads' queue (with a password file).
    pub(crate) auth_jobs: Option<crossbeam_channel::Sender<crate::auth::Job>>,
    /// `$SYS` publishing state (shard 0).
    pub(crate) sys: super::sys::SysState,
    /// When each parked CONNECT was first read (for the CONNECT
    /// histogram).
    pub(crate) connect_started: hashbrown::HashMap<super::link::LinkId, std::time::Instant>,
    /// Recent successful password checks.
    pub(crate) auth_cache: crate::auth::Cache,
    /// Slots of parked CONNECTs whose verdict came: the engine handles
    /// them again.
    pub(crate) resumed: Vec<u32>,
    /// --cluster-nats: client ids whose CONNECT waits for its claim, and
    /// the link that waits (another node's take-over of the id refuses it).
    pub(crate) claiming: hashbrown::HashMap<Bytes, super::link::LinkId>,
    /// --cluster-nats: persistent sessions that changed this turn (their
    /// stored copy follows), and client ids whose session ended here.
    pub(crate) cluster_dirty: hashbrown::HashSet<SessionId>,
    pub(crate) cluster_gone: Vec<Bytes>,
    /// Absent sessions that got messages queued: written with the next
    /// flush at least [`ABSENT_FLUSH_MS`] after the last one.
    pub(crate) cluster_absent: hashbrown::HashSet<SessionId>,
    pub(crate) cluster_absent_flushed: Tick,
    /// A session is being let go to another node: its end is not a
    /// removal from the sessions bucket (the new owner takes the copy).
    pub(crate) handing_over: bool,
    /// Sessions other nodes let go to a granted claim, for its CONNECT.
    pub(crate) arrivals:
        hashbrown::HashMap<super::link::LinkId, Box<(Bytes, ringmq_store::SessionState)>>,
    /// --max-connect-rate.
    pub(crate) connect_bucket: super::ratelimit::TokenBucket,
    /// --will-rate, and the fired session timers waiting for it (with
    /// when they fired and the timer's generation then).
    pub(crate) timer_bucket: super::ratelimit::TokenBucket,
    pub(crate) due: VecDeque<(SessionId, ringmq_session::Timer, Tick, u32)>,
    /// Links waiting for their CONNECT (--max-pending-connects).
    pub(crate) pending_connects: usize,
    /// --persistence-dir: this shard's store writer.
    pub(crate) journal: Option<crate::persist::Journal>,
    /// --persistence-dir with several shards: which PUBACKs wait for
    /// another shard's write.
    pub(crate) durability: Option<Box<Durability>>,
    /// --fsync always: held links, with the commit count each waits to be
    /// synced (ascending).
    pub(crate) sync_waits: VecDeque<(u64, Rc<Link>)>,
    /// --cluster-qos durable: links held until the stream stored what they
    /// published, by token.
    pub(crate) cluster_holds: crate::cluster::Holds<Rc<Link>>,
}

/// Acknowledgements that wait for another shard's write (persistence).
///
/// Every shard counts the `Msg::Publish` it sends to each peer and the
/// ones it handled from each; after each commit it tells every peer how
/// many of its messages are now written (`Msg::Durable`). A connection
/// that published a QoS 1/2 message routed to a peer holds its output
/// (its PUBACK or PUBREC among it) until that peer's count reaches the
/// message. The channels are FIFO, so counts suffice.
#[derive(Default)]
pub(crate) struct Durability {
    /// Per peer: `Publish` messages sent to it.
    pub(crate) sent: Vec<u64>,
    /// Per peer: `Publish` messages from it handled here.
    pub(crate) received: Vec<u64>,
    /// Per peer: the count last reported back to it.
    pub(crate) reported: Vec<u64>,
    /// Per peer: held links, with the count each waits for (ascending).
    pub(crate) waits: Vec<VecDeque<(u64, Rc<Link>)>>,
    /// --fsync always: counts to report once the sync of the commit they
    /// were written in completes (commit count, counts per peer).
    pub(crate) pending: VecDeque<(u64, Vec<u64>)>,
}

impl Durability {
    pub(crate) fn new(shards: usize) -> Self {
        Durability {
            sent: vec![0; shards],
            received: vec![0; shards],
            reported: vec![0; shards],
            waits: (0..shards).map(|_| VecDeque::new()).collect(),
            pending: VecDeque::new(),
        }
    }
}

impl Core {
    /// Carries out `out`, in order, for session `sid` (None before a
    /// session exists) whose connection is `link` (None when detached).
    pub(crate) fn apply(
        &mut self,
        sid: Option<SessionId>,
        link: Option<&Rc<Link>>,
        out: &mut Outbox,
    ) {
        self.apply_delivery(sid, link, out, None);
    }

    /// [`Core::apply`] for the outbox of a delivery of `message`, which
    /// an `Action::Forward` writes as is.
    pub(crate) fn apply_delivery(
        &mut self,
        sid: Option<SessionId>,
        link: Option<&Rc<Link>>,
        out: &mut Outbox,
        message: Option<&Publish>,
    ) {
        ShardStats::add(&self.stats.publishes_dropped, out.take_dropped().into());
        if let Some(journal) = self.journal.as_mut() {
            // Before the actions: an `EndSession` forgets the session the
            // steps read.
            journal.begin_outbox();
            let entry = sid.and_then(|sid| self.table.get(sid));
            for step in out.steps() {
                if let Some(entry) = entry {
                    journal.record(&entry.session, step);
                }
            }
        }
        for action in out.drain() {
            match action {
                Action::SendPublish(publish) => {
                    if let Some(link) = link {
                        self.encode_publish(link, &publish);
                    }
                }
                Action::Forward => {
                    if let (Some(link), Some(message)) = (link, message) {
                        self.encode_publish(link, message);
                    }
                }
                Action::SendAck(ack) => {
                    if let Some(link) = link {
                        self.encode(link, &ack.to_packet());
                    }
                }
                Action::SendPingResp => {
                    if let Some(link) = link {
                        self.encode(link, &Packet::PingResp);
                    }
                }
                Action::Send(packet) => {
                    if let Some(link) = link {
                        self.encode(link, &packet);
                    }
                }
                Action::Publish(publish) => self.deferred.push_back(Deferred::Route {
                    publish,
                    origin: sid,
                }),
                Action::PublishWill(will) => {
                    ShardStats::inc(&self.stats.wills_published);
                    self.deferred.push_back(Deferred::Route {
                        publish: will_publish(*will),
                        origin: None,
                    });
                }
                Action::AddRoute { filter, grant } => {
                    let (Some(sid), Ok(text)) = (sid, std::str::from_utf8(&filter)) else {
                        continue;
                    };
                    self.cluster_changed(sid);
                    if let Some(change) = self.routes.subscribe(text, sid, grant) {
                        if let Some(cluster) = &self.shared.cluster {
                            // The filter's (or group's) first subscriber here.
                            if change.members == 1 {
                                cluster.interest(true, text);
                            }
                        }
                        // Into every other shard's FIFO before the SUBACK
                        // that follows leaves (ordering invariant).
                        self.broadcast(change);
                    }
                }
                Action::DropRoute { filter } => {
                    let (Some(sid), Ok(text)) = (sid, std::str::from_utf8(&filter)) else {
                        continue;
                    };
                    self.cluster_changed(sid);
                    if let Some(change) = self.routes.unsubscribe(text, sid) {
                        if let Some(cluster) = &self.shared.cluster {
                            if change.members == 0 {
                                cluster.interest(false, text);
                            }
                        }
                        self.broadcast(change);
                    }
                }
                Action::SendRetained {
                    filter,
                    grant,
                    is_new,
                } => {
                    if let Some(sid) = sid {
                        self.query_retained(sid, link, filter, grant, is_new);
                    }
                }
                Action::ArmTimer(timer, at) => {
                    let Some(sid) = sid else { continue };
                    let tick = self.clock.wheel_tick(at);
                    let key = self.wheel.insert(tick, TimerEvent::Session(sid, timer));
                    if let Some(old) = self.table.set_timer(sid, timer, Some(key)) {
                        self.wheel.cancel(old);
                    }
                }
                Action::CancelTimer(timer) => {
                    let Some(sid) = sid else { continue };
                    if let Some(old) = self.table.set_timer(sid, timer, None) {
                        self.wheel.cancel(old);
                    }
                }
                Action::Violation(violation) => {
                    ShardStats::inc(&self.stats.protocol_errors);
                    debug!(%violation, "protocol violation");
                }
                Action::LimitHit(limit) => self.limit_hit(limit),
                Action::Denied(access) => self.acl_denied(sid, access),
                Action::Revoked => ShardStats::inc(&self.stats.acl_subscriptions_revoked),
                Action::Close(cause) => {
                    if cause == CloseCause::KeepAliveTimeout {
                        ShardStats::inc(&self.stats.keepalive_expired);
                        debug!("keep-alive expired");
                    }
                    if let Some(link) = link {
                        link.request_close(cause);
                    }
                }
                Action::EndSession => {
                    let Some(sid) = sid else { continue };
                    if let Some(entry) = self.table.remove(sid) {
                        for key in entry.timers.into_iter().flatten() {
                            self.wheel.cancel(key);
                        }
                        if self.shared.cluster.is_some() && !self.handing_over {
                            self.cluster_dirty.remove(&sid);
                            self.cluster_gone.push(entry.session.client_id().clone());
                        }
                        ShardStats::dec(&self.stats.sessions);
                        debug!(session = %sid, "session ended");
                    }
                }
            }
        }
    }

    /// --cluster-nats: `sid`'s stored copy is to be written this turn.
    /// (A session that only got messages queued waits for
    /// [`ABSENT_FLUSH_MS`]: a busy queue is one write a second, not one
    /// per message.)
    pub(crate) fn cluster_changed(&mut self, sid: SessionId) {
        if self.shared.cluster.is_some() {
            self.cluster_dirty.insert(sid);
        }
    }

    /// --cluster-nats: how long until the absent sessions' copies are due
    /// (none waiting: `None`).
    pub(crate) fn cluster_flush_wait_ms(&self) -> Option<u64> {
        if self.cluster_absent.is_empty() {
            return None;
        }
        let due = self.cluster_absent_flushed.0 + ABSENT_FLUSH_MS;
        let now = self.clock.read().1 .0;
        Some(due.saturating_sub(now).max(1))
    }

    /// --cluster-nats: hands the turn's session changes to the control
    /// thread (persistent sessions only; an ended one is removed).
    pub(crate) fn flush_cluster_sessions(&mut self) {
        let Some(cluster) = self.shared.cluster.as_ref() else {
            return;
        };
        for client_id in self.cluster_gone.drain(..) {
            cluster.store_session(client_id, None);
        }
        if !self.cluster_absent.is_empty()
            && self.now.0 >= self.cluster_absent_flushed.0 + ABSENT_FLUSH_MS
        {
            self.cluster_absent_flushed = self.now;
            let absent: Vec<SessionId> = self.cluster_absent.drain().collect();
            self.cluster_dirty.extend(absent);
        }
        if self.cluster_dirty.is_empty() {
            return;
        }
        let wall = self.shared.wall;
        for sid in self.cluster_dirty.drain() {
            let Some(entry) = self.table.get(sid) else {
                continue;
            };
            let s = &entry.session;
            if s.session_expiry_secs() == 0 {
                continue;
            }
            let state = s.export(s.left_at(), &wall);
            cluster.store_session(s.client_id().clone(), Some(state));
        }
    }

    /// Counts a limit a client ran into, and logs it (rate-limited).
    fn limit_hit(&mut self, limit: Limit) {
        let counter = match limit {
            Limit::Subscriptions => &self.stats.subscriptions_refused,
            Limit::TopicLevels => &self.stats.topic_levels_refused,
            Limit::QueuedMessages => &self.stats.queue_full_dropped,
            Limit::QueuedBytes => &self.stats.queue_bytes_dropped,
        };
        ShardStats::inc(counter);
        if let Some(unlogged) = self.gates.check(limit.into(), self.now) {
            warn!(shard = self.id.0, unlogged, "limit reached: {limit}");
        }
    }

    /// The ACL refused `access` to session `sid`: counted; logged at most
    /// once per second per shard (a device retrying a forbidden topic
    /// must not flood the log).
    fn acl_denied(&mut self, sid: Option<SessionId>, access: ringmq_auth::acl::Access) {
        use ringmq_auth::acl::Access;
        let counter = match access {
            Access::Write => &self.stats.acl_publish_denied,
            Access::Subscribe => &self.stats.acl_subscribe_denied,
            Access::Read => &self.stats.acl_read_denied,
        };
        ShardStats::inc(counter);
        // A read denial is the broker filtering, not the client asking.
        if access == Access::Read {
            return;
        }
        if let Some(unlogged) = self.gates.check(Gate::Acl, self.now) {
            let client_id = sid
                .and_then(|s| self.table.get_mut(s))
                .map(|e| e.session.client_id().clone());
            tracing::info!(
                shard = self.id.0,
                client_id = ?client_id,
                ?access,
                unlogged,
                "ACL denied"
            );
        }
    }

    /// Encodes `packet` into the link's output and wakes its task.
    fn encode(&mut self, link: &Link, packet: &Packet) {
        let version = link.version.get().unwrap_or(ProtocolVersion::V3_1_1);
        if packet
            .encode(version, &mut link.outbuf.borrow_mut())
            .is_ok()
        {
            link.wake();
            self.check_outbuf(link);
        }
    }

    /// Encodes a PUBLISH into the link's output and wakes its task.
    fn encode_publish(&mut self, link: &Link, publish: &Publish) {
        let version = link.version.get().unwrap_or(ProtocolVersion::V3_1_1);
        if publish
            .encode(version, &mut link.outbuf.borrow_mut())
            .is_ok()
        {
            ShardStats::inc(&self.stats.publishes_out);
            match publish.qos {
                QoS::AtMostOnce => {}
                QoS::AtLeastOnce => ShardStats::inc(&self.stats.publishes_out_qos1),
                QoS::ExactlyOnce => ShardStats::inc(&self.stats.publishes_out_qos2),
            }
            link.wake();
            self.check_outbuf(link);
        }
    }

    /// A client whose output passed --max-outbuf-hard-bytes is closed:
    /// nothing it could be sent may grow without bound.
    fn check_outbuf(&mut self, link: &Link) {
        let hard = self.shared.config.max_outbuf_hard_bytes;
        if link.queued_bytes() > hard && link.close_requested().is_none() {
            ShardStats::inc(&self.stats.outbuf_closed);
            if let Some(unlogged) = self.gates.check(Gate::Outbuf, self.now) {
                warn!(
                    shard = self.id.0,
                    peer = %link.peer,
                    unlogged,
                    "--max-outbuf-hard-bytes reached: closing a client that does not read"
                );
            }
            link.request_close(CloseCause::NetworkError);
        }
    }

    /// Queues `msg` for shard `to` in order (never dropped, never blocks).
    pub(crate) fn send_mesh(&mut self, to: ShardId, msg: Msg) {
        if let (Some(d), Msg::Publish(_)) = (self.durability.as_mut(), &msg) {
            d.sent[to.0] += 1;
        }
        // A full channel keeps the rest in order in the outlet; the engine
        // moves it on every turn and backs off while it waits.
        self.outlet.send(to.0, msg);
    }

    /// A route change to every other shard.
    fn broadcast(&mut self, change: RouteChange) {
        let own = self.id.0;
        for shard in (0..self.shared.shards).filter(|&s| s != own) {
            self.send_mesh(ShardId(shard), Msg::Route(change.clone()));
        }
    }

    /// After a SUBACK: asks the retained owners for what the Retain
    /// Handling option wants (a plain topic has one owner; a wildcard asks
    /// every shard). What this shard holds is delivered after the outbox.
    fn query_retained(
        &mut self,
        sid: SessionId,
        link: Option<&Rc<Link>>,
        filter: Bytes,
        grant: Subscription,
        is_new: bool,
    ) {
        let Ok(text) = std::str::from_utf8(&filter) else {
            return;
        };
        let shared = matches!(ringmq_route::split_filter(text), FilterKind::Shared { .. });
        if !wants_retained(grant.options.retain_handling, is_new, shared) {
            return;
        }
        let shards = self.shared.shards;
        let owners: Vec<ShardId> = if ringmq_topic::is_wildcard(text) {
            (0..shards).map(ShardId).collect()
        } else {
            vec![owner_shard(&filter, shards)]
        };
        for owner in owners {
            if owner == self.id {
                let mut messages = Vec::new();
                self.retained.matching(text, self.now, &mut messages);
                if !messages.is_empty() {
                    self.deferred.push_back(Deferred::Retained {
                        session: sid,
                        filter: filter.clone(),
                        messages,
                    });
                }
            } else {
                let msg = Msg::RetainedQuery {
                    filter: filter.clone(),
                    reply_to: self.id,
                    session: sid,
                };
                if let Some(link) = link {
                    link.retained_asked();
                }
                self.send_mesh(owner, msg);
            }
        }
    }
}

/// A will as the PUBLISH it becomes; will-only properties stay behind.
pub(crate) fn will_publish(will: Will) -> Publish {
    let mut properties = will.properties;
    properties.will_delay_interval = None;
    Publish {
        dup: false,
        qos: will.qos,
        retain: will.retain,
        topic: will.topic,
        packet_id: 0,
        properties: properties.into(),
        payload: will.payload,
    }
}
