//! Property tests of the QoS state machines against a model client.
//!
//! Outbound: random offers, acknowledgements (in any order, some refused,
//! some bogus), disconnects, reconnects with a new Receive Maximum and jumps
//! of the clock are fed to an [`Outbound`]; a model client receives every
//! packet it writes. After every step: no two flows share an id, the window
//! and the queue bounds hold, and the server's inflight count matches what
//! the client holds. At the end the client reconnects, acknowledges
//! everything, and each QoS 1/2 message accepted is accounted for exactly
//! once: first sent once, in offer order, and completed once, or dropped
//! for a counted reason.
//!
//! Inbound: random QoS 1/2 PUBLISH (repeated, with and without DUP) and
//! PUBREL on a few ids against a model of the ids awaiting release.

use std::collections::{BTreeMap, HashSet};

use proptest::prelude::*;
use ringmq_codec::{Bytes, Packet, PacketType, Properties, Publish, QoS, ReasonCode};
use ringmq_session::{
    DropReason, Inbound, InboundAction, Offer, Outbound, OutboundConfig, QosError,
};

const MAX_QUEUED: usize = 6;

#[derive(Clone, Debug)]
enum Op {
    /// Offer message with this QoS and, maybe, an expiry this far ahead.
    Offer(u8, Option<u64>),
    /// The client answers one of its outstanding flows (picked by index);
    /// `refuse`: a QoS 2 PUBLISH is answered with an error PUBREC.
    Ack(usize, bool),
    /// A PUBACK or PUBCOMP for an id that is not in that state.
    Bogus(u16, bool),
    Disconnect,
    /// A new connection with this Receive Maximum; offers and
    /// acknowledgements may come before its [`Op::Resume`].
    Reconnect(u16),
    Resume,
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..=2, prop::option::of(0u64..8_000)).prop_map(|(q, e)| Op::Offer(q, e)),
        6 => (any::<usize>(), prop::bool::weighted(0.15)).prop_map(|(i, r)| Op::Ack(i, r)),
        1 => (1u16..=12, any::<bool>()).prop_map(|(id, c)| Op::Bogus(id, c)),
        1 => Just(Op::Disconnect),
        1 => (1u16..=5).prop_map(Op::Reconnect),
        2 => Just(Op::Resume),
        1 => (0u64..3_000).prop_map(Op::Advance),
    ]
}

/// Where one of the client's flows stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Held {
    /// QoS 1 PUBLISH received, PUBACK not sent.
    Qos1(u64),
    /// QoS 2 PUBLISH received, PUBREC not sent.
    Qos2(u64),
    /// PUBREC sent and PUBREL received, PUBCOMP not sent; the second
    /// number orders the PUBRECs.
    Released(u64, u64),
}

/// The model client plus the bookkeeping of the whole run.
#[derive(Default)]
struct Client {
    connected: bool,
    /// Connected, and the session not resumed yet.
    resume_pending: bool,
    receive_maximum: u16,
    now_ms: u64,
    /// Packet id -> flow, for every flow the client holds.
    held: BTreeMap<u16, Held>,
    /// Message numbers in order of first transmission (QoS 1/2).
    first_sent: Vec<u64>,
    first_sent_set: HashSet<u64>,
    /// Messages acknowledged to completion (PUBACK, PUBCOMP or error PUBREC).
    completed: HashSet<u64>,
    /// QoS 2 messages the client sent a successful PUBREC for.
    received_qos2: HashSet<u64>,
    /// Source of the PUBREC order in [`Held::Released`].
    next_rec: u64,
    accepted: u64,
    /// Expiry deadline of every accepted QoS 1/2 message (`u64::MAX`: none).
    deadlines: BTreeMap<u64, u64>,
    expired_at_offer: u64,
    queue_full: u64,
}

fn message_no(p: &Publish) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&p.payload[..8]);
    u64::from_be_bytes(b)
}

