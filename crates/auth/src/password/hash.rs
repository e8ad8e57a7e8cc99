//! One stored password hash, in any form a Mosquitto password file holds,
//! and the slow half of a check: hash the offered password the same way and
//! compare the result in constant time.
//!
//! The forms, as verified against the `mosquitto_passwd` 2.0.11 on this
//! machine (Debian's `mosquitto` package) and Mosquitto's own
//! `common/password_mosq.h` (2.0) and `libcommon/password_common.c` (the develop
//! branch, to be 2.1; "2.1" below):
//!
//! - `$7$ITERATIONS$SALT$HASH`: PBKDF2-HMAC-SHA512 (`pw_sha512_pbkdf2 = 7`),
//!   what `mosquitto_passwd` writes by default since 2.0. SALT and HASH are
//!   standard base64 with padding. 2.0 writes a 12-byte salt and 101
//!   iterations; 2.1 writes a 64-byte salt and 1000 iterations; both read a
//!   12- or 64-byte salt. HASH is the 64-byte derived key.
//! - `$6$SALT$HASH`: SHA-512 over the password bytes followed by the salt
//!   bytes (`pw_sha512 = 6`), Mosquitto 1.x's default, still written by
//!   `mosquitto_passwd -H sha512`. Same salt and hash rules.
//! - `$argon2id$v=19$m=KIB,t=PASSES,p=LANES$SALT$HASH`: a PHC string, as
//!   Mosquitto 2.1 writes with libargon2 (m=47104, t=1, p=1, 64-byte salt,
//!   64-byte hash). SALT and HASH are unpadded standard base64.
//!
//! The PHC fields are read here rather than by the `argon2` crate's
//! `PasswordHash::new`: that parser caps salts at 48 bytes and so refuses
//! every hash Mosquitto 2.1 writes. The `argon2` crate still does the hashing.
//!
//! Never here: randomness (salts come from the caller), clocks, files.
//! Invariant: every `Hash` that exists was checked to hash without error, so
//! `verify` has no outcome besides "matches" and "does not match".

use core::fmt;
use core::num::NonZeroU32;

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use sha2::{Digest as _, Sha512};

/// Iterations `Hash::pbkdf2_sha512` callers use unless told otherwise.
///
/// 101 is `PW_DEFAULT_ITERATIONS` of Mosquitto 2.0 (`common/password_mosq.h`),
/// what `mosquitto_passwd` 2.0.11 writes: a `ringmq passwd` line then costs a
/// Mosquitto broker what its own lines cost. It is low against offline
/// guessing (Mosquitto 2.1 raised it to 1000); the count is stored in each
/// line, so a larger one stays readable by both brokers.
pub const DEFAULT_PBKDF2_ITERATIONS: NonZeroU32 = match NonZeroU32::new(101) {
    Some(n) => n,
    None => unreachable!(),
};

/// Salt length `mosquitto_passwd` 2.0 writes (`SALT_LEN`), and the one
/// `Hash::pbkdf2_sha512` takes.
pub const SALT_LEN: usize = 12;

/// The other salt length Mosquitto reads in `$6$`/`$7$` lines (2.1 writes it).
const LONG_SALT_LEN: usize = 64;

/// Length of a SHA-512 output, the only hash length `$6$`/`$7$` lines hold.
const SHA512_LEN: usize = 64;

/// Bounds on the Argon2id salt and hash lengths read from a file: the
/// algorithm's own minimums, and a ceiling far above what any tool writes so
/// a line cannot make a check allocate without bound.
const ARGON2_SALT_LEN: core::ops::RangeInclusive<usize> = 8..=1024;
const ARGON2_HASH_LEN: core::ops::RangeInclusive<usize> = 4..=1024;

/// Base64 of `$6$`/`$7$` fields: OpenSSL's, standard alphabet, padded on
/// output; input padding is not insisted on.
const MOSQ_B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// PHC "B64": standard alphabet without padding.
const PHC_B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone),
);

/// A stored password hash: the part of a password file line after `user:`.
///
/// `Debug` shows the scheme and cost only, never salt or hash bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Hash {
    kind: Kind,
}

