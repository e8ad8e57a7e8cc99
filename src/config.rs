//! Every tuning flag of the broker (clap derive), validated into [`Config`].
//!
//! The flags are the broker's whole configuration (a `--config` file sets
//! the same flags). Invalid values are refused here with a message naming
//! the flag, so a shard never starts with a value it cannot honour.

use std::ffi::OsString;
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::str::FromStr;

use clap::Parser;

/// ringmq: a thread-per-core MQTT 3.1.1 / 5.0 broker on io_uring.
#[derive(Parser, Clone, Debug)]
#[command(name = "ringmq", version, about, long_about = None)]
pub struct Config {
    /// Read settings from this TOML file: every flag has a key of the same
    /// name (`keepalive-tick-ms = 100`, `listen = ["mqtt://0.0.0.0:1883"]`);
    /// flags on the command line override it.
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Print the effective configuration as a TOML file (that --config
    /// loads back unchanged) and exit.
    #[arg(long)]
    pub print_config: bool,

    /// A listener (repeatable): `mqtt://HOST:PORT` (or bare `HOST:PORT`),
    /// `mqtts://HOST:PORT`, `ws://HOST:PORT/PATH` or `wss://HOST:PORT/PATH`
    /// (PATH defaults to /mqtt). Every shard binds every listener with
    /// SO_REUSEPORT and the kernel spreads the accepts.
    #[arg(long = "listen", value_name = "URL", default_value = "0.0.0.0:1883")]
    pub listen: Vec<ListenUrl>,

    /// Certificate chain (PEM) of the mqtts:// and wss:// listeners.
    /// Reloaded on SIGHUP.
    #[arg(long, value_name = "PATH")]
    pub tls_cert: Option<PathBuf>,

    /// Private key (PEM: PKCS#8, RSA or SEC1) of --tls-cert. Reloaded on
    /// SIGHUP.
    #[arg(long, value_name = "PATH")]
    pub tls_key: Option<PathBuf>,

    /// CA bundle (PEM) that client certificates are verified against; with
    /// it, TLS clients are asked for a certificate (optional unless
    /// --require-certificate). Reloaded on SIGHUP.
    #[arg(long, value_name = "PATH")]
    pub tls_ca: Option<PathBuf>,

    /// TLS clients without a certificate that --tls-ca verifies fail the
    /// handshake.
    #[arg(long)]
    pub require_certificate: bool,

    /// The subject CN of a TLS client's certificate becomes its username
    /// (as Mosquitto's use_identity_as_username); a TLS client without a
    /// certificate, or whose certificate has no CN, is refused (CONNACK
    /// 0x87 / v3 0x05). Needs --tls-ca.
    #[arg(long)]
    pub use_identity_as_username: bool,

    /// TLS handshakes each shard runs at once; a TLS socket accepted beyond
    /// it is closed at once (counted), so a storm of TLS connects cannot
    /// take the shard's CPU from its established clients.
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub max_tls_handshakes: usize,

    /// Accept WebSocket upgrades that offer no `mqtt` (or `mqttv3.1`)
    /// subprotocol; without this they get HTTP 400.
    #[arg(long)]
    pub ws_allow_no_subprotocol: bool,

    /// Password file in Mosquitto's format (`user:$7$...` lines, as
    /// mosquitto_passwd or `ringmq passwd` write them). A CONNECT with a
    /// wrong user or password gets CONNACK 0x86 (v3 0x04). Reloaded on
    /// SIGHUP.
    #[arg(long, value_name = "PATH")]
    pub password_file: Option<PathBuf>,

    /// Whether a client without a username may connect (CONNACK 0x87 / v3
    /// 0x05 otherwise). Default: false with --password-file, true
    /// without.
    #[arg(long, value_name = "BOOL")]
    pub allow_anonymous: Option<bool>,

    /// Threads that verify password hashes (deliberately slow), so no
    /// shard waits for one: a CONNECT is parked meanwhile.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub auth_threads: usize,

    /// Seconds each shard remembers a successful (user, password) check, so
    /// a reconnecting fleet costs one hash per user per this long (0 = no
    /// cache). Cleared when the password file is reloaded.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    pub auth_cache_secs: u64,

    /// ACL file in Mosquitto's acl_file format (`topic`, `user`, `pattern`
    /// lines with `%c`/`%u`): who may publish, subscribe and read what.
    /// Refusals get SUBACK 0x87 (v3 0x80) and PUBACK/PUBREC 0x87 (v5).
    /// Without it everything is allowed. Reloaded on SIGHUP.
    #[arg(long, value_name = "PATH")]
    pub acl_file: Option<PathBuf>,

    /// Client ids a client with a username may use: a glob where `%u` is
    /// the username and `*` any run of characters, e.g. `%u-*`
    /// (repeatable: any one may match). Others get CONNACK 0x85 (v3 0x02).
    #[arg(long = "client-id-pattern", value_name = "GLOB")]
    pub client_id_patterns: Vec<String>,

    /// Refuse (CONNACK 0x87, v3 0x05) a CONNECT whose client id has a
    /// session (connected or stored) made under another username, so one
    /// user cannot take over or resume another's session.
    #[arg(long)]
    pub takeover_same_user_only: bool,

    /// Directory for persistence: persistent sessions (subscriptions,
    /// queued and in-flight QoS 1/2 messages, wills) and retained
    /// messages survive a restart and kill -9. Off unless given; created
    /// if missing; locked while the broker runs. Each shard writes its own
    /// files (shard-N/).
    #[arg(long, value_name = "DIR")]
    pub persistence_dir: Option<PathBuf>,

    /// When the store's writes are forced to disk: `never` (the kernel
    /// writes them back: survives kill -9, not a power loss), `interval`
    /// (at most --fsync-interval-ms of acknowledged messages lost on
    /// power loss), `always` (every acknowledgement waits for fdatasync:
    /// nothing acknowledged is lost on power loss).
    #[arg(long, value_name = "WHEN", default_value = "interval",
          value_parser = ["never", "interval", "always"])]
    pub fsync: String,

    /// With --fsync interval: the longest time written records stay
    /// without an fdatasync.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    pub fsync_interval_ms: u64,

    /// A shard's log is compacted into a snapshot once it grows past this
    /// many bytes and past the last snapshot's size (compaction runs in
    /// small steps between loop turns).
    #[arg(long, value_name = "BYTES", default_value_t = 64 * 1024 * 1024)]
    pub compact_log_bytes: u64,

    /// NATS server URL for clustering (`nats://host:4222`; repeatable for
    /// several servers of one NATS cluster). Nodes on the same NATS and
    /// --cluster-prefix act as one broker for routing: a publish reaches
    /// subscribers on every node, and, with JetStream on the NATS server,
    /// client ids, persistent sessions and retained messages are
    /// cluster-wide (see the README).
    #[arg(long = "cluster-nats", value_name = "URL")]
    pub cluster_nats: Vec<String>,

    /// This node's name in the cluster (default: the host name).
    #[arg(long, value_name = "NAME")]
    pub node_id: Option<String>,

    /// The NATS subject namespace of the cluster: nodes with the same
    /// prefix form one broker (`ringmq`, `acme.mqtt`).
    #[arg(long, value_name = "PREFIX", default_value = "ringmq")]
    pub cluster_prefix: String,

    /// Milliseconds between two heartbeats of this node in the cluster's
    /// directory: a node is taken for dead (its clients' ids may be taken
    /// without its answer) three heartbeats after its last, and a take-over
    /// request waits two for the owner's answer.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    pub cluster_heartbeat_ms: u64,

    /// How QoS 1/2 publishes cross nodes: `durable` (through a JetStream
    /// stream: the publisher's PUBACK or PUBREC waits until NATS stored the
    /// message, which NATS then republishes to every node with a
    /// subscriber) or `best-effort` (core NATS: at most once, and the
    /// acknowledgement waits for nothing).
    #[arg(long, value_name = "MODE", default_value = "durable",
          value_parser = ["durable", "best-effort"])]
    pub cluster_qos: String,

    /// Address of the HTTP listener for /metrics (Prometheus), the JSON
    /// admin API (/api/v1/...) and the status page (/). Off unless given.
    /// Without --http-token, bind it to loopback: the API can disconnect
    /// clients.
    #[arg(long, value_name = "HOST:PORT")]
    pub http_listen: Option<SocketAddr>,

    /// Bearer token every /api/ request needs (`Authorization: Bearer
    /// TOKEN`); /metrics and the status page itself stay open (the page
    /// sends the token it is given).
    #[arg(long, value_name = "TOKEN")]
    pub http_token: Option<String>,

    /// Seconds between publishes of the $SYS/broker/... topics (retained,
    /// Mosquitto's names: version, uptime, clients, messages,
    /// subscriptions, retained messages, load); 0 = off.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub sys_interval: u64,

    /// Number of shards (one pinned glommio executor each). Default: one per
    /// CPU this process may run on (its affinity mask). At most 64.
    #[arg(long, value_name = "N")]
    pub shards: Option<usize>,

    /// Keep-alive monitoring tick in milliseconds: a silent client is closed
    /// no later than one tick after its deadline.
    #[arg(long, value_name = "MS", default_value_t = 100)]
    pub keepalive_tick_ms: u64,

    /// A client is closed after keep-alive x backoff x 2 of silence; 0.75
    /// gives exactly the standard's 1.5 x keep-alive.
    #[arg(
        long,
        value_name = "FACTOR",
        default_value_t = 0.75,
        allow_negative_numbers = true
    )]
    pub keepalive_backoff: f64,

    /// Impose this keep-alive (seconds) on every MQTT 5 client through
    /// CONNACK Server Keep Alive. Default: the client's own value.
    #[arg(long, value_name = "SECS")]
    pub server_keepalive: Option<u16>,

    /// Largest keep-alive accepted, in seconds. A v5 client asking for more
    /// (or for 0 when this is below 65535) is told this value; a v3 client
    /// asking for more is refused with CONNACK 0x02.
    #[arg(long, value_name = "SECS", default_value_t = 65535)]
    pub max_keepalive: u16,

    /// Smallest keep-alive accepted, in seconds (0 = no minimum). A v5
    /// client asking for less is told this value (Server Keep Alive); a v3
    /// client asking for less is held to it, or refused with CONNACK 0x02
    /// with --refuse-low-keepalive. Keep-alive 0 is --allow-zero-keepalive's
    /// to decide.
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    pub min_keepalive: u16,

    /// Refuse (CONNACK 0x02) a v3 client whose keep-alive is below
    /// --min-keepalive instead of holding it to the minimum.
    #[arg(long)]
    pub refuse_low_keepalive: bool,

    /// Whether a client may ask for keep-alive 0 (no keep-alive). When
    /// false, a v5 client is told --min-keepalive (or --max-keepalive when
    /// there is no minimum) and a v3 client is refused with CONNACK 0x02.
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    pub allow_zero_keepalive: bool,

    /// Time a new connection has to deliver a whole CONNECT, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    pub connect_timeout_ms: u64,

    /// Most connections open at once over all shards (0 = no limit beyond
    /// the open-files limit). Over it: v5 CONNACK 0x97, v3 CONNACK 0x03.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub max_connections: usize,

    /// Connections open at once from one IP address over all shards
    /// (0 = no limit). Excess sockets are closed at accept (counted).
    /// Behind carrier-grade NAT thousands of devices share an address,
    /// so there is no default limit.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub max_connections_per_ip: u32,

    /// CONNECTs each shard accepts per second (0 = no limit); the excess
    /// gets CONNACK 0x9F (v5) or is closed (v3), counted. A refusal costs
    /// a shard about what an accept does (the CONNECT must be read to
    /// answer in its version), so this protects what comes after a
    /// CONNECT (sessions, wills, routes), not the shard's CPU.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub max_connect_rate: u64,

    /// Accepted sockets per shard that have not finished their CONNECT;
    /// beyond it a new socket is closed at once (counted). Bounds what
    /// half-done handshakes hold; --connect-timeout-ms bounds how long.
    #[arg(long, value_name = "N", default_value_t = 8192)]
    pub max_pending_connects: usize,

    /// Fired session timers (keep-alive expiries with their wills, will
    /// delays, session expiries) each shard handles per second; the rest
    /// wait, in deadline order, for the next tokens (0 = no limit). An
    /// outage that drops 100k devices at once then degrades smoothly.
    #[arg(long, value_name = "N", default_value_t = 20_000)]
    pub will_rate: u64,

    /// Take-overs of one client id within --takeover-window-secs beyond
    /// which the newcomer is refused (v5 CONNACK 0x9F, v3 0x03): two
    /// devices fighting over one id stop kicking each other (0 = never).
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub takeover_limit: u32,

    /// The window of --takeover-limit, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub takeover_window_secs: u64,

    /// Largest MQTT packet accepted, in bytes (whole packet). A larger one
    /// is refused from its fixed header (v5: 0x95) and the connection closed.
    #[arg(long, value_name = "BYTES", default_value_t = 1_048_576)]
    pub max_packet_size: u32,

    /// glommio's io_uring registered memory per shard, in KiB (the
    /// executor's own rings, which the broker's socket I/O does not use:
    /// keep it at the minimum). Locked memory is limited (ulimit -l):
    /// shards x (3 x this + the broker ring's size) must fit.
    #[arg(long, value_name = "KIB", default_value_t = 64)]
    pub io_memory_kib: usize,

    /// How long a v3 session with clean session 0 outlives its connection,
    /// in seconds (v5 clients choose their own Session Expiry Interval).
    #[arg(long, value_name = "SECS", default_value_t = 86_400)]
    pub session_expiry_default_secs: u32,

    /// Capacity of each shard's cross-shard inbox, in messages, split evenly
    /// over its sources (the other shards and the broker handle; at least
    /// 16 each). A full channel stops the connection that publishes into it
    /// (back-pressure).
    #[arg(long, value_name = "N", default_value_t = 16_384)]
    pub inbox_capacity: usize,

    /// Output bytes waiting for one client (written but not yet taken by
    /// its socket) beyond which the broker stops reading that connection
    /// (so it produces no more PINGRESP or acknowledgements) and drops
    /// further QoS 0 deliveries to it (counted). QoS 1/2 deliveries wait
    /// in the session instead, within --max-inflight-out.
    #[arg(long, value_name = "BYTES", default_value_t = 1024 * 1024)]
    pub max_outbuf_bytes: usize,

    /// Output bytes waiting for one client beyond which it is closed.
    #[arg(long, value_name = "BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_outbuf_hard_bytes: usize,

    /// A client with output waiting whose peer acknowledges none of it for
    /// this long is closed, in milliseconds (0 = never). A slow reader that
    /// makes progress is not.
    #[arg(long, value_name = "MS", default_value_t = 30_000)]
    pub write_stall_timeout_ms: u64,

    /// Highest QoS granted to subscriptions (0, 1 or 2); announced to v5
    /// clients as Maximum QoS when below 2.
    #[arg(long, value_name = "QOS", default_value_t = 2)]
    pub max_qos: u8,

    /// How many QoS 1/2 messages a client may have unacknowledged towards
    /// the broker (v5 Receive Maximum); more gets DISCONNECT 0x93.
    #[arg(long, value_name = "N", default_value_t = 128)]
    pub receive_maximum: u16,

    /// QoS 1/2 messages the broker keeps unacknowledged towards one
    /// client, whatever the client's Receive Maximum (a v3 client has
    /// none, and would otherwise get 65,535). Below a publisher's own
    /// window a subscriber falls behind it and its queue overflows (32
    /// lost half of a 64-in-flight QoS 1 stream here): the default matches
    /// --receive-maximum.
    #[arg(long, value_name = "N", default_value_t = 128)]
    pub max_inflight_out: u16,

    /// QoS 1/2 messages kept per session while its client is away or its
    /// window is full; beyond it new ones are dropped (counted, logged).
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub max_queued_messages: usize,

    /// Bytes of QoS 1/2 messages kept per session, queued and in flight
    /// together (topic, payload and properties as stored); beyond it new
    /// ones are dropped (counted, logged).
    #[arg(long, value_name = "BYTES", default_value_t = 8 * 1024 * 1024)]
    pub max_queued_bytes: usize,

    /// Subscriptions one session may hold; more get SUBACK 0x97 (v5) or
    /// 0x80 (v3).
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub max_subscriptions: usize,

    /// Levels of a topic name or filter ("a/b" has 2). A deeper filter is
    /// refused in its SUBACK (0x8F / 0x80); a deeper PUBLISH topic closes
    /// the connection (v5 DISCONNECT 0x90).
    #[arg(long, value_name = "N", default_value_t = 128)]
    pub max_topic_levels: usize,

    /// Persistent sessions kept for absent clients, over all shards (each
    /// shard keeps its share). A client that leaves when its shard is at
    /// the limit has its session ended at once (counted, logged).
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    pub max_sessions: usize,

    /// Longest session expiry granted, in seconds: a v5 client asking for
    /// more (0xFFFFFFFF = never) is told this value in CONNACK. 4294967295
    /// lets sessions live forever.
    #[arg(long, value_name = "SECS", default_value_t = 7 * 86_400)]
    pub max_session_expiry_secs: u32,

    /// Most retained messages kept over all shards (each shard keeps its
    /// share); a new retained topic beyond it is not stored (counted).
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    pub max_retained: usize,

    /// Bytes of retained messages kept over all shards (each shard keeps
    /// its share); a message that does not fit is not stored (counted).
    #[arg(long, value_name = "BYTES", default_value_t = 256 * 1024 * 1024)]
    pub max_retained_bytes: usize,

    /// Topic aliases a v5 client may use towards the broker (CONNACK Topic
    /// Alias Maximum); 0 turns inbound aliases off.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub topic_alias_maximum: u16,

    /// Topic aliases the broker uses towards one v5 client, at most (and
    /// never more than the client's Topic Alias Maximum); 0 = none.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub max_topic_aliases_out: u16,

    /// Bytes of topic names the outbound aliases of one connection keep;
    /// once spent, further topics are sent in full.
    #[arg(long, value_name = "BYTES", default_value_t = 64 * 1024)]
    pub max_topic_alias_bytes: usize,

    /// Submission queue entries of each shard's io_uring (a power of two,
    /// 128..=32768; the completion queue is 4x). A turn that queues more
    /// requests than this submits early and goes on, so this bounds memory,
    /// not the connections a shard can serve.
    #[arg(long, value_name = "N", default_value_t = 4096)]
    pub ring_depth: usize,

    /// Read buffers each shard provides to the kernel (a power of two, 2..=32768). A connection owns none while it waits:
    /// the kernel picks one when bytes arrive and the shard returns it at
    /// once. When all are in use, reads pause until one comes back. Their
    /// total bounds the input a shard holds unhandled, so it is also the
    /// longest queue a message can wait in behind others' input.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub read_buffers: u16,

    /// Size of each read buffer in KiB (1..=1024): the
    /// most one read takes from a socket.
    #[arg(long, value_name = "KIB", default_value_t = 16)]
    pub read_buffer_kib: usize,

    /// Backlog of each listening socket: connections the kernel completes
    /// and queues before a shard accepts them (a reconnect storm lands
    /// here). The kernel caps it at net.core.somaxconn.
    #[arg(long, value_name = "N", default_value_t = 4096)]
    pub listen_backlog: u32,

    /// Microseconds a shard that just ran out of work keeps polling its
    /// completion queue before it sleeps: a reply arriving within it skips
    /// the sleep/wake-up round trip (lower latency, higher QoS 1 throughput); an
    /// idle shard still sleeps. 0 = sleep at once (least CPU).
    #[arg(long, value_name = "US", default_value_t = 0)]
    pub busy_poll_us: u64,

    /// Log filter (tracing syntax, e.g. "info" or "ringmq=debug"). RUST_LOG
    /// is used when this flag is absent.
    #[arg(long, value_name = "FILTER", env = "RUST_LOG", default_value = "info")]
    pub log: String,
}

