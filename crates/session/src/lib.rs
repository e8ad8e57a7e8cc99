//! ringmq-session: the sans-IO MQTT state of one client.
//!
//! Owns the protocol decisions the broker makes about one client: CONNECT
//! negotiation (keep-alive, session expiry, client identifier rules),
//! keep-alive deadline arithmetic, the subscription set with its SUBACK and
//! UNSUBACK reason codes, and when a Last Will is due.
//!
//! It never reads a socket or a clock: time comes in as milliseconds or
//! ticks chosen by the caller, and every answer is a plain value the shard
//! acts on. It depends only on ringmq-codec and ringmq-topic.

#![warn(missing_docs)]

mod connect;
mod inbound;
mod keepalive;
mod outbound;
mod session;
mod will;

pub use connect::{
    negotiate, ConnectRefusal, Negotiated, ServerPolicy, V3_IDENTIFIER_REJECTED,
    V3_UNACCEPTABLE_PROTOCOL,
};
pub use inbound::{Inbound, InboundAction};
pub use keepalive::{keepalive_timeout_ms, ms_to_ticks_ceil, KeepAliveClock};
pub use outbound::{DropReason, Offer, Outbound, OutboundConfig, QosError};
pub use session::{Session, SubscribeOutcome, Subscription, UnsubscribeOutcome};
pub use will::{will_due_on_close, CloseCause};
