//! `--cluster-nats`: the node's control thread on NATS (issue 17: routing
//! between nodes, and retained messages across them).
//!
//! One thread per node runs a current-thread tokio runtime and the
//! async-nats client; tokio never runs on a shard thread. Shards talk to it
//! through channels: interest changes (a filter gained its first or
//! lost its last subscriber on a shard; unbounded, as their number is
//! bounded by the subscriptions the broker holds), publishes to forward,
//! retained writes, claims and session copies (all bounded: when NATS cannot keep up one is dropped
//! and counted, never queued without bound). What arrives from NATS is
//! handed to the shards as [`ToShard::Publish`] (the broker sends it to the shard that owns the
//! topic as `Msg::ClusterPublish`, routed there like a local publish, never
//! back to NATS, and never stored as retained there); this module knows
//! nothing of shards.
//!
//! Subjects, the interest set, the message body, the directory's claim
//! and the order of retained messages are `ringmq-cluster`'s (sans-IO). A
//! node has two NATS connections: `routes` publishes and holds the
//! ordinary subscriptions, with `no_echo` (a node never receives its own
//! publishes); `groups` holds one queue subscription per shared
//! subscription (`$share/G/F`) with members here, with echo, so NATS gives
//! each message to one node among all with members, this one included,
//! and that node gives it to one local member. So a node serves only the
//! ordinary subscribers of what it reads while connected. The client-id
//! directory and the sessions bucket are [`directory`]'s.
//!
//! QoS 1/2 (`--cluster-qos`, [`qos`]): with `durable` (the default) a
//! QoS 1/2 publish read on this node (a will too) goes into a JetStream
//! stream instead, and a client publisher's PUBACK / PUBREC waits until
//! NATS stored it;
//! NATS then republishes it on the topic's subject to every node with a
//! subscriber at that moment (a node away from NATS then misses it: no
//! node replays the stream yet). A JetStream error or timeout releases
//! the acknowledgement anyway (counted): the message went at most once.
//! While NATS is away, and with `best-effort`, QoS 1/2 cross on core NATS
//! at most once and nothing waits. QoS 0 always takes core NATS, so it
//! may overtake an earlier QoS 1/2 message of the same publisher across
//! nodes.
//!
//! Retained messages: a JetStream stream per cluster (`PREFIX_retained`
//! made valid, subjects `PREFIX.r.>`, file storage, one message per
//! subject, so per topic), created or opened once connected. A retained
//! PUBLISH read on this node (not `$` topics; an empty one, the clear,
//! too) is also written there with the wire body and a `Ringmq-Node`
//! header naming the node; at most [`RETAINED_ACKS`] acknowledgements are
//! awaited at once, beside the loop's other work, and the publisher's
//! PUBACK never waits for one. A write while NATS is away, refused, or not
//! acknowledged within [`JETSTREAM_TIMEOUT`] is counted (`cluster_retained_failed`), logged at
//! most every 10 s, and not retried: its node keeps it, the others do not
//! get it. One ordered consumer per node (deliver policy last per subject)
//! reads the latest message of every subject at start and then the new
//! ones (after a reconnection async-nats recreates it, or, when the NATS
//! server restarted without it, this module does, from where it was);
//! `ringmq_cluster::retained::Order` decides what of it to store, so a node
//! never goes back over a write of its own still in flight and ends on the
//! stream's last value even when two nodes write one topic at once (its
//! own writes come back too: a node that skipped them would keep its own
//! value where the stream put another node's after it). What is stored
//! goes to the shards as [`ToShard::Retained`] (the broker sends it to the topic's retained
//! owner shard as `Msg::ClusterRetained`: stored, journaled and limited
//! like a local retained message, delivered to nobody), with the expiry it
//! had left when sent less the time since the stream stored it (an
//! expired one is a clear). Without JetStream the stream cannot be opened
//! (logged as an error, counted in `cluster_stream_errors`, tried again
//! with back-off up to 30 s) and retained messages stay on their node;
//! routing is not affected.

mod directory;
mod qos;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;
use ringmq_cluster::interest::{Change, Interest, Subscription};
use ringmq_cluster::retained::{Order, WriteId};
use ringmq_cluster::{subject, wire};
use ringmq_codec::{Properties, Publish, QoS};
use ringmq_route::GroupKey;
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

use crate::shard::ratelimit::LogGate;

/// Longest the control thread waits at shutdown for NATS to take what is
/// buffered.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(1);

/// Publishes waiting for the control thread, at most.
const PUBLISH_QUEUE: usize = 65_536;

/// CONNECTs waiting for their claim in the directory, at most (beyond,
/// CONNACK 0x89 Server busy).
const CLAIM_QUEUE: usize = 16_384;

/// Retained writes waiting for the control thread, at most (beyond, one
/// is not written to the stream, counted).
const RETAINED_QUEUE: usize = 4096;

/// Retained writes whose JetStream acknowledgement is awaited, at most;
/// more wait in their queue.
const RETAINED_ACKS: usize = 256;

/// Retained writes the order of the stream tracks, at most (see
/// `ringmq_cluster::retained`).
const RETAINED_TRACKED: usize = 65_536;

/// Messages read from the retained stream waiting for the control loop.
const RETAINED_READ_QUEUE: usize = 4096;

