//! Command line: one subcommand per scenario (clap derive) and the
//! validation that turns bad values into an [`ArgError`] naming the flag
//! before any socket is opened.
//!
//! Owns: flag definitions, value parsers (MQTT version, rate, CPU list)
//! and the per-scenario checks. Pure: nothing here touches the network.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use clap::{Args, Parser, Subcommand};
use ringmq_codec::ProtocolVersion;

use crate::conn::{Login, INDEX_MARK};
use crate::payload::{MAX_PUBLISHERS, STAMP_LEN};

/// ringmq-bench: a load generator for MQTT 3.1.1 / 5.0 brokers.
#[derive(Parser, Debug)]
#[command(name = "ringmq-bench", version, about, long_about = None)]
pub struct Cli {
    /// The scenario to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The scenarios.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Open N connections at a target rate: connects/s, CONNACK latency,
    /// failures by reason.
    Conn(ConnArgs),
    /// N times: TCP (+ TLS, WebSocket) connect, CONNECT -> CONNACK,
    /// DISCONNECT and close: handshakes/s, latency by stage, broker CPU
    /// per handshake (with --broker-pid).
    Handshake(HandshakeArgs),
    /// Hold N connections that ping every K seconds: broker CPU and
    /// resident memory per connection (with --broker-pid).
    Idle(IdleArgs),
    /// N clients with Keep Alive K and a will go silent: when does the
    /// broker close each one and publish its will?
    Keepalive(KeepaliveArgs),
    /// Take over N client ids with a second connection (to another
    /// cluster node with --takeover-host/--takeover-port): CONNECT ->
    /// CONNACK time, DISCONNECT 0x8E to the old one, queued QoS 1 messages.
    Takeover(TakeoverArgs),
    /// P publishers, S subscribers over T topics (subscribers on another
    /// cluster node with --sub-host/--sub-port): delivered msgs/s,
    /// end-to-end latency, lost and duplicated messages.
    Pubsub(PubsubArgs),
    /// pubsub shaped point to point: P publishers to P subscribers, one
    /// topic each (-S and -T follow -P).
    P2p(PubsubArgs),
    /// pubsub fan-out: P publishers, S subscribers over T topics, every
    /// message to every subscriber of its topic (e.g. -P 1 -S 100).
    Fanout(PubsubArgs),
    /// pubsub fan-in: one topic per publisher, every subscriber reads all
    /// of them (e.g. -P 100 -S 1).
    Fanin(PubsubArgs),
    /// pubsub over one $share group ("bench", or --shared-group): each
    /// message to one member, counted over the group.
    Sharedsub(PubsubArgs),
    /// A trivial MQTT sink (answers CONNECT, SUBSCRIBE, PINGREQ, QoS 1
    /// PUBLISH; discards the rest) to measure the tool itself.
    #[command(hide = true)]
    Sink(SinkArgs),
    /// One hostile client pattern (--kind) while canaries time QoS 1
    /// round trips: broker memory before/peak/after, canary p99/max/lost,
    /// whether the broker refused it.
    Attack(crate::scenario::attack::AttackArgs),
    /// Mixed load for a long time (QoS 0/1/2, resets, take-overs, wills,
    /// retained churn, a canary): sent vs received per QoS, lost,
    /// duplicated, wills, stalls; exit status 3 when anything was lost.
    Soak(crate::scenario::soak::SoakArgs),
    /// Many clients with wills dropped at once (--cut close: sockets
    /// closed together; --cut link: their link cut in a namespace, root):
    /// will arrival times p50/p99/max, first to last, canary round trips.
    Storm(crate::scenario::storm::StormArgs),
    /// Clients with wills connect from a network namespace, then its link
    /// goes down (no FIN/RST; root): wills received and their lateness.
    Halfopen(crate::scenario::halfopen::HalfopenArgs),
    /// Run one scenario against several brokers in turn: one table, a
    /// column and a ratio per broker.
    Compare(crate::compare::CompareArgs),
}

/// Flags every scenario takes.
#[derive(Args, Debug, Clone)]
pub struct Common {
    /// Broker host name or address.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Broker port.
    #[arg(long, default_value_t = 1883)]
    pub port: u16,
    /// MQTT version: 3.1.1 (also "4" or "311"), 5 (also "5.0") or 3.1.
    #[arg(long, value_name = "VERSION", default_value = "3.1.1")]
    pub mqtt_version: MqttVersion,
    /// Load threads: one glommio executor each; clients are spread round
    /// robin over them.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Pin executor i to the i-th CPU of this list (e.g. "1" or "0,2-3").
    /// Default: unpinned (the process affinity, e.g. from taskset, holds).
    #[arg(long, value_name = "LIST")]
    pub cpus: Option<CpuList>,
    /// Print one machine-readable JSON line on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    /// The broker's process id: report its CPU use over the measurement
    /// window (and, for idle, its memory per connection).
    #[arg(long, value_name = "PID")]
    pub broker_pid: Option<u32>,
    /// No progress line on stderr.
    #[arg(long)]
    pub quiet: bool,
    /// Write the run's time series to this file as CSV: one row per second
    /// of the progress line (elapsed, connections, sent and received with
    /// their rates, errors), then a last row at the end. See the README.
    #[arg(long, value_name = "FILE")]
    pub csv: Option<std::path::PathBuf>,
    /// Local source addresses, comma separated (e.g.
    /// "127.0.0.2,127.0.0.3"): every connection binds one of them, round
    /// robin, before it connects, so one run can open more connections to
    /// one broker port than one source address has ports (~28k-60k).
    #[arg(long, value_name = "ADDR,...")]
    pub ifaddr: Option<IfAddrs>,
    /// Prefix of every client id (ids are PREFIX-SCENARIO-INDEX).
    #[arg(long, default_value = "rb")]
    pub client_prefix: String,
    /// Time allowed for TCP connect + CONNECT -> CONNACK, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 5000)]
    pub connect_timeout_ms: u64,
    /// io_uring registered memory per executor, in KiB (must fit ulimit -l).
    #[arg(long, value_name = "KIB", default_value_t = 256, hide = true)]
    pub io_memory_kib: usize,
    /// io_uring depth of each executor ring. The kernel sizes its table of
    /// pending polls from it, and every cancel walks one bucket of that
    /// table: thousands of idle sockets need a deep ring.
    #[arg(long, value_name = "N", default_value_t = 4096, hide = true)]
    pub ring_depth: usize,
    /// Busy time after which a publisher or subscriber loop lets the
    /// executor collect IO completions and timers, in microseconds.
    #[arg(long, value_name = "US", default_value_t = 250, hide = true)]
    pub slice_us: u64,
    /// Spin this long before an idle executor sleeps, in microseconds:
    /// trades the tool's CPU for lower wake-up latency (latency runs at
    /// low rates on machines whose idle CPUs wake slowly).
    #[arg(long, value_name = "US", default_value_t = 0)]
    pub spin_us: u64,
    /// Connect with TLS (mqtts; with --ws, wss), ALPN "mqtt", no session
    /// resumption. Needs --ca.
    #[arg(long)]
    pub tls: bool,
    /// PEM bundle of the CA certificates to trust (with --tls).
    #[arg(long, value_name = "PATH")]
    pub ca: Option<PathBuf>,
    /// PEM client certificate chain to present (with --tls and --key).
    #[arg(long, value_name = "PATH")]
    pub cert: Option<PathBuf>,
    /// PEM private key of --cert.
    #[arg(long, value_name = "PATH")]
    pub key: Option<PathBuf>,
    /// Name the broker's certificate must carry (also sent as SNI when it
    /// is a DNS name).
    #[arg(long, value_name = "NAME", default_value = "localhost")]
    pub server_name: String,
    /// MQTT over WebSocket (RFC 6455, subprotocol "mqtt"); with --tls, wss.
    #[arg(long)]
    pub ws: bool,
    /// Request path of the WebSocket upgrade.
    #[arg(long, value_name = "PATH", default_value = "/mqtt")]
    pub ws_path: String,
    /// User Name sent in every CONNECT; "%i" becomes the client's index
    /// (the INDEX of its id), so "user%i" gives each client its own.
    #[arg(long, value_name = "U")]
    pub username: Option<String>,
    /// Password sent in every CONNECT (needs --username); "%i" as there.
    #[arg(long, value_name = "P")]
    pub password: Option<String>,
}

