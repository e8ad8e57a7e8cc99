//! A connection's task: read, decode, drive the session, write.
//!
//! The task owns the socket. Everything else in the shard reaches the
//! connection through its `Conn` record: it appends encoded packets to
//! `outbuf` and wakes the task, or asks it to close. The task waits on one
//! hand-written future that flushes `outbuf`, reads into the shard's arena
//! and watches for a close request, so a blocked write never hides a close.
//!
//! An idle connection owns no buffers: reads land in the shard's arena and
//! only a partial packet is kept per connection; `outbuf` is released
//! whenever it drains. Keep-alive is data: a read stores the current tick
//! in `last_rx_tick`, and the shard's wheel decides (see keepalive.rs).

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use glommio::net::TcpStream;
use hashbrown::HashMap;
use ringmq_codec::{
    frame_len, ConnAck, Disconnect, Limits, Packet, Properties, ProtocolVersion, Publish, QoS,
    ReasonCode,
};
use ringmq_session::{CloseCause, InboundAction};
use ringmq_wheel::TimerKey;
use tracing::{debug, field, trace, Instrument};

use super::router::BlockedRoute;
use super::{Shard, TimerEvent};
use crate::mesh::Control;
use crate::stats::ShardStats;

/// Longest a take-over waits for the old connection to close.
const TAKEOVER_WAIT: Duration = Duration::from_millis(100);

/// Read batches a connection handles before yielding to other tasks.
const READS_PER_YIELD: u32 = 1;

/// The shard's handle on one connection.
pub(crate) struct Conn {
    pub(crate) id: u64,
    pub(crate) peer: SocketAddr,
    outbuf: RefCell<BytesMut>,
    waker: Cell<Option<Waker>>,
    close: Cell<Option<CloseCause>>,
    /// Tick of the last packet received (rounded up); keep-alive reads it.
    pub(crate) last_rx_tick: Cell<u64>,
    /// Negotiated protocol; `None` until CONNECT is accepted.
    pub(crate) version: Cell<Option<ProtocolVersion>>,
    /// The session this connection drives (its serial), once connected.
    pub(crate) session: Cell<Option<u64>>,
    /// Keep-alive timeout in ticks (0 = none).
    pub(crate) keepalive_ticks: Cell<u64>,
    /// The connection's wheel entry (CONNECT deadline, then keep-alive).
    pub(crate) timer: Cell<Option<TimerKey>>,
    /// The client's Maximum Packet Size (what we may send it).
    pub(crate) client_max_packet: Cell<u32>,
    /// Inbound topic aliases (index = alias - 1); empty until used.
    aliases_in: RefCell<Vec<Bytes>>,
    /// Outbound topic aliases, when the client accepts any.
    aliases_out: RefCell<Option<Box<OutAliases>>>,
    /// The socket has been closed (its task is ending).
    closed: Cell<bool>,
}

/// Topic aliases the broker assigned towards one client (v5 3.3.2.3.4):
/// first come, first served until the client's maximum, then plain topics.
struct OutAliases {
    max: u16,
    by_topic: HashMap<Bytes, u16>,
}

impl Conn {
    fn new(id: u64, peer: SocketAddr) -> Self {
        Self {
            id,
            peer,
            outbuf: RefCell::new(BytesMut::new()),
            waker: Cell::new(None),
            close: Cell::new(None),
            last_rx_tick: Cell::new(0),
            version: Cell::new(None),
            session: Cell::new(None),
            keepalive_ticks: Cell::new(0),
            timer: Cell::new(None),
            client_max_packet: Cell::new(ringmq_codec::MAX_PACKET_SIZE),
            aliases_in: RefCell::new(Vec::new()),
            aliases_out: RefCell::new(None),
            closed: Cell::new(false),
        }
    }

    /// Lets the broker use up to `max` topic aliases towards this client.
    pub(crate) fn set_outbound_alias_maximum(&self, max: u16) {
        *self.aliases_out.borrow_mut() = (max > 0).then(|| {
            Box::new(OutAliases {
                max,
                by_topic: HashMap::new(),
            })
        });
    }

