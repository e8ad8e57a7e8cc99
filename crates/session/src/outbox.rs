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
use ringmq_codec::{Packet, Publish, Will};

use crate::{CloseCause, Subscription, Tick, Violation};

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

/// One thing to do, in order.
// Built and applied at once on the delivery path; boxing the packet would
// cost an allocation per message.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, PartialEq)]
pub enum Action {
    /// Write this packet to the attached connection.
    Send(Packet),
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
    /// Close the attached connection (after what was sent before).
    Close(CloseCause),
    /// The session has ended: forget it (its routes were dropped first).
    EndSession,
}

/// The reusable output of one session call.
#[derive(Debug, Default)]
pub struct Outbox {
    actions: Vec<Action>,
    /// Deliveries dropped by the calls since the last [`Outbox::take_dropped`]
    /// (queue full, expired, too large for the client, QoS 0 offline).
    dropped: u32,
}

impl Outbox {
    /// An empty outbox.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues a packet for the attached connection.
    pub fn send(&mut self, packet: Packet) {
        self.actions.push(Action::Send(packet));
    }

    /// Queues an effect.
    pub fn push(&mut self, action: Action) {
        self.actions.push(action);
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
        self.actions.is_empty()
    }

    /// Dropped deliveries since last asked; resets the count.
    pub fn take_dropped(&mut self) -> u32 {
        std::mem::take(&mut self.dropped)
    }

    /// The packets queued, in order (for tests and logs).
    pub fn packets(&self) -> impl Iterator<Item = &Packet> {
        self.actions.iter().filter_map(|a| match a {
            Action::Send(p) => Some(p),
            _ => None,
        })
    }

    /// Whether a `Close` is queued.
    pub fn closes(&self) -> Option<CloseCause> {
        self.actions.iter().find_map(|a| match a {
            Action::Close(c) => Some(*c),
            _ => None,
        })
    }
}
