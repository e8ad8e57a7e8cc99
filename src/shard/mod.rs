//! One shard: everything a pinned glommio executor owns.
//!
//! Layout (imports point one way):
//! - `link.rs`: what the engine and the core share about one connection
//!   (output buffer, close request, dirty mark);
//! - `table.rs`: client id -> session -> link; take-over is a table step;
//! - `timers.rs`: the clock and the wheel's events;
//! - `msg.rs`: the plain messages of the mesh;
//! - `apply.rs`: the shard's state (`Core`) and `apply`, the only code
//!   that encodes into a link, sends on the mesh or arms the wheel;
//! - `routing.rs`: carries out ringmq-route's decisions;
//! - `driver.rs`: the entry points (CONNECT, packet, close, timer, inbox);
//! - `frames.rs`: bytes to packets, the decode loop;
//! - `engine.rs`: the shard's loop on its own io_uring (accept, read,
//!   write, close, sleep);
//! - `listen.rs`: binding the listeners.
//!
//! `Shard` never leaves its thread. Its `Core` sits in one `RefCell`
//! borrowed once per step, and no step re-enters another.

pub(crate) mod admin;
mod apply;
mod control;
mod driver;
mod engine;
mod frames;
mod link;
pub(crate) mod listen;
mod msg;
pub(crate) mod ratelimit;
mod restore;
mod routing;
mod shared;
mod sys;
mod table;
mod timers;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::sync::Arc;

use ringmq_route::{Matches, Plan, RetainedStore, Routes, ShardId};
use ringmq_session::{Outbox, ServerPolicy};
use ringmq_wheel::Wheel;

use crate::mesh::Inbox;
use apply::Core;
pub(crate) use link::LinkId;
pub(crate) use msg::Msg;
pub(crate) use shared::Shared;
use timers::Clock;

/// The per-core shard.
pub(crate) struct Shard {
    pub(crate) id: usize,
    pub(crate) shared: Arc<Shared>,
    pub(crate) core: RefCell<Core>,
    /// The inbox's doorbell, until the engine takes it.
    doorbell: Cell<Option<OwnedFd>>,
    /// The bound listening sockets, until the engine takes them.
    listeners: RefCell<Vec<OwnedFd>>,
}

impl Shard {
    pub(crate) fn new(
        id: usize,
        shared: Arc<Shared>,
        mut inbox: Inbox<Msg>,
        tls: Option<&crate::transport::tls::TlsMaterial>,
        auth: Option<(
            Arc<ringmq_auth::password::PasswordFile>,
            crossbeam_channel::Sender<crate::auth::Job>,
        )>,
        acl: Option<Arc<ringmq_auth::acl::Acl>>,
        store: Option<(ringmq_store::StoreState, crate::persist::Journal)>,
    ) -> Rc<Shard> {
        let doorbell = inbox.take_doorbell();
        let config = &shared.config;
        let policy = policy_for(config, acl);
        let clock = Clock::new(shared.epoch, config.keepalive_tick_ms);
        let core = Core {
            id: ShardId(id),
            stats: shared.stats[id].clone(),
            policy,
            clock,
            now: clock.read().1,
            links: Default::default(),
            table: Default::default(),
            wheel: Wheel::new(clock.wheel_now()),
            routes: Routes::new(ShardId(id), shared.shards),
            retained: RetainedStore::new(config.max_retained.div_ceil(shared.shards))
                .with_max_bytes(config.max_retained_bytes.div_ceil(shared.shards)),
            outlet: shared.mesh.outlet(id),
            inbox,
            outbox: Outbox::new(),
            plan: Plan::default(),
            matches: Matches::default(),
            deferred: VecDeque::new(),
            adopts: Vec::new(),
            shutting_down: false,
            next_link: 0,
            gates: Default::default(),
            tls: tls.map(crate::transport::tls::ShardTls::new),
            passwords: auth.as_ref().map(|(p, _)| p.clone()),
            auth_jobs: auth.map(|(_, jobs)| jobs),
            auth_cache: Default::default(),
            connect_started: Default::default(),
            sys: Default::default(),
            resumed: Vec::new(),
            claiming: Default::default(),
            cluster_dirty: Default::default(),
            cluster_gone: Vec::new(),
            cluster_absent: Default::default(),
            cluster_absent_flushed: ringmq_session::Tick(0),
            handing_over: false,
            arrivals: Default::default(),
            // Bursts of 10 ms of work: a backlog drains in small steps
            // between reads, never in one long freeze.
            timer_bucket: ratelimit::TokenBucket::new(
                config.will_rate,
                (config.will_rate / 100).max(1),
                clock.read().1,
            ),
            due: VecDeque::new(),
            pending_connects: 0,
            connect_bucket: ratelimit::TokenBucket::new(
                config.max_connect_rate,
                (config.max_connect_rate / 10).max(1),
                clock.read().1,
            ),
            shared: shared.clone(),
            journal: None,
            durability: None,
            sync_waits: VecDeque::new(),
            cluster_holds: Default::default(),
        };
        let mut core = core;
        if let Some((state, journal)) = store {
            core.journal = Some(journal);
            if shared.shards > 1 {
                core.durability = Some(Box::new(apply::Durability::new(shared.shards)));
            }
            core.import(state);
            // Route changes of the imported sessions go out now, so every
            // shard knows them before a client connects.
            core.outlet.flush();
        }
        Rc::new(Shard {
            id,
            core: RefCell::new(core),
            doorbell: Cell::new(doorbell),
            listeners: RefCell::new(Vec::new()),
            shared,
        })
    }

