//! Mosquitto ACL files (`acl_file`): parsing and access decisions.
//!
//! [`Acl::parse`] turns the file's text into rules; [`Acl::check`] answers
//! whether a client (its [`Who`]) may read, write or subscribe to a topic
//! or filter. Pure functions over caller-supplied text: no files, clocks or
//! sockets; peer input (client ids, usernames, topics) never panics.
//!
//! # File format (mosquitto.conf(5), `acl_file`)
//!
//! - `topic [read|write|readwrite|deny] TOPIC`: access defaults to
//!   `readwrite`; the topic is the rest of the line, blanks trimmed, and may
//!   contain spaces (then the access word is required, as in Mosquitto).
//!   A line `topic read` names the topic `read`, as in Mosquitto.
//! - `user NAME`: the `topic` lines after it, up to the next `user` line,
//!   apply to clients that connected with that username. Two sections with
//!   one name are merged.
//! - `pattern [read|write|readwrite|deny] TOPIC`: applies to every client,
//!   wherever it appears in the file. A level that is exactly `%c` is
//!   replaced by the client id, exactly `%u` by the username ("the
//!   substitution pattern must be the only text for that level"; `a%c` is
//!   literal, as in Mosquitto 2.1's matcher).
//! - `#` as the first non-blank character starts a comment; blank lines
//!   and trailing white space (so CRLF line ends) are ignored.
//! - `topic` lines before the first `user` line apply to anonymous clients
//!   only (no username in CONNECT), not to every client: this is what
//!   Mosquitto does (`acl__find_acls` picks the username-less list for
//!   anonymous clients and the user's own list otherwise).
//!
//! Anything else, a bad access word or a topic that is not a valid filter
//! is an [`AclError`] naming the 1-based line.
//!
//! # Decisions
//!
//! A client's rules are its section (its user's, or the anonymous one) plus
//! every pattern. Access is denied unless an allow rule grants it, and a
//! matching `deny` rule wins over any allow rule, whichever section or
//! pattern either came from. `read` grants [`Access::Read`] and
//! [`Access::Subscribe`], `write` grants [`Access::Write`].
//!
//! - Write and read take a topic name, matched with MQTT rules
//!   ([`ringmq_topic::matches`]): rule `a/#` allows `a` and `a/b`.
//! - Subscribe takes a filter (a `$share/{group}/` prefix is removed
//!   first). It is allowed when one readable rule covers it, i.e. matches
//!   every topic the filter can match (`a/#` covers `a/b`, `a/+`, `a/#`,
//!   but not `#` or `+/b`), and no deny rule covers it. When a deny rule
//!   only overlaps it (`#` with `deny secret/#`), it is allowed as
//!   [`SubscribeGrant::Filtered`]: the caller checks [`Access::Read`] for
//!   each delivery. A [`SubscribeGrant::Granted`] subscription never
//!   matches a topic that [`Access::Read`] refuses, so its deliveries need
//!   no check.
//! - `$` topics: `+` and `#` at the first level never match a level
//!   starting with `$` (MQTT-4.7.2-1), so rule `#` grants no `$SYS/...`;
//!   an allow pattern whose first level is `%c` or `%u` does not match `$`
//!   topics either (Mosquitto 2.1 skips them the same way).
//! - `%u` patterns never apply to anonymous clients (Mosquitto skips them).
//! - A client id or username that is empty, not UTF-8, or contains `+`,
//!   `#` or `/` is never substituted: an allow pattern using it matches
//!   nothing, and a deny pattern using it matches everything. Mosquitto
//!   2.x refuses such clients in its pattern phase outright.
//!
//! # Where this differs from Mosquitto
//!
//! - Mosquitto 2.x's default plugin accepts every SUBSCRIBE and filters at
//!   delivery; here a subscription must be covered by one readable rule
//!   (a union of rules does not count), so a client learns at SUBACK that
//!   a filter is out of bounds. Deny rules are applied at delivery, as
//!   in Mosquitto, for the subscriptions they overlap.
//! - Mosquitto checks the user section (denies, then allows) before the
//!   patterns, so a user-section allow beats a pattern deny; here every
//!   deny wins.
//! - `/` in a substituted value is refused here, as in Mosquitto 1.x
//!   (2.x only refuses `+` and `#`): `clients/%c/#` with client id `bob/x`
//!   would otherwise reach into client `bob`'s tree.
//! - Leading blanks before `#` or a keyword are accepted.
//! - Mosquitto always refuses client writes to `$SYS/...` (except bridge
//!   state) and non-subscribe use of `$share/...`; that policy is the
//!   broker's, not the file's, and is not applied here.
//!
//! No ACL file means everything is allowed: that is [`Acl::allow_all`],
//! which the broker uses when no `--acl-file` is given. A file with no
//! rules at all denies everything, as in Mosquitto.

