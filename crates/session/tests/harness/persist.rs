//! `Session::export` / `Session::import`: a session built through real
//! inputs, exported to the store's `SessionState` and imported into a
//! fresh harness, behaves as the original on every later input (packet
//! ids of messages first sent after the import aside), and exports the
//! same state again.
//!
//! - Scenarios: the re-sends on resume (DUP PUBLISH, PUBREL, then the
//!   queue), an inbound QoS 2 id awaiting PUBREL, the will delay and the
//!   session expiry timers, v3.1.1, a state whose deadlines passed, states
//!   the import refuses.
//! - The username: an imported session keeps its owner
//!   (`--takeover-same-user-only`) and its ACL rights (a filtered
//!   subscription still withholds denied topics, away and after a resume;
//!   one the ACL no longer allows is left out), only when identities are
//!   kept.
//! - `import_behaves_as_the_export`: random inputs under a policy that
//!   keeps no identities, one that keeps them, or an ACL, with or without
//!   a username; a lost connection, export and import, then the same
//!   random inputs to both (first while the client is away, then after it
//!   resumes).

use std::collections::HashMap;
use std::sync::Arc;

use proptest::prelude::*;
use ringmq_auth::acl::Acl;
use ringmq_session::{ImportError, WallClock};
use ringmq_store::{Event, SessionState, StoreState};

use crate::util::*;

const CLOCK: WallClock = WallClock {
    unix_ms_at_epoch: 1_700_000_000_000,
};

fn client() -> Bytes {
    Bytes::from_static(b"c")
}

/// A fresh harness at `h`'s clock holding `h`'s session, exported as if it
/// left at `left_at` and imported.
fn imported(h: &Harness, left_at: Tick) -> (Harness, SessionState) {
    imported_under(h, h.policy.clone(), left_at)
}

/// A fresh harness under `policy` at `h`'s clock holding `h`'s session,
/// exported as if it left at `left_at` and imported.
fn imported_under(h: &Harness, policy: ServerPolicy, left_at: Tick) -> (Harness, SessionState) {
    let state = h.session.export(left_at, &CLOCK);
    let mut h2 = Harness::with_policy(policy);
    h2.advance(h.now().0);
    h2.install(|policy, now, out| {
        Session::import(client(), &state, &CLOCK, policy, now, out).expect("imported")
    });
    (h2, state)
}

/// `trace` with each run of route changes sorted: a session keeps its
/// subscriptions in a hash map, so two equal sessions may list them in
/// another order.
fn canon<S: AsRef<str>>(trace: &[S]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut run: Vec<String> = Vec::new();
    for s in trace.iter().map(|s| s.as_ref().to_owned()) {
        if s.starts_with("AddRoute(") || s.starts_with("DropRoute(") {
            run.push(s);
        } else {
            run.sort();
            out.append(&mut run);
            out.push(s);
        }
    }
    run.sort();
    out.append(&mut run);
    out
}

/// The CONNECT both resume with.
fn resume() -> Connect {
    v5("c").clean(false).expiry(3600).receive_max(2)
}

/// Subscriptions with options and ids, two QoS 1/2 messages in flight
/// (the QoS 2 one at PUBREL), two queued (one with an expiry), an inbound
/// QoS 2 id awaiting PUBREL, a will with a 60 s delay; then the link
/// drops at 1 s.
fn built() -> Harness {
    let mut h = Harness::connected(
        v5("c")
            .clean(false)
            .expiry(3600)
            .receive_max(2)
            .will(will("w"), 60),
    );
    let a = SubscriptionOptions {
        qos: QoS::ExactlyOnce,
        no_local: true,
        retain_as_published: true,
        retain_handling: RetainHandling::SendAtSubscribeIfNew,
    };
    h.packet(subscribe_with_id(
        1,
        5,
        &[("a/#", a), ("b", opts(QoS::AtLeastOnce))],
    ));
    let c = SubscriptionOptions {
        retain_handling: RetainHandling::DoNotSend,
        ..opts(QoS::AtMostOnce)
    };
    h.packet(subscribe(2, &[("c/+", c)]));
    h.deliver(&message("a/1", b"m1"), QoS::AtLeastOnce);
    h.deliver(&message("a/2", b"m2"), QoS::ExactlyOnce);
    assert_eq!(ids(&h.sent_publishes()), [2]);
    h.deliver(&message("a/3", b"m3"), QoS::AtLeastOnce);
    h.deliver_with(
        &message("a/4", b"m4"),
        Delivery {
            qos: QoS::ExactlyOnce,
            retain: true,
            ids: &[5],
            expires_at: Some(Tick(600_000)),
        },
    );
    assert!(h.sent_publishes().is_empty(), "the window of 2 is full");
    h.packet(pubrec(2));
    assert_eq!(h.trace(), ["PubRel(2)"]);
    h.publish(publish("in", QoS::ExactlyOnce, b"x").id(7));
    assert_eq!(h.trace(), ["Route(in)", "PubRec(7)"]);
    h.advance(1_000);
    h.lost(CloseCause::NetworkError);
    assert!(h.wills().is_empty(), "delayed");
    h
}