    pub(crate) fn config(&self) -> &crate::config::Config {
        &self.shared.config
    }

    pub(crate) fn shutting_down(&self) -> bool {
        self.core.borrow().shutting_down
    }

    /// The shard's life: its engine, until shutdown has closed every
    /// connection.
    pub(crate) async fn run(self: Rc<Self>, ring: crate::io::ring::Ring) {
        let listeners = std::mem::take(&mut *self.listeners.borrow_mut());
        let Some(doorbell) = self.doorbell.take() else {
            return;
        };
        self.core.borrow_mut().arm_sys();
        engine::run(self, ring, listeners, doorbell).await;
    }
}

/// The session policy of `config` (with `acl`, the ACL file's rules).
/// Built at start, and again when a SIGHUP changes a policy key
/// ([`crate::config_file::LIVE_KEYS`]).
pub(crate) fn policy_for(
    config: &crate::config::Config,
    acl: Option<Arc<ringmq_auth::acl::Acl>>,
) -> ServerPolicy {
    ServerPolicy {
        server_keep_alive: config.server_keepalive,
        max_keep_alive: config.max_keepalive,
        min_keep_alive: config.min_keepalive,
        refuse_low_keep_alive_v3: config.refuse_low_keepalive,
        allow_zero_keep_alive: config.allow_zero_keepalive,
        max_packet_size: config.max_packet_size,
        v3_session_expiry_secs: config.session_expiry_default_secs,
        max_qos: config.max_qos(),
        receive_maximum: config.receive_maximum,
        retain_available: true,
        topic_alias_maximum: config.topic_alias_maximum,
        max_queued_messages: config.max_queued_messages,
        keepalive_backoff: config.keepalive_backoff,
        max_queued_bytes: config.max_queued_bytes,
        max_inflight_out: config.max_inflight_out,
        max_subscriptions: config.max_subscriptions,
        max_topic_levels: config.max_topic_levels,
        max_session_expiry_secs: config.max_session_expiry_secs,
        max_topic_aliases_out: config.max_topic_aliases_out,
        max_topic_alias_bytes: config.max_topic_alias_bytes,
        acl,
        // Checked by `Config::validate`.
        client_id_patterns: config
            .client_id_patterns
            .iter()
            .filter_map(|p| ringmq_auth::client_id::ClientIdPattern::parse(p).ok())
            .collect(),
        takeover_same_user_only: config.takeover_same_user_only,
        persistence: config.persistence_dir.is_some(),
    }
}
