//! The client's side of outbound topic aliases, shared by the harness and
//! the fuzzer: what topic a PUBLISH from the server names, checked the way
//! a client would (MQTT 5 3.3.2.3.4).

use std::collections::HashMap;

use bytes::Bytes;
use ringmq_codec::Publish;

/// The topic `p` names for a client that accepts `alias_max` aliases and
/// has seen the aliases in `aliases` (updated when `p` sets one). Panics
/// on an empty topic without alias, an alias beyond the maximum or one
/// used before it was set.
pub fn client_topic(aliases: &mut HashMap<u16, Bytes>, alias_max: u16, p: &Publish) -> Bytes {
    match p.properties.topic_alias {
        None => {
            assert!(!p.topic.is_empty(), "empty topic without alias: {p:?}");
            p.topic.clone()
        }
        Some(alias) => {
            assert!(
                alias >= 1 && alias <= alias_max,
                "alias {alias} beyond the client's maximum {alias_max}"
            );
            if p.topic.is_empty() {
                aliases
                    .get(&alias)
                    .unwrap_or_else(|| panic!("alias {alias} used before it was set"))
                    .clone()
            } else {
                aliases.insert(alias, p.topic.clone());
                p.topic.clone()
            }
        }
    }
}