#[test]
fn export_captures_the_session() {
    let h = built();
    let state = h.session.export(h.now(), &CLOCK);
    assert_eq!(state.protocol, 5);
    assert_eq!(state.expiry_secs, 3600);
    assert_eq!(state.left_at_unix_ms, Some(1_700_000_001_000));
    assert_eq!(state.will_delay_secs, 60);
    let will = state.will.as_ref().expect("a will");
    assert_eq!((&will.topic[..], will.qos), (&b"w"[..], 0));
    let subs: Vec<(&[u8], (u8, u32))> = state
        .subscriptions
        .iter()
        .map(|(f, &o)| (&f[..], o))
        .collect();
    assert_eq!(
        subs,
        [
            (&b"a/#"[..], (0x02 | 0x04 | 0x08 | 0x10, 5)),
            (&b"b"[..], (0x01, 5)),
            (&b"c/+"[..], (0x20, 0)),
        ]
    );
    // msg id, payload, QoS, packet id, released.
    type Row<'a> = (u64, &'a [u8], u8, Option<u16>, bool);
    let messages: Vec<Row> = state
        .messages
        .iter()
        .map(|(&id, m)| (id, &m.payload[..], m.qos, m.packet_id, m.released))
        .collect();
    assert_eq!(
        messages,
        [
            (0, &b"m1"[..], 1, Some(1), false),
            // Released: the session keeps only the packet id.
            (1, &b""[..], 2, Some(2), true),
            (2, &b"m3"[..], 1, None, false),
            (3, &b"m4"[..], 2, None, false),
        ]
    );
    let m4 = &state.messages[&3];
    assert!(m4.retain);
    assert_eq!(m4.expires_at_unix_ms, Some(1_700_000_600_000));
    assert!(!m4.properties.is_empty(), "the subscription id is kept");
    assert_eq!(
        state.inbound_pending.iter().copied().collect::<Vec<_>>(),
        [7]
    );
}

#[test]
fn imported_session_resumes_as_the_original() {
    let mut h = built();
    let left_at = h.now();
    let (mut h2, state) = imported(&h, left_at);
    assert_eq!(
        h2.trace(),
        ["AddRoute(a/#)", "AddRoute(b)", "AddRoute(c/+)"]
    );
    assert_eq!(h2.routes(), h.routes());
    for timer in [Timer::WillDelay, Timer::SessionExpiry, Timer::KeepAlive] {
        assert_eq!(h2.armed(timer), h.armed(timer), "{timer:?}");
    }
    assert_eq!(h2.session.export(left_at, &CLOCK), state);

    for step in 0..5 {
        match step {
            0 => {
                h.advance(10_000);
                h2.advance(10_000);
            }
            1 => {
                h.connect(resume());
                h2.connect(resume());
                assert!(h2.connack().session_present);
                assert_eq!(
                    h2.trace(),
                    ["ConnAck", "Publish(a/1)", "PubRel(2)"],
                    "DUP re-send and PUBREL; the window is full"
                );
                let p = h2.sent_publishes()[0];
                assert_eq!((p.packet_id, p.dup), (1, true));
            }
            2 => {
                h.packet(pubrel(7));
                h2.packet(pubrel(7));
                assert_eq!(h2.trace(), ["PubComp(7)"], "no second route");
                assert_eq!(h2.sent()[0], &pubcomp(7));
            }
            3 => {
                h.packet(puback(1));
                h2.packet(puback(1));
                assert_eq!(h2.trace(), ["Publish(a/3)"]);
            }
            _ => {
                h.packet(pubcomp(2));
                h2.packet(pubcomp(2));
                assert_eq!(h2.trace(), ["Publish(a/4)"]);
                let p = h2.sent_publishes()[0];
                assert!(p.retain);
                assert_eq!(p.properties.subscription_identifiers, [5]);
                // 600 s deadline, now 11 s.
                assert_eq!(p.properties.message_expiry_interval, Some(589));
            }
        }
        assert_eq!(h2.full_trace(), h.full_trace(), "step {step}");
        assert_eq!(h2.actions(), h.actions(), "step {step}");
        assert_eq!(h2.routes(), h.routes());
    }
}