mod filter;

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use ringmq_topic::{matches, parse_shared, validate_topic_filter, validate_topic_name, TopicError};

pub use filter::{covers, overlaps};

/// What a client wants to do with a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// Receive a message published to a topic name (delivery, retained).
    Read,
    /// Publish to a topic name (PUBLISH, or a will at CONNECT).
    Write,
    /// Subscribe to a topic filter.
    Subscribe,
}

/// What [`Acl::subscribe`] grants one filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SubscribeGrant {
    /// Not allowed: SUBACK 0x87 (v5) / 0x80 (v3).
    Refused,
    /// Allowed, and every topic the filter matches may be read.
    Granted,
    /// Allowed, but a deny rule overlaps it: check each delivery's topic
    /// with [`Access::Read`].
    Filtered,
}

/// The client a decision is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Who<'a> {
    /// Client identifier (as assigned, if the client sent none).
    pub client_id: &'a [u8],
    /// Username from CONNECT; `None` for an anonymous client.
    pub username: Option<&'a [u8]>,
}

/// The access word of a `topic` or `pattern` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Grant {
    Read,
    Write,
    ReadWrite,
}

impl Grant {
    fn allows(self, access: Access) -> bool {
        match access {
            Access::Read | Access::Subscribe => matches!(self, Grant::Read | Grant::ReadWrite),
            Access::Write => matches!(self, Grant::Write | Grant::ReadWrite),
        }
    }
}

/// The `topic` lines that apply to one kind of client, denies apart.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Section {
    deny: Vec<String>,
    allow: Vec<(Grant, String)>,
}

/// A `pattern` line, with what it substitutes noted at parse time.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    topic: String,
    uses_client_id: bool,
    uses_username: bool,
    /// The first level is `%c` or `%u`.
    placeholder_first: bool,
}

/// A pattern's filter for one client.
enum Substituted<'p> {
    /// The pattern does not apply to this client (`%u`, anonymous).
    Skip,
    /// A value could not be substituted safely.
    Unsafe,
    /// The filter with `%c` and `%u` levels replaced (borrowed when the
    /// pattern has neither).
    Filter(Cow<'p, str>),
}

impl Pattern {
    fn new(topic: &str) -> Self {
        let mut levels = topic.split('/');
        let placeholder_first = matches!(levels.next(), Some("%c" | "%u"));
        Pattern {
            uses_client_id: topic.split('/').any(|l| l == "%c"),
            uses_username: topic.split('/').any(|l| l == "%u"),
            placeholder_first,
            topic: topic.to_owned(),
        }
    }

    fn substitute(&self, who: &Who<'_>) -> Substituted<'_> {
        if self.uses_username && who.username.is_none() {
            return Substituted::Skip;
        }
        let client_id = if self.uses_client_id {
            match safe_value(who.client_id) {
                Some(v) => v,
                None => return Substituted::Unsafe,
            }
        } else {
            ""
        };
        let username = match who.username {
            Some(u) if self.uses_username => match safe_value(u) {
                Some(v) => v,
                None => return Substituted::Unsafe,
            },
            _ => "",
        };
        if !self.uses_client_id && !self.uses_username {
            return Substituted::Filter(Cow::Borrowed(&self.topic));
        }
        let mut out = String::with_capacity(self.topic.len() + client_id.len() + username.len());
        for (i, level) in self.topic.split('/').enumerate() {
            if i > 0 {
                out.push('/');
            }
            out.push_str(match level {
                "%c" => client_id,
                "%u" => username,
                other => other,
            });
        }
        Substituted::Filter(Cow::Owned(out))
    }
}

/// A client id or username that can stand for exactly one topic level
/// without widening a pattern: non-empty UTF-8 with no `+`, `#` or `/`.
fn safe_value(value: &[u8]) -> Option<&str> {
    let s = std::str::from_utf8(value).ok()?;
    let unsafe_char = s.contains(['+', '#', '/', '\0']);
    (!s.is_empty() && !unsafe_char).then_some(s)
}

/// Parsed ACL rules (or "allow everything"), ready for [`Acl::check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acl {
    allow_all: bool,
    /// `topic` lines before the first `user` line: anonymous clients.
    anonymous: Section,
    /// `topic` lines per `user` section, by username.
    users: HashMap<Vec<u8>, Section>,
    patterns_deny: Vec<Pattern>,
    patterns_allow: Vec<(Grant, Pattern)>,
}

/// Why an ACL file was refused, with its 1-based line number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclError {
    /// Line of the file the error is on, counting from 1.
    pub line: usize,
    /// What is wrong with it.
    pub kind: AclErrorKind,
}

