//! `--cluster-qos durable`: QoS 1/2 publishes cross nodes through a
//! JetStream stream, and the publisher's acknowledgement waits for it.
//!
//! The stream `{P}_messages` (created, or taken as it is, once connected)
//! captures `{P}.q.>` and republishes each stored message on its topic's
//! ordinary subject (`ringmq_cluster::subject::stream_subject` and the
//! republish pair), where the other nodes' core subscriptions, plain and
//! queue groups, get it as they get a core publish. It is a durability
//! point, not a replay log: bounded by age ([`MAX_AGE`]) and size
//! ([`MAX_BYTES`]), the oldest discarded, and nothing reads it back.
//!
//! A republished message reaches this node's own ordinary subscriptions
//! too (the server publishes it, so `no_echo` does not apply): each one
//! carries [`ORIGIN_HEADER`] naming the node that stored it, and the node
//! drops its own ([`Qos::is_echo`]); a shared group's queue subscription
//! keeps it, since NATS may choose this node's member.
//!
//! Shard side: a publish read from a client is forwarded [`Via::Stream`]
//! with a [`Ticket`] when [`ClusterLink::stores`] says so, and the
//! publisher's link is held (its PUBACK / PUBREC waits) under the ticket's
//! token in the shard's [`Holds`]. Control side: the stream publish is
//! sent in order on the node's connection, and its acknowledgement awaited
//! among at most [`MAX_IN_FLIGHT`] others without blocking the control
//! loop (beyond, the loop takes no publish until one ends); then
//! `ToShard::Stored` tells the shard to release the link. An error or a
//! timeout ([`ACK_TIMEOUT`]) releases it too, counted in `qos_failed`: the
//! message then went at most once (or not at all). Every ticket comes back
//! exactly once while the control thread runs; a link that closed
//! meanwhile is released harmlessly (the shard holds its `Rc`, not its
//! slot).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, context::PublishErrorKind, stream};
use bytes::Bytes;
use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;
use ringmq_cluster::{handover, subject};
use ringmq_codec::QoS;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::{ClusterLink, ClusterStats, ToShard};

/// The header naming the node that stored a message (its id in hex).
pub(crate) const ORIGIN_HEADER: &str = "Ringmq-Node";

/// How long the stream keeps a message.
pub(crate) const MAX_AGE: Duration = Duration::from_secs(60);

/// The most the stream holds, in bytes (the oldest go first).
pub(crate) const MAX_BYTES: i64 = 256 * 1024 * 1024;

/// Longest a stream publish waits for its acknowledgement (and for room
/// in the NATS client's queue).
pub(crate) const ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// Stream publishes awaiting their acknowledgement, at most.
pub(crate) const MAX_IN_FLIGHT: usize = 4096;

/// `--cluster-qos`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Through the stream; the acknowledgement waits for it.
    Durable,
    /// Core NATS: at most once.
    BestEffort,
}

/// Names a held publisher: the shard and its token there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ticket {
    pub(crate) shard: usize,
    pub(crate) token: u64,
}

/// How a forwarded publish goes to NATS.
#[derive(Debug)]
pub(crate) enum Via {
    /// On its topic subject (at most once).
    Core,
    /// Into the message stream; with the ticket of the held publisher,
    /// if any (a will has none).
    Stream(Option<Ticket>),
}

/// A shard's held publishers, by token (shard side).
#[derive(Debug)]
pub(crate) struct Holds<T> {
    next: u64,
    held: HashMap<u64, T>,
}

impl<T> Default for Holds<T> {
    fn default() -> Self {
        Holds {
            next: 0,
            held: HashMap::new(),
        }
    }
}

impl<T> Holds<T> {
    /// Keeps `held` under a new token.
    pub(crate) fn insert(&mut self, held: T) -> u64 {
        self.next += 1;
        self.held.insert(self.next, held);
        self.next
    }