#[test]
fn will_delay_and_expiry_fire_as_the_original() {
    let mut h = built();
    let (mut h2, _) = imported(&h, h.now());
    h.advance(60_000);
    h2.advance(60_000);
    assert_eq!(h2.trace(), ["Will(w)"]);
    assert_eq!(h2.full_trace(), h.full_trace());
    h.advance(3_600_000);
    h2.advance(3_600_000);
    assert!(h2.ended());
    assert_eq!(canon(&h2.full_trace()), canon(&h.full_trace()));
}

#[test]
fn a_reconnect_inside_the_delay_cancels_the_imported_will() {
    let mut h = built();
    let (mut h2, _) = imported(&h, h.now());
    h.connect(resume());
    h2.connect(resume());
    assert!(h2.wills().is_empty());
    assert_eq!(h2.full_trace(), h.full_trace());
    h.advance(120_000);
    h2.advance(120_000);
    assert!(h2.wills().is_empty());
}

#[test]
fn v3_session_round_trips() {
    let mut h = Harness::connected(v3("c").clean(false));
    h.packet(subscribe(1, &[("t/#", opts(QoS::AtLeastOnce))]));
    h.lost(CloseCause::NetworkError);
    h.deliver(&message("t/1", b"q"), QoS::AtLeastOnce);
    let (mut h2, state) = imported(&h, h.now());
    // A v3 persistent session gets the expiry the policy gives v3.
    assert_eq!(
        (state.protocol, state.expiry_secs),
        (4, h.session.session_expiry_secs())
    );
    assert_eq!(
        h2.armed(Timer::SessionExpiry),
        h.armed(Timer::SessionExpiry)
    );
    assert_eq!(h2.session.export(h.now(), &CLOCK), state);
    h.connect(v3("c").clean(false));
    h2.connect(v3("c").clean(false));
    assert_eq!(h2.trace(), ["ConnAck", "Publish(t/1)"]);
    assert_eq!(h2.actions(), h.actions());
}

#[test]
fn a_connected_export_has_no_left_time_and_imports_as_left_now() {
    let mut h = Harness::connected(v5("c").clean(false).expiry(30).will(will("w"), 10));
    h.advance(5_000);
    let state = h.session.export(Tick(0), &CLOCK);
    assert_eq!(state.left_at_unix_ms, None);
    assert!(state.will.is_some());
    let mut h2 = Harness::new();
    h2.advance(7_000);
    h2.install(|policy, now, out| {
        Session::import(client(), &state, &CLOCK, policy, now, out).unwrap()
    });
    assert_eq!(h2.armed(Timer::WillDelay), Some(Tick(17_000)));
    assert_eq!(h2.armed(Timer::SessionExpiry), Some(Tick(37_000)));
}

#[test]
fn past_deadlines_arm_just_after_now() {
    let mut h = Harness::connected(v5("c").clean(false).expiry(10).will(will("w"), 5));
    h.lost(CloseCause::NetworkError);
    let state = h.session.export(h.now(), &CLOCK);
    let mut h2 = Harness::new();
    h2.advance(60_000);
    h2.install(|policy, now, out| {
        Session::import(client(), &state, &CLOCK, policy, now, out).unwrap()
    });
    assert_eq!(h2.armed(Timer::WillDelay), Some(Tick(60_001)));
    assert_eq!(h2.armed(Timer::SessionExpiry), Some(Tick(60_001)));
    h2.advance(1);
    assert_eq!(h2.trace(), ["Will(w)", "EndSession"]);
}

/// A state built from `events` about client "c".
fn state_of(events: &[Event]) -> SessionState {
    let mut store = StoreState::new();
    for e in events {
        store.apply(e);
    }
    store.sessions.remove(&client()).expect("a session")
}

fn put(protocol: u8) -> Event {
    Event::SessionPut {
        client_id: client(),
        username: None,
        protocol,
        expiry_secs: 100,
        will: None,
        will_delay_secs: 0,
    }
}

fn queued(qos: u8, properties: &'static [u8]) -> Event {
    Event::MessageQueued {
        client_id: client(),
        msg_id: 0,
        topic: Bytes::from_static(b"t"),
        payload: Bytes::from_static(b"p"),
        qos,
        retain: false,
        properties: Bytes::from_static(properties),
        expires_at_unix_ms: None,
    }
}

