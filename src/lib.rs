//! ringmq: a thread-per-core MQTT 3.1.1 / 5.0 broker on io_uring.
//!
//! [`Broker::start`] runs one pinned glommio executor (a shard) per core.
//! A connection lives on the shard chosen by [`shard_for`] of its client
//! id, so a take-over is shard-local; shards talk only through lock-free
//! crossbeam inboxes (`mesh.rs`). The protocol decisions live in the
//! sans-IO crates (`ringmq-codec`, `ringmq-session`, `ringmq-topic`,
//! `ringmq-wheel`); this crate is the runtime glue around them.
//!
//! This library exists so tests and benches can start a broker in-process;
//! `main.rs` is the command-line front end.

#![warn(missing_docs)]

mod auth;
mod cluster;
mod config;
mod http;
mod io;
mod mesh;
mod persist;
mod shard;
mod stats;
mod transport;

/// `ringmq passwd`: create and edit Mosquitto password files (`main.rs` hands it the arguments).
pub mod passwd;

/// `--config` files, `--print-config` and the example file (`main.rs` loads the flags through it).
pub mod config_file;

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use glommio::{LocalExecutorBuilder, Placement};
use tracing::info;

pub use config::{allowed_cpus, Config, ConfigError, ListenUrl, Scheme};
pub use stats::{Histogram, Histograms, Stats, BUCKET_BOUNDS_US};

use mesh::Mesh;
use shard::{Msg, Shard, Shared};
use stats::ShardStats;

/// Estimated locked memory of glommio's three io_uring rings per shard (SQ,
/// CQ and arrays at its default depth of 128), on top of its registered
/// buffers.
const GLOMMIO_RING_BYTES: u64 = 64 * 1024;

/// The shard that owns `client_id` in a broker with `shards` shards.
///
/// FNV-1a (64 bit), never randomly seeded: the same id always lands on
/// the same shard, in every process and every run.
pub fn shard_for(client_id: &[u8], shards: usize) -> usize {
    ringmq_route::owner_shard(client_id, shards).0
}

/// The host name, for --node-id's default.
fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into our buffer.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match std::str::from_utf8(&buf[..end]) {
        Ok(name) if rc == 0 && !name.is_empty() => name.to_string(),
        _ => "ringmq".to_string(),
    }
}

/// Why the broker could not start.
#[derive(Debug)]
pub enum StartError {
    /// A flag value is invalid.
    Config(ConfigError),
    /// The io_uring memory of all shards does not fit `ulimit -l`.
    LockedMemory {
        /// Bytes the shards would lock.
        needed: u64,
        /// The RLIMIT_MEMLOCK soft limit.
        limit: u64,
        /// Shards requested.
        shards: usize,
        /// `--io-memory-kib`.
        io_memory_kib: usize,
        /// `--ring-depth`.
        ring_depth: usize,
    },
    /// A shard's io_uring could not be created (kernel too old, io_uring
    /// disabled, or out of memory).
    Ring {
        /// The shard.
        shard: usize,
        /// What the kernel said.
        error: std::io::Error,
    },
    /// A shard's executor could not be created.
    Executor(String),
    /// A listener could not be bound.
    Listen(String),
    /// The TLS certificate, key or CA could not be loaded.
    Tls(String),
    /// The password file could not be read or parsed.
    Auth(String),
    /// The ACL file could not be read or parsed.
    Acl(String),
    /// The persistence directory could not be opened or recovered.
    Persistence(String),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Config(e) => write!(f, "{e}"),
            StartError::LockedMemory {
                needed,
                limit,
                shards,
                io_memory_kib,
                ring_depth,
            } => write!(
                f,
                "io_uring memory does not fit the locked-memory limit: {shards} shard(s) x \
                 (3 glommio rings x --io-memory-kib {io_memory_kib} + {} KiB of glommio ring \
                 overhead + {} KiB for the broker ring at --ring-depth {ring_depth}) = {} KiB, \
                 but ulimit -l is {} KiB; lower --io-memory-kib, --ring-depth or --shards, or \
                 raise ulimit -l",
                GLOMMIO_RING_BYTES / 1024,
                io::ring::locked_bytes(*ring_depth) / 1024,
                needed / 1024,
                limit / 1024
            ),
            StartError::Ring { shard, error } => write!(
                f,
                "cannot create shard {shard}'s io_uring: {error} (the broker needs Linux 6.0 \
                 or later with io_uring enabled; on ENOMEM lower --ring-depth or raise \
                 ulimit -l)"
            ),
            StartError::Executor(e) => write!(f, "cannot start a shard executor: {e}"),
            StartError::Listen(e) => write!(f, "cannot listen: {e}"),
            StartError::Tls(e) => write!(f, "cannot load TLS material: {e}"),
            StartError::Auth(e) => write!(f, "cannot load the password file: {e}"),
            StartError::Acl(e) => write!(f, "cannot load the ACL file: {e}"),
            StartError::Persistence(e) => write!(f, "cannot open the persistence directory: {e}"),
        }
    }
}

