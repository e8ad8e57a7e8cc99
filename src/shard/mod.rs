//! One shard: everything a pinned glommio executor owns.
//!
//! Layout (imports point one way; nothing but listen.rs imports conn.rs):
//! - `link.rs`: what a connection task shares with the shard (output
//!   buffer, waker, close request);
//! - `table.rs`: client id -> session -> link; take-over is a table step;
//! - `timers.rs`: the clock, wheel events, the ticker's wake-up;
//! - `msg.rs`: the plain messages of the mesh;
//! - `apply.rs`: the shard's state (`Core`) and `apply`, the only code
//!   that encodes into a link, sends on the mesh or arms the wheel;
//! - `routing.rs`: carries out ringmq-route's decisions;
//! - `driver.rs`: the entry points (CONNECT, packet, close, timer, inbox);
//! - `conn.rs`: a connection's task, bytes in and out only;
//! - `listen.rs`: accept loops and the inbox task (adopted sockets).
//!
//! `Shard` is shared by the tasks of its executor through `Rc` and never
//! leaves its thread. Its `Core` sits in one `RefCell` borrowed once per
//! step, never across an `.await`, and no step re-enters another.

mod apply;
mod conn;
mod driver;
mod engine;
mod frames;
mod link;
pub(crate) mod listen;
mod msg;
mod routing;
mod shared;
mod table;
mod timers;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use glommio::net::TcpStream;
use glommio::Task;
use hashbrown::HashMap;
use ringmq_route::{Matches, Plan, RetainedStore, Routes, ShardId};
use ringmq_session::{Outbox, ServerPolicy};
use ringmq_wheel::{Tick as WheelTick, Wheel};
use tracing::debug;

use crate::mesh::Inbox;
use apply::Core;
pub(crate) use msg::Msg;
pub(crate) use shared::Shared;
use timers::{Clock, Ticker};

/// Bytes the shard's read arena hands out before it is replaced.
const ARENA_BYTES: usize = 64 * 1024;
/// Below this much room left, the arena is replaced before a read.
const ARENA_MIN_READ: usize = 16 * 1024;

/// The per-core shard.
pub(crate) struct Shard {
    pub(crate) id: usize,
    pub(crate) shared: Arc<Shared>,
    pub(crate) core: RefCell<Core>,
    /// Reads land here; frames are `Bytes` slices of it (no copy).
    arena: RefCell<BytesMut>,
    ticker: Rc<Ticker>,
    flusher: Rc<Ticker>,
    /// The inbox's doorbell, until the inbox task takes it.
    doorbell: Cell<Option<OwnedFd>>,
    listeners: RefCell<Vec<Task<()>>>,
    /// `--io-engine ring`: the bound listening sockets, until the engine
    /// takes them.
    ring_listeners: RefCell<Vec<OwnedFd>>,
}

impl Shard {
    pub(crate) fn new(id: usize, shared: Arc<Shared>, mut inbox: Inbox<Msg>) -> Rc<Shard> {
        let doorbell = inbox.take_doorbell();
        let config = &shared.config;
        let policy = ServerPolicy {
            server_keep_alive: config.server_keepalive,
            max_keep_alive: config.max_keepalive,
            max_packet_size: config.max_packet_size,
            v3_session_expiry_secs: config.session_expiry_default_secs,
            max_qos: config.max_qos(),
            receive_maximum: config.receive_maximum,
            retain_available: true,
            topic_alias_maximum: config.topic_alias_maximum,
            max_queued_messages: config.max_queued_messages,
            keepalive_backoff: config.keepalive_backoff,
        };
        let ticker = Rc::new(Ticker::default());
        let flusher = Rc::new(Ticker::default());
        let clock = Clock::new(shared.epoch, config.keepalive_tick_ms);
        let core = Core {
            id: ShardId(id),
            stats: shared.stats[id].clone(),
            policy,
            clock,
            now: clock.read().1,
            ticker: ticker.clone(),
            flusher: flusher.clone(),
            links: HashMap::new(),
            table: Default::default(),
            wheel: Wheel::new(clock.wheel_now()),
            routes: Routes::new(ShardId(id), shared.shards),
            retained: RetainedStore::new(config.max_retained.div_ceil(shared.shards)),
            outlet: shared.mesh.outlet(id),
            inbox,
            outbox: Outbox::new(),
            plan: Plan::default(),
            matches: Matches::default(),
            deferred: VecDeque::new(),
            adopts: Vec::new(),
            accept_wakers: Vec::new(),
            shutting_down: false,
            next_link: 0,
            dirty: (config.io_engine == crate::config::IoEngine::Ring)
                .then(|| Rc::new(link::Dirty::default())),
            shared: shared.clone(),
        };
        Rc::new(Shard {
            id,
            core: RefCell::new(core),
            arena: RefCell::new(BytesMut::new()),
            ticker,
            flusher,
            doorbell: Cell::new(doorbell),
            listeners: RefCell::new(Vec::new()),
            ring_listeners: RefCell::new(Vec::new()),
            shared,
        })
    }