/// `conn` flags.
#[derive(Args, Debug, Clone)]
pub struct ConnArgs {
    /// Flags shared by every scenario.
    #[command(flatten)]
    pub common: Common,
    /// Connections to open.
    #[arg(short = 'n', long, default_value_t = 1000)]
    pub connections: u64,
    /// Target connects per second over all threads, or "max".
    #[arg(long, default_value = "max")]
    pub rate: Rate,
    /// Handshakes in progress at once per thread (limits "max").
    #[arg(long, default_value_t = 128)]
    pub concurrency: usize,
    /// Keep Alive sent in CONNECT, seconds.
    #[arg(long, default_value_t = 60)]
    pub keepalive: u16,
}

/// `handshake` flags.
#[derive(Args, Debug, Clone)]
pub struct HandshakeArgs {
    /// Flags shared by every scenario.
    #[command(flatten)]
    pub common: Common,
    /// Handshakes to make (connections are closed as they go, so this is
    /// not bounded by the open-files limit).
    #[arg(short = 'n', long, default_value_t = 5000)]
    pub connections: u64,
    /// Target handshakes per second over all threads, or "max".
    #[arg(long, default_value = "max")]
    pub rate: Rate,
    /// Connections in progress at once per thread.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Keep Alive sent in CONNECT, seconds.
    #[arg(long, default_value_t = 60)]
    pub keepalive: u16,
    /// Milliseconds to wait for the broker to close its side after the
    /// DISCONNECT (a connection it leaves open longer counts as a failure).
    #[arg(long, value_name = "MS", default_value_t = 2000)]
    pub close_wait_ms: u64,
}

/// `idle` flags.
#[derive(Args, Debug, Clone)]
pub struct IdleArgs {
    /// Flags shared by every scenario.
    #[command(flatten)]
    pub common: Common,
    /// Connections to hold.
    #[arg(short = 'n', long, default_value_t = 1000)]
    pub connections: u64,
    /// Target connects per second while opening them, or "max".
    #[arg(long, default_value = "max")]
    pub rate: Rate,
    /// Handshakes in progress at once per thread.
    #[arg(long, default_value_t = 128)]
    pub concurrency: usize,
    /// Keep Alive sent in CONNECT, seconds; each connection sends PINGREQ
    /// every this many seconds (or --ping-secs).
    #[arg(long, default_value_t = 60)]
    pub keepalive: u16,
    /// Seconds between PINGREQs of one connection (default: --keepalive).
    #[arg(long)]
    pub ping_secs: Option<f64>,
    /// Seconds to hold the connections once all are up and settled (the
    /// broker CPU window).
    #[arg(long, default_value_t = 30.0)]
    pub hold_secs: f64,
    /// Milliseconds to let the broker settle after the last CONNACK before
    /// its memory is read.
    #[arg(long, default_value_t = 1000)]
    pub settle_ms: u64,
}

/// `keepalive` flags.
#[derive(Args, Debug, Clone)]
pub struct KeepaliveArgs {
    /// Flags shared by every scenario.
    #[command(flatten)]
    pub common: Common,
    /// Silent clients.
    #[arg(short = 'n', long, default_value_t = 200)]
    pub clients: u64,
    /// Keep Alive of each client, seconds.
    #[arg(short = 'k', long, default_value_t = 2)]
    pub keepalive: u16,
    /// A close or will later than 1.5 x Keep Alive + this many milliseconds
    /// counts as late.
    #[arg(long, default_value_t = 100)]
    pub margin_ms: u64,
    /// PINGREQs each client sends (one per Keep Alive) before going silent.
    #[arg(long, default_value_t = 0)]
    pub pings: u32,
    /// Will topics are PREFIX/INDEX; the watcher subscribes to PREFIX/+.
    #[arg(long, default_value = "ringmq-bench/wills")]
    pub will_prefix: String,
    /// Seconds to keep waiting after the latest expected close.
    #[arg(long, default_value_t = 5.0)]
    pub extra_wait_secs: f64,
    /// Half-open test: the clients' link is cut after they connect, so they
    /// never see the close; keep their sockets open (never send FIN or RST)
    /// and measure wills only.
    #[arg(long)]
    pub half_open: bool,
    /// Open the clients' sockets inside this network namespace
    /// (/var/run/netns/NAME, as made by `ip netns add`; needs root). The
    /// will watcher stays in the tool's own namespace.
    #[arg(long, value_name = "NAME")]
    pub client_netns: Option<String>,
    /// Shell command run once every client has its CONNACK (e.g. the
    /// command that cuts the clients' link).
    #[arg(long, value_name = "CMD")]
    pub after_connect: Option<String>,
    /// Once every client has its CONNACK, all send one PINGREQ at the same
    /// moment and wait for its PINGRESP (then --after-connect runs): their
    /// deadlines fall together, a will storm.
    #[arg(long)]
    pub sync_ping: bool,
    /// Canaries timing a QoS 1 round trip every --canary-interval-ms
    /// beside the clients, in the tool's own namespace (0: none).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub canaries: usize,
    /// Milliseconds between two round trips of one canary.
    #[arg(long, value_name = "MS", default_value_t = 50)]
    pub canary_interval_ms: u64,
    /// Set by `storm --cut close` (no flag): once every client is ready,
    /// all close their sockets at the same moment without DISCONNECT, and
    /// each will is timed from that moment.
    #[arg(skip)]
    pub close_at_once: bool,
}

/// `takeover` flags.
#[derive(Args, Debug, Clone)]
pub struct TakeoverArgs {
    /// Client ids to take over.
    #[arg(short = 'n', long, default_value_t = 200)]
    pub ids: u64,
    /// Flags shared by every scenario.
    #[command(flatten)]
    pub common: Common,
    /// Clean Start (v5) / Clean Session (3.1.1) of the second connection.
    /// With false the first one subscribes at QoS 1 and leaves --queued
    /// messages unacknowledged, which should reach the second one.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub clean_start: bool,
    /// Unacknowledged QoS 1 messages left in each session (with
    /// --clean-start false).
    #[arg(long, default_value_t = 3)]
    pub queued: u32,
    /// Take-overs in progress at once per thread.
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
    /// Milliseconds to wait for the old connection's DISCONNECT and close
    /// after the second CONNACK, and for the queued messages.
    #[arg(long, default_value_t = 2000)]
    pub wait_ms: u64,
    /// Host the second (taking-over) connection goes to (default:
    /// --host): another node of a cluster, for a take-over across nodes.
    #[arg(long, value_name = "HOST")]
    pub takeover_host: Option<String>,
    /// Port of the second connection (default: --port).
    #[arg(long, value_name = "PORT")]
    pub takeover_port: Option<u16>,
}

