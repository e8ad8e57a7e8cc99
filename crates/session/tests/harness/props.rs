//! Property tests: random inputs through the harness against small models.
//!
//! - `deliveries_are_exactly_once_in_order_or_counted`: random deliveries
//!   (QoS 0 and 1, sizes around the client's limit, a few topics),
//!   acknowledgements, lost connections and resumes with new Receive
//!   Maximum, Maximum Packet Size and Topic Alias Maximum. A model client
//!   checks every PUBLISH (the harness already checks size and aliases);
//!   at the end every delivery is completed exactly once or counted
//!   dropped.
//! - `keepalive_closes_exactly_at_the_deadline`: random silences; the
//!   link closes at the first `last packet + 1.5 x keep-alive`, never
//!   earlier, never later.
//! - `subscribe_matches_the_model`: random SUBSCRIBEs (valid, shared,
//!   invalid filters, No Local, QoS) against a model of the whole-packet
//!   validation, the codes and the order of effects.

use std::collections::{BTreeMap, HashSet};

use proptest::prelude::*;

use crate::util::*;

/// `cases` cases; failures kept where the other crates keep theirs (the
/// default looks for a lib.rs beside the test, which a test has not).
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

// ----- deliveries -----

const TOPICS: [&str; 3] = ["a", "bb/cc", "some/longer/topic"];
const MAX_PACKET: [u32; 5] = [24, 40, 80, 300, ringmq_codec::MAX_PACKET_SIZE];

#[derive(Clone, Debug)]
enum Op {
    /// Deliver at QoS 0 or 1, on `TOPICS[topic]`, with this many bytes
    /// after the 8-byte message number.
    Deliver {
        qos1: bool,
        topic: usize,
        extra: usize,
    },
    /// The client acknowledges one PUBLISH it holds on this link.
    Ack(usize),
    /// The connection drops.
    Lost,
    /// A new connection resumes the session with these limits.
    Reconnect {
        receive_max: u16,
        max_packet: u32,
        alias_max: u16,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (any::<bool>(), 0..TOPICS.len(), 0usize..100).prop_map(|(qos1, topic, extra)| {
            Op::Deliver { qos1, topic, extra }
        }),
        5 => any::<usize>().prop_map(Op::Ack),
        1 => Just(Op::Lost),
        1 => (1u16..=4, prop::sample::select(MAX_PACKET.to_vec()), 0u16..=3).prop_map(
            |(receive_max, max_packet, alias_max)| Op::Reconnect {
                receive_max,
                max_packet,
                alias_max
            }
        ),
    ]
}

fn connect_with(receive_max: u16, max_packet: u32, alias_max: u16) -> Connect {
    v5("c")
        .clean(false)
        .expiry(u32::MAX)
        .receive_max(receive_max)
        .max_packet(max_packet)
        .alias_max(alias_max)
}

/// The client, as far as the server's QoS 1 deliveries go.
#[derive(Default)]
struct Model {
    connects: u32,
    connected: bool,
    receive_max: u16,
    /// Server-side flows as the client can tell them: packet id ->
    /// (message number, order of first transmission).
    outstanding: BTreeMap<u16, (u64, u64)>,
    /// Ids received on this link and not acknowledged yet.
    on_link: Vec<u16>,
    first_sent: HashSet<u64>,
    last_first_sent: Option<u64>,
    sends: u64,
    completed: HashSet<u64>,
    offered: u64,
    qos0_received: u64,
}

fn message_no(p: &Publish) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&p.payload[..8]);
    u64::from_be_bytes(b)
}

impl Model {
    /// Checks the packets of one input. `resume`: the input was a CONNECT
    /// that resumed the session, so DUP re-sends come first and whatever
    /// is not re-sent was discarded.
    fn receive(&mut self, h: &Harness, resume: bool) -> Result<(), TestCaseError> {
        let mut resent: Vec<(u64, u16)> = Vec::new();
        let mut discards_done = !resume;
        for packet in h.sent() {
            let p = match packet {
                Packet::ConnAck(_) => continue,
                Packet::Publish(p) => p,
                other => return Err(TestCaseError::fail(format!("unexpected {other:?}"))),
            };
            let n = message_no(p);
            if p.qos == QoS::AtMostOnce {
                prop_assert_eq!((p.packet_id, p.dup), (0, false));
                self.qos0_received += 1;
                continue;
            }
            prop_assert_eq!(p.qos, QoS::AtLeastOnce);
            if p.dup {
                // Only on resume, before anything new, for a flow still
                // open, with its id, in first-transmission order.
                prop_assert!(!discards_done, "DUP after new messages: {:?}", p);
                let Some(&(m, seq)) = self.outstanding.get(&p.packet_id) else {
                    return Err(TestCaseError::fail(format!("DUP for unknown id: {p:?}")));
                };
                prop_assert_eq!(m, n);
                prop_assert!(resent.last().is_none_or(|&(s, _)| s < seq));
                resent.push((seq, p.packet_id));
                self.on_link.push(p.packet_id);
                continue;
            }
            if !discards_done {
                self.discard_not_resent(&resent);
                discards_done = true;
            }
            prop_assert!(
                !self.outstanding.contains_key(&p.packet_id),
                "id {} reused while in flight",
                p.packet_id
            );
            prop_assert!(p.packet_id != 0);
            prop_assert!(self.first_sent.insert(n), "message {} first sent twice", n);
            prop_assert!(self.last_first_sent < Some(n), "message {} out of order", n);
            prop_assert!(
                self.outstanding.len() < usize::from(self.receive_max),
                "sent beyond Receive Maximum {}",
                self.receive_max
            );
            self.last_first_sent = Some(n);
            self.outstanding.insert(p.packet_id, (n, self.sends));
            self.sends += 1;
            self.on_link.push(p.packet_id);
        }
        if !discards_done {
            self.discard_not_resent(&resent);
        }
        Ok(())
    }