impl Client {
    /// A PUBLISH arrives from the server.
    fn publish(&mut self, p: &Publish) -> Result<(), TestCaseError> {
        let n = message_no(p);
        if p.qos == QoS::AtMostOnce {
            prop_assert_eq!(p.packet_id, 0);
            prop_assert!(!p.dup);
            return Ok(());
        }
        prop_assert!(p.packet_id != 0);
        if p.dup {
            // A re-send: same id, same message, not yet acknowledged.
            let expected = match p.qos {
                QoS::AtLeastOnce => Held::Qos1(n),
                _ => Held::Qos2(n),
            };
            prop_assert_eq!(self.held.get(&p.packet_id), Some(&expected));
        } else {
            // A first transmission: its id is free (no two flows share
            // one), it is new, and it comes after every earlier offer.
            prop_assert!(
                !self.held.contains_key(&p.packet_id),
                "id {} reused",
                p.packet_id
            );
            prop_assert!(
                self.first_sent_set.insert(n),
                "message {} first-sent twice",
                n
            );
            if let Some(&last) = self.first_sent.last() {
                prop_assert!(n > last, "message {} sent after {}", n, last);
            }
            self.first_sent.push(n);
            let held = match p.qos {
                QoS::AtLeastOnce => Held::Qos1(n),
                _ => Held::Qos2(n),
            };
            self.held.insert(p.packet_id, held);
        }
        prop_assert!(!self.received_qos2.contains(&n) || p.qos != QoS::ExactlyOnce);
        Ok(())
    }

    fn publishes(&mut self, out: &[Publish]) -> Result<(), TestCaseError> {
        for p in out {
            self.publish(p)?;
        }
        Ok(())
    }

    fn complete(&mut self, n: u64) -> Result<(), TestCaseError> {
        prop_assert!(self.completed.insert(n), "message {} completed twice", n);
        Ok(())
    }

    /// Answer the `pick`-th flow the client holds.
    fn ack(&mut self, o: &mut Outbound, pick: usize, refuse: bool) -> Result<(), TestCaseError> {
        if self.held.is_empty() {
            return Ok(());
        }
        let (&id, &held) = self
            .held
            .iter()
            .nth(pick % self.held.len())
            .expect("index is in range");
        let mut out = Vec::new();
        match held {
            Held::Qos1(n) => {
                prop_assert_eq!(o.handle_puback(id, self.now_ms, &mut out), Ok(()));
                self.held.remove(&id);
                self.complete(n)?;
            }
            Held::Qos2(n) if refuse => {
                let code = ReasonCode::QUOTA_EXCEEDED;
                prop_assert_eq!(o.handle_pubrec(id, code, self.now_ms, &mut out), None);
                self.held.remove(&id);
                self.complete(n)?;
            }
            Held::Qos2(n) => {
                let rel = o.handle_pubrec(id, ReasonCode::SUCCESS, self.now_ms, &mut out);
                let rel = rel.expect("a PUBREL answers a successful PUBREC");
                prop_assert_eq!((rel.packet_id, rel.code), (id, ReasonCode::SUCCESS));
                prop_assert!(out.is_empty(), "PUBREC success frees nothing");
                self.received_qos2.insert(n);
                self.held.insert(id, Held::Released(n, self.next_rec));
                self.next_rec += 1;
            }
            Held::Released(n, _) => {
                prop_assert_eq!(o.handle_pubcomp(id, self.now_ms, &mut out), Ok(()));
                self.held.remove(&id);
                self.complete(n)?;
            }
        }
        self.publishes(&out)
    }

    /// MQTT-3.3.2-5: only a message whose expiry has passed may have been
    /// dropped from the queue; never one before its deadline.
    fn check_expiry_drops(&self, o: &Outbound) -> Result<(), TestCaseError> {
        let dropped = o.dropped_expired() - self.expired_at_offer;
        let could_have_expired = self
            .deadlines
            .iter()
            .filter(|(n, &d)| !self.first_sent_set.contains(n) && d < self.now_ms)
            .count() as u64;
        prop_assert!(
            dropped <= could_have_expired,
            "{} dropped as expired, only {} past their deadline",
            dropped,
            could_have_expired
        );
        Ok(())
    }