/// `pubsub` flags.
#[derive(Args, Debug, Clone)]
pub struct PubsubArgs {
    /// Flags shared by every scenario.
    #[command(flatten)]
    pub common: Common,
    /// Host the subscribers connect to (default: --host; publishers always
    /// use --host): another node of a cluster, so every message crosses
    /// from the publishers' node to the subscribers'.
    #[arg(long, value_name = "HOST")]
    pub sub_host: Option<String>,
    /// Port the subscribers connect to (default: --port).
    #[arg(long, value_name = "PORT")]
    pub sub_port: Option<u16>,
    /// When subscribers and publishers are on different endpoints, every
    /// publisher sends unstamped QoS 0 probes on its topic until every
    /// subscriber has heard each publisher it reads (a node learns another
    /// node's subscriptions a little after their SUBACK); measuring starts
    /// then. The run fails if that takes longer than this, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    pub route_wait_ms: u64,
    /// Publishers (0: only subscribe, e.g. to the sink's firehose).
    #[arg(short = 'P', long, default_value_t = 1)]
    pub publishers: u32,
    /// Subscribers.
    #[arg(short = 'S', long, default_value_t = 1)]
    pub subscribers: u32,
    /// Topics: publisher p writes PREFIX/(p % T); subscriber s reads its
    /// share of them (see --wildcard).
    #[arg(short = 'T', long, default_value_t = 1)]
    pub topics: u32,
    /// Every subscriber subscribes to PREFIX/+ (every topic) instead of
    /// its own topics.
    #[arg(long)]
    pub wildcard: bool,
    /// Topic prefix.
    #[arg(long, default_value = "ringmq-bench/t")]
    pub topic_prefix: String,
    /// QoS of publishes and subscriptions (0, 1 or 2).
    #[arg(long, default_value_t = 0)]
    pub qos: u8,
    /// QoS of the publishes (default: --qos).
    #[arg(long, value_name = "QOS")]
    pub pub_qos: Option<u8>,
    /// QoS of the subscriptions (default: --qos).
    #[arg(long, value_name = "QOS")]
    pub sub_qos: Option<u8>,
    /// Put every subscription in this shared subscription group
    /// ($share/GROUP/FILTER): each message reaches one member; loss and
    /// duplicates are counted over the group as one subscriber.
    #[arg(long, value_name = "GROUP")]
    pub shared_group: Option<String>,
    /// Each publisher sends one message every this many milliseconds (the
    /// emqtt-bench -I pace; instead of --rate).
    #[arg(long, value_name = "MS")]
    pub interval_ms: Option<f64>,
    /// Ramp the total rate: START msgs/s, plus STEP every HOLD seconds
    /// ("1000,1000,5"), to find the knee; instead of --rate.
    #[arg(long, value_name = "START,STEP,HOLD")]
    pub ramp: Option<Ramp>,
    /// Payload bytes (at least 16: sequence number + send time).
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
    /// Messages per second over all publishers, or "max".
    #[arg(long, default_value = "max")]
    pub rate: Rate,
    /// Seconds of publishing.
    #[arg(long, default_value_t = 10.0)]
    pub duration_secs: f64,
    /// Messages each publisher sends, then it stops (sooner if
    /// --duration-secs ends first). Default: no limit.
    #[arg(long, value_name = "N")]
    pub messages: Option<u64>,
    /// Subscribers ask for sessions that outlive their connections (3.1.1:
    /// Clean Session 0; 5.0: Session Expiry Interval 3600 s), so a broker
    /// with persistence stores what it holds for them. A 3.1.1 subscriber
    /// then resumes any session its id already has on the broker.
    #[arg(long)]
    pub persistent_subscribers: bool,
    /// QoS 1 messages in flight per publisher.
    #[arg(long, default_value_t = 64)]
    pub inflight: u32,
    /// Most PUBLISH packets encoded into one write.
    #[arg(long, default_value_t = 512)]
    pub batch: usize,
    /// Milliseconds to wait after publishing for the last deliveries (and
    /// QoS 1 acknowledgements).
    #[arg(long, default_value_t = 2000)]
    pub drain_ms: u64,
}

/// `sink` flags.
#[derive(Args, Debug, Clone)]
pub struct SinkArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:1884")]
    pub listen: String,
    /// Seconds to run before exiting.
    #[arg(long, default_value_t = 60.0)]
    pub duration_secs: f64,
    /// Send a stream of stamped QoS 0 PUBLISH packets (this size) to every
    /// subscriber, as fast as the socket takes them.
    #[arg(long, value_name = "PAYLOAD_BYTES")]
    pub firehose: Option<usize>,
    /// Pin the sink to this CPU.
    #[arg(long)]
    pub cpu: Option<usize>,
    /// One JSON line instead of the table.
    #[arg(long)]
    pub json: bool,
    /// No progress line on stderr.
    #[arg(long)]
    pub quiet: bool,
}

/// An MQTT protocol version given on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MqttVersion(pub ProtocolVersion);

impl FromStr for MqttVersion {
    type Err = String;

    fn from_str(s: &str) -> Result<MqttVersion, String> {
        match s {
            "3.1.1" | "311" | "4" => Ok(MqttVersion(ProtocolVersion::V3_1_1)),
            "5" | "5.0" | "50" => Ok(MqttVersion(ProtocolVersion::V5)),
            "3.1" | "31" | "3" => Ok(MqttVersion(ProtocolVersion::V3_1)),
            _ => Err(format!("unknown MQTT version {s:?} (use 3.1.1 or 5)")),
        }
    }
}

impl fmt::Display for MqttVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.0 {
            ProtocolVersion::V3_1 => "3.1",
            ProtocolVersion::V3_1_1 => "3.1.1",
            ProtocolVersion::V5 => "5",
        })
    }
}

/// `--ramp START,STEP,HOLD`: msgs/s, msgs/s added per stage, seconds per
/// stage.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ramp {
    /// First total rate, msgs/s.
    pub start: f64,
    /// Added to the total rate every stage, msgs/s.
    pub step: f64,
    /// Seconds per stage.
    pub hold_secs: f64,
}

impl FromStr for Ramp {
    type Err = String;

    fn from_str(s: &str) -> Result<Ramp, String> {
        let parts: Vec<&str> = s.split(',').map(str::trim).collect();
        let [start, step, hold] = parts[..] else {
            return Err(format!(
                "{s:?}: expected START,STEP,HOLD (e.g. 1000,1000,5)"
            ));
        };
        let num = |v: &str, what: &str| -> Result<f64, String> {
            match v.parse::<f64>() {
                Ok(x) if x.is_finite() && x >= 0.0 => Ok(x),
                _ => Err(format!("{what} {v:?} is not a number >= 0")),
            }
        };
        let ramp = Ramp {
            start: num(start, "START")?,
            step: num(step, "STEP")?,
            hold_secs: num(hold, "HOLD")?,
        };
        if ramp.start <= 0.0 || ramp.hold_secs <= 0.0 {
            return Err("START and HOLD must be above zero".to_string());
        }
        Ok(ramp)
    }
}

