//! Design (b): fjall, one keyspace; key = 8-byte BE sequence, value = record body.
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use std::path::Path;

pub struct Fj { pub db: Database, pub ks: Keyspace, seq: u64, mode: PersistMode }

impl Fj {
    pub fn open(dir: &Path, fsync: bool) -> fjall::Result<Fj> {
        let db = Database::builder(dir).manual_journal_persist(true).open()?;
        let ks = db.keyspace("msgs", KeyspaceCreateOptions::default)?;
        let seq = match ks.last_key_value() {
            Some(g) => u64::from_be_bytes(g.key()?.as_ref().try_into().unwrap()) + 1,
            None => 0,
        };
        let mode = if fsync { PersistMode::SyncData } else { PersistMode::Buffer };
        Ok(Fj { db, ks, seq, mode })
    }
    pub fn push(&mut self, body: &[u8]) -> fjall::Result<()> {
        self.ks.insert(self.seq.to_be_bytes(), body)?;
        self.seq += 1;
        Ok(())
    }
    pub fn commit(&mut self) -> fjall::Result<()> { self.db.persist(self.mode) }
}

/// Recovery: open + iterate every record. Returns the count.
pub fn recover(dir: &Path, mut visit: impl FnMut(&[u8])) -> fjall::Result<u64> {
    let fj = Fj::open(dir, false)?;
    let mut n = 0;
    for g in fj.ks.iter() {
        let (_k, v) = g.into_inner()?;
        visit(&v);
        n += 1;
    }
    Ok(n)
}