impl std::error::Error for StartError {}

impl From<ConfigError> for StartError {
    fn from(e: ConfigError) -> Self {
        StartError::Config(e)
    }
}

/// The RLIMIT_MEMLOCK soft limit in bytes (`None` = unlimited).
fn locked_memory_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct we own.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) };
    if rc != 0 || limit.rlim_cur == libc::RLIM_INFINITY {
        return None;
    }
    Some(limit.rlim_cur)
}

/// Checks that every shard's io_uring memory fits `ulimit -l`. Each shard
/// registers its io memory with each of glommio's three rings, and has the
/// broker's own ring.
fn check_locked_memory(
    shards: usize,
    io_memory_kib: usize,
    ring_depth: usize,
) -> Result<u64, StartError> {
    let per_shard =
        3 * io_memory_kib as u64 * 1024 + GLOMMIO_RING_BYTES + io::ring::locked_bytes(ring_depth);
    let needed = per_shard * shards as u64;
    match locked_memory_limit() {
        Some(limit) if needed > limit => Err(StartError::LockedMemory {
            needed,
            limit,
            shards,
            io_memory_kib,
            ring_depth,
        }),
        _ => Ok(needed),
    }
}

/// A running broker. Dropping it shuts it down.
pub struct Broker {
    shared: Arc<Shared>,
    addrs: Vec<SocketAddr>,
    threads: Vec<JoinHandle<()>>,
    /// The password verifier threads.
    auth_threads: Vec<JoinHandle<()>>,
    /// `--http-listen`: metrics, admin API, status page.
    http: Option<http::HttpServer>,
    /// `--persistence-dir`'s lock, held while the broker runs.
    _store_lock: Option<std::fs::File>,
    /// `--cluster-nats`: the control thread (stopped after the shards).
    _cluster: Option<cluster::Cluster>,
}

