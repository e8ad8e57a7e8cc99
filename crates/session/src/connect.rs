//! CONNECT negotiation: what the server grants a new connection.
//!
//! Decides the effective keep-alive (v5 Server Keep Alive, the
//! `--min-keepalive` / `--max-keepalive` range, keep-alive 0 allowed or
//! not; see [`KeepAliveSource`] for the rules), the session expiry, whether an empty client id is acceptable, and
//! the CONNACK properties that tell a v5 client the truth about the server.
//! [`authorize`] applies the identity rules (client-id patterns, the will
//! against the ACL). The shard applies the result; nothing here touches
//! the session table.

use std::sync::Arc;

use ringmq_auth::acl::{Access, Acl, Who};
use ringmq_auth::client_id::ClientIdPattern;
use ringmq_codec::{ConnAck, Connect, Properties, ProtocolVersion, QoS, ReasonCode};

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
    /// `--min-keepalive`: the smallest non-zero keep-alive accepted
    /// (0 = no minimum). At most `max_keep_alive`.
    pub min_keep_alive: u16,
    /// `--refuse-low-keepalive`: a v3 client below `min_keep_alive` is
    /// refused with CONNACK 0x02 instead of being held to the minimum.
    pub refuse_low_keep_alive_v3: bool,
    /// `--allow-zero-keepalive`: whether keep-alive 0 (none) is accepted.
    pub allow_zero_keep_alive: bool,
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
    /// `--persistence-dir` is set: persistent sessions journal their
    /// changes as store steps ([`crate::Outbox::steps`]).
    pub persistence: bool,
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
            min_keep_alive: 0,
            refuse_low_keep_alive_v3: false,
            allow_zero_keep_alive: true,
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
            persistence: false,
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
            silent: false,
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

/// Which rule decided the keep-alive the server enforces
/// ([`Negotiated::keep_alive_source`]), checked in this order:
///
/// - v5 with `--server-keepalive`: that value, whatever the client asked.
/// - Keep-alive 0 with `--allow-zero-keepalive false`: v5 is told
///   `--min-keepalive`, or `--max-keepalive` without a minimum (65535,
///   the longest there is, when neither is set: the client asked for no
///   keep-alive, so it gets the gentlest one); v3 is refused with 0x02.
/// - Keep-alive 0 otherwise is accepted as 0 (no timer), except that a v5
///   client is told `--max-keepalive` when that is below 65535 (the
///   behaviour before `--min-keepalive` existed). The minimum applies to
///   non-zero values only.
/// - Above `--max-keepalive`: v5 is told the maximum; v3 is refused with
///   0x02 (it cannot be told).
/// - Below `--min-keepalive`: v5 is told the minimum; v3 is held to it
///   (the server monitors with the minimum, so the client pings more
///   often than needed, which is harmless), or refused with 0x02 under
///   `--refuse-low-keepalive`.
/// - Otherwise the client's own value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeepAliveSource {
    /// The client's own value, unchanged.
    Client,
    /// `--server-keepalive`, imposed on a v5 client (even when it equals
    /// the client's value).
    ServerKeepAlive,
    /// Below `--min-keepalive`: raised to it (v5: Server Keep Alive; v3:
    /// held to it without being told).
    RaisedToMin,
    /// Above `--max-keepalive`: a v5 client told the maximum.
    CappedAtMax,
    /// Keep-alive 0 not honoured: a v5 client told the minimum or the
    /// maximum instead.
    ZeroImposed,
}

impl KeepAliveSource {
    /// Whether the server, not the client, chose the value.
    pub fn is_imposed(self) -> bool {
        self != KeepAliveSource::Client
    }

    /// A short stable name, for logs and the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            KeepAliveSource::Client => "client",
            KeepAliveSource::ServerKeepAlive => "server_keepalive",
            KeepAliveSource::RaisedToMin => "raised_to_min",
            KeepAliveSource::CappedAtMax => "capped_at_max",
            KeepAliveSource::ZeroImposed => "zero_imposed",
        }
    }
}

/// What the server grants an accepted CONNECT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Negotiated {
    /// The keep-alive the server enforces, in seconds (0 = none); for a v3
    /// client held to `--min-keepalive`, the minimum.
    pub keep_alive_secs: u16,
    /// Which rule decided `keep_alive_secs`.
    pub keep_alive_source: KeepAliveSource,
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
    /// Close without a CONNACK: even the refusal would exceed the
    /// client's Maximum Packet Size (MQTT-3.1.2-24).
    pub silent: bool,
}