/// What is wrong with an ACL file line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AclErrorKind {
    /// The line is not valid UTF-8.
    InvalidUtf8,
    /// The first word is not `topic`, `pattern` or `user`.
    UnknownKeyword(String),
    /// `topic` or `pattern` with nothing after it.
    MissingTopic,
    /// The access word is not `read`, `write`, `readwrite` or `deny`.
    InvalidAccess(String),
    /// The topic is not a valid topic filter.
    InvalidTopic(String, TopicError),
    /// `user` with no name after it.
    MissingUsername,
}

impl fmt::Display for AclError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ACL file line {}: ", self.line)?;
        match &self.kind {
            AclErrorKind::InvalidUtf8 => write!(f, "not valid UTF-8"),
            AclErrorKind::UnknownKeyword(word) => write!(
                f,
                "unknown keyword {word:?} (expected topic, pattern or user)"
            ),
            AclErrorKind::MissingTopic => write!(f, "missing topic"),
            AclErrorKind::InvalidAccess(word) => write!(
                f,
                "invalid access {word:?} (expected read, write, readwrite or deny)"
            ),
            AclErrorKind::InvalidTopic(topic, e) => write!(f, "invalid topic {topic:?}: {e}"),
            AclErrorKind::MissingUsername => write!(f, "missing username after user"),
        }
    }
}

impl std::error::Error for AclError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            AclErrorKind::InvalidTopic(_, e) => Some(e),
            _ => None,
        }
    }
}

/// Splits off the first word (up to a space or tab); the rest keeps its
/// leading blanks.
fn first_word(s: &str) -> (&str, &str) {
    let s = s.trim_start_matches([' ', '\t']);
    match s.find([' ', '\t']) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, ""),
    }
}

impl Acl {
    /// The decision when no ACL file is configured: everything allowed.
    pub fn allow_all() -> Self {
        Acl {
            allow_all: true,
            anonymous: Section::default(),
            users: HashMap::new(),
            patterns_deny: Vec::new(),
            patterns_allow: Vec::new(),
        }
    }

    /// Parses the text of an ACL file.
    pub fn parse(text: &str) -> Result<Self, AclError> {
        Self::parse_bytes(text.as_bytes())
    }

    /// Parses an ACL file's bytes; a line that is not UTF-8 is an error
    /// naming that line.
    pub fn parse_bytes(text: &[u8]) -> Result<Self, AclError> {
        let mut acl = Acl {
            allow_all: false,
            ..Acl::allow_all()
        };
        // None: still before the first `user` line (the anonymous section).
        let mut user: Option<Vec<u8>> = None;
        for (index, raw) in text.split(|&b| b == b'\n').enumerate() {
            let line_no = index + 1;
            let error = |kind| AclError {
                line: line_no,
                kind,
            };
            let line = std::str::from_utf8(raw).map_err(|_| error(AclErrorKind::InvalidUtf8))?;
            // Mosquitto strips trailing white space, which takes the CR of
            // CRLF with it.
            let line = line.trim_end();
            let (keyword, rest) = first_word(line);
            if keyword.is_empty() || keyword.starts_with('#') {
                continue;
            }
            match keyword {
                "topic" | "pattern" => {
                    let (word, after) = first_word(rest);
                    if word.is_empty() {
                        return Err(error(AclErrorKind::MissingTopic));
                    }
                    let after = after.trim_matches([' ', '\t']);
                    // One word only: it is the topic, access readwrite.
                    let (access, topic) = if after.is_empty() {
                        (None, word)
                    } else {
                        (Some(word), after)
                    };
                    let grant = match access {
                        None | Some("readwrite") => Some(Grant::ReadWrite),
                        Some("read") => Some(Grant::Read),
                        Some("write") => Some(Grant::Write),
                        Some("deny") => None,
                        Some(other) => {
                            return Err(error(AclErrorKind::InvalidAccess(other.to_owned())))
                        }
                    };
                    validate_topic_filter(topic)
                        .map_err(|e| error(AclErrorKind::InvalidTopic(topic.to_owned(), e)))?;
                    if keyword == "pattern" {
                        let pattern = Pattern::new(topic);
                        match grant {
                            Some(g) => acl.patterns_allow.push((g, pattern)),
                            None => acl.patterns_deny.push(pattern),
                        }
                    } else {
                        let section = match &user {
                            Some(name) => acl.users.entry(name.clone()).or_default(),
                            None => &mut acl.anonymous,
                        };
                        match grant {
                            Some(g) => section.allow.push((g, topic.to_owned())),
                            None => section.deny.push(topic.to_owned()),
                        }
                    }
                }
                "user" => {
                    let name = rest.trim_matches([' ', '\t']);
                    if name.is_empty() {
                        return Err(error(AclErrorKind::MissingUsername));
                    }
                    acl.users.entry(name.as_bytes().to_vec()).or_default();
                    user = Some(name.as_bytes().to_vec());
                }
                other => return Err(error(AclErrorKind::UnknownKeyword(other.to_owned()))),
            }
        }
        Ok(acl)
    }

