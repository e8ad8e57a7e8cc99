//! The crate's one error type: why a topic name, topic filter or shared
//! subscription filter was rejected.
//!
//! Each variant names the MQTT 5.0 conformance statement it enforces, so the
//! broker can log it and map it to a reason code (0x8F "Topic Filter
//! invalid" for filters, 0x90 "Topic Name invalid" for names) in one place.
//! This module never inspects input itself.

use std::fmt;

/// Why a topic name or topic filter is not acceptable.
///
/// Conformance ids are those of MQTT 5.0; MQTT 3.1.1 states the same rules
/// (its ids for the wildcard placement rules are 4.7.1-2 and 4.7.1-3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TopicError {
    /// Zero-length name or filter (MQTT-4.7.3-1).
    Empty,
    /// Longer than 65,535 bytes once UTF-8 encoded (MQTT-4.7.3-3).
    TooLong,
    /// Contains U+0000 (MQTT-4.7.3-2).
    NullChar,
    /// A topic name contains `+` or `#` (MQTT-4.7.0-1).
    WildcardInName,
    /// `#` is not a whole level, or not the last level (MQTT-4.7.1-1).
    MisplacedMultiLevel,
    /// `+` does not occupy a whole level (MQTT-4.7.1-2).
    MisplacedSingleLevel,
    /// `$share/` is followed by an empty share name, or one containing `+`
    /// or `#` (MQTT-4.8.2-1, MQTT-4.8.2-2).
    InvalidShareName,
    /// `$share/{ShareName}` is not followed by `/` and a non-empty topic
    /// filter (MQTT-4.8.2-2).
    EmptyShareFilter,
}

impl TopicError {
    /// The MQTT 5.0 conformance statement this error enforces.
    pub fn spec_id(self) -> &'static str {
        match self {
            TopicError::Empty => "MQTT-4.7.3-1",
            TopicError::TooLong => "MQTT-4.7.3-3",
            TopicError::NullChar => "MQTT-4.7.3-2",
            TopicError::WildcardInName => "MQTT-4.7.0-1",
            TopicError::MisplacedMultiLevel => "MQTT-4.7.1-1",
            TopicError::MisplacedSingleLevel => "MQTT-4.7.1-2",
            TopicError::InvalidShareName => "MQTT-4.8.2-1",
            TopicError::EmptyShareFilter => "MQTT-4.8.2-2",
        }
    }
}

impl fmt::Display for TopicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self {
            TopicError::Empty => "topic must be at least one character long",
            TopicError::TooLong => "topic is longer than 65535 bytes",
            TopicError::NullChar => "topic contains the null character U+0000",
            TopicError::WildcardInName => "topic name contains a wildcard character",
            TopicError::MisplacedMultiLevel => {
                "multi-level wildcard '#' must be a whole level and the last one"
            }
            TopicError::MisplacedSingleLevel => {
                "single-level wildcard '+' must occupy a whole level"
            }
            TopicError::InvalidShareName => {
                "share name must be non-empty and contain no '+' or '#'"
            }
            TopicError::EmptyShareFilter => "shared subscription has no topic filter",
        };
        write!(f, "{what} ({})", self.spec_id())
    }
}

impl std::error::Error for TopicError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_cites_spec_id() {
        let all = [
            TopicError::Empty,
            TopicError::TooLong,
            TopicError::NullChar,
            TopicError::WildcardInName,
            TopicError::MisplacedMultiLevel,
            TopicError::MisplacedSingleLevel,
            TopicError::InvalidShareName,
            TopicError::EmptyShareFilter,
        ];
        for e in all {
            let text = e.to_string();
            assert!(text.ends_with(&format!("({})", e.spec_id())), "{text}");
        }
        assert_eq!(
            TopicError::MisplacedMultiLevel.to_string(),
            "multi-level wildcard '#' must be a whole level and the last one (MQTT-4.7.1-1)"
        );
    }
}