#[test]
fn refused_states_write_nothing() {
    let sub = |options| Event::SubscriptionPut {
        client_id: client(),
        filter: Bytes::from_static(b"f"),
        options,
        id: 0,
    };
    let sent = |packet_id| Event::MessageSent {
        client_id: client(),
        msg_id: 0,
        packet_id,
    };
    let cases = [
        (vec![put(9)], ImportError::Protocol(9)),
        (
            vec![put(5), sub(0x03)],
            ImportError::SubscriptionOptions {
                filter: Bytes::from_static(b"f"),
                byte: 0x03,
            },
        ),
        (vec![put(5), queued(0, b"")], ImportError::Qos(0)),
        (vec![put(5), queued(3, b"")], ImportError::Qos(3)),
        (vec![put(5), queued(1, b"\x7F")], ImportError::Properties),
        (
            vec![put(5), queued(1, b""), sent(0)],
            ImportError::PacketIdZero,
        ),
    ];
    for (events, error) in cases {
        let mut h = Harness::new();
        let state = state_of(&events);
        let mut out = Outbox::new();
        let got = Session::import(client(), &state, &CLOCK, &h.policy, h.now(), &mut out);
        assert_eq!(got.err(), Some(error));
        assert_eq!(out.drain().count(), 0);
        // The harness is left as it was.
        h.advance(1);
        assert!(h.routes().is_empty());
    }
}

// ----- the username: owner and ACL rights -----

/// `connect` under username `user`.
fn named(user: &'static str, connect: Connect) -> Connect {
    Connect {
        username: Some(Bytes::from_static(user.as_bytes())),
        ..connect
    }
}

fn same_user_only() -> ServerPolicy {
    ServerPolicy {
        takeover_same_user_only: true,
        ..policy()
    }
}

fn acl_policy(rules: &str) -> ServerPolicy {
    ServerPolicy {
        acl: Some(Arc::new(Acl::parse(rules).unwrap())),
        ..policy()
    }
}

#[test]
fn an_imported_session_keeps_its_owner() {
    let policy = same_user_only();
    let mut h = Harness::connected_with(
        policy.clone(),
        named("alice", v5("c").clean(false).expiry(3600)),
    );
    h.lost(CloseCause::NetworkError);
    let (h2, state) = imported(&h, h.now());
    assert_eq!(state.username, Some(Bytes::from_static(b"alice")));
    assert_eq!(h2.session.username(), Some(&Bytes::from_static(b"alice")));
    assert!(h2.session.may_take_over(Some(b"alice"), &policy));
    assert!(!h2.session.may_take_over(Some(b"bob"), &policy));
    assert!(!h2.session.may_take_over(None, &policy));
    assert_eq!(h2.session.export(h.now(), &CLOCK), state);

    // An anonymous owner is kept as anonymous.
    let mut anon = Harness::connected_with(policy.clone(), v5("c").clean(false).expiry(3600));
    anon.lost(CloseCause::NetworkError);
    let (anon2, state) = imported(&anon, anon.now());
    assert_eq!(state.username, None);
    assert!(anon2.session.may_take_over(None, &policy));
    assert!(!anon2.session.may_take_over(Some(b"alice"), &policy));
}

#[test]
fn without_kept_identities_the_username_is_neither_written_nor_taken() {
    // Not kept: exported without a username.
    let mut h = Harness::connected(named("alice", v5("c").clean(false).expiry(3600)));
    h.lost(CloseCause::NetworkError);
    assert_eq!(h.session.export(h.now(), &CLOCK).username, None);
    // A stored username imported under a policy that keeps none: no
    // owner, as for any session made while identities were not kept.
    let mut owned = Harness::connected_with(
        same_user_only(),
        named("alice", v5("c").clean(false).expiry(3600)),
    );
    owned.lost(CloseCause::NetworkError);
    let (h2, state) = imported_under(&owned, policy(), owned.now());
    assert_eq!(state.username, Some(Bytes::from_static(b"alice")));
    assert_eq!(h2.session.username(), None);
    assert!(h2.session.may_take_over(Some(b"bob"), &same_user_only()));
}

#[test]
fn an_imported_filtered_subscription_still_withholds_denied_topics() {
    let rules = "user alice\ntopic read #\ntopic deny secret/#\n";
    let resume = || named("alice", v5("c").clean(false).expiry(3600));
    let mut h = Harness::connected_with(acl_policy(rules), resume());
    h.packet(subscribe(1, &[("#", opts(QoS::AtLeastOnce))]));
    assert_eq!(suback_codes(&h), [0x01]);
    h.lost(CloseCause::NetworkError);
    let (mut h2, state) = imported(&h, h.now());
    assert_eq!(h2.trace(), ["AddRoute(#)"]);
    assert_eq!(h2.session.export(h.now(), &CLOCK), state);
    // While the client is away: the denied topic is withheld, the other
    // queued.
    for h in [&mut h, &mut h2] {
        h.deliver(&message("secret/x", b"no"), QoS::AtLeastOnce);
        assert_eq!(h.trace(), ["Denied(Read)"]);
        h.deliver(&message("open/x", b"yes"), QoS::AtLeastOnce);
        assert!(h.trace().is_empty());
        assert_eq!(h.session.outbound_len(), (0, 1));
    }
    // After it reconnects: the queue goes out, the denied topic still not.
    h.connect(resume());
    h2.connect(resume());
    assert!(h2.connack().session_present);
    assert_eq!(h2.trace(), ["ConnAck", "Publish(open/x)"]);
    assert_eq!(h2.full_trace(), h.full_trace());
    for h in [&mut h, &mut h2] {
        h.deliver(&message("secret/x", b"no"), QoS::AtLeastOnce);
        assert_eq!(h.trace(), ["Denied(Read)"]);
    }
}