/// The longest client identifier the server assigns (for sizing the
/// CONNACK that carries it before it is chosen).
pub const MAX_ASSIGNED_ID_LEN: usize = 32;

/// A refusal CONNACK without properties, in bytes (fixed header 2,
/// flags, code, property length 0).
const REFUSAL_CONNACK_LEN: u32 = 5;

/// Negotiates a decoded CONNECT against the server's policy.
pub fn negotiate(connect: &Connect, policy: &ServerPolicy) -> Result<Negotiated, ConnectRefusal> {
    let v5 = connect.protocol == ProtocolVersion::V5;
    let refuse = |v3: u8, v5code: ReasonCode, why| ConnectRefusal {
        code: if v5 { v5code } else { ReasonCode(v3) },
        why,
        silent: false,
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
    let (keep_alive_secs, keep_alive_source) = keep_alive(connect.keep_alive, v5, policy)
        .ok_or_else(|| {
            // Only v3 is refused: a v5 client is told another value.
            debug_assert!(!v5);
            let why = if connect.keep_alive == 0 {
                "keep alive 0 with --allow-zero-keepalive false"
            } else if connect.keep_alive > policy.max_keep_alive {
                "keep alive above --max-keepalive"
            } else {
                "keep alive below --min-keepalive"
            };
            refuse(V3_IDENTIFIER_REJECTED, ReasonCode::PROTOCOL_ERROR, why)
        })?;
    if v5 && keep_alive_secs != connect.keep_alive {
        // 3.2.2.3.14: the client must use the server's value.
        props.server_keep_alive = Some(keep_alive_secs);
    }

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

    let client_max_packet_size = connect
        .properties
        .maximum_packet_size
        .unwrap_or(ringmq_codec::MAX_PACKET_SIZE);
    if v5 {
        // MQTT-3.1.2-24: not even the CONNACK may exceed the client's
        // Maximum Packet Size. One that would (a client announcing a tiny
        // maximum) is refused with Packet too large, or, when even that
        // does not fit, closed without a word.
        const ASSIGNED: &[u8] = &[b'x'; MAX_ASSIGNED_ID_LEN];
        let mut sized = props.clone();
        if assign_client_id {
            sized.assigned_client_identifier = Some(bytes::Bytes::from_static(ASSIGNED));
        }
        let connack = ConnAck {
            session_present: true,
            code: ReasonCode::SUCCESS,
            properties: sized,
        };
        if connack.encoded_len(ProtocolVersion::V5) > client_max_packet_size as usize {
            let mut refusal = refuse(
                V3_IDENTIFIER_REJECTED,
                ReasonCode::PACKET_TOO_LARGE,
                "CONNACK above the client's Maximum Packet Size",
            );
            refusal.silent = client_max_packet_size < REFUSAL_CONNACK_LEN;
            return Err(refusal);
        }
    }

    Ok(Negotiated {
        keep_alive_secs,
        keep_alive_source,
        session_expiry_secs,
        assign_client_id,
        will_delay_secs,
        client_max_packet_size,
        connack_properties: props,
    })
}

/// The keep-alive the server enforces for a client asking for `asked`
/// seconds, and why ([`KeepAliveSource`] has the rules); `None`: refuse
/// (v3 only: a v5 client can always be told a value).
fn keep_alive(asked: u16, v5: bool, policy: &ServerPolicy) -> Option<(u16, KeepAliveSource)> {
    let (min, max) = (policy.min_keep_alive, policy.max_keep_alive);
    debug_assert!(min <= max, "Config::validate keeps min <= max");
    if v5 {
        if let Some(server) = policy.server_keep_alive {
            return Some((server, KeepAliveSource::ServerKeepAlive));
        }
    }
    if asked == 0 {
        return if !policy.allow_zero_keep_alive {
            v5.then(|| {
                let imposed = if min > 0 { min } else { max };
                (imposed, KeepAliveSource::ZeroImposed)
            })
        } else if v5 && max < u16::MAX {
            // Asking for no keep-alive while a cap is set: impose the cap.
            Some((max, KeepAliveSource::ZeroImposed))
        } else {
            Some((0, KeepAliveSource::Client))
        };
    }
    if asked > max {
        // A v3 client cannot be told another value; refuse as Mosquitto does.
        return v5.then_some((max, KeepAliveSource::CappedAtMax));
    }
    if asked < min {
        if !v5 && policy.refuse_low_keep_alive_v3 {
            return None;
        }
        return Some((min, KeepAliveSource::RaisedToMin));
    }
    Some((asked, KeepAliveSource::Client))
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

    /// Every keep-alive rule: (version, asked, min, max, refuse low v3,
    /// allow zero, server keep-alive) -> Some((enforced, source, Server
    /// Keep Alive property)) or None (CONNACK 0x02).
    #[test]
    fn keep_alive_policy_table() {
        use KeepAliveSource::*;
        const V3: ProtocolVersion = ProtocolVersion::V3_1_1;
        const V5: ProtocolVersion = ProtocolVersion::V5;
        type Row = (
            ProtocolVersion,
            u16,
            u16,
            u16,
            bool,
            bool,
            Option<u16>,
            Option<(u16, KeepAliveSource, Option<u16>)>,
        );
        let max = u16::MAX;
        #[rustfmt::skip]
        let rows: &[Row] = &[
            // Defaults: today's behaviour.
            (V5, 30, 0, max, false, true, None, Some((30, Client, None))),
            (V5, 0, 0, max, false, true, None, Some((0, Client, None))),
            (V3, 0, 0, max, false, true, None, Some((0, Client, None))),
            (V3, 30, 0, max, false, true, None, Some((30, Client, None))),
            // Minimum.
            (V5, 5, 10, max, false, true, None, Some((10, RaisedToMin, Some(10)))),
            (V5, 10, 10, max, false, true, None, Some((10, Client, None))),
            (V3, 5, 10, max, false, true, None, Some((10, RaisedToMin, None))),
            (V3, 5, 10, max, true, true, None, None),
            (V3, 10, 10, max, true, true, None, Some((10, Client, None))),
            (V5, 5, 10, max, true, true, None, Some((10, RaisedToMin, Some(10)))),
            // The minimum applies to non-zero values; 0 is allow-zero's.
            (V5, 0, 10, max, false, true, None, Some((0, Client, None))),
            (V3, 0, 10, max, true, true, None, Some((0, Client, None))),
            // Maximum.
            (V5, 90, 10, 60, false, true, None, Some((60, CappedAtMax, Some(60)))),
            (V3, 90, 10, 60, false, true, None, None),
            (V3, 60, 10, 60, false, true, None, Some((60, Client, None))),
            (V5, 0, 0, 60, false, true, None, Some((60, ZeroImposed, Some(60)))),
            (V3, 0, 0, 60, false, true, None, Some((0, Client, None))),
            // Zero refused.
            (V5, 0, 10, 60, false, false, None, Some((10, ZeroImposed, Some(10)))),
            (V5, 0, 0, 60, false, false, None, Some((60, ZeroImposed, Some(60)))),
            (V5, 0, 0, max, false, false, None, Some((max, ZeroImposed, Some(max)))),
            (V3, 0, 10, 60, false, false, None, None),
            (V3, 0, 0, max, false, false, None, None),
            (V3, 1, 0, max, false, false, None, Some((1, Client, None))),
            // --server-keepalive wins for v5; v3 cannot be told it.
            (V5, 0, 10, 60, false, false, Some(20), Some((20, ServerKeepAlive, Some(20)))),
            (V5, 5, 10, 60, true, true, Some(20), Some((20, ServerKeepAlive, Some(20)))),
            (V5, 90, 10, 60, false, true, Some(20), Some((20, ServerKeepAlive, Some(20)))),
            (V5, 20, 10, 60, false, true, Some(20), Some((20, ServerKeepAlive, None))),
            (V3, 5, 10, 60, false, true, Some(20), Some((10, RaisedToMin, None))),
            (V3, 0, 10, 60, false, false, Some(20), None),
        ];
        for &(version, asked, min, max, refuse_low, allow_zero, server, want) in rows {
            let policy = ServerPolicy {
                min_keep_alive: min,
                max_keep_alive: max,
                refuse_low_keep_alive_v3: refuse_low,
                allow_zero_keep_alive: allow_zero,
                server_keep_alive: server,
                ..ServerPolicy::default()
            };
            let got = negotiate(&connect(version, asked, "a", true), &policy);
            let row = (version, asked, min, max, refuse_low, allow_zero, server);
            match (got, want) {
                (Ok(n), Some(want)) => assert_eq!(
                    (
                        n.keep_alive_secs,
                        n.keep_alive_source,
                        n.connack_properties.server_keep_alive
                    ),
                    want,
                    "{row:?}"
                ),
                (Err(e), None) => assert_eq!(e.code, ReasonCode(0x02), "{row:?}"),
                (got, want) => panic!("{row:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn keep_alive_source_names() {
        assert!(!KeepAliveSource::Client.is_imposed());
        assert!(KeepAliveSource::RaisedToMin.is_imposed());
        assert_eq!(KeepAliveSource::ZeroImposed.as_str(), "zero_imposed");
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