    /// What `token` holds, once.
    pub(crate) fn take(&mut self, token: u64) -> Option<T> {
        self.held.remove(&token)
    }
}

impl ClusterLink {
    /// Whether a publish at `qos` read here goes through the stream now:
    /// QoS 1/2 with `--cluster-qos durable`, connected, the stream open.
    /// Otherwise it is forwarded on core NATS and nothing waits.
    pub(crate) fn stores(&self, qos: QoS) -> bool {
        qos != QoS::AtMostOnce
            && self.qos == Mode::Durable
            && self.stats.connected.load(Ordering::Relaxed) == 1
            && self.stats.qos_stream.load(Ordering::Relaxed) == 1
    }
}

/// The stream's configuration for cluster prefix `prefix`.
fn config(prefix: &str) -> stream::Config {
    stream::Config {
        name: super::directory::bucket(prefix, "messages"),
        subjects: vec![subject::stream_filter(prefix)],
        republish: Some(stream::Republish {
            source: subject::republish_source(prefix),
            destination: subject::republish_destination(prefix),
            headers_only: false,
        }),
        max_age: MAX_AGE,
        max_bytes: MAX_BYTES,
        discard: stream::DiscardPolicy::Old,
        storage: stream::StorageType::File,
        ..Default::default()
    }
}

