//! The plain messages shards send each other over the mesh.
//!
//! Plain data only: the mesh carries them in one FIFO per pair of shards
//! and knows nothing of what they mean.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;

use bytes::Bytes;
use ringmq_codec::{Publish, PublishProperties, QoS};
use ringmq_route::{GroupKey, RetainedMessage, RouteChange, ShardId};
use ringmq_session::{SessionId, Tick};

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
        read: Bytes,
        peer: SocketAddr,
    },
    /// Stop accepting, disconnect every client, stop the shard.
    Shutdown,
}

/// A publish on its way to another shard, kept small for the channel's
/// slots: properties (usually absent) are boxed, as in `Publish`.
#[derive(Debug)]
pub(crate) struct Routed {
    pub(crate) topic: Bytes,
    pub(crate) payload: Bytes,
    pub(crate) properties: PublishProperties,
    pub(crate) qos: QoS,
    /// The RETAIN flag as published (for Retain As Published).
    pub(crate) retain: bool,
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
        let properties = publish.properties.clone();
        Self {
            topic: publish.topic.clone(),
            payload: publish.payload.clone(),
            properties,
            qos: publish.qos,
            retain: publish.retain,
            expires_at,
            deliver: false,
            store_retained: false,
            groups: Vec::new(),
            hops: 0,
        }
    }

    /// The publish again (DUP clear, no packet id).
    pub(crate) fn to_publish(&self) -> Publish {
        Publish {
            dup: false,
            qos: self.qos,
            retain: self.retain,
            topic: self.topic.clone(),
            packet_id: 0,
            properties: self.properties.clone(),
            payload: self.payload.clone(),
        }
    }
}
