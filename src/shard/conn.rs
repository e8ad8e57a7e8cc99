//! A connection's task: bytes in, packets to the driver, bytes out.
//!
//! The task owns the socket and its partial packet; everything else about
//! the connection lives in its session and its `Link`. One loop turn:
//! drain the inbox (so a route-add that preceded this read is known),
//! decode every whole packet and hand each to the driver, wait while the
//! mesh is congested (back-pressure, still watching for a close), then
//! one future that flushes the link's output, reads into the shard's arena
//! and watches for a close request. An idle connection owns no buffer:
//! reads land in the arena and only a partial packet is kept.

use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::pin::pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use glommio::net::TcpStream;
use ringmq_session::CloseCause;
use tracing::{debug, field, trace, Instrument};

use super::frames::{self, Fed};
use super::link::Link;
use super::Shard;

/// Longest a take-over waits for the old connection to close.
const TAKEOVER_WAIT: Duration = Duration::from_millis(100);

/// Read batches a connection handles before yielding to other tasks.
const READS_PER_YIELD: u32 = 1;

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

/// The connection task: registers the link (and its CONNECT deadline),
/// then runs it inside its span. Set-up happens here, outside the future,
/// so the task's state holds only what the connection needs while it
/// lives.
pub(crate) fn run(
    shard: Rc<Shard>,
    stream: TcpStream,
    peer: SocketAddr,
    read: BytesMut,
    adopted: bool,
) -> impl Future<Output = ()> {
    let link = shard.core.borrow_mut().new_link(peer, adopted);
    let span = tracing::debug_span!("conn", shard = shard.id, %peer, client_id = field::Empty);
    live(shard, link, stream, read, adopted).instrument(span)
}

async fn live(
    shard: Rc<Shard>,
    link: Rc<Link>,
    mut stream: TcpStream,
    read: BytesMut,
    adopted: bool,
) {
    let end = drive(&shard, &link, &mut stream, read, adopted).await;
    match end {
        End::HandedOff => shard.core.borrow_mut().forget_link(&link),
        End::Closed(cause) => {
            // Last chance for a queued DISCONNECT to leave (no waiting).
            let _ = poll_flush(&link, &mut stream, &mut Context::from_waker(Waker::noop()));
            // glommio may close the descriptor later, through the ring; the
            // FIN goes now, so a take-over's CONNACK (which waits for the
            // close) really follows the old connection's end.
            // SAFETY: the descriptor belongs to `stream`, alive here.
            unsafe { libc::shutdown(stream.as_raw_fd(), libc::SHUT_RDWR) };
            drop(stream);
            link.mark_closed();
            debug!(?cause, "connection closed");
            shard.core.borrow_mut().on_closed(&link, cause);
        }
    }
}

async fn drive(
    shard: &Rc<Shard>,
    link: &Rc<Link>,
    stream: &mut TcpStream,
    mut pending: BytesMut,
    adopted: bool,
) -> End {
    let mut reads_since_yield = 0u32;
    let fd = stream.as_raw_fd();
    loop {
        // One read batch: every whole packet we hold, under one borrow.
        let fed = {
            let mut core = shard.core.borrow_mut();
            let (stamp, now) = core.clock.read();
            core.now = now;
            core.drain_inbox();
            frames::feed(&mut core, link, &mut pending, fd, adopted, stamp)
        };
        let wait_for = match fed {
            Fed::More => None,
            Fed::WaitFor(old) => Some(old),
            Fed::Close(cause) => return End::Closed(cause),
            Fed::HandedOff => return End::HandedOff,
        };
        if let Some(old) = wait_for {
            // Rare: boxed so it does not bloat every connection's future.
            Box::pin(wait_closed(old)).await;
            continue;
        }
        if shard.core.borrow().outlet.is_congested() {
            // Back-pressure: read nothing more (and hold this batch's
            // acknowledgements) until the other shards take what it sent.
            Box::pin(wait_uncongested(shard, link)).await;
        }

        let event = poll_fn(|cx| {
            if let Some(cause) = link.close_requested() {
                return Poll::Ready(Event::Close(cause));
            }
            if let Err(e) = poll_flush(link, stream, cx) {
                return Poll::Ready(Event::Failed(e));
            }
            match shard.poll_read_arena(stream, cx) {
                Poll::Ready(Ok(data)) if data.is_empty() => Poll::Ready(Event::Eof),
                Poll::Ready(Ok(data)) => Poll::Ready(Event::Read(data)),
                Poll::Ready(Err(e)) => Poll::Ready(Event::Failed(e)),
                Poll::Pending => {
                    link.set_waker(cx.waker());
                    Poll::Pending
                }
            }
        })
        .await;
        match event {
            Event::Read(data) => {
                shard.bump_activity();
                if pending.is_empty() {
                    pending = data;
                } else {
                    pending.extend_from_slice(&data);
                }
                if reads_since_yield >= READS_PER_YIELD {
                    // Let the subscribers this batch woke flush before
                    // reading more, or a fast publisher would starve them.
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

/// MQTT-3.1.4-3: the old connection is closed before the new one proceeds
/// (its CONNACK waits in the new link's output until then). Woken by the
/// old link's close, or gives up after `TAKEOVER_WAIT`.
async fn wait_closed(old: Rc<Link>) {
    let mut timer = pin!(glommio::timer::Timer::new(TAKEOVER_WAIT));
    poll_fn(|cx| {
        if old.poll_closed(cx.waker()) || timer.as_mut().poll(cx).is_ready() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
}

/// Waits until the outlet has moved everything into the other shards'
/// channels; a close request (take-over, keep-alive, shutdown) ends the
/// wait at once.
async fn wait_uncongested(shard: &Rc<Shard>, link: &Link) {
    loop {
        if link.close_requested().is_some() || shard.core.borrow_mut().outlet.flush() {
            return;
        }
        let mut sleep = pin!(shard.backoff());
        poll_fn(|cx| {
            if link.close_requested().is_some() {
                return Poll::Ready(());
            }
            link.set_waker(cx.waker());
            sleep.as_mut().poll(cx)
        })
        .await;
    }
}

/// Writes as much of the link's output as the socket takes without
/// waiting.
fn poll_flush(link: &Link, stream: &mut TcpStream, cx: &mut Context<'_>) -> io::Result<()> {
    use futures_lite::AsyncWrite;
    let mut out = link.outbuf.borrow_mut();
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
