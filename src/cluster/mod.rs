//! `--cluster-nats`: the node's control thread on NATS (issue 17: routing
//! between nodes, and retained messages across them).
//!
//! One thread per node runs a current-thread tokio runtime and the
//! async-nats client; tokio never runs on a shard thread. Shards talk to it
//! through three channels: interest changes (a filter gained its first or
//! lost its last subscriber on a shard; unbounded, as their number is
//! bounded by the subscriptions the broker holds), publishes to forward and
//! retained writes (both bounded: when NATS cannot keep up one is dropped
//! and counted, never queued without bound). What arrives from NATS is
//! handed to `deliver` (the broker sends it to the shard that owns the
//! topic as `Msg::ClusterPublish`, routed there like a local publish, never
//! back to NATS, and never stored as retained there); this module knows
//! nothing of shards.
//!
//! Subjects, the interest set, the message body and the order of retained
//! messages are `ringmq-cluster`'s (sans-IO). The connection has `no_echo`:
//! a node never receives its own publishes. A shared subscription
//! (`$share/G/F`) is served per node in this step: each node with members
//! of the group gets one copy and gives it to one local member. QoS 1/2
//! messages cross nodes at most once (core NATS).
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
//! goes to `store_retained` (the broker sends it to the topic's retained
//! owner shard as `Msg::ClusterRetained`: stored, journaled and limited
//! like a local retained message, delivered to nobody), with the expiry it
//! had left when sent less the time since the stream stored it (an
//! expired one is a clear). Without JetStream the stream cannot be opened
//! (logged as an error, counted in `cluster_stream_errors`, tried again
//! with back-off up to 30 s) and retained messages stay on their node;
//! routing is not affected. The client-id directory and sessions across
//! nodes are the next steps of issue 17.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use async_nats::jetstream;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;
use ringmq_cluster::interest::{Change, Interest, Subscription};
use ringmq_cluster::retained::{Order, WriteId};
use ringmq_cluster::{subject, wire};
use ringmq_codec::{Properties, Publish, QoS};
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

/// Longest the control thread waits at shutdown for NATS to take what is
/// buffered.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(1);

/// Publishes waiting for the control thread, at most.
const PUBLISH_QUEUE: usize = 65_536;

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

/// At most one log line per this long for a problem repeated per message.
const LOG_EVERY: Duration = Duration::from_secs(10);

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
}

/// What the shards hold of the cluster.
pub(crate) struct ClusterLink {
    pub(crate) prefix: String,
    pub(crate) interest: mpsc::UnboundedSender<Interested>,
    pub(crate) publish: mpsc::Sender<Outgoing>,
    pub(crate) retained: mpsc::Sender<Outgoing>,
    pub(crate) stats: Arc<ClusterStats>,
}

