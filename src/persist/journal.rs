//! One shard's writer: the turn's buffer, the log file, fsync, and the
//! copy-on-write compaction described in `persist/mod.rs`.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hashbrown::HashSet;
use ringmq_session::{Session, Step};
use ringmq_store::{encode, Event, StoreState};
use tracing::{error, info};

use super::startup::Settings;
use super::{log_name, snapshot_name, sync_dir, Fsync};
use crate::stats::ShardStats;

/// Sessions copied into a compaction's snapshot per loop turn, at most.
const COMPACT_SESSIONS_PER_TURN: usize = 512;
/// Time a loop turn gives a compaction, at most (checked after each
/// session).
const COMPACT_BUDGET: Duration = Duration::from_micros(500);

/// A shard's store writer.
pub(crate) struct Journal {
    shard: usize,
    dir: PathBuf,
    epoch: u64,
    gen: u64,
    log: File,
    log_len: u64,
    /// Size of the snapshot the current log starts from.
    snapshot_len: u64,
    /// This turn's records, written by `commit`.
    buf: Vec<u8>,
    settings: Settings,
    /// Written since the last fdatasync.
    unsynced: bool,
    last_sync: Instant,
    /// Commits that wrote records, counted: the output of a turn needs
    /// the count its commit reached to be synced (`--fsync always`).
    written_epoch: u64,
    /// Every record of commits up to this count is synced.
    synced_epoch: u64,
    /// The commit count an fdatasync in the shard's ring covers.
    sync_in_flight: Option<u64>,
    compaction: Option<Compaction>,
    /// The session copied into the new snapshot while the current outbox
    /// is applied: the rest of its steps are in that copy already.
    exported_now: Option<Bytes>,
}

/// A compaction in progress: the next pair, filled while the current one
/// stays the one recovery reads.
struct Compaction {
    log: File,
    log_len: u64,
    buf: Vec<u8>,
    snapshot: File,
    snapshot_len: u64,
    snapshot_buf: Vec<u8>,
    /// Client ids still to copy in.
    pending: Vec<Bytes>,
    /// Client ids copied in (or ended) since it started.
    done: HashSet<Bytes>,
    started: Instant,
}

/// Stops the broker: a record that cannot be written must not be
/// acknowledged, and the state in memory is ahead of the disk.
fn fatal(what: &str, path: &std::path::Path, e: std::io::Error) -> ! {
    error!(
        path = %path.display(),
        error = %e,
        "persistence: {what} failed; stopping the broker so that nothing unsaved is \
         acknowledged (restart it once the disk is fixed: it recovers what was written)"
    );
    std::process::exit(74);
}

impl Journal {
    pub(super) fn new(
        shard: usize,
        dir: PathBuf,
        epoch: u64,
        gen: u64,
        log: File,
        snapshot_len: u64,
        settings: Settings,
    ) -> Journal {
        Journal {
            shard,
            dir,
            epoch,
            gen,
            log,
            log_len: 0,
            snapshot_len,
            buf: Vec::with_capacity(64 * 1024),
            settings,
            unsynced: false,
            last_sync: Instant::now(),
            written_epoch: 0,
            synced_epoch: 0,
            sync_in_flight: None,
            compaction: None,
            exported_now: None,
        }
    }

    /// The wall clock records are written under.
    pub(crate) fn clock(&self) -> &ringmq_session::WallClock {
        &self.settings.clock
    }

    /// A new outbox is about to be applied.
    pub(crate) fn begin_outbox(&mut self) {
        self.exported_now = None;
    }

    /// Records `step` of `session` (as the call that made it left the
    /// session).
    pub(crate) fn record(&mut self, session: &Session, step: Step) {
        let clock = self.settings.clock;
        let Some(c) = self.compaction.as_mut() else {
            let buf = &mut self.buf;
            session.store_events(step, &clock, |e| encode(&e, buf));
            return;
        };
        let id = session.client_id();
        let to_new_log = if self.exported_now.as_ref() == Some(id) {
            false
        } else if !c.done.contains(id) {
            c.done.insert(id.clone());
            if matches!(step, Step::Gone) {
                // Nothing to copy: the new log says it is gone.
                true
            } else {
                // Copied in as it is now, this step included.
                c.export(session, &clock);
                self.exported_now = Some(id.clone());
                false
            }
        } else {
            true
        };
        let (buf, new) = (&mut self.buf, &mut c.buf);
        session.store_events(step, &clock, |e| {
            encode(&e, buf);
            if to_new_log {
                encode(&e, new);
            }
        });
    }