    /// True when this is [`Acl::allow_all`].
    pub fn is_allow_all(&self) -> bool {
        self.allow_all
    }

    /// May `who` have `access` to `topic` (a topic name for read and
    /// write, a topic filter for subscribe)? See the module docs for the
    /// rules. Input that is not UTF-8 or not a valid name or filter is
    /// refused (unless everything is allowed).
    pub fn check(&self, who: &Who<'_>, access: Access, topic: &[u8]) -> bool {
        if self.allow_all {
            return true;
        }
        let Ok(topic) = std::str::from_utf8(topic) else {
            return false;
        };
        match access {
            Access::Read | Access::Write => {
                if validate_topic_name(topic).is_err() {
                    return false;
                }
                self.decide(who, access, topic, matches, matches)
            }
            Access::Subscribe => self.subscribe(who, topic.as_bytes()) != SubscribeGrant::Refused,
        }
    }

    /// What a SUBSCRIBE to `filter` is granted (a `$share/{group}/` prefix
    /// is removed first):
    /// - [`SubscribeGrant::Refused`] unless one readable rule covers the
    ///   filter, or when a deny rule covers it (nothing could be delivered);
    /// - [`SubscribeGrant::Filtered`] when a deny rule overlaps it: some
    ///   topics it matches may not be read, so each delivery must be
    ///   checked with [`Access::Read`] (Mosquitto filters every delivery);
    /// - [`SubscribeGrant::Granted`] otherwise: every topic the filter
    ///   matches is readable, so deliveries need no check.
    pub fn subscribe(&self, who: &Who<'_>, filter: &[u8]) -> SubscribeGrant {
        if self.allow_all {
            return SubscribeGrant::Granted;
        }
        let Ok(text) = std::str::from_utf8(filter) else {
            return SubscribeGrant::Refused;
        };
        let filter = match parse_shared(text) {
            Ok(Some(shared)) => shared.filter,
            Ok(None) => text,
            Err(_) => return SubscribeGrant::Refused,
        };
        if validate_topic_filter(filter).is_err() {
            return SubscribeGrant::Refused;
        }
        let access = Access::Subscribe;
        if !self.decide(who, access, filter, covers, covers) {
            SubscribeGrant::Refused
        } else if self.decide(who, access, filter, covers, overlaps) {
            SubscribeGrant::Granted
        } else {
            SubscribeGrant::Filtered
        }
    }

    /// The shared decision: no deny rule may `hit` the input, and some
    /// allow rule granting `access` must `grant` it.
    fn decide(
        &self,
        who: &Who<'_>,
        access: Access,
        input: &str,
        grant: impl Fn(&str, &str) -> bool,
        hit: impl Fn(&str, &str) -> bool,
    ) -> bool {
        let section = match who.username {
            Some(name) => self.users.get(name),
            None => Some(&self.anonymous),
        };
        // Denies first, from every source: any one that applies refuses.
        if let Some(section) = section {
            if section.deny.iter().any(|rule| hit(rule, input)) {
                return false;
            }
        }
        for pattern in &self.patterns_deny {
            match pattern.substitute(who) {
                Substituted::Skip => {}
                // Fail closed: a value we cannot substitute denies all.
                Substituted::Unsafe => return false,
                // Matched literally (no `$` exception): denying more is safe.
                Substituted::Filter(rule) => {
                    if hit(&rule, input) {
                        return false;
                    }
                }
            }
        }
        if let Some(section) = section {
            let granted = section
                .allow
                .iter()
                .any(|(g, rule)| g.allows(access) && grant(rule, input));
            if granted {
                return true;
            }
        }
        let dollar = input.starts_with('$');
        self.patterns_allow.iter().any(|(g, pattern)| {
            // A substituted first level must not open `$` topics
            // (MQTT-4.7.2-1 in spirit; Mosquitto 2.1 does the same).
            if !g.allows(access) || (dollar && pattern.placeholder_first) {
                return false;
            }
            match pattern.substitute(who) {
                Substituted::Filter(rule) => grant(&rule, input),
                Substituted::Skip | Substituted::Unsafe => false,
            }
        })
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every topic of 1..=`depth` levels over `alphabet`.
    pub(crate) fn all_topics(alphabet: &[&str], depth: usize) -> Vec<String> {
        let mut out: Vec<String> = alphabet.iter().map(|s| s.to_string()).collect();
        let mut last = out.clone();
        for _ in 1..depth {
            let next: Vec<String> = last
                .iter()
                .flat_map(|t| alphabet.iter().map(move |l| format!("{t}/{l}")))
                .collect();
            out.extend(next.iter().cloned());
            last = next;
        }
        out
    }

    fn acl(text: &str) -> Acl {
        match Acl::parse(text) {
            Ok(acl) => acl,
            Err(e) => panic!("{text:?}: {e}"),
        }
    }

    fn anon(client_id: &str) -> Who<'_> {
        Who {
            client_id: client_id.as_bytes(),
            username: None,
        }
    }