    fn resume(&mut self, o: &mut Outbound) -> Result<(), TestCaseError> {
        let before: HashSet<u16> = self.held.keys().copied().collect();
        let mut packets = Vec::new();
        o.resume(self.now_ms, &mut packets);
        // MQTT-4.4.0-1: every unacknowledged flow is re-sent once, re-sends
        // before new messages, PUBREL only for released flows. MQTT 4.6:
        // PUBLISH re-sent in first-transmission order (message numbers were
        // first sent in increasing order), PUBREL in PUBREC order.
        let mut resent = HashSet::new();
        let mut new_seen = false;
        let mut last_publish = None;
        let mut last_rec = None;
        for packet in &packets {
            match packet {
                Packet::Publish(p) => {
                    if p.dup {
                        prop_assert!(!new_seen, "re-send after a new message");
                        prop_assert!(resent.insert(p.packet_id));
                        let n = message_no(p);
                        prop_assert!(last_publish < Some(n), "re-sent out of order");
                        last_publish = Some(n);
                    } else {
                        new_seen = true;
                    }
                    self.publish(p)?;
                }
                Packet::PubRel(r) => {
                    prop_assert!(!new_seen, "PUBREL after a new message");
                    let Some(&Held::Released(_, k)) = self.held.get(&r.packet_id) else {
                        return Err(TestCaseError::fail(format!("PUBREL for {r:?}")));
                    };
                    prop_assert!(last_rec < Some(k), "PUBREL out of PUBREC order");
                    last_rec = Some(k);
                    prop_assert_eq!(r.code, ReasonCode::SUCCESS);
                    prop_assert!(resent.insert(r.packet_id));
                }
                other => prop_assert!(false, "unexpected {:?}", other),
            }
        }
        prop_assert_eq!(resent, before, "not every open flow was re-sent");
        Ok(())
    }
}

fn publish(qos: QoS, n: u64) -> Publish {
    Publish {
        dup: false,
        qos,
        retain: false,
        topic: Bytes::from_static(b"a/b"),
        packet_id: 0,
        properties: Properties::default().into(),
        payload: Bytes::copy_from_slice(&n.to_be_bytes()),
    }
}

