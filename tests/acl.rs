//! Black-box tests of authorization: `--acl-file` (Mosquitto's `acl_file`
//! format: `topic` lines for anonymous clients, `user` sections, `pattern`
//! lines with `%c` and `%u`; read, write, readwrite, deny), the exact codes
//! of refused SUBSCRIBE filters, PUBLISHes and wills in v3.1.1 and v5,
//! deliveries and retained messages a client may not read,
//! `--client-id-pattern`, `--takeover-same-user-only`, reloading the file
//! (new decisions, revoked subscriptions, a bad file keeping the old rules)
//! and a bad file at start.
//!
//! No password file is used: without one any username is accepted, and the
//! username still selects the client's `user` section.
//!
//! "Not delivered" is always proven by an ordering barrier, never by a
//! sleep: the broker handles one connection's packets in order and shards
//! talk over FIFO inboxes, so when a client publishes a refused (or
//! unreadable) message and then an allowed one, a subscriber that gets the
//! allowed one first never gets the other. Retained answers are proven
//! complete by an exact subscription to a retained topic on the same owner
//! shard, subscribed after the filter under test (see `retained_on`).

mod common;

use std::collections::BTreeMap;

use common::*;

/// An ACL file in a fresh temporary directory (removed on drop).
struct AclFile {
    _dir: TempDir,
    path: String,
}

impl AclFile {
    fn new(text: &str) -> AclFile {
        let dir = TempDir::new("acl");
        let path = dir.path_str("acl");
        let f = AclFile { _dir: dir, path };
        f.write(text);
        f
    }

    fn write(&self, text: &str) {
        std::fs::write(&self.path, text).unwrap();
    }
}

/// A test broker reading `acl`, plus `extra` flags.
fn start_acl(acl: &AclFile, extra: &[&str]) -> Broker {
    let mut flags = vec!["--acl-file", acl.path.as_str()];
    flags.extend_from_slice(extra);
    start(&flags)
}

/// A v3.1.1 or v5 CONNECT of `id` (clean, keep alive 60).
fn opts(v5: bool, id: &str) -> ConnectOpts {
    if v5 {
        ConnectOpts::v5(id)
    } else {
        ConnectOpts::v3(id)
    }
}

/// A CONNECT of `id` with username `user` and no password.
fn named(v5: bool, id: &str, user: &str) -> ConnectOpts {
    opts(v5, id).login(user, None)
}

/// Connects, asserting success.
fn connect(broker: &Broker, opts: &ConnectOpts) -> RawClient {
    RawClient::connected(broker.local_addr(), opts).0
}

/// The CONNACK code of a CONNECT that must be refused: asserts a failure
/// code and that the broker closes the connection after it.
fn refused_code(broker: &Broker, opts: &ConnectOpts) -> u8 {
    let (mut c, ack) = RawClient::connect(broker.local_addr(), opts);
    assert_ne!(ack.code, 0, "CONNECT {opts:?} was accepted");
    c.expect_closed(PROMPT, "closed after a refused CONNACK");
    ack.code
}

/// The CONNACK code a CONNECT of `opts` gets (the connection is dropped).
fn connack_code(broker: &Broker, opts: &ConnectOpts) -> u8 {
    RawClient::connect(broker.local_addr(), opts).1.code
}

/// Publishes `topic` (payload = topic) at QoS 1 or 2 and answers the reason
/// code of its PUBACK / PUBREC (0 for a v3.1.1 ack, which carries none).
/// A QoS 2 flow that succeeded is completed (PUBREL, PUBCOMP).
fn publish_code(c: &mut RawClient, topic: &str, qos: u8, packet_id: u16, retain: bool) -> u8 {
    assert!(qos == 1 || qos == 2);
    let v5 = c.v5;
    c.send(&publish_packet(
        topic,
        topic.as_bytes(),
        qos,
        packet_id,
        retain,
        v5,
    ))
    .expect("send PUBLISH");
    let kind = if qos == 1 { PUBACK } else { PUBREC };
    let p = c.expect_packet(PROMPT, "PUBACK / PUBREC");
    if !v5 {
        assert_eq!(p.body.len(), 2, "v3.1.1 ack carries only the id: {p:?}");
    }
    let (id, code) = p.ack(kind);
    assert_eq!(id, packet_id, "ack packet id for {topic}: {p:?}");
    if qos == 2 && code < 0x80 {
        c.send(&pubrel_packet(packet_id)).expect("send PUBREL");
        let p = c.expect_packet(PROMPT, "PUBCOMP");
        assert_eq!(p.ack(PUBCOMP), (packet_id, 0), "PUBCOMP of {topic}");
    }
    code
}

/// Reads the next PUBLISH and answers its topic.
fn next_topic(c: &mut RawClient) -> String {
    c.expect_publish(PROMPT).topic
}

/// The v5 reason code "not authorized".
const NOT_AUTHORIZED: u8 = 0x87;

// ---------------------------------------------------------------------------
// Without a file, and access words
// ---------------------------------------------------------------------------

#[test]
fn without_an_acl_file_everything_is_allowed() {
    let broker = start(&[]);
    let mut c = connect(&broker, &named(true, "free", "anyone"));
    assert_eq!(c.subscribe(1, &[("#", 1), ("secret/#", 0)]), [1, 0]);
    let mut p = connect(&broker, &opts(true, "free-pub"));
    assert_eq!(publish_code(&mut p, "secret/x", 1, 2, false), 0);
    assert_eq!(next_topic(&mut c), "secret/x");
    let will = named(true, "free-will", "anyone").will(WillOpts::new("any/where", "w"));
    assert_eq!(connack_code(&broker, &will), 0);
    let s = broker.stats();
    assert_eq!(
        (
            s.acl_publish_denied,
            s.acl_subscribe_denied,
            s.acl_read_denied,
            s.acl_will_refused
        ),
        (0, 0, 0, 0),
        "{s:?}"
    );
}