    fn user<'a>(client_id: &'a str, name: &'a str) -> Who<'a> {
        Who {
            client_id: client_id.as_bytes(),
            username: Some(name.as_bytes()),
        }
    }

    /// (access, topic or filter, expected) against one client.
    fn expect(acl: &Acl, who: &Who<'_>, table: &[(Access, &str, bool)]) {
        for &(access, topic, want) in table {
            assert_eq!(
                acl.check(who, access, topic.as_bytes()),
                want,
                "{who:?} {access:?} {topic:?}"
            );
        }
    }

    use Access::{Read, Subscribe as Sub, Write};

    #[test]
    fn access_words() {
        let a = acl("topic read r/#\n\
                     topic write w/#\n\
                     topic readwrite rw/#\n\
                     topic d/#\n\
                     topic deny rw/secret\n");
        expect(
            &a,
            &anon("c"),
            &[
                (Read, "r/x", true),
                (Sub, "r/x", true),
                (Write, "r/x", false),
                (Read, "w/x", false),
                (Sub, "w/x", false),
                (Write, "w/x", true),
                (Read, "rw/x", true),
                (Write, "rw/x", true),
                (Sub, "rw/x", true),
                // Overlaps the deny rule `rw/secret`: allowed, filtered.
                (Sub, "rw/+", true),
                (Read, "d/x", true),
                (Write, "d/x", true),
                (Read, "rw/secret", false),
                (Write, "rw/secret", false),
                (Sub, "rw/secret", false),
                (Read, "other", false),
                (Write, "other", false),
            ],
        );
    }

    #[test]
    fn global_lines_are_for_anonymous_clients_only() {
        let a = acl("topic public/#\nuser alice\ntopic alice/#\n");
        expect(
            &a,
            &anon("c"),
            &[(Read, "public/x", true), (Read, "alice/x", false)],
        );
        expect(
            &a,
            &user("c", "alice"),
            &[(Read, "alice/x", true), (Read, "public/x", false)],
        );
        // A user with no section has no rules (and there are no patterns).
        expect(&a, &user("c", "bob"), &[(Read, "public/x", false)]);
    }

    #[test]
    fn user_sections() {
        let a = acl("user alice\n\
                     topic read a/#\n\
                     user bob\n\
                     topic write b/#\n\
                     user alice\n\
                     topic write a2\n\
                     user carol smith\n\
                     topic c\n");
        let alice = user("x", "alice");
        expect(
            &a,
            &alice,
            &[
                (Read, "a/1", true),
                (Write, "a/1", false),
                (Write, "a2", true), // sections with one name merge
                (Write, "b/1", false),
            ],
        );
        expect(
            &a,
            &user("x", "bob"),
            &[(Write, "b/1", true), (Read, "a/1", false)],
        );
        expect(&a, &user("x", "carol smith"), &[(Read, "c", true)]);
        expect(&a, &user("x", "carol"), &[(Read, "c", false)]);
        expect(
            &a,
            &anon("x"),
            &[(Read, "a/1", false), (Write, "b/1", false)],
        );
    }

    #[test]
    fn patterns_substitute_client_id_and_username() {
        let a = acl("user admin\n\
                     topic #\n\
                     pattern read sensors/%c/#\n\
                     pattern write users/%u/out\n\
                     pattern both/%c/%u\n\
                     pattern readwrite lit/a%c\n");
        // Patterns apply to every client, even after a `user` line.
        let alice = user("dev1", "alice");
        expect(
            &a,
            &alice,
            &[
                (Read, "sensors/dev1/t", true),
                (Sub, "sensors/dev1/#", true),
                (Read, "sensors/dev2/t", false),
                (Sub, "sensors/+/t", false),
                (Write, "sensors/dev1/t", false),
                (Write, "users/alice/out", true),
                (Write, "users/bob/out", false),
                (Read, "users/alice/out", false),
                (Write, "both/dev1/alice", true),
                (Write, "both/alice/dev1", false),
                // `%c` inside a level is literal text.
                (Write, "lit/adev1", false),
                (Write, "lit/a%c", true),
            ],
        );
        // Anonymous: `%c` patterns apply, `%u` ones never do.
        let guest = anon("dev1");
        expect(
            &a,
            &guest,
            &[
                (Read, "sensors/dev1/t", true),
                (Write, "users//out", false),
                (Write, "both/dev1/", false),
            ],
        );
        // The admin's own section is in force alongside the patterns.
        expect(&a, &user("dev9", "admin"), &[(Write, "any/thing", true)]);
        // A pattern without `%c` or `%u` is a rule for every client.
        let plain = acl("user x\npattern read news/#\n");
        for who in [anon("c"), user("c", "x"), user("c", "y")] {
            expect(
                &plain,
                &who,
                &[(Read, "news/a", true), (Write, "news/a", false)],
            );
        }
    }

