//! Topic name and topic filter rules (MQTT 5.0 section 4.7) and the
//! reference matcher [`matches()`].
//!
//! Invariants: nothing here allocates or panics, whatever the input; a name
//! accepted by [`validate_topic_name`] has no wildcard characters; a filter
//! accepted by [`validate_topic_filter`] has `+` and `#` only as whole
//! levels and `#` only as the last level.
//!
//! Levels are the pieces between `/` separators; empty levels are legal
//! (`"a//b"`, `"/a"`, `"a/"`), and `"/"` has two empty levels.

use crate::share::parse_shared;
use crate::TopicError;

/// Longest topic name or filter in bytes: a UTF-8 string field's limit
/// (MQTT-4.7.3-3).
pub const MAX_TOPIC_LEN: usize = 65_535;

/// Rules common to names and filters: length and the null character.
fn check_common(s: &str) -> Result<(), TopicError> {
    if s.is_empty() {
        return Err(TopicError::Empty); // MQTT-4.7.3-1
    }
    if s.len() > MAX_TOPIC_LEN {
        return Err(TopicError::TooLong); // MQTT-4.7.3-3
    }
    if s.as_bytes().contains(&0) {
        return Err(TopicError::NullChar); // MQTT-4.7.3-2
    }
    Ok(())
}

/// Checks a topic name as sent in PUBLISH (or a will topic).
///
/// Names starting with `$` are accepted here; whether a client may publish
/// to them is broker policy (MQTT 5.0 section 4.7.2).
pub fn validate_topic_name(name: &str) -> Result<(), TopicError> {
    check_common(name)?;
    if name.contains(['+', '#']) {
        return Err(TopicError::WildcardInName); // MQTT-4.7.0-1
    }
    Ok(())
}

/// Checks a topic filter as sent in SUBSCRIBE or UNSUBSCRIBE.
///
/// A `$share/{group}/{filter}` is accepted when its group is well formed
/// and its inner filter passes the same rules as an ordinary filter.
pub fn validate_topic_filter(filter: &str) -> Result<(), TopicError> {
    check_common(filter)?;
    match parse_shared(filter)? {
        Some(shared) => check_levels(shared.filter),
        None => check_levels(filter),
    }
}

/// Wildcard placement rules for a non-empty plain filter.
fn check_levels(filter: &str) -> Result<(), TopicError> {
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        if level.contains('#') && (level != "#" || levels.peek().is_some()) {
            return Err(TopicError::MisplacedMultiLevel); // MQTT-4.7.1-1
        }
        if level.contains('+') && level != "+" {
            return Err(TopicError::MisplacedSingleLevel); // MQTT-4.7.1-2
        }
    }
    Ok(())
}

/// True when `filter` contains a wildcard character, so it can match more
/// than one topic name.
///
/// For a valid filter this means some level is `+` or `#`. A shared filter
/// is judged by its whole string (a valid share name has no wildcards, so
/// the answer is that of the inner filter).
pub fn is_wildcard(filter: &str) -> bool {
    filter.contains(['+', '#'])
}

