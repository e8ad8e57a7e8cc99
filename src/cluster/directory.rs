//! The client-id directory on JetStream (`--cluster-nats`): the control
//! thread's side of a claim, of a take-over asked by another node, and of
//! this node's heartbeat.
//!
//! Buckets (key-value, history 1), named from the cluster prefix:
//! - `{P}_clients`: client id (hex) -> the node that holds it and that
//!   node's connection epoch. Written only by compare-and-set (create, or
//!   update over the revision read), so two nodes racing for one id are
//!   settled by the bucket, never by timing (`ringmq_cluster::directory`'s
//!   [`Claim`] decides each step).
//! - `{P}_nodes`: node id (hex) -> a heartbeat, put every heartbeat
//!   interval; the bucket's max age is three intervals, so a dead node's
//!   key expires by itself. A node stopping deletes its own.
//! - `{P}_sessions`: `hex(node).hex(client id)` -> a persistent session
//!   (subscriptions, expiry, will, queued messages as far as one NATS
//!   message holds them) held by that node, written whenever its client
//!   connects, subscribes, unsubscribes or leaves, removed when it ends.
//!   A node claiming an id whose owner is gone (or itself, restarted)
//!   resumes it from there; a node that notices another's death takes all
//!   the dead node's sessions (their wills come due as for a dropped
//!   connection).
//!
//! A node asks the owner to let the id go on `{P}.n.{node}.takeover`
//! (request/reply; the body is `ringmq_cluster::handover`'s). The owner's
//! shard sends DISCONNECT 0x8E, closes, ends the session there and replies
//! with what lives on, which the claiming shard imports before it answers
//! the CONNECT.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv;
use bytes::Bytes;
use ringmq_cluster::directory::{Claim, Input, Owner, Refusal, Step};
use ringmq_cluster::handover;
use ringmq_store::SessionState;
use tracing::{debug, info, warn};

use super::{ClusterStats, ToShard};

/// Reads of the key one claim may make (races lost, plus one).
const MAX_READS: u32 = 6;

/// A CONNECT waiting for its claim: who asks and what.
#[derive(Debug)]
pub(crate) struct ClaimJob {
    /// The shard and its link (raw id) that wait.
    pub(crate) shard: usize,
    pub(crate) link: u64,
    pub(crate) client_id: Bytes,
    /// The CONNECT's Clean Start and user name, told to the owner.
    pub(crate) clean_start: bool,
    pub(crate) username: Option<Bytes>,
}

/// How a claim ended.
#[derive(Debug)]
pub(crate) enum Claimed {
    /// The id is this node's; with the session the previous owner let go,
    /// if it lives on.
    Granted(Option<Box<(Bytes, SessionState)>>),
    /// The owner is busy, not gone, or the races went on too long: CONNACK
    /// 0x89 Server busy.
    Refused(Refusal),
}

