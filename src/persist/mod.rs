//! Persistence (issue 16): each shard's append-only log and snapshots.
//!
//! Owns the files and when bytes reach them; what the records mean is
//! ringmq-store's (framing, events, replay) and what changed is the
//! session's (`ringmq_session::Step`). `startup.rs` runs once before the
//! shards start: it locks the directory, recovers every old shard's
//! files, and writes a fresh epoch for the new shard count. `Journal` is
//! one shard's writer after that.
//!
//! # Layout
//!
//! ```text
//! DIR/lock                 flock'ed while a broker runs
//! DIR/CURRENT              "ringmq-store 1\nepoch E\nshards S\n" (atomic rename)
//! DIR/shard-N/snapshot-E-K  the state at the start of log-E-K
//! DIR/shard-N/log-E-K       the events since
//! ```
//!
//! Every start writes epoch E+1 (a snapshot per new shard, empty logs) and
//! switches CURRENT to it; the files of other epochs are then deleted. In
//! a run a shard compacts by writing snapshot-E-(K+1) beside a new
//! log-E-(K+1); the rename of the snapshot is the switch. Recovery takes,
//! per shard of the current epoch, the highest K whose snapshot exists.
//!
//! # Group commit
//!
//! The records a loop turn makes collect in one buffer. [`Journal::commit`]
//! writes them with one `write` before the turn's socket output is flushed
//! (the engine calls it at the top of `flush_dirty`), so no PUBACK, PUBREC,
//! SUBACK or CONNACK leaves before the records it depends on are in the
//! kernel: kill -9 loses nothing acknowledged. `--fsync always` adds an
//! `fdatasync` in the same place (power loss loses nothing acknowledged);
//! `interval` syncs at most every `--fsync-interval-ms`; `never` leaves
//! write-back to the kernel. A write that fails stops the broker (logged):
//! acknowledging what cannot be kept would break the guarantee.
//!
//! # Compaction
//!
//! Once the log passes `--compact-log-bytes` (and the last snapshot's
//! size), the shard starts a new log and snapshot beside the current pair
//! and keeps writing every event to the current log, so a crash during
//! compaction recovers from the old pair. The snapshot is filled a few
//! sessions per loop turn (`Compaction::budget`); an event about a session
//! not yet in it first copies the session in, as it stands after the
//! change, and is not written to the new log (copy on write). So the new
//! snapshot plus the new log replay to exactly the live state. When every
//! session is in, the snapshot and new log are synced, the snapshot is
//! renamed into place, and the old pair is deleted.

mod journal;
mod startup;

pub(crate) use journal::Journal;
pub(crate) use startup::{open, unix_ms, Settings};

/// `--fsync`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fsync {
    /// Never fdatasync: survives kill -9, not a power loss.
    Never,
    /// fdatasync at most every --fsync-interval-ms.
    Interval,
    /// fdatasync before every turn's acknowledgements.
    Always,
}

/// The current epoch's marker file.
const CURRENT: &str = "CURRENT";
/// Its first line: the format.
const MAGIC: &str = "ringmq-store 1";

fn snapshot_name(epoch: u64, gen: u64) -> String {
    format!("snapshot-{epoch}-{gen}")
}

fn log_name(epoch: u64, gen: u64) -> String {
    format!("log-{epoch}-{gen}")
}

fn shard_dir(dir: &std::path::Path, shard: usize) -> std::path::PathBuf {
    dir.join(format!("shard-{shard}"))
}

/// `name` as `prefix-E-K`.
fn parse_name(name: &str, prefix: &str) -> Option<(u64, u64)> {
    let rest = name.strip_prefix(prefix)?.strip_prefix('-')?;
    let (e, k) = rest.split_once('-')?;
    Some((e.parse().ok()?, k.parse().ok()?))
}

/// fsyncs a directory, so a rename or create in it is durable.
fn sync_dir(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_round_trip() {
        assert_eq!(parse_name(&snapshot_name(3, 17), "snapshot"), Some((3, 17)));
        assert_eq!(parse_name(&log_name(0, 0), "log"), Some((0, 0)));
        assert_eq!(parse_name("snapshot-3-17.tmp", "snapshot"), None);
        assert_eq!(parse_name("log-x-1", "log"), None);
        assert_eq!(parse_name("logs-1-1", "log"), None);
    }
}