    /// Applies an inbound Topic Alias (v5 3.3.2.3.4): registers a new one,
    /// or fills in the topic of an aliased PUBLISH with an empty topic.
    fn resolve_topic_alias(
        &self,
        publish: &mut Publish,
        maximum: u16,
    ) -> Result<(), (ReasonCode, &'static str)> {
        let Some(alias) = publish.properties.topic_alias else {
            if publish.topic.is_empty() {
                return Err((ReasonCode::PROTOCOL_ERROR, "empty topic without alias"));
            }
            return Ok(());
        };
        if alias == 0 || alias > maximum {
            // MQTT-3.3.2-8/9: 0 and values above our maximum are invalid.
            return Err((ReasonCode::TOPIC_ALIAS_INVALID, "topic alias out of range"));
        }
        let slot = usize::from(alias - 1);
        let mut aliases = self.aliases_in.borrow_mut();
        if publish.topic.is_empty() {
            match aliases.get(slot) {
                Some(topic) if !topic.is_empty() => publish.topic = topic.clone(),
                _ => return Err((ReasonCode::PROTOCOL_ERROR, "unknown topic alias")),
            }
        } else {
            if aliases.len() <= slot {
                aliases.resize(slot + 1, Bytes::new());
            }
            // Kept for the connection's life: copy it out of the read arena.
            aliases[slot] = Bytes::copy_from_slice(&publish.topic);
        }
        publish.properties.topic_alias = None;
        Ok(())
    }

    fn wake(&self) {
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }

    /// Bytes waiting to be written.
    pub(crate) fn queued_bytes(&self) -> usize {
        self.outbuf.borrow().len()
    }

    /// Encodes `packet` for this connection and wakes its task.
    pub(crate) fn send(&self, packet: &Packet) {
        let version = self.version.get().unwrap_or(ProtocolVersion::V3_1_1);
        self.send_as(packet, version);
    }

    pub(crate) fn send_as(&self, packet: &Packet, version: ProtocolVersion) {
        if packet
            .encode(version, &mut self.outbuf.borrow_mut())
            .is_ok()
        {
            self.wake();
        }
    }

    /// Queues a publish (already fitted to this client) and wakes the task.
    pub(crate) fn send_publish(&self, publish: &Publish) {
        let version = self.version.get().unwrap_or(ProtocolVersion::V3_1_1);
        let mut aliases = self.aliases_out.borrow_mut();
        let encoded = match aliases.as_deref_mut() {
            None => publish.encode(version, &mut self.outbuf.borrow_mut()),
            Some(out) => {
                let mut aliased = publish.clone();
                if let Some(alias) = out.by_topic.get(&publish.topic) {
                    aliased.topic = Bytes::new();
                    aliased.properties.topic_alias = Some(*alias);
                } else if out.by_topic.len() < usize::from(out.max) {
                    let alias = out.by_topic.len() as u16 + 1;
                    out.by_topic
                        .insert(Bytes::copy_from_slice(&publish.topic), alias);
                    aliased.properties.topic_alias = Some(alias);
                }
                aliased.encode(version, &mut self.outbuf.borrow_mut())
            }
        };
        if encoded.is_ok() {
            self.wake();
        }
    }

    /// Asks the task to close the connection (first cause wins).
    pub(crate) fn request_close(&self, cause: CloseCause) {
        if self.close.get().is_none() {
            self.close.set(Some(cause));
        }
        self.wake();
    }

    /// v5: DISCONNECT with `code` first; then close.
    pub(crate) fn disconnect(&self, code: ReasonCode, cause: CloseCause) {
        self.disconnect_with_reason(code, cause, None);
    }

    /// v5: DISCONNECT with `code` and a Reason String (always allowed on
    /// DISCONNECT, 3.14.2.2.3); then close.
    pub(crate) fn disconnect_with_reason(
        &self,
        code: ReasonCode,
        cause: CloseCause,
        reason: Option<&'static str>,
    ) {
        if self.close.get().is_none() && self.version.get() == Some(ProtocolVersion::V5) {
            let properties = Properties {
                reason_string: reason.map(|r| Bytes::from_static(r.as_bytes())),
                ..Properties::default()
            };
            self.send(&Packet::Disconnect(Disconnect { code, properties }));
        }
        self.request_close(cause);
    }

