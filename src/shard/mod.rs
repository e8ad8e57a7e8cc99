//! One shard: everything a pinned glommio executor owns.
//!
//! A `Shard` is shared by the tasks of its executor through `Rc` and never
//! leaves its thread. Its mutable state sits in one `RefCell` that is only
//! borrowed in short synchronous sections, never across an `.await`.
//! Other shards reach it only through its inbox (see `mesh.rs`).

pub(crate) mod conn;
mod keepalive;
mod retained;
mod router;
mod sessions;

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use glommio::net::{TcpListener, TcpStream};
use glommio::Task;
use hashbrown::HashMap;
use ringmq_session::{KeepAliveClock, ServerPolicy};
use ringmq_wheel::{Tick, Wheel};
use tracing::{debug, info, warn};

use crate::config::Config;
use crate::mesh::{Control, Doorbell, Inbox, Incoming, Mesh};
use crate::stats::ShardStats;
use conn::Conn;
use keepalive::Ticker;
pub(crate) use keepalive::TimerEvent;
use retained::Retained;
use router::Router;
use sessions::Sessions;

/// Bytes the shard's read arena hands out before it is replaced.
const ARENA_BYTES: usize = 64 * 1024;
/// Below this much room left, the arena is replaced before a read.
const ARENA_MIN_READ: usize = 16 * 1024;

/// What every shard shares with the broker handle.
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) shards: usize,
    pub(crate) mesh: Mesh,
    pub(crate) stats: Vec<Arc<ShardStats>>,
    /// Connections open over all shards, for `--max-connections`.
    pub(crate) open_connections: AtomicUsize,
}

/// The per-core shard.
pub(crate) struct Shard {
    pub(crate) id: usize,
    pub(crate) shared: Arc<Shared>,
    pub(crate) stats: Arc<ShardStats>,
    pub(crate) policy: ServerPolicy,
    pub(crate) clock: KeepAliveClock,
    started: Instant,
    inbox: Inbox,
    /// The inbox's doorbell, until the inbox task takes it.
    doorbell: Cell<Option<OwnedFd>>,
    pub(crate) state: RefCell<State>,
    /// Reads land here; frames are `Bytes` slices of it (no copy).
    arena: RefCell<BytesMut>,
    pub(crate) ticker: Ticker,
    pub(crate) shutting_down: Cell<bool>,
    /// Accept loops waiting for a connection, woken to stop on shutdown.
    accept_wakers: RefCell<Vec<std::task::Waker>>,
    next_conn_id: Cell<u64>,
}

/// Everything mutable a shard owns.
pub(crate) struct State {
    pub(crate) conns: HashMap<u64, Rc<Conn>>,
    pub(crate) sessions: Sessions,
    pub(crate) wheel: Wheel<TimerEvent>,
    pub(crate) router: Router,
    pub(crate) retained: Retained,
    listeners: Vec<Task<()>>,
}

