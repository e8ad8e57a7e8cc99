//! What a session asks of the shard: packets to send and effects to carry
//! out, in the order they must happen.
//!
//! The caller owns one `Outbox` and reuses it (its buffer keeps its
//! capacity). It applies the actions in order: a route-add before the
//! SUBACK that announces it, a route before the PUBACK that acknowledges
//! it, the DISCONNECT before the close. Every `Send(Publish)` carries its
//! outbound Topic Alias and has already been checked, alias included,
//! against the peer's Maximum Packet Size, so the shard only encodes it.

use bytes::Bytes;
use ringmq_codec::{
    Packet, PacketType, Properties, PubAck, PubComp, PubRec, PubRel, Publish, ReasonCode, Will,
};

use ringmq_auth::acl::Access;

use crate::{CloseCause, Limit, Subscription, Tick, Violation};

/// The session's timers; the shard keeps at most one wheel entry per kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Timer {
    /// Check the keep-alive of the attached connection.
    KeepAlive,
    /// The Will Delay Interval of a due will has passed.
    WillDelay,
    /// The detached session's expiry has passed.
    SessionExpiry,
}

impl Timer {
    /// Index for a per-kind array of wheel keys.
    pub fn index(self) -> usize {
        match self {
            Timer::KeepAlive => 0,
            Timer::WillDelay => 1,
            Timer::SessionExpiry => 2,
        }
    }
}

/// A QoS acknowledgement with no properties, kept small in the outbox
/// (the codec's packet structs carry a ~400-byte property block).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ack {
    /// PUBACK, PUBREC, PUBREL or PUBCOMP.
    pub kind: PacketType,
    /// The packet identifier acknowledged.
    pub packet_id: u16,
    /// The reason code (v5; v3 writes none).
    pub code: ReasonCode,
}

impl Ack {
    /// The packet to encode.
    pub fn to_packet(self) -> Packet {
        let (packet_id, code, properties) = (self.packet_id, self.code, Properties::default());
        match self.kind {
            PacketType::PubRec => Packet::PubRec(PubRec {
                packet_id,
                code,
                properties,
            }),
            PacketType::PubRel => Packet::PubRel(PubRel {
                packet_id,
                code,
                properties,
            }),
            PacketType::PubComp => Packet::PubComp(PubComp {
                packet_id,
                code,
                properties,
            }),
            _ => Packet::PubAck(PubAck {
                packet_id,
                code,
                properties,
            }),
        }
    }
}

/// One thing to do, in order. Kept small (about the size of a `Publish`):
/// the outbox is filled and drained once per packet and per delivery.
#[derive(Debug, PartialEq)]
pub enum Action {
    /// Write this PUBLISH (already fitted to the client and aliased).
    SendPublish(Publish),
    /// Write the routed message being delivered exactly as it is (QoS 0,
    /// nothing about it changes for this client): no copy of it is made.
    /// Only [`crate::Session::deliver`] queues this.
    Forward,
    /// Write an acknowledgement with no properties.
    SendAck(Ack),
    /// Write PINGRESP.
    SendPingResp,
    /// Write any other packet (boxed: they are rare, and large).
    Send(Box<Packet>),
    /// Route a PUBLISH from this client (topic resolved, connection-only
    /// properties removed).
    Publish(Publish),
    /// Publish this will (it must not be dropped).
    PublishWill(Box<Will>),
    /// Add (or replace) a route for this session's subscription.
    AddRoute {
        /// The filter as subscribed (`$share/...` included).
        filter: Bytes,
        /// The grant.
        grant: Subscription,
    },
    /// Remove the route for one of this session's subscriptions.
    DropRoute {
        /// The filter as subscribed.
        filter: Bytes,
    },
    /// Send the retained messages this new subscription asks for.
    SendRetained {
        /// The filter as subscribed.
        filter: Bytes,
        /// The grant.
        grant: Subscription,
        /// Whether the subscription did not exist before (Retain Handling 1).
        is_new: bool,
    },
    /// Arm (or re-arm) a timer to fire at the tick given.
    ArmTimer(Timer, Tick),
    /// Cancel a timer if armed.
    CancelTimer(Timer),
    /// The client broke a rule (count and log it); a `Close` follows.
    Violation(Violation),
    /// The client ran into a server limit (count it, log it rate-limited).
    LimitHit(Limit),
    /// The ACL refused this access (count it): a PUBLISH not routed, a
    /// SUBSCRIBE filter not granted, a delivery not made.
    Denied(Access),
    /// A subscription the ACL no longer allows (after a reload, or a
    /// resume under another username) was removed; its `DropRoute` is
    /// queued too.
    Revoked,
    /// Close the attached connection (after what was sent before).
    Close(CloseCause),
    /// The session has ended: forget it (its routes were dropped first).
    EndSession,
}