    pub(crate) fn is_closing(&self) -> bool {
        self.close.get().is_some()
    }

    /// Writes as much of `outbuf` as the socket takes without waiting.
    fn poll_flush(&self, stream: &mut TcpStream, cx: &mut Context<'_>) -> io::Result<()> {
        use futures_lite::AsyncWrite;
        let mut out = self.outbuf.borrow_mut();
        while !out.is_empty() {
            match std::pin::Pin::new(&mut *stream).poll_write(cx, &out) {
                Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                Poll::Ready(Ok(n)) => {
                    trace!(bytes = n, "written");
                    out.advance(n)
                }
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => return Ok(()),
            }
        }
        if out.capacity() > 0 {
            // Drained: an idle connection keeps no write buffer.
            *out = BytesMut::new();
        }
        Ok(())
    }
}

enum Event {
    Read(BytesMut),
    Eof,
    Failed(io::Error),
    Close(CloseCause),
}

/// How the task ended.
enum End {
    Closed(CloseCause),
    HandedOff,
}

/// The connection task.
/// The connection task: registers the connection and its CONNECT
/// deadline, then runs it inside its span. Set-up happens here, outside
/// the future, so the task's state holds only what the connection needs
/// while it lives.
pub(crate) fn run(
    shard: Rc<Shard>,
    stream: TcpStream,
    peer: SocketAddr,
    read: BytesMut,
    adopted: bool,
) -> impl std::future::Future<Output = ()> {
    let conn = Rc::new(Conn::new(shard.next_conn_id(), peer));
    conn.last_rx_tick.set(shard.stamp_tick());
    shard.state.borrow_mut().conns.insert(conn.id, conn.clone());
    if !adopted {
        let deadline = shard.now_tick() + shard.clock.ticks(shard.config().connect_timeout_ms) + 1;
        let key = shard.arm_timer(deadline, TimerEvent::ConnectTimeout(conn.id));
        conn.timer.set(Some(key));
    }
    let span = tracing::debug_span!("conn", shard = shard.id, %peer, client_id = field::Empty);
    live(shard, conn, stream, read, adopted).instrument(span)
}

async fn live(
    shard: Rc<Shard>,
    conn: Rc<Conn>,
    mut stream: TcpStream,
    read: BytesMut,
    adopted: bool,
) {
    let end = drive(&shard, &conn, &mut stream, read, adopted).await;
    match end {
        End::HandedOff => {
            shard.forget_connection(&conn);
            ShardStats::dec(&shard.stats.connections);
        }
        End::Closed(cause) => {
            // Last chance for a queued DISCONNECT to leave (no waiting).
            let _ = conn.poll_flush(&mut stream, &mut Context::from_waker(Waker::noop()));
            // glommio may close the descriptor later, through the ring; the
            // FIN goes now, so a take-over's CONNACK (which waits for
            // `closed`) really follows the old connection's end.
            // SAFETY: the descriptor belongs to `stream`, alive here.
            unsafe { libc::shutdown(stream.as_raw_fd(), libc::SHUT_RDWR) };
            drop(stream);
            conn.closed.set(true);
            debug!(?cause, "connection closed");
            shard.connection_closed(&conn, cause);
        }
    }
}

