//! The server limits a session enforces, named so the shard can count
//! each one and log it (rate-limited) when a client runs into it.
//!
//! A limit is not a protocol violation: the client did nothing the
//! standard forbids, the server just will not hold more. Where the
//! protocol has a reason code for it, the session has already used it
//! (SUBACK 0x97, DISCONNECT 0x90); this only says which limit it was.

use std::fmt;

/// A server limit a client ran into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Limit {
    /// `--max-subscriptions`: a SUBSCRIBE filter refused (SUBACK 0x97 in
    /// v5, 0x80 in v3).
    Subscriptions,
    /// `--max-topic-levels`: a filter refused (SUBACK 0x8F / 0x80) or a
    /// PUBLISH topic refused (DISCONNECT 0x90).
    TopicLevels,
    /// `--max-queued-messages`: a QoS 1/2 delivery dropped, the queue full.
    QueuedMessages,
    /// `--max-queued-bytes`: a QoS 1/2 delivery dropped, the session's
    /// stored messages at their byte budget.
    QueuedBytes,
}

impl Limit {
    /// The flag that sets this limit.
    pub fn flag(self) -> &'static str {
        match self {
            Limit::Subscriptions => "--max-subscriptions",
            Limit::TopicLevels => "--max-topic-levels",
            Limit::QueuedMessages => "--max-queued-messages",
            Limit::QueuedBytes => "--max-queued-bytes",
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self {
            Limit::Subscriptions => "too many subscriptions",
            Limit::TopicLevels => "too many topic levels",
            Limit::QueuedMessages => "session queue full (messages)",
            Limit::QueuedBytes => "session queue full (bytes)",
        };
        write!(f, "{what} ({})", self.flag())
    }
}

/// Levels of a topic name or filter (`a/b` has 2). Counted only when the
/// text is long enough to exceed `max`, so the common case costs nothing.
pub fn exceeds_levels(topic: &[u8], max: usize) -> bool {
    topic.len() >= max && topic.iter().filter(|&&b| b == b'/').count() >= max
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_slashes_plus_one() {
        assert!(!exceeds_levels(b"a/b", 2));
        assert!(exceeds_levels(b"a/b/c", 2));
        assert!(!exceeds_levels(b"", 1));
        assert!(exceeds_levels(b"//", 2));
        assert!(!exceeds_levels(b"/", 2));
        assert!(!exceeds_levels(b"aaaa", 2));
        let deep = "a/".repeat(30_000);
        assert!(exceeds_levels(deep.as_bytes(), 128));
        assert!(!exceeds_levels(deep.as_bytes(), 30_001));
    }
}