#[test]
fn an_acl_that_no_longer_allows_a_subscription_leaves_it_out() {
    let before = acl_policy("user alice\ntopic read a/#\ntopic read b/#\n");
    let resume = || named("alice", v5("c").clean(false).expiry(3600));
    let mut h = Harness::connected_with(before, resume());
    h.packet(subscribe(
        1,
        &[
            ("a/#", opts(QoS::AtLeastOnce)),
            ("b/#", opts(QoS::AtLeastOnce)),
        ],
    ));
    assert_eq!(suback_codes(&h), [0x01, 0x01]);
    h.lost(CloseCause::NetworkError);
    let after = acl_policy("user alice\ntopic read a/#\n");
    let (mut h2, state) = imported_under(&h, after, h.now());
    assert_eq!(state.subscriptions.len(), 2);
    assert_eq!(h2.trace(), ["AddRoute(a/#)", "Revoked"]);
    assert_eq!(h2.routes(), [&b"a/#"[..]]);
    assert_eq!(h2.session.subscription(b"b/#"), None);
    let again = h2.session.export(h.now(), &CLOCK);
    assert_eq!(
        again.subscriptions.keys().collect::<Vec<_>>(),
        [&Bytes::from_static(b"a/#")]
    );
    // Its owner resumes with what is left.
    h2.connect(resume());
    assert!(h2.connack().session_present);
    assert!(!h2.trace().contains(&"Revoked"));
    assert_eq!(h2.routes(), [&b"a/#"[..]]);
}

#[test]
fn a_will_the_acl_no_longer_allows_is_dropped_at_import() {
    let before = acl_policy("user alice\ntopic write w/#\n");
    let resume = || {
        named(
            "alice",
            v5("c").clean(false).expiry(3600).will(will("w/gone"), 60),
        )
    };
    let mut h = Harness::connected_with(before.clone(), resume());
    h.lost(CloseCause::NetworkError);
    // Still allowed: the will waits for its delay.
    let (h2, state) = imported_under(&h, before, h.now());
    assert!(state.will.is_some());
    assert!(h2.armed(Timer::WillDelay).is_some());
    // No longer allowed: gone, no timer for it.
    let after = acl_policy("user alice\ntopic write other/#\n");
    let (h3, _) = imported_under(&h, after, h.now());
    assert!(h3.armed(Timer::WillDelay).is_none());
    assert!(h3.session.export(h.now(), &CLOCK).will.is_none());
}

// ----- property test -----

const FILTERS: [&str; 3] = ["a/#", "b", "+/x"];
const TOPICS: [&str; 3] = ["a/1", "b", "q/x"];

#[derive(Clone, Debug)]
enum Op {
    /// Deliver `TOPICS[topic]` at QoS 1 (or 2), maybe with an expiry (ms).
    Deliver {
        topic: usize,
        qos2: bool,
        expiry_ms: Option<u64>,
    },
    /// The client answers its n-th outstanding delivery (PUBACK, PUBREC or
    /// PUBCOMP, as its flow stands).
    Ack(usize),
    /// The client publishes QoS 2 with this packet id.
    ClientPublish(u16),
    /// The client releases this packet id.
    ClientRelease(u16),
    /// SUBSCRIBE `FILTERS[filter]` with this options byte and id.
    Subscribe { filter: usize, options: u8, id: u32 },
    /// UNSUBSCRIBE `FILTERS[filter]`.
    Unsubscribe(usize),
    /// The clock moves on.
    Advance(u64),
    /// The link drops (if one is attached).
    Lost,
    /// A new link resumes the session with this Receive Maximum.
    Reconnect(u16),
}