/// The header of a retained write that names the node that wrote it.
const ORIGIN_HEADER: &str = "Ringmq-Node";

/// Longest wait between two attempts to open the retained stream.
const STREAM_RETRY_MAX: Duration = Duration::from_secs(30);

/// Longest a JetStream request (opening the stream, a write's
/// acknowledgement) is waited for.
const JETSTREAM_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) use directory::{ClaimJob, Claimed, Released, SessionWrite};
pub(crate) use qos::{Holds, Mode, Ticket, Via};

/// What the control thread hands to the shards (the broker routes each to
/// its shard).
pub(crate) enum ToShard {
    /// A publish from another node, for the topic's shard: to its ordinary
    /// subscribers, or to one member of shared group `Some(key)`.
    Publish(Publish, Option<GroupKey>),
    /// A claim ended, for the shard whose link waits.
    Claimed {
        shard: usize,
        link: u64,
        client_id: Bytes,
        outcome: Claimed,
    },
    /// A retained message (or, empty, a clear) read from the retained
    /// stream, for the topic's retained owner shard: stored, not delivered.
    Retained(Publish),
    /// A dead node's session taken here, for the shard that owns the id.
    Adopt(Bytes, Box<ringmq_store::SessionState>),
    /// Another node takes `client_id` over, for the shard that owns it: it
    /// lets the client go and answers on `reply`.
    TakeOver {
        client_id: Bytes,
        clean_start: bool,
        /// The new CONNECT's user name (`--takeover-same-user-only`).
        username: Option<Bytes>,
        reply: tokio::sync::oneshot::Sender<Released>,
    },
    /// A stream publish ended (stored or not): shard `shard` releases the
    /// publisher it holds under `token`.
    Stored { shard: usize, token: u64 },
}

/// Timings of the directory.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timings {
    /// Between two heartbeats of this node; a node is dead after three
    /// missed, and a take-over request waits two.
    pub(crate) heartbeat: std::time::Duration,
}

/// What a shard tells the control thread.
#[derive(Debug)]
pub(crate) enum Interested {
    /// The first local subscriber of `filter` (true) or the last one left
    /// (false).
    Filter(bool, String),
}

/// A publish to forward to the other nodes (or a retained write for the
/// stream).
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub(crate) subject: String,
    pub(crate) body: Bytes,
    pub(crate) via: Via,
}

/// The counters of the control thread (read by `stats`).
#[derive(Debug, Default)]
pub(crate) struct ClusterStats {
    /// 1 while connected to NATS.
    pub(crate) connected: AtomicU64,
    /// Publishes forwarded to NATS.
    pub(crate) published: AtomicU64,
    /// Publishes from other nodes routed here.
    pub(crate) received: AtomicU64,
    /// Publishes not forwarded (the queue to NATS was full, or NATS
    /// refused).
    pub(crate) dropped: AtomicU64,
    /// Messages from NATS that were not ours to read (foreign subject, bad
    /// body).
    pub(crate) bad: AtomicU64,
    /// 1 while the client-id directory (JetStream) is open.
    pub(crate) directory: AtomicU64,
    /// CONNECTs whose client id was claimed in the directory.
    pub(crate) claims: AtomicU64,
    /// Client ids taken over from another node (CONNECT here).
    pub(crate) takeovers_in: AtomicU64,
    /// Client ids let go to another node (DISCONNECT 0x8E here).
    pub(crate) takeovers_out: AtomicU64,
    /// Claims refused (owner busy, races beyond the bound, queue full).
    pub(crate) claims_refused: AtomicU64,
    /// CONNECTs served without the directory (JetStream unreachable).
    pub(crate) claims_unchecked: AtomicU64,
    /// Queued messages of moving sessions left out (one NATS message).
    pub(crate) handover_dropped: AtomicU64,
    /// Session writes to the sessions bucket done.
    pub(crate) sessions_stored: AtomicU64,
    /// Session writes not done (queue full, JetStream error).
    pub(crate) sessions_dropped: AtomicU64,
    /// Sessions of dead nodes taken here.
    pub(crate) sessions_adopted: AtomicU64,
    /// Times NATS dropped messages for this node (slow consumer).
    pub(crate) slow_consumers: AtomicU64,
    /// 1 while the retained stream is open and followed.
    pub(crate) retained_stream: AtomicU64,
    /// Retained writes the stream acknowledged.
    pub(crate) retained_published: AtomicU64,
    /// Retained messages (and clears) read from the stream and stored.
    pub(crate) retained_loaded: AtomicU64,
    /// Retained writes that did not reach the stream (queue full, NATS
    /// away, JetStream refused or did not acknowledge).
    pub(crate) retained_failed: AtomicU64,
    /// Attempts to open the retained stream and its consumer that failed
    /// (JetStream not enabled or unreachable).
    pub(crate) stream_errors: AtomicU64,
    /// 1 while the message stream (JetStream, `--cluster-qos durable`) is
    /// open.
    pub(crate) qos_stream: AtomicU64,
    /// QoS 1/2 publishes the stream acknowledged.
    pub(crate) qos_published: AtomicU64,
    /// QoS 1/2 publishes meant for the stream that it did not acknowledge
    /// (error, timeout, no stream): released anyway, at most once.
    pub(crate) qos_failed: AtomicU64,
}

