//! Black-box retained-message tests: set, replace and clear across shards
//! (every combination of publisher, subscriber and topic-owner shard), the
//! RETAIN flag on subscribe and on live delivery (with and without Retain As
//! Published), Retain Handling 0/1/2, wildcard subscriptions gathering
//! retained messages from both shards, retained QoS, a retained will, a
//! retained update seen by a later subscription, and publish order kept
//! across shards when some messages carry RETAIN.
//!
//! Retained messages live on the shard `shard_for(topic, 2)`. A publish is
//! known to be stored once a PINGRESP (QoS 0) or PUBACK (QoS 1) that follows
//! it came back: the broker handles a connection's packets in order and
//! shards talk over FIFO inboxes. "No retained message for filter F" is
//! proven by subscribing next to a control topic on the same owner shard
//! that does hold one: the owner answers in order, so the control message
//! must come first.

mod common;

use common::*;
use std::collections::BTreeSet;
use std::time::Duration;

/// How long "nothing more arrives" is watched where no control message can
/// prove it.
const QUIET: Duration = Duration::from_millis(300);

/// Publishes a retained QoS 0 message and waits until the broker handled it.
fn retain0(c: &mut RawClient, topic: &str, payload: &[u8]) {
    let v5 = c.v5;
    c.send(&publish_packet(topic, payload, 0, 0, true, v5))
        .expect("send PUBLISH");
    c.ping();
}

/// A fresh client (`id`) subscribes to `filter` and answers the retained
/// messages it is sent, proven complete by `control`, a retained topic on
/// the same owner shard subscribed right after (its message is dropped from
/// the answer).
fn retained_for(
    addr: std::net::SocketAddr,
    id: &str,
    filter: &str,
    control: &str,
) -> Vec<PublishInfo> {
    let (mut c, _) = RawClient::connected(addr, &ConnectOpts::v3(id));
    retained_on(&mut c, 1, filter, 0, control)
}

#[test]
fn retained_set_replace_clear_on_every_shard_combination() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let mut n = 0;
    for owner in [0, 1] {
        let topic = topic_on_shard(&format!("keep/{owner}/"), owner);
        let control = topic_on_shard(&format!("ctl/{owner}/"), owner);
        let (mut setter, _) =
            RawClient::connected(addr, &ConnectOpts::v3(&id_on_shard("ctl-setter-", owner)));
        retain0(&mut setter, &control, b"control");
        for pub_shard in [0, 1] {
            for sub_shard in [0, 1] {
                n += 1;
                let what = format!("owner {owner}, publisher {pub_shard}, subscriber {sub_shard}");
                let (mut publisher, _) = RawClient::connected(
                    addr,
                    &ConnectOpts::v5(&id_on_shard(&format!("rp{n}-"), pub_shard)),
                );
                let sub_id = |k: &str| id_on_shard(&format!("rs{n}{k}-"), sub_shard);
                retain0(&mut publisher, &topic, b"first");
                let got = retained_for(addr, &sub_id("a"), &topic, &control);
                assert_eq!(got.len(), 1, "{what}: set: {got:?}");
                assert_eq!(
                    (&got[0].topic, &got[0].payload[..], got[0].retain),
                    (&topic, &b"first"[..], true),
                    "{what}: retained on subscribe carries RETAIN 1 (MQTT-3.3.1-8)"
                );

                retain0(&mut publisher, &topic, b"second");
                let got = retained_for(addr, &sub_id("b"), &topic, &control);
                let payloads: Vec<&[u8]> = got.iter().map(|p| &p.payload[..]).collect();
                assert_eq!(payloads, [&b"second"[..]], "{what}: replace");

                // An empty retained payload clears it and is itself not kept
                // (MQTT-3.3.1-10/11).
                retain0(&mut publisher, &topic, b"");
                let got = retained_for(addr, &sub_id("c"), &topic, &control);
                assert!(got.is_empty(), "{what}: cleared, yet got {got:?}");
            }
        }
    }
}