    #[test]
    fn unsafe_values_never_widen_a_pattern() {
        let a = acl("pattern clients/%c/#\npattern users/%u/#\ntopic open\n");
        for id in ["+", "#", "a/b", "", "a+b"] {
            let w = anon(id);
            for topic in ["clients/x/y", "clients/a/b", "clients/+/y", "clients/#"] {
                assert!(!a.check(&w, Read, topic.as_bytes()), "{id:?} {topic}");
                assert!(!a.check(&w, Sub, topic.as_bytes()), "{id:?} {topic}");
            }
            // Rules that do not use the value still apply.
            assert!(a.check(&w, Read, b"open"), "{id:?}");
        }
        let bad_user = user("ok", "a/b");
        expect(
            &a,
            &bad_user,
            &[(Read, "users/a/b", false), (Read, "clients/ok/x", true)],
        );
        let not_utf8 = Who {
            client_id: b"\xff",
            username: None,
        };
        assert!(!a.check(&not_utf8, Read, "clients/\u{fffd}/x".as_bytes()));

        // A deny pattern that cannot be substituted denies everything.
        let d = acl("topic #\npattern deny private/%c/#\n");
        expect(
            &d,
            &anon("ok"),
            &[(Read, "x", true), (Read, "private/ok/x", false)],
        );
        expect(&d, &anon("#"), &[(Read, "x", false), (Write, "x", false)]);
        // ... but a `%u` deny pattern does not concern anonymous clients.
        let d = acl("topic #\npattern deny private/%u/#\n");
        expect(&d, &anon("c"), &[(Read, "private/c/x", true)]);
        expect(&d, &user("c", "u"), &[(Read, "private/u/x", false)]);
    }

    #[test]
    fn a_deny_rule_overlapping_a_filter_makes_it_filtered_one_covering_it_refuses() {
        use SubscribeGrant::{Filtered, Granted, Refused};
        let a = acl("topic read #\ntopic deny secret/#\ntopic deny a/b\n");
        let who = anon("c");
        for (filter, want) in [
            ("#", Filtered),
            ("+/x", Filtered),
            ("a/+", Filtered),
            ("a/c", Granted),
            ("public/#", Granted),
            ("secret/#", Refused),
            ("secret/x", Refused),
            ("a/b", Refused),
            ("$share/g/#", Filtered),
            ("$share/g/secret/+", Refused),
        ] {
            assert_eq!(a.subscribe(&who, filter.as_bytes()), want, "{filter}");
        }
        assert_eq!(Acl::allow_all().subscribe(&who, b"#"), Granted);
        // A deny pattern whose value cannot be substituted denies all.
        let p = acl("topic read #\npattern deny x/%c\n");
        assert_eq!(p.subscribe(&anon("a+b"), b"public"), Refused);
        assert_eq!(p.subscribe(&anon("ab"), b"#"), Filtered);
        assert_eq!(p.subscribe(&anon("ab"), b"x/ab"), Refused);
        assert_eq!(p.subscribe(&anon("ab"), b"x/cd"), Granted);
    }

    #[test]
    fn subscribe_filter_must_lie_within_a_readable_rule() {
        let a = acl("topic read a/#\ntopic read +/b\ntopic write w/#\n");
        expect(
            &a,
            &anon("c"),
            &[
                (Sub, "a/b", true),
                (Sub, "a/+", true),
                (Sub, "a/#", true),
                (Sub, "a", true),
                (Sub, "#", false),
                (Sub, "+", false),
                (Sub, "+/b", true),
                (Sub, "x/b", true),
                (Sub, "+/c", false),
                (Sub, "+/#", false),
                (Sub, "w/x", false),
                (Sub, "$share/g/a/+", true),
                (Sub, "$share/g/#", false),
                // Invalid filters are refused.
                (Sub, "a/#/b", false),
                (Sub, "a/b+", false),
                (Sub, "$share//a", false),
                (Sub, "", false),
            ],
        );
        let all = acl("topic read #\n");
        expect(
            &all,
            &anon("c"),
            &[(Sub, "#", true), (Sub, "+/b", true), (Sub, "a/b/c", true)],
        );
    }

