//! The keep-alive policy (issue 15): `--min-keepalive`, keep-alive 0
//! allowed or not, beside `--max-keepalive` and `--server-keepalive`; what
//! the CONNACK says, what the session's timer enforces, and the source
//! the admin API reports.

use ringmq_session::{KeepAliveSource, V3_IDENTIFIER_REJECTED};

use crate::util::*;

/// [`policy`] with a keep-alive range and the zero rule.
fn ranged(min: u16, max: u16, allow_zero: bool) -> ServerPolicy {
    ServerPolicy {
        min_keep_alive: min,
        max_keep_alive: max,
        allow_zero_keep_alive: allow_zero,
        ..policy()
    }
}

/// The CONNACK code a CONNECT refused by negotiation gets.
fn refused(policy: &ServerPolicy, connect: &Connect) -> u8 {
    negotiate(connect, policy)
        .expect_err("CONNECT refused")
        .code
        .0
}

// ----- v5 -----

#[test]
fn v5_below_the_minimum_is_told_the_minimum_and_monitored_with_it() {
    let mut h = Harness::with_policy(ranged(10, u16::MAX, true));
    let n = h.connect(v5("c").keep_alive(4));
    assert_eq!(
        (n.keep_alive_secs, n.keep_alive_source),
        (10, KeepAliveSource::RaisedToMin)
    );
    assert_eq!(h.connack().properties.server_keep_alive, Some(10));
    assert_eq!(h.armed(Timer::KeepAlive), Some(Tick(15_000)));
    h.advance(14_999);
    assert!(h.link_open());
    h.advance(1);
    assert_eq!(h.disconnect(), Some(ReasonCode::KEEP_ALIVE_TIMEOUT));
}

#[test]
fn v5_at_or_inside_the_range_keeps_its_own_value() {
    for asked in [10, 30, 60] {
        let mut h = Harness::with_policy(ranged(10, 60, true));
        let n = h.connect(v5("c").keep_alive(asked));
        assert_eq!(
            (n.keep_alive_secs, n.keep_alive_source),
            (asked, KeepAliveSource::Client)
        );
        assert_eq!(h.connack().properties.server_keep_alive, None);
    }
}

#[test]
fn v5_above_the_maximum_is_capped_and_told() {
    let mut h = Harness::with_policy(ranged(10, 60, true));
    let n = h.connect(v5("c").keep_alive(600));
    assert_eq!(
        (n.keep_alive_secs, n.keep_alive_source),
        (60, KeepAliveSource::CappedAtMax)
    );
    assert_eq!(h.connack().properties.server_keep_alive, Some(60));
    assert_eq!(h.armed(Timer::KeepAlive), Some(Tick(90_000)));
}

#[test]
fn v5_zero_refused_is_told_the_minimum() {
    let mut h = Harness::with_policy(ranged(10, 60, false));
    let n = h.connect(v5("c").keep_alive(0));
    assert_eq!(
        (n.keep_alive_secs, n.keep_alive_source),
        (10, KeepAliveSource::ZeroImposed)
    );
    assert_eq!(h.connack().properties.server_keep_alive, Some(10));
    assert_eq!(h.armed(Timer::KeepAlive), Some(Tick(15_000)));
}

#[test]
fn v5_zero_refused_without_a_minimum_is_told_the_maximum() {
    let mut h = Harness::with_policy(ranged(0, 60, false));
    h.connect(v5("c").keep_alive(0));
    assert_eq!(h.connack().properties.server_keep_alive, Some(60));
    assert_eq!(h.armed(Timer::KeepAlive), Some(Tick(90_000)));
}

#[test]
fn v5_zero_refused_with_no_range_at_all_is_told_65535() {
    // Neither a minimum nor a cap: the longest keep-alive there is, the
    // gentlest for a client that asked for none.
    let mut h = Harness::with_policy(ranged(0, u16::MAX, false));
    let n = h.connect(v5("c").keep_alive(0));
    assert_eq!(
        (n.keep_alive_secs, n.keep_alive_source),
        (u16::MAX, KeepAliveSource::ZeroImposed)
    );
    assert_eq!(h.connack().properties.server_keep_alive, Some(u16::MAX));
    assert_eq!(
        h.armed(Timer::KeepAlive),
        Some(Tick(u64::from(u16::MAX) * 1500))
    );
}

#[test]
fn v5_zero_allowed_arms_no_timer_even_with_a_minimum() {
    let mut h = Harness::with_policy(ranged(10, u16::MAX, true));
    let n = h.connect(v5("c").keep_alive(0));
    assert_eq!(
        (n.keep_alive_secs, n.keep_alive_source),
        (0, KeepAliveSource::Client)
    );
    assert_eq!(h.connack().properties.server_keep_alive, None);
    assert_eq!(h.armed(Timer::KeepAlive), None);
}