#[test]
fn retain_flag_on_live_delivery_is_0_unless_retain_as_published() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let (mut plain5, _) = RawClient::connected(addr, &ConnectOpts::v5(&id_on_shard("rf-p5-", 0)));
    assert_eq!(plain5.subscribe(1, &[("rf/t", 0)]), [0]);
    let (mut rap5, _) = RawClient::connected(addr, &ConnectOpts::v5(&id_on_shard("rf-r5-", 1)));
    assert_eq!(rap5.subscribe(1, &[("rf/t", RETAIN_AS_PUBLISHED)]), [0]);
    let (mut plain3, _) = RawClient::connected(addr, &ConnectOpts::v3(&id_on_shard("rf-p3-", 1)));
    assert_eq!(plain3.subscribe(1, &[("rf/t", 0)]), [0]);

    let (mut publisher, _) = RawClient::connected(addr, &ConnectOpts::v3(&id_on_shard("rf-", 0)));
    retain0(&mut publisher, "rf/t", b"retained");
    publisher.publish0("rf/t", b"plain");
    for (c, name, want) in [
        (&mut plain5, "v5", [false, false]),
        (&mut rap5, "v5 Retain As Published", [true, false]),
        (&mut plain3, "v3", [false, false]),
    ] {
        let flags = [
            c.expect_publish(PROMPT).retain,
            c.expect_publish(PROMPT).retain,
        ];
        assert_eq!(
            flags, want,
            "{name}: RETAIN on live delivery of (retained, plain) (MQTT-3.3.1-9 / 3.3.1-12/13)"
        );
    }
    // A new subscription still gets it with RETAIN 1, whatever the options.
    let (mut late, _) = RawClient::connected(addr, &ConnectOpts::v5(&id_on_shard("rf-l-", 0)));
    assert_eq!(late.subscribe(1, &[("rf/t", 0)]), [0]);
    let p = late.expect_publish(PROMPT);
    assert_eq!((&p.payload[..], p.retain), (&b"retained"[..], true));
}

#[test]
fn retain_handling_0_1_and_2() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    for owner in [0, 1] {
        let topic = topic_on_shard(&format!("rh/{owner}/"), owner);
        let control = topic_on_shard(&format!("rhc/{owner}/"), owner);
        let (mut publisher, _) =
            RawClient::connected(addr, &ConnectOpts::v3(&id_on_shard("rh-pub-", owner)));
        retain0(&mut publisher, &topic, b"kept");
        retain0(&mut publisher, &control, b"control");
        let count = |got: Vec<PublishInfo>| {
            for p in &got {
                assert_eq!((&p.payload[..], p.retain), (&b"kept"[..], true), "{p:?}");
            }
            got.len()
        };
        let sub_shard = 1 - owner;

        // 0: sent on every SUBSCRIBE, new or not.
        let (mut c0, _) =
            RawClient::connected(addr, &ConnectOpts::v5(&id_on_shard("rh0-", sub_shard)));
        assert_eq!(
            count(retained_on(
                &mut c0,
                1,
                &topic,
                retain_handling(0),
                &control
            )),
            1
        );
        assert_eq!(
            count(retained_on(
                &mut c0,
                3,
                &topic,
                retain_handling(0),
                &control
            )),
            1,
            "owner {owner}: Retain Handling 0 resubscribe (MQTT-3.3.1-9 v5)"
        );

        // 1: only when the subscription is new.
        let (mut c1, _) =
            RawClient::connected(addr, &ConnectOpts::v5(&id_on_shard("rh1-", sub_shard)));
        assert_eq!(
            count(retained_on(
                &mut c1,
                1,
                &topic,
                retain_handling(1),
                &control
            )),
            1
        );
        assert_eq!(
            count(retained_on(
                &mut c1,
                3,
                &topic,
                retain_handling(1),
                &control
            )),
            0,
            "owner {owner}: Retain Handling 1 resubscribe must not send (MQTT-3.3.1-10 v5)"
        );
        c1.send(&unsubscribe_packet(5, &[&topic], true)).unwrap();
        let p = c1.expect_packet(PROMPT, "UNSUBACK");
        assert_eq!(p.ack_codes(UNSUBACK, true), (5, vec![0]));
        assert_eq!(
            count(retained_on(
                &mut c1,
                6,
                &topic,
                retain_handling(1),
                &control
            )),
            1,
            "owner {owner}: Retain Handling 1 after UNSUBSCRIBE is a new subscription"
        );

        // 2: never.
        let (mut c2, _) =
            RawClient::connected(addr, &ConnectOpts::v5(&id_on_shard("rh2-", sub_shard)));
        assert_eq!(
            count(retained_on(
                &mut c2,
                1,
                &topic,
                retain_handling(2),
                &control
            )),
            0,
            "owner {owner}: Retain Handling 2 (MQTT-3.3.1-11 v5)"
        );
        // A Retain Handling 2 subscription still gets live messages.
        publisher.publish0(&topic, b"live");
        let p = c2.expect_publish(PROMPT);
        assert_eq!((&p.payload[..], p.retain), (&b"live"[..], false));
    }
}