    /// A flow not re-sent on resume was discarded (too large now).
    fn discard_not_resent(&mut self, resent: &[(u64, u16)]) {
        let keep: HashSet<u16> = resent.iter().map(|&(_, id)| id).collect();
        self.outstanding.retain(|id, _| keep.contains(id));
    }

    fn ack(&mut self, h: &mut Harness, i: usize) -> Result<(), TestCaseError> {
        if !self.connected || self.on_link.is_empty() {
            return Ok(());
        }
        let id = self.on_link.remove(i % self.on_link.len());
        let (n, _) = self
            .outstanding
            .remove(&id)
            .expect("held ids are outstanding");
        prop_assert!(self.completed.insert(n), "message {} completed twice", n);
        h.packet(puback(id));
        self.receive(h, false)
    }

    fn lost(&mut self, h: &mut Harness) {
        if self.connected {
            h.lost(CloseCause::NetworkError);
            self.connected = false;
            self.on_link.clear();
        }
    }

    fn reconnect(&mut self, h: &mut Harness, connect: Connect) -> Result<(), TestCaseError> {
        self.lost(h);
        self.receive_max = connect.properties.receive_maximum.unwrap_or(u16::MAX);
        h.connect(connect);
        // Only the very first CONNECT finds no session.
        prop_assert_eq!(h.connack().session_present, self.connects > 0);
        self.connects += 1;
        self.connected = true;
        self.receive(h, true)
    }
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn deliveries_are_exactly_once_in_order_or_counted(
        first in (1u16..=4, prop::sample::select(MAX_PACKET.to_vec()), 0u16..=3),
        ops in prop::collection::vec(op(), 1..80),
    ) {
        let policy = ServerPolicy { max_queued_messages: 5, ..policy() };
        let mut h = Harness::with_policy(policy);
        let mut model = Model::default();
        model.reconnect(&mut h, connect_with(first.0, first.1, first.2))?;
        for op in ops {
            match op {
                Op::Deliver { qos1, topic, extra } => {
                    let n = model.offered;
                    model.offered += 1;
                    let mut payload = n.to_be_bytes().to_vec();
                    payload.resize(8 + extra, b'.');
                    let qos = if qos1 { QoS::AtLeastOnce } else { QoS::AtMostOnce };
                    h.deliver(&message(TOPICS[topic], &payload), qos);
                    model.receive(&h, false)?;
                }
                Op::Ack(i) => model.ack(&mut h, i)?,
                Op::Lost => model.lost(&mut h),
                Op::Reconnect { receive_max, max_packet, alias_max } => {
                    model.reconnect(&mut h, connect_with(receive_max, max_packet, alias_max))?;
                }
            }
            let (inflight, _) = h.session.outbound_len();
            if model.connected {
                prop_assert_eq!(inflight, model.outstanding.len());
            }
        }
        // Drain: a roomy connection, every flow acknowledged.
        model.reconnect(&mut h, connect_with(u16::MAX, ringmq_codec::MAX_PACKET_SIZE, 3))?;
        while !model.on_link.is_empty() {
            model.ack(&mut h, 0)?;
        }
        prop_assert!(model.outstanding.is_empty());
        prop_assert_eq!(h.session.outbound_len(), (0, 0));
        prop_assert_eq!(
            model.offered,
            model.completed.len() as u64 + model.qos0_received + h.dropped_total(),
            "completed {} + QoS 0 received {} + dropped {} != offered",
            model.completed.len(),
            model.qos0_received,
            h.dropped_total()
        );
    }
}

