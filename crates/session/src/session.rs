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

/// The server-side state of one client id.
#[derive(Debug)]
pub struct Session {
    /// The client identifier (owned copy).
    pub client_id: Bytes,
    /// The protocol of the connection that last owned the session.
    pub protocol: ProtocolVersion,
    /// Filter -> options granted.
    subscriptions: HashMap<Bytes, SubscriptionOptions>,
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
    pub added: Vec<(Bytes, SubscriptionOptions)>,
    /// Filters that already existed and got new options.
    pub replaced: Vec<(Bytes, SubscriptionOptions)>,
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
    pub fn subscriptions(&self) -> impl Iterator<Item = (&Bytes, &SubscriptionOptions)> {
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
        let mut out = SubscribeOutcome::default();
        for (filter, options) in &packet.filters {
            let code = match check_filter(filter) {
                Err(FilterProblem::Invalid) => {
                    // 0x8F in v5; v3 has only the failure code 0x80.
                    Err(if v5 {
                        ReasonCode::TOPIC_FILTER_INVALID
                    } else {
                        ReasonCode(0x80)
                    })
                }
                Err(FilterProblem::Shared) => Err(if v5 {
                    ReasonCode::SHARED_SUBSCRIPTIONS_NOT_SUPPORTED
                } else {
                    ReasonCode(0x80)
                }),
                Ok(()) => Ok(()),
            };
            match code {
                Err(code) => out.codes.push(code),
                Ok(()) => {
                    let granted = SubscriptionOptions {
                        qos: options.qos.min(max_qos),
                        ..*options
                    };
                    out.codes.push(ReasonCode(granted.qos as u8));
                    let key = Bytes::copy_from_slice(filter);
                    if self.subscriptions.insert(key.clone(), granted).is_some() {
                        out.replaced.push((key, granted));
                    } else {
                        out.added.push((key, granted));
                    }
                }
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

enum FilterProblem {
    Invalid,
    Shared,
}

fn check_filter(filter: &[u8]) -> Result<(), FilterProblem> {
    let text = std::str::from_utf8(filter).map_err(|_| FilterProblem::Invalid)?;
    ringmq_topic::validate_topic_filter(text).map_err(|_| FilterProblem::Invalid)?;
    // Shared subscriptions arrive with the QoS issue; say so honestly.
    match ringmq_topic::parse_shared(text) {
        Ok(None) => Ok(()),
        Ok(Some(_)) => Err(FilterProblem::Shared),
        Err(_) => Err(FilterProblem::Invalid),
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
                ReasonCode::SHARED_SUBSCRIPTIONS_NOT_SUPPORTED
            ]
        );
        assert_eq!(out.added.len(), 1);
        assert_eq!(s.subscription_count(), 1);

        let mut v3 = Session::new(Bytes::from_static(b"c"), ProtocolVersion::V3_1_1);
        let out = v3.subscribe(&subscribe(&[("a/#/b", QoS::AtMostOnce)]), QoS::AtMostOnce);
        assert_eq!(out.codes, vec![ReasonCode(0x80)]);
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
