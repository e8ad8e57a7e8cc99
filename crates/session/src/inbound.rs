//! Client -> server QoS 1/2 receiving state of one session (MQTT 5
//! sections 4.3.2, 4.3.3, 4.9; 3.1.1 sections 4.3.2, 4.3.3).
//!
//! Owns the set of QoS 2 packet identifiers received from the client and
//! not yet released by PUBREL. It belongs to the session and survives
//! reconnects with Clean Start 0 (MQTT 4.1): a client that re-sends a QoS 2
//! PUBLISH after reconnecting must not have it routed twice.
//!
//! Sans-IO: it answers what to route and what to write; it never reads a
//! socket or a clock.
//!
//! Invariants:
//! - A QoS 2 message is routed once per packet identifier between its first
//!   PUBLISH and the PUBREL that releases the identifier (MQTT-4.3.3-9/-10
//!   in v5, method B); repeats are answered with PUBREC only.
//! - At most `receive_maximum` identifiers await PUBREL. QoS 1 PUBACK goes
//!   out at once, so a QoS 1 message occupies the window only while it is
//!   handled: it is refused when the window is already full of QoS 2.

use hashbrown::HashSet;
use ringmq_codec::{Properties, PubAck, PubComp, PubRec, QoS, ReasonCode};

/// What the broker does with a PUBLISH from the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InboundAction {
    /// Route it; no answer (QoS 0).
    Route,
    /// Route it and answer PUBACK (QoS 1). A QoS 1 duplicate is routed
    /// again: at least once.
    RouteAndPubAck(PubAck),
    /// Route it and answer PUBREC (first time this id is seen for QoS 2).
    RouteAndPubRec(PubRec),
    /// Do not route (a QoS 2 repeat before its PUBREL: exactly once,
    /// MQTT-4.3.3-10); answer PUBREC again.
    PubRecOnly(PubRec),
    /// More QoS 1/2 messages unacknowledged than the server's Receive
    /// Maximum: the broker sends DISCONNECT 0x93 and closes (MQTT-3.3.4-9).
    ReceiveMaximumExceeded,
}

/// Client -> server QoS 1/2 state of one session.
#[derive(Debug)]
pub struct Inbound {
    /// The server's Receive Maximum (at least 1).
    receive_maximum: u16,
    /// QoS 2 packet ids routed and awaiting PUBREL.
    awaiting_rel: HashSet<u16>,
}

impl Inbound {
    /// Empty state. `receive_maximum` is the server's, as announced in
    /// CONNACK; pass 65535 for v3 clients, which are told no limit. 0 is
    /// taken as 1.
    pub fn new(receive_maximum: u16) -> Self {
        Self {
            receive_maximum: receive_maximum.max(1),
            awaiting_rel: HashSet::new(),
        }
    }

    /// The server's Receive Maximum in force from the next PUBLISH on (set
    /// again at each CONNECT). 0 is taken as 1.
    pub fn set_receive_maximum(&mut self, receive_maximum: u16) {
        self.receive_maximum = receive_maximum.max(1);
    }

    /// A PUBLISH from the client: whether to route it and what to answer.
    /// `dup` does not decide anything: the packet identifier does
    /// (MQTT-4.3.3-10 treats any repeat before PUBREL as a duplicate, and
    /// a first copy may arrive with DUP=1 after a reconnect).
    pub fn handle_publish(&mut self, qos: QoS, packet_id: u16, dup: bool) -> InboundAction {
        let _ = dup;
        let full = self.awaiting_rel.len() >= usize::from(self.receive_maximum);
        match qos {
            QoS::AtMostOnce => InboundAction::Route,
            // MQTT 5 section 4.9: QoS 1 counts against the window too.
            QoS::AtLeastOnce if full => InboundAction::ReceiveMaximumExceeded,
            QoS::AtLeastOnce => InboundAction::RouteAndPubAck(PubAck {
                packet_id,
                code: ReasonCode::SUCCESS,
                properties: Properties::default(),
            }),
            QoS::ExactlyOnce if self.awaiting_rel.contains(&packet_id) => {
                InboundAction::PubRecOnly(pubrec(packet_id))
            }
            QoS::ExactlyOnce if full => InboundAction::ReceiveMaximumExceeded, // MQTT-3.3.4-9
            QoS::ExactlyOnce => {
                self.awaiting_rel.insert(packet_id);
                InboundAction::RouteAndPubRec(pubrec(packet_id))
            }
        }
    }

    /// PUBREL from the client: releases the identifier and answers the
    /// PUBCOMP to send (0x92 Packet Identifier not found if it was not
    /// awaiting release; MQTT-4.3.3-11 still requires a PUBCOMP).
    pub fn handle_pubrel(&mut self, packet_id: u16) -> PubComp {
        let code = if self.awaiting_rel.remove(&packet_id) {
            ReasonCode::SUCCESS
        } else {
            ReasonCode::PACKET_IDENTIFIER_NOT_FOUND
        };
        PubComp {
            packet_id,
            code,
            properties: Properties::default(),
        }
    }

    /// QoS 2 identifiers routed and awaiting PUBREL.
    pub fn awaiting_rel(&self) -> usize {
        self.awaiting_rel.len()
    }

    /// On clean start or session end: forget every identifier.
    pub fn clear(&mut self) {
        self.awaiting_rel.clear();
    }

