//! Cross-shard inboxes (crossbeam channels) and their wake-ups.
//!
//! Each shard owns one inbox made of two channels that share one wake slot:
//! - `data`, bounded: publishes routed from other shards. A full data
//!   channel makes the publishing connection wait (back-pressure to its TCP
//!   sender) instead of buffering without bound.
//! - `control`, unbounded: route changes, adopted sockets, wills and
//!   shutdown. These are rare, must never be dropped, and are sent from
//!   places that cannot wait (timer handlers); their volume is bounded by
//!   subscription churn and connection rate, not by message rate.
//!
//! Wake-ups: the receiving task parks only after setting `parked` and
//! re-checking both channels; a sender swaps `parked` back and rings the
//! shard's doorbell (one byte on a socket pair the shard's io_uring polls)
//! only when it was set. A busy shard therefore takes no wake-up syscalls
//! and an idle broker burns no CPU; no lock is taken on either side.

use std::io::Write;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError};
use ringmq_codec::{Properties, Publish, QoS};
use ringmq_session::Subscription;
use std::time::Instant;

/// A message for another shard's control channel.
#[derive(Debug)]
pub(crate) enum Control {
    /// Take over a socket whose CONNECT names a client id this shard owns.
    /// `read` holds every byte read from it so far, CONNECT first.
    Adopt {
        fd: OwnedFd,
        read: Bytes,
        peer: SocketAddr,
    },
    /// The sending shard now has (`add`) or no longer has subscribers for
    /// `filter` (in shared subscription `group` when set; `filter` is then
    /// the inner filter).
    Route {
        filter: Bytes,
        group: Option<u64>,
        shard: usize,
        add: bool,
    },
    /// A publish that must not be dropped (a will).
    Publish(RoutedPublish),
    /// Retained messages matching `filter`, for a new subscription of
    /// session `serial` on shard `reply_to`.
    RetainedQuery {
        filter: Bytes,
        reply_to: usize,
        serial: u64,
        subscription: Subscription,
    },
    /// The answer to a `RetainedQuery`.
    RetainedReply {
        serial: u64,
        subscription: Subscription,
        messages: Vec<Publish>,
    },
    /// Stop accepting, disconnect every client, stop the shard.
    Shutdown,
}

/// A publish on its way to another shard, kept small for the bounded
/// channel's slots: properties (usually absent) are boxed only when there
/// are any, so a plain publish crosses shards without an allocation.
#[derive(Debug)]
pub(crate) struct RoutedPublish {
    pub(crate) topic: Bytes,
    pub(crate) payload: Bytes,
    pub(crate) properties: Option<Box<Properties>>,
    pub(crate) qos: QoS,
    /// The RETAIN flag as published (for Retain As Published).
    pub(crate) retain: bool,
    /// When the message expires (v5 Message Expiry Interval).
    pub(crate) expires_at: Option<Instant>,
    /// Deliver to the target's ordinary subscribers.
    pub(crate) deliver: bool,
    /// The target owns this topic's retained slot: store (or clear) it.
    pub(crate) store_retained: bool,
    /// Shared subscription groups the target serves with this message.
    pub(crate) groups: Vec<u64>,
    /// Times a shared-group message was handed on (see router.rs).
    pub(crate) hops: u8,
}

impl RoutedPublish {
    pub(crate) fn new(publish: &Publish, expires_at: Option<Instant>) -> Self {
        let properties = if publish.properties.is_empty() {
            None
        } else {
            Some(Box::new(publish.properties.clone()))
        };
        Self {
            topic: publish.topic.clone(),
            payload: publish.payload.clone(),
            properties,
            qos: publish.qos,
            retain: publish.retain,
            expires_at,
            deliver: false,
            store_retained: false,
            groups: Vec::new(),
            hops: 0,
        }
    }

    /// The publish again (DUP clear, no packet id).
    pub(crate) fn to_publish(&self) -> Publish {
        Publish {
            dup: false,
            qos: self.qos,
            retain: self.retain,
            topic: self.topic.clone(),
            packet_id: 0,
            properties: self.properties.as_deref().cloned().unwrap_or_default(),
            payload: self.payload.clone(),
        }
    }
}

/// The sending side of every shard's inbox; cloned into every shard.
#[derive(Clone)]
pub(crate) struct Mesh {
    data: Vec<Sender<RoutedPublish>>,
    control: Vec<Sender<Control>>,
    wake: Vec<Arc<WakeSlot>>,
}

struct WakeSlot {
    parked: AtomicBool,
    /// The write end of the shard's doorbell (a socket pair).
    doorbell: StdUnixStream,
}

/// One shard's receiving side.
pub(crate) struct Inbox {
    data: Receiver<RoutedPublish>,
    control: Receiver<Control>,
    wake: Arc<WakeSlot>,
    /// The read end of the doorbell, taken by the shard's inbox task.
    doorbell: Option<OwnedFd>,
}

/// A message taken from an inbox.
pub(crate) enum Incoming {
    Control(Control),
    Publish(RoutedPublish),
}