fn op() -> impl Strategy<Value = Op> {
    let options = (0u8..=2, any::<bool>(), any::<bool>(), 0u8..=2)
        .prop_map(|(q, nl, rap, rh)| q | u8::from(nl) << 2 | u8::from(rap) << 3 | rh << 4);
    prop_oneof![
        6 => (0..TOPICS.len(), any::<bool>(), prop::option::of(0u64..20_000))
            .prop_map(|(topic, qos2, expiry_ms)| Op::Deliver { topic, qos2, expiry_ms }),
        5 => any::<usize>().prop_map(Op::Ack),
        2 => (1u16..=3).prop_map(Op::ClientPublish),
        2 => (1u16..=3).prop_map(Op::ClientRelease),
        1 => (0..FILTERS.len(), options, 0u32..3)
            .prop_map(|(filter, options, id)| Op::Subscribe { filter, options, id }),
        1 => (0..FILTERS.len()).prop_map(Op::Unsubscribe),
        2 => (0u64..4_000).prop_map(Op::Advance),
        1 => Just(Op::Lost),
        1 => (1u16..=4).prop_map(Op::Reconnect),
    ]
}

/// Where one delivery stands at the client.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Flow {
    Qos1,
    Qos2,
    Released,
}

/// A client as the model sees it: its outstanding deliveries in the order
/// they first arrived, and what each packet id names (its payload), so
/// that two sessions that chose other free ids compare equal.
#[derive(Clone, Debug, Default)]
struct Client {
    outstanding: Vec<(u16, Flow)>,
    names: HashMap<u16, Bytes>,
    next: u64,
    /// When the last link dropped.
    left_at: Tick,
    /// The username it connects with (None: anonymous).
    username: Option<Bytes>,
}

impl Client {
    /// Applies one input to `h` and answers its actions, packet ids of
    /// our deliveries replaced by their payloads.
    fn run(&mut self, h: &mut Harness, op: &Op, n: usize) -> Vec<String> {
        match *op {
            Op::Deliver {
                topic,
                qos2,
                expiry_ms,
            } => {
                let payload = format!("m{n}");
                let qos = if qos2 {
                    QoS::ExactlyOnce
                } else {
                    QoS::AtLeastOnce
                };
                let expires_at = expiry_ms.map(|ms| h.now().add_ms(ms));
                h.deliver_with(
                    &message(TOPICS[topic], payload.as_bytes()),
                    Delivery {
                        qos,
                        retain: false,
                        ids: &[],
                        expires_at,
                    },
                );
            }
            Op::Ack(k) => {
                if !h.link_open() || self.outstanding.is_empty() {
                    return Vec::new();
                }
                let k = k % self.outstanding.len();
                let (id, flow) = self.outstanding[k];
                match flow {
                    Flow::Qos1 => {
                        self.outstanding.remove(k);
                        h.packet(puback(id));
                    }
                    Flow::Qos2 => {
                        self.outstanding[k].1 = Flow::Released;
                        h.packet(pubrec(id));
                    }
                    Flow::Released => {
                        self.outstanding.remove(k);
                        h.packet(pubcomp(id));
                    }
                }
            }
            Op::ClientPublish(id) if h.link_open() => {
                h.publish(publish("in", QoS::ExactlyOnce, b"x").id(id));
            }
            Op::ClientRelease(id) if h.link_open() => h.packet(pubrel(id)),
            Op::Subscribe {
                filter,
                options,
                id,
            } if h.link_open() => {
                let options = ringmq_session::options_from_byte(options).expect("valid");
                let filters = [(FILTERS[filter], options)];
                let pid = self.pid();
                h.packet(match id {
                    0 => subscribe(pid, &filters),
                    id => subscribe_with_id(pid, id, &filters),
                });
            }
            Op::Unsubscribe(filter) if h.link_open() => {
                h.packet(unsubscribe(self.pid(), &[FILTERS[filter]]))
            }
            Op::Advance(ms) => h.advance(ms),
            Op::Lost if h.session.is_connected() => {
                self.left_at = h.now();
                h.lost(CloseCause::NetworkError);
            }
            Op::Reconnect(receive_max) => {
                if h.session.is_connected() {
                    self.left_at = h.now();
                    h.lost(CloseCause::NetworkError);
                }
                h.connect(Connect {
                    username: self.username.clone(),
                    ..connect().receive_max(receive_max)
                });
            }
            _ => return Vec::new(),
        }
        let trace = self.observe(h);
        if h.session.is_connected() && !h.link_open() {
            // The shard sees the socket close after a `Close`.
            self.left_at = h.now();
            h.lost(CloseCause::ProtocolError);
            let mut more = self.observe(h);
            let mut trace = trace;
            trace.append(&mut more);
            return trace;
        }
        trace
    }

    fn pid(&mut self) -> u16 {
        self.next += 1;
        (self.next % 60_000) as u16 + 1
    }