#[derive(Clone, PartialEq, Eq)]
enum Kind {
    Sha512 {
        salt: Box<[u8]>,
        digest: [u8; SHA512_LEN],
    },
    Pbkdf2Sha512 {
        iterations: NonZeroU32,
        salt: Box<[u8]>,
        digest: [u8; SHA512_LEN],
    },
    Argon2id {
        /// 0x10 or 0x13.
        version: u32,
        memory_kib: u32,
        passes: u32,
        lanes: u32,
        salt: Box<[u8]>,
        digest: Box<[u8]>,
    },
}

/// Which algorithm a `Hash` uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// `$6$`: one salted SHA-512.
    Sha512,
    /// `$7$`: PBKDF2-HMAC-SHA512.
    Pbkdf2Sha512,
    /// `$argon2id$`: Argon2id.
    Argon2id,
}

/// What one check of a `Hash` costs, for a caller sizing its worker pool or
/// warning about a line that is too cheap or too dear.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cost {
    /// One SHA-512 over password and salt: microseconds.
    Sha512,
    /// PBKDF2: about two SHA-512 compressions per iteration.
    Pbkdf2Sha512 {
        /// The iteration count in the line.
        iterations: u32,
    },
    /// Argon2id: `memory_kib` KiB allocated for the check, filled `passes` times.
    Argon2id {
        /// Memory per check, KiB (`m=`).
        memory_kib: u32,
        /// Passes over that memory (`t=`).
        passes: u32,
        /// Lanes (`p=`); this crate computes them on one thread.
        lanes: u32,
    },
}

/// Why the text after `user:` is not a hash this crate reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HashError {
    /// Not `$6$`, `$7$` or `$argon2id$` (plain text, bcrypt, `$argon2i$`, ...).
    UnknownScheme,
    /// The wrong number of `$`-separated fields after the scheme, or an empty one.
    Fields {
        /// Fields the scheme has.
        expected: usize,
        /// Fields the line has.
        found: usize,
    },
    /// The `$7$` iteration count is not a decimal number from 1 to 2^32-1.
    Iterations,
    /// A field is not valid base64.
    Base64 {
        /// `"salt"` or `"hash"`.
        field: &'static str,
    },
    /// The salt decodes to a length the scheme does not allow.
    SaltLength {
        /// Decoded length in bytes.
        len: usize,
    },
    /// The hash decodes to a length the scheme does not allow.
    HashLength {
        /// Decoded length in bytes.
        len: usize,
    },
    /// The Argon2id version or `m=`/`t=`/`p=` parameters are missing or invalid.
    Argon2Params(&'static str),
}

impl fmt::Display for HashError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HashError::UnknownScheme => {
                f.write_str("unknown hash scheme (expected $6$, $7$ or $argon2id$)")
            }
            HashError::Fields { expected, found } => write!(
                f,
                "expected {expected} non-empty '$'-separated fields after the scheme, found {found}"
            ),
            HashError::Iterations => {
                f.write_str("iteration count is not a number from 1 to 4294967295")
            }
            HashError::Base64 { field } => write!(f, "{field} is not valid base64"),
            HashError::SaltLength { len } => write!(f, "salt of {len} bytes is not allowed here"),
            HashError::HashLength { len } => write!(f, "hash of {len} bytes is not allowed here"),
            HashError::Argon2Params(why) => write!(f, "Argon2id parameters: {why}"),
        }
    }
}

impl std::error::Error for HashError {}

impl Hash {
    /// Reads the text after `user:` in a password file line.
    ///
    /// # Errors
    /// `HashError` names the first rule the text breaks.
    pub fn parse(text: &str) -> Result<Hash, HashError> {
        if let Some(rest) = text.strip_prefix("$7$") {
            let [iterations, salt, digest] = fields(rest)?;
            let iterations = parse_decimal(iterations)
                .and_then(NonZeroU32::new)
                .ok_or(HashError::Iterations)?;
            let (salt, digest) = mosq_salt_and_digest(salt, digest)?;
            Ok(Hash {
                kind: Kind::Pbkdf2Sha512 {
                    iterations,
                    salt,
                    digest,
                },
            })
        } else if let Some(rest) = text.strip_prefix("$6$") {
            let [salt, digest] = fields(rest)?;
            let (salt, digest) = mosq_salt_and_digest(salt, digest)?;
            Ok(Hash {
                kind: Kind::Sha512 { salt, digest },
            })
        } else if let Some(rest) = text.strip_prefix("$argon2id$") {
            parse_argon2id(rest)
        } else {
            Err(HashError::UnknownScheme)
        }
    }