/// The reusable output of one session call.
#[derive(Debug, Default)]
pub struct Outbox {
    actions: Vec<Action>,
    /// Changes to record in the store (persistent sessions only; see
    /// [`crate::Step`]), in the order they were made. Kept apart from the
    /// actions (the store writes a turn's records before anything the
    /// turn sends goes out, so their order against the actions does not
    /// matter) so that an action stays the size of a PUBLISH. Apply them
    /// before the actions: an `EndSession` forgets the session they read.
    steps: Vec<crate::Step>,
    /// Deliveries dropped by the calls since the last [`Outbox::take_dropped`]
    /// (queue full, expired, too large for the client, QoS 0 offline).
    dropped: u32,
}

impl Outbox {
    /// An empty outbox.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues a packet for the attached connection, in its compact form.
    pub fn send(&mut self, packet: Packet) {
        let ack = |kind, packet_id, code, properties: &Properties| {
            properties.is_empty().then_some(Ack {
                kind,
                packet_id,
                code,
            })
        };
        let compact = match &packet {
            Packet::Publish(_) => None,
            Packet::PingResp => Some(Action::SendPingResp),
            Packet::PubAck(a) => {
                ack(PacketType::PubAck, a.packet_id, a.code, &a.properties).map(Action::SendAck)
            }
            Packet::PubRec(a) => {
                ack(PacketType::PubRec, a.packet_id, a.code, &a.properties).map(Action::SendAck)
            }
            Packet::PubRel(a) => {
                ack(PacketType::PubRel, a.packet_id, a.code, &a.properties).map(Action::SendAck)
            }
            Packet::PubComp(a) => {
                ack(PacketType::PubComp, a.packet_id, a.code, &a.properties).map(Action::SendAck)
            }
            _ => None,
        };
        let action = match (compact, packet) {
            (Some(action), _) => action,
            (None, Packet::Publish(p)) => Action::SendPublish(p),
            (None, other) => Action::Send(Box::new(other)),
        };
        self.actions.push(action);
    }

    /// Queues an effect.
    pub fn push(&mut self, action: Action) {
        self.actions.push(action);
    }

    /// Queues a change for the store.
    pub fn store(&mut self, step: crate::Step) {
        self.steps.push(step);
    }

    /// Takes every store step, keeping the buffer for reuse.
    pub fn steps(&mut self) -> std::vec::Drain<'_, crate::Step> {
        self.steps.drain(..)
    }

    /// Counts one dropped delivery.
    pub fn drop_one(&mut self) {
        self.dropped += 1;
    }

    /// Counts `n` dropped deliveries.
    pub(crate) fn drop_many(&mut self, n: u64) {
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        self.dropped = self.dropped.saturating_add(n);
    }

    /// The actions queued so far, in order.
    pub fn actions(&self) -> &[Action] {
        &self.actions
    }

    /// Takes every action, keeping the buffer for reuse.
    pub fn drain(&mut self) -> std::vec::Drain<'_, Action> {
        self.actions.drain(..)
    }

    /// Nothing queued.
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty() && self.steps.is_empty()
    }

    /// Dropped deliveries since last asked; resets the count.
    pub fn take_dropped(&mut self) -> u32 {
        std::mem::take(&mut self.dropped)
    }

    /// The packets queued, in order, as owned packets (for tests and
    /// logs); `forwarded` stands in for [`Action::Forward`].
    pub fn packets(&self, forwarded: Option<&Publish>) -> Vec<Packet> {
        self.actions
            .iter()
            .filter_map(|a| a.packet(forwarded))
            .collect()
    }

    /// Whether a `Close` is queued.
    pub fn closes(&self) -> Option<CloseCause> {
        self.actions.iter().find_map(|a| match a {
            Action::Close(c) => Some(*c),
            _ => None,
        })
    }
}

impl Action {
    /// The packet this action writes, if it writes one (owned; for tests
    /// and logs). `forwarded` is the routed message for `Forward`.
    pub fn packet(&self, forwarded: Option<&Publish>) -> Option<Packet> {
        match self {
            Action::SendPublish(p) => Some(Packet::Publish(p.clone())),
            Action::Forward => forwarded.cloned().map(Packet::Publish),
            Action::SendAck(a) => Some(a.to_packet()),
            Action::SendPingResp => Some(Packet::PingResp),
            Action::Send(p) => Some(Packet::clone(p)),
            _ => None,
        }
    }
}