    #[test]
    fn deny_wins() {
        let a = acl("topic deny anon/secret\n\
                     topic anon/#\n\
                     user alice\n\
                     topic readwrite #\n\
                     topic deny secret/#\n\
                     pattern deny clients/%c/locked\n\
                     pattern readwrite clients/%c/#\n");
        let alice = user("dev1", "alice");
        expect(
            &a,
            &alice,
            &[
                (Read, "x", true),
                (Read, "secret/x", false),
                (Write, "secret", false),
                (Sub, "secret/+", false),
                // Overlapping a deny rule: allowed, deliveries filtered.
                (Sub, "#", true),
                (Sub, "+/x", true),
                (Sub, "open/#", true),
                // A pattern deny beats the user's `#` and the allow pattern.
                (Write, "clients/dev1/locked", false),
                (Write, "clients/dev1/other", true),
                (Sub, "clients/dev1/#", true),
                (Sub, "clients/dev1/locked", false),
            ],
        );
        expect(
            &a,
            &anon("c"),
            &[(Read, "anon/x", true), (Read, "anon/secret", false)],
        );
    }

    #[test]
    fn dollar_topics_need_dollar_rules() {
        let a = acl("topic readwrite #\n\
                     topic read +/status\n\
                     topic read $SYS/broker/#\n\
                     pattern readwrite %c/#\n");
        let w = anon("$SYS");
        expect(
            &a,
            &w,
            &[
                (Read, "a/b", true),
                (Read, "$SYS/uptime", false),
                (Write, "$SYS/broker/x", false),
                (Read, "$SYS/broker/load", true),
                (Read, "$SYS/status", false),
                (Sub, "$SYS/#", false),
                (Sub, "$SYS/broker/+", true),
                (Sub, "#", true),
                // `%c` = "$SYS" at the first level does not open `$SYS`.
                (Write, "$SYS/x", false),
                (Read, "$other/x", false),
            ],
        );
    }

    #[test]
    fn file_syntax() {
        let text = "# comment\r\n\
                    \r\n\
                    \t  \r\n\
                    topic read with space/x y\r\n\
                    topic read\r\n\
                    topic   write   spaced   \r\n\
                    \x20 # indented comment\n\
                    \x20 user  u 1  \n\
                    topic deny   a  b\n";
        let a = acl(text);
        expect(
            &a,
            &anon("c"),
            &[
                (Read, "with space/x y", true),
                (Sub, "with space/x y", true),
                (Write, "with space/x y", false),
                // `topic read` names the topic "read", access readwrite.
                (Write, "read", true),
                (Write, "spaced", true),
            ],
        );
        let u = user("c", "u 1");
        expect(
            &a,
            &u,
            &[(Read, "a  b", false), (Read, "with space/x y", false)],
        );
        // A topic with spaces needs the access word: in `topic a  b/#`, "a"
        // would be the access (see parse_errors_name_the_line).
        let spaced = acl("topic readwrite a  b/#\n");
        expect(
            &spaced,
            &anon("c"),
            &[(Read, "a  b/c", true), (Read, "a", false)],
        );
    }

    #[test]
    fn parse_errors_name_the_line() {
        let table: &[(&str, usize, AclErrorKind)] = &[
            (
                "topic a\nfoo bar\n",
                2,
                AclErrorKind::UnknownKeyword("foo".into()),
            ),
            ("# c\n\ntopic\n", 3, AclErrorKind::MissingTopic),
            ("topic   \n", 1, AclErrorKind::MissingTopic),
            ("pattern\r\n", 1, AclErrorKind::MissingTopic),
            (
                "topic a\ntopic a  b/#",
                2,
                AclErrorKind::InvalidAccess("a".into()),
            ),
            (
                "topic reed x\n",
                1,
                AclErrorKind::InvalidAccess("reed".into()),
            ),
            (
                "\n\ntopic read a/#/b\n",
                3,
                AclErrorKind::InvalidTopic("a/#/b".into(), TopicError::MisplacedMultiLevel),
            ),
            (
                "pattern write a+/%c\n",
                1,
                AclErrorKind::InvalidTopic("a+/%c".into(), TopicError::MisplacedSingleLevel),
            ),
            ("topic a\nuser\n", 2, AclErrorKind::MissingUsername),
            ("user  \t\n", 1, AclErrorKind::MissingUsername),
            ("Topic a\n", 1, AclErrorKind::UnknownKeyword("Topic".into())),
        ];
        for (text, line, kind) in table {
            let want = AclError {
                line: *line,
                kind: kind.clone(),
            };
            assert_eq!(Acl::parse(text), Err(want), "{text:?}");
        }
        let e = Acl::parse_bytes(b"topic a\ntopic \xff\n").unwrap_err();
        assert_eq!((e.line, e.kind), (2, AclErrorKind::InvalidUtf8));
        let e = Acl::parse("topic a\ntopic reed x").unwrap_err();
        assert_eq!(
            e.to_string(),
            "ACL file line 2: invalid access \"reed\" (expected read, write, readwrite or deny)"
        );
    }

