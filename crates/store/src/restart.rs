//! What a broker does with its files at start, as one pure function:
//! recover every old shard's snapshot and log (whatever the old shard
//! count), put the sessions of clients that were still connected at the
//! crash on the clock, end what expired while the broker was down (with
//! the wills that came due), and hand each new shard its part.
//!
//! The caller reads the files, calls [`restart`], reports the damage it
//! returns (one warning per damaged file, with its offset: never a refusal
//! to start), publishes the wills, and writes each new shard a fresh
//! snapshot of its part before accepting clients.

use crate::{recover, Expired, StoreState, Tail};

/// One old shard's files, as read.
#[derive(Clone, Copy, Debug)]
pub struct ShardFiles<'a> {
    /// The shard's number in the run that wrote the files.
    pub shard: usize,
    /// Its snapshot (empty when there is none).
    pub snapshot: &'a [u8],
    /// Its log (empty when there is none).
    pub log: &'a [u8],
}

/// Which file of a shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// The snapshot.
    Snapshot,
    /// The log.
    Log,
}

/// A file whose tail was torn or corrupt: everything before `offset` was
/// used, nothing after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Damage {
    /// The old shard.
    pub shard: usize,
    /// Which of its files.
    pub file: FileKind,
    /// The good length: where the first bad record starts.
    pub offset: usize,
    /// What was found there.
    pub tail: Tail,
}

/// What [`restart`] found.
#[derive(Debug, Default)]
pub struct Restart {
    /// The state of each new shard, by number.
    pub shards: Vec<StoreState>,
    /// Sessions that ended while the broker was down, and live sessions
    /// whose will came due, with the wills to publish now.
    pub expired: Vec<Expired>,
    /// Damaged files, in the order given.
    pub damage: Vec<Damage>,
}

/// Recovers every old shard in `files`, marks the sessions still
/// connected at the crash as left at `crashed_at_unix_ms` (the caller's
/// best knowledge, e.g. the log's modification time, or now), expires
/// what is due at `now_unix_ms`, and splits the rest over `shards` new
/// shards by `owner(key) % shards` (client ids for sessions, topics for
/// retained messages). Two old shards holding the same client id (a
/// crash during a re-shard) keep the one given first.
///
/// # Panics
/// If `shards` is 0.
pub fn restart(
    files: &[ShardFiles<'_>],
    shards: usize,
    crashed_at_unix_ms: u64,
    now_unix_ms: u64,
    owner: impl Fn(&[u8]) -> usize,
) -> Restart {
    assert!(shards > 0, "restart into 0 shards");
    let mut all = StoreState::new();
    let mut damage = Vec::new();
    for f in files {
        let recovered = recover(f.snapshot, f.log);
        for (file, tail) in [
            (FileKind::Snapshot, recovered.snapshot_tail),
            (FileKind::Log, recovered.log_tail),
        ] {
            if let Some(offset) = tail.offset() {
                damage.push(Damage {
                    shard: f.shard,
                    file,
                    offset,
                    tail,
                });
            }
        }
        all.merge(recovered.state);
    }
    all.leave_all(crashed_at_unix_ms);
    let expiry = all.expire(now_unix_ms);
    Restart {
        shards: all.split_by(shards, owner),
        expired: expiry.expired,
        damage,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{encode, Event};
    use bytes::Bytes;

    fn client_ids(state: &StoreState) -> Vec<Bytes> {
        state.sessions.keys().cloned().collect()
    }

    fn put(client: &str, expiry_secs: u32) -> Event {
        Event::SessionPut {
            client_id: Bytes::copy_from_slice(client.as_bytes()),
            username: None,
            protocol: 5,
            expiry_secs,
            will: None,
            will_delay_secs: 0,
        }
    }

    fn left(client: &str, at: u64) -> Event {
        Event::SessionLeft {
            client_id: Bytes::copy_from_slice(client.as_bytes()),
            at_unix_ms: at,
        }
    }

    fn bytes(events: &[Event]) -> Vec<u8> {
        let mut out = Vec::new();
        for e in events {
            encode(e, &mut out);
        }
        out
    }

    fn owner(key: &[u8]) -> usize {
        key.iter().map(|&b| b as usize).sum()
    }

    #[test]
    fn sessions_from_every_old_shard_reach_their_new_owner() {
        let a = bytes(&[put("a", 3600), left("a", 1_000)]);
        let b = bytes(&[put("b", 3600), left("b", 1_000)]);
        let c = bytes(&[put("cc", 3600)]);
        let files = [
            ShardFiles {
                shard: 0,
                snapshot: &a,
                log: &[],
            },
            ShardFiles {
                shard: 1,
                snapshot: &b,
                log: &c,
            },
        ];
        for shards in 1..=4 {
            let r = restart(&files, shards, 2_000, 3_000, owner);
            assert_eq!(r.shards.len(), shards);
            assert!(r.damage.is_empty());
            let mut found = 0;
            for (i, part) in r.shards.iter().enumerate() {
                for id in client_ids(part) {
                    assert_eq!(owner(&id) % shards, i, "{id:?}");
                    found += 1;
                }
            }
            assert_eq!(found, 3, "{shards} shards");
            // "cc" was connected at the crash: it left then.
            let cc = r
                .shards
                .iter()
                .find_map(|p| p.sessions.get(&b"cc"[..]))
                .unwrap();
            assert_eq!(cc.left_at_unix_ms, Some(2_000));
        }
    }

    #[test]
    fn what_expired_while_down_is_gone_and_damage_is_reported() {
        let mut log = bytes(&[put("short", 1), left("short", 1_000), put("long", 3600)]);
        let good = log.len();
        log.extend_from_slice(&[9, 0, 0, 0, 1, 2]); // a torn record
        let files = [ShardFiles {
            shard: 3,
            snapshot: &[],
            log: &log,
        }];
        let r = restart(&files, 2, 5_000, 10_000, owner);
        let ids: Vec<Bytes> = r.shards.iter().flat_map(client_ids).collect();
        assert_eq!(ids, [Bytes::from_static(b"long")]);
        assert_eq!(r.expired.len(), 1);
        assert_eq!(r.expired[0].client_id, Bytes::from_static(b"short"));
        assert_eq!(r.damage.len(), 1);
        assert_eq!(r.damage[0].shard, 3);
        assert_eq!(r.damage[0].file, FileKind::Log);
        assert_eq!(r.damage[0].offset, good);
    }
}
