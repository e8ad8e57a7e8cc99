//! The plain messages shards send each other over the mesh.
//!
//! Plain data only: the mesh carries them in one FIFO per pair of shards
//! and knows nothing of what they mean.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use ringmq_codec::Publish;
use ringmq_route::{GroupKey, RetainedMessage, RouteChange, ShardId};
use ringmq_session::{SessionId, Tick};

use crate::transport::tls::TlsMaterial;
use crate::transport::Transport;

/// A message for another shard.
#[derive(Debug)]
pub(crate) enum Msg {
    /// A publish to deliver, store as retained, or both.
    Publish(Routed),
    /// The sending shard's subscriber count for a filter changed.
    Route(RouteChange),
    /// Retained messages matching `filter`, for a new subscription of
    /// `session` on shard `reply_to`.
    RetainedQuery {
        filter: Bytes,
        reply_to: ShardId,
        session: SessionId,
    },
    /// The answer to a `RetainedQuery`.
    RetainedReply {
        session: SessionId,
        filter: Bytes,
        messages: Vec<RetainedMessage>,
    },
    /// Take over a socket whose CONNECT names a client id this shard owns;
    /// `read` holds every byte read from it so far, CONNECT first.
    Adopt {
        fd: OwnedFd,
        read: BytesMut,
        peer: SocketAddr,
        /// The TLS / WebSocket state, for a connection that has one.
        transport: Option<Box<Transport>>,
    },
    /// New TLS material (SIGHUP): handshakes from now on use it.
    TlsReload(Arc<TlsMaterial>),
    /// A new password file (SIGHUP): CONNECTs from now on are checked
    /// against it; the cache of successful checks is emptied.
    Passwords(Arc<ringmq_auth::password::PasswordFile>),
    /// New session-policy limits (SIGHUP with --config); the ACL stays.
    Policy(Box<ringmq_session::ServerPolicy>),
    /// An admin API request, answered on its reply channel.
    Admin(Box<super::admin::Request>),
    /// A new ACL (SIGHUP): every session is decided again under it.
    Acl(Arc<ringmq_auth::acl::Acl>),
    /// A verifier thread's verdict on a parked CONNECT.
    AuthDone(Box<crate::auth::Done>),
    /// Stop accepting, disconnect every client, stop the shard.
    Shutdown,
    /// Wills that came due while the broker was down (persistence): publish
    /// them once every channel has been drained.
    StoredWills(Vec<(bytes::Bytes, ringmq_store::WillRecord)>),
    /// --cluster-nats: a publish from another node, to route here (never
    /// back to NATS): to the ordinary subscribers, or (`Some`) to one
    /// member of the shared group NATS chose this node for.
    ClusterPublish(Box<ringmq_codec::Publish>, Option<ringmq_route::GroupKey>),
    /// --cluster-nats: the claim of a parked CONNECT ended (raw link id,
    /// client id, outcome).
    ClusterClaimed(Box<(u64, bytes::Bytes, crate::cluster::Claimed)>),
    /// --cluster-nats: the session of a dead node, taken here.
    ClusterAdopt(Box<(bytes::Bytes, ringmq_store::SessionState)>),
    /// --cluster-nats: another node takes this client id over (client id,
    /// its CONNECT's Clean Start and user name, where to answer).
    ClusterTakeOver(
        Box<(
            bytes::Bytes,
            bool,
            Option<bytes::Bytes>,
            tokio::sync::oneshot::Sender<crate::cluster::Released>,
        )>,
    ),
    /// --cluster-nats: a retained message (empty: a clear) from the
    /// cluster's retained stream, to store here, the topic's owner.
    ClusterRetained(Box<ringmq_codec::Publish>),
    /// --cluster-qos durable: the stream publish of a message read here
    /// ended (token in the shard's cluster holds): release its publisher.
    ClusterStored(u64),
    /// Persistence: the sender has written (to the kernel) what the first
    /// N `Publish` messages from this shard made it record.
    Durable(u64),
}

/// A publish on its way to another shard. `Publish` boxes its properties,
/// so it is small enough for the channel's slots and the receiver routes
/// it as it came, without rebuilding it.
#[derive(Debug)]
pub(crate) struct Routed {
    /// The message (DUP clear, no packet id, RETAIN as published).
    pub(crate) publish: Publish,
    /// When the message expires (v5 Message Expiry Interval).
    pub(crate) expires_at: Option<Tick>,
    /// Deliver to the target's ordinary subscribers.
    pub(crate) deliver: bool,
    /// The target owns this topic's retained slot: store (or clear) it.
    pub(crate) store_retained: bool,
    /// Shared subscriptions the target serves with this message.
    pub(crate) groups: Vec<GroupKey>,
    /// Times a shared-group message was handed on (see routing.rs).
    pub(crate) hops: u8,
}

impl Routed {
    pub(crate) fn new(publish: &Publish, expires_at: Option<Tick>) -> Self {
        Self {
            publish: publish.clone(),
            expires_at,
            deliver: false,
            store_retained: false,
            groups: Vec::new(),
            hops: 0,
        }
    }
}