    #[test]
    fn no_file_allows_all_and_empty_file_denies_all() {
        let open = Acl::allow_all();
        assert!(open.is_allow_all());
        for access in [Read, Write, Sub] {
            assert!(open.check(&anon("c"), access, b"#"));
            assert!(open.check(&user("c", "u"), access, b"$SYS/x"));
        }
        let empty = acl("# nothing\n\n");
        assert!(!empty.is_allow_all());
        for access in [Read, Write, Sub] {
            assert!(!empty.check(&anon("c"), access, b"a"));
            assert!(!empty.check(&user("c", "u"), access, b"a"));
        }
    }

    #[test]
    fn bad_topics_are_refused() {
        let a = acl("topic #\n");
        expect(
            &a,
            &anon("c"),
            &[
                (Write, "a/+", false),
                (Read, "a/#", false),
                (Write, "", false),
                (Write, "a\0b", false),
                (Write, "a/b", true),
            ],
        );
        assert!(!a.check(&anon("c"), Write, b"a/\xff"));
        assert!(!a.check(&anon("c"), Sub, b"a/\xff"));
    }

    /// One `topic`/`pattern` line over a small alphabet, so random rules
    /// and topics collide often.
    fn rule_line() -> impl Strategy<Value = String> {
        let keyword = prop::sample::select(vec!["topic", "pattern"]);
        let access = prop::sample::select(vec!["read", "write", "readwrite", "deny"]);
        let level = prop::sample::select(vec!["a", "b", "$x", "", "+", "%c", "%u", "c1", "u1"]);
        let levels = (prop::collection::vec(level, 1..=3), any::<bool>()).prop_map(|(l, h)| {
            let mut l = l;
            if h {
                l.push("#");
            }
            l.join("/")
        });
        (keyword, access, levels).prop_map(|(k, a, t)| format!("{k} {a} {t}"))
    }

    fn file() -> impl Strategy<Value = String> {
        let line = prop_oneof![
            4 => rule_line(),
            1 => prop::sample::select(vec!["user u1", "user u2"]).prop_map(String::from),
        ];
        prop::collection::vec(line, 0..8).prop_map(|lines| lines.join("\n"))
    }

    fn sub_filter() -> impl Strategy<Value = String> {
        let level = prop::sample::select(vec!["a", "b", "$x", "", "+", "c1", "u1"]);
        (prop::collection::vec(level, 1..=3), any::<bool>()).prop_map(|(l, h)| {
            let mut l = l;
            if h {
                l.push("#");
            }
            l.join("/")
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// A subscription granted unfiltered never matches a topic that
        /// read refuses, so the broker need not check its deliveries.
        #[test]
        fn subscribe_is_sound(
            text in file(),
            filter in sub_filter(),
            client in prop::sample::select(vec!["c1", "u1", "#", "a/b", "$x"]),
            name in prop::option::of(prop::sample::select(vec!["u1", "u2", "c1", "+"])),
        ) {
            let acl = Acl::parse(&text).expect("generated lines are valid");
            let who = Who { client_id: client.as_bytes(), username: name.map(str::as_bytes) };
            if acl.subscribe(&who, filter.as_bytes()) == SubscribeGrant::Granted {
                for t in all_topics(&["a", "b", "$x", "", "c1", "u1", "z"], 4) {
                    if matches(&filter, &t) && validate_topic_name(&t).is_ok() {
                        prop_assert!(
                            acl.check(&who, Access::Read, t.as_bytes()),
                            "subscribe {} granted but read {} refused\n{}", filter, t, text
                        );
                    }
                }
            }
        }

        #[test]
        fn arbitrary_input_never_panics(
            text in "(topic|pattern|user|#| |read|deny|%c|%u|/|\\+|a|\n|\r){0,60}",
            topic in "[a/+#$%cu]{0,8}",
        ) {
            if let Ok(acl) = Acl::parse(&text) {
                let who = Who { client_id: b"c", username: Some(b"u") };
                for access in [Access::Read, Access::Write, Access::Subscribe] {
                    let _ = acl.check(&who, access, topic.as_bytes());
                }
            }
        }
    }
}
