//! ringmq-route: where a message goes, as pure functions over plain data.
//!
//! - [`stable_hash`] / [`owner_shard`]: the fixed FNV-1a hash that places
//!   client ids and retained topics on shards, and [`group_key`], the key of
//!   one shared subscription (share name AND filter, MQTT 5.0 section
//!   4.8.2); [`split_filter`] tells shared filters from ordinary ones;
//! - [`Routes`]: one shard's subscription tables plus its replica of the
//!   other shards' routes. [`Routes::plan`] answers which shards a publish
//!   goes to and which shard serves each matching shared group;
//!   [`Routes::match_local`] answers which local sessions get it (overlap
//!   merging, subscription identifiers, No Local, QoS downgrade) and which
//!   member of each shared group;
//! - [`RetainedStore`]: one shard's partition of the retained messages, in
//!   a topic-level tree that answers wildcard queries without a full scan,
//!   and [`wants_retained`] for the Retain Handling option.
//!
//! This crate never performs I/O, reads a clock (time is a
//! [`ringmq_session::Tick`] parameter), spawns, locks or sends: every call
//! takes plain data and answers plain data the shard acts on. It never
//! panics on peer input and never recurses over topic levels.

#![warn(missing_docs)]

mod key;
mod matches;
mod plan;
mod retained;
mod routes;

pub use key::{group_key, owner_shard, split_filter, stable_hash, FilterKind, GroupKey, ShardId};
pub use matches::{Delivery, Matches};
pub use plan::{Plan, Serve, Target};
pub use retained::{wants_retained, RetainedMessage, RetainedStore, StoreOutcome};
pub use routes::{RouteChange, Routes};
