//! CONNECT negotiation: what the server grants a new connection.
//!
//! Decides the effective keep-alive (v5 Server Keep Alive, `--max-keepalive`
//! cap), the session expiry, whether an empty client id is acceptable, and
//! the CONNACK properties that tell a v5 client the truth about the server.
//! [`authorize`] applies the identity rules (client-id patterns, the will
//! against the ACL). The shard applies the result; nothing here touches
//! the session table.

use std::sync::Arc;

use ringmq_auth::acl::{Access, Acl, Who};
use ringmq_auth::client_id::ClientIdPattern;
use ringmq_codec::{Connect, Properties, ProtocolVersion, QoS, ReasonCode};

/// v3 CONNACK return code 0x01: unacceptable protocol version.
pub const V3_UNACCEPTABLE_PROTOCOL: u8 = 0x01;
/// v3 CONNACK return code 0x02: identifier rejected.
pub const V3_IDENTIFIER_REJECTED: u8 = 0x02;
/// v3 CONNACK return code 0x05: not authorized.
pub const V3_NOT_AUTHORIZED: u8 = 0x05;

/// The server's side of the negotiation, from the broker's flags.
#[derive(Clone, Debug)]
pub struct ServerPolicy {
    /// `--server-keepalive`: imposed on every v5 client when set.
    pub server_keep_alive: Option<u16>,
    /// `--max-keepalive`: the largest keep-alive accepted (65535 = no cap).
    pub max_keep_alive: u16,
    /// `--max-packet-size`: the largest packet the server accepts.
    pub max_packet_size: u32,
    /// `--session-expiry-default-secs`: how long a v3 clean-session-0
    /// session outlives its connection.
    pub v3_session_expiry_secs: u32,
    /// The highest QoS the server grants.
    pub max_qos: QoS,
    /// Receive Maximum the server announces (its inbound QoS 1/2 window).
    pub receive_maximum: u16,
    /// Whether retained messages are supported (CONNACK Retain Available).
    pub retain_available: bool,
    /// `--topic-alias-maximum`: aliases a client may use towards the server.
    pub topic_alias_maximum: u16,
    /// `--max-queued-messages`: QoS 1/2 messages kept per session while
    /// its client is away or its window is full.
    pub max_queued_messages: usize,
    /// `--keepalive-backoff`: a client is closed after
    /// `keep alive x backoff x 2` of silence (0.75 = the standard's 1.5).
    pub keepalive_backoff: f64,
    /// `--max-queued-bytes`: bytes of QoS 1/2 messages kept per session,
    /// queued and inflight together.
    pub max_queued_bytes: usize,
    /// `--max-inflight-out`: QoS 1/2 messages unacknowledged towards a
    /// client, whatever its Receive Maximum (a v3 client has none).
    pub max_inflight_out: u16,
    /// `--max-subscriptions`: subscriptions one session may hold.
    pub max_subscriptions: usize,
    /// `--max-topic-levels`: levels of a topic name or filter.
    pub max_topic_levels: usize,
    /// `--max-session-expiry-secs`: the longest Session Expiry Interval
    /// granted (`u32::MAX` lets a v5 client ask for "never").
    pub max_session_expiry_secs: u32,
    /// `--max-topic-aliases-out`: outbound topic aliases per connection,
    /// beside the client's own Topic Alias Maximum.
    pub max_topic_aliases_out: u16,
    /// `--max-topic-alias-bytes`: bytes of topic names the outbound
    /// aliases of one connection may keep.
    pub max_topic_alias_bytes: usize,
    /// `--acl-file`: who may publish, subscribe and read what (`None`:
    /// everything is allowed).
    pub acl: Option<Arc<Acl>>,
    /// `--client-id-pattern`: the client ids a named client may use, any
    /// one matching (empty: any id).
    pub client_id_patterns: Arc<[ClientIdPattern]>,
    /// `--takeover-same-user-only`: a client id's session may be taken
    /// over (or resumed) only with the username it was made with.
    pub takeover_same_user_only: bool,
}

impl ServerPolicy {
    /// Do sessions need to keep their identity (username, ACL cache)?
    pub(crate) fn keeps_identity(&self) -> bool {
        self.acl.is_some() || self.takeover_same_user_only
    }
}

impl Default for ServerPolicy {
    fn default() -> Self {
        Self {
            server_keep_alive: None,
            max_keep_alive: u16::MAX,
            max_packet_size: ringmq_codec::MAX_PACKET_SIZE,
            v3_session_expiry_secs: 86_400,
            max_qos: QoS::AtMostOnce,
            receive_maximum: u16::MAX,
            retain_available: false,
            topic_alias_maximum: 0,
            max_queued_messages: 1000,
            keepalive_backoff: 0.75,
            max_queued_bytes: usize::MAX,
            max_inflight_out: u16::MAX,
            max_subscriptions: usize::MAX,
            max_topic_levels: usize::MAX,
            max_session_expiry_secs: u32::MAX,
            max_topic_aliases_out: u16::MAX,
            max_topic_alias_bytes: usize::MAX,
            acl: None,
            client_id_patterns: Arc::from(Vec::new()),
            takeover_same_user_only: false,
        }
    }
}

