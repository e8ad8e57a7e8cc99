//! ringmq-store: the sans-IO core of persistence (issue 16): record
//! framing, the events a shard makes durable, replay, snapshots and the
//! restart helpers.
//!
//! Everything here is a pure function over byte buffers and plain data.
//! The crate does no I/O and knows no files, clocks, threads or shards: the
//! caller reads a file into a buffer, asks what it holds, appends encoded
//! records to its own write buffer, and passes wall-clock time in as
//! `*_unix_ms` arguments.
//!
//! # Format
//!
//! A log or snapshot file is a sequence of records, nothing else (no file
//! header). A record is
//!
//! ```text
//! [len: u32 LE][crc: u32 LE][kind: u8][body: len - 1 bytes]
//! ```
//!
//! where `len` counts the kind byte and the body and `crc` is the CRC-32C
//! (Castagnoli) of those same `len` bytes. `len` is at least 1 and at most
//! [`MAX_RECORD`]. The kind byte names an [`Event`] (1 to 15, never 0); the
//! body holds its fields in declaration order: integers little-endian,
//! `bool` as one byte 0 or 1, byte strings as a u32 length and the bytes,
//! `Option<T>` as a flag byte 0 or 1 followed by `T` when 1. A body must be
//! consumed exactly. `SessionPut`, for one, is the client id, the username
//! (an `Option` of a byte string: None for an anonymous client or a broker
//! that keeps no identities), the protocol byte, the expiry, the will and
//! the will delay.
//!
//! Versioning: records carry no version byte; the broker's `CURRENT` file
//! names the format ("ringmq-store 1") and refuses a directory it does not
//! know. A change to a body's layout must come with a new format number
//! and a reader for the old one: a file of one layout is not read
//! correctly by another (an old `SessionPut` without the username would
//! read as corrupt: its protocol byte taken for the username flag). A new
//! kind needs a new format number too: an older reader takes an unknown
//! kind for a corrupt tail and would drop everything after it. (Format 1
//! is the first the broker writes; `WillGone`, 15, is part of it.)
//!
//! A snapshot is the records of [`StoreState::events`]: per session a
//! `SessionPut` (with its username), `SessionLeft`, its subscriptions, its
//! messages (each `MessageQueued`, then `MessageSent` / `MessageReleased`
//! as it stands), its inbound QoS 2 ids; then the retained messages. A log is any
//! sequence of events; [`recover`] applies the snapshot, then the log.
//!
//! # Torn and corrupt tails
//!
//! [`decode_all`] reads records from the start and stops at the first one
//! that is not whole and sound, returning every event before it and
//! `good_len`, the offset of that record: the length to truncate the file
//! to before appending again. How the buffer ended is a [`Tail`]:
//!
//! - [`Tail::Clean`]: the buffer ends exactly after a record.
//! - [`Tail::Torn`]: fewer than 8 header bytes are left, or `len` runs past
//!   the end. This is what a write cut short by a crash leaves (a damaged
//!   `len` pointing past the end looks the same).
//! - [`Tail::Corrupt`]: a `len` of 0 or above [`MAX_RECORD`], a checksum
//!   mismatch, an unknown kind, or a body that does not parse. A
//!   zero-filled region (a preallocated file) reads as `len` 0, corrupt.
//!
//! Either way nothing after the bad record is trusted, even if records
//! after it would decode: the log is append-only, so bytes past a bad
//! record were never acknowledged after it. No input makes decoding panic.
//!
//! # Module map
//!
//! `record` holds the frame, [`Tail`] and the decoders; `event` the
//! [`Event`]s and their bodies; `state` [`StoreState`], its replay rules
//! ([`StoreState::apply`]), snapshots, [`recover`], expiry and
//! redistribution across a changed shard count; `restart` what a broker
//! does with every old shard's files at start ([`restart`]).
#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod event;
mod record;
mod restart;
mod state;
#[cfg(test)]
mod testgen;

pub use event::{BodyError, Event, WillRecord};
pub use record::{
    decode_all, decode_each, encode, Corruption, Decoded, Tail, HEADER_LEN, MAX_RECORD,
};
pub use restart::{restart, Damage, FileKind, Restart, ShardFiles};
pub use state::{
    recover, Expired, Expiry, Recovered, RetainedRecord, SessionState, StoreState, StoredMessage,
};
