//! What every shard shares with the broker handle (read-only, or atomic).

use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::msg::Msg;
use crate::config::Config;
use crate::mesh::Mesh;
use crate::stats::ShardStats;

/// Shared by every shard and the broker handle.
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) shards: usize,
    pub(crate) mesh: Arc<Mesh<Msg>>,
    pub(crate) stats: Vec<Arc<ShardStats>>,
    /// Connections open over all shards, for `--max-connections`.
    pub(crate) open_connections: AtomicUsize,
    /// The one epoch of every shard's clock (ticks travel between shards).
    pub(crate) epoch: Instant,
    /// Ticks as Unix time (fixed at start): for what outlives this process
    /// or leaves this node (persistence, sessions moving between nodes).
    pub(crate) wall: ringmq_session::WallClock,
    /// Connections per peer address, for `--max-connections-per-ip`.
    pub(crate) per_ip: PerIp,
    /// TLS reloads done and failed (written by the broker handle).
    pub(crate) tls_reloads: AtomicU64,
    pub(crate) tls_reload_failures: AtomicU64,
    /// Password file reloads done and failed.
    pub(crate) password_reloads: AtomicU64,
    pub(crate) password_reload_failures: AtomicU64,
    /// ACL file reloads done and failed.
    pub(crate) acl_reloads: AtomicU64,
    pub(crate) acl_reload_failures: AtomicU64,
    /// --cluster-nats: the way to the node's control thread.
    pub(crate) cluster: Option<crate::cluster::ClusterLink>,
}

impl Shared {
    /// The counters summed over every shard, and the broker's own.
    pub(crate) fn stats(&self) -> crate::stats::Stats {
        let mut total = crate::stats::Stats::default();
        for s in &self.stats {
            s.add_to(&mut total);
        }
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        total.tls_reloads = load(&self.tls_reloads);
        total.tls_reload_failures = load(&self.tls_reload_failures);
        total.password_reloads = load(&self.password_reloads);
        total.password_reload_failures = load(&self.password_reload_failures);
        total.acl_reloads = load(&self.acl_reloads);
        total.acl_reload_failures = load(&self.acl_reload_failures);
        if let Some(c) = &self.cluster {
            total.cluster_connected = load(&c.stats.connected);
            total.cluster_published = load(&c.stats.published);
            total.cluster_received = load(&c.stats.received);
            total.cluster_dropped = load(&c.stats.dropped);
            total.cluster_bad = load(&c.stats.bad);
            total.cluster_directory = load(&c.stats.directory);
            total.cluster_claims = load(&c.stats.claims);
            total.cluster_takeovers_in = load(&c.stats.takeovers_in);
            total.cluster_takeovers_out = load(&c.stats.takeovers_out);
            total.cluster_claims_refused = load(&c.stats.claims_refused);
            total.cluster_claims_unchecked = load(&c.stats.claims_unchecked);
            total.cluster_handover_dropped = load(&c.stats.handover_dropped);
            total.cluster_sessions_stored = load(&c.stats.sessions_stored);
            total.cluster_sessions_dropped = load(&c.stats.sessions_dropped);
            total.cluster_sessions_adopted = load(&c.stats.sessions_adopted);
            total.cluster_slow_consumers = load(&c.stats.slow_consumers);
            total.cluster_retained_stream = load(&c.stats.retained_stream);
            total.cluster_retained_published = load(&c.stats.retained_published);
            total.cluster_retained_loaded = load(&c.stats.retained_loaded);
            total.cluster_retained_failed = load(&c.stats.retained_failed);
            total.cluster_stream_errors = load(&c.stats.stream_errors);
            total.cluster_qos_stream = load(&c.stats.qos_stream);
            total.cluster_qos_published = load(&c.stats.qos_published);
            total.cluster_qos_failed = load(&c.stats.qos_failed);
        }
        total
    }

    /// The latency histograms summed over every shard.
    pub(crate) fn histograms(&self) -> crate::stats::Histograms {
        let mut total = crate::stats::Histograms::default();
        for s in &self.stats {
            total.add(s);
        }
        total
    }
}

/// Open connections per IP address over all shards, in a fixed table of
/// atomic counters indexed by a hash of the address: no lock, no
/// allocation per address, 256 KiB in all. Two addresses that share a
/// counter share their limit (with 65,536 counters that is rare, and it
/// can only refuse early, never let more through).
pub(crate) struct PerIp {
    counts: Box<[AtomicU32]>,
    /// One hasher for every shard, so an address always lands on one slot.
    hasher: hashbrown::DefaultHashBuilder,
}

const PER_IP_SLOTS: usize = 1 << 16;

impl Default for PerIp {
    fn default() -> Self {
        Self {
            counts: (0..PER_IP_SLOTS).map(|_| AtomicU32::new(0)).collect(),
            hasher: Default::default(),
        }
    }
}

impl PerIp {
    fn slot(&self, ip: IpAddr) -> &AtomicU32 {
        // An IPv4 address and its IPv6-mapped form are one peer.
        let ip = match ip {
            IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            IpAddr::V6(v6) => v6,
        };
        let h = self.hasher.hash_one(ip);
        &self.counts[h as usize % PER_IP_SLOTS]
    }

    /// Counts a new connection from `ip`; false (and not counted) when
    /// `ip` already has `max` open.
    pub(crate) fn admit(&self, ip: IpAddr, max: u32) -> bool {
        let slot = self.slot(ip);
        if slot.fetch_add(1, Ordering::Relaxed) >= max {
            slot.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// A connection from `ip` has closed.
    pub(crate) fn release(&self, ip: IpAddr) {
        let slot = self.slot(ip);
        let _ = slot.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_ip_admits_up_to_the_limit_and_releases() {
        let per_ip = PerIp::default();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(per_ip.admit(a, 2) && per_ip.admit(a, 2));
        assert!(!per_ip.admit(a, 2));
        assert!(per_ip.admit(b, 2), "another address has its own count");
        per_ip.release(a);
        assert!(per_ip.admit(a, 2));
        // Never below zero.
        for _ in 0..5 {
            per_ip.release(b);
        }
        assert!(per_ip.admit(b, 1));
    }
}
