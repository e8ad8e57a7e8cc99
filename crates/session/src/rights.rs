//! What the ACL lets one session do, with its decisions cached so that a
//! device publishing to the same few topics costs a lookup, not a walk
//! over the rules.
//!
//! A session has [`Rights`] only when the broker needs them (an
//! `--acl-file`, or `--takeover-same-user-only` for a named client); the
//! rest pay one pointer. Subscriptions are decided once, at SUBSCRIBE
//! ([`ringmq_auth::acl::Acl::subscribe`]); only those a deny rule overlaps
//! ("filtered") make deliveries to this session check `read`.

use bytes::Bytes;
use ringmq_auth::acl::{Access, Acl, Who};

/// Cached decisions one session keeps at most.
const CACHE_ENTRIES: usize = 8;
/// Bytes of cached topics one session keeps at most; a longer topic is
/// decided every time.
const CACHE_BYTES: usize = 1024;

/// The identity and cached ACL decisions of one session.
#[derive(Debug, Default)]
pub(crate) struct Rights {
    /// The username of the connection that last connected (None:
    /// anonymous).
    username: Option<Bytes>,
    /// Granted filters a deny rule overlaps: deliveries are checked.
    filtered: Vec<Bytes>,
    /// Recent (access, topic, allowed), oldest first.
    cache: Vec<(Access, Bytes, bool)>,
    cache_bytes: usize,
}

impl Rights {
    pub(crate) fn new(username: Option<Bytes>) -> Self {
        Rights {
            username,
            ..Rights::default()
        }
    }

    pub(crate) fn username(&self) -> Option<&Bytes> {
        self.username.as_ref()
    }

    pub(crate) fn who<'a>(&'a self, client_id: &'a [u8]) -> Who<'a> {
        Who {
            client_id,
            username: self.username.as_deref(),
        }
    }

    /// Must each delivery's topic be checked?
    pub(crate) fn checks_reads(&self) -> bool {
        !self.filtered.is_empty()
    }

    /// Records whether `filter` (just granted) is filtered.
    pub(crate) fn set_filtered(&mut self, filter: &Bytes, filtered: bool) {
        let at = self.filtered.iter().position(|f| f == filter);
        match (at, filtered) {
            (None, true) => self.filtered.push(filter.clone()),
            (Some(i), false) => {
                self.filtered.swap_remove(i);
            }
            _ => {}
        }
    }

    /// Forgets every cached decision and filtered filter (the rules or the
    /// identity changed; the caller decides the subscriptions again).
    pub(crate) fn reset(&mut self) {
        self.filtered.clear();
        self.cache.clear();
        self.cache_bytes = 0;
    }

    /// May this session `access` topic name `topic`? Cached.
    pub(crate) fn allowed(
        &mut self,
        acl: &Acl,
        client_id: &[u8],
        access: Access,
        topic: &[u8],
    ) -> bool {
        if let Some((_, _, ok)) = self
            .cache
            .iter()
            .find(|(a, t, _)| *a == access && t.as_ref() == topic)
        {
            return *ok;
        }
        let ok = acl.check(&self.who(client_id), access, topic);
        if topic.len() <= CACHE_BYTES / 4 {
            while self.cache.len() >= CACHE_ENTRIES || self.cache_bytes + topic.len() > CACHE_BYTES
            {
                let (_, old, _) = self.cache.remove(0);
                self.cache_bytes -= old.len();
            }
            // A copy: the topic slices a read buffer the cache must not pin.
            self.cache.push((access, Bytes::copy_from_slice(topic), ok));
            self.cache_bytes += topic.len();
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_are_cached_and_bounded() {
        let acl = Acl::parse("user u\ntopic write a/#\n").unwrap();
        let mut r = Rights::new(Some(Bytes::from_static(b"u")));
        assert!(r.allowed(&acl, b"c", Access::Write, b"a/1"));
        assert!(!r.allowed(&acl, b"c", Access::Read, b"a/1"));
        assert!(!r.allowed(&acl, b"c", Access::Write, b"b"));
        assert_eq!(r.cache.len(), 3);
        // Served from the cache, even against other rules.
        let none = Acl::parse("").unwrap();
        assert!(r.allowed(&none, b"c", Access::Write, b"a/1"));
        for i in 0..100 {
            r.allowed(&acl, b"c", Access::Write, format!("a/{i}").as_bytes());
        }
        assert_eq!(r.cache.len(), CACHE_ENTRIES);
        let long = vec![b'a'; CACHE_BYTES];
        assert!(!r.allowed(&acl, b"c", Access::Write, &long));
        assert!(r.cache_bytes <= CACHE_BYTES);
        assert!(r.cache.iter().all(|(_, t, _)| t.len() < CACHE_BYTES));
        r.reset();
        assert!(!r.allowed(&none, b"c", Access::Write, b"a/1"));
    }

    #[test]
    fn filtered_filters_make_reads_checked() {
        let mut r = Rights::new(None);
        let f = Bytes::from_static(b"#");
        assert!(!r.checks_reads());
        r.set_filtered(&f, true);
        r.set_filtered(&f, true);
        assert!(r.checks_reads());
        r.set_filtered(&f, false);
        assert!(!r.checks_reads());
    }
}
