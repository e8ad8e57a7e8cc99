//! Per-shard counters, summed on demand into [`Stats`].
//!
//! Each shard writes only its own `ShardStats` (relaxed atomics on its own
//! cache lines, so no contention and no lock); readers sum across shards.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    (
        broker: { $($(#[$bdoc:meta])* $bname:ident,)* }
        $($(#[$doc:meta])* $name:ident,)*
    ) => {
        /// Broker counters summed over every shard (and the few the broker
        /// handle keeps itself, listed under `broker:`).
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct Stats {
            $($(#[$doc])* pub $name: u64,)*
            $($(#[$bdoc])* pub $bname: u64,)*
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
    broker: {
        /// TLS material reloaded (SIGHUP).
        tls_reloads,
        /// TLS reloads that failed (the old material stayed).
        tls_reload_failures,
        /// Password files reloaded (SIGHUP).
        password_reloads,
        /// Password file reloads that failed (the old file stayed).
        password_reload_failures,
        /// ACL files reloaded (SIGHUP).
        acl_reloads,
        /// ACL file reloads that failed (the old rules stayed).
        acl_reload_failures,
    }
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
    /// SUBSCRIBE filters refused by --max-subscriptions.
    subscriptions_refused,
    /// Filters and PUBLISH topics refused by --max-topic-levels.
    topic_levels_refused,
    /// QoS 1/2 deliveries dropped by --max-queued-messages.
    queue_full_dropped,
    /// QoS 1/2 deliveries dropped by --max-queued-bytes.
    queue_bytes_dropped,
    /// Retained messages not stored because --max-retained-bytes was reached.
    retained_bytes_dropped,
    /// Sessions ended at disconnect because --max-sessions absent sessions
    /// were kept already.
    sessions_discarded,
    /// Times a connection stopped being read because its output passed
    /// --max-outbuf-bytes.
    outbuf_paused,
    /// Connections closed because their output passed
    /// --max-outbuf-hard-bytes.
    outbuf_closed,
    /// Connections closed because their socket took nothing for
    /// --write-stall-timeout-ms.
    write_stall_closed,
    /// Connections closed by the kernel's TCP_USER_TIMEOUT (a peer that
    /// stopped acknowledging).
    tcp_user_timeouts,
    /// CONNECTs refused by --max-connect-rate.
    connects_rate_limited,
    /// Connections refused by --max-connections-per-ip.
    connects_per_ip_refused,
    /// Accepted sockets closed at once by --max-pending-connects.
    pending_connects_refused,
    /// CONNECTs refused as a take-over fight (--takeover-limit).
    takeovers_refused,
    /// Times a connection stopped being read because it had too many
    /// retained queries unanswered by other shards.
    retained_query_waits,
    /// Fired session timers (keep-alive, will delay, expiry) that waited
    /// for the --will-rate bucket.
    timers_deferred,
    /// Fired session timers (keep-alive expiries and the closes and wills
    /// they cause, will delays, session expiries) handled more than one
    /// tick after they fell due, because they waited for --will-rate.
    timers_late,
    /// Sum over late timers of how late they were, in milliseconds.
    timer_lateness_ms,
    /// TLS handshakes that failed (not TLS, a refused certificate, a
    /// handshake cut short by the peer).
    tls_handshake_errors,
    /// TLS errors after the handshake (a bad record).
    tls_errors,
    /// TLS sockets closed at accept by --max-tls-handshakes.
    tls_handshakes_refused,
    /// WebSocket upgrade requests refused (wrong path, bad key, no MQTT
    /// subprotocol, not an upgrade).
    ws_upgrade_refused,
    /// WebSocket connections closed for a frame that broke the rules (a
    /// text frame, an unmasked or oversize frame).
    ws_protocol_errors,
    /// CONNECTs whose user name and password were right (cache hits
    /// included).
    auth_ok,
    /// CONNECTs refused for a wrong user name or password (or none).
    auth_failed,
    /// Password checks answered by the shard's cache of recent successes.
    auth_cache_hits,
    /// CONNECTs without a user name refused (--allow-anonymous false).
    anonymous_refused,
    /// CONNECTs refused because too many password checks were queued.
    auth_queue_full,
    /// PUBLISHes the ACL refused (not routed, not retained).
    acl_publish_denied,
    /// SUBSCRIBE filters the ACL refused (SUBACK 0x87 / 0x80).
    acl_subscribe_denied,
    /// Deliveries not made because a deny rule covers the topic (on a
    /// subscription that rule overlaps, retained messages included).
    acl_read_denied,
    /// CONNECTs refused because the ACL does not allow their will.
    acl_will_refused,
    /// Subscriptions removed because the ACL no longer allows them (a
    /// reload, or a session resumed under another username).
    acl_subscriptions_revoked,
    /// CONNECTs refused by --client-id-pattern.
    client_id_refused,
    /// CONNECTs refused by --takeover-same-user-only.
    takeovers_refused_user,
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