/// A flag value the broker cannot honour.
#[derive(Debug)]
pub struct ConfigError(String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Parses flags like the command line (the first item is the program
    /// name) and validates them.
    pub fn from_args<I, T>(args: I) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let config = Config::try_parse_from(args).map_err(|e| ConfigError(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every value; the message names the flag at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |flag: &str, why: String| Err(ConfigError(format!("invalid --{flag}: {why}")));
        if self.listen.is_empty() {
            return bad("listen", "at least one address is needed".into());
        }
        let tls_listener = self.listen.iter().any(|l| l.scheme.tls());
        if tls_listener && (self.tls_cert.is_none() || self.tls_key.is_none()) {
            return bad(
                "listen",
                "an mqtts:// or wss:// listener needs --tls-cert and --tls-key".into(),
            );
        }
        if !tls_listener {
            for (flag, given) in [
                ("tls-cert", self.tls_cert.is_some()),
                ("tls-key", self.tls_key.is_some()),
                ("tls-ca", self.tls_ca.is_some()),
                ("require-certificate", self.require_certificate),
                ("use-identity-as-username", self.use_identity_as_username),
            ] {
                if given {
                    return bad(flag, "given, but no --listen is mqtts:// or wss://".into());
                }
            }
        }
        if self.require_certificate && self.tls_ca.is_none() {
            return bad(
                "require-certificate",
                "needs --tls-ca to verify certificates against".into(),
            );
        }
        if self.use_identity_as_username && self.tls_ca.is_none() {
            return bad(
                "use-identity-as-username",
                "needs --tls-ca to verify certificates against".into(),
            );
        }
        if self.allow_anonymous == Some(false)
            && self.password_file.is_none()
            && !self.use_identity_as_username
        {
            return bad(
                "allow-anonymous",
                "false needs --password-file (or --use-identity-as-username): no client could connect".into(),
            );
        }
        for pattern in &self.client_id_patterns {
            if let Err(e) = ringmq_auth::client_id::ClientIdPattern::parse(pattern) {
                return bad("client-id-pattern", format!("{pattern:?}: {e}"));
            }
        }
        if !(1..=64).contains(&self.auth_threads) {
            return bad(
                "auth-threads",
                format!("{} is not in 1..=64", self.auth_threads),
            );
        }
        if self.max_tls_handshakes == 0 {
            return bad("max-tls-handshakes", "must be at least 1".into());
        }
        if let Some(n) = self.shards {
            if n == 0 || n > 64 {
                return bad("shards", format!("{n} is not in 1..=64"));
            }
        }
        if self.keepalive_tick_ms == 0 || self.keepalive_tick_ms > 60_000 {
            return bad(
                "keepalive-tick-ms",
                format!("{} is not in 1..=60000", self.keepalive_tick_ms),
            );
        }
        if !(self.keepalive_backoff.is_finite()
            && self.keepalive_backoff > 0.0
            && self.keepalive_backoff <= 100.0)
        {
            return bad(
                "keepalive-backoff",
                format!("{} must be a number in (0, 100]", self.keepalive_backoff),
            );
        }
        if self.min_keepalive > self.max_keepalive {
            return bad(
                "min-keepalive",
                format!(
                    "{} is above --max-keepalive {}",
                    self.min_keepalive, self.max_keepalive
                ),
            );
        }
        if self.refuse_low_keepalive && self.min_keepalive == 0 {
            return bad("refuse-low-keepalive", "needs --min-keepalive".into());
        }
        if let Some(s) = self.server_keepalive.filter(|&s| s < self.min_keepalive) {
            return bad(
                "server-keepalive",
                format!("{s} is below --min-keepalive {}", self.min_keepalive),
            );
        }
        if self.http_token.as_deref().is_some_and(str::is_empty) {
            return bad("http-token", "must not be empty".into());
        }
        if self.http_token.is_some() && self.http_listen.is_none() {
            return bad("http-token", "given, but no --http-listen".into());
        }
        if let Some(s) = self.server_keepalive {
            if s > self.max_keepalive {
                return bad(
                    "server-keepalive",
                    format!("{s} is above --max-keepalive {}", self.max_keepalive),
                );
            }
        }
        if self.connect_timeout_ms == 0 {
            return bad("connect-timeout-ms", "must be at least 1".into());
        }
        if self.max_packet_size < 64 || self.max_packet_size > ringmq_codec::MAX_PACKET_SIZE {
            return bad(
                "max-packet-size",
                format!(
                    "{} is not in 64..={}",
                    self.max_packet_size,
                    ringmq_codec::MAX_PACKET_SIZE
                ),
            );
        }
        if self.io_memory_kib < 64 {
            return bad("io-memory-kib", "glommio needs at least 64 KiB".into());
        }
        if !self.ring_depth.is_power_of_two() || !(128..=32768).contains(&self.ring_depth) {
            return bad(
                "ring-depth",
                format!("{} is not a power of two in 128..=32768", self.ring_depth),
            );
        }
        if !self.read_buffers.is_power_of_two()
            || self.read_buffers < 2
            || self.read_buffers > 32768
        {
            return bad(
                "read-buffers",
                format!("{} is not a power of two in 2..=32768", self.read_buffers),
            );
        }
        if !(1..=1024).contains(&self.read_buffer_kib) {
            return bad(
                "read-buffer-kib",
                format!("{} is not in 1..=1024", self.read_buffer_kib),
            );
        }
        if self.busy_poll_us > 10_000 {
            return bad(
                "busy-poll-us",
                format!("{} is not in 0..=10000", self.busy_poll_us),
            );
        }
        if ringmq_cluster::subject::check_prefix(&self.cluster_prefix).is_err() {
            return bad(
                "cluster-prefix",
                format!(
                    "{:?}: one or more dot-separated tokens without spaces, `*` or `>`",
                    self.cluster_prefix
                ),
            );
        }
        if self.fsync_interval_ms == 0 {
            return bad("fsync-interval-ms", "must be at least 1".into());
        }
        if self.compact_log_bytes < 4096 {
            return bad("compact-log-bytes", "must be at least 4096".into());
        }
        if self.max_qos > 2 {
            return bad("max-qos", format!("{} is not 0, 1 or 2", self.max_qos));
        }
        if self.receive_maximum == 0 {
            return bad("receive-maximum", "must be at least 1".into());
        }
        if self.listen_backlog == 0 || self.listen_backlog > 65_535 {
            return bad(
                "listen-backlog",
                format!("{} is not in 1..=65535", self.listen_backlog),
            );
        }
        if self.inbox_capacity < 16 {
            return bad("inbox-capacity", "must be at least 16".into());
        }
        if self.max_outbuf_hard_bytes < self.max_outbuf_bytes {
            return bad(
                "max-outbuf-hard-bytes",
                format!(
                    "{} is below --max-outbuf-bytes {}",
                    self.max_outbuf_hard_bytes, self.max_outbuf_bytes
                ),
            );
        }
        if self.max_inflight_out == 0 {
            return bad("max-inflight-out", "must be at least 1".into());
        }
        if self.max_topic_levels == 0 {
            return bad("max-topic-levels", "must be at least 1".into());
        }
        if self.session_expiry_default_secs > self.max_session_expiry_secs {
            return bad(
                "session-expiry-default-secs",
                format!(
                    "{} is above --max-session-expiry-secs {}",
                    self.session_expiry_default_secs, self.max_session_expiry_secs
                ),
            );
        }
        Ok(())
    }

    /// Whether clients without a username may connect (the flag, or its
    /// default: only when there is no password file).
    pub fn anonymous_allowed(&self) -> bool {
        self.allow_anonymous.unwrap_or(self.password_file.is_none())
    }

    /// `--max-qos` as a QoS.
    pub fn max_qos(&self) -> ringmq_codec::QoS {
        ringmq_codec::QoS::from_u8(self.max_qos).unwrap_or(ringmq_codec::QoS::ExactlyOnce)
    }

    /// `--fsync` as parsed (clap allows only the three names).
    pub fn fsync_policy(&self) -> crate::persist::Fsync {
        match self.fsync.as_str() {
            "never" => crate::persist::Fsync::Never,
            "always" => crate::persist::Fsync::Always,
            _ => crate::persist::Fsync::Interval,
        }
    }

    /// `--cluster-qos durable` (clap allows only the two names).
    pub fn cluster_qos_durable(&self) -> bool {
        self.cluster_qos == "durable"
    }

    /// The shard count: the flag, or one per CPU in the affinity mask.
    pub fn shard_count(&self) -> usize {
        self.shards
            .unwrap_or_else(|| allowed_cpus().len().clamp(1, 64))
    }
}

/// A listener's protocol stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// MQTT over TCP.
    Mqtt,
    /// MQTT over TLS.
    Mqtts,
    /// MQTT over WebSocket.
    Ws,
    /// MQTT over WebSocket over TLS.
    Wss,
}

impl Scheme {
    /// Whether the listener speaks TLS.
    pub fn tls(self) -> bool {
        matches!(self, Scheme::Mqtts | Scheme::Wss)
    }

    /// Whether the listener speaks WebSocket.
    pub fn ws(self) -> bool {
        matches!(self, Scheme::Ws | Scheme::Wss)
    }

    fn name(self) -> &'static str {
        match self {
            Scheme::Mqtt => "mqtt",
            Scheme::Mqtts => "mqtts",
            Scheme::Ws => "ws",
            Scheme::Wss => "wss",
        }
    }
}