async fn drive(
    shard: &Rc<Shard>,
    conn: &Rc<Conn>,
    stream: &mut TcpStream,
    mut pending: BytesMut,
    adopted: bool,
) -> End {
    let limits = Limits {
        max_packet_size: shard.config().max_packet_size,
    };
    let mut reads_since_yield = 0u32;
    loop {
        // Decode and handle every whole packet we hold.
        loop {
            if let Some(cause) = conn.close.get() {
                return End::Closed(cause);
            }
            if conn.version.get().is_none() && pending.first().is_some_and(|b| *b != 0x10) {
                // MQTT-3.1.0-1: nothing but CONNECT (0x10) may come first;
                // close at once rather than wait for a frame that is not MQTT.
                debug!(first_byte = pending[0], "first packet is not CONNECT");
                ShardStats::inc(&shard.stats.protocol_errors);
                return End::Closed(CloseCause::ProtocolError);
            }
            let len = match frame_len(&pending, &limits) {
                Ok(Some(len)) => len,
                Ok(None) => break,
                Err(e) => return End::Closed(shard.reject(conn, &e)),
            };
            if pending.len() < len {
                pending.reserve(len - pending.len());
                break;
            }
            let frame = pending.split_to(len).freeze();
            let version = conn.version.get().unwrap_or(ProtocolVersion::V3_1_1);
            let packet = match ringmq_codec::decode(&frame, version, &limits) {
                Ok(Some((packet, _))) => packet,
                // frame_len said the frame is whole; a decoder asking for more
                // means the lengths disagree: malformed.
                Ok(None) => {
                    let code = ReasonCode::MALFORMED_PACKET;
                    return End::Closed(shard.protocol_violation(conn, code, "length mismatch"));
                }
                Err(e) => return End::Closed(shard.reject(conn, &e)),
            };
            if conn.version.get().is_none() {
                let taken_over =
                    match first_packet(shard, conn, stream, packet, &frame, &pending, adopted) {
                        Ok(taken_over) => taken_over,
                        Err(end) => return end,
                    };
                drop(frame);
                if let Some(old) = taken_over {
                    // Rare: boxed so it does not bloat every connection.
                    Box::pin(wait_closed(old)).await;
                }
                continue;
            }
            match handle_packet(shard, conn, packet) {
                Ok(None) => {}
                // Back-pressure: read nothing more until the inboxes take it.
                // Boxed because it is rare and would bloat every connection.
                Ok(Some(blocked)) => {
                    drop(frame);
                    Box::pin(shard.clone().finish_route(blocked)).await
                }
                Err(cause) => return End::Closed(cause),
            }
        }

        let event = poll_fn(|cx| {
            if let Some(cause) = conn.close.get() {
                return Poll::Ready(Event::Close(cause));
            }
            if let Err(e) = conn.poll_flush(stream, cx) {
                return Poll::Ready(Event::Failed(e));
            }
            match shard.poll_read_arena(stream, cx) {
                Poll::Ready(Ok(data)) if data.is_empty() => Poll::Ready(Event::Eof),
                Poll::Ready(Ok(data)) => Poll::Ready(Event::Read(data)),
                Poll::Ready(Err(e)) => Poll::Ready(Event::Failed(e)),
                Poll::Pending => {
                    conn.waker.set(Some(cx.waker().clone()));
                    Poll::Pending
                }
            }
        })
        .await;
        match event {
            Event::Read(data) => {
                // Only what the client sends keeps it alive.
                conn.last_rx_tick.set(shard.stamp_tick());
                shard.bump_activity();
                if pending.is_empty() {
                    pending = data;
                } else {
                    pending.extend_from_slice(&data);
                }
                if reads_since_yield >= READS_PER_YIELD {
                    // Let the subscribers this batch woke flush before reading
                    // more, or a fast publisher would starve them.
                    reads_since_yield = 0;
                    futures_lite::future::yield_now().await;
                }
                reads_since_yield += 1;
            }
            Event::Eof => return End::Closed(CloseCause::NetworkError),
            Event::Failed(e) => {
                trace!(error = %e, "socket error");
                return End::Closed(CloseCause::NetworkError);
            }
            Event::Close(cause) => return End::Closed(cause),
        }
    }
}