impl fmt::Display for Ramp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{},{},{}", self.start, self.step, self.hold_secs)
    }
}

/// A target rate: a number per second or as fast as possible.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Rate {
    /// As fast as possible.
    Max,
    /// This many per second (finite, above zero).
    PerSec(f64),
}

impl FromStr for Rate {
    type Err = String;

    /// "max", or a positive number with an optional k (thousand) or m
    /// (million) suffix: "500", "2.5k", "1M".
    fn from_str(s: &str) -> Result<Rate, String> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("max") {
            return Ok(Rate::Max);
        }
        let (digits, scale) = match t.char_indices().last() {
            Some((i, 'k' | 'K')) => (&t[..i], 1e3),
            Some((i, 'm' | 'M')) => (&t[..i], 1e6),
            _ => (t, 1.0),
        };
        let value: f64 = digits
            .parse()
            .map_err(|_| format!("{s:?} is neither \"max\" nor a number"))?;
        let value = value * scale;
        if value.is_finite() && value > 0.0 {
            Ok(Rate::PerSec(value))
        } else {
            Err(format!("{s:?}: a rate must be above zero"))
        }
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rate::Max => f.write_str("max"),
            Rate::PerSec(r) => write!(f, "{r}/s"),
        }
    }
}

/// `--ifaddr`: a non-empty list of local IP addresses to bind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IfAddrs(pub Vec<std::net::IpAddr>);

impl FromStr for IfAddrs {
    type Err = String;

    fn from_str(s: &str) -> Result<IfAddrs, String> {
        let mut addrs = Vec::new();
        for part in s.split(',') {
            let part = part.trim();
            let addr = part
                .parse()
                .map_err(|_| format!("--ifaddr: {part:?} is not an IP address"))?;
            addrs.push(addr);
        }
        Ok(IfAddrs(addrs))
    }
}

/// A list of CPU numbers: "1", "0,2", "0-3", "1-2,5".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuList(pub Vec<usize>);

/// Highest CPU number accepted (the size of `cpu_set_t`).
pub const MAX_CPU: usize = 1023;

impl FromStr for CpuList {
    type Err = String;

    fn from_str(s: &str) -> Result<CpuList, String> {
        let mut cpus = Vec::new();
        for part in s.split(',') {
            let part = part.trim();
            let parse = |n: &str| {
                n.trim()
                    .parse::<usize>()
                    .ok()
                    .filter(|&c| c <= MAX_CPU)
                    .ok_or_else(|| format!("{n:?} is not a CPU number (0..={MAX_CPU})"))
            };
            match part.split_once('-') {
                Some((lo, hi)) => {
                    let (lo, hi) = (parse(lo)?, parse(hi)?);
                    if lo > hi {
                        return Err(format!("range {part:?} runs backwards"));
                    }
                    cpus.extend(lo..=hi);
                }
                None => cpus.push(parse(part)?),
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        cpus.retain(|c| seen.insert(*c));
        Ok(CpuList(cpus))
    }
}

/// A flag value the tool cannot run with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgError {
    /// The flag at fault, without the leading dashes.
    pub flag: &'static str,
    /// Why.
    pub reason: String,
}

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid --{}: {}", self.flag, self.reason)
    }
}

impl std::error::Error for ArgError {}

fn bad<T>(flag: &'static str, reason: impl Into<String>) -> Result<T, ArgError> {
    Err(ArgError {
        flag,
        reason: reason.into(),
    })
}

fn positive_secs(flag: &'static str, secs: f64) -> Result<(), ArgError> {
    if secs.is_finite() && secs > 0.0 && secs <= 7.0 * 86_400.0 {
        Ok(())
    } else {
        bad(
            flag,
            format!("{secs} is not a number of seconds in (0, 604800]"),
        )
    }
}

fn at_least_one(flag: &'static str, n: u64) -> Result<(), ArgError> {
    if n == 0 {
        bad(flag, "must be at least 1")
    } else {
        Ok(())
    }
}

impl Common {
    /// Checks shared by every scenario.
    pub fn validate(&self) -> Result<(), ArgError> {
        if self.threads == 0 || self.threads > 64 {
            return bad("threads", format!("{} is not in 1..=64", self.threads));
        }
        if let Some(cpus) = &self.cpus {
            if cpus.0.is_empty() {
                return bad("cpus", "the list is empty");
            }
        }
        if self.host.is_empty() {
            return bad("host", "empty");
        }
        if self.client_prefix.is_empty() || self.client_prefix.len() > 64 {
            return bad("client-prefix", "must be 1 to 64 bytes");
        }
        if self.client_prefix.contains(['+', '#', '/']) {
            return bad("client-prefix", "must not contain '+', '#' or '/'");
        }
        at_least_one("connect-timeout-ms", self.connect_timeout_ms)?;
        if self.io_memory_kib < 64 {
            return bad("io-memory-kib", "glommio needs at least 64 KiB");
        }
        if !(8..=32_768).contains(&self.ring_depth) {
            return bad(
                "ring-depth",
                format!("{} is not in 8..=32768", self.ring_depth),
            );
        }
        if !(10..=1_000_000).contains(&self.slice_us) {
            return bad(
                "slice-us",
                format!("{} is not in 10..=1000000", self.slice_us),
            );
        }
        self.validate_login()?;
        self.validate_transport()
    }

    /// The credentials of every CONNECT.
    pub fn login(&self) -> Login {
        Login {
            username: self.username.clone(),
            password: self.password.clone(),
        }
    }

    /// Checks of --username and --password.
    fn validate_login(&self) -> Result<(), ArgError> {
        if self.password.is_some() && self.username.is_none() {
            // Some scenarios open 3.1.1 connections whatever
            // --mqtt-version says.
            return bad(
                "password",
                "needs --username: MQTT 3.x sends no password without a user name \
                 (MQTT-3.1.2-22)",
            );
        }
        for (flag, value) in [("username", &self.username), ("password", &self.password)] {
            let Some(template) = value else { continue };
            // Each mark can grow by the digits of a u64 (20) less its own 2.
            let longest = template.len() + template.matches(INDEX_MARK).count() * 18;
            if longest > usize::from(u16::MAX) {
                return bad(flag, "longer than 65535 bytes (an MQTT string)");
            }
        }
        Ok(())
    }

    /// Checks of the transport flags (the files are read later).
    fn validate_transport(&self) -> Result<(), ArgError> {
        if self.tls && self.ca.is_none() {
            return bad("ca", "--tls needs a CA bundle to trust");
        }
        if !self.tls {
            for (flag, set) in [
                ("ca", self.ca.is_some()),
                ("cert", self.cert.is_some()),
                ("key", self.key.is_some()),
            ] {
                if set {
                    return bad(flag, "only with --tls");
                }
            }
        }
        if self.cert.is_some() != self.key.is_some() {
            return bad("cert", "--cert and --key go together");
        }
        if self.server_name.is_empty() {
            return bad("server-name", "empty");
        }
        let path = &self.ws_path;
        if !path.starts_with('/')
            || path.len() > 1024
            || path.bytes().any(|b| b <= b' ' || b == 0x7F)
        {
            return bad(
                "ws-path",
                "an absolute request path (\"/...\") without spaces or control characters",
            );
        }
        Ok(())
    }