/// An identity rule a CONNECT broke ([`authorize`], or a take-over
/// refused by [`crate::Session::may_take_over`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denial {
    /// The client id matches no `--client-id-pattern` for its username.
    ClientId,
    /// The ACL does not let the client publish its will.
    Will,
    /// `--takeover-same-user-only`: the id's session is another user's.
    Takeover,
}

impl Denial {
    /// The CONNACK refusal for a client of protocol version `v5` or not:
    /// 0x85 / 0x02 for a client id, 0x87 / 0x05 otherwise.
    pub fn refusal(self, v5: bool) -> ConnectRefusal {
        let (v3, v5code, why) = match self {
            Denial::ClientId => (
                V3_IDENTIFIER_REJECTED,
                ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
                "client id not allowed for this user",
            ),
            Denial::Will => (
                V3_NOT_AUTHORIZED,
                ReasonCode::NOT_AUTHORIZED,
                "will topic not writable",
            ),
            Denial::Takeover => (
                V3_NOT_AUTHORIZED,
                ReasonCode::NOT_AUTHORIZED,
                "client id belongs to another user",
            ),
        };
        ConnectRefusal {
            code: if v5 { v5code } else { ReasonCode(v3) },
            why,
        }
    }
}

/// The identity rules of a CONNECT whose client id is `client_id`
/// (`assigned`: the server picked it): a named client's id must match a
/// `--client-id-pattern` (an assigned one is exempt), and its will must
/// be writable.
pub fn authorize(
    connect: &Connect,
    client_id: &[u8],
    assigned: bool,
    policy: &ServerPolicy,
) -> Result<(), Denial> {
    if let Some(user) = &connect.username {
        let patterns = &policy.client_id_patterns;
        if !assigned && !patterns.is_empty() && !patterns.iter().any(|p| p.matches(user, client_id))
        {
            return Err(Denial::ClientId);
        }
    }
    if let (Some(acl), Some(will)) = (&policy.acl, &connect.will) {
        let who = Who {
            client_id,
            username: connect.username.as_deref(),
        };
        if !acl.check(&who, Access::Write, &will.topic) {
            return Err(Denial::Will);
        }
    }
    Ok(())
}

/// What the server grants an accepted CONNECT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Negotiated {
    /// The keep-alive the server enforces, in seconds (0 = none).
    pub keep_alive_secs: u16,
    /// How long the session outlives the connection, in seconds
    /// (`u32::MAX` = never expires).
    pub session_expiry_secs: u32,
    /// The client sent an empty id and the server must assign one
    /// (v5 returns it as Assigned Client Identifier).
    pub assign_client_id: bool,
    /// v5 Will Delay Interval in seconds (0 without a will or delay).
    pub will_delay_secs: u32,
    /// The client's Maximum Packet Size (what the server may send it).
    pub client_max_packet_size: u32,
    /// Properties for the v5 CONNACK (empty for v3); the caller adds the
    /// Assigned Client Identifier when it picks one.
    pub connack_properties: Properties,
}

/// A refused CONNECT: the code to put in CONNACK before closing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectRefusal {
    /// The CONNACK code for the client's version (a v3 return code for
    /// v3.x, a v5 reason code for v5).
    pub code: ReasonCode,
    /// Why, for the log line.
    pub why: &'static str,
}