#[test]
fn a_file_without_rules_denies_everything() {
    let acl = AclFile::new("# nothing is allowed\n\n");
    let broker = start_acl(&acl, &[]);
    for v5 in [false, true] {
        let mut anon = connect(&broker, &opts(v5, &format!("empty-a-{v5}")));
        let mut user = connect(&broker, &named(v5, &format!("empty-u-{v5}"), "u"));
        let refused = if v5 { NOT_AUTHORIZED } else { 0x80 };
        assert_eq!(anon.subscribe(1, &[("a/b", 0)]), [refused], "v5={v5}");
        assert_eq!(user.subscribe(1, &[("a/b", 0)]), [refused], "v5={v5}");
        let ack = if v5 { NOT_AUTHORIZED } else { 0 };
        assert_eq!(publish_code(&mut user, "a/b", 1, 2, false), ack);
    }
    wait_stats(&broker, "two denied publishes", |s| {
        s.acl_publish_denied == 2 && s.acl_subscribe_denied == 4
    });
}

#[test]
fn read_write_readwrite_and_deny_words_grant_what_they_say() {
    let acl = AclFile::new(
        "user u\n\
         topic read r/#\n\
         topic write w/#\n\
         topic readwrite rw/#\n\
         topic plain/#\n\
         topic readwrite d/#\n\
         topic deny d/secret\n\
         pattern deny rw/blocked\n\
         user w\n\
         topic write #\n",
    );
    let broker = start_acl(&acl, &[]);
    let mut sub = connect(&broker, &named(true, &id_on_shard("aw-sub-", 0), "u"));
    let mut publ = connect(&broker, &named(true, &id_on_shard("aw-pub-", 1), "u"));
    let mut writer = connect(&broker, &named(true, &id_on_shard("aw-w-", 0), "w"));

    // read and readwrite (also the default word) let u subscribe, write
    // does not; d/# overlaps the deny but is covered by a readable rule;
    // d/secret is covered by the deny, which wins.
    assert_eq!(
        sub.subscribe(
            1,
            &[
                ("r/#", 0),
                ("w/#", 0),
                ("rw/#", 0),
                ("plain/#", 0),
                ("d/#", 0),
                ("d/secret", 0)
            ]
        ),
        [0, NOT_AUTHORIZED, 0, 0, 0, NOT_AUTHORIZED]
    );

    // write and readwrite let u publish, read does not; a deny wins over
    // the readwrite rule of the same section and over the user's rules
    // when it is a pattern.
    let mut id = 0;
    let mut code = |topic: &str| {
        id += 1;
        publish_code(&mut publ, topic, 1, id, false)
    };
    assert_eq!(code("r/x"), NOT_AUTHORIZED, "read grants no write");
    assert_eq!(code("w/x"), 0, "write");
    assert_eq!(code("rw/x"), 0, "readwrite");
    assert_eq!(code("plain/x"), 0, "no access word means readwrite");
    assert_eq!(code("d/secret"), NOT_AUTHORIZED, "deny wins in the section");
    assert_eq!(code("rw/blocked"), NOT_AUTHORIZED, "a deny pattern wins");
    assert_eq!(code("d/x"), 0, "the rest of d/# stays writable");
    // Only the allowed publishes reach the subscriber, in order.
    assert_eq!(next_topic(&mut sub), "rw/x");
    assert_eq!(next_topic(&mut sub), "plain/x");
    assert_eq!(next_topic(&mut sub), "d/x");

    // w may write everything but what a pattern denies to every client;
    // u may not read what its section denies.
    assert_eq!(publish_code(&mut writer, "d/secret", 1, 1, false), 0);
    assert_eq!(
        publish_code(&mut writer, "rw/blocked", 1, 2, false),
        NOT_AUTHORIZED,
        "a deny pattern applies to every user"
    );
    assert_eq!(publish_code(&mut writer, "r/x", 1, 3, false), 0);
    assert_eq!(next_topic(&mut sub), "r/x", "d/secret may not be read by u");
    let s = wait_stats(&broker, "denials counted", |s| {
        s.acl_publish_denied == 4 && s.acl_subscribe_denied == 2 && s.acl_read_denied >= 1
    });
    assert_eq!(s.acl_will_refused, 0, "{s:?}");
}

