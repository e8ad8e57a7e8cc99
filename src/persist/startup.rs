//! Opening the persistence directory at start: lock it, recover every old
//! shard's files (whatever the old shard count), and write the new epoch
//! for this run's shards before any of them accepts a client.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use ringmq_session::WallClock;
use ringmq_store::{restart, FileKind, ShardFiles, StoreState, Tail, WillRecord};
use tracing::{info, warn};

use super::{
    log_name, parse_name, shard_dir, snapshot_name, sync_dir, Fsync, Journal, CURRENT, MAGIC,
};

/// What `open` hands the broker.
pub(crate) struct Opened {
    /// The directory lock, held while this lives.
    pub(crate) lock: File,
    /// Per new shard: what it starts with and its writer.
    pub(crate) shards: Vec<(StoreState, Journal)>,
    /// Wills that came due while the broker was down (publish them once
    /// every shard holds its sessions), by client id.
    pub(crate) wills: Vec<(Bytes, WillRecord)>,
}

/// The writer settings every shard's journal gets.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Settings {
    pub(crate) fsync: Fsync,
    pub(crate) fsync_interval_ms: u64,
    pub(crate) compact_log_bytes: u64,
    pub(crate) clock: WallClock,
}

/// Unix time now, in ms.
pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Opens `dir` for `shards` shards: see the module docs. Errors are
/// sentences naming the path.
pub(crate) fn open(dir: &Path, shards: usize, settings: Settings) -> Result<Opened, String> {
    let started = Instant::now();
    let at = |p: &Path, e: std::io::Error| format!("{}: {e}", p.display());
    if dir.exists() && !dir.is_dir() {
        return Err(format!(
            "--persistence-dir {}: exists and is not a directory",
            dir.display()
        ));
    }
    fs::create_dir_all(dir).map_err(|e| format!("--persistence-dir {}", at(dir, e)))?;
    let lock_path = dir.join("lock");
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| at(&lock_path, e))?;
    // SAFETY: flock on a descriptor we own; no memory is passed.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            format!(
                "--persistence-dir {} is in use by another ringmq (its lock file is held)",
                dir.display()
            )
        } else {
            format!("cannot lock {}: {e}", lock_path.display())
        });
    }

    let (epoch, old_shards) = read_current(dir)?;
    // Every old shard's newest pair of this epoch, read whole.
    let mut files = Vec::new();
    let mut newest_mtime = None;
    for shard in 0..old_shards {
        let sdir = shard_dir(dir, shard);
        let Some(gen) = newest_gen(&sdir, epoch)? else {
            continue;
        };
        let snapshot_path = sdir.join(snapshot_name(epoch, gen));
        let log_path = sdir.join(log_name(epoch, gen));
        let snapshot = fs::read(&snapshot_path).map_err(|e| at(&snapshot_path, e))?;
        let log = match fs::read(&log_path) {
            Ok(log) => log,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(at(&log_path, e)),
        };
        for p in [&snapshot_path, &log_path] {
            if let Ok(m) = fs::metadata(p).and_then(|m| m.modified()) {
                newest_mtime = Some(newest_mtime.map_or(m, |n: SystemTime| n.max(m)));
            }
        }
        files.push((shard, snapshot_path, snapshot, log_path, log));
    }
    let now = unix_ms();
    // Clients still connected at the crash left when the files were last
    // written: their expiry and will delay count from then.
    let crashed_at = newest_mtime
        .and_then(|m| m.duration_since(UNIX_EPOCH).ok())
        .map_or(now, |d| (d.as_millis() as u64).min(now));
    let inputs: Vec<ShardFiles<'_>> = files
        .iter()
        .map(|(shard, _, snapshot, _, log)| ShardFiles {
            shard: *shard,
            snapshot,
            log,
        })
        .collect();
    let recovered = restart(&inputs, shards, crashed_at, now, |key| {
        crate::shard_for(key, shards)
    });
    for damage in &recovered.damage {
        let Some((_, snapshot_path, _, log_path, _)) =
            files.iter().find(|(s, ..)| *s == damage.shard)
        else {
            continue;
        };
        let path = match damage.file {
            FileKind::Snapshot => snapshot_path,
            FileKind::Log => log_path,
        };
        let reason = match &damage.tail {
            Tail::Torn { .. } => "a torn record (a write cut short)".to_string(),
            Tail::Corrupt { why, .. } => format!("{why:?}"),
            Tail::Clean => "clean".to_string(),
        };
        warn!(
            file = %path.display(),
            offset = damage.offset,
            %reason,
            "persistence: damaged tail truncated: every record before the offset is used, \
             nothing after it"
        );
    }
    let read_bytes: usize = files.iter().map(|f| f.2.len() + f.4.len()).sum();
    drop(inputs);
    drop(files);

    // The new epoch: a snapshot per new shard and an empty log, then
    // CURRENT switches to it.
    let next = epoch + 1;
    let mut shards_out = Vec::with_capacity(shards);
    let (mut sessions, mut messages, mut retained) = (0usize, 0usize, 0usize);
    for (shard, state) in recovered.shards.into_iter().enumerate() {
        sessions += state.sessions.len();
        messages += state
            .sessions
            .values()
            .map(|s| s.messages.len())
            .sum::<usize>();
        retained += state.retained.len();
        let sdir = shard_dir(dir, shard);
        fs::create_dir_all(&sdir).map_err(|e| at(&sdir, e))?;
        let mut image = Vec::new();
        state.snapshot(&mut image);
        let snapshot_len = image.len() as u64;
        write_synced(&sdir, &snapshot_name(next, 0), &image)?;
        drop(image);
        let log_path = sdir.join(log_name(next, 0));
        let log = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&log_path)
            .map_err(|e| at(&log_path, e))?;
        log.sync_all().map_err(|e| at(&log_path, e))?;
        sync_dir(&sdir).map_err(|e| at(&sdir, e))?;
        let journal = Journal::new(shard, sdir, next, 0, log, snapshot_len, settings);
        shards_out.push((state, journal));
    }
    let current = format!("{MAGIC}\nepoch {next}\nshards {shards}\n");
    write_synced(dir, CURRENT, current.as_bytes())?;
    sync_dir(dir).map_err(|e| at(dir, e))?;
    remove_stale(dir, next, shards);

    let wills: Vec<(Bytes, WillRecord)> = recovered
        .expired
        .into_iter()
        .filter_map(|e| e.will.map(|w| (e.client_id, w)))
        .collect();
    info!(
        dir = %dir.display(),
        epoch = next,
        sessions,
        messages,
        retained,
        wills_due = wills.len(),
        read_bytes,
        ms = started.elapsed().as_millis() as u64,
        "persistence: recovered {sessions} sessions, {messages} messages, {retained} retained \
         messages"
    );
    Ok(Opened {
        lock,
        shards: shards_out,
        wills,
    })
}