impl Shard {
    pub(crate) fn new(id: usize, shared: Arc<Shared>, mut inbox: Inbox) -> Rc<Shard> {
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
        };
        let clock = KeepAliveClock::new(config.keepalive_tick_ms);
        Rc::new(Shard {
            id,
            stats: shared.stats[id].clone(),
            policy,
            clock,
            started: Instant::now(),
            inbox,
            doorbell: Cell::new(doorbell),
            state: RefCell::new(State {
                conns: HashMap::new(),
                sessions: Sessions::default(),
                wheel: Wheel::new(Tick(0)),
                router: Router::new(),
                retained: Retained::default(),
                listeners: Vec::new(),
            }),
            arena: RefCell::new(BytesMut::new()),
            ticker: Ticker::default(),
            shutting_down: Cell::new(false),
            accept_wakers: RefCell::new(Vec::new()),
            next_conn_id: Cell::new(1),
            shared,
        })
    }

    pub(crate) fn config(&self) -> &Config {
        &self.shared.config
    }

    fn elapsed_us(&self) -> u64 {
        self.started.elapsed().as_micros() as u64
    }

    /// The tick a packet arriving now is stamped with (rounded up).
    pub(crate) fn stamp_tick(&self) -> u64 {
        self.clock.stamp(self.elapsed_us())
    }

    /// The tick timers have reached (rounded down).
    pub(crate) fn now_tick(&self) -> u64 {
        self.clock.now(self.elapsed_us())
    }

    /// Milliseconds since the shard started (the session crate's clock).
    pub(crate) fn now_ms(&self) -> u64 {
        self.elapsed_us() / 1000
    }

    /// An instant as milliseconds since the shard started.
    pub(crate) fn instant_ms(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.started).as_millis() as u64
    }

    /// The instant at which `tick` begins.
    pub(crate) fn tick_instant(&self, tick: u64) -> Instant {
        self.started + Duration::from_micros(self.clock.tick_start_us(tick))
    }

    pub(crate) fn next_conn_id(&self) -> u64 {
        let id = self.next_conn_id.get();
        self.next_conn_id.set(id + 1);
        id
    }

    /// Binds every listener (with SO_REUSEPORT) and starts accepting.
    pub(crate) fn listen(
        self: &Rc<Self>,
        addrs: &[SocketAddr],
    ) -> std::io::Result<Vec<SocketAddr>> {
        let mut bound = Vec::with_capacity(addrs.len());
        let mut tasks = Vec::with_capacity(addrs.len());
        for addr in addrs {
            let fd = bind_reuseport(addr)?;
            let raw = fd.as_raw_fd();
            // SAFETY: `fd` is an open listening socket we own; the listener
            // takes ownership and closes it when dropped.
            let listener = unsafe { TcpListener::from_raw_fd(fd.into_raw_fd()) };
            bound.push(listener.local_addr()?);
            let listener = (listener, raw);
            let shard = self.clone();
            tasks.push(glommio::spawn_local(async move {
                shard.accept_loop(listener).await
            }));
        }
        self.state.borrow_mut().listeners = tasks;
        Ok(bound)
    }

    async fn accept_loop(self: Rc<Self>, (listener, raw_fd): (TcpListener, RawFd)) {
        loop {
            let accept = std::pin::pin!(listener.accept());
            let mut accept = accept;
            let accepted = std::future::poll_fn(|cx| {
                if self.shutting_down.get() {
                    return std::task::Poll::Ready(None);
                }
                match accept.as_mut().poll(cx) {
                    std::task::Poll::Ready(r) => std::task::Poll::Ready(Some(r)),
                    std::task::Poll::Pending => {
                        let mut wakers = self.accept_wakers.borrow_mut();
                        if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
                            wakers.push(cx.waker().clone());
                        }
                        std::task::Poll::Pending
                    }
                }
            })
            .await;
            let Some(accepted) = accepted else {
                // An io_uring accept in flight keeps the socket listening
                // after close(); shutdown() stops it at once, so the port is
                // closed before `Broker::shutdown` returns.
                // SAFETY: `raw_fd` belongs to `listener`, still alive here.
                unsafe { libc::shutdown(raw_fd, libc::SHUT_RDWR) };
                return;
            };
            match accepted {
                Ok(stream) => {
                    let peer = stream
                        .peer_addr()
                        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
                    // Small MQTT packets must not wait for Nagle.
                    let _ = stream.set_nodelay(true);
                    self.spawn_connection(stream, peer, BytesMut::new(), false);
                }
                Err(e) => {
                    // Out of descriptors or similar: say so, back off a little
                    // rather than spin.
                    warn!(shard = self.id, error = %e, "accept failed");
                    glommio::timer::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }

    pub(crate) fn spawn_connection(
        self: &Rc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        read: BytesMut,
        adopted: bool,
    ) {
        ShardStats::inc(&self.stats.connections);
        // An adopted socket was counted by the shard that accepted it.
        if !adopted {
            self.shared.open_connections.fetch_add(1, Ordering::Relaxed);
        }
        let shard = self.clone();
        glommio::spawn_local(conn::run(shard, stream, peer, read, adopted)).detach();
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

    /// Handles every message waiting in the inbox. Called by the inbox task
    /// and, before routing a publish, by connection tasks (so a route added
    /// before a SUBACK is known before any publish that follows it).
    pub(crate) fn drain_inbox(self: &Rc<Self>) {
        while let Some(msg) = self.inbox.try_recv() {
            self.handle_incoming(msg);
        }
    }

    /// Marks the shard as alive for the stall guard.
    pub(crate) fn bump_activity(&self) {
        let a = &self.stats.activity;
        a.store(a.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
    }

    fn handle_incoming(self: &Rc<Self>, msg: Incoming) {
        self.bump_activity();
        match msg {
            Incoming::Publish(routed) | Incoming::Control(Control::Publish(routed)) => {
                self.handle_routed(routed)
            }
            Incoming::Control(Control::Route {
                filter,
                group,
                shard,
                add,
            }) => {
                let router = &mut self.state.borrow_mut().router;
                if add {
                    router.add_remote(&filter, group, shard);
                } else {
                    router.drop_remote(&filter, group, shard);
                }
            }
            Incoming::Control(Control::RetainedQuery {
                filter,
                reply_to,
                serial,
                subscription,
            }) => self.answer_retained_query(&filter, reply_to, serial, subscription),
            Incoming::Control(Control::RetainedReply {
                serial,
                subscription,
                messages,
            }) => self.deliver_retained(serial, subscription, messages),
            Incoming::Control(Control::Adopt { fd, read, peer }) => {
                ShardStats::inc(&self.stats.handoffs);
                // SAFETY: `fd` is an open socket we own; ownership moves into
                // the stream, which closes it when dropped.
                let stream = unsafe { TcpStream::from_raw_fd(fd.into_raw_fd()) };
                self.spawn_connection(stream, peer, BytesMut::from(&read[..]), true);
            }
            Incoming::Control(Control::Shutdown) => self.begin_shutdown(),
        }
    }

    async fn inbox_loop(self: Rc<Self>, doorbell: OwnedFd) {
        let doorbell = Doorbell::new(doorbell);
        loop {
            let msg = self.inbox.recv(&doorbell).await;
            self.handle_incoming(msg);
            self.drain_inbox();
            if self.shutting_down.get() {
                return;
            }
        }
    }

    fn begin_shutdown(self: &Rc<Self>) {
        if self.shutting_down.replace(true) {
            return;
        }
        info!(shard = self.id, "shutting down: disconnecting clients");
        let conns: Vec<Rc<Conn>> = self.state.borrow().conns.values().cloned().collect();
        for conn in conns {
            conn.disconnect(
                ringmq_codec::ReasonCode::SERVER_SHUTTING_DOWN,
                ringmq_session::CloseCause::ServerShutdown,
            );
        }
        self.ticker.notify();
        for waker in self.accept_wakers.borrow_mut().drain(..) {
            waker.wake();
        }
    }

    /// The shard's life: the inbox task, the keep-alive ticker, until
    /// shutdown has closed every connection.
    pub(crate) async fn run(self: Rc<Self>) {
        if let Some(doorbell) = self.doorbell.take() {
            glommio::spawn_local(self.clone().inbox_loop(doorbell)).detach();
        }
        let ticker = glommio::spawn_local(self.clone().ticker_loop());
        ticker.await;
        // The accept loops end on shutdown and drop their sockets.
        let listeners = std::mem::take(&mut self.state.borrow_mut().listeners);
        for task in listeners {
            task.await;
        }
        // Give connection tasks a bounded moment to flush their DISCONNECTs.
        let deadline = Instant::now() + Duration::from_secs(2);
        while !self.state.borrow().conns.is_empty() && Instant::now() < deadline {
            glommio::timer::sleep(Duration::from_millis(5)).await;
        }
        debug!(shard = self.id, "stopped");
    }

    /// Picks a client id for a client that sent none, one this shard owns.
    pub(crate) fn assign_client_id(&self, counter: &mut u64) -> Bytes {
        loop {
            *counter += 1;
            let id = format!("ringmq-{}-{:x}", self.id, *counter);
            if crate::shard_for(id.as_bytes(), self.shared.shards) == self.id {
                return Bytes::from(id);
            }
        }
    }
}

/// Backlog of each listening socket (the kernel caps it at somaxconn).
const LISTEN_BACKLOG: i32 = 4096;

/// A listening TCP socket with SO_REUSEPORT, so every shard can bind the
/// same address and the kernel spreads the accepts.
fn bind_reuseport(addr: &SocketAddr) -> std::io::Result<OwnedFd> {
    use std::io::Error;
    let (domain, storage, len) = sockaddr(addr);
    // SAFETY: plain socket syscalls on a descriptor we create and own;
    // `storage` outlives the bind call and `len` is its real size.
    unsafe {
        let fd = libc::socket(domain, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(Error::last_os_error());
        }
        let fd = OwnedFd::from_raw_fd(fd);
        let one: libc::c_int = 1;
        for opt in [libc::SO_REUSEADDR, libc::SO_REUSEPORT] {
            let rc = libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
            if rc != 0 {
                return Err(Error::last_os_error());
            }
        }
        if libc::bind(
            fd.as_raw_fd(),
            (&storage as *const libc::sockaddr_storage).cast(),
            len,
        ) != 0
        {
            return Err(Error::last_os_error());
        }
        if libc::listen(fd.as_raw_fd(), LISTEN_BACKLOG) != 0 {
            return Err(Error::last_os_error());
        }
        Ok(fd)
    }
}

fn sockaddr(addr: &SocketAddr) -> (libc::c_int, libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: an all-zero sockaddr_storage is valid; we fill the variant
    // that matches the address family.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_in fits in sockaddr_storage.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin) };
            (
                libc::AF_INET,
                storage,
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_in6 fits in sockaddr_storage.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin6) };
            (
                libc::AF_INET6,
                storage,
                std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
            )
        }
    }
}