    /// The last input's actions, as comparable strings.
    fn observe(&mut self, h: &Harness) -> Vec<String> {
        h.actions()
            .iter()
            .map(|a| match a {
                Action::Send(p) => match &**p {
                    Packet::Publish(p) if p.qos != QoS::AtMostOnce => {
                        if !p.dup {
                            let flow = if p.qos == QoS::AtLeastOnce {
                                Flow::Qos1
                            } else {
                                Flow::Qos2
                            };
                            self.outstanding.push((p.packet_id, flow));
                            self.names.insert(p.packet_id, p.payload.clone());
                        }
                        format!(
                            "Publish({:?} {:?} {:?} dup={} {:?} as {:?})",
                            p.topic,
                            p.payload,
                            p.qos,
                            p.dup,
                            p.properties,
                            self.names.get(&p.packet_id)
                        )
                    }
                    Packet::PubRel(r) => {
                        format!("PubRel({:?} {:?})", self.names.get(&r.packet_id), r.code)
                    }
                    other => format!("{other:?}"),
                },
                other => describe(other),
            })
            .collect()
    }
}

fn connect() -> Connect {
    v5("c").clean(false).expiry(1_000).will(will("w"), 2)
}

/// The policies the property runs under: identities not kept, kept for
/// `--takeover-same-user-only`, kept for an ACL that refuses a filter and
/// filters another (for alice: `b` refused, `+/x` filtered by the deny on
/// `q/x`; for an anonymous client: only `a/#`, `in` and `+/x`, filtered
/// the same way). The will (`w`) is writable for both, as a CONNECT
/// needs it to be (`authorize`, which the harness does not run).
fn identity_policy(which: usize) -> ServerPolicy {
    match which {
        0 => policy(),
        1 => same_user_only(),
        _ => acl_policy(
            "topic readwrite a/#\n\
             topic readwrite in\n\
             topic write w\n\
             topic read +/x\n\
             topic deny q/x\n\
             user alice\n\
             topic readwrite #\n\
             topic deny b\n\
             topic deny q/x\n",
        ),
    }
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::Direct(
                "proptest-regressions/harness.txt",
            ),
        )),
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn import_behaves_as_the_export(
        receive_max in 1u16..=3,
        identity in 0usize..3,
        alice in any::<bool>(),
        before in prop::collection::vec(op(), 0..30),
        away in prop::collection::vec(op(), 0..6),
        after in prop::collection::vec(op(), 0..30),
    ) {
        let mut a = Harness::with_policy(identity_policy(identity));
        let mut client = Client {
            username: alice.then(|| Bytes::from_static(b"alice")),
            ..Client::default()
        };
        a.connect(Connect {
            username: client.username.clone(),
            ..connect().clean(true).receive_max(receive_max)
        });
        client.observe(&a);
        for (n, op) in before.iter().enumerate() {
            client.run(&mut a, op, n);
        }
        prop_assume!(!a.ended());
        if a.session.is_connected() {
            client.left_at = a.now();
            a.lost(CloseCause::NetworkError);
            client.observe(&a);
        }
        let left_at = client.left_at;
        let (mut b, state) = imported(&a, left_at);
        prop_assert_eq!(&b.session.export(left_at, &CLOCK), &state);
        prop_assert_eq!(b.session.username(), a.session.username());
        prop_assert_eq!(
            state.username.is_some(),
            alice && identity != 0,
            "the username is kept only when identities are"
        );
        prop_assert_eq!(b.routes(), a.routes());
        for timer in [Timer::WillDelay, Timer::SessionExpiry, Timer::KeepAlive] {
            prop_assert_eq!(b.armed(timer), a.armed(timer));
        }
        let mut client_b = client.clone();
        // Inputs while the client is away (deliveries, time; the ones that
        // need a link do nothing), then it resumes.
        let resume = [Op::Reconnect(receive_max)];
        for (n, op) in away.iter().chain(&resume).chain(&after).enumerate() {
            let n = before.len() + n;
            let got_a = client.run(&mut a, op, n);
            let got_b = client_b.run(&mut b, op, n);
            prop_assert_eq!(canon(&got_a), canon(&got_b), "after {:?}", op);
            prop_assert_eq!(b.routes(), a.routes());
            prop_assert_eq!(b.session.outbound_len(), a.session.outbound_len());
            prop_assert_eq!(b.ended(), a.ended());
            if a.ended() {
                break;
            }
        }
    }
}

// ----- the journal (store steps) -----
//
// Every harness input already checks that the store the steps build equals
// the export (`Harness::check_store`); these pin down what is and is not
// recorded.

#[test]
fn the_journal_builds_the_exported_session_step_by_step() {
    let h = built();
    // `built` ran under a policy with persistence on: every change of the
    // session above was journaled, and the journal's store is its export.
    let stored = h.store.sessions.get(&client()).expect("journaled");
    assert_eq!(stored, &h.session.export(h.session.left_at(), &CLOCK));
    assert_eq!(stored.messages.len(), 4);
    assert_eq!(stored.inbound_pending.len(), 1);
}

