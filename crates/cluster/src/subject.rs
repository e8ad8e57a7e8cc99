//! MQTT topic names and filters as NATS subjects.
//!
//! A topic `l1/l2/.../ln` becomes `PREFIX.K.e(l1).e(l2)...e(ln)`: `PREFIX`
//! is the cluster's namespace (one or more plain tokens), `K` is `t` for an
//! ordinary topic and `d` for one whose first level starts with `$` (so a
//! wildcard at the first level, which MQTT never lets match a `$` topic,
//! is only ever subscribed under `t`), and `e` encodes one level as one
//! NATS token:
//!
//! - an empty level (MQTT allows `a//b`, `/a`) is the token `%`;
//! - `%`, `.`, `*`, `>`, and ASCII spaces and control bytes are written
//!   `%XX` (two upper-case hex digits); every other byte (UTF-8 included)
//!   stands for itself.
//!
//! So a token is never empty, never `*` or `>`, never holds a `.` or a
//! space, and the encoding is injective: [`topic_of`] inverts
//! [`topic_subject`] exactly and refuses any subject it would not have
//! written (a non-canonical escape, a foreign prefix).
//!
//! A filter maps to the NATS subscriptions that together match exactly
//! the topics it matches ([`filter_subjects`]): `+` is `*` (one token, one
//! level), and a final `#` is `>` (one or more tokens) plus the subject of
//! its parent level, since `a/#` also matches `a` (MQTT 4.7.1.2). A filter
//! that is only `#` needs no parent: every topic has a level. `$share/G/F`
//! is `F`'s subjects in the NATS queue group `e(G).e(F)` (`F` as one
//! token: `/` stands for itself there), one queue group per shared
//! subscription: NATS would merge subscriptions of one queue name across
//! subjects.
//!
//! A topic's retained message lives in a JetStream stream that keeps one
//! message per subject ([`retained_stream`], subjects [`retained_subjects`]),
//! on `PREFIX.r.K.e(l1)...` ([`retained_subject`], inverted by
//! [`topic_of_retained`]): the kind token is never `r`, so no topic subject
//! falls under the stream and no filter's subscription matches a retained
//! subject.
//!
//! A QoS 1/2 publish that crosses nodes through JetStream
//! (`--cluster-qos durable`) is published on its topic's subject with the
//! kind token prefixed by `q` ([`stream_subject`]: `PREFIX.q.t.e(l1)...`),
//! which the cluster's message stream captures ([`stream_filter`]). The
//! stream republishes each stored message on its topic subject again
//! ([`republish_source`] to [`republish_destination`]: the `q` token
//! dropped), where the nodes' ordinary subscriptions get it. The
//! destination names the kind token through a NATS subject transform
//! (`{{wildcard(1)}}`) instead of being `PREFIX.>`: NATS refuses a
//! republish destination that overlaps the stream's own subjects (a
//! cycle).

use std::fmt;

/// Why a topic, filter or prefix cannot be mapped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubjectError {
    /// The cluster prefix is empty, has an empty token, a wildcard or a
    /// space.
    Prefix,
    /// Not a valid MQTT topic name or filter.
    Mqtt,
}

impl fmt::Display for SubjectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SubjectError::Prefix => {
                "a cluster subject prefix is one or more dot-separated tokens without \
                 spaces, `*` or `>`"
            }
            SubjectError::Mqtt => "not a valid MQTT topic name or filter",
        })
    }
}

impl std::error::Error for SubjectError {}

/// Checks a cluster subject prefix (`ringmq`, `acme.mqtt`).
pub fn check_prefix(prefix: &str) -> Result<(), SubjectError> {
    let ok = !prefix.is_empty()
        && prefix.split('.').all(|t| {
            !t.is_empty() && t != "*" && t != ">" && !t.bytes().any(|b| b <= b' ' || b == 0x7f)
        });
    if ok {
        Ok(())
    } else {
        Err(SubjectError::Prefix)
    }
}

/// Whether `b` must be escaped inside a token.
fn escaped(b: u8) -> bool {
    matches!(b, b'%' | b'.' | b'*' | b'>') || b <= b' ' || b == 0x7f
}

