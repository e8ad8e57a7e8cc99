//! Topic aliases of one connection, both ways (MQTT 5 3.3.2.3.4).
//!
//! Inbound: the client sets alias -> topic with a PUBLISH carrying both,
//! then sends an empty topic with the alias; the server announced its
//! maximum in CONNACK. Outbound: the server assigns aliases first come,
//! first served up to the client's Topic Alias Maximum, then sends plain
//! topics. Both last for one network connection only (MQTT-3.3.2-10) and
//! are copied out of the read buffer they came in.

use bytes::Bytes;
use hashbrown::HashMap;
use ringmq_codec::Publish;

use crate::Violation;

/// Inbound aliases (index = alias - 1); empty until used.
#[derive(Debug, Default)]
pub(crate) struct InAliases {
    /// Allocated on the first alias (most clients never use one). Boxed on
    /// purpose: 8 bytes in every session instead of a 24-byte `Vec`.
    #[allow(clippy::box_collection)]
    topics: Option<Box<Vec<Bytes>>>,
}

impl InAliases {
    /// Resolves the Topic Alias of a client PUBLISH in place: registers a
    /// new alias, or fills in the topic of an aliased PUBLISH.
    pub(crate) fn resolve(&mut self, publish: &mut Publish, maximum: u16) -> Result<(), Violation> {
        let Some(alias) = publish.properties.topic_alias else {
            if publish.topic.is_empty() {
                return Err(Violation::EmptyTopicWithoutAlias);
            }
            return Ok(());
        };
        if alias == 0 || alias > maximum {
            return Err(Violation::TopicAliasOutOfRange);
        }
        let slot = usize::from(alias - 1);
        if publish.topic.is_empty() {
            match self.topics.as_ref().and_then(|t| t.get(slot)) {
                Some(topic) if !topic.is_empty() => publish.topic = topic.clone(),
                _ => return Err(Violation::TopicAliasUnknown),
            }
        } else {
            let topics = self.topics.get_or_insert_with(Default::default);
            if topics.len() <= slot {
                topics.resize(slot + 1, Bytes::new());
            }
            topics[slot] = Bytes::copy_from_slice(&publish.topic);
        }
        publish.properties.topic_alias = None;
        Ok(())
    }
}

/// Outbound aliases; only present when the client accepts some. At most
/// `max` aliases (the client's Topic Alias Maximum capped by
/// `--max-topic-aliases-out`) holding at most `max_bytes` of topic names
/// (`--max-topic-alias-bytes`); once either is spent, further topics are
/// sent in full.
#[derive(Debug)]
pub(crate) struct OutAliases {
    max: u16,
    max_bytes: usize,
    bytes: usize,
    by_topic: HashMap<Bytes, u16>,
}

impl OutAliases {
    /// Aliases for a client whose Topic Alias Maximum (capped) is `max`
    /// (None if 0), keeping at most `max_bytes` of topic names.
    pub(crate) fn new(max: u16, max_bytes: usize) -> Option<Box<Self>> {
        (max > 0 && max_bytes > 0).then(|| {
            Box::new(Self {
                max,
                max_bytes,
                bytes: 0,
                by_topic: HashMap::new(),
            })
        })
    }

    /// Rewrites `publish` to use an alias: an empty topic with the alias
    /// once one is assigned, topic and alias the first time. Only when the
    /// rewritten packet still `fits` the client's Maximum Packet Size
    /// (MQTT-3.1.2-25: an alias adds 3 bytes, and an empty topic plus
    /// alias is longer than a one-byte topic); otherwise `publish` is left
    /// as is and no alias is spent on it.
    pub(crate) fn apply(&mut self, publish: &mut Publish, fits: impl Fn(&Publish) -> bool) {
        if let Some(&alias) = self.by_topic.get(&publish.topic) {
            let topic = std::mem::take(&mut publish.topic);
            publish.properties.topic_alias = Some(alias);
            if !fits(publish) {
                publish.topic = topic;
                publish.properties.topic_alias = None;
            }
        } else if self.by_topic.len() < usize::from(self.max)
            && self.bytes + publish.topic.len() <= self.max_bytes
        {
            let alias = self.by_topic.len() as u16 + 1;
            publish.properties.topic_alias = Some(alias);
            if fits(publish) {
                self.bytes += publish.topic.len();
                self.by_topic
                    .insert(Bytes::copy_from_slice(&publish.topic), alias);
            } else {
                publish.properties.topic_alias = None;
            }
        }
    }
}