#[test]
fn a_session_without_expiry_or_without_persistence_journals_nothing() {
    // Session Expiry 0: it ends with its connection; nothing to keep.
    let mut h = Harness::connected(v5("c"));
    h.packet(subscribe(1, &[("a", opts(QoS::AtLeastOnce))]));
    h.deliver(&message("a", b"m"), QoS::AtLeastOnce);
    assert!(!h.session.journals());
    assert!(h.store.sessions.is_empty());
    // Persistence off: a persistent session queues no step (the harness
    // asserts a step never comes without persistence).
    let policy = ServerPolicy {
        persistence: false,
        ..policy()
    };
    let mut h = Harness::connected_with(policy, v5("c").clean(false).expiry(60));
    h.packet(subscribe(1, &[("a", opts(QoS::AtLeastOnce))]));
    h.deliver(&message("a", b"m"), QoS::AtLeastOnce);
    h.lost(CloseCause::NetworkError);
    h.deliver(&message("a", b"n"), QoS::AtLeastOnce);
    assert!(!h.session.journals());
    assert!(h.store.sessions.is_empty());
}

#[test]
fn a_disconnect_to_expiry_zero_and_the_end_of_a_session_are_journaled() {
    let mut h = Harness::connected(v5("c").clean(false).expiry(60));
    h.packet(subscribe(1, &[("a", opts(QoS::AtLeastOnce))]));
    assert!(h.store.sessions.contains_key(&client()));
    h.packet(disconnect_expiry(0x00, 0));
    // Recorded before the close: a crash now must not keep the session.
    assert_eq!(h.store.sessions[&client()].expiry_secs, 0);
    let cause = h.closed().expect("closed");
    h.lost(cause);
    assert!(h.ended());
    assert!(h.store.sessions.is_empty());
}

#[test]
fn a_will_published_after_its_delay_is_forgotten_by_the_store() {
    let mut h = Harness::connected(v5("c").clean(false).expiry(600).will(will("w"), 5));
    h.lost(CloseCause::NetworkError);
    assert!(h.store.sessions[&client()].will.is_some(), "pending");
    h.advance(5_000);
    assert_eq!(h.wills().len(), 1);
    // A restart now must not publish it a second time.
    assert_eq!(h.store.sessions[&client()].will, None);
}

// ----- hand-over to another node (--cluster-nats) -----

/// A session handed over while connected: 0x8E and close here, the session
/// ends here, and the moved state resumes at the new node exactly as the
/// session would after a take-over on one node.
#[test]
fn a_session_handed_over_resumes_at_the_new_node_as_a_local_take_over() {
    let mut local = built();
    local.connect(resume());
    local.trace();
    let mut here = built();
    here.connect(resume());
    here.trace();
    local.taken_over(false);
    let moved = here.hand_over(false).expect("a persistent session moves");
    assert!(here.ended(), "the session ends here: {:?}", here.trace());
    assert!(here.routes().is_empty());
    assert_eq!(
        here.sent().first(),
        local.sent().first(),
        "DISCONNECT 0x8E as on one node"
    );
    let mut there = Harness::with_policy(here.policy.clone());
    there.advance(here.now().0);
    there.install(|policy, now, out| {
        Session::import(client(), &moved, &STORE_CLOCK, policy, now, out).expect("imported")
    });
    there.trace();
    local.connect(resume());
    there.connect(resume());
    assert!(there.connack().session_present);
    assert_eq!(there.trace(), local.trace());
    assert_eq!(there.routes(), local.routes());
    assert!(there.wills().is_empty() && local.wills().is_empty());
}

#[test]
fn a_clean_start_elsewhere_moves_nothing_and_sends_a_waiting_will() {
    // Detached, its will waiting for its 60 s delay: a Clean Start on the
    // other node ends the session, so the will goes now.
    let mut h = built();
    assert!(h.hand_over(true).is_none());
    assert!(h.ended());
    assert_eq!(h.wills().len(), 1, "{:?}", h.trace());
    // Detached with Clean Start 0: the will moves with the session (the
    // new connection then cancels it), nothing is published here.
    let mut h = built();
    let moved = h.hand_over(false).expect("moves");
    assert!(h.wills().is_empty());
    assert!(moved.will.is_some());
    assert_eq!(
        moved.left_at_unix_ms,
        Some(STORE_CLOCK.to_unix(Tick(1_000)))
    );
    // A v3.1.1 clean session (expiry 0) never moves.
    let mut h = Harness::connected(v3("c"));
    assert!(h.hand_over(false).is_none());
    assert!(h.ended());
}