#[test]
fn topic_lines_before_any_user_apply_to_anonymous_clients_only() {
    let acl = AclFile::new(
        "# anonymous clients\n\
         topic readwrite anon/#\n\
         \n\
         user alice\n\
         topic readwrite alice/#\n",
    );
    let broker = start_acl(&acl, &[]);
    let filters = [("anon/#", 0), ("alice/#", 0), ("bob/#", 0)];
    let x = NOT_AUTHORIZED;

    let mut anon = connect(&broker, &opts(true, "sec-anon"));
    assert_eq!(anon.subscribe(1, &filters), [0, x, x], "anonymous");
    assert_eq!(publish_code(&mut anon, "alice/1", 1, 3, false), x);
    // Allowed, and comes back to the (subscribed) sender.
    anon.publish0("anon/1", b"a");

    let mut alice = connect(&broker, &named(true, "sec-alice", "alice"));
    assert_eq!(alice.subscribe(1, &filters), [x, 0, x], "alice");
    assert_eq!(publish_code(&mut alice, "anon/2", 1, 2, false), x);
    alice.publish0("alice/2", b"a");

    // A user without a section gets neither the anonymous rules nor
    // anyone else's.
    let mut bob = connect(&broker, &named(true, "sec-bob", "bob"));
    assert_eq!(bob.subscribe(1, &filters), [x, x, x], "bob");
    assert_eq!(publish_code(&mut bob, "anon/3", 1, 2, false), x);
    assert_eq!(publish_code(&mut bob, "bob/3", 1, 3, false), x);

    // What got through went where it was allowed: anon saw anon/1 (its
    // own), alice saw alice/2.
    assert_eq!(next_topic(&mut anon), "anon/1");
    assert_eq!(next_topic(&mut alice), "alice/2");
    wait_stats(&broker, "denials counted", |s| {
        s.acl_publish_denied == 4 && s.acl_subscribe_denied == 7
    });
}

#[test]
fn pattern_with_client_id_lets_dev1_write_only_its_own_state() {
    let acl = AclFile::new(
        "pattern write devices/%c/state\n\
         pattern read devices/%c/cmd\n\
         user monitor\n\
         topic read devices/#\n\
         topic write devices/+/cmd\n",
    );
    let broker = start_acl(&acl, &[]);
    let mut monitor = connect(&broker, &named(true, "mon", "monitor"));
    assert_eq!(monitor.subscribe(1, &[("devices/#", 0)]), [0]);
    let mut commander = connect(&broker, &named(true, "commander", "monitor"));
    let mut cmd_id = 0;

    for (v5, id) in [(true, "dev1"), (false, "dev3")] {
        // Patterns apply to anonymous clients too.
        let mut dev = connect(&broker, &opts(v5, id));
        let other = if id == "dev1" { "dev2" } else { "dev1" };
        let refused = if v5 { NOT_AUTHORIZED } else { 0x80 };
        assert_eq!(
            dev.subscribe(
                1,
                &[
                    (&format!("devices/{id}/cmd"), 0),
                    (&format!("devices/{other}/cmd"), 0),
                    (&format!("devices/{id}/state"), 0),
                ]
            ),
            [0, refused, refused],
            "{id}: reads only its own cmd"
        );
        let denied = if v5 { NOT_AUTHORIZED } else { 0 };
        assert_eq!(
            publish_code(&mut dev, &format!("devices/{other}/state"), 1, 2, false),
            denied,
            "{id} writes {other}'s state"
        );
        assert_eq!(
            publish_code(&mut dev, &format!("devices/{id}/cmd"), 1, 3, false),
            denied,
            "{id} writes its own cmd"
        );
        assert_eq!(
            publish_code(&mut dev, &format!("devices/{id}/state"), 1, 4, false),
            0,
            "{id} writes its own state"
        );
        assert_eq!(
            next_topic(&mut monitor),
            format!("devices/{id}/state"),
            "only {id}'s own state was routed"
        );
        // And it reads what is sent to it, not what is sent to the other.
        for target in [other, id] {
            cmd_id += 1;
            let topic = format!("devices/{target}/cmd");
            assert_eq!(publish_code(&mut commander, &topic, 1, cmd_id, false), 0);
        }
        assert_eq!(next_topic(&mut dev), format!("devices/{id}/cmd"));
        assert_eq!(next_topic(&mut monitor), format!("devices/{other}/cmd"));
        assert_eq!(next_topic(&mut monitor), format!("devices/{id}/cmd"));
    }
    wait_stats(&broker, "denials counted", |s| {
        s.acl_publish_denied == 4 && s.acl_subscribe_denied == 4
    });
}

#[test]
fn pattern_with_username_is_per_user_and_not_for_anonymous_clients() {
    let acl = AclFile::new("pattern readwrite users/%u/#\n");
    let broker = start_acl(&acl, &[]);
    let x = NOT_AUTHORIZED;
    let mut alice = connect(&broker, &named(true, "ph-1", "alice"));
    let mut bob = connect(&broker, &named(true, "ph-2", "bob"));
    assert_eq!(
        alice.subscribe(1, &[("users/alice/#", 0), ("users/bob/#", 0)]),
        [0, x]
    );
    assert_eq!(
        bob.subscribe(1, &[("users/alice/#", 0), ("users/bob/#", 0)]),
        [x, 0]
    );
    assert_eq!(publish_code(&mut bob, "users/alice/in", 1, 2, false), x);
    bob.publish0("users/bob/in", b"b");
    alice.publish0("users/alice/in", b"a");
    assert_eq!(next_topic(&mut bob), "users/bob/in");
    assert_eq!(
        next_topic(&mut alice),
        "users/alice/in",
        "bob's write to alice's tree was not routed"
    );

    let mut anon = connect(&broker, &opts(true, "ph-anon"));
    assert_eq!(
        anon.subscribe(1, &[("users/alice/#", 0), ("users/%u/#", 0)]),
        [x, x]
    );
    assert_eq!(publish_code(&mut anon, "users/alice/in", 1, 2, false), x);
}

// ---------------------------------------------------------------------------
// SUBSCRIBE codes
// ---------------------------------------------------------------------------