    /// Hashes `password` as `mosquitto_passwd` does by default: a `$7$` hash
    /// with the caller's random `salt` (this crate has no randomness).
    #[must_use]
    pub fn pbkdf2_sha512(password: &[u8], salt: [u8; SALT_LEN], iterations: NonZeroU32) -> Hash {
        let mut digest = [0; SHA512_LEN];
        pbkdf2::pbkdf2_hmac::<Sha512>(password, &salt, iterations.get(), &mut digest);
        Hash {
            kind: Kind::Pbkdf2Sha512 {
                iterations,
                salt: Box::new(salt),
                digest,
            },
        }
    }

    /// Hashes `password` as `mosquitto_passwd -H sha512` does: a `$6$` hash
    /// with the caller's random `salt`. Only for files that older brokers
    /// must read; prefer `pbkdf2_sha512`.
    #[must_use]
    pub fn salted_sha512(password: &[u8], salt: [u8; SALT_LEN]) -> Hash {
        Hash {
            kind: Kind::Sha512 {
                salt: Box::new(salt),
                digest: salted_sha512(password, &salt),
            },
        }
    }

    /// Whether `password` hashes to this hash. This is the slow part: run it
    /// off the shard threads for `$7$` and Argon2id. The final comparison
    /// takes the same time wherever the bytes differ.
    #[must_use]
    pub fn verify(&self, password: &[u8]) -> bool {
        match &self.kind {
            Kind::Sha512 { salt, digest } => ct_eq(&salted_sha512(password, salt), digest),
            Kind::Pbkdf2Sha512 {
                iterations,
                salt,
                digest,
            } => {
                let mut out = [0; SHA512_LEN];
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations.get(), &mut out);
                ct_eq(&out, digest)
            }
            Kind::Argon2id {
                version,
                memory_kib,
                passes,
                lanes,
                salt,
                digest,
            } => {
                let Some(argon) = argon2id(*version, *memory_kib, *passes, *lanes, digest.len())
                else {
                    debug_assert!(false, "Argon2id parameters were checked at parse");
                    return false;
                };
                let mut out = vec![0; digest.len()];
                // Errors only on a password over 4 GiB or an allocation failure:
                // neither matches.
                argon.hash_password_into(password, salt, &mut out).is_ok() && ct_eq(&out, digest)
            }
        }
    }

    /// The algorithm.
    #[must_use]
    pub fn scheme(&self) -> Scheme {
        match self.kind {
            Kind::Sha512 { .. } => Scheme::Sha512,
            Kind::Pbkdf2Sha512 { .. } => Scheme::Pbkdf2Sha512,
            Kind::Argon2id { .. } => Scheme::Argon2id,
        }
    }

    /// What one `verify` costs.
    #[must_use]
    pub fn cost_hint(&self) -> Cost {
        match self.kind {
            Kind::Sha512 { .. } => Cost::Sha512,
            Kind::Pbkdf2Sha512 { iterations, .. } => Cost::Pbkdf2Sha512 {
                iterations: iterations.get(),
            },
            Kind::Argon2id {
                memory_kib,
                passes,
                lanes,
                ..
            } => Cost::Argon2id {
                memory_kib,
                passes,
                lanes,
            },
        }
    }

    /// The text for a password file line after `user:`, in the form
    /// Mosquitto writes (`$7$101$<salt>$<hash>` and so on).
    #[must_use]
    pub fn to_line_part(&self) -> String {
        match &self.kind {
            Kind::Sha512 { salt, digest } => {
                format!("$6${}${}", MOSQ_B64.encode(salt), MOSQ_B64.encode(digest))
            }
            Kind::Pbkdf2Sha512 {
                iterations,
                salt,
                digest,
            } => format!(
                "$7${iterations}${}${}",
                MOSQ_B64.encode(salt),
                MOSQ_B64.encode(digest)
            ),
            Kind::Argon2id {
                version,
                memory_kib,
                passes,
                lanes,
                salt,
                digest,
            } => format!(
                "$argon2id$v={version}$m={memory_kib},t={passes},p={lanes}${}${}",
                PHC_B64.encode(salt),
                PHC_B64.encode(digest)
            ),
        }
    }

    /// A hash of the same scheme and cost that no password matches in
    /// practice (all-zero salt and hash): checking it costs what checking
    /// this one costs, for users who are not in the file.
    pub(super) fn stand_in(&self) -> Hash {
        let kind = match &self.kind {
            Kind::Sha512 { salt, .. } => Kind::Sha512 {
                salt: vec![0; salt.len()].into(),
                digest: [0; SHA512_LEN],
            },
            Kind::Pbkdf2Sha512 {
                iterations, salt, ..
            } => Kind::Pbkdf2Sha512 {
                iterations: *iterations,
                salt: vec![0; salt.len()].into(),
                digest: [0; SHA512_LEN],
            },
            Kind::Argon2id {
                version,
                memory_kib,
                passes,
                lanes,
                salt,
                digest,
            } => Kind::Argon2id {
                version: *version,
                memory_kib: *memory_kib,
                passes: *passes,
                lanes: *lanes,
                salt: vec![0; salt.len()].into(),
                digest: vec![0; digest.len()].into(),
            },
        };
        Hash { kind }
    }

    /// The stand-in for a file without users: a default `$7$` hash.
    pub(super) fn default_stand_in() -> Hash {
        Hash {
            kind: Kind::Pbkdf2Sha512 {
                iterations: DEFAULT_PBKDF2_ITERATIONS,
                salt: Box::new([0; SALT_LEN]),
                digest: [0; SHA512_LEN],
            },
        }
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hash")
            .field("scheme", &self.scheme())
            .field("cost", &self.cost_hint())
            .finish_non_exhaustive()
    }
}