/// Does `filter` match the topic name `topic`?
///
/// `filter` is a plain filter assumed valid (see [`validate_topic_filter`];
/// for a shared subscription pass [`crate::SharedFilter::filter`]), `topic`
/// a valid name. Rules:
/// - `+` matches exactly one level, possibly empty;
/// - a final `#` matches any number of levels, including none, so `"a/#"`
///   matches `"a"` (its parent level, MQTT 5.0 section 4.7.1.2);
/// - a filter whose first level is `+` or `#` does not match a topic whose
///   first level starts with `$` (MQTT-4.7.2-1).
///
/// On invalid filters it does not panic: `#` before the last level and
/// levels like `"a+"` are compared literally, as [`crate::Trie`] does.
/// Never allocates.
pub fn matches(filter: &str, topic: &str) -> bool {
    let mut filter_levels = filter.split('/');
    let mut topic_levels = topic.split('/');
    let mut first = true;
    loop {
        let filter_level = filter_levels.next();
        let topic_level = topic_levels.next();
        // MQTT-4.7.2-1: wildcards at the first level never reach $-topics.
        if first
            && matches!(filter_level, Some("+" | "#"))
            && topic_level.is_some_and(|t| t.starts_with('$'))
        {
            return false;
        }
        first = false;
        match (filter_level, topic_level) {
            // A final '#' takes the rest, including nothing at all.
            (Some("#"), _) if filter_levels.clone().next().is_none() => return true,
            (Some("+"), Some(_)) => {}
            (Some(f), Some(t)) if f == t => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn name_table() {
        let long_ok = "a".repeat(MAX_TOPIC_LEN);
        let long_bad = "a".repeat(MAX_TOPIC_LEN + 1);
        let table: &[(&str, Result<(), TopicError>)] = &[
            ("sport/tennis/player1", Ok(())),
            ("sport/tennis/player1/ranking", Ok(())),
            ("/", Ok(())),
            ("/finance", Ok(())),
            ("a//b", Ok(())),
            ("a/", Ok(())),
            ("$SYS/monitor/Clients", Ok(())),
            ("ACCOUNTS", Ok(())),
            ("with space", Ok(())),
            ("ünïcødé/☃", Ok(())),
            (&long_ok, Ok(())),
            ("", Err(TopicError::Empty)),
            (&long_bad, Err(TopicError::TooLong)),
            ("a\0b", Err(TopicError::NullChar)),
            ("sport/+", Err(TopicError::WildcardInName)),
            ("sport/#", Err(TopicError::WildcardInName)),
            ("a+b", Err(TopicError::WildcardInName)),
            ("#", Err(TopicError::WildcardInName)),
        ];
        for (input, want) in table {
            assert_eq!(&validate_topic_name(input), want, "input {input:.40?}");
        }
    }

    #[test]
    fn filter_table() {
        let long_ok = "+/".repeat(MAX_TOPIC_LEN / 2) + "#";
        assert_eq!(long_ok.len(), MAX_TOPIC_LEN);
        let long_bad = "a".repeat(MAX_TOPIC_LEN + 1);
        let table: &[(&str, Result<(), TopicError>)] = &[
            // MQTT 5.0 section 4.7.1.2 examples.
            ("sport/tennis/player1/#", Ok(())),
            ("sport/#", Ok(())),
            ("#", Ok(())),
            ("sport/tennis#", Err(TopicError::MisplacedMultiLevel)),
            (
                "sport/tennis/#/ranking",
                Err(TopicError::MisplacedMultiLevel),
            ),
            // Section 4.7.1.3 examples.
            ("+", Ok(())),
            ("+/tennis/#", Ok(())),
            ("sport/+/player1", Ok(())),
            ("sport+", Err(TopicError::MisplacedSingleLevel)),
            ("/+", Ok(())),
            ("+/+", Ok(())),
            // Section 4.7.2.
            ("$SYS/#", Ok(())),
            ("$SYS/monitor/+", Ok(())),
            // Empty levels.
            ("/", Ok(())),
            ("a//b", Ok(())),
            ("//#", Ok(())),
            // Other misplacements.
            ("#/", Err(TopicError::MisplacedMultiLevel)),
            ("##", Err(TopicError::MisplacedMultiLevel)),
            ("a/#b", Err(TopicError::MisplacedMultiLevel)),
            ("+#", Err(TopicError::MisplacedMultiLevel)),
            ("++", Err(TopicError::MisplacedSingleLevel)),
            ("a/+b/c", Err(TopicError::MisplacedSingleLevel)),
            ("+a", Err(TopicError::MisplacedSingleLevel)),
            // Length and characters.
            (&long_ok, Ok(())),
            ("", Err(TopicError::Empty)),
            (&long_bad, Err(TopicError::TooLong)),
            ("a/\0", Err(TopicError::NullChar)),
            // Shared subscriptions: the inner filter is held to the same rules.
            ("$share/g/sport/+/player1", Ok(())),
            ("$share/g/#", Ok(())),
            ("$share/g/$SYS/#", Ok(())),
            ("$share/g/sport+", Err(TopicError::MisplacedSingleLevel)),
            ("$share/g/#/a", Err(TopicError::MisplacedMultiLevel)),
            ("$share/g\0/a", Err(TopicError::NullChar)),
            ("$share//a", Err(TopicError::InvalidShareName)),
            ("$share/+/a", Err(TopicError::InvalidShareName)),
            ("$share/g", Err(TopicError::EmptyShareFilter)),
            ("$share/g/", Err(TopicError::EmptyShareFilter)),
        ];
        for (input, want) in table {
            assert_eq!(&validate_topic_filter(input), want, "input {input:.40?}");
        }
    }

    #[test]
    fn wildcard_detection() {
        assert!(is_wildcard("+"));
        assert!(is_wildcard("a/#"));
        assert!(is_wildcard("$share/g/a/+"));
        assert!(!is_wildcard("a/b"));
        assert!(!is_wildcard("$share/g/a"));
        assert!(!is_wildcard("/"));
    }

    #[test]
    fn match_table() {
        let table: &[(&str, &str, bool)] = &[
            // Section 4.7.1.2: '#' matches its parent and any number of children.
            ("sport/tennis/player1/#", "sport/tennis/player1", true),
            (
                "sport/tennis/player1/#",
                "sport/tennis/player1/ranking",
                true,
            ),
            (
                "sport/tennis/player1/#",
                "sport/tennis/player1/score/wimbledon",
                true,
            ),
            ("sport/#", "sport", true),
            ("sport/#", "sport/", true),
            ("sport/#", "sports", false),
            ("#", "a", true),
            ("#", "/", true),
            ("#", "a/b/c", true),
            // Section 4.7.1.3: '+' matches exactly one level.
            ("sport/tennis/+", "sport/tennis/player1", true),
            ("sport/tennis/+", "sport/tennis/player2", true),
            ("sport/tennis/+", "sport/tennis/player1/ranking", false),
            ("sport/+", "sport", false),
            ("sport/+", "sport/", true),
            ("+", "a", true),
            ("+", "/finance", false),
            ("+/+", "/finance", true),
            ("/+", "/finance", true),
            ("+/tennis/#", "sport/tennis", true),
            ("+/tennis/#", "sport/tennis/x/y", true),
            ("+/tennis/#", "sport/golf", false),
            ("sport/+/player1", "sport/tennis/player1", true),
            ("+/+", "a", false),
            ("a/+/#", "a", false),
            ("a/+/#", "a/b", true),
            // Section 4.7.2: $-topics.
            ("#", "$SYS/monitor/Clients", false),
            ("+/monitor/Clients", "$SYS/monitor/Clients", false),
            ("$SYS/#", "$SYS/monitor/Clients", true),
            ("$SYS/monitor/+", "$SYS/monitor/Clients", true),
            ("$SYS/#", "$SYS", true),
            ("+", "$", false),
            ("a/+", "a/$x", true),
            ("a/#", "a/$x", true),
            ("+/$x", "a/$x", true),
            // Literal levels, case and empty levels.
            ("ACCOUNTS", "Accounts", false),
            ("a/b", "a/b", true),
            ("a/b", "a/b/", false),
            ("a//b", "a//b", true),
            ("a/+/b", "a//b", true),
            ("/", "/", true),
            ("/", "", false),
            // Invalid filters compare literally.
            ("a/#/b", "a/#/b", true),
            ("a/#/b", "a/x/b", false),
            ("a+", "a+", true),
        ];
        for &(filter, topic, want) in table {
            assert_eq!(matches(filter, topic), want, "{filter:?} vs {topic:?}");
        }
    }

    /// Slice-based definition of matching, written as directly as possible.
    fn reference(filter: &[&str], topic: &[&str], first: bool) -> bool {
        match (filter.split_first(), topic.split_first()) {
            (Some((&"#", [])), Some((t, _))) if first && t.starts_with('$') => false,
            (Some((&"#", [])), _) => true,
            (Some((&"+", _)), Some((t, _))) if first && t.starts_with('$') => false,
            (Some((&"+", f_rest)), Some((_, t_rest))) => reference(f_rest, t_rest, false),
            (Some((f, f_rest)), Some((t, t_rest))) => f == t && reference(f_rest, t_rest, false),
            (None, None) => true,
            _ => false,
        }
    }

    fn level() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec!["a", "b", "$x", "", "+", "#", "a+"])
    }

    proptest! {
        #[test]
        fn matches_agrees_with_reference(
            filter in prop::collection::vec(level(), 1..6),
            topic in prop::collection::vec(prop::sample::select(vec!["a", "b", "$x", ""]), 1..6),
        ) {
            let f = filter.join("/");
            let t = topic.join("/");
            prop_assert_eq!(matches(&f, &t), reference(&filter, &topic, true), "{} vs {}", f, t);
        }

        #[test]
        fn valid_filter_levels(filter in prop::collection::vec(level(), 1..6)) {
            let f = filter.join("/");
            let hash_ok = filter.iter().enumerate()
                .all(|(i, l)| !l.contains('#') || (*l == "#" && i + 1 == filter.len()));
            let plus_ok = filter.iter().all(|l| !l.contains('+') || *l == "+");
            prop_assert_eq!(
                validate_topic_filter(&f).is_ok(),
                !f.is_empty() && hash_ok && plus_ok,
                "{}",
                f
            );
        }

        #[test]
        fn arbitrary_strings_never_panic(s in ".{0,40}", t in ".{0,40}") {
            let _ = validate_topic_name(&s);
            let _ = validate_topic_filter(&s);
            let _ = matches(&s, &t);
        }
    }
}
