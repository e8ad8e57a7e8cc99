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
            /// Latency histograms (keep-alive lateness, take-over, CONNECT).
            pub(crate) hist: ShardHistograms,
        }

        impl ShardStats {
            pub(crate) fn add_to(&self, total: &mut Stats) {
                $(total.$name += self.$name.load(Ordering::Relaxed);)*
            }
        }

        impl Stats {
            /// Every counter by name, in declaration order (shard counters,
            /// then the broker's own).
            pub fn fields(&self) -> Vec<(&'static str, u64)> {
                vec![
                    $((stringify!($name), self.$name),)*
                    $((stringify!($bname), self.$bname),)*
                ]
            }
        }
    };
}

/// Upper bounds of the histogram buckets, in microseconds (the last
/// bucket, +Inf, is implicit): 100 µs to 10 s.
pub const BUCKET_BOUNDS_US: [u64; 16] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// One shard's histogram: counts per bucket (not cumulative), the sum
/// and the count. Written by the owning shard only.
#[derive(Default, Debug)]
pub(crate) struct ShardHistogram {
    buckets: [AtomicU64; BUCKET_BOUNDS_US.len() + 1],
    sum_us: AtomicU64,
}

impl ShardHistogram {
    /// Records one observation of `us` microseconds.
    pub(crate) fn observe_us(&self, us: u64) {
        let i = BUCKET_BOUNDS_US.partition_point(|&b| b < us);
        ShardStats::inc(&self.buckets[i]);
        ShardStats::add(&self.sum_us, us);
    }

    fn add_to(&self, total: &mut Histogram) {
        for (t, b) in total.buckets.iter_mut().zip(&self.buckets) {
            *t += b.load(Ordering::Relaxed);
        }
        total.sum_us += self.sum_us.load(Ordering::Relaxed);
    }
}

/// A histogram summed over the shards: observations per bucket of
/// [`BUCKET_BOUNDS_US`] (plus one for larger ones), not cumulative.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Histogram {
    /// Observations per bucket; the last is above every bound.
    pub buckets: [u64; BUCKET_BOUNDS_US.len() + 1],
    /// Sum of the observations, in microseconds.
    pub sum_us: u64,
}

impl Histogram {
    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }
}

/// The latency histograms of one shard.
#[derive(Default, Debug)]
pub(crate) struct ShardHistograms {
    /// How long after its deadline each keep-alive close happened.
    pub(crate) keepalive_lateness: ShardHistogram,
    /// A take-over's CONNECT to the old connection closed and the new one
    /// released (its CONNACK written).
    pub(crate) takeover: ShardHistogram,
    /// A CONNECT read to its CONNACK queued (a password check included).
    pub(crate) connect: ShardHistogram,
}

/// The latency histograms, summed over the shards.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Histograms {
    /// How long after its keep-alive deadline each silent client was
    /// closed.
    pub keepalive_lateness: Histogram,
    /// Take-over CONNECT to CONNACK (the old connection closed first).
    pub takeover: Histogram,
    /// CONNECT to CONNACK, a password check included.
    pub connect: Histogram,
}

