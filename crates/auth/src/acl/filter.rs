//! Relations between two topic filters that `ringmq-topic` does not offer:
//! [`covers`] (every topic one filter matches, the other matches too) and
//! [`overlaps`] (some topic is matched by both). Matching a filter against
//! a concrete topic name is [`ringmq_topic::matches`]; these two follow the
//! same rules (MQTT 5.0 section 4.7):
//!
//! - `+` matches exactly one level, a final `#` any number including none
//!   (so `a/#` matches `a`);
//! - a wildcard at the first level never matches a level starting with `$`
//!   (MQTT-4.7.2-1).
//!
//! Both filters are assumed valid ([`ringmq_topic::validate_topic_filter`],
//! shared prefix removed). Neither function allocates, recurses or panics.

/// True when every topic name `filter` matches is also matched by `rule`,
/// so granting `rule` grants the whole subscription.
///
/// `rule` `a/#` covers `a/b`, `a/+` and `a/#`; `#` covers `+/b` but not
/// `$SYS/#`; `a/+` does not cover `a/#` (which matches `a` and `a/b/c`).
pub fn covers(rule: &str, filter: &str) -> bool {
    let mut rule_levels = rule.split('/');
    let mut filter_levels = filter.split('/');
    let mut first = true;
    loop {
        let r = rule_levels.next();
        let f = filter_levels.next();
        let is_first = std::mem::replace(&mut first, false);
        match (r, f) {
            (None, None) => return true,
            // The filter ends here; it matches this parent topic only if the
            // rule does: the rule must end too, or end in a final `#`.
            (Some("#"), None) => return rule_levels.next().is_none(),
            (Some(_), None) => return false,
            // The rule ends but the filter matches deeper topics.
            (None, Some(_)) => return false,
            (Some("#"), Some(f)) => {
                // MQTT-4.7.2-1: a first-level `#` never reaches `$` topics,
                // and a literal first level `$x` matches only those.
                return !(is_first && f.starts_with('$'));
            }
            // A filter `#` matches zero or many levels; only `#` covers it.
            (Some(_), Some("#")) => return false,
            (Some("+"), Some(f)) => {
                if is_first && f.starts_with('$') {
                    return false; // MQTT-4.7.2-1
                }
            }
            // A filter `+` takes any single level; a literal rule level does not.
            (Some(_), Some("+")) => return false,
            (Some(r), Some(f)) => {
                if r != f {
                    return false;
                }
            }
        }
    }
}

/// True when some topic name is matched by both `a` and `b`.
///
/// Used for deny rules: a subscription that overlaps a denied filter could
/// deliver a denied topic. `a/#` and `+/b` overlap (`a/b`); `#` and
/// `$SYS/x` do not (MQTT-4.7.2-1).
pub fn overlaps(a: &str, b: &str) -> bool {
    let mut a_levels = a.split('/');
    let mut b_levels = b.split('/');
    let mut first = true;
    loop {
        let x = a_levels.next();
        let y = b_levels.next();
        let is_first = std::mem::replace(&mut first, false);
        match (x, y) {
            (None, None) => return true,
            // One ends: they share that parent topic only if the other
            // continues with a final `#` (which matches zero levels).
            (Some("#"), None) => return a_levels.next().is_none(),
            (None, Some("#")) => return b_levels.next().is_none(),
            (Some(_), None) | (None, Some(_)) => return false,
            (Some(x), Some(y)) => {
                let x_wild = x == "+" || x == "#";
                let y_wild = y == "+" || y == "#";
                // MQTT-4.7.2-1: a first-level wildcard and a literal `$...`
                // level have no topic in common.
                if is_first && ((x_wild && y.starts_with('$')) || (y_wild && x.starts_with('$'))) {
                    return false;
                }
                if x == "#" || y == "#" {
                    return true;
                }
                if !x_wild && !y_wild && x != y {
                    return false;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::tests::all_topics;
    use proptest::prelude::*;
    use ringmq_topic::matches;

    #[test]
    fn covers_table() {
        let table: &[(&str, &str, bool)] = &[
            ("a/#", "a/b", true),
            ("a/#", "a/+", true),
            ("a/#", "a/#", true),
            ("a/#", "a", true),
            ("a/#", "#", false),
            ("a/#", "+/b", false),
            ("a/#", "b", false),
            ("a/+", "a/b", true),
            ("a/+", "a/+", true),
            ("a/+", "a/#", false),
            ("a/+", "a", false),
            ("a/b", "a/+", false),
            ("a/b", "a/b", true),
            ("a/b", "a/b/c", false),
            ("a", "a/#", false),
            ("#", "#", true),
            ("#", "+/b", true),
            ("#", "a/b/c", true),
            ("#", "$SYS/x", false),
            ("#", "$SYS/#", false),
            ("+/#", "$SYS/#", false),
            ("+/b", "+/b", true),
            ("+/b", "a/b", true),
            ("+/b", "$x/b", false),
            ("+/+", "+/#", false),
            ("+/#", "+", true),
            ("$SYS/#", "$SYS/broker/+", true),
            ("$SYS/#", "$SYS", true),
            ("$SYS/broker/uptime", "$SYS/broker/#", false),
            ("a/+/c", "a/+/c", true),
            ("a//b", "a/+/b", false),
            ("a/+/b", "a//b", true),
        ];
        for &(rule, filter, want) in table {
            assert_eq!(covers(rule, filter), want, "covers({rule:?}, {filter:?})");
        }
    }

    #[test]
    fn overlaps_table() {
        let table: &[(&str, &str, bool)] = &[
            ("a/#", "+/b", true),
            ("a/#", "a", true),
            ("a", "a/#", true),
            ("a/+", "a", false),
            ("#", "$SYS/x", false),
            ("+/x", "$SYS/x", false),
            ("$SYS/#", "$SYS/x", true),
            ("#", "#", true),
            ("+", "+/+", false),
            ("a/b", "a/c", false),
            ("a/+/c", "a/b/+", true),
            ("+/#", "#", true),
        ];
        for &(a, b, want) in table {
            assert_eq!(overlaps(a, b), want, "overlaps({a:?}, {b:?})");
            assert_eq!(overlaps(b, a), want, "overlaps({b:?}, {a:?})");
        }
    }

    /// A valid filter of 1..=3 levels from a small alphabet.
    fn filter() -> impl Strategy<Value = String> {
        let level = prop::sample::select(vec!["a", "b", "$x", "", "+"]);
        (prop::collection::vec(level, 1..=3), any::<bool>()).prop_map(|(mut levels, hash)| {
            if hash {
                levels.push("#");
            }
            levels.join("/")
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Filters have at most 4 levels, so topics of 5 levels over an
        /// alphabet with one extra literal ("z") tell every pair apart.
        #[test]
        fn agree_with_enumeration(rule in filter(), sub in filter()) {
            let topics = all_topics(&["a", "b", "$x", "", "z"], 5);
            let within = topics.iter().all(|t| !matches(&sub, t) || matches(&rule, t));
            let common = topics.iter().any(|t| matches(&sub, t) && matches(&rule, t));
            prop_assert_eq!(covers(&rule, &sub), within, "covers({}, {})", rule, sub);
            prop_assert_eq!(overlaps(&rule, &sub), common, "overlaps({}, {})", rule, sub);
        }
    }
}