/// A change to this node's stored sessions.
#[derive(Debug)]
pub(crate) enum SessionWrite {
    /// The session as it stands (connected or not).
    Put(Bytes, Box<SessionState>),
    /// It ended here.
    Gone(Bytes),
    /// Answer once every write before this one is done (at shutdown).
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// What a shard answers to a take-over another node asked for (not held,
/// let go with the session that lives on, or kept from this user).
pub(crate) type Released = handover::Reply;

/// The directory's handles, shared by the control thread's tasks.
#[derive(Clone)]
pub(crate) struct Directory {
    pub(crate) client: async_nats::Client,
    pub(crate) clients: kv::Store,
    pub(crate) nodes: kv::Store,
    pub(crate) sessions: kv::Store,
    pub(crate) prefix: String,
    pub(crate) node: String,
    pub(crate) epoch: Arc<AtomicU64>,
    pub(crate) takeover_timeout: Duration,
    pub(crate) stats: Arc<ClusterStats>,
}

/// The bucket names of cluster prefix `prefix` (`.` is not allowed in a
/// bucket name; a prefix token never holds `_`-free ambiguity that
/// matters here: two prefixes that differ only in `.` vs `_` share
/// buckets, which the README warns about).
pub(crate) fn bucket(prefix: &str, what: &str) -> String {
    let mut name: String = prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    name.push('_');
    name.push_str(what);
    name
}

/// The subject on which node `node` hears take-over requests.
pub(crate) fn takeover_subject(prefix: &str, node: &str) -> String {
    format!("{prefix}.n.{}.takeover", handover::key(node.as_bytes()))
}

impl Directory {
    /// Opens (creating them if missing) the buckets.
    pub(crate) async fn open(
        client: async_nats::Client,
        prefix: &str,
        node: &str,
        heartbeat: Duration,
        stats: Arc<ClusterStats>,
    ) -> Result<Directory, String> {
        let js = async_nats::jetstream::new(client.clone());
        let open = |name: String, max_age: Duration| {
            let js = js.clone();
            async move {
                let config = kv::Config {
                    bucket: name.clone(),
                    history: 1,
                    max_age,
                    storage: async_nats::jetstream::stream::StorageType::File,
                    ..Default::default()
                };
                match js.create_key_value(config).await {
                    Ok(store) => Ok(store),
                    // Made by another node with other settings: use it.
                    Err(create) => js
                        .get_key_value(name.clone())
                        .await
                        .map_err(|e| format!("bucket {name}: {create}; {e}")),
                }
            }
        };
        let clients = open(bucket(prefix, "clients"), Duration::ZERO).await?;
        let nodes = open(bucket(prefix, "nodes"), heartbeat * 3).await?;
        let sessions = open(bucket(prefix, "sessions"), Duration::ZERO).await?;
        Ok(Directory {
            client,
            clients,
            nodes,
            sessions,
            prefix: prefix.to_string(),
            node: node.to_string(),
            epoch: Arc::new(AtomicU64::new(0)),
            takeover_timeout: heartbeat * 2,
            stats,
        })
    }

    /// Puts this node's heartbeat every `interval`, until the task is
    /// dropped.
    pub(crate) async fn heartbeat(self, interval: Duration) {
        let key = handover::key(self.node.as_bytes());
        let mut tick = tokio::time::interval(interval);
        loop {
            tick.tick().await;
            if let Err(e) = self.nodes.put(&key, Bytes::from_static(b"1")).await {
                debug!(error = %e, "cluster: heartbeat not written");
            }
        }
    }

    /// This node stops: its heartbeat goes, so others need not wait for it
    /// to expire.
    pub(crate) async fn leave(&self) {
        let _ = self.nodes.delete(handover::key(self.node.as_bytes())).await;
    }

