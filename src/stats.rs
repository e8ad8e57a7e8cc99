//! Per-shard counters, summed on demand into [`Stats`].
//!
//! Each shard writes only its own `ShardStats` (relaxed atomics on its own
//! cache lines, so no contention and no lock); readers sum across shards.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident,)*) => {
        /// Broker counters summed over every shard.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct Stats {
            $($(#[$doc])* pub $name: u64,)*
        }

        /// One shard's counters.
        #[derive(Default, Debug)]
        pub(crate) struct ShardStats {
            $(pub(crate) $name: AtomicU64,)*
        }

        impl ShardStats {
            pub(crate) fn add_to(&self, total: &mut Stats) {
                $(total.$name += self.$name.load(Ordering::Relaxed);)*
            }
        }
    };
}

counters! {
    /// Connections open now (accepted sockets, before and after CONNECT).
    connections,
    /// CONNECTs accepted (CONNACK 0x00 sent).
    connects,
    /// CONNECTs refused with an error CONNACK.
    connects_refused,
    /// Connections closed for keep-alive expiry.
    keepalive_expired,
    /// Connections closed for not sending CONNECT in time.
    connect_timeouts,
    /// Client take-overs (an id connected while already connected).
    takeovers,
    /// Wills published.
    wills_published,
    /// Connections closed for malformed packets or protocol errors.
    protocol_errors,
    /// PUBLISH packets received from clients.
    publishes_in,
    /// PUBLISH packets queued to subscribers.
    publishes_out,
    /// Deliveries dropped because a client's output buffer was full.
    publishes_dropped,
    /// Retained messages not stored because --max-retained was reached.
    retained_dropped,
    /// Sockets handed to the shard that owns their client id.
    handoffs,
    /// Sessions alive (connected or not).
    sessions,
    /// Accepts that failed (out of descriptors, ...); the listener retries.
    accept_errors,
}

impl ShardStats {
    // Only the owning shard writes its counters, so a plain load and store
    // suffice (no locked read-modify-write on the hot path).
    pub(crate) fn inc(counter: &AtomicU64) {
        counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        if n > 0 {
            counter.store(counter.load(Ordering::Relaxed) + n, Ordering::Relaxed);
        }
    }

    pub(crate) fn dec(counter: &AtomicU64) {
        counter.store(
            counter.load(Ordering::Relaxed).wrapping_sub(1),
            Ordering::Relaxed,
        );
    }
}