/// `warm_up`: QoS 1 messages sent and acknowledged after the first one,
/// to move the packet id counter (65533 makes ids wrap at once).
fn run_outbound(warm_up: u16, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut o = Outbound::new(OutboundConfig {
        max_queued: MAX_QUEUED,
        // Room for about five 1-byte messages: the byte budget is hit too.
        max_bytes: 5 * 200,
    });
    let mut c = Client {
        connected: true,
        receive_maximum: 3,
        ..Client::default()
    };
    // Message 0 stays inflight (id 1) while the warm-up cycles the other
    // ids, so after the wrap id 1 is in use and must be skipped.
    match o.offer(publish(QoS::AtLeastOnce, 0), None, 0, true) {
        Offer::Send(p) => c.publish(&p)?,
        other => return Err(TestCaseError::fail(format!("first offer got {other:?}"))),
    }
    c.accepted += 1;
    c.deadlines.insert(0, u64::MAX);
    for _ in 0..warm_up {
        let p = match o.offer(publish(QoS::AtLeastOnce, 0), None, 0, true) {
            Offer::Send(p) => p,
            other => return Err(TestCaseError::fail(format!("warm-up got {other:?}"))),
        };
        prop_assert_eq!(o.handle_puback(p.packet_id, 0, &mut Vec::new()), Ok(()));
    }
    o.set_receive_maximum(3);
    let mut next_message = 1u64;
    for op in ops {
        let inflight_before = o.inflight_len();
        match op {
            Op::Offer(q, expiry) => {
                let qos = QoS::from_u8(q).expect("strategy gives 0..=2");
                let n = next_message;
                next_message += 1;
                let deadline = expiry.map(|e| c.now_ms + e);
                let queued_before = o.queued_len();
                let offer = o.offer(publish(qos, n), deadline, c.now_ms, c.connected);
                match offer {
                    Offer::Send(p) => {
                        prop_assert!(c.connected);
                        prop_assert_eq!(p.qos, qos);
                        prop_assert_eq!(message_no(&p), n);
                        if qos != QoS::AtMostOnce {
                            c.accepted += 1;
                            c.deadlines.insert(n, deadline.unwrap_or(u64::MAX));
                            prop_assert_eq!(queued_before, 0, "sent past the queue");
                        }
                        c.publish(&p)?;
                    }
                    Offer::Queued => {
                        prop_assert!(qos != QoS::AtMostOnce);
                        c.accepted += 1;
                        c.deadlines.insert(n, deadline.unwrap_or(u64::MAX));
                    }
                    Offer::Dropped(DropReason::QoS0Offline) => {
                        prop_assert!(qos == QoS::AtMostOnce && !c.connected);
                    }
                    Offer::Dropped(DropReason::Expired) => {
                        // Deadlines are never in the past when offered.
                        prop_assert!(false, "expired at offer");
                        c.expired_at_offer += 1;
                    }
                    Offer::Dropped(DropReason::QueueFull | DropReason::QueueBytes) => {
                        prop_assert!(qos != QoS::AtMostOnce);
                        c.queue_full += 1;
                    }
                    Offer::Dropped(DropReason::TooLarge) => {
                        // No Maximum Packet Size is set in this model.
                        prop_assert!(false, "too large without a limit");
                    }
                }
            }
            Op::Ack(pick, refuse) => {
                if c.connected {
                    c.ack(&mut o, pick, refuse)?;
                }
            }
            Op::Bogus(id, pubcomp) => {
                if c.connected {
                    let mut out = Vec::new();
                    let held = c.held.get(&id).copied();
                    if pubcomp {
                        let r = o.handle_pubcomp(id, c.now_ms, &mut out);
                        match held {
                            Some(Held::Released(n, _)) => {
                                prop_assert_eq!(r, Ok(()));
                                c.held.remove(&id);
                                c.complete(n)?;
                            }
                            None => prop_assert_eq!(r, Err(QosError::UnknownPacketId(id))),
                            Some(_) => prop_assert_eq!(
                                r,
                                Err(QosError::UnexpectedAck {
                                    packet_id: id,
                                    ack: PacketType::PubComp
                                })
                            ),
                        }
                    } else {
                        let r = o.handle_puback(id, c.now_ms, &mut out);
                        match held {
                            Some(Held::Qos1(n)) => {
                                prop_assert_eq!(r, Ok(()));
                                c.held.remove(&id);
                                c.complete(n)?;
                            }
                            None => prop_assert_eq!(r, Err(QosError::UnknownPacketId(id))),
                            Some(_) => prop_assert_eq!(
                                r,
                                Err(QosError::UnexpectedAck {
                                    packet_id: id,
                                    ack: PacketType::PubAck
                                })
                            ),
                        }
                    }
                    c.publishes(&out)?;
                }
            }
            Op::Disconnect => {
                c.connected = false;
                c.resume_pending = false;
            }
            Op::Reconnect(rm) => {
                c.connected = true;
                c.resume_pending = true;
                c.receive_maximum = rm;
                o.set_receive_maximum(rm);
            }
            Op::Resume => {
                if c.resume_pending {
                    c.resume_pending = false;
                    c.resume(&mut o)?;
                }
            }
            Op::Advance(ms) => c.now_ms += ms,
        }
        // Invariants after every step.
        prop_assert_eq!(o.inflight_len(), c.held.len(), "server and client disagree");
        if o.inflight_len() > inflight_before {
            prop_assert!(o.inflight_len() <= usize::from(c.receive_maximum));
        }
        prop_assert!(o.queued_len() <= MAX_QUEUED);
        prop_assert!(o.stored_bytes() <= 5 * 200);
        if o.queued_len() == 0 && c.held.values().all(|h| matches!(h, Held::Released(..))) {
            prop_assert_eq!(o.stored_bytes(), 0, "bytes of nothing stored");
        }
        if c.connected && !c.resume_pending && o.queued_len() > 0 {
            // Something waits only behind a full window.
            prop_assert!(o.inflight_len() >= usize::from(c.receive_maximum));
        }
        c.check_expiry_drops(&o)?;
    }

    // Reconnect with a wide window and answer everything.
    c.connected = true;
    c.resume_pending = false;
    c.receive_maximum = u16::MAX;
    o.set_receive_maximum(u16::MAX);
    c.resume(&mut o)?;
    while !c.held.is_empty() {
        c.ack(&mut o, 0, false)?;
    }
    prop_assert_eq!((o.inflight_len(), o.queued_len()), (0, 0));
    c.check_expiry_drops(&o)?;

    // Every accepted QoS 1/2 message was first sent exactly once, or
    // dropped from the queue on expiry (counted).
    let expired_in_queue = o.dropped_expired() - c.expired_at_offer;
    prop_assert_eq!(c.first_sent.len() as u64 + expired_in_queue, c.accepted);
    prop_assert_eq!(o.dropped_full() + o.dropped_bytes(), c.queue_full);
    // ... and every message first sent completed exactly once.
    prop_assert_eq!(c.completed.len(), c.first_sent.len());
    for n in &c.first_sent {
        prop_assert!(c.completed.contains(n));
    }
    Ok(())
}

