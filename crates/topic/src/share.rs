//! Shared subscription filters: `$share/{ShareName}/{filter}` (MQTT 5.0
//! section 4.8.2).
//!
//! This module only splits the string and checks the share name and the
//! presence of an inner filter. The inner filter's own syntax is checked by
//! [`crate::validate_topic_filter`], which calls into here. MQTT 3.1.1 has
//! no shared subscriptions; whether to call this for a 3.1.1 client is the
//! broker's choice.

use crate::TopicError;

/// The prefix that marks a shared subscription (MQTT-4.8.2-1).
pub const SHARE_PREFIX: &str = "$share/";

/// A shared subscription split into its parts, borrowing the original string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SharedFilter<'a> {
    /// The share name (group): non-empty, no `/`, `+` or `#`.
    pub group: &'a str,
    /// The topic filter the group subscribes to, without the prefix.
    pub filter: &'a str,
}

/// Splits `"$share/{group}/{filter}"`.
///
/// Returns `Ok(None)` for an ordinary filter (one not starting with
/// `$share/`), `Ok(Some(..))` for a well-formed shared filter, and an error
/// for an empty group or one containing `+` or `#`
/// ([`TopicError::InvalidShareName`]) or a missing or empty inner filter
/// ([`TopicError::EmptyShareFilter`]). The inner filter's wildcard syntax is
/// not checked here; use [`crate::validate_topic_filter`] for that.
pub fn parse_shared(filter: &str) -> Result<Option<SharedFilter<'_>>, TopicError> {
    let Some(rest) = filter.strip_prefix(SHARE_PREFIX) else {
        return Ok(None);
    };
    // The share name runs up to the next '/', so it can never contain one.
    let (group, inner) = match rest.split_once('/') {
        Some((group, inner)) => (group, Some(inner)),
        None => (rest, None),
    };
    // MQTT-4.8.2-1: at least one character; MQTT-4.8.2-2: no '+' or '#'.
    if group.is_empty() || group.contains(['+', '#']) {
        return Err(TopicError::InvalidShareName);
    }
    // MQTT-4.8.2-2: the name is followed by '/' and then a topic filter,
    // which MQTT-4.7.3-1 requires to be at least one character.
    match inner {
        Some(inner) if !inner.is_empty() => Ok(Some(SharedFilter {
            group,
            filter: inner,
        })),
        _ => Err(TopicError::EmptyShareFilter),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared<'a>(group: &'a str, filter: &'a str) -> Option<SharedFilter<'a>> {
        Some(SharedFilter { group, filter })
    }

    #[test]
    fn parse_table() {
        let table: &[(&str, Result<Option<SharedFilter<'_>>, TopicError>)] = &[
            ("$share/g/a/b", Ok(shared("g", "a/b"))),
            (
                "$share/consumer1/sport/tennis/+",
                Ok(shared("consumer1", "sport/tennis/+")),
            ),
            ("$share/g/#", Ok(shared("g", "#"))),
            ("$share/g//", Ok(shared("g", "/"))),
            ("$share/g/$SYS/x", Ok(shared("g", "$SYS/x"))),
            ("$share/g/$share/h/x", Ok(shared("g", "$share/h/x"))),
            // Ordinary filters, including look-alikes.
            ("a/b", Ok(None)),
            ("#", Ok(None)),
            ("$share", Ok(None)),
            ("$shared/g/a", Ok(None)),
            ("$SHARE/g/a", Ok(None)),
            ("x/$share/g/a", Ok(None)),
            // Malformed.
            ("$share/", Err(TopicError::InvalidShareName)),
            ("$share//a", Err(TopicError::InvalidShareName)),
            ("$share/+/a", Err(TopicError::InvalidShareName)),
            ("$share/#/a", Err(TopicError::InvalidShareName)),
            ("$share/g+/a", Err(TopicError::InvalidShareName)),
            ("$share/g#", Err(TopicError::InvalidShareName)),
            ("$share/g", Err(TopicError::EmptyShareFilter)),
            ("$share/g/", Err(TopicError::EmptyShareFilter)),
        ];
        for (input, want) in table {
            assert_eq!(&parse_shared(input), want, "input {input:?}");
        }
    }
}
