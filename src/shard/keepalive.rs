//! The shard's timing wheel and its monitoring tick.
//!
//! One `ringmq-wheel` per shard holds every deadline: CONNECT timeouts,
//! keep-alive, will delays and session expiries. The ticker task sleeps
//! until the wheel's next deadline (or until an earlier timer is armed),
//! advances the wheel and handles what fired; with nothing armed it parks
//! and costs no CPU.
//!
//! Keep-alive is lazy: a read only stamps `Conn::last_rx_tick`. When a
//! connection's entry fires, the stamp decides: heard from since, re-arm at
//! `stamp + timeout`; silent, expire (v5: DISCONNECT 0x8D first). A busy
//! connection costs the wheel about one event per timeout.

use std::cell::Cell;
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Instant;

use ringmq_codec::ReasonCode;
use ringmq_session::CloseCause;
use ringmq_wheel::{Tick, TimerKey};
use tracing::debug;

use super::Shard;
use crate::stats::ShardStats;

/// What a wheel entry stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TimerEvent {
    /// The connection (by id) has not sent a whole CONNECT in time.
    ConnectTimeout(u64),
    /// Check the connection's keep-alive.
    KeepAlive(u64),
    /// The session's (by serial) will delay has elapsed.
    WillDelay(u64),
    /// The disconnected session (by serial) has expired.
    SessionExpiry(u64),
}

/// Wakes the ticker when a timer earlier than its planned wake-up is armed.
pub(crate) struct Ticker {
    planned: Cell<u64>,
    notified: Cell<bool>,
    waker: Cell<Option<Waker>>,
}

impl Default for Ticker {
    fn default() -> Self {
        Self {
            planned: Cell::new(u64::MAX),
            notified: Cell::new(false),
            waker: Cell::new(None),
        }
    }
}

impl Ticker {
    pub(crate) fn notify(&self) {
        self.notified.set(true);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    /// Sleeps until `until` (forever if `None`) or a notification.
    async fn wait(&self, until: Option<Instant>) {
        let timer =
            until.map(|t| glommio::timer::Timer::new(t.saturating_duration_since(Instant::now())));
        let mut timer = pin!(timer);
        poll_fn(|cx| {
            if self.notified.replace(false) {
                return Poll::Ready(());
            }
            if let Some(t) = timer.as_mut().as_pin_mut() {
                if t.poll(cx).is_ready() {
                    return Poll::Ready(());
                }
            }
            self.waker.set(Some(cx.waker().clone()));
            Poll::Pending
        })
        .await;
    }
}

impl Shard {
    /// Arms a wheel entry at `deadline` (a tick).
    pub(crate) fn arm_timer(&self, deadline: u64, event: TimerEvent) -> TimerKey {
        let key = self.state.borrow_mut().wheel.insert(Tick(deadline), event);
        if deadline < self.ticker.planned.get() {
            self.ticker.notify();
        }
        key
    }

    /// Cancels a wheel entry; a stale key is a harmless no-op.
    pub(crate) fn cancel_timer(&self, key: Option<TimerKey>) {
        if let Some(key) = key {
            self.state.borrow_mut().wheel.cancel(key);
        }
    }

    pub(crate) async fn ticker_loop(self: Rc<Self>) {
        let mut fired = Vec::new();
        loop {
            if self.shutting_down.get() {
                return;
            }
            let now = self.now_tick();
            self.bump_activity();
            self.state.borrow_mut().wheel.advance(Tick(now), &mut fired);
            for (_, event) in fired.drain(..) {
                self.on_timer(event, now);
            }
            let next = self.state.borrow().wheel.next_deadline().map(|t| t.0);
            self.ticker.planned.set(next.unwrap_or(u64::MAX));
            self.ticker.wait(next.map(|t| self.tick_instant(t))).await;
        }
    }

    fn on_timer(self: &Rc<Self>, event: TimerEvent, now: u64) {
        let conn_of = |id: u64| self.state.borrow().conns.get(&id).cloned();
        match event {
            TimerEvent::ConnectTimeout(id) => {
                let Some(conn) = conn_of(id) else { return };
                conn.timer.set(None);
                if conn.version.get().is_none() && !conn.is_closing() {
                    ShardStats::inc(&self.stats.connect_timeouts);
                    debug!(peer = %conn.peer, "no CONNECT within --connect-timeout-ms");
                    conn.request_close(CloseCause::NetworkError);
                }
            }
            TimerEvent::KeepAlive(id) => {
                let Some(conn) = conn_of(id) else { return };
                conn.timer.set(None);
                let timeout = conn.keepalive_ticks.get();
                if timeout == 0 || conn.is_closing() {
                    return;
                }
                let deadline = conn.last_rx_tick.get() + timeout;
                if deadline > now {
                    let key = self.arm_timer(deadline, TimerEvent::KeepAlive(id));
                    conn.timer.set(Some(key));
                } else {
                    ShardStats::inc(&self.stats.keepalive_expired);
                    debug!(peer = %conn.peer, silent_ticks = now - conn.last_rx_tick.get(), "keep-alive expired");
                    conn.disconnect(ReasonCode::KEEP_ALIVE_TIMEOUT, CloseCause::KeepAliveTimeout);
                }
            }
            TimerEvent::WillDelay(serial) => self.will_delay_elapsed(serial),
            TimerEvent::SessionExpiry(serial) => self.session_expired(serial),
        }
    }
}
