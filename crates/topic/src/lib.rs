//! ringmq-topic: MQTT topic names and filters (MQTT 5.0 section 4.7),
//! shared subscription filters (section 4.8.2) and the subscription trie.
//!
//! - [`validate_topic_name`] and [`validate_topic_filter`] apply the
//!   syntax rules and name the violated conformance statement in
//!   [`TopicError`];
//! - [`matches()`] is the plain one-filter, one-topic matcher;
//! - [`parse_shared`] splits `$share/{group}/{filter}`;
//! - [`Trie`] maps filters to subscribers and finds every subscriber whose
//!   filter matches a topic without allocating.
//!
//! This crate knows nothing of sessions, sockets or shards, performs no
//! I/O, and never panics on peer input.

#![warn(missing_docs)]

mod error;
mod share;
mod trie;
mod validate;

pub use error::TopicError;
pub use share::{parse_shared, SharedFilter, SHARE_PREFIX};
pub use trie::Trie;
pub use validate::{
    is_wildcard, matches, validate_topic_filter, validate_topic_name, MAX_TOPIC_LEN,
};