impl Broker {
    /// Starts every shard and binds every listener. Returns once all shards
    /// are accepting.
    pub fn start(config: Config) -> Result<Broker, StartError> {
        config.validate()?;
        let shards = config.shard_count();
        let locked = check_locked_memory(shards, config.io_memory_kib, config.ring_depth)?;
        let cpus = allowed_cpus();
        let tls = transport::tls::load(&config)
            .map_err(StartError::Tls)?
            .map(Arc::new);
        let passwords = auth::load(&config).map_err(StartError::Auth)?;
        let acl = auth::load_acl(&config).map_err(StartError::Acl)?;
        let (mesh, inboxes) = Mesh::<Msg>::new(shards, config.inbox_capacity)
            .map_err(|e| StartError::Executor(format!("cannot create the shard mesh: {e}")))?;
        // --cluster-nats: the control thread starts before the shards, so
        // the interest of sessions restored from disk reaches it.
        let mut cluster = None;
        let mut cluster_link = None;
        if !config.cluster_nats.is_empty() {
            let node_id = config.node_id.clone().unwrap_or_else(host_name);
            let to_shards = mesh.clone();
            let (c, link) = cluster::Cluster::start(
                config.cluster_nats.clone(),
                config.cluster_prefix.clone(),
                node_id,
                cluster::Timings {
                    heartbeat: std::time::Duration::from_millis(config.cluster_heartbeat_ms),
                },
                if config.cluster_qos_durable() {
                    cluster::Mode::Durable
                } else {
                    cluster::Mode::BestEffort
                },
                move |event| match event {
                    cluster::ToShard::Publish(publish, group) => {
                        let shard = shard_for(&publish.topic, shards);
                        to_shards
                            .send_external(shard, Msg::ClusterPublish(Box::new(publish), group));
                    }
                    cluster::ToShard::Claimed {
                        shard,
                        link,
                        client_id,
                        outcome,
                    } => to_shards.send_external(
                        shard,
                        Msg::ClusterClaimed(Box::new((link, client_id, outcome))),
                    ),
                    cluster::ToShard::Adopt(client_id, session) => {
                        let shard = shard_for(&client_id, shards);
                        to_shards.send_external(
                            shard,
                            Msg::ClusterAdopt(Box::new((client_id, *session))),
                        );
                    }
                    cluster::ToShard::TakeOver {
                        client_id,
                        clean_start,
                        username,
                        reply,
                    } => {
                        let shard = shard_for(&client_id, shards);
                        to_shards.send_external(
                            shard,
                            Msg::ClusterTakeOver(Box::new((
                                client_id,
                                clean_start,
                                username,
                                reply,
                            ))),
                        );
                    }
                    cluster::ToShard::Retained(publish) => {
                        // The shard that holds the topic's retained slot.
                        let shard = ringmq_route::owner_shard(&publish.topic, shards).0;
                        to_shards.send_external(shard, Msg::ClusterRetained(Box::new(publish)));
                    }
                    cluster::ToShard::Stored { shard, token } => {
                        to_shards.send_external(shard, Msg::ClusterStored(token));
                    }
                },
            )
            .map_err(StartError::Executor)?;
            cluster = Some(c);
            cluster_link = Some(link);
        }
        let epoch = std::time::Instant::now();
        let wall = ringmq_session::WallClock {
            unix_ms_at_epoch: persist::unix_ms(),
        };
        let shared = Arc::new(Shared {
            cluster: cluster_link,
            wall,
            stats: (0..shards)
                .map(|_| Arc::new(ShardStats::default()))
                .collect(),
            shards,
            mesh,
            open_connections: AtomicUsize::new(0),
            epoch,
            per_ip: Default::default(),
            tls_reloads: AtomicU64::new(0),
            tls_reload_failures: AtomicU64::new(0),
            password_reloads: AtomicU64::new(0),
            password_reload_failures: AtomicU64::new(0),
            acl_reloads: AtomicU64::new(0),
            acl_reload_failures: AtomicU64::new(0),
            config,
        });
        // Hash checks run on threads of their own; each shard holds a
        // sender, so the threads end with the shards.
        let (auth_jobs, auth_threads) = match &passwords {
            Some(_) => {
                let (jobs, threads) = auth::start(shared.config.auth_threads, shared.mesh.clone())
                    .map_err(|e| {
                        StartError::Executor(format!("cannot start the auth threads: {e}"))
                    })?;
                (Some(jobs), threads)
            }
            None => (None, Vec::new()),
        };
        // Recovered before any shard starts: each gets its part.
        let mut stored: Vec<Option<_>> = (0..shards).map(|_| None).collect();
        let mut stored_wills = Vec::new();
        let mut store_lock = None;
        if let Some(dir) = &shared.config.persistence_dir {
            let clock = shared.wall;
            let settings = persist::Settings {
                fsync: shared.config.fsync_policy(),
                fsync_interval_ms: shared.config.fsync_interval_ms,
                compact_log_bytes: shared.config.compact_log_bytes,
                clock,
            };
            let opened = persist::open(dir, shards, settings).map_err(StartError::Persistence)?;
            for (slot, part) in stored.iter_mut().zip(opened.shards) {
                *slot = Some(part);
            }
            stored_wills = opened.wills;
            store_lock = Some(opened.lock);
        }
        let mut broker = Broker {
            shared: shared.clone(),
            addrs: shared.config.listen.iter().map(|l| l.addr).collect(),
            threads: Vec::with_capacity(shards),
            auth_threads,
            http: None,
            _store_lock: store_lock,
            _cluster: cluster,
        };
        let mut listen = shared.config.listen.clone();
        for (id, inbox) in inboxes.into_iter().enumerate() {
            let cpu = cpus[id % cpus.len()];
            let (ready_tx, ready_rx) = mpsc::channel::<Result<Vec<SocketAddr>, StartError>>();
            let shared = shared.clone();
            // Port 0: shard 0 binds first and the others bind the port it got.
            let urls = listen.clone();
            let security = Security {
                tls: tls.clone(),
                auth: passwords.clone().zip(auth_jobs.clone()),
                acl: acl.clone(),
                store: stored[id].take(),
            };
            let thread = std::thread::Builder::new()
                .name(format!("ringmq-shard-{id}"))
                .spawn(move || {
                    // A panic must not leave a half-dead broker (the other
                    // shards running on without this one's clients): log
                    // it and abort, so a supervisor restarts the process.
                    // The release profile aborts on panic anyway; this
                    // covers builds that unwind.
                    let body = std::panic::AssertUnwindSafe(move || {
                        run_shard(id, cpu, shared, inbox, urls, security, ready_tx)
                    });
                    if std::panic::catch_unwind(body).is_err() {
                        tracing::error!(shard = id, "shard panicked: aborting the process");
                        std::process::abort();
                    }
                })
                .map_err(|e| StartError::Executor(e.to_string()))?;
            broker.threads.push(thread);
            match ready_rx.recv() {
                Ok(Ok(bound)) => {
                    if id == 0 {
                        for (url, addr) in listen.iter_mut().zip(&bound) {
                            url.addr = *addr;
                        }
                        broker.addrs = bound;
                    }
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    return Err(StartError::Executor(format!(
                        "shard {id} stopped while starting (see the log)"
                    )))
                }
            }
        }
        info!(
            shards,
            listen = %listen
                .iter()
                .map(|l| l.to_string())
                .collect::<Vec<_>>()
                .join(" "),
            keepalive_tick_ms = broker.shared.config.keepalive_tick_ms,
            keepalive_backoff = broker.shared.config.keepalive_backoff,
            ring_depth = broker.shared.config.ring_depth,
            read_buffers = broker.shared.config.read_buffers,
            read_buffer_kib = broker.shared.config.read_buffer_kib,
            locked_kib = locked / 1024,
            "ringmq started"
        );
        if !stored_wills.is_empty() {
            // Every shard holds its sessions and has sent its route
            // changes: the wills due during the downtime go out now, each
            // from its client's shard.
            let mut by_shard: Vec<Vec<_>> = (0..shards).map(|_| Vec::new()).collect();
            for (client_id, will) in stored_wills {
                by_shard[shard_for(&client_id, shards)].push((client_id, will));
            }
            for (id, wills) in by_shard.into_iter().enumerate() {
                if !wills.is_empty() {
                    broker
                        .shared
                        .mesh
                        .send_external(id, Msg::StoredWills(wills));
                }
            }
        }
        if let Some(addr) = broker.shared.config.http_listen {
            let server = http::HttpServer::start(addr, broker.shared.clone())
                .map_err(|e| StartError::Listen(format!("--http-listen {addr}: {e}")))?;
            broker.http = Some(server);
        }
        if passwords.is_none() && broker.shared.config.anonymous_allowed() {
            tracing::warn!(
                listeners = %listen
                    .iter()
                    .map(|l| l.to_string())
                    .collect::<Vec<_>>()
                    .join(" "),
                "no --password-file: every listener accepts any client"
            );
        }
        Ok(broker)
    }

