//! ringmq-session: one client's MQTT state machine, sans-IO.
//!
//! [`Session`] is everything the broker keeps about one client id:
//! subscriptions, QoS 1/2 state both ways ([`Outbound`], [`Inbound`]),
//! topic aliases both ways, the peer's limits, keep-alive, the will and
//! its delay, the session expiry. Its inputs take a [`Tick`] and write
//! packets and effects into an [`Outbox`] the caller reuses and applies
//! in order. [`negotiate`] decides what a CONNECT is granted;
//! [`Violation`] names every rule a client can break after CONNECT and
//! maps it to a v5 reason code in one place.
//!
//! It never reads a socket or a clock and never decides where a message
//! goes. It depends only on ringmq-codec, ringmq-topic, ringmq-auth (the
//! ACL decisions it applies, [`authorize`] for a CONNECT) and ringmq-store
//! (`Session::export` / `Session::import` to and from a stored session,
//! and the [`Step`]s a persistent session journals, for persistence).

#![warn(missing_docs)]

mod aliases;
mod connect;
mod ids;
mod inbound;
mod journal;
mod keepalive;
mod limit;
mod outbound;
mod outbox;
mod persist;
mod rights;
mod session;
mod violation;
mod will;

pub use connect::{
    authorize, negotiate, ConnectRefusal, Denial, KeepAliveSource, Negotiated, ServerPolicy,
    MAX_ASSIGNED_ID_LEN, V3_IDENTIFIER_REJECTED, V3_NOT_AUTHORIZED, V3_UNACCEPTABLE_PROTOCOL,
};
pub use ids::{SessionId, Tick};
pub use inbound::{Inbound, InboundAction};
pub use journal::Step;
pub use keepalive::keepalive_timeout_ms;
pub use limit::{exceeds_levels, Limit};
pub use outbound::{DropReason, Offer, Outbound, OutboundConfig, OutboundEntry, QosError};
pub use outbox::{Action, Outbox, Timer};
pub use persist::{
    decode_properties, encode_message_properties, encode_properties, options_byte,
    options_from_byte, protocol_byte, protocol_from_byte, ImportError, WallClock,
};
pub use session::{owned, owned_properties, refuse_connect, Delivery, Session, Subscription};
pub use violation::Violation;
pub use will::{will_due_on_close, CloseCause};