    /// The URL scheme of the connections: mqtt, mqtts, ws or wss.
    pub fn scheme(&self) -> &'static str {
        match (self.tls, self.ws) {
            (true, true) => "wss",
            (true, false) => "mqtts",
            (false, true) => "ws",
            (false, false) => "mqtt",
        }
    }

    /// The CPU executor `thread` is pinned to, if pinning was asked for.
    pub fn cpu_of_thread(&self, thread: usize) -> Option<usize> {
        self.cpus.as_ref().map(|c| c.0[thread % c.0.len()])
    }
}

fn topic_prefix_ok(flag: &'static str, prefix: &str) -> Result<(), ArgError> {
    if prefix.is_empty() || prefix.contains(['+', '#']) || prefix.ends_with('/') {
        return bad(
            flag,
            "a topic prefix must be non-empty, without '+', '#' or a trailing '/'",
        );
    }
    if prefix.len() > 1024 {
        return bad(flag, "longer than 1024 bytes");
    }
    Ok(())
}

impl ConnArgs {
    /// Checks before running.
    pub fn validate(&self) -> Result<(), ArgError> {
        self.common.validate()?;
        at_least_one("connections", self.connections)?;
        at_least_one("concurrency", self.concurrency as u64)
    }
}

impl HandshakeArgs {
    /// Checks before running.
    pub fn validate(&self) -> Result<(), ArgError> {
        self.common.validate()?;
        at_least_one("connections", self.connections)?;
        at_least_one("concurrency", self.concurrency as u64)?;
        at_least_one("close-wait-ms", self.close_wait_ms)
    }
}

impl IdleArgs {
    /// Seconds between PINGREQs of one connection.
    pub fn ping_secs(&self) -> f64 {
        self.ping_secs.unwrap_or(f64::from(self.keepalive))
    }

    /// Checks before running.
    pub fn validate(&self) -> Result<(), ArgError> {
        self.common.validate()?;
        at_least_one("connections", self.connections)?;
        at_least_one("concurrency", self.concurrency as u64)?;
        at_least_one("keepalive", u64::from(self.keepalive))?;
        positive_secs("hold-secs", self.hold_secs)?;
        let ping = self.ping_secs();
        positive_secs("ping-secs", ping)?;
        if ping > f64::from(self.keepalive) {
            return bad(
                "ping-secs",
                format!(
                    "{ping} s between pings exceeds Keep Alive {} s: the broker may close the \
                     connections",
                    self.keepalive
                ),
            );
        }
        Ok(())
    }
}

impl KeepaliveArgs {
    /// Checks before running.
    pub fn validate(&self) -> Result<(), ArgError> {
        self.common.validate()?;
        at_least_one("clients", self.clients)?;
        at_least_one("keepalive", u64::from(self.keepalive))?;
        positive_secs("extra-wait-secs", self.extra_wait_secs)?;
        topic_prefix_ok("will-prefix", &self.will_prefix)?;
        crate::scenario::canary::CanaryArgs::new(self.canaries, self.canary_interval_ms)
            .validate()?;
        if let Some(ns) = &self.client_netns {
            if ns.is_empty() || ns.contains('/') || ns == "." || ns == ".." {
                return bad("client-netns", "a namespace name, as in `ip netns list`");
            }
        }
        Ok(())
    }

    /// When a client's close or will counts as early or late: the
    /// standard's 1.5 x Keep Alive, and that plus the margin, in ns.
    /// With `close_at_once` the will is due at the close itself.
    pub fn window_ns(&self) -> (u64, u64) {
        let expected = if self.close_at_once {
            0
        } else {
            u64::from(self.keepalive) * 1_500_000_000
        };
        (expected, expected + self.margin_ms * 1_000_000)
    }
}

impl TakeoverArgs {
    /// Where the second connection goes: --takeover-host/--takeover-port,
    /// each defaulting to the first connection's.
    pub fn takeover_endpoint(&self) -> (&str, u16) {
        (
            self.takeover_host.as_deref().unwrap_or(&self.common.host),
            self.takeover_port.unwrap_or(self.common.port),
        )
    }

    /// Whether the second connection goes elsewhere than the first.
    pub fn across(&self) -> bool {
        self.takeover_endpoint() != (self.common.host.as_str(), self.common.port)
    }

    /// Checks before running.
    pub fn validate(&self) -> Result<(), ArgError> {
        self.common.validate()?;
        if self.takeover_host.as_deref() == Some("") {
            return bad("takeover-host", "empty");
        }
        at_least_one("ids", self.ids)?;
        at_least_one("concurrency", self.concurrency as u64)?;
        at_least_one("wait-ms", self.wait_ms)?;
        if self.queued > 10_000 {
            return bad("queued", "at most 10000");
        }
        Ok(())
    }
}

impl PubsubArgs {
    /// Where the subscribers connect: --sub-host/--sub-port, each
    /// defaulting to the publishers' --host/--port.
    pub fn sub_endpoint(&self) -> (&str, u16) {
        (
            self.sub_host.as_deref().unwrap_or(&self.common.host),
            self.sub_port.unwrap_or(self.common.port),
        )
    }

    /// Whether subscribers and publishers use different endpoints (and so
    /// the run starts with the route check of --route-wait-ms).
    pub fn split(&self) -> bool {
        self.publishers > 0
            && self.subscribers > 0
            && self.sub_endpoint() != (self.common.host.as_str(), self.common.port)
    }

    /// QoS of the publishes.
    pub fn publish_qos(&self) -> u8 {
        self.pub_qos.unwrap_or(self.qos)
    }

    /// QoS of the subscriptions.
    pub fn subscribe_qos(&self) -> u8 {
        self.sub_qos.unwrap_or(self.qos)
    }

    /// The pace of all publishers together.
    pub fn pacing(&self) -> crate::pacing::Pacing {
        use crate::pacing::Pacing;
        if let Some(ms) = self.interval_ms {
            return Pacing::Fixed(1000.0 / ms * f64::from(self.publishers.max(1)));
        }
        if let Some(r) = self.ramp {
            return Pacing::Ramp {
                start: r.start,
                step: r.step,
                hold_ns: (r.hold_secs * 1e9) as u64,
            };
        }
        match self.rate {
            Rate::Max => Pacing::Max,
            Rate::PerSec(r) => Pacing::Fixed(r),
        }
    }

    /// The Open MQTT Benchmark shapes as presets of pubsub: `p2p` (P
    /// publishers to P subscribers, one topic each), `fanout` (as given:
    /// each message to every subscriber of its topic), `fanin` (one topic
    /// per publisher, every subscriber reads all), `sharedsub` (one
    /// `$share` group, "bench" unless --shared-group names one).
    pub fn preset(mut self, shape: &str) -> PubsubArgs {
        match shape {
            "p2p" => {
                self.topics = self.publishers.max(1);
                self.subscribers = self.publishers;
                self.wildcard = false;
            }
            "fanin" => {
                self.topics = self.publishers.max(1);
                self.wildcard = true;
            }
            "sharedsub" => {
                self.shared_group.get_or_insert_with(|| "bench".to_string());
            }
            _ => {}
        }
        self
    }