    /// Runs one claim to its end.
    pub(crate) async fn claim(&self, job: &ClaimJob) -> Claimed {
        let me = Owner {
            node: self.node.clone(),
            epoch: self.epoch.fetch_add(1, Ordering::Relaxed) + 1,
        };
        let key = handover::key(&job.client_id);
        let (mut claim, mut step) = Claim::new(me, MAX_READS);
        let mut moved = None;
        // The owner last read: whose stored session the id comes with.
        let mut previous: Option<String> = None;
        loop {
            let input = match step {
                Step::Get => match self.clients.entry(key.clone()).await {
                    Ok(Some(e)) if e.operation == kv::Operation::Put => {
                        // A value no node wrote counts as no owner, written
                        // over its revision.
                        match handover::owner_of(&e.value) {
                            Some(owner) => {
                                previous = Some(owner.node.clone());
                                Input::Got(Some((owner, e.revision)))
                            }
                            None => Input::Got(Some((
                                Owner {
                                    node: self.node.clone(),
                                    epoch: 0,
                                },
                                e.revision,
                            ))),
                        }
                    }
                    Ok(_) => {
                        previous = None;
                        Input::Got(None)
                    }
                    Err(e) => return self.unavailable(&e.to_string()),
                },
                Step::Create(owner) => {
                    let value = Bytes::from(handover::owner_value(&owner));
                    match self.clients.create(&key, value).await {
                        Ok(revision) => Input::Created(Some(revision)),
                        Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                            Input::Created(None)
                        }
                        Err(e) => return self.unavailable(&e.to_string()),
                    }
                }
                Step::Update { owner, revision } => {
                    let value = Bytes::from(handover::owner_value(&owner));
                    match self.clients.update(&key, value, revision).await {
                        Ok(revision) => Input::Updated(Some(revision)),
                        Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                            Input::Updated(None)
                        }
                        Err(e) => return self.unavailable(&e.to_string()),
                    }
                }
                Step::AskTakeover { node } => {
                    let body = handover::request(&handover::Request {
                        client_id: &job.client_id,
                        clean_start: job.clean_start,
                        username: job.username.as_deref(),
                    });
                    let request = async_nats::Request::new()
                        .payload(body.into())
                        .timeout(Some(self.takeover_timeout));
                    let subject = takeover_subject(&self.prefix, &node);
                    match self.client.send_request(subject, request).await {
                        Ok(reply) => match handover::read_reply(&reply.payload) {
                            Some(handover::Reply::HandedOver(session)) => {
                                moved = session;
                                Input::HandedOver(true)
                            }
                            Some(handover::Reply::NotHeld) => Input::HandedOver(false),
                            Some(handover::Reply::Denied) => Input::Denied,
                            None => {
                                self.stats.bad.fetch_add(1, Ordering::Relaxed);
                                Input::NoAnswer
                            }
                        },
                        Err(_) => Input::NoAnswer,
                    }
                }
                Step::CheckAlive { node } => {
                    match self.nodes.get(handover::key(node.as_bytes())).await {
                        Ok(beat) => Input::Alive(beat.is_some()),
                        Err(e) => return self.unavailable(&e.to_string()),
                    }
                }
                Step::Granted { from, .. } => {
                    if let Some(from) = &from {
                        self.stats.takeovers_in.fetch_add(1, Ordering::Relaxed);
                        debug!(client_id = ?job.client_id, from, "cluster: client id taken over");
                    }
                    if let Some(previous) = previous.filter(|_| moved.is_none()) {
                        // The owner was gone (or this node, restarted): the
                        // session it stored, if any, comes with the id.
                        moved = self.stored_session(&previous, job).await.map(Box::new);
                    }
                    return Claimed::Granted(moved);
                }
                Step::Refused(why) => {
                    self.stats.claims_refused.fetch_add(1, Ordering::Relaxed);
                    return Claimed::Refused(why);
                }
            };
            step = claim.on(input);
        }
    }

    /// The session `node` stored for the claimed id: taken (and its key
    /// removed, unless it is this node's own, which the CONNECT writes
    /// over) when the CONNECT resumes; with Clean Start only removed.
    async fn stored_session(&self, node: &str, job: &ClaimJob) -> Option<(Bytes, SessionState)> {
        let key = handover::session_key(node, &job.client_id);
        let value = self.sessions.get(key.clone()).await.ok()??;
        if node != self.node || job.clean_start {
            let _ = self.sessions.delete(key).await;
        }
        if job.clean_start {
            return None;
        }
        match handover::read_stored(&value) {
            Some((_, id, session)) if id == job.client_id => Some((id, session)),
            _ => {
                self.stats.bad.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Writes (or removes) this node's stored sessions in order, as the
    /// shards report them.
    pub(crate) async fn write_sessions(
        self,
        mut writes: tokio::sync::mpsc::Receiver<SessionWrite>,
    ) {
        let max = self.client.server_info().max_payload.saturating_sub(1024);
        // Writes per client id, for the debug log.
        let mut stored: std::collections::HashMap<Bytes, u64> = std::collections::HashMap::new();
        while let Some(write) = writes.recv().await {
            let result = match write {
                SessionWrite::Put(client_id, state) => {
                    let key = handover::session_key(&self.node, &client_id);
                    let messages = state.messages.len();
                    match handover::stored(&self.node, &client_id, *state, max) {
                        Some((value, dropped)) => {
                            if dropped > 0 {
                                self.stats
                                    .handover_dropped
                                    .fetch_add(dropped as u64, Ordering::Relaxed);
                            }
                            let put = self.sessions.put(key, value.into()).await;
                            if put.is_ok() && tracing::enabled!(tracing::Level::DEBUG) {
                                let n = stored.entry(client_id.clone()).or_insert(0);
                                *n += 1;
                                debug!(client_id = ?client_id, stored = *n, messages, "cluster: session stored");
                            }
                            put.map(drop).map_err(|e| e.to_string())
                        }
                        None => Ok(()),
                    }
                }
                SessionWrite::Gone(client_id) => {
                    stored.remove(&client_id);
                    self.sessions
                        .delete(handover::session_key(&self.node, &client_id))
                        .await
                        .map_err(|e| e.to_string())
                }
                SessionWrite::Flush(done) => {
                    let _ = done.send(());
                    continue;
                }
            };
            match result {
                Ok(()) => self.stats.sessions_stored.fetch_add(1, Ordering::Relaxed),
                Err(e) => {
                    debug!(error = %e, "cluster: session not stored");
                    self.stats.sessions_dropped.fetch_add(1, Ordering::Relaxed)
                }
            };
        }
    }

    /// Watches the other nodes' heartbeats; a node silent for three
    /// heartbeats is dead: the first node to mark it takes its stored
    /// sessions (their wills then come due here, as for a client whose
    /// connection dropped), each claimed over the dead node's directory
    /// entry so a client that already came back elsewhere keeps its own.
    pub(crate) async fn watch_nodes(
        self,
        heartbeat: Duration,
        to_shard: Arc<dyn Fn(ToShard) + Send + Sync>,
    ) {
        use futures_util::StreamExt;
        let me = handover::key(self.node.as_bytes());
        let mut seen: std::collections::HashMap<String, (tokio::time::Instant, u64)> =
            std::collections::HashMap::new();
        let mut watch = match self.nodes.watch_all().await {
            Ok(w) => w,
            Err(e) => {
                warn!(error = %e, "cluster: cannot watch the nodes' heartbeats");
                return;
            }
        };
        let mut tick = tokio::time::interval(heartbeat);
        loop {
            tokio::select! {
                entry = watch.next() => match entry {
                    Some(Ok(e)) if e.key.starts_with('c') && e.key != me => {
                        if e.operation == kv::Operation::Put {
                            seen.insert(e.key, (tokio::time::Instant::now(), e.revision));
                        } else {
                            // Left cleanly: its sessions wait in the bucket.
                            seen.remove(&e.key);
                        }
                    }
                    Some(_) => {}
                    None => return,
                },
                _ = tick.tick() => {
                    let dead: Vec<(String, u64)> = seen
                        .iter()
                        .filter(|(_, (at, _))| at.elapsed() > heartbeat * 3)
                        .map(|(k, (_, rev))| (k.clone(), *rev))
                        .collect();
                    for (node_key, revision) in dead {
                        seen.remove(&node_key);
                        // One node takes a death: the marker is created once.
                        let marker = format!("dead.{node_key}.{revision}");
                        if self.nodes.create(&marker, Bytes::from(self.node.clone())).await.is_ok() {
                            self.take_dead_nodes_sessions(&node_key, &to_shard).await;
                        }
                    }
                }
            }
        }
    }

    /// Takes the sessions a dead node stored (see [`Directory::watch_nodes`]).
    async fn take_dead_nodes_sessions(
        &self,
        node_key: &str,
        to_shard: &Arc<dyn Fn(ToShard) + Send + Sync>,
    ) {
        use futures_util::StreamExt;
        let prefix = format!("{node_key}.");
        let Ok(mut keys) = self.sessions.keys().await else {
            return;
        };
        let mut mine = Vec::new();
        while let Some(Ok(k)) = keys.next().await {
            if k.starts_with(&prefix) {
                mine.push(k);
            }
        }
        let mut taken = 0u64;
        for k in mine {
            let Ok(Some(value)) = self.sessions.get(k.clone()).await else {
                continue;
            };
            let Some((node, client_id, session)) = handover::read_stored(&value) else {
                continue;
            };
            // Still the dead node's in the directory? Then it is ours now.
            let dir_key = handover::key(&client_id);
            let Ok(Some(entry)) = self.clients.entry(dir_key.clone()).await else {
                continue;
            };
            if handover::owner_of(&entry.value).is_none_or(|o| o.node != node) {
                // Someone came back elsewhere and took it (and removes
                // the stored copy as it resumes).
                continue;
            }
            let owner = Owner {
                node: self.node.clone(),
                epoch: self.epoch.fetch_add(1, Ordering::Relaxed) + 1,
            };
            let value = Bytes::from(handover::owner_value(&owner));
            if self
                .clients
                .update(&dir_key, value, entry.revision)
                .await
                .is_err()
            {
                continue;
            }
            let _ = self.sessions.delete(k).await;
            to_shard(ToShard::Adopt(client_id, Box::new(session)));
            taken += 1;
        }
        self.stats
            .sessions_adopted
            .fetch_add(taken, Ordering::Relaxed);
        warn!(node = %node_key, sessions = taken, "cluster: a node is dead (no heartbeat); its sessions are taken here");
    }

    /// JetStream did not answer: the CONNECT is served by this node alone
    /// (availability over exclusivity while NATS is away; counted).
    pub(crate) fn unavailable(&self, error: &str) -> Claimed {
        self.stats.claims_unchecked.fetch_add(1, Ordering::Relaxed);
        debug!(
            error,
            "cluster: directory unavailable; CONNECT served unchecked"
        );
        Claimed::Granted(None)
    }
}

/// Answers one take-over request from another node: asks the shard that
/// owns the id (through `to_shard`) and replies with what it let go.
pub(crate) async fn answer_takeover(
    client: async_nats::Client,
    message: async_nats::Message,
    to_shard: Arc<dyn Fn(ToShard) + Send + Sync>,
    stats: Arc<ClusterStats>,
) {
    let Some(reply_to) = message.reply.clone() else {
        return;
    };
    let Some(request) = handover::read_request(&message.payload) else {
        stats.bad.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    to_shard(ToShard::TakeOver {
        client_id: Bytes::copy_from_slice(request.client_id),
        clean_start: request.clean_start,
        username: request.username.map(Bytes::copy_from_slice),
        reply: tx,
    });
    // A shard always answers; a stopping one drops the sender.
    let released: Released = rx.await.unwrap_or(handover::Reply::NotHeld);
    let max = client.server_info().max_payload.saturating_sub(1024);
    let held = matches!(released, handover::Reply::HandedOver(_));
    let (body, dropped) = match released {
        handover::Reply::HandedOver(Some(moved)) => {
            let (id, session) = *moved;
            handover::reply(Some((&id, session)), max)
        }
        handover::Reply::HandedOver(None) => (vec![1], 0),
        handover::Reply::NotHeld => handover::reply(None, max),
        handover::Reply::Denied => (handover::denied(), 0),
    };
    if dropped > 0 {
        stats
            .handover_dropped
            .fetch_add(dropped as u64, Ordering::Relaxed);
        warn!(
            dropped,
            "cluster: a moving session's queued messages did not fit one NATS message"
        );
    }
    if held {
        stats.takeovers_out.fetch_add(1, Ordering::Relaxed);
    }
    if let Err(e) = client.publish(reply_to, body.into()).await {
        info!(error = %e, "cluster: take-over reply not sent");
    }
}
