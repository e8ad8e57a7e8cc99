//! One client's session: identity, subscriptions, will.
//!
//! A session outlives its connection while its expiry allows. It lives on
//! the owner shard only, so it is plain data with no locks. Everything kept
//! here is copied out of the read buffer it arrived in: a session must not
//! pin a shard's read arena for its whole life.

use bytes::Bytes;
use hashbrown::HashMap;
use ringmq_codec::{
    ProtocolVersion, QoS, ReasonCode, Subscribe, SubscriptionOptions, Unsubscribe, Will,
};

/// One granted subscription.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subscription {
    /// The options granted (QoS already capped).
    pub options: SubscriptionOptions,
    /// v5 Subscription Identifier (0 = none).
    pub id: u32,
}

/// The server-side state of one client id.
#[derive(Debug)]
pub struct Session {
    /// The client identifier (owned copy).
    pub client_id: Bytes,
    /// The protocol of the connection that last owned the session.
    pub protocol: ProtocolVersion,
    /// Filter (as the client wrote it, `$share/...` included) -> grant.
    subscriptions: HashMap<Bytes, Subscription>,
    /// The will of the current (or last) connection (boxed: a `Will` with
    /// its v5 properties is ~450 bytes and most sessions have none).
    pub will: Option<Box<Will>>,
    /// Seconds the session outlives its connection (`u32::MAX` = forever).
    pub session_expiry_secs: u32,
}

/// The answer to a SUBSCRIBE.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SubscribeOutcome {
    /// One SUBACK code per filter, in order.
    pub codes: Vec<ReasonCode>,
    /// Filters that were not subscribed before (the shard adds them to its
    /// trie); re-subscribing an existing filter only replaces its options.
    pub added: Vec<(Bytes, Subscription)>,
    /// Filters that already existed and got new options.
    pub replaced: Vec<(Bytes, Subscription)>,
    /// A rule broken that ends the connection (v5 DISCONNECT 0x82).
    pub protocol_error: Option<&'static str>,
}

/// The answer to an UNSUBSCRIBE.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct UnsubscribeOutcome {
    /// One UNSUBACK code per filter (v5 only; v3 UNSUBACK has none).
    pub codes: Vec<ReasonCode>,
    /// Filters that were removed.
    pub removed: Vec<Bytes>,
}

impl Session {
    /// A fresh session with no subscriptions.
    pub fn new(client_id: Bytes, protocol: ProtocolVersion) -> Self {
        Self {
            client_id,
            protocol,
            subscriptions: HashMap::new(),
            will: None,
            session_expiry_secs: 0,
        }
    }

    /// The session's subscriptions.
    pub fn subscriptions(&self) -> impl Iterator<Item = (&Bytes, &Subscription)> {
        self.subscriptions.iter()
    }

    /// Number of subscriptions.
    pub fn subscription_count(&self) -> usize {
        self.subscriptions.len()
    }

    /// Removes every subscription, returning the filters (for the trie).
    pub fn clear_subscriptions(&mut self) -> Vec<Bytes> {
        self.subscriptions.drain().map(|(f, _)| f).collect()
    }

    /// Applies a SUBSCRIBE; the granted QoS is min(requested, `max_qos`).
    pub fn subscribe(&mut self, packet: &Subscribe, max_qos: QoS) -> SubscribeOutcome {
        let v5 = self.protocol == ProtocolVersion::V5;
        let failure = |code: ReasonCode| if v5 { code } else { ReasonCode(0x80) };
        let id = packet
            .properties
            .subscription_identifiers
            .first()
            .copied()
            .unwrap_or(0);
        let mut out = SubscribeOutcome::default();
        for (filter, options) in &packet.filters {
            let shared = match check_filter(filter) {
                // 0x8F in v5; v3 has only the failure code 0x80.
                Err(()) => {
                    out.codes.push(failure(ReasonCode::TOPIC_FILTER_INVALID));
                    continue;
                }
                Ok(shared) => shared,
            };
            if shared && options.no_local {
                // MQTT-3.8.3-4: No Local on a shared subscription.
                out.protocol_error = Some("No Local on a shared subscription");
                return out;
            }
            let grant = Subscription {
                options: SubscriptionOptions {
                    qos: options.qos.min(max_qos),
                    ..*options
                },
                id,
            };
            out.codes.push(ReasonCode(grant.options.qos as u8));
            let key = Bytes::copy_from_slice(filter);
            if self.subscriptions.insert(key.clone(), grant).is_some() {
                out.replaced.push((key, grant));
            } else {
                out.added.push((key, grant));
            }
        }
        out
    }