    /// Records a change that belongs to no session (retained messages).
    pub(crate) fn record_event(&mut self, event: &Event) {
        encode(event, &mut self.buf);
        if let Some(c) = self.compaction.as_mut() {
            encode(event, &mut c.buf);
        }
    }

    /// Writes the turn's records (and syncs them as `--fsync` says).
    /// Called before the turn's output is flushed.
    pub(crate) fn commit(&mut self, stats: &ShardStats) {
        if !self.buf.is_empty() {
            let path = self.dir.join(log_name(self.epoch, self.gen));
            if let Err(e) = self.log.write_all(&self.buf) {
                fatal("writing the log", &path, e);
            }
            ShardStats::inc(&stats.store_writes);
            ShardStats::add(&stats.store_bytes_written, self.buf.len() as u64);
            self.log_len += self.buf.len() as u64;
            self.buf.clear();
            self.unsynced = true;
            self.written_epoch += 1;
        }
        if let Some(c) = self.compaction.as_mut() {
            c.write(&self.dir, self.epoch, self.gen + 1);
        }
        // Syncs go through the shard's ring (`take_sync`): the shard runs
        // on while the disk works; under `always` the turn's output waits
        // for it (`unsynced_epoch`).
        stats
            .store_log_bytes
            .store(self.log_len, std::sync::atomic::Ordering::Relaxed);
    }

    fn sync(&mut self, stats: &ShardStats) {
        if let Err(e) = self.log.sync_data() {
            let path = self.dir.join(log_name(self.epoch, self.gen));
            fatal("fdatasync of the log", &path, e);
        }
        ShardStats::inc(&stats.store_fsyncs);
        self.unsynced = false;
        self.last_sync = Instant::now();
        self.synced_epoch = self.written_epoch;
    }

    /// `--fsync always` with written records not yet synced: the commit
    /// count the output flushed now must wait for.
    pub(crate) fn unsynced_epoch(&self) -> Option<u64> {
        (self.settings.fsync == Fsync::Always && self.written_epoch > self.synced_epoch)
            .then_some(self.written_epoch)
    }

    /// With `--fsync interval` and records not yet synced: how long until
    /// they must be (the loop's sleep is no longer).
    pub(crate) fn sync_due_in(&self) -> Option<Duration> {
        (self.settings.fsync == Fsync::Interval && self.unsynced && self.sync_in_flight.is_none())
            .then(|| {
                Duration::from_millis(self.settings.fsync_interval_ms)
                    .saturating_sub(self.last_sync.elapsed())
            })
    }

    /// The log's descriptor when an fdatasync is due: under `always` as
    /// soon as records are unsynced and none is in flight, under
    /// `interval` once the interval passed. The engine submits it to the
    /// shard's ring and reports the completion to [`Journal::synced`];
    /// everything written so far is covered by it.
    pub(crate) fn take_sync(&mut self) -> Option<std::os::fd::RawFd> {
        let due = match self.settings.fsync {
            Fsync::Never => false,
            Fsync::Always => true,
            Fsync::Interval => {
                self.last_sync.elapsed() >= Duration::from_millis(self.settings.fsync_interval_ms)
            }
        };
        if !due || !self.unsynced || self.sync_in_flight.is_some() {
            return None;
        }
        self.sync_in_flight = Some(self.written_epoch);
        self.unsynced = false;
        self.last_sync = Instant::now();
        Some(std::os::fd::AsRawFd::as_raw_fd(&self.log))
    }

    /// The ring's fdatasync completed with `result` (0, or -errno).
    /// Answers the commit count now synced.
    pub(crate) fn synced(&mut self, result: i32, stats: &ShardStats) -> u64 {
        if let Some(epoch) = self.sync_in_flight.take() {
            self.synced_epoch = self.synced_epoch.max(epoch);
        }
        if result < 0 {
            let path = self.dir.join(log_name(self.epoch, self.gen));
            fatal(
                "fdatasync of the log",
                &path,
                std::io::Error::from_raw_os_error(-result),
            );
        }
        ShardStats::inc(&stats.store_fsyncs);
        self.synced_epoch
    }

    /// The broker is stopping: write and sync what is left.
    pub(crate) fn close(&mut self, stats: &ShardStats) {
        self.commit(stats);
        if self.unsynced {
            self.sync(stats);
        }
    }