/// One `--listen` value: `[SCHEME://]HOST:PORT[/PATH]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenUrl {
    /// The protocol stack.
    pub scheme: Scheme,
    /// The address to bind (a host name is resolved once, at start).
    pub addr: SocketAddr,
    /// The HTTP path of a WebSocket listener ("/mqtt" by default); empty
    /// for the others.
    pub path: String,
}

impl FromStr for ListenUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (scheme, rest) = match s.split_once("://") {
            None => (Scheme::Mqtt, s),
            Some(("mqtt" | "tcp", rest)) => (Scheme::Mqtt, rest),
            Some(("mqtts" | "ssl" | "tls", rest)) => (Scheme::Mqtts, rest),
            Some(("ws", rest)) => (Scheme::Ws, rest),
            Some(("wss", rest)) => (Scheme::Wss, rest),
            Some((other, _)) => {
                return Err(format!(
                    "unknown scheme {other:?} (use mqtt://, mqtts://, ws:// or wss://)"
                ))
            }
        };
        let (host_port, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if !path.is_empty() && !scheme.ws() {
            return Err(format!(
                "{s:?}: only ws:// and wss:// listeners have a path"
            ));
        }
        let path = match (scheme.ws(), path) {
            (true, "") => "/mqtt".to_string(),
            (true, p) => p.to_string(),
            (false, _) => String::new(),
        };
        let addr = match host_port.parse::<SocketAddr>() {
            Ok(a) => a,
            Err(_) => host_port
                .to_socket_addrs()
                .map_err(|e| format!("{s:?}: not HOST:PORT ({e})"))?
                .next()
                .ok_or_else(|| format!("{s:?}: {host_port} resolves to no address"))?,
        };
        Ok(ListenUrl { scheme, addr, path })
    }
}