impl core::str::FromStr for Hash {
    type Err = HashError;

    fn from_str(text: &str) -> Result<Hash, HashError> {
        Hash::parse(text)
    }
}

/// Splits `rest` at `$` into exactly `N` non-empty fields.
fn fields<const N: usize>(rest: &str) -> Result<[&str; N], HashError> {
    let mut out = [""; N];
    let mut found = 0;
    for field in rest.split('$') {
        if let Some(slot) = out.get_mut(found) {
            *slot = field;
        }
        found += 1;
    }
    if found != N || out.iter().any(|f| f.is_empty()) {
        return Err(HashError::Fields { expected: N, found });
    }
    Ok(out)
}

/// Digits only (no sign, no spaces), fitting a `u32`.
fn parse_decimal(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Salt and hash of a `$6$`/`$7$` line, with Mosquitto's length rules.
fn mosq_salt_and_digest(
    salt: &str,
    digest: &str,
) -> Result<(Box<[u8]>, [u8; SHA512_LEN]), HashError> {
    let salt = MOSQ_B64
        .decode(salt)
        .map_err(|_| HashError::Base64 { field: "salt" })?;
    if salt.len() != SALT_LEN && salt.len() != LONG_SALT_LEN {
        return Err(HashError::SaltLength { len: salt.len() });
    }
    let digest = MOSQ_B64
        .decode(digest)
        .map_err(|_| HashError::Base64 { field: "hash" })?;
    let digest = <[u8; SHA512_LEN]>::try_from(digest.as_slice())
        .map_err(|_| HashError::HashLength { len: digest.len() })?;
    Ok((salt.into(), digest))
}

/// The part of a PHC string after `$argon2id$`: `v=N$m=..,t=..,p=..$salt$hash`.
fn parse_argon2id(rest: &str) -> Result<Hash, HashError> {
    let [version, params, salt, digest] = fields(rest)?;
    // The version is required: without it libargon2 means 0x10 and the
    // `argon2` crate means 0x13, so such a line is ambiguous.
    let version = version
        .strip_prefix("v=")
        .and_then(parse_decimal)
        .filter(|v| *v == 0x10 || *v == 0x13)
        .ok_or(HashError::Argon2Params("v= must be 16 or 19"))?;
    let (mut memory_kib, mut passes, mut lanes) = (None, None, None);
    for pair in params.split(',') {
        let (key, value) = pair
            .split_once('=')
            .ok_or(HashError::Argon2Params("expected m=, t= and p="))?;
        let slot = match key {
            "m" => &mut memory_kib,
            "t" => &mut passes,
            "p" => &mut lanes,
            _ => return Err(HashError::Argon2Params("only m=, t= and p= are supported")),
        };
        if slot.is_some() {
            return Err(HashError::Argon2Params("a parameter appears twice"));
        }
        *slot = Some(parse_decimal(value).ok_or(HashError::Argon2Params("not a number"))?);
    }
    let (Some(memory_kib), Some(passes), Some(lanes)) = (memory_kib, passes, lanes) else {
        return Err(HashError::Argon2Params("expected m=, t= and p="));
    };
    let salt = PHC_B64
        .decode(salt)
        .map_err(|_| HashError::Base64 { field: "salt" })?;
    if !ARGON2_SALT_LEN.contains(&salt.len()) {
        return Err(HashError::SaltLength { len: salt.len() });
    }
    let digest = PHC_B64
        .decode(digest)
        .map_err(|_| HashError::Base64 { field: "hash" })?;
    if !ARGON2_HASH_LEN.contains(&digest.len()) {
        return Err(HashError::HashLength { len: digest.len() });
    }
    if argon2id(version, memory_kib, passes, lanes, digest.len()).is_none() {
        return Err(HashError::Argon2Params(
            "m must be at least 8*p, t and p at least 1",
        ));
    }
    Ok(Hash {
        kind: Kind::Argon2id {
            version,
            memory_kib,
            passes,
            lanes,
            salt: salt.into(),
            digest: digest.into(),
        },
    })
}

/// The hasher for these parameters, or `None` when the `argon2` crate
/// refuses them.
fn argon2id(
    version: u32,
    memory_kib: u32,
    passes: u32,
    lanes: u32,
    hash_len: usize,
) -> Option<argon2::Argon2<'static>> {
    let version = argon2::Version::try_from(version).ok()?;
    let params = argon2::Params::new(memory_kib, passes, lanes, Some(hash_len)).ok()?;
    Some(argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        version,
        params,
    ))
}