/// Appends level `level` as one token.
fn push_token(out: &mut String, level: &str) {
    if level.is_empty() {
        out.push('%');
        return;
    }
    for c in level.chars() {
        // Escaped bytes are all ASCII; a multi-byte character is copied.
        match u8::try_from(c).ok().filter(|&b| escaped(b)) {
            Some(b) => {
                out.push('%');
                out.push(char::from(b"0123456789ABCDEF"[usize::from(b >> 4)]));
                out.push(char::from(b"0123456789ABCDEF"[usize::from(b & 0xf)]));
            }
            None => out.push(c),
        }
    }
}

/// The level a token stands for, if `token` is one `push_token` writes.
fn level_of(token: &str) -> Option<String> {
    if token == "%" {
        return Some(String::new());
    }
    let bytes = token.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = token.get(i + 1..i + 3)?;
            let b = u8::from_str_radix(hex, 16).ok()?;
            // Canonical only: upper-case digits, and only bytes that must be
            // escaped (so each level has exactly one token).
            if !escaped(b) || hex.bytes().any(|h| h.is_ascii_lowercase()) {
                return None;
            }
            out.push(b);
            i += 3;
        } else {
            if escaped(bytes[i]) {
                return None;
            }
            out.push(bytes[i]);
            i += 1;
        }
    }
    let level = String::from_utf8(out).ok()?;
    (!level.is_empty()).then_some(level)
}

/// The kind token: `d` when the first level starts with `$`.
fn kind(first_level: &str) -> &'static str {
    if first_level.starts_with('$') {
        "d"
    } else {
        "t"
    }
}

/// The subject of MQTT topic name `topic`.
pub fn topic_subject(prefix: &str, topic: &str) -> Result<String, SubjectError> {
    check_prefix(prefix)?;
    ringmq_topic::validate_topic_name(topic).map_err(|_| SubjectError::Mqtt)?;
    let mut out = String::with_capacity(prefix.len() + 3 + topic.len() + 8);
    out.push_str(prefix);
    out.push('.');
    out.push_str(kind(topic.split('/').next().unwrap_or("")));
    for level in topic.split('/') {
        out.push('.');
        push_token(&mut out, level);
    }
    Ok(out)
}

/// The MQTT topic of a subject [`topic_subject`] made under `prefix`;
/// `None` for any other subject.
pub fn topic_of(prefix: &str, subject: &str) -> Option<String> {
    topic_of_kind(subject.strip_prefix(prefix)?.strip_prefix('.')?)
}

/// The topic of `K.levels...` (a topic subject without its prefix).
fn topic_of_kind(rest: &str) -> Option<String> {
    let (k, levels) = rest.split_once('.')?;
    let mut topic = String::with_capacity(levels.len());
    for (n, token) in levels.split('.').enumerate() {
        if n > 0 {
            topic.push('/');
        }
        topic.push_str(&level_of(token)?);
    }
    let first = topic.split('/').next().unwrap_or("");
    if k != kind(first) {
        return None;
    }
    ringmq_topic::validate_topic_name(&topic).ok()?;
    Some(topic)
}

/// The token after the prefix that starts every retained subject.
const RETAINED: &str = "r";

/// The subject of `topic`'s retained message in the cluster's stream:
/// `PREFIX.r.` and then what follows the prefix in its
/// [`topic_subject`] (`ringmq.r.t.a.b` for `a/b`). The stream keeps one
/// message per subject, so one per topic.
pub fn retained_subject(prefix: &str, topic: &str) -> Result<String, SubjectError> {
    let subject = topic_subject(prefix, topic)?;
    let mut out = String::with_capacity(subject.len() + 2);
    out.push_str(prefix);
    out.push('.');
    out.push_str(RETAINED);
    out.push_str(&subject[prefix.len()..]);
    Ok(out)
}

/// The MQTT topic of a subject [`retained_subject`] made under `prefix`;
/// `None` for any other subject.
pub fn topic_of_retained(prefix: &str, subject: &str) -> Option<String> {
    let rest = subject.strip_prefix(prefix)?.strip_prefix('.')?;
    topic_of_kind(rest.strip_prefix(RETAINED)?.strip_prefix('.')?)
}

