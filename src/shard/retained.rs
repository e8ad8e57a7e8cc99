//! This shard's partition of the retained messages.
//!
//! A topic's retained message lives on `shard_for(topic)`. A new
//! subscription to a plain topic asks that one shard; a wildcard asks every
//! shard, and each answers with what matches. Stored messages are copied
//! out of the read arena (they live long) and carry their expiry.

use std::rc::Rc;
use std::time::Instant;

use bytes::Bytes;
use hashbrown::HashMap;
use ringmq_codec::Publish;
use ringmq_session::Subscription;
use tracing::warn;

use super::router::remaining_secs;
use super::sessions::{owned, owned_properties};
use super::Shard;
use crate::mesh::Control;
use crate::stats::ShardStats;

/// One stored retained message.
struct Stored {
    publish: Publish,
    expires_at: Option<Instant>,
}

/// topic -> retained message, for the topics this shard owns.
#[derive(Default)]
pub(crate) struct Retained {
    messages: HashMap<Bytes, Stored>,
}

impl Retained {
    /// Matching messages still alive, with their remaining expiry written
    /// into the Message Expiry Interval; expired ones are removed.
    fn matching(&mut self, filter: &str, now: Instant, out: &mut Vec<Publish>) {
        let mut expired = Vec::new();
        let mut take = |topic: &Bytes, stored: &Stored, out: &mut Vec<Publish>| {
            let mut publish = stored.publish.clone();
            if let Some(at) = stored.expires_at {
                match remaining_secs(at, now) {
                    Some(left) => publish.properties.message_expiry_interval = Some(left),
                    None => {
                        expired.push(topic.clone());
                        return;
                    }
                }
            }
            out.push(publish);
        };
        if ringmq_topic::is_wildcard(filter) {
            for (topic, stored) in &self.messages {
                if let Ok(t) = std::str::from_utf8(topic) {
                    if ringmq_topic::matches(filter, t) {
                        take(topic, stored, out);
                    }
                }
            }
        } else if let Some((topic, stored)) = self.messages.get_key_value(filter.as_bytes()) {
            take(topic, stored, out);
        }
        for topic in expired {
            self.messages.remove(&topic);
        }
    }
}

impl Shard {
    /// Stores (or, with an empty payload, clears) the retained message of
    /// a topic this shard owns (MQTT-3.3.1-5..7).
    pub(crate) fn store_retained(&self, publish: &Publish, expires_at: Option<Instant>) {
        let mut state = self.state.borrow_mut();
        let retained = &mut state.retained;
        if publish.payload.is_empty() {
            retained.messages.remove(&publish.topic);
            return;
        }
        let cap = self.config().max_retained.div_ceil(self.shared.shards);
        if !retained.messages.contains_key(&publish.topic) && retained.messages.len() >= cap {
            ShardStats::inc(&self.stats.retained_dropped);
            warn!(
                shard = self.id,
                cap, "--max-retained reached: retained message not stored"
            );
            return;
        }
        let stored = Stored {
            publish: Publish {
                dup: false,
                qos: publish.qos,
                retain: true,
                topic: owned(&publish.topic),
                packet_id: 0,
                properties: owned_properties(&publish.properties),
                payload: owned(&publish.payload),
            },
            expires_at,
        };
        retained
            .messages
            .insert(stored.publish.topic.clone(), stored);
    }

    /// After a SUBACK: the retained messages Retain Handling asks for
    /// (0: always, 1: only for a new subscription, 2: never). Shared
    /// subscriptions get none (MQTT 4.8.2).
    pub(crate) fn send_retained_for(
        self: &Rc<Self>,
        filter: &Bytes,
        serial: u64,
        sub: Subscription,
        is_new: bool,
    ) {
        use ringmq_codec::RetainHandling;
        match sub.options.retain_handling {
            RetainHandling::DoNotSend => return,
            RetainHandling::SendAtSubscribeIfNew if !is_new => return,
            _ => {}
        }
        let Ok(text) = std::str::from_utf8(filter) else {
            return;
        };
        if !matches!(ringmq_topic::parse_shared(text), Ok(None)) {
            return;
        }
        let owners: Vec<usize> = if ringmq_topic::is_wildcard(text) {
            (0..self.shared.shards).collect()
        } else {
            vec![crate::shard_for(filter, self.shared.shards)]
        };
        for owner in owners {
            if owner == self.id {
                let mut messages = Vec::new();
                self.state
                    .borrow_mut()
                    .retained
                    .matching(text, Instant::now(), &mut messages);
                self.deliver_retained(serial, sub, messages);
            } else {
                self.shared.mesh.send_control(
                    owner,
                    Control::RetainedQuery {
                        filter: filter.clone(),
                        reply_to: self.id,
                        serial,
                        subscription: sub,
                    },
                );
            }
        }
    }

    /// Another shard asks for the retained messages matching `filter`.
    pub(crate) fn answer_retained_query(
        &self,
        filter: &Bytes,
        reply_to: usize,
        serial: u64,
        subscription: Subscription,
    ) {
        let Ok(text) = std::str::from_utf8(filter) else {
            return;
        };
        let mut messages = Vec::new();
        self.state
            .borrow_mut()
            .retained
            .matching(text, Instant::now(), &mut messages);
        if !messages.is_empty() {
            self.shared.mesh.send_control(
                reply_to,
                Control::RetainedReply {
                    serial,
                    subscription,
                    messages,
                },
            );
        }
    }

    /// Retained messages for a new subscription: RETAIN 1 (MQTT-3.3.1-8),
    /// QoS min(message, granted).
    pub(crate) fn deliver_retained(&self, serial: u64, sub: Subscription, messages: Vec<Publish>) {
        let ids: &[u32] = if sub.id != 0 {
            std::slice::from_ref(&sub.id)
        } else {
            &[]
        };
        let now = Instant::now();
        for publish in messages {
            let expires_at = publish
                .properties
                .message_expiry_interval
                .map(|secs| now + std::time::Duration::from_secs(u64::from(secs)));
            self.deliver_to(serial, &publish, sub.options.qos, true, ids, expires_at);
        }
    }
}
