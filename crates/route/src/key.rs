//! Stable keys: shard ids, the hash that places client ids and retained
//! topics on shards, and the key that names one shared subscription.
//!
//! Invariants:
//! - every hash here is FNV-1a 64 (offset 0xcbf29ce484222325, prime
//!   0x100000001b3) and is never seeded, so every shard, every restart and
//!   every node of a cluster computes the same owner for the same bytes;
//! - a shared subscription is its share name AND its inner filter (MQTT 5.0
//!   section 4.8.2): `$share/g/a/+` and `$share/g/a/#` are two
//!   subscriptions and each gets its own copy, so both parts go into its
//!   [`GroupKey`], separated by a 0 byte (a UTF-8 string in MQTT never
//!   holds U+0000, MQTT-1.5.4-2, so the split point is unambiguous).
//!
//! A [`GroupKey`] is a 64-bit hash, so two groups may collide; the routing
//! tables key groups by (filter, key) wherever they can, so a collision can
//! at worst merge the shard weights of two groups, never hand a member a
//! message its own filter does not match (see `routes.rs`).

use ringmq_topic::parse_shared;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Continues an FNV-1a 64 hash over `bytes`.
fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for &byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash
}

/// A shard index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ShardId(pub usize);

/// One shared subscription: stable 64-bit FNV-1a hash of share name, a 0
/// byte, and the inner filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupKey(pub u64);

/// The key of the shared subscription `$share/{share_name}/{inner_filter}`.
pub fn group_key(share_name: &str, inner_filter: &str) -> GroupKey {
    let hash = fnv1a(FNV_OFFSET, share_name.as_bytes());
    let hash = fnv1a(hash, &[0]);
    GroupKey(fnv1a(hash, inner_filter.as_bytes()))
}

/// Stable FNV-1a 64 (offset 0xcbf29ce484222325, prime 0x100000001b3),
/// never seeded.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    fnv1a(FNV_OFFSET, bytes)
}

/// `ShardId((stable_hash(key) % shards.max(1)) as usize)`: owner of a
/// client id or of a retained topic.
pub fn owner_shard(key: &[u8], shards: usize) -> ShardId {
    let shards = shards.max(1) as u64;
    // The remainder is below `shards`, which came from a usize.
    ShardId((stable_hash(key) % shards) as usize)
}

/// A filter as routing sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterKind<'a> {
    /// An ordinary filter: every matching subscriber gets a copy.
    Ordinary(&'a str),
    /// `$share/{name}/{filter}`: one member of the group gets a copy.
    Shared {
        /// The group's key (share name and inner filter).
        group: GroupKey,
        /// The inner filter, without `$share/{name}/`.
        filter: &'a str,
    },
}

/// Splits a subscription filter for routing.
///
/// Uses [`ringmq_topic::parse_shared`]; a malformed shared filter (empty or
/// wildcard share name, no inner filter) is treated as an ordinary filter,
/// stored literally: the session refuses such filters before they get
/// here (SUBACK 0x8F), so this only keeps bad input from panicking.
pub fn split_filter(filter: &str) -> FilterKind<'_> {
    match parse_shared(filter) {
        Ok(Some(shared)) => FilterKind::Shared {
            group: group_key(shared.group, shared.filter),
            filter: shared.filter,
        },
        Ok(None) | Err(_) => FilterKind::Ordinary(filter),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_reference_vectors() {
        // Published FNV-1a 64 test vectors.
        assert_eq!(stable_hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(stable_hash(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(stable_hash(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn owner_shard_is_hash_mod_shards() {
        for key in [&b"client-1"[..], b"", b"sensors/42/temp", &[0xff; 40]] {
            for shards in 1..9 {
                let want = (stable_hash(key) % shards as u64) as usize;
                assert_eq!(owner_shard(key, shards), ShardId(want));
            }
            // Zero shards is treated as one rather than dividing by zero.
            assert_eq!(owner_shard(key, 0), ShardId(0));
        }
    }

    #[test]
    fn group_key_covers_name_and_filter() {
        assert_eq!(group_key("g", "a/+"), GroupKey(stable_hash(b"g\0a/+")));
        // MQTT 5.0 4.8.2: same share name, different filters: two groups.
        assert_ne!(group_key("g", "a/+"), group_key("g", "a/#"));
        assert_ne!(group_key("g", "a/+"), group_key("h", "a/+"));
        // The 0 separator keeps the split point unambiguous.
        assert_ne!(group_key("ab", "c"), group_key("a", "bc"));
        assert_eq!(group_key("g", "a/+"), group_key("g", "a/+"));
    }

    #[test]
    fn split_filter_table() {
        let table: &[(&str, FilterKind<'_>)] = &[
            ("a/b", FilterKind::Ordinary("a/b")),
            ("#", FilterKind::Ordinary("#")),
            ("$SYS/#", FilterKind::Ordinary("$SYS/#")),
            (
                "$share/g/a/+",
                FilterKind::Shared {
                    group: group_key("g", "a/+"),
                    filter: "a/+",
                },
            ),
            (
                "$share/g/#",
                FilterKind::Shared {
                    group: group_key("g", "#"),
                    filter: "#",
                },
            ),
            // Malformed shared filters stay ordinary (stored literally).
            ("$share/g", FilterKind::Ordinary("$share/g")),
            ("$share//a", FilterKind::Ordinary("$share//a")),
            ("$share/+/a", FilterKind::Ordinary("$share/+/a")),
        ];
        for (input, want) in table {
            assert_eq!(&split_filter(input), want, "input {input:?}");
        }
    }
}
