//! Client-id rules (`--client-id-pattern`): which client ids a named user
//! may connect with, so one user cannot take over another user's id.
//!
//! A pattern is a glob over bytes: `*` matches any run of bytes (the empty
//! one too), `%u` stands for the username, taken literally (a `*` in a
//! username matches only `*`), and every other byte matches itself. So
//! `%u-*` lets user `alice` connect as `alice-1` or `alice-`, not as
//! `bob-1` or `alice`. A client id passes when any one pattern matches.

use std::fmt;

/// One piece of a parsed pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(Vec<u8>),
    Username,
    Star,
}

/// A parsed `--client-id-pattern`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdPattern {
    text: String,
    pieces: Vec<Piece>,
}

/// Why a pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternError(&'static str);

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for PatternError {}

impl ClientIdPattern {
    /// Parses a pattern: `*` and `%u` are special, everything else literal.
    pub fn parse(text: &str) -> Result<Self, PatternError> {
        if text.is_empty() {
            return Err(PatternError("empty client id pattern"));
        }
        let mut pieces = Vec::new();
        let mut literal = Vec::new();
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let special = match (bytes[i], bytes.get(i + 1)) {
                (b'*', _) => Some((Piece::Star, 1)),
                (b'%', Some(b'u')) => Some((Piece::Username, 2)),
                _ => None,
            };
            match special {
                Some((piece, len)) => {
                    if !literal.is_empty() {
                        pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                    }
                    // `**` is `*`.
                    if !(piece == Piece::Star && pieces.last() == Some(&Piece::Star)) {
                        pieces.push(piece);
                    }
                    i += len;
                }
                None => {
                    literal.push(bytes[i]);
                    i += 1;
                }
            }
        }
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        Ok(ClientIdPattern {
            text: text.to_owned(),
            pieces,
        })
    }

    /// The pattern as given.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Does `client_id` match, for the client named `username`?
    pub fn matches(&self, username: &[u8], client_id: &[u8]) -> bool {
        // Runs of literal bytes between stars (the username expanded).
        let mut segments: Vec<Vec<u8>> = vec![Vec::new()];
        for piece in &self.pieces {
            match piece {
                Piece::Literal(bytes) => segments.last_mut().unwrap().extend_from_slice(bytes),
                Piece::Username => segments.last_mut().unwrap().extend_from_slice(username),
                Piece::Star => segments.push(Vec::new()),
            }
        }
        let (first, rest) = segments.split_first().expect("one segment at least");
        let Some(mut tail) = client_id.strip_prefix(first.as_slice()) else {
            return false;
        };
        let Some((last, middle)) = rest.split_last() else {
            // No star: the whole id is the literal.
            return tail.is_empty();
        };
        // Leftmost match of each middle segment keeps the most room for
        // the ones after it; the last one must end the id.
        for segment in middle {
            match find(tail, segment) {
                Some(at) => tail = &tail[at + segment.len()..],
                None => return false,
            }
        }
        tail.len() >= last.len() && tail.ends_with(last)
    }
}

/// Index of the first occurrence of `needle` in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(text: &str) -> ClientIdPattern {
        ClientIdPattern::parse(text).unwrap()
    }

    #[test]
    fn username_and_star() {
        let pat = p("%u-*");
        assert!(pat.matches(b"alice", b"alice-1"));
        assert!(pat.matches(b"alice", b"alice-"));
        assert!(!pat.matches(b"alice", b"alice"));
        assert!(!pat.matches(b"alice", b"bob-1"));
        assert!(!pat.matches(b"alice", b"xalice-1"));
        // The username is literal: its `*` matches only itself.
        assert!(p("%u").matches(b"a*", b"a*"));
        assert!(!p("%u").matches(b"a*", b"abc"));
        assert!(p("fleet/%u/*/x").matches(b"u", b"fleet/u/a/b/x"));
        assert!(!p("fleet/%u/*/x").matches(b"u", b"fleet/u/x"));
        assert!(p("*").matches(b"u", b""));
        assert!(p("a**b").matches(b"u", b"ab"));
        assert!(p("*%u*").matches(b"u", b"xux"));
        assert!(!p("*%u*").matches(b"u", b"xyz"));
        // `%` before anything but `u` is literal.
        assert!(p("100%x").matches(b"u", b"100%x"));
        assert!(p("a%").matches(b"u", b"a%"));
        assert!(ClientIdPattern::parse("").is_err());
    }

    /// The obvious exponential matcher, as the reference.
    fn reference(pattern: &[u8], id: &[u8]) -> bool {
        match pattern.split_first() {
            None => id.is_empty(),
            Some((b'*', rest)) => (0..=id.len()).any(|i| reference(rest, &id[i..])),
            Some((c, rest)) => id.first() == Some(c) && reference(rest, &id[1..]),
        }
    }

    proptest! {
        #[test]
        fn agrees_with_the_reference(pattern in "[ab*]{1,8}", id in "[ab]{0,8}") {
            prop_assert_eq!(p(&pattern).matches(b"", id.as_bytes()), reference(pattern.as_bytes(), id.as_bytes()));
        }
    }
}