    /// Whether a compaction should start: the log outgrew its limit and
    /// the snapshot it started from.
    pub(crate) fn wants_compaction(&self) -> bool {
        self.compaction.is_none()
            && self.log_len > self.settings.compact_log_bytes.max(self.snapshot_len)
    }

    pub(crate) fn compacting(&self) -> bool {
        self.compaction.is_some()
    }

    /// Starts a compaction: `sessions` are the client ids of every
    /// journaling session, `retained` the shard's retained messages (copied
    /// in now, whole).
    pub(crate) fn start_compaction(
        &mut self,
        sessions: Vec<Bytes>,
        retained: impl Iterator<Item = Event>,
    ) {
        let gen = self.gen + 1;
        let log_path = self.dir.join(log_name(self.epoch, gen));
        let snapshot_path = self
            .dir
            .join(format!("{}.tmp", snapshot_name(self.epoch, gen)));
        let open = |path: &PathBuf| {
            OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .open(path)
                .unwrap_or_else(|e| fatal("creating a compaction file", path, e))
        };
        let mut snapshot_buf = Vec::with_capacity(256 * 1024);
        for event in retained {
            encode(&event, &mut snapshot_buf);
        }
        info!(
            shard = self.shard,
            log_bytes = self.log_len,
            sessions = sessions.len(),
            "persistence: compaction started"
        );
        self.compaction = Some(Compaction {
            log: open(&log_path),
            log_len: 0,
            buf: Vec::new(),
            snapshot: open(&snapshot_path),
            snapshot_len: 0,
            snapshot_buf,
            pending: sessions,
            done: HashSet::new(),
            started: Instant::now(),
        });
        self.exported_now = None;
    }

    /// Copies sessions into the compaction's snapshot for at most this
    /// turn's budget; `session` finds a live session by client id. True
    /// once every session is in (then call `finish_compaction`).
    pub(crate) fn compact_step<'a>(
        &mut self,
        mut session: impl FnMut(&[u8]) -> Option<&'a Session>,
    ) -> bool {
        let clock = self.settings.clock;
        let Some(c) = self.compaction.as_mut() else {
            return false;
        };
        let started = Instant::now();
        for _ in 0..COMPACT_SESSIONS_PER_TURN {
            let Some(id) = c.pending.pop() else {
                return true;
            };
            if c.done.contains(&id) {
                continue;
            }
            if let Some(s) = session(&id).filter(|s| s.journals()) {
                c.export(s, &clock);
            }
            c.done.insert(id);
            // A clock read is nothing beside a session's copy: checked
            // after each, so a step overruns the budget by one session at
            // most (about 0.4 us per message it holds).
            if started.elapsed() >= COMPACT_BUDGET {
                break;
            }
        }
        c.pending.is_empty()
    }

    /// Every session is in the new snapshot: make the new pair current.
    pub(crate) fn finish_compaction(&mut self, stats: &ShardStats) {
        let Some(mut c) = self.compaction.take() else {
            return;
        };
        let gen = self.gen + 1;
        c.write(&self.dir, self.epoch, gen);
        let tmp = self
            .dir
            .join(format!("{}.tmp", snapshot_name(self.epoch, gen)));
        let snapshot_path = self.dir.join(snapshot_name(self.epoch, gen));
        let new_log = self.dir.join(log_name(self.epoch, gen));
        if let Err(e) = c.snapshot.sync_all() {
            fatal("fsync of the new snapshot", &tmp, e);
        }
        if let Err(e) = c.log.sync_data() {
            fatal("fsync of the new log", &new_log, e);
        }
        if let Err(e) = fs::rename(&tmp, &snapshot_path) {
            fatal("renaming the new snapshot", &snapshot_path, e);
        }
        if let Err(e) = sync_dir(&self.dir) {
            fatal("fsync of the shard directory", &self.dir, e);
        }
        // The new pair is the one recovery reads from here on.
        let old_snapshot = self.dir.join(snapshot_name(self.epoch, self.gen));
        let old_log = self.dir.join(log_name(self.epoch, self.gen));
        let old_len = self.log_len;
        self.log = c.log;
        self.log_len = c.log_len;
        self.snapshot_len = c.snapshot_len;
        self.gen = gen;
        // Both new files were synced: everything written is on disk.
        self.unsynced = false;
        self.last_sync = Instant::now();
        self.synced_epoch = self.written_epoch;
        for path in [old_snapshot, old_log] {
            if let Err(e) = fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), error = %e, "persistence: cannot remove an old file");
            }
        }
        ShardStats::inc(&stats.store_compactions);
        info!(
            shard = self.shard,
            old_log_bytes = old_len,
            snapshot_bytes = self.snapshot_len,
            ms = c.started.elapsed().as_millis() as u64,
            "persistence: compaction done"
        );
    }
}