impl fmt::Display for ListenUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}{}", self.scheme.name(), self.addr, self.path)
    }
}

/// The CPUs this process may run on, in order (respects taskset and
/// container cpusets).
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity writes at most
    // size_of::<cpu_set_t>() bytes into it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            let n = std::thread::available_parallelism().map_or(1, |n| n.get());
            return (0..n).collect();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&cpu| libc::CPU_ISSET(cpu, &set))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let c = Config::from_args(["ringmq"]).unwrap();
        assert_eq!(c.listen[0].addr, "0.0.0.0:1883".parse().unwrap());
        assert_eq!(c.listen[0].scheme, Scheme::Mqtt);
        assert_eq!(c.keepalive_tick_ms, 100);
        assert_eq!(c.keepalive_backoff, 0.75);
    }

    #[test]
    fn bad_values_name_the_flag() {
        for (args, flag) in [
            (vec!["ringmq", "--shards", "0"], "--shards"),
            (
                vec!["ringmq", "--keepalive-backoff", "-1"],
                "--keepalive-backoff",
            ),
            (
                vec!["ringmq", "--keepalive-tick-ms", "0"],
                "--keepalive-tick-ms",
            ),
            (vec!["ringmq", "--io-memory-kib", "1"], "--io-memory-kib"),
            (vec!["ringmq", "--listen", "nonsense"], "--listen"),
            (
                vec!["ringmq", "--max-outbuf-hard-bytes", "1"],
                "--max-outbuf-hard-bytes",
            ),
            (
                vec!["ringmq", "--max-inflight-out", "0"],
                "--max-inflight-out",
            ),
            (
                vec!["ringmq", "--max-topic-levels", "0"],
                "--max-topic-levels",
            ),
            (
                vec!["ringmq", "--max-session-expiry-secs", "60"],
                "--session-expiry-default-secs",
            ),
        ] {
            let err = Config::from_args(args).unwrap_err().to_string();
            assert!(err.contains(flag), "{err:?} should name {flag}");
        }
    }

    #[test]
    fn listen_urls() {
        let parse = |s: &str| s.parse::<ListenUrl>();
        let l = parse("mqtts://127.0.0.1:8883").unwrap();
        assert_eq!(
            (l.scheme, l.addr.port(), l.path.as_str()),
            (Scheme::Mqtts, 8883, "")
        );
        let l = parse("ws://127.0.0.1:80").unwrap();
        assert_eq!((l.scheme, l.path.as_str()), (Scheme::Ws, "/mqtt"));
        let l = parse("wss://[::1]:443/broker/mqtt").unwrap();
        assert_eq!((l.scheme, l.path.as_str()), (Scheme::Wss, "/broker/mqtt"));
        assert!(l.addr.is_ipv6());
        assert_eq!(parse("1.2.3.4:5").unwrap().scheme, Scheme::Mqtt);
        assert_eq!(
            parse("mqtt://1.2.3.4:5").unwrap().to_string(),
            "mqtt://1.2.3.4:5"
        );
        assert!(parse("http://1.2.3.4:5").is_err());
        assert!(parse("mqtt://1.2.3.4:5/x").is_err());
        assert!(parse("mqtt://nonsense").is_err());
    }

    #[test]
    fn tls_flags_are_checked_together() {
        for (args, flag) in [
            (
                vec!["ringmq", "--listen", "mqtts://127.0.0.1:0"],
                "--tls-cert",
            ),
            (vec!["ringmq", "--tls-cert", "c.pem"], "--tls-cert"),
            (
                vec![
                    "ringmq",
                    "--listen",
                    "wss://127.0.0.1:0",
                    "--tls-cert",
                    "c",
                    "--tls-key",
                    "k",
                    "--require-certificate",
                ],
                "--require-certificate",
            ),
        ] {
            let err = Config::from_args(args).unwrap_err().to_string();
            assert!(err.contains(flag), "{err:?} should name {flag}");
        }
    }

    #[test]
    fn allowed_cpus_is_not_empty() {
        assert!(!allowed_cpus().is_empty());
    }
}