#[test]
fn v5_server_keepalive_wins_over_the_range_and_the_zero_rule() {
    for asked in [0, 4, 30, 600] {
        let policy = ServerPolicy {
            server_keep_alive: Some(20),
            ..ranged(10, 60, false)
        };
        let mut h = Harness::with_policy(policy);
        let n = h.connect(v5("c").keep_alive(asked));
        assert_eq!(
            (n.keep_alive_secs, n.keep_alive_source),
            (20, KeepAliveSource::ServerKeepAlive),
            "asked {asked}"
        );
        assert_eq!(h.connack().properties.server_keep_alive, Some(20));
        assert_eq!(h.armed(Timer::KeepAlive), Some(Tick(30_000)));
    }
}

// ----- v3 -----

#[test]
fn v3_below_the_minimum_is_held_to_it_without_being_told() {
    let mut h = Harness::with_policy(ranged(10, u16::MAX, true));
    let n = h.connect(v3("c").keep_alive(4));
    assert_eq!(
        (n.keep_alive_secs, n.keep_alive_source),
        (10, KeepAliveSource::RaisedToMin)
    );
    assert_eq!(h.connack().code, ReasonCode::SUCCESS);
    assert_eq!(h.connack().properties, Properties::default());
    // Not closed after 1.5 x its own 4 s, only after 1.5 x the minimum.
    assert_eq!(h.armed(Timer::KeepAlive), Some(Tick(15_000)));
    h.advance(6_000);
    assert!(h.link_open());
    h.advance(8_999);
    assert!(h.link_open());
    h.advance(1);
    assert_eq!(h.trace(), ["Close(KeepAliveTimeout)"]);
}

#[test]
fn v3_below_the_minimum_is_refused_with_0x02_under_refuse_low() {
    let policy = ServerPolicy {
        refuse_low_keep_alive_v3: true,
        ..ranged(10, 60, true)
    };
    assert_eq!(
        refused(&policy, &v3("c").keep_alive(4)),
        V3_IDENTIFIER_REJECTED
    );
    let v31 = Connect {
        protocol: ProtocolVersion::V3_1,
        ..v3("c").keep_alive(9)
    };
    assert_eq!(refused(&policy, &v31), V3_IDENTIFIER_REJECTED);
    // At the minimum, and v5 below it, are accepted.
    let mut h = Harness::with_policy(policy);
    assert_eq!(h.connect(v3("c").keep_alive(10)).keep_alive_secs, 10);
    let mut h = Harness::with_policy(h.policy.clone());
    assert_eq!(h.connect(v5("c").keep_alive(4)).keep_alive_secs, 10);
}

#[test]
fn v3_above_the_maximum_is_still_refused_with_0x02() {
    assert_eq!(
        refused(&ranged(10, 60, true), &v3("c").keep_alive(61)),
        V3_IDENTIFIER_REJECTED
    );
}

#[test]
fn v3_zero_is_refused_with_0x02_when_zero_is_not_allowed() {
    for policy in [ranged(0, u16::MAX, false), ranged(10, 60, false)] {
        assert_eq!(
            refused(&policy, &v3("c").keep_alive(0)),
            V3_IDENTIFIER_REJECTED
        );
    }
}

#[test]
fn v3_zero_allowed_arms_no_timer() {
    let mut h = Harness::with_policy(ranged(10, 60, true));
    let n = h.connect(v3("c").keep_alive(0));
    assert_eq!(
        (n.keep_alive_secs, n.keep_alive_source),
        (0, KeepAliveSource::Client)
    );
    assert_eq!(h.armed(Timer::KeepAlive), None);
}

#[test]
fn v3_ignores_server_keepalive_and_is_held_to_the_range() {
    let policy = ServerPolicy {
        server_keep_alive: Some(20),
        ..ranged(10, 60, true)
    };
    let mut h = Harness::with_policy(policy);
    let n = h.connect(v3("c").keep_alive(4));
    assert_eq!(
        (n.keep_alive_secs, n.keep_alive_source),
        (10, KeepAliveSource::RaisedToMin)
    );
}

#[test]
fn the_default_policy_keeps_every_client_value() {
    for (connect, asked) in [
        (v5("c").keep_alive(0), 0),
        (v5("c").keep_alive(1), 1),
        (v3("c").keep_alive(0), 0),
        (v3("c").keep_alive(u16::MAX), u16::MAX),
    ] {
        let n = negotiate(&connect, &ServerPolicy::default()).unwrap();
        assert_eq!(
            (n.keep_alive_secs, n.keep_alive_source),
            (asked, KeepAliveSource::Client)
        );
    }
}