    /// The QoS 2 identifiers awaiting PUBREL, in ascending order
    /// (persistence, `crate::persist`).
    pub fn awaiting_rel_ids(&self) -> Vec<u16> {
        let mut ids: Vec<u16> = self.awaiting_rel.iter().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// The state [`Inbound::awaiting_rel_ids`] listed, with the server's
    /// `receive_maximum` as for [`Inbound::new`]. Every id is kept, even
    /// beyond the window (the client is then refused new QoS 1/2 until it
    /// releases some, as after a reconnect with a smaller Receive Maximum).
    pub fn restore(receive_maximum: u16, ids: impl IntoIterator<Item = u16>) -> Inbound {
        let mut inbound = Inbound::new(receive_maximum);
        inbound.awaiting_rel.extend(ids);
        inbound
    }
}

fn pubrec(packet_id: u16) -> PubRec {
    PubRec {
        packet_id,
        code: ReasonCode::SUCCESS,
        properties: Properties::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qos0_routes_without_answer() {
        let mut i = Inbound::new(1);
        assert_eq!(
            i.handle_publish(QoS::AtMostOnce, 0, false),
            InboundAction::Route
        );
        assert_eq!(i.awaiting_rel(), 0);
    }

    #[test]
    fn qos1_routes_every_copy() {
        let mut i = Inbound::new(10);
        for dup in [false, true] {
            match i.handle_publish(QoS::AtLeastOnce, 5, dup) {
                InboundAction::RouteAndPubAck(a) => {
                    assert_eq!((a.packet_id, a.code), (5, ReasonCode::SUCCESS))
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(i.awaiting_rel(), 0);
    }

    #[test]
    fn qos2_routes_once_until_pubrel() {
        let mut i = Inbound::new(10);
        assert_eq!(
            i.handle_publish(QoS::ExactlyOnce, 9, false),
            InboundAction::RouteAndPubRec(pubrec(9))
        );
        // Repeats, with or without DUP, are not routed.
        for dup in [true, false] {
            assert_eq!(
                i.handle_publish(QoS::ExactlyOnce, 9, dup),
                InboundAction::PubRecOnly(pubrec(9))
            );
        }
        assert_eq!(i.awaiting_rel(), 1);
        let comp = i.handle_pubrel(9);
        assert_eq!((comp.packet_id, comp.code), (9, ReasonCode::SUCCESS));
        assert_eq!(i.awaiting_rel(), 0);
        // The id is free again: a new message with it is routed.
        assert_eq!(
            i.handle_publish(QoS::ExactlyOnce, 9, false),
            InboundAction::RouteAndPubRec(pubrec(9))
        );
    }

    #[test]
    fn unknown_pubrel_gets_0x92() {
        let mut i = Inbound::new(10);
        let comp = i.handle_pubrel(3);
        assert_eq!(
            (comp.packet_id, comp.code),
            (3, ReasonCode::PACKET_IDENTIFIER_NOT_FOUND)
        );
        i.handle_publish(QoS::ExactlyOnce, 3, false);
        assert_eq!(i.handle_pubrel(3).code, ReasonCode::SUCCESS);
        assert_eq!(
            i.handle_pubrel(3).code,
            ReasonCode::PACKET_IDENTIFIER_NOT_FOUND
        );
    }

    #[test]
    fn receive_maximum_counts_qos2_awaiting_release() {
        let mut i = Inbound::new(2);
        i.handle_publish(QoS::ExactlyOnce, 1, false);
        // One slot left: QoS 1 passes and does not hold it.
        assert!(matches!(
            i.handle_publish(QoS::AtLeastOnce, 7, false),
            InboundAction::RouteAndPubAck(_)
        ));
        i.handle_publish(QoS::ExactlyOnce, 2, false);
        assert_eq!(
            i.handle_publish(QoS::ExactlyOnce, 3, false),
            InboundAction::ReceiveMaximumExceeded
        );
        assert_eq!(
            i.handle_publish(QoS::AtLeastOnce, 8, false),
            InboundAction::ReceiveMaximumExceeded
        );
        // A repeat of a held id is still a duplicate, not an excess.
        assert_eq!(
            i.handle_publish(QoS::ExactlyOnce, 2, true),
            InboundAction::PubRecOnly(pubrec(2))
        );
        // QoS 0 is not flow controlled.
        assert_eq!(
            i.handle_publish(QoS::AtMostOnce, 0, false),
            InboundAction::Route
        );
        i.handle_pubrel(1);
        assert_eq!(
            i.handle_publish(QoS::ExactlyOnce, 3, false),
            InboundAction::RouteAndPubRec(pubrec(3))
        );
        assert_eq!(i.awaiting_rel(), 2);
    }

    #[test]
    fn restore_keeps_the_held_ids() {
        let mut i = Inbound::new(10);
        for id in [9, 2, 5] {
            i.handle_publish(QoS::ExactlyOnce, id, false);
        }
        assert_eq!(i.awaiting_rel_ids(), [2, 5, 9]);
        let mut r = Inbound::restore(10, i.awaiting_rel_ids());
        assert_eq!(r.awaiting_rel_ids(), [2, 5, 9]);
        assert_eq!(
            r.handle_publish(QoS::ExactlyOnce, 5, true),
            InboundAction::PubRecOnly(pubrec(5))
        );
        assert_eq!(r.handle_pubrel(5).code, ReasonCode::SUCCESS);
    }

    #[test]
    fn clear_forgets_held_ids() {
        let mut i = Inbound::new(0);
        i.handle_publish(QoS::ExactlyOnce, 1, false);
        assert_eq!(
            i.handle_publish(QoS::ExactlyOnce, 2, false),
            InboundAction::ReceiveMaximumExceeded
        );
        i.clear();
        assert_eq!(i.awaiting_rel(), 0);
        assert_eq!(
            i.handle_publish(QoS::ExactlyOnce, 1, false),
            InboundAction::RouteAndPubRec(pubrec(1))
        );
    }
}