/// CURRENT's epoch and shard count; (0, 0) for a new directory.
fn read_current(dir: &Path) -> Result<(u64, usize), String> {
    let path = dir.join(CURRENT);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((0, 0)),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let mut lines = text.lines();
    let bad = || {
        format!(
            "{}: not a ringmq store marker (expected \"{MAGIC}\", an epoch and a shard \
             count); move the directory away to start empty",
            path.display()
        )
    };
    if lines.next() != Some(MAGIC) {
        return Err(bad());
    }
    let mut field = |name: &str| -> Result<u64, String> {
        lines
            .next()
            .and_then(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(bad)
    };
    let epoch = field("epoch ")?;
    let shards = field("shards ")?;
    Ok((epoch, shards as usize))
}

/// The highest K with a `snapshot-epoch-K` in `sdir`.
fn newest_gen(sdir: &Path, epoch: u64) -> Result<Option<u64>, String> {
    let entries = match fs::read_dir(sdir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", sdir.display())),
    };
    Ok(entries
        .filter_map(|e| e.ok())
        .filter_map(|e| parse_name(e.file_name().to_str()?, "snapshot"))
        .filter(|&(e, _)| e == epoch)
        .map(|(_, k)| k)
        .max())
}

/// Writes `bytes` to `dir/name` through a `.tmp` file: write, fsync,
/// rename. The caller syncs `dir`.
pub(super) fn write_synced(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), String> {
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(name);
    let at = |p: &PathBuf, e: std::io::Error| format!("{}: {e}", p.display());
    let mut f = File::create(&tmp).map_err(|e| at(&tmp, e))?;
    f.write_all(bytes).map_err(|e| at(&tmp, e))?;
    f.sync_all().map_err(|e| at(&tmp, e))?;
    fs::rename(&tmp, &path).map_err(|e| at(&path, e))
}

/// Deletes every file not of epoch `epoch` and every shard directory at or
/// above `shards`. Failures are logged: a stale file is never read again.
fn remove_stale(dir: &Path, epoch: u64, shards: usize) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(|e| e.ok()) {
        let name = entry.file_name();
        let Some(n) = name
            .to_str()
            .and_then(|n| n.strip_prefix("shard-"))
            .and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        let path = entry.path();
        if n >= shards {
            if let Err(e) = fs::remove_dir_all(&path) {
                warn!(path = %path.display(), error = %e, "persistence: cannot remove a stale shard directory");
            }
            continue;
        }
        let Ok(files) = fs::read_dir(&path) else {
            continue;
        };
        for f in files.filter_map(|e| e.ok()) {
            let fname = f.file_name();
            let Some(fname) = fname.to_str() else {
                continue;
            };
            let current = parse_name(fname, "snapshot")
                .or_else(|| parse_name(fname, "log"))
                .is_some_and(|(e, _)| e == epoch);
            if !current {
                if let Err(e) = fs::remove_file(f.path()) {
                    warn!(path = %f.path().display(), error = %e, "persistence: cannot remove a stale file");
                }
            }
        }
    }
}