    pub(crate) fn config(&self) -> &crate::config::Config {
        &self.shared.config
    }

    pub(crate) fn shutting_down(&self) -> bool {
        self.core.borrow().shutting_down
    }

    /// Marks the shard as alive for the stall guard.
    pub(crate) fn bump_activity(&self) {
        use std::sync::atomic::Ordering;
        let a = &self.shared.stats[self.id].activity;
        a.store(a.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
    }

    /// Reads from `stream` into the shard's arena. Returns the bytes read
    /// as their own `BytesMut` (a slice of the arena, no copy).
    pub(crate) fn poll_read_arena(
        &self,
        stream: &mut TcpStream,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<BytesMut>> {
        use futures_lite::AsyncRead;
        use std::task::Poll;
        let mut arena = self.arena.borrow_mut();
        if arena.len() < ARENA_MIN_READ {
            // Frames still alive keep the old block; it is freed with them.
            *arena = BytesMut::zeroed(ARENA_BYTES);
        }
        match std::pin::Pin::new(stream).poll_read(cx, &mut arena[..]) {
            Poll::Ready(Ok(n)) => Poll::Ready(Ok(arena.split_to(n))),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Waits a little for full channels to drain (back-pressure).
    pub(crate) async fn backoff(&self) {
        glommio::timer::sleep(Duration::from_micros(100)).await;
    }

    /// The shard's life: the keep-alive ticker and the outlet flusher,
    /// until shutdown has closed every connection.
    pub(crate) async fn run(self: Rc<Self>) {
        if self.config().io_engine == crate::config::IoEngine::Ring {
            let listeners = std::mem::take(&mut *self.ring_listeners.borrow_mut());
            let Some(doorbell) = self.doorbell.take() else {
                return;
            };
            return engine::run(self, listeners, doorbell).await;
        }
        glommio::spawn_local(self.clone().flusher_loop()).detach();
        self.clone().ticker_loop().await;
        // The accept loops end on shutdown and drop their sockets.
        let listeners = std::mem::take(&mut *self.listeners.borrow_mut());
        for task in listeners {
            task.await;
        }
        // Give connection tasks a bounded moment to flush their DISCONNECTs.
        let deadline = Instant::now() + Duration::from_secs(2);
        while !self.core.borrow().links.is_empty() && Instant::now() < deadline {
            glommio::timer::sleep(Duration::from_millis(5)).await;
        }
        self.flusher.notify();
        debug!(shard = self.id, "stopped");
    }

    async fn ticker_loop(self: Rc<Self>) {
        loop {
            if self.shutting_down() {
                return;
            }
            self.bump_activity();
            let (next, clock) = {
                let mut core = self.core.borrow_mut();
                (core.fire_timers(), core.clock)
            };
            self.ticker.plan(next);
            self.ticker
                .wait(next.map(|t: WheelTick| clock.instant_of(t)))
                .await;
        }
    }

    /// Moves messages that waited for room in a full channel, when no
    /// connection is waiting on them itself.
    async fn flusher_loop(self: Rc<Self>) {
        loop {
            self.flusher.wait(None).await;
            while !self.core.borrow_mut().outlet.flush() {
                if self.shutting_down() && self.core.borrow().links.is_empty() {
                    return;
                }
                self.backoff().await;
            }
            if self.shutting_down() && self.core.borrow().links.is_empty() {
                return;
            }
        }
    }
}