/// Creates (or gets) the stream, retrying every second until JetStream
/// answers; sends the context to publish with on `done`.
async fn open(client: async_nats::Client, prefix: String, done: mpsc::Sender<jetstream::Context>) {
    let mut js = jetstream::new(client);
    js.set_timeout(ACK_TIMEOUT);
    let config = config(&prefix);
    let mut logged = false;
    loop {
        match js.get_or_create_stream(config.clone()).await {
            Ok(_) => {
                let _ = done.send(js).await;
                return;
            }
            Err(e) => {
                if !logged {
                    warn!(error = %e, stream = %config.name, "cluster: no message stream yet (is JetStream on?); QoS 1/2 cross nodes at most once meanwhile, retrying");
                    logged = true;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// A stream publish ended: whose, and how.
type Done = (Option<Ticket>, Result<(), PublishErrorKind>);

/// What [`Qos::next`] waits for.
pub(crate) enum Event {
    /// The stream is open.
    Opened(jetstream::Context),
    /// A stream publish ended.
    Acked(Done),
}

/// The control thread's side: the stream and the acknowledgements awaited.
pub(crate) struct Qos {
    mode: Mode,
    /// [`ORIGIN_HEADER`]'s value for this node.
    origin: String,
    prefix: String,
    stats: Arc<ClusterStats>,
    /// The node's connection, once connected.
    client: Option<async_nats::Client>,
    stream: Option<jetstream::Context>,
    acks: FuturesUnordered<Pin<Box<dyn Future<Output = Done> + Send>>>,
    opened: Option<mpsc::Receiver<jetstream::Context>>,
    opener: Option<tokio::task::JoinHandle<()>>,
}

impl Qos {
    pub(crate) fn new(mode: Mode, node_id: &str, prefix: &str, stats: Arc<ClusterStats>) -> Qos {
        Qos {
            mode,
            origin: handover::key(node_id.as_bytes()),
            prefix: prefix.to_string(),
            stats,
            client: None,
            stream: None,
            acks: FuturesUnordered::new(),
            opened: None,
            opener: None,
        }
    }

    /// Opens the stream in the background (durable only).
    pub(crate) fn start(&mut self, client: &async_nats::Client) {
        if self.mode != Mode::Durable {
            return;
        }
        self.client = Some(client.clone());
        let (tx, rx) = mpsc::channel(1);
        self.opened = Some(rx);
        self.opener = Some(tokio::spawn(open(client.clone(), self.prefix.clone(), tx)));
    }

    /// Whether another stream publish may start now.
    pub(crate) fn has_room(&self) -> bool {
        self.acks.len() < MAX_IN_FLIGHT
    }

    /// The next event; pending while there is nothing to wait for.
    pub(crate) async fn next(&mut self) -> Event {
        let opened = async {
            match self.opened.as_mut() {
                Some(rx) => rx.recv().await,
                None => None,
            }
        };
        tokio::select! {
            Some(js) = opened => Event::Opened(js),
            Some(done) = self.acks.next(), if !self.acks.is_empty() => Event::Acked(done),
            else => std::future::pending().await,
        }
    }

    /// Carries out an event; a ticket that came back goes to `to_shard`.
    pub(crate) fn on(&mut self, event: Event, to_shard: &(dyn Fn(ToShard) + Send + Sync)) {
        match event {
            Event::Opened(js) => {
                info!("cluster: message stream open");
                self.opened = None;
                self.opener = None;
                self.stream = Some(js);
                self.stats.qos_stream.store(1, Ordering::Relaxed);
            }
            Event::Acked((ticket, result)) => self.finish(ticket, result, to_shard),
        }
    }

    /// Publishes into the stream (the send in order, on the node's
    /// connection; the acknowledgement awaited by [`Qos::next`]). Without
    /// the stream (not open yet, or lost), on core NATS at most once.
    pub(crate) async fn publish(
        &mut self,
        client: &async_nats::Client,
        topic_subject: String,
        body: Bytes,
        ticket: Option<Ticket>,
        to_shard: &(dyn Fn(ToShard) + Send + Sync),
    ) {
        let (Some(js), Some(stored)) = (
            self.stream.as_ref(),
            subject::stream_subject(&self.prefix, &topic_subject),
        ) else {
            let counter = match client.publish(topic_subject, body).await {
                Ok(()) => &self.stats.published,
                Err(_) => &self.stats.dropped,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            self.finish(ticket, Err(PublishErrorKind::StreamNotFound), to_shard);
            return;
        };
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(ORIGIN_HEADER, self.origin.as_str());
        match js.publish_with_headers(stored, headers, body).await {
            Ok(ack) => {
                self.stats.published.fetch_add(1, Ordering::Relaxed);
                self.acks.push(Box::pin(async move {
                    (ticket, ack.await.map(|_| ()).map_err(|e| e.kind()))
                }));
            }
            Err(e) => self.finish(ticket, Err(e.kind()), to_shard),
        }
    }

    /// A stream publish ended: counted, and its publisher released.
    fn finish(
        &mut self,
        ticket: Option<Ticket>,
        result: Result<(), PublishErrorKind>,
        to_shard: &(dyn Fn(ToShard) + Send + Sync),
    ) {
        match result {
            Ok(()) => {
                self.stats.qos_published.fetch_add(1, Ordering::Relaxed);
            }
            Err(kind) => {
                self.stats.qos_failed.fetch_add(1, Ordering::Relaxed);
                debug!(error = %kind, "cluster: a QoS 1/2 publish was not stored");
                if kind == PublishErrorKind::StreamNotFound && self.stream.take().is_some() {
                    // Deleted, or a NATS server without it: made again.
                    warn!("cluster: the message stream is gone; opening it again");
                    self.stats.qos_stream.store(0, Ordering::Relaxed);
                    if let Some(client) = self.client.clone() {
                        self.start(&client);
                    }
                }
            }
        }
        if let Some(Ticket { shard, token }) = ticket {
            to_shard(ToShard::Stored { shard, token });
        }
    }

    /// Whether `m`, from an ordinary subscription, is this node's own
    /// publish republished by the stream (dropped: its local subscribers
    /// were served when it was read).
    pub(crate) fn is_echo(&self, m: &async_nats::Message) -> bool {
        m.headers
            .as_ref()
            .and_then(|h| h.get(ORIGIN_HEADER))
            .is_some_and(|v| v.as_str() == self.origin)
    }

    /// The control thread stops.
    pub(crate) fn stop(&mut self) {
        if let Some(task) = self.opener.take() {
            task.abort();
        }
    }
}