#[test]
fn wildcard_subscription_gathers_retained_messages_from_both_shards() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let a = topic_on_shard("wr/a", 0);
    let b = topic_on_shard("wr/b", 1);
    let deep = format!("{}/deep", topic_on_shard("wr/c", 1));
    assert_eq!(shard_for(a.as_bytes(), 2), 0);
    assert_eq!(shard_for(b.as_bytes(), 2), 1);
    let (mut publisher, _) = RawClient::connected(addr, &ConnectOpts::v3(&id_on_shard("wr-p-", 0)));
    retain0(&mut publisher, &a, b"A");
    retain0(&mut publisher, &b, b"B");
    retain0(&mut publisher, &deep, b"D");
    retain0(&mut publisher, "other/x", b"not matched");

    for (k, (filter, want)) in [
        ("wr/#", vec![a.clone(), b.clone(), deep.clone()]),
        ("wr/+", vec![a.clone(), b.clone()]),
        ("+/+", vec![a.clone(), b.clone(), "other/x".to_string()]),
    ]
    .into_iter()
    .enumerate()
    {
        for sub_shard in [0, 1] {
            let id = id_on_shard(&format!("wr-s{k}-"), sub_shard);
            let (mut c, _) = RawClient::connected(addr, &ConnectOpts::v5(&id));
            assert_eq!(c.subscribe(1, &[(filter, 0)]), [0]);
            let mut got = BTreeSet::new();
            for _ in 0..want.len() {
                let p = c.expect_publish(PROMPT);
                assert!(p.retain, "{filter}: RETAIN 1 expected: {p:?}");
                assert!(got.insert(p.topic.clone()), "{filter}: {} twice", p.topic);
            }
            let want: BTreeSet<String> = want.iter().cloned().collect();
            assert_eq!(got, want, "{filter} from shard {sub_shard}");
            c.expect_silence(QUIET, "no more retained messages");
        }
    }
}

#[test]
fn retained_qos_is_min_of_stored_and_granted() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let (mut publisher, _) = RawClient::connected(addr, &ConnectOpts::v5(&id_on_shard("rq-p-", 1)));
    publisher
        .send(&publish_packet_full(
            "rq/one",
            b"q1",
            1,
            1,
            true,
            false,
            Some(&[]),
        ))
        .unwrap();
    assert_eq!(
        publisher.expect_packet(PROMPT, "PUBACK").ack(PUBACK),
        (1, 0)
    );
    publisher
        .send(&publish_packet_full(
            "rq/two",
            b"q2",
            2,
            2,
            true,
            false,
            Some(&[]),
        ))
        .unwrap();
    assert_eq!(
        publisher.expect_packet(PROMPT, "PUBREC").ack(PUBREC),
        (2, 0)
    );
    publisher.send(&pubrel_packet(2)).unwrap();
    assert_eq!(
        publisher.expect_packet(PROMPT, "PUBCOMP").ack(PUBCOMP),
        (2, 0)
    );

    for (granted, want_one, want_two) in [(0u8, 0u8, 0u8), (1, 1, 1), (2, 1, 2)] {
        let id = id_on_shard(&format!("rq-s{granted}-"), usize::from(granted % 2));
        let (mut c, _) = Receiver::connect(addr, &ConnectOpts::v3(&id));
        for (topic, want) in [("rq/one", want_one), ("rq/two", want_two)] {
            assert_eq!(c.raw.subscribe(1, &[(topic, granted)]), [granted]);
            let p = c.next(PROMPT);
            assert_eq!(
                (&p.topic[..], p.qos, p.retain),
                (topic, want, true),
                "granted {granted}"
            );
        }
        c.finish();
    }
}

