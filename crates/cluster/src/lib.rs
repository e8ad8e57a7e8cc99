//! ringmq-cluster: the sans-IO core of clustering over NATS (issue 17).
//!
//! Pure functions and plain data, no NATS client, no I/O: the node's
//! control thread (which runs async-nats) calls them. So far:
//!
//! - [`subject`]: MQTT topic names and filters as NATS subjects, and back.
//!   Every MQTT topic maps to exactly one subject and every subject this
//!   crate makes maps back to its topic; an MQTT filter maps to the one or
//!   two NATS subscriptions that match exactly the topics it matches
//!   (including MQTT's rule that a wildcard at the first level does not
//!   match a `$` topic, and that `a/#` matches `a`). A proptest checks the
//!   mapped matching against `ringmq_topic::matches`. Also the subjects of
//!   the JetStream stream QoS 1/2 publishes cross nodes through.
//! - [`interest`]: a node's subscriptions on NATS, reference-counted over
//!   its shards' MQTT filters, so one NATS subscription serves every local
//!   subscriber of a subject and is dropped with the last one.
//! - [`directory`]: claiming a client id in the cluster's directory (a
//!   key-value bucket with compare-and-set), as a state machine: create,
//!   ask the owner to hand over, take a dead owner's id, settle races by
//!   revision.
//! - [`handover`]: the directory's keys and values, and the take-over
//!   request and reply (the session as the store's records) between nodes.
//! - [`wire`]: a publish as the body of the NATS message that carries it
//!   between nodes (QoS, RETAIN, expiry left, properties, payload).
//! - [`retained`]: which messages read back from the cluster's retained
//!   stream a node stores, and when, so that it follows the stream's
//!   order without going back over its own writes in flight.
//!
//! `--cluster-nats` (src/cluster) wires them all in.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod directory;
pub mod handover;
pub mod interest;
pub mod retained;
pub mod subject;
pub mod wire;