    /// Applies an UNSUBSCRIBE.
    pub fn unsubscribe(&mut self, packet: &Unsubscribe) -> UnsubscribeOutcome {
        let v5 = self.protocol == ProtocolVersion::V5;
        let mut out = UnsubscribeOutcome::default();
        for filter in &packet.filters {
            let removed = self.subscriptions.remove_entry(filter.as_ref());
            if v5 {
                out.codes.push(match removed {
                    Some(_) => ReasonCode::SUCCESS,
                    None if check_filter(filter).is_err() => ReasonCode::TOPIC_FILTER_INVALID,
                    None => ReasonCode::NO_SUBSCRIPTION_EXISTED,
                });
            }
            if let Some((key, _)) = removed {
                out.removed.push(key);
            }
        }
        out
    }
}

/// Ok(is_shared) for a valid filter.
fn check_filter(filter: &[u8]) -> Result<bool, ()> {
    let text = std::str::from_utf8(filter).map_err(|_| ())?;
    ringmq_topic::validate_topic_filter(text).map_err(|_| ())?;
    match ringmq_topic::parse_shared(text) {
        Ok(shared) => Ok(shared.is_some()),
        Err(_) => Err(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringmq_codec::{Properties, RetainHandling};

    fn opts(qos: QoS) -> SubscriptionOptions {
        SubscriptionOptions {
            qos,
            no_local: false,
            retain_as_published: false,
            retain_handling: RetainHandling::SendAtSubscribe,
        }
    }

    fn subscribe(filters: &[(&'static str, QoS)]) -> Subscribe {
        Subscribe {
            packet_id: 1,
            properties: Properties::default(),
            filters: filters
                .iter()
                .map(|(f, q)| (Bytes::from_static(f.as_bytes()), opts(*q)))
                .collect(),
        }
    }

    #[test]
    fn granted_qos_is_capped_and_invalid_filters_refused() {
        let mut s = Session::new(Bytes::from_static(b"c"), ProtocolVersion::V5);
        let out = s.subscribe(
            &subscribe(&[
                ("a/+", QoS::ExactlyOnce),
                ("a/#/b", QoS::AtMostOnce),
                ("$share/g/x", QoS::AtMostOnce),
            ]),
            QoS::AtMostOnce,
        );
        assert_eq!(
            out.codes,
            vec![
                ReasonCode::GRANTED_QOS_0,
                ReasonCode::TOPIC_FILTER_INVALID,
                ReasonCode::GRANTED_QOS_0
            ]
        );
        assert_eq!(out.added.len(), 2);
        assert_eq!(s.subscription_count(), 2);

        let mut v3 = Session::new(Bytes::from_static(b"c"), ProtocolVersion::V3_1_1);
        let out = v3.subscribe(&subscribe(&[("a/#/b", QoS::AtMostOnce)]), QoS::AtMostOnce);
        assert_eq!(out.codes, vec![ReasonCode(0x80)]);
    }

    #[test]
    fn no_local_on_shared_is_a_protocol_error_and_ids_are_kept() {
        let mut s = Session::new(Bytes::from_static(b"c"), ProtocolVersion::V5);
        let mut packet = subscribe(&[("$share/g/a", QoS::AtMostOnce)]);
        packet.filters[0].1.no_local = true;
        assert!(s
            .subscribe(&packet, QoS::ExactlyOnce)
            .protocol_error
            .is_some());
        let mut packet = subscribe(&[("a/#", QoS::AtLeastOnce)]);
        packet.properties.subscription_identifiers = vec![7];
        let out = s.subscribe(&packet, QoS::ExactlyOnce);
        assert_eq!(out.added[0].1.id, 7);
        assert_eq!(out.added[0].1.options.qos, QoS::AtLeastOnce);
    }

    #[test]
    fn resubscribe_replaces_and_unsubscribe_reports() {
        let mut s = Session::new(Bytes::from_static(b"c"), ProtocolVersion::V5);
        s.subscribe(&subscribe(&[("a", QoS::AtMostOnce)]), QoS::AtMostOnce);
        let again = s.subscribe(&subscribe(&[("a", QoS::AtLeastOnce)]), QoS::AtMostOnce);
        assert!(again.added.is_empty());
        assert_eq!(again.replaced.len(), 1);
        let un = s.unsubscribe(&Unsubscribe {
            packet_id: 2,
            properties: Properties::default(),
            filters: vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")],
        });
        assert_eq!(
            un.codes,
            vec![ReasonCode::SUCCESS, ReasonCode::NO_SUBSCRIPTION_EXISTED]
        );
        assert_eq!(un.removed, vec![Bytes::from_static(b"a")]);
        assert_eq!(s.subscription_count(), 0);
    }
}
