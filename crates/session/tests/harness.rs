//! Behaviour tests of ringmq-session, quinn-proto style: a [`Harness`]
//! owns one `Session`, its `ServerPolicy`, the `Outbox` and a clock, feeds
//! it CONNECTs, packets, deliveries, connection ends and ticks, and the
//! tests assert the ordered actions that come out. No sockets, no
//! sleeping, no clock; every test runs in microseconds.
//!
//! - `harness/util.rs`: the harness (timer wheel model, link model, the
//!   checks applied to every packet written) and packet builders.
//! - `harness/connect.rs`: CONNACK, keep-alive, packet-order rules.
//! - `harness/inbound.rs`: PUBLISH from the client, inbound aliases.
//! - `harness/subscribe.rs`: SUBSCRIBE and UNSUBSCRIBE.
//! - `harness/deliver.rs`: deliveries, outbound aliases, Maximum Packet
//!   Size, re-sends on resume.
//! - `harness/will.rs`: will and its delay, session expiry, take-over,
//!   DISCONNECT.
//! - `harness/limits.rs`: server limits (subscriptions, levels, window,
//!   queue bytes, outbound aliases, session expiry).
//! - `harness/props.rs`: property tests against model clients.
//! - `harness/acl.rs`: the ACL at SUBSCRIBE, PUBLISH and delivery,
//!   reauthorization, the CONNECT identity rules.
//! - `harness/keepalive_policy.rs`: `--min-keepalive`, keep-alive 0
//!   allowed or not, beside the maximum and `--server-keepalive`.
//! - `harness/sys.rs`: clients cannot publish into `$SYS`.
//! - `harness/persist.rs`: a session exported to the store's
//!   `SessionState` and imported into a fresh harness behaves as the
//!   original (unit scenarios and a property test).
//!
//! [`Harness`]: util::Harness

#[path = "shared/client_aliases.rs"]
mod client_aliases;
#[path = "harness/util.rs"]
mod util;

#[path = "harness/acl.rs"]
mod acl;
#[path = "harness/connect.rs"]
mod connect;
#[path = "harness/deliver.rs"]
mod deliver;
#[path = "harness/inbound.rs"]
mod inbound;
#[path = "harness/keepalive_policy.rs"]
mod keepalive_policy;
#[path = "harness/limits.rs"]
mod limits;
#[path = "harness/max_packet.rs"]
mod max_packet;
#[path = "harness/persist.rs"]
mod persist;
#[path = "harness/props.rs"]
mod props;
#[path = "harness/subscribe.rs"]
mod subscribe;
#[path = "harness/sys.rs"]
mod sys;
#[path = "harness/will.rs"]
mod will;
