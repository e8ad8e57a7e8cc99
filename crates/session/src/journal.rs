//! What a persistent session asks the store to record (issue 16): one
//! [`Step`] per change, queued in the outbox ([`crate::Outbox::store`],
//! beside its actions) right where the change is made, so the shard's log follows the session
//! exactly without ever writing a whole session image on the message path.
//!
//! A session journals only when the policy turns persistence on
//! ([`crate::ServerPolicy::persistence`]) and the session outlives its
//! connection (Session Expiry above 0; v3 clean session 0). The shard turns
//! each step into the store's events with [`Session::store_events`], which
//! reads the session as the call that queued the step left it.
//!
//! Message identity: every QoS 1/2 message a session holds carries a
//! store id (`sid`), unique within the session, which is the store's
//! `msg_id`. It survives export and import, so a step after a restart
//! still names the message the stored state holds.

use bytes::Bytes;
use ringmq_codec::Publish;
use ringmq_store::{Event, WillRecord};

use crate::persist::{encode_properties, options_byte, protocol_byte, WallClock};
use crate::{Session, Subscription, Tick};

/// One change to record, in the order the session made them.
// Queued on the delivery path of persistent sessions only; boxing the
// message would cost an allocation per stored message.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// The session's parameters (username, protocol, expiry, will and its
    /// delay) changed, or it was resumed by a connection: record them as
    /// they are now; the client is connected.
    Header,
    /// A new session replaces any stored one under this client id (clean
    /// start, or nothing to resume).
    Fresh,
    /// The connection ended at this tick.
    Left(Tick),
    /// The will was published or discarded; the session lives on.
    WillGone,
    /// The session ended: forget it.
    Gone,
    /// A subscription was added or replaced.
    Subscribed {
        /// The filter as subscribed.
        filter: Bytes,
        /// The grant.
        grant: Subscription,
    },
    /// A subscription was removed.
    Unsubscribed {
        /// The filter as subscribed.
        filter: Bytes,
    },
    /// A QoS 1/2 message was taken into the session (queued, or sent at
    /// once: a `Sent` follows).
    Queued {
        /// Its store id.
        sid: u64,
        /// The message as kept (`dup` false, `packet_id` 0).
        publish: Publish,
        /// Its expiry deadline, on the session's clock.
        expires_at_ms: Option<u64>,
    },
    /// A held message went out with this packet id.
    Sent {
        /// Its store id.
        sid: u64,
        /// The packet id.
        packet_id: u16,
    },
    /// PUBREC came for the message in flight with this packet id.
    Released {
        /// The packet id.
        packet_id: u16,
    },
    /// The flow of this packet id ended (PUBACK, PUBCOMP, a PUBREC with an
    /// error, or discarded as too large on a re-send).
    Done {
        /// The packet id.
        packet_id: u16,
    },
    /// A queued message was dropped (expired, or too large when its turn
    /// came).
    Dropped {
        /// Its store id.
        sid: u64,
    },
    /// A QoS 2 PUBLISH from the client was answered with PUBREC.
    InboundPending {
        /// The client's packet id.
        packet_id: u16,
    },
    /// PUBREL from the client ended an inbound QoS 2 flow.
    InboundDone {
        /// The client's packet id.
        packet_id: u16,
    },
}

impl Session {
    /// The store events that record `step` (one, or two for `Fresh`),
    /// passed to `emit` in order. Call it with the session as the call that
    /// queued the step left it (the shard applies an outbox before the
    /// session's next call).
    pub fn store_events(&self, step: Step, clock: &WallClock, mut emit: impl FnMut(Event)) {
        let client_id = self.client_id().clone();
        match step {
            Step::Header => emit(self.header_event()),
            Step::Fresh => {
                emit(Event::SessionGone {
                    client_id: client_id.clone(),
                });
                emit(self.header_event());
            }
            Step::Left(at) => emit(Event::SessionLeft {
                client_id,
                at_unix_ms: clock.to_unix(at),
            }),
            Step::WillGone => emit(Event::WillGone { client_id }),
            Step::Gone => emit(Event::SessionGone { client_id }),
            Step::Subscribed { filter, grant } => emit(Event::SubscriptionPut {
                client_id,
                filter,
                options: options_byte(grant.options),
                id: grant.id,
            }),
            Step::Unsubscribed { filter } => emit(Event::SubscriptionGone { client_id, filter }),
            Step::Queued {
                sid,
                publish,
                expires_at_ms,
            } => emit(Event::MessageQueued {
                client_id,
                msg_id: sid,
                topic: publish.topic,
                payload: publish.payload,
                qos: publish.qos as u8,
                retain: publish.retain,
                properties: if publish.properties.is_empty() {
                    Bytes::new()
                } else {
                    encode_properties(&publish.properties)
                },
                expires_at_unix_ms: expires_at_ms.map(|t| clock.to_unix(Tick(t))),
            }),
            Step::Sent { sid, packet_id } => emit(Event::MessageSent {
                client_id,
                msg_id: sid,
                packet_id,
            }),
            Step::Released { packet_id } => emit(Event::MessageReleased {
                client_id,
                packet_id,
            }),
            Step::Done { packet_id } => emit(Event::MessageDone {
                client_id,
                packet_id,
            }),
            Step::Dropped { sid } => emit(Event::MessageDropped {
                client_id,
                msg_id: sid,
            }),
            Step::InboundPending { packet_id } => emit(Event::InboundPending {
                client_id,
                packet_id,
            }),
            Step::InboundDone { packet_id } => emit(Event::InboundDone {
                client_id,
                packet_id,
            }),
        }
    }

    /// `SessionPut` with the session's parameters as they are now.
    pub(crate) fn header_event(&self) -> Event {
        let (will, will_delay_secs, _) = self.will_state();
        Event::SessionPut {
            client_id: self.client_id().clone(),
            username: self.username().cloned(),
            protocol: protocol_byte(self.protocol()),
            expiry_secs: self.session_expiry_secs(),
            will: will.map(|w| WillRecord {
                topic: w.topic.clone(),
                payload: w.payload.clone(),
                qos: w.qos as u8,
                retain: w.retain,
                properties: encode_properties(&w.properties),
            }),
            will_delay_secs,
        }
    }
}