fn salted_sha512(password: &[u8], salt: &[u8]) -> [u8; SHA512_LEN] {
    Sha512::new()
        .chain_update(password)
        .chain_update(salt)
        .finalize()
        .into()
}

/// Equality whose time depends on the lengths only, not on where the bytes
/// differ. Lengths are not secret: both come from the file's scheme.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        // black_box keeps the compiler from turning this into an early exit.
        diff = core::hint::black_box(diff | (x ^ y));
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    use argon2::{PasswordHasher as _, PasswordVerifier as _};

    // Written by the real tool on this machine (Debian mosquitto 2.0.11):
    //   mosquitto_passwd -c -b pw.txt "alice smith" 's3cret:pw'
    //   mosquitto_passwd -H sha512 -b pw.txt bob hunter2
    //   mosquitto_passwd -I 1000 -b pw.txt carol 'pässwörd'
    const MOSQ_ALICE: &str = "$7$101$7aoUxC97msd4JXd9$+CbyhXPaNWCCycIx3dhHD0e4KcQSMRdX+YtNYRgHohEX4JsiKH632F/7oHcC7Pr5bu2Q7LpDFAYKGuC8Z1XwWw==";
    const MOSQ_BOB: &str = "$6$kinKeUH44zjejA42$YU5J6J0a8SUATFHMEtN8DZJ/kj9yCJ4VL5UvkJH8DECQA8WKZX/ahuu43a57LJTEgozY/qSiUPAaTphzzSZwFA==";
    const MOSQ_CAROL: &str = "$7$1000$Tosy2ElNnSQTeCk5$g756OoGl2Qksg3jENfD+IinjVDunJTVrnoXurz+KAWg4WpdE33n1GPuYtxoDdcEtc9gUY+7zO83J/hXFDo6cqg==";

    // From Python's hashlib, independent of this crate's dependencies:
    //   b=lambda x: base64.b64encode(x).decode(); s12=bytes(range(1,13)); s64=bytes(range(64))
    //   "$7$101$"+b(s12)+"$"+b(hashlib.pbkdf2_hmac('sha512',b'correct horse',s12,101))
    const PY_PBKDF2_12: &str = "$7$101$AQIDBAUGBwgJCgsM$mIOMyf0G01/LkKvFuu6raA+sJydkdh2qDZD+cyTDcrMk08Rnc3N+vIiTgRJqnolJL9TU+/R/F+mbz31mQG16jg==";
    //   "$7$1000$"+b(s64)+"$"+b(hashlib.pbkdf2_hmac('sha512','pässwörd'.encode(),s64,1000))
    const PY_PBKDF2_64: &str = "$7$1000$AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+Pw==$u2kfHFunJisdrj5AoASSxyQMBdD5HWfqWMNhZ/x2w1spBDSBFIfJUbercEctC0Fe0XP9cJqgPO/7oe8IhnY2XA==";
    //   "$6$"+b(s12)+"$"+b(hashlib.sha512(b'correct horse'+s12).digest())
    const PY_SHA512_12: &str = "$6$AQIDBAUGBwgJCgsM$k4h6DJTPKKgPqwiLW87w0j5t6eo2nkDOCc72xNQ6goxbMrAMEDvsnYteF9SSd1cyXtc8SuF5I0GVPt7YRi6Wdw==";
    //   "$6$"+b(s64)+"$"+b(hashlib.sha512(b''+s64).digest())   (empty password)
    const PY_SHA512_64: &str = "$6$AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+Pw==$7kMg668/208sgysTcgDAjiNeD6e70OsXQMcGO6ig0VHad+ADOY4XFKlV1HWwXj6VC2OVA7RS7Bhd5CKbxIc5SQ==";

    // From the reference Argon2 tool (Debian package `argon2`, libargon2):
    //   echo -n 'correct horse' | argon2 0123456789abcdef...(64 bytes) -id -t 1 -m 10 -p 1 -l 64 -e
    // a 64-byte salt and hash as Mosquitto 2.1 writes them (smaller m for speed).
    const REF_ARGON2_64: &str = "$argon2id$v=19$m=1024,t=1,p=1$MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWYwMTIzNDU2Nzg5YWJjZGVmMDEyMzQ1Njc4OWFiY2RlZg$jD7g/0f4C7xIVTwEX2nAc/ZbMxxAcburWl0JLJUbxG3MekEs50g17OUms4qpKhXNSVv0Y4MWFo/gRdYvDV9FJQ";
    //   echo -n 'correct horse' | argon2 saltsaltsalt -id -t 2 -m 8 -p 2 -l 32 -v 10 -e
    const REF_ARGON2_V10: &str =
        "$argon2id$v=16$m=256,t=2,p=2$c2FsdHNhbHRzYWx0$1//4fUBFODyqjEaWTRmecPBOzHbJANRvLTQWnaDpmWU";

    fn parse(text: &str) -> Hash {
        match Hash::parse(text) {
            Ok(hash) => hash,
            Err(e) => panic!("{text}: {e}"),
        }
    }

    #[test]
    fn mosquitto_passwd_lines_verify() {
        let cases = [
            (MOSQ_ALICE, "s3cret:pw", Scheme::Pbkdf2Sha512),
            (MOSQ_BOB, "hunter2", Scheme::Sha512),
            (MOSQ_CAROL, "pässwörd", Scheme::Pbkdf2Sha512),
        ];
        for (text, password, scheme) in cases {
            let hash = parse(text);
            assert_eq!(hash.scheme(), scheme);
            assert!(hash.verify(password.as_bytes()), "{text}");
            assert!(!hash.verify(b"wrong"), "{text}");
            assert!(!hash.verify(b""), "{text}");
            // Mosquitto's own output is already in canonical form.
            assert_eq!(hash.to_line_part(), text);
        }
        assert_eq!(
            parse(MOSQ_ALICE).cost_hint(),
            Cost::Pbkdf2Sha512 { iterations: 101 }
        );
        assert_eq!(
            parse(MOSQ_CAROL).cost_hint(),
            Cost::Pbkdf2Sha512 { iterations: 1000 }
        );
    }

    #[test]
    fn python_fixtures_verify() {
        for (text, password) in [
            (PY_PBKDF2_12, "correct horse"),
            (PY_PBKDF2_64, "pässwörd"),
            (PY_SHA512_12, "correct horse"),
            (PY_SHA512_64, ""),
        ] {
            let hash = parse(text);
            assert!(hash.verify(password.as_bytes()), "{text}");
            assert!(!hash.verify(b"correct horsf"), "{text}");
            assert_eq!(hash.to_line_part(), text);
        }
    }

    #[test]
    fn creation_matches_the_published_algorithm() {
        let salt: [u8; SALT_LEN] = core::array::from_fn(|i| i as u8 + 1);
        let hash = Hash::pbkdf2_sha512(b"correct horse", salt, DEFAULT_PBKDF2_ITERATIONS);
        assert_eq!(hash.to_line_part(), PY_PBKDF2_12);
        assert_eq!(hash, parse(PY_PBKDF2_12));
        let hash = Hash::salted_sha512(b"correct horse", salt);
        assert_eq!(hash.to_line_part(), PY_SHA512_12);
    }

    #[test]
    fn argon2id_from_the_crate_verifies() {
        let params = argon2::Params::new(64, 2, 1, None).unwrap();
        let argon =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let phc = argon
            .hash_password_with_salt(b"correct horse", b"sixteen byte slt")
            .unwrap()
            .to_string();
        let hash = parse(&phc);
        assert_eq!(hash.scheme(), Scheme::Argon2id);
        assert_eq!(
            hash.cost_hint(),
            Cost::Argon2id {
                memory_kib: 64,
                passes: 2,
                lanes: 1
            }
        );
        assert!(hash.verify(b"correct horse"));
        assert!(!hash.verify(b"correct horsf"));
        // Fields read here are the ones the crate wrote, in its order.
        assert_eq!(hash.to_line_part(), phc);
        // And the crate's own verifier agrees with the string re-emitted here.
        assert!(argon
            .verify_password(b"correct horse", hash.to_line_part().as_str())
            .is_ok());
    }

    #[test]
    fn argon2id_from_the_reference_tool_verifies() {
        for text in [REF_ARGON2_64, REF_ARGON2_V10] {
            let hash = parse(text);
            assert!(hash.verify(b"correct horse"), "{text}");
            assert!(!hash.verify(b"correct horsf"), "{text}");
            assert_eq!(hash.to_line_part(), text);
        }
    }

    #[test]
    fn stand_in_costs_the_same_and_matches_nothing() {
        for text in [MOSQ_ALICE, MOSQ_BOB, PY_PBKDF2_64, REF_ARGON2_64] {
            let hash = parse(text);
            let stand_in = hash.stand_in();
            assert_eq!(stand_in.cost_hint(), hash.cost_hint());
            assert!(!stand_in.verify(b""));
            assert!(!stand_in.verify(b"s3cret:pw"));
            // It is itself a well-formed line part.
            assert_eq!(parse(&stand_in.to_line_part()), stand_in);
        }
    }

    #[test]
    fn bad_hashes() {
        let long_b64 = "A".repeat(86);
        let cases: &[(&str, HashError)] = &[
            ("secret", HashError::UnknownScheme),
            ("", HashError::UnknownScheme),
            ("$5$abc$def", HashError::UnknownScheme),
            ("$2y$10$abcdefghijklmnopqrstuv", HashError::UnknownScheme),
            (
                "$argon2i$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2g",
                HashError::UnknownScheme,
            ),
            (
                "$7$101$AQIDBAUGBwgJCgsM",
                HashError::Fields {
                    expected: 3,
                    found: 2,
                },
            ),
            (
                "$7$101$$AQIDBAUGBwgJCgsM$x",
                HashError::Fields {
                    expected: 3,
                    found: 4,
                },
            ),
            (
                "$7$$AQIDBAUGBwgJCgsM$x",
                HashError::Fields {
                    expected: 3,
                    found: 3,
                },
            ),
            (
                "$6$AQIDBAUGBwgJCgsM$x$y",
                HashError::Fields {
                    expected: 2,
                    found: 3,
                },
            ),
            ("$7$0$AQIDBAUGBwgJCgsM$x", HashError::Iterations),
            ("$7$-1$AQIDBAUGBwgJCgsM$x", HashError::Iterations),
            ("$7$+5$AQIDBAUGBwgJCgsM$x", HashError::Iterations),
            ("$7$ 5$AQIDBAUGBwgJCgsM$x", HashError::Iterations),
            ("$7$4294967296$AQIDBAUGBwgJCgsM$x", HashError::Iterations),
            (
                "$7$10$AQID*AUGBwgJCgsM$x",
                HashError::Base64 { field: "salt" },
            ),
            (
                "$7$10$AQIDBAUGBwgJCg==$AAAA",
                HashError::SaltLength { len: 10 },
            ),
            (
                "$6$AQIDBAUGBwgJCgsM$not*base64",
                HashError::Base64 { field: "hash" },
            ),
            ("$6$AQIDBAUGBwgJCgsM$AAAA", HashError::HashLength { len: 3 }),
            (
                "$argon2id$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2g",
                HashError::Fields {
                    expected: 4,
                    found: 3,
                },
            ),
            (
                "$argon2id$v=18$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2g",
                HashError::Argon2Params("v= must be 16 or 19"),
            ),
            (
                "$argon2id$v=19$m=64,t=1$c2FsdHNhbHQ$aGFzaGhhc2g",
                HashError::Argon2Params("expected m=, t= and p="),
            ),
            (
                "$argon2id$v=19$m=64,t=1,p=1,m=64$c2FsdHNhbHQ$aGFzaGhhc2g",
                HashError::Argon2Params("a parameter appears twice"),
            ),
            (
                "$argon2id$v=19$m=64,t=1,p=1,keyid=AAAA$c2FsdHNhbHQ$aGFzaGhhc2g",
                HashError::Argon2Params("only m=, t= and p= are supported"),
            ),
            (
                "$argon2id$v=19$m=4,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2g",
                HashError::Argon2Params("m must be at least 8*p, t and p at least 1"),
            ),
            (
                "$argon2id$v=19$m=64,t=0,p=1$c2FsdHNhbHQ$aGFzaGhhc2g",
                HashError::Argon2Params("m must be at least 8*p, t and p at least 1"),
            ),
            (
                "$argon2id$v=19$m=64,t=1,p=1$c2FsdA$aGFzaGhhc2g",
                HashError::SaltLength { len: 4 },
            ),
            (
                "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ=$aGFzaGhhc2g",
                HashError::Base64 { field: "salt" },
            ),
            (
                "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGE",
                HashError::HashLength { len: 2 },
            ),
        ];
        for (text, want) in cases {
            assert_eq!(Hash::parse(text).as_ref(), Err(want), "{text}");
        }
        // 64-byte salts are fine; 63 are not.
        let salt63 = MOSQ_B64.encode([0u8; 63]);
        assert_eq!(
            Hash::parse(&format!("$6${salt63}${long_b64}==")),
            Err(HashError::SaltLength { len: 63 })
        );
    }

    #[test]
    fn debug_shows_no_hash_bytes() {
        let shown = format!("{:?}", parse(MOSQ_ALICE));
        assert!(shown.contains("Pbkdf2Sha512"), "{shown}");
        assert!(!shown.contains("7aoU"), "{shown}");
        assert!(!shown.contains("237"), "{shown}"); // first salt byte, 0xed
    }

    #[test]
    fn ct_eq_compares() {
        assert!(ct_eq(b"", b""));
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"bbc"));
        assert!(!ct_eq(b"abc", b"ab"));
    }
}
