//! Time on a shard: the clock and the wheel's events.
//!
//! Sessions, routing and retained expiry share one time base, a
//! `ringmq_session::Tick` of milliseconds since the broker started (one
//! epoch for every shard, so an expiry travels between shards). The wheel
//! counts monitoring ticks (`--keepalive-tick-ms`). A received packet is
//! stamped rounded *up* to the millisecond; a deadline becomes the first
//! wheel tick at or after it; the wheel fires when the clock, rounded
//! *down*, reaches that tick. So nothing fires early, and nothing later
//! than one monitoring tick after its deadline.

use std::time::{Duration, Instant};

use ringmq_session::{SessionId, Tick, Timer};

use super::link::LinkId;

/// What a wheel entry stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TimerEvent {
    /// The link has not sent a whole CONNECT in time.
    ConnectDeadline(LinkId),
    /// A session's timer.
    Session(SessionId, Timer),
    /// Time to publish the `$SYS` topics (shard 0).
    Sys,
}

/// The broker's clock as ticks.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    epoch: Instant,
    tick_us: u64,
}

impl Clock {
    pub(crate) fn new(epoch: Instant, tick_ms: u64) -> Self {
        Self {
            epoch,
            tick_us: tick_ms.max(1) * 1000,
        }
    }

    fn elapsed_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    /// One reading of the clock: the stamp of a packet arriving now
    /// (rounded up) and now for timers and expiries (rounded down).
    pub(crate) fn read(&self) -> (Tick, Tick) {
        stamp_and_now(self.elapsed_us())
    }

    /// Now, for timers and expiries (rounded down).
    pub(crate) fn now(&self) -> Tick {
        Tick(self.elapsed_us() / 1000)
    }

    /// The wheel tick the clock has reached (rounded down).
    pub(crate) fn wheel_now(&self) -> ringmq_wheel::Tick {
        ringmq_wheel::Tick(self.elapsed_us() / self.tick_us)
    }

    /// The first wheel tick at or after `at`.
    pub(crate) fn wheel_tick(&self, at: Tick) -> ringmq_wheel::Tick {
        ringmq_wheel::Tick(at.0.saturating_mul(1000).div_ceil(self.tick_us))
    }

    /// The instant a wheel tick begins.
    pub(crate) fn instant_of(&self, tick: ringmq_wheel::Tick) -> Instant {
        self.epoch + Duration::from_micros(tick.0.saturating_mul(self.tick_us))
    }
}

/// (stamp rounded up, now rounded down) for `us` microseconds since the
/// epoch.
fn stamp_and_now(us: u64) -> (Tick, Tick) {
    (Tick(us.div_ceil(1000)), Tick(us / 1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_never_fires_early_and_at_most_one_tick_late() {
        let clock = Clock::new(Instant::now(), 100);
        for at_ms in [0u64, 1, 99, 100, 101, 1_234, 3_000, 3_001] {
            let tick = clock.wheel_tick(Tick(at_ms));
            let fire_us = tick.0 * 100_000;
            assert!(fire_us >= at_ms * 1000, "early for {at_ms}");
            assert!(fire_us < at_ms * 1000 + 100_000, "late for {at_ms}");
        }
    }

    #[test]
    fn a_keepalive_counted_from_a_stamp_never_fires_early_nor_a_tick_late() {
        let clock = Clock::new(Instant::now(), 100);
        let timeout_ms = 1500;
        for arrival_us in [0u64, 1, 999, 1000, 99_999, 100_001, 1_234_567, 7_000_000] {
            let (stamp, _) = stamp_and_now(arrival_us);
            let tick = clock.wheel_tick(stamp.add_ms(timeout_ms));
            let fire_us = tick.0 * 100_000;
            let deadline_us = arrival_us + timeout_ms * 1000;
            assert!(fire_us >= deadline_us, "early at {arrival_us}");
            // At most one tick (plus the stamp's sub-millisecond rounding).
            assert!(
                fire_us < deadline_us + 100_000 + 1000,
                "late at {arrival_us}"
            );
            // And the timer sees `now` at or past the deadline when it fires.
            assert!(stamp_and_now(fire_us).1 >= stamp.add_ms(timeout_ms));
        }
    }
}