#[test]
fn will_with_retain_is_stored_as_a_retained_message() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    for (n, v5) in [(0usize, false), (1, true)] {
        let topic = topic_on_shard(&format!("wret/{n}/"), 1 - n);
        let mut will = WillOpts::new(&topic, "last words");
        will.qos = 1;
        will.retain = true;
        let base = if v5 {
            ConnectOpts::v5(&id_on_shard("wret-d5-", n))
        } else {
            ConnectOpts::v3(&id_on_shard("wret-d3-", n))
        };
        let before = broker.stats().wills_published;
        let (dying, _) = RawClient::connected(addr, &base.will(will));
        drop(dying);
        wait_stats(&broker, "will published", |s| s.wills_published > before);
        // A later subscriber, on either shard, gets it as retained.
        for sub_shard in [0, 1] {
            let id = id_on_shard(&format!("wret-s{n}-"), sub_shard);
            let (mut c, _) = Receiver::connect(addr, &ConnectOpts::v5(&id));
            assert_eq!(c.raw.subscribe(1, &[(&topic, 2)]), [2]);
            let p = c.next(PROMPT);
            assert_eq!(
                (&p.topic, &p.payload[..], p.qos, p.retain),
                (&topic, &b"last words"[..], 1, true),
                "retained will (v5 dier {v5}) to shard {sub_shard}"
            );
        }
    }
}

/// A retained message set by a publisher on shard 0 for a topic owned by
/// shard 1 is what a subscription made afterwards (on shard 0, after the
/// publisher's PINGRESP) gets, 1000 times in a row: the retained query must
/// not overtake the store on its way to the owner shard (it did once, when
/// the store travelled on the publish channel and the query on the control
/// channel, which the owner drains first).
#[test]
fn retained_update_is_seen_by_a_causally_later_subscription() {
    let broker = start(&[]);
    let addr = broker.local_addr();
    let topic = topic_on_shard("order/", 1);
    let (mut publisher, _) =
        RawClient::connected(addr, &ConnectOpts::v3(&id_on_shard("ord-p-", 0)));
    let (mut sub, _) = RawClient::connected(addr, &ConnectOpts::v3(&id_on_shard("ord-s-", 0)));
    let mut stale = Vec::new();
    for i in 0..1000u32 {
        let value = i.to_string();
        publisher
            .send(&publish_packet(&topic, value.as_bytes(), 0, 0, true, false))
            .unwrap();
        publisher.ping();
        // The retained message and the SUBACK may come in either order.
        sub.send(&subscribe_packet(1, &[(&topic, 0)], false))
            .unwrap();
        let mut got = None;
        let mut acked = false;
        while got.is_none() || !acked {
            let p = sub.expect_packet(PROMPT, "SUBACK or retained PUBLISH");
            if p.kind == SUBACK {
                acked = true;
            } else {
                got = Some(p.publish(false).payload);
            }
        }
        let got = got.unwrap_or_default();
        if got != value.as_bytes() {
            stale.push((i, String::from_utf8_lossy(&got).into_owned()));
        }
        sub.send(&unsubscribe_packet(2, &[&topic], false)).unwrap();
        assert_eq!(sub.expect_packet(PROMPT, "UNSUBACK").kind, UNSUBACK);
    }
    assert!(
        stale.is_empty(),
        "{} of 1000 subscriptions got a stale retained message (set, got): {:?}",
        stale.len(),
        &stale[..stale.len().min(10)]
    );
}