/// Negotiates a decoded CONNECT against the server's policy.
pub fn negotiate(connect: &Connect, policy: &ServerPolicy) -> Result<Negotiated, ConnectRefusal> {
    let v5 = connect.protocol == ProtocolVersion::V5;
    let refuse = |v3: u8, v5code: ReasonCode, why| ConnectRefusal {
        code: if v5 { v5code } else { ReasonCode(v3) },
        why,
    };

    let assign_client_id = connect.client_id.is_empty();
    if assign_client_id && !v5 {
        // MQTT-3.1.3-8 (3.1.1): an empty id needs clean session 1; 3.1 has
        // no empty ids at all.
        if connect.protocol == ProtocolVersion::V3_1 || !connect.clean_start {
            return Err(refuse(
                V3_IDENTIFIER_REJECTED,
                ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
                "empty client id without clean session",
            ));
        }
    }

    if v5 && !policy.retain_available && connect.will.as_ref().is_some_and(|w| w.retain) {
        // MQTT-3.2.2-13: a retained will cannot be honoured without retain.
        return Err(refuse(
            V3_IDENTIFIER_REJECTED,
            ReasonCode::RETAIN_NOT_SUPPORTED,
            "will retain without retain support",
        ));
    }

    if let Some(will) = &connect.will {
        let valid = std::str::from_utf8(&will.topic)
            .map(|t| ringmq_topic::validate_topic_name(t).is_ok())
            .unwrap_or(false);
        if !valid {
            // MQTT-3.1.3-11: the will topic is a topic name.
            return Err(refuse(
                V3_IDENTIFIER_REJECTED,
                ReasonCode::TOPIC_NAME_INVALID,
                "invalid will topic",
            ));
        }
    }

    let mut props = Properties::default();
    let keep_alive_secs = if v5 {
        let granted = match policy.server_keep_alive {
            Some(server) => server,
            None if connect.keep_alive > policy.max_keep_alive => policy.max_keep_alive,
            // Asking for no keep-alive while a cap is set: impose the cap.
            None if connect.keep_alive == 0 && policy.max_keep_alive < u16::MAX => {
                policy.max_keep_alive
            }
            None => connect.keep_alive,
        };
        if granted != connect.keep_alive {
            // 3.2.2.3.14: the client must use the server's value.
            props.server_keep_alive = Some(granted);
        }
        granted
    } else {
        // A v3 client cannot be told another value; refuse as Mosquitto does.
        if connect.keep_alive > policy.max_keep_alive {
            return Err(refuse(
                V3_IDENTIFIER_REJECTED,
                ReasonCode::PROTOCOL_ERROR,
                "keep alive above --max-keepalive",
            ));
        }
        connect.keep_alive
    };

    let session_expiry_secs = if v5 {
        let asked = connect.properties.session_expiry_interval.unwrap_or(0);
        let granted = asked.min(policy.max_session_expiry_secs);
        if granted != asked {
            // 3.2.2.3.2: the server tells the client the value it uses.
            props.session_expiry_interval = Some(granted);
        }
        granted
    } else if connect.clean_start {
        0
    } else {
        policy
            .v3_session_expiry_secs
            .min(policy.max_session_expiry_secs)
    };

    let will_delay_secs = connect
        .will
        .as_ref()
        .and_then(|w| w.properties.will_delay_interval)
        .unwrap_or(0);

    if v5 {
        if policy.max_qos < QoS::ExactlyOnce {
            props.maximum_qos = Some(policy.max_qos as u8);
        }
        if policy.receive_maximum < u16::MAX {
            props.receive_maximum = Some(policy.receive_maximum);
        }
        if policy.max_packet_size < ringmq_codec::MAX_PACKET_SIZE {
            props.maximum_packet_size = Some(policy.max_packet_size);
        }
        if !policy.retain_available {
            props.retain_available = Some(0);
        }
        // Absent means available for wildcard, shared and identifier
        // subscriptions (3.2.2.3.11-13): all three are supported.
        if policy.topic_alias_maximum > 0 {
            props.topic_alias_maximum = Some(policy.topic_alias_maximum);
        }
    }

    Ok(Negotiated {
        keep_alive_secs,
        session_expiry_secs,
        assign_client_id,
        will_delay_secs,
        client_max_packet_size: connect
            .properties
            .maximum_packet_size
            .unwrap_or(ringmq_codec::MAX_PACKET_SIZE),
        connack_properties: props,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn connect(
        version: ProtocolVersion,
        keep_alive: u16,
        id: &'static str,
        clean: bool,
    ) -> Connect {
        Connect {
            protocol: version,
            clean_start: clean,
            keep_alive,
            client_id: Bytes::from_static(id.as_bytes()),
            will: None,
            username: None,
            password: None,
            properties: Properties::default(),
        }
    }

    #[test]
    fn v5_keepalive_server_value_and_cap() {
        let mut policy = ServerPolicy::default();
        let c = connect(ProtocolVersion::V5, 30, "a", true);
        let n = negotiate(&c, &policy).unwrap();
        assert_eq!(n.keep_alive_secs, 30);
        assert_eq!(n.connack_properties.server_keep_alive, None);

        policy.server_keep_alive = Some(10);
        let n = negotiate(&c, &policy).unwrap();
        assert_eq!(n.keep_alive_secs, 10);
        assert_eq!(n.connack_properties.server_keep_alive, Some(10));

        policy.server_keep_alive = None;
        policy.max_keep_alive = 20;
        let n = negotiate(&c, &policy).unwrap();
        assert_eq!(
            (n.keep_alive_secs, n.connack_properties.server_keep_alive),
            (20, Some(20))
        );
        let zero = connect(ProtocolVersion::V5, 0, "a", true);
        assert_eq!(negotiate(&zero, &policy).unwrap().keep_alive_secs, 20);
        let under = connect(ProtocolVersion::V5, 5, "a", true);
        let n = negotiate(&under, &policy).unwrap();
        assert_eq!(
            (n.keep_alive_secs, n.connack_properties.server_keep_alive),
            (5, None)
        );
    }

    #[test]
    fn v3_over_cap_is_refused_with_0x02() {
        let policy = ServerPolicy {
            max_keep_alive: 20,
            ..ServerPolicy::default()
        };
        let err = negotiate(&connect(ProtocolVersion::V3_1_1, 21, "a", true), &policy).unwrap_err();
        assert_eq!(err.code, ReasonCode(0x02));
        assert!(negotiate(&connect(ProtocolVersion::V3_1_1, 20, "a", true), &policy).is_ok());
        // v3 keep-alive 0 stays 0 even with a cap: it cannot be told otherwise.
        assert_eq!(
            negotiate(&connect(ProtocolVersion::V3_1_1, 0, "a", true), &policy)
                .unwrap()
                .keep_alive_secs,
            0
        );
    }

    #[test]
    fn empty_client_id_rules() {
        let policy = ServerPolicy::default();
        let ok = negotiate(&connect(ProtocolVersion::V3_1_1, 0, "", true), &policy).unwrap();
        assert!(ok.assign_client_id);
        let err = negotiate(&connect(ProtocolVersion::V3_1_1, 0, "", false), &policy).unwrap_err();
        assert_eq!(err.code, ReasonCode(0x02));
        let err = negotiate(&connect(ProtocolVersion::V3_1, 0, "", true), &policy).unwrap_err();
        assert_eq!(err.code, ReasonCode(0x02));
        let v5 = negotiate(&connect(ProtocolVersion::V5, 0, "", false), &policy).unwrap();
        assert!(v5.assign_client_id);
    }

    #[test]
    fn v5_will_retain_is_refused_without_retain_support() {
        let mut c = connect(ProtocolVersion::V5, 0, "a", true);
        c.will = Some(ringmq_codec::Will {
            topic: Bytes::from_static(b"w"),
            payload: Bytes::new(),
            qos: QoS::AtMostOnce,
            retain: true,
            properties: Properties::default(),
        });
        let err = negotiate(&c, &ServerPolicy::default()).unwrap_err();
        assert_eq!(err.code, ReasonCode::RETAIN_NOT_SUPPORTED);
        let ok = negotiate(
            &c,
            &ServerPolicy {
                retain_available: true,
                ..ServerPolicy::default()
            },
        );
        assert!(ok.is_ok());
    }

    #[test]
    fn session_expiry_by_version() {
        let policy = ServerPolicy {
            v3_session_expiry_secs: 77,
            ..ServerPolicy::default()
        };
        let n = negotiate(&connect(ProtocolVersion::V3_1_1, 0, "a", false), &policy).unwrap();
        assert_eq!(n.session_expiry_secs, 77);
        let n = negotiate(&connect(ProtocolVersion::V3_1_1, 0, "a", true), &policy).unwrap();
        assert_eq!(n.session_expiry_secs, 0);
        let mut c = connect(ProtocolVersion::V5, 0, "a", false);
        assert_eq!(negotiate(&c, &policy).unwrap().session_expiry_secs, 0);
        c.properties.session_expiry_interval = Some(300);
        assert_eq!(negotiate(&c, &policy).unwrap().session_expiry_secs, 300);
    }

    #[test]
    fn session_expiry_is_capped_and_the_v5_client_told() {
        let policy = ServerPolicy {
            v3_session_expiry_secs: 1000,
            max_session_expiry_secs: 600,
            ..ServerPolicy::default()
        };
        let mut c = connect(ProtocolVersion::V5, 0, "a", false);
        c.properties.session_expiry_interval = Some(u32::MAX);
        let n = negotiate(&c, &policy).unwrap();
        assert_eq!(n.session_expiry_secs, 600);
        assert_eq!(n.connack_properties.session_expiry_interval, Some(600));
        c.properties.session_expiry_interval = Some(60);
        let n = negotiate(&c, &policy).unwrap();
        assert_eq!(n.session_expiry_secs, 60);
        assert_eq!(n.connack_properties.session_expiry_interval, None);
        let v3 = negotiate(&connect(ProtocolVersion::V3_1_1, 0, "a", false), &policy).unwrap();
        assert_eq!(v3.session_expiry_secs, 600);
        // u32::MAX as the cap lets "never" through.
        let open = ServerPolicy::default();
        c.properties.session_expiry_interval = Some(u32::MAX);
        assert_eq!(negotiate(&c, &open).unwrap().session_expiry_secs, u32::MAX);
    }
}