/// What the shards hold of the cluster.
pub(crate) struct ClusterLink {
    pub(crate) prefix: String,
    /// This node's `--node-id`.
    pub(crate) node_id: String,
    pub(crate) interest: mpsc::UnboundedSender<Interested>,
    pub(crate) publish: mpsc::Sender<Outgoing>,
    pub(crate) retained: mpsc::Sender<Outgoing>,
    pub(crate) claims: mpsc::Sender<ClaimJob>,
    pub(crate) sessions: mpsc::Sender<SessionWrite>,
    pub(crate) stats: Arc<ClusterStats>,
    /// `--cluster-qos`.
    pub(crate) qos: Mode,
}

impl ClusterLink {
    /// Forwards a publish read on this node (not one from another node)
    /// `via` core NATS or the stream, and writes it to the retained stream
    /// when it has RETAIN (an empty one too: the clear; its PUBACK never
    /// waits for that write). False when it was not queued.
    pub(crate) fn forward(&self, publish: &Publish, expiry_secs: Option<u32>, via: Via) -> bool {
        let Ok(topic) = std::str::from_utf8(&publish.topic) else {
            return false;
        };
        let Ok(subject) = subject::topic_subject(&self.prefix, topic) else {
            return false;
        };
        let properties = ringmq_session::encode_message_properties(&publish.properties);
        let mut body = Vec::with_capacity(16 + properties.len() + publish.payload.len());
        wire::encode(
            &wire::Message {
                qos: publish.qos as u8,
                retain: publish.retain,
                expiry_secs,
                properties: &properties,
                payload: &publish.payload,
            },
            &mut body,
        );
        let body = Bytes::from(body);
        if publish.retain {
            if let Ok(subject) = subject::retained_subject(&self.prefix, topic) {
                let write = Outgoing {
                    subject,
                    body: body.clone(),
                    via: Via::Core,
                };
                if self.retained.try_send(write).is_err() {
                    self.stats.retained_failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        let queued = self
            .publish
            .try_send(Outgoing { subject, body, via })
            .is_ok();
        if !queued {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
        queued
    }

    /// A filter's (or a shared group's, `$share/G/F`) first local
    /// subscriber on a shard came (`add`) or its last went.
    pub(crate) fn interest(&self, add: bool, filter: &str) {
        let _ = self
            .interest
            .send(Interested::Filter(add, filter.to_string()));
    }

    /// Asks the directory for a client id (the CONNECT waits for
    /// [`ToShard::Claimed`]); false when too many claims wait.
    pub(crate) fn claim(&self, job: ClaimJob) -> bool {
        let sent = self.claims.try_send(job).is_ok();
        if sent {
            self.stats.claims.fetch_add(1, Ordering::Relaxed);
        } else {
            self.stats.claims_refused.fetch_add(1, Ordering::Relaxed);
        }
        sent
    }

    /// A persistent session changed (or, `None`, ended) here: the sessions
    /// bucket follows, in order; dropped and counted when too many wait.
    pub(crate) fn store_session(
        &self,
        client_id: Bytes,
        state: Option<ringmq_store::SessionState>,
    ) {
        let write = match state {
            Some(s) => SessionWrite::Put(client_id, Box::new(s)),
            None => SessionWrite::Gone(client_id),
        };
        if self.sessions.try_send(write).is_err() {
            self.stats.sessions_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Whether NATS chooses the member of each shared group (connected):
    /// then a node serves only the ordinary subscribers of what it reads
    /// and each group's member gets the message through NATS; while NATS is
    /// away, the node serves its own groups.
    pub(crate) fn picks_group_members(&self) -> bool {
        self.stats.connected.load(Ordering::Relaxed) == 1
    }
}

/// The control thread.
pub(crate) struct Cluster {
    thread: Option<JoinHandle<()>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Cluster {
    /// Starts the control thread for NATS servers `urls` under subject
    /// prefix `prefix`; returns it and what the shards hold.
    pub(crate) fn start(
        urls: Vec<String>,
        prefix: String,
        node_id: String,
        timings: Timings,
        qos: Mode,
        to_shard: impl Fn(ToShard) + Send + Sync + 'static,
    ) -> Result<(Cluster, ClusterLink), String> {
        subject::check_prefix(&prefix).map_err(|e| format!("--cluster-prefix {prefix:?}: {e}"))?;
        let origin: async_nats::HeaderValue = node_id
            .parse()
            .map_err(|_| format!("--node-id {node_id:?}: no line breaks"))?;
        let (interest_tx, interest_rx) = mpsc::unbounded_channel();
        let (publish_tx, publish_rx) = mpsc::channel(PUBLISH_QUEUE);
        let (retained_tx, retained_rx) = mpsc::channel(RETAINED_QUEUE);
        let (claims_tx, claims_rx) = mpsc::channel(CLAIM_QUEUE);
        let (sessions_tx, sessions_rx) = mpsc::channel(CLAIM_QUEUE);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let stats = Arc::new(ClusterStats::default());
        let link = ClusterLink {
            prefix: prefix.clone(),
            node_id: node_id.clone(),
            interest: interest_tx,
            publish: publish_tx,
            retained: retained_tx,
            claims: claims_tx,
            sessions: sessions_tx,
            stats: stats.clone(),
            qos,
        };
        let sessions_tx = link.sessions.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the cluster runtime: {e}"))?;
        let thread = std::thread::Builder::new()
            .name("ringmq-cluster".into())
            .spawn(move || {
                runtime.block_on(control(Control {
                    qos: qos::Qos::new(qos, &node_id, &prefix, stats.clone()),
                    urls,
                    prefix,
                    node_id,
                    timings,
                    origin,
                    to_shard: Arc::new(to_shard),
                    stats,
                    interest_rx,
                    publish_rx,
                    retained_rx,
                    claims_rx,
                    sessions_rx: Some(sessions_rx),
                    sessions_tx,
                    stop_rx,
                }))
            })
            .map_err(|e| format!("cannot start the cluster thread: {e}"))?;
        Ok((
            Cluster {
                thread: Some(thread),
                stop: Some(stop_tx),
            },
            link,
        ))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Control {
    urls: Vec<String>,
    prefix: String,
    node_id: String,
    timings: Timings,
    /// `node_id` as the value of [`ORIGIN_HEADER`].
    origin: async_nats::HeaderValue,
    to_shard: Arc<dyn Fn(ToShard) + Send + Sync>,
    stats: Arc<ClusterStats>,
    interest_rx: mpsc::UnboundedReceiver<Interested>,
    publish_rx: mpsc::Receiver<Outgoing>,
    retained_rx: mpsc::Receiver<Outgoing>,
    claims_rx: mpsc::Receiver<ClaimJob>,
    /// Taken by the session writer once the directory opens.
    sessions_rx: Option<mpsc::Receiver<SessionWrite>>,
    /// To flush the session writer at shutdown.
    sessions_tx: mpsc::Sender<SessionWrite>,
    stop_rx: tokio::sync::oneshot::Receiver<()>,
    /// `--cluster-qos durable`: the stream and its acknowledgements.
    qos: qos::Qos,
}

/// Connect options of the node's connections to NATS; `echo`: whether it
/// receives what it publishes itself.
fn options(
    c: &Control,
    echo: bool,
    role: &'static str,
    online: Option<watch::Sender<Online>>,
) -> async_nats::ConnectOptions {
    let events = c.stats.clone();
    let mut options = async_nats::ConnectOptions::new()
        .name(format!("ringmq {} {role}", c.node_id))
        .retry_on_initial_connect();
    if !echo {
        options = options.no_echo();
    }
    // Slow-consumer lines: once per 10 s at most (they come per batch
    // under overload).
    let slow = Arc::new(std::sync::Mutex::new((LogGate::default(), Instant::now())));
    options.event_callback(move |event| {
        let events = events.clone();
        let online = online.clone();
        let slow = slow.clone();
        async move {
            match event {
                async_nats::Event::Connected => {
                    if let Some(online) = &online {
                        events.connected.store(1, Ordering::Relaxed);
                        online.send_modify(|o| {
                            o.up = true;
                            o.connects += 1;
                        });
                    }
                    info!(role, "cluster: connected to NATS");
                }
                async_nats::Event::Disconnected => {
                    if let Some(online) = &online {
                        events.connected.store(0, Ordering::Relaxed);
                        online.send_modify(|o| o.up = false);
                    }
                    warn!(role, "cluster: disconnected from NATS; reconnecting");
                }
                async_nats::Event::SlowConsumer(_) => {
                    let total = events.slow_consumers.fetch_add(1, Ordering::Relaxed) + 1;
                    let mut gate = slow.lock().unwrap_or_else(|e| e.into_inner());
                    let start = gate.1;
                    if let Some(unlogged) = gate_open(&mut gate.0, start) {
                        warn!(
                            role,
                            total,
                            unlogged,
                            "cluster: NATS dropped messages for this node (slow consumer)"
                        );
                    }
                }
                other => info!(role, event = %other, "cluster: NATS event"),
            }
        }
    })
}

async fn control(mut c: Control) {
    let stats = c.stats.clone();
    // Two connections: `routes` publishes and holds the ordinary
    // subscriptions, without echo (a node never gets its own publishes
    // back); `groups` holds the shared groups' queue subscriptions, with
    // echo, so NATS chooses each message's member among every node's,
    // this one's included.
    // Whether `routes` is connected, and how many times it connected, for
    // the task that follows the retained stream.
    let (online_tx, online_rx) = watch::channel(Online::default());
    let (routes, groups) = (
        options(&c, false, "routes", Some(online_tx)),
        options(&c, true, "groups", None),
    );
    let urls = c.urls.clone();
    let connected = tokio::select! {
        _ = &mut c.stop_rx => return,
        connected = async {
            let routes = routes.connect(urls.clone()).await?;
            let groups = groups.connect(urls).await?;
            Ok::<_, async_nats::ConnectError>((routes, groups))
        } => connected,
    };
    let (client, groups_client) = match connected {
        Ok(clients) => clients,
        Err(e) => {
            warn!(error = %e, urls = ?c.urls, "cluster: cannot connect to NATS");
            return;
        }
    };
    let (in_tx, mut in_rx) = mpsc::channel::<(async_nats::Message, Option<GroupKey>)>(4096);
    let mut interest = match Interest::new(&c.prefix) {
        Ok(i) => i,
        Err(_) => return,
    };
    let mut subscriptions: HashMap<Subscription, tokio::task::JoinHandle<()>> = HashMap::new();
    let mut changes = Vec::new();
    // The directory opens in the background (JetStream may answer later
    // than the connection, or not at all); until then CONNECTs are served
    // unchecked.
    let (dir_tx, mut dir_rx) = mpsc::channel::<directory::Directory>(1);
    let opener = tokio::spawn(open_directory(
        client.clone(),
        c.prefix.clone(),
        c.node_id.clone(),
        c.timings.heartbeat,
        stats.clone(),
        dir_tx,
    ));
    let mut dir: Option<directory::Directory> = None;
    let mut dir_tasks: Vec<tokio::task::JoinHandle<()>> = Vec::new();
    let (read_tx, mut read_rx) = mpsc::channel(RETAINED_READ_QUEUE);
    let mut js = jetstream::new(client.clone());
    js.set_timeout(JETSTREAM_TIMEOUT);
    let follower = tokio::spawn(follow(
        js.clone(),
        c.prefix.clone(),
        online_rx,
        read_tx,
        stats.clone(),
    ));
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(ORIGIN_HEADER, c.origin.clone());
    let mut retained = Retained {
        js,
        client: client.clone(),
        headers,
        order: Order::new(RETAINED_TRACKED),
        acks: FuturesUnordered::new(),
        failures: LogGate::default(),
        started: Instant::now(),
    };
    c.qos.start(&client);
    loop {
        tokio::select! {
            _ = &mut c.stop_rx => break,
            event = c.qos.next() => c.qos.on(event, &*c.to_shard),
            Some(write) = c.retained_rx.recv(), if retained.acks.len() < RETAINED_ACKS => {
                retained.write(&c, write).await;
            }
            Some((subject, id, acked)) = retained.acks.next(), if !retained.acks.is_empty() => {
                retained.acked(&c, &subject, id, acked);
            }
            Some(read) = read_rx.recv() => {
                // Writes already queued are ours and older than what is
                // read now: the order must know them first.
                while retained.acks.len() < RETAINED_ACKS {
                    let Ok(write) = c.retained_rx.try_recv() else {
                        break;
                    };
                    retained.write(&c, write).await;
                }
                retained.arrived(&c, read);
            }
            Some(d) = dir_rx.recv() => {
                stats.directory.store(1, Ordering::Relaxed);
                info!("cluster: client-id directory open");
                dir_tasks.push(tokio::spawn(d.clone().heartbeat(c.timings.heartbeat)));
                dir_tasks.push(tokio::spawn(d.clone().watch_nodes(c.timings.heartbeat, c.to_shard.clone())));
                if let Some(writes) = c.sessions_rx.take() {
                    dir_tasks.push(tokio::spawn(d.clone().write_sessions(writes)));
                }
                match client.subscribe(directory::takeover_subject(&c.prefix, &c.node_id)).await {
                    Ok(mut requests) => {
                        let (client, to_shard, stats) = (client.clone(), c.to_shard.clone(), stats.clone());
                        dir_tasks.push(tokio::spawn(async move {
                            while let Some(m) = requests.next().await {
                                tokio::spawn(directory::answer_takeover(
                                    client.clone(), m, to_shard.clone(), stats.clone(),
                                ));
                            }
                        }));
                    }
                    Err(e) => warn!(error = %e, "cluster: cannot hear take-over requests"),
                }
                dir = Some(d);
            }
            Some(job) = c.claims_rx.recv() => {
                let to_shard = c.to_shard.clone();
                // While NATS is away a CONNECT is served unchecked rather
                // than left waiting.
                let up = stats.connected.load(Ordering::Relaxed) == 1;
                match dir.clone().filter(|_| up) {
                    Some(d) => {
                        let bound = (c.timings.heartbeat * 4).max(std::time::Duration::from_secs(2));
                        tokio::spawn(async move {
                            let outcome = match tokio::time::timeout(bound, d.claim(&job)).await {
                                Ok(outcome) => outcome,
                                Err(_) => d.unavailable("the claim took too long"),
                            };
                            to_shard(ToShard::Claimed {
                                shard: job.shard,
                                link: job.link,
                                client_id: job.client_id,
                                outcome,
                            });
                        });
                    }
                    None => {
                        stats.claims_unchecked.fetch_add(1, Ordering::Relaxed);
                        to_shard(ToShard::Claimed {
                            shard: job.shard,
                            link: job.link,
                            client_id: job.client_id,
                            outcome: Claimed::Granted(None),
                        });
                    }
                }
            }
            Some(Interested::Filter(add, filter)) = c.interest_rx.recv() => {
                changes.clear();
                let result = if add {
                    interest.add(&filter, &mut changes)
                } else {
                    interest.remove(&filter, &mut changes)
                };
                if result.is_err() {
                    continue;
                }
                // A shared filter's queue subscriptions deliver to its group.
                let group = shared_group(&filter);
                for change in changes.drain(..) {
                    match change {
                        Change::Subscribe(s) => {
                            let sub = match &s.queue {
                                Some(q) => groups_client.queue_subscribe(s.subject.clone(), q.clone()).await,
                                None => client.subscribe(s.subject.clone()).await,
                            };
                            let group = if s.queue.is_some() { group } else { None };
                            match sub {
                                Ok(mut sub) => {
                                    let tx = in_tx.clone();
                                    let task = tokio::spawn(async move {
                                        while let Some(m) = sub.next().await {
                                            if tx.send((m, group)).await.is_err() {
                                                break;
                                            }
                                        }
                                    });
                                    subscriptions.insert(s, task);
                                }
                                Err(e) => warn!(subject = %s.subject, error = %e, "cluster: subscribe failed"),
                            }
                        }
                        Change::Unsubscribe(s) => {
                            // Dropping the subscriber unsubscribes.
                            if let Some(task) = subscriptions.remove(&s) {
                                task.abort();
                            }
                        }
                    }
                }
            }
            // At most `qos::MAX_IN_FLIGHT` stream publishes wait for their
            // acknowledgement; beyond, publishes wait in their queue.
            Some(out) = c.publish_rx.recv(), if c.qos.has_room() => match out.via {
                Via::Core => match client.publish(out.subject, out.body).await {
                    Ok(()) => { stats.published.fetch_add(1, Ordering::Relaxed); }
                    Err(_) => { stats.dropped.fetch_add(1, Ordering::Relaxed); }
                },
                Via::Stream(ticket) => {
                    c.qos.publish(&client, out.subject, out.body, ticket, &*c.to_shard).await;
                }
            },
            Some((m, group)) = in_rx.recv() => deliver(&c, &m, group),
        }
    }
    follower.abort();
    for (_, task) in subscriptions {
        task.abort();
    }
    opener.abort();
    if dir.is_some() {
        // The sessions the shards stored as they stopped are written
        // (bounded: NATS may be away).
        let (done, written) = tokio::sync::oneshot::channel();
        if c.sessions_tx.try_send(SessionWrite::Flush(done)).is_ok() {
            let _ = tokio::time::timeout(SHUTDOWN_FLUSH, written).await;
        }
    }
    c.qos.stop();
    for task in dir_tasks {
        task.abort();
    }
    if let Some(d) = &dir {
        // Others take this node's clients at once rather than after three
        // missed heartbeats.
        let _ = tokio::time::timeout(SHUTDOWN_FLUSH, d.leave()).await;
    }
    // What was handed to the client goes out, but a NATS that is away must
    // not hold up the broker's exit.
    let _ = tokio::time::timeout(SHUTDOWN_FLUSH, client.flush()).await;
    drop(groups_client);
}

/// Opens the directory, retrying every second until JetStream answers.
async fn open_directory(
    client: async_nats::Client,
    prefix: String,
    node: String,
    heartbeat: std::time::Duration,
    stats: Arc<ClusterStats>,
    done: mpsc::Sender<directory::Directory>,
) {
    let mut logged = false;
    loop {
        match directory::Directory::open(client.clone(), &prefix, &node, heartbeat, stats.clone())
            .await
        {
            Ok(d) => {
                let _ = done.send(d).await;
                return;
            }
            Err(e) => {
                if !logged {
                    warn!(error = %e, "cluster: no client-id directory yet (is JetStream on? nats-server -js); CONNECTs are served without it, retrying");
                    logged = true;
                }
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }
    }
}

/// The group key of a `$share/G/F` filter.
fn shared_group(filter: &str) -> Option<GroupKey> {
    match ringmq_topic::parse_shared(filter) {
        Ok(Some(shared)) => Some(ringmq_route::group_key(shared.group, shared.filter)),
        _ => None,
    }
}

/// A message from another node (or, for a shared `group`, from any node),
/// to `deliver`.
fn deliver(c: &Control, m: &async_nats::Message, group: Option<GroupKey>) {
    if group.is_none() && c.qos.is_echo(m) {
        // This node's own, republished by the stream: its subscribers here
        // were served when it was read. (A shared group keeps it: NATS may
        // have chosen this node's member.)
        return;
    }
    let (Some(topic), Ok(body)) = (
        subject::topic_of(&c.prefix, m.subject.as_str()),
        wire::decode(&m.payload),
    ) else {
        c.stats.bad.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let Some(qos) = QoS::from_u8(body.qos) else {
        c.stats.bad.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let mut properties = match ringmq_session::decode_properties(body.properties) {
        Ok(p) => p,
        Err(_) => {
            c.stats.bad.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    properties.message_expiry_interval = body.expiry_secs;
    let publish = Publish {
        dup: false,
        qos,
        retain: body.retain,
        topic: Bytes::from(topic),
        packet_id: 0,
        properties: properties.into(),
        payload: Bytes::copy_from_slice(body.payload),
    };
    c.stats.received.fetch_add(1, Ordering::Relaxed);
    (c.to_shard)(ToShard::Publish(publish, group));
}

/// The shards' log gate on this thread's clock: ms since `start`.
fn gate_open(gate: &mut LogGate, start: Instant) -> Option<u64> {
    gate.check(ringmq_session::Tick(start.elapsed().as_millis() as u64))
}

/// A message read from the retained stream.
struct Read {
    subject: String,
    /// The stream's sequence of the message.
    seq: u64,
    /// When the stream stored it (the NATS server's clock), Unix ns.
    stored_unix_ns: i128,
    body: Bytes,
}

/// A write's acknowledgement: the subject, the write in the order, the
/// stream sequence or why not.
type Ack = (String, Option<WriteId>, Result<u64, String>);

/// The control loop's side of the retained stream: writes and their
/// acknowledgements, and what is read back, put in order.
struct Retained {
    js: jetstream::Context,
    client: async_nats::Client,
    headers: async_nats::HeaderMap,
    order: Order<Read>,
    /// Acknowledgements awaited (at most [`RETAINED_ACKS`]).
    acks: FuturesUnordered<BoxFuture<'static, Ack>>,
    failures: LogGate,
    /// The clock of `failures`.
    started: Instant,
}

impl Retained {
    /// Writes a retained message of this node to the stream; its
    /// acknowledgement is awaited beside the loop's other work.
    async fn write(&mut self, c: &Control, write: Outgoing) {
        if self.client.connection_state() != async_nats::connection::State::Connected {
            // Not buffered for later: the write would wait behind a
            // reconnection of unknown length, and a newer one may follow.
            self.failed(c, &write.subject, None, "NATS is not connected");
            return;
        }
        let id = self.order.written(&write.subject);
        let sent = self
            .js
            .publish_with_headers(write.subject.clone(), self.headers.clone(), write.body)
            .await;
        match sent {
            Ok(ack) => {
                let subject = write.subject;
                self.acks.push(Box::pin(async move {
                    let acked = ack.await.map(|a| a.sequence).map_err(|e| e.to_string());
                    (subject, id, acked)
                }));
            }
            Err(e) => self.failed(c, &write.subject, id, &e.to_string()),
        }
    }

    /// A write's acknowledgement (or its failure) came back.
    fn acked(
        &mut self,
        c: &Control,
        subject: &str,
        id: Option<WriteId>,
        acked: Result<u64, String>,
    ) {
        match acked {
            Ok(seq) => {
                c.stats.retained_published.fetch_add(1, Ordering::Relaxed);
                if let Some(read) = id.and_then(|id| self.order.acked(subject, id, seq)) {
                    store(c, read);
                }
            }
            Err(e) => self.failed(c, subject, id, &e),
        }
    }

    /// A write that did not reach the stream: counted, logged (rate
    /// limited), and forgotten by the order.
    fn failed(&mut self, c: &Control, subject: &str, id: Option<WriteId>, why: &str) {
        c.stats.retained_failed.fetch_add(1, Ordering::Relaxed);
        if let Some(unlogged) = gate_open(&mut self.failures, self.started) {
            warn!(
                subject,
                error = why,
                unlogged,
                "cluster: retained message not written to the retained stream (kept on this node only)"
            );
        }
        if let Some(read) = id.and_then(|id| self.order.failed(subject, id)) {
            store(c, read);
        }
    }

    /// A message read from the stream, stored when the order says so.
    fn arrived(&mut self, c: &Control, read: Read) {
        if subject::topic_of_retained(&c.prefix, &read.subject).is_none() {
            c.stats.bad.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let subject = read.subject.clone();
        if let Some(read) = self.order.arrived(&subject, read.seq, read) {
            store(c, read);
        }
    }
}

/// Hands a message read from the stream to its topic's owner shard: a
/// retained message with the expiry it has left, or a clear (an empty
/// payload, or a message that expired meanwhile).
fn store(c: &Control, read: Read) {
    let (Some(topic), Ok(body)) = (
        subject::topic_of_retained(&c.prefix, &read.subject),
        wire::decode(&read.body),
    ) else {
        c.stats.bad.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let (Some(qos), Ok(mut properties)) = (
        QoS::from_u8(body.qos),
        ringmq_session::decode_properties(body.properties),
    ) else {
        c.stats.bad.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let mut payload = Bytes::copy_from_slice(body.payload);
    if let Some(secs) = body.expiry_secs {
        // What was left when sent, less the time since the stream stored
        // it (a clock behind the server's counts none); rounded up, so it
        // never expires early.
        let now_unix_ms = i128::from(crate::persist::unix_ms());
        let age_ms = (now_unix_ms - read.stored_unix_ns / 1_000_000).max(0);
        let left_ms = i128::from(secs) * 1000 - age_ms;
        if left_ms <= 0 {
            // Expired: the topic has no retained message now (the value
            // before this one is replaced all the same).
            payload = Bytes::new();
            properties = Properties::default();
        } else {
            // At most the u32 seconds it was sent with.
            properties.message_expiry_interval = Some((left_ms as u64).div_ceil(1000) as u32);
        }
    }
    let publish = Publish {
        dup: false,
        qos,
        retain: true,
        topic: Bytes::from(topic),
        packet_id: 0,
        properties: properties.into(),
        payload,
    };
    c.stats.retained_loaded.fetch_add(1, Ordering::Relaxed);
    (c.to_shard)(ToShard::Retained(publish));
}

/// Follows the retained stream: opens it (creating it the first time) and
/// one ordered consumer that starts with the last message of every subject
/// and then reads new ones, and sends what it reads to the control loop.
/// Retries while JetStream is unavailable, and opens a new consumer when
/// the one it reads fails (a NATS server restarted without it), from where
/// the last one was.
async fn follow(
    js: jetstream::Context,
    prefix: String,
    mut online: watch::Receiver<Online>,
    to_control: mpsc::Sender<Read>,
    stats: Arc<ClusterStats>,
) {
    let (Ok(name), Ok(subjects)) = (
        subject::retained_stream(&prefix),
        subject::retained_subjects(&prefix),
    ) else {
        return;
    };
    let mut wait = Duration::from_millis(500);
    // The stream sequence of the last message read.
    let mut read_upto = 0;
    loop {
        // A node still connecting has no error to report.
        let connects = match online.wait_for(|o| o.up).await {
            Ok(o) => o.connects,
            Err(_) => return,
        };
        let attempt = Follow {
            js: &js,
            name: &name,
            subjects: &subjects,
            to_control: &to_control,
            stats: &stats,
        };
        let reconnected = online.wait_for(|o| o.connects != connects);
        let ended = attempt.read(&mut read_upto, &mut wait, reconnected).await;
        stats.retained_stream.store(0, Ordering::Relaxed);
        match ended {
            Ok(Ended::Stopped) => return,
            // Again at once, from where it was.
            Ok(Ended::Reconnected) => continue,
            Err(e) => {
                stats.stream_errors.fetch_add(1, Ordering::Relaxed);
                error!(
                    stream = %name,
                    error = %e,
                    retry_in_ms = wait.as_millis() as u64,
                    "cluster: the retained stream is unavailable (is JetStream enabled?); retained \
                     messages stay on the node they were published on meanwhile"
                );
            }
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(STREAM_RETRY_MAX);
    }
}

/// The connection to NATS, as [`follow`] watches it.
#[derive(Clone, Copy, Debug, Default)]
struct Online {
    up: bool,
    /// Connections made so far (reconnections included).
    connects: u64,
}

/// How one attempt of [`follow`] ended, short of an error.
enum Ended {
    /// The control loop is gone.
    Stopped,
    /// NATS connected again: the consumer may be gone with its server.
    Reconnected,
}

/// One attempt of [`follow`].
struct Follow<'a> {
    js: &'a jetstream::Context,
    name: &'a str,
    subjects: &'a str,
    to_control: &'a mpsc::Sender<Read>,
    stats: &'a ClusterStats,
}

impl Follow<'_> {
    /// Reads the stream past `read_upto` (0: from the start, last message
    /// per subject) until the control loop is gone or `reconnected`
    /// completes; Err when the stream or its consumer cannot be opened or
    /// the consumer fails.
    async fn read<T>(
        &self,
        read_upto: &mut u64,
        wait: &mut Duration,
        reconnected: impl std::future::Future<Output = T>,
    ) -> Result<Ended, String> {
        tokio::pin!(reconnected);
        let mut stream = self
            .js
            .get_or_create_stream(jetstream::stream::Config {
                name: self.name.to_string(),
                subjects: vec![self.subjects.to_string()],
                max_messages_per_subject: 1,
                storage: jetstream::stream::StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(|e| format!("cannot open the stream: {e}"))?;
        let last = stream
            .info()
            .await
            .map_err(|e| format!("cannot read the stream's state: {e}"))?
            .state
            .last_sequence;
        // A stream that is behind what was read is a new one (its store
        // was lost): read it all again.
        let deliver_policy = if *read_upto == 0 || last < *read_upto {
            jetstream::consumer::DeliverPolicy::LastPerSubject
        } else {
            jetstream::consumer::DeliverPolicy::ByStartSequence {
                start_sequence: *read_upto + 1,
            }
        };
        let consumer = stream
            .create_consumer(jetstream::consumer::pull::OrderedConfig {
                filter_subject: self.subjects.to_string(),
                deliver_policy,
                ..Default::default()
            })
            .await
            .map_err(|e| format!("cannot create the consumer: {e}"))?;
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| format!("cannot read the consumer: {e}"))?;
        info!(
            stream = self.name,
            from_sequence = *read_upto + 1,
            "cluster: following the retained stream"
        );
        self.stats.retained_stream.store(1, Ordering::Relaxed);
        *wait = Duration::from_millis(500);
        loop {
            let m = tokio::select! {
                m = messages.next() => m,
                // A restarted NATS server lost the consumer, which
                // async-nats finds out only after missed heartbeats.
                _ = &mut reconnected => return Ok(Ended::Reconnected),
            };
            let Some(m) = m else {
                return Err("the consumer ended".to_string());
            };
            // async-nats recreates an ordered consumer itself where it can
            // (missed heartbeats, a gap); what it hands back is not
            // recovered by reading on.
            let m = m.map_err(|e| format!("reading the consumer: {e}"))?;
            let Ok(info) = m.info() else {
                continue;
            };
            *read_upto = info.stream_sequence;
            let read = Read {
                subject: m.subject.to_string(),
                seq: info.stream_sequence,
                stored_unix_ns: info.published.unix_timestamp_nanos(),
                body: m.payload.clone(),
            };
            if self.to_control.send(read).await.is_err() {
                return Ok(Ended::Stopped);
            }
        }
    }
}
