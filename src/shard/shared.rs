//! What every shard shares with the broker handle (read-only, or atomic).

use std::sync::atomic::AtomicUsize;
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
}