    /// Checks before running.
    pub fn validate(&self) -> Result<(), ArgError> {
        self.common.validate()?;
        if self.sub_host.as_deref() == Some("") {
            return bad("sub-host", "empty");
        }
        at_least_one("route-wait-ms", self.route_wait_ms)?;
        if self.publishers == 0 && self.subscribers == 0 {
            return bad("publishers", "need at least one publisher or subscriber");
        }
        if self.publishers >= MAX_PUBLISHERS {
            return bad("publishers", format!("at most {}", MAX_PUBLISHERS - 1));
        }
        at_least_one("topics", u64::from(self.topics))?;
        topic_prefix_ok("topic-prefix", &self.topic_prefix)?;
        for (flag, q) in [
            ("qos", Some(self.qos)),
            ("pub-qos", self.pub_qos),
            ("sub-qos", self.sub_qos),
        ] {
            if q.is_some_and(|q| q > 2) {
                return bad(flag, "0, 1 or 2");
            }
        }
        if let Some(g) = &self.shared_group {
            if g.is_empty() || g.contains(['/', '+', '#']) {
                return bad("shared-group", "a non-empty name without '/', '+' or '#'");
            }
        }
        let paces = [
            self.rate != Rate::Max,
            self.interval_ms.is_some(),
            self.ramp.is_some(),
        ];
        if paces.iter().filter(|&&p| p).count() > 1 {
            return bad("rate", "give one of --rate, --interval-ms and --ramp");
        }
        if let Some(ms) = self.interval_ms {
            if !(ms.is_finite() && ms > 0.0) {
                return bad("interval-ms", "a positive number of milliseconds");
            }
        }
        if self.payload < STAMP_LEN {
            return bad(
                "payload",
                format!(
                    "{} bytes cannot hold the {STAMP_LEN}-byte stamp",
                    self.payload
                ),
            );
        }
        if self.payload > 64 * 1024 * 1024 {
            return bad("payload", "at most 64 MiB");
        }
        positive_secs("duration-secs", self.duration_secs)?;
        if self.messages == Some(0) {
            return bad("messages", "at least 1");
        }
        if self.inflight == 0 || self.inflight > 65_535 {
            return bad("inflight", format!("{} is not in 1..=65535", self.inflight));
        }
        if self.batch == 0 || self.batch > 65_536 {
            return bad("batch", format!("{} is not in 1..=65536", self.batch));
        }
        Ok(())
    }
}

impl SinkArgs {
    /// Checks before running.
    pub fn validate(&self) -> Result<(), ArgError> {
        positive_secs("duration-secs", self.duration_secs)?;
        if let Some(p) = self.firehose {
            if !(STAMP_LEN..=1024 * 1024).contains(&p) {
                return bad("firehose", format!("payload {p} is not in 16..=1048576"));
            }
        }
        Ok(())
    }
}