#[derive(Clone, Debug)]
enum InOp {
    Publish(u8, u16, bool),
    PubRel(u16),
}

fn in_op() -> impl Strategy<Value = InOp> {
    prop_oneof![
        3 => (1u8..=2, 1u16..=4, any::<bool>()).prop_map(|(q, id, d)| InOp::Publish(q, id, d)),
        1 => (1u16..=4).prop_map(InOp::PubRel),
    ]
}

fn run_inbound(receive_maximum: u16, ops: Vec<InOp>) -> Result<(), TestCaseError> {
    let mut inbound = Inbound::new(receive_maximum);
    // Model: ids awaiting PUBREL; how often each (id, generation) routed.
    let mut held: HashSet<u16> = HashSet::new();
    let mut generation: BTreeMap<u16, u32> = BTreeMap::new();
    let mut routed: BTreeMap<(u16, u32), u32> = BTreeMap::new();
    for op in ops {
        match op {
            InOp::Publish(q, id, dup) => {
                let qos = QoS::from_u8(q).expect("strategy gives 1..=2");
                let full = held.len() >= usize::from(receive_maximum);
                let action = inbound.handle_publish(qos, id, dup);
                match (qos, action) {
                    (QoS::AtLeastOnce, InboundAction::RouteAndPubAck(a)) => {
                        prop_assert!(!full);
                        prop_assert_eq!((a.packet_id, a.code), (id, ReasonCode::SUCCESS));
                    }
                    (QoS::ExactlyOnce, InboundAction::RouteAndPubRec(r)) => {
                        prop_assert!(!full && !held.contains(&id));
                        prop_assert_eq!((r.packet_id, r.code), (id, ReasonCode::SUCCESS));
                        held.insert(id);
                        let g = *generation.entry(id).or_default();
                        *routed.entry((id, g)).or_default() += 1;
                    }
                    (QoS::ExactlyOnce, InboundAction::PubRecOnly(r)) => {
                        prop_assert!(held.contains(&id));
                        prop_assert_eq!(r.packet_id, id);
                    }
                    (_, InboundAction::ReceiveMaximumExceeded) => {
                        prop_assert!(full && !(qos == QoS::ExactlyOnce && held.contains(&id)));
                    }
                    (qos, other) => prop_assert!(false, "{:?} answered {:?}", qos, other),
                }
            }
            InOp::PubRel(id) => {
                let comp = inbound.handle_pubrel(id);
                prop_assert_eq!(comp.packet_id, id);
                if held.remove(&id) {
                    prop_assert_eq!(comp.code, ReasonCode::SUCCESS);
                    *generation.entry(id).or_default() += 1;
                } else {
                    prop_assert_eq!(comp.code, ReasonCode::PACKET_IDENTIFIER_NOT_FOUND);
                }
            }
        }
        prop_assert_eq!(inbound.awaiting_rel(), held.len());
        prop_assert!(held.len() <= usize::from(receive_maximum));
    }
    // Exactly once: each id routed once per generation.
    for (key, n) in routed {
        prop_assert_eq!(n, 1, "id {} generation {} routed {} times", key.0, key.1, n);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn outbound_invariants(ops in prop::collection::vec(op(), 0..120)) {
        run_outbound(0, ops)?;
    }


    #[test]
    fn inbound_qos2_routes_once_per_release(
        receive_maximum in 1u16..=4,
        ops in prop::collection::vec(in_op(), 0..60),
    ) {
        run_inbound(receive_maximum, ops)?;
    }
}

proptest! {
    // Each case first cycles 65533 packet ids, so fewer cases.
    #![proptest_config(ProptestConfig::with_cases(8))]

    #[test]
    fn outbound_invariants_across_id_wrap(ops in prop::collection::vec(op(), 0..120)) {
        run_outbound(65_533, ops)?;
    }
}

/// The Expired drop reason at offer time, which the random run never
/// produces (its deadlines are in the future), is counted like the others.
#[test]
fn expired_offer_is_counted() {
    let mut o = Outbound::new(OutboundConfig {
        max_queued: 1,
        ..OutboundConfig::default()
    });
    assert_eq!(
        o.offer(publish(QoS::ExactlyOnce, 0), Some(10), 11, false),
        Offer::Dropped(DropReason::Expired)
    );
    assert_eq!(o.dropped_expired(), 1);
}