impl ClusterLink {
    /// Forwards a publish read on this node (not one from another node),
    /// and writes it to the retained stream when it has RETAIN (an empty
    /// one too: the clear). Neither waits: the publisher's PUBACK does not
    /// wait for NATS or JetStream.
    pub(crate) fn forward(&self, publish: &Publish, expiry_secs: Option<u32>) {
        let Ok(topic) = std::str::from_utf8(&publish.topic) else {
            return;
        };
        let Ok(subject) = subject::topic_subject(&self.prefix, topic) else {
            return;
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
                };
                if self.retained.try_send(write).is_err() {
                    self.stats.retained_failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        if self.publish.try_send(Outgoing { subject, body }).is_err() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A filter's (or a shared group's inner filter's) first local
    /// subscriber on a shard came (`add`) or its last went. A shared group
    /// is served per node in this step: the node takes its inner filter.
    pub(crate) fn interest(&self, add: bool, filter: &[u8]) {
        if let Ok(filter) = std::str::from_utf8(filter) {
            let _ = self
                .interest
                .send(Interested::Filter(add, filter.to_string()));
        }
    }
}

/// The control thread.
pub(crate) struct Cluster {
    thread: Option<JoinHandle<()>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Cluster {
    /// Starts the control thread for NATS servers `urls` under subject
    /// prefix `prefix`; returns it and what the shards hold. `deliver`
    /// takes a publish from another node, `store_retained` a retained
    /// message (or clear) read from the stream.
    pub(crate) fn start(
        urls: Vec<String>,
        prefix: String,
        node_id: String,
        deliver: impl Fn(Publish) + Send + 'static,
        store_retained: impl Fn(Publish) + Send + 'static,
    ) -> Result<(Cluster, ClusterLink), String> {
        subject::check_prefix(&prefix).map_err(|e| format!("--cluster-prefix {prefix:?}: {e}"))?;
        let origin: async_nats::HeaderValue = node_id
            .parse()
            .map_err(|_| format!("--node-id {node_id:?}: no line breaks"))?;
        let (interest_tx, interest_rx) = mpsc::unbounded_channel();
        let (publish_tx, publish_rx) = mpsc::channel(PUBLISH_QUEUE);
        let (retained_tx, retained_rx) = mpsc::channel(RETAINED_QUEUE);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let stats = Arc::new(ClusterStats::default());
        let link = ClusterLink {
            prefix: prefix.clone(),
            interest: interest_tx,
            publish: publish_tx,
            retained: retained_tx,
            stats: stats.clone(),
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the cluster runtime: {e}"))?;
        let thread = std::thread::Builder::new()
            .name("ringmq-cluster".into())
            .spawn(move || {
                runtime.block_on(control(Control {
                    urls,
                    prefix,
                    node_id,
                    origin,
                    deliver: Box::new(deliver),
                    store_retained: Box::new(store_retained),
                    stats,
                    interest_rx,
                    publish_rx,
                    retained_rx,
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
    /// `node_id` as the value of [`ORIGIN_HEADER`].
    origin: async_nats::HeaderValue,
    deliver: Box<dyn Fn(Publish) + Send>,
    store_retained: Box<dyn Fn(Publish) + Send>,
    stats: Arc<ClusterStats>,
    interest_rx: mpsc::UnboundedReceiver<Interested>,
    publish_rx: mpsc::Receiver<Outgoing>,
    retained_rx: mpsc::Receiver<Outgoing>,
    stop_rx: tokio::sync::oneshot::Receiver<()>,
}

async fn control(mut c: Control) {
    let stats = c.stats.clone();
    let events = stats.clone();
    // Whether NATS is connected, and how many times it connected, for the
    // task that follows the stream.
    let (online_tx, online_rx) = watch::channel(Online::default());
    let options = async_nats::ConnectOptions::new()
        .no_echo()
        .name(format!("ringmq {}", c.node_id))
        .retry_on_initial_connect()
        .event_callback(move |event| {
            let events = events.clone();
            let online = online_tx.clone();
            async move {
                match event {
                    async_nats::Event::Connected => {
                        events.connected.store(1, Ordering::Relaxed);
                        online.send_modify(|o| {
                            o.up = true;
                            o.connects += 1;
                        });
                        info!("cluster: connected to NATS");
                    }
                    async_nats::Event::Disconnected => {
                        events.connected.store(0, Ordering::Relaxed);
                        online.send_modify(|o| o.up = false);
                        warn!("cluster: disconnected from NATS; reconnecting");
                    }
                    other => info!(event = %other, "cluster: NATS event"),
                }
            }
        });
    // A broker stopping before NATS ever answered must not wait for it.
    let connected = tokio::select! {
        _ = &mut c.stop_rx => return,
        connected = options.connect(c.urls.clone()) => connected,
    };
    let client = match connected {
        Ok(client) => client,
        Err(e) => {
            warn!(error = %e, urls = ?c.urls, "cluster: cannot connect to NATS");
            return;
        }
    };
    let (in_tx, mut in_rx) = mpsc::channel::<async_nats::Message>(4096);
    let mut interest = match Interest::new(&c.prefix) {
        Ok(i) => i,
        Err(_) => return,
    };
    let mut subscriptions: HashMap<Subscription, tokio::task::JoinHandle<()>> = HashMap::new();
    let mut changes = Vec::new();
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
    };
    loop {
        tokio::select! {
            _ = &mut c.stop_rx => break,
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
                for change in changes.drain(..) {
                    match change {
                        Change::Subscribe(s) => {
                            let sub = match &s.queue {
                                Some(q) => client.queue_subscribe(s.subject.clone(), q.clone()).await,
                                None => client.subscribe(s.subject.clone()).await,
                            };
                            match sub {
                                Ok(mut sub) => {
                                    let tx = in_tx.clone();
                                    let task = tokio::spawn(async move {
                                        while let Some(m) = sub.next().await {
                                            if tx.send(m).await.is_err() {
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
            Some(out) = c.publish_rx.recv() => {
                match client.publish(out.subject, out.body).await {
                    Ok(()) => { stats.published.fetch_add(1, Ordering::Relaxed); }
                    Err(_) => { stats.dropped.fetch_add(1, Ordering::Relaxed); }
                }
            }
            Some(m) = in_rx.recv() => deliver(&c, &m),
        }
    }
    follower.abort();
    for (_, task) in subscriptions {
        task.abort();
    }
    // What was handed to the client goes out, but a NATS that is away must
    // not hold up the broker's exit.
    let _ = tokio::time::timeout(SHUTDOWN_FLUSH, client.flush()).await;
}

/// A message from another node, to `deliver`.
fn deliver(c: &Control, m: &async_nats::Message) {
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
    (c.deliver)(publish);
}

/// At most one log line per [`LOG_EVERY`] for a problem repeated per
/// message; the lines left out are counted in the next.
#[derive(Default)]
struct LogGate {
    last: Option<Instant>,
    unlogged: u64,
}

impl LogGate {
    /// `Some(lines left out since the last)` when a line may be logged.
    fn check(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self.last.is_some_and(|t| now.duration_since(t) < LOG_EVERY) {
            self.unlogged += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.unlogged))
    }
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
        if let Some(unlogged) = self.failures.check() {
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
        let now_unix_ns = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128);
        let age_ms = ((now_unix_ns - read.stored_unix_ns) / 1_000_000).max(0);
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
    (c.store_retained)(publish);
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
        };
        let reconnected = online.wait_for(|o| o.connects != connects);
        match attempt.read(&mut read_upto, &mut wait, reconnected).await {
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