impl Histograms {
    pub(crate) fn add(&mut self, shard: &ShardStats) {
        shard
            .hist
            .keepalive_lateness
            .add_to(&mut self.keepalive_lateness);
        shard.hist.takeover.add_to(&mut self.takeover);
        shard.hist.connect.add_to(&mut self.connect);
    }
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
        /// --cluster-nats: 1 while connected to NATS.
        cluster_connected,
        /// Publishes forwarded to the other nodes.
        cluster_published,
        /// Publishes from other nodes routed here.
        cluster_received,
        /// Publishes not forwarded (the queue to NATS was full, or NATS
        /// refused them).
        cluster_dropped,
        /// Messages from NATS this node could not read (not its subjects,
        /// a bad body).
        cluster_bad,
        /// 1 while the client-id directory (JetStream) is open.
        cluster_directory,
        /// CONNECTs whose client id was claimed in the directory (an id
        /// already held here needs no claim).
        cluster_claims,
        /// Client ids taken over from another node by a CONNECT here.
        cluster_takeovers_in,
        /// Client ids let go to another node (DISCONNECT 0x8E here).
        cluster_takeovers_out,
        /// CONNECTs refused by the directory (owner busy, races beyond the
        /// bound, claims queued beyond 16,384).
        cluster_claims_refused,
        /// CONNECTs served without the directory (JetStream unreachable).
        cluster_claims_unchecked,
        /// Queued messages left out of sessions moving between nodes (one
        /// NATS message holds a session).
        cluster_handover_dropped,
        /// Writes to the sessions bucket done (a persistent session
        /// connected, subscribed, unsubscribed, left or ended).
        cluster_sessions_stored,
        /// Writes to the sessions bucket not done (queue full, JetStream
        /// error).
        cluster_sessions_dropped,
        /// Sessions of dead nodes taken here.
        cluster_sessions_adopted,
        /// Times NATS dropped messages meant for this node (slow consumer:
        /// the node did not read them fast enough).
        cluster_slow_consumers,
        /// 1 while the cluster's retained stream is open and followed.
        cluster_retained_stream,
        /// Retained messages (clears included) written to the cluster's
        /// retained stream and acknowledged by JetStream.
        cluster_retained_published,
        /// Retained messages (clears included) read from the retained
        /// stream and stored on this node.
        cluster_retained_loaded,
        /// Retained messages not written to the retained stream (queue
        /// full, NATS away, JetStream refused or did not acknowledge); the
        /// node that read them keeps them.
        cluster_retained_failed,
        /// Attempts to open the retained stream or its consumer that failed
        /// (JetStream not enabled or unreachable).
        cluster_stream_errors,
        /// 1 while the message stream (JetStream, --cluster-qos durable)
        /// is open.
        cluster_qos_stream,
        /// QoS 1/2 publishes the message stream stored (their publishers'
        /// PUBACK / PUBREC waited for it).
        cluster_qos_published,
        /// QoS 1/2 publishes meant for the stream that it did not store
        /// (error, timeout): acknowledged anyway, at most once.
        cluster_qos_failed,
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
    /// PUBLISHes the ACL refused, or that went to `$SYS` (not routed, not
    /// retained).
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
    /// Log writes (one per loop turn that made records: group commit).
    store_writes,
    /// Bytes written to the persistence log.
    store_bytes_written,
    /// fdatasync calls on the log (--fsync interval or always).
    store_fsyncs,
    /// Log compactions into a snapshot finished.
    store_compactions,
    /// Bytes in the current log (a gauge: compaction resets it).
    store_log_bytes,
    /// PUBLISHes received at QoS 1 (QoS 0 is what `publishes_in` has
    /// beyond QoS 1 and 2).
    publishes_in_qos1,
    /// PUBLISHes received at QoS 2.
    publishes_in_qos2,
    /// PUBLISHes sent at QoS 1 (QoS 0 is the rest of `publishes_out`).
    publishes_out_qos1,
    /// PUBLISHes sent at QoS 2.
    publishes_out_qos2,
    /// Bytes read from client sockets (TLS and WebSocket framing
    /// included).
    bytes_in,
    /// Bytes the kernel took for client sockets.
    bytes_out,
    /// Connections closed by the client's DISCONNECT.
    disconnects_client,
    /// Connections closed for keep-alive silence.
    disconnects_keepalive,
    /// Connections closed because another one took their client id.
    disconnects_takeover,
    /// Connections closed for a protocol error (bad bytes, broken rules).
    disconnects_protocol,
    /// Connections closed by the network: the peer closed or reset, an
    /// I/O error, no CONNECT in time (`connect_timeouts`), or a limit
    /// (`outbuf_closed`, `write_stall_closed`).
    disconnects_network,
    /// Connections closed because the broker shut down.
    disconnects_shutdown,
    /// Connections closed by an administrator (the admin API).
    disconnects_admin,
    /// MQTT 3.1 clients connected now (gauge).
    clients_v31,
    /// MQTT 3.1.1 clients connected now (gauge).
    clients_v311,
    /// MQTT 5 clients connected now (gauge).
    clients_v5,
    /// Sessions kept for clients that are away (gauge, refreshed by each
    /// shard as it works).
    sessions_absent,
    /// Subscriptions (filter, session pairs) held (gauge).
    subscriptions,
    /// Retained messages stored (gauge).
    retained_messages,
    /// Messages waiting in the shard's inbox from other shards (gauge).
    inbox_depth,
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

    /// Sets a gauge.
    pub(crate) fn set(counter: &AtomicU64, value: u64) {
        counter.store(value, Ordering::Relaxed);
    }

    pub(crate) fn dec(counter: &AtomicU64) {
        counter.store(
            counter.load(Ordering::Relaxed).wrapping_sub(1),
            Ordering::Relaxed,
        );
    }
}