/// What the retained stream holds: every [`retained_subject`] of `prefix`
/// (`PREFIX.r.>`), and nothing the topic subjects use.
pub fn retained_subjects(prefix: &str) -> Result<String, SubjectError> {
    check_prefix(prefix)?;
    Ok(format!("{prefix}.{RETAINED}.>"))
}

/// The name of the JetStream stream of `prefix`'s retained messages.
///
/// Stream names may not hold `.`, `*`, `>`, slashes, spaces or control
/// bytes, which a prefix may (inside a token). So: ASCII letters and
/// digits stand for themselves, `.` becomes `-`, every other byte `_XX`
/// (two upper-case hex digits), then `_retained` (`ringmq_retained`,
/// `acme-mqtt_retained`). Distinct prefixes get distinct names.
pub fn retained_stream(prefix: &str) -> Result<String, SubjectError> {
    check_prefix(prefix)?;
    let mut out = String::with_capacity(prefix.len() + 9);
    for b in prefix.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => out.push(char::from(b)),
            b'.' => out.push('-'),
            _ => {
                out.push('_');
                out.push(char::from(b"0123456789ABCDEF"[usize::from(b >> 4)]));
                out.push(char::from(b"0123456789ABCDEF"[usize::from(b & 0xf)]));
            }
        }
    }
    out.push_str("_retained");
    Ok(out)
}

/// The token that marks a subject the message stream captures.
const STORED: &str = "q";

/// The subject on which a publish whose topic subject is `topic_subject`
/// (one [`topic_subject`] made under `prefix`) enters the message stream:
/// `PREFIX.q.` and the topic subject without the prefix. `None` for a
/// subject not under `prefix`.
pub fn stream_subject(prefix: &str, topic_subject: &str) -> Option<String> {
    let rest = topic_subject.strip_prefix(prefix)?.strip_prefix('.')?;
    if rest.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(prefix.len() + 3 + rest.len());
    out.push_str(prefix);
    out.push('.');
    out.push_str(STORED);
    out.push('.');
    out.push_str(rest);
    Some(out)
}

/// The subjects of the message stream: every [`stream_subject`].
pub fn stream_filter(prefix: &str) -> String {
    format!("{prefix}.{STORED}.>")
}

/// The stream's republish source: a stored subject, its kind token as the
/// first wildcard.
pub fn republish_source(prefix: &str) -> String {
    format!("{prefix}.{STORED}.*.>")
}

/// The stream's republish destination: the topic subject again (the kind
/// token, then the levels).
pub fn republish_destination(prefix: &str) -> String {
    format!("{prefix}.{{{{wildcard(1)}}}}.>")
}

/// The NATS subscriptions of one MQTT filter.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FilterSubjects {
    /// One or two subjects (two for a final `#` below the first level).
    pub subjects: Vec<String>,
    /// The queue group of a `$share/G/F` filter (`e(G)`).
    pub queue: Option<String>,
}