/// u may read `a/#` and `b/c`; subscribes to a mix and asserts the exact
/// SUBACK codes (QoS 1 asked), then that the granted filters work.
fn mixed_subscribe_round(v5: bool) {
    let acl = AclFile::new(
        "user u\n\
         topic read a/#\n\
         topic read b/c\n\
         user w\n\
         topic write #\n",
    );
    let broker = start_acl(&acl, &[]);
    let mut sub = connect(&broker, &named(v5, &id_on_shard("mix-s-", 1), "u"));
    let mut writer = connect(&broker, &named(v5, &id_on_shard("mix-w-", 0), "w"));
    let x = if v5 { NOT_AUTHORIZED } else { 0x80 };
    assert_eq!(
        sub.subscribe(
            7,
            &[
                ("a/b", 1),
                ("#", 1),
                ("a/+/c", 1),
                ("+/b", 1),
                ("b/c", 1),
                ("b/#", 1),
                ("a/#", 0),
            ]
        ),
        [1, x, 1, x, 1, x, 0],
        "v5={v5}: a/# covers a/b, a/+/c and a/#; nothing covers #, +/b or b/#"
    );
    // Topics only the refused filters match, then ones the granted match.
    for (i, topic) in ["x/y", "q/b", "b/d", "a/z/c", "b/c"].iter().enumerate() {
        writer.publish1(topic, b"m", i as u16 + 1);
    }
    // a/z/c matches a/+/c and a/#: one or two copies; then b/c. Nothing
    // published before them may come first.
    assert_eq!(next_topic(&mut sub), "a/z/c", "v5={v5}");
    let mut next = next_topic(&mut sub);
    if next == "a/z/c" {
        next = next_topic(&mut sub);
    }
    assert_eq!(next, "b/c", "v5={v5}");
    wait_stats(&broker, "three refused filters", |s| {
        s.acl_subscribe_denied == 3
    });
}

#[test]
fn v5_subscribe_refuses_uncovered_filters_with_0x87_and_grants_the_rest() {
    mixed_subscribe_round(true);
}

#[test]
fn v3_subscribe_refuses_uncovered_filters_with_0x80_and_grants_the_rest() {
    mixed_subscribe_round(false);
}