    /// The first listener's address (with the real port when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// Every listener's address.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The number of shards.
    pub fn shards(&self) -> usize {
        self.shared.shards
    }

    /// Counters summed over every shard.
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// The latency histograms (keep-alive lateness, take-over, CONNECT),
    /// summed over every shard.
    pub fn histograms(&self) -> Histograms {
        self.shared.histograms()
    }

    /// What SIGHUP does: reloads the TLS material and the password file
    /// (each only if configured; a failure keeps the old one and is
    /// logged). Errors are joined into one message.
    pub fn reload(&self) -> Result<(), String> {
        let mut errors = Vec::new();
        if self.shared.config.listen.iter().any(|l| l.scheme.tls()) {
            if let Err(e) = self.reload_tls() {
                errors.push(e);
            }
        }
        if self.shared.config.password_file.is_some() {
            if let Err(e) = self.reload_passwords() {
                errors.push(e);
            }
        }
        if self.shared.config.acl_file.is_some() {
            if let Err(e) = self.reload_acl() {
                errors.push(e);
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }

    /// Reads --password-file again: CONNECTs from now on are checked
    /// against it and every shard forgets its cached checks. A file that
    /// does not parse keeps the old one; the error names the line.
    pub fn reload_passwords(&self) -> Result<(), String> {
        let shared = &self.shared;
        let file = self.reload_with(
            auth::load(&shared.config),
            "no --password-file is configured",
            (&shared.password_reloads, &shared.password_reload_failures),
            "password file reload failed: the old one stays in use",
            Msg::Passwords,
        )?;
        info!(users = file.len(), "password file reloaded");
        Ok(())
    }

    /// Reads --acl-file again: every shard decides each session's
    /// subscriptions again under the new rules (removing the ones no
    /// longer allowed) and forgets its cached decisions. A file that does
    /// not parse keeps the old rules; the error names the line.
    pub fn reload_acl(&self) -> Result<(), String> {
        let shared = &self.shared;
        self.reload_with(
            auth::load_acl(&shared.config),
            "no --acl-file is configured",
            (&shared.acl_reloads, &shared.acl_reload_failures),
            "ACL file reload failed: the old rules stay in use",
            Msg::Acl,
        )?;
        info!("ACL file reloaded");
        Ok(())
    }

    /// Reads --tls-cert, --tls-key and --tls-ca again (what SIGHUP does):
    /// handshakes that start after this use the new material; connections
    /// already open keep theirs. A failure keeps the old material and says
    /// why.
    pub fn reload_tls(&self) -> Result<(), String> {
        let shared = &self.shared;
        self.reload_with(
            transport::tls::load(&shared.config).map(|m| m.map(Arc::new)),
            "no TLS listener is configured",
            (&shared.tls_reloads, &shared.tls_reload_failures),
            "TLS reload failed: the old certificate stays in use",
            Msg::TlsReload,
        )?;
        info!("TLS certificate, key and CA reloaded");
        Ok(())
    }

    /// One reload: `loaded` is what was read again (`None` when it is not
    /// configured: `missing` is the error). Every shard gets `msg(loaded)`
    /// and the first of `counters` counts it; a failure counts in the
    /// second, logs `warning` with the error and changes nothing.
    fn reload_with<T: Clone>(
        &self,
        loaded: Result<Option<T>, String>,
        missing: &str,
        counters: (&AtomicU64, &AtomicU64),
        warning: &str,
        msg: impl Fn(T) -> Msg,
    ) -> Result<T, String> {
        let value = match loaded {
            Ok(Some(value)) => value,
            Ok(None) => return Err(missing.into()),
            Err(e) => {
                counters.1.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "{warning}");
                return Err(e);
            }
        };
        for id in 0..self.shared.shards {
            self.shared.mesh.send_external(id, msg(value.clone()));
        }
        counters.0.fetch_add(1, Ordering::Relaxed);
        Ok(value)
    }

    /// Applies the session-policy keys of `config` that may change while
    /// running ([`config_file::LIVE_KEYS`]: keep-alive policy, session
    /// expiry, queue and subscription limits, client-id rules) on every
    /// shard. New connections, sessions and decisions follow them; what a
    /// connected client was told at CONNECT stays. The ACL stays as loaded.
    /// `config` must be valid ([`Config::validate`]).
    pub fn apply_live(&self, config: &Config) {
        let policy = shard::policy_for(config, None);
        for id in 0..self.shared.shards {
            self.shared
                .mesh
                .send_external(id, Msg::Policy(Box::new(policy.clone())));
        }
    }

    /// The address of the `--http-listen` listener (the port picked when
    /// 0 was asked); `None` without it.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().map(|h| h.local_addr())
    }

