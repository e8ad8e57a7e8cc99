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
//!
//! A node asks the owner to let the id go on `{P}.n.{node}.takeover`
//! (request/reply; the body is `ringmq_cluster::handover`'s). The owner's
//! shard sends DISCONNECT 0x8E, closes, ends the session there and replies
//! with what lives on, which the claiming shard imports before it answers
//! the CONNECT.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
    /// The CONNECT's Clean Start, told to the owner.
    pub(crate) clean_start: bool,
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

/// What a shard answers to a take-over another node asked for: `None` when
/// it does not hold the id; otherwise the session that lives on, if any.
pub(crate) type Released = Option<Option<(Bytes, SessionState)>>;

/// The directory's handles, shared by the control thread's tasks.
#[derive(Clone)]
pub(crate) struct Directory {
    pub(crate) client: async_nats::Client,
    pub(crate) clients: kv::Store,
    pub(crate) nodes: kv::Store,
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
        Ok(Directory {
            client,
            clients,
            nodes,
            prefix: prefix.to_string(),
            node: node.to_string(),
            epoch: Arc::new(AtomicU64::new(0)),
            takeover_timeout: heartbeat * 2,
            stats,
        })
    }

    /// Puts this node's heartbeat every `interval`, until the task is
    /// dropped.
    pub(crate) async fn heartbeat(self, interval: Duration, alive: Arc<AtomicBool>) {
        let key = handover::key(self.node.as_bytes());
        let mut tick = tokio::time::interval(interval);
        loop {
            tick.tick().await;
            match self.nodes.put(&key, Bytes::from_static(b"1")).await {
                Ok(_) => alive.store(true, Ordering::Relaxed),
                Err(e) => {
                    alive.store(false, Ordering::Relaxed);
                    debug!(error = %e, "cluster: heartbeat not written");
                }
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
        loop {
            let input = match step {
                Step::Get => match self.clients.entry(key.clone()).await {
                    Ok(Some(e)) if e.operation == kv::Operation::Put => {
                        // A value no node wrote counts as no owner, written
                        // over its revision.
                        match handover::owner_of(&e.value) {
                            Some(owner) => Input::Got(Some((owner, e.revision))),
                            None => Input::Got(Some((
                                Owner {
                                    node: self.node.clone(),
                                    epoch: 0,
                                },
                                e.revision,
                            ))),
                        }
                    }
                    Ok(_) => Input::Got(None),
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
                    let request = async_nats::Request::new()
                        .payload(handover::request(&job.client_id, job.clean_start).into())
                        .timeout(Some(self.takeover_timeout));
                    let subject = takeover_subject(&self.prefix, &node);
                    match self.client.send_request(subject, request).await {
                        Ok(reply) => match handover::read_reply(&reply.payload) {
                            Some((held, session)) => {
                                moved = session;
                                Input::HandedOver(held)
                            }
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
                    if let Some(from) = from {
                        self.stats.takeovers_in.fetch_add(1, Ordering::Relaxed);
                        debug!(client_id = ?job.client_id, from, "cluster: client id taken over");
                    }
                    return Claimed::Granted(moved.map(Box::new));
                }
                Step::Refused(why) => {
                    self.stats.claims_refused.fetch_add(1, Ordering::Relaxed);
                    return Claimed::Refused(why);
                }
            };
            step = claim.on(input);
        }
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
    let Some((client_id, clean_start)) = handover::read_request(&message.payload) else {
        stats.bad.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    to_shard(ToShard::TakeOver {
        client_id: Bytes::copy_from_slice(client_id),
        clean_start,
        reply: tx,
    });
    // A shard always answers; a stopping one drops the sender.
    let released: Released = rx.await.unwrap_or(None);
    let max = client.server_info().max_payload.saturating_sub(1024);
    let held = released.as_ref().map(|_| ());
    let (body, dropped) = match released {
        Some(Some((id, session))) => handover::reply(Some((&id, session)), max),
        Some(None) => (vec![1], 0),
        None => handover::reply(None, max),
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
    if held.is_some() {
        stats.takeovers_out.fetch_add(1, Ordering::Relaxed);
    }
    if let Err(e) = client.publish(reply_to, body.into()).await {
        info!(error = %e, "cluster: take-over reply not sent");
    }
}