#[test]
fn rumqttc_sees_not_authorized_in_v5_and_failure_in_v3_suback() {
    use rumqttc::v5::mqttbytes::v5::SubscribeReasonCode as Code5;
    use rumqttc::v5::mqttbytes::QoS as Q5;
    use rumqttc::{QoS, SubscribeReasonCode};
    let acl = AclFile::new("user ru\ntopic read ok/#\ntopic write ok/#\n");
    let broker = start_acl(&acl, &[]);
    let addr = broker.local_addr();

    let (mut c5, _) = V5Client::connect(addr, "ru-5", |o| {
        o.set_credentials("ru", "pw");
    });
    assert_eq!(
        c5.subscribe("secret/#", Q5::AtLeastOnce),
        [Code5::NotAuthorized]
    );
    assert_eq!(
        c5.subscribe("ok/#", Q5::AtLeastOnce),
        [Code5::Success(Q5::AtLeastOnce)]
    );
    let mut p = connect(&broker, &named(true, "ru-pub", "ru"));
    assert_eq!(
        publish_code(&mut p, "secret/5", 1, 1, false),
        NOT_AUTHORIZED
    );
    assert_eq!(publish_code(&mut p, "ok/5", 1, 2, false), 0);
    assert_eq!(
        c5.recv_publish(PROMPT),
        ("ok/5".to_string(), b"ok/5".to_vec())
    );

    let (mut c3, _) = V3Client::connect(addr, "ru-3", |o| {
        o.set_credentials("ru", "pw");
    });
    assert_eq!(
        c3.subscribe("secret/#", QoS::AtLeastOnce),
        [SubscribeReasonCode::Failure]
    );
    assert_eq!(
        c3.subscribe("ok/#", QoS::AtLeastOnce),
        [SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );
    wait_stats(&broker, "two refused filters", |s| {
        s.acl_subscribe_denied == 2
    });
}

// ---------------------------------------------------------------------------
// PUBLISH
// ---------------------------------------------------------------------------

/// p may write `allowed/#`; s reads everything and subscribes to `#`.
const PUBLISH_RULES: &str = "user p\n\
                             topic write allowed/#\n\
                             user s\n\
                             topic read #\n";

#[test]
fn v5_denied_publishes_get_0x87_on_puback_and_pubrec_and_are_not_routed() {
    let acl = AclFile::new(PUBLISH_RULES);
    let broker = start_acl(&acl, &[]);
    let mut sub = connect(&broker, &named(true, &id_on_shard("p5-s-", 0), "s"));
    assert_eq!(sub.subscribe(1, &[("#", 1)]), [1]);
    let mut publ = connect(&broker, &named(true, &id_on_shard("p5-p-", 1), "p"));

    assert_eq!(
        publish_code(&mut publ, "denied/1", 1, 1, false),
        NOT_AUTHORIZED,
        "PUBACK"
    );
    assert_eq!(
        publish_code(&mut publ, "denied/2", 2, 2, false),
        NOT_AUTHORIZED,
        "PUBREC"
    );
    publ.publish0("denied/0", b"q0");
    // The refused QoS 2 flow is over: its packet id is free again.
    assert_eq!(publish_code(&mut publ, "allowed/2", 2, 2, false), 0);
    assert_eq!(publish_code(&mut publ, "allowed/1", 1, 3, false), 0);
    assert_eq!(
        next_topic(&mut sub),
        "allowed/2",
        "no denied message routed"
    );
    assert_eq!(next_topic(&mut sub), "allowed/1");
    // The connection is still in good standing.
    publ.ping();
    wait_stats(&broker, "three denied publishes", |s| {
        s.acl_publish_denied == 3
    });
}

#[test]
fn v3_denied_publishes_get_a_normal_ack_and_are_not_routed() {
    let acl = AclFile::new(PUBLISH_RULES);
    let broker = start_acl(&acl, &[]);
    let mut sub = connect(&broker, &named(false, &id_on_shard("p3-s-", 1), "s"));
    assert_eq!(sub.subscribe(1, &[("#", 1)]), [1]);
    let mut publ = connect(&broker, &named(false, &id_on_shard("p3-p-", 0), "p"));

    // publish_code checks the two-byte body and completes the QoS 2 flow
    // (PUBREL answered by PUBCOMP).
    assert_eq!(publish_code(&mut publ, "denied/1", 1, 1, false), 0);
    assert_eq!(publish_code(&mut publ, "denied/2", 2, 2, false), 0);
    publ.publish0("denied/0", b"q0");
    assert_eq!(publish_code(&mut publ, "allowed/1", 1, 3, false), 0);
    assert_eq!(
        next_topic(&mut sub),
        "allowed/1",
        "no denied message routed"
    );
    publ.ping();
    wait_stats(&broker, "three denied publishes", |s| {
        s.acl_publish_denied == 3
    });
}

#[test]
fn a_denied_retained_publish_is_not_stored() {
    let acl = AclFile::new(
        "user p\n\
         topic write allowed/#\n\
         user s\n\
         topic read #\n\
         topic write ctl/#\n",
    );
    let broker = start_acl(&acl, &[]);
    let addr = broker.local_addr();
    let mut n = 0;
    for owner in [0, 1] {
        let control = topic_on_shard(&format!("ctl/{owner}/"), owner);
        let mut setter = connect(&broker, &named(false, &format!("rs-ctl-{owner}"), "s"));
        assert_eq!(publish_code(&mut setter, &control, 1, 1, true), 0);
        for v5 in [false, true] {
            n += 1;
            let denied = topic_on_shard(&format!("denied/{n}/"), owner);
            let allowed = topic_on_shard(&format!("allowed/{n}/"), owner);
            let mut publ = connect(&broker, &named(v5, &format!("rs-p-{n}"), "p"));
            let want = if v5 { NOT_AUTHORIZED } else { 0 };
            assert_eq!(publish_code(&mut publ, &denied, 1, 1, true), want);
            assert_eq!(publish_code(&mut publ, &denied, 2, 2, true), want);
            assert_eq!(publish_code(&mut publ, &allowed, 1, 3, true), 0);

            let mut reader = RawClient::connected(addr, &named(true, &format!("rs-s-{n}"), "s")).0;
            let got = retained_on(&mut reader, 1, &denied, 0, &control);
            assert!(got.is_empty(), "v5={v5}: denied retained kept: {got:?}");
            let got = retained_on(&mut reader, 3, &allowed, 0, &control);
            let topics: Vec<&str> = got.iter().map(|p| p.topic.as_str()).collect();
            assert_eq!(topics, [allowed.as_str()], "v5={v5}: allowed retained");
        }
    }
    wait_stats(&broker, "eight denied publishes", |s| {
        s.acl_publish_denied == 8
    });
}

// ---------------------------------------------------------------------------
// Reading: live deliveries and retained messages
// ---------------------------------------------------------------------------

/// s reads everything but `secret/#`; w writes everything.
const READ_RULES: &str = "user s\n\
                          topic read #\n\
                          topic deny secret/#\n\
                          user w\n\
                          topic write #\n";

#[test]
fn a_subscription_overlapping_a_deny_is_granted_but_denied_topics_are_not_delivered() {
    let acl = AclFile::new(READ_RULES);
    let broker = start_acl(&acl, &[]);
    let mut s5 = connect(&broker, &named(true, &id_on_shard("rd-s5-", 0), "s"));
    let mut s3 = connect(&broker, &named(false, &id_on_shard("rd-s3-", 1), "s"));
    assert_eq!(s5.subscribe(1, &[("#", 0)]), [0], "v5: # is covered by #");
    assert_eq!(s3.subscribe(1, &[("#", 0)]), [0], "v3: # is covered by #");
    let mut w = connect(&broker, &named(true, &id_on_shard("rd-w-", 1), "w"));
    for (i, shard) in [0, 1].into_iter().enumerate() {
        let secret = topic_on_shard("secret/", shard);
        let public = topic_on_shard("public/", shard);
        assert_eq!(publish_code(&mut w, &secret, 1, 2 * i as u16 + 1, false), 0);
        assert_eq!(publish_code(&mut w, &public, 1, 2 * i as u16 + 2, false), 0);
        assert_eq!(next_topic(&mut s5), public, "v5 got the secret first");
        assert_eq!(next_topic(&mut s3), public, "v3 got the secret first");
    }
    wait_stats(&broker, "four deliveries withheld", |s| {
        s.acl_read_denied >= 4
    });
    assert_eq!(broker.stats().acl_publish_denied, 0);
}

#[test]
fn retained_messages_on_unreadable_topics_are_not_delivered_on_subscribe() {
    let acl = AclFile::new(READ_RULES);
    let broker = start_acl(&acl, &[]);
    let mut w = connect(&broker, &named(true, "rr-w", "w"));
    let mut publics = Vec::new();
    let mut id = 0;
    for shard in [0, 1] {
        for (prefix, list) in [("secret/", None), ("public/", Some(&mut publics))] {
            let topic = topic_on_shard(prefix, shard);
            id += 1;
            assert_eq!(publish_code(&mut w, &topic, 1, id, true), 0);
            if let Some(list) = list {
                list.push(topic);
            }
        }
    }
    for v5 in [true, false] {
        let mut s = connect(&broker, &named(v5, &format!("rr-s-{v5}"), "s"));
        // `#` first, then each public topic exactly: its owner shard answers
        // in order, so the second copy of public_k proves the owner's
        // answer to `#` complete.
        s.send(&subscribe_packet(1, &[("#", 0)], v5)).unwrap();
        for (k, topic) in publics.iter().enumerate() {
            s.send(&subscribe_packet(k as u16 + 2, &[(topic, 0)], v5))
                .unwrap();
        }
        let mut acks = Vec::new();
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        while acks.len() < 3 || publics.iter().any(|t| seen.get(t) != Some(&2)) {
            let p = s.expect_packet(PROMPT, "SUBACK or retained PUBLISH");
            if p.kind == SUBACK {
                let (id, codes) = p.ack_codes(SUBACK, v5);
                assert_eq!(codes, [0], "v5={v5}: SUBACK {id}");
                acks.push(id);
                continue;
            }
            let p = p.publish(v5);
            assert!(p.retain, "v5={v5}: {p:?}");
            assert!(
                !p.topic.starts_with("secret/"),
                "v5={v5}: unreadable retained message delivered: {p:?}"
            );
            *seen.entry(p.topic).or_default() += 1;
        }
        assert_eq!(seen.len(), 2, "v5={v5}: {seen:?}");
    }
    wait_stats(&broker, "retained deliveries withheld", |s| {
        s.acl_read_denied > 0
    });
}

// ---------------------------------------------------------------------------
// Wills
// ---------------------------------------------------------------------------

#[test]
fn a_will_on_an_unwritable_topic_refuses_the_connect_v3_0x05_v5_0x87() {
    let acl = AclFile::new("pattern write wills/%c\nuser watcher\ntopic read wills/#\n");
    let broker = start_acl(&acl, &[]);
    let mut watcher = connect(&broker, &named(true, "watcher", "watcher"));
    assert_eq!(watcher.subscribe(1, &[("wills/#", 0)]), [0]);
    for (v5, code) in [(false, 0x05), (true, NOT_AUTHORIZED)] {
        let id = format!("will-{v5}");
        let bad = opts(v5, &id).will(WillOpts::new("wills/someone-else", "x"));
        assert_eq!(refused_code(&broker, &bad), code, "v5={v5}");
        let named_bad = named(v5, &id, "u").will(WillOpts::new("elsewhere", "x"));
        assert_eq!(refused_code(&broker, &named_bad), code, "v5={v5}, named");
        // A will on its own topic is fine, and is published when the
        // client goes away without DISCONNECT.
        let good = opts(v5, &id).will(WillOpts::new(&format!("wills/{id}"), "bye"));
        let c = connect(&broker, &good);
        drop(c);
        let p = watcher.expect_publish(PROMPT);
        assert_eq!(
            (p.topic, p.payload),
            (format!("wills/{id}"), b"bye".to_vec())
        );
    }
    let s = wait_stats(&broker, "four wills refused", |s| s.acl_will_refused == 4);
    assert_eq!(s.wills_published, 2, "{s:?}");
}

// ---------------------------------------------------------------------------
// Client id patterns and take-overs
// ---------------------------------------------------------------------------

#[test]
fn client_id_pattern_admits_matching_ids_and_refuses_others() {
    let broker = start(&[
        "--client-id-pattern",
        "%u-*",
        "--client-id-pattern",
        "fixed-%u",
    ]);
    for v5 in [false, true] {
        let wrong = if v5 { 0x85 } else { 0x02 };
        let ok = |id: &str| connack_code(&broker, &named(v5, id, "alice"));
        assert_eq!(ok(&format!("alice-{v5}")), 0, "v5={v5}: %u-*");
        assert_eq!(ok("fixed-alice"), 0, "v5={v5}: fixed-%u");
        let bad = |id: &str| refused_code(&broker, &named(v5, id, "alice"));
        assert_eq!(bad(&format!("bob-{v5}")), wrong, "v5={v5}: another user's");
        assert_eq!(bad(&format!("xalice-{v5}")), wrong, "v5={v5}: anchored");
        assert_eq!(bad("fixed-alice2"), wrong, "v5={v5}: whole id");
        // Anonymous clients and server-assigned ids are not restricted.
        assert_eq!(connack_code(&broker, &opts(v5, "anything")), 0);
        assert_eq!(connack_code(&broker, &named(v5, "", "alice")), 0);
    }
    wait_stats(&broker, "six refusals", |s| s.client_id_refused == 6);
}

#[test]
fn takeover_by_another_user_is_refused_and_the_same_user_takes_over() {
    let broker = start(&["--takeover-same-user-only"]);
    let id = id_on_shard("tk-", 1);
    let mut first = connect(&broker, &named(true, &id, "alice"));
    assert_eq!(first.subscribe(1, &[("tk/t", 0)]), [0]);
    assert_eq!(
        refused_code(&broker, &named(true, &id, "bob")),
        NOT_AUTHORIZED
    );
    assert_eq!(refused_code(&broker, &named(false, &id, "bob")), 0x05);
    assert_eq!(refused_code(&broker, &opts(true, &id)), NOT_AUTHORIZED);
    assert_eq!(refused_code(&broker, &opts(false, &id)), 0x05);
    // The old connection was not disturbed: no DISCONNECT, still served,
    // still subscribed.
    first.ping();
    let mut other = connect(&broker, &opts(false, &id_on_shard("tk-pub-", 0)));
    other.publish0("tk/t", b"still here");
    assert_eq!(next_topic(&mut first), "tk/t");
    let s = wait_stats(&broker, "four refusals", |s| s.takeovers_refused_user == 4);
    assert_eq!(s.takeovers, 0, "{s:?}");

    // The same user takes over as before.
    let mut second = connect(&broker, &named(true, &id, "alice"));
    let old = first.expect_closed(PROMPT, "taken over by the same user");
    assert!(
        matches!(old.last(), Some(p) if p.is_disconnect(0x8E)),
        "{old:?}"
    );
    second.ping();
    wait_stats(&broker, "one take-over", |s| s.takeovers == 1);

    // An anonymous session is guarded the same way against named users.
    let anon_id = id_on_shard("tk-anon-", 0);
    let mut anon = connect(&broker, &opts(false, &anon_id));
    assert_eq!(
        refused_code(&broker, &named(true, &anon_id, "alice")),
        NOT_AUTHORIZED
    );
    anon.ping();
    let _again = connect(&broker, &opts(true, &anon_id));
    anon.expect_closed(PROMPT, "taken over by another anonymous client");
    wait_stats(&broker, "five refusals, two take-overs", |s| {
        s.takeovers_refused_user == 5 && s.takeovers == 2
    });
}

#[test]
fn a_stored_session_cannot_be_taken_by_another_user() {
    let broker = start(&["--takeover-same-user-only"]);
    let id = id_on_shard("tks-", 0);
    let keep = named(true, &id, "alice").clean(false).session_expiry(60);
    let mut c = connect(&broker, &keep);
    assert_eq!(c.subscribe(1, &[("tks/t", 0)]), [0]);
    c.send(&disconnect_v5(0)).unwrap();
    c.expect_closed(PROMPT, "after DISCONNECT");
    wait_stats(&broker, "alice offline, session kept", |s| {
        s.connections == 0 && s.sessions == 1
    });

    let bob = named(true, &id, "bob").clean(false).session_expiry(60);
    assert_eq!(refused_code(&broker, &bob), NOT_AUTHORIZED);
    // Clean session 1 would discard alice's session: refused all the same.
    let bob3 = named(false, &id, "bob").clean(true);
    assert_eq!(refused_code(&broker, &bob3), 0x05);
    wait_stats(&broker, "two refusals", |s| s.takeovers_refused_user == 2);

    let (mut back, ack) = RawClient::connected(broker.local_addr(), &keep);
    assert!(ack.session_present, "alice's session survived: {ack:?}");
    let mut other = connect(&broker, &opts(true, "tks-pub"));
    other.publish0("tks/t", b"kept");
    assert_eq!(next_topic(&mut back), "tks/t", "subscription kept");
}

// ---------------------------------------------------------------------------
// Reload and bad files
// ---------------------------------------------------------------------------

/// s reads news and sports; p writes them and `other/#`.
const RELOAD_OLD: &str = "user s\n\
                          topic read news/#\n\
                          topic read sports/#\n\
                          user p\n\
                          topic write news/#\n\
                          topic write sports/#\n\
                          topic write other/#\n";

/// s loses news, p loses other.
const RELOAD_NEW: &str = "user s\n\
                          topic read sports/#\n\
                          user p\n\
                          topic write news/#\n\
                          topic write sports/#\n";

/// Publishes `news/<k>` then `sports/<k>` from `p` until `s`'s next
/// message is `sports/<k>`: the news subscription no longer delivers.
/// Answers how many rounds it took; panics after `PROMPT`.
fn wait_news_revoked(p: &mut RawClient, s: &mut RawClient, start: u16) -> u16 {
    let deadline = std::time::Instant::now() + PROMPT;
    let mut k = start;
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "news/# still delivered {PROMPT:?} after the reload"
        );
        k += 1;
        p.publish0(&format!("news/{k}"), b"n");
        p.publish0(&format!("sports/{k}"), b"s");
        let first = next_topic(s);
        if first == format!("sports/{k}") {
            return k;
        }
        assert_eq!(first, format!("news/{k}"));
        assert_eq!(next_topic(s), format!("sports/{k}"));
    }
}

