//! The per-shard I/O layer underneath the connection core: one io_uring
//! per shard, owned by the broker (`--io-engine ring`). See `ring.rs` for
//! the mechanism and `shard/engine.rs` for the loop that drives it.

pub(crate) mod ring;