impl Compaction {
    /// Appends `session` as it is now to the snapshot.
    fn export(&mut self, session: &Session, clock: &ringmq_session::WallClock) {
        let mut one = StoreState::new();
        one.sessions.insert(
            session.client_id().clone(),
            session.export(session.left_at(), clock),
        );
        one.snapshot(&mut self.snapshot_buf);
    }

    /// Writes what collected for the new pair.
    fn write(&mut self, dir: &std::path::Path, epoch: u64, gen: u64) {
        if !self.buf.is_empty() {
            if let Err(e) = self.log.write_all(&self.buf) {
                fatal("writing the new log", &dir.join(log_name(epoch, gen)), e);
            }
            self.log_len += self.buf.len() as u64;
            self.buf.clear();
        }
        if !self.snapshot_buf.is_empty() {
            if let Err(e) = self.snapshot.write_all(&self.snapshot_buf) {
                let path = dir.join(format!("{}.tmp", snapshot_name(epoch, gen)));
                fatal("writing the new snapshot", &path, e);
            }
            self.snapshot_len += self.snapshot_buf.len() as u64;
            self.snapshot_buf.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn journal(fsync: Fsync, name: &str) -> (Journal, PathBuf) {
        let dir =
            std::env::temp_dir().join(format!("ringmq-journal-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("temp dir");
        let log = File::create(dir.join(log_name(1, 0))).expect("log");
        let settings = Settings {
            fsync,
            fsync_interval_ms: 60_000,
            compact_log_bytes: 1 << 20,
            clock: ringmq_session::WallClock {
                unix_ms_at_epoch: 0,
            },
        };
        (Journal::new(0, dir.clone(), 1, 0, log, 0, settings), dir)
    }

    fn gone(id: &'static str) -> Event {
        Event::SessionGone {
            client_id: Bytes::from_static(id.as_bytes()),
        }
    }

    #[test]
    fn always_holds_output_until_a_sync_covers_its_commit() {
        let (mut j, dir) = journal(Fsync::Always, "always");
        let stats = ShardStats::default();
        // Nothing written: nothing to wait for, no sync to take.
        j.commit(&stats);
        assert_eq!(j.unsynced_epoch(), None);
        assert!(j.take_sync().is_none());
        // A commit with records: its output waits for commit 1.
        j.record_event(&gone("a"));
        j.commit(&stats);
        assert_eq!(j.unsynced_epoch(), Some(1));
        assert!(j.take_sync().is_some(), "a sync is due at once");
        assert!(j.take_sync().is_none(), "one sync in flight at a time");
        // More records while it runs: their output waits for commit 2.
        j.record_event(&gone("b"));
        j.commit(&stats);
        assert_eq!(j.unsynced_epoch(), Some(2));
        // The first sync covers commit 1 only.
        assert_eq!(j.synced(0, &stats), 1);
        assert_eq!(j.unsynced_epoch(), Some(2));
        assert!(j.take_sync().is_some(), "the next batch's sync");
        assert_eq!(j.synced(0, &stats), 2);
        assert_eq!(j.unsynced_epoch(), None);
        assert_eq!(
            stats
                .store_fsyncs
                .load(std::sync::atomic::Ordering::Relaxed),
            2
        );
        let written = fs::read(dir.join(log_name(1, 0))).expect("log");
        assert_eq!(
            ringmq_store::decode_all(&written).events,
            [gone("a"), gone("b")]
        );
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn never_and_interval_hold_nothing() {
        for (fsync, name) in [(Fsync::Never, "never"), (Fsync::Interval, "interval")] {
            let (mut j, dir) = journal(fsync, name);
            let stats = ShardStats::default();
            j.record_event(&gone("a"));
            j.commit(&stats);
            assert_eq!(j.unsynced_epoch(), None, "{name}");
            // Never syncs; interval waits for its 60 s interval.
            assert!(j.take_sync().is_none(), "{name}");
            assert_eq!(
                j.sync_due_in().is_some(),
                fsync == Fsync::Interval,
                "{name}"
            );
            let _ = fs::remove_dir_all(dir);
        }
    }
}