/// Polls QoS 1 publishes of `other/x` from `p` until one gets `code`.
fn wait_other_code(p: &mut RawClient, code: u8, why: &str) {
    let mut id = 100;
    let ok = poll_until(PROMPT, || {
        id += 1;
        publish_code(p, "other/x", 1, id, false) == code
    });
    assert!(ok, "{why}: other/x never got code {code:#04x}");
}

#[test]
fn reload_applies_new_rules_and_revokes_subscriptions_no_longer_allowed() {
    let acl = AclFile::new(RELOAD_OLD);
    let broker = start_acl(&acl, &[]);
    let s_id = id_on_shard("rl-s-", 1);
    let mut s = connect(&broker, &named(true, &s_id, "s"));
    assert_eq!(s.subscribe(1, &[("news/#", 0), ("sports/#", 0)]), [0, 0]);
    let mut p = connect(&broker, &named(true, &id_on_shard("rl-p-", 0), "p"));
    assert_eq!(publish_code(&mut p, "other/x", 1, 1, false), 0);
    p.publish0("news/0", b"n");
    assert_eq!(next_topic(&mut s), "news/0");

    acl.write(RELOAD_NEW);
    broker.reload().expect("a good file reloads");
    wait_stats(&broker, "one ACL reload", |s| s.acl_reloads == 1);
    // New decisions: p's publish is refused now...
    wait_other_code(&mut p, NOT_AUTHORIZED, "after the reload");
    // ... s's news subscription stops delivering, sports goes on ...
    let k = wait_news_revoked(&mut p, &mut s, 0);
    wait_stats(&broker, "one subscription revoked", |s| {
        s.acl_subscriptions_revoked == 1
    });
    p.publish0("news/last", b"n");
    p.publish0("sports/last", b"s");
    assert_eq!(
        next_topic(&mut s),
        "sports/last",
        "news came back (round {k})"
    );
    s.ping();
    // ... and a new SUBSCRIBE to news is refused (polled: each shard
    // takes the new rules in its own time).
    let fresh_id = id_on_shard("rl-f-", 1);
    let mut last = Vec::new();
    let refused = poll_until(PROMPT, || {
        let mut fresh = connect(&broker, &named(true, &fresh_id, "s"));
        last = fresh.subscribe(1, &[("news/#", 0), ("sports/#", 0)]);
        last == [NOT_AUTHORIZED, 0]
    });
    assert!(refused, "SUBACK codes after the reload: {last:?}");
    let st = broker.stats();
    assert_eq!((st.acl_reloads, st.acl_reload_failures), (1, 0), "{st:?}");
}