// ----- keep-alive -----

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn keepalive_closes_exactly_at_the_deadline(
        keep_alive in 1u16..=20,
        v5_link in any::<bool>(),
        gaps in prop::collection::vec(0u64..35_000, 1..40),
    ) {
        let connect = if v5_link { v5("c") } else { v3("c") };
        let mut h = Harness::connected(connect.keep_alive(keep_alive));
        let timeout = u64::from(keep_alive) * 1_500;
        let mut last_rx = 0;
        for gap in gaps {
            h.advance(gap);
            let deadline = last_rx + timeout;
            if h.now().0 >= deadline {
                prop_assert_eq!(h.closed(), Some(CloseCause::KeepAliveTimeout));
                prop_assert_eq!(h.closed_at(), Some(Tick(deadline)));
                prop_assert_eq!(
                    h.disconnect(),
                    v5_link.then_some(ReasonCode::KEEP_ALIVE_TIMEOUT)
                );
                return Ok(());
            }
            prop_assert_eq!(h.closed(), None);
            // Alternate the kind of packet: any packet counts.
            if gap % 2 == 0 {
                h.packet(Packet::PingReq);
            } else {
                h.publish(publish("t", QoS::AtMostOnce, b"x"));
            }
            last_rx = h.now().0;
        }
        prop_assert!(h.link_open());
    }
}

// ----- SUBSCRIBE -----

#[derive(Clone, Copy, Debug)]
enum FilterKind {
    Plain,
    Shared,
    Invalid,
}

const INVALID: [&str; 4] = ["a/#/b", "a+", "$share/g+/x", "$share/g"];

fn filter_entry() -> impl Strategy<Value = (FilterKind, bool, u8)> {
    (
        prop_oneof![
            Just(FilterKind::Plain),
            Just(FilterKind::Shared),
            Just(FilterKind::Invalid)
        ],
        prop::bool::weighted(0.2),
        0u8..=2,
    )
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn subscribe_matches_the_model(
        v5_link in any::<bool>(),
        max_qos in 0u8..=2,
        entries in prop::collection::vec(filter_entry(), 1..6),
    ) {
        let policy = ServerPolicy {
            max_qos: QoS::from_u8(max_qos).unwrap(),
            ..policy()
        };
        let connect = if v5_link { v5("c") } else { v3("c") };
        let mut h = Harness::connected_with(policy, connect);
        let mut filters = Vec::new();
        for (i, &(kind, no_local, qos)) in entries.iter().enumerate() {
            let filter = match kind {
                FilterKind::Plain => format!("t/{i}/+"),
                FilterKind::Shared => format!("$share/g/t/{i}"),
                FilterKind::Invalid => INVALID[i % INVALID.len()].to_owned(),
            };
            let options = SubscriptionOptions {
                qos: QoS::from_u8(qos).unwrap(),
                // v3 has no No Local on the wire.
                no_local: no_local && v5_link,
                ..SubscriptionOptions::default()
            };
            filters.push((filter, options));
        }
        let refs: Vec<(&str, SubscriptionOptions)> =
            filters.iter().map(|(f, o)| (f.as_str(), *o)).collect();
        h.packet(subscribe(9, &refs));

        let shared_no_local = filters
            .iter()
            .zip(&entries)
            .any(|((_, o), (k, _, _))| matches!(k, FilterKind::Shared) && o.no_local);
        if shared_no_local {
            h.assert_violation(Violation::NoLocalOnSharedSubscription, 0x82);
            prop_assert_eq!(h.session.subscriptions().count(), 0);
            return Ok(());
        }
        let valid: Vec<&(String, SubscriptionOptions)> = filters
            .iter()
            .zip(&entries)
            .filter(|(_, (k, _, _))| !matches!(k, FilterKind::Invalid))
            .map(|(f, _)| f)
            .collect();
        let mut expected: Vec<String> =
            valid.iter().map(|(f, _)| format!("AddRoute({f})")).collect();
        expected.push("SubAck".to_owned());
        expected.extend(valid.iter().map(|(f, _)| format!("SendRetained({f})")));
        prop_assert_eq!(h.trace(), expected);
        let codes: Vec<u8> = filters
            .iter()
            .zip(&entries)
            .map(|((_, o), (k, _, _))| match k {
                FilterKind::Invalid if v5_link => 0x8F,
                FilterKind::Invalid => 0x80,
                _ => o.qos.min(QoS::from_u8(max_qos).unwrap()) as u8,
            })
            .collect();
        let Some(Packet::SubAck(suback)) = h.sent().first().copied() else {
            return Err(TestCaseError::fail("no SUBACK"));
        };
        let got: Vec<u8> = suback.codes.iter().map(|c| c.0).collect();
        prop_assert_eq!(got, codes);
        prop_assert_eq!(h.session.subscriptions().count(), valid.len());
        for (filter, options) in valid {
            let grant = h.session.subscription(filter.as_bytes()).expect("granted");
            prop_assert_eq!(grant.options.no_local, options.no_local);
            prop_assert!(grant.options.qos <= QoS::from_u8(max_qos).unwrap());
        }
    }
}