/// Refuse a run that needs more sockets than the open-files limit allows
/// (`limit`, after raising the soft limit to the hard one).
pub fn check_fd_budget(flag: &'static str, sockets: u64, limit: u64) -> Result<(), ArgError> {
    // Executors, rings, stdio, /proc reads: keep some descriptors spare.
    const SPARE: u64 = 64;
    if sockets + SPARE > limit {
        return bad(
            flag,
            format!(
                "{sockets} sockets do not fit the open-files limit {limit} (ulimit -n); \
                 raise it (ulimit -n N, or LimitNOFILE= for a service), use fewer, \
                 or spread the load over several ringmq-bench processes"
            ),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Command, clap::Error> {
        let mut all = vec!["ringmq-bench"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).map(|c| c.command)
    }

    fn flag_of(e: ArgError) -> &'static str {
        e.flag
    }

    #[test]
    fn ifaddr_lists() {
        let a: IfAddrs = "127.0.0.2, 127.0.0.3".parse().unwrap();
        assert_eq!(a.0.len(), 2);
        let e = "127.0.0.2,nope".parse::<IfAddrs>().unwrap_err();
        assert!(e.contains("--ifaddr") && e.contains("nope"), "{e}");
        assert!(parse(&["conn", "--ifaddr", "1.2.3"]).is_err());
    }

    #[test]
    fn versions() {
        assert_eq!("3.1.1".parse(), Ok(MqttVersion(ProtocolVersion::V3_1_1)));
        assert_eq!("4".parse(), Ok(MqttVersion(ProtocolVersion::V3_1_1)));
        assert_eq!("5".parse(), Ok(MqttVersion(ProtocolVersion::V5)));
        assert_eq!("5.0".parse(), Ok(MqttVersion(ProtocolVersion::V5)));
        assert_eq!("3.1".parse(), Ok(MqttVersion(ProtocolVersion::V3_1)));
        assert!("6".parse::<MqttVersion>().is_err());
        assert_eq!(MqttVersion(ProtocolVersion::V5).to_string(), "5");
    }

    #[test]
    fn rates() {
        assert_eq!("max".parse(), Ok(Rate::Max));
        assert_eq!("MAX".parse(), Ok(Rate::Max));
        assert_eq!("1000".parse(), Ok(Rate::PerSec(1000.0)));
        assert_eq!("2.5k".parse(), Ok(Rate::PerSec(2500.0)));
        assert_eq!("1M".parse(), Ok(Rate::PerSec(1e6)));
        for bad in ["0", "-5", "k", "", "fast", "inf", "NaN"] {
            assert!(bad.parse::<Rate>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn cpu_lists() {
        assert_eq!("1".parse(), Ok(CpuList(vec![1])));
        assert_eq!("0,2-4".parse(), Ok(CpuList(vec![0, 2, 3, 4])));
        assert_eq!("3,1,3".parse(), Ok(CpuList(vec![3, 1])));
        for bad in ["", "a", "3-1", "1-", "-1", "5000", "1,,2"] {
            assert!(bad.parse::<CpuList>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn defaults_parse_and_validate() {
        for args in [
            &["conn"][..],
            &["handshake"],
            &["idle"],
            &["keepalive"],
            &["takeover"],
            &["pubsub"],
            &["p2p"],
            &["fanout"],
            &["fanin"],
            &["sharedsub"],
            &["sink"],
            &["attack", "--kind", "never-read"],
            &["soak"],
        ] {
            let cmd = parse(args).expect("defaults parse");
            let ok = match &cmd {
                Command::Conn(a) => a.validate(),
                Command::Handshake(a) => a.validate(),
                Command::Idle(a) => a.validate(),
                Command::Keepalive(a) => a.validate(),
                Command::Takeover(a) => a.validate(),
                Command::Pubsub(a)
                | Command::P2p(a)
                | Command::Fanout(a)
                | Command::Fanin(a)
                | Command::Sharedsub(a) => a.validate(),
                Command::Sink(a) => a.validate(),
                Command::Attack(a) => a.validate(),
                Command::Soak(a) => a.validate(),
                Command::Storm(a) => crate::scenario::storm::keepalive_args(a).validate(),
                Command::Halfopen(a) => crate::scenario::halfopen::keepalive_args(a).validate(),
                Command::Compare(_) => Ok(()),
            };
            assert_eq!(ok, Ok(()), "{args:?}");
        }
    }

    #[test]
    fn benchmark_shapes_and_paces() {
        let Ok(Command::P2p(a)) = parse(&["p2p", "-P", "7", "--qos", "2"]) else {
            panic!("p2p parses");
        };
        let a = a.preset("p2p");
        assert_eq!((a.publishers, a.subscribers, a.topics), (7, 7, 7));
        assert_eq!((a.publish_qos(), a.subscribe_qos()), (2, 2));
        let Ok(Command::Sharedsub(a)) = parse(&["sharedsub", "--sub-qos", "1"]) else {
            panic!("sharedsub parses");
        };
        let a = a.preset("sharedsub");
        assert_eq!(a.shared_group.as_deref(), Some("bench"));
        assert_eq!((a.publish_qos(), a.subscribe_qos()), (0, 1));
        let Ok(Command::Fanin(a)) = parse(&["fanin", "-P", "5"]) else {
            panic!("fanin parses");
        };
        let a = a.preset("fanin");
        assert!(a.wildcard && a.topics == 5);
        let Ok(Command::Pubsub(a)) = parse(&["pubsub", "--ramp", "100,50,2", "-P", "2"]) else {
            panic!("ramp parses");
        };
        assert_eq!(
            a.pacing(),
            crate::pacing::Pacing::Ramp {
                start: 100.0,
                step: 50.0,
                hold_ns: 2_000_000_000
            }
        );
        let Ok(Command::Pubsub(a)) = parse(&["pubsub", "--interval-ms", "10", "-P", "3"]) else {
            panic!("interval parses");
        };
        assert_eq!(a.pacing(), crate::pacing::Pacing::Fixed(300.0));
        for bad in [
            &["pubsub", "--qos", "3"][..],
            &["pubsub", "--rate", "10", "--ramp", "1,1,1"],
            &["pubsub", "--shared-group", "a/b"],
            &["pubsub", "--interval-ms", "0"],
        ] {
            let Ok(Command::Pubsub(a)) = parse(bad) else {
                panic!("{bad:?} parses");
            };
            assert!(a.validate().is_err(), "{bad:?}");
        }
        assert!("1,2".parse::<Ramp>().is_err());
        assert!("0,1,1".parse::<Ramp>().is_err());
    }

    #[test]
    fn flags_reach_the_right_fields() {
        let Ok(Command::Pubsub(p)) = parse(&[
            "pubsub",
            "--host",
            "10.0.0.1",
            "--port",
            "1999",
            "--mqtt-version",
            "5",
            "-P",
            "3",
            "-S",
            "4",
            "-T",
            "2",
            "--qos",
            "1",
            "--rate",
            "10k",
            "--cpus",
            "1",
            "--json",
        ]) else {
            panic!("pubsub parses");
        };
        assert_eq!(p.common.host, "10.0.0.1");
        assert_eq!(p.common.port, 1999);
        assert_eq!(p.common.mqtt_version.0, ProtocolVersion::V5);
        assert_eq!((p.publishers, p.subscribers, p.topics, p.qos), (3, 4, 2, 1));
        assert_eq!(p.rate, Rate::PerSec(10_000.0));
        assert_eq!(p.messages, None, "no limit unless asked");
        assert!(p.common.json);
        assert_eq!(p.common.cpu_of_thread(5), Some(1));
        let Ok(Command::Takeover(t)) = parse(&["takeover", "--clean-start", "false"]) else {
            panic!("takeover parses");
        };
        assert!(!t.clean_start);
        let Ok(Command::Pubsub(p)) = parse(&["pubsub", "--messages", "250"]) else {
            panic!("pubsub parses");
        };
        assert_eq!(p.messages, Some(250));
        assert!(!p.persistent_subscribers);
        let Ok(Command::Pubsub(p)) = parse(&["pubsub", "--persistent-subscribers"]) else {
            panic!("pubsub parses");
        };
        assert!(p.persistent_subscribers);
    }

    #[test]
    fn subscribers_on_another_node() {
        let pubsub = |args: &[&str]| {
            let mut all = vec!["pubsub"];
            all.extend_from_slice(args);
            match parse(&all) {
                Ok(Command::Pubsub(p)) => p,
                other => panic!("{other:?}"),
            }
        };
        let p = pubsub(&[]);
        assert_eq!(
            p.sub_endpoint(),
            ("127.0.0.1", 1883),
            "default: --host/--port"
        );
        assert!(!p.split());
        assert_eq!(p.route_wait_ms, 10_000);
        let p = pubsub(&["--host", "10.0.0.1", "--port", "1999", "--sub-port", "1884"]);
        assert_eq!(
            p.sub_endpoint(),
            ("10.0.0.1", 1884),
            "the host follows --host"
        );
        assert_eq!((p.common.host.as_str(), p.common.port), ("10.0.0.1", 1999));
        assert!(p.split());
        let p = pubsub(&["--sub-host", "10.0.0.2", "--route-wait-ms", "250"]);
        assert_eq!(
            p.sub_endpoint(),
            ("10.0.0.2", 1883),
            "the port follows --port"
        );
        assert!(p.split());
        assert_eq!(p.route_wait_ms, 250);
        let p = pubsub(&["--sub-host", "127.0.0.1", "--sub-port", "1883"]);
        assert!(!p.split(), "the same endpoint spelt out");
        assert!(!pubsub(&["-P", "0", "--sub-port", "1884"]).split());
        assert!(!pubsub(&["-S", "0", "--sub-port", "1884"]).split());
        assert_eq!(
            pubsub(&["--sub-host", ""]).validate().map_err(flag_of),
            Err("sub-host")
        );
        assert_eq!(
            pubsub(&["--route-wait-ms", "0"])
                .validate()
                .map_err(flag_of),
            Err("route-wait-ms")
        );
        assert_eq!(pubsub(&["--sub-port", "1884"]).validate(), Ok(()));
        assert!(parse(&["pubsub", "--sub-port", "65536"]).is_err());
    }

    #[test]
    fn takeover_on_another_node() {
        let takeover = |args: &[&str]| {
            let mut all = vec!["takeover"];
            all.extend_from_slice(args);
            match parse(&all) {
                Ok(Command::Takeover(t)) => t,
                other => panic!("{other:?}"),
            }
        };
        let t = takeover(&[]);
        assert_eq!(t.takeover_endpoint(), ("127.0.0.1", 1883));
        assert!(!t.across());
        let t = takeover(&["--port", "1883", "--takeover-port", "1885"]);
        assert_eq!(t.takeover_endpoint(), ("127.0.0.1", 1885));
        assert!(t.across());
        let t = takeover(&["--host", "a", "--takeover-host", "b"]);
        assert_eq!(
            t.takeover_endpoint(),
            ("b", 1883),
            "the port follows --port"
        );
        assert!(t.across());
        assert!(!takeover(&["--takeover-port", "1883"]).across());
        assert_eq!(
            takeover(&["--takeover-host", ""])
                .validate()
                .map_err(flag_of),
            Err("takeover-host")
        );
        assert_eq!(takeover(&["--takeover-port", "1884"]).validate(), Ok(()));
        assert!(parse(&["takeover", "--takeover-port", "x"]).is_err());
    }

    #[test]
    fn unknown_and_malformed_flags_are_refused() {
        assert!(parse(&["conn", "--rate", "fast"]).is_err());
        assert!(parse(&["conn", "--nope"]).is_err());
        assert!(parse(&["pubsub", "--mqtt-version", "7"]).is_err());
        assert!(parse(&[]).is_err());
    }

    #[test]
    fn invalid_values_name_their_flag() {
        let pubsub = |args: &[&str]| {
            let mut all = vec!["pubsub"];
            all.extend_from_slice(args);
            match parse(&all) {
                Ok(Command::Pubsub(p)) => p.validate().map_err(flag_of),
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(pubsub(&["--payload", "15"]), Err("payload"));
        assert_eq!(pubsub(&["--payload", "16"]), Ok(()));
        assert_eq!(pubsub(&["--qos", "3"]), Err("qos"));
        assert_eq!(pubsub(&["--qos", "2"]), Ok(()));
        assert_eq!(pubsub(&["--sub-qos", "3"]), Err("sub-qos"));
        assert_eq!(pubsub(&["-P", "0", "-S", "0"]), Err("publishers"));
        assert_eq!(pubsub(&["-P", "0", "-S", "1"]), Ok(()));
        assert_eq!(pubsub(&["-T", "0"]), Err("topics"));
        assert_eq!(pubsub(&["--inflight", "0"]), Err("inflight"));
        assert_eq!(pubsub(&["--inflight", "65536"]), Err("inflight"));
        assert_eq!(pubsub(&["--duration-secs", "0"]), Err("duration-secs"));
        assert_eq!(pubsub(&["--duration-secs", "NaN"]), Err("duration-secs"));
        assert_eq!(pubsub(&["--messages", "0"]), Err("messages"));
        assert_eq!(pubsub(&["--messages", "1000000", "-S", "0"]), Ok(()));
        assert_eq!(pubsub(&["--topic-prefix", "a/+"]), Err("topic-prefix"));
        assert_eq!(pubsub(&["--topic-prefix", "a/"]), Err("topic-prefix"));
        assert_eq!(pubsub(&["--threads", "0"]), Err("threads"));
        assert_eq!(pubsub(&["--client-prefix", "a/b"]), Err("client-prefix"));
        assert_eq!(pubsub(&["--batch", "0"]), Err("batch"));
        assert_eq!(pubsub(&["--slice-us", "5"]), Err("slice-us"));
        assert_eq!(pubsub(&["--ring-depth", "4"]), Err("ring-depth"));

        let Ok(Command::Idle(idle)) = parse(&["idle", "--keepalive", "10", "--ping-secs", "11"])
        else {
            panic!("idle parses");
        };
        assert_eq!(idle.validate().map_err(flag_of), Err("ping-secs"));
        let Ok(Command::Idle(idle)) = parse(&["idle", "--keepalive", "0"]) else {
            panic!("idle parses");
        };
        assert_eq!(idle.validate().map_err(flag_of), Err("keepalive"));
        let Ok(Command::Keepalive(ka)) = parse(&["keepalive", "-k", "0"]) else {
            panic!("keepalive parses");
        };
        assert_eq!(ka.validate().map_err(flag_of), Err("keepalive"));
        let Ok(Command::Keepalive(ka)) = parse(&["keepalive", "--client-netns", "../x"]) else {
            panic!("keepalive parses");
        };
        assert_eq!(ka.validate().map_err(flag_of), Err("client-netns"));
        let Ok(Command::Conn(c)) = parse(&["conn", "-n", "0"]) else {
            panic!("conn parses");
        };
        assert_eq!(c.validate().map_err(flag_of), Err("connections"));
        let Ok(Command::Sink(s)) = parse(&["sink", "--firehose", "8"]) else {
            panic!("sink parses");
        };
        assert_eq!(s.validate().map_err(flag_of), Err("firehose"));
    }

    #[test]
    fn transport_flags() {
        let common = |args: &[&str]| {
            let mut all = vec!["conn"];
            all.extend_from_slice(args);
            match parse(&all) {
                Ok(Command::Conn(c)) => c.common,
                other => panic!("{other:?}"),
            }
        };
        let plain = common(&[]);
        assert_eq!(plain.scheme(), "mqtt");
        assert_eq!(plain.server_name, "localhost");
        assert_eq!(plain.ws_path, "/mqtt");
        let wss = common(&["--tls", "--ca", "ca.pem", "--ws", "--ws-path", "/x"]);
        assert_eq!(wss.validate(), Ok(()));
        assert_eq!(wss.scheme(), "wss");
        assert_eq!(common(&["--ws"]).scheme(), "ws");
        let check = |args: &[&str]| common(args).validate().map_err(flag_of);
        assert_eq!(check(&["--tls"]), Err("ca"));
        assert_eq!(check(&["--ca", "ca.pem"]), Err("ca"));
        assert_eq!(check(&["--tls", "--ca", "c", "--cert", "x"]), Err("cert"));
        assert_eq!(check(&["--tls", "--ca", "c", "--key", "x"]), Err("cert"));
        assert_eq!(
            check(&["--tls", "--ca", "c", "--cert", "x", "--key", "y"]),
            Ok(())
        );
        assert_eq!(check(&["--key", "y"]), Err("key"));
        assert_eq!(check(&["--ws", "--ws-path", "mqtt"]), Err("ws-path"));
        assert_eq!(check(&["--ws", "--ws-path", "/a b"]), Err("ws-path"));
        assert_eq!(
            check(&["--tls", "--ca", "c", "--server-name", ""]),
            Err("server-name")
        );
    }

    #[test]
    fn login_flags() {
        let common = |args: &[&str]| {
            let mut all = vec!["handshake"];
            all.extend_from_slice(args);
            match parse(&all) {
                Ok(Command::Handshake(h)) => h.common,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(common(&[]).login(), Login::default());
        let fleet = common(&["--username", "user%i", "--password", "pw%i"]);
        assert_eq!(fleet.validate(), Ok(()));
        assert_eq!(fleet.login().username.as_deref(), Some("user%i"));
        assert_eq!(fleet.login().password.as_deref(), Some("pw%i"));
        assert_eq!(common(&["--username", "u"]).validate(), Ok(()));
        let check = |args: &[&str]| common(args).validate().map_err(flag_of);
        assert_eq!(check(&["--password", "p"]), Err("password"));
        let long = "%i".repeat(3277);
        assert_eq!(check(&["--username", &long]), Err("username"));
        assert_eq!(check(&["--username", &long[..6552]]), Ok(()));
        assert_eq!(
            check(&["--username", "u", "--password", &long]),
            Err("password")
        );
    }

    #[test]
    fn keepalive_window() {
        let Ok(Command::Keepalive(ka)) = parse(&["keepalive", "-k", "2", "--margin-ms", "100"])
        else {
            panic!("keepalive parses");
        };
        assert_eq!(ka.window_ns(), (3_000_000_000, 3_100_000_000));
    }

    #[test]
    fn fd_budget() {
        assert!(check_fd_budget("connections", 15_000, 20_000).is_ok());
        let e = check_fd_budget("connections", 19_990, 20_000).unwrap_err();
        assert_eq!(e.flag, "connections");
        assert!(e
            .to_string()
            .starts_with("invalid --connections: 19990 sockets"));
    }
}
