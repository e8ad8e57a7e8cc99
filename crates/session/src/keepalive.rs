//! Keep-alive deadline arithmetic.
//!
//! The standard (3.1.2.10) says the server closes a client it has heard
//! nothing from within 1.5 x Keep Alive. ringmq generalises the factor as
//! `2 x backoff` (backoff 0.75 gives exactly 1.5). Every conversion rounds
//! up, so a deadline is never earlier than the standard allows.

/// The silence after which a client with `keep_alive_secs` is closed, in
/// milliseconds, or `None` when keep-alive is off (0).
pub fn keepalive_timeout_ms(keep_alive_secs: u16, backoff: f64) -> Option<u64> {
    if keep_alive_secs == 0 {
        return None;
    }
    // 2 x backoff x K seconds, rounded up to the next millisecond.
    let ms = (f64::from(keep_alive_secs) * 2000.0 * backoff).ceil();
    Some(ms.max(1.0) as u64)
}

/// `ms` as a whole number of ticks of `tick_ms`, rounded up.
pub fn ms_to_ticks_ceil(ms: u64, tick_ms: u64) -> u64 {
    debug_assert!(tick_ms > 0);
    ms.div_ceil(tick_ms)
}

/// Converts elapsed milliseconds since a shard's start into ticks.
///
/// A packet's arrival is stamped with the tick *after* the instant it
/// arrived (ceiling), and timers fire when the floor of the clock reaches
/// their tick, so `stamp + timeout_ticks` can never fire before
/// `arrival + timeout`, and fires at most one tick after it.
#[derive(Clone, Copy, Debug)]
pub struct KeepAliveClock {
    tick_ms: u64,
}

impl KeepAliveClock {
    /// A clock with a monitoring tick of `tick_ms` (at least 1).
    pub fn new(tick_ms: u64) -> Self {
        Self {
            tick_ms: tick_ms.max(1),
        }
    }

    /// The tick length in milliseconds.
    pub fn tick_ms(&self) -> u64 {
        self.tick_ms
    }

    /// The tick at which an event observed at `elapsed_us` is stamped
    /// (rounded up, so deadlines computed from it are never early).
    pub fn stamp(&self, elapsed_us: u64) -> u64 {
        elapsed_us.div_ceil(self.tick_ms * 1000)
    }

    /// The current tick for firing timers (rounded down: a timer fires only
    /// once its tick has fully begun).
    pub fn now(&self, elapsed_us: u64) -> u64 {
        elapsed_us / (self.tick_ms * 1000)
    }

    /// Microseconds from the start at which `tick` begins.
    pub fn tick_start_us(&self, tick: u64) -> u64 {
        tick.saturating_mul(self.tick_ms * 1000)
    }

    /// A timeout in milliseconds as ticks, rounded up.
    pub fn ticks(&self, ms: u64) -> u64 {
        ms_to_ticks_ceil(ms, self.tick_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_is_one_and_a_half_keepalive_by_default() {
        assert_eq!(keepalive_timeout_ms(0, 0.75), None);
        assert_eq!(keepalive_timeout_ms(1, 0.75), Some(1500));
        assert_eq!(keepalive_timeout_ms(2, 0.75), Some(3000));
        assert_eq!(keepalive_timeout_ms(60, 0.75), Some(90_000));
        assert_eq!(keepalive_timeout_ms(65535, 0.75), Some(98_302_500));
        assert_eq!(keepalive_timeout_ms(10, 0.5), Some(10_000));
    }

    #[test]
    fn deadline_never_early_and_at_most_one_tick_late() {
        let clock = KeepAliveClock::new(100);
        let timeout = clock.ticks(1500);
        for arrival_us in [0u64, 1, 99_999, 100_000, 100_001, 1_234_567, 7_000_000] {
            let deadline = clock.stamp(arrival_us) + timeout;
            let fire_us = clock.tick_start_us(deadline);
            assert!(fire_us >= arrival_us + 1_500_000, "early at {arrival_us}");
            assert!(
                fire_us <= arrival_us + 1_500_000 + 100_000,
                "late at {arrival_us}"
            );
            // The tick at which it fires is the first whose start reaches it.
            assert_eq!(clock.now(fire_us), deadline);
            assert!(clock.now(fire_us - 1) < deadline);
        }
    }

    #[test]
    fn ticks_round_up() {
        assert_eq!(ms_to_ticks_ceil(0, 100), 0);
        assert_eq!(ms_to_ticks_ceil(1, 100), 1);
        assert_eq!(ms_to_ticks_ceil(100, 100), 1);
        assert_eq!(ms_to_ticks_ceil(101, 100), 2);
    }
}
