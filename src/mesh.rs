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
//! Wake-ups: the receiving task parks only after storing its waker, setting
//! `parked` and re-checking both channels; a sender swaps `parked` back and
//! wakes only when it was set. A busy shard therefore takes no wake-up
//! syscalls and an idle broker burns no CPU. The waker sits behind a mutex
//! that is touched only on park/unpark transitions, never per message.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};

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
    waker: Mutex<Option<Waker>>,
}

/// One shard's receiving side.
pub(crate) struct Inbox {
    data: Receiver<RoutedPublish>,
    control: Receiver<Control>,
    wake: Arc<WakeSlot>,
}

/// A message taken from an inbox.
pub(crate) enum Incoming {
    Control(Control),
    Publish(RoutedPublish),
}

impl Mesh {
    /// Builds the mesh for `shards` shards with data channels of `capacity`.
    pub(crate) fn new(shards: usize, capacity: usize) -> (Mesh, Vec<Inbox>) {
        let mut mesh = Mesh {
            data: Vec::with_capacity(shards),
            control: Vec::with_capacity(shards),
            wake: Vec::with_capacity(shards),
        };
        let mut inboxes = Vec::with_capacity(shards);
        for _ in 0..shards {
            let (dtx, drx) = crossbeam_channel::bounded(capacity);
            let (ctx, crx) = crossbeam_channel::unbounded();
            let wake = Arc::new(WakeSlot {
                parked: AtomicBool::new(false),
                waker: Mutex::new(None),
            });
            mesh.data.push(dtx);
            mesh.control.push(ctx);
            mesh.wake.push(wake.clone());
            inboxes.push(Inbox {
                data: drx,
                control: crx,
                wake,
            });
        }
        (mesh, inboxes)
    }

    /// Number of shards.
    pub(crate) fn len(&self) -> usize {
        self.data.len()
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
        // Pairs with the fence in `Inbox::poll_recv`: either the receiver
        // sees our message on its re-check, or we see `parked`.
        fence(Ordering::SeqCst);
        if slot.parked.swap(false, Ordering::SeqCst) {
            let waker = slot.waker.lock().map(|mut w| w.take()).unwrap_or(None);
            if let Some(waker) = waker {
                waker.wake();
            }
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

    /// Waits until a message is available and takes it.
    pub(crate) async fn recv(&self) -> Incoming {
        std::future::poll_fn(|cx| {
            if let Some(m) = self.try_recv() {
                return Poll::Ready(m);
            }
            if let Ok(mut w) = self.wake.waker.lock() {
                match w.as_ref() {
                    Some(old) if old.will_wake(cx.waker()) => {}
                    _ => *w = Some(cx.waker().clone()),
                }
            }
            self.wake.parked.store(true, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            if let Some(m) = self.try_recv() {
                self.wake.parked.store(false, Ordering::SeqCst);
                return Poll::Ready(m);
            }
            Poll::Pending
        })
        .await
    }
}