#[test]
fn a_revoked_subscription_stays_removed_when_the_rule_comes_back() {
    let acl = AclFile::new(RELOAD_OLD);
    let broker = start_acl(&acl, &[]);
    let s_id = id_on_shard("rb-s-", 1);
    let mut s = connect(&broker, &named(true, &s_id, "s"));
    assert_eq!(s.subscribe(1, &[("news/#", 0), ("sports/#", 0)]), [0, 0]);
    let mut p = connect(&broker, &named(true, &id_on_shard("rb-p-", 0), "p"));

    acl.write(RELOAD_NEW);
    broker.reload().expect("a good file reloads");
    wait_other_code(&mut p, NOT_AUTHORIZED, "after the first reload");
    let k = wait_news_revoked(&mut p, &mut s, 0);

    acl.write(RELOAD_OLD);
    broker.reload().expect("the old file reloads");
    // Both shards run the old rules again: p's shard (0) lets it write
    // other/x, s's shard (1) lets a probe of user s subscribe to news.
    wait_other_code(&mut p, 0, "after the second reload");
    let probe_id = id_on_shard("rb-probe-", 1);
    let granted = poll_until(PROMPT, || {
        let mut probe = connect(&broker, &named(true, &probe_id, "s"));
        probe.subscribe(1, &[("news/probe", 0)]) == [0]
    });
    assert!(granted, "news never readable again after the second reload");
    // The removed subscription did not come back with the rule.
    p.publish0("news/again", b"n");
    p.publish0("sports/again", b"s");
    assert_eq!(
        next_topic(&mut s),
        "sports/again",
        "the news/# subscription revoked in round {k} was only filtered, not removed"
    );
    wait_stats(&broker, "two ACL reloads", |s| s.acl_reloads == 2);
}