/// The first packet: a CONNECT accepted here (with the connection it took
/// over, if any), or how the connection ends.
fn first_packet(
    shard: &Rc<Shard>,
    conn: &Rc<Conn>,
    stream: &TcpStream,
    packet: Packet,
    frame: &[u8],
    rest: &[u8],
    adopted: bool,
) -> Result<Option<Rc<Conn>>, End> {
    let Packet::Connect(connect) = packet else {
        // MQTT-3.1.0-1: the first packet must be CONNECT.
        debug!(packet = ?packet.packet_type(), "first packet is not CONNECT");
        ShardStats::inc(&shard.stats.protocol_errors);
        return Err(End::Closed(CloseCause::ProtocolError));
    };
    let owner = if connect.client_id.is_empty() {
        shard.id
    } else {
        crate::shard_for(&connect.client_id, shard.shared.shards)
    };
    if owner != shard.id && !adopted {
        if hand_off(shard, conn, stream, owner, frame, rest) {
            return Err(End::HandedOff);
        }
        return Err(End::Closed(CloseCause::NetworkError));
    }
    match shard.accept_connect(conn, *connect) {
        Some((id, taken_over)) => {
            tracing::Span::current().record("client_id", field::debug(&id));
            Ok(taken_over)
        }
        None => Ok(None),
    }
}

/// MQTT-3.1.4-3: the old connection is closed before the new one proceeds
/// (its CONNACK waits in the new connection's buffer until then).
async fn wait_closed(old: Rc<Conn>) {
    let deadline = std::time::Instant::now() + TAKEOVER_WAIT;
    while !old.closed.get() && std::time::Instant::now() < deadline {
        futures_lite::future::yield_now().await;
    }
}

/// Moves the socket to the shard that owns its client id, with every byte
/// read so far. Returns false if the descriptor could not be duplicated.
fn hand_off(
    shard: &Rc<Shard>,
    conn: &Rc<Conn>,
    stream: &TcpStream,
    owner: usize,
    frame: &[u8],
    rest: &[u8],
) -> bool {
    // glommio 0.9's TcpStream has no IntoRawFd: duplicate the descriptor,
    // and let dropping the stream close the original.
    // SAFETY: the fd is open for as long as `stream` lives, which spans
    // this borrow.
    let borrowed = unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) };
    let fd = match borrowed.try_clone_to_owned() {
        Ok(fd) => fd,
        Err(e) => {
            tracing::warn!(error = %e, "cannot duplicate socket for hand-off");
            return false;
        }
    };
    let mut read = BytesMut::with_capacity(frame.len() + rest.len());
    read.extend_from_slice(frame);
    read.extend_from_slice(rest);
    trace!(owner, "handing connection to its owner shard");
    shard.shared.mesh.send_control(
        owner,
        Control::Adopt {
            fd,
            read: read.freeze(),
            peer: conn.peer,
        },
    );
    true
}