/// The NATS subscriptions matching exactly the topics `filter` matches
/// (a `$share/G/F` filter: `F`'s, in queue group `G`).
pub fn filter_subjects(prefix: &str, filter: &str) -> Result<FilterSubjects, SubjectError> {
    check_prefix(prefix)?;
    ringmq_topic::validate_topic_filter(filter).map_err(|_| SubjectError::Mqtt)?;
    let (inner, queue) = match ringmq_topic::parse_shared(filter) {
        Ok(Some(shared)) => {
            // One queue group per shared subscription: NATS merges queue
            // subscriptions of one name across subjects, MQTT does not
            // merge `$share/g/a` with `$share/g/b`.
            let mut queue = String::new();
            push_token(&mut queue, shared.group);
            queue.push('.');
            push_token(&mut queue, shared.filter);
            (shared.filter, Some(queue))
        }
        Ok(None) => (filter, None),
        Err(_) => return Err(SubjectError::Mqtt),
    };
    let levels: Vec<&str> = inner.split('/').collect();
    let first = levels[0];
    let k = if first == "+" || first == "#" {
        "t"
    } else {
        kind(first)
    };
    let mut base = String::with_capacity(prefix.len() + 3 + inner.len() + 8);
    base.push_str(prefix);
    base.push('.');
    base.push_str(k);
    let mut subjects = Vec::with_capacity(2);
    for (n, level) in levels.iter().enumerate() {
        match *level {
            "#" => {
                // `#` is last (validated). Below the first level it also
                // matches the parent itself.
                if n > 0 {
                    subjects.push(base.clone());
                }
                base.push_str(".>");
            }
            "+" => base.push_str(".*"),
            literal => {
                base.push('.');
                push_token(&mut base, literal);
            }
        }
    }
    subjects.push(base);
    Ok(FilterSubjects { subjects, queue })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const P: &str = "ringmq";

    /// NATS subject matching, as the server does it: `*` one token, a
    /// final `>` one or more.
    fn nats_matches(pattern: &str, subject: &str) -> bool {
        let p: Vec<&str> = pattern.split('.').collect();
        let s: Vec<&str> = subject.split('.').collect();
        for (i, t) in p.iter().enumerate() {
            match *t {
                ">" => return i == p.len() - 1 && s.len() > i,
                "*" => {
                    if i >= s.len() {
                        return false;
                    }
                }
                lit => {
                    if s.get(i) != Some(&lit) {
                        return false;
                    }
                }
            }
        }
        p.len() == s.len()
    }

    #[test]
    fn topics_map_to_subjects_and_back() {
        for (topic, subject) in [
            ("a/b", "ringmq.t.a.b"),
            ("a", "ringmq.t.a"),
            ("/", "ringmq.t.%.%"),
            ("a//b", "ringmq.t.a.%.b"),
            ("$SYS/broker/uptime", "ringmq.d.$SYS.broker.uptime"),
            ("a.b/c*d/>", "ringmq.t.a%2Eb.c%2Ad.%3E"),
            ("100%/x y", "ringmq.t.100%25.x%20y"),
            ("café/ü", "ringmq.t.café.ü"),
        ] {
            assert_eq!(topic_subject(P, topic).as_deref(), Ok(subject), "{topic}");
            assert_eq!(topic_of(P, subject).as_deref(), Some(topic), "{subject}");
        }
    }

    #[test]
    fn foreign_and_non_canonical_subjects_are_refused() {
        for subject in [
            "other.t.a",
            "ringmq.x.a",
            "ringmq.t",
            "ringmq.t.a..b",
            "ringmq.t.%41",    // 'A' is never escaped
            "ringmq.t.%2e",    // lower-case hex
            "ringmq.t.%2",     // short escape
            "ringmq.d.a",      // kind d for a topic without `$`
            "ringmq.t.$SYS.x", // kind t for a `$` topic
            "ringmq.t.a.*",    // a wildcard is no topic
            "ringmq.t.a+b",    // `+` is not a valid topic character
        ] {
            assert_eq!(topic_of(P, subject), None, "{subject}");
        }
    }

    #[test]
    fn filters_map_to_their_subscriptions() {
        let subs = |f: &str| filter_subjects(P, f).expect(f);
        assert_eq!(subs("a/+/c").subjects, ["ringmq.t.a.*.c"]);
        assert_eq!(subs("a/#").subjects, ["ringmq.t.a", "ringmq.t.a.>"]);
        assert_eq!(subs("#").subjects, ["ringmq.t.>"]);
        assert_eq!(subs("+").subjects, ["ringmq.t.*"]);
        assert_eq!(
            subs("$SYS/#").subjects,
            ["ringmq.d.$SYS", "ringmq.d.$SYS.>"]
        );
        let shared = subs("$share/g.1/a/#");
        assert_eq!(shared.subjects, ["ringmq.t.a", "ringmq.t.a.>"]);
        assert_eq!(shared.queue.as_deref(), Some("g%2E1.a/#"));
        // Distinct shared subscriptions of one group are distinct queues.
        assert_ne!(subs("$share/g/a/+").queue, subs("$share/g/a/b").queue);
        assert_ne!(subs("$share/g.a/b").queue, subs("$share/g/a.b").queue);
        assert_eq!(filter_subjects(P, "a/#/b"), Err(SubjectError::Mqtt));
        assert_eq!(
            filter_subjects("bad prefix", "a"),
            Err(SubjectError::Prefix)
        );
        assert_eq!(topic_subject("a.>", "a"), Err(SubjectError::Prefix));
    }

    /// NATS's republish transform, as the server applies it to
    /// `source`/`destination` of the two forms above.
    fn republish(source: &str, destination: &str, subject: &str) -> Option<String> {
        let head = source.strip_suffix(".*.>")?;
        let rest = subject.strip_prefix(head)?.strip_prefix('.')?;
        let (first, tail) = rest.split_once('.')?;
        Some(
            destination
                .replace("{{wildcard(1)}}", first)
                .replace('>', tail),
        )
    }

    #[test]
    fn stored_subjects_are_captured_and_republished_on_the_topic_subject() {
        for prefix in [P, "acme.mqtt"] {
            for topic in ["a/b", "a", "/", "$x/y", "a.b/c*d/>", "café"] {
                let subject = topic_subject(prefix, topic).unwrap();
                let stored = stream_subject(prefix, &subject).unwrap();
                assert!(nats_matches(&stream_filter(prefix), &stored), "{stored}");
                assert!(nats_matches(&republish_source(prefix), &stored), "{stored}");
                let again = republish(
                    &republish_source(prefix),
                    &republish_destination(prefix),
                    &stored,
                );
                assert_eq!(again.as_deref(), Some(subject.as_str()), "{topic}");
                // A stored subject is no topic's: nodes subscribed to
                // topics never see it before the stream stores it.
                assert_eq!(topic_of(prefix, &stored), None, "{stored}");
                for filter in ["#", "+/#", "a/#", "$x/#"] {
                    let f = filter_subjects(prefix, filter).unwrap();
                    assert!(
                        !f.subjects.iter().any(|p| nats_matches(p, &stored)),
                        "{filter} {stored}"
                    );
                }
            }
        }
        assert_eq!(
            stream_subject(P, "ringmq.t.a.b").as_deref(),
            Some("ringmq.q.t.a.b")
        );
        assert_eq!(stream_filter(P), "ringmq.q.>");
        assert_eq!(republish_source(P), "ringmq.q.*.>");
        assert_eq!(republish_destination(P), "ringmq.{{wildcard(1)}}.>");
        assert_eq!(stream_subject(P, "other.t.a"), None);
        assert_eq!(stream_subject(P, "ringmqx.t.a"), None);
        assert_eq!(stream_subject(P, "ringmq."), None);
    }

    #[test]
    fn first_level_wildcards_never_match_dollar_topics() {
        for filter in ["#", "+/x", "+"] {
            let f = filter_subjects(P, filter).unwrap();
            for topic in ["$SYS/x", "$x"] {
                let s = topic_subject(P, topic).unwrap();
                assert!(
                    !f.subjects.iter().any(|p| nats_matches(p, &s)),
                    "{filter} {topic}"
                );
            }
        }
    }

    #[test]
    fn retained_subjects_sit_beside_the_topic_subjects() {
        for (topic, subject) in [
            ("a/b", "ringmq.r.t.a.b"),
            ("/", "ringmq.r.t.%.%"),
            ("$SYS/x", "ringmq.r.d.$SYS.x"),
            ("a.b/>", "ringmq.r.t.a%2Eb.%3E"),
        ] {
            assert_eq!(
                retained_subject(P, topic).as_deref(),
                Ok(subject),
                "{topic}"
            );
            assert_eq!(
                topic_of_retained(P, subject).as_deref(),
                Some(topic),
                "{subject}"
            );
        }
        assert_eq!(
            retained_subject("acme.mqtt", "a").as_deref(),
            Ok("acme.mqtt.r.t.a")
        );
        assert_eq!(retained_subjects(P).as_deref(), Ok("ringmq.r.>"));
        assert_eq!(retained_subject("a b", "a"), Err(SubjectError::Prefix));
        assert_eq!(retained_subject(P, "a/+"), Err(SubjectError::Mqtt));
        for subject in [
            "ringmq.t.a",   // a topic subject is not a retained one
            "ringmq.r.a",   // no kind
            "ringmq.r.x.a", // unknown kind
            "ringmq.r",
            "other.r.t.a",
            "ringmq.rr.t.a",
        ] {
            assert_eq!(topic_of_retained(P, subject), None, "{subject}");
        }
        // A topic subject never falls under the stream's subjects.
        let s = topic_subject(P, "r/t/a").unwrap();
        assert!(!nats_matches(&retained_subjects(P).unwrap(), &s));
        assert_eq!(topic_of_retained(P, &s), None);
    }

    #[test]
    fn stream_names_are_valid_and_readable() {
        for (prefix, name) in [
            ("ringmq", "ringmq_retained"),
            ("acme.mqtt", "acme-mqtt_retained"),
            ("a-b", "a_2Db_retained"),
            ("a_b", "a_5Fb_retained"),
            ("a/b\\c", "a_2Fb_5Cc_retained"),
            ("café", "caf_C3_A9_retained"),
            ("a*b", "a_2Ab_retained"),
        ] {
            assert_eq!(retained_stream(prefix).as_deref(), Ok(name), "{prefix}");
        }
        assert_eq!(retained_stream("a..b"), Err(SubjectError::Prefix));
    }

    fn level() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            Just("$SYS".to_string()),
            Just("a".to_string()),
            Just("b".to_string()),
            "[a-c.*>% é$]{1,3}",
        ]
    }

    fn topic() -> impl Strategy<Value = String> {
        prop::collection::vec(level(), 1..5).prop_map(|l| l.join("/"))
    }

    fn filter() -> impl Strategy<Value = String> {
        let level = prop_oneof![
            3 => level(),
            2 => Just("+".to_string()),
        ];
        (prop::collection::vec(level, 1..5), any::<bool>()).prop_map(|(mut l, hash)| {
            if hash {
                l.push("#".to_string());
            }
            l.join("/")
        })
    }

    /// Prefixes of one to three tokens, each often holding a byte a
    /// stream name may not.
    fn prefix() -> impl Strategy<Value = String> {
        // A token's first byte is never a wildcard: `*` or `>` alone is not
        // a valid prefix token, and rejecting those aborted the test.
        prop::collection::vec("[a-c_/é-][a-c_*>/é-]{0,2}", 1..4).prop_map(|t| t.join("."))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn every_topic_round_trips(topic in topic()) {
            prop_assume!(ringmq_topic::validate_topic_name(&topic).is_ok());
            let subject = topic_subject(P, &topic).unwrap();
            prop_assert!(!subject.split('.').any(|t| t.is_empty() || t == "*" || t == ">"));
            prop_assert!(!subject.contains(' '));
            prop_assert_eq!(topic_of(P, &subject), Some(topic));
        }

        #[test]
        fn every_retained_topic_round_trips(topic in topic()) {
            prop_assume!(ringmq_topic::validate_topic_name(&topic).is_ok());
            let subject = retained_subject(P, &topic).unwrap();
            prop_assert!(nats_matches(&retained_subjects(P).unwrap(), &subject));
            prop_assert!(!subject.split('.').any(|t| t.is_empty() || t == "*" || t == ">"));
            prop_assert_eq!(topic_of(P, &subject), None);
            prop_assert_eq!(topic_of_retained(P, &subject), Some(topic));
        }

        /// Stream names hold none of the bytes NATS refuses in a name, and
        /// two prefixes never share one.
        #[test]
        fn stream_names_are_valid_and_distinct(a in prefix(), b in prefix()) {
            prop_assume!(check_prefix(&a).is_ok() && check_prefix(&b).is_ok());
            let (na, nb) = (retained_stream(&a).unwrap(), retained_stream(&b).unwrap());
            prop_assert!(na.bytes().all(|c| c.is_ascii_graphic() && !b".*>/\\".contains(&c)), "{}", na);
            prop_assert_eq!(na == nb, a == b, "{} {}", na, nb);
        }

        /// The mapped subscriptions match a topic's subject exactly when the
        /// MQTT filter matches the topic.
        #[test]
        fn mapped_matching_is_mqtt_matching(filter in filter(), topic in topic()) {
            prop_assume!(ringmq_topic::validate_topic_name(&topic).is_ok());
            prop_assume!(ringmq_topic::validate_topic_filter(&filter).is_ok());
            prop_assume!(!filter.starts_with("$share/"));
            let f = filter_subjects(P, &filter).unwrap();
            let s = topic_subject(P, &topic).unwrap();
            let nats = f.subjects.iter().any(|p| nats_matches(p, &s));
            prop_assert_eq!(nats, ringmq_topic::matches(&filter, &topic), "{:?} {:?}", f, s);
        }
    }
}