impl Mesh {
    /// Builds the mesh for `shards` shards with data channels of `capacity`.
    pub(crate) fn new(shards: usize, capacity: usize) -> std::io::Result<(Mesh, Vec<Inbox>)> {
        let mut mesh = Mesh {
            data: Vec::with_capacity(shards),
            control: Vec::with_capacity(shards),
            wake: Vec::with_capacity(shards),
        };
        let mut inboxes = Vec::with_capacity(shards);
        for _ in 0..shards {
            let (dtx, drx) = crossbeam_channel::bounded(capacity);
            let (ctx, crx) = crossbeam_channel::unbounded();
            let (ring, listen) = StdUnixStream::pair()?;
            ring.set_nonblocking(true)?;
            listen.set_nonblocking(true)?;
            let wake = Arc::new(WakeSlot {
                parked: AtomicBool::new(false),
                doorbell: ring,
            });
            mesh.data.push(dtx);
            mesh.control.push(ctx);
            mesh.wake.push(wake.clone());
            inboxes.push(Inbox {
                data: drx,
                control: crx,
                wake,
                doorbell: Some(listen.into()),
            });
        }
        Ok((mesh, inboxes))
    }

    /// Number of shards.
    pub(crate) fn len(&self) -> usize {
        self.data.len()
    }

    /// Messages waiting in shard `to`'s inbox (approximate, any thread).
    pub(crate) fn backlog(&self, to: usize) -> usize {
        self.data[to].len() + self.control[to].len()
    }

    /// Queues a control message (never full); a stopped shard drops it.
    pub(crate) fn send_control(&self, to: usize, msg: Control) {
        if self.control[to].send(msg).is_ok() {
            self.wake(to);
        }
    }

    /// Queues a publish; gives it back when the target's data channel is
    /// full so the caller can wait and retry.
    pub(crate) fn try_send_publish(
        &self,
        to: usize,
        msg: RoutedPublish,
    ) -> Result<(), RoutedPublish> {
        match self.data[to].try_send(msg) {
            Ok(()) => {
                self.wake(to);
                Ok(())
            }
            Err(TrySendError::Full(msg)) => {
                // Make sure the full shard is draining.
                self.wake(to);
                Err(msg)
            }
            // The shard has stopped: nobody left to deliver to.
            Err(TrySendError::Disconnected(_)) => Ok(()),
        }
    }

    fn wake(&self, to: usize) {
        let slot = &self.wake[to];
        // Pairs with the fence in `Inbox::recv`: either the receiver sees
        // our message on its re-check, or we see `parked`.
        fence(Ordering::SeqCst);
        if slot.parked.swap(false, Ordering::SeqCst) {
            // A full doorbell already has a ring pending: nothing to add.
            let _ = (&slot.doorbell).write(&[1]);
        }
    }
}

impl Inbox {
    /// Takes one message without waiting; control messages first.
    pub(crate) fn try_recv(&self) -> Option<Incoming> {
        match self.control.try_recv() {
            Ok(c) => return Some(Incoming::Control(c)),
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => {}
        }
        self.data.try_recv().ok().map(Incoming::Publish)
    }

    /// The read end of the doorbell (once; the inbox task owns it).
    pub(crate) fn take_doorbell(&mut self) -> Option<OwnedFd> {
        self.doorbell.take()
    }

    /// Waits until a message is available and takes it.
    ///
    /// Parking rings through a socket the shard's io_uring polls, not
    /// through a waker woken from another thread: the kernel then wakes a
    /// sleeping shard itself. (Cross-thread glommio wakers were seen to go
    /// unnoticed for seconds when both cores were saturated.)
    pub(crate) async fn recv(&self, doorbell: &Doorbell) -> Incoming {
        loop {
            if let Some(m) = self.try_recv() {
                return m;
            }
            self.wake.parked.store(true, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            if let Some(m) = self.try_recv() {
                self.wake.parked.store(false, Ordering::SeqCst);
                return m;
            }
            // `peek` waits through a receive on glommio's latency ring, the
            // ring a sleeping shard waits on; a readiness poll would sit on
            // the main ring, whose completions a sleeping shard was seen to
            // miss for seconds when both cores were saturated.
            let mut rings = [0u8; 64];
            match doorbell.stream.peek(&mut rings).await {
                Ok(n) if n > 0 => doorbell.drain(),
                // The mesh is gone (broker stopping): don't spin.
                _ => glommio::timer::sleep(std::time::Duration::from_millis(10)).await,
            }
        }
    }
}

/// The receiving end of a shard's doorbell, owned by its inbox task.
pub(crate) struct Doorbell {
    stream: glommio::net::UnixStream,
    fd: RawFd,
}

impl Doorbell {
    /// Wraps the read end taken with [`Inbox::take_doorbell`]; must run on
    /// the shard's executor.
    pub(crate) fn new(fd: OwnedFd) -> Self {
        let fd = fd.into_raw_fd();
        // SAFETY: `fd` is an open socket we own; the stream owns it now and
        // `self.fd` is only used while the stream lives.
        let stream = unsafe { glommio::net::UnixStream::from_raw_fd(fd) };
        Self { stream, fd }
    }

    /// Consumes every pending ring without waiting.
    fn drain(&self) {
        let mut rings = [0u8; 256];
        loop {
            // SAFETY: recv into a buffer we own, on a socket the stream owns.
            let n = unsafe {
                libc::recv(
                    self.fd,
                    rings.as_mut_ptr().cast(),
                    rings.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n < rings.len() as isize {
                return;
            }
        }
    }
}