/// One packet after CONNECT. `Ok(Some(_))`: a publish waits for a full
/// inbox.
fn handle_packet(
    shard: &Rc<Shard>,
    conn: &Rc<Conn>,
    packet: Packet,
) -> Result<Option<BlockedRoute>, CloseCause> {
    let v5 = conn.version.get() == Some(ProtocolVersion::V5);
    match packet {
        Packet::PingReq => {
            conn.send(&Packet::PingResp);
            Ok(None)
        }
        Packet::Publish(mut publish) => {
            ShardStats::inc(&shard.stats.publishes_in);
            if let Err((code, what)) =
                conn.resolve_topic_alias(&mut publish, shard.config().topic_alias_maximum)
            {
                return Err(shard.protocol_violation(conn, code, what));
            }
            if v5 && publish.qos > shard.config().max_qos() {
                // Above the Maximum QoS we announced (3.2.2.3.4).
                let code = ReasonCode::QOS_NOT_SUPPORTED;
                return Err(shard.protocol_violation(conn, code, "QoS above Maximum QoS"));
            }
            if publish.qos == QoS::AtMostOnce {
                return Ok(shard.route_publish(publish, conn.session.get()));
            }
            let action = shard.inbound_publish(conn, publish.qos, publish.packet_id, publish.dup);
            match action {
                InboundAction::Route => Ok(shard.route_publish(publish, conn.session.get())),
                InboundAction::RouteAndPubAck(ack) => {
                    let blocked = shard.route_publish(publish, conn.session.get());
                    conn.send(&Packet::PubAck(ack));
                    Ok(blocked)
                }
                InboundAction::RouteAndPubRec(rec) => {
                    let blocked = shard.route_publish(publish, conn.session.get());
                    conn.send(&Packet::PubRec(rec));
                    Ok(blocked)
                }
                // A QoS 2 duplicate before PUBREL: answered, not routed again.
                InboundAction::PubRecOnly(rec) => {
                    conn.send(&Packet::PubRec(rec));
                    Ok(None)
                }
                InboundAction::ReceiveMaximumExceeded => {
                    // MQTT-3.3.4-9.
                    let code = ReasonCode::RECEIVE_MAXIMUM_EXCEEDED;
                    Err(shard.protocol_violation(conn, code, "Receive Maximum exceeded"))
                }
            }
        }
        ack @ (Packet::PubAck(_) | Packet::PubRec(_) | Packet::PubRel(_) | Packet::PubComp(_)) => {
            shard.handle_ack(conn, &ack);
            Ok(None)
        }
        Packet::Subscribe(subscribe) => shard.subscribe(conn, &subscribe).map(|()| None),
        Packet::Unsubscribe(unsubscribe) => {
            shard.unsubscribe(conn, &unsubscribe);
            Ok(None)
        }
        Packet::Disconnect(disconnect) => shard.client_disconnect(conn, &disconnect).map(|()| None),
        Packet::Connect(_) => {
            // MQTT-3.1.0-2: a second CONNECT is a protocol error.
            Err(shard.protocol_violation(conn, ReasonCode::PROTOCOL_ERROR, "second CONNECT"))
        }
        Packet::Auth(_) => Err(shard.protocol_violation(
            conn,
            ReasonCode::BAD_AUTHENTICATION_METHOD,
            "AUTH without an authentication method",
        )),
        other @ (Packet::ConnAck(_)
        | Packet::SubAck(_)
        | Packet::UnsubAck(_)
        | Packet::PingResp) => {
            debug!(packet = ?other.packet_type(), "server-to-client packet from a client");
            Err(shard.protocol_violation(
                conn,
                ReasonCode::PROTOCOL_ERROR,
                "packet only a server may send",
            ))
        }
    }
}

impl Shard {
    /// A decode error: count it, tell a v5 client why, close.
    fn reject(&self, conn: &Conn, error: &ringmq_codec::DecodeError) -> CloseCause {
        ShardStats::inc(&self.stats.protocol_errors);
        debug!(%error, "bad packet");
        if conn.version.get().is_some() {
            conn.disconnect(error.reason_code(), CloseCause::ProtocolError);
        } else if error.reason_code() == ReasonCode::UNSUPPORTED_PROTOCOL_VERSION {
            // MQTT-3.1.2-2: answer an unknown protocol level with CONNACK
            // 0x01 in the 3.1.1 format (the one every client can read).
            let code = ReasonCode(ringmq_session::V3_UNACCEPTABLE_PROTOCOL);
            let connack = Shard::connack(code, false, Properties::default());
            conn.send_as(&connack, ProtocolVersion::V3_1_1);
        }
        CloseCause::ProtocolError
    }

    /// A protocol rule broken after CONNECT: v5 DISCONNECT with `code`.
    pub(crate) fn protocol_violation(
        &self,
        conn: &Conn,
        code: ReasonCode,
        what: &'static str,
    ) -> CloseCause {
        ShardStats::inc(&self.stats.protocol_errors);
        debug!(reason = what, code = code.0, "protocol violation");
        conn.disconnect_with_reason(code, CloseCause::ProtocolError, Some(what));
        CloseCause::ProtocolError
    }

    /// Waits a little for a full inbox to drain (back-pressure).
    pub(crate) async fn backoff(&self) {
        glommio::timer::sleep(Duration::from_micros(100)).await;
    }

    /// CONNACK for a refusal or acceptance.
    pub(crate) fn connack(
        code: ReasonCode,
        session_present: bool,
        properties: Properties,
    ) -> Packet {
        Packet::ConnAck(ConnAck {
            session_present,
            code,
            properties,
        })
    }
}