    /// Stops accepting, sends v5 clients DISCONNECT 0x8B, closes every
    /// connection and joins the shards.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        // The admin API asks the shards: it goes first.
        self.http = None;
        for id in 0..self.shared.mesh.len() {
            self.shared.mesh.send_external(id, Msg::Shutdown);
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        // The shards held the verifier queue's senders: its threads end.
        for thread in self.auth_threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What a shard starts with for TLS and authentication.
struct Security {
    tls: Option<Arc<transport::tls::TlsMaterial>>,
    /// The password file and the verifier threads' queue.
    auth: Option<(
        Arc<ringmq_auth::password::PasswordFile>,
        crossbeam_channel::Sender<auth::Job>,
    )>,
    /// The ACL file's rules (`None`: everything allowed).
    acl: Option<Arc<ringmq_auth::acl::Acl>>,
    /// --persistence-dir: what this shard recovered, and its writer.
    store: Option<(ringmq_store::StoreState, persist::Journal)>,
}

/// One shard thread's life: build its pinned executor, bind, serve.
fn run_shard(
    id: usize,
    cpu: usize,
    shared: Arc<Shared>,
    inbox: mesh::Inbox<Msg>,
    urls: Vec<ListenUrl>,
    security: Security,
    ready_tx: mpsc::Sender<Result<Vec<SocketAddr>, StartError>>,
) {
    // The shard's socket I/O runs on its own ring (shard/engine.rs); the
    // executor runs the engine's one task and nothing else, so glommio's
    // preempt timer and spin settings do not come into play.
    let executor = LocalExecutorBuilder::new(Placement::Fixed(cpu))
        .name(&format!("ringmq-shard-{id}"))
        .io_memory(shared.config.io_memory_kib * 1024)
        .make();
    let executor = match executor {
        Ok(ex) => ex,
        Err(e) => {
            let _ = ready_tx.send(Err(StartError::Executor(format!(
                "shard {id} on CPU {cpu}: {e}"
            ))));
            return;
        }
    };
    executor.run(async move {
        let ring = match io::ring::Ring::new(io::ring::RingSize::of(&shared.config)) {
            Ok(ring) => ring,
            Err(error) => {
                let _ = ready_tx.send(Err(StartError::Ring { shard: id, error }));
                return;
            }
        };
        let shard = Shard::new(
            id,
            shared,
            inbox,
            security.tls.as_deref(),
            security.auth,
            security.acl,
            security.store,
        );
        match shard::listen::serve(&shard, &urls) {
            Ok(bound) => {
                let _ = ready_tx.send(Ok(bound));
            }
            Err(e) => {
                let _ = ready_tx.send(Err(StartError::Listen(format!("shard {id}: {e}"))));
                return;
            }
        }
        shard.run(ring).await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_for_is_stable_and_spread() {
        assert_eq!(shard_for(b"device-1", 2), shard_for(b"device-1", 2));
        // FNV-1a of "a": fixed forever.
        assert_eq!(
            shard_for(b"a", u32::MAX as usize),
            0xaf63_dc4c_8601_ec8c % u32::MAX as u64 as usize
        );
        let on_zero = (0..1000)
            .filter(|i| shard_for(format!("c{i}").as_bytes(), 2) == 0)
            .count();
        assert!((400..600).contains(&on_zero), "{on_zero}");
    }

    #[test]
    fn locked_memory_check_names_the_flag() {
        let err = check_locked_memory(2, 1 << 30, 4096)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--io-memory-kib"), "{err}");
    }
}