/// Messages of one publisher on one topic arrive in publish order (MQTT
/// 4.6), whether or not they carry RETAIN. Four publisher/subscriber pairs
/// at once, publisher and subscriber on different shards and the topic's
/// retained owner on either; each publisher sends 2000 numbered QoS 1
/// messages on its own topic (pipelined, at most 64 unacknowledged), about
/// 30% with RETAIN, to a subscriber that subscribed (QoS 1) before. Seen:
/// where the owner is the subscriber's shard, the retained ones travel on
/// another channel and arrive early.
#[test]
fn retained_and_plain_messages_of_one_publisher_arrive_in_publish_order_across_shards() {
    const N: u32 = 2000;
    const WINDOW: u32 = 64;
    // The publishers outrun their subscribers: all N may have to wait.
    let broker = start(&["--max-queued-messages", "2000"]);
    let addr = broker.local_addr();
    // About 30% of the messages, spread without a pattern the broker could
    // line up with.
    fn retained(k: usize, i: u32) -> bool {
        let x = (i ^ (k as u32).wrapping_mul(0x9E37_79B9)).wrapping_mul(0x85EB_CA6B);
        (x >> 16) % 10 < 3
    }
    let pairs: Vec<(usize, usize, usize)> = [(0, 1), (1, 0)]
        .into_iter()
        .flat_map(|(p, s)| [(p, s, 0), (p, s, 1)])
        .collect();
    let mut threads = Vec::new();
    for (k, &(pub_shard, sub_shard, owner)) in pairs.iter().enumerate() {
        let topic = topic_on_shard(&format!("po{k}/"), owner);
        let (mut sub, _) = Receiver::connect(
            addr,
            &ConnectOpts::v3(&id_on_shard(&format!("po{k}-s-"), sub_shard)),
        );
        assert_eq!(sub.raw.subscribe(1, &[(&topic, 1)]), [1]);
        let (mut publisher, _) = RawClient::connected(
            addr,
            &ConnectOpts::v3(&id_on_shard(&format!("po{k}-p-"), pub_shard)),
        );
        let t = topic.clone();
        let publishing = std::thread::spawn(move || {
            let (mut sent, mut acked) = (0u32, 0u32);
            while acked < N {
                while sent < N && sent - acked < WINDOW {
                    let payload = sent.to_string();
                    let packet_id = sent as u16 + 1;
                    publisher
                        .send(&publish_packet(
                            &t,
                            payload.as_bytes(),
                            1,
                            packet_id,
                            retained(k, sent),
                            false,
                        ))
                        .expect("send PUBLISH");
                    sent += 1;
                }
                let p = publisher.expect_packet(PROMPT, "PUBACK");
                assert_eq!(p.kind, PUBACK, "{p:?}");
                acked += 1;
            }
        });
        let receiving = std::thread::spawn(move || {
            let mut got = Vec::new();
            while got.len() < N as usize {
                let Some(p) = sub.try_next(PROMPT) else { break };
                let n: u32 = String::from_utf8(p.payload)
                    .expect("payload")
                    .parse()
                    .expect("number");
                got.push(n);
            }
            got
        });
        threads.push((k, topic, publishing, receiving));
    }
    let mut failures = Vec::new();
    for (k, topic, publishing, receiving) in threads {
        let (pub_shard, sub_shard, owner) = pairs[k];
        publishing.join().expect("publisher thread");
        let got = receiving.join().expect("subscriber thread");
        let what = format!(
            "publisher shard {pub_shard}, subscriber shard {sub_shard}, owner of {topic} {owner}"
        );
        if let Some(at) = (0..got.len()).find(|&i| got[i] != i as u32) {
            let early: Vec<u32> = got[at..]
                .iter()
                .copied()
                .take_while(|&n| n != at as u32)
                .take(10)
                .collect();
            let flags: Vec<bool> = early.iter().map(|&n| retained(k, n)).collect();
            failures.push(format!(
                "{what}: message {at} expected at position {at}, came {early:?} first \
                 (RETAIN {flags:?})"
            ));
        } else if got.len() < N as usize {
            failures.push(format!("{what}: only {} of {N} arrived", got.len()));
        }
    }
    assert!(
        failures.is_empty(),
        "out of publish order (MQTT 4.6):\n{}",
        failures.join("\n")
    );
}