#[test]
fn a_bad_file_on_reload_keeps_the_old_rules() {
    let acl = AclFile::new(
        "user p\n\
         topic write ok/#\n\
         user s\n\
         topic read #\n",
    );
    let broker = start_acl(&acl, &[]);
    let mut s = connect(&broker, &named(true, &id_on_shard("bad-s-", 0), "s"));
    assert_eq!(s.subscribe(1, &[("#", 0)]), [0]);
    let mut p = connect(&broker, &named(true, &id_on_shard("bad-p-", 1), "p"));
    assert_eq!(publish_code(&mut p, "ok/1", 1, 1, false), 0);
    assert_eq!(next_topic(&mut s), "ok/1");

    // Would allow nope/# and drop ok/# if it were applied, even in part.
    acl.write(
        "user p\n\
         topic write nope/#\n\
         topic sometimes ok/#\n",
    );
    let err = broker.reload().expect_err("a bad file is refused");
    assert!(err.contains("line 3"), "the error names the line: {err}");
    let st = wait_stats(&broker, "one failed reload", |s| s.acl_reload_failures == 1);
    assert_eq!(st.acl_reloads, 0, "{st:?}");
    assert_eq!(publish_code(&mut p, "nope/1", 1, 2, false), NOT_AUTHORIZED);
    assert_eq!(publish_code(&mut p, "ok/2", 1, 3, false), 0);
    assert_eq!(next_topic(&mut s), "ok/2", "the old rules stay in use");
}

#[test]
fn a_bad_file_at_start_stops_the_broker_and_names_the_line() {
    for (text, line) in [
        ("topic read ok/#\n\nbogus words\n", 3),
        ("user a\ntopic sometimes a/b\n", 2),
        ("# fine\npattern read a/#/b\n", 2),
        ("user\n", 1),
    ] {
        let acl = AclFile::new(text);
        // Refused by Broker::start (or already by the flag check).
        let err = match Config::from_args(args(&["--acl-file", &acl.path])) {
            Err(e) => e.to_string(),
            Ok(config) => match Broker::start(config) {
                Ok(_) => panic!("started with a bad ACL file {text:?}"),
                Err(e) => e.to_string(),
            },
        };
        assert!(
            err.contains(&format!("line {line}")),
            "{text:?}: the error names line {line}: {err}"
        );
    }
}
