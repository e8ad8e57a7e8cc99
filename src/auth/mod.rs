//! Authentication: the password file (loaded at start and on SIGHUP), the
//! threads that verify password hashes off the shard threads, and each
//! shard's cache of recent successful checks.
//!
//! A hash check is deliberately slow (PBKDF2, Argon2), so a shard never
//! runs one: it parks the CONNECT and sends a [`Job`] to the verifier
//! threads, which answer through the shard's inbox (`Msg::AuthDone`); the
//! shard then handles the CONNECT again, now with a verdict. A cache entry
//! is a fast salted SHA-512 of the password that passed, so a fleet
//! reconnecting within `--auth-cache-secs` costs one slow hash per user.

use std::sync::Arc;
use std::thread::JoinHandle;

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender};
use ringmq_auth::password::{Hash, PasswordFile};
use ringmq_session::Tick;

use crate::mesh::Mesh;
use crate::shard::{LinkId, Msg};

/// Jobs waiting for a verifier thread, per broker; a CONNECT that finds
/// the queue full is refused as "server unavailable" (counted).
pub(crate) const MAX_QUEUED_JOBS: usize = 4096;

/// Successful checks one shard remembers at most.
const CACHE_ENTRIES: usize = 65_536;

/// Reads and parses `--password-file` (`None` without the flag). The error
/// names the file and the line.
pub(crate) fn load(config: &crate::config::Config) -> Result<Option<Arc<PasswordFile>>, String> {
    let Some(path) = &config.password_file else {
        return Ok(None);
    };
    let bytes =
        std::fs::read(path).map_err(|e| format!("--password-file {}: {e}", path.display()))?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|e| format!("--password-file {}: not UTF-8: {e}", path.display()))?;
    let file = PasswordFile::parse(text)
        .map_err(|e| format!("--password-file {}: {e}", path.display()))?;
    Ok(Some(Arc::new(file)))
}

/// Reads and parses `--acl-file` (`None` without the flag). The error
/// names the file and the line.
pub(crate) fn load_acl(
    config: &crate::config::Config,
) -> Result<Option<Arc<ringmq_auth::acl::Acl>>, String> {
    let Some(path) = &config.acl_file else {
        return Ok(None);
    };
    let bytes = std::fs::read(path).map_err(|e| format!("--acl-file {}: {e}", path.display()))?;
    let acl = ringmq_auth::acl::Acl::parse_bytes(&bytes)
        .map_err(|e| format!("--acl-file {}: {e}", path.display()))?;
    Ok(Some(Arc::new(acl)))
}

/// One hash to check, for the CONNECT of `link` on `shard`.
pub(crate) struct Job {
    pub(crate) shard: usize,
    pub(crate) link: LinkId,
    /// The user's hash, or a stand-in of the same cost for an unknown
    /// user (checked all the same, so timing says nothing).
    pub(crate) hash: Hash,
    pub(crate) known: bool,
    pub(crate) user: Bytes,
    pub(crate) password: Bytes,
}

/// A verifier's answer, for the shard's inbox.
#[derive(Debug)]
pub(crate) struct Done {
    pub(crate) link: LinkId,
    pub(crate) ok: bool,
    pub(crate) user: Bytes,
    pub(crate) password: Bytes,
}

/// Starts `threads` verifier threads. They end when every sender of the
/// returned channel is gone (each shard holds one).
pub(crate) fn start(
    threads: usize,
    mesh: Arc<Mesh<Msg>>,
) -> std::io::Result<(Sender<Job>, Vec<JoinHandle<()>>)> {
    let (tx, rx) = crossbeam_channel::bounded::<Job>(MAX_QUEUED_JOBS);
    let mut handles = Vec::with_capacity(threads);
    for i in 0..threads {
        let rx: Receiver<Job> = rx.clone();
        let mesh = mesh.clone();
        handles.push(
            std::thread::Builder::new()
                .name(format!("ringmq-auth-{i}"))
                .spawn(move || {
                    for job in rx {
                        let ok = job.hash.verify(&job.password) && job.known;
                        let done = Done {
                            link: job.link,
                            ok,
                            user: job.user,
                            password: job.password,
                        };
                        mesh.send_external(job.shard, Msg::AuthDone(Box::new(done)));
                    }
                })?,
        );
    }
    Ok((tx, handles))
}

/// Fills `buf` from the kernel's CSPRNG (getrandom, retried when a
/// signal interrupts it).
pub(crate) fn os_random(buf: &mut [u8]) -> std::io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        let rest = &mut buf[filled..];
        // SAFETY: getrandom writes at most `rest.len()` bytes into `rest`.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        filled += n as usize;
    }
    Ok(())
}

/// Twelve random bytes for a cache entry's salt.
pub(crate) fn random_salt() -> [u8; 12] {
    let mut salt = [0u8; 12];
    if os_random(&mut salt).is_err() {
        // No getrandom (a very old kernel): std's per-process random hash
        // keys still keep entries apart; the cache is not a store.
        use std::hash::{BuildHasher, Hasher};
        let h = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        salt[..8].copy_from_slice(&h.to_le_bytes());
    }
    salt
}

/// One shard's recent successful checks: user -> (fast hash of the
/// password that passed, when it stops counting).
#[derive(Default)]
pub(crate) struct Cache {
    entries: hashbrown::HashMap<Bytes, (Hash, Tick)>,
}

impl Cache {
    /// Whether `password` passed for `user` less than the cache lifetime ago.
    pub(crate) fn hit(&self, user: &[u8], password: &[u8], now: Tick) -> bool {
        self.entries
            .get(user)
            .is_some_and(|(hash, until)| now < *until && hash.verify(password))
    }

    /// Remembers a successful check until `until`.
    pub(crate) fn remember(&mut self, user: Bytes, password: &[u8], until: Tick) {
        if self.entries.len() >= CACHE_ENTRIES && !self.entries.contains_key(&user) {
            // Full: start over rather than grow (a cache, not a store).
            self.entries.clear();
        }
        let hash = Hash::salted_sha512(password, random_salt());
        self.entries.insert(user, (hash, until));
    }

    pub(crate) fn clear(&mut self) {
        self.entries.clear();
    }
}
