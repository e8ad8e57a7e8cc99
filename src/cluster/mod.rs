//! `--cluster-nats`: the node's control thread on NATS (issue 17, first
//! step: routing between nodes).
//!
//! One thread per node runs a current-thread tokio runtime and the
//! async-nats client; tokio never runs on a shard thread. Shards talk to it
//! through two channels: interest changes (a filter gained its first or
//! lost its last subscriber on a shard; unbounded, as their number is
//! bounded by the subscriptions the broker holds) and publishes to forward
//! (bounded: when NATS cannot keep up a publish is dropped and counted,
//! never queued without bound). What arrives from NATS is handed to
//! `deliver` (the broker sends it to the shard that owns the topic as
//! `Msg::ClusterPublish`, routed there like a local publish, never back to
//! NATS); this module knows nothing of shards.
//!
//! Subjects, the interest set and the message body are `ringmq-cluster`'s
//! (sans-IO). A node has two NATS connections: `routes` publishes and
//! holds the ordinary subscriptions, with `no_echo` (a node never receives
//! its own publishes); `groups` holds one queue subscription per shared
//! subscription (`$share/G/F`) with members here, with echo, so NATS gives
//! each message to one node among all with members, this one included,
//! and that node gives it to one local member. So a node serves only the
//! ordinary subscribers of what it reads while connected.
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
//! nodes. Retained messages and sessions across nodes are the next steps
//! of issue 17.

mod directory;
mod qos;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use bytes::Bytes;
use futures_util::StreamExt;
use ringmq_cluster::interest::{Change, Interest, Subscription};
use ringmq_cluster::{subject, wire};
use ringmq_codec::{Publish, QoS};
use ringmq_route::GroupKey;
use tokio::sync::mpsc;
use tracing::{info, warn};

/// Longest the control thread waits at shutdown for NATS to take what is
/// buffered.
const SHUTDOWN_FLUSH: std::time::Duration = std::time::Duration::from_secs(1);

/// Publishes waiting for the control thread, at most.
const PUBLISH_QUEUE: usize = 65_536;

/// CONNECTs waiting for their claim in the directory, at most (beyond,
/// CONNACK 0x89 Server busy).
const CLAIM_QUEUE: usize = 16_384;

pub(crate) use directory::{ClaimJob, Claimed, Released};
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
    /// Another node takes `client_id` over, for the shard that owns it: it
    /// lets the client go and answers on `reply`.
    TakeOver {
        client_id: Bytes,
        clean_start: bool,
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

/// A publish to forward to the other nodes.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub(crate) subject: String,
    pub(crate) body: Vec<u8>,
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
    pub(crate) claims: mpsc::Sender<ClaimJob>,
    pub(crate) stats: Arc<ClusterStats>,
    /// `--cluster-qos`.
    pub(crate) qos: Mode,
}

impl ClusterLink {
    /// Forwards a publish read on this node (not one from another node)
    /// `via` core NATS or the stream; false when it was not queued.
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
        let (interest_tx, interest_rx) = mpsc::unbounded_channel();
        let (publish_tx, publish_rx) = mpsc::channel(PUBLISH_QUEUE);
        let (claims_tx, claims_rx) = mpsc::channel(CLAIM_QUEUE);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let stats = Arc::new(ClusterStats::default());
        let link = ClusterLink {
            prefix: prefix.clone(),
            node_id: node_id.clone(),
            interest: interest_tx,
            publish: publish_tx,
            claims: claims_tx,
            stats: stats.clone(),
            qos,
        };
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
                    to_shard: Arc::new(to_shard),
                    stats,
                    interest_rx,
                    publish_rx,
                    claims_rx,
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
    to_shard: Arc<dyn Fn(ToShard) + Send + Sync>,
    stats: Arc<ClusterStats>,
    interest_rx: mpsc::UnboundedReceiver<Interested>,
    publish_rx: mpsc::Receiver<Outgoing>,
    claims_rx: mpsc::Receiver<ClaimJob>,
    stop_rx: tokio::sync::oneshot::Receiver<()>,
    /// `--cluster-qos durable`: the stream and its acknowledgements.
    qos: qos::Qos,
}

/// Connect options of the node's connections to NATS; `echo`: whether it
/// receives what it publishes itself.
fn options(c: &Control, echo: bool, role: &'static str) -> async_nats::ConnectOptions {
    let events = c.stats.clone();
    let mut options = async_nats::ConnectOptions::new()
        .name(format!("ringmq {} {role}", c.node_id))
        .retry_on_initial_connect();
    if !echo {
        options = options.no_echo();
    }
    options.event_callback(move |event| {
        let events = events.clone();
        async move {
            match event {
                async_nats::Event::Connected => {
                    if role == "routes" {
                        events.connected.store(1, Ordering::Relaxed);
                    }
                    info!(role, "cluster: connected to NATS");
                }
                async_nats::Event::Disconnected => {
                    if role == "routes" {
                        events.connected.store(0, Ordering::Relaxed);
                    }
                    warn!(role, "cluster: disconnected from NATS; reconnecting");
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
    let (routes, groups) = (options(&c, false, "routes"), options(&c, true, "groups"));
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
    c.qos.start(&client);
    loop {
        tokio::select! {
            _ = &mut c.stop_rx => break,
            event = c.qos.next() => c.qos.on(event, &*c.to_shard),
            Some(d) = dir_rx.recv() => {
                stats.directory.store(1, Ordering::Relaxed);
                info!("cluster: client-id directory open");
                let alive = Arc::new(AtomicBool::new(false));
                dir_tasks.push(tokio::spawn(d.clone().heartbeat(c.timings.heartbeat, alive)));
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
                Via::Core => match client.publish(out.subject, Bytes::from(out.body)).await {
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
    for (_, task) in subscriptions {
        task.abort();
    }
    opener.abort();
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
